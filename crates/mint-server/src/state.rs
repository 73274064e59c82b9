//! What every request handler shares.

use std::time::Duration;

use crate::db::Store;
use crate::github::GitHub;
use crate::secrets::AdminToken;

pub struct AppState {
    pub store: Store,
    pub github: GitHub,
    pub admin: AdminToken,
    /// Seals tokens for the database, so any replica can revoke them.
    pub sealer: crate::seal::Sealer,
    /// One mint at a time per sandbox on this replica.
    pub mint_locks: crate::broker::MintLocks,
    /// New tokens a sandbox may be minted per minute.
    pub mints_per_minute: u32,
    /// The fleet-wide bound on mints per installation, and GitHub's pauses.
    pub gate: std::sync::Arc<crate::fleet::MintGate>,
    /// How long a new sandbox's credential works unless torn down first.
    pub sandbox_ttl: Duration,
    /// The Integrations page, when configured.
    pub web: Option<crate::web::Web>,
}
