//! Broker mode end to end, with real binaries: `mint-server` holds the App key, `mintd --broker` beside the
//! sandbox holds only its sandbox credential, and plain `git` and `mint publish` work as in key mode.

use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{APP_ID, INSTALLATION_ID, OTHER_REPO, OWNER, REPO, World, app_key};

#[allow(
    dead_code,
    unreachable_pub,
    reason = "shared with mint-server's tests, which use all of it"
)]
#[path = "../../crates/mint-server/tests/support/postgres.rs"]
pub(crate) mod postgres;

pub(crate) const ADMIN_TOKEN: &str = "an-admin-token-of-more-than-32-characters";

/// The real `mint-server` binary, on its own directory: the only place the App key is.
pub(crate) struct Server {
    child: Option<Child>,
    dir: tempfile::TempDir,
    database: String,
    hub_url: String,
    pub(crate) url: String,
    /// More flags; with `--listen` among them, the server listens there instead of on a free port.
    extra: Vec<String>,
    /// The App key's flags (`--private-key` …) and variables in the server's environment, if not the
    /// default PEM file.
    key: Vec<String>,
    env: Vec<(String, String)>,
    /// The memory cgroup it runs in, if started under a limit.
    pub(crate) cgroup: Option<crate::cgroup::MemoryCgroup>,
}

/// A secret file only its owner can read.
pub(crate) fn write_private(path: &Path, contents: &str) {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(contents.as_bytes()))
        .expect("secret file");
}

impl Server {
    pub(crate) fn start(world: &World, database: Option<String>) -> Self {
        Self::start_with(world, database, Vec::new())
    }

    pub(crate) fn start_with(world: &World, database: Option<String>, extra: Vec<String>) -> Self {
        Self::start_with_key(world, database, extra, Vec::new(), Vec::new())
    }

    /// A server whose App key is given by `key` (e.g. a `pkcs11:` URI and `--pkcs11-pin-file`), with `env`
    /// in its environment (e.g. `SOFTHSM2_CONF`).
    pub(crate) fn start_with_key(
        world: &World,
        database: Option<String>,
        extra: Vec<String>,
        key: Vec<String>,
        env: Vec<(String, String)>,
    ) -> Self {
        Self::launch(world, database, (extra, key, env), None)
    }

    /// A server held to `memory` bytes in a cgroup of its own (OOM-killed past it, as a pod's would be),
    /// with `env` in its environment.
    pub(crate) fn start_limited(
        world: &World,
        database: Option<String>,
        extra: Vec<String>,
        env: Vec<(String, String)>,
        memory: u64,
    ) -> Self {
        Self::launch(
            world,
            database,
            (extra, Vec::new(), env),
            Some(crate::cgroup::MemoryCgroup::create(memory)),
        )
    }

