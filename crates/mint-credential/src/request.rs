//! Strict decoding of one credential request (what git writes to a helper's stdin).

use bstr::{BStr, ByteSlice};
use gix_credentials::protocol::{Context, ContextOptions};

/// Requests larger than this are refused unread: git's are a few hundred bytes.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// Keys that may appear at most once. `wwwauth[]`, `state[]` and `capability[]` are multi-valued by design.
const SINGLE_VALUED: &[&str] = &[
    "protocol",
    "host",
    "path",
    "username",
    "password",
    "password_expiry_utc",
    "oauth_refresh_token",
    "url",
    "quit",
    "authtype",
    "credential",
    "ephemeral",
    "continue",
];

/// Why a request was refused before any policy was applied.
///
/// Messages name the line or key at fault, never a value: a value may be a password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error(
        "credential request is {len} bytes, over the {MAX_REQUEST_BYTES}-byte limit: git's requests are a few hundred bytes"
    )]
    TooLarge { len: usize },
    #[error("credential request line {line} contains a NUL byte")]
    Nul { line: usize },
    #[error("credential request line {line} contains a carriage return")]
    CarriageReturn { line: usize },
    #[error("credential request line {line} has no '=': expected key=value")]
    NoEquals { line: usize },
    #[error("credential request names {key:?} more than once")]
    Duplicate { key: String },
    #[error("credential request line {line} is not valid UTF-8")]
    NotUtf8 { line: usize },
    #[error("credential request could not be decoded: expected git's key=value lines")]
    Malformed,
}

/// A credential request that passed the strict checks and was decoded by `gix-credentials`.
#[derive(Clone)]
pub struct Request {
    pub(crate) ctx: Context,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ctx = &self.ctx;
        f.debug_struct("Request")
            .field("protocol", &ctx.protocol)
            .field("host", &ctx.host)
            .field("path", &ctx.path)
            .field("url", &ctx.url)
            .field("username", &ctx.username)
            .field("password", &ctx.password.as_ref().map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}

impl Request {
    /// Decode `input`, refusing anything a well-behaved git would never send.
    pub fn decode(input: &[u8]) -> Result<Self, DecodeError> {
        if input.len() > MAX_REQUEST_BYTES {
            return Err(DecodeError::TooLarge { len: input.len() });
        }
        let mut seen: Vec<&[u8]> = Vec::new();
        for (index, line) in input.split(|&b| b == b'\n').enumerate() {
            let line_no = index + 1;
            if line.contains(&0) {
                return Err(DecodeError::Nul { line: line_no });
            }
            if line.contains(&b'\r') {
                return Err(DecodeError::CarriageReturn { line: line_no });
            }
            // A blank line ends the request, as in git. Whatever follows is ignored by the decoder, so it
            // is ignored here too, except for the byte checks above which cover the whole input.
            if line.is_empty() {
                continue;
            }
            let Some(eq) = line.find_byte(b'=') else {
                return Err(DecodeError::NoEquals { line: line_no });
            };
            if std::str::from_utf8(line).is_err() {
                return Err(DecodeError::NotUtf8 { line: line_no });
            }
            let key = &line[..eq];
            if SINGLE_VALUED.iter().any(|k| k.as_bytes() == key) {
                if seen.contains(&key) {
                    return Err(DecodeError::Duplicate {
                        key: String::from_utf8_lossy(key).into_owned(),
                    });
                }
                seen.push(key);
            }
        }
        let ctx = Context::from_bytes(input, ContextOptions { protect_protocol: true })
            .map_err(|_| DecodeError::Malformed)?;
        Ok(Self { ctx })
    }

    pub fn protocol(&self) -> Option<&str> {
        self.ctx.protocol.as_deref()
    }

    pub fn host(&self) -> Option<&str> {
        self.ctx.host.as_deref()
    }

    pub fn path(&self) -> Option<&BStr> {
        self.ctx.path.as_ref().map(AsRef::as_ref)
    }

    /// The password git sent (with `erase` and `store`). Callers must treat it as a secret.
    pub fn password(&self) -> Option<&str> {
        self.ctx.password.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_what_git_sends() {
        let req = Request::decode(
            b"protocol=https\nhost=github.com\npath=octo/hello.git\nwwwauth[]=Basic realm=\"GitHub\"\n\n",
        )
        .expect("valid");
        assert_eq!(req.protocol(), Some("https"));
        assert_eq!(req.host(), Some("github.com"));
        assert_eq!(req.path().map(ToString::to_string), Some("octo/hello.git".into()));
    }

    #[test]
    fn refuses_hostile_input() {
        let cases: &[(&[u8], DecodeError)] = &[
            (b"protocol=https\nhost=github.com\0\n", DecodeError::Nul { line: 2 }),
            (
                b"protocol=https\r\nhost=github.com\n",
                DecodeError::CarriageReturn { line: 1 },
            ),
            (b"protocol=https\nhost\n", DecodeError::NoEquals { line: 2 }),
            (
                b"protocol=https\nhost=github.com\nhost=evil.example\n",
                DecodeError::Duplicate { key: "host".into() },
            ),
            (
                b"protocol=https\nhost=gith\xffub.com\n",
                DecodeError::NotUtf8 { line: 2 },
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(Request::decode(input).unwrap_err(), *expected, "{:?}", input.as_bstr());
        }
        let big = vec![b'a'; MAX_REQUEST_BYTES + 1];
        assert!(matches!(Request::decode(&big), Err(DecodeError::TooLarge { .. })));
    }

    #[test]
    fn multi_valued_keys_may_repeat() {
        Request::decode(b"protocol=https\nhost=github.com\nwwwauth[]=Basic\nwwwauth[]=Bearer\n").expect("valid");
    }

    #[test]
    fn errors_and_debug_never_show_the_password() {
        let req = Request::decode(b"protocol=https\nhost=github.com\npassword=hunter2-secret\n").expect("valid");
        assert!(!format!("{req:?}").contains("hunter2"));
        let err = Request::decode(b"password=hunter2-secret\npassword=hunter2-secret\n").unwrap_err();
        assert!(!err.to_string().contains("hunter2"));
        let err = Request::decode(b"password=hunter2-secret\0\n").unwrap_err();
        assert!(!err.to_string().contains("hunter2"));
    }
}
