//! `mint clone` and `mint publish`: the agent's whole flow with gix, no `git` program, no token in hand.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use mint_api::PullRequestInput;
use mint_git::branch::Identity;
use mint_git::push::{PushError, Session};
use serde::Serialize;

use crate::remote::{Remote, open_pull};

/// `nothing to commit`: the work tree matches the branch and the branch has nothing to publish.
pub(crate) const EXIT_NOTHING_TO_COMMIT: u8 = 2;

/// The author used when neither git config nor the environment names one.
pub(crate) const DEFAULT_AUTHOR: (&str, &str) = ("mint agent", "agent@mint.invalid");
pub(crate) const AUTHOR_NAME_ENV: &str = "MINT_AUTHOR_NAME";
pub(crate) const AUTHOR_EMAIL_ENV: &str = "MINT_AUTHOR_EMAIL";

fn progress(line: &str) {
    eprintln!("{line}");
}

pub(crate) fn clone(socket: &Path, dir: Option<PathBuf>, lfs: bool) -> anyhow::Result<ExitCode> {
    let remote = Remote::ask(socket)?;
    let dir = dir.unwrap_or_else(|| PathBuf::from(remote.name()));
    let credentials = remote
        .credentials()?
        .map(|c| Box::new(c) as Box<dyn mint_git::CredentialSource + Send>);
    let cloned = mint_git::clone::clone(&remote.git_url(), &dir, credentials, &mut |l| progress(l))?;
    if lfs && cloned.head.is_some() {
        let mut credentials = remote.credentials()?;
        let smudged = mint_git::clone::smudge_lfs(
            &dir,
            &remote.git_url(),
            credentials.as_mut().map(|c| c as &mut dyn mint_git::CredentialSource),
            &mut |l| progress(l),
        )
        .with_context(|| {
            format!(
                "the clone in {} is complete but its Git LFS files are still pointers; `mint clone --no-lfs` skips them",
                dir.display()
            )
        })?;
        if smudged > 0 {
            progress(&format!("Checked out {smudged} Git LFS files"));
        }
    }
    match (&cloned.branch, cloned.head) {
        (Some(branch), Some(head)) => eprintln!(
            "Cloned {} into {}: {branch} at {}, {} files",
            remote.status.repository,
            dir.display(),
            head.to_hex_with_len(7),
            cloned.files
        ),
        // The remote's HEAD is detached: so is the clone's, as after `git clone`.
        (None, Some(head)) => eprintln!(
            "Cloned {} into {}: HEAD detached at {} (the remote's HEAD names no branch), {} files",
            remote.status.repository,
            dir.display(),
            head.to_hex_with_len(7),
            cloned.files
        ),
        // An empty repository, or one with tags but no commit on its default branch.
        (branch, None) => eprintln!(
            "Cloned {} into {}: its default branch{} has no commit yet, so nothing was checked out",
            remote.status.repository,
            dir.display(),
            branch.as_deref().map(|b| format!(" {b}")).unwrap_or_default()
        ),
    }
    Ok(ExitCode::SUCCESS)
}

/// What `mint publish` was asked to do.
pub(crate) struct PublishArgs {
    pub(crate) branch: String,
    pub(crate) message: String,
    pub(crate) title: String,
    pub(crate) body: Option<String>,
    pub(crate) ticket: Option<String>,
    pub(crate) draft: bool,
    pub(crate) json: bool,
}

#[derive(Serialize)]
struct Report<'a> {
    /// `published` or `nothing_to_commit`.
    outcome: &'static str,
    branch: &'a str,
    /// The branch's tip after publishing.
    commit: Option<String>,
    /// `true` if this run made a commit.
    committed: bool,
    /// `true` if this run sent objects (false when the remote already had the tip).
    pushed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pull_request: Option<mint_api::PullRequestOutput>,
}

