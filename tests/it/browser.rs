//! The Integrations page in a real headless Chromium (Debian's chromium + chromium-driver, over WebDriver):
//! every step of the product's documented flow against fakehub, the attacks on the callback, and the
//! screenshots in docs/.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use crate::broker::Server;
use crate::support::{Options, World};

const CLIENT_ID: &str = "Iv1.browsertestclient";
const CLIENT_SECRET: &str = "browser-test-client-secret";
const WEBHOOK_SECRET: &str = "browser-test-webhook-secret-0123456789abcdef";

/// chromedriver on a free port; killed on drop.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    fn start() -> Self {
        let port = free_port();
        let binary = [
            "chromedriver",
            "/usr/lib/chromium/chromedriver",
            "/usr/bin/chromedriver",
        ]
        .into_iter()
        .find(|b| {
            Command::new(b)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .expect("chromedriver is needed: apt-get install chromium chromium-driver");
        let child = Command::new(binary)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let url = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "chromedriver did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { child, url }
    }

    async fn browser(&self) -> Client {
        // WebDriver is plain http on loopback, but the client builds a TLS config: give it mint's provider.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({"args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1100,820"]}),
        );
        ClientBuilder::rustls()
            .expect("rustls")
            .capabilities(caps)
            .connect(&self.url)
            .await
            .expect("a Chromium session")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The browser is driven from its own runtime: the world's fakehub runs on another.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// fakehub with people, orgs and the App's OAuth settings pointing at a mint-server on `public`.
fn world(public: &str) -> World {
    let public = public.to_owned();
    World::start_with_config(
        Options {
            start_mintd: false,
            ..Options::default()
        },
        move |config| {
            config
                .with_user(
                    fakehub::UserConfig::new("octocat", "octocat")
                        .owner_of("acme")
                        .owner_of("bigco"),
                )
                .with_user(fakehub::UserConfig::new("mona", "mona").member_of("acme", false))
                .with_user(fakehub::UserConfig::new("hubot", "hubot").member_of("bigco", true))
                .with_restricted_org("bigco")
                .with_repositories("acme", &["webapp", "api"])
                .with_repositories("bigco", &["monorepo"])
                .with_oauth_client(CLIENT_ID, CLIENT_SECRET)
                .with_callback_url(&format!("{public}/github/oauth/callback"))
                .with_setup_url(&format!("{public}/github/setup"))
                .with_webhook(&format!("{public}/github/webhook"), Some(WEBHOOK_SECRET))
                .with_html_urls_on_fakehub(true)
        },
    )
}

struct Rig {
    world: World,
    server: Server,
    driver: Driver,
    public: String,
    shots: PathBuf,
}

impl Rig {
    fn start() -> Self {
        let port = free_port();
        let public = format!("http://127.0.0.1:{port}");
        let world = world(&public);
        let dir = world.dir.path().to_path_buf();
        for (name, value) in [("client-secret", CLIENT_SECRET), ("webhook-secret", WEBHOOK_SECRET)] {
            crate::broker::write_private(&dir.join(name), value);
        }
        let extra = vec![
            "--listen".to_owned(),
            format!("127.0.0.1:{port}"),
            "--public-url".into(),
            public.clone(),
            "--app-slug".into(),
            "mint-fakehub".into(),
            "--client-id".into(),
            CLIENT_ID.into(),
            "--client-secret-file".into(),
            dir.join("client-secret").display().to_string(),
            "--webhook-secret-file".into(),
            dir.join("webhook-secret").display().to_string(),
        ];
        let server = Server::start_with(&world, None, extra);
        let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("target").join("screenshots");
        std::fs::create_dir_all(&shots).expect("screenshot dir");
        Self {
            world,
            server,
            driver: Driver::start(),
            public,
            shots,
        }
    }

    fn product(&self, name: &str, members: &[&str]) -> String {
        let (status, body) = self.server.admin(
            "POST",
            "/api/v1/products",
            Some(json!({"name": name, "members": members})),
        );
        assert_eq!(status, 201, "{body}");
        body["id"].as_str().expect("id").to_owned()
    }

    fn connection(&self, product: &str) -> Value {
        self.server
            .admin("GET", &format!("/api/v1/products/{product}/connection"), None)
            .1
    }

    async fn shot(&self, browser: &Client, name: &str) {
        let png = browser.screenshot().await.expect("screenshot");
        std::fs::write(self.shots.join(format!("{name}.png")), png).expect("write screenshot");
    }
}

/// The element, waiting (up to 10 s) for a navigation a click started to land.
async fn find(browser: &Client, css: &str) -> fantoccini::elements::Element {
    match browser
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css(css))
        .await
    {
        Ok(element) => element,
        Err(e) => {
            let url = browser.current_url().await.map(|u| u.to_string()).unwrap_or_default();
            let body = match browser.find(Locator::Css("body")).await {
                Ok(b) => b.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            panic!("no {css} on {url}: {e}\n{body}");
        }
    }
}

/// The element's text. A page that was still loading can replace the element between finding and reading
/// it (the `WebDriver` error "stale element"): then it is found again.
async fn text(browser: &Client, css: &str) -> String {
    for _ in 0..5 {
        match find(browser, css).await.text().await {
            Ok(text) => return text,
            Err(fantoccini::error::CmdError::Standard(e))
                if e.error == fantoccini::error::ErrorStatus::StaleElementReference =>
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("text of {css}: {e:?}"),
        }
    }
    panic!("{css} kept going stale");
}

async fn click(browser: &Client, css: &str) {
    find(browser, css).await.click().await.expect("click");
}

async fn page_text(browser: &Client) -> String {
    text(browser, "body").await
}

/// Wait until the page's body holds `needle` (webhooks land asynchronously); reloads while waiting.
async fn wait_for_text(browser: &Client, needle: &str) {
    let started = Instant::now();
    loop {
        if page_text(browser).await.contains(needle) {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "never saw {needle:?} on {:?}:\n{}",
            browser.current_url().await,
            page_text(browser).await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        browser.refresh().await.expect("reload");
    }
}

/// Sign in at fakehub's form if it is showing, then authorize the App if GitHub asks; returns once the
/// browser has left GitHub's pages.
async fn github_sign_in(browser: &Client, login: &str) {
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if let Ok(field) = browser.find(Locator::Id("login_field")).await {
            field.send_keys(login).await.expect("type");
            browser
                .find(Locator::Id("password"))
                .await
                .expect("password")
                .send_keys(login)
                .await
                .expect("type");
            click(browser, "#sign-in").await;
            continue;
        }
        if let Ok(button) = browser.find(Locator::Id("js-oauth-authorize-btn")).await {
            button.click().await.expect("authorize");
            continue;
        }
        return;
    }
}

async fn open_card(rig: &Rig, browser: &Client, product: &str, login: &str) {
    browser
        .goto(&format!("{}/products/{product}/integrations", rig.public))
        .await
        .expect("goto");
    github_sign_in(browser, login).await;
    if !browser
        .current_url()
        .await
        .expect("url")
        .as_str()
        .contains("/integrations")
    {
        browser
            .goto(&format!("{}/products/{product}/integrations", rig.public))
            .await
            .expect("goto");
    }
    assert!(
        browser.find(Locator::Id("github-card")).await.is_ok(),
        "the card shows for a member:\n{}",
        page_text(browser).await
    );
}

#[test]
#[expect(
    clippy::too_many_lines,
    reason = "the product's documented flow, step after step, as a person does it"
)]
fn connect_change_manage_disconnect_in_a_browser() {
    let _heavy = crate::support::one_heavy_test_at_a_time();
    let mut rig = Rig::start();
    runtime().block_on(async {
        let product = rig.product("Acme web", &["octocat"]);
        let browser = rig.driver.browser().await;
        open_card(&rig, &browser, &product, "octocat").await;
        assert_eq!(text(&browser, "#github-status").await, "Not connected");
        assert_eq!(text(&browser, "#signed-in-as").await, "octocat");
        rig.shot(&browser, "card-not-connected").await;

        // Connect GitHub: no installation of the App reachable yet, so GitHub's install page, then back.
        click(&browser, "#connect-github").await;
        github_sign_in(&browser, "octocat").await;
        assert!(page_text(&browser).await.contains("Install"), "GitHub's install page");
        click(&browser, "#choose-acme").await;
        click(&browser, "#install_target_all").await;
        click(&browser, "#install").await;
        github_sign_in(&browser, "octocat").await;
        // Two repositories can be seen: the product picks one.
        assert!(
            browser
                .current_url()
                .await
                .expect("url")
                .as_str()
                .ends_with("/github/choose")
        );
        rig.shot(&browser, "choose-repository").await;
        click(&browser, "input[data-repository='acme/api']").await;
        click(&browser, "#use-repository").await;
        assert_eq!(text(&browser, "#github-status").await, "Connected");
        assert_eq!(text(&browser, "#github-repository").await, "acme/api");
        assert!(text(&browser, "#github-account").await.starts_with("acme"));
        rig.shot(&browser, "card-connected").await;
        let connection = rig.connection(&product);
        assert_eq!(connection["status"], "active");
        let installation = connection["installation_id"].as_u64().expect("installation");

        // A sandbox of the product gets tokens for acme/api.
        let (_, credential) = rig.server.sandbox(&rig.world, &product);
        rig.world.spawn_mintd_broker(&rig.server.url, &credential, &[]);
        let fill = |world: &World, repo: &str| {
            let url = world.url();
            let (protocol, host) = url.split_once("://").expect("url");
            let input = format!("protocol={protocol}\nhost={host}\npath=acme/{repo}.git\n\n");
            crate::support::password_of(&world.git_with_input(None, &["credential", "fill"], Some(&input)))
        };
        assert!(fill(&rig.world, "api").is_some(), "{}", rig.world.mintd_log());

        // Change repository: the next mint is for the new one.
        click(&browser, "#change-repository").await;
        github_sign_in(&browser, "octocat").await;
        click(&browser, "input[data-repository='acme/webapp']").await;
        click(&browser, "#use-repository").await;
        assert_eq!(text(&browser, "#github-repository").await, "acme/webapp");
        rig.world.stop_mintd();
        rig.world.spawn_mintd_broker(&rig.server.url, &credential, &[]);
        assert!(
            fill(&rig.world, "webapp").is_some(),
            "the next mint is for the new repository"
        );
        let minted = rig.world.hub.tokens();
        assert_eq!(minted.last().expect("a token").repositories, ["webapp"]);

        // An agent publishes from the sandbox: the card links to its pull request, a page on "GitHub".
        let seed = rig.world.dir.path().join("seed");
        let remote = format!("{}/acme/webapp.git", rig.world.url());
        rig.world
            .git_ok(None, &["clone", "-q", &remote, seed.to_str().expect("utf8")]);
        std::fs::write(seed.join("README.md"), "webapp\n").expect("write");
        rig.world.git_ok(Some(&seed), &["add", "-A"]);
        rig.world.git_ok(Some(&seed), &["commit", "-qm", "first"]);
        rig.world.git_ok(Some(&seed), &["push", "-q", "origin", "HEAD:main"]);
        let clone = rig.world.dir.path().join("agent-clone");
        crate::agent::mint_ok(
            &rig.world,
            rig.world.dir.path(),
            &["clone", clone.to_str().expect("utf8")],
        );
        std::fs::write(clone.join("AGENT.md"), "written by a coding task\n").expect("write");
        crate::agent::mint_ok(
            &rig.world,
            &clone,
            &[
                "publish",
                "--branch",
                "adagent/card",
                "--message",
                "Add AGENT.md",
                "--title",
                "Add AGENT.md",
            ],
        );
        // The card reads GitHub's list at most every few seconds, however often it is loaded: reload until the
        // pull request is there, as a person would.
        wait_for_text(&browser, "Pull requests from coding tasks").await;
        find(&browser, "#pull-requests").await;
        rig.shot(&browser, "card-with-pull-request").await;
        click(&browser, "#pull-requests a").await;
        assert_eq!(text(&browser, "#pull-title").await, "Add AGENT.md");
        browser.back().await.expect("back");

        // Manage repositories: GitHub's settings page for the installation. Removing the repository there
        // reaches the card through the signed webhook.
        click(&browser, "#manage-repositories").await;
        assert!(
            browser
                .current_url()
                .await
                .expect("url")
                .as_str()
                .ends_with(&format!("/settings/installations/{installation}")),
            "{:?}",
            browser.current_url().await
        );
        click(&browser, "#install_target_selected").await;
        click(&browser, "#repository-api").await;
        let before = rig.world.hub.deliveries().len();
        click(&browser, "#save").await;
        // The click returns before the form is submitted: a `goto` at once could land first and then be
        // replaced by the submission's redirect back to this page. Once GitHub has sent the webhook the
        // submission is under way, and a new navigation supersedes it.
        let saved = Instant::now();
        while !rig.world.hub.deliveries()[before..]
            .iter()
            .any(|d| d.event == "installation_repositories")
        {
            assert!(saved.elapsed() < Duration::from_secs(10), "the save sent no webhook");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        browser
            .goto(&format!("{}/products/{product}/integrations", rig.public))
            .await
            .expect("goto");
        wait_for_text(&browser, "Repository removed").await;
        rig.shot(&browser, "card-repo-removed").await;
        let delivered = rig.world.hub.deliveries();
        assert!(
            delivered
                .iter()
                .any(|d| d.event == "installation_repositories" && d.status_code == Some(202)),
            "{delivered:?}"
        );

        // Disconnect: our row only; git in the sandbox fails with the reason.
        click(&browser, "#disconnect").await;
        assert_eq!(text(&browser, "#github-status").await, "Not connected");
        assert!(text(&browser, "#flash").await.contains("The App stays installed"));
        rig.shot(&browser, "card-disconnected").await;
        rig.world.stop_mintd();
        rig.world.spawn_mintd_broker(&rig.server.url, &credential, &[]);
        let output = rig
            .world
            .git(None, &["ls-remote", &format!("{}/acme/webapp.git", rig.world.url())]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success());
        assert!(stderr.contains("GitHub was disconnected by octocat"), "{stderr}");
        assert!(
            rig.world.hub.installations().iter().any(|i| i.id == installation),
            "Disconnect never uninstalls the App"
        );
        browser.close().await.expect("close");
    });
}

#[test]
fn an_org_that_restricts_apps_gets_a_request_an_owner_approves_then_connect() {
    let rig = Rig::start();
    runtime().block_on(async {
        let product = rig.product("BigCo tools", &["hubot"]);
        let hubot = rig.driver.browser().await;
        open_card(&rig, &hubot, &product, "hubot").await;
        click(&hubot, "#connect-github").await;
        github_sign_in(&hubot, "hubot").await;
        click(&hubot, "#choose-bigco").await;
        click(&hubot, "#install_target_all").await;
        click(&hubot, "#request").await;
        // GitHub came back with setup_action=request and no installation_id: the card waits for an owner.
        assert_eq!(text(&hubot, "#github-status").await, "Waiting for approval");
        rig.shot(&hubot, "card-pending-approval").await;
        assert_eq!(rig.connection(&product)["status"], "pending_approval");

        // An owner of bigco approves on GitHub.
        let octocat = rig.driver.browser().await;
        octocat
            .goto(&format!(
                "{}/organizations/bigco/settings/installation_requests",
                rig.world.url()
            ))
            .await
            .expect("goto");
        github_sign_in(&octocat, "octocat").await;
        if !octocat
            .current_url()
            .await
            .expect("url")
            .as_str()
            .contains("installation_requests")
        {
            octocat
                .goto(&format!(
                    "{}/organizations/bigco/settings/installation_requests",
                    rig.world.url()
                ))
                .await
                .expect("goto");
        }
        let request = rig.world.hub.installation_requests().pop().expect("a request");
        assert_eq!(request.requester, "hubot");
        click(&octocat, &format!("#approve-{}", request.id)).await;
        find(&octocat, "body").await;
        let started = Instant::now();
        while !rig
            .world
            .hub
            .deliveries()
            .iter()
            .any(|d| d.event == "installation" && d.action.as_deref() == Some("created"))
        {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "no installation.created delivery: {:?}",
                rig.world.hub.deliveries()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        octocat.close().await.expect("close");

        // The `installation.created` webhook with the requester makes the card connectable.
        wait_for_text(&hubot, "approved the installation").await;
        assert_eq!(text(&hubot, "#github-status").await, "Not connected");
        click(&hubot, "#connect-github").await;
        github_sign_in(&hubot, "hubot").await;
        click(&hubot, "input[data-repository='bigco/monorepo']").await;
        click(&hubot, "#use-repository").await;
        assert_eq!(text(&hubot, "#github-repository").await, "bigco/monorepo");
        assert_eq!(rig.connection(&product)["status"], "active");
        hubot.close().await.expect("close");
    });
}

/// One request to mint-server with a cookie, not following redirects: (status, Location, body).
fn raw(public: &str, method: &str, path: &str, cookie: Option<&str>, form: Option<&str>) -> (u16, String, String) {
    use std::io::{Read, Write};
    let addr = public.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    let cookie = cookie.map(|c| format!("Cookie: {c}\r\n")).unwrap_or_default();
    let body = form.unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{cookie}Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).expect("write");
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_default();
    let location = answer
        .lines()
        .find_map(|l| l.strip_prefix("location: ").or_else(|| l.strip_prefix("Location: ")))
        .unwrap_or_default()
        .trim()
        .to_owned();
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_owned();
    (status, location, body)
}

fn query_param(url: &str, name: &str) -> String {
    url.split_once('?')
        .map(|(_, q)| q)
        .unwrap_or_default()
        .split('&')
        .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
        .unwrap_or_default()
        .to_owned()
}

#[test]
#[expect(
    clippy::too_many_lines,
    reason = "one attack after another, each with its check, reads best in order"
)]
fn forged_replayed_and_cross_site_requests_bind_nothing() {
    let rig = Rig::start();
    runtime().block_on(async {
        let product = rig.product("Acme web", &["octocat", "mona"]);
        let octocats_only = rig.product("Octocat's", &["octocat"]);
        rig.world
            .hub
            .install("acme", fakehub::RepositorySelection::All, &[])
            .expect("installed on acme");
        let not_connected = |rig: &Rig, product: &str| {
            let c = rig.connection(product);
            assert_eq!(c["status"], "not_connected", "nothing was bound: {c}");
        };

        let octocat = rig.driver.browser().await;
        open_card(&rig, &octocat, &product, "octocat").await;
        let session = octocat.get_named_cookie(SESSION).await.expect("mint's session cookie");
        let cookie = format!("{}={}", session.name(), session.value());
        let csrf = octocat
            .find(Locator::Css("input[name=csrf]"))
            .await
            .expect("a CSRF field")
            .attr("value")
            .await
            .expect("attr")
            .expect("value");

        // A state-changing POST without the session's CSRF token changes nothing.
        let (status, _, body) = raw(
            &rig.public,
            "POST",
            &format!("/products/{product}/github/disconnect"),
            Some(&cookie),
            Some("csrf=forged"),
        );
        assert_eq!(status, 403, "{body}");
        let (status, _, _) = raw(
            &rig.public,
            "POST",
            &format!("/products/{product}/github/connect"),
            Some(&cookie),
            None,
        );
        assert!(status == 403 || status == 422 || status == 400, "{status}");

        // A forged installation_id on the Setup URL: installation 42 belongs to octo-org, which octocat cannot
        // reach. The hint is checked against GitHub as the user, and ignored.
        let (status, location, _) = raw(
            &rig.public,
            "POST",
            &format!("/products/{product}/github/install"),
            Some(&cookie),
            Some(&format!("csrf={csrf}")),
        );
        assert_eq!(status, 303);
        let state = query_param(&location, "state");
        assert!(!state.is_empty(), "{location}");
        octocat
            .goto(&format!(
                "{}/github/setup?installation_id=42&setup_action=install&state={state}",
                rig.public
            ))
            .await
            .expect("goto");
        github_sign_in(&octocat, "octocat").await;
        let page = page_text(&octocat).await;
        assert!(
            octocat
                .current_url()
                .await
                .expect("url")
                .as_str()
                .ends_with("/github/choose"),
            "{page}"
        );
        assert!(
            page.contains("acme/webapp") && !page.contains("octo-org"),
            "only what octocat can push to:\n{page}"
        );
        not_connected(&rig, &product);

        // The same state again (a replay): refused, whatever the code.
        let (status, _, body) = raw(
            &rig.public,
            "GET",
            &format!("/github/setup?installation_id=42&setup_action=install&state={state}"),
            Some(&cookie),
            None,
        );
        assert_eq!(status, 400, "{body}");
        assert!(body.contains("already used"), "{body}");
        let (status, _, body) = raw(
            &rig.public,
            "GET",
            &format!("/github/oauth/callback?code=x&state={state}"),
            Some(&cookie),
            None,
        );
        assert_eq!(status, 400);
        assert!(body.contains("already used"), "{body}");
        // No state at all, or no session: never binds, and asks GitHub nothing.
        let github_calls = rig.world.hub.requests().len();
        let (status, location, _) = raw(
            &rig.public,
            "GET",
            "/github/setup?installation_id=42&setup_action=install",
            Some(&cookie),
            None,
        );
        assert_eq!((status, location.as_str()), (303, "/"));
        assert_eq!(
            rig.world.hub.requests().len(),
            github_calls,
            "an unverified Setup URL reaches no GitHub API"
        );
        let (status, _, body) = raw(&rig.public, "GET", "/github/oauth/callback?code=x&state=y", None, None);
        assert_eq!(status, 400);
        assert!(body.contains("did not bring back the mint cookie"), "{body}");
        not_connected(&rig, &product);

        // A member who can see the installation but cannot push gets nothing to choose, and a forged choice
        // is refused.
        let mona = rig.driver.browser().await;
        open_card(&rig, &mona, &product, "mona").await;
        click(&mona, "#connect-github").await;
        github_sign_in(&mona, "mona").await;
        assert!(
            page_text(&mona).await.contains("no repository you can push to"),
            "{}",
            page_text(&mona).await
        );
        let mona_csrf = mona
            .find(Locator::Css("input[name=csrf]"))
            .await
            .expect("csrf")
            .attr("value")
            .await
            .expect("attr")
            .expect("value");
        let mona_session = mona.get_named_cookie(SESSION).await.expect("cookie");
        let installation = rig
            .world
            .hub
            .installations()
            .into_iter()
            .find(|i| i.account == "acme")
            .expect("acme")
            .id;
        // Any repository id: mona was shown none she can push to, so none may be bound.
        let webapp_id = 1;
        let (status, location, _) = raw(
            &rig.public,
            "POST",
            &format!("/products/{product}/github/bind"),
            Some(&format!("{}={}", mona_session.name(), mona_session.value())),
            Some(&format!("csrf={mona_csrf}&choice={installation}:{webapp_id}")),
        );
        assert_eq!(
            (status, location.as_str()),
            (
                303,
                format!("/products/{product}/github/choose?flash=not-pushable").as_str()
            )
        );
        not_connected(&rig, &product);

        // A non-member sees nothing of a product and can change nothing.
        mona.goto(&format!("{}/products/{octocats_only}/integrations", rig.public))
            .await
            .expect("goto");
        assert!(page_text(&mona).await.contains("mona is not a member of this product"));
        let (status, _, _) = raw(
            &rig.public,
            "POST",
            &format!("/products/{octocats_only}/github/disconnect"),
            Some(&format!("{}={}", mona_session.name(), mona_session.value())),
            Some(&format!("csrf={mona_csrf}")),
        );
        assert_eq!(status, 403);
        mona.close().await.expect("close");
        octocat.close().await.expect("close");
    });
}

