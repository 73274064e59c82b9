//! REST shapes, as in GitHub's `OpenAPI` description (`installation-token`, `app-permissions`, `repository`).

use std::collections::BTreeMap;
use std::fmt;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::InstallationToken;

/// A permission level. Ordered: `read` < `write` < `admin`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Read,
    Write,
    Admin,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Read => "read",
            Level::Write => "write",
            Level::Admin => "admin",
        }
    }
}

/// Permissions by name (`contents`, `pull_requests`, `metadata`, …), as GitHub's `app-permissions` object.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Permissions(pub BTreeMap<String, Level>);

impl Permissions {
    /// What a sandbox needs to push a branch and open a pull request, and nothing more.
    pub fn least() -> Self {
        Self(BTreeMap::from([
            ("contents".to_owned(), Level::Write),
            ("metadata".to_owned(), Level::Read),
            ("pull_requests".to_owned(), Level::Write),
        ]))
    }

    /// Parse `contents:write,pull_requests:write,metadata:read`.
    pub fn parse_list(s: &str) -> Result<Self, String> {
        let mut map = BTreeMap::new();
        for item in s.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (name, level) = item
                .split_once(['=', ':'])
                .ok_or_else(|| format!("{item:?} is not NAME:LEVEL (e.g. contents:write)"))?;
            let level = match level {
                "read" => Level::Read,
                "write" => Level::Write,
                "admin" => Level::Admin,
                other => return Err(format!("{other:?} is not a permission level: use read, write or admin")),
            };
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
                return Err(format!(
                    "{name:?} is not a GitHub permission name (e.g. contents, pull_requests)"
                ));
            }
            map.insert(name.to_owned(), level);
        }
        if map.is_empty() {
            return Err("no permissions given".into());
        }
        Ok(Self(map))
    }

    /// Permissions in `self` that `limit` does not grant at the same or a higher level.
    pub fn excess_over(&self, limit: &Permissions) -> Vec<String> {
        self.0
            .iter()
            .filter(|(name, level)| limit.0.get(*name).is_none_or(|max| *level > max))
            .map(|(name, level)| format!("{name}:{}", level.as_str()))
            .collect()
    }
}

impl fmt::Display for Permissions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (name, level)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{name}:{}", level.as_str())?;
        }
        Ok(())
    }
}

/// Body of `POST /app/installations/{id}/access_tokens`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenRequest {
    /// Repository names (without owner) the token is limited to.
    pub repositories: Vec<String>,
    pub permissions: Permissions,
}

/// The subset of GitHub's `repository` object mint reads.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct Repository {
    pub id: u64,
    pub name: String,
    pub full_name: String,
    #[serde(default)]
    pub default_branch: Option<String>,
    #[serde(default)]
    pub private: bool,
    #[serde(default)]
    pub html_url: Option<String>,
}

/// Body of `POST /repos/{owner}/{repo}/pulls`.
#[derive(Debug, Clone, Serialize)]
pub struct NewPull<'a> {
    pub title: &'a str,
    /// The branch in the same repository.
    pub head: &'a str,
    pub base: &'a str,
    pub body: &'a str,
    pub draft: bool,
}

/// The subset of GitHub's `pull-request` object mint reads.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct PullRequest {
    pub number: u64,
    pub html_url: String,
    pub state: String,
    pub title: String,
    #[serde(default)]
    pub draft: bool,
    pub head: PullRef,
    pub base: PullRef,
}

/// One side of a pull request.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct PullRef {
    #[serde(rename = "ref")]
    pub name: String,
    pub sha: String,
}

/// The 201 answer to a token request, decoded and checked for shape.
pub struct MintedToken {
    pub token: InstallationToken,
    pub expires_at: SystemTime,
    /// GitHub's `Date` on the answer: the token's lifetime is `expires_at - server_date`, which holds even
    /// when this machine's clock is off.
    pub server_date: Option<SystemTime>,
    pub permissions: Permissions,
    pub repository_selection: Option<String>,
    pub repositories: Option<Vec<Repository>>,
}

