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

/// Where a pull request's changes come from: its head branch and the repository that holds it (`None` when
/// that repository was deleted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullHead {
    pub head_ref: String,
    pub head_repo: Option<String>,
}

impl GitHubClient {
    /// `GET /repos/{owner}/{repo}/pulls/{number}`'s head; `None` when there is no such pull request.
    pub async fn pull_head(
        &self,
        token: &InstallationToken,
        owner: &str,
        name: &str,
        number: u64,
    ) -> Result<Option<PullHead>, GithubError> {
        #[derive(serde::Deserialize)]
        struct Pull {
            head: Head,
        }
        #[derive(serde::Deserialize)]
        struct Head {
            #[serde(rename = "ref")]
            name: String,
            repo: Option<HeadRepo>,
        }
        #[derive(serde::Deserialize)]
        struct HeadRepo {
            full_name: String,
        }
        let op = Operation::ReadPullHead {
            repo: format!("{owner}/{name}"),
            pull: format!("#{number}"),
        };
        let path = format!("/repos/{owner}/{name}/pulls/{number}");
        let response = self
            .send(&op, Method::GET, &path, token.bearer().expose_secret(), None)
            .await?;
        match response.status {
            StatusCode::OK => serde_json::from_slice::<Pull>(&response.body)
                .map(|pull| {
                    Some(PullHead {
                        head_ref: pull.head.name,
                        head_repo: pull.head.repo.map(|r| r.full_name),
                    })
                })
                .map_err(|e| GithubError::BadResponse {
                    op,
                    reason: e.to_string(),
                }),
            StatusCode::NOT_FOUND => Ok(None),
            StatusCode::UNAUTHORIZED => Err(GithubError::TokenRejected {
                op,
                message: message_of(&response),
            }),
            _ => Err(generic_error(op, &response)),
        }
    }

    /// The head of the pull request with GraphQL node id `node_id`; `None` when the node is not a pull
    /// request (or does not exist).
    pub async fn pull_head_by_node(
        &self,
        token: &InstallationToken,
        repo: &str,
        node_id: &str,
    ) -> Result<Option<PullHead>, GithubError> {
        #[derive(serde::Deserialize)]
        struct Answer {
            data: Option<Data>,
        }
        #[derive(serde::Deserialize)]
        struct Data {
            node: Option<Node>,
        }
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Node {
            head_ref_name: Option<String>,
            head_repository: Option<NodeRepo>,
        }
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct NodeRepo {
            name_with_owner: String,
        }
        let op = Operation::ReadPullHead {
            repo: repo.to_owned(),
            pull: format!("node {node_id:?}"),
        };
        let body = serde_json::json!({
            "query": "query($id: ID!) { node(id: $id) { ... on PullRequest { headRefName headRepository { nameWithOwner } } } }",
            "variables": {"id": node_id},
        });
        let response = self
            .send_to(
                &op,
                Method::POST,
                self.graphql_url(),
                Some(token.bearer().expose_secret()),
                Some(("application/json", body.to_string().into_bytes())),
                "application/json",
            )
            .await?;
        match response.status {
            StatusCode::OK => {
                let answer: Answer = serde_json::from_slice(&response.body).map_err(|e| GithubError::BadResponse {
                    op,
                    reason: e.to_string(),
                })?;
                Ok(answer.data.and_then(|d| d.node).and_then(|node| {
                    Some(PullHead {
                        head_ref: node.head_ref_name?,
                        head_repo: node.head_repository.map(|r| r.name_with_owner),
                    })
                }))
            }
            StatusCode::UNAUTHORIZED => Err(GithubError::TokenRejected {
                op,
                message: message_of(&response),
            }),
            _ => Err(generic_error(op, &response)),
        }
    }
}
