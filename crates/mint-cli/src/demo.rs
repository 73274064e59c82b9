//! `mint demo`: the whole flow on one machine, with no GitHub account.
//!
//! fakehub (a stand-in GitHub with a freshly generated App key) and mintd run in this process; the real
//! `git` runs as a child, finding `git-credential-mint` on its PATH as a link to this very binary.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use fakehub::{AppKeyPair, Config as HubConfig, FakeHub, InstallationConfig};

const OWNER: &str = "octo-org";
const REPO: &str = "hello-world";
const OTHER_REPO: &str = "other-repo";
const APP_ID: u64 = 1;
const INSTALLATION_ID: u64 = 42;
const BRANCH: &str = "adagent/demo";
const AGENT_BRANCH: &str = "adagent/demo-gix";

pub(crate) fn run() -> anyhow::Result<ExitCode> {
    let (runtime, work) = prepare()?;
    let outcome = runtime.block_on(async { Demo::start(work.path()).await })?;
    let result = outcome.flow();
    let finish = runtime.block_on(outcome.stop());
    let pull_request = result?;
    finish?;
    println!("\nThe pull request fakehub recorded, ready for a human to review:\n{pull_request}");
    Ok(ExitCode::SUCCESS)
}

/// Quiet logs, the async runtime the servers run on, and the work directory (removed when dropped).
pub(crate) fn prepare() -> anyhow::Result<(tokio::runtime::Runtime, tempfile::TempDir)> {
    init_quiet_tracing();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let work = tempfile::Builder::new()
        .prefix("mint-demo-")
        .tempdir()
        .context("creating a work directory")?;
    Ok((runtime, work))
}

/// Keep the servers' logs out of the demo's story unless asked for with `RUST_LOG`.
fn init_quiet_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env(mint_api::env::LOG)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

struct Demo {
    hub: fakehub::RunningFakeHub,
    mintd: Mintd,
    sandbox: Sandbox,
    clone: PathBuf,
}

impl Demo {
    async fn start(work: &Path) -> anyhow::Result<Self> {
        println!("mint demo: a sandbox's git, authenticated by mintd, against fakehub (a stand-in GitHub)\n");

        let key = AppKeyPair::generate().context("generating the App's RSA key")?;
        // The App asks for what mint needs and nothing more; pull requests link to fakehub's own pages.
        let hub_config = HubConfig::new(APP_ID, key.public_key_pem(), work.join("github"))
            .with_installation(InstallationConfig::new(
                INSTALLATION_ID,
                OWNER,
                &[REPO, OTHER_REPO],
                fakehub::LEAST_PERMISSIONS,
            ))
            .with_app_permissions(fakehub::LEAST_PERMISSIONS)
            .with_html_urls_on_fakehub(true);
        let hub = FakeHub::start(hub_config).await.context("starting fakehub")?;
        hub.create_repo(OWNER, REPO)?;
        hub.create_repo(OWNER, OTHER_REPO)?;
        step(
            "fakehub",
            &format!(
                "{} — App {APP_ID}, installation {INSTALLATION_ID} on {OWNER} with {REPO} and {OTHER_REPO}, \
                 granted contents, pull_requests and metadata only",
                hub.url()
            ),
        );

        let private = work.join("mintd");
        std::fs::create_dir_all(&private)?;
        let key_file = private.join("app-key.pem");
        write_private(&key_file, key.private_key_pem().as_bytes())?;
        let socket = private.join("run/mint.sock");
        let config = mint_daemon::Args {
            app_id: Some(APP_ID.to_string()),
            private_key: Some(key_file),
            pkcs11_pin_file: None,
            installation_id: Some(INSTALLATION_ID),
            repo: Some(format!("{OWNER}/{REPO}")),
            broker: None,
            sandbox_credential_file: None,
            allow_readable_credential: false,
            socket: socket.clone(),
            github_url: hub.url(),
            api_url: Some(hub.url()),
            permissions: Some(mint_daemon::config::DEFAULT_PERMISSIONS.into()),
            allow_readable_key: false,
            allow_uids: Vec::new(),
            socket_mode: "0600".into(),
            socket_group: None,
            git_proxy: None,
            branch_prefix: "adagent/".into(),
            pull_request_burst: mint_daemon::pulls::BURST,
            log_format: mint_daemon::config::LogFormat::Text,
        }
        .load()
        .context("configuring mintd")?;
        let mintd = Mintd::start(config).await?;
        step(
            "mintd",
            &format!(
                "serving {OWNER}/{REPO} on {} (App key: RSA-2048, readable only by mintd)",
                socket.display()
            ),
        );

        let sandbox = Sandbox::prepare(work, &hub.url(), socket)?;
        step(
            "git config",
            &format!(
                "[credential \"{}\"] helper = mint, useHttpPath = true — nothing else",
                hub.url()
            ),
        );
        let clone = work.join("hello-world");
        Ok(Self {
            hub,
            mintd,
            sandbox,
            clone,
        })
    }

