//! fakehub answers as GitHub documents: JWT rules, token scoping, the long token format, git over smart HTTP.

use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use bytes::Bytes;
use fakehub::{AppKeyPair, Config, FakeHub, InjectedFailure, InstallationConfig, RunningFakeHub};
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};

const APP_ID: u64 = 7;

fn key() -> &'static AppKeyPair {
    static KEY: OnceLock<AppKeyPair> = OnceLock::new();
    KEY.get_or_init(|| AppKeyPair::generate().expect("keygen"))
}

async fn hub(dir: &std::path::Path) -> RunningFakeHub {
    let config =
        Config::new(APP_ID, key().public_key_pem(), dir.join("git")).with_installation(InstallationConfig::new(
            42,
            "octo-org",
            &["hello-world", "other"],
            &[("contents", "write"), ("metadata", "read"), ("pull_requests", "write")],
        ));
    let hub = FakeHub::start(config).await.expect("starts");
    hub.create_repo("octo-org", "hello-world").expect("repo");
    hub
}

fn now() -> i64 {
    i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs()).expect("fits")
}

fn jwt_with(claims: &Value, alg: jsonwebtoken::Algorithm, pem: &str) -> String {
    let key = match alg {
        jsonwebtoken::Algorithm::HS256 => jsonwebtoken::EncodingKey::from_secret(b"guess"),
        _ => jsonwebtoken::EncodingKey::from_rsa_pem(pem.as_bytes()).expect("key"),
    };
    jsonwebtoken::encode(&jsonwebtoken::Header::new(alg), claims, &key).expect("signs")
}

fn app_jwt() -> String {
    jwt_with(
        &json!({"iat": now() - 60, "exp": now() + 540, "iss": APP_ID.to_string()}),
        jsonwebtoken::Algorithm::RS256,
        &key().private_key_pem(),
    )
}

