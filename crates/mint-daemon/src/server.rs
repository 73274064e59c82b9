//! The local API over HTTP/1.1 on the unix socket.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use mint_api::{MAX_REQUEST_BODY, TokenStatus, route};
use mint_credential::Request as CredentialRequest;
use tokio::net::UnixListener;
use tokio::time::Instant;

use crate::answer::{empty, mint_failed, refusal};
use crate::budget::Charge;
use crate::cache::GetError;
use crate::logs::{Repeated, Untrusted};
use crate::peer::{AllowedPeer, PeerError};
use crate::{Daemon, Source};

/// How long `GET /v1/status` waits for the broker's first token in broker mode.
const STATUS_LEARN_TIMEOUT: Duration = Duration::from_secs(10);
/// A client gets this long to send its request; a stalled one cannot hold a connection open.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// The socket's connection bounds. The held connections and the reserve stay well under a 1,024-descriptor
/// limit together; a burst of 232 git commands at once (docs/performance.md) fits in them.
pub(crate) const LIMITS: crate::http::Limits = crate::http::Limits {
    name: "socket",
    header_timeout: REQUEST_TIMEOUT,
    write_stall: Duration::from_secs(10),
    max_connections: 256,
    per_peer: 128,
    reserve: 512,
    reserve_deadline: Duration::from_secs(10),
    // Requests here are a few hundred bytes.
    max_buf_size: 16 * 1024,
};
/// Serve the local API on `listener` until `shutdown` resolves, then drain.
pub async fn serve(listener: UnixListener, daemon: Arc<Daemon>, shutdown: impl Future<Output = ()>) {
    let metrics = daemon.metrics.clone();
    let service_for = move |stream: &tokio::net::UnixStream| {
        let daemon = daemon.clone();
        // Once per connection: the kernel says who connected; every request on it is judged by that.
        let peer = crate::peer::check(stream, &daemon.allowed_uids);
        if let Err(e) = &peer
            && daemon.metrics.repeated.should_log(Repeated::ConnectionRefused)
        {
            tracing::warn!(error = %e, "refused a connection");
        }
        service_fn(move |req: Request<Incoming>| {
            let daemon = daemon.clone();
            let peer = peer.clone();
            async move {
                // GitHub's API for the repository (gh's http_unix_socket): mintd's own routes come first.
                let response =
                    if peer.is_ok() && !is_own_route(req.uri().path()) && crate::api_proxy::is_api(req.uri().path()) {
                        crate::api_proxy::handle(&daemon, req).await
                    } else {
                        handle(&daemon, peer, req)
                            .await
                            .map(|body| body.map_err(|never| match never {}).boxed())
                    };
                Ok::<_, Infallible>(response)
            }
        })
    };
    crate::http::serve(listener, LIMITS, service_for, metrics, shutdown).await;
}

async fn handle(
    daemon: &Daemon,
    peer: Result<AllowedPeer, PeerError>,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let started = Instant::now();
    let (parts, body) = req.into_parts();
    let route_name = parts.uri.path().to_owned();
    let peer = match peer {
        Ok(peer) => peer,
        Err(e) => return refusal(StatusCode::FORBIDDEN, &e.to_string()),
    };
    let response = match (&parts.method, parts.uri.path()) {
        (&Method::POST, route::CREDENTIAL_GET | route::CREDENTIAL_STORE | route::CREDENTIAL_ERASE) => {
            match read_body(daemon, body).await {
                Ok((bytes, _held)) => credential(daemon, &peer, parts.uri.path(), &bytes).await,
                Err(response) => response,
            }
        }
        (&Method::POST, route::PULLS) => match read_body(daemon, body).await {
            Ok((bytes, _held)) => crate::pulls::open(daemon, &peer, &bytes).await,
            Err(response) => response,
        },
        (&Method::GET, route::STATUS) => status(daemon).await,
        (&Method::GET, route::METRICS) => metrics(daemon),
        (&Method::GET, route::HEALTHZ) => text(StatusCode::OK, "ok\n"),
        (
            _,
            route::CREDENTIAL_GET | route::CREDENTIAL_STORE | route::CREDENTIAL_ERASE | route::STATUS | route::HEALTHZ,
        ) => refusal(StatusCode::METHOD_NOT_ALLOWED, "method not allowed on this route"),
        _ => refusal(StatusCode::NOT_FOUND, "no such route: see docs/local-api.md"),
    };
    if route_name == route::CREDENTIAL_GET {
        daemon.metrics.observe_get(started.elapsed());
    }
    tracing::debug!(
        route = %Untrusted(&route_name),
        status = response.status().as_u16(),
        elapsed_us = started.elapsed().as_micros(),
        "request"
    );
    response
}

