//! Broker mode: a fleet of 1,000 sandboxes asking mint-server for their first token at once (on `SQLite`
//! and on `PostgreSQL`), and what broker mode costs a warm `git credential fill` against key mode.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{
    KillOnDrop, OWNER, REPO, Report, Rig, Scenario, Tokens, kib_to_mib, ms, percentile, spawn_mintd, write_private,
};

#[allow(
    dead_code,
    unreachable_pub,
    reason = "shared with mint-server's tests, which use all of it"
)]
#[path = "../../mint-server/tests/support/postgres.rs"]
pub(crate) mod postgres;

/// Sandboxes in the fleet, each asking for its first token at the same moment.
const SANDBOXES: usize = 1_000;
/// The customers they belong to: one product each, each on its own installation, so that GitHub's
/// concurrency allowance per installation (100 requests in flight, `--mints-per-installation 100`) is not
/// what the fleet waits for, and the broker's own cost shows.
const CUSTOMERS: u64 = 10;
pub(crate) const FLEET_REPO: &str = "app";

/// The fleet's installations and their accounts.
pub(crate) fn fleet_accounts() -> impl Iterator<Item = (u64, String)> {
    (1..=CUSTOMERS).map(|i| (100 + i, format!("customer-{i}")))
}
/// How long fakehub takes to mint: the least any broker answer can take.
const MINT_LATENCY: Duration = Duration::from_millis(300);
pub(crate) const ADMIN_TOKEN: &str = "mint-bench-admin-token-0123456789abcdefghij";
const TOKEN_ROUTE: &str = "/api/v1/token";

pub(crate) fn run(rig: &Rig, n: usize, report: &mut Report) -> anyhow::Result<()> {
    let (client, sqlite) = fleets(rig, report)?;
    let mints = warm_fills(rig, &client, &sqlite, n, report)?;
    if mints != 0 {
        bail!("broker mode failed: {mints} mints during the warm fills");
    }
    Ok(())
}

/// The fleet start alone (`MINT_BENCH_ONLY=broker`).
pub(crate) fn fleet_start(rig: &Rig, report: &mut Report) -> anyhow::Result<()> {
    fleets(rig, report).map(drop)
}

/// The fleet start on SQLite, then on PostgreSQL; the SQLite server stays up for the warm fills.
fn fleets(rig: &Rig, report: &mut Report) -> anyhow::Result<(tokio::runtime::Runtime, Server)> {
    if !rig.bin_dir.join("mint-server").exists() {
        bail!("mint-server is not built next to mint-bench: run bench/run, which builds it");
    }
    raise_open_files();
    let client = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let dir = rig.work.path().join("broker");
    std::fs::create_dir_all(&dir)?;
    let pool = db_pool();
    let flags = ["--mints-per-installation", "100", "--db-pool", &pool];
    let sqlite = Server::start_with(
        rig,
        &client,
        &dir.join("sqlite"),
        &format!("sqlite://{}", dir.join("sqlite/mint-server.db").display()),
        &flags,
    )?;
    let mut fleets = vec![("SQLite", fleet(rig, &client, &sqlite)?)];
    // The helper panics with the way out (install PostgreSQL) when its binaries are missing.
    match std::panic::catch_unwind(postgres::Postgres::start) {
        Ok(pg) => {
            let server = Server::start_with(rig, &client, &dir.join("postgres"), &pg.database("mint"), &flags)?;
            fleets.push(("PostgreSQL", fleet(rig, &client, &server)?));
        }
        Err(_) => eprintln!("mint-bench: PostgreSQL is not available, so the fleet runs on SQLite only"),
    }
    report_fleets(&mut fleets, report)?;
    let missed: Vec<String> = fleets
        .iter()
        .filter(|(_, f)| f.ok() != SANDBOXES || f.mints != SANDBOXES)
        .map(|(db, f)| format!("{db}: {} of {SANDBOXES} got a token, {} mints", f.ok(), f.mints))
        .collect();
    if !missed.is_empty() {
        bail!("the broker's fleet start failed: {}", missed.join("; "));
    }
    Ok((client, sqlite))
}

