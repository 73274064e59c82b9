//! A small GraphQL endpoint (`POST /graphql`): what `gh pr view`, `gh pr comment`, `gh pr ready` and
//! `gh pr merge` send, executed over fakehub's pull requests, reviews and comments. The document is parsed
//! with apollo-parser; selections are projected from GitHub's object shapes (aliases, inline fragments and
//! fragment spreads on their type, `first`/`last` on connections). Mutations: `addComment`,
//! `markPullRequestReadyForReview`, `convertPullRequestToDraft`, `updatePullRequest`, `mergePullRequest`.

use std::collections::BTreeMap;

use apollo_parser::cst;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::{Map, Value, json};

use super::review::node_id;
use super::{Auth, Body, error, json_response, rank, read_json_body, repo_id, rfc3339};
use crate::state::IssuedToken;
use crate::{FakeHub, PullRecord};

/// Abstract types a fragment may name: their fields are on every object here that has them.
const INTERFACES: [&str; 8] = [
    "Node",
    "Actor",
    "Comment",
    "RepositoryOwner",
    "UniformResourceLocatable",
    "Reactable",
    "Assignable",
    "RequestedReviewer",
];

/// Fields of `PullRequest` announced to introspection (gh asks before merging, to see what it may ask).
const PULL_REQUEST_FIELDS: [&str; 34] = [
    "id",
    "number",
    "url",
    "title",
    "body",
    "state",
    "isDraft",
    "closed",
    "merged",
    "mergedAt",
    "author",
    "baseRefName",
    "headRefName",
    "headRefOid",
    "baseRefOid",
    "headRepository",
    "headRepositoryOwner",
    "isCrossRepository",
    "maintainerCanModify",
    "mergeable",
    "mergeStateStatus",
    "additions",
    "deletions",
    "changedFiles",
    "commits",
    "reviewRequests",
    "reviews",
    "assignees",
    "labels",
    "projectCards",
    "milestone",
    "comments",
    "createdAt",
    "repository",
];

struct Ctx<'a> {
    token: &'a IssuedToken,
    variables: Map<String, Value>,
    fragments: BTreeMap<String, cst::FragmentDefinition>,
}

enum Node {
    Query,
    Mutation,
    Json(Value),
}

impl FakeHub {
    pub(crate) async fn graphql(&self, auth: &Auth, req: Request<Incoming>) -> Response<Body> {
        let token = match auth {
            Auth::Token(Some(t)) => t.clone(),
            Auth::None => {
                return error(
                    StatusCode::UNAUTHORIZED,
                    "This endpoint requires you to be authenticated.",
                );
            }
            _ => return error(StatusCode::UNAUTHORIZED, "Bad credentials"),
        };
        let body = match read_json_body(req).await {
            Ok(b) => b,
            Err(r) => return r,
        };
        let Ok(Value::Object(request)) = serde_json::from_slice::<Value>(&body) else {
            return error(StatusCode::BAD_REQUEST, "Problems parsing JSON");
        };
        let Some(document) = request.get("query").and_then(Value::as_str) else {
            return answer(Err("A query attribute must be specified and must be a string.".into()));
        };
        let variables = request
            .get("variables")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let operation_name = request.get("operationName").and_then(Value::as_str);
        answer(self.execute(&token, document, variables, operation_name))
    }

    fn execute(
        &self,
        token: &IssuedToken,
        document: &str,
        variables: Map<String, Value>,
        operation_name: Option<&str>,
    ) -> Result<Value, String> {
        let tree = apollo_parser::Parser::new(document).parse();
        if let Some(e) = tree.errors().next() {
            return Err(format!("Parse error on {:?} at {}", e.data(), e.index()));
        }
        let mut ctx = Ctx {
            token,
            variables,
            fragments: BTreeMap::new(),
        };
        let mut operations = Vec::new();
        for definition in tree.document().definitions() {
            match definition {
                cst::Definition::OperationDefinition(op) => operations.push(op),
                cst::Definition::FragmentDefinition(f) => {
                    let name = f
                        .fragment_name()
                        .and_then(|n| n.name())
                        .map(|n| n.text().to_string())
                        .unwrap_or_default();
                    ctx.fragments.insert(name, f);
                }
                _ => return Err("Only executable definitions are supported".into()),
            }
        }
        let op = match operation_name {
            Some(name) => operations
                .into_iter()
                .find(|o| o.name().is_some_and(|n| n.text() == name))
                .ok_or_else(|| format!("No operation named \"{name}\""))?,
            None if operations.len() == 1 => operations.remove(0),
            None => return Err("An operation name is required".into()),
        };
        for definition in op
            .variable_definitions()
            .into_iter()
            .flat_map(|d| d.variable_definitions())
        {
            let name = definition
                .variable()
                .and_then(|v| v.name())
                .map(|n| n.text().to_string())
                .unwrap_or_default();
            if !ctx.variables.contains_key(&name)
                && let Some(default) = definition.default_value().and_then(|d| d.value())
            {
                let value = to_json(&default, &ctx.variables);
                ctx.variables.insert(name, value);
            }
        }
        let kind = op.operation_type();
        let root = if kind.as_ref().is_some_and(|k| k.mutation_token().is_some()) {
            Node::Mutation
        } else if kind.as_ref().is_some_and(|k| k.subscription_token().is_some()) {
            return Err("Subscriptions are not supported".into());
        } else {
            Node::Query
        };
        let mut data = Map::new();
        if let Some(set) = op.selection_set() {
            self.select(&ctx, &root, &set, &mut data)?;
        }
        Ok(Value::Object(data))
    }

