//! mintd as a process: readiness, status, configuration errors, graceful stop.

use std::io::Write;
use std::time::Duration;

use crate::support::{INSTALLATION_ID, Options, REPO, World};

#[test]
fn sigterm_revokes_the_live_token_and_removes_the_socket() {
    let mut world = World::start();
    let token = world.fill(REPO).expect("token");
    let (status, took) = world.stop_mintd();
    assert!(status.success(), "exit {status:?}\n{}", world.mintd_log());
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert!(!world.socket.exists(), "socket removed");
    let tokens = world.hub.tokens();
    assert_eq!(tokens.len(), 1);
    assert_eq!(tokens[0].token, token);
    assert!(tokens[0].revoked, "revoked at fakehub");
}

#[test]
fn status_shows_the_state_but_never_the_token() {
    let world = World::start();
    let token = world.fill(REPO).expect("token");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mint"))
        .args(["status", "--json", "--socket"])
        .arg(&world.socket)
        .output()
        .expect("mint status");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(status["repository"], "octo-org/hello-world");
    assert_eq!(status["installation_id"], INSTALLATION_ID);
    assert_eq!(status["mints"], 1);
    assert!(status["token"]["expires_in_seconds"].as_u64().expect("seconds") > 3000);
    assert!(!String::from_utf8_lossy(&out.stdout).contains(&token));

    let text = std::process::Command::new(env!("CARGO_BIN_EXE_mint"))
        .env("MINT_SOCKET", &world.socket)
        .arg("status")
        .output()
        .expect("mint status");
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("repository    octo-org/hello-world"), "{text}");
    assert!(!text.contains(&token));
}

#[test]
fn a_second_daemon_on_a_live_socket_is_refused_and_a_stale_socket_is_replaced() {
    let mut world = World::start();
    let second = world.mintd_command(INSTALLATION_ID).output().expect("mintd");
    assert!(!second.status.success());
    assert!(String::from_utf8_lossy(&second.stderr).contains("another mintd is already serving"));
    assert!(world.fill(REPO).is_some(), "the first daemon is untouched");

    // Kill it hard: the socket file stays behind, and a new daemon replaces it.
    let mut child = world.mintd.take().expect("running");
    child.kill().expect("kill");
    child.wait().expect("wait");
    assert!(world.socket.exists());
    world.spawn_mintd(INSTALLATION_ID);
    assert!(world.fill(REPO).is_some());
}

#[test]
fn invalid_configuration_exits_64_naming_the_setting() {
    let world = World::start_with(Options {
        start_mintd: false,
        ..Default::default()
    });
    let out = world
        .mintd_command_for(INSTALLATION_ID, "not-a-repo")
        .output()
        .expect("mintd");
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--repo (or MINT_REPO)") && stderr.contains("not OWNER/NAME"),
        "{stderr}"
    );
    // Usage errors caught by the argument parser exit 64 as well.
    let out = world
        .mintd_command(INSTALLATION_ID)
        .arg("--no-such-flag")
        .output()
        .expect("mintd");
    assert_eq!(out.status.code(), Some(64), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!world.socket.exists(), "nothing was bound");
}

#[test]
fn the_helper_fails_within_a_second_when_no_daemon_runs() {
    let world = World::start_with(Options {
        start_mintd: false,
        ..Default::default()
    });
    let started = std::time::Instant::now();
    let out = world.helper("get", b"protocol=https\nhost=github.com\n");
    assert!(started.elapsed() < Duration::from_secs(1));
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(world.socket.to_str().expect("utf8")) && stderr.contains("mintd is not running there"));
}

#[test]
fn the_demo_runs_the_whole_flow() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mint"))
        .arg("demo")
        .env_remove("RUST_LOG")
        .output()
        .expect("mint demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("✓ one token minted"), "{stdout}");
    assert!(stdout.contains("✓ mintd stopped: the token was revoked"), "{stdout}");
    assert!(
        stdout.contains("mint publish   staged, committed and pushed"),
        "{stdout}"
    );
    let last = stdout.lines().last().unwrap_or_default();
    assert!(
        last.ends_with("/octo-org/hello-world/pull/1"),
        "the PR's URL comes last: {stdout}"
    );
}

#[test]
fn after_sigterm_no_token_is_served_and_one_minted_in_flight_is_revoked() {
    // Regression: a request in flight at SIGTERM was still served a token after shutdown began, and one
    // whose mint outlived the drain was never revoked.
    let mut world = World::start();
    world.hub.set_mint_latency(Duration::from_millis(1500));
    let url = world.url();
    let (protocol, host) = url.split_once("://").expect("url");
    let mut helper = std::process::Command::new(env!("CARGO_BIN_EXE_git-credential-mint"))
        .arg("--socket")
        .arg(&world.socket)
        .arg("get")
        .env_clear()
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("helper");
    helper
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("protocol={protocol}\nhost={host}\npath=octo-org/{REPO}.git\n\n").as_bytes())
        .expect("request");
    // Wait until mintd has begun the mint; fakehub then holds it for 1.5 s.
    let started = std::time::Instant::now();
    while !world.mintd_log().contains("minting an installation token") {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "mintd never began the mint:\n{}",
            world.mintd_log()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let (status, took) = world.stop_mintd();
    let out = helper.wait_with_output().expect("helper");
    assert!(status.success(), "exit {status:?}\n{}", world.mintd_log());
    assert!(took < Duration::from_secs(5), "took {took:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stdout.contains("password="), "served after SIGTERM: {stdout}");
    assert_eq!(stdout, "quit=1\n");
    assert!(stderr.contains("mintd is shutting down"), "{stderr}");
    let tokens = world.hub.tokens();
    assert_eq!(tokens.len(), 1, "the mint in flight made one token");
    assert!(tokens[0].revoked, "and it was revoked\n{}", world.mintd_log());
}

#[test]
fn git_is_told_the_expiry_on_its_own_clock_not_githubs() {
    let world = World::start();
    // GitHub's clock 30 minutes ahead: its expires_at is 90 minutes from our now, but the token lives 60.
    world.hub.set_date_skew(1800);
    let url = world.url();
    let (protocol, host) = url.split_once("://").expect("url");
    let input = format!("protocol={protocol}\nhost={host}\npath=octo-org/{REPO}.git\n\n");
    let out = world.helper("get", input.as_bytes());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let expiry: u64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("password_expiry_utc="))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no expiry in the answer: {}", String::from_utf8_lossy(&out.stderr)));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    assert!(
        expiry.abs_diff(now + 3600) < 60,
        "password_expiry_utc is {} s from now, expected 3600",
        i128::from(expiry) - i128::from(now)
    );
}
