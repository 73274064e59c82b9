//! fakehub's web pages, plain HTML forms a headless browser can drive: the App's install page, installation
//! settings, installation requests, and a read-only pull request page.
//!
//! Forms post, the server redirects; every state-changing form carries the session's `authenticity_token`.

use std::fmt::Write as _;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::accounts::Access;
use crate::html::{esc, field, fields, hidden, page, parse_form, redirect, see_other, with_query};
use crate::oauth::{SignedIn, forbidden_form, read_form};
use crate::server::{Body, repo_id};
use crate::{FakeHub, InstallationConfig, RepositorySelection};

/// What an owner did on an installation's settings page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SettingsAction {
    Save,
    Suspend,
    Unsuspend,
    Delete,
}

impl SettingsAction {
    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s {
            "repositories" => Some(Self::Save),
            "suspend" => Some(Self::Suspend),
            "unsuspend" => Some(Self::Unsuspend),
            "delete" => Some(Self::Delete),
            _ => None,
        }
    }
}

fn not_found_page(signed_in: Option<&str>) -> Response<Body> {
    page(
        StatusCode::NOT_FOUND,
        "Page not found",
        signed_in,
        "<p>This is not the web page you are looking for.</p>",
    )
}

/// Send the browser to sign in, then back here.
fn sign_in_first(path: &str, query: Option<&str>) -> Response<Body> {
    let here = query.map_or_else(|| path.to_owned(), |q| format!("{path}?{q}"));
    redirect(&with_query("/login", &[("return_to", &here)]))
}

impl FakeHub {
    /// `http://127.0.0.1:PORT` once serving.
    pub(crate) fn base_url(&self) -> String {
        self.state()
            .base_url
            .clone()
            .unwrap_or_else(|| "http://fakehub.invalid".to_owned())
    }

    /// The installation's settings page on fakehub.
    pub(crate) fn installation_page_url(&self, account: &str, id: u64) -> String {
        format!("{}{}", self.base_url(), self.installation_page_path(account, id))
    }

    pub(crate) fn installation_page_path(&self, account: &str, id: u64) -> String {
        if self.is_user_account(account) {
            format!("/settings/installations/{id}")
        } else {
            format!("/organizations/{account}/settings/installations/{id}")
        }
    }

    /// `GET /`: where to start.
    pub(crate) fn index_page(&self, headers: &http::HeaderMap) -> Response<Body> {
        let user = self.signed_in(headers);
        let slug = esc(&self.config().app_slug);
        let body = format!(
            "<ul>\n<li><a id=\"install-link\" href=\"/apps/{slug}/installations/new\">Install {slug}</a></li>\n\
             <li><a id=\"installations-link\" href=\"/settings/installations\">Your installations</a></li>\n\
             <li><a id=\"sign-in-link\" href=\"/login\">Sign in</a></li>\n</ul>"
        );
        page(
            StatusCode::OK,
            "fakehub",
            user.as_ref().map(|u| u.login.as_str()),
            &body,
        )
    }

    /// `GET /apps/{slug}/installations/new`: choose the account.
    pub(crate) fn install_page(&self, headers: &http::HeaderMap, path: &str, query: Option<&str>) -> Response<Body> {
        let Some(user) = self.signed_in(headers) else {
            return sign_in_first(path, query);
        };
        let params = parse_form(query.unwrap_or(""));
        let slug = &self.config().app_slug;
        let state = field(&params, "state");
        let mut list = String::from("<ul id=\"accounts\">\n");
        for account in self.accounts_of(&user.login) {
            let installed = self.installation_on(&account);
            let note = match (installed, self.must_request(&user.login, &account)) {
                (Some(_), _) => " <span class=\"muted\">(installed)</span>",
                (None, true) => " <span class=\"muted\">(an owner must approve)</span>",
                (None, false) => "",
            };
            let _ = writeln!(
                list,
                "<li><form class=\"inline\" method=\"get\" action=\"/apps/{slug}/installations/new/permissions\">\
                 {target}{state}<button type=\"submit\" id=\"choose-{id}\">{verb} {login}</button></form>{note}</li>",
                slug = esc(slug),
                target = hidden("target_id", &repo_id(&account, "").to_string()),
                state = state.map(|s| hidden("state", s)).unwrap_or_default(),
                id = esc(&account),
                verb = if installed.is_some() { "Configure" } else { "Choose" },
                login = esc(&account),
            );
        }
        list.push_str("</ul>");
        let body = format!(
            "<p>Where do you want to install <strong>{}</strong>?</p>\n{list}",
            esc(slug)
        );
        page(StatusCode::OK, &format!("Install {slug}"), Some(&user.login), &body)
    }

