//! `git-credential-mint`: the git credential helper. All of it lives in the `mint-helper` crate.
fn main() -> std::process::ExitCode {
    mint_helper::main()
}
