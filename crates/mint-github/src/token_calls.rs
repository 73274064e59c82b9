//! The calls an installation token authenticates by itself: no App key or JWT is involved, so a daemon
//! that only holds tokens (broker mode) can make them.

use http::{Method, StatusCode};
use secrecy::ExposeSecret;

use crate::app::{generic_error, message_of};
use crate::{GitHubClient, GithubError, InstallationToken, NewPull, Operation, PullOutcome, PullRequest, Repository};

impl GitHubClient {
    /// `DELETE /installation/token`. A 401 means the token is already dead, which is what was wanted.
    pub async fn revoke(&self, token: &InstallationToken) -> Result<(), GithubError> {
        let op = Operation::Revoke;
        let response = self
            .send(
                &op,
                Method::DELETE,
                "/installation/token",
                token.bearer().expose_secret(),
                None,
            )
            .await?;
        match response.status {
            // 401 (or 404): the token was dead already, which is what revoking it asks for.
            StatusCode::NO_CONTENT | StatusCode::UNAUTHORIZED | StatusCode::NOT_FOUND => Ok(()),
            _ => Err(generic_error(op, &response)),
        }
    }

    /// `GET /repos/{owner}/{repo}` with an installation token (for the default branch).
    pub async fn repository(
        &self,
        token: &InstallationToken,
        owner: &str,
        name: &str,
    ) -> Result<Repository, GithubError> {
        let op = Operation::GetRepository {
            repo: format!("{owner}/{name}"),
        };
        let response = self
            .send(
                &op,
                Method::GET,
                &format!("/repos/{owner}/{name}"),
                token.bearer().expose_secret(),
                None,
            )
            .await?;
        match response.status {
            StatusCode::OK => serde_json::from_slice(&response.body).map_err(|e| GithubError::BadResponse {
                op,
                reason: e.to_string(),
            }),
            StatusCode::UNAUTHORIZED => Err(GithubError::TokenRejected {
                op,
                message: message_of(&response),
            }),
            _ => Err(generic_error(op, &response)),
        }
    }

    /// `POST /repos/{owner}/{repo}/pulls` with an installation token.
    pub async fn create_pull(
        &self,
        token: &InstallationToken,
        owner: &str,
        name: &str,
        pull: &NewPull<'_>,
    ) -> Result<PullOutcome, GithubError> {
        let op = Operation::CreatePull {
            repo: format!("{owner}/{name}"),
            head: pull.head.to_owned(),
        };
        let body = serde_json::to_vec(pull).expect("a NewPull always serialises");
        let response = self
            .send(
                &op,
                Method::POST,
                &format!("/repos/{owner}/{name}/pulls"),
                token.bearer().expose_secret(),
                Some(body),
            )
            .await?;
        match response.status {
            StatusCode::CREATED => serde_json::from_slice(&response.body)
                .map(PullOutcome::Created)
                .map_err(|e| GithubError::BadResponse {
                    op,
                    reason: e.to_string(),
                }),
            StatusCode::UNPROCESSABLE_ENTITY if message_of(&response).contains("already exists") => {
                Ok(PullOutcome::AlreadyExists)
            }
            StatusCode::UNAUTHORIZED => Err(GithubError::TokenRejected {
                op,
                message: message_of(&response),
            }),
            _ => Err(generic_error(op, &response)),
        }
    }

    /// The open pull request from `branch` (in the same repository), if any.
    pub async fn open_pull_for(
        &self,
        token: &InstallationToken,
        owner: &str,
        name: &str,
        branch: &str,
    ) -> Result<Option<PullRequest>, GithubError> {
        let op = Operation::FindPull {
            repo: format!("{owner}/{name}"),
            head: branch.to_owned(),
        };
        let path = format!(
            "/repos/{owner}/{name}/pulls?head={owner}:{}&state=open",
            query_escape(branch)
        );
        let response = self
            .send(&op, Method::GET, &path, token.bearer().expose_secret(), None)
            .await?;
        match response.status {
            StatusCode::OK => serde_json::from_slice::<Vec<PullRequest>>(&response.body)
                .map(|pulls| pulls.into_iter().next())
                .map_err(|e| GithubError::BadResponse {
                    op,
                    reason: e.to_string(),
                }),
            _ => Err(generic_error(op, &response)),
        }
    }
}

impl GitHubClient {
    /// `GET /repos/{owner}/{repo}/pulls?state=open`: the first page of open pull requests, newest first.
    pub async fn open_pulls(
        &self,
        token: &InstallationToken,
        owner: &str,
        name: &str,
    ) -> Result<Vec<PullRequest>, GithubError> {
        let op = Operation::FindPull {
            repo: format!("{owner}/{name}"),
            head: "*".to_owned(),
        };
        let path = format!("/repos/{owner}/{name}/pulls?state=open&per_page=30");
        let response = self
            .send(&op, Method::GET, &path, token.bearer().expose_secret(), None)
            .await?;
        match response.status {
            StatusCode::OK => serde_json::from_slice(&response.body).map_err(|e| GithubError::BadResponse {
                op,
                reason: e.to_string(),
            }),
            _ => Err(generic_error(op, &response)),
        }
    }
}

/// Branch names are ref names: letters, digits and `/-_.` need no escaping; anything else is percent-encoded.
fn query_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"/-_.".contains(&b) {
            out.push(char::from(b));
        } else {
            const HEX: &[u8; 16] = b"0123456789ABCDEF";
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 15)]));
        }
    }
    out
}
