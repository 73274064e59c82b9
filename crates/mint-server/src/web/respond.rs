//! What a page answers: the page itself with its security headers, a 303, or a refusal that says why.

use askama::Template;
use axum::response::{IntoResponse, Response};
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
}

impl WebError {
    pub(crate) fn new(web: &Web, status: StatusCode, heading: &'static str, message: impl Into<String>) -> Self {
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

pub(crate) fn internal(web: &Web, what: &str, e: &dyn std::fmt::Display) -> WebError {
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
        "this form did not carry this session's CSRF token, so nothing was changed: reload the page and try again",
    )
}
