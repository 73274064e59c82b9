//! mint-server's settings: flags, else `MINT_SERVER_*` variables, else defaults; loaded and validated once,
//! before anything binds. A bad setting exits 64 naming the flag and the variable.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use mint_github::{AppId, KeySource, KeySourceError, LoadedKey};
use mint_service::secret_file::{Readable, SecretFileError, read_private_lines, read_private_text};

use crate::secrets::{AdminToken, MIN_ADMIN_TOKEN_LEN};

/// The environment variables, one per flag.
pub mod env {
    pub const APP_ID: &str = "MINT_SERVER_APP_ID";
    pub const PRIVATE_KEY: &str = "MINT_SERVER_PRIVATE_KEY";
    pub const ALLOW_READABLE_KEY: &str = "MINT_SERVER_ALLOW_READABLE_KEY";
    pub const PKCS11_PIN_FILE: &str = "MINT_SERVER_PKCS11_PIN_FILE";
    pub const DATABASE: &str = "MINT_SERVER_DATABASE";
    pub const LISTEN: &str = "MINT_SERVER_LISTEN";
    pub const BEHIND_TLS_PROXY: &str = "MINT_SERVER_BEHIND_TLS_PROXY";
    pub const TLS_CERT: &str = "MINT_SERVER_TLS_CERT";
    pub const TLS_KEY: &str = "MINT_SERVER_TLS_KEY";
    pub const GITHUB_URL: &str = "MINT_SERVER_GITHUB_URL";
    pub const API_URL: &str = "MINT_SERVER_API_URL";
    pub const ADMIN_TOKEN_FILE: &str = "MINT_SERVER_ADMIN_TOKEN_FILE";
    pub const SANDBOX_TTL: &str = "MINT_SERVER_SANDBOX_TTL";
    pub const LOG_FORMAT: &str = "MINT_SERVER_LOG_FORMAT";
    pub const PUBLIC_URL: &str = "MINT_SERVER_PUBLIC_URL";
    pub const APP_SLUG: &str = "MINT_SERVER_APP_SLUG";
    pub const CLIENT_ID: &str = "MINT_SERVER_CLIENT_ID";
    pub const CLIENT_SECRET_FILE: &str = "MINT_SERVER_CLIENT_SECRET_FILE";
    pub const WEBHOOK_SECRET_FILE: &str = "MINT_SERVER_WEBHOOK_SECRET_FILE";
    pub const RECONCILE_INTERVAL: &str = "MINT_SERVER_RECONCILE_INTERVAL";
    pub const MINTS_PER_INSTALLATION: &str = "MINT_SERVER_MINTS_PER_INSTALLATION";
    pub const SANDBOX_MINTS_PER_MINUTE: &str = "MINT_SERVER_SANDBOX_MINTS_PER_MINUTE";
    pub const TOKEN_SEAL_KEY_FILE: &str = "MINT_SERVER_TOKEN_SEAL_KEY_FILE";
    pub const MAX_CONNECTIONS: &str = "MINT_SERVER_MAX_CONNECTIONS";
    pub const DB_POOL: &str = "MINT_SERVER_DB_POOL";
    pub const AUDIT_RETENTION: &str = "MINT_SERVER_AUDIT_RETENTION";
    pub const METRICS_TOKEN_FILE: &str = "MINT_SERVER_METRICS_TOKEN_FILE";
}

/// mint-server: the control plane. The only holder of the GitHub App's private key; keeps each product's
/// GitHub connection in a database and mints repository-scoped tokens for sandboxes (mintd --broker).
#[derive(Debug, Parser)]
#[command(name = "mint-server", version, max_term_width = 100)]
#[command(after_help = "\
Every flag can also come from the environment variable named beside it.

