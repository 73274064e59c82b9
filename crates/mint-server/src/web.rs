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
use axum::Form;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use http::{HeaderValue, StatusCode, header};
use mint_github::{OAuthApp, UserToken, percent_encode};
use serde::Deserialize;
use subtle::ConstantTimeEq;

use crate::db::{Choice, OAuthState};
use crate::model::{Connection, ConnectionStatus, now};
use crate::secrets::{random_token, sha256_hex};
use crate::state::AppState;

/// A browser session lasts this long from sign-in.
const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// An OAuth `state`, and what a user was verified to be able to bind, live this long.
const FLOW_TTL: Duration = Duration::from_secs(10 * 60);
pub const SESSION_COOKIE: &str = "mint_session";
/// The card lists open pull requests from these branches: what the product's coding tasks opened.
const AGENT_BRANCH_PREFIX: &str = "adagent/";

/// The Integrations page's settings (all of `--public-url`, `--app-slug`, `--client-id`,
/// `--client-secret-file`, `--webhook-secret-file`).
pub struct Web {
    /// Where browsers reach mint-server, without a trailing slash.
    pub public_url: String,
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
    fn secure(&self) -> bool {
        self.public_url.starts_with("https://")
    }

    fn callback_url(&self) -> String {
        format!("{}/github/oauth/callback", self.public_url)
    }

    fn authorize_url(&self, state: &str) -> String {
        format!(
            "{}/login/oauth/authorize?client_id={}&redirect_uri={}&state={}",
            self.github_url,
            percent_encode(&self.oauth.client_id),
            percent_encode(&self.callback_url()),
            percent_encode(state)
        )
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

// ---- sessions --------------------------------------------------------------------------------------------

/// The browser's session, if it sent a cookie naming a live one.
#[derive(Debug, Clone)]
pub struct Browser {
    pub session_sha256: Option<String>,
    pub login: Option<String>,
    pub csrf: String,
}

fn cookie<'a>(parts: &'a Parts, name: &str) -> Option<&'a str> {
    parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find_map(|(k, v)| (k == name).then_some(v))
}

impl FromRequestParts<Arc<AppState>> for Browser {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> Result<Self, Response> {
        let web = web_of(state)?;
        let Some(id) = cookie(parts, SESSION_COOKIE) else {
            return Ok(Self::anonymous());
        };
        let hash = sha256_hex(id.as_bytes());
        match state.store.session(&hash).await {
            Ok(Some(session)) if session.expires_at > now() => Ok(Self {
                session_sha256: Some(hash),
                login: session.login,
                csrf: session.csrf,
            }),
            Ok(_) => Ok(Self::anonymous()),
            Err(e) => Err(internal(web, "read your session", &e).into_response()),
        }
    }
}

impl Browser {
    fn anonymous() -> Self {
        Self {
            session_sha256: None,
            login: None,
            csrf: String::new(),
        }
    }

    fn csrf_ok(&self, presented: &str) -> bool {
        !self.csrf.is_empty()
            && self.csrf.len() == presented.len()
            && bool::from(self.csrf.as_bytes().ct_eq(presented.as_bytes()))
    }
}

/// A fresh session (its cookie and hash); the session id exists only in the cookie.
async fn new_session(state: &AppState, web: &Web) -> Result<(String, String), WebError> {
    let id = random_token();
    let hash = sha256_hex(id.as_bytes());
    let now = now();
    let ttl = i64::try_from(SESSION_TTL.as_secs()).expect("hours");
    state
        .store
        .create_session(&hash, &random_token(), now, now + ttl)
        .await
        .map_err(|e| internal(web, "start a session", &e))?;
    let cookie = format!(
        "{SESSION_COOKIE}={id}; Path=/; HttpOnly; SameSite=Lax; Max-Age={ttl}{}",
        if web.secure() { "; Secure" } else { "" }
    );
    Ok((cookie, hash))
}

/// A single-use OAuth state for this session.
async fn new_state(state: &AppState, web: &Web, flow: OAuthState) -> Result<String, WebError> {
    let token = random_token();
    state
        .store
        .put_oauth_state(&sha256_hex(token.as_bytes()), &flow)
        .await
        .map_err(|e| internal(web, "start the GitHub sign-in", &e))?;
    Ok(token)
}

fn flow(session: &str, purpose: &str, product: Option<&str>, hint: Option<u64>, next: Option<&str>) -> OAuthState {
    OAuthState {
        session_sha256: session.to_owned(),
        purpose: purpose.to_owned(),
        product_id: product.map(str::to_owned),
        installation_hint: hint,
        next_path: next.map(str::to_owned),
        created_at: now(),
    }
}

