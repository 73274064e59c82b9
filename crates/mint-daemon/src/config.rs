//! mintd's settings: flags, else environment, else defaults; loaded and validated once, before anything binds.

use std::path::PathBuf;

use clap::Parser;
use mint_api::env;
use mint_credential::{RepoName, Server, Target};
use mint_github::{AppId, KeySource, KeySourceError, LoadedKey, Permissions};
use mint_service::secret_file::{Readable, check_private};

use crate::broker::{self, SandboxCredential};

/// The least a sandbox needs to push a branch and open a pull request.
pub const DEFAULT_PERMISSIONS: &str = "contents:write,pull_requests:write,metadata:read";

/// mintd: mints short-lived GitHub App installation tokens scoped to one repository (or gets them from a
/// broker) and serves them to git (through git-credential-mint) on a unix socket.
#[derive(Debug, Parser)]
#[command(name = "mintd", version, max_term_width = 100)]
#[command(after_help = "\
Every flag can also come from the environment variable named beside it. For GitHub Enterprise Server use
--github-url https://HOST and --api-url https://HOST/api/v3.

Git inside the sandbox needs only:
    [credential \"https://github.com\"]
        helper = mint
        useHttpPath = true

Broker mode: give --broker URL and --sandbox-credential-file FILE instead of --app-id, --private-key,
--installation-id and --repo. mintd then holds no App key: it asks the broker for each token
(POST URL/api/v1/token, the file's credential as a bearer token), serves only a token for exactly one
repository with at most contents:write, pull_requests:write and metadata:read (anything wider is revoked),
and follows the repository the broker's latest token is for. The URL must be https:// (http:// only to a
loopback address); the credential file must be private like the key (or --allow-readable-credential).

Local API on the socket: POST /v1/credential/{get,store,erase}, GET /v1/status, GET /healthz.

`mintd ready [--socket PATH]` exits 0 once a mintd accepts connections on the socket, else 1: a startup
probe for images with no shell.")]
pub struct Args {
    /// The GitHub App's numeric App ID or its Client ID (required unless --broker).
    #[arg(long, env = env::APP_ID, value_name = "ID")]
    pub app_id: Option<String>,
    /// PEM file with the App's private key (as downloaded from GitHub: PKCS#1, or PKCS#8), or the key in an
    /// HSM as a PKCS#11 URI, e.g. pkcs11:token=mint;object=github-app?module-path=/usr/lib/softhsm/libsofthsm2.so
    /// (required unless --broker). Reloaded on SIGHUP and when the file changes.
    #[arg(long, env = env::PRIVATE_KEY_FILE, value_name = "PEM_FILE|PKCS11_URI")]
    pub private_key: Option<PathBuf>,
    /// File holding the PKCS#11 token's user PIN (mode 0600), with a pkcs11: URI in --private-key.
    #[arg(long, env = env::PKCS11_PIN_FILE, value_name = "FILE")]
    pub pkcs11_pin_file: Option<PathBuf>,
    /// The installation of the App on the account that owns the repository (required unless --broker).
    #[arg(long, env = env::INSTALLATION_ID, value_name = "ID")]
    pub installation_id: Option<u64>,
    /// The one repository tokens are scoped to (required unless --broker).
    #[arg(long, env = env::REPO, value_name = "OWNER/NAME")]
    pub repo: Option<String>,
    /// Broker mode: get tokens from this control plane instead of minting them with an App key.
    #[arg(long, env = env::BROKER, value_name = "URL")]
    pub broker: Option<String>,
    /// Broker mode: file holding this sandbox's credential for the broker (private to mintd's user).
    #[arg(long, env = env::SANDBOX_CREDENTIAL_FILE, value_name = "FILE")]
    pub sandbox_credential_file: Option<PathBuf>,
    /// Accept a sandbox credential file that group or others can read (e.g. a Secret mounted 0644).
    #[arg(long, env = env::ALLOW_READABLE_CREDENTIAL)]
    pub allow_readable_credential: bool,
    /// Unix socket to serve on; its directory is created 0700 if missing.
    #[arg(long, env = env::SOCKET, value_name = "PATH", default_value = mint_api::DEFAULT_SOCKET)]
    pub socket: PathBuf,
    /// Where git talks to GitHub: only credential requests for this scheme and host are answered.
    #[arg(long, env = env::GITHUB_URL, value_name = "URL", default_value = "https://github.com")]
    pub github_url: String,
    /// GitHub's REST API root [default: api.github.com for github.com, else the GitHub URL + /api/v3].
    #[arg(long, env = env::API_URL, value_name = "URL")]
    pub api_url: Option<String>,
    // The default is applied in `load`, so that a value given with --broker is noticed and refused.
    #[arg(
        long,
        env = env::PERMISSIONS,
        value_name = "LIST",
        help = "Permissions each token asks for, as NAME:LEVEL pairs [default: contents:write,pull_requests:write,metadata:read]. Not with --broker, whose tokens are held to that default"
    )]
    pub permissions: Option<String>,
    /// Accept a private key file that group or others can read (e.g. a Kubernetes Secret mounted 0644).
    #[arg(long, env = "MINT_ALLOW_READABLE_KEY")]
    pub allow_readable_key: bool,
    /// Uid allowed to use the socket (repeatable) [default: mintd's own uid]. Checked with `SO_PEERCRED` on
    /// every connection; give the sandbox's uid when mintd runs as a sidecar under another uid.
    #[arg(
        long = "allow-uid",
        env = "MINT_ALLOW_UIDS",
        value_name = "UID",
        value_delimiter = ','
    )]
    pub allow_uids: Vec<u32>,
    /// Mode of the socket file, in octal; e.g. 0660 with --socket-group to share it through a volume.
    #[arg(long, env = "MINT_SOCKET_MODE", value_name = "MODE", default_value = "0600")]
    pub socket_mode: String,
    /// Group (name or gid) to own the socket file.
    #[arg(long, env = "MINT_SOCKET_GROUP", value_name = "GROUP")]
    pub socket_group: Option<String>,
    /// Mediated mode: serve git smart HTTP for the repository on this address (e.g. 127.0.0.1:8417) and
    /// forward it to GitHub with the token, which then never enters the sandbox.
    #[arg(long, env = "MINT_GIT_PROXY", value_name = "ADDR:PORT")]
    pub git_proxy: Option<std::net::SocketAddr>,
    /// Branches the agent may push through the proxy, and open pull requests from.
    #[arg(long, env = "MINT_BRANCH_PREFIX", value_name = "PREFIX", default_value = "adagent/")]
    pub branch_prefix: String,
    /// Pull requests `POST /v1/pulls` may open at once before its bucket holds them to one per 30 s: the
    /// installation's GitHub budget is shared by every sandbox of the customer.
    #[arg(long, env = "MINT_PULL_REQUEST_BURST", value_name = "N", default_value_t = crate::pulls::BURST,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub pull_request_burst: u32,
    /// Log format on stderr (levels are filtered by the `RUST_LOG` variable; default info).
    #[arg(long, env = "MINT_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

