//! Stage every change of a work tree as `git add -A` does, write the index, and write the tree.
//!
//! Tracked paths are compared by `stat` first (as git does) and hashed only when they may have changed:
//! modified, deleted, type-changed (file ↔ symlink), executable bit. A tracked path under a directory that
//! became a symlink (or a file) is deleted, and the symlink staged, as git does: nothing is read through a
//! link. Untracked paths come from gix's directory walk, which honours `.gitignore`, `.git/info/exclude` and
//! `core.excludesFile`. Every blob goes through gix's filter pipeline (`.gitattributes` `text`/`eol`/`ident`,
//! `core.autocrlf`, driver filters such as Git LFS's `filter.lfs.process`), streamed into the object
//! database when no filter changes it. Submodules are staged at their checked-out HEAD; `core.symlinks =
//! false` keeps a symlink a symlink. Every path is validated as git validates it (`.git` in any case and
//! its NTFS aliases, `..`, a symlinked `.gitmodules`): one invalid path refuses the whole staging.
//! A path with unmerged index entries stops everything: nothing is staged.

use std::collections::{BTreeSet, HashMap};
use std::io::Read;
use std::path::Path;
use std::sync::atomic::AtomicBool;

use bstr::{BStr, BString, ByteSlice};
use gix::ObjectId;
use gix::index::entry::{Flags, Mode, Stat};

mod process_filter;

/// What staging found.
#[derive(Debug)]
pub struct Staged {
    /// The tree of the staged index (`git write-tree`).
    pub tree: ObjectId,
    /// The index, written to disk already.
    pub entries: usize,
    /// Paths skipped as `git add -A` would with a warning (embedded repositories).
    pub skipped: Vec<BString>,
}

#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error("the repository has no work tree")]
    Bare,
    #[error(
        "unresolved merge conflicts in {}: resolve them (edit, then `git add`) before publishing",
        .0.iter().map(|p| p.to_str_lossy().into_owned()).collect::<Vec<_>>().join(", ")
    )]
    Conflicts(Vec<BString>),
    #[error("reading {path}: {message}")]
    Read { path: String, message: String },
    #[error(
        "invalid path {path:?}: {reason}; git refuses it too (`git add` says \"invalid path\"): rename or remove it, nothing was staged"
    )]
    InvalidPath { path: String, reason: String },
    #[error("the {filter} filter failed on {path}: {message}")]
    Filter {
        path: String,
        filter: &'static str,
        message: String,
    },
    #[error("{0}")]
    Git(String),
}

fn git(e: impl std::fmt::Display) -> StageError {
    StageError::Git(e.to_string())
}

/// Stage everything in `repo`'s work tree and return the resulting tree id.
pub fn stage_all(repo: &gix::Repository) -> Result<Staged, StageError> {
    let workdir = repo.workdir().ok_or(StageError::Bare)?.to_owned();
    let mut index = if repo.index_path().exists() {
        repo.open_index().map_err(git)?
    } else {
        gix::index::File::from_state(gix::index::State::new(repo.object_hash()), repo.index_path())
    };

    let conflicts: BTreeSet<BString> = index
        .entries()
        .iter()
        .filter(|e| e.stage_raw() != 0)
        .map(|e| e.path(&index).to_owned())
        .collect();
    if !conflicts.is_empty() {
        return Err(StageError::Conflicts(conflicts.into_iter().collect()));
    }

    let settings = Settings::read(repo);
    let (mut filters, original_index) = repo.filter_pipeline(None).map_err(git)?;
    let mut processes = process_filter::ProcessFilters::new(repo, &original_index).map_err(git)?;
    let mut writer = BlobWriter {
        repo,
        filters: &mut filters,
        processes: processes.as_mut(),
        index: &original_index,
    };
    restage_tracked(&mut index, &workdir, &settings, &mut writer)?;
    let skipped = add_untracked(repo, &mut index, &workdir, &settings, &mut writer)?;
    // The cached trees describe the old index.
    index.remove_tree();
    for entry in index.entries() {
        validate_path(entry.path(&index), entry.mode, settings.validate)?;
    }

    let tree = write_tree(repo, &index)?;
    index.write(gix::index::write::Options::default()).map_err(git)?;
    Ok(Staged {
        tree,
        entries: index.entries().len(),
        skipped,
    })
}

