//! `POST /v1/pulls`: open the pull request from an agent branch for a human to review. mintd holds the
//! token and the policy: the head must be a valid branch inside the prefix, the base is the repository's
//! default branch as GitHub reports it (never the caller's choice), and inputs are bounded.

use bytes::Bytes;
use http::{Response, StatusCode, header};
use http_body_util::Full;
use mint_api::{PullRequestInput, PullRequestOutput};
use mint_github::{NewPull, PullOutcome};

use crate::Daemon;
use crate::peer::AllowedPeer;
use crate::push_policy::{Command, judge};
use crate::server::refusal;

pub const MAX_TITLE_CHARS: usize = 256;
pub const MAX_BODY_BYTES: usize = 60 * 1024;
pub const MAX_TICKET_CHARS: usize = 512;

/// Proof that a pull-request request came from an allowed peer and passed the input policy. Only this
/// module creates one, and the token cache demands it.
#[derive(Debug)]
pub struct PullChecked {
    _checked: (),
}

/// Check the inputs; the error is the reason to give the agent.
pub fn check(input: &PullRequestInput, prefix: &str) -> Result<(), String> {
    let as_push = Command {
        old: "0".repeat(40),
        new: "1".repeat(40),
        refname: format!("refs/heads/{}", input.branch),
    };
    if let Some(reason) = judge(&as_push, prefix) {
        return Err(format!(
            "branch {:?}: {reason}; use a branch under {prefix}",
            input.branch
        ));
    }
    let title = input.title.trim();
    if title.is_empty() || title.chars().count() > MAX_TITLE_CHARS || title.chars().any(char::is_control) {
        return Err(format!(
            "the title must be 1 to {MAX_TITLE_CHARS} characters on one line"
        ));
    }
    if input.body.as_ref().is_some_and(|b| b.len() > MAX_BODY_BYTES) {
        return Err(format!("the body is over {MAX_BODY_BYTES} bytes"));
    }
    if let Some(ticket) = &input.ticket {
        let ok = !ticket.is_empty()
            && ticket.chars().count() <= MAX_TICKET_CHARS
            && !ticket.chars().any(|c| c.is_whitespace() || c.is_control());
        if !ok {
            return Err(format!(
                "the ticket must be an id or URL of 1 to {MAX_TICKET_CHARS} characters, without spaces"
            ));
        }
    }
    Ok(())
}

pub(crate) async fn open(daemon: &Daemon, _peer: &AllowedPeer, body: &[u8]) -> Response<Full<Bytes>> {
    let input: PullRequestInput = match serde_json::from_slice(body) {
        Ok(input) => input,
        Err(e) => {
            return refusal(
                StatusCode::BAD_REQUEST,
                &format!("expected {{branch, title, body?, ticket?, draft?}}: {e}"),
            );
        }
    };
    if let Err(reason) = check(&input, &daemon.branch_prefix) {
        tracing::warn!(%reason, "refused a pull request");
        return refusal(StatusCode::BAD_REQUEST, &reason);
    }
    let checked = PullChecked { _checked: () };
    let token = match daemon.cache.get_for_pull(&checked).await {
        Ok(cached) => cached.token.clone(),
        Err(failure) => {
            let status = if failure.transient {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::BAD_GATEWAY
            };
            return refusal(status, &failure.message);
        }
    };
    let app = daemon.cache.minter().app();
    let repo = daemon.target.repo();
    let (owner, name) = (repo.owner(), repo.name());
    let base = match app.repository(&token, owner, name).await {
        Ok(r) => r.default_branch.unwrap_or_else(|| "main".to_owned()),
        Err(e) => return github_failure(&e),
    };
    let mut text = input.body.clone().unwrap_or_default();
    if let Some(ticket) = &input.ticket {
        if !text.is_empty() {
            text.push_str("\n\n");
        }
        text.push_str("Ticket: ");
        text.push_str(ticket);
    }
    let new = NewPull {
        title: input.title.trim(),
        head: &input.branch,
        base: &base,
        body: &text,
        draft: input.draft,
    };
    let (pull, created) = match app.create_pull(&token, owner, name, &new).await {
        Ok(PullOutcome::Created(pull)) => (pull, true),
        Ok(PullOutcome::AlreadyExists) => match app.open_pull_for(&token, owner, name, &input.branch).await {
            Ok(Some(pull)) => (pull, false),
            Ok(None) => {
                return refusal(
                    StatusCode::BAD_GATEWAY,
                    "GitHub says a pull request exists for the branch but lists none open",
                );
            }
            Err(e) => return github_failure(&e),
        },
        Err(e) => return github_failure(&e),
    };
    tracing::info!(number = pull.number, created, head = %input.branch, base = %base, "pull request");
    let output = PullRequestOutput {
        number: pull.number,
        url: pull.html_url,
        head: pull.head.name,
        base: pull.base.name,
        created,
    };
    Response::builder()
        .status(if created { StatusCode::CREATED } else { StatusCode::OK })
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(
            serde_json::to_vec(&output).expect("output serialises"),
        )))
        .expect("static headers are valid")
}

fn github_failure(e: &mint_github::GithubError) -> Response<Full<Bytes>> {
    let status = match e {
        mint_github::GithubError::Status { status: 422, .. } => StatusCode::UNPROCESSABLE_ENTITY,
        e if e.is_transient() => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::BAD_GATEWAY,
    };
    refusal(status, &e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(branch: &str, title: &str) -> PullRequestInput {
        PullRequestInput {
            branch: branch.into(),
            title: title.into(),
            body: None,
            ticket: None,
            draft: false,
        }
    }

    #[test]
    fn inputs_are_held_to_the_prefix_and_bounded() {
        assert_eq!(check(&input("adagent/fix-1", "Fix it"), "adagent/"), Ok(()));
        for (bad, why) in [
            (input("main", "x"), "use a branch under adagent/"),
            (input("adagent/", "x"), "use a branch under"),
            (input("adagent/a..b", "x"), "not a valid branch name"),
            (input("adagent/x", ""), "title"),
            (input("adagent/x", "two\nlines"), "title"),
            (input("adagent/x", &"t".repeat(300)), "title"),
            (
                PullRequestInput {
                    ticket: Some("has space".into()),
                    ..input("adagent/x", "t")
                },
                "ticket",
            ),
            (
                PullRequestInput {
                    body: Some("b".repeat(MAX_BODY_BYTES + 1)),
                    ..input("adagent/x", "t")
                },
                "body",
            ),
        ] {
            let reason = check(&bad, "adagent/").expect_err("refused");
            assert!(reason.contains(why), "{bad:?}: {reason}");
        }
    }
}
