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
use mint_api::broker::ErrorCode;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use crate::body::BodyError;
use crate::http::{ApiError, json as json_response};
use crate::model::now;
use crate::state::AppState;
use crate::sync::{approve_requests, reconcile, refresh_installation};

/// GitHub caps webhook payloads at 25 MB; anything larger is not from GitHub.
pub const MAX_WEBHOOK_BODY: usize = 25 * 1024 * 1024;
/// A delivery's bytes kept to be parsed. The events mint takes are a few KiB (an installation with many
/// repositories lists them, ~150 bytes each); a signed delivery larger than this triggers the reconcile
/// sweep instead of being parsed.
pub const RETAIN: usize = 512 * 1024;
/// How long deliveries are remembered for deduplication: a replay inside this window is a duplicate.
pub const DEDUPE_WINDOW: Duration = Duration::from_secs(30 * 24 * 3600);

/// The events mint-server's App subscribes to, as metric labels; any other name counts as `other`.
const EVENTS: [&str; 8] = [
    "installation",
    "installation_repositories",
    "installation_target",
    "repository",
    "github_app_authorization",
    "ping",
    "pull_request",
    "pull_request_review",
];

/// Log lines anyone on the internet can cause (an unsigned or replayed delivery): a burst per window each,
/// then counted only; `mint_server_webhook_deliveries_total` counts every one.
static REPEATED: std::sync::LazyLock<mint_service::throttle::Throttle<&'static str>> =
    std::sync::LazyLock::new(Default::default);

pub async fn receive(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Response {
    let response = verify_and_queue(&state, &headers, body).await;
    // Only a signed delivery's event name is believed, and only from the list.
    let event = headers
        .get("x-github-event")
        .and_then(|v| v.to_str().ok())
        .and_then(|name| EVENTS.into_iter().find(|e| *e == name))
        .unwrap_or("other");
    let (event, outcome) = match response.status() {
        StatusCode::ACCEPTED => (event, "accepted"),
        StatusCode::OK => (event, "duplicate"),
        StatusCode::UNAUTHORIZED => ("unverified", "bad_signature"),
        _ => ("unverified", "refused"),
    };
    state.metrics.webhook(event, outcome);
    response
}

async fn verify_and_queue(state: &Arc<AppState>, headers: &HeaderMap, body: Body) -> Response {
    let Some(web) = state.web.as_ref() else {
        return ApiError::new(StatusCode::NOT_FOUND, ErrorCode::NotConfigured, "webhooks are not configured: start mint-server with --webhook-secret-file and the other connect-flow flags").into_response();
    };
    if crate::http::declared_length(headers).is_some_and(|n| n > MAX_WEBHOOK_BODY as u64) {
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
        if REPEATED.should_log("webhook_bad_signature") {
            tracing::warn!(
                present = headers.contains_key("x-hub-signature-256"),
                "refused a webhook with a bad or missing signature"
            );
        }
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            ErrorCode::BadSignature,
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
    let body_sha256 = hex::encode(digest.finalize());
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
            if REPEATED.should_log("webhook_replayed") {
                tracing::info!(%delivery, %event, "webhook delivery (or its signed body) seen before; not processed again");
            }
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
            ErrorCode::BodyTooLarge,
            format!("webhook bodies are limited to {MAX_WEBHOOK_BODY} bytes, GitHub's own cap"),
        ),
        other => crate::http::body_error(other),
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

/// A SHA-256 HMAC in hex, as GitHub writes it after `sha256=`.
fn decode_hex(text: &str) -> Option<[u8; 32]> {
    hex::FromHex::from_hex(text).ok()
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
        ("pull_request", _) => note_pull(state, installation, payload).await,
        ("pull_request_review", "submitted") => note_review(state, payload).await,
        _ => {}
    }
}

/// A coding task's pull request opened, edited, closed, merged or reopened: the card lists it with its state.
async fn note_pull(state: &AppState, installation: u64, payload: &Value) {
    let pull = &payload["pull_request"];
    let head = pull["head"]["ref"].as_str().unwrap_or_default();
    let (Some(repository_id), Some(number), true) = (
        payload["repository"]["id"].as_u64(),
        pull["number"].as_u64(),
        head.starts_with(crate::store::AGENT_BRANCH_PREFIX),
    ) else {
        return;
    };
    let html_url = pull["html_url"].as_str().unwrap_or_default();
    // Only web links become hrefs on the page.
    if !(html_url.starts_with("https://") || html_url.starts_with("http://")) {
        return;
    }
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    let pull_state = match (
        pull["state"].as_str(),
        pull["merged"].as_bool(),
        pull["draft"].as_bool(),
    ) {
        (Some("closed"), Some(true), _) => "merged",
        (Some("closed"), ..) => "closed",
        (_, _, Some(true)) => "draft",
        _ => "open",
    };
    let now = crate::model::now();
    let noted = crate::store::AgentPull {
        installation_id: installation,
        repository_id,
        number,
        repository: text(&payload["repository"]["full_name"]),
        title: text(&pull["title"]),
        html_url: html_url.to_owned(),
        head_ref: head.to_owned(),
        base_ref: text(&pull["base"]["ref"]),
        state: pull_state.to_owned(),
        review_state: None,
        ticket: ticket(pull["body"].as_str().unwrap_or_default()),
        opened_at: now,
        updated_at: now,
    };
    if let Err(e) = state.store.note_pull(&noted).await {
        tracing::warn!(error = %e, repository_id, number, "could not record a pull request for the card");
    }
}

/// The ticket `mint publish --ticket` ends a pull request's body with (mintd writes `Ticket: ID`).
fn ticket(body: &str) -> Option<String> {
    body.lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("Ticket: "))
        .map(str::trim)
        .filter(|t| !t.is_empty() && t.len() <= 200 && !t.contains(char::is_whitespace))
        .map(str::to_owned)
}

/// A review submitted on a pull request the card knows: its verdict.
async fn note_review(state: &AppState, payload: &Value) {
    let verdict = match payload["review"]["state"]
        .as_str()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("approved") => "approved",
        Some("changes_requested") => "changes_requested",
        Some("commented") => "commented",
        _ => return,
    };
    let (Some(repository_id), Some(number)) = (
        payload["repository"]["id"].as_u64(),
        payload["pull_request"]["number"].as_u64(),
    ) else {
        return;
    };
    if let Err(e) = state
        .store
        .note_review(repository_id, number, verdict, crate::model::now())
        .await
    {
        tracing::warn!(error = %e, repository_id, number, "could not record a review for the card");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(secret: &[u8], body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("key");
        mac.update(body);
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    }

    #[test]
    fn the_ticket_is_the_last_ticket_line_of_the_body() {
        assert_eq!(super::ticket("Fixes it.\n\nTicket: ACME-7").as_deref(), Some("ACME-7"));
        assert_eq!(
            super::ticket("Ticket: https://x.invalid/T-1\n").as_deref(),
            Some("https://x.invalid/T-1")
        );
        assert_eq!(super::ticket("no ticket here"), None);
        assert_eq!(super::ticket("Ticket: two words"), None);
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
