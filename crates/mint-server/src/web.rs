//! The product's Integrations page and the "GitHub (coding tasks)" card: sign-in and every binding through
//! GitHub's OAuth web flow, server-rendered HTML forms (no JavaScript), POST → 303 → GET, a CSRF token on
//! every state-changing form, and a strict Content-Security-Policy.
//!
//! The Setup URL's `installation_id` is a hint, never trusted: an installation is bound only after GitHub,
//! asked with the user's own token (held for that request only), lists it for this App and shows that the
//! user can push to the chosen repository.

#![allow(
    clippy::result_large_err,
    reason = "handlers return axum Responses as their error: one per request, never in a loop"
)]

use std::sync::Arc;
use std::time::Duration;

use askama::Template;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use http::{HeaderValue, StatusCode, header};
use mint_github::{OAuthApp, UserToken, percent_encode};
use serde::Deserialize;
use subtle::ConstantTimeEq;

use crate::model::{Connection, ConnectionStatus, now};
use crate::secrets::{random_token, sha256_hex};
use crate::state::AppState;
use crate::store::{Choice, OAuthState};

/// A browser session lasts this long from sign-in.
const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// An OAuth `state`, and what a user was verified to be able to bind, live this long.
pub const FLOW_TTL: Duration = Duration::from_secs(10 * 60);
/// The browser's cookie: a signed-in session's id, or (before sign-in) a random value that OAuth states are
/// bound to, with no row anywhere. `__Host-`: only this exact origin can set it, over a secure channel.
pub const SESSION_COOKIE: &str = "__Host-mint_session";
/// Sign-ins one client address may start: a burst, then one per interval.
pub const LOGIN_BURST: u32 = 10;
pub const LOGIN_EVERY: Duration = Duration::from_secs(6);
/// The card lists open pull requests from these branches: what the product's coding tasks opened.
const AGENT_BRANCH_PREFIX: &str = "adagent/";

/// The Integrations page's settings (all of `--public-url`, `--app-slug`, `--client-id`,
/// `--client-secret-file`, `--webhook-secret-file`).
pub struct Web {
    /// Where browsers reach mint-server, without a trailing slash.
    pub public_url: String,
    /// The same, parsed: the origin every redirect must stay on.
    pub public: url::Url,
    /// `--behind-tls-proxy`: the client's address is the last `X-Forwarded-For` entry, not the peer's.
    pub trust_forwarded_for: bool,
    /// `/login` per client address.
    pub logins: crate::limit::PerAddress,
    /// GitHub's web host (the OAuth and install pages).
    pub github_url: String,
    pub app_slug: String,
    /// The numeric App id, to pick this App's installations out of a user's.
    pub app_id: u64,
    pub oauth: OAuthApp,
    /// The current webhook secret, then the next one during a rotation.
    pub webhook_secrets: Vec<zeroize::Zeroizing<Vec<u8>>>,
    /// A client for the web host: the OAuth code exchange is not on the API host.
    pub web_client: mint_github::GitHubClient,
    /// The API, for the user's own calls.
    pub api_client: mint_github::GitHubClient,
}

impl std::fmt::Debug for Web {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Web")
            .field("public_url", &self.public_url)
            .field("app_slug", &self.app_slug)
            .field("oauth", &self.oauth)
            .finish_non_exhaustive()
    }
}

impl Web {
    fn callback_url(&self) -> String {
        format!("{}/github/oauth/callback", self.public_url)
    }

    /// GitHub's authorize page for this `state`, with the PKCE challenge of its `verifier`.
    fn authorize_url(&self, state: &str, verifier: &str) -> String {
        use base64::Engine as _;
        use sha2::Digest as _;
        let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier));
        format!(
            "{}/login/oauth/authorize?client_id={}&redirect_uri={}&state={}&code_challenge={challenge}&code_challenge_method=S256",
            self.github_url,
            percent_encode(&self.oauth.client_id),
            percent_encode(&self.callback_url()),
            percent_encode(state)
        )
    }

    /// Where to go after sign-in: `next` if it stays on this site, else the home page.
    fn next_path(&self, next: Option<&str>) -> String {
        next.and_then(|n| mint_service::redirect::same_origin_path(&self.public, n))
            .unwrap_or_else(|| "/".to_owned())
    }

    fn install_url(&self, state: &str) -> String {
        format!(
            "{}/apps/{}/installations/new?state={}",
            self.github_url,
            percent_encode(&self.app_slug),
            percent_encode(state)
        )
    }
}

pub fn routes() -> axum::Router<Arc<AppState>> {
    use axum::routing::{get, post};
    axum::Router::new()
        .route("/", get(home))
        .route("/login", get(login))
        .route("/logout", post(logout))
        .route("/static/mint.css", get(stylesheet))
        .route("/github/oauth/callback", get(oauth_callback))
        .route("/github/setup", get(setup))
        .route("/github/webhook", post(crate::webhook::receive))
        .route("/products/{id}/integrations", get(integrations))
        .route("/products/{id}/github/connect", post(connect))
        .route("/products/{id}/github/install", post(install))
        .route("/products/{id}/github/choose", get(choose))
        .route("/products/{id}/github/bind", post(bind))
        .route("/products/{id}/github/disconnect", post(disconnect))
}

// ---- responses -------------------------------------------------------------------------------------------