/// What one fleet start gave.
struct Fleet {
    /// Every request's HTTP status (0: no answer) and latency, connect to last byte.
    answers: Vec<(u16, Duration)>,
    /// The first answer of each failed kind, to say why.
    failures: Vec<String>,
    /// Tokens fakehub minted during the fleet's requests (the connection's own check is not counted).
    mints: usize,
    wall: Duration,
    /// Creating the product, its connection and the 1,000 sandboxes, one request after another.
    setup: Duration,
    peak_rss_kib: u64,
    /// CPU time during the requests: mint-server's, and this process's (fakehub and the client).
    server_cpu: Duration,
    bench_cpu: Duration,
    /// The whole machine's CPU during the requests (the database's too): busy, and busy plus idle.
    machine_cpu: (Duration, Duration),
    /// fakehub's calls during the requests: "METHOD path-with-{n} status" and how many.
    github_calls: Vec<(String, usize)>,
    /// mint-server's own account of where the requests' time went, step by step.
    phases: Vec<PhaseTimes>,
}

/// One step of the token route, from mint-server's `mint_server_token_phase_duration_seconds`.
struct PhaseTimes {
    phase: String,
    count: f64,
    mean: Duration,
    /// The histogram's bucket bounds under which half, and 99 %, of the requests' times fell.
    p50_under: f64,
    p99_under: f64,
}

impl Fleet {
    fn ok(&self) -> usize {
        self.answers.iter().filter(|(status, _)| *status == 200).count()
    }
}

/// One product connected to the rig's repository, 1,000 sandboxes of it, then every sandbox's first
/// `POST /api/v1/token` at once while fakehub takes 300 ms per mint.
fn fleet(rig: &Rig, client: &tokio::runtime::Runtime, server: &Server) -> anyhow::Result<Fleet> {
    let started = Instant::now();
    let mut credentials = Vec::with_capacity(SANDBOXES);
    let per_customer = SANDBOXES / usize::try_from(CUSTOMERS)?;
    for (installation, account) in fleet_accounts() {
        let product = client.block_on(server.product_on(installation, &format!("{account}/{FLEET_REPO}")))?;
        for _ in 0..per_customer {
            credentials.push(client.block_on(server.sandbox(&product))?);
        }
    }
    let setup = started.elapsed();

    let minted_before = minted(rig);
    let calls_before = rig.hub.requests().len();
    let cpu_before = (cpu_time(server.pid())?, cpu_time("self")?, machine_cpu()?);
    rig.hub.set_mint_latency(MINT_LATENCY);
    let burst = client.block_on(burst(server.addr, credentials));
    rig.hub.set_mint_latency(Duration::ZERO);
    let (answers, failures, wall) = burst?;
    let phases = client.block_on(server.token_phases())?;
    Ok(Fleet {
        phases,
        server_cpu: cpu_time(server.pid())?.saturating_sub(cpu_before.0),
        bench_cpu: cpu_time("self")?.saturating_sub(cpu_before.1),
        machine_cpu: {
            let (busy, all) = machine_cpu()?;
            (busy.saturating_sub(cpu_before.2.0), all.saturating_sub(cpu_before.2.1))
        },
        answers,
        failures,
        mints: minted(rig) - minted_before,
        github_calls: calls_by_route(&rig.hub.requests()[calls_before..]),
        wall,
        setup,
        peak_rss_kib: server.peak_rss_kib()?,
    })
}

/// fakehub's calls, counted by method, path (numbers as `{n}`) and status, most first.
fn calls_by_route(calls: &[fakehub::RequestRecord]) -> Vec<(String, usize)> {
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for call in calls {
        let path: Vec<&str> = call
            .path
            .split('/')
            .map(|part| {
                if part.bytes().all(|b| b.is_ascii_digit()) && !part.is_empty() {
                    "{n}"
                } else {
                    part
                }
            })
            .collect();
        *counts
            .entry(format!("{} {} {}", call.method, path.join("/"), call.status))
            .or_default() += 1;
    }
    let mut counts: Vec<_> = counts.into_iter().collect();
    counts.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
    counts
}

