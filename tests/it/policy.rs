//! The daemon decides who gets a token: hostile or foreign requests get none, and it keeps serving.

use crate::support::{OWNER, REPO, World, password_of};

#[test]
fn refused_requests_get_no_password_and_the_daemon_keeps_serving() {
    let world = World::start();
    let url = world.url();
    let (protocol, host) = url.split_once("://").expect("url");
    let (hostname, port) = host.rsplit_once(':').expect("port");
    let other_port = format!("{hostname}:{}", port.parse::<u16>().expect("port").wrapping_add(1));
    let ok_path = format!("{OWNER}/{REPO}.git");
    let line = |k: &str, v: &str| format!("{k}={v}\n");
    let base = |h: &str, p: &str| format!("{}{}{}", line("protocol", protocol), line("host", h), line("path", p));
    let hostile: Vec<(&str, Vec<u8>)> = vec![
        ("other host", base("github.com", &ok_path).into_bytes()),
        ("other port", base(&other_port, &ok_path).into_bytes()),
        (
            "host suffix",
            base(&format!("{host}.evil.example"), &ok_path).into_bytes(),
        ),
        (
            "other scheme",
            format!("protocol=https\nhost={host}\npath={ok_path}\n").into_bytes(),
        ),
        (
            "other owner",
            base(host, &format!("someone-else/{REPO}.git")).into_bytes(),
        ),
        (
            "other repo",
            base(host, &format!("{OWNER}/other-repo.git")).into_bytes(),
        ),
        (
            "dot-dot",
            base(host, &format!("{OWNER}/{REPO}/../other-repo")).into_bytes(),
        ),
        (
            "extra segment",
            base(host, &format!("{OWNER}/{REPO}/info/refs")).into_bytes(),
        ),
        (
            "repo-name prefix",
            base(host, &format!("{OWNER}/{REPO}-fork.git")).into_bytes(),
        ),
        (
            "url= to another host",
            format!("url=https://evil.example/{ok_path}\n").into_bytes(),
        ),
        (
            "missing host",
            format!("protocol={protocol}\npath={ok_path}\n").into_bytes(),
        ),
        (
            "CR",
            format!("protocol={protocol}\r\nhost={host}\npath={ok_path}\n").into_bytes(),
        ),
        (
            "NUL",
            format!("protocol={protocol}\nhost={host}\0\npath={ok_path}\n").into_bytes(),
        ),
        (
            "duplicated host",
            format!("protocol={protocol}\nhost={host}\nhost=evil.example\n").into_bytes(),
        ),
        (
            "line without =",
            format!("protocol={protocol}\nhost {host}\n").into_bytes(),
        ),
        ("8 MiB", {
            let mut big = base(host, &ok_path).into_bytes();
            big.extend(std::iter::repeat_n(b'a', 8 * 1024 * 1024));
            big
        }),
    ];
    for (name, input) in &hostile {
        let out = world.helper("get", input);
        assert_eq!(password_of(&out), None, "{name} got a password");
        assert!(!String::from_utf8_lossy(&out.stdout).contains("password"), "{name}");
    }
    assert_eq!(world.hub.mints().len(), 0, "no refused request caused a mint");

    // store/erase of foreign credentials change nothing.
    let legit = base(host, &ok_path);
    let token = password_of(&world.helper("get", legit.as_bytes())).expect("legitimate request served");
    for action in ["store", "erase"] {
        for creds in [
            format!("{}username=x\npassword={token}\n", base("github.com", &ok_path)),
            format!("{}username=x\npassword=not-the-token\n", base(host, &ok_path)),
        ] {
            assert!(world.helper(action, creds.as_bytes()).status.success());
        }
    }
    assert_eq!(
        password_of(&world.helper("get", legit.as_bytes())).as_deref(),
        Some(token.as_str())
    );
    assert_eq!(world.hub.mints().len(), 1);
}

#[test]
fn the_answer_is_exactly_username_password_and_expiry() {
    let world = World::start();
    let url = world.url();
    let (protocol, host) = url.split_once("://").expect("url");
    let out = world.helper(
        "get",
        format!("protocol={protocol}\nhost={host}\npath={OWNER}/{REPO}.git\n").as_bytes(),
    );
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).expect("utf8");
    let keys: Vec<&str> = text.lines().map(|l| l.split_once('=').expect("key=value").0).collect();
    assert_eq!(keys, ["username", "password", "password_expiry_utc"]);
    assert!(text.starts_with("username=x-access-token\n"));
    let expiry: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("password_expiry_utc="))
        .expect("expiry")
        .parse()
        .expect("unix seconds");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    assert!(
        (now + 3000..=now + 3700).contains(&expiry),
        "an hour-long token: {expiry} vs now {now}"
    );
    assert_eq!(
        expiry,
        world.hub.tokens()[0]
            .expires_at
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs()
    );
}
