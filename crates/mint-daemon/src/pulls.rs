//! `POST /v1/pulls`: open the pull request from an agent branch for a human to review. mintd holds the
//! token and the policy: the head must be a valid branch inside the prefix, the base is the repository's
//! default branch as GitHub reports it (never the caller's choice), and inputs are bounded. The repository
//! is the token's own: the configured one, or the broker's latest.
//!
//! Each call that reaches GitHub costs up to three API calls from the installation's hourly budget, which
//! every sandbox of the customer shares, and opening a pull request counts against GitHub's
//! content-creation limits. So a pull request already opened for a branch is answered from memory for
//! [`REMEMBER_FOR`], the calls that reach GitHub go one at a time through a token bucket
//! ([`BURST`], then one per [`REFILL_EVERY`]; beyond it 429 with `Retry-After`), and a rate limit from
//! GitHub stops them all until the time GitHub named.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use http::{Response, StatusCode, header};
use http_body_util::Full;
use mint_api::{PullRequestInput, PullRequestOutput};
use mint_github::{GithubError, NewPull, PullOutcome, PullRequest};
use tokio::time::Instant;

use crate::Daemon;
use crate::answer::{mint_failed, refusal};
use crate::cache::Cached;
use crate::logs::{Repeated, Untrusted};
use crate::peer::AllowedPeer;

/// Pull-request calls that may reach GitHub at once, after a quiet spell: an agent publishing a few
/// branches in a row is never held up.
pub const BURST: u32 = 10;
/// After the burst, one more call may reach GitHub per this long: 120 an hour, at most 360 GitHub API
/// calls, far inside an installation's 5,000 and GitHub's 500 content-creating requests an hour.
pub const REFILL_EVERY: Duration = Duration::from_secs(30);
/// A pull request opened (or found open) for a branch is answered from memory for this long. One closed
/// in the meantime is still reported as it was; asking again after this finds the truth.
pub const REMEMBER_FOR: Duration = Duration::from_secs(10 * 60);
/// Branches remembered at most; the bucket admits about 30 new ones per [`REMEMBER_FOR`], so this is
/// only a backstop.
const REMEMBER_AT_MOST: usize = 256;

/// The memory and the bucket in front of GitHub's pull-request API. One per daemon.
pub(crate) struct PullGate {
    /// Calls that may reach GitHub at once before the bucket refills ([`BURST`] unless configured).
    burst: u32,
    state: Mutex<GateState>,
    /// Held while a call is at GitHub: calls for one branch queue and find the first one's answer.
    at_github: tokio::sync::Mutex<()>,
}

struct GateState {
    /// By repository and branch: the pull request and when it was learnt.
    opened: HashMap<(String, String), (PullRequestOutput, Instant)>,
    /// The bucket as a virtual schedule (GCRA): each admitted call moves this on by [`REFILL_EVERY`];
    /// a call is admitted while it stays within `BURST × REFILL_EVERY` of now. Exact, no float drift.
    next_free: Instant,
    /// GitHub rate-limited the pull-request calls: none goes before this.
    github_not_before: Option<(Instant, String)>,
}

/// Why a pull-request call was not let through to GitHub.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Held {
    /// The bucket is empty: try again in this long.
    Bucket(Duration),
    /// GitHub rate-limited these calls: its words, and how long is left.
    GitHub(String, Duration),
}

impl Default for PullGate {
    fn default() -> Self {
        Self::new(BURST)
    }
}

impl PullGate {
    pub(crate) fn new(burst: u32) -> Self {
        Self {
            burst: burst.max(1),
            state: Mutex::new(GateState {
                opened: HashMap::new(),
                next_free: Instant::now(),
                github_not_before: None,
            }),
            at_github: tokio::sync::Mutex::new(()),
        }
    }

    fn state(&self) -> MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The pull request remembered for this repository and branch, if it is recent enough.
    pub(crate) fn remembered(&self, repo: &str, branch: &str) -> Option<PullRequestOutput> {
        let now = Instant::now();
        let state = self.state();
        let (output, at) = state.opened.get(&(repo.to_owned(), branch.to_owned()))?;
        (now < *at + REMEMBER_FOR).then(|| PullRequestOutput {
            created: false,
            ..output.clone()
        })
    }

