//! Git LFS for `mint clone` and `mint publish`, through the batch API (`{remote}/info/lfs/objects/batch`)
//! and basic transfers, as git-lfs itself does.
//!
//! - The batch request carries the token (Basic, `x-access-token`), like git's own requests to the remote.
//! - Each action's `href` is called with the action's own headers and **never** the token: on GitHub those
//!   are storage hosts with their own short-lived authorization.
//! - Objects are streamed: downloads are hashed while written to `.git/lfs/tmp`, checked against the oid and
//!   size, then renamed into `.git/lfs/objects/aa/bb/<oid>` (where git-lfs keeps them) and copied into the
//!   work tree; uploads stream from that store.
//! - Every request is async reqwest on one runtime per endpoint ([`Endpoint::runtime`]): the batch call,
//!   downloads, uploads and verifies alike. The transfers themselves run on the caller's threads (gix's
//!   side is synchronous), each driving its request with `block_on`, so a blocking write into the store
//!   never stalls the runtime's workers.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use bstr::ByteSlice;
use gix::ObjectId;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::credentials::CredentialSource;

const MEDIA_TYPE: &str = "application/vnd.git-lfs+json";
/// git-lfs's `lfs.concurrenttransfers` when unset.
pub const DEFAULT_CONCURRENT_TRANSFERS: usize = 8;
/// git-lfs never writes a pointer larger than this; anything bigger is content.
const MAX_POINTER: u64 = 1024;

/// An LFS pointer: what the repository stores in place of the content.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Pointer {
    pub oid: String,
    pub size: u64,
}

impl Pointer {
    /// Parse a pointer file (the spec's `version`, `oid sha256:…`, `size` lines), or `None` for content.
    pub fn parse(data: &[u8]) -> Option<Self> {
        if data.len() as u64 > MAX_POINTER {
            return None;
        }
        let text = data.to_str().ok()?;
        let mut lines = text.lines();
        if !lines.next()?.starts_with("version https://git-lfs.github.com/spec/v1") {
            return None;
        }
        let (mut oid, mut size) = (None, None);
        for line in lines {
            if let Some(hex) = line.strip_prefix("oid sha256:") {
                oid = Some(hex.to_owned());
            } else if let Some(n) = line.strip_prefix("size ") {
                size = n.parse().ok();
            }
        }
        let oid = oid?;
        (oid.len() == 64 && oid.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()))
            .then_some(Self { oid, size: size? })
    }

    /// Where git-lfs keeps the object in a repository: `.git/lfs/objects/aa/bb/<oid>`.
    pub fn local_path(&self, git_dir: &Path) -> PathBuf {
        git_dir
            .join("lfs/objects")
            .join(&self.oid[..2])
            .join(&self.oid[2..4])
            .join(&self.oid)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LfsError {
    #[error("the LFS batch request to {url} failed: {message}")]
    Batch { url: String, message: String },
    #[error("the LFS {operation} of {oid} ({path}) failed: {message}")]
    Transfer {
        operation: &'static str,
        oid: String,
        path: String,
        message: String,
    },
    #[error(
        "the LFS object {oid} of {path} is not in this repository's LFS store (.git/lfs/objects): add the file again with git-lfs installed (`git lfs install`), or restore it"
    )]
    MissingLocally { oid: String, path: String },
    #[error("{0}")]
    Local(String),
}

#[derive(Serialize)]
struct BatchRequest<'a> {
    operation: &'a str,
    transfers: [&'a str; 1],
    objects: &'a [Pointer],
    hash_algo: &'a str,
}

#[derive(Deserialize)]
struct BatchResponse {
    #[serde(default)]
    transfer: Option<String>,
    objects: Vec<BatchObject>,
}

#[derive(Deserialize)]
struct BatchObject {
    oid: String,
    #[serde(default)]
    actions: BTreeMap<String, Action>,
    #[serde(default)]
    error: Option<ObjectError>,
}

#[derive(Deserialize)]
struct ObjectError {
    code: u16,
    message: String,
}

#[derive(Deserialize)]
struct Action {
    href: String,
    #[serde(default)]
    header: BTreeMap<String, String>,
}

