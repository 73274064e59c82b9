//! GitHub's API for the sandbox's one repository, with the token added on the way: REST under
//! `/repos/{owner}/{repo}/…` (GitHub Enterprise Server's `/api/v3` prefix accepted) and `POST /graphql`,
//! served on mintd's socket in every mode and on the git proxy's listener in mediated mode. `gh` reaches it
//! through its `http_unix_socket` setting, octokit or `PyGithub` through a base URL on the proxy.
//!
//! Each request is judged by [`crate::api_policy`] before anything goes to GitHub; a change to a pull
//! request is let through only once GitHub says its head is one of the agent's branches. The client's own
//! `Authorization` (a placeholder, or nothing) never leaves mintd. Answers stream back, with `Link` and
//! `Location` pointing back through mintd.
//!
//! The installation's API budget is shared by every sandbox of the customer, so writes go through a bucket
//! ([`WRITE_BURST`], then one per [`WRITE_EVERY`]), and a rate limit from GitHub (a 403 or 429 that says to
//! wait, or a spent budget) holds every API request here until the time GitHub named, answered with
//! `Retry-After`, without asking GitHub again. Request bodies are charged to the socket's body budget.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use mint_credential::Target;
use tokio::time::Instant;

use crate::Daemon;
use crate::answer::mint_failed;
use crate::api_policy::{self, Judged, PullToCheck, Refusal, Scope};
use crate::budget::Charge;
use crate::cache::GetError;
use crate::logs::{Repeated, Untrusted};
use crate::proxy::{BoxError, ProxyBody};

/// Writes that may reach GitHub at once after a quiet spell.
pub const WRITE_BURST: u32 = 30;
/// After the burst, one more write per this long: 450 an hour, inside GitHub's 500 content-creating
/// requests an hour.
pub const WRITE_EVERY: Duration = Duration::from_secs(8);
/// A client gets this long to send its request body.
const BODY_TIMEOUT: Duration = Duration::from_secs(15);

/// Request headers sent on to GitHub as the client gave them; `Authorization` above all is not among them.
const FORWARDED_REQUEST_HEADERS: [&str; 8] = [
    "accept",
    "accept-encoding",
    "if-none-match",
    "if-modified-since",
    "x-github-api-version",
    "graphql-features",
    "time-zone",
    "user-agent",
];
/// GitHub's answer headers given back to the client (`Link` and `Location` rewritten).
const FORWARDED_RESPONSE_HEADERS: [&str; 17] = [
    "content-type",
    "content-encoding",
    "content-length",
    "cache-control",
    "etag",
    "last-modified",
    "vary",
    "retry-after",
    "x-ratelimit-limit",
    "x-ratelimit-remaining",
    "x-ratelimit-reset",
    "x-ratelimit-used",
    "x-ratelimit-resource",
    "x-github-request-id",
    "x-github-media-type",
    "x-github-api-version-selected",
    "x-accepted-github-permissions",
];

/// Proof that an API request passed [`crate::api_policy`] for the repository it names. Only this module
/// creates one, and the token cache demands it and serves only a token for [`ApiChecked::target`].
#[derive(Debug)]
pub struct ApiChecked {
    target: Arc<Target>,
}

impl ApiChecked {
    /// The repository the request was checked against.
    pub fn target(&self) -> &Target {
        &self.target
    }
}

/// The bucket for writes and GitHub's "not before", for the API endpoint. One per daemon.
pub(crate) struct ApiGate {
    state: Mutex<GateState>,
}

struct GateState {
    /// The write bucket as a virtual schedule (GCRA), as [`crate::pulls::PullGate`] keeps it.
    next_free: Instant,
    /// GitHub rate-limited these calls: none goes before this.
    github_not_before: Option<(Instant, String)>,
}

impl Default for ApiGate {
    fn default() -> Self {
        Self {
            state: Mutex::new(GateState {
                next_free: Instant::now(),
                github_not_before: None,
            }),
        }
    }
}

impl ApiGate {
    fn state(&self) -> MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// GitHub's standing "not before", if any: its words and the time left.
    fn held_by_github(&self) -> Option<(String, Duration)> {
        let now = Instant::now();
        let mut state = self.state();
        match &state.github_not_before {
            Some((until, message)) if now < *until => Some((message.clone(), *until - now)),
            Some(_) => {
                state.github_not_before = None;
                None
            }
            None => None,
        }
    }

