//! Git LFS end to end, with the real git-lfs (Debian's package) as the oracle: plain git + git-lfs through
//! the helper, `mint publish` uploading what its commits point at, `mint clone` smudging, all against
//! fakehub's batch API and storage route.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use fakehub::InjectedFailure;

use crate::agent::{assert_same_work_tree, copy_tree, git, mint_ok, server_git};
use crate::support::{OWNER, REPO, World};

/// Deterministic incompressible bytes (seeds that differ only in the lowest bit give the same bytes).
fn noise(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x.to_le_bytes()[0]
        })
        .collect()
}

fn sha256_hex(data: &[u8]) -> String {
    let out = Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().expect("stdin").write_all(data)?;
            child.wait_with_output()
        })
        .expect("sha256sum");
    String::from_utf8_lossy(&out.stdout)[..64].to_owned()
}

/// git-lfs's global filter config in the test's HOME, as `git lfs install` writes it for a user.
fn install_lfs(world: &World) {
    git(world, world.dir.path(), &["lfs", "install", "--skip-repo"]);
}

/// A clone by the real git with git-lfs, tracking `*.bin` (the hooks installed in it, as `git lfs install`
/// does in a repository).
fn git_clone_with_lfs(world: &World, name: &str) -> PathBuf {
    let dir = world.dir.path().join(name);
    world.git_ok(
        None,
        &["clone", "-q", &world.repo_url(REPO), dir.to_str().expect("utf8")],
    );
    git(world, &dir, &["lfs", "install", "--local"]);
    dir
}

/// `mint` with git and git-lfs on PATH: the clean filter is git-lfs's, which needs git itself.
pub(crate) fn mint_with_lfs(world: &World, dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mint"))
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", &world.home)
        .env("MINT_SOCKET", &world.socket)
        .output()
        .expect("mint runs")
}

fn seed_with_lfs_file(world: &World, content: &[u8]) -> PathBuf {
    install_lfs(world);
    let seed = git_clone_with_lfs(world, "seed");
    git(world, &seed, &["lfs", "track", "*.bin"]);
    std::fs::write(seed.join("model.bin"), content).expect("write");
    std::fs::write(seed.join("small.txt"), "not in lfs\n").expect("write");
    git(world, &seed, &["add", "-A"]);
    git(world, &seed, &["commit", "-q", "-m", "A model in LFS"]);
    git(world, &seed, &["push", "-q", "origin", "HEAD:main"]);
    seed
}

#[test]
fn plain_git_with_git_lfs_pushes_and_fetches_objects_through_the_helper() {
    let world = World::start();
    let model = noise(3 << 20, 7);
    let seed = seed_with_lfs_file(&world, &model);
    let oid = sha256_hex(&model);
    assert_eq!(
        world.hub.lfs_objects(OWNER, REPO),
        vec![oid.clone()],
        "the object arrived"
    );
    // The repository holds the pointer, not the bytes.
    let pointer = server_git(&world, &["cat-file", "-p", "main:model.bin"]);
    assert!(pointer.contains(&format!("oid sha256:{oid}")), "{pointer}");

    let fresh = git_clone_with_lfs(&world, "fresh");
    assert_eq!(std::fs::read(fresh.join("model.bin")).expect("read"), model);
    git(&world, &fresh, &["lfs", "fsck"]);
    drop(seed);
}

#[test]
fn mint_clone_smudges_lfs_files_as_git_lfs_does_and_no_lfs_leaves_pointers() {
    let world = World::start();
    let model = noise(2 << 20, 11);
    seed_with_lfs_file(&world, &model);

    // No git on PATH: the download and smudge are mint's own.
    mint_ok(&world, world.dir.path(), &["clone", "ours"]);
    let ours = world.dir.path().join("ours");
    let theirs = git_clone_with_lfs(&world, "theirs");
    assert_eq!(std::fs::read(ours.join("model.bin")).expect("read"), model);
    assert_same_work_tree(&ours, &theirs);
    // git (with git-lfs) sees a clean work tree, and git-lfs finds its objects where it keeps them.
    assert_eq!(git(&world, &ours, &["status", "--porcelain"]), "");
    git(&world, &ours, &["lfs", "fsck"]);

    mint_ok(&world, world.dir.path(), &["clone", "--no-lfs", "pointers"]);
    let pointer = std::fs::read_to_string(world.dir.path().join("pointers/model.bin")).expect("a pointer");
    assert!(
        pointer.starts_with("version https://git-lfs.github.com/spec/v1"),
        "{pointer}"
    );
}

