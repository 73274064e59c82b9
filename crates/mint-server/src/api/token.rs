//! The broker's routes, authenticated by the sandbox credential.
//!
//! `POST /api/v1/token`: the sandbox's live token for its product's current connection, or a new one.
//! One live token per sandbox and repository: a token with more life left than mintd refreshes at is handed
//! out again (after a restart of mintd, or to a sandbox that lost its cache); otherwise one mint at a time
//! per sandbox across the fleet, within a per-sandbox budget. The mint and its record are one task that no
//! caller can cancel, and the record is checked against the sandbox's right to the repository in the same
//! transaction, so every token GitHub issued is recorded, sealed, and revocable by any replica.
//!
//! `GET /api/v1/sandbox`: where the sandbox's access stands, as a long poll, so mintd hears of Disconnect,
//! Change repository and teardown at once.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use mint_api::broker::{ErrorCode, MAX_WAIT_SECONDS, SandboxState, TokenAnswer, TokenRequest};
use mint_github::InstallationToken;
use serde::Deserialize;

use crate::fleet::{MAX_QUEUE_WAIT, MintPermit};
use crate::github::connection_outcome;
use crate::http::{ApiError, Input, credential_hash, github_failure, json, not_now, sandbox_refused};
use crate::metrics::Phase;
use crate::model::{Connection, SandboxRow, now, now_ms};
use crate::secrets::sha256_hex;
use crate::state::AppState;
use crate::store::{Actor, BrokerView, LeaseWanted, NewToken, Reusable, SANDBOX_EXPIRED, SANDBOX_TORN_DOWN};

/// The window of the per-sandbox mint budget.
const BUDGET_WINDOW: Duration = Duration::from_secs(60);
/// A replica minting for a sandbox holds its lease this long, and renews it every [`LEASE_RENEW`] while
/// the mint runs: a replica killed mid-mint lets the sandbox's next request through within this.
const MINT_LEASE: Duration = Duration::from_secs(3);
const LEASE_RENEW: Duration = Duration::from_secs(1);
/// How often a request waiting on another replica's mint for the same sandbox looks for its token.
const LEASE_POLL: Duration = Duration::from_millis(50);

/// The target a connection mints for: (installation, repository id, repository name).
type Target = (u64, u64, String);

pub async fn token(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Input(request): Input<TokenRequest>,
) -> Result<Response, ApiError> {
    let hash = credential_hash(&headers).ok_or_else(sandbox_refused)?;
    // The sandbox's other requests on this replica go first, so what they minted is in the view.
    let locking = std::time::Instant::now();
    let here = state.mint_locks.lock(&hash).await;
    let locked = locking.elapsed();
    let viewed = std::time::Instant::now();
    let now = now();
    let window_start = now - i64::try_from(BUDGET_WINDOW.as_secs()).expect("a minute");
    // Other replicas' requests for the sandbox: on PostgreSQL the view takes the mint lease itself when it
    // finds a mint is due, and with it a slot of the installation's when nobody here is in line for one.
    let now_ms = now_ms();
    let wanted = LeaseWanted {
        now_ms,
        until: now_ms + i64::try_from(MINT_LEASE.as_millis()).expect("seconds"),
        budget: i64::from(state.mints_per_minute),
        replaces: request.replaces.as_deref(),
        slot: state.gate.slot_wanted(now_ms),
    };
    let view = state.store.broker_view(&hash, now, window_start, &wanted).await?;
    state.metrics.phase(Phase::View, viewed);
    let view = view.ok_or_else(sandbox_refused)?;
    let (sandbox_id, leased) = (view.sandbox.id.clone(), view.leased);
    // Given back when dropped, if the request does not mint after all.
    let permit = view
        .slot
        .zip(view.connection.installation_id)
        .map(|(slot, installation_id)| state.gate.adopt(&state.store, installation_id, slot));
    let (sandbox, target) = match answer_or_mint(&state, view, request.replaces.as_deref(), now) {
        Ok(mint) => mint,
        Err(answer) => {
            // The view's conditions for the lease are this function's for a mint: given back only if
            // they ever part.
            if let Some(until) = leased {
                tokio::spawn(give_back_lease(state.store.clone(), sandbox_id, until));
            }
            return answer;
        }
    };
    // Its own task: a caller that goes away (mintd timed out, the connection dropped) cancels nothing, and
    // the token GitHub issues is recorded whatever happens to this request.
    let task = tokio::spawn(mint_for(
        state.clone(),
        (sandbox, here),
        target,
        request.replaces.clone(),
        (locked, now),
        (leased, permit),
    ));
    task.await.map_err(|e| {
        tracing::error!(error = %e, "the mint task failed");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Internal,
            "mint-server's mint task failed; the operator finds the cause in the server's log",
        )
    })?
}