    /// The sandbox's side: plain git commands, then the agent's own `mint clone` / `mint publish`.
    /// Returns the pull request's URL.
    fn flow(&self) -> anyhow::Result<String> {
        let url = format!("{}/{OWNER}/{REPO}.git", self.hub.url());
        self.sandbox.git(
            None,
            &[
                &"clone".into(),
                &url.clone().into(),
                &self.clone.clone().into_os_string(),
            ],
        )?;
        step(
            "git clone",
            &format!("{url} (the helper asked mintd; mintd minted a token)"),
        );

        std::fs::write(self.clone.join("CHANGE.md"), "A change made by the demo agent.\n")?;
        self.sandbox
            .git(Some(&self.clone), &[&"add".into(), &"CHANGE.md".into()])?;
        self.sandbox.git(
            Some(&self.clone),
            &[&"commit".into(), &"-q".into(), &"-m".into(), &"Add CHANGE.md".into()],
        )?;
        step("git commit", "Add CHANGE.md");

        self.sandbox.git(
            Some(&self.clone),
            &[
                &"push".into(),
                &"-q".into(),
                &"origin".into(),
                &format!("HEAD:refs/heads/{BRANCH}").into(),
            ],
        )?;
        let pushed = Command::new("git")
            .args(["--git-dir"])
            .arg(self.hub.repo_path(OWNER, REPO))
            .args(["rev-parse", "--short", &format!("refs/heads/{BRANCH}")])
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .output()?;
        if !pushed.status.success() {
            bail!("fakehub has no {BRANCH} after the push");
        }
        step(
            "git push",
            &format!(
                "{BRANCH} is at {} on fakehub (the same token, from mintd's cache)",
                String::from_utf8_lossy(&pushed.stdout).trim()
            ),
        );

        let other = format!("{}/{OWNER}/{OTHER_REPO}.git", self.hub.url());
        let refused = self.sandbox.git_output(None, &[&"ls-remote".into(), &other.into()])?;
        if refused.status.success() {
            bail!("git could read {OWNER}/{OTHER_REPO}: the token is not scoped to one repository");
        }
        step(
            "git ls-remote",
            &format!("{OWNER}/{OTHER_REPO} refused: mintd serves no token for another repository"),
        );

        let agent = self.sandbox.agent_clone();
        let pull_request = self.sandbox.agent_flow(&self.hub, &agent)?;

        println!("\nWhat this showed:");
        let mints = self.hub.mints();
        let tokens = self.hub.tokens();
        if mints.len() != 1 || tokens.len() != 1 {
            bail!(
                "expected exactly one mint for the whole flow, fakehub saw {}",
                mints.len()
            );
        }
        proof("one token minted for every clone, push, pull request and ls-remote (fakehub saw 1 mint)");
        let token = &tokens[0];
        let mut repos = token.repositories.clone();
        repos.sort();
        let perms: Vec<String> = token.permissions.iter().map(|(k, v)| format!("{k}:{v}")).collect();
        if repos != [REPO.to_owned()] || token.permissions.len() != 3 {
            bail!("the token is wider than asked: {repos:?} {perms:?}");
        }
        proof(&format!(
            "scoped to {OWNER}/{REPO} alone with {} — not {OWNER}/{OTHER_REPO}, which the installation also reaches",
            perms.join(", ")
        ));
        let (files, found) = search_for_secret(
            &[&self.sandbox.home, &self.clone, &agent, &self.sandbox.bin],
            &token.token,
        )?;
        if !found.is_empty() {
            bail!("the token was written to {found:?}");
        }
        proof(&format!(
            "the token is on no disk: searched {files} files under HOME and both clones, including .git"
        ));
        Ok(pull_request)
    }

