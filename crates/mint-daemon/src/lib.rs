//! mintd: holds the GitHub App key (or asks a broker that holds it), mints the repository-scoped
//! installation token, caches and refreshes it, and serves it to git on a unix socket.

mod answer;
pub mod api_policy;
pub mod api_proxy;
pub mod broker;
mod budget;
pub mod cache;
pub mod config;
mod http;
pub mod logs;
pub mod metrics;
pub mod peer;
pub mod proxy;
pub mod pulls;
pub mod push_policy;
pub mod retry;
pub mod server;
pub mod socket;
pub mod watch;

use std::future::Future;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use mint_credential::{Server, Target};
use mint_github::{App, GitHubClient, GithubError, InstallationToken, MintedToken, Permissions};
use tokio::time::Instant;

pub use cache::TokenCache;
pub use config::{Args, Config, ConfigError, Mode};

/// Revocation at shutdown gets this long; the whole stop stays within five seconds.
const REVOKE_TIMEOUT: Duration = Duration::from_millis(2500);

/// Exit code for a configuration that cannot work (`EX_USAGE`).
pub use mint_service::daemon::EXIT_CONFIG;

/// What the request handlers share.
pub struct Daemon {
    /// The GitHub git talks to. The repository on it is the cache's: [`TokenCache::target`].
    pub(crate) server: Server,
    pub(crate) cache: TokenCache<DaemonMinter>,
    pub(crate) metrics: Arc<metrics::Metrics>,
    pub(crate) source: Source,
    /// For the calls a token authenticates by itself (pull requests).
    pub(crate) github: GitHubClient,
    pub(crate) github_url: String,
    pub(crate) api_url: String,
    pub(crate) started: Instant,
    pub(crate) allowed_uids: Vec<u32>,
    pub(crate) branch_prefix: String,
    /// The git proxy's way to GitHub, in mediated mode.
    pub(crate) upstream: Option<proxy::Upstream>,
    pub(crate) git_proxy: Option<std::net::SocketAddr>,
    /// Where the proxy actually listens (the configured port may be 0).
    pub(crate) git_proxy_bound: std::sync::OnceLock<std::net::SocketAddr>,
    /// What stands between `POST /v1/pulls` and GitHub: memory of opened pull requests and a bucket.
    pub(crate) pulls: pulls::PullGate,
    /// What the socket's request bodies hold, past each one's first few KiB: [`server::BODY_BUDGET`].
    pub(crate) bodies: Arc<budget::Budget>,
    /// In key mode, what reloads the App key on SIGHUP and when its file changes; taken and run by [`run`].
    key_reloader: std::sync::Mutex<Option<mint_github::KeyReloader>>,
    /// The GitHub API endpoint's way to GitHub (`--api-url`), in every mode.
    pub(crate) api_upstream: proxy::Upstream,
    /// What stands between the API endpoint and GitHub: the write bucket and GitHub's "not before".
    pub(crate) api_gate: api_proxy::ApiGate,
}

/// Where the daemon's tokens come from, as status reports it.
pub(crate) enum Source {
    App { app_id: String, permissions: String },
    Broker { url: String },
}

/// Mints through the GitHub App for the one configured installation, repository and permission set.
pub struct AppMinter {
    app: App,
    installation_id: u64,
    target: Arc<Target>,
    permissions: Permissions,
    retry: retry::RetryPolicy,
    metrics: Arc<metrics::Metrics>,
}

impl AppMinter {
    async fn mint_with_retries(&self) -> Result<MintedToken, GithubError> {
        let repo = self.target.repo();
        retry::with_retries(
            self.retry,
            || {
                self.app
                    .mint(self.installation_id, repo.owner(), repo.name(), &self.permissions)
            },
            |error, wait| {
                self.metrics.retries.inc();
                tracing::warn!(error = %error, retry_in_ms = wait.as_millis(), "GitHub failed; retrying");
            },
        )
        .await
    }
}

impl cache::Minter for AppMinter {
    async fn mint(&self) -> Result<cache::Minted, cache::MintError> {
        let minted = match self.mint_with_retries().await {
            // A 401 whose Date shows our clock is off: sign with GitHub's time and try once more.
            Err(GithubError::BadAppCredentials {
                server_date: Some(date),
                ..
            }) if self.app.correct_clock(date) => self.mint_with_retries().await,
            other => other,
        }?;
        Ok(cache::Minted {
            token: minted,
            target: self.target.clone(),
            installation_id: self.installation_id,
        })
    }

    async fn revoke(&self, token: &InstallationToken) -> Result<(), GithubError> {
        self.app.revoke(token).await
    }

    fn fixed_scope(&self) -> Option<cache::Scope> {
        Some(cache::Scope {
            target: self.target.clone(),
            installation_id: self.installation_id,
        })
    }
}

