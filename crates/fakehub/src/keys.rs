//! A real RSA-2048 App key pair, as GitHub would generate for an App.

use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};

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
