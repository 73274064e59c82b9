//! What a sandbox does: clone, commit, push to `adagent/…` with nothing but the helper configured.

use std::collections::BTreeMap;

use crate::support::{OTHER_REPO, OWNER, REPO, World};

#[test]
fn clone_commit_push_with_one_scoped_mint_and_no_token_on_disk() {
    let world = World::start();
    let clone = world.dir.path().join("clone");
    let clone_str = clone.to_str().expect("utf8");
    world.git_ok(None, &["clone", "-q", &world.repo_url(REPO), clone_str]);
    std::fs::write(clone.join("change.txt"), "made in the sandbox\n").expect("write");
    world.git_ok(Some(&clone), &["add", "-A"]);
    world.git_ok(Some(&clone), &["commit", "-q", "-m", "agent change"]);
    world.git_ok(Some(&clone), &["push", "-q", "origin", "HEAD:refs/heads/adagent/e2e"]);
    world.git_ok(Some(&clone), &["fetch", "-q", "origin"]);

    // The branch landed with exactly our commit.
    let ours = world.git_ok(Some(&clone), &["rev-parse", "HEAD"]).stdout;
    let theirs = std::process::Command::new("git")
        .arg("--git-dir")
        .arg(world.hub.repo_path(OWNER, REPO))
        .args(["rev-parse", "refs/heads/adagent/e2e"])
        .output()
        .expect("git");
    assert_eq!(
        String::from_utf8_lossy(&ours).trim(),
        String::from_utf8_lossy(&theirs.stdout).trim()
    );

    // One mint for clone + push + fetch, scoped to the one repository and the three permissions.
    let mints = world.hub.mints();
    assert_eq!(mints.len(), 1, "{mints:?}");
    assert_eq!(mints[0].repositories.as_deref(), Some(&[REPO.to_owned()][..]));
    let expected: BTreeMap<String, String> = [("contents", "write"), ("metadata", "read"), ("pull_requests", "write")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    assert_eq!(mints[0].permissions.as_ref(), Some(&expected));
    let tokens = world.hub.tokens();
    assert_eq!(tokens.len(), 1);
    assert_eq!(tokens[0].repositories, vec![REPO.to_owned()]);
    let token = &tokens[0].token;
    assert!(
        token.len() > 400 && token.matches('.').count() == 2,
        "fakehub issues GitHub's long format"
    );

    // The token is nowhere on disk, nor in mintd's debug log.
    let (files, found) = World::files_containing(&[&world.home, &clone], token);
    assert!(files > 10, "searched {files} files");
    assert!(found.is_empty(), "token written to {found:?}");
    let log = world.mintd_log();
    assert!(log.contains("minted installation token"), "{log}");
    assert!(!log.contains(token.as_str()), "the token is in mintd's log");
    // And the token can't reach the other repository of the same installation.
    let refused = world.git(None, &["ls-remote", &world.repo_url(OTHER_REPO)]);
    assert!(!refused.status.success());
}

#[test]
fn concurrent_cold_fills_cause_exactly_one_mint() {
    let world = World::start();
    // Slow GitHub down so all 64 really arrive while the first mint is in flight.
    world.hub.set_mint_latency(std::time::Duration::from_millis(400));
    let passwords: Vec<Option<String>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..64).map(|_| s.spawn(|| world.fill(REPO))).collect();
        handles.into_iter().map(|h| h.join().expect("thread")).collect()
    });
    assert!(passwords.iter().all(Option::is_some), "every fill got a password");
    assert!(passwords.windows(2).all(|w| w[0] == w[1]), "all got the same token");
    assert_eq!(world.hub.mints().len(), 1);
}

#[test]
fn erase_then_get_yields_a_new_token() {
    let world = World::start();
    let first = world.fill(REPO).expect("token");
    let url = world.url();
    let (protocol, host) = url.split_once("://").expect("url");
    // What git does after a 401: `reject` runs every helper's `erase` with the failing credential.
    let reject = format!(
        "protocol={protocol}\nhost={host}\npath={OWNER}/{REPO}.git\nusername=x-access-token\npassword={first}\n\n"
    );
    let out = world.git_with_input(None, &["credential", "reject"], Some(&reject));
    assert!(out.status.success());
    let second = world.fill(REPO).expect("token");
    assert_ne!(first, second);
    assert_eq!(world.hub.mints().len(), 2);
}

#[test]
fn an_uninstalled_app_fails_git_fast_with_the_installation_named() {
    let world = World::start_with(crate::support::Options {
        installation_id: 999,
        ..Default::default()
    });
    let started = std::time::Instant::now();
    let out = world.git(None, &["ls-remote", &world.repo_url(REPO)]);
    assert!(!out.status.success());
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("installation 999 not found: the GitHub App was uninstalled or the id is wrong"),
        "{stderr}"
    );
    // The helper told git to stop rather than prompt.
    assert!(stderr.contains("told us to quit"), "{stderr}");
}
