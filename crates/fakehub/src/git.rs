//! Git smart HTTP through the real `git http-backend` (CGI), streamed both ways so large pushes never sit
//! in memory; and the bare repositories behind it.

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::Stdio;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use hyper::body::{Frame, Incoming};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::server::{Body, text};

/// CGI headers from http-backend are a few hundred bytes; more means something is wrong.
const MAX_CGI_HEADER: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    Read,
    Write,
}

/// `info/refs?service=…`, `git-upload-pack`, `git-receive-pack` under `/{owner}/{repo}(.git)/`.
pub(crate) fn is_git_route(method: &Method, rest: &[&str], query: Option<&str>) -> bool {
    match (method, rest) {
        (&Method::GET, ["info", "refs"]) => service(query).is_some(),
        (&Method::POST, ["git-upload-pack" | "git-receive-pack"]) => true,
        _ => false,
    }
}

fn service(query: Option<&str>) -> Option<&str> {
    query?
        .split('&')
        .find_map(|kv| kv.strip_prefix("service="))
        .filter(|s| matches!(*s, "git-upload-pack" | "git-receive-pack"))
}

/// Pushing needs write access; both the advertisement and the pack POST of receive-pack count as pushing.
pub(crate) fn access(rest: &[&str], query: Option<&str>) -> Access {
    if rest == ["git-receive-pack"] || service(query) == Some("git-receive-pack") {
        Access::Write
    } else {
        Access::Read
    }
}

/// A response body fed by a channel: the CGI's stdout, as it arrives.
pub(crate) struct ChannelBody {
    rx: mpsc::Receiver<Result<Bytes, std::io::Error>>,
}

impl ChannelBody {
    pub(crate) fn new(rx: mpsc::Receiver<Result<Bytes, std::io::Error>>) -> Self {
        Self { rx }
    }
}

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        self.rx.poll_recv(cx).map(|chunk| chunk.map(|r| r.map(Frame::data)))
    }
}

/// The CGI environment of `git http-backend` for one request; nothing inherited but `PATH`.
/// The request body into the CGI's stdin; a body that fails or ends before its `Content-Length` is reported
/// through `cut_short` instead of closing stdin.
async fn feed_stdin(
    mut body: Incoming,
    mut stdin: tokio::process::ChildStdin,
    announced: Option<u64>,
    cut_short: std::sync::Arc<tokio::sync::Notify>,
) {
    let mut sent: u64 = 0;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            cut_short.notify_one();
            return;
        };
        if let Ok(data) = frame.into_data() {
            sent += data.len() as u64;
            if stdin.write_all(&data).await.is_err() {
                break;
            }
        }
    }
    if announced.is_some_and(|n| sent < n) {
        cut_short.notify_one();
        return;
    }
    let _ = stdin.shutdown().await;
}

/// `$(git --exec-path)/git-http-backend`, found once.
fn http_backend_program() -> &'static Path {
    static PROGRAM: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    PROGRAM.get_or_init(|| {
        let exec_path = std::process::Command::new("git")
            .arg("--exec-path")
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
        match exec_path {
            Some(dir) => Path::new(&dir).join("git-http-backend"),
            // No git: spawning fails and the request says git http-backend could not be started.
            None => std::path::PathBuf::from("git-http-backend"),
        }
    })
}

fn backend_command(
    root: &Path,
    path_info: &str,
    query: Option<&str>,
    remote_user: &str,
    parts: &http::request::Parts,
) -> tokio::process::Command {
    // The program itself, not `git http-backend`: the git wrapper would run it as a child of its own, which
    // kill_on_drop (a client gone mid-request, fakehub stopped) would leave running.
    let mut command = tokio::process::Command::new(http_backend_program());
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", root)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_PROJECT_ROOT", root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("PATH_INFO", path_info)
        .env("REQUEST_METHOD", parts.method.as_str())
        .env("QUERY_STRING", query.unwrap_or(""))
        .env("REMOTE_USER", remote_user)
        .env("REMOTE_ADDR", "127.0.0.1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (header, var) in [
        (header::CONTENT_TYPE.as_str(), "CONTENT_TYPE"),
        (header::CONTENT_LENGTH.as_str(), "CONTENT_LENGTH"),
        (header::CONTENT_ENCODING.as_str(), "HTTP_CONTENT_ENCODING"),
        ("git-protocol", "GIT_PROTOCOL"),
    ] {
        if let Some(value) = parts.headers.get(header).and_then(|v| v.to_str().ok()) {
            command.env(var, value);
        }
    }
    command
}

