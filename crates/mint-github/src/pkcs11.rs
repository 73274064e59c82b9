//! The App key in an HSM or a KMS, through PKCS#11: the key signs inside the token and never enters this
//! process. Named by an RFC 7512 URI such as
//! `pkcs11:token=mint;object=github-app?module-path=/usr/lib/softhsm/libsofthsm2.so`, logged in with a PIN
//! read from a file.
//!
//! One session is kept open and reused; the App caches its JWT for five minutes, so the token signs about
//! once per five minutes per process. A session the token dropped (a restart of the HSM, a network HSM's
//! connection lost, a token pulled out and put back) is reopened on the next signature.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use mint_service::secret_file::{Readable, SecretFileError, read_private};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use zeroize::Zeroizing;

use crate::{KeyFingerprint, SignError, Signer};

/// A parsed `pkcs11:` URI (RFC 7512): which token, which key, which module. It holds no PIN (one in the URI
/// is refused), so it prints as given.
#[derive(Clone, PartialEq, Eq)]
pub struct Pkcs11Uri {
    text: String,
    token: Option<String>,
    serial: Option<String>,
    manufacturer: Option<String>,
    model: Option<String>,
    slot_id: Option<u64>,
    object: Option<String>,
    id: Option<Vec<u8>>,
    module_path: PathBuf,
}

/// Why the PKCS#11 key cannot be used. Never carries the PIN.
#[derive(Debug, thiserror::Error)]
pub enum Pkcs11Error {
    #[error("{uri:?} is not a PKCS#11 URI mint can use: {reason}")]
    Uri { uri: String, reason: String },
    #[error("the PKCS#11 PIN file: {0}")]
    PinFile(#[source] SecretFileError),
    #[error(
        "{uri}: cannot load the PKCS#11 module {module}: {reason}; install the HSM's PKCS#11 library there or fix module-path"
    )]
    Module {
        uri: String,
        module: String,
        reason: String,
    },
    #[error(
        "{uri}: no token matches (tokens present: {present}); is the HSM reachable and the token present? `pkcs11-tool --module MODULE --list-token-slots` lists them"
    )]
    NoToken { uri: String, present: String },
    #[error("{uri}: {count} tokens match; add token=, serial= or slot-id= to the URI to name one")]
    ManyTokens { uri: String, count: usize },
    #[error(
        "{uri}: the token refused the PIN from the PIN file ({reason}); put the token's user PIN in the file (the wrong one tried too often locks the token)"
    )]
    WrongPin { uri: String, reason: String },
    #[error(
        "{uri}: {found} RSA private keys match; the URI must name exactly one with object= (its label) or id= (e.g. `pkcs11-tool --module MODULE --login --list-objects --type privkey`)"
    )]
    NoSingleKey { uri: String, found: usize },
    #[error(
        "{uri}: the key there is now {found}, not {expected}, which was loaded at start or at the last reload; send SIGHUP to load the new key"
    )]
    KeyChanged {
        uri: String,
        expected: KeyFingerprint,
        found: KeyFingerprint,
    },
    #[error("{uri}: {operation} failed: {reason}; is the HSM reachable and the token present?")]
    Token {
        uri: String,
        operation: &'static str,
        reason: String,
    },
}

impl Pkcs11Uri {
    /// Whether `text` is meant as a PKCS#11 URI rather than a file path.
    pub fn is_uri(text: &str) -> bool {
        text.get(..7)
            .is_some_and(|scheme| scheme.eq_ignore_ascii_case("pkcs11:"))
    }

