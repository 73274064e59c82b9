//! Clone over smart HTTP and check out the default branch, isolated from ambient git config.

use std::collections::{HashMap, HashSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use gix::protocol::transport::client::TransportWithoutIO as _;

use crate::credentials::{CredentialSource, authenticate_fn};

mod pack;

pub use pack::BIG_OBJECT_THRESHOLD;
use pack::BigBlob;

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
///
/// Memory stays flat with objects of any size, as with `git clone`: a blob above [`BIG_OBJECT_THRESHOLD`]
/// (git's `core.bigFileThreshold`) is hashed as it is inflated when the pack is indexed, and streamed into
/// its work-tree file, unless its attributes ask for a conversion (`text`, `eol`, `ident`, a `filter`
/// driver, `working-tree-encoding`): such a blob is checked out by gix, whole, as git needs it whole too.
pub fn clone(
    url: &str,
    dir: &Path,
    credentials: Option<Box<dyn CredentialSource + Send>>,
    progress: &mut dyn FnMut(&str),
) -> Result<Cloned, CloneError> {
    clone_with_threshold(url, dir, credentials, progress, BIG_OBJECT_THRESHOLD)
}

/// [`clone`] with the size above which a blob is streamed, for tests with small objects.
fn clone_with_threshold(
    url: &str,
    dir: &Path,
    credentials: Option<Box<dyn CredentialSource + Send>>,
    progress: &mut dyn FnMut(&str),
    threshold: u64,
) -> Result<Cloned, CloneError> {
    if dir.exists() && !std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_none()) {
        return Err(CloneError::NotEmpty(dir.to_owned()));
    }
    crate::ensure_tls_provider();
    let failed = |e: gix::Error| CloneError::Failed {
        url: url.to_owned(),
        message: format!("{e:#}"),
    };
    let parsed = gix::url::parse(gix::bstr::BStr::new(url)).map_err(|e| failed(gix::Error::from_error(e)))?;
    let mut prepare = gix::clone::PrepareFetch::new(
        parsed.clone(),
        dir,
        gix::create::Kind::WithWorktree,
        gix::create::Options::default(),
        gix::open::Options::isolated(),
    )
    .map_err(failed)?;
    let source = credentials.map(|source| Arc::new(Mutex::new(source)));
    if let Some(source) = &source {
        let source = Arc::clone(source);
        prepare = prepare.configure_connection(move |connection| {
            set_identity(&source, connection.transport_mut())?;
            let source = Arc::clone(&source);
            connection.set_credentials(authenticate(source));
            Ok(())
        });
    }
    progress(&format!("Cloning into '{}'...", dir.display()));
    let interrupt = AtomicBool::new(false);
    // The pack is received and indexed here, so that no object is held whole; gix's clone then writes the
    // refs, HEAD and config exactly as before, its own fetch finding every object present.
    let received = {
        let repo = gix::open_opts(dir, gix::open::Options::isolated()).map_err(failed)?;
        let mut configure = |transport: &mut pack::BoxedTransport| match &source {
            Some(source) => set_identity(source, transport),
            None => Ok(()),
        };
        let mut no_credentials = |_| Ok(None);
        let mut with_credentials = source.clone().map(authenticate);
        let authenticate: &mut pack::AuthenticateFn<'_> = match &mut with_credentials {
            Some(f) => f,
            None => &mut no_credentials,
        };
        pack::fetch(&repo, &parsed, &mut configure, authenticate, threshold, &interrupt).map_err(failed)?
    };
    let (mut checkout, _) = prepare
        .fetch_then_checkout(gix::progress::Discard, &interrupt)
        .map_err(failed)?;
    // With no commit to check out (only tags), gix's checkout has nothing to do, and nothing is streamed.
    let stream = !received.big.is_empty() && checkout.repo().head_id().is_ok();
    let (repo, outcome) = if stream {
        let outcome = checkout_streaming(checkout.repo(), &received.big, &interrupt).map_err(failed)?;
        (checkout.persist(), outcome)
    } else {
        checkout
            .main_worktree(gix::progress::Discard, &interrupt)
            .map_err(failed)?
    };
    let head = repo.head().map_err(failed)?;
    Ok(Cloned {
        dir: dir.to_owned(),
        branch: head.referent_name().map(|n| n.shorten().to_string()),
        head: head.id().map(gix::Id::detach),
        files: outcome.files_updated,
    })
}

