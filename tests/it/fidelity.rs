//! `mint publish` on the repositories people have, with the real git as the oracle: each case prepares the
//! same work tree twice, stages one copy with `git add -A && git write-tree`, publishes the other, and
//! compares the trees. The server's repository passes `git fsck --strict` after every publish.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use fakehub::InjectedFailure;

use crate::agent::{copy_tree, git, mint, mint_clone, mint_ok, server_git};
use crate::support::{REPO, World};

fn write(dir: &Path, rela: &str, content: &[u8]) {
    let path = dir.join(rela);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("dirs");
    std::fs::write(path, content).expect("write");
}

fn publish_args(branch: &str) -> Vec<&str> {
    vec![
        "publish",
        "--branch",
        branch,
        "--message",
        "Change",
        "--title",
        "Change",
    ]
}

/// Push `files` and what `prepare` does to the server's main with the real git.
fn seed(world: &World, files: &[(&str, &[u8])], prepare: impl FnOnce(&Path)) {
    let dir = world.dir.path().join("seed");
    world.git_ok(
        None,
        &["clone", "-q", &world.repo_url(REPO), dir.to_str().expect("utf8")],
    );
    for (rela, content) in files {
        write(&dir, rela, content);
    }
    prepare(&dir);
    world.git_ok(Some(&dir), &["add", "-A"]);
    world.git_ok(Some(&dir), &["commit", "-q", "-m", "seed"]);
    world.git_ok(Some(&dir), &["push", "-q", "--follow-tags", "origin", "HEAD:main"]);
}

/// What `git add -A && git write-tree` makes of a copy of `dir` (git's own config and filters apply).
fn oracle_tree(world: &World, dir: &Path) -> String {
    let oracle = world
        .dir
        .path()
        .join(format!("oracle-{}", dir.file_name().expect("name").to_string_lossy()));
    copy_tree(dir, &oracle);
    world.git_ok(Some(&oracle), &["add", "-A"]);
    git(world, &oracle, &["write-tree"])
}

/// Publish `dir` to `branch` and check the pushed tree is the oracle's, and the server's repository is sound.
fn publish_matches_git(world: &World, dir: &Path, branch: &str) -> String {
    let expected = oracle_tree(world, dir);
    mint_ok(world, dir, &publish_args(branch));
    pushed_tree_is(world, branch, &expected)
}

/// The tree pushed to `branch`, checked against the oracle's and for a sound server repository.
fn pushed_tree_is(world: &World, branch: &str, expected: &str) -> String {
    let pushed = server_git(world, &["rev-parse", &format!("refs/heads/{branch}^{{tree}}")]);
    assert_eq!(
        pushed,
        expected,
        "mint's tree differs from git's:\nmint: {}\ngit:  {}",
        server_git(world, &["ls-tree", "-r", &pushed]),
        server_git(world, &["ls-tree", "-r", expected]),
    );
    server_git(world, &["fsck", "--strict"]);
    pushed
}

#[test]
fn annotated_and_lightweight_tags_on_the_remote_do_not_break_a_second_publish() {
    let world = World::start();
    seed(&world, &[("README.md", b"# hello\n")], |_| {});
    let seed_dir = world.dir.path().join("seed");
    world.git_ok(Some(&seed_dir), &["tag", "-a", "v1.0", "-m", "release"]);
    world.git_ok(Some(&seed_dir), &["tag", "light"]);
    // A tag of a tree is not a commit: nothing to walk from, and no reason to fail.
    world.git_ok(Some(&seed_dir), &["tag", "-a", "tree-tag", "-m", "tree", "HEAD^{tree}"]);
    world.git_ok(Some(&seed_dir), &["push", "-q", "origin", "--tags"]);

    let dir = mint_clone(&world, "work");
    write(&dir, "change.txt", b"change\n");
    publish_matches_git(&world, &dir, "adagent/tags");
    let tip = server_git(&world, &["rev-parse", "refs/heads/adagent/tags"]);
    // The README's recovery path: run it again. Nothing new: it succeeds and pushes nothing.
    let again = mint(&world, &dir, &publish_args("adagent/tags"));
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
    assert_eq!(server_git(&world, &["rev-parse", "refs/heads/adagent/tags"]), tip);
}