#[test]
fn mint_publish_uploads_the_lfs_objects_its_commits_point_at() {
    let world = World::start();
    let model = noise(1 << 20, 3);
    seed_with_lfs_file(&world, &model);
    mint_ok(&world, world.dir.path(), &["clone", "work"]);
    let work = world.dir.path().join("work");
    let changed = noise(1 << 20, 5);
    let added = noise(512 << 10, 9);
    std::fs::write(work.join("model.bin"), &changed).expect("write");
    std::fs::write(work.join("weights.bin"), &added).expect("write");

    // The oracle: git add -A on a copy stages pointers.
    let oracle = world.dir.path().join("oracle");
    copy_tree(&work, &oracle);
    git(&world, &oracle, &["add", "-A"]);
    let expected = git(&world, &oracle, &["write-tree"]);

    let output = mint_with_lfs(
        &world,
        &work,
        &[
            "publish",
            "--branch",
            "adagent/lfs",
            "-m",
            "New weights",
            "--title",
            "New weights",
        ],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("Uploaded 2 of 2 LFS objects"), "{stderr}");
    let pushed = server_git(&world, &["rev-parse", "adagent/lfs^{tree}"]);
    assert_eq!(pushed, expected, "pointers, not binaries, as git add -A stages");
    let stored = world.hub.lfs_objects(OWNER, REPO);
    for data in [&model, &changed, &added] {
        assert!(stored.contains(&sha256_hex(data)), "{stored:?}");
    }

    // A fresh clone with git + git-lfs gets the same bytes.
    let fresh = world.dir.path().join("fresh");
    world.git_ok(
        None,
        &[
            "clone",
            "-q",
            "-b",
            "adagent/lfs",
            &world.repo_url(REPO),
            fresh.to_str().expect("utf8"),
        ],
    );
    git(&world, &fresh, &["lfs", "pull"]);
    assert_eq!(std::fs::read(fresh.join("model.bin")).expect("read"), changed);
    assert_eq!(std::fs::read(fresh.join("weights.bin")).expect("read"), added);
}

#[test]
fn a_failed_lfs_upload_pushes_nothing_and_says_why() {
    let world = World::start();
    seed_with_lfs_file(&world, &noise(64 << 10, 1));
    mint_ok(&world, world.dir.path(), &["clone", "work"]);
    let work = world.dir.path().join("work");
    std::fs::write(work.join("new.bin"), noise(256 << 10, 2)).expect("write");
    world
        .hub
        .fail_next_lfs_uploads(1, &InjectedFailure::status(500, "storage is down"));
    let publish = [
        "publish",
        "--branch",
        "adagent/lfs-fail",
        "-m",
        "More",
        "--title",
        "More",
    ];
    let output = mint_with_lfs(&world, &work, &publish);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("LFS upload") && stderr.contains("new.bin") && stderr.contains("500"),
        "{stderr}"
    );
    assert!(stderr.contains("nothing was pushed"), "{stderr}");
    let refs = server_git(&world, &["for-each-ref"]);
    assert!(!refs.contains("adagent/lfs-fail"), "{refs}");
    assert!(world.hub.pulls().is_empty());

    // Run again once storage is back: it goes through.
    let again = mint_with_lfs(&world, &work, &publish);
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
}