/// Every page carries these: nothing but our own stylesheet loads, nothing frames us, forms post only to us
/// and to GitHub (a form's redirect to GitHub counts), and no page is cached.
fn page(status: StatusCode, html: String, github_url: &str) -> Response {
    let mut response = (status, html).into_response();
    let headers = response.headers_mut();
    let csp = format!(
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self' {github_url}; frame-ancestors 'none'; base-uri 'none'"
    );
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    if let Ok(csp) = HeaderValue::from_str(&csp) {
        headers.insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn redirect(to: &str) -> Response {
    // 303: after a POST the browser GETs the new page, so a reload never re-submits.
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(location) = HeaderValue::from_str(to) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[derive(Template)]
#[template(path = "message.html")]
struct MessagePage<'a> {
    login: Option<&'a str>,
    csrf: &'a str,
    flash: Option<&'a str>,
    flash_error: bool,
    heading: &'a str,
    message: &'a str,
    back: Option<&'a str>,
}

/// A refusal as a page: the cause and the way out, nothing bound.
#[derive(Debug)]
pub struct WebError {
    status: StatusCode,
    heading: &'static str,
    message: String,
    github_url: String,
}

impl WebError {
    fn new(web: &Web, status: StatusCode, heading: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            heading,
            message: message.into(),
            github_url: web.github_url.clone(),
        }
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        let html = MessagePage {
            login: None,
            csrf: "",
            flash: None,
            flash_error: false,
            heading: self.heading,
            message: &self.message,
            back: Some("/"),
        }
        .render()
        .unwrap_or_else(|e| format!("template error: {e}"));
        page(self.status, html, &self.github_url)
    }
}

fn internal(web: &Web, what: &str, e: &dyn std::fmt::Display) -> WebError {
    tracing::error!(error = %e, what, "page failed");
    WebError::new(
        web,
        StatusCode::SERVICE_UNAVAILABLE,
        "Something failed",
        format!(
            "mint-server could not {what}; try again in a moment (the operator finds the cause in the server's log)"
        ),
    )
}

fn web_of(state: &AppState) -> Result<&Web, Response> {
    state.web.as_ref().ok_or_else(|| {
        crate::api::ApiError::new(
            StatusCode::NOT_FOUND,
            "not_configured",
            "the Integrations page is not configured: start mint-server with --public-url, --app-slug, --client-id, --client-secret-file and --webhook-secret-file",
        )
        .into_response()
    })
}

// ---- forms -----------------------------------------------------------------------------------------------

/// The pages' forms carry a CSRF token and a choice or two: a few hundred bytes.
const FORM_LIMIT: usize = 8 * 1024;

/// A form POST (`application/x-www-form-urlencoded`), at most [`FORM_LIMIT`] bytes, read within the server's
/// body budget.
pub struct WebForm<T>(pub T);

impl<T: serde::de::DeserializeOwned> axum::extract::FromRequest<Arc<AppState>> for WebForm<T> {
    type Rejection = Response;

    async fn from_request(req: axum::extract::Request, state: &Arc<AppState>) -> Result<Self, Response> {
        let web = web_of(state)?;
        let refused = |e: &crate::body::BodyError| {
            let mut response = crate::api::body_error(e).into_response();
            *response.body_mut() = axum::body::Body::from(format!("{e}\n"));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            response
        };
        if crate::api::declared_length(req.headers()).is_some_and(|n| n > FORM_LIMIT as u64) {
            return Err(refused(&crate::body::BodyError::TooLarge { limit: FORM_LIMIT }));
        }
        let held = crate::body::read(req.into_body(), FORM_LIMIT, FORM_LIMIT, &state.bodies, |_| {})
            .await
            .map_err(|e| refused(&e))?
            .expect("kept whole: retain equals the limit");
        serde_urlencoded::from_bytes(&held.bytes).map(WebForm).map_err(|e| {
            WebError::new(
                web,
                StatusCode::BAD_REQUEST,
                "Request refused",
                format!("The form was not understood ({e}), so nothing was changed: reload the page and try again."),
            )
            .into_response()
        })
    }
}

// ---- sessions --------------------------------------------------------------------------------------------

/// The browser, as its cookie shows it: signed in (a live session row) or not.
#[derive(Debug, Clone)]
pub struct Browser {
    /// SHA-256 of the cookie's value, signed in or not: what OAuth states are bound to.
    pub binding: Option<String>,
    /// A signed-in session's row (the same hash as `binding`).
    pub session_sha256: Option<String>,
    pub login: Option<String>,
    pub user_id: Option<u64>,
    pub csrf: String,
    /// The client's address (the last `X-Forwarded-For` entry behind a TLS proxy), for rate limits.
    pub address: Option<std::net::IpAddr>,
}

fn cookie<'a>(parts: &'a Parts, name: &str) -> Option<&'a str> {
    parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find_map(|(k, v)| (k == name && !v.is_empty() && v.len() <= 128).then_some(v))
}

/// The client's address: the connection's peer, or behind a TLS proxy the address the proxy appended last
/// to `X-Forwarded-For` (what came before it is the client's own claim).
fn client_address(parts: &Parts, web: &Web) -> Option<std::net::IpAddr> {
    if web.trust_forwarded_for
        && let Some(last) = parts
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .next_back()
            .and_then(|a| a.trim().parse().ok())
    {
        return Some(last);
    }
    parts
        .extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip())
}

