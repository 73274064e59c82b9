//! Log lines a hostile sandbox can neither forge nor flood.
//!
//! Anything a client sent (ref names, credential-request fields, branch names, paths, reasons quoting
//! them) reaches a log field only through [`Untrusted`], which escapes it and cuts it short: the text format
//! writes fields raw, so a newline or an escape code in a ref name would otherwise start a line of its own.
//! Events a client can repeat at will are logged through [`Throttle`]: the first [`LOG_BURST`] per
//! [`LOG_WINDOW`], then one summary with the count; `/metrics` counts every one.

use std::fmt;

pub use mint_service::throttle::{LOG_BURST, LOG_WINDOW, LogKind, Throttle};

/// Characters of a client's string kept in a log line; the rest is counted, not written.
pub const UNTRUSTED_MAX_CHARS: usize = 200;

/// A client-supplied string, for a log field: control and other unprintable characters escaped as
/// `escape_debug` does (quotes and backslashes kept), and at most [`UNTRUSTED_MAX_CHARS`] characters of it.
pub struct Untrusted<'a>(pub &'a str);

impl fmt::Display for Untrusted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut chars = self.0.chars();
        for c in chars.by_ref().take(UNTRUSTED_MAX_CHARS) {
            // Quotes and backslashes cannot break a line: left as they are, "the agent's branches" reads
            // as written, and a reason that already escaped its quote (`host "a\u{1b}"`) is not escaped twice.
            if matches!(c, '\'' | '"' | '\\') {
                fmt::Write::write_char(f, c)?;
            } else {
                fmt::Display::fmt(&c.escape_debug(), f)?;
            }
        }
        let rest = chars.count();
        if rest > 0 {
            write!(f, "…({rest} more characters)")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Untrusted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Event kinds a client can repeat at will, as `/metrics` labels them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Repeated {
    /// A credential request for another repository or host.
    CredentialDeclined,
    /// A credential request that did not parse.
    CredentialMalformed,
    /// A connection from a uid not allowed.
    ConnectionRefused,
    /// `accept` failed (typically: out of file descriptors).
    AcceptFailed,
    /// One ref of a push the policy refused.
    PushRefused,
    /// A pull-request request with bad inputs.
    PullRefused,
    /// A connection over every cap, closed at once; or one dropped because it stopped reading.
    ConnectionShed,
    /// A GitHub API request the policy refused.
    ApiRefused,
}

impl Repeated {
    pub const ALL: [Repeated; 8] = [
        Repeated::CredentialDeclined,
        Repeated::CredentialMalformed,
        Repeated::ConnectionRefused,
        Repeated::AcceptFailed,
        Repeated::PushRefused,
        Repeated::PullRefused,
        Repeated::ConnectionShed,
        Repeated::ApiRefused,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Repeated::CredentialDeclined => "credential_declined",
            Repeated::CredentialMalformed => "credential_malformed",
            Repeated::ConnectionRefused => "connection_refused",
            Repeated::AcceptFailed => "accept_failed",
            Repeated::PushRefused => "push_refused",
            Repeated::PullRefused => "pull_refused",
            Repeated::ConnectionShed => "connection_shed",
            Repeated::ApiRefused => "api_refused",
        }
    }
}

/// mintd's repeated events, throttled by mint-service's [`Throttle`] (shared with mint-server).
impl LogKind for Repeated {
    fn label(self) -> &'static str {
        Repeated::label(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn untrusted_strings_cannot_start_a_line_or_send_escape_codes() {
        let forged = "refs/heads/x\n2026-01-01T00:00:00Z  INFO minted installation token\x1b[2K\r\u{2028}'\"\\";
        let shown = Untrusted(forged).to_string();
        assert!(!shown.chars().any(char::is_control), "{shown}");
        assert_eq!(
            shown,
            r#"refs/heads/x\n2026-01-01T00:00:00Z  INFO minted installation token\u{1b}[2K\r\u{2028}'"\"#
        );
        let long = "a".repeat(10_000);
        assert_eq!(
            Untrusted(&long).to_string(),
            format!("{}…(9800 more characters)", "a".repeat(200))
        );
    }
}
