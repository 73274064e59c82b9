//! "Connect GitHub" as GitHub does it: the OAuth web flow, the user API, the install page with its Setup URL
//! redirect, installation requests, the settings page, and signed webhook deliveries — over real sockets.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use fakehub::{AppKeyPair, Config, FakeHub, InstallationConfig, RepositorySelection, RunningFakeHub, UserConfig};
use hmac::Mac;
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};

const APP_ID: u64 = 7;
const SECRET: &str = "It's a Secret to Everybody";
const CALLBACK: &str = "http://127.0.0.1:9/auth/github/callback";
const SETUP: &str = "http://127.0.0.1:9/github/setup";

fn key() -> &'static AppKeyPair {
    static KEY: OnceLock<AppKeyPair> = OnceLock::new();
    KEY.get_or_init(|| AppKeyPair::generate().expect("keygen"))
}

fn app_jwt() -> String {
    let now = i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs()).expect("fits");
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
        &json!({"iat": now - 60, "exp": now + 540, "iss": APP_ID.to_string()}),
        &jsonwebtoken::EncodingKey::from_rsa_pem(key().private_key_pem().as_bytes()).expect("key"),
    )
    .expect("signs")
}

/// The demo's people and repositories, the App's callback and setup URLs, and a webhook if given.
fn config(dir: &std::path::Path, webhook: Option<&str>) -> Config {
    let mut config = Config::new(APP_ID, key().public_key_pem(), dir.join("git"))
        .with_demo_users()
        .with_callback_url(CALLBACK)
        .with_callback_url("http://127.0.0.1:9/other")
        .with_setup_url(SETUP);
    if let Some(url) = webhook {
        config = config.with_webhook(url, Some(SECRET));
    }
    config
}

/// The demo, plus a static installation 42 on `octo-org` as existing configs have.
fn demo_with_42(dir: &std::path::Path) -> Config {
    config(dir, None).with_installation(InstallationConfig::new(
        42,
        "octo-org",
        &["hello-world", "octo-app"],
        fakehub::BROAD_PERMISSIONS,
    ))
}

struct Answer {
    status: u16,
    headers: http::HeaderMap,
    body: String,
}

impl Answer {
    fn location(&self) -> String {
        self.headers
            .get("location")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }

    /// The value of the first `name="…" value="…"` hidden field, unescaped as a browser would.
    fn hidden(&self, name: &str) -> String {
        let marker = format!("name=\"{name}\" value=\"");
        let start = self.body.find(&marker).expect("field on the page") + marker.len();
        let len = self.body[start..].find('"').expect("closing quote");
        self.body[start..start + len]
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&#39;", "'")
            .replace("&amp;", "&")
    }
}

/// A browser, minus the rendering: keeps cookies, does not follow redirects.
struct Browser {
    base: String,
    client: hyper_util::client::legacy::Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    cookies: Mutex<HashMap<String, String>>,
}

impl Browser {
    fn new(hub: &RunningFakeHub) -> Self {
        Self {
            base: hub.url(),
            client: hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http(),
            cookies: Mutex::new(HashMap::new()),
        }
    }

