//! Mediated mode: git talks to mintd's proxy with no credential at all; mintd adds the token on the way to
//! GitHub and refuses pushes outside the agent's branches before a byte reaches GitHub.

use std::path::Path;
use std::time::Duration;

use crate::support::{OTHER_REPO, OWNER, Options, REPO, World};

fn mediated_world() -> (World, String) {
    let mut world = World::start_with(Options {
        start_mintd: false,
        ..Default::default()
    });
    let proxy = world.start_mediated();
    (world, proxy)
}

fn server_refs(world: &World) -> String {
    let out = std::process::Command::new("git")
        .arg("--git-dir")
        .arg(world.hub.repo_path(OWNER, REPO))
        .args(["for-each-ref", "--format=%(refname) %(objectname)"])
        .output()
        .expect("git");
    String::from_utf8(out.stdout).expect("utf8")
}

fn clone(world: &World) -> std::path::PathBuf {
    let dir = world.dir.path().join("clone");
    // The sandbox uses the ordinary GitHub URL; its git config rewrites it to the proxy.
    world.git_ok(
        None,
        &["clone", "-q", &world.repo_url(REPO), dir.to_str().expect("utf8")],
    );
    dir
}

fn commit(world: &World, dir: &Path, file: &str) {
    std::fs::write(dir.join(file), format!("{file}\n")).expect("write");
    world.git_ok(Some(dir), &["add", "-A"]);
    world.git_ok(Some(dir), &["commit", "-q", "-m", file]);
}

#[test]
fn clone_fetch_and_push_to_an_agent_branch_with_no_credential_in_the_sandbox() {
    let (world, proxy) = mediated_world();
    let dir = clone(&world);
    commit(&world, &dir, "change.txt");
    world.git_ok(Some(&dir), &["push", "-q", "origin", "HEAD:refs/heads/adagent/x"]);
    world.git_ok(Some(&dir), &["fetch", "-q", "origin"]);
    assert!(server_refs(&world).contains("refs/heads/adagent/x"));

    let config = std::fs::read_to_string(world.home.join(".gitconfig")).expect("config");
    assert!(!config.contains("helper"), "no credential helper is configured");
    assert!(config.contains(&proxy));
    let tokens = world.hub.tokens();
    assert_eq!(tokens.len(), 1);
    let (files, found) = World::files_containing(&[&world.home, &dir], &tokens[0].token);
    assert!(files > 10 && found.is_empty(), "token found in {found:?}");
    assert!(!world.mintd_log().contains(&tokens[0].token));
}

