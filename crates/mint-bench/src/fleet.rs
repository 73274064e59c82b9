//! The fleet start: 2,000 sandboxes, each asking for its first token within 10 s, through a real HAProxy
//! to 1, 2 and 3 mint-server replicas on one PostgreSQL (and to one replica on `SQLite`, side by side), while
//! fakehub takes 300 ms a mint and answers at most 100 at once (GitHub's secondary limit). Then the steady
//! state: 10,000 sandboxes refreshing hourly, on 2 replicas.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;

use crate::broker::postgres::Postgres;
use crate::broker::{Server, cpu_time, minted, raise_open_files, request};
use crate::{Report, Rig, kib_to_mib, ms, percentile};

#[allow(
    dead_code,
    unreachable_pub,
    reason = "shared with the fleet tests, which use all of it"
)]
#[path = "../../mint-server/tests/support/haproxy.rs"]
mod haproxy;

const SANDBOXES: usize = 2_000;
/// The sandboxes' first requests are spread evenly over this.
const SPREAD: Duration = Duration::from_secs(10);
const MINT_LATENCY: Duration = Duration::from_millis(300);
/// fakehub's concurrency limit, and mint-server's `--mints-per-installation`.
const K: usize = 100;
/// 10,000 sandboxes, each refreshing its token once an hour.
const STEADY_RATE_PER_S: f64 = 10_000.0 / 3600.0;
const STEADY_SECONDS: f64 = 20.0;
const TOKEN_ROUTE: &str = "/api/v1/token";

struct Run {
    label: String,
    answers: Vec<(u16, Duration)>,
    failures: Vec<String>,
    mints: usize,
    over_limit: usize,
    github_requests: usize,
    /// Peak connections to the database (all, and those running a query), sampled every 50 ms.
    db_connections: Option<(usize, usize)>,
    /// Each replica's peak RSS (KiB) and CPU during the burst.
    replicas: Vec<(u64, Duration)>,
    wall: Duration,
}

pub(crate) fn run(rig: &Rig, report: &mut Report) -> anyhow::Result<()> {
    if !rig.bin_dir.join("mint-server").exists() {
        bail!("mint-server is not built next to mint-bench: run bench/run, which builds it");
    }
    raise_open_files();
    let client = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let dir = rig.work.path().join("fleet");
    std::fs::create_dir_all(&dir)?;
    let pg = std::panic::catch_unwind(Postgres::start).map_err(|_| {
        anyhow::anyhow!("the fleet start needs PostgreSQL's server binaries: apt-get install postgresql")
    })?;
    let mut runs = Vec::new();
    let sqlite = format!("sqlite://{}", dir.join("sqlite.db").display());
    runs.push(fleet(
        rig,
        &client,
        &dir.join("sqlite"),
        "SQLite, 1 replica",
        &sqlite,
        1,
        None,
    )?);
    let mut steady = None;
    for replicas in 1..=3 {
        let name = format!("fleet{replicas}");
        let database = pg.database(&name);
        let label = format!("PostgreSQL, {replicas} replica{}", if replicas > 1 { "s" } else { "" });
        let (run, servers) = fleet_servers(
            rig,
            &client,
            &dir.join(&name),
            &label,
            &database,
            replicas,
            Some((&pg, name.as_str())),
        )?;
        runs.push(run);
        if replicas == 2 {
            steady = Some(steady_state(rig, &client, &servers)?);
        }
    }
    report_runs(&runs, report)?;
    if let Some(line) = steady {
        report.line(line);
    }
    let missed: Vec<String> = runs
        .iter()
        .filter(|r| r.answers.iter().filter(|(s, _)| *s == 200).count() != SANDBOXES || r.mints != SANDBOXES)
        .map(|r| format!("{}: {} mints", r.label, r.mints))
        .collect();
    if !missed.is_empty() {
        bail!("the fleet start missed its target: {}", missed.join("; "));
    }
    Ok(())
}

fn fleet(
    rig: &Rig,
    client: &tokio::runtime::Runtime,
    dir: &std::path::Path,
    label: &str,
    database: &str,
    replicas: usize,
    pg: Option<(&Postgres, &str)>,
) -> anyhow::Result<Run> {
    Ok(fleet_servers(rig, client, dir, label, database, replicas, pg)?.0)
}

