//! `mint clone` and `mint publish`, run with no `git` on PATH, checked against the real git as the oracle:
//! the clone against `git clone`, the staged tree against `git add -A && git write-tree`, the push by
//! `git fsck --strict` on the server repository.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::support::{OWNER, REPO, World};

/// Runs the `mint` binary as an agent would, with a PATH that holds no `git`.
pub(crate) fn mint(world: &World, dir: &Path, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mint"));
    command.args(args);
    as_the_agent(&mut command, world, dir).output().expect("mint runs")
}

/// `command` in `dir` with the agent's environment and nothing else: a PATH that holds no `git`, the
/// world's HOME and mintd's socket.
pub(crate) fn as_the_agent<'c>(command: &'c mut Command, world: &World, dir: &Path) -> &'c mut Command {
    let no_git = world.dir.path().join("empty-bin");
    std::fs::create_dir_all(&no_git).expect("dir");
    command
        .current_dir(dir)
        .env_clear()
        .env("PATH", &no_git)
        .env("HOME", &world.home)
        .env("MINT_SOCKET", &world.socket)
}

pub(crate) fn mint_ok(world: &World, dir: &Path, args: &[&str]) -> String {
    let output = mint(world, dir, args);
    assert!(
        output.status.success(),
        "mint {args:?} failed ({}):\n{}\nmintd log:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr),
        world.mintd_log()
    );
    String::from_utf8(output.stdout).expect("utf8")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// The real git on a directory, with the test's HOME (for reading what mint wrote).
pub(crate) fn git(world: &World, dir: &Path, args: &[&str]) -> String {
    let output = world.git_ok(Some(dir), args);
    stdout(&output)
}

fn server(world: &World) -> PathBuf {
    world.hub.repo_path(OWNER, REPO)
}

/// The real git on the server's (fakehub's) repository.
pub(crate) fn server_git(world: &World, args: &[&str]) -> String {
    let repo = server(world);
    let mut full = vec!["--git-dir", repo.to_str().expect("utf8")];
    full.extend_from_slice(args);
    git(world, world.dir.path(), &full)
}

pub(crate) fn mint_clone(world: &World, name: &str) -> PathBuf {
    mint_ok(world, world.dir.path(), &["clone", name]);
    world.dir.path().join(name)
}

fn publish_args<'a>(branch: &'a str, message: &'a str) -> Vec<&'a str> {
    vec!["publish", "--branch", branch, "--message", message, "--title", message]
}

/// Seed the server's main with files of every kind that a change set then modifies.
fn seed(world: &World) {
    let dir = world.dir.path().join("seed");
    world.git_ok(
        None,
        &["clone", "-q", &world.repo_url(REPO), dir.to_str().expect("utf8")],
    );
    write(&dir, "modify.txt", "one\n");
    write(&dir, "delete.txt", "gone soon\n");
    write(&dir, "rename-me.txt", "moving\n");
    write(&dir, "make-exec.sh", "#!/bin/sh\necho hi\n");
    write(&dir, "becomes-link.txt", "a file today\n");
    write(&dir, "dir/nested/deep.txt", "deep\n");
    write(&dir, "dir/becomes-file/inner.txt", "inner\n");
    write(&dir, ".gitignore", "*.log\nbuild/\n");
    world.git_ok(Some(&dir), &["add", "-A"]);
    world.git_ok(Some(&dir), &["commit", "-q", "-m", "seed"]);
    world.git_ok(Some(&dir), &["push", "-q", "origin", "HEAD:main"]);
}

fn write(dir: &Path, rela: &str, content: &str) {
    let path = dir.join(rela);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("dirs");
    std::fs::write(path, content).expect("write");
}

/// A change set with every kind `git add -A` stages, and things it must leave out.
fn change_everything(dir: &Path) {
    write(dir, "modify.txt", "one\ntwo\n");
    std::fs::remove_file(dir.join("delete.txt")).expect("rm");
    std::fs::rename(dir.join("rename-me.txt"), dir.join("renamed/moved.txt")).unwrap_or_else(|_| {
        std::fs::create_dir_all(dir.join("renamed")).expect("dir");
        std::fs::rename(dir.join("rename-me.txt"), dir.join("renamed/moved.txt")).expect("mv");
    });
    let exec = dir.join("make-exec.sh");
    std::fs::set_permissions(&exec, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::fs::remove_file(dir.join("becomes-link.txt")).expect("rm");
    std::os::unix::fs::symlink("modify.txt", dir.join("becomes-link.txt")).expect("symlink");
    std::os::unix::fs::symlink("../dir/nested", dir.join("renamed/link-to-dir")).expect("symlink");
    std::fs::remove_dir_all(dir.join("dir/becomes-file")).expect("rm dir");
    write(dir, "dir/becomes-file", "a file where a directory was\n");
    write(dir, "new/a/b/c/new.txt", "brand new\n");
    write(dir, "new/tool.py", "print('x')\n");
    std::fs::set_permissions(dir.join("new/tool.py"), std::fs::Permissions::from_mode(0o700)).expect("chmod");
    write(dir, "ignored.log", "ignored\n");
    write(dir, "build/out.bin", "ignored dir\n");
    write(dir, "sub/.gitignore", "secret.txt\n");
    write(dir, "sub/secret.txt", "ignored by a nested .gitignore\n");
    write(dir, "sub/kept.txt", "kept\n");
    std::fs::create_dir_all(dir.join("empty/dir")).expect("empty dirs are not staged");
}

pub(crate) fn copy_tree(from: &Path, to: &Path) {
    let status = Command::new("cp").arg("-a").arg(from).arg(to).status().expect("cp");
    assert!(status.success());
}

/// The two work trees hold the same files, links and modes (`.git` aside).
pub(crate) fn assert_same_work_tree(ours: &Path, theirs: &Path) {
    let diff = Command::new("diff")
        .args(["-r", "--no-dereference", "-x", ".git"])
        .arg(ours)
        .arg(theirs)
        .output()
        .expect("diff");
    assert!(diff.status.success(), "{}", String::from_utf8_lossy(&diff.stdout));
}

/// What `mint clone` says of a repository whose default branch has no commit but which holds a tag: the
/// branch, and that nothing was checked out (it used to call such a repository empty).
#[test]
fn mint_clone_of_a_repository_with_only_a_tag_says_its_branch_has_no_commit() {
    let world = World::start();
    server_git(&world, &["tag", "v1", "main"]);
    server_git(&world, &["update-ref", "-d", "refs/heads/main"]);
    let output = mint(&world, world.dir.path(), &["clone", "fresh"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("its default branch main has no commit yet, so nothing was checked out"),
        "{stderr}"
    );
    assert_eq!(
        git(&world, &world.dir.path().join("fresh"), &["symbolic-ref", "HEAD"]),
        "refs/heads/main"
    );
}

#[test]
fn mint_clone_checks_out_what_git_clone_does() {
    let world = World::start();
    seed(&world);
    let ours = mint_clone(&world, "ours");
    let theirs = world.dir.path().join("theirs");
    world.git_ok(
        None,
        &["clone", "-q", &world.repo_url(REPO), theirs.to_str().expect("utf8")],
    );
    for args in [
        &["rev-parse", "HEAD"][..],
        &["symbolic-ref", "HEAD"],
        &["ls-files", "--stage"],
        &[
            "for-each-ref",
            "--format=%(refname) %(objectname) %(*objectname) %(symref)",
        ],
        &["config", "--local", "--get-regexp", r"^(remote|branch)\."],
    ] {
        assert_eq!(git(&world, &ours, args), git(&world, &theirs, args), "git {args:?}");
    }
    assert_eq!(git(&world, &ours, &["status", "--porcelain"]), "");
    git(&world, &ours, &["fsck", "--strict"]);
    assert_same_work_tree(&ours, &theirs);
    // The remote is the plain URL: no credential was written anywhere.
    assert_eq!(
        git(&world, &ours, &["remote", "get-url", "origin"]),
        world.repo_url(REPO)
    );
    let token = &world.hub.tokens()[0].token;
    let (files, found) = World::files_containing(&[&ours], token);
    assert!(files > 5 && found.is_empty(), "token in {found:?}");
}

/// One connection, as `git clone` makes: a handshake, `ls-refs` and the pack, and no second handshake to
/// write the refs. A refused token (mintd's, revoked) is answered once with a fresh one, in that connection.
#[test]
fn mint_clone_makes_one_connection_and_retries_a_refused_token_once() {
    let world = World::start();
    seed(&world);
    let git_requests = |from: usize| -> Vec<String> {
        let repo = format!("/{OWNER}/{REPO}.git/");
        world.hub.requests()[from..]
            .iter()
            .filter_map(|r| {
                let service = r.path.strip_prefix(&repo)?;
                Some(format!("{} {service} {}", r.method, r.status))
            })
            .collect()
    };
    let before = world.hub.requests().len();
    mint_clone(&world, "first");
    assert_eq!(
        git_requests(before),
        [
            "GET info/refs 200",
            "POST git-upload-pack 200",
            "POST git-upload-pack 200"
        ],
        "the handshake, ls-refs, the pack"
    );

    world.hub.revoke_all_tokens();
    let before = world.hub.requests().len();
    mint_clone(&world, "second");
    assert_eq!(
        git_requests(before),
        [
            "GET info/refs 401",
            "GET info/refs 200",
            "POST git-upload-pack 200",
            "POST git-upload-pack 200"
        ]
    );
    assert_eq!(world.hub.tokens().len(), 2, "one re-mint");
    assert_same_work_tree(&world.dir.path().join("first"), &world.dir.path().join("second"));
}

#[test]
fn publish_pushes_exactly_the_tree_git_add_all_would_and_opens_the_pull_request() {
    let world = World::start();
    seed(&world);
    let dir = mint_clone(&world, "work");
    let old_tip = git(&world, &dir, &["rev-parse", "HEAD"]);
    change_everything(&dir);

    let oracle = world.dir.path().join("oracle");
    copy_tree(&dir, &oracle);
    world.git_ok(Some(&oracle), &["add", "-A"]);
    let expected_tree = git(&world, &oracle, &["write-tree"]);

    let out = mint_ok(
        &world,
        &dir,
        &publish_args("adagent/every-kind", "Change every kind of path"),
    );
    let url = out.lines().last().expect("a URL");
    let pulls = world.hub.pulls();
    assert_eq!(pulls.len(), 1);
    assert!(url.ends_with(&format!("/pull/{}", pulls[0].number)), "{out}");
    assert_eq!(
        (pulls[0].head.as_str(), pulls[0].base.as_str()),
        ("adagent/every-kind", "main")
    );

    let pushed = server_git(&world, &["rev-parse", "refs/heads/adagent/every-kind"]);
    assert_eq!(
        server_git(&world, &["rev-parse", &format!("{pushed}^{{tree}}")]),
        expected_tree
    );
    assert_eq!(server_git(&world, &["rev-parse", &format!("{pushed}^")]), old_tip);
    assert_eq!(pulls[0].head_sha, pushed);
    server_git(&world, &["fsck", "--strict"]);

    // Locally: on the branch, at the pushed commit, nothing left to stage, git agrees the index is right.
    assert_eq!(
        git(&world, &dir, &["symbolic-ref", "--short", "HEAD"]),
        "adagent/every-kind"
    );
    assert_eq!(git(&world, &dir, &["rev-parse", "HEAD"]), pushed);
    assert_eq!(
        git(&world, &dir, &["rev-parse", "origin/adagent/every-kind"]),
        pushed,
        "the remote-tracking branch follows the push, as after git push"
    );
    assert_eq!(git(&world, &dir, &["status", "--porcelain", "--ignored=no"]), "");
    assert_eq!(git(&world, &dir, &["write-tree"]), expected_tree);
    git(&world, &dir, &["fsck", "--strict"]);
    // The author came from user.name/user.email in the (test's) global git config.
    assert_eq!(
        git(&world, &dir, &["log", "-1", "--format=%an <%ae>|%cn <%ce>|%s"]),
        "Test Agent <agent@example.invalid>|Test Agent <agent@example.invalid>|Change every kind of path"
    );
    let ignored = server_git(&world, &["ls-tree", "-r", "--name-only", &pushed]);
    for path in ["ignored.log", "build/out.bin", "sub/secret.txt"] {
        assert!(!ignored.lines().any(|l| l == path), "{path} was pushed");
    }
}

#[test]
fn a_second_publish_fast_forwards_the_branch_and_returns_the_same_pull_request() {
    let world = World::start();
    let dir = mint_clone(&world, "work");
    write(&dir, "first.txt", "first\n");
    let first_url = mint_ok(&world, &dir, &publish_args("adagent/twice", "First"));
    let first = server_git(&world, &["rev-parse", "refs/heads/adagent/twice"]);

    write(&dir, "second.txt", "second\n");
    let out = mint_ok(
        &world,
        &dir,
        &[
            "publish",
            "--branch",
            "adagent/twice",
            "--message",
            "Second",
            "--title",
            "First",
            "--json",
        ],
    );
    let report: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON object");
    let second = server_git(&world, &["rev-parse", "refs/heads/adagent/twice"]);
    assert_eq!(server_git(&world, &["rev-parse", &format!("{second}^")]), first);
    assert_eq!(report["outcome"], "published");
    assert_eq!(report["commit"], second.as_str());
    assert_eq!(report["pull_request"]["url"], first_url.trim());
    assert_eq!(report["pull_request"]["created"], false);
    assert_eq!(world.hub.pulls().len(), 1);
    server_git(&world, &["fsck", "--strict"]);

    // Nothing changed since: re-running is the README's recovery path, so it succeeds (exit 0) and prints the
    // same pull request, committing and pushing nothing new.
    let again = mint(&world, &dir, &publish_args("adagent/twice", "Third"));
    assert_eq!(
        again.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert_eq!(
        stdout(&again),
        first_url.trim(),
        "re-running finds the same pull request"
    );
    assert_eq!(git(&world, &dir, &["rev-parse", "HEAD"]), second, "no new commit");
    assert_eq!(
        server_git(&world, &["rev-parse", "refs/heads/adagent/twice"]),
        second,
        "nothing new pushed"
    );
    assert_eq!(world.hub.pulls().len(), 1, "no second pull request");
    // A branch with nothing to publish at all is the distinct outcome, with an exit code of its own.
    let fresh = mint_clone(&world, "fresh");
    let nothing = mint(&world, &fresh, &publish_args("adagent/nothing", "Nothing"));
    assert_eq!(nothing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&nothing.stderr).contains("nothing to commit"));
    assert!(!server_git(&world, &["for-each-ref"]).contains("adagent/nothing"));
}

#[test]
fn a_ten_megabyte_binary_is_pushed_intact() {
    let world = World::start();
    let dir = mint_clone(&world, "work");
    let mut data = vec![0u8; 10 * 1024 * 1024];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for b in &mut data {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x.to_le_bytes()[0];
    }
    std::fs::write(dir.join("model.bin"), &data).expect("write");
    mint_ok(&world, &dir, &publish_args("adagent/binary", "Add a model"));
    let size = server_git(&world, &["cat-file", "-s", "refs/heads/adagent/binary:model.bin"]);
    assert_eq!(size, data.len().to_string());
    let local_blob = git(&world, &dir, &["hash-object", "model.bin"]);
    assert_eq!(
        server_git(&world, &["rev-parse", "refs/heads/adagent/binary:model.bin"]),
        local_blob
    );
    server_git(&world, &["fsck", "--strict"]);
}

#[test]
fn a_hook_rejection_is_reported_with_its_reason_and_the_commit_is_kept() {
    let world = World::start();
    let hook = server(&world).join("hooks/pre-receive");
    std::fs::write(
        &hook,
        "#!/bin/sh\necho 'policy: commits need a ticket reference' >&2\nexit 1\n",
    )
    .expect("hook");
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let dir = mint_clone(&world, "work");
    write(&dir, "change.txt", "change\n");
    let output = mint(&world, &dir, &publish_args("adagent/hooked", "Hooked"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("pre-receive hook declined"), "{stderr}");
    assert!(stderr.contains("policy: commits need a ticket reference"), "{stderr}");
    assert!(stderr.contains("is kept on adagent/hooked"), "{stderr}");
    assert!(stdout(&output).is_empty(), "no URL on failure");
    assert!(!server_git(&world, &["for-each-ref"]).contains("adagent/hooked"));
    assert!(world.hub.pulls().is_empty());
    assert_eq!(git(&world, &dir, &["log", "-1", "--format=%s"]), "Hooked");
}

#[test]
fn a_branch_outside_the_prefix_is_refused_before_anything_is_touched() {
    let world = World::start();
    let dir = mint_clone(&world, "work");
    write(&dir, "change.txt", "change\n");
    let refs_before = server_git(&world, &["for-each-ref"]);
    let status_before = git(&world, &dir, &["status", "--porcelain"]);
    for branch in ["main", "feature/x", "adagent/", "adagent/a..b"] {
        let output = mint(&world, &dir, &publish_args(branch, "Nope"));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{branch}: {stderr}");
        assert!(
            stderr.contains("refused") && stderr.contains("adagent/"),
            "{branch}: {stderr}"
        );
    }
    assert_eq!(server_git(&world, &["for-each-ref"]), refs_before);
    assert_eq!(git(&world, &dir, &["status", "--porcelain"]), status_before);
    assert_eq!(git(&world, &dir, &["symbolic-ref", "--short", "HEAD"]), "main");
    assert!(world.hub.pulls().is_empty());
}

#[test]
fn a_remote_branch_that_moved_is_never_overwritten() {
    let world = World::start();
    let dir = mint_clone(&world, "work");
    write(&dir, "ours.txt", "ours\n");
    mint_ok(&world, &dir, &publish_args("adagent/shared", "Ours"));
    // Someone else pushes to the branch with git.
    let other = world.dir.path().join("other");
    world.git_ok(
        None,
        &[
            "clone",
            "-q",
            "-b",
            "adagent/shared",
            &world.repo_url(REPO),
            other.to_str().expect("utf8"),
        ],
    );
    write(&other, "theirs.txt", "theirs\n");
    world.git_ok(Some(&other), &["add", "-A"]);
    world.git_ok(Some(&other), &["commit", "-q", "-m", "theirs"]);
    world.git_ok(Some(&other), &["push", "-q", "origin", "HEAD"]);
    let theirs = server_git(&world, &["rev-parse", "refs/heads/adagent/shared"]);

    write(&dir, "more.txt", "more\n");
    let output = mint(&world, &dir, &publish_args("adagent/shared", "More"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("someone else pushed"), "{stderr}");
    assert_eq!(server_git(&world, &["rev-parse", "refs/heads/adagent/shared"]), theirs);
}

#[test]
fn an_empty_remote_receives_the_first_branch() {
    let world = World::start();
    server_git(&world, &["update-ref", "-d", "refs/heads/main"]);
    let dir = mint_clone(&world, "work");
    assert_eq!(std::fs::read_dir(&dir).expect("dir").count(), 1, "only .git");
    write(&dir, "README.md", "# first\n");
    let output = mint(&world, &dir, &publish_args("adagent/first", "First commit"));
    let pushed = server_git(&world, &["rev-parse", "refs/heads/adagent/first"]);
    assert_eq!(git(&world, &dir, &["rev-parse", "HEAD"]), pushed);
    assert_eq!(server_git(&world, &["rev-list", "--count", &pushed]), "1");
    server_git(&world, &["fsck", "--strict"]);
    // With no default branch there is nothing to open a pull request against; mint says so.
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success() && stderr.contains("pull request"), "{stderr}");
}

#[test]
fn mediated_mode_clones_and_publishes_through_the_proxy_with_no_token_in_the_sandbox() {
    let mut world = World::start_with(crate::support::Options {
        start_mintd: false,
        ..Default::default()
    });
    let proxy = world.start_mediated();
    let dir = mint_clone(&world, "work");
    assert!(git(&world, &dir, &["remote", "get-url", "origin"]).starts_with(proxy.trim_end_matches('/')));
    write(&dir, "via-proxy.txt", "mediated\n");
    let out = mint_ok(&world, &dir, &publish_args("adagent/mediated", "Through the proxy"));
    assert!(out.trim().ends_with("/pull/1"), "{out}");
    let pushed = server_git(&world, &["rev-parse", "refs/heads/adagent/mediated"]);
    assert_eq!(git(&world, &dir, &["rev-parse", "HEAD"]), pushed);
    let token = &world.hub.tokens()[0].token;
    let (_, found) = World::files_containing(&[&world.home, &dir], token);
    assert!(found.is_empty(), "token in {found:?}");
}