/// Run `git http-backend` for one request.
pub(crate) async fn http_backend(
    root: &Path,
    path_info: &str,
    query: Option<&str>,
    remote_user: &str,
    req: Request<Incoming>,
) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let mut child = match backend_command(root, path_info, query, remote_user, &parts).spawn() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot run git http-backend");
            return text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "git http-backend could not be started\n",
            );
        }
    };
    let stdin = child.stdin.take().expect("stdin is piped");
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let mut stderr = child.stderr.take().expect("stderr is piped");

    // Request body → CGI stdin, concurrently with reading its stdout (a large push would deadlock otherwise).
    // A body cut short (the client went away mid-upload) kills the CGI: git http-backend waits for all of
    // CONTENT_LENGTH and would otherwise outlive the request, and fakehub.
    let cut_short = std::sync::Arc::new(tokio::sync::Notify::new());
    let notify = std::sync::Arc::clone(&cut_short);
    let announced: Option<u64> = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    tokio::spawn(feed_stdin(body, stdin, announced, notify));
    tokio::spawn(async move {
        let mut log = Vec::new();
        let _ = stderr.read_to_end(&mut log).await;
        if !log.is_empty() {
            tracing::debug!(stderr = %String::from_utf8_lossy(&log), "git http-backend");
        }
    });

    // CGI header block, then the body as it streams.
    let mut head = Vec::with_capacity(1024);
    let mut buf = vec![0u8; 64 * 1024];
    let (head_end, body_start) = loop {
        if let Some(ends) = find_header_end(&head) {
            break ends;
        }
        if head.len() > MAX_CGI_HEADER {
            return text(StatusCode::BAD_GATEWAY, "git http-backend sent an oversized header\n");
        }
        let read = tokio::select! {
            read = stdout.read(&mut buf) => read,
            () = cut_short.notified() => {
                let _ = child.start_kill();
                return text(StatusCode::BAD_REQUEST, "the request body was cut short\n");
            }
        };
        match read {
            Ok(0) | Err(_) => return text(StatusCode::BAD_GATEWAY, "git http-backend ended without an answer\n"),
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    };
    let rest = head.split_off(body_start);
    let response = cgi_response(&head[..head_end]);
    let (tx, rx) = mpsc::channel(8);
    tokio::spawn(async move {
        if !rest.is_empty() && tx.send(Ok(Bytes::from(rest))).await.is_err() {
            return;
        }
        loop {
            let read = tokio::select! {
                read = stdout.read(&mut buf) => read,
                () = cut_short.notified() => {
                    let _ = child.start_kill();
                    break;
                }
            };
            match read {
                Ok(0) => break,
                Ok(n) => {
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
        let _ = child.wait().await;
    });
    response
        .body(ChannelBody { rx }.boxed())
        .unwrap_or_else(|_| text(StatusCode::BAD_GATEWAY, "git http-backend sent an invalid header\n"))
}

/// A response builder from the CGI header block: `Status:` sets the status, other headers are copied.
fn cgi_response(head: &[u8]) -> http::response::Builder {
    let mut response = Response::builder().status(StatusCode::OK);
    for line in String::from_utf8_lossy(head).lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code = value.split_whitespace().next().and_then(|c| c.parse::<u16>().ok());
            response = response.status(
                code.and_then(|c| StatusCode::from_u16(c).ok())
                    .unwrap_or(StatusCode::OK),
            );
        } else if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            response = response.header(name, value);
        }
    }
    response
}

/// End of the CGI header block: (end of headers, start of body), for `\r\n\r\n` or `\n\n`.
fn find_header_end(buf: &[u8]) -> Option<(usize, usize)> {
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| (i, i + 4));
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| (i, i + 2));
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

