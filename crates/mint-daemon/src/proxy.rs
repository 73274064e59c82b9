//! Mediated mode: mintd serves git smart HTTP for the one repository and forwards it to GitHub with the
//! installation token, so the token never enters the sandbox. Pushes are judged from their command list
//! before any byte goes to GitHub. Bodies then stream to GitHub as git sends them, copied on the way so that
//! a 401 from GitHub (revoked or expired token) is retried with a fresh token when the request can be
//! replayed, so git never sees it.
//!
//! The sandbox is hostile to mintd's memory too: replay copies come out of one [`REPLAY_BUDGET`] for all
//! connections (past it a request streams without one, counted in `/metrics`), a request body that sends
//! nothing for [`BODY_IDLE_TIMEOUT`] is cut off, GitHub gets [`UPSTREAM_TIMEOUT`] to answer, and the
//! connections themselves are bounded by [`LIMITS`].

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::net::TcpListener;

use mint_credential::Target;

use crate::Daemon;
use crate::answer::mint_failed;
use crate::budget::{Budget, Charge};
use crate::cache::{ERASE_INTERVAL, GetError};
use crate::logs::{Repeated, Untrusted};
use crate::push_policy;

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub(crate) type ProxyBody = BoxBody<Bytes, BoxError>;

/// POST bodies up to this size are kept so the request can be replayed after a 401.
pub const REPLAY_LIMIT: usize = 8 * 1024 * 1024;
/// Replay copies and push command lists held at once, over every connection: a quarter of the 64 MiB the
/// shipped pod gives mintd (sandbox-image/k8s/pod.yaml).
pub const REPLAY_BUDGET: usize = 16 * 1024 * 1024;
/// A request body that sends nothing for this long is cut off (git writes its pack without pauses: it
/// computes deltas before the request starts).
pub const BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(15);
/// GitHub gets this long to answer a request's head.
pub const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(60);
/// The proxy's connection bounds: git opens one or two at a time.
pub(crate) const LIMITS: crate::http::Limits = crate::http::Limits {
    name: "proxy",
    // git sends its request at once; the generous header timeout only covers slow sandboxes.
    header_timeout: Duration::from_secs(30),
    write_stall: Duration::from_secs(30),
    max_connections: 64,
    per_peer: 64,
    reserve: 0,
    reserve_deadline: Duration::ZERO,
    max_buf_size: PROXY_BUF_SIZE,
};
/// hyper's buffer per proxied connection, each way: 64 connections hold at most 8 MiB of them.
const PROXY_BUF_SIZE: usize = 64 * 1024;

/// Request headers that mean something to git's smart HTTP; everything else, `Authorization` first of
/// all, stays in the sandbox.
const FORWARDED_REQUEST_HEADERS: [header::HeaderName; 4] = [
    header::CONTENT_TYPE,
    header::CONTENT_ENCODING,
    header::ACCEPT,
    header::CONTENT_LENGTH,
];
const FORWARDED_RESPONSE_HEADERS: [header::HeaderName; 5] = [
    header::CONTENT_TYPE,
    header::CACHE_CONTROL,
    header::EXPIRES,
    header::PRAGMA,
    header::CONTENT_ENCODING,
];
// `Location` is forwarded too, rewritten to come back through the proxy: see [`relay_location`].

/// Proof that a proxied request names the daemon's repository through an allowed git route. Only this
/// module creates one, and the token cache demands it and serves only a token for [`ProxyChecked::target`].
#[derive(Debug)]
pub struct ProxyChecked {
    target: Arc<Target>,
}

impl ProxyChecked {
    /// The repository the request was checked against.
    pub fn target(&self) -> &Target {
        &self.target
    }
}

/// The upstream client for git traffic to GitHub, and what the proxy may hold in memory for it.
pub struct Upstream {
    client: Client<hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>, ProxyBody>,
    base: String,
    budget: Arc<Budget>,
    timeout: Duration,
}

impl Upstream {
    pub fn new(github_url: &str) -> Result<Self, mint_github::ClientError> {
        let connector = mint_github::https_connector(github_url)?;
        Ok(Self {
            client: Client::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(30))
                .http1_max_buf_size(PROXY_BUF_SIZE)
                // Frames are written as they are, not copied into one more buffer first.
                .http1_writev(true)
                .build(connector),
            base: github_url.trim_end_matches('/').to_owned(),
            budget: Arc::new(Budget::new(REPLAY_BUDGET, |m| &m.proxy_buffered)),
            timeout: UPSTREAM_TIMEOUT,
        })
    }

    /// Where requests go: the URL it was made for, without a trailing slash.
    pub(crate) fn base(&self) -> &str {
        &self.base
    }

    /// Send `request`; GitHub must answer its head within the upstream timeout.
    pub(crate) async fn send(&self, request: Request<ProxyBody>) -> Result<Response<Incoming>, Response<ProxyBody>> {
        match tokio::time::timeout(self.timeout, self.client.request(request)).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(e)) => Err(text(
                StatusCode::BAD_GATEWAY,
                format!("mint: could not reach GitHub at {}: {e}\n", self.base),
            )),
            Err(_) => Err(text(
                StatusCode::GATEWAY_TIMEOUT,
                format!(
                    "mint: GitHub at {} did not answer within {} s; try again later\n",
                    self.base,
                    self.timeout.as_secs()
                ),
            )),
        }
    }
}

