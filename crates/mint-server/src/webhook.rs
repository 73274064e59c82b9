//! `POST /github/webhook` and the reconcile sweep: the card stays true without anyone clicking.
//!
//! A delivery is verified as it arrives: `X-Hub-Signature-256` (HMAC-SHA256 of the raw body, constant time,
//! against the current and the next secret) is computed over every byte while at most [`RETAIN`] are kept,
//! charged to the server's body budget; nothing is parsed before the signature matches. It is deduplicated
//! on `X-GitHub-Delivery` and on the SHA-256 of the signed body (the delivery id is not signed: a body
//! replayed under a new id is a duplicate), answered at once, and processed after the answer. Processing
//! never trusts the event's content or order: it re-reads the installation from GitHub, and an installation
//! request's approval is matched against the account GitHub reports, never the payload's `requester`.
//! A signed delivery too large to keep is not parsed at all: it makes the reconcile sweep run now.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, Mac};
use http::{HeaderMap, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use crate::api::{ApiError, json as json_response};
use crate::body::BodyError;
use crate::model::{Connection, ConnectionStatus, now};
use crate::state::AppState;

/// GitHub caps webhook payloads at 25 MB; anything larger is not from GitHub.
pub const MAX_WEBHOOK_BODY: usize = 25 * 1024 * 1024;
/// A delivery's bytes kept to be parsed. The events mint takes are a few KiB (an installation with many
/// repositories lists them, ~150 bytes each); a signed delivery larger than this triggers the reconcile
/// sweep instead of being parsed.
pub const RETAIN: usize = 512 * 1024;
/// How long deliveries are remembered for deduplication: a replay inside this window is a duplicate.
pub const DEDUPE_WINDOW: Duration = Duration::from_secs(30 * 24 * 3600);

pub async fn receive(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Response {
    let Some(web) = state.web.as_ref() else {
        return ApiError::new(StatusCode::NOT_FOUND, "not_configured", "webhooks are not configured: start mint-server with --webhook-secret-file and the other connect-flow flags").into_response();
    };
    if crate::api::declared_length(&headers).is_some_and(|n| n > MAX_WEBHOOK_BODY as u64) {
        return body_refused(&BodyError::TooLarge {
            limit: MAX_WEBHOOK_BODY,
        });
    }
    let signature = headers
        .get("x-hub-signature-256")
        .and_then(|v| v.to_str().ok())
        .and_then(|h| h.strip_prefix("sha256="))
        .and_then(decode_hex);
    let mut macs: Vec<Hmac<Sha256>> = web
        .webhook_secrets
        .iter()
        .map(|secret| Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length"))
        .collect();
    let mut digest = Sha256::new();
    let read = crate::body::read(body, MAX_WEBHOOK_BODY, RETAIN, &state.bodies, |chunk| {
        for mac in &mut macs {
            mac.update(chunk);
        }
        digest.update(chunk);
    })
    .await;
    let kept = match read {
        Ok(kept) => kept,
        Err(e) => return body_refused(&e),
    };
    let signed = signature.is_some_and(|sig| {
        macs.into_iter()
            .fold(false, |matched, mac| mac.verify_slice(&sig).is_ok() | matched)
    });
    if !signed {
        tracing::warn!(
            present = headers.contains_key("x-hub-signature-256"),
            "refused a webhook with a bad or missing signature"
        );
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            "bad_signature",
            "X-Hub-Signature-256 is missing or does not match the webhook secret",
        )
        .into_response();
    }
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let (delivery, event) = (header("x-github-delivery"), header("x-github-event"));
    if delivery.is_empty() || delivery.len() > 100 || event.is_empty() || event.len() > 100 {
        return ApiError::bad_request("X-GitHub-Delivery and X-GitHub-Event are required").into_response();
    }
    let body_sha256 = crate::secrets::hex(&digest.finalize());
    let payload: Option<Value> = match &kept {
        Some(kept) => match serde_json::from_slice(&kept.bytes) {
            Ok(v) => Some(v),
            Err(e) => return ApiError::bad_request(format!("the payload is not JSON: {e}")).into_response(),
        },
        None => None,
    };
    drop(kept);
    match state.store.first_delivery(&delivery, &body_sha256, &event, now()).await {
        Ok(true) => {}
        Ok(false) => {
            tracing::info!(%delivery, %event, "webhook delivery (or its signed body) seen before; not processed again");
            return json_response(StatusCode::OK, &json!({"status": "duplicate"}));
        }
        Err(e) => return ApiError::from(e).into_response(),
    }
    let state = state.clone();
    if let Some(payload) = payload {
        tracing::info!(%delivery, %event, action = %payload["action"].as_str().unwrap_or_default(), "webhook accepted");
        tokio::spawn(async move { process(&state, &event, &payload).await });
    } else {
        tracing::warn!(%delivery, %event, "a signed webhook too large to parse: reconciling with GitHub instead");
        tokio::spawn(async move {
            if let Err(e) = reconcile(&state).await {
                tracing::warn!(error = %e, "reconcile after a large webhook failed; the next sweep retries");
            }
        });
    }
    json_response(StatusCode::ACCEPTED, &json!({"status": "accepted"}))
}

/// A body that was not read, as an answer (the connection is closed after it: the rest was never read).
fn body_refused(e: &BodyError) -> Response {
    match e {
        BodyError::TooLarge { .. } => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("webhook bodies are limited to {MAX_WEBHOOK_BODY} bytes, GitHub's own cap"),
        ),
        other => crate::api::body_error(other),
    }
    .closing()
    .into_response()
}

/// Does `sha256=<hex>` match the body under any of the secrets? Every secret is tried, in constant time each.
pub fn signature_ok(secrets: &[zeroize::Zeroizing<Vec<u8>>], header: Option<&str>, body: &[u8]) -> bool {
    let Some(sig) = header.and_then(|h| h.strip_prefix("sha256=")).and_then(decode_hex) else {
        return false;
    };
    secrets.iter().fold(false, |matched, secret| {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
        mac.update(body);
        mac.verify_slice(&sig).is_ok() | matched
    })
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if hex.len() != 64 {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

async fn process(state: &AppState, event: &str, payload: &Value) {
    let action = payload["action"].as_str().unwrap_or_default();
    let Some(installation) = payload["installation"]["id"].as_u64() else {
        return;
    };
    match (event, action) {
        ("installation", "created") => {
            approve_requests(state, installation).await;
            refresh_installation(state, installation).await;
        }
        ("installation" | "installation_repositories" | "installation_target", _) => {
            refresh_installation(state, installation).await;
        }
        _ => {}
    }
}

/// An installation was created: if its account (as GitHub reports it, not the payload) is one that
/// products were waiting on, those products become connectable (binding still goes through the verified
/// flow).
async fn approve_requests(state: &AppState, installation_id: u64) {
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
        if let Err(e) = state.store.put_connection(&product, &connectable).await {
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
        .set_connection_status(product, (installation, repository_id), status, &reason, now())
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
                .set_connection_status(product, (installation, repository_id), status, &reason, now())
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

/// `POST /api/v1/reconcile` (admin): run the sweep now.
pub async fn reconcile_now(
    _admin: crate::api::Admin,
    State(state): State<Arc<AppState>>,
) -> Result<Response, ApiError> {
    let looked = reconcile(&state).await.map_err(|e| crate::api::github_failure(&e))?;
    Ok(json_response(StatusCode::OK, &json!({"connections": looked})))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(secret: &[u8], body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("key");
        mac.update(body);
        format!("sha256={}", crate::secrets::hex(&mac.finalize().into_bytes()))
    }

    #[test]
    fn signatures_match_the_current_or_the_next_secret_only() {
        let current = zeroize::Zeroizing::new(b"current".to_vec());
        let next = zeroize::Zeroizing::new(b"next".to_vec());
        let body = br#"{"action":"deleted"}"#;
        let secrets = [current, next];
        assert!(signature_ok(&secrets, Some(&sign(b"current", body)), body));
        assert!(signature_ok(&secrets, Some(&sign(b"next", body)), body));
        assert!(!signature_ok(&secrets, Some(&sign(b"old", body)), body));
        assert!(
            !signature_ok(&secrets, Some(&sign(b"current", b"{}")), body),
            "another body"
        );
        assert!(!signature_ok(&secrets, None, body));
        assert!(!signature_ok(&secrets, Some("sha1=abc"), body));
        assert!(!signature_ok(&secrets, Some("sha256=zz"), body));
        // GitHub's own example from its docs: secret "It's a Secret to Everybody", payload "Hello, World!".
        let docs = [zeroize::Zeroizing::new(b"It's a Secret to Everybody".to_vec())];
        assert!(signature_ok(
            &docs,
            Some("sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"),
            b"Hello, World!"
        ));
    }
}
