//! Every route mint-server serves, and the only module that names handlers: the orchestrator's API, the
//! broker's, the Integrations page, GitHub's webhook, and the probes.

use std::sync::Arc;

use std::time::Duration;

use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use http::{HeaderValue, StatusCode, header};
use mint_api::broker::ErrorCode;
use tower::ServiceBuilder;
use tower_http::set_header::SetResponseHeaderLayer;

use crate::api::{admin, token};
use crate::http::{ApiError, MetricsReader};
use crate::state::AppState;
use crate::web::{oauth, pages};

/// How long a page, an admin call or a webhook may take before the answer is a 503 that says so: the
/// GitHub calls inside have their own, shorter timeouts, so this only catches what hangs elsewhere. The
/// broker's routes are not bounded here: a token request waits its installation's turn (bounded by
/// `fleet::MAX_QUEUE_WAIT`) and the sandbox watch waits as long as it was asked to.
pub const HANDLER_TIMEOUT: Duration = Duration::from_secs(30);

pub fn router(state: Arc<AppState>) -> Router {
    let admin = Router::new()
        .route("/api/v1/products", post(admin::create_product))
        .route(
            "/api/v1/products/{id}/connection",
            put(admin::put_connection)
                .get(admin::get_connection)
                .delete(admin::disconnect),
        )
        .route(
            "/api/v1/products/{id}/sandboxes",
            post(admin::create_sandbox).get(admin::list_sandboxes),
        )
        .route("/api/v1/products/{id}/audit", get(admin::audit))
        .route(
            "/api/v1/sandboxes/{id}",
            delete(admin::teardown).get(admin::get_sandbox),
        );
    let web = Router::new()
        .route("/", get(pages::home))
        .route("/login", get(oauth::login))
        .route("/logout", post(oauth::logout))
        .route("/static/mint.css", get(pages::stylesheet))
        .route("/github/oauth/callback", get(oauth::oauth_callback))
        .route("/github/setup", get(oauth::setup))
        .route("/github/webhook", post(crate::webhook::receive))
        .route("/products/{id}/integrations", get(pages::integrations))
        .route("/products/{id}/github/connect", post(pages::connect))
        .route("/products/{id}/github/install", post(pages::install))
        .route("/products/{id}/github/choose", get(pages::choose))
        .route("/products/{id}/github/bind", post(pages::bind))
        .route(
            "/products/{id}/github/disconnect",
            get(pages::confirm_disconnect).post(pages::disconnect),
        );
    let bounded = admin.merge(web).layer(
        ServiceBuilder::new()
            .layer(HandleErrorLayer::new(timed_out))
            .timeout(HANDLER_TIMEOUT),
    );
    let unbounded = Router::new()
        // Every sandbox at once, and every connection: neither fits one deadline.
        .route("/api/v1/reconcile", post(admin::reconcile_now))
        .route(
            mint_api::broker::TOKEN_PATH,
            post(token::token).layer(axum::middleware::from_fn_with_state(state.clone(), timed)),
        )
        .route(mint_api::broker::SANDBOX_PATH, get(token::sandbox))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics));
    let https = state
        .web
        .as_ref()
        .is_some_and(|web| web.public_url.starts_with("https://"));
    let router = bounded
        .merge(unbounded)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed);
    with_security_headers(router, https).with_state(state)
}

/// What every answer carries unless its handler set its own: nothing is sniffed, framed or cached (the
/// stylesheet sets its own caching), no referrer leaves the site, and, when browsers reach us over HTTPS,
/// they keep to it.
fn with_security_headers<S: Clone + Send + Sync + 'static>(router: Router<S>, https: bool) -> Router<S> {
    let header = |name, value| SetResponseHeaderLayer::if_not_present(name, HeaderValue::from_static(value));
    let router = router
        .layer(header(header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .layer(header(header::X_FRAME_OPTIONS, "DENY"))
        .layer(header(header::REFERRER_POLICY, "same-origin"))
        .layer(header(header::CACHE_CONTROL, "no-store"));
    if https {
        router.layer(header(header::STRICT_TRANSPORT_SECURITY, "max-age=31536000"))
    } else {
        router
    }
}

async fn timed_out(error: tower::BoxError) -> ApiError {
    if error.is::<tower::timeout::error::Elapsed>() {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::TimedOut,
            format!(
                "mint-server did not finish this request within {} s: retry; if it keeps happening, the operator finds the cause in the server's log",
                HANDLER_TIMEOUT.as_secs()
            ),
        )
        .retry_after(Duration::from_secs(5))
    } else {
        tracing::error!(%error, "a request failed outside its handler");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Internal,
            "mint-server failed this request: the operator finds the cause in the server's log",
        )
    }
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

/// The broker's token route, timed from request to answer.
async fn timed(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    state
        .metrics
        .broker_answered("token", response.status(), started.elapsed().as_secs_f64());
    response
}

/// `GET /metrics` (the metrics or admin token): the counters, with what is read at the scrape.
async fn metrics(_reader: MetricsReader, State(state): State<Arc<AppState>>) -> Response {
    match state.store.token_counts(crate::model::now()).await {
        Ok(tokens) => state.metrics.observe(state.store.pool_stats(), tokens),
        Err(e) => tracing::warn!(error = %e, "/metrics: the token counts could not be read; serving the last ones"),
    }
    (
        StatusCode::OK,
        [
            (
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            ),
            (header::CACHE_CONTROL, "no-store"),
        ],
        state.metrics.encode(),
    )
        .into_response()
}

async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        ErrorCode::NotFound,
        "no such route: see docs/server.md",
    )
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::MethodNotAllowed,
        "this route does not take that method: see docs/server.md",
    )
}

fn text(status: StatusCode, body: &'static str) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
}

#[cfg(test)]
mod tests {
    use axum::response::IntoResponse as _;

    use super::*;

    #[tokio::test]
    async fn a_request_past_its_deadline_is_a_503_that_says_so() {
        let elapsed: tower::BoxError = Box::new(tower::timeout::error::Elapsed::new());
        let answer = timed_out(elapsed).await.into_response();
        assert_eq!(answer.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(answer.headers()[header::RETRY_AFTER], "5");
        let body = axum::body::to_bytes(answer.into_body(), 4096).await.expect("body");
        let body: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(body["status"], "timed_out");
        assert!(
            body["message"].as_str().is_some_and(|m| m.contains("within 30 s")),
            "{body}"
        );
    }
}