    /// A server in a temp dir of its own (the App key and admin token written there, SQLite there unless
    /// `database` names another), with (flags, key flags, environment), in `cgroup` if given.
    fn launch(
        world: &World,
        database: Option<String>,
        (extra, key, env): (Vec<String>, Vec<String>, Vec<(String, String)>),
        cgroup: Option<crate::cgroup::MemoryCgroup>,
    ) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("mint-server-it-")
            .tempdir()
            .expect("tempdir");
        for (name, contents) in [
            ("app.pem", app_key().private_key_pem()),
            ("admin-token", ADMIN_TOKEN.to_owned()),
        ] {
            write_private(&dir.path().join(name), &contents);
        }
        let database = database.unwrap_or_else(|| format!("sqlite://{}", dir.path().join("mint-server.db").display()));
        let mut server = Self {
            child: None,
            dir,
            database,
            hub_url: world.url(),
            url: String::new(),
            extra,
            key,
            env,
            cgroup,
        };
        server.spawn();
        server
    }

    /// Rows per table of the server's database, as mint-server counts them.
    pub(crate) fn row_counts(&self) -> std::collections::HashMap<&'static str, i64> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let store = mint_server::store::Store::open(&self.database)
                .await
                .expect("the database opens");
            let counts = store.row_counts().await.expect("counts").into_iter().collect();
            store.close().await;
            counts
        })
    }

    /// The SQLite database's files (with its WAL), in bytes; 0 on PostgreSQL.
    pub(crate) fn database_bytes(&self) -> u64 {
        std::fs::read_dir(self.dir.path())
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("mint-server.db"))
            .filter_map(|e| e.metadata().ok())
            .map(|m| m.len())
            .sum()
    }

    /// mint-server's log so far, in bytes.
    pub(crate) fn log_len(&self) -> u64 {
        std::fs::metadata(self.dir.path().join("server.log")).map_or(0, |m| m.len())
    }

    /// Is the process still running?
    pub(crate) fn alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().is_ok_and(|s| s.is_none()))
    }

    fn spawn(&mut self) {
        let listen = self
            .extra
            .iter()
            .position(|a| a == "--listen")
            .and_then(|i| self.extra.get(i + 1))
            .cloned();
        let port = listen
            .as_deref()
            .and_then(|l| l.rsplit_once(':'))
            .and_then(|(_, p)| p.parse().ok())
            .unwrap_or_else(|| {
                std::net::TcpListener::bind("127.0.0.1:0")
                    .and_then(|l| l.local_addr())
                    .expect("free port")
                    .port()
            });
        let extra: Vec<String> = if listen.is_some() {
            self.extra.clone()
        } else {
            let mut with_port = self.extra.clone();
            with_port.extend(["--listen".to_owned(), format!("127.0.0.1:{port}")]);
            with_port
        };
        let log = std::fs::File::create(self.dir.path().join("server.log")).expect("log");
        let key = if self.key.is_empty() {
            vec![
                "--private-key".to_owned(),
                self.dir.path().join("app.pem").display().to_string(),
            ]
        } else {
            self.key.clone()
        };
        let mut command = Command::new(env!("CARGO_BIN_EXE_mint-server"));
        command
            .arg("--app-id")
            .arg(APP_ID.to_string())
            .args(&key)
            .arg("--admin-token-file")
            .arg(self.dir.path().join("admin-token"))
            .arg("--database")
            .arg(&self.database)
            .args(&extra)
            .arg("--github-url")
            .arg(&self.hub_url)
            .arg("--api-url")
            .arg(&self.hub_url)
            .env_clear()
            .env("RUST_LOG", "debug")
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        if let Some(cgroup) = &self.cgroup {
            command = cgroup.wrap(&command);
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("mint-server starts");
        self.child = Some(child);
        let tls = self.extra.iter().any(|a| a == "--tls-cert");
        self.url = format!("{}://127.0.0.1:{port}", if tls { "https" } else { "http" });
        let started = Instant::now();
        let ready = |server: &Self| {
            if tls {
                server.log().contains("mint-server ready")
            } else {
                http(&server.url, "GET", "/readyz", None, None).0 == 200
            }
        };
        while !ready(self) {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "mint-server did not become ready:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// Stop (SIGKILL) and start again on the same database and port.
    pub(crate) fn restart(&mut self) {
        self.kill_9();
        let port = self.url.rsplit_once(':').map(|(_, p)| p.to_owned()).expect("a port");
        if !self.extra.iter().any(|a| a == "--listen") {
            self.extra.extend(["--listen".to_owned(), format!("127.0.0.1:{port}")]);
        }
        self.spawn();
    }

    pub(crate) fn kill_9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub(crate) fn admin(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        http(&self.url, method, path, Some(ADMIN_TOKEN), body)
    }

    /// A product connected to `repo` of the test installation; returns its id.
    pub(crate) fn product(&self, repo: &str) -> String {
        let (status, created) = self.admin("POST", "/api/v1/products", Some(json!({"name": "it", "members": []})));
        assert_eq!(status, 201, "{created}");
        let id = created["id"].as_str().expect("id").to_owned();
        self.connect(&id, repo);
        id
    }

    fn connect(&self, product: &str, repo: &str) {
        let (status, body) = self.admin(
            "PUT",
            &format!("/api/v1/products/{product}/connection"),
            Some(json!({"installation_id": INSTALLATION_ID, "repository": format!("{OWNER}/{repo}")})),
        );
        assert_eq!(status, 200, "{body}\n{}", self.log());
    }

    /// A sandbox of the product: its id and the path of its credential file (0600, in the world's dir).
    pub(crate) fn sandbox(&self, world: &World, product: &str) -> (String, PathBuf) {
        let (status, body) = self.admin("POST", &format!("/api/v1/products/{product}/sandboxes"), None);
        assert_eq!(status, 201, "{body}");
        let file = world.dir.path().join("mintd").join("sandbox-credential");
        let _ = std::fs::remove_file(&file);
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&file)
            .and_then(|mut f| f.write_all(body["credential"].as_str().expect("credential").as_bytes()))
            .expect("credential file");
        (body["sandbox_id"].as_str().expect("id").to_owned(), file)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill_9();
    }
}

/// One HTTP/1.1 request over a fresh connection; the status and the JSON body (or the text as a string).
pub(crate) fn http(base: &str, method: &str, path: &str, bearer: Option<&str>, body: Option<Value>) -> (u16, Value) {
    let addr = base.trim_start_matches("http://");
    let Ok(mut stream) = std::net::TcpStream::connect(addr) else {
        return (0, Value::Null);
    };
    stream.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let auth = bearer
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    if stream.write_all(request.as_bytes()).is_err() {
        return (0, Value::Null);
    }
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw);
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_default();
    let payload = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (
        status,
        serde_json::from_str(payload).unwrap_or_else(|_| Value::String(payload.to_owned())),
    )
}

