//! Signing in to fakehub, and the OAuth web flow of the App's user authorization as GitHub documents it:
//! `GET /login/oauth/authorize` → (sign in) → Authorize → `302 redirect_uri?code&state`, then
//! `POST /login/oauth/access_token` → a `ghu_` user access token.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use rand::{Rng, RngCore};
use serde_json::{Value, json};
use sha2::Digest;

use crate::FakeHub;
use crate::html::{SESSION_COOKIE, cookie, esc, field, hidden, page, parse_form, redirect, see_other, with_query};
use crate::server::{Body, full, read_json_body};
use crate::state::{OAuthCode, Session, UserToken};

/// "The temporary code will expire after 10 minutes."
const CODE_LIFETIME: Duration = Duration::from_secs(600);
const TROUBLESHOOT_AUTHORIZE: &str = "/apps/managing-oauth-apps/troubleshooting-authorization-request-errors/";
const TROUBLESHOOT_TOKEN: &str = "/apps/managing-oauth-apps/troubleshooting-oauth-app-access-token-request-errors/";

/// Who is signed in to the browser that sent a request.
pub(crate) struct SignedIn {
    pub(crate) login: String,
    pub(crate) csrf: String,
}

/// An authorize request, checked against the App's registration.
struct AuthorizeRequest {
    redirect_uri: String,
    /// Whether the client named `redirect_uri` (the token request must then name the same).
    named_redirect: bool,
    state: Option<String>,
    code_challenge: Option<String>,
}

impl FakeHub {
    /// The signed-in user a `ghu_` token stands for.
    pub(crate) fn user_of_token(&self, token: &str) -> Option<String> {
        self.state()
            .user_tokens
            .iter()
            .find(|t| t.token == token)
            .map(|t| t.login.clone())
    }

    /// A user access token for `login`, as if they had gone through the web flow.
    pub fn issue_user_token(&self, login: &str) -> anyhow::Result<String> {
        let login = self
            .user(login)
            .ok_or_else(|| anyhow::anyhow!("{login:?} is not a fakehub user: add it with Config::with_user"))?
            .login
            .clone();
        let token = format!("ghu_{}", random_alphanumeric(36));
        self.state().user_tokens.push(UserToken {
            token: token.clone(),
            login,
        });
        Ok(token)
    }

    /// The browser's signed-in user, from the session cookie.
    pub(crate) fn signed_in(&self, headers: &http::HeaderMap) -> Option<SignedIn> {
        let sid = cookie(headers, SESSION_COOKIE)?;
        self.state().sessions.get(&sid).map(|s| SignedIn {
            login: s.login.clone(),
            csrf: s.csrf.clone(),
        })
    }

    /// `GET /login?return_to=…`: the sign-in form.
    pub(crate) fn login_page(&self, headers: &http::HeaderMap, query: Option<&str>) -> Response<Body> {
        let params = parse_form(query.unwrap_or(""));
        let return_to = safe_return_to(field(&params, "return_to"));
        if self.signed_in(headers).is_some() {
            return redirect(&return_to);
        }
        sign_in_form(StatusCode::OK, &return_to, field(&params, "login").unwrap_or(""), None)
    }

    /// `POST /session`: check the password, start a session, go back where the user was going.
    pub(crate) async fn create_session(&self, req: Request<Incoming>) -> Response<Body> {
        let form = match read_form(req).await {
            Ok(form) => form,
            Err(response) => return response,
        };
        let return_to = safe_return_to(field(&form, "return_to"));
        let login = field(&form, "login").unwrap_or("");
        let password = field(&form, "password").unwrap_or("");
        let Some(user) = self.user(login).filter(|u| u.password == password) else {
            return sign_in_form(
                StatusCode::OK,
                &return_to,
                login,
                Some("Incorrect username or password."),
            );
        };
        let sid = random_hex(32);
        let login = user.login.clone();
        self.state().sessions.insert(
            sid.clone(),
            Session {
                login,
                csrf: random_hex(32),
            },
        );
        let mut response = see_other(&return_to);
        if let Ok(value) = HeaderValue::from_str(&format!("{SESSION_COOKIE}={sid}; Path=/; HttpOnly; SameSite=Lax")) {
            response.headers_mut().insert(header::SET_COOKIE, value);
        }
        response
    }