#[test]
fn mediated_mode_proxies_the_lfs_batch_api_and_nothing_else() {
    let mut world = World::start();
    let model = noise(1 << 20, 21);
    seed_with_lfs_file(&world, &model);
    // From here on no helper: git, git-lfs and mint reach GitHub only through the proxy (insteadOf).
    world.stop_mintd();
    let proxy = world.start_mediated();
    install_lfs(&world);
    let before = world.hub.requests().len();

    let fresh = git_clone_with_lfs(&world, "fresh");
    assert_eq!(std::fs::read(fresh.join("model.bin")).expect("read"), model);
    let pushed = noise(200 << 10, 22);
    std::fs::write(fresh.join("pushed.bin"), &pushed).expect("write");
    git(&world, &fresh, &["add", "-A"]);
    git(&world, &fresh, &["commit", "-q", "-m", "more"]);
    git(
        &world,
        &fresh,
        &["push", "-q", "origin", "HEAD:refs/heads/adagent/git-lfs"],
    );
    assert!(world.hub.lfs_objects(OWNER, REPO).contains(&sha256_hex(&pushed)));

    // mint's own LFS client through the proxy: clone smudges, publish uploads.
    mint_ok(&world, world.dir.path(), &["clone", "ours"]);
    let ours = world.dir.path().join("ours");
    assert_eq!(std::fs::read(ours.join("model.bin")).expect("read"), model);
    let more = noise(300 << 10, 23);
    std::fs::write(ours.join("more.bin"), &more).expect("write");
    let output = mint_with_lfs(
        &world,
        &ours,
        &["publish", "--branch", "adagent/m", "-m", "m", "--title", "m"],
    );
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(world.hub.lfs_objects(OWNER, REPO).contains(&sha256_hex(&more)));

    let batches: Vec<_> = world.hub.requests()[before..]
        .iter()
        .filter(|r| r.path.ends_with("/info/lfs/objects/batch"))
        .cloned()
        .collect();
    assert!(batches.len() >= 4, "{batches:?}");
    assert!(
        batches.iter().all(|r| r.token_id.is_some() && r.status == 200),
        "the proxy added the token to every batch call: {batches:?}"
    );

    // Another repository's batch API is not reachable through the proxy.
    let other = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST"])
        .arg(format!("{proxy}{OWNER}/other-repo.git/info/lfs/objects/batch"))
        .args(["-H", "Content-Type: application/vnd.git-lfs+json", "-d"])
        .arg(r#"{"operation":"download","objects":[]}"#)
        .output()
        .expect("curl");
    assert_eq!(String::from_utf8_lossy(&other.stdout), "404");
}

/// A seed with `n` LFS files `f{i}.bin` (pushed by the real git-lfs); their contents by path.
fn seed_with_lfs_files(world: &World, n: u32) -> Vec<(String, Vec<u8>)> {
    install_lfs(world);
    let seed = git_clone_with_lfs(world, "seed");
    git(world, &seed, &["lfs", "track", "*.bin"]);
    let files: Vec<(String, Vec<u8>)> = (0..n)
        .map(|i| (format!("f{i}.bin"), noise(256 << 10, 101 + 2 * i)))
        .collect();
    for (name, data) in &files {
        std::fs::write(seed.join(name), data).expect("write");
    }
    git(world, &seed, &["add", "-A"]);
    git(world, &seed, &["commit", "-q", "-m", "Many LFS files"]);
    git(world, &seed, &["push", "-q", "origin", "HEAD:main"]);
    files
}

#[test]
fn lfs_transfers_run_up_to_lfs_concurrenttransfers_at_once_and_a_failure_among_many_names_its_object() {
    let world = World::start();
    let files = seed_with_lfs_files(&world, 6);

    // git-lfs's own setting, from the user's config: three downloads at once, never more.
    git(
        &world,
        world.dir.path(),
        &["config", "--global", "lfs.concurrenttransfers", "3"],
    );
    world.hub.hold_lfs_transfers_until(3);
    mint_ok(&world, world.dir.path(), &["clone", "work"]);
    let work = world.dir.path().join("work");
    for (name, data) in &files {
        assert_eq!(&std::fs::read(work.join(name)).expect("read"), data, "{name}");
    }
    assert_eq!(
        world.hub.lfs_max_concurrent_transfers(),
        3,
        "the clone downloaded three objects at once"
    );

    // The repository's own config wins over the user's: two uploads at once. One of five fails.
    git(&world, &work, &["config", "lfs.concurrenttransfers", "2"]);
    let added: Vec<(String, Vec<u8>)> = (0..5)
        .map(|i| (format!("new{i}.bin"), noise(128 << 10, 201 + 2 * i)))
        .collect();
    for (name, data) in &added {
        std::fs::write(work.join(name), data).expect("write");
    }
    let failing = sha256_hex(&added[3].1);
    world
        .hub
        .fail_lfs_upload_of(&failing, &InjectedFailure::status(500, "storage is down"));
    world.hub.hold_lfs_transfers_until(2);
    let publish = ["publish", "--branch", "adagent/many", "-m", "More", "--title", "More"];
    let output = mint_with_lfs(&world, &work, &publish);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("the LFS upload of {failing} (new3.bin) failed: HTTP 500")),
        "{stderr}"
    );
    assert!(stderr.contains("nothing was pushed"), "{stderr}");
    assert_eq!(world.hub.lfs_max_concurrent_transfers(), 2, "two uploads at once");
    let refs = server_git(&world, &["for-each-ref"]);
    assert!(!refs.contains("adagent/many"), "{refs}");
    assert!(world.hub.pulls().is_empty());

    // What arrived before the failure stays; a second run sends only the rest.
    let stored = world.hub.lfs_objects(OWNER, REPO);
    assert!(!stored.contains(&failing));
    let arrived = added.iter().filter(|(_, d)| stored.contains(&sha256_hex(d))).count();
    let again = mint_with_lfs(&world, &work, &publish);
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(again.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("Uploaded {} of 5 LFS objects", 5 - arrived)),
        "{arrived} had arrived: {stderr}"
    );
    let stored = world.hub.lfs_objects(OWNER, REPO);
    for (name, data) in &added {
        assert!(stored.contains(&sha256_hex(data)), "{name}");
    }
}

