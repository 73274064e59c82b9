//! What the server stores and answers with: products, connections and sandboxes, and their JSON forms.

use serde::Serialize;

/// Where a product's GitHub connection stands. Only `active` gets tokens; every other state says why not
/// and what fixes it in the connection's `reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionStatus {
    Active,
    /// An org restricts third-party apps: the installation was requested and waits for an owner.
    PendingApproval,
    Suspended,
    /// The repository is no longer selected for the installation (or was deleted).
    RepoRemoved,
    /// The App was uninstalled from the account.
    InstallationGone,
    NotConnected,
}

impl ConnectionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionStatus::Active => "active",
            ConnectionStatus::PendingApproval => "pending_approval",
            ConnectionStatus::Suspended => "suspended",
            ConnectionStatus::RepoRemoved => "repo_removed",
            ConnectionStatus::InstallationGone => "installation_gone",
            ConnectionStatus::NotConnected => "not_connected",
        }
    }

    /// What a token request hears while the connection is in this state (409, with the reason).
    pub fn error_code(self) -> mint_api::broker::ErrorCode {
        use mint_api::broker::ErrorCode;
        match self {
            // Asked of an active connection only when the sandbox's own access ended meanwhile.
            ConnectionStatus::Active => ErrorCode::AccessEnded,
            ConnectionStatus::PendingApproval => ErrorCode::PendingApproval,
            ConnectionStatus::Suspended => ErrorCode::Suspended,
            ConnectionStatus::RepoRemoved => ErrorCode::RepoRemoved,
            ConnectionStatus::InstallationGone => ErrorCode::InstallationGone,
            ConnectionStatus::NotConnected => ErrorCode::NotConnected,
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "active" => ConnectionStatus::Active,
            "pending_approval" => ConnectionStatus::PendingApproval,
            "suspended" => ConnectionStatus::Suspended,
            "repo_removed" => ConnectionStatus::RepoRemoved,
            "installation_gone" => ConnectionStatus::InstallationGone,
            "not_connected" => ConnectionStatus::NotConnected,
            _ => return None,
        })
    }
}

/// What an OAuth `state` was given out for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// `/login`: sign in, then go to `next`.
    SignIn,
    /// Connect GitHub, Change repository, Reconnect: sign in for a product, then choose.
    Connect,
    /// GitHub's install page, coming back through the Setup URL.
    Install,
}

impl Purpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::SignIn => "signin",
            Purpose::Connect => "connect",
            Purpose::Install => "install",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "signin" => Purpose::SignIn,
            "connect" => Purpose::Connect,
            "install" => Purpose::Install,
            _ => return None,
        })
    }
}

/// A product (one customer's workspace on the platform).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Product {
    pub id: String,
    pub name: String,
    /// GitHub logins allowed to manage the product's connection.
    pub members: Vec<String>,
    pub created_at: i64,
}

/// A product's GitHub connection as stored: ids, display names and state. Never a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    pub status: ConnectionStatus,
    pub reason: String,
    pub installation_id: Option<u64>,
    /// The repository's numeric id: what tokens are minted for, so renames and transfers are safe.
    pub repository_id: Option<u64>,
    /// `owner/name` as GitHub last reported it, for display.
    pub repository: Option<String>,
    pub account_login: Option<String>,
    /// `User` or `Organization`.
    pub account_type: Option<String>,
    /// The installation's settings page on GitHub ("Manage repositories").
    pub installation_url: Option<String>,
    pub updated_at: i64,
}

impl Connection {
    pub fn not_connected(reason: &str, now: i64) -> Self {
        Self {
            status: ConnectionStatus::NotConnected,
            reason: reason.to_owned(),
            installation_id: None,
            repository_id: None,
            repository: None,
            account_login: None,
            account_type: None,
            installation_url: None,
            updated_at: now,
        }
    }

    /// The installation and repository a mint is for, when the connection is active.
    pub fn target(&self) -> Option<(u64, u64, &str)> {
        match (self.status, self.installation_id, self.repository_id, &self.repository) {
            (ConnectionStatus::Active, Some(installation), Some(repository), Some(name)) => {
                Some((installation, repository, name))
            }
            _ => None,
        }
    }

    pub fn view<'a>(&'a self, product_id: &'a str) -> ConnectionView<'a> {
        ConnectionView {
            product_id,
            status: self.status,
            reason: &self.reason,
            installation_id: self.installation_id,
            repository: self.repository.as_deref(),
            repository_id: self.repository_id,
            account: self.account_login.as_deref().map(|login| AccountView {
                login,
                kind: self.account_type.as_deref().unwrap_or("User"),
            }),
            updated_at: rfc3339(self.updated_at),
        }
    }
}

/// `GET /api/v1/products/{id}/connection`.
#[derive(Debug, Serialize)]
pub struct ConnectionView<'a> {
    pub product_id: &'a str,
    pub status: ConnectionStatus,
    /// Why the connection is in this state and, when it is not active, what fixes it.
    pub reason: &'a str,
    pub installation_id: Option<u64>,
    pub repository: Option<&'a str>,
    pub repository_id: Option<u64>,
    pub account: Option<AccountView<'a>>,
    pub updated_at: String,
}

#[derive(Debug, Serialize)]
pub struct AccountView<'a> {
    pub login: &'a str,
    #[serde(rename = "type")]
    pub kind: &'a str,
}

/// A sandbox as stored; its credential exists only as a hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxRow {
    pub id: String,
    pub product_id: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
}

impl SandboxRow {
    /// May this sandbox get tokens at `now`?
    pub fn usable(&self, now: i64) -> bool {
        self.revoked_at.is_none() && now < self.expires_at
    }
}

/// Unix seconds as RFC 3339 (UTC).
pub fn rfc3339(unix: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(u64::try_from(unix).unwrap_or_default());
    humantime::format_rfc3339_seconds(t).to_string()
}

/// Unix milliseconds: for leases and the revocation queue, where seconds are too coarse.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