    async fn send(&self, method: &str, target: &str, headers: &[(&str, &str)], body: String) -> Answer {
        let url = if target.starts_with("http") {
            target.to_owned()
        } else {
            format!("{}{target}", self.base)
        };
        let mut request = http::Request::builder().method(method).uri(url);
        let cookie = {
            let jar = self.cookies.lock().expect("jar");
            jar.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ")
        };
        if !cookie.is_empty() {
            request = request.header("cookie", cookie);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = self
            .client
            .request(request.body(Full::new(Bytes::from(body))).expect("request"))
            .await
            .expect("response");
        for set in response.headers().get_all("set-cookie") {
            let pair = set.to_str().expect("ascii").split(';').next().unwrap_or_default();
            if let Some((k, v)) = pair.split_once('=') {
                let mut jar = self.cookies.lock().expect("jar");
                if v.is_empty() {
                    jar.remove(k);
                } else {
                    jar.insert(k.to_owned(), v.to_owned());
                }
            }
        }
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.expect("body").to_bytes();
        Answer {
            status,
            headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    async fn get(&self, target: &str) -> Answer {
        self.send("GET", target, &[], String::new()).await
    }

    async fn post_form(&self, target: &str, pairs: &[(&str, &str)]) -> Answer {
        let mut body = form_urlencoded::Serializer::new(String::new());
        for (k, v) in pairs {
            body.append_pair(k, v);
        }
        self.send(
            "POST",
            target,
            &[("content-type", "application/x-www-form-urlencoded")],
            body.finish(),
        )
        .await
    }

    async fn sign_in(&self, login: &str) {
        let answer = self
            .post_form(
                "/session",
                &[
                    ("login", login),
                    ("password", login),
                    ("return_to", "/settings/installations"),
                ],
            )
            .await;
        assert_eq!(answer.status, 303, "{login} signs in: {}", answer.body);
    }
}

fn query_of(url: &str) -> HashMap<String, String> {
    let query = url.split_once('?').map(|(_, q)| q).unwrap_or_default();
    form_urlencoded::parse(query.as_bytes()).into_owned().collect()
}

/// A webhook receiver on a loopback port: every delivery's headers and body, answered 200.
async fn receiver() -> (String, tokio::sync::mpsc::UnboundedReceiver<(http::HeaderMap, Bytes)>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/webhooks/github", listener.local_addr().expect("addr"));
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let tx = tx.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let tx = tx.clone();
                    async move {
                        let headers = req.headers().clone();
                        let body = req
                            .into_body()
                            .collect()
                            .await
                            .map(http_body_util::Collected::to_bytes)
                            .unwrap_or_default();
                        let _ = tx.send((headers, body));
                        Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::from_static(b"ok"))))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (url, rx)
}

/// The next delivery, its signature checked, as (event, headers, payload).
async fn next_delivery(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<(http::HeaderMap, Bytes)>,
) -> (String, http::HeaderMap, Value) {
    let (headers, body) = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("a delivery within 10 s")
        .expect("receiver open");
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).expect("key");
    mac.update(&body);
    let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    assert_eq!(
        headers["x-hub-signature-256"],
        expected.as_str(),
        "signed with the secret"
    );
    assert!(
        headers["user-agent"]
            .to_str()
            .expect("ascii")
            .starts_with("GitHub-Hookshot/")
    );
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(headers["x-github-hook-installation-target-type"], "integration");
    assert_eq!(
        headers["x-github-hook-installation-target-id"],
        APP_ID.to_string().as_str()
    );
    assert!(headers.contains_key("x-github-hook-id"));
    assert_eq!(headers["x-github-delivery"].len(), 36);
    let event = headers["x-github-event"].to_str().expect("ascii").to_owned();
    (event, headers, serde_json::from_slice(&body).expect("JSON"))
}

async fn api(hub: &RunningFakeHub, method: &str, path: &str, auth: &str) -> Answer {
    Browser::new(hub)
        .send(method, path, &[("authorization", auth)], String::new())
        .await
}

async fn mint(hub: &RunningFakeHub, installation: u64) -> u16 {
    api(
        hub,
        "POST",
        &format!("/app/installations/{installation}/access_tokens"),
        &format!("Bearer {}", app_jwt()),
    )
    .await
    .status
}

async fn exchange(browser: &Browser, fields: &Value, json: bool) -> Answer {
    let accept = if json { "application/json" } else { "*/*" };
    browser
        .send(
            "POST",
            "/login/oauth/access_token",
            &[("content-type", "application/json"), ("accept", accept)],
            fields.to_string(),
        )
        .await
}

fn authorize_url(hub: &RunningFakeHub) -> String {
    format!(
        "/login/oauth/authorize?{}",
        form_urlencoded::Serializer::new(String::new())
            .append_pair("client_id", hub.client_id())
            .append_pair("redirect_uri", CALLBACK)
            .append_pair("state", "xyz <&>")
            .finish()
    )
}

/// Sign in through the authorize redirect and authorize the App: the query sent back to the callback.
async fn sign_in_and_authorize(hub: &RunningFakeHub, browser: &Browser) -> HashMap<String, String> {
    let client_id = hub.client_id().to_owned();
    let authorize = authorize_url(hub);
    let to_login = browser.get(&authorize).await;
    assert_eq!(to_login.status, 302, "not signed in: to the sign-in page");
    let login_page = browser.get(&to_login.location()).await;
    assert_eq!(login_page.status, 200);
    assert!(login_page.body.contains("id=\"login_field\"") && login_page.body.contains("id=\"password\""));
    let return_to = login_page.hidden("return_to");
    let wrong = browser
        .post_form(
            "/session",
            &[("login", "octocat"), ("password", "nope"), ("return_to", &return_to)],
        )
        .await;
    assert!(wrong.body.contains("Incorrect username or password."));
    let signed_in = browser
        .post_form(
            "/session",
            &[("login", "octocat"), ("password", "octocat"), ("return_to", &return_to)],
        )
        .await;
    assert_eq!(signed_in.status, 303);
    assert!(
        signed_in.headers["set-cookie"]
            .to_str()
            .expect("ascii")
            .contains("HttpOnly")
    );

    let ask = browser.get(&signed_in.location()).await;
    assert_eq!(ask.status, 200, "{}", ask.body);
    assert!(ask.body.contains(">Authorize mint-fakehub</button>"));
    assert!(ask.body.contains("xyz &lt;&amp;&gt;"), "state is escaped in the page");
    let answered = browser
        .post_form(
            "/login/oauth/authorize",
            &[
                ("client_id", &client_id),
                ("redirect_uri", CALLBACK),
                ("state", "xyz <&>"),
                ("authenticity_token", &ask.hidden("authenticity_token")),
                ("authorize", "1"),
            ],
        )
        .await;
    assert_eq!(answered.status, 302);
    let back = answered.location();
    assert!(back.starts_with(&format!("{CALLBACK}?")), "{back}");
    query_of(&back)
}

