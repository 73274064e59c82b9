//! fakehub: a faithful stand-in GitHub for tests and the demo — the App token REST API and git smart HTTP
//! through the real `git http-backend`, with knobs to inject GitHub's bad days.
//!
//! Shapes follow GitHub's `OpenAPI` description (`../shared/github-api/`); behaviour follows GitHub's docs:
//! JWT rules for Apps, token scoping to repositories and permissions, 401 with `WWW-Authenticate` for git.
//!
//! "Connect GitHub", GitHub's side of it (configure people with [`Config::with_user`] or
//! [`Config::with_demo_users`]):
//! - sign-in: `GET /login`, `POST /session`, `POST /logout` (an `HttpOnly; SameSite=Lax` session cookie);
//! - the OAuth web flow: `GET`/`POST /login/oauth/authorize`, `POST /login/oauth/access_token` (`ghu_` tokens);
//! - the user API: `GET /user`, `GET /user/installations`, `GET /user/installations/{id}/repositories`;
//! - the App API: `GET /app/installations`, `GET /app/installation-requests`, `DELETE /app/installations/{id}`,
//!   `PUT`/`DELETE /app/installations/{id}/suspended`;
//! - pages: `GET /apps/{slug}/installations/new` (→ `…/new/permissions?target_id=…` → `POST /apps/{slug}/installations`,
//!   then a 302 to the Setup URL), installation settings at `/organizations/{org}/settings/installations/{id}` or
//!   `/settings/installations/{id}` (`POST …/repositories|suspend|unsuspend|delete`), the list at
//!   `/settings/installations`, requests at `/organizations/{org}/settings/installation_requests`
//!   (`POST …/{id}/approve|deny`), and `GET /{owner}/{repo}/pull/{n}`;
//! - webhooks to `Config::webhook_url`, signed with `X-Hub-Signature-256`, delivered in order by one task and
//!   recorded ([`FakeHub::deliveries`], [`FakeHub::redeliver`]).
//!
//! Installations created at run time are numbered from 1000 and their `html_url` is fakehub's own settings page;
//! static ones keep `https://github.com/…` unless [`Config::html_urls_on_fakehub`] is set.

// serde_json's json! macro recurses per key; GitHub's pull-request object has many.
#![recursion_limit = "256"]

mod accounts;
pub mod cli;
mod git;
mod html;
mod installs;
mod keys;
mod oauth;
mod pages;
mod server;
pub mod softhsm;
mod state;
mod user_api;
mod webhooks;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

pub use keys::AppKeyPair;
pub use server::review::LineComment;
pub use state::{
    AuthKind, Delivery, InjectedFailure, InstallationInfo, InstallationRequest, IssueComment, IssuedToken, MintRecord,
    PullRecord, RequestRecord, Review, ReviewComment,
};

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

/// What mint asks for and nothing more: the demo App requests only these on its install page.
pub const LEAST_PERMISSIONS: &[(&str, &str)] =
    &[("contents", "write"), ("pull_requests", "write"), ("metadata", "read")];

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

/// A person who can sign in to fakehub's pages. Each user also owns a personal account of the same login.
#[derive(Debug, Clone)]
pub struct UserConfig {
    pub login: String,
    pub password: String,
    /// Organisations the user belongs to, and as what.
    pub orgs: Vec<(String, OrgRole)>,
}

impl UserConfig {
    pub fn new(login: &str, password: &str) -> Self {
        Self {
            login: login.to_owned(),
            password: password.to_owned(),
            orgs: Vec::new(),
        }
    }

    #[must_use]
    pub fn owner_of(mut self, org: &str) -> Self {
        self.orgs.push((org.to_owned(), OrgRole::Owner));
        self
    }

    /// A member who is not an owner; `push: false` can read the organisation's repositories but not push.
    #[must_use]
    pub fn member_of(mut self, org: &str, push: bool) -> Self {
        self.orgs.push((org.to_owned(), OrgRole::Member { push }));
        self
    }
}

/// What a user is in an organisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrgRole {
    Owner,
    Member { push: bool },
}

/// Which of the account's repositories an installation reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepositorySelection {
    /// All of the account's repositories, now and later.
    All,
    /// Only the repositories listed.
    Selected,
}

