//! The revocation queue's worker. Every replica runs one: it takes due revocations from the database
//! (`SKIP LOCKED` on PostgreSQL, so replicas share the work and never take the same token), opens each
//! sealed token, and asks GitHub to revoke it with the token itself (`DELETE /installation/token`).
//!
//! A token is marked revoked only once GitHub agrees: 204, or a 401 that shows it was dead already. A
//! failure (5xx, timeout, rate limit) is retried with backoff, honouring GitHub's `Retry-After`, by
//! whichever replica is alive, until it succeeds or the token expires; a replica that dies mid-call leaves
//! its lease to run out. Events wake the worker at once (in process, and through `LISTEN/NOTIFY` from other
//! replicas); otherwise it looks at the queue every few seconds, for retries and for work another replica
//! left behind.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng as _;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::model::now_ms;
use crate::seal::SealError;
use crate::state::AppState;
use crate::store::{Claimed, Outcome, Whose};

/// Revocations in flight at once per replica (GitHub's secondary limit is 100 concurrent requests).
pub const CONCURRENCY: usize = 32;
/// A claimed revocation is this replica's for this long; a replica that dies frees it by itself.
const CLAIM_LEASE: Duration = Duration::from_secs(30);
/// The queue is looked at at least this often, whatever the events say.
const IDLE_CHECK: Duration = Duration::from_secs(2);
/// Expired tokens' sealed copies go, and expired sandboxes' tokens are queued, this often.
const SWEEP_EVERY: Duration = Duration::from_secs(10);
const BACKOFF_FIRST: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// How long a replica that cannot open a token (another seal key) leaves it to the others.
const NOT_MINE_FOR: Duration = Duration::from_secs(15);
/// How long an event's request waits for its revocations before answering anyway.
pub const SETTLE: Duration = Duration::from_secs(3);