    /// `POST /logout`.
    pub(crate) fn end_session(&self, headers: &http::HeaderMap) -> Response<Body> {
        if let Some(sid) = cookie(headers, SESSION_COOKIE) {
            self.state().sessions.remove(&sid);
        }
        let mut response = see_other("/login");
        response.headers_mut().insert(
            header::SET_COOKIE,
            HeaderValue::from_static("fakehub_session=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0"),
        );
        response
    }

    /// Check an authorize request's parameters against the App's registration; `Err` is the answer to give.
    fn check_authorize(&self, params: &[(String, String)]) -> Result<AuthorizeRequest, Box<Response<Body>>> {
        let config = self.config();
        if field(params, "client_id") != Some(config.client_id.as_str()) {
            return Err(Box::new(page(
                StatusCode::NOT_FOUND,
                "Page not found",
                None,
                "<p>No application has this <code>client_id</code>.</p>",
            )));
        }
        let state = field(params, "state").map(ToOwned::to_owned);
        let Some(first) = config.callback_urls.first() else {
            return Err(Box::new(page(
                StatusCode::BAD_REQUEST,
                "No callback URL",
                None,
                "<p>The application has no registered callback URL.</p>",
            )));
        };
        let (redirect_uri, named_redirect) = match field(params, "redirect_uri") {
            Some(uri) if config.callback_urls.iter().any(|c| c == uri) => (uri.to_owned(), true),
            Some(_) => {
                return Err(Box::new(redirect(&error_redirect(
                    first,
                    "redirect_uri_mismatch",
                    "The redirect_uri MUST match the registered callback URL for this application.",
                    "#redirect-uri-mismatch",
                    state.as_deref(),
                ))));
            }
            None => (first.clone(), false),
        };
        let code_challenge = field(params, "code_challenge").map(ToOwned::to_owned);
        let method = field(params, "code_challenge_method");
        if (code_challenge.is_some() || method.is_some()) && (method != Some("S256") || code_challenge.is_none()) {
            return Err(Box::new(page(
                StatusCode::BAD_REQUEST,
                "Bad request",
                None,
                "<p><code>code_challenge</code> and <code>code_challenge_method=S256</code> go together; \
                 the <code>plain</code> method is not supported.</p>",
            )));
        }
        Ok(AuthorizeRequest {
            redirect_uri,
            named_redirect,
            state,
            code_challenge,
        })
    }

    /// `GET /login/oauth/authorize`: sign in if needed, then ask once; redirect with a code.
    pub(crate) fn authorize_page(&self, headers: &http::HeaderMap, path: &str, query: Option<&str>) -> Response<Body> {
        let params = parse_form(query.unwrap_or(""));
        let request = match self.check_authorize(&params) {
            Ok(r) => r,
            Err(response) => return *response,
        };
        let Some(user) = self.signed_in(headers) else {
            let here = format!("{path}?{}", query.unwrap_or(""));
            let mut to = vec![("return_to", here.as_str())];
            if let Some(login) = field(&params, "login") {
                to.push(("login", login));
            }
            return redirect(&with_query("/login", &to));
        };
        if self.state().authorized.contains(&user.login) {
            return redirect(&self.issue_code(&user.login, &request));
        }
        let slug = &self.config().app_slug;
        let mut form = String::new();
        for key in [
            "client_id",
            "redirect_uri",
            "state",
            "code_challenge",
            "code_challenge_method",
        ] {
            if let Some(value) = field(&params, key) {
                form.push_str(&hidden(key, value));
            }
        }
        form.push_str(&hidden("authenticity_token", &user.csrf));
        let body = format!(
            "<p><strong>{slug}</strong> by fakehub wants to act on your behalf, within the repositories its \
             installations can reach.</p>\n<p>Signed in as <strong>{login}</strong>. Authorizing will redirect \
             to <code id=\"redirect-uri\">{redirect}</code>.</p>\n\
             <form method=\"post\" action=\"/login/oauth/authorize\" id=\"authorize-form\">{form}\
             <button type=\"submit\" name=\"authorize\" value=\"1\" id=\"js-oauth-authorize-btn\">Authorize {slug}</button> \
             <button type=\"submit\" name=\"authorize\" value=\"0\" id=\"cancel\">Cancel</button></form>",
            slug = esc(slug),
            login = esc(&user.login),
            redirect = esc(&request.redirect_uri),
        );
        page(
            StatusCode::OK,
            &format!("Authorize {}", self.config().app_slug),
            Some(&user.login),
            &body,
        )
    }

