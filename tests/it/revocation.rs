//! Disconnect, Change repository and teardown cut off every live token at once, whichever replica minted
//! it, after restarts and a kill -9, and the sandbox hears why: real `mint-server` replicas on a real
//! PostgreSQL (and the embedded SQLite default, one process), real `mintd --broker`, the real `git`.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sha2::Digest as _;

use crate::broker::{Server, http, postgres::Postgres};
use crate::support::{INSTALLATION_ID, OTHER_REPO, OWNER, REPO, World};

/// How soon after the event every token must be dead at GitHub, and the sandbox must say why.
const PROMISE: Duration = Duration::from_secs(5);

fn world() -> World {
    let world = World::start_with(crate::support::Options {
        start_mintd: false,
        ..Default::default()
    });
    std::fs::remove_file(&world.key_file).expect("no key beside the sandbox");
    world
}

/// Two replicas on one PostgreSQL.
fn fleet(world: &World) -> (Postgres, Server, Server) {
    let pg = Postgres::start();
    let database = pg.database("mint");
    let a = Server::start(world, Some(database.clone()));
    let b = Server::start(world, Some(database));
    (pg, a, b)
}

/// A new sandbox of the product: its id and credential (not written anywhere).
fn sandbox(server: &Server, product: &str) -> (String, String) {
    let (status, body) = server.admin("POST", &format!("/api/v1/products/{product}/sandboxes"), None);
    assert_eq!(status, 201, "{body}");
    (
        body["sandbox_id"].as_str().expect("id").to_owned(),
        body["credential"].as_str().expect("credential").to_owned(),
    )
}

fn token_at(server: &Server, credential: &str) -> String {
    let (status, body) = http(&server.url, "POST", "/api/v1/token", Some(credential), None);
    assert_eq!(status, 200, "{body}\n{}", server.log());
    body["token"].as_str().expect("token").to_owned()
}

/// The sandbox tokens fakehub issued and has not revoked (the connections' own checks are revoked at once).
fn live_at_github(world: &World) -> Vec<String> {
    world
        .hub
        .tokens()
        .into_iter()
        .filter(|t| !t.revoked && t.permissions.contains_key("contents"))
        .map(|t| t.token)
        .collect()
}