/// Tracked paths: keep what stat says is unchanged, rehash the rest, drop what is gone.
fn restage_tracked(
    index: &mut gix::index::File,
    workdir: &Path,
    settings: &Settings,
    writer: &mut BlobWriter<'_, '_>,
) -> Result<(), StageError> {
    let index_time = index.timestamp();
    let mut dirs = Directories::new(workdir);
    let mut removed = vec![false; index.entries().len()];
    let (entries, paths) = index.entries_mut_and_pathbacking();
    for (i, entry) in entries.iter_mut().enumerate() {
        if entry.flags.contains(Flags::SKIP_WORKTREE) {
            continue; // sparse entries (and sparse directories) stay as they are
        }
        let rela = entry.path_in(paths);
        if !dirs.leading_are_directories(rela)? {
            removed[i] = true; // a leading directory is a symlink or a file now: git deletes the entry
            continue;
        }
        let path = workdir.join(to_path(rela)?);
        if entry.mode == Mode::COMMIT {
            match submodule_head(&path)? {
                Submodule::Gone => removed[i] = true,
                Submodule::NotCheckedOut => {}
                Submodule::At(head) => entry.id = head,
            }
            continue;
        }
        match observe(&path, entry.mode, settings.trust_exec_bit, settings.symlinks)? {
            None => removed[i] = true,
            Some(seen) => {
                let unchanged = seen.mode == entry.mode
                    && entry.stat.matches(&seen.stat, settings.stat_options)
                    && !entry.stat.is_racy(index_time, settings.stat_options);
                if !unchanged {
                    entry.id = writer.write(&path, &seen, rela)?;
                    entry.mode = seen.mode;
                    entry.stat = seen.stat;
                    entry.flags.remove(Flags::INTENT_TO_ADD);
                }
            }
        }
    }
    index.remove_entries(|i, _, _| removed[i]);
    Ok(())
}

/// Untracked paths that are not ignored; returns the embedded repositories skipped, as `git add -A` does.
fn add_untracked(
    repo: &gix::Repository,
    index: &mut gix::index::File,
    workdir: &Path,
    settings: &Settings,
    writer: &mut BlobWriter<'_, '_>,
) -> Result<Vec<BString>, StageError> {
    let options = repo
        .dirwalk_options()
        .map_err(git)?
        .emit_untracked(gix::dir::walk::EmissionMode::Matching)
        .emit_ignored(None)
        .emit_tracked(false)
        .emit_pruned(false)
        .emit_empty_directories(false)
        .recurse_repositories(false);
    let mut collect = gix::dir::walk::delegate::Collect::default();
    repo.dirwalk(index, None::<&BStr>, &AtomicBool::new(false), options, &mut collect)
        .map_err(git)?;
    let mut skipped = Vec::new();
    let mut added = 0;
    for (entry, _) in collect.unorded_entries {
        if entry.status != gix::dir::entry::Status::Untracked
            || index.entry_by_path(entry.rela_path.as_bstr()).is_some()
        {
            continue;
        }
        let path = workdir.join(to_path(entry.rela_path.as_bstr())?);
        match entry.disk_kind {
            Some(gix::dir::entry::Kind::File | gix::dir::entry::Kind::Symlink) => {
                let Some(seen) = observe(&path, Mode::FILE, settings.trust_exec_bit, settings.symlinks)? else {
                    continue; // vanished while we looked
                };
                let id = writer.write(&path, &seen, entry.rela_path.as_bstr())?;
                index.dangerously_push_entry(seen.stat, id, Flags::empty(), seen.mode, entry.rela_path.as_bstr());
                added += 1;
            }
            Some(gix::dir::entry::Kind::Repository) => skipped.push(entry.rela_path),
            _ => {}
        }
    }
    if added > 0 {
        index.sort_entries();
    }
    Ok(skipped)
}

fn to_path(rela: &BStr) -> Result<std::borrow::Cow<'_, Path>, StageError> {
    gix::path::from_bstr(rela).map_err(|e| StageError::Read {
        path: rela.to_str_lossy().into_owned(),
        message: e.to_string(),
    })
}

/// The configuration `git add` reads.
struct Settings {
    trust_exec_bit: bool,
    symlinks: bool,
    stat_options: gix::index::entry::stat::Options,
    validate: gix::validate::path::component::Options,
}

