//! mintd under load: a cold burst of git commands while GitHub is slow to mint, and a steady rate of
//! credential requests on the socket for 30 s with memory watched.

use std::fmt::Write as _;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::{KillOnDrop, OWNER, REPO, Report, Rig, Tokens, kib_to_mib, ms, percentile, rss_kib, spawn_mintd_logging};

/// Concurrent `git credential fill`s and `git ls-remote`s in the burst, and how long fakehub takes to mint.
const BURST_FILLS: usize = 200;
const BURST_LS_REMOTES: usize = 32;
const MINT_LATENCY: Duration = Duration::from_millis(500);

/// One git command of the burst: when it started and ended, relative to the burst's start.
struct Sample {
    kind: &'static str,
    start: Duration,
    end: Duration,
    ok: bool,
}

/// A cold mintd (nothing minted yet), fakehub answering mints after 0.5 s, and 232 git commands at once.
pub(crate) fn burst(rig: &Rig, report: &mut Report) -> anyhow::Result<()> {
    let socket = rig.work.path().join("burst/mint.sock");
    std::fs::create_dir_all(rig.work.path().join("burst"))?;
    let log = rig.work.path().join("burst/mintd.log");
    let (mintd, _) = spawn_mintd_logging(
        &rig.bin_dir,
        &rig.hub.url(),
        &Tokens::Key(&rig.work.path().join("app.pem")),
        &socket,
        Some(&log),
    )?;
    let mints_before = rig.hub.mints().len();
    rig.hub.set_mint_latency(MINT_LATENCY);
    let url = format!("{}/{OWNER}/{REPO}.git", rig.hub.url());

    let mintd = KillOnDrop(mintd);
    let started = Instant::now();
    let started_wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs_f64()
        % 86_400.0;
    let samples = launch(rig, &socket, &url, started);
    rig.hub.set_mint_latency(Duration::ZERO);
    let samples = samples?;
    let mint_count = rig.hub.mints().len() - mints_before;
    let rss_after = rss_kib(&mintd.0)?;
    drop(mintd);

    // mintd's side, from its log: when the token was minted, and when each request queued behind the mint
    // was answered after it.
    let log = std::fs::read_to_string(&log)?;
    report.file("burst-mintd.log", &log)?;
    let (minted_at, mut released) = release_times(&log)?;
    // git's side: the token reaches the first command at `token_at`; after that, every command waits for
    // its own work and for the CPU, which 232 processes share with fakehub on this machine.
    let token_at = samples
        .iter()
        .filter(|s| s.ok)
        .map(|s| s.end)
        .min()
        .context("no command succeeded")?;
    let mut after: Vec<Duration> = samples
        .iter()
        .filter(|s| s.kind == "fill")
        .map(|s| s.end.saturating_sub(s.start.max(token_at)))
        .collect();
    let failed = samples.iter().filter(|s| !s.ok).count();
    let mut csv = format!(
        "# minted_ms={:.3}\nkind,start_ms,end_ms,ok\n",
        (minted_at - started_wall) * 1000.0
    );
    for s in &samples {
        writeln!(csv, "{},{:.3},{:.3},{}", s.kind, ms(s.start), ms(s.end), s.ok)?;
    }
    report.file("burst.csv", &csv)?;
    report.line(format!(
        "\ncold burst: {BURST_FILLS} `git credential fill` + {BURST_LS_REMOTES} `git ls-remote` at once, fakehub minting after {} ms",
        MINT_LATENCY.as_millis()
    ));
    report.line(format!(
        "  succeeded {:>4} of {:<4} (target: all)       mints {mint_count} (target: exactly 1)",
        samples.len() - failed,
        samples.len()
    ));
    report.line(format!(
        "  mintd: {} requests answered after the mint, beyond its arrival and the mint: median {:.2} ms, p99 {:.2} ms (target ≤ 20 ms)",
        released.len(),
        ms(percentile(&mut released, 50)),
        ms(percentile(&mut released, 99)),
    ));
    report.line(format!(
        "  git: first token at {:>6.1} ms after the start ({:.1} ms after mintd minted it); from then to each fill's end: median {:.1} ms, p99 {:.1} ms",
        ms(token_at),
        ms(token_at) - (minted_at - started_wall) * 1000.0,
        ms(percentile(&mut after, 50)),
        ms(percentile(&mut after, 99)),
    ));
    report.line(format!(
        "  mintd RSS after the burst {:>6.1} MiB (target ≤ 16 MiB)",
        kib_to_mib(rss_after)
    ));
    if failed > 0 || mint_count != 1 {
        bail!("the burst failed: {failed} commands failed, {mint_count} mints");
    }
    Ok(())
}

