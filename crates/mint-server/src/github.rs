//! The server's side of GitHub: check a connection before storing it, mint for a connection by repository
//! id, and say what a failed mint means for the connection.

use mint_credential::RepoName;
use mint_github::{App, GithubError, Installation, InstallationToken, MintedToken, Permissions};

use crate::model::ConnectionStatus;

/// A connection GitHub confirmed: the installation exists, is not suspended, and can mint for the
/// repository with the permissions sandboxes get.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub installation_id: u64,
    pub repository_id: u64,
    pub repository: String,
    pub account_login: String,
    pub account_type: String,
    pub installation_url: Option<String>,
}

impl Verified {
    /// The connection to store for what GitHub just confirmed: active.
    pub fn connection(&self, now: i64) -> crate::model::Connection {
        crate::model::Connection {
            status: ConnectionStatus::Active,
            reason: format!(
                "Connected to {} through installation {} on {}.",
                self.repository, self.installation_id, self.account_login
            ),
            installation_id: Some(self.installation_id),
            repository_id: Some(self.repository_id),
            repository: Some(self.repository.clone()),
            account_login: Some(self.account_login.clone()),
            account_type: Some(self.account_type.clone()),
            installation_url: self.installation_url.clone(),
            updated_at: now,
        }
    }
}

/// Why a connection cannot be stored.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error(
        "installation {installation_id} is suspended on {account}: an owner of {account} must unsuspend the App before it can be connected"
    )]
    Suspended { installation_id: u64, account: String },
    #[error(
        "repository {repository} does not belong to {account}, the account of installation {installation_id}: choose one of {account}'s repositories, or the installation on {owner}"
    )]
    WrongAccount {
        installation_id: u64,
        repository: String,
        account: String,
        owner: String,
    },
    #[error(transparent)]
    GitHub(#[from] GithubError),
}

/// The App, used only by the server: the one place the key is.
#[derive(Debug)]
pub struct GitHub {
    app: App,
    metrics: std::sync::Arc<crate::metrics::Metrics>,
    /// What every sandbox token asks for: `contents:write`, `pull_requests:write`, `metadata:read`.
    permissions: Permissions,
}

impl GitHub {
    pub fn new(app: App, metrics: std::sync::Arc<crate::metrics::Metrics>) -> Self {
        Self {
            app,
            metrics,
            permissions: Permissions::least(),
        }
    }

    pub fn permissions(&self) -> &Permissions {
        &self.permissions
    }

    /// Check with GitHub that `installation_id` can serve `repository`, and learn the repository's id.
    /// A token is minted to learn it (with exactly the sandbox permissions, so a connection that would
    /// fail every mint is refused now) and revoked at once.
    pub async fn verify(&self, installation_id: u64, repository: &RepoName) -> Result<Verified, ConnectError> {
        let installation = self
            .installation_checked(installation_id, &repository.to_string())
            .await?;
        let minted = self
            .with_clock_fix(|| {
                self.app.mint(
                    installation_id,
                    repository.owner(),
                    repository.name(),
                    &self.permissions,
                )
            })
            .await;
        self.metrics.mint(crate::metrics::mint_outcome(&minted));
        Ok(self.verified(installation, minted?).await)
    }

    /// The same check for a repository known by id (the connect flow, where the user picked it).
    pub async fn verify_by_id(
        &self,
        installation_id: u64,
        repository_id: u64,
        full_name: &str,
    ) -> Result<Verified, ConnectError> {
        let installation = self.installation_checked(installation_id, full_name).await?;
        let minted = self.mint(installation_id, repository_id, full_name).await?;
        Ok(self.verified(installation, minted).await)
    }

    /// The installation, if it exists, is not suspended and belongs to the owner of `full_name`.
    async fn installation_checked(&self, installation_id: u64, full_name: &str) -> Result<Installation, ConnectError> {
        let owner = full_name.split('/').next().unwrap_or_default();
        let installation = self.with_clock_fix(|| self.app.installation(installation_id)).await?;
        if installation.suspended_at.is_some() {
            return Err(ConnectError::Suspended {
                installation_id,
                account: installation.account.login,
            });
        }
        if !installation.account.login.eq_ignore_ascii_case(owner) {
            return Err(ConnectError::WrongAccount {
                installation_id,
                repository: full_name.to_owned(),
                account: installation.account.login,
                owner: owner.to_owned(),
            });
        }
        Ok(installation)
    }

    async fn verified(&self, installation: Installation, minted: MintedToken) -> Verified {
        self.app.revoke_quietly(&minted.token).await;
        let repo = minted
            .repositories
            .as_deref()
            .and_then(<[_]>::first)
            .expect("the mint checked the token names exactly this repository");
        Verified {
            installation_id: installation.id,
            repository_id: repo.id,
            repository: repo.full_name.clone(),
            account_login: installation.account.login,
            account_type: installation.account.kind,
            installation_url: installation.html_url,
        }
    }