    /// Take one write from the bucket, or say how long until one is there.
    fn admit_write(&self) -> Result<(), Duration> {
        let now = Instant::now();
        let mut state = self.state();
        let after = state.next_free.max(now) + WRITE_EVERY;
        match after
            .saturating_duration_since(now)
            .checked_sub(WRITE_EVERY * WRITE_BURST)
        {
            Some(over) if !over.is_zero() => Err(over),
            _ => {
                state.next_free = after;
                Ok(())
            }
        }
    }

    fn hold_off(&self, wait: Duration, message: String) {
        let until = Instant::now() + wait.min(crate::cache::MAX_HOLD_OFF);
        let mut state = self.state();
        if state.github_not_before.as_ref().is_none_or(|(at, _)| *at < until) {
            state.github_not_before = Some((until, message));
        }
    }
}

/// Whether `path` is the API endpoint's, on a server whose own routes did not take it (the socket's `/v1/…`,
/// the git proxy's smart HTTP routes).
pub(crate) fn is_api(path: &str) -> bool {
    api_policy::endpoint(path).is_some()
}

/// Answer one request to the API endpoint.
#[expect(clippy::too_many_lines, reason = "one request's way to GitHub and back, in order")]
pub(crate) async fn handle(daemon: &Daemon, req: Request<Incoming>) -> Response<ProxyBody> {
    let (parts, body) = req.into_parts();
    let target = match daemon.cache.target() {
        Some(target) => target,
        // Broker mode before the first token: the repository is learnt from a mint, then the request judged.
        None => match daemon.cache.learn_target().await {
            Ok(target) => target,
            Err(failure) => {
                return mint_failed(&failure, |status, message| {
                    json_error(status, &format!("mint: {message}"))
                });
            }
        },
    };
    let repo = target.repo();
    let scope = Scope {
        owner: repo.owner(),
        name: repo.name(),
        prefix: &daemon.branch_prefix,
    };
    let reads_body = !(parts.method == Method::GET || parts.method == Method::HEAD);
    let (bytes, _held) = if reads_body {
        match read_body(daemon, &parts.headers, body).await {
            Ok(read) => read,
            Err(response) => return response,
        }
    } else {
        (Bytes::new(), Charge::new(daemon.bodies.clone(), daemon.metrics.clone()))
    };
    let judged = match api_policy::judge(
        &parts.method,
        parts.uri.path(),
        parts.uri.query(),
        &parts.headers,
        &bytes,
        &scope,
    ) {
        Ok(judged) => judged,
        Err(refusal) => return refused(daemon, &refusal),
    };
    if let Some((message, wait)) = daemon.api_gate.held_by_github() {
        return waiting(
            StatusCode::TOO_MANY_REQUESTS,
            &format!(
                "{message}; mintd asks GitHub again in {} s, not before",
                whole_seconds(wait)
            ),
            wait,
        );
    }
    if !judged.read
        && let Err(wait) = daemon.api_gate.admit_write()
    {
        return waiting(
            StatusCode::TOO_MANY_REQUESTS,
            &format!(
                "too many writes: mintd lets {WRITE_BURST} reach GitHub at once, then one per {} s, to spare the installation's shared GitHub budget; try again in {} s",
                WRITE_EVERY.as_secs(),
                whole_seconds(wait)
            ),
            wait,
        );
    }
    let checked = ApiChecked { target: target.clone() };
    let token = match token(daemon, &checked).await {
        Ok(token) => token,
        Err(response) => return response,
    };
    if let Err(response) = check_pulls(daemon, &token, &scope, &judged).await {
        return response;
    }
    let url = match &judged.path_and_query {
        Some(path_and_query) => format!("{}{path_and_query}", daemon.api_upstream.base()),
        None => mint_github::graphql_url(daemon.api_upstream.base()),
    };
    let first = send(daemon, &parts, &url, &bytes, &token).await;
    let response = match first {
        Ok(response) if response.status() == StatusCode::UNAUTHORIZED => {
            // The token died under us (revoked, expired): drop it, mint anew, send once more. The body
            // was read whole to be judged, so any request can be sent again.
            tracing::info!("GitHub rejected the token on an API request; retrying once with a fresh one");
            crate::proxy::replace_rejected(daemon, &token).await;
            let fresh = match self::token(daemon, &checked).await {
                Ok(fresh) => fresh,
                Err(response) => return response,
            };
            send(daemon, &parts, &url, &bytes, &fresh).await
        }
        other => other,
    };
    match response {
        Ok(response) => {
            daemon.metrics.api_request(judged.what, response.status().as_u16());
            if let Some(wait) = mint_github::rate_limit_wait(response.status(), response.headers()) {
                let wait = wait.unwrap_or(mint_github::RATE_LIMIT_DEFAULT_WAIT);
                tracing::warn!(
                    wait_s = wait.as_secs(),
                    "GitHub rate-limited an API request; holding the API until then"
                );
                let message = "GitHub rate-limited the installation's API requests";
                daemon.api_gate.hold_off(wait, message.into());
                // The same budget: opening pull requests waits too.
                daemon.pulls.hold_off(wait, message.into());
            } else if spent(response.headers()) {
                // The last request of the budget went through: hold the next ones until the reset.
                if let Some(wait) = reset_in(response.headers()) {
                    daemon
                        .api_gate
                        .hold_off(wait, "the installation's GitHub API budget is spent".into());
                }
            }
            relay(daemon, &scope, response)
        }
        Err(response) => response,
    }
}