Orchestrator API (Authorization: Bearer <admin token>):
    POST   /api/v1/products                     {\"name\", \"members\": [login...]} -> 201 {\"id\"}
    PUT    /api/v1/products/{id}/connection     {\"installation_id\", \"repository\": \"owner/name\"}
    GET    /api/v1/products/{id}/connection
    DELETE /api/v1/products/{id}/connection     (Disconnect; never uninstalls the App)
    POST   /api/v1/products/{id}/sandboxes      -> 201 {\"sandbox_id\", \"credential\", \"expires_at\"}
    DELETE /api/v1/sandboxes/{id}               -> 204, after revoking its tokens
Broker API (Authorization: Bearer <sandbox credential>):
    POST   /api/v1/token                        -> 200 {\"token\", \"expires_at\", \"repository\", ...}
Probes: GET /healthz, GET /readyz. Details and every error: docs/server.md.")]
pub struct Args {
    /// The GitHub App's numeric App ID or its Client ID.
    #[arg(long, env = env::APP_ID, value_name = "ID")]
    pub app_id: String,
    /// PEM file with the App's private key (mode 0600), or the key in an HSM as a PKCS#11 URI, e.g.
    /// pkcs11:token=mint;object=github-app?module-path=/usr/lib/softhsm/libsofthsm2.so. Reloaded on SIGHUP
    /// and when the file changes.
    #[arg(long, env = env::PRIVATE_KEY, value_name = "PEM_FILE|PKCS11_URI")]
    pub private_key: PathBuf,
    /// File holding the PKCS#11 token's user PIN (mode 0600), with a pkcs11: URI in --private-key.
    #[arg(long, env = env::PKCS11_PIN_FILE, value_name = "FILE")]
    pub pkcs11_pin_file: Option<PathBuf>,
    /// Accept a private key file that group or others can read (e.g. a Kubernetes Secret mounted 0644).
    #[arg(long, env = env::ALLOW_READABLE_KEY)]
    pub allow_readable_key: bool,
    /// Where connections and sandboxes are kept: `sqlite://FILE` (embedded) or `postgres://USER@HOST/DB`.
    #[arg(long, env = env::DATABASE, value_name = "URL", default_value = "sqlite://mint-server.db")]
    pub database: String,
    /// Address to serve on.
    #[arg(long, env = env::LISTEN, value_name = "ADDR:PORT", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Serve plain HTTP on a non-loopback address because a TLS-terminating proxy is in front.
    #[arg(long, env = env::BEHIND_TLS_PROXY)]
    pub behind_tls_proxy: bool,
    /// Serve HTTPS with this certificate chain (PEM); needs --tls-key.
    #[arg(long, env = env::TLS_CERT, value_name = "PEM_FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The TLS certificate's private key (PEM, mode 0600).
    #[arg(long, env = env::TLS_KEY, value_name = "PEM_FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// GitHub's web address (for GitHub Enterprise Server: `https://HOST`).
    #[arg(long, env = env::GITHUB_URL, value_name = "URL", default_value = "https://github.com")]
    pub github_url: String,
    /// GitHub's REST API root [default: api.github.com for github.com, else the GitHub URL + /api/v3].
    #[arg(long, env = env::API_URL, value_name = "URL")]
    pub api_url: Option<String>,
    /// File holding the orchestrator's admin token (mode 0600, at least 32 characters; e.g.
    /// `openssl rand -base64 32`).
    #[arg(long, env = env::ADMIN_TOKEN_FILE, value_name = "FILE")]
    pub admin_token_file: PathBuf,
    /// File holding a token that reads GET /metrics and nothing else (mode 0600, at least 32 characters),
    /// so Prometheus never holds the admin token; the admin token reads /metrics too.
    #[arg(long, env = env::METRICS_TOKEN_FILE, value_name = "FILE")]
    pub metrics_token_file: Option<PathBuf>,
    /// How long a sandbox credential works unless the sandbox is torn down first (e.g. 24h, 90m).
    #[arg(long, env = env::SANDBOX_TTL, value_name = "DURATION", default_value = "24h")]
    pub sandbox_ttl: humantime::Duration,
    /// Log format on stderr (levels are filtered by `RUST_LOG`; default info).
    #[arg(long, env = env::LOG_FORMAT, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Where browsers reach this server (the Integrations page). The App's settings then name
    /// {URL}/github/setup (Setup URL), {URL}/github/oauth/callback (callback) and {URL}/github/webhook.
    #[arg(long, env = env::PUBLIC_URL, value_name = "URL")]
    pub public_url: Option<String>,
    /// The App's slug, as in github.com/apps/SLUG.
    #[arg(long, env = env::APP_SLUG, value_name = "SLUG")]
    pub app_slug: Option<String>,
    /// The App's OAuth Client ID (Iv1.… or Iv23…).
    #[arg(long, env = env::CLIENT_ID, value_name = "ID")]
    pub client_id: Option<String>,
    /// File holding the App's OAuth client secret (mode 0600).
    #[arg(long, env = env::CLIENT_SECRET_FILE, value_name = "FILE")]
    pub client_secret_file: Option<PathBuf>,
    /// File holding the webhook secret (mode 0600); a second line holds the next secret during a rotation.
    #[arg(long, env = env::WEBHOOK_SECRET_FILE, value_name = "FILE")]
    pub webhook_secret_file: Option<PathBuf>,
    /// How often to reconcile connections with GitHub's list of installations (0 turns it off).
    #[arg(long, env = env::RECONCILE_INTERVAL, value_name = "DURATION", default_value = "10m")]
    pub reconcile_interval: humantime::Duration,
    /// How long the audit trail keeps an event (GET /api/v1/products/{id}/audit); older ones are deleted.
    #[arg(long, env = env::AUDIT_RETENTION, value_name = "DURATION", default_value = "90days")]
    pub audit_retention: humantime::Duration,
    /// At most this many mints in flight per installation across every replica (GitHub's secondary rate
    /// limits allow 100 concurrent requests); more wait their turn, taken in turn across products.
    #[arg(long, env = env::MINTS_PER_INSTALLATION, value_name = "N", default_value_t = 32,
          value_parser = clap::value_parser!(u16).range(1..=100))]
    pub mints_per_installation: u16,
    /// New tokens one sandbox may be minted per minute; a sandbox asking again while its token has life
    /// left gets that token back, which does not count. More answer 429 with Retry-After.
    #[arg(long, env = env::SANDBOX_MINTS_PER_MINUTE, value_name = "N", default_value_t = 6,
          value_parser = clap::value_parser!(u32).range(1..=600))]
    pub sandbox_mints_per_minute: u32,
    /// File (mode 0600) with the secret that seals tokens in the database, so any replica can revoke them:
    /// one line of at least 32 bytes (`openssl rand -base64 32`), then older secrets still needed to open
    /// what they sealed. Every replica needs the same file. Default: derived from the App key.
    #[arg(long, env = env::TOKEN_SEAL_KEY_FILE, value_name = "FILE")]
    pub token_seal_key_file: Option<PathBuf>,
    /// Connections held at once (each sandbox's mintd keeps one open to watch its state); more wait in the
    /// kernel's backlog until one ends. About 20 KiB each (docs/security.md).
    #[arg(long, env = env::MAX_CONNECTIONS, value_name = "N", default_value_t = 4096,
          value_parser = clap::value_parser!(u32).range(16..=1_000_000))]
    pub max_connections: u32,
    /// Database connections this replica keeps (default 16 on PostgreSQL, 8 on SQLite). A token costs two
    /// or three short statements, so 16 serve a fleet of 1,000 sandboxes starting at once; every replica's
    /// pool together must stay under PostgreSQL's `max_connections` (100 by default), with room for the
    /// operator (docs/server.md).
    #[arg(long, env = env::DB_POOL, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub db_pool: Option<u32>,
}