    /// `POST /login/oauth/authorize`: the user's answer.
    pub(crate) async fn authorize_answer(&self, req: Request<Incoming>) -> Response<Body> {
        let headers = req.headers().clone();
        let form = match read_form(req).await {
            Ok(form) => form,
            Err(response) => return response,
        };
        let request = match self.check_authorize(&form) {
            Ok(r) => r,
            Err(response) => return *response,
        };
        let Some(user) = self.signed_in(&headers) else {
            return redirect("/login");
        };
        if field(&form, "authenticity_token") != Some(user.csrf.as_str()) {
            return forbidden_form();
        }
        if field(&form, "authorize") != Some("1") {
            return redirect(&error_redirect(
                &request.redirect_uri,
                "access_denied",
                "The user has denied your application access.",
                "#access-denied",
                request.state.as_deref(),
            ));
        }
        self.state().authorized.insert(user.login.clone());
        redirect(&self.issue_code(&user.login, &request))
    }

    /// A fresh code for `login`, and where to send the browser with it.
    fn issue_code(&self, login: &str, request: &AuthorizeRequest) -> String {
        let code = random_hex(20);
        let issued_at = self.now();
        self.state().codes.push(OAuthCode {
            code: code.clone(),
            login: login.to_owned(),
            redirect_uri: request.named_redirect.then(|| request.redirect_uri.clone()),
            code_challenge: request.code_challenge.clone(),
            issued_at,
            used: false,
        });
        let mut pairs = vec![("code", code.as_str())];
        if let Some(state) = &request.state {
            pairs.push(("state", state));
        }
        with_query(&request.redirect_uri, &pairs)
    }

    /// `POST /login/oauth/access_token`: exchange a code. Errors are 200 with an `error` field, as GitHub does.
    pub(crate) async fn access_token(&self, query: Option<&str>, req: Request<Incoming>) -> Response<Body> {
        let wants_json = req
            .headers()
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("json"));
        let body = match read_json_body(req).await {
            Ok(b) => b,
            Err(response) => return response,
        };
        let mut params = parse_form(query.unwrap_or(""));
        match serde_json::from_slice::<Value>(&body) {
            Ok(Value::Object(map)) => params.extend(map.into_iter().filter_map(|(k, v)| match v {
                Value::String(s) => Some((k, s)),
                Value::Number(n) => Some((k, n.to_string())),
                _ => None,
            })),
            _ => params.extend(parse_form(&String::from_utf8_lossy(&body))),
        }
        let answer = match self.exchange(&params) {
            Ok(token) => json!({"access_token": token, "token_type": "bearer", "scope": ""}),
            Err((error, description, anchor)) => json!({
                "error": error,
                "error_description": description,
                "error_uri": format!("https://docs.github.com{}{anchor}", if error == "redirect_uri_mismatch" { TROUBLESHOOT_AUTHORIZE } else { TROUBLESHOOT_TOKEN }),
            }),
        };
        token_response(&answer, wants_json)
    }

    fn exchange(&self, params: &[(String, String)]) -> Result<String, (&'static str, &'static str, &'static str)> {
        const BAD_CODE: (&str, &str, &str) = (
            "bad_verification_code",
            "The code passed is incorrect or expired.",
            "#bad-verification-code",
        );
        const MISMATCH: (&str, &str, &str) = (
            "redirect_uri_mismatch",
            "The redirect_uri MUST match the registered callback URL for this application.",
            "#redirect-uri-mismatch2",
        );
        let config = self.config();
        if field(params, "client_id") != Some(config.client_id.as_str())
            || field(params, "client_secret") != Some(config.client_secret.as_str())
        {
            return Err((
                "incorrect_client_credentials",
                "The client_id and/or client_secret passed are incorrect.",
                "#incorrect-client-credentials",
            ));
        }
        let now = self.now();
        let mut state = self.state();
        let code = field(params, "code").unwrap_or("");
        let Some(issued) = state.codes.iter_mut().find(|c| !code.is_empty() && c.code == code) else {
            return Err(BAD_CODE);
        };
        let expired = now
            .duration_since(issued.issued_at)
            .is_ok_and(|age| age > CODE_LIFETIME);
        if issued.used || expired {
            return Err(BAD_CODE);
        }
        if let Some(uri) = field(params, "redirect_uri") {
            let registered = config.callback_urls.iter().any(|c| c == uri);
            if !registered || issued.redirect_uri.as_deref().is_some_and(|named| named != uri) {
                return Err(MISMATCH);
            }
        }
        if let Some(challenge) = &issued.code_challenge {
            let verifier = field(params, "code_verifier").unwrap_or("");
            if URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes())) != *challenge {
                return Err(BAD_CODE);
            }
        }
        issued.used = true;
        let login = issued.login.clone();
        let token = format!("ghu_{}", random_alphanumeric(36));
        state.user_tokens.push(UserToken {
            token: token.clone(),
            login,
        });
        Ok(token)
    }
}