impl RepositorySelection {
    /// GitHub's spelling: `all` or `selected`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::All => "all",
            Self::Selected => "selected",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "all" => Some(Self::All),
            "selected" => Some(Self::Selected),
            _ => None,
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
    /// People who can sign in to the pages (and so authorize the App and install it).
    pub users: Vec<UserConfig>,
    /// Organisations whose policy lets only owners install Apps: other members may only request one.
    pub restricted_orgs: BTreeSet<String>,
    /// Each account's repositories (owner login → names): what the install page offers. Created as bare
    /// repositories when an installation first reaches them.
    pub repositories: BTreeMap<String, Vec<String>>,
    /// The App's URL name: `/apps/{slug}/installations/new`.
    pub app_slug: String,
    /// The App's OAuth client id (not its App id) and secret, for the web flow.
    pub client_id: String,
    pub client_secret: String,
    /// The App's registered "Callback URL"s; `redirect_uri` must equal one of them.
    pub callback_urls: Vec<String>,
    /// Where a user lands after installing (`?installation_id=N&setup_action=install`).
    pub setup_url: Option<String>,
    /// Where the App's webhooks are delivered (loopback `http://` only), and the secret that signs them.
    pub webhook_url: Option<String>,
    pub webhook_secret: Option<String>,
    /// Point every installation's `html_url` at fakehub's own settings page. Installations created at run
    /// time always do; static ones keep `https://github.com/…` unless this is set.
    pub html_urls_on_fakehub: bool,
    /// What an installation created at run time grants the App.
    pub app_permissions: BTreeMap<String, String>,
}

impl Config {
    pub fn new(app_id: u64, app_public_key_pem: impl Into<String>, git_root: impl Into<PathBuf>) -> Self {
        Self {
            app_id,
            app_public_key_pem: app_public_key_pem.into(),
            installations: Vec::new(),
            git_root: git_root.into(),
            token_lifetime: Duration::from_secs(3600),
            users: Vec::new(),
            restricted_orgs: BTreeSet::new(),
            repositories: BTreeMap::new(),
            app_slug: "mint-fakehub".to_owned(),
            client_id: format!("Iv1.{app_id:016x}"),
            client_secret: format!("fakehub-client-secret-{app_id}"),
            callback_urls: Vec::new(),
            setup_url: None,
            webhook_url: None,
            webhook_secret: None,
            html_urls_on_fakehub: false,
            app_permissions: BROAD_PERMISSIONS
                .iter()
                .map(|(name, level)| ((*name).to_owned(), (*level).to_owned()))
                .collect(),
        }
    }

    #[must_use]
    pub fn with_installation(mut self, installation: InstallationConfig) -> Self {
        self.installations.push(installation);
        self
    }

    #[must_use]
    pub fn with_user(mut self, user: UserConfig) -> Self {
        self.users.push(user);
        self
    }

    /// `org` restricts third-party Apps: only its owners may install; other members may request.
    #[must_use]
    pub fn with_restricted_org(mut self, org: &str) -> Self {
        self.restricted_orgs.insert(org.to_owned());
        self
    }

    /// `account`'s repositories (added to any already listed).
    #[must_use]
    pub fn with_repositories(mut self, account: &str, names: &[&str]) -> Self {
        let list = self.repositories.entry(account.to_owned()).or_default();
        for name in names {
            if !list.iter().any(|n| n.eq_ignore_ascii_case(name)) {
                list.push((*name).to_owned());
            }
        }
        self
    }

    #[must_use]
    pub fn with_app_slug(mut self, slug: &str) -> Self {
        slug.clone_into(&mut self.app_slug);
        self
    }

    #[must_use]
    pub fn with_oauth_client(mut self, client_id: &str, client_secret: &str) -> Self {
        client_id.clone_into(&mut self.client_id);
        client_secret.clone_into(&mut self.client_secret);
        self
    }

    #[must_use]
    pub fn with_callback_url(mut self, url: &str) -> Self {
        self.callback_urls.push(url.to_owned());
        self
    }

    #[must_use]
    pub fn with_setup_url(mut self, url: &str) -> Self {
        self.setup_url = Some(url.to_owned());
        self
    }

    #[must_use]
    pub fn with_webhook(mut self, url: &str, secret: Option<&str>) -> Self {
        self.webhook_url = Some(url.to_owned());
        self.webhook_secret = secret.map(ToOwned::to_owned);
        self
    }