impl FromRequestParts<Arc<AppState>> for Browser {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> Result<Self, Response> {
        let web = web_of(state)?;
        let address = client_address(parts, web);
        let Some(value) = cookie(parts, SESSION_COOKIE) else {
            return Ok(Self::anonymous(None, address));
        };
        let hash = sha256_hex(value.as_bytes());
        match state.store.session(&hash).await {
            Ok(Some(session)) if session.expires_at > now() && session.user_id.is_some() => Ok(Self {
                binding: Some(hash.clone()),
                session_sha256: Some(hash),
                login: session.login,
                user_id: session.user_id,
                csrf: session.csrf,
                address,
            }),
            Ok(_) => Ok(Self::anonymous(Some(hash), address)),
            Err(e) => Err(internal(web, "read your session", &e).into_response()),
        }
    }
}

impl Browser {
    fn anonymous(binding: Option<String>, address: Option<std::net::IpAddr>) -> Self {
        Self {
            binding,
            session_sha256: None,
            login: None,
            user_id: None,
            csrf: String::new(),
            address,
        }
    }

    fn csrf_ok(&self, presented: &str) -> bool {
        !self.csrf.is_empty()
            && self.csrf.len() == presented.len()
            && bool::from(self.csrf.as_bytes().ct_eq(presented.as_bytes()))
    }
}

/// `Set-Cookie` for the browser's cookie: `__Host-` (Secure, `Path=/`, no `Domain`), never readable by
/// scripts, not sent on cross-site POSTs.
fn session_cookie(value: &str, max_age: Duration) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={value}; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age={}",
        max_age.as_secs()
    ))
    .ok()
}

/// Sign the browser in as `user`: a new session id, always (whatever cookie it had, an attacker may have
/// planted it), the old session deleted. Returns the cookie to set and the new session's hash.
async fn start_session(
    state: &AppState,
    web: &Web,
    browser: &Browser,
    user: &mint_github::User,
) -> Result<(HeaderValue, String), WebError> {
    let id = random_token();
    let hash = sha256_hex(id.as_bytes());
    let now = now();
    let ttl = i64::try_from(SESSION_TTL.as_secs()).expect("hours");
    let login = user.login.to_ascii_lowercase();
    let csrf = random_token();
    let signed_in = crate::store::SessionUser {
        login: &login,
        user_id: user.id,
        csrf: &csrf,
    };
    state
        .store
        .create_session(&hash, &signed_in, now, now + ttl)
        .await
        .map_err(|e| internal(web, "start a session", &e))?;
    if let Some(old) = &browser.session_sha256
        && let Err(e) = state.store.delete_session(old).await
    {
        tracing::warn!(error = %e, "could not delete the session replaced at sign-in; it expires on its own");
    }
    let cookie = session_cookie(&id, SESSION_TTL).ok_or_else(|| internal(web, "start a session", &"cookie"))?;
    Ok((cookie, hash))
}

/// A single-use OAuth state bound to this browser's cookie, and the PKCE verifier that goes with it.
async fn new_state(state: &AppState, web: &Web, flow: OAuthState) -> Result<(String, String), WebError> {
    let token = random_token();
    let verifier = state
        .sealer
        .pkce_verifier(state.github.app(), &token)
        .map_err(|e| internal(web, "start the GitHub sign-in", &e))?;
    state
        .store
        .put_oauth_state(&sha256_hex(token.as_bytes()), &flow)
        .await
        .map_err(|e| internal(web, "start the GitHub sign-in", &e))?;
    Ok((token, verifier))
}

fn flow(binding: &str, purpose: &str, product: Option<&str>, hint: Option<u64>, next: Option<&str>) -> OAuthState {
    OAuthState {
        session_sha256: binding.to_owned(),
        purpose: purpose.to_owned(),
        product_id: product.map(str::to_owned),
        installation_hint: hint,
        next_path: next.map(str::to_owned),
        created_at: now(),
    }
}

fn sign_in_redirect(path: &str) -> Response {
    redirect(&format!("/login?next={}", percent_encode(path)))
}

/// The signed-in member of a product, or the response that says why not. Members are matched by GitHub's
/// user id (a login can be renamed and reused).
async fn member(
    state: &AppState,
    web: &Web,
    browser: &Browser,
    product: &str,
    here: &str,
) -> Result<(String, String), Response> {
    let (Some(login), Some(user_id)) = (&browser.login, browser.user_id) else {
        return Err(sign_in_redirect(here));
    };
    let not_member = || {
        // The same answer whether the product exists or not: its existence is not a non-member's business.
        WebError::new(
            web,
            StatusCode::FORBIDDEN,
            "Not a member",
            format!("{login} is not a member of this product: ask one of its members or the platform's operator to add your GitHub login"),
        )
        .into_response()
    };
    let product_row = match state.store.product(product).await {
        Ok(Some(p)) => p,
        Ok(None) => return Err(not_member()),
        Err(e) => return Err(internal(web, "read the product", &e).into_response()),
    };
    match state.store.is_member(product, login, user_id).await {
        Ok(true) => Ok((login.clone(), product_row.name)),
        Ok(false) => Err(not_member()),
        Err(e) => Err(internal(web, "read the product", &e).into_response()),
    }
}

