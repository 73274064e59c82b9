//! Routing and the REST endpoints, answering as GitHub documents.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rand::RngCore;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::git::{self, Access};
use crate::pages::SettingsAction;
use crate::state::{AuthKind, IssuedToken, MintRecord, RequestRecord};
use crate::user_api::AppChange;
use crate::{FakeHub, InstallationConfig};

mod graphql;
mod lfs;
pub(crate) mod review;

pub(crate) type Body = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;

const DOCS: &str = "https://docs.github.com/rest";
/// Request bodies fakehub reads whole (REST); git bodies are streamed instead.
const MAX_JSON_BODY: usize = 1024 * 1024;

pub(crate) async fn serve(
    hub: FakeHub,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    hub.state().base_url = Some(format!("http://{}", listener.local_addr()?));
    let worker = hub
        .take_delivery_queue()
        .map(|queue| tokio::spawn(crate::webhooks::worker(hub.clone(), queue)));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let http = hyper::server::conn::http1::Builder::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _) = match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                };
                let hub = hub.clone();
                let service = service_fn(move |req| {
                    let hub = hub.clone();
                    async move { Ok::<_, Infallible>(hub.handle(req).await) }
                });
                let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
                tokio::spawn(async move {
                    if let Err(e) = connection.await {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(Duration::from_secs(2)) => {}
    }
    if let Some(worker) = worker {
        worker.abort();
    }
    Ok(())
}

/// Serve on a unix socket too (`gh`'s `http_unix_socket`, for a benchmark's direct series): the same
/// routes, with no webhook worker and the base URL left as the TCP listener set it.
pub(crate) async fn serve_unix(hub: FakeHub, listener: tokio::net::UnixListener, shutdown: impl Future<Output = ()>) {
    let http = hyper::server::conn::http1::Builder::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                };
                let hub = hub.clone();
                let service = service_fn(move |req| {
                    let hub = hub.clone();
                    async move { Ok::<_, Infallible>(hub.handle(req).await) }
                });
                let connection = http.serve_connection(TokioIo::new(stream), service);
                tokio::spawn(async move {
                    let _ = connection.await;
                });
            }
            () = &mut shutdown => break,
        }
    }
}

/// Body of `POST /app/installations/{id}/access_tokens`.
#[derive(Deserialize, Default)]
struct TokenRequest {
    repositories: Option<Vec<String>>,
    repository_ids: Option<Vec<u64>>,
    permissions: Option<BTreeMap<String, String>>,
}

const NOT_ACCESSIBLE: &str =
    "There is at least one repository that does not exist or is not accessible to the parent installation.";

/// How a request authenticated, resolved against fakehub's state.
pub(crate) enum Auth {
    None,
    /// A bearer JWT; `Err` holds GitHub's message for why it is not acceptable.
    Jwt(Result<(), String>),
    /// An installation token (Bearer/`token` header, or Basic password for git); `None` if unknown/dead.
    Token(Option<IssuedToken>),
    /// A user access token (`ghu_…`) from the web flow: the user's login, `None` if unknown.
    User(Option<String>),
}

