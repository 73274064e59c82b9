//! mint-bench: times the credential helper and mintd side by side with git's own credential helpers.
//!
//! Run with `bench/run` (builds the release binaries first). Every scenario is interleaved with its anchors
//! in the same run, so a busy machine slows all of them alike; the ratios are the claim.

mod agent;

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use fakehub::{AppKeyPair, Config, FakeHub, InstallationConfig};

const OWNER: &str = "octo-org";
const REPO: &str = "hello-world";

fn main() -> anyhow::Result<()> {
    let n: usize = std::env::args()
        .nth(1)
        .map_or(Ok(200), |s| s.parse())
        .context("N must be a number")?;
    let rig = Rig::start()?;
    let mut fill = Scenario::new(
        "warm `git credential fill`",
        &[
            "helper = mint",
            "helper = /abs/git-credential-mint",
            "git credential-cache",
            "git credential-store",
        ],
    );
    let mut alone = Scenario::new(
        "helper process alone (`get` on stdin)",
        &["git-credential-mint get", "git credential-cache get", "/bin/true"],
    );
    let helpers = [
        "mint".to_owned(),
        rig.bin_dir.join("git-credential-mint").display().to_string(),
        rig.cache_helper(),
        rig.store_helper(),
    ];
    for _ in 0..n {
        for (i, helper) in helpers.iter().enumerate() {
            fill.time(i, || {
                run_with_input(rig.git(helper).args(["credential", "fill"]), &rig.request)
            })?;
        }
        alone.time(0, || {
            let mut c = Command::new(rig.bin_dir.join("git-credential-mint"));
            c.arg("--socket").arg(&rig.socket).arg("get").env_clear();
            run_with_input(&mut c, &rig.request)
        })?;
        alone.time(1, || {
            let mut c = Command::new("git");
            c.env_clear()
                .env("HOME", &rig.home)
                .arg("credential-cache")
                .arg("--socket")
                .arg(rig.cache_socket())
                .arg("get");
            run_with_input(&mut c, &rig.request)
        })?;
        alone.time(2, || run_with_input(&mut Command::new("/bin/true"), ""))?;
    }
    let rss_warm = rss_kib(&rig.mintd)?;
    let git_version = Command::new("git").arg("--version").output()?;
    println!(
        "mint-bench, N = {n} per series, {}",
        String::from_utf8_lossy(&git_version.stdout).trim()
    );
    fill.print();
    alone.print();
    println!("\nmintd");
    println!("  start to socket ready        {:>8.2} ms", ms(rig.ready));
    println!("  RSS idle (before any mint)   {:>8.1} MiB", kib_to_mib(rig.rss_idle));
    println!(
        "  RSS after {:>4} warm gets     {:>8.1} MiB",
        n * 2,
        kib_to_mib(rss_warm)
    );
    // The agent's flow (issue 3): fewer rounds, each is a whole publish or clone.
    let rounds = std::env::var("MINT_BENCH_AGENT_ROUNDS").map_or(Ok(15), |s| s.parse())?;
    if rounds > 0 {
        agent::run(&rig, rounds)?;
    }
    rig.stop();
    Ok(())
}

/// fakehub in-process, the release `mintd` as a child, git's credential-cache daemon, a temp HOME.
struct Rig {
    runtime: tokio::runtime::Runtime,
    hub: fakehub::RunningFakeHub,
    work: tempfile::TempDir,
    bin_dir: PathBuf,
    home: PathBuf,
    socket: PathBuf,
    mintd: Child,
    request: String,
    ready: Duration,
    rss_idle: u64,
}

