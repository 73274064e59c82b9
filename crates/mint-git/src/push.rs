//! A send-pack client on gix's parts (gix has no push yet: GitoxideLabs/gitoxide#306).
//!
//! One branch, fast-forward only, over smart HTTP with protocol V1 (receive-pack has no V2):
//! 1. the receive-pack handshake lists the remote's refs and capabilities;
//! 2. the update is checked locally: the remote's tip must be an ancestor of ours (never a force push);
//! 3. the commits the remote lacks are those reachable from ours and from none of the advertised tips we
//!    have; `gix_pack` expands them to the trees and blobs each adds, and the pack is streamed into the
//!    request body as it is generated (back-pressure from the upload, never a whole pack in memory);
//! 4. the answer is demultiplexed (side-band-64k: progress and hook output to the caller, fatal errors kept)
//!    and `report-status` is read per ref: `unpack ok`, then `ok <ref>` or `ng <ref> <reason>`.

use std::io::Write;
use std::sync::atomic::AtomicBool;

use bstr::{BString, ByteSlice};
use gix::ObjectId;
use gix::protocol::transport::client::AuthenticationRequired;
use gix::protocol::transport::client::blocking_io::{ExtendedBufRead, Transport as _};
use gix::protocol::transport::client::{MessageKind, TransportWithoutIO as _, WriteMode};
use gix::protocol::transport::packetline;
use gix::protocol::transport::{Protocol, Service};
use gix_pack::data::output;

use crate::credentials::{CredentialSource, authenticate_fn};

/// What a successful push did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushOutcome {
    /// The remote branch before the push; `None` when it was created.
    pub old: Option<ObjectId>,
    pub new: ObjectId,
    /// `true` when the remote already had `new`: nothing was sent.
    pub up_to_date: bool,
    /// Objects in the pack that was sent.
    pub objects: usize,
    /// Bytes of the pack that was sent.
    pub pack_bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("connecting to {url} failed: {message}")]
    Connect { url: String, message: String },
    #[error(
        "the remote has commits on {branch} that this repository does not have ({remote}): someone else pushed to it; fetch and integrate them, or publish to a new branch"
    )]
    RemoteAhead { branch: String, remote: ObjectId },
    #[error(
        "{branch} on the remote ({remote}) is not an ancestor of {local}: publishing would overwrite it (mint never force-pushes); publish to a new branch"
    )]
    NonFastForward {
        branch: String,
        remote: ObjectId,
        local: ObjectId,
    },
    #[error("the server does not offer {capability}, which mint's push needs")]
    MissingCapability { capability: &'static str },
    #[error("the remote refused the push of {branch}: {reason}{}", remote_lines(.remote))]
    Rejected {
        branch: String,
        reason: String,
        remote: Vec<String>,
    },
    #[error("the remote could not unpack what was sent: {reason}{}", remote_lines(.remote))]
    Unpack { reason: String, remote: Vec<String> },
    #[error("building the pack failed: {0}")]
    Pack(String),
    #[error("the push to {url} failed: {message}{}", remote_lines(.remote))]
    Transport {
        url: String,
        message: String,
        remote: Vec<String>,
    },
    #[error("the remote's answer could not be read: {0}")]
    Protocol(String),
    #[error(
        "{url} refused the credential while receiving the pack (HTTP 401): the token expired or was revoked between the handshake and the upload"
    )]
    Unauthorized { url: String },
    #[error("the local repository is not usable: {0}")]
    Local(String),
    #[error("{0}; nothing was pushed")]
    Lfs(crate::lfs::LfsError),
}

fn remote_lines(lines: &[String]) -> String {
    if lines.is_empty() {
        String::new()
    } else {
        format!("\nremote said:\n  {}", lines.join("\n  "))
    }
}

fn local(e: impl std::fmt::Display) -> PushError {
    PushError::Local(e.to_string())
}

type HttpTransport = gix::protocol::transport::client::blocking_io::http::Transport<
    gix::protocol::transport::client::blocking_io::http::reqwest::Remote,
