//! Where the App key comes from — a PEM file or a PKCS#11 token — and its reloading while the daemon
//! serves: on `SIGHUP`, and when the file changes (a Kubernetes Secret update swaps a symlink under the
//! mounted path; polling the content every few seconds sees it however it is done). A new key that fails
//! to load or to sign its probe is refused and the old key keeps signing.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use mint_service::secret_file::{Readable, SecretFileError, read_private};

use crate::{AppKey, AppKeys, KeyChange, KeyError, Pkcs11Error, Pkcs11Signer, Pkcs11Uri, Signer};

/// How often the key file (or the PIN file) is read to see whether it changed.
pub const KEY_POLL_INTERVAL: Duration = Duration::from_secs(3);

/// The App key's source, as `--private-key` names it.
#[derive(Clone, PartialEq, Eq)]
pub enum KeySource {
    /// A PKCS#1 or PKCS#8 PEM file; `allow_readable` accepts one that group or others can read.
    Pem { path: PathBuf, allow_readable: bool },
    /// A key in a PKCS#11 token, logged in with the PIN in `pin_file`.
    Pkcs11 { uri: Box<Pkcs11Uri>, pin_file: PathBuf },
}

/// Why a key source is unusable. Never carries key material or the PIN.
#[derive(Debug, thiserror::Error)]
pub enum KeySourceError {
    #[error(transparent)]
    File(#[from] SecretFileError),
    #[error("{path}: {source}")]
    Pem { path: PathBuf, source: KeyError },
    #[error(transparent)]
    Pkcs11(#[from] Pkcs11Error),
    #[error("a PKCS#11 URI needs the token's PIN: give the file holding it (mode 0600)")]
    NoPinFile,
    #[error("is only for a pkcs11: URI in --private-key; a PEM file needs no PIN")]
    PinFileWithoutUri,
}

/// A key just loaded, with the stamp of what it was loaded from (for [`KeyReloader::new`]).
pub struct LoadedKey {
    pub signer: Box<dyn Signer>,
    pub stamp: KeyStamp,
}

impl fmt::Debug for LoadedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadedKey")
            .field("signer", &self.signer)
            .finish_non_exhaustive()
    }
}

/// The SHA-256 of the file a key was loaded from (the PEM, or the PIN for a token): a change means reload.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct KeyStamp([u8; 32]);

impl fmt::Debug for KeyStamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A hash of the key file is as good as the key for testing guesses: never printed.
        f.write_str("KeyStamp(<redacted>)")
    }
}

impl KeyStamp {
    fn of(bytes: &[u8]) -> Self {
        let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
        let mut stamp = [0; 32];
        stamp.copy_from_slice(digest.as_ref());
        Self(stamp)
    }
}

impl KeySource {
    /// `--private-key` (a PEM file, or a `pkcs11:` URI) and `--pkcs11-pin-file`.
    pub fn new(private_key: &Path, pin_file: Option<&Path>, allow_readable: bool) -> Result<Self, KeySourceError> {
        match private_key.to_str().filter(|text| Pkcs11Uri::is_uri(text)) {
            Some(text) => {
                let uri = Box::new(Pkcs11Uri::parse(text)?);
                let pin_file = pin_file.ok_or(KeySourceError::NoPinFile)?.to_owned();
                Ok(Self::Pkcs11 { uri, pin_file })
            }
            None if pin_file.is_some() => Err(KeySourceError::PinFileWithoutUri),
            None => Ok(Self::Pem {
                path: private_key.to_owned(),
                allow_readable,
            }),
        }
    }

    /// Read and check the key (a probe signature). Blocking: a token may take a while to answer.
    pub fn load(&self) -> Result<LoadedKey, KeySourceError> {
        match self {
            KeySource::Pem { path, allow_readable } => {
                let readable = Readable::Unless {
                    flag: "--allow-readable-key",
                    given: *allow_readable,
                };
                // The PEM is wiped once parsed.
                let pem = read_private(path, readable)?;
                let key = AppKey::from_pem(&pem).map_err(|source| KeySourceError::Pem {
                    path: path.clone(),
                    source,
                })?;
                Ok(LoadedKey {
                    signer: Box::new(key),
                    stamp: KeyStamp::of(&pem),
                })
            }
            KeySource::Pkcs11 { uri, pin_file } => {
                let stamp = self.stamp()?;
                let pin = crate::read_pin_file(pin_file)?;
                let signer = Pkcs11Signer::open((**uri).clone(), pin)?;
                Ok(LoadedKey {
                    signer: Box::new(signer),
                    stamp,
                })
            }
        }
    }

    /// The stamp of what [`KeySource::load`] would read now.
    fn stamp(&self) -> Result<KeyStamp, KeySourceError> {
        let path = match self {
            KeySource::Pem { path, .. } => path,
            KeySource::Pkcs11 { pin_file, .. } => pin_file,
        };
        let bytes = zeroize::Zeroizing::new(std::fs::read(path).map_err(|source| SecretFileError::Read {
            path: path.clone(),
            source,
        })?);
        Ok(KeyStamp::of(&bytes))
    }
}

