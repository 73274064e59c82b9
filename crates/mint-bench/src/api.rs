//! mintd's GitHub API endpoint: Debian's `gh api` through mintd (its socket, a placeholder token) against
//! the same `gh api` straight to fakehub (fakehub on a unix socket of its own, a real token), interleaved,
//! 200 calls each; and mintd's RSS before and after.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail};

use crate::{OWNER, REPO, Report, Rig, Scenario, kib_to_mib, rss_kib};

const GH: &str = "/usr/bin/gh";

pub(crate) fn run(rig: &Rig, n: usize, report: &mut Report) -> anyhow::Result<()> {
    if !Path::new(GH).exists() {
        bail!("{GH} is not installed: apt-get install gh (Debian's 2.23)");
    }
    let dir = rig.work.path().join("api");
    std::fs::create_dir_all(&dir)?;
    // fakehub on a unix socket, so the direct series uses gh's http_unix_socket too: the same client path.
    let fakehub_socket = dir.join("fakehub.sock");
    let listener = {
        let _entered = rig.runtime.enter();
        tokio::net::UnixListener::bind(&fakehub_socket)?
    };
    let hub: fakehub::FakeHub = (*rig.hub).clone();
    rig.runtime.spawn(hub.serve_unix(listener, std::future::pending()));

    let answer =
        mint_api::Client::new(&rig.socket).request("POST", mint_api::route::CREDENTIAL_GET, rig.request.as_bytes())?;
    let token = String::from_utf8_lossy(&answer.body)
        .lines()
        .find_map(|l| l.strip_prefix("password=").map(str::to_owned))
        .context("mintd served no token for the direct series")?;
    let proxied = gh_config(&dir.join("gh-proxied"), &rig.socket, "mint-placeholder-not-a-token")?;
    let direct = gh_config(&dir.join("gh-direct"), &fakehub_socket, &token)?;
    let call = |config: &Path| -> anyhow::Result<Vec<u8>> {
        let out = Command::new(GH)
            .args(["api", &format!("repos/{OWNER}/{REPO}")])
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &rig.home)
            .env("GH_CONFIG_DIR", config)
            .env("GH_NO_UPDATE_NOTIFIER", "1")
            .output()?;
        if !out.status.success() {
            bail!("gh api failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(out.stdout)
    };
    // Warm both (gh's first run, mintd's first API request).
    call(&proxied)?;
    call(&direct)?;
    let rss_before = rss_kib(&rig.mintd)?;
    let mut scenario = Scenario::new(
        format!("`gh api repos/{OWNER}/{REPO}` (target: through mintd ÷ straight to fakehub ≤ 1.05)"),
        &[
            "gh api through mintd (placeholder)",
            "gh api straight to fakehub (token)",
        ],
    );
    for round in 0..n {
        for k in 0..2 {
            let i = (round + k) % 2;
            scenario.time(i, || call(if i == 0 { &proxied } else { &direct }))?;
        }
    }
    let rss_after = rss_kib(&rig.mintd)?;
    let paired = scenario.paired_ratio(0, 1);
    let ratios = scenario.report(report, 1)?;
    report.line(format!("  paired ratio (median of per-round ratios) {paired:>6.3}x"));
    report.line(format!(
        "  mintd RSS before {:.1} MiB, after {n} proxied calls {:.1} MiB",
        kib_to_mib(rss_before),
        kib_to_mib(rss_after)
    ));
    report.goal("gh api: through mintd ÷ straight to fakehub", ratios[0], 1.05, "x");
    Ok(())
}

/// A gh config directory: every request over `socket`, signed in to github.com with `token`.
fn gh_config(dir: &Path, socket: &Path, token: &str) -> anyhow::Result<std::path::PathBuf> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(
        dir.join("config.yml"),
        format!(
            "git_protocol: https\nprompt: disabled\nhttp_unix_socket: {}\n",
            socket.display()
        ),
    )?;
    crate::write_private(
        &dir.join("hosts.yml"),
        &format!("github.com:\n    oauth_token: {token}\n    user: x-access-token\n    git_protocol: https\n"),
    )?;
    Ok(dir.to_owned())
}
