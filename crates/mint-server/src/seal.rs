//! Tokens at rest: sealed with AES-256-GCM (ring) so that whichever replica handles a revocation can show
//! GitHub the token, while a copy of the database alone yields nothing usable.
//!
//! The seal key is never stored. It is derived with HKDF-SHA256 either from `--token-seal-key-file`, or from
//! the App key itself: the App key's RS256 signature of a fixed label, which is deterministic (PKCS#1 v1.5)
//! and which only the key's holder can produce. Whoever holds the App key could mint tokens anyway, so a key
//! derived from it exposes nothing new (docs/security.md). Each sealed token carries the id of the key that
//! sealed it, and the sandbox id and the token's SHA-256 are its associated data: a sealed value moved to
//! another row does not open.

use std::sync::RwLock;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use mint_github::{App, InstallationToken};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::hkdf;
use ring::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroizing;

/// What the App key signs to derive the seal key. Changing it changes every key: never do.
const APP_KEY_LABEL: &[u8] = b"mint-server token seal key, v1";
const HKDF_SALT: &[u8] = b"mint-server/token-seal";
/// A seal key file's line must carry at least this many bytes (e.g. `openssl rand -base64 32`).
pub const MIN_SEAL_SECRET_LEN: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("the App key could not derive the token-sealing key: {0}")]
    Derive(String),
    #[error(
        "the token was sealed with key {key_id}, which this replica does not hold (the App key or --token-seal-key-file differs between replicas, or was rotated since)"
    )]
    UnknownKey { key_id: String },
    #[error("the sealed token does not open: it was altered, or moved to another row")]
    Corrupt,
}

/// One derived key and its public id.
struct SealKey {
    id: String,
    key: LessSafeKey,
    /// For values the server derives from a public input and must not be forgeable (PKCE verifiers).
    mac: ring::hmac::Key,
}

impl SealKey {
    fn derive(secret: &[u8]) -> Self {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, HKDF_SALT).extract(secret);
        let key = prk
            .expand(&[b"aes-256-gcm"], &AES_256_GCM)
            .expect("32 bytes is within HKDF-SHA256's output limit");
        let mut id = [0u8; 8];
        prk.expand(&[b"key id"], IdLen)
            .and_then(|okm| okm.fill(&mut id))
            .expect("8 bytes is within HKDF-SHA256's output limit");
        let mac = prk
            .expand(&[b"hmac"], ring::hmac::HMAC_SHA256)
            .expect("an HMAC-SHA256 key is within HKDF-SHA256's output limit");
        Self {
            id: hex::encode(id),
            key: LessSafeKey::new(UnboundKey::from(key)),
            mac: ring::hmac::Key::from(mac),
        }
    }
}

struct IdLen;

impl hkdf::KeyType for IdLen {
    fn len(&self) -> usize {
        8
    }
}

/// Where the seal keys come from.
enum Source {
    /// `--token-seal-key-file`: the current secret first, then older ones still needed to open.
    File,
    /// Derived from the App key; derived again when the App's key is replaced.
    AppKey,
}

struct Keyring {
    /// The App key generation the first key was derived from (`Source::AppKey`).
    generation: Option<u64>,
    /// The key that seals first; every key opens.
    keys: Vec<SealKey>,
}

/// Seals and opens installation tokens for the database.
pub struct Sealer {
    source: Source,
    ring: RwLock<Keyring>,
    random: SystemRandom,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<String> = self.keyring().keys.iter().map(|k| k.id.clone()).collect();
        f.debug_struct("Sealer").field("key_ids", &ids).finish_non_exhaustive()
    }
}

/// A token as it may be stored: ciphertext (base64 of nonce, ciphertext and tag) and the id of its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    pub text: String,
    pub key_id: String,
}

impl Sealer {
    /// Keys from `--token-seal-key-file`: the first secret seals, every one opens.
    pub fn from_secrets(secrets: &[Zeroizing<Vec<u8>>]) -> Self {
        Self {
            source: Source::File,
            ring: RwLock::new(Keyring {
                generation: None,
                keys: secrets.iter().map(|s| SealKey::derive(s)).collect(),
            }),
            random: SystemRandom::new(),
        }
    }

    /// Keys derived from the App key, on first use and again after each key rotation.
    pub fn from_app_key() -> Self {
        Self {
            source: Source::AppKey,
            ring: RwLock::new(Keyring {
                generation: None,
                keys: Vec::new(),
            }),
            random: SystemRandom::new(),
        }
    }