pub use mint_service::daemon::LogFormat;

/// A validated configuration. Holds the parsed key or the sandbox's credential; nothing here prints a secret.
#[derive(Debug)]
pub struct Config {
    pub mode: Mode,
    /// The GitHub git talks to; the repository on it is [`KeyMode::target`] or the broker's answer.
    pub server: Server,
    pub github_url: String,
    pub api_url: String,
    pub socket: PathBuf,
    pub socket_mode: u32,
    pub socket_group: Option<u32>,
    /// Uids whose connections are served.
    pub allowed_uids: Vec<u32>,
    pub git_proxy: Option<std::net::SocketAddr>,
    pub branch_prefix: String,
    /// See [`Args::pull_request_burst`].
    pub pull_request_burst: u32,
}

/// Where tokens come from.
#[derive(Debug)]
pub enum Mode {
    /// mintd holds the App key and mints for one configured repository.
    Key(KeyMode),
    /// A broker mints; mintd holds only this sandbox's credential for it.
    Broker(BrokerMode),
}

#[derive(Debug)]
pub struct KeyMode {
    pub app_id: AppId,
    /// The key as loaded at start, and where it came from (reloaded from there while mintd runs).
    pub key: LoadedKey,
    pub key_source: KeySource,
    pub installation_id: u64,
    pub target: Target,
    pub permissions: Permissions,
}

