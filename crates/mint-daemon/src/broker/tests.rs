//! The broker contract from mintd's side: decoding and checking answers, errors worded for git's output,
//! and whole daemons in broker mode against a stub broker on a loopback socket.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Mutex;

use http::Response;
use hyper::service::service_fn;

use super::*;

/// A token shaped like GitHub's newer ones: long, with dots.
fn long_token(n: u32) -> String {
    format!("ghs_{n}_{}.{}.{}", "a".repeat(200), "b".repeat(200), "c".repeat(100))
}

fn answer(token: &str, repository: &serde_json::Value, permissions: &serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "token": token,
        "expires_at": "2026-11-29T20:00:00Z",
        "repository": repository,
        "repository_id": 123,
        "installation_id": 42,
        "permissions": permissions,
    }))
    .expect("json")
}

fn least() -> serde_json::Value {
    serde_json::json!({"contents": "write", "pull_requests": "write", "metadata": "read"})
}

/// The broker's `Date` header.
fn date(rfc3339: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339(rfc3339).ok()
}

#[test]
fn a_token_for_one_repository_with_the_least_permissions_is_accepted() {
    let token = long_token(1);
    let body = answer(&token, &"octo-org/hello-world".into(), &least());
    let got = decode_answer(&body, date("2026-11-29T19:00:00Z")).expect("accepted");
    assert_eq!(got.minted.token.expose(), token);
    assert_eq!(got.repository.to_string(), "octo-org/hello-world");
    assert_eq!((got.repository_id, got.installation_id), (Some(123), 42));
    assert_eq!(got.minted.permissions, Permissions::least());
    // The lifetime is by the broker's clock (its Date), whatever this machine's says.
    assert_eq!(got.minted.lifetime(), Duration::from_secs(3600));
    assert!(!format!("{got:?}").contains(&token), "the token is redacted in Debug");

    // Fewer permissions are fine too.
    let narrower = answer(&token, &"o/r".into(), &serde_json::json!({"contents": "read"}));
    assert!(decode_answer(&narrower, date("2026-11-29T19:00:00Z")).is_ok());
}

/// Decode an answer mintd must refuse; check the token came back for revocation and is not in the message.
fn refused(body: &[u8]) -> String {
    let failure = decode_answer(body, date("2026-11-29T19:00:00Z")).expect_err("refused");
    let token = failure.token.expect("the refused token is handed back for revocation");
    let message = failure.error.to_string();
    assert!(!message.contains(token.expose()), "{message}");
    assert!(!failure.error.is_transient(), "{message}");
    message
}

#[test]
fn a_token_wider_than_the_least_permissions_is_refused_for_revocation() {
    let wide = answer(
        &long_token(2),
        &"o/r".into(),
        &serde_json::json!({"contents": "write", "metadata": "read", "administration": "write"}),
    );
    let message = refused(&wide);
    assert!(
        message.starts_with("the broker returned a token wider than contents:write,metadata:read,pull_requests:write"),
        "{message}"
    );
    assert!(message.contains("administration:write"), "{message}");
    assert!(
        refused(&answer(
            "ghs_refused",
            &"o/r".into(),
            &serde_json::json!({"contents": "admin"})
        ))
        .contains("contents:admin")
    );
    assert!(
        refused(&answer(
            "ghs_refused",
            &"o/r".into(),
            &serde_json::json!({"contents": "maintain"})
        ))
        .contains("not understood")
    );
    let unstated = serde_json::to_vec(&serde_json::json!({
        "token": "ghs_refused", "expires_at": "2026-11-29T20:00:00Z", "repository": "o/r", "installation_id": 42,
    }))
    .expect("json");
    assert!(refused(&unstated).contains("names no permissions"));
}

