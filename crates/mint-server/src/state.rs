//! What every request handler shares, and the live tokens kept in memory for teardown.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use mint_github::InstallationToken;

use crate::db::Store;
use crate::github::GitHub;
use crate::secrets::AdminToken;

pub struct AppState {
    pub store: Store,
    pub github: GitHub,
    pub admin: AdminToken,
    pub live: LiveTokens,
    /// The fleet-wide bound on mints per installation, and GitHub's pauses.
    pub gate: std::sync::Arc<crate::fleet::MintGate>,
    /// How long a new sandbox's credential works unless torn down first.
    pub sandbox_ttl: Duration,
    /// The Integrations page, when configured.
    pub web: Option<crate::web::Web>,
}

/// Tokens this process minted and that have not expired, by the SHA-256 the database knows them by.
///
/// GitHub revokes an installation token only when presented with the token itself, and the database never
/// holds one. So teardown revokes what this process still holds; a token minted before a restart (or by
/// another replica) is marked revoked in the database and dies at its expiry, within the hour.
#[derive(Default)]
pub struct LiveTokens {
    tokens: Mutex<HashMap<String, (InstallationToken, i64)>>,
}

impl LiveTokens {
    pub fn insert(&self, sha256: String, token: InstallationToken, expires_at: i64, now: i64) {
        let mut tokens = self.lock();
        if tokens.len() % 256 == 255 {
            tokens.retain(|_, (_, expires)| *expires > now);
        }
        tokens.insert(sha256, (token, expires_at));
    }

    pub fn take(&self, sha256: &str) -> Option<InstallationToken> {
        self.lock().remove(sha256).map(|(token, _)| token)
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (InstallationToken, i64)>> {
        self.tokens.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl std::fmt::Debug for LiveTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LiveTokens({} held)", self.len())
    }
}
