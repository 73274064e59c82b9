//! `mint feedback`: what reviewers said about the branch's pull request since its last push — the reviews
//! and review comments on its head commit, and the conversation since that commit — read through mintd's
//! GitHub API endpoint (no token in the sandbox, in every mode). Exit 0 when there is feedback to address,
//! 2 when there is none.
//!
//! "Since the last push" is decided by commit where GitHub records one (a review and its comments name the
//! commit they were made on: a push moves the head and leaves them behind), and by time for conversation
//! comments (at or after the head commit's date). The pull request's own author (the agent) is not feedback.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, bail};
use mint_api::Client;
use serde::Serialize;
use serde_json::Value;

/// Exit code when there is nothing to address.
const NOTHING: u8 = 2;
/// Pages read per list at most (100 items each).
const MAX_PAGES: usize = 20;

#[derive(Debug, Serialize)]
struct Feedback {
    pull_request: PullSummary,
    reviews: Vec<ReviewItem>,
    review_comments: Vec<ReviewCommentItem>,
    comments: Vec<CommentItem>,
}

#[derive(Debug, Serialize)]
struct PullSummary {
    number: u64,
    url: String,
    title: String,
    /// `open`, `closed` or `merged`.
    state: String,
    draft: bool,
    branch: String,
    head_sha: String,
    /// When the head commit was made: conversation comments count from here.
    head_date: String,
}

#[derive(Debug, Serialize)]
struct ReviewItem {
    id: u64,
    author: String,
    state: String,
    body: String,
    submitted_at: String,
    url: String,
}

#[derive(Debug, Serialize)]
struct ReviewCommentItem {
    id: u64,
    author: String,
    path: String,
    line: Option<u64>,
    body: String,
    in_reply_to: Option<u64>,
    url: String,
}

#[derive(Debug, Serialize)]
struct CommentItem {
    id: u64,
    author: String,
    body: String,
    created_at: String,
    url: String,
}

pub(crate) fn run(socket: &Path, branch: Option<String>, json: bool) -> anyhow::Result<ExitCode> {
    let client = Client::new(socket);
    let status = client.status()?;
    let repo = status.repository.clone();
    anyhow::ensure!(
        !repo.is_empty(),
        "mintd does not know its repository yet (broker mode, before the first token): run mint clone first"
    );
    let branch = match branch {
        Some(b) => b,
        None => current_branch()?,
    };
    let owner = repo.split('/').next().unwrap_or_default().to_owned();
    let pulls = get(
        &client,
        &format!("/repos/{repo}/pulls?state=all&head={owner}:{}", escape(&branch)),
    )?;
    let Some(pull) = pulls.as_array().and_then(|p| p.first()) else {
        bail!("no pull request for {branch} in {repo}: publish it first (mint publish --branch {branch} …)");
    };
    let number = pull["number"].as_u64().context("the pull request has no number")?;
    let agent = login(&pull["user"]);
    let head_sha = text(&pull["head"]["sha"]);
    let commit = get(&client, &format!("/repos/{repo}/commits/{head_sha}"))?;
    let head_date = text(&commit["commit"]["committer"]["date"]);
    let state = if pull["merged_at"].is_string() {
        "merged".to_owned()
    } else {
        text(&pull["state"])
    };
    let not_agent = |item: &Value| login(&item["user"]) != agent;
    let reviews = list(&client, &format!("/repos/{repo}/pulls/{number}/reviews?per_page=100"))?
        .into_iter()
        .filter(|r| not_agent(r) && text(&r["commit_id"]) == head_sha && r["state"] != "PENDING")
        .map(|r| ReviewItem {
            id: r["id"].as_u64().unwrap_or_default(),
            author: login(&r["user"]),
            state: text(&r["state"]),
            body: text(&r["body"]),
            submitted_at: text(&r["submitted_at"]),
            url: text(&r["html_url"]),
        })
        .collect();
    let review_comments = list(&client, &format!("/repos/{repo}/pulls/{number}/comments?per_page=100"))?
        .into_iter()
        .filter(|c| {
            let made_on = c["original_commit_id"].as_str().or_else(|| c["commit_id"].as_str());
            not_agent(c) && made_on == Some(head_sha.as_str())
        })
        .map(|c| ReviewCommentItem {
            id: c["id"].as_u64().unwrap_or_default(),
            author: login(&c["user"]),
            path: text(&c["path"]),
            line: c["line"].as_u64().or_else(|| c["original_line"].as_u64()),
            body: text(&c["body"]),
            in_reply_to: c["in_reply_to_id"].as_u64(),
            url: text(&c["html_url"]),
        })
        .collect();
    let comments = list(&client, &format!("/repos/{repo}/issues/{number}/comments?per_page=100"))?
        .into_iter()
        // RFC 3339 in UTC ("…Z") orders as text.
        .filter(|c| not_agent(c) && text(&c["created_at"]) >= head_date)
        .map(|c| CommentItem {
            id: c["id"].as_u64().unwrap_or_default(),
            author: login(&c["user"]),
            body: text(&c["body"]),
            created_at: text(&c["created_at"]),
            url: text(&c["html_url"]),
        })
        .collect();
    let feedback = Feedback {
        pull_request: PullSummary {
            number,
            url: text(&pull["html_url"]),
            title: text(&pull["title"]),
            state,
            draft: pull["draft"].as_bool().unwrap_or(false),
            branch,
            head_sha,
            head_date,
        },
        reviews,
        review_comments,
        comments,
    };
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &feedback)?;
        writeln!(out)?;
    } else {
        out.write_all(render(&feedback).as_bytes())?;
    }
    let any = !(feedback.reviews.is_empty() && feedback.review_comments.is_empty() && feedback.comments.is_empty());
    Ok(if any {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(NOTHING)
    })
}