    pub(crate) fn remember(&self, repo: &str, output: &PullRequestOutput) {
        let now = Instant::now();
        let mut state = self.state();
        state.opened.retain(|_, (_, at)| now < *at + REMEMBER_FOR);
        if state.opened.len() >= REMEMBER_AT_MOST
            && let Some(oldest) = state
                .opened
                .iter()
                .min_by_key(|(_, (_, at))| *at)
                .map(|(k, _)| k.clone())
        {
            state.opened.remove(&oldest);
        }
        state
            .opened
            .insert((repo.to_owned(), output.head.clone()), (output.clone(), now));
    }

    /// Take one token from the bucket, or say how long until one is there (or until GitHub's limit ends).
    pub(crate) fn admit(&self) -> Result<(), Held> {
        let now = Instant::now();
        let mut state = self.state();
        if let Some((until, message)) = &state.github_not_before {
            if now < *until {
                return Err(Held::GitHub(message.clone(), until.saturating_duration_since(now)));
            }
            state.github_not_before = None;
        }
        let after = state.next_free.max(now) + REFILL_EVERY;
        match after
            .saturating_duration_since(now)
            .checked_sub(REFILL_EVERY * self.burst)
        {
            Some(over) if !over.is_zero() => Err(Held::Bucket(over)),
            _ => {
                state.next_free = after;
                Ok(())
            }
        }
    }

    /// GitHub rate-limited a pull-request call: let none through for `wait`.
    pub(crate) fn hold_off(&self, wait: Duration, message: String) {
        self.state().github_not_before = Some((Instant::now() + wait, message));
    }
}

/// Seconds for `Retry-After`, rounded up.
fn whole_seconds(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

fn held(daemon: &Daemon, held: &Held) -> Response<Full<Bytes>> {
    let (status, wait, reason) = match held {
        Held::Bucket(wait) => {
            daemon.metrics.pull_request("limited");
            (
                StatusCode::TOO_MANY_REQUESTS,
                *wait,
                format!(
                    "too many pull requests: mintd lets {} reach GitHub at once, then one per {} s, to spare the installation's shared GitHub budget; try again in {} s",
                    daemon.pulls.burst,
                    REFILL_EVERY.as_secs(),
                    whole_seconds(*wait)
                ),
            )
        }
        Held::GitHub(message, wait) => {
            daemon.metrics.pull_request("github_rate_limited");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                *wait,
                format!(
                    "{message}; mintd asks GitHub again in {} s, not before",
                    whole_seconds(*wait)
                ),
            )
        }
    };
    let mut response = refusal(status, &reason);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, header::HeaderValue::from(whole_seconds(wait)));
    response
}

/// Proof that a pull-request request came from an allowed peer and passed the input policy. Only this
/// module creates one, and the token cache demands it.
#[derive(Debug)]
pub struct PullChecked {
    _checked: (),
}

