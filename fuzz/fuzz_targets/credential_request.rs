//! What git (or anything in the sandbox) writes to the helper: decoding never panics, nothing refused gets
//! through, and whatever is approved names the configured scheme, host and repository.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mint_credential::{Request, Target};

fuzz_target!(|data: &[u8]| {
    let target = Target::new("https://github.com", "octo-org/hello-world".parse().expect("valid")).expect("valid");
    let Ok(request) = Request::decode(data) else { return };
    // Every byte the strict checks forbid was refused above.
    assert!(!data.contains(&0) && !data.contains(&b'\r'));
    if target.check_get(&request).is_ok() {
        if let Some(host) = request.host() {
            let host = host.to_ascii_lowercase();
            assert!(host == "github.com" || host == "github.com:443", "approved host {host:?}");
        }
        if let Some(protocol) = request.protocol() {
            assert!(protocol.eq_ignore_ascii_case("https"));
        }
        if let Some(path) = request.path() {
            let path = path.to_string().to_ascii_lowercase();
            assert!(path == "octo-org/hello-world" || path == "octo-org/hello-world.git", "approved path {path:?}");
        }
    }
    // Round trip: the fields mint read, written back in git's format, read back the same.
    let mut again = String::new();
    for (key, value) in [("protocol", request.protocol()), ("host", request.host()), ("password", request.password())] {
        if let Some(value) = value {
            again.push_str(&format!("{key}={value}\n"));
        }
    }
    if let Some(path) = request.path() {
        again.push_str(&format!("path={path}\n"));
    }
    let reread = Request::decode(again.as_bytes()).expect("mint's own reading re-encodes cleanly");
    assert_eq!(reread.protocol(), request.protocol());
    assert_eq!(reread.host(), request.host());
    assert_eq!(reread.password(), request.password());
    assert_eq!(reread.path(), request.path());
});