impl FakeHub {
    async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        let query = req.uri().query().map(ToOwned::to_owned);
        let (auth, kind) = self.authenticate(req.headers());
        let token_id = match &auth {
            Auth::Token(Some(t)) => Some(t.id),
            _ => None,
        };
        let mut response = self.route(req, &method, &path, query.as_deref(), auth).await;
        let now = self.now();
        let headers = response.headers_mut();
        headers.insert(
            header::DATE,
            HeaderValue::from_str(&httpdate::fmt_http_date(now)).expect("an HTTP date is a valid header"),
        );
        let mut id = [0u8; 8];
        rand::thread_rng().fill_bytes(&mut id);
        headers.insert(
            "x-github-request-id",
            HeaderValue::from_str(&format!("{:X}", u64::from_be_bytes(id))).expect("hex is a valid header"),
        );
        if !path.starts_with("/_fakehub/") {
            self.state().requests.push(RequestRecord {
                method: method.to_string(),
                path,
                query,
                status: response.status().as_u16(),
                auth: kind,
                token_id,
            });
        }
        response
    }

    async fn route(
        &self,
        req: Request<Incoming>,
        method: &Method,
        path: &str,
        query: Option<&str>,
        auth: Auth,
    ) -> Response<Body> {
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        if matches!(segments.as_slice(), ["repos", ..] | ["graphql"]) {
            let injected = self.state().api_failures.pop_front();
            if let Some(failure) = injected {
                return injected_response(&failure);
            }
        }
        match (method, segments.as_slice()) {
            (&Method::POST, ["app", "installations", id, "access_tokens"]) => match id.parse::<u64>() {
                Ok(id) => self.mint(id, auth, req).await,
                Err(_) => not_found(),
            },
            (&Method::DELETE, ["installation", "token"]) => self.revoke(&auth).await,
            (&Method::GET, ["app", "installations", id]) => match (id.parse::<u64>(), &auth) {
                (Ok(id), Auth::Jwt(Ok(()))) => self.installation(id).map_or_else(not_found, |i| {
                    json_response(StatusCode::OK, &installation_json(self, &i))
                }),
                (_, Auth::Jwt(Err(message))) => error(StatusCode::UNAUTHORIZED, message),
                _ => error(StatusCode::UNAUTHORIZED, "A JSON web token could not be decoded"),
            },
            (&Method::GET, ["repos", owner, repo, "installation"]) => match &auth {
                Auth::Jwt(Ok(())) => self.installation_for(owner, repo).map_or_else(not_found, |i| {
                    json_response(StatusCode::OK, &installation_json(self, &i))
                }),
                Auth::Jwt(Err(message)) => error(StatusCode::UNAUTHORIZED, message),
                _ => error(StatusCode::UNAUTHORIZED, "A JSON web token could not be decoded"),
            },
            (&Method::GET, ["repos", owner, repo]) => self.repository(owner, repo, &auth),
            (_, ["repos", owner, repo, "issues", n, "comments"]) => {
                self.issue_comments_api(method, owner, repo, n, query, &auth, req).await
            }
            (&Method::GET, ["repos", owner, repo, "pulls", n]) => self.get_pull(owner, repo, n, &auth),
            (&Method::PATCH, ["repos", owner, repo, "pulls", n]) => self.patch_pull(owner, repo, n, &auth, req).await,
            (_, ["repos", owner, repo, "pulls", n, "comments"]) => {
                self.review_comments_api(method, owner, repo, n, None, query, &auth, req)
                    .await
            }
            (_, ["repos", owner, repo, "pulls", n, "comments", id, "replies"]) => {
                self.review_comments_api(method, owner, repo, n, Some(id), query, &auth, req)
                    .await
            }
            (_, ["repos", owner, repo, "pulls", n, "reviews"]) => {
                self.reviews_api(method, owner, repo, n, None, query, &auth, req).await
            }
            (&Method::POST, ["repos", owner, repo, "pulls", n, "reviews", id, "events"]) => {
                self.reviews_api(method, owner, repo, n, Some(id), query, &auth, req)
                    .await
            }
            (_, ["repos", owner, repo, "pulls", n, "merge"]) => {
                self.merge_api(method, owner, repo, n, &auth, req).await
            }
            (&Method::GET, ["repos", owner, repo, "commits", sha]) => self.commit_api(owner, repo, sha, &auth),
            (_, ["repos", owner, repo, "contents", file @ ..]) if !file.is_empty() => {
                self.contents_api(method, owner, repo, file, query, &auth, req).await
            }
            (&Method::POST, ["graphql"]) => self.graphql(&auth, req).await,
            (&Method::GET, ["repositories", id, rest @ ..]) => {
                // GitHub's pagination links name the repository by id.
                match self.repository_by_id(id) {
                    Some((owner, name)) => {
                        let path = format!("/repos/{owner}/{name}/{}", rest.join("/"));
                        Box::pin(self.route(req, method, &path, query, auth)).await
                    }
                    None => not_found(),
                }
            }
            (&Method::POST, ["repos", owner, repo, "pulls"]) => self.create_pull(owner, repo, &auth, req).await,
            (&Method::GET, ["repos", owner, repo, "pulls"]) => self.list_pulls(owner, repo, query, &auth),
            (&Method::GET, ["installation", "repositories"]) => self.installation_repositories(&auth),
            (&Method::GET, ["app", "installations"]) => self.app_installations(&auth, query),
            (&Method::GET, ["app", "installation-requests"]) => self.app_installation_requests(&auth, query),
            (&Method::DELETE, ["app", "installations", id]) => {
                self.app_change_installation(&auth, id, AppChange::Delete)
            }
            (&Method::PUT, ["app", "installations", id, "suspended"]) => {
                self.app_change_installation(&auth, id, AppChange::Suspend)
            }
            (&Method::DELETE, ["app", "installations", id, "suspended"]) => {
                self.app_change_installation(&auth, id, AppChange::Unsuspend)
            }
            (&Method::GET, ["user"]) => self.get_user(&auth),
            (&Method::GET, ["user", "installations"]) => self.user_installations(&auth, query),
            (&Method::GET, ["user", "installations", id, "repositories"]) => {
                self.user_installation_repositories(&auth, id, query)
            }
            (_, ["_fakehub", rest @ ..]) => self.control(method, rest, req).await,
            (_, [owner, repo, "info", "lfs", rest @ ..]) => self.lfs_api(method, owner, repo, rest, auth, req).await,
            (_, ["_lfs", owner, repo, oid, rest @ ..]) => self.lfs_storage(method, owner, repo, oid, rest, req).await,
            _ => self.web(req, method, path, &segments, query, auth).await,
        }
    }

    /// Web pages and the OAuth web flow (what github.com, not api.github.com, serves), then git.
    async fn web(
        &self,
        req: Request<Incoming>,
        method: &Method,
        path: &str,
        segments: &[&str],
        query: Option<&str>,
        auth: Auth,
    ) -> Response<Body> {
        let slug = self.config().app_slug.as_str();
        let headers = req.headers();
        match (method, segments) {
            (&Method::GET, [""]) => self.index_page(headers),
            (&Method::GET, ["login"]) => self.login_page(headers, query),
            (&Method::POST, ["session"]) => self.create_session(req).await,
            (&Method::POST, ["logout"]) => self.end_session(headers),
            (&Method::GET, ["login", "oauth", "authorize"]) => self.authorize_page(headers, path, query),
            (&Method::POST, ["login", "oauth", "authorize"]) => self.authorize_answer(req).await,
            (&Method::POST, ["login", "oauth", "access_token"]) => self.access_token(query, req).await,
            (&Method::GET, ["apps", s, "installations", "new"]) if *s == slug => {
                self.install_page(headers, path, query)
            }
            (&Method::GET, ["apps", s, "installations", "new", "permissions"]) if *s == slug => {
                self.install_permissions_page(headers, path, query)
            }
            (&Method::POST, ["apps", s, "installations"]) if *s == slug => self.install_submit(req).await,
            (&Method::GET, ["settings", "installations"]) => self.installations_page(headers, path),
            (&Method::GET, ["settings", "installations", id]) => self.settings_page(headers, path, None, id),
            (&Method::POST, ["settings", "installations", id, action]) => match SettingsAction::parse(action) {
                Some(action) => self.settings_submit(None, id, action, req).await,
                None => not_found(),
            },
            (&Method::GET, ["organizations", org, "settings", "installations", id]) => {
                self.settings_page(headers, path, Some(org), id)
            }
            (&Method::POST, ["organizations", org, "settings", "installations", id, action]) => {
                match SettingsAction::parse(action) {
                    Some(action) => self.settings_submit(Some(org), id, action, req).await,
                    None => not_found(),
                }
            }
            (&Method::GET, ["organizations", org, "settings", "installation_requests"]) => {
                self.requests_page(headers, path, org)
            }
            (
                &Method::POST,
                [
                    "organizations",
                    org,
                    "settings",
                    "installation_requests",
                    id,
                    verb @ ("approve" | "deny"),
                ],
            ) => self.request_submit(org, id, *verb == "approve", req).await,
            (&Method::GET, [owner, repo, "pull", n]) => self.pull_page(headers, owner, repo, n),
            (_, [owner, repo, rest @ ..]) if git::is_git_route(method, rest, query) => {
                self.git(owner, repo, rest, query, auth, req).await
            }
            _ => not_found(),
        }
    }

    fn authenticate(&self, headers: &http::HeaderMap) -> (Auth, AuthKind) {
        let Some(value) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
            return (Auth::None, AuthKind::None);
        };
        let (scheme, credential) = value.split_once(' ').unwrap_or((value, ""));
        let credential = credential.trim();
        match scheme.to_ascii_lowercase().as_str() {
            "basic" => {
                let password = STANDARD
                    .decode(credential)
                    .ok()
                    .and_then(|raw| String::from_utf8(raw).ok())
                    .and_then(|pair| pair.split_once(':').map(|(_, p)| p.to_owned()))
                    .unwrap_or_default();
                (Auth::Token(self.live_token(&password)), AuthKind::Basic)
            }
            "bearer" | "token" if credential.starts_with("ghs_") => {
                (Auth::Token(self.live_token(credential)), AuthKind::Token)
            }
            "bearer" | "token" if credential.starts_with("ghu_") => {
                (Auth::User(self.user_of_token(credential)), AuthKind::UserToken)
            }
            "bearer" => (Auth::Jwt(self.verify_jwt(credential)), AuthKind::Jwt),
            _ => (Auth::Token(None), AuthKind::Token),
        }
    }

    /// An issued token that is neither revoked nor expired.
    fn live_token(&self, presented: &str) -> Option<IssuedToken> {
        let now = self.now();
        self.state()
            .tokens
            .iter()
            .find(|t| t.token == presented)
            .filter(|t| !t.revoked && t.expires_at > now)
            .cloned()
    }

    /// GitHub's rules for App JWTs: RS256 signed by the App's key, `iat` at most 60 s ahead, `exp` in the
    /// future and at most 10 minutes after `iat`, `iss` the App. The signature is checked once per JWT and
    /// key (a deleted key's JWTs stop working at once); the claims at every call.
    fn verify_jwt(&self, jwt: &str) -> Result<(), String> {
        const UNDECODABLE: &str = "A JSON web token could not be decoded";
        /// Enough for every client of a test run; past it the memory starts again.
        const REMEMBERED: usize = 256;
        use sha2::Digest as _;
        let digest: [u8; 32] = sha2::Sha256::digest(jwt.as_bytes()).into();
        let remembered = self.verified_jwts().get(&digest).cloned();
        let claims = match remembered {
            Some(seen) if self.app_keys().iter().any(|k| k.fingerprint == seen.key) => seen.claims,
            _ => {
                let header = jsonwebtoken::decode_header(jwt).map_err(|_| UNDECODABLE.to_owned())?;
                if header.alg != jsonwebtoken::Algorithm::RS256 {
                    return Err(UNDECODABLE.into());
                }
                let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
                validation.validate_exp = false;
                validation.validate_nbf = false;
                validation.set_required_spec_claims::<&str>(&[]);
                let seen = self
                    .app_keys()
                    .iter()
                    .find_map(|key| {
                        jsonwebtoken::decode::<JwtClaims>(jwt, &key.decoding, &validation)
                            .ok()
                            .map(|decoded| VerifiedJwt {
                                key: key.fingerprint.clone(),
                                claims: decoded.claims,
                            })
                    })
                    .ok_or_else(|| UNDECODABLE.to_owned())?;
                let mut verified = self.verified_jwts();
                if verified.len() >= REMEMBERED {
                    verified.clear();
                }
                verified.insert(digest, seen.clone());
                seen.claims
            }
        };
        let now = unix(self.now());
        let iat = claims.iat.filter(|iat| *iat <= now + 60).ok_or_else(|| {
            "'Issued at' claim ('iat') must be an Integer representing the time that the assertion was issued"
                .to_owned()
        })?;
        let exp = claims.exp.filter(|exp| *exp > now).ok_or_else(|| {
            "'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires".to_owned()
        })?;
        if exp - iat > 600 {
            return Err("'Expiration time' claim ('exp') is too far in the future".into());
        }
        let app_id = self.config().app_id;
        let issuer_ok = match claims.iss {
            Some(Value::Number(n)) => n.as_u64() == Some(app_id),
            Some(Value::String(s)) => s == app_id.to_string(),
            _ => false,
        };
        if !issuer_ok {
            return Err("'Issuer' claim ('iss') must be an Integer".into());
        }
        Ok(())
    }

    /// A live (not uninstalled) installation, as it stands now.
    pub(crate) fn installation(&self, id: u64) -> Option<InstallationConfig> {
        let state = self.state();
        if state.uninstalled.contains(&id) {
            return None;
        }
        state
            .installations
            .iter()
            .find(|i| i.config.id == id)
            .map(|i| i.config.clone())
    }

    pub(crate) fn installation_for(&self, owner: &str, repo: &str) -> Option<InstallationConfig> {
        let repo = repo.strip_suffix(".git").unwrap_or(repo);
        let state = self.state();
        state
            .installations
            .iter()
            .map(|i| &i.config)
            .filter(|i| !state.uninstalled.contains(&i.id))
            .find(|i| {
                i.account.eq_ignore_ascii_case(owner) && i.repositories.iter().any(|r| r.eq_ignore_ascii_case(repo))
            })
            .cloned()
    }

    /// The repository GitHub's numeric id names, among the installations' repositories.
    fn repository_by_id(&self, id: &str) -> Option<(String, String)> {
        let id: u64 = id.parse().ok()?;
        let state = self.state();
        state.installations.iter().find_map(|i| {
            i.config
                .repositories
                .iter()
                .find(|r| repo_id(&i.config.account, r) == id)
                .map(|r| (i.config.account.clone(), r.clone()))
        })
    }

    async fn mint(&self, installation_id: u64, auth: Auth, req: Request<Incoming>) -> Response<Body> {
        match auth {
            Auth::Jwt(Ok(())) => {}
            Auth::Jwt(Err(message)) => return error(StatusCode::UNAUTHORIZED, &message),
            _ => return error(StatusCode::UNAUTHORIZED, "A JSON web token could not be decoded"),
        }
        let over_limit = {
            let mut state = self.state();
            if state.max_concurrent_mints > 0 && state.mints_in_flight >= state.max_concurrent_mints {
                state.mints_over_limit += 1;
                true
            } else {
                state.mints_in_flight += 1;
                false
            }
        };
        if over_limit {
            let mut response = error(
                StatusCode::FORBIDDEN,
                "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
            );
            response
                .headers_mut()
                .insert("retry-after", http::HeaderValue::from_static("60"));
            return response;
        }
        let _in_flight = InFlight(self.clone());
        let latency = self.state().mint_latency;
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        let body = match read_json_body(req).await {
            Ok(b) => b,
            Err(response) => return response,
        };
        let request: TokenRequest = if body.is_empty() {
            TokenRequest::default()
        } else {
            match serde_json::from_slice(&body) {
                Ok(r) => r,
                Err(_) => return error(StatusCode::BAD_REQUEST, "Problems parsing JSON"),
            }
        };
        let (status, response, token_id) = self.mint_answer(installation_id, &request);
        self.state().mints.push(MintRecord {
            installation_id,
            repositories: request.repositories,
            permissions: request.permissions,
            status: status.as_u16(),
            token_id,
        });
        response
    }

    fn mint_answer(&self, installation_id: u64, request: &TokenRequest) -> (StatusCode, Response<Body>, Option<u64>) {
        let Some(installation) = self.installation(installation_id) else {
            return (StatusCode::NOT_FOUND, not_found(), None);
        };
        let injected = self.state().failures.pop_front();
        if let Some(failure) = injected {
            return (
                StatusCode::from_u16(failure.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                injected_response(&failure),
                None,
            );
        }
        if self.state().suspended.contains_key(&installation_id) {
            return (
                StatusCode::FORBIDDEN,
                error(StatusCode::FORBIDDEN, "This installation has been suspended"),
                None,
            );
        }
        let scoped = select_repositories(&installation, request).and_then(|repos| {
            grant_permissions(&installation, request.permissions.as_ref()).map(|perms| (repos, perms))
        });
        let (selected, granted) = match scoped {
            Ok(scope) => scope,
            Err(message) => {
                let body = json!({"message": message, "documentation_url": DOCS, "errors": [], "status": "422"});
                return (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    json_response(StatusCode::UNPROCESSABLE_ENTITY, &body),
                    None,
                );
            }
        };
        let named = request.repositories.is_some() || request.repository_ids.is_some();
        let expires_at = self.now() + self.state().token_lifetime;
        let token = new_token(self.config().app_id);
        let mut state = self.state();
        let id = u64::try_from(state.tokens.len()).expect("fewer than 2^64 tokens") + 1;
        state.tokens.push(IssuedToken {
            id,
            token: token.clone(),
            installation_id,
            repositories: selected.clone(),
            permissions: granted.clone(),
            expires_at,
            revoked: false,
            revoked_at: None,
        });
        drop(state);
        let repository_objects: Vec<Value> = selected
            .iter()
            .map(|r| repository_json(self, &installation.account, r))
            .collect();
        let body = json!({
            "token": token,
            "expires_at": humantime::format_rfc3339_seconds(expires_at).to_string(),
            "permissions": granted,
            "repository_selection": if named { "selected" } else { "all" },
            "repositories": repository_objects,
        });
        (StatusCode::CREATED, json_response(StatusCode::CREATED, &body), Some(id))
    }
}

