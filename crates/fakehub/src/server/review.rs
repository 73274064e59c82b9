//! The review loop's REST API, as GitHub documents it: conversation comments (`issues/{n}/comments`),
//! review comments and replies (`pulls/{n}/comments`), reviews and their events, reading and editing a pull
//! request, merging it (`pulls/{n}/merge`), reading commits, and the contents API. Lists page as GitHub's
//! do (`per_page`, `page`, a `Link` header on `/repositories/{id}/…`).
//!
//! People (reviewers) act through [`FakeHub::review`] and [`FakeHub::comment`], as they would on the web.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    Auth, Body, account_json_typed, empty, error, json_response, not_found, rank, read_json_body, repo_id, rfc3339,
};
use crate::state::{IssueComment, Review, ReviewComment};
use crate::{FakeHub, PullRecord, git};

const DOCS: &str = "https://docs.github.com/rest";

/// A user object: a bot for `…[bot]` logins, else a person.
pub(crate) fn user_json(login: &str) -> Value {
    account_json_typed(login, if login.ends_with("[bot]") { "Bot" } else { "User" })
}

fn validation(message: &str) -> Response<Body> {
    json_response(
        StatusCode::UNPROCESSABLE_ENTITY,
        &json!({"message": "Validation Failed", "errors": [{"code": "custom", "message": message}], "documentation_url": DOCS, "status": "422"}),
    )
}

/// A comment or review as a person makes one on the web page.
#[derive(Debug, Clone)]
pub struct LineComment<'a> {
    pub path: &'a str,
    pub line: u64,
    pub body: &'a str,
}

impl FakeHub {
    fn bot(&self) -> String {
        format!("{}[bot]", self.config().app_slug)
    }

    /// The pull request's head commit now: the branch's tip (it moves with each push).
    pub(crate) fn head_now(&self, p: &PullRecord) -> String {
        git::branch_sha(&self.repo_path(&p.owner, &p.repo), &p.head).unwrap_or_else(|| p.head_sha.clone())
    }

