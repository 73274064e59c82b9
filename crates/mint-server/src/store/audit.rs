//! The audit trail: one row per event that changed who may reach what — who connected, changed,
//! disconnected or tore down what, and which sandbox got which token when, and when it died. Each row is
//! written in the transaction of the event it records, so the trail never tells of something that did not
//! happen, nor misses something that did. No secret is ever written: people are GitHub user ids and logins,
//! tokens the first 12 hex digits of their SHA-256.

use serde::Serialize;
use serde_json::{Value, json};
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Store, StoreError, int, uint};
use crate::model::{Connection, ConnectionStatus, rfc3339};

/// Who caused an event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Actor {
    /// A person on the Integrations page, as GitHub's OAuth verified them.
    User { id: u64, login: String },
    /// The admin API: the platform's orchestrator.
    Admin,
    /// GitHub: a signed webhook delivery, or GitHub's answer to a call mint-server made.
    #[serde(rename = "github")]
    GitHub,
    /// A sandbox, asking for a token with its credential.
    Sandbox,
    /// mint-server itself: its revoker and its sweeps.
    Server,
}

impl Actor {
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Actor::User { .. } => "user",
            Actor::Admin => "admin",
            Actor::GitHub => "github",
            Actor::Sandbox => "sandbox",
            Actor::Server => "server",
        }
    }

    fn parse(kind: &str, id: Option<i64>, login: Option<String>) -> Self {
        match kind {
            "user" => Actor::User {
                id: id.map(uint).unwrap_or_default(),
                login: login.unwrap_or_default(),
            },
            "admin" => Actor::Admin,
            "github" => Actor::GitHub,
            "sandbox" => Actor::Sandbox,
            _ => Actor::Server,
        }
    }

    /// The subject of a sentence.
    fn words(&self) -> &str {
        match self {
            Actor::User { login, .. } => login,
            Actor::Admin => "The platform",
            Actor::GitHub => "GitHub",
            Actor::Sandbox => "A sandbox",
            Actor::Server => "mint-server",
        }
    }
}

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Connected,
    /// Connected again after a Disconnect.
    Reconnected,
    RepositoryChanged,
    Disconnected,
    ApprovalRequested,
    /// GitHub said the connection stands otherwise (suspended, uninstalled, repository removed, back).
    StatusChanged,
    RepositoryRenamed,
    SandboxCreated,
    SandboxTornDown,
    TokenMinted,
    TokenRevoked,
    /// The token could not be revoked before it expired (or its sealed copy would not open).
    TokenNotRevoked,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Connected => "connected",
            Action::Reconnected => "reconnected",
            Action::RepositoryChanged => "repository_changed",
            Action::Disconnected => "disconnected",
            Action::ApprovalRequested => "approval_requested",
            Action::StatusChanged => "status_changed",
            Action::RepositoryRenamed => "repository_renamed",
            Action::SandboxCreated => "sandbox_created",
            Action::SandboxTornDown => "sandbox_torn_down",
            Action::TokenMinted => "token_minted",
            Action::TokenRevoked => "token_revoked",
            Action::TokenNotRevoked => "token_not_revoked",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [
            Action::Connected,
            Action::Reconnected,
            Action::RepositoryChanged,
            Action::Disconnected,
            Action::ApprovalRequested,
            Action::StatusChanged,
            Action::RepositoryRenamed,
            Action::SandboxCreated,
            Action::SandboxTornDown,
            Action::TokenMinted,
            Action::TokenRevoked,
            Action::TokenNotRevoked,
        ]
        .into_iter()
        .find(|a| a.as_str() == s)
    }
}

/// One event to record.
#[derive(Debug)]
pub(crate) struct NewEvent<'a> {
    pub product_id: &'a str,
    pub actor: &'a Actor,
    pub action: Action,
    pub sandbox_id: Option<&'a str>,
    pub repository: Option<&'a str>,
    pub detail: Value,
}