#[derive(Debug)]
pub struct BrokerMode {
    /// `https://…` (or `http://` to loopback), without a trailing slash.
    pub url: String,
    pub credential: SandboxCredential,
}

pub use mint_service::config::ConfigError;
use mint_service::config::invalid;

impl Args {
    pub fn load(self) -> Result<Config, ConfigError> {
        let github_url = self.github_url.trim_end_matches('/').to_owned();
        let server = Server::new(&github_url).map_err(|e| invalid("github-url", env::GITHUB_URL, e))?;
        let api_url = self.api_url.as_deref().map_or_else(
            || default_api_url(&server, &github_url),
            |u| u.trim_end_matches('/').to_owned(),
        );
        let mode = match self.broker.as_deref() {
            Some(url) => self.broker_mode(url)?,
            None => self.key_mode(&server)?,
        };
        if self.socket.as_os_str().is_empty() || self.socket.file_name().is_none() {
            return Err(invalid(
                "socket",
                env::SOCKET,
                "must be a file path, e.g. /run/mint/mint.sock",
            ));
        }
        let socket_mode = u32::from_str_radix(self.socket_mode.trim_start_matches("0o"), 8)
            .ok()
            .filter(|m| *m & !0o777 == 0 && *m & 0o600 == 0o600)
            .ok_or_else(|| {
                invalid(
                    "socket-mode",
                    "MINT_SOCKET_MODE",
                    format!(
                        "{:?} is not an octal file mode that lets mintd's own user read and write (e.g. 0600, 0660)",
                        self.socket_mode
                    ),
                )
            })?;
        let socket_group = self.socket_group.as_deref().map(resolve_group).transpose()?;
        let allowed_uids = if self.allow_uids.is_empty() {
            vec![nix::unistd::getuid().as_raw()]
        } else {
            self.allow_uids
        };
        let prefix_ok = !self.branch_prefix.is_empty()
            && self.branch_prefix.ends_with('/')
            && !self.branch_prefix.starts_with('/')
            && !self.branch_prefix.contains("..")
            && self
                .branch_prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"/-_.".contains(&b));
        if !prefix_ok {
            return Err(invalid(
                "branch-prefix",
                "MINT_BRANCH_PREFIX",
                format!(
                    "{:?} must be a branch path ending in '/', e.g. adagent/",
                    self.branch_prefix
                ),
            ));
        }
        Ok(Config {
            mode,
            server,
            github_url,
            api_url,
            socket: self.socket,
            socket_mode,
            socket_group,
            allowed_uids,
            git_proxy: self.git_proxy,
            branch_prefix: self.branch_prefix,
            pull_request_burst: self.pull_request_burst,
        })
    }
}