/// The commit a branch points at, if it exists.
pub(crate) fn branch_sha(repo: &Path, branch: &str) -> Option<String> {
    let out = std::process::Command::new("git")
        .arg("--git-dir")
        .arg(repo)
        .args(["rev-parse", "--verify", "--quiet"])
        .arg(format!("refs/heads/{branch}^{{commit}}"))
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Whether `head` has commits that `base` lacks.
pub(crate) fn has_commits_beyond(repo: &Path, base: &str, head: &str) -> bool {
    std::process::Command::new("git")
        .arg("--git-dir")
        .arg(repo)
        .args(["merge-base", "--is-ancestor", head, base])
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .status()
        .is_ok_and(|s| !s.success())
}

/// `(sha, subject)` of the commits on `head` and not on `base`, oldest first.
pub(crate) fn commit_subjects(repo: &Path, base: &str, head: &str) -> Vec<(String, String)> {
    let Ok(out) = std::process::Command::new("git")
        .arg("--git-dir")
        .arg(repo)
        .args(["log", "--reverse", "--format=%H %s"])
        .arg(format!("{base}..{head}"))
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
    else {
        return Vec::new();
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| line.split_once(' '))
        .map(|(sha, subject)| (sha.to_owned(), subject.to_owned()))
        .collect()
}

/// The pull request's changes as GitHub's "Files changed" shows them: each file's path with its patch
/// (`git diff base...head`, the merge base against the head).
pub(crate) fn changed_files(repo: &Path, base: &str, head: &str) -> Vec<(String, String)> {
    let Ok(out) = std::process::Command::new("git")
        .arg("--git-dir")
        .arg(repo)
        .args(["diff", "--no-color", "--no-ext-diff", "--patch"])
        .arg(format!("{base}...{head}"))
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
    else {
        return Vec::new();
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let mut files: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("diff --git a/") {
            let path = rest.split_once(" b/").map_or(rest, |(_, b)| b);
            files.push((path.to_owned(), String::new()));
        } else if let Some((_, patch)) = files.last_mut()
            && (!patch.is_empty() || line.starts_with("@@"))
        {
            patch.push_str(line);
            patch.push('\n');
        }
    }
    files
}

/// The branch `HEAD` points at in a bare repository.
pub(crate) fn default_branch(repo: &Path) -> Option<String> {
    let head = std::fs::read_to_string(repo.join("HEAD")).ok()?;
    head.trim().strip_prefix("ref: refs/heads/").map(ToOwned::to_owned)
}

/// A bare repository with `main` holding one commit, made with the git CLI in an isolated environment.
pub(crate) fn create_repo(path: &Path, name: &str) -> anyhow::Result<PathBuf> {
    use anyhow::Context as _;
    let scratch = tempfile_dir(path)?;
    let git = |dir: &Path, args: &[&str]| -> anyhow::Result<()> {
        let out = std::process::Command::new("git")
            .args(args)
            .current_dir(dir)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", dir)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_AUTHOR_NAME", "fakehub")
            .env("GIT_AUTHOR_EMAIL", "fakehub@example.invalid")
            .env("GIT_COMMITTER_NAME", "fakehub")
            .env("GIT_COMMITTER_EMAIL", "fakehub@example.invalid")
            .output()
            .context("running git")?;
        anyhow::ensure!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    };
    std::fs::create_dir_all(path.parent().context("a repository path has a parent")?)?;
    let path_str = path.to_str().context("repository paths are UTF-8")?;
    git(&scratch, &["init", "-q", "--bare", "-b", "main", path_str])?;
    let work = scratch.join("work");
    std::fs::create_dir_all(&work)?;
    git(&work, &["init", "-q", "-b", "main"])?;
    std::fs::write(
        work.join("README.md"),
        format!("# {name}\n\nA repository on fakehub.\n"),
    )?;
    git(&work, &["add", "README.md"])?;
    git(&work, &["commit", "-q", "-m", "Initial commit"])?;
    git(&work, &["push", "-q", path_str, "main"])?;
    std::fs::remove_dir_all(&scratch)?;
    Ok(path.to_owned())
}

fn tempfile_dir(near: &Path) -> anyhow::Result<PathBuf> {
    let parent = near.parent().unwrap_or(near);
    std::fs::create_dir_all(parent)?;
    let mut suffix = [0u8; 8];
    rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut suffix);
    let dir = parent.join(format!(".scratch-{:x}", u64::from_be_bytes(suffix)));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// git plumbing in a bare repository, isolated from the machine's config; stdout on success.
fn plumbing(repo: &Path, args: &[&str], env: &[(&str, &Path)], input: Option<&[u8]>) -> Result<String, String> {
    use std::io::Write as _;
    let mut command = std::process::Command::new("git");
    command
        .arg("--git-dir")
        .arg(repo)
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "fakehub")
        .env("GIT_AUTHOR_EMAIL", "fakehub@example.invalid")
        .env("GIT_COMMITTER_NAME", "fakehub")
        .env("GIT_COMMITTER_EMAIL", "fakehub@example.invalid")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    for (k, v) in env {
        command.env(k, v);
    }
    let mut child = command.spawn().map_err(|e| e.to_string())?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(input.unwrap_or_default());
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

