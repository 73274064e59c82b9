//! Git LFS as GitHub serves it: the batch API beside the repository's git routes
//! (`POST /{owner}/{repo}.git/info/lfs/objects/batch`, the installation token as Basic auth, as for git), and
//! the objects on a separate storage route whose actions carry their own `Authorization` header, as
//! GitHub's storage hosts do: the token never travels with the bytes. Basic transfers only, with `verify`
//! after an upload, and the locks API (list, create, unlock, verify) in memory.
//!
//! Objects live under `{git_root}/lfs/{owner}/{repo}/{oid}`, written to a temporary file and renamed once
//! their SHA-256 and size are checked, streamed both ways.

use std::path::PathBuf;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{Auth, Body, error, injected_response, json_response, rank};
use crate::FakeHub;
use crate::state::LfsLock;

const MEDIA_TYPE: &str = "application/vnd.git-lfs+json";

#[derive(Debug, Deserialize)]
struct BatchRequest {
    operation: String,
    #[serde(default)]
    transfers: Vec<String>,
    objects: Vec<Pointer>,
    #[serde(default)]
    hash_algo: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Pointer {
    oid: String,
    size: u64,
}

fn lfs_json(status: StatusCode, body: &Value) -> Response<Body> {
    let mut response = json_response(status, body);
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(MEDIA_TYPE));
    response
}

fn lfs_error(status: StatusCode, message: &str) -> Response<Body> {
    lfs_json(
        status,
        &json!({"message": message, "documentation_url": "https://docs.github.com/repositories/working-with-files/managing-large-files"}),
    )
}

