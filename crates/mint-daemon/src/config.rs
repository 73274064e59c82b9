//! mintd's settings: flags, else environment, else defaults; loaded and validated once, before anything binds.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use clap::Parser;
use mint_api::env;
use mint_credential::{RepoName, Target};
use mint_github::{AppId, AppKey, Permissions};

/// The least a sandbox needs to push a branch and open a pull request.
pub const DEFAULT_PERMISSIONS: &str = "contents:write,pull_requests:write,metadata:read";

/// mintd: mints short-lived GitHub App installation tokens scoped to one repository and serves them to
/// git (through git-credential-mint) on a unix socket.
#[derive(Debug, Parser)]
#[command(name = "mintd", version, max_term_width = 100)]
#[command(after_help = "\
Every flag can also come from the environment variable named beside it. For GitHub Enterprise Server use
--github-url https://HOST and --api-url https://HOST/api/v3.

Git inside the sandbox needs only:
    [credential \"https://github.com\"]
        helper = mint
        useHttpPath = true

Local API on the socket: POST /v1/credential/{get,store,erase}, GET /v1/status, GET /healthz.

`mintd ready [--socket PATH]` exits 0 once a mintd accepts connections on the socket, else 1: a startup
probe for images with no shell.")]
pub struct Args {
    /// The GitHub App's numeric App ID or its Client ID.
    #[arg(long, env = env::APP_ID, value_name = "ID")]
    pub app_id: String,
    /// PEM file with the App's private key (as downloaded from GitHub: PKCS#1, or PKCS#8).
    #[arg(long, env = env::PRIVATE_KEY_FILE, value_name = "PEM_FILE")]
    pub private_key: PathBuf,
    /// The installation of the App on the account that owns the repository.
    #[arg(long, env = env::INSTALLATION_ID, value_name = "ID")]
    pub installation_id: u64,
    /// The one repository tokens are scoped to.
    #[arg(long, env = env::REPO, value_name = "OWNER/NAME")]
    pub repo: String,
    /// Unix socket to serve on; its directory is created 0700 if missing.
    #[arg(long, env = env::SOCKET, value_name = "PATH", default_value = mint_api::DEFAULT_SOCKET)]
    pub socket: PathBuf,
    /// Where git talks to GitHub: only credential requests for this scheme and host are answered.
    #[arg(long, env = env::GITHUB_URL, value_name = "URL", default_value = "https://github.com")]
    pub github_url: String,
    /// GitHub's REST API root [default: api.github.com for github.com, else the GitHub URL + /api/v3].
    #[arg(long, env = env::API_URL, value_name = "URL")]
    pub api_url: Option<String>,
    /// Permissions each token asks for, as NAME:LEVEL pairs.
    #[arg(long, env = env::PERMISSIONS, value_name = "LIST", default_value = DEFAULT_PERMISSIONS)]
    pub permissions: String,
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
    /// Log format on stderr (levels are filtered by the `RUST_LOG` variable; default info).
    #[arg(long, env = "MINT_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// How mintd writes its logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// A validated configuration. Holds the parsed key; nothing here prints a secret.
#[derive(Debug)]
pub struct Config {
    pub app_id: AppId,
    pub key: AppKey,
    pub installation_id: u64,
    pub target: Target,
    pub github_url: String,
    pub api_url: String,
    pub permissions: Permissions,
    pub socket: PathBuf,
    pub socket_mode: u32,
    pub socket_group: Option<u32>,
    /// Uids whose connections are served.
    pub allowed_uids: Vec<u32>,
    pub git_proxy: Option<std::net::SocketAddr>,
    pub branch_prefix: String,
}

/// A setting that cannot work, named with its flag and environment variable.
#[derive(Debug, thiserror::Error)]
#[error("--{flag} (or {env}): {reason}")]
pub struct ConfigError {
    pub flag: &'static str,
    pub env: &'static str,
    pub reason: String,
}

fn invalid(flag: &'static str, env: &'static str, reason: impl std::fmt::Display) -> ConfigError {
    ConfigError {
        flag,
        env,
        reason: reason.to_string(),
    }
}

impl Args {
    pub fn load(self) -> Result<Config, ConfigError> {
        let app_id: AppId = self.app_id.parse().map_err(|e| invalid("app-id", env::APP_ID, e))?;
        let repo: RepoName = self.repo.parse().map_err(|e| invalid("repo", env::REPO, e))?;
        let github_url = self.github_url.trim_end_matches('/').to_owned();
        let target = Target::new(&github_url, repo).map_err(|e| invalid("github-url", env::GITHUB_URL, e))?;
        let api_url = self.api_url.map_or_else(
            || default_api_url(&target, &github_url),
            |u| u.trim_end_matches('/').to_owned(),
        );
        let permissions =
            Permissions::parse_list(&self.permissions).map_err(|e| invalid("permissions", env::PERMISSIONS, e))?;
        let key = load_key(&self.private_key, self.allow_readable_key)?;
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
            app_id,
            key,
            installation_id: self.installation_id,
            target,
            github_url,
            api_url,
            permissions,
            socket: self.socket,
            socket_mode,
            socket_group,
            allowed_uids,
            git_proxy: self.git_proxy,
            branch_prefix: self.branch_prefix,
        })
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

fn default_api_url(target: &Target, github_url: &str) -> String {
    if target.host() == "github.com" {
        "https://api.github.com".to_owned()
    } else {
        format!("{github_url}/api/v3")
    }
}

fn load_key(path: &std::path::Path, allow_readable: bool) -> Result<AppKey, ConfigError> {
    let bad = |reason: String| invalid("private-key", env::PRIVATE_KEY_FILE, reason);
    let meta = std::fs::metadata(path).map_err(|e| bad(format!("cannot read {}: {e}", path.display())))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 && !allow_readable {
        return Err(bad(format!(
            "{} is readable by group or others (mode {mode:04o}): run `chmod 600` on it, or pass --allow-readable-key if a mounted secret cannot be made private",
            path.display()
        )));
    }
    // The PEM is wiped once parsed; the parsed key lives in AppKey.
    let pem =
        zeroize::Zeroizing::new(std::fs::read(path).map_err(|e| bad(format!("cannot read {}: {e}", path.display())))?);
    AppKey::from_pem(&pem).map_err(|e| bad(format!("{}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
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

    #[test]
    fn api_url_defaults_follow_the_github_url() {
        let repo: RepoName = "o/r".parse().expect("valid");
        let dotcom = Target::new("https://github.com", repo.clone()).expect("valid");
        assert_eq!(default_api_url(&dotcom, "https://github.com"), "https://api.github.com");
        let ghes = Target::new("https://ghe.example.com", repo).expect("valid");
        assert_eq!(
            default_api_url(&ghes, "https://ghe.example.com"),
            "https://ghe.example.com/api/v3"
        );
    }
}
