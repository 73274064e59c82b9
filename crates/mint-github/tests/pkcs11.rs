//! The PKCS#11 signer against a real token: Debian's `SoftHSM2`, initialised in a temp dir, the App's key
//! imported non-extractable. `SoftHSM` reads `SOFTHSM2_CONF` when the module initialises, and the environment
//! cannot be changed in a running test process, so each test sets up its token and runs itself again as a
//! child process with that variable (`child`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use fakehub::AppKeyPair;
use fakehub::softhsm::SoftHsm;
use mint_github::{AppKey, Pkcs11Signer, Pkcs11Uri, Signer};
use secrecy::SecretString;

const PIN: &str = "pin-0f9a3c";
const DIR: &str = "MINT_TEST_SOFTHSM_DIR";

fn app_key() -> &'static AppKeyPair {
    static KEY: OnceLock<AppKeyPair> = OnceLock::new();
    KEY.get_or_init(|| AppKeyPair::generate().expect("keygen"))
}

/// In the parent: make a token holding the App key, run `test` again in a child with `SOFTHSM2_CONF`, and
/// return `None`. In the child: the token's directory.
fn child(test: &str) -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os(DIR) {
        return Some(PathBuf::from(dir));
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let hsm = SoftHsm::new(dir.path(), "mint", PIN).expect("SoftHSM token");
    hsm.import(app_key(), "github-app", "01").expect("import");
    std::fs::write(dir.path().join("app.pem"), app_key().private_key_pem()).expect("pem for the oracle");
    let out = Command::new(std::env::current_exe().expect("test binary"))
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env("SOFTHSM2_CONF", hsm.conf())
        .env(DIR, dir.path())
        .output()
        .expect("run the child test");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "child {test} failed:\n{stdout}\n{stderr}"
    );
    None
}

fn uri() -> Pkcs11Uri {
    Pkcs11Uri::parse(&format!(
        "pkcs11:token=mint;object=github-app?module-path={}",
        fakehub::softhsm::MODULE
    ))
    .expect("uri")
}

fn the_token_dir(dir: &Path) -> PathBuf {
    std::fs::read_dir(dir.join("tokens"))
        .expect("tokens")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.is_dir())
        .expect("one token directory")
}

#[test]
fn the_token_signs_exactly_what_the_pem_signs() {
    let Some(dir) = child("the_token_signs_exactly_what_the_pem_signs") else {
        return;
    };
    let signer = Pkcs11Signer::open(uri(), SecretString::from(PIN)).expect("opens");
    assert!(!signer.extractable(), "softhsm2-util imports the key non-extractable");
    let pem = AppKey::from_pem(&std::fs::read(dir.join("app.pem")).expect("pem")).expect("key");
    assert_eq!(signer.fingerprint().as_ref(), Some(pem.fingerprint()));
    for message in [&b"mint token seal"[..], b"", &[7u8; 5000]] {
        let inside = signer.sign_rs256(message).expect("the token signs");
        assert_eq!(
            *inside,
            *pem.sign_rs256(message).expect("ring signs"),
            "CKM_SHA256_RSA_PKCS is RS256"
        );
    }
    let app: mint_github::AppId = "42".parse().expect("id");
    let now = std::time::SystemTime::now();
    assert_eq!(
        signer.app_jwt(&app, now).expect("jwt").expose(),
        pem.jwt(&app, now).expect("jwt").expose()
    );
    let debug = format!("{signer:?}");
    assert!(debug.contains("pkcs11:token=mint") && !debug.contains(PIN), "{debug}");
}

#[test]
fn a_wrong_pin_names_the_uri_and_not_the_pin() {
    if child("a_wrong_pin_names_the_uri_and_not_the_pin").is_none() {
        return;
    }
    let err = Pkcs11Signer::open(uri(), SecretString::from("wrong-pin-77")).expect_err("refused");
    let text = err.to_string();
    assert!(
        text.contains("pkcs11:token=mint;object=github-app") && text.contains("refused the PIN"),
        "{text}"
    );
    assert!(
        !text.contains("wrong-pin-77") && !format!("{err:?}").contains("wrong-pin-77"),
        "{text}"
    );
}

#[test]
fn a_missing_key_or_token_says_what_is_there() {
    if child("a_missing_key_or_token_says_what_is_there").is_none() {
        return;
    }
    let other = Pkcs11Uri::parse(&format!(
        "pkcs11:token=mint;object=no-such-key?module-path={}",
        fakehub::softhsm::MODULE
    ))
    .expect("uri");
    let err = Pkcs11Signer::open(other, SecretString::from(PIN))
        .expect_err("no key")
        .to_string();
    assert!(err.contains("0 RSA private keys match"), "{err}");
    let other = Pkcs11Uri::parse(&format!(
        "pkcs11:token=elsewhere;object=github-app?module-path={}",
        fakehub::softhsm::MODULE
    ))
    .expect("uri");
    let err = Pkcs11Signer::open(other, SecretString::from(PIN))
        .expect_err("no token")
        .to_string();
    assert!(err.contains("no token matches") && err.contains("\"mint\""), "{err}");
    let other =
        Pkcs11Uri::parse("pkcs11:token=mint;object=github-app?module-path=/nonexistent/module.so").expect("uri");
    let err = Pkcs11Signer::open(other, SecretString::from(PIN))
        .expect_err("no module")
        .to_string();
    assert!(
        err.contains("cannot load the PKCS#11 module /nonexistent/module.so"),
        "{err}"
    );
}

/// The HSM goes away (the token's storage is gone) while the signer holds a session: the next signature
/// fails with an error that names the URI and the likely cause, and once the token is back the signer
/// reopens its session by itself.
#[test]
fn a_token_removed_fails_the_next_signature_and_recovers_once_it_is_back() {
    let Some(dir) = child("a_token_removed_fails_the_next_signature_and_recovers_once_it_is_back") else {
        return;
    };
    let signer = Pkcs11Signer::open(uri(), SecretString::from(PIN)).expect("opens");
    let before = signer.sign_rs256(b"before").expect("signs");
    let token = the_token_dir(&dir);
    let away = dir.join("away");
    std::fs::rename(&token, &away).expect("remove the token");
    let err = signer.sign_rs256(b"while away").expect_err("no token").to_string();
    assert!(err.contains("pkcs11:token=mint;object=github-app"), "{err}");
    assert!(err.contains("is the HSM reachable and the token present?"), "{err}");
    assert!(!err.contains(PIN), "{err}");
    std::fs::rename(&away, &token).expect("put the token back");
    assert_eq!(*signer.sign_rs256(b"before").expect("signs again"), *before);
}