/// The daemon's minter: the App key's, or the broker's. Boxed: their sizes differ by hundreds of bytes,
/// with the HTTP clients' feature sets.
pub enum DaemonMinter {
    App(Box<AppMinter>),
    Broker(Box<broker::BrokerMinter>),
}

impl cache::Minter for DaemonMinter {
    async fn mint(&self) -> Result<cache::Minted, cache::MintError> {
        match self {
            DaemonMinter::App(m) => m.mint().await,
            DaemonMinter::Broker(m) => m.mint().await,
        }
    }

    async fn revoke(&self, token: &InstallationToken) -> Result<(), GithubError> {
        match self {
            DaemonMinter::App(m) => m.revoke(token).await,
            DaemonMinter::Broker(m) => m.revoke(token).await,
        }
    }

    fn fixed_scope(&self) -> Option<cache::Scope> {
        match self {
            DaemonMinter::App(m) => m.fixed_scope(),
            DaemonMinter::Broker(m) => m.fixed_scope(),
        }
    }
}

impl Daemon {
    pub fn new(config: Config) -> anyhow::Result<Arc<Self>> {
        let client = GitHubClient::new(&config.api_url)
            .map_err(|e| anyhow::anyhow!("--api-url (or {}): {e}", mint_api::env::API_URL))?;
        let upstream = match config.git_proxy {
            Some(_) => Some(
                proxy::Upstream::new(&config.github_url)
                    .map_err(|e| anyhow::anyhow!("--github-url (or {}): {e}", mint_api::env::GITHUB_URL))?,
            ),
            None => None,
        };
        let api_upstream = proxy::Upstream::new(&config.api_url)
            .map_err(|e| anyhow::anyhow!("--api-url (or {}): {e}", mint_api::env::API_URL))?;
        let metrics = Arc::new(metrics::Metrics::default());
        let mut key_reloader = None;
        let (minter, source) = match config.mode {
            Mode::Key(key) => {
                let source = Source::App {
                    app_id: key.app_id.to_string(),
                    permissions: key.permissions.to_string(),
                };
                let app = App::with_signer(key.app_id, key.key.signer, client.clone());
                key_reloader = Some(mint_github::KeyReloader::new(key.key_source, app.keys(), key.key.stamp));
                let minter = AppMinter {
                    app,
                    installation_id: key.installation_id,
                    target: Arc::new(key.target),
                    permissions: key.permissions,
                    retry: retry::RetryPolicy::default(),
                    metrics: metrics.clone(),
                };
                (DaemonMinter::App(Box::new(minter)), source)
            }
            Mode::Broker(broker) => {
                let client_for_broker = Arc::new(
                    broker::BrokerClient::new(&broker.url, broker.credential)
                        .map_err(|e| anyhow::anyhow!("--broker (or {}): {e}", mint_api::env::BROKER))?,
                );
                let minter = broker::BrokerMinter::new(
                    client_for_broker,
                    client.clone(),
                    config.server.clone(),
                    metrics.clone(),
                );
                (
                    DaemonMinter::Broker(Box::new(minter)),
                    Source::Broker { url: broker.url },
                )
            }
        };
        Ok(Arc::new(Self {
            server: config.server,
            cache: TokenCache::new(minter, metrics.clone()),
            metrics,
            source,
            github: client,
            github_url: config.github_url,
            api_url: config.api_url,
            started: Instant::now(),
            allowed_uids: config.allowed_uids,
            branch_prefix: config.branch_prefix,
            upstream,
            git_proxy: config.git_proxy,
            git_proxy_bound: std::sync::OnceLock::new(),
            pulls: pulls::PullGate::new(config.pull_request_burst),
            bodies: Arc::new(budget::Budget::new(server::BODY_BUDGET, |m| &m.socket_bodies)),
            key_reloader: std::sync::Mutex::new(key_reloader),
            api_upstream,
            api_gate: api_proxy::ApiGate::default(),
        }))
    }
}

