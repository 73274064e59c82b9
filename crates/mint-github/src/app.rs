//! The GitHub App as mint uses it: mint a scoped token, check GitHub granted no more, revoke it.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime};

use http::{HeaderMap, Method, StatusCode};
use secrecy::ExposeSecret;

use crate::client::RawResponse;
use crate::types::{ErrorBody, TokenResponse};
use crate::{
    AppId, AppKey, GitHubClient, GithubError, InstallationToken, MintedToken, Operation, Permissions, PullRequest,
    TokenRequest,
};

/// GitHub granted more than was asked; the token is revoked, never served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    #[error("permissions {excess:?} were not requested")]
    Permissions { excess: Vec<String> },
    #[error("the token covers {got} instead of only {want}")]
    Repositories { want: String, got: String },
}

/// What `POST /pulls` came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PullOutcome {
    Created(PullRequest),
    /// GitHub answered 422 "A pull request already exists for …".
    AlreadyExists,
}

/// A GitHub App: its id, its private key and a client for its API.
#[derive(Debug)]
pub struct App {
    pub(crate) id: AppId,
    pub(crate) keys: AppKeys,
    pub(crate) client: GitHubClient,
    /// Seconds to add to this machine's clock to get GitHub's, learnt from a 401's `Date` header.
    clock_offset: AtomicI64,
}

/// The App's signing key, replaceable while the App serves (a rotation), and the JWT it last signed. A
/// cheap handle: clones share the key, so a reloader can hold one while the App is owned elsewhere.
#[derive(Clone, Debug)]
pub struct AppKeys(std::sync::Arc<std::sync::Mutex<CurrentKey>>);

#[derive(Debug)]
struct CurrentKey {
    signer: std::sync::Arc<dyn crate::Signer>,
    fingerprint: Option<crate::KeyFingerprint>,
    generation: u64,
    /// The last JWT signed, with GitHub's time when it was: RS256 signing is most of a mint's CPU (and an
    /// HSM's round trip), and one JWT serves every request for minutes.
    cached_jwt: Option<(std::sync::Arc<crate::Jwt>, SystemTime)>,
}

/// What [`AppKeys::replace`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyChange {
    /// The new signer holds the key already in use (same fingerprint): it signs from now on, the generation
    /// and the cached JWT stay.
    Same,
    /// A different key signs from now on; the cached JWT was dropped and the generation bumped.
    Replaced {
        old: Option<crate::KeyFingerprint>,
        new: Option<crate::KeyFingerprint>,
        generation: u64,
    },
}

impl AppKeys {
    fn new(signer: Box<dyn crate::Signer>) -> Self {
        let fingerprint = signer.fingerprint();
        Self(std::sync::Arc::new(std::sync::Mutex::new(CurrentKey {
            signer: signer.into(),
            fingerprint,
            generation: 0,
            cached_jwt: None,
        })))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CurrentKey> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Sign with `signer` from now on. The swap waits for a JWT being signed with the old key, so no JWT of
    /// the old key is cached after this returns: once a new key is logged, the old one can be deleted on
    /// GitHub.
    pub fn replace(&self, signer: Box<dyn crate::Signer>) -> KeyChange {
        let fingerprint = signer.fingerprint();
        let mut current = self.lock();
        current.signer = signer.into();
        if fingerprint.is_some() && fingerprint == current.fingerprint {
            return KeyChange::Same;
        }
        let old = std::mem::replace(&mut current.fingerprint, fingerprint.clone());
        current.generation += 1;
        current.cached_jwt = None;
        KeyChange::Replaced {
            old,
            new: fingerprint,
            generation: current.generation,
        }
    }

    /// The fingerprint of the key that signs now (`SHA256:…`, as GitHub shows it), if the signer tells.
    pub fn fingerprint(&self) -> Option<crate::KeyFingerprint> {
        self.lock().fingerprint.clone()
    }

    /// Bumped each time a different key is installed.
    pub fn generation(&self) -> u64 {
        self.lock().generation
    }

    fn signer(&self) -> (u64, std::sync::Arc<dyn crate::Signer>) {
        let current = self.lock();
        (current.generation, current.signer.clone())
    }
}

/// A JWT is reused for this long after signing (it is valid for nine minutes, backdated one).
const JWT_REUSE: Duration = Duration::from_secs(5 * 60);

/// A difference between GitHub's clock and ours below this is noise (the `Date` header has 1 s resolution,
/// and the JWT is backdated 60 s anyway).
const SKEW_TOLERANCE: Duration = Duration::from_secs(30);

impl App {
    pub fn new(id: AppId, key: AppKey, client: GitHubClient) -> Self {
        Self::with_signer(id, Box::new(key), client)
    }