/// One recorded event, as the API and the Integrations page show it.
#[derive(Debug, Clone, Serialize)]
pub struct AuditEvent {
    pub id: String,
    pub product_id: String,
    /// Unix milliseconds.
    #[serde(skip)]
    pub at_ms: i64,
    pub at: String,
    pub actor: Actor,
    pub action: Action,
    pub sandbox_id: Option<String>,
    pub repository: Option<String>,
    pub detail: Value,
    /// The event in plain words.
    pub summary: String,
}

impl AuditEvent {
    fn from_row(r: &AnyRow) -> Result<Self, StoreError> {
        let action: String = r.try_get("action")?;
        let action = Action::parse(&action)
            .ok_or_else(|| StoreError::Unexpected(format!("unknown audit action {action:?} in the database")))?;
        let actor = Actor::parse(
            &r.try_get::<String, _>("actor")?,
            r.try_get("actor_id")?,
            r.try_get("actor_login")?,
        );
        let detail: String = r.try_get("detail")?;
        let at_ms: i64 = r.try_get("at")?;
        let mut event = AuditEvent {
            id: r.try_get("id")?,
            product_id: r.try_get("product_id")?,
            at_ms,
            at: rfc3339(at_ms / 1000),
            actor,
            action,
            sandbox_id: r.try_get("sandbox_id")?,
            repository: r.try_get("repository")?,
            detail: serde_json::from_str(&detail).unwrap_or(Value::Null),
            summary: String::new(),
        };
        event.summary = event.describe();
        Ok(event)
    }

    /// The event as a sentence for people: who did what to which repository or sandbox.
    pub fn describe(&self) -> String {
        let who = self.actor.words();
        let repository = self.repository.as_deref().unwrap_or("the repository");
        let sandbox = self.sandbox_id.as_deref().unwrap_or("a sandbox");
        let text = |key: &str| self.detail.get(key).and_then(Value::as_str).unwrap_or_default();
        let count = |key: &str| self.detail.get(key).and_then(Value::as_u64).unwrap_or(0);
        let ended = |n: u64| match n {
            0 => String::new(),
            1 => "; 1 live token was revoked".to_owned(),
            n => format!("; {n} live tokens were revoked"),
        };
        match self.action {
            Action::Connected => format!("{who} connected {repository}."),
            Action::Reconnected => format!("{who} reconnected {repository}."),
            Action::RepositoryChanged => format!(
                "{who} changed the repository from {} to {repository}{}.",
                text("from"),
                ended(count("revoked"))
            ),
            Action::Disconnected => format!("{who} disconnected GitHub{}.", ended(count("revoked"))),
            Action::ApprovalRequested => {
                let account = text("account");
                if account.is_empty() {
                    format!("{who} asked an organization owner to approve the GitHub App.")
                } else {
                    format!("{who} asked an owner of {account} to approve the GitHub App.")
                }
            }
            Action::StatusChanged => {
                let status = match text("status") {
                    "active" => "works again",
                    "suspended" => "is suspended on GitHub",
                    "repo_removed" => "was removed from the App's installation",
                    "installation_gone" => "lost the GitHub App (uninstalled)",
                    "pending_approval" => "waits for an owner's approval",
                    _ => "is not connected",
                };
                match text("reason") {
                    "" => format!("{repository} {status}."),
                    reason => format!("{repository} {status}: {}", sentence(reason)),
                }
            }
            Action::RepositoryRenamed => format!("{who} reported {} renamed to {repository}.", text("from")),
            Action::SandboxCreated => format!("{who} created sandbox {sandbox}."),
            Action::SandboxTornDown => format!("{who} tore down sandbox {sandbox}{}.", ended(count("revoked"))),
            Action::TokenMinted => format!(
                "Sandbox {sandbox} got a token for {repository}, valid until {}.",
                text("expires_at")
            ),
            Action::TokenRevoked => format!(
                "A token of sandbox {sandbox} for {repository} was revoked: {}",
                sentence(text("reason"))
            ),
            Action::TokenNotRevoked => format!(
                "A token of sandbox {sandbox} for {repository} could not be revoked: {}",
                sentence(text("why"))
            ),
        }
    }
}

