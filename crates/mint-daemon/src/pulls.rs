//! `POST /v1/pulls`: open the pull request from an agent branch for a human to review. mintd holds the
//! token and the policy: the head must be a valid branch inside the prefix, the base is the repository's
//! default branch as GitHub reports it (never the caller's choice), and inputs are bounded. The repository
//! is the token's own: the configured one, or the broker's latest.

use bytes::Bytes;
use http::{Response, StatusCode, header};
use http_body_util::Full;
use mint_api::{PullRequestInput, PullRequestOutput};
use mint_github::{NewPull, PullOutcome};

use crate::Daemon;
use crate::peer::AllowedPeer;
use crate::server::refusal;

/// Proof that a pull-request request came from an allowed peer and passed the input policy. Only this
/// module creates one, and the token cache demands it.
#[derive(Debug)]
pub struct PullChecked {
    _checked: (),
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
    if let Err(reason) = input.check(&daemon.branch_prefix) {
        tracing::warn!(%reason, "refused a pull request");
        return refusal(StatusCode::BAD_REQUEST, &reason);
    }
    let checked = PullChecked { _checked: () };
    let cached = match daemon.cache.get_for_pull(&checked).await {
        Ok(cached) => cached,
        Err(failure) => return crate::server::mint_failed(&failure),
    };
    let (token, github) = (&cached.token, &daemon.github);
    let repo = cached.target.repo();
    let (owner, name) = (repo.owner(), repo.name());
    let base = match github.repository(token, owner, name).await {
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
    let (pull, created) = match github.create_pull(token, owner, name, &new).await {
        Ok(PullOutcome::Created(pull)) => (pull, true),
        Ok(PullOutcome::AlreadyExists) => match github.open_pull_for(token, owner, name, &input.branch).await {
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