/// Serve the git proxy on `listener` until `shutdown` resolves, then drain.
pub async fn serve(listener: TcpListener, daemon: Arc<Daemon>, shutdown: impl Future<Output = ()>) {
    let metrics = daemon.metrics.clone();
    let service_for = move |_: &tokio::net::TcpStream| {
        let daemon = daemon.clone();
        service_fn(move |req| {
            let daemon = daemon.clone();
            async move { Ok::<_, Infallible>(handle(&daemon, req).await) }
        })
    };
    crate::http::serve(listener, LIMITS, service_for, metrics, shutdown).await;
}

/// The git routes the proxy forwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    InfoRefs,
    UploadPack,
    ReceivePack,
    /// Git LFS's batch API (`POST info/lfs/objects/batch`): small JSON both ways. The objects themselves
    /// go to the storage URLs it names, with their own authorization, not through the proxy.
    LfsBatch,
    /// Git LFS's locks API (`info/lfs/locks…`).
    LfsLocks,
}

impl Route {
    fn label(self) -> &'static str {
        match self {
            Route::InfoRefs => "info_refs",
            Route::UploadPack => "upload_pack",
            Route::ReceivePack => "receive_pack",
            Route::LfsBatch => "lfs_batch",
            Route::LfsLocks => "lfs_locks",
        }
    }
}

/// A request of git's smart HTTP: `/{owner}/{name}(.git)/{info/refs|git-upload-pack|git-receive-pack}`, or
/// of Git LFS's API beside it (`…/info/lfs/objects/batch`, `…/info/lfs/locks…`).
struct GitRequest<'a> {
    route: Route,
    /// `owner/name` as the request spells it.
    repo_path: String,
    rest: &'a str,
    service: Option<&'a str>,
    query: Option<&'a str>,
}

fn parse_route<'a>(method: &Method, path: &'a str, query: Option<&'a str>) -> Option<GitRequest<'a>> {
    let mut segments = path.trim_start_matches('/').splitn(3, '/');
    let (owner, name, rest) = (segments.next()?, segments.next()?, segments.next()?);
    let service = query.and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("service=")));
    let route = match (method, rest, service) {
        (&Method::GET, "info/refs", Some("git-upload-pack" | "git-receive-pack")) => Route::InfoRefs,
        (&Method::POST, "git-upload-pack", _) => Route::UploadPack,
        (&Method::POST, "git-receive-pack", _) => Route::ReceivePack,
        (&Method::POST, "info/lfs/objects/batch", _) => Route::LfsBatch,
        (&Method::GET, "info/lfs/locks", _) => Route::LfsLocks,
        (&Method::POST, rest, _) if is_lock_action(rest) => Route::LfsLocks,
        _ => return None,
    };
    Some(GitRequest {
        route,
        repo_path: format!("{owner}/{name}"),
        rest,
        service,
        query,
    })
}