pub use mint_service::daemon::LogFormat;

/// A validated configuration. Nothing here prints a secret.
#[derive(Debug)]
pub struct Config {
    pub app_id: AppId,
    /// The key as loaded at start, and where it came from (reloaded from there while the server runs).
    pub key: LoadedKey,
    pub key_source: KeySource,
    pub database: String,
    pub listen: SocketAddr,
    pub tls: Option<std::sync::Arc<rustls::ServerConfig>>,
    pub api_url: String,
    pub admin: AdminToken,
    pub metrics_token: Option<AdminToken>,
    pub sandbox_ttl: Duration,
    pub web: Option<crate::site::Web>,
    pub reconcile_interval: Duration,
    pub audit_retention: Duration,
    pub mints_per_installation: usize,
    pub mints_per_minute: u32,
    pub sealer: crate::seal::Sealer,
    pub max_connections: usize,
    pub db_pool: Option<u32>,
}

pub use mint_service::config::ConfigError;
pub(crate) use mint_service::config::invalid;

impl Args {
    pub fn load(self) -> Result<Config, ConfigError> {
        let app_id: AppId = self.app_id.parse().map_err(|e| invalid("app-id", env::APP_ID, e))?;
        let github_url = self.github_url.trim_end_matches('/').to_owned();
        let github_host = github_url
            .split_once("://")
            .filter(|(scheme, rest)| matches!(*scheme, "http" | "https") && !rest.is_empty())
            .map(|(_, rest)| rest.split(['/', ':']).next().unwrap_or_default().to_owned())
            .ok_or_else(|| {
                invalid(
                    "github-url",
                    env::GITHUB_URL,
                    format!("{github_url:?} is not an http(s) URL"),
                )
            })?;
        let api_url = self.api_url.clone().map_or_else(
            || {
                if github_host == "github.com" {
                    "https://api.github.com".to_owned()
                } else {
                    format!("{github_url}/api/v3")
                }
            },
            |u| u.trim_end_matches('/').to_owned(),
        );
        let (key_source, key) = self.key()?;
        let admin = bearer_token(&self.admin_token_file, "admin-token-file", env::ADMIN_TOKEN_FILE)?;
        let metrics_token = self
            .metrics_token_file
            .as_deref()
            .map(|path| bearer_token(path, "metrics-token-file", env::METRICS_TOKEN_FILE))
            .transpose()?;
        let tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(crate::tls::server_config(cert, key)?),
            _ => None,
        };
        if tls.is_none() && !self.listen.ip().is_loopback() && !self.behind_tls_proxy {
            return Err(invalid(
                "listen",
                env::LISTEN,
                format!(
                    "{} is not a loopback address, and plain HTTP there would carry tokens and credentials in clear: serve HTTPS with --tls-cert and --tls-key, or pass --behind-tls-proxy if a TLS-terminating proxy is in front",
                    self.listen
                ),
            ));
        }
        if !["sqlite:", "postgres://", "postgresql://"]
            .iter()
            .any(|p| self.database.starts_with(p))
        {
            return Err(invalid(
                "database",
                env::DATABASE,
                format!(
                    "{} is not a database URL mint-server knows: use sqlite://FILE (embedded, the default) or postgres://USER@HOST/DB",
                    crate::store::redact_url(&self.database)
                ),
            ));
        }
        let sandbox_ttl: Duration = self.sandbox_ttl.into();
        if sandbox_ttl.is_zero() || sandbox_ttl > Duration::from_secs(7 * 24 * 3600) {
            return Err(invalid(
                "sandbox-ttl",
                env::SANDBOX_TTL,
                "must be between 1s and 7 days",
            ));
        }
        let web = self.web(&app_id, &github_url, &api_url)?;
        Ok(Config {
            max_connections: usize::try_from(self.max_connections).unwrap_or(usize::MAX),
            db_pool: self.db_pool,
            sealer: match &self.token_seal_key_file {
                Some(path) => seal_secrets(path)?,
                None => crate::seal::Sealer::from_app_key(),
            },
            mints_per_minute: self.sandbox_mints_per_minute,
            web,
            reconcile_interval: self.reconcile_interval.into(),
            audit_retention: self.audit_retention.into(),
            mints_per_installation: usize::from(self.mints_per_installation),
            app_id,
            key,
            key_source,
            database: self.database,
            listen: self.listen,
            tls,
            api_url,
            admin,
            metrics_token,
            sandbox_ttl,
        })
    }
}

