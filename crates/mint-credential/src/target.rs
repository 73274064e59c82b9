//! The one GitHub host and repository a daemon serves, and the checks that hold requests to them.

use std::fmt;
use std::str::FromStr;

use bstr::ByteSlice;
use gix_credentials::protocol::{Context, ContextOptions};

use crate::Request;

/// A repository as `OWNER/NAME`, validated to GitHub's naming rules.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RepoName {
    owner: String,
    name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RepoNameError {
    #[error("repository {0:?} is not OWNER/NAME: expected exactly one '/', e.g. octo-org/hello-world")]
    Shape(String),
    #[error(
        "repository owner {0:?} is not a GitHub account name: 1 to 39 letters, digits, '-' or '_', not starting with '-'"
    )]
    Owner(String),
    #[error(
        "repository name {0:?} is not a GitHub repository name: 1 to 100 letters, digits, '.', '-' or '_', not '.' or '..', without a .git suffix"
    )]
    Name(String),
}

impl RepoName {
    pub fn owner(&self) -> &str {
        &self.owner
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether a credential `path` (`OWNER/NAME` or `OWNER/NAME.git`) names this repository.
    /// GitHub treats owner and name case-insensitively; nothing else is accepted: no leading or trailing
    /// slash, no extra segment, no `..`, no prefix match.
    pub fn matches_path(&self, path: &str) -> bool {
        let path = path.strip_suffix(".git").unwrap_or(path);
        let Some((owner, name)) = path.split_once('/') else {
            return false;
        };
        owner.eq_ignore_ascii_case(&self.owner) && name.eq_ignore_ascii_case(&self.name)
    }
}

impl FromStr for RepoName {
    type Err = RepoNameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let Some((owner, name)) = s.split_once('/') else {
            return Err(RepoNameError::Shape(s.into()));
        };
        if name.contains('/') {
            return Err(RepoNameError::Shape(s.into()));
        }
        let owner_ok = (1..=39).contains(&owner.len())
            && !owner.starts_with('-')
            && owner
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !owner_ok {
            return Err(RepoNameError::Owner(owner.into()));
        }
        let name_ok = (1..=100).contains(&name.len())
            && name != "."
            && name != ".."
            && !name.to_ascii_lowercase().ends_with(".git")
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
        if !name_ok {
            return Err(RepoNameError::Name(name.into()));
        }
        Ok(Self {
            owner: owner.into(),
            name: name.into(),
        })
    }
}

impl fmt::Display for RepoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.owner, self.name)
    }
}

impl fmt::Debug for RepoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("GitHub URL {0:?} is not a URL: expected e.g. https://github.com or https://ghe.example.com")]
    NotAUrl(String),
    #[error("GitHub URL {0:?} must use https (plain http is allowed only to a loopback address, for tests)")]
    Scheme(String),
    #[error("GitHub URL {0:?} must be the server's root, without a path, query, or user name")]
    NotRoot(String),
}

/// The configured GitHub as git names it: scheme and host (with a non-default port). Known from the start
/// even when the repository is not (a daemon that learns it from a broker's answer).
#[derive(Clone, PartialEq, Eq)]
pub struct Server {
    scheme: &'static str,
    /// Lower-cased, with the port only when it is not the scheme's default, as git writes `host=`.
    host: String,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme, self.host)
    }
}

/// Where tokens may go: the scheme and host (with port) of the configured GitHub, and the repository.
#[derive(Clone, PartialEq, Eq)]
pub struct Target {
    server: Server,
    repo: RepoName,
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}/{}", self.server, self.repo)
    }
}

/// Proof that a `get` passed the policy for one target. Only [`Target::check_get`] creates one, so code
/// that serves a token can demand it, and hold the token's own target to [`Approved::target`]: an
/// unchecked path does not compile, and a token for another repository is not served.
#[derive(Debug)]
pub struct Approved {
    target: Target,
}

impl Approved {
    /// The target the request was checked against.
    pub fn target(&self) -> &Target {
        &self.target
    }
}

/// Proof that an `erase` names this target and carries a password to compare with the served token.
pub struct EraseApproved {
    password: String,
}

impl EraseApproved {
    /// The password git reported as failing. Compare it in constant time; never log it.
    pub fn password(&self) -> &str {
        &self.password
    }
}

impl fmt::Debug for EraseApproved {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EraseApproved { password: <redacted> }")
    }
}

