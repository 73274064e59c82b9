//! `POST /api/v1/token`: a sandbox's mintd asks for a token, authenticated by the sandbox credential. The
//! token is minted for the product's connection as it is at that moment, scoped to its one repository by
//! id with the least permissions, checked to grant no more, and recorded by hash for teardown.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::Response;
use http::StatusCode;
use serde_json::json;

use crate::api::{ApiError, Input, Nothing, Sandbox, github_failure, json, sandbox_refused};
use crate::db::MintRecord;
use crate::fleet::Refused;
use crate::github::connection_outcome;
use crate::model::{Connection, now};
use crate::secrets::sha256_hex;
use crate::state::AppState;

pub async fn token(
    State(state): State<Arc<AppState>>,
    sandbox: Sandbox,
    Input(Nothing {}): Input<Nothing>,
) -> Result<Response, ApiError> {
    let connection = sandbox.connection.clone().unwrap_or_else(|| {
        Connection::not_connected("GitHub is not connected: connect it on the Integrations page", now())
    });
    let Some((installation_id, repository_id, name)) = connection.target() else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            connection.status.as_str(),
            connection.reason.clone(),
        ));
    };
    let minted = mint_in_turn(&state, &sandbox, (installation_id, repository_id), name).await?;
    let current_name = minted
        .repositories
        .as_deref()
        .and_then(<[_]>::first)
        .map_or_else(|| name.to_owned(), |r| r.full_name.clone());
    if current_name != name {
        tracing::info!(from = name, to = %current_name, "the repository was renamed or transferred");
        state
            .store
            .rename_repository(&sandbox.product_id, repository_id, &current_name, now())
            .await?;
    }
    let minted_at = now();
    let expires_at = minted
        .expires_at
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let token_sha256 = sha256_hex(minted.token.expose().as_bytes());
    state
        .live
        .insert(token_sha256.clone(), minted.token.clone(), expires_at, minted_at);
    let record = MintRecord {
        token_sha256: &token_sha256,
        sandbox_id: &sandbox.id,
        installation_id,
        repository_id,
        minted_at,
        expires_at,
    };
    if let Err(e) = state.store.record_mint(&record).await {
        // Unrecorded means unrevocable by teardown: never hand it out.
        state.live.take(&token_sha256);
        state.github.revoke_quietly(&minted.token).await;
        return Err(e.into());
    }
    // A teardown that ran while we minted may have missed this token: look again, now that it is recorded.
    let still_live = state.store.sandbox(&sandbox.id).await?.is_some_and(|s| s.usable(now()));
    if !still_live {
        if let Some(token) = state.live.take(&token_sha256) {
            state.github.revoke_quietly(&token).await;
        }
        state.store.mark_token_revoked(&token_sha256, now()).await?;
        return Err(sandbox_refused());
    }
    tracing::info!(sandbox = %sandbox.id, installation = installation_id, repository_id, "minted for sandbox");
    let mut response = json(
        StatusCode::OK,
        &json!({
            "token": minted.token.expose(),
            "expires_at": humantime::format_rfc3339_seconds(minted.expires_at).to_string(),
            "repository": current_name,
            "repository_id": repository_id,
            "installation_id": installation_id,
            "permissions": minted.permissions,
        }),
    );
    if let Some(date) = minted.server_date {
        // GitHub's clock, so mintd computes the token's life as GitHub sees it.
        if let Ok(value) = http::HeaderValue::from_str(&httpdate::fmt_http_date(date)) {
            response.headers_mut().insert(http::header::DATE, value);
        }
    }
    Ok(response)
}

/// Mint once the installation's turn comes (the fleet-wide bound), and say what a failure means: GitHub's
/// pause is recorded for every replica, and a connection GitHub no longer serves is marked so.
async fn mint_in_turn(
    state: &AppState,
    sandbox: &Sandbox,
    (installation_id, repository_id): (u64, u64),
    name: &str,
) -> Result<mint_github::MintedToken, ApiError> {
    let permit = state
        .gate
        .enter(&state.store, installation_id, &sandbox.product_id)
        .await
        .map_err(|refused| not_now(refused, installation_id))?;
    let minted = state.github.mint(installation_id, repository_id, name).await;
    drop(permit);
    match minted {
        Ok(minted) => Ok(minted),
        Err(e) => {
            tracing::warn!(error = %e, sandbox = %sandbox.id, installation = installation_id, "mint failed");
            if let Some(wait) = e.hold_off() {
                let reason = format!("GitHub rate-limited minting for installation {installation_id}");
                state.gate.pause(&state.store, installation_id, wait, &reason).await;
            }
            Err(match connection_outcome(&e, name) {
                Some((status, reason)) => {
                    state
                        .store
                        .set_connection_status(
                            &sandbox.product_id,
                            (installation_id, repository_id),
                            status,
                            &reason,
                            now(),
                        )
                        .await?;
                    ApiError::new(StatusCode::CONFLICT, status.as_str(), reason)
                }
                None if matches!(e, mint_github::GithubError::PermissionNotGranted { .. }) => {
                    ApiError::new(StatusCode::CONFLICT, "permission_not_granted", e.to_string())
                }
                None => github_failure(&e),
            })
        }
    }
}

/// A mint that was not started: GitHub's pause (seen by any replica), a queue that did not move, or the
/// database. Each is a 503 with `Retry-After`, which mintd waits out within its deadline.
fn not_now(refused: Refused, installation_id: u64) -> ApiError {
    match refused {
        Refused::Paused { until } => {
            let wait = u64::try_from(until - now()).unwrap_or(1).max(1);
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "github_rate_limited",
                format!(
                    "GitHub rate-limited minting for installation {installation_id}; every mint-server replica waits {wait} s before asking again: retry then"
                ),
            )
            .retry_after(Duration::from_secs(wait))
        }
        Refused::Busy { waited } => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "mint_queue_full",
            format!(
                "installation {installation_id} has as many mints in flight as mint-server allows (--mints-per-installation), and this request waited {} s for a turn: retry shortly",
                waited.as_secs()
            ),
        )
        .retry_after(Duration::from_secs(1)),
        Refused::Store(e) => e.into(),
    }
}