    pub fn parse(text: &str) -> Result<Self, Pkcs11Error> {
        // A URI holding a PIN would be shown in errors and logs: refuse it without echoing it.
        let shown = if text.contains("pin-value") {
            "pkcs11:<with pin-value, not shown>".to_owned()
        } else {
            text.to_owned()
        };
        let bad = |reason: String| Pkcs11Error::Uri {
            uri: shown.clone(),
            reason,
        };
        if !Self::is_uri(text) {
            return Err(bad("it does not start with pkcs11:".into()));
        }
        let (path, query) = text[7..].split_once('?').unwrap_or((&text[7..], ""));
        let mut uri = Self {
            text: text.to_owned(),
            token: None,
            serial: None,
            manufacturer: None,
            model: None,
            slot_id: None,
            object: None,
            id: None,
            module_path: PathBuf::new(),
        };
        for attribute in path.split(';').filter(|a| !a.is_empty()) {
            let (name, value) = attribute
                .split_once('=')
                .ok_or_else(|| bad(format!("path attribute {attribute:?} has no '='")))?;
            let value = percent_decode(value).ok_or_else(|| bad(format!("{name}: bad percent-encoding")))?;
            let text_value = || String::from_utf8(value.clone()).map_err(|_| bad(format!("{name} is not UTF-8")));
            match name {
                "token" => uri.token = Some(text_value()?),
                "serial" => uri.serial = Some(text_value()?),
                "manufacturer" => uri.manufacturer = Some(text_value()?),
                "model" => uri.model = Some(text_value()?),
                "slot-id" => {
                    uri.slot_id = Some(
                        text_value()?
                            .parse()
                            .map_err(|_| bad("slot-id must be a decimal number".into()))?,
                    );
                }
                "object" => uri.object = Some(text_value()?),
                "id" => uri.id = Some(value),
                "type" if value == b"private" => {}
                "type" => return Err(bad("type must be private: the App key is an RSA private key".into())),
                // Library and slot descriptions select nothing useful here; RFC 7512 lets them be ignored.
                "library-manufacturer"
                | "library-description"
                | "library-version"
                | "slot-description"
                | "slot-manufacturer" => {}
                other => return Err(bad(format!("unknown path attribute {other:?}"))),
            }
        }
        for attribute in query.split('&').filter(|a| !a.is_empty()) {
            let (name, value) = attribute.split_once('=').unwrap_or((attribute, ""));
            match name {
                "module-path" => {
                    let value = percent_decode(value).ok_or_else(|| bad("module-path: bad percent-encoding".into()))?;
                    uri.module_path =
                        PathBuf::from(String::from_utf8(value).map_err(|_| bad("module-path is not UTF-8".into()))?);
                }
                "pin-value" | "pin-source" => {
                    return Err(bad(
                        "a PIN in the URI would be shown wherever the URI is; put the PIN in a file of mode 0600 and give it with --pkcs11-pin-file (or MINT_PKCS11_PIN_FILE)".into(),
                    ));
                }
                "module-name" => {
                    return Err(bad(
                        "module-name is not supported; give the module's file with module-path=/path/to/module.so"
                            .into(),
                    ));
                }
                other => return Err(bad(format!("unknown query attribute {other:?}"))),
            }
        }
        if uri.module_path.as_os_str().is_empty() {
            return Err(bad(
                "it names no module: add ?module-path=/path/to/the/HSM's/pkcs11/library.so (e.g. /usr/lib/softhsm/libsofthsm2.so)".into(),
            ));
        }
        if uri.object.is_none() && uri.id.is_none() {
            return Err(bad(
                "it names no key: add object=LABEL or id=%01 (the key's CKA_LABEL or CKA_ID)".into(),
            ));
        }
        Ok(uri)
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn module_path(&self) -> &Path {
        &self.module_path
    }
}

impl fmt::Display for Pkcs11Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for Pkcs11Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pkcs11Uri({})", self.text)
    }
}

fn percent_decode(value: &str) -> Option<Vec<u8>> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(out)
}

/// Read the token's user PIN from a file only its owner can read (mode 0600 or 0400). A trailing newline
/// is not part of the PIN.
pub fn read_pin_file(path: &Path) -> Result<AuthPin, Pkcs11Error> {
    let bytes = read_private(path, Readable::Never).map_err(Pkcs11Error::PinFile)?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| Pkcs11Error::PinFile(SecretFileError::NotText { path: path.to_owned() }))?;
    // Only the line break: a PIN may have spaces of its own at either end.
    let pin = text.trim_end_matches(['\n', '\r']);
    if pin.is_empty() {
        return Err(Pkcs11Error::PinFile(SecretFileError::Empty { path: path.to_owned() }));
    }
    Ok(AuthPin::from(pin))
}

/// One loaded module per path, shared by every signer in the process: a module is initialised once per
/// process (a second `C_Initialize` through another handle would share its state anyway).
static MODULES: Mutex<Vec<(PathBuf, Pkcs11)>> = Mutex::new(Vec::new());

