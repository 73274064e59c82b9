//! HTTPS served directly (`--tls-cert`/`--tls-key`), with rustls.

use std::path::Path;
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use mint_service::secret_file::{Readable, read_private};

use crate::config::{ConfigError, env, invalid};

pub(crate) fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, ConfigError> {
    let bad_cert = |reason: String| ConfigError {
        flag: "tls-cert",
        env: env::TLS_CERT,
        reason,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(Iterator::collect)
        .map_err(|e| bad_cert(format!("{}: {e}", cert.display())))?;
    if certs.is_empty() {
        return Err(bad_cert(format!(
            "{} holds no PEM certificate (\"BEGIN CERTIFICATE\")",
            cert.display()
        )));
    }
    let pem = read_private(key, Readable::Never).map_err(|e| invalid("tls-key", env::TLS_KEY, e))?;
    let bad_key = |reason: String| ConfigError {
        flag: "tls-key",
        env: env::TLS_KEY,
        reason,
    };
    let key_der = PrivateKeyDer::from_pem_slice(&pem)
        .map_err(|e| bad_key(format!("{}: not a PEM private key: {e}", key.display())))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| bad_key(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| bad_key(format!("{} does not go with the certificate: {e}", key.display())))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