/// A world whose mintd runs in broker mode against a real mint-server; the App key is only in the
/// server's directory, and the sandbox's side has none.
fn broker_world() -> (World, Server, String, String) {
    let mut world = World::start_with(crate::support::Options {
        start_mintd: false,
        ..Default::default()
    });
    // The sandbox host has no key file at all.
    std::fs::remove_file(&world.key_file).expect("remove the key from the sandbox side");
    let server = Server::start(&world, None);
    let product = server.product(REPO);
    let (sandbox, credential) = server.sandbox(&world, &product);
    world.spawn_mintd_broker(&server.url, &credential, &[]);
    (world, server, product, sandbox)
}

fn tokens(world: &World) -> Vec<fakehub::IssuedToken> {
    world
        .hub
        .tokens()
        .into_iter()
        .filter(|t| !t.permissions.is_empty())
        .collect()
}

#[test]
fn git_and_mint_publish_work_through_the_broker_with_no_key_beside_the_sandbox() {
    let (world, server, _, _) = broker_world();
    let work = world.dir.path().join("work");
    world.git_ok(None, &["clone", &world.repo_url(REPO), work.to_str().expect("utf8")]);
    std::fs::write(work.join("README.md"), "hello from broker mode\n").expect("write");
    world.git_ok(Some(&work), &["switch", "-c", "adagent/broker"]);
    world.git_ok(Some(&work), &["add", "-A"]);
    world.git_ok(Some(&work), &["commit", "-qm", "broker mode"]);
    world.git_ok(Some(&work), &["push", "-q", "origin", "adagent/broker"]);
    let head = world.git_ok(Some(&work), &["rev-parse", "HEAD"]);
    let server_head = Command::new("git")
        .arg("--git-dir")
        .arg(world.hub.repo_path(OWNER, REPO))
        .args(["rev-parse", "refs/heads/adagent/broker"])
        .output()
        .expect("git");
    assert_eq!(server_head.stdout, head.stdout, "the push arrived");

    // The agent's own flow opens the pull request through mintd, with the broker's token.
    std::fs::write(work.join("NOTES.md"), "more\n").expect("write");
    let published = crate::agent::mint_ok(
        &world,
        &work,
        &[
            "publish",
            "--branch",
            "adagent/broker",
            "--message",
            "Notes",
            "--title",
            "Notes",
            "--json",
        ],
    );
    let outcome: Value = serde_json::from_str(&published).expect("json");
    assert_eq!(outcome["outcome"], "published", "{outcome}");
    assert_eq!(world.hub.pulls().len(), 1);

    // Everything minted came through the server, scoped to the one repository.
    let minted = tokens(&world);
    assert!(!minted.is_empty());
    assert!(minted.iter().all(|t| t.repositories == [REPO]), "{minted:?}");

    // No key on the sandbox's side: not in mintd's argv or environment, not in any file there.
    let pid = world.mintd.as_ref().expect("mintd").id();
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).expect("cmdline");
    let environ = std::fs::read(format!("/proc/{pid}/environ")).expect("environ");
    for bytes in [&cmdline, &environ] {
        let text = String::from_utf8_lossy(bytes);
        assert!(!text.contains("private-key") && !text.contains(".pem"), "{text}");
    }
    let (files, with_key) = World::files_containing(&[world.dir.path()], "PRIVATE KEY");
    assert!(files > 0);
    assert!(with_key.is_empty(), "a key on the sandbox side: {with_key:?}");
    let status = Command::new(env!("CARGO_BIN_EXE_mint"))
        .arg("status")
        .env_clear()
        .env("MINT_SOCKET", &world.socket)
        .output()
        .expect("mint status");
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(status.contains(&server.url), "mint status names the broker:\n{status}");
    assert!(status.contains(&format!("{OWNER}/{REPO}")), "{status}");
}

