//! Newtypes for every secret mint handles. Their `Debug` prints a redaction and their memory is wiped on
//! drop, so a stray `{:?}` or a tracing field cannot leak one.

use std::fmt;

use jsonwebtoken::EncodingKey;
use secrecy::{ExposeSecret, SecretString};

/// The GitHub App's RSA private key, parsed once.
///
/// `jsonwebtoken` keeps the key's DER in its `EncodingKey`, which it does not wipe on drop; the key lives
/// for the whole process anyway, and the process is made non-dumpable, so no copy outlives it on disk.
pub struct AppKey {
    key: EncodingKey,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(
        "the App private key is not an RSA private key in PEM form (\"BEGIN RSA PRIVATE KEY\" or \"BEGIN PRIVATE KEY\"): {reason}; download a new key from the App's settings page"
    )]
    NotRsaPem { reason: String },
    #[error("the App private key could not sign a JWT: {reason}")]
    Unusable { reason: String },
}

impl AppKey {
    /// Parse a PKCS#1 (`BEGIN RSA PRIVATE KEY`, what GitHub hands out) or PKCS#8 (`BEGIN PRIVATE KEY`) PEM.
    pub fn from_pem(pem: &[u8]) -> Result<Self, KeyError> {
        let key = EncodingKey::from_rsa_pem(pem).map_err(|e| KeyError::NotRsaPem { reason: e.to_string() })?;
        let key = Self { key };
        // A key that parses can still fail to sign (e.g. PKCS#8 wrapping something else): find out now,
        // at start-up, rather than at the first `git fetch`.
        let probe = crate::jwt::Claims::new(&crate::AppId::probe(), std::time::SystemTime::now());
        key.sign(&probe)
            .map_err(|e| KeyError::Unusable { reason: e.to_string() })?;
        Ok(key)
    }

    /// The raw RS256 signature of `message` (jsonwebtoken hands it over base64url-encoded).
    pub(crate) fn sign_bytes(
        &self,
        message: &[u8],
    ) -> Result<zeroize::Zeroizing<Vec<u8>>, jsonwebtoken::errors::Error> {
        use base64::Engine as _;
        let encoded = zeroize::Zeroizing::new(jsonwebtoken::crypto::sign(
            message,
            &self.key,
            jsonwebtoken::Algorithm::RS256,
        )?);
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(encoded.as_bytes())
            .map(zeroize::Zeroizing::new)
            .map_err(|e| jsonwebtoken::errors::ErrorKind::Base64(e).into())
    }

    pub(crate) fn sign(&self, claims: &crate::jwt::Claims) -> Result<Jwt, jsonwebtoken::errors::Error> {
        let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        jsonwebtoken::encode(&header, claims, &self.key).map(|s| Jwt(SecretString::from(s)))
    }
}

impl fmt::Debug for AppKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AppKey(<redacted>)")
    }
}

/// A signed App JWT (valid for about ten minutes; authenticates as the App itself).
pub struct Jwt(SecretString);

impl Jwt {
    /// A compact JWT signed elsewhere (a KMS or HSM [`crate::Signer`]).
    pub fn new(compact: String) -> Self {
        Self(SecretString::from(compact))
    }

    /// The compact JWT, for an `Authorization: Bearer` header and nothing else.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for Jwt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Jwt(<redacted>)")
    }
}

/// An installation access token. Opaque: GitHub's newer ones are ~520 characters and contain dots.
#[derive(Clone)]
pub struct InstallationToken(SecretString);

impl InstallationToken {
    /// Accept a token only if it can travel in an HTTP header and git's credential protocol:
    /// visible ASCII, no spaces, and of a sane length.
    pub fn new(token: String) -> Option<Self> {
        let ok = (1..=8192).contains(&token.len()) && token.bytes().all(|b| b.is_ascii_graphic());
        let secret = SecretString::from(token);
        ok.then_some(Self(secret))
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// `Bearer <token>` for an `Authorization` header, as a secret itself: its `Debug` is redacted and it is
    /// wiped on drop, unlike a `format!`ed `String`.
    pub fn bearer(&self) -> SecretString {
        bearer(self.expose())
    }

    /// Constant-time comparison with a candidate (e.g. the password git asks to erase).
    pub fn matches(&self, candidate: &str) -> bool {
        use subtle::ConstantTimeEq;
        let ours = self.expose().as_bytes();
        let theirs = candidate.as_bytes();
        ours.len() == theirs.len() && bool::from(ours.ct_eq(theirs))
    }
}

/// `Bearer <secret>` built in a buffer of exactly its size (so the boxing into a `SecretString` copies
/// nothing) and kept secret.
pub(crate) fn bearer(secret: &str) -> SecretString {
    let mut header = String::with_capacity("Bearer ".len() + secret.len());
    header.push_str("Bearer ");
    header.push_str(secret);
    SecretString::from(header)
}

impl fmt::Debug for InstallationToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("InstallationToken(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bearer_header_is_a_secret_too() {
        let token = InstallationToken::new("ghs_1_aaaa.bbbb.cccc".into()).expect("valid");
        let bearer = token.bearer();
        assert_eq!(bearer.expose_secret(), "Bearer ghs_1_aaaa.bbbb.cccc");
        assert!(!format!("{bearer:?}").contains("ghs_1"), "{bearer:?}");
    }

    #[test]
    fn debug_is_redacted() {
        let secret = "ghs_1_aaaa.bbbb.cccc";
        let token = InstallationToken::new(secret.into()).expect("valid");
        assert_eq!(format!("{token:?}"), "InstallationToken(<redacted>)");
        assert_eq!(format!("{:?}", Jwt(SecretString::from(secret))), "Jwt(<redacted>)");
        assert!(token.matches(secret));
        assert!(!token.matches("ghs_1_aaaa.bbbb.cccd"));
        assert!(!token.matches("ghs"));
    }

    #[test]
    fn tokens_must_be_protocol_safe() {
        assert!(InstallationToken::new(String::new()).is_none());
        assert!(InstallationToken::new("a b".into()).is_none());
        assert!(InstallationToken::new("a\nb".into()).is_none());
        assert!(InstallationToken::new("ghs_123_abc.def.ghi".into()).is_some());
    }
}
