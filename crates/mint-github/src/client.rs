//! HTTP/1.1 to the GitHub REST API over hyper and rustls; plain http only to loopback (fakehub, tests).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::{GithubError, Operation};

/// GitHub's answers mint reads are a few KiB; anything far larger is refused rather than buffered.
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;
/// The API version mint is written against.
const API_VERSION: &str = "2022-11-28";
const USER_AGENT: &str = concat!("mint/", env!("CARGO_PKG_VERSION"));

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "API URL {0:?} is not a URL: expected https://api.github.com, or https://HOST/api/v3 for GitHub Enterprise Server"
    )]
    BadUrl(String),
    #[error(transparent)]
    Scheme(#[from] mint_service::UrlRuleError),
    #[error("no TLS root certificates could be loaded ({0}): install the ca-certificates package or set SSL_CERT_FILE")]
    Roots(String),
    #[error("TLS set-up failed: {0}")]
    Tls(String),
}

/// A client for one GitHub API root (`https://api.github.com`, `https://HOST/api/v3`).
#[derive(Clone)]
pub struct GitHubClient {
    http: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    api: Arc<str>,
    timeout: Duration,
}

impl std::fmt::Debug for GitHubClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitHubClient")
            .field("api", &self.api)
            .finish_non_exhaustive()
    }
}

pub(crate) struct RawResponse {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl GitHubClient {
    pub fn new(api_url: &str) -> Result<Self, ClientError> {
        let connector = https_connector(api_url)?;
        let http = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Ok(Self {
            http,
            api: api_url.trim_end_matches('/').into(),
            timeout: Duration::from_secs(30),
        })
    }

    /// How long one request may take, connection and body included.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn api_url(&self) -> &str {
        &self.api
    }

    /// The GraphQL endpoint beside the REST API: `https://api.github.com/graphql`, or GitHub Enterprise
    /// Server's `https://HOST/api/graphql` for an API at `https://HOST/api/v3`.
    pub fn graphql_url(&self) -> String {
        graphql_url(&self.api)
    }

    /// Send one request. `authorization` is a full header value (`Bearer …`), marked sensitive.
    pub(crate) async fn send(
        &self,
        op: &Operation,
        method: Method,
        path: &str,
        authorization: &str,
        json: Option<Vec<u8>>,
    ) -> Result<RawResponse, GithubError> {
        let body = json.map(|b| ("application/json", b));
        self.send_with(
            op,
            method,
            path,
            Some(authorization),
            body,
            "application/vnd.github+json",
        )
        .await
    }

