//! Time per App JWT signature: the old code (jsonwebtoken over the `rsa` crate), ring (what signs now), and
//! a PKCS#11 token (`SoftHSM2`, through cryptoki). Run with `cargo bench -p mint-github --bench sign`; results
//! in docs/performance.md. The `SoftHSM2` part re-runs this program with `SOFTHSM2_CONF` naming a token made in
//! a temp dir (the module reads it once, at initialisation).

use std::time::{Duration, Instant, SystemTime};

use fakehub::AppKeyPair;
use fakehub::softhsm::SoftHsm;
use mint_github::{AppId, AppKey, Claims, Pkcs11Signer, Pkcs11Uri, Signer};

const PIN: &str = "bench-pin";

fn main() {
    let app: AppId = "12345".parse().expect("id");
    if let Some(uri) = std::env::var_os("MINT_BENCH_PKCS11_URI") {
        let uri = Pkcs11Uri::parse(uri.to_str().expect("utf-8")).expect("uri");
        let signer = Pkcs11Signer::open(uri, secrecy::SecretString::from(PIN)).expect("token");
        report("SoftHSM2 2.6 via PKCS#11 (CKM_SHA256_RSA_PKCS)", 200, || {
            signer.app_jwt(&app, SystemTime::now()).expect("signs");
        });
        return;
    }
    let pair = AppKeyPair::generate().expect("keygen");
    let pem = pair.private_key_pem();
    let old = jsonwebtoken::EncodingKey::from_rsa_pem(pem.as_bytes()).expect("old key");
    let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    report("old: jsonwebtoken 11 + rsa 0.9 (rust_crypto)", 200, || {
        jsonwebtoken::encode(&header, &Claims::new(&app, SystemTime::now()), &old).expect("signs");
    });
    let key = AppKey::from_pem(pem.as_bytes()).expect("key");
    report("new: ring 0.17 RsaKeyPair (RSA_PKCS1_SHA256)", 1000, || {
        key.jwt(&app, SystemTime::now()).expect("signs");
    });

    let dir = tempfile::tempdir().expect("tempdir");
    let hsm = SoftHsm::new(dir.path(), "bench", PIN).expect("SoftHSM2 token (Debian's softhsm2)");
    hsm.import(&pair, "github-app", "01").expect("import");
    let status = std::process::Command::new(std::env::current_exe().expect("self"))
        .env("SOFTHSM2_CONF", hsm.conf())
        .env("MINT_BENCH_PKCS11_URI", hsm.uri("github-app"))
        .status()
        .expect("run the PKCS#11 part");
    assert!(status.success());
}

/// Warm up, then time `n` signatures; print the median of 5 rounds' mean per signature.
fn report(name: &str, n: u32, mut sign: impl FnMut()) {
    for _ in 0..n / 10 {
        sign();
    }
    let mut rounds: Vec<Duration> = (0..5)
        .map(|_| {
            let started = Instant::now();
            for _ in 0..n {
                sign();
            }
            started.elapsed() / n
        })
        .collect();
    rounds.sort();
    println!(
        "{name:<50} {:>8.1} µs per App JWT (median of 5 rounds of {n}; range {:.1}–{:.1})",
        micros(rounds[2]),
        micros(rounds[0]),
        micros(rounds[4])
    );
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}