/// Every credential's request behind one barrier, each on its own connection; the answers, the first
/// failure of each kind, and the time from the barrier to the last answer.
async fn burst(
    addr: SocketAddr,
    credentials: Vec<String>,
) -> anyhow::Result<(Vec<(u16, Duration)>, Vec<String>, Duration)> {
    let barrier = Arc::new(tokio::sync::Barrier::new(credentials.len() + 1));
    let tasks: Vec<_> = credentials
        .into_iter()
        .map(|credential| {
            let barrier = Arc::clone(&barrier);
            tokio::spawn(async move {
                barrier.wait().await;
                let started = Instant::now();
                let answer = request(addr, "POST", TOKEN_ROUTE, Some(&credential), None).await;
                (answer, started.elapsed())
            })
        })
        .collect();
    barrier.wait().await;
    let started = Instant::now();
    let mut answers = Vec::with_capacity(tasks.len());
    let mut failures: Vec<String> = Vec::new();
    for task in tasks {
        let (answer, took) = task.await?;
        let (status, why) = match answer {
            Ok((200, _)) => (200, None),
            Ok((status, body)) => (status, Some(format!("{status} {body}"))),
            Err(e) => (0, Some(format!("no answer: {e}"))),
        };
        if let Some(why) = why
            && !failures.iter().any(|f| f.split(' ').next() == why.split(' ').next())
        {
            failures.push(why);
        }
        answers.push((status, took));
    }
    Ok((answers, failures, started.elapsed()))
}

/// mint-server's `--db-pool` in the fleet start, to compare sizes (bench/run's `MINT_BENCH_DB_POOL`).
fn db_pool() -> String {
    std::env::var("MINT_BENCH_DB_POOL").unwrap_or_else(|_| "16".into())
}

fn report_fleets(fleets: &mut [(&str, Fleet)], report: &mut Report) -> anyhow::Result<()> {
    let mut csv = String::from("database,status,latency_ms\n");
    let pool = db_pool();
    report.line(format!(
        "\nbroker fleet start: {SANDBOXES} sandboxes ({CUSTOMERS} customers, each its own installation) ask mint-server (--mints-per-installation 100 --db-pool {pool}) for their first `POST {TOKEN_ROUTE}` at once, fakehub minting after {} ms",
        MINT_LATENCY.as_millis()
    ));
    report.line(format!(
        "  {:<11} {:>13} {:>6} {:>9} {:>9} {:>9} {:>8} {:>13} {:>9} {:>11} {:>10} {:>17} {:>15}",
        "database",
        "200s",
        "mints",
        "p50",
        "p99",
        "max",
        "wall",
        "p50 ÷ 300 ms",
        "peak RSS",
        "server CPU",
        "bench CPU",
        "all CPU (busy)",
        "setup (1 by 1)"
    ));
    for (database, fleet) in fleets.iter_mut() {
        for (status, took) in &fleet.answers {
            writeln!(csv, "{database},{status},{:.3}", ms(*took))?;
        }
        let mut latencies: Vec<Duration> = fleet.answers.iter().map(|(_, took)| *took).collect();
        let p50 = percentile(&mut latencies, 50);
        report.line(format!(
            "  {database:<11} {:>5} of {SANDBOXES:<5} {:>6} {:>6.0} ms {:>6.0} ms {:>6.0} ms {:>6.2} s {:>12.2}x {:>5.1} MiB {:>9.2} s {:>8.2} s {:>7.2} s ({:>3.0} %) {:>13.2} s",
            fleet.ok(),
            fleet.mints,
            ms(p50),
            ms(percentile(&mut latencies, 99)),
            ms(percentile(&mut latencies, 100)),
            fleet.wall.as_secs_f64(),
            p50.as_secs_f64() / MINT_LATENCY.as_secs_f64(),
            kib_to_mib(fleet.peak_rss_kib),
            fleet.server_cpu.as_secs_f64(),
            fleet.bench_cpu.as_secs_f64(),
            fleet.machine_cpu.0.as_secs_f64(),
            100.0 * fleet.machine_cpu.0.as_secs_f64() / fleet.machine_cpu.1.as_secs_f64().max(f64::EPSILON),
            fleet.setup.as_secs_f64(),
        ));
        let calls: Vec<String> = fleet
            .github_calls
            .iter()
            .map(|(call, n)| format!("{n} × {call}"))
            .collect();
        report.line(format!("    {database}: fakehub answered {}", calls.join(", ")));
        let phases: Vec<String> = fleet
            .phases
            .iter()
            .map(|p| {
                format!(
                    "{} {:.0} ms (p50 ≤ {} ms, p99 ≤ {} ms, {} requests)",
                    p.phase,
                    ms(p.mean),
                    p.p50_under * 1000.0,
                    p.p99_under * 1000.0,
                    p.count
                )
            })
            .collect();
        report.line(format!("    {database}: mean time per step: {}", phases.join("; ")));
        for failure in &fleet.failures {
            report.line(format!("    {database} failed: {failure}"));
        }
    }
    report.line(format!(
        "  (targets: {SANDBOXES} of {SANDBOXES} answered 200, exactly {SANDBOXES} mints at fakehub; p50 ÷ 300 ms: 1.00x is GitHub's latency alone)"
    ));
    report.line("  latency: connect to the answer's last byte, per request; peak RSS: mint-server's VmHWM; CPU: user + system during the requests, mint-server's, the bench's (fakehub, the client), and the whole machine's, every process and core (the database's too), with its share of what the cores could give; setup: the product, its connection and the sandboxes created one request at a time");
    report.file("fleet.csv", &csv)
}

