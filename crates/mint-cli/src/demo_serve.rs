//! `mint demo --serve`: the connect flow by hand. fakehub and mint-server run in this process; a person
//! connects GitHub in a browser, then mintd (broker mode) and the agent open a pull request.
//!
//! Setup and the agent's flow share their code with the one-shot `mint demo` (see `demo.rs`).

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use fakehub::{AppKeyPair, Config as HubConfig, FakeHub, RunningFakeHub};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use crate::demo::{Mintd, Sandbox, step, write_private};

const APP_ID: u64 = 1;
const APP_SLUG: &str = "mint-fakehub";
const CLIENT_ID: &str = "Iv1.mintdemo";
const POLL: Duration = Duration::from_millis(500);

pub(crate) fn run() -> anyhow::Result<ExitCode> {
    let (runtime, work) = crate::demo::prepare()?;
    let mut signals = {
        let _runtime = runtime.enter();
        Signals::new()?
    };
    let world = runtime.block_on(World::start(work.path()))?;
    let served = world.serve(&runtime, &mut signals, work.path());
    let finish = runtime.block_on(world.stop());
    served?;
    finish?;
    Ok(ExitCode::SUCCESS)
}

/// SIGINT and SIGTERM, listened for from the start so that neither kills the process before cleanup.
struct Signals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> anyhow::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            interrupt: signal(SignalKind::interrupt()).context("listening for SIGINT")?,
            terminate: signal(SignalKind::terminate()).context("listening for SIGTERM")?,
        })
    }

    async fn recv(&mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
    }
}

/// fakehub and mint-server on loopback ports, one product, and what it takes to talk to them.
struct World {
    hub: RunningFakeHub,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
    stop_server: tokio::sync::oneshot::Sender<()>,
    api: Api,
    product: String,
}