/// Wait until none of `tokens` works at fakehub; how long that took from `since`.
fn all_dead_within(world: &World, tokens: &[String], since: Instant, limit: Duration) -> Duration {
    loop {
        let issued = world.hub.tokens();
        let alive: Vec<&String> = tokens
            .iter()
            .filter(|token| issued.iter().any(|t| &t.token == *token && !t.revoked))
            .collect();
        if alive.is_empty() {
            return since.elapsed();
        }
        assert!(
            since.elapsed() < limit,
            "{} of {} tokens still work at GitHub {:?} after the event",
            alive.len(),
            tokens.len(),
            since.elapsed()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Run `git ls-remote` until it fails, within the promise; its stderr.
fn ls_remote_fails_within(world: &World, since: Instant) -> String {
    loop {
        let output = world.git(None, &["ls-remote", &world.repo_url(REPO)]);
        if !output.status.success() {
            return String::from_utf8_lossy(&output.stderr).into_owned();
        }
        assert!(
            since.elapsed() < PROMISE,
            "git ls-remote still works {:?} after the event\nmintd:\n{}",
            since.elapsed(),
            world.mintd_log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn revocation_calls(world: &World) -> usize {
    world
        .hub
        .requests()
        .iter()
        .filter(|r| r.method == "DELETE" && r.path == "/installation/token")
        .count()
}

/// Disconnect through `acting` kills every token minted through `minting`, the sandbox's git names the
/// disconnect, and after Connect the same mintd works again with no restart.
fn disconnect_scenario(world: &mut World, minting: &Server, acting: &Server) {
    let product = minting.product(REPO);
    let (_, credential_file) = minting.sandbox(world, &product);
    world.spawn_mintd_broker(&minting.url, &credential_file, &[]);
    world.git_ok(None, &["ls-remote", &world.repo_url(REPO)]);
    for _ in 0..5 {
        let (_, credential) = sandbox(minting, &product);
        token_at(minting, &credential);
    }
    let tokens = live_at_github(world);
    assert_eq!(tokens.len(), 6, "one token per sandbox");
    let calls_before = revocation_calls(world);

    let event = Instant::now();
    let (status, body) = acting.admin("DELETE", &format!("/api/v1/products/{product}/connection"), None);
    assert_eq!(status, 200, "{body}");
    let dead_after = all_dead_within(world, &tokens, event, PROMISE);
    let stderr = ls_remote_fails_within(world, event);
    assert!(
        stderr.contains("GitHub was disconnected: connect it again to run coding tasks"),
        "git names the disconnect:\n{stderr}"
    );
    assert!(
        !stderr.contains("Authentication failed"),
        "mintd said why before GitHub refused anything:\n{stderr}"
    );
    assert_eq!(
        revocation_calls(world) - calls_before,
        tokens.len(),
        "one GitHub call per revoked token (dead in {dead_after:?})"
    );

    // Connect again: the same mintd, with no restart, works from its next command.
    let (status, body) = acting.admin(
        "PUT",
        &format!("/api/v1/products/{product}/connection"),
        Some(json!({"installation_id": INSTALLATION_ID, "repository": format!("{OWNER}/{REPO}")})),
    );
    assert_eq!(status, 200, "{body}");
    let reconnected = Instant::now();
    loop {
        if world.git(None, &["ls-remote", &world.repo_url(REPO)]).status.success() {
            break;
        }
        assert!(
            reconnected.elapsed() < PROMISE,
            "the sandbox did not resume by itself after Connect:\n{}",
            world.mintd_log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn disconnect_through_one_replica_kills_the_tokens_another_minted_and_the_sandbox_names_it() {
    let mut world = world();
    let (_pg, a, b) = fleet(&world);
    disconnect_scenario(&mut world, &a, &b);
}

#[test]
fn disconnect_on_sqlite_kills_every_token_and_the_sandbox_names_it() {
    let mut world = world();
    let server = Server::start(&world, None);
    disconnect_scenario(&mut world, &server, &server);
}

#[test]
fn change_repository_through_one_replica_kills_the_old_repositorys_tokens_and_the_next_is_for_the_new() {
    let mut world = world();
    let (_pg, a, b) = fleet(&world);
    let product = a.product(REPO);
    let (_, credential_file) = a.sandbox(&world, &product);
    world.spawn_mintd_broker(&a.url, &credential_file, &[]);
    let old = world.fill(REPO).expect("a token for the connected repository");

    let event = Instant::now();
    let (status, body) = b.admin(
        "PUT",
        &format!("/api/v1/products/{product}/connection"),
        Some(json!({"installation_id": INSTALLATION_ID, "repository": format!("{OWNER}/{OTHER_REPO}")})),
    );
    assert_eq!(status, 200, "{body}");
    all_dead_within(&world, std::slice::from_ref(&old), event, PROMISE);
    // mintd heard of the move: the new repository is served, the old one declined, with no git 401 first.
    let new = loop {
        if let Some(token) = world.fill(OTHER_REPO) {
            break token;
        }
        assert!(
            event.elapsed() < PROMISE,
            "mintd did not follow the new repository:\n{}",
            world.mintd_log()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_ne!(new, old);
    let issued = world.hub.tokens();
    let new = issued.iter().find(|t| t.token == new).expect("issued");
    assert_eq!(new.repositories, [OTHER_REPO]);
    assert!(world.fill(REPO).is_none(), "the old repository is declined");
}

/// Tokens minted through `a`, then `before` happens, then teardown through `b`: every token dies.
fn teardown_scenario(world: &World, a: &mut Server, b: &mut Server, before: impl FnOnce(&mut Server, &mut Server)) {
    let product = a.product(REPO);
    let (sandbox_id, credential) = sandbox(a, &product);
    let first = token_at(a, &credential);
    // Change repository: the sandbox's next token is for the other repository; the first is revoked then.
    let (status, _) = a.admin(
        "PUT",
        &format!("/api/v1/products/{product}/connection"),
        Some(json!({"installation_id": INSTALLATION_ID, "repository": format!("{OWNER}/{OTHER_REPO}")})),
    );
    assert_eq!(status, 200);
    let second = token_at(a, &credential);
    assert_eq!(
        live_at_github(world),
        std::slice::from_ref(&second),
        "the first repository's token is dead"
    );
    before(a, b);
    let event = Instant::now();
    let (status, body) = b.admin("DELETE", &format!("/api/v1/sandboxes/{sandbox_id}"), None);
    assert_eq!(status, 204, "{body}\n{}", b.log());
    all_dead_within(world, &[first, second], event, PROMISE);
    let (_, record) = b.admin("GET", &format!("/api/v1/sandboxes/{sandbox_id}"), None);
    let token_states: Vec<&str> = record["tokens"]
        .as_array()
        .expect("tokens")
        .iter()
        .map(|t| t["state"].as_str().expect("state"))
        .collect();
    assert_eq!(token_states, ["revoked", "revoked"], "{record}");
    let (status, _) = http(&b.url, "POST", "/api/v1/token", Some(&credential), None);
    assert_eq!(status, 401, "the credential is dead too");
}

#[test]
fn teardown_through_one_replica_after_both_restarted_revokes_what_the_other_minted() {
    let world = world();
    let (_pg, mut a, mut b) = fleet(&world);
    teardown_scenario(&world, &mut a, &mut b, |a, b| {
        a.restart();
        b.restart();
    });
}

#[test]
fn teardown_through_one_replica_after_the_minting_replica_was_killed_with_sigkill() {
    let world = world();
    let (_pg, mut a, mut b) = fleet(&world);
    teardown_scenario(&world, &mut a, &mut b, |a, _| a.kill_9());
}

#[test]
fn teardown_on_sqlite_after_a_restart_revokes_what_was_minted_before_it() {
    let world = world();
    let mut server = Server::start(&world, None);
    let product = server.product(REPO);
    let (sandbox_id, credential) = sandbox(&server, &product);
    let token = token_at(&server, &credential);
    server.restart();
    let event = Instant::now();
    let (status, _) = server.admin("DELETE", &format!("/api/v1/sandboxes/{sandbox_id}"), None);
    assert_eq!(status, 204);
    all_dead_within(&world, &[token], event, PROMISE);
}

#[test]
fn github_failing_revocations_are_retried_until_they_succeed_and_nothing_is_called_revoked_early() {
    let world = world();
    let (_pg, a, b) = fleet(&world);
    let product = a.product(REPO);
    let (sandbox_id, credential) = sandbox(&a, &product);
    let token = token_at(&a, &credential);
    let calls_before = revocation_calls(&world);
    world.hub.fail_next_revocations(
        3,
        &fakehub::InjectedFailure::status(500, "Something went wrong on GitHub's side"),
    );
    let event = Instant::now();
    let (status, _) = b.admin("DELETE", &format!("/api/v1/sandboxes/{sandbox_id}"), None);
    assert_eq!(status, 204);
    let mut seen_revoking = false;
    loop {
        let at_github = world
            .hub
            .tokens()
            .into_iter()
            .find(|t| t.token == token)
            .expect("issued");
        let (_, record) = a.admin("GET", &format!("/api/v1/sandboxes/{sandbox_id}"), None);
        let state = record["tokens"][0]["state"].as_str().unwrap_or_default().to_owned();
        if state == "revoked" {
            assert!(
                at_github.revoked,
                "called revoked while it still worked at GitHub: {record}"
            );
            break;
        }
        assert_eq!(state, "revoking", "{record}");
        assert!(!at_github.revoked || state == "revoking");
        seen_revoking = true;
        assert!(
            record["tokens"][0]["revoke_error"]
                .as_str()
                .is_some_and(|e| e.contains("500")),
            "the failure is shown to operators: {record}"
        );
        assert!(
            event.elapsed() < Duration::from_secs(20),
            "GitHub's 500s were not retried through: {record}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        seen_revoking,
        "the first attempts failed, so it was not revoked at once"
    );
    assert_eq!(
        revocation_calls(&world) - calls_before,
        4,
        "three 500s, then the one that worked"
    );
}

#[test]
fn after_disconnect_a_proxied_fetch_in_mediated_mode_fails_with_the_reason() {
    let mut world = world();
    let server = Server::start(&world, None);
    let product = server.product(REPO);
    let (_, credential_file) = server.sandbox(&world, &product);
    world.spawn_mintd_broker(&server.url, &credential_file, &["--git-proxy", "127.0.0.1:0"]);
    world.use_git_proxy();
    world.git_ok(None, &["ls-remote", &world.repo_url(REPO)]);
    let event = Instant::now();
    let (status, _) = server.admin("DELETE", &format!("/api/v1/products/{product}/connection"), None);
    assert_eq!(status, 200);
    let stderr = ls_remote_fails_within(&world, event);
    assert!(
        stderr.contains("GitHub was disconnected: connect it again to run coding tasks"),
        "the proxy's answer names the disconnect:\n{stderr}"
    );
}

#[test]
fn three_hundred_parallel_token_calls_from_one_credential_leave_one_live_token() {
    let world = world();
    let (_pg, a, b) = fleet(&world);
    let product = a.product(REPO);
    let (_, credential) = sandbox(&a, &product);
    let before = world.hub.tokens().len();
    world.hub.set_mint_latency(Duration::from_millis(100));
    let calls: Vec<_> = (0..300)
        .map(|i| {
            let url = if i % 2 == 0 { a.url.clone() } else { b.url.clone() };
            let credential = credential.clone();
            std::thread::spawn(move || http(&url, "POST", "/api/v1/token", Some(&credential), None))
        })
        .collect();
    let answers: Vec<(u16, Value)> = calls.into_iter().map(|c| c.join().expect("call")).collect();
    world.hub.set_mint_latency(Duration::ZERO);
    let handed: HashSet<&str> = answers
        .iter()
        .filter(|(status, _)| *status == 200)
        .filter_map(|(_, body)| body["token"].as_str())
        .collect();
    let refused = answers.iter().filter(|(status, _)| *status == 429).count();
    let other: Vec<_> = answers.iter().filter(|(s, _)| *s != 200 && *s != 429).collect();
    assert!(other.is_empty(), "{other:?}");
    assert_eq!(
        handed.len(),
        1,
        "every answer is the one live token ({refused} refused with 429)"
    );
    assert_eq!(world.hub.tokens().len() - before, 1, "GitHub minted once for 300 calls");
}

#[test]
fn callers_that_hang_up_mid_mint_leave_no_token_unrecorded() {
    let world = world();
    let (_pg, a, b) = fleet(&world);
    let product = a.product(REPO);
    let mut sandboxes = Vec::new();
    for _ in 0..10 {
        sandboxes.push(sandbox(&a, &product));
    }
    let before: HashSet<String> = world.hub.tokens().into_iter().map(|t| t.token).collect();
    world.hub.set_mint_latency(Duration::from_millis(400));
    let hang_ups: Vec<_> = sandboxes
        .iter()
        .enumerate()
        .map(|(i, (_, credential))| {
            let addr = if i % 2 == 0 { &a.url } else { &b.url }.trim_start_matches("http://").to_owned();
            let credential = credential.clone();
            std::thread::spawn(move || {
                use std::io::Write as _;
                let mut stream = std::net::TcpStream::connect(addr).expect("connect");
                write!(
                    stream,
                    "POST /api/v1/token HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {credential}\r\nContent-Length: 0\r\n\r\n"
                )
                .expect("send");
                std::thread::sleep(Duration::from_millis(100));
                // Gone before GitHub answered.
            })
        })
        .collect();
    for h in hang_ups {
        h.join().expect("hang up");
    }
    // Every abandoned request's mint goes on to GitHub and back.
    let started = Instant::now();
    let issued: Vec<String> = loop {
        let issued: Vec<String> = world
            .hub
            .tokens()
            .into_iter()
            .map(|t| t.token)
            .filter(|t| !before.contains(t))
            .collect();
        if issued.len() == sandboxes.len() || started.elapsed() > Duration::from_secs(10) {
            break issued;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    world.hub.set_mint_latency(Duration::ZERO);
    assert_eq!(issued.len(), sandboxes.len(), "each abandoned request's mint went on");
    // Recorded once GitHub answered: within the record's round trip.
    let wanted: HashSet<String> = issued
        .iter()
        .map(|token| hex::encode(sha2::Sha256::digest(token.as_bytes()))[..12].to_owned())
        .collect();
    let started = Instant::now();
    loop {
        let mut recorded = HashSet::new();
        for (id, _) in &sandboxes {
            let (_, record) = b.admin("GET", &format!("/api/v1/sandboxes/{id}"), None);
            for t in record["tokens"].as_array().expect("tokens") {
                recorded.insert(t["token_sha256"].as_str().expect("hash").to_owned());
            }
        }
        let missing = wanted.difference(&recorded).count();
        if missing == 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{missing} tokens GitHub issued were never recorded"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
