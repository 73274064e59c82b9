//! A world for the server's tests: fakehub and mint-server on loopback ports (real sockets, real JWTs,
//! real RSA keys), on SQLite or a real PostgreSQL, and a small HTTP client.

#![allow(dead_code, unreachable_pub)]

pub mod postgres;

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::OnceLock;

use bytes::Bytes;
use fakehub::{AppKeyPair, Config as HubConfig, FakeHub, InstallationConfig, RunningFakeHub};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

pub const ADMIN_TOKEN: &str = "admin-token-for-tests-0123456789abcdefghijkl";
pub const METRICS_TOKEN: &str = "metrics-token-for-tests-0123456789abcdefghij";
pub const WEBHOOK_SECRET: &str = "webhook-secret-for-tests-0123456789abcdef";
pub const NEXT_WEBHOOK_SECRET: &str = "the-next-webhook-secret-0123456789abcdef";
pub const CLIENT_ID: &str = "Iv1.fakehubclient";
pub const CLIENT_SECRET: &str = "fakehub-client-secret";
pub const APP_ID: u64 = 7;
/// `--public-url`: nothing listens there; tests call the server directly with the paths it redirects to.
pub const PUBLIC_URL: &str = "http://127.0.0.1:1";

pub fn app_key() -> &'static AppKeyPair {
    static KEY: OnceLock<AppKeyPair> = OnceLock::new();
    KEY.get_or_init(|| AppKeyPair::generate().expect("RSA key generation"))
}

/// Which database a test runs on.
pub enum Db {
    Sqlite,
    Postgres(postgres::Postgres),
}

pub struct World {
    pub hub: RunningFakeHub,
    pub dir: tempfile::TempDir,
    pub database: String,
    pub db: Db,
    server: Option<(tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<()>)>,
    pub url: String,
    /// More flags for every server this world starts.
    pub extra_args: Vec<String>,
    client: Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
}