async fn call(
    hub: &RunningFakeHub,
    method: &str,
    path: &str,
    auth: Option<&str>,
    body: Option<Value>,
) -> (u16, http::HeaderMap, Value) {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
    let mut request = http::Request::builder()
        .method(method)
        .uri(format!("{}{path}", hub.url()));
    if let Some(auth) = auth {
        request = request.header("authorization", auth);
    }
    let body = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
    let response = client
        .request(request.body(Full::new(body)).expect("request"))
        .await
        .expect("response");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.expect("body").to_bytes();
    (status, headers, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

async fn mint(hub: &RunningFakeHub, jwt: &str, body: Option<Value>) -> (u16, Value) {
    let (status, _, body) = call(
        hub,
        "POST",
        "/app/installations/42/access_tokens",
        Some(&format!("Bearer {jwt}")),
        body,
    )
    .await;
    (status, body)
}

async fn get_repo(hub: &RunningFakeHub, token: &str) -> (u16, Value) {
    let (status, _, body) = call(
        hub,
        "GET",
        "/repos/octo-org/hello-world",
        Some(&format!("token {token}")),
        None,
    )
    .await;
    (status, body)
}

async fn revoke(hub: &RunningFakeHub, token: &str) -> u16 {
    call(
        hub,
        "DELETE",
        "/installation/token",
        Some(&format!("Bearer {token}")),
        None,
    )
    .await
    .0
}

#[tokio::test]
async fn jwts_follow_githubs_rules() {
    let dir = tempfile::tempdir().expect("tmp");
    let hub = hub(dir.path()).await;
    let pem = key().private_key_pem();
    let rs = jsonwebtoken::Algorithm::RS256;
    assert_eq!(mint(&hub, &app_jwt(), None).await.0, 201);
    let pkcs8 = jwt_with(
        &json!({"iat": now() - 60, "exp": now() + 540, "iss": APP_ID}),
        rs,
        &key().private_key_pkcs8_pem(),
    );
    assert_eq!(mint(&hub, &pkcs8, None).await.0, 201, "iss as a number, key as PKCS#8");

    let other = AppKeyPair::generate().expect("keygen");
    let cases = [
        (
            "wrong key",
            jwt_with(
                &json!({"iat": now() - 60, "exp": now() + 540, "iss": "7"}),
                rs,
                &other.private_key_pem(),
            ),
        ),
        (
            "exp over 10 minutes after iat",
            jwt_with(&json!({"iat": now() - 60, "exp": now() + 600, "iss": "7"}), rs, &pem),
        ),
        (
            "iat in the future",
            jwt_with(&json!({"iat": now() + 120, "exp": now() + 500, "iss": "7"}), rs, &pem),
        ),
        (
            "expired",
            jwt_with(&json!({"iat": now() - 700, "exp": now() - 100, "iss": "7"}), rs, &pem),
        ),
        (
            "other app",
            jwt_with(&json!({"iat": now() - 60, "exp": now() + 540, "iss": "8"}), rs, &pem),
        ),
        ("no exp", jwt_with(&json!({"iat": now() - 60, "iss": "7"}), rs, &pem)),
        (
            "HS256",
            jwt_with(
                &json!({"iat": now() - 60, "exp": now() + 540, "iss": "7"}),
                jsonwebtoken::Algorithm::HS256,
                &pem,
            ),
        ),
        ("garbage", "not.a.jwt".to_owned()),
    ];
    for (name, jwt) in cases {
        let (status, body) = mint(&hub, &jwt, None).await;
        assert_eq!(status, 401, "{name}");
        assert!(
            body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{name}: {body}"
        );
        assert!(body["documentation_url"].is_string(), "{name}");
    }
    assert_eq!(hub.tokens().len(), 2);
}

#[tokio::test]
async fn tokens_are_scoped_as_asked_and_refused_beyond_the_installation() {
    let dir = tempfile::tempdir().expect("tmp");
    let hub = hub(dir.path()).await;
    let asked = json!({"repositories": ["Hello-World"], "permissions": {"contents": "write", "metadata": "read"}});
    let (status, body) = mint(&hub, &app_jwt(), Some(asked)).await;
    assert_eq!(status, 201);
    assert_eq!(body["repository_selection"], "selected");
    assert_eq!(body["permissions"], json!({"contents": "write", "metadata": "read"}));
    let repos = body["repositories"].as_array().expect("repositories");
    assert_eq!(repos.len(), 1);
    assert_eq!(repos[0]["full_name"], "octo-org/hello-world");
    for field in [
        "id",
        "node_id",
        "name",
        "private",
        "owner",
        "html_url",
        "url",
        "clone_url",
        "default_branch",
    ] {
        assert!(!repos[0][field].is_null(), "repository.{field}");
    }
    assert_eq!(repos[0]["default_branch"], "main");
    let expires = humantime::parse_rfc3339(body["expires_at"].as_str().expect("expires_at")).expect("RFC 3339");
    let lifetime = expires.duration_since(SystemTime::now()).expect("future").as_secs();
    assert!((3590..=3600).contains(&lifetime));

    let (status, body) = mint(&hub, &app_jwt(), None).await;
    assert_eq!((status, body["repository_selection"].as_str()), (201, Some("all")));

    for (asked, why) in [
        (json!({"repositories": ["nope"]}), "repository not in the installation"),
        (json!({"permissions": {"contents": "admin"}}), "higher than granted"),
        (json!({"permissions": {"issues": "read"}}), "not granted at all"),
    ] {
        let (status, body) = mint(&hub, &app_jwt(), Some(asked)).await;
        assert_eq!(status, 422, "{why}");
        assert!(body["message"].is_string(), "{why}");
    }
    let (status, _, _) = call(
        &hub,
        "POST",
        "/app/installations/41/access_tokens",
        Some(&format!("Bearer {}", app_jwt())),
        None,
    )
    .await;
    assert_eq!(status, 404);
    hub.suspend(42);
    assert_eq!(mint(&hub, &app_jwt(), None).await.0, 403);
    hub.uninstall(42);
    assert_eq!(mint(&hub, &app_jwt(), None).await.0, 404);
    let records = hub.mints();
    assert_eq!(records.len(), 8);
    assert_eq!(
        records[0].repositories.as_deref(),
        Some(&["Hello-World".to_owned()][..])
    );
}

#[tokio::test]
async fn tokens_have_githubs_long_format_and_can_be_revoked() {
    let dir = tempfile::tempdir().expect("tmp");
    let hub = hub(dir.path()).await;
    let mut seen = std::collections::HashSet::new();
    for _ in 0..5 {
        let (_, body) = mint(&hub, &app_jwt(), None).await;
        let token = body["token"].as_str().expect("token").to_owned();
        assert!(token.starts_with("ghs_7_"), "{token}");
        assert!((500..=540).contains(&token.len()), "{} characters", token.len());
        assert_eq!(token.matches('.').count(), 2);
        assert!(seen.insert(token));
    }
    let token = hub.tokens()[0].token.clone();
    let (status, repo) = get_repo(&hub, &token).await;
    assert_eq!((status, repo["default_branch"].as_str()), (200, Some("main")));
    assert_eq!(revoke(&hub, &token).await, 204);
    assert!(hub.tokens()[0].revoked);
    let (status, body) = get_repo(&hub, &token).await;
    assert_eq!((status, body["message"].as_str()), (401, Some("Bad credentials")));
    assert_eq!(revoke(&hub, &token).await, 401, "revoking twice: already dead");
}

#[tokio::test]
async fn injected_failures_come_with_their_headers_then_stop() {
    let dir = tempfile::tempdir().expect("tmp");
    let hub = hub(dir.path()).await;
    hub.fail_next_mints(
        2,
        &InjectedFailure::status(429, "API rate limit exceeded").with_header("retry-after", "3"),
    );
    for _ in 0..2 {
        let (status, headers, body) = call(
            &hub,
            "POST",
            "/app/installations/42/access_tokens",
            Some(&format!("Bearer {}", app_jwt())),
            None,
        )
        .await;
        assert_eq!(status, 429);
        assert_eq!(headers["retry-after"], "3");
        assert_eq!(body["message"], "API rate limit exceeded");
        assert!(headers.contains_key("date"));
    }
    assert_eq!(mint(&hub, &app_jwt(), None).await.0, 201);
}

fn git(args: &[&str], dir: &std::path::Path, token: Option<&str>) -> std::process::Output {
    let mut command = std::process::Command::new("git");
    if let Some(token) = token {
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{token}"));
        command
            .arg("-c")
            .arg(format!("http.extraHeader=Authorization: Basic {basic}"));
    }
    command
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.invalid")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.invalid")
        .output()
        .expect("git runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn git_over_smart_http_needs_a_live_scoped_token_and_write_to_push() {
    let dir = tempfile::tempdir().expect("tmp");
    let hub = hub(dir.path()).await;
    let url = format!("{}/octo-org/hello-world.git", hub.url());
    let (_, writer) = mint(
        &hub,
        &app_jwt(),
        Some(json!({"repositories": ["hello-world"], "permissions": {"contents": "write"}})),
    )
    .await;
    let (_, reader) = mint(
        &hub,
        &app_jwt(),
        Some(json!({"repositories": ["hello-world"], "permissions": {"contents": "read"}})),
    )
    .await;
    let (_, foreign) = mint(&hub, &app_jwt(), Some(json!({"repositories": ["other"]}))).await;
    let [writer, reader, foreign] =
        [&writer, &reader, &foreign].map(|b| b["token"].as_str().expect("token").to_owned());

    let work = dir.path().to_owned();
    let url2 = url.clone();
    let outputs = tokio::task::spawn_blocking(move || {
        let anonymous = git(&["ls-remote", &url2], &work, None);
        let foreign = git(&["ls-remote", &url2], &work, Some(&foreign));
        let clone = git(&["clone", "-q", &url2, "clone"], &work, Some(&reader));
        let clone_dir = work.join("clone");
        std::fs::write(clone_dir.join("new.txt"), "x").expect("write");
        git(&["add", "."], &clone_dir, None);
        git(&["commit", "-qm", "new"], &clone_dir, None);
        let read_push = git(
            &["push", "-q", "origin", "HEAD:refs/heads/adagent/x"],
            &clone_dir,
            Some(&reader),
        );
        let write_push = git(
            &["push", "-q", "origin", "HEAD:refs/heads/adagent/x"],
            &clone_dir,
            Some(&writer),
        );
        (anonymous, foreign, clone, read_push, write_push)
    })
    .await
    .expect("git");
    let (anonymous, foreign_out, clone, read_push, write_push) = outputs;
    for (name, out) in [("anonymous", &anonymous), ("foreign token", &foreign_out)] {
        assert!(!out.status.success(), "{name}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("Authentication failed")
                || String::from_utf8_lossy(&out.stderr).contains("could not read Username"),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(clone.status.success(), "{}", String::from_utf8_lossy(&clone.stderr));
    assert!(!read_push.status.success(), "a read-only token cannot push");
    assert!(
        String::from_utf8_lossy(&read_push.stderr).contains("403"),
        "{}",
        String::from_utf8_lossy(&read_push.stderr)
    );
    assert!(
        write_push.status.success(),
        "{}",
        String::from_utf8_lossy(&write_push.stderr)
    );

    let unauthenticated = hub
        .requests()
        .into_iter()
        .find(|r| r.status == 401 && r.path.ends_with("/info/refs"))
        .expect("a 401 was recorded");
    assert_eq!(unauthenticated.auth, fakehub::AuthKind::None);
    let client =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http::<Full<Bytes>>();
    let response = client
        .get(format!("{url}/info/refs?service=git-upload-pack").parse().expect("uri"))
        .await
        .expect("response");
    assert_eq!(response.status(), 401);
    assert_eq!(response.headers()["www-authenticate"], "Basic realm=\"GitHub\"");
}

/// GitHub lets an App have several private keys at once, so one can be rotated with no downtime, and a
/// deleted key stops working at once.
#[tokio::test]
async fn an_app_has_several_keys_and_a_deleted_one_stops_working_at_once() {
    let dir = tempfile::tempdir().expect("tmp");
    let hub = hub(dir.path()).await;
    let second = AppKeyPair::generate().expect("keygen");
    let signed_by = |pem: &str| {
        jwt_with(
            &json!({"iat": now() - 60, "exp": now() + 540, "iss": APP_ID.to_string()}),
            jsonwebtoken::Algorithm::RS256,
            pem,
        )
    };
    let (first_jwt, second_jwt) = (app_jwt(), signed_by(&second.private_key_pem()));
    assert_eq!(mint(&hub, &second_jwt, None).await.0, 401, "not yet the App's key");

    let (status, _, added) = call(
        &hub,
        "POST",
        "/_fakehub/app-keys",
        None,
        Some(json!({"pem": second.public_key_pem()})),
    )
    .await;
    assert_eq!(status, 201, "{added}");
    let second_id = added["id"].as_u64().expect("id");
    assert_eq!(mint(&hub, &first_jwt, None).await.0, 201, "the first key still works");
    assert_eq!(mint(&hub, &second_jwt, None).await.0, 201, "and so does the second");
    let (_, _, listed) = call(&hub, "GET", "/_fakehub/app-keys", None, None).await;
    let fingerprints: Vec<&str> = listed
        .as_array()
        .expect("list")
        .iter()
        .map(|k| k["fingerprint"].as_str().expect("fingerprint"))
        .collect();
    assert_eq!(fingerprints.len(), 2);
    assert!(
        fingerprints.iter().all(|f| f.starts_with("SHA256:") && f.len() == 51),
        "{fingerprints:?}"
    );

    assert_eq!(call(&hub, "DELETE", "/_fakehub/app-keys/1", None, None).await.0, 204);
    assert_eq!(
        mint(&hub, &first_jwt, None).await.0,
        401,
        "a JWT of the deleted key fails at once, though it has not expired"
    );
    assert_eq!(mint(&hub, &second_jwt, None).await.0, 201);
    let (status, _, refused) = call(&hub, "DELETE", &format!("/_fakehub/app-keys/{second_id}"), None, None).await;
    assert_eq!(status, 422, "an App keeps at least one key: {refused}");
}
