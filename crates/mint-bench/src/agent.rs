//! The agent's flow: `mint publish` against the git CLI doing the same steps (switch -c, add -A, commit,
//! push, and the same pull-request call to mintd), and `mint clone` against `git clone`.
//!
//! Each tool works in its own long-lived clone, as an agent loop does: every round makes the same kind of
//! change in both (5 files modified, 5 added in a new directory, 1 deleted) and publishes it to a new
//! branch, so each round is a first publish (new branch, new pull request) from a warm work tree.

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, bail};

use crate::{OWNER, REPO, Report, Rig, Scenario};

const AUTHOR: [(&str, &str); 2] = [("user.name", "Bench Agent"), ("user.email", "bench@example.invalid")];

pub(crate) fn run(rig: &Rig, rounds: usize, report: &mut Report) -> anyhow::Result<()> {
    let work = rig.work.path().join("agent");
    std::fs::create_dir_all(&work)?;
    let mut small = Scenario::new(
        "publish a change, small repository (target: mint publish ÷ git ≤ 1.0)",
        &["mint publish", "git switch/add/commit/push + PR"],
    );
    publish_rounds(rig, &work.join("small"), rounds, &mut small)?;

    seed_files(rig, &work.join("seed"), 10_000)?;
    let mut big = Scenario::new(
        "publish a change, 10,000 files (target: mint publish ÷ git ≤ 1.0)",
        &["mint publish", "git switch/add/commit/push + PR"],
    );
    publish_rounds(rig, &work.join("big"), rounds, &mut big)?;

    let mut clone = Scenario::new(
        "clone, 10,000 files over smart HTTP (target: mint clone ÷ git clone ≤ 1.0)",
        &["mint clone", "git clone"],
    );
    for i in 0..rounds.div_ceil(2) {
        let ours = work.join(format!("clone-mint-{i}"));
        let theirs = work.join(format!("clone-git-{i}"));
        clone.time(0, || exec(rig.mint(&work).arg("clone").arg(&ours)))?;
        clone.time(1, || exec(&mut rig.git_clone(&theirs)))?;
        std::fs::remove_dir_all(&ours)?;
        std::fs::remove_dir_all(&theirs)?;
    }
    for (scenario, what) in [
        (&mut small, "agent flow: mint publish ÷ git, small repository"),
        (&mut big, "agent flow: mint publish ÷ git, 10,000 files"),
        (&mut clone, "agent flow: mint clone ÷ git clone, 10,000 files"),
    ] {
        let ratios = scenario.report(report, 1)?;
        report.goal(what, ratios[0], 1.0, "x");
    }
    Ok(())
}

fn publish_rounds(rig: &Rig, dir: &Path, rounds: usize, scenario: &mut Scenario) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let ours = dir.join("mint");
    let theirs = dir.join("git");
    exec(rig.mint(dir).arg("clone").arg(&ours))?;
    exec(&mut rig.git_clone(&theirs))?;
    let client = mint_api::Client::new(&rig.socket);
    for round in 0..rounds {
        change(&ours, "mint", round)?;
        change(&theirs, "git", round)?;
        let branch = format!("adagent/bench-mint-{}-{round}", dir_name(dir));
        scenario.time(0, || {
            exec(
                rig.mint(&ours)
                    .args(["publish", "--branch", &branch, "-m", "change", "--title", "change"]),
            )
        })?;
        let branch = format!("adagent/bench-git-{}-{round}", dir_name(dir));
        scenario.time(1, || {
            exec(rig.git_in(&theirs).args(["switch", "-q", "-c", &branch]))?;
            exec(rig.git_in(&theirs).args(["add", "-A"]))?;
            exec(rig.git_in(&theirs).args(["commit", "-q", "-m", "change"]))?;
            exec(rig.git_in(&theirs).args(["push", "-q", "origin", "HEAD"]))?;
            let input = mint_api::PullRequestInput {
                branch: branch.clone(),
                title: "change".into(),
                body: None,
                ticket: None,
                draft: false,
            };
            let response = client.request("POST", mint_api::route::PULLS, &serde_json::to_vec(&input)?)?;
            if response.status != 201 {
                bail!(
                    "the pull request call answered {}: {:?}",
                    response.status,
                    response.reason
                );
            }
            Ok(response.body)
        })?;
    }
    Ok(())
}

