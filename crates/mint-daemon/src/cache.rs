//! One installation token per daemon: minted on first demand, single-flight, refreshed in the background
//! before it gets short, dropped on `erase`, and revoked at shutdown.
//!
//! Each token carries the repository it is for. With the App key that is fixed by configuration; in broker
//! mode it is whatever the broker's latest answer names, and the daemon's repository follows it.
//!
//! All timing uses `tokio::time`, so the schedule is tested with paused time.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use mint_credential::{Approved, EraseApproved, Target};
use mint_github::{GithubError, InstallationToken, MintedToken, Permissions};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::api_proxy::ApiChecked;
use crate::metrics::Metrics;
use crate::peer::AllowedPeer;
use crate::proxy::ProxyChecked;
use crate::pulls::PullChecked;

/// Never hand out a token with less than this left (older git ignores `password_expiry_utc`).
pub const SERVE_MARGIN: Duration = Duration::from_secs(5 * 60);
/// Start minting the next token when the current one has less than this left.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(10 * 60);
/// After a failed background refresh, try again after this long; each further failure doubles it.
pub const REFRESH_RETRY: Duration = Duration::from_secs(15);
/// The longest wait between failed background refreshes.
pub const REFRESH_RETRY_MAX: Duration = Duration::from_secs(10 * 60);
/// A failure no retry can fix (uninstalled App, bad key) is repeated to callers for this long without asking
/// GitHub again, so a loop of git commands does not hammer it.
pub const NEGATIVE_TTL: Duration = Duration::from_secs(10);
/// git erases a token after any 401; honour that at most once per this interval, since a just-minted token
/// can briefly 401 while GitHub propagates it and re-minting would only make more of them.
pub const ERASE_INTERVAL: Duration = Duration::from_secs(5);
/// The longest "not before" mintd honours from GitHub or the broker: GitHub's rate-limit windows are an
/// hour, so a longer wait (a skewed clock, an odd proxy) is cut to this and mintd asks again after it.
pub const MAX_HOLD_OFF: Duration = Duration::from_secs(3600);

/// Where tokens come from: the GitHub App or a broker in production, a counter in unit tests.
pub trait Minter: Send + Sync + 'static {
    fn mint(&self) -> impl Future<Output = Result<Minted, MintError>> + Send;
    fn revoke(&self, token: &InstallationToken) -> impl Future<Output = Result<(), GithubError>> + Send;
    /// Where every token goes, when configuration fixes it (the App key's `--repo`); `None` when each
    /// answer says (a broker).
    fn fixed_scope(&self) -> Option<Scope> {
        None
    }
    /// git (or GitHub, through the proxy) reported this token failing and it is no longer served: a broker
    /// is told with the next mint, so it mints instead of handing the same token out again.
    fn reported_failing(&self, _token: &InstallationToken) {}
}

/// A new token and where it goes. `Debug` redacts the token (`MintedToken` does).
#[derive(Debug)]
pub struct Minted {
    pub token: MintedToken,
    pub target: Arc<Target>,
    pub installation_id: u64,
}

/// The repository and installation of the latest token: the daemon's current repository.
#[derive(Debug, Clone)]
pub struct Scope {
    pub target: Arc<Target>,
    pub installation_id: u64,
}

/// What the cache needs to know of a minter's failure, whoever it asked (GitHub with the App key, a
/// broker): whether waiting can help, a label for metrics, and how long it was asked to hold off.
pub trait MintFailureCause: std::error::Error + Send + Sync + 'static {
    /// Whether trying again later can succeed without anyone changing anything.
    fn is_transient(&self) -> bool;
    /// A short, stable label for metrics.
    fn reason(&self) -> &'static str;
    /// How long the minter's server asked not to be asked again: a rate limit's `Retry-After` or reset.
    fn hold_off(&self) -> Option<Duration>;
}

impl MintFailureCause for GithubError {
    fn is_transient(&self) -> bool {
        GithubError::is_transient(self)
    }

    fn reason(&self) -> &'static str {
        GithubError::reason(self)
    }

    fn hold_off(&self) -> Option<Duration> {
        GithubError::hold_off(self)
    }
}

/// Why a mint failed, as its minter said it (any [`MintFailureCause`]: `?` converts one).
#[derive(Debug)]
pub struct MintError(Box<dyn MintFailureCause>);

// Transparent: the cause's own words and sources.
impl std::fmt::Display for MintError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for MintError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

impl<E: MintFailureCause> From<E> for MintError {
    fn from(cause: E) -> Self {
        Self(Box::new(cause))
    }
}

impl MintError {
    /// Whether trying again later can succeed without anyone changing anything.
    pub fn is_transient(&self) -> bool {
        self.0.is_transient()
    }

    /// A short, stable label for metrics.
    pub fn reason(&self) -> &'static str {
        self.0.reason()
    }

    /// How long GitHub (or the broker) asked not to be asked again, at most [`MAX_HOLD_OFF`].
    pub fn hold_off(&self) -> Option<Duration> {
        self.0.hold_off().map(|wait| wait.min(MAX_HOLD_OFF))
    }
}

/// A token in the cache with its schedule and where it goes.
pub struct Cached {
    pub token: InstallationToken,
    /// When it expires on this machine's clock: the time it was received plus the lifetime GitHub granted
    /// (GitHub's `expires_at` less its `Date`). Never GitHub's `expires_at` itself, which is on GitHub's
    /// clock: if the two clocks disagree, git would be told a wrong expiry.
    pub expires_at: SystemTime,
    pub minted_at: SystemTime,
    /// The one repository the token is for; it is served for requests checked against this only.
    pub target: Arc<Target>,
    pub installation_id: u64,
    /// What the token grants, as its minter reported it.
    pub permissions: Permissions,
    expires: Instant,
    serve_until: Instant,
    refresh_at: Instant,
}

impl Cached {
    fn new(minted: Minted, now: Instant) -> Self {
        let Minted {
            token: minted,
            target,
            installation_id,
        } = minted;
        let lifetime = minted.lifetime();
        // GitHub's tokens live an hour; fakehub's (and perhaps a future GitHub's) may live minutes.
        // Scale the margins down for short lifetimes so a fresh token is always servable for a while
        // and is refreshed well before it stops being served.
        let serve_margin = SERVE_MARGIN.min(lifetime / 4);
        let refresh_margin = REFRESH_MARGIN.min(lifetime / 2);
        let expires = now + lifetime;
        let minted_at = SystemTime::now();
        Self {
            token: minted.token,
            expires_at: minted_at + lifetime,
            minted_at,
            target,
            installation_id,
            permissions: minted.permissions,
            expires,
            serve_until: expires - serve_margin,
            refresh_at: expires - refresh_margin,
        }
    }

    /// Seconds until expiry, as of `now`.
    pub fn remaining(&self, now: Instant) -> Duration {
        self.expires.saturating_duration_since(now)
    }

    /// For git's `password_expiry_utc`: the local wall clock now plus the life left, in Unix seconds.
    pub fn password_expiry_utc(&self, now: Instant) -> u64 {
        (SystemTime::now() + self.remaining(now))
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs()
    }

    fn servable(&self, now: Instant) -> bool {
        now < self.serve_until
    }

    fn scope(&self) -> Scope {
        Scope {
            target: self.target.clone(),
            installation_id: self.installation_id,
        }
    }
}

