//! The pages: the product list, the Integrations card, the repository chooser, and the forms that change a
//! connection.

use std::sync::Arc;
use std::time::Duration;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, header};
use serde::Deserialize;

use super::AGENT_BRANCH_PREFIX;
use super::oauth::{bind_choice, flow, new_state};
use super::respond::{flash_cookie, flash_of, internal, redirect, redirect_with_flash, render};
use super::session::{Browser, CsrfForm, CsrfOnly, HasCsrf, WebPage, member, member_page, sign_in_redirect};
use crate::model::{Connection, ConnectionStatus, Purpose, now, rfc3339};
use crate::state::AppState;
use crate::store::{Action, Actor, AuditEvent, Landmark};

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
    /// `off`: the card does not reload itself (WCAG 2.2.1: a person can turn a timed refresh off).
    live: Option<String>,
}

/// Fixed sentences only: a query parameter or cookie never becomes page text.
pub(crate) fn flash_text(code: Option<&str>) -> Option<(&'static str, bool)> {
    Some(match code? {
        "connected" => (
            "GitHub is connected. Coding tasks of this product now use the repository below.",
            false,
        ),
        "connected-only" => (
            "GitHub is connected to the only repository you can push to there, so it was chosen for you. To use another one, choose Change repository.",
            false,
        ),
        "changed" => (
            "The repository was changed. Coding tasks now use the repository below, and their tokens for the previous one were revoked.",
            false,
        ),
        "unchanged" => ("Nothing changed: coding tasks still use the repository below.", false),
        "disconnected" => (
            "GitHub is disconnected for this product. Coding tasks stop until it is connected again. The App stays installed on GitHub.",
            false,
        ),
        "requested" => (
            "Your request was sent to GitHub. An owner of the organization must approve it; this card shows when they do.",
            false,
        ),
        "updated" => ("The card shows what GitHub reports now.", false),
        "not-pushable" => (
            "You were not shown that repository as one you can push to, so nothing was bound. Choose one from the list.",
            true,
        ),
        "expired" => (
            "The list of repositories expired (it is kept for 10 minutes), so nothing was bound. Reload repositories to choose again.",
            true,
        ),
        "choose-one" => ("Choose a repository first: nothing was bound.", true),
        "none-listed" => (
            "GitHub lists no repository you can push to in an installation of the App that you can reach.",
            true,
        ),
        _ => return None,
    })
}

/// `?flash=CODE` on a page's address becomes a one-shot cookie and a redirect to the address without it, so
/// a reload or a bookmark never shows the message again.
fn flash_redirect(path: &str, code: Option<&str>) -> Option<Response> {
    let code = code?;
    Some(if flash_text(Some(code)).is_some() {
        redirect_with_flash(path, code)
    } else {
        redirect(path)
    })
}

/// The page, and the one-shot message it showed cleared.
fn with_flash_cleared(mut response: Response, shown: bool) -> Response {
    if shown && let Some(clear) = flash_cookie("") {
        response.headers_mut().append(header::SET_COOKIE, clear);
    }
    response
}

/// How long ago, in words.
pub(crate) fn ago(then: i64, now: i64) -> String {
    let s = (now - then).max(0);
    match s {
        0..60 => "just now".to_owned(),
        60..120 => "1 minute ago".to_owned(),
        120..3600 => format!("{} minutes ago", s / 60),
        3600..7200 => "1 hour ago".to_owned(),
        7200..86_400 => format!("{} hours ago", s / 3600),
        86_400..172_800 => "yesterday".to_owned(),
        _ => format!("{} days ago", s / 86_400),
    }
}

/// Who did it, in words: a person's GitHub login, or what acted for them.
fn who(actor: &Actor) -> String {
    match actor {
        Actor::User { login, .. } => login.clone(),
        Actor::Admin => "The platform".to_owned(),
        Actor::GitHub => "GitHub".to_owned(),
        Actor::Sandbox => "A sandbox".to_owned(),
        Actor::Server => "mint".to_owned(),
    }
}

