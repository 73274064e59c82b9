//! The seam between the App and whatever holds its private key. Today that is [`AppKey`], the PEM parsed into
//! this process; a KMS or HSM signer implements [`Signer`] and nothing else changes: the key then never
//! enters the process at all.

use std::time::SystemTime;

use crate::{AppId, AppKey, Jwt};

/// Signs App JWTs (RS256 over [`crate::Claims`]). Implementations must keep the key out of `Debug`, logs and
/// errors. Signing is synchronous: it is called once per GitHub request that needs the App's identity; a
/// signer that calls out to a remote service should cache its JWT for most of its ten-minute life.
pub trait Signer: Send + Sync + std::fmt::Debug {
    fn app_jwt(&self, app: &AppId, now: SystemTime) -> Result<Jwt, SignError>;
}

/// Why no JWT could be signed; never carries key material.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SignError(pub String);

impl Signer for AppKey {
    fn app_jwt(&self, app: &AppId, now: SystemTime) -> Result<Jwt, SignError> {
        self.jwt(app, now).map_err(|e| SignError(e.to_string()))
    }
}
