//! Sandboxes: created with a credential kept as its SHA-256, torn down with their tokens queued for
//! revocation in the same transaction.

use sqlx::Row;

use super::audit::{Action, Actor, NewEvent, record};
use super::tokens::{Ending, SANDBOX_TORN_DOWN, notify, queue_revocations};
use super::{Store, StoreError, connection_from, sandbox_from};
use crate::model::{Connection, SandboxRow, now_ms, rfc3339};

impl Store {
    pub async fn create_sandbox(&self, sandbox: &SandboxRow, credential_sha256: &str) -> Result<(), StoreError> {
        let _writing = self.writing().await;
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO sandboxes (id, product_id, credential_sha256, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&sandbox.id)
        .bind(&sandbox.product_id)
        .bind(credential_sha256)
        .bind(sandbox.created_at)
        .bind(sandbox.expires_at)
        .execute(&mut *tx)
        .await?;
        let event = NewEvent {
            product_id: &sandbox.product_id,
            actor: &Actor::Admin,
            action: Action::SandboxCreated,
            sandbox_id: Some(&sandbox.id),
            repository: None,
            detail: serde_json::json!({"expires_at": rfc3339(sandbox.expires_at)}),
        };
        record(&mut tx, &event, now_ms()).await?;
        tx.commit().await?;
        Ok(())
    }
    /// The sandbox whose credential hashes to this, with its product's connection: the broker route's one
    /// query before it mints.
    pub async fn sandbox_with_connection(
        &self,
        credential_sha256: &str,
    ) -> Result<Option<(SandboxRow, Option<Connection>)>, StoreError> {
        let row = sqlx::query(
            "SELECT s.id, s.product_id, s.created_at, s.expires_at, s.revoked_at, \
               c.status, c.reason, c.installation_id, c.repository_id, c.repository, c.account_login, \
               c.account_type, c.installation_url, c.updated_at \
             FROM sandboxes s LEFT JOIN connections c ON c.product_id = s.product_id \
             WHERE s.credential_sha256 = $1",
        )
        .bind(credential_sha256)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let sandbox = sandbox_from(&row)?;
        let connection = match row.try_get::<Option<String>, _>("status")? {
            Some(_) => Some(connection_from(&row)?),
            None => None,
        };
        Ok(Some((sandbox, connection)))
    }
    pub async fn sandbox(&self, id: &str) -> Result<Option<SandboxRow>, StoreError> {
        let row = sqlx::query("SELECT id, product_id, created_at, expires_at, revoked_at FROM sandboxes WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| sandbox_from(&r)).transpose()
    }
    /// Stop the sandbox's credential and, in the same transaction, queue every live token minted for it for
    /// revocation. `None` when there is no such sandbox; tearing down twice is not an error.
    pub async fn revoke_sandbox(&self, id: &str, now: i64) -> Result<Option<SandboxRow>, StoreError> {
        let _writing = self.writing().await;
        let mut tx = self.pool.begin().await?;
        let first = sqlx::query("UPDATE sandboxes SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected()
            == 1;
        let Some(row) =
            sqlx::query("SELECT id, product_id, created_at, expires_at, revoked_at FROM sandboxes WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?
        else {
            return Ok(None);
        };
        let sandbox = sandbox_from(&row)?;
        let queued = queue_revocations(&mut tx, self.backend, Ending::Sandbox(id), SANDBOX_TORN_DOWN, now_ms()).await?;
        let event = NewEvent {
            product_id: &sandbox.product_id,
            actor: &Actor::Admin,
            action: Action::SandboxTornDown,
            sandbox_id: Some(id),
            repository: None,
            detail: serde_json::json!({"revoked": queued}),
        };
        if first {
            record(&mut tx, &event, now_ms()).await?;
        }
        notify(
            &mut tx,
            self.backend,
            &crate::events::product_payload(&sandbox.product_id),
        )
        .await?;
        tx.commit().await?;
        self.changed(&sandbox.product_id, queued);
        Ok(Some(sandbox))
    }
}

/// A sandbox that may still get tokens, with its live tokens, as the Integrations page and the admin API
/// list them: never a token.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SandboxSummary {
    pub id: String,
    /// Unix seconds.
    pub created_at: i64,
    pub expires_at: i64,
    pub live_tokens: Vec<LiveToken>,
}

/// A token GitHub issued that still works: which repository, and until when (unix seconds).
#[derive(Debug, Clone, serde::Serialize)]
pub struct LiveToken {
    pub repository: Option<String>,
    pub minted_at: i64,
    pub expires_at: i64,
}

impl Store {
    /// The product's sandboxes that are neither torn down nor expired at `now` (newest first, at most
    /// `limit`), each with its live tokens; and how many such sandboxes there are in all.
    pub async fn product_sandboxes(
        &self,
        product_id: &str,
        now: i64,
        limit: i64,
    ) -> Result<(Vec<SandboxSummary>, i64), StoreError> {
        let total: i64 = sqlx::query(
            "SELECT COUNT(*) FROM sandboxes WHERE product_id = $1 AND revoked_at IS NULL AND expires_at > $2",
        )
        .bind(product_id)
        .bind(now)
        .fetch_one(&self.pool)
        .await?
        .try_get(0)?;
        let rows = sqlx::query(
            "SELECT s.id, s.created_at, s.expires_at, t.repository, t.minted_at, t.expires_at AS token_expires_at \
             FROM (SELECT id, created_at, expires_at FROM sandboxes \
                   WHERE product_id = $1 AND revoked_at IS NULL AND expires_at > $2 \
                   ORDER BY created_at DESC, id LIMIT $3) s \
             LEFT JOIN minted_tokens t ON t.sandbox_id = s.id AND t.sealed IS NOT NULL \
               AND t.revoke_requested_at IS NULL AND t.revoked_at IS NULL AND t.expires_at > $2 \
             ORDER BY s.created_at DESC, s.id, t.expires_at DESC",
        )
        .bind(product_id)
        .bind(now)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let mut sandboxes: Vec<SandboxSummary> = Vec::new();
        for row in &rows {
            let id: String = row.try_get("id")?;
            if sandboxes.last().is_none_or(|s| s.id != id) {
                sandboxes.push(SandboxSummary {
                    id,
                    created_at: row.try_get("created_at")?,
                    expires_at: row.try_get("expires_at")?,
                    live_tokens: Vec::new(),
                });
            }
            if let Some(expires_at) = row.try_get::<Option<i64>, _>("token_expires_at")? {
                let sandbox = sandboxes.last_mut().expect("pushed above");
                sandbox.live_tokens.push(LiveToken {
                    repository: row.try_get("repository")?,
                    minted_at: row.try_get::<Option<i64>, _>("minted_at")?.unwrap_or_default(),
                    expires_at,
                });
            }
        }
        Ok((sandboxes, total))
    }
}
