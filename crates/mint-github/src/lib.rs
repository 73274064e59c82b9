//! GitHub App client: signs the App JWT, mints, checks and revokes installation tokens over the REST API.

mod app;
mod client;
mod error;
mod fingerprint;
mod installation;
mod jwt;
mod key_source;
mod pkcs11;
mod secret;
mod signer;
mod token_calls;
mod types;
mod user;

pub use app::{App, AppKeys, KeyChange, PullOutcome, ScopeError, check_scope, decode_minted, rate_limit_wait};
pub use client::{ClientError, GitHubClient, graphql_url, https_connector};
pub use error::{GithubError, Operation, RATE_LIMIT_DEFAULT_WAIT};
pub use fingerprint::KeyFingerprint;
pub use installation::{Account, Installation, InstallationRequest, check_scope_by_id};
pub use jwt::{AppId, AppIdError, Claims, JWT_BACKDATE, JWT_LIFETIME};
pub use key_source::{KEY_POLL_INTERVAL, KeyReloader, KeySource, KeySourceError, KeyStamp, LoadedKey};
pub use pkcs11::{Pkcs11Error, Pkcs11Signer, Pkcs11Uri, read_pin_file};
pub use secret::{AppKey, InstallationToken, Jwt, KeyError};
pub use signer::{SignError, Signer};
pub use token_calls::PullHead;
pub use types::{Level, MintedToken, NewPull, Permissions, PullRef, PullRequest, Repository, TokenRequest};
pub use user::{
    OAuthApp, RepositoryPermissions, User, UserInstallation, UserRepository, UserToken, form_encode, percent_encode,
};
