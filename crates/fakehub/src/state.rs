//! What fakehub remembers: installations, tokens it issued, requests it served, the failures it was told to
//! inject, browser sessions, OAuth codes, installation requests and webhook deliveries.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::{Duration, SystemTime};

use crate::{InstallationConfig, RepositorySelection};

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
    /// When `DELETE /installation/token` revoked it (fakehub's clock), for measuring how soon tokens die.
    pub revoked_at: Option<SystemTime>,
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
    /// A user access token (`ghu_…`) from the OAuth web flow.
    UserToken,
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
    /// `open` or `closed`.
    pub state: String,
    /// The merge commit, once merged (through `PUT …/merge` or GraphQL `mergePullRequest`).
    pub merged: Option<String>,
    /// Who opened it: the App's bot for a token, or a person.
    pub author: String,
}

/// A conversation comment on an issue or pull request (`issue-comment`).
#[derive(Debug, Clone)]
pub struct IssueComment {
    pub id: u64,
    pub owner: String,
    pub repo: String,
    pub number: u64,
    pub author: String,
    pub body: String,
    pub created_at: SystemTime,
}

/// A review comment on a pull request's diff (`pull-request-review-comment`).
#[derive(Debug, Clone)]
pub struct ReviewComment {
    pub id: u64,
    pub owner: String,
    pub repo: String,
    pub number: u64,
    pub review_id: Option<u64>,
    pub author: String,
    pub body: String,
    pub path: String,
    pub line: Option<u64>,
    pub commit_id: String,
    pub in_reply_to: Option<u64>,
    pub created_at: SystemTime,
}

/// A review of a pull request (`pull-request-review`).
#[derive(Debug, Clone)]
pub struct Review {
    pub id: u64,
    pub owner: String,
    pub repo: String,
    pub number: u64,
    pub author: String,
    pub body: String,
    /// `PENDING`, `COMMENTED`, `CHANGES_REQUESTED`, `APPROVED`.
    pub state: String,
    pub commit_id: String,
    pub submitted_at: Option<SystemTime>,
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

/// A Git LFS file lock.
#[derive(Debug, Clone)]
pub(crate) struct LfsLock {
    pub(crate) id: String,
    pub(crate) owner: String,
    pub(crate) repo: String,
    pub(crate) path: String,
    pub(crate) by: String,
    pub(crate) locked_at: String,
}

impl LfsLock {
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::json!({"id": self.id, "path": self.path, "locked_at": self.locked_at, "owner": {"name": self.by}})
    }
}

/// An installation as it stands now (static ones from `Config`, and those created at run time).
#[derive(Debug, Clone)]
pub struct InstallationInfo {
    pub id: u64,
    pub account: String,
    pub repository_selection: RepositorySelection,
    pub repositories: Vec<String>,
    pub permissions: BTreeMap<String, String>,
    /// Created at run time (install page, request approval, `FakeHub::install`), not from `Config`.
    pub dynamic: bool,
    pub suspended: bool,
    pub deleted: bool,
}

/// A non-owner's request that an organisation owner install the App.
#[derive(Debug, Clone)]
pub struct InstallationRequest {
    pub id: u64,
    pub account: String,
    pub requester: String,
    pub repository_selection: RepositorySelection,
    pub repositories: Vec<String>,
    pub created_at: SystemTime,
    /// The installation an owner's approval created.
    pub approved_installation: Option<u64>,
}

/// One attempt to deliver a webhook (a redelivery is a new attempt with the same `guid`).
#[derive(Debug, Clone)]
pub struct Delivery {
    /// This attempt's number, from 1.
    pub id: u64,
    /// `X-GitHub-Delivery`.
    pub guid: String,
    pub event: String,
    pub action: Option<String>,
    pub installation_id: Option<u64>,
    pub url: String,
    pub redelivery: bool,
    /// The receiver's HTTP status; `None` until it answers, or if it never did (see `error`).
    pub status_code: Option<u16>,
    pub error: Option<String>,
    /// The exact bytes sent (and signed).
    pub body: String,
}

pub(crate) struct Installation {
    pub(crate) config: InstallationConfig,
    pub(crate) selection: RepositorySelection,
    pub(crate) dynamic: bool,
    pub(crate) created_at: SystemTime,
}

pub(crate) struct Suspension {
    pub(crate) by: String,
    pub(crate) at: SystemTime,
}

pub(crate) struct UserToken {
    pub(crate) token: String,
    pub(crate) login: String,
}

pub(crate) struct OAuthCode {
    pub(crate) code: String,
    pub(crate) login: String,
    pub(crate) redirect_uri: Option<String>,
    pub(crate) code_challenge: Option<String>,
    pub(crate) issued_at: SystemTime,
    pub(crate) used: bool,
}

pub(crate) struct Session {
    pub(crate) login: String,
    /// Every state-changing form carries it back (`authenticity_token`, as GitHub names it).
    pub(crate) csrf: String,
}

