//! The seam between the App and whatever holds its private key. Today that is [`AppKey`], the PEM parsed into
//! this process; a KMS or HSM signer implements [`Signer`] and nothing else changes: the key then never
//! enters the process at all.

use std::time::SystemTime;

use crate::{AppId, AppKey, Jwt, KeyFingerprint};

/// Signs App JWTs (RS256 over [`crate::Claims`]). Implementations must keep the key out of `Debug`, logs and
/// errors. Signing is synchronous: it is called once per GitHub request that needs the App's identity; a
/// signer that calls out to a remote service should cache its JWT for most of its ten-minute life.
pub trait Signer: Send + Sync + std::fmt::Debug {
    /// An App JWT for `app` as of `now`: RS256 over [`crate::Claims`], signed with [`Signer::sign_rs256`].
    fn app_jwt(&self, app: &AppId, now: SystemTime) -> Result<Jwt, SignError> {
        crate::jwt::sign_claims(self, &crate::Claims::new(app, now))
    }

    /// The RS256 signature (RSASSA-PKCS1-v1_5 with SHA-256) of `message`, raw bytes. PKCS#1 v1.5 is
    /// deterministic: the same key signs the same message to the same bytes, which only the key's holder can
    /// produce. mint-server derives its token-sealing key from one such signature over a fixed label, so the
    /// key works wherever the App key signs (a PEM here, an HSM elsewhere) without ever being stored.
    fn sign_rs256(&self, message: &[u8]) -> Result<zeroize::Zeroizing<Vec<u8>>, SignError>;

    /// The public key's fingerprint as GitHub shows it (`SHA256:…`), logged when the key starts signing.
    /// `None` when the signer cannot tell (then every replacement counts as a new key).
    fn fingerprint(&self) -> Option<KeyFingerprint> {
        None
    }
}

/// Why no JWT could be signed; never carries key material.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SignError(pub String);

impl Signer for AppKey {
    fn sign_rs256(&self, message: &[u8]) -> Result<zeroize::Zeroizing<Vec<u8>>, SignError> {
        self.sign_bytes(message)
    }

    fn fingerprint(&self) -> Option<KeyFingerprint> {
        Some(AppKey::fingerprint(self).clone())
    }
}
