//! End-to-end tests: the real `git`, the real `mintd` and `git-credential-mint` binaries, fakehub on loopback.
//! One test binary (not one per file) so the workspace links it once.

mod agent;
mod api;
mod app_key;
mod broker;
mod browser;
mod cgroup;
mod daemon;
mod deploy;
mod faults;
mod fidelity;
mod fleet;
mod git_flow;
mod hostile;
mod image;
mod lfs;
mod mediated;
mod policy;
mod pulls;
mod revocation;
mod security;
mod server_soak;
mod support;
