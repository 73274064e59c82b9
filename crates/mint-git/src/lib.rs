//! mint's git side, driven by gix (gitoxide): `mint clone` and `mint publish` need no `git` program.
//!
//! - [`clone`]: clone over smart HTTP with credentials handed in by the caller, isolated from ambient config;
//!   memory stays flat however big a blob is (blobs above 512 MiB are hashed and checked out in chunks).
//! - [`stage`]: stage every change of a work tree exactly as `git add -A` would, and write the tree.
//! - [`branch`]: create or continue the agent's branch and commit to it.
//! - [`push`]: a send-pack client (gix has no push yet): receive-pack handshake, fast-forward check, a pack
//!   of exactly the objects the remote lacks streamed into the request, `report-status` per ref.
//!
//! Credentials never come from git config or the environment: the caller passes a [`CredentialSource`]
//! (mint asks mintd), and the token goes only to the URL the caller names (mint takes it from mintd too).

pub mod branch;
pub mod clone;
mod credentials;
pub mod lfs;
pub mod push;
pub mod stage;

pub use credentials::{CredentialSource, Credentials};

/// Open a work tree for `mint publish`: no system config, no environment overrides (`GIT_DIR`, …), so
/// nothing ambient decides where objects, refs or the index live. The user's own config is read for what
/// `git add -A` and `git commit` would read from it (`user.name`, `core.excludesFile`, `core.fileMode`), never
/// for anything that touches the network: the push URL and credentials come from mintd.
pub fn open_worktree(dir: &std::path::Path) -> Result<gix::Repository, gix::Error> {
    let mut options = gix::open::Options::isolated();
    options.modify(|o| {
        let mut permissions = gix::open::Permissions::isolated();
        permissions.config.user = true;
        permissions.config.git = true;
        permissions.config.includes = true;
        // To find those files: $HOME and $XDG_CONFIG_HOME, nothing else from the environment.
        permissions.env.home = gix::sec::Permission::Allow;
        permissions.env.xdg_config_home = gix::sec::Permission::Allow;
        o.permissions(permissions)
    });
    let mapping = gix::sec::trust::Mapping {
        full: options.clone(),
        reduced: options,
    };
    let repo = gix::ThreadSafeRepository::discover_opts(dir, gix::discover::upwards::Options::default(), mapping)?;
    Ok(repo.to_thread_local())
}

/// gix's HTTP backend (reqwest) uses rustls without a built-in provider; mint uses ring everywhere.
pub(crate) fn ensure_tls_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Fails only if another provider was installed first, which serves as well.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}
