//! What fakehub remembers: tokens it issued, requests it served, and the failures it was told to inject.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::time::{Duration, SystemTime};

/// A token fakehub issued. The secret is exposed on purpose: tests search files and logs for it.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub id: u64,
    pub token: String,
    pub installation_id: u64,
    pub repositories: Vec<String>,
    pub permissions: BTreeMap<String, String>,
    pub expires_at: SystemTime,
    pub revoked: bool,
}

/// One `POST /app/installations/{id}/access_tokens`, as asked and as answered.
#[derive(Debug, Clone)]
pub struct MintRecord {
    pub installation_id: u64,
    pub repositories: Option<Vec<String>>,
    pub permissions: Option<BTreeMap<String, String>>,
    pub status: u16,
    pub token_id: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthKind {
    None,
    Jwt,
    Token,
    Basic,
}

/// One request served (never the secret it carried).
#[derive(Debug, Clone)]
pub struct RequestRecord {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub status: u16,
    pub auth: AuthKind,
    pub token_id: Option<u64>,
}

/// A pull request opened on fakehub.
#[derive(Debug, Clone)]
pub struct PullRecord {
    pub number: u64,
    pub owner: String,
    pub repo: String,
    pub head: String,
    pub head_sha: String,
    pub base: String,
    pub base_sha: String,
    pub title: String,
    pub body: String,
    pub draft: bool,
}

/// A failure to answer a mint with instead of a token.
#[derive(Debug, Clone)]
pub struct InjectedFailure {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub message: String,
}

impl InjectedFailure {
    pub fn status(status: u16, message: impl Into<String>) -> Self {
        Self {
            status,
            headers: Vec::new(),
            message: message.into(),
        }
    }

    #[must_use]
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

pub(crate) struct State {
    pub(crate) tokens: Vec<IssuedToken>,
    pub(crate) mints: Vec<MintRecord>,
    pub(crate) requests: Vec<RequestRecord>,
    pub(crate) token_lifetime: Duration,
    pub(crate) mint_latency: Duration,
    pub(crate) failures: VecDeque<InjectedFailure>,
    pub(crate) date_skew: i64,
    pub(crate) uninstalled: HashSet<u64>,
    pub(crate) suspended: HashSet<u64>,
    pub(crate) pulls: Vec<PullRecord>,
}

impl State {
    pub(crate) fn new(token_lifetime: Duration) -> Self {
        Self {
            tokens: Vec::new(),
            mints: Vec::new(),
            requests: Vec::new(),
            token_lifetime,
            mint_latency: Duration::ZERO,
            failures: VecDeque::new(),
            date_skew: 0,
            uninstalled: HashSet::new(),
            suspended: HashSet::new(),
            pulls: Vec::new(),
        }
    }
}
