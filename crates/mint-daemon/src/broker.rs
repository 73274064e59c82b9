//! Broker mode: mintd holds no App key. It asks the control plane (the broker) for each token with this
//! sandbox's credential, serves only an answer for exactly one repository with no permission beyond the
//! least, and revokes any other answer itself.
//!
//! The contract: `POST {broker}/api/v1/token` with `Authorization: Bearer <credential>` and body `{}`.
//! 200 carries the token, its expiry, repository and installation; errors carry
//! `{"status": "<code>", "message": "<sentence>"}`: 401 for a credential the broker does not know, 409 for a
//! connection that is not active, 400/413 for a request it refuses, 502 when GitHub failed it, 503 (with
//! `Retry-After`) when it is itself unavailable.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use mint_api::broker::{ErrorBody, ErrorCode, SANDBOX_PATH, SandboxState, TOKEN_PATH, TokenAnswer, TokenRequest};
use mint_credential::{RepoName, Server};
use mint_github::{GitHubClient, GithubError, InstallationToken, MintedToken, Permissions};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::cache::{MintError, Minted, Minter};
use crate::metrics::Metrics;
use crate::retry::{self, Retryable};

/// One request to the broker, connection and answer included; retries stay within the retry deadline.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// The broker's answers are well under a KiB; anything far larger is refused rather than buffered.
const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// The broker's messages reach git's stderr: short sentences, capped in case something else answers.
const MAX_MESSAGE_CHARS: usize = 500;
/// A credential file larger than this is not a credential.
const MAX_CREDENTIAL_BYTES: u64 = 16 * 1024;
const USER_AGENT: &str = concat!("mintd/", env!("CARGO_PKG_VERSION"));

/// This sandbox's credential for the broker. `Debug` prints a redaction; the memory is wiped on drop.
pub struct SandboxCredential(SecretString);

impl SandboxCredential {
    /// The credential as read from its file: surrounding whitespace trimmed, then it must be non-empty
    /// visible ASCII (it travels in an `Authorization` header). The reason never quotes the content.
    pub fn new(raw: &[u8]) -> Result<Self, &'static str> {
        let text = std::str::from_utf8(raw).map_err(|_| "is not text")?.trim();
        if text.is_empty() {
            return Err("is empty");
        }
        if !text.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("holds spaces, control or non-ASCII characters, which cannot travel in an HTTP header");
        }
        Ok(Self(SecretString::from(text.to_owned())))
    }

    /// Read and check the credential file. The file's bytes are wiped once copied into the secret.
    pub fn read(path: &std::path::Path) -> Result<Self, String> {
        use std::io::Read;
        let file = std::fs::File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let mut raw = zeroize::Zeroizing::new(Vec::with_capacity(256));
        file.take(MAX_CREDENTIAL_BYTES + 1)
            .read_to_end(&mut raw)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        if raw.len() as u64 > MAX_CREDENTIAL_BYTES {
            return Err(format!(
                "{} is over {MAX_CREDENTIAL_BYTES} bytes: not a sandbox credential",
                path.display()
            ));
        }
        Self::new(&raw).map_err(|why| format!("{} {why}", path.display()))
    }

    fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// `Bearer <credential>` for the `Authorization` header, kept secret (redacted `Debug`, wiped on drop)
    /// rather than `format!`ed into a plain `String`.
    fn bearer(&self) -> SecretString {
        let mut header = String::with_capacity("Bearer ".len() + self.expose().len());
        header.push_str("Bearer ");
        header.push_str(self.expose());
        SecretString::from(header)
    }
}

impl std::fmt::Debug for SandboxCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SandboxCredential(<redacted>)")
    }
}

