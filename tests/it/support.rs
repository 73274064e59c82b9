//! A world for end-to-end tests: fakehub on a loopback port, the real `mintd` binary on a temp socket,
//! a temp HOME whose git config names only the helper, and the real `git`.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use fakehub::{AppKeyPair, Config, FakeHub, InstallationConfig, RunningFakeHub};

use crate::cgroup::{self, MemoryCgroup};

pub(crate) const OWNER: &str = "octo-org";
pub(crate) const REPO: &str = "hello-world";
pub(crate) const OTHER_REPO: &str = "other-repo";
pub(crate) const APP_ID: u64 = 7;
pub(crate) const INSTALLATION_ID: u64 = 42;

/// Held by the tests that keep both cores busy for tens of seconds (the 1 GiB clones) and by those that
/// time a service against its deadlines (the fleet's burst, the soak, the browser): the harness runs two
/// tests at once on two cores, and one of each together starved the other (53 of 200 sandbox requests
/// waited past their 10 s turn at mint-server in one run of the whole suite). It orders them; it asserts
/// nothing.
pub(crate) fn one_heavy_test_at_a_time() -> MutexGuard<'static, ()> {
    static HEAVY: Mutex<()> = Mutex::new(());
    HEAVY.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One App key for the whole test binary: RSA key generation is the slow part of setting up.
pub(crate) fn app_key() -> &'static AppKeyPair {
    static KEY: OnceLock<AppKeyPair> = OnceLock::new();
    KEY.get_or_init(|| AppKeyPair::generate().expect("RSA key generation"))
}

pub(crate) struct World {
    /// Runs fakehub's tasks for as long as the world lives.
    _runtime: tokio::runtime::Runtime,
    pub(crate) hub: RunningFakeHub,
    pub(crate) dir: tempfile::TempDir,
    pub(crate) home: PathBuf,
    pub(crate) socket: PathBuf,
    pub(crate) key_file: PathBuf,
    pub(crate) log: PathBuf,
    pub(crate) mintd: Option<Child>,
    /// The memory cgroup mintd runs in, if started under [`Limits::memory`]; dropped after mintd is gone.
    pub(crate) cgroup: Option<MemoryCgroup>,
}

/// What the kernel holds mintd to, as the shipped pod would.
#[derive(Clone, Copy, Default)]
pub(crate) struct Limits {
    /// A memory cgroup of this many bytes ([`cgroup::POD_MEMORY`] as shipped).
    pub(crate) memory: Option<u64>,
    /// `prlimit --nofile` (soft and hard).
    pub(crate) nofile: Option<u64>,
}

impl Limits {
    /// The pod's memory limit.
    pub(crate) const POD: Self = Self {
        memory: Some(cgroup::POD_MEMORY),
        nofile: None,
    };

    pub(crate) fn with_nofile(self, nofile: u64) -> Self {
        Self {
            nofile: Some(nofile),
            ..self
        }
    }
}

#[derive(Clone, Copy)]
pub(crate) struct Options {
    pub(crate) installation_id: u64,
    pub(crate) start_mintd: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            installation_id: INSTALLATION_ID,
            start_mintd: true,
        }
    }
}

impl World {
    pub(crate) fn start() -> Self {
        Self::start_with(Options::default())
    }

    pub(crate) fn start_with(options: Options) -> Self {
        Self::start_with_config(options, |config| config)
    }

    /// A world whose fakehub config is first passed through `customize` (people, orgs, the App's settings).
    pub(crate) fn start_with_config(options: Options, customize: impl FnOnce(Config) -> Config) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let dir = tempfile::Builder::new().prefix("mint-it-").tempdir().expect("tempdir");
        let key = app_key();
        let config = customize(
            Config::new(APP_ID, key.public_key_pem(), dir.path().join("github")).with_installation(
                InstallationConfig::new(INSTALLATION_ID, OWNER, &[REPO, OTHER_REPO], fakehub::BROAD_PERMISSIONS),
            ),
        );
        let hub = runtime.block_on(FakeHub::start(config)).expect("fakehub starts");
        hub.create_repo(OWNER, REPO).expect("repo");
        hub.create_repo(OWNER, OTHER_REPO).expect("repo");