fn module(uri: &Pkcs11Uri) -> Result<Pkcs11, Pkcs11Error> {
    let mut modules = MODULES.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some((_, pkcs11)) = modules.iter().find(|(path, _)| path == uri.module_path()) {
        return Ok(pkcs11.clone());
    }
    let failed = |reason: String| Pkcs11Error::Module {
        uri: uri.to_string(),
        module: uri.module_path().display().to_string(),
        reason,
    };
    let pkcs11 = Pkcs11::new(uri.module_path()).map_err(|e| failed(e.to_string()))?;
    initialize(&pkcs11).map_err(|e| failed(e.to_string()))?;
    modules.push((uri.module_path().to_owned(), pkcs11.clone()));
    Ok(pkcs11)
}

fn initialize(pkcs11: &Pkcs11) -> Result<(), CkError> {
    match pkcs11.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) | Ok(()) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Finalise and initialise the module again: some modules (`SoftHSM` among them) find a token that came back
/// only on a fresh `C_Initialize`. Every session of the module closes; each signer reopens its own.
fn reinitialize(pkcs11: &Pkcs11) -> Result<(), CkError> {
    let _guard = MODULES.lock().unwrap_or_else(PoisonError::into_inner);
    let _ = pkcs11.clone().finalize();
    initialize(pkcs11)
}

/// An App key held in a PKCS#11 token. Signs RS256 with `CKM_SHA256_RSA_PKCS` inside the token.
pub struct Pkcs11Signer {
    uri: Pkcs11Uri,
    pin: AuthPin,
    pkcs11: Pkcs11,
    fingerprint: KeyFingerprint,
    extractable: bool,
    open: Mutex<Option<Open>>,
}

/// A logged-in session and the key's handle in it.
struct Open {
    session: Session,
    key: ObjectHandle,
    fingerprint: KeyFingerprint,
    extractable: bool,
}

impl Pkcs11Signer {
    /// Load the module, find the token and the key, log in with the PIN, read the key's public half (for its
    /// fingerprint) and sign a probe. Blocking: call it off the async runtime's threads.
    pub fn open(uri: Pkcs11Uri, pin: AuthPin) -> Result<Self, Pkcs11Error> {
        let pkcs11 = module(&uri)?;
        let open = open_session(&pkcs11, &uri, &pin, true)?;
        let signer = Self {
            fingerprint: open.fingerprint.clone(),
            extractable: open.extractable,
            uri,
            pin,
            pkcs11,
            open: Mutex::new(Some(open)),
        };
        signer.sign(b"mint: PKCS#11 probe signature")?;
        Ok(signer)
    }

    pub fn uri(&self) -> &Pkcs11Uri {
        &self.uri
    }

    /// `CKA_EXTRACTABLE` of the key: a key the token would hand out in clear (wrapped) is not where it
    /// should be. Checked, and warned about, at every load.
    pub fn extractable(&self) -> bool {
        self.extractable
    }

    /// RS256 inside the token; a failed session is reopened once (and the module initialised anew if the
    /// token cannot be found) before giving up.
    fn sign(&self, message: &[u8]) -> Result<Zeroizing<Vec<u8>>, Pkcs11Error> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(current) = open.as_ref() {
            match sign_in(current, message) {
                Ok(signature) => return Ok(signature),
                Err(e) => {
                    tracing::warn!(uri = %self.uri, error = %e, "the PKCS#11 session failed to sign; reopening it");
                    *open = None;
                }
            }
        }
        let reopened = match open_session(&self.pkcs11, &self.uri, &self.pin, false) {
            Err(Pkcs11Error::NoToken { .. } | Pkcs11Error::Token { .. }) => {
                reinitialize(&self.pkcs11).map_err(|e| token_error(&self.uri, "C_Initialize", &e))?;
                open_session(&self.pkcs11, &self.uri, &self.pin, false)?
            }
            other => other?,
        };
        if reopened.fingerprint != self.fingerprint {
            return Err(Pkcs11Error::KeyChanged {
                uri: self.uri.to_string(),
                expected: self.fingerprint.clone(),
                found: reopened.fingerprint,
            });
        }
        let signature = sign_in(&reopened, message).map_err(|e| token_error(&self.uri, "C_Sign", &e))?;
        tracing::info!(uri = %self.uri, fingerprint = %self.fingerprint, "the PKCS#11 session is open again");
        *open = Some(reopened);
        Ok(signature)
    }
}