    fn keyring(&self) -> std::sync::RwLockReadGuard<'_, Keyring> {
        self.ring.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Derive the key of the App's current key if it is not the sealing key yet. Older keys stay, to open
    /// what they sealed.
    pub fn prepare(&self, app: &App) -> Result<(), SealError> {
        if !matches!(self.source, Source::AppKey) {
            return Ok(());
        }
        let generation = app.key_generation();
        if self.keyring().generation == Some(generation) {
            return Ok(());
        }
        // The signature and the generation of the key that made it, read together: a rotation in between
        // cannot pair them wrongly.
        let (generation, signature) = app
            .sign_rs256_with_generation(APP_KEY_LABEL)
            .map_err(|e| SealError::Derive(e.to_string()))?;
        let derived = SealKey::derive(&signature);
        let mut ring = self.ring.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        ring.keys.retain(|k| k.id != derived.id);
        tracing::info!(key_id = %derived.id, "token-sealing key derived from the App key");
        ring.keys.insert(0, derived);
        ring.generation = Some(generation);
        Ok(())
    }

    /// Seal `token` for the row of `sandbox_id` and `token_sha256`.
    pub fn seal(
        &self,
        app: &App,
        sandbox_id: &str,
        token_sha256: &str,
        token: &InstallationToken,
    ) -> Result<Sealed, SealError> {
        self.prepare(app)?;
        let ring = self.keyring();
        let key = ring
            .keys
            .first()
            .ok_or_else(|| SealError::Derive("no seal key is configured".into()))?;
        let mut nonce = [0u8; NONCE_LEN];
        self.random
            .fill(&mut nonce)
            .map_err(|_| SealError::Derive("the system's random number generator failed".into()))?;
        let mut buffer = Zeroizing::new(Vec::with_capacity(NONCE_LEN + token.expose().len() + 16));
        buffer.extend_from_slice(token.expose().as_bytes());
        key.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(associated_data(sandbox_id, token_sha256)),
                &mut *buffer,
            )
            .map_err(|_| SealError::Corrupt)?;
        let mut out = Vec::with_capacity(NONCE_LEN + buffer.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&buffer);
        Ok(Sealed {
            text: STANDARD_NO_PAD.encode(out),
            key_id: key.id.clone(),
        })
    }

    /// Open a sealed token of the row of `sandbox_id` and `token_sha256`; it must hash to `token_sha256`.
    pub fn open(
        &self,
        app: &App,
        sandbox_id: &str,
        token_sha256: &str,
        sealed: &Sealed,
    ) -> Result<InstallationToken, SealError> {
        // A rotated App key may have sealed this one: make sure its key is known here too.
        self.prepare(app)?;
        let ring = self.keyring();
        let key = ring
            .keys
            .iter()
            .find(|k| k.id == sealed.key_id)
            .ok_or_else(|| SealError::UnknownKey {
                key_id: sealed.key_id.clone(),
            })?;
        let mut raw = Zeroizing::new(STANDARD_NO_PAD.decode(&sealed.text).map_err(|_| SealError::Corrupt)?);
        if raw.len() < NONCE_LEN {
            return Err(SealError::Corrupt);
        }
        let (nonce, ciphertext) = raw.split_at_mut(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SealError::Corrupt)?;
        let plain = key
            .key
            .open_in_place(nonce, Aad::from(associated_data(sandbox_id, token_sha256)), ciphertext)
            .map_err(|_| SealError::Corrupt)?;
        let text = std::str::from_utf8(plain).map_err(|_| SealError::Corrupt)?;
        if crate::secrets::sha256_hex(text.as_bytes()) != token_sha256 {
            return Err(SealError::Corrupt);
        }
        InstallationToken::new(text.to_owned()).ok_or(SealError::Corrupt)
    }
}

impl Sealer {
    /// The PKCE verifier (RFC 7636) for the OAuth `state` token: derived, so nothing is stored, and only a
    /// holder of the seal key can compute it, so a code intercepted with its state cannot be redeemed.
    pub fn pkce_verifier(&self, app: &App, state: &str) -> Result<String, SealError> {
        self.prepare(app)?;
        let ring = self.keyring();
        let key = ring
            .keys
            .first()
            .ok_or_else(|| SealError::Derive("no seal key is configured".into()))?;
        let tag = ring::hmac::sign(&key.mac, &[b"pkce\0", state.as_bytes()].concat());
        // 43 characters of base64url: RFC 7636's minimum length, 256 bits.
        Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(tag.as_ref()))
    }
}

