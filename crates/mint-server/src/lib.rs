//! mint-server: the control plane. The one holder of the GitHub App key; keeps each product's GitHub
//! connection in a database (`SQLite` embedded, or `PostgreSQL`) and mints repository-scoped tokens for
//! sandboxes on request (`mintd --broker`).

pub mod api;
pub mod body;
pub mod config;
pub mod events;
pub mod fleet;
pub mod github;
pub mod http;
pub mod limit;
pub mod metrics;
pub mod model;
pub mod revoker;
pub mod routes;
pub mod seal;
pub mod secrets;
pub mod site;
pub mod state;
pub mod store;
pub mod sync;
mod tls;
pub mod web;
pub mod webhook;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use mint_github::{App, GitHubClient};
use tokio::net::TcpListener;

pub use config::{Args, Config, ConfigError};

/// Exit code for a configuration that cannot work (`EX_USAGE`).
pub use mint_service::daemon::EXIT_CONFIG;
/// A client gets this long to send its request headers (or, on a kept-alive connection, its next
/// request's), and a TLS client to finish its handshake.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// hyper's read buffer per connection (its default is about 400 KiB): a request head larger than this
/// is refused (431), so a thousand connections sending huge heads hold 16 MiB, not 400.
const MAX_BUF_SIZE: usize = 16 * 1024;
/// After shutdown is asked for, requests in flight get this long to finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Open the database (migrating it), then serve on `listener` until `shutdown` resolves.
pub async fn run(config: Config, listener: TcpListener, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let client = GitHubClient::new(&config.api_url)
        .map_err(|e| anyhow::anyhow!("--api-url (or {}): {e}", config::env::API_URL))?;
    let app = App::with_signer(config.app_id, config.key.signer, client);
    // SIGHUP, or a change of the key file, installs a new App key in `app` (a rotation with no restart).
    let key_reloader = mint_github::KeyReloader::new(config.key_source, app.keys(), config.key.stamp);
    let key_reloader = tokio::spawn(key_reloader.run());
    let store = store::Store::open_with_pool(&config.database, config.db_pool).await?;
    let metrics = Arc::new(metrics::Metrics::default());
    store.count_batches(metrics.batch_sizes("view"), metrics.batch_sizes("record"));
    let state = Arc::new(state::AppState {
        store: store.clone(),
        github: github::GitHub::new(app, metrics.clone()),
        metrics,
        metrics_token: config.metrics_token,
        admin: config.admin,
        sealer: config.sealer,
        mint_locks: fleet::MintLocks::default(),
        mints_per_minute: config.mints_per_minute,
        gate: Arc::new(fleet::MintGate::new(
            config.mints_per_installation,
            fleet::MAX_QUEUE_WAIT,
        )),
        sandbox_ttl: config.sandbox_ttl,
        web: config.web,
        bodies: body::Budget::default(),
        pulls: state::PullsCache::default(),
    });
    // The seal key is derived (an HSM signs) before anything binds: a key that cannot seal fails the start.
    state
        .sealer
        .prepare(state.github.app())
        .map_err(|e| anyhow::anyhow!("--private-key (or {}): {e}", config::env::PRIVATE_KEY))?;
    let reconciler = (state.web.is_some() && !config.reconcile_interval.is_zero())
        .then(|| tokio::spawn(sync::reconcile_loop(state.clone(), config.reconcile_interval)));
    let listener_task = {
        let store = store.clone();
        tokio::spawn(async move { store.listen().await })
    };
    let revoker = tokio::spawn(revoker::run(state.clone()));
    let expiry = tokio::spawn(expire_loop(store.clone(), config.audit_retention));
    tracing::info!(
        address = %listener.local_addr()?,
        tls = config.tls.is_some(),
        database = %store::redact_url(&config.database),
        github_api = %config.api_url,
        "mint-server ready"
    );
    serve(
        listener,
        config.tls,
        routes::router(state),
        config.max_connections,
        shutdown,
    )
    .await;
    if let Some(reconciler) = reconciler {
        reconciler.abort();
    }
    // What is still queued is in the database: another replica, or this one restarted, carries on.
    revoker.abort();
    expiry.abort();
    listener_task.abort();
    key_reloader.abort();
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// How often expired rows are deleted, and how long the records of expired tokens are kept.
const EXPIRE_EVERY: Duration = Duration::from_secs(60);
const TOKEN_RECORDS_KEPT: Duration = Duration::from_secs(30 * 24 * 3600);

/// Delete what has expired (sessions, OAuth states, verified choices, old webhook deliveries, past pauses,
/// long-expired token records, audit events older than `audit_retention`), every minute on every replica:
/// nothing anonymous traffic writes outlives its use.
async fn expire_loop(store: store::Store, audit_retention: Duration) {
    let seconds = |d: Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
    let mut tick = tokio::time::interval(EXPIRE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let swept = store
            .sweep_expired(
                model::now(),
                seconds(web::FLOW_TTL),
                seconds(webhook::DEDUPE_WINDOW),
                seconds(TOKEN_RECORDS_KEPT),
            )
            .await;
        match swept {
            Ok(0) => {}
            Ok(rows) => tracing::info!(rows, "expired rows deleted"),
            Err(e) => tracing::warn!(error = %e, "could not delete expired rows; trying again in a minute"),
        }
        let retention = i64::try_from(audit_retention.as_millis()).unwrap_or(i64::MAX);
        match store.sweep_audit(model::now_ms().saturating_sub(retention)).await {
            Ok(0) => {}
            Ok(rows) => tracing::info!(rows, "audit events past their retention deleted"),
            Err(e) => tracing::warn!(error = %e, "could not delete old audit events; trying again in a minute"),
        }
    }
}

/// Accept connections (TLS when configured) and serve the router on each until `shutdown`; then drain.
/// At most `max_connections` are held at once: past that, a new connection waits in the kernel's backlog
/// until one ends (an idle one ends after [`HEADER_TIMEOUT`]).
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    app: axum::Router,
    max_connections: usize,
    shutdown: impl Future<Output = ()>,
) {
    use tower::ServiceExt as _;
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(MAX_BUF_SIZE);
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let slots = Arc::new(tokio::sync::Semaphore::new(max_connections));
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    // Handlers that limit per client address read it from here.
                    let service = TowerToHyperService::new(app.clone().map_request(move |mut request: ::http::Request<hyper::body::Incoming>| {
                        request.extensions_mut().insert(axum::extract::ConnectInfo(peer));
                        request
                    }));
                    let http = http.clone();
                    let watcher = graceful.watcher();
                    let acceptor = acceptor.clone();
                    tokio::spawn(async move {
                        let served = match acceptor {
                            None => watcher.watch(http.serve_connection(TokioIo::new(stream), service)).await,
                            Some(acceptor) => {
                                let Ok(Ok(stream)) = tokio::time::timeout(HEADER_TIMEOUT, acceptor.accept(stream)).await else {
                                    tracing::debug!("TLS handshake failed or timed out");
                                    return;
                                };
                                watcher.watch(http.serve_connection(TokioIo::new(stream), service)).await
                            }
                        };
                        if let Err(e) = served {
                            tracing::debug!(error = %e, "connection ended with an error");
                        }
                        drop(slot);
                    });
                }
                Err(e) => {
                    // Typically out of file descriptors: keep serving the connections we have.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(SHUTDOWN_GRACE) => {
            tracing::warn!("requests still in flight after the grace period were cut off");
        }
    }
}

/// `mint-server`'s whole life: flags, logging, configuration (exit 64 if it cannot work), then serve until
/// SIGTERM or SIGINT.
pub fn main() -> ExitCode {
    let args: Args = match mint_service::daemon::parse_args() {
        Ok(args) => args,
        Err(code) => return code,
    };
    mint_service::daemon::init_tracing(args.log_format);
    // No core dumps and no same-uid ptrace: the App key in memory stays there. Every client is a
    // connection, so the open-file limit is lifted to what the system allows.
    mint_service::daemon::harden();
    mint_service::daemon::raise_open_file_limit();
    let config = match mint_service::daemon::loaded("mint-server", args.load()) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mint-server: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let listen = config.listen;
    let listener = match runtime.block_on(async { mint_service::daemon::listen_tcp(listen) }) {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!(
                "mint-server: invalid configuration: --listen (or {}): cannot listen on {listen}: {e}",
                config::env::LISTEN
            );
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    match runtime.block_on(run(config, listener, mint_service::daemon::shutdown_signal())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mint-server: {e:#}");
            ExitCode::FAILURE
        }
    }
}