/// `info/lfs/locks` (create), `info/lfs/locks/verify`, `info/lfs/locks/{id}/unlock`.
fn is_lock_action(rest: &str) -> bool {
    let Some(tail) = rest.strip_prefix("info/lfs/locks") else {
        return false;
    };
    match tail {
        "" | "/verify" => true,
        _ => tail
            .strip_prefix('/')
            .and_then(|t| t.strip_suffix("/unlock"))
            .is_some_and(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')),
    }
}

/// The upstream path of a request for the daemon's repository, or `None` for any other repository.
fn upstream_path(target: &Target, request: &GitRequest<'_>) -> Option<String> {
    let repo = target.repo();
    if !repo.matches_path(&request.repo_path) {
        return None;
    }
    let mut upstream = format!("/{}/{}.git/{}", repo.owner(), repo.name(), request.rest);
    if request.route == Route::InfoRefs {
        upstream.push_str("?service=");
        upstream.push_str(request.service.unwrap_or_default());
    } else if request.route == Route::LfsLocks
        && let Some(query) = request.query
    {
        // Listing locks filters and pages by query (`path`, `id`, `cursor`, `limit`, `refspec`).
        upstream.push('?');
        upstream.push_str(query);
    }
    Some(upstream)
}

async fn handle(daemon: &Daemon, req: Request<Incoming>) -> Response<ProxyBody> {
    let (parts, body) = req.into_parts();
    let not_ours = |target: Option<&Target>| {
        daemon.metrics.proxy_refused("not_this_repository");
        text(
            StatusCode::NOT_FOUND,
            match target {
                Some(target) => format!("mint proxies git for {} only\n", target.repo()),
                None => "mint proxies git smart HTTP for the sandbox's repository only\n".to_owned(),
            },
        )
    };
    let Some(git) = parse_route(&parts.method, parts.uri.path(), parts.uri.query()) else {
        if crate::api_proxy::is_api(parts.uri.path()) {
            return crate::api_proxy::handle(daemon, Request::from_parts(parts, body)).await;
        }
        return not_ours(daemon.cache.target().as_deref());
    };
    // Broker mode before the first token: the repository is learnt from a mint, then the request judged.
    let target = match daemon.cache.target() {
        Some(target) => target,
        None => match daemon.cache.learn_target().await {
            Ok(target) => target,
            Err(failure) => return mint_failed(&failure, |status, message| text(status, format!("mint: {message}\n"))),
        },
    };
    let Some(upstream_path) = upstream_path(&target, &git) else {
        return not_ours(Some(&target));
    };
    let route = git.route;
    let checked = ProxyChecked { target };
    let Some(upstream) = daemon.upstream.as_ref() else {
        return text(StatusCode::NOT_FOUND, "mint: the git proxy is not enabled\n".into());
    };
    let mut body = Pending {
        body,
        head: BytesMut::new(),
        charge: Charge::new(upstream.budget.clone(), daemon.metrics.clone()),
    };
    if route == Route::ReceivePack {
        if let Some(refusal) = refuse_encoded_push(daemon, &parts.headers) {
            return refusal;
        }
        match judge_push(daemon, &mut body).await {
            Ok(None) => {}
            Ok(Some(refusal)) => return refusal,
            Err(response) => return response,
        }
    }
    // The body goes to GitHub as git sends it (GitHub unpacks while git is still writing), and a copy is
    // kept on the way, within the budget, in case GitHub rejects the token and the request must be replayed.
    let tee = Tee::new(body, REPLAY_LIMIT);
    let first = forward(daemon, upstream, &checked, &parts, &upstream_path, tee.body()).await;
    let response = match first {
        Ok((response, token)) if response.status() == StatusCode::UNAUTHORIZED => match tee.take_back().await {
            Ok(Some(copy)) => {
                // The token was revoked or expired under us: drop it, mint anew, replay once. The copy stays
                // charged to the budget until the replay has sent it.
                tracing::info!(
                    route = route.label(),
                    "GitHub rejected the token; retrying with a fresh one"
                );
                replace_rejected(daemon, &token).await;
                forward(daemon, upstream, &checked, &parts, &upstream_path, copy.boxed()).await
            }
            Ok(None) => {
                tracing::warn!(
                    route = route.label(),
                    "GitHub rejected the token for a request streamed without a copy: git must run it again"
                );
                daemon.cache.drop_rejected(&token);
                daemon.metrics.proxied(route.label(), StatusCode::UNAUTHORIZED.as_u16());
                return text(
                    StatusCode::BAD_GATEWAY,
                    "mint: GitHub rejected the installation token (revoked or expired), and this request was streamed without a copy to replay (over 8 MiB, or the proxy's replay budget was in use): run the git command again; the next one gets a fresh token\n".into(),
                );
            }
            Err(e) => return read_failed(&e),
        },
        other => {
            // GitHub took the token: the copy is not needed any more.
            tee.release();
            other
        }
    };
    match response {
        Ok((response, _)) => {
            daemon.metrics.proxied(route.label(), response.status().as_u16());
            relay(daemon, upstream, response)
        }
        Err(response) => response,
    }
}

/// A 401 from GitHub proves the token dead: have the cache drop it. If it was dropped for a 401 seconds
/// ago (the erase interval, against a fresh token GitHub is still propagating), wait that interval out
/// rather than replay with the same dead token, so a revocation never fails the command.
pub(crate) async fn replace_rejected(daemon: &Daemon, token: &mint_github::InstallationToken) {
    let give_up = tokio::time::Instant::now() + ERASE_INTERVAL + Duration::from_millis(500);
    loop {
        if daemon.cache.drop_rejected(token) {
            return;
        }
        let still_served = daemon
            .cache
            .current()
            .is_some_and(|current| current.token.matches(token.expose()));
        if !still_served || tokio::time::Instant::now() >= give_up {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// git never compresses a push (only fetch negotiations); GitHub would decode one before reading its
/// commands, so judging the encoded bytes would judge something else. Anything but identity is refused.
fn refuse_encoded_push(daemon: &Daemon, headers: &http::HeaderMap) -> Option<Response<ProxyBody>> {
    let encodings: Vec<&[u8]> = headers
        .get_all(header::CONTENT_ENCODING)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|e| !e.is_empty() && !e.eq_ignore_ascii_case(b"identity"))
        .collect();
    let first = encodings.first()?;
    daemon.metrics.proxy_refused("push_encoding");
    Some(text(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        format!(
            "mint: a push with Content-Encoding {} is refused: the push check reads the command list as sent, so send it uncompressed (git does)\n",
            Untrusted(&String::from_utf8_lossy(first))
        ),
    ))
}

fn read_failed(error: &ReadError) -> Response<ProxyBody> {
    match error {
        ReadError::Idle(idle) => text(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "mint: the request body sent nothing for {} s; the connection is closed\n",
                idle.as_secs()
            ),
        ),
        ReadError::Body(e) => text(StatusCode::BAD_REQUEST, format!("reading the request failed: {e}\n")),
    }
}

/// Read the command list of a push and apply the policy. `Ok(Some(answer))`: refused, answered in git's
/// protocol, and nothing was sent to GitHub.
async fn judge_push(daemon: &Daemon, body: &mut Pending) -> Result<Option<Response<ProxyBody>>, Response<ProxyBody>> {
    let mut reader = push_policy::CommandReader::new();
    let request = loop {
        match reader.read(&body.head) {
            Ok(Some(request)) => break request,
            Ok(None) => {}
            Err(e) => return Err(text(StatusCode::BAD_REQUEST, format!("mint: {e}\n"))),
        }
        match body.read_more().await {
            Ok(true) => {}
            Ok(false) => {
                return Err(text(
                    StatusCode::BAD_REQUEST,
                    "mint: the push ended inside its command list\n".into(),
                ));
            }
            Err(e) => return Err(read_failed(&e)),
        }
        if !body.charge.cover(body.head.len()) {
            daemon.metrics.proxy_refused("busy");
            let mut busy = text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "mint: too many pushes at once: the proxy holds at most {} MiB of them; try again in a moment\n",
                    REPLAY_BUDGET >> 20
                ),
            );
            busy.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(1));
            return Err(busy);
        }
    };
    let Some(refused) = push_policy::refusals(&request.commands, &daemon.branch_prefix) else {
        return Ok(None);
    };
    for (refname, reason) in &refused {
        if daemon.metrics.repeated.should_log(Repeated::PushRefused) {
            tracing::warn!(refname = %Untrusted(refname), reason = %Untrusted(reason), "refused a push");
        }
    }
    daemon.metrics.proxy_refused("push_policy");
    // Read the rest (the pack) and drop it, so git is not cut off mid-send and prints our reason.
    while let Ok(true) = body.discard_more().await {}
    Ok(Some(
        Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, "application/x-git-receive-pack-result")
            .header(header::CACHE_CONTROL, "no-cache")
            .body(full(Bytes::from(push_policy::refusal_body(&request, &refused))))
            .expect("static headers are valid"),
    ))
}