>;

/// A receive-pack conversation after the handshake: the remote's refs are known, nothing is sent yet.
pub struct Session {
    url: String,
    transport: HttpTransport,
    side_band: bool,
    advertised: Vec<(BString, ObjectId)>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("url", &self.url)
            .field("refs", &self.advertised.len())
            .finish_non_exhaustive()
    }
}

impl Session {
    /// Connect to `url` (`https://github.com/OWNER/NAME.git`) for receive-pack. `credentials` is `None`
    /// for a remote that needs none (mintd's git proxy adds the token itself). A refused token is replaced
    /// once by a fresh one from the source; `refused_previous` says the last one was refused already (a
    /// retry after [`PushError::Unauthorized`]), so even the first is asked for fresh.
    pub fn connect(
        url: &str,
        credentials: Option<&mut dyn CredentialSource>,
        refused_previous: bool,
    ) -> Result<Self, PushError> {
        let connect_error = |message: String| PushError::Connect {
            url: url.to_owned(),
            message,
        };
        crate::ensure_tls_provider();
        let parsed = gix::url::parse(url.as_bytes().as_bstr()).map_err(|e| connect_error(e.to_string()))?;
        let mut transport = HttpTransport::new(parsed, Protocol::V1, false);
        let mut no_credentials = |_| Err::<crate::Credentials, _>("this remote takes no credentials".to_owned());
        let source: &mut dyn CredentialSource = match credentials {
            Some(source) => {
                // Ask up front: a 401 round trip per push buys nothing when the remote surely needs a token.
                let first = source.get(refused_previous).map_err(connect_error)?;
                transport
                    .set_identity(first.to_account())
                    .map_err(|e| connect_error(e.to_string()))?;
                source
            }
            None => &mut no_credentials,
        };
        let handshake = gix::protocol::handshake(
            &mut transport,
            Service::ReceivePack,
            authenticate_fn(source, true),
            Vec::new(),
            &mut gix::progress::Discard,
        )
        .map_err(|e| connect_error(format!("{e:#}")))?;

        let capabilities = &handshake.capabilities;
        if !capabilities.contains("report-status") {
            return Err(PushError::MissingCapability {
                capability: "report-status",
            });
        }
        if !capabilities.contains("ofs-delta") {
            return Err(PushError::MissingCapability {
                capability: "ofs-delta",
            });
        }
        if let Some(format) = capabilities
            .capability("object-format")
            .and_then(|c| c.value().map(ToOwned::to_owned))
            && format != "sha1"
        {
            return Err(PushError::Protocol(format!(
                "the remote uses object format {format}; mint pushes sha1 repositories"
            )));
        }
        let side_band = capabilities.contains("side-band-64k");
        let refs = handshake.refs.unwrap_or_default();
        // An annotated tag is advertised with its peeled commit (`refs/tags/v1^{}`): keep the commit, which
        // is what reachability questions are about.
        let advertised = refs
            .iter()
            .filter_map(|r| match r.unpack() {
                (name, _, Some(peeled)) => Some((name.to_owned(), peeled.to_owned())),
                (name, Some(target), None) => Some((name.to_owned(), target.to_owned())),
                (_, None, None) => None,
            })
            .collect();
        Ok(Self {
            url: url.to_owned(),
            transport,
            side_band,
            advertised,
        })
    }

    /// The remote's tip of `refs/heads/<branch>`.
    pub fn remote_branch(&self, branch: &str) -> Option<ObjectId> {
        let refname = format!("refs/heads/{branch}");
        self.advertised
            .iter()
            .find(|(name, _)| name == refname.as_bytes())
            .map(|(_, id)| *id)
    }

