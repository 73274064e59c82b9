//! mint: the agent's CLI — `mint status` now, `mint demo` to run the whole flow on one machine.

#[cfg(feature = "demo")]
mod demo;
#[cfg(feature = "demo")]
mod demo_serve;
mod feedback;
mod publish;
mod remote;
mod status;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mint: safe, transparent GitHub access for coding sandboxes.
#[derive(Debug, Parser)]
#[command(name = "mint", version, max_term_width = 100)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
#[expect(
    clippy::doc_markdown,
    reason = "these doc comments are the --help text, read as plain text"
)]
enum Command {
    /// Show what mintd serves: repository, installation, token life left, last error (never the token).
    Status {
        /// mintd's socket [default: /run/mint/mint.sock].
        #[arg(long, env = mint_api::env::SOCKET, value_name = "PATH")]
        socket: Option<PathBuf>,
        /// Print mintd's status JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Clone mintd's repository with gix and check out its default branch (no `git` program needed).
    ///
    /// The URL and the token come from mintd (in mediated mode, mintd's git proxy, with no token at all).
    /// No system, user or environment git config is read for the clone.
    Clone {
        /// The directory to clone into (absent or empty) [default: the repository's name].
        dir: Option<PathBuf>,
        /// Leave Git LFS files as pointers (by default their content is downloaded, as with git-lfs).
        #[arg(long)]
        no_lfs: bool,
        /// mintd's socket [default: /run/mint/mint.sock].
        #[arg(long, env = mint_api::env::SOCKET, value_name = "PATH")]
        socket: Option<PathBuf>,
    },
    /// Commit every change in this work tree to an agent branch, push it, and open its pull request.
    ///
    /// Steps: refuse a branch outside mintd's prefix (adagent/) before touching anything; create the
    /// branch from HEAD, or continue it; stage everything as `git add -A` would; commit (author from
    /// user.name/user.email, else MINT_AUTHOR_NAME/MINT_AUTHOR_EMAIL, else "mint agent
    /// <agent@mint.invalid>"); push with gix, fast-forward only; ask mintd to open the pull request
    /// against the default branch, or return the one already open for the branch.
    ///
    /// Prints the pull request's URL as the last line (or one JSON object with --json). Exit codes:
    /// 0 published, 2 nothing to commit, 1 anything else (the reason is on stderr).
    Publish {
        /// The branch, inside mintd's prefix: adagent/<change>.
        #[arg(long, value_name = "NAME")]
        branch: String,
        /// The commit message.
        #[arg(long, short = 'm', value_name = "MSG")]
        message: String,
        /// The pull request's title.
        #[arg(long, value_name = "TITLE")]
        title: String,
        /// The pull request's description.
        #[arg(long, value_name = "TEXT")]
        body: Option<String>,
        /// A ticket id or URL, linked at the end of the description.
        #[arg(long, value_name = "ID_OR_URL")]
        ticket: Option<String>,
        /// Open the pull request as a draft.
        #[arg(long)]
        draft: bool,
        /// Print one JSON object (outcome, branch, commit, pull_request) instead of the URL.
        #[arg(long)]
        json: bool,
        /// mintd's socket [default: /run/mint/mint.sock].
        #[arg(long, env = mint_api::env::SOCKET, value_name = "PATH")]
        socket: Option<PathBuf>,
    },
    /// What reviewers said about the branch's pull request since its last push, read through mintd.
    ///
    /// Lists the pull request and its state, the reviews and review comments (with path and line) made
    /// on its head commit, and the conversation comments since that commit; the agent's own are left out.
    /// Works in every mode: mintd adds the token. Exit codes: 0 there is feedback to address, 2 there is
    /// none, 1 anything else (no pull request for the branch: publish it first).
    Feedback {
        /// The branch [default: the one checked out here].
        #[arg(long, value_name = "NAME")]
        branch: Option<String>,
        /// Print one JSON object (pull_request, reviews, review_comments, comments) instead of text.
        #[arg(long)]
        json: bool,
        /// mintd's socket [default: /run/mint/mint.sock].
        #[arg(long, env = mint_api::env::SOCKET, value_name = "PATH")]
        socket: Option<PathBuf>,
    },
    /// Run the whole flow on this machine against fakehub, a stand-in GitHub: no account needed.
    Demo {
        /// Serve mint-server and fakehub instead: connect GitHub in a browser, then watch mintd (broker mode)
        /// and the agent open a pull request. Runs until Ctrl-C.
        #[arg(long)]
        serve: bool,
    },
}

/// The binary's entry point. Invoked under the name `git-credential-mint` (a link made by `mint demo`),
/// it is the credential helper, so the demo needs no other binary than this one.
pub fn main() -> ExitCode {
    let invoked_as = std::env::args_os().next().map(PathBuf::from);
    if invoked_as
        .as_deref()
        .and_then(Path::file_name)
        .is_some_and(|n| n == "git-credential-mint")
    {
        return mint_helper::main();
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Status { socket, json } => status::run(&mint_api::socket_path(socket), json),
        Command::Clone { dir, no_lfs, socket } => publish::clone(&mint_api::socket_path(socket), dir, !no_lfs),
        Command::Publish {
            branch,
            message,
            title,
            body,
            ticket,
            draft,
            json,
            socket,
        } => publish::publish(
            &mint_api::socket_path(socket),
            &publish::PublishArgs {
                branch,
                message,
                title,
                body,
                ticket,
                draft,
                json,
            },
        ),
        Command::Feedback { branch, json, socket } => feedback::run(&mint_api::socket_path(socket), branch, json),
        #[cfg(feature = "demo")]
        Command::Demo { serve: false } => demo::run(),
        #[cfg(feature = "demo")]
        Command::Demo { serve: true } => demo_serve::run(),
        #[cfg(not(feature = "demo"))]
        Command::Demo { .. } => Err(anyhow::anyhow!(
            "this mint is the agent's build, without the demo (no fakehub, mintd or mint-server inside): run \
             `cargo run --release --bin mint -- demo` in a checkout of mint"
        )),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("mint: {e:#}");
            ExitCode::FAILURE
        }
    }
}
