//! What mintd lets through to GitHub's API for the sandbox: only its one repository, every read, and
//! writes from an allow-list matched by method and path template (REST) or by mutation field (GraphQL).
//! Merging, writes to branches outside the agent's prefix, deleting refs and repository settings are
//! refused with the reason, before anything is sent to GitHub.
//!
//! Everything here is synchronous and pure, so it is unit-tested and fuzzed as it is (`fuzz/fuzz_targets/
//! api_policy.rs`). What GitHub is sent is what was judged: the REST path is rebuilt from the decoded
//! segments this module checked, a write carries no query string (Rails would merge one into the body's
//! parameters), and a GraphQL document is judged whole, every operation in it, whatever `operationName`
//! picks.

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use apollo_parser::cst::{self, CstNode};
use http::{HeaderMap, Method};
use serde_json::Value;

/// A request body the API endpoint reads (a GraphQL document and its variables, a comment): GitHub caps a
/// comment at 65,536 characters, well inside this even when every one is escaped.
pub const MAX_BODY: usize = 1024 * 1024;
/// GraphQL documents are parsed with these limits: `gh pr view`'s largest query is about 600 tokens.
const GRAPHQL_TOKEN_LIMIT: usize = 20_000;
const GRAPHQL_RECURSION_LIMIT: usize = 64;
/// Nesting of JSON values (bodies, GraphQL variables) mintd reads.
const MAX_JSON_DEPTH: usize = 32;

/// Headers that ask a server to take the request for another method: never sent on, and refused.
const METHOD_OVERRIDES: [&str; 3] = ["x-http-method-override", "x-http-method", "x-method-override"];
/// Query keys that could name another repository (Rails merges query parameters into the request's).
const REPOSITORY_KEYS: [&str; 7] = [
    "owner",
    "repo",
    "repository",
    "repository_id",
    "repo_id",
    "full_name",
    "_method",
];
/// First path segments under `/repos/{owner}/{repo}/` that configure the repository.
const SETTINGS: [&str; 22] = [
    "hooks",
    "keys",
    "collaborators",
    "invitations",
    "branches",
    "rulesets",
    "actions",
    "environments",
    "topics",
    "vulnerability-alerts",
    "automated-security-fixes",
    "private-vulnerability-reporting",
    "pages",
    "transfer",
    "autolinks",
    "properties",
    "secret-scanning",
    "code-scanning",
    "dependabot",
    "interaction-limits",
    "tags",
    "forks",
];

/// First path segments of GitHub's API outside `/repos/` (refused: not the repository's).
const ELSEWHERE: [&str; 16] = [
    "repositories",
    "user",
    "users",
    "orgs",
    "search",
    "rate_limit",
    "installation",
    "app",
    "gists",
    "notifications",
    "meta",
    "enterprises",
    "teams",
    "projects",
    "issues",
    "graphql",
];

/// The repository and branch prefix requests are judged against.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    pub owner: &'a str,
    pub name: &'a str,
    /// The agent's branches: `adagent/`.
    pub prefix: &'a str,
}

/// Which of GitHub's API endpoints a path is, before any judgement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `/repos/…` (or `/api/v3/repos/…`).
    Rest,
    /// `POST /graphql` (or GitHub Enterprise Server's `/api/graphql`).
    GraphQl,
    /// Another of GitHub's API paths (`/user`, `/orgs/…`, `/repositories/…`): refused, it is not the
    /// repository's.
    Elsewhere,
}

/// Whether `path` is one of GitHub's API paths, and which kind; `None` for anything else (mintd's own
/// routes, git's).
pub fn endpoint(path: &str) -> Option<Endpoint> {
    let lower = path.to_ascii_lowercase();
    if lower == "/graphql" || lower == "/api/graphql" {
        return Some(Endpoint::GraphQl);
    }
    let rest = lower
        .strip_prefix("/api/v3")
        .filter(|r| r.is_empty() || r.starts_with('/'));
    let in_api = rest.is_some();
    let rest = rest.unwrap_or(&lower);
    if rest == "/repos" || rest.starts_with("/repos/") {
        return Some(Endpoint::Rest);
    }
    let first = rest.trim_start_matches('/').split(['/', '?']).next().unwrap_or("");
    (in_api || lower.starts_with("/api/") || ELSEWHERE.contains(&first)).then_some(Endpoint::Elsewhere)
}

/// Why a request was refused: a label for `/metrics`, and the reason the client is shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub label: &'static str,
    pub reason: String,
}

impl Refusal {
    fn new(label: &'static str, reason: impl Into<String>) -> Self {
        Self {
            label,
            reason: reason.into(),
        }
    }

    fn merging(what: &str) -> Self {
        Self::new(
            "merging",
            format!("{what}: merging is refused: mint never merges; a person reviews and merges the pull request"),
        )
    }

    fn outside(what: &str, prefix: &str) -> Self {
        Self::new(
            "outside_agent_branches",
            format!("{what}: outside the agent's branches: only {prefix}* may be written"),
        )
    }

    fn not_listed(what: &str) -> Self {
        Self::new(
            "not_allowed",
            format!(
                "{what} is not on mint's list of allowed writes (comments, replies, reviews that do not approve, title, body and draft state of the agent's pull requests, and the agent's branches): see docs/modes.md"
            ),
        )
    }

    fn malformed(reason: impl Into<String>) -> Self {
        Self::new("malformed", reason)
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

/// A pull request whose head must be one of the agent's branches before the write may go on: only GitHub
/// knows, so the caller asks it ([`head_refusal`] judges the answer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PullToCheck {
    Number(u64),
    /// A GraphQL node id.
    Node(String),
}

/// A request the policy let through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judged {
    /// A read: nothing is written at GitHub.
    pub read: bool,
    /// What to send GitHub (REST): the path rebuilt from the checked segments, and the query of a read.
    /// `None` for GraphQL.
    pub path_and_query: Option<String>,
    /// Pull requests whose head must be checked first.
    pub pulls: Vec<PullToCheck>,
    /// What it is, for logs and `/metrics` (`read`, `comment`, `graphql_query`, …).
    pub what: &'static str,
}

/// Judge one request to the API endpoint. `path` is as received (percent-encoded), `body` whole.
pub fn judge(
    method: &Method,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
    scope: &Scope<'_>,
) -> Result<Judged, Refusal> {
    if let Some(name) = METHOD_OVERRIDES.iter().find(|h| headers.contains_key(**h)) {
        return Err(Refusal::new(
            "method_override",
            format!("the {name} header is refused: send the request with the method it means"),
        ));
    }
    let encodings = headers
        .get_all(http::header::CONTENT_ENCODING)
        .iter()
        .any(|v| !v.as_bytes().trim_ascii().eq_ignore_ascii_case(b"identity"));
    if encodings && !body.is_empty() {
        return Err(Refusal::malformed(
            "a compressed request body is refused: mint reads what it sends on, so send it uncompressed",
        ));
    }
    match endpoint(path) {
        Some(Endpoint::Rest) => judge_rest(method, path, query, body, scope),
        Some(Endpoint::GraphQl) => {
            if *method != Method::POST {
                return Err(Refusal::not_listed(&format!("{method} on GraphQL (GitHub takes POST)")));
            }
            if query.is_some_and(|q| !q.is_empty()) {
                return Err(Refusal::malformed(
                    "a query string on /graphql is refused: send the document and its variables in the body",
                ));
            }
            judge_graphql(body, scope)
        }
        Some(Endpoint::Elsewhere) | None => Err(Refusal::new(
            "other_repository",
            format!(
                "mint serves GitHub's API for {}/{} only: /repos/{}/{}/… and POST /graphql",
                scope.owner, scope.name, scope.owner, scope.name
            ),
        )),
    }
}

