//! The agent's `mint` as the sandbox image ships it: built from this package alone with
//! `--no-default-features`, so it holds no daemon, App-key code or fakehub (`mint demo` says so). The image
//! installs it as `/usr/local/bin/mint`.
fn main() -> std::process::ExitCode {
    mint_cli::main()
}
