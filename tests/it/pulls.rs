//! `POST /v1/pulls`: mintd opens the pull request from an agent branch to the default branch, once.

use mint_api::{Client, PullRequestInput, PullRequestOutput};

use crate::support::{REPO, World};

fn open(world: &World, input: &PullRequestInput) -> (u16, Option<PullRequestOutput>, Option<String>) {
    let body = serde_json::to_vec(input).expect("json");
    let response = Client::new(&world.socket)
        .request("POST", mint_api::route::PULLS, &body)
        .expect("mintd answers");
    let output = serde_json::from_slice(&response.body).ok();
    (response.status, output, response.reason)
}

fn input(branch: &str) -> PullRequestInput {
    PullRequestInput {
        branch: branch.into(),
        title: "Fix the thing".into(),
        body: Some("What changed and why.".into()),
        ticket: Some("https://tickets.example/ABC-1".into()),
        draft: false,
    }
}

fn push_branch(world: &World, branch: &str, change: bool) {
    let dir = world.dir.path().join(format!("clone-{}", branch.replace('/', "-")));
    world.git_ok(
        None,
        &["clone", "-q", &world.repo_url(REPO), dir.to_str().expect("utf8")],
    );
    if change {
        std::fs::write(dir.join("fix.txt"), "fixed\n").expect("write");
        world.git_ok(Some(&dir), &["add", "-A"]);
        world.git_ok(Some(&dir), &["commit", "-q", "-m", "fix"]);
    }
    world.git_ok(
        Some(&dir),
        &["push", "-q", "origin", &format!("HEAD:refs/heads/{branch}")],
    );
}

#[test]
fn opens_the_pull_request_once_to_the_default_branch_with_the_ticket_linked() {
    let world = World::start();
    push_branch(&world, "adagent/fix", true);
    let (status, first, _) = open(&world, &input("adagent/fix"));
    assert_eq!(status, 201);
    let first = first.expect("output");
    assert!(first.created);
    assert_eq!((first.head.as_str(), first.base.as_str()), ("adagent/fix", "main"));
    assert!(first.url.ends_with(&format!("/pull/{}", first.number)), "{}", first.url);

    // Idempotent: the same call returns the open pull request instead of failing.
    let (status, again, _) = open(&world, &input("adagent/fix"));
    assert_eq!(status, 200);
    let again = again.expect("output");
    assert_eq!((again.number, again.created), (first.number, false));

    let pulls = world.hub.pulls();
    assert_eq!(pulls.len(), 1);
    assert_eq!(pulls[0].base, "main");
    assert_eq!(
        pulls[0].body,
        "What changed and why.\n\nTicket: https://tickets.example/ABC-1"
    );
}

#[test]
fn a_branch_outside_the_prefix_is_refused_before_github_hears_of_it() {
    let world = World::start();
    for branch in ["main", "feature/x", "adagent/../main"] {
        let (status, _, reason) = open(&world, &input(branch));
        assert_eq!(status, 400, "{branch}");
        assert!(reason.is_some_and(|r| r.contains(branch)), "{branch}");
    }
    assert!(
        world.hub.requests().iter().all(|r| !r.path.ends_with("/pulls")),
        "nothing reached GitHub"
    );
    assert!(world.hub.mints().is_empty());
}

#[test]
fn a_branch_with_no_new_commits_gets_githubs_reason() {
    let world = World::start();
    push_branch(&world, "adagent/empty", false);
    let (status, _, reason) = open(&world, &input("adagent/empty"));
    assert_eq!(status, 422);
    assert!(
        reason
            .as_deref()
            .is_some_and(|r| r.contains("No commits between main and adagent/empty")),
        "{reason:?}"
    );
}

#[test]
fn a_revoked_token_is_replaced_once_and_the_pull_request_still_opens() {
    // Regression: GitHub's 401 on the calls behind POST /v1/pulls failed the request although a fresh
    // token would have worked.
    let world = World::start();
    push_branch(&world, "adagent/revoked", true);
    world.hub.revoke_all_tokens();
    let (status, output, reason) = open(&world, &input("adagent/revoked"));
    assert_eq!(status, 201, "{reason:?}\n{}", world.mintd_log());
    assert!(output.expect("output").created);
    let tokens = world.hub.tokens();
    assert_eq!(tokens.len(), 2, "one fresh token for the retry");
    assert!(!tokens[1].revoked);
}