/// A product's page: the Integrations settings and the signed-in member (login, product name), or the
/// response that says why not (not configured, not signed in, not a member).
async fn member_page<'s>(
    state: &'s AppState,
    browser: &Browser,
    product: &str,
) -> Result<(&'s Web, String, String), Response> {
    let web = web_of(state)?;
    let (login, name) = member(
        state,
        web,
        browser,
        product,
        &format!("/products/{product}/integrations"),
    )
    .await?;
    Ok((web, login, name))
}

// ---- pages -----------------------------------------------------------------------------------------------

#[derive(Template)]
#[template(path = "products.html")]
struct ProductsPage<'a> {
    login: Option<&'a str>,
    csrf: &'a str,
    flash: Option<&'a str>,
    flash_error: bool,
    products: Vec<(String, String)>,
}

async fn home(State(state): State<Arc<AppState>>, browser: Browser) -> Response {
    let web = match web_of(&state) {
        Ok(web) => web,
        Err(r) => return r,
    };
    let (Some(login), Some(user_id)) = (browser.login.as_deref(), browser.user_id) else {
        return sign_in_redirect("/");
    };
    let products = match state.store.products_of(login, user_id).await {
        Ok(p) => p,
        Err(e) => return internal(web, "list your products", &e).into_response(),
    };
    if let [(only, _)] = products.as_slice() {
        return redirect(&format!("/products/{only}/integrations"));
    }
    render(
        web,
        &ProductsPage {
            login: Some(login),
            csrf: &browser.csrf,
            flash: None,
            flash_error: false,
            products,
        },
    )
}

fn render(web: &Web, template: &impl Template) -> Response {
    match template.render() {
        Ok(html) => page(StatusCode::OK, html, &web.github_url),
        Err(e) => internal(web, "render the page", &e).into_response(),
    }
}

async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("../static/mint.css"),
    )
        .into_response()
}

#[derive(Debug, Deserialize)]
struct LoginQuery {
    next: Option<String>,
}