    /// An App whose JWTs some other [`crate::Signer`] signs (e.g. a KMS holding the key).
    pub fn with_signer(id: AppId, signer: Box<dyn crate::Signer>, client: GitHubClient) -> Self {
        Self {
            id,
            keys: AppKeys::new(signer),
            client,
            clock_offset: AtomicI64::new(0),
        }
    }

    /// The App's key, to replace it while the App serves (see [`AppKeys::replace`]).
    pub fn keys(&self) -> AppKeys {
        self.keys.clone()
    }

    /// An App JWT with at least four minutes of life, signed with GitHub's clock as far as we know it.
    /// Signed once per [`JWT_REUSE`] at most; a clock correction or a new key signs anew. Signing happens
    /// under the key's lock, so concurrent requests wait for one signature instead of each making one.
    pub(crate) fn jwt(&self) -> Result<std::sync::Arc<crate::Jwt>, GithubError> {
        let now = self.github_now();
        let mut current = self.keys.lock();
        if let Some((jwt, signed)) = current.cached_jwt.as_ref()
            && now.duration_since(*signed).is_ok_and(|age| age < JWT_REUSE)
        {
            return Ok(jwt.clone());
        }
        let jwt = std::sync::Arc::new(
            current
                .signer
                .app_jwt(&self.id, now)
                .map_err(|e| GithubError::Jwt(e.to_string()))?,
        );
        current.cached_jwt = Some((jwt.clone(), now));
        Ok(jwt)
    }

    /// GitHub's idea of now, as far as we know it.
    pub(crate) fn github_now(&self) -> SystemTime {
        shift(SystemTime::now(), self.clock_offset.load(Ordering::Relaxed))
    }

    /// The seconds currently added to the local clock when signing JWTs.
    pub fn clock_offset(&self) -> i64 {
        self.clock_offset.load(Ordering::Relaxed)
    }

    /// After a 401 on the App JWT: if GitHub's `Date` shows our clock is off, adopt GitHub's clock for
    /// signing and say so (the caller then retries once). `false` means the 401 is about the key or id.
    pub fn correct_clock(&self, server_date: SystemTime) -> bool {
        let local = SystemTime::now();
        let offset = match server_date.duration_since(local) {
            Ok(ahead) => i64::try_from(ahead.as_secs()).unwrap_or(i64::MAX),
            Err(behind) => -i64::try_from(behind.duration().as_secs()).unwrap_or(i64::MAX),
        };
        let current = self.clock_offset.load(Ordering::Relaxed);
        if offset.abs_diff(current) < SKEW_TOLERANCE.as_secs() {
            return false;
        }
        tracing::warn!(
            offset_s = offset,
            "this machine's clock differs from GitHub's; signing App JWTs with GitHub's time (fix NTP on this host)"
        );
        self.clock_offset.store(offset, Ordering::Relaxed);
        // The cached JWT was signed with the wrong clock.
        self.keys.lock().cached_jwt = None;
        true
    }

    /// The current key's RS256 signature of `message` (see [`crate::Signer::sign_rs256`]).
    pub fn sign_rs256(&self, message: &[u8]) -> Result<zeroize::Zeroizing<Vec<u8>>, GithubError> {
        self.sign_rs256_with_generation(message).map(|(_, signature)| signature)
    }