/// Another mint-server on the world's database: a second replica. Stopped when dropped.
pub struct Replica {
    pub url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Replica {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

pub struct Answer {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Value,
}

impl World {
    pub async fn start(db: Db) -> Self {
        Self::start_with(db, Vec::new()).await
    }

    pub async fn start_with(db: Db, extra_args: Vec<String>) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("mint-server-")
            .tempdir()
            .expect("tempdir");
        let config = HubConfig::new(APP_ID, app_key().public_key_pem(), dir.path().join("github"))
            .with_installation(InstallationConfig::new(
                42,
                "octo-org",
                &["hello-world", "other-repo"],
                fakehub::BROAD_PERMISSIONS,
            ))
            .with_installation(InstallationConfig::new(
                43,
                "acme",
                &["widgets"],
                fakehub::BROAD_PERMISSIONS,
            ))
            // An account with no installation yet, for installations made during a test.
            .with_repositories("initech", &["tps", "reports"])
            // People who sign in to the Integrations page through fakehub's OAuth web flow.
            .with_user(fakehub::UserConfig::new("octocat", "octocat").owner_of("octo-org"))
            .with_user(fakehub::UserConfig::new("hubot", "hubot").member_of("acme", true))
            .with_oauth_client(CLIENT_ID, CLIENT_SECRET)
            .with_callback_url(&format!("{PUBLIC_URL}/github/oauth/callback"));
        let hub = FakeHub::start(config).await.expect("fakehub starts");
        let database = match &db {
            Db::Sqlite => format!("sqlite://{}", dir.path().join("mint-server.db").display()),
            Db::Postgres(pg) => pg.database("mint"),
        };
        let mut world = Self {
            hub,
            dir,
            database,
            db,
            server: None,
            url: String::new(),
            extra_args,
            client: Client::builder(TokioExecutor::new()).build_http(),
        };
        world.start_server().await;
        world
    }

    fn write_private(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        if !path.exists() {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .expect("create");
            file.write_all(contents.as_bytes()).expect("write");
        }
        path
    }

    pub fn args(&self) -> mint_server::Args {
        use clap::Parser;
        let key = self.write_private("app.pem", &app_key().private_key_pem());
        let admin = self.write_private("admin-token", ADMIN_TOKEN);
        let metrics = self.write_private("metrics-token", METRICS_TOKEN);
        let client_secret = self.write_private("client-secret", CLIENT_SECRET);
        let webhook_secret =
            self.write_private("webhook-secret", &format!("{WEBHOOK_SECRET}\n{NEXT_WEBHOOK_SECRET}\n"));
        let mut args: Vec<String> = vec![
            "mint-server".into(),
            "--app-id".into(),
            APP_ID.to_string(),
            "--private-key".into(),
            key.display().to_string(),
            "--admin-token-file".into(),
            admin.display().to_string(),
            "--metrics-token-file".into(),
            metrics.display().to_string(),
            "--database".into(),
            self.database.clone(),
            "--api-url".into(),
            self.hub.url(),
            "--github-url".into(),
            self.hub.url(),
            "--public-url".into(),
            PUBLIC_URL.into(),
            "--app-slug".into(),
            "mint-fakehub".into(),
            "--client-id".into(),
            CLIENT_ID.into(),
            "--client-secret-file".into(),
            client_secret.display().to_string(),
            "--webhook-secret-file".into(),
            webhook_secret.display().to_string(),
            "--reconcile-interval".into(),
            "0s".into(),
        ];
        // A flag this world's extra arguments give replaces the default above.
        for flag in self.extra_args.iter().filter(|a| a.starts_with("--")) {
            if let Some(at) = args.iter().position(|a| a == flag) {
                args.drain(at..at + 2);
            }
        }
        args.extend(self.extra_args.iter().cloned());
        mint_server::Args::parse_from(args)
    }

    /// A second mint-server on the same database, ready when this returns.
    pub async fn replica(&self) -> Replica {
        let config = self.args().load().expect("valid config");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = mint_server::run(config, listener, async {
                let _ = stopped.await;
            })
            .await;
        });
        let replica = Replica { url, stop: Some(stop) };
        for _ in 0..200 {
            if self.request_at(&replica.url, "GET", "/readyz", None, None).await.status == 200 {
                return replica;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        panic!("the second replica did not become ready");
    }

    pub async fn start_server(&mut self) {
        let config = self.args().load().expect("valid config");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        self.url = format!("http://{}", listener.local_addr().expect("addr"));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            mint_server::run(config, listener, async {
                let _ = stopped.await;
            })
            .await
            .expect("mint-server runs");
        });
        self.server = Some((stop, task));
        // Ready means the database is migrated and the listener answers.
        for _ in 0..200 {
            if self.get("/readyz", None).await.status == 200 {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        panic!("mint-server did not become ready");
    }

    pub async fn stop_server(&mut self) {
        if let Some((stop, task)) = self.server.take() {
            let _ = stop.send(());
            task.await.expect("server task");
        }
    }

    pub async fn request(&self, method: &str, path: &str, bearer: Option<&str>, body: Option<Vec<u8>>) -> Answer {
        self.request_at(&self.url, method, path, bearer, body).await
    }

    /// A request to the server at `base` (this world's, or a replica's).
    pub async fn request_at(
        &self,
        base: &str,
        method: &str,
        path: &str,
        bearer: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> Answer {
        let mut builder = http::Request::builder()
            .method(method)
            .uri(format!("{base}{path}"))
            .header("content-type", "application/json");
        if let Some(token) = bearer {
            builder = builder.header("authorization", format!("Bearer {token}"));
        }
        let request = builder
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .expect("request");
        let response = match self.client.request(request).await {
            Ok(r) => r,
            Err(e) => {
                return Answer {
                    status: 0,
                    headers: http::HeaderMap::new(),
                    body: Value::String(e.to_string()),
                };
            }
        };
        let (parts, body) = response.into_parts();
        let bytes = body.collect().await.expect("body").to_bytes();
        Answer {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body: serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into())),
        }
    }