impl Rig {
    fn start() -> anyhow::Result<Self> {
        let bin_dir = std::env::current_exe()?
            .parent()
            .context("the bench binary sits in target/<profile>")?
            .to_path_buf();
        for b in ["mintd", "git-credential-mint"] {
            if !bin_dir.join(b).exists() {
                bail!("{b} is not built next to mint-bench: run bench/run, which builds them");
            }
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        // The work trees live under target/bench, not /tmp: on this project's machines /tmp is a different
        // mount whose file creation measured 9x slower, which would swamp what is being measured.
        let out_dir = bin_dir.parent().context("target/<profile>/..")?.join("bench");
        std::fs::create_dir_all(&out_dir)?;
        let work = tempfile::Builder::new().prefix("work-").tempdir_in(&out_dir)?;
        let key = AppKeyPair::generate()?;
        let config = Config::new(1, key.public_key_pem(), work.path().join("github")).with_installation(
            InstallationConfig::new(
                42,
                OWNER,
                &[REPO],
                &[("contents", "write"), ("pull_requests", "write"), ("metadata", "read")],
            ),
        );
        let hub = runtime.block_on(FakeHub::start(config))?;
        let url = hub.url();
        let key_file = work.path().join("app.pem");
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&key_file)?
            .write_all(key.private_key_pem().as_bytes())?;

        // mintd: time from exec to the socket appearing (it appears only when ready), then RSS idle.
        let socket = work.path().join("run/mint.sock");
        let started = Instant::now();
        let mintd = Command::new(bin_dir.join("mintd"))
            .args([
                "--app-id",
                "1",
                "--installation-id",
                "42",
                "--repo",
                &format!("{OWNER}/{REPO}"),
            ])
            .arg("--private-key")
            .arg(&key_file)
            .arg("--socket")
            .arg(&socket)
            .args(["--github-url", &url, "--api-url", &url])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .spawn()?;
        while !socket.exists() {
            if started.elapsed() > Duration::from_secs(10) {
                bail!("mintd did not become ready");
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        let ready = started.elapsed();
        std::thread::sleep(Duration::from_millis(200));
        let rss_idle = rss_kib(&mintd)?;
        let home = work.path().join("home");
        std::fs::create_dir_all(&home)?;
        let (protocol, host) = url.split_once("://").context("url")?;
        let request = format!("protocol={protocol}\nhost={host}\npath={OWNER}/{REPO}.git\n\n");
        let rig = Self {
            runtime,
            hub,
            work,
            bin_dir,
            home,
            socket,
            mintd,
            request,
            ready,
            rss_idle,
        };
        rig.prime()?;
        Ok(rig)
    }

    /// Give git's helpers the same kind of credential (520 characters), then warm every helper once.
    fn prime(&self) -> anyhow::Result<()> {
        std::fs::create_dir_all(self.work.path().join("store"))?;
        let approve = format!(
            "{}\nusername=x-access-token\npassword={}\n\n",
            self.request.trim_end(),
            "x".repeat(520)
        );
        for helper in [self.cache_helper(), self.store_helper()] {
            run_with_input(self.git(&helper).args(["credential", "approve"]), &approve)?;
        }
        for helper in ["mint".to_owned(), self.cache_helper(), self.store_helper()] {
            let out = run_with_input(self.git(&helper).args(["credential", "fill"]), &self.request)?;
            if !String::from_utf8_lossy(&out).contains("password=") {
                bail!("credential.helper={helper} gave no password");
            }
        }
        Ok(())
    }

    fn cache_socket(&self) -> PathBuf {
        self.work.path().join("cache/socket")
    }

    fn cache_helper(&self) -> String {
        format!("cache --timeout=86400 --socket {}", self.cache_socket().display())
    }

    fn store_helper(&self) -> String {
        format!("store --file {}", self.work.path().join("store/credentials").display())
    }

    fn git(&self, helper: &str) -> Command {
        let mut c = Command::new("git");
        c.env_clear()
            .env("PATH", path_with(&self.bin_dir))
            .env("HOME", &self.home)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("MINT_SOCKET", &self.socket)
            .args([
                "-c",
                "credential.useHttpPath=true",
                "-c",
                &format!("credential.helper={helper}"),
            ]);
        c
    }

    fn stop(mut self) {
        let _ = run_with_input(self.git(&self.cache_helper()).args(["credential-cache", "exit"]), "");
        let _ = self.mintd.kill();
        let _ = self.mintd.wait();
        self.runtime.block_on(self.hub.shutdown());
    }
}

struct Scenario {
    title: &'static str,
    names: Vec<&'static str>,
    samples: Vec<Vec<Duration>>,
}

impl Scenario {
    fn new(title: &'static str, names: &[&'static str]) -> Self {
        Self {
            title,
            names: names.to_vec(),
            samples: vec![Vec::new(); names.len()],
        }
    }

    fn time(&mut self, series: usize, f: impl FnOnce() -> anyhow::Result<Vec<u8>>) -> anyhow::Result<()> {
        let started = Instant::now();
        f()?;
        self.samples[series].push(started.elapsed());
        Ok(())
    }

    fn print(&mut self) {
        println!("\n{}", self.title);
        println!("  {:<36} {:>10} {:>10} {:>14}", "", "median", "p95", "÷ first row");
        let first = median(&mut self.samples[0].clone());
        for (name, samples) in self.names.iter().zip(&mut self.samples) {
            let med = median(samples);
            let p95 = percentile(samples, 95);
            println!(
                "  {name:<36} {:>8.2}ms {:>8.2}ms {:>13.2}x",
                ms(med),
                ms(p95),
                med.as_secs_f64() / first.as_secs_f64()
            );
        }
    }
}

fn median(samples: &mut [Duration]) -> Duration {
    percentile(samples, 50)
}

fn percentile(samples: &mut [Duration], p: usize) -> Duration {
    samples.sort();
    samples[(samples.len() - 1) * p / 100]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[expect(clippy::cast_precision_loss, reason = "RSS in KiB is far below 2^52")]
fn kib_to_mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn rss_kib(child: &Child) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id()))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS in /proc/PID/status")
}

fn path_with(dir: &Path) -> std::ffi::OsString {
    let mut paths = vec![PathBuf::from(dir)];
    paths.extend(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()));
    std::env::join_paths(paths).unwrap_or_default()
}

fn run_with_input(command: &mut Command, input: &str) -> anyhow::Result<Vec<u8>> {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let mut stdin = child.stdin.take().context("stdin")?;
    let _ = stdin.write_all(input.as_bytes());
    drop(stdin);
    let out = child.wait_with_output()?;
    Ok(out.stdout)
}