pub(crate) const SESSION: &str = "__Host-mint_session";

/// The README's `mint demo --serve`, as a person uses it: open the one URL, sign in, Connect GitHub,
/// install on the demo org, pick a repository; the demo's sandbox publishes, and the card links to the PR.
#[test]
fn mint_demo_serve_walks_a_person_from_connect_to_a_pull_request() {
    use std::io::BufRead;
    let mut demo = Command::new(env!("CARGO_BIN_EXE_mint"))
        .args(["demo", "--serve"])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("mint demo --serve starts");
    let mut lines = std::io::BufReader::new(demo.stdout.take().expect("stdout")).lines();
    let url = lines.next().expect("a line").expect("utf8");
    assert!(
        url.starts_with("http://127.0.0.1:") && url.ends_with("/integrations"),
        "{url}"
    );
    let driver = Driver::start();
    runtime().block_on(async {
        let browser = driver.browser().await;
        browser.goto(&url).await.expect("goto");
        github_sign_in(&browser, "octocat").await;
        assert_eq!(text(&browser, "#github-status").await, "Not connected");
        click(&browser, "#connect-github").await;
        github_sign_in(&browser, "octocat").await;
        click(&browser, "#choose-octo-org").await;
        click(&browser, "#install_target_all").await;
        click(&browser, "#install").await;
        github_sign_in(&browser, "octocat").await;
        click(&browser, "input[data-repository='octo-org/hello-world']").await;
        click(&browser, "#use-repository").await;
        assert_eq!(text(&browser, "#github-repository").await, "octo-org/hello-world");
        // The demo notices the connection, starts a sandbox, and its agent publishes.
        wait_for_text(&browser, "Pull requests from coding tasks").await;
        click(&browser, "#pull-requests a").await;
        assert!(!text(&browser, "#pull-title").await.is_empty());
        browser.close().await.expect("close");
    });
    let pid = nix::unistd::Pid::from_raw(i32::try_from(demo.id()).expect("pid"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).expect("signal");
    let status = demo.wait().expect("wait");
    assert!(status.success(), "the demo stops cleanly on Ctrl-C: {status}");
}