fn sign_in(open: &Open, message: &[u8]) -> Result<Zeroizing<Vec<u8>>, CkError> {
    open.session
        .sign(&Mechanism::Sha256RsaPkcs, open.key, message)
        .map(Zeroizing::new)
}

fn token_error(uri: &Pkcs11Uri, operation: &'static str, e: &CkError) -> Pkcs11Error {
    Pkcs11Error::Token {
        uri: uri.to_string(),
        operation,
        reason: e.to_string(),
    }
}

/// Find the one token the URI names, open a session, log in, find the one key. `first` warns about an
/// extractable key (once per load, not at every reopening).
fn open_session(pkcs11: &Pkcs11, uri: &Pkcs11Uri, pin: &AuthPin, first: bool) -> Result<Open, Pkcs11Error> {
    let slot = find_slot(pkcs11, uri)?;
    let session = pkcs11
        .open_ro_session(slot)
        .map_err(|e| token_error(uri, "C_OpenSession", &e))?;
    match session.login(UserType::User, Some(pin)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
        Err(CkError::Pkcs11(
            rv @ (RvError::PinIncorrect
            | RvError::PinInvalid
            | RvError::PinLenRange
            | RvError::PinLocked
            | RvError::PinExpired),
            _,
        )) => {
            return Err(Pkcs11Error::WrongPin {
                uri: uri.to_string(),
                reason: rv.to_string(),
            });
        }
        Err(e) => return Err(token_error(uri, "C_Login", &e)),
    }
    let mut template = vec![
        Attribute::Class(ObjectClass::PRIVATE_KEY),
        Attribute::KeyType(KeyType::RSA),
    ];
    if let Some(label) = &uri.object {
        template.push(Attribute::Label(label.as_bytes().to_vec()));
    }
    if let Some(id) = &uri.id {
        template.push(Attribute::Id(id.clone()));
    }
    let keys = session
        .find_objects(&template)
        .map_err(|e| token_error(uri, "C_FindObjects", &e))?;
    let [key] = keys[..] else {
        return Err(Pkcs11Error::NoSingleKey {
            uri: uri.to_string(),
            found: keys.len(),
        });
    };
    let attributes = session
        .get_attributes(
            key,
            &[
                AttributeType::Modulus,
                AttributeType::PublicExponent,
                AttributeType::Extractable,
            ],
        )
        .map_err(|e| token_error(uri, "C_GetAttributeValue", &e))?;
    let (mut modulus, mut exponent, mut extractable) = (None, None, true);
    for attribute in attributes {
        match attribute {
            Attribute::Modulus(n) => modulus = Some(n),
            Attribute::PublicExponent(e) => exponent = Some(e),
            Attribute::Extractable(x) => extractable = x,
            _ => {}
        }
    }
    let (Some(modulus), Some(exponent)) = (modulus, exponent) else {
        return Err(Pkcs11Error::Token {
            uri: uri.to_string(),
            operation: "C_GetAttributeValue",
            reason: "the key's modulus and public exponent are not readable".into(),
        });
    };
    let fingerprint = KeyFingerprint::of_rsa(&modulus, &exponent);
    if first && extractable {
        tracing::warn!(
            uri = %uri,
            fingerprint = %fingerprint,
            "the App key in the PKCS#11 token is extractable (CKA_EXTRACTABLE is true): the token would export it; import it again as non-extractable (softhsm2-util --import does; pkcs11-tool without --extractable) and delete this copy"
        );
    }
    Ok(Open {
        session,
        key,
        fingerprint,
        extractable,
    })
}

