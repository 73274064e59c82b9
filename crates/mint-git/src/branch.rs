//! The agent's branch: create it from HEAD or continue it, and commit the staged tree to it.

use gix::ObjectId;
use gix::date::parse::TimeBuf;
use gix::refs::transaction::{Change, LogChange, PreviousValue, RefEdit, RefLog};

/// Where HEAD was when publishing started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Switched {
    /// The commit HEAD pointed at; `None` on an unborn branch (a clone of an empty repository).
    pub base: Option<ObjectId>,
    /// `true` if the branch was created now, `false` if HEAD was already on it.
    pub created: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum BranchError {
    #[error(
        "branch {branch} already exists at {existing} but HEAD is elsewhere ({head}): switch to it first (`git switch {branch}`), or publish under a new name"
    )]
    ExistsElsewhere {
        branch: String,
        existing: ObjectId,
        head: String,
    },
    #[error("{0}")]
    Git(String),
}

fn git(e: impl std::fmt::Display) -> BranchError {
    BranchError::Git(format!("{e:#}"))
}

/// Make `refs/heads/<branch>` the current branch, as `git switch -c <branch>` does (the work tree and index
/// are untouched: the new branch starts at HEAD's commit). Already on it: nothing changes.
pub fn switch_to(repo: &gix::Repository, branch: &str, who: &Identity) -> Result<Switched, BranchError> {
    let full: gix::refs::FullName = format!("refs/heads/{branch}").try_into().map_err(git)?;
    let head = repo.head().map_err(git)?;
    let base = head.id().map(gix::Id::detach);
    if head.referent_name() == Some(full.as_ref()) {
        return Ok(Switched { base, created: false });
    }
    let head_name = head
        .referent_name()
        .map_or_else(|| "a detached HEAD".to_owned(), |n| n.shorten().to_string());
    if let Some(existing) = repo.try_find_reference(full.as_ref()).map_err(git)? {
        let existing = existing.target().try_id().map(ToOwned::to_owned);
        match existing {
            Some(id) if Some(id) == base => {}
            Some(id) => {
                return Err(BranchError::ExistsElsewhere {
                    branch: branch.to_owned(),
                    existing: id,
                    head: head_name,
                });
            }
            None => return Err(git(format!("{full} is a symbolic reference"))),
        }
    }
    let mut edits = Vec::new();
    if let Some(base) = base
        && repo.try_find_reference(full.as_ref()).map_err(git)?.is_none()
    {
        edits.push(RefEdit {
            change: Change::Update {
                log: LogChange {
                    mode: RefLog::AndReference,
                    force_create_reflog: false,
                    message: format!("branch: Created from {head_name}").into(),
                },
                expected: PreviousValue::MustNotExist,
                new: gix::refs::Target::Object(base),
            },
            name: full.clone(),
            deref: false,
        });
    }
    edits.push(RefEdit {
        change: Change::Update {
            log: LogChange {
                mode: RefLog::AndReference,
                force_create_reflog: false,
                message: format!("checkout: moving from {head_name} to {branch}").into(),
            },
            expected: PreviousValue::Any,
            new: gix::refs::Target::Symbolic(full),
        },
        name: "HEAD".try_into().map_err(git)?,
        deref: false,
    });
    let mut time = TimeBuf::default();
    repo.edit_references_as(edits, Some(who.signature(&mut time)))
        .map_err(git)?;
    Ok(Switched { base, created: true })
}

/// An author or committer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub name: String,
    pub email: String,
}

impl Identity {
    /// A signature for now, in local time.
    pub fn signature<'a>(&'a self, time: &'a mut TimeBuf) -> gix::actor::SignatureRef<'a> {
        gix::actor::SignatureRef {
            name: self.name.as_str().into(),
            email: self.email.as_str().into(),
            time: gix::date::Time::now_local_or_utc().to_str(time),
        }
    }
}

/// Commit `tree` on the current branch with HEAD's commit as parent, and move the branch (and its reflog).
pub fn commit(
    repo: &gix::Repository,
    author: &Identity,
    message: &str,
    tree: ObjectId,
    parent: Option<ObjectId>,
) -> Result<ObjectId, BranchError> {
    let mut time = TimeBuf::default();
    let signature = author.signature(&mut time);
    let message = if message.ends_with('\n') {
        message.to_owned()
    } else {
        format!("{message}\n")
    };
    let id = repo
        .commit_as(signature, signature, "HEAD", message, tree, parent)
        .map_err(git)?;
    Ok(id.detach())
}
