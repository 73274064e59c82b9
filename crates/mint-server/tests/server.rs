//! mint-server through its HTTP API, against fakehub, on SQLite and on a real PostgreSQL: the same suite
//! for both.

mod support;

use serde_json::{Value, json};
use support::{ADMIN_TOKEN, Db, World, app_key, postgres::Postgres};

/// Run each scenario once on SQLite and once on PostgreSQL.
macro_rules! on_both_databases {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$scenario(super::World::start(super::Db::Sqlite).await).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let pg = tokio::task::spawn_blocking(super::Postgres::start).await.expect("postgres");
                super::$scenario(super::World::start(super::Db::Postgres(pg)).await).await;
            }
        }
    )*};
}

on_both_databases!(
    connect_mint_change_repository_teardown,
    connection_state_follows_github_and_disconnect,
    a_product_never_gets_another_products_repository,
    connections_github_cannot_serve_are_refused,
    hostile_input_gets_a_clear_4xx_and_changes_nothing,
    connections_and_sandboxes_survive_a_restart,
    the_audit_trail_says_who_did_what_and_which_tokens_were_live,
    every_file_in_migrations_is_applied,
);

/// The schema comes from the migrations directory itself: a file added there is applied at start, with
/// no list to keep in step.
async fn every_file_in_migrations_is_applied(w: World) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    let mut files: Vec<(i64, String)> = std::fs::read_dir(&dir)
        .expect("migrations/")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter_map(|name| {
            let stem = name.strip_suffix(".sql")?;
            let (version, description) = stem.split_once('_')?;
            Some((version.parse().ok()?, description.replace('_', " ")))
        })
        .collect();
    files.sort();
    assert!(files.len() >= 6, "{files:?}");
    let store = mint_server::store::Store::open(&w.database).await.expect("store");
    assert_eq!(store.applied_migrations().await.expect("read"), files);
    store.ready().await.expect("ready with every migration applied");
    store.close().await;
}

fn issued(w: &World, token: &str) -> fakehub::IssuedToken {
    w.hub
        .tokens()
        .into_iter()
        .find(|t| t.token == token)
        .unwrap_or_else(|| panic!("fakehub never issued the token it was given ({} chars)", token.len()))
}

async fn connect_mint_change_repository_teardown(mut w: World) {
    let product = w.connected_product(42, "octo-org/hello-world").await;
    let connection = w
        .admin("GET", &format!("/api/v1/products/{product}/connection"), None)
        .await;
    assert_eq!(connection.status, 200);
    assert_eq!(connection.body["status"], "active");
    assert_eq!(connection.body["repository"], "octo-org/hello-world");
    assert_eq!(connection.body["installation_id"], 42);
    assert_eq!(
        connection.body["account"],
        json!({"login": "octo-org", "type": "Organization"})
    );
    assert!(connection.body["repository_id"].as_u64().is_some_and(|id| id > 0));
    // The token used to check the connection did not outlive the check.
    assert!(
        w.hub.tokens().iter().all(|t| t.revoked),
        "the verification token was revoked"
    );

    let (sandbox, credential) = w.sandbox(&product).await;
    let first = w.token(&credential).await;
    assert_eq!(first.status, 200, "{:?}", first.body);
    assert_eq!(first.headers["cache-control"], "no-store");
    assert_eq!(first.body["repository"], "octo-org/hello-world");
    assert_eq!(first.body["installation_id"], 42);
    assert_eq!(
        first.body["permissions"],
        json!({"contents": "write", "metadata": "read", "pull_requests": "write"})
    );
    let first_token = first.body["token"].as_str().expect("token").to_owned();
    let minted = issued(&w, &first_token);
    assert_eq!(minted.repositories, ["hello-world"], "scoped to the one repository");
    assert!(
        !minted.permissions.contains_key("administration"),
        "never wider than asked"
    );
    let asked = w.hub.mints().last().cloned().expect("a mint");
    assert_eq!(asked.repositories, None, "minted by repository id, not by name");

    // Change repository: the very next mint is for the new one.
    let changed = w
        .admin(
            "PUT",
            &format!("/api/v1/products/{product}/connection"),
            Some(json!({"installation_id": 42, "repository": "octo-org/other-repo"})),
        )
        .await;
    assert_eq!(changed.status, 200, "{:?}", changed.body);
    let second = w.token(&credential).await;
    assert_eq!(second.status, 200, "{:?}", second.body);
    assert_eq!(second.body["repository"], "octo-org/other-repo");
    let second_token = second.body["token"].as_str().expect("token").to_owned();
    assert_eq!(issued(&w, &second_token).repositories, ["other-repo"]);
    assert!(
        issued(&w, &first_token).revoked,
        "Change repository revoked the old repository's token at once"
    );

    // Teardown revokes both, the old repository's token included, and the credential dies at once.
    let torn = w.admin("DELETE", &format!("/api/v1/sandboxes/{sandbox}"), None).await;
    assert_eq!(torn.status, 204, "{:?}", torn.body);
    assert!(
        issued(&w, &first_token).revoked,
        "the old repository's token was revoked at teardown"
    );
    assert!(issued(&w, &second_token).revoked);
    let after = w.token(&credential).await;
    assert_eq!(after.status, 401);
    assert_eq!(after.headers["www-authenticate"], "Bearer");
    let again = w.admin("DELETE", &format!("/api/v1/sandboxes/{sandbox}"), None).await;
    assert_eq!(again.status, 204, "tearing down twice is harmless");

    let record = w.admin("GET", &format!("/api/v1/sandboxes/{sandbox}"), None).await;
    assert_eq!(
        record.body["tokens"]
            .as_array()
            .expect("tokens")
            .iter()
            .map(|t| t["state"].as_str().unwrap_or_default())
            .collect::<Vec<_>>(),
        ["revoked", "revoked"],
        "{:?}",
        record.body
    );

    // Nothing secret is at rest: not the tokens, not the credential, not the admin token, not the key.
    w.stop_server().await;
    let dump = w.dump();
    assert!(dump.contains("octo-org/other-repo"), "the dump is the real database");
    for token in w.hub.tokens() {
        assert!(!dump.contains(&token.token), "a GitHub token is in the database");
    }
    assert!(!dump.contains(&credential), "the sandbox credential is in the database");
    assert!(!dump.contains(ADMIN_TOKEN), "the admin token is in the database");
    let key_body: String = app_key()
        .private_key_pem()
        .lines()
        .nth(1)
        .expect("a PEM line")
        .to_owned();
    assert!(!dump.contains(&key_body), "the App key is in the database");
}

/// The product's audit trail, oldest first, as (actor kind, action) pairs, read through the API a page of
/// `limit` at a time.
async fn audit_trail(w: &World, product: &str, limit: usize) -> Vec<Value> {
    let mut events = Vec::new();
    let mut path = format!("/api/v1/products/{product}/audit?limit={limit}");
    loop {
        let page = w.admin("GET", &path, None).await;
        assert_eq!(page.status, 200, "{:?}", page.body);
        let got = page.body["events"].as_array().expect("events").clone();
        assert!(got.len() <= limit, "a page holds at most limit events");
        events.extend(got);
        match page.body["next"].as_str() {
            Some(next) => path = format!("/api/v1/products/{product}/audit?limit={limit}&before={next}"),
            None => break,
        }
    }
    events.reverse();
    events
}

