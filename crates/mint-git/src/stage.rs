//! Stage every change of a work tree as `git add -A` does, write the index, and write the tree.
//!
//! Tracked paths are compared by `stat` first (as git does) and hashed only when they may have changed:
//! modified, deleted, type-changed (file ↔ symlink), executable bit. Untracked paths come from gix's
//! directory walk, which honours `.gitignore`, `.git/info/exclude` and `core.excludesFile`. A path with
//! unmerged index entries stops everything: nothing is staged.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::AtomicBool;

use bstr::{BStr, BString, ByteSlice};
use gix::ObjectId;
use gix::index::entry::{Flags, Mode, Stat};

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

    let trust_exec_bit = repo.config_snapshot().boolean("core.fileMode").unwrap_or(true);
    let stat_options = gix::index::entry::stat::Options {
        trust_ctime: repo.config_snapshot().boolean("core.trustCTime").unwrap_or(true),
        check_stat: true,
        use_nsec: false,
        use_stdev: false,
    };
    let index_time = index.timestamp();

    // Tracked paths: keep what stat says is unchanged, rehash the rest, drop what is gone.
    let mut removed = vec![false; index.entries().len()];
    {
        let (entries, paths) = index.entries_mut_and_pathbacking();
        for (i, entry) in entries.iter_mut().enumerate() {
            if entry.mode == Mode::COMMIT || entry.flags.contains(Flags::SKIP_WORKTREE) {
                continue; // submodules and sparse entries stay as they are
            }
            let rela = entry.path_in(paths);
            let path = workdir.join(to_path(rela)?);
            match observe(&path, entry.mode, trust_exec_bit)? {
                None => removed[i] = true,
                Some((mode, stat)) => {
                    let unchanged = mode == entry.mode
                        && entry.stat.matches(&stat, stat_options)
                        && !entry.stat.is_racy(index_time, stat_options);
                    if !unchanged {
                        entry.id = write_blob(repo, &path, mode, rela)?;
                        entry.mode = mode;
                        entry.stat = stat;
                        entry.flags.remove(Flags::INTENT_TO_ADD);
                    }
                }
            }
        }
    }
    index.remove_entries(|i, _, _| removed[i]);

    // Untracked paths that are not ignored.
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
    repo.dirwalk(&index, None::<&BStr>, &AtomicBool::new(false), options, &mut collect)
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
                let Some((mode, stat)) = observe(&path, Mode::FILE, trust_exec_bit)? else {
                    continue; // vanished while we looked
                };
                let id = write_blob(repo, &path, mode, entry.rela_path.as_bstr())?;
                index.dangerously_push_entry(stat, id, Flags::empty(), mode, entry.rela_path.as_bstr());
                added += 1;
            }
            Some(gix::dir::entry::Kind::Repository) => skipped.push(entry.rela_path),
            _ => {}
        }
    }
    if added > 0 {
        index.sort_entries();
    }
    // The cached trees describe the old index.
    index.remove_tree();

    let tree = write_tree(repo, &index)?;
    index.write(gix::index::write::Options::default()).map_err(git)?;
    Ok(Staged {
        tree,
        entries: index.entries().len(),
        skipped,
    })
}

fn to_path(rela: &BStr) -> Result<std::borrow::Cow<'_, Path>, StageError> {
    gix::path::from_bstr(rela).map_err(|e| StageError::Read {
        path: rela.to_str_lossy().into_owned(),
        message: e.to_string(),
    })
}

/// The mode and stat of a work-tree path as git would stage it, or `None` if there is nothing to stage there.
fn observe(path: &Path, previous: Mode, trust_exec_bit: bool) -> Result<Option<(Mode, Stat)>, StageError> {
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
    let mode = if metadata.is_symlink() {
        Mode::SYMLINK
    } else if metadata.is_file() {
        let executable = if trust_exec_bit {
            metadata.is_executable()
        } else {
            previous == Mode::FILE_EXECUTABLE
        };
        if executable { Mode::FILE_EXECUTABLE } else { Mode::FILE }
    } else {
        // A directory where a file was (its contents are untracked now), or a socket, fifo, device.
        return Ok(None);
    };
    let stat = Stat::from_fs(&metadata).map_err(|e| StageError::Read {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    Ok(Some((mode, stat)))
}

fn write_blob(repo: &gix::Repository, path: &Path, mode: Mode, rela: &BStr) -> Result<ObjectId, StageError> {
    let read_error = |e: std::io::Error| StageError::Read {
        path: rela.to_str_lossy().into_owned(),
        message: e.to_string(),
    };
    let data = if mode == Mode::SYMLINK {
        let target = std::fs::read_link(path).map_err(read_error)?;
        gix::path::into_bstr(target).map_err(git)?.into_owned().into()
    } else {
        std::fs::read(path).map_err(read_error)?
    };
    Ok(repo.write_blob(&data).map_err(git)?.detach())
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