fn render(f: &Feedback) -> String {
    use std::fmt::Write as _;
    let p = &f.pull_request;
    let mut out = format!(
        "#{} {} ({}{})\n{}\n{} at {}\n",
        p.number,
        p.title,
        p.state,
        if p.draft { ", draft" } else { "" },
        p.url,
        p.branch,
        p.head_sha.get(..12).unwrap_or(&p.head_sha),
    );
    if f.reviews.is_empty() && f.review_comments.is_empty() && f.comments.is_empty() {
        out.push_str("\nNo feedback since the last push.\n");
        return out;
    }
    for r in &f.reviews {
        let _ = write!(
            out,
            "\nReview by {} ({})",
            r.author,
            r.state.to_lowercase().replace('_', " ")
        );
        let _ = writeln!(out, "{}", indent_after_colon(&r.body));
    }
    if !f.review_comments.is_empty() {
        out.push_str("\nReview comments:\n");
        for c in &f.review_comments {
            let at = c.line.map_or_else(|| c.path.clone(), |l| format!("{}:{l}", c.path));
            let _ = writeln!(out, "  {at} ({}){}", c.author, indent_after_colon(&c.body));
        }
    }
    if !f.comments.is_empty() {
        out.push_str("\nConversation:\n");
        for c in &f.comments {
            let _ = writeln!(out, "  {} at {}{}", c.author, c.created_at, indent_after_colon(&c.body));
        }
    }
    out
}

/// `: first line`, further lines indented under it; nothing for an empty body.
fn indent_after_colon(body: &str) -> String {
    let body = body.trim();
    if body.is_empty() {
        return String::new();
    }
    let mut lines = body.lines();
    let mut out = format!(": {}", lines.next().unwrap_or_default());
    for line in lines {
        out.push_str("\n      ");
        out.push_str(line);
    }
    out
}

fn text(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_owned()
}

fn login(user: &Value) -> String {
    text(&user["login"])
}

/// One JSON answer from mintd's API endpoint; a refusal or GitHub's error, with its words.
fn get(client: &Client, path: &str) -> anyhow::Result<Value> {
    Ok(get_page(client, path)?.0)
}

fn get_page(client: &Client, path: &str) -> anyhow::Result<(Value, Option<String>)> {
    let response = client.request("GET", path, b"")?;
    let body: Value = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
    if response.status != 200 {
        let message = body["message"]
            .as_str()
            .map(ToOwned::to_owned)
            .or(response.reason)
            .unwrap_or_default();
        bail!(
            "GitHub, through mintd, answered {} for {path}: {message}",
            response.status
        );
    }
    let next = response.link.as_deref().and_then(next_page);
    Ok((body, next))
}

/// Every item of a list, following `Link: <…>; rel="next"` (mintd points it back at itself).
fn list(client: &Client, first: &str) -> anyhow::Result<Vec<Value>> {
    let mut items = Vec::new();
    let mut path = Some(first.to_owned());
    for _ in 0..MAX_PAGES {
        let Some(current) = path.take() else { break };
        let (page, next) = get_page(client, &current)?;
        items.extend(page.as_array().cloned().unwrap_or_default());
        path = next;
    }
    Ok(items)
}

fn next_page(link: &str) -> Option<String> {
    link.split(',').find_map(|entry| {
        let (url, params) = entry.trim().strip_prefix('<')?.split_once('>')?;
        (params.contains("rel=\"next\"") && url.starts_with('/')).then(|| url.to_owned())
    })
}

/// A branch name in a query: `/` and the name's own characters as they are, anything else escaped.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"/-_.".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = std::fmt::Write::write_fmt(&mut out, format_args!("%{b:02X}"));
        }
    }
    out
}

/// The branch checked out in the work tree around the current directory.
fn current_branch() -> anyhow::Result<String> {
    let repo =
        mint_git::open_worktree(Path::new(".")).context("no git work tree here: run in the clone, or pass --branch")?;
    let head = repo.head_name()?.context("HEAD is detached: pass --branch")?;
    Ok(head.shorten().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_page_is_the_rel_next_path() {
        assert_eq!(
            next_page(
                r#"</repos/o/r/pulls/1/comments?page=2>; rel="next", </repos/o/r/pulls/1/comments?page=3>; rel="last""#
            )
            .as_deref(),
            Some("/repos/o/r/pulls/1/comments?page=2")
        );
        assert_eq!(next_page(r#"<https://elsewhere/x>; rel="next""#), None);
        assert_eq!(next_page(r#"</x?page=1>; rel="prev""#), None);
    }
}