/// The request body, whole (it is judged before it is sent), within [`api_policy::MAX_BODY`] and the
/// socket's body budget.
async fn read_body(
    daemon: &Daemon,
    headers: &HeaderMap,
    body: Incoming,
) -> Result<(Bytes, Charge), Response<ProxyBody>> {
    let too_large = || {
        json_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!(
                "the request body is over {} KiB: mint reads an API request whole to judge it",
                api_policy::MAX_BODY >> 10
            ),
        )
    };
    let announced = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > api_policy::MAX_BODY as u64) {
        daemon.metrics.api_refused("too_large");
        return Err(too_large());
    }
    let mut charge = Charge::new(daemon.bodies.clone(), daemon.metrics.clone());
    let read = async {
        let mut body = Limited::new(body, api_policy::MAX_BODY);
        let mut bytes = BytesMut::new();
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else {
                daemon.metrics.api_refused("too_large");
                return Err(too_large());
            };
            let Ok(data) = frame.into_data() else { continue };
            if !charge.cover(bytes.len() + data.len()) {
                return Err(waiting(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &format!(
                        "mintd is holding {} MiB of request bodies for other connections: retry in a second",
                        crate::server::BODY_BUDGET >> 20
                    ),
                    Duration::from_secs(1),
                ));
            }
            bytes.extend_from_slice(&data);
        }
        Ok(bytes.freeze())
    };
    match tokio::time::timeout(BODY_TIMEOUT, read).await {
        Ok(Ok(bytes)) => Ok((bytes, charge)),
        Ok(Err(response)) => Err(response),
        Err(_) => Err(json_error(
            StatusCode::REQUEST_TIMEOUT,
            &format!("the request body did not arrive within {} s", BODY_TIMEOUT.as_secs()),
        )),
    }
}

async fn token(daemon: &Daemon, checked: &ApiChecked) -> Result<mint_github::InstallationToken, Response<ProxyBody>> {
    match daemon.cache.get_for_api(checked).await {
        Ok(cached) => Ok(cached.token.clone()),
        Err(GetError::Failed(failure)) => Err(mint_failed(&failure, |status, message| {
            json_error(status, &format!("mint: {message}"))
        })),
        Err(GetError::Moved { now }) => {
            daemon.metrics.api_refused("other_repository");
            Err(json_error(
                StatusCode::FORBIDDEN,
                &format!(
                    "the repository changed: mint serves GitHub's API for {} only now",
                    now.repo()
                ),
            ))
        }
    }
}

/// A change to a pull request goes on only if GitHub says its head is one of the agent's branches.
async fn check_pulls(
    daemon: &Daemon,
    token: &mint_github::InstallationToken,
    scope: &Scope<'_>,
    judged: &Judged,
) -> Result<(), Response<ProxyBody>> {
    for pull in &judged.pulls {
        let (head, what) = match pull {
            PullToCheck::Number(n) => (
                daemon.github.pull_head(token, scope.owner, scope.name, *n).await,
                format!("pull request #{n}"),
            ),
            PullToCheck::Node(id) => (
                daemon
                    .github
                    .pull_head_by_node(token, &format!("{}/{}", scope.owner, scope.name), id)
                    .await,
                format!("pull request {:?}", id.chars().take(100).collect::<String>()),
            ),
        };
        match head {
            Ok(Some(head)) => {
                if let Some(refusal) = api_policy::head_refusal(&head.head_ref, head.head_repo.as_deref(), scope, &what)
                {
                    return Err(refused(daemon, &refusal));
                }
            }
            Ok(None) => {
                return Err(refused(
                    daemon,
                    &Refusal {
                        label: "not_allowed",
                        reason: format!("{what} was not found in {}/{}", scope.owner, scope.name),
                    },
                ));
            }
            Err(e) => {
                if let Some(wait) = e.hold_off() {
                    daemon.api_gate.hold_off(wait, e.to_string());
                }
                let status = if e.is_transient() {
                    StatusCode::SERVICE_UNAVAILABLE
                } else {
                    StatusCode::BAD_GATEWAY
                };
                return Err(json_error(
                    status,
                    &format!("mint could not check the pull request's head, so nothing was sent: {e}"),
                ));
            }
        }
    }
    Ok(())
}

