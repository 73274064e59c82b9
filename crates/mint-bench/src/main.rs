//! mint-bench: times the credential helper and mintd side by side with git's own credential helpers.
//!
//! Run with `bench/run` (builds the release binaries first). Every scenario is interleaved with its anchors
//! in the same run, so a busy machine slows all of them alike; the ratios are the claim.

mod agent;
mod api;
mod broker;
mod fleet;
mod load;
mod mediated;
mod revocation;

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
    if n == 0 {
        bail!("N must be at least 1");
    }
    let rig = Rig::start()?;
    let mut report = Report::new(rig.out_dir.clone());
    // One scenario alone.
    if let Ok(only) = std::env::var("MINT_BENCH_ONLY") {
        match only.as_str() {
            "fleet" => fleet::run(&rig, &mut report)?,
            "revocation" => revocation::run(&rig, &mut report)?,
            "api" => api::run(&rig, n, &mut report)?,
            "broker" => broker::fleet_start(&rig, &mut report)?,
            other => bail!("MINT_BENCH_ONLY={other}: the scenarios run alone are fleet, revocation, api and broker"),
        }
        drop(rig);
        return report.finish();
    }
    let git_version = Command::new("git").arg("--version").output()?;
    report.line(format!(
        "mint-bench, N = {n} per series, {}, {} CPUs",
        String::from_utf8_lossy(&git_version.stdout).trim(),
        std::thread::available_parallelism().map_or(0, std::num::NonZero::get)
    ));
    let mut fill = Scenario::new(
        "warm `git credential fill` (target: static /abs/git-credential-mint ÷ credential-cache ≤ 0.90)",
        &[
            "helper = /abs/git-credential-mint (static)",
            "helper = /abs/git-credential-mint (dynamic)",
            "helper = mint (PATH lookup)",
            "git credential-cache",
            "git credential-store",
            "helper = !cat of a file (the floor)",
        ],
    );
    let mut alone = Scenario::new(
        "helper process alone, `get` on stdin (target: static git-credential-mint ≤ 0.75 × credential-cache get)",
        &[
            "git-credential-mint get (static)",
            "git-credential-mint get (dynamic)",
            "git credential-cache get",
            "/bin/true",
        ],
    );
    let helpers = [
        rig.static_helper.display().to_string(),
        rig.helper_path(),
        "mint".to_owned(),
        rig.cache_helper(),
        rig.store_helper(),
        rig.floor_helper(),
    ];
    let helper_alone = |path: &Path| {
        let mut c = Command::new(path);
        c.arg("--socket").arg(&rig.socket).arg("get").env_clear();
        run_with_input(&mut c, &rig.request)
    };
    // Each round starts with a different series, so no series always runs first, after another scenario's
    // processes (a first run with a fixed order put the static helper, first in each round, at 1.25 × the
    // cache in the fill while it was the fastest alone).
    for round in 0..n {
        for k in 0..helpers.len() {
            let i = (round + k) % helpers.len();
            fill.time(i, || rig.fill(&helpers[i], &rig.socket))?;
        }
        for k in 0..4 {
            let i = (round + k) % 4;
            alone.time(i, || match i {
                0 => helper_alone(&rig.static_helper),
                1 => helper_alone(&rig.bin_dir.join("git-credential-mint")),
                2 => run_with_input(&mut rig.credential_cache("get"), &rig.request),
                _ => run_with_input(&mut Command::new("/bin/true"), ""),
            })?;
        }
    }
    let rss_warm = rss_kib(&rig.mintd)?;
    let ratios = fill.report(&mut report, 3)?;
    report.goal("warm fill: static helper ÷ git credential-cache", ratios[0], 0.90, "x");
    let ratios = alone.report(&mut report, 2)?;
    report.goal(
        "helper alone: static git-credential-mint get ÷ credential-cache get",
        ratios[0],
        0.75,
        "x",
    );
    report_mintd(&rig, n * 2, rss_warm, &mut report);

    load::burst(&rig, &mut report)?;
    let seconds = std::env::var("MINT_BENCH_STEADY_SECONDS").map_or(Ok(30), |s| s.parse())?;
    if seconds > 0 {
        load::steady(&rig, 200, seconds, &mut report)?;
    }
    git_traffic(&rig, &mut report)?;
    api::run(&rig, n, &mut report)?;
    if !std::env::var("MINT_BENCH_BROKER").is_ok_and(|v| v == "0") {
        broker::run(&rig, n, &mut report)?;
        fleet::run(&rig, &mut report)?;
        revocation::run(&rig, &mut report)?;
    }
    drop(rig);
    report.finish()
}