    /// `reviewer` submits a review of pull request `number` on its current head, with `comments` on lines
    /// of the diff: `event` is `COMMENT`, `REQUEST_CHANGES` or `APPROVE`. Returns the review's id.
    #[expect(clippy::too_many_arguments, reason = "what a reviewer fills in on the page")]
    pub fn review(
        &self,
        owner: &str,
        repo: &str,
        number: u64,
        reviewer: &str,
        event: &str,
        body: &str,
        comments: &[LineComment<'_>],
    ) -> Option<u64> {
        let pull = self.pull(owner, repo, number)?;
        let head = self.head_now(&pull);
        let now = self.now();
        let mut state = self.state();
        let id = state.next_comment_id;
        state.next_comment_id += 1 + comments.len() as u64;
        state.reviews.push(Review {
            id,
            owner: pull.owner.clone(),
            repo: pull.repo.clone(),
            number,
            author: reviewer.to_owned(),
            body: body.to_owned(),
            state: review_state(event).to_owned(),
            commit_id: head.clone(),
            submitted_at: Some(now),
        });
        for (i, c) in comments.iter().enumerate() {
            state.review_comments.push(ReviewComment {
                id: id + 1 + i as u64,
                owner: pull.owner.clone(),
                repo: pull.repo.clone(),
                number,
                review_id: Some(id),
                author: reviewer.to_owned(),
                body: c.body.to_owned(),
                path: c.path.to_owned(),
                line: Some(c.line),
                commit_id: head.clone(),
                in_reply_to: None,
                created_at: now,
            });
        }
        drop(state);
        self.send_review_event(&pull, id, reviewer, review_state(event));
        Some(id)
    }

    /// Merge pull request `number`, as its reviewer would on GitHub; sends `pull_request` `closed` (merged).
    /// Returns the merge commit.
    pub fn merge(&self, owner: &str, repo: &str, number: u64) -> Result<String, String> {
        let pull = self.pull(owner, repo, number).ok_or("no such pull request")?;
        self.merge_pull(&pull)
    }

    /// `who` comments on the conversation of issue or pull request `number`. Returns the comment's id.
    pub fn comment(&self, owner: &str, repo: &str, number: u64, who: &str, body: &str) -> u64 {
        let now = self.now();
        let mut state = self.state();
        let id = state.next_comment_id;
        state.next_comment_id += 1;
        state.issue_comments.push(IssueComment {
            id,
            owner: owner.to_owned(),
            repo: repo.to_owned(),
            number,
            author: who.to_owned(),
            body: body.to_owned(),
            created_at: now,
        });
        id
    }

    pub fn issue_comments(&self) -> Vec<IssueComment> {
        self.state().issue_comments.clone()
    }

    pub fn review_comments(&self) -> Vec<ReviewComment> {
        self.state().review_comments.clone()
    }

    pub fn reviews(&self) -> Vec<Review> {
        self.state().reviews.clone()
    }

    pub(crate) fn pull(&self, owner: &str, repo: &str, number: u64) -> Option<PullRecord> {
        self.state()
            .pulls
            .iter()
            .find(|p| p.owner.eq_ignore_ascii_case(owner) && p.repo.eq_ignore_ascii_case(repo) && p.number == number)
            .cloned()
    }

    /// The pull request `n` of a repository the token may use, with the permission a write needs.
    fn pull_for(
        &self,
        owner: &str,
        repo: &str,
        n: &str,
        auth: &Auth,
        write: Option<&str>,
    ) -> Result<PullRecord, Box<Response<Body>>> {
        let (_, token, name) = self.token_repo(owner, repo, auth)?;
        if let Some(permission) = write
            && token.permissions.get(permission).map_or(0, |l| rank(l)) < 2
        {
            return Err(Box::new(error(
                StatusCode::FORBIDDEN,
                "Resource not accessible by integration",
            )));
        }
        let number: u64 = n.parse().map_err(|_| Box::new(not_found()))?;
        self.pull(owner, &name, number).ok_or_else(|| Box::new(not_found()))
    }

    #[expect(clippy::too_many_arguments, reason = "one route's parts, as the router holds them")]
    pub(crate) async fn issue_comments_api(
        &self,
        method: &Method,
        owner: &str,
        repo: &str,
        n: &str,
        query: Option<&str>,
        auth: &Auth,
        req: Request<Incoming>,
    ) -> Response<Body> {
        let write = (*method == Method::POST).then_some("pull_requests");
        let pull = match self.pull_for(owner, repo, n, auth, write) {
            Ok(p) => p,
            Err(r) => return *r,
        };
        match *method {
            Method::GET => {
                // Cloned out first: rendering a comment reads the state again (for fakehub's own URL).
                let comments: Vec<IssueComment> = self
                    .state()
                    .issue_comments
                    .iter()
                    .filter(|c| c.owner == pull.owner && c.repo == pull.repo && c.number == pull.number)
                    .cloned()
                    .collect();
                let items = comments.iter().map(|c| self.issue_comment_json(c)).collect();
                self.page(items, query, &pull, &format!("issues/{}/comments", pull.number))
            }
            Method::POST => {
                #[derive(Deserialize)]
                struct New {
                    body: Option<String>,
                }
                let Ok(new) = read_json::<New>(req).await else {
                    return error(StatusCode::BAD_REQUEST, "Problems parsing JSON");
                };
                let Some(body) = new.body.filter(|b| !b.is_empty()) else {
                    return validation("body is missing");
                };
                let id = self.comment(&pull.owner, &pull.repo, pull.number, &self.bot(), &body);
                let comment = self.state().issue_comments.iter().find(|c| c.id == id).cloned();
                let comment = comment.expect("just added");
                self.created(
                    &self.issue_comment_json(&comment),
                    &format!("/repos/{}/{}/issues/comments/{id}", pull.owner, pull.repo),
                )
            }
            _ => not_found(),
        }
    }

    pub(crate) fn get_pull(&self, owner: &str, repo: &str, n: &str, auth: &Auth) -> Response<Body> {
        match self.pull_for(owner, repo, n, auth, None) {
            Ok(p) => json_response(StatusCode::OK, &super::pull_json(self, &p)),
            Err(r) => *r,
        }
    }

    pub(crate) async fn patch_pull(
        &self,
        owner: &str,
        repo: &str,
        n: &str,
        auth: &Auth,
        req: Request<Incoming>,
    ) -> Response<Body> {
        #[derive(Deserialize)]
        struct Patch {
            title: Option<String>,
            body: Option<String>,
            state: Option<String>,
            base: Option<String>,
        }
        let pull = match self.pull_for(owner, repo, n, auth, Some("pull_requests")) {
            Ok(p) => p,
            Err(r) => return *r,
        };
        let Ok(patch) = read_json::<Patch>(req).await else {
            return error(StatusCode::BAD_REQUEST, "Problems parsing JSON");
        };
        if patch.state.as_deref().is_some_and(|s| s != "open" && s != "closed") {
            return validation("state must be open or closed");
        }
        let updated = {
            let mut state = self.state();
            let Some(p) = state
                .pulls
                .iter_mut()
                .find(|p| p.owner == pull.owner && p.repo == pull.repo && p.number == pull.number)
            else {
                return not_found();
            };
            if let Some(title) = patch.title {
                p.title = title;
            }
            if let Some(body) = patch.body {
                p.body = body;
            }
            if let Some(s) = patch.state {
                p.state = s;
            }
            if let Some(base) = patch.base {
                p.base = base;
            }
            p.clone()
        };
        json_response(StatusCode::OK, &super::pull_json(self, &updated))
    }

    #[expect(clippy::too_many_arguments, reason = "one route's parts, as the router holds them")]
    pub(crate) async fn review_comments_api(
        &self,
        method: &Method,
        owner: &str,
        repo: &str,
        n: &str,
        reply_to: Option<&str>,
        query: Option<&str>,
        auth: &Auth,
        req: Request<Incoming>,
    ) -> Response<Body> {
        #[derive(Deserialize)]
        struct New {
            body: Option<String>,
            commit_id: Option<String>,
            path: Option<String>,
            line: Option<u64>,
            in_reply_to: Option<u64>,
        }
        let write = (*method == Method::POST).then_some("pull_requests");
        let pull = match self.pull_for(owner, repo, n, auth, write) {
            Ok(p) => p,
            Err(r) => return *r,
        };
        if *method == Method::GET && reply_to.is_none() {
            let comments: Vec<ReviewComment> = self
                .state()
                .review_comments
                .iter()
                .filter(|c| c.owner == pull.owner && c.repo == pull.repo && c.number == pull.number)
                .cloned()
                .collect();
            let items = comments.iter().map(|c| self.review_comment_json(c)).collect();
            return self.page(items, query, &pull, &format!("pulls/{}/comments", pull.number));
        }
        if *method != Method::POST {
            return not_found();
        }
        let Ok(new) = read_json::<New>(req).await else {
            return error(StatusCode::BAD_REQUEST, "Problems parsing JSON");
        };
        let Some(body) = new.body.filter(|b| !b.is_empty()) else {
            return validation("body is missing");
        };
        let parent_id = match reply_to {
            Some(id) => match id.parse::<u64>() {
                Ok(id) => Some(id),
                Err(_) => return not_found(),
            },
            None => new.in_reply_to,
        };
        let parent = parent_id.map(|id| {
            self.state()
                .review_comments
                .iter()
                .find(|c| c.id == id && c.number == pull.number)
                .cloned()
        });
        let (path, line, commit_id) = match parent {
            Some(None) => return not_found(),
            Some(Some(parent)) => (parent.path, parent.line, self.head_now(&pull)),
            None => {
                let (Some(path), Some(line), Some(commit_id)) = (new.path, new.line, new.commit_id) else {
                    return validation("path, line and commit_id are required");
                };
                (path, Some(line), commit_id)
            }
        };
        let now = self.now();
        let comment = {
            let mut state = self.state();
            let id = state.next_comment_id;
            state.next_comment_id += 1;
            let comment = ReviewComment {
                id,
                owner: pull.owner.clone(),
                repo: pull.repo.clone(),
                number: pull.number,
                review_id: None,
                author: self.bot(),
                body,
                path,
                line,
                commit_id,
                in_reply_to: parent_id,
                created_at: now,
            };
            state.review_comments.push(comment.clone());
            comment
        };
        self.created(
            &self.review_comment_json(&comment),
            &format!("/repos/{}/{}/pulls/comments/{}", pull.owner, pull.repo, comment.id),
        )
    }

    #[expect(clippy::too_many_arguments, reason = "one route's parts, as the router holds them")]
    pub(crate) async fn reviews_api(
        &self,
        method: &Method,
        owner: &str,
        repo: &str,
        n: &str,
        event_of: Option<&str>,
        query: Option<&str>,
        auth: &Auth,
        req: Request<Incoming>,
    ) -> Response<Body> {
        #[derive(Deserialize)]
        struct NewComment {
            path: String,
            line: Option<u64>,
            body: String,
        }
        #[derive(Deserialize)]
        struct New {
            body: Option<String>,
            event: Option<String>,
            #[serde(default)]
            comments: Vec<NewComment>,
        }
        let write = (*method == Method::POST).then_some("pull_requests");
        let pull = match self.pull_for(owner, repo, n, auth, write) {
            Ok(p) => p,
            Err(r) => return *r,
        };
        if *method == Method::GET && event_of.is_none() {
            let reviews: Vec<Review> = self
                .state()
                .reviews
                .iter()
                .filter(|r| r.owner == pull.owner && r.repo == pull.repo && r.number == pull.number)
                .cloned()
                .collect();
            let items = reviews.iter().map(|r| self.review_json(r)).collect();
            return self.page(items, query, &pull, &format!("pulls/{}/reviews", pull.number));
        }
        if *method != Method::POST {
            return not_found();
        }
        let Ok(new) = read_json::<New>(req).await else {
            return error(StatusCode::BAD_REQUEST, "Problems parsing JSON");
        };
        let event = new.event.as_deref().map(str::to_ascii_uppercase);
        let bot = self.bot();
        if pull.author == bot && matches!(event.as_deref(), Some("APPROVE" | "REQUEST_CHANGES")) {
            return validation("Can not approve your own pull request");
        }
        let now = self.now();
        let head = self.head_now(&pull);
        let review = {
            let mut state = self.state();
            if let Some(id) = event_of {
                let Some(review) = state
                    .reviews
                    .iter_mut()
                    .find(|r| r.id.to_string() == id && r.number == pull.number && r.state == "PENDING")
                else {
                    return not_found();
                };
                review_state(event.as_deref().unwrap_or("COMMENT")).clone_into(&mut review.state);
                review.submitted_at = Some(now);
                if let Some(body) = new.body {
                    review.body = body;
                }
                review.clone()
            } else {
                let id = state.next_comment_id;
                state.next_comment_id += 1 + new.comments.len() as u64;
                let review = Review {
                    id,
                    owner: pull.owner.clone(),
                    repo: pull.repo.clone(),
                    number: pull.number,
                    author: bot.clone(),
                    body: new.body.unwrap_or_default(),
                    state: event.as_deref().map_or("PENDING", review_state).to_owned(),
                    commit_id: head.clone(),
                    submitted_at: event.is_some().then_some(now),
                };
                for (i, c) in new.comments.into_iter().enumerate() {
                    state.review_comments.push(ReviewComment {
                        id: id + 1 + i as u64,
                        owner: pull.owner.clone(),
                        repo: pull.repo.clone(),
                        number: pull.number,
                        review_id: Some(id),
                        author: bot.clone(),
                        body: c.body,
                        path: c.path,
                        line: c.line,
                        commit_id: head.clone(),
                        in_reply_to: None,
                        created_at: now,
                    });
                }
                state.reviews.push(review.clone());
                review
            }
        };
        json_response(StatusCode::OK, &self.review_json(&review))
    }

    /// `PUT …/pulls/{n}/merge` merges the head into the base with a merge commit; `GET` answers 204 if merged.
    pub(crate) async fn merge_api(
        &self,
        method: &Method,
        owner: &str,
        repo: &str,
        n: &str,
        auth: &Auth,
        req: Request<Incoming>,
    ) -> Response<Body> {
        let write = (*method == Method::PUT).then_some("contents");
        let pull = match self.pull_for(owner, repo, n, auth, write) {
            Ok(p) => p,
            Err(r) => return *r,
        };
        if *method == Method::GET {
            return if pull.merged.is_some() {
                empty(StatusCode::NO_CONTENT)
            } else {
                not_found()
            };
        }
        if *method != Method::PUT {
            return not_found();
        }
        let _ = read_json_body(req).await;
        match self.merge_pull(&pull) {
            Ok(sha) => json_response(
                StatusCode::OK,
                &json!({"sha": sha, "merged": true, "message": "Pull Request successfully merged"}),
            ),
            Err(message) => error(StatusCode::METHOD_NOT_ALLOWED, &message),
        }
    }

    /// Merge a pull request: a merge commit of head into base, the base moved to it.
    pub(crate) fn merge_pull(&self, pull: &PullRecord) -> Result<String, String> {
        if pull.merged.is_some() || pull.state != "open" {
            return Err("Pull Request is not mergeable".into());
        }
        let path = self.repo_path(&pull.owner, &pull.repo);
        let sha = git::merge(
            &path,
            &pull.base,
            &pull.head,
            &format!("Merge pull request #{} from {}", pull.number, pull.head),
        )
        .map_err(|e| format!("Pull Request is not mergeable: {e}"))?;
        let mut state = self.state();
        if let Some(p) = state
            .pulls
            .iter_mut()
            .find(|p| p.owner == pull.owner && p.repo == pull.repo && p.number == pull.number)
        {
            p.merged = Some(sha.clone());
            p.state = "closed".into();
        }
        let merged = state
            .pulls
            .iter()
            .find(|p| p.owner == pull.owner && p.repo == pull.repo && p.number == pull.number)
            .cloned();
        drop(state);
        if let Some(merged) = merged {
            self.send_pull_request_event("closed", &merged);
        }
        Ok(sha)
    }

    pub(crate) fn commit_api(&self, owner: &str, repo: &str, sha: &str, auth: &Auth) -> Response<Body> {
        let (installation, _, name) = match self.token_repo(owner, repo, auth) {
            Ok(found) => found,
            Err(r) => return *r,
        };
        match git::commit_info(&self.repo_path(&installation.account, &name), sha) {
            Some((sha, date, message)) => json_response(
                StatusCode::OK,
                &json!({"sha": sha, "node_id": format!("C_{sha}"), "commit": {"message": message, "author": {"date": date}, "committer": {"date": date}}}),
            ),
            None => error(
                StatusCode::UNPROCESSABLE_ENTITY,
                &format!("No commit found for SHA: {sha}"),
            ),
        }
    }

    /// `GET`/`PUT …/contents/{path}`: a file's content, or a commit writing it to a branch.
    #[expect(clippy::too_many_arguments, reason = "one route's parts, as the router holds them")]
    pub(crate) async fn contents_api(
        &self,
        method: &Method,
        owner: &str,
        repo: &str,
        file: &[&str],
        query: Option<&str>,
        auth: &Auth,
        req: Request<Incoming>,
    ) -> Response<Body> {
        let (installation, token, name) = match self.token_repo(owner, repo, auth) {
            Ok(found) => found,
            Err(r) => return *r,
        };
        let path = self.repo_path(&installation.account, &name);
        let file = file.join("/");
        let default = git::default_branch(&path).unwrap_or_else(|| "main".into());
        match *method {
            Method::GET => {
                let git_ref = query
                    .and_then(|q| {
                        form_urlencoded::parse(q.as_bytes())
                            .find(|(k, _)| k == "ref")
                            .map(|(_, v)| v.into_owned())
                    })
                    .unwrap_or(default);
                match git::read_file(&path, &git_ref, &file) {
                    Some((content, sha)) => json_response(
                        StatusCode::OK,
                        &json!({"type": "file", "encoding": "base64", "size": content.len(), "name": file.rsplit('/').next(), "path": file, "sha": sha, "content": STANDARD.encode(&content)}),
                    ),
                    None => not_found(),
                }
            }
            Method::PUT => {
                #[derive(Deserialize)]
                struct Put {
                    message: String,
                    content: String,
                    sha: Option<String>,
                    branch: Option<String>,
                }
                if token.permissions.get("contents").map_or(0, |l| rank(l)) < 2 {
                    return error(StatusCode::FORBIDDEN, "Resource not accessible by integration");
                }
                let Ok(put) = read_json::<Put>(req).await else {
                    return validation("message and content are required");
                };
                let Ok(content) = STANDARD.decode(put.content.replace('\n', "")) else {
                    return validation("content is not valid Base64");
                };
                let branch = put.branch.unwrap_or(default);
                let existing = git::read_file(&path, &branch, &file).map(|(_, sha)| sha);
                if existing.is_some() && existing != put.sha {
                    return validation("\"sha\" wasn't supplied.");
                }
                match git::write_file(&path, &branch, &file, &content, &put.message) {
                    Ok((commit, blob)) => json_response(
                        if existing.is_some() {
                            StatusCode::OK
                        } else {
                            StatusCode::CREATED
                        },
                        &json!({"content": {"name": file.rsplit('/').next(), "path": file, "sha": blob, "type": "file"}, "commit": {"sha": commit, "message": put.message}}),
                    ),
                    Err(e) => error(StatusCode::CONFLICT, &e),
                }
            }
            _ => not_found(),
        }
    }

    /// One page of `items`, with GitHub's `Link` header (on `/repositories/{id}/…`, as GitHub links).
    fn page(&self, items: Vec<Value>, query: Option<&str>, pull: &PullRecord, tail: &str) -> Response<Body> {
        let param = |key: &str| -> Option<usize> {
            form_urlencoded::parse(query?.as_bytes())
                .find(|(k, _)| k == key)
                .and_then(|(_, v)| v.parse().ok())
        };
        let per_page = param("per_page").unwrap_or(30).clamp(1, 100);
        let page = param("page").unwrap_or(1).max(1);
        let last = items.len().div_ceil(per_page).max(1);
        let slice: Vec<Value> = items.into_iter().skip((page - 1) * per_page).take(per_page).collect();
        let mut response = json_response(StatusCode::OK, &Value::Array(slice));
        let base = format!(
            "{}/repositories/{}/{tail}",
            self.base_url(),
            repo_id(&pull.owner, &pull.repo)
        );
        let link = |n: usize, rel: &str| format!("<{base}?per_page={per_page}&page={n}>; rel=\"{rel}\"");
        let mut links = Vec::new();
        if page > 1 {
            links.push(link(page - 1, "prev"));
        }
        if page < last {
            links.push(link(page + 1, "next"));
            links.push(link(last, "last"));
        }
        if page > 1 {
            links.push(link(1, "first"));
        }
        if !links.is_empty()
            && let Ok(value) = HeaderValue::from_str(&links.join(", "))
        {
            response.headers_mut().insert(header::LINK, value);
        }
        response
    }

    fn created(&self, body: &Value, path: &str) -> Response<Body> {
        let mut response = json_response(StatusCode::CREATED, body);
        if let Ok(location) = HeaderValue::from_str(&format!("{}{path}", self.base_url())) {
            response.headers_mut().insert(header::LOCATION, location);
        }
        response
    }

    fn issue_comment_json(&self, c: &IssueComment) -> Value {
        let api = format!("{}/repos/{}/{}", self.base_url(), c.owner, c.repo);
        json!({
            "id": c.id,
            "node_id": node_id("IC", c.id),
            "url": format!("{api}/issues/comments/{}", c.id),
            "html_url": format!("https://github.com/{}/{}/pull/{}#issuecomment-{}", c.owner, c.repo, c.number, c.id),
            "issue_url": format!("{api}/issues/{}", c.number),
            "body": c.body,
            "user": user_json(&c.author),
            "created_at": rfc3339(c.created_at),
            "updated_at": rfc3339(c.created_at),
            "author_association": "NONE",
        })
    }

    fn review_comment_json(&self, c: &ReviewComment) -> Value {
        let api = format!("{}/repos/{}/{}", self.base_url(), c.owner, c.repo);
        let mut value = json!({
            "id": c.id,
            "node_id": node_id("PRRC", c.id),
            "url": format!("{api}/pulls/comments/{}", c.id),
            "pull_request_review_id": c.review_id,
            "diff_hunk": "",
            "path": c.path,
            "line": c.line,
            "original_line": c.line,
            "side": "RIGHT",
            "commit_id": c.commit_id,
            "original_commit_id": c.commit_id,
            "user": user_json(&c.author),
            "body": c.body,
            "created_at": rfc3339(c.created_at),
            "updated_at": rfc3339(c.created_at),
            "html_url": format!("https://github.com/{}/{}/pull/{}#discussion_r{}", c.owner, c.repo, c.number, c.id),
            "pull_request_url": format!("{api}/pulls/{}", c.number),
            "author_association": "NONE",
        });
        if let Some(parent) = c.in_reply_to {
            value["in_reply_to_id"] = json!(parent);
        }
        value
    }

    fn review_json(&self, r: &Review) -> Value {
        json!({
            "id": r.id,
            "node_id": node_id("PRR", r.id),
            "user": user_json(&r.author),
            "body": r.body,
            "state": r.state,
            "commit_id": r.commit_id,
            "submitted_at": r.submitted_at.map(rfc3339),
            "html_url": format!("https://github.com/{}/{}/pull/{}#pullrequestreview-{}", r.owner, r.repo, r.number, r.id),
            "pull_request_url": format!("{}/repos/{}/{}/pulls/{}", self.base_url(), r.owner, r.repo, r.number),
            "author_association": "NONE",
        })
    }
}

/// `COMMENT` → `COMMENTED`, and so on.
fn review_state(event: &str) -> &'static str {
    match event.to_ascii_uppercase().as_str() {
        "APPROVE" => "APPROVED",
        "REQUEST_CHANGES" => "CHANGES_REQUESTED",
        _ => "COMMENTED",
    }
}

pub(crate) fn node_id(kind: &str, id: u64) -> String {
    format!("{kind}_{}", STANDARD.encode(id.to_string()))
}

async fn read_json<T: serde::de::DeserializeOwned>(req: Request<Incoming>) -> Result<T, ()> {
    let body = read_json_body(req).await.map_err(|_| ())?;
    serde_json::from_slice(&body).map_err(|_| ())
}