#[test]
fn mint_clone_works_on_a_fresh_broker_sandbox() {
    // No git has asked yet: mintd learns the repository from the broker when mint asks where to clone.
    let (world, _server, _, _) = broker_world();
    crate::agent::mint_ok(&world, world.dir.path(), &["clone", "fresh"]);
    assert!(world.dir.path().join("fresh/.git").is_dir());
}

#[test]
fn a_changed_repository_is_served_from_the_next_mint_and_teardown_revokes_both() {
    let (world, server, product, sandbox) = broker_world();
    let first = world.fill(REPO).expect("a token for the connected repository");
    assert!(world.fill(OTHER_REPO).is_none(), "another repository is declined");

    server.connect(&product, OTHER_REPO);
    // git drops a token it saw fail (`git credential reject`): the next fill mints, for the new repository.
    let url = world.url();
    let (protocol, host) = url.split_once("://").expect("url");
    let reject = format!(
        "protocol={protocol}\nhost={host}\npath={OWNER}/{REPO}.git\nusername=x-access-token\npassword={first}\n\n"
    );
    world.git_with_input(None, &["credential", "reject"], Some(&reject));
    // git asks again for the clone's repository: the new token is for the other one, so it is declined,
    // and from then on the policy follows the new repository.
    assert!(world.fill(REPO).is_none(), "the old repository is no longer served");
    let second = world.fill(OTHER_REPO).expect("a token for the new repository");
    assert_ne!(first, second);
    let issued = world.hub.tokens();
    let find = |token: &str| issued.iter().find(|t| t.token == token).expect("issued").clone();
    assert_eq!(find(&first).repositories, [REPO]);
    assert_eq!(find(&second).repositories, [OTHER_REPO]);

    let (status, body) = server.admin("DELETE", &format!("/api/v1/sandboxes/{sandbox}"), None);
    assert_eq!(status, 204, "{body}");
    let after = world.hub.tokens();
    for token in [&first, &second] {
        assert!(
            after.iter().any(|t| &t.token == token && t.revoked),
            "teardown revoked every token minted for the sandbox"
        );
    }
}

#[test]
fn disconnect_and_teardown_reach_git_with_the_reason_and_the_way_out() {
    let (mut world, server, product, sandbox) = broker_world();
    let (status, _) = server.admin("DELETE", &format!("/api/v1/products/{product}/connection"), None);
    assert_eq!(status, 200);
    let output = world.git(None, &["ls-remote", &world.repo_url(REPO)]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("GitHub was disconnected: connect it again to run coding tasks"),
        "git shows the broker's reason:\n{stderr}\nmintd:\n{}",
        world.mintd_log()
    );

    // Reconnect; a fresh mintd (a new sandbox start) works again, and teardown stops its credential.
    server.connect(&product, REPO);
    world.stop_mintd();
    let credential = world.dir.path().join("mintd").join("sandbox-credential");
    world.spawn_mintd_broker(&server.url, &credential, &[]);
    assert!(world.fill(REPO).is_some());
    let (status, _) = server.admin("DELETE", &format!("/api/v1/sandboxes/{sandbox}"), None);
    assert_eq!(status, 204);
    assert!(
        tokens(&world).iter().all(|t| t.revoked),
        "teardown revoked what was minted"
    );
    world.stop_mintd();
    world.spawn_mintd_broker(&server.url, &credential, &[]);
    let output = world.git(None, &["ls-remote", &world.repo_url(REPO)]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success() && stderr.contains("this sandbox was torn down"),
        "a torn-down sandbox's credential is refused, and git says so:\n{stderr}"
    );
}

#[test]
fn mintd_revokes_its_broker_tokens_itself_at_sigterm() {
    let (mut world, _server, _, _) = broker_world();
    assert!(world.fill(REPO).is_some());
    let (status, _) = world.stop_mintd();
    assert!(status.success());
    let minted = tokens(&world);
    assert!(!minted.is_empty() && minted.iter().all(|t| t.revoked), "{minted:?}");
}