pub(crate) async fn open(daemon: &Daemon, _peer: &AllowedPeer, body: &[u8]) -> Response<Full<Bytes>> {
    let input: PullRequestInput = match serde_json::from_slice(body) {
        Ok(input) => input,
        Err(e) => {
            return refusal(
                StatusCode::BAD_REQUEST,
                &format!("expected {{branch, title, body?, ticket?, draft?}}: {e}"),
            );
        }
    };
    if let Err(reason) = input.check(&daemon.branch_prefix) {
        if daemon.metrics.repeated.should_log(Repeated::PullRefused) {
            tracing::warn!(reason = %Untrusted(&reason), "refused a pull request");
        }
        return refusal(StatusCode::BAD_REQUEST, &reason);
    }
    let gate = &daemon.pulls;
    // Answered from memory when this branch's pull request is known; otherwise one call at a time goes
    // to GitHub, and a second for the same branch finds the first one's answer.
    let remembered = || {
        let target = daemon.cache.target()?;
        gate.remembered(&target.repo().to_string(), &input.branch)
    };
    if let Some(output) = remembered() {
        return answer_remembered(daemon, &output);
    }
    let _at_github = gate.at_github.lock().await;
    if let Some(output) = remembered() {
        return answer_remembered(daemon, &output);
    }
    if let Err(why) = gate.admit() {
        return held(daemon, &why);
    }
    daemon.metrics.pull_request("github");
    let checked = PullChecked { _checked: () };
    let mut cached = match daemon.cache.get_for_pull(&checked).await {
        Ok(cached) => cached,
        Err(failure) => return mint_failed(&failure, refusal),
    };
    let github_failure = |e: &GithubError| {
        if let Some(wait) = e.hold_off() {
            gate.hold_off(wait, e.to_string());
        }
        github_failure(e)
    };
    let (pull, created, base) = match at_github(daemon, &cached, &input).await {
        Ok(done) => done,
        Err(AtGithub::Failed(rejected @ GithubError::TokenRejected { .. })) => {
            // The token expired or was revoked since it was served (GitHub's 401): drop it and try once
            // more with a fresh one, so a revocation does not fail the agent's pull request.
            tracing::info!("GitHub rejected the token on a pull-request call; retrying once with a fresh one");
            daemon.cache.drop_rejected(&cached.token);
            let fresh = match daemon.cache.get_for_pull(&checked).await {
                Ok(fresh) => fresh,
                Err(failure) => return mint_failed(&failure, refusal),
            };
            if Arc::ptr_eq(&fresh, &cached) {
                // Another token was dropped seconds ago (GitHub may still be propagating its successor), so
                // this one was kept: there is no fresh token to try.
                return github_failure(&rejected);
            }
            cached = fresh;
            match at_github(daemon, &cached, &input).await {
                Ok(done) => done,
                Err(AtGithub::Failed(e)) => return github_failure(&e),
                Err(AtGithub::Answer(response)) => return response,
            }
        }
        Err(AtGithub::Failed(e)) => return github_failure(&e),
        Err(AtGithub::Answer(response)) => return response,
    };
    let repo = cached.target.repo();
    tracing::info!(number = pull.number, created, head = %Untrusted(&input.branch), base = %Untrusted(&base), "pull request");
    let output = PullRequestOutput {
        number: pull.number,
        url: pull.html_url,
        head: pull.head.name,
        base: pull.base.name,
        created,
    };
    gate.remember(&repo.to_string(), &output);
    json(if created { StatusCode::CREATED } else { StatusCode::OK }, &output)
}

/// Why [`at_github`] produced no pull request.
enum AtGithub {
    Failed(GithubError),
    /// An answer for the caller as it stands.
    Answer(Response<Full<Bytes>>),
}

/// The GitHub calls behind one pull request: the default branch, then create (or find the open one).
/// Returns the pull request, whether it was created, and its base.
async fn at_github(
    daemon: &Daemon,
    cached: &Cached,
    input: &PullRequestInput,
) -> Result<(PullRequest, bool, String), AtGithub> {
    let (token, github) = (&cached.token, &daemon.github);
    let repo = cached.target.repo();
    let (owner, name) = (repo.owner(), repo.name());
    let base = github
        .repository(token, owner, name)
        .await
        .map_err(AtGithub::Failed)?
        .default_branch
        .unwrap_or_else(|| "main".to_owned());
    let mut text = input.body.clone().unwrap_or_default();
    if let Some(ticket) = &input.ticket {
        if !text.is_empty() {
            text.push_str("\n\n");
        }
        text.push_str("Ticket: ");
        text.push_str(ticket);
    }
    let new = NewPull {
        title: input.title.trim(),
        head: &input.branch,
        base: &base,
        body: &text,
        draft: input.draft,
    };
    match github
        .create_pull(token, owner, name, &new)
        .await
        .map_err(AtGithub::Failed)?
    {
        PullOutcome::Created(pull) => Ok((pull, true, base)),
        PullOutcome::AlreadyExists => match github
            .open_pull_for(token, owner, name, &input.branch)
            .await
            .map_err(AtGithub::Failed)?
        {
            Some(pull) => Ok((pull, false, base)),
            None => Err(AtGithub::Answer(refusal(
                StatusCode::BAD_GATEWAY,
                "GitHub says a pull request exists for the branch but lists none open",
            ))),
        },
    }
}

