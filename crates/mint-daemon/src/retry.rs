//! How mintd rides out GitHub's bad minutes: transient failures are retried with exponential backoff and
//! jitter, rate limits are waited out as GitHub asks, all within one deadline; permanent failures return at once.

use std::time::Duration;

use mint_github::GithubError;
use tokio::time::Instant;

/// Retry settings for one mint.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// No retry starts after this much time since the first attempt.
    pub deadline: Duration,
    pub first_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            deadline: Duration::from_secs(20),
            first_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(4),
        }
    }
}

/// What [`with_retries`] needs to know about a failure: GitHub's, or a broker's.
pub trait Retryable: Sized {
    /// Whether trying again later can succeed without anyone changing anything.
    fn is_transient(&self) -> bool;
    /// How long the server asked us to wait (`Retry-After`, a rate limit's reset), if it said.
    fn retry_after(&self) -> Option<Duration>;
    /// The failure to report after `attempts` tries over `elapsed`, this one the last.
    #[must_use]
    fn gave_up(self, attempts: u32, elapsed: Duration) -> Self;
}

impl Retryable for GithubError {
    fn is_transient(&self) -> bool {
        GithubError::is_transient(self)
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            GithubError::RateLimited { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    fn gave_up(self, attempts: u32, elapsed: Duration) -> Self {
        GithubError::GaveUp {
            attempts,
            elapsed,
            last: Box::new(self),
        }
    }
}

/// Run `attempt` until it succeeds, fails permanently, or waiting again would pass the deadline.
/// `on_retry` hears about each failure that will be retried and how long mintd waits first.
pub async fn with_retries<T, E, F, Fut>(
    policy: RetryPolicy,
    mut attempt: F,
    mut on_retry: impl FnMut(&E, Duration),
) -> Result<T, E>
where
    E: Retryable,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let started = Instant::now();
    let mut backoff = policy.first_backoff;
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        let error = match attempt().await {
            Ok(value) => return Ok(value),
            Err(e) => e,
        };
        if !error.is_transient() {
            return Err(error);
        }
        let wait = error.retry_after().unwrap_or_else(|| jittered(backoff));
        if started.elapsed() + wait > policy.deadline {
            return Err(if attempts > 1 {
                error.gave_up(attempts, started.elapsed())
            } else {
                error
            });
        }
        on_retry(&error, wait);
        tokio::time::sleep(wait).await;
        backoff = (backoff * 2).min(policy.max_backoff);
    }
}

/// Between half and all of `backoff`, so many daemons failing together do not retry in lockstep.
fn jittered(backoff: Duration) -> Duration {
    use std::hash::{BuildHasher, RandomState};
    // A fresh RandomState is randomly keyed: enough entropy for jitter, no RNG dependency.
    let random = RandomState::new().hash_one(0u8);
    let per_mille = u32::try_from(random % 1000).expect("below 1000");
    let fraction = 0.5 + f64::from(per_mille) / 2000.0;
    backoff.mul_f64(fraction)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mint_github::Operation;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn status(code: u16) -> GithubError {
        GithubError::Status {
            op: Operation::Revoke,
            status: code,
            message: "x".into(),
        }
    }

    async fn run(failures: Vec<GithubError>) -> (Result<u32, GithubError>, u32, Duration) {
        let calls = AtomicU32::new(0);
        let failures = std::sync::Mutex::new(failures.into_iter());
        let started = Instant::now();
        let result = with_retries(
            RetryPolicy::default(),
            || {
                let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
                let next = failures.lock().expect("lock").next();
                async move { next.map_or(Ok(n), Err) }
            },
            |_, _| {},
        )
        .await;
        (result, calls.load(Ordering::SeqCst), started.elapsed())
    }

    #[tokio::test(start_paused = true)]
    async fn transient_failures_are_retried_with_growing_backoff() {
        let (result, calls, took) = run(vec![status(502), status(502), status(503)]).await;
        assert_eq!(result.expect("succeeds"), 4);
        assert_eq!(calls, 4);
        // 250 + 500 + 1000 ms, each jittered to between half and all of it.
        assert!(
            took >= Duration::from_millis(875) && took <= Duration::from_millis(1750),
            "{took:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn permanent_failures_return_at_once() {
        let (result, calls, took) = run(vec![GithubError::InstallationNotFound { installation_id: 42 }]).await;
        assert!(matches!(result, Err(GithubError::InstallationNotFound { .. })));
        assert_eq!((calls, took), (1, Duration::ZERO));
    }

    #[tokio::test(start_paused = true)]
    async fn rate_limits_are_waited_out_as_told_within_the_deadline() {
        let limited = |secs| GithubError::RateLimited {
            op: Operation::Revoke,
            retry_after: Some(Duration::from_secs(secs)),
            message: "API rate limit exceeded".into(),
        };
        let (result, _, took) = run(vec![limited(3)]).await;
        assert!(result.is_ok());
        assert_eq!(took, Duration::from_secs(3));

        let (result, calls, took) = run(vec![limited(60)]).await;
        assert!(
            matches!(result, Err(GithubError::RateLimited { .. })),
            "a wait past the deadline is not taken"
        );
        assert_eq!((calls, took), (1, Duration::ZERO));
    }

    #[tokio::test(start_paused = true)]
    async fn an_outage_longer_than_the_deadline_gives_up_naming_the_cause() {
        let (result, calls, took) = run(std::iter::repeat_with(|| status(502)).take(1000).collect()).await;
        let error = result.expect_err("gives up");
        assert!(error.to_string().contains("GitHub answered 502"), "{error}");
        assert!(error.to_string().contains("gave up after"), "{error}");
        assert!(error.is_transient());
        assert!(took <= Duration::from_secs(20), "{took:?}");
        assert!(calls >= 6, "{calls}");
    }
}