/// Credential requests on the socket at a fixed rate for `seconds`, open loop: each latency is measured
/// from when the request was due, so a stall shows in every request it delays.
pub(crate) fn steady(rig: &Rig, rate: u32, seconds: u32, report: &mut Report) -> anyhow::Result<()> {
    let client = mint_api::Client::new(&rig.socket);
    let body = rig.request.as_bytes();
    let interval = Duration::from_secs(1) / rate;
    let total = rate * seconds;
    let mut latencies = Vec::with_capacity(total as usize);
    let mut errors = 0usize;
    let mut rss = vec![(0.0, rss_kib(&rig.mintd)?)];
    let mut csv = String::from("due_s,latency_ms\n");
    let started = Instant::now();
    for i in 0..total {
        let due = interval * i;
        if let Some(wait) = due.checked_sub(started.elapsed()) {
            std::thread::sleep(wait);
        }
        let answer = client.request("POST", mint_api::route::CREDENTIAL_GET, body);
        let latency = started.elapsed().saturating_sub(due);
        if !matches!(&answer, Ok(r) if r.status == 200) {
            errors += 1;
        }
        latencies.push(latency);
        writeln!(csv, "{:.4},{:.3}", due.as_secs_f64(), ms(latency))?;
        if (i + 1) % rate == 0 {
            rss.push((started.elapsed().as_secs_f64(), rss_kib(&rig.mintd)?));
        }
    }
    report.file("steady.csv", &csv)?;
    let mut rss_csv = String::from("t_s,rss_kib\n");
    for (t, kib) in &rss {
        writeln!(rss_csv, "{t:.2},{kib}")?;
    }
    report.file("steady-rss.csv", &rss_csv)?;
    let first = rss[1.min(rss.len() - 1)].1;
    let last = rss.last().map_or(0, |r| r.1);
    let max = rss.iter().map(|r| r.1).max().unwrap_or(0);
    report.line(format!(
        "\nsteady load: {rate} credential requests/s on the socket for {seconds} s ({total} requests, open loop)"
    ));
    report.line(format!(
        "  latency median {:.3} ms, p99 {:.3} ms (target ≤ 5 ms), max {:.3} ms; errors {errors} (target 0)",
        ms(percentile(&mut latencies, 50)),
        ms(percentile(&mut latencies, 99)),
        ms(percentile(&mut latencies, 100)),
    ));
    report.line(format!(
        "  mintd RSS after 1 s {:.1} MiB, at the end {:.1} MiB, max {:.1} MiB (target: flat)",
        kib_to_mib(first),
        kib_to_mib(last),
        kib_to_mib(max)
    ));
    Ok(())
}

/// Start every command of the burst at once (behind a barrier) and collect when each started and ended.
fn launch(rig: &Rig, socket: &std::path::Path, url: &str, started: Instant) -> anyhow::Result<Vec<Sample>> {
    let barrier = Arc::new(std::sync::Barrier::new(BURST_FILLS + BURST_LS_REMOTES));
    let mut threads = Vec::new();
    for i in 0..BURST_FILLS + BURST_LS_REMOTES {
        let mut command = rig.git(&rig.helper_path());
        command.env("MINT_SOCKET", socket);
        let (kind, input) = if i < BURST_FILLS {
            command.args(["credential", "fill"]);
            ("fill", Some(rig.request.clone()))
        } else {
            command.args(["ls-remote", "-q", url]);
            ("ls-remote", None)
        };
        let barrier = Arc::clone(&barrier);
        threads.push(std::thread::spawn(move || -> anyhow::Result<Sample> {
            barrier.wait();
            let start = started.elapsed();
            let ok = run_quietly(&mut command, input.as_deref())?;
            Ok(Sample {
                kind,
                start,
                end: started.elapsed(),
                ok,
            })
        }));
    }
    threads
        .into_iter()
        .map(|thread| thread.join().map_err(|_| anyhow::anyhow!("a burst thread panicked"))?)
        .collect()
}

/// From mintd's JSON log: the time of "minted installation token" and, for every credential request
/// answered after it, how long after it the answer came.
fn release_times(log: &str) -> anyhow::Result<(f64, Vec<Duration>)> {
    let mut minted = None;
    let mut answers = Vec::new();
    for line in log.lines() {
        let Ok(event) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let at = event["timestamp"].as_str().and_then(seconds_of_day);
        let fields = &event["fields"];
        match (fields["message"].as_str(), at) {
            (Some("minted installation token"), Some(at)) => minted = Some(at),
            (Some("request"), Some(at)) if fields["route"] == mint_api::route::CREDENTIAL_GET => {
                #[expect(clippy::cast_precision_loss, reason = "microseconds of one request")]
                let took = elapsed_us(&fields["elapsed_us"]) as f64 / 1e6;
                answers.push((at - took, at));
            }
            _ => {}
        }
    }
    let minted = minted.context("mintd's log has no mint")?;
    // Each request answered after the mint: how long it waited beyond both its arrival and the mint.
    let released = answers
        .into_iter()
        .filter(|&(_, at)| at >= minted)
        .map(|(arrived, at)| Duration::from_secs_f64(at - arrived.max(minted)))
        .collect();
    Ok((minted, released))
}

/// tracing's JSON writes numbers recorded with `%` as strings.
fn elapsed_us(value: &serde_json::Value) -> u64 {
    value.as_u64().or_else(|| value.as_str()?.parse().ok()).unwrap_or(0)
}

/// `2026-11-25T15:51:08.171421Z` → seconds since midnight (the burst never spans one).
fn seconds_of_day(timestamp: &str) -> Option<f64> {
    let time = timestamp.split_once('T')?.1.trim_end_matches('Z');
    let mut parts = time.split(':');
    let (h, m, s) = (parts.next()?, parts.next()?, parts.next()?);
    Some(h.parse::<f64>().ok()? * 3600.0 + m.parse::<f64>().ok()? * 60.0 + s.parse::<f64>().ok()?)
}

/// Run a git command with `input` on stdin, output discarded; did it succeed?
fn run_quietly(command: &mut Command, input: Option<&str>) -> anyhow::Result<bool> {
    use std::io::Write;
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(input.unwrap_or_default().as_bytes());
    }
    let out = child.wait_with_output()?;
    let ok = out.status.success() && (input.is_none() || out.stdout.windows(9).any(|w| w == b"password="));
    Ok(ok)
}