/// Warm `git credential fill`s through mintd in broker mode and in key mode, interleaved; returns how many
/// tokens were minted during them (the warm path reaches neither GitHub nor the broker: 0).
fn warm_fills(
    rig: &Rig,
    client: &tokio::runtime::Runtime,
    server: &Server,
    n: usize,
    report: &mut Report,
) -> anyhow::Result<usize> {
    let dir = rig.work.path().join("broker/mintd");
    std::fs::create_dir_all(&dir)?;
    let product = client.block_on(server.product())?;
    let credential_file = dir.join("sandbox-credential");
    write_private(&credential_file, &client.block_on(server.sandbox(&product))?)?;
    let socket = dir.join("mint.sock");
    let (mintd, _) = spawn_mintd(
        &rig.bin_dir,
        &rig.hub.url(),
        &Tokens::Broker {
            url: &server.url(),
            credential_file: &credential_file,
        },
        &socket,
    )?;
    let _mintd = KillOnDrop(mintd);
    let helper = rig.static_helper.display().to_string();
    // The first fill is cold: mintd asks the broker, which mints.
    if !String::from_utf8_lossy(&rig.fill(&helper, &socket)?).contains("password=") {
        bail!("mintd in broker mode gave git no password");
    }
    let minted_before = minted(rig);
    let mut fill = Scenario::new(
        "warm `git credential fill` in broker mode, static helper (target: broker ÷ key mode ≤ 1.0, the warm path never reaches the broker)",
        &[
            "mintd --broker (mint-server)",
            "mintd with the App key",
            "git credential-cache",
        ],
    );
    let cache = rig.cache_helper();
    for round in 0..n {
        for k in 0..3 {
            let i = (round + k) % 3;
            fill.time(i, || match i {
                0 => rig.fill(&helper, &socket),
                1 => rig.fill(&helper, &rig.socket),
                _ => rig.fill(&cache, &rig.socket),
            })?;
        }
    }
    let reached = minted(rig) - minted_before;
    let broker_to_key = crate::median(&mut fill.samples[0].clone()).as_secs_f64()
        / crate::median(&mut fill.samples[1].clone()).as_secs_f64();
    fill.report(report, 2)?;
    report.line(format!("  broker ÷ key mode: {broker_to_key:.2} (target ≤ 1.0)"));
    report.goal("broker mode: warm fill ÷ key mode", broker_to_key, 1.0, "x");
    report.line(format!(
        "  tokens minted during the {} warm mint fills: {reached} (target: 0)",
        n * 2
    ));
    Ok(reached)
}