/// Sign in with GitHub: a single-use state bound to this browser's cookie (set now if it has none: a
/// random value with no row anywhere, so anonymous requests create no session), then GitHub's authorize
/// page. Limited per client address, since each one writes a state.
async fn login(State(state): State<Arc<AppState>>, browser: Browser, Query(q): Query<LoginQuery>) -> Response {
    let web = match web_of(&state) {
        Ok(web) => web,
        Err(r) => return r,
    };
    if let Some(address) = browser.address
        && let Err(wait) = web.logins.take(address)
    {
        let mut refused = WebError::new(
            web,
            StatusCode::TOO_MANY_REQUESTS,
            "Too many sign-ins",
            format!(
                "Too many sign-ins were started from your address: try again in {} seconds.",
                wait.as_secs().max(1)
            ),
        )
        .into_response();
        if let Ok(v) = HeaderValue::from_str(&wait.as_secs().max(1).to_string()) {
            refused.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return refused;
    }
    let next = web.next_path(q.next.as_deref());
    let (set_cookie, binding) = if let Some(hash) = browser.binding {
        (None, hash)
    } else {
        let value = random_token();
        (session_cookie(&value, FLOW_TTL), sha256_hex(value.as_bytes()))
    };
    let (token, verifier) = match new_state(&state, web, flow(&binding, "signin", None, None, Some(&next))).await {
        Ok(t) => t,
        Err(e) => return e.into_response(),
    };
    let mut response = redirect(&web.authorize_url(&token, &verifier));
    if let Some(cookie) = set_cookie {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}

#[derive(Debug, Deserialize)]
struct CsrfForm {
    csrf: String,
}

async fn logout(State(state): State<Arc<AppState>>, browser: Browser, WebForm(form): WebForm<CsrfForm>) -> Response {
    let web = match web_of(&state) {
        Ok(web) => web,
        Err(r) => return r,
    };
    if !browser.csrf_ok(&form.csrf) {
        return csrf_refused(web).into_response();
    }
    if let Some(hash) = &browser.session_sha256
        && let Err(e) = state.store.delete_session(hash).await
    {
        return internal(web, "end your session", &e).into_response();
    }
    let mut response = redirect("/");
    if let Some(v) = session_cookie("", Duration::ZERO) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    response
}

fn csrf_refused(web: &Web) -> WebError {
    WebError::new(
        web,
        StatusCode::FORBIDDEN,
        "Request refused",
        "this form did not carry this session's CSRF token, so nothing was changed: reload the page and try again",
    )
}

#[derive(Debug, Deserialize)]
struct FlashQuery {
    flash: Option<String>,
}

/// Fixed sentences only: a query parameter never becomes page text.
fn flash_text(code: Option<&str>) -> Option<(&'static str, bool)> {
    Some(match code? {
        "connected" => ("GitHub is connected: coding tasks use the repository below.", false),
        "disconnected" => (
            "GitHub is disconnected for this product: coding tasks stop until it is connected again. The App stays installed on GitHub.",
            false,
        ),
        "requested" => (
            "The installation was requested: an owner of the organization must approve it on GitHub.",
            false,
        ),
        "updated" => ("What GitHub reports was refreshed.", false),
        "not-pushable" => (
            "You cannot push to that repository (or it is not in that installation): nothing was bound. Choose another.",
            true,
        ),
        _ => return None,
    })
}

#[derive(Template)]
#[template(path = "integrations.html")]
#[expect(clippy::struct_excessive_bools, reason = "one flag per button the card may show")]
struct IntegrationsPage<'a> {
    login: Option<&'a str>,
    csrf: &'a str,
    flash: Option<&'a str>,
    flash_error: bool,
    product_id: &'a str,
    product_name: &'a str,
    status: &'a str,
    status_label: &'a str,
    badge_class: &'a str,
    reason: &'a str,
    account: Option<&'a str>,
    account_type: Option<&'a str>,
    repository: Option<&'a str>,
    installation_id: Option<u64>,
    show_connect: bool,
    connect_label: &'a str,
    show_change: bool,
    manage_url: Option<&'a str>,
    show_disconnect: bool,
    pulls: Vec<mint_github::PullRequest>,
}

async fn integrations(
    State(state): State<Arc<AppState>>,
    browser: Browser,
    Path(id): Path<String>,
    Query(q): Query<FlashQuery>,
) -> Response {
    use ConnectionStatus as S;
    let (web, login, name) = match member_page(&state, &browser, &id).await {
        Ok(m) => m,
        Err(r) => return r,
    };
    let connection = match state.store.connection(&id).await {
        Ok(c) => c.unwrap_or_else(|| Connection::not_connected("GitHub is not connected", now())),
        Err(e) => return internal(web, "read the connection", &e).into_response(),
    };
    let (label, badge) = match connection.status {
        S::Active => ("Connected", "badge-active"),
        S::PendingApproval => ("Waiting for approval", "badge-warn"),
        S::Suspended => ("Suspended", "badge-bad"),
        S::RepoRemoved => ("Repository removed", "badge-bad"),
        S::InstallationGone => ("Uninstalled", "badge-bad"),
        S::NotConnected => ("Not connected", "badge-off"),
    };
    let connected = connection.installation_id.is_some();
    let flash = flash_text(q.flash.as_deref());
    let pulls = match connection.target() {
        Some((installation, repository, name)) => agent_pulls(&state, &id, (installation, repository, name)).await,
        None => Vec::new(),
    };
    render(
        web,
        &IntegrationsPage {
            login: Some(&login),
            csrf: &browser.csrf,
            flash: flash.map(|f| f.0),
            flash_error: flash.is_some_and(|f| f.1),
            product_id: &id,
            product_name: &name,
            status: connection.status.as_str(),
            status_label: label,
            badge_class: badge,
            reason: &connection.reason,
            account: connection.account_login.as_deref(),
            account_type: connection.account_type.as_deref(),
            repository: connection.repository.as_deref(),
            installation_id: connection.installation_id,
            show_connect: matches!(
                connection.status,
                S::NotConnected | S::InstallationGone | S::PendingApproval
            ),
            connect_label: if connection.status == S::InstallationGone {
                "Reconnect"
            } else {
                "Connect GitHub"
            },
            show_change: matches!(connection.status, S::Active | S::RepoRemoved),
            manage_url: connection
                .installation_url
                .as_deref()
                .filter(|_| matches!(connection.status, S::Active | S::RepoRemoved | S::Suspended)),
            show_disconnect: connected && connection.status != S::NotConnected,
            pulls,
        },
    )
}

/// The connection's agent pull requests for the card: a listing a few seconds old serves every page view,
/// and a fresh one is read in the installation's turn, like every call with the App's key.
async fn agent_pulls(
    state: &AppState,
    product: &str,
    (installation, repository, name): (u64, u64, &str),
) -> Vec<mint_github::PullRequest> {
    if let Some(pulls) = state.pulls.get((installation, repository)) {
        return pulls;
    }
    let Ok(permit) = state.turn(installation, product).await else {
        return Vec::new();
    };
    let read = state
        .github
        .agent_pulls(installation, repository, name, AGENT_BRANCH_PREFIX);
    let pulls = tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .unwrap_or_default();
    drop(permit);
    state.pulls.put((installation, repository), pulls.clone());
    pulls
}

/// "Connect GitHub", "Reconnect" and "Change repository": sign in with GitHub for this product, then choose.
async fn connect(
    State(state): State<Arc<AppState>>,
    browser: Browser,
    Path(id): Path<String>,
    WebForm(form): WebForm<CsrfForm>,
) -> Response {
    start_flow(&state, &browser, &id, &form.csrf, "connect").await
}

/// "Install the App on another account": GitHub's install page, with a state the Setup URL brings back.
async fn install(
    State(state): State<Arc<AppState>>,
    browser: Browser,
    Path(id): Path<String>,
    WebForm(form): WebForm<CsrfForm>,
) -> Response {
    start_flow(&state, &browser, &id, &form.csrf, "install").await
}

async fn start_flow(state: &AppState, browser: &Browser, product: &str, csrf: &str, purpose: &str) -> Response {
    let web = match web_of(state) {
        Ok(web) => web,
        Err(r) => return r,
    };
    if !browser.csrf_ok(csrf) {
        return csrf_refused(web).into_response();
    }
    if let Err(r) = member(
        state,
        web,
        browser,
        product,
        &format!("/products/{product}/integrations"),
    )
    .await
    {
        return r;
    }
    let session = browser.session_sha256.as_deref().expect("a member has a session");
    match new_state(state, web, flow(session, purpose, Some(product), None, None)).await {
        Ok((token, _)) if purpose == "install" => redirect(&web.install_url(&token)),
        Ok((token, verifier)) => redirect(&web.authorize_url(&token, &verifier)),
        Err(e) => e.into_response(),
    }
}

#[derive(Debug, Deserialize)]
struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// Where GitHub sends the browser back after authorizing: the state must be one this browser's session
/// was given, unused and fresh; then the code becomes a user token for the rest of this request.
async fn oauth_callback(
    State(state): State<Arc<AppState>>,
    browser: Browser,
    Query(q): Query<CallbackQuery>,
) -> Response {
    let web = match web_of(&state) {
        Ok(web) => web,
        Err(r) => return r,
    };
    match callback(&state, web, &browser, q).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

async fn callback(state: &AppState, web: &Web, browser: &Browser, q: CallbackQuery) -> Result<Response, WebError> {
    let refused = |message: &str| WebError::new(web, StatusCode::BAD_REQUEST, "Sign-in refused", message);
    let Some(binding) = browser.binding.as_deref() else {
        return Err(refused(
            "This browser did not bring back the mint cookie (cookies blocked, or the link was opened elsewhere), so nothing was signed in or bound: start again from the Integrations page.",
        ));
    };
    let Some(token) = q.state.as_deref() else {
        return Err(refused(
            "GitHub's answer carries no state, so it cannot be trusted and nothing was bound: start again.",
        ));
    };
    let found = state
        .store
        .take_oauth_state(&sha256_hex(token.as_bytes()))
        .await
        .map_err(|e| internal(web, "check the sign-in", &e))?;
    let max_age = i64::try_from(FLOW_TTL.as_secs()).expect("minutes");
    let Some(flow) = found.filter(|f| f.session_sha256 == binding && now() - f.created_at < max_age) else {
        return Err(refused(
            "This sign-in link was already used, has expired, or was started in another browser, so nothing was bound: start again.",
        ));
    };
    if let Some(error) = q.error {
        return Err(refused(&format!(
            "GitHub did not authorize mint ({error}: {}): nothing was bound.",
            q.error_description.unwrap_or_default()
        )));
    }
    let code = q
        .code
        .ok_or_else(|| refused("GitHub's answer carries no code: start again."))?;
    // PKCE: only the server that started this flow can finish it, even with the code in hand.
    let verifier = state
        .sealer
        .pkce_verifier(state.github.app(), token)
        .map_err(|e| internal(web, "check the sign-in", &e))?;
    let user_token = web
        .web_client
        .exchange_code(&web.oauth, &code, &web.callback_url(), Some(&verifier))
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "OAuth code exchange failed");
            refused(
                "GitHub did not accept the sign-in code (used, expired, or mint's client secret is wrong): start again.",
            )
        })?;
    let user = web
        .api_client
        .user(&user_token)
        .await
        .map_err(|e| internal(web, "ask GitHub who you are", &e))?;
    if browser.user_id.is_some_and(|id| id != user.id) {
        return Err(refused(&format!(
            "You are signed in to mint as {} but GitHub authorized {}: sign out first.",
            browser.login.as_deref().unwrap_or_default(),
            user.login
        )));
    }
    let (cookie, session) = start_session(state, web, browser, &user).await?;
    tracing::info!(login = %user.login, purpose = %flow.purpose, "signed in with GitHub");
    let mut response = match (flow.purpose.as_str(), flow.product_id.as_deref()) {
        ("connect", Some(product)) => {
            let browser = Browser {
                binding: Some(session.clone()),
                session_sha256: Some(session.clone()),
                login: Some(user.login.to_ascii_lowercase()),
                user_id: Some(user.id),
                ..browser.clone()
            };
            let here = format!("/products/{product}/integrations");
            match member(state, web, &browser, product, &here).await {
                Ok(_) => offer_choices(state, web, &session, product, &user_token, flow.installation_hint).await?,
                Err(r) => r,
            }
        }
        _ => redirect(&web.next_path(flow.next_path.as_deref())),
    };
    response.headers_mut().insert(header::SET_COOKIE, cookie);
    Ok(response)
}