fn other_repository(scope: &Scope<'_>) -> Refusal {
    Refusal::new(
        "other_repository",
        format!(
            "mint serves GitHub's API for {}/{} only: another repository is refused",
            scope.owner, scope.name
        ),
    )
}

/// `path` split into decoded segments: every segment non-empty, not `.` or `..`, with no encoded `/` or
/// `\` and no control character.
fn segments(path: &str) -> Result<Vec<String>, Refusal> {
    let Some(path) = path.strip_prefix('/') else {
        return Err(Refusal::malformed("the path must start with /"));
    };
    path.split('/').map(decode_segment).collect()
}

fn decode_segment(raw: &str) -> Result<String, Refusal> {
    let trick = |why: &str| Refusal::malformed(format!("path segment {:?} is refused: {why}", truncate(raw)));
    let mut bytes = Vec::with_capacity(raw.len());
    let mut iter = raw.bytes();
    while let Some(b) = iter.next() {
        if b == b'%' {
            let (Some(h), Some(l)) = (iter.next(), iter.next()) else {
                return Err(trick("a bad percent-encoding"));
            };
            let hex = |c: u8| char::from(c).to_digit(16);
            let (Some(h), Some(l)) = (hex(h), hex(l)) else {
                return Err(trick("a bad percent-encoding"));
            };
            bytes.push(u8::try_from(h * 16 + l).expect("two hex digits are a byte"));
        } else {
            bytes.push(b);
        }
    }
    let segment = String::from_utf8(bytes).map_err(|_| trick("not UTF-8"))?;
    if segment.is_empty() {
        return Err(trick("an empty segment (a double or trailing slash)"));
    }
    if segment == "." || segment == ".." {
        return Err(trick("a dot segment"));
    }
    if segment.contains(['/', '\\']) {
        return Err(trick("an encoded slash or backslash: send slashes as they are"));
    }
    if segment.chars().any(char::is_control) {
        return Err(trick("a control character"));
    }
    Ok(segment)
}

/// The segment percent-encoded again: everything but RFC 3986's unreserved characters.
fn encode_segment(segment: &str, out: &mut String) {
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            const HEX: &[u8; 16] = b"0123456789ABCDEF";
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 15)]));
        }
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(100).collect()
}

fn judge_rest(
    method: &Method,
    path: &str,
    query: Option<&str>,
    body: &[u8],
    scope: &Scope<'_>,
) -> Result<Judged, Refusal> {
    let mut segs = segments(path)?;
    if segs.len() >= 2 && segs[0].eq_ignore_ascii_case("api") && segs[1].eq_ignore_ascii_case("v3") {
        segs.drain(..2);
    }
    let [repos, owner, name, rest @ ..] = segs.as_slice() else {
        return Err(Refusal::new(
            "other_repository",
            format!(
                "mint serves GitHub's API for one repository: /repos/{}/{}/…",
                scope.owner, scope.name
            ),
        ));
    };
    if !repos.eq_ignore_ascii_case("repos")
        || !owner.eq_ignore_ascii_case(scope.owner)
        || !name.eq_ignore_ascii_case(scope.name)
    {
        return Err(other_repository(scope));
    }
    let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
    let mut upstream = String::with_capacity(path.len() + 16);
    for segment in ["repos", scope.owner, scope.name]
        .into_iter()
        .chain(rest.iter().copied())
    {
        upstream.push('/');
        encode_segment(segment, &mut upstream);
    }
    let query = query.filter(|q| !q.is_empty());
    if *method == Method::GET || *method == Method::HEAD {
        if let Some(query) = query {
            check_read_query(query)?;
            upstream.push('?');
            upstream.push_str(query);
        }
        return Ok(Judged {
            read: true,
            path_and_query: Some(upstream),
            pulls: Vec::new(),
            what: "read",
        });
    }
    let what = describe(method, &rest);
    let write = write_rule(method, &rest, scope, &what)?;
    if query.is_some() {
        return Err(Refusal::malformed(format!(
            "{what}: a query string on a write is refused (GitHub would read it as parameters): send them in the JSON body"
        )));
    }
    let fields = json_object(body, &what)?;
    let pulls = check_write_body(write, &fields, scope, &what)?;
    Ok(Judged {
        read: false,
        path_and_query: Some(upstream),
        pulls,
        what: write.label(),
    })
}

/// `PUT …/pulls/1/merge`, for messages.
fn describe(method: &Method, rest: &[&str]) -> String {
    let mut path = String::from("…");
    for segment in rest {
        path.push('/');
        path.push_str(&truncate(segment));
    }
    format!("{method} {path}")
}

/// Reads may carry a query (pages, filters), but none that names a repository or a method.
fn check_read_query(query: &str) -> Result<(), Refusal> {
    if query.contains(';') {
        return Err(Refusal::malformed(
            "a ';' in the query is refused (some servers split parameters on it): use '&'",
        ));
    }
    for (key, _) in form_urlencoded::parse(query.as_bytes()) {
        let base = key.split('[').next().unwrap_or("").trim().to_ascii_lowercase();
        if REPOSITORY_KEYS.contains(&base.as_str()) {
            return Err(Refusal::new(
                "other_repository",
                format!(
                    "the query parameter {:?} is refused: the repository is the path's, and only it",
                    truncate(&key)
                ),
            ));
        }
    }
    Ok(())
}

fn is_number(s: &str) -> bool {
    !s.is_empty() && s.len() <= 19 && s.bytes().all(|b| b.is_ascii_digit())
}

/// The writes mint allows, by method and path template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Write {
    /// `POST issues/{n}/comments`: a conversation comment on an issue or pull request.
    Comment,
    /// `POST pulls/{n}/comments`: a review comment (or a reply, with `in_reply_to`).
    ReviewComment,
    /// `POST pulls/{n}/comments/{id}/replies`.
    ReviewReply,
    /// `POST pulls/{n}/reviews`: a review, not an approval.
    Review,
    /// `POST pulls/{n}/reviews/{id}/events`: submitting a review, not as an approval.
    ReviewEvent,
    /// `PATCH pulls/{n}`: title and body of one of the agent's pull requests.
    UpdatePull(u64),
    /// `POST pulls`: a pull request from one of the agent's branches.
    CreatePull,
    /// `PUT`/`DELETE contents/{path}` on one of the agent's branches.
    Contents,
    /// `POST git/blobs|trees|commits`: objects no branch points at.
    GitObject,
    /// `POST git/refs`: creating one of the agent's branches.
    CreateRef,
    /// `PATCH git/refs/heads/{prefix…}`.
    UpdateRef,
}