/// An LFS endpoint: the remote's `info/lfs`, with the token source for the batch API.
pub struct Endpoint<'a> {
    batch_url: String,
    credentials: Option<&'a mut dyn CredentialSource>,
    client: reqwest::Client,
    /// Where every LFS request runs: reqwest's async client, one runtime for the batch call and the
    /// transfers. (reqwest's blocking client would add a runtime of its own, and its bodies move 8 KiB a
    /// hop between threads: ten 50 MB uploads took twice as long as git-lfs's.)
    runtime: tokio::runtime::Runtime,
    /// Objects moved at once (`lfs.concurrenttransfers`).
    transfers: usize,
}

impl std::fmt::Debug for Endpoint<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("batch_url", &self.batch_url)
            .field("transfers", &self.transfers)
            .finish_non_exhaustive()
    }
}

impl<'a> Endpoint<'a> {
    /// The LFS endpoint of the git remote `url` (`https://github.com/OWNER/NAME.git`). `credentials` is `None`
    /// behind mintd's git proxy, which adds the token itself.
    pub fn for_remote(url: &str, credentials: Option<&'a mut dyn CredentialSource>) -> Result<Self, LfsError> {
        crate::ensure_tls_provider();
        let base = url.trim_end_matches('/');
        let base = if base.to_ascii_lowercase().ends_with(".git") {
            base.to_owned()
        } else {
            format!("{base}.git")
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("mint-lfs")
            .enable_all()
            .build()
            .map_err(|e| LfsError::Local(format!("a runtime for Git LFS: {e}")))?;
        let client = reqwest::Client::builder()
            // Storage hosts answer with the object; a redirect to elsewhere is not followed with headers.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| LfsError::Local(format!("an HTTP client: {e}")))?;
        Ok(Self {
            batch_url: format!("{base}/info/lfs/objects/batch"),
            credentials,
            client,
            runtime,
            transfers: DEFAULT_CONCURRENT_TRANSFERS,
        })
    }

    /// Move up to `n` objects at once (at least one), as [`concurrent_transfers`] reads it from a repository.
    pub fn set_concurrent_transfers(&mut self, n: usize) {
        self.transfers = n.max(1);
    }

    /// One batch call; a refused token is replaced once.
    fn batch(&mut self, operation: &str, objects: &[Pointer]) -> Result<Vec<BatchObject>, LfsError> {
        let batch_error = |message: String| LfsError::Batch {
            url: self.batch_url.clone(),
            message,
        };
        let body = serde_json::to_vec(&BatchRequest {
            operation,
            transfers: ["basic"],
            objects,
            hash_algo: "sha256",
        })
        .map_err(|e| batch_error(e.to_string()))?;
        let mut refused = false;
        loop {
            let mut request = self
                .client
                .post(&self.batch_url)
                .header("Accept", MEDIA_TYPE)
                .header("Content-Type", MEDIA_TYPE)
                .body(body.clone());
            // The credential source asks mintd over its socket, synchronously: before the request runs.
            if let Some(source) = self.credentials.as_deref_mut() {
                let credentials = source.get(refused).map_err(batch_error)?;
                request = request.basic_auth(
                    credentials.username.clone(),
                    Some(credentials.password.expose_secret().to_owned()),
                );
            }
            let (status, text) = self
                .runtime
                .block_on(async {
                    let response = request.send().await?;
                    let status = response.status();
                    Ok((status, response.text().await?))
                })
                .map_err(|e: reqwest::Error| batch_error(describe(&e)))?;
            if status == reqwest::StatusCode::UNAUTHORIZED && !refused && self.credentials.is_some() {
                refused = true;
                continue;
            }
            if !status.is_success() {
                let message = serde_json::from_str::<serde_json::Value>(&text)
                    .ok()
                    .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(ToOwned::to_owned))
                    .unwrap_or_else(|| text.chars().take(200).collect());
                return Err(batch_error(format!("HTTP {status}: {message}")));
            }
            let parsed: BatchResponse =
                serde_json::from_str(&text).map_err(|e| batch_error(format!("an answer that is not a batch: {e}")))?;
            if parsed.transfer.as_deref().is_some_and(|t| t != "basic") {
                return Err(batch_error(format!(
                    "the server chose the {:?} transfer; mint speaks basic",
                    parsed.transfer
                )));
            }
            return Ok(parsed.objects);
        }
    }