    /// [`App::sign_rs256`] and the [`App::key_generation`] of the key that made the signature, read
    /// together so a rotation between the two cannot pair one key's signature with another's generation.
    pub fn sign_rs256_with_generation(
        &self,
        message: &[u8],
    ) -> Result<(u64, zeroize::Zeroizing<Vec<u8>>), GithubError> {
        let (generation, signer) = self.keys.signer();
        let signature = signer
            .sign_rs256(message)
            .map_err(|e| GithubError::Jwt(e.to_string()))?;
        Ok((generation, signature))
    }

    /// Bumped each time the App's key is replaced by a different one (a rotation), so what was derived from
    /// the key (the token-sealing key) is derived anew. The same key keeps the same generation.
    pub fn key_generation(&self) -> u64 {
        self.keys.generation()
    }

    /// The fingerprint of the key that signs now, as GitHub shows it on the App's settings page.
    pub fn key_fingerprint(&self) -> Option<crate::KeyFingerprint> {
        self.keys.fingerprint()
    }

    pub fn id(&self) -> &AppId {
        &self.id
    }

    pub fn client(&self) -> &GitHubClient {
        &self.client
    }

    /// Mint an installation token limited to `owner/name` and `permissions`, and verify the grant.
    #[tracing::instrument(level = "debug", skip(self, permissions), fields(app = %self.id))]
    pub async fn mint(
        &self,
        installation_id: u64,
        owner: &str,
        name: &str,
        permissions: &Permissions,
    ) -> Result<MintedToken, GithubError> {
        let full_name = format!("{owner}/{name}");
        let request = TokenRequest {
            repositories: vec![name.to_owned()],
            permissions: permissions.clone(),
        };
        let body = serde_json::to_vec(&request).expect("a TokenRequest always serialises");
        let minted = self
            .request_token(installation_id, &full_name, permissions, body)
            .await?;
        if let Err(scope) = check_scope(&minted, &full_name, permissions) {
            // Never serve a token wider than asked; and do not leave it alive either.
            self.revoke_quietly(&minted.token).await;
            return Err(scope.into());
        }
        Ok(minted)
    }

    /// `POST /app/installations/{id}/access_tokens` with `body`: the 201 decoded, or what the failure means.
    /// The caller checks the grant.
    pub(crate) async fn request_token(
        &self,
        installation_id: u64,
        full_name: &str,
        permissions: &Permissions,
        body: Vec<u8>,
    ) -> Result<MintedToken, GithubError> {
        let op = Operation::Mint {
            installation_id,
            repo: full_name.to_owned(),
        };
        let jwt = self.jwt()?;
        let path = format!("/app/installations/{installation_id}/access_tokens");
        let response = self
            .client
            .send(
                &op,
                Method::POST,
                &path,
                crate::secret::bearer(jwt.expose()).expose_secret(),
                Some(body),
            )
            .await?;
        if response.status != StatusCode::CREATED {
            return Err(self.mint_error(&op, installation_id, full_name, permissions, &response));
        }
        let mut minted = decode_minted(&op, &response.body)?;
        minted.server_date = server_date(&response.headers);
        Ok(minted)
    }

    /// `DELETE /installation/token`; see [`GitHubClient::revoke`].
    pub async fn revoke(&self, token: &InstallationToken) -> Result<(), GithubError> {
        self.client.revoke(token).await
    }

