//! What `mint clone` and `mint publish` ask mintd: where the repository is, and a token for it.

use std::time::Duration;

use anyhow::{Context, bail};
use mint_api::{Client, Status, route};
use mint_git::Credentials;
use secrecy::{ExposeSecret, SecretString};

/// mintd's view of the one repository, and how to reach it.
pub(crate) struct Remote {
    pub(crate) client: Client,
    pub(crate) status: Status,
}

impl Remote {
    pub(crate) fn ask(socket: &std::path::Path) -> anyhow::Result<Self> {
        let client = Client::new(socket);
        let status = client
            .clone()
            .with_timeout(Duration::from_secs(10))
            .status()
            .context("mint needs mintd for the repository and its token")?;
        Ok(Self { client, status })
    }

    /// `NAME` of `OWNER/NAME`.
    pub(crate) fn name(&self) -> &str {
        self.status
            .repository
            .rsplit_once('/')
            .map_or(self.status.repository.as_str(), |(_, name)| name)
    }

    /// The URL git talks to. In mediated mode that is mintd's proxy, which adds the token itself; otherwise
    /// GitHub (as configured on mintd: never the work tree's `remote.origin.url`, which the agent can edit).
    pub(crate) fn git_url(&self) -> String {
        match &self.status.git_proxy {
            Some(proxy) => format!("http://{proxy}/{}.git", self.status.repository),
            None => format!(
                "{}/{}.git",
                self.status.github_url.trim_end_matches('/'),
                self.status.repository
            ),
        }
    }

    /// Where tokens come from: mintd, in helper mode; nobody, in mediated mode.
    pub(crate) fn credentials(&self) -> anyhow::Result<Option<MintdCredentials>> {
        if self.status.git_proxy.is_some() {
            return Ok(None);
        }
        let (scheme, rest) = self
            .status
            .github_url
            .split_once("://")
            .with_context(|| format!("mintd's GitHub URL {:?} has no scheme", self.status.github_url))?;
        let host = rest.split('/').next().unwrap_or(rest);
        Ok(Some(MintdCredentials {
            client: self.client.clone(),
            request: format!("protocol={scheme}\nhost={host}\npath={}.git\n", self.status.repository),
            last: None,
        }))
    }
}

/// Asks mintd for the token over the socket, as the credential helper does; after a refusal, erases the
/// refused token at mintd first so the next one is fresh.
pub(crate) struct MintdCredentials {
    client: Client,
    request: String,
    last: Option<SecretString>,
}

impl MintdCredentials {
    fn call(&self, path: &str, body: &str) -> Result<mint_api::Response, String> {
        let response = self
            .client
            .request("POST", path, body.as_bytes())
            .map_err(|e| e.to_string())?;
        if response.status != 200 {
            return Err(format!(
                "mintd refused the token request ({}): {}",
                response.status,
                response.reason.as_deref().unwrap_or("no reason given")
            ));
        }
        Ok(response)
    }
}

impl mint_git::CredentialSource for MintdCredentials {
    fn get(&mut self, refused_previous: bool) -> Result<Credentials, String> {
        if refused_previous && let Some(last) = self.last.take() {
            // The request carries the token: kept secret (redacted `Debug`, wiped on drop), not a plain String.
            let erase = SecretString::from(format!(
                "{}username=x-access-token\npassword={}\n",
                self.request,
                last.expose_secret()
            ));
            // Best effort: mintd rate-limits erases, and a failed erase only means one more refusal.
            let _ = self.call(route::CREDENTIAL_ERASE, erase.expose_secret());
        }
        let response = self.call(route::CREDENTIAL_GET, &self.request)?;
        let text = String::from_utf8(response.body).map_err(|_| "mintd's answer is not UTF-8".to_owned())?;
        let text = zeroize::Zeroizing::new(text);
        let mut username = None;
        let mut password = None;
        for line in text.lines() {
            if let Some(v) = line.strip_prefix("username=") {
                username = Some(v.to_owned());
            } else if let Some(v) = line.strip_prefix("password=") {
                password = Some(SecretString::from(v.to_owned()));
            }
        }
        let (Some(username), Some(password)) = (username, password) else {
            return Err("mintd's answer holds no credentials".to_owned());
        };
        self.last = Some(password.clone());
        Ok(Credentials { username, password })
    }
}

/// `POST /v1/pulls`: mintd opens the pull request, or finds the open one for the branch.
pub(crate) fn open_pull(
    client: &Client,
    input: &mint_api::PullRequestInput,
) -> anyhow::Result<mint_api::PullRequestOutput> {
    let body = serde_json::to_vec(input)?;
    let response = client.request("POST", route::PULLS, &body)?;
    if response.status != 200 && response.status != 201 {
        bail!(
            "mintd could not open the pull request ({}): {}",
            response.status,
            response.reason.as_deref().unwrap_or("no reason given")
        );
    }
    serde_json::from_slice(&response.body).context("mintd's pull request answer")
}