impl Args {
    /// `--app-id`, `--private-key`, `--installation-id` and `--repo`, all required.
    fn key_mode(&self, server: &Server) -> Result<Mode, ConfigError> {
        if self.sandbox_credential_file.is_some() {
            return Err(invalid(
                "sandbox-credential-file",
                env::SANDBOX_CREDENTIAL_FILE,
                "is for broker mode: give --broker URL too, or drop it to mint with the App key",
            ));
        }
        let required = |flag: &'static str, env: &'static str| {
            invalid(
                flag,
                env,
                "required unless --broker is given: minting with the App key needs --app-id, --private-key, --installation-id and --repo",
            )
        };
        let app_id: AppId = self
            .app_id
            .as_deref()
            .ok_or_else(|| required("app-id", env::APP_ID))?
            .parse()
            .map_err(|e| invalid("app-id", env::APP_ID, e))?;
        let private_key = self
            .private_key
            .as_deref()
            .ok_or_else(|| required("private-key", env::PRIVATE_KEY_FILE))?;
        let installation_id = self
            .installation_id
            .ok_or_else(|| required("installation-id", env::INSTALLATION_ID))?;
        let repo: RepoName = self
            .repo
            .as_deref()
            .ok_or_else(|| required("repo", env::REPO))?
            .parse()
            .map_err(|e| invalid("repo", env::REPO, e))?;
        let permissions = Permissions::parse_list(self.permissions.as_deref().unwrap_or(DEFAULT_PERMISSIONS))
            .map_err(|e| invalid("permissions", env::PERMISSIONS, e))?;
        let (key_source, key) = load_key(private_key, self.pkcs11_pin_file.as_deref(), self.allow_readable_key)?;
        Ok(Mode::Key(KeyMode {
            app_id,
            key,
            key_source,
            installation_id,
            target: server.target(repo),
            permissions,
        }))
    }

    /// `--broker URL` and `--sandbox-credential-file FILE`, and none of the App key's settings.
    fn broker_mode(&self, url: &str) -> Result<Mode, ConfigError> {
        let conflicting: Vec<&str> = [
            ("--app-id", self.app_id.is_some()),
            ("--private-key", self.private_key.is_some()),
            ("--pkcs11-pin-file", self.pkcs11_pin_file.is_some()),
            ("--installation-id", self.installation_id.is_some()),
            ("--repo", self.repo.is_some()),
            ("--permissions", self.permissions.is_some()),
        ]
        .into_iter()
        .filter_map(|(flag, given)| given.then_some(flag))
        .collect();
        if !conflicting.is_empty() {
            return Err(invalid(
                "broker",
                env::BROKER,
                format!(
                    "cannot be combined with {} (flags or their MINT_* variables): in broker mode the broker holds the App key and names the repository; drop them, or drop --broker to mint with the key here",
                    conflicting.join(", ")
                ),
            ));
        }
        let url = broker::check_url(url).map_err(|e| invalid("broker", env::BROKER, e))?;
        let path = self.sandbox_credential_file.as_deref().ok_or_else(|| {
            invalid(
                "sandbox-credential-file",
                env::SANDBOX_CREDENTIAL_FILE,
                "required with --broker: the file holding this sandbox's credential for the broker",
            )
        })?;
        let credential = load_credential(path, self.allow_readable_credential)?;
        Ok(Mode::Broker(BrokerMode { url, credential }))
    }
}

fn resolve_group(group: &str) -> Result<u32, ConfigError> {
    if let Ok(gid) = group.parse::<u32>() {
        return Ok(gid);
    }
    match nix::unistd::Group::from_name(group) {
        Ok(Some(g)) => Ok(g.gid.as_raw()),
        Ok(None) => Err(invalid(
            "socket-group",
            "MINT_SOCKET_GROUP",
            format!("no group named {group:?} on this system"),
        )),
        Err(e) => Err(invalid(
            "socket-group",
            "MINT_SOCKET_GROUP",
            format!("looking up {group:?}: {e}"),
        )),
    }
}

fn default_api_url(server: &Server, github_url: &str) -> String {
    if server.host() == "github.com" {
        "https://api.github.com".to_owned()
    } else {
        format!("{github_url}/api/v3")
    }
}

/// `--private-key` and `--pkcs11-pin-file`: the key loaded and checked with a probe signature.
fn load_key(
    private_key: &std::path::Path,
    pin_file: Option<&std::path::Path>,
    allow_readable: bool,
) -> Result<(KeySource, LoadedKey), ConfigError> {
    let bad = |e: KeySourceError| match e {
        KeySourceError::NoPinFile
        | KeySourceError::PinFileWithoutUri
        | KeySourceError::Pkcs11(mint_github::Pkcs11Error::PinFile { .. }) => {
            invalid("pkcs11-pin-file", env::PKCS11_PIN_FILE, e)
        }
        e => invalid("private-key", env::PRIVATE_KEY_FILE, e),
    };
    let source = KeySource::new(private_key, pin_file, allow_readable).map_err(bad)?;
    let key = source.load().map_err(bad)?;
    Ok((source, key))
}