/// Send the judged request to GitHub with `token`.
async fn send(
    daemon: &Daemon,
    parts: &http::request::Parts,
    url: &str,
    body: &Bytes,
    token: &mint_github::InstallationToken,
) -> Result<Response<Incoming>, Response<ProxyBody>> {
    let mut request = Request::builder().method(parts.method.clone()).uri(url);
    for name in FORWARDED_REQUEST_HEADERS {
        if let Some(value) = parts.headers.get(name) {
            request = request.header(name, value);
        }
    }
    if !parts.headers.contains_key(header::USER_AGENT) {
        request = request.header(
            header::USER_AGENT,
            concat!("mint-api-proxy/", env!("CARGO_PKG_VERSION")),
        );
    }
    if !body.is_empty() {
        // What was judged is JSON; it is sent as JSON, whatever the client called it.
        request = request.header(header::CONTENT_TYPE, "application/json");
    }
    let mut auth =
        HeaderValue::from_str(&format!("Bearer {}", token.expose())).expect("a token is a valid header value");
    auth.set_sensitive(true);
    request = request.header(header::AUTHORIZATION, auth);
    let request = request.body(crate::proxy::full(body.clone())).map_err(|e| {
        json_error(
            StatusCode::BAD_REQUEST,
            &format!("mint could not form the request: {e}"),
        )
    })?;
    daemon.api_upstream.send(request).await.map_err(|response| {
        // The proxy's words are plain text for git; an API client reads JSON.
        let status = response.status();
        json_error(
            status,
            &format!(
                "mint could not get an answer from GitHub's API at {}: {}",
                daemon.api_upstream.base(),
                status.canonical_reason().unwrap_or("failed")
            ),
        )
    })
}

/// GitHub's answer, streamed back with the headers a client needs; `Link` and `Location` point back here.
fn relay(daemon: &Daemon, scope: &Scope<'_>, response: Response<Incoming>) -> Response<ProxyBody> {
    let (parts, body) = response.into_parts();
    let base = daemon.api_upstream.base();
    let mut builder = Response::builder().status(parts.status);
    for name in FORWARDED_RESPONSE_HEADERS {
        for value in parts.headers.get_all(name) {
            builder = builder.header(name, value);
        }
    }
    if let Some(location) = parts.headers.get(header::LOCATION).and_then(|l| l.to_str().ok())
        && let Some(local) = local_url(base, location, scope)
        && let Ok(value) = HeaderValue::from_str(&local)
    {
        builder = builder.header(header::LOCATION, value);
    }
    if let Some(link) = parts.headers.get(header::LINK).and_then(|l| l.to_str().ok())
        && let Some(local) = relay_link(base, link, scope)
        && let Ok(value) = HeaderValue::from_str(&local)
    {
        builder = builder.header(header::LINK, value);
    }
    builder
        .body(body.map_err(|e| -> BoxError { Box::new(e) }).boxed())
        .unwrap_or_else(|_| json_error(StatusCode::BAD_GATEWAY, "GitHub sent an invalid header"))
}

/// A URL on GitHub's API, as a path on mintd: `https://api.github.com/repos/o/r/…?page=2` becomes
/// `/repos/o/r/…?page=2`, and GitHub's `/repositories/{id}/…` form (its pagination links use it) the same
/// path under `/repos/{owner}/{repo}/` — an answer about this repository links only to it. Any other URL is
/// dropped.
fn local_url(base: &str, url: &str, scope: &Scope<'_>) -> Option<String> {
    let path = match url.strip_prefix(base) {
        Some(path) if path.starts_with('/') => path,
        None if url.starts_with('/') && !url.starts_with("//") => url,
        _ => return None,
    };
    if let Some(rest) = path.strip_prefix("/repositories/") {
        let (id, tail) = rest
            .split_once(['/', '?'])
            .map_or((rest, ""), |(id, _)| (id, &rest[id.len()..]));
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        return Some(format!("/repos/{}/{}{tail}", scope.owner, scope.name));
    }
    Some(path.to_owned())
}