/// Git LFS: a change adding ten 50 MB LFS-tracked files, `mint publish` (git-lfs's clean filter, then the
/// batch upload and the push) against `git add/commit/push` with git-lfs's pre-push hook, and against
/// `mint publish` with `lfs.concurrenttransfers=1`.
pub(crate) fn run_lfs(rig: &Rig, rounds: usize, report: &mut Report) -> anyhow::Result<()> {
    if Command::new("git-lfs").arg("version").output().is_err() {
        report.line("\nGit LFS: skipped (git-lfs is not installed)");
        return Ok(());
    }
    let dir = rig.work.path().join("lfs");
    std::fs::create_dir_all(&dir)?;
    exec(rig.git(&rig.helper_path()).args(["lfs", "install", "--skip-repo"]))?;
    let seed = dir.join("seed");
    exec(&mut rig.git_clone(&seed))?;
    std::fs::write(
        seed.join(".gitattributes"),
        "*.bin filter=lfs diff=lfs merge=lfs -text\n",
    )?;
    exec(rig.git_in(&seed).args(["add", "-A"]))?;
    exec(rig.git_in(&seed).args(["commit", "-q", "-m", "track *.bin"]))?;
    exec(rig.git_in(&seed).args(["push", "-q", "origin", "HEAD:main"]))?;

    let ours = dir.join("mint");
    let theirs = dir.join("git");
    // The same publish moving one object at a time, as before concurrent transfers: what they buy.
    let sequential = dir.join("mint-sequential");
    exec(rig.mint(&dir).arg("clone").arg(&ours))?;
    exec(rig.mint(&dir).arg("clone").arg(&sequential))?;
    exec(rig.git_in(&sequential).args(["config", "lfs.concurrenttransfers", "1"]))?;
    exec(&mut rig.git_clone(&theirs))?;
    exec(rig.git_in(&theirs).args(["lfs", "install", "--local"]))?;
    let mut scenario = Scenario::new(
        "publish ten 50 MB Git LFS files (target: mint publish ÷ git push with git-lfs ≤ 1.0)",
        &[
            "mint publish",
            "git add/commit/push (git-lfs)",
            "mint publish (1 transfer at a time)",
        ],
    );
    for round in 0..rounds {
        for (tool, work) in [("mint", &ours), ("git", &theirs), ("mint-sequential", &sequential)] {
            for i in 0..10 {
                std::fs::write(
                    work.join(format!("r{round}-{i}.bin")),
                    noise(50 << 20, round * 10 + i, tool),
                )?;
            }
        }
        // Each round starts with another series, as the fill scenario does: none always runs first.
        for k in 0..3 {
            let series = (round + k) % 3;
            let (tool, work) = [("mint", &ours), ("git", &theirs), ("sequential", &sequential)][series];
            let branch = format!("adagent/bench-lfs-{tool}-{round}");
            scenario.time(series, || {
                if tool == "git" {
                    exec(rig.git_in(work).args(["switch", "-q", "-c", &branch]))?;
                    exec(rig.git_in(work).args(["add", "-A"]))?;
                    exec(rig.git_in(work).args(["commit", "-q", "-m", "weights"]))?;
                    exec(rig.git_in(work).args(["push", "-q", "origin", "HEAD"]))
                } else {
                    exec(
                        rig.mint(work)
                            .env("PATH", crate::path_with(&rig.bin_dir))
                            .args(["publish", "--branch", &branch, "-m", "weights", "--title", "weights"]),
                    )
                }
            })?;
        }
        // The work is in memory (/dev/shm): once timed, each round's files and git-lfs's local copies of them
        // go, or five rounds would fill it (the next round stages their deletion, for both tools alike).
        for work in [&ours, &theirs, &sequential] {
            for i in 0..10 {
                std::fs::remove_file(work.join(format!("r{round}-{i}.bin")))?;
            }
            std::fs::remove_dir_all(work.join(".git/lfs/objects"))?;
        }
    }
    let paired = scenario.paired_ratio(0, 1);
    scenario.report(report, 1)?;
    report.line(format!(
        "  mint publish ÷ git, median of the rounds' own ratios: {paired:.2}x"
    ));
    report.goal(
        "Git LFS: mint publish ÷ git push with git-lfs, ten 50 MB files (per round)",
        paired,
        1.0,
        "x",
    );
    Ok(())
}