/// `len` bytes made of one pseudo-random 1 MiB block over and over, never more than the block in memory.
struct Repeated {
    block: Vec<u8>,
    at: u64,
    len: u64,
}

impl std::io::Read for Repeated {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let offset = usize::try_from(self.at % self.block.len() as u64).expect("within the block");
        let left = usize::try_from(self.len - self.at).unwrap_or(usize::MAX);
        let n = buf.len().min(self.block.len() - offset).min(left);
        buf[..n].copy_from_slice(&self.block[offset..offset + n]);
        self.at += n as u64;
        Ok(n)
    }
}

/// `mint` as [`mint_ok`] runs it (no git on PATH), under python3 so that getrusage reads the peak RSS of
/// exactly that one child: its success, its stderr and its peak RSS in KiB.
fn mint_peak_rss(world: &World, dir: &Path, args: &[&str]) -> (bool, String, u64) {
    // The interpreter itself, not a wrapper (pyenv's shim) that needs the PATH cleared below.
    let python = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .expect("python3 on PATH");
    let python = String::from_utf8(python.stdout).expect("utf8").trim().to_owned();
    let script = "import resource, subprocess, sys\n\
                  r = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL)\n\
                  print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)";
    let mut command = Command::new(python);
    command.arg("-c").arg(script).arg(env!("CARGO_BIN_EXE_mint")).args(args);
    let output = crate::agent::as_the_agent(&mut command, world, dir)
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let (code, kib) = stdout.trim().split_once(' ').expect("the exit code and the peak RSS");
    (
        code == "0",
        String::from_utf8_lossy(&output.stderr).into_owned(),
        kib.parse().expect("KiB"),
    )
}

/// Store an object of `len` bytes at fakehub and commit its pointer as `path` on main, with plain git.
fn commit_lfs_pointer(world: &World, seed: &Path, path: &str, len: u64, seed_bits: u32) -> String {
    let content = Repeated {
        block: noise(1 << 20, seed_bits),
        at: 0,
        len,
    };
    let (oid, size) = world.hub.put_lfs_object(OWNER, REPO, content).expect("stored");
    assert_eq!(size, len);
    std::fs::write(
        seed.join(".gitattributes"),
        "*.bin filter=lfs diff=lfs merge=lfs -text\n",
    )
    .expect("write");
    std::fs::write(
        seed.join(path),
        format!("version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {size}\n"),
    )
    .expect("write");
    git(world, seed, &["add", "-A"]);
    git(world, seed, &["commit", "-q", "-m", path]);
    git(world, seed, &["push", "-q", "origin", "HEAD:main"]);
    oid
}

/// The object is streamed from the socket through the hash into `.git/lfs`, then copied into the work tree:
/// the clone's peak RSS does not grow with the object.
#[test]
fn mint_clone_of_a_1_gib_lfs_object_keeps_peak_rss_flat() {
    let _heavy = crate::support::one_heavy_test_at_a_time();
    let (world, seed) = world_with_a_clone_to_seed();

    // The same clone with a 1 MiB object, for scale.
    commit_lfs_pointer(&world, &seed, "small.bin", 1 << 20, 31);
    let (ok, stderr, small_kib) = mint_peak_rss(&world, world.dir.path(), &["clone", "small"]);
    assert!(ok, "{stderr}");

    let oid = commit_lfs_pointer(&world, &seed, "big.bin", 1 << 30, 33);
    let (ok, stderr, big_kib) = mint_peak_rss(&world, world.dir.path(), &["clone", "big"]);
    assert!(ok, "{stderr}");
    eprintln!("mint clone peak RSS: {small_kib} KiB with a 1 MiB LFS object, {big_kib} KiB with 1 GiB");
    // Measured: about 37 MiB either way.
    assert_flat(small_kib, big_kib, "a 1 GiB LFS object");
    let big = world.dir.path().join("big/big.bin");
    assert_eq!(std::fs::metadata(&big).expect("the work-tree file").len(), 1 << 30);
    assert_eq!(sha256_file(&big), oid, "the work tree holds the object");
}

