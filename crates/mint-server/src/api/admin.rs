//! The orchestrator's routes (admin token): products, their connection, sandboxes and teardown.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use mint_api::broker::ErrorCode;
use mint_credential::RepoName;
use serde::Deserialize;
use serde_json::json;

use crate::http::{Admin, ApiError, Id, Input, json};
use crate::model::{Connection, SandboxRow, now, rfc3339};
use crate::secrets::{SandboxCredential, new_id};
use crate::state::AppState;
use crate::store::{Actor, Cursor, Whose};

/// The longest a sandbox credential may be asked to live.
const MAX_SANDBOX_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
const MAX_MEMBERS: usize = 1000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewProduct {
    name: String,
    #[serde(default)]
    members: Vec<String>,
}

/// `POST /api/v1/products` → 201 `{"id"}`.
pub async fn create_product(
    _admin: Admin,
    State(state): State<Arc<AppState>>,
    Input(input): Input<NewProduct>,
) -> Result<Response, ApiError> {
    let name = input.name.trim();
    if name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "name must be 1 to 200 characters without control characters",
        ));
    }
    if input.members.len() > MAX_MEMBERS {
        return Err(ApiError::bad_request(format!(
            "at most {MAX_MEMBERS} members per product"
        )));
    }
    let mut members = Vec::with_capacity(input.members.len());
    for login in &input.members {
        if !is_github_login(login) {
            return Err(ApiError::bad_request(format!(
                "member {login:?} is not a GitHub login: 1 to 39 letters, digits or single hyphens, not starting or ending with one"
            )));
        }
        members.push(login.to_ascii_lowercase());
    }
    let id = new_id("prd_");
    state.store.create_product(&id, name, &members, now()).await?;
    tracing::info!(product = %id, members = members.len(), "product created");
    Ok(json(StatusCode::CREATED, &json!({"id": id})))
}

fn is_github_login(login: &str) -> bool {
    (1..=39).contains(&login.len())
        && !login.starts_with('-')
        && !login.ends_with('-')
        && !login.contains("--")
        && login.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutConnection {
    installation_id: u64,
    repository: String,
}

/// `PUT /api/v1/products/{id}/connection`: bind an installation and one repository, after GitHub confirms
/// the installation exists, is not suspended and can mint for the repository.
pub async fn put_connection(
    _admin: Admin,
    State(state): State<Arc<AppState>>,
    id: Id,
    Input(input): Input<PutConnection>,
) -> Result<Response, ApiError> {
    let repository: RepoName = input
        .repository
        .parse()
        .map_err(|e: mint_credential::RepoNameError| ApiError::bad_request(e.to_string()))?;
    if state.store.product(&id).await?.is_none() {
        return Err(ApiError::no_product(&id));
    }
    let permit = state
        .turn(input.installation_id, &id)
        .await
        .map_err(|refused| crate::http::not_now(refused, input.installation_id))?;
    let verified = state.github.verify(input.installation_id, &repository).await;
    drop(permit);
    if let Err(crate::github::ConnectError::GitHub(e)) = &verified {
        state.noticed(input.installation_id, e).await;
    }
    let verified = verified?;
    let connection = verified.connection(now());
    let queued = state.store.put_connection(&id, &connection, &Actor::Admin).await?;
    if queued > 0 {
        crate::revoker::settle(&state, Whose::Product(&id)).await;
    }
    tracing::info!(
        product = %*id,
        installation = verified.installation_id,
        repository_id = verified.repository_id,
        queued,
        "connection set; tokens for anything else are revoked"
    );
    Ok(json(
        StatusCode::OK,
        &serde_json::to_value(connection.view(&id)).expect("serialises"),
    ))
}

/// `GET /api/v1/products/{id}/connection`.
pub async fn get_connection(_admin: Admin, State(state): State<Arc<AppState>>, id: Id) -> Result<Response, ApiError> {
    let connection = state
        .store
        .connection(&id)
        .await?
        .ok_or_else(|| ApiError::no_product(&id))?;
    Ok(json(
        StatusCode::OK,
        &serde_json::to_value(connection.view(&id)).expect("serialises"),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    limit: Option<String>,
    before: Option<String>,
}

/// The most events one page of the audit trail holds, and how many unless asked.
const AUDIT_PAGE_MAX: i64 = 500;
const AUDIT_PAGE: i64 = 50;

/// `GET /api/v1/products/{id}/audit?limit=N&before=CURSOR`: the product's audit trail, newest first, a page
/// at a time; `next` is the cursor of the following page, absent on the last one.
pub async fn audit(
    _admin: Admin,
    State(state): State<Arc<AppState>>,
    id: Id,
    query: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| {
        ApiError::bad_request(format!(
            "{}: the audit trail takes limit=1..{AUDIT_PAGE_MAX} and before=<the previous page's next>",
            e.body_text()
        ))
    })?;
    let limit = match query.limit.as_deref() {
        None => AUDIT_PAGE,
        Some(n) => n
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=AUDIT_PAGE_MAX).contains(n))
            .ok_or_else(|| ApiError::bad_request(format!("limit must be a number from 1 to {AUDIT_PAGE_MAX}")))?,
    };
    let before = match query.before.as_deref() {
        None => None,
        Some(cursor) => Some(Cursor::parse(cursor).ok_or_else(|| {
            ApiError::bad_request(
                "before is not a cursor this server gave out: pass the previous page's next as it was",
            )
        })?),
    };
    if state.store.product(&id).await?.is_none() {
        return Err(ApiError::no_product(&id));
    }
    let (events, next) = state.store.audit_events(&id, before.as_ref(), limit).await?;
    Ok(json(
        StatusCode::OK,
        &json!({"events": events, "next": next.map(|c| c.encode())}),
    ))
}