    /// Send one request with any body type, with or without an `Authorization` header (marked sensitive).
    pub(crate) async fn send_with(
        &self,
        op: &Operation,
        method: Method,
        path: &str,
        authorization: Option<&str>,
        body: Option<(&'static str, Vec<u8>)>,
        accept: &'static str,
    ) -> Result<RawResponse, GithubError> {
        self.send_to(op, method, format!("{}{path}", self.api), authorization, body, accept)
            .await
    }

    /// [`GitHubClient::send_with`] to a whole URL (the GraphQL endpoint is not under the REST root on GitHub
    /// Enterprise Server).
    pub(crate) async fn send_to(
        &self,
        op: &Operation,
        method: Method,
        url: String,
        authorization: Option<&str>,
        body: Option<(&'static str, Vec<u8>)>,
        accept: &'static str,
    ) -> Result<RawResponse, GithubError> {
        let mut builder = Request::builder()
            .method(method)
            .uri(&url)
            .header(header::ACCEPT, accept)
            .header("x-github-api-version", API_VERSION)
            .header(header::USER_AGENT, USER_AGENT);
        if let Some(authorization) = authorization {
            let mut auth = HeaderValue::from_str(authorization).map_err(|_| GithubError::BadResponse {
                op: op.clone(),
                reason: "a credential is not a valid HTTP header value".into(),
            })?;
            auth.set_sensitive(true);
            builder = builder.header(header::AUTHORIZATION, auth);
        }
        let (content_type, body) = body.map_or((None, Vec::new()), |(t, b)| (Some(t), b));
        if let Some(content_type) = content_type {
            builder = builder.header(header::CONTENT_TYPE, content_type);
        }
        let request = builder
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| GithubError::Unreachable {
                op: op.clone(),
                url: url.clone(),
                cause: e.to_string(),
            })?;
        let exchange = async {
            let response = self.http.request(request).await.map_err(|e| GithubError::Unreachable {
                op: op.clone(),
                url: url.clone(),
                cause: error_chain(&e),
            })?;
            let (parts, body) = response.into_parts();
            let body = Limited::new(body, MAX_RESPONSE_BYTES)
                .collect()
                .await
                .map_err(|e| GithubError::BadResponse {
                    op: op.clone(),
                    reason: format!("reading the body failed: {e}"),
                })?
                .to_bytes();
            Ok(RawResponse {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| GithubError::Timeout {
                op: op.clone(),
                url,
                timeout: self.timeout,
            })?
    }
}

/// The GraphQL endpoint for the REST API root `api` (see [`GitHubClient::graphql_url`]).
pub fn graphql_url(api: &str) -> String {
    let api = api.trim_end_matches('/');
    match api.strip_suffix("/api/v3") {
        Some(host) => format!("{host}/api/graphql"),
        None => format!("{api}/graphql"),
    }
}

/// The connector for talking to `base_url` (the API, or git's smart HTTP): rustls with the system's roots
/// for https; plain http only to a loopback address (fakehub, tests).
pub fn https_connector(base_url: &str) -> Result<HttpsConnector<HttpConnector>, ClientError> {
    let url = url::Url::parse(base_url)
        .ok()
        .filter(|url| url.has_host() && url.username().is_empty() && url.password().is_none() && url.query().is_none())
        .ok_or_else(|| ClientError::BadUrl(base_url.into()))?;
    mint_service::require_https_or_loopback(&url, "URL")?;
    let https = url.scheme() == "https";
    let mut roots = rustls::RootCertStore::empty();
    if https {
        // Only https needs the system's roots; reading them costs milliseconds at start-up.
        let loaded = rustls_native_certs::load_native_certs();
        roots.add_parsable_certificates(loaded.certs);
        if roots.is_empty() {
            let why = loaded
                .errors
                .first()
                .map_or_else(|| "none found".to_owned(), ToString::to_string);
            return Err(ClientError::Roots(why));
        }
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut tcp = HttpConnector::new();
    // Requests and answers in turn (and the git proxy's relay): no small write waits for a delayed ACK.
    tcp.set_nodelay(true);
    tcp.enforce_http(false);
    Ok(hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(tcp))
}

/// hyper's errors say little at the top ("client error (Connect)"); the cause is further down.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn graphql_sits_beside_the_rest_api() {
        assert_eq!(graphql_url("https://api.github.com"), "https://api.github.com/graphql");
        assert_eq!(
            graphql_url("https://ghe.example/api/v3/"),
            "https://ghe.example/api/graphql"
        );
        assert_eq!(graphql_url("http://127.0.0.1:8080"), "http://127.0.0.1:8080/graphql");
    }

    #[test]
    fn plain_http_only_to_loopback() {
        assert!(GitHubClient::new("http://127.0.0.1:9/").is_ok());
        assert!(GitHubClient::new("http://[::1]:9").is_ok());
        assert!(matches!(
            GitHubClient::new("http://api.github.com"),
            Err(ClientError::Scheme(_))
        ));
        assert!(matches!(GitHubClient::new("ftp://x"), Err(ClientError::Scheme(_))));
        assert!(matches!(GitHubClient::new("nonsense"), Err(ClientError::BadUrl(_))));
        assert!(matches!(
            GitHubClient::new("https://u:p@api.github.com"),
            Err(ClientError::BadUrl(_))
        ));
    }
}