    /// Whether `commit` is already on the remote under another name than `branch`: equal to, or an ancestor
    /// of, another advertised ref. A branch at such a commit has nothing of its own to propose.
    ///
    /// One walk from every other tip this repository has (tags peeled, anything that is not a commit
    /// skipped), stopping at the first sight of `commit`.
    pub fn has_elsewhere(&self, repo: &gix::Repository, branch: &str, commit: ObjectId) -> Result<bool, PushError> {
        let refname = format!("refs/heads/{branch}");
        let others = self
            .advertised
            .iter()
            .filter(|(name, _)| name != refname.as_bytes())
            .map(|(_, id)| *id);
        if others.clone().any(|id| id == commit) {
            return Ok(true);
        }
        let tips = local_commits(repo, others);
        if tips.is_empty() {
            return Ok(false);
        }
        for info in repo.rev_walk(tips).all().map_err(local)? {
            if info.map_err(local)?.id == commit {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Push `new` to `refs/heads/<branch>`, fast-forward only; `progress` receives our progress lines and
    /// the remote's (`remote: …`). With `lfs`, the Git LFS objects whose pointers the pack carries are
    /// uploaded first, as git-lfs's pre-push hook does: if one fails, nothing is pushed.
    pub fn push(
        self,
        repo: &gix::Repository,
        branch: &str,
        new: ObjectId,
        lfs: Option<&mut crate::lfs::Endpoint<'_>>,
        progress: &mut dyn FnMut(&str),
    ) -> Result<PushOutcome, PushError> {
        let Self {
            url,
            mut transport,
            side_band,
            advertised,
        } = self;
        let url = url.as_str();
        let refname = format!("refs/heads/{branch}");
        let old = advertised
            .iter()
            .find(|(name, _)| name == refname.as_bytes())
            .map(|(_, id)| *id);
        if old == Some(new) {
            return Ok(PushOutcome {
                old,
                new,
                up_to_date: true,
                objects: 0,
                pack_bytes: 0,
            });
        }
        if let Some(old) = old {
            if !repo.has_object(old) {
                return Err(PushError::RemoteAhead {
                    branch: branch.to_owned(),
                    remote: old,
                });
            }
            if !is_ancestor(repo, old, new)? {
                return Err(PushError::NonFastForward {
                    branch: branch.to_owned(),
                    remote: old,
                    local: new,
                });
            }
        }

        let hidden = local_commits(repo, advertised.iter().map(|(_, id)| *id));
        let (ids, entries) = pack_entries(repo, new, hidden)?;
        let objects = ids.len();
        if let Some(endpoint) = lfs {
            upload_lfs(repo, new, &ids, endpoint, progress)?;
        }
        progress(&format!("Pushing {objects} objects to {branch}"));
        let objects_u32 = u32::try_from(objects).map_err(|_| PushError::Pack("more than 2^32 objects".into()))?;

        let transport_error = |message: String, remote: Vec<String>| PushError::Transport {
            url: url.to_owned(),
            message,
            remote,
        };
        let writer = transport
            .request(WriteMode::Binary, MessageKind::Flush, false)
            .map_err(|e| transport_error(format!("{e:#}"), Vec::new()))?;
        let (mut body, mut reader) = writer.into_parts();

        let zero = ObjectId::null(gix::hash::Kind::Sha1);
        let mut caps = String::from("report-status");
        if side_band {
            caps.push_str(" side-band-64k");
        }
        caps.push_str(concat!(" agent=mint/", env!("CARGO_PKG_VERSION")));
        let command = format!("{} {new} {refname}\0{caps}", old.unwrap_or(zero));
        let send = send_pack(&mut body, &command, entries, objects_u32).map_err(|e| match e {
            Sent::Write(message) => transport_error(message, Vec::new()),
            Sent::Pack(message) => PushError::Pack(message),
        });
        // Closing the body ends the request; the answer explains a failed upload better than the write error.
        drop(body);

        let mut remote = Vec::new();
        let report = read_report(&mut reader, side_band, &mut remote, progress);
        // The answer decides: a report that the ref was updated is success even if writing the rest of the
        // body failed, and an HTTP status (401, 413, a proxy's 400) explains a failed upload better than the
        // "broken pipe" the write saw when the server stopped reading.
        let pack_bytes = match (report, send) {
            (Ok(report), send) => {
                check_report(&report, &refname, branch, remote)?;
                send.unwrap_or(0)
            }
            (Err(ReadError::Unauthorized), _) => return Err(PushError::Unauthorized { url: url.to_owned() }),
            (Err(_), Err(e @ (PushError::Pack(_) | PushError::Local(_)))) => return Err(e),
            (Err(ReadError::Other(e)), Err(PushError::Transport { message, .. })) => {
                return Err(transport_error(format!("{e} (while sending: {message})"), remote));
            }
            (Err(ReadError::Other(e)), _) => return Err(transport_error(e, remote)),
        };
        Ok(PushOutcome {
            old,
            new,
            up_to_date: false,
            objects,
            pack_bytes,
        })
    }
}

/// Upload the LFS objects behind the pointers among the pack's blobs (the server answers which it lacks).
fn upload_lfs(
    repo: &gix::Repository,
    new: ObjectId,
    ids: &[ObjectId],
    endpoint: &mut crate::lfs::Endpoint<'_>,
    progress: &mut dyn FnMut(&str),
) -> Result<(), PushError> {
    let pointers = crate::lfs::pointers_among(repo, ids.iter().copied());
    if pointers.is_empty() {
        return Ok(());
    }
    // Name each object by a path of the pushed tree that holds it, for messages.
    let mut recorder = gix::traverse::tree::Recorder::default();
    repo.find_commit(new)
        .map_err(local)?
        .tree()
        .map_err(local)?
        .traverse()
        .breadthfirst(&mut recorder)
        .map_err(local)?;
    let wanted: Vec<(crate::lfs::Pointer, String)> = recorder
        .records
        .iter()
        .filter(|r| r.mode.is_blob() && ids.contains(&r.oid))
        .filter_map(|r| {
            let blob = repo.find_object(r.oid).ok()?;
            let pointer = crate::lfs::Pointer::parse(&blob.data)?;
            Some((pointer, r.filepath.to_string()))
        })
        .collect();
    endpoint.set_concurrent_transfers(crate::lfs::concurrent_transfers(repo));
    let sent = endpoint.upload(repo.git_dir(), &wanted).map_err(PushError::Lfs)?;
    progress(&format!(
        "Uploaded {sent} of {} LFS objects (the others were on the remote already)",
        wanted.len()
    ));
    Ok(())
}

/// Why sending failed: writing into the request (the server stopped reading), or making the pack.
enum Sent {
    Write(String),
    Pack(String),
}

/// Write the command, a flush and the pack into the request body; the pack's size.
fn send_pack(body: &mut impl Write, command: &str, entries: Entries, objects: u32) -> Result<u64, Sent> {
    packetline::blocking_io::encode::data_to_write(command.as_bytes(), &mut *body)
        .and_then(|_| packetline::blocking_io::encode::flush_to_write(&mut *body))
        .map_err(|e| Sent::Write(e.to_string()))?;
    let mut upload = Upload {
        inner: &mut *body,
        failed: None,
    };
    let mut pack = gix_pack::data::output::bytes::FromEntriesIter::new(
        entries,
        &mut upload,
        objects,
        gix_pack::data::Version::V2,
        gix::hash::Kind::Sha1,
    );
    let mut written = 0;
    let mut failed = None;
    for chunk in pack.by_ref() {
        match chunk {
            Ok(n) => written += n,
            Err(e) => {
                failed = Some(format!("{e:#}"));
                break;
            }
        }
    }
    drop(pack);
    if let Some(e) = failed {
        return Err(match upload.failed {
            Some(write) => Sent::Write(write),
            None => Sent::Pack(e),
        });
    }
    body.flush().map_err(|e| Sent::Write(e.to_string()))?;
    Ok(written)
}

/// The request body, remembering why a write failed.
struct Upload<W> {
    inner: W,
    failed: Option<String>,
}

impl<W: Write> Write for Upload<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.inner.write(buf).inspect_err(|e| self.failed = Some(e.to_string()))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush().inspect_err(|e| self.failed = Some(e.to_string()))
    }
}

type Entries = Box<dyn Iterator<Item = gix::Result<Vec<output::Entry>>>>;

/// After a push, what `git push` does locally: `refs/remotes/origin/BRANCH` now names the pushed commit, so
/// `git status` and `git log origin/BRANCH` agree with the remote. Only when the work tree has an `origin`.
/// The reflog entry is signed by `who`, the identity the commit was made with: git falls back to one when
/// none is configured, and so must this, or a sandbox without `user.name` never sees its push recorded.
pub fn record_pushed(
    repo: &gix::Repository,
    branch: &str,
    pushed: ObjectId,
    who: &crate::branch::Identity,
) -> Result<(), PushError> {
    use gix::refs::transaction::{Change, LogChange, PreviousValue, RefEdit, RefLog};

    if repo.find_remote("origin").is_err() {
        return Ok(());
    }
    let name = format!("refs/remotes/origin/{branch}");
    let edit = RefEdit {
        change: Change::Update {
            log: LogChange {
                mode: RefLog::AndReference,
                force_create_reflog: false,
                message: "update by push".into(),
            },
            expected: PreviousValue::Any,
            new: gix::refs::Target::Object(pushed),
        },
        name: name.try_into().map_err(local)?,
        deref: false,
    };
    let mut time = gix::date::parse::TimeBuf::default();
    repo.edit_references_as([edit], Some(who.signature(&mut time)))
        .map(|_| ())
        .map_err(local)
}

/// The pack's entries, generated lazily: everything reachable from `new` that none of `hidden` (the remote's
/// tips we have) reaches. Returns the objects' ids and the entries in pack order.
fn pack_entries(
    repo: &gix::Repository,
    new: ObjectId,
    hidden: Vec<ObjectId>,
) -> Result<(Vec<ObjectId>, Entries), PushError> {
    // Everything reachable from `new` that no advertised tip we have reaches.
    let mut commits = Vec::new();
    let mut parents = Vec::new();
    for info in repo.rev_walk([new]).with_hidden(hidden).all().map_err(local)? {
        let info = info.map_err(local)?;
        parents.extend(info.parent_ids.iter().copied());
        commits.push(info.id);
    }
    // The parents outside that set are on the remote (a hidden tip reaches them), and so are their trees.
    // gix counts them in to diff against: they are left out of the pack.
    let known: std::collections::HashSet<ObjectId> = commits.iter().copied().collect();
    let mut on_remote = std::collections::HashSet::new();
    for parent in parents.into_iter().filter(|p| !known.contains(p)) {
        let tree = repo
            .find_commit(parent)
            .map_err(local)?
            .tree_id()
            .map_err(local)?
            .detach();
        on_remote.insert(parent);
        on_remote.insert(tree);
    }

    let mut db = repo.objects.clone().into_inner().into_arc().map_err(local)?;
    // Pack generation looks objects up by pack location: packs must stay loaded meanwhile.
    db.prevent_pack_unload();
    db.ignore_replacements = true;
    let should_interrupt = AtomicBool::new(false);
    let (counts, _) = output::count::objects(
        db.clone(),
        Box::new(commits.into_iter().map(Ok)),
        &gix::progress::Discard,
        &should_interrupt,
        output::count::objects::Options {
            thread_limit: None,
            input_object_expansion: output::count::objects::ObjectExpansion::TreeAdditionsComparedToAncestor,
            chunk_size: 50,
        },
    )
    .map_err(|e| PushError::Pack(format!("{e:#}")))?;
    let counts: Vec<_> = counts.into_iter().filter(|c| !on_remote.contains(&c.id)).collect();
    let ids: Vec<ObjectId> = counts.iter().map(|c| c.id).collect();

    let entries = output::entry::iter_from_counts(
        counts,
        db,
        Box::new(gix::progress::Discard),
        output::entry::iter_from_counts::Options {
            // Deltas against objects outside the pack would need the receiver to have them: send bases.
            allow_thin_pack: false,
            ..Default::default()
        },
    )
    .map_err(|e| PushError::Pack(format!("{e:#}")))?;
    let entries = gix::parallel::InOrderIter::from(entries).map(|r| r.map_err(|e| gix::Error::from_error(e)));
    Ok((ids, Box::new(entries)))
}

/// The commits among `ids` that this repository has, tags peeled: what a walk can start from or stop at.
/// Anything else (an object we lack, a tag of a tree or blob) is skipped.
fn local_commits(repo: &gix::Repository, ids: impl Iterator<Item = ObjectId>) -> Vec<ObjectId> {
    let mut commits: Vec<ObjectId> = ids
        .filter_map(|id| {
            let object = repo.try_find_object(id).ok()??;
            let peeled = object.peel_tags_to_end().ok()?;
            (peeled.kind == gix::object::Kind::Commit).then_some(peeled.id)
        })
        .collect();
    commits.sort_unstable();
    commits.dedup();
    commits
}

fn is_ancestor(repo: &gix::Repository, ancestor: ObjectId, descendant: ObjectId) -> Result<bool, PushError> {
    for info in repo.rev_walk([descendant]).all().map_err(local)? {
        if info.map_err(local)?.id == ancestor {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The lines of `report-status`, without the trailing flush.
#[derive(Debug, Default, PartialEq, Eq)]
struct Report {
    unpack: Option<String>,
    refs: Vec<(String, Option<String>)>,
}

/// Why the answer could not be read.
#[derive(Debug)]
enum ReadError {
    /// HTTP 401: the credential was refused after the handshake accepted it.
    Unauthorized,
    Other(String),
}

fn read_report(
    reader: &mut (dyn ExtendedBufRead<'_> + Unpin + '_),
    side_band: bool,
    remote: &mut Vec<String>,
    progress: &mut dyn FnMut(&str),
) -> Result<Report, ReadError> {
    let io_error = |e: &std::io::Error| {
        let chain = error_chain(e);
        if chain.iter().any(|cause| {
            cause.downcast_ref::<AuthenticationRequired>().is_some()
                || cause
                    .downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::PermissionDenied)
        }) {
            ReadError::Unauthorized
        } else {
            ReadError::Other(describe(&chain))
        }
    };
    let mut lines = Vec::new();
    if side_band {
        let collected = std::rc::Rc::new(std::cell::RefCell::new(Vec::<(bool, String)>::new()));
        let sink = std::rc::Rc::clone(&collected);
        reader.set_progress_handler(Some(Box::new(move |is_error, text: &[u8]| {
            for line in ByteSlice::lines(text) {
                let line = line.to_str_lossy().trim_end().to_owned();
                if !line.is_empty() {
                    sink.borrow_mut().push((is_error, line));
                }
            }
            std::ops::ControlFlow::Continue(())
        })));
        let mut raw = Vec::new();
        let read = std::io::copy(reader, &mut raw);
        reader.set_progress_handler(None);
        for (is_error, line) in collected.take() {
            progress(&format!("remote: {line}"));
            if is_error || !line.contains('%') {
                remote.push(line);
            }
        }
        read.map_err(|e| io_error(&e))?;
        lines = split_pkt_lines(&raw).map_err(ReadError::Other)?;
    } else {
        while let Some(line) = reader.readline() {
            let line = line
                .map_err(|e| io_error(&e))?
                .map_err(|e| ReadError::Other(e.to_string()))?;
            if let Some(data) = line.as_slice() {
                lines.push(data.to_owned());
            }
        }
    }
    parse_report(&lines).map_err(ReadError::Other)
}

/// `error` and its causes, outermost first (gix wraps the HTTP status two levels down).
fn error_chain<'a>(error: &'a (dyn std::error::Error + 'static)) -> Vec<&'a (dyn std::error::Error + 'static)> {
    let mut chain = vec![error];
    while let Some(source) = chain.last().and_then(|e| e.source()) {
        chain.push(source);
    }
    chain
}

/// The causes' messages joined, each once: "An IO error occurred …: Received HTTP status 413".
fn describe(chain: &[&(dyn std::error::Error + 'static)]) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in chain {
        let text = cause.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
    }
    parts.join(": ")
}

/// The data lines of a pkt-line stream (side-band 1 carries `report-status` as pkt-lines), up to a flush.
fn split_pkt_lines(mut raw: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    use packetline::decode::Stream;
    let mut lines = Vec::new();
    while !raw.is_empty() {
        match packetline::decode::streaming(raw).map_err(|e| format!("not a pkt-line stream: {e}"))? {
            Stream::Complete { line, bytes_consumed } => {
                raw = &raw[bytes_consumed..];
                match line.as_slice() {
                    Some(data) => lines.push(data.to_owned()),
                    None => break,
                }
            }
            Stream::Incomplete { bytes_needed } => {
                return Err(format!("the answer ends {bytes_needed} bytes into a pkt-line"));
            }
        }
    }
    Ok(lines)
}

/// Parse the lines of `report-status`.
fn parse_report(lines: &[Vec<u8>]) -> Result<Report, String> {
    let mut report = Report::default();
    for line in lines {
        let line = line.trim_end_with(|c| c == '\n').to_str_lossy();
        if let Some(rest) = line.strip_prefix("unpack ") {
            report.unpack = Some(rest.to_owned());
        } else if let Some(rest) = line.strip_prefix("ok ") {
            report.refs.push((rest.to_owned(), None));
        } else if let Some(rest) = line.strip_prefix("ng ") {
            let (name, reason) = rest.split_once(' ').unwrap_or((rest, "no reason given"));
            report.refs.push((name.to_owned(), Some(reason.to_owned())));
        }
    }
    if report.unpack.is_none() {
        return Err("the answer holds no report-status".into());
    }
    Ok(report)
}

fn check_report(report: &Report, refname: &str, branch: &str, remote: Vec<String>) -> Result<(), PushError> {
    if let Some((_, Some(reason))) = report.refs.iter().find(|(name, _)| name == refname) {
        return Err(PushError::Rejected {
            branch: branch.to_owned(),
            reason: explain(reason),
            remote,
        });
    }
    match report.unpack.as_deref() {
        Some("ok") => {}
        Some(reason) => {
            return Err(PushError::Unpack {
                reason: reason.to_owned(),
                remote,
            });
        }
        None => unreachable!("parse_report demands an unpack line"),
    }
    if !report
        .refs
        .iter()
        .any(|(name, status)| name == refname && status.is_none())
    {
        return Err(PushError::Protocol(format!("the report does not mention {refname}")));
    }
    Ok(())
}

/// git's terse reasons, with what to do about them.
fn explain(reason: &str) -> String {
    let advice = if reason.contains("protected branch") {
        "the branch is protected on GitHub; publish to another adagent/ branch"
    } else if reason.contains("pre-receive hook declined") || reason.contains("hook declined") {
        "a server-side hook refused it; its output is below"
    } else if reason.contains("non-fast-forward") || reason.contains("fetch first") {
        "the remote branch moved; publish to a new branch"
    } else {
        return reason.to_owned();
    };
    format!("{reason} ({advice})")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &[&str]) -> Vec<Vec<u8>> {
        text.iter().map(|l| l.as_bytes().to_vec()).collect()
    }

    #[test]
    fn report_status_is_read_per_ref() {
        let report = parse_report(&lines(&[
            "unpack ok\n",
            "ok refs/heads/adagent/x\n",
            "ng refs/heads/adagent/y pre-receive hook declined\n",
        ]))
        .unwrap();
        assert_eq!(report.unpack.as_deref(), Some("ok"));
        assert_eq!(
            report.refs,
            vec![
                ("refs/heads/adagent/x".to_owned(), None),
                (
                    "refs/heads/adagent/y".to_owned(),
                    Some("pre-receive hook declined".to_owned())
                ),
            ]
        );
        check_report(&report, "refs/heads/adagent/x", "adagent/x", Vec::new()).unwrap();
        let err = check_report(&report, "refs/heads/adagent/y", "adagent/y", vec!["no".into()]).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("pre-receive hook declined"), "{text}");
        assert!(text.contains("remote said:\n  no"), "{text}");
    }

    #[test]
    fn a_failed_unpack_and_a_missing_report_are_errors() {
        let report = parse_report(&lines(&[
            "unpack index-pack abnormal exit\n",
            "ng refs/heads/a unpacker error\n",
        ]))
        .unwrap();
        assert!(matches!(
            check_report(&report, "refs/heads/b", "b", Vec::new()),
            Err(PushError::Unpack { .. })
        ));
        assert!(parse_report(&lines(&["ok refs/heads/a\n"])).is_err(), "no unpack line");
    }

    #[test]
    fn side_band_content_is_split_by_gix_packetline_with_its_limits() {
        let mut raw = Vec::new();
        packetline::blocking_io::encode::data_to_write(b"unpack ok\n", &mut raw).unwrap();
        packetline::blocking_io::encode::data_to_write(b"ok refs/heads/a\n", &mut raw).unwrap();
        packetline::blocking_io::encode::flush_to_write(&mut raw).unwrap();
        assert_eq!(
            split_pkt_lines(&raw).unwrap(),
            lines(&["unpack ok\n", "ok refs/heads/a\n"])
        );
        assert!(split_pkt_lines(b"zzzz").is_err(), "not hex");
        assert!(split_pkt_lines(b"+00aunpack ok").is_err(), "a sign is not a length");
        assert!(split_pkt_lines(b"0010unpack").is_err(), "cut short");
        assert!(split_pkt_lines(b"fff5").is_err(), "over 65520 bytes");
        assert!(
            packetline::blocking_io::encode::data_to_write(&vec![b'x'; 65_517], &mut Vec::new()).is_err(),
            "a line over the limit is never written"
        );
    }

    /// Regression: with no `user.name` anywhere, the push went through but `origin/BRANCH` stayed behind
    /// ("Could not update reflog"), as gix signs a reflog entry with the configured committer only.
    #[test]
    fn the_remote_tracking_branch_moves_without_a_configured_identity() {
        let tmp = tempfile::tempdir().expect("tmp");
        let git = |args: &[&str]| {
            let out = std::process::Command::new("git")
                .env_clear()
                .env("PATH", std::env::var_os("PATH").unwrap_or_default())
                .env("HOME", tmp.path())
                .env("GIT_CONFIG_NOSYSTEM", "1")
                .current_dir(tmp.path())
                .args(["-c", "user.name=seed", "-c", "user.email=seed@example.invalid"])
                .args(args)
                .output()
                .expect("git");
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            String::from_utf8(out.stdout).expect("utf8").trim().to_owned()
        };
        git(&["init", "-q", "-b", "main"]);
        git(&["commit", "-q", "--allow-empty", "-m", "first"]);
        git(&["remote", "add", "origin", "https://github.com/octo-org/hello-world.git"]);
        let tip: ObjectId = git(&["rev-parse", "HEAD"]).parse().expect("id");
        let repo = gix::open_opts(tmp.path(), gix::open::Options::isolated()).expect("open");
        let who = crate::branch::Identity {
            name: "mint agent".into(),
            email: "agent@example.invalid".into(),
        };
        record_pushed(&repo, "adagent/x", tip, &who).expect("recorded");
        assert_eq!(git(&["rev-parse", "origin/adagent/x"]), tip.to_string());
        let log = git(&["reflog", "show", "--format=%gn <%ge>|%gs", "origin/adagent/x"]);
        assert_eq!(log, "mint agent <agent@example.invalid>|update by push");
    }
}