/// mintd's own figures: start-up, idle RSS and RSS after `gets` warm gets.
fn report_mintd(rig: &Rig, gets: usize, rss_warm: u64, report: &mut Report) {
    report.line("\nmintd");
    report.line(format!(
        "  start to socket ready        {:>8.2} ms (target ≤ 50 ms)",
        ms(rig.ready)
    ));
    report.line(format!(
        "  RSS idle (before any mint)   {:>8.1} MiB (target ≤ 8 MiB)",
        kib_to_mib(rig.rss_idle)
    ));
    report.goal("mintd: start to socket ready", ms(rig.ready), 50.0, "ms");
    report.goal("mintd: RSS idle", kib_to_mib(rig.rss_idle), 8.0, "MiB");
    report.line(format!(
        "  RSS after {gets:>5} warm gets    {:>8.1} MiB",
        kib_to_mib(rss_warm)
    ));
}

/// The scenarios of whole git commands: the agent's flow, Git LFS, mediated mode. Fewer rounds: each is a
/// whole publish, clone or push.
fn git_traffic(rig: &Rig, report: &mut Report) -> anyhow::Result<()> {
    let rounds = |name: &str, default: usize| std::env::var(name).map_or(Ok(default), |s| s.parse());
    let agent = rounds("MINT_BENCH_AGENT_ROUNDS", 15)?;
    if agent > 0 {
        agent::run(rig, agent, report)?;
    }
    let lfs = rounds("MINT_BENCH_LFS_ROUNDS", 3)?;
    if lfs > 0 {
        agent::run_lfs(rig, lfs, report)?;
    }
    let mediated = rounds("MINT_BENCH_MEDIATED_ROUNDS", 5)?;
    if mediated > 0 {
        mediated::run(rig, mediated, report)?;
    }
    Ok(())
}

/// The results as they are printed, plus the same table and the raw samples as files under target/bench/.
struct Report {
    dir: PathBuf,
    text: String,
    samples: String,
    /// Every figure an issue set a target for, printed together at the end.
    goals: Vec<Goal>,
}

/// A measured figure against its target (met when at or under it).
struct Goal {
    what: String,
    measured: f64,
    target: f64,
    unit: &'static str,
}

impl Report {
    fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            text: String::new(),
            samples: String::from("scenario,series,ms\n"),
            goals: Vec::new(),
        }
    }

    fn line(&mut self, line: impl AsRef<str>) {
        let line = line.as_ref();
        println!("{line}");
        self.text.push_str(line);
        self.text.push('\n');
    }

    /// Record a figure with a target (`unit` is `x` for ratios), for the table [`Self::finish`] prints.
    fn goal(&mut self, what: impl Into<String>, measured: f64, target: f64, unit: &'static str) {
        self.goals.push(Goal {
            what: what.into(),
            measured,
            target,
            unit,
        });
    }

    fn file(&self, name: &str, contents: &str) -> anyhow::Result<()> {
        let path = self.dir.join(name);
        std::fs::write(&path, contents).with_context(|| format!("writing {}", path.display()))
    }

    fn finish(mut self) -> anyhow::Result<()> {
        if !self.goals.is_empty() {
            self.line(format!("\nevery target in one table ({} of them)", self.goals.len()));
            self.line(format!("  {:<72} {:>10} {:>10}   met", "", "measured", "target"));
            for goal in std::mem::take(&mut self.goals) {
                let met = if goal.measured <= goal.target { "yes" } else { "NO" };
                let (measured, target) = match goal.unit {
                    "x" => (format!("{:.2}x", goal.measured), format!("≤ {:.2}x", goal.target)),
                    unit => (
                        format!("{:.1} {unit}", goal.measured),
                        format!("≤ {:.0} {unit}", goal.target),
                    ),
                };
                self.line(format!("  {:<72} {measured:>10} {target:>10}   {met}", goal.what));
            }
        }
        self.file("results.txt", &self.text)?;
        self.file("samples.csv", &self.samples)?;
        println!(
            "\nwritten to {}: results.txt, samples.csv, burst.csv, steady.csv, steady-rss.csv, fleet.csv",
            self.dir.display()
        );
        Ok(())
    }
}