/// `DELETE /api/v1/products/{id}/connection`: Disconnect. The App stays installed (other products may share
/// the installation) and no code is touched; every live token of the product's sandboxes is revoked at
/// GitHub, and their mintds hear why at once.
pub async fn disconnect(_admin: Admin, State(state): State<Arc<AppState>>, id: Id) -> Result<Response, ApiError> {
    if state.store.product(&id).await?.is_none() {
        return Err(ApiError::no_product(&id));
    }
    let connection = Connection::not_connected("GitHub was disconnected: connect it again to run coding tasks", now());
    let queued = state.store.put_connection(&id, &connection, &Actor::Admin).await?;
    let pending = crate::revoker::settle(&state, Whose::Product(&id)).await;
    tracing::info!(product = %*id, queued, pending, "disconnected; its sandboxes' tokens are revoked");
    Ok(json(
        StatusCode::OK,
        &serde_json::to_value(connection.view(&id)).expect("serialises"),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSandbox {
    #[serde(default)]
    ttl_seconds: Option<u64>,
}

/// `POST /api/v1/products/{id}/sandboxes` → 201 `{"sandbox_id", "credential", "expires_at"}`. The credential
/// is in this answer and nowhere else: only its SHA-256 is stored.
pub async fn create_sandbox(
    _admin: Admin,
    State(state): State<Arc<AppState>>,
    id: Id,
    Input(input): Input<NewSandbox>,
) -> Result<Response, ApiError> {
    let ttl = match input.ttl_seconds {
        None => state.sandbox_ttl,
        Some(s) if (1..=MAX_SANDBOX_TTL.as_secs()).contains(&s) => Duration::from_secs(s),
        Some(_) => {
            return Err(ApiError::bad_request(format!(
                "ttl_seconds must be 1 to {}",
                MAX_SANDBOX_TTL.as_secs()
            )));
        }
    };
    if state.store.product(&id).await?.is_none() {
        return Err(ApiError::no_product(&id));
    }
    let created_at = now();
    let sandbox = SandboxRow {
        id: new_id("sbx_"),
        product_id: id.to_string(),
        created_at,
        expires_at: created_at + i64::try_from(ttl.as_secs()).expect("at most a week"),
        revoked_at: None,
    };
    let credential = SandboxCredential::generate();
    state.store.create_sandbox(&sandbox, &credential.sha256()).await?;
    tracing::info!(sandbox = %sandbox.id, product = %*id, "sandbox created");
    Ok(json(
        StatusCode::CREATED,
        &json!({
            "sandbox_id": sandbox.id,
            "credential": credential.expose(),
            "expires_at": rfc3339(sandbox.expires_at),
        }),
    ))
}

/// The most sandboxes one listing shows (the newest); `total` counts them all.
const SANDBOX_LIST_MAX: i64 = 500;

/// `GET /api/v1/products/{id}/sandboxes`: the product's sandboxes that may still get tokens, newest first,
/// each with its live tokens' repository and expiry (never a token), and how many there are in all.
pub async fn list_sandboxes(_admin: Admin, State(state): State<Arc<AppState>>, id: Id) -> Result<Response, ApiError> {
    if state.store.product(&id).await?.is_none() {
        return Err(ApiError::no_product(&id));
    }
    let (sandboxes, total) = state.store.product_sandboxes(&id, now(), SANDBOX_LIST_MAX).await?;
    let sandboxes: Vec<serde_json::Value> = sandboxes
        .iter()
        .map(|s| {
            json!({
                "sandbox_id": s.id,
                "created_at": rfc3339(s.created_at),
                "expires_at": rfc3339(s.expires_at),
                "live_tokens": s.live_tokens.iter().map(|t| json!({
                    "repository": t.repository,
                    "minted_at": rfc3339(t.minted_at),
                    "expires_at": rfc3339(t.expires_at),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    Ok(json(StatusCode::OK, &json!({"sandboxes": sandboxes, "total": total})))
}

/// `GET /api/v1/sandboxes/{id}`: the sandbox and every token minted for it, with each one's state
/// (`live`, `revoking`, `revoked`, `expired`) and, while GitHub has not agreed to a revocation, the attempts
/// and the last error. Never a token: tokens are named by the first 12 hex digits of their SHA-256.
pub async fn get_sandbox(_admin: Admin, State(state): State<Arc<AppState>>, id: Id) -> Result<Response, ApiError> {
    let sandbox = state.store.sandbox(&id).await?.ok_or_else(|| no_sandbox(&id))?;
    let now = now();
    let tokens: Vec<serde_json::Value> = state
        .store
        .sandbox_tokens(&id)
        .await?
        .iter()
        .map(|t| {
            json!({
                "token_sha256": t.token_sha256.get(..12).unwrap_or_default(),
                "state": t.state(now),
                "installation_id": t.installation_id,
                "repository_id": t.repository_id,
                "minted_at": rfc3339(t.minted_at),
                "expires_at": rfc3339(t.expires_at),
                "revoked_at": t.revoked_at.map(rfc3339),
                "revoke_reason": t.revoke_reason,
                "revoke_attempts": t.revoke_attempts,
                "revoke_error": t.revoke_error,
            })
        })
        .collect();
    Ok(json(
        StatusCode::OK,
        &json!({
            "sandbox_id": sandbox.id,
            "product_id": sandbox.product_id,
            "created_at": rfc3339(sandbox.created_at),
            "expires_at": rfc3339(sandbox.expires_at),
            "torn_down_at": sandbox.revoked_at.map(rfc3339),
            "tokens": tokens,
        }),
    ))
}

fn no_sandbox(id: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        ErrorCode::SandboxNotFound,
        format!("no sandbox {id}: it was never created here"),
    )
}

/// `DELETE /api/v1/sandboxes/{id}` → 204: the credential stops working at once and, in the same
/// transaction, every live token minted for the sandbox is queued for revocation, which any replica carries
/// out. The answer waits a moment for GitHub's word (usually all revoked by then); what is left is retried
/// until it succeeds or the token expires.
pub async fn teardown(_admin: Admin, State(state): State<Arc<AppState>>, id: Id) -> Result<Response, ApiError> {
    if state.store.revoke_sandbox(&id, now()).await?.is_none() {
        return Err(no_sandbox(&id));
    }
    let pending = crate::revoker::settle(&state, Whose::Sandbox(&id)).await;
    if pending > 0 {
        tracing::warn!(sandbox = %*id, pending, "torn down; some tokens are not revoked yet, and revocation goes on");
    }
    tracing::info!(sandbox = %*id, "sandbox torn down");
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /api/v1/reconcile` (admin): run the sweep now.
pub async fn reconcile_now(_admin: Admin, State(state): State<Arc<AppState>>) -> Result<Response, ApiError> {
    let looked = crate::sync::reconcile(&state)
        .await
        .map_err(|e| crate::http::github_failure(&e))?;
    Ok(json(StatusCode::OK, &json!({"connections": looked})))
}
