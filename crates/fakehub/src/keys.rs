//! A real RSA-2048 App key pair, as GitHub would generate for an App.

use anyhow::Context;
use base64::Engine as _;
use rsa::pkcs1::{DecodeRsaPrivateKey, EncodeRsaPrivateKey};
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding};
use sha2::Digest as _;

/// One of the App's public keys, as GitHub keeps it: an id, the key, its fingerprint.
pub(crate) struct AppPublicKey {
    pub(crate) id: u64,
    pub(crate) decoding: jsonwebtoken::DecodingKey,
    pub(crate) fingerprint: String,
}

impl AppPublicKey {
    /// From a public key PEM (SPKI), or the public half of a PKCS#1 or PKCS#8 private key PEM.
    pub(crate) fn new(id: u64, pem: &str) -> anyhow::Result<Self> {
        let public = if pem.contains("PUBLIC KEY") {
            rsa::RsaPublicKey::from_public_key_pem(pem).context("the App public key is not an RSA PEM")?
        } else {
            rsa::RsaPrivateKey::from_pkcs1_pem(pem)
                .or_else(|_| rsa::RsaPrivateKey::from_pkcs8_pem(pem))
                .context("the App key is neither a public key nor an RSA private key PEM")?
                .to_public_key()
        };
        let der = public.to_public_key_der()?;
        let decoding = jsonwebtoken::DecodingKey::from_rsa_pem(public.to_public_key_pem(LineEnding::LF)?.as_bytes())?;
        let fingerprint = format!(
            "SHA256:{}",
            base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(der.as_bytes()))
        );
        Ok(Self {
            id,
            decoding,
            fingerprint,
        })
    }
}

pub struct AppKeyPair {
    private: rsa::RsaPrivateKey,
}

impl std::fmt::Debug for AppKeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AppKeyPair(<redacted>)")
    }
}

impl AppKeyPair {
    pub fn generate() -> anyhow::Result<Self> {
        let private = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048)?;
        Ok(Self { private })
    }

    /// PKCS#1 (`BEGIN RSA PRIVATE KEY`): what GitHub hands out.
    pub fn private_key_pem(&self) -> String {
        self.private
            .to_pkcs1_pem(LineEnding::LF)
            .expect("an RSA key always encodes")
            .to_string()
    }

    /// PKCS#8 (`BEGIN PRIVATE KEY`).
    pub fn private_key_pkcs8_pem(&self) -> String {
        self.private
            .to_pkcs8_pem(LineEnding::LF)
            .expect("an RSA key always encodes")
            .to_string()
    }

    pub fn public_key_pem(&self) -> String {
        self.private
            .to_public_key()
            .to_public_key_pem(LineEnding::LF)
            .expect("an RSA key always encodes")
    }
}
