//! `fakehub`: a stand-in GitHub for demos and tests. All of it lives in the `fakehub` crate.
fn main() -> std::process::ExitCode {
    fakehub::cli::main()
}