impl World {
    async fn start(work: &Path) -> anyhow::Result<Self> {
        // mint-server's address goes into fakehub's App settings (callback, setup and webhook URLs), and
        // fakehub's into mint-server's flags: bind first, start fakehub, then serve on the bound listener.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding a loopback port for mint-server")?;
        let public = format!("http://{}", listener.local_addr()?);
        let private = work.join("server");
        std::fs::create_dir_all(&private)?;
        let admin_token = SecretString::from(mint_server::secrets::random_token());
        let client_secret = SecretString::from(mint_server::secrets::random_token());
        let webhook_secret = SecretString::from(mint_server::secrets::random_token());

        let key = AppKeyPair::generate().context("generating the App's RSA key")?;
        let hub_config = HubConfig::new(APP_ID, key.public_key_pem(), work.join("github"))
            .with_demo_users()
            .with_app_slug(APP_SLUG)
            .with_oauth_client(CLIENT_ID, client_secret.expose_secret())
            .with_callback_url(&format!("{public}/github/oauth/callback"))
            .with_setup_url(&format!("{public}/github/setup"))
            .with_webhook(
                &format!("{public}/github/webhook"),
                Some(webhook_secret.expose_secret()),
            )
            .with_html_urls_on_fakehub(true);
        let hub = FakeHub::start(hub_config).await.context("starting fakehub")?;

        let file = |name: &str, content: &str| -> anyhow::Result<String> {
            let path = private.join(name);
            write_private(&path, content.as_bytes())?;
            Ok(path.display().to_string())
        };
        let args = [
            "mint-server".to_owned(),
            "--app-id".into(),
            APP_ID.to_string(),
            "--private-key".into(),
            file("app-key.pem", &key.private_key_pem())?,
            "--admin-token-file".into(),
            file("admin-token", admin_token.expose_secret())?,
            "--database".into(),
            format!("sqlite://{}", private.join("mint-server.db").display()),
            "--github-url".into(),
            hub.url(),
            "--api-url".into(),
            hub.url(),
            "--public-url".into(),
            public.clone(),
            "--app-slug".into(),
            APP_SLUG.into(),
            "--client-id".into(),
            CLIENT_ID.into(),
            "--client-secret-file".into(),
            file("client-secret", client_secret.expose_secret())?,
            "--webhook-secret-file".into(),
            file("webhook-secret", webhook_secret.expose_secret())?,
        ];
        let config = <mint_server::Args as clap::Parser>::try_parse_from(args)
            .context("mint-server's flags")?
            .load()
            .context("configuring mint-server")?;
        let (stop_server, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(mint_server::run(config, listener, async {
            let _ = stopped.await;
        }));

        let api = Api {
            client: Client::builder(TokioExecutor::new()).build_http(),
            base: public,
            token: admin_token,
        };
        let created = api
            .call(
                http::Method::POST,
                "/api/v1/products",
                Some(&json!({"name": "Demo product", "members": ["octocat", "hubot"]})),
            )
            .await
            .context("creating the demo product")?;
        let product = created["id"]
            .as_str()
            .context("mint-server answered a new product without its id")?
            .to_owned();

        println!("{}/products/{product}/integrations", api.base);
        println!("  Open it, sign in to fakehub (a stand-in GitHub) as octocat, password octocat, and click");
        println!("  \"Connect GitHub\": install the App on octo-org and pick a repository. Ctrl-C stops it all.");
        Ok(Self {
            hub,
            server,
            stop_server,
            api,
            product,
        })
    }

    /// Wait for the person to connect GitHub, run the agent, then serve until a signal; mintd stops last.
    fn serve(&self, runtime: &tokio::runtime::Runtime, signals: &mut Signals, work: &Path) -> anyhow::Result<()> {
        let connected = runtime.block_on(async {
            tokio::select! {
                repository = self.wait_until_connected() => repository.map(Some),
                () = signals.recv() => Ok(None),
            }
        })?;
        let Some(repository) = connected else {
            return Ok(());
        };
        // The agent's flow is synchronous (it runs `mint` as a child), as in the one-shot demo: the servers
        // keep running on the runtime's workers meanwhile.
        let mintd = self.agent(runtime, work, &repository)?;
        println!("\nServing until Ctrl-C.");
        runtime.block_on(signals.recv());
        runtime.block_on(mintd.stop(&self.hub))
    }

    /// Poll the product's connection until it is active; its repository.
    async fn wait_until_connected(&self) -> anyhow::Result<String> {
        let path = format!("/api/v1/products/{}/connection", self.product);
        loop {
            let connection = self.api.call(http::Method::GET, &path, None).await?;
            if connection["status"] == "active" {
                let repository = connection["repository"].as_str().unwrap_or_default().to_owned();
                step("connected", connection["reason"].as_str().unwrap_or(&repository));
                return Ok(repository);
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// A sandbox for the product, mintd in broker mode for it, and the agent's `mint clone` / `mint publish`.
    fn agent(&self, runtime: &tokio::runtime::Runtime, work: &Path, repository: &str) -> anyhow::Result<Mintd> {
        let sandbox = runtime.block_on(self.api.call(
            http::Method::POST,
            &format!("/api/v1/products/{}/sandboxes", self.product),
            Some(&json!({})),
        ))?;
        let sandbox_id = sandbox["sandbox_id"].as_str().unwrap_or_default();
        let credential = SecretString::from(
            sandbox["credential"]
                .as_str()
                .context("mint-server answered a new sandbox without its credential")?,
        );
        let private = work.join("mintd");
        std::fs::create_dir_all(&private)?;
        let credential_file = private.join("sandbox-credential");
        write_private(&credential_file, credential.expose_secret().as_bytes())?;
        let socket = private.join("run/mint.sock");
        let args = [
            "mintd".into(),
            "--broker".into(),
            self.api.base.clone(),
            "--sandbox-credential-file".into(),
            credential_file.display().to_string(),
            "--socket".into(),
            socket.display().to_string(),
            "--github-url".into(),
            self.hub.url(),
            "--api-url".into(),
            self.hub.url(),
        ];
        let config = <mint_daemon::Args as clap::Parser>::try_parse_from(args)
            .context("mintd's flags")?
            .load()
            .context("configuring mintd")?;
        let mintd = runtime.block_on(Mintd::start(config))?;
        step(
            "mintd",
            &format!(
                "broker mode for sandbox {sandbox_id} on {}: no App key, tokens from mint-server",
                socket.display()
            ),
        );
        let flow = Sandbox::prepare(work, &self.hub.url(), socket).and_then(|sandbox| {
            // Plain git first, through the credential helper: the sandbox's first token comes from the broker.
            let url = format!("{}/{repository}.git", self.hub.url());
            sandbox.git(None, &[&"ls-remote".into(), &"--heads".into(), &url.into()])?;
            step(
                "git ls-remote",
                &format!("{repository}: the helper asked mintd, mintd asked mint-server for a token"),
            );
            let pull_request = sandbox.agent_flow(&self.hub, &sandbox.agent_clone())?;
            println!("\nThe pull request the agent opened on {repository}, on fakehub:\n{pull_request}");
            Ok(())
        });
        match flow {
            Ok(()) => Ok(mintd),
            Err(e) => {
                // Still stop mintd (it revokes what it holds) before reporting the failure.
                let _ = runtime.block_on(mintd.stop(&self.hub));
                Err(e)
            }
        }
    }

    async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop_server.send(());
        let served = self.server.await.context("mint-server's task");
        self.hub.shutdown().await;
        served??;
        Ok(())
    }
}

/// The orchestrator's side of mint-server's API, over loopback HTTP with the admin token.
struct Api {
    client: Client<HttpConnector, Full<Bytes>>,
    base: String,
    token: SecretString,
}

impl Api {
    async fn call(&self, method: http::Method, path: &str, body: Option<&Value>) -> anyhow::Result<Value> {
        let mut request = http::Request::builder()
            .method(method.clone())
            .uri(format!("{}{path}", self.base))
            .header(
                http::header::AUTHORIZATION,
                format!("Bearer {}", self.token.expose_secret()),
            );
        let body = match body {
            Some(body) => {
                request = request.header(http::header::CONTENT_TYPE, "application/json");
                Full::new(Bytes::from(serde_json::to_vec(body)?))
            }
            None => Full::new(Bytes::new()),
        };
        let response = self
            .client
            .request(request.body(body)?)
            .await
            .with_context(|| format!("{method} {path}: mint-server did not answer"))?;
        let status = response.status();
        let bytes = response.into_body().collect().await?.to_bytes();
        if !status.is_success() {
            bail!(
                "{method} {path}: mint-server answered {status}: {}",
                String::from_utf8_lossy(&bytes).trim()
            );
        }
        serde_json::from_slice(&bytes).with_context(|| format!("{method} {path}: the answer is not JSON"))
    }
}