impl FakeHub {
    async fn revoke(&self, auth: &Auth) -> Response<Body> {
        let Auth::Token(Some(token)) = auth else {
            return error(StatusCode::UNAUTHORIZED, "Bad credentials");
        };
        let latency = self.state().revoke_latency;
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        let injected = self.state().revoke_failures.pop_front();
        if let Some(failure) = injected {
            return injected_response(&failure);
        }
        let now = self.now();
        if let Some(t) = self.state().tokens.iter_mut().find(|t| t.id == token.id && !t.revoked) {
            t.revoked = true;
            t.revoked_at = Some(now);
        }
        empty(StatusCode::NO_CONTENT)
    }

    fn token_covers(token: &IssuedToken, installation: &InstallationConfig, owner: &str, repo: &str) -> bool {
        let repo = repo.strip_suffix(".git").unwrap_or(repo);
        token.installation_id == installation.id
            && installation.account.eq_ignore_ascii_case(owner)
            && token.repositories.iter().any(|r| r.eq_ignore_ascii_case(repo))
    }

    fn repository(&self, owner: &str, repo: &str, auth: &Auth) -> Response<Body> {
        let token = match auth {
            Auth::Token(Some(t)) => t,
            Auth::Token(None) | Auth::Jwt(_) | Auth::User(_) => {
                return error(StatusCode::UNAUTHORIZED, "Bad credentials");
            }
            // Private repositories are invisible without credentials.
            Auth::None => return not_found(),
        };
        match self.installation_for(owner, repo) {
            Some(installation) if Self::token_covers(token, &installation, owner, repo) => {
                let name = installation
                    .repositories
                    .iter()
                    .find(|r| r.eq_ignore_ascii_case(repo))
                    .expect("token_covers found it");
                json_response(StatusCode::OK, &repository_json(self, &installation.account, name))
            }
            _ => not_found(),
        }
    }