    /// A request with any headers, to any URL (mint-server's or fakehub's); the status, the headers and the
    /// body as text.
    pub async fn send(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> (u16, http::HeaderMap, String) {
        let mut builder = http::Request::builder().method(method).uri(url);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let request = builder
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .expect("request");
        match self.client.request(request).await {
            Ok(response) => {
                let (parts, body) = response.into_parts();
                let bytes = body
                    .collect()
                    .await
                    .map(http_body_util::Collected::to_bytes)
                    .unwrap_or_default();
                (
                    parts.status.as_u16(),
                    parts.headers,
                    String::from_utf8_lossy(&bytes).into_owned(),
                )
            }
            Err(e) => (0, http::HeaderMap::new(), e.to_string()),
        }
    }

    /// Sign in to the Integrations page as `login` (its fakehub password is the login), from a browser
    /// holding `cookie` (mint's cookie value, if any), starting at `/login?next=…`. Returns what mint answered
    /// at the end of the flow: its `Location`, and the cookie value it set.
    pub async fn sign_in(&self, login: &str, cookie: Option<&str>, next: &str) -> (String, String) {
        let cookie_header = |value: &str| format!("{}={value}", mint_server::web::SESSION_COOKIE);
        let mint_cookie = cookie.map(cookie_header);
        let mut headers: Vec<(&str, &str)> = Vec::new();
        if let Some(c) = mint_cookie.as_deref() {
            headers.push(("cookie", c));
        }
        let (status, answer, _) = self
            .send(
                "GET",
                &format!("{}/login?next={}", self.url, mint_github::percent_encode(next)),
                &headers,
                None,
            )
            .await;
        assert_eq!(status, 303, "/login");
        let authorize = location(&answer);
        let cookie = set_cookie(&answer)
            .or_else(|| cookie.map(str::to_owned))
            .expect("mint's cookie");
        assert!(
            authorize.contains("code_challenge=") && authorize.contains("code_challenge_method=S256"),
            "{authorize}"
        );
        // Sign in at fakehub, then answer its authorize page.
        let hub = self.hub.url();
        let form = format!("login={login}&password={login}&return_to=/");
        let (_, signed, _) = self
            .send(
                "POST",
                &format!("{hub}/session"),
                &[("content-type", "application/x-www-form-urlencoded")],
                Some(form.into_bytes()),
            )
            .await;
        let hub_cookie = signed
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|v| v.split(';').next().filter(|kv| kv.starts_with("fakehub_session=")))
            .expect("fakehub's session cookie")
            .to_owned();
        let (status, answer, page) = self.send("GET", &authorize, &[("cookie", &hub_cookie)], None).await;
        let callback = if status == 200 {
            let fields: Vec<(String, String)> = page
                .split("<input type=\"hidden\" ")
                .skip(1)
                .filter_map(|input| {
                    let name = input.split("name=\"").nth(1)?.split('"').next()?;
                    let value = input.split("value=\"").nth(1)?.split('"').next()?;
                    Some((name.to_owned(), value.replace("&amp;", "&")))
                })
                .collect();
            let mut form: Vec<String> = fields
                .iter()
                .map(|(k, v)| format!("{k}={}", mint_github::percent_encode(v)))
                .collect();
            form.push("authorize=1".into());
            let (_, answer, _) = self
                .send(
                    "POST",
                    &format!("{hub}/login/oauth/authorize"),
                    &[
                        ("cookie", &hub_cookie),
                        ("content-type", "application/x-www-form-urlencoded"),
                    ],
                    Some(form.join("&").into_bytes()),
                )
                .await;
            location(&answer)
        } else {
            location(&answer)
        };
        let path = callback.strip_prefix(PUBLIC_URL).expect("back to mint's callback");
        let mint_cookie = cookie_header(&cookie);
        let (status, answer, body) = self
            .send("GET", &format!("{}{path}", self.url), &[("cookie", &mint_cookie)], None)
            .await;
        assert_eq!(status, 303, "the callback: {body}");
        (location(&answer), set_cookie(&answer).expect("a new session cookie"))
    }

    /// A webhook delivery as GitHub sends it, signed with `secret`.
    pub async fn deliver(&self, event: &str, delivery: &str, body: &[u8], secret: Option<&str>) -> Answer {
        self.deliver_at(&self.url, event, delivery, body, secret).await
    }

    /// A webhook delivery to the server at `base`.
    pub async fn deliver_at(
        &self,
        base: &str,
        event: &str,
        delivery: &str,
        body: &[u8],
        secret: Option<&str>,
    ) -> Answer {
        use hmac::Mac;
        let mut builder = http::Request::builder()
            .method("POST")
            .uri(format!("{base}/github/webhook"))
            .header("content-type", "application/json")
            .header("x-github-event", event)
            .header("x-github-delivery", delivery)
            .header("user-agent", "GitHub-Hookshot/test");
        if let Some(secret) = secret {
            let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("key");
            mac.update(body);
            let hex = hex::encode(mac.finalize().into_bytes());
            builder = builder.header("x-hub-signature-256", format!("sha256={hex}"));
        }
        let request = builder.body(Full::new(Bytes::copy_from_slice(body))).expect("request");
        match self.client.request(request).await {
            Ok(response) => {
                let (parts, body) = response.into_parts();
                let bytes = body
                    .collect()
                    .await
                    .map(http_body_util::Collected::to_bytes)
                    .unwrap_or_default();
                Answer {
                    status: parts.status.as_u16(),
                    headers: parts.headers,
                    body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
                }
            }
            Err(e) => Answer {
                status: 0,
                headers: http::HeaderMap::new(),
                body: Value::String(e.to_string()),
            },
        }
    }