/// Send one request upstream with a token from the cache. Returns the response and the token used.
async fn forward(
    daemon: &Daemon,
    upstream: &Upstream,
    checked: &ProxyChecked,
    parts: &http::request::Parts,
    upstream_path: &str,
    body: ProxyBody,
) -> Result<(Response<Incoming>, mint_github::InstallationToken), Response<ProxyBody>> {
    let token = match daemon.cache.get_for_proxy(checked).await {
        Ok(cached) => cached.token.clone(),
        Err(GetError::Failed(failure)) => {
            return Err(mint_failed(&failure, |status, message| {
                text(status, format!("mint: {message}\n"))
            }));
        }
        Err(GetError::Moved { now }) => {
            daemon.metrics.proxy_refused("not_this_repository");
            return Err(text(
                StatusCode::NOT_FOUND,
                format!(
                    "mint: the repository changed: mint proxies git for {} only now\n",
                    now.repo()
                ),
            ));
        }
    };
    let mut request = Request::builder()
        .method(parts.method.clone())
        .uri(format!("{}{upstream_path}", upstream.base))
        .header(header::USER_AGENT, concat!("mint-proxy/", env!("CARGO_PKG_VERSION")));
    for name in &FORWARDED_REQUEST_HEADERS {
        if let Some(value) = parts.headers.get(name) {
            request = request.header(name, value);
        }
    }
    if let Some(protocol) = parts.headers.get("git-protocol") {
        request = request.header("git-protocol", protocol);
    }
    let basic = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{}", token.expose()))
    };
    let mut auth = HeaderValue::from_str(&format!("Basic {basic}")).expect("base64 is a valid header value");
    auth.set_sensitive(true);
    request = request.header(header::AUTHORIZATION, auth);
    let request = request
        .body(body)
        .map_err(|e| text(StatusCode::BAD_REQUEST, format!("mint: {e}\n")))?;
    upstream.send(request).await.map(|response| (response, token))
}

