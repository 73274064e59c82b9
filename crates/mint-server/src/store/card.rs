//! What the Integrations card reads beyond the connection: when the person's list of repositories expires,
//! who connected and when, who asked an owner for approval and when, and when a sandbox last got a token.

use sqlx::Row;

use super::{Action, Store, StoreError, int, uint};

/// The branches coding tasks push and open pull requests from.
pub const AGENT_BRANCH_PREFIX: &str = "adagent/";

/// A pull request a coding task opened, as the webhooks told it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentPull {
    pub installation_id: u64,
    pub repository_id: u64,
    pub number: u64,
    pub repository: String,
    pub title: String,
    pub html_url: String,
    pub head_ref: String,
    pub base_ref: String,
    /// `open`, `draft`, `merged` or `closed`.
    pub state: String,
    /// `approved`, `changes_requested` or `commented`; `None` before any review.
    pub review_state: Option<String>,
    pub ticket: Option<String>,
    /// Unix seconds.
    pub opened_at: i64,
    pub updated_at: i64,
}

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
    /// Record what a `pull_request` webhook says of an agent's pull request: its first sighting keeps its
    /// time and review; later ones update the rest.
    pub async fn note_pull(&self, pull: &AgentPull) -> Result<(), StoreError> {
        let _writing = self.writing().await;
        sqlx::query(
            "INSERT INTO agent_pulls (repository_id, number, installation_id, repository, title, html_url, head_ref, \
               base_ref, state, review_state, ticket, opened_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
             ON CONFLICT (repository_id, number) DO UPDATE SET installation_id = excluded.installation_id, \
               repository = excluded.repository, title = excluded.title, html_url = excluded.html_url, \
               head_ref = excluded.head_ref, base_ref = excluded.base_ref, state = excluded.state, \
               ticket = excluded.ticket, updated_at = excluded.updated_at",
        )
        .bind(int(pull.repository_id))
        .bind(int(pull.number))
        .bind(int(pull.installation_id))
        .bind(&pull.repository)
        .bind(&pull.title)
        .bind(&pull.html_url)
        .bind(&pull.head_ref)
        .bind(&pull.base_ref)
        .bind(&pull.state)
        .bind(pull.review_state.as_deref())
        .bind(pull.ticket.as_deref())
        .bind(pull.opened_at)
        .bind(pull.updated_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Record a review's verdict on a pull request already known; `false` when it is not one of ours.
    pub async fn note_review(
        &self,
        repository_id: u64,
        number: u64,
        review_state: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let _writing = self.writing().await;
        let done = sqlx::query(
            "UPDATE agent_pulls SET review_state = $1, updated_at = $2 WHERE repository_id = $3 AND number = $4",
        )
        .bind(review_state)
        .bind(now)
        .bind(int(repository_id))
        .bind(int(number))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// The agents' pull requests in these repositories, latest change first, at most `limit`.
    pub async fn agent_pulls_in(&self, repository_ids: &[u64], limit: i64) -> Result<Vec<AgentPull>, StoreError> {
        if repository_ids.is_empty() {
            return Ok(Vec::new());
        }
        // Numbers only: the list is written into the statement, never text from outside.
        let list = repository_ids
            .iter()
            .map(|id| int(*id).to_string())
            .collect::<Vec<_>>()
            .join(", ");
        let rows = sqlx::query(&format!(
            "SELECT repository_id, number, installation_id, repository, title, html_url, head_ref, base_ref, state, \
               review_state, ticket, opened_at, updated_at FROM agent_pulls WHERE repository_id IN ({list}) \
             ORDER BY updated_at DESC, number DESC LIMIT $1"
        ))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(AgentPull {
                    installation_id: uint(r.try_get("installation_id")?),
                    repository_id: uint(r.try_get("repository_id")?),
                    number: uint(r.try_get("number")?),
                    repository: r.try_get("repository")?,
                    title: r.try_get("title")?,
                    html_url: r.try_get("html_url")?,
                    head_ref: r.try_get("head_ref")?,
                    base_ref: r.try_get("base_ref")?,
                    state: r.try_get("state")?,
                    review_state: r.try_get("review_state")?,
                    ticket: r.try_get("ticket")?,
                    opened_at: r.try_get("opened_at")?,
                    updated_at: r.try_get("updated_at")?,
                })
            })
            .collect()
    }

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
