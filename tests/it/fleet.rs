//! A fleet on this machine: two real `mint-server` replicas on one real PostgreSQL behind a real HAProxy
//! (Debian's `haproxy` package; `scripts/test` installs it), sandboxes' requests through HAProxy, and one replica
//! killed with SIGKILL in the middle.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::broker::{ADMIN_TOKEN, Server, http, postgres::Postgres, write_private};
use crate::support::{INSTALLATION_ID, REPO, World};
use haproxy::HaProxy;

#[allow(dead_code, unreachable_pub, reason = "shared with mint-bench, which uses all of it")]
#[path = "../../crates/mint-server/tests/support/haproxy.rs"]
mod haproxy;

fn fleet_world() -> World {
    World::start_with(crate::support::Options {
        start_mintd: false,
        ..Default::default()
    })
}

#[test]
fn two_replicas_behind_haproxy_serve_200_sandboxes_and_a_kill_9_mid_burst_fails_no_request() {
    let _heavy = crate::support::one_heavy_test_at_a_time();
    let mut world = fleet_world();
    std::fs::remove_file(&world.key_file).expect("no key beside the sandboxes");
    let pg = Postgres::start();
    let database = pg.database("mint");
    let first = Server::start(&world, Some(database.clone()));
    let mut second = Server::start(&world, Some(database));
    let proxy = HaProxy::start(&[&first.url, &second.url]);
    let proxy_url = proxy.url();

    let product = first.product(REPO);
    let mut credentials = Vec::new();
    for _ in 0..200 {
        let (status, body) = http(
            &proxy_url,
            "POST",
            &format!("/api/v1/products/{product}/sandboxes"),
            Some(ADMIN_TOKEN),
            None,
        );
        assert_eq!(status, 201, "{body}");
        credentials.push(body["credential"].as_str().expect("credential").to_owned());
    }

    // Every sandbox asks for its first token at once, through HAProxy, with no retry of its own; GitHub
    // takes 200 ms a mint, so many are in flight at the replica killed 100 ms in.
    world.hub.set_mint_latency(Duration::from_millis(200));
    let minted_before = world.hub.tokens().len();
    let burst: Vec<_> = credentials
        .into_iter()
        .map(|credential| {
            let url = proxy_url.clone();
            std::thread::spawn(move || http(&url, "POST", "/api/v1/token", Some(&credential), None))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    second.kill_9();
    let answers: Vec<(u16, Value)> = burst.into_iter().map(|t| t.join().expect("request")).collect();
    world.hub.set_mint_latency(Duration::ZERO);
    let failed: Vec<_> = answers.iter().filter(|(status, _)| *status != 200).collect();
    assert!(
        failed.is_empty(),
        "{} of 200 sandbox requests failed, e.g. {:?}\nsurvivor's log tail:\n{}",
        failed.len(),
        failed.first(),
        first.log().lines().rev().take(20).collect::<Vec<_>>().join("\n")
    );
    assert!(world.hub.tokens().len() - minted_before >= 200);

    // A sample sandbox works end to end through HAProxy and the surviving replica: mintd in broker mode,
    // plain git clone and push.
    let (_, credential) = first.sandbox(&world, &product);
    world.spawn_mintd_broker(&proxy_url, &credential, &[]);
    let work = world.dir.path().join("work");
    world.git_ok(None, &["clone", &world.repo_url(REPO), work.to_str().expect("utf8")]);
    std::fs::write(work.join("FLEET.md"), "through haproxy\n").expect("write");
    world.git_ok(Some(&work), &["switch", "-c", "adagent/fleet"]);
    world.git_ok(Some(&work), &["add", "-A"]);
    world.git_ok(Some(&work), &["commit", "-qm", "fleet"]);
    world.git_ok(Some(&work), &["push", "-q", "origin", "adagent/fleet"]);
}

/// The connect-flow flags (the sweep runs only when the Integrations page is configured), with a short
/// sweep interval.
fn sweeping(dir: &std::path::Path) -> Vec<String> {
    let (client_secret, webhook_secret) = (dir.join("client-secret"), dir.join("webhook-secret"));
    if !client_secret.exists() {
        write_private(&client_secret, "fleet-client-secret");
        write_private(&webhook_secret, "fleet-webhook-secret-0123456789abcdefghijkl");
    }
    [
        "--public-url",
        "http://127.0.0.1:1",
        "--app-slug",
        "mint-fakehub",
        "--client-id",
        "Iv1.fleet",
        "--client-secret-file",
        client_secret.to_str().expect("utf8"),
        "--webhook-secret-file",
        webhook_secret.to_str().expect("utf8"),
        "--reconcile-interval",
        "300ms",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect()
}

fn wait_for_status(server: &Server, product: &str, status: &str) {
    let started = Instant::now();
    loop {
        let (_, body) = server.admin("GET", &format!("/api/v1/products/{product}/connection"), None);
        if body["status"] == status {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the connection never became {status}: {body}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_missed_webhook_is_fixed_by_the_sweep_holder_and_another_replica_takes_the_sweep_over_when_it_dies() {
    let world = fleet_world();
    let pg = Postgres::start();
    let database = pg.database("mint");
    let secrets = tempfile::tempdir().expect("tempdir");
    let mut replicas = [
        Server::start_with(&world, Some(database.clone()), sweeping(secrets.path())),
        Server::start_with(&world, Some(database), sweeping(secrets.path())),
    ];
    let product = replicas[0].product(REPO);
    let holds = |server: &Server| server.log().contains("now runs the reconcile sweep");
    let started = Instant::now();
    while !replicas.iter().any(holds) {
        assert!(started.elapsed() < Duration::from_secs(10), "no replica took the sweep");
        std::thread::sleep(Duration::from_millis(50));
    }
    let holder = usize::from(holds(&replicas[1]));
    assert!(!holds(&replicas[1 - holder]), "exactly one replica sweeps");

    // No webhook reaches mint-server (none is configured at fakehub): only the sweep can see this.
    world.hub.suspend(INSTALLATION_ID);
    wait_for_status(&replicas[1 - holder], &product, "suspended");

    replicas[holder].kill_9();
    let other = &replicas[1 - holder];
    let started = Instant::now();
    while !holds(other) {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the other replica did not take the sweep over:\n{}",
            other.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    world.hub.unsuspend(INSTALLATION_ID);
    wait_for_status(other, &product, "active");
}
