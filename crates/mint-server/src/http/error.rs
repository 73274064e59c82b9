//! Every failure leaves through [`ApiError`] as mint-api's [`ErrorBody`], `{"status": CODE, "message":
//! SENTENCE}`; the sentence names the cause and the way out. What the store, GitHub, the mint gate and body reading report becomes one here.

use std::time::Duration;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use mint_api::broker::{ErrorBody, ErrorCode};

use crate::fleet::Refused;
use crate::github::ConnectError;
use crate::model::now;
use crate::store::StoreError;

/// A JSON answer that must not be cached anywhere (it may carry a secret shown once).
pub fn json(status: StatusCode, value: &impl serde::Serialize) -> Response {
    let body = serde_json::to_vec(value).expect("mint-server's answers always serialise");
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
    pub code: ErrorCode,
    pub message: String,
    pub retry_after: Option<Duration>,
    /// The request's body was not read to its end: the connection cannot carry another request.
    pub close: bool,
}

impl ApiError {
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
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
        Self::new(StatusCode::BAD_REQUEST, ErrorCode::BadRequest, message)
    }

    pub fn no_product(id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            ErrorCode::ProductNotFound,
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
        let body = ErrorBody {
            code: self.code,
            message: self.message,
        };
        let mut response = json(self.status, &body);
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
                ErrorCode::DatabaseUnavailable,
                "mint-server's database is unavailable: try again shortly",
            )
            .retry_after(Duration::from_secs(2))
        } else {
            tracing::error!(error = %e, "database error");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                ErrorCode::DatabaseError,
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
            ) => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                ErrorCode::ConnectionRefused,
                e.to_string(),
            ),
            ConnectError::GitHub(github) => github_failure(github),
        }
    }
}

/// GitHub failed in a way that says nothing about the connection: busy, down, or our App is misconfigured.
pub fn github_failure(e: &mint_github::GithubError) -> ApiError {
    use mint_github::GithubError as G;
    match e {
        G::RateLimited { retry_after, .. } => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::GithubRateLimited,
            e.to_string(),
        )
        .retry_after(retry_after.unwrap_or(Duration::from_secs(60))),
        G::BadAppCredentials { .. } | G::Jwt(_) => {
            tracing::error!(error = %e, "GitHub refused the App's credentials");
            ApiError::new(
                StatusCode::BAD_GATEWAY,
                ErrorCode::AppMisconfigured,
                "GitHub refused mint-server's App credentials: the operator must check --app-id and --private-key",
            )
        }
        _ if e.is_transient() => ApiError::new(StatusCode::BAD_GATEWAY, ErrorCode::GithubUnavailable, e.to_string())
            .retry_after(Duration::from_secs(5)),
        _ => ApiError::new(StatusCode::BAD_GATEWAY, ErrorCode::GithubError, e.to_string()),
    }
}

/// A body that could not be read, as the client sees it.
pub fn body_error(e: &crate::body::BodyError) -> ApiError {
    use crate::body::BodyError as B;
    match e {
        B::TooLarge { limit } => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::BodyTooLarge,
            format!("request bodies are limited to {limit} bytes"),
        ),
        B::Busy => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Busy, e.to_string())
            .retry_after(Duration::from_secs(1))
            .closing(),
        B::TimedOut => ApiError::new(StatusCode::REQUEST_TIMEOUT, ErrorCode::BodyTimeout, e.to_string()).closing(),
        B::Broken(_) => ApiError::bad_request(e.to_string()).closing(),
    }
}

pub fn sandbox_refused() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        ErrorCode::Unauthorized,
        "the sandbox credential is unknown, expired or revoked: ask the orchestrator for a new sandbox",
    )
}

/// A call with the App key that was not started: GitHub's pause (seen by any replica), a queue that did not
/// move, or the database. Each is a 503 with `Retry-After`, which mintd waits out within its deadline.
pub fn not_now(refused: Refused, installation_id: u64) -> ApiError {
    match refused {
        Refused::Paused { until } => {
            let wait = u64::try_from(until - now()).unwrap_or(1).max(1);
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::GithubRateLimited,
                format!(
                    "GitHub rate-limited minting for installation {installation_id}; every mint-server replica waits {wait} s before asking again: retry then"
                ),
            )
            .retry_after(Duration::from_secs(wait))
        }
        Refused::Busy { waited } => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::MintQueueFull,
            format!(
                "installation {installation_id} has as many mints in flight as mint-server allows (--mints-per-installation), and this request waited {} s for a turn: retry shortly",
                waited.as_secs()
            ),
        )
        .retry_after(Duration::from_secs(1)),
        Refused::Store(e) => e.into(),
    }
}