/// What the view says: answer now (refused, or the live token handed out again), or mint for this target.
#[allow(clippy::result_large_err, reason = "the error is the answer, built once")]
fn answer_or_mint(
    state: &AppState,
    view: BrokerView,
    replaces: Option<&str>,
    now: i64,
) -> Result<(SandboxRow, Target), Result<Response, ApiError>> {
    if !view.sandbox.usable(now) {
        return Err(Err(sandbox_refused()));
    }
    let Some((installation_id, repository_id, name)) = view.connection.target() else {
        return Err(Err(not_active(&view.connection)));
    };
    let target: Target = (installation_id, repository_id, name.to_owned());
    if let Some(answer) = reuse(state, &view.sandbox.id, &target, replaces, view.reusable) {
        return Err(Ok(answer));
    }
    budget(state, view.recent_mints, view.oldest_recent_mint, now).map_err(Err)?;
    Ok((view.sandbox, target))
}

/// Give the sandbox's mint lease back (if it is still the value this request wrote).
async fn give_back_lease(store: crate::store::Store, sandbox_id: String, until: i64) {
    if let Err(e) = store.release_mint_lease(&sandbox_id, until).await {
        tracing::warn!(error = %e, sandbox = %sandbox_id, "could not give the mint lease back; it runs out by itself");
    }
}

fn not_active(connection: &Connection) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        connection.status.error_code(),
        connection.reason.clone(),
    )
}

/// The per-sandbox budget: at most `--sandbox-mints-per-minute` new tokens a minute, so a leaked credential
/// cannot spend the installation's rate limit. Tokens handed out again do not count.
fn budget(state: &AppState, recent: i64, oldest: Option<i64>, now: i64) -> Result<(), ApiError> {
    if recent < i64::from(state.mints_per_minute) {
        return Ok(());
    }
    let window = i64::try_from(BUDGET_WINDOW.as_secs()).expect("a minute");
    let wait = oldest.map_or(window, |oldest| oldest + window - now).clamp(1, window);
    Err(ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::MintBudgetExhausted,
        format!(
            "this sandbox was minted {recent} tokens in the last minute, its budget (--sandbox-mints-per-minute {}): retry in {wait} s",
            state.mints_per_minute
        ),
    )
    .retry_after(Duration::from_secs(u64::try_from(wait).unwrap_or(1))))
}

/// The live token, answered again, unless it is the one the sandbox reported failing or it does not open
/// here (then a new one is minted).
fn reuse(
    state: &AppState,
    sandbox_id: &str,
    (installation_id, repository_id, name): &Target,
    replaces: Option<&str>,
    found: Option<Reusable>,
) -> Option<Response> {
    let found = found.filter(|r| replaces != Some(r.token_sha256.as_str()))?;
    let token = match state
        .sealer
        .open(state.github.app(), sandbox_id, &found.token_sha256, &found.sealed)
    {
        Ok(token) => token,
        Err(e) => {
            tracing::warn!(error = %e, sandbox = sandbox_id, "a live token cannot be handed out again; minting another");
            return None;
        }
    };
    tracing::debug!(sandbox = sandbox_id, "handed out the sandbox's live token again");
    state.metrics.reused.inc();
    Some(token_answer(
        &token,
        UNIX_EPOCH + Duration::from_secs(u64::try_from(found.expires_at).unwrap_or_default()),
        name,
        (*repository_id, *installation_id),
        state.github.permissions(),
        None,
    ))
}

/// The 200 answer, mint-api's [`TokenAnswer`], which mintd decodes and checks (crates/mint-daemon/src/broker.rs).
fn token_answer(
    token: &InstallationToken,
    expires_at: SystemTime,
    repository: &str,
    (repository_id, installation_id): (u64, u64),
    permissions: &mint_github::Permissions,
    github_date: Option<SystemTime>,
) -> Response {
    let answer = TokenAnswer {
        token: token.expose().to_owned(),
        expires_at: humantime::format_rfc3339_seconds(expires_at).to_string(),
        repository: repository.to_owned(),
        repository_id: Some(repository_id),
        installation_id,
        permissions: permissions
            .0
            .iter()
            .map(|(name, level)| (name.clone(), level.as_str().to_owned()))
            .collect(),
    };
    let mut response = json(StatusCode::OK, &answer);
    // GitHub's clock for a fresh token, ours for one handed out again: mintd computes the token's life as
    // `expires_at` less this.
    let date = github_date.unwrap_or_else(SystemTime::now);
    if let Ok(value) = HeaderValue::from_str(&httpdate::fmt_http_date(date)) {
        response.headers_mut().insert(header::DATE, value);
    }
    response
}

