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
pub fn encode_answer(token: &str, expiry_unix_seconds: u64) -> Result<Vec<u8>, EncodeError> {
    let answer = gix_credentials::protocol::Context {
        username: Some(TOKEN_USERNAME.into()),
        password: Some(token.into()),
        password_expiry_utc: Some(i64::try_from(expiry_unix_seconds).map_err(|_| EncodeError)?),
        ..Default::default()
    };
    let mut out = Vec::with_capacity(token.len() + 80);
    answer.write_to(&mut out).map_err(|_| EncodeError)?;
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
        assert_eq!(encode_answer("a\nb", 1), Err(EncodeError));
    }
}