/// Each `<URL>; rel=…` of a `Link` header with its URL made local ([`local_url`]); entries pointing
/// elsewhere are left out.
fn relay_link(base: &str, link: &str, scope: &Scope<'_>) -> Option<String> {
    let mut out = Vec::new();
    for entry in link.split(',') {
        let entry = entry.trim();
        let Some((url, params)) = entry.strip_prefix('<').and_then(|e| e.split_once('>')) else {
            continue;
        };
        if let Some(local) = local_url(base, url, scope) {
            out.push(format!("<{local}>{params}"));
        }
    }
    (!out.is_empty()).then(|| out.join(", "))
}

fn spent(headers: &HeaderMap) -> bool {
    headers
        .get("x-ratelimit-remaining")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim() == "0")
}

fn reset_in(headers: &HeaderMap) -> Option<Duration> {
    let reset: u64 = headers.get("x-ratelimit-reset")?.to_str().ok()?.trim().parse().ok()?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_secs();
    Some(Duration::from_secs(reset.saturating_sub(now)))
}

fn refused(daemon: &Daemon, refusal: &Refusal) -> Response<ProxyBody> {
    daemon.metrics.api_refused(refusal.label);
    if daemon.metrics.repeated.should_log(Repeated::ApiRefused) {
        tracing::warn!(reason = %Untrusted(&refusal.reason), label = refusal.label, "refused a GitHub API request");
    }
    json_error(StatusCode::FORBIDDEN, &format!("mint: {}", refusal.reason))
}

fn waiting(status: StatusCode, reason: &str, wait: Duration) -> Response<ProxyBody> {
    let mut response = json_error(status, &format!("mint: {reason}"));
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(whole_seconds(wait)));
    response
}

/// Seconds for `Retry-After`, rounded up.
fn whole_seconds(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// GitHub's error shape (`{"message": …}`), which gh, octokit and `PyGithub` show; the reason also in the
/// `mint-reason` header, as on every refusal of mintd's.
pub(crate) fn json_error(status: StatusCode, message: &str) -> Response<ProxyBody> {
    let body = serde_json::json!({ "message": message, "status": status.as_str() });
    let reason = crate::answer::header_safe(message);
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json; charset=utf-8")
        .header(mint_api::REASON_HEADER, reason)
        .body(crate::proxy::full(Bytes::from(body.to_string())))
        .expect("sanitised headers are valid")
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCOPE: Scope<'static> = Scope {
        owner: "octo-org",
        name: "hello-world",
        prefix: "adagent/",
    };

    #[test]
    fn links_and_locations_come_back_through_mintd() {
        let base = "https://api.github.com";
        assert_eq!(
            relay_link(
                base,
                r#"<https://api.github.com/repositories/1296269/pulls/1/comments?per_page=1&page=2>; rel="next", <https://api.github.com/repositories/1296269/pulls/1/comments?per_page=1&page=5>; rel="last""#,
                &SCOPE
            )
            .as_deref(),
            Some(
                r#"</repos/octo-org/hello-world/pulls/1/comments?per_page=1&page=2>; rel="next", </repos/octo-org/hello-world/pulls/1/comments?per_page=1&page=5>; rel="last""#
            )
        );
        assert_eq!(
            local_url(
                base,
                "https://api.github.com/repos/octo-org/hello-world/issues/comments/1",
                &SCOPE
            )
            .as_deref(),
            Some("/repos/octo-org/hello-world/issues/comments/1")
        );
        for elsewhere in [
            "https://evil.example/repos/x",
            "https://api.github.com.evil.example/x",
            "//evil.example/x",
            "https://api.github.com/repositories/12x/pulls",
        ] {
            assert_eq!(local_url(base, elsewhere, &SCOPE), None, "{elsewhere}");
        }
        assert_eq!(relay_link(base, "<https://evil.example/x>; rel=\"next\"", &SCOPE), None);
    }

    #[tokio::test(start_paused = true)]
    async fn writes_pass_a_burst_then_one_per_interval() {
        let gate = ApiGate::default();
        for _ in 0..WRITE_BURST {
            gate.admit_write().expect("within the burst");
        }
        assert_eq!(gate.admit_write(), Err(WRITE_EVERY));
        tokio::time::sleep(WRITE_EVERY).await;
        gate.admit_write().expect("one more after the interval");
    }

    #[tokio::test(start_paused = true)]
    async fn a_github_rate_limit_holds_until_its_time() {
        let gate = ApiGate::default();
        gate.hold_off(Duration::from_secs(30), "limited".into());
        assert_eq!(gate.held_by_github(), Some(("limited".into(), Duration::from_secs(30))));
        gate.hold_off(Duration::from_secs(5), "shorter".into());
        assert_eq!(
            gate.held_by_github().map(|(m, _)| m).as_deref(),
            Some("limited"),
            "the later time stands"
        );
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert_eq!(gate.held_by_github(), None);
    }
}