    /// Download the objects the work tree needs into the store under `git_dir`, verified; `paths` names a
    /// path per object for messages. Objects already in the store are not asked for. Up to
    /// [`Self::set_concurrent_transfers`] objects move at once; the first failure stops the others from
    /// starting and is the one reported, and what was stored by then stays (a second run skips it).
    pub fn download(&mut self, git_dir: &Path, wanted: &[(Pointer, String)]) -> Result<usize, LfsError> {
        let missing: Vec<Pointer> = unique(wanted.iter().map(|(p, _)| p).filter(|p| !is_stored(p, git_dir)));
        if missing.is_empty() {
            return Ok(0);
        }
        let answers = self.batch("download", &missing)?;
        let (client, runtime) = (&self.client, &self.runtime);
        for_each_concurrently(&missing, self.transfers, |pointer| {
            let path = path_of(wanted, pointer);
            let transfer_error = |message: String| LfsError::Transfer {
                operation: "download",
                oid: pointer.oid.clone(),
                path: path.clone(),
                message,
            };
            let answer = answer_for(&answers, pointer).map_err(transfer_error)?;
            let action = answer
                .actions
                .get("download")
                .ok_or_else(|| transfer_error("the batch answer has no download action".into()))?;
            let get = request(client, action, reqwest::Method::GET).map_err(transfer_error)?;
            let incoming = runtime.block_on(async {
                let mut response = get.send().await.map_err(|e| describe(&e))?;
                if !response.status().is_success() {
                    return Err(format!("HTTP {}", response.status()));
                }
                let mut incoming = Incoming::new(git_dir)?;
                while let Some(chunk) = response.chunk().await.map_err(|e| describe(&e))? {
                    incoming.write(&chunk)?;
                }
                Ok(incoming)
            });
            incoming
                .and_then(|incoming| incoming.keep(git_dir, pointer))
                .map_err(transfer_error)?;
            Ok(true)
        })
    }

    /// Upload the objects the server lacks from the store under `git_dir`, then verify them when asked; as
    /// many at once as [`Self::download`].
    pub fn upload(&mut self, git_dir: &Path, wanted: &[(Pointer, String)]) -> Result<usize, LfsError> {
        let objects = unique(wanted.iter().map(|(p, _)| p));
        if objects.is_empty() {
            return Ok(0);
        }
        for pointer in &objects {
            if !is_stored(pointer, git_dir) {
                return Err(LfsError::MissingLocally {
                    oid: pointer.oid.clone(),
                    path: path_of(wanted, pointer),
                });
            }
        }
        let answers = self.batch("upload", &objects)?;
        let (client, runtime) = (&self.client, &self.runtime);
        for_each_concurrently(&objects, self.transfers, |pointer| {
            let path = path_of(wanted, pointer);
            let transfer_error = |message: String| LfsError::Transfer {
                operation: "upload",
                oid: pointer.oid.clone(),
                path: path.clone(),
                message,
            };
            let answer = answer_for(&answers, pointer).map_err(transfer_error)?;
            // No upload action: the server has it already.
            let Some(upload) = answer.actions.get("upload") else {
                return Ok(false);
            };
            let url = action_url(upload).map_err(transfer_error)?;
            let path_in_store = pointer.local_path(git_dir);
            let status = runtime
                .block_on(async {
                    let file = tokio::fs::File::open(&path_in_store).await?;
                    let mut put = client
                        .put(url)
                        .header("Content-Type", "application/octet-stream")
                        .body(reqwest::Body::wrap(FileBody::new(file, pointer.size)));
                    for (name, value) in &upload.header {
                        put = put.header(name, value);
                    }
                    let response = put.send().await.map_err(|e| std::io::Error::other(describe(&e)))?;
                    Ok::<_, std::io::Error>(response.status())
                })
                .map_err(|e| transfer_error(e.to_string()))?;
            if !status.is_success() {
                return Err(transfer_error(format!("HTTP {status}")));
            }
            if let Some(verify) = answer.actions.get("verify") {
                let body = serde_json::to_vec(pointer).map_err(|e| transfer_error(e.to_string()))?;
                let post = request(client, verify, reqwest::Method::POST)
                    .map_err(transfer_error)?
                    .header("Accept", MEDIA_TYPE)
                    .header("Content-Type", MEDIA_TYPE)
                    .body(body);
                let status = runtime
                    .block_on(async { post.send().await.map(|response| response.status()) })
                    .map_err(|e| transfer_error(describe(&e)))?;
                if !status.is_success() {
                    return Err(transfer_error(format!("verify answered HTTP {status}")));
                }
            }
            Ok(true)
        })
    }
}

