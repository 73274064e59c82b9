//! Clone over smart HTTP and check out the default branch, isolated from ambient git config.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use gix::bstr::BStr;
use gix::protocol::fetch::RefMap;
use gix::protocol::handshake::Ref;
use gix::protocol::transport::client::TransportWithoutIO as _;
use gix::refs::transaction::{Change, LogChange, PreviousValue, RefEdit, RefLog};
use gix::refs::{FullName, Target};

use crate::credentials::{CredentialSource, authenticate_fn};

mod pack;

pub use pack::BIG_OBJECT_THRESHOLD;
use pack::BigBlob;

/// What a clone produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cloned {
    pub dir: PathBuf,
    /// The branch `HEAD` is on (`main`), born or not; `None` when `HEAD` is detached.
    pub branch: Option<String>,
    /// The commit checked out; `None` when there is none (an empty repository, or one with only tags).
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

/// The remote's name in the clone, as `git clone` names it.
const REMOTE: &str = "origin";

/// Clone `url` into `dir` (created; must be absent or empty) and check out the remote's default branch.
///
/// No system, user or environment config is read: no `url.*.insteadOf` can send the token elsewhere, no
/// `http.*` setting can add a header or proxy, no credential helper is asked. The clone's own config holds
/// only `remote.origin` (the URL without credentials) and the branch.
///
/// One connection, as `git clone` makes: its handshake and `ls-refs` name the refs, the pack is received,
/// and the refs, `HEAD`, config and work tree are written from what that connection listed. On failure,
/// nothing is left in `dir` (created, or emptied again if it existed).
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
    let existed = dir.exists();
    if existed && !std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_none()) {
        return Err(CloneError::NotEmpty(dir.to_owned()));
    }
    crate::ensure_tls_provider();
    progress(&format!("Cloning into '{}'...", dir.display()));
    clone_into(url, dir, credentials, threshold).map_err(|e| {
        remove_partial_clone(dir, existed);
        CloneError::Failed {
            url: url.to_owned(),
            message: format!("{e:#}"),
        }
    })
}

/// Undo a clone that failed, as `git clone` does: an existing (empty) directory is kept, emptied again.
fn remove_partial_clone(dir: &Path, existed: bool) {
    if !existed {
        std::fs::remove_dir_all(dir).ok();
        return;
    }
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            std::fs::remove_dir_all(path).ok();
        } else {
            std::fs::remove_file(path).ok();
        }
    }
}

fn clone_into(
    url: &str,
    dir: &Path,
    credentials: Option<Box<dyn CredentialSource + Send>>,
    threshold: u64,
) -> gix::Result<Cloned> {
    let mut remote_url = gix::url::parse(BStr::new(url)).map_err(gix::Error::from_error)?;
    // A relative `file://` path is made absolute, so that the clone's `remote.origin.url` still finds it.
    let cwd = std::env::current_dir().map_err(gix::Error::from_error)?;
    remote_url.canonicalize(&cwd).map_err(gix::Error::from_error)?;
    gix::create::into(
        dir,
        gix::create::Kind::WithWorktree,
        gix::create::Options {
            destination_must_be_empty: Some(true),
            ..Default::default()
        },
    )?;
    let mut repo = gix::open_opts(dir, gix::open::Options::isolated())?;
    // The reflogs' identity: no config or environment names one here (gix's clone did the same).
    repo.committer_or_set_generic_fallback()?;

    let interrupt = AtomicBool::new(false);
    let (ref_map, received) = {
        let source = credentials.map(RefCell::new);
        let mut configure = |transport: &mut pack::BoxedTransport| match &source {
            Some(source) => set_identity(&mut **source.borrow_mut(), transport),
            None => Ok(()),
        };
        let mut no_credentials = |_| Ok(None);
        let mut with_credentials = source.as_ref().map(|source| {
            move |action| {
                let mut source = source.borrow_mut();
                authenticate_fn(&mut **source, true)(action)
            }
        });
        let authenticate: &mut pack::AuthenticateFn<'_> = match &mut with_credentials {
            Some(f) => f,
            None => &mut no_credentials,
        };
        pack::fetch(&repo, &remote_url, &mut configure, authenticate, threshold, &interrupt)?
    };

    // Written to the config and the reflogs: never a username or password that came in the URL.
    let mut public_url = remote_url;
    public_url.set_user(None);
    public_url.set_password(None);
    let public_url = public_url.to_bstring();
    let head = Head::of_remote(&ref_map.remote_refs)?;
    let message = format!("clone: from {public_url}");
    write_refs(&repo, &ref_map, &head, message.as_str().into())?;
    write_config(&repo, public_url.as_ref(), &head)?;
    let files = match head.commit() {
        Some(_) => checkout_streaming(&repo, &received.big, &interrupt)?.files_updated,
        None => 0,
    };
    let head = repo.head()?;
    Ok(Cloned {
        dir: dir.to_owned(),
        branch: head.referent_name().map(|n| n.shorten().to_string()),
        head: head.id().map(gix::Id::detach),
        files,
    })
}