impl Settings {
    fn read(repo: &gix::Repository) -> Self {
        let config = repo.config_snapshot();
        Self {
            trust_exec_bit: config.boolean("core.fileMode").unwrap_or(true),
            symlinks: config.boolean("core.symlinks").unwrap_or(true),
            stat_options: gix::index::entry::stat::Options {
                trust_ctime: config.boolean("core.trustCTime").unwrap_or(true),
                check_stat: true,
                use_nsec: false,
                use_stdev: false,
            },
            validate: gix::validate::path::component::Options {
                // As git on this platform: Windows device names and characters are fine here, NTFS aliases
                // of `.git` are not (`core.protectNTFS` is on by default), HFS+ ones only when asked for.
                protect_windows: false,
                protect_ntfs: config.boolean("core.protectNTFS").unwrap_or(true),
                protect_hfs: config.boolean("core.protectHFS").unwrap_or(false),
            },
        }
    }
}

/// A work-tree path as git would stage it.
struct Seen {
    mode: Mode,
    stat: Stat,
    /// The file's size on disk (what is read when no filter applies).
    size: u64,
    /// A symlink checked out as a plain file (`core.symlinks = false`): its content is the link target.
    link_as_file: bool,
}

/// The mode and stat of a work-tree path as git would stage it, or `None` if there is nothing to stage there.
fn observe(path: &Path, previous: Mode, trust_exec_bit: bool, symlinks: bool) -> Result<Option<Seen>, StageError> {
    let metadata = match gix::index::fs::Metadata::from_path_no_follow(path) {
        Ok(m) => m,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
            ) =>
        {
            return Ok(None);
        }
        Err(e) => {
            return Err(StageError::Read {
                path: path.display().to_string(),
                message: e.to_string(),
            });
        }
    };
    let mut link_as_file = false;
    let mode = if metadata.is_symlink() {
        Mode::SYMLINK
    } else if metadata.is_file() {
        if !symlinks && previous == Mode::SYMLINK {
            // git keeps a symlink a symlink where the file system cannot hold one.
            link_as_file = true;
            Mode::SYMLINK
        } else {
            let executable = if trust_exec_bit {
                metadata.is_executable()
            } else {
                previous == Mode::FILE_EXECUTABLE
            };
            if executable { Mode::FILE_EXECUTABLE } else { Mode::FILE }
        }
    } else {
        // A directory where a file was (its contents are untracked now), or a socket, fifo, device.
        return Ok(None);
    };
    let stat = Stat::from_fs(&metadata).map_err(|e| StageError::Read {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    Ok(Some(Seen {
        mode,
        stat,
        size: metadata.len(),
        link_as_file,
    }))
}

/// Validate every component of `rela` as git's `verify_path` does.
fn validate_path(rela: &BStr, mode: Mode, options: gix::validate::path::component::Options) -> Result<(), StageError> {
    let mut components = rela.split_str("/").peekable();
    while let Some(component) = components.next() {
        let leaf_mode = (components.peek().is_none() && mode == Mode::SYMLINK)
            .then_some(gix::validate::path::component::Mode::Symlink);
        gix::validate::path::component(component.as_bstr(), leaf_mode, options).map_err(|e| {
            StageError::InvalidPath {
                path: rela.to_str_lossy().into_owned(),
                reason: e.to_string(),
            }
        })?;
    }
    Ok(())
}

/// Which leading directories of tracked paths are still real directories (not symlinks, not files), each
/// looked at once.
struct Directories<'a> {
    workdir: &'a Path,
    known: HashMap<BString, bool>,
}

impl<'a> Directories<'a> {
    fn new(workdir: &'a Path) -> Self {
        Self {
            workdir,
            known: HashMap::new(),
        }
    }

    /// Whether every leading directory of `rela` is a real directory or absent (absent: the entry is simply
    /// deleted, as `observe` will find).
    fn leading_are_directories(&mut self, rela: &BStr) -> Result<bool, StageError> {
        let mut end = 0;
        while let Some(slash) = rela[end..].find_byte(b'/') {
            end += slash;
            let dir = &rela[..end];
            let ok = if let Some(ok) = self.known.get(dir) {
                *ok
            } else {
                let path = self.workdir.join(to_path(dir.as_bstr())?);
                let ok = match std::fs::symlink_metadata(&path) {
                    Ok(m) => m.is_dir(),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
                    Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => false,
                    Err(e) => {
                        return Err(StageError::Read {
                            path: path.display().to_string(),
                            message: e.to_string(),
                        });
                    }
                };
                self.known.insert(dir.into(), ok);
                ok
            };
            if !ok {
                return Ok(false);
            }
            end += 1;
        }
        Ok(true)
    }
}