/// fakehub in-process, the release `mintd` as a child, git's credential-cache daemon, a temp HOME.
struct Rig {
    /// Runs fakehub (and its unix listener, in the API scenario) until the rig is dropped.
    runtime: tokio::runtime::Runtime,
    out_dir: PathBuf,
    hub: fakehub::RunningFakeHub,
    work: tempfile::TempDir,
    bin_dir: PathBuf,
    /// The helper as sandbox-image/build ships it: a static PIE (bench/run builds it).
    static_helper: PathBuf,
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
        let static_helper = std::env::var_os("MINT_BENCH_STATIC_HELPER")
            .map(PathBuf::from)
            .filter(|p| p.exists())
            .context("MINT_BENCH_STATIC_HELPER names no static git-credential-mint: run bench/run, which builds it")?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let out_dir = bin_dir.parent().context("target/<profile>/..")?.join("bench");
        std::fs::create_dir_all(&out_dir)?;
        let work = tempfile::Builder::new()
            .prefix("mint-bench-")
            .tempdir_in(work_root(&out_dir))?;
        let key = AppKeyPair::generate()?;
        let least = &[("contents", "write"), ("pull_requests", "write"), ("metadata", "read")];
        let mut config = Config::new(1, key.public_key_pem(), work.path().join("github")).with_installation(
            InstallationConfig::new(42, OWNER, &[REPO, mediated::BULK, mediated::MANY], least),
        );
        // The broker's fleet start: one installation per customer account, each with one repository.
        for (installation, account) in broker::fleet_accounts() {
            config = config.with_installation(InstallationConfig::new(
                installation,
                &account,
                &[broker::FLEET_REPO],
                least,
            ));
        }
        let hub = runtime.block_on(FakeHub::start(config))?;
        hub.create_repo(OWNER, REPO)?;
        let url = hub.url();
        let key_file = work.path().join("app.pem");
        write_private(&key_file, &key.private_key_pem())?;

        // mintd: time from exec to the socket appearing (it appears only when ready), then RSS idle.
        let socket = work.path().join("run/mint.sock");
        let (mintd, ready) = spawn_mintd(&bin_dir, &url, &Tokens::Key(&key_file), &socket)?;
        std::thread::sleep(Duration::from_millis(200));
        let rss_idle = rss_kib(&mintd)?;
        let home = work.path().join("home");
        std::fs::create_dir_all(&home)?;
        let (protocol, host) = url.split_once("://").context("url")?;
        let request = format!("protocol={protocol}\nhost={host}\npath={OWNER}/{REPO}.git\n\n");
        let rig = Self {
            runtime,
            out_dir,
            hub,
            work,
            bin_dir,
            static_helper,
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
        std::fs::create_dir_all(self.work.path().join("floor"))?;
        std::fs::write(
            self.work.path().join("floor/answer"),
            format!("username=x-access-token\npassword={}\n", "x".repeat(520)),
        )?;
        for helper in [
            self.static_helper.display().to_string(),
            "mint".to_owned(),
            self.cache_helper(),
            self.store_helper(),
            self.floor_helper(),
        ] {
            let out = self.fill(&helper, &self.socket)?;
            if !String::from_utf8_lossy(&out).contains("password=") {
                bail!("credential.helper={helper} gave no password");
            }
        }
        Ok(())
    }

    /// `git credential fill` for the rig's repository through `helper`, with mint's helper asking the
    /// mintd on `socket`; git's output.
    fn fill(&self, helper: &str, socket: &Path) -> anyhow::Result<Vec<u8>> {
        let mut git = self.git(helper);
        git.env("MINT_SOCKET", socket).args(["credential", "fill"]);
        run_with_input(&mut git, &self.request)
    }

    /// The helper by absolute path: the recommended setup (git runs it without a PATH search).
    fn helper_path(&self) -> String {
        self.bin_dir.join("git-credential-mint").display().to_string()
    }