/// Sandboxes are created while the server is killed with SIGKILL; every one whose 201 came back works after
/// the restart: a commit is never lost.
fn committed_writes_survive_kill_9(world: &World, server: &mut Server, pg: Option<&mut postgres::Postgres>) {
    let product = server.product(REPO);
    let url = server.url.clone();
    let writer = std::thread::spawn(move || {
        let mut created = Vec::new();
        for _ in 0..400 {
            let (status, body) = http(
                &url,
                "POST",
                &format!("/api/v1/products/{product}/sandboxes"),
                Some(ADMIN_TOKEN),
                None,
            );
            if status != 201 {
                break;
            }
            created.push(body["credential"].as_str().expect("credential").to_owned());
        }
        created
    });
    std::thread::sleep(Duration::from_millis(300));
    server.kill_9();
    let created = writer.join().expect("writer");
    assert!(!created.is_empty(), "some sandboxes were created before the kill");
    if let Some(pg) = pg {
        pg.crash_and_restart();
    }
    server.spawn();
    for credential in &created {
        let (status, body) = http(&server.url, "POST", "/api/v1/token", Some(credential), None);
        assert_eq!(status, 200, "a sandbox committed before the kill was lost: {body}");
    }
    assert!(world.hub.tokens().len() >= created.len());
}

#[test]
fn kill_9_mid_write_loses_nothing_committed_on_sqlite() {
    let world = World::start_with(crate::support::Options {
        start_mintd: false,
        ..Default::default()
    });
    let mut server = Server::start(&world, None);
    committed_writes_survive_kill_9(&world, &mut server, None);
}

#[test]
fn kill_9_mid_write_loses_nothing_committed_on_postgres() {
    let world = World::start_with(crate::support::Options {
        start_mintd: false,
        ..Default::default()
    });
    let mut pg = postgres::Postgres::start();
    let mut server = Server::start(&world, Some(pg.database("mint")));
    committed_writes_survive_kill_9(&world, &mut server, Some(&mut pg));
}

#[test]
fn mint_server_refuses_bad_settings_with_exit_64_naming_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("app.pem");
    std::fs::write(&key, app_key().private_key_pem()).expect("key");
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).expect("chmod");
    let admin = dir.path().join("admin");
    std::fs::write(&admin, ADMIN_TOKEN).expect("admin");
    std::fs::set_permissions(&admin, std::os::unix::fs::PermissionsExt::from_mode(0o644)).expect("chmod");
    let run = |extra: &[&str], admin: &Path| {
        Command::new(env!("CARGO_BIN_EXE_mint-server"))
            .args(["--app-id", "7", "--private-key"])
            .arg(&key)
            .arg("--admin-token-file")
            .arg(admin)
            .args(extra)
            .env_clear()
            .output()
            .expect("runs")
    };
    let readable = run(&[], &admin);
    assert_eq!(readable.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&readable.stderr).contains("--admin-token-file (or MINT_SERVER_ADMIN_TOKEN_FILE)"));
    std::fs::set_permissions(&admin, std::os::unix::fs::PermissionsExt::from_mode(0o600)).expect("chmod");
    for (extra, names) in [
        (&["--database", "mysql://x"][..], "--database (or MINT_SERVER_DATABASE)"),
        (&["--listen", "0.0.0.0:0"][..], "--listen (or MINT_SERVER_LISTEN)"),
        (
            &["--sandbox-ttl", "30d"][..],
            "--sandbox-ttl (or MINT_SERVER_SANDBOX_TTL)",
        ),
    ] {
        let output = run(extra, &admin);
        assert_eq!(output.status.code(), Some(64), "{extra:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(names), "{extra:?}: {stderr}");
        assert!(!stderr.contains(ADMIN_TOKEN));
    }

    // The Integrations page's settings: a public URL that browsers would reach over plain http, and a
    // webhook secret short enough to guess.
    let secret = |name: &str, contents: &str| {
        let path = dir.path().join(name);
        write_private(&path, contents);
        path.display().to_string()
    };
    let client_secret = secret("client-secret", "a-client-secret");
    let short = secret("short-webhook-secret", "webhook-secret-for-tests");
    let long = secret("webhook-secret", &"0123456789abcdef".repeat(4));
    let web = |public: &str, hook: &str| -> Vec<String> {
        [
            "--public-url",
            public,
            "--app-slug",
            "mint",
            "--client-id",
            "Iv1.x",
            "--client-secret-file",
            &client_secret,
            "--webhook-secret-file",
            hook,
            "--behind-tls-proxy",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect()
    };
    for (args, names, says) in [
        (
            web("http://mint.example.com", &long),
            "--public-url (or MINT_SERVER_PUBLIC_URL)",
            "plain http",
        ),
        (
            web("https://mint.example.com", &short),
            "--webhook-secret-file (or MINT_SERVER_WEBHOOK_SECRET_FILE)",
            "openssl rand -hex 32",
        ),
    ] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let output = run(&args, &admin);
        assert_eq!(output.status.code(), Some(64), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(names) && stderr.contains(says), "{args:?}: {stderr}");
        assert!(
            !stderr.contains("webhook-secret-for-tests"),
            "the secret itself is never printed"
        );
    }
}

