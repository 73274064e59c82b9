//! Broker mode: hear at once when the sandbox's GitHub access changes. mintd keeps a long poll open on the
//! broker (`GET /api/v1/sandbox`, answered when the state changes); a Disconnect, a teardown or an
//! uninstalled App makes every later request fail with the broker's reason, without waiting for GitHub to
//! refuse the token, and a reconnect or a new repository is served from the next request on, with no
//! restart. The warm path never waits on this: it only changes what the cache answers.

use std::sync::Arc;
use std::time::Duration;

use mint_api::broker::SandboxState;
use mint_credential::RepoName;

use crate::Daemon;
use crate::broker::{BrokerClient, BrokerError};
use crate::cache::Scope;

/// How long one poll waits for a change (under the 30 s a load balancer commonly allows a response).
pub const WAIT: Duration = Duration::from_secs(20);
const RETRY_FIRST: Duration = Duration::from_millis(250);
const RETRY_MAX: Duration = Duration::from_secs(15);

/// Follow the sandbox's state until the daemon stops.
pub async fn watch_loop(daemon: Arc<Daemon>, broker: Arc<BrokerClient>) {
    let mut known: Option<String> = None;
    let mut retry = RETRY_FIRST;
    loop {
        match broker.watch(known.as_deref(), WAIT).await {
            Ok(Some((state, etag))) => {
                apply(&daemon, &state);
                known = Some(etag);
                retry = RETRY_FIRST;
            }
            Ok(None) => retry = RETRY_FIRST,
            Err(BrokerError::Status { status: 404, .. }) => {
                tracing::info!(
                    "the broker does not offer the sandbox's state (an older mint-server): mintd learns of a Disconnect or teardown when a token is refused"
                );
                return;
            }
            Err(BrokerError::CredentialRefused { .. }) => {
                // Unknown credential (another broker, a database restored from before the sandbox): the
                // token route will say the same; keep looking, slowly.
                known = None;
                tokio::time::sleep(RETRY_MAX).await;
            }
            Err(e) => {
                tracing::debug!(error = %e, retry_in_ms = retry.as_millis(), "watching the sandbox's state failed; retrying");
                tokio::time::sleep(retry).await;
                retry = (retry * 2).min(RETRY_MAX);
            }
        }
    }
}

fn apply(daemon: &Daemon, state: &SandboxState) {
    if !state.active {
        daemon.cache.hold(&state.message);
        return;
    }
    let repository = state.repository.as_deref().and_then(|r| r.parse::<RepoName>().ok());
    if let (Some(repository), Some(installation_id)) = (repository, state.installation_id) {
        daemon.cache.resume(Scope {
            target: Arc::new(daemon.server.target(repository)),
            installation_id,
        });
    } else {
        tracing::warn!(code = %state.code, "the broker's state names no repository; ignoring it");
    }
}
