//! The REST API a user access token reaches (`/user`, `/user/installations`, their repositories), and the App's
//! own view of its installations (`GET /app/installations`, requests, delete, suspend), paginated as GitHub
//! paginates: `per_page` (default 30, at most 100), `page`, and a `Link` header.

use http::{HeaderValue, Response, StatusCode};
use serde_json::{Value, json};

use crate::html::{field, parse_form};
use crate::server::{Auth, Body, empty, error, installation_json, json_response, not_found, repository_json, rfc3339};
use crate::{FakeHub, InstallationConfig};

/// `per_page` and `page` from a query.
struct Pagination {
    per_page: usize,
    page: usize,
}

impl Pagination {
    fn from_query(query: Option<&str>) -> Self {
        let params = parse_form(query.unwrap_or(""));
        let number = |key: &str| field(&params, key).and_then(|v| v.parse::<usize>().ok());
        Self {
            per_page: number("per_page").unwrap_or(30).clamp(1, 100),
            page: number("page").unwrap_or(1).max(1),
        }
    }

    fn slice<T: Clone>(&self, items: &[T]) -> Vec<T> {
        items
            .iter()
            .skip((self.page - 1).saturating_mul(self.per_page))
            .take(self.per_page)
            .cloned()
            .collect()
    }

    /// GitHub's `Link` header (`prev`, `next`, `last`, `first` as they apply), or none for a single page.
    fn link(&self, base: &str, path: &str, total: usize) -> Option<String> {
        let last = total.div_ceil(self.per_page).max(1);
        let url = |page: usize| format!("<{base}{path}?per_page={}&page={page}>", self.per_page);
        let mut rels = Vec::new();
        if self.page > 1 {
            rels.push(format!("{}; rel=\"prev\"", url((self.page - 1).min(last))));
        }
        if self.page < last {
            rels.push(format!("{}; rel=\"next\"", url(self.page + 1)));
            rels.push(format!("{}; rel=\"last\"", url(last)));
        }
        if self.page > 1 {
            rels.push(format!("{}; rel=\"first\"", url(1)));
        }
        (!rels.is_empty()).then(|| rels.join(", "))
    }
}

fn with_link(mut response: Response<Body>, link: Option<String>) -> Response<Body> {
    if let Some(value) = link.and_then(|l| HeaderValue::from_str(&l).ok()) {
        response.headers_mut().insert(http::header::LINK, value);
    }
    response
}

/// The user a request's `ghu_` token stands for, or GitHub's refusal.
fn user_of(auth: &Auth) -> Result<&str, Box<Response<Body>>> {
    match auth {
        Auth::User(Some(login)) => Ok(login),
        Auth::None => Err(Box::new(error(StatusCode::UNAUTHORIZED, "Requires authentication"))),
        _ => Err(Box::new(error(StatusCode::UNAUTHORIZED, "Bad credentials"))),
    }
}

fn app_of(auth: &Auth) -> Result<(), Box<Response<Body>>> {
    match auth {
        Auth::Jwt(Ok(())) => Ok(()),
        Auth::Jwt(Err(message)) => Err(Box::new(error(StatusCode::UNAUTHORIZED, message))),
        _ => Err(Box::new(error(
            StatusCode::UNAUTHORIZED,
            "A JSON web token could not be decoded",
        ))),
    }
}

impl FakeHub {
    /// `GET /user`.
    pub(crate) fn get_user(&self, auth: &Auth) -> Response<Body> {
        let login = match user_of(auth) {
            Ok(login) => login,
            Err(response) => return *response,
        };
        let mut user = self.user_json(login);
        if let Value::Object(map) = &mut user {
            for (key, value) in [
                ("name", json!(login)),
                ("company", Value::Null),
                ("blog", json!("")),
                ("location", Value::Null),
                ("email", Value::Null),
                ("hireable", Value::Null),
                ("bio", Value::Null),
                ("twitter_username", Value::Null),
                ("public_repos", json!(0)),
                ("public_gists", json!(0)),
                ("followers", json!(0)),
                ("following", json!(0)),
                ("created_at", json!("2026-01-01T00:00:00Z")),
                ("updated_at", json!("2026-01-01T00:00:00Z")),
                ("user_view_type", json!("public")),
            ] {
                map.insert(key.to_owned(), value);
            }
        }
        json_response(StatusCode::OK, &user)
    }

    /// Live installations on the accounts `login` belongs to (their own and their organisations').
    pub(crate) fn installations_of_user(&self, login: &str) -> Vec<InstallationConfig> {
        let accounts = self.accounts_of(login);
        let state = self.state();
        state
            .installations
            .iter()
            .filter(|i| !state.uninstalled.contains(&i.config.id))
            .filter(|i| accounts.iter().any(|a| a.eq_ignore_ascii_case(&i.config.account)))
            .map(|i| i.config.clone())
            .collect()
    }

