//! What GitHub answers to a token request: decoding never panics, and a token that passes the scope check
//! grants nothing beyond what was asked, for exactly the one repository.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mint_github::{Operation, Permissions, check_scope, decode_minted};

fuzz_target!(|data: &[u8]| {
    let op = Operation::Mint {
        installation_id: 42,
        repo: "octo-org/hello-world".into(),
    };
    let Ok(minted) = decode_minted(&op, data) else { return };
    assert!(minted.token.expose().bytes().all(|b| b.is_ascii_graphic()), "a served token is protocol-safe");
    let asked = Permissions::least();
    if check_scope(&minted, "octo-org/hello-world", &asked).is_ok() {
        assert!(minted.permissions.excess_over(&asked).is_empty());
        let repos = minted.repositories.as_deref().expect("a scoped token lists its repository");
        assert_eq!(repos.len(), 1);
        assert!(repos[0].full_name.eq_ignore_ascii_case("octo-org/hello-world"));
        assert_ne!(minted.repository_selection.as_deref(), Some("all"));
    }
});