/// `--admin-token-file`, `--metrics-token-file`: one token of at least [`MIN_ADMIN_TOKEN_LEN`] visible ASCII
/// characters.
fn bearer_token(path: &std::path::Path, flag: &'static str, env: &'static str) -> Result<AdminToken, ConfigError> {
    let short = || {
        invalid(
            flag,
            env,
            format!(
                "{} must hold one token of at least {MIN_ADMIN_TOKEN_LEN} visible ASCII characters: make one with `openssl rand -base64 32`",
                path.display()
            ),
        )
    };
    let token = match read_private_text(path, Readable::Never) {
        Ok(token) => token,
        Err(SecretFileError::Empty { .. } | SecretFileError::NotText { .. }) => return Err(short()),
        Err(e) => return Err(invalid(flag, env, e)),
    };
    if token.len() < MIN_ADMIN_TOKEN_LEN || token.bytes().any(|b| !b.is_ascii_graphic()) {
        return Err(short());
    }
    Ok(AdminToken::new(&token))
}

impl Args {
    /// `--private-key` and `--pkcs11-pin-file`: the key loaded and checked with a probe signature.
    fn key(&self) -> Result<(KeySource, LoadedKey), ConfigError> {
        let key_error = |e: KeySourceError| match e {
            KeySourceError::NoPinFile
            | KeySourceError::PinFileWithoutUri
            | KeySourceError::Pkcs11(mint_github::Pkcs11Error::PinFile { .. }) => {
                invalid("pkcs11-pin-file", env::PKCS11_PIN_FILE, e)
            }
            e => invalid("private-key", env::PRIVATE_KEY, e),
        };
        let source = KeySource::new(
            &self.private_key,
            self.pkcs11_pin_file.as_deref(),
            self.allow_readable_key,
        )
        .map_err(key_error)?;
        let key = source.load().map_err(key_error)?;
        Ok((source, key))
    }

