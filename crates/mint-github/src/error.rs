//! What went wrong talking to GitHub, worded for the person who has to fix it.

use std::fmt;
use std::time::Duration;

/// What mint was doing when GitHub failed, for error messages and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operation {
    Mint { installation_id: u64, repo: String },
    Revoke,
    GetRepository { repo: String },
    CreatePull { repo: String, head: String },
    FindPull { repo: String, head: String },
    ReadPullHead { repo: String, pull: String },
    GetInstallation { installation_id: u64 },
    ListInstallations,
    ListInstallationRequests,
    OAuthExchange,
    GetUser,
    ListUserInstallations,
    ListUserRepositories { installation_id: u64 },
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Operation::Mint { installation_id, repo } => {
                write!(f, "mint a token for {repo} from installation {installation_id}")
            }
            Operation::Revoke => f.write_str("revoke an installation token"),
            Operation::GetRepository { repo } => write!(f, "read repository {repo}"),
            Operation::CreatePull { repo, head } => write!(f, "open a pull request from {head} in {repo}"),
            Operation::FindPull { repo, head } => write!(f, "find the open pull request from {head} in {repo}"),
            Operation::ReadPullHead { repo, pull } => write!(f, "read the head of pull request {pull} in {repo}"),
            Operation::GetInstallation { installation_id } => write!(f, "read installation {installation_id}"),
            Operation::ListInstallations => f.write_str("list the App's installations"),
            Operation::ListInstallationRequests => f.write_str("list the requests to install the App"),
            Operation::OAuthExchange => f.write_str("exchange the OAuth code for a user token"),
            Operation::GetUser => f.write_str("read the signed-in user"),
            Operation::ListUserInstallations => f.write_str("list the user's installations"),
            Operation::ListUserRepositories { installation_id } => {
                write!(f, "list the user's repositories in installation {installation_id}")
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GithubError {
    #[error("could not reach the GitHub API at {url} to {op}: {cause}")]
    Unreachable { op: Operation, url: String, cause: String },
    #[error("the GitHub API at {url} did not answer within {} s when asked to {op}", timeout.as_secs())]
    Timeout {
        op: Operation,
        url: String,
        timeout: Duration,
    },
    #[error(
        "installation {installation_id} not found: the GitHub App was uninstalled or the id is wrong; reconnect GitHub"
    )]
    InstallationNotFound { installation_id: u64 },
    #[error("installation {installation_id} is suspended ({message}): an owner of the account must unsuspend the App")]
    InstallationSuspended { installation_id: u64, message: String },
    #[error(
        "GitHub rejected the App's JWT ({status} {message}): check that App id {app_id} and the private key belong to the same GitHub App, and that this machine's clock is right"
    )]
    BadAppCredentials {
        app_id: String,
        status: u16,
        message: String,
        /// GitHub's `Date` on the 401: lets the caller tell a skewed clock from a wrong key.
        server_date: Option<std::time::SystemTime>,
    },
    #[error(
        "repository {repo} is not selected for installation {installation_id} ({message}): add it under the installation's \"Repository access\", or reconnect GitHub with it"
    )]
    RepositoryNotSelected {
        installation_id: u64,
        repo: String,
        message: String,
    },
    #[error(
        "installation {installation_id} has not granted {permissions} ({message}): an owner of the account must approve the App's requested permissions"
    )]
    PermissionNotGranted {
        installation_id: u64,
        permissions: String,
        message: String,
    },
    #[error("GitHub rate-limited the request to {op} ({message}){}", retry_hint(*retry_after))]
    RateLimited {
        op: Operation,
        retry_after: Option<Duration>,
        message: String,
    },
    #[error("GitHub rejected the installation token when asked to {op} ({message}): it expired or was revoked")]
    TokenRejected { op: Operation, message: String },
    #[error("GitHub answered {status} when asked to {op}: {message}")]
    Status {
        op: Operation,
        status: u16,
        message: String,
    },
    #[error("GitHub's answer when asked to {op} was not understood: {reason}")]
    BadResponse { op: Operation, reason: String },
    #[error("GitHub granted more than mint asked for, so the token was revoked and not served: {0}")]
    Scope(#[from] crate::ScopeError),
    #[error("could not sign the App JWT: {0}")]
    Jwt(String),
    #[error("{last} (gave up after {attempts} attempts over {} s)", elapsed.as_secs())]
    GaveUp {
        attempts: u32,
        elapsed: Duration,
        last: Box<GithubError>,
    },
}

fn retry_hint(retry_after: Option<Duration>) -> String {
    match retry_after {
        Some(d) => format!(": GitHub asks to retry in {} s", d.as_secs()),
        None => String::new(),
    }
}

/// How long to leave GitHub alone after a rate limit that named no time (a 429 or secondary limit without
/// `Retry-After`): GitHub's documentation asks for at least a minute.
pub const RATE_LIMIT_DEFAULT_WAIT: Duration = Duration::from_secs(60);

impl GithubError {
    /// How long GitHub asked to be left alone after this failure: a rate limit's `Retry-After` or the reset
    /// of a spent budget, [`RATE_LIMIT_DEFAULT_WAIT`] when it named no time; `None` for anything that is not
    /// a rate limit. Sees through [`GithubError::GaveUp`] to the last answer.
    pub fn hold_off(&self) -> Option<Duration> {
        match self {
            GithubError::RateLimited { retry_after, .. } => Some(retry_after.unwrap_or(RATE_LIMIT_DEFAULT_WAIT)),
            GithubError::GaveUp { last, .. } => last.hold_off(),
            _ => None,
        }
    }

    /// Whether trying again later can succeed without anyone changing anything.
    pub fn is_transient(&self) -> bool {
        match self {
            GithubError::Unreachable { .. }
            | GithubError::Timeout { .. }
            | GithubError::RateLimited { .. }
            | GithubError::GaveUp { .. } => true,
            GithubError::Status { status, .. } => *status >= 500,
            _ => false,
        }
    }

    /// A short, stable label for metrics and status (`not_found`, `rate_limited`, …).
    pub fn reason(&self) -> &'static str {
        match self {
            GithubError::Unreachable { .. } => "unreachable",
            GithubError::Timeout { .. } => "timeout",
            GithubError::InstallationNotFound { .. } => "installation_not_found",
            GithubError::InstallationSuspended { .. } => "installation_suspended",
            GithubError::BadAppCredentials { .. } => "bad_app_credentials",
            GithubError::RepositoryNotSelected { .. } => "repository_not_selected",
            GithubError::PermissionNotGranted { .. } => "permission_not_granted",
            GithubError::RateLimited { .. } => "rate_limited",
            GithubError::TokenRejected { .. } => "token_rejected",
            GithubError::Status { status, .. } if *status >= 500 => "server_error",
            GithubError::Status { .. } => "http_error",
            GithubError::BadResponse { .. } => "bad_response",
            GithubError::Scope(_) => "scope_exceeded",
            GithubError::Jwt(_) => "jwt",
            GithubError::GaveUp { last, .. } => last.reason(),
        }
    }
}
