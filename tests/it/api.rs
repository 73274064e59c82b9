//! mintd's GitHub API endpoint: Debian's real `gh` (2.23) over mintd's socket (`http_unix_socket`, the
//! sandbox image's gh config), with a placeholder where a token would be, in mediated and helper mode; and
//! raw hostile requests against the socket and the git proxy. Everything mintd refuses must leave fakehub
//! unchanged.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use fakehub::LineComment;
use mint_api::{Client, PullRequestInput};

use crate::support::{OTHER_REPO, OWNER, Options, REPO, World};

const GH: &str = "/usr/bin/gh";
const PLACEHOLDER: &str = "mint-placeholder-not-a-token";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Helper,
    Mediated,
}

/// A world in `mode`, with branch `adagent/fix` pushed (one new commit) and its pull request #1 opened as a
/// draft through `POST /v1/pulls`.
fn world_with_a_pull_request(mode: Mode) -> World {
    let mut world = World::start_with(Options {
        start_mintd: mode == Mode::Helper,
        ..Default::default()
    });
    if mode == Mode::Mediated {
        world.start_mediated();
    }
    push(&world, "adagent/fix", "fix.txt");
    let body = serde_json::to_vec(&PullRequestInput {
        branch: "adagent/fix".into(),
        title: "Fix the thing".into(),
        body: Some("What changed.".into()),
        ticket: None,
        draft: true,
    })
    .expect("json");
    let answer = Client::new(&world.socket)
        .request("POST", mint_api::route::PULLS, &body)
        .expect("mintd answers");
    assert_eq!(answer.status, 201, "{:?}\n{}", answer.reason, world.mintd_log());
    world
}

/// Clone (or reuse the clone), commit `file` and push to `branch` through the sandbox's git.
pub(crate) fn push(world: &World, branch: &str, file: &str) {
    let dir = world.dir.path().join("work");
    if !dir.exists() {
        world.git_ok(
            None,
            &["clone", "-q", &world.repo_url(REPO), dir.to_str().expect("utf8")],
        );
    }
    world.git_ok(Some(&dir), &["checkout", "-q", "-B", branch]);
    std::fs::write(dir.join(file), format!("{file}\n")).expect("write");
    world.git_ok(Some(&dir), &["add", "-A"]);
    world.git_ok(Some(&dir), &["commit", "-q", "-m", file]);
    world.git_ok(
        Some(&dir),
        &["push", "-q", "origin", &format!("HEAD:refs/heads/{branch}")],
    );
}

