//! The broker's wire contract: what `mintd --broker` and mint-server say to each other over HTTP. Both
//! ends use these types, so the contract cannot drift between them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `POST`, `Authorization: Bearer <sandbox credential>`, body [`TokenRequest`]: a token for the sandbox's
/// repository (docs/server.md).
pub const TOKEN_PATH: &str = "/api/v1/token";
/// `GET`, `Authorization: Bearer <sandbox credential>`: the sandbox's [`SandboxState`]. With
/// `If-None-Match: <its ETag>` and `?wait=SECONDS` (at most [`MAX_WAIT_SECONDS`]) the answer waits until
/// the state differs (200) or the time is up (304): a long poll, so mintd hears of Disconnect, Change
/// repository or teardown within moments, without asking for tokens.
pub const SANDBOX_PATH: &str = "/api/v1/sandbox";
pub const MAX_WAIT_SECONDS: u64 = 55;

/// The body of a token request; `{}` asks for the sandbox's live token or a new one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// The SHA-256 (lower-case hex) of a token git reported failing: the broker does not hand that one out
    /// again, and mints another (within the sandbox's budget).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaces: Option<String>,
}

/// The 200 answer to a token request: an installation token for exactly the sandbox's repository. The
/// server serializes it; mintd deserializes it and then checks every field before serving the token
/// (crates/mint-daemon/src/broker.rs). The token is a secret: `Debug` never shows it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenAnswer {
    pub token: String,
    /// When GitHub expires the token (RFC 3339). Its life is counted from the answer's `Date` header.
    pub expires_at: String,
    /// `OWNER/NAME`.
    pub repository: String,
    #[serde(default)]
    pub repository_id: Option<u64>,
    pub installation_id: u64,
    /// What the token may do, as GitHub states it: permission name to `read` or `write`.
    pub permissions: BTreeMap<String, String>,
}

impl std::fmt::Debug for TokenAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenAnswer")
            .field("token", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .field("repository", &self.repository)
            .field("repository_id", &self.repository_id)
            .field("installation_id", &self.installation_id)
            .field("permissions", &self.permissions)
            .finish()
    }
}

/// Every failure's body, from every mint-server route: `{"status": CODE, "message": SENTENCE}`, the
/// sentence naming the cause and the way out.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    #[serde(rename = "status", default)]
    pub code: ErrorCode,
    #[serde(default)]
    pub message: String,
}

/// What went wrong, for programs (the message is for people). A code this build does not know (a newer
/// server's), or none, reads as [`ErrorCode::Unknown`], so the message still shows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    // The sandbox's access to its repository ended or never began (409).
    NotConnected,
    PendingApproval,
    Suspended,
    RepoRemoved,
    InstallationGone,
    AccessEnded,
    PermissionNotGranted,
    // The caller.
    Unauthorized,
    BadRequest,
    BadSignature,
    BodyTooLarge,
    BodyTimeout,
    MethodNotAllowed,
    NotFound,
    ProductNotFound,
    SandboxNotFound,
    ConnectionRefused,
    MintBudgetExhausted,
    // mint-server or GitHub, for now: retry (most carry `Retry-After`).
    Busy,
    TimedOut,
    MintQueueFull,
    GithubRateLimited,
    GithubUnavailable,
    DatabaseUnavailable,
    // mint-server or GitHub, until an operator acts.
    GithubError,
    AppMisconfigured,
    DatabaseError,
    SealUnavailable,
    NotConfigured,
    Internal,
    #[default]
    #[serde(other)]
    Unknown,
}