/// Incompressible bytes, different per file and per tool (so neither finds the other's objects stored).
fn noise(len: usize, seed: usize, tool: &str) -> Vec<u8> {
    let mut x = u64::try_from(seed).unwrap_or(0).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ tool.len() as u64 | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn dir_name(dir: &Path) -> String {
    dir.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The same kind of change for both tools: 5 modified, 5 added in a new directory, 1 deleted.
fn change(dir: &Path, tool: &str, round: usize) -> anyhow::Result<()> {
    for i in 0..5 {
        let path = dir.join(format!("edit-{i}.txt"));
        let mut text = std::fs::read_to_string(&path).unwrap_or_default();
        writeln!(text, "{tool} round {round}")?;
        std::fs::write(&path, text)?;
    }
    let new = dir.join(format!("round-{round}"));
    std::fs::create_dir_all(&new)?;
    for i in 0..5 {
        std::fs::write(new.join(format!("file-{i}.txt")), format!("{tool} {round} {i}\n"))?;
    }
    if round > 0 {
        std::fs::remove_file(dir.join(format!("round-{}/file-0.txt", round - 1)))?;
    }
    Ok(())
}

/// Put `count` files (100 per directory) on the remote's main, with git.
fn seed_files(rig: &Rig, dir: &Path, count: usize) -> anyhow::Result<()> {
    exec(&mut rig.git_clone(dir))?;
    for i in 0..count {
        let sub = dir.join(format!("src/mod{:03}", i / 100));
        if i % 100 == 0 {
            std::fs::create_dir_all(&sub)?;
        }
        std::fs::write(
            sub.join(format!("file{i:05}.rs")),
            format!("// file {i}\npub fn f{i}() {{}}\n"),
        )?;
    }
    exec(rig.git_in(dir).args(["add", "-A"]))?;
    exec(rig.git_in(dir).args(["commit", "-q", "-m", "10,000 files"]))?;
    exec(rig.git_in(dir).args(["push", "-q", "origin", "HEAD:main"]))?;
    Ok(())
}

impl Rig {
    /// `git clone -q` of the repository into `dir`, authenticated by the helper.
    fn git_clone(&self, dir: &Path) -> Command {
        let mut c = self.git(&self.helper_path());
        c.args(["clone", "-q", &format!("{}/{OWNER}/{REPO}.git", self.hub.url())])
            .arg(dir);
        c
    }

    /// git in a work tree, authenticated by the helper named by absolute path (the recommended setup).
    fn git_in(&self, dir: &Path) -> Command {
        let mut c = self.git(&self.helper_path());
        for (key, value) in AUTHOR {
            c.arg("-c").arg(format!("{key}={value}"));
        }
        c.current_dir(dir);
        c
    }

    fn mint(&self, dir: &Path) -> Command {
        let mut c = Command::new(self.bin_dir.join("mint"));
        c.env_clear()
            .env("HOME", &self.home)
            .env("MINT_SOCKET", &self.socket)
            .env("MINT_AUTHOR_NAME", AUTHOR[0].1)
            .env("MINT_AUTHOR_EMAIL", AUTHOR[1].1)
            .current_dir(dir);
        c
    }
}

pub(crate) fn exec(command: &mut Command) -> anyhow::Result<Vec<u8>> {
    let started = Instant::now();
    let out = command.stdin(Stdio::null()).output().context("spawning")?;
    if !out.status.success() {
        bail!(
            "{command:?} failed after {:?}: {}",
            started.elapsed(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out.stdout)
}