pub(crate) fn publish(socket: &Path, args: &PublishArgs) -> anyhow::Result<ExitCode> {
    let input = PullRequestInput {
        branch: args.branch.clone(),
        title: args.title.clone(),
        body: args.body.clone(),
        ticket: args.ticket.clone(),
        draft: args.draft,
    };
    if args.message.trim().is_empty() {
        bail!("the commit message is empty: pass --message");
    }
    let remote = Remote::ask(socket)?;
    // Refuse before touching anything: the branch, title, body and ticket by mintd's own rules.
    input
        .check(&remote.status.branch_prefix)
        .map_err(|reason| anyhow::anyhow!("refused: {reason}; nothing was changed"))?;

    let (repo, changed, tip) = commit_work_tree(args)?;

    let url = remote.git_url();
    let mut credentials = remote.credentials()?;
    let mut connect = |refused_previous: bool| {
        Session::connect(
            &url,
            credentials.as_mut().map(|c| c as &mut dyn mint_git::CredentialSource),
            refused_previous,
        )
    };
    let session = connect(false)?;
    // Git LFS objects go to the same remote's LFS endpoint, before the push (git-lfs's pre-push hook).
    let mut lfs_credentials = remote.credentials()?;
    let mut lfs = mint_git::lfs::Endpoint::for_remote(
        &url,
        lfs_credentials
            .as_mut()
            .map(|c| c as &mut dyn mint_git::CredentialSource),
    )?;
    // Nothing staged and no commit beyond the default branch: a pull request would be empty.
    let nothing_new = !changed
        && match tip {
            None => true,
            Some(tip) => session.has_elsewhere(&repo, &args.branch, tip)?,
        };
    if nothing_new {
        return nothing_to_commit(args, tip);
    }
    let tip = tip.expect("a tip exists when there is something to publish");
    let pushed = match session.push(&repo, &args.branch, tip, Some(&mut lfs), &mut |l| progress(l)) {
        // The token died between the handshake and the upload (expired, revoked): once, with a fresh one.
        Err(PushError::Unauthorized { .. }) if remote.status.git_proxy.is_none() => {
            progress("The token was refused during the upload; pushing again with a fresh one");
            connect(true)
                .and_then(|session| session.push(&repo, &args.branch, tip, Some(&mut lfs), &mut |l| progress(l)))
        }
        other => other,
    }
    .with_context(|| {
        format!(
            "the commit {} is kept on {}; run `mint publish` again once the cause is fixed",
            tip.to_hex_with_len(7),
            args.branch
        )
    })?;
    if let Err(e) = mint_git::push::record_pushed(&repo, &args.branch, tip, &author(&repo)) {
        // The push itself succeeded: say so, and go on to the pull request.
        progress(&format!("warning: could not update origin/{}: {e}", args.branch));
    }
    say_pushed(&url, &args.branch, &pushed);

    let pull = open_pull(&remote.client, &input)?;
    progress(&format!(
        "{} pull request #{}: {} -> {}",
        if pull.created { "Opened" } else { "Updated the open" },
        pull.number,
        pull.head,
        pull.base
    ));
    let mut out = std::io::stdout().lock();
    if args.json {
        let report = Report {
            outcome: "published",
            branch: &args.branch,
            commit: Some(tip.to_string()),
            committed: changed,
            pushed: !pushed.up_to_date,
            pull_request: Some(pull),
        };
        serde_json::to_writer(&mut out, &report)?;
        writeln!(out)?;
    } else {
        writeln!(out, "{}", pull.url)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Open the work tree around the current directory, switch to the branch, stage everything and commit if
/// anything changed: the repository, whether a commit was made, and the branch's tip.
fn commit_work_tree(args: &PublishArgs) -> anyhow::Result<(gix::Repository, bool, Option<gix::ObjectId>)> {
    let cwd = std::env::current_dir().context("the current directory")?;
    let repo = mint_git::open_worktree(&cwd).with_context(|| {
        format!(
            "{} is not inside a git work tree: run `mint publish` in the clone (`mint clone` makes one)",
            cwd.display()
        )
    })?;
    let author = author(&repo);
    let switched = mint_git::branch::switch_to(&repo, &args.branch, &author)?;
    if switched.created {
        progress(&format!("Switched to a new branch '{}'", args.branch));
    }
    let staged = mint_git::stage::stage_all(&repo)?;
    for path in &staged.skipped {
        progress(&format!(
            "warning: skipped {path}: an embedded git repository (mint does not add submodules)"
        ));
    }
    let (changed, tip) = commit_if_changed(&repo, args, &author, &switched, staged.tree)?;
    Ok((repo, changed, tip))
}

/// What `git push` prints, on stderr.
fn say_pushed(url: &str, branch: &str, pushed: &mint_git::push::PushOutcome) {
    if pushed.up_to_date {
        progress(&format!("{branch} is up to date at {url}"));
    } else {
        let old = pushed.old.map_or_else(
            || " * [new branch]     ".to_owned(),
            |o| format!("   {}..{}", o.to_hex_with_len(7), pushed.new.to_hex_with_len(7)),
        );
        progress(&format!("To {url}\n{old}  {branch} -> {branch}"));
    }
}

/// Commit `tree` on the branch unless it is HEAD's tree already. Returns whether a commit was made, and
/// the branch's tip.
fn commit_if_changed(
    repo: &gix::Repository,
    args: &PublishArgs,
    author: &Identity,
    switched: &mint_git::branch::Switched,
    tree: gix::ObjectId,
) -> anyhow::Result<(bool, Option<gix::ObjectId>)> {
    let base_tree = match switched.base {
        Some(base) => Some(
            repo.find_commit(base)
                .context("HEAD's commit")?
                .tree_id()
                .context("HEAD's tree")?
                .detach(),
        ),
        None => None,
    };
    let empty_tree = gix::ObjectId::empty_tree(repo.object_hash());
    let changed = base_tree.unwrap_or(empty_tree) != tree;
    let tip = if changed {
        let id = mint_git::branch::commit(repo, author, &args.message, tree, switched.base)?;
        progress(&format!(
            "[{} {}] {}",
            args.branch,
            id.to_hex_with_len(7),
            args.message.lines().next().unwrap_or_default()
        ));
        Some(id)
    } else {
        switched.base
    };

    Ok((changed, tip))
}

fn nothing_to_commit(args: &PublishArgs, tip: Option<gix::ObjectId>) -> anyhow::Result<ExitCode> {
    eprintln!(
        "nothing to commit: the work tree matches {} and it has no commits to publish",
        args.branch
    );
    if args.json {
        let report = Report {
            outcome: "nothing_to_commit",
            branch: &args.branch,
            commit: tip.map(|t| t.to_string()),
            committed: false,
            pushed: false,
            pull_request: None,
        };
        let mut out = std::io::stdout().lock();
        serde_json::to_writer(&mut out, &report)?;
        writeln!(out)?;
    }
    Ok(ExitCode::from(EXIT_NOTHING_TO_COMMIT))
}

/// `user.name`/`user.email` from git config, else `MINT_AUTHOR_NAME`/`MINT_AUTHOR_EMAIL`, else the default.
fn author(repo: &gix::Repository) -> Identity {
    let config = repo.config_snapshot();
    let pick = |key: &str, env: &str, default: &str| {
        config
            .string(key)
            .map(|v| v.to_string())
            .filter(|v| !v.trim().is_empty())
            .or_else(|| std::env::var(env).ok().filter(|v| !v.trim().is_empty()))
            .unwrap_or_else(|| default.to_owned())
    };
    Identity {
        name: pick("user.name", AUTHOR_NAME_ENV, DEFAULT_AUTHOR.0),
        email: pick("user.email", AUTHOR_EMAIL_ENV, DEFAULT_AUTHOR.1),
    }
}
