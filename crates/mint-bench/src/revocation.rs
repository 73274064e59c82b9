//! Revocation at Disconnect: 1,000 sandboxes with live tokens, minted through 2 mint-server replicas on one
//! PostgreSQL, then every product disconnected at once (through either replica). Measured: the time from
//! each product's Disconnect call to each of its tokens being dead at fakehub (whose revocation takes
//! 100 ms), GitHub calls per revoked token, and the replicas' CPU.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail};

use crate::broker::postgres::Postgres;
use crate::broker::{ADMIN_TOKEN, Server, cpu_time, raise_open_files, request};
use crate::{Report, Rig, ms, percentile};

const PRODUCTS: usize = 10;
const SANDBOXES_PER_PRODUCT: usize = 100;
const REVOKE_LATENCY: Duration = Duration::from_millis(100);
/// The promise: every token dead within this of its Disconnect.
const GOAL: Duration = Duration::from_secs(5);

pub(crate) fn run(rig: &Rig, report: &mut Report) -> anyhow::Result<()> {
    if !rig.bin_dir.join("mint-server").exists() {
        bail!("mint-server is not built next to mint-bench: run bench/run, which builds it");
    }
    raise_open_files();
    let client = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let dir = rig.work.path().join("revocation");
    let pg = std::panic::catch_unwind(Postgres::start).map_err(|_| {
        anyhow::anyhow!("the revocation bench needs PostgreSQL's server binaries: apt-get install postgresql")
    })?;
    let database = pg.database("revocation");
    let servers = [
        Server::start_with(rig, &client, &dir.join("replica0"), &database, &[])?,
        Server::start_with(rig, &client, &dir.join("replica1"), &database, &[])?,
    ];

    // Setup: the products, their sandboxes, and one live token each, minted through alternate replicas.
    let mut products = Vec::new();
    let mut owner_of: HashMap<String, usize> = HashMap::new();
    for p in 0..PRODUCTS {
        let product = client.block_on(servers[0].product())?;
        let mut credentials = Vec::new();
        for _ in 0..SANDBOXES_PER_PRODUCT {
            credentials.push(client.block_on(servers[p % 2].sandbox(&product))?);
        }
        let tokens = client.block_on(mint_all(&servers, &credentials))?;
        for token in tokens {
            owner_of.insert(token, p);
        }
        products.push(product);
    }
    if owner_of.len() != PRODUCTS * SANDBOXES_PER_PRODUCT {
        bail!(
            "expected {} live tokens, got {}",
            PRODUCTS * SANDBOXES_PER_PRODUCT,
            owner_of.len()
        );
    }

    rig.hub.set_revoke_latency(REVOKE_LATENCY);
    let calls_before = revocation_calls(rig);
    let cpu_before: Vec<Duration> = servers
        .iter()
        .map(|s| cpu_time(s.pid()))
        .collect::<anyhow::Result<_>>()?;
    // Every product disconnected at once, half through each replica; each call's start on the wall clock.
    let started: Vec<SystemTime> = client.block_on(disconnect_all(&servers, &products))?;
    let mut deaths = wait_for_deaths(rig, &owner_of, &started)?;
    rig.hub.set_revoke_latency(Duration::ZERO);
    let calls = revocation_calls(rig) - calls_before;
    let cpu: Vec<Duration> = servers
        .iter()
        .zip(cpu_before)
        .map(|(s, before)| Ok(cpu_time(s.pid())?.saturating_sub(before)))
        .collect::<anyhow::Result<_>>()?;
    #[allow(clippy::cast_precision_loss, reason = "counts of a thousand")]
    let calls_per_token = calls as f64 / deaths.len() as f64;
    let (p50, p99, max) = (
        percentile(&mut deaths, 50),
        percentile(&mut deaths, 99),
        percentile(&mut deaths, 100),
    );
    report.line(format!(
        "\nrevocation at Disconnect: {} sandboxes' live tokens (minted through 2 replicas on PostgreSQL), {PRODUCTS} products disconnected at once through either replica, fakehub revoking in {} ms",
        owner_of.len(),
        REVOKE_LATENCY.as_millis()
    ));
    report.line(format!(
        "  Disconnect → dead at fakehub: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms (target p99 ≤ {} ms)",
        ms(p50),
        ms(p99),
        ms(max),
        GOAL.as_millis()
    ));
    report.line(format!(
        "  GitHub calls per revoked token: {calls_per_token:.2} ({calls} DELETE /installation/token for {} tokens; target 1.0)",
        deaths.len()
    ));
    report.line(format!(
        "  CPU (user + system) while revoking: replica 0 {:.0} ms, replica 1 {:.0} ms",
        ms(cpu[0]),
        ms(cpu[1])
    ));
    report.goal(
        "revocation: Disconnect → every token dead at GitHub, p99",
        ms(p99),
        ms(GOAL),
        "ms",
    );
    report.goal("revocation: GitHub calls per revoked token", calls_per_token, 1.0, "x");
    drop(pg);
    Ok(())
}