fn landmark_who(l: &Landmark) -> String {
    match (l.actor.as_str(), l.login.as_deref()) {
        ("user", Some(login)) => login.to_owned(),
        ("admin", _) => "the platform".to_owned(),
        ("github", _) => "GitHub".to_owned(),
        _ => "mint".to_owned(),
    }
}

/// An audit event as a line of the card's Activity list: who did what, with no internal id.
fn activity_line(e: &AuditEvent) -> String {
    let who = who(&e.actor);
    let repository = e.repository.as_deref().unwrap_or("the repository");
    let text = |key: &str| {
        e.detail
            .get(key)
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default()
    };
    match e.action {
        Action::Connected => format!("{who} connected {repository}."),
        Action::Reconnected => format!("{who} reconnected {repository}."),
        Action::RepositoryChanged => format!("{who} changed the repository from {} to {repository}.", text("from")),
        // GitHub's side (an approval, an uninstall) ends a connection with its reason; a person disconnects.
        Action::Disconnected => match (&e.actor, text("reason")) {
            (Actor::User { .. } | Actor::Admin, _) | (_, "") => format!("{who} disconnected GitHub."),
            (_, reason) => sentence(reason),
        },
        Action::ApprovalRequested => match text("account") {
            "" => format!("{who} asked an organization owner to approve the App."),
            account => format!("{who} asked an owner of {account} to approve the App."),
        },
        Action::StatusChanged => match text("status") {
            "active" => format!("{repository} works again."),
            "suspended" => "The App was suspended on GitHub.".to_owned(),
            "repo_removed" => format!("{repository} was removed from the App's access on GitHub."),
            "installation_gone" => "The App was uninstalled on GitHub.".to_owned(),
            "pending_approval" => "The App waits for an owner's approval.".to_owned(),
            _ => "GitHub is not connected.".to_owned(),
        },
        Action::RepositoryRenamed => format!("GitHub reported {} renamed to {repository}.", text("from")),
        Action::SandboxCreated => format!("{who} started a sandbox."),
        Action::SandboxTornDown => format!("{who} stopped a sandbox."),
        Action::TokenMinted => format!("A sandbox got a token for {repository}."),
        Action::TokenRevoked => format!("A sandbox's token for {repository} was revoked."),
        Action::TokenNotRevoked => {
            format!("A sandbox's token for {repository} could not be revoked; it expires on its own.")
        }
    }
}

/// One line of the card's Activity list.
pub(crate) struct ActivityLine {
    at: String,
    ago: String,
    text: String,
}

/// A pull request on the card.
pub(crate) struct PullLine {
    repository: String,
    /// Not the repository the product uses now: opened before a change of repository.
    earlier: bool,
    url: String,
    number: u64,
    title: String,
    state: &'static str,
    state_class: &'static str,
    review: Option<&'static str>,
    ticket: Option<String>,
    /// (how long ago, RFC 3339) it was opened, when the webhooks told it.
    opened: Option<(String, String)>,
    branch: String,
    base: String,
}

/// A sentence of the card, and an optional detail for support (ids live there only).
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
    /// What the state is and what to do next, for a person.
    message: String,
    /// The stored reason and ids, for support.
    support: Option<String>,
    account: Option<&'a str>,
    account_url: Option<String>,
    account_type: Option<&'a str>,
    repository: Option<&'a str>,
    repository_url: Option<String>,
    connected_by: Option<(String, String, String)>,
    requested: Option<(String, String, String)>,
    show_connect: bool,
    connect_label: &'a str,
    connect_hint: Option<&'a str>,
    show_change: bool,
    manage_url: Option<&'a str>,
    unsuspend_url: Option<&'a str>,
    show_disconnect: bool,
    show_grants: bool,
    active: bool,
    branch_prefix: &'a str,
    working: usize,
    sandboxes: i64,
    last_token: Option<(String, String)>,
    activity: Vec<ActivityLine>,
    pulls: Vec<PullLine>,
    refresh: Option<u32>,
    /// Work is going on but the person turned the reloading off.
    paused: bool,
}

/// How often a live card reloads itself (no JavaScript): while a sandbox holds a token or an owner's
/// approval is awaited.
pub(crate) const REFRESH_SECONDS: u32 = 10;