fn valid_oid(oid: &str) -> bool {
    oid.len() == 64 && oid.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl FakeHub {
    /// `/{owner}/{repo}(.git)/info/lfs/…`: the batch and locks APIs, with the installation token.
    pub(super) async fn lfs_api(
        &self,
        method: &Method,
        owner: &str,
        repo: &str,
        rest: &[&str],
        auth: Auth,
        req: Request<Incoming>,
    ) -> Response<Body> {
        // Locks need push access; a batch is checked per operation (a download only reads).
        let write = matches!((method, rest), (&Method::POST, ["locks", ..]));
        let (account, name) = match self.lfs_access(owner, repo, &auth, write) {
            Ok(found) => found,
            Err(response) => return *response,
        };
        let body = match req.into_body().collect().await {
            Ok(body) => body.to_bytes(),
            Err(_) => return lfs_error(StatusCode::BAD_REQUEST, "The request body could not be read"),
        };
        match (method, rest) {
            (&Method::POST, ["objects", "batch"]) => self.lfs_batch(&account, &name, &auth, &body),
            (&Method::GET, ["locks"]) => {
                let locks: Vec<Value> = self
                    .state()
                    .lfs_locks
                    .iter()
                    .filter(|l| l.owner == account && l.repo == name)
                    .map(LfsLock::json)
                    .collect();
                lfs_json(StatusCode::OK, &json!({"locks": locks}))
            }
            (&Method::POST, ["locks", "verify"]) => {
                let user = Self::lfs_user(&auth);
                let (ours, theirs): (Vec<Value>, Vec<Value>) = {
                    let state = self.state();
                    let mine = state.lfs_locks.iter().filter(|l| l.owner == account && l.repo == name);
                    let (ours, theirs): (Vec<&LfsLock>, Vec<&LfsLock>) = mine.partition(|l| l.by == user);
                    (
                        ours.into_iter().map(LfsLock::json).collect(),
                        theirs.into_iter().map(LfsLock::json).collect(),
                    )
                };
                lfs_json(StatusCode::OK, &json!({"ours": ours, "theirs": theirs}))
            }
            (&Method::POST, ["locks"]) => self.lfs_lock(&account, &name, &auth, &body),
            (&Method::POST, ["locks", id, "unlock"]) => {
                let mut state = self.state();
                let Some(at) = state
                    .lfs_locks
                    .iter()
                    .position(|l| l.id == *id && l.owner == account && l.repo == name)
                else {
                    return lfs_error(StatusCode::NOT_FOUND, "Lock not found");
                };
                let lock = state.lfs_locks.remove(at);
                lfs_json(StatusCode::OK, &json!({"lock": lock.json()}))
            }
            _ => lfs_error(StatusCode::NOT_FOUND, "Not Found"),
        }
    }

    /// The repository's canonical owner and name if `auth` is a live installation token for it with enough
    /// `contents` access; else GitHub's answer (401 with a Basic challenge, 403, 404).
    fn lfs_access(
        &self,
        owner: &str,
        repo: &str,
        auth: &Auth,
        write: bool,
    ) -> Result<(String, String), Box<Response<Body>>> {
        let challenge = || {
            let mut response = lfs_error(StatusCode::UNAUTHORIZED, "Credentials needed");
            response
                .headers_mut()
                .insert("LFS-Authenticate", HeaderValue::from_static("Basic realm=\"GitHub\""));
            response
        };
        let Auth::Token(Some(token)) = auth else {
            return Err(Box::new(challenge()));
        };
        let Some(installation) = self.installation_for(owner, repo) else {
            return Err(Box::new(challenge()));
        };
        if !Self::token_covers(token, &installation, owner, repo) {
            return Err(Box::new(challenge()));
        }
        let contents = token.permissions.get("contents").map_or(0, |l| rank(l));
        if contents < if write { 2 } else { 1 } {
            return Err(Box::new(lfs_error(
                StatusCode::FORBIDDEN,
                "Write access to repository not granted.",
            )));
        }
        let name = repo.strip_suffix(".git").unwrap_or(repo).to_owned();
        if !self.repo_path(&installation.account, &name).exists() {
            return Err(Box::new(lfs_error(StatusCode::NOT_FOUND, "Repository not found")));
        }
        Ok((installation.account, name))
    }

    fn lfs_user(auth: &Auth) -> String {
        match auth {
            Auth::Token(Some(token)) => format!("installation-{}", token.installation_id),
            _ => "unknown".to_owned(),
        }
    }

    fn lfs_batch(&self, owner: &str, repo: &str, auth: &Auth, body: &Bytes) -> Response<Body> {
        let request: BatchRequest = match serde_json::from_slice(body) {
            Ok(r) => r,
            Err(e) => return lfs_error(StatusCode::UNPROCESSABLE_ENTITY, &format!("Invalid batch request: {e}")),
        };
        if request.hash_algo.as_deref().is_some_and(|h| h != "sha256") {
            return lfs_error(StatusCode::CONFLICT, "Unsupported hash algorithm");
        }
        if !request.transfers.is_empty() && !request.transfers.iter().any(|t| t == "basic") {
            return lfs_error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Only the basic transfer adapter is supported",
            );
        }
        let upload = match request.operation.as_str() {
            "upload" => true,
            "download" => false,
            _ => return lfs_error(StatusCode::UNPROCESSABLE_ENTITY, "Unknown operation"),
        };
        if upload {
            // An upload batch needs write access even though the route alone does not say which.
            if let Auth::Token(Some(token)) = auth
                && token.permissions.get("contents").map_or(0, |l| rank(l)) < 2
            {
                return lfs_error(StatusCode::FORBIDDEN, "Write access to repository not granted.");
            }
        }
        let base = self.base_url();
        let objects: Vec<Value> = request
            .objects
            .iter()
            .map(|object| {
                if !valid_oid(&object.oid) {
                    return json!({"oid": object.oid, "size": object.size,
                        "error": {"code": 422, "message": "Invalid object id"}});
                }
                let stored = std::fs::metadata(self.lfs_path(owner, repo, &object.oid)).ok();
                let href = format!("{base}/_lfs/{owner}/{repo}/{}", object.oid);
                let action = |operation: &str, href: String| {
                    json!({
                        "href": href,
                        "header": {"Authorization": format!("RemoteAuth {}", self.lfs_signature(operation, owner, repo, &object.oid))},
                        "expires_in": 3600,
                    })
                };
                match (upload, stored) {
                    (false, Some(meta)) => json!({"oid": object.oid, "size": meta.len(), "authenticated": true,
                        "actions": {"download": action("download", href)}}),
                    (false, None) => json!({"oid": object.oid, "size": object.size,
                        "error": {"code": 404, "message": "Object does not exist"}}),
                    // Already stored: no actions, the client skips it.
                    (true, Some(meta)) if meta.len() == object.size => {
                        json!({"oid": object.oid, "size": object.size, "authenticated": true})
                    }
                    (true, _) => json!({"oid": object.oid, "size": object.size, "authenticated": true,
                        "actions": {
                            "upload": action("upload", href.clone()),
                            "verify": action("verify", format!("{href}/verify")),
                        }}),
                }
            })
            .collect();
        lfs_json(
            StatusCode::OK,
            &json!({"transfer": "basic", "objects": objects, "hash_algo": "sha256"}),
        )
    }

    fn lfs_lock(&self, owner: &str, repo: &str, auth: &Auth, body: &Bytes) -> Response<Body> {
        #[derive(Deserialize)]
        struct Create {
            path: String,
        }
        let Ok(create) = serde_json::from_slice::<Create>(body) else {
            return lfs_error(StatusCode::UNPROCESSABLE_ENTITY, "Invalid lock request");
        };
        let by = Self::lfs_user(auth);
        let mut state = self.state();
        if let Some(existing) = state
            .lfs_locks
            .iter()
            .find(|l| l.owner == owner && l.repo == repo && l.path == create.path)
        {
            return lfs_json(
                StatusCode::CONFLICT,
                &json!({"lock": existing.json(), "message": "already created lock"}),
            );
        }
        let lock = LfsLock {
            id: format!("{}", state.lfs_locks.len() + 1),
            owner: owner.to_owned(),
            repo: repo.to_owned(),
            path: create.path,
            by,
            locked_at: httpdate::fmt_http_date(std::time::SystemTime::now()),
        };
        let answer = json!({"lock": lock.json()});
        state.lfs_locks.push(lock);
        lfs_json(StatusCode::CREATED, &answer)
    }

    fn lfs_path(&self, owner: &str, repo: &str, oid: &str) -> PathBuf {
        self.config().git_root.join("lfs").join(owner).join(repo).join(oid)
    }

    fn lfs_signature(&self, operation: &str, owner: &str, repo: &str, oid: &str) -> String {
        let mut hash = Sha256::new();
        hash.update(self.state().lfs_secret);
        hash.update(format!("{operation}\n{owner}/{repo}\n{oid}"));
        hex::encode(hash.finalize())
    }

    /// `/_lfs/{owner}/{repo}/{oid}[/verify]`: the storage host. Its own `RemoteAuth` header, no token.
    pub(super) async fn lfs_storage(
        &self,
        method: &Method,
        owner: &str,
        repo: &str,
        oid: &str,
        rest: &[&str],
        req: Request<Incoming>,
    ) -> Response<Body> {
        let operation = match (method, rest) {
            (&Method::GET, []) => "download",
            (&Method::PUT, []) => "upload",
            (&Method::POST, ["verify"]) => "verify",
            _ => return lfs_error(StatusCode::NOT_FOUND, "Not Found"),
        };
        let expected = format!("RemoteAuth {}", self.lfs_signature(operation, owner, repo, oid));
        let given = req.headers().get(header::AUTHORIZATION).map(HeaderValue::as_bytes);
        if !valid_oid(oid) || given != Some(expected.as_bytes()) {
            return lfs_error(
                StatusCode::FORBIDDEN,
                "The action's Authorization header is missing or wrong",
            );
        }
        let flight = self.lfs_enter().await;
        let path = self.lfs_path(owner, repo, oid);
        match operation {
            "download" => download(&path, flight).await,
            "upload" => {
                let injected = {
                    let mut state = self.state();
                    state
                        .lfs_object_failures
                        .remove(oid)
                        .or_else(|| state.lfs_failures.pop_front())
                };
                if let Some(failure) = injected {
                    let _ = req.into_body().collect().await;
                    return injected_response(&failure);
                }
                upload(&path, oid, req).await
            }
            _ => {
                let Ok(body) = req.into_body().collect().await else {
                    return lfs_error(StatusCode::BAD_REQUEST, "The request body could not be read");
                };
                let Ok(pointer) = serde_json::from_slice::<Pointer>(&body.to_bytes()) else {
                    return lfs_error(StatusCode::UNPROCESSABLE_ENTITY, "Invalid verify request");
                };
                match std::fs::metadata(&path) {
                    Ok(meta) if pointer.oid == oid && meta.len() == pointer.size => {
                        lfs_json(StatusCode::OK, &json!({}))
                    }
                    Ok(_) => lfs_error(StatusCode::UNPROCESSABLE_ENTITY, "Object size does not match"),
                    Err(_) => lfs_error(StatusCode::NOT_FOUND, "Object does not exist"),
                }
            }
        }
    }
}

