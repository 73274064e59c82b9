//! GitHub App client: signs the App JWT, mints, checks and revokes installation tokens over the REST API.

mod app;
mod client;
mod error;
mod installation;
mod jwt;
mod secret;
mod signer;
mod token_calls;
mod types;
mod user;

pub use app::{App, PullOutcome, ScopeError, check_scope, decode_minted, rate_limit_wait};
pub use client::{ClientError, GitHubClient, graphql_url, https_connector};
pub use error::{GithubError, Operation, RATE_LIMIT_DEFAULT_WAIT};
pub use installation::{Account, Installation, check_scope_by_id};
pub use jwt::{AppId, AppIdError, Claims, JWT_BACKDATE, JWT_LIFETIME};
pub use secret::{AppKey, InstallationToken, Jwt, KeyError};
pub use signer::{SignError, Signer};
pub use token_calls::PullHead;
pub use types::{Level, MintedToken, NewPull, Permissions, PullRef, PullRequest, Repository, TokenRequest};
pub use user::{
    OAuthApp, RepositoryPermissions, User, UserInstallation, UserRepository, UserToken, form_encode, percent_encode,
};