    fn installation_repositories(&self, auth: &Auth) -> Response<Body> {
        let Auth::Token(Some(token)) = auth else {
            return error(StatusCode::UNAUTHORIZED, "Bad credentials");
        };
        let Some(installation) = self.installation(token.installation_id) else {
            return error(StatusCode::UNAUTHORIZED, "Bad credentials");
        };
        let repositories: Vec<Value> = token
            .repositories
            .iter()
            .map(|r| repository_json(self, &installation.account, r))
            .collect();
        json_response(
            StatusCode::OK,
            &json!({"total_count": repositories.len(), "repositories": repositories}),
        )
    }

    /// The installation and canonical repository name a token may use, or GitHub's refusal.
    fn token_repo(
        &self,
        owner: &str,
        repo: &str,
        auth: &Auth,
    ) -> Result<(InstallationConfig, IssuedToken, String), Box<Response<Body>>> {
        let token = match auth {
            Auth::Token(Some(t)) => t.clone(),
            Auth::None => return Err(Box::new(error(StatusCode::UNAUTHORIZED, "Requires authentication"))),
            _ => return Err(Box::new(error(StatusCode::UNAUTHORIZED, "Bad credentials"))),
        };
        match self.installation_for(owner, repo) {
            Some(installation) if Self::token_covers(&token, &installation, owner, repo) => {
                let name = installation
                    .repositories
                    .iter()
                    .find(|r| r.eq_ignore_ascii_case(repo))
                    .expect("token_covers found it")
                    .clone();
                Ok((installation, token, name))
            }
            _ => Err(Box::new(not_found())),
        }
    }

    async fn create_pull(&self, owner: &str, repo: &str, auth: &Auth, req: Request<Incoming>) -> Response<Body> {
        #[derive(Deserialize)]
        struct NewPull {
            head: Option<String>,
            base: Option<String>,
            #[serde(default)]
            title: String,
            #[serde(default)]
            body: Option<String>,
            #[serde(default)]
            draft: bool,
        }
        let (installation, token, name) = match self.token_repo(owner, repo, auth) {
            Ok(found) => found,
            Err(response) => return *response,
        };
        if token.permissions.get("pull_requests").map_or(0, |l| rank(l)) < 2 {
            return error(StatusCode::FORBIDDEN, "Resource not accessible by integration");
        }
        let body = match read_json_body(req).await {
            Ok(b) => b,
            Err(response) => return response,
        };
        let Ok(new) = serde_json::from_slice::<NewPull>(&body) else {
            return error(StatusCode::BAD_REQUEST, "Problems parsing JSON");
        };
        let account = installation.account.clone();
        let invalid = |field: &str| {
            json_response(
                StatusCode::UNPROCESSABLE_ENTITY,
                &json!({"message": "Validation Failed", "errors": [{"resource": "PullRequest", "field": field, "code": "invalid"}], "documentation_url": DOCS, "status": "422"}),
            )
        };
        let custom = |message: String| {
            json_response(
                StatusCode::UNPROCESSABLE_ENTITY,
                &json!({"message": "Validation Failed", "errors": [{"resource": "PullRequest", "code": "custom", "message": message}], "documentation_url": DOCS, "status": "422"}),
            )
        };
        let (Some(head), Some(base)) = (new.head, new.base) else {
            return invalid("head");
        };
        let head = head.strip_prefix(&format!("{account}:")).unwrap_or(&head).to_owned();
        let path = self.repo_path(&account, &name);
        let Some(head_sha) = git::branch_sha(&path, &head) else {
            return invalid("head");
        };
        let Some(base_sha) = git::branch_sha(&path, &base) else {
            return invalid("base");
        };
        if self
            .state()
            .pulls
            .iter()
            .any(|p| p.owner == account && p.repo == name && p.head == head)
        {
            return custom(format!("A pull request already exists for {account}:{head}."));
        }
        if !git::has_commits_beyond(&path, &base_sha, &head_sha) {
            return custom(format!("No commits between {base} and {head}"));
        }
        let mut state = self.state();
        let record = crate::PullRecord {
            number: u64::try_from(state.pulls.len()).expect("few pulls") + 1,
            owner: account,
            repo: name,
            head,
            head_sha,
            base,
            base_sha,
            title: new.title,
            body: new.body.unwrap_or_default(),
            draft: new.draft,
            state: "open".to_owned(),
            merged: None,
            author: format!("{}[bot]", self.config().app_slug),
        };
        state.pulls.push(record.clone());
        drop(state);
        self.send_pull_request_event("opened", &record);
        let mut response = json_response(StatusCode::CREATED, &pull_json(self, &record));
        if let Ok(location) = HeaderValue::from_str(&format!(
            "https://api.github.com/repos/{}/{}/pulls/{}",
            record.owner, record.repo, record.number
        )) {
            response.headers_mut().insert(header::LOCATION, location);
        }
        response
    }