    pub(crate) fn mint_error(
        &self,
        op: &Operation,
        installation_id: u64,
        repo: &str,
        permissions: &Permissions,
        response: &RawResponse,
    ) -> GithubError {
        let message = message_of(response);
        if let Some(limited) = rate_limit(op, response) {
            return limited;
        }
        match response.status {
            StatusCode::NOT_FOUND => GithubError::InstallationNotFound { installation_id },
            StatusCode::UNAUTHORIZED => GithubError::BadAppCredentials {
                app_id: self.id.to_string(),
                status: 401,
                message,
                server_date: server_date(&response.headers),
            },
            StatusCode::FORBIDDEN if message.to_ascii_lowercase().contains("suspended") => {
                GithubError::InstallationSuspended {
                    installation_id,
                    message,
                }
            }
            StatusCode::UNPROCESSABLE_ENTITY if message.to_ascii_lowercase().contains("permission") => {
                GithubError::PermissionNotGranted {
                    installation_id,
                    permissions: permissions.to_string(),
                    message,
                }
            }
            StatusCode::UNPROCESSABLE_ENTITY => GithubError::RepositoryNotSelected {
                installation_id,
                repo: repo.to_owned(),
                message,
            },
            _ => generic_error(op.clone(), response),
        }
    }
}

/// Decode the 201 answer to a token request. Public so fuzzing reaches exactly what [`App::mint`] runs.
pub fn decode_minted(op: &Operation, body: &[u8]) -> Result<MintedToken, GithubError> {
    let bad = |reason: String| GithubError::BadResponse { op: op.clone(), reason };
    let raw: TokenResponse = serde_json::from_slice(body).map_err(|e| bad(format!("token response: {e}")))?;
    let expires_at =
        humantime::parse_rfc3339(&raw.expires_at).map_err(|e| bad(format!("expires_at {:?}: {e}", raw.expires_at)))?;
    let token = InstallationToken::new(raw.token)
        .ok_or_else(|| bad("the token is empty, too long, or holds spaces or control characters".into()))?;
    Ok(MintedToken {
        token,
        expires_at,
        server_date: None,
        permissions: raw.permissions.unwrap_or_default(),
        repository_selection: raw.repository_selection,
        repositories: raw.repositories,
    })
}

/// The token must cover exactly the one repository and no permission beyond those requested.
pub fn check_scope(minted: &MintedToken, full_name: &str, asked: &Permissions) -> Result<(), ScopeError> {
    let excess = minted.permissions.excess_over(asked);
    if !excess.is_empty() {
        return Err(ScopeError::Permissions { excess });
    }
    let repos = minted.repositories.as_deref().unwrap_or_default();
    let only_ours = minted.repository_selection.as_deref() != Some("all")
        && repos.len() == 1
        && repos[0].full_name.eq_ignore_ascii_case(full_name);
    if !only_ours {
        let got = match minted.repository_selection.as_deref() {
            Some("all") => "all of the installation's repositories".to_owned(),
            _ if repos.is_empty() => "no listed repository".to_owned(),
            _ => repos
                .iter()
                .map(|r| r.full_name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        };
        return Err(ScopeError::Repositories {
            want: full_name.to_owned(),
            got,
        });
    }
    Ok(())
}

pub(crate) fn message_of(response: &RawResponse) -> String {
    let body: ErrorBody = serde_json::from_slice(&response.body).unwrap_or_default();
    let mut message = body
        .message
        .unwrap_or_else(|| response.status.canonical_reason().unwrap_or("no message").to_owned());
    if let Some(errors) = body.errors.filter(|e| !e.is_null()) {
        message.push(' ');
        message.push_str(&errors.to_string());
    }
    // GitHub's messages are short; cap what an odd proxy might put here.
    message.chars().take(500).collect()
}

/// Whether an answer from GitHub is a rate limit, and the wait it names: `Some(Some(wait))` for a 403 or
/// 429 with `retry-after`, or with no requests left until `x-ratelimit-reset`; `Some(None)` for a 429 that
/// names no time; `None` for anything else (a 403 for want of permission is not a rate limit).
pub fn rate_limit_wait(status: StatusCode, headers: &HeaderMap) -> Option<Option<Duration>> {
    if !matches!(status, StatusCode::FORBIDDEN | StatusCode::TOO_MANY_REQUESTS) {
        return None;
    }
    let retry_after = header_u64(headers, "retry-after").map(Duration::from_secs);
    let exhausted = header_u64(headers, "x-ratelimit-remaining") == Some(0);
    let reset_in = header_u64(headers, "x-ratelimit-reset").and_then(|reset| {
        let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).ok()?.as_secs();
        Some(Duration::from_secs(reset.saturating_sub(now)))
    });
    match (retry_after, exhausted) {
        (Some(d), _) => Some(Some(d)),
        (None, true) => Some(reset_in),
        (None, false) if status == StatusCode::TOO_MANY_REQUESTS => Some(None),
        (None, false) => None,
    }
}

/// A 403 or 429 that says "wait": `retry-after`, or no requests left until `x-ratelimit-reset`.
pub(crate) fn rate_limit(op: &Operation, response: &RawResponse) -> Option<GithubError> {
    let retry_after = rate_limit_wait(response.status, &response.headers)?;
    Some(GithubError::RateLimited {
        op: op.clone(),
        retry_after,
        message: message_of(response),
    })
}

pub(crate) fn server_date(headers: &HeaderMap) -> Option<SystemTime> {
    headers
        .get(http::header::DATE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok())
}

fn shift(t: SystemTime, seconds: i64) -> SystemTime {
    let by = Duration::from_secs(seconds.unsigned_abs());
    if seconds >= 0 { t + by } else { t - by }
}

fn header_u64(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

pub(crate) fn generic_error(op: Operation, response: &RawResponse) -> GithubError {
    if let Some(limited) = rate_limit(&op, response) {
        return limited;
    }
    GithubError::Status {
        op,
        status: response.status.as_u16(),
        message: message_of(response),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Level, Repository};

    /// Counts signatures; the key material is irrelevant here.
    #[derive(Debug, Default)]
    struct CountingSigner(std::sync::atomic::AtomicUsize);

    impl crate::Signer for std::sync::Arc<CountingSigner> {
        fn app_jwt(&self, _app: &AppId, _now: SystemTime) -> Result<crate::Jwt, crate::SignError> {
            let n = self.0.fetch_add(1, Ordering::SeqCst);
            Ok(crate::Jwt::new(format!("jwt-{n}")))
        }

        fn sign_rs256(&self, message: &[u8]) -> Result<zeroize::Zeroizing<Vec<u8>>, crate::SignError> {
            Ok(zeroize::Zeroizing::new(message.to_vec()))
        }
    }

    #[test]
    fn one_jwt_serves_many_requests_until_the_clock_is_corrected() {
        let signer = std::sync::Arc::new(CountingSigner::default());
        let client = GitHubClient::new("http://127.0.0.1:9").expect("client");
        let app = App::with_signer("7".parse().expect("id"), Box::new(signer.clone()), client);
        let first = app.jwt().expect("signed");
        for _ in 0..100 {
            assert!(std::sync::Arc::ptr_eq(&first, &app.jwt().expect("signed")));
        }
        assert_eq!(signer.0.load(Ordering::SeqCst), 1, "signed once for 101 requests");
        assert!(app.correct_clock(SystemTime::now() + Duration::from_secs(3600)));
        assert_eq!(
            app.jwt().expect("signed").expose(),
            "jwt-1",
            "a corrected clock signs anew"
        );
    }

    /// A signer standing for one key: its fingerprint is `name`, its JWTs say which key signed them.
    #[derive(Debug)]
    struct NamedSigner(&'static str);

    impl crate::Signer for NamedSigner {
        fn app_jwt(&self, _app: &AppId, _now: SystemTime) -> Result<crate::Jwt, crate::SignError> {
            Ok(crate::Jwt::new(format!("jwt-of-{}", self.0)))
        }

        fn sign_rs256(&self, message: &[u8]) -> Result<zeroize::Zeroizing<Vec<u8>>, crate::SignError> {
            Ok(zeroize::Zeroizing::new([self.0.as_bytes(), message].concat()))
        }

        fn fingerprint(&self) -> Option<crate::KeyFingerprint> {
            Some(crate::KeyFingerprint::of_rsa(self.0.as_bytes(), &[1, 0, 1]))
        }
    }

    #[test]
    fn a_new_key_signs_at_once_and_bumps_the_generation_the_same_key_does_not() {
        let client = GitHubClient::new("http://127.0.0.1:9").expect("client");
        let app = App::with_signer("7".parse().expect("id"), Box::new(NamedSigner("a")), client);
        let keys = app.keys();
        assert_eq!(app.jwt().expect("signed").expose(), "jwt-of-a");
        assert_eq!(app.key_generation(), 0);
        assert_eq!(keys.replace(Box::new(NamedSigner("a"))), KeyChange::Same);
        assert_eq!(app.key_generation(), 0, "the same key reloaded");
        let change = keys.replace(Box::new(NamedSigner("b")));
        assert!(
            matches!(&change, KeyChange::Replaced { old: Some(old), new: Some(new), generation: 1 }
                if *old == crate::Signer::fingerprint(&NamedSigner("a")).expect("fp") && *new == crate::Signer::fingerprint(&NamedSigner("b")).expect("fp")),
            "{change:?}"
        );
        assert_eq!(
            app.jwt().expect("signed").expose(),
            "jwt-of-b",
            "the cached JWT of the old key is not served after the swap"
        );
        assert_eq!(app.key_generation(), 1);
        assert_eq!(app.key_fingerprint(), crate::Signer::fingerprint(&NamedSigner("b")));
        let (generation, signature) = app.sign_rs256_with_generation(b"x").expect("signs");
        assert_eq!((generation, &signature[..]), (1, &b"bx"[..]));
        keys.replace(Box::new(NamedSigner("a")));
        assert_eq!(app.key_generation(), 2, "going back to an earlier key is a change too");
    }

    fn minted(perms: &[(&str, Level)], selection: &str, repos: &[&str]) -> MintedToken {
        MintedToken {
            token: InstallationToken::new("ghs_x".into()).expect("valid"),
            expires_at: SystemTime::now(),
            server_date: None,
            permissions: Permissions(perms.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()),
            repository_selection: Some(selection.into()),
            repositories: Some(
                repos
                    .iter()
                    .map(|full| Repository {
                        id: 1,
                        name: full.split('/').nth(1).unwrap_or_default().into(),
                        full_name: (*full).into(),
                        default_branch: None,
                        private: true,
                        html_url: None,
                    })
                    .collect(),
            ),
        }
    }

    #[test]
    fn a_minted_token_and_every_error_about_it_print_no_secret() {
        let secret = "ghs_1_secretsecret.payload.signature";
        let body = format!(
            r#"{{"token":"{secret}","expires_at":"2026-11-25T03:00:00Z","permissions":{{"contents":"admin"}},"repository_selection":"all","repositories":[]}}"#
        );
        let op = Operation::Mint {
            installation_id: 42,
            repo: "o/r".into(),
        };
        let minted = decode_minted(&op, body.as_bytes()).expect("decodes");
        assert_eq!(minted.token.expose(), secret);
        assert!(!format!("{minted:?}").contains("secret"));
        let scope = check_scope(&minted, "o/r", &Permissions::least()).expect_err("too wide");
        let error = GithubError::from(scope);
        for text in [
            error.to_string(),
            format!("{error:?}"),
            crate::client::error_chain(&error),
        ] {
            assert!(!text.contains("secret"), "{text}");
        }
        let unparseable = decode_minted(&op, format!(r#"{{"token":"{secret}","expires_at":"soon"}}"#).as_bytes())
            .expect_err("bad expiry");
        assert!(!unparseable.to_string().contains("secret"), "{unparseable}");
    }

    #[test]
    fn scope_must_match_the_request() {
        let asked = Permissions::least();
        let exact = [
            ("contents", Level::Write),
            ("metadata", Level::Read),
            ("pull_requests", Level::Write),
        ];
        assert_eq!(
            check_scope(&minted(&exact, "selected", &["o/r"]), "O/R", &asked),
            Ok(())
        );
        let wider = [("contents", Level::Write), ("administration", Level::Write)];
        assert!(matches!(
            check_scope(&minted(&wider, "selected", &["o/r"]), "o/r", &asked),
            Err(ScopeError::Permissions { .. })
        ));
        let admin = [("contents", Level::Admin)];
        assert!(check_scope(&minted(&admin, "selected", &["o/r"]), "o/r", &asked).is_err());
        for (selection, repos) in [
            ("all", &["o/r"][..]),
            ("selected", &["o/r", "o/s"]),
            ("selected", &["o/s"]),
            ("selected", &[]),
        ] {
            assert!(
                matches!(
                    check_scope(&minted(&exact, selection, repos), "o/r", &asked),
                    Err(ScopeError::Repositories { .. })
                ),
                "{selection} {repos:?}"
            );
        }
    }
}