type SharedSource = Arc<Mutex<Box<dyn CredentialSource + Send>>>;

/// The first credentials go with the first request, as git sends them once it has them.
fn set_identity(source: &SharedSource, transport: &mut pack::BoxedTransport) -> gix::Result<()> {
    let first = source
        .lock()
        .expect("not poisoned")
        .get(false)
        .map_err(|e| gix::Error::from_error(std::io::Error::other(e)))?;
    transport
        .set_identity(first.to_account())
        .map_err(gix::Error::from_error)
}

/// What the handshake asks after a 401: a fresh token.
fn authenticate(source: SharedSource) -> impl FnMut(gix::credentials::helper::Action) -> pack::AuthenticateResult {
    move |action| {
        let mut guard = source.lock().expect("not poisoned");
        authenticate_fn(&mut **guard, true)(action)
    }
}

/// gix's checkout (`PrepareCheckout::main_worktree`), except that the blobs in `big` whose paths need no
/// conversion are handed to gix as empty and then streamed from the pack into their files, whose stat the
/// index then records.
fn checkout_streaming(
    repo: &gix::Repository,
    big: &HashMap<gix::ObjectId, BigBlob>,
    should_interrupt: &AtomicBool,
) -> gix::Result<gix::worktree::state::checkout::Outcome> {
    use gix::index::entry::Mode;

    let workdir = repo
        .workdir()
        .expect("a clone with a work tree (create::Kind::WithWorktree)")
        .to_owned();
    let tree = repo.head_commit()?.tree_id()?.detach();
    let mut index = repo.index_from_tree(&tree)?;
    let mut attributes = repo.attributes_only(&index, gix::worktree::stack::state::attributes::Source::IdMapping)?;
    let mut matches =
        attributes.selected_attribute_matches(["text", "eol", "crlf", "ident", "filter", "working-tree-encoding"]);
    let mut streamed: HashSet<gix::ObjectId> = HashSet::new();
    let mut converted: HashSet<gix::ObjectId> = HashSet::new();
    for entry in index.entries() {
        if !big.contains_key(&entry.id) {
            continue;
        }
        matches.reset();
        attributes
            .at_entry(entry.path(&index), Some(entry.mode))?
            .matching_attributes(&mut matches);
        let conversion = !matches!(entry.mode, Mode::FILE | Mode::FILE_EXECUTABLE)
            || matches.iter_selected().any(|m| {
                matches!(
                    m.assignment.state,
                    gix::attrs::StateRef::Set | gix::attrs::StateRef::Value(_)
                )
            });
        if conversion {
            converted.insert(entry.id);
        } else {
            streamed.insert(entry.id);
        }
    }
    // A blob is handed to gix as empty for all of its paths or for none.
    streamed.retain(|id| !converted.contains(id));

    let mut options = repo.checkout_options(gix::worktree::stack::state::attributes::Source::IdMapping)?;
    options.destination_is_initially_empty = true;
    let objects = EmptyBlobs {
        objects: repo.objects.clone().into_arc().map_err(gix::Error::from_error)?,
        empty: Arc::new(streamed),
    };
    let empty = Arc::clone(&objects.empty);
    let outcome = gix::worktree::state::checkout(
        &mut index,
        &workdir,
        objects,
        &gix::progress::Discard,
        &gix::progress::Discard,
        should_interrupt,
        options,
    )?;
    let mut to_stream: Vec<(usize, PathBuf, &BigBlob)> = Vec::new();
    for (i, entry) in index.entries().iter().enumerate() {
        if empty.contains(&entry.id) {
            let path = workdir.join(gix::path::from_bstr(entry.path(&index))?);
            to_stream.push((i, path, &big[&entry.id]));
        }
    }
    for (i, path, blob) in to_stream {
        let stream = || -> std::io::Result<gix::index::entry::Stat> {
            // Truncating the checked-out (empty) file keeps its mode: an executable stays one.
            let file = std::fs::OpenOptions::new().write(true).truncate(true).open(&path)?;
            let mut out = std::io::BufWriter::with_capacity(64 << 10, file);
            pack::inflate_chunks(&blob.pack, blob.data_offset, blob.size, &mut |chunk| {
                out.write_all(chunk)
            })?;
            out.into_inner().map_err(std::io::IntoInnerError::into_error)?;
            let metadata = gix::index::fs::Metadata::from_path_no_follow(&path)?;
            gix::index::entry::Stat::from_fs(&metadata).map_err(std::io::Error::other)
        };
        let stat = stream().map_err(|e| {
            gix::Error::from_error(std::io::Error::other(format!("checking out {}: {e}", path.display())))
        })?;
        index.entries_mut()[i].stat = stat;
    }
    index.write(gix::index::write::Options::default())?;
    Ok(outcome)
}