    fn list_pulls(&self, owner: &str, repo: &str, query: Option<&str>, auth: &Auth) -> Response<Body> {
        let (installation, _, name) = match self.token_repo(owner, repo, auth) {
            Ok(found) => found,
            Err(response) => return *response,
        };
        let param = |key: &str| {
            query?
                .split('&')
                .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
                .map(|v| v.replace("%2F", "/").replace("%3A", ":"))
        };
        let head = param("head");
        let state = param("state").unwrap_or_else(|| "open".to_owned());
        // Cloned out first: rendering a pull request reads the state again (for fakehub's own URL).
        let records: Vec<crate::PullRecord> = self
            .state()
            .pulls
            .iter()
            .filter(|p| p.owner == installation.account && p.repo == name)
            .filter(|p| head.as_deref().is_none_or(|h| h == format!("{}:{}", p.owner, p.head)))
            .filter(|p| state == "all" || p.state == state)
            .cloned()
            .collect();
        let pulls: Vec<Value> = records.iter().map(|p| pull_json(self, p)).collect();
        json_response(StatusCode::OK, &json!(pulls))
    }

    async fn git(
        &self,
        owner: &str,
        repo: &str,
        rest: &[&str],
        query: Option<&str>,
        auth: Auth,
        req: Request<Incoming>,
    ) -> Response<Body> {
        let access = git::access(rest, query);
        if rest == ["git-receive-pack"] {
            let injected = self.state().push_failures.pop_front();
            if let Some(failure) = injected {
                // Read the upload first, as GitHub's front end does before it answers: the client then sees
                // the status rather than a connection closed under its upload.
                let _ = http_body_util::BodyExt::collect(req.into_body()).await;
                return injected_response(&failure);
            }
        }
        let challenge = || {
            let mut response = text(StatusCode::UNAUTHORIZED, "Invalid username or token.\n");
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"GitHub\""),
            );
            response
        };
        let Auth::Token(Some(token)) = auth else {
            return challenge();
        };
        let Some(installation) = self.installation_for(owner, repo) else {
            return challenge();
        };
        if !Self::token_covers(&token, &installation, owner, repo) {
            return challenge();
        }
        let contents = token.permissions.get("contents").map_or(0, |l| rank(l));
        let needed = match access {
            Access::Read => 1,
            Access::Write => 2,
        };
        if contents < needed {
            return text(StatusCode::FORBIDDEN, "Write access to repository not granted.\n");
        }
        let name = repo.strip_suffix(".git").unwrap_or(repo);
        let on_disk = self.repo_path(&installation.account, name);
        if !on_disk.exists() {
            return text(StatusCode::NOT_FOUND, "Repository not found.\n");
        }
        let root = &self.config().git_root;
        let path_info = format!("/{}/{}.git/{}", installation.account, name, rest.join("/"));
        git::http_backend(root, &path_info, query, &format!("x-access-token-{}", token.id), req).await
    }

    /// `/_fakehub/…`: the knobs and records, for programs that cannot call the library.
    async fn control(&self, method: &Method, rest: &[&str], req: Request<Incoming>) -> Response<Body> {
        #[derive(Deserialize)]
        struct Failure {
            #[serde(default = "one")]
            n: usize,
            status: u16,
            #[serde(default)]
            headers: BTreeMap<String, String>,
            #[serde(default)]
            message: String,
        }
        fn one() -> usize {
            1
        }
        #[derive(Deserialize)]
        struct WebhookKnob {
            url: Option<String>,
            secret: Option<String>,
        }
        #[derive(Deserialize)]
        struct InstallKnob {
            account: String,
            repository_selection: Option<String>,
            #[serde(default)]
            repositories: Vec<String>,
        }
        let body = match read_json_body(req).await {
            Ok(b) => b,
            Err(response) => return response,
        };
        match (method, rest) {
            (&Method::GET, [which]) => self.records(which),
            (&Method::POST, ["revoke-all"]) => {
                self.revoke_all_tokens();
                empty(StatusCode::NO_CONTENT)
            }
            (&Method::POST, ["expire-all"]) => {
                self.expire_all_tokens();
                empty(StatusCode::NO_CONTENT)
            }
            (&Method::POST, ["fail-next"]) => match serde_json::from_slice::<Failure>(&body) {
                Ok(f) => {
                    let mut failure = crate::InjectedFailure::status(f.status, f.message);
                    for (k, v) in f.headers {
                        failure = failure.with_header(k, v);
                    }
                    self.fail_next_mints(f.n, &failure);
                    empty(StatusCode::NO_CONTENT)
                }
                Err(e) => error(
                    StatusCode::BAD_REQUEST,
                    &format!("expected {{n, status, headers, message}}: {e}"),
                ),
            },
            (&Method::POST, ["webhook"]) => match serde_json::from_slice::<WebhookKnob>(&body) {
                Ok(w) => {
                    self.set_webhook(w.url.as_deref(), w.secret.as_deref());
                    empty(StatusCode::NO_CONTENT)
                }
                Err(e) => error(StatusCode::BAD_REQUEST, &format!("expected {{url, secret}}: {e}")),
            },
            (&Method::POST, ["redeliver"]) => {
                let guid = serde_json::from_slice::<Value>(&body)
                    .ok()
                    .and_then(|v| v.get("delivery")?.as_str().map(ToOwned::to_owned));
                match guid.map(|g| self.redeliver(&g)) {
                    Some(Ok(())) => empty(StatusCode::ACCEPTED),
                    Some(Err(e)) => error(StatusCode::NOT_FOUND, &e.to_string()),
                    None => error(StatusCode::BAD_REQUEST, "expected {\"delivery\": \"<guid>\"}"),
                }
            }
            (_, ["app-keys", ..]) => self.app_key_knob(method, rest, &body),
            (&Method::POST, ["install"]) => match serde_json::from_slice::<InstallKnob>(&body) {
                Ok(i) => {
                    let selection = if i.repository_selection.as_deref() == Some("selected") {
                        crate::RepositorySelection::Selected
                    } else {
                        crate::RepositorySelection::All
                    };
                    let names: Vec<&str> = i.repositories.iter().map(String::as_str).collect();
                    match self.install(&i.account, selection, &names) {
                        Ok(id) => json_response(StatusCode::CREATED, &json!({"installation_id": id})),
                        Err(e) => error(StatusCode::UNPROCESSABLE_ENTITY, &format!("{e:#}")),
                    }
                }
                Err(e) => error(
                    StatusCode::BAD_REQUEST,
                    &format!("expected {{account, repository_selection, repositories}}: {e}"),
                ),
            },
            (&Method::POST, [knob]) => self.knob(knob, &body),
            _ => not_found(),
        }
    }

    /// `POST /_fakehub/app-keys {"pem"}` adds a key, `DELETE /_fakehub/app-keys/ID` deletes one.
    fn app_key_knob(&self, method: &Method, rest: &[&str], body: &[u8]) -> Response<Body> {
        match (method, rest) {
            (&Method::POST, ["app-keys"]) => {
                let pem = serde_json::from_slice::<Value>(body)
                    .ok()
                    .and_then(|v| v.get("pem")?.as_str().map(ToOwned::to_owned));
                match pem.map(|pem| self.add_app_key(&pem)) {
                    Some(Ok(id)) => json_response(StatusCode::CREATED, &json!({"id": id})),
                    Some(Err(e)) => error(StatusCode::UNPROCESSABLE_ENTITY, &format!("{e:#}")),
                    None => error(
                        StatusCode::BAD_REQUEST,
                        "expected {\"pem\": \"<public or private key PEM>\"}",
                    ),
                }
            }
            (&Method::DELETE, ["app-keys", id]) => match id.parse().map(|id| self.delete_app_key(id)) {
                Ok(Ok(true)) => empty(StatusCode::NO_CONTENT),
                Ok(Ok(false)) | Err(_) => not_found(),
                Ok(Err(e)) => error(StatusCode::UNPROCESSABLE_ENTITY, e),
            },
            _ => not_found(),
        }
    }

    fn records(&self, which: &str) -> Response<Body> {
        match which {
            "mints" => {
                let mints: Vec<Value> = self
                    .mints()
                    .iter()
                    .map(|m| json!({"installation_id": m.installation_id, "repositories": m.repositories, "permissions": m.permissions, "status": m.status, "token_id": m.token_id}))
                    .collect();
                json_response(StatusCode::OK, &json!(mints))
            }
            "tokens" => {
                let tokens: Vec<Value> = self
                    .tokens()
                    .iter()
                    .map(|t| json!({"id": t.id, "token": t.token, "installation_id": t.installation_id, "repositories": t.repositories, "permissions": t.permissions, "expires_at": humantime::format_rfc3339_seconds(t.expires_at).to_string(), "revoked": t.revoked, "revoked_at_ms": t.revoked_at.and_then(|at| at.duration_since(std::time::UNIX_EPOCH).ok()).map(|d| d.as_millis())}))
                    .collect();
                json_response(StatusCode::OK, &json!(tokens))
            }
            "requests" => {
                let requests: Vec<Value> = self
                    .requests()
                    .iter()
                    .map(|r| json!({"method": r.method, "path": r.path, "query": r.query, "status": r.status, "auth": format!("{:?}", r.auth), "token_id": r.token_id}))
                    .collect();
                json_response(StatusCode::OK, &json!(requests))
            }
            "deliveries" => {
                let deliveries: Vec<Value> = self
                    .deliveries()
                    .iter()
                    .map(|d| json!({"id": d.id, "guid": d.guid, "event": d.event, "action": d.action, "installation_id": d.installation_id, "url": d.url, "redelivery": d.redelivery, "status_code": d.status_code, "error": d.error, "body": d.body}))
                    .collect();
                json_response(StatusCode::OK, &json!(deliveries))
            }
            "installations" => {
                let installations: Vec<Value> = self
                    .installations()
                    .iter()
                    .map(|i| json!({"id": i.id, "account": i.account, "repository_selection": i.repository_selection.as_str(), "repositories": i.repositories, "permissions": i.permissions, "dynamic": i.dynamic, "suspended": i.suspended, "deleted": i.deleted}))
                    .collect();
                json_response(StatusCode::OK, &json!(installations))
            }
            "app-keys" => {
                let keys: Vec<Value> = self
                    .app_key_fingerprints()
                    .into_iter()
                    .map(|(id, fingerprint)| json!({"id": id, "fingerprint": fingerprint}))
                    .collect();
                json_response(StatusCode::OK, &json!(keys))
            }
            "installation-requests" => {
                let requests: Vec<Value> = self
                    .installation_requests()
                    .iter()
                    .map(|r| json!({"id": r.id, "account": r.account, "requester": r.requester, "repository_selection": r.repository_selection.as_str(), "repositories": r.repositories, "approved_installation": r.approved_installation}))
                    .collect();
                json_response(StatusCode::OK, &json!(requests))
            }
            _ => not_found(),
        }
    }

    /// `POST /_fakehub/<knob>` with a small JSON body.
    fn knob(&self, knob: &str, body: &[u8]) -> Response<Body> {
        let number = |key: &str| -> Option<i64> { serde_json::from_slice::<Value>(body).ok()?.get(key)?.as_i64() };
        let unsigned = |key: &str| number(key).and_then(|n| u64::try_from(n).ok());
        match knob {
            "token-lifetime" => match unsigned("seconds") {
                Some(s) => {
                    self.set_token_lifetime(Duration::from_secs(s));
                    empty(StatusCode::NO_CONTENT)
                }
                None => error(StatusCode::BAD_REQUEST, "expected {\"seconds\": N}"),
            },
            "revoke-latency" => match unsigned("ms") {
                Some(ms) => {
                    self.set_revoke_latency(Duration::from_millis(ms));
                    empty(StatusCode::NO_CONTENT)
                }
                None => error(StatusCode::BAD_REQUEST, "expected {\"ms\": N}"),
            },
            "mint-latency" => match unsigned("ms") {
                Some(ms) => {
                    self.set_mint_latency(Duration::from_millis(ms));
                    empty(StatusCode::NO_CONTENT)
                }
                None => error(StatusCode::BAD_REQUEST, "expected {\"ms\": N}"),
            },
            "date-skew" => match number("seconds") {
                Some(s) => {
                    self.set_date_skew(s);
                    empty(StatusCode::NO_CONTENT)
                }
                None => error(StatusCode::BAD_REQUEST, "expected {\"seconds\": N}"),
            },
            "uninstall" | "suspend" | "unsuspend" => match unsigned("installation_id") {
                Some(id) => {
                    match knob {
                        "uninstall" => self.uninstall(id),
                        "suspend" => self.suspend(id),
                        _ => self.unsuspend(id),
                    }
                    empty(StatusCode::NO_CONTENT)
                }
                None => error(StatusCode::BAD_REQUEST, "expected {\"installation_id\": N}"),
            },
            _ => not_found(),
        }
    }
}

