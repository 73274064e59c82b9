//! The pages: the product list, the Integrations card, the repository chooser, and the forms that change a
//! connection.

use std::sync::Arc;
use std::time::Duration;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use http::header;
use serde::Deserialize;

use super::AGENT_BRANCH_PREFIX;
use super::oauth::{bind_choice, flow, new_state};
use super::respond::{internal, redirect, render};
use super::session::{Browser, CsrfForm, CsrfOnly, HasCsrf, WebPage, member, member_page, sign_in_redirect};
use crate::model::{Connection, ConnectionStatus, Purpose, now};
use crate::state::AppState;
use crate::store::Choice;

// ---- pages -----------------------------------------------------------------------------------------------

#[derive(Template)]
#[template(path = "products.html")]
pub(crate) struct ProductsPage<'a> {
    login: Option<&'a str>,
    csrf: &'a str,
    flash: Option<&'a str>,
    flash_error: bool,
    products: Vec<(String, String)>,
}

pub(crate) async fn home(page: WebPage) -> Response {
    let (state, browser, web) = (&page.state, &page.browser, page.web());
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

pub(crate) async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("../../static/mint.css"),
    )
        .into_response()
}

#[derive(Debug, Deserialize)]
pub(crate) struct FlashQuery {
    flash: Option<String>,
}

/// Fixed sentences only: a query parameter never becomes page text.
pub(crate) fn flash_text(code: Option<&str>) -> Option<(&'static str, bool)> {
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
pub(crate) struct IntegrationsPage<'a> {
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

pub(crate) async fn integrations(
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
pub(crate) async fn agent_pulls(
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
pub(crate) async fn connect(Path(id): Path<String>, CsrfForm { page, .. }: CsrfForm<CsrfOnly>) -> Response {
    start_flow(&page, &id, Purpose::Connect).await
}

/// "Install the App on another account": GitHub's install page, with a state the Setup URL brings back.
pub(crate) async fn install(Path(id): Path<String>, CsrfForm { page, .. }: CsrfForm<CsrfOnly>) -> Response {
    start_flow(&page, &id, Purpose::Install).await
}

/// Sign in with GitHub for this product (Connect) or go to GitHub's install page (Install), with a state
/// the callback or the Setup URL brings back.
pub(crate) async fn start_flow(page: &WebPage, product: &str, purpose: Purpose) -> Response {
    let (state, browser, web) = (&page.state, &page.browser, page.web());
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
        Ok((token, _)) if purpose == Purpose::Install => redirect(&web.install_url(&token)),
        Ok((token, verifier)) => redirect(&web.authorize_url(&token, &verifier)),
        Err(e) => e.into_response(),
    }
}

#[derive(Template)]
#[template(path = "choose.html")]
pub(crate) struct ChoosePage<'a> {
    login: Option<&'a str>,
    csrf: &'a str,
    flash: Option<&'a str>,
    flash_error: bool,
    product_id: &'a str,
    product_name: &'a str,
    choices: Vec<Choice>,
}

pub(crate) async fn choose(
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

impl HasCsrf for BindForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct BindForm {
    pub(crate) csrf: String,
    pub(crate) choice: String,
}

/// "Use this repository": bind only what GitHub showed this session's user can push to, after the App side
/// confirms the installation can mint for it.
pub(crate) async fn bind(Path(id): Path<String>, CsrfForm { page, form }: CsrfForm<BindForm>) -> Response {
    let (state, browser, web) = (&page.state, &page.browser, page.web());
    if let Err(r) = member(state, web, browser, &id, &format!("/products/{id}/integrations")).await {
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
    match bind_choice(state, web, browser, &id, choice).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

/// "Disconnect": this product's row only. The App stays installed; no code is touched.
pub(crate) async fn disconnect(Path(id): Path<String>, CsrfForm { page, .. }: CsrfForm<CsrfOnly>) -> Response {
    let (state, browser, web) = (&page.state, &page.browser, page.web());
    let (login, _) = match member(state, web, browser, &id, &format!("/products/{id}/integrations")).await {
        Ok(m) => m,
        Err(r) => return r,
    };
    let connection = Connection::not_connected(
        &format!("GitHub was disconnected by {login}: connect it again to run coding tasks"),
        now(),
    );
    if let Err(e) = state.store.put_connection(&id, &connection, &browser.actor()).await {
        return internal(web, "disconnect", &e).into_response();
    }
    // The sandboxes' tokens die now, at GitHub, whichever replica minted them.
    let pending = crate::revoker::settle(state, crate::store::Whose::Product(&id)).await;
    tracing::info!(product = %id, %login, pending, "disconnected from the Integrations page");
    redirect(&format!("/products/{id}/integrations?flash=disconnected"))
}
