//! Every route mint-server serves, and the only module that names handlers: the orchestrator's API, the
//! broker's, the Integrations page, GitHub's webhook, and the probes.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use http::{StatusCode, header};

use crate::api::{admin, token};
use crate::http::{ApiError, MetricsReader};
use crate::state::AppState;
use crate::web::{oauth, pages};

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
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
        )
        .route("/api/v1/reconcile", post(admin::reconcile_now))
        .route(
            mint_api::broker::TOKEN_PATH,
            post(token::token).layer(axum::middleware::from_fn_with_state(state.clone(), timed)),
        )
        .route(mint_api::broker::SANDBOX_PATH, get(token::sandbox))
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
        .route("/products/{id}/github/disconnect", post(pages::disconnect))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
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