    async fn stop(self) -> anyhow::Result<()> {
        self.mintd.stop(&self.hub).await?;
        self.hub.shutdown().await;
        Ok(())
    }
}

/// mintd running on this process's runtime until [`Mintd::stop`].
pub(crate) struct Mintd {
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    stop: tokio::sync::oneshot::Sender<()>,
    socket: PathBuf,
}

impl Mintd {
    /// Start mintd and return once its socket is there (mintd's readiness signal).
    pub(crate) async fn start(config: mint_daemon::Config) -> anyhow::Result<Self> {
        let socket = config.socket.clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(mint_daemon::run(config, async {
            let _ = stopped.await;
        }));
        wait_for_socket(&socket).await?;
        Ok(Self { task, stop, socket })
    }

    /// Stop mintd and check, at `hub`, that it revoked every token and removed its socket.
    pub(crate) async fn stop(self, hub: &FakeHub) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        self.task.await.context("mintd's task")??;
        if self.socket.exists() {
            bail!("mintd left its socket behind");
        }
        let revoked = hub.tokens().iter().all(|t| t.revoked);
        if !revoked {
            bail!("mintd stopped without revoking its token");
        }
        proof("mintd stopped: the token was revoked at fakehub and the socket removed");
        Ok(())
    }
}

/// The sandbox's side: a HOME whose only git config sends credentials to `git-credential-mint` (a link to
/// this binary), and mintd's socket. Every child gets a clean environment.
pub(crate) struct Sandbox {
    home: PathBuf,
    bin: PathBuf,
    socket: PathBuf,
}

impl Sandbox {
    pub(crate) fn prepare(work: &Path, hub_url: &str, socket: PathBuf) -> anyhow::Result<Self> {
        let home = work.join("home");
        let bin = work.join("bin");
        std::fs::create_dir_all(&home)?;
        std::fs::create_dir_all(&bin)?;
        let exe = std::env::current_exe().context("finding this program")?;
        std::os::unix::fs::symlink(&exe, bin.join("git-credential-mint")).context("linking the helper")?;
        std::fs::write(
            home.join(".gitconfig"),
            format!(
                "[user]\n\tname = Demo Agent\n\temail = agent@example.invalid\n\
                 [credential \"{hub_url}\"]\n\thelper = mint\n\tuseHttpPath = true\n"
            ),
        )?;
        Ok(Self { home, bin, socket })
    }

    /// Where the agent's `mint clone` goes: next to HOME.
    pub(crate) fn agent_clone(&self) -> PathBuf {
        self.home.with_file_name("agent-work")
    }

    /// `mint clone` into `dir`, an edit, `mint publish`: gix does the git work, with no `git` on PATH.
    /// Returns the pull request's URL, as `mint publish` printed it.
    pub(crate) fn agent_flow(&self, hub: &FakeHub, dir: &Path) -> anyhow::Result<String> {
        self.mint(None, &[&"clone".into(), &dir.as_os_str().to_owned()])?;
        step(
            "mint clone",
            &format!(
                "{} with gix, the token straight from mintd (no git program)",
                dir.display()
            ),
        );
        let readme = dir.join("README.md");
        let mut text = std::fs::read_to_string(&readme).context("the clone's README.md")?;
        text.push_str("\nEdited by the demo agent.\n");
        std::fs::write(&readme, text)?;
        std::fs::create_dir_all(dir.join("src"))?;
        std::fs::write(dir.join("src/greeting.txt"), "hello from mint publish\n")?;
        let out = self.mint(
            Some(dir),
            &[
                &"publish".into(),
                &"--branch".into(),
                &AGENT_BRANCH.into(),
                &"--message".into(),
                &"Greet from the demo agent".into(),
                &"--title".into(),
                &"Greet from the demo agent".into(),
                &"--body".into(),
                &"Opened by `mint demo`.".into(),
                &"--ticket".into(),
                &"DEMO-1".into(),
            ],
        )?;
        let url = out.lines().last().unwrap_or_default().trim().to_owned();
        let pull = hub
            .pulls()
            .into_iter()
            .find(|p| p.head == AGENT_BRANCH)
            .context("fakehub has no pull request for the agent's branch")?;
        step(
            "mint publish",
            &format!(
                "staged, committed and pushed {AGENT_BRANCH} with gix; pull request #{} against {}",
                pull.number, pull.base
            ),
        );
        Ok(url)
    }