/// Run the daemon until `shutdown` resolves: bind (the socket appears once ready), serve, then drain,
/// revoke every live token and remove the socket.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let (socket_path, mode, group) = (config.socket.clone(), config.socket_mode, config.socket_group);
    let daemon = Daemon::new(config)?;
    // Everything that can fail binds before the socket appears: its appearance means ready.
    let proxy_listener = match daemon.git_proxy {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| anyhow::anyhow!("--git-proxy {addr}: cannot listen: {e}"))?,
        ),
        None => None,
    };
    if let Some(tcp) = &proxy_listener {
        let _ = daemon.git_proxy_bound.set(tcp.local_addr()?);
    }
    // SIGHUP reloads the key from here on (it is watched before the socket says "ready").
    let key_reloader = daemon
        .key_reloader
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take()
        .map(|reloader| tokio::spawn(reloader.run()));
    let (listener, socket_file) = socket::bind(&socket_path, mode, group)?;
    match &daemon.source {
        Source::App { permissions, .. } => {
            let scope = daemon.cache.scope().expect("the App key fixes the repository");
            tracing::info!(
                socket = %socket_file.path.display(),
                repository = %scope.target.repo(),
                installation = scope.installation_id,
                github = %daemon.github_url,
                permissions = %permissions,
                allowed_uids = ?daemon.allowed_uids,
                "mintd ready"
            );
        }
        // The credential is never logged; the repository is known once the broker's first token names it.
        Source::Broker { url } => tracing::info!(
            socket = %socket_file.path.display(),
            broker = %url,
            github = %daemon.github_url,
            allowed_uids = ?daemon.allowed_uids,
            "mintd ready"
        ),
    }
    let refresher = tokio::spawn({
        let daemon = daemon.clone();
        async move { daemon.cache.refresh_loop().await }
    });
    // Broker mode: the sandbox's state, followed as it changes (Disconnect, Change repository, teardown).
    let watcher = match daemon.cache.minter() {
        DaemonMinter::Broker(minter) => Some(tokio::spawn(watch::watch_loop(daemon.clone(), minter.client()))),
        DaemonMinter::App(_) => None,
    };
    // One shutdown signal, heard by the socket server and the git proxy alike.
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let proxy = match proxy_listener {
        Some(tcp) => {
            tracing::info!(address = %tcp.local_addr()?, prefix = %daemon.branch_prefix, "git proxy ready (mediated mode)");
            let mut stopping = stopping.clone();
            Some(tokio::spawn(proxy::serve(tcp, daemon.clone(), async move {
                let _ = stopping.wait_for(|s| *s).await;
            })))
        }
        None => None,
    };
    let mut socket_stopping = stopping;
    let served = server::serve(listener, daemon.clone(), async move {
        let _ = socket_stopping.wait_for(|s| *s).await;
    });
    tokio::pin!(served);
    tokio::select! {
        () = &mut served => {
            refresher.abort();
            daemon.cache.close();
        }
        () = shutdown => {
            // Revocation is final: first nothing refreshes, then nothing is minted or served (a request
            // still in flight hears "mintd is shutting down"), and only then do the servers drain.
            refresher.abort();
            daemon.cache.close();
            let _ = stop.send(true);
            served.await;
        }
    }
    if let Some(watcher) = watcher {
        watcher.abort();
    }
    if let Some(proxy) = proxy {
        let _ = proxy.await;
    }
    if let Some(reloader) = key_reloader {
        reloader.abort();
    }
    // Stop advertising before the slow part, so a restarted daemon can take over the path at once.
    socket_file.remove();
    // This also waits for a mint that was already at GitHub when the cache closed, and revokes its token.
    if let Ok(n) = tokio::time::timeout(REVOKE_TIMEOUT, daemon.cache.revoke_all()).await {
        tracing::info!(revoked = n, "stopped");
    } else {
        tracing::warn!("GitHub did not confirm revocation in time; the tokens expire on their own");
    }
    Ok(())
}

/// `mintd`'s whole life: parse flags, set up logging, load the config (exit 64 if it cannot work), run
/// until SIGTERM or SIGINT.
pub fn main() -> ExitCode {
    let mut words = std::env::args_os().skip(1);
    if words.next().is_some_and(|first| first == "ready") {
        return ready(words);
    }
    let args: Args = match mint_service::daemon::parse_args() {
        Ok(args) => args,
        Err(code) => return code,
    };
    mint_service::daemon::init_tracing(args.log_format);
    mint_service::daemon::harden();
    let config = match mint_service::daemon::loaded("mintd", args.load()) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mintd: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config, mint_service::daemon::shutdown_signal())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mintd: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `mintd ready [--socket PATH]`: is a mintd accepting connections on the socket? The socket appears only
/// once mintd is ready, so a connection that is accepted is the answer; no request is made.
fn ready(mut argv: impl Iterator<Item = std::ffi::OsString>) -> ExitCode {
    let socket = match (argv.next(), argv.next(), argv.next()) {
        (None, ..) => mint_api::socket_path(None),
        (Some(flag), Some(path), None) if flag == "--socket" => mint_api::socket_path(Some(path.into())),
        _ => {
            eprintln!("usage: mintd ready [--socket PATH]");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    match std::os::unix::net::UnixStream::connect(&socket) {
        Ok(_) => {
            println!("mintd is ready on {}", socket.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("mintd is not ready on {}: {e}", socket.display());
            ExitCode::FAILURE
        }
    }
}
