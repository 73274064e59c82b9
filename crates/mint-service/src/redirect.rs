//! Where a person goes after signing in: `next` is resolved against `--public-url` as a browser would
//! resolve it (the WHATWG URL parser: tabs and newlines dropped, backslashes read as slashes, dot segments
//! removed) and followed only if it stays on mint-server's own origin. A path that looked local but is
//! not (`/%09/evil.example`, `/\evil.example`, `//evil.example`) is refused, never "cleaned".

use url::{Position, Url};

/// The longest `next` followed.
pub const MAX_NEXT: usize = 512;

/// The path (with its query) to send the browser to, on `public`'s origin; `None` when `next` would
/// leave it.
pub fn same_origin_path(public: &Url, next: &str) -> Option<String> {
    if next.len() > MAX_NEXT || !next.starts_with('/') {
        return None;
    }
    let resolved = public.join(next).ok()?;
    if resolved.origin() != public.origin() || resolved.cannot_be_a_base() {
        return None;
    }
    let path = &resolved[Position::BeforePath..Position::AfterQuery];
    // What is sent back must itself resolve to the same place from any page of the site, and be followed
    // again if it comes back as `next` (percent-encoding may have made it longer than what was given).
    (path.len() <= MAX_NEXT && path.starts_with('/') && !path.starts_with("//") && !path.starts_with("/\\"))
        .then(|| path.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn public() -> Url {
        Url::parse("https://mint.example.com").expect("url")
    }

    #[test]
    fn local_paths_are_kept_and_everything_else_is_refused() {
        for (next, want) in [
            ("/products/prd_1/integrations", Some("/products/prd_1/integrations")),
            ("/?flash=connected", Some("/?flash=connected")),
            ("/a/../b", Some("/b")),
            ("/%09/evil.example/phish", Some("/%09/evil.example/phish")),
        ] {
            assert_eq!(same_origin_path(&public(), next).as_deref(), want, "{next:?}");
        }
        for next in [
            "//evil.example/phish",
            "/\t/evil.example/phish",
            "/\n/evil.example",
            "/\\evil.example",
            "\\\\evil.example",
            "https://evil.example/",
            "javascript:alert(1)",
            "evil.example",
            "",
            "/\r\n/evil.example",
        ] {
            assert_eq!(same_origin_path(&public(), next), None, "{next:?} left the site");
        }
        assert_eq!(same_origin_path(&public(), &format!("/{}", "a".repeat(MAX_NEXT))), None);
    }

    #[test]
    fn an_answer_is_followed_again_as_it_is() {
        // Found by the next_redirect fuzz target: mostly form feeds, file separators and NULs.
        let crash: &[u8] = b"/.\x0c\x0c\x0c\x0c\x0c\x0c\x0c\x0c\x0c\x0c\x0c\x0c\x0c\x0c\x0c\x0c\x0c\x0cC\x00\x00\x00\x0c\x0c\x0c\x0c\x1c\x1c\x1c\x1c\x1c\x1c\x1c\x1c\x1c\x1c\x1c\x1c\x1c\x1c\x1c\x1c\x1c\x1c\x1c\x1c\x1c\x1c\x1c\x1c\x1c\x1c\x1c\x1c\x1c\x1c\x1c\x1c\x1c\x1c\x1c\x1c\x1c\x1c\x1c\x1c\x1c\x1c\x1c\x0c\x0c\x0c\x0c\x0c\x0c\x0c\x0c\x0c\x0c\x0c\x0c\x0c\x0c\x0c\x0c\x0c\x0c\x0c\x0c\x0c\x0c\x0c\x0c\x0c\x0c\x0c\x0c\x0c\x0c\x0c\x0c\x0c\x0c\x0c\x0c\x0c\x0c\x0c\x0c\x0c\x0c\x0c\x0c\x0c\x0c\x0c\x0c\x0c\x0c\x0c\x0c\x0c\x0c\x0c\x0c\x0c\x0c\x0c\x0c\x0c\x0c\x0c\x0c\x0c\x0c\x0c\x0c\x0c\x0c\x0c\x0c\x0c\x0c\x0c!\x0c\x0c\x0c\x0c\x0c\x0c\x00\x00\x00\x00\x00\x00\x00\x0c\x0c\x0c\x0c\x0c\x0c\x0c\x0c\x0c\x0c\x0c\x0c\x0c\x0c\x0c\x00@";
        let next = std::str::from_utf8(crash).expect("utf-8");
        let answer = same_origin_path(&public(), next);
        if let Some(path) = &answer {
            assert!(path.len() <= MAX_NEXT, "{} bytes", path.len());
            assert_eq!(
                same_origin_path(&public(), path).as_deref(),
                Some(path.as_str()),
                "{path:?}"
            );
        }
    }

    #[test]
    fn the_answer_stays_on_the_site_whatever_page_resolves_it() {
        let public = public();
        let page = public.join("/products/prd_1/integrations").expect("url");
        for next in ["/x", "/x?y=1", "/%2F%2Fevil.example", "/.%2E/x"] {
            let path = same_origin_path(&public, next).expect("local");
            assert_eq!(
                page.join(&path).expect("url").origin(),
                public.origin(),
                "{next:?} → {path:?}"
            );
        }
    }
}