/// The release mint-server as a child, on `database`, with the rig's App key; stopped when dropped.
pub(crate) struct Server {
    child: KillOnDrop,
    pub(crate) addr: SocketAddr,
}

impl Server {
    /// mint-server on `database`, with `extra` flags, ready when this returns.
    pub(crate) fn start_with(
        rig: &Rig,
        client: &tokio::runtime::Runtime,
        dir: &Path,
        database: &str,
        extra: &[&str],
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let admin_token = dir.join("admin-token");
        write_private(&admin_token, ADMIN_TOKEN)?;
        let addr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        let log = dir.join("mint-server.log");
        let hub = rig.hub.url();
        let child = Command::new(rig.bin_dir.join("mint-server"))
            .args(["--app-id", "1"])
            .arg("--private-key")
            .arg(rig.work.path().join("app.pem"))
            .arg("--admin-token-file")
            .arg(&admin_token)
            .args(["--database", database])
            .args(["--listen", &addr.to_string()])
            .args(["--github-url", &hub, "--api-url", &hub])
            .args(extra)
            .env_clear()
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .context("starting mint-server")?;
        let mut server = Self {
            child: KillOnDrop(child),
            addr,
        };
        let started = Instant::now();
        while !matches!(
            client.block_on(request(addr, "GET", "/readyz", None, None)),
            Ok((200, _))
        ) {
            if let Some(status) = server.child.0.try_wait()? {
                bail!("mint-server exited with {status}:\n{}", log_tail(&log));
            }
            if started.elapsed() > Duration::from_secs(30) {
                bail!("mint-server was not ready within 30 s:\n{}", log_tail(&log));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(server)
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A product connected to the rig's repository (mint-server checks it with GitHub by minting once);
    /// its id.
    pub(crate) async fn product(&self) -> anyhow::Result<String> {
        self.product_on(42, &format!("{OWNER}/{REPO}")).await
    }

    /// A product connected to `repository` through `installation`; its id.
    pub(crate) async fn product_on(&self, installation: u64, repository: &str) -> anyhow::Result<String> {
        let body = json!({"name": "mint-bench", "members": []});
        let created = self.admin("POST", "/api/v1/products", Some(&body), 201).await?;
        let id = created["id"].as_str().context("a product id")?.to_owned();
        let connection = json!({"installation_id": installation, "repository": repository});
        self.admin(
            "PUT",
            &format!("/api/v1/products/{id}/connection"),
            Some(&connection),
            200,
        )
        .await?;
        Ok(id)
    }

    /// A new sandbox of `product`; its credential.
    pub(crate) async fn sandbox(&self, product: &str) -> anyhow::Result<String> {
        let created = self
            .admin("POST", &format!("/api/v1/products/{product}/sandboxes"), None, 201)
            .await?;
        Ok(created["credential"]
            .as_str()
            .context("a sandbox credential")?
            .to_owned())
    }

    async fn admin(&self, method: &str, path: &str, body: Option<&Value>, expected: u16) -> anyhow::Result<Value> {
        let (status, answer) = request(self.addr, method, path, Some(ADMIN_TOKEN), body).await?;
        if status != expected {
            bail!("mint-server answered {method} {path} with {status}: {answer}");
        }
        Ok(answer)
    }

    /// The token route's steps as mint-server's `/metrics` counts them, in the route's order.
    async fn token_phases(&self) -> anyhow::Result<Vec<PhaseTimes>> {
        const METRIC: &str = "mint_server_token_phase_duration_seconds";
        let (status, body) = request(self.addr, "GET", "/metrics", Some(ADMIN_TOKEN), None).await?;
        let text = body
            .as_str()
            .filter(|_| status == 200)
            .with_context(|| format!("GET /metrics answered {status}"))?;
        let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))?;
        let value = |name: &str, phase: &str| {
            scrape
                .samples
                .iter()
                .find(|s| s.metric == name && s.labels.get("phase") == Some(phase))
                .map(|s| &s.value)
        };
        let mut phases = Vec::new();
        for phase in ["view", "sandbox", "installation", "github", "record"] {
            let Some(prometheus_parse::Value::Histogram(buckets)) = value(METRIC, phase) else {
                continue;
            };
            let number = |name: &str| match value(name, phase) {
                Some(prometheus_parse::Value::Untyped(v) | prometheus_parse::Value::Counter(v)) => *v,
                _ => 0.0,
            };
            let count = number(&format!("{METRIC}_count"));
            let under = |share: f64| {
                buckets
                    .iter()
                    .find(|b| b.count >= count * share)
                    .map_or(f64::INFINITY, |b| b.less_than)
            };
            phases.push(PhaseTimes {
                phase: phase.to_owned(),
                count,
                mean: Duration::from_secs_f64(number(&format!("{METRIC}_sum")) / count.max(1.0)),
                p50_under: under(0.5),
                p99_under: under(0.99),
            });
        }
        Ok(phases)
    }

    pub(crate) fn pid(&self) -> String {
        self.child.0.id().to_string()
    }

    /// mint-server's peak resident memory so far (`VmHWM`).
    pub(crate) fn peak_rss_kib(&self) -> anyhow::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.0.id()))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .context("no VmHWM in /proc/PID/status")
    }
}

