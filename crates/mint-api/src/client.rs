//! One request per connection over the unix socket, HTTP/1.1, `Connection: close`.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::{REASON_HEADER, Status, route};

/// mintd's answers are small; a larger one means something else is on the socket.
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;
/// The waits before each new try of a request mintd shed (closed unanswered): 0.3 s in all.
const SHED_WAITS: [Duration; 3] = [
    Duration::from_millis(20),
    Duration::from_millis(60),
    Duration::from_millis(200),
];

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "no mintd is listening on {} ({source}): mintd is not running there; start it, or point --socket or MINT_SOCKET at its socket",
        socket.display()
    )]
    NotRunning { socket: PathBuf, source: std::io::Error },
    #[error(
        "not allowed to open mintd's socket {} ({source}): this user is not the sandbox's; run as the user mintd serves (its --allow-uid), in the socket's group (its --socket-group)",
        socket.display()
    )]
    NoAccess { socket: PathBuf, source: std::io::Error },
    #[error("talking to mintd on {} failed: {source}", socket.display())]
    Io { socket: PathBuf, source: std::io::Error },
    #[error("mintd on {} gave an answer that is not HTTP: {reason}", socket.display())]
    BadResponse { socket: PathBuf, reason: String },
    #[error("mintd on {} answered {status}: {message}", socket.display())]
    Status {
        socket: PathBuf,
        status: u16,
        message: String,
    },
}

/// An answer from mintd.
pub struct Response {
    pub status: u16,
    /// The `mint-reason` header: why a request was refused or failed.
    pub reason: Option<String>,
    /// The `Link` header (GitHub's pagination, through mintd's API endpoint).
    pub link: Option<String>,
    pub body: Vec<u8>,
}

impl std::fmt::Debug for Response {
    // The body of a credential answer holds a token: never print it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Response")
            .field("status", &self.status)
            .field("reason", &self.reason)
            .field("link", &self.link)
            .field("body_len", &self.body.len())
            .finish()
    }
}

/// A blocking client for mintd's socket.
#[derive(Debug, Clone)]
pub struct Client {
    socket: PathBuf,
    timeout: Duration,
}

impl Client {
    /// `timeout` bounds each read and write; a `get` on a cold daemon waits for GitHub, so allow for it.
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        Self {
            socket: socket.into(),
            timeout: Duration::from_secs(60),
        }
    }

    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Send one request and read the whole answer. A request that changes nothing (a `GET`, a credential
    /// request) is sent again, after a short wait, when mintd closed the connection without answering: it
    /// does so when its connection slots are all taken (a flood from another process of the sandbox), and
    /// a moment later one is free.
    pub fn request(&self, method: &str, path: &str, body: &[u8]) -> Result<Response, ClientError> {
        let idempotent = method == "GET"
            || [route::CREDENTIAL_GET, route::CREDENTIAL_STORE, route::CREDENTIAL_ERASE].contains(&path);
        let mut waits = SHED_WAITS.iter();
        loop {
            match self.request_once(method, path, body) {
                Err(ClientError::Io { source, .. })
                    if idempotent
                        && matches!(
                            source.kind(),
                            std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
                        )
                        && let Some(wait) = waits.next() =>
                {
                    std::thread::sleep(*wait);
                }
                other => return other,
            }
        }
    }

    fn request_once(&self, method: &str, path: &str, body: &[u8]) -> Result<Response, ClientError> {
        let io = |source| ClientError::Io {
            socket: self.socket.clone(),
            source,
        };
        let mut stream = UnixStream::connect(&self.socket).map_err(|source| {
            let socket = self.socket.clone();
            if source.kind() == std::io::ErrorKind::PermissionDenied {
                ClientError::NoAccess { socket, source }
            } else {
                ClientError::NotRunning { socket, source }
            }
        })?;
        stream.set_read_timeout(Some(self.timeout)).map_err(io)?;
        stream.set_write_timeout(Some(self.timeout)).map_err(io)?;
        // The head and the body in one buffer, so one write: a credential request is one system call.
        let mut request = Vec::with_capacity(128 + body.len());
        write!(
            request,
            "{method} {path} HTTP/1.1\r\nHost: mintd\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .map_err(io)?;
        request.extend_from_slice(body);
        stream.write_all(&request).map_err(io)?;
        self.read_response(&mut stream)
    }

    /// Read until the answer is whole by its `Content-Length`, not until mintd closes the connection: the
    /// answer usually arrives in one read, and the helper need not wait for mintd to get round to closing.
    fn read_response(&self, stream: &mut impl Read) -> Result<Response, ClientError> {
        let mut raw = Vec::new();
        let mut filled = 0;
        loop {
            if filled == raw.len() {
                if filled >= MAX_RESPONSE_BYTES {
                    return Err(self.bad(format!("an answer over {MAX_RESPONSE_BYTES} bytes")));
                }
                raw.resize((filled + 4096).min(MAX_RESPONSE_BYTES), 0);
            }
            let n = match stream.read(&mut raw[filled..]) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(ClientError::Io {
                        socket: self.socket.clone(),
                        source,
                    });
                }
            };
            filled += n;
            let head = parse_head(&raw[..filled], n == 0).map_err(|reason| self.bad(reason))?;
            match head {
                Parsed::Whole(head) => {
                    raw.truncate(head.body.end);
                    raw.drain(..head.body.start);
                    return Ok(Response {
                        status: head.status,
                        reason: head.reason,
                        link: head.link,
                        body: raw,
                    });
                }
                Parsed::Partial(why) if n == 0 => return Err(self.bad(why)),
                Parsed::Partial(_) => {}
            }
        }
    }

    fn bad(&self, reason: impl Into<String>) -> ClientError {
        ClientError::BadResponse {
            socket: self.socket.clone(),
            reason: reason.into(),
        }
    }

    /// `GET /v1/status`.
    pub fn status(&self) -> Result<Status, ClientError> {
        let response = self.request("GET", route::STATUS, b"")?;
        if response.status != 200 {
            return Err(ClientError::Status {
                socket: self.socket.clone(),
                status: response.status,
                message: response.reason.unwrap_or_default(),
            });
        }
        serde_json::from_slice(&response.body).map_err(|e| ClientError::BadResponse {
            socket: self.socket.clone(),
            reason: format!("status JSON: {e}"),
        })
    }
}