    /// The account a `target_id` names among those `user` belongs to.
    fn target_account(&self, user: &str, target_id: Option<&str>) -> Option<String> {
        let target: u64 = target_id?.parse().ok()?;
        self.accounts_of(user).into_iter().find(|a| repo_id(a, "") == target)
    }

    /// `GET /apps/{slug}/installations/new/permissions?target_id=…`: choose the repositories, then Install
    /// (or Request).
    pub(crate) fn install_permissions_page(
        &self,
        headers: &http::HeaderMap,
        path: &str,
        query: Option<&str>,
    ) -> Response<Body> {
        let Some(user) = self.signed_in(headers) else {
            return sign_in_first(path, query);
        };
        let params = parse_form(query.unwrap_or(""));
        let Some(account) = self.target_account(&user.login, field(&params, "target_id")) else {
            return not_found_page(Some(&user.login));
        };
        if let Some(id) = self.installation_on(&account) {
            return redirect(&self.installation_page_path(&account, id));
        }
        self.install_form(&user, &account, field(&params, "state"), None, StatusCode::OK)
    }

    fn install_form(
        &self,
        user: &SignedIn,
        account: &str,
        state: Option<&str>,
        problem: Option<&str>,
        status: StatusCode,
    ) -> Response<Body> {
        let slug = &self.config().app_slug;
        let request = self.must_request(&user.login, account);
        let mut body = String::new();
        if let Some(problem) = problem {
            let _ = writeln!(
                body,
                "<p id=\"flash-error\" role=\"alert\"><strong>{}</strong></p>",
                esc(problem)
            );
        }
        let _ = writeln!(
            body,
            "<p>Install <strong>{}</strong> on <strong id=\"target-account\">{}</strong>.</p>",
            esc(slug),
            esc(account)
        );
        body.push_str(&self.permissions_list());
        if request {
            let _ = writeln!(
                body,
                "<p id=\"request-note\">{} lets only its owners install Apps: your request goes to them.</p>",
                esc(account)
            );
        }
        let _ = writeln!(
            body,
            "<form method=\"post\" action=\"/apps/{slug}/installations\" id=\"install-form\">{target}{state}{csrf}",
            slug = esc(slug),
            target = hidden("target_id", &repo_id(account, "").to_string()),
            state = state.map(|s| hidden("state", s)).unwrap_or_default(),
            csrf = hidden("authenticity_token", &user.csrf),
        );
        body.push_str(&self.repository_fieldset(account, RepositorySelection::All, &[], true));
        let (action, label) = if request {
            ("request", "Request")
        } else {
            ("install", "Install")
        };
        let _ = write!(
            body,
            "<p><button type=\"submit\" name=\"action\" value=\"{action}\" id=\"{action}\">{label}</button></p>\n</form>"
        );
        page(status, &format!("Install {slug}"), Some(&user.login), &body)
    }

    fn permissions_list(&self) -> String {
        let mut out = String::from("<p>With these permissions:</p>\n<ul id=\"permissions\">\n");
        for (name, level) in &self.config().app_permissions {
            let _ = writeln!(out, "<li>{}: {}</li>", esc(name), esc(level));
        }
        out.push_str("</ul>\n");
        out
    }