pub(crate) async fn integrations(
    State(state): State<Arc<AppState>>,
    browser: Browser,
    Path(id): Path<String>,
    Query(q): Query<FlashQuery>,
    headers: HeaderMap,
) -> Response {
    use ConnectionStatus as S;
    if let Some(r) = flash_redirect(&format!("/products/{id}/integrations"), q.flash.as_deref()) {
        return r;
    }
    let (web, login, name) = match member_page(&state, &browser, &id).await {
        Ok(m) => m,
        Err(r) => return r,
    };
    let connection = match state.store.connection(&id).await {
        Ok(c) => c.unwrap_or_else(|| Connection::not_connected("GitHub is not connected", now())),
        Err(e) => return internal(web, "read the connection", &e).into_response(),
    };
    let story = match story(&state, &id, &connection).await {
        Ok(s) => s,
        Err(e) => return internal(web, "read what the coding tasks did", &e).into_response(),
    };
    let (label, badge) = badge(connection.status);
    let account = connection.account_login.as_deref();
    let repository = connection.repository.as_deref();
    let message = card_message(&connection, &name, &story);
    let support = support_detail(&connection);
    let github = web.github_url.trim_end_matches('/');
    let pulls = match card_pulls(&state, &id, &connection).await {
        Ok(p) => p,
        Err(e) => return internal(web, "read the product's repositories", &e).into_response(),
    };
    let flash_code = flash_of(&headers);
    let flash = flash_text(flash_code.as_deref());
    let pending = connection.status == S::PendingApproval;
    let live = story.working > 0 || pending;
    let paused = q.live.as_deref() == Some("off");
    let response = render(
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
            message,
            support,
            account,
            account_url: account.map(|a| format!("{github}/{a}")),
            account_type: connection.account_type.as_deref().map(|k| {
                if k == "Organization" {
                    "organization"
                } else {
                    "personal account"
                }
            }),
            repository,
            repository_url: repository.map(|r| format!("{github}/{r}")),
            connected_by: story.connected.filter(|_| connection.repository.is_some()),
            requested: story.requested.filter(|_| pending),
            show_connect: matches!(connection.status, S::NotConnected | S::InstallationGone),
            connect_label: if connection.status == S::InstallationGone {
                "Reconnect"
            } else {
                "Connect GitHub"
            },
            connect_hint: pending
                .then_some("Asked an owner already? You can request again, or install on an account you own."),
            show_change: matches!(connection.status, S::Active | S::RepoRemoved),
            manage_url: connection
                .installation_url
                .as_deref()
                .filter(|_| matches!(connection.status, S::Active | S::RepoRemoved)),
            unsuspend_url: connection
                .installation_url
                .as_deref()
                .filter(|_| connection.status == S::Suspended),
            show_disconnect: connection.installation_id.is_some() && connection.status != S::NotConnected,
            show_grants: true,
            active: connection.status == S::Active,
            branch_prefix: AGENT_BRANCH_PREFIX,
            working: story.working,
            sandboxes: story.sandboxes,
            last_token: story.last_token,
            activity: story.activity,
            pulls,
            refresh: (live && !paused).then_some(REFRESH_SECONDS),
            paused: live && paused,
        },
    );
    with_flash_cleared(response, flash_code.is_some())
}

/// The badge's words and class.
fn badge(status: ConnectionStatus) -> (&'static str, &'static str) {
    use ConnectionStatus as S;
    match status {
        S::Active => ("Connected", "badge-active"),
        S::PendingApproval => ("Waiting for approval", "badge-warn"),
        S::Suspended => ("Suspended", "badge-bad"),
        S::RepoRemoved => ("Repository removed", "badge-bad"),
        S::InstallationGone => ("Uninstalled", "badge-bad"),
        S::NotConnected => ("Not connected", "badge-off"),
    }
}

