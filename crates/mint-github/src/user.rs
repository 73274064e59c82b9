//! The user side of a GitHub App: the OAuth web flow's code exchange, and what a signed-in user can see —
//! who they are, which installations of the App they can reach, and which repositories there they can push
//! to. The user token lives only as long as the request that got it.

use std::fmt;

use http::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::app::{generic_error, message_of};
use crate::{GitHubClient, GithubError, Installation, Operation};

/// Pages are fetched `PER_PAGE` at a time until a short page; this many pages at most.
const PER_PAGE: usize = 100;
const MAX_PAGES: usize = 50;

/// A user access token from the OAuth web flow (`ghu_…`). Redacted in `Debug`, wiped on drop, never stored.
pub struct UserToken(SecretString);

impl UserToken {
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for UserToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("UserToken(<redacted>)")
    }
}

/// The App's OAuth identity (`client_id` and its secret), for the code exchange.
pub struct OAuthApp {
    pub client_id: String,
    pub client_secret: SecretString,
}

impl fmt::Debug for OAuthApp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthApp")
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .finish()
    }
}

/// `GET /user`, the parts read.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct User {
    pub login: String,
    pub id: u64,
}

/// A repository as `GET /user/installations/{id}/repositories` lists it: with the user's permissions.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct UserRepository {
    pub id: u64,
    pub full_name: String,
    #[serde(default)]
    pub permissions: RepositoryPermissions,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub struct RepositoryPermissions {
    #[serde(default)]
    pub push: bool,
    #[serde(default)]
    pub admin: bool,
}

/// An installation as `GET /user/installations` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct UserInstallation {
    #[serde(flatten)]
    pub installation: Installation,
    pub app_id: u64,
}

#[derive(Deserialize)]
struct TokenAnswer {
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    error_description: Option<String>,
}

#[derive(Deserialize)]
struct InstallationsPage {
    installations: Vec<UserInstallation>,
}

#[derive(Deserialize)]
struct RepositoriesPage {
    repositories: Vec<UserRepository>,
}

impl GitHubClient {
    /// `POST {github}/login/oauth/access_token`: trade the callback's `code` for a user token. Call it on a
    /// client for the web host (`https://github.com`), not the API.
    pub async fn exchange_code(
        &self,
        app: &OAuthApp,
        code: &str,
        redirect_uri: &str,
        code_verifier: Option<&str>,
    ) -> Result<UserToken, GithubError> {
        let op = Operation::OAuthExchange;
        let mut fields = vec![
            ("client_id", app.client_id.as_str()),
            ("client_secret", app.client_secret.expose_secret()),
            ("code", code),
            ("redirect_uri", redirect_uri),
        ];
        // PKCE (RFC 7636): the verifier whose S256 challenge the authorize request carried.
        if let Some(verifier) = code_verifier {
            fields.push(("code_verifier", verifier));
        }
        let form = form_encode(&fields);
        let response = self
            .send_with(
                &op,
                Method::POST,
                "/login/oauth/access_token",
                None,
                Some(("application/x-www-form-urlencoded", form.into_bytes())),
                "application/json",
            )
            .await?;
        if response.status != StatusCode::OK {
            return Err(generic_error(op, &response));
        }
        let answer: TokenAnswer = serde_json::from_slice(&response.body).map_err(|e| GithubError::BadResponse {
            op: op.clone(),
            reason: format!("token answer: {e}"),
        })?;
        match (answer.access_token, answer.error) {
            (Some(token), None) if !token.is_empty() => Ok(UserToken(SecretString::from(token))),
            (_, error) => Err(GithubError::Status {
                op,
                status: 200,
                message: format!(
                    "{}: {}",
                    error.as_deref().unwrap_or("no access_token"),
                    answer
                        .error_description
                        .as_deref()
                        .unwrap_or("the code is wrong, used, or expired")
                ),
            }),
        }
    }

    /// `GET /user`.
    pub async fn user(&self, token: &UserToken) -> Result<User, GithubError> {
        let op = Operation::GetUser;
        let response = self
            .send(
                &op,
                Method::GET,
                "/user",
                crate::secret::bearer(token.expose()).expose_secret(),
                None,
            )
            .await?;
        decode(op, &response)
    }

    /// `GET /user/installations`, every page: the installations (of any App) the user can reach.
    pub async fn user_installations(&self, token: &UserToken) -> Result<Vec<UserInstallation>, GithubError> {
        let mut all = Vec::new();
        for page in 1..=MAX_PAGES {
            let op = Operation::ListUserInstallations;
            let path = format!("/user/installations?per_page={PER_PAGE}&page={page}");
            let response = self
                .send(
                    &op,
                    Method::GET,
                    &path,
                    crate::secret::bearer(token.expose()).expose_secret(),
                    None,
                )
                .await?;
            let got: InstallationsPage = decode(op, &response)?;
            let short = got.installations.len() < PER_PAGE;
            all.extend(got.installations);
            if short {
                break;
            }
        }
        Ok(all)
    }

    /// `GET /user/installations/{id}/repositories`, every page: the installation's repositories the user can
    /// reach, with the user's permissions on each.
    pub async fn user_installation_repositories(
        &self,
        token: &UserToken,
        installation_id: u64,
    ) -> Result<Vec<UserRepository>, GithubError> {
        let mut all = Vec::new();
        for page in 1..=MAX_PAGES {
            let op = Operation::ListUserRepositories { installation_id };
            let path = format!("/user/installations/{installation_id}/repositories?per_page={PER_PAGE}&page={page}");
            let response = self
                .send(
                    &op,
                    Method::GET,
                    &path,
                    crate::secret::bearer(token.expose()).expose_secret(),
                    None,
                )
                .await?;
            if response.status == StatusCode::NOT_FOUND {
                return Err(GithubError::InstallationNotFound { installation_id });
            }
            let got: RepositoriesPage = decode(op, &response)?;
            let short = got.repositories.len() < PER_PAGE;
            all.extend(got.repositories);
            if short {
                break;
            }
        }
        Ok(all)
    }
}

fn decode<T: serde::de::DeserializeOwned>(
    op: Operation,
    response: &crate::client::RawResponse,
) -> Result<T, GithubError> {
    match response.status {
        StatusCode::OK => serde_json::from_slice(&response.body).map_err(|e| GithubError::BadResponse {
            op,
            reason: e.to_string(),
        }),
        StatusCode::UNAUTHORIZED => Err(GithubError::TokenRejected {
            op,
            message: message_of(response),
        }),
        _ => Err(generic_error(op, response)),
    }
}

/// `application/x-www-form-urlencoded`.
pub fn form_encode(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Percent-encode everything but RFC 3986's unreserved characters.
pub fn percent_encode(s: &str) -> String {
    use fmt::Write as _;
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_encode_reserved_characters() {
        assert_eq!(
            form_encode(&[("redirect_uri", "http://x/a?b=c&d"), ("code", "a b")]),
            "redirect_uri=http%3A%2F%2Fx%2Fa%3Fb%3Dc%26d&code=a%20b"
        );
    }

    #[test]
    fn user_tokens_are_redacted() {
        let token = UserToken(SecretString::from("ghu_secret".to_owned()));
        assert_eq!(format!("{token:?}"), "UserToken(<redacted>)");
        let app = OAuthApp {
            client_id: "Iv1.abc".into(),
            client_secret: SecretString::from("shh".to_owned()),
        };
        assert!(!format!("{app:?}").contains("shh"));
    }
}