    /// "All repositories" / "Only select repositories" with a checkbox per repository of `account`.
    fn repository_fieldset(
        &self,
        account: &str,
        selection: RepositorySelection,
        chosen: &[String],
        editable: bool,
    ) -> String {
        let disabled = if editable { "" } else { " disabled" };
        let checked = |yes: bool| if yes { " checked" } else { "" };
        let mut out = format!(
            "<fieldset id=\"repository-access\"><legend>Repository access</legend>\n\
             <p><input type=\"radio\" name=\"install_target\" value=\"all\" id=\"install_target_all\"{}{disabled}>\
             <label for=\"install_target_all\">All repositories</label></p>\n\
             <p><input type=\"radio\" name=\"install_target\" value=\"selected\" id=\"install_target_selected\"{}{disabled}>\
             <label for=\"install_target_selected\">Only select repositories</label></p>\n<ul id=\"repositories\">\n",
            checked(selection == RepositorySelection::All),
            checked(selection == RepositorySelection::Selected),
        );
        for name in self.account_repositories(account) {
            let on = selection == RepositorySelection::Selected && chosen.iter().any(|c| c.eq_ignore_ascii_case(&name));
            let _ = writeln!(
                out,
                "<li><input type=\"checkbox\" name=\"repositories\" value=\"{name}\" id=\"repository-{name}\"{}{disabled}>\
                 <label for=\"repository-{name}\">{account}/{name}</label></li>",
                checked(on),
                name = esc(&name),
                account = esc(account),
            );
        }
        out.push_str("</ul></fieldset>\n");
        out
    }