#[test]
fn text_auto_and_eol_attributes_convert_line_endings_as_git_add_does() {
    let world = World::start();
    seed(
        &world,
        &[
            (".gitattributes", b"* text=auto\n*.bat text eol=crlf\n*.bin binary\n"),
            ("unix.txt", b"one\n"),
        ],
        |_| {},
    );
    let dir = mint_clone(&world, "work");
    write(&dir, "windows.txt", b"one\r\ntwo\r\n");
    write(&dir, "unix.txt", b"one\r\nthree\r\n");
    write(&dir, "run.bat", b"@echo off\r\necho hi\r\n");
    write(&dir, "data.bin", b"\x00\x01\r\n\x02");
    let tree = publish_matches_git(&world, &dir, "adagent/eol");
    assert_eq!(
        server_git(&world, &["cat-file", "-p", &format!("{tree}:windows.txt")]),
        "one\ntwo"
    );
}

#[test]
fn core_autocrlf_applies_without_attributes() {
    let world = World::start();
    seed(&world, &[("a.txt", b"a\n")], |_| {});
    let dir = mint_clone(&world, "work");
    git(&world, &dir, &["config", "core.autocrlf", "input"]);
    write(&dir, "crlf.txt", b"x\r\ny\r\n");
    publish_matches_git(&world, &dir, "adagent/autocrlf");
}

/// `mint` with git and git-lfs on PATH (filter drivers need git), which must succeed.
fn mint_with_git(world: &World, dir: &Path, args: &[&str]) {
    let output = crate::lfs::mint_with_lfs(world, dir, args);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
}

#[test]
fn an_lfs_tracked_binary_is_staged_as_its_pointer_through_the_real_git_lfs_filter() {
    let world = World::start();
    // `git lfs install` writes filter.lfs.{clean,smudge,process,required} into the (test's) global config,
    // which both git and mint read.
    git(&world, world.dir.path(), &["lfs", "install", "--skip-repo"]);
    seed(
        &world,
        &[(".gitattributes", b"*.bin filter=lfs diff=lfs merge=lfs -text\n")],
        |_| {},
    );
    let dir = mint_clone(&world, "work");
    let mut big = vec![0u8; 1 << 20];
    for (i, b) in big.iter_mut().enumerate() {
        *b = u8::try_from(i % 251).expect("below 251");
    }
    write(&dir, "model.bin", &big);
    let expected = oracle_tree(&world, &dir);
    // The filter driver (git-lfs) needs git itself; mint does not.
    mint_with_git(&world, &dir, &publish_args("adagent/lfs"));
    pushed_tree_is(&world, "adagent/lfs", &expected);
    let pointer = server_git(&world, &["cat-file", "-p", "refs/heads/adagent/lfs:model.bin"]);
    assert!(
        pointer.starts_with("version https://git-lfs.github.com/spec/v1"),
        "{pointer}"
    );
}

/// mint speaks git's long-running filter protocol to git-lfs itself, in 65,516-byte packets: files on each
/// side of a packet's size, an empty one, a tracked LFS file modified, and an LFS path that `text` also
/// converts (left to gix's pipeline) are all staged as `git add -A` stages them.
#[test]
fn lfs_files_around_the_filter_protocols_packet_size_are_staged_as_git_add_does() {
    let world = World::start();
    git(&world, world.dir.path(), &["lfs", "install", "--skip-repo"]);
    seed(
        &world,
        &[
            (
                ".gitattributes",
                b"*.bin filter=lfs diff=lfs merge=lfs -text\n*.txt filter=lfs diff=lfs merge=lfs text eol=crlf\n",
            ),
            ("tracked.bin", b"the first version\n"),
        ],
        |_| {},
    );
    let dir = mint_clone(&world, "work");
    let bytes = |len: usize, seed: u8| -> Vec<u8> {
        (0..len)
            .map(|i| u8::try_from((i * 7 + usize::from(seed)) % 251).expect("below 251"))
            .collect()
    };
    for (name, len, seed) in [
        ("empty.bin", 0, 0),
        ("one.bin", 1, 1),
        ("packet.bin", 65_516, 2),
        ("packet-and-one.bin", 65_517, 3),
        ("three-packets.bin", 3 * 65_516, 4),
        ("tracked.bin", 200_001, 5),
    ] {
        write(&dir, name, &bytes(len, seed));
    }
    write(&dir, "notes.txt", b"one\ntwo\n");
    let expected = oracle_tree(&world, &dir);
    mint_with_git(&world, &dir, &publish_args("adagent/lfs-sizes"));
    pushed_tree_is(&world, "adagent/lfs-sizes", &expected);
    let pointer = server_git(
        &world,
        &["cat-file", "-p", "refs/heads/adagent/lfs-sizes:three-packets.bin"],
    );
    assert!(pointer.ends_with("size 196548"), "{pointer}");
}