    fn cache_socket(&self) -> PathBuf {
        self.work.path().join("cache/socket")
    }

    /// `git credential-cache ACTION` on this rig's cache socket, run directly (not through git's helper
    /// machinery).
    fn credential_cache(&self, action: &str) -> Command {
        let mut c = Command::new("git");
        c.env_clear()
            .env("HOME", &self.home)
            .arg("credential-cache")
            .arg("--socket")
            .arg(self.cache_socket())
            .arg(action);
        c
    }

    fn cache_helper(&self) -> String {
        format!("cache --timeout=86400 --socket {}", self.cache_socket().display())
    }

    fn store_helper(&self) -> String {
        format!("store --file {}", self.work.path().join("store/credentials").display())
    }

    /// The least any helper can cost: git's shell runs `cat` of a file holding the answer (a shell function,
    /// as git appends the action to the command). Every helper pays this; what one adds is its own.
    fn floor_helper(&self) -> String {
        format!("!f() {{ cat {}; }}; f", self.work.path().join("floor/answer").display())
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
}

impl Drop for Rig {
    /// Also on an error: no mintd or credential-cache daemon outlives the bench.
    fn drop(&mut self) {
        let _ = run_with_input(&mut self.credential_cache("exit"), "");
        let _ = self.mintd.kill();
        let _ = self.mintd.wait();
    }
}

struct Scenario {
    title: String,
    names: Vec<&'static str>,
    samples: Vec<Vec<Duration>>,
}

impl Scenario {
    fn new(title: impl Into<String>, names: &[&'static str]) -> Self {
        Self {
            title: title.into(),
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

    /// The median over rounds of `row` ÷ `anchor` in the same round: for whole git commands, whose rounds
    /// differ more among themselves (a repository that grows each round, the machine's load) than the two
    /// series within one. Call before [`Self::report`], which sorts the samples.
    fn paired_ratio(&self, row: usize, anchor: usize) -> f64 {
        let mut ratios: Vec<f64> = self.samples[row]
            .iter()
            .zip(&self.samples[anchor])
            .map(|(a, b)| a.as_secs_f64() / b.as_secs_f64())
            .collect();
        ratios.sort_by(f64::total_cmp);
        ratios
            .get(ratios.len().saturating_sub(1) / 2)
            .copied()
            .unwrap_or(f64::NAN)
    }

    /// Medians, p95 and each row's median ÷ the `anchor` row's; the samples go to samples.csv. Returns the
    /// ratios, row by row.
    fn report(&mut self, report: &mut Report, anchor: usize) -> anyhow::Result<Vec<f64>> {
        use std::fmt::Write as _;
        report.line(format!("\n{}", self.title));
        report.line(format!(
            "  {:<36} {:>10} {:>10} {:>10}   (ratio: ÷ {})",
            "", "median", "p95", "ratio", self.names[anchor]
        ));
        let base = median(&mut self.samples[anchor].clone());
        let mut ratios = Vec::with_capacity(self.names.len());
        for (name, samples) in self.names.iter().zip(&mut self.samples) {
            let med = median(samples);
            let p95 = percentile(samples, 95);
            let ratio = med.as_secs_f64() / base.as_secs_f64();
            ratios.push(ratio);
            report.line(format!(
                "  {name:<36} {:>8.2}ms {:>8.2}ms {ratio:>9.2}x",
                ms(med),
                ms(p95)
            ));
            for sample in samples.iter() {
                writeln!(report.samples, "\"{}\",\"{name}\",{:.4}", self.title, ms(*sample))?;
            }
        }
        Ok(ratios)
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
    status_kib(child, "VmRSS:")
}

/// The peak resident memory of `child` so far.
fn peak_rss_kib(child: &Child) -> anyhow::Result<u64> {
    status_kib(child, "VmHWM:")
}

fn status_kib(child: &Child, field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id()))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no {field} in /proc/PID/status"))
}

/// Where the work trees, repositories and sockets go: `MINT_BENCH_WORKDIR`, else `/dev/shm` (memory), else
/// `target/bench`. The work is the tools' own, not the disk's: on this project's machines ext4 file creation
/// slowed 15-fold within an hour (10,000 files: 0.5 s, later 7.4 s, for git and mint alike), which
/// swamped the clone and publish figures; in memory both are measured on the same, steady footing.
fn work_root(out_dir: &Path) -> PathBuf {
    if let Some(dir) = std::env::var_os("MINT_BENCH_WORKDIR") {
        return PathBuf::from(dir);
    }
    let shm = Path::new("/dev/shm");
    let writable = tempfile::tempdir_in(shm).is_ok();
    if writable { shm.to_owned() } else { out_dir.to_owned() }
}

/// Where a mintd gets its tokens.
enum Tokens<'a> {
    /// Key mode: it holds the App key (this file) and mints for the rig's installation and repository.
    Key(&'a Path),
    /// Broker mode: it asks mint-server at `url` with the sandbox credential in `credential_file`.
    Broker { url: &'a str, credential_file: &'a Path },
}

/// A release mintd on `socket` against fakehub at `url`; returns once the socket is there, with the time
/// that took.
fn spawn_mintd(bin_dir: &Path, url: &str, tokens: &Tokens, socket: &Path) -> anyhow::Result<(Child, Duration)> {
    spawn_mintd_logging(bin_dir, url, tokens, socket, None)
}

/// [`spawn_mintd`], with a debug log of every request (JSON lines, microsecond timestamps) when `log` is
/// given.
fn spawn_mintd_logging(
    bin_dir: &Path,
    url: &str,
    tokens: &Tokens,
    socket: &Path,
    log: Option<&Path>,
) -> anyhow::Result<(Child, Duration)> {
    spawn_mintd_with(bin_dir, url, tokens, socket, log, &format!("{OWNER}/{REPO}"), &[])
}

/// [`spawn_mintd`] in key mode for `repo`, with `extra` arguments (`--git-proxy ADDR`).
fn spawn_mintd_for(
    bin_dir: &Path,
    url: &str,
    tokens: &Tokens,
    socket: &Path,
    repo: &str,
    extra: &[&str],
) -> anyhow::Result<(Child, Duration)> {
    spawn_mintd_with(bin_dir, url, tokens, socket, None, repo, extra)
}

fn spawn_mintd_with(
    bin_dir: &Path,
    url: &str,
    tokens: &Tokens,
    socket: &Path,
    log: Option<&Path>,
    repo: &str,
    extra: &[&str],
) -> anyhow::Result<(Child, Duration)> {
    // MINT_BENCH_MINTD_NICE=-15 runs mintd ahead of the load, as a sidecar with its own CPU share would be.
    let mut command = match std::env::var("MINT_BENCH_MINTD_NICE") {
        Ok(nice) => {
            let mut c = Command::new("nice");
            c.args(["-n", &nice]).arg(bin_dir.join("mintd"));
            c
        }
        Err(_) => Command::new(bin_dir.join("mintd")),
    };
    match log {
        Some(log) => command
            .env("RUST_LOG", "mint_daemon=debug")
            .args(["--log-format", "json"])
            .stderr(std::fs::File::create(log)?),
        None => command.env("RUST_LOG", "warn"),
    };
    match tokens {
        Tokens::Key(key_file) => command
            .args(["--app-id", "1", "--installation-id", "42", "--repo", repo])
            .arg("--private-key")
            .arg(key_file),
        Tokens::Broker { url, credential_file } => command
            .args(["--broker", url])
            .arg("--sandbox-credential-file")
            .arg(credential_file),
    };
    let started = Instant::now();
    let mut child = command
        .arg("--socket")
        .arg(socket)
        .args(["--github-url", url, "--api-url", url])
        // The agent scenarios open a pull request each round, and fakehub's budget is no one else's: the
        // bucket that spares a customer's shared installation budget would hold them after 10.
        .args(["--pull-request-burst", "1000"])
        .args(extra)
        .stdin(Stdio::null())
        .spawn()?;
    while !socket.exists() {
        if let Some(status) = child.try_wait()? {
            bail!("mintd exited with {status} before its socket appeared");
        }
        if started.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            bail!("mintd did not become ready within 10 s");
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    Ok((child, started.elapsed()))
}

/// A secret file as mintd and mint-server require it: mode 0600.
fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(contents.as_bytes()))
        .with_context(|| format!("writing {}", path.display()))
}

/// A child that is killed when dropped, on success or error alike.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
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