#[test]
fn a_token_for_more_than_one_repository_is_refused_for_revocation() {
    let two = answer("ghs_refused", &serde_json::json!(["o/a", "o/b"]), &least());
    assert!(refused(&two).contains("names 2 repositories"));
    let listed = serde_json::to_vec(&serde_json::json!({
        "token": "ghs_refused", "expires_at": "2026-11-29T20:00:00Z", "repository": "o/a", "installation_id": 42,
        "permissions": least(), "repositories": [{"full_name": "o/a"}, {"full_name": "o/b"}],
    }))
    .expect("json");
    assert!(refused(&listed).contains("lists repositories o/a, o/b"));
    let all = serde_json::to_vec(&serde_json::json!({
        "token": "ghs_refused", "expires_at": "2026-11-29T20:00:00Z", "repository": "o/a", "installation_id": 42,
        "permissions": least(), "repository_selection": "all",
    }))
    .expect("json");
    assert!(refused(&all).contains("all of the installation's repositories"));
    assert!(refused(&answer("ghs_refused", &"o/a,o/b".into(), &least())).contains("not one repository"));
    assert!(refused(&answer("ghs_refused", &serde_json::Value::Null, &least())).contains("repository is null"));
}

#[test]
fn garbled_or_expired_answers_are_refused() {
    let no_token = decode_answer(b"{\"expires_at\": \"2026-11-29T20:00:00Z\"}", None).expect_err("refused");
    assert!(no_token.token.is_none(), "nothing to revoke");
    assert!(matches!(no_token.error, BrokerError::BadAnswer { .. }));
    assert!(decode_answer(b"<html>", None).is_err());
    let spaced = answer("a token", &"o/r".into(), &least());
    assert!(decode_answer(&spaced, None).expect_err("refused").token.is_none());
    let mut expired =
        serde_json::from_slice::<serde_json::Value>(&answer("ghs_refused", &"o/r".into(), &least())).expect("json");
    expired["expires_at"] = "2026-11-29T18:00:00Z".into();
    assert!(refused(&serde_json::to_vec(&expired).expect("json")).contains("expired"));
    expired["expires_at"] = "soon".into();
    assert!(refused(&serde_json::to_vec(&expired).expect("json")).contains("expires_at"));
}

/// Pieces a broker, a proxy in front of it, or an attacker on the path could put in a 200 answer.
mod answers {
    use proptest::prelude::*;
    use serde_json::{Value, json};

    fn repository() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(json!("octo-org/hello-world")),
            Just(json!("Octo-Org/Hello-World")),
            Just(json!("o/a,o/b")),
            Just(json!(["o/a", "o/b"])),
            Just(json!(["o/a"])),
            Just(Value::Null),
            "[a-z/.-]{0,12}".prop_map(Value::from),
        ]
    }

    fn permissions() -> impl Strategy<Value = Option<Value>> {
        let name = prop_oneof![
            Just("contents"),
            Just("pull_requests"),
            Just("metadata"),
            Just("administration"),
            Just("issues"),
        ];
        let level = prop_oneof![Just("read"), Just("write"), Just("admin"), Just("maintain")];
        proptest::option::of(
            proptest::collection::btree_map(name, level, 0..5)
                .prop_map(|map| Value::Object(map.into_iter().map(|(k, v)| (k.into(), v.into())).collect())),
        )
    }

    pub(super) fn answer() -> impl Strategy<Value = Value> {
        (
            prop_oneof![
                Just(json!("ghs_property.token")),
                Just(json!("")),
                Just(json!("a b")),
                Just(json!(7))
            ],
            prop_oneof![Just("2026-11-29T20:00:00Z"), Just("2026-11-29T18:00:00Z"), Just("soon")],
            repository(),
            permissions(),
            proptest::option::of(prop_oneof![
                Just(json!(["octo-org/hello-world"])),
                Just(json!([{"full_name": "octo-org/hello-world"}])),
                Just(json!(["o/a", "o/b"])),
                Just(json!([])),
            ]),
            proptest::option::of(prop_oneof![Just("all"), Just("selected")]),
            proptest::option::of(any::<u64>()),
        )
            .prop_map(
                |(token, expires, repository, permissions, repositories, selection, installation)| {
                    let mut answer = json!({"token": token, "expires_at": expires, "repository": repository});
                    let fields = [
                        ("permissions", permissions),
                        ("repositories", repositories),
                        ("repository_selection", selection.map(Value::from)),
                        ("installation_id", installation.map(Value::from)),
                    ];
                    for (key, value) in fields {
                        if let Some(value) = value {
                            answer[key] = value;
                        }
                    }
                    answer
                },
            )
    }
}