/// Check `--broker`: `https://`, or `http://` to a loopback address only (the credential would otherwise
/// cross the network in clear). Returns the URL without a trailing slash.
pub fn check_url(url: &str) -> Result<String, String> {
    let parsed = url::Url::parse(url)
        .ok()
        .filter(url::Url::has_host)
        .ok_or_else(|| format!("{url:?} is not a URL: expected e.g. https://mint.example.com"))?;
    if !parsed.username().is_empty() || parsed.password().is_some() || parsed.query().is_some() {
        return Err(format!(
            "{url:?} must be the broker's address without a user name or query, e.g. https://mint.example.com"
        ));
    }
    mint_service::require_https_or_loopback(&parsed, "the broker").map_err(|e| e.to_string())?;
    Ok(url.trim_end_matches('/').to_owned())
}

/// Why the broker gave no token, worded for the person reading git's output. The broker's own message is
/// quoted verbatim (control characters dropped); the credential is never part of one.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BrokerError {
    #[error("could not reach the broker at {url}: {cause}")]
    Unreachable { url: String, cause: String },
    #[error("the broker at {url} did not answer within {} s", timeout.as_secs())]
    Timeout { url: String, timeout: Duration },
    #[error(
        "the broker at {url} refused this sandbox's credential: it is unknown, expired or revoked (the sandbox was torn down?); ask the orchestrator for a new sandbox{}",
        said(message)
    )]
    CredentialRefused { url: String, message: String },
    #[error("the broker has no active GitHub connection for this sandbox ({code}): {message}")]
    NotActive { code: String, message: String },
    #[error(
        "the broker at {url} refused mintd's token request ({status}{}): {message}; this mintd and the broker may not speak the same API version",
        code_hint(code)
    )]
    Rejected {
        url: String,
        status: u16,
        code: String,
        message: String,
    },
    #[error("the broker at {url} is unavailable ({status}{}): {message}{}", code_hint(code), retry_hint(*retry_after))]
    Unavailable {
        url: String,
        status: u16,
        code: String,
        message: String,
        retry_after: Option<Duration>,
    },
    #[error(
        "the broker at {url} answered {status}{} to {TOKEN_PATH}: {message}; check --broker",
        code_hint(code)
    )]
    Status {
        url: String,
        status: u16,
        code: String,
        message: String,
    },
    #[error("the broker's answer was not understood: {reason}; the token it may have carried was revoked")]
    BadAnswer { reason: String },
    #[error(
        "the broker returned a token wider than {least} on one repository ({detail}): mintd revoked it and serves nothing; the broker's GitHub App or its configuration grants too much",
        least = Permissions::least()
    )]
    TooWide { detail: String },
    #[error("{last} (gave up after {attempts} attempts over {} s)", elapsed.as_secs())]
    GaveUp {
        attempts: u32,
        elapsed: Duration,
        last: Box<BrokerError>,
    },
}

fn said(message: &str) -> String {
    if message.is_empty() {
        String::new()
    } else {
        format!(" (the broker said: {message})")
    }
}

fn code_hint(code: &str) -> String {
    if code.is_empty() {
        String::new()
    } else {
        format!(" {code}")
    }
}

fn retry_hint(retry_after: Option<Duration>) -> String {
    match retry_after {
        Some(d) => format!("; it asks to retry in {} s", d.as_secs()),
        None => String::new(),
    }
}

impl BrokerError {
    /// Whether trying again later can succeed without anyone changing anything. A refused credential and
    /// an inactive connection need a person (or the orchestrator); an outage does not.
    pub fn is_transient(&self) -> bool {
        match self {
            BrokerError::Unreachable { .. } | BrokerError::Timeout { .. } | BrokerError::Unavailable { .. } => true,
            BrokerError::GaveUp { last, .. } => last.is_transient(),
            _ => false,
        }
    }

    /// How long the broker asked to be left alone (its `Retry-After`, or a minute for a 429 that named no
    /// time); `None` when it did not ask. Sees through [`BrokerError::GaveUp`] to the last answer.
    pub fn hold_off(&self) -> Option<Duration> {
        match self {
            BrokerError::Unavailable {
                retry_after: Some(wait),
                ..
            } => Some(*wait),
            BrokerError::Unavailable { status: 429, .. } => Some(mint_github::RATE_LIMIT_DEFAULT_WAIT),
            BrokerError::GaveUp { last, .. } => last.hold_off(),
            _ => None,
        }
    }

