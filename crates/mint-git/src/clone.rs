//! Clone over smart HTTP and check out the default branch, isolated from ambient git config.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use gix::protocol::transport::client::TransportWithoutIO as _;

use crate::credentials::{CredentialSource, authenticate_fn};

/// What a clone produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cloned {
    pub dir: PathBuf,
    /// The checked-out branch (`main`); `None` for an empty repository.
    pub branch: Option<String>,
    pub head: Option<gix::ObjectId>,
    /// Files written to the work tree.
    pub files: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum CloneError {
    #[error("{} exists and is not an empty directory: choose another directory", .0.display())]
    NotEmpty(PathBuf),
    #[error("cloning {url} failed: {message}")]
    Failed { url: String, message: String },
}

/// Clone `url` into `dir` (created; must be absent or empty) and check out the remote's default branch.
///
/// No system, user or environment config is read: no `url.*.insteadOf` can send the token elsewhere, no
/// `http.*` setting can add a header or proxy, no credential helper is asked. The clone's own config holds
/// only `remote.origin` (the URL without credentials) and the branch.
pub fn clone(
    url: &str,
    dir: &Path,
    credentials: Option<Box<dyn CredentialSource + Send>>,
    progress: &mut dyn FnMut(&str),
) -> Result<Cloned, CloneError> {
    if dir.exists() && !std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_none()) {
        return Err(CloneError::NotEmpty(dir.to_owned()));
    }
    crate::ensure_tls_provider();
    let failed = |e: gix::Error| CloneError::Failed {
        url: url.to_owned(),
        message: format!("{e:#}"),
    };
    let mut prepare = gix::clone::PrepareFetch::new(
        url,
        dir,
        gix::create::Kind::WithWorktree,
        gix::create::Options::default(),
        gix::open::Options::isolated(),
    )
    .map_err(failed)?;
    if let Some(source) = credentials {
        let source = Arc::new(Mutex::new(source));
        prepare = prepare.configure_connection(move |connection| {
            let first = source
                .lock()
                .expect("not poisoned")
                .get(false)
                .map_err(|e| gix::Error::from_error(std::io::Error::other(e)))?;
            connection
                .transport_mut()
                .set_identity(first.to_account())
                .map_err(gix::Error::from_error)?;
            let source = Arc::clone(&source);
            let guard_holder = move |action| {
                let mut guard = source.lock().expect("not poisoned");
                authenticate_fn(&mut **guard, true)(action)
            };
            connection.set_credentials(guard_holder);
            Ok(())
        });
    }
    progress(&format!("Cloning into '{}'...", dir.display()));
    let interrupt = AtomicBool::new(false);
    let (mut checkout, _) = prepare
        .fetch_then_checkout(gix::progress::Discard, &interrupt)
        .map_err(failed)?;
    let (repo, outcome) = checkout
        .main_worktree(gix::progress::Discard, &interrupt)
        .map_err(failed)?;
    let head = repo.head().map_err(failed)?;
    Ok(Cloned {
        dir: dir.to_owned(),
        branch: head.referent_name().map(|n| n.shorten().to_string()),
        head: head.id().map(gix::Id::detach),
        files: outcome.files_updated,
    })
}