enum Submodule {
    /// The directory is gone: `git add -A` deletes the gitlink.
    Gone,
    /// An empty directory or one without a repository: the gitlink stays as it is.
    NotCheckedOut,
    /// Checked out at this commit.
    At(ObjectId),
}

/// Where a submodule's work tree is, as `git add -A` stages it: its HEAD commit.
fn submodule_head(path: &Path) -> Result<Submodule, StageError> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Ok(Submodule::Gone),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
            ) =>
        {
            return Ok(Submodule::Gone);
        }
        Err(e) => {
            return Err(StageError::Read {
                path: path.display().to_string(),
                message: e.to_string(),
            });
        }
    }
    if !path.join(".git").exists() {
        return Ok(Submodule::NotCheckedOut);
    }
    let read_error = |e: gix::Error| StageError::Read {
        path: path.display().to_string(),
        message: format!("the submodule's HEAD: {e:#}"),
    };
    let repo = gix::open_opts(path, gix::open::Options::isolated()).map_err(read_error)?;
    let head = repo.head_id().map_err(read_error)?;
    Ok(Submodule::At(head.detach()))
}

/// Writes work-tree content as blobs, through the filter pipeline.
struct BlobWriter<'a, 'repo> {
    repo: &'repo gix::Repository,
    filters: &'a mut gix::filter::Pipeline<'repo>,
    /// Long-running filter drivers (Git LFS) for the paths that need nothing else: see [`process_filter`].
    processes: Option<&'a mut process_filter::ProcessFilters<'repo>>,
    /// The index as it was before staging: `text=auto` looks there for whether a file had CRLF.
    index: &'a gix::index::State,
}

impl BlobWriter<'_, '_> {
    fn write(&mut self, path: &Path, seen: &Seen, rela: &BStr) -> Result<ObjectId, StageError> {
        use gix::filter::plumbing::pipeline::convert::ToGitOutcome;
        use gix::objs::Write as _;

        let read_error = |e: std::io::Error| StageError::Read {
            path: rela.to_str_lossy().into_owned(),
            message: e.to_string(),
        };
        if seen.mode == Mode::SYMLINK {
            let target = if seen.link_as_file {
                std::fs::read(path).map_err(read_error)?
            } else {
                let target = std::fs::read_link(path).map_err(read_error)?;
                gix::path::into_bstr(target).map_err(git)?.into_owned().into()
            };
            return Ok(self.repo.write_blob(&target).map_err(git)?.detach());
        }
        let mut file = std::fs::File::open(path).map_err(read_error)?;
        if let Some(processes) = self.processes.as_deref_mut()
            && let Some(driver) = processes.driver_for(rela, seen.mode).map_err(git)?
        {
            let cleaned = processes
                .clean(&driver, rela, &mut file)
                .map_err(|message| StageError::Filter {
                    path: rela.to_str_lossy().into_owned(),
                    filter: "clean",
                    message,
                })?;
            return Ok(self.repo.write_blob(&cleaned).map_err(git)?.detach());
        }
        let outcome = self
            .filters
            .convert_to_git(file, &to_path(rela)?, self.index)
            .map_err(|e| StageError::Filter {
                path: rela.to_str_lossy().into_owned(),
                filter: "clean",
                message: format!("{e:#}"),
            })?;
        let id = match outcome {
            // No filter: streamed from the file into the object database, never whole in memory.
            ToGitOutcome::Unchanged(file) => {
                let mut exact = Exact {
                    inner: file.take(seen.size),
                    left: seen.size,
                };
                self.repo
                    .objects
                    .write_stream(gix::object::Kind::Blob, seen.size, &mut exact)
                    .map_err(|e| StageError::Read {
                        path: rela.to_str_lossy().into_owned(),
                        message: format!("{e:#}"),
                    })?
            }
            ToGitOutcome::Buffer(buf) => self.repo.write_blob(buf).map_err(git)?.detach(),
            ToGitOutcome::Process(mut output) => {
                let mut buf = Vec::new();
                output.read_to_end(&mut buf).map_err(|e| StageError::Filter {
                    path: rela.to_str_lossy().into_owned(),
                    filter: "clean",
                    message: e.to_string(),
                })?;
                self.repo.write_blob(&buf).map_err(git)?.detach()
            }
        };
        Ok(id)
    }
}