/// One request's mint, on its own task, holding the sandbox's lock on this replica: wait for the sandbox's
/// requests at other replicas unless the view took the lease (`leased`), hand out what they minted if it
/// will do, else mint, seal, record and check. `(locked, viewed_at)`: how long the request waited for the
/// lock here, and the view's time (unix seconds); what other replicas did since is looked at again.
async fn mint_for(
    state: Arc<AppState>,
    (sandbox, _here): (SandboxRow, tokio::sync::OwnedMutexGuard<()>),
    target: Target,
    replaces: Option<String>,
    (locked, viewed_at): (Duration, i64),
    (mut leased, permit): (Option<i64>, Option<MintPermit>),
) -> Result<Response, ApiError> {
    let waited = std::time::Instant::now();
    let (installation_id, repository_id, _) = &target;
    let again = |state: &Arc<AppState>| {
        let (state, sandbox_id) = (state.clone(), sandbox.id.clone());
        let target = target.clone();
        let replaces = replaces.clone();
        async move {
            let found = state
                .store
                .reusable_token(&sandbox_id, (target.0, target.1), now())
                .await?;
            Ok::<_, ApiError>(reuse(&state, &sandbox_id, &target, replaces.as_deref(), found))
        }
    };
    // A lease in the database, taken only if no token was recorded since the view (one process on
    // SQLite, where the lock here is enough).
    let mut looked_again = false;
    let lease = loop {
        if state.store.backend() == crate::store::Backend::Sqlite {
            break None;
        }
        if let Some(until) = leased.take() {
            break Some(until);
        }
        let now_ms = now_ms();
        let until = now_ms + i64::try_from(MINT_LEASE.as_millis()).expect("seconds");
        if state
            .store
            .take_mint_lease(&sandbox.id, (now_ms, until), viewed_at, replaces.as_deref())
            .await?
        {
            break Some(until);
        }
        // Another replica minted for this sandbox, or is minting: its token will do.
        looked_again = true;
        if let Some(answer) = again(&state).await? {
            return Ok(answer);
        }
        tokio::time::sleep(LEASE_POLL).await;
        if waited.elapsed() >= MAX_QUEUE_WAIT {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::MintQueueFull,
                "another request of this sandbox has been minting for 10 s: retry shortly",
            )
            .retry_after(Duration::from_secs(1)));
        }
    };
    state.metrics.phase_took(Phase::Sandbox, locked + waited.elapsed());
    let now = now();
    let window_start = now - i64::try_from(BUDGET_WINDOW.as_secs()).expect("a minute");
    let mut lease = lease.map(|first| MintLease::start(&state, &sandbox.id, first));
    let result = async {
        // The budget was checked on the caller's view; after waiting for others, on what they minted too.
        if looked_again {
            let (recent, oldest) = state.store.recent_mints(&sandbox.id, window_start).await?;
            budget(&state, recent, oldest, now)?;
        }
        mint_and_record(
            &state,
            &sandbox,
            (*installation_id, *repository_id, &target.2),
            (&mut lease, permit),
        )
        .await
    }
    .await;
    if let Some(lease) = lease {
        // Not given back by a record (the mint failed or was refused): given back after the answer.
        let (store, sandbox_id) = (state.store.clone(), sandbox.id.clone());
        tokio::spawn(async move { give_back_lease(store, sandbox_id, lease.stop().await).await });
    }
    result
}

/// This request's hold on the sandbox's mint lease (PostgreSQL), renewed by a task of its own while the mint
/// runs: the renewal must never wait for the mint (whose statement locks the sandbox's row), nor the mint for
/// the renewal.
struct MintLease {
    renewal: tokio::task::JoinHandle<()>,
    /// The lease's value in the database, as this request last wrote it.
    held: Arc<std::sync::atomic::AtomicI64>,
}

impl MintLease {
    fn start(state: &AppState, sandbox_id: &str, first: i64) -> Self {
        let held = Arc::new(std::sync::atomic::AtomicI64::new(first));
        let (store, sandbox_id, current) = (state.store.clone(), sandbox_id.to_owned(), held.clone());
        let renewal = crate::fleet::keep_renewed(
            format!("sandbox {sandbox_id}'s mint lease"),
            (LEASE_RENEW, MINT_LEASE),
            move |until| {
                let (store, sandbox_id, current) = (store.clone(), sandbox_id.clone(), current.clone());
                async move {
                    let previous = current.load(std::sync::atomic::Ordering::Acquire);
                    let renewed = store.renew_mint_lease(&sandbox_id, previous, until).await?;
                    if renewed {
                        current.store(until, std::sync::atomic::Ordering::Release);
                    }
                    Ok(renewed)
                }
            },
        );
        Self { renewal, held }
    }