/// GitHub's answer back to git: status, the headers git needs, the body streamed as it comes.
fn relay(daemon: &Daemon, upstream: &Upstream, response: Response<Incoming>) -> Response<ProxyBody> {
    let (parts, body) = response.into_parts();
    if parts.status == StatusCode::UNAUTHORIZED {
        // Still 401 with a fresh token: git has no credential to offer, so say what happened instead.
        return text(
            StatusCode::BAD_GATEWAY,
            "mint: GitHub rejected the installation token twice; see mint status\n".into(),
        );
    }
    let mut builder = Response::builder().status(parts.status);
    for name in &FORWARDED_RESPONSE_HEADERS {
        if let Some(value) = parts.headers.get(name) {
            builder = builder.header(name, value);
        }
    }
    if let Some(location) = parts
        .headers
        .get(header::LOCATION)
        .and_then(|l| relay_location(&upstream.base, l))
    {
        builder = builder.header(header::LOCATION, location);
    }
    let metrics = daemon.metrics.clone();
    let counted = body.map_frame(move |frame| {
        if let Some(data) = frame.data_ref() {
            metrics.proxy_bytes_down(data.len());
        }
        frame
    });
    // No idle limit on GitHub's answer: it may say nothing for minutes while it checks a large push.
    builder
        .body(counted.map_err(|e| -> BoxError { Box::new(e) }).boxed())
        .unwrap_or_else(|_| text(StatusCode::BAD_GATEWAY, "mint: GitHub sent an invalid header\n".into()))
}

#[derive(Debug)]
enum ReadError {
    Idle(Duration),
    Body(BoxError),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Idle(idle) => write!(f, "the request body sent nothing for {} s", idle.as_secs()),
            ReadError::Body(e) => write!(f, "{e}"),
        }
    }
}

/// A request body being read: what has been read so far, and the rest still in the connection.
struct Pending {
    body: Incoming,
    head: BytesMut,
    /// What `head` holds of the proxy's budget.
    charge: Charge,
}

impl Pending {
    /// Read one more frame into `head`; `false` at the end of the body.
    async fn read_more(&mut self) -> Result<bool, ReadError> {
        loop {
            let frame = tokio::time::timeout(BODY_IDLE_TIMEOUT, self.body.frame())
                .await
                .map_err(|_| ReadError::Idle(BODY_IDLE_TIMEOUT))?;
            match frame {
                None => return Ok(false),
                Some(frame) => {
                    if let Ok(data) = frame.map_err(|e| ReadError::Body(Box::new(e)))?.into_data() {
                        self.head.extend_from_slice(&data);
                        return Ok(true);
                    }
                }
            }
        }
    }

    async fn discard_more(&mut self) -> Result<bool, ReadError> {
        self.head.clear();
        self.read_more().await
    }
}

/// A request body on its way to GitHub, copied as it passes (up to a limit, within the budget) so that the
/// request can be replayed if GitHub rejects the token. GitHub gets each frame as soon as git sends it.
struct Tee<B = Incoming> {
    shared: Arc<std::sync::Mutex<TeeState<B>>>,
}

struct TeeState<B> {
    /// What was read before forwarding (a push's command list), still to be given to GitHub.
    unsent: Option<Bytes>,
    /// The rest of the sandbox's body; `None` once it was taken back for a replay.
    rest: Option<B>,
    /// The copy so far; `None` once it was given up (too large, over budget) or not needed.
    copy: Option<Vec<Bytes>>,
    copied: usize,
    limit: usize,
    charge: Charge,
}

impl<B> TeeState<B> {
    fn record(&mut self, data: &Bytes) {
        let Some(copy) = self.copy.as_mut() else {
            return;
        };
        let total = self.copied + data.len();
        let given_up = if total > self.limit {
            "too_large"
        } else if !self.charge.cover(total) {
            "budget"
        } else {
            // A copy of the bytes, not the frame: a frame may share hyper's whole read buffer.
            copy.push(Bytes::copy_from_slice(data));
            self.copied = total;
            return;
        };
        self.copy = None;
        self.charge.release();
        self.charge.metrics().proxy_unreplayable(given_up);
    }
}

impl Tee {
    fn new(read: Pending, limit: usize) -> Self {
        Self::over(read.head.freeze(), read.body, read.charge, limit)
    }
}