/// Wait until every token is dead at fakehub; each one's time from its product's Disconnect call.
fn wait_for_deaths(
    rig: &Rig,
    owner_of: &HashMap<String, usize>,
    started: &[SystemTime],
) -> anyhow::Result<Vec<Duration>> {
    let wall = Instant::now();
    loop {
        let issued = rig.hub.tokens();
        let dead: Vec<(String, SystemTime)> = issued
            .iter()
            .filter(|t| owner_of.contains_key(&t.token))
            .filter_map(|t| t.revoked_at.map(|at| (t.token.clone(), at)))
            .collect();
        if dead.len() == owner_of.len() {
            return Ok(dead
                .into_iter()
                .map(|(token, at)| at.duration_since(started[owner_of[&token]]).unwrap_or_default())
                .collect());
        }
        if wall.elapsed() > Duration::from_secs(60) {
            bail!(
                "{} of {} tokens were still alive at fakehub a minute after Disconnect",
                owner_of.len() - dead.len(),
                owner_of.len()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One `POST /api/v1/token` per credential, alternating replicas, 50 at a time; the tokens.
async fn mint_all(servers: &[Server; 2], credentials: &[String]) -> anyhow::Result<Vec<String>> {
    let mut tokens = Vec::with_capacity(credentials.len());
    for chunk in credentials.chunks(50) {
        let mut set = tokio::task::JoinSet::new();
        for (i, credential) in chunk.iter().enumerate() {
            let addr = servers[i % 2].addr;
            let credential = credential.clone();
            set.spawn(async move { request(addr, "POST", "/api/v1/token", Some(&credential), None).await });
        }
        for answer in set.join_all().await {
            let (status, body) = answer?;
            if status != 200 {
                bail!("a token request answered {status}: {body}");
            }
            tokens.push(body["token"].as_str().context("a token")?.to_owned());
        }
    }
    Ok(tokens)
}

/// `DELETE /api/v1/products/{id}/connection` for every product at once; when each call started.
async fn disconnect_all(servers: &[Server; 2], products: &[String]) -> anyhow::Result<Vec<SystemTime>> {
    let mut set = tokio::task::JoinSet::new();
    for (i, product) in products.iter().enumerate() {
        let addr = servers[i % 2].addr;
        let path = format!("/api/v1/products/{product}/connection");
        set.spawn(async move {
            let asked = SystemTime::now();
            let answer = request(addr, "DELETE", &path, Some(ADMIN_TOKEN), None).await;
            (i, asked, answer)
        });
    }
    let mut started = vec![SystemTime::UNIX_EPOCH; products.len()];
    for (i, asked, answer) in set.join_all().await {
        let (status, body) = answer?;
        if status != 200 {
            bail!("Disconnect answered {status}: {body}");
        }
        started[i] = asked;
    }
    Ok(started)
}

fn revocation_calls(rig: &Rig) -> usize {
    rig.hub
        .requests()
        .iter()
        .filter(|r| r.method == "DELETE" && r.path == "/installation/token")
        .count()
}