/// `replicas` mint-servers on `database` behind HAProxy; the burst through HAProxy. Returns the servers too
/// (for the steady state).
fn fleet_servers(
    rig: &Rig,
    client: &tokio::runtime::Runtime,
    dir: &std::path::Path,
    label: &str,
    database: &str,
    replicas: usize,
    pg: Option<(&Postgres, &str)>,
) -> anyhow::Result<(Run, Vec<Server>)> {
    let k = K.to_string();
    let mut servers = Vec::new();
    for i in 0..replicas {
        servers.push(Server::start_with(
            rig,
            client,
            &dir.join(format!("replica{i}")),
            database,
            &["--mints-per-installation", &k],
        )?);
    }
    let urls: Vec<String> = servers.iter().map(Server::url).collect();
    let proxy = haproxy::HaProxy::start(&urls.iter().map(String::as_str).collect::<Vec<_>>());
    let proxy_addr: std::net::SocketAddr = ([127, 0, 0, 1], proxy.port).into();
    let product = client.block_on(servers[0].product())?;
    let mut credentials = Vec::with_capacity(SANDBOXES);
    for _ in 0..SANDBOXES {
        credentials.push(client.block_on(servers[0].sandbox(&product))?);
    }

    let (minted_before, requests_before, over_before) =
        (minted(rig), rig.hub.requests().len(), rig.hub.mints_over_limit());
    let cpu_before: Vec<Duration> = servers
        .iter()
        .map(|s| cpu_time(s.pid()))
        .collect::<anyhow::Result<_>>()?;
    rig.hub.set_mint_latency(MINT_LATENCY);
    rig.hub.set_max_concurrent_mints(K);
    let sampling = AtomicBool::new(true);
    let started = Instant::now();
    let (answers, db_connections) = std::thread::scope(|scope| {
        let sampler = pg.map(|(pg, name)| {
            let sampling = &sampling;
            scope.spawn(move || {
                let sql = format!(
                    "SELECT count(*) || ',' || count(*) FILTER (WHERE state = 'active') FROM pg_stat_activity WHERE datname = '{name}'"
                );
                let mut peak = (0usize, 0usize);
                while sampling.load(Ordering::Relaxed) {
                    let counts = pg.query(name, &sql);
                    if let Some((all, active)) = counts.split_once(',')
                        && let (Ok(all), Ok(active)) = (all.parse::<usize>(), active.parse::<usize>())
                    {
                        // psql's own connection is one of them, and the one running the query.
                        peak = (peak.0.max(all - 1), peak.1.max(active.saturating_sub(1)));
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                peak
            })
        });
        let answers = client.block_on(spread_burst(proxy_addr, credentials));
        sampling.store(false, Ordering::Relaxed);
        (answers, sampler.and_then(|s| s.join().ok()))
    });
    let wall = started.elapsed();
    rig.hub.set_mint_latency(Duration::ZERO);
    rig.hub.set_max_concurrent_mints(0);
    let (answers, failures) = answers?;
    let mut replica_figures = Vec::new();
    for (server, before) in servers.iter().zip(cpu_before) {
        replica_figures.push((server.peak_rss_kib()?, cpu_time(server.pid())?.saturating_sub(before)));
    }
    let run = Run {
        label: label.to_owned(),
        answers,
        failures,
        mints: minted(rig) - minted_before,
        over_limit: rig.hub.mints_over_limit() - over_before,
        github_requests: rig.hub.requests().len() - requests_before,
        db_connections,
        replicas: replica_figures,
        wall,
    };
    drop(proxy);
    Ok((run, servers))
}

/// Request `i` of `n` starts at `i × SPREAD / n`, each on a connection of its own.
async fn spread_burst(
    addr: std::net::SocketAddr,
    credentials: Vec<String>,
) -> anyhow::Result<(Vec<(u16, Duration)>, Vec<String>)> {
    let n = u32::try_from(credentials.len())?;
    let origin = tokio::time::Instant::now();
    let tasks: Vec<_> = credentials
        .into_iter()
        .zip(0..)
        .map(|(credential, i)| {
            tokio::spawn(async move {
                tokio::time::sleep_until(origin + SPREAD * i / n).await;
                let started = Instant::now();
                let answer = request(addr, "POST", TOKEN_ROUTE, Some(&credential), None).await;
                (answer, started.elapsed())
            })
        })
        .collect();
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
    Ok((answers, failures))
}

/// 10,000 sandboxes refreshing hourly is 2.8 token requests a second: that rate for a while, to the two
/// replicas directly, and their CPU over the wall time.
fn steady_state(rig: &Rig, client: &tokio::runtime::Runtime, servers: &[Server]) -> anyhow::Result<String> {
    let product = client.block_on(servers[0].product())?;
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "a small positive count"
    )]
    let count = (STEADY_RATE_PER_S * STEADY_SECONDS).round() as usize;
    let mut credentials = Vec::with_capacity(count);
    for _ in 0..count {
        credentials.push(client.block_on(servers[0].sandbox(&product))?);
    }
    rig.hub.set_mint_latency(MINT_LATENCY);
    let cpu_before: Vec<Duration> = servers
        .iter()
        .map(|s| cpu_time(s.pid()))
        .collect::<anyhow::Result<_>>()?;
    let started = Instant::now();
    let interval = Duration::from_secs_f64(1.0 / STEADY_RATE_PER_S);
    let mut ok = 0;
    for (i, credential) in credentials.iter().enumerate() {
        let server = &servers[i % servers.len()];
        if let Ok((200, _)) = client.block_on(request(server.addr, "POST", TOKEN_ROUTE, Some(credential), None)) {
            ok += 1;
        }
        let next = interval * u32::try_from(i + 1)?;
        if let Some(wait) = next.checked_sub(started.elapsed()) {
            std::thread::sleep(wait);
        }
    }
    let wall = started.elapsed();
    rig.hub.set_mint_latency(Duration::ZERO);
    let cpu: Duration = servers
        .iter()
        .zip(cpu_before)
        .map(|(s, before)| cpu_time(s.pid()).map(|c| c.saturating_sub(before)))
        .sum::<anyhow::Result<Duration>>()?;
    Ok(format!(
        "\nsteady state: 10,000 sandboxes refreshing hourly ({STEADY_RATE_PER_S:.2} tokens/s) on 2 PostgreSQL replicas for {:.0} s: {ok} of {count} answered 200; the replicas' CPU together {:.3} s = {:.2} % of one core",
        wall.as_secs_f64(),
        cpu.as_secs_f64(),
        100.0 * cpu.as_secs_f64() / wall.as_secs_f64()
    ))
}