    /// A short, stable label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            BrokerError::Unreachable { .. } => "broker_unreachable",
            BrokerError::Timeout { .. } => "broker_timeout",
            BrokerError::CredentialRefused { .. } => "broker_credential_refused",
            BrokerError::NotActive { .. } => "connection_not_active",
            BrokerError::Rejected { .. } => "broker_rejected_request",
            BrokerError::Unavailable { .. } => "broker_unavailable",
            BrokerError::Status { .. } => "broker_http_error",
            BrokerError::BadAnswer { .. } => "broker_bad_answer",
            BrokerError::TooWide { .. } => "scope_exceeded",
            BrokerError::GaveUp { last, .. } => last.reason(),
        }
    }
}

/// The broker's failures, as the token cache needs to know them.
impl crate::cache::MintFailureCause for BrokerError {
    fn is_transient(&self) -> bool {
        BrokerError::is_transient(self)
    }

    fn reason(&self) -> &'static str {
        BrokerError::reason(self)
    }

    fn hold_off(&self) -> Option<Duration> {
        BrokerError::hold_off(self)
    }
}

impl Retryable for BrokerError {
    fn is_transient(&self) -> bool {
        BrokerError::is_transient(self)
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            BrokerError::Unavailable { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    fn gave_up(self, attempts: u32, elapsed: Duration) -> Self {
        BrokerError::GaveUp {
            attempts,
            elapsed,
            last: Box::new(self),
        }
    }
}

/// A token the broker handed over, checked: one repository, no permission beyond [`Permissions::least`].
#[derive(Debug)]
pub struct BrokerToken {
    /// The token with its expiry, the broker's `Date`, and the permissions it grants.
    pub minted: MintedToken,
    pub repository: RepoName,
    pub repository_id: Option<u64>,
    pub installation_id: u64,
}

/// No usable token. When the broker did hand one over and mintd refuses it, `token` holds it for the
/// caller to revoke.
#[derive(Debug)]
pub struct TokenFailure {
    pub error: BrokerError,
    pub token: Option<InstallationToken>,
}

impl From<BrokerError> for TokenFailure {
    fn from(error: BrokerError) -> Self {
        Self { error, token: None }
    }
}

/// The token alone, read first: once it is in hand, every later refusal hands it back for revocation.
#[derive(Deserialize)]
struct TokenOnly {
    token: String,
}

/// Decode and check the broker's 200 answer. `server_date` is the answer's `Date`, so the token's lifetime
/// holds when this machine's clock is off. Public so tests and fuzzing reach exactly what mintd runs.
pub fn decode_answer(body: &[u8], server_date: Option<SystemTime>) -> Result<BrokerToken, TokenFailure> {
    let bad = |reason: String| BrokerError::BadAnswer { reason };
    // The token first, alone: once it is in hand, every later refusal hands it back for revocation.
    let TokenOnly { token } = serde_json::from_slice(body).map_err(|e| bad(format!("no token in the answer: {e}")))?;
    let token = InstallationToken::new(token)
        .ok_or_else(|| bad("the token is empty, too long, or holds spaces or control characters".into()))?;
    let refuse = |error: BrokerError| TokenFailure {
        error,
        token: Some(token.clone()),
    };
    // The answer's shape first, for what the contract's types cannot say: a broker passing GitHub's own
    // answer through, or one naming several repositories, is refused in those words.
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| refuse(bad(format!("token answer: {e}"))))?;
    let repository = one_repository(&value).map_err(|detail| refuse(BrokerError::TooWide { detail }))?;
    if value.get("permissions").is_none_or(serde_json::Value::is_null) {
        return Err(refuse(BrokerError::TooWide {
            detail: "the answer names no permissions".into(),
        }));
    }
    // Then the contract's own type, and its fields one by one.
    let answer: TokenAnswer = serde_json::from_slice(body).map_err(|e| refuse(bad(format!("token answer: {e}"))))?;
    let expires_at = humantime::parse_rfc3339(&answer.expires_at)
        .map_err(|e| refuse(bad(format!("expires_at {:?}: {e}", clip(&answer.expires_at)))))?;
    let permissions: Permissions = serde_json::to_value(&answer.permissions)
        .and_then(serde_json::from_value)
        .map_err(|e| {
            refuse(BrokerError::TooWide {
                detail: format!("permissions not understood: {e}"),
            })
        })?;
    let excess = permissions.excess_over(&Permissions::least());
    if !excess.is_empty() {
        return Err(refuse(BrokerError::TooWide {
            detail: format!("it also grants {}", excess.join(",")),
        }));
    }
    let minted = MintedToken {
        token: token.clone(),
        expires_at,
        server_date,
        permissions,
        repository_selection: Some("selected".into()),
        repositories: None,
    };
    if minted.lifetime().is_zero() {
        return Err(refuse(bad(format!(
            "the token expired at {} already",
            humantime::format_rfc3339_seconds(expires_at)
        ))));
    }
    Ok(BrokerToken {
        minted,
        repository,
        repository_id: answer.repository_id,
        installation_id: answer.installation_id,
    })
}

/// The one repository the answer names, or what it names instead. `repositories` and
/// `repository_selection` are not in the contract: a broker passing GitHub's answer through would send them,
/// and they are held to that one repository.
fn one_repository(answer: &serde_json::Value) -> Result<RepoName, String> {
    let name = match answer.get("repository").unwrap_or(&serde_json::Value::Null) {
        serde_json::Value::String(name) => name,
        serde_json::Value::Array(names) => return Err(format!("it names {} repositories", names.len())),
        other => return Err(format!("repository is {}, not OWNER/NAME", kind(other))),
    };
    let repository: RepoName = name
        .parse()
        .map_err(|e| format!("repository {:?} is not one repository: {e}", clip(name)))?;
    if answer.get("repository_selection").and_then(serde_json::Value::as_str) == Some("all") {
        return Err("it covers all of the installation's repositories".into());
    }
    if let Some(listed) = answer.get("repositories").filter(|v| !v.is_null()) {
        let names: Vec<String> = listed
            .as_array()
            .map(|listed| {
                listed
                    .iter()
                    .map(|r| match r {
                        serde_json::Value::String(s) => s.clone(),
                        other => other
                            .get("full_name")
                            .and_then(serde_json::Value::as_str)
                            .unwrap_or("?")
                            .to_owned(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        if names.len() != 1 || !repository.matches_path(&names[0]) {
            return Err(format!("it lists repositories {}", clip(&names.join(", "))));
        }
    }
    Ok(repository)
}

fn kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "a list",
        serde_json::Value::Object(_) => "an object",
    }
}

/// A broker's words as they may be shown: no control characters (they would reach a terminal through git),
/// and at most [`MAX_MESSAGE_CHARS`].
fn clip(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_control())
        .take(MAX_MESSAGE_CHARS)
        .collect::<String>()
        .trim()
        .to_owned()
}

/// A code this build does not know (a newer broker's), as written, with what a terminal must not see
/// dropped; empty when there is none.
fn unknown_code(body: &[u8]) -> String {
    let value: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    value
        .get("status")
        .and_then(serde_json::Value::as_str)
        .unwrap_or_default()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .take(64)
        .collect()
}

/// Map a non-200 answer to what it means for this sandbox.
pub fn decode_error(url: &str, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> BrokerError {
    // mint-api's ErrorBody; a body that is not one (a proxy's page) leaves the status to speak.
    let parsed: ErrorBody = serde_json::from_slice(body).unwrap_or_default();
    let code = match parsed.code {
        ErrorCode::Unknown => unknown_code(body),
        known => known.as_str().to_owned(),
    };
    let message = clip(&parsed.message);
    let or_reason = |message: String| {
        if message.is_empty() {
            status.canonical_reason().unwrap_or("no message").to_owned()
        } else {
            message
        }
    };
    let url = url.to_owned();
    match status {
        StatusCode::UNAUTHORIZED => BrokerError::CredentialRefused { url, message },
        StatusCode::CONFLICT => BrokerError::NotActive {
            code: if code.is_empty() { "not_active".into() } else { code },
            message: or_reason(message),
        },
        StatusCode::BAD_REQUEST | StatusCode::PAYLOAD_TOO_LARGE => BrokerError::Rejected {
            url,
            status: status.as_u16(),
            code,
            message: or_reason(message),
        },
        s if s.is_server_error() || s == StatusCode::TOO_MANY_REQUESTS => BrokerError::Unavailable {
            url,
            status: status.as_u16(),
            code,
            message: or_reason(message),
            retry_after: headers
                .get(header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse().ok())
                .map(Duration::from_secs),
        },
        _ => BrokerError::Status {
            url,
            status: status.as_u16(),
            code,
            message: or_reason(message),
        },
    }
}

/// The broker's HTTP client: one URL, one credential.
pub struct BrokerClient {
    http: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    url: String,
    credential: SandboxCredential,
    timeout: Duration,
}

impl std::fmt::Debug for BrokerClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerClient")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl BrokerClient {
    /// `url` as checked by [`check_url`].
    pub fn new(url: &str, credential: SandboxCredential) -> Result<Self, mint_github::ClientError> {
        let connector = mint_github::https_connector(url)?;
        Ok(Self {
            http: Client::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(30))
                .build(connector),
            url: url.trim_end_matches('/').to_owned(),
            credential,
            timeout: REQUEST_TIMEOUT,
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// One `POST /api/v1/token`, decoded and checked. `replaces` names (by SHA-256) a token git reported
    /// failing, which the broker then does not hand out again.
    pub async fn request_token(&self, replaces: Option<String>) -> Result<BrokerToken, TokenFailure> {
        let body = serde_json::to_vec(&TokenRequest { replaces }).expect("a token request serialises");
        let request = self
            .request(Method::POST, TOKEN_PATH)
            .header(header::CONTENT_TYPE, "application/json");
        let (status, headers, body) = self.exchange(request, body, self.timeout).await?;
        if status != StatusCode::OK {
            return Err(decode_error(&self.url, status, &headers, &body).into());
        }
        decode_answer(&body, server_date(&headers))
    }

    /// One long poll of `GET /api/v1/sandbox`: the sandbox's state and its `ETag` once it differs from
    /// `known`, or `None` when `wait` passed with no change.
    pub async fn watch(
        &self,
        known: Option<&str>,
        wait: Duration,
    ) -> Result<Option<(SandboxState, String)>, BrokerError> {
        let path = format!("{SANDBOX_PATH}?wait={}", wait.as_secs());
        let mut request = self.request(Method::GET, &path);
        if let Some(etag) = known.and_then(|k| HeaderValue::from_str(k).ok()) {
            request = request.header(header::IF_NONE_MATCH, etag);
        }
        let (status, headers, body) = self.exchange(request, Vec::new(), wait + self.timeout).await?;
        match status {
            StatusCode::NOT_MODIFIED => Ok(None),
            StatusCode::OK => {
                let state: SandboxState = serde_json::from_slice(&body).map_err(|e| BrokerError::Status {
                    url: self.url.clone(),
                    status: status.as_u16(),
                    code: String::new(),
                    message: format!("the sandbox's state was not understood: {e}"),
                })?;
                let etag = headers
                    .get(header::ETAG)
                    .and_then(|v| v.to_str().ok())
                    .map_or_else(|| state.etag(), str::to_owned);
                Ok(Some((state, etag)))
            }
            _ => Err(decode_error(&self.url, status, &headers, &body)),
        }
    }

    fn request(&self, method: Method, path: &str) -> http::request::Builder {
        let mut auth = HeaderValue::from_str(self.credential.bearer().expose_secret())
            .expect("the credential was checked to be visible ASCII");
        auth.set_sensitive(true);
        Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.url))
            .header(header::AUTHORIZATION, auth)
            .header(header::ACCEPT, "application/json")
            .header(header::USER_AGENT, USER_AGENT)
    }

    async fn exchange(
        &self,
        request: http::request::Builder,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<(StatusCode, HeaderMap, Bytes), BrokerError> {
        let unreachable = |cause: String| BrokerError::Unreachable {
            url: self.url.clone(),
            cause,
        };
        let request = request
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| unreachable(e.to_string()))?;
        let exchange = async {
            let response = self
                .http
                .request(request)
                .await
                .map_err(|e| unreachable(error_chain(&e)))?;
            let (parts, body) = response.into_parts();
            // A connection cut mid-answer is an outage like a refused connection: worth a retry.
            let body = Limited::new(body, MAX_ANSWER_BYTES)
                .collect()
                .await
                .map_err(|e| unreachable(format!("reading the answer failed: {e}")))?
                .to_bytes();
            Ok((parts.status, parts.headers, body))
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| BrokerError::Timeout {
                url: self.url.clone(),
                timeout,
            })?
    }
}

fn server_date(headers: &HeaderMap) -> Option<SystemTime> {
    headers
        .get(header::DATE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok())
}

/// hyper's errors say little at the top ("client error (Connect)"); the cause is further down.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// Mints through the broker; revokes with the token itself on GitHub's API, which needs no key.
pub struct BrokerMinter {
    broker: Arc<BrokerClient>,
    github: GitHubClient,
    server: Server,
    retry: retry::RetryPolicy,
    metrics: Arc<Metrics>,
    /// The SHA-256 of the token git last reported failing, for the next request.
    failing: std::sync::Mutex<Option<String>>,
}

impl BrokerMinter {
    pub fn new(broker: Arc<BrokerClient>, github: GitHubClient, server: Server, metrics: Arc<Metrics>) -> Self {
        Self {
            broker,
            github,
            server,
            retry: retry::RetryPolicy::default(),
            metrics,
            failing: std::sync::Mutex::default(),
        }
    }

    pub fn url(&self) -> &str {
        self.broker.url()
    }

    /// The broker's client, for the sandbox's state watch.
    pub fn client(&self) -> Arc<BrokerClient> {
        self.broker.clone()
    }

    /// One request; a token mintd refuses is revoked before the error is returned.
    async fn attempt(&self) -> Result<BrokerToken, BrokerError> {
        let replaces = self
            .failing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        match self.broker.request_token(replaces).await {
            Ok(token) => Ok(token),
            Err(TokenFailure { error, token }) => {
                if let Some(token) = token {
                    tracing::warn!(error = %error, "refused the broker's token; revoking it");
                    if let Err(e) = self.github.revoke(&token).await {
                        tracing::warn!(error = %e, "could not revoke the refused token; it expires on its own");
                    }
                }
                Err(error)
            }
        }
    }
}

impl Minter for BrokerMinter {
    async fn mint(&self) -> Result<Minted, MintError> {
        let answer = retry::with_retries(
            self.retry,
            || self.attempt(),
            |error, wait| {
                self.metrics.retries.inc();
                tracing::warn!(error = %error, retry_in_ms = wait.as_millis(), "the broker failed; retrying");
            },
        )
        .await?;
        tracing::debug!(
            repository = %answer.repository,
            repository_id = answer.repository_id,
            installation = answer.installation_id,
            "the broker handed over a token"
        );
        Ok(Minted {
            target: Arc::new(self.server.target(answer.repository)),
            installation_id: answer.installation_id,
            token: answer.minted,
        })
    }

    async fn revoke(&self, token: &InstallationToken) -> Result<(), GithubError> {
        self.github.revoke(token).await
    }

    fn reported_failing(&self, token: &InstallationToken) {
        use sha2::Digest as _;
        let hash = hex::encode(sha2::Sha256::digest(token.expose().as_bytes()));
        *self.failing.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(hash);
    }
}

#[cfg(test)]
mod tests;