/// Ask GitHub, as the user, which installations of this App they reach and where they can push; keep that
/// as what this session may bind for ten minutes. With a Setup URL hint naming one of them that has exactly
/// one such repository, bind it at once.
async fn offer_choices(
    state: &AppState,
    web: &Web,
    session: &str,
    product: &str,
    token: &UserToken,
    hint: Option<u64>,
) -> Result<Response, WebError> {
    let installations = web
        .api_client
        .user_installations(token)
        .await
        .map_err(|e| internal(web, "list your installations on GitHub", &e))?;
    let mut choices = Vec::new();
    for found in installations
        .iter()
        .filter(|i| i.app_id == web.app_id && i.installation.suspended_at.is_none())
    {
        let id = found.installation.id;
        let repositories = web
            .api_client
            .user_installation_repositories(token, id)
            .await
            .map_err(|e| internal(web, "list the installation's repositories", &e))?;
        choices.extend(repositories.into_iter().filter(|r| r.permissions.push).map(|r| Choice {
            installation_id: id,
            repository_id: r.id,
            repository: r.full_name,
            account_login: found.installation.account.login.clone(),
        }));
    }
    let expires = now() + i64::try_from(FLOW_TTL.as_secs()).expect("minutes");
    state
        .store
        .put_choices(session, product, &choices, expires)
        .await
        .map_err(|e| internal(web, "remember your choices", &e))?;
    let ours = installations.iter().any(|i| i.app_id == web.app_id);
    if !ours {
        // Nothing installed yet: straight to GitHub's install page.
        let (token, _) = new_state(state, web, flow(session, "install", Some(product), None, None)).await?;
        return Ok(redirect(&web.install_url(&token)));
    }
    if let Some(hint) = hint {
        let in_hint: Vec<&Choice> = choices.iter().filter(|c| c.installation_id == hint).collect();
        if let [only] = in_hint.as_slice() {
            return bind_choice(state, web, session, product, (*only).clone()).await;
        }
    }
    Ok(redirect(&format!("/products/{product}/github/choose")))
}