fn load_credential(path: &std::path::Path, allow_readable: bool) -> Result<SandboxCredential, ConfigError> {
    let bad = |reason: String| invalid("sandbox-credential-file", env::SANDBOX_CREDENTIAL_FILE, reason);
    let readable = Readable::Unless {
        flag: "--allow-readable-credential",
        given: allow_readable,
    };
    check_private(path, readable).map_err(|e| bad(e.to_string()))?;
    SandboxCredential::read(path).map_err(bad)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn args(key: &std::path::Path) -> Args {
        Args::parse_from([
            "mintd",
            "--app-id",
            "1",
            "--private-key",
            key.to_str().expect("utf8"),
            "--installation-id",
            "42",
            "--repo",
            "octo-org/hello-world",
        ])
    }

    #[test]
    fn unreadable_or_world_readable_keys_are_refused_with_the_way_out() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("missing.pem");
        let err = args(&missing).load().expect_err("refused");
        assert!(
            err.to_string()
                .starts_with("--private-key (or MINT_PRIVATE_KEY_FILE): cannot read"),
            "{err}"
        );

        let open = dir.path().join("open.pem");
        std::fs::write(&open, "not a key").expect("write");
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let err = args(&open).load().expect_err("refused");
        assert!(
            err.to_string().contains("mode 0644") && err.to_string().contains("chmod 600"),
            "{err}"
        );

        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let err = args(&open).load().expect_err("refused");
        assert!(err.to_string().contains("not an RSA private key"), "{err}");
        assert!(
            !err.to_string().contains("not a key"),
            "the key file's content is never echoed: {err}"
        );
    }

    /// A private credential file holding `content`.
    fn credential_file(dir: &std::path::Path, content: &str, mode: u32) -> PathBuf {
        let path = dir.join("credential");
        std::fs::write(&path, content).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
        path
    }

    fn broker_args(url: &str, credential: &std::path::Path, extra: &[&str]) -> Args {
        let mut argv = vec![
            "mintd",
            "--broker",
            url,
            "--sandbox-credential-file",
            credential.to_str().expect("utf8"),
        ];
        argv.extend_from_slice(extra);
        Args::parse_from(argv)
    }

    const SECRET: &str = "sbx_not-to-be-printed.0123456789";

    #[test]
    fn broker_mode_needs_no_key_and_holds_the_credential_redacted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = credential_file(dir.path(), &format!("{SECRET}\n"), 0o600);
        let config = broker_args("https://mint.example.com/", &file, &[])
            .load()
            .expect("valid");
        let Mode::Broker(broker) = &config.mode else {
            panic!("broker mode")
        };
        assert_eq!(broker.url, "https://mint.example.com");
        assert_eq!(config.api_url, "https://api.github.com");
        assert_eq!(config.server.host(), "github.com");
        let debug = format!("{config:?}");
        assert!(debug.contains("SandboxCredential(<redacted>)"), "{debug}");
        assert!(!debug.contains(SECRET), "{debug}");
        for loopback in ["http://127.0.0.1:8080", "http://[::1]:8080", "http://localhost:8080"] {
            assert!(broker_args(loopback, &file, &[]).load().is_ok(), "{loopback}");
        }
    }

    #[test]
    fn broker_mode_refuses_the_app_keys_settings_naming_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = credential_file(dir.path(), SECRET, 0o600);
        let err = broker_args(
            "https://mint.example.com",
            &file,
            &["--app-id", "1", "--repo", "o/r", "--permissions", "contents:read"],
        )
        .load()
        .expect_err("refused");
        assert!(
            err.to_string()
                .starts_with("--broker (or MINT_BROKER): cannot be combined with --app-id, --repo, --permissions"),
            "{err}"
        );
        for flag in [&["--private-key", "/k.pem"][..], &["--installation-id", "42"]] {
            let err = broker_args("https://mint.example.com", &file, flag)
                .load()
                .expect_err("refused");
            assert!(err.to_string().contains(flag[0]), "{err}");
        }
    }

    #[test]
    fn a_broker_over_plain_http_to_another_host_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = credential_file(dir.path(), SECRET, 0o600);
        for url in ["http://mint.example.com", "http://10.0.0.7:8080"] {
            let err = broker_args(url, &file, &[]).load().expect_err("refused");
            let text = err.to_string();
            assert!(text.starts_with("--broker (or MINT_BROKER): "), "{text}");
            assert!(text.contains("in clear") && text.contains("use https://"), "{text}");
        }
    }

    #[test]
    fn a_credential_file_others_can_read_is_refused_and_never_echoed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = credential_file(dir.path(), SECRET, 0o644);
        let err = broker_args("https://mint.example.com", &file, &[])
            .load()
            .expect_err("refused");
        let text = err.to_string();
        assert!(
            text.starts_with("--sandbox-credential-file (or MINT_SANDBOX_CREDENTIAL_FILE): ")
                && text.contains("mode 0644")
                && text.contains("--allow-readable-credential"),
            "{text}"
        );
        assert!(
            broker_args("https://mint.example.com", &file, &["--allow-readable-credential"])
                .load()
                .is_ok(),
            "the explicit escape hatch"
        );

        let with_space = credential_file(dir.path(), &format!("{SECRET} {SECRET}"), 0o600);
        let err = broker_args("https://mint.example.com", &with_space, &[])
            .load()
            .expect_err("refused");
        assert!(err.to_string().contains("cannot travel in an HTTP header"), "{err}");
        for text in [err.to_string(), format!("{err:?}")] {
            assert!(!text.contains(SECRET), "the credential is never echoed: {text}");
        }
        let empty = credential_file(dir.path(), " \n", 0o600);
        let err = broker_args("https://mint.example.com", &empty, &[])
            .load()
            .expect_err("refused");
        assert!(err.to_string().ends_with("is empty"), "{err}");
        let missing = dir.path().join("missing");
        let err = broker_args("https://mint.example.com", &missing, &[])
            .load()
            .expect_err("refused");
        assert!(err.to_string().contains("cannot read"), "{err}");
    }

    #[test]
    fn each_mode_asks_for_its_own_settings() {
        let err = Args::parse_from(["mintd"]).load().expect_err("nothing given");
        assert!(
            err.to_string()
                .starts_with("--app-id (or MINT_APP_ID): required unless --broker is given"),
            "{err}"
        );
        let err = Args::parse_from(["mintd", "--app-id", "1", "--private-key", "/k.pem", "--repo", "o/r"])
            .load()
            .expect_err("no installation");
        assert!(
            err.to_string()
                .starts_with("--installation-id (or MINT_INSTALLATION_ID): required"),
            "{err}"
        );
        let err = Args::parse_from(["mintd", "--broker", "https://mint.example.com"])
            .load()
            .expect_err("no credential");
        assert!(
            err.to_string()
                .starts_with("--sandbox-credential-file (or MINT_SANDBOX_CREDENTIAL_FILE): required with --broker"),
            "{err}"
        );
        let err = Args::parse_from(["mintd", "--sandbox-credential-file", "/c"])
            .load()
            .expect_err("no broker");
        assert!(err.to_string().contains("is for broker mode"), "{err}");
    }

    #[test]
    fn api_url_defaults_follow_the_github_url() {
        let dotcom = Server::new("https://github.com").expect("valid");
        assert_eq!(default_api_url(&dotcom, "https://github.com"), "https://api.github.com");
        let ghes = Server::new("https://ghe.example.com").expect("valid");
        assert_eq!(
            default_api_url(&ghes, "https://ghe.example.com"),
            "https://ghe.example.com/api/v3"
        );
    }
}
