//! `git-credential-mint` built from this crate alone, as the sandbox image ships it (see Cargo.toml).
fn main() -> std::process::ExitCode {
    mint_helper::main()
}