#[tokio::test]
async fn oauth_web_flow_signs_in_authorizes_and_trades_a_single_use_code() {
    let dir = tempfile::tempdir().expect("tmp");
    let hub = FakeHub::start(config(dir.path(), None)).await.expect("starts");
    let browser = Browser::new(&hub);
    let client_id = hub.client_id().to_owned();
    let params = sign_in_and_authorize(&hub, &browser).await;
    assert_eq!(params["state"], "xyz <&>", "state comes back as sent");
    let code = params["code"].clone();

    let wrong_secret = exchange(
        &browser,
        &json!({"client_id": client_id, "client_secret": "guess", "code": code}),
        true,
    )
    .await;
    assert_eq!(wrong_secret.status, 200, "GitHub answers errors with 200");
    assert_eq!(wrong_secret.json()["error"], "incorrect_client_credentials");
    let secret = format!("fakehub-client-secret-{APP_ID}");
    let other_uri = exchange(
        &browser,
        &json!({"client_id": client_id, "client_secret": secret, "code": code, "redirect_uri": "http://127.0.0.1:9/other"}),
        true,
    )
    .await;
    assert_eq!(other_uri.json()["error"], "redirect_uri_mismatch");
    let token = exchange(
        &browser,
        &json!({"client_id": client_id, "client_secret": secret, "code": code, "redirect_uri": CALLBACK}),
        true,
    )
    .await
    .json();
    assert_eq!(token["token_type"], "bearer");
    assert_eq!(token["scope"], "");
    let access_token = token["access_token"].as_str().expect("access_token").to_owned();
    assert!(access_token.starts_with("ghu_"));
    let again = exchange(
        &browser,
        &json!({"client_id": client_id, "client_secret": secret, "code": code}),
        true,
    )
    .await;
    assert_eq!(again.json()["error"], "bad_verification_code", "codes are single-use");

    let me = api(&hub, "GET", "/user", &format!("Bearer {access_token}")).await;
    assert_eq!((me.status, me.json()["login"].as_str()), (200, Some("octocat")));
    assert_eq!(me.json()["type"], "User");
    assert_eq!(api(&hub, "GET", "/user", "Bearer ghu_unknown").await.status, 401);
}

#[tokio::test]
async fn oauth_web_flow_asks_once_expires_codes_and_refuses_other_redirect_uris() {
    let dir = tempfile::tempdir().expect("tmp");
    let hub = FakeHub::start(config(dir.path(), None)).await.expect("starts");
    let browser = Browser::new(&hub);
    let client_id = hub.client_id().to_owned();
    let secret = format!("fakehub-client-secret-{APP_ID}");
    let authorize = authorize_url(&hub);
    sign_in_and_authorize(&hub, &browser).await;

    // Authorized once: the next authorize redirects at once, with a fresh code, form-encoded by default.
    let at_once = browser.get(&authorize).await;
    assert_eq!(at_once.status, 302);
    let code = query_of(&at_once.location())["code"].clone();
    let form = exchange(
        &browser,
        &json!({"client_id": client_id, "client_secret": secret, "code": code}),
        false,
    )
    .await;
    assert!(form.body.starts_with("access_token=ghu_"), "{}", form.body);
    assert!(form.body.contains("token_type=bearer"));

    // A code older than 10 minutes is refused.
    let code = query_of(&browser.get(&authorize).await.location())["code"].clone();
    hub.set_date_skew(601);
    let late = exchange(
        &browser,
        &json!({"client_id": client_id, "client_secret": secret, "code": code}),
        true,
    )
    .await;
    assert_eq!(late.json()["error"], "bad_verification_code");
    hub.set_date_skew(0);

    let mismatch = browser
        .get(&format!(
            "/login/oauth/authorize?client_id={client_id}&redirect_uri=http%3A%2F%2Fevil.example%2Fcb&state=s2"
        ))
        .await;
    assert_eq!(mismatch.status, 302);
    let location = mismatch.location();
    assert!(
        location.starts_with(CALLBACK),
        "errors go to the registered callback: {location}"
    );
    let params = query_of(&location);
    assert_eq!(params["error"], "redirect_uri_mismatch");
    assert_eq!(params["state"], "s2");
    assert_eq!(
        browser.get("/login/oauth/authorize?client_id=nope").await.status,
        404,
        "unknown client"
    );
}