/// Why a request gets no credential. Git is then free to try its next helper.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Decline {
    #[error("no protocol in the request")]
    MissingProtocol,
    #[error("no host in the request")]
    MissingHost,
    #[error("protocol {got:?} is not the configured GitHub's {want:?}")]
    OtherProtocol { got: String, want: &'static str },
    #[error("host {got:?} is not the configured GitHub host {want:?}")]
    OtherHost { got: String, want: String },
    #[error("path {got:?} is not the configured repository {want}")]
    OtherRepository { got: String, want: RepoName },
    #[error("the request's url= does not parse as a URL")]
    BadUrl,
    #[error("the request's url= disagrees with its {field}")]
    UrlMismatch { field: &'static str },
    #[error("an erase without a password names no credential")]
    NoPassword,
}

impl Server {
    /// `github_url` is the web root git talks to (`https://github.com`, `https://ghe.example.com`).
    pub fn new(github_url: &str) -> Result<Self, TargetError> {
        let url = url::Url::parse(github_url)
            .ok()
            .filter(url::Url::has_host)
            .ok_or_else(|| TargetError::NotAUrl(github_url.into()))?;
        if !url.username().is_empty()
            || url.password().is_some()
            || !matches!(url.path(), "" | "/")
            || url.query().is_some()
            || url.fragment().is_some()
        {
            return Err(TargetError::NotRoot(github_url.into()));
        }
        mint_service::require_https_or_loopback(&url, "GitHub URL")
            .map_err(|_| TargetError::Scheme(github_url.into()))?;
        let scheme = if url.scheme() == "https" { "https" } else { "http" };
        let authority = match url.port() {
            Some(port) => format!("{}:{port}", url.host_str().unwrap_or_default()),
            None => url.host_str().unwrap_or_default().to_owned(),
        };
        let host = normalize_host(scheme, &authority);
        Ok(Self { scheme, host })
    }

    pub fn scheme(&self) -> &'static str {
        self.scheme
    }

    /// The host as git names it in credential requests, with a non-default port.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// This server's repository `repo`.
    pub fn target(&self, repo: RepoName) -> Target {
        Target {
            server: self.clone(),
            repo,
        }
    }

    /// Whether a request is for this server at all (protocol and host; any path). For deciding, before the
    /// repository is known, whether learning it is worth a round trip; never a reason to serve a token.
    pub fn admits(&self, req: &Request) -> Result<(), Decline> {
        self.check_server(&effective_parts(req)?)
    }

    /// Protocol and host of `parts` against this server; the repository is the caller's to check.
    fn check_server(&self, parts: &Parts) -> Result<(), Decline> {
        let protocol = parts.protocol.clone().ok_or(Decline::MissingProtocol)?;
        if !protocol.eq_ignore_ascii_case(self.scheme) {
            return Err(Decline::OtherProtocol {
                got: protocol,
                want: self.scheme,
            });
        }
        let host = parts.host.clone().ok_or(Decline::MissingHost)?;
        if normalize_host(self.scheme, &host) != self.host {
            return Err(Decline::OtherHost {
                got: host,
                want: self.host.clone(),
            });
        }
        Ok(())
    }
}

impl Target {
    /// `github_url` is the web root git talks to (`https://github.com`, `https://ghe.example.com`).
    pub fn new(github_url: &str, repo: RepoName) -> Result<Self, TargetError> {
        Ok(Server::new(github_url)?.target(repo))
    }

    pub fn scheme(&self) -> &'static str {
        self.server.scheme
    }

    /// The host as git names it in credential requests, with a non-default port.
    pub fn host(&self) -> &str {
        &self.server.host
    }

    pub fn server(&self) -> &Server {
        &self.server
    }

    pub fn repo(&self) -> &RepoName {
        &self.repo
    }

    /// The HTTPS URL to clone this target's repository from.
    pub fn clone_url(&self) -> String {
        format!("{}://{}/{}.git", self.server.scheme, self.server.host, self.repo)
    }

    /// Decide whether a `get` may be answered with this target's token.
    pub fn check_get(&self, req: &Request) -> Result<Approved, Decline> {
        self.check_destination(req)?;
        Ok(Approved { target: self.clone() })
    }

    /// Decide whether an `erase` concerns this target (the caller then compares the password).
    pub fn check_erase(&self, req: &Request) -> Result<EraseApproved, Decline> {
        self.check_destination(req)?;
        let password = req.password().ok_or(Decline::NoPassword)?;
        Ok(EraseApproved {
            password: password.to_owned(),
        })
    }

    fn check_destination(&self, req: &Request) -> Result<(), Decline> {
        let parts = effective_parts(req)?;
        self.server.check_server(&parts)?;
        if let Some(path) = parts.path
            && !self.repo.matches_path(&path)
        {
            return Err(Decline::OtherRepository {
                got: path,
                want: self.repo.clone(),
            });
        }
        Ok(())
    }
}