impl fmt::Display for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySource::Pem { path, .. } => write!(f, "{}", path.display()),
            KeySource::Pkcs11 { uri, .. } => write!(f, "{uri}"),
        }
    }
}

impl fmt::Debug for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySource::Pem { path, .. } => write!(f, "KeySource::Pem({})", path.display()),
            KeySource::Pkcs11 { uri, pin_file } => {
                write!(f, "KeySource::Pkcs11({uri}, PIN in {})", pin_file.display())
            }
        }
    }
}

/// Reloads the App key from its source on `SIGHUP` and when its file changes, for as long as it runs.
pub struct KeyReloader {
    source: KeySource,
    keys: AppKeys,
    /// What the key in use was loaded from.
    loaded: KeyStamp,
    /// What was last refused (or could not be read), so a bad file is reported once, not at every poll.
    refused: Option<KeyStamp>,
    sighup: Option<tokio::signal::unix::Signal>,
}

impl KeyReloader {
    /// Start watching `source` for the App whose keys are `keys`, `loaded` being the key in use. Call
    /// within a tokio runtime, before the daemon says it is ready: from here on `SIGHUP` reloads the key
    /// instead of ending the process.
    pub fn new(source: KeySource, keys: AppKeys, loaded: KeyStamp) -> Self {
        let sighup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(signal) => Some(signal),
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch SIGHUP; the App key is reloaded only when its file changes");
                None
            }
        };
        Self {
            source,
            keys,
            loaded,
            refused: None,
            sighup,
        }
    }

    /// Log which key signs, then reload on `SIGHUP` and on a change of the file, until dropped.
    pub async fn run(mut self) {
        tracing::info!(
            key = %self.source,
            fingerprint = %self.keys.fingerprint().map(|f| f.to_string()).unwrap_or_default(),
            "the App key signs (reloaded on SIGHUP and when its file changes)"
        );
        let mut poll = tokio::time::interval(KEY_POLL_INTERVAL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        poll.tick().await;
        loop {
            let sighup = async {
                match self.sighup.as_mut() {
                    Some(signal) => signal.recv().await,
                    None => std::future::pending().await,
                }
            };
            let asked = tokio::select! {
                _ = sighup => true,
                _ = poll.tick() => false,
            };
            self.reload(asked).await;
        }
    }

    /// Reload if asked (`SIGHUP`) or if the file changed since the key in use (or the last refusal) was read.
    pub async fn reload(&mut self, asked: bool) {
        if asked {
            tracing::info!(key = %self.source, "SIGHUP: reloading the App key");
        } else {
            let source = self.source.clone();
            let stamp = match tokio::task::spawn_blocking(move || source.stamp()).await {
                Ok(Ok(stamp)) => stamp,
                Ok(Err(e)) => {
                    self.refuse(KeyStamp::of(e.to_string().as_bytes()), &e);
                    return;
                }
                Err(_) => return,
            };
            if stamp == self.loaded || Some(stamp) == self.refused {
                return;
            }
        }
        let source = self.source.clone();
        let loaded = match tokio::task::spawn_blocking(move || source.load()).await {
            Ok(Ok(loaded)) => loaded,
            Ok(Err(e)) => {
                let stamp = self
                    .source
                    .stamp()
                    .unwrap_or_else(|_| KeyStamp::of(e.to_string().as_bytes()));
                if asked {
                    self.refused = None;
                }
                self.refuse(stamp, &e);
                return;
            }
            Err(e) => {
                tracing::error!(error = %e, "loading the App key panicked; the old key still signs");
                return;
            }
        };
        self.loaded = loaded.stamp;
        self.refused = None;
        match self.keys.replace(loaded.signer) {
            KeyChange::Same => tracing::info!(
                key = %self.source,
                fingerprint = %self.keys.fingerprint().map(|f| f.to_string()).unwrap_or_default(),
                "the App key was reloaded; it is the same key"
            ),
            KeyChange::Replaced { old, new, generation } => tracing::info!(
                key = %self.source,
                fingerprint = %new.map(|f| f.to_string()).unwrap_or_default(),
                previous = %old.map(|f| f.to_string()).unwrap_or_default(),
                generation,
                "a new App key signs from now on; once every replica logs this fingerprint, the previous key can be deleted on GitHub"
            ),
        }
    }

    fn refuse(&mut self, stamp: KeyStamp, error: &KeySourceError) {
        if self.refused == Some(stamp) {
            return;
        }
        self.refused = Some(stamp);
        tracing::warn!(
            key = %self.source,
            error = %error,
            fingerprint = %self.keys.fingerprint().map(|f| f.to_string()).unwrap_or_default(),
            "the new App key was refused; the key in use still signs"
        );
    }
}