fn answer_remembered(daemon: &Daemon, output: &PullRequestOutput) -> Response<Full<Bytes>> {
    daemon.metrics.pull_request("remembered");
    json(StatusCode::OK, output)
}

fn json(status: StatusCode, output: &PullRequestOutput) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(
            serde_json::to_vec(output).expect("output serialises"),
        )))
        .expect("static headers are valid")
}

fn github_failure(e: &GithubError) -> Response<Full<Bytes>> {
    let status = match e {
        GithubError::Status { status: 422, .. } => StatusCode::UNPROCESSABLE_ENTITY,
        e if e.is_transient() => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::BAD_GATEWAY,
    };
    refusal(status, &e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pull(head: &str) -> PullRequestOutput {
        PullRequestOutput {
            number: 1,
            url: "https://github.com/o/r/pull/1".into(),
            head: head.into(),
            base: "main".into(),
            created: true,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_configured_burst_is_the_one_let_through() {
        for burst in [1, 3, 1000] {
            let gate = PullGate::new(burst);
            for _ in 0..burst {
                gate.admit().expect("within the burst");
            }
            assert_eq!(gate.admit(), Err(Held::Bucket(REFILL_EVERY)), "burst {burst}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_bucket_lets_a_burst_through_then_one_per_interval() {
        let gate = PullGate::default();
        for _ in 0..BURST {
            gate.admit().expect("within the burst");
        }
        let Err(Held::Bucket(wait)) = gate.admit() else {
            panic!("the burst is spent")
        };
        assert_eq!(wait, REFILL_EVERY);
        tokio::time::sleep(REFILL_EVERY / 2).await;
        assert_eq!(gate.admit(), Err(Held::Bucket(REFILL_EVERY / 2)));
        tokio::time::sleep(REFILL_EVERY / 2).await;
        gate.admit().expect("one more after the interval");
        // An hour of a hostile loop: at most one call per interval gets through.
        let mut admitted = 0;
        for _ in 0..3600 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            admitted += u32::from(gate.admit().is_ok());
        }
        assert_eq!(admitted, 120);
        // A quiet spell refills the burst, and no more.
        tokio::time::sleep(REFILL_EVERY * 100).await;
        assert_eq!((0..50).filter(|_| gate.admit().is_ok()).count(), 10);
    }

    #[tokio::test(start_paused = true)]
    async fn a_pull_request_is_remembered_for_ten_minutes() {
        let gate = PullGate::default();
        assert!(gate.remembered("o/r", "adagent/x").is_none());
        gate.remember("o/r", &pull("adagent/x"));
        let again = gate.remembered("o/r", "adagent/x").expect("remembered");
        assert_eq!((again.number, again.created), (1, false));
        assert!(gate.remembered("o/other", "adagent/x").is_none(), "per repository");
        tokio::time::sleep(REMEMBER_FOR).await;
        assert!(gate.remembered("o/r", "adagent/x").is_none(), "asked again after");
    }

    #[tokio::test(start_paused = true)]
    async fn memory_is_bounded() {
        let gate = PullGate::default();
        for i in 0..1000 {
            gate.remember("o/r", &pull(&format!("adagent/{i}")));
        }
        assert_eq!(gate.state().opened.len(), REMEMBER_AT_MOST);
    }

    #[tokio::test(start_paused = true)]
    async fn a_github_rate_limit_holds_every_call_until_its_time() {
        let gate = PullGate::default();
        gate.hold_off(Duration::from_secs(60), "GitHub rate-limited".into());
        let Err(Held::GitHub(message, wait)) = gate.admit() else {
            panic!("held")
        };
        assert_eq!(
            (message.as_str(), wait),
            ("GitHub rate-limited", Duration::from_secs(60))
        );
        tokio::time::sleep(Duration::from_secs(60)).await;
        gate.admit().expect("let through after");
    }
}
