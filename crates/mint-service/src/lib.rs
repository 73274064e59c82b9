//! What mint's network services share: where a browser may be sent after signing in, and which hosts plain
//! `http://` may reach. Small and dependency-light, so the fuzz targets can build it alone.

pub mod redirect;

/// Is the URL's host this machine: 127.0.0.0/8, `::1` or `localhost`? The one place `http://` is allowed.
pub fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for (url, loopback) in [
            ("http://127.0.0.1:8080", true),
            ("http://127.1.2.3", true),
            ("http://[::1]:80", true),
            ("http://LOCALHOST", true),
            ("http://localhost.evil.example", false),
            ("http://10.0.0.1", false),
            ("https://mint.example.com", false),
        ] {
            assert_eq!(is_loopback(&url::Url::parse(url).expect("url")), loopback, "{url}");
        }
    }
}