fn actions(events: &[Value]) -> Vec<(String, String)> {
    events
        .iter()
        .map(|e| {
            (
                e["actor"]["kind"].as_str().unwrap_or_default().to_owned(),
                e["action"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// Sign in as `login` and press Disconnect on the product's Integrations page.
async fn disconnect_in_browser(w: &World, product: &str, login: &str) {
    let (_, cookie) = w
        .sign_in(login, None, &format!("/products/{product}/integrations"))
        .await;
    let cookie = format!("{}={cookie}", mint_server::web::SESSION_COOKIE);
    let (status, _, page) = w
        .send(
            "GET",
            &format!("{}/products/{product}/integrations", w.url),
            &[("cookie", &cookie)],
            None,
        )
        .await;
    assert_eq!(status, 200, "{page}");
    let csrf = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the page's CSRF token")
        .to_owned();
    let (status, _, body) = w
        .send(
            "POST",
            &format!("{}/products/{product}/github/disconnect", w.url),
            &[
                ("cookie", &cookie),
                ("content-type", "application/x-www-form-urlencoded"),
            ],
            Some(format!("csrf={csrf}").into_bytes()),
        )
        .await;
    assert_eq!(status, 303, "{body}");
}

/// The particulars of the scenario's events: who, which repository, what each token was and how it ended.
fn assert_events_tell_the_story(events: &[Value], sandbox: &str, first_token: &str, first_expires: &Value) {
    let by_action = |action: &str| -> Vec<&Value> { events.iter().filter(|e| e["action"] == action).collect() };
    let disconnected = by_action("disconnected")[0];
    assert_eq!(disconnected["actor"]["kind"], "user");
    assert_eq!(disconnected["actor"]["login"], "octocat");
    assert!(
        disconnected["actor"]["id"].as_u64().is_some_and(|id| id > 0),
        "the person's GitHub user id: {disconnected}"
    );
    assert_eq!(disconnected["repository"], "octo-org/hello-world");
    assert_eq!(disconnected["detail"]["revoked"], 1);
    assert_eq!(
        disconnected["summary"],
        "octocat disconnected GitHub; 1 live token was revoked."
    );
    let minted = by_action("token_minted");
    assert_eq!(minted[0]["sandbox_id"], sandbox);
    assert_eq!(minted[0]["repository"], "octo-org/hello-world");
    assert_eq!(minted[1]["repository"], "octo-org/other-repo");
    assert_eq!(
        minted[0]["detail"]["permissions"],
        json!({"contents": "write", "metadata": "read", "pull_requests": "write"})
    );
    assert_eq!(minted[0]["detail"]["expires_at"], *first_expires);
    // "Which tokens were live when it was disconnected": the first, minted before, revoked after.
    let first_hash = &mint_server::secrets::sha256_hex(first_token.as_bytes())[..12];
    assert_eq!(minted[0]["detail"]["token_sha256"], first_hash);
    let first_end = by_action("token_revoked")
        .into_iter()
        .find(|e| e["detail"]["token_sha256"] == first_hash)
        .expect("the first token's revocation");
    assert_eq!(first_end["repository"], "octo-org/hello-world");
    assert!(
        first_end["detail"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("disconnected by octocat")),
        "{first_end}"
    );
    assert_eq!(by_action("sandbox_torn_down")[0]["detail"]["revoked"], 1);
}

async fn the_audit_trail_says_who_did_what_and_which_tokens_were_live(w: World) {
    let product = w.connected_product(42, "octo-org/hello-world").await;
    let (sandbox, credential) = w.sandbox(&product).await;
    let first = w.token(&credential).await;
    assert_eq!(first.status, 200, "{:?}", first.body);
    let first_token = first.body["token"].as_str().expect("token").to_owned();

    // The Sandboxes list: the live token's repository and expiry, never the token.
    let listed = w
        .admin("GET", &format!("/api/v1/products/{product}/sandboxes"), None)
        .await;
    assert_eq!(listed.status, 200, "{:?}", listed.body);
    assert_eq!(listed.body["total"], 1);
    assert_eq!(listed.body["sandboxes"][0]["sandbox_id"], sandbox.as_str());
    assert_eq!(
        listed.body["sandboxes"][0]["live_tokens"][0]["repository"],
        "octo-org/hello-world"
    );
    assert_eq!(
        listed.body["sandboxes"][0]["live_tokens"][0]["expires_at"],
        first.body["expires_at"]
    );

    // A person disconnects on the Integrations page, then the platform reconnects another repository.
    disconnect_in_browser(&w, &product, "octocat").await;
    let listed = w
        .admin("GET", &format!("/api/v1/products/{product}/sandboxes"), None)
        .await;
    assert_eq!(
        listed.body["sandboxes"][0]["live_tokens"],
        json!([]),
        "Disconnect left no live token"
    );
    let reconnected = w
        .admin(
            "PUT",
            &format!("/api/v1/products/{product}/connection"),
            Some(json!({"installation_id": 42, "repository": "octo-org/other-repo"})),
        )
        .await;
    assert_eq!(reconnected.status, 200, "{:?}", reconnected.body);
    let second = w.token(&credential).await;
    assert_eq!(second.status, 200, "{:?}", second.body);
    let torn = w.admin("DELETE", &format!("/api/v1/sandboxes/{sandbox}"), None).await;
    assert_eq!(torn.status, 204);
    assert_eq!(
        w.admin("DELETE", &format!("/api/v1/sandboxes/{sandbox}"), None)
            .await
            .status,
        204
    );

    // Each token's end is recorded once GitHub agrees; wait for the revoker to report both.
    let mut events = Vec::new();
    for _ in 0..100 {
        events = audit_trail(&w, &product, 2).await;
        if actions(&events).iter().filter(|(_, a)| a == "token_revoked").count() == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let mut seen = actions(&events);
    // The two revocations land after the events that caused them, in an order the revoker chooses.
    let revoked: Vec<_> = seen.iter().filter(|(_, a)| a == "token_revoked").cloned().collect();
    seen.retain(|(_, a)| a != "token_revoked");
    let pairs = |list: &[(&str, &str)]| -> Vec<(String, String)> {
        list.iter().map(|(k, a)| ((*k).to_owned(), (*a).to_owned())).collect()
    };
    assert_eq!(
        seen,
        pairs(&[
            ("admin", "connected"),
            ("admin", "sandbox_created"),
            ("sandbox", "token_minted"),
            ("user", "disconnected"),
            ("admin", "reconnected"),
            ("sandbox", "token_minted"),
            ("admin", "sandbox_torn_down"),
        ]),
        "{events:#?}"
    );
    assert_eq!(
        revoked,
        pairs(&[("server", "token_revoked"), ("server", "token_revoked")])
    );

    assert_events_tell_the_story(&events, &sandbox, &first_token, &first.body["expires_at"]);

    // Nothing secret in the trail.
    let whole = w
        .admin("GET", &format!("/api/v1/products/{product}/audit?limit=500"), None)
        .await;
    let text = whole.body.to_string();
    for token in w.hub.tokens() {
        assert!(!text.contains(&token.token), "a token is in the audit trail");
    }
    assert!(
        !text.contains(&credential),
        "the sandbox credential is in the audit trail"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_audit_pages_are_refused_with_the_way_out() {
    let w = World::start(Db::Sqlite).await;
    let product = w.connected_product(42, "octo-org/hello-world").await;
    for bad in ["limit=0", "limit=501", "limit=x", "before=nonsense", "colour=red"] {
        let answer = w
            .admin("GET", &format!("/api/v1/products/{product}/audit?{bad}"), None)
            .await;
        assert_eq!(answer.status, 400, "{bad}: {:?}", answer.body);
        assert!(
            answer.body["message"]
                .as_str()
                .is_some_and(|m| m.contains("limit") || m.contains("before")),
            "{bad}: {:?}",
            answer.body
        );
    }
    let missing = w.admin("GET", "/api/v1/products/prd_nope/audit", None).await;
    assert_eq!(missing.status, 404);
    let unauthorised = w.get(&format!("/api/v1/products/{product}/audit"), None).await;
    assert_eq!(unauthorised.status, 401);
}

async fn connection_state_follows_github_and_disconnect(w: World) {
    let product = w.connected_product(42, "octo-org/hello-world").await;
    let (_, credential) = w.sandbox(&product).await;
    assert_eq!(w.token(&credential).await.status, 200);

    // Disconnect: our row only. The next mint says why and what to do.
    let disconnected = w
        .admin("DELETE", &format!("/api/v1/products/{product}/connection"), None)
        .await;
    assert_eq!(disconnected.status, 200, "{:?}", disconnected.body);
    assert_eq!(disconnected.body["status"], "not_connected");
    let refused = w.token(&credential).await;
    assert_eq!(refused.status, 409, "{:?}", refused.body);
    assert_eq!(refused.body["status"], "not_connected");
    assert!(
        refused.body["message"]
            .as_str()
            .is_some_and(|m| m.contains("connect it again")),
        "{:?}",
        refused.body
    );
    assert!(
        w.hub
            .requests()
            .iter()
            .all(|r| !r.path.contains("/app/installations/42/access_tokens") || r.method != "DELETE"),
        "Disconnect never touches the installation"
    );

    // Reconnect, then GitHub uninstalls the App: the mint's 404 becomes the connection's state.
    w.admin(
        "PUT",
        &format!("/api/v1/products/{product}/connection"),
        Some(json!({"installation_id": 42, "repository": "octo-org/hello-world"})),
    )
    .await;
    let live = w.token(&credential).await;
    assert_eq!(live.status, 200);
    let live = live.body["token"].as_str().expect("token").to_owned();

    // The repository was removed from the installation (GitHub's 422 on the mint). The sandbox reports its
    // token failing, as mintd does after git's 401, so the broker mints rather than hand it out again.
    w.hub.fail_next_mints(
        1,
        &fakehub::InjectedFailure::status(
            422,
            "There is at least one repository that does not exist or is not accessible to the parent installation.",
        ),
    );
    let removed = w.token_replacing(&credential, &live).await;
    assert_eq!(removed.status, 409, "{:?}", removed.body);
    assert_eq!(removed.body["status"], "repo_removed");
    assert!(
        removed.body["message"]
            .as_str()
            .is_some_and(|m| m.contains("octo-org/hello-world"))
    );
    let connection = w
        .admin("GET", &format!("/api/v1/products/{product}/connection"), None)
        .await;
    assert_eq!(connection.body["status"], "repo_removed");
    w.admin(
        "PUT",
        &format!("/api/v1/products/{product}/connection"),
        Some(json!({"installation_id": 42, "repository": "octo-org/hello-world"})),
    )
    .await;
    let again = w.token(&credential).await;
    assert_eq!(again.status, 200, "reconnecting makes it active again");
    let again = again.body["token"].as_str().expect("token").to_owned();

    w.hub.uninstall(42);
    let gone = w.token_replacing(&credential, &again).await;
    assert_eq!(gone.status, 409);
    assert_eq!(
        gone.body,
        json!({"status": "installation_gone", "message": "installation 42 was uninstalled: reconnect GitHub"})
    );
    let connection = w
        .admin("GET", &format!("/api/v1/products/{product}/connection"), None)
        .await;
    assert_eq!(connection.body["status"], "installation_gone");
    let mints_before = w.hub.mints().len();
    assert_eq!(w.token(&credential).await.status, 409);
    assert_eq!(
        w.hub.mints().len(),
        mints_before,
        "a gone installation is not asked again"
    );

    // A suspended installation, likewise.
    let other = w.connected_product(43, "acme/widgets").await;
    let (_, other_credential) = w.sandbox(&other).await;
    w.hub.suspend(43);
    let suspended = w.token(&other_credential).await;
    assert_eq!(suspended.status, 409, "{:?}", suspended.body);
    assert_eq!(suspended.body["status"], "suspended");
}

async fn a_product_never_gets_another_products_repository(w: World) {
    let a = w.connected_product(42, "octo-org/hello-world").await;
    let b = w.connected_product(43, "acme/widgets").await;
    let (_, a_credential) = w.sandbox(&a).await;
    let (_, b_credential) = w.sandbox(&b).await;
    for _ in 0..3 {
        let a_token = w.token(&a_credential).await;
        assert_eq!(a_token.body["repository"], "octo-org/hello-world");
        assert_eq!(
            issued(&w, a_token.body["token"].as_str().expect("token")).repositories,
            ["hello-world"]
        );
        let b_token = w.token(&b_credential).await;
        assert_eq!(b_token.body["repository"], "acme/widgets");
        assert_eq!(
            issued(&w, b_token.body["token"].as_str().expect("token")).installation_id,
            43
        );
    }
    // The sandbox API has no way to name another product: the credential is the only input.
    let smuggled = w
        .request(
            "POST",
            "/api/v1/token",
            Some(&a_credential),
            Some(br#"{"product_id": "x"}"#.to_vec()),
        )
        .await;
    assert_eq!(smuggled.status, 400, "{:?}", smuggled.body);
    // And a sandbox credential is not an admin token.
    let escalated = w
        .request(
            "POST",
            &format!("/api/v1/products/{b}/sandboxes"),
            Some(&a_credential),
            None,
        )
        .await;
    assert_eq!(escalated.status, 401);
}

async fn connections_github_cannot_serve_are_refused(w: World) {
    let created = w.admin("POST", "/api/v1/products", Some(json!({"name": "p"}))).await;
    let product = created.body["id"].as_str().expect("id").to_owned();
    let path = format!("/api/v1/products/{product}/connection");
    let cases = [
        (
            json!({"installation_id": 999, "repository": "octo-org/hello-world"}),
            "installation 999 not found",
        ),
        (
            json!({"installation_id": 42, "repository": "octo-org/not-selected"}),
            "not selected for installation 42",
        ),
        (
            json!({"installation_id": 43, "repository": "octo-org/hello-world"}),
            "does not belong to acme",
        ),
    ];
    for (body, expected) in cases {
        let refused = w.admin("PUT", &path, Some(body.clone())).await;
        assert_eq!(refused.status, 422, "{body}: {:?}", refused.body);
        assert_eq!(refused.body["status"], "connection_refused");
        assert!(
            refused.body["message"].as_str().is_some_and(|m| m.contains(expected)),
            "{body}: {:?}",
            refused.body
        );
    }
    w.hub.suspend(43);
    let suspended = w
        .admin(
            "PUT",
            &path,
            Some(json!({"installation_id": 43, "repository": "acme/widgets"})),
        )
        .await;
    assert_eq!(suspended.status, 422);
    assert!(
        suspended.body["message"]
            .as_str()
            .is_some_and(|m| m.contains("suspended"))
    );
    let unchanged = w.admin("GET", &path, None).await;
    assert_eq!(
        unchanged.body["status"], "not_connected",
        "a refused connection stores nothing"
    );
    let missing = w
        .admin(
            "PUT",
            "/api/v1/products/prd_nope/connection",
            Some(json!({"installation_id": 42, "repository": "octo-org/hello-world"})),
        )
        .await;
    assert_eq!(missing.status, 404);
}

async fn hostile_input_gets_a_clear_4xx_and_changes_nothing(w: World) {
    let big = vec![b' '; 64 * 1024 + 1];
    let too_large = w
        .request("POST", "/api/v1/products", Some(ADMIN_TOKEN), Some(big))
        .await;
    assert_eq!(too_large.status, 413, "{:?}", too_large.body);
    assert_eq!(too_large.body["status"], "body_too_large");

    let bad_json = w
        .request(
            "POST",
            "/api/v1/products",
            Some(ADMIN_TOKEN),
            Some(b"{\"name\":".to_vec()),
        )
        .await;
    assert_eq!(bad_json.status, 400, "{:?}", bad_json.body);
    assert!(
        bad_json.body["message"]
            .as_str()
            .is_some_and(|m| m.contains("not the JSON"))
    );

    let unknown = w
        .admin("POST", "/api/v1/products", Some(json!({"name": "x", "admin": true})))
        .await;
    assert_eq!(unknown.status, 400);
    assert!(
        unknown.body["message"]
            .as_str()
            .is_some_and(|m| m.contains("unknown field")),
        "{:?}",
        unknown.body
    );

    let bad_login = w
        .admin(
            "POST",
            "/api/v1/products",
            Some(json!({"name": "x", "members": ["a b"]})),
        )
        .await;
    assert_eq!(bad_login.status, 400);

    let no_admin = w
        .request("POST", "/api/v1/products", Some("wrong"), Some(b"{}".to_vec()))
        .await;
    assert_eq!(no_admin.status, 401);
    assert_eq!(no_admin.body["status"], "unauthorized");

    // SQL metacharacters are data.
    let sneaky = "x'); DROP TABLE products; --\"";
    let product = w.admin("POST", "/api/v1/products", Some(json!({"name": sneaky}))).await;
    assert_eq!(product.status, 201);
    let id = product.body["id"].as_str().expect("id");
    let injected_id = w
        .admin("GET", "/api/v1/products/x'%20OR%20'1'='1/connection", None)
        .await;
    assert_eq!(injected_id.status, 404);
    assert_eq!(
        w.admin("GET", &format!("/api/v1/products/{id}/connection"), None)
            .await
            .status,
        200
    );

    let bad_repo = w
        .admin(
            "PUT",
            &format!("/api/v1/products/{id}/connection"),
            Some(json!({"installation_id": 42, "repository": "../../etc"})),
        )
        .await;
    assert_eq!(bad_repo.status, 400);

    // Thousands of bad credentials at once, malformed and well-formed: each a 401, none a crash.
    let mut tasks = tokio::task::JoinSet::new();
    let world = std::sync::Arc::new(w);
    // At most 500 in flight: the test's own file descriptors are the limit, not the server's.
    let in_flight = std::sync::Arc::new(tokio::sync::Semaphore::new(500));
    for i in 0..10_000 {
        let w = world.clone();
        let in_flight = in_flight.clone();
        tasks.spawn(async move {
            let _slot = in_flight.acquire().await.expect("semaphore");
            let credential = if i % 2 == 0 {
                format!("mint_sbx_{i:0>43}")
            } else {
                format!("garbage-{i}")
            };
            w.token(&credential).await.status
        });
    }
    let mut statuses = std::collections::BTreeMap::new();
    while let Some(status) = tasks.join_next().await {
        *statuses.entry(status.expect("task")).or_insert(0) += 1;
    }
    assert_eq!(statuses, std::collections::BTreeMap::from([(401, 10_000)]));
    assert_eq!(world.get("/healthz", None).await.status, 200, "still serving");
    assert!(world.hub.mints().is_empty(), "no bad input reached GitHub");
}

async fn connections_and_sandboxes_survive_a_restart(mut w: World) {
    let product = w.connected_product(42, "octo-org/hello-world").await;
    let (sandbox, credential) = w.sandbox(&product).await;
    let before = w.token(&credential).await;
    assert_eq!(before.status, 200);
    w.stop_server().await;
    w.start_server().await;
    let connection = w
        .admin("GET", &format!("/api/v1/products/{product}/connection"), None)
        .await;
    assert_eq!(connection.body["status"], "active");
    let after = w.token(&credential).await;
    assert_eq!(after.status, 200, "{:?}", after.body);
    assert_eq!(after.body["repository"], "octo-org/hello-world");
    // The token minted before the restart is no longer held in memory, but teardown still stops the
    // credential and revokes what this process holds.
    let after_token = after.body["token"].as_str().expect("token").to_owned();
    assert_eq!(
        w.admin("DELETE", &format!("/api/v1/sandboxes/{sandbox}"), None)
            .await
            .status,
        204
    );
    assert!(issued(&w, &after_token).revoked);
    assert_eq!(w.token(&credential).await.status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_and_unknown_routes() {
    let w = World::start(Db::Sqlite).await;
    assert_eq!(w.get("/healthz", None).await.status, 200);
    assert_eq!(w.get("/readyz", None).await.status, 200);
    let missing = w.get("/nope", None).await;
    assert_eq!(
        (missing.status, missing.body["status"].clone()),
        (404, Value::from("not_found"))
    );
    let wrong_method = w.get("/api/v1/token", None).await;
    assert_eq!(wrong_method.status, 405);
}

/// A payload shaped like GitHub's `installation` events for the installation.
fn installation_event(action: &str, installation: u64) -> Vec<u8> {
    json!({
        "action": action,
        "installation": {"id": installation, "account": {"login": "octo-org", "type": "Organization"}},
        "sender": {"login": "octocat"}
    })
    .to_string()
    .into_bytes()
}

mod webhooks {
    use super::*;
    use support::{NEXT_WEBHOOK_SECRET, WEBHOOK_SECRET};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn only_signed_deliveries_are_processed_once_each() {
        let w = World::start(Db::Sqlite).await;
        let product = w.connected_product(42, "octo-org/hello-world").await;
        let body = installation_event("suspend", 42);
        for (secret, why) in [(None, "missing"), (Some("a-wrong-secret"), "wrong")] {
            let refused = w.deliver("installation", &format!("d-{why}"), &body, secret).await;
            assert_eq!(refused.status, 401, "{why} signature: {:?}", refused.body);
            assert_eq!(refused.body["status"], "bad_signature");
        }
        // A valid signature over another body is no signature.
        let refused = w.deliver("installation", "d-tampered", b"{}", None).await;
        assert_eq!(refused.status, 401);

        w.hub.suspend(42);
        let accepted = w.deliver("installation", "d-1", &body, Some(WEBHOOK_SECRET)).await;
        assert_eq!(accepted.status, 202, "{:?}", accepted.body);
        w.wait_for_status(&product, "suspended").await;

        // A redelivery (same id) is acknowledged and not processed again, even signed with the next secret.
        let replayed = w.deliver("installation", "d-1", &body, Some(NEXT_WEBHOOK_SECRET)).await;
        assert_eq!(
            (replayed.status, replayed.body["status"].clone()),
            (200, json!("duplicate"))
        );

        let too_big = vec![b' '; 30 * 1024 * 1024];
        let refused = w.deliver("installation", "d-big", &too_big, Some(WEBHOOK_SECRET)).await;
        assert!(
            refused.status == 413 || refused.status == 0,
            "a 30 MB body is refused (or the connection cut) before it is read whole: {}",
            refused.status
        );
        assert_eq!(w.get("/healthz", None).await.status, 200, "still serving");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn state_is_re_read_from_github_not_taken_from_the_event() {
        let w = World::start(Db::Sqlite).await;
        let product = w.connected_product(42, "octo-org/hello-world").await;
        // An event that claims a suspension GitHub does not report changes nothing.
        let lie = w
            .deliver(
                "installation",
                "d-lie",
                &installation_event("suspend", 42),
                Some(WEBHOOK_SECRET),
            )
            .await;
        assert_eq!(lie.status, 202);
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let connection = w
            .admin("GET", &format!("/api/v1/products/{product}/connection"), None)
            .await;
        assert_eq!(
            connection.body["status"], "active",
            "GitHub says the installation is fine"
        );

        w.hub.uninstall(42);
        let deleted = w
            .deliver(
                "installation",
                "d-del",
                &installation_event("deleted", 42),
                Some(WEBHOOK_SECRET),
            )
            .await;
        assert_eq!(deleted.status, 202);
        let gone = w.wait_for_status(&product, "installation_gone").await;
        assert_eq!(gone["reason"], "installation 42 was uninstalled: reconnect GitHub");
    }

    /// fakehub's own signed deliveries, as GitHub sends them, drive every state of the card; each time the
    /// next mint follows.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn github_webhooks_drive_the_connection_and_the_next_mint_follows() {
        let w = World::start(Db::Sqlite).await;
        w.hub
            .set_webhook(Some(&format!("{}/github/webhook", w.url)), Some(WEBHOOK_SECRET));
        let installation = w
            .hub
            .install("initech", fakehub::RepositorySelection::Selected, &["tps", "reports"])
            .expect("installed");
        let product = w.connected_product(installation, "initech/tps").await;
        let (_, credential) = w.sandbox(&product).await;
        let selected = fakehub::RepositorySelection::Selected;

        w.hub.suspend(installation);
        w.wait_for_status(&product, "suspended").await;
        assert_eq!(w.token(&credential).await.body["status"], "suspended");
        w.hub.unsuspend(installation);
        w.wait_for_status(&product, "active").await;
        assert_eq!(w.token(&credential).await.status, 200);

        w.hub
            .set_selection(installation, selected, &["reports"])
            .expect("selection");
        w.wait_for_status(&product, "repo_removed").await;
        assert_eq!(w.token(&credential).await.body["status"], "repo_removed");
        w.hub
            .set_selection(installation, selected, &["tps", "reports"])
            .expect("selection");
        w.wait_for_status(&product, "active").await;
        assert_eq!(w.token(&credential).await.status, 200);

        w.hub.uninstall(installation);
        let gone = w.wait_for_status(&product, "installation_gone").await;
        assert_eq!(
            gone["reason"],
            format!("installation {installation} was uninstalled: reconnect GitHub")
        );
        let refused = w.token(&credential).await;
        assert_eq!(
            (refused.status, refused.body["status"].clone()),
            (409, json!("installation_gone"))
        );
        let delivered = w.hub.deliveries();
        assert!(
            delivered.iter().all(|d| d.status_code == Some(202)),
            "every delivery was accepted: {delivered:?}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_reconcile_sweep_catches_what_no_webhook_said() {
        let w = World::start(Db::Sqlite).await;
        let product = w.connected_product(42, "octo-org/hello-world").await;
        let other = w.connected_product(43, "acme/widgets").await;
        w.hub.uninstall(42);
        w.hub.suspend(43);
        let swept = w.admin("POST", "/api/v1/reconcile", None).await;
        assert_eq!(swept.status, 200, "{:?}", swept.body);
        assert_eq!(swept.body["connections"], 2);
        w.wait_for_status(&product, "installation_gone").await;
        w.wait_for_status(&other, "suspended").await;
    }
}

/// Replicas on one database: the sweep's lock, the shared mint bound and GitHub's pauses, a webhook at two
/// replicas, and the database going away and coming back.
mod fleet {
    use std::time::{Duration, Instant};

    use mint_server::fleet::SweepLock;
    use mint_server::store::Store;

    use super::*;

    pub(super) async fn postgres_world(extra: &[&str]) -> World {
        let pg = tokio::task::spawn_blocking(Postgres::start).await.expect("postgres");
        World::start_with(Db::Postgres(pg), extra.iter().map(|s| (*s).to_owned()).collect()).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_replica_holds_the_sweep_lock_and_another_takes_it_when_that_session_dies() {
        let w = postgres_world(&[]).await;
        let (a, b) = (
            Store::open(&w.database).await.expect("store a"),
            Store::open(&w.database).await.expect("store b"),
        );
        let (mut lock_a, mut lock_b) = (SweepLock::default(), SweepLock::default());
        assert!(lock_a.hold(&a).await, "the first replica takes the free lock");
        assert!(!lock_b.hold(&b).await, "the second does not while the first holds it");
        assert!(lock_a.hold(&a).await, "the holder keeps it");
        // The holder's session ends as a killed replica's does: PostgreSQL lets go of its lock.
        let ended: Vec<bool> = sqlx::query_scalar(
            "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted",
        )
        .fetch_all(&mut b.dedicated_connection().await.expect("connection"))
        .await
        .expect("terminate");
        assert_eq!(ended, [true], "exactly one session held the sweep lock");
        let mut taken = false;
        for _ in 0..100 {
            if lock_b.hold(&b).await {
                taken = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(taken, "the other replica took the sweep over");
        assert!(
            !lock_a.hold(&a).await,
            "the old holder notices it lost the lock and does not sweep"
        );
        assert!(lock_b.is_held() && !lock_a.is_held());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_same_delivery_at_two_replicas_at_once_is_processed_once() {
        let w = postgres_world(&[]).await;
        let other = w.replica().await;
        let product = w.connected_product(42, "octo-org/hello-world").await;
        w.hub.uninstall(42);
        for round in 0..20 {
            let delivery = format!("delivery-{round}");
            // Each delivery is its own event (GitHub's bodies differ: the sender, the time, the ids).
            let mut event: Value = serde_json::from_slice(&installation_event("deleted", 42)).expect("json");
            event["hook_id"] = json!(round);
            let body = event.to_string().into_bytes();
            let (one, two) = tokio::join!(
                w.deliver("installation", &delivery, &body, Some(support::WEBHOOK_SECRET)),
                w.deliver_at(
                    &other.url,
                    "installation",
                    &delivery,
                    &body,
                    Some(support::WEBHOOK_SECRET)
                ),
            );
            let mut statuses = [one.status, two.status];
            statuses.sort_unstable();
            assert_eq!(
                statuses,
                [200, 202],
                "round {round}: one replica processes, the other sees a duplicate"
            );
        }
        w.wait_for_status(&product, "installation_gone").await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_rate_limit_seen_by_one_replica_stops_the_others_mints_for_that_installation() {
        let w = postgres_world(&[]).await;
        let other = w.replica().await;
        let product = w.connected_product(42, "octo-org/hello-world").await;
        let elsewhere = w.connected_product(43, "acme/widgets").await;
        let (_, credential) = w.sandbox(&product).await;
        let (_, unrelated) = w.sandbox(&elsewhere).await;
        w.hub.fail_next_mints(
            1,
            &fakehub::InjectedFailure::status(403, "You have exceeded a secondary rate limit")
                .with_header("retry-after", "30"),
        );
        let first = w.token(&credential).await;
        assert_eq!(first.status, 503, "{:?}", first.body);
        assert_eq!(first.headers["retry-after"], "30");
        let mints = w.hub.mints().len();
        let at_other = w
            .request_at(&other.url, "POST", "/api/v1/token", Some(&credential), None)
            .await;
        assert_eq!(at_other.status, 503, "{:?}", at_other.body);
        assert_eq!(at_other.body["status"], "github_rate_limited");
        let wait: u64 = at_other.headers["retry-after"]
            .to_str()
            .expect("ascii")
            .parse()
            .expect("seconds");
        assert!(
            (28..=30).contains(&wait),
            "the other replica waits out GitHub's time: {wait}"
        );
        assert_eq!(w.hub.mints().len(), mints, "the other replica did not call GitHub");
        // Another installation is not paused.
        let fine = w
            .request_at(&other.url, "POST", "/api/v1/token", Some(&unrelated), None)
            .await;
        assert_eq!(fine.status, 200, "{:?}", fine.body);
    }

    /// 12 requests, 300 ms per mint, 2 slots fleet-wide: 6 rounds, however the requests spread over replicas.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn mints_in_flight_are_bounded_across_replicas() {
        let w = postgres_world(&["--mints-per-installation", "2"]).await;
        let other = w.replica().await;
        let product = w.connected_product(42, "octo-org/hello-world").await;
        let mut credentials = Vec::new();
        for _ in 0..12 {
            credentials.push(w.sandbox(&product).await.1);
        }
        // fakehub refuses a third mint at once with GitHub's secondary rate limit.
        w.hub.set_max_concurrent_mints(2);
        w.hub.set_mint_latency(Duration::from_millis(300));
        let started = Instant::now();
        let requests = credentials
            .iter()
            .enumerate()
            .map(|(i, c)| (if i % 2 == 0 { w.url.clone() } else { other.url.clone() }, c.clone()))
            .collect();
        let answers = all_at_once(requests, started).await;
        let elapsed = started.elapsed();
        w.hub.set_mint_latency(Duration::ZERO);
        assert!(answers.iter().all(|(s, _)| *s == 200), "{answers:?}");
        assert_eq!(w.hub.mints_over_limit(), 0, "GitHub's concurrency limit was never hit");
        assert!(
            elapsed >= Duration::from_millis(1700),
            "12 mints of 300 ms took {elapsed:?}: more than 2 ran at once"
        );
        // Each token's record gave its slot back, at once: none is left to run out its lease.
        let store = Store::open(&w.database).await.expect("store");
        let now_ms = mint_server::model::now_ms();
        assert_eq!(store.mint_slots_held(42, now_ms).await.expect("slots"), 0);
    }

    /// Records that wait for the pool share one statement (PostgreSQL), and one that fails fails alone:
    /// thirteen tokens recorded at once through a pool of one connection, one of them for a sandbox that
    /// does not exist. The twelve are recorded, each with its sandbox; the thirteenth gets the database's
    /// error; and the records were tried together first.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_record_that_fails_in_a_batch_fails_alone() {
        let w = postgres_world(&[]).await;
        let product = w.connected_product(42, "octo-org/hello-world").await;
        let mut sandboxes = Vec::new();
        for _ in 0..12 {
            sandboxes.push(w.sandbox(&product).await.0);
        }
        let store = Store::open_with_pool(&w.database, Some(1)).await.expect("store");
        let sizes = prometheus_client::metrics::histogram::Histogram::new([1.0, 2.0]);
        store.count_batches(
            prometheus_client::metrics::histogram::Histogram::new([1.0]),
            sizes.clone(),
        );
        let connection = store.connection(&product).await.expect("read").expect("connected");
        let repository_id = connection.repository_id.expect("a repository");
        let now = mint_server::model::now();
        let token = |n: usize, sandbox_id: &str| mint_server::store::NewToken {
            token_sha256: format!("{n:064x}"),
            sandbox_id: sandbox_id.to_owned(),
            installation_id: 42,
            repository_id,
            repository: "octo-org/hello-world".to_owned(),
            permissions: mint_github::Permissions::default(),
            minted_at: now,
            expires_at: now + 3600,
            sealed: mint_server::seal::Sealed {
                text: "sealed".to_owned(),
                key_id: "k1".to_owned(),
            },
        };
        let mut tokens: Vec<_> = sandboxes.iter().enumerate().map(|(n, id)| token(n, id)).collect();
        tokens.insert(6, token(99, "sbx_never_created"));
        let outcomes =
            futures_util::future::join_all(tokens.iter().map(|t| store.record_mint(t, now * 1000, (None, None)))).await;
        for (t, outcome) in tokens.iter().zip(&outcomes) {
            if t.sandbox_id == "sbx_never_created" {
                let error = outcome.as_ref().expect_err("no such sandbox").to_string();
                assert!(error.contains("foreign key"), "{error}");
            } else {
                assert!(matches!(outcome, Ok(None)), "{}: {outcome:?}", t.sandbox_id);
                let recorded = store.sandbox_tokens(&t.sandbox_id).await.expect("tokens");
                assert_eq!(recorded.len(), 1, "{}", t.sandbox_id);
            }
        }
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register("records", "records per statement", sizes);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encodes");
        let statements: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix("records_count "))
            .and_then(|v| v.parse().ok())
            .expect("counted");
        assert!(
            statements < 13.0,
            "thirteen records were tried in fewer statements: {text}"
        );
    }

    /// A slot's lease is short (so a dead replica's slots come free soon), and a mint that outlives it keeps
    /// its slot by renewing it: GitHub taking 5.5 s, one slot fleet-wide, the other replica's request waits
    /// for the first mint to end instead of taking the slot when the first lease would have run out.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_mint_slower_than_the_slot_lease_keeps_its_slot() {
        let w = postgres_world(&["--mints-per-installation", "1"]).await;
        let other = w.replica().await;
        let product = w.connected_product(42, "octo-org/hello-world").await;
        let (_, slow) = w.sandbox(&product).await;
        let (_, next) = w.sandbox(&product).await;
        w.hub.set_max_concurrent_mints(1);
        w.hub.set_mint_latency(Duration::from_millis(5_500));
        let started = Instant::now();
        let first = tokio::spawn(token_at(w.url.clone(), slow));
        tokio::time::sleep(Duration::from_millis(500)).await;
        let second = tokio::spawn(token_at(other.url.clone(), next));
        assert_eq!(first.await.expect("first request"), 200);
        let first_done = started.elapsed();
        w.hub.set_mint_latency(Duration::ZERO);
        assert_eq!(second.await.expect("second request"), 200);
        assert!(first_done >= Duration::from_millis(5_500), "{first_done:?}");
        assert_eq!(
            w.hub.mints_over_limit(),
            0,
            "the other replica took the slot while the first mint was still at GitHub"
        );
    }

    /// A product with many sandboxes waiting does not make another product's one wait behind all of them.
    async fn turns_are_taken_across_products(w: World) {
        let busy = w.connected_product(42, "octo-org/hello-world").await;
        let quiet = w.connected_product(42, "octo-org/other-repo").await;
        let mut credentials = Vec::new();
        for _ in 0..8 {
            credentials.push(w.sandbox(&busy).await.1);
        }
        let (_, lone) = w.sandbox(&quiet).await;
        w.hub.set_mint_latency(Duration::from_millis(150));
        let started = Instant::now();
        let busy_requests = all_at_once(
            credentials.iter().map(|c| (w.url.clone(), c.clone())).collect(),
            started,
        );
        let lone_request = async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            assert_eq!(w.token(&lone).await.status, 200);
            started.elapsed()
        };
        let (busy_done, lone_done) = tokio::join!(busy_requests, lone_request);
        assert!(busy_done.iter().all(|(s, _)| *s == 200), "{busy_done:?}");
        w.hub.set_mint_latency(Duration::ZERO);
        let after = busy_done.iter().filter(|(_, d)| *d > lone_done).count();
        assert!(
            after >= 4,
            "the lone sandbox's mint waited behind {} of the busy product's 8: {busy_done:?} vs {lone_done:?}",
            8 - after
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn turns_are_taken_across_products_on_sqlite() {
        turns_are_taken_across_products(
            World::start_with(Db::Sqlite, vec!["--mints-per-installation".into(), "1".into()]).await,
        )
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn turns_are_taken_across_products_on_postgres() {
        turns_are_taken_across_products(postgres_world(&["--mints-per-installation", "1"]).await).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_down_answers_503_with_retry_after_and_service_resumes_by_itself() {
        let mut w = postgres_world(&[]).await;
        let product = w.connected_product(42, "octo-org/hello-world").await;
        let (_, credential) = w.sandbox(&product).await;
        assert_eq!(w.token(&credential).await.status, 200);
        let Db::Postgres(pg) = &mut w.db else { unreachable!() };
        tokio::task::block_in_place(|| pg.stop());
        for round in 0..3 {
            let asked = Instant::now();
            let answer = w.token(&credential).await;
            assert_eq!(answer.status, 503, "round {round}: {:?}", answer.body);
            assert!(answer.headers.contains_key("retry-after"), "round {round}");
            assert_eq!(answer.body["status"], "database_unavailable");
            assert!(
                asked.elapsed() < Duration::from_secs(5),
                "round {round}: answered in {:?}",
                asked.elapsed()
            );
        }
        assert_eq!(w.get("/readyz", None).await.status, 503);
        let Db::Postgres(pg) = &mut w.db else { unreachable!() };
        tokio::task::block_in_place(|| pg.start_again());
        let back = Instant::now();
        loop {
            let answer = w.token(&credential).await;
            if answer.status == 200 {
                break;
            }
            assert_eq!(answer.status, 503, "{:?}", answer.body);
            assert!(
                back.elapsed() < Duration::from_secs(15),
                "the server did not recover by itself"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(w.get("/readyz", None).await.status, 200);
    }

    /// `POST /api/v1/token` at `base` with the credential, on a client of its own (so it can be spawned).
    async fn token_at(base: String, credential: String) -> u16 {
        use http_body_util::{BodyExt, Full};
        let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http::<Full<bytes::Bytes>>();
        let request = http::Request::post(format!("{base}/api/v1/token"))
            .header("authorization", format!("Bearer {credential}"))
            .body(Full::new(bytes::Bytes::new()))
            .expect("request");
        match client.request(request).await {
            Ok(response) => {
                let status = response.status().as_u16();
                let _ = response.into_body().collect().await;
                status
            }
            Err(_) => 0,
        }
    }

    /// Every request at once; each one's status and when it finished, in order.
    async fn all_at_once(requests: Vec<(String, String)>, started: Instant) -> Vec<(u16, Duration)> {
        let mut set = tokio::task::JoinSet::new();
        for (i, (base, credential)) in requests.into_iter().enumerate() {
            set.spawn(async move { (i, token_at(base, credential).await, started.elapsed()) });
        }
        let mut out = set.join_all().await;
        out.sort_unstable_by_key(|(i, _, _)| *i);
        out.into_iter().map(|(_, status, at)| (status, at)).collect()
    }
}

/// mint-server on the internet (issue 25): what anonymous requests can make it do, and what they cannot.
mod internet {
    use std::collections::HashMap;

    use mint_server::store::Store;

    use super::*;
    use support::{PUBLIC_URL, WEBHOOK_SECRET};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_answer_carries_the_security_headers() {
        // Browsers reach this one over HTTPS (a TLS proxy in front), so it asks them to keep to it.
        let w = World::start_with(
            Db::Sqlite,
            vec!["--public-url".into(), "https://mint.example.test".into()],
        )
        .await;
        let product = w.connected_product(42, "octo-org/hello-world").await;
        let (_, credential) = w.sandbox(&product).await;
        let answers = [
            ("a page", w.send("GET", &format!("{}/", w.url), &[], None).await),
            (
                "a redirect",
                w.send("GET", &format!("{}/login", w.url), &[], None).await,
            ),
            (
                "an admin answer",
                w.send(
                    "GET",
                    &format!("{}/api/v1/products/{product}/connection", w.url),
                    &[("authorization", &format!("Bearer {}", super::ADMIN_TOKEN))],
                    None,
                )
                .await,
            ),
            (
                "a token",
                w.send(
                    "POST",
                    &format!("{}/api/v1/token", w.url),
                    &[("authorization", &format!("Bearer {credential}"))],
                    None,
                )
                .await,
            ),
            ("a 404", w.send("GET", &format!("{}/nowhere", w.url), &[], None).await),
            (
                "a refusal",
                w.send("POST", &format!("{}/api/v1/products", w.url), &[], None).await,
            ),
        ];
        for (what, (status, headers, body)) in &answers {
            assert!(*status > 0, "{what}: {body}");
            for (name, value) in [
                ("x-content-type-options", "nosniff"),
                ("x-frame-options", "DENY"),
                ("referrer-policy", "same-origin"),
                ("cache-control", "no-store"),
                ("strict-transport-security", "max-age=31536000"),
            ] {
                assert_eq!(
                    headers.get(name).and_then(|v| v.to_str().ok()),
                    Some(value),
                    "{what} ({status}) lacks {name}: {headers:?}"
                );
            }
        }
        let (_, stylesheet, _) = w.send("GET", &format!("{}/static/mint.css", w.url), &[], None).await;
        assert_eq!(
            stylesheet["cache-control"], "public, max-age=3600",
            "a handler's own caching is kept"
        );
        let plain = World::start(Db::Sqlite).await;
        assert!(PUBLIC_URL.starts_with("http://"));
        let (_, headers, _) = plain.send("GET", &format!("{}/", plain.url), &[], None).await;
        assert!(
            !headers.contains_key("strict-transport-security"),
            "no HSTS over plain HTTP: {headers:?}"
        );
    }

    async fn rows(w: &World) -> HashMap<&'static str, i64> {
        let store = Store::open(&w.database).await.expect("store");
        let counts = store.row_counts().await.expect("counts").into_iter().collect();
        store.close().await;
        counts
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_unverified_setup_url_asks_github_nothing() {
        let w = World::start(Db::Sqlite).await;
        let product = w.connected_product(42, "octo-org/hello-world").await;
        let before = w.hub.requests().len();
        for action in ["install", "update", "request"] {
            for _ in 0..50 {
                let (status, answer, _) = w
                    .send(
                        "GET",
                        &format!("{}/github/setup?installation_id=42&setup_action={action}", w.url),
                        &[],
                        None,
                    )
                    .await;
                assert_eq!((status, support::location(&answer).as_str()), (303, "/"));
            }
        }
        assert_eq!(
            w.hub.requests().len(),
            before,
            "150 anonymous Setup URL hits made no GitHub call"
        );
        let connection = w
            .admin("GET", &format!("/api/v1/products/{product}/connection"), None)
            .await;
        assert_eq!(connection.body["status"], "active");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn anonymous_logins_write_no_session_set_a_host_cookie_and_are_limited_per_address() {
        let w = World::start(Db::Sqlite).await;
        let (mut redirected, mut limited) = (0, 0);
        for _ in 0..40 {
            let (status, answer, _) = w.send("GET", &format!("{}/login", w.url), &[], None).await;
            match status {
                303 => {
                    redirected += 1;
                    let cookie = answer["set-cookie"].to_str().expect("ascii");
                    assert!(cookie.starts_with("__Host-mint_session="), "{cookie}");
                    for attribute in ["Path=/", "Secure", "HttpOnly", "SameSite=Lax"] {
                        assert!(cookie.contains(attribute), "{cookie}");
                    }
                    assert!(!cookie.contains("Domain"), "{cookie}");
                }
                429 => {
                    limited += 1;
                    assert!(answer.contains_key("retry-after"));
                }
                other => panic!("/login answered {other}"),
            }
        }
        assert_eq!(
            redirected,
            mint_server::web::LOGIN_BURST as usize,
            "a burst, then refused"
        );
        assert_eq!(limited, 40 - redirected);
        let rows = rows(&w).await;
        assert_eq!(rows["web_sessions"], 0, "an anonymous visitor has no session row");
        assert_eq!(rows["oauth_states"], i64::from(mint_server::web::LOGIN_BURST));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sign_in_rotates_the_session_so_a_planted_cookie_rides_nothing() {
        let w = World::start(Db::Sqlite).await;
        // The attacker plants a cookie value in the victim's browser, then the victim signs in with it.
        let planted = "planted-by-an-attacker-0123456789";
        let (location, signed_in) = w.sign_in("octocat", Some(planted), "/").await;
        assert_eq!(location, "/");
        assert_ne!(signed_in, planted, "a new session id at sign-in");
        let home = |cookie: String| {
            let w = &w;
            async move {
                let header = format!("{}={cookie}", mint_server::web::SESSION_COOKIE);
                w.send("GET", &format!("{}/", w.url), &[("cookie", &header)], None)
                    .await
            }
        };
        let (status, answer, _) = home(planted.to_owned()).await;
        assert_eq!(status, 303);
        assert!(
            support::location(&answer).starts_with("/login"),
            "the planted cookie is not signed in"
        );
        let (status, _, body) = home(signed_in.clone()).await;
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("octocat"), "{body}");
        // Signing in again rotates again, and the previous session ends.
        let (_, again) = w.sign_in("octocat", Some(&signed_in), "/").await;
        assert_ne!(again, signed_in);
        assert_eq!(home(signed_in).await.0, 303, "the replaced session is gone");
        assert_eq!(rows(&w).await["web_sessions"], 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn next_after_sign_in_never_leaves_the_site() {
        let w = World::start(Db::Sqlite).await;
        // `next` as the query decodes it: `?next=/%09/evil.example/phish` arrives as "/\t/evil.example/phish".
        for (next, want) in [
            ("/\t/evil.example/phish", "/"),
            ("/\n/evil.example/phish", "/"),
            ("/%09/evil.example/phish", "/%09/evil.example/phish"),
            ("//evil.example/phish", "/"),
            ("/\\evil.example", "/"),
            ("https://evil.example/", "/"),
            (
                "/products/prd_x/integrations?tab=1",
                "/products/prd_x/integrations?tab=1",
            ),
        ] {
            let (location, _) = w.sign_in("octocat", None, next).await;
            assert_eq!(location, want, "next={next:?}");
            let landed = url::Url::parse(PUBLIC_URL).expect("url").join(&location).expect("url");
            assert_eq!(landed.origin(), url::Url::parse(PUBLIC_URL).expect("url").origin());
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_signed_body_replayed_under_a_new_delivery_id_is_a_duplicate() {
        let w = World::start(Db::Sqlite).await;
        let body = installation_event("suspend", 42);
        let first = w
            .deliver("installation", "d-original", &body, Some(WEBHOOK_SECRET))
            .await;
        assert_eq!(first.status, 202);
        let replayed = w
            .deliver("installation", "d-forged-new-id", &body, Some(WEBHOOK_SECRET))
            .await;
        assert_eq!(
            (replayed.status, replayed.body["status"].clone()),
            (200, json!("duplicate"))
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_approval_is_matched_to_the_account_github_reports_not_the_payloads_requester() {
        let w = World::start(Db::Sqlite).await;
        let created = w
            .admin(
                "POST",
                "/api/v1/products",
                Some(json!({"name": "Pending", "members": ["hubot"]})),
            )
            .await;
        let product = created.body["id"].as_str().expect("id").to_owned();
        // The product waits for an owner of acme (as the Setup URL's request step records it).
        let store = Store::open(&w.database).await.expect("store");
        let mut pending = mint_server::model::Connection::not_connected("waiting", mint_server::model::now());
        pending.status = mint_server::model::ConnectionStatus::PendingApproval;
        pending.account_login = Some("acme".into());
        store
            .put_connection(&product, &pending, &mint_server::store::Actor::Admin)
            .await
            .expect("pending");
        // A signed delivery says installation 42 was created for hubot's request; GitHub says 42 is octo-org's.
        let mut forged: Value = serde_json::from_slice(&installation_event("created", 42)).expect("json");
        forged["requester"] = json!({"login": "hubot", "id": 2});
        forged["installation"]["account"]["login"] = json!("acme");
        let answer = w
            .deliver(
                "installation",
                "d-created",
                forged.to_string().as_bytes(),
                Some(WEBHOOK_SECRET),
            )
            .await;
        assert_eq!(answer.status, 202);
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        assert_eq!(
            store.connection(&product).await.expect("read").expect("row").status,
            mint_server::model::ConnectionStatus::PendingApproval,
            "still waiting: installation 42 is not acme's"
        );
        // GitHub's own word: installation 43 is acme's.
        let real = installation_event("created", 43);
        assert_eq!(
            w.deliver("installation", "d-real", &real, Some(WEBHOOK_SECRET))
                .await
                .status,
            202
        );
        w.wait_for_status(&product, "not_connected").await;
        store.close().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_sweep_confirms_an_installation_missing_from_the_list_before_calling_it_gone() {
        let w = World::start(Db::Sqlite).await;
        let product = w.connected_product(42, "octo-org/hello-world").await;
        w.hub.skip_in_installation_list(42, true);
        let swept = w.admin("POST", "/api/v1/reconcile", None).await;
        assert_eq!(swept.status, 200, "{:?}", swept.body);
        let connection = w
            .admin("GET", &format!("/api/v1/products/{product}/connection"), None)
            .await;
        assert_eq!(
            connection.body["status"], "active",
            "a shifted page is not an uninstall"
        );
        w.hub.skip_in_installation_list(42, false);
        w.hub.uninstall(42);
        w.admin("POST", "/api/v1/reconcile", None).await;
        w.wait_for_status(&product, "installation_gone").await;
    }

    /// Members are matched by GitHub's user id: bound at the login's first sign-in, then only that id.
    async fn members_are_matched_by_user_id(w: World) {
        let product = w.connected_product(42, "octo-org/hello-world").await;
        let store = Store::open(&w.database).await.expect("store");
        assert!(
            store.is_member(&product, "octocat", 583_231).await.expect("read"),
            "first sign-in binds"
        );
        assert!(
            !store.is_member(&product, "octocat", 9_999_999).await.expect("read"),
            "someone else who took the login later is not a member"
        );
        assert!(
            store
                .is_member(&product, "octocat-renamed", 583_231)
                .await
                .expect("read"),
            "the member, renamed, still is"
        );
        assert!(!store.is_member(&product, "mona", 1).await.expect("read"));
        store.close().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn members_are_matched_by_user_id_on_sqlite() {
        members_are_matched_by_user_id(World::start(Db::Sqlite).await).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn members_are_matched_by_user_id_on_postgres() {
        let pg = tokio::task::spawn_blocking(Postgres::start).await.expect("postgres");
        members_are_matched_by_user_id(World::start(Db::Postgres(pg)).await).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn expired_sessions_states_and_deliveries_are_swept() {
        let w = World::start(Db::Sqlite).await;
        for _ in 0..5 {
            w.send("GET", &format!("{}/login", w.url), &[], None).await;
        }
        let (_, cookie) = w.sign_in("octocat", None, "/").await;
        assert!(!cookie.is_empty());
        w.deliver(
            "installation",
            "d-old",
            &installation_event("suspend", 42),
            Some(WEBHOOK_SECRET),
        )
        .await;
        let before = rows(&w).await;
        assert!(before["oauth_states"] >= 5 && before["web_sessions"] == 1 && before["webhook_deliveries"] == 1);
        let store = Store::open(&w.database).await.expect("store");
        // A day and a month later: everything anonymous traffic wrote has expired.
        let later = mint_server::model::now() + 40 * 24 * 3600;
        let gone = store
            .sweep_expired(later, 600, 30 * 24 * 3600, 30 * 24 * 3600)
            .await
            .expect("sweep");
        assert!(gone >= 7, "{gone}");
        let after = rows(&w).await;
        for table in ["oauth_states", "web_sessions", "webhook_deliveries", "verified_choices"] {
            assert_eq!(after[table], 0, "{table}");
        }
        store.close().await;
    }
}

/// What an operator's Prometheus reads: `/metrics`, parsed as Prometheus parses it.
mod operator {
    use super::*;
    use support::{METRICS_TOKEN, WEBHOOK_SECRET};

    /// The scrape's samples as (name, labels "k=v,…" sorted, value).
    async fn scrape(w: &World, bearer: &str) -> Vec<(String, String, f64)> {
        let (status, headers, body) = w
            .send(
                "GET",
                &format!("{}/metrics", w.url),
                &[("authorization", &format!("Bearer {bearer}"))],
                None,
            )
            .await;
        assert_eq!(status, 200, "{body}");
        assert!(
            headers["content-type"]
                .to_str()
                .is_ok_and(|t| t.starts_with("application/openmetrics-text")),
            "{headers:?}"
        );
        assert!(body.ends_with("# EOF\n"), "{body}");
        let parsed = prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_owned())))
            .expect("the Prometheus text format");
        parsed
            .samples
            .into_iter()
            .map(|s| {
                let mut labels: Vec<String> = s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                labels.sort();
                let value = match s.value {
                    prometheus_parse::Value::Counter(v)
                    | prometheus_parse::Value::Gauge(v)
                    | prometheus_parse::Value::Untyped(v) => v,
                    prometheus_parse::Value::Histogram(buckets) => buckets.last().map_or(0.0, |b| b.count),
                    prometheus_parse::Value::Summary(_) => f64::NAN,
                };
                (s.metric, labels.join(","), value)
            })
            .collect()
    }

    /// A sample's value as Prometheus prints it ("2", "0.5"), "absent" when there is none.
    fn value(samples: &[(String, String, f64)], metric: &str, labels: &str) -> String {
        samples
            .iter()
            .find(|(m, l, _)| m == metric && l == labels)
            .map_or_else(|| "absent".to_owned(), |(_, _, v)| v.to_string())
    }

    /// Where a token request's time goes, step by step: a request that mints goes through each step once; one
    /// that hands out the live token again only reads the view.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_token_requests_steps_are_timed() {
        for db in ["SQLite", "PostgreSQL"] {
            let w = if db == "SQLite" {
                World::start(Db::Sqlite).await
            } else {
                super::fleet::postgres_world(&[]).await
            };
            let product = w.connected_product(42, "octo-org/hello-world").await;
            let (_, credential) = w.sandbox(&product).await;
            assert_eq!(w.token(&credential).await.status, 200);
            assert_eq!(w.token(&credential).await.status, 200, "handed out again");
            let samples = scrape(&w, METRICS_TOKEN).await;
            let count = |phase: &str| {
                value(
                    &samples,
                    "mint_server_token_phase_duration_seconds",
                    &format!("phase={phase}"),
                )
            };
            assert_eq!(count("view"), "2", "{db}: {samples:?}");
            for phase in ["sandbox", "installation", "github", "record"] {
                assert_eq!(count(phase), "1", "{db}, {phase}: {samples:?}");
            }
        }
    }

    /// Tokens minted at once are recorded together: on SQLite each transaction of the writer records every
    /// token waiting for it; on PostgreSQL the requests waiting for a connection of the pool share one
    /// statement for their views, and one for their records. Forty sandboxes minting at once each get a
    /// token, every one recorded (live, then revoked by teardown), with its own audit row.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tokens_minted_at_once_are_each_recorded_and_revocable() {
        for db in ["SQLite", "PostgreSQL"] {
            let w = if db == "SQLite" {
                World::start(Db::Sqlite).await
            } else {
                // Two connections for forty requests: most of them wait for the pool, and share statements.
                super::fleet::postgres_world(&["--db-pool", "2"]).await
            };
            minted_at_once(&w, db).await;
        }
    }

    async fn minted_at_once(w: &World, db: &str) {
        let product = w.connected_product(42, "octo-org/hello-world").await;
        let mut sandboxes = Vec::new();
        for _ in 0..40 {
            sandboxes.push(w.sandbox(&product).await);
        }
        w.hub.set_mint_latency(std::time::Duration::from_millis(50));
        let answers = futures_util::future::join_all(sandboxes.iter().map(|(_, credential)| w.token(credential))).await;
        w.hub.set_mint_latency(std::time::Duration::ZERO);
        assert!(
            answers.iter().all(|a| a.status == 200),
            "{db}: every sandbox got a token"
        );
        let samples = scrape(w, METRICS_TOKEN).await;
        assert_eq!(
            value(&samples, "mint_server_live_tokens", ""),
            "40",
            "{db}: {samples:?}"
        );
        for statement in ["view", "record"] {
            let labels = format!("statement={statement}");
            let statements = value(&samples, "mint_server_db_batch_requests_count", &labels);
            let requests = value(&samples, "mint_server_db_batch_requests_sum", &labels);
            if db == "SQLite" {
                assert_eq!(
                    statements, "0",
                    "SQLite batches its records in transactions: {samples:?}"
                );
            } else {
                assert_eq!(
                    requests, "40",
                    "{db}: every {statement} in a batched statement: {samples:?}"
                );
                let statements: f64 = statements.parse().expect("counted");
                assert!(
                    (1.0..40.0).contains(&statements),
                    "{db}: forty {statement}s in fewer statements, not {statements}: {samples:?}"
                );
            }
        }
        let minted = super::audit_trail(w, &product, 100)
            .await
            .iter()
            .filter(|e| e["action"] == "token_minted" && e["actor"]["kind"] == "sandbox")
            .count();
        assert_eq!(minted, 40, "{db}: one audit row per token");
        for (sandbox, _) in &sandboxes {
            assert_eq!(
                w.admin("DELETE", &format!("/api/v1/sandboxes/{sandbox}"), None)
                    .await
                    .status,
                204
            );
        }
        let mut live = String::new();
        for _ in 0..100 {
            live = value(&scrape(w, METRICS_TOKEN).await, "mint_server_live_tokens", "");
            if live == "0" {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert_eq!(live, "0", "{db}: teardown revoked every recorded token");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn metrics_count_mints_revocations_webhooks_and_live_tokens() {
        let w = World::start(Db::Sqlite).await;
        let anonymous = w.get("/metrics", None).await;
        assert_eq!(anonymous.status, 401);
        assert!(
            anonymous.body["message"]
                .as_str()
                .is_some_and(|m| m.contains("--metrics-token-file"))
        );
        let sandbox_credential = w
            .get("/metrics", Some("not-the-token-0123456789abcdefghijklmnop"))
            .await;
        assert_eq!(sandbox_credential.status, 401);

        let product = w.connected_product(42, "octo-org/hello-world").await;
        let (sandbox, credential) = w.sandbox(&product).await;
        assert_eq!(w.token(&credential).await.status, 200);
        assert_eq!(w.token(&credential).await.status, 200, "handed out again");
        let before = scrape(&w, METRICS_TOKEN).await;
        // The connect's check mints and revokes a token too.
        assert_eq!(
            value(&before, "mint_server_mints_total", "outcome=issued"),
            "2",
            "{before:?}"
        );
        assert_eq!(value(&before, "mint_server_tokens_reused_total", ""), "1");
        assert_eq!(value(&before, "mint_server_live_tokens", ""), "1");
        assert_eq!(
            value(
                &before,
                "mint_server_broker_request_duration_seconds",
                "route=token,status=2xx"
            ),
            "2",
            "two token requests timed"
        );
        assert_eq!(
            w.admin("DELETE", &format!("/api/v1/sandboxes/{sandbox}"), None)
                .await
                .status,
            204
        );
        let ping = br#"{"zen":"Design for failure.","hook_id":1}"#;
        assert_eq!(
            w.deliver("ping", "delivery-1", ping, Some(WEBHOOK_SECRET)).await.status,
            202
        );
        assert_eq!(
            w.deliver("ping", "delivery-1", ping, Some(WEBHOOK_SECRET)).await.status,
            200
        );
        assert_eq!(
            w.deliver("made-up-event", "delivery-2", ping, Some("wrong"))
                .await
                .status,
            401
        );
        let other = w.hub.tokens().len();
        let after = scrape(&w, super::ADMIN_TOKEN).await;
        assert_eq!(
            value(&after, "mint_server_revocations_total", "outcome=revoked"),
            "1",
            "{after:?}"
        );
        assert_eq!(value(&after, "mint_server_live_tokens", ""), "0");
        assert_eq!(value(&after, "mint_server_revocations_queued", ""), "0");
        assert_eq!(
            value(
                &after,
                "mint_server_webhook_deliveries_total",
                "event=ping,outcome=accepted"
            ),
            "1"
        );
        assert_eq!(
            value(
                &after,
                "mint_server_webhook_deliveries_total",
                "event=ping,outcome=duplicate"
            ),
            "1"
        );
        assert_eq!(
            value(
                &after,
                "mint_server_webhook_deliveries_total",
                "event=unverified,outcome=bad_signature"
            ),
            "1",
            "an unsigned delivery's event name is not a label"
        );
        assert!(
            after.iter().all(|(_, labels, _)| !labels.contains("made-up-event")),
            "{after:?}"
        );
        assert_ne!(
            value(&after, "mint_server_db_connections", "state=idle"),
            "absent",
            "{after:?}"
        );
        assert_eq!(other, w.hub.tokens().len(), "a scrape mints nothing");
    }

    /// `--db-pool` bounds the connections a replica keeps, whatever the load: 20 sandboxes asking at once
    /// through a pool of 2 are all answered, and the pool never holds more than 2.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_database_pool_is_the_size_the_operator_set() {
        let w = World::start_with(Db::Sqlite, vec!["--db-pool".into(), "2".into()]).await;
        let product = w.connected_product(42, "octo-org/hello-world").await;
        let mut credentials = Vec::new();
        for _ in 0..20 {
            credentials.push(w.sandbox(&product).await.1);
        }
        let answers = futures_util::future::join_all(credentials.iter().map(|c| w.token(c))).await;
        assert!(
            answers.iter().all(|a| a.status == 200),
            "{:?}",
            answers.iter().map(|a| a.status).collect::<Vec<_>>()
        );
        let samples = scrape(&w, METRICS_TOKEN).await;
        let held: f64 = samples
            .iter()
            .filter(|(m, _, _)| m == "mint_server_db_connections")
            .map(|(_, _, v)| v)
            .sum();
        assert!((1.0..=2.0).contains(&held), "in use + idle = {held}: {samples:?}");
    }
}