/// Only local paths are followed after sign-in (never `//host` or a URL).
fn local_path(next: Option<&str>) -> &str {
    match next {
        Some(p) if p.starts_with('/') && !p.starts_with("//") && !p.contains('\\') && p.len() < 512 => p,
        _ => "/",
    }
}

fn sign_in_redirect(path: &str) -> Response {
    redirect(&format!("/login?next={}", percent_encode(path)))
}

/// The signed-in member of a product, or the response that says why not.
async fn member(
    state: &AppState,
    web: &Web,
    browser: &Browser,
    product: &str,
    here: &str,
) -> Result<(String, String), Response> {
    let Some(login) = &browser.login else {
        return Err(sign_in_redirect(here));
    };
    match state.store.product(product).await {
        Ok(Some(p)) if p.members.iter().any(|m| m.eq_ignore_ascii_case(login)) => Ok((login.clone(), p.name)),
        // The same answer whether the product exists or not: its existence is not a non-member's business.
        Ok(_) => Err(WebError::new(
            web,
            StatusCode::FORBIDDEN,
            "Not a member",
            format!("{login} is not a member of this product: ask one of its members or the platform's operator to add your GitHub login"),
        )
        .into_response()),
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
    let Some(login) = browser.login.as_deref() else {
        return sign_in_redirect("/");
    };
    let products = match state.store.products_of(login).await {
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

/// Sign in with GitHub: a session (new if need be) and a single-use state, then GitHub's authorize page.
async fn login(State(state): State<Arc<AppState>>, browser: Browser, Query(q): Query<LoginQuery>) -> Response {
    let web = match web_of(&state) {
        Ok(web) => web,
        Err(r) => return r,
    };
    let next = local_path(q.next.as_deref()).to_owned();
    let (set_cookie, session) = match browser.session_sha256 {
        Some(hash) => (None, hash),
        None => match new_session(&state, web).await {
            Ok((cookie, hash)) => (Some(cookie), hash),
            Err(e) => return e.into_response(),
        },
    };
    let token = match new_state(&state, web, flow(&session, "signin", None, None, Some(&next))).await {
        Ok(t) => t,
        Err(e) => return e.into_response(),
    };
    let mut response = redirect(&web.authorize_url(&token));
    if let Some(cookie) = set_cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}

#[derive(Debug, Deserialize)]
struct CsrfForm {
    csrf: String,
}

async fn logout(State(state): State<Arc<AppState>>, browser: Browser, Form(form): Form<CsrfForm>) -> Response {
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
    let expired = format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0");
    if let Ok(v) = HeaderValue::from_str(&expired) {
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
        Some((installation, repository, name)) => {
            let read = state
                .github
                .agent_pulls(installation, repository, name, AGENT_BRANCH_PREFIX);
            tokio::time::timeout(Duration::from_secs(5), read)
                .await
                .unwrap_or_default()
        }
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

/// "Connect GitHub", "Reconnect" and "Change repository": sign in with GitHub for this product, then choose.
async fn connect(
    State(state): State<Arc<AppState>>,
    browser: Browser,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    start_flow(&state, &browser, &id, &form.csrf, "connect").await
}

/// "Install the App on another account": GitHub's install page, with a state the Setup URL brings back.
async fn install(
    State(state): State<Arc<AppState>>,
    browser: Browser,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
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
        Ok(token) if purpose == "install" => redirect(&web.install_url(&token)),
        Ok(token) => redirect(&web.authorize_url(&token)),
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
    let Some(session) = browser.session_sha256.as_deref() else {
        return Err(refused(
            "this browser has no mint session (cookies blocked, or the link was opened elsewhere), so nothing was signed in or bound: start again from the Integrations page",
        ));
    };
    let Some(token) = q.state.as_deref() else {
        return Err(refused(
            "GitHub's answer carries no state, so it cannot be trusted and nothing was bound: start again",
        ));
    };
    let found = state
        .store
        .take_oauth_state(&sha256_hex(token.as_bytes()))
        .await
        .map_err(|e| internal(web, "check the sign-in", &e))?;
    let max_age = i64::try_from(FLOW_TTL.as_secs()).expect("minutes");
    let Some(flow) = found.filter(|f| f.session_sha256 == session && now() - f.created_at < max_age) else {
        return Err(refused(
            "this sign-in link was already used, has expired, or was started in another browser, so nothing was bound: start again",
        ));
    };
    if let Some(error) = q.error {
        return Err(refused(&format!(
            "GitHub did not authorize mint ({error}: {}): nothing was bound",
            q.error_description.unwrap_or_default()
        )));
    }
    let code = q
        .code
        .ok_or_else(|| refused("GitHub's answer carries no code: start again"))?;
    let user_token = web
        .web_client
        .exchange_code(&web.oauth, &code, &web.callback_url())
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "OAuth code exchange failed");
            refused(
                "GitHub did not accept the sign-in code (used, expired, or mint's client secret is wrong): start again",
            )
        })?;
    let user = web
        .api_client
        .user(&user_token)
        .await
        .map_err(|e| internal(web, "ask GitHub who you are", &e))?;
    if browser
        .login
        .as_deref()
        .is_some_and(|l| !l.eq_ignore_ascii_case(&user.login))
    {
        return Err(refused(&format!(
            "you are signed in to mint as {} but GitHub authorized {}: sign out first",
            browser.login.as_deref().unwrap_or_default(),
            user.login
        )));
    }
    state
        .store
        .sign_in(session, &user.login.to_ascii_lowercase())
        .await
        .map_err(|e| internal(web, "sign you in", &e))?;
    tracing::info!(login = %user.login, purpose = %flow.purpose, "signed in with GitHub");
    match (flow.purpose.as_str(), flow.product_id.as_deref()) {
        ("connect", Some(product)) => {
            let browser = Browser {
                login: Some(user.login.to_ascii_lowercase()),
                ..browser.clone()
            };
            let here = format!("/products/{product}/integrations");
            if let Err(r) = member(state, web, &browser, product, &here).await {
                return Ok(r);
            }
            offer_choices(state, web, session, product, &user_token, flow.installation_hint).await
        }
        _ => Ok(redirect(local_path(flow.next_path.as_deref()))),
    }
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
        let token = new_state(state, web, flow(session, "install", Some(product), None, None)).await?;
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
    Form(form): Form<BindForm>,
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
    let verified = state
        .github
        .verify_by_id(choice.installation_id, choice.repository_id, &choice.repository)
        .await
        .map_err(|e| {
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
        crate::revoker::settle(state, crate::db::Whose::Product(product)).await;
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
    Form(form): Form<CsrfForm>,
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
    let pending = crate::revoker::settle(&state, crate::db::Whose::Product(&id)).await;
    tracing::info!(product = %id, %login, pending, "disconnected from the Integrations page");
    redirect(&format!("/products/{id}/integrations?flash=disconnected"))
}

#[derive(Debug, Deserialize)]
struct SetupQuery {
    installation_id: Option<String>,
    setup_action: Option<String>,
    state: Option<String>,
}

/// The App's Setup URL. GitHub says its `installation_id` can be spoofed: it only ever becomes a hint for
/// the verified flow. `update` and a visit without our state never bind; they refresh what we know.
async fn setup(State(state): State<Arc<AppState>>, browser: Browser, Query(q): Query<SetupQuery>) -> Response {
    let web = match web_of(&state) {
        Ok(web) => web,
        Err(r) => return r,
    };
    let hint = q.installation_id.as_deref().and_then(|s| s.parse::<u64>().ok());
    let refresh_hint = || {
        if let Some(id) = hint {
            let state = state.clone();
            tokio::spawn(async move { crate::webhook::refresh_installation(&state, id).await });
        }
    };
    let (Some(token), Some(session)) = (q.state.as_deref(), browser.session_sha256.as_deref()) else {
        refresh_hint();
        return redirect("/?flash=updated");
    };
    let found = match state.store.take_oauth_state(&sha256_hex(token.as_bytes())).await {
        Ok(t) => t,
        Err(e) => return internal(web, "check the installation", &e).into_response(),
    };
    let max_age = i64::try_from(FLOW_TTL.as_secs()).expect("minutes");
    let Some((product, _)) = found
        .filter(|f| f.session_sha256 == session && f.purpose == "install" && now() - f.created_at < max_age)
        .and_then(|f| f.product_id.map(|p| (p, f.created_at)))
    else {
        refresh_hint();
        return WebError::new(
            web,
            StatusCode::BAD_REQUEST,
            "Not connected",
            "this installation link was already used, has expired, or was started in another browser, so nothing was bound: start again from the Integrations page",
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
    match q.setup_action.as_deref() {
        Some("install") => match new_state(&state, web, flow(session, "connect", Some(&product), hint, None)).await {
            Ok(token) => redirect(&web.authorize_url(&token)),
            Err(e) => e.into_response(),
        },
        Some("request") => {
            let pending = Connection {
                status: ConnectionStatus::PendingApproval,
                reason: "The installation was requested: it waits for an owner of the organization to approve it on GitHub. The card becomes connectable once they do.".to_owned(),
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
            refresh_hint();
            redirect(&format!("/products/{product}/integrations?flash=updated"))
        }
    }
}