/// Parse one whole HTTP/1.1 answer from mintd, as read up to the end of the connection: status, the
/// `mint-reason` header, the body cut to its `Content-Length`. The error says what is wrong, never echoing
/// the body (it may hold a token).
pub fn parse_response(raw: &[u8]) -> Result<Response, String> {
    match parse_head(raw, true)? {
        Parsed::Whole(head) => Ok(Response {
            status: head.status,
            reason: head.reason,
            link: head.link,
            body: raw[head.body].to_vec(),
        }),
        Parsed::Partial(why) => Err(why),
    }
}

/// An answer's head, and where its body lies in the bytes read.
struct Head {
    status: u16,
    reason: Option<String>,
    link: Option<String>,
    body: std::ops::Range<usize>,
}

enum Parsed {
    Whole(Head),
    /// More is to come, or, if the connection has ended, why the answer is not whole.
    Partial(String),
}

/// Whether `raw` holds a whole answer yet (`ended`: the connection has ended, nothing more will come); an
/// error for bytes that are not one.
fn parse_head(raw: &[u8], ended: bool) -> Result<Parsed, String> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    let head_len = match response.parse(raw) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(Parsed::Partial("the answer ended early".into())),
        Err(e) => return Err(e.to_string()),
    };
    // httparse takes any three digits ("020" is 20); only real HTTP statuses mean anything here.
    let status = response
        .code
        .filter(|code| (100..=599).contains(code))
        .ok_or("no valid HTTP status code")?;
    let mut length = None;
    let mut reason = None;
    let mut link = None;
    for header in response.headers.iter() {
        if header.name.eq_ignore_ascii_case("content-length") {
            let len: usize = std::str::from_utf8(header.value)
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .ok_or("unreadable content-length")?;
            length = Some(len);
        } else if header.name.eq_ignore_ascii_case(REASON_HEADER) {
            reason = Some(String::from_utf8_lossy(header.value).into_owned());
        } else if header.name.eq_ignore_ascii_case("link") {
            link = Some(String::from_utf8_lossy(header.value).into_owned());
        }
    }
    let available = raw.len() - head_len;
    // Without a length the body runs to the end of the connection, except where HTTP says there is none.
    let length = length.or((status == 204 || status == 304 || status < 200).then_some(0));
    let end = match length {
        Some(len) if available < len => {
            return Ok(Parsed::Partial(format!("body ended after {available} of {len} bytes")));
        }
        Some(len) => head_len + len,
        None if ended => raw.len(),
        None => return Ok(Parsed::Partial("the answer ended early".into())),
    };
    Ok(Parsed::Whole(Head {
        status,
        reason,
        link,
        body: head_len..end,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_mintds_answers_and_refuses_what_is_not_http() {
        let ok = parse_response(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nmint-reason: fine\r\n\r\nhello!!")
            .expect("parses");
        assert_eq!(
            (ok.status, ok.reason.as_deref(), &ok.body[..]),
            (200, Some("fine"), &b"hello"[..])
        );
        // Found by fuzzing: a status of "020" is three digits but no HTTP status.
        assert!(parse_response(b"HTTP/1.1 020 OK\r\ncontent-length: 0\r\n\r\n").is_err());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\nshort").is_err());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\n").is_err());
    }

    /// A server on a real unix socket that answers each connection with `answer` and then keeps it open
    /// until the test is done with it.
    fn answering_without_closing(name: &str, answer: &'static [u8]) -> (PathBuf, std::sync::mpsc::Sender<()>) {
        let dir = std::env::temp_dir().join(format!("mint-api-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let socket = dir.join("mintd.sock");
        let listener = std::os::unix::net::UnixListener::bind(&socket).expect("bind");
        let (done, wait) = std::sync::mpsc::channel::<()>();
        std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().expect("accept");
            let mut request = [0; 1024];
            let _ = conn.read(&mut request);
            conn.write_all(answer).expect("answer");
            let _ = wait.recv();
            let _ = std::fs::remove_dir_all(dir);
        });
        (socket, done)
    }

    #[test]
    fn an_answer_is_read_as_soon_as_it_is_whole_not_when_mintd_closes() {
        // Regression: the client read to the end of the connection, so every helper run waited for mintd to
        // get round to closing it (and an extra read). Here the server never closes: the old client timed out.
        for (name, answer, body) in [
            (
                "length",
                &b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nmint-reason: fine\r\n\r\nhello"[..],
                &b"hello"[..],
            ),
            ("no-content", b"HTTP/1.1 204 No Content\r\n\r\n", b""),
        ] {
            let (socket, done) = answering_without_closing(name, answer);
            let started = std::time::Instant::now();
            let response = Client::new(&socket)
                .with_timeout(Duration::from_secs(3))
                .request("POST", route::CREDENTIAL_GET, b"protocol=https\n")
                .expect("a whole answer needs no close");
            assert!(
                started.elapsed() < Duration::from_secs(2),
                "{name}: {:?}",
                started.elapsed()
            );
            assert_eq!(&response.body[..], body, "{name}");
            let _ = done.send(());
        }
    }

    /// A server that closes its first `shed` connections unanswered, with the request unread (the kernel
    /// resets them), as mintd does past its reserve, then answers 200; how many connections it took.
    fn shedding(name: &str, shed: usize) -> (PathBuf, std::thread::JoinHandle<usize>) {
        let dir = std::env::temp_dir().join(format!("mint-api-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let socket = dir.join("mintd.sock");
        let listener = std::os::unix::net::UnixListener::bind(&socket).expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let server = std::thread::spawn(move || {
            let mut taken = 0;
            let deadline = std::time::Instant::now() + Duration::from_secs(2);
            while std::time::Instant::now() < deadline {
                let Ok((mut conn, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                taken += 1;
                if taken > shed {
                    conn.set_nonblocking(false).expect("blocking");
                    let _ = conn.read(&mut [0; 1024]);
                    let _ = conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
                    break;
                }
                // Let the request arrive, then close with it unread.
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = std::fs::remove_dir_all(dir);
            taken
        });
        (socket, server)
    }

    #[test]
    fn a_credential_request_mintd_shed_is_sent_again_and_a_pull_request_is_not() {
        let (socket, server) = shedding("shed-get", 2);
        let response = Client::new(&socket)
            .request("POST", route::CREDENTIAL_GET, b"protocol=https\n")
            .expect("answered on the third connection");
        assert_eq!(&response.body[..], b"ok");
        assert_eq!(server.join().expect("server"), 3);

        let (socket, server) = shedding("shed-pulls", 1);
        let error = Client::new(&socket)
            .request("POST", route::PULLS, b"{}")
            .expect_err("a pull request is not sent twice");
        assert!(matches!(error, ClientError::Io { .. }), "{error}");
        drop(UnixStream::connect(&socket));
        assert_eq!(
            server.join().expect("server"),
            2,
            "one pull request, then the test's own connection"
        );
    }

    #[test]
    fn an_answer_cut_short_by_the_close_is_refused() {
        // A body shorter than its length, then the close: an error naming why, not a hang.
        let dir = std::env::temp_dir().join(format!("mint-api-short-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let socket = dir.join("mintd.sock");
        let listener = std::os::unix::net::UnixListener::bind(&socket).expect("bind");
        let server = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().expect("accept");
            let mut request = [0; 1024];
            let _ = conn.read(&mut request);
            conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\nshort")
                .expect("answer");
        });
        let error = Client::new(&socket)
            .with_timeout(Duration::from_secs(3))
            .request("GET", route::STATUS, b"")
            .expect_err("cut short");
        assert!(error.to_string().contains("body ended after 5 of 9 bytes"), "{error}");
        server.join().expect("server");
        let _ = std::fs::remove_dir_all(dir);
    }
}