#[test]
fn pushes_outside_the_agents_branches_are_refused_with_the_reason_and_reach_nothing() {
    let (world, _) = mediated_world();
    let dir = clone(&world);
    commit(&world, &dir, "one.txt");
    world.git_ok(Some(&dir), &["push", "-q", "origin", "HEAD:refs/heads/adagent/keep"]);
    world.git_ok(Some(&dir), &["tag", "v1"]);
    commit(&world, &dir, "two.txt");
    let before = server_refs(&world);
    for (args, reason) in [
        (
            &["push", "origin", "HEAD:refs/heads/main"][..],
            "outside the agent's branches",
        ),
        (&["push", "origin", "refs/tags/v1"][..], "tags cannot be pushed"),
        (
            &["push", "origin", ":refs/heads/adagent/keep"][..],
            "deleting branches is not allowed",
        ),
        (
            &["push", "origin", "HEAD:refs/heads/adagent/y", "HEAD:refs/heads/main"][..],
            "in the same push was refused",
        ),
    ] {
        let out = world.git(Some(&dir), args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(stderr.contains(reason), "{args:?}: {stderr}");
        assert!(stderr.contains("mint: push refused"), "{args:?}: {stderr}");
    }
    assert_eq!(server_refs(&world), before, "nothing reached GitHub");
    let metrics = mint_api::Client::new(&world.socket)
        .request("GET", mint_api::route::METRICS, b"")
        .expect("metrics");
    let text = String::from_utf8_lossy(&metrics.body);
    assert!(
        text.lines()
            .any(|l| l == "mint_proxy_refusals_total{reason=\"push_policy\"} 4"),
        "{text}"
    );
}

/// Issue 12 item 10: a second revocation within 5 s of the first (the erase interval) used to fail the
/// command, since the proxy replayed with the same dead token; the test slept 5.1 s around it.
#[test]
fn revoked_tokens_never_fail_a_git_command() {
    let (world, _) = mediated_world();
    let dir = clone(&world);
    world.hub.revoke_all_tokens();
    world.git_ok(Some(&dir), &["fetch", "-q", "origin"]);
    commit(&world, &dir, "after-revoke.txt");
    // At once: well within the erase interval of the first.
    world.hub.revoke_all_tokens();
    world.git_ok(Some(&dir), &["push", "-q", "origin", "HEAD:refs/heads/adagent/after"]);
    assert_eq!(world.hub.tokens().len(), 3, "one fresh token per revocation");
}

/// Issue 12 item 10: GitHub decodes a compressed push before it reads the commands, so the proxy must not
/// judge the compressed bytes. git never compresses a push; the proxy refuses any encoding but identity.
#[test]
fn a_compressed_push_is_refused_before_anything_reaches_github() {
    use std::io::{Read, Write};
    let (world, proxy) = mediated_world();
    let authority = proxy.trim_start_matches("http://").trim_end_matches('/').to_owned();
    let command = format!("{} {} refs/heads/main\0report-status\n", "0".repeat(40), "1".repeat(40));
    let body = format!("{:04x}{command}0000", command.len() + 4);
    for encoding in ["gzip", "deflate", "identity, gzip", "x-gzip"] {
        let mut stream = std::net::TcpStream::connect(&authority).expect("connect");
        stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        write!(
            stream,
            "POST /{OWNER}/{REPO}.git/git-receive-pack HTTP/1.1\r\nHost: {authority}\r\n\
             Content-Type: application/x-git-receive-pack-request\r\nContent-Encoding: {encoding}\r\n\
             Connection: close\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .expect("send");
        let mut answer = String::new();
        stream.read_to_string(&mut answer).expect("read");
        assert!(answer.starts_with("HTTP/1.1 415"), "{encoding}: {answer}");
        assert!(
            answer.contains("send it uncompressed"),
            "{encoding}: the way out is named: {answer}"
        );
    }
    assert!(world.hub.mints().is_empty(), "nothing was minted for them");
    assert!(world.hub.requests().iter().all(|r| !r.path.contains("receive-pack")));
}

/// Force pushes to the agent's own branches pass (decided: the agent owns `adagent/*` and rewrites it,
/// e.g. after a rebase; docs/modes.md says so); elsewhere every push is refused anyway.
#[test]
fn a_force_push_to_an_agent_branch_passes_and_to_main_is_refused() {
    let (world, _) = mediated_world();
    let dir = clone(&world);
    commit(&world, &dir, "first.txt");
    world.git_ok(Some(&dir), &["push", "-q", "origin", "HEAD:refs/heads/adagent/rebased"]);
    world.git_ok(Some(&dir), &["commit", "-q", "--amend", "-m", "rewritten"]);
    let out = world.git(Some(&dir), &["push", "-q", "origin", "HEAD:refs/heads/adagent/rebased"]);
    assert!(
        !out.status.success(),
        "a plain push of a rewrite is refused by git itself"
    );
    world.git_ok(
        Some(&dir),
        &["push", "-q", "--force", "origin", "HEAD:refs/heads/adagent/rebased"],
    );
    let head = String::from_utf8(world.git_ok(Some(&dir), &["rev-parse", "HEAD"]).stdout).expect("utf8");
    assert!(server_refs(&world).contains(&format!("refs/heads/adagent/rebased {}", head.trim())));
    let out = world.git(Some(&dir), &["push", "--force", "origin", "HEAD:refs/heads/main"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("outside the agent's branches"));
}

#[test]
fn another_repository_gets_404() {
    let (world, proxy) = mediated_world();
    let out = world.git(None, &["ls-remote", &format!("{proxy}{OWNER}/{OTHER_REPO}.git")]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not found"), "{stderr}");
    assert!(world.hub.mints().is_empty(), "nothing was minted for it");
}

#[test]
fn a_100_mb_push_streams_through_with_bounded_memory() {
    let (world, _) = mediated_world();
    let dir = clone(&world);
    // Incompressible, so the pack really is 100 MB.
    let mut data = vec![0u8; 100 * 1024 * 1024];
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    for chunk in data.chunks_mut(8) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
    }
    std::fs::write(dir.join("big.bin"), &data).expect("write");
    drop(data);
    world.git_ok(Some(&dir), &["add", "big.bin"]);
    world.git_ok(Some(&dir), &["commit", "-q", "-m", "big"]);
    world.git_ok(Some(&dir), &["push", "-q", "origin", "HEAD:refs/heads/adagent/big"]);
    assert!(server_refs(&world).contains("refs/heads/adagent/big"));
    let pid = world.mintd.as_ref().expect("running").id();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let peak_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM");
    eprintln!("mintd peak RSS during a 100 MB push: {peak_kib} KiB");
    assert!(
        peak_kib < 48 * 1024,
        "mintd's peak RSS was {peak_kib} KiB for a 100 MB push"
    );
}

#[test]
fn the_socket_hands_out_no_token_in_mediated_mode() {
    let (world, proxy) = mediated_world();
    let url = world.url();
    let (protocol, host) = url.split_once("://").expect("url");
    let request = format!("protocol={protocol}\nhost={host}\npath={OWNER}/{REPO}.git\n\n");
    let out = world.helper("get", request.as_bytes());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stdout.contains("password="), "a token was handed out: {stdout}");
    assert!(!out.status.success(), "the helper reports the refusal");
    assert!(
        stderr.contains("mediated mode") && stderr.contains(&proxy),
        "the refusal names the mode and the way out: {stderr}"
    );
    assert!(world.hub.mints().is_empty(), "nothing was minted for it");
}

/// Issue 16: a push reaches GitHub as git sends it, so GitHub unpacks while git is still writing. The proxy
/// used to read the whole body first (up to 8 MiB, for a replay after a 401), which put git's upload and
/// GitHub's unpacking end to end: a push of 20,000 files took 2.3 times as long as a direct one.
#[test]
fn a_push_reaches_github_while_git_is_still_sending_it() {
    use std::io::{Read, Write};
    let (world, proxy) = mediated_world();
    let dir = clone(&world);
    let mut state: u64 = 0x2545_F491_4F6C_DD1D;
    let data: Vec<u8> = (0..(1 << 18))
        .flat_map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()
        })
        .collect();
    std::fs::write(dir.join("two-mib.bin"), &data).expect("write");
    world.git_ok(Some(&dir), &["add", "two-mib.bin"]);
    world.git_ok(Some(&dir), &["commit", "-q", "-m", "two MiB"]);
    let rev = |r: &str| {
        let out = world.git_ok(Some(&dir), &["rev-parse", r]).stdout;
        String::from_utf8(out).expect("utf8").trim().to_owned()
    };
    let (old, new) = (rev("origin/main"), rev("HEAD"));
    // What git push sends: the command list, then the pack of what the remote lacks.
    let mut pack_objects = std::process::Command::new("git")
        .current_dir(&dir)
        .args(["pack-objects", "--stdout", "--revs", "-q"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("git pack-objects");
    write!(pack_objects.stdin.take().expect("stdin"), "{new}\n^{old}\n").expect("revs");
    let pack = pack_objects.wait_with_output().expect("pack").stdout;
    let command = format!("{} {new} refs/heads/adagent/streamed\0report-status\n", "0".repeat(40));
    let mut body = format!("{:04x}{command}0000", command.len() + 4).into_bytes();
    body.extend_from_slice(&pack);

    let authority = proxy.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = std::net::TcpStream::connect(authority).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    write!(
        stream,
        "POST /{OWNER}/{REPO}.git/git-receive-pack HTTP/1.1\r\nHost: {authority}\r\n\
         Content-Type: application/x-git-receive-pack-request\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .expect("send");
    let half = body.len() / 2;
    stream.write_all(&body[..half]).expect("send the first half");
    let at_github = || {
        world
            .hub
            .requests()
            .iter()
            .any(|r| r.method == "POST" && r.path.ends_with("/git-receive-pack"))
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !at_github() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        at_github(),
        "GitHub had not been sent the push 10 s after git sent half of its {} bytes",
        body.len()
    );
    stream.write_all(&body[half..]).expect("send the rest");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).expect("the answer");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.contains("ok refs/heads/adagent/streamed"), "{answer}");
    assert!(
        server_refs(&world).contains(&format!("refs/heads/adagent/streamed {new}")),
        "{}",
        server_refs(&world)
    );
}

/// Pseudo-random (incompressible) bytes, so a pack carries all of them.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut bytes = Vec::with_capacity(len + 8);
    while bytes.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        bytes.extend_from_slice(&state.to_le_bytes());
    }
    bytes.truncate(len);
    bytes
}