/// Reads exactly `left` bytes, or fails: a file that shrinks while it is read must not become a blob
/// whose header promises more than it holds.
struct Exact<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for Exact<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && self.left > 0 && !buf.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the file changed while it was read: run mint publish again",
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// `git write-tree`: the trees of the index's (stage 0) entries, written bottom-up.
pub fn write_tree(repo: &gix::Repository, index: &gix::index::State) -> Result<ObjectId, StageError> {
    use gix::objs::tree::{Entry, EntryKind};

    fn finish(repo: &gix::Repository, mut entries: Vec<Entry>) -> Result<ObjectId, StageError> {
        entries.sort();
        Ok(repo.write_object(gix::objs::Tree { entries }).map_err(git)?.detach())
    }

    // One frame per open directory: its name and the entries collected so far. Index order is path order,
    // so a directory's entries are contiguous.
    let mut stack: Vec<(BString, Vec<Entry>)> = vec![(BString::default(), Vec::new())];
    for entry in index.entries() {
        let path = entry.path(index);
        let mut components: Vec<&[u8]> = path.split_str("/").collect();
        let filename = components.pop().expect("split yields at least one component");
        let common = stack[1..]
            .iter()
            .zip(&components)
            .take_while(|((name, _), component)| name.as_slice() == **component)
            .count();
        while stack.len() > common + 1 {
            let (name, entries) = stack.pop().expect("more than the root");
            let oid = finish(repo, entries)?;
            stack.last_mut().expect("root").1.push(Entry {
                mode: EntryKind::Tree.into(),
                filename: name,
                oid,
            });
        }
        for component in &components[common..] {
            stack.push(((*component).into(), Vec::new()));
        }
        let kind = match entry.mode {
            Mode::FILE_EXECUTABLE => EntryKind::BlobExecutable,
            Mode::SYMLINK => EntryKind::Link,
            Mode::COMMIT => EntryKind::Commit,
            // A sparse index's directory entry stands for the tree it names.
            Mode::DIR => EntryKind::Tree,
            _ => EntryKind::Blob,
        };
        stack.last_mut().expect("root").1.push(Entry {
            mode: kind.into(),
            filename: filename.into(),
            oid: entry.id,
        });
    }
    while stack.len() > 1 {
        let (name, entries) = stack.pop().expect("more than the root");
        let oid = finish(repo, entries)?;
        stack.last_mut().expect("root").1.push(Entry {
            mode: EntryKind::Tree.into(),
            filename: name,
            oid,
        });
    }
    let (_, root) = stack.pop().expect("root");
    finish(repo, root)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(path: &str, mode: Mode) -> Result<(), StageError> {
        validate_path(
            path.into(),
            mode,
            gix::validate::path::component::Options {
                protect_windows: false,
                protect_ntfs: true,
                protect_hfs: false,
            },
        )
    }

    #[test]
    fn paths_git_refuses_are_refused_naming_the_path() {
        for bad in [
            ".git/config",
            ".GIT/hooks/post-checkout",
            "a/../b",
            "./a",
            "a//b",
            "sub/.Git",
            "sub/git~1/x",
            "sub/.git. /x",
        ] {
            let err = check(bad, Mode::FILE).expect_err(bad);
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
        let err = check(".gitmodules", Mode::SYMLINK).expect_err("a symlinked .gitmodules");
        assert!(err.to_string().contains("symlink"), "{err}");
    }

    #[test]
    fn paths_git_accepts_on_linux_are_accepted() {
        for good in [
            "a/b/c.txt",
            ".github/workflows/ci.yml",
            ".gitignore",
            ".gitmodules",
            "con/aux.txt",
            "back\\slash",
            "trailing.",
            "..a/b..",
        ] {
            check(good, Mode::FILE).unwrap_or_else(|e| panic!("{good}: {e}"));
        }
    }
}