impl<B> Tee<B>
where
    B: hyper::body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    /// `head` (already read, already charged to `charge`), then `rest`.
    fn over(head: Bytes, rest: B, charge: Charge, limit: usize) -> Self {
        let copied = head.len();
        Self {
            shared: Arc::new(std::sync::Mutex::new(TeeState {
                unsent: Some(head.clone()),
                rest: Some(rest),
                copy: Some(vec![head]),
                copied,
                limit,
                charge,
            })),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, TeeState<B>> {
        lock(&self.shared)
    }

    /// The body to send upstream: cut off if the sandbox stops sending.
    fn body(&self) -> ProxyBody {
        IdleTimeout::new(
            TeeBody {
                shared: self.shared.clone(),
            },
            BODY_IDLE_TIMEOUT,
            "the request body",
        )
        .boxed()
    }

    /// GitHub answered and took the token: drop the copy and give back its budget.
    fn release(&self) {
        let mut state = self.state();
        state.copy = None;
        state.charge.release();
    }

    /// The whole body again, for a replay: the copy, completed from what the sandbox has not sent yet.
    /// `Ok(None)` if there is no complete copy to be had.
    async fn take_back(self) -> Result<Option<CopyBody>, ReadError> {
        let (mut rest, mut recording) = {
            let mut state = self.state();
            let Some(copy) = state.copy.take() else {
                return Ok(None);
            };
            let empty = state.charge.empty();
            let recording: TeeState<B> = TeeState {
                unsent: None,
                rest: None,
                copy: Some(copy),
                copied: state.copied,
                limit: state.limit,
                charge: std::mem::replace(&mut state.charge, empty),
            };
            (state.rest.take(), recording)
        };
        if let Some(rest) = rest.as_mut() {
            loop {
                let frame = tokio::time::timeout(BODY_IDLE_TIMEOUT, rest.frame())
                    .await
                    .map_err(|_| ReadError::Idle(BODY_IDLE_TIMEOUT))?;
                let Some(frame) = frame else { break };
                if let Ok(data) = frame.map_err(|e| ReadError::Body(e.into()))?.into_data() {
                    recording.record(&data);
                    if recording.copy.is_none() {
                        return Ok(None);
                    }
                }
            }
        }
        Ok(recording.copy.map(|chunks| CopyBody {
            chunks: chunks.into(),
            _charge: recording.charge,
        }))
    }
}

fn lock<B>(shared: &std::sync::Mutex<TeeState<B>>) -> std::sync::MutexGuard<'_, TeeState<B>> {
    // Nothing panics while holding it; a poisoned state is still consistent (plain fields).
    shared.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

struct TeeBody<B> {
    shared: Arc<std::sync::Mutex<TeeState<B>>>,
}

impl<B> hyper::body::Body for TeeBody<B>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut state = lock(&self.shared);
        if let Some(unsent) = state.unsent.take().filter(|b| !b.is_empty()) {
            return Poll::Ready(Some(Ok(Frame::data(unsent))));
        }
        let Some(rest) = state.rest.as_mut() else {
            return Poll::Ready(Some(Err("the request was taken back to be replayed".into())));
        };
        match Pin::new(rest).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    state.record(data);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        let state = lock(&self.shared);
        state.unsent.as_ref().is_none_or(Bytes::is_empty)
            && state.rest.as_ref().is_some_and(hyper::body::Body::is_end_stream)
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        let state = lock(&self.shared);
        let unsent = state.unsent.as_ref().map_or(0, |b| b.len() as u64);
        let rest = state
            .rest
            .as_ref()
            .map(hyper::body::Body::size_hint)
            .unwrap_or_default();
        let mut hint = hyper::body::SizeHint::new();
        // The upper bound first: `set_lower` refuses a lower bound above the upper one.
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper + unsent);
        }
        hint.set_lower(rest.lower() + unsent);
        hint
    }
}

/// A kept copy, sent again; its budget is given back when it has been sent (dropped).
struct CopyBody {
    chunks: std::collections::VecDeque<Bytes>,
    _charge: Charge,
}

impl CopyBody {
    fn boxed(self) -> ProxyBody {
        BodyExt::boxed(self)
    }
}

impl hyper::body::Body for CopyBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Poll::Ready(self.chunks.pop_front().map(|chunk| Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.chunks.is_empty()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::SizeHint::with_exact(self.chunks.iter().map(|c| c.len() as u64).sum())
    }
}

/// A body that fails once its inner body has yielded nothing for `idle`.
struct IdleTimeout<B> {
    inner: B,
    idle: Duration,
    what: &'static str,
    timer: Pin<Box<tokio::time::Sleep>>,
}

impl<B> IdleTimeout<B> {
    fn new(inner: B, idle: Duration, what: &'static str) -> Self {
        Self {
            inner,
            idle,
            what,
            timer: Box::pin(tokio::time::sleep(idle)),
        }
    }
}