/// Work the queue until the process ends.
pub async fn run(state: Arc<AppState>) {
    let mut last_sweep: Option<tokio::time::Instant> = None;
    loop {
        if last_sweep.is_none_or(|at| at.elapsed() >= SWEEP_EVERY) {
            last_sweep = Some(tokio::time::Instant::now());
            match state.store.sweep_tokens(now_ms()).await {
                Ok((forgotten, queued)) if forgotten + queued > 0 => {
                    tracing::info!(
                        forgotten,
                        queued,
                        "expired tokens' sealed copies deleted; expired sandboxes' tokens queued for revocation"
                    );
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "the token sweep failed; trying again shortly"),
            }
        }
        drain(&state).await;
        let wait = match state.store.next_revocation_due().await {
            Ok(Some(due)) => Duration::from_millis(u64::try_from(due - now_ms()).unwrap_or(0)).min(IDLE_CHECK),
            Ok(None) => IDLE_CHECK,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the revocation queue; trying again shortly");
                IDLE_CHECK
            }
        };
        tokio::select! {
            () = state.store.events().revocations() => {}
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// Revoke every due token, up to [`CONCURRENCY`] at once, claiming more as slots free up, until none is due.
async fn drain(state: &Arc<AppState>) {
    let slots = Arc::new(Semaphore::new(CONCURRENCY));
    let mut running = JoinSet::new();
    let (mut revoked, mut failed) = (0_usize, 0_usize);
    loop {
        if running.len() <= CONCURRENCY / 2 {
            let now = now_ms();
            let lease = now + i64::try_from(CLAIM_LEASE.as_millis()).expect("seconds");
            let want = i64::try_from(CONCURRENCY - running.len()).expect("small");
            let batch = match state.store.claim_revocations(now, lease, want).await {
                Ok(batch) => batch,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot take revocations from the queue; trying again shortly");
                    Vec::new()
                }
            };
            for claimed in batch {
                let Ok(slot) = slots.clone().acquire_owned().await else {
                    break;
                };
                let state = state.clone();
                running.spawn(async move {
                    let dead = revoke_one(&state, claimed).await;
                    drop(slot);
                    dead
                });
            }
        }
        match running.join_next().await {
            Some(Ok(true)) => revoked += 1,
            Some(Ok(false)) => failed += 1,
            Some(Err(e)) => tracing::error!(error = %e, "a revocation task failed"),
            None => break,
        }
    }
    if revoked + failed > 0 {
        tracing::info!(revoked, failed, "revocation queue worked");
    }
}

/// One claimed revocation; `true` when GitHub agreed the token is dead.
async fn revoke_one(state: &AppState, claimed: Claimed) -> bool {
    let now = now_ms();
    let finish = async |outcome: Outcome<'_>| {
        state.metrics.revocation(match outcome {
            Outcome::Dead => "revoked",
            Outcome::Retry { .. } => "retry",
            Outcome::GiveUp { .. } => "gave_up",
            Outcome::NotMine { .. } => "not_mine",
        });
        if let Err(e) = state
            .store
            .finish_revocation(&claimed.token_sha256, &outcome, now_ms())
            .await
        {
            // The lease runs out and another attempt finds GitHub's answer (401: already dead).
            tracing::warn!(error = %e, "could not record a revocation's outcome");
        }
    };
    if claimed.expires_at * 1000 <= now {
        finish(Outcome::GiveUp {
            why: "it expired before GitHub agreed to revoke it",
        })
        .await;
        return false;
    }
    let app = state.github.app();
    let token = match state
        .sealer
        .open(app, &claimed.sandbox_id, &claimed.token_sha256, &claimed.sealed)
    {
        Ok(token) => token,
        Err(SealError::UnknownKey { key_id }) => {
            tracing::warn!(%key_id, "a queued token was sealed with a key this replica lacks; leaving it to the others");
            let next_at = now + i64::try_from(NOT_MINE_FOR.as_millis()).expect("seconds");
            finish(Outcome::NotMine { next_at }).await;
            return false;
        }
        Err(e @ SealError::Derive(_)) => {
            let error = e.to_string();
            finish(Outcome::Retry {
                next_at: now + backoff(claimed.attempts, None),
                error: &error,
            })
            .await;
            return false;
        }
        Err(e @ SealError::Corrupt) => {
            tracing::error!(error = %e, sandbox = %claimed.sandbox_id, "a queued token's sealed copy does not open; it expires on its own");
            finish(Outcome::GiveUp {
                why: "its sealed copy does not open",
            })
            .await;
            return false;
        }
    };
    match state.github.revoke(&token).await {
        Ok(()) => {
            tracing::debug!(
                sandbox = %claimed.sandbox_id,
                after_ms = now_ms() - claimed.requested_at,
                attempts = claimed.attempts,
                "token revoked at GitHub"
            );
            finish(Outcome::Dead).await;
            true
        }
        Err(e) => {
            let next_at = now_ms() + backoff(claimed.attempts, e.hold_off());
            tracing::warn!(error = %e, sandbox = %claimed.sandbox_id, attempts = claimed.attempts, "revocation failed; retrying later");
            let error = e.to_string();
            finish(Outcome::Retry { next_at, error: &error }).await;
            false
        }
    }
}

/// Milliseconds before the next attempt: 1 s doubling to 60 s, jittered, and never before GitHub's time.
fn backoff(attempts: i64, github_says: Option<Duration>) -> i64 {
    let exponent = u32::try_from(attempts.clamp(1, 16) - 1).expect("small");
    let base = BACKOFF_FIRST
        .saturating_mul(2_u32.saturating_pow(exponent))
        .min(BACKOFF_MAX);
    let jittered = base.mul_f64(rand::thread_rng().gen_range(0.8..1.2));
    let wait = github_says.map_or(jittered, |asked| asked.max(jittered));
    i64::try_from(wait.as_millis()).unwrap_or(i64::MAX)
}

/// Wait (at most [`SETTLE`]) for the revocations an event queued to be done, so the answer to the event
/// usually means "revoked"; returns how many are still pending (the worker carries on with them).
pub async fn settle(state: &AppState, whose: Whose<'_>) -> i64 {
    let deadline = tokio::time::Instant::now() + SETTLE;
    loop {
        let pending = match state.store.pending_revocations(whose).await {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read pending revocations");
                return -1;
            }
        };
        if pending == 0 || tokio::time::Instant::now() >= deadline {
            return pending;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_a_minute_and_honours_github() {
        for (attempts, low, high) in [(1, 800, 1200), (2, 1600, 2400), (4, 6400, 9600), (12, 48_000, 72_000)] {
            let wait = backoff(attempts, None);
            assert!((low..=high).contains(&wait), "attempt {attempts}: {wait} ms");
        }
        assert!(
            backoff(1, Some(Duration::from_secs(600))) >= 600_000,
            "GitHub's Retry-After wins"
        );
    }
}