/// gh's config directory as the sandbox image ships it, with the socket at the test's path.
fn gh_config(world: &World) -> PathBuf {
    let dir = world.dir.path().join("gh-config");
    if dir.exists() {
        return dir;
    }
    std::fs::create_dir_all(&dir).expect("dir");
    let image = Path::new(env!("CARGO_MANIFEST_DIR")).join("sandbox-image/gh");
    std::fs::copy(image.join("hosts.yml"), dir.join("hosts.yml")).expect("hosts.yml");
    let shipped = std::fs::read_to_string(image.join("config.yml")).expect("config.yml");
    assert!(shipped.contains("http_unix_socket: /run/mint/mint.sock"), "{shipped}");
    std::fs::write(dir.join("config.yml"), shipped).expect("config.yml");
    // The one setting that differs here, set as the docs say to set it.
    let out = gh_in(
        world,
        &dir,
        &[
            "config",
            "set",
            "http_unix_socket",
            world.socket.to_str().expect("utf8"),
        ],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    dir
}

fn gh_in(world: &World, config: &Path, args: &[&str]) -> Output {
    Command::new(GH)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", &world.home)
        .env("GH_CONFIG_DIR", config)
        .env("GH_REPO", format!("{OWNER}/{REPO}"))
        .env("GH_PROMPT_DISABLED", "1")
        .env("GH_NO_UPDATE_NOTIFIER", "1")
        .env("NO_COLOR", "1")
        .current_dir(world.dir.path())
        .stdin(Stdio::null())
        .output()
        .expect("gh runs")
}

/// `gh ARGS` as the sandbox runs it: no token anywhere in its environment.
fn gh(world: &World, args: &[&str]) -> Output {
    let config = gh_config(world);
    gh_in(world, &config, args)
}

fn gh_ok(world: &World, args: &[&str]) -> String {
    let out = gh(world, args);
    assert!(
        out.status.success(),
        "gh {args:?} failed:\n{}\nmintd log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        world.mintd_log()
    );
    String::from_utf8(out.stdout).expect("utf8")
}

fn gh_refused(world: &World, args: &[&str], reason: &str) {
    let out = gh(world, args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "gh {args:?} succeeded: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(stderr.contains(reason), "gh {args:?}: {stderr}");
}

fn refs(world: &World) -> String {
    let out = Command::new("git")
        .arg("--git-dir")
        .arg(world.hub.repo_path(OWNER, REPO))
        .args(["for-each-ref", "--format=%(refname) %(objectname)"])
        .output()
        .expect("git");
    String::from_utf8(out.stdout).expect("utf8")
}

fn the_review_loop_with_gh(mode: Mode) {
    let world = world_with_a_pull_request(mode);
    let view = gh_ok(&world, &["pr", "view", "1"]);
    assert!(view.contains("Fix the thing"), "{view}");

    world.hub.review(
        OWNER,
        REPO,
        1,
        "octocat",
        "REQUEST_CHANGES",
        "Two things.",
        &[
            LineComment {
                path: "fix.txt",
                line: 1,
                body: "Say why.",
            },
            LineComment {
                path: "README.md",
                line: 3,
                body: "Typo.",
            },
        ],
    );
    let comments = gh_ok(&world, &["api", &format!("repos/{OWNER}/{REPO}/pulls/1/comments")]);
    let comments: serde_json::Value = serde_json::from_str(&comments).expect("json");
    let paths: Vec<&str> = comments
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|c| c["path"].as_str())
        .collect();
    assert_eq!(paths, ["fix.txt", "README.md"]);

    gh_ok(&world, &["pr", "comment", "1", "--body", "Addressed both."]);
    assert!(
        world
            .hub
            .issue_comments()
            .iter()
            .any(|c| c.body == "Addressed both." && c.number == 1)
    );
    gh_ok(&world, &["pr", "ready", "1"]);
    assert!(!world.hub.pulls()[0].draft, "marked ready for review");

    // Merging, by either API, and writing outside the agent's branches are refused, and nothing changes.
    let before = refs(&world);
    gh_refused(&world, &["pr", "merge", "1", "--merge"], "merging is refused");
    gh_refused(
        &world,
        &["api", "-X", "PUT", &format!("repos/{OWNER}/{REPO}/pulls/1/merge")],
        "merging is refused",
    );
    gh_refused(
        &world,
        &[
            "api",
            "-X",
            "PUT",
            &format!("repos/{OWNER}/{REPO}/contents/x"),
            "-f",
            "branch=main",
            "-f",
            "message=m",
            "-f",
            "content=eA==",
        ],
        "outside the agent's branches",
    );
    gh_refused(
        &world,
        &["pr", "view", "1", "-R", &format!("{OWNER}/{OTHER_REPO}")],
        "another repository is refused",
    );
    assert_eq!(refs(&world), before, "nothing moved at fakehub");
    assert!(world.hub.pulls().iter().all(|p| p.merged.is_none()), "nothing merged");

    // gh holds the placeholder; the token is nowhere gh or the sandbox can see.
    let config = gh_config(&world);
    let hosts = std::fs::read_to_string(config.join("hosts.yml")).expect("hosts");
    assert!(hosts.contains(PLACEHOLDER));
    for token in world.hub.tokens() {
        let (files, found) = World::files_containing(&[&world.home, &config], &token.token);
        assert!(files > 0 && found.is_empty(), "token found in {found:?}");
        assert!(!world.mintd_log().contains(&token.token), "the token is in mintd's log");
        assert!(!view.contains(&token.token));
    }
    // Every request that reached fakehub carried the installation token, never the placeholder.
    let api_calls: Vec<_> = world
        .hub
        .requests()
        .into_iter()
        .filter(|r| r.path.starts_with("/repos/") || r.path == "/graphql")
        .collect();
    assert!(api_calls.iter().all(|r| r.token_id.is_some()), "{api_calls:?}");
}

#[test]
fn gh_runs_the_review_loop_in_mediated_mode_with_no_token_and_cannot_merge() {
    the_review_loop_with_gh(Mode::Mediated);
}

#[test]
fn gh_runs_the_review_loop_through_mintd_in_helper_mode_too() {
    the_review_loop_with_gh(Mode::Helper);
}

/// Where a raw request goes: mintd's socket, or the git proxy's listener.
#[derive(Clone, Copy)]
enum To<'a> {
    Socket(&'a Path),
    Proxy(&'a str),
}

/// One raw HTTP/1.1 request (`Connection: close`) on a fresh connection: the status and the whole answer.
/// The request is written from a thread, so an answer given before a large body is all sent is still read.
fn raw(to: To<'_>, head: &str, body: &[u8]) -> (u16, String) {
    let mut request = head.replace('\n', "\r\n").into_bytes();
    if !head.contains("Content-Length") {
        request.truncate(request.len() - 2);
        request.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
    }
    request.extend_from_slice(body);
    let answer = match to {
        To::Socket(path) => {
            let stream = std::os::unix::net::UnixStream::connect(path).expect("connect");
            stream.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
            exchange(stream.try_clone().expect("clone"), stream, request)
        }
        To::Proxy(authority) => {
            let stream = std::net::TcpStream::connect(authority).expect("connect");
            stream.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
            exchange(stream.try_clone().expect("clone"), stream, request)
        }
    };
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, text)
}

fn exchange(mut reader: impl Read, mut writer: impl Write + Send + 'static, request: Vec<u8>) -> Vec<u8> {
    let writing = std::thread::spawn(move || {
        let _ = writer.write_all(&request);
    });
    let mut answer = Vec::new();
    let _ = reader.read_to_end(&mut answer);
    let _ = writing.join();
    answer
}

fn graphql(query: &str) -> Vec<u8> {
    serde_json::json!({ "query": query }).to_string().into_bytes()
}

/// What fakehub holds that a write could change: refs, pull requests, comments, reviews.
fn fakehub_state(world: &World) -> String {
    format!(
        "{}\n{:?}\n{}\n{}\n{}",
        refs(world),
        world
            .hub
            .pulls()
            .iter()
            .map(|p| (
                p.number,
                p.title.clone(),
                p.body.clone(),
                p.state.clone(),
                p.draft,
                p.merged.clone(),
                p.base.clone()
            ))
            .collect::<Vec<_>>(),
        world.hub.issue_comments().len(),
        world.hub.review_comments().len(),
        world.hub.reviews().len()
    )
}

/// Requests a hostile sandbox might send to slip a merge or a write past mintd: path tricks, a second
/// repository, method overrides, GraphQL that hides a merge, a batch, a 10 MB query.
#[expect(clippy::too_many_lines, reason = "a table of cases")]
fn hostile_cases() -> Vec<(String, Vec<u8>)> {
    let o = OWNER;
    let r = REPO;
    let merge = "mutation { mergePullRequest(input: {pullRequestId: \"PR_x\"}) { clientMutationId } }";
    let huge_query = format!("{{ {} }}", "viewer { login } ".repeat(650_000));
    let mut cases: Vec<(String, Vec<u8>)> = vec![
        // Path tricks.
        (
            format!("PUT /repos/{o}/{r}/pulls/../pulls/1/merge HTTP/1.1\n"),
            b"{}".to_vec(),
        ),
        (format!("PUT /repos/{o}/{r}/pulls/1%2Fmerge HTTP/1.1\n"), b"{}".to_vec()),
        (
            format!("PUT /repos/{o}/{r}%2F..%2F{r}/pulls/1/merge HTTP/1.1\n"),
            b"{}".to_vec(),
        ),
        (format!("PUT /repos/{o}/{r}/pulls/1/MERGE HTTP/1.1\n"), b"{}".to_vec()),
        (format!("PUT /REPOS/{o}/{r}/Pulls/1/Merge HTTP/1.1\n"), b"{}".to_vec()),
        (format!("PUT /repos//{o}/{r}/pulls/1/merge HTTP/1.1\n"), b"{}".to_vec()),
        (format!("PUT /repos/{o}/{r}//pulls/1/merge HTTP/1.1\n"), b"{}".to_vec()),
        (format!("GET /repos/{o}/{OTHER_REPO}/pulls HTTP/1.1\n"), Vec::new()),
        (
            format!("GET /repos/{o}/{r}/pulls?repo={OTHER_REPO} HTTP/1.1\n"),
            Vec::new(),
        ),
        (
            format!("POST /repos/{o}/{r}/issues/1/comments?owner={o}&repo={OTHER_REPO} HTTP/1.1\n"),
            br#"{"body":"x"}"#.to_vec(),
        ),
        (
            format!("PUT /repos/{o}/{r}/contents/x?branch=main HTTP/1.1\n"),
            br#"{"message":"m","content":"eA==","branch":"adagent/fix"}"#.to_vec(),
        ),
        (
            format!("PUT /repos/{o}/{r}/contents/x HTTP/1.1\n"),
            br#"{"message":"m","content":"eA==","branch":"adagent/fix","branch":"main"}"#.to_vec(),
        ),
        (
            format!("PATCH /repos/{o}/{r}/git/refs/heads/main HTTP/1.1\n"),
            br#"{"sha":"0000000000000000000000000000000000000000","force":true}"#.to_vec(),
        ),
        (
            format!("DELETE /repos/{o}/{r}/git/refs/heads/adagent/fix HTTP/1.1\n"),
            Vec::new(),
        ),
        (
            format!("PATCH /repos/{o}/{r} HTTP/1.1\n"),
            br#"{"default_branch":"adagent/fix"}"#.to_vec(),
        ),
        (
            format!("PATCH /repos/{o}/{r}/pulls/1 HTTP/1.1\n"),
            br#"{"state":"closed"}"#.to_vec(),
        ),
        (
            format!("POST /repos/{o}/{r}/pulls/1/reviews HTTP/1.1\n"),
            br#"{"event":"APPROVE"}"#.to_vec(),
        ),
        // A method override on an allowed read.
        (
            format!("GET /repos/{o}/{r}/pulls/1/merge HTTP/1.1\nX-HTTP-Method-Override: PUT\n"),
            Vec::new(),
        ),
        (
            format!("POST /repos/{o}/{r}/issues/1/comments HTTP/1.1\nX-HTTP-Method-Override: PUT\n"),
            br#"{"body":"x"}"#.to_vec(),
        ),
        // GraphQL: aliases, fragments, several operations, a batch, a 10 MB query, a subscription, junk.
        (
            "POST /graphql HTTP/1.1\n".into(),
            graphql(
                "mutation { ok: addComment(input: {subjectId: \"S\", body: \"b\"}) { clientMutationId } m: mergePullRequest(input: {pullRequestId: \"P\"}) { clientMutationId } }",
            ),
        ),
        (
            "POST /graphql HTTP/1.1\n".into(),
            graphql(
                "mutation { ...M } fragment M on Mutation { mergePullRequest(input: {pullRequestId: \"P\"}) { clientMutationId } }",
            ),
        ),
        (
            "POST /graphql HTTP/1.1\n".into(),
            graphql(
                "mutation { ... on Mutation { enablePullRequestAutoMerge(input: {pullRequestId: \"P\"}) { clientMutationId } } }",
            ),
        ),
        (
            "POST /graphql HTTP/1.1\n".into(),
            serde_json::json!({"query": format!("query A {{ viewer {{ login }} }} {merge}"), "operationName": "A"})
                .to_string()
                .into_bytes(),
        ),
        (
            "POST /graphql HTTP/1.1\n".into(),
            serde_json::json!([{"query": "{ viewer { login } }"}, {"query": merge}])
                .to_string()
                .into_bytes(),
        ),
        ("POST /api/graphql HTTP/1.1\n".into(), graphql(merge)),
        ("POST /graphql HTTP/1.1\n".into(), graphql(&huge_query)),
        ("POST /graphql HTTP/1.1\n".into(), graphql("subscription { x }")),
        (
            "POST /graphql HTTP/1.1\n".into(),
            graphql("mutation { mergePullRequest("),
        ),
        (
            "POST /graphql?query=x HTTP/1.1\n".into(),
            graphql("{ viewer { login } }"),
        ),
        ("GET /user HTTP/1.1\n".into(), Vec::new()),
        ("GET /repositories/1/pulls HTTP/1.1\n".into(), Vec::new()),
    ];
    // The same through GitHub Enterprise Server's prefix.
    cases.push((
        format!("PUT /api/v3/repos/{o}/{r}/pulls/1/merge HTTP/1.1\n"),
        b"{}".to_vec(),
    ));
    cases
}

#[test]
fn hostile_requests_are_refused_on_the_socket_and_the_proxy_and_change_nothing() {
    let mut world = World::start_with(Options {
        start_mintd: false,
        ..Default::default()
    });
    let proxy = world.start_mediated();
    let authority = proxy.trim_start_matches("http://").trim_end_matches('/').to_owned();
    push(&world, "adagent/fix", "fix.txt");
    let body = serde_json::to_vec(&PullRequestInput {
        branch: "adagent/fix".into(),
        title: "Fix".into(),
        body: None,
        ticket: None,
        draft: false,
    })
    .expect("json");
    assert_eq!(
        Client::new(&world.socket)
            .request("POST", mint_api::route::PULLS, &body)
            .expect("pulls")
            .status,
        201
    );
    let before = fakehub_state(&world);
    let seen_before = world.hub.requests().len();

    let cases = hostile_cases();
    let proxy_to = To::Proxy(&authority);
    for to in [To::Socket(&world.socket), proxy_to] {
        for (line, body) in &cases {
            let head = format!("{line}Host: api.github.com\nAuthorization: token {PLACEHOLDER}\nConnection: close\n\n");
            let (status, answer) = raw(to, &head, body);
            assert!(
                (400..500).contains(&status),
                "{line}: {status}\n{}",
                answer.chars().take(600).collect::<String>()
            );
            if status == 403 {
                assert!(answer.contains("\"message\":\"mint: "), "{line}: the reason: {answer}");
            }
            for token in world.hub.tokens() {
                assert!(!answer.contains(&token.token), "{line}: an answer carries the token");
            }
        }
    }
    assert_eq!(fakehub_state(&world), before, "nothing changed at fakehub");
    let reached: Vec<_> = world.hub.requests().into_iter().skip(seen_before).collect();
    assert!(reached.is_empty(), "refused requests reached fakehub: {reached:?}");
    // And the daemon keeps serving: a read goes through.
    let (status, answer) = raw(
        To::Socket(&world.socket),
        &format!("GET /repos/{OWNER}/{REPO}/pulls/1 HTTP/1.1\nHost: api.github.com\nConnection: close\n\n"),
        b"",
    );
    assert_eq!(status, 200, "{answer}");
    for token in world.hub.tokens() {
        assert!(!answer.contains(&token.token), "a proxied answer carries the token");
    }
    assert!(world.mintd_alive());
}

fn mint_feedback(world: &World, json: bool) -> (Option<i32>, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mint"));
    command.arg("feedback");
    if json {
        command.arg("--json");
    }
    let out = command
        .env_clear()
        .env("HOME", &world.home)
        .env("MINT_SOCKET", &world.socket)
        .current_dir(world.dir.path().join("work"))
        .stdin(Stdio::null())
        .output()
        .expect("mint runs");
    assert!(
        out.status.code().is_some_and(|c| c == 0 || c == 2),
        "mint feedback failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), String::from_utf8(out.stdout).expect("utf8"))
}

fn feedback_after_a_review_then_none_after_a_push(mode: Mode) {
    let world = world_with_a_pull_request(mode);
    let (code, text) = mint_feedback(&world, false);
    assert_eq!(code, Some(2), "nothing yet: {text}");
    assert!(text.contains("No feedback since the last push."), "{text}");

    world.hub.review(
        OWNER,
        REPO,
        1,
        "octocat",
        "REQUEST_CHANGES",
        "Two things.",
        &[
            LineComment {
                path: "fix.txt",
                line: 1,
                body: "Say why.",
            },
            LineComment {
                path: "README.md",
                line: 3,
                body: "Typo.",
            },
        ],
    );
    let (code, json) = mint_feedback(&world, true);
    assert_eq!(code, Some(0));
    let json: serde_json::Value = serde_json::from_str(&json).expect("json");
    assert_eq!(json["pull_request"]["number"], 1);
    assert_eq!(json["pull_request"]["state"], "open");
    assert_eq!(json["reviews"][0]["state"], "CHANGES_REQUESTED");
    let comments: Vec<(String, u64, String)> = json["review_comments"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|c| {
            (
                c["path"].as_str().unwrap_or_default().to_owned(),
                c["line"].as_u64().unwrap_or_default(),
                c["body"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        comments,
        [
            ("fix.txt".to_owned(), 1, "Say why.".to_owned()),
            ("README.md".to_owned(), 3, "Typo.".to_owned())
        ]
    );
    let (_, text) = mint_feedback(&world, false);
    assert!(
        text.contains("Review by octocat (changes requested): Two things."),
        "{text}"
    );
    assert!(
        text.contains("  fix.txt:1 (octocat): Say why.\n  README.md:3 (octocat): Typo."),
        "{text}"
    );

    // The agent fixes and pushes: the review was on the old head, so there is nothing left to address.
    push(&world, "adagent/fix", "second.txt");
    let (code, text) = mint_feedback(&world, false);
    assert_eq!(code, Some(2), "{text}");
    // A reply from the agent is not feedback; a reviewer's comment after the push is.
    gh_ok(&world, &["pr", "comment", "1", "--body", "Fixed in the second commit."]);
    assert_eq!(mint_feedback(&world, false).0, Some(2));
    world.hub.comment(OWNER, REPO, 1, "octocat", "Thanks, one more thing.");
    let (code, json) = mint_feedback(&world, true);
    assert_eq!(code, Some(0));
    let json: serde_json::Value = serde_json::from_str(&json).expect("json");
    assert_eq!(json["comments"][0]["body"], "Thanks, one more thing.");
    assert_eq!(json["review_comments"].as_array().map(Vec::len), Some(0));
}

#[test]
fn mint_feedback_lists_a_reviews_comments_with_path_and_line_and_nothing_after_a_new_push() {
    feedback_after_a_review_then_none_after_a_push(Mode::Mediated);
}

#[test]
fn mint_feedback_works_in_helper_mode_too() {
    feedback_after_a_review_then_none_after_a_push(Mode::Helper);
}

#[test]
fn pages_link_back_through_mintd_and_gh_follows_them() {
    let world = world_with_a_pull_request(Mode::Mediated);
    let comments: Vec<LineComment<'_>> = (1..=3)
        .map(|line| LineComment {
            path: "fix.txt",
            line,
            body: "Look.",
        })
        .collect();
    world.hub.review(OWNER, REPO, 1, "octocat", "COMMENT", "", &comments);
    let (status, answer) = raw(
        To::Socket(&world.socket),
        &format!(
            "GET /repos/{OWNER}/{REPO}/pulls/1/comments?per_page=1 HTTP/1.1\nHost: api.github.com\nConnection: close\n\n"
        ),
        b"",
    );
    assert_eq!(status, 200, "{answer}");
    let link = answer
        .lines()
        .find_map(|l| l.strip_prefix("link: ").or_else(|| l.strip_prefix("Link: ")))
        .expect("a Link header");
    assert!(
        link.starts_with(&format!(
            "</repos/{OWNER}/{REPO}/pulls/1/comments?per_page=1&page=2>; rel=\"next\""
        )),
        "GitHub's /repositories/{{id}} link comes back as a path on mintd: {link}"
    );
    assert!(!link.contains(&world.url()), "{link}");
    let all = gh_ok(
        &world,
        &[
            "api",
            "--paginate",
            &format!("repos/{OWNER}/{REPO}/pulls/1/comments?per_page=1"),
        ],
    );
    assert_eq!(all.matches("\"path\":\"fix.txt\"").count(), 3, "{all}");
}

#[test]
fn a_rate_limit_from_github_holds_the_api_and_retry_after_reaches_the_client() {
    let world = world_with_a_pull_request(Mode::Mediated);
    world.hub.fail_next_api_calls(
        1,
        &fakehub::InjectedFailure::status(403, "You have exceeded a secondary rate limit")
            .with_header("retry-after", "120"),
    );
    let get = format!("GET /repos/{OWNER}/{REPO}/pulls/1 HTTP/1.1\nHost: api.github.com\nConnection: close\n\n");
    let (status, answer) = raw(To::Socket(&world.socket), &get, b"");
    assert_eq!(status, 403, "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("retry-after: 120"),
        "GitHub's Retry-After reaches the client: {answer}"
    );
    let seen = world.hub.requests().len();
    for _ in 0..20 {
        let (status, answer) = raw(To::Socket(&world.socket), &get, b"");
        assert_eq!(status, 429, "{answer}");
        let retry: u64 = answer
            .lines()
            .find_map(|l| l.to_ascii_lowercase().strip_prefix("retry-after: ").map(str::to_owned))
            .and_then(|v| v.trim().parse().ok())
            .expect("Retry-After");
        assert!((100..=120).contains(&retry), "{retry}");
        assert!(answer.contains("rate-limited"), "{answer}");
    }
    let out = gh(&world, &["pr", "view", "1"]);
    assert!(!out.status.success());
    assert_eq!(
        world.hub.requests().len(),
        seen,
        "nothing was asked of GitHub while it said to wait"
    );
}
