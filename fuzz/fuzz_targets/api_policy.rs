//! mintd's API policy reads whatever the sandbox sends to its GitHub API endpoint: a method, a path, a query,
//! headers and a body (a GraphQL document, a JSON write). Judging never panics; whatever passes names only
//! the configured repository, a write carries no query, a merge never passes; and the path mint sends on,
//! judged again, gets the same verdict (the canonical form is a fixed point). Which GraphQL mutations pass is
//! held by the unit tests (`api_policy::tests`); here a document's verdict must at least be deterministic.
//!
//! Input: one byte picks the method, then the path up to a newline, the query up to a newline, an optional
//! method-override line (`!` first), and the rest is the body.
#![no_main]

use http::{HeaderMap, HeaderValue, Method};
use libfuzzer_sys::fuzz_target;
use mint_daemon::api_policy::{Scope, judge};

const SCOPE: Scope<'static> = Scope { owner: "octo-org", name: "hello-world", prefix: "adagent/" };
const METHODS: [Method; 7] =
    [Method::GET, Method::HEAD, Method::POST, Method::PUT, Method::PATCH, Method::DELETE, Method::OPTIONS];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else { return };
    let method = &METHODS[usize::from(pick) % METHODS.len()];
    let mut parts = rest.splitn(3, |b| *b == b'\n');
    let (Some(path), Some(query)) = (parts.next(), parts.next()) else { return };
    let mut body = parts.next().unwrap_or_default();
    let (Ok(path), Ok(query)) = (std::str::from_utf8(path), std::str::from_utf8(query)) else { return };
    let mut headers = HeaderMap::new();
    if let Some(line) = body.strip_prefix(b"!") {
        let (value, tail) = line.split_at(line.iter().position(|b| *b == b'\n').unwrap_or(line.len()));
        if let Ok(value) = HeaderValue::from_bytes(value) {
            headers.insert("x-http-method-override", value);
        }
        body = tail;
    }
    let query = (!query.is_empty()).then_some(query);
    let Ok(judged) = judge(method, path, query, &headers, body, &SCOPE) else { return };
    assert!(headers.is_empty(), "a method override passed");
    match &judged.path_and_query {
        Some(upstream) => {
            let (upstream_path, upstream_query) =
                upstream.split_once('?').map_or((upstream.as_str(), None), |(p, q)| (p, Some(q)));
            assert!(
                upstream_path == "/repos/octo-org/hello-world" || upstream_path.starts_with("/repos/octo-org/hello-world/"),
                "passed for another repository: {upstream}"
            );
            assert!(!upstream_path.contains("//") && !upstream_path.ends_with('/'), "{upstream}");
            if !judged.read {
                assert!(upstream_query.is_none(), "a write with a query passed: {upstream}");
                let lower = upstream_path.to_ascii_lowercase();
                let root = "/repos/octo-org/hello-world";
                let merge = (lower.starts_with(&format!("{root}/pulls/")) && lower.ends_with("/merge"))
                    || lower == format!("{root}/merges");
                assert!(!merge, "a merge passed: {upstream}");
            }
            // Round trip: the canonical request is judged the same.
            let again = judge(method, upstream_path, upstream_query, &headers, body, &SCOPE).expect("the canonical form passes");
            assert_eq!(again, judged, "the canonical form is judged differently");
        }
        None => {
            // GraphQL: the verdict depends on the bytes alone.
            let again = judge(method, path, query, &headers, body, &SCOPE).expect("passes again");
            assert_eq!(again, judged);
        }
    }
});