/// The repositories a token request names, all of which the installation must reach; none named means all.
fn select_repositories(installation: &InstallationConfig, request: &TokenRequest) -> Result<Vec<String>, &'static str> {
    if request.repositories.is_none() && request.repository_ids.is_none() {
        return Ok(installation.repositories.clone());
    }
    let mut chosen = Vec::new();
    for name in request.repositories.iter().flatten() {
        let found = installation.repositories.iter().find(|r| r.eq_ignore_ascii_case(name));
        chosen.push(found.ok_or(NOT_ACCESSIBLE)?.clone());
    }
    for id in request.repository_ids.iter().flatten() {
        let found = installation
            .repositories
            .iter()
            .find(|r| repo_id(&installation.account, r) == *id);
        chosen.push(found.ok_or(NOT_ACCESSIBLE)?.clone());
    }
    chosen.sort();
    chosen.dedup();
    Ok(chosen)
}

/// The permissions a token request asks for, each within what the installation granted; none asked means all.
fn grant_permissions(
    installation: &InstallationConfig,
    asked: Option<&BTreeMap<String, String>>,
) -> Result<BTreeMap<String, String>, &'static str> {
    let Some(asked) = asked else {
        return Ok(installation.permissions.clone());
    };
    for (name, level) in asked {
        let allowed = installation
            .permissions
            .get(name)
            .is_some_and(|have| rank(have) >= rank(level));
        if !allowed || rank(level) == 0 {
            return Err("The permissions requested are not granted to this installation.");
        }
    }
    Ok(asked.clone())
}

