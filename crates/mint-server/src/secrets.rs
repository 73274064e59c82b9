//! The server's own secrets: sandbox credentials (256-bit random, shown once, stored as SHA-256), the
//! admin token (compared by hash in constant time), and random ids.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore as _;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Every sandbox credential starts with this, so secret scanners and people can tell what leaked.
pub const CREDENTIAL_PREFIX: &str = "mint_sbx_";

/// Admin tokens shorter than this are refused: 32 characters of base64 is 192 bits.
pub const MIN_ADMIN_TOKEN_LEN: usize = 32;

/// A newly made sandbox credential: handed to the orchestrator once, then only its hash exists.
pub struct SandboxCredential(SecretString);

impl SandboxCredential {
    pub fn generate() -> Self {
        let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(bytes.as_mut());
        Self(SecretString::from(format!(
            "{CREDENTIAL_PREFIX}{}",
            URL_SAFE_NO_PAD.encode(bytes.as_ref())
        )))
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    pub fn sha256(&self) -> String {
        sha256_hex(self.expose().as_bytes())
    }
}

impl fmt::Debug for SandboxCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SandboxCredential(<redacted>)")
    }
}

/// Could this be a credential we made? Malformed ones are refused without asking the database; the answer
/// is the same 401 either way.
pub fn plausible_credential(presented: &str) -> bool {
    presented.strip_prefix(CREDENTIAL_PREFIX).is_some_and(|rest| {
        rest.len() == 43
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

/// The admin token, kept only as its hash.
pub struct AdminToken {
    sha256: [u8; 32],
}

impl AdminToken {
    pub fn new(token: &str) -> Self {
        Self {
            sha256: Sha256::digest(token.as_bytes()).into(),
        }
    }

    /// Constant time: hashing first makes the comparison independent of where the strings differ.
    pub fn matches(&self, presented: &str) -> bool {
        let theirs: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        bool::from(self.sha256.ct_eq(&theirs))
    }
}

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AdminToken(<redacted>)")
    }
}

/// The SHA-256 of `bytes`, in lower-case hex: what the database keeps of a secret.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// 256 random bits, URL-safe: session ids, CSRF tokens, OAuth states.
pub fn random_token() -> String {
    let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
    rand::rngs::OsRng.fill_bytes(bytes.as_mut());
    URL_SAFE_NO_PAD.encode(bytes.as_ref())
}

/// A random id with a type prefix (`prd_…`, `sbx_…`): 80 bits, unguessable, URL-safe.
pub fn new_id(prefix: &str) -> String {
    let mut bytes = [0u8; 10];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("{prefix}{}", sha256_hex(&bytes).get(..20).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_random_prefixed_and_redacted() {
        let a = SandboxCredential::generate();
        let b = SandboxCredential::generate();
        assert_ne!(a.expose(), b.expose());
        assert!(plausible_credential(a.expose()), "{}", a.expose().len());
        assert!(!plausible_credential("mint_sbx_short"));
        assert!(!plausible_credential(&a.expose().replace("mint_sbx_", "ghs_")));
        assert_eq!(format!("{a:?}"), "SandboxCredential(<redacted>)");
        assert_eq!(a.sha256(), sha256_hex(a.expose().as_bytes()));
        assert_eq!(a.sha256().len(), 64);
    }

    #[test]
    fn the_admin_token_matches_only_itself() {
        let admin = AdminToken::new("correct horse battery staple and more");
        assert!(admin.matches("correct horse battery staple and more"));
        assert!(!admin.matches("correct horse battery staple and mora"));
        assert!(!admin.matches(""));
        assert_eq!(format!("{admin:?}"), "AdminToken(<redacted>)");
    }

    #[test]
    fn ids_carry_their_kind() {
        let id = new_id("prd_");
        assert!(id.starts_with("prd_") && id.len() == 24, "{id}");
        assert_ne!(new_id("prd_"), id);
    }
}