/// Where a request points.
struct Parts {
    protocol: Option<String>,
    host: Option<String>,
    path: Option<String>,
}

/// Protocol, host and path of a request, with `url=` parsed and held to agree with explicit fields.
fn effective_parts(req: &Request) -> Result<Parts, Decline> {
    let ctx = &req.ctx;
    let path_of = |p: &bstr::BString| p.to_str().map(str::to_owned).map_err(|_| Decline::BadUrl);
    let explicit_path = ctx.path.as_ref().map(path_of).transpose()?;
    let Some(url) = &ctx.url else {
        return Ok(Parts {
            protocol: ctx.protocol.clone(),
            host: ctx.host.clone(),
            path: explicit_path,
        });
    };
    let mut from_url = Context::from_url(url.clone(), ContextOptions::default());
    from_url.destructure_url_in_place(true).map_err(|_| Decline::BadUrl)?;
    let url_path = from_url.path.as_ref().map(path_of).transpose()?;
    let agree = |field: &'static str, explicit: Option<&str>, parsed: Option<&str>| match (explicit, parsed) {
        (Some(a), Some(b)) if !a.eq_ignore_ascii_case(b) => Err(Decline::UrlMismatch { field }),
        _ => Ok(()),
    };
    agree("protocol", ctx.protocol.as_deref(), from_url.protocol.as_deref())?;
    agree("host", ctx.host.as_deref(), from_url.host.as_deref())?;
    agree("path", explicit_path.as_deref(), url_path.as_deref())?;
    Ok(Parts {
        protocol: from_url.protocol.or_else(|| ctx.protocol.clone()),
        host: from_url.host.or_else(|| ctx.host.clone()),
        path: url_path.or(explicit_path),
    })
}

