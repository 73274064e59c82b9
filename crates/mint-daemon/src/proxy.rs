//! Mediated mode: mintd serves git smart HTTP for the one repository and forwards it to GitHub with the
//! installation token, so the token never enters the sandbox. Pushes are judged from their command list
//! before any byte goes to GitHub; a 401 from GitHub (revoked or expired token) is retried with a fresh
//! token when the request can be replayed, so git never sees it.

use std::convert::Infallible;
use std::sync::Arc;
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
use crate::cache::{GetError, MintFailure};
use crate::logs::{Repeated, Untrusted};
use crate::push_policy;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type ProxyBody = BoxBody<Bytes, BoxError>;

/// POST bodies up to this size are kept so the request can be replayed after a 401.
pub const REPLAY_LIMIT: usize = 8 * 1024 * 1024;

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

/// The upstream client for git traffic to GitHub.
pub struct Upstream {
    client: Client<hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>, ProxyBody>,
    base: String,
}

impl Upstream {
    pub fn new(github_url: &str) -> Result<Self, mint_github::ClientError> {
        let connector = mint_github::https_connector(github_url)?;
        Ok(Self {
            client: Client::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(30))
                .build(connector),
            base: github_url.trim_end_matches('/').to_owned(),
        })
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
    // git sends its request at once; the generous header timeout only covers slow sandboxes.
    crate::http::serve(listener, Duration::from_secs(30), service_for, metrics, shutdown).await;
}

/// The git routes the proxy forwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    InfoRefs,
    UploadPack,
    ReceivePack,
}

impl Route {
    fn label(self) -> &'static str {
        match self {
            Route::InfoRefs => "info_refs",
            Route::UploadPack => "upload_pack",
            Route::ReceivePack => "receive_pack",
        }
    }
}

/// A request of git's smart HTTP: `/{owner}/{name}(.git)/{info/refs|git-upload-pack|git-receive-pack}`.
struct GitRequest<'a> {
    route: Route,
    /// `owner/name` as the request spells it.
    repo_path: String,
    rest: &'a str,
    service: Option<&'a str>,
}

fn parse_route<'a>(method: &Method, path: &'a str, query: Option<&'a str>) -> Option<GitRequest<'a>> {
    let mut segments = path.trim_start_matches('/').splitn(3, '/');
    let (owner, name, rest) = (segments.next()?, segments.next()?, segments.next()?);
    let service = query.and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("service=")));
    let route = match (method, rest, service) {
        (&Method::GET, "info/refs", Some("git-upload-pack" | "git-receive-pack")) => Route::InfoRefs,
        (&Method::POST, "git-upload-pack", _) => Route::UploadPack,
        (&Method::POST, "git-receive-pack", _) => Route::ReceivePack,
        _ => return None,
    };
    Some(GitRequest {
        route,
        repo_path: format!("{owner}/{name}"),
        rest,
        service,
    })
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
        return not_ours(daemon.cache.target().as_deref());
    };
    // Broker mode before the first token: the repository is learnt from a mint, then the request judged.
    let target = match daemon.cache.target() {
        Some(target) => target,
        None => match daemon.cache.learn_target().await {
            Ok(target) => target,
            Err(failure) => return mint_failed(&failure),
        },
    };
    let Some(upstream_path) = upstream_path(&target, &git) else {
        return not_ours(Some(&target));
    };
    let route = git.route;
    let checked = ProxyChecked { target };
    let mut body = Pending {
        body,
        head: BytesMut::new(),
    };
    if route == Route::ReceivePack {
        match judge_push(daemon, &mut body).await {
            Ok(None) => {}
            Ok(Some(refusal)) => return refusal,
            Err(response) => return response,
        }
    }
    let replayable = match body.buffer_up_to(REPLAY_LIMIT).await {
        Ok(done) => done,
        Err(e) => return text(StatusCode::BAD_REQUEST, format!("reading the request failed: {e}\n")),
    };
    let response = if replayable {
        let bytes = body.head.freeze();
        let first = forward(daemon, &checked, &parts, &upstream_path, full(bytes.clone())).await;
        match first {
            Ok((response, token)) if response.status() == StatusCode::UNAUTHORIZED => {
                // The token was revoked or expired under us: drop it, mint anew, replay once.
                tracing::info!(
                    route = route.label(),
                    "GitHub rejected the token; retrying with a fresh one"
                );
                daemon.cache.drop_rejected(&token);
                forward(daemon, &checked, &parts, &upstream_path, full(bytes)).await
            }
            other => other,
        }
    } else {
        let streamed = body.into_stream();
        forward(daemon, &checked, &parts, &upstream_path, streamed).await
    };
    match response {
        Ok((response, _)) => {
            daemon.metrics.proxied(route.label(), response.status().as_u16());
            relay(daemon, response)
        }
        Err(response) => response,
    }
}