    /// What GitHub says now about a stored connection: `None` when GitHub could not say (try later).
    pub async fn refresh(
        &self,
        installation_id: u64,
        repository_id: u64,
        name: &str,
    ) -> Option<(ConnectionStatus, String)> {
        let installation = match self.with_clock_fix(|| self.app.installation(installation_id)).await {
            Ok(installation) => installation,
            Err(e) => return connection_outcome(&e, name),
        };
        if installation.suspended_at.is_some() {
            return connection_outcome(
                &GithubError::InstallationSuspended {
                    installation_id,
                    message: String::new(),
                },
                name,
            );
        }
        let metadata = Permissions::parse_list("metadata:read").expect("a valid permission");
        match self
            .with_clock_fix(|| {
                self.app
                    .mint_for_repository_id(installation_id, repository_id, name, &metadata)
            })
            .await
        {
            Ok(minted) => {
                self.app.revoke_quietly(&minted.token).await;
                Some((
                    ConnectionStatus::Active,
                    format!(
                        "Connected to {name} through installation {installation_id} on {}.",
                        installation.account.login
                    ),
                ))
            }
            Err(e) => connection_outcome(&e, name),
        }
    }

    /// The repository's open pull requests from branches under `prefix` (what agents opened), read with a
    /// token that can only read pull requests, revoked at once. Empty when GitHub cannot say.
    pub async fn agent_pulls(
        &self,
        installation_id: u64,
        repository_id: u64,
        name: &str,
        prefix: &str,
    ) -> Vec<mint_github::PullRequest> {
        let read = Permissions::parse_list("pull_requests:read,metadata:read").expect("valid permissions");
        let Ok(minted) = self
            .app
            .mint_for_repository_id(installation_id, repository_id, name, &read)
            .await
        else {
            return Vec::new();
        };
        let (owner, repo) = name.split_once('/').unwrap_or((name, ""));
        let pulls = self.app.client().open_pulls(&minted.token, owner, repo).await;
        self.app.revoke_quietly(&minted.token).await;
        pulls
            .unwrap_or_default()
            .into_iter()
            .filter(|p| p.head.name.starts_with(prefix))
            // Only web links become hrefs on the page.
            .filter(|p| p.html_url.starts_with("https://") || p.html_url.starts_with("http://"))
            .collect()
    }

    pub fn app(&self) -> &App {
        &self.app
    }

    /// A token for the repository with this id, with the sandbox permissions, checked to grant no more.
    pub async fn mint(&self, installation_id: u64, repository_id: u64, name: &str) -> Result<MintedToken, GithubError> {
        let minted = self
            .with_clock_fix(|| {
                self.app
                    .mint_for_repository_id(installation_id, repository_id, name, &self.permissions)
            })
            .await;
        self.metrics.mint(crate::metrics::mint_outcome(&minted));
        minted
    }

    pub async fn revoke(&self, token: &InstallationToken) -> Result<(), GithubError> {
        self.app.revoke(token).await
    }

    pub async fn revoke_quietly(&self, token: &InstallationToken) {
        self.app.revoke_quietly(token).await;
    }

    /// A 401 whose `Date` shows our clock is off: sign with GitHub's time and try once more.
    async fn with_clock_fix<T, F: Future<Output = Result<T, GithubError>>>(
        &self,
        call: impl Fn() -> F,
    ) -> Result<T, GithubError> {
        match call().await {
            Err(GithubError::BadAppCredentials {
                server_date: Some(date),
                ..
            }) if self.app.correct_clock(date) => call().await,
            other => other,
        }
    }
}

/// What a failed mint says about the connection, if anything: the new status and the sentence shown to
/// the sandbox (in git's output) and on the Integrations page.
pub fn connection_outcome(error: &GithubError, repository: &str) -> Option<(ConnectionStatus, String)> {
    match error {
        GithubError::InstallationNotFound { installation_id } => Some((
            ConnectionStatus::InstallationGone,
            format!("installation {installation_id} was uninstalled: reconnect GitHub"),
        )),
        GithubError::InstallationSuspended { installation_id, .. } => Some((
            ConnectionStatus::Suspended,
            format!(
                "installation {installation_id} is suspended: an owner of its account must unsuspend the GitHub App, then coding tasks resume"
            ),
        )),
        GithubError::RepositoryNotSelected { installation_id, .. } => Some((
            ConnectionStatus::RepoRemoved,
            format!(
                "repository {repository} is no longer available to installation {installation_id}: add it back under the installation's repository access, or choose another repository"
            ),
        )),
        _ => None,
    }
}
