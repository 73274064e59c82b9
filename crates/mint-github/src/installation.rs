//! What the control plane asks GitHub beside minting by name: an installation's account and state, and
//! tokens minted by numeric repository id, which survives renames and transfers.

use http::{Method, StatusCode};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};

use crate::app::{generic_error, message_of, server_date};
use crate::{App, GithubError, InstallationToken, MintedToken, Operation, Permissions, ScopeError};

/// The subset of GitHub's `installation` object the control plane reads.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct Installation {
    pub id: u64,
    pub account: Account,
    /// Where an owner adds or removes the installation's repositories.
    #[serde(default)]
    pub html_url: Option<String>,
    /// Set while an owner has suspended the App on the account.
    #[serde(default)]
    pub suspended_at: Option<String>,
}

/// The user or organization an installation belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct Account {
    pub login: String,
    /// `User` or `Organization`.
    #[serde(rename = "type", default)]
    pub kind: String,
}

/// A pending request to install the App on `account`, made by `requester`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct InstallationRequest {
    pub id: u64,
    pub account: Account,
    pub requester: crate::User,
}

/// Body of `POST /app/installations/{id}/access_tokens` naming the repository by id.
#[derive(Serialize)]
struct TokenRequestById<'a> {
    repository_ids: [u64; 1],
    permissions: &'a Permissions,
}

impl App {
    /// `GET /app/installations/{id}` with the App JWT.
    pub async fn installation(&self, installation_id: u64) -> Result<Installation, GithubError> {
        let op = Operation::GetInstallation { installation_id };
        let jwt = self.jwt()?;
        let path = format!("/app/installations/{installation_id}");
        let response = self
            .client
            .send(
                &op,
                Method::GET,
                &path,
                crate::secret::bearer(jwt.expose()).expose_secret(),
                None,
            )
            .await?;
        match response.status {
            StatusCode::OK => serde_json::from_slice(&response.body).map_err(|e| GithubError::BadResponse {
                op,
                reason: e.to_string(),
            }),
            StatusCode::NOT_FOUND => Err(GithubError::InstallationNotFound { installation_id }),
            StatusCode::UNAUTHORIZED => Err(GithubError::BadAppCredentials {
                app_id: self.id.to_string(),
                status: 401,
                message: message_of(&response),
                server_date: server_date(&response.headers),
            }),
            _ => Err(generic_error(op, &response)),
        }
    }

    /// `GET /app/installations` with the App JWT, every page: every installation of the App.
    pub async fn installations(&self) -> Result<Vec<Installation>, GithubError> {
        const PER_PAGE: usize = 100;
        let mut all = Vec::new();
        for page in 1..=100 {
            let op = Operation::ListInstallations;
            let jwt = self.jwt()?;
            let path = format!("/app/installations?per_page={PER_PAGE}&page={page}");
            let response = self
                .client
                .send(
                    &op,
                    Method::GET,
                    &path,
                    crate::secret::bearer(jwt.expose()).expose_secret(),
                    None,
                )
                .await?;
            if response.status != StatusCode::OK {
                return Err(generic_error(op, &response));
            }
            let got: Vec<Installation> =
                serde_json::from_slice(&response.body).map_err(|e| GithubError::BadResponse {
                    op,
                    reason: e.to_string(),
                })?;
            let short = got.len() < PER_PAGE;
            all.extend(got);
            if short {
                break;
            }
        }
        Ok(all)
    }

    /// `GET /app/installation-requests` with the App JWT (first page, newest requests): who asked which
    /// account's owners to install the App, as GitHub records it.
    pub async fn installation_requests(&self) -> Result<Vec<InstallationRequest>, GithubError> {
        let op = Operation::ListInstallationRequests;
        let jwt = self.jwt()?;
        let response = self
            .client
            .send(
                &op,
                Method::GET,
                "/app/installation-requests?per_page=100",
                crate::secret::bearer(jwt.expose()).expose_secret(),
                None,
            )
            .await?;
        if response.status != StatusCode::OK {
            return Err(generic_error(op, &response));
        }
        serde_json::from_slice(&response.body).map_err(|e| GithubError::BadResponse {
            op,
            reason: e.to_string(),
        })
    }

    /// Mint a token limited to the repository with this numeric id and to `permissions`, and verify the
    /// grant. `full_name` is what the caller last knew the repository as, for messages only: the answer
    /// carries its current name.
    #[tracing::instrument(level = "debug", skip(self, permissions), fields(app = %self.id))]
    pub async fn mint_for_repository_id(
        &self,
        installation_id: u64,
        repository_id: u64,
        full_name: &str,
        permissions: &Permissions,
    ) -> Result<MintedToken, GithubError> {
        let body = serde_json::to_vec(&TokenRequestById {
            repository_ids: [repository_id],
            permissions,
        })
        .expect("a token request always serialises");
        let minted = self
            .request_token(installation_id, full_name, permissions, body)
            .await?;
        if let Err(scope) = check_scope_by_id(&minted, repository_id, full_name, permissions) {
            self.revoke_quietly(&minted.token).await;
            return Err(scope.into());
        }
        Ok(minted)
    }

    /// Revoke, logging rather than returning a failure: for tokens that must not live on but whose
    /// revocation nobody waits for (the token expires within the hour anyway).
    pub async fn revoke_quietly(&self, token: &InstallationToken) {
        if let Err(e) = self.revoke(token).await {
            tracing::warn!(error = %e, "could not revoke a token; it expires on its own");
        }
    }
}

/// The token must cover exactly the repository with this id and no permission beyond those requested.
pub fn check_scope_by_id(
    minted: &MintedToken,
    repository_id: u64,
    full_name: &str,
    asked: &Permissions,
) -> Result<(), ScopeError> {
    let excess = minted.permissions.excess_over(asked);
    if !excess.is_empty() {
        return Err(ScopeError::Permissions { excess });
    }
    let repos = minted.repositories.as_deref().unwrap_or_default();
    if minted.repository_selection.as_deref() == Some("all") || repos.len() != 1 || repos[0].id != repository_id {
        let got = if minted.repository_selection.as_deref() == Some("all") {
            "all of the installation's repositories".to_owned()
        } else if repos.is_empty() {
            "no listed repository".to_owned()
        } else {
            repos
                .iter()
                .map(|r| format!("{} (id {})", r.full_name, r.id))
                .collect::<Vec<_>>()
                .join(", ")
        };
        return Err(ScopeError::Repositories {
            want: format!("{full_name} (id {repository_id})"),
            got,
        });
    }
    Ok(())
}
