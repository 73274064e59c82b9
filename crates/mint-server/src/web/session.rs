//! Who the browser is: its cookie (a signed-in session, or before sign-in a value OAuth states are bound to),
//! its forms, and whether it may see a product.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use http::{HeaderValue, StatusCode, header};
use mint_github::percent_encode;
use subtle::ConstantTimeEq;

use super::respond::{WebError, cookie_value, csrf_refused, internal, redirect, set_cookie, web_of};
use super::{SESSION_COOKIE, SESSION_TTL, Web};
use crate::model::now;
use crate::secrets::{random_token, sha256_hex};
use crate::state::AppState;

// ---- forms -----------------------------------------------------------------------------------------------

/// The pages' forms carry a CSRF token and a choice or two: a few hundred bytes.
pub(crate) const FORM_LIMIT: usize = 8 * 1024;

/// A form POST (`application/x-www-form-urlencoded`), at most [`FORM_LIMIT`] bytes, read within the server's
/// body budget.
pub struct WebForm<T>(pub T);

impl<T: serde::de::DeserializeOwned> axum::extract::FromRequest<Arc<AppState>> for WebForm<T> {
    type Rejection = Response;

    async fn from_request(req: axum::extract::Request, state: &Arc<AppState>) -> Result<Self, Response> {
        let web = web_of(state)?;
        let refused = |e: &crate::body::BodyError| {
            let mut response = crate::http::body_error(e).into_response();
            *response.body_mut() = axum::body::Body::from(format!("{e}\n"));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            response
        };
        if crate::http::declared_length(req.headers()).is_some_and(|n| n > FORM_LIMIT as u64) {
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

/// A form whose `csrf` field carries the session's token.
pub(crate) trait HasCsrf {
    fn csrf(&self) -> &str;
}

/// A request for one of the pages: the Integrations page is configured, and who the browser is. Every page
/// handler takes this instead of repeating the check.
pub struct WebPage {
    pub state: Arc<AppState>,
    pub browser: Browser,
}

impl WebPage {
    pub fn web(&self) -> &Web {
        self.state
            .web
            .as_ref()
            .expect("the extractor checked the Integrations page is configured")
    }
}

impl FromRequestParts<Arc<AppState>> for WebPage {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> Result<Self, Response> {
        web_of(state)?;
        let browser = Browser::from_request_parts(parts, state).await?;
        Ok(Self {
            state: state.clone(),
            browser,
        })
    }
}

/// A state-changing form POST: read within its cap and the body budget, and refused (403, nothing
/// changed) unless it carries this browser's CSRF token, before the handler runs.
pub struct CsrfForm<T> {
    pub page: WebPage,
    pub form: T,
}

impl<T: serde::de::DeserializeOwned + HasCsrf> axum::extract::FromRequest<Arc<AppState>> for CsrfForm<T> {
    type Rejection = Response;

    async fn from_request(req: axum::extract::Request, state: &Arc<AppState>) -> Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        let page = WebPage::from_request_parts(&mut parts, state).await?;
        let WebForm(form) = WebForm::<T>::from_request(axum::extract::Request::from_parts(parts, body), state).await?;
        if !page.browser.csrf_ok(form.csrf()) {
            return Err(csrf_refused(page.web()).into_response());
        }
        Ok(Self { page, form })
    }
}

/// A form that carries only the CSRF token (sign out, Connect, Disconnect).
#[derive(Debug, serde::Deserialize)]
pub(crate) struct CsrfOnly {
    pub(crate) csrf: String,
}

impl HasCsrf for CsrfOnly {
    fn csrf(&self) -> &str {
        &self.csrf
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

impl Browser {
    /// Who this browser is, for the audit trail: the GitHub user its session verified.
    pub fn actor(&self) -> crate::store::Actor {
        crate::store::Actor::User {
            id: self.user_id.unwrap_or_default(),
            login: self.login.clone().unwrap_or_default(),
        }
    }
}

/// The client's address: the connection's peer, or behind a TLS proxy the address the proxy appended last
/// to `X-Forwarded-For` (what came before it is the client's own claim).
pub(crate) fn client_address(parts: &Parts, web: &Web) -> Option<std::net::IpAddr> {
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
        let Some(value) = cookie_value(&parts.headers, SESSION_COOKIE) else {
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
    pub(crate) fn anonymous(binding: Option<String>, address: Option<std::net::IpAddr>) -> Self {
        Self {
            binding,
            session_sha256: None,
            login: None,
            user_id: None,
            csrf: String::new(),
            address,
        }
    }

    pub(crate) fn csrf_ok(&self, presented: &str) -> bool {
        !self.csrf.is_empty()
            && self.csrf.len() == presented.len()
            && bool::from(self.csrf.as_bytes().ct_eq(presented.as_bytes()))
    }
}

/// `Set-Cookie` for the browser's cookie (see [`set_cookie`]).
pub(crate) fn session_cookie(value: &str, max_age: Duration) -> Option<HeaderValue> {
    set_cookie(SESSION_COOKIE, value, max_age)
}

/// Sign the browser in as `user`: a new session id, always (whatever cookie it had, an attacker may have
/// planted it), the old session deleted. Returns the cookie to set and the new session's hash.
pub(crate) async fn start_session(
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

/// Where a visitor who is not signed in goes: sign-in, then back to `path`.
pub(crate) fn sign_in_redirect(path: &str) -> Response {
    redirect(&format!("/login?next={}", percent_encode(path)))
}

/// The signed-in member of a product, or the response that says why not. Members are matched by GitHub's
/// user id (a login can be renamed and reused).
pub(crate) async fn member(
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
            format!("{login} is not a member of this product. Ask one of its members or the platform's operator to add your GitHub login, or sign out and sign in as another GitHub user."),
        )
        .signed_in(login, &browser.csrf)
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
pub(crate) async fn member_page<'s>(
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