fn injected_response(failure: &crate::InjectedFailure) -> Response<Body> {
    let status = StatusCode::from_u16(failure.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = error(status, &failure.message);
    for (name, value) in &failure.headers {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

/// `read` < `write` < `admin`; anything else ranks 0 (grants nothing).
fn rank(level: &str) -> u8 {
    match level {
        "read" => 1,
        "write" => 2,
        "admin" => 3,
        _ => 0,
    }
}

/// GitHub's new token format: `ghs_<app id>_` and a JWT-like string, ~520 characters with two dots.
fn new_token(app_id: u64) -> String {
    let mut rng = rand::thread_rng();
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"JWT"}"#);
    let mut payload = [0u8; 165];
    rng.fill_bytes(&mut payload);
    let mut signature = [0u8; 192];
    rng.fill_bytes(&mut signature);
    format!(
        "ghs_{app_id}_{header}.{}.{}",
        URL_SAFE_NO_PAD.encode(payload),
        URL_SAFE_NO_PAD.encode(signature)
    )
}

/// A stable numeric id for a repository, so `repository_ids` and repeated answers agree.
pub(crate) fn repo_id(owner: &str, name: &str) -> u64 {
    // FNV-1a over the lower-cased full name: deterministic across runs, no dependency.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in format!("{owner}/{name}").to_ascii_lowercase().bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash % 1_000_000_000
}

/// An organisation, as GitHub's `simple-user` shape shows it.
pub(crate) fn account_json(login: &str) -> Value {
    account_json_typed(login, "Organization")
}

/// An account of `kind` (`User` or `Organization`).
pub(crate) fn account_json_typed(login: &str, kind: &str) -> Value {
    let prefix = if kind == "User" { "U" } else { "O" };
    json!({
        "login": login,
        "id": repo_id(login, ""),
        "node_id": format!("{prefix}_{}", STANDARD.encode(login)),
        "avatar_url": format!("https://avatars.githubusercontent.com/{login}"),
        "gravatar_id": "",
        "url": format!("https://api.github.com/users/{login}"),
        "html_url": format!("https://github.com/{login}"),
        "type": kind,
        "site_admin": false,
    })
}

pub(crate) fn repository_json(hub: &FakeHub, owner: &str, name: &str) -> Value {
    let id = repo_id(owner, name);
    let default_branch = git::default_branch(&hub.repo_path(owner, name)).unwrap_or_else(|| "main".to_owned());
    json!({
        "id": id,
        "node_id": format!("R_{}", STANDARD.encode(id.to_string())),
        "name": name,
        "full_name": format!("{owner}/{name}"),
        "private": true,
        "owner": account_json_typed(owner, hub.account_type(owner)),
        "html_url": format!("https://github.com/{owner}/{name}"),
        "description": null,
        "fork": false,
        "url": format!("https://api.github.com/repos/{owner}/{name}"),
        "clone_url": format!("https://github.com/{owner}/{name}.git"),
        "default_branch": default_branch,
        "visibility": "private",
        "archived": false,
        "disabled": false,
    })
}

/// A pull request shaped like GitHub's `pull-request` example.
/// With `html_urls_on_fakehub`, the `html_url` is fakehub's own readable page for the pull request.
pub(crate) fn pull_json(hub: &FakeHub, p: &crate::PullRecord) -> Value {
    let (owner, repo, n) = (&p.owner, &p.repo, p.number);
    let api = format!("https://api.github.com/repos/{owner}/{repo}");
    let web = if hub.config().html_urls_on_fakehub {
        hub.base_url()
    } else {
        "https://github.com".to_owned()
    };
    let side = |name: &str, sha: &str| json!({"label": format!("{owner}:{name}"), "ref": name, "sha": sha, "user": account_json(owner), "repo": {"full_name": format!("{owner}/{repo}"), "name": repo}});
    json!({
        "url": format!("{api}/pulls/{n}"),
        "id": repo_id(owner, repo) * 1000 + n,
        "node_id": format!("PR_{}", STANDARD.encode(format!("{owner}/{repo}#{n}"))),
        "html_url": format!("{web}/{owner}/{repo}/pull/{n}"),
        "diff_url": format!("{web}/{owner}/{repo}/pull/{n}.diff"),
        "patch_url": format!("{web}/{owner}/{repo}/pull/{n}.patch"),
        "issue_url": format!("{api}/issues/{n}"),
        "commits_url": format!("{api}/pulls/{n}/commits"),
        "review_comments_url": format!("{api}/pulls/{n}/comments"),
        "review_comment_url": format!("{api}/pulls/comments{{/number}}"),
        "comments_url": format!("{api}/issues/{n}/comments"),
        "statuses_url": format!("{api}/statuses/{}", p.head_sha),
        "number": n,
        "state": p.state,
        "locked": false,
        "title": p.title,
        "user": review::user_json(&p.author),
        "body": p.body,
        "labels": [],
        "milestone": null,
        "assignee": null,
        "created_at": "2026-01-01T00:00:00Z",
        "updated_at": "2026-01-01T00:00:00Z",
        "closed_at": null,
        "merged_at": p.merged.as_ref().map(|_| "2026-01-01T00:00:00Z"),
        "merge_commit_sha": p.merged,
        "head": side(&p.head, &hub.head_now(p)),
        "base": side(&p.base, &p.base_sha),
        "_links": {"html": {"href": format!("https://github.com/{owner}/{repo}/pull/{n}")}},
        "author_association": "NONE",
        "auto_merge": null,
        "draft": p.draft,
        "merged": p.merged.is_some(),
        "mergeable": null,
        "mergeable_state": "unknown",
        "merged_by": null,
        "comments": 0,
        "review_comments": 0,
        "maintainer_can_modify": false,
        "commits": 1,
        "additions": 0,
        "deletions": 0,
        "changed_files": 0,
    })
}

pub(crate) fn installation_json(hub: &FakeHub, installation: &InstallationConfig) -> Value {
    let (account, id) = (&installation.account, installation.id);
    let kind = hub.account_type(account);
    let (selection, dynamic, created_at, suspension) = {
        let state = hub.state();
        let found = state.installations.iter().find(|i| i.config.id == id);
        (
            found.map_or(crate::RepositorySelection::Selected, |i| i.selection),
            found.is_some_and(|i| i.dynamic),
            found.map(|i| i.created_at),
            state.suspended.get(&id).map(|s| (s.by.clone(), s.at)),
        )
    };
    let html_url = if dynamic || hub.config().html_urls_on_fakehub {
        hub.installation_page_url(account, id)
    } else {
        format!("https://github.com/organizations/{account}/settings/installations/{id}")
    };
    let created_at = match created_at {
        Some(at) if dynamic => rfc3339(at),
        _ => "2026-01-01T00:00:00Z".to_owned(),
    };
    let suspended_by = suspension.as_ref().map(|(by, _)| {
        if by.is_empty() {
            account_json_typed(account, kind)
        } else {
            hub.user_json(by)
        }
    });
    json!({
        "id": id,
        "account": account_json_typed(account, kind),
        "app_id": hub.config().app_id,
        "app_slug": hub.config().app_slug,
        "target_id": repo_id(account, ""),
        "target_type": kind,
        "permissions": installation.permissions,
        "events": [],
        "repository_selection": selection.as_str(),
        "access_tokens_url": format!("https://api.github.com/app/installations/{id}/access_tokens"),
        "repositories_url": "https://api.github.com/installation/repositories",
        "html_url": html_url,
        "created_at": created_at,
        "updated_at": created_at,
        "single_file_name": null,
        "has_multiple_single_files": false,
        "single_file_paths": [],
        "suspended_at": suspension.map(|(_, at)| rfc3339(at)),
        "suspended_by": suspended_by,
    })
}

pub(crate) fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

pub(crate) fn unix(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

pub(crate) async fn read_json_body(req: Request<Incoming>) -> Result<Bytes, Response<Body>> {
    match http_body_util::Limited::new(req.into_body(), MAX_JSON_BODY)
        .collect()
        .await
    {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(_) => Err(error(StatusCode::PAYLOAD_TOO_LARGE, "Request body too large")),
    }
}

pub(crate) fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).map_err(|never| match never {}).boxed()
}

pub(crate) fn json_response(status: StatusCode, body: &Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json; charset=utf-8")
        .body(full(serde_json::to_vec(body).expect("JSON values serialise")))
        .expect("static headers are valid")
}

/// GitHub's `basic-error` shape.
pub(crate) fn error(status: StatusCode, message: &str) -> Response<Body> {
    json_response(
        status,
        &json!({"message": message, "documentation_url": DOCS, "status": status.as_str()}),
    )
}

pub(crate) fn not_found() -> Response<Body> {
    error(StatusCode::NOT_FOUND, "Not Found")
}

pub(crate) fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(full(body))
        .expect("static headers are valid")
}