impl std::fmt::Debug for Cached {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cached")
            .field("token", &self.token)
            .field("expires_at", &humantime::format_rfc3339_seconds(self.expires_at))
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

/// Why no token could be served; shared by every caller that waited on the same attempt, and by every
/// caller until `quiet_until`.
#[derive(Debug, Clone)]
pub struct MintFailure {
    pub message: String,
    pub reason: &'static str,
    pub transient: bool,
    /// Until then this answer is repeated and nothing asks GitHub (or the broker) again: callers, the
    /// git proxy, pull requests and the refresher alike. A rate limit sets it to the time GitHub named; a
    /// failure no retry can fix, to [`NEGATIVE_TTL`]; any other failure, to when it happened.
    quiet_until: Instant,
    /// `quiet_until` on the wall clock, when a rate limit set it: what `Retry-After` and messages name.
    pub not_before: Option<SystemTime>,
}

impl MintFailure {
    fn new(e: &MintError, at: Instant) -> Self {
        let hold_off = e.hold_off();
        let quiet_until = match hold_off {
            Some(wait) => at + wait,
            None if !e.is_transient() => at + NEGATIVE_TTL,
            None => at,
        };
        let not_before = hold_off.map(|wait| SystemTime::now() + wait);
        let message = match not_before {
            // An absolute time: the message is repeated for up to an hour and must not go stale.
            Some(t) => format!(
                "{e}; mintd will not ask again before {}, and answers this until then",
                humantime::format_rfc3339_seconds(t)
            ),
            None => e.to_string(),
        };
        Self {
            message,
            reason: e.reason(),
            transient: e.is_transient(),
            quiet_until,
            not_before,
        }
    }

    /// Whether this answer still stands at `now`, so nothing may ask GitHub (or the broker) again.
    fn stands(&self, now: Instant) -> bool {
        now < self.quiet_until
    }