#[tokio::test]
async fn user_installations_are_those_on_the_users_accounts_paginated() {
    let dir = tempfile::tempdir().expect("tmp");
    let hub = FakeHub::start(demo_with_42(dir.path())).await.expect("starts");
    let personal = hub.install("octocat", RepositorySelection::All, &[]).expect("installs");
    let restricted = hub
        .install("restricted-org", RepositorySelection::Selected, &["secret-sauce"])
        .expect("installs");
    assert_eq!(personal, 1000, "run-time installations are numbered from 1000");
    let [octocat, mona, hubot] =
        ["octocat", "mona", "hubot"].map(|u| format!("Bearer {}", hub.issue_user_token(u).expect("user")));
    let hubot_sees = api(&hub, "GET", "/user/installations", &hubot).await.json();
    assert_eq!(
        hubot_sees["installations"][0]["id"], restricted,
        "only restricted-org's"
    );

    let first = api(&hub, "GET", "/user/installations?per_page=1", &octocat).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.json()["total_count"], 3);
    assert_eq!(first.json()["installations"].as_array().map(Vec::len), Some(1));
    let link = first.headers["link"].to_str().expect("ascii").to_owned();
    assert!(link.contains("page=2>; rel=\"next\""), "{link}");
    assert!(link.contains("page=3>; rel=\"last\""), "{link}");
    let last = api(&hub, "GET", "/user/installations?per_page=1&page=3", &octocat).await;
    let link = last.headers["link"].to_str().expect("ascii").to_owned();
    assert!(
        !link.contains("rel=\"next\"") && link.contains("rel=\"prev\""),
        "{link}"
    );
    let ids: Vec<u64> = api(&hub, "GET", "/user/installations", &octocat).await.json()["installations"]
        .as_array()
        .expect("installations")
        .iter()
        .filter_map(|i| i["id"].as_u64())
        .collect();
    assert_eq!(ids, [42, personal, restricted]);
    assert!(
        !api(&hub, "GET", "/user/installations", &octocat)
            .await
            .headers
            .contains_key("link"),
        "one page, no Link"
    );

    let mona_sees = api(&hub, "GET", "/user/installations", &mona).await.json();
    assert_eq!(mona_sees["total_count"], 1);
    assert_eq!(mona_sees["installations"][0]["id"], 42);

    assert_eq!(
        api(&hub, "GET", "/user/installations", &format!("Bearer {}", app_jwt()))
            .await
            .status,
        401
    );

    let listed = api(
        &hub,
        "GET",
        "/app/installations?per_page=2",
        &format!("Bearer {}", app_jwt()),
    )
    .await;
    assert_eq!(listed.json().as_array().map(Vec::len), Some(2));
    assert!(listed.headers["link"].to_str().expect("ascii").contains("rel=\"next\""));
    hub.uninstall(personal);
    let listed = api(&hub, "GET", "/app/installations", &format!("Bearer {}", app_jwt())).await;
    assert_eq!(
        listed.json().as_array().map(Vec::len),
        Some(2),
        "deleted ones are not listed"
    );
    assert_eq!(api(&hub, "GET", "/app/installations", "Bearer nope").await.status, 401);
}

