//! mint: the agent's CLI — `mint status` now, `mint demo` to run the whole flow on one machine.

mod demo;
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
    /// Run the whole flow on this machine against fakehub, a stand-in GitHub: no account needed.
    Demo,
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
        Command::Demo => demo::run(),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("mint: {e:#}");
            ExitCode::FAILURE
        }
    }
}