    /// What the App requests when installed from its install page (`("contents", "write")`, …).
    #[must_use]
    pub fn with_app_permissions(mut self, permissions: &[(&str, &str)]) -> Self {
        self.app_permissions = permissions
            .iter()
            .map(|(name, level)| ((*name).to_owned(), (*level).to_owned()))
            .collect();
        self
    }

    #[must_use]
    pub fn with_html_urls_on_fakehub(mut self, on: bool) -> Self {
        self.html_urls_on_fakehub = on;
        self
    }

    /// The demo's people: `octocat` owns `octo-org` and co-owns `restricted-org`; `mona` is a member of
    /// `octo-org` without push; `hubot` is a member of `restricted-org`, whose policy lets only owners install.
    /// Passwords equal logins. The demo App requests only [`LEAST_PERMISSIONS`].
    #[must_use]
    pub fn with_demo_users(self) -> Self {
        self.with_app_permissions(LEAST_PERMISSIONS)
            .with_user(
                UserConfig::new("octocat", "octocat")
                    .owner_of("octo-org")
                    .owner_of("restricted-org"),
            )
            .with_user(UserConfig::new("mona", "mona").member_of("octo-org", false))
            .with_user(UserConfig::new("hubot", "hubot").member_of("restricted-org", true))
            .with_restricted_org("restricted-org")
            .with_repositories("octo-org", &["hello-world", "octo-app"])
            .with_repositories("restricted-org", &["secret-sauce"])
            .with_repositories("octocat", &["dotfiles"])
            .with_repositories("mona", &["mona-notes"])
            .with_repositories("hubot", &["hubot-scripts"])
    }
}

/// A handle to one fakehub; cheap to clone.
#[derive(Clone)]
pub struct FakeHub {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    /// The App's public keys: GitHub lets an App have several at once (for rotation); JWTs signed by any of
    /// them are accepted, and a deleted one stops working at once.
    app_keys: Mutex<Vec<keys::AppPublicKey>>,
    /// JWTs whose signature was checked, by their SHA-256: the fingerprint of the key that signed each and
    /// its time claims. A client sends the same JWT for minutes, and checking an RSA signature again for
    /// each of a thousand mints at once made fakehub, not the client, what a burst waited for.
    verified_jwts: Mutex<std::collections::HashMap<[u8; 32], server::VerifiedJwt>>,
    state: Mutex<state::State>,
    /// Webhook deliveries, sent in order by one task that starts with the server.
    deliveries: tokio::sync::mpsc::UnboundedSender<webhooks::Job>,
    delivery_queue: Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<webhooks::Job>>>,
    /// Wakes the LFS storage requests held by `hold_lfs_transfers_until`.
    lfs_gate: tokio::sync::Notify,
}