/// The proxy streams a push to GitHub as it comes and keeps a copy on the way: when GitHub rejects the token
/// partway (it died between the handshake and the upload), the copy, completed from the rest of git's body,
/// is replayed with a fresh token and git never sees the 401.
#[test]
fn a_push_github_rejects_midway_is_replayed_from_the_copy_with_a_fresh_token() {
    let (world, _) = mediated_world();
    let dir = clone(&world);
    std::fs::write(dir.join("two-mib.bin"), noise(2 << 20, 7)).expect("write");
    world.git_ok(Some(&dir), &["add", "two-mib.bin"]);
    world.git_ok(Some(&dir), &["commit", "-q", "-m", "two MiB"]);
    world
        .hub
        .fail_next_pushes(1, &fakehub::InjectedFailure::status(401, "Bad credentials"));
    world.git_ok(
        Some(&dir),
        &["push", "-q", "origin", "HEAD:refs/heads/adagent/replayed"],
    );
    assert!(server_refs(&world).contains("refs/heads/adagent/replayed"));
    assert_eq!(
        world.hub.tokens().len(),
        2,
        "the rejected token was replaced by one fresh one"
    );
}

/// Over the 8 MiB copy limit a push streams without a copy; a 401 then cannot be replayed. git fails with
/// nothing pushed (it prints the 502, not the body that says why), and the next run gets a fresh token and
/// goes through.
#[test]
fn a_push_too_large_to_replay_fails_once_with_nothing_pushed_and_the_rerun_succeeds() {
    let (world, _) = mediated_world();
    let dir = clone(&world);
    std::fs::write(dir.join("ten-mib.bin"), noise(10 << 20, 11)).expect("write");
    world.git_ok(Some(&dir), &["add", "ten-mib.bin"]);
    world.git_ok(Some(&dir), &["commit", "-q", "-m", "ten MiB"]);
    world
        .hub
        .fail_next_pushes(1, &fakehub::InjectedFailure::status(401, "Bad credentials"));
    // A post buffer that holds the whole pack: git then sends no probe request first (which would take the
    // 401 and be replayed), only the one large POST.
    let failed = world.git(
        Some(&dir),
        &[
            "-c",
            "http.postBuffer=64m",
            "push",
            "-q",
            "origin",
            "HEAD:refs/heads/adagent/large",
        ],
    );
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(!failed.status.success(), "{stderr}");
    assert!(stderr.contains("HTTP 502"), "{stderr}");
    assert!(!server_refs(&world).contains("refs/heads/adagent/large"));
    world.git_ok(Some(&dir), &["push", "-q", "origin", "HEAD:refs/heads/adagent/large"]);
    assert!(server_refs(&world).contains("refs/heads/adagent/large"));
}