    /// `POST /apps/{slug}/installations`: Install or Request.
    pub(crate) async fn install_submit(&self, req: Request<Incoming>) -> Response<Body> {
        let headers = req.headers().clone();
        let form = match read_form(req).await {
            Ok(form) => form,
            Err(response) => return response,
        };
        let Some(user) = self.signed_in(&headers) else {
            return redirect("/login");
        };
        if field(&form, "authenticity_token") != Some(user.csrf.as_str()) {
            return forbidden_form();
        }
        let Some(account) = self.target_account(&user.login, field(&form, "target_id")) else {
            return not_found_page(Some(&user.login));
        };
        let state = field(&form, "state");
        if let Some(id) = self.installation_on(&account) {
            return see_other(&self.installation_page_path(&account, id));
        }
        let selection = field(&form, "install_target")
            .and_then(RepositorySelection::parse)
            .unwrap_or(RepositorySelection::All);
        let repositories: Vec<String> = fields(&form, "repositories")
            .into_iter()
            .map(ToOwned::to_owned)
            .collect();
        let setup_url = self.config().setup_url.clone();
        if self.must_request(&user.login, &account) {
            return match self.record_request(&account, &user.login, selection, &repositories) {
                Ok(_) => match setup_url {
                    Some(url) => {
                        let mut pairs = vec![("setup_action", "request")];
                        if let Some(state) = state {
                            pairs.push(("state", state));
                        }
                        redirect(&with_query(&url, &pairs))
                    }
                    None => page(
                        StatusCode::OK,
                        "Request sent",
                        Some(&user.login),
                        &format!(
                            "<p id=\"request-sent\">Your request to install {} on {} was sent to its owners.</p>",
                            esc(&self.config().app_slug),
                            esc(&account)
                        ),
                    ),
                },
                Err(e) => self.install_form(
                    &user,
                    &account,
                    state,
                    Some(&e.to_string()),
                    StatusCode::UNPROCESSABLE_ENTITY,
                ),
            };
        }
        match self.create_installation(&account, selection, &repositories, &user.login, None) {
            Ok(id) => match setup_url {
                Some(url) => {
                    let id = id.to_string();
                    let mut pairs = vec![("installation_id", id.as_str()), ("setup_action", "install")];
                    if let Some(state) = state {
                        pairs.push(("state", state));
                    }
                    redirect(&with_query(&url, &pairs))
                }
                None => redirect(&self.installation_page_path(&account, id)),
            },
            Err(e) => self.install_form(
                &user,
                &account,
                state,
                Some(&e.to_string()),
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
        }
    }

    /// The live installation a settings path names, and the signed-in user's access to its account.
    fn settings_target(&self, org: Option<&str>, id: &str, user: &str) -> Option<(InstallationConfig, Access)> {
        let installation = self.installation(id.parse().ok()?)?;
        let path_matches = match org {
            Some(org) => org.eq_ignore_ascii_case(&installation.account) && !self.is_user_account(org),
            None => self.is_user_account(&installation.account),
        };
        if !path_matches {
            return None;
        }
        let access = self.access(user, &installation.account)?;
        Some((installation, access))
    }

    /// `GET /organizations/{org}/settings/installations/{id}` and `GET /settings/installations/{id}`.
    pub(crate) fn settings_page(
        &self,
        headers: &http::HeaderMap,
        path: &str,
        org: Option<&str>,
        id: &str,
    ) -> Response<Body> {
        let Some(user) = self.signed_in(headers) else {
            return sign_in_first(path, None);
        };
        let Some((installation, access)) = self.settings_target(org, id, &user.login) else {
            return not_found_page(Some(&user.login));
        };
        let owner = access.is_owner();
        let id = installation.id;
        let account = &installation.account;
        let suspended = self.state().suspended.contains_key(&id);
        let here = self.installation_page_path(account, id);
        let mut body = String::new();
        let _ = writeln!(
            body,
            "<p>Installed on <strong id=\"installation-account\">{}</strong> · installation <code id=\"installation-id\">{id}</code> · \
             <span id=\"installation-status\">{}</span></p>",
            esc(account),
            if suspended { "Suspended" } else { "Active" },
        );
        body.push_str(&self.permissions_list());
        if !owner {
            body.push_str("<p id=\"read-only\">Only owners of this account can change this installation.</p>\n");
        }
        let csrf = hidden("authenticity_token", &user.csrf);
        let _ = writeln!(
            body,
            "<form method=\"post\" action=\"{}/repositories\" id=\"repositories-form\">{csrf}",
            esc(&here)
        );
        body.push_str(&self.repository_fieldset(account, self.selection_of(id), &installation.repositories, owner));
        if owner {
            body.push_str("<p><button type=\"submit\" id=\"save\">Save</button></p>\n");
        }
        body.push_str("</form>\n");
        if owner {
            let (action, label) = if suspended {
                ("unsuspend", "Unsuspend")
            } else {
                ("suspend", "Suspend")
            };
            let _ = write!(
                body,
                "<h2>Danger zone</h2>\n\
                 <form method=\"post\" action=\"{here}/{action}\" id=\"{action}-form\">{csrf}\
                 <button type=\"submit\" id=\"{action}\">{label}</button></form>\n\
                 <form method=\"post\" action=\"{here}/delete\" id=\"uninstall-form\">{csrf}\
                 <button type=\"submit\" id=\"uninstall\">Uninstall</button></form>\n",
                here = esc(&here),
            );
        }
        page(
            StatusCode::OK,
            &format!("{} on {account}", self.config().app_slug),
            Some(&user.login),
            &body,
        )
    }

    /// `POST {settings page}/{repositories|suspend|unsuspend|delete}` (owners only).
    pub(crate) async fn settings_submit(
        &self,
        org: Option<&str>,
        id: &str,
        action: SettingsAction,
        req: Request<Incoming>,
    ) -> Response<Body> {
        let headers = req.headers().clone();
        let form = match read_form(req).await {
            Ok(form) => form,
            Err(response) => return response,
        };
        let Some(user) = self.signed_in(&headers) else {
            return redirect("/login");
        };
        if field(&form, "authenticity_token") != Some(user.csrf.as_str()) {
            return forbidden_form();
        }
        let Some((installation, access)) = self.settings_target(org, id, &user.login) else {
            return not_found_page(Some(&user.login));
        };
        if !access.is_owner() {
            return page(
                StatusCode::FORBIDDEN,
                "Not allowed",
                Some(&user.login),
                "<p>Only owners of this account can change this installation.</p>",
            );
        }
        let id = installation.id;
        let here = self.installation_page_path(&installation.account, id);
        match action {
            SettingsAction::Save => {
                let selection = field(&form, "install_target")
                    .and_then(RepositorySelection::parse)
                    .unwrap_or(RepositorySelection::Selected);
                let repositories: Vec<String> = fields(&form, "repositories")
                    .into_iter()
                    .map(ToOwned::to_owned)
                    .collect();
                if let Err(e) = self.set_selection_by(id, selection, &repositories, Some(&user.login)) {
                    return page(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "Not saved",
                        Some(&user.login),
                        &format!(
                            "<p id=\"flash-error\" role=\"alert\">{}</p><p><a href=\"{}\">Back</a></p>",
                            esc(&e.to_string()),
                            esc(&here)
                        ),
                    );
                }
                see_other(&here)
            }
            SettingsAction::Suspend => {
                self.suspend_by(id, Some(&user.login));
                see_other(&here)
            }
            SettingsAction::Unsuspend => {
                self.unsuspend_by(id, Some(&user.login));
                see_other(&here)
            }
            SettingsAction::Delete => {
                self.uninstall_by(id, Some(&user.login));
                see_other("/settings/installations")
            }
        }
    }

    /// `GET /settings/installations`: the installations the signed-in user can see.
    pub(crate) fn installations_page(&self, headers: &http::HeaderMap, path: &str) -> Response<Body> {
        let Some(user) = self.signed_in(headers) else {
            return sign_in_first(path, None);
        };
        let slug = esc(&self.config().app_slug);
        let mut body = String::from("<ul id=\"installations\">\n");
        for installation in self.installations_of_user(&user.login) {
            let _ = writeln!(
                body,
                "<li><a id=\"installation-{id}\" href=\"{href}\">{slug} on {account}</a> (installation {id})</li>",
                id = installation.id,
                href = esc(&self.installation_page_path(&installation.account, installation.id)),
                account = esc(&installation.account),
            );
        }
        body.push_str("</ul>\n");
        for account in self.accounts_of(&user.login) {
            if self.access(&user.login, &account).is_some_and(Access::is_owner) && !self.is_user_account(&account) {
                let pending = self.pending_requests(&account).len();
                if pending > 0 {
                    let _ = writeln!(
                        body,
                        "<p><a id=\"requests-{a}\" href=\"/organizations/{a}/settings/installation_requests\">{pending} \
                         pending installation request(s) for {a}</a></p>",
                        a = esc(&account)
                    );
                }
            }
        }
        let _ = write!(
            body,
            "<p><a id=\"install-link\" href=\"/apps/{slug}/installations/new\">Install {slug}</a></p>"
        );
        page(StatusCode::OK, "Installed GitHub Apps", Some(&user.login), &body)
    }

    fn pending_requests(&self, account: &str) -> Vec<crate::InstallationRequest> {
        self.installation_requests()
            .into_iter()
            .filter(|r| r.approved_installation.is_none() && r.account.eq_ignore_ascii_case(account))
            .collect()
    }

    /// `GET /organizations/{org}/settings/installation_requests` (owners only).
    pub(crate) fn requests_page(&self, headers: &http::HeaderMap, path: &str, org: &str) -> Response<Body> {
        let Some(user) = self.signed_in(headers) else {
            return sign_in_first(path, None);
        };
        if !self.access(&user.login, org).is_some_and(Access::is_owner) || self.is_user_account(org) {
            return not_found_page(Some(&user.login));
        }
        let slug = esc(&self.config().app_slug);
        let csrf = hidden("authenticity_token", &user.csrf);
        let mut body = String::from("<ul id=\"installation-requests\">\n");
        let pending = self.pending_requests(org);
        for request in &pending {
            let repositories = match request.repository_selection {
                RepositorySelection::All => "all repositories".to_owned(),
                RepositorySelection::Selected => request
                    .repositories
                    .iter()
                    .map(|r| esc(r))
                    .collect::<Vec<_>>()
                    .join(", "),
            };
            let _ = writeln!(
                body,
                "<li><strong>{requester}</strong> requested {slug} for {repositories}. \
                 <form class=\"inline\" method=\"post\" action=\"/organizations/{org}/settings/installation_requests/{id}/approve\">\
                 {csrf}<button type=\"submit\" id=\"approve-{id}\">Approve</button></form> \
                 <form class=\"inline\" method=\"post\" action=\"/organizations/{org}/settings/installation_requests/{id}/deny\">\
                 {csrf}<button type=\"submit\" id=\"deny-{id}\">Deny</button></form></li>",
                requester = esc(&request.requester),
                org = esc(org),
                id = request.id,
            );
        }
        body.push_str("</ul>\n");
        if pending.is_empty() {
            body.push_str("<p id=\"no-requests\">No pending requests.</p>\n");
        }
        page(
            StatusCode::OK,
            &format!("Installation requests for {org}"),
            Some(&user.login),
            &body,
        )
    }

    /// `POST /organizations/{org}/settings/installation_requests/{id}/{approve|deny}`.
    pub(crate) async fn request_submit(
        &self,
        org: &str,
        id: &str,
        approve: bool,
        req: Request<Incoming>,
    ) -> Response<Body> {
        let headers = req.headers().clone();
        let form = match read_form(req).await {
            Ok(form) => form,
            Err(response) => return response,
        };
        let Some(user) = self.signed_in(&headers) else {
            return redirect("/login");
        };
        if field(&form, "authenticity_token") != Some(user.csrf.as_str()) {
            return forbidden_form();
        }
        let request = id
            .parse::<u64>()
            .ok()
            .and_then(|id| self.pending_requests(org).into_iter().find(|r| r.id == id));
        let Some(request) = request else {
            return not_found_page(Some(&user.login));
        };
        if !self.access(&user.login, org).is_some_and(Access::is_owner) {
            return not_found_page(Some(&user.login));
        }
        if !approve {
            self.state().install_requests.retain(|r| r.id != request.id);
            return see_other(&format!("/organizations/{org}/settings/installation_requests"));
        }
        match self.approve_installation_request(request.id, Some(&user.login)) {
            Ok(installation) => see_other(&self.installation_page_path(&request.account, installation)),
            Err(e) => page(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Not approved",
                Some(&user.login),
                &format!("<p id=\"flash-error\" role=\"alert\">{}</p>", esc(&e.to_string())),
            ),
        }
    }

    /// `GET /{owner}/{repo}/pull/{n}`: the pull request fakehub recorded, readable.
    pub(crate) fn pull_page(&self, headers: &http::HeaderMap, owner: &str, repo: &str, number: &str) -> Response<Body> {
        let user = self.signed_in(headers);
        let signed_in = user.as_ref().map(|u| u.login.as_str());
        let pull = number.parse::<u64>().ok().and_then(|n| {
            self.pulls()
                .into_iter()
                .find(|p| p.number == n && p.owner.eq_ignore_ascii_case(owner) && p.repo.eq_ignore_ascii_case(repo))
        });
        let Some(pull) = pull else {
            return not_found_page(signed_in);
        };
        let subjects =
            crate::git::commit_subjects(&self.repo_path(&pull.owner, &pull.repo), &pull.base_sha, &pull.head_sha);
        let mut commits = String::from("<ol id=\"commits\">\n");
        for (sha, subject) in &subjects {
            let _ = writeln!(
                commits,
                "<li><code>{}</code> {}</li>",
                esc(sha.get(..7).unwrap_or(sha)),
                esc(subject)
            );
        }
        commits.push_str("</ol>\n");
        let files = crate::git::changed_files(&self.repo_path(&pull.owner, &pull.repo), &pull.base_sha, &pull.head_sha);
        let mut changes = format!("<h3>Files changed ({})</h3>\n<div id=\"files\">\n", files.len());
        for (path, patch) in &files {
            let _ = writeln!(
                changes,
                "<section class=\"file\"><h4 class=\"file-path\"><code>{}</code></h4><pre class=\"patch\">{}</pre></section>",
                esc(path),
                esc(patch)
            );
        }
        changes.push_str("</div>\n");
        // GitHub links an App's pull requests to the App's homepage; fakehub's App lives where its Setup URL is.
        let back = self
            .config()
            .setup_url
            .as_deref()
            .and_then(|u| {
                let (scheme, rest) = u.split_once("://")?;
                let host = rest.split('/').next()?;
                Some(format!("{scheme}://{host}/"))
            })
            .map(|origin| {
                format!(
                    "<p><a id=\"back-to-app\" href=\"{}\">← Back to {} (the App's page)</a></p>\n",
                    esc(&origin),
                    esc(&self.config().app_slug)
                )
            })
            .unwrap_or_default();
        let body = format!(
            "{back}<p id=\"pull-state\">{state} · <strong>{owner}/{repo}</strong> #{n} · wants to merge \
             <code id=\"head-ref\">{head}</code> into <code id=\"base-ref\">{base}</code></p>\n\
             <h2 id=\"pull-title\">{title}</h2>\n<pre id=\"pull-body\">{body}</pre>\n\
             <h3>Commits ({count})</h3>\n{commits}{changes}",
            state = if pull.draft { "Draft" } else { "Open" },
            owner = esc(&pull.owner),
            repo = esc(&pull.repo),
            n = pull.number,
            head = esc(&pull.head),
            base = esc(&pull.base),
            title = esc(&pull.title),
            body = esc(&pull.body),
            count = subjects.len(),
        );
        page(
            StatusCode::OK,
            &format!("{} · Pull Request #{}", pull.title, pull.number),
            signed_in,
            &body,
        )
    }
}