impl MintedToken {
    /// How long the token lives from the moment GitHub answered, by GitHub's own clock when it said.
    pub fn lifetime(&self) -> std::time::Duration {
        let issued = self.server_date.unwrap_or_else(SystemTime::now);
        self.expires_at.duration_since(issued).unwrap_or_default()
    }
}

impl fmt::Debug for MintedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MintedToken")
            .field("token", &self.token)
            .field("expires_at", &humantime::format_rfc3339_seconds(self.expires_at))
            .field("server_date", &self.server_date.map(humantime::format_rfc3339_seconds))
            .field("permissions", &self.permissions)
            .field("repository_selection", &self.repository_selection)
            .field(
                "repositories",
                &self
                    .repositories
                    .as_ref()
                    .map(|r| r.iter().map(|r| r.full_name.as_str()).collect::<Vec<_>>()),
            )
            .finish()
    }
}

/// The wire form; turned into [`MintedToken`] at once so the token string lives in a secret type.
#[derive(Deserialize)]
pub(crate) struct TokenResponse {
    pub(crate) token: String,
    pub(crate) expires_at: String,
    #[serde(default)]
    pub(crate) permissions: Option<Permissions>,
    #[serde(default)]
    pub(crate) repository_selection: Option<String>,
    #[serde(default)]
    pub(crate) repositories: Option<Vec<Repository>>,
}

/// GitHub's `basic-error` / `validation-error` bodies: enough to quote what GitHub said.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ErrorBody {
    #[serde(default)]
    pub(crate) message: Option<String>,
    #[serde(default)]
    pub(crate) errors: Option<serde_json::Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_order_and_excess() {
        assert!(Level::Read < Level::Write && Level::Write < Level::Admin);
        let wanted = Permissions::least();
        assert_eq!(wanted.to_string(), "contents:write,metadata:read,pull_requests:write");
        assert!(wanted.excess_over(&wanted).is_empty());
        let wider = Permissions::parse_list("contents:admin,metadata:read,issues:write").expect("parses");
        assert_eq!(wider.excess_over(&wanted), vec!["contents:admin", "issues:write"]);
        let narrower = Permissions::parse_list("contents:read").expect("parses");
        assert!(narrower.excess_over(&wanted).is_empty());
    }

    #[test]
    fn permission_lists_are_validated() {
        assert_eq!(
            Permissions::parse_list("contents:write, pull_requests:write,metadata:read").expect("parses"),
            Permissions::least()
        );
        assert!(Permissions::parse_list("contents").is_err());
        assert!(Permissions::parse_list("contents:all").is_err());
        assert!(Permissions::parse_list("").is_err());
        assert!(Permissions::parse_list("Contents:read").is_err());
    }

    #[test]
    fn decodes_githubs_documented_example() {
        let doc: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/create-installation-access-token.json"
            ))
            .expect("the fixture from GitHub's OpenAPI description is in the repository"),
        )
        .expect("json");
        let example = find_key(&doc, "value")
            .into_iter()
            .find(|v| v.get("token").is_some() && v.get("expires_at").is_some())
            .expect("the 201 example body");
        let parsed: TokenResponse = serde_json::from_value(example.clone()).expect("decodes");
        assert!(humantime::parse_rfc3339(&parsed.expires_at).is_ok());
        assert!(parsed.permissions.is_some());
        assert!(parsed.repositories.is_some_and(|r| !r.is_empty()));
    }

    fn find_key<'a>(v: &'a serde_json::Value, key: &str) -> Vec<&'a serde_json::Value> {
        let mut found = Vec::new();
        match v {
            serde_json::Value::Object(map) => {
                for (k, child) in map {
                    if k == key {
                        found.push(child);
                    }
                    found.extend(find_key(child, key));
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|c| found.extend(find_key(c, key))),
            _ => {}
        }
        found
    }
}