#[test]
fn executable_bits_flip_both_ways() {
    let world = World::start();
    seed(&world, &[("a.sh", b"#!/bin/sh\n"), ("b.sh", b"#!/bin/sh\n")], |dir| {
        std::fs::set_permissions(dir.join("b.sh"), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    });
    let dir = mint_clone(&world, "work");
    std::fs::set_permissions(dir.join("a.sh"), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::fs::set_permissions(dir.join("b.sh"), std::fs::Permissions::from_mode(0o644)).expect("chmod");
    publish_matches_git(&world, &dir, "adagent/modes");
}

#[test]
fn a_directory_replaced_by_a_symlink_is_staged_as_the_link_and_nothing_is_read_through_it() {
    let world = World::start();
    seed(&world, &[("dir/f.txt", b"inside\n"), ("dir/sub/g.txt", b"g\n")], |_| {});
    let dir = mint_clone(&world, "work");
    let elsewhere = world.dir.path().join("elsewhere");
    write(&elsewhere, "f.txt", b"outside the work tree\n");
    write(&elsewhere, "sub/g.txt", b"outside too\n");
    std::fs::remove_dir_all(dir.join("dir")).expect("rm");
    std::os::unix::fs::symlink(&elsewhere, dir.join("dir")).expect("symlink");
    let tree = publish_matches_git(&world, &dir, "adagent/symlinked-dir");
    let listing = server_git(&world, &["ls-tree", "-r", &tree]);
    assert!(
        listing
            .lines()
            .any(|l| l.starts_with("120000 blob") && l.ends_with("\tdir")),
        "{listing}"
    );
    assert!(!listing.contains("f.txt"), "{listing}");
}

#[test]
fn a_submodule_whose_head_moved_is_staged_at_its_new_commit() {
    let world = World::start();
    let lib = world.dir.path().join("lib");
    std::fs::create_dir_all(&lib).expect("dir");
    for args in [
        &["init", "-q", "-b", "main"][..],
        &["commit", "-q", "--allow-empty", "-m", "one"],
        &["commit", "-q", "--allow-empty", "-m", "two"],
    ] {
        world.git_ok(Some(&lib), args);
    }
    let lib_url = lib.to_str().expect("utf8").to_owned();
    seed(&world, &[("README.md", b"x\n")], |dir| {
        world.git_ok(
            Some(dir),
            &[
                "-c",
                "protocol.file.allow=always",
                "submodule",
                "add",
                "-q",
                &lib_url,
                "lib",
            ],
        );
        world.git_ok(Some(&dir.join("lib")), &["checkout", "-q", "HEAD~1"]);
    });
    let dir = mint_clone(&world, "work");
    // mint clone leaves submodules unpopulated, as git clone does; the agent checks one out and moves it.
    std::fs::remove_dir(dir.join("lib")).ok();
    world.git_ok(
        None,
        &["clone", "-q", &lib_url, dir.join("lib").to_str().expect("utf8")],
    );
    let moved = git(&world, &dir.join("lib"), &["rev-parse", "HEAD"]);
    let tree = publish_matches_git(&world, &dir, "adagent/submodule");
    let entry = server_git(&world, &["ls-tree", &tree, "lib"]);
    assert!(entry.starts_with(&format!("160000 commit {moved}")), "{entry}");
}

#[test]
fn a_case_only_rename_and_a_four_thousand_byte_path_are_staged_as_git_does() {
    let world = World::start();
    seed(&world, &[("README.md", b"readme\n")], |_| {});
    let dir = mint_clone(&world, "work");
    std::fs::rename(dir.join("README.md"), dir.join("readme.md")).expect("mv");
    let long: Vec<String> = (0..19).map(|i| format!("{i:02}{}", "d".repeat(198))).collect();
    let long = format!("{}/{}", long.join("/"), "f".repeat(100));
    assert!(long.len() > 3_900, "{}", long.len());
    write(&dir, &long, b"deep\n");
    publish_matches_git(&world, &dir, "adagent/paths");
}

#[test]
fn a_path_git_refuses_refuses_the_publish_and_pushes_nothing() {
    let world = World::start();
    for (i, bad) in [
        ".GIT/hooks/post-checkout",
        "y/git~1/hooks/pre-commit",
        "z/.git./a",
        "w/.Git ",
    ]
    .into_iter()
    .enumerate()
    {
        let dir = mint_clone(&world, &format!("work{i}"));
        write(&dir, "fine.txt", b"fine\n");
        write(&dir, bad, b"#!/bin/sh\nexit 0\n");
        // git agrees: `git add -A` refuses it (in a copy, so the publish starts from the same index).
        let copy = world.dir.path().join(format!("oracle{i}"));
        copy_tree(&dir, &copy);
        let oracle = world.git(Some(&copy), &["add", "-A"]);
        let git_said = String::from_utf8_lossy(&oracle.stderr).into_owned();
        let output = mint(&world, &dir, &publish_args("adagent/hostile"));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{bad}: {stderr}");
        assert!(stderr.contains("invalid path"), "{bad}: {stderr}");
        assert!(
            !oracle.status.success() && git_said.contains("invalid path"),
            "{bad}: git accepted it: {git_said}"
        );
        assert!(
            !server_git(&world, &["for-each-ref"]).contains("adagent/hostile"),
            "{bad}"
        );
    }
    assert!(world.hub.pulls().is_empty());
}

#[test]
fn a_push_sends_only_the_objects_the_remote_lacks() {
    let world = World::start();
    let files: Vec<(String, Vec<u8>)> = (0..50)
        .map(|i| (format!("pkg{i}/mod.rs"), format!("// {i}\n").into_bytes()))
        .collect();
    let borrowed: Vec<(&str, &[u8])> = files.iter().map(|(p, c)| (p.as_str(), c.as_slice())).collect();
    seed(&world, &borrowed, |_| {});
    let dir = mint_clone(&world, "work");
    write(&dir, "pkg7/mod.rs", b"// changed\n");
    let output = mint(&world, &dir, &publish_args("adagent/small"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    // The commit, the root tree, pkg7's tree and the blob: not the parent commit nor its root tree.
    assert!(stderr.contains("Pushing 4 objects"), "{stderr}");
    server_git(&world, &["fsck", "--strict"]);
}

#[test]
fn a_token_refused_during_the_upload_is_replaced_once_and_the_push_succeeds() {
    let world = World::start();
    let dir = mint_clone(&world, "work");
    write(&dir, "a.txt", b"a\n");
    world.hub.fail_next_pushes(
        1,
        &InjectedFailure::status(401, "Bad credentials").with_header("WWW-Authenticate", "Basic realm=\"GitHub\""),
    );
    let mints_before = world.hub.tokens().len();
    let output = mint(&world, &dir, &publish_args("adagent/refused"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("pushing again with a fresh one"), "{stderr}");
    assert_eq!(world.hub.tokens().len(), mints_before + 1, "one fresh token");
    server_git(&world, &["rev-parse", "refs/heads/adagent/refused"]);

    // Twice in a row is not an expired token: the push fails and says why, with the commit kept.
    write(&dir, "b.txt", b"b\n");
    world
        .hub
        .fail_next_pushes(2, &InjectedFailure::status(401, "Bad credentials"));
    let output = mint(&world, &dir, &publish_args("adagent/refused"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("HTTP 401"), "{stderr}");
    assert!(stderr.contains("is kept on adagent/refused"), "{stderr}");
}

#[test]
fn a_refused_upload_reports_the_http_status_not_a_broken_pipe() {
    let world = World::start();
    let dir = mint_clone(&world, "work");
    // Big enough that the server's early answer cuts the upload short.
    let mut data = vec![0u8; 4 << 20];
    let mut x: u32 = 0x1234_5678;
    for b in &mut data {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *b = x.to_le_bytes()[0];
    }
    write(&dir, "big.bin", &data);
    world
        .hub
        .fail_next_pushes(1, &InjectedFailure::status(413, "Request Entity Too Large"));
    let output = mint(&world, &dir, &publish_args("adagent/too-big"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("413"), "{stderr}");
    assert!(!server_git(&world, &["for-each-ref"]).contains("adagent/too-big"));
}