    /// The connect-flow settings: all five, or none (then the Integrations page answers that it is not
    /// configured, and the orchestrator API works as before).
    fn web(&self, app_id: &AppId, github_url: &str, api_url: &str) -> Result<Option<crate::site::Web>, ConfigError> {
        let given = [
            self.public_url.is_some(),
            self.app_slug.is_some(),
            self.client_id.is_some(),
            self.client_secret_file.is_some(),
            self.webhook_secret_file.is_some(),
        ];
        if given.iter().all(|g| !g) {
            return Ok(None);
        }
        let missing = |flag: &'static str, env: &'static str| {
            invalid(
                flag,
                env,
                "the Integrations page needs all of --public-url, --app-slug, --client-id, --client-secret-file and --webhook-secret-file",
            )
        };
        let public_url = self
            .public_url
            .as_deref()
            .ok_or_else(|| missing("public-url", env::PUBLIC_URL))?
            .trim_end_matches('/')
            .to_owned();
        let parsed = public_url_checked(&public_url)?;
        let app_slug = self
            .app_slug
            .clone()
            .ok_or_else(|| missing("app-slug", env::APP_SLUG))?;
        if app_slug.is_empty() || !app_slug.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(invalid(
                "app-slug",
                env::APP_SLUG,
                "the slug is the App's name in its URL: letters, digits and '-'",
            ));
        }
        let client_id = self
            .client_id
            .clone()
            .ok_or_else(|| missing("client-id", env::CLIENT_ID))?;
        let numeric_app_id: u64 = app_id.as_str().parse().map_err(|_| {
            invalid(
                "app-id",
                env::APP_ID,
                "the Integrations page needs the numeric App ID (to tell this App's installations from others)",
            )
        })?;
        let secret_path = self
            .client_secret_file
            .as_deref()
            .ok_or_else(|| missing("client-secret-file", env::CLIENT_SECRET_FILE))?;
        let secret = read_private_text(secret_path, Readable::Never)
            .map_err(|e| invalid("client-secret-file", env::CLIENT_SECRET_FILE, e))?;
        let hook_path = self
            .webhook_secret_file
            .as_deref()
            .ok_or_else(|| missing("webhook-secret-file", env::WEBHOOK_SECRET_FILE))?;
        let webhook_secrets = webhook_secrets(hook_path)?;
        let client = |url: &str, flag: &'static str, env: &'static str| {
            mint_github::GitHubClient::new(url).map_err(|e| invalid(flag, env, e))
        };
        Ok(Some(crate::site::Web {
            public: parsed,
            public_url,
            trust_forwarded_for: self.behind_tls_proxy,
            logins: crate::limit::PerAddress::new(crate::site::LOGIN_BURST, crate::site::LOGIN_EVERY),
            github_url: github_url.to_owned(),
            app_slug,
            app_id: numeric_app_id,
            oauth: mint_github::OAuthApp {
                client_id,
                client_secret: secrecy::SecretString::from(secret.as_str()),
            },
            webhook_secrets,
            web_client: client(github_url, "github-url", env::GITHUB_URL)?,
            api_client: client(api_url, "api-url", env::API_URL)?,
        }))
    }
}

