//! `mintd`: the token daemon. All of it lives in the `mint-daemon` crate.
fn main() -> std::process::ExitCode {
    mint_daemon::main()
}