/// A request for an action: its `href` with its own headers, never the token (download: GET, verify: POST).
fn request(
    client: &reqwest::Client,
    action: &Action,
    method: reqwest::Method,
) -> Result<reqwest::RequestBuilder, String> {
    let mut request = client.request(method, action_url(action)?);
    for (name, value) in &action.header {
        request = request.header(name, value);
    }
    Ok(request)
}

/// An action's `href`: https, or http to a loopback address (fakehub, a test server).
fn action_url(action: &Action) -> Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(&action.href).map_err(|e| format!("the action's href is not a URL: {e}"))?;
    mint_service::require_https_or_loopback(&url, "the action's href").map_err(|e| e.to_string())?;
    Ok(url)
}

/// A file of known size as a request body, read in frames of up to [`FileBody::FRAME`]; a file that ends
/// early is an error, not a short upload.
struct FileBody {
    file: tokio::fs::File,
    left: u64,
    frame: Vec<u8>,
}

impl FileBody {
    const FRAME: usize = 256 << 10;

    fn new(file: tokio::fs::File, size: u64) -> Self {
        Self {
            file,
            left: size,
            frame: Vec::new(),
        }
    }
}

impl http_body::Body for FileBody {
    type Data = bytes::Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        use std::task::Poll;
        use tokio::io::AsyncRead;

        let this = self.get_mut();
        if this.left == 0 {
            return Poll::Ready(None);
        }
        let want = usize::try_from(this.left).map_or(Self::FRAME, |left| left.min(Self::FRAME));
        this.frame.resize(want, 0);
        let mut buf = tokio::io::ReadBuf::new(&mut this.frame);
        match std::pin::Pin::new(&mut this.file).poll_read(cx, &mut buf) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e))),
            Poll::Ready(Ok(())) => {
                let read = buf.filled().len();
                if read == 0 {
                    return Poll::Ready(Some(Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        format!("the stored object ended {} bytes short of its size", this.left),
                    ))));
                }
                this.left -= read as u64;
                Poll::Ready(Some(Ok(http_body::Frame::data(bytes::Bytes::copy_from_slice(
                    &this.frame[..read],
                )))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.left == 0
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.left)
    }
}