fn report_runs(runs: &[Run], report: &mut Report) -> anyhow::Result<()> {
    let mut csv = String::from("setup,status,latency_ms\n");
    report.line(format!(
        "\nfleet start through HAProxy: {SANDBOXES} sandboxes' first `POST {TOKEN_ROUTE}` spread over {} s, fakehub minting in {} ms with at most {K} at once (mint-server --mints-per-installation {K})",
        SPREAD.as_secs(),
        MINT_LATENCY.as_millis()
    ));
    report.line(format!(
        "  {:<24} {:>13} {:>6} {:>5} {:>8} {:>8} {:>8} {:>10} {:>8} {:>9}  {}",
        "setup",
        "200s",
        "mints",
        "403s",
        "p50",
        "p99",
        "p99-300",
        "GH req/mint",
        "wall",
        "DB conns",
        "each replica: peak RSS, CPU"
    ));
    for run in runs {
        for (status, took) in &run.answers {
            writeln!(csv, "{},{status},{:.3}", run.label, ms(*took))?;
        }
        let mut latencies: Vec<Duration> = run.answers.iter().map(|(_, t)| *t).collect();
        let (p50, p99) = (percentile(&mut latencies, 50), percentile(&mut latencies, 99));
        #[expect(clippy::cast_precision_loss, reason = "small counts")]
        let per_mint = run.github_requests as f64 / run.mints.max(1) as f64;
        let replicas: Vec<String> = run
            .replicas
            .iter()
            .map(|(rss, cpu)| format!("{:.1} MiB {:.2} s", kib_to_mib(*rss), cpu.as_secs_f64()))
            .collect();
        report.line(format!(
            "  {:<24} {:>5} of {SANDBOXES:<5} {:>6} {:>5} {:>5.0} ms {:>5.0} ms {:>5.0} ms {:>10.2} {:>6.2} s {:>9}  {}",
            run.label,
            run.answers.iter().filter(|(s, _)| *s == 200).count(),
            run.mints,
            run.over_limit,
            ms(p50),
            ms(p99),
            ms(p99) - ms(MINT_LATENCY),
            per_mint,
            run.wall.as_secs_f64(),
            run.db_connections.map_or_else(|| "-".to_owned(), |(all, active)| format!("{all}/{active}")),
            replicas.join("; ")
        ));
        for failure in &run.failures {
            report.line(format!("    {} failed: {failure}", run.label));
        }
    }
    report.line("  (targets: 2,000 of 2,000 answered 200, exactly 2,000 mints, no 403 from GitHub's concurrency limit; p99 − 300 ms ≤ 50 ms on 2 replicas)");
    report.line("  latency: connect to the answer's last byte through HAProxy; GH req/mint: every request fakehub saw during the burst ÷ mints; DB conns: peak connections to the database / peak running a query, sampled every 50 ms; CPU: user + system during the burst");
    report.file("fleet-replicas.csv", &csv)
}
