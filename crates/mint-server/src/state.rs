//! What every request handler shares.

use std::time::Duration;

use crate::github::GitHub;
use crate::secrets::AdminToken;
use crate::store::Store;

pub struct AppState {
    pub store: Store,
    pub github: GitHub,
    pub admin: AdminToken,
    /// Seals tokens for the database, so any replica can revoke them.
    pub sealer: crate::seal::Sealer,
    /// One mint at a time per sandbox on this replica.
    pub mint_locks: crate::fleet::MintLocks,
    /// New tokens a sandbox may be minted per minute.
    pub mints_per_minute: u32,
    /// The fleet-wide bound on mints per installation, and GitHub's pauses.
    pub gate: std::sync::Arc<crate::fleet::MintGate>,
    /// How long a new sandbox's credential works unless torn down first.
    pub sandbox_ttl: Duration,
    /// The Integrations page, when configured.
    pub web: Option<crate::site::Web>,
    /// What all request bodies together may hold.
    pub bodies: crate::body::Budget,
    /// The Integrations page's pull requests, per connection, for a few seconds: page views share them.
    pub pulls: PullsCache,
    pub metrics: std::sync::Arc<crate::metrics::Metrics>,
    /// Reads `GET /metrics` and nothing else (the admin token reads it too).
    pub metrics_token: Option<AdminToken>,
}

/// What GitHub last listed as a repository's agent pull requests, and when.
#[derive(Debug, Default)]
pub struct PullsCache {
    entries: std::sync::Mutex<std::collections::HashMap<(u64, u64), Listing>>,
}

/// When a listing was read, and what it listed.
type Listing = (tokio::time::Instant, Vec<mint_github::PullRequest>);

/// How long a listing serves page views before GitHub is asked again.
pub const PULLS_FRESH: Duration = Duration::from_secs(3);

impl PullsCache {
    pub fn get(&self, key: (u64, u64)) -> Option<Vec<mint_github::PullRequest>> {
        let entries = self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        entries
            .get(&key)
            .filter(|(at, _)| at.elapsed() < PULLS_FRESH)
            .map(|(_, pulls)| pulls.clone())
    }

    pub fn put(&self, key: (u64, u64), pulls: Vec<mint_github::PullRequest>) {
        let mut entries = self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        entries.retain(|_, (at, _)| at.elapsed() < PULLS_FRESH);
        entries.insert(key, (tokio::time::Instant::now(), pulls));
    }
}

impl AppState {
    /// The installation's turn for a call with the App's key: every such call (mints, connection checks,
    /// refreshes, the page's pull requests) passes the same fleet-wide bound and GitHub's pause. `lane` takes
    /// turns with the products minting for the installation.
    pub async fn turn(
        &self,
        installation_id: u64,
        lane: &str,
    ) -> Result<crate::fleet::MintPermit, crate::fleet::Refused> {
        self.gate.enter(&self.store, installation_id, lane).await
    }

    /// GitHub answered a call for the installation: if it asked for a pause, every replica pauses.
    pub async fn noticed(&self, installation_id: u64, error: &mint_github::GithubError) {
        if let Some(wait) = error.hold_off() {
            self.metrics.pauses.inc();
            let reason = format!("GitHub rate-limited the App's calls for installation {installation_id}");
            self.gate.pause(&self.store, installation_id, wait, &reason).await;
        }
    }
}