/// `curl` over https, trusting `ca`: (status, JSON body).
fn curl_tls(ca: &Path, method: &str, url: &str, body: Option<&str>) -> (u16, Value) {
    let mut command = Command::new("curl");
    command
        .args(["-sS", "-o", "-", "-w", "\n%{http_code}", "-X", method, "--cacert"])
        .arg(ca)
        .args([
            "-H",
            &format!("Authorization: Bearer {ADMIN_TOKEN}"),
            "-H",
            "Content-Type: application/json",
        ]);
    if let Some(body) = body {
        command.args(["--data", body]);
    }
    let output = command.arg(url).output().expect("curl runs");
    let text = String::from_utf8_lossy(&output.stdout);
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (
        status.trim().parse().unwrap_or_default(),
        serde_json::from_str(body).unwrap_or(Value::Null),
    )
}

#[test]
fn mint_server_serves_https_and_mintd_reaches_it_over_tls() {
    let mut world = World::start_with(crate::support::Options {
        start_mintd: false,
        ..Default::default()
    });
    std::fs::remove_file(&world.key_file).expect("no key beside the sandbox");
    let tls = tempfile::tempdir().expect("tempdir");
    let p = |name: &str| tls.path().join(name).display().to_string();
    // A private CA and a server certificate it signed for 127.0.0.1, as an operator's PKI would issue.
    std::fs::write(
        tls.path().join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .expect("ext");
    for args in [
        vec![
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=mint test CA",
            "-keyout",
            &p("ca.key"),
            "-out",
            &p("ca.pem"),
        ],
        vec![
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            &p("key.pem"),
            "-out",
            &p("leaf.csr"),
        ],
        vec![
            "x509",
            "-req",
            "-in",
            &p("leaf.csr"),
            "-CA",
            &p("ca.pem"),
            "-CAkey",
            &p("ca.key"),
            "-CAcreateserial",
            "-days",
            "1",
            "-out",
            &p("cert.pem"),
            "-extfile",
            &p("ext.cnf"),
        ],
    ] {
        let made = Command::new("openssl").args(&args).output().expect("openssl runs");
        assert!(
            made.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&made.stderr)
        );
    }
    let (ca, key) = (tls.path().join("ca.pem"), tls.path().join("key.pem"));
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).expect("chmod");
    let server = Server::start_with(
        &world,
        None,
        vec!["--tls-cert".into(), p("cert.pem"), "--tls-key".into(), p("key.pem")],
    );
    assert!(server.url.starts_with("https://"));

    // Plain http to the TLS port gets no answer it could mistake for the API.
    assert_ne!(
        http(&server.url.replace("https://", "http://"), "GET", "/readyz", None, None).0,
        200
    );
    let api =
        |method: &str, path: &str, body: Option<&str>| curl_tls(&ca, method, &format!("{}{path}", server.url), body);
    let (status, ready) = api("GET", "/readyz", None);
    assert_eq!(status, 200, "{ready}");
    let (status, product) = api("POST", "/api/v1/products", Some(r#"{"name":"tls"}"#));
    assert_eq!(status, 201, "{product}");
    let product = product["id"].as_str().expect("id");
    let connection = format!(r#"{{"installation_id":{INSTALLATION_ID},"repository":"{OWNER}/{REPO}"}}"#);
    let (status, body) = api(
        "PUT",
        &format!("/api/v1/products/{product}/connection"),
        Some(&connection),
    );
    assert_eq!(status, 200, "{body}");
    let (status, sandbox) = api("POST", &format!("/api/v1/products/{product}/sandboxes"), None);
    assert_eq!(status, 201, "{sandbox}");
    let credential = world.dir.path().join("mintd").join("sandbox-credential");
    write_private(&credential, sandbox["credential"].as_str().expect("credential"));

    // mintd trusts the server's CA through SSL_CERT_FILE, as an operator would give it a private CA.
    world.spawn_mintd_broker_env(&server.url, &credential, &[], &[("SSL_CERT_FILE", &ca)]);
    assert!(world.fill(REPO).is_some(), "a token over TLS:\n{}", world.mintd_log());
}
