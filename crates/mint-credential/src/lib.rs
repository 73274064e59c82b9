//! The git credential helper protocol as mintd reads it, and the policy that decides which requests get a token.
//!
//! Decoding is done by `gix-credentials`; this crate adds the strictness a security boundary needs on top
//! (no NUL/CR, no duplicated keys, no line without `=`, a size cap) and the policy: only the configured
//! GitHub host and, when git names one, only the configured repository.

mod request;
mod target;

pub use request::{DecodeError, MAX_REQUEST_BYTES, Request};
pub use target::{Approved, Decline, EraseApproved, RepoName, RepoNameError, Server, Target, TargetError};

/// The username GitHub expects with an installation token over HTTPS.
pub const TOKEN_USERNAME: &str = "x-access-token";

/// Encode the answer to a `get`: `username`, `password` and `password_expiry_utc`, nothing else.
///
/// The token is opaque (GitHub's newer tokens are ~520 characters with dots). A value that would break
/// the protocol (a newline, NUL or CR) is refused rather than written.
///
/// Written straight into the answer's bytes rather than through `gix_credentials`' `Context`, whose
/// `password` is a plain `String` that its derived `Debug` prints: the token is copied only into the
/// answer. The tests check that `gix_credentials` reads the answer back as written.
pub fn encode_answer(token: &str, expiry_unix_seconds: u64) -> Result<Vec<u8>, EncodeError> {
    if token.bytes().any(|b| matches!(b, b'\n' | b'\r' | 0)) || i64::try_from(expiry_unix_seconds).is_err() {
        return Err(EncodeError);
    }
    let expiry = expiry_unix_seconds.to_string();
    let fields = [
        ("username", TOKEN_USERNAME),
        ("password", token),
        ("password_expiry_utc", expiry.as_str()),
    ];
    let mut out = Vec::with_capacity(fields.iter().map(|(k, v)| k.len() + v.len() + 2).sum());
    for (key, value) in fields {
        out.extend_from_slice(key.as_bytes());
        out.push(b'=');
        out.extend_from_slice(value.as_bytes());
        out.push(b'\n');
    }
    Ok(out)
}

/// The token held a byte the credential protocol cannot carry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the token holds a newline, NUL or carriage return and cannot be handed to git")]
pub struct EncodeError;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answer_has_exactly_the_three_fields() {
        let token = format!("ghs_1_{}.{}.{}", "a".repeat(200), "b".repeat(200), "c".repeat(100));
        let out = encode_answer(&token, 1_700_000_000).expect("encodes");
        assert_eq!(
            String::from_utf8(out).expect("utf8"),
            format!("username=x-access-token\npassword={token}\npassword_expiry_utc=1700000000\n")
        );
        for bad in ["a\nb", "a\rb", "a\0b"] {
            assert_eq!(encode_answer(bad, 1), Err(EncodeError), "{bad:?}");
        }
        assert_eq!(encode_answer("t", u64::MAX), Err(EncodeError));
    }

    #[test]
    fn git_reads_the_answer_back_as_written() {
        let token = "ghs_1_aaaa.bbbb=cccc";
        let out = encode_answer(token, 1_700_000_000).expect("encodes");
        let read =
            gix_credentials::protocol::Context::from_bytes(&out, gix_credentials::protocol::ContextOptions::default())
                .expect("decodes");
        assert_eq!(read.username.as_deref(), Some(TOKEN_USERNAME));
        assert_eq!(read.password.as_deref(), Some(token));
        assert_eq!(read.password_expiry_utc, Some(1_700_000_000));
    }
}
