//! What the Integrations card reads beyond the connection: when the person's list of repositories expires,
//! who connected and when, who asked an owner for approval and when, and when a sandbox last got a token.

use sqlx::Row;

use super::{Action, Store, StoreError};

/// One event the card tells: when (unix milliseconds), who (a GitHub login when a person did it), and the
/// account an approval request went to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Landmark {
    pub at_ms: i64,
    pub login: Option<String>,
    /// `user`, `admin`, `github`, `sandbox` or `server`.
    pub actor: String,
    pub account: Option<String>,
}

/// A repository the product was connected to: where its coding tasks' pull requests may still be open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PastRepository {
    pub installation_id: u64,
    pub repository_id: u64,
    pub repository: String,
}

impl Store {
    /// The repositories the product was last connected to, newest first, at most `limit` (the current one
    /// among them), as the audit trail recorded each connection.
    pub async fn last_repositories(&self, product_id: &str, limit: usize) -> Result<Vec<PastRepository>, StoreError> {
        let rows = sqlx::query(
            "SELECT repository, detail FROM audit_events WHERE product_id = $1 \
             AND action IN ('connected', 'reconnected', 'repository_changed') AND repository IS NOT NULL \
             ORDER BY at DESC, id DESC LIMIT 50",
        )
        .bind(product_id)
        .fetch_all(&self.pool)
        .await?;
        let mut found: Vec<PastRepository> = Vec::new();
        for row in &rows {
            let detail: String = row.try_get("detail")?;
            let detail: serde_json::Value = serde_json::from_str(&detail).unwrap_or_default();
            let (Some(installation_id), Some(repository_id)) = (
                detail.get("installation_id").and_then(serde_json::Value::as_u64),
                detail.get("repository_id").and_then(serde_json::Value::as_u64),
            ) else {
                continue;
            };
            if found.iter().any(|r| r.repository_id == repository_id) {
                continue;
            }
            found.push(PastRepository {
                installation_id,
                repository_id,
                repository: row.try_get("repository")?,
            });
            if found.len() == limit {
                break;
            }
        }
        Ok(found)
    }

    /// When the repositories this session was last shown for the product stop being choosable (unix
    /// seconds); `None` when it was shown none, or the sweep already removed them.
    pub async fn choices_expire_at(&self, session_sha256: &str, product_id: &str) -> Result<Option<i64>, StoreError> {
        let row = sqlx::query(
            "SELECT MAX(expires_at) AS expires_at FROM verified_choices WHERE session_sha256 = $1 AND product_id = $2",
        )
        .bind(session_sha256)
        .bind(product_id)
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get::<Option<i64>, _>("expires_at")?)
    }

    /// The product's newest event among `actions`.
    pub async fn last_event(&self, product_id: &str, actions: &[Action]) -> Result<Option<Landmark>, StoreError> {
        let list = actions
            .iter()
            .map(|a| format!("'{}'", a.as_str()))
            .collect::<Vec<_>>()
            .join(", ");
        let row = sqlx::query(&format!(
            "SELECT at, actor, actor_login, detail FROM audit_events WHERE product_id = $1 AND action IN ({list}) \
             ORDER BY at DESC, id DESC LIMIT 1"
        ))
        .bind(product_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            let detail: String = r.try_get("detail")?;
            let detail: serde_json::Value = serde_json::from_str(&detail).unwrap_or_default();
            Ok(Landmark {
                at_ms: r.try_get("at")?,
                login: r.try_get("actor_login")?,
                actor: r.try_get("actor")?,
                account: detail
                    .get("account")
                    .and_then(serde_json::Value::as_str)
                    .filter(|a| !a.is_empty())
                    .map(str::to_owned),
            })
        })
        .transpose()
    }
}
