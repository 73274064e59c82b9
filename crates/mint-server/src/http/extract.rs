//! What a handler can rely on before it runs: the admin token was shown, a sandbox credential is well
//! formed, a JSON body was read within its cap and the server's budget and parsed with no unknown field.

use std::sync::Arc;

use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use http::request::Parts;
use http::{HeaderMap, StatusCode, header};
use mint_api::broker::ErrorCode;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::error::{ApiError, body_error};
use crate::secrets::sha256_hex;
use crate::state::AppState;

/// Request bodies above this are refused (413) before they are parsed.
pub const MAX_BODY: usize = 64 * 1024;

/// A JSON body: at most [`MAX_BODY`] bytes, no unknown fields (each input type denies them), and an
/// empty body read as `{}`.
#[derive(Debug)]
pub struct Input<T>(pub T);

impl<T: DeserializeOwned> FromRequest<Arc<AppState>> for Input<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &Arc<AppState>) -> Result<Self, ApiError> {
        if declared_length(req.headers()).is_some_and(|n| n > MAX_BODY as u64) {
            return Err(body_error(&crate::body::BodyError::TooLarge { limit: MAX_BODY }));
        }
        let held = crate::body::read(req.into_body(), MAX_BODY, MAX_BODY, &state.bodies, |_| {})
            .await
            .map_err(|e| body_error(&e))?
            .expect("kept whole: retain equals the limit");
        let text: &[u8] = if held.bytes.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &held.bytes
        };
        serde_json::from_slice(text)
            .map(Input)
            .map_err(|e| ApiError::bad_request(format!("the body is not the JSON this route takes: {e}")))
    }
}

/// The body's length as the client declared it, if it did.
pub fn declared_length(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

/// The bearer credential of a request, if it has exactly one well-formed one.
fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, credential) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| credential.trim())
}

/// Proof that the request carried the admin token. Only this extractor makes one, and every orchestrator
/// route takes it.
#[derive(Debug)]
pub struct Admin(());

impl FromRequestParts<Arc<AppState>> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> Result<Self, ApiError> {
        match bearer(parts) {
            Some(token) if state.admin.matches(token) => Ok(Admin(())),
            _ => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                ErrorCode::Unauthorized,
                "this route needs the admin token: send Authorization: Bearer <the token in --admin-token-file>",
            )),
        }
    }
}

/// Proof that the request carried the metrics token (or the admin token): what `GET /metrics` takes.
#[derive(Debug)]
pub struct MetricsReader(());

impl FromRequestParts<Arc<AppState>> for MetricsReader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> Result<Self, ApiError> {
        match bearer(parts) {
            Some(token)
                if state.admin.matches(token) || state.metrics_token.as_ref().is_some_and(|t| t.matches(token)) =>
            {
                Ok(MetricsReader(()))
            }
            _ => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                ErrorCode::Unauthorized,
                "/metrics needs a token: send Authorization: Bearer <the token in --metrics-token-file, or the admin token>",
            )),
        }
    }
}

/// The `{id}` in a route.
pub type Id = Path<String>;

/// Bodies that take nothing: `{}` or empty.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Nothing {}

/// The credential's SHA-256, if the request carries a well-formed one (malformed ones are refused before the
/// database, with the same answer as unknown ones).
pub fn credential_hash(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, credential) = value.split_once(' ')?;
    let credential = credential.trim();
    (scheme.eq_ignore_ascii_case("bearer") && crate::secrets::plausible_credential(credential))
        .then(|| sha256_hex(credential.as_bytes()))
}