fn normalize_host(scheme: &str, host: &str) -> String {
    let host = host.to_ascii_lowercase();
    let default_port = if scheme == "https" { ":443" } else { ":80" };
    match host.strip_suffix(default_port) {
        Some(bare) => bare.to_owned(),
        None => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Target {
        Target::new("https://github.com", "octo-org/hello-world".parse().expect("valid")).expect("valid")
    }

    fn get(t: &Target, input: &str) -> Result<Approved, Decline> {
        t.check_get(&Request::decode(input.as_bytes()).expect("decodes"))
    }

    #[test]
    fn serves_the_configured_repository() {
        let t = target();
        for input in [
            "protocol=https\nhost=github.com\npath=octo-org/hello-world.git\n",
            "protocol=https\nhost=github.com\npath=octo-org/hello-world\n",
            "protocol=https\nhost=GitHub.com:443\npath=Octo-Org/Hello-World.git\n",
            "protocol=https\nhost=github.com\n",
            "url=https://github.com/octo-org/hello-world.git\n",
            "protocol=https\nhost=github.com\nurl=https://github.com/octo-org/hello-world\n",
        ] {
            assert!(get(&t, input).is_ok(), "{input}");
        }
    }

    #[test]
    fn declines_everything_else() {
        let t = target();
        for input in [
            "protocol=http\nhost=github.com\npath=octo-org/hello-world.git\n",
            "protocol=https\nhost=github.com:8443\npath=octo-org/hello-world.git\n",
            "protocol=https\nhost=github.com.evil.example\npath=octo-org/hello-world.git\n",
            "protocol=https\nhost=evilgithub.com\npath=octo-org/hello-world.git\n",
            "protocol=https\nhost=gist.github.com\n",
            "protocol=https\nhost=github.com\npath=other-org/hello-world.git\n",
            "protocol=https\nhost=github.com\npath=octo-org/other.git\n",
            "protocol=https\nhost=github.com\npath=octo-org/hello-world-2.git\n",
            "protocol=https\nhost=github.com\npath=octo-org/hello\n",
            "protocol=https\nhost=github.com\npath=octo-org/hello-world/../other\n",
            "protocol=https\nhost=github.com\npath=octo-org/hello-world/extra\n",
            "protocol=https\nhost=github.com\npath=/octo-org/hello-world\n",
            "protocol=https\nhost=github.com\npath=x/octo-org/hello-world\n",
            "protocol=https\npath=octo-org/hello-world.git\n",
            "host=github.com\npath=octo-org/hello-world.git\n",
            "url=https://evil.example/octo-org/hello-world.git\n",
            "protocol=https\nhost=github.com\nurl=https://evil.example/octo-org/hello-world.git\n",
            "protocol=https\nhost=github.com\npath=octo-org/hello-world\nurl=https://github.com/octo-org/other\n",
            "url=not a url\n",
        ] {
            assert!(get(&t, input).is_err(), "{input}");
        }
    }

    #[test]
    fn http_only_to_loopback() {
        let repo: RepoName = "o/r".parse().expect("valid");
        assert!(Target::new("http://127.0.0.1:8080", repo.clone()).is_ok());
        assert!(Target::new("http://[::1]:8080/", repo.clone()).is_ok());
        assert!(Target::new("http://localhost:1", repo.clone()).is_ok());
        assert_eq!(
            Target::new("http://github.com", repo.clone()),
            Err(TargetError::Scheme("http://github.com".into()))
        );
        assert!(matches!(
            Target::new("https://github.com/api", repo.clone()),
            Err(TargetError::NotRoot(_))
        ));
        assert!(matches!(
            Target::new("https://user@github.com", repo),
            Err(TargetError::NotRoot(_))
        ));
    }

    #[test]
    fn loopback_target_matches_with_port() {
        let t = Target::new("http://127.0.0.1:8080", "o/r".parse().expect("valid")).expect("valid");
        assert!(get(&t, "protocol=http\nhost=127.0.0.1:8080\npath=o/r.git\n").is_ok());
        assert!(get(&t, "protocol=http\nhost=127.0.0.1:8081\npath=o/r.git\n").is_err());
        assert!(get(&t, "protocol=http\nhost=127.0.0.1\npath=o/r.git\n").is_err());
    }

    #[test]
    fn repo_names_follow_github_rules() {
        for ok in ["octo-org/hello-world", "a/b", "user_ent/x.y-z_1"] {
            assert!(ok.parse::<RepoName>().is_ok(), "{ok}");
        }
        for bad in [
            "", "a", "a/", "/b", "a/b/c", "a/..", "a/.", "-a/b", "a/b.git", "a b/c", "a/b c",
        ] {
            assert!(bad.parse::<RepoName>().is_err(), "{bad}");
        }
    }

    #[test]
    fn approval_names_the_target_it_was_checked_against() {
        let t = target();
        let approved = get(&t, "protocol=https\nhost=github.com\n").expect("approved");
        assert_eq!(approved.target(), &t);
        let other = t.server().target("octo-org/other".parse().expect("valid"));
        assert_ne!(approved.target(), &other);
    }

    #[test]
    fn the_server_alone_admits_its_protocol_and_host_with_any_path() {
        let server = Server::new("https://github.com/").expect("valid");
        let admits = |input: &str| server.admits(&Request::decode(input.as_bytes()).expect("decodes"));
        assert!(admits("protocol=https\nhost=github.com\npath=any/repo.git\n").is_ok());
        assert!(admits("url=https://github.com/any/repo\n").is_ok());
        assert!(admits("protocol=https\nhost=evil.example\npath=any/repo.git\n").is_err());
        assert!(admits("protocol=http\nhost=github.com\n").is_err());
        assert!(admits("protocol=https\nhost=github.com\nurl=https://evil.example/a/b\n").is_err());
        assert_eq!(format!("{server:?}"), "https://github.com");
    }

    #[test]
    fn erase_needs_the_target_and_a_password() {
        let t = target();
        let req = |s: &str| Request::decode(s.as_bytes()).expect("decodes");
        let ok = t
            .check_erase(&req("protocol=https\nhost=github.com\npassword=tok\n"))
            .expect("approved");
        assert_eq!(ok.password(), "tok");
        assert!(!format!("{ok:?}").contains("tok"));
        assert_eq!(
            t.check_erase(&req("protocol=https\nhost=github.com\n")).unwrap_err(),
            Decline::NoPassword
        );
        assert!(
            t.check_erase(&req("protocol=https\nhost=evil.example\npassword=tok\n"))
                .is_err()
        );
    }
}
