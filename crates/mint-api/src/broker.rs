//! The broker's wire contract: what `mintd --broker` and mint-server say to each other over HTTP. Both
//! ends use these types, so the contract cannot drift between them.

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
    fn a_token_request_is_empty_or_names_the_failing_token_and_nothing_else() {
        assert_eq!(serde_json::to_string(&TokenRequest::default()).expect("json"), "{}");
        let asked: TokenRequest = serde_json::from_str(r#"{"replaces":"ab"}"#).expect("json");
        assert_eq!(asked.replaces.as_deref(), Some("ab"));
        assert!(serde_json::from_str::<TokenRequest>(r#"{"repository":"x/y"}"#).is_err());
    }
}
