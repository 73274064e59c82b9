//! What a broker answers to mintd's token request: decoding never panics, a token that is accepted grants
//! nothing beyond the least permissions on exactly one repository and came in mint-api's `TokenAnswer`, a
//! token handed back for revocation is one the answer carried, never one made up; and the same bytes as an
//! error answer (mint-api's `ErrorBody`) are worded without a control character.
#![no_main]

use libfuzzer_sys::fuzz_target;
use http::{HeaderMap, StatusCode};
use mint_api::broker::TokenAnswer;
use mint_daemon::broker::{decode_answer, decode_error};
use mint_github::Permissions;

fuzz_target!(|data: &[u8]| {
    match decode_answer(data, None) {
        Ok(answer) => {
            let wire: TokenAnswer = serde_json::from_slice(data).expect("a served answer is the contract's type");
            assert_eq!(wire.token, answer.minted.token.expose());
            assert!(answer.minted.permissions.excess_over(&Permissions::least()).is_empty());
            assert!(answer.minted.token.expose().bytes().all(|b| b.is_ascii_graphic()));
            assert!(!answer.minted.lifetime().is_zero());
            // serde_json skips unknown keys without checking them, so this stricter reading may fail.
            if let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) {
                assert_eq!(
                    value["repository"].as_str().map(str::to_owned),
                    Some(answer.repository.to_string()),
                    "the one repository named is the one served"
                );
                assert_ne!(value["repository_selection"].as_str(), Some("all"));
            }
        }
        Err(failure) => {
            // Without JSON escapes the token's bytes stand in the answer as they are.
            if let Some(token) = failure.token
                && !data.contains(&b'\\')
            {
                let token = token.expose().as_bytes();
                assert!(
                    data.windows(token.len()).any(|w| w == token),
                    "only a carried token is handed back"
                );
            }
        }
    }
    for status in [StatusCode::CONFLICT, StatusCode::SERVICE_UNAVAILABLE, StatusCode::UNAUTHORIZED] {
        let words = decode_error("https://mint.example.com", status, &HeaderMap::new(), data).to_string();
        assert!(!words.chars().any(char::is_control), "{words:?}");
    }
});
