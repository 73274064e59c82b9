//! `mint`: the agent's CLI. All of it lives in the `mint-cli` crate.
fn main() -> std::process::ExitCode {
    mint_cli::main()
}