impl FakeHub {
    pub fn new(config: Config) -> anyhow::Result<Self> {
        let first_key = keys::AppPublicKey::new(1, &config.app_public_key_pem)?;
        std::fs::create_dir_all(&config.git_root)?;
        let mut state = state::State::new(config.token_lifetime);
        for installation in &config.installations {
            state.installations.push(state::Installation {
                config: installation.clone(),
                selection: RepositorySelection::Selected,
                dynamic: false,
                created_at: SystemTime::UNIX_EPOCH,
            });
            state.next_installation_id = state.next_installation_id.max(installation.id + 1);
        }
        state.webhook_url.clone_from(&config.webhook_url);
        state.webhook_secret.clone_from(&config.webhook_secret);
        let (deliveries, queue) = tokio::sync::mpsc::unbounded_channel();
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                app_keys: Mutex::new(vec![first_key]),
                verified_jwts: Mutex::default(),
                state: Mutex::new(state),
                deliveries,
                delivery_queue: Mutex::new(Some(queue)),
                lfs_gate: tokio::sync::Notify::new(),
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

    /// Serve the same API on a unix socket as well, until `shutdown` resolves (after [`FakeHub::serve`] or
    /// [`FakeHub::start`] set the base URL its answers link to).
    pub async fn serve_unix(self, listener: tokio::net::UnixListener, shutdown: impl Future<Output = ()>) {
        server::serve_unix(self, listener, shutdown).await;
    }

    /// Bind 127.0.0.1 on a free port and serve in the background on the current runtime.
    #[allow(
        clippy::unused_async,
        reason = "async so that it runs on the runtime that serves it, which the listener registers with"
    )]
    pub async fn start(config: Config) -> anyhow::Result<RunningFakeHub> {
        let hub = Self::new(config)?;
        // GitHub takes a fleet's connections at once: a large backlog, not tokio's 128.
        let listener = mint_service::daemon::listen_tcp(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))?;
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

    /// Add a public key to the App, as "Generate a private key" on the App's settings page does; JWTs it
    /// signs are accepted from now on. Its id, for [`FakeHub::delete_app_key`].
    pub fn add_app_key(&self, public_or_private_pem: &str) -> anyhow::Result<u64> {
        let mut keys = self.app_keys();
        let id = keys.iter().map(|k| k.id).max().unwrap_or(0) + 1;
        keys.push(keys::AppPublicKey::new(id, public_or_private_pem)?);
        Ok(id)
    }

    /// Delete one of the App's keys: JWTs it signed fail from the next request on. `false` if there is no
    /// such key. (GitHub refuses to delete an App's last key; so does this.)
    pub fn delete_app_key(&self, id: u64) -> Result<bool, &'static str> {
        let mut keys = self.app_keys();
        let Some(at) = keys.iter().position(|k| k.id == id) else {
            return Ok(false);
        };
        if keys.len() == 1 {
            return Err("an App must keep at least one private key: generate a new one before deleting this one");
        }
        keys.remove(at);
        Ok(true)
    }

    /// The App's keys: id and fingerprint (`SHA256:…`, as GitHub's settings page shows them).
    pub fn app_key_fingerprints(&self) -> Vec<(u64, String)> {
        self.app_keys().iter().map(|k| (k.id, k.fingerprint.clone())).collect()
    }

    fn verified_jwts(&self) -> MutexGuard<'_, std::collections::HashMap<[u8; 32], server::VerifiedJwt>> {
        self.inner
            .verified_jwts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn app_keys(&self) -> MutexGuard<'_, Vec<keys::AppPublicKey>> {
        self.inner
            .app_keys
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The App's OAuth client id (for the web flow's `client_id`).
    pub fn client_id(&self) -> &str {
        &self.config().client_id
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

    /// Answer at most `k` mints at once (0: no limit), as GitHub's secondary rate limit does: a mint over the
    /// limit gets 403 "You have exceeded a secondary rate limit" with `Retry-After: 60`.
    pub fn set_max_concurrent_mints(&self, k: usize) {
        self.state().max_concurrent_mints = k;
    }

    /// Mints refused so far for going over [`FakeHub::set_max_concurrent_mints`].
    pub fn mints_over_limit(&self) -> usize {
        self.state().mints_over_limit
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

    /// The next `n` revocations (`DELETE /installation/token` with a live token) are answered with
    /// `failure`, and the token stays live: GitHub's bad minute, seen by whoever revokes.
    pub fn fail_next_revocations(&self, n: usize, failure: &InjectedFailure) {
        let mut state = self.state();
        for _ in 0..n {
            state.revoke_failures.push_back(failure.clone());
        }
    }

    /// Every revocation takes this long before it is answered and takes effect.
    pub fn set_revoke_latency(&self, latency: Duration) {
        self.state().revoke_latency = latency;
    }

    /// The next `n` pack uploads (`POST …/git-receive-pack`, after the handshake succeeded) are answered
    /// with `failure` at once, the body unread: a token that died mid-push (401), a proxy's size limit
    /// (413).
    pub fn fail_next_pushes(&self, n: usize, failure: &InjectedFailure) {
        let mut state = self.state();
        for _ in 0..n {
            state.push_failures.push_back(failure.clone());
        }
    }

    /// The next `n` calls to the repository API (`/repos/…`) or GraphQL are answered with `failure` (a rate
    /// limit: 403 with `retry-after`, or `x-ratelimit-remaining: 0`), the request unread.
    pub fn fail_next_api_calls(&self, n: usize, failure: &InjectedFailure) {
        let mut state = self.state();
        for _ in 0..n {
            state.api_failures.push_back(failure.clone());
        }
    }

    /// The next `n` LFS object uploads (the storage route's `PUT`) are answered with `failure`.
    pub fn fail_next_lfs_uploads(&self, n: usize, failure: &InjectedFailure) {
        let mut state = self.state();
        for _ in 0..n {
            state.lfs_failures.push_back(failure.clone());
        }
    }

    /// The next upload of the LFS object `oid` (the storage route's `PUT`) is answered with `failure`,
    /// whichever order a client sends its objects in.
    pub fn fail_lfs_upload_of(&self, oid: &str, failure: &InjectedFailure) {
        self.state().lfs_object_failures.insert(oid.to_owned(), failure.clone());
    }

    /// From now on, LFS storage requests wait until `n` of them are in flight at once, or 10 s have passed,
    /// before they are answered; then the gate stays open. A client that moves one object at a time
    /// cannot reach `n`: [`Self::lfs_max_concurrent_transfers`] then stays below it.
    pub fn hold_lfs_transfers_until(&self, n: usize) {
        let mut state = self.state();
        state.lfs_gate = Some(n);
        state.lfs_max_in_flight = 0;
    }

    /// The most LFS storage requests (downloads, uploads, verifies) that were being answered at once.
    pub fn lfs_max_concurrent_transfers(&self) -> usize {
        self.state().lfs_max_in_flight
    }

    /// Store `content` as an LFS object of a repository, as an upload would but without HTTP: streamed
    /// into the store while hashed, so a test can put a large object there without holding it. Its oid and
    /// size.
    pub fn put_lfs_object(
        &self,
        owner: &str,
        repo: &str,
        mut content: impl std::io::Read,
    ) -> std::io::Result<(String, u64)> {
        use sha2::Digest as _;
        use std::io::Write as _;
        let dir = self.config().git_root.join("lfs").join(owner).join(repo);
        std::fs::create_dir_all(&dir)?;
        let temp = dir.join(format!(".put.{}.tmp", rand::random::<u64>()));
        let mut file = std::io::BufWriter::new(std::fs::File::create(&temp)?);
        let mut hash = sha2::Sha256::new();
        let mut size = 0u64;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = content.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hash.update(&buf[..n]);
            file.write_all(&buf[..n])?;
            size += n as u64;
        }
        file.into_inner()
            .map_err(std::io::IntoInnerError::into_error)?
            .sync_all()?;
        let oid = hex::encode(hash.finalize());
        std::fs::rename(&temp, dir.join(&oid))?;
        Ok((oid, size))
    }

    /// The LFS objects stored for a repository, by oid.
    pub fn lfs_objects(&self, owner: &str, repo: &str) -> Vec<String> {
        let dir = self.config().git_root.join("lfs").join(owner).join(repo);
        let mut oids: Vec<String> = std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .filter_map(|e| e.file_name().into_string().ok())
                    .filter(|name| !name.starts_with('.'))
                    .collect()
            })
            .unwrap_or_default();
        oids.sort();
        oids
    }

    pub fn revoke_all_tokens(&self) {
        let now = self.now();
        for token in self.state().tokens.iter_mut().filter(|t| !t.revoked) {
            token.revoked = true;
            token.revoked_at = Some(now);
        }
    }

    pub fn expire_all_tokens(&self) {
        let now = self.now();
        for token in &mut self.state().tokens {
            token.expires_at = token.expires_at.min(now);
        }
    }

    /// Leave the installation out of `GET /app/installations` (it still exists, and `GET
    /// /app/installations/{id}` finds it): what a client paging the list sees when an installation moves
    /// between pages while it reads them.
    pub fn skip_in_installation_list(&self, installation_id: u64, skipped: bool) {
        let mut state = self.state();
        if skipped {
            state.skipped_in_list.insert(installation_id);
        } else {
            state.skipped_in_list.remove(&installation_id);
        }
    }

    /// Shift fakehub's clock (its `Date` header and its JWT checks) by `seconds`.
    pub fn set_date_skew(&self, seconds: i64) {
        self.state().date_skew = seconds;
    }

    /// Delete the installation, as its account's owner would; sends `installation` `deleted`.
    pub fn uninstall(&self, installation_id: u64) {
        self.uninstall_by(installation_id, None);
    }

    /// Suspend the installation: its mints answer 403. Sends `installation` `suspend`.
    pub fn suspend(&self, installation_id: u64) {
        self.suspend_by(installation_id, None);
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
