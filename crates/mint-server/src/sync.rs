//! Keeping connections true with GitHub: every connection of an installation re-read (after a webhook, or a
//! member's return from GitHub's settings), the reconcile sweep for what no webhook said, and approvals
//! matched to the account GitHub reports. Never from a payload's word.

use std::sync::Arc;
use std::time::Duration;

use crate::model::{Connection, ConnectionStatus, now};
use crate::state::AppState;
use crate::store::Actor;

/// An installation was created: if its account (as GitHub reports it, not the payload) is one that
/// products were waiting on, those products become connectable (binding still goes through the verified
/// flow).
pub async fn approve_requests(state: &AppState, installation_id: u64) {
    let installation = match state.github.app().installation(installation_id).await {
        Ok(installation) => installation,
        Err(e) => {
            tracing::warn!(error = %e, installation = installation_id, "could not read a new installation from GitHub");
            return;
        }
    };
    let account = installation.account.login;
    let products = match state.store.pending_products_for(&account).await {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(error = %e, "could not read pending products");
            return;
        }
    };
    for product in products {
        let connectable = Connection::not_connected(
            &format!("An owner of {account} approved the installation: Connect GitHub to choose the repository"),
            now(),
        );
        if let Err(e) = state.store.put_connection(&product, &connectable, &Actor::GitHub).await {
            tracing::warn!(error = %e, %product, "could not record the approval");
        } else {
            tracing::info!(%product, %account, "installation request approved");
        }
    }
}

/// Re-read from GitHub every connection that names the installation, and record what GitHub says.
pub async fn refresh_installation(state: &AppState, installation_id: u64) {
    let connections = match state.store.connections_of_installation(installation_id).await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "could not read connections to refresh");
            return;
        }
    };
    for (product, connection) in connections {
        refresh_connection(state, &product, &connection).await;
    }
}

async fn refresh_connection(state: &AppState, product: &str, connection: &Connection) {
    let (Some(installation), Some(repository_id), Some(name)) = (
        connection.installation_id,
        connection.repository_id,
        connection.repository.as_deref(),
    ) else {
        return;
    };
    // Through the installation's turn, like every call with the App's key.
    let Ok(permit) = state.turn(installation, product).await else {
        tracing::info!(
            product,
            installation,
            "GitHub asked for a pause: the connection is re-read at the next sweep"
        );
        return;
    };
    let refreshed = state.github.refresh(installation, repository_id, name).await;
    drop(permit);
    let Some((status, reason)) = refreshed else {
        return;
    };
    if status == connection.status && reason == connection.reason {
        return;
    }
    match state
        .store
        .set_connection_status(
            product,
            (installation, repository_id),
            status,
            &reason,
            now(),
            &Actor::GitHub,
        )
        .await
    {
        Ok(_) => tracing::info!(
            product,
            from = connection.status.as_str(),
            to = status.as_str(),
            "connection refreshed from GitHub"
        ),
        Err(e) => tracing::warn!(error = %e, product, "could not record a refreshed connection"),
    }
}

/// What GitHub never redelivers: page through the App's installations; a connection whose installation is
/// gone or suspended is marked so, and a connection that is not active is re-checked. Returns how many
/// connections were looked at.
pub async fn reconcile(state: &AppState) -> Result<usize, mint_github::GithubError> {
    let installations = state.github.app().installations().await?;
    let connections = match state.store.installed_connections().await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "reconcile could not read connections");
            return Ok(0);
        }
    };
    let mut looked = 0;
    for (product, connection) in &connections {
        let (Some(installation), Some(repository_id)) = (connection.installation_id, connection.repository_id) else {
            continue;
        };
        looked += 1;
        let listed = installations.iter().find(|i| i.id == installation).cloned();
        // Missing from the paged list is not proof (a page that shifted can skip one): ask for it by id.
        let found = match listed {
            Some(found) => Some(found),
            None => match confirm_installation(state, product, installation).await {
                Confirmed::Exists(found) => Some(found),
                Confirmed::Gone => None,
                Confirmed::Unknown => continue,
            },
        };
        let verdict = match found.as_ref() {
            None => Some((
                ConnectionStatus::InstallationGone,
                format!("installation {installation} was uninstalled: reconnect GitHub"),
            )),
            Some(i) if i.suspended_at.is_some() && connection.status != ConnectionStatus::Suspended => Some((
                ConnectionStatus::Suspended,
                format!(
                    "installation {installation} is suspended: an owner of its account must unsuspend the GitHub App, then coding tasks resume"
                ),
            )),
            Some(_) if connection.status != ConnectionStatus::Active => {
                refresh_connection(state, product, connection).await;
                None
            }
            Some(_) => None,
        };
        if let Some((status, reason)) = verdict
            && status != connection.status
            && let Err(e) = state
                .store
                .set_connection_status(
                    product,
                    (installation, repository_id),
                    status,
                    &reason,
                    now(),
                    &Actor::GitHub,
                )
                .await
        {
            tracing::warn!(error = %e, product, "reconcile could not record a connection");
        }
    }
    Ok(looked)
}

enum Confirmed {
    Exists(mint_github::Installation),
    Gone,
    /// GitHub could not say (or asked for a pause): look again at the next sweep.
    Unknown,
}

/// `GET /app/installations/{id}`, in the installation's turn.
async fn confirm_installation(state: &AppState, product: &str, installation_id: u64) -> Confirmed {
    let Ok(permit) = state.turn(installation_id, product).await else {
        return Confirmed::Unknown;
    };
    let read = state.github.app().installation(installation_id).await;
    drop(permit);
    match read {
        Ok(found) => Confirmed::Exists(found),
        Err(mint_github::GithubError::InstallationNotFound { .. }) => Confirmed::Gone,
        Err(e) => {
            state.noticed(installation_id, &e).await;
            tracing::warn!(error = %e, installation = installation_id, "could not confirm an installation missing from the list");
            Confirmed::Unknown
        }
    }
}

/// The sweep, every `interval`, until the process ends. On PostgreSQL only the replica holding the sweep's
/// advisory lock runs it; the others ask for the lock at each tick, so one takes over when the holder dies.
pub async fn reconcile_loop(state: Arc<AppState>, interval: Duration) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    let mut lock = crate::fleet::SweepLock::default();
    loop {
        tick.tick().await;
        if !lock.hold(&state.store).await {
            continue;
        }
        match reconcile(&state).await {
            Ok(n) => tracing::debug!(connections = n, "reconciled with GitHub"),
            Err(e) => tracing::warn!(error = %e, "reconcile failed; trying again at the next interval"),
        }
    }
}