#[derive(Template)]
#[template(path = "choose.html")]
struct ChoosePage<'a> {
    login: Option<&'a str>,
    csrf: &'a str,
    flash: Option<&'a str>,
    flash_error: bool,
    product_id: &'a str,
    product_name: &'a str,
    choices: Vec<Choice>,
}

async fn choose(
    State(state): State<Arc<AppState>>,
    browser: Browser,
    Path(id): Path<String>,
    Query(q): Query<FlashQuery>,
) -> Response {
    let (web, login, name) = match member_page(&state, &browser, &id).await {
        Ok(m) => m,
        Err(r) => return r,
    };
    let session = browser.session_sha256.as_deref().expect("a member has a session");
    let choices = match state.store.choices(session, &id, now()).await {
        Ok(c) => c,
        Err(e) => return internal(web, "read your choices", &e).into_response(),
    };
    let flash = flash_text(q.flash.as_deref());
    render(
        web,
        &ChoosePage {
            login: Some(&login),
            csrf: &browser.csrf,
            flash: flash.map(|f| f.0),
            flash_error: flash.is_some_and(|f| f.1),
            product_id: &id,
            product_name: &name,
            choices,
        },
    )
}

#[derive(Debug, Deserialize)]
struct BindForm {
    csrf: String,
    choice: String,
}