proptest::proptest! {
    /// Whatever the bytes, decoding never panics.
    #[test]
    fn arbitrary_answers_never_panic(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..1024)) {
        let _ = decode_answer(&body, None);
    }

    /// A served token grants nothing beyond the least permissions on exactly one repository, and a refused
    /// answer that carried a usable token hands it back for revocation.
    #[test]
    fn served_tokens_are_narrow_and_refused_ones_are_revoked(answer in answers::answer()) {
        let body = serde_json::to_vec(&answer).expect("json");
        match decode_answer(&body, date("2026-11-29T19:00:00Z")) {
            Ok(token) => {
                proptest::prop_assert!(token.minted.permissions.excess_over(&Permissions::least()).is_empty());
                proptest::prop_assert!(answer["repository"].is_string(), "{answer}");
                proptest::prop_assert_ne!(answer["repository_selection"].as_str(), Some("all"));
                if let Some(listed) = answer["repositories"].as_array() {
                    proptest::prop_assert_eq!(listed.len(), 1);
                }
                proptest::prop_assert!(token.minted.lifetime() > Duration::ZERO);
            }
            Err(failure) => {
                let usable = answer["token"].as_str().and_then(|t| InstallationToken::new(t.to_owned()));
                proptest::prop_assert_eq!(failure.token.is_some(), usable.is_some(), "{}", answer);
                proptest::prop_assert!(!failure.error.is_transient());
            }
        }
    }
}

fn error(status: u16, headers: &[(&str, &str)], body: &str) -> BrokerError {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        map.insert(
            http::HeaderName::from_bytes(name.as_bytes()).expect("name"),
            HeaderValue::from_str(value).expect("value"),
        );
    }
    decode_error(
        "https://mint.example.com",
        StatusCode::from_u16(status).expect("status"),
        &map,
        body.as_bytes(),
    )
}