/// One storage request being answered, counted until dropped.
pub(super) struct InFlight(FakeHub);

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut state = self.0.state();
        state.lfs_in_flight = state.lfs_in_flight.saturating_sub(1);
    }
}

impl FakeHub {
    /// Count a storage request in; hold it at the gate `hold_lfs_transfers_until` set, if any, until enough
    /// are in flight (or 10 s pass: then the gate opens for all, so a sequential client is slow, not stuck).
    async fn lfs_enter(&self) -> InFlight {
        let opened = self.inner.lfs_gate.notified();
        let wait = {
            let mut state = self.state();
            state.lfs_in_flight += 1;
            state.lfs_max_in_flight = state.lfs_max_in_flight.max(state.lfs_in_flight);
            match state.lfs_gate {
                Some(n) if state.lfs_in_flight >= n => {
                    state.lfs_gate = None;
                    self.inner.lfs_gate.notify_waiters();
                    false
                }
                Some(_) => true,
                None => false,
            }
        };
        let flight = InFlight(self.clone());
        if wait
            && tokio::time::timeout(std::time::Duration::from_secs(10), opened)
                .await
                .is_err()
        {
            self.state().lfs_gate = None;
            self.inner.lfs_gate.notify_waiters();
        }
        flight
    }
}

/// The object's bytes, streamed; the request counts as in flight until its last byte is handed to the
/// connection. It stops counting just before, so that a client that starts its next transfer on reading the
/// last byte is never counted twice (the pump's next read, which finds the end, can come later).
async fn download(path: &std::path::Path, flight: InFlight) -> Response<Body> {
    let Ok(mut file) = tokio::fs::File::open(path).await else {
        return lfs_error(StatusCode::NOT_FOUND, "Object does not exist");
    };
    let len = file.metadata().await.map_or(0, |m| m.len());
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(async move {
        let mut flight = Some(flight);
        let mut sent = 0u64;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match file.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => {
                    sent += n as u64;
                    if sent >= len {
                        flight.take();
                    }
                    if tx.send(Ok(Bytes::copy_from_slice(&buf[..n]))).await.is_err() {
                        break;
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    break;
                }
            }
        }
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::CONTENT_LENGTH, len)
        .body(crate::git::ChannelBody::new(rx).boxed())
        .expect("valid headers")
}