/// One HTTP/1.1 request on a connection of its own, as each sandbox's mintd opens one; the status and the
/// JSON body (or its text as a string). mint-server sends a Content-Length, and `Connection: close` ends
/// the answer.
pub(crate) async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    body: Option<&Value>,
) -> std::io::Result<(u16, Value)> {
    let body = body.map(Value::to_string).unwrap_or_default();
    let auth = bearer
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    let text = String::from_utf8_lossy(&raw);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP answer: {} bytes", raw.len())))?;
    let payload = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    Ok((
        status,
        serde_json::from_str(payload).unwrap_or_else(|_| Value::String(payload.to_owned())),
    ))
}

/// Linux reports CPU time in `USER_HZ` ticks, 100 a second on every architecture's user ABI.
const TICKS_PER_SECOND: u64 = 100;

/// The machine's CPU time so far, all cores: (busy, busy plus idle), from /proc/stat's `cpu` line. Busy is
/// everything but idle and I/O wait, so the database's share is in it.
fn machine_cpu() -> anyhow::Result<(Duration, Duration)> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let ticks: Vec<u64> = stat
        .lines()
        .next()
        .and_then(|line| line.strip_prefix("cpu "))
        .context("no cpu line in /proc/stat")?
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .context("/proc/stat")?;
    // user nice system idle iowait irq softirq steal (guest time is counted in user already).
    let all: u64 = ticks.iter().take(8).sum();
    let idle = ticks.get(3).copied().unwrap_or(0) + ticks.get(4).copied().unwrap_or(0);
    let ms = |t: u64| Duration::from_millis(t * 1000 / TICKS_PER_SECOND);
    Ok((ms(all - idle), ms(all)))
}

/// User plus system CPU time of process `pid` (or "self") and all its threads so far.
pub(crate) fn cpu_time(pid: impl std::fmt::Display) -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name, in parentheses, may hold spaces: count fields after it (state is the first).
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .context("/proc/PID/stat")?
        .1
        .split_whitespace()
        .collect();
    let ticks = |i: usize| -> anyhow::Result<u64> {
        fields
            .get(i)
            .context("/proc/PID/stat is short")?
            .parse()
            .context("/proc/PID/stat")
    };
    Ok(Duration::from_millis(
        (ticks(11)? + ticks(12)?) * 1000 / TICKS_PER_SECOND,
    ))
}

/// Tokens fakehub has minted so far (failed attempts not counted).
pub(crate) fn minted(rig: &Rig) -> usize {
    rig.hub.mints().iter().filter(|m| m.status == 201).count()
}

/// 1,000 connections at once need more descriptors than the common soft limit of 1,024.
pub(crate) fn raise_open_files() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    const WANTED: u64 = 16_384;
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
        && soft < WANTED
    {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, WANTED.min(hard), hard);
    }
}

fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}
