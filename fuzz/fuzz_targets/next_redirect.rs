//! Where a browser is sent after signing in (`/login?next=…`): whatever `next` holds (control characters,
//! backslashes, percent-encodings, `//`, `/\`, schemes), the answer is a path that, resolved from any page of
//! the site as a browser resolves a `Location`, stays on the site's origin.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mint_service::redirect::same_origin_path;
use url::Url;

fuzz_target!(|data: &[u8]| {
    let Ok(next) = std::str::from_utf8(data) else {
        return;
    };
    let public = Url::parse("https://mint.example.com").expect("url");
    if let Some(path) = same_origin_path(&public, next) {
        assert!(path.starts_with('/') && !path.starts_with("//") && !path.starts_with("/\\"), "{path:?}");
        assert!(!path.bytes().any(|b| b.is_ascii_control()), "{path:?}");
        for page in ["/", "/products/prd_1/integrations", "/github/oauth/callback?code=x"] {
            let from = public.join(page).expect("url");
            let landed = from.join(&path).expect("a path resolves");
            assert_eq!(landed.origin(), public.origin(), "{next:?} → {path:?} left the site from {page}");
        }
        // Idempotent: the answer, given again, is itself.
        assert_eq!(same_origin_path(&public, &path).as_deref(), Some(path.as_str()));
    }
});
