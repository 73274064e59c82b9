//! Properties of the parser and policy at the sandbox boundary, over generated input.

use mint_credential::{Request, Target};
use proptest::prelude::*;

fn target() -> Target {
    Target::new("https://github.com", "octo-org/hello-world".parse().expect("valid")).expect("valid")
}

/// Values git could plausibly send, plus hostile bytes.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9._/:-]{0,40}",
        Just("github.com".to_owned()),
        Just("octo-org/hello-world.git".to_owned()),
        Just("https".to_owned()),
        ".{0,40}",
    ]
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("protocol".to_owned()),
        Just("host".to_owned()),
        Just("path".to_owned()),
        Just("url".to_owned()),
        Just("username".to_owned()),
        Just("password".to_owned()),
        Just("wwwauth[]".to_owned()),
        "[a-z_\\[\\]]{1,12}",
    ]
}

proptest! {
    /// Whatever the bytes, decoding and the policy never panic, and nothing approved points elsewhere.
    #[test]
    fn arbitrary_bytes_never_panic(input in proptest::collection::vec(any::<u8>(), 0..2048)) {
        if let Ok(req) = Request::decode(&input) {
            let _ = target().check_get(&req);
            let _ = target().check_erase(&req);
        }
    }

    /// A request is approved only if every way it names a destination names the configured one.
    #[test]
    fn approved_requests_point_at_the_target(lines in proptest::collection::vec((key(), value()), 0..8)) {
        let input = lines.iter().fold(String::new(), |mut out, (k, v)| {
            out.push_str(k);
            out.push('=');
            out.push_str(v);
            out.push('\n');
            out
        });
        let Ok(req) = Request::decode(input.as_bytes()) else { return Ok(()) };
        if target().check_get(&req).is_ok() {
            if let Some(host) = req.host() {
                let host = host.to_ascii_lowercase();
                prop_assert!(host == "github.com" || host == "github.com:443", "{input}");
            }
            if let Some(protocol) = req.protocol() {
                prop_assert!(protocol.eq_ignore_ascii_case("https"), "{input}");
            }
            if let Some(path) = req.path() {
                let path = path.to_string().to_ascii_lowercase();
                prop_assert!(path == "octo-org/hello-world" || path == "octo-org/hello-world.git", "{input}");
            }
            prop_assert!(req.host().is_some() || input.contains("url="), "{input}");
        }
    }

    /// What git writes, mint reads back field for field.
    #[test]
    fn round_trips_gits_fields(
        protocol in "(https|http)",
        host in "[a-z0-9.-]{1,30}(:[0-9]{1,5})?",
        path in "[a-zA-Z0-9._-]{1,20}/[a-zA-Z0-9._-]{1,20}",
        password in "[!-~]{0,80}",
    ) {
        let mut ctx = gix_credentials::protocol::Context {
            protocol: Some(protocol.clone()),
            host: Some(host.clone()),
            path: Some(path.clone().into()),
            ..Default::default()
        };
        if !password.is_empty() {
            ctx.password = Some(password.clone());
        }
        let bytes = ctx.to_bstring();
        let req = Request::decode(&bytes).expect("git's own encoding decodes");
        prop_assert_eq!(req.protocol(), Some(protocol.as_str()));
        prop_assert_eq!(req.host(), Some(host.as_str()));
        prop_assert_eq!(req.path().map(ToString::to_string), Some(path));
        prop_assert_eq!(req.password(), (!password.is_empty()).then_some(password.as_str()));
    }
}
