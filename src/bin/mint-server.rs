//! `mint-server`: the control plane. Everything lives in the `mint-server` crate.

fn main() -> std::process::ExitCode {
    mint_server::main()
}