/// `--public-url`: https, or http to this machine only (browsers refuse a `Secure` cookie over plain http
/// elsewhere, and the session would cross the network in clear).
fn public_url_checked(public_url: &str) -> Result<url::Url, ConfigError> {
    let parsed = url::Url::parse(public_url).ok().filter(url::Url::has_host);
    match parsed {
        Some(url) if url.scheme() == "https" => Ok(url),
        Some(url) if url.scheme() == "http" && mint_service::is_loopback(&url) => Ok(url),
        Some(url) if url.scheme() == "http" => Err(invalid(
            "public-url",
            env::PUBLIC_URL,
            format!(
                "{public_url:?} is plain http to a host that is not loopback: browsers would send the session cookie in clear and refuse it as Secure; use the https:// address people reach (a TLS-terminating proxy in front is fine)"
            ),
        )),
        _ => Err(invalid(
            "public-url",
            env::PUBLIC_URL,
            format!("{public_url:?} is not an http(s) URL, e.g. https://mint.example.com"),
        )),
    }
}

/// A webhook secret shorter than this is refused (32 bytes of `openssl rand -hex 32` is 128 bits and more).
pub const MIN_WEBHOOK_SECRET_LEN: usize = 32;

/// One secret per line: the current one, then at most the next one during a rotation.
fn webhook_secrets(hook_path: &Path) -> Result<Vec<zeroize::Zeroizing<Vec<u8>>>, ConfigError> {
    let webhook_secrets = read_private_lines(hook_path, Readable::Never)
        .map_err(|e| invalid("webhook-secret-file", env::WEBHOOK_SECRET_FILE, e))?;
    if webhook_secrets.is_empty() || webhook_secrets.len() > 2 {
        return Err(invalid(
            "webhook-secret-file",
            env::WEBHOOK_SECRET_FILE,
            format!(
                "{} must hold the webhook secret on one line, and at most the next one on a second",
                hook_path.display()
            ),
        ));
    }
    if webhook_secrets.iter().any(|s| s.len() < MIN_WEBHOOK_SECRET_LEN) {
        return Err(invalid(
            "webhook-secret-file",
            env::WEBHOOK_SECRET_FILE,
            format!(
                "{}: a webhook secret must be at least {MIN_WEBHOOK_SECRET_LEN} bytes, or anyone who guesses it can forge GitHub's deliveries: make one with `openssl rand -hex 32` and set the same on the App's settings page",
                hook_path.display()
            ),
        ));
    }
    Ok(webhook_secrets)
}

/// `--token-seal-key-file`: the current secret on the first line, older ones after it.
fn seal_secrets(path: &Path) -> Result<crate::seal::Sealer, ConfigError> {
    let flag = "token-seal-key-file";
    let secrets = read_private_lines(path, Readable::Never).map_err(|e| invalid(flag, env::TOKEN_SEAL_KEY_FILE, e))?;
    if secrets.is_empty() || secrets.iter().any(|s| s.len() < crate::seal::MIN_SEAL_SECRET_LEN) {
        return Err(invalid(
            flag,
            env::TOKEN_SEAL_KEY_FILE,
            format!(
                "{} must hold one secret of at least {} bytes per line (the current one first): make one with `openssl rand -base64 32`",
                path.display(),
                crate::seal::MIN_SEAL_SECRET_LEN
            ),
        ));
    }
    Ok(crate::seal::Sealer::from_secrets(&secrets))
}
