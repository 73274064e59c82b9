//! What a page answers: the page itself with its security headers, a 303, or a refusal that says why.

use std::time::Duration;

use askama::Template;
use axum::response::{IntoResponse, Response};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use http::{HeaderValue, StatusCode, header};
use mint_api::broker::ErrorCode;

use super::Web;
use crate::state::AppState;

// ---- responses -------------------------------------------------------------------------------------------

/// Every page carries its policy: nothing but our own stylesheet loads, nothing frames us, and forms post
/// only to us and to GitHub (a form's redirect to GitHub counts). The headers every answer carries
/// (`nosniff`, no framing, no caching, the referrer policy) are set once for all routes in `routes.rs`.
pub(crate) fn page(status: StatusCode, html: String, github_url: &str) -> Response {
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
    response
}

pub(crate) fn redirect(to: &str) -> Response {
    // 303: after a POST the browser GETs the new page, so a reload never re-submits.
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(location) = HeaderValue::from_str(to) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

#[derive(Template)]
#[template(path = "message.html")]
pub(crate) struct MessagePage<'a> {
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
    /// The signed-in login and CSRF token, so the page offers "Sign out" (the not-a-member page).
    signed_in: Option<(String, String)>,
}

impl WebError {
    pub(crate) fn new(web: &Web, status: StatusCode, heading: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            heading,
            message: message.into(),
            github_url: web.github_url.clone(),
            signed_in: None,
        }
    }

    /// The page shows who is signed in, with "Sign out".
    #[must_use]
    pub(crate) fn signed_in(mut self, login: &str, csrf: &str) -> Self {
        self.signed_in = Some((login.to_owned(), csrf.to_owned()));
        self
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        let (login, csrf) = match &self.signed_in {
            Some((login, csrf)) => (Some(login.as_str()), csrf.as_str()),
            None => (None, ""),
        };
        let html = MessagePage {
            login,
            csrf,
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

pub(crate) fn internal(web: &Web, what: &str, e: &dyn std::fmt::Display) -> WebError {
    tracing::error!(error = %e, what, "page failed");
    WebError::new(
        web,
        StatusCode::SERVICE_UNAVAILABLE,
        "Something failed",
        format!(
            "mint could not {what}. Try again in a moment; if it keeps failing, the operator finds the cause in mint-server's log."
        ),
    )
}

pub(crate) fn web_of(state: &AppState) -> Result<&Web, Response> {
    state.web.as_ref().ok_or_else(|| {
        crate::http::ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NotConfigured,
            "the Integrations page is not configured: start mint-server with --public-url, --app-slug, --client-id, --client-secret-file and --webhook-secret-file",
        )
        .into_response()
    })
}

pub(crate) fn render(web: &Web, template: &impl Template) -> Response {
    match template.render() {
        Ok(html) => page(StatusCode::OK, html, &web.github_url),
        Err(e) => internal(web, "render the page", &e).into_response(),
    }
}

pub(crate) fn csrf_refused(web: &Web) -> WebError {
    WebError::new(
        web,
        StatusCode::FORBIDDEN,
        "Request refused",
        "This form did not carry this session's security token, so nothing was changed. Reload the page and try again.",
    )
}

// ---- one-shot messages -----------------------------------------------------------------------------------

/// A message for the next page only: a redirect sets it, the page that shows it clears it, so a reload or a
/// bookmark never brings it back.
pub(crate) const FLASH_COOKIE: &str = "__Host-mint_flash";

/// `Set-Cookie` for the one-shot message `code` (a fixed word; an empty one clears it).
pub(crate) fn flash_cookie(code: &str) -> Option<HeaderValue> {
    set_cookie(
        FLASH_COOKIE,
        code,
        Duration::from_secs(if code.is_empty() { 0 } else { 120 }),
    )
}

/// The one-shot message's code the browser brings, if any.
pub(crate) fn flash_of(headers: &http::HeaderMap) -> Option<String> {
    cookie_value(headers, FLASH_COOKIE)
        .filter(|v| v.len() <= 32 && v.bytes().all(|b| b.is_ascii_lowercase() || b == b'-'))
}

// ---- cookies ---------------------------------------------------------------------------------------------

/// `Set-Cookie` for one of the page's cookies, written by the `cookie` crate: `__Host-` named (so `Secure`,
/// `Path=/` and no `Domain`), never readable by scripts, not sent on cross-site POSTs. An empty value with
/// no age clears it.
pub(crate) fn set_cookie(name: &'static str, value: &str, max_age: Duration) -> Option<HeaderValue> {
    let cookie = Cookie::build((name, value.to_owned()))
        .path("/")
        .secure(true)
        .http_only(true)
        .same_site(SameSite::Lax)
        .max_age(time::Duration::seconds(
            i64::try_from(max_age.as_secs()).unwrap_or(i64::MAX),
        ))
        .build();
    HeaderValue::from_str(&cookie.to_string()).ok()
}

/// The value of the cookie `name` the browser brought, read by axum-extra's jar; an empty one, or one longer
/// than any cookie this server sets, is none.
pub(crate) fn cookie_value(headers: &http::HeaderMap, name: &str) -> Option<String> {
    CookieJar::from_headers(headers)
        .get(name)
        .map(|c| c.value().to_owned())
        .filter(|v| !v.is_empty() && v.len() <= 128)
}

/// A redirect to `to` that drops `?flash=CODE` from the address and carries the message in a cookie instead.
pub(crate) fn redirect_with_flash(to: &str, code: &str) -> Response {
    let mut response = redirect(to);
    if let Some(cookie) = flash_cookie(code) {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_host_prefixed_script_proof_and_read_back_by_name() {
        let set = set_cookie(FLASH_COOKIE, "connected", Duration::from_secs(120)).expect("a header");
        let set = set.to_str().expect("ascii");
        assert!(set.starts_with("__Host-mint_flash=connected"), "{set}");
        for attribute in ["Path=/", "Secure", "HttpOnly", "SameSite=Lax", "Max-Age=120"] {
            assert!(set.split("; ").any(|a| a == attribute), "{attribute} in {set}");
        }
        assert!(!set.contains("Domain"), "{set}");
        let cleared = flash_cookie("").expect("a header");
        assert!(cleared.to_str().expect("ascii").contains("Max-Age=0"), "{cleared:?}");

        let mut headers = http::HeaderMap::new();
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("other=1; __Host-mint_flash=disconnected"),
        );
        headers.append(header::COOKIE, HeaderValue::from_static("__Host-mint_session=abc"));
        assert_eq!(flash_of(&headers).as_deref(), Some("disconnected"));
        assert_eq!(cookie_value(&headers, "__Host-mint_session").as_deref(), Some("abc"));
        assert_eq!(cookie_value(&headers, "mint_session"), None, "only the exact name");
        let mut odd = http::HeaderMap::new();
        odd.insert(header::COOKIE, HeaderValue::from_static("__Host-mint_flash=<script>"));
        assert_eq!(flash_of(&odd), None, "a message code is a fixed word");
    }
}
