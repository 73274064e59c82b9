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

/// After a checkout, what git-lfs's smudge filter does: every file whose attributes say `filter=lfs` and
/// which holds a pointer is replaced by the object's content, downloaded through the batch API into
/// `.git/lfs/objects` (verified) and copied into the work tree. The index keeps the pointer blob with the
/// new file's stat, so `git status` stays clean. Returns the files smudged.
pub fn smudge_lfs(
    dir: &Path,
    url: &str,
    credentials: Option<&mut dyn CredentialSource>,
    progress: &mut dyn FnMut(&str),
) -> Result<usize, crate::lfs::LfsError> {
    use crate::lfs::{Endpoint, LfsError, Pointer};
    use gix::index::entry::Mode;

    let local = |e: &dyn std::fmt::Display| LfsError::Local(format!("{e:#}"));
    let repo = crate::open_worktree(dir).map_err(|e| local(&e))?;
    let workdir = repo
        .workdir()
        .ok_or_else(|| LfsError::Local("no work tree".into()))?
        .to_owned();
    let mut index = repo.open_index().map_err(|e| local(&e))?;
    let mut attributes = repo
        .attributes_only(&index, gix::worktree::stack::state::attributes::Source::IdMapping)
        .map_err(|e| local(&e))?;
    let mut outcome = attributes.selected_attribute_matches(["filter"]);
    let mut wanted: Vec<(Pointer, String)> = Vec::new();
    let mut at: Vec<usize> = Vec::new();
    for (i, entry) in index.entries().iter().enumerate() {
        if !matches!(entry.mode, Mode::FILE | Mode::FILE_EXECUTABLE) {
            continue;
        }
        let path = entry.path(&index);
        outcome.reset();
        attributes
            .at_entry(path, Some(entry.mode))
            .map_err(|e| local(&e))?
            .matching_attributes(&mut outcome);
        let lfs = outcome
            .iter_selected()
            .any(|m| matches!(m.assignment.state, gix::attrs::StateRef::Value(v) if v.as_bstr() == "lfs"));
        if !lfs {
            continue;
        }
        let Ok(blob) = repo.find_object(entry.id) else { continue };
        if let Some(pointer) = Pointer::parse(&blob.data) {
            wanted.push((pointer, path.to_string()));
            at.push(i);
        }
    }
    if wanted.is_empty() {
        return Ok(0);
    }
    progress(&format!("Downloading {} LFS files", wanted.len()));
    let mut endpoint = Endpoint::for_remote(url, credentials)?;
    endpoint.set_concurrent_transfers(crate::lfs::concurrent_transfers(&repo));
    endpoint.download(repo.git_dir(), &wanted)?;
    for (i, (pointer, rela)) in at.iter().zip(&wanted) {
        let path = workdir.join(rela);
        let copy = || -> std::io::Result<gix::index::entry::Stat> {
            let mut from = std::fs::File::open(pointer.local_path(repo.git_dir()))?;
            // Truncating the checked-out file keeps its mode (an executable stays one).
            let mut to = std::fs::OpenOptions::new().write(true).truncate(true).open(&path)?;
            std::io::copy(&mut from, &mut to)?;
            to.sync_all()?;
            drop(to);
            let metadata = gix::index::fs::Metadata::from_path_no_follow(&path)?;
            gix::index::entry::Stat::from_fs(&metadata).map_err(std::io::Error::other)
        };
        let stat = copy().map_err(|e| LfsError::Transfer {
            operation: "checkout",
            oid: pointer.oid.clone(),
            path: rela.clone(),
            message: e.to_string(),
        })?;
        index.entries_mut()[*i].stat = stat;
    }
    index
        .write(gix::index::write::Options::default())
        .map_err(|e| local(&e))?;
    Ok(wanted.len())
}