/// The first credentials go with the first request, as git sends them once it has them.
fn set_identity(source: &mut dyn CredentialSource, transport: &mut pack::BoxedTransport) -> gix::Result<()> {
    let first = source
        .get(false)
        .map_err(|e| gix::Error::from_error(std::io::Error::other(e)))?;
    transport
        .set_identity(first.to_account())
        .map_err(gix::Error::from_error)
}

/// Where the clone's `HEAD` goes, decided from the remote's `HEAD` as `git clone` decides it.
#[derive(Debug, PartialEq, Eq)]
enum Head {
    /// On `name`, at `commit`; `None` when the branch is unborn: the remote is empty, or its `HEAD` names a
    /// branch it does not have (a remote with only tags), or it does not say where its `HEAD` is.
    Branch {
        name: FullName,
        commit: Option<gix::ObjectId>,
    },
    /// The remote's `HEAD` is detached at a commit no branch points at.
    Detached(gix::ObjectId),
}

impl Head {
    fn of_remote(refs: &[Ref]) -> gix::Result<Self> {
        let branch = |name: &BStr, commit: Option<gix::ObjectId>| -> gix::Result<Self> {
            let name = FullName::try_from(name.to_owned()).map_err(|e| {
                gix::Error::from_error(std::io::Error::other(format!(
                    "the remote's HEAD names {name:?}, which is not a valid branch name: {e}"
                )))
            })?;
            Ok(Head::Branch { name, commit })
        };
        let at = |name: &BStr| {
            refs.iter().find_map(|r| match r.unpack() {
                (n, id, _) if n == name => id.map(ToOwned::to_owned),
                _ => None,
            })
        };
        let is_branch = |name: &BStr| name.starts_with(b"refs/heads/");
        match refs.iter().find(|r| r.unpack().0 == "HEAD") {
            Some(Ref::Symbolic { target, object, .. }) if is_branch(target.as_ref()) => {
                branch(target.as_ref(), Some(at(target.as_ref()).unwrap_or(*object)))
            }
            Some(Ref::Unborn { target, .. }) if is_branch(target.as_ref()) => branch(target.as_ref(), None),
            Some(Ref::Symbolic { object: commit, .. } | Ref::Direct { object: commit, .. }) => {
                // Detached (or on something that is not a branch): git's guess, the branch at the same commit,
                // `master` first (the default name without `init.defaultBranch`, which is never read here),
                // then the first by name.
                let at_commit =
                    |r: &&Ref| matches!(r.unpack(), (name, Some(id), _) if is_branch(name) && id == commit.as_ref());
                let guess = refs
                    .iter()
                    .filter(at_commit)
                    .map(|r| r.unpack().0)
                    .min_by_key(|name| (*name != "refs/heads/master", *name));
                match guess {
                    Some(name) => branch(name, Some(*commit)),
                    None => Ok(Head::Detached(*commit)),
                }
            }
            Some(Ref::Peeled { object, .. }) => Ok(Head::Detached(*object)),
            // No `HEAD`, or one on something that is not a branch and unborn: gix's default branch, as
            // `git clone` keeps its own.
            Some(Ref::Unborn { .. }) | None => branch("refs/heads/main".into(), None),
        }
    }