fn sign_in_form(status: StatusCode, return_to: &str, login: &str, problem: Option<&str>) -> Response<Body> {
    let problem = problem.map_or_else(String::new, |p| {
        format!("<p id=\"flash-error\" role=\"alert\"><strong>{}</strong></p>\n", esc(p))
    });
    let body = format!(
        "{problem}<form method=\"post\" action=\"/session\" id=\"sign-in-form\">{return_to}\n\
         <p><label for=\"login_field\">Username</label><br>\
         <input type=\"text\" id=\"login_field\" name=\"login\" value=\"{login}\" autocomplete=\"username\" autofocus></p>\n\
         <p><label for=\"password\">Password</label><br>\
         <input type=\"password\" id=\"password\" name=\"password\" autocomplete=\"current-password\"></p>\n\
         <p><button type=\"submit\" id=\"sign-in\" name=\"commit\" value=\"Sign in\">Sign in</button></p>\n</form>",
        return_to = hidden("return_to", return_to),
        login = esc(login),
    );
    page(status, "Sign in to fakehub", None, &body)
}

pub(crate) fn forbidden_form() -> Response<Body> {
    page(
        StatusCode::UNPROCESSABLE_ENTITY,
        "Form expired",
        None,
        "<p>The form's authenticity token is missing or stale. Go back, reload the page and try again.</p>",
    )
}

/// Only paths on fakehub itself: never an open redirect.
fn safe_return_to(asked: Option<&str>) -> String {
    match asked {
        Some(path) if path.starts_with('/') && !path.starts_with("//") && !path.contains('\\') => path.to_owned(),
        _ => "/settings/installations".to_owned(),
    }
}

fn error_redirect(base: &str, error: &str, description: &str, anchor: &str, state: Option<&str>) -> String {
    let uri = format!("{TROUBLESHOOT_AUTHORIZE}{anchor}");
    let mut pairs = vec![
        ("error", error),
        ("error_description", description),
        ("error_uri", uri.as_str()),
    ];
    if let Some(state) = state {
        pairs.push(("state", state));
    }
    with_query(base, &pairs)
}

/// JSON with `Accept: application/json`; otherwise GitHub's default, form-encoded.
fn token_response(answer: &Value, json: bool) -> Response<Body> {
    let (content_type, body) = if json {
        (
            "application/json; charset=utf-8",
            serde_json::to_string(answer).expect("JSON values serialise"),
        )
    } else {
        let mut out = form_urlencoded::Serializer::new(String::new());
        if let Value::Object(map) = answer {
            for (k, v) in map {
                out.append_pair(k, v.as_str().unwrap_or_default());
            }
        }
        ("application/x-www-form-urlencoded; charset=utf-8", out.finish())
    };
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, content_type)
        .body(full(body))
        .expect("static headers are valid")
}

/// A form body (`application/x-www-form-urlencoded`).
pub(crate) async fn read_form(req: Request<Incoming>) -> Result<Vec<(String, String)>, Response<Body>> {
    let body = read_json_body(req).await?;
    Ok(parse_form(&String::from_utf8_lossy(&body)))
}

/// `len` random hex digits (`len` even).
pub(crate) fn random_hex(len: usize) -> String {
    let mut bytes = vec![0u8; len / 2];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

fn random_alphanumeric(len: usize) -> String {
    rand::thread_rng()
        .sample_iter(rand::distributions::Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}
