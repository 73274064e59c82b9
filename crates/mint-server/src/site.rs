//! The Integrations page's settings: where browsers reach mint-server, the App's OAuth client and slug, the
//! webhook secrets, the sign-in limit, and the GitHub URLs built from them. Loaded once by the configuration;
//! read by the pages, the webhook and the shared state.

use std::time::Duration;

use mint_github::{OAuthApp, percent_encode};

/// Sign-ins one client address may start: a burst, then one per interval.
pub const LOGIN_BURST: u32 = 10;
pub const LOGIN_EVERY: Duration = Duration::from_secs(6);
/// The Integrations page's settings (all of `--public-url`, `--app-slug`, `--client-id`,
/// `--client-secret-file`, `--webhook-secret-file`).
pub struct Web {
    /// Where browsers reach mint-server, without a trailing slash.
    pub public_url: String,
    /// The same, parsed: the origin every redirect must stay on.
    pub public: url::Url,
    /// `--behind-tls-proxy`: the client's address is the last `X-Forwarded-For` entry, not the peer's.
    pub trust_forwarded_for: bool,
    /// `/login` per client address.
    pub logins: crate::limit::PerAddress,
    /// GitHub's web host (the OAuth and install pages).
    pub github_url: String,
    pub app_slug: String,
    /// The numeric App id, to pick this App's installations out of a user's.
    pub app_id: u64,
    pub oauth: OAuthApp,
    /// The current webhook secret, then the next one during a rotation.
    pub webhook_secrets: Vec<zeroize::Zeroizing<Vec<u8>>>,
    /// A client for the web host: the OAuth code exchange is not on the API host.
    pub web_client: mint_github::GitHubClient,
    /// The API, for the user's own calls.
    pub api_client: mint_github::GitHubClient,
}

impl std::fmt::Debug for Web {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Web")
            .field("public_url", &self.public_url)
            .field("app_slug", &self.app_slug)
            .field("oauth", &self.oauth)
            .finish_non_exhaustive()
    }
}

impl Web {
    pub(crate) fn callback_url(&self) -> String {
        format!("{}/github/oauth/callback", self.public_url)
    }

    /// GitHub's authorize page for this `state`, with the PKCE challenge of its `verifier`.
    pub(crate) fn authorize_url(&self, state: &str, verifier: &str) -> String {
        use base64::Engine as _;
        use sha2::Digest as _;
        let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier));
        format!(
            "{}/login/oauth/authorize?client_id={}&redirect_uri={}&state={}&code_challenge={challenge}&code_challenge_method=S256",
            self.github_url,
            percent_encode(&self.oauth.client_id),
            percent_encode(&self.callback_url()),
            percent_encode(state)
        )
    }

    /// Where to go after sign-in: `next` if it stays on this site, else the home page.
    pub(crate) fn next_path(&self, next: Option<&str>) -> String {
        next.and_then(|n| mint_service::redirect::same_origin_path(&self.public, n))
            .unwrap_or_else(|| "/".to_owned())
    }

    pub(crate) fn install_url(&self, state: &str) -> String {
        format!(
            "{}/apps/{}/installations/new?state={}",
            self.github_url,
            percent_encode(&self.app_slug),
            percent_encode(state)
        )
    }
}
