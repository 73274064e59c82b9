//! mint-server on the internet, under every anonymous attack at once, held to 128 MiB in a memory cgroup:
//! unsigned 24 MB webhook bodies, stalled bodies on every POST route, 2,000 idle connections, `/login` and
//! Setup URL floods, forged and replayed webhooks. Meanwhile sandboxes mint broker tokens and a person
//! (without a browser) signs in, connects GitHub and disconnects it. Nothing legitimate fails, nothing is
//! OOM-killed, anonymous traffic costs GitHub nothing, and rows and the log stay bounded. The attackers
//! connect from 127.0.0.2, as another host would; the legitimate clients from 127.0.0.1.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::broker::{ADMIN_TOKEN, Server, http, write_private};
use crate::support::{OWNER, Options, REPO, World};

const MEMORY: u64 = 128 * 1024 * 1024;
const CLIENT_ID: &str = "Iv1.soakclient";
const CLIENT_SECRET: &str = "soak-client-secret";
const WEBHOOK_SECRET: &str = "soak-webhook-secret-0123456789abcdef0123";
const ATTACKER: &str = "127.0.0.2";
/// A log line per request would be ~100 bytes; the floods send hundreds of thousands.
const LOG_BOUND: u64 = 8 * 1024 * 1024;

/// How long the soak runs: 60 s, as CI runs it; `MINT_SOAK_SECS` shortens it for local iteration.
fn soak_duration() -> Duration {
    let secs = std::env::var("MINT_SOAK_SECS")
        .ok()
        .map_or(60, |v| v.parse().expect("MINT_SOAK_SECS: whole seconds"));
    Duration::from_secs(secs)
}

