//! A hostile sandbox against mintd's resources (issue 17): each attack is driven as the sandbox would drive
//! it, and GitHub's side is counted at fakehub.

use std::time::{Duration, SystemTime};

use fakehub::InjectedFailure;

use crate::support::{OWNER, Options, REPO, World};

/// GitHub's answer when the installation's hourly budget is spent: 403, nothing left until an hour from now.
fn budget_spent_for_an_hour() -> InjectedFailure {
    let reset = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
        + 3600;
    InjectedFailure::status(403, "API rate limit exceeded for installation ID 42.")
        .with_header("x-ratelimit-remaining", "0")
        .with_header("x-ratelimit-reset", reset.to_string())
}

fn fill(world: &World) -> std::process::Output {
    let url = world.url();
    let (protocol, host) = url.split_once("://").expect("url");
    let input = format!("protocol={protocol}\nhost={host}\npath={OWNER}/{REPO}.git\n\n");
    world.git_with_input(None, &["credential", "fill"], Some(&input))
}

#[test]
fn a_rate_limit_is_remembered_and_100_fills_ask_github_once() {
    let world = World::start();
    world.hub.fail_next_mints(1, &budget_spent_for_an_hour());
    for i in 0..100 {
        let out = fill(&world);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "fill {i} got a token");
        assert!(
            stderr.contains("rate-limited") && stderr.contains("will not ask again before 20"),
            "fill {i} names when to retry: {stderr}"
        );
    }
    let mints = world.hub.mints();
    assert_eq!(mints.len(), 1, "one question to GitHub for 100 fills: {mints:?}");
    let status = mint_api::Client::new(&world.socket).status().expect("status");
    assert!(status.last_error.is_some_and(|e| e.contains("rate-limited")));
}

#[test]
fn a_rate_limit_is_remembered_by_the_git_proxy() {
    let mut world = World::start_with(Options {
        start_mintd: false,
        ..Default::default()
    });
    let proxy = world.start_mediated();
    world.hub.fail_next_mints(1, &budget_spent_for_an_hour());
    let info_refs = format!("{proxy}{OWNER}/{REPO}.git/info/refs?service=git-upload-pack");
    for i in 0..100 {
        let (status, retry_after, body) = http_get(&info_refs);
        assert_eq!(status, 503, "request {i}: {body}");
        let secs: u64 = retry_after.expect("Retry-After").parse().expect("seconds");
        assert!((3500..=3600).contains(&secs), "request {i}: Retry-After {secs}");
        assert!(body.contains("will not ask again before"), "request {i}: {body}");
    }
    // git itself hears the reason.
    let out = world.git(None, &["ls-remote", &world.repo_url(REPO)]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("rate-limited"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        world.hub.mints().len(),
        1,
        "one question to GitHub for 101 proxied requests"
    );
    assert!(
        world.hub.requests().iter().all(|r| !r.path.contains("info/refs")),
        "nothing reached GitHub's git side"
    );
}

/// A bare HTTP/1.1 GET over TCP: (status, Retry-After, body).
fn http_get(url: &str) -> (u16, Option<String>, String) {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").expect("http");
    let (authority, path) = rest.split_at(rest.find('/').expect("path"));
    let mut stream = std::net::TcpStream::connect(authority).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut raw = String::new();
    stream.read_to_string(&mut raw).expect("read");
    let (head, body) = raw.split_once("\r\n\r\n").expect("a head");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    let retry_after = head.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.eq_ignore_ascii_case("retry-after")
            .then(|| value.trim().to_owned())
    });
    (status, retry_after, body.to_owned())
}
