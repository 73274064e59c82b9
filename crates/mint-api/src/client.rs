//! One request per connection over the unix socket, HTTP/1.1, `Connection: close`.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::{REASON_HEADER, Status, route};

/// mintd's answers are small; a larger one means something else is on the socket.
const MAX_RESPONSE_BYTES: u64 = 1024 * 1024;

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
    pub body: Vec<u8>,
}

impl std::fmt::Debug for Response {
    // The body of a credential answer holds a token: never print it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Response")
            .field("status", &self.status)
            .field("reason", &self.reason)
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

    /// Send one request and read the whole answer.
    pub fn request(&self, method: &str, path: &str, body: &[u8]) -> Result<Response, ClientError> {
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
        let mut request = Vec::with_capacity(128 + body.len());
        request.extend_from_slice(
            format!(
                "{method} {path} HTTP/1.1\r\nHost: mintd\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        );
        request.extend_from_slice(body);
        stream.write_all(&request).map_err(io)?;
        let mut raw = Vec::with_capacity(2048);
        stream.take(MAX_RESPONSE_BYTES).read_to_end(&mut raw).map_err(io)?;
        self.parse(&raw)
    }

    fn parse(&self, raw: &[u8]) -> Result<Response, ClientError> {
        parse_response(raw).map_err(|reason| ClientError::BadResponse {
            socket: self.socket.clone(),
            reason,
        })
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

/// Parse one whole HTTP/1.1 answer from mintd: status, the `mint-reason` header, the body cut to its
/// `Content-Length`. The error says what is wrong, never echoing the body (it may hold a token).
pub fn parse_response(raw: &[u8]) -> Result<Response, String> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    let head_len = match response.parse(raw) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Err("the answer ended early".into()),
        Err(e) => return Err(e.to_string()),
    };
    // httparse takes any three digits ("020" is 20); only real HTTP statuses mean anything here.
    let status = response
        .code
        .filter(|code| (100..=599).contains(code))
        .ok_or("no valid HTTP status code")?;
    let mut body = raw[head_len..].to_vec();
    let mut reason = None;
    for header in response.headers.iter() {
        if header.name.eq_ignore_ascii_case("content-length") {
            let len: usize = std::str::from_utf8(header.value)
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .ok_or("unreadable content-length")?;
            if body.len() < len {
                return Err(format!("body ended after {} of {len} bytes", body.len()));
            }
            body.truncate(len);
        } else if header.name.eq_ignore_ascii_case(REASON_HEADER) {
            reason = Some(String::from_utf8_lossy(header.value).into_owned());
        }
    }
    Ok(Response { status, reason, body })
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
}