    fn commit(&self) -> Option<gix::ObjectId> {
        match self {
            Head::Branch { commit, .. } => *commit,
            Head::Detached(commit) => Some(*commit),
        }
    }
}

/// The refs `git clone` writes: every branch as `refs/remotes/origin/*` and every tag as itself, into
/// `packed-refs` only and with no reflog; then `refs/heads/<default>`, `HEAD` and `refs/remotes/origin/HEAD`,
/// loose, each with a reflog entry `message` (`clone: from <url>`).
fn write_refs(repo: &gix::Repository, ref_map: &RefMap, head: &Head, message: &BStr) -> gix::Result<()> {
    let update = |name: FullName, new: Target, expected: PreviousValue| RefEdit {
        change: Change::Update {
            log: LogChange {
                mode: RefLog::AndReference,
                force_create_reflog: false,
                message: message.to_owned(),
            },
            expected,
            new,
        },
        name,
        deref: false,
    };
    let invalid = |name: &BStr, e: gix::refs::name::Error| {
        gix::Error::from_error(std::io::Error::other(format!(
            "the remote lists {name:?}, which is not a valid ref name: {e}"
        )))
    };

    let mut names = HashSet::new();
    let mut packed = Vec::new();
    for mapping in &ref_map.mappings {
        let (Some(local), Some(id)) = (&mapping.local, mapping.remote.as_id()) else {
            continue;
        };
        if names.insert(local.clone()) {
            let name = FullName::try_from(local.clone()).map_err(|e| invalid(local.as_ref(), e))?;
            packed.push(update(name, Target::Object(id.to_owned()), PreviousValue::MustNotExist));
        }
    }
    if !packed.is_empty() {
        // A copy of the ref store that writes no reflog: git clone logs none of these either.
        let mut refs = repo.refs.clone();
        refs.write_reflog = gix::refs::store::WriteReflog::Disable;
        refs.transaction()
            .packed_refs(
                gix::refs::file::transaction::PackedRefs::DeletionsAndNonSymbolicUpdatesRemoveLooseSourceReference(
                    Box::new(&repo.objects),
                ),
            )
            .prepare(
                packed,
                gix::lock::acquire::Fail::Immediately,
                gix::lock::acquire::Fail::Immediately,
            )?
            .commit(None)?;
    }

    let head_name = || FullName::try_from("HEAD").expect("a valid ref name");
    match head {
        Head::Branch {
            name,
            commit: Some(commit),
        } => {
            repo.edit_reference(update(head_name(), Target::Symbolic(name.clone()), PreviousValue::Any))?;
            // Through HEAD, as git creates the branch: one reflog entry for HEAD and one for the branch.
            let mut edits =
                vec![update(head_name(), Target::Object(*commit), PreviousValue::MustNotExist).with_deref(true)];
            let tracking = ref_map
                .mappings
                .iter()
                .find(|m| m.remote.as_name() == Some(name.as_bstr()))
                .and_then(|m| m.local.as_ref());
            if let Some(tracking) = tracking {
                let origin_head = FullName::try_from(format!("refs/remotes/{REMOTE}/HEAD")).expect("a valid ref name");
                let tracking = FullName::try_from(tracking.clone()).map_err(|e| invalid(tracking.as_ref(), e))?;
                // Expecting the commit (if the ref existed) is how gix-ref logs a new symbolic ref's target.
                edits.push(update(
                    origin_head,
                    Target::Symbolic(tracking),
                    PreviousValue::ExistingMustMatch(Target::Object(*commit)),
                ));
            }
            repo.edit_references(edits)?;
        }
        Head::Branch { name, commit: None } => {
            repo.edit_reference(update(head_name(), Target::Symbolic(name.clone()), PreviousValue::Any))?;
        }
        Head::Detached(commit) => {
            repo.edit_reference(update(head_name(), Target::Object(*commit), PreviousValue::Any))?;
        }
    }
    Ok(())
}

