//! Signing in and connecting through GitHub's OAuth web flow (PKCE), and the App's Setup URL.

use std::time::Duration;

use axum::extract::Query;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use mint_github::UserToken;
use serde::Deserialize;

use super::respond::{WebError, internal, redirect};
use super::session::{Browser, CsrfForm, CsrfOnly, WebPage, member, session_cookie, start_session};
use super::{FLOW_TTL, Web};
use crate::model::{Connection, ConnectionStatus, Purpose, now};
use crate::secrets::{random_token, sha256_hex};
use crate::state::AppState;
use crate::store::{Choice, OAuthState};

/// A single-use OAuth state bound to this browser's cookie, and the PKCE verifier that goes with it.
pub(crate) async fn new_state(state: &AppState, web: &Web, flow: OAuthState) -> Result<(String, String), WebError> {
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

pub(crate) fn flow(
    binding: &str,
    purpose: Purpose,
    product: Option<&str>,
    hint: Option<u64>,
    next: Option<&str>,
) -> OAuthState {
    OAuthState {
        session_sha256: binding.to_owned(),
        purpose,
        product_id: product.map(str::to_owned),
        installation_hint: hint,
        next_path: next.map(str::to_owned),
        created_at: now(),
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct LoginQuery {
    next: Option<String>,
}

/// Sign in with GitHub: a single-use state bound to this browser's cookie (set now if it has none: a
/// random value with no row anywhere, so anonymous requests create no session), then GitHub's authorize
/// page. Limited per client address, since each one writes a state.
pub(crate) async fn login(page: WebPage, Query(q): Query<LoginQuery>) -> Response {
    let (state, browser, web) = (&page.state, &page.browser, page.web());
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
    let (set_cookie, binding) = if let Some(hash) = browser.binding.clone() {
        (None, hash)
    } else {
        let value = random_token();
        (session_cookie(&value, FLOW_TTL), sha256_hex(value.as_bytes()))
    };
    let (token, verifier) = match new_state(state, web, flow(&binding, Purpose::SignIn, None, None, Some(&next))).await
    {
        Ok(t) => t,
        Err(e) => return e.into_response(),
    };
    let mut response = redirect(&web.authorize_url(&token, &verifier));
    if let Some(cookie) = set_cookie {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}

pub(crate) async fn logout(CsrfForm { page, .. }: CsrfForm<CsrfOnly>) -> Response {
    let (state, browser, web) = (&page.state, &page.browser, page.web());
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

#[derive(Debug, Deserialize)]
pub(crate) struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// Where GitHub sends the browser back after authorizing: the state must be one this browser's session
/// was given, unused and fresh; then the code becomes a user token for the rest of this request.
pub(crate) async fn oauth_callback(page: WebPage, Query(q): Query<CallbackQuery>) -> Response {
    let (state, browser, web) = (&page.state, &page.browser, page.web());
    match callback(state, web, browser, q).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

pub(crate) async fn callback(
    state: &AppState,
    web: &Web,
    browser: &Browser,
    q: CallbackQuery,
) -> Result<Response, WebError> {
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
    tracing::info!(login = %user.login, purpose = flow.purpose.as_str(), "signed in with GitHub");
    let mut response = match (flow.purpose, flow.product_id.as_deref()) {
        (Purpose::Connect, Some(product)) => {
            let browser = Browser {
                binding: Some(session.clone()),
                session_sha256: Some(session.clone()),
                login: Some(user.login.to_ascii_lowercase()),
                user_id: Some(user.id),
                ..browser.clone()
            };
            let here = format!("/products/{product}/integrations");
            match member(state, web, &browser, product, &here).await {
                Ok(_) => offer_choices(state, web, &browser, product, &user_token).await?,
                Err(r) => r,
            }
        }
        _ => redirect(&web.next_path(flow.next_path.as_deref())),
    };
    response.headers_mut().insert(header::SET_COOKIE, cookie);
    Ok(response)
}

/// Ask GitHub, as the user, which installations of this App they reach and where they can push; keep that
/// as what this session may bind for ten minutes, and show the chooser. Only a first connect (the product
/// never had a repository) where exactly one repository can be chosen binds at once, and the card says so:
/// a product that has a repository is never moved without its person choosing.
pub(crate) async fn offer_choices(
    state: &AppState,
    web: &Web,
    browser: &Browser,
    product: &str,
    token: &UserToken,
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
    let session = browser
        .session_sha256
        .as_deref()
        .expect("offered to a signed-in session");
    let expires = now() + i64::try_from(FLOW_TTL.as_secs()).expect("minutes");
    state
        .store
        .put_choices(session, product, &choices, expires)
        .await
        .map_err(|e| internal(web, "remember your choices", &e))?;
    let ours = installations.iter().any(|i| i.app_id == web.app_id);
    if !ours {
        // Nothing installed yet: straight to GitHub's install page.
        let (token, _) = new_state(state, web, flow(session, Purpose::Install, Some(product), None, None)).await?;
        return Ok(redirect(&web.install_url(&token)));
    }
    let first_connect = match state.store.connection(product).await {
        Ok(c) => c.is_none_or(|c| c.repository_id.is_none()),
        Err(e) => return Err(internal(web, "read the connection", &e)),
    };
    if first_connect && let [only] = choices.as_slice() {
        return bind_choice(state, web, browser, product, only.clone(), true).await;
    }
    if choices.is_empty() {
        return Ok(redirect(&format!(
            "/products/{product}/github/choose?flash=none-listed"
        )));
    }
    Ok(redirect(&format!("/products/{product}/github/choose")))
}

#[derive(Debug, Deserialize)]
pub(crate) struct SetupQuery {
    installation_id: Option<String>,
    setup_action: Option<String>,
    state: Option<String>,
}

/// The App's Setup URL. GitHub says its `installation_id` can be spoofed, and anyone can send this: without
/// our state, bound to this browser, a visit changes nothing and asks GitHub nothing (webhooks report what
/// changed on GitHub). With it, the id only becomes a hint for the verified flow.
pub(crate) async fn setup(page: WebPage, Query(q): Query<SetupQuery>) -> Response {
    let (state, browser, web) = (&page.state, &page.browser, page.web());
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
        .filter(|f| f.session_sha256 == binding && f.purpose == Purpose::Install && now() - f.created_at < max_age)
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
        state,
        web,
        browser,
        &product,
        &format!("/products/{product}/integrations"),
    )
    .await
    {
        return r;
    }
    let session = browser.session_sha256.as_deref().expect("a member has a session");
    match q.setup_action.as_deref() {
        Some("install") => {
            match new_state(state, web, flow(session, Purpose::Connect, Some(&product), hint, None)).await {
                Ok((token, verifier)) => redirect(&web.authorize_url(&token, &verifier)),
                Err(e) => e.into_response(),
            }
        }
        Some("request") => {
            // Which account's owners were asked, as GitHub records it (never as the browser says): the
            // approval webhook is matched against it.
            let account = requested_account(state, browser.user_id).await;
            let pending = Connection {
                status: ConnectionStatus::PendingApproval,
                reason: "The installation was requested. It waits for an owner of the organization to approve it on GitHub; the card offers Connect GitHub once they do.".to_owned(),
                account_login: account,
                ..Connection::not_connected("", now())
            };
            // A working connection is not given up for a request that may never be approved.
            let active =
                matches!(state.store.connection(&product).await, Ok(Some(c)) if c.status == ConnectionStatus::Active);
            if !active && let Err(e) = state.store.put_connection(&product, &pending, &browser.actor()).await {
                return internal(web, "record the request", &e).into_response();
            }
            redirect(&format!("/products/{product}/integrations?flash=requested"))
        }
        _ => {
            if let Some(id) = hint {
                let state = state.clone();
                tokio::spawn(async move { crate::sync::refresh_installation(&state, id).await });
            }
            redirect(&format!("/products/{product}/integrations?flash=updated"))
        }
    }
}

/// The account of the newest pending request to install the App that this user made, as GitHub lists it.
pub(crate) async fn requested_account(state: &AppState, user_id: Option<u64>) -> Option<String> {
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

/// Bind a verified (installation, repository) pair, after the App side confirms it in the installation's turn.
/// `only`: it was bound because it was the one repository to choose from, and the card says so.
pub(crate) async fn bind_choice(
    state: &AppState,
    web: &Web,
    browser: &Browser,
    product: &str,
    choice: Choice,
    only: bool,
) -> Result<Response, WebError> {
    let before = state
        .store
        .connection(product)
        .await
        .map_err(|e| internal(web, "read the connection", &e))?;
    let permit = state.turn(choice.installation_id, product).await.map_err(|refused| {
        let wait = crate::http::not_now(refused, choice.installation_id);
        WebError::new(
            web,
            StatusCode::SERVICE_UNAVAILABLE,
            "Not connected yet",
            format!(
                "GitHub asked mint to slow down, so nothing was bound yet. Try again shortly ({}).",
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
            format!(
                "GitHub refused the connection, so nothing was bound. Check the App's repository access on GitHub and try again. GitHub said: {e}"
            ),
        )
    })?;
    let connection = verified.connection(now());
    let queued = state
        .store
        .put_connection(product, &connection, &browser.actor())
        .await
        .map_err(|e| internal(web, "save the connection", &e))?;
    if queued > 0 {
        // Change repository: the old repository's tokens die now.
        crate::revoker::settle(state, crate::store::Whose::Product(product)).await;
    }
    state
        .store
        .clear_choices(browser.session_sha256.as_deref().unwrap_or_default(), product)
        .await
        .map_err(|e| internal(web, "forget your choices", &e))?;
    tracing::info!(
        product,
        installation = choice.installation_id,
        repository_id = choice.repository_id,
        "bound through the connect flow"
    );
    let was = before
        .as_ref()
        .filter(|c| c.status == ConnectionStatus::Active)
        .and_then(|c| c.repository_id);
    let flash = match was {
        _ if only => "connected-only",
        Some(r) if r == choice.repository_id => "unchanged",
        Some(_) => "changed",
        None => "connected",
    };
    Ok(redirect(&format!("/products/{product}/integrations?flash={flash}")))
}
