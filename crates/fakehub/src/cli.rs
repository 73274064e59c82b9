//! The `fakehub` binary: a stand-in GitHub on a loopback port, for demos and for other processes' tests.

use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;

use crate::{AppKeyPair, Config, FakeHub, InstallationConfig};

/// fakehub: a stand-in GitHub — App token REST API and git smart HTTP — on a loopback port.
///
/// Knobs and records are under /_fakehub/ (GET mints|tokens|requests|deliveries|installations|
/// installation-requests; POST revoke-all, expire-all, fail-next {n,status,headers,message},
/// token-lifetime {seconds}, mint-latency {ms}, date-skew {seconds},
/// uninstall|suspend|unsuspend {`installation_id`}, webhook {url,secret}, redeliver {delivery},
/// install {`account`,`repository_selection`,`repositories`}). The App's keys, as on its settings page:
/// GET app-keys (id, fingerprint), POST app-keys {pem} (public or private PEM; answers {id}),
/// DELETE app-keys/ID (JWTs it signed fail at once).
///
/// Unless --no-demo-users: users octocat (owner of octo-org and restricted-org), mona (member of
/// octo-org without push) and hubot (member of restricted-org, where only owners may install);
/// each password equals the login. Sign in at /login; install at /apps/SLUG/installations/new.
#[derive(Debug, Parser)]
#[command(name = "fakehub", version, max_term_width = 100)]
struct Args {
    /// Address to listen on (loopback).
    #[arg(long, env = "FAKEHUB_LISTEN", default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Directory for the bare repositories [default: a temporary directory].
    #[arg(long, env = "FAKEHUB_ROOT")]
    root: Option<PathBuf>,
    #[arg(long, env = "FAKEHUB_APP_ID", default_value_t = 1)]
    app_id: u64,
    #[arg(long, env = "FAKEHUB_INSTALLATION_ID", default_value_t = 42)]
    installation_id: u64,
    /// Repository to create and add to the installation (repeatable).
    #[arg(long = "repo", value_name = "OWNER/NAME", default_value = "octo-org/hello-world")]
    repos: Vec<String>,
    /// The App's key, public or private PEM.
    #[arg(
        long,
        env = "FAKEHUB_APP_KEY",
        value_name = "PEM_FILE",
        conflicts_with = "write_app_key"
    )]
    app_key: Option<PathBuf>,
    /// Generate the App's key pair and write the private key (PKCS#1) here, mode 0600.
    #[arg(long, value_name = "PATH")]
    write_app_key: Option<PathBuf>,
    /// Lifetime of the tokens it issues.
    #[arg(long, env = "FAKEHUB_TOKEN_LIFETIME", value_name = "SECS", default_value_t = 3600)]
    token_lifetime: u64,
    /// Start without the demo users, organisations and repositories.
    #[arg(long)]
    no_demo_users: bool,
    /// The App's URL name (/apps/SLUG/installations/new).
    #[arg(long, env = "FAKEHUB_APP_SLUG", default_value = "mint-fakehub")]
    app_slug: String,
    /// The App's OAuth client id [default: Iv1.<app id as 16 hex digits>].
    #[arg(long, env = "FAKEHUB_CLIENT_ID")]
    client_id: Option<String>,
    /// The App's OAuth client secret [default: fakehub-client-secret-<app id>].
    #[arg(long, env = "FAKEHUB_CLIENT_SECRET")]
    client_secret: Option<String>,
    /// A registered callback URL for the OAuth web flow (repeatable; the first is the default).
    #[arg(long = "callback-url", value_name = "URL")]
    callback_urls: Vec<String>,
    /// Where users land after installing the App.
    #[arg(long, env = "FAKEHUB_SETUP_URL", value_name = "URL")]
    setup_url: Option<String>,
    /// Where the App's webhooks are delivered (loopback http:// only).
    #[arg(long, env = "FAKEHUB_WEBHOOK_URL", value_name = "URL")]
    webhook_url: Option<String>,
    /// The secret that signs webhook deliveries.
    #[arg(long, env = "FAKEHUB_WEBHOOK_SECRET")]
    webhook_secret: Option<String>,
    /// Point every installation's `html_url` at fakehub's own settings page (run-time ones always do).
    #[arg(long)]
    html_urls_on_fakehub: bool,
}

