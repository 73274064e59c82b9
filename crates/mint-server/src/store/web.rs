//! The Integrations page's rows: signed-in sessions, single-use OAuth states, what a user was verified to be
//! able to bind, and the webhook deliveries seen. Session ids and states only as SHA-256.

use sqlx::Row;

use super::{Store, StoreError, int, uint};

/// A browser session as stored (its id only as SHA-256).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebSession {
    pub login: Option<String>,
    pub user_id: Option<u64>,
    pub csrf: String,
    pub expires_at: i64,
}
/// A single-use OAuth `state`, taken back exactly once by the callback of the same browser session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthState {
    pub session_sha256: String,
    pub purpose: crate::model::Purpose,
    pub product_id: Option<String>,
    pub installation_hint: Option<u64>,
    pub next_path: Option<String>,
    pub created_at: i64,
}
/// An installation and repository a signed-in user was just shown (by GitHub, with their token) to be able
/// to push to: the only things the connect form may bind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    pub installation_id: u64,
    pub repository_id: u64,
    pub repository: String,
    pub account_login: String,
}
/// Who signs in: their GitHub login and id, and the new session's CSRF token.
#[derive(Debug)]
pub struct SessionUser<'a> {
    pub login: &'a str,
    pub user_id: u64,
    pub csrf: &'a str,
}

impl Store {
    /// A signed-in browser session (created at sign-in only: an anonymous browser has no row).
    pub async fn create_session(
        &self,
        id_sha256: &str,
        user: &SessionUser<'_>,
        now: i64,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        let _writing = self.writing().await;
        sqlx::query(
            "INSERT INTO web_sessions (id_sha256, login, user_id, csrf, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(id_sha256)
        .bind(user.login)
        .bind(int(user.user_id))
        .bind(user.csrf)
        .bind(now)
        .bind(expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
    pub async fn session(&self, id_sha256: &str) -> Result<Option<WebSession>, StoreError> {
        let row = sqlx::query("SELECT login, user_id, csrf, expires_at FROM web_sessions WHERE id_sha256 = $1")
            .bind(id_sha256)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            Ok(WebSession {
                login: r.try_get("login")?,
                user_id: r.try_get::<Option<i64>, _>("user_id")?.map(uint),
                csrf: r.try_get("csrf")?,
                expires_at: r.try_get("expires_at")?,
            })
        })
        .transpose()
    }
    pub async fn delete_session(&self, id_sha256: &str) -> Result<(), StoreError> {
        let _writing = self.writing().await;
        sqlx::query("DELETE FROM web_sessions WHERE id_sha256 = $1")
            .bind(id_sha256)
            .execute(&self.pool)
            .await?;
        sqlx::query("DELETE FROM verified_choices WHERE session_sha256 = $1")
            .bind(id_sha256)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
    pub async fn put_oauth_state(&self, state_sha256: &str, state: &OAuthState) -> Result<(), StoreError> {
        let _writing = self.writing().await;
        sqlx::query(
            "INSERT INTO oauth_states (state_sha256, session_sha256, purpose, product_id, installation_hint, next_path, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(state_sha256)
        .bind(&state.session_sha256)
        .bind(state.purpose.as_str())
        .bind(state.product_id.as_deref())
        .bind(state.installation_hint.map(int))
        .bind(state.next_path.as_deref())
        .bind(state.created_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
    /// Take a state back: it is deleted whether or not it matches, so it can never be used twice.
    pub async fn take_oauth_state(&self, state_sha256: &str) -> Result<Option<OAuthState>, StoreError> {
        let row = sqlx::query(
            "SELECT session_sha256, purpose, product_id, installation_hint, next_path, created_at \
             FROM oauth_states WHERE state_sha256 = $1",
        )
        .bind(state_sha256)
        .fetch_optional(&self.pool)
        .await?;
        let _writing = self.writing().await;
        let deleted = sqlx::query("DELETE FROM oauth_states WHERE state_sha256 = $1")
            .bind(state_sha256)
            .execute(&self.pool)
            .await?;
        if deleted.rows_affected() == 0 {
            // Another request took it between our read and our delete: it is theirs.
            return Ok(None);
        }
        row.map(|r| {
            Ok(OAuthState {
                session_sha256: r.try_get("session_sha256")?,
                purpose: {
                    let purpose: String = r.try_get("purpose")?;
                    crate::model::Purpose::parse(&purpose).ok_or_else(|| {
                        StoreError::Unexpected(format!("unknown OAuth purpose {purpose:?} in the database"))
                    })?
                },
                product_id: r.try_get("product_id")?,
                installation_hint: r.try_get::<Option<i64>, _>("installation_hint")?.map(uint),
                next_path: r.try_get("next_path")?,
                created_at: r.try_get("created_at")?,
            })
        })
        .transpose()
    }
    /// Replace what this session may bind for the product.
    pub async fn put_choices(
        &self,
        session_sha256: &str,
        product_id: &str,
        choices: &[Choice],
        expires_at: i64,
    ) -> Result<(), StoreError> {
        let _writing = self.writing().await;
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM verified_choices WHERE session_sha256 = $1 AND product_id = $2")
            .bind(session_sha256)
            .bind(product_id)
            .execute(&mut *tx)
            .await?;
        for c in choices {
            sqlx::query(
                "INSERT INTO verified_choices \
                   (session_sha256, product_id, installation_id, repository_id, repository, account_login, expires_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
            )
            .bind(session_sha256)
            .bind(product_id)
            .bind(int(c.installation_id))
            .bind(int(c.repository_id))
            .bind(&c.repository)
            .bind(&c.account_login)
            .bind(expires_at)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }
    pub async fn choices(&self, session_sha256: &str, product_id: &str, now: i64) -> Result<Vec<Choice>, StoreError> {
        let rows = sqlx::query(
            "SELECT installation_id, repository_id, repository, account_login FROM verified_choices \
             WHERE session_sha256 = $1 AND product_id = $2 AND expires_at > $3 ORDER BY account_login, repository",
        )
        .bind(session_sha256)
        .bind(product_id)
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Choice {
                    installation_id: uint(r.try_get("installation_id")?),
                    repository_id: uint(r.try_get("repository_id")?),
                    repository: r.try_get("repository")?,
                    account_login: r.try_get("account_login")?,
                })
            })
            .collect()
    }
    pub async fn clear_choices(&self, session_sha256: &str, product_id: &str) -> Result<(), StoreError> {
        let _writing = self.writing().await;
        sqlx::query("DELETE FROM verified_choices WHERE session_sha256 = $1 AND product_id = $2")
            .bind(session_sha256)
            .bind(product_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
    /// Remember a webhook delivery; `false` when its id or its signed body was seen before (a redelivery,
    /// another replica's copy, or a body replayed under a new delivery id).
    pub async fn first_delivery(
        &self,
        delivery_id: &str,
        body_sha256: &str,
        event: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let _writing = self.writing().await;
        let done = sqlx::query(
            "INSERT INTO webhook_deliveries (delivery_id, body_sha256, event, received_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT DO NOTHING",
        )
        .bind(delivery_id)
        .bind(body_sha256)
        .bind(event)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }
}
