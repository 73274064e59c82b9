//! A real PKCS#11 token for tests: Debian's `SoftHSM2`, its token directory and configuration in a temp dir,
//! the App's key imported as a non-extractable private key with `softhsm2-util` (as docs/security.md tells
//! an operator to). Processes that use it need `SOFTHSM2_CONF` set to [`SoftHsm::conf`].

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;

use crate::AppKeyPair;

/// Debian's `softhsm2` package installs its module here.
pub const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

/// A `SoftHSM2` token directory with one initialised token.
#[derive(Debug)]
pub struct SoftHsm {
    dir: PathBuf,
    label: String,
    pin: String,
}

impl SoftHsm {
    /// Initialise token `label` with user PIN `pin` under `dir` (created), with its own configuration file.
    pub fn new(dir: &Path, label: &str, pin: &str) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir.join("tokens"))?;
        let hsm = Self {
            dir: dir.to_owned(),
            label: label.to_owned(),
            pin: pin.to_owned(),
        };
        std::fs::write(
            hsm.conf(),
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n",
                hsm.tokens().display()
            ),
        )?;
        hsm.util(&[
            "--init-token",
            "--free",
            "--label",
            label,
            "--pin",
            pin,
            "--so-pin",
            "so-pin-1234",
        ])?;
        Ok(hsm)
    }

    /// The configuration file: `SOFTHSM2_CONF` for every process that opens the token.
    pub fn conf(&self) -> PathBuf {
        self.dir.join("softhsm2.conf")
    }

    /// Where `SoftHSM` keeps its tokens (one directory each).
    pub fn tokens(&self) -> PathBuf {
        self.dir.join("tokens")
    }

    pub fn pin(&self) -> &str {
        &self.pin
    }

    /// Import `key` as private key `object` (and its public key), non-extractable, from a PKCS#8 file that is
    /// removed again at once.
    pub fn import(&self, key: &AppKeyPair, object: &str, id: &str) -> anyhow::Result<()> {
        let pem = self.dir.join(format!("{object}.p8"));
        std::fs::write(&pem, key.private_key_pkcs8_pem())?;
        let imported = self.util(&[
            "--import",
            pem.to_str().context("utf-8 path")?,
            "--token",
            &self.label,
            "--label",
            object,
            "--id",
            id,
            "--pin",
            &self.pin,
        ]);
        std::fs::remove_file(&pem)?;
        imported
    }

    /// `pkcs11:token=LABEL;object=OBJECT?module-path=…`
    pub fn uri(&self, object: &str) -> String {
        format!("pkcs11:token={};object={object}?module-path={MODULE}", self.label)
    }

    fn util(&self, args: &[&str]) -> anyhow::Result<()> {
        let out = Command::new("softhsm2-util")
            .args(args)
            .env("SOFTHSM2_CONF", self.conf())
            .output()
            .context("running softhsm2-util (Debian's softhsm2 package)")?;
        anyhow::ensure!(
            out.status.success(),
            "softhsm2-util {}: {}",
            args[0],
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Ok(())
    }
}
