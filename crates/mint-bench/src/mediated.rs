//! Mediated mode's cost: `git clone` and `git push` of two large repositories, directly against fakehub with
//! the helper (helper mode) and through `mintd --git-proxy`, interleaved round by round; and the proxying
//! mintd's peak RSS.
//!
//! One repository holds 100 MB of incompressible files (100 × 1 MB of pseudo-random bytes), the other
//! 20,000 small files. Each round clones both ways and pushes both ways; every push carries a new commit of
//! the same size (fresh bytes, so nothing is already at fakehub) to a new `adagent/` branch, the only
//! branches the proxy lets through.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;

use crate::agent::exec;
use crate::{OWNER, Report, Rig, Scenario, Tokens, kib_to_mib, ms, spawn_mintd_for};

/// The repository of 100 MB of incompressible files.
pub(crate) const BULK: &str = "bench-bulk";
/// The repository of 20,000 small files.
pub(crate) const MANY: &str = "bench-many";
const BULK_FILES: usize = 100;
const BULK_FILE_BYTES: usize = 1 << 20;
const MANY_FILES: usize = 20_000;

pub(crate) fn run(rig: &Rig, rounds: usize, report: &mut Report) -> anyhow::Result<()> {
    let dir = rig.work.path().join("mediated");
    std::fs::create_dir_all(&dir)?;
    let mut peaks = Vec::new();
    let mut scenarios = Vec::new();
    let mut repos = Vec::new();
    // MINT_BENCH_MEDIATED_REPOS=many (or bulk) runs one of the two, for quicker runs while working on one.
    let only = std::env::var("MINT_BENCH_MEDIATED_REPOS").ok();
    for repo in [BULK, MANY] {
        if only
            .as_deref()
            .is_some_and(|only| !only.split(',').any(|r| repo.ends_with(r.trim())))
        {
            continue;
        }
        let (scenario, peak) = one_repository(rig, &dir.join(repo), repo, rounds)?;
        repos.push(repo);
        scenarios.push(scenario);
        peaks.push((repo, peak));
    }
    // Each round's push adds to the repository the next round clones: rounds are compared within themselves.
    for (repo, (clone, push)) in repos.iter().zip(&mut scenarios) {
        for (scenario, what) in [(clone, "clone"), (push, "push")] {
            let paired = scenario.paired_ratio(1, 0);
            scenario.report(report, 0)?;
            report.line(format!(
                "  proxied ÷ direct, median of the rounds' own ratios: {paired:.2}x"
            ));
            report.goal(
                format!("mediated mode: git {what} proxied ÷ direct, {repo} (per round)"),
                paired,
                1.05,
                "x",
            );
        }
    }
    report.line("\nmintd in mediated mode (target: proxied ÷ direct ≤ 1.05, peak RSS ≤ 32 MiB)");
    for (repo, (proxy, direct, cpu, busy)) in peaks {
        report.goal(
            format!("mediated mode: proxying mintd's peak RSS, {repo}"),
            kib_to_mib(proxy),
            32.0,
            "MiB",
        );
        report.line(format!(
            "  {repo:<12} peak RSS (VmHWM): proxying mintd {:>6.1} MiB, helper-mode mintd {:>6.1} MiB; the proxy's CPU {:>7.1} ms over {:>7.1} ms of proxied git",
            kib_to_mib(proxy),
            kib_to_mib(direct),
            ms(cpu),
            ms(busy)
        ));
    }
    Ok(())
}

type Peaks = (u64, u64, Duration, Duration);