/// Stream the body into a temporary file beside the object, hashing as it goes; keep it only if the
/// SHA-256 is the oid.
async fn upload(path: &std::path::Path, oid: &str, req: Request<Incoming>) -> Response<Body> {
    let dir = path.parent().expect("an object has a directory");
    if tokio::fs::create_dir_all(dir).await.is_err() {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "storage unavailable");
    }
    let temp = dir.join(format!(".{oid}.{}.tmp", rand::random::<u64>()));
    let Ok(mut file) = tokio::fs::File::create(&temp).await else {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "storage unavailable");
    };
    let mut hash = Sha256::new();
    let mut body = req.into_body();
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            let _ = tokio::fs::remove_file(&temp).await;
            return lfs_error(StatusCode::BAD_REQUEST, "The upload was cut short");
        };
        if let Some(data) = frame.data_ref() {
            hash.update(data);
            if file.write_all(data).await.is_err() {
                let _ = tokio::fs::remove_file(&temp).await;
                return error(StatusCode::INTERNAL_SERVER_ERROR, "storage unavailable");
            }
        }
    }
    if file.flush().await.is_err() || hex::encode(hash.finalize()) != oid {
        let _ = tokio::fs::remove_file(&temp).await;
        return lfs_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "The content does not match the object id",
        );
    }
    if tokio::fs::rename(&temp, path).await.is_err() {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "storage unavailable");
    }
    lfs_json(StatusCode::OK, &json!({}))
}