/// mintd's own routes, which are never the API endpoint's.
fn is_own_route(path: &str) -> bool {
    path.starts_with("/v1/") || path == route::HEALTHZ || path == route::METRICS
}

/// Request body bytes the socket may hold for all connections together, past each request's first
/// [`FREE_BODY`]. Every connection's first bytes are within the connection caps' arithmetic (docs/security.md,
/// "resources"); what a request sends beyond them is charged here, so 768 connections trickling 64 KiB
/// bodies hold 2 MiB, not 48.
pub const BODY_BUDGET: usize = 2 * 1024 * 1024;
/// What any request may send without a charge: a credential request is a few hundred bytes, so a `get`
/// never waits on the budget; a pull request's long description may.
pub const FREE_BODY: usize = 4 * 1024;

/// A request's body, and what it holds of [`BODY_BUDGET`] until the request has been answered.
async fn read_body(daemon: &Daemon, body: Incoming) -> Result<(Bytes, Charge), Response<Full<Bytes>>> {
    let mut charge = Charge::new(daemon.bodies.clone(), daemon.metrics.clone());
    let read = async {
        let mut body = Limited::new(body, MAX_REQUEST_BODY);
        let mut bytes = BytesMut::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|_| {
                refusal(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    &format!("request body over {MAX_REQUEST_BODY} bytes"),
                )
            })?;
            let Ok(data) = frame.into_data() else { continue };
            if !charge.cover((bytes.len() + data.len()).saturating_sub(FREE_BODY)) {
                let mut busy = refusal(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &format!(
                        "mintd is holding {} MiB of request bodies for other connections: retry in a second",
                        BODY_BUDGET >> 20
                    ),
                );
                busy.headers_mut()
                    .insert(header::RETRY_AFTER, header::HeaderValue::from(1));
                return Err(busy);
            }
            bytes.extend_from_slice(&data);
        }
        Ok(bytes.freeze())
    };
    match tokio::time::timeout(REQUEST_TIMEOUT, read).await {
        Ok(Ok(bytes)) => Ok((bytes, charge)),
        Ok(Err(response)) => Err(response),
        Err(_) => Err(refusal(
            StatusCode::REQUEST_TIMEOUT,
            "request body not received in time",
        )),
    }
}

async fn credential(daemon: &Daemon, peer: &AllowedPeer, action: &str, body: &[u8]) -> Response<Full<Bytes>> {
    if action == route::CREDENTIAL_STORE {
        // mintd never keeps what git offers: the token it serves is the only credential it knows.
        return empty(StatusCode::NO_CONTENT, None);
    }
    let request = match CredentialRequest::decode(body) {
        Ok(r) => r,
        Err(e) => {
            if daemon.metrics.repeated.should_log(Repeated::CredentialMalformed) {
                tracing::warn!(error = %Untrusted(&e.to_string()), "refused a malformed credential request");
            }
            return refusal(StatusCode::BAD_REQUEST, &e.to_string());
        }
    };
    if action == route::CREDENTIAL_ERASE {
        // No repository known means no token was ever served: nothing to erase.
        if let Some(target) = daemon.cache.target()
            && let Ok(erase) = target.check_erase(&request)
        {
            daemon.cache.erase(&erase);
        }
        return empty(StatusCode::NO_CONTENT, None);
    }
    if let Some(proxy) = daemon.git_proxy_bound.get() {
        // Mediated mode: the token never enters the sandbox, whatever asks for it.
        daemon.metrics.declined.inc();
        let (scheme, host) = (daemon.server.scheme(), daemon.server.host());
        return refusal(
            StatusCode::FORBIDDEN,
            &format!(
                "mintd is in mediated mode and hands out no token: point git at its proxy instead, [url \"http://{proxy}/\"] insteadOf = {scheme}://{host}/"
            ),
        );
    }
    // A known repository declines the others before any mint. Not known yet (broker mode, before the first
    // token): a request for this GitHub at all learns it from a mint, then is judged against it.
    let target = if let Some(target) = daemon.cache.target() {
        target
    } else {
        if let Err(decline) = daemon.server.admits(&request) {
            return declined(daemon, &decline.to_string());
        }
        match daemon.cache.learn_target().await {
            Ok(target) => target,
            Err(failure) => return mint_failed(&failure, refusal),
        }
    };
    let approved = match target.check_get(&request) {
        Ok(approved) => approved,
        Err(decline) => return declined(daemon, &decline.to_string()),
    };
    match daemon.cache.get(peer, &approved).await {
        Ok(cached) => {
            let expiry = cached.password_expiry_utc(Instant::now());
            match mint_credential::encode_answer(cached.token.expose(), expiry) {
                Ok(answer) => Response::builder()
                    .status(StatusCode::OK)
                    .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
                    .header(header::CACHE_CONTROL, "no-store")
                    .body(Full::new(Bytes::from(answer)))
                    .expect("static headers are valid"),
                Err(e) => refusal(StatusCode::BAD_GATEWAY, &e.to_string()),
            }
        }
        Err(GetError::Failed(failure)) => mint_failed(&failure, refusal),
        Err(GetError::Moved { now }) => declined(
            daemon,
            &format!(
                "the repository changed while the token was minted: tokens are now for {}",
                now.repo()
            ),
        ),
    }
}