impl ErrorCode {
    /// The code as it stands on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::NotConnected => "not_connected",
            ErrorCode::PendingApproval => "pending_approval",
            ErrorCode::Suspended => "suspended",
            ErrorCode::RepoRemoved => "repo_removed",
            ErrorCode::InstallationGone => "installation_gone",
            ErrorCode::AccessEnded => "access_ended",
            ErrorCode::PermissionNotGranted => "permission_not_granted",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::BadSignature => "bad_signature",
            ErrorCode::BodyTooLarge => "body_too_large",
            ErrorCode::BodyTimeout => "body_timeout",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::NotFound => "not_found",
            ErrorCode::ProductNotFound => "product_not_found",
            ErrorCode::SandboxNotFound => "sandbox_not_found",
            ErrorCode::ConnectionRefused => "connection_refused",
            ErrorCode::MintBudgetExhausted => "mint_budget_exhausted",
            ErrorCode::Busy => "busy",
            ErrorCode::TimedOut => "timed_out",
            ErrorCode::MintQueueFull => "mint_queue_full",
            ErrorCode::GithubRateLimited => "github_rate_limited",
            ErrorCode::GithubUnavailable => "github_unavailable",
            ErrorCode::DatabaseUnavailable => "database_unavailable",
            ErrorCode::GithubError => "github_error",
            ErrorCode::AppMisconfigured => "app_misconfigured",
            ErrorCode::DatabaseError => "database_error",
            ErrorCode::SealUnavailable => "seal_unavailable",
            ErrorCode::NotConfigured => "not_configured",
            ErrorCode::Internal => "internal",
            ErrorCode::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where the sandbox's GitHub access stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxState {
    pub sandbox_id: String,
    /// Tokens may be had now.
    pub active: bool,
    /// `active`, the connection's status (`not_connected`, `installation_gone`, `suspended`,
    /// `repo_removed`, `pending_approval`), or `sandbox_torn_down` / `sandbox_expired`.
    pub code: String,
    /// Why, in the words git should show when it is not active.
    pub message: String,
    /// The repository tokens are for, while active.
    pub repository: Option<String>,
    pub repository_id: Option<u64>,
    pub installation_id: Option<u64>,
}

impl SandboxState {
    /// A strong `ETag` for this state (what `If-None-Match` sends back).
    pub fn etag(&self) -> String {
        // FNV-1a over the serialized state: stable across replicas and releases of the same contract.
        let body = serde_json::to_vec(self).unwrap_or_default();
        let hash = body.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
        });
        format!("\"{hash:016x}\"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_etag_follows_the_state() {
        let state = SandboxState {
            sandbox_id: "sbx_1".into(),
            active: true,
            code: "active".into(),
            message: "Connected".into(),
            repository: Some("octo-org/hello-world".into()),
            repository_id: Some(1),
            installation_id: Some(42),
        };
        assert_eq!(state.etag(), state.clone().etag());
        let moved = SandboxState {
            repository_id: Some(2),
            ..state.clone()
        };
        assert_ne!(state.etag(), moved.etag());
        assert!(state.etag().starts_with('"') && state.etag().ends_with('"'));
    }

    #[test]
    fn error_codes_read_as_they_are_written_and_unknown_ones_still_parse() {
        let body = ErrorBody {
            code: ErrorCode::InstallationGone,
            message: "Reconnect GitHub".into(),
        };
        let wire = serde_json::to_string(&body).expect("json");
        assert_eq!(wire, r#"{"status":"installation_gone","message":"Reconnect GitHub"}"#);
        assert_eq!(serde_json::from_str::<ErrorBody>(&wire).expect("json"), body);
        let newer: ErrorBody = serde_json::from_str(r#"{"status":"teapot","message":"m"}"#).expect("json");
        assert_eq!(newer.code, ErrorCode::Unknown);
        for code in [
            ErrorCode::MintQueueFull,
            ErrorCode::Unauthorized,
            ErrorCode::DatabaseError,
        ] {
            let json = serde_json::to_value(code).expect("json");
            assert_eq!(json.as_str(), Some(code.as_str()), "as_str follows serde's name");
        }
    }

    #[test]
    fn a_token_answer_never_shows_its_token_in_debug() {
        let answer = TokenAnswer {
            token: "ghs_secret.with.dots".into(),
            expires_at: "2026-11-29T20:00:00Z".into(),
            repository: "o/r".into(),
            repository_id: Some(1),
            installation_id: 42,
            permissions: BTreeMap::from([("contents".into(), "write".into())]),
        };
        assert!(!format!("{answer:?}").contains("ghs_secret"));
        let back: TokenAnswer = serde_json::from_value(serde_json::to_value(&answer).expect("json")).expect("json");
        assert_eq!(back, answer);
    }

    #[test]
    fn a_token_request_is_empty_or_names_the_failing_token_and_nothing_else() {
        assert_eq!(serde_json::to_string(&TokenRequest::default()).expect("json"), "{}");
        let asked: TokenRequest = serde_json::from_str(r#"{"replaces":"ab"}"#).expect("json");
        assert_eq!(asked.replaces.as_deref(), Some("ab"));
        assert!(serde_json::from_str::<TokenRequest>(r#"{"repository":"x/y"}"#).is_err());
    }
}