#[tokio::test]
async fn installation_repositories_show_push_only_where_the_user_may_push() {
    let dir = tempfile::tempdir().expect("tmp");
    let hub = FakeHub::start(demo_with_42(dir.path())).await.expect("starts");
    let personal = hub.install("octocat", RepositorySelection::All, &[]).expect("installs");
    let restricted = hub
        .install("restricted-org", RepositorySelection::Selected, &["secret-sauce"])
        .expect("installs");
    let [octocat, mona, hubot] =
        ["octocat", "mona", "hubot"].map(|u| format!("Bearer {}", hub.issue_user_token(u).expect("user")));

    let owner = api(&hub, "GET", "/user/installations/42/repositories", &octocat)
        .await
        .json();
    assert_eq!(owner["total_count"], 2);
    assert_eq!(owner["repository_selection"], "selected");
    let perms = &owner["repositories"][0]["permissions"];
    assert_eq!(
        (perms["admin"].as_bool(), perms["push"].as_bool()),
        (Some(true), Some(true))
    );
    let member = api(&hub, "GET", "/user/installations/42/repositories?per_page=1", &mona).await;
    assert!(member.headers.contains_key("link"));
    let perms = &member.json()["repositories"][0]["permissions"];
    assert_eq!(
        (
            perms["admin"].as_bool(),
            perms["push"].as_bool(),
            perms["pull"].as_bool()
        ),
        (Some(false), Some(false), Some(true)),
        "a member without push can see but not push"
    );
    let pusher = api(
        &hub,
        "GET",
        &format!("/user/installations/{restricted}/repositories"),
        &hubot,
    )
    .await
    .json();
    let perms = &pusher["repositories"][0]["permissions"];
    assert_eq!(
        (perms["admin"].as_bool(), perms["push"].as_bool()),
        (Some(false), Some(true))
    );
    let personal_repos = api(
        &hub,
        "GET",
        &format!("/user/installations/{personal}/repositories"),
        &octocat,
    )
    .await
    .json();
    assert_eq!(personal_repos["repository_selection"], "all");
    assert_eq!(personal_repos["repositories"][0]["full_name"], "octocat/dotfiles");
    assert_eq!(
        api(
            &hub,
            "GET",
            &format!("/user/installations/{personal}/repositories"),
            &mona
        )
        .await
        .status,
        404,
        "not mona's installation"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn installing_sends_a_signed_webhook_and_redirects_to_the_setup_url_with_the_state() {
    let dir = tempfile::tempdir().expect("tmp");
    let (url, mut deliveries) = receiver().await;
    let hub = FakeHub::start(config(dir.path(), Some(&url))).await.expect("starts");
    let browser = Browser::new(&hub);
    let new = "/apps/mint-fakehub/installations/new?state=s%201";
    assert_eq!(browser.get(new).await.status, 302, "sign in first");
    browser.sign_in("octocat").await;
    let accounts = browser.get(new).await;
    assert_eq!(accounts.status, 200);
    for account in ["octocat", "octo-org", "restricted-org"] {
        assert!(accounts.body.contains(&format!("id=\"choose-{account}\"")), "{account}");
    }
    let choose = accounts.body.find("id=\"choose-octocat\"").expect("button");
    let target_marker = "name=\"target_id\" value=\"";
    let start = accounts.body[..choose].rfind(target_marker).expect("target") + target_marker.len();
    let target = accounts.body[start..].split('"').next().expect("id").to_owned();

    let form = browser
        .get(&format!(
            "/apps/mint-fakehub/installations/new/permissions?target_id={target}&state=s%201"
        ))
        .await;
    assert_eq!(form.status, 200);
    assert!(form.body.contains("id=\"install\"") && form.body.contains(">Install</button>"));
    assert!(form.body.contains("id=\"repository-dotfiles\""));
    let done = browser
        .post_form(
            "/apps/mint-fakehub/installations",
            &[
                ("target_id", &target),
                ("state", &form.hidden("state")),
                ("authenticity_token", &form.hidden("authenticity_token")),
                ("install_target", "selected"),
                ("repositories", "dotfiles"),
                ("action", "install"),
            ],
        )
        .await;
    assert_eq!(done.status, 302, "{}", done.body);
    let setup = done.location();
    assert!(setup.starts_with(SETUP), "{setup}");
    let params = query_of(&setup);
    assert_eq!(params["installation_id"], "1000");
    assert_eq!(params["setup_action"], "install");
    assert_eq!(params["state"], "s 1");

    let (event, headers, payload) = next_delivery(&mut deliveries).await;
    assert_eq!(event, "installation");
    assert_eq!(payload["action"], "created");
    assert_eq!(payload["installation"]["id"], 1000);
    assert_eq!(payload["installation"]["account"]["login"], "octocat");
    assert_eq!(payload["installation"]["account"]["type"], "User");
    assert_eq!(payload["installation"]["repository_selection"], "selected");
    assert_eq!(
        payload["installation"]["html_url"],
        format!("{}/settings/installations/1000", hub.url())
    );
    assert_eq!(payload["repositories"][0]["full_name"], "octocat/dotfiles");
    assert_eq!(payload["sender"]["login"], "octocat");
    assert!(payload.get("requester").is_none());
    let guid = headers["x-github-delivery"].to_str().expect("ascii").to_owned();
    for _ in 0..100 {
        if hub.deliveries().first().and_then(|d| d.status_code).is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let recorded = hub.deliveries();
    assert_eq!(recorded.len(), 1);
    assert_eq!(
        (recorded[0].guid.as_str(), recorded[0].status_code),
        (guid.as_str(), Some(200))
    );
    assert_eq!(recorded[0].action.as_deref(), Some("created"));

    assert!(
        hub.repo_path("octocat", "dotfiles").exists(),
        "the repository exists as a bare repo"
    );
    assert_eq!(mint(&hub, 1000).await, 201, "a run-time installation mints tokens");
    let (_, _, lookup) = {
        let answer = api(
            &hub,
            "GET",
            "/repos/octocat/dotfiles/installation",
            &format!("Bearer {}", app_jwt()),
        )
        .await;
        (answer.status, answer.headers.clone(), answer.json())
    };
    assert_eq!(lookup["id"], 1000);

    // Installed already: GitHub shows the installation's settings instead of calling the Setup URL.
    let again = browser
        .get(&format!(
            "/apps/mint-fakehub/installations/new/permissions?target_id={target}"
        ))
        .await;
    assert_eq!(again.status, 302);
    assert_eq!(again.location(), "/settings/installations/1000");
    let settings = browser.get(&again.location()).await;
    assert_eq!(settings.status, 200);
    assert!(settings.body.contains("id=\"save\"") && settings.body.contains(">Uninstall</button>"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_of_a_restricted_org_requests_and_an_owner_approves() {
    let dir = tempfile::tempdir().expect("tmp");
    let (url, mut deliveries) = receiver().await;
    let hub = FakeHub::start(config(dir.path(), Some(&url))).await.expect("starts");
    let hubot = Browser::new(&hub);
    hubot.sign_in("hubot").await;
    let accounts = hubot.get("/apps/mint-fakehub/installations/new?state=r1").await;
    let choose = accounts.body.find("id=\"choose-restricted-org\"").expect("button");
    let marker = "name=\"target_id\" value=\"";
    let start = accounts.body[..choose].rfind(marker).expect("target") + marker.len();
    let target = accounts.body[start..].split('"').next().expect("id").to_owned();
    let form = hubot
        .get(&format!(
            "/apps/mint-fakehub/installations/new/permissions?target_id={target}&state=r1"
        ))
        .await;
    assert!(form.body.contains(">Request</button>"), "{}", form.body);
    assert!(!form.body.contains(">Install</button>"));
    let requested = hubot
        .post_form(
            "/apps/mint-fakehub/installations",
            &[
                ("target_id", &target),
                ("state", "r1"),
                ("authenticity_token", &form.hidden("authenticity_token")),
                ("install_target", "all"),
                ("action", "request"),
            ],
        )
        .await;
    assert_eq!(requested.status, 302);
    let params = query_of(&requested.location());
    assert!(requested.location().starts_with(SETUP));
    assert_eq!(params.get("setup_action").map(String::as_str), Some("request"));
    assert_eq!(params.get("state").map(String::as_str), Some("r1"));
    assert!(!params.contains_key("installation_id"), "a request installs nothing");
    assert!(hub.installations().iter().all(|i| i.account != "restricted-org"));
    assert_eq!(hub.installation_requests().len(), 1);
    assert_eq!(
        hubot
            .get("/organizations/restricted-org/settings/installation_requests")
            .await
            .status,
        404,
        "only owners see requests"
    );

    let octocat = Browser::new(&hub);
    octocat.sign_in("octocat").await;
    let requests = octocat
        .get("/organizations/restricted-org/settings/installation_requests")
        .await;
    assert_eq!(requests.status, 200);
    assert!(requests.body.contains("<strong>hubot</strong>") && requests.body.contains("id=\"approve-1\""));
    let approved = octocat
        .post_form(
            "/organizations/restricted-org/settings/installation_requests/1/approve",
            &[("authenticity_token", &requests.hidden("authenticity_token"))],
        )
        .await;
    assert_eq!(approved.status, 303, "{}", approved.body);
    assert_eq!(
        approved.location(),
        "/organizations/restricted-org/settings/installations/1000"
    );
    let (event, _, payload) = next_delivery(&mut deliveries).await;
    assert_eq!(
        (event.as_str(), payload["action"].as_str()),
        ("installation", Some("created"))
    );
    assert_eq!(payload["requester"]["login"], "hubot");
    assert_eq!(payload["sender"]["login"], "octocat");
    assert_eq!(payload["installation"]["account"]["login"], "restricted-org");
    assert_eq!(payload["installation"]["account"]["type"], "Organization");
    assert_eq!(payload["installation"]["repository_selection"], "all");
    assert_eq!(payload["repositories"][0]["name"], "secret-sauce");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_changes_send_their_webhooks_and_only_owners_may_make_them() {
    let dir = tempfile::tempdir().expect("tmp");
    let (url, mut deliveries) = receiver().await;
    let hub = FakeHub::start(config(dir.path(), Some(&url))).await.expect("starts");
    let id = hub
        .install("octo-org", RepositorySelection::Selected, &["hello-world"])
        .expect("installs");
    let (_, _, created) = next_delivery(&mut deliveries).await;
    assert_eq!(created["action"], "created");
    let page = format!("/organizations/octo-org/settings/installations/{id}");

    let mona = Browser::new(&hub);
    mona.sign_in("mona").await;
    let read_only = mona.get(&page).await;
    assert_eq!(read_only.status, 200);
    assert!(read_only.body.contains("id=\"read-only\"") && !read_only.body.contains("id=\"save\""));
    let refused = mona
        .post_form(
            &format!("{page}/suspend"),
            &[("authenticity_token", &read_only.hidden("authenticity_token"))],
        )
        .await;
    assert_eq!(refused.status, 403);

    let octocat = Browser::new(&hub);
    octocat.sign_in("octocat").await;
    let settings = octocat.get(&page).await;
    let csrf = settings.hidden("authenticity_token");
    assert_eq!(
        octocat
            .post_form(&format!("{page}/suspend"), &[("authenticity_token", "forged")])
            .await
            .status,
        422,
        "a form without the session's token is refused"
    );
    let saved = octocat
        .post_form(
            &format!("{page}/repositories"),
            &[
                ("authenticity_token", &csrf),
                ("install_target", "selected"),
                ("repositories", "octo-app"),
            ],
        )
        .await;
    assert_eq!((saved.status, saved.location()), (303, page.clone()));
    let (event, _, added) = next_delivery(&mut deliveries).await;
    assert_eq!(
        (event.as_str(), added["action"].as_str()),
        ("installation_repositories", Some("added"))
    );
    assert_eq!(added["repositories_added"][0]["full_name"], "octo-org/octo-app");
    assert_eq!(added["repositories_removed"], json!([]));
    assert_eq!(added["repository_selection"], "selected");
    assert_eq!(added["sender"]["login"], "octocat");
    let (_, _, removed) = next_delivery(&mut deliveries).await;
    assert_eq!(removed["action"], "removed");
    assert_eq!(removed["repositories_removed"][0]["name"], "hello-world");

    octocat
        .post_form(&format!("{page}/suspend"), &[("authenticity_token", &csrf)])
        .await;
    let (_, _, suspended) = next_delivery(&mut deliveries).await;
    assert_eq!(suspended["action"], "suspend");
    assert_eq!(suspended["installation"]["suspended_by"]["login"], "octocat");
    assert_eq!(mint(&hub, id).await, 403);
    assert!(octocat.get(&page).await.body.contains(">Unsuspend</button>"));
    octocat
        .post_form(&format!("{page}/unsuspend"), &[("authenticity_token", &csrf)])
        .await;
    let (_, _, unsuspended) = next_delivery(&mut deliveries).await;
    assert_eq!(unsuspended["action"], "unsuspend");
    assert_eq!(mint(&hub, id).await, 201);

    let gone = octocat
        .post_form(&format!("{page}/delete"), &[("authenticity_token", &csrf)])
        .await;
    assert_eq!(
        (gone.status, gone.location().as_str()),
        (303, "/settings/installations")
    );
    let (_, _, deleted) = next_delivery(&mut deliveries).await;
    assert_eq!(deleted["action"], "deleted");
    assert_eq!(deleted["repositories"][0]["name"], "octo-app");
    assert_eq!(mint(&hub, id).await, 404);
    assert_eq!(octocat.get(&page).await.status, 404);

    // The library knobs send the same webhooks.
    let again = hub
        .install("octo-org", RepositorySelection::All, &[])
        .expect("installs");
    assert_eq!(next_delivery(&mut deliveries).await.2["action"], "created");
    hub.suspend(again);
    assert_eq!(next_delivery(&mut deliveries).await.2["action"], "suspend");
    hub.uninstall(again);
    assert_eq!(next_delivery(&mut deliveries).await.2["action"], "deleted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redelivery_sends_the_same_body_with_the_same_delivery_id() {
    let dir = tempfile::tempdir().expect("tmp");
    let (url, mut deliveries) = receiver().await;
    let hub = FakeHub::start(config(dir.path(), None)).await.expect("starts");
    assert!(hub.install("mona", RepositorySelection::All, &[]).is_ok());
    assert!(hub.deliveries().is_empty(), "no webhook URL, no deliveries");

    let browser = Browser::new(&hub);
    let set = browser
        .send(
            "POST",
            "/_fakehub/webhook",
            &[("content-type", "application/json")],
            json!({"url": url, "secret": SECRET}).to_string(),
        )
        .await;
    assert_eq!(set.status, 204);
    hub.suspend(1000);
    let (_, first_headers, first) = next_delivery(&mut deliveries).await;
    let guid = first_headers["x-github-delivery"].to_str().expect("ascii").to_owned();
    let redeliver = browser
        .send(
            "POST",
            "/_fakehub/redeliver",
            &[("content-type", "application/json")],
            json!({"delivery": guid}).to_string(),
        )
        .await;
    assert_eq!(redeliver.status, 202);
    let (_, again_headers, again) = next_delivery(&mut deliveries).await;
    assert_eq!(again_headers["x-github-delivery"], guid.as_str());
    assert_eq!(again, first);
    let listed = browser.get("/_fakehub/deliveries").await.json();
    assert_eq!(listed.as_array().map(Vec::len), Some(2));
    assert_eq!(listed[1]["guid"], guid.as_str());
    assert_eq!(listed[1]["redelivery"], true);
    assert_eq!(listed[0]["body"], listed[1]["body"]);
    assert!(hub.redeliver("not-a-delivery").is_err());
}

#[tokio::test]
async fn static_installations_keep_their_github_html_url_unless_asked() {
    let dir = tempfile::tempdir().expect("tmp");
    let static_one = InstallationConfig::new(42, "octo-org", &["hello-world"], fakehub::BROAD_PERMISSIONS);
    let hub = FakeHub::start(
        Config::new(APP_ID, key().public_key_pem(), dir.path().join("a")).with_installation(static_one.clone()),
    )
    .await
    .expect("starts");
    let jwt = format!("Bearer {}", app_jwt());
    let answer = api(&hub, "GET", "/app/installations/42", &jwt).await.json();
    assert_eq!(
        answer["html_url"],
        "https://github.com/organizations/octo-org/settings/installations/42"
    );
    assert_eq!(answer["account"]["type"], "Organization");
    let on_fakehub = FakeHub::start(
        Config::new(APP_ID, key().public_key_pem(), dir.path().join("b"))
            .with_installation(static_one)
            .with_html_urls_on_fakehub(true),
    )
    .await
    .expect("starts");
    let answer = api(&on_fakehub, "GET", "/app/installations/42", &jwt).await.json();
    assert_eq!(
        answer["html_url"],
        format!("{}/organizations/octo-org/settings/installations/42", on_fakehub.url())
    );
}

#[tokio::test]
async fn users_are_configured_with_their_orgs() {
    let user = UserConfig::new("a", "b").owner_of("x").member_of("y", false);
    assert_eq!(user.orgs.len(), 2);
    assert_eq!(user.orgs[1].1, fakehub::OrgRole::Member { push: false });
}

fn git(args: &[&str], dir: &std::path::Path, token: Option<&str>) -> std::process::Output {
    use base64::Engine;
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
async fn a_pull_request_reads_as_a_page_next_to_git_routes() {
    let dir = tempfile::tempdir().expect("tmp");
    let hub = FakeHub::start(config(dir.path(), None)).await.expect("starts");
    let id = hub
        .install("octo-org", RepositorySelection::Selected, &["hello-world"])
        .expect("installs");
    let minted = Browser::new(&hub)
        .send(
            "POST",
            &format!("/app/installations/{id}/access_tokens"),
            &[("authorization", &format!("Bearer {}", app_jwt()))],
            String::new(),
        )
        .await
        .json();
    let token = minted["token"].as_str().expect("token").to_owned();
    let url = format!("{}/octo-org/hello-world.git", hub.url());
    let work = dir.path().to_owned();
    let pushed = {
        let token = token.clone();
        tokio::task::spawn_blocking(move || {
            assert!(
                git(&["clone", "-q", &url, "clone"], &work, Some(&token))
                    .status
                    .success()
            );
            let clone = work.join("clone");
            std::fs::write(clone.join("fix.txt"), "x").expect("write");
            git(&["add", "."], &clone, None);
            git(&["commit", "-qm", "Fix the <blink> tag"], &clone, None);
            git(&["push", "-q", "origin", "HEAD:refs/heads/fix"], &clone, Some(&token))
        })
        .await
        .expect("git")
    };
    assert!(pushed.status.success(), "{}", String::from_utf8_lossy(&pushed.stderr));
    let created = Browser::new(&hub)
        .send(
            "POST",
            "/repos/octo-org/hello-world/pulls",
            &[("authorization", &format!("token {token}"))],
            json!({"head": "fix", "base": "main", "title": "Fix <it> & ship", "body": "Because \"reasons\"."})
                .to_string(),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let page = Browser::new(&hub).get("/octo-org/hello-world/pull/1").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("Fix &lt;it&gt; &amp; ship"), "{}", page.body);
    assert!(page.body.contains("Because &quot;reasons&quot;."));
    assert!(
        page.body.contains("Fix the &lt;blink&gt; tag"),
        "the commit subjects are listed"
    );
    assert!(page.body.contains("<code id=\"head-ref\">fix</code>"));
    assert_eq!(Browser::new(&hub).get("/octo-org/hello-world/pull/2").await.status, 404);
}
