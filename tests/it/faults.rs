//! GitHub's bad days, with the real git and mintd: what can be recovered from is, what cannot fails fast
//! and says why.

use std::time::{Duration, Instant};

use fakehub::InjectedFailure;

use crate::support::{REPO, World};

fn ls_remote(world: &World) -> std::process::Output {
    world.git(None, &["ls-remote", &world.repo_url(REPO)])
}

fn metrics(world: &World) -> String {
    let response = mint_api::Client::new(&world.socket)
        .request("GET", mint_api::route::METRICS, b"")
        .expect("metrics");
    assert_eq!(response.status, 200);
    String::from_utf8(response.body).expect("utf8")
}

#[test]
fn two_502s_then_success_and_git_never_notices() {
    let world = World::start();
    world
        .hub
        .fail_next_mints(2, &InjectedFailure::status(502, "Server Error"));
    let out = ls_remote(&world);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let statuses: Vec<u16> = world.hub.mints().iter().map(|m| m.status).collect();
    assert_eq!(statuses, [502, 502, 201]);
    let text = metrics(&world);
    assert!(text.lines().any(|l| l == "mint_retries_total 2"), "{text}");
    assert!(
        text.lines().any(|l| l == "mint_mints_total{outcome=\"success\"} 1"),
        "{text}"
    );
}

#[test]
fn a_rate_limited_mint_is_waited_out_as_github_asks() {
    let world = World::start();
    world.hub.fail_next_mints(
        1,
        &InjectedFailure::status(403, "API rate limit exceeded for installation ID 42.")
            .with_header("retry-after", "2")
            .with_header("x-ratelimit-remaining", "0"),
    );
    let started = Instant::now();
    let out = ls_remote(&world);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(started.elapsed() >= Duration::from_secs(2), "waited as told");
    assert_eq!(world.hub.mints().len(), 2);
}

#[test]
fn a_revoked_token_fails_at_most_one_git_command() {
    let world = World::start();
    assert!(ls_remote(&world).status.success());
    world.hub.revoke_all_tokens();
    let outcomes: Vec<bool> = (0..3).map(|_| ls_remote(&world).status.success()).collect();
    assert!(outcomes[1] && outcomes[2], "{outcomes:?}");
    assert_eq!(world.hub.tokens().len(), 2, "one re-mint");
}

#[test]
fn a_clock_ten_minutes_off_is_corrected_from_githubs_date() {
    for skew in [600, -600] {
        let world = World::start();
        world.hub.set_date_skew(skew);
        let out = ls_remote(&world);
        assert!(
            out.status.success(),
            "skew {skew}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let statuses: Vec<u16> = world.hub.mints().iter().map(|m| m.status).collect();
        assert_eq!(
            statuses,
            [201],
            "skew {skew}: the rejected JWT never reaches the mint record"
        );
        assert!(world.mintd_log().contains("clock differs from GitHub's"), "skew {skew}");
        let status = mint_api::Client::new(&world.socket).status().expect("status");
        let left = status.token.expect("token").expires_in_seconds;
        assert!(
            left > 3500,
            "skew {skew}: the lifetime is GitHub's hour, not shortened by the skew: {left}"
        );
    }
}

#[test]
fn a_suspended_installation_fails_fast_and_says_who_can_fix_it() {
    let world = World::start();
    world.hub.suspend(crate::support::INSTALLATION_ID);
    let started = Instant::now();
    let out = ls_remote(&world);
    assert!(!out.status.success());
    assert!(started.elapsed() < Duration::from_secs(5));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("installation 42 is suspended") && stderr.contains("unsuspend"),
        "{stderr}"
    );
    // A loop of git commands does not hammer GitHub with the same question.
    for _ in 0..5 {
        assert!(!ls_remote(&world).status.success());
    }
    assert_eq!(world.hub.mints().len(), 1);
    let status = mint_api::Client::new(&world.socket).status().expect("status");
    assert!(status.last_error.is_some_and(|e| e.contains("suspended")));
    let text = metrics(&world);
    assert!(
        text.lines()
            .any(|l| l == "mint_mints_total{outcome=\"failure\",reason=\"installation_suspended\"} 1"),
        "{text}"
    );
}

#[test]
fn json_logs_are_one_object_per_line_and_never_hold_the_token() {
    let mut world = crate::support::World::start_with(crate::support::Options {
        start_mintd: false,
        ..Default::default()
    });
    world.spawn_mintd_with(&["--log-format", "json"]);
    let out = ls_remote(&world);
    assert!(out.status.success());
    let token = world.hub.tokens()[0].token.clone();
    let log = world.mintd_log();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l["fields"]["message"] == "minted installation token"),
        "{log}"
    );
    assert!(!log.contains(&token));
}

#[test]
fn git_keeps_working_across_token_rotations() {
    let world = World::start();
    // 12-second tokens: served while 3 s remain, replaced in the background with 6 s left.
    world.hub.set_token_lifetime(Duration::from_secs(12));
    let started = Instant::now();
    let mut failures = Vec::new();
    while started.elapsed() < Duration::from_secs(25) {
        let out = ls_remote(&world);
        if !out.status.success() {
            failures.push(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    assert!(failures.is_empty(), "{failures:?}");
    let mints = world.hub.mints().len();
    assert!((3..=6).contains(&mints), "{mints} mints in 25 s of 12 s tokens");
}

#[test]
fn a_422_names_which_case_it_is() {
    let mut world = crate::support::World::start_with(crate::support::Options {
        start_mintd: false,
        ..Default::default()
    });
    // A repository the installation does not include.
    let mut command = world.mintd_command_for(crate::support::INSTALLATION_ID, "octo-org/not-selected");
    let log = std::fs::File::create(&world.log).expect("log");
    world.mintd = Some(command.stderr(log).spawn().expect("mintd"));
    world.wait_until_ready();
    let out = world.git(
        None,
        &["ls-remote", &format!("{}/octo-org/not-selected.git", world.url())],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("repository octo-org/not-selected is not selected for installation 42"),
        "{stderr}"
    );
    let mut child = world.mintd.take().expect("running");
    child.kill().expect("kill");
    child.wait().expect("wait");

    // A permission the installation never granted.
    world.spawn_mintd_with(&["--permissions", "contents:write,members:read"]);
    let out = ls_remote(&world);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("installation 42 has not granted contents:write,members:read")
            && stderr.contains("must approve"),
        "{stderr}"
    );
}

#[test]
fn an_uninstalled_app_with_no_one_asking_costs_github_next_to_nothing() {
    // Regression: with 20 s tokens, one `get`, then the App uninstalled and no request at all, mintd's
    // refresher asked GitHub about once a second forever (34 failed mints in 45 s).
    let world = World::start();
    world.hub.set_token_lifetime(Duration::from_secs(20));
    assert!(world.fill(REPO).is_some());
    world.hub.uninstall(crate::support::INSTALLATION_ID);
    let after_uninstall = world.hub.mints().len();
    std::thread::sleep(Duration::from_secs(25));
    let asked: Vec<u16> = world.hub.mints()[after_uninstall..].iter().map(|m| m.status).collect();
    // The refresher asks once, 10 s in (half the life left), hears 404, and stops: the token is no longer
    // servable before its backoff is up, and nothing else asks. (Before, it asked again every 10 s.)
    assert_eq!(asked, [404], "token requests in the 25 s after the uninstall");
    // A caller still gets the reason at once.
    let out = ls_remote(&world);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not found"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