    fn select(
        &self,
        ctx: &Ctx<'_>,
        node: &Node,
        set: &cst::SelectionSet,
        out: &mut Map<String, Value>,
    ) -> Result<(), String> {
        for selection in set.selections() {
            match selection {
                cst::Selection::Field(field) => {
                    let name = field.name().map(|n| n.text().to_string()).unwrap_or_default();
                    let key = field
                        .alias()
                        .and_then(|a| a.name())
                        .map_or_else(|| name.clone(), |n| n.text().to_string());
                    let mut args = Map::new();
                    for argument in field.arguments().into_iter().flat_map(|a| a.arguments()) {
                        let arg_name = argument.name().map(|n| n.text().to_string()).unwrap_or_default();
                        let value = argument.value().map_or(Value::Null, |v| to_json(&v, &ctx.variables));
                        args.insert(arg_name, value);
                    }
                    let value = self.resolve(ctx, node, &name, &args)?;
                    out.insert(key, self.project(ctx, value, field.selection_set().as_ref())?);
                }
                cst::Selection::InlineFragment(inline) => {
                    let condition = inline
                        .type_condition()
                        .and_then(|t| t.named_type())
                        .and_then(|n| n.name())
                        .map(|n| n.text().to_string());
                    if condition.is_none_or(|c| type_matches(node, &c))
                        && let Some(set) = inline.selection_set()
                    {
                        self.select(ctx, node, &set, out)?;
                    }
                }
                cst::Selection::FragmentSpread(spread) => {
                    let name = spread
                        .fragment_name()
                        .and_then(|n| n.name())
                        .map(|n| n.text().to_string())
                        .unwrap_or_default();
                    let fragment = ctx
                        .fragments
                        .get(&name)
                        .ok_or_else(|| format!("Fragment {name} was used, but not defined"))?;
                    let condition = fragment
                        .type_condition()
                        .and_then(|t| t.named_type())
                        .and_then(|n| n.name())
                        .map(|n| n.text().to_string())
                        .unwrap_or_default();
                    if type_matches(node, &condition)
                        && let Some(set) = fragment.selection_set()
                    {
                        self.select(ctx, node, &set, out)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// A resolved value, cut to the selection.
    fn project(&self, ctx: &Ctx<'_>, value: Value, set: Option<&cst::SelectionSet>) -> Result<Value, String> {
        let Some(set) = set else { return Ok(value) };
        match value {
            Value::Object(_) => {
                let mut out = Map::new();
                self.select(ctx, &Node::Json(value), set, &mut out)?;
                Ok(Value::Object(out))
            }
            Value::Array(items) => items
                .into_iter()
                .map(|v| self.project(ctx, v, Some(set)))
                .collect::<Result<_, _>>()
                .map(Value::Array),
            other => Ok(other),
        }
    }

    #[expect(
        clippy::too_many_lines,
        reason = "the schema's root fields and mutations, one arm each"
    )]
    fn resolve(&self, ctx: &Ctx<'_>, node: &Node, name: &str, args: &Map<String, Value>) -> Result<Value, String> {
        let arg = |key: &str| args.get(key).and_then(Value::as_str).map(ToOwned::to_owned);
        let input = |key: &str| {
            args.get("input")
                .and_then(|i| i.get(key))
                .and_then(Value::as_str)
                .map(ToOwned::to_owned)
        };
        match node {
            Node::Query => match name {
                "__typename" => Ok(json!("Query")),
                "repository" => {
                    let (owner, repo) = (arg("owner").unwrap_or_default(), arg("name").unwrap_or_default());
                    Ok(self
                        .repository_node(ctx.token, &owner, &repo)
                        .ok_or_else(|| format!("Could not resolve to a Repository with the name '{owner}/{repo}'."))?)
                }
                "node" => Ok(self
                    .pull_by_node(ctx.token, &arg("id").unwrap_or_default())
                    .map_or(Value::Null, |p| self.pull_node(&p))),
                "viewer" => Ok(json!({"__typename": "Bot", "login": format!("{}[bot]", self.config().app_slug)})),
                "__type" => Ok(if arg("name").as_deref() == Some("PullRequest") {
                    json!({"name": "PullRequest", "fields": PULL_REQUEST_FIELDS.iter().map(|f| json!({"name": f})).collect::<Vec<_>>()})
                } else {
                    Value::Null
                }),
                "rateLimit" => {
                    Ok(json!({"limit": 5000, "remaining": 4999, "cost": 1, "resetAt": "2030-01-01T00:00:00Z"}))
                }
                other => Err(format!("Field '{other}' doesn't exist on type 'Query'")),
            },
            Node::Mutation => {
                let writable = |permission: &str| ctx.token.permissions.get(permission).map_or(0, |l| rank(l)) >= 2;
                let pull = |id: Option<String>| {
                    self.pull_by_node(ctx.token, &id.unwrap_or_default())
                        .ok_or_else(|| "Could not resolve to a node with the global id".to_owned())
                };
                if name != "__typename" && !writable("pull_requests") {
                    return Err("Resource not accessible by integration".into());
                }
                match name {
                    "__typename" => Ok(json!("Mutation")),
                    "addComment" => {
                        let p = pull(input("subjectId"))?;
                        let body = input("body").filter(|b| !b.is_empty()).ok_or("Body can't be blank")?;
                        let id = self.comment(
                            &p.owner,
                            &p.repo,
                            p.number,
                            &format!("{}[bot]", self.config().app_slug),
                            &body,
                        );
                        let comment = self
                            .state()
                            .issue_comments
                            .iter()
                            .find(|c| c.id == id)
                            .cloned()
                            .ok_or("lost")?;
                        Ok(
                            json!({"clientMutationId": null, "subject": self.pull_node(&p), "commentEdge": {"node": comment_node(&comment)}}),
                        )
                    }
                    "markPullRequestReadyForReview" | "convertPullRequestToDraft" => {
                        let p = pull(input("pullRequestId"))?;
                        let draft = name == "convertPullRequestToDraft";
                        let updated = self.update_pull(&p, |r| r.draft = draft);
                        Ok(json!({"clientMutationId": null, "pullRequest": self.pull_node(&updated)}))
                    }
                    "updatePullRequest" => {
                        let p = pull(input("pullRequestId"))?;
                        let (title, body) = (input("title"), input("body"));
                        let updated = self.update_pull(&p, |r| {
                            if let Some(t) = title {
                                r.title = t;
                            }
                            if let Some(b) = body {
                                r.body = b;
                            }
                        });
                        Ok(json!({"clientMutationId": null, "pullRequest": self.pull_node(&updated)}))
                    }
                    "mergePullRequest" => {
                        if !writable("contents") {
                            return Err("Resource not accessible by integration".into());
                        }
                        let p = pull(input("pullRequestId"))?;
                        self.merge_pull(&p)?;
                        let merged = self.pull(&p.owner, &p.repo, p.number).ok_or("lost")?;
                        Ok(json!({"clientMutationId": null, "pullRequest": self.pull_node(&merged)}))
                    }
                    other => Err(format!("Field '{other}' doesn't exist on type 'Mutation'")),
                }
            }
            Node::Json(object) => {
                if let Some(repo) = object.get("__repository") {
                    // A repository's fields that take arguments.
                    let owner = repo["owner"].as_str().unwrap_or_default();
                    let name_of = repo["name"].as_str().unwrap_or_default();
                    if name == "pullRequest" {
                        let number = args
                            .get("number")
                            .and_then(|n| n.as_u64().or_else(|| n.as_str()?.parse().ok()))
                            .unwrap_or(0);
                        return self
                            .pull(owner, name_of, number)
                            .map(|p| self.pull_node(&p))
                            .ok_or_else(|| format!("Could not resolve to a PullRequest with the number of {number}."));
                    }
                }
                let value = object.get(name).cloned().unwrap_or(Value::Null);
                Ok(slice_connection(value, args))
            }
        }
    }

    fn repository_node(&self, token: &IssuedToken, owner: &str, name: &str) -> Option<Value> {
        let (installation, _, name) = self.token_repo(owner, name, &Auth::Token(Some(token.clone()))).ok()?;
        let owner = installation.account;
        let default = crate::git::default_branch(&self.repo_path(&owner, &name)).unwrap_or_else(|| "main".into());
        Some(json!({
            "__typename": "Repository",
            "__repository": {"owner": owner, "name": name},
            "id": format!("R_{}", repo_id(&owner, &name)),
            "name": name,
            "nameWithOwner": format!("{owner}/{name}"),
            "owner": {"__typename": "Organization", "login": owner, "id": format!("O_{owner}")},
            "url": format!("https://github.com/{owner}/{name}"),
            "defaultBranchRef": {"name": default},
            "viewerPermission": "WRITE",
            "mergeCommitAllowed": true,
            "rebaseMergeAllowed": true,
            "squashMergeAllowed": true,
            "deleteBranchOnMerge": false,
            "isPrivate": true,
            "isFork": false,
        }))
    }

    fn pull_by_node(&self, token: &IssuedToken, id: &str) -> Option<PullRecord> {
        let pulls = self.state().pulls.clone();
        pulls.into_iter().find(|p| pull_node_id(p) == id).filter(|p| {
            token.repositories.iter().any(|r| r.eq_ignore_ascii_case(&p.repo))
                && self
                    .installation_for(&p.owner, &p.repo)
                    .is_some_and(|i| i.id == token.installation_id)
        })
    }

    fn update_pull(&self, p: &PullRecord, change: impl FnOnce(&mut PullRecord)) -> PullRecord {
        let mut state = self.state();
        let Some(record) = state
            .pulls
            .iter_mut()
            .find(|r| r.owner == p.owner && r.repo == p.repo && r.number == p.number)
        else {
            return p.clone();
        };
        change(record);
        record.clone()
    }

    /// A pull request as GitHub's GraphQL `PullRequest` object.
    fn pull_node(&self, p: &PullRecord) -> Value {
        let head = self.head_now(p);
        let (comments, reviews) = {
            let state = self.state();
            let comments: Vec<Value> = state
                .issue_comments
                .iter()
                .filter(|c| c.owner == p.owner && c.repo == p.repo && c.number == p.number)
                .map(comment_node)
                .collect();
            let reviews: Vec<Value> = state
                .reviews
                .iter()
                .filter(|r| r.owner == p.owner && r.repo == p.repo && r.number == p.number && r.state != "PENDING")
                .map(|r| {
                    json!({"__typename": "PullRequestReview", "id": node_id("PRR", r.id), "author": actor(&r.author), "authorAssociation": "NONE",
                        "submittedAt": r.submitted_at.map(rfc3339), "body": r.body, "state": r.state, "commit": {"oid": r.commit_id}, "reactionGroups": []})
                })
                .collect();
            (comments, reviews)
        };
        let state = if p.merged.is_some() {
            "MERGED"
        } else if p.state == "closed" {
            "CLOSED"
        } else {
            "OPEN"
        };
        let connection = |nodes: Vec<Value>| json!({"totalCount": nodes.len(), "nodes": nodes, "pageInfo": {"hasNextPage": false, "endCursor": null}});
        json!({
            "__typename": "PullRequest",
            "id": pull_node_id(p),
            "number": p.number,
            "url": format!("https://github.com/{}/{}/pull/{}", p.owner, p.repo, p.number),
            "title": p.title,
            "body": p.body,
            "state": state,
            "isDraft": p.draft,
            "closed": p.state == "closed",
            "merged": p.merged.is_some(),
            "mergedAt": null,
            "author": actor(&p.author),
            "baseRefName": p.base,
            "headRefName": p.head,
            "headRefOid": head,
            "baseRefOid": p.base_sha,
            "headRepository": {"__typename": "Repository", "id": format!("R_{}", repo_id(&p.owner, &p.repo)), "name": p.repo, "nameWithOwner": format!("{}/{}", p.owner, p.repo)},
            "headRepositoryOwner": {"__typename": "Organization", "id": format!("O_{}", p.owner), "login": p.owner},
            "repository": {"__typename": "Repository", "name": p.repo, "nameWithOwner": format!("{}/{}", p.owner, p.repo), "owner": {"login": p.owner}},
            "isCrossRepository": false,
            "maintainerCanModify": false,
            "mergeable": if p.merged.is_some() { "UNKNOWN" } else { "MERGEABLE" },
            "mergeStateStatus": "CLEAN",
            "additions": 1,
            "deletions": 0,
            "changedFiles": 1,
            "commits": {"totalCount": 1, "nodes": [{"commit": {"oid": head, "statusCheckRollup": null}}]},
            "reviewRequests": connection(Vec::new()),
            "reviews": connection(reviews),
            "assignees": connection(Vec::new()),
            "labels": connection(Vec::new()),
            "projectCards": connection(Vec::new()),
            "milestone": null,
            "comments": connection(comments),
            "reactionGroups": [],
            "createdAt": "2026-01-01T00:00:00Z",
            "updatedAt": "2026-01-01T00:00:00Z",
            "closedAt": null,
            "autoMergeRequest": null,
            "viewerCanMergeAsAdmin": false,
        })
    }
}

/// `PR_…`, the same node id the REST answer gives.
fn pull_node_id(p: &PullRecord) -> String {
    use base64::Engine;
    format!(
        "PR_{}",
        base64::engine::general_purpose::STANDARD.encode(format!("{}/{}#{}", p.owner, p.repo, p.number))
    )
}

fn actor(login: &str) -> Value {
    let kind = if login.ends_with("[bot]") { "Bot" } else { "User" };
    json!({"__typename": kind, "login": login.trim_end_matches("[bot]"), "id": format!("U_{login}"), "name": login})
}

fn comment_node(c: &crate::state::IssueComment) -> Value {
    json!({"__typename": "IssueComment", "id": node_id("IC", c.id), "author": actor(&c.author), "authorAssociation": "NONE", "body": c.body,
        "createdAt": rfc3339(c.created_at), "includesCreatedEdit": false, "isMinimized": false, "minimizedReason": null, "reactionGroups": [],
        "url": format!("https://github.com/{}/{}/pull/{}#issuecomment-{}", c.owner, c.repo, c.number, c.id), "viewerDidAuthor": c.author.ends_with("[bot]")})
}

fn type_matches(node: &Node, condition: &str) -> bool {
    match node {
        Node::Query => condition == "Query",
        Node::Mutation => condition == "Mutation",
        Node::Json(v) => {
            INTERFACES.contains(&condition) || v.get("__typename").and_then(Value::as_str) == Some(condition)
        }
    }
}

/// `first: n` / `last: n` on a connection (an object with `nodes`).
fn slice_connection(mut value: Value, args: &Map<String, Value>) -> Value {
    let count = |key: &str| {
        args.get(key)
            .and_then(|v| v.as_u64().or_else(|| v.as_str()?.parse().ok()))
    };
    if let Some(nodes) = value.get_mut("nodes").and_then(Value::as_array_mut) {
        if let Some(first) = count("first") {
            nodes.truncate(usize::try_from(first).unwrap_or(usize::MAX));
        }
        if let Some(last) = count("last") {
            let keep = usize::try_from(last).unwrap_or(usize::MAX);
            let drop = nodes.len().saturating_sub(keep);
            nodes.drain(..drop);
        }
    }
    value
}

fn to_json(value: &cst::Value, variables: &Map<String, Value>) -> Value {
    match value {
        cst::Value::Variable(v) => v
            .name()
            .and_then(|n| variables.get(n.text().as_str()).cloned())
            .unwrap_or(Value::Null),
        cst::Value::StringValue(s) => Value::String(String::from(s)),
        cst::Value::EnumValue(e) => Value::String(e.text().to_string()),
        cst::Value::BooleanValue(b) => Value::Bool(b.true_token().is_some()),
        cst::Value::NullValue(_) => Value::Null,
        cst::Value::IntValue(i) => i32::try_from(i).map_or(Value::Null, Value::from),
        cst::Value::FloatValue(f) => Value::String(f.float_token().map(|t| t.text().to_owned()).unwrap_or_default()),
        cst::Value::ListValue(list) => Value::Array(list.values().map(|v| to_json(&v, variables)).collect()),
        cst::Value::ObjectValue(object) => Value::Object(
            object
                .object_fields()
                .map(|f| {
                    let name = f.name().map(|n| n.text().to_string()).unwrap_or_default();
                    (name, f.value().map_or(Value::Null, |v| to_json(&v, variables)))
                })
                .collect(),
        ),
    }
}

/// GraphQL answers 200 with `data`, or `errors` naming what went wrong.
fn answer(result: Result<Value, String>) -> Response<Body> {
    match result {
        Ok(data) => json_response(StatusCode::OK, &json!({"data": data})),
        Err(message) => json_response(StatusCode::OK, &json!({"data": null, "errors": [{"message": message}]})),
    }
}