#[expect(
    clippy::too_many_lines,
    reason = "the two mintds, the seed and the interleaved rounds read best as one sequence"
)]
/// Seed `repo`, then `rounds` of clone and push, each both ways; the two scenarios and the two mintds'
/// peak RSS, with the proxying mintd's CPU time and the time git spent going through it.
fn one_repository(rig: &Rig, dir: &Path, repo: &str, rounds: usize) -> anyhow::Result<((Scenario, Scenario), Peaks)> {
    std::fs::create_dir_all(dir)?;
    let url = rig.hub.url();
    rig.hub.create_repo(OWNER, repo)?;
    let key = rig.work.path().join("app.pem");
    // A mintd in helper mode and one in mediated mode, each for this repository.
    let helper_socket = dir.join("helper.sock");
    let (helper_mintd, _) = spawn_mintd_for(
        &rig.bin_dir,
        &url,
        &Tokens::Key(&key),
        &helper_socket,
        &format!("{OWNER}/{repo}"),
        &[],
    )?;
    let helper_mintd = crate::KillOnDrop(helper_mintd);
    let proxy_socket = dir.join("proxy.sock");
    let (proxy_mintd, _) = spawn_mintd_for(
        &rig.bin_dir,
        &url,
        &Tokens::Key(&key),
        &proxy_socket,
        &format!("{OWNER}/{repo}"),
        &["--git-proxy", "127.0.0.1:0"],
    )?;
    let proxy_mintd = crate::KillOnDrop(proxy_mintd);
    let proxy = mint_api::Client::new(&proxy_socket)
        .status()?
        .git_proxy
        .context("mintd --git-proxy reports no proxy address")?;
    let direct_url = format!("{url}/{OWNER}/{repo}.git");
    let proxied_url = format!("http://{proxy}/{OWNER}/{repo}.git");
    let direct = |dir: &Path| {
        let mut c = rig.git(&rig.helper_path());
        c.env("MINT_SOCKET", &helper_socket).current_dir(dir);
        c
    };
    // Mediated mode's sandbox has no helper at all.
    let proxied = |dir: &Path| {
        let mut c = rig.git("");
        c.current_dir(dir);
        c
    };

    // The seed: the whole content on main, pushed directly.
    let seed = dir.join("seed");
    exec(direct(dir).args(["clone", "-q", &direct_url]).arg(&seed))?;
    write_content(&seed, repo, 0)?;
    commit(rig, &seed, "seed")?;
    exec(direct(&seed).args(["push", "-q", "origin", "HEAD:main"]))?;

    let (what, size) = if repo == BULK {
        ("100 MB of incompressible files", "100 × 1 MB")
    } else {
        ("20,000 small files", "20,000 files")
    };
    let mut clone = Scenario::new(
        format!("mediated mode: git clone, {what} (target: proxied ÷ direct ≤ 1.05)"),
        &["direct, helper mode", "through mintd --git-proxy"],
    );
    let mut push = Scenario::new(
        format!("mediated mode: git push of a new commit of {size} to a new branch (target: proxied ÷ direct ≤ 1.05)"),
        &["direct, helper mode", "through mintd --git-proxy"],
    );
    // Each way's own work tree to push from, made once.
    let trees = [dir.join("push-direct"), dir.join("push-proxied")];
    exec(direct(dir).args(["clone", "-q", &direct_url]).arg(&trees[0]))?;
    exec(proxied(dir).args(["clone", "-q", &proxied_url]).arg(&trees[1]))?;
    let cpu_before = crate::broker::cpu_time(proxy_mintd.0.id())?;
    let mut proxied_time = Duration::ZERO;
    for round in 0..rounds {
        let targets = [
            dir.join(format!("clone-direct-{round}")),
            dir.join(format!("clone-proxied-{round}")),
        ];
        // Each round starts with the other way, so neither always runs right after the other's work at
        // fakehub (whose repository the previous push just changed).
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for way in order {
            clone.time(way, || {
                if way == 0 {
                    exec(direct(dir).args(["clone", "-q", &direct_url]).arg(&targets[0]))
                } else {
                    exec(proxied(dir).args(["clone", "-q", &proxied_url]).arg(&targets[1]))
                }
            })?;
        }
        for target in &targets {
            std::fs::remove_dir_all(target)?;
        }
        for (way, tree) in trees.iter().enumerate() {
            // Fresh bytes for every push: the same amount, none of it at fakehub yet.
            write_content(tree, repo, 1 + 2 * round + way)?;
            commit(rig, tree, &format!("round {round}"))?;
        }
        for way in order {
            push.time(way, || {
                let (mut git, name) = if way == 0 {
                    (direct(&trees[0]), "direct")
                } else {
                    (proxied(&trees[1]), "proxied")
                };
                exec(git.args([
                    "push",
                    "-q",
                    "origin",
                    &format!("HEAD:refs/heads/adagent/{name}-{round}"),
                ]))
            })?;
        }
    }
    for samples in [&clone.samples[1], &push.samples[1]] {
        proxied_time += samples.iter().sum::<Duration>();
    }
    let cpu = crate::broker::cpu_time(proxy_mintd.0.id())?.saturating_sub(cpu_before);
    let peaks = (
        crate::peak_rss_kib(&proxy_mintd.0)?,
        crate::peak_rss_kib(&helper_mintd.0)?,
        cpu,
        proxied_time,
    );
    // The pushes are in fakehub's repository; the work trees are not needed any more.
    std::fs::remove_dir_all(dir)?;
    Ok(((clone, push), peaks))
}

/// Write the repository's whole content into `dir`, different for every `generation`: 100 files of 1 MB
/// of pseudo-random bytes, or 20,000 small source files in 200 directories.
fn write_content(dir: &Path, repo: &str, generation: usize) -> anyhow::Result<()> {
    if repo == BULK {
        let mut state = 0x9E37_79B9_7F4A_7C15_u64 ^ (generation as u64).wrapping_mul(0x2545_F491_4F6C_DD1D);
        let mut bytes = vec![0; BULK_FILE_BYTES];
        std::fs::create_dir_all(dir.join("data"))?;
        for i in 0..BULK_FILES {
            for chunk in bytes.chunks_mut(8) {
                // xorshift64*: incompressible enough that zlib gains nothing.
                state ^= state >> 12;
                state ^= state << 25;
                state ^= state >> 27;
                chunk.copy_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
            }
            std::fs::write(dir.join(format!("data/blob{i:03}.bin")), &bytes)?;
        }
    } else {
        for i in 0..MANY_FILES {
            let sub = dir.join(format!("src/mod{:03}", i / 100));
            if i % 100 == 0 {
                std::fs::create_dir_all(&sub)?;
            }
            std::fs::write(
                sub.join(format!("file{i:05}.rs")),
                format!("// file {i}, generation {generation}\npub fn f{i}() {{}}\n"),
            )?;
        }
    }
    Ok(())
}

/// Commit everything in `dir` (no network, so no helper).
fn commit(rig: &Rig, dir: &Path, message: &str) -> anyhow::Result<()> {
    exec(rig.git("").current_dir(dir).args(["add", "-A"]))?;
    // No auto-maintenance: 20,000 new loose objects make `git commit` start a repack in the background,
    // which then competes with the timed pushes (and made the proxied one look 2 times slower).
    exec(rig.git("").current_dir(dir).args([
        "-c",
        "maintenance.auto=false",
        "-c",
        "gc.auto=0",
        "-c",
        "user.name=Bench",
        "-c",
        "user.email=bench@example.invalid",
        "commit",
        "-q",
        "-m",
        message,
    ]))?;
    Ok(())
}