    /// Run this binary as `mint …`, with no `git` on PATH: the agent commands need none.
    fn mint(&self, dir: Option<&Path>, args: &[&OsString]) -> anyhow::Result<String> {
        let exe = std::env::current_exe().context("finding this program")?;
        let mut command = Command::new(exe);
        command
            .args(args)
            .env_clear()
            .env("HOME", &self.home)
            .env(mint_api::env::SOCKET, &self.socket)
            .stdin(Stdio::null());
        if let Some(dir) = dir {
            command.current_dir(dir);
        }
        let output = command.output().context("running mint")?;
        if !output.status.success() {
            bail!(
                "mint {} failed: {}",
                args.iter().map(|a| a.to_string_lossy()).collect::<Vec<_>>().join(" "),
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    fn git_output(&self, dir: Option<&Path>, args: &[&OsString]) -> anyhow::Result<std::process::Output> {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let mut paths = vec![self.bin.clone()];
        paths.extend(std::env::split_paths(&path));
        let mut command = Command::new("git");
        command
            .args(args)
            // The child gets a clean environment: nothing secret can be inherited, and no user config applies.
            .env_clear()
            .env("PATH", std::env::join_paths(paths)?)
            .env("HOME", &self.home)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env(mint_api::env::SOCKET, &self.socket)
            .stdin(Stdio::null());
        if let Some(dir) = dir {
            command.current_dir(dir);
        }
        command.output().context("running git (is it installed?)")
    }

    pub(crate) fn git(&self, dir: Option<&Path>, args: &[&OsString]) -> anyhow::Result<()> {
        let output = self.git_output(dir, args)?;
        if !output.status.success() {
            bail!(
                "git {} failed: {}",
                args.iter().map(|a| a.to_string_lossy()).collect::<Vec<_>>().join(" "),
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(())
    }
}

pub(crate) fn step(name: &str, what: &str) {
    println!("  {name:<14} {what}");
}

fn proof(what: &str) {
    println!("  ✓ {what}");
}

pub(crate) fn write_private(path: &Path, content: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(content)?;
    Ok(())
}

async fn wait_for_socket(socket: &Path) -> anyhow::Result<()> {
    // The socket file appears only once mintd is ready, so its existence is the readiness signal.
    for _ in 0..500 {
        if socket.exists() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    bail!("mintd did not become ready within 5 s")
}

/// Every regular file below `roots` whose bytes contain `secret`; and how many files were read.
fn search_for_secret(roots: &[&Path], secret: &str) -> anyhow::Result<(usize, Vec<PathBuf>)> {
    let mut files = 0;
    let mut found = Vec::new();
    let mut stack: Vec<PathBuf> = roots.iter().map(|p| p.to_path_buf()).collect();
    while let Some(path) = stack.pop() {
        let meta = std::fs::symlink_metadata(&path)?;
        if meta.is_dir() {
            for entry in std::fs::read_dir(&path)? {
                stack.push(entry?.path());
            }
        } else if meta.is_file() {
            files += 1;
            let bytes = std::fs::read(&path)?;
            if bytes.windows(secret.len()).any(|w| w == secret.as_bytes()) {
                found.push(path);
            }
        }
    }
    Ok((files, found))
}