    /// Wait (a few seconds at most) until the product's connection has `status`.
    pub async fn wait_for_status(&self, product: &str, status: &str) -> Value {
        let mut last = Value::Null;
        for _ in 0..200 {
            last = self
                .admin("GET", &format!("/api/v1/products/{product}/connection"), None)
                .await
                .body;
            if last["status"] == status {
                return last;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        panic!("the connection never became {status}: {last}");
    }

    pub async fn get(&self, path: &str, bearer: Option<&str>) -> Answer {
        self.request("GET", path, bearer, None).await
    }

    pub async fn admin(&self, method: &str, path: &str, body: Option<Value>) -> Answer {
        self.request(
            method,
            path,
            Some(ADMIN_TOKEN),
            body.map(|b| b.to_string().into_bytes()),
        )
        .await
    }

    /// A product connected to `repository` through `installation`; returns its id.
    pub async fn connected_product(&self, installation: u64, repository: &str) -> String {
        let created = self
            .admin(
                "POST",
                "/api/v1/products",
                Some(serde_json::json!({"name": "Acme app", "members": ["octocat"]})),
            )
            .await;
        assert_eq!(created.status, 201, "{:?}", created.body);
        let id = created.body["id"].as_str().expect("id").to_owned();
        let connected = self
            .admin(
                "PUT",
                &format!("/api/v1/products/{id}/connection"),
                Some(serde_json::json!({"installation_id": installation, "repository": repository})),
            )
            .await;
        assert_eq!(connected.status, 200, "{:?}", connected.body);
        id
    }

    /// A new sandbox of the product; returns (id, credential).
    pub async fn sandbox(&self, product: &str) -> (String, String) {
        let created = self
            .admin("POST", &format!("/api/v1/products/{product}/sandboxes"), None)
            .await;
        assert_eq!(created.status, 201, "{:?}", created.body);
        (
            created.body["sandbox_id"].as_str().expect("id").to_owned(),
            created.body["credential"].as_str().expect("credential").to_owned(),
        )
    }

    pub async fn token(&self, credential: &str) -> Answer {
        self.request("POST", "/api/v1/token", Some(credential), None).await
    }

    /// A token request that reports `failing` as failing (what mintd sends after git's 401): the broker
    /// does not hand it out again.
    pub async fn token_replacing(&self, credential: &str, failing: &str) -> Answer {
        let body = serde_json::json!({"replaces": mint_server::secrets::sha256_hex(failing.as_bytes())});
        self.request(
            "POST",
            "/api/v1/token",
            Some(credential),
            Some(body.to_string().into_bytes()),
        )
        .await
    }

    /// Every byte the database holds, as text: the SQLite files (with the WAL), or `pg_dump`.
    pub fn dump(&self) -> String {
        match &self.db {
            Db::Sqlite => {
                let mut all = Vec::new();
                for entry in std::fs::read_dir(self.dir.path()).expect("dir") {
                    let path = entry.expect("entry").path();
                    if path
                        .file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with("mint-server.db"))
                    {
                        all.extend(std::fs::read(&path).expect("read"));
                    }
                }
                String::from_utf8_lossy(&all).into_owned()
            }
            Db::Postgres(pg) => pg.dump("mint"),
        }
    }
}

pub fn location(headers: &http::HeaderMap) -> String {
    headers
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// The value of mint's cookie in a `Set-Cookie`, if the answer sets it.
pub fn set_cookie(headers: &http::HeaderMap) -> Option<String> {
    let prefix = format!("{}=", mint_server::web::SESSION_COOKIE);
    headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.split(';').next()?.strip_prefix(prefix.as_str()).map(str::to_owned))
}
