//! Newtypes for every secret mint handles. Their `Debug` prints a redaction and their memory is wiped on
//! drop, so a stray `{:?}` or a tracing field cannot leak one.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

use crate::KeyFingerprint;

/// The GitHub App's RSA private key, parsed once, signing with ring's constant-time RSA (blinded, no
/// secret-dependent branches or memory accesses; the `rsa` crate's Marvin side channel does not apply).
///
/// The PEM and its DER are wiped once parsed. ring keeps the key's numbers in its `RsaKeyPair`, which it
/// does not wipe on drop; the key lives for the process (or until a rotation replaces it), and the process is
/// made non-dumpable, so no copy reaches disk. An HSM ([`crate::Pkcs11Signer`]) keeps it out of the process.
pub struct AppKey {
    key: ring::signature::RsaKeyPair,
    fingerprint: KeyFingerprint,
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
    /// Parse a PKCS#1 (`BEGIN RSA PRIVATE KEY`, what GitHub hands out) or PKCS#8 (`BEGIN PRIVATE KEY`) PEM,
    /// then sign a probe so that a key which cannot sign is refused now rather than at the first `git fetch`.
    pub fn from_pem(pem: &[u8]) -> Result<Self, KeyError> {
        let not_pem = |reason: &str| KeyError::NotRsaPem {
            reason: reason.to_owned(),
        };
        let (label, der) = pem_block(pem).map_err(not_pem)?;
        let key = match label {
            PemLabel::Pkcs1 => ring::signature::RsaKeyPair::from_der(&der),
            PemLabel::Pkcs8 => ring::signature::RsaKeyPair::from_pkcs8(&der),
        }
        .map_err(|e| KeyError::NotRsaPem {
            reason: format!("{label} rejected: {e}"),
        })?;
        let fingerprint = KeyFingerprint::of_rsa_public_key_der(key.public().as_ref());
        let key = Self { key, fingerprint };
        let probe = crate::jwt::Claims::new(&crate::AppId::probe(), std::time::SystemTime::now());
        crate::jwt::sign_claims(&key, &probe).map_err(|e| KeyError::Unusable { reason: e.to_string() })?;
        Ok(key)
    }

    /// The key's fingerprint as GitHub shows it on the App's settings page.
    pub fn fingerprint(&self) -> &KeyFingerprint {
        &self.fingerprint
    }

    /// The raw RS256 (RSASSA-PKCS1-v1_5, SHA-256) signature of `message`.
    pub(crate) fn sign_bytes(&self, message: &[u8]) -> Result<Zeroizing<Vec<u8>>, crate::SignError> {
        let mut signature = Zeroizing::new(vec![0; self.key.public().modulus_len()]);
        self.key
            .sign(
                &ring::signature::RSA_PKCS1_SHA256,
                &ring::rand::SystemRandom::new(),
                message,
                &mut signature,
            )
            .map_err(|_| crate::SignError("ring could not sign with the App key".into()))?;
        Ok(signature)
    }
}

impl fmt::Debug for AppKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AppKey(<redacted>)")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PemLabel {
    Pkcs1,
    Pkcs8,
}

impl fmt::Display for PemLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PemLabel::Pkcs1 => "the PKCS#1 key (BEGIN RSA PRIVATE KEY) was",
            PemLabel::Pkcs8 => "the PKCS#8 key (BEGIN PRIVATE KEY) was",
        })
    }
}

/// The first private-key block of a PEM file, decoded into memory that is wiped on drop. Errors say what
/// was found, never the file's content.
fn pem_block(pem: &[u8]) -> Result<(PemLabel, Zeroizing<Vec<u8>>), &'static str> {
    use base64::Engine as _;
    let text = std::str::from_utf8(pem).map_err(|_| "the file is not text")?;
    let mut lines = text.lines().map(str::trim);
    let label = loop {
        match lines.next() {
            None => return Err("no \"-----BEGIN … PRIVATE KEY-----\" line"),
            Some("-----BEGIN RSA PRIVATE KEY-----") => break PemLabel::Pkcs1,
            Some("-----BEGIN PRIVATE KEY-----") => break PemLabel::Pkcs8,
            Some(line) if line.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY") => {
                return Err("the key is encrypted with a passphrase (decrypt it with `openssl pkey`)");
            }
            Some(line) if line.starts_with("-----BEGIN ") && line.contains("PRIVATE KEY") => {
                return Err("the key is not an RSA key");
            }
            Some(_) => {}
        }
    };
    let end = match label {
        PemLabel::Pkcs1 => "-----END RSA PRIVATE KEY-----",
        PemLabel::Pkcs8 => "-----END PRIVATE KEY-----",
    };
    let mut body = Zeroizing::new(String::with_capacity(pem.len()));
    loop {
        match lines.next() {
            None => return Err("the key's \"-----END\" line is missing"),
            Some(line) if line == end => break,
            Some(line) if line.contains(':') => return Err("the key is encrypted with a passphrase"),
            Some(line) => body.push_str(line),
        }
    }
    let mut der = Zeroizing::new(Vec::with_capacity(body.len() / 4 * 3 + 3));
    base64::engine::general_purpose::STANDARD
        .decode_vec(body.as_bytes(), &mut der)
        .map_err(|_| "the key's base64 is damaged")?;
    Ok((label, der))
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