/// The object database as gix's checkout reads it, with some blobs empty: those streamed afterwards.
#[derive(Clone)]
struct EmptyBlobs {
    objects: gix::OdbHandleArc,
    empty: Arc<HashSet<gix::ObjectId>>,
}

impl gix::objs::Find for EmptyBlobs {
    fn try_find<'a>(&self, id: &gix::oid, buffer: &'a mut Vec<u8>) -> gix::Result<Option<gix::objs::Data<'a>>> {
        if self.empty.contains(id) {
            buffer.clear();
            return Ok(Some(gix::objs::Data::new(buffer, gix::objs::Kind::Blob, id.kind())));
        }
        self.objects.try_find(id, buffer)
    }
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

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::pack::tests::{git, repository};
    use super::*;

    /// What `git clone` does, with blobs above a lowered threshold streamed: an executable one, one at two
    /// paths, and one whose `text` attribute leaves it to gix.
    #[test]
    fn a_clone_with_blobs_above_the_threshold_equals_gits() {
        let tmp = tempfile::tempdir().expect("tmp");
        let origin = tmp.path().join("origin");
        std::fs::create_dir(&origin).expect("dir");
        repository(&origin);
        let big: Vec<u8> = (0..300_000u32).flat_map(|i| (i % 251).to_le_bytes()).collect();
        std::fs::write(origin.join("run.sh"), &big[..200_000]).expect("write");
        std::fs::write(origin.join("bin/copy.bin"), vec![7u8; 100_000]).expect("write");
        std::fs::write(origin.join("converted.txt"), "x\n".repeat(60_000)).expect("write");
        std::fs::write(origin.join(".gitattributes"), "*.txt text\n").expect("write");
        git(&origin, &["add", "-A"]);
        git(&origin, &["update-index", "--chmod=+x", "run.sh"]);
        git(&origin, &["commit", "-q", "-m", "big ones"]);

        let url = format!("file://{}", origin.display());
        let ours = tmp.path().join("ours");
        let cloned = clone_with_threshold(&url, &ours, None, &mut |_| {}, 50_000).expect("cloned");
        assert_eq!(cloned.branch.as_deref(), Some("main"));
        assert_eq!(cloned.files, 6);
        let theirs = tmp.path().join("theirs");
        git(tmp.path(), &["clone", "-q", &url, theirs.to_str().expect("utf8")]);
        for args in [
            &["rev-parse", "HEAD"][..],
            &["symbolic-ref", "HEAD"],
            &["ls-files", "--stage"],
            &["for-each-ref", "--format=%(refname) %(objectname)"],
            &["config", "--get", "remote.origin.url"],
        ] {
            assert_eq!(git(&ours, args), git(&theirs, args), "git {args:?}");
        }
        assert_eq!(git(&ours, &["status", "--porcelain"]), b"");
        git(&ours, &["fsck", "--strict"]);
        let diff = std::process::Command::new("diff")
            .args(["-r", "-x", ".git"])
            .arg(&ours)
            .arg(&theirs)
            .output()
            .expect("diff");
        assert!(diff.status.success(), "{}", String::from_utf8_lossy(&diff.stdout));
        let mode = std::fs::metadata(ours.join("run.sh"))
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o111, 0o111, "{mode:o}");
        // gix's own fetch found everything present and received no second pack.
        let packs = std::fs::read_dir(ours.join(".git/objects/pack")).expect("read").count();
        assert_eq!(packs, 2, "one pack and its index");
    }

    #[test]
    fn a_clone_of_an_empty_repository_has_no_pack() {
        let tmp = tempfile::tempdir().expect("tmp");
        let origin = tmp.path().join("origin");
        std::fs::create_dir(&origin).expect("dir");
        git(&origin, &["init", "-q", "-b", "main"]);
        let ours = tmp.path().join("ours");
        let cloned = clone(&format!("file://{}", origin.display()), &ours, None, &mut |_| {}).expect("cloned");
        assert_eq!(cloned.head, None);
        assert_eq!(
            std::fs::read_dir(ours.join(".git/objects/pack")).expect("read").count(),
            0
        );
    }
}