pub fn main() -> ExitCode {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fakehub: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    let public_pem = match (&args.app_key, &args.write_app_key) {
        (Some(path), _) => {
            public_key_of(&std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?)?
        }
        (None, Some(path)) => {
            let pair = AppKeyPair::generate()?;
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .with_context(|| format!("creating {}", path.display()))?
                .write_all(pair.private_key_pem().as_bytes())?;
            pair.public_key_pem()
        }
        (None, None) => {
            anyhow::bail!("give the App's key with --app-key PEM_FILE, or --write-app-key PATH to generate one")
        }
    };
    // Kept alive until fakehub stops, so a default root outlives the server and is then removed.
    let temp = tempfile::Builder::new().prefix("fakehub-").tempdir()?;
    let root = args.root.unwrap_or_else(|| temp.path().to_owned());
    let mut config = Config::new(args.app_id, public_pem, &root);
    config.token_lifetime = Duration::from_secs(args.token_lifetime);
    if !args.no_demo_users {
        config = config.with_demo_users();
    }
    config = config.with_app_slug(&args.app_slug);
    if let Some(id) = &args.client_id {
        config.client_id.clone_from(id);
    }
    if let Some(secret) = &args.client_secret {
        config.client_secret.clone_from(secret);
    }
    config.callback_urls.clone_from(&args.callback_urls);
    config.setup_url.clone_from(&args.setup_url);
    config.webhook_url.clone_from(&args.webhook_url);
    config.webhook_secret.clone_from(&args.webhook_secret);
    config.html_urls_on_fakehub = args.html_urls_on_fakehub;
    let mut by_owner: Vec<(String, Vec<String>)> = Vec::new();
    for repo in &args.repos {
        let (owner, name) = repo
            .split_once('/')
            .with_context(|| format!("--repo {repo:?} is not OWNER/NAME"))?;
        match by_owner.iter_mut().find(|(o, _)| o == owner) {
            Some((_, names)) => names.push(name.to_owned()),
            None => by_owner.push((owner.to_owned(), vec![name.to_owned()])),
        }
    }
    for (offset, (owner, names)) in (0u64..).zip(&by_owner) {
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        config = config.with_installation(InstallationConfig::new(
            args.installation_id + offset,
            owner,
            &names,
            &[
                ("contents", "write"),
                ("pull_requests", "write"),
                ("metadata", "read"),
                ("issues", "write"),
            ],
        ));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let hub = FakeHub::new(config)?;
        for (owner, names) in &by_owner {
            for name in names {
                hub.create_repo(owner, name)?;
            }
        }
        let listener = mint_service::daemon::listen_tcp(args.listen)?;
        let url = format!("http://{}", listener.local_addr()?);
        tracing::info!(
            client_id = %hub.client_id(),
            install = %format!("{url}/apps/{}/installations/new", args.app_slug),
            demo_users = !args.no_demo_users,
            "fakehub is serving"
        );
        println!("{url}");
        std::io::stdout().flush()?;
        hub.serve(listener, shutdown()).await
    })
}

fn public_key_of(pem: &str) -> anyhow::Result<String> {
    use rsa::pkcs1::DecodeRsaPrivateKey;
    use rsa::pkcs8::{DecodePrivateKey, EncodePublicKey, LineEnding};
    if pem.contains("PUBLIC KEY") {
        return Ok(pem.to_owned());
    }
    let private = rsa::RsaPrivateKey::from_pkcs1_pem(pem)
        .or_else(|_| rsa::RsaPrivateKey::from_pkcs8_pem(pem))
        .context("the App key is neither a public key nor an RSA private key PEM")?;
    Ok(private.to_public_key().to_public_key_pem(LineEnding::LF)?)
}

async fn shutdown() {
    use tokio::signal::unix::{SignalKind, signal};
    if let Ok(mut term) = signal(SignalKind::terminate()) {
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    } else {
        let _ = tokio::signal::ctrl_c().await;
    }
}