    /// Stop renewing; the lease's value in the database, which whoever gives it back names.
    async fn stop(self) -> i64 {
        self.renewal.abort();
        let _ = self.renewal.await;
        self.held.load(std::sync::atomic::Ordering::Acquire)
    }
}

/// Mint for the connection's target, seal and record the token, and hand it out only if the sandbox still
/// has the right to it once recorded. The record gives the mint lease and the installation's slot back in
/// the same statement.
async fn mint_and_record(
    state: &AppState,
    sandbox: &SandboxRow,
    (installation_id, repository_id, name): (u64, u64, &str),
    (lease, permit): (&mut Option<MintLease>, Option<MintPermit>),
) -> Result<Response, ApiError> {
    let (minted, permit) = mint_in_turn(state, sandbox, (installation_id, repository_id), name, permit).await?;
    let current_name = minted
        .repositories
        .as_deref()
        .and_then(<[_]>::first)
        .map_or_else(|| name.to_owned(), |r| r.full_name.clone());
    if current_name != name {
        tracing::info!(from = name, to = %current_name, "the repository was renamed or transferred");
        state
            .store
            .rename_repository(&sandbox.product_id, repository_id, &current_name, now())
            .await?;
    }
    let minted_at = now();
    let expires_at = minted
        .expires_at
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let token_sha256 = sha256_hex(minted.token.expose().as_bytes());
    let sealed = match state
        .sealer
        .seal(state.github.app(), &sandbox.id, &token_sha256, &minted.token)
    {
        Ok(sealed) => sealed,
        Err(e) => {
            // Not sealed means not revocable by another replica: never hand it out.
            tracing::error!(error = %e, sandbox = %sandbox.id, "could not seal a new token; revoking it");
            state.github.revoke_quietly(&minted.token).await;
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::SealUnavailable,
                "mint-server could not seal the new token for safe keeping, so it revoked it: retry shortly (the operator finds the cause in the server's log)",
            )
            .retry_after(Duration::from_secs(5)));
        }
    };
    let record = NewToken {
        token_sha256,
        sandbox_id: sandbox.id.clone(),
        installation_id,
        repository_id,
        repository: current_name.clone(),
        permissions: minted.permissions.clone(),
        minted_at,
        expires_at,
        sealed,
    };
    let recording = std::time::Instant::now();
    let held = match lease.take() {
        Some(lease) => Some(lease.stop().await),
        None => None,
    };
    let slot = permit.into_slot_row();
    let recorded = state.store.record_mint(&record, now_ms(), (held, slot.as_ref())).await;
    state.metrics.phase(Phase::Record, recording);
    match recorded {
        Err(e) => {
            // Unrecorded means unrevocable: never hand it out.
            state.github.revoke_quietly(&minted.token).await;
            Err(e.into())
        }
        Ok(Some(reason)) => {
            // The sandbox's right to the repository ended while GitHub minted: the token is queued for
            // revocation already, and the caller hears why.
            tracing::info!(sandbox = %sandbox.id, %reason, "a token minted while access ended is being revoked");
            if reason == SANDBOX_TORN_DOWN || reason == SANDBOX_EXPIRED {
                Err(sandbox_refused())
            } else {
                Err(ApiError::new(StatusCode::CONFLICT, ErrorCode::AccessEnded, reason))
            }
        }
        Ok(None) => {
            tracing::info!(sandbox = %sandbox.id, installation = installation_id, repository_id, "minted for sandbox");
            Ok(token_answer(
                &minted.token,
                minted.expires_at,
                &current_name,
                (repository_id, installation_id),
                &minted.permissions,
                minted.server_date,
            ))
        }
    }
}