/// What the connection's state is and what to do next, for a person.
fn card_message(connection: &Connection, name: &str, story: &Story) -> String {
    use ConnectionStatus as S;
    let account = connection.account_login.as_deref();
    let repository = connection.repository.as_deref();
    let on = |what: Option<&str>| what.unwrap_or("the account").to_owned();
    match connection.status {
        S::Active => format!(
            "Coding tasks of {name} push branches named {AGENT_BRANCH_PREFIX}* to {} and open pull requests there for your review.",
            on(repository)
        ),
        S::PendingApproval => format!(
            "Ask an owner of {} to approve the App on GitHub. Once they do, this card offers Connect GitHub, and one click finishes.",
            connection
                .account_login
                .as_deref()
                .or(story.requested_account.as_deref())
                .unwrap_or("the organization")
        ),
        S::Suspended => format!(
            "The App is suspended on {}, so coding tasks get no access. Unsuspend it on GitHub to resume.",
            on(account)
        ),
        S::RepoRemoved => format!(
            "{} was removed from the App's repository access on GitHub, so coding tasks get no access. Add it back with Manage repositories, or change the repository.",
            on(repository)
        ),
        S::InstallationGone => format!(
            "The App was uninstalled from {} on GitHub, so coding tasks get no access. Reconnect to install it again.",
            on(account)
        ),
        S::NotConnected if connection.reason.starts_with("GitHub is not connected") || connection.reason.is_empty() => {
            "Connect GitHub so that this product's coding tasks can work on one of your repositories.".to_owned()
        }
        S::NotConnected => sentence(&connection.reason),
    }
}

/// The stored reason and the ids support asks for: the only place the card shows them.
fn support_detail(connection: &Connection) -> Option<String> {
    use std::fmt::Write as _;
    if connection.status == ConnectionStatus::NotConnected && connection.installation_id.is_none() {
        return None;
    }
    let mut detail = sentence(&connection.reason);
    if let Some(installation) = connection
        .installation_id
        .filter(|i| !connection.reason.contains(&format!("installation {i}")))
    {
        let _ = write!(detail, " Installation {installation}");
        if let Some(r) = connection.repository_id {
            let _ = write!(detail, ", repository {r}");
        }
        detail.push('.');
    }
    Some(detail)
}

/// A stored reason as a sentence for a person: capitalised, ending with a full stop.
pub(crate) fn sentence(reason: &str) -> String {
    let reason = reason.trim().trim_end_matches('.');
    let mut chars = reason.chars();
    match chars.next() {
        Some(first) => format!("{}{}.", first.to_uppercase(), chars.as_str()),
        None => String::new(),
    }
}

/// What the card tells besides the connection: who connected it and when, the pending request, the
/// sandboxes working now, the last token, and the latest events.
struct Story {
    /// (who, how long ago, RFC 3339)
    connected: Option<(String, String, String)>,
    requested: Option<(String, String, String)>,
    requested_account: Option<String>,
    working: usize,
    sandboxes: i64,
    last_token: Option<(String, String)>,
    activity: Vec<ActivityLine>,
}

async fn story(state: &AppState, product: &str, connection: &Connection) -> Result<Story, crate::store::StoreError> {
    let now = now();
    let when = |l: &Landmark| (landmark_who(l), ago(l.at_ms / 1000, now), rfc3339(l.at_ms / 1000));
    let connected = state
        .store
        .last_event(
            product,
            &[Action::Connected, Action::Reconnected, Action::RepositoryChanged],
        )
        .await?;
    let requested = if connection.status == ConnectionStatus::PendingApproval {
        state.store.last_event(product, &[Action::ApprovalRequested]).await?
    } else {
        None
    };
    let last_token = state.store.last_event(product, &[Action::TokenMinted]).await?;
    let (sandboxes, total) = state.store.product_sandboxes(product, now, 100).await?;
    let (events, _) = state.store.audit_events(product, None, 8).await?;
    Ok(Story {
        connected: connected.as_ref().map(when),
        requested: requested.as_ref().map(when),
        requested_account: requested.and_then(|r| r.account),
        working: sandboxes.iter().filter(|s| !s.live_tokens.is_empty()).count(),
        sandboxes: total,
        last_token: last_token.map(|l| (ago(l.at_ms / 1000, now), rfc3339(l.at_ms / 1000))),
        activity: events
            .iter()
            .map(|e| ActivityLine {
                at: e.at.clone(),
                ago: ago(e.at_ms / 1000, now),
                text: activity_line(e),
            })
            .collect(),
    })
}