/// `reason` as the end of a sentence: with a full stop, whatever case it came in.
fn sentence(reason: &str) -> String {
    let reason = reason.trim().trim_end_matches('.');
    if reason.is_empty() {
        "no reason given.".to_owned()
    } else {
        format!("{reason}.")
    }
}

/// Where a page of events ends: the last event's time and id, which the next page starts before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub at_ms: i64,
    pub id: String,
}

impl Cursor {
    pub fn encode(&self) -> String {
        format!("{}.{}", self.at_ms, self.id)
    }

    pub fn parse(s: &str) -> Option<Self> {
        let (at, id) = s.split_once('.')?;
        let id_ok = !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        Some(Cursor {
            at_ms: at.parse().ok()?,
            id: id_ok.then(|| id.to_owned())?,
        })
    }
}

/// Record `event` in the caller's transaction.
pub(crate) async fn record(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    event: &NewEvent<'_>,
    at_ms: i64,
) -> Result<(), StoreError> {
    let (actor_id, actor_login) = match event.actor {
        Actor::User { id, login } => (Some(int(*id)), Some(login.as_str())),
        _ => (None, None),
    };
    sqlx::query(
        "INSERT INTO audit_events (id, product_id, at, actor, actor_id, actor_login, action, sandbox_id, repository, detail) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(crate::secrets::new_id("evt_"))
    .bind(event.product_id)
    .bind(at_ms)
    .bind(event.actor.kind())
    .bind(actor_id)
    .bind(actor_login)
    .bind(event.action.as_str())
    .bind(event.sandbox_id)
    .bind(event.repository)
    .bind(event.detail.to_string())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// What a change of a product's connection from `old` to `new` was, with its particulars. `revoked` is how
/// many live tokens it queued for revocation; `disconnected_before` whether the product was disconnected
/// at some point (so connecting is reconnecting).
pub(crate) fn connection_change(
    old: Option<&Connection>,
    new: &Connection,
    revoked: u64,
    disconnected_before: bool,
) -> (Action, Option<String>, Value) {
    let old_target = old.and_then(Connection::target);
    let mut detail = json!({
        "status": new.status.as_str(),
        "installation_id": new.installation_id,
        "repository_id": new.repository_id,
        "account": new.account_login,
        "revoked": revoked,
    });
    let action = match (new.status, new.target(), old_target) {
        (ConnectionStatus::PendingApproval, ..) => Action::ApprovalRequested,
        (_, Some((_, repository, _)), Some((_, old_repository, old_name))) if repository != old_repository => {
            detail["from"] = Value::from(old_name);
            Action::RepositoryChanged
        }
        (status, Some(_), Some(_)) if old.is_some_and(|o| o.status == status) => Action::Connected,
        (_, Some(_), Some(_)) => Action::StatusChanged,
        (_, Some(_), None) if disconnected_before => Action::Reconnected,
        (_, Some(_), None) => Action::Connected,
        (ConnectionStatus::NotConnected, None, _) => {
            detail["reason"] = Value::from(new.reason.as_str());
            Action::Disconnected
        }
        (_, None, _) => {
            detail["reason"] = Value::from(new.reason.as_str());
            Action::StatusChanged
        }
    };
    let repository = new
        .repository
        .clone()
        .or_else(|| old.and_then(|o| o.repository.clone()));
    (action, repository, detail)
}

impl Store {
    /// A page of the product's events, newest first: at most `limit`, all older than `before` when given.
    /// The cursor of the page's last event when there may be more.
    pub async fn audit_events(
        &self,
        product_id: &str,
        before: Option<&Cursor>,
        limit: i64,
    ) -> Result<(Vec<AuditEvent>, Option<Cursor>), StoreError> {
        let columns = "id, product_id, at, actor, actor_id, actor_login, action, sandbox_id, repository, detail";
        let rows =
            match before {
                Some(cursor) => sqlx::query(&format!(
                    "SELECT {columns} FROM audit_events WHERE product_id = $1 AND (at < $2 OR (at = $2 AND id < $3)) \
                     ORDER BY at DESC, id DESC LIMIT $4"
                ))
                .bind(product_id)
                .bind(cursor.at_ms)
                .bind(&cursor.id)
                .bind(limit + 1)
                .fetch_all(&self.pool)
                .await?,
                None => {
                    sqlx::query(&format!(
                        "SELECT {columns} FROM audit_events WHERE product_id = $1 ORDER BY at DESC, id DESC LIMIT $2"
                    ))
                    .bind(product_id)
                    .bind(limit + 1)
                    .fetch_all(&self.pool)
                    .await?
                }
            };
        let mut events = rows.iter().map(AuditEvent::from_row).collect::<Result<Vec<_>, _>>()?;
        let more = events.len() > usize::try_from(limit).unwrap_or(0);
        events.truncate(usize::try_from(limit).unwrap_or(0));
        let next = more.then(|| events.last()).flatten().map(|e| Cursor {
            at_ms: e.at_ms,
            id: e.id.clone(),
        });
        Ok((events, next))
    }

    /// Delete events older than `before_ms` (the retention sweep). Returns how many went.
    pub async fn sweep_audit(&self, before_ms: i64) -> Result<u64, StoreError> {
        let _writing = self.writing().await;
        Ok(sqlx::query("DELETE FROM audit_events WHERE at < $1")
            .bind(before_ms)
            .execute(&self.pool)
            .await?
            .rows_affected())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connection(status: ConnectionStatus, repository: Option<(u64, &str)>) -> Connection {
        Connection {
            status,
            reason: "why".into(),
            installation_id: repository.map(|_| 42),
            repository_id: repository.map(|(id, _)| id),
            repository: repository.map(|(_, name)| name.to_owned()),
            account_login: Some("octo-org".into()),
            account_type: Some("Organization".into()),
            installation_url: None,
            updated_at: 0,
        }
    }

    #[test]
    fn a_connection_change_is_named_by_what_it_did() {
        let a = connection(ConnectionStatus::Active, Some((1, "o/a")));
        let b = connection(ConnectionStatus::Active, Some((2, "o/b")));
        let off = connection(ConnectionStatus::NotConnected, None);
        let pending = connection(ConnectionStatus::PendingApproval, None);
        assert_eq!(connection_change(None, &a, 0, false).0, Action::Connected);
        assert_eq!(connection_change(Some(&off), &a, 0, true).0, Action::Reconnected);
        let (action, repository, detail) = connection_change(Some(&a), &b, 3, false);
        assert_eq!(
            (action, repository.as_deref()),
            (Action::RepositoryChanged, Some("o/b"))
        );
        assert_eq!(
            (detail["from"].as_str(), detail["revoked"].as_u64()),
            (Some("o/a"), Some(3))
        );
        let (action, repository, _) = connection_change(Some(&a), &off, 2, false);
        assert_eq!((action, repository.as_deref()), (Action::Disconnected, Some("o/a")));
        assert_eq!(
            connection_change(Some(&off), &pending, 0, false).0,
            Action::ApprovalRequested
        );
    }

    #[test]
    fn cursors_round_trip_and_refuse_what_is_not_one() {
        let cursor = Cursor {
            at_ms: 1_765_000_000_123,
            id: "evt_0123abcd".into(),
        };
        assert_eq!(Cursor::parse(&cursor.encode()), Some(cursor));
        for bad in ["", "12", "x.evt_1", "12.", "12.evt 1", "12.evt_1'--"] {
            assert_eq!(Cursor::parse(bad), None, "{bad:?}");
        }
    }
}
