//! mintd's local API on its unix socket: the routes, the JSON it speaks, and a small blocking client.
//!
//! The client is deliberately plain `std` + `httparse`: the credential helper runs once per git network
//! command, so it must start and finish in about a millisecond, with no async runtime to build.

pub mod broker;
mod client;
pub mod policy;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use client::{Client, ClientError, Response, parse_response};

/// Where mintd listens unless told otherwise.
pub const DEFAULT_SOCKET: &str = "/run/mint/mint.sock";

/// Names of the environment variables mint's programs read, in one place.
pub mod env {
    pub const SOCKET: &str = "MINT_SOCKET";
    pub const APP_ID: &str = "MINT_APP_ID";
    pub const PRIVATE_KEY_FILE: &str = "MINT_PRIVATE_KEY_FILE";
    pub const PKCS11_PIN_FILE: &str = "MINT_PKCS11_PIN_FILE";
    pub const INSTALLATION_ID: &str = "MINT_INSTALLATION_ID";
    pub const REPO: &str = "MINT_REPO";
    pub const GITHUB_URL: &str = "MINT_GITHUB_URL";
    pub const API_URL: &str = "MINT_API_URL";
    pub const PERMISSIONS: &str = "MINT_PERMISSIONS";
    /// Broker mode: the control plane mintd asks for tokens instead of holding the App key.
    pub const BROKER: &str = "MINT_BROKER";
    /// Broker mode: the file holding this sandbox's credential for the broker.
    pub const SANDBOX_CREDENTIAL_FILE: &str = "MINT_SANDBOX_CREDENTIAL_FILE";
    pub const ALLOW_READABLE_CREDENTIAL: &str = "MINT_ALLOW_READABLE_CREDENTIAL";
    pub const LOG: &str = "RUST_LOG";
}

/// The routes mintd serves.
pub mod route {
    /// `POST`, body: git's credential request. 200 with git's credential answer; 204 when the request is
    /// not for this daemon's repository (git moves on); 400 for a malformed request; 502/503 with a
    /// message when no token could be had.
    pub const CREDENTIAL_GET: &str = "/v1/credential/get";
    /// `POST`, body: git's credential request. Accepted and ignored: mintd never stores what git offers.
    pub const CREDENTIAL_STORE: &str = "/v1/credential/store";
    /// `POST`, body: git's credential request with the password that failed. If it is the token being
    /// served, mintd drops it and the next `get` mints a new one. Always 204.
    pub const CREDENTIAL_ERASE: &str = "/v1/credential/erase";
    /// `GET`: [`Status`] as JSON.
    pub const STATUS: &str = "/v1/status";
    /// `POST`, body: [`PullRequestInput`] as JSON. Opens (or finds) the pull request from an agent branch to
    /// the repository's default branch: 201 with [`PullRequestOutput`] when opened, 200 when one was already
    /// open, 400 for input the policy refuses, 422 when GitHub refuses (e.g. no commits), 502/503 on failure.
    pub const PULLS: &str = "/v1/pulls";
    /// `GET`: 200 `ok` once serving.
    pub const HEALTHZ: &str = "/healthz";
    /// `GET`: Prometheus text: mints by outcome and reason, cache hits, retries, revocations, erases,
    /// declined requests, a `get` latency histogram, the token's seconds of life left.
    pub const METRICS: &str = "/metrics";
}

/// Requests to mintd carry at most this much body (git's credential requests are a few hundred bytes).
pub const MAX_REQUEST_BODY: usize = 64 * 1024;

/// A one-line, human-readable reason on refusals and errors, for the helper to show on stderr.
pub const REASON_HEADER: &str = "mint-reason";

/// The socket a program should use: the `--socket` flag, else `MINT_SOCKET`, else [`DEFAULT_SOCKET`].
pub fn socket_path(flag: Option<PathBuf>) -> PathBuf {
    flag.or_else(|| {
        std::env::var_os(env::SOCKET)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    })
    .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET))
}

/// What an agent asks for with `POST /v1/pulls`. The base branch is not the caller's to choose: mintd takes
/// the repository's default branch from GitHub.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullRequestInput {
    /// The pushed branch, inside mintd's prefix (`adagent/…`).
    pub branch: String,
    pub title: String,
    #[serde(default)]
    pub body: Option<String>,
    /// A ticket id or URL, linked at the end of the body.
    #[serde(default)]
    pub ticket: Option<String>,
    #[serde(default)]
    pub draft: bool,
}

/// The pull request mintd opened or found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullRequestOutput {
    pub number: u64,
    pub url: String,
    pub head: String,
    pub base: String,
    /// `false` when an open pull request for the branch already existed.
    pub created: bool,
}

/// What `GET /v1/status` answers. Never contains a secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub version: String,
    /// `OWNER/NAME`. In broker mode the latest token's, and empty before the first one.
    pub repository: String,
    /// In broker mode the latest token's, and 0 before the first one.
    pub installation_id: u64,
    /// Empty in broker mode: the broker holds the App.
    pub app_id: String,
    pub github_url: String,
    pub api_url: String,
    /// `contents:write,metadata:read,pull_requests:write`.
    pub permissions: String,
    pub token: Option<TokenStatus>,
    /// Tokens minted since start.
    pub mints: u64,
    pub last_error: Option<String>,
    pub uptime_seconds: u64,
    /// Mediated mode: the address of mintd's git proxy (`127.0.0.1:8417`); absent in helper mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_proxy: Option<String>,
    /// The branches an agent may push and open pull requests from: `adagent/`.
    #[serde(default = "default_branch_prefix")]
    pub branch_prefix: String,
    /// Broker mode: the broker's URL (`https://mint.example.com`); absent when mintd holds the App key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broker: Option<String>,
}

fn default_branch_prefix() -> String {
    "adagent/".to_owned()
}

/// The token currently served, described without the token itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenStatus {
    /// RFC 3339, UTC.
    pub expires_at: String,
    pub expires_in_seconds: u64,
    /// RFC 3339, UTC.
    pub minted_at: String,
}