/// `git clone`'s additions to `.git/config`: the remote, and the branch `HEAD` is on (born or not).
fn write_config(repo: &gix::Repository, url: &BStr, head: &Head) -> gix::Result<()> {
    let path = repo.git_dir().join("config");
    let mut config = gix::config::File::from_path_no_includes(path.clone(), gix::config::Source::Local)?;
    config
        .new_section("remote", REMOTE)?
        .push("url", url)?
        .push("fetch", format!("+refs/heads/*:refs/remotes/{REMOTE}/*").as_str())?;
    if let Head::Branch { name, .. } = head {
        config
            .new_section("branch", name.shorten())?
            .push("remote", REMOTE)?
            .push("merge", name.as_bstr())?;
    }
    let mut file = gix::lock::File::acquire_to_update_resource(&path, gix::lock::acquire::Fail::Immediately, None, 0)?;
    config.write_to(&mut file).map_err(gix::Error::from_error)?;
    file.commit().map_err(|e| gix::Error::from_error(e.error))?;
    Ok(())
}

/// gix's checkout of `HEAD` into the new work tree, and its index written (`PrepareCheckout::main_worktree`),
/// except that the blobs in `big` whose paths need no conversion are handed to gix as empty and then streamed
/// from the pack into their files, whose stat the index then records. With `big` empty, that is gix's checkout.
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
    let mut streamed: HashSet<gix::ObjectId> = HashSet::new();
    if !big.is_empty() {
        let mut attributes =
            repo.attributes_only(&index, gix::worktree::stack::state::attributes::Source::IdMapping)?;
        let mut matches =
            attributes.selected_attribute_matches(["text", "eol", "crlf", "ident", "filter", "working-tree-encoding"]);
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
    }

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

    use super::pack::tests::{git, git_output, repository};
    use super::*;

    /// What git says in `dir`, exit status included: some of these fail on a detached or unborn `HEAD`.
    fn says(dir: &Path, args: &[&str]) -> (bool, String) {
        let output = git_output(dir, args);
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
        )
    }

    /// Every reflog under `.git/logs`, each entry as its old and new id and its message (the identity and
    /// time are the cloner's own).
    fn reflogs(dir: &Path) -> Vec<(PathBuf, Vec<String>)> {
        let root = dir.join(".git/logs");
        let mut found = Vec::new();
        let mut stack = vec![root.clone()];
        while let Some(path) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&path) else {
                continue;
            };
            for entry in entries {
                let path = entry.expect("entry").path();
                if path.is_dir() {
                    stack.push(path);
                    continue;
                }
                let lines = std::fs::read_to_string(&path)
                    .expect("read")
                    .lines()
                    .map(|line| {
                        let (who, message) = line.split_once('\t').expect("a tab before the message");
                        let ids: Vec<&str> = who.split(' ').take(2).collect();
                        format!("{} {message}", ids.join(" "))
                    })
                    .collect();
                found.push((path.strip_prefix(&root).expect("under logs").to_owned(), lines));
            }
        }
        found.sort();
        found
    }

    /// Clone `origin` with mint (streaming blobs above `threshold`) and with git, side by side in `tmp`,
    /// and check that mint leaves what git leaves: every ref (tags peeled, `origin/HEAD` a symref), `HEAD`,
    /// the config git writes, the reflogs, the index and the work tree.
    fn clone_equals_gits(tmp: &Path, origin: &Path, name: &str, threshold: u64) -> Cloned {
        let url = format!("file://{}", origin.display());
        let ours = tmp.join(format!("{name}-ours"));
        let cloned = clone_with_threshold(&url, &ours, None, &mut |_| {}, threshold).expect("cloned");
        let theirs = tmp.join(format!("{name}-theirs"));
        git(tmp, &["clone", "-q", &url, theirs.to_str().expect("utf8")]);
        for args in [
            &[
                "for-each-ref",
                "--format=%(refname) %(objectname) %(*objectname) %(symref)",
            ][..],
            &["show-ref", "--head", "--dereference"],
            &["symbolic-ref", "-q", "HEAD"],
            &["rev-parse", "-q", "--verify", "HEAD"],
            &["config", "--local", "--get-regexp", r"^(remote|branch)\."],
            &["ls-files", "--stage"],
            &["status", "--porcelain"],
        ] {
            assert_eq!(says(&ours, args), says(&theirs, args), "{name}: git {args:?}");
        }
        assert_eq!(reflogs(&ours), reflogs(&theirs), "{name}: the reflogs");
        git(&ours, &["fsck", "--strict"]);
        let diff = std::process::Command::new("diff")
            .args(["-r", "--no-dereference", "-x", ".git"])
            .arg(&ours)
            .arg(&theirs)
            .output()
            .expect("diff");
        assert!(
            diff.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&diff.stdout)
        );
        cloned
    }

    fn origin(tmp: &Path) -> PathBuf {
        let origin = tmp.join("origin");
        std::fs::create_dir(&origin).expect("dir");
        origin
    }

    /// What `git clone` does, with blobs above a lowered threshold streamed: an executable one, one at two
    /// paths, and one whose `text` attribute leaves it to gix.
    #[test]
    fn a_clone_with_blobs_above_the_threshold_equals_gits() {
        let tmp = tempfile::tempdir().expect("tmp");
        let origin = origin(tmp.path());
        repository(&origin);
        let big: Vec<u8> = (0..300_000u32).flat_map(|i| (i % 251).to_le_bytes()).collect();
        std::fs::write(origin.join("run.sh"), &big[..200_000]).expect("write");
        std::fs::write(origin.join("bin/copy.bin"), vec![7u8; 100_000]).expect("write");
        std::fs::write(origin.join("converted.txt"), "x\n".repeat(60_000)).expect("write");
        std::fs::write(origin.join(".gitattributes"), "*.txt text\n").expect("write");
        git(&origin, &["add", "-A"]);
        git(&origin, &["update-index", "--chmod=+x", "run.sh"]);
        git(&origin, &["commit", "-q", "-m", "big ones"]);

        let cloned = clone_equals_gits(tmp.path(), &origin, "big", 50_000);
        assert_eq!(cloned.branch.as_deref(), Some("main"));
        assert_eq!(cloned.files, 6);
        let ours = tmp.path().join("big-ours");
        let mode = std::fs::metadata(ours.join("run.sh"))
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o111, 0o111, "{mode:o}");
        // One connection, one pack.
        let packs = std::fs::read_dir(ours.join(".git/objects/pack")).expect("read").count();
        assert_eq!(packs, 2, "one pack and its index");
    }

    #[test]
    fn lightweight_and_annotated_tags_are_gits() {
        let tmp = tempfile::tempdir().expect("tmp");
        let origin = origin(tmp.path());
        // `v1` is annotated, on the second commit.
        repository(&origin);
        git(&origin, &["tag", "light", "HEAD~1"]);
        git(&origin, &["tag", "-a", "-m", "a tag of a tag", "nested", "v1"]);
        std::os::unix::fs::symlink("text.txt", origin.join("link")).expect("symlink");
        git(&origin, &["add", "-A"]);
        git(&origin, &["commit", "-q", "-m", "a link"]);
        let cloned = clone_equals_gits(tmp.path(), &origin, "tags", BIG_OBJECT_THRESHOLD);
        assert_eq!(cloned.branch.as_deref(), Some("main"));
        let head = git(&origin, &["rev-parse", "HEAD"]);
        assert_eq!(cloned.head.map(|id| format!("{id}\n").into_bytes()), Some(head));
        // gix's count: the link is made after the files, and not counted.
        assert_eq!(cloned.files, 2);
    }

    #[test]
    fn several_branches_and_a_default_other_than_main_are_gits() {
        let tmp = tempfile::tempdir().expect("tmp");
        let origin = origin(tmp.path());
        git(&origin, &["init", "-q", "-b", "trunk"]);
        std::fs::write(origin.join("a.txt"), "a\n").expect("write");
        git(&origin, &["add", "-A"]);
        git(&origin, &["commit", "-q", "-m", "one"]);
        git(&origin, &["branch", "feature/old"]);
        std::fs::write(origin.join("b.txt"), "b\n").expect("write");
        git(&origin, &["add", "-A"]);
        git(&origin, &["commit", "-q", "-m", "two"]);
        git(&origin, &["branch", "zeta"]);
        git(&origin, &["branch", "alpha", "HEAD~1"]);
        let cloned = clone_equals_gits(tmp.path(), &origin, "branches", BIG_OBJECT_THRESHOLD);
        assert_eq!(cloned.branch.as_deref(), Some("trunk"));
        assert_eq!(cloned.files, 2);
    }

    #[test]
    fn a_remote_with_only_tags_leaves_head_unborn_as_git_does() {
        let tmp = tempfile::tempdir().expect("tmp");
        let origin = origin(tmp.path());
        repository(&origin);
        git(&origin, &["tag", "light", "HEAD~1"]);
        git(&origin, &["symbolic-ref", "HEAD", "refs/heads/gone"]);
        git(&origin, &["update-ref", "-d", "refs/heads/main"]);
        let cloned = clone_equals_gits(tmp.path(), &origin, "tags-only", BIG_OBJECT_THRESHOLD);
        assert_eq!(cloned.branch.as_deref(), Some("gone"));
        assert_eq!((cloned.head, cloned.files), (None, 0));
        let ours = tmp.path().join("tags-only-ours");
        assert_eq!(std::fs::read_dir(&ours).expect("read").count(), 1, "only .git");
    }

    #[test]
    fn a_detached_head_is_on_gits_guess_of_its_branch_or_stays_detached() {
        let tmp = tempfile::tempdir().expect("tmp");
        let origin = origin(tmp.path());
        repository(&origin);
        // Two branches at the detached commit: git takes the first by name (no `master` among them).
        git(&origin, &["branch", "zz", "HEAD~1"]);
        git(&origin, &["branch", "aa", "HEAD~1"]);
        git(&origin, &["checkout", "-q", "--detach", "HEAD~1"]);
        let cloned = clone_equals_gits(tmp.path(), &origin, "guessed", BIG_OBJECT_THRESHOLD);
        assert_eq!(cloned.branch.as_deref(), Some("aa"));

        // At a commit no branch has.
        std::fs::write(origin.join("detached.txt"), "detached\n").expect("write");
        git(&origin, &["add", "-A"]);
        git(&origin, &["commit", "-q", "-m", "detached"]);
        let cloned = clone_equals_gits(tmp.path(), &origin, "detached", BIG_OBJECT_THRESHOLD);
        assert_eq!(cloned.branch, None);
        let head = git(&origin, &["rev-parse", "HEAD"]);
        assert_eq!(cloned.head.map(|id| format!("{id}\n").into_bytes()), Some(head));
        assert_eq!(cloned.files, 3);
    }

    #[test]
    fn a_clone_of_an_empty_repository_is_on_the_remotes_unborn_branch_with_no_pack() {
        let tmp = tempfile::tempdir().expect("tmp");
        let origin = origin(tmp.path());
        git(&origin, &["init", "-q", "-b", "trunk"]);
        let cloned = clone_equals_gits(tmp.path(), &origin, "empty", BIG_OBJECT_THRESHOLD);
        assert_eq!(cloned.branch.as_deref(), Some("trunk"));
        assert_eq!((cloned.head, cloned.files), (None, 0));
        let ours = tmp.path().join("empty-ours");
        assert_eq!(
            std::fs::read_dir(ours.join(".git/objects/pack")).expect("read").count(),
            0
        );
    }

    #[test]
    fn a_failed_clone_leaves_nothing_behind() {
        let tmp = tempfile::tempdir().expect("tmp");
        let url = format!("file://{}", tmp.path().join("no-such-repository").display());
        let new = tmp.path().join("new");
        let err = clone(&url, &new, None, &mut |_| {}).expect_err("no repository there");
        assert!(matches!(err, CloneError::Failed { .. }), "{err}");
        assert!(!new.exists(), "the directory it created is gone");

        let existing = tmp.path().join("existing");
        std::fs::create_dir(&existing).expect("dir");
        clone(&url, &existing, None, &mut |_| {}).expect_err("no repository there");
        assert_eq!(
            std::fs::read_dir(&existing).expect("kept").count(),
            0,
            "the directory that was there is kept, empty"
        );
    }
}