/// Read the command list of a push and apply the policy. `Ok(Some(answer))`: refused, answered in git's
/// protocol, and nothing was sent to GitHub.
async fn judge_push(daemon: &Daemon, body: &mut Pending) -> Result<Option<Response<ProxyBody>>, Response<ProxyBody>> {
    let request = loop {
        match push_policy::parse(&body.head) {
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
            Err(e) => return Err(text(StatusCode::BAD_REQUEST, format!("reading the push failed: {e}\n"))),
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
    checked: &ProxyChecked,
    parts: &http::request::Parts,
    upstream_path: &str,
    body: ProxyBody,
) -> Result<(Response<Incoming>, mint_github::InstallationToken), Response<ProxyBody>> {
    let token = match daemon.cache.get_for_proxy(checked).await {
        Ok(cached) => cached.token.clone(),
        Err(GetError::Failed(failure)) => return Err(mint_failed(&failure)),
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
    let Some(upstream) = daemon.upstream.as_ref() else {
        return Err(text(
            StatusCode::NOT_FOUND,
            "mint: the git proxy is not enabled\n".into(),
        ));
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
    match upstream.client.request(request).await {
        Ok(response) => Ok((response, token)),
        Err(e) => Err(text(
            StatusCode::BAD_GATEWAY,
            format!("mint: could not reach GitHub at {}: {e}\n", upstream.base),
        )),
    }
}

/// GitHub's answer back to git: status, the headers git needs, the body streamed as it comes.
fn relay(daemon: &Daemon, response: Response<Incoming>) -> Response<ProxyBody> {
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
    let metrics = daemon.metrics.clone();
    let counted = body.map_frame(move |frame| {
        if let Some(data) = frame.data_ref() {
            metrics.proxy_bytes_down(data.len());
        }
        frame
    });
    builder
        .body(counted.map_err(|e| -> BoxError { Box::new(e) }).boxed())
        .unwrap_or_else(|_| text(StatusCode::BAD_GATEWAY, "mint: GitHub sent an invalid header\n".into()))
}

/// A request body being read: what has been read so far, and the rest still in the connection.
struct Pending {
    body: Incoming,
    head: BytesMut,
}

impl Pending {
    /// Read one more frame into `head`; `false` at the end of the body.
    async fn read_more(&mut self) -> Result<bool, hyper::Error> {
        loop {
            match self.body.frame().await {
                None => return Ok(false),
                Some(frame) => {
                    if let Ok(data) = frame?.into_data() {
                        self.head.extend_from_slice(&data);
                        return Ok(true);
                    }
                }
            }
        }
    }

    async fn discard_more(&mut self) -> Result<bool, hyper::Error> {
        self.head.clear();
        self.read_more().await
    }

    /// Keep reading while the whole body fits in `limit`; `true` if it all did.
    async fn buffer_up_to(&mut self, limit: usize) -> Result<bool, hyper::Error> {
        use hyper::body::Body as _;
        while self.head.len() <= limit {
            if self.body.is_end_stream() {
                return Ok(true);
            }
            if !self.read_more().await? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// What was read, then the rest as it arrives.
    fn into_stream(self) -> ProxyBody {
        ChainBody {
            first: Some(self.head.freeze()),
            rest: self.body,
        }
        .boxed()
    }
}

/// A body that yields the bytes already read, then the rest of the incoming body, frame by frame.
struct ChainBody {
    first: Option<Bytes>,
    rest: Incoming,
}

impl hyper::body::Body for ChainBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(first) = self.first.take().filter(|b| !b.is_empty()) {
            return std::task::Poll::Ready(Some(Ok(Frame::data(first))));
        }
        std::pin::Pin::new(&mut self.rest)
            .poll_frame(cx)
            .map(|frame| frame.map(|f| f.map_err(|e| -> BoxError { Box::new(e) })))
    }
}

/// No token: 503 if waiting may help (with a rate limit's `Retry-After`), else 502; git prints the body.
fn mint_failed(failure: &MintFailure) -> Response<ProxyBody> {
    let mut response = text(
        if failure.transient {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::BAD_GATEWAY
        },
        format!("mint: {}\n", failure.message),
    );
    if let Some(secs) = failure.retry_after(tokio::time::Instant::now()) {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

fn full(bytes: Bytes) -> ProxyBody {
    Full::new(bytes).map_err(|never| match never {}).boxed()
}

fn text(status: StatusCode, message: String) -> Response<ProxyBody> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(full(Bytes::from(message)))
        .expect("static headers are valid")
}
