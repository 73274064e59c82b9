//! mint-server: the control plane. The one holder of the GitHub App key; keeps each product's GitHub
//! connection in a database and mints repository-scoped tokens for sandboxes on request.

/// `mint-server`'s whole life.
pub fn main() -> std::process::ExitCode {
    std::process::ExitCode::FAILURE
}