    /// `GET /user/installations`.
    pub(crate) fn user_installations(&self, auth: &Auth, query: Option<&str>) -> Response<Body> {
        let login = match user_of(auth) {
            Ok(login) => login,
            Err(response) => return *response,
        };
        let all = self.installations_of_user(login);
        let pages = Pagination::from_query(query);
        let installations: Vec<Value> = pages.slice(&all).iter().map(|i| installation_json(self, i)).collect();
        with_link(
            json_response(
                StatusCode::OK,
                &json!({"total_count": all.len(), "installations": installations}),
            ),
            pages.link(&self.base_url(), "/user/installations", all.len()),
        )
    }

    /// `GET /user/installations/{id}/repositories`: what the user can reach through the installation, with
    /// the user's own permissions on each.
    pub(crate) fn user_installation_repositories(&self, auth: &Auth, id: &str, query: Option<&str>) -> Response<Body> {
        let login = match user_of(auth) {
            Ok(login) => login,
            Err(response) => return *response,
        };
        let Some(installation) = id.parse::<u64>().ok().and_then(|id| self.installation(id)) else {
            return not_found();
        };
        let Some(access) = self.access(login, &installation.account) else {
            return not_found();
        };
        let (admin, push) = (access.is_owner(), access.can_push());
        let pages = Pagination::from_query(query);
        let repositories: Vec<Value> = pages
            .slice(&installation.repositories)
            .iter()
            .map(|name| {
                let mut repo = repository_json(self, &installation.account, name);
                repo["permissions"] =
                    json!({"admin": admin, "maintain": admin, "push": push, "triage": push, "pull": true});
                repo
            })
            .collect();
        let total = installation.repositories.len();
        with_link(
            json_response(
                StatusCode::OK,
                &json!({
                    "total_count": total,
                    "repository_selection": self.selection_of(installation.id).as_str(),
                    "repositories": repositories,
                }),
            ),
            pages.link(
                &self.base_url(),
                &format!("/user/installations/{}/repositories", installation.id),
                total,
            ),
        )
    }

    /// `GET /app/installations`: every installation not deleted.
    pub(crate) fn app_installations(&self, auth: &Auth, query: Option<&str>) -> Response<Body> {
        if let Err(response) = app_of(auth) {
            return *response;
        }
        let all: Vec<InstallationConfig> = {
            let state = self.state();
            state
                .installations
                .iter()
                .filter(|i| !state.uninstalled.contains(&i.config.id))
                .filter(|i| !state.skipped_in_list.contains(&i.config.id))
                .map(|i| i.config.clone())
                .collect()
        };
        let pages = Pagination::from_query(query);
        let installations: Vec<Value> = pages.slice(&all).iter().map(|i| installation_json(self, i)).collect();
        with_link(
            json_response(StatusCode::OK, &json!(installations)),
            pages.link(&self.base_url(), "/app/installations", all.len()),
        )
    }

    /// `GET /app/installation-requests`: pending requests.
    pub(crate) fn app_installation_requests(&self, auth: &Auth, query: Option<&str>) -> Response<Body> {
        if let Err(response) = app_of(auth) {
            return *response;
        }
        let pending: Vec<_> = self
            .installation_requests()
            .into_iter()
            .filter(|r| r.approved_installation.is_none())
            .collect();
        let requests: Vec<Value> = Pagination::from_query(query)
            .slice(&pending)
            .iter()
            .map(|r| {
                json!({
                    "id": r.id,
                    "node_id": format!("MDEyOkludGVncmF0aW9u{}", r.id),
                    "account": crate::server::account_json_typed(&r.account, self.account_type(&r.account)),
                    "requester": self.user_json(&r.requester),
                    "created_at": rfc3339(r.created_at),
                })
            })
            .collect();
        json_response(StatusCode::OK, &json!(requests))
    }

    /// `DELETE /app/installations/{id}`, `PUT`/`DELETE /app/installations/{id}/suspended`.
    pub(crate) fn app_change_installation(&self, auth: &Auth, id: &str, change: AppChange) -> Response<Body> {
        if let Err(response) = app_of(auth) {
            return *response;
        }
        let Some(id) = id.parse::<u64>().ok().filter(|id| self.installation(*id).is_some()) else {
            return not_found();
        };
        match change {
            AppChange::Delete => self.uninstall(id),
            AppChange::Suspend => self.suspend(id),
            AppChange::Unsuspend => self.unsuspend(id),
        }
        empty(StatusCode::NO_CONTENT)
    }
}

#[derive(Clone, Copy)]
pub(crate) enum AppChange {
    Delete,
    Suspend,
    Unsuspend,
}