/// Run `work` on every item with up to `workers` threads taking the next item from a shared queue; the
/// number of items it did something for (`Ok(true)`). The first error stops the queue (transfers under
/// way finish) and is returned.
fn for_each_concurrently<T: Sync>(
    items: &[T],
    workers: usize,
    work: impl Fn(&T) -> Result<bool, LfsError> + Sync,
) -> Result<usize, LfsError> {
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let failure: Mutex<Option<LfsError>> = Mutex::new(None);
    let stopped = AtomicBool::new(false);
    std::thread::scope(|scope| {
        for _ in 0..workers.clamp(1, items.len().max(1)) {
            scope.spawn(|| {
                while !stopped.load(Ordering::Acquire) {
                    let Some(item) = items.get(next.fetch_add(1, Ordering::Relaxed)) else {
                        break;
                    };
                    match work(item) {
                        Ok(true) => {
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(false) => {}
                        Err(e) => {
                            stopped.store(true, Ordering::Release);
                            failure
                                .lock()
                                .expect("not poisoned: no work runs under it")
                                .get_or_insert(e);
                            break;
                        }
                    }
                }
            });
        }
    });
    match failure.into_inner().expect("not poisoned: no work runs under it") {
        Some(e) => Err(e),
        None => Ok(done.into_inner()),
    }
}

/// `lfs.concurrenttransfers` from the repository's config (git-lfs's own setting), at least 1; git-lfs's
/// default 8 when unset or not a number.
pub fn concurrent_transfers(repo: &gix::Repository) -> usize {
    repo.config_snapshot()
        .integer("lfs.concurrenttransfers")
        .map_or(DEFAULT_CONCURRENT_TRANSFERS, |n| usize::try_from(n.max(1)).unwrap_or(1))
}

/// The batch answer's entry for `pointer`, or why there is none to act on (not mentioned, or an error the
/// server gave for that object).
fn answer_for<'a>(answers: &'a [BatchObject], pointer: &Pointer) -> Result<&'a BatchObject, String> {
    let answer = answers
        .iter()
        .find(|a| a.oid == pointer.oid)
        .ok_or_else(|| "the batch answer does not mention it".to_owned())?;
    match &answer.error {
        Some(e) => Err(format!("{} {}", e.code, e.message)),
        None => Ok(answer),
    }
}

/// The objects among `pointers`, each once.
fn unique<'p>(pointers: impl Iterator<Item = &'p Pointer>) -> Vec<Pointer> {
    let mut all: Vec<Pointer> = pointers.cloned().collect();
    all.sort();
    all.dedup();
    all
}

fn path_of(wanted: &[(Pointer, String)], pointer: &Pointer) -> String {
    wanted
        .iter()
        .find(|(p, _)| p == pointer)
        .map(|(_, path)| path.clone())
        .unwrap_or_default()
}

fn is_stored(pointer: &Pointer, git_dir: &Path) -> bool {
    std::fs::metadata(pointer.local_path(git_dir)).is_ok_and(|m| m.len() == pointer.size)
}

/// A download on its way into the store: written to `.git/lfs/tmp` and hashed as it comes, kept only if the
/// content is the pointer's.
struct Incoming {
    tmp: tempfile::NamedTempFile,
    hash: Sha256,
    size: u64,
}

impl Incoming {
    fn new(git_dir: &Path) -> Result<Self, String> {
        let tmp_dir = git_dir.join("lfs/tmp");
        std::fs::create_dir_all(&tmp_dir).map_err(|e| e.to_string())?;
        Ok(Self {
            tmp: tempfile::NamedTempFile::new_in(&tmp_dir).map_err(|e| e.to_string())?,
            hash: Sha256::new(),
            size: 0,
        })
    }

    fn write(&mut self, data: &[u8]) -> Result<(), String> {
        self.hash.update(data);
        self.size += data.len() as u64;
        self.tmp.write_all(data).map_err(|e| e.to_string())
    }

    /// Into `.git/lfs/objects` if it is `pointer`'s content; else dropped, and nothing is kept.
    fn keep(self, git_dir: &Path, pointer: &Pointer) -> Result<(), String> {
        let (oid, size) = (hex::encode(self.hash.finalize()), self.size);
        if oid != pointer.oid || size != pointer.size {
            return Err(format!(
                "the content received is not the object (sha256 {oid}, {size} bytes): nothing was kept"
            ));
        }
        let target = pointer.local_path(git_dir);
        std::fs::create_dir_all(target.parent().expect("objects sit in a directory")).map_err(|e| e.to_string())?;
        self.tmp.persist(&target).map_err(|e| e.to_string())?;
        Ok(())
    }
}

/// reqwest's error and its causes: "error sending request: connection refused".
fn describe(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    // reqwest names the URL, and an action's href may be a presigned storage URL whose query is the
    // credential (GitHub's are): the message keeps its scheme, host and path only.
    if let Some(url) = error.url() {
        let mut shown = url.clone();
        shown.set_query(None);
        shown.set_fragment(None);
        let _ = shown.set_username("");
        let _ = shown.set_password(None);
        text = text.replace(url.as_str(), shown.as_str());
    }
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let more = cause.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = cause.source();
    }
    text
}

