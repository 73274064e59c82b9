//! The one rule for every URL mint sends a credential or a token to: `https://`, or `http://` only to this
//! machine (fakehub, mint-server or mintd's git proxy on loopback, tests).

use url::Url;

/// Is the URL's host this machine: 127.0.0.0/8, `::1` or `localhost`? The one place `http://` is allowed.
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// Why a URL may not carry a credential. Names only the URL's origin: a path or query (a presigned
/// storage URL) may itself be a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlRuleError {
    #[error(
        "{what} {origin} is plain http to a host that is not loopback: credentials and tokens would cross the network in clear; use https:// (plain http is accepted only to 127.0.0.1, ::1 or localhost)"
    )]
    PlainHttp { what: &'static str, origin: String },
    #[error("{what} {origin} uses {scheme}: use https:// (plain http is accepted only to 127.0.0.1, ::1 or localhost)")]
    Scheme {
        what: &'static str,
        origin: String,
        scheme: String,
    },
}

/// `https://`, or `http://` to a loopback address; `what` names the URL in the error ("the broker",
/// "GitHub URL").
pub fn require_https_or_loopback(url: &Url, what: &'static str) -> Result<(), UrlRuleError> {
    match url.scheme() {
        "https" => Ok(()),
        "http" if is_loopback(url) => Ok(()),
        "http" => Err(UrlRuleError::PlainHttp {
            what,
            origin: origin(url),
        }),
        scheme => Err(UrlRuleError::Scheme {
            what,
            origin: origin(url),
            scheme: scheme.to_owned(),
        }),
    }
}

/// `scheme://host[:port]`: no user, path or query.
fn origin(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => format!("{}://{host}:{port}", url.scheme()),
        None => format!("{}://{host}", url.scheme()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> Url {
        Url::parse(text).expect("url")
    }

    #[test]
    fn loopback_hosts() {
        for (text, loopback) in [
            ("http://127.0.0.1:8080", true),
            ("http://127.1.2.3", true),
            ("http://[::1]:80", true),
            ("http://LOCALHOST", true),
            ("http://localhost.evil.example", false),
            ("http://10.0.0.1", false),
            ("https://mint.example.com", false),
        ] {
            assert_eq!(is_loopback(&url(text)), loopback, "{text}");
        }
    }

    #[test]
    fn https_anywhere_http_only_to_loopback() {
        for ok in [
            "https://github.com",
            "http://127.0.0.1:9",
            "http://[::1]:8080/x",
            "http://localhost",
        ] {
            assert_eq!(require_https_or_loopback(&url(ok), "the broker"), Ok(()), "{ok}");
        }
        let err = require_https_or_loopback(&url("http://mint.example.com:8080/p?sig=SECRET"), "the broker")
            .expect_err("refused");
        let text = err.to_string();
        assert!(
            text.starts_with("the broker http://mint.example.com:8080 is plain http")
                && text.contains("in clear")
                && text.contains("use https://"),
            "{text}"
        );
        assert!(!text.contains("SECRET"), "the query is never shown: {text}");
        let err = require_https_or_loopback(&url("ftp://127.0.0.1/"), "GitHub URL").expect_err("refused");
        assert!(
            matches!(err, UrlRuleError::Scheme { ref scheme, .. } if scheme == "ftp"),
            "{err}"
        );
    }
}
