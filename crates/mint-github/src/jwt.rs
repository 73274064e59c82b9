//! The App JWT: RS256, `iss` = the App, backdated a minute against clock drift, ten minutes of validity in all.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::{AppKey, Jwt};

/// `iat` is set this far in the past, as GitHub recommends, so a server clock slightly behind ours accepts it.
pub const JWT_BACKDATE: Duration = Duration::from_secs(60);
/// `exp` is this far after now: with the backdate that is GitHub's maximum of ten minutes after `iat`.
pub const JWT_LIFETIME: Duration = Duration::from_secs(540);

/// The App's identifier for `iss`: its numeric App ID or its Client ID (`Iv1.…`, `Iv23…`); GitHub takes either.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct AppId(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "App id {0:?} is neither a numeric App ID nor a Client ID: find both on the App's settings page (General → About)"
)]
pub struct AppIdError(String);

impl AppId {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub(crate) fn probe() -> Self {
        Self("0".into())
    }
}

impl FromStr for AppId {
    type Err = AppIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ok = (1..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_');
        if ok {
            Ok(Self(s.into()))
        } else {
            Err(AppIdError(s.into()))
        }
    }
}

impl fmt::Display for AppId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for AppId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AppId({})", self.0)
    }
}

/// The claims GitHub reads from an App JWT.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iat: u64,
    pub exp: u64,
    pub iss: String,
}

impl Claims {
    pub fn new(app: &AppId, now: SystemTime) -> Self {
        let now = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        Self {
            iat: now.saturating_sub(JWT_BACKDATE.as_secs()),
            exp: now + JWT_LIFETIME.as_secs(),
            iss: app.0.clone(),
        }
    }
}

impl AppKey {
    /// Sign an App JWT for `app` as of `now`.
    pub fn jwt(&self, app: &AppId, now: SystemTime) -> Result<Jwt, jsonwebtoken::errors::Error> {
        self.sign(&Claims::new(app, now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{Algorithm, DecodingKey, Validation};
    use rsa::pkcs1::{EncodeRsaPrivateKey, LineEnding};
    use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey};

    fn keypair() -> (rsa::RsaPrivateKey, rsa::RsaPublicKey) {
        let private = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).expect("keygen");
        let public = private.to_public_key();
        (private, public)
    }

    #[test]
    fn claims_follow_githubs_rules_and_verify_with_the_public_key() {
        let (private, public) = keypair();
        let pkcs1 = private.to_pkcs1_pem(LineEnding::LF).expect("pem");
        assert!(pkcs1.starts_with("-----BEGIN RSA PRIVATE KEY-----"));
        let pkcs8 = private.to_pkcs8_pem(LineEnding::LF).expect("pem");
        assert!(pkcs8.starts_with("-----BEGIN PRIVATE KEY-----"));
        let public_pem = public.to_public_key_pem(LineEnding::LF).expect("pem");
        let decoding = DecodingKey::from_rsa_pem(public_pem.as_bytes()).expect("public key");
        let app: AppId = "12345".parse().expect("valid");
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);

        for pem in [pkcs1.as_bytes(), pkcs8.as_bytes()] {
            let key = AppKey::from_pem(pem).expect("key loads");
            let jwt = key.jwt(&app, now).expect("signs");
            let header = jsonwebtoken::decode_header(jwt.expose()).expect("header");
            assert_eq!(header.alg, Algorithm::RS256);
            let mut validation = Validation::new(Algorithm::RS256);
            validation.validate_exp = false; // `now` is in the future of the test machine's clock
            validation.set_required_spec_claims(&["iat", "exp", "iss"]);
            validation.set_issuer(&["12345"]);
            let claims = jsonwebtoken::decode::<Claims>(jwt.expose(), &decoding, &validation)
                .expect("verifies with the App's public key")
                .claims;
            assert_eq!(claims.iat, 1_800_000_000 - 60);
            assert_eq!(claims.exp, 1_800_000_000 + 540);
            assert_eq!(claims.exp - claims.iat, 600, "GitHub's maximum");
            assert_eq!(claims.iss, "12345");
        }

        let (other, _) = keypair();
        let other_key = AppKey::from_pem(other.to_pkcs1_pem(LineEnding::LF).expect("pem").as_bytes()).expect("key");
        let forged = other_key.jwt(&app, now).expect("signs");
        let mut validation = Validation::new(Algorithm::RS256);
        validation.validate_exp = false;
        assert!(jsonwebtoken::decode::<Claims>(forged.expose(), &decoding, &validation).is_err());
    }

    #[test]
    fn raw_signatures_are_deterministic_rs256_and_verify() {
        use rsa::pkcs1v15::VerifyingKey;
        use rsa::signature::Verifier as _;
        let (private, public) = keypair();
        let key = AppKey::from_pem(private.to_pkcs1_pem(LineEnding::LF).expect("pem").as_bytes()).expect("key");
        let first = crate::Signer::sign_rs256(&key, b"mint token seal").expect("signs");
        let again = crate::Signer::sign_rs256(&key, b"mint token seal").expect("signs");
        assert_eq!(*first, *again, "PKCS#1 v1.5 signatures are deterministic");
        assert_eq!(first.len(), 256, "a 2048-bit key signs 256 bytes");
        let signature = rsa::pkcs1v15::Signature::try_from(first.as_slice()).expect("a signature");
        VerifyingKey::<sha2::Sha256>::new(public)
            .verify(b"mint token seal", &signature)
            .expect("verifies as RS256 under the public key");
        assert_ne!(
            *first,
            *crate::Signer::sign_rs256(&key, b"another label").expect("signs")
        );
    }

    #[test]
    fn bad_keys_are_refused_with_a_way_out() {
        for bad in [
            &b""[..],
            b"not a key",
            b"-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n",
        ] {
            let err = AppKey::from_pem(bad).expect_err("refused");
            assert!(
                err.to_string().contains("settings page") || err.to_string().contains("could not sign"),
                "{err}"
            );
        }
    }

    #[test]
    fn app_ids() {
        assert!("12345".parse::<AppId>().is_ok());
        assert!("Iv23liABCdef".parse::<AppId>().is_ok());
        assert!("Iv1.0123abcd".parse::<AppId>().is_ok());
        assert!("".parse::<AppId>().is_err());
        assert!("12 34".parse::<AppId>().is_err());
        assert!("a\"b".parse::<AppId>().is_err());
    }
}
