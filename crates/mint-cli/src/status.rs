//! `mint status`: mintd's state in words (or JSON), never a secret.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use mint_api::{Client, Status};

pub(crate) fn run(socket: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let status = Client::new(socket)
        .with_timeout(std::time::Duration::from_secs(5))
        .status()?;
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &status)?;
        writeln!(out)?;
    } else {
        out.write_all(render(socket, &status).as_bytes())?;
    }
    Ok(ExitCode::SUCCESS)
}

fn render(socket: &Path, s: &Status) -> String {
    let token = match &s.token {
        Some(t) => format!(
            "expires {} (in {}), minted {}",
            t.expires_at,
            human(t.expires_in_seconds),
            t.minted_at
        ),
        None => "none yet (minted on the first git request)".to_owned(),
    };
    // Broker mode: the broker holds the App, and the repository is whatever its latest token is for.
    let (repo, installation, broker) = match &s.broker {
        None => (
            s.repository.clone(),
            format!("{} (App {})", s.installation_id, s.app_id),
            String::new(),
        ),
        Some(url) => (
            if s.repository.is_empty() {
                "(not yet known: the broker names it with the first token)".to_owned()
            } else {
                s.repository.clone()
            },
            if s.installation_id == 0 {
                "(not yet known; the broker holds the App)".to_owned()
            } else {
                format!("{} (the broker holds the App)", s.installation_id)
            },
            format!("broker        {url}\n"),
        ),
    };
    format!(
        "mintd {version} on {socket}, up {uptime}\n\
         repository    {repo}\n\
         installation  {installation}\n\
         {broker}\
         github        {github} (API {api})\n\
         permissions   {perms}\n\
         token         {token}\n\
         mints         {mints}\n\
         last error    {error}\n\
         mode          {mode}\n\
         branches      {prefix}* (mint publish and pull requests)\n",
        prefix = s.branch_prefix,
        version = s.version,
        socket = socket.display(),
        uptime = human(s.uptime_seconds),
        github = s.github_url,
        api = s.api_url,
        perms = s.permissions,
        mints = s.mints,
        error = s.last_error.as_deref().unwrap_or("none"),
        mode = match &s.git_proxy {
            Some(addr) => format!("mediated: git proxy on http://{addr}/ (no token in the sandbox)"),
            None => "helper: git-credential-mint hands git the token".to_owned(),
        },
    )
}

fn human(seconds: u64) -> String {
    match seconds {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m{:02}s", s / 60, s % 60),
        s => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_field_in_words() {
        let status = Status {
            version: "0.1.0".into(),
            repository: "octo-org/hello-world".into(),
            installation_id: 42,
            app_id: "1".into(),
            github_url: "https://github.com".into(),
            api_url: "https://api.github.com".into(),
            permissions: "contents:write,metadata:read,pull_requests:write".into(),
            token: Some(mint_api::TokenStatus {
                expires_at: "2026-11-25T03:00:00Z".into(),
                expires_in_seconds: 3500,
                minted_at: "2026-11-25T02:00:00Z".into(),
            }),
            mints: 1,
            last_error: None,
            uptime_seconds: 75,
            git_proxy: None,
            branch_prefix: "adagent/".into(),
            broker: None,
        };
        assert_eq!(
            render(Path::new("/run/mint/mint.sock"), &status),
            "mintd 0.1.0 on /run/mint/mint.sock, up 1m15s\n\
             repository    octo-org/hello-world\n\
             installation  42 (App 1)\n\
             github        https://github.com (API https://api.github.com)\n\
             permissions   contents:write,metadata:read,pull_requests:write\n\
             token         expires 2026-11-25T03:00:00Z (in 58m20s), minted 2026-11-25T02:00:00Z\n\
             mints         1\n\
             last error    none\n\
             mode          helper: git-credential-mint hands git the token\n\
             branches      adagent/* (mint publish and pull requests)\n"
        );
    }

    #[test]
    fn broker_mode_names_the_broker_and_what_is_not_known_yet() {
        let mut status = Status {
            version: "0.1.0".into(),
            repository: String::new(),
            installation_id: 0,
            app_id: String::new(),
            github_url: "https://github.com".into(),
            api_url: "https://api.github.com".into(),
            permissions: "contents:write,metadata:read,pull_requests:write".into(),
            token: None,
            mints: 0,
            last_error: None,
            uptime_seconds: 5,
            git_proxy: None,
            branch_prefix: "adagent/".into(),
            broker: Some("https://mint.example.com".into()),
        };
        let before = render(Path::new("/run/mint/mint.sock"), &status);
        assert!(
            before.contains(
                "repository    (not yet known: the broker names it with the first token)\n\
                 installation  (not yet known; the broker holds the App)\n\
                 broker        https://mint.example.com\n\
                 github        https://github.com (API https://api.github.com)\n"
            ),
            "{before}"
        );
        status.repository = "octo-org/hello-world".into();
        status.installation_id = 42;
        let after = render(Path::new("/run/mint/mint.sock"), &status);
        assert!(
            after.contains(
                "repository    octo-org/hello-world\n\
                 installation  42 (the broker holds the App)\n\
                 broker        https://mint.example.com\n"
            ),
            "{after}"
        );
    }
}