/// Mint once the installation's turn comes (the fleet-wide bound), and say what a failure means: GitHub's
/// pause is recorded for every replica, and a connection GitHub no longer serves is marked so. A token
/// comes with its permit, whose slot the record gives back; a failure gives it back at once.
async fn mint_in_turn(
    state: &AppState,
    sandbox: &SandboxRow,
    (installation_id, repository_id): (u64, u64),
    name: &str,
    taken: Option<MintPermit>,
) -> Result<(mint_github::MintedToken, MintPermit), ApiError> {
    let waited = std::time::Instant::now();
    let permit = match taken {
        Some(permit) => Ok(permit),
        None => state.turn(installation_id, &sandbox.product_id).await,
    };
    state.metrics.phase(Phase::Installation, waited);
    let permit = permit.map_err(|refused| not_now(refused, installation_id))?;
    let asked = std::time::Instant::now();
    let minted = state.github.mint(installation_id, repository_id, name).await;
    state.metrics.phase(Phase::Github, asked);
    match minted {
        Ok(minted) => Ok((minted, permit)),
        Err(e) => {
            drop(permit);
            tracing::warn!(error = %e, sandbox = %sandbox.id, installation = installation_id, "mint failed");
            state.noticed(installation_id, &e).await;
            Err(match connection_outcome(&e, name) {
                Some((status, reason)) => {
                    state
                        .store
                        .set_connection_status(
                            &sandbox.product_id,
                            (installation_id, repository_id),
                            status,
                            &reason,
                            now(),
                            &Actor::GitHub,
                        )
                        .await?;
                    ApiError::new(StatusCode::CONFLICT, status.error_code(), reason)
                }
                None if matches!(e, mint_github::GithubError::PermissionNotGranted { .. }) => {
                    ApiError::new(StatusCode::CONFLICT, ErrorCode::PermissionNotGranted, e.to_string())
                }
                None => github_failure(&e),
            })
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct WaitQuery {
    /// Seconds to wait for a change when `If-None-Match` names the current state.
    #[serde(default)]
    wait: Option<u64>,
}

/// `GET /api/v1/sandbox`: where the sandbox's access stands, answered at once when it differs from the
/// state the caller names in `If-None-Match`, else when it changes or `wait` seconds pass (304).
pub async fn sandbox(State(state): State<Arc<AppState>>, headers: HeaderMap, Query(q): Query<WaitQuery>) -> Response {
    match watch(&state, &headers, q.wait.unwrap_or(0)).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

async fn watch(state: &AppState, headers: &HeaderMap, wait: u64) -> Result<Response, ApiError> {
    let hash = credential_hash(headers).ok_or_else(sandbox_refused)?;
    let known = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(wait.min(MAX_WAIT_SECONDS));
    let mut changes = None;
    loop {
        let (sandbox, connection) = state
            .store
            .sandbox_with_connection(&hash)
            .await?
            .ok_or_else(sandbox_refused)?;
        // Watch before deciding, so a change between this read and the wait is not missed.
        let changes = changes.get_or_insert_with(|| state.store.events().watch_product(&sandbox.product_id));
        let current = sandbox_state(&sandbox, connection.as_ref(), now());
        let etag = current.etag();
        if known.as_deref() != Some(etag.as_str()) {
            let mut response = json(StatusCode::OK, &serde_json::to_value(&current).expect("serialises"));
            insert_etag(&mut response, &etag);
            return Ok(response);
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            let mut response = StatusCode::NOT_MODIFIED.into_response();
            insert_etag(&mut response, &etag);
            return Ok(response);
        }
        // The credential's own expiry changes the state too, with no event.
        let expiry = u64::try_from(sandbox.expires_at - crate::model::now()).unwrap_or(0);
        let until = deadline.min(now + Duration::from_secs(expiry.max(1)));
        tokio::select! {
            () = changes.changed() => {}
            () = tokio::time::sleep_until(until) => {}
        }
    }
}

fn insert_etag(response: &mut Response, etag: &str) {
    if let Ok(value) = HeaderValue::from_str(etag) {
        response.headers_mut().insert(header::ETAG, value);
    }
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

/// The sandbox's state as mintd sees it.
pub fn sandbox_state(sandbox: &SandboxRow, connection: Option<&Connection>, now: i64) -> SandboxState {
    let stopped = |code: &str, message: &str| SandboxState {
        sandbox_id: sandbox.id.clone(),
        active: false,
        code: code.to_owned(),
        message: message.to_owned(),
        repository: None,
        repository_id: None,
        installation_id: None,
    };
    if sandbox.revoked_at.is_some() {
        return stopped("sandbox_torn_down", SANDBOX_TORN_DOWN);
    }
    if now >= sandbox.expires_at {
        return stopped("sandbox_expired", SANDBOX_EXPIRED);
    }
    let Some(connection) = connection else {
        return stopped(
            "not_connected",
            "GitHub is not connected: connect it on the Integrations page",
        );
    };
    match connection.target() {
        Some((installation_id, repository_id, name)) => SandboxState {
            sandbox_id: sandbox.id.clone(),
            active: true,
            code: connection.status.as_str().to_owned(),
            message: connection.reason.clone(),
            repository: Some(name.to_owned()),
            repository_id: Some(repository_id),
            installation_id: Some(installation_id),
        },
        None => stopped(connection.status.as_str(), &connection.reason),
    }
}