/// The LFS pointers among the blobs `ids` (those small enough to be one), with a path for each when known.
pub fn pointers_among(repo: &gix::Repository, ids: impl Iterator<Item = ObjectId>) -> Vec<Pointer> {
    let mut found = Vec::new();
    for id in ids {
        let Ok(header) = repo.find_header(id) else { continue };
        if header.kind() != gix::object::Kind::Blob || header.size() > MAX_POINTER {
            continue;
        }
        if let Ok(blob) = repo.find_object(id)
            && let Some(pointer) = Pointer::parse(&blob.data)
        {
            found.push(pointer);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointers_are_parsed_as_the_spec_writes_them_and_content_is_not() {
        let oid = "4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393";
        let text = format!("version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize 12345\n");
        assert_eq!(
            Pointer::parse(text.as_bytes()),
            Some(Pointer {
                oid: oid.to_owned(),
                size: 12345
            })
        );
        assert_eq!(Pointer::parse(b"hello\n"), None);
        assert_eq!(
            Pointer::parse(b"version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 1\n"),
            None,
            "a short oid"
        );
        let upper = text.replace(oid, &oid.to_uppercase());
        assert_eq!(Pointer::parse(upper.as_bytes()), None);
        let path = Pointer::parse(text.as_bytes())
            .unwrap()
            .local_path(Path::new("/r/.git"));
        assert_eq!(path, Path::new(&format!("/r/.git/lfs/objects/4d/7a/{oid}")));
    }

    #[test]
    fn the_first_failure_stops_the_queue_and_is_the_one_reported() {
        let items: Vec<usize> = (0..100).collect();
        let run = |workers: usize| {
            let started = AtomicUsize::new(0);
            let result = for_each_concurrently(&items, workers, |&i| {
                started.fetch_add(1, Ordering::SeqCst);
                if i == 5 {
                    return Err(LfsError::Local(format!("item {i} failed")));
                }
                Ok(true)
            });
            (result.unwrap_err().to_string(), started.into_inner())
        };
        // One worker: nothing after the failing item is started.
        assert_eq!(run(1), ("item 5 failed".to_owned(), 6));
        let (error, started) = run(4);
        assert_eq!(error, "item 5 failed");
        assert!(started >= 6, "{started}");

        let counted = for_each_concurrently(&items, 3, |&i| Ok(i % 2 == 0)).unwrap();
        assert_eq!(counted, 50, "the items something was done for");
    }

    #[test]
    fn an_error_never_shows_a_presigned_urls_query() {
        crate::ensure_tls_provider();
        // Nothing listens on port 1 of the loopback: the request fails to connect.
        let href = "http://user:pw@127.0.0.1:1/alambic/media/obj?X-Amz-Credential=KEYID&X-Amz-Signature=SECRET";
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let error = runtime
            .block_on(reqwest::Client::new().get(href).send())
            .expect_err("nothing listens there");
        assert!(error.to_string().contains("SECRET"), "reqwest names the URL: {error}");
        let text = describe(&error);
        assert!(
            !text.contains("SECRET") && !text.contains("KEYID") && !text.contains("pw"),
            "{text}"
        );
        assert!(text.contains("127.0.0.1:1/alambic/media/obj"), "{text}");
    }

    #[test]
    fn a_download_that_is_not_the_object_is_not_kept() {
        let dir = tempfile::tempdir().unwrap();
        let content = b"the real content";
        let oid = hex::encode(Sha256::digest(content));
        let pointer = Pointer {
            oid,
            size: content.len() as u64,
        };
        let store = |data: &[u8]| {
            let mut incoming = Incoming::new(dir.path())?;
            incoming.write(data)?;
            incoming.keep(dir.path(), &pointer)
        };
        let err = store(b"something else!!").unwrap_err();
        assert!(err.contains("not the object"), "{err}");
        assert!(!is_stored(&pointer, dir.path()));
        store(content).unwrap();
        assert!(is_stored(&pointer, dir.path()));
    }
}
