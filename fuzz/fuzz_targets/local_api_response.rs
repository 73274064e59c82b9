//! What the helper reads back from the socket: parsing never panics, and a body is never longer than its
//! `Content-Length` says.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(response) = mint_api::parse_response(data) {
        assert!((100..=599).contains(&response.status));
        assert!(response.body.len() <= data.len());
    }
});
