//! fakehub: a faithful stand-in GitHub for tests and the demo — the App token REST API and git smart HTTP
//! through the real `git http-backend`, with knobs to inject GitHub's bad days.
//!
//! Shapes follow GitHub's `OpenAPI` description (`../shared/github-api/`); behaviour follows GitHub's docs:
//! JWT rules for Apps, token scoping to repositories and permissions, 401 with `WWW-Authenticate` for git.

// serde_json's json! macro recurses per key; GitHub's pull-request object has many.
#![recursion_limit = "256"]

pub mod cli;
mod git;
mod keys;
mod server;
mod state;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

pub use keys::AppKeyPair;
pub use state::{AuthKind, InjectedFailure, IssuedToken, MintRecord, PullRecord, RequestRecord};

/// One installation of the App on an account.
#[derive(Debug, Clone)]
pub struct InstallationConfig {
    pub id: u64,
    /// The account (user or organisation) login that owns the repositories.
    pub account: String,
    /// Repository names (without owner) the installation can access.
    pub repositories: Vec<String>,
    /// What the installation granted the App: `contents` → `write`, …
    pub permissions: BTreeMap<String, String>,
}

/// What a typical organisation grants a coding App: more than mint asks for, so tests and the demo can show
/// that a minted token is narrower than the installation.
pub const BROAD_PERMISSIONS: &[(&str, &str)] = &[
    ("contents", "write"),
    ("pull_requests", "write"),
    ("metadata", "read"),
    ("issues", "write"),
    ("administration", "write"),
];

impl InstallationConfig {
    /// An installation on `account` reaching `repositories`, granting `permissions` (`("contents", "write")`, …).
    pub fn new(id: u64, account: &str, repositories: &[&str], permissions: &[(&str, &str)]) -> Self {
        Self {
            id,
            account: account.to_owned(),
            repositories: repositories.iter().map(|r| (*r).to_owned()).collect(),
            permissions: permissions
                .iter()
                .map(|(name, level)| ((*name).to_owned(), (*level).to_owned()))
                .collect(),
        }
    }
}

/// What fakehub pretends GitHub holds.
#[derive(Debug, Clone)]
pub struct Config {
    pub app_id: u64,
    pub app_public_key_pem: String,
    pub installations: Vec<InstallationConfig>,
    /// Bare repositories live at `<git_root>/<owner>/<name>.git`.
    pub git_root: PathBuf,
    pub token_lifetime: Duration,
}

impl Config {
    pub fn new(app_id: u64, app_public_key_pem: impl Into<String>, git_root: impl Into<PathBuf>) -> Self {
        Self {
            app_id,
            app_public_key_pem: app_public_key_pem.into(),
            installations: Vec::new(),
            git_root: git_root.into(),
            token_lifetime: Duration::from_secs(3600),
        }
    }

    #[must_use]
    pub fn with_installation(mut self, installation: InstallationConfig) -> Self {
        self.installations.push(installation);
        self
    }
}

/// A handle to one fakehub; cheap to clone.
#[derive(Clone)]
pub struct FakeHub {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    decoding_key: jsonwebtoken::DecodingKey,
    state: Mutex<state::State>,
}

impl FakeHub {
    pub fn new(config: Config) -> anyhow::Result<Self> {
        let decoding_key = jsonwebtoken::DecodingKey::from_rsa_pem(config.app_public_key_pem.as_bytes())
            .map_err(|e| anyhow::anyhow!("the App public key is not an RSA PEM: {e}"))?;
        std::fs::create_dir_all(&config.git_root)?;
        let state = state::State::new(config.token_lifetime);
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                decoding_key,
                state: Mutex::new(state),
            }),
        })
    }

    /// Serve on `listener` until `shutdown` resolves.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> anyhow::Result<()> {
        server::serve(self, listener, shutdown).await
    }

    /// Bind 127.0.0.1 on a free port and serve in the background on the current runtime.
    pub async fn start(config: Config) -> anyhow::Result<RunningFakeHub> {
        let hub = Self::new(config)?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(hub.clone().serve(listener, async {
            let _ = stopped.await;
        }));
        Ok(RunningFakeHub {
            hub,
            addr,
            stop: Some(stop),
            task: Some(task),
        })
    }

    fn config(&self) -> &Config {
        &self.inner.config
    }

    fn state(&self) -> MutexGuard<'_, state::State> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn repo_path(&self, owner: &str, name: &str) -> PathBuf {
        self.config().git_root.join(owner).join(format!("{name}.git"))
    }

    /// A bare repository with default branch `main` and one commit holding `README.md`.
    pub fn create_repo(&self, owner: &str, name: &str) -> anyhow::Result<PathBuf> {
        git::create_repo(&self.repo_path(owner, name), name)
    }

    pub fn mints(&self) -> Vec<MintRecord> {
        self.state().mints.clone()
    }

    pub fn tokens(&self) -> Vec<IssuedToken> {
        self.state().tokens.clone()
    }

    pub fn pulls(&self) -> Vec<PullRecord> {
        self.state().pulls.clone()
    }

    pub fn requests(&self) -> Vec<RequestRecord> {
        self.state().requests.clone()
    }

    pub fn set_token_lifetime(&self, lifetime: Duration) {
        self.state().token_lifetime = lifetime;
    }

    pub fn set_mint_latency(&self, latency: Duration) {
        self.state().mint_latency = latency;
    }

    /// The next `n` token requests fail with `failure` (after JWT checks, as GitHub's own failures would).
    pub fn fail_next_mints(&self, n: usize, failure: &InjectedFailure) {
        let mut state = self.state();
        for _ in 0..n {
            state.failures.push_back(failure.clone());
        }
    }

    pub fn revoke_all_tokens(&self) {
        for token in &mut self.state().tokens {
            token.revoked = true;
        }
    }

    pub fn expire_all_tokens(&self) {
        let now = self.now();
        for token in &mut self.state().tokens {
            token.expires_at = token.expires_at.min(now);
        }
    }

    /// Shift fakehub's clock (its `Date` header and its JWT checks) by `seconds`.
    pub fn set_date_skew(&self, seconds: i64) {
        self.state().date_skew = seconds;
    }

    pub fn uninstall(&self, installation_id: u64) {
        self.state().uninstalled.insert(installation_id);
    }

    pub fn suspend(&self, installation_id: u64) {
        self.state().suspended.insert(installation_id);
    }

    /// fakehub's idea of now, skew applied.
    fn now(&self) -> SystemTime {
        let skew = self.state().date_skew;
        let now = SystemTime::now();
        if skew >= 0 {
            now + Duration::from_secs(skew.unsigned_abs())
        } else {
            now - Duration::from_secs(skew.unsigned_abs())
        }
    }
}

/// A fakehub serving in the background; derefs to its [`FakeHub`] handle.
pub struct RunningFakeHub {
    hub: FakeHub,
    addr: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl RunningFakeHub {
    /// `http://127.0.0.1:PORT`, the root of both the REST API and git.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        self.addr
    }

    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl std::ops::Deref for RunningFakeHub {
    type Target = FakeHub;

    fn deref(&self) -> &FakeHub {
        &self.hub
    }
}

impl Drop for RunningFakeHub {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