/// A world and a git clone of its repository at `seed`, to commit the big object from.
fn world_with_a_clone_to_seed() -> (World, std::path::PathBuf) {
    let world = World::start();
    let seed = world.dir.path().join("seed");
    world.git_ok(
        None,
        &["clone", "-q", &world.repo_url(REPO), seed.to_str().expect("utf8")],
    );
    (world, seed)
}

/// A clone's peak RSS with a big object is flat: under 64 MiB, and no more than 16 MiB over the same clone
/// without it.
fn assert_flat(small_kib: u64, big_kib: u64, what: &str) {
    const BOUND_KIB: u64 = 64 << 10;
    assert!(
        big_kib < BOUND_KIB && big_kib < small_kib + (16 << 10),
        "peak RSS {big_kib} KiB with {what} (without: {small_kib} KiB), over {BOUND_KIB} KiB or not flat"
    );
}

fn sha256_file(path: &Path) -> String {
    let sum = Command::new("sha256sum").arg(path).output().expect("sha256sum");
    assert!(sum.status.success(), "sha256sum {}", path.display());
    String::from_utf8_lossy(&sum.stdout)[..64].to_owned()
}

/// A 1 GiB blob (zeros: about 1 MiB in the pack) is hashed as it is inflated when the received pack is
/// indexed, and streamed into its work-tree file at checkout: neither holds the object in memory, as
/// `git clone` does not (`core.bigFileThreshold`).
#[test]
fn mint_clone_of_a_1_gib_blob_keeps_peak_rss_flat() {
    let _heavy = crate::support::one_heavy_test_at_a_time();
    let (world, seed) = world_with_a_clone_to_seed();
    std::fs::create_dir_all(seed.join("src")).expect("dir");
    std::fs::write(seed.join("README.md"), "A repository with one big file\n").expect("write");
    std::fs::write(seed.join("src/lib.rs"), "pub fn f() {}\n").expect("write");
    git(&world, &seed, &["add", "-A"]);
    git(&world, &seed, &["commit", "-q", "-m", "small files"]);
    git(&world, &seed, &["push", "-q", "origin", "HEAD:main"]);
    let (ok, stderr, small_kib) = mint_peak_rss(&world, world.dir.path(), &["clone", "small"]);
    assert!(ok, "{stderr}");

    // Sparse: git reads zeros without the disk holding them. Executable, so that the mode is checked too.
    let big = std::fs::File::create(seed.join("big.bin")).expect("create");
    big.set_len(1 << 30).expect("a sparse 1 GiB file");
    drop(big);
    git(&world, &seed, &["update-index", "--add", "--chmod=+x", "big.bin"]);
    git(&world, &seed, &["commit", "-q", "-m", "a 1 GiB blob"]);
    git(&world, &seed, &["push", "-q", "origin", "HEAD:main"]);
    let (ok, stderr, big_kib) = mint_peak_rss(&world, world.dir.path(), &["clone", "big"]);
    assert!(ok, "{stderr}");
    eprintln!("mint clone peak RSS: {small_kib} KiB without the blob, {big_kib} KiB with a 1 GiB blob");
    assert_flat(small_kib, big_kib, "a 1 GiB blob");

    let ours = world.dir.path().join("big");
    let theirs = world.dir.path().join("theirs");
    world.git_ok(
        None,
        &["clone", "-q", &world.repo_url(REPO), theirs.to_str().expect("utf8")],
    );
    let file = ours.join("big.bin");
    assert_eq!(std::fs::metadata(&file).expect("the work-tree file").len(), 1 << 30);
    assert_eq!(sha256_file(&file), sha256_file(&theirs.join("big.bin")));
    let mode = std::fs::metadata(&file)
        .expect("the work-tree file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o111, 0o111, "executable, as git checks it out: {mode:o}");
    for args in [
        &["rev-parse", "HEAD"][..],
        &["symbolic-ref", "HEAD"],
        &["ls-files", "--stage"],
        &["for-each-ref", "--format=%(refname) %(objectname)"],
        &["config", "--local", "--get", "remote.origin.url"],
    ] {
        assert_eq!(git(&world, &ours, args), git(&world, &theirs, args), "git {args:?}");
    }
    assert_same_work_tree(&ours, &theirs);
    assert_eq!(git(&world, &ours, &["status", "--porcelain"]), "");
    git(&world, &ours, &["fsck", "--strict"]);
}