    /// For a `Retry-After` header: whole seconds until a rate limit's "not before", rounded up.
    pub fn retry_after(&self, now: Instant) -> Option<u64> {
        self.not_before?;
        let left = self.quiet_until.saturating_duration_since(now);
        Some(left.as_secs() + u64::from(left.subsec_nanos() > 0))
    }
}

/// Why a request checked against one repository gets no token.
#[derive(Debug, Clone)]
pub enum GetError {
    /// No token could be had.
    Failed(Arc<MintFailure>),
    /// The token is for another repository than the one the request was checked against: the broker's
    /// answer moved the sandbox there in the meantime.
    Moved { now: Arc<Target> },
}

/// What every waiter on one mint attempt gets: the token, or why there is none.
type MintResult = Result<Arc<Cached>, Arc<MintFailure>>;

/// A mint attempt in flight: its task records the result and then publishes it here.
type InFlight = watch::Receiver<Option<MintResult>>;

#[derive(Default)]
struct State {
    current: Option<Arc<Cached>>,
    /// The latest token's repository and installation (fixed from the start with the App key).
    scope: Option<Scope>,
    /// The one mint attempt under way, if any: every caller and the refresher join it rather than start
    /// another, and none of them owns it (see [`TokenCache::join_or_start`]).
    in_flight: Option<InFlight>,
    last_error: Option<Arc<MintFailure>>,
    /// The broker said this sandbox's access ended (Disconnect, teardown, an uninstalled App): every
    /// request hears why, at once, until the broker says it is active again.
    held: Option<Arc<MintFailure>>,
    mints: u64,
    /// Every token minted and not yet expired, for revocation at shutdown.
    live: Vec<Arc<Cached>>,
    /// When git last made us drop a token.
    last_erase: Option<Instant>,
    /// Shutdown began: nothing is minted or served any more.
    closed: bool,
}

/// Counters for status and metrics.
#[derive(Debug, Clone, Default)]
pub struct CacheStats {
    pub mints: u64,
    pub last_error: Option<String>,
}

pub struct TokenCache<M> {
    inner: Arc<Inner<M>>,
}

/// What a mint task needs after its caller is gone: it outlives any one request.
struct Inner<M> {
    minter: M,
    metrics: Arc<Metrics>,
    state: Mutex<State>,
    /// Bumped whenever `current` changes, so the refresher re-plans.
    changed: watch::Sender<u64>,
}

/// Who asks [`TokenCache::join_or_start`] for a mint.
enum Want<'a> {
    /// A caller: a servable token, whichever it is.
    Serve,
    /// The refresher: a successor to this token (which is still servable, so "serve it" is no answer).
    Replace(&'a Arc<Cached>),
}

/// What [`TokenCache::join_or_start`] found.
enum Joined {
    Ready(MintResult),
    Wait(InFlight),
}

impl<M> Inner<M> {
    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock leaves plain data behind; keep serving rather than poison everything.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Record a finished attempt: install the token (unless shutdown began: then it is kept for revocation
    /// only) or the failure, and end the attempt. Runs on the mint's own task.
    fn record(&self, result: Result<Minted, MintError>) -> MintResult {
        let now = Instant::now();
        let mut state = self.state();
        state.in_flight = None;
        match result {
            Ok(minted) => {
                let cached = Arc::new(Cached::new(minted, now));
                tracing::info!(
                    expires_at = %humantime::format_rfc3339_seconds(cached.expires_at),
                    lifetime_s = cached.remaining(now).as_secs(),
                    repository = %cached.target.repo(),
                    "minted installation token"
                );
                state.mints += 1;
                state.live.retain(|c| c.expires > now);
                state.live.push(cached.clone());
                self.metrics.mint_succeeded();
                if state.closed {
                    // Revoked by `revoke_all`, which waits for this attempt; never served.
                    return Err(shutting_down(now));
                }
                if let Some(held) = &state.held {
                    // Access ended while this was minted: kept for revocation at shutdown, never served.
                    return Err(held.clone());
                }
                if let Some(before) = state.scope.as_ref().filter(|s| s.target != cached.target) {
                    tracing::warn!(
                        from = %before.target.repo(),
                        to = %cached.target.repo(),
                        "the token is for another repository than the last one; git, the proxy and pull requests follow it"
                    );
                }
                state.scope = Some(cached.scope());
                state.last_error = None;
                state.current = Some(cached.clone());
                drop(state);
                self.changed.send_modify(|g| *g += 1);
                Ok(cached)
            }
            Err(e) => {
                tracing::warn!(error = %e, reason = e.reason(), "could not mint an installation token");
                self.metrics.mint_failed(e.reason());
                let failure = Arc::new(MintFailure::new(&e, now));
                state.last_error = Some(failure.clone());
                Err(failure)
            }
        }
    }
}

/// The answer once shutdown began: no token is minted or served after it.
fn shutting_down(now: Instant) -> Arc<MintFailure> {
    Arc::new(MintFailure {
        message:
            "mintd is shutting down and serves no more tokens: retry once it (or its replacement) is running again"
                .to_owned(),
        reason: "shutting_down",
        transient: true,
        quiet_until: now,
        not_before: None,
    })
}

impl<M: Minter> TokenCache<M> {
    pub fn new(minter: M, metrics: Arc<Metrics>) -> Self {
        let state = State {
            scope: minter.fixed_scope(),
            ..State::default()
        };
        Self {
            inner: Arc::new(Inner {
                minter,
                metrics,
                state: Mutex::new(state),
                changed: watch::Sender::new(0),
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.inner.state()
    }

    fn fresh(&self, now: Instant) -> Option<Arc<Cached>> {
        let state = self.state();
        if state.held.is_some() {
            return None;
        }
        state.current.as_ref().filter(|c| c.servable(now)).cloned()
    }

    /// A token with enough life left for a request that passed the policy. Once warm, this never waits.
    /// Both proofs are demanded: the connection's uid is allowed, and the request passed the policy for the
    /// repository the token is for.
    pub async fn get(&self, _peer: &AllowedPeer, approved: &Approved) -> Result<Arc<Cached>, GetError> {
        Self::for_target(self.get_checked().await, approved.target())
    }

    /// For the git proxy: the request names the token's repository through an allowed route.
    pub async fn get_for_proxy(&self, checked: &ProxyChecked) -> Result<Arc<Cached>, GetError> {
        Self::for_target(self.get_checked().await, checked.target())
    }

    /// For the GitHub API endpoint: the request passed the API policy for the token's repository.
    pub async fn get_for_api(&self, checked: &ApiChecked) -> Result<Arc<Cached>, GetError> {
        Self::for_target(self.get_checked().await, checked.target())
    }

    /// Hand out the token only if it is for the repository the request was checked against.
    fn for_target(got: MintResult, checked: &Target) -> Result<Arc<Cached>, GetError> {
        let cached = got.map_err(GetError::Failed)?;
        if cached.target.as_ref() == checked {
            Ok(cached)
        } else {
            Err(GetError::Moved {
                now: cached.target.clone(),
            })
        }
    }

    /// The current repository: the latest token's, or the configured one. `None` in broker mode before the
    /// first token.
    pub fn target(&self) -> Option<Arc<Target>> {
        self.state().scope.as_ref().map(|s| s.target.clone())
    }

    /// The current repository and installation, as [`TokenCache::target`].
    pub fn scope(&self) -> Option<Scope> {
        self.state().scope.clone()
    }

    /// The current repository, minting a token first if none is known yet (broker mode: the answer names
    /// it). Hands out no token: a request is judged against this, then asks [`TokenCache::get`].
    pub async fn learn_target(&self) -> Result<Arc<Target>, Arc<MintFailure>> {
        if let Some(target) = self.target() {
            return Ok(target);
        }
        Ok(self.get_checked().await?.target.clone())
    }

    /// For opening a pull request: an allowed peer asked for a branch inside the prefix. The request names
    /// no repository; it goes to the token's own ([`Cached::target`]).
    pub async fn get_for_pull(&self, _checked: &PullChecked) -> MintResult {
        self.get_checked().await
    }

    async fn get_checked(&self) -> MintResult {
        if let Some(token) = self.fresh(Instant::now()) {
            self.inner.metrics.cache_hits.inc();
            return Ok(token);
        }
        self.mint_shared(&Want::Serve).await
    }

    /// Join the mint in flight or start one, and wait for its answer. Dropping this future (git killed, the
    /// connection gone) leaves the attempt running: its token is recorded, served to the next caller and
    /// revoked at shutdown.
    async fn mint_shared(&self, want: &Want<'_>) -> MintResult {
        let mut in_flight = match self.join_or_start(want) {
            Joined::Ready(answer) => return answer,
            Joined::Wait(in_flight) => in_flight,
        };
        let answer = match in_flight.wait_for(Option::is_some).await {
            Ok(answer) => answer.clone().expect("waited for an answer"),
            Err(_) => Err(Arc::new(MintFailure {
                message: "the mint attempt ended without an answer (mintd's mint task failed); try again".to_owned(),
                reason: "internal",
                transient: true,
                quiet_until: Instant::now(),
                not_before: None,
            })),
        };
        if answer.is_ok() && self.state().closed {
            return Err(shutting_down(Instant::now()));
        }
        answer
    }

    /// The one gate every mint passes: nothing after shutdown began, nothing while the last failure stands
    /// (GitHub said "not before", or a failure no retry can fix), and one attempt at a time. The attempt
    /// runs on its own task, so no caller can cancel it.
    fn join_or_start(&self, want: &Want<'_>) -> Joined {
        let now = Instant::now();
        let mut state = self.state();
        if state.closed {
            return Joined::Ready(Err(shutting_down(now)));
        }
        if let Some(held) = &state.held {
            return Joined::Ready(Err(held.clone()));
        }
        // A sender gone without an answer (its task panicked) is no attempt to join.
        if let Some(in_flight) = state.in_flight.as_ref().filter(|f| f.has_changed().is_ok()) {
            return Joined::Wait(in_flight.clone());
        }
        match want {
            Want::Serve => {
                if let Some(current) = state.current.as_ref().filter(|c| c.servable(now)) {
                    return Joined::Ready(Ok(current.clone()));
                }
            }
            Want::Replace(old) => {
                if let Some(current) = state.current.as_ref().filter(|c| !Arc::ptr_eq(c, old)) {
                    return Joined::Ready(Ok(current.clone()));
                }
            }
        }
        if let Some(standing) = state.last_error.as_ref().filter(|e| e.stands(now)) {
            return Joined::Ready(Err(standing.clone()));
        }
        let (answer, in_flight) = watch::channel(None);
        state.in_flight = Some(in_flight.clone());
        drop(state);
        tracing::debug!("minting an installation token");
        let inner = self.inner.clone();
        tokio::spawn(async move {
            let result = inner.minter.mint().await;
            let recorded = inner.record(result);
            answer.send_replace(Some(recorded));
        });
        Joined::Wait(in_flight)
    }

    /// git reported this password as failing. If it is the token being served, stop serving it.
    pub fn erase(&self, erase: &EraseApproved) -> bool {
        self.drop_if_current(|token| token.matches(erase.password()))
    }

    /// GitHub itself answered 401 to this token (seen by the git proxy or a pull-request call): stop
    /// serving it.
    pub fn drop_rejected(&self, rejected: &InstallationToken) -> bool {
        self.drop_if_current(|token| token.matches(rejected.expose()))
    }

    /// Drop the served token if `is_it` says it is the failing one, at most once per [`ERASE_INTERVAL`].
    fn drop_if_current(&self, is_it: impl Fn(&InstallationToken) -> bool) -> bool {
        let now = Instant::now();
        let mut state = self.state();
        if !state.current.as_ref().is_some_and(|c| is_it(&c.token)) {
            return false;
        }
        if state.last_erase.is_some_and(|at| now < at + ERASE_INTERVAL) {
            tracing::info!(
                "the served token was reported failing again within seconds; keeping it (GitHub may still be propagating it)"
            );
            return false;
        }
        let dropped = state.current.take();
        state.last_erase = Some(now);
        drop(state);
        if let Some(dropped) = dropped {
            self.inner.minter.reported_failing(&dropped.token);
        }
        self.inner.metrics.erases.inc();
        tracing::info!("the served token was reported failing; the next request mints a new one");
        self.inner.changed.send_modify(|g| *g += 1);
        true
    }

    /// The broker says the sandbox's access ended: stop serving at once, and answer every request with
    /// `message` until [`TokenCache::resume`]. The token in hand is dropped (the broker revokes it).
    pub fn hold(&self, message: &str) {
        let mut state = self.state();
        if state.held.as_ref().is_some_and(|h| h.message == message) {
            return;
        }
        tracing::warn!(reason = %message, "the broker ended this sandbox's GitHub access; refusing every request until it is back");
        state.held = Some(Arc::new(MintFailure {
            message: message.to_owned(),
            reason: "access_ended",
            transient: false,
            quiet_until: Instant::now(),
            not_before: None,
        }));
        state.current = None;
        drop(state);
        self.inner.changed.send_modify(|g| *g += 1);
    }

    /// The broker says the sandbox's access is active for `scope`: serve again (a reconnect needs no restart),
    /// and follow the repository at once if it moved (the token for the old one is dropped; the broker
    /// revokes it).
    pub fn resume(&self, scope: Scope) {
        let mut state = self.state();
        let held = state.held.take().is_some();
        if held {
            tracing::info!(repository = %scope.target.repo(), "the broker restored this sandbox's GitHub access");
            // A refusal remembered from before (a 409 answered while disconnected) no longer stands.
            state.last_error = None;
        }
        let moved = state
            .scope
            .as_ref()
            .is_none_or(|s| s.target != scope.target || s.installation_id != scope.installation_id);
        if moved && state.scope.is_some() {
            tracing::info!(repository = %scope.target.repo(), "the broker moved this sandbox to another repository");
        }
        if state
            .current
            .as_ref()
            .is_some_and(|c| c.target != scope.target || c.installation_id != scope.installation_id)
        {
            state.current = None;
            state.last_error = None;
        }
        if moved {
            state.scope = Some(scope);
        }
        drop(state);
        if held || moved {
            self.inner.changed.send_modify(|g| *g += 1);
        }
    }

    /// Why every request is refused now, when the broker ended the sandbox's access.
    pub fn held(&self) -> Option<Arc<MintFailure>> {
        self.state().held.clone()
    }

    /// Keep the token fresh: mint its successor once it is within the refresh margin. Runs until dropped
    /// or shutdown begins.
    ///
    /// Only a servable token is kept warm. Failed refreshes back off exponentially from [`REFRESH_RETRY`]
    /// to [`REFRESH_RETRY_MAX`], never before a standing failure's "not before"; once the token is no
    /// longer servable the refresher asks GitHub nothing more on its own, and waits until a caller's
    /// demand mints a token again. So an uninstalled App with no one asking costs GitHub one question
    /// per token, not one a second.
    pub async fn refresh_loop(&self) {
        let mut changed = self.inner.changed.subscribe();
        let mut retry_at: Option<Instant> = None;
        let mut backoff = REFRESH_RETRY;
        loop {
            let now = Instant::now();
            let current = {
                let state = self.state();
                if state.closed {
                    return;
                }
                state.current.clone().filter(|c| c.servable(now))
            };
            let Some(current) = current else {
                // Nothing servable to keep warm: wait for a caller's demand (or the first one) to mint.
                retry_at = None;
                backoff = REFRESH_RETRY;
                if changed.changed().await.is_err() {
                    return;
                }
                continue;
            };
            let due = retry_at.map_or(current.refresh_at, |r| r.max(current.refresh_at));
            if now < due {
                // Wake at the time, or at the token's end of service (then the loop stops asking), or when
                // the token changes.
                tokio::select! {
                    () = tokio::time::sleep_until(due.min(current.serve_until)) => {}
                    result = changed.changed() => {
                        if result.is_err() {
                            return;
                        }
                        retry_at = None;
                        backoff = REFRESH_RETRY;
                    }
                }
                continue;
            }
            if let Err(failure) = self.mint_shared(&Want::Replace(&current)).await {
                // Keep serving the old token while it lasts; ask again later and later, never before GitHub
                // said it may be asked again.
                let now = Instant::now();
                retry_at = Some((now + backoff).max(failure.quiet_until));
                backoff = (backoff * 2).min(REFRESH_RETRY_MAX);
            } else {
                retry_at = None;
                backoff = REFRESH_RETRY;
            }
            // The mint bumped `changed`; mark it seen so the loop does not spin once on its own update.
            changed.borrow_and_update();
        }
    }

    /// Shutdown: from now on nothing is minted or served (callers hear "mintd is shutting down"), and the
    /// refresher stops. A mint already in flight finishes and is recorded for [`TokenCache::revoke_all`].
    pub fn close(&self) {
        let mut state = self.state();
        state.closed = true;
        state.current = None;
        drop(state);
        self.inner.changed.send_modify(|g| *g += 1);
    }

    /// Close the cache ([`TokenCache::close`]), wait for a mint in flight to land, then revoke every token
    /// this daemon minted that has not expired. Best effort: errors are logged.
    pub async fn revoke_all(&self) -> usize {
        self.close();
        let in_flight = self.state().in_flight.clone();
        if let Some(mut in_flight) = in_flight {
            // Its task records the token in `live` before answering; a task gone without an answer left none.
            let _ = in_flight.wait_for(Option::is_some).await;
        }
        let now = Instant::now();
        let live: Vec<Arc<Cached>> = std::mem::take(&mut self.state().live);
        let mut revoked = 0;
        for cached in live.iter().filter(|c| c.expires > now) {
            match self.inner.minter.revoke(&cached.token).await {
                Ok(()) => {
                    revoked += 1;
                    self.inner.metrics.revocations.inc();
                }
                Err(e) => tracing::warn!(error = %e, "could not revoke a token; it expires on its own"),
            }
        }
        revoked
    }

    pub fn minter(&self) -> &M {
        &self.inner.minter
    }

    /// The token being served now, if any, without minting.
    pub fn current(&self) -> Option<Arc<Cached>> {
        self.state().current.clone()
    }

    pub fn stats(&self) -> CacheStats {
        let state = self.state();
        CacheStats {
            mints: state.mints,
            last_error: state
                .held
                .as_ref()
                .or(state.last_error.as_ref())
                .map(|e| e.message.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mint_credential::{Request, Target};
    use mint_github::Permissions;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Counts mints; each token lives `lifetime` from (paused) now and is for `repo` on github.com (which a
    /// test may change, as a broker's answer can); can be told to fail. Like a broker, it fixes no
    /// repository in advance unless `fixed` says so, like the App key's `--repo`.
    struct Counting {
        /// Mints begun, counted before the latency: a mint cancelled half-way is counted here only.
        started: AtomicUsize,
        mints: AtomicUsize,
        revokes: AtomicUsize,
        lifetime: Duration,
        latency: Duration,
        fail: std::sync::atomic::AtomicBool,
        uninstalled: std::sync::atomic::AtomicBool,
        /// When set, every mint fails with this (a rate limit, say).
        refuse: Mutex<Option<fn() -> MintError>>,
        repo: Mutex<&'static str>,
        fixed: bool,
    }

    impl Counting {
        fn new(lifetime: Duration, latency: Duration) -> Self {
            Self {
                started: AtomicUsize::new(0),
                mints: AtomicUsize::new(0),
                revokes: AtomicUsize::new(0),
                lifetime,
                latency,
                fail: false.into(),
                uninstalled: false.into(),
                refuse: Mutex::new(None),
                repo: Mutex::new("o/r"),
                fixed: false,
            }
        }

        fn target(&self) -> Arc<Target> {
            let repo = *self.repo.lock().expect("lock");
            Arc::new(target_for(repo))
        }
    }

    fn target_for(repo: &str) -> Target {
        Target::new("https://github.com", repo.parse().expect("valid")).expect("valid")
    }

    impl Minter for Arc<Counting> {
        async fn mint(&self) -> Result<Minted, MintError> {
            self.started.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(self.latency).await;
            let n = self.mints.fetch_add(1, Ordering::SeqCst) + 1;
            if self.uninstalled.load(Ordering::SeqCst) {
                return Err(GithubError::InstallationNotFound { installation_id: 42 }.into());
            }
            if let Some(refuse) = *self.refuse.lock().expect("lock") {
                return Err(refuse());
            }
            if self.fail.load(Ordering::SeqCst) {
                return Err(GithubError::Status {
                    op: mint_github::Operation::Revoke,
                    status: 502,
                    message: "Bad Gateway".into(),
                }
                .into());
            }
            let now = SystemTime::now();
            Ok(Minted {
                token: MintedToken {
                    token: InstallationToken::new(format!("ghs_test_{n}")).expect("valid"),
                    expires_at: now + self.lifetime,
                    server_date: Some(now),
                    permissions: Permissions::least(),
                    repository_selection: Some("selected".into()),
                    repositories: None,
                },
                target: self.target(),
                installation_id: 42,
            })
        }

        async fn revoke(&self, _token: &InstallationToken) -> Result<(), GithubError> {
            self.revokes.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }

        fn fixed_scope(&self) -> Option<Scope> {
            self.fixed.then(|| Scope {
                target: self.target(),
                installation_id: 42,
            })
        }
    }

    /// This test process, as the kernel reports it through a socket pair.
    fn me() -> AllowedPeer {
        let (ours, _theirs) = std::os::unix::net::UnixStream::pair().expect("socketpair");
        crate::peer::check(&ours, &[nix::unistd::getuid().as_raw()]).expect("allowed")
    }

    fn approved() -> Approved {
        approved_for(&target_for("o/r"))
    }

    fn approved_for(target: &Target) -> Approved {
        target
            .check_get(&Request::decode(b"protocol=https\nhost=github.com\n").expect("decodes"))
            .expect("approved")
    }

    fn get_for(repo: &str) -> Request {
        Request::decode(format!("protocol=https\nhost=github.com\npath={repo}.git\n").as_bytes()).expect("decodes")
    }

    #[tokio::test(start_paused = true)]
    async fn a_held_refusal_answers_every_request_at_once_and_a_resume_serves_again_with_no_restart() {
        let minter = Arc::new(Counting::new(HOUR, Duration::from_millis(100)));
        let cache = TokenCache::new(minter.clone(), Arc::default());
        assert!(cache.get(&me(), &approved()).await.is_ok());
        cache.hold("GitHub was disconnected by octocat: connect it again to run coding tasks");
        let started = Instant::now();
        for _ in 0..3 {
            match cache.get(&me(), &approved()).await {
                Err(GetError::Failed(failure)) => {
                    assert!(
                        failure.message.contains("disconnected by octocat"),
                        "{}",
                        failure.message
                    );
                }
                other => panic!("served while held: {other:?}"),
            }
        }
        assert_eq!(started.elapsed(), Duration::ZERO, "the refusal never waits on a mint");
        assert_eq!(minter.mints.load(Ordering::SeqCst), 1, "nothing was minted while held");
        assert!(cache.current().is_none(), "the token in hand was dropped");
        assert!(cache.stats().last_error.is_some_and(|e| e.contains("disconnected")));

        cache.resume(Scope {
            target: Arc::new(target_for("o/r")),
            installation_id: 42,
        });
        assert_eq!(
            cache
                .get(&me(), &approved())
                .await
                .expect("served again")
                .token
                .expose(),
            "ghs_test_2"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_resume_for_another_repository_drops_the_old_token_and_follows_at_once() {
        let minter = Arc::new(Counting::new(HOUR, Duration::ZERO));
        let cache = TokenCache::new(minter.clone(), Arc::default());
        assert!(cache.get(&me(), &approved()).await.is_ok());
        cache.resume(Scope {
            target: Arc::new(target_for("o/s")),
            installation_id: 42,
        });
        assert_eq!(
            cache.target().expect("known").repo().to_string(),
            "o/s",
            "followed before any mint"
        );
        assert!(cache.current().is_none(), "the old repository's token is not served");
        // The same scope again changes nothing.
        *minter.repo.lock().expect("lock") = "o/s";
        let served = cache
            .get(&me(), &approved_for(&target_for("o/s")))
            .await
            .expect("served");
        cache.resume(Scope {
            target: Arc::new(target_for("o/s")),
            installation_id: 42,
        });
        assert!(cache.current().is_some_and(|c| Arc::ptr_eq(&c, &served)));
    }

    #[tokio::test(start_paused = true)]
    async fn the_repository_follows_the_latest_token() {
        let minter = Arc::new(Counting::new(HOUR, Duration::ZERO));
        let cache = TokenCache::new(minter.clone(), Arc::default());
        assert!(
            cache.target().is_none(),
            "a broker names the repository with its first token"
        );
        assert_eq!(minter.mints.load(Ordering::SeqCst), 0);

        // Nothing known: learning the repository is one mint, and its token is then served for it.
        let first = cache.learn_target().await.expect("learnt");
        assert_eq!(first.repo().to_string(), "o/r");
        assert_eq!(cache.scope().expect("known").installation_id, 42);
        let old = first.check_get(&get_for("o/r")).expect("o/r approved");
        assert_eq!(
            cache.get(&me(), &old).await.expect("served").token.expose(),
            "ghs_test_1"
        );
        assert_eq!(
            minter.mints.load(Ordering::SeqCst),
            1,
            "learning and serving took one mint"
        );
        assert!(
            first.check_get(&get_for("o/s")).is_err(),
            "another repository is declined unminted"
        );

        // The connection moves to o/s: from the next token on, everything follows it.
        *minter.repo.lock().expect("lock") = "o/s";
        tokio::time::sleep(Duration::from_secs(56 * 60)).await;
        match cache.get(&me(), &old).await {
            Err(GetError::Moved { now }) => assert_eq!(now.repo().to_string(), "o/s"),
            other => panic!("an o/r approval gets no o/s token: {other:?}"),
        }
        let now = cache.target().expect("known");
        assert_eq!(now.repo().to_string(), "o/s");
        assert!(
            now.check_get(&get_for("o/r")).is_err(),
            "the old repository is declined now"
        );
        let new = now.check_get(&get_for("o/s")).expect("o/s approved");
        let served = cache.get(&me(), &new).await.expect("served");
        assert_eq!(
            (served.token.expose(), served.target.repo().to_string().as_str()),
            ("ghs_test_2", "o/s")
        );
        // Both tokens are still revoked at shutdown, whichever repository they were for.
        assert_eq!(cache.revoke_all().await, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_fixed_repository_is_known_before_any_mint() {
        let mut counting = Counting::new(HOUR, Duration::ZERO);
        counting.fixed = true;
        let minter = Arc::new(counting);
        let cache = TokenCache::new(minter.clone(), Arc::default());
        assert_eq!(cache.target().expect("configured").repo().to_string(), "o/r");
        assert_eq!(cache.learn_target().await.expect("known").repo().to_string(), "o/r");
        assert_eq!(minter.mints.load(Ordering::SeqCst), 0, "nothing minted to know it");
        let other = approved_for(&target_for("o/other"));
        assert!(matches!(cache.get(&me(), &other).await, Err(GetError::Moved { .. })));
    }

    const HOUR: Duration = Duration::from_secs(3600);

    #[tokio::test(start_paused = true)]
    async fn concurrent_cold_gets_cause_one_mint() {
        let minter = Arc::new(Counting::new(HOUR, Duration::from_millis(500)));
        let cache = Arc::new(TokenCache::new(minter.clone(), Arc::default()));
        let results = concurrent_gets(&cache, 64).await;
        assert_eq!(minter.mints.load(Ordering::SeqCst), 1);
        assert_eq!(results.len(), 64);
        assert!(results.iter().all(|r| r.as_deref() == Ok("ghs_test_1")));
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_cold_gets_share_one_failure() {
        let minter = Arc::new(Counting::new(HOUR, Duration::from_millis(500)));
        minter.fail.store(true, Ordering::SeqCst);
        let cache = Arc::new(TokenCache::new(minter.clone(), Arc::default()));
        let results = concurrent_gets(&cache, 16).await;
        assert_eq!(
            minter.mints.load(Ordering::SeqCst),
            1,
            "waiters share the failed attempt"
        );
        assert!(results.iter().all(Result::is_err));
        assert!(cache.stats().last_error.is_some_and(|e| e.contains("502")));
    }

    #[tokio::test(start_paused = true)]
    async fn serves_until_five_minutes_are_left_and_refreshes_before() {
        let minter = Arc::new(Counting::new(HOUR, Duration::from_millis(200)));
        let cache = Arc::new(TokenCache::new(minter.clone(), Arc::default()));
        let refresher = tokio::spawn({
            let cache = cache.clone();
            async move { cache.refresh_loop().await }
        });
        let ok = approved();
        let first = cache.get(&me(), &ok).await.expect("mints");
        assert_eq!(first.token.expose(), "ghs_test_1");

        // 49 minutes in: still the first token, no refresh yet.
        tokio::time::sleep(Duration::from_secs(49 * 60)).await;
        assert_eq!(
            cache.get(&me(), &ok).await.expect("cached").token.expose(),
            "ghs_test_1"
        );
        assert_eq!(minter.mints.load(Ordering::SeqCst), 1);

        // Past 50 minutes (10 left): the refresher has minted the successor in the background.
        tokio::time::sleep(Duration::from_secs(61)).await;
        assert_eq!(minter.mints.load(Ordering::SeqCst), 2);
        let started = Instant::now();
        let second = cache.get(&me(), &ok).await.expect("warm");
        assert_eq!(started.elapsed(), Duration::ZERO, "a warm get never waits on GitHub");
        assert_eq!(second.token.expose(), "ghs_test_2");
        assert!(second.remaining(Instant::now()) > Duration::from_secs(59 * 60));

        // Hours later, tokens kept rolling with no burst of mints: one per 50 minutes.
        tokio::time::sleep(Duration::from_secs(5 * 3600)).await;
        let mints = minter.mints.load(Ordering::SeqCst);
        assert!((7..=8).contains(&mints), "{mints} mints in 6 hours");
        let served = cache.get(&me(), &ok).await.expect("warm");
        assert!(served.remaining(Instant::now()) >= SERVE_MARGIN);
        refresher.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn never_serves_a_token_with_under_five_minutes_left() {
        // No refresher: the only way to a new token is a get that finds the old one too short.
        let minter = Arc::new(Counting::new(HOUR, Duration::ZERO));
        let cache = TokenCache::new(minter.clone(), Arc::default());
        let ok = approved();
        cache.get(&me(), &ok).await.expect("mints");
        tokio::time::sleep(Duration::from_secs(55 * 60 - 1)).await;
        assert_eq!(cache.get(&me(), &ok).await.expect("ok").token.expose(), "ghs_test_1");
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(cache.get(&me(), &ok).await.expect("ok").token.expose(), "ghs_test_2");
    }

    #[tokio::test(start_paused = true)]
    async fn short_lived_tokens_refresh_without_a_burst() {
        let minter = Arc::new(Counting::new(Duration::from_secs(120), Duration::from_millis(100)));
        let cache = Arc::new(TokenCache::new(minter.clone(), Arc::default()));
        let refresher = tokio::spawn({
            let cache = cache.clone();
            async move { cache.refresh_loop().await }
        });
        let ok = approved();
        for _ in 0..600 {
            let token = cache.get(&me(), &ok).await.expect("served");
            assert!(token.remaining(Instant::now()) >= Duration::from_secs(30));
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        // 600 s of 120 s tokens refreshed at half-life: about ten mints, not hundreds.
        let mints = minter.mints.load(Ordering::SeqCst);
        assert!((10..=12).contains(&mints), "{mints} mints");
        refresher.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn erase_of_the_served_token_mints_anew_and_foreign_erase_does_nothing() {
        let minter = Arc::new(Counting::new(HOUR, Duration::ZERO));
        let cache = TokenCache::new(minter.clone(), Arc::default());
        let ok = approved();
        cache.get(&me(), &ok).await.expect("mints");
        let target = Target::new("https://github.com", "o/r".parse().expect("valid")).expect("valid");
        let erase = |password: &str| {
            target
                .check_erase(
                    &Request::decode(format!("protocol=https\nhost=github.com\npassword={password}\n").as_bytes())
                        .expect("decodes"),
                )
                .expect("approved")
        };
        assert!(!cache.erase(&erase("ghs_something_else")));
        assert_eq!(cache.get(&me(), &ok).await.expect("ok").token.expose(), "ghs_test_1");
        assert!(cache.erase(&erase("ghs_test_1")));
        assert_eq!(cache.get(&me(), &ok).await.expect("ok").token.expose(), "ghs_test_2");
        assert_eq!(
            cache.revoke_all().await,
            2,
            "both unexpired tokens are revoked at shutdown"
        );
        assert_eq!(minter.revokes.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_refresh_keeps_serving_the_old_token_and_retries_backing_off() {
        let minter = Arc::new(Counting::new(HOUR, Duration::ZERO));
        let cache = Arc::new(TokenCache::new(minter.clone(), Arc::default()));
        let refresher = tokio::spawn({
            let cache = cache.clone();
            async move { cache.refresh_loop().await }
        });
        let ok = approved();
        cache.get(&me(), &ok).await.expect("mints");
        minter.fail.store(true, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(50 * 60 + 1)).await;
        assert_eq!(
            cache.get(&me(), &ok).await.expect("old token").token.expose(),
            "ghs_test_1"
        );
        // Failed refreshes at 50:00, then 15, 30, 60 s apart: four by 51:46, not one a second.
        tokio::time::sleep(Duration::from_secs(105)).await;
        assert_eq!(minter.mints.load(Ordering::SeqCst), 1 + 4, "backed off");
        minter.fail.store(false, Ordering::SeqCst);
        // The next try, 120 s after the last (at 53:45), succeeds while the old token is still served.
        tokio::time::sleep(Duration::from_secs(120)).await;
        let token = cache.get(&me(), &ok).await.expect("new token");
        assert_eq!(token.token.expose(), "ghs_test_6");
        assert!(cache.stats().last_error.is_none());
        refresher.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn the_refresher_stops_asking_once_no_token_is_servable() {
        // Regression: with 20 s tokens and the App uninstalled, mintd asked GitHub about once a second
        // forever with no one asking for a token.
        let minter = Arc::new(Counting::new(Duration::from_secs(20), Duration::from_millis(50)));
        let cache = Arc::new(TokenCache::new(minter.clone(), Arc::default()));
        let refresher = tokio::spawn({
            let cache = cache.clone();
            async move { cache.refresh_loop().await }
        });
        cache.get(&me(), &approved()).await.expect("mints");
        minter.uninstalled.store(true, Ordering::SeqCst);
        // Through the token's expiry and an hour beyond, with no caller: one refresh was tried, at 10 s.
        tokio::time::sleep(HOUR).await;
        assert_eq!(
            minter.started.load(Ordering::SeqCst),
            2,
            "one background refresh, then silence"
        );
        // A caller's demand asks again (once per the negative cache's ten seconds, however many ask).
        for _ in 0..20 {
            assert!(cache.get(&me(), &approved()).await.is_err());
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
        assert_eq!(minter.started.load(Ordering::SeqCst), 3);
        // Reinstalled: a caller mints, and the refresher keeps that token warm again.
        minter.uninstalled.store(false, Ordering::SeqCst);
        tokio::time::sleep(NEGATIVE_TTL).await;
        assert!(cache.get(&me(), &approved()).await.is_ok());
        tokio::time::sleep(Duration::from_secs(15)).await;
        assert_eq!(
            minter.started.load(Ordering::SeqCst),
            5,
            "refreshed in the background again"
        );
        refresher.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_caller_going_away_never_cancels_the_mint() {
        // Regression: the mint ran on the first caller's future, so git being killed (hyper dropping the
        // request) cancelled the POST: GitHub made a token mintd never recorded nor revoked, and the
        // queued callers started over.
        let minter = Arc::new(Counting::new(HOUR, Duration::from_secs(2)));
        let cache = Arc::new(TokenCache::new(minter.clone(), Arc::default()));
        let first = tokio::spawn({
            let cache = cache.clone();
            async move { cache.get(&me(), &approved()).await.map(|c| c.token.expose().to_owned()) }
        });
        let queued = tokio::spawn({
            let cache = cache.clone();
            async move { cache.get(&me(), &approved()).await.map(|c| c.token.expose().to_owned()) }
        });
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(minter.started.load(Ordering::SeqCst), 1, "the mint is at GitHub");
        first.abort();
        assert!(first.await.is_err_and(|e| e.is_cancelled()));
        assert_eq!(queued.await.expect("joins").expect("served"), "ghs_test_1");
        assert_eq!(
            cache.get(&me(), &approved()).await.expect("served").token.expose(),
            "ghs_test_1",
            "the abandoned mint's token is recorded and served"
        );
        assert_eq!(minter.started.load(Ordering::SeqCst), 1, "only one mint happened");
        assert_eq!(cache.revoke_all().await, 1, "and it is revoked at shutdown");
        assert_eq!(minter.revokes.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn after_close_nothing_is_minted_or_served_and_a_mint_in_flight_is_revoked() {
        let minter = Arc::new(Counting::new(HOUR, Duration::from_secs(1)));
        let cache = Arc::new(TokenCache::new(minter.clone(), Arc::default()));
        let refresher = tokio::spawn({
            let cache = cache.clone();
            async move { cache.refresh_loop().await }
        });
        // A request arrives just before shutdown; its mint is at GitHub when the cache closes.
        let in_flight = tokio::spawn({
            let cache = cache.clone();
            async move { cache.get(&me(), &approved()).await.map(|c| c.token.expose().to_owned()) }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        cache.close();
        let Err(GetError::Failed(failure)) = cache.get(&me(), &approved()).await else {
            panic!("a get after close is refused")
        };
        assert!(
            failure.message.contains("mintd is shutting down"),
            "{}",
            failure.message
        );
        assert!(failure.transient);
        // revoke_all waits for the mint in flight and revokes its token; its caller is not served it.
        assert_eq!(cache.revoke_all().await, 1);
        assert_eq!(minter.revokes.load(Ordering::SeqCst), 1);
        let Err(GetError::Failed(failure)) = in_flight.await.expect("joins") else {
            panic!("the token minted during shutdown was served")
        };
        assert!(failure.message.contains("mintd is shutting down"));
        // Hours later: the refresher stopped and no request minted anything.
        tokio::time::sleep(3 * HOUR).await;
        assert!(cache.get(&me(), &approved()).await.is_err());
        assert_eq!(minter.started.load(Ordering::SeqCst), 1);
        assert!(refresher.is_finished(), "the refresher ends at close");
    }

    #[test]
    fn the_expiry_for_git_is_on_the_local_clock() {
        // GitHub's clock is two hours ahead: its expires_at is three hours from our now, its Date two.
        let now = SystemTime::now();
        let skewed = now + 2 * HOUR;
        let minted = Minted {
            token: MintedToken {
                token: InstallationToken::new("ghs_skewed".into()).expect("valid"),
                expires_at: skewed + HOUR,
                server_date: Some(skewed),
                permissions: Permissions::least(),
                repository_selection: None,
                repositories: None,
            },
            target: Arc::new(target_for("o/r")),
            installation_id: 42,
        };
        let at = Instant::now();
        let cached = Cached::new(minted, at);
        let local = |t: SystemTime| t.duration_since(SystemTime::UNIX_EPOCH).expect("after 1970").as_secs();
        let expected = local(now + HOUR);
        for (what, got) in [
            ("password_expiry_utc", cached.password_expiry_utc(at)),
            ("expires_at", local(cached.expires_at)),
        ] {
            assert!(got.abs_diff(expected) <= 2, "{what}: {got}, expected about {expected}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn permanent_failures_are_repeated_without_asking_github_for_ten_seconds() {
        let minter = Arc::new(Counting::new(HOUR, Duration::ZERO));
        minter.uninstalled.store(true, Ordering::SeqCst);
        let cache = TokenCache::new(minter.clone(), Arc::default());
        let ok = approved();
        for _ in 0..20 {
            let Err(GetError::Failed(failure)) = cache.get(&me(), &ok).await else {
                panic!("uninstalled")
            };
            assert!(failure.message.contains("installation 42 not found"));
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
        // 8 s of a git loop: one question to GitHub. Past the 10 s, it asks again.
        assert_eq!(minter.mints.load(Ordering::SeqCst), 1);
        tokio::time::sleep(NEGATIVE_TTL).await;
        minter.uninstalled.store(false, Ordering::SeqCst);
        assert!(cache.get(&me(), &ok).await.is_ok(), "reinstalled: served again");
        assert_eq!(minter.mints.load(Ordering::SeqCst), 2);
    }

    fn rate_limited_for_an_hour() -> MintError {
        GithubError::RateLimited {
            op: mint_github::Operation::Revoke,
            retry_after: Some(HOUR),
            message: "API rate limit exceeded for installation ID 42.".into(),
        }
        .into()
    }

    fn rate_limited_for_half_an_hour() -> MintError {
        GithubError::RateLimited {
            op: mint_github::Operation::Revoke,
            retry_after: Some(HOUR / 2),
            message: "API rate limit exceeded for installation ID 42.".into(),
        }
        .into()
    }

    fn broker_busy_for_two_minutes() -> MintError {
        crate::broker::BrokerError::Unavailable {
            url: "https://broker.invalid".into(),
            status: 503,
            code: "github_rate_limited".into(),
            message: "GitHub rate-limited the broker".into(),
            retry_after: Some(Duration::from_secs(120)),
        }
        .into()
    }

    #[tokio::test(start_paused = true)]
    async fn a_rate_limit_is_answered_from_memory_until_github_said() {
        let minter = Arc::new(Counting::new(HOUR, Duration::ZERO));
        *minter.refuse.lock().expect("lock") = Some(rate_limited_for_an_hour);
        let cache = Arc::new(TokenCache::new(minter.clone(), Arc::default()));
        // A hostile loop: 100 gets spread over the hour, and 64 at once. GitHub hears one question.
        for _ in 0..100 {
            let Err(GetError::Failed(failure)) = cache.get(&me(), &approved()).await else {
                panic!("rate-limited")
            };
            assert!(
                failure.message.contains("will not ask again before"),
                "{}",
                failure.message
            );
            assert!(failure.transient);
            assert!(failure.retry_after(Instant::now()).is_some_and(|s| s > 0 && s <= 3600));
            tokio::time::sleep(Duration::from_secs(35)).await;
        }
        assert!(concurrent_gets(&cache, 64).await.iter().all(Result::is_err));
        assert_eq!(minter.mints.load(Ordering::SeqCst), 1, "one question in 58 minutes");
        // Past the hour GitHub is asked again, and its token served.
        *minter.refuse.lock().expect("lock") = None;
        tokio::time::sleep(Duration::from_secs(2 * 60 + 1)).await;
        assert_eq!(
            cache.get(&me(), &approved()).await.expect("served").token.expose(),
            "ghs_test_2"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_refresher_waits_out_a_rate_limit_too() {
        let minter = Arc::new(Counting::new(HOUR, Duration::ZERO));
        let cache = Arc::new(TokenCache::new(minter.clone(), Arc::default()));
        let refresher = tokio::spawn({
            let cache = cache.clone();
            async move { cache.refresh_loop().await }
        });
        let ok = approved();
        cache.get(&me(), &ok).await.expect("mints");
        *minter.refuse.lock().expect("lock") = Some(rate_limited_for_half_an_hour);
        // At 50 minutes the refresher asks once and hears "not for 30 minutes".
        tokio::time::sleep(Duration::from_secs(50 * 60 + 1)).await;
        assert_eq!(minter.mints.load(Ordering::SeqCst), 2);
        // The old token is served until 5 minutes are left; after that callers get the rate limit.
        assert_eq!(
            cache.get(&me(), &ok).await.expect("old token").token.expose(),
            "ghs_test_1"
        );
        tokio::time::sleep(Duration::from_secs(10 * 60)).await;
        assert!(cache.get(&me(), &ok).await.is_err());
        tokio::time::sleep(Duration::from_secs(19 * 60)).await;
        assert_eq!(
            minter.mints.load(Ordering::SeqCst),
            2,
            "neither the refresher nor callers asked before the 30 minutes were up"
        );
        *minter.refuse.lock().expect("lock") = None;
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(
            minter.mints.load(Ordering::SeqCst),
            2,
            "no token is servable, so nothing asks until a caller does"
        );
        assert_eq!(cache.get(&me(), &ok).await.expect("new").token.expose(), "ghs_test_3");
        refresher.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_busy_brokers_retry_after_is_honoured_like_githubs() {
        let minter = Arc::new(Counting::new(HOUR, Duration::ZERO));
        *minter.refuse.lock().expect("lock") = Some(broker_busy_for_two_minutes);
        let cache = TokenCache::new(minter.clone(), Arc::default());
        for _ in 0..119 {
            let Err(GetError::Failed(failure)) = cache.get(&me(), &approved()).await else {
                panic!("busy")
            };
            assert!(failure.message.contains("retry in 120 s"), "{}", failure.message);
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        assert_eq!(minter.mints.load(Ordering::SeqCst), 1);
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(cache.get(&me(), &approved()).await.is_err());
        assert_eq!(minter.mints.load(Ordering::SeqCst), 2, "asked again after two minutes");
    }

    #[test]
    fn a_hold_off_is_capped_at_an_hour() {
        let error: MintError = GithubError::RateLimited {
            op: mint_github::Operation::Revoke,
            retry_after: Some(Duration::from_secs(86_400)),
            message: String::new(),
        }
        .into();
        assert_eq!(error.hold_off(), Some(MAX_HOLD_OFF));
        let unnamed: MintError = GithubError::RateLimited {
            op: mint_github::Operation::Revoke,
            retry_after: None,
            message: String::new(),
        }
        .into();
        assert_eq!(unnamed.hold_off(), Some(mint_github::RATE_LIMIT_DEFAULT_WAIT));
        let gave_up: MintError = GithubError::GaveUp {
            attempts: 3,
            elapsed: Duration::from_secs(5),
            last: Box::new(GithubError::RateLimited {
                op: mint_github::Operation::Revoke,
                retry_after: Some(Duration::from_secs(90)),
                message: String::new(),
            }),
        }
        .into();
        assert_eq!(gave_up.hold_off(), Some(Duration::from_secs(90)));
    }

    #[tokio::test(start_paused = true)]
    async fn erases_cause_at_most_one_re_mint_per_interval() {
        let minter = Arc::new(Counting::new(HOUR, Duration::ZERO));
        let cache = TokenCache::new(minter.clone(), Arc::default());
        let target = Target::new("https://github.com", "o/r".parse().expect("valid")).expect("valid");
        let ok = approved();
        let erase_current = |token: &str| {
            let req = Request::decode(format!("protocol=https\nhost=github.com\npassword={token}\n").as_bytes())
                .expect("decodes");
            cache.erase(&target.check_erase(&req).expect("approved"))
        };
        let first = cache.get(&me(), &ok).await.expect("mints").token.expose().to_owned();
        assert!(erase_current(&first));
        let second = cache.get(&me(), &ok).await.expect("mints").token.expose().to_owned();
        // The fresh token 401s too (GitHub still propagating it): git erases again at once. Keep it.
        assert!(!erase_current(&second));
        assert_eq!(cache.get(&me(), &ok).await.expect("kept").token.expose(), second);
        tokio::time::sleep(ERASE_INTERVAL).await;
        assert!(erase_current(&second));
        assert_eq!(minter.mints.load(Ordering::SeqCst), 2);
        cache.get(&me(), &ok).await.expect("mints");
        assert_eq!(minter.mints.load(Ordering::SeqCst), 3);
    }

    /// Run `n` concurrent gets on their own tasks and collect the tokens (or failures) they got.
    async fn concurrent_gets(cache: &Arc<TokenCache<Arc<Counting>>>, n: usize) -> Vec<Result<String, String>> {
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..n {
            let cache = cache.clone();
            set.spawn(async move {
                cache
                    .get(&me(), &approved())
                    .await
                    .map(|c| c.token.expose().to_owned())
                    .map_err(|e| format!("{e:?}"))
            });
        }
        set.join_all().await
    }
}