impl<B> hyper::body::Body for IdleTimeout<B>
where
    B: hyper::body::Body<Data = Bytes, Error = BoxError> + Unpin,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                let next = tokio::time::Instant::now() + this.idle;
                this.timer.as_mut().reset(next);
                Poll::Ready(frame)
            }
            Poll::Pending => match this.timer.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(format!(
                    "{} sent nothing for {} s",
                    this.what,
                    this.idle.as_secs()
                )
                .into()))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// GitHub's `Location`, for git: a URL on GitHub becomes the same path on the proxy (git follows it back
/// here, not to GitHub without a token); any other is dropped.
fn relay_location(base: &str, location: &HeaderValue) -> Option<HeaderValue> {
    let location = location.to_str().ok()?;
    let path = match location.strip_prefix(base) {
        Some(path) if path.starts_with('/') => path,
        None if location.starts_with('/') && !location.starts_with("//") => location,
        _ => return None,
    };
    HeaderValue::from_str(path).ok()
}

pub(crate) fn full(bytes: Bytes) -> ProxyBody {
    Full::new(bytes).map_err(|never| match never {}).boxed()
}

fn text(status: StatusCode, message: String) -> Response<ProxyBody> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(full(Bytes::from(message)))
        .expect("static headers are valid")
}

#[cfg(test)]
mod tests {
    /// A body of `chunks`, ready at once, charging nothing.
    fn chunks(budget: &Arc<Budget>, metrics: &Arc<Metrics>, chunks: &[&'static str]) -> CopyBody {
        CopyBody {
            chunks: chunks.iter().map(|c| Bytes::from_static(c.as_bytes())).collect(),
            _charge: Charge::new(budget.clone(), metrics.clone()),
        }
    }

    /// A tee over `rest` after `head`, charged to `budget`, as the proxy makes one.
    fn tee(
        budget: &Arc<Budget>,
        metrics: &Arc<Metrics>,
        head: &'static str,
        rest: CopyBody,
        limit: usize,
    ) -> Tee<CopyBody> {
        let mut charge = Charge::new(budget.clone(), metrics.clone());
        assert!(charge.cover(head.len()));
        Tee::over(Bytes::from_static(head.as_bytes()), rest, charge, limit)
    }

    async fn next_data(body: &mut ProxyBody) -> Bytes {
        let frame = body.frame().await.expect("a frame").expect("no error");
        frame.into_data().expect("data")
    }

    async fn frames(body: ProxyBody) -> String {
        String::from_utf8(body.collect().await.expect("body").to_bytes().to_vec()).expect("utf8")
    }

    fn unreplayable(metrics: &Metrics) -> String {
        metrics
            .render(None)
            .lines()
            .filter(|l| l.starts_with("mint_proxy_unreplayable_total{"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[tokio::test]
    async fn a_tee_sends_everything_and_takes_back_a_whole_copy_even_when_partly_sent() {
        let (budget, metrics) = (
            Arc::new(Budget::new(1024, |m| &m.proxy_buffered)),
            Arc::new(Metrics::default()),
        );
        let tee = tee(
            &budget,
            &metrics,
            "0032cmds",
            chunks(&budget, &metrics, &["PACK", "-one", "-two"]),
            64,
        );
        // GitHub read the head and one frame, then answered 401.
        let mut sent = tee.body();
        let first = next_data(&mut sent).await;
        let second = next_data(&mut sent).await;
        assert_eq!((&first[..], &second[..]), (&b"0032cmds"[..], &b"PACK"[..]));
        let copy = tee.take_back().await.expect("read").expect("a whole copy");
        assert_eq!(budget.used(), 20, "the copy holds its bytes of the budget");
        assert!(
            sent.frame().await.expect("a frame").is_err(),
            "the first try's body stops"
        );
        assert_eq!(frames(copy.boxed()).await, "0032cmdsPACK-one-two");
        assert_eq!(budget.used(), 0, "sent: the budget is given back");
        assert_eq!(unreplayable(&metrics), "");
    }

    #[tokio::test]
    async fn past_the_budget_a_tee_streams_on_without_a_copy_and_says_so() {
        let (budget, metrics) = (
            Arc::new(Budget::new(12, |m| &m.proxy_buffered)),
            Arc::new(Metrics::default()),
        );
        let tee = tee(
            &budget,
            &metrics,
            "head",
            chunks(&budget, &metrics, &["1234", "5678", "9abc"]),
            64,
        );
        assert_eq!(frames(tee.body()).await, "head123456789abc", "GitHub gets every byte");
        assert_eq!(budget.used(), 0, "the copy was given up and its budget given back");
        assert_eq!(
            unreplayable(&metrics),
            "mint_proxy_unreplayable_total{reason=\"budget\"} 1"
        );
        assert!(tee.take_back().await.expect("read").is_none(), "no copy to replay");
    }

    #[tokio::test]
    async fn over_the_limit_a_tee_gives_up_its_copy_and_after_an_answer_it_keeps_none() {
        let (budget, metrics) = (
            Arc::new(Budget::new(1024, |m| &m.proxy_buffered)),
            Arc::new(Metrics::default()),
        );
        let large = tee(
            &budget,
            &metrics,
            "head",
            chunks(&budget, &metrics, &["1234", "5678"]),
            10,
        );
        assert_eq!(frames(large.body()).await, "head12345678");
        assert_eq!(
            unreplayable(&metrics),
            "mint_proxy_unreplayable_total{reason=\"too_large\"} 1"
        );
        assert!(large.take_back().await.expect("read").is_none());

        let answered = tee(&budget, &metrics, "head", chunks(&budget, &metrics, &["1234"]), 64);
        let mut sent = answered.body();
        next_data(&mut sent).await;
        answered.release();
        assert_eq!(budget.used(), 0, "GitHub answered: the copy is dropped");
        assert_eq!(frames(sent).await, "1234", "and the rest still streams");
        assert_eq!(
            unreplayable(&metrics),
            "mint_proxy_unreplayable_total{reason=\"too_large\"} 1"
        );
    }

    #[test]
    fn git_lfs_batch_and_locks_routes_are_proxied_and_other_lfs_paths_are_not() {
        let route = |method: &Method, path: &str| parse_route(method, path, None).map(|r| r.route);
        assert_eq!(
            route(&Method::POST, "/o/r.git/info/lfs/objects/batch"),
            Some(Route::LfsBatch)
        );
        assert_eq!(route(&Method::GET, "/o/r.git/info/lfs/locks"), Some(Route::LfsLocks));
        for lock in [
            "/o/r.git/info/lfs/locks",
            "/o/r.git/info/lfs/locks/verify",
            "/o/r/info/lfs/locks/12/unlock",
        ] {
            assert_eq!(route(&Method::POST, lock), Some(Route::LfsLocks), "{lock}");
        }
        for other in [
            "/o/r.git/info/lfs/objects/abc",
            "/o/r.git/info/lfs/locks/../x/unlock",
            "/o/r.git/info/lfs/objects/batch/x",
            "/o/r.git/info/lfs/locks//unlock",
        ] {
            assert_eq!(route(&Method::POST, other), None, "{other}");
        }
        assert_eq!(route(&Method::GET, "/o/r.git/info/lfs/objects/batch"), None);
    }

    use super::*;
    use crate::metrics::Metrics;

    #[test]
    fn a_location_on_github_comes_back_through_the_proxy_and_any_other_is_dropped() {
        let base = "https://github.example";
        let relayed = |l: &str| relay_location(base, &HeaderValue::from_str(l).expect("valid"));
        assert_eq!(
            relayed("https://github.example/octo-org/renamed.git/info/refs?service=git-upload-pack"),
            Some(HeaderValue::from_static(
                "/octo-org/renamed.git/info/refs?service=git-upload-pack"
            ))
        );
        assert_eq!(
            relayed("/octo-org/renamed.git/info/refs"),
            Some(HeaderValue::from_static("/octo-org/renamed.git/info/refs"))
        );
        for elsewhere in [
            "https://evil.example/octo-org/x.git",
            "https://github.example.evil.example/x",
            "//evil.example/x",
            "http://github.example/x",
        ] {
            assert_eq!(relayed(elsewhere), None, "{elsewhere}");
        }
    }

    #[tokio::test]
    async fn github_that_never_answers_is_a_504_naming_the_wait() {
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", silent.local_addr().expect("addr"));
        let held = tokio::spawn(async move {
            // Accept and read nothing, answer nothing.
            let mut open = Vec::new();
            while let Ok((stream, _)) = silent.accept().await {
                open.push(stream);
            }
        });
        let mut upstream = Upstream::new(&url).expect("client");
        upstream.timeout = Duration::from_millis(300);
        let request = Request::get(format!("{url}/o/r.git/info/refs"))
            .body(full(Bytes::new()))
            .expect("request");
        let started = tokio::time::Instant::now();
        let answer = upstream.send(request).await.expect_err("no answer");
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(answer.status(), StatusCode::GATEWAY_TIMEOUT);
        let body = answer.into_body().collect().await.expect("body").to_bytes();
        let body = String::from_utf8_lossy(&body);
        assert!(
            body.contains("did not answer within") && body.contains("try again later"),
            "{body}"
        );
        held.abort();
    }
}
