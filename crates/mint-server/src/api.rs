//! The HTTP API: the orchestrator's routes (admin token), the broker route (sandbox credential), probes.
//! Every error leaves through [`ApiError`] as `{"status": CODE, "message": SENTENCE}`; the sentence names
//! the cause and the way out. Routes are documented in docs/server.md.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{FromRequest, FromRequestParts, Path, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use http::request::Parts;
use http::{HeaderValue, StatusCode, header};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::github::ConnectError;
use crate::state::AppState;
use crate::store::StoreError;

/// Request bodies above this are refused (413) before they are parsed.
pub const MAX_BODY: usize = 64 * 1024;

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/api/v1/products", post(crate::admin::create_product))
        .route(
            "/api/v1/products/{id}/connection",
            put(crate::admin::put_connection)
                .get(crate::admin::get_connection)
                .delete(crate::admin::disconnect),
        )
        .route("/api/v1/products/{id}/sandboxes", post(crate::admin::create_sandbox))
        .route(
            "/api/v1/sandboxes/{id}",
            delete(crate::admin::teardown).get(crate::admin::get_sandbox),
        )
        .route(mint_api::broker::TOKEN_PATH, post(crate::broker::token))
        .route(mint_api::broker::SANDBOX_PATH, get(crate::broker::sandbox))
        .route("/api/v1/reconcile", post(crate::webhook::reconcile_now))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .merge(crate::web::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

async fn healthz() -> Response {
    text(StatusCode::OK, "ok\n")
}

/// Ready when the database answers with the schema this binary expects (the key was loaded before
/// the listener existed).
async fn readyz(State(state): State<Arc<AppState>>) -> Result<Response, ApiError> {
    state.store.ready().await?;
    Ok(text(StatusCode::OK, "ready\n"))
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route: see docs/server.md")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not take that method: see docs/server.md",
    )
}

fn text(status: StatusCode, body: &'static str) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
}

/// A JSON answer that must not be cached anywhere (it may carry a secret shown once).
pub fn json(status: StatusCode, value: &serde_json::Value) -> Response {
    let body = serde_json::to_vec(value).expect("a JSON value always serialises");
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CACHE_CONTROL, "no-store")
        .body(Body::from(body))
        .expect("static headers are valid")
}

/// Every failure, as the client sees it.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub retry_after: Option<Duration>,
    /// The request's body was not read to its end: the connection cannot carry another request.
    pub close: bool,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
            close: false,
        }
    }

    #[must_use]
    pub fn closing(mut self) -> Self {
        self.close = true;
        self
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn no_product(id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "product_not_found",
            format!("no product {id}: create it with POST /api/v1/products"),
        )
    }

    #[must_use]
    pub fn retry_after(mut self, wait: Duration) -> Self {
        self.retry_after = Some(wait);
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = json(
            self.status,
            &serde_json::json!({"status": self.code, "message": self.message}),
        );
        if let Some(wait) = self.retry_after {
            let seconds = wait.as_secs().max(1).to_string();
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from_str(&seconds).expect("digits are a valid header"),
            );
        }
        if self.close || self.status == StatusCode::PAYLOAD_TOO_LARGE {
            // The rest of the body was never read: the connection cannot carry another request.
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        if e.is_transient() {
            tracing::warn!(error = %e, "database unavailable");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "database_unavailable",
                "mint-server's database is unavailable: try again shortly",
            )
            .retry_after(Duration::from_secs(2))
        } else {
            tracing::error!(error = %e, "database error");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "database_error",
                "mint-server's database failed; the operator finds the cause in the server's log",
            )
        }
    }
}

impl From<ConnectError> for ApiError {
    fn from(e: ConnectError) -> Self {
        use mint_github::GithubError as G;
        match &e {
            ConnectError::Suspended { .. }
            | ConnectError::WrongAccount { .. }
            | ConnectError::GitHub(
                G::InstallationNotFound { .. }
                | G::InstallationSuspended { .. }
                | G::RepositoryNotSelected { .. }
                | G::PermissionNotGranted { .. },
            ) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "connection_refused", e.to_string()),
            ConnectError::GitHub(github) => github_failure(github),
        }
    }
}

/// GitHub failed in a way that says nothing about the connection: busy, down, or our App is misconfigured.
pub fn github_failure(e: &mint_github::GithubError) -> ApiError {
    use mint_github::GithubError as G;
    match e {
        G::RateLimited { retry_after, .. } => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "github_rate_limited", e.to_string())
                .retry_after(retry_after.unwrap_or(Duration::from_secs(60)))
        }
        G::BadAppCredentials { .. } | G::Jwt(_) => {
            tracing::error!(error = %e, "GitHub refused the App's credentials");
            ApiError::new(
                StatusCode::BAD_GATEWAY,
                "app_misconfigured",
                "GitHub refused mint-server's App credentials: the operator must check --app-id and --private-key",
            )
        }
        _ if e.is_transient() => ApiError::new(StatusCode::BAD_GATEWAY, "github_unavailable", e.to_string())
            .retry_after(Duration::from_secs(5)),
        _ => ApiError::new(StatusCode::BAD_GATEWAY, "github_error", e.to_string()),
    }
}

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

/// A body that could not be read, as the client sees it.
pub fn body_error(e: &crate::body::BodyError) -> ApiError {
    use crate::body::BodyError as B;
    match e {
        B::TooLarge { limit } => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("request bodies are limited to {limit} bytes"),
        ),
        B::Busy => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "busy", e.to_string())
            .retry_after(Duration::from_secs(1))
            .closing(),
        B::TimedOut => ApiError::new(StatusCode::REQUEST_TIMEOUT, "body_timeout", e.to_string()).closing(),
        B::Broken(_) => ApiError::bad_request(e.to_string()).closing(),
    }
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
                "unauthorized",
                "this route needs the admin token: send Authorization: Bearer <the token in --admin-token-file>",
            )),
        }
    }
}

pub fn sandbox_refused() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "the sandbox credential is unknown, expired or revoked: ask the orchestrator for a new sandbox",
    )
}

/// The `{id}` in a route.
pub type Id = Path<String>;

/// Bodies that take nothing: `{}` or empty.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Nothing {}