pub(crate) fn empty(status: StatusCode) -> Response<Body> {
    Response::builder()
        .status(status)
        .body(full(Bytes::new()))
        .expect("no headers to be invalid")
}

/// One mint counted in flight until it is answered (or its connection dropped).
struct InFlight(FakeHub);

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut state = self.0.state();
        state.mints_in_flight = state.mints_in_flight.saturating_sub(1);
    }
}

/// An App JWT's claims that GitHub checks at each call.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct JwtClaims {
    iat: Option<i64>,
    exp: Option<i64>,
    iss: Option<Value>,
}

/// A JWT whose signature a key of the App's checked, and its claims.
#[derive(Debug, Clone)]
pub(crate) struct VerifiedJwt {
    /// The fingerprint of the key that signed it.
    key: String,
    claims: JwtClaims,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AppKeyPair, Config, FakeHub};

    fn app_jwt(key: &AppKeyPair, now: i64) -> String {
        let claims = serde_json::json!({"iat": now - 60, "exp": now + 540, "iss": 7});
        let encoding = jsonwebtoken::EncodingKey::from_rsa_pem(key.private_key_pem().as_bytes()).expect("PEM");
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
            &claims,
            &encoding,
        )
        .expect("signed")
    }

    #[test]
    fn a_remembered_jwt_stops_working_once_its_key_is_deleted_and_its_claims_are_checked_each_time() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (first, second) = (
            AppKeyPair::generate().expect("keygen"),
            AppKeyPair::generate().expect("keygen"),
        );
        let hub = FakeHub::new(Config::new(7, first.public_key_pem(), dir.path())).expect("fakehub");
        let now = unix(hub.now());
        let jwt = app_jwt(&first, now);
        assert_eq!(hub.verify_jwt(&jwt), Ok(()));
        assert_eq!(hub.verify_jwt(&jwt), Ok(()), "from memory");
        let forged = format!("{}x", &jwt);
        assert!(hub.verify_jwt(&forged).is_err(), "another signature is checked");

        // GitHub's clock ten minutes on: the remembered JWT has expired.
        hub.set_date_skew(600);
        assert!(hub.verify_jwt(&jwt).is_err(), "its expiry is checked at each call");
        hub.set_date_skew(0);
        assert_eq!(hub.verify_jwt(&jwt), Ok(()));

        hub.add_app_key(&second.public_key_pem()).expect("second key");
        assert_eq!(hub.delete_app_key(1), Ok(true));
        assert!(
            hub.verify_jwt(&jwt).is_err(),
            "a deleted key's JWT stops working at once, remembered or not"
        );
        assert_eq!(hub.verify_jwt(&app_jwt(&second, now)), Ok(()));
    }
}