impl Write {
    fn label(self) -> &'static str {
        match self {
            Write::Comment => "comment",
            Write::ReviewComment => "review_comment",
            Write::ReviewReply => "review_reply",
            Write::Review | Write::ReviewEvent => "review",
            Write::UpdatePull(_) => "update_pull",
            Write::CreatePull => "create_pull",
            Write::Contents => "contents",
            Write::GitObject => "git_object",
            Write::CreateRef | Write::UpdateRef => "git_ref",
        }
    }
}

fn write_rule(method: &Method, rest: &[&str], scope: &Scope<'_>, what: &str) -> Result<Write, Refusal> {
    let (post, put, patch, delete) = (
        *method == Method::POST,
        *method == Method::PUT,
        *method == Method::PATCH,
        *method == Method::DELETE,
    );
    if !(post || put || patch || delete) {
        return Err(Refusal::not_listed(what));
    }
    let rule = match rest {
        ["issues", n, "comments"] if post && is_number(n) => Write::Comment,
        ["pulls", n, "comments"] if post && is_number(n) => Write::ReviewComment,
        ["pulls", n, "comments", id, "replies"] if post && is_number(n) && is_number(id) => Write::ReviewReply,
        ["pulls", n, "reviews"] if post && is_number(n) => Write::Review,
        ["pulls", n, "reviews", id, "events"] if post && is_number(n) && is_number(id) => Write::ReviewEvent,
        ["pulls", n] if patch && is_number(n) => Write::UpdatePull(n.parse().map_err(|_| Refusal::not_listed(what))?),
        ["pulls"] if post => Write::CreatePull,
        ["contents", _, ..] if put || delete => Write::Contents,
        ["git", "blobs" | "trees" | "commits"] if post => Write::GitObject,
        ["git", "refs"] if post => Write::CreateRef,
        ["git", "refs", ..] if delete => {
            return Err(Refusal::new(
                "deleting_refs",
                format!("{what}: deleting refs is refused"),
            ));
        }
        ["git", "refs", "heads", branch @ ..] if patch => {
            let branch = branch.join("/");
            if mint_api::policy::branch_refusal(&branch, scope.prefix).is_some() {
                return Err(Refusal::outside(what, scope.prefix));
            }
            Write::UpdateRef
        }
        ["git", "refs", ..] if patch => return Err(Refusal::outside(what, scope.prefix)),
        ["pulls", _, "merge"] | ["merges" | "merge-upstream"] => return Err(Refusal::merging(what)),
        [] if patch || delete => {
            return Err(Refusal::new(
                "repository_settings",
                format!("{what}: changing or deleting the repository is refused"),
            ));
        }
        [first, ..] if SETTINGS.contains(first) => {
            return Err(Refusal::new(
                "repository_settings",
                format!("{what}: repository settings are refused"),
            ));
        }
        _ => return Err(Refusal::not_listed(what)),
    };
    Ok(rule)
}

fn check_write_body(
    write: Write,
    fields: &serde_json::Map<String, Value>,
    scope: &Scope<'_>,
    what: &str,
) -> Result<Vec<PullToCheck>, Refusal> {
    let string = |key: &str| fields.get(key).and_then(Value::as_str);
    match write {
        Write::Comment | Write::ReviewComment | Write::ReviewReply | Write::GitObject | Write::UpdateRef => {}
        Write::Review | Write::ReviewEvent => {
            if fields
                .get("event")
                .is_some_and(|e| e.as_str().is_none_or(|e| e.eq_ignore_ascii_case("APPROVE")))
            {
                return Err(Refusal::new(
                    "approval",
                    format!("{what}: an approving review is refused: approval is for a person"),
                ));
            }
        }
        Write::UpdatePull(number) => {
            if let Some(key) = fields.keys().find(|k| !matches!(k.as_str(), "title" | "body")) {
                return Err(Refusal::not_listed(&format!(
                    "{what} changing {:?} (only title and body may be changed)",
                    truncate(key)
                )));
            }
            return Ok(vec![PullToCheck::Number(number)]);
        }
        Write::CreatePull => {
            if let Some(key) = fields.keys().find(|k| matches!(k.as_str(), "head_repo" | "issue")) {
                return Err(Refusal::not_listed(&format!("{what} with {key:?}")));
            }
            let Some(head) = string("head") else {
                return Err(Refusal::malformed(format!("{what}: the head branch is missing")));
            };
            let head = match head.split_once(':') {
                Some((owner, branch)) if owner.eq_ignore_ascii_case(scope.owner) => branch,
                Some(_) => return Err(other_repository(scope)),
                None => head,
            };
            if mint_api::policy::branch_refusal(head, scope.prefix).is_some() {
                return Err(Refusal::outside(
                    &format!("{what} from {:?}", truncate(head)),
                    scope.prefix,
                ));
            }
        }
        Write::Contents => match string("branch") {
            Some(branch) if mint_api::policy::branch_refusal(branch, scope.prefix).is_none() => {}
            Some(branch) => {
                return Err(Refusal::outside(
                    &format!("{what} on {:?}", truncate(branch)),
                    scope.prefix,
                ));
            }
            None => {
                return Err(Refusal::outside(
                    &format!("{what} on the default branch (no \"branch\" given)"),
                    scope.prefix,
                ));
            }
        },
        Write::CreateRef => {
            let branch = string("ref").and_then(|r| r.strip_prefix("refs/heads/"));
            if branch.is_none_or(|b| mint_api::policy::branch_refusal(b, scope.prefix).is_some()) {
                return Err(Refusal::outside(
                    &format!("{what} of {:?}", truncate(string("ref").unwrap_or(""))),
                    scope.prefix,
                ));
            }
        }
    }
    Ok(Vec::new())
}

/// A JSON body that must be one object; duplicated keys are refused (servers disagree on which wins).
fn json_object(body: &[u8], what: &str) -> Result<serde_json::Map<String, Value>, Refusal> {
    if body.is_empty() {
        return Ok(serde_json::Map::new());
    }
    match strict_json(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(Refusal::malformed(format!("{what}: the body must be a JSON object"))),
        Err(e) => Err(Refusal::malformed(format!(
            "{what}: the body is not JSON mint accepts: {e}"
        ))),
    }
}

/// JSON as `serde_json` reads it, but a key given twice in one object, or nesting deeper than
/// [`MAX_JSON_DEPTH`], is an error.
pub fn strict_json(bytes: &[u8]) -> Result<Value, serde_json::Error> {
    use serde::de::DeserializeSeed;
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = Strict(0).deserialize(&mut de)?;
    de.end()?;
    Ok(value)
}

struct Strict(usize);