fn associated_data(sandbox_id: &str, token_sha256: &str) -> Vec<u8> {
    let mut ad = Vec::with_capacity(sandbox_id.len() + 1 + token_sha256.len());
    ad.extend_from_slice(sandbox_id.as_bytes());
    ad.push(0);
    ad.extend_from_slice(token_sha256.as_bytes());
    ad
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::sha256_hex;

    fn app() -> App {
        let key = fakehub::AppKeyPair::generate().expect("key");
        let key = mint_github::AppKey::from_pem(key.private_key_pem().as_bytes()).expect("pem");
        App::new(
            "7".parse().expect("id"),
            key,
            mint_github::GitHubClient::new("http://127.0.0.1:9").expect("client"),
        )
    }

    fn token() -> (InstallationToken, String) {
        let text = "ghs_1_aaaa.bbbb.cccc";
        (
            InstallationToken::new(text.into()).expect("valid"),
            sha256_hex(text.as_bytes()),
        )
    }

    #[test]
    fn a_sealed_token_opens_only_in_its_own_row_and_never_shows_the_token() {
        let app = app();
        let keys = Sealer::from_app_key();
        let (token, hash) = token();
        let sealed = keys.seal(&app, "sbx_1", &hash, &token).expect("seals");
        assert!(!sealed.text.contains("ghs_1"), "{sealed:?}");
        assert_eq!(sealed.key_id.len(), 16);
        let opened = keys.open(&app, "sbx_1", &hash, &sealed).expect("opens");
        assert_eq!(opened.expose(), token.expose());
        assert!(
            matches!(keys.open(&app, "sbx_2", &hash, &sealed), Err(SealError::Corrupt)),
            "another sandbox's row"
        );
        let other_hash = sha256_hex(b"another token");
        assert!(matches!(
            keys.open(&app, "sbx_1", &other_hash, &sealed),
            Err(SealError::Corrupt)
        ));
        let mut altered = sealed.clone();
        altered
            .text
            .replace_range(20..21, if &altered.text[20..21] == "A" { "B" } else { "A" });
        assert!(matches!(
            keys.open(&app, "sbx_1", &hash, &altered),
            Err(SealError::Corrupt)
        ));
        assert_ne!(
            keys.seal(&app, "sbx_1", &hash, &token).expect("seals").text,
            sealed.text,
            "a fresh nonce each time"
        );
        assert!(!format!("{keys:?}").contains("ghs_"));
    }

    #[test]
    fn replicas_with_the_same_app_key_share_the_seal_key_and_others_do_not() {
        let (token, hash) = token();
        let first = app();
        let sealed = Sealer::from_app_key()
            .seal(&first, "sbx_1", &hash, &token)
            .expect("seals");
        // Another replica: another process, the same App key.
        let again = Sealer::from_app_key();
        assert_eq!(
            again.open(&first, "sbx_1", &hash, &sealed).expect("opens").expose(),
            token.expose()
        );
        // Another App key derives another key, and says which one it lacks.
        let stranger = app();
        assert!(matches!(
            Sealer::from_app_key().open(&stranger, "sbx_1", &hash, &sealed),
            Err(SealError::UnknownKey { .. })
        ));
    }

    #[test]
    fn a_seal_key_file_keeps_opening_what_its_older_line_sealed() {
        let app = app();
        let (token, hash) = token();
        let old = Zeroizing::new(b"an old seal secret of at least 32 bytes".to_vec());
        let new = Zeroizing::new(b"a new seal secret of at least 32 bytes!".to_vec());
        let sealed = Sealer::from_secrets(std::slice::from_ref(&old))
            .seal(&app, "sbx_1", &hash, &token)
            .expect("seals");
        let rotated = Sealer::from_secrets(&[new, old]);
        assert_eq!(
            rotated.open(&app, "sbx_1", &hash, &sealed).expect("opens").expose(),
            token.expose()
        );
        assert_ne!(
            rotated.seal(&app, "sbx_1", &hash, &token).expect("seals").key_id,
            sealed.key_id
        );
    }
}