        let home = dir.path().join("home");
        std::fs::create_dir_all(&home).expect("home");
        std::fs::write(
            home.join(".gitconfig"),
            format!(
                "[user]\n\tname = Test Agent\n\temail = agent@example.invalid\n\
                 [credential \"{}\"]\n\thelper = mint\n\tuseHttpPath = true\n",
                hub.url()
            ),
        )
        .expect("gitconfig");

        let private = dir.path().join("mintd");
        std::fs::create_dir_all(&private).expect("dir");
        let key_file = private.join("app.pem");
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&key_file)
            .expect("key file");
        file.write_all(key.private_key_pem().as_bytes()).expect("write key");

        let mut world = Self {
            _runtime: runtime,
            hub,
            home,
            socket: private.join("run/mint.sock"),
            log: private.join("mintd.log"),
            key_file,
            dir,
            mintd: None,
            cgroup: None,
        };
        if options.start_mintd {
            world.spawn_mintd(options.installation_id);
        }
        world
    }

    pub(crate) fn url(&self) -> String {
        self.hub.url()
    }

    pub(crate) fn repo_url(&self, name: &str) -> String {
        format!("{}/{OWNER}/{name}.git", self.url())
    }

    /// `mintd` with the flags a person would give, logging at debug level to a file.
    pub(crate) fn mintd_command(&self, installation_id: u64) -> Command {
        self.mintd_command_for(installation_id, &format!("{OWNER}/{REPO}"))
    }

    pub(crate) fn mintd_command_for(&self, installation_id: u64, repo: &str) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_mintd"));
        command
            .arg("--app-id")
            .arg(APP_ID.to_string())
            .arg("--private-key")
            .arg(&self.key_file)
            .arg("--installation-id")
            .arg(installation_id.to_string())
            .arg("--repo")
            .arg(repo)
            .arg("--socket")
            .arg(&self.socket)
            .arg("--github-url")
            .arg(self.url())
            .arg("--api-url")
            .arg(self.url())
            .env_clear()
            .env("RUST_LOG", "debug")
            .stdin(Stdio::null());
        command
    }

    pub(crate) fn spawn_mintd(&mut self, installation_id: u64) {
        self.spawn(self.mintd_command(installation_id));
    }

    /// Mediated mode: mintd with its git proxy on a free loopback port, and a HOME whose git config has no
    /// credential helper at all, only a rewrite of the GitHub URL to the proxy. Returns the proxy's URL.
    pub(crate) fn start_mediated(&mut self) -> String {
        self.start_mediated_limited(Limits::default(), "debug")
    }

    /// [`World::start_mediated`] with mintd held to `limits`, logging at `log_level`.
    pub(crate) fn start_mediated_limited(&mut self, limits: Limits, log_level: &str) -> String {
        let mut command = self.mintd_command(INSTALLATION_ID);
        command.args(["--git-proxy", "127.0.0.1:0"]).env("RUST_LOG", log_level);
        self.spawn_limited(command, limits);
        self.use_git_proxy()
    }

    /// Point git (through the world's HOME) at the running mintd's git proxy, with no credential helper at
    /// all; returns the proxy's URL.
    pub(crate) fn use_git_proxy(&self) -> String {
        let status = mint_api::Client::new(&self.socket).status().expect("status");
        let proxy = format!("http://{}/", status.git_proxy.expect("mediated mode reports its proxy"));
        std::fs::write(
            self.home.join(".gitconfig"),
            format!(
                "[user]\n\tname = Test Agent\n\temail = agent@example.invalid\n\
                 [url \"{proxy}\"]\n\tinsteadOf = {}/\n",
                self.url()
            ),
        )
        .expect("gitconfig");
        proxy
    }

    /// Start mintd for the default installation with extra flags.
    pub(crate) fn spawn_mintd_with(&mut self, extra: &[&str]) {
        let mut command = self.mintd_command(INSTALLATION_ID);
        command.args(extra);
        self.spawn(command);
    }

    /// Broker mode: mintd with no App key (no --app-id, --private-key, --installation-id or --repo), asking
    /// the broker at `broker_url` for tokens with the credential in `credential_file` (which must be 0600).
    /// git and the API (revocation, pull requests) are fakehub's; `extra` must not repeat --socket,
    /// --github-url or --api-url.
    pub(crate) fn spawn_mintd_broker(&mut self, broker_url: &str, credential_file: &Path, extra: &[&str]) {
        self.spawn_mintd_broker_env(broker_url, credential_file, extra, &[]);
    }

    /// As [`World::spawn_mintd_broker`], with variables in mintd's otherwise empty environment (e.g.
    /// `SSL_CERT_FILE` naming the broker's CA).
    pub(crate) fn spawn_mintd_broker_env(
        &mut self,
        broker_url: &str,
        credential_file: &Path,
        extra: &[&str],
        env: &[(&str, &Path)],
    ) {
        let mut command = Command::new(env!("CARGO_BIN_EXE_mintd"));
        command
            .arg("--broker")
            .arg(broker_url)
            .arg("--sandbox-credential-file")
            .arg(credential_file)
            .arg("--socket")
            .arg(&self.socket)
            .arg("--github-url")
            .arg(self.url())
            .arg("--api-url")
            .arg(self.url())
            .args(extra)
            .env_clear()
            .env("RUST_LOG", "debug")
            .envs(env.iter().copied())
            .stdin(Stdio::null());
        self.spawn(command);
    }

    fn spawn(&mut self, command: Command) {
        self.spawn_limited(command, Limits::default());
    }

    /// Start `command` (mintd's) held to `limits`, logging to [`World::log`], and wait until it is ready.
    /// Under a memory limit it runs in a new cgroup, kept in [`World::cgroup`].
    pub(crate) fn spawn_limited(&mut self, command: Command, limits: Limits) {
        let mut command = match limits.nofile {
            Some(n) => cgroup::under_prlimit(&command, &[&format!("--nofile={n}:{n}")]),
            None => command,
        };
        let memory = limits.memory.map(MemoryCgroup::create);
        if let Some(memory) = &memory {
            command = memory.wrap(&command);
        }
        let log = std::fs::File::create(&self.log).expect("log file");
        let child = command
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("mintd starts");
        let pid = child.id();
        self.mintd = Some(child);
        self.cgroup = memory;
        self.wait_until_ready();
        if let Some(memory) = &self.cgroup {
            assert!(memory.holds(pid), "mintd ({pid}) runs in its memory cgroup");
        }
    }

    /// mintd's memory cgroup's figures (peak, limit, OOM kills), or that it has none: for failure messages.
    pub(crate) fn cgroup_summary(&self) -> String {
        self.cgroup
            .as_ref()
            .map_or_else(|| "no memory cgroup".to_owned(), MemoryCgroup::summary)
    }

    /// Whether mintd is still running.
    pub(crate) fn mintd_alive(&mut self) -> bool {
        self.mintd
            .as_mut()
            .is_some_and(|c| c.try_wait().expect("wait").is_none())
    }

    /// Wait until mintd accepts on the socket; panic with its log if it exits first or is not ready within
    /// 10 s. A stale socket file may sit at the path, so existence proves nothing here: wait until it accepts.
    pub(crate) fn wait_until_ready(&mut self) {
        let started = Instant::now();
        while std::os::unix::net::UnixStream::connect(&self.socket).is_err() {
            if let Some(status) = self.mintd.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!(
                    "mintd exited with {status} before it was ready; its log:\n{}",
                    self.mintd_log()
                );
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "mintd did not accept on {} within 10 s; its log:\n{}",
                self.socket.display(),
                self.mintd_log()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub(crate) fn mintd_log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The real git, with nothing from the caller's environment: HOME is the test's, the helper is on PATH.
    pub(crate) fn git(&self, dir: Option<&Path>, args: &[&str]) -> Output {
        self.git_with_input(dir, args, None)
    }

    pub(crate) fn git_with_input(&self, dir: Option<&Path>, args: &[&str], input: Option<&str>) -> Output {
        let mut command = Command::new("git");
        command.args(args);
        self.sandbox_env(&mut command);
        if let Some(dir) = dir {
            command.current_dir(dir);
        }
        run(command, input)
    }

    /// Asserting variant of [`World::git`].
    pub(crate) fn git_ok(&self, dir: Option<&Path>, args: &[&str]) -> Output {
        let output = self.git(dir, args);
        assert!(
            output.status.success(),
            "git {args:?} failed:\n{}\nmintd log:\n{}",
            String::from_utf8_lossy(&output.stderr),
            self.mintd_log()
        );
        output
    }

    /// The helper binary alone, fed `input` on stdin, as git would run it.
    pub(crate) fn helper(&self, action: &str, input: &[u8]) -> Output {
        let mut command = Command::new(env!("CARGO_BIN_EXE_git-credential-mint"));
        command.arg("--socket").arg(&self.socket).arg(action).env_clear();
        run(command, Some(&String::from_utf8_lossy(input)))
    }

    fn sandbox_env(&self, command: &mut Command) {
        let helper_dir = Path::new(env!("CARGO_BIN_EXE_git-credential-mint"))
            .parent()
            .expect("the helper sits in a directory");
        let system_path = std::env::var_os("PATH").unwrap_or_default();
        let mut paths = vec![helper_dir.to_path_buf()];
        paths.extend(std::env::split_paths(&system_path));
        command
            .env_clear()
            .env("PATH", std::env::join_paths(paths).expect("PATH"))
            .env("HOME", &self.home)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("MINT_SOCKET", &self.socket);
    }

    /// `git credential fill` for our repository; returns the password git got, if any.
    pub(crate) fn fill(&self, repo: &str) -> Option<String> {
        let url = self.url();
        let (protocol, host) = url.split_once("://").expect("url");
        let input = format!("protocol={protocol}\nhost={host}\npath={OWNER}/{repo}.git\n\n");
        let output = self.git_with_input(None, &["credential", "fill"], Some(&input));
        password_of(&output)
    }

    /// Every file under `roots` whose bytes contain `needle`.
    pub(crate) fn files_containing(roots: &[&Path], needle: &str) -> (usize, Vec<PathBuf>) {
        let mut count = 0;
        let mut found = Vec::new();
        let mut stack: Vec<PathBuf> = roots.iter().map(|p| p.to_path_buf()).collect();
        while let Some(path) = stack.pop() {
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            if meta.is_dir() {
                for entry in std::fs::read_dir(&path).expect("read dir") {
                    stack.push(entry.expect("entry").path());
                }
            } else if meta.is_file() {
                count += 1;
                let bytes = std::fs::read(&path).expect("read");
                if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                    found.push(path);
                }
            }
        }
        (count, found)
    }

    /// Send SIGTERM to mintd and wait for it to exit; returns the exit status and how long it took.
    pub(crate) fn stop_mintd(&mut self) -> (std::process::ExitStatus, Duration) {
        let mut child = self.mintd.take().expect("mintd running");
        let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid"));
        let started = Instant::now();
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("signal");
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return (status, started.elapsed());
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "mintd did not stop within 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for World {
    fn drop(&mut self) {
        if let Some(mut child) = self.mintd.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Only now, with mintd reaped, can its cgroup go.
        drop(self.cgroup.take());
    }
}

pub(crate) fn password_of(output: &Output) -> Option<String> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("password=").map(str::to_owned))
}

fn run(mut command: Command, input: Option<&str>) -> Output {
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("spawn");
    let mut stdin = child.stdin.take().expect("stdin");
    if let Some(input) = input {
        // A program may exit without reading everything (e.g. a refused oversized request).
        let _ = stdin.write_all(input.as_bytes());
    }
    drop(stdin);
    child.wait_with_output().expect("wait")
}