impl<'de> serde::de::DeserializeSeed<'de> for Strict {
    type Value = Value;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Strict {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JSON")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let depth = self.deeper::<A::Error>()?;
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(Strict(depth))? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let depth = self.deeper::<A::Error>()?;
        let mut out = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(serde::de::Error::custom(format_args!(
                    "the key {:?} is given twice",
                    truncate(&key)
                )));
            }
            let value = map.next_value_seed(Strict(depth))?;
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

impl Strict {
    fn deeper<E: serde::de::Error>(&self) -> Result<usize, E> {
        if self.0 >= MAX_JSON_DEPTH {
            return Err(E::custom(format_args!("nested deeper than {MAX_JSON_DEPTH}")));
        }
        Ok(self.0 + 1)
    }
}

/// `POST /graphql`'s body: one request, not a batch.
fn judge_graphql(body: &[u8], scope: &Scope<'_>) -> Result<Judged, Refusal> {
    let request = match strict_json(body) {
        Ok(Value::Object(map)) => map,
        Ok(Value::Array(_)) => {
            return Err(Refusal::new(
                "batched",
                "a batch of GraphQL requests is refused (GitHub takes one): send them one at a time",
            ));
        }
        Ok(_) => return Err(Refusal::malformed("the GraphQL request must be a JSON object")),
        Err(e) => {
            return Err(Refusal::malformed(format!(
                "the GraphQL request is not JSON mint accepts: {e}"
            )));
        }
    };
    if let Some(key) = request
        .keys()
        .find(|k| !matches!(k.as_str(), "query" | "variables" | "operationName"))
    {
        return Err(Refusal::malformed(format!(
            "the GraphQL request's {:?} is refused: only query, variables and operationName are read",
            truncate(key)
        )));
    }
    let Some(Value::String(document)) = request.get("query") else {
        return Err(Refusal::malformed("the GraphQL request has no query string"));
    };
    let variables = match request.get("variables") {
        None | Some(Value::Null) => serde_json::Map::new(),
        Some(Value::Object(v)) => v.clone(),
        Some(_) => return Err(Refusal::malformed("the GraphQL variables must be a JSON object")),
    };
    if !matches!(
        request.get("operationName"),
        None | Some(Value::Null | Value::String(_))
    ) {
        return Err(Refusal::malformed("the GraphQL operationName must be a string"));
    }
    judge_document(document, &variables, scope)
}

/// The operation types a document holds.
#[derive(Default)]
struct Found {
    mutation: bool,
    pulls: Vec<PullToCheck>,
}

fn judge_document(
    document: &str,
    variables: &serde_json::Map<String, Value>,
    scope: &Scope<'_>,
) -> Result<Judged, Refusal> {
    let tree = apollo_parser::Parser::new(document)
        .token_limit(GRAPHQL_TOKEN_LIMIT)
        .recursion_limit(GRAPHQL_RECURSION_LIMIT)
        .parse();
    if let Some(error) = tree.errors().next() {
        return Err(Refusal::new(
            "unparsable",
            format!(
                "the GraphQL document does not parse, so it is refused: {} at byte {}",
                truncate(error.message()),
                error.index()
            ),
        ));
    }
    let doc = tree.document();
    let mut fragments: BTreeMap<String, cst::FragmentDefinition> = BTreeMap::new();
    let mut operations = Vec::new();
    for definition in doc.definitions() {
        match definition {
            cst::Definition::OperationDefinition(op) => operations.push(op),
            cst::Definition::FragmentDefinition(fragment) => {
                let name = fragment
                    .fragment_name()
                    .and_then(|n| n.name())
                    .map(|n| n.text().to_string())
                    .unwrap_or_default();
                if fragments.insert(name.clone(), fragment).is_some() {
                    return Err(Refusal::malformed(format!(
                        "the GraphQL fragment {:?} is defined twice",
                        truncate(&name)
                    )));
                }
            }
            other => {
                return Err(Refusal::malformed(format!(
                    "a GraphQL {} is refused: send operations and fragments only",
                    other.kind()
                )));
            }
        }
    }
    if operations.is_empty() {
        return Err(Refusal::malformed("the GraphQL document has no operation"));
    }
    // Every `repository(owner:, name:)` anywhere in the document names this one.
    for field in doc.syntax().descendants().filter_map(cst::Field::cast) {
        if name_of(field.name()) == "repository" {
            let defaults = BTreeMap::new();
            let args = arguments(&field, variables, &defaults)?;
            let owner = args.get("owner").and_then(Value::as_str);
            let name = args.get("name").and_then(Value::as_str);
            if let (Some(owner), Some(name)) = (owner, name)
                && !(owner.eq_ignore_ascii_case(scope.owner) && name.eq_ignore_ascii_case(scope.name))
            {
                return Err(other_repository(scope));
            }
        }
    }
    let mut found = Found::default();
    for op in &operations {
        let kind = op.operation_type();
        if kind.as_ref().is_some_and(|k| k.subscription_token().is_some()) {
            return Err(Refusal::new(
                "subscription",
                "a GraphQL subscription is refused: mint answers queries and the allowed mutations",
            ));
        }
        if kind.as_ref().is_some_and(|k| k.mutation_token().is_some()) {
            found.mutation = true;
            let defaults = variable_defaults(op)?;
            for field in top_level_fields(op, &fragments)? {
                judge_mutation(&field, variables, &defaults, scope, &mut found.pulls)?;
            }
        }
    }
    Ok(Judged {
        read: !found.mutation,
        path_and_query: None,
        pulls: found.pulls,
        what: if found.mutation {
            "graphql_mutation"
        } else {
            "graphql_query"
        },
    })
}

fn name_of(name: Option<cst::Name>) -> String {
    name.map(|n| n.text().to_string()).unwrap_or_default()
}

fn variable_defaults(op: &cst::OperationDefinition) -> Result<BTreeMap<String, Value>, Refusal> {
    let mut defaults = BTreeMap::new();
    let empty = serde_json::Map::new();
    for definition in op
        .variable_definitions()
        .into_iter()
        .flat_map(|d| d.variable_definitions())
    {
        let name = name_of(definition.variable().and_then(|v| v.name()));
        if let Some(value) = definition.default_value().and_then(|d| d.value()) {
            defaults.insert(name, to_json(&value, &empty, &BTreeMap::new(), 0)?);
        }
    }
    Ok(defaults)
}

/// The fields of an operation's own selection set, through fragment spreads and inline fragments however
/// they nest: the fields that run at the operation's root.
fn top_level_fields(
    op: &cst::OperationDefinition,
    fragments: &BTreeMap<String, cst::FragmentDefinition>,
) -> Result<Vec<cst::Field>, Refusal> {
    let mut fields = Vec::new();
    let mut spread = HashSet::new();
    let mut pending: Vec<cst::SelectionSet> = op.selection_set().into_iter().collect();
    while let Some(set) = pending.pop() {
        for selection in set.selections() {
            match selection {
                cst::Selection::Field(field) => fields.push(field),
                cst::Selection::InlineFragment(inline) => pending.extend(inline.selection_set()),
                cst::Selection::FragmentSpread(spread_of) => {
                    let name = name_of(spread_of.fragment_name().and_then(|n| n.name()));
                    let Some(fragment) = fragments.get(&name) else {
                        return Err(Refusal::malformed(format!(
                            "the GraphQL fragment {:?} is not defined",
                            truncate(&name)
                        )));
                    };
                    if spread.insert(name) {
                        pending.extend(fragment.selection_set());
                    }
                }
            }
        }
    }
    Ok(fields)
}

/// A field's arguments as JSON, variables substituted (or their defaults, or null).
fn arguments(
    field: &cst::Field,
    variables: &serde_json::Map<String, Value>,
    defaults: &BTreeMap<String, Value>,
) -> Result<serde_json::Map<String, Value>, Refusal> {
    let mut out = serde_json::Map::new();
    for argument in field.arguments().into_iter().flat_map(|a| a.arguments()) {
        let name = name_of(argument.name());
        let value = match argument.value() {
            Some(value) => to_json(&value, variables, defaults, 0)?,
            None => Value::Null,
        };
        out.insert(name, value);
    }
    Ok(out)
}

fn to_json(
    value: &cst::Value,
    variables: &serde_json::Map<String, Value>,
    defaults: &BTreeMap<String, Value>,
    depth: usize,
) -> Result<Value, Refusal> {
    if depth > MAX_JSON_DEPTH {
        return Err(Refusal::malformed(format!(
            "a GraphQL value nested deeper than {MAX_JSON_DEPTH} is refused"
        )));
    }
    Ok(match value {
        cst::Value::Variable(v) => {
            let name = name_of(v.name());
            variables
                .get(&name)
                .or_else(|| defaults.get(&name))
                .cloned()
                .unwrap_or(Value::Null)
        }
        cst::Value::StringValue(s) => Value::String(String::from(s)),
        cst::Value::EnumValue(e) => Value::String(e.text().to_string()),
        cst::Value::BooleanValue(b) => Value::Bool(b.true_token().is_some()),
        cst::Value::NullValue(_) => Value::Null,
        cst::Value::IntValue(i) => Value::String(i.syntax().text().to_string()),
        cst::Value::FloatValue(f) => Value::String(f.syntax().text().to_string()),
        cst::Value::ListValue(list) => Value::Array(
            list.values()
                .map(|v| to_json(&v, variables, defaults, depth + 1))
                .collect::<Result<_, _>>()?,
        ),
        cst::Value::ObjectValue(object) => {
            let mut map = serde_json::Map::new();
            for field in object.object_fields() {
                let value = match field.value() {
                    Some(v) => to_json(&v, variables, defaults, depth + 1)?,
                    None => Value::Null,
                };
                map.insert(name_of(field.name()), value);
            }
            Value::Object(map)
        }
    })
}

/// The mutations mint allows, and the conditions on their input.
#[expect(clippy::too_many_lines, reason = "one arm per mutation, read as a list")]
fn judge_mutation(
    field: &cst::Field,
    variables: &serde_json::Map<String, Value>,
    defaults: &BTreeMap<String, Value>,
    scope: &Scope<'_>,
    pulls: &mut Vec<PullToCheck>,
) -> Result<(), Refusal> {
    let name = name_of(field.name());
    let what = format!("the mutation {}", truncate(&name));
    let args = arguments(field, variables, defaults)?;
    let input = args.get("input").and_then(Value::as_object);
    let string = |key: &str| input.and_then(|i| i.get(key)).and_then(Value::as_str);
    let pull_id = || match string("pullRequestId") {
        Some(id) => Ok(PullToCheck::Node(id.to_owned())),
        None => Err(Refusal::malformed(format!("{what}: the pullRequestId is missing"))),
    };
    match name.as_str() {
        "__typename"
        | "addComment"
        | "addPullRequestReviewComment"
        | "addPullRequestReviewThread"
        | "addPullRequestReviewThreadReply" => {}
        "addPullRequestReview" | "submitPullRequestReview" => {
            if input
                .and_then(|i| i.get("event"))
                .is_some_and(|e| e.as_str().is_none_or(|e| e.eq_ignore_ascii_case("APPROVE")))
            {
                return Err(Refusal::new(
                    "approval",
                    format!("{what}: an approving review is refused: approval is for a person"),
                ));
            }
        }
        "updatePullRequest" => {
            if let Some(key) = input.and_then(|i| {
                i.keys()
                    .find(|k| !matches!(k.as_str(), "pullRequestId" | "title" | "body" | "clientMutationId"))
            }) {
                return Err(Refusal::not_listed(&format!(
                    "{what} changing {:?} (only title and body may be changed)",
                    truncate(key)
                )));
            }
            pulls.push(pull_id()?);
        }
        "markPullRequestReadyForReview" | "convertPullRequestToDraft" => pulls.push(pull_id()?),
        "createPullRequest" => {
            if input.is_some_and(|i| i.contains_key("headRepositoryId")) {
                return Err(Refusal::not_listed(&format!("{what} from another repository")));
            }
            let head = string("headRefName").unwrap_or("");
            let head = match head.split_once(':') {
                Some((owner, branch)) if owner.eq_ignore_ascii_case(scope.owner) => branch,
                Some(_) => return Err(other_repository(scope)),
                None => head,
            };
            if mint_api::policy::branch_refusal(head, scope.prefix).is_some() {
                return Err(Refusal::outside(
                    &format!("{what} from {:?}", truncate(head)),
                    scope.prefix,
                ));
            }
        }
        "createCommitOnBranch" => {
            let branch = input.and_then(|i| i.get("branch")).and_then(Value::as_object);
            let repository = branch
                .and_then(|b| b.get("repositoryNameWithOwner"))
                .and_then(Value::as_str);
            let branch_name = branch.and_then(|b| b.get("branchName")).and_then(Value::as_str);
            match (repository, branch_name) {
                (Some(repository), Some(branch_name)) => {
                    if !repository.eq_ignore_ascii_case(&format!("{}/{}", scope.owner, scope.name)) {
                        return Err(other_repository(scope));
                    }
                    let branch_name = branch_name.strip_prefix("refs/heads/").unwrap_or(branch_name);
                    if mint_api::policy::branch_refusal(branch_name, scope.prefix).is_some() {
                        return Err(Refusal::outside(
                            &format!("{what} on {:?}", truncate(branch_name)),
                            scope.prefix,
                        ));
                    }
                }
                _ => {
                    return Err(Refusal::outside(
                        &format!("{what} on a branch not named by repositoryNameWithOwner and branchName"),
                        scope.prefix,
                    ));
                }
            }
        }
        "createRef" => {
            let branch = string("name").and_then(|r| r.strip_prefix("refs/heads/"));
            if branch.is_none_or(|b| mint_api::policy::branch_refusal(b, scope.prefix).is_some()) {
                return Err(Refusal::outside(
                    &format!("{what} of {:?}", truncate(string("name").unwrap_or(""))),
                    scope.prefix,
                ));
            }
        }
        "mergePullRequest" | "enablePullRequestAutoMerge" | "mergeBranch" | "enqueuePullRequest" => {
            return Err(Refusal::merging(&what));
        }
        "deleteRef" => {
            return Err(Refusal::new(
                "deleting_refs",
                format!("{what}: deleting refs is refused"),
            ));
        }
        "updateRef" | "updateRefs" => return Err(Refusal::outside(&format!("{what} (by ref id)"), scope.prefix)),
        other
            if other.contains("Repository")
                || other.contains("BranchProtection")
                || other.contains("Ruleset")
                || other.contains("Deploy")
                || other.contains("Webhook") =>
        {
            return Err(Refusal::new(
                "repository_settings",
                format!("{what}: repository settings are refused"),
            ));
        }
        _ => return Err(Refusal::not_listed(&what)),
    }
    Ok(())
}

/// Whether a pull request whose head is `head_ref` in `head_repo` (`owner/name`, `None` when its
/// repository is gone) may be changed: only the agent's own pull requests, from this repository.
pub fn head_refusal(head_ref: &str, head_repo: Option<&str>, scope: &Scope<'_>, what: &str) -> Option<Refusal> {
    let ours = head_repo.is_some_and(|r| r.eq_ignore_ascii_case(&format!("{}/{}", scope.owner, scope.name)));
    if !ours || mint_api::policy::branch_refusal(head_ref, scope.prefix).is_some() {
        return Some(Refusal::outside(
            &format!(
                "{what}: the pull request's head is {}:{}, not one of the agent's branches",
                truncate(head_repo.unwrap_or("(deleted)")),
                truncate(head_ref)
            ),
            scope.prefix,
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCOPE: Scope<'static> = Scope {
        owner: "octo-org",
        name: "hello-world",
        prefix: "adagent/",
    };

    fn rest(method: &str, path: &str, body: &str) -> Result<Judged, Refusal> {
        let (path, query) = path.split_once('?').map_or((path, None), |(p, q)| (p, Some(q)));
        judge(
            &Method::from_bytes(method.as_bytes()).expect("method"),
            path,
            query,
            &HeaderMap::new(),
            body.as_bytes(),
            &SCOPE,
        )
    }

    fn graphql(query: &str, variables: &Value) -> Result<Judged, Refusal> {
        let body = serde_json::json!({"query": query, "variables": variables}).to_string();
        judge(
            &Method::POST,
            "/graphql",
            None,
            &HeaderMap::new(),
            body.as_bytes(),
            &SCOPE,
        )
    }

    fn refused(result: Result<Judged, Refusal>, label: &str) -> String {
        match result {
            Err(refusal) => {
                assert_eq!(refusal.label, label, "{}", refusal.reason);
                refusal.reason
            }
            Ok(judged) => panic!("let through: {judged:?}"),
        }
    }

    #[test]
    fn reads_of_the_repository_pass_and_go_on_canonically() {
        for (path, upstream) in [
            (
                "/repos/octo-org/hello-world/pulls/1",
                "/repos/octo-org/hello-world/pulls/1",
            ),
            (
                "/api/v3/repos/Octo-Org/Hello-World/pulls",
                "/repos/octo-org/hello-world/pulls",
            ),
            (
                "/repos/octo-org/hello-world/pulls/1/comments?per_page=100&page=2",
                "/repos/octo-org/hello-world/pulls/1/comments?per_page=100&page=2",
            ),
            (
                "/repos/octo-org/hello-world/contents/a%20b.txt",
                "/repos/octo-org/hello-world/contents/a%20b.txt",
            ),
            ("/repos/octo-org/hello-world", "/repos/octo-org/hello-world"),
        ] {
            let judged = rest("GET", path, "").expect(path);
            assert!(judged.read);
            assert_eq!(judged.path_and_query.as_deref(), Some(upstream), "{path}");
        }
    }

    #[test]
    fn path_tricks_and_other_repositories_are_refused() {
        for (path, label) in [
            ("/repos/octo-org/other-repo/pulls", "other_repository"),
            ("/repos/octo-org/hello-world/../other-repo/pulls", "malformed"),
            ("/repos/octo-org/hello-world/%2e%2e/other-repo", "malformed"),
            ("/repos/octo-org%2Fother-repo/pulls", "malformed"),
            ("/repos/octo-org/hello-world%2F..%2Fother-repo/pulls", "malformed"),
            ("/repos/octo-org/hello-world/pulls%2F1", "malformed"),
            ("/repos//octo-org/hello-world/pulls", "malformed"),
            ("/repos/octo-org/hello-world//pulls", "malformed"),
            ("/repos/octo-org/hello-world/pulls/", "malformed"),
            ("/repos/octo-org/hello-world/pulls%5c1", "malformed"),
            ("/repos/octo-org/hello-world/pulls%zz", "malformed"),
            ("/repos/octo-org/hello-world/pulls%00", "malformed"),
            ("/repositories/1/pulls", "other_repository"),
            ("/user", "other_repository"),
            ("/repos/octo-org/hello-world/pulls?repo=other-repo", "other_repository"),
            ("/repos/octo-org/hello-world/pulls?owner=x&page=2", "other_repository"),
            ("/repos/octo-org/hello-world/pulls?page=2;repo=x", "malformed"),
            (
                "/repos/octo-org/hello-world/pulls?repository%5Bname%5D=x",
                "other_repository",
            ),
        ] {
            refused(rest("GET", path, ""), label);
        }
    }

    #[test]
    fn merging_is_refused_however_it_is_asked() {
        for (method, path) in [
            ("PUT", "/repos/octo-org/hello-world/pulls/1/merge"),
            ("PUT", "/api/v3/repos/OCTO-ORG/hello-world/pulls/1/merge"),
            ("POST", "/repos/octo-org/hello-world/merges"),
        ] {
            let reason = refused(rest(method, path, "{}"), "merging");
            assert!(reason.contains("merging is refused"), "{reason}");
        }
        // Case games on the keywords are not on the list either.
        refused(
            rest("PUT", "/repos/octo-org/hello-world/pulls/1/MERGE", "{}"),
            "not_allowed",
        );
        refused(
            rest("PUT", "/repos/octo-org/hello-world/PULLS/1/merge", "{}"),
            "not_allowed",
        );
        for query in [
            "mutation { mergePullRequest(input: {pullRequestId: \"P\"}) { clientMutationId } }",
            "mutation { x: mergePullRequest(input: {pullRequestId: \"P\"}) { clientMutationId } }",
            "mutation { ...M } fragment M on Mutation { mergePullRequest(input: {pullRequestId: \"P\"}) { clientMutationId } }",
            "mutation { ... on Mutation { ... on Mutation { enablePullRequestAutoMerge(input: {pullRequestId: \"P\"}) { clientMutationId } } } }",
            "query A { viewer { login } } mutation B { addComment(input: {subjectId: \"S\", body: \"b\"}) { clientMutationId } mergePullRequest(input: {pullRequestId: \"P\"}) { clientMutationId } }",
            "mutation { ...A } fragment A on Mutation { ...B } fragment B on Mutation { ...A mergeBranch(input: {}) { clientMutationId } }",
            "mutation { mergePullRequest(input: {pullRequestId: \"P\"}) @skip(if: true) { clientMutationId } }",
        ] {
            refused(graphql(query, &Value::Null), "merging");
        }
    }

    #[test]
    fn the_allowed_writes_pass_with_their_conditions() {
        let ok = |method: &str, path: &str, body: &str| {
            rest(method, path, body).unwrap_or_else(|e| panic!("{method} {path}: {e}"))
        };
        assert_eq!(
            ok(
                "POST",
                "/repos/octo-org/hello-world/issues/1/comments",
                r#"{"body":"hi"}"#
            )
            .what,
            "comment"
        );
        ok(
            "POST",
            "/repos/octo-org/hello-world/pulls/1/comments",
            r#"{"body":"x","in_reply_to":5}"#,
        );
        ok(
            "POST",
            "/repos/octo-org/hello-world/pulls/1/comments/5/replies",
            r#"{"body":"x"}"#,
        );
        ok(
            "POST",
            "/repos/octo-org/hello-world/pulls/1/reviews",
            r#"{"body":"x","event":"COMMENT"}"#,
        );
        ok(
            "POST",
            "/repos/octo-org/hello-world/pulls/1/reviews/3/events",
            r#"{"event":"REQUEST_CHANGES"}"#,
        );
        let patch = ok(
            "PATCH",
            "/repos/octo-org/hello-world/pulls/7",
            r#"{"title":"t","body":"b"}"#,
        );
        assert_eq!(patch.pulls, vec![PullToCheck::Number(7)]);
        ok(
            "POST",
            "/repos/octo-org/hello-world/pulls",
            r#"{"head":"octo-org:adagent/x","base":"main","title":"t"}"#,
        );
        ok(
            "PUT",
            "/repos/octo-org/hello-world/contents/x.txt",
            r#"{"message":"m","content":"eA==","branch":"adagent/x"}"#,
        );
        ok(
            "PATCH",
            "/repos/octo-org/hello-world/git/refs/heads/adagent/x",
            r#"{"sha":"abc","force":true}"#,
        );
        ok(
            "POST",
            "/repos/octo-org/hello-world/git/refs",
            r#"{"ref":"refs/heads/adagent/y","sha":"abc"}"#,
        );
        ok(
            "POST",
            "/repos/octo-org/hello-world/git/commits",
            r#"{"message":"m","tree":"t"}"#,
        );
    }

    #[test]
    #[expect(clippy::too_many_lines, reason = "a table of cases")]
    fn writes_outside_the_list_or_the_agents_branches_are_refused_with_the_reason() {
        for (method, path, body, label) in [
            (
                "PUT",
                "/repos/octo-org/hello-world/contents/x",
                r#"{"message":"m","content":"eA==","branch":"main"}"#,
                "outside_agent_branches",
            ),
            (
                "PUT",
                "/repos/octo-org/hello-world/contents/x",
                r#"{"message":"m","content":"eA=="}"#,
                "outside_agent_branches",
            ),
            (
                "PUT",
                "/repos/octo-org/hello-world/contents/x",
                r#"{"branch":"adagent/x","branch":"main"}"#,
                "malformed",
            ),
            (
                "PUT",
                "/repos/octo-org/hello-world/contents/x?branch=main",
                r#"{"branch":"adagent/x"}"#,
                "malformed",
            ),
            (
                "PATCH",
                "/repos/octo-org/hello-world/git/refs/heads/main",
                r#"{"sha":"a"}"#,
                "outside_agent_branches",
            ),
            (
                "PATCH",
                "/repos/octo-org/hello-world/git/refs/tags/v1",
                r#"{"sha":"a"}"#,
                "outside_agent_branches",
            ),
            (
                "DELETE",
                "/repos/octo-org/hello-world/git/refs/heads/adagent/x",
                "",
                "deleting_refs",
            ),
            (
                "POST",
                "/repos/octo-org/hello-world/git/refs",
                r#"{"ref":"refs/tags/v1","sha":"a"}"#,
                "outside_agent_branches",
            ),
            (
                "PATCH",
                "/repos/octo-org/hello-world",
                r#"{"default_branch":"x"}"#,
                "repository_settings",
            ),
            ("DELETE", "/repos/octo-org/hello-world", "", "repository_settings"),
            (
                "PUT",
                "/repos/octo-org/hello-world/branches/main/protection",
                "{}",
                "repository_settings",
            ),
            ("POST", "/repos/octo-org/hello-world/hooks", "{}", "repository_settings"),
            (
                "POST",
                "/repos/octo-org/hello-world/pulls/1/reviews",
                r#"{"event":"APPROVE"}"#,
                "approval",
            ),
            (
                "POST",
                "/repos/octo-org/hello-world/pulls/1/reviews/2/events",
                r#"{"event":"approve"}"#,
                "approval",
            ),
            (
                "PATCH",
                "/repos/octo-org/hello-world/pulls/1",
                r#"{"state":"closed"}"#,
                "not_allowed",
            ),
            (
                "PATCH",
                "/repos/octo-org/hello-world/pulls/1",
                r#"{"base":"release"}"#,
                "not_allowed",
            ),
            (
                "POST",
                "/repos/octo-org/hello-world/pulls",
                r#"{"head":"main","base":"release"}"#,
                "outside_agent_branches",
            ),
            (
                "POST",
                "/repos/octo-org/hello-world/pulls",
                r#"{"head":"evil:adagent/x","base":"main"}"#,
                "other_repository",
            ),
            (
                "DELETE",
                "/repos/octo-org/hello-world/issues/comments/1",
                "",
                "not_allowed",
            ),
            (
                "POST",
                "/repos/octo-org/hello-world/issues/1/comments",
                "[1]",
                "malformed",
            ),
            ("OPTIONS", "/repos/octo-org/hello-world/pulls", "", "not_allowed"),
        ] {
            let reason = refused(rest(method, path, body), label);
            assert!(!reason.is_empty(), "{method} {path}");
        }
        let reason = refused(
            rest("PUT", "/repos/octo-org/hello-world/contents/x", r#"{"branch":"main"}"#),
            "outside_agent_branches",
        );
        assert!(reason.contains("only adagent/* may be written"), "{reason}");
    }

    #[test]
    fn a_method_override_header_is_refused() {
        for header in METHOD_OVERRIDES {
            let mut headers = HeaderMap::new();
            headers.insert(header, http::HeaderValue::from_static("PUT"));
            let judged = judge(
                &Method::GET,
                "/repos/octo-org/hello-world/pulls/1/merge",
                None,
                &headers,
                b"",
                &SCOPE,
            );
            refused(judged, "method_override");
        }
    }

    #[test]
    fn graphql_queries_pass_and_mutations_only_from_the_list() {
        let pr_view = "query PullRequestByNumber($owner: String!, $repo: String!, $pr_number: Int!) { repository(owner: $owner, name: $repo) { pullRequest(number: $pr_number) { id, url, number, author { login, ...on User { id } } } } }";
        let vars = serde_json::json!({"owner": "octo-org", "repo": "hello-world", "pr_number": 1});
        assert!(graphql(pr_view, &vars).expect("a query").read);
        refused(
            graphql(
                pr_view,
                &serde_json::json!({"owner": "octo-org", "repo": "other-repo", "pr_number": 1}),
            ),
            "other_repository",
        );
        let comment = "mutation CommentCreate($input: AddCommentInput!) { addComment(input: $input) { commentEdge { node { url } } } }";
        let judged = graphql(
            comment,
            &serde_json::json!({"input": {"subjectId": "PR_1", "body": "hi"}}),
        )
        .expect("allowed");
        assert!(!judged.read);
        let ready = "mutation PullRequestReadyForReview($input: MarkPullRequestReadyForReviewInput!) { markPullRequestReadyForReview(input: $input) { clientMutationId } }";
        let judged = graphql(ready, &serde_json::json!({"input": {"pullRequestId": "PR_1"}})).expect("allowed");
        assert_eq!(judged.pulls, vec![PullToCheck::Node("PR_1".into())]);
        for (query, variables, label) in [
            ("subscription { x }", Value::Null, "subscription"),
            (
                "mutation { addComment(input: {subjectId: \"S\", body: \"b\"}) { clientMutationId } deleteRef(input: {refId: \"R\"}) { clientMutationId } }",
                Value::Null,
                "deleting_refs",
            ),
            (
                "mutation { updateRepository(input: {repositoryId: \"R\", name: \"x\"}) { clientMutationId } }",
                Value::Null,
                "repository_settings",
            ),
            (
                "mutation { addPullRequestReview(input: {pullRequestId: \"P\", event: APPROVE}) { clientMutationId } }",
                Value::Null,
                "approval",
            ),
            (
                "mutation($e: PullRequestReviewEvent) { submitPullRequestReview(input: {pullRequestReviewId: \"R\", event: $e}) { clientMutationId } }",
                serde_json::json!({"e": "APPROVE"}),
                "approval",
            ),
            (
                "mutation($e: PullRequestReviewEvent = APPROVE) { submitPullRequestReview(input: {pullRequestReviewId: \"R\", event: $e}) { clientMutationId } }",
                Value::Null,
                "approval",
            ),
            (
                "mutation { createCommitOnBranch(input: {branch: {repositoryNameWithOwner: \"octo-org/hello-world\", branchName: \"main\"}, message: {headline: \"m\"}, expectedHeadOid: \"a\"}) { clientMutationId } }",
                Value::Null,
                "outside_agent_branches",
            ),
            (
                "mutation { createCommitOnBranch(input: {branch: {id: \"REF\"}, message: {headline: \"m\"}, expectedHeadOid: \"a\"}) { clientMutationId } }",
                Value::Null,
                "outside_agent_branches",
            ),
            (
                "mutation { updatePullRequest(input: {pullRequestId: \"P\", baseRefName: \"x\"}) { clientMutationId } }",
                Value::Null,
                "not_allowed",
            ),
            (
                "mutation { addReaction(input: {subjectId: \"S\", content: HEART}) { clientMutationId } }",
                Value::Null,
                "not_allowed",
            ),
            (
                "mutation { addComment(input: {subjectId: \"S\", body: \"b\"}) { clientMutationId }",
                Value::Null,
                "unparsable",
            ),
            ("type Mutation { x: Int }", Value::Null, "malformed"),
            ("mutation { ...Missing }", Value::Null, "malformed"),
        ] {
            refused(graphql(query, &variables), label);
        }
        let ok = graphql(
            "mutation { createCommitOnBranch(input: {branch: {repositoryNameWithOwner: \"octo-org/hello-world\", branchName: \"adagent/x\"}, message: {headline: \"m\"}, expectedHeadOid: \"a\"}) { clientMutationId } }",
            &Value::Null,
        );
        assert!(ok.is_ok(), "{ok:?}");
    }

    #[test]
    fn batches_odd_bodies_and_huge_documents_are_refused() {
        let post = |body: &[u8]| judge(&Method::POST, "/graphql", None, &HeaderMap::new(), body, &SCOPE);
        refused(post(br#"[{"query":"{ viewer { login } }"}]"#), "batched");
        refused(post(br#"{"query":"{ viewer { login } }","query":"mutation { mergePullRequest(input:{}) { clientMutationId } }"}"#), "malformed");
        refused(
            post(br#"{"query":"{ viewer { login } }","extensions":{"persistedQuery":{}}}"#),
            "malformed",
        );
        refused(post(b"not json"), "malformed");
        let huge = format!("{{ {} }}", "viewer { login } ".repeat(100_000));
        refused(
            post(serde_json::json!({"query": huge}).to_string().as_bytes()),
            "unparsable",
        );
        let deep = format!("{}{}", "{ a ".repeat(200), "}".repeat(200));
        refused(
            post(serde_json::json!({"query": deep}).to_string().as_bytes()),
            "unparsable",
        );
        let judged = judge(&Method::GET, "/graphql", None, &HeaderMap::new(), b"", &SCOPE);
        refused(judged, "not_allowed");
        let judged = judge(
            &Method::POST,
            "/graphql",
            Some("query=x"),
            &HeaderMap::new(),
            br#"{"query":"{a}"}"#,
            &SCOPE,
        );
        refused(judged, "malformed");
    }

    #[test]
    fn deeply_nested_values_are_refused_without_exhausting_the_stack() {
        for (open, close) in [("[", "]"), ("{a: ", "}")] {
            let value = format!("{}1{}", open.repeat(9_000), close.repeat(9_000));
            let query = format!("mutation {{ addComment(input: {value}) {{ clientMutationId }} }}");
            assert!(graphql(&query, &Value::Null).is_err());
        }
        let deep_json = format!("{}1{}", "[".repeat(5_000), "]".repeat(5_000));
        let body = format!(r#"{{"query":"{{a}}","variables":{{"x":{deep_json}}}}}"#);
        let judged = judge(
            &Method::POST,
            "/graphql",
            None,
            &HeaderMap::new(),
            body.as_bytes(),
            &SCOPE,
        );
        refused(judged, "malformed");
    }

    #[test]
    fn only_the_agents_own_pull_requests_may_be_changed() {
        assert_eq!(
            head_refusal("adagent/x", Some("octo-org/hello-world"), &SCOPE, "x"),
            None
        );
        assert!(head_refusal("main", Some("octo-org/hello-world"), &SCOPE, "x").is_some());
        assert!(head_refusal("adagent/x", Some("evil/hello-world"), &SCOPE, "x").is_some());
        assert!(head_refusal("adagent/x", None, &SCOPE, "x").is_some());
    }

    #[test]
    fn which_paths_are_the_apis() {
        assert_eq!(endpoint("/repos/o/r/pulls"), Some(Endpoint::Rest));
        assert_eq!(endpoint("/api/v3/repos/o/r"), Some(Endpoint::Rest));
        assert_eq!(endpoint("/graphql"), Some(Endpoint::GraphQl));
        assert_eq!(endpoint("/api/graphql"), Some(Endpoint::GraphQl));
        assert_eq!(endpoint("/user"), Some(Endpoint::Elsewhere));
        assert_eq!(endpoint("/api/v3/user"), Some(Endpoint::Elsewhere));
        assert_eq!(endpoint("/v1/status"), None);
        assert_eq!(endpoint("/octo-org/hello-world.git/info/refs"), None);
    }
}