/// How many of the product's last repositories the card lists pull requests from.
const PULL_REPOSITORIES: usize = 3;

/// How many pull requests the card lists.
const PULL_LINES: i64 = 10;

/// The pull requests coding tasks opened in the current repository and the ones the product used before
/// it (a change of repository does not make them vanish), while connected: what the `pull_request` and
/// `pull_request_review` webhooks told (state, review, ticket, age), and any open one GitHub lists that no
/// webhook told of (an App not subscribed to those events), as open.
async fn card_pulls(
    state: &AppState,
    product: &str,
    connection: &Connection,
) -> Result<Vec<PullLine>, crate::store::StoreError> {
    let Some((installation, repository, name)) = connection.target() else {
        return Ok(Vec::new());
    };
    let mut targets = vec![(installation, repository, name.to_owned())];
    for past in state.store.last_repositories(product, PULL_REPOSITORIES).await? {
        if targets.len() < PULL_REPOSITORIES && past.repository_id != repository {
            targets.push((past.installation_id, past.repository_id, past.repository));
        }
    }
    let ids: Vec<u64> = targets.iter().map(|t| t.1).collect();
    let now = now();
    let mut lines: Vec<PullLine> = state
        .store
        .agent_pulls_in(&ids, PULL_LINES)
        .await?
        .into_iter()
        .map(|p| {
            let (label, class) = match p.state.as_str() {
                "merged" => ("Merged", "badge-merged"),
                "closed" => ("Closed", "badge-off"),
                "draft" => ("Draft", "badge-off"),
                _ => ("Open", "badge-active"),
            };
            PullLine {
                earlier: p.repository_id != repository,
                repository: p.repository,
                url: p.html_url,
                number: p.number,
                title: p.title,
                state: label,
                state_class: class,
                review: match p.review_state.as_deref() {
                    Some("approved") => Some("Approved"),
                    Some("changes_requested") => Some("Changes requested"),
                    Some("commented") => Some("Reviewed with comments"),
                    _ if p.state == "open" || p.state == "draft" => Some("Waiting for review"),
                    _ => None,
                },
                ticket: p.ticket,
                opened: Some((ago(p.opened_at, now), rfc3339(p.opened_at))),
                branch: p.head_ref,
                base: p.base_ref,
            }
        })
        .collect();
    for (installation, repository_id, name) in targets {
        for p in agent_pulls(state, product, (installation, repository_id, &name)).await {
            if lines.iter().any(|l| l.url == p.html_url) {
                continue;
            }
            lines.push(PullLine {
                repository: name.clone(),
                earlier: repository_id != repository,
                url: p.html_url,
                number: p.number,
                title: p.title,
                state: if p.draft { "Draft" } else { "Open" },
                state_class: if p.draft { "badge-off" } else { "badge-active" },
                review: None,
                ticket: None,
                opened: None,
                branch: p.head.name,
                base: p.base.name,
            });
        }
    }
    Ok(lines)
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

/// One repository in the chooser.
pub(crate) struct ChoiceLine {
    value: String,
    repository_id: u64,
    repository: String,
    account: String,
    current: bool,
    checked: bool,
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
    choices: Vec<ChoiceLine>,
    /// GitHub was asked just now and listed nothing (not: the list expired or was never loaded).
    none_listed: bool,
    /// The message already says the list expired.
    expired: bool,
    listed_until: i64,
    current: Option<&'a str>,
}

pub(crate) async fn choose(
    State(state): State<Arc<AppState>>,
    browser: Browser,
    Path(id): Path<String>,
    Query(q): Query<FlashQuery>,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = flash_redirect(&format!("/products/{id}/github/choose"), q.flash.as_deref()) {
        return r;
    }
    let (web, login, name) = match member_page(&state, &browser, &id).await {
        Ok(m) => m,
        Err(r) => return r,
    };
    let session = browser.session_sha256.as_deref().expect("a member has a session");
    let choices = match state.store.choices(session, &id, now()).await {
        Ok(c) => c,
        Err(e) => return internal(web, "read your choices", &e).into_response(),
    };
    let listed_until = match state.store.choices_expire_at(session, &id).await {
        Ok(t) => t.unwrap_or_default(),
        Err(e) => return internal(web, "read your choices", &e).into_response(),
    };
    let connection = match state.store.connection(&id).await {
        Ok(c) => c,
        Err(e) => return internal(web, "read the connection", &e).into_response(),
    };
    let current = connection
        .as_ref()
        .and_then(|c| Some((c.installation_id?, c.repository_id?)));
    let flash_code = flash_of(&headers);
    let flash = flash_text(flash_code.as_deref());
    let choices: Vec<ChoiceLine> = choices
        .into_iter()
        .map(|c| {
            let is_current = current == Some((c.installation_id, c.repository_id));
            ChoiceLine {
                value: format!("{}:{}", c.installation_id, c.repository_id),
                repository_id: c.repository_id,
                repository: c.repository,
                account: c.account_login,
                current: is_current,
                checked: is_current,
            }
        })
        .collect();
    let response = render(
        web,
        &ChoosePage {
            login: Some(&login),
            csrf: &browser.csrf,
            flash: flash.map(|f| f.0),
            flash_error: flash.is_some_and(|f| f.1),
            product_id: &id,
            product_name: &name,
            none_listed: flash_code.as_deref() == Some("none-listed"),
            expired: flash_code.as_deref() == Some("expired"),
            choices,
            listed_until,
            current: connection.as_ref().and_then(|c| c.repository.as_deref()),
        },
    );
    with_flash_cleared(response, flash_code.is_some())
}

impl HasCsrf for BindForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct BindForm {
    pub(crate) csrf: String,
    pub(crate) choice: Option<String>,
    /// When the list the form was shown from expires (unix seconds): only to say why a choice is gone.
    pub(crate) listed_until: Option<i64>,
    /// The person confirmed a change that takes access away from the current repository.
    pub(crate) confirmed: Option<String>,
}

/// "Use this repository": bind only what GitHub showed this session's user can push to, after the App side
/// confirms the installation can mint for it. Moving away from a working repository asks first.
pub(crate) async fn bind(Path(id): Path<String>, CsrfForm { page, form }: CsrfForm<BindForm>) -> Response {
    let (state, browser, web) = (&page.state, &page.browser, page.web());
    let (login, name) = match member(state, web, browser, &id, &format!("/products/{id}/integrations")).await {
        Ok(m) => m,
        Err(r) => return r,
    };
    let session = browser.session_sha256.as_deref().expect("a member has a session");
    let now = now();
    let choices = match state.store.choices(session, &id, now).await {
        Ok(c) => c,
        Err(e) => return internal(web, "read your choices", &e).into_response(),
    };
    // The list this form was shown from has ended: its rows are past their time (or the sweep took them,
    // and the form says when they were to end).
    let listed_until = match state.store.choices_expire_at(session, &id).await {
        Ok(t) => t,
        Err(e) => return internal(web, "read your choices", &e).into_response(),
    };
    let ended = |t: i64| t > 0 && t <= now;
    let expired = choices.is_empty() && (listed_until.is_some_and(ended) || form.listed_until.is_some_and(ended));
    let choose = format!("/products/{id}/github/choose");
    let Some(wanted) = form.choice.as_deref() else {
        let why = if expired { "expired" } else { "choose-one" };
        return redirect(&format!("{choose}?flash={why}"));
    };
    let wanted = wanted
        .split_once(':')
        .and_then(|(i, r)| Some((i.parse::<u64>().ok()?, r.parse::<u64>().ok()?)));
    let Some(choice) = wanted.and_then(|(i, r)| {
        choices
            .into_iter()
            .find(|c| c.installation_id == i && c.repository_id == r)
    }) else {
        if expired {
            return redirect(&format!("{choose}?flash=expired"));
        }
        tracing::warn!(product = %id, choice = ?form.choice, "refused a binding the user was not verified for");
        return redirect(&format!("{choose}?flash=not-pushable"));
    };
    let current = match state.store.connection(&id).await {
        Ok(c) => c,
        Err(e) => return internal(web, "read the connection", &e).into_response(),
    };
    if let Some(current) = current
        .as_ref()
        .filter(|c| c.status == ConnectionStatus::Active && c.repository_id.is_some_and(|r| r != choice.repository_id))
        && form.confirmed.as_deref() != Some("yes")
    {
        let sandboxes = match state.store.product_sandboxes(&id, now, 0).await {
            Ok((_, total)) => total,
            Err(e) => return internal(web, "count the sandboxes", &e).into_response(),
        };
        let from = current.repository.as_deref().unwrap_or("the current repository");
        return render(
            web,
            &ConfirmPage {
                login: Some(&login),
                csrf: &browser.csrf,
                flash: None,
                flash_error: false,
                product_id: &id,
                heading: format!("Change the repository of {name}?"),
                what: format!("Coding tasks will work on {} instead of {from}.", choice.repository),
                sandboxes_line: lose_access(sandboxes, from),
                note: "Their tokens for the old repository are revoked at GitHub now; the next token they get is for the new one. Nothing on GitHub is deleted.",
                action: format!("/products/{id}/github/bind"),
                choice: Some(format!("{}:{}", choice.installation_id, choice.repository_id)),
                listed_until: form.listed_until.unwrap_or_default(),
                button: "Change repository",
                button_id: "confirm-change",
                button_class: "btn-primary",
            },
        );
    }
    match bind_choice(state, web, browser, &id, choice, false).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

/// "N sandboxes lose access to REPO now", in words.
fn lose_access(sandboxes: i64, repository: &str) -> String {
    match sandboxes {
        0 => format!("No sandbox is running now, so no coding task loses access to {repository}."),
        1 => format!("1 sandbox loses access to {repository} now."),
        n => format!("{n} sandboxes lose access to {repository} now."),
    }
}

#[derive(Template)]
#[template(path = "confirm.html")]
pub(crate) struct ConfirmPage<'a> {
    login: Option<&'a str>,
    csrf: &'a str,
    flash: Option<&'a str>,
    flash_error: bool,
    product_id: &'a str,
    heading: String,
    what: String,
    sandboxes_line: String,
    note: &'a str,
    action: String,
    choice: Option<String>,
    listed_until: i64,
    button: &'a str,
    button_id: &'a str,
    button_class: &'a str,
}

/// Disconnect's confirmation: which repository, and how many sandboxes lose access now.
pub(crate) async fn confirm_disconnect(
    State(state): State<Arc<AppState>>,
    browser: Browser,
    Path(id): Path<String>,
) -> Response {
    let (web, login, name) = match member_page(&state, &browser, &id).await {
        Ok(m) => m,
        Err(r) => return r,
    };
    let connection = match state.store.connection(&id).await {
        Ok(c) => c,
        Err(e) => return internal(web, "read the connection", &e).into_response(),
    };
    let Some(connection) = connection.filter(|c| c.status != ConnectionStatus::NotConnected) else {
        return redirect(&format!("/products/{id}/integrations"));
    };
    let sandboxes = match state.store.product_sandboxes(&id, now(), 0).await {
        Ok((_, total)) => total,
        Err(e) => return internal(web, "count the sandboxes", &e).into_response(),
    };
    let repository = connection
        .repository
        .as_deref()
        .or(connection.account_login.as_deref())
        .unwrap_or("GitHub");
    render(
        web,
        &ConfirmPage {
            login: Some(&login),
            csrf: &browser.csrf,
            flash: None,
            flash_error: false,
            product_id: &id,
            heading: format!("Disconnect {repository} from {name}?"),
            what: format!("Coding tasks of {name} stop working on {repository} until GitHub is connected again."),
            sandboxes_line: lose_access(sandboxes, repository),
            note: "Their tokens are revoked at GitHub now. The App stays installed on GitHub, and no code, branch or pull request is touched.",
            action: format!("/products/{id}/github/disconnect"),
            choice: None,
            listed_until: 0,
            button: "Disconnect",
            button_id: "confirm-disconnect",
            button_class: "btn-danger",
        },
    )
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