/// Merge branch `head` into branch `base` with a merge commit (no work tree: `merge-tree --write-tree`),
/// moving `base` to it. Returns the merge commit.
pub(crate) fn merge(repo: &Path, base: &str, head: &str, message: &str) -> Result<String, String> {
    let base_sha = branch_sha(repo, base).ok_or("the base branch is gone")?;
    let head_sha = branch_sha(repo, head).ok_or("the head branch is gone")?;
    let tree = plumbing(repo, &["merge-tree", "--write-tree", &base_sha, &head_sha], &[], None)
        .map_err(|_| "merge conflict".to_owned())?;
    let tree = tree.lines().next().unwrap_or_default().to_owned();
    let commit = plumbing(
        repo,
        &["commit-tree", &tree, "-p", &base_sha, "-p", &head_sha, "-m", message],
        &[],
        None,
    )?;
    plumbing(
        repo,
        &["update-ref", &format!("refs/heads/{base}"), &commit, &base_sha],
        &[],
        None,
    )?;
    Ok(commit)
}

/// `(sha, committer date, message)` of a commit.
pub(crate) fn commit_info(repo: &Path, sha: &str) -> Option<(String, String, String)> {
    if !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let out = plumbing(
        repo,
        &["show", "-s", "--format=%H%n%cI%n%B", &format!("{sha}^{{commit}}")],
        &[],
        None,
    )
    .ok()?;
    let mut lines = out.splitn(3, '\n');
    let sha = lines.next()?.to_owned();
    let date = lines.next()?.to_owned();
    let message = lines.next().unwrap_or_default().trim().to_owned();
    // GitHub gives times in UTC with a Z.
    let date = humantime::parse_rfc3339_weak(&date)
        .ok()
        .or_else(|| {
            let (local, offset) = date.split_at(date.len().checked_sub(6)?);
            let t = humantime::parse_rfc3339_weak(local).ok()?;
            let sign = if offset.starts_with('-') { -1 } else { 1 };
            let h: i64 = offset.get(1..3)?.parse().ok()?;
            let m: i64 = offset.get(4..6)?.parse().ok()?;
            let shift = std::time::Duration::from_secs(u64::try_from((h * 3600 + m * 60).abs()).ok()?);
            Some(if sign > 0 { t - shift } else { t + shift })
        })
        .map_or(date, |t| humantime::format_rfc3339_seconds(t).to_string());
    Some((sha, date, message))
}

/// A file's bytes and blob id at a ref.
pub(crate) fn read_file(repo: &Path, git_ref: &str, path: &str) -> Option<(Vec<u8>, String)> {
    if git_ref.starts_with('-') || path.starts_with('-') {
        return None;
    }
    let blob = plumbing(
        repo,
        &["rev-parse", "--verify", "--quiet", &format!("{git_ref}:{path}")],
        &[],
        None,
    )
    .ok()?;
    let out = std::process::Command::new("git")
        .arg("--git-dir")
        .arg(repo)
        .args(["cat-file", "blob", &blob])
        .output()
        .ok()?;
    out.status.success().then_some((out.stdout, blob))
}

/// A commit on `branch` writing `content` at `path`, as the contents API makes one. `(commit, blob)`.
pub(crate) fn write_file(
    repo: &Path,
    branch: &str,
    path: &str,
    content: &[u8],
    message: &str,
) -> Result<(String, String), String> {
    if path.starts_with('-')
        || path
            .split('/')
            .any(|s| s.is_empty() || s == "." || s == ".." || s == ".git")
    {
        return Err(format!("invalid path {path:?}"));
    }
    let parent = branch_sha(repo, branch).ok_or_else(|| format!("Branch {branch} not found"))?;
    let blob = plumbing(repo, &["hash-object", "-w", "--stdin"], &[], Some(content))?;
    let index = repo.join(format!("fakehub-index-{}", rand::random::<u64>()));
    let env = [("GIT_INDEX_FILE", index.as_path())];
    let result = (|| {
        plumbing(repo, &["read-tree", &parent], &env, None)?;
        plumbing(
            repo,
            &["update-index", "--add", "--cacheinfo", &format!("100644,{blob},{path}")],
            &env,
            None,
        )?;
        let tree = plumbing(repo, &["write-tree"], &env, None)?;
        let commit = plumbing(repo, &["commit-tree", &tree, "-p", &parent, "-m", message], &[], None)?;
        plumbing(
            repo,
            &["update-ref", &format!("refs/heads/{branch}"), &commit, &parent],
            &[],
            None,
        )?;
        Ok(commit)
    })();
    let _ = std::fs::remove_file(&index);
    result.map(|commit| (commit, blob))
}