fn find_slot(pkcs11: &Pkcs11, uri: &Pkcs11Uri) -> Result<Slot, Pkcs11Error> {
    let slots = pkcs11
        .get_slots_with_token()
        .map_err(|e| token_error(uri, "C_GetSlotList", &e))?;
    let mut matching = Vec::new();
    let mut present = Vec::new();
    for slot in slots {
        if uri.slot_id.is_some_and(|id| id != slot.id()) {
            continue;
        }
        let Ok(info) = pkcs11.get_token_info(slot) else {
            continue;
        };
        let label = info.label().trim_end().to_owned();
        let matches = uri.token.as_deref().is_none_or(|t| t == label)
            && uri
                .serial
                .as_deref()
                .is_none_or(|s| s == info.serial_number().trim_end())
            && uri
                .manufacturer
                .as_deref()
                .is_none_or(|m| m == info.manufacturer_id().trim_end())
            && uri.model.as_deref().is_none_or(|m| m == info.model().trim_end());
        present.push(format!("{label:?}"));
        if matches {
            matching.push(slot);
        }
    }
    match matching[..] {
        [slot] => Ok(slot),
        [] => Err(Pkcs11Error::NoToken {
            uri: uri.to_string(),
            present: if present.is_empty() {
                "none".into()
            } else {
                present.join(", ")
            },
        }),
        _ => Err(Pkcs11Error::ManyTokens {
            uri: uri.to_string(),
            count: matching.len(),
        }),
    }
}

impl Signer for Pkcs11Signer {
    fn sign_rs256(&self, message: &[u8]) -> Result<Zeroizing<Vec<u8>>, SignError> {
        self.sign(message).map_err(|e| SignError(e.to_string()))
    }

    fn fingerprint(&self) -> Option<KeyFingerprint> {
        Some(self.fingerprint.clone())
    }
}

impl fmt::Debug for Pkcs11Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pkcs11Signer")
            .field("uri", &self.uri)
            .field("fingerprint", &self.fingerprint)
            .field("pin", &"<redacted>")
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn uris_name_the_token_the_key_and_the_module() {
        let uri = Pkcs11Uri::parse(
            "pkcs11:token=mint%20prod;object=github-app;id=%01%02;type=private?module-path=/usr/lib/softhsm/libsofthsm2.so",
        )
        .expect("valid");
        assert_eq!(uri.token.as_deref(), Some("mint prod"));
        assert_eq!(uri.object.as_deref(), Some("github-app"));
        assert_eq!(uri.id.as_deref(), Some(&[1u8, 2][..]));
        assert_eq!(uri.module_path(), Path::new("/usr/lib/softhsm/libsofthsm2.so"));
        assert!(Pkcs11Uri::is_uri("PKCS11:token=x"));
        assert!(!Pkcs11Uri::is_uri("/etc/mint/app.pem"));
    }

    #[test]
    fn a_uri_with_a_pin_is_refused_without_showing_it() {
        for text in [
            "pkcs11:token=mint;object=k?module-path=/m.so&pin-value=hunter2",
            "pkcs11:token=mint;object=k?pin-source=file:/pin&module-path=/m.so",
        ] {
            let err = Pkcs11Uri::parse(text).expect_err("refused").to_string();
            assert!(err.contains("--pkcs11-pin-file"), "{err}");
            assert!(!err.contains("hunter2"), "{err}");
        }
    }

    #[test]
    fn incomplete_uris_say_what_to_add() {
        let err = Pkcs11Uri::parse("pkcs11:token=mint;object=k").expect_err("no module");
        assert!(err.to_string().contains("module-path="), "{err}");
        let err = Pkcs11Uri::parse("pkcs11:token=mint?module-path=/m.so").expect_err("no key");
        assert!(err.to_string().contains("object="), "{err}");
        let err = Pkcs11Uri::parse("pkcs11:token=mint;object=k;type=public?module-path=/m.so").expect_err("public");
        assert!(err.to_string().contains("type must be private"), "{err}");
        let err = Pkcs11Uri::parse("pkcs11:token=%zz;object=k?module-path=/m.so").expect_err("encoding");
        assert!(err.to_string().contains("percent-encoding"), "{err}");
    }

    #[test]
    fn pin_files_must_be_private_and_are_redacted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("pin");
        std::fs::write(&path, "123456\n").expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).expect("chmod");
        let err = read_pin_file(&path).expect_err("readable by the group").to_string();
        assert!(err.contains("mode 0640") && err.contains("chmod 600"), "{err}");
        assert!(!err.contains("123456"), "{err}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let pin = read_pin_file(&path).expect("private");
        assert_eq!(pin.expose_secret(), "123456");
        assert!(!format!("{pin:?}").contains("123456"));
    }
}