/// An HTTP/1.1 exchange on a connection of its own, from `source`; the status, the headers (lower-case
/// names, the last value of each) and the body.
fn exchange(
    source: Option<&str>,
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<(u16, HashMap<String, String>, String)> {
    let mut stream = connect(source, addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (name, value) in headers {
        let _ = write!(head, "{name}: {value}\r\n");
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP answer: {head:?}")))?;
    let headers = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Ok((status, headers, body.to_owned()))
}

fn connect(source: Option<&str>, addr: SocketAddr) -> std::io::Result<TcpStream> {
    let Some(source) = source else {
        return TcpStream::connect(addr);
    };
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    let from: IpAddr = source.parse().map_err(std::io::Error::other)?;
    socket.bind(&SocketAddr::new(from, 0).into())?;
    socket.connect(&addr.into())?;
    Ok(socket.into())
}

fn cookie_of(headers: &HashMap<String, String>) -> Option<String> {
    headers
        .get("set-cookie")?
        .split(';')
        .next()
        .filter(|kv| kv.starts_with("__Host-mint_session="))
        .map(str::to_owned)
}

fn hidden(page: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    Some(page.split(&marker).nth(1)?.split('"').next()?.to_owned())
}

/// A person with no browser: signs in to the Integrations page through fakehub's OAuth flow, connects
/// GitHub (choosing the repository), and disconnects it.
struct Person {
    server: SocketAddr,
    hub: SocketAddr,
    product: String,
    /// fakehub's session cookie, once signed in there.
    hub_cookie: Option<String>,
    /// mint's session cookie, once signed in (it changes at each OAuth round trip).
    session: Option<String>,
}

/// An answer with the status wanted: its headers and body; anything else as a failure naming the step.
fn step(
    what: &str,
    answer: std::io::Result<(u16, HashMap<String, String>, String)>,
    want: u16,
) -> Result<(HashMap<String, String>, String), String> {
    match answer {
        Ok((status, headers, body)) if status == want => Ok((headers, body)),
        Ok((status, _, body)) => Err(format!(
            "{what}: {status}, not {want}: {}",
            body.chars().take(300).collect::<String>()
        )),
        Err(e) => Err(format!("{what}: {e}")),
    }
}

impl Person {
    /// Follow GitHub's authorize page back to mint's callback (authorizing once if asked); the callback's
    /// path and query.
    fn authorize(&mut self, url: &str) -> Result<String, String> {
        let path = url.split_once(&self.hub.to_string()).map_or(url, |(_, p)| p).to_owned();
        if self.hub_cookie.is_none() {
            let (headers, _) = step(
                "fakehub sign-in",
                exchange(
                    None,
                    self.hub,
                    "POST",
                    "/session",
                    &[("Content-Type", "application/x-www-form-urlencoded")],
                    b"login=octocat&password=octocat&return_to=/",
                ),
                303,
            )?;
            self.hub_cookie = headers
                .get("set-cookie")
                .and_then(|c| c.split(';').next())
                .map(str::to_owned);
        }
        let cookie = self.hub_cookie.clone().unwrap_or_default();
        let answer = exchange(None, self.hub, "GET", &path, &[("Cookie", &cookie)], b"").map_err(|e| e.to_string())?;
        let location = match answer.0 {
            302 | 303 => answer.1.get("location").cloned().unwrap_or_default(),
            200 => {
                let page = answer.2;
                let fields: Vec<String> = [
                    "client_id",
                    "redirect_uri",
                    "state",
                    "code_challenge",
                    "code_challenge_method",
                    "authenticity_token",
                ]
                .iter()
                .filter_map(|k| {
                    hidden(&page, k).map(|v| {
                        format!(
                            "{k}={}",
                            form_urlencoded::byte_serialize(v.replace("&amp;", "&").as_bytes()).collect::<String>()
                        )
                    })
                })
                .chain(std::iter::once("authorize=1".to_owned()))
                .collect();
                let (headers, _) = step(
                    "authorize",
                    exchange(
                        None,
                        self.hub,
                        "POST",
                        "/login/oauth/authorize",
                        &[
                            ("Cookie", &cookie),
                            ("Content-Type", "application/x-www-form-urlencoded"),
                        ],
                        fields.join("&").as_bytes(),
                    ),
                    302,
                )?;
                headers.get("location").cloned().unwrap_or_default()
            }
            other => return Err(format!("fakehub's authorize page answered {other}")),
        };
        location
            .split_once(&format!("{}", self.server))
            .map(|(_, p)| p.to_owned())
            .ok_or_else(|| format!("GitHub sent the browser elsewhere: {location}"))
    }

    fn sign_in(&mut self) -> Result<String, String> {
        let page = format!("/products/{}/integrations", self.product);
        let (headers, _) = step(
            "/login",
            exchange(None, self.server, "GET", &format!("/login?next={page}"), &[], b""),
            303,
        )?;
        let flow_cookie = cookie_of(&headers).ok_or("no cookie from /login")?;
        let callback = self.authorize(&headers["location"])?;
        let (headers, _) = step(
            "sign-in callback",
            exchange(None, self.server, "GET", &callback, &[("Cookie", &flow_cookie)], b""),
            303,
        )?;
        cookie_of(&headers).ok_or_else(|| "no session at sign-in".to_owned())
    }

    /// Connect GitHub (choosing the repository) and disconnect it, signed in (once).
    fn round(&mut self) -> Result<(), String> {
        let session = match self.session.clone() {
            Some(session) => session,
            None => self.sign_in()?,
        };
        let product = self.product.clone();
        let page = format!("/products/{product}/integrations");
        let (_, body) = step(
            "the card",
            exchange(None, self.server, "GET", &page, &[("Cookie", &session)], b""),
            200,
        )?;
        let csrf = hidden(&body, "csrf").ok_or("no CSRF token on the card")?;
        let form = [
            ("Cookie", session.as_str()),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ];
        let (headers, _) = step(
            "Connect GitHub",
            exchange(
                None,
                self.server,
                "POST",
                &format!("/products/{product}/github/connect"),
                &form,
                format!("csrf={csrf}").as_bytes(),
            ),
            303,
        )?;
        let callback = self.authorize(&headers["location"])?;
        let (headers, _) = step(
            "connect callback",
            exchange(None, self.server, "GET", &callback, &[("Cookie", &session)], b""),
            303,
        )?;
        let session = cookie_of(&headers).ok_or("no rotated session")?;
        self.session = Some(session.clone());
        let (_, body) = step(
            "the chooser",
            exchange(
                None,
                self.server,
                "GET",
                &format!("/products/{product}/github/choose"),
                &[("Cookie", &session)],
                b"",
            ),
            200,
        )?;
        let (csrf, choice) = (
            hidden(&body, "csrf").ok_or("no CSRF token")?,
            hidden(&body, "choice").ok_or("no repository to choose")?,
        );
        let form = [
            ("Cookie", session.as_str()),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ];
        let (headers, _) = step(
            "Use this repository",
            exchange(
                None,
                self.server,
                "POST",
                &format!("/products/{product}/github/bind"),
                &form,
                format!("csrf={csrf}&choice={choice}").as_bytes(),
            ),
            303,
        )?;
        if !headers["location"].contains("flash=connected") {
            return Err(format!("not connected: {}", headers["location"]));
        }
        let (headers, _) = step(
            "Disconnect",
            exchange(
                None,
                self.server,
                "POST",
                &format!("/products/{product}/github/disconnect"),
                &form,
                format!("csrf={csrf}").as_bytes(),
            ),
            303,
        )?;
        if !headers["location"].contains("flash=disconnected") {
            return Err(format!("not disconnected: {}", headers["location"]));
        }
        Ok(())
    }
}

/// What the attackers got done, for the assertion messages.
#[derive(Default, Debug)]
struct Tally {
    big_webhooks: AtomicUsize,
    stalled: AtomicUsize,
    idle: AtomicUsize,
    logins: AtomicUsize,
    setups: AtomicUsize,
    forged: AtomicUsize,
    replayed: AtomicUsize,
}

fn sign(body: &[u8]) -> String {
    use hmac::Mac as _;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(WEBHOOK_SECRET.as_bytes()).expect("any key");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[test]
fn on_sqlite_mint_server_in_128_mib_survives_every_anonymous_attack_at_once_and_serves_everyone_else() {
    soak(None);
}

#[test]
fn on_postgres_mint_server_in_128_mib_survives_every_anonymous_attack_at_once_and_serves_everyone_else() {
    let pg = crate::broker::postgres::Postgres::start();
    soak(Some(pg.database("soak")));
}

/// mint-server serving the Integrations page on a free loopback port: a world whose fakehub has the page's
/// OAuth client (and `octocat`, owner of the org, when `with_owner`), the port, and the flags that serve
/// the page there, its secrets written in the world's directory.
fn page_server_setup(with_owner: bool) -> (World, u16, Vec<String>) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let public = format!("http://127.0.0.1:{port}");
    let world = {
        let public = public.clone();
        World::start_with_config(
            Options {
                start_mintd: false,
                ..Options::default()
            },
            move |config| {
                let config = if with_owner {
                    config.with_user(fakehub::UserConfig::new("octocat", "octocat").owner_of(OWNER))
                } else {
                    config
                };
                config
                    .with_oauth_client(CLIENT_ID, CLIENT_SECRET)
                    .with_callback_url(&format!("{public}/github/oauth/callback"))
            },
        )
    };
    let dir = world.dir.path().to_path_buf();
    write_private(&dir.join("client-secret"), CLIENT_SECRET);
    write_private(&dir.join("webhook-secret"), WEBHOOK_SECRET);
    let flags = [
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--public-url",
        &public,
        "--app-slug",
        "mint-fakehub",
        "--client-id",
        CLIENT_ID,
        "--client-secret-file",
        &dir.join("client-secret").display().to_string(),
        "--webhook-secret-file",
        &dir.join("webhook-secret").display().to_string(),
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    (world, port, flags)
}

#[expect(
    clippy::too_many_lines,
    reason = "one soak: its setup, its attackers, its legitimate load, its verdict"
)]
fn soak(database: Option<String>) {
    let _heavy = crate::support::one_heavy_test_at_a_time();
    let (world, port, mut extra) = page_server_setup(true);
    extra.extend(["--reconcile-interval".to_owned(), "0s".to_owned()]);
    let mut server = Server::start_limited(
        &world,
        database,
        extra,
        vec![("RUST_LOG".into(), "info".into())],
        MEMORY,
    );
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let hub: SocketAddr = world.url().trim_start_matches("http://").parse().expect("hub addr");

    let (status, created) = server.admin(
        "POST",
        "/api/v1/products",
        Some(json!({"name": "Soak", "members": ["octocat"]})),
    );
    assert_eq!(status, 201, "{created}");
    let person_product = created["id"].as_str().expect("id").to_owned();
    let broker_product = server.product(REPO);
    // A delivery GitHub really sent, captured: the replayer sends it again and again under new ids.
    let captured = json!({"action": "suspend", "installation": {"id": 42, "account": {"login": OWNER}}}).to_string();
    let (status, _, _) = exchange(
        None,
        addr,
        "POST",
        "/github/webhook",
        &[
            ("X-GitHub-Event", "installation"),
            ("X-GitHub-Delivery", "captured"),
            ("X-Hub-Signature-256", &sign(captured.as_bytes())),
            ("Content-Type", "application/json"),
        ],
        captured.as_bytes(),
    )
    .expect("webhook");
    assert_eq!(status, 202);
    // Its processing (a re-read of the installation from GitHub) lands before the count starts.
    std::thread::sleep(Duration::from_secs(1));
    let mints_before = world.hub.mints().len();

    let deadline = Instant::now() + soak_duration();
    let running = Arc::new(AtomicBool::new(true));
    let tally = Arc::new(Tally::default());
    let (mut legit_failures, mut legit_mints, mut people) = (Vec::new(), 0usize, 0usize);
    std::thread::scope(|scope| {
        let until = |running: &AtomicBool| running.load(Relaxed) && Instant::now() < deadline;
        // Unsigned 24 MB webhook bodies, as fast as the server reads them.
        for _ in 0..8 {
            let (running, tally) = (running.clone(), tally.clone());
            scope.spawn(move || {
                let chunk = vec![b'x'; 64 * 1024];
                while until(&running) {
                    let Ok(mut stream) = connect(Some(ATTACKER), addr) else { continue };
                    let head = format!("POST /github/webhook HTTP/1.1\r\nHost: x\r\nX-GitHub-Event: installation\r\nX-GitHub-Delivery: big\r\nContent-Length: {}\r\n\r\n", 24 * 1024 * 1024 - 1);
                    if stream.write_all(head.as_bytes()).is_err() { continue }
                    let mut sent = 0;
                    while sent < 24 * 1024 * 1024 - 1 - chunk.len() && until(&running) {
                        if stream.write_all(&chunk).is_err() { break }
                        sent += chunk.len();
                    }
                    tally.big_webhooks.fetch_add(1, Relaxed);
                }
            });
        }
        // Stalled bodies on every POST route: a few bytes of each, then nothing, 40 at a time.
        {
            let (running, tally) = (running.clone(), tally.clone());
            scope.spawn(move || {
                let routes = [
                    "/github/webhook",
                    "/logout",
                    "/products/p/github/connect",
                    "/products/p/github/bind",
                    "/products/p/github/disconnect",
                    "/api/v1/token",
                    "/api/v1/products",
                ];
                while until(&running) {
                    let held: Vec<TcpStream> = (0..40)
                        .filter_map(|i| {
                            let mut s = connect(Some(ATTACKER), addr).ok()?;
                            let head = format!(
                                "POST {} HTTP/1.1\r\nHost: x\r\nContent-Length: 60000\r\n\r\nstalled",
                                routes[i % routes.len()]
                            );
                            s.write_all(head.as_bytes()).ok()?;
                            Some(s)
                        })
                        .collect();
                    tally.stalled.fetch_add(held.len(), Relaxed);
                    std::thread::sleep(Duration::from_secs(3));
                    drop(held);
                }
            });
        }
        // 2,000 idle connections, opened again as the server closes them.
        {
            let (running, tally) = (running.clone(), tally.clone());
            scope.spawn(move || {
                let mut idle: Vec<TcpStream> = Vec::new();
                while until(&running) {
                    idle.retain(|s| {
                        let mut probe = [0u8; 1];
                        s.set_nonblocking(true).is_ok()
                            && matches!(s.peek(&mut probe), Err(ref e) if e.kind() == std::io::ErrorKind::WouldBlock)
                    });
                    while idle.len() < 2_000 && until(&running) {
                        match connect(Some(ATTACKER), addr) {
                            Ok(s) => {
                                idle.push(s);
                                tally.idle.fetch_add(1, Relaxed);
                            }
                            Err(_) => break,
                        }
                    }
                    std::thread::sleep(Duration::from_millis(500));
                }
            });
        }
        // /login and Setup URL floods, forged and replayed webhooks.
        for kind in 0..4 {
            let (running, tally, captured) = (running.clone(), tally.clone(), captured.clone());
            scope.spawn(move || {
                let mut n = 0u64;
                while until(&running) {
                    n += 1;
                    let _ = match kind {
                        0 => exchange(Some(ATTACKER), addr, "GET", "/login?next=/%09/evil.example", &[], b"")
                            .map(|_| tally.logins.fetch_add(1, Relaxed)),
                        1 => exchange(
                            Some(ATTACKER),
                            addr,
                            "GET",
                            &format!(
                                "/github/setup?installation_id=42&setup_action={}",
                                ["install", "update", "request"][(n % 3) as usize]
                            ),
                            &[],
                            b"",
                        )
                        .map(|_| tally.setups.fetch_add(1, Relaxed)),
                        2 => exchange(
                            Some(ATTACKER),
                            addr,
                            "POST",
                            "/github/webhook",
                            &[
                                ("X-GitHub-Event", "installation"),
                                ("X-GitHub-Delivery", &format!("forged-{n}")),
                                ("X-Hub-Signature-256", &format!("sha256={}", "0".repeat(64))),
                            ],
                            br#"{"action":"deleted","installation":{"id":42}}"#,
                        )
                        .map(|_| tally.forged.fetch_add(1, Relaxed)),
                        _ => exchange(
                            Some(ATTACKER),
                            addr,
                            "POST",
                            "/github/webhook",
                            &[
                                ("X-GitHub-Event", "installation"),
                                ("X-GitHub-Delivery", &format!("replayed-{n}")),
                                ("X-Hub-Signature-256", &sign(captured.as_bytes())),
                            ],
                            captured.as_bytes(),
                        )
                        .map(|_| tally.replayed.fetch_add(1, Relaxed)),
                    };
                }
            });
        }
        // Give the attacks a moment to be in full swing, then the legitimate load.
        std::thread::sleep(Duration::from_secs(2));
        let person = scope.spawn({
            let running = running.clone();
            let product = person_product.clone();
            move || {
                let mut person = Person {
                    server: addr,
                    hub,
                    product,
                    hub_cookie: None,
                    session: None,
                };
                let (mut rounds, mut failures) = (0, Vec::new());
                while until(&running) {
                    if let Err(e) = person.round() {
                        failures.push(format!("person, round {rounds}: {e}"));
                    }
                    rounds += 1;
                    std::thread::sleep(Duration::from_millis(500));
                }
                (rounds, failures)
            }
        });
        let base = format!("http://{addr}");
        while until(&running) {
            let (status, sandbox) = http(
                &base,
                "POST",
                &format!("/api/v1/products/{broker_product}/sandboxes"),
                Some(ADMIN_TOKEN),
                None,
            );
            if status != 201 {
                legit_failures.push(format!("create a sandbox: {status} {sandbox}"));
                continue;
            }
            let credential = sandbox["credential"].as_str().unwrap_or_default();
            match http(&base, "POST", "/api/v1/token", Some(credential), None) {
                (200, _) => legit_mints += 1,
                (status, body) => legit_failures.push(format!("broker token: {status} {body}")),
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        running.store(false, Relaxed);
        let (rounds, failures) = person.join().expect("person");
        people = rounds;
        legit_failures.extend(failures);
    });

    let alive = server.alive();
    let cgroup = server.cgroup.as_ref().expect("in a cgroup");
    let summary = cgroup.summary();
    let oom = cgroup.oom_kills();
    let log = server.log_len();
    eprintln!(
        "soak: {tally:?}; {legit_mints} broker tokens, {people} people connected and disconnected; {summary}; log {} KiB",
        log >> 10
    );
    assert!(
        alive && oom == 0,
        "mint-server died under the attack ({summary}):\n{}",
        server.log()
    );
    assert!(
        legit_failures.is_empty(),
        "{} legitimate failures, e.g. {:?}; {summary}",
        legit_failures.len(),
        legit_failures.first()
    );
    assert!(legit_mints > 0 && people > 0, "the legitimate load ran");
    // GitHub: one mint per new sandbox, and per connect (the check of the chosen repository); nothing for
    // anonymous traffic, though it sent thousands of Setup URLs for a real installation.
    let mints = world.hub.mints().len() - mints_before;
    assert_eq!(
        mints,
        legit_mints + people,
        "GitHub calls: anonymous traffic minted nothing ({tally:?})"
    );
    assert!(
        tally.setups.load(Relaxed) > 100 && tally.logins.load(Relaxed) > 100 && tally.big_webhooks.load(Relaxed) > 0
    );
    // Rows: what anonymous traffic may write is bounded by the per-address limit and expiry.
    let rows = server.row_counts();
    let logins = u64::try_from(tally.logins.load(Relaxed)).unwrap_or(u64::MAX);
    let allowed = u64::from(mint_server::web::LOGIN_BURST)
        + soak_duration().as_secs() / mint_server::web::LOGIN_EVERY.as_secs()
        + 1;
    let oauth_states = u64::try_from(rows["oauth_states"]).unwrap_or_default();
    assert!(
        oauth_states <= allowed + 2 * u64::try_from(people).unwrap_or_default(),
        "{logins} anonymous /login wrote {oauth_states} OAuth states (the address's limit allows {allowed}): {rows:?}"
    );
    assert!(
        rows["web_sessions"] <= 1,
        "no session for anonymous traffic, one per person: {rows:?}"
    );
    assert_eq!(
        rows["webhook_deliveries"], 1,
        "forged and replayed deliveries left no row: {rows:?}"
    );
    assert!(
        log < LOG_BOUND,
        "the log is {log} bytes; what it says most:\n{}",
        most_said(&server.log())
    );
}

/// The log's five most frequent lines, each without its timestamp and with digits masked, and how often.
fn most_said(log: &str) -> String {
    let mut counts = std::collections::HashMap::<String, usize>::new();
    for line in log.lines() {
        let line = line.split_once(' ').map_or(line, |(_, rest)| rest);
        let shape: String = line
            .chars()
            .map(|c| if c.is_ascii_digit() { '#' } else { c })
            .take(160)
            .collect();
        *counts.entry(shape).or_default() += 1;
    }
    let mut counts: Vec<_> = counts.into_iter().collect();
    counts.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
    counts.iter().take(5).fold(String::new(), |mut out, (line, n)| {
        let _ = writeln!(out, "{n:>8} × {line}");
        out
    })
}

/// Issue 25's measure: 10,000 anonymous `/login` from 1,000 addresses (each allowed its burst) leave a
/// database of bounded size, and the sweep empties what they wrote once it expires.
#[test]
fn ten_thousand_anonymous_logins_from_a_thousand_addresses_grow_the_database_by_a_bounded_amount() {
    let (world, port, extra) = page_server_setup(false);
    let server = Server::start_with(&world, None, extra);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let before = server.database_bytes();
    let answered: Vec<u16> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..4_u32)
            .map(|w| {
                scope.spawn(move || {
                    let mut statuses = Vec::new();
                    for i in (w * 250)..((w + 1) * 250) {
                        let source = format!("127.0.{}.{}", 10 + i / 200, 1 + i % 200);
                        for _ in 0..10 {
                            let status = exchange(Some(&source), addr, "GET", "/login", &[], b"").map_or(0, |a| a.0);
                            statuses.push(status);
                        }
                    }
                    statuses
                })
            })
            .collect();
        workers.into_iter().flat_map(|w| w.join().expect("worker")).collect()
    });
    assert_eq!(answered.len(), 10_000);
    assert!(answered.iter().all(|s| *s == 303 || *s == 429), "{:?}", &answered[..20]);
    let rows = server.row_counts();
    let after = server.database_bytes();
    let grown = after.saturating_sub(before);
    eprintln!(
        "10,000 anonymous /login from 1,000 addresses: {} OAuth states, {} sessions, the database (with its WAL) grew by {} KiB",
        rows["oauth_states"],
        rows["web_sessions"],
        grown >> 10
    );
    assert_eq!(rows["web_sessions"], 0, "no session rows for anonymous visitors");
    assert!(rows["oauth_states"] <= 10_000);
    assert!(grown < 8 * 1024 * 1024, "the database grew by {grown} bytes");
}