/// Not this daemon's request: 204 with the reason, so git moves on to its next helper.
fn declined(daemon: &Daemon, reason: &str) -> Response<Full<Bytes>> {
    daemon.metrics.declined.inc();
    if daemon.metrics.repeated.should_log(Repeated::CredentialDeclined) {
        tracing::info!(reason = %Untrusted(reason), "declined a credential request");
    }
    empty(StatusCode::NO_CONTENT, Some(reason))
}

/// What mintd serves. In broker mode the repository is the latest token's: before the first token, ask
/// the broker for one, so `mint clone` (which reads the repository here) works on a fresh sandbox. A failure
/// is reported in `last_error`, not as a failed status.
async fn status(daemon: &Daemon) -> Response<Full<Bytes>> {
    if matches!(daemon.source, Source::Broker { .. }) && daemon.cache.scope().is_none() {
        let _ = tokio::time::timeout(STATUS_LEARN_TIMEOUT, daemon.cache.learn_target()).await;
    }
    let stats = daemon.cache.stats();
    let now = Instant::now();
    let token = daemon.cache.current().map(|c| TokenStatus {
        expires_at: humantime::format_rfc3339_seconds(c.expires_at).to_string(),
        expires_in_seconds: c.remaining(now).as_secs(),
        minted_at: humantime::format_rfc3339_seconds(c.minted_at).to_string(),
    });
    // Broker mode: the repository and installation are the latest token's, unknown before the first.
    let scope = daemon.cache.scope();
    let (app_id, permissions, broker) = match &daemon.source {
        Source::App { app_id, permissions } => (app_id.clone(), permissions.clone(), None),
        Source::Broker { url } => (
            String::new(),
            daemon.cache.current().map_or_else(
                || mint_github::Permissions::least().to_string(),
                |c| c.permissions.to_string(),
            ),
            Some(url.clone()),
        ),
    };
    let report = mint_api::Status {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        repository: scope.as_ref().map(|s| s.target.repo().to_string()).unwrap_or_default(),
        installation_id: scope.as_ref().map_or(0, |s| s.installation_id),
        app_id,
        github_url: daemon.github_url.clone(),
        api_url: daemon.api_url.clone(),
        permissions,
        token,
        mints: stats.mints,
        last_error: stats.last_error,
        uptime_seconds: daemon.started.elapsed().as_secs(),
        git_proxy: daemon.git_proxy_bound.get().map(ToString::to_string),
        branch_prefix: daemon.branch_prefix.clone(),
        broker,
    };
    let body = serde_json::to_vec_pretty(&report).expect("Status always serialises");
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .expect("static headers are valid")
}

fn metrics(daemon: &Daemon) -> Response<Full<Bytes>> {
    let life = daemon.cache.current().map(|c| c.remaining(Instant::now()).as_secs());
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")
        .body(Full::new(Bytes::from(daemon.metrics.render(life))))
        .expect("static headers are valid")
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .expect("static headers are valid")
}