pub(crate) struct State {
    pub(crate) tokens: Vec<IssuedToken>,
    pub(crate) mints: Vec<MintRecord>,
    pub(crate) requests: Vec<RequestRecord>,
    pub(crate) token_lifetime: Duration,
    pub(crate) mint_latency: Duration,
    /// Mints answered at once at most (0: no limit); more get GitHub's secondary rate limit (403).
    pub(crate) max_concurrent_mints: usize,
    pub(crate) mints_in_flight: usize,
    /// Mints refused for going over `max_concurrent_mints`.
    pub(crate) mints_over_limit: usize,
    pub(crate) failures: VecDeque<InjectedFailure>,
    /// Answers for the next revocations (`DELETE /installation/token`); the token stays live.
    pub(crate) revoke_failures: VecDeque<InjectedFailure>,
    /// How long a revocation takes before it is answered (and takes effect).
    pub(crate) revoke_latency: Duration,
    /// Answers for the next pack uploads (`POST …/git-receive-pack`), sent before the body is read.
    pub(crate) push_failures: VecDeque<InjectedFailure>,
    /// Answers for the next calls to the repository API (`/repos/…`) and GraphQL.
    pub(crate) api_failures: VecDeque<InjectedFailure>,
    /// Answers for the next LFS object uploads to the storage route.
    pub(crate) lfs_failures: VecDeque<InjectedFailure>,
    /// Answers for the next upload of one object, by oid (before `lfs_failures`).
    pub(crate) lfs_object_failures: HashMap<String, InjectedFailure>,
    /// Storage requests (download, upload, verify) being answered, and the most seen at once.
    pub(crate) lfs_in_flight: usize,
    pub(crate) lfs_max_in_flight: usize,
    /// Storage requests wait until this many are in flight at once (then the gate stays open).
    pub(crate) lfs_gate: Option<usize>,
    /// Signs the LFS actions' `Authorization` headers (the storage route's own credential).
    pub(crate) lfs_secret: [u8; 32],
    pub(crate) lfs_locks: Vec<LfsLock>,
    pub(crate) date_skew: i64,
    pub(crate) uninstalled: HashSet<u64>,
    /// Installations `GET /app/installations` leaves out though they exist (a page that shifted under a
    /// paging client).
    pub(crate) skipped_in_list: HashSet<u64>,
    pub(crate) suspended: HashMap<u64, Suspension>,
    pub(crate) pulls: Vec<PullRecord>,
    pub(crate) issue_comments: Vec<IssueComment>,
    pub(crate) review_comments: Vec<ReviewComment>,
    pub(crate) reviews: Vec<Review>,
    /// Ids for comments and reviews, shared as GitHub's are unique.
    pub(crate) next_comment_id: u64,
    pub(crate) installations: Vec<Installation>,
    pub(crate) next_installation_id: u64,
    pub(crate) user_tokens: Vec<UserToken>,
    pub(crate) codes: Vec<OAuthCode>,
    pub(crate) sessions: HashMap<String, Session>,
    /// Users who authorized the App (asked once; later authorize requests redirect at once).
    pub(crate) authorized: HashSet<String>,
    pub(crate) install_requests: Vec<InstallationRequest>,
    pub(crate) deliveries: Vec<Delivery>,
    pub(crate) webhook_url: Option<String>,
    pub(crate) webhook_secret: Option<String>,
    /// `http://127.0.0.1:PORT`, known once serving.
    pub(crate) base_url: Option<String>,
}

impl State {
    pub(crate) fn new(token_lifetime: Duration) -> Self {
        Self {
            tokens: Vec::new(),
            mints: Vec::new(),
            requests: Vec::new(),
            token_lifetime,
            mint_latency: Duration::ZERO,
            max_concurrent_mints: 0,
            mints_in_flight: 0,
            mints_over_limit: 0,
            failures: VecDeque::new(),
            revoke_failures: VecDeque::new(),
            revoke_latency: Duration::ZERO,
            push_failures: VecDeque::new(),
            api_failures: VecDeque::new(),
            lfs_failures: VecDeque::new(),
            lfs_object_failures: HashMap::new(),
            lfs_in_flight: 0,
            lfs_max_in_flight: 0,
            lfs_gate: None,
            lfs_secret: rand::random(),
            lfs_locks: Vec::new(),
            date_skew: 0,
            uninstalled: HashSet::new(),
            skipped_in_list: HashSet::new(),
            suspended: HashMap::new(),
            pulls: Vec::new(),
            issue_comments: Vec::new(),
            review_comments: Vec::new(),
            reviews: Vec::new(),
            next_comment_id: 1,
            installations: Vec::new(),
            next_installation_id: 1000,
            user_tokens: Vec::new(),
            codes: Vec::new(),
            sessions: HashMap::new(),
            authorized: HashSet::new(),
            install_requests: Vec::new(),
            deliveries: Vec::new(),
            webhook_url: None,
            webhook_secret: None,
            base_url: None,
        }
    }
}