#[test]
fn error_answers_are_worded_for_git_with_the_brokers_message_verbatim() {
    let gone = error(
        409,
        &[],
        r#"{"status": "installation_gone", "message": "installation 42 was uninstalled: reconnect GitHub"}"#,
    );
    assert!(!gone.is_transient(), "an inactive connection needs a person");
    assert_eq!(gone.reason(), "connection_not_active");
    assert_eq!(
        gone.to_string(),
        "the broker has no active GitHub connection for this sandbox (installation_gone): installation 42 was uninstalled: reconnect GitHub"
    );
    for status in ["not_connected", "repo_removed", "suspended", "pending_approval"] {
        let e = error(
            409,
            &[],
            &format!(r#"{{"status": "{status}", "message": "ask an admin — é"}}"#),
        );
        assert!(!e.is_transient());
        assert!(e.to_string().ends_with(&format!("({status}): ask an admin — é")), "{e}");
    }

    let refused = error(
        401,
        &[],
        r#"{"status": "unauthorized", "message": "credential revoked"}"#,
    );
    assert!(!refused.is_transient());
    assert_eq!(
        refused.to_string(),
        "the broker at https://mint.example.com refused this sandbox's credential: it is unknown, expired or revoked (the sandbox was torn down?); ask the orchestrator for a new sandbox (the broker said: credential revoked)"
    );
    assert!(
        error(401, &[], "")
            .to_string()
            .ends_with("ask the orchestrator for a new sandbox")
    );

    for status in [400, 413] {
        let e = error(
            status,
            &[],
            r#"{"status": "bad_request", "message": "body must be {}"}"#,
        );
        assert!(!e.is_transient(), "{e}");
        assert!(e.to_string().contains("body must be {}"), "{e}");
    }
    let github_down = error(
        502,
        &[],
        r#"{"status": "github_failed", "message": "GitHub answered 500"}"#,
    );
    assert!(github_down.is_transient());
    assert!(github_down.to_string().contains("GitHub answered 500"), "{github_down}");
    let busy = error(
        503,
        &[("retry-after", "7")],
        r#"{"status": "unavailable", "message": "database down"}"#,
    );
    assert!(busy.is_transient());
    assert_eq!(Retryable::retry_after(&busy), Some(Duration::from_secs(7)));
    assert!(busy.to_string().contains("retry in 7 s"), "{busy}");
    let html = error(500, &[], "<html>oops</html>");
    assert!(html.is_transient());
    assert!(html.to_string().contains("Internal Server Error"), "{html}");
    let wrong_url = error(404, &[], "not found");
    assert!(!wrong_url.is_transient());
    assert!(wrong_url.to_string().contains("check --broker"), "{wrong_url}");
}

#[test]
fn the_brokers_words_reach_a_terminal_without_control_characters() {
    let sneaky = error(
        409,
        &[],
        "{\"status\": \"x\\u001b[31m\", \"message\": \"line one\\nline two\\u001b[0m\\u0007\"}",
    );
    let text = sneaky.to_string();
    assert!(!text.chars().any(char::is_control), "{text:?}");
    assert!(text.ends_with("(x31m): line oneline two[0m"), "{text:?}");
    let long = error(409, &[], &format!(r#"{{"message": "{}"}}"#, "x".repeat(5000)));
    assert!(long.to_string().len() < 700);
}

#[test]
fn the_credential_is_checked_and_never_printed() {
    let credential = SandboxCredential::new(b"  sbx_secret-credential.123\n").expect("trimmed");
    assert_eq!(credential.expose(), "sbx_secret-credential.123");
    assert_eq!(format!("{credential:?}"), "SandboxCredential(<redacted>)");
    let bearer = credential.bearer();
    assert_eq!(bearer.expose_secret(), "Bearer sbx_secret-credential.123");
    assert!(
        !format!("{bearer:?}").contains("sbx_secret"),
        "the header value is redacted too"
    );
    assert_eq!(SandboxCredential::new(b" \n").err(), Some("is empty"));
    assert!(SandboxCredential::new(b"two words").is_err());
    assert!(SandboxCredential::new(b"caf\xc3\xa9").is_err());
    assert!(SandboxCredential::new(b"\xff").is_err());
}

#[test]
fn the_broker_url_is_https_or_loopback_http() {
    for ok in [
        "https://mint.example.com",
        "https://mint.example.com/",
        "https://mint.example.com/prefix",
        "http://127.0.0.1:8080",
        "http://127.1.2.3:8080/",
        "http://[::1]:8080",
        "http://localhost:8080",
    ] {
        assert!(check_url(ok).is_ok(), "{ok}");
    }
    assert_eq!(
        check_url("https://mint.example.com/").as_deref(),
        Ok("https://mint.example.com")
    );
    let clear = check_url("http://mint.example.com").expect_err("refused");
    assert!(clear.contains("in clear") && clear.contains("https://"), "{clear}");
    assert!(check_url("http://10.0.0.1").expect_err("refused").contains("in clear"));
    assert!(check_url("ftp://mint.example.com").is_err());
    assert!(check_url("mint.example.com").is_err());
    assert!(check_url("https://user:pw@mint.example.com").is_err());
    assert!(check_url("https://mint.example.com/?x=1").is_err());
}

/// A scripted answer: status, extra headers, body.
type Scripted = (u16, Vec<(&'static str, String)>, String);

/// What the stub broker answers and what it saw.
#[derive(Default)]
struct Stub {
    /// The repository the next default answer names.
    repo: String,
    /// Scripted answers, used before the default one: status, extra headers, body.
    script: VecDeque<Scripted>,
    issued: u32,
    requests: u32,
    /// `Authorization` headers of token requests that did not carry the expected credential.
    bad_requests: Vec<String>,
    /// Tokens revoked on its GitHub API side (`DELETE /installation/token`).
    revoked: Vec<String>,
    /// Git requests on its GitHub side: the path and the token they carried.
    git: Vec<(String, String)>,
}

const CREDENTIAL: &str = "sbx_test-credential.0123456789";

/// A stub broker (and the GitHub API's token revocation) on a loopback port; returns its URL.
async fn stub_broker(stub: Arc<Mutex<Stub>>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(crate::http::serve(
        listener,
        crate::server::LIMITS,
        move |_: &tokio::net::TcpStream| {
            let stub = stub.clone();
            service_fn(move |req: Request<hyper::body::Incoming>| {
                let stub = stub.clone();
                async move { Ok::<_, Infallible>(stub_answer(&stub, req).await) }
            })
        },
        Arc::default(),
        std::future::pending(),
    ));
    url
}

async fn stub_answer(stub: &Mutex<Stub>, req: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    let auth = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let mut stub = stub.lock().expect("lock");
    let respond = |status: u16, headers: &[(&str, String)], body: String| {
        let mut builder = Response::builder()
            .status(status)
            .header(header::DATE, httpdate::fmt_http_date(SystemTime::now()));
        for (name, value) in headers {
            builder = builder.header(*name, value);
        }
        builder.body(Full::new(Bytes::from(body))).expect("response")
    };
    if parts.method == Method::DELETE && parts.uri.path() == "/installation/token" {
        stub.revoked.push(auth.trim_start_matches("Bearer ").to_owned());
        return respond(204, &[], String::new());
    }
    if parts.uri.path().ends_with("/info/refs") {
        use base64::Engine;
        let basic = base64::engine::general_purpose::STANDARD
            .decode(auth.trim_start_matches("Basic "))
            .expect("basic auth");
        let basic = String::from_utf8(basic).expect("utf8");
        let token = basic.strip_prefix("x-access-token:").expect("the token's user name");
        stub.git.push((parts.uri.to_string(), token.to_owned()));
        return respond(200, &[], "# service=git-upload-pack\n".into());
    }
    if parts.uri.path() == mint_api::broker::SANDBOX_PATH {
        // An older broker, without the state watch.
        return respond(
            404,
            &[],
            r#"{"status": "not_found", "message": "no such route"}"#.into(),
        );
    }
    assert_eq!((&parts.method, parts.uri.path()), (&Method::POST, TOKEN_PATH));
    stub.requests += 1;
    let well_formed = parts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) == Some("application/json")
        && &body[..] == b"{}";
    if auth != format!("Bearer {CREDENTIAL}") || !well_formed {
        stub.bad_requests.push(auth);
        return respond(
            401,
            &[],
            r#"{"status": "unauthorized", "message": "who are you?"}"#.into(),
        );
    }
    if let Some((status, headers, body)) = stub.script.pop_front() {
        return respond(status, &headers, body);
    }
    stub.issued += 1;
    let expires = SystemTime::now() + Duration::from_secs(3600);
    let body = serde_json::json!({
        "token": format!("ghs_broker_{}", stub.issued),
        "expires_at": humantime::format_rfc3339_seconds(expires).to_string(),
        "repository": stub.repo,
        "repository_id": 123,
        "installation_id": 42,
        "permissions": least(),
    });
    respond(200, &[("content-type", "application/json".into())], body.to_string())
}

fn minter(url: &str) -> BrokerMinter {
    let credential = SandboxCredential::new(CREDENTIAL.as_bytes()).expect("valid");
    BrokerMinter::new(
        Arc::new(BrokerClient::new(url, credential).expect("client")),
        GitHubClient::new(url).expect("client"),
        Server::new("https://github.com").expect("valid"),
        Arc::default(),
    )
}

fn new_stub(repo: &str) -> Arc<Mutex<Stub>> {
    Arc::new(Mutex::new(Stub {
        repo: repo.into(),
        ..Stub::default()
    }))
}

#[tokio::test]
async fn mints_over_http_with_the_credential_and_retries_outages() {
    let stub = new_stub("octo-org/hello-world");
    let url = stub_broker(stub.clone()).await;
    let minter = minter(&url);
    stub.lock().expect("lock").script.extend([
        (
            503,
            vec![("retry-after", "0".to_owned())],
            r#"{"status": "unavailable", "message": "database restarting"}"#.to_owned(),
        ),
        (
            502,
            vec![],
            r#"{"status": "github_failed", "message": "GitHub timed out"}"#.to_owned(),
        ),
    ]);
    let got = minter.mint().await.expect("minted after two retries");
    assert_eq!(got.token.token.expose(), "ghs_broker_1");
    assert_eq!(got.target.repo().to_string(), "octo-org/hello-world");
    assert_eq!(got.target.host(), "github.com");
    assert_eq!(got.installation_id, 42);
    let lifetime = got.token.lifetime();
    assert!(
        lifetime > Duration::from_secs(3590) && lifetime <= Duration::from_secs(3600),
        "{lifetime:?}"
    );
    let stub = stub.lock().expect("lock");
    assert_eq!((stub.requests, stub.issued), (3, 1));
    assert!(stub.bad_requests.is_empty(), "sent as the contract says");
}

#[tokio::test]
async fn permanent_refusals_are_not_retried_and_wide_tokens_are_revoked() {
    let stub = new_stub("o/r");
    let url = stub_broker(stub.clone()).await;
    let minter = minter(&url);
    stub.lock().expect("lock").script.push_back((
        409,
        vec![],
        r#"{"status": "not_connected", "message": "connect GitHub in the product first"}"#.into(),
    ));
    let error = minter.mint().await.expect_err("refused");
    assert!(!error.is_transient());
    assert!(
        error
            .to_string()
            .ends_with("(not_connected): connect GitHub in the product first"),
        "{error}"
    );
    assert_eq!(stub.lock().expect("lock").requests, 1, "no retry");

    let wide = answer(
        "ghs_too_wide",
        &"o/r".into(),
        &serde_json::json!({"administration": "write"}),
    );
    stub.lock()
        .expect("lock")
        .script
        .push_back((200, vec![], String::from_utf8(wide).expect("utf8")));
    let error = minter.mint().await.expect_err("too wide");
    assert!(error.to_string().contains("wider than"), "{error}");
    let stub = stub.lock().expect("lock");
    assert_eq!(stub.revoked, ["ghs_too_wide"], "mintd revoked it with the token itself");
    assert_eq!(stub.requests, 2);
}

#[tokio::test]
async fn a_broker_that_is_down_is_a_transient_failure() {
    // A port nobody listens on: bind one, then free it.
    let url = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        format!("http://{}", listener.local_addr().expect("addr"))
    };
    let mut minter = minter(&url);
    minter.retry.deadline = Duration::from_millis(600);
    let error = minter.mint().await.expect_err("down");
    assert!(error.is_transient(), "{error}");
    assert!(
        error
            .to_string()
            .starts_with(&format!("could not reach the broker at {url}")),
        "{error}"
    );
    assert!(error.to_string().contains("gave up after"), "{error}");
}

/// A whole mintd in broker mode, in this process, on a socket in a temp dir.
struct Daemon {
    _dir: tempfile::TempDir,
    socket: std::path::PathBuf,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

async fn start_daemon(url: &str) -> Daemon {
    start_daemon_with(url, &[]).await
}

async fn start_daemon_with(url: &str, extra: &[&str]) -> Daemon {
    use clap::Parser;
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let credential = dir.path().join("credential");
    std::fs::write(&credential, format!("{CREDENTIAL}\n")).expect("write");
    std::fs::set_permissions(&credential, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let socket = dir.path().join("run/mint.sock");
    let mut argv = vec![
        "mintd",
        "--broker",
        url,
        "--sandbox-credential-file",
        credential.to_str().expect("utf8"),
        "--socket",
        socket.to_str().expect("utf8"),
        "--api-url",
        url,
    ];
    argv.extend_from_slice(extra);
    let config = crate::Args::parse_from(argv).load().expect("valid");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(crate::run(config, async {
        let _ = stopped.await;
    }));
    for _ in 0..1000 {
        if std::os::unix::net::UnixStream::connect(&socket).is_ok() {
            return Daemon {
                _dir: dir,
                socket,
                stop,
                task,
            };
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("mintd did not become ready");
}

impl Daemon {
    /// One request on the socket, as the helper and the CLI make it.
    async fn request(&self, method: &'static str, route: &'static str, body: String) -> mint_api::Response {
        let client = mint_api::Client::new(&self.socket);
        tokio::task::spawn_blocking(move || client.request(method, route, body.as_bytes()))
            .await
            .expect("join")
            .expect("answered")
    }

    /// `get` for `path` on github.com: the password served, or the status and reason.
    async fn get(&self, path: &str) -> Result<String, (u16, String)> {
        let request = format!("protocol=https\nhost=github.com\npath={path}.git\n");
        let response = self.request("POST", mint_api::route::CREDENTIAL_GET, request).await;
        if response.status == 200 {
            let body = String::from_utf8(response.body).expect("utf8");
            Ok(body
                .lines()
                .find_map(|l| l.strip_prefix("password="))
                .expect("a password")
                .to_owned())
        } else {
            let body = String::from_utf8_lossy(&response.body).trim().to_owned();
            Err((response.status, response.reason.map_or(body, |r| r)))
        }
    }

    async fn status(&self) -> mint_api::Status {
        let client = mint_api::Client::new(&self.socket);
        tokio::task::spawn_blocking(move || client.status())
            .await
            .expect("join")
            .expect("status")
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.expect("join").expect("stopped cleanly");
    }
}

#[tokio::test]
async fn the_daemons_repository_follows_the_brokers_answer() {
    let stub = new_stub("octo-org/hello-world");
    let url = stub_broker(stub.clone()).await;
    let daemon = start_daemon(&url).await;

    assert_eq!(stub.lock().expect("lock").requests, 0, "nothing asked at start");

    // Not for this GitHub at all: declined without asking the broker.
    let foreign = daemon
        .request(
            "POST",
            mint_api::route::CREDENTIAL_GET,
            "protocol=https\nhost=gitlab.com\npath=o/r.git\n".into(),
        )
        .await;
    assert_eq!(foreign.status, 204);
    assert_eq!(stub.lock().expect("lock").requests, 0);

    // Status names the repository: before the first token it asks the broker for one (mint clone reads it).
    let status = daemon.status().await;
    assert_eq!(
        (status.repository.as_str(), status.app_id.as_str()),
        ("octo-org/hello-world", ""),
        "the repository is the broker's answer's"
    );
    assert_eq!(status.broker.as_deref(), Some(url.as_str()));
    assert!(!serde_json::to_string(&status).expect("json").contains(CREDENTIAL));
    assert_eq!(stub.lock().expect("lock").issued, 1);

    // The first get learns the repository from the broker's answer and is served against it.
    assert_eq!(daemon.get("octo-org/hello-world").await.as_deref(), Ok("ghs_broker_1"));
    let (status_code, reason) = daemon.get("octo-org/other").await.expect_err("declined");
    assert_eq!(status_code, 204);
    assert!(
        reason.contains("is not the configured repository octo-org/hello-world"),
        "{reason}"
    );
    assert_eq!(
        stub.lock().expect("lock").issued,
        1,
        "a known repository declines others unminted"
    );
    let status = daemon.status().await;
    assert_eq!(
        (status.repository.as_str(), status.installation_id),
        ("octo-org/hello-world", 42)
    );
    assert_eq!(status.permissions, "contents:write,metadata:read,pull_requests:write");

    // The product connects another repository: the next token is for it, and everything follows.
    stub.lock().expect("lock").repo = "octo-org/next".into();
    let erase = daemon
        .request(
            "POST",
            mint_api::route::CREDENTIAL_ERASE,
            "protocol=https\nhost=github.com\npassword=ghs_broker_1\n".into(),
        )
        .await;
    assert_eq!(erase.status, 204);
    let (status_code, reason) = daemon.get("octo-org/hello-world").await.expect_err("moved");
    assert_eq!(
        status_code, 204,
        "a token for octo-org/next is never served for hello-world"
    );
    assert!(reason.contains("tokens are now for octo-org/next"), "{reason}");
    assert_eq!(daemon.get("octo-org/next").await.as_deref(), Ok("ghs_broker_2"));
    assert!(daemon.get("octo-org/hello-world").await.is_err());
    assert_eq!(daemon.status().await.repository, "octo-org/next");

    daemon.stop().await;
    let mut revoked = stub.lock().expect("lock").revoked.clone();
    revoked.sort();
    assert_eq!(
        revoked,
        ["ghs_broker_1", "ghs_broker_2"],
        "revoked at stop without a key"
    );
}

#[tokio::test]
async fn the_brokers_refusals_reach_git_in_its_own_words() {
    let stub = new_stub("o/r");
    let url = stub_broker(stub.clone()).await;
    let daemon = start_daemon(&url).await;
    stub.lock().expect("lock").script.push_back((
        409,
        vec![],
        r#"{"status": "installation_gone", "message": "installation 42 was uninstalled: reconnect GitHub — in Settings"}"#
            .into(),
    ));
    let response = daemon
        .request(
            "POST",
            mint_api::route::CREDENTIAL_GET,
            "protocol=https\nhost=github.com\npath=o/r.git\n".into(),
        )
        .await;
    assert_eq!(response.status, 502, "not transient: git is told to stop, not to wait");
    let body = String::from_utf8(response.body).expect("utf8");
    assert_eq!(
        body.trim(),
        "the broker has no active GitHub connection for this sandbox (installation_gone): installation 42 was uninstalled: reconnect GitHub — in Settings"
    );
    // Within the negative TTL the same answer is repeated without asking again.
    let (status, reason) = daemon.get("o/r").await.expect_err("still refused");
    assert_eq!(status, 502);
    assert!(
        reason.contains("installation 42 was uninstalled: reconnect GitHub"),
        "{reason}"
    );
    assert_eq!(stub.lock().expect("lock").requests, 1);
    daemon.stop().await;

    // An outage the broker asks to wait out longer than mintd's deadline: transient, so 503.
    let daemon = start_daemon(&url).await;
    stub.lock().expect("lock").script.push_back((
        503,
        vec![("retry-after", "120".into())],
        r#"{"status": "unavailable", "message": "database unavailable"}"#.into(),
    ));
    let (status, reason) = daemon.get("o/r").await.expect_err("unavailable");
    assert_eq!(status, 503);
    assert!(
        reason.contains("is unavailable (503 unavailable): database unavailable"),
        "{reason}"
    );
    daemon.stop().await;

    // A sandbox whose credential the broker no longer knows.
    let daemon = start_daemon(&url).await;
    stub.lock().expect("lock").script.push_back((
        401,
        vec![],
        r#"{"status": "unauthorized", "message": "sandbox credential expired"}"#.into(),
    ));
    let (status, reason) = daemon.get("o/r").await.expect_err("refused");
    assert_eq!(status, 502);
    assert!(
        reason.contains(&format!(
            "the broker at {url} refused this sandbox's credential: it is unknown, expired or revoked (the sandbox was torn down?); ask the orchestrator for a new sandbox"
        )) && reason.contains("sandbox credential expired"),
        "{reason}"
    );
    assert!(!reason.contains(CREDENTIAL));
    daemon.stop().await;
}

/// One GET through the git proxy (as git would, from another process): the status line's code.
async fn proxy_get(proxy: &str, path: &str) -> u16 {
    use std::io::{Read, Write};
    let request = format!("GET {path} HTTP/1.1\r\nHost: {proxy}\r\nConnection: close\r\n\r\n");
    let proxy = proxy.to_owned();
    let answer = tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(&proxy).expect("proxy");
        stream.write_all(request.as_bytes()).expect("write");
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).expect("read");
        answer
    })
    .await
    .expect("join");
    String::from_utf8_lossy(&answer)
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .expect("a status line")
}

#[tokio::test]
async fn mediated_mode_learns_the_repository_from_the_broker_and_follows_it() {
    let stub = new_stub("octo-org/hello-world");
    let url = stub_broker(stub.clone()).await;
    // The stub is the broker and GitHub (git smart HTTP) at once.
    let daemon = start_daemon_with(&url, &["--git-proxy", "127.0.0.1:0", "--github-url", &url]).await;
    // Status asks the broker for the first token, to name the repository.
    let proxy = daemon.status().await.git_proxy.expect("mediated");
    let refs = "/octo-org/hello-world.git/info/refs?service=git-upload-pack";
    let asked = stub.lock().expect("lock").requests;

    assert_eq!(proxy_get(&proxy, "/favicon.ico").await, 404);
    assert_eq!(
        stub.lock().expect("lock").requests,
        asked,
        "not git: nothing more asked of the broker"
    );
    assert_eq!(proxy_get(&proxy, refs).await, 200);
    assert_eq!(
        proxy_get(&proxy, "/octo-org/other.git/info/refs?service=git-upload-pack").await,
        404,
        "another repository than the token's"
    );
    {
        let stub = stub.lock().expect("lock");
        assert_eq!(stub.issued, 1);
        assert_eq!(stub.git, [(refs.to_owned(), "ghs_broker_1".to_owned())]);
    }

    // Reconnected to another repository: once the next token is minted, the proxy follows it.
    stub.lock().expect("lock").repo = "octo-org/next".into();
    let erase = daemon
        .request(
            "POST",
            mint_api::route::CREDENTIAL_ERASE,
            format!(
                "protocol=http\nhost={}\npassword=ghs_broker_1\n",
                url.trim_start_matches("http://")
            ),
        )
        .await;
    assert_eq!(erase.status, 204);
    let moved = proxy_get(&proxy, refs).await;
    assert_eq!(moved, 404, "a token for octo-org/next never goes to hello-world");
    assert_eq!(
        proxy_get(&proxy, "/octo-org/next.git/info/refs?service=git-upload-pack").await,
        200
    );
    let last = stub.lock().expect("lock").git.last().cloned();
    assert_eq!(
        last,
        Some((
            "/octo-org/next.git/info/refs?service=git-upload-pack".to_owned(),
            "ghs_broker_2".to_owned()
        ))
    );
    daemon.stop().await;
}