/// "Use this repository": bind only what GitHub showed this session's user can push to, after the App side
/// confirms the installation can mint for it.
async fn bind(
    State(state): State<Arc<AppState>>,
    browser: Browser,
    Path(id): Path<String>,
    WebForm(form): WebForm<BindForm>,
) -> Response {
    let web = match web_of(&state) {
        Ok(web) => web,
        Err(r) => return r,
    };
    if !browser.csrf_ok(&form.csrf) {
        return csrf_refused(web).into_response();
    }
    if let Err(r) = member(&state, web, &browser, &id, &format!("/products/{id}/integrations")).await {
        return r;
    }
    let session = browser.session_sha256.as_deref().expect("a member has a session");
    let wanted = form
        .choice
        .split_once(':')
        .and_then(|(i, r)| Some((i.parse::<u64>().ok()?, r.parse::<u64>().ok()?)));
    let choices = match state.store.choices(session, &id, now()).await {
        Ok(c) => c,
        Err(e) => return internal(web, "read your choices", &e).into_response(),
    };
    let Some(choice) = wanted.and_then(|(i, r)| {
        choices
            .into_iter()
            .find(|c| c.installation_id == i && c.repository_id == r)
    }) else {
        tracing::warn!(product = %id, choice = %form.choice, "refused a binding the user was not verified for");
        return redirect(&format!("/products/{id}/github/choose?flash=not-pushable"));
    };
    match bind_choice(&state, web, session, &id, choice).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn bind_choice(
    state: &AppState,
    web: &Web,
    session: &str,
    product: &str,
    choice: Choice,
) -> Result<Response, WebError> {
    let permit = state.turn(choice.installation_id, product).await.map_err(|refused| {
        let wait = crate::broker::not_now(refused, choice.installation_id);
        WebError::new(
            web,
            StatusCode::SERVICE_UNAVAILABLE,
            "Not connected yet",
            format!(
                "GitHub asked mint to slow down, so nothing was bound yet: try again shortly ({}).",
                wait.message
            ),
        )
    })?;
    let verified = state
        .github
        .verify_by_id(choice.installation_id, choice.repository_id, &choice.repository)
        .await;
    drop(permit);
    if let Err(crate::github::ConnectError::GitHub(e)) = &verified {
        state.noticed(choice.installation_id, e).await;
    }
    let verified = verified.map_err(|e| {
        WebError::new(
            web,
            StatusCode::UNPROCESSABLE_ENTITY,
            "Not connected",
            format!("GitHub refused the connection, so nothing was bound: {e}"),
        )
    })?;
    let connection = Connection::active(&verified, now());
    let queued = state
        .store
        .put_connection(product, &connection)
        .await
        .map_err(|e| internal(web, "save the connection", &e))?;
    if queued > 0 {
        // Change repository: the old repository's tokens die now.
        crate::revoker::settle(state, crate::store::Whose::Product(product)).await;
    }
    state
        .store
        .clear_choices(session, product)
        .await
        .map_err(|e| internal(web, "forget your choices", &e))?;
    tracing::info!(
        product,
        installation = choice.installation_id,
        repository_id = choice.repository_id,
        "bound through the connect flow"
    );
    Ok(redirect(&format!("/products/{product}/integrations?flash=connected")))
}

/// "Disconnect": this product's row only. The App stays installed; no code is touched.
async fn disconnect(
    State(state): State<Arc<AppState>>,
    browser: Browser,
    Path(id): Path<String>,
    WebForm(form): WebForm<CsrfForm>,
) -> Response {
    let web = match web_of(&state) {
        Ok(web) => web,
        Err(r) => return r,
    };
    if !browser.csrf_ok(&form.csrf) {
        return csrf_refused(web).into_response();
    }
    let (login, _) = match member(&state, web, &browser, &id, &format!("/products/{id}/integrations")).await {
        Ok(m) => m,
        Err(r) => return r,
    };
    let connection = Connection::not_connected(
        &format!("GitHub was disconnected by {login}: connect it again to run coding tasks"),
        now(),
    );
    if let Err(e) = state.store.put_connection(&id, &connection).await {
        return internal(web, "disconnect", &e).into_response();
    }
    // The sandboxes' tokens die now, at GitHub, whichever replica minted them.
    let pending = crate::revoker::settle(&state, crate::store::Whose::Product(&id)).await;
    tracing::info!(product = %id, %login, pending, "disconnected from the Integrations page");
    redirect(&format!("/products/{id}/integrations?flash=disconnected"))
}

#[derive(Debug, Deserialize)]
struct SetupQuery {
    installation_id: Option<String>,
    setup_action: Option<String>,
    state: Option<String>,
}

/// The App's Setup URL. GitHub says its `installation_id` can be spoofed, and anyone can send this: without
/// our state, bound to this browser, a visit changes nothing and asks GitHub nothing (webhooks report what
/// changed on GitHub). With it, the id only becomes a hint for the verified flow.
async fn setup(State(state): State<Arc<AppState>>, browser: Browser, Query(q): Query<SetupQuery>) -> Response {
    let web = match web_of(&state) {
        Ok(web) => web,
        Err(r) => return r,
    };
    let hint = q.installation_id.as_deref().and_then(|s| s.parse::<u64>().ok());
    let (Some(token), Some(binding)) = (q.state.as_deref(), browser.binding.as_deref()) else {
        return redirect("/");
    };
    let found = match state.store.take_oauth_state(&sha256_hex(token.as_bytes())).await {
        Ok(t) => t,
        Err(e) => return internal(web, "check the installation", &e).into_response(),
    };
    let max_age = i64::try_from(FLOW_TTL.as_secs()).expect("minutes");
    let Some(product) = found
        .filter(|f| f.session_sha256 == binding && f.purpose == "install" && now() - f.created_at < max_age)
        .and_then(|f| f.product_id)
    else {
        return WebError::new(
            web,
            StatusCode::BAD_REQUEST,
            "Not connected",
            "This installation link was already used, has expired, or was started in another browser, so nothing was bound: start again from the Integrations page.",
        )
        .into_response();
    };
    if let Err(r) = member(
        &state,
        web,
        &browser,
        &product,
        &format!("/products/{product}/integrations"),
    )
    .await
    {
        return r;
    }
    let session = browser.session_sha256.as_deref().expect("a member has a session");
    match q.setup_action.as_deref() {
        Some("install") => match new_state(&state, web, flow(session, "connect", Some(&product), hint, None)).await {
            Ok((token, verifier)) => redirect(&web.authorize_url(&token, &verifier)),
            Err(e) => e.into_response(),
        },
        Some("request") => {
            // Which account's owners were asked, as GitHub records it (never as the browser says): the
            // approval webhook is matched against it.
            let account = requested_account(&state, browser.user_id).await;
            let pending = Connection {
                status: ConnectionStatus::PendingApproval,
                reason: "The installation was requested: it waits for an owner of the organization to approve it on GitHub. The card becomes connectable once they do.".to_owned(),
                account_login: account,
                ..Connection::not_connected("", now())
            };
            // A working connection is not given up for a request that may never be approved.
            let active =
                matches!(state.store.connection(&product).await, Ok(Some(c)) if c.status == ConnectionStatus::Active);
            if !active && let Err(e) = state.store.put_connection(&product, &pending).await {
                return internal(web, "record the request", &e).into_response();
            }
            redirect(&format!("/products/{product}/integrations?flash=requested"))
        }
        _ => {
            if let Some(id) = hint {
                let state = state.clone();
                tokio::spawn(async move { crate::webhook::refresh_installation(&state, id).await });
            }
            redirect(&format!("/products/{product}/integrations?flash=updated"))
        }
    }
}

/// The account of the newest pending request to install the App that this user made, as GitHub lists it.
async fn requested_account(state: &AppState, user_id: Option<u64>) -> Option<String> {
    let user_id = user_id?;
    match state.github.app().installation_requests().await {
        Ok(requests) => requests
            .into_iter()
            .filter(|r| r.requester.id == user_id)
            .max_by_key(|r| r.id)
            .map(|r| r.account.login),
        Err(e) => {
            tracing::warn!(error = %e, "could not read the App's installation requests");
            None
        }
    }
}
