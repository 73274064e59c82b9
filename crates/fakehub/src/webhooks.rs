//! The App's webhooks: payloads shaped like GitHub's examples, signed as GitHub signs them
//! (`X-Hub-Signature-256`), delivered in order by one background task, each attempt recorded.

use std::time::Duration;

use bytes::Bytes;
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full};
use rand::RngCore;
use serde_json::Value;

use crate::FakeHub;
use crate::state::Delivery;

/// GitHub gives a receiver 10 seconds to answer.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);

/// One attempt to deliver, queued for the delivery task.
pub(crate) struct Job {
    attempt: u64,
    url: String,
    secret: Option<String>,
    guid: String,
    event: String,
    body: String,
}

impl FakeHub {
    /// Send `payload` as event `event` to the App's webhook URL, if it has one.
    pub(crate) fn send_webhook(&self, event: &str, installation_id: Option<u64>, payload: &Value) {
        let url = self.state().webhook_url.clone();
        let Some(url) = url else {
            return;
        };
        let body = serde_json::to_string(payload).expect("JSON values serialise");
        let action = payload.get("action").and_then(Value::as_str).map(ToOwned::to_owned);
        let delivery = Delivery {
            id: 0,
            guid: new_guid(),
            event: event.to_owned(),
            action,
            installation_id,
            url,
            redelivery: false,
            status_code: None,
            error: None,
            body,
        };
        self.enqueue(delivery);
    }

    /// `pull_request` with `action` (`opened`, `closed`…) for the pull request as it is now, to the App of
    /// the installation that reaches its repository.
    pub(crate) fn send_pull_request_event(&self, action: &str, pull: &crate::PullRecord) {
        let Some(installation) = self.installation_for(&pull.owner, &pull.repo) else {
            return;
        };
        let payload = serde_json::json!({
            "action": action,
            "number": pull.number,
            "pull_request": crate::server::pull_json(self, pull),
            "repository": crate::server::repository_json(self, &pull.owner, &pull.repo),
            "installation": {"id": installation.id},
            "sender": crate::server::review::user_json(&pull.author),
        });
        self.send_webhook("pull_request", Some(installation.id), &payload);
    }

    /// `pull_request_review` `submitted`: `reviewer`'s verdict (`APPROVED`, `CHANGES_REQUESTED`, `COMMENTED`).
    pub(crate) fn send_review_event(&self, pull: &crate::PullRecord, id: u64, reviewer: &str, verdict: &str) {
        let Some(installation) = self.installation_for(&pull.owner, &pull.repo) else {
            return;
        };
        let payload = serde_json::json!({
            "action": "submitted",
            "review": {
                "id": id,
                "user": crate::server::review::user_json(reviewer),
                "state": verdict.to_ascii_lowercase(),
                "submitted_at": humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            },
            "pull_request": crate::server::pull_json(self, pull),
            "repository": crate::server::repository_json(self, &pull.owner, &pull.repo),
            "installation": {"id": installation.id},
            "sender": crate::server::review::user_json(reviewer),
        });
        self.send_webhook("pull_request_review", Some(installation.id), &payload);
    }

    fn enqueue(&self, mut delivery: Delivery) {
        let mut state = self.state();
        delivery.id = u64::try_from(state.deliveries.len()).expect("fewer than 2^64 deliveries") + 1;
        let job = Job {
            attempt: delivery.id,
            url: delivery.url.clone(),
            secret: state.webhook_secret.clone(),
            guid: delivery.guid.clone(),
            event: delivery.event.clone(),
            body: delivery.body.clone(),
        };
        state.deliveries.push(delivery);
        drop(state);
        if self.inner.deliveries.send(job).is_err() {
            tracing::warn!("the webhook delivery task has stopped; delivery dropped");
        }
    }

    /// Every delivery attempt so far, oldest first.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.state().deliveries.clone()
    }

    /// Send delivery `guid`'s body again, with the same `X-GitHub-Delivery`, to the webhook URL as it is now.
    pub fn redeliver(&self, guid: &str) -> anyhow::Result<()> {
        let state = self.state();
        let original = state
            .deliveries
            .iter()
            .find(|d| d.guid == guid)
            .ok_or_else(|| anyhow::anyhow!("no webhook delivery {guid:?}: see GET /_fakehub/deliveries"))?;
        let url = state.webhook_url.clone().unwrap_or_else(|| original.url.clone());
        let delivery = Delivery {
            url,
            redelivery: true,
            status_code: None,
            error: None,
            ..original.clone()
        };
        drop(state);
        self.enqueue(delivery);
        Ok(())
    }

    /// Point the App's webhook elsewhere (or nowhere), with a new secret (or none).
    pub fn set_webhook(&self, url: Option<&str>, secret: Option<&str>) {
        let mut state = self.state();
        state.webhook_url = url.map(ToOwned::to_owned);
        state.webhook_secret = secret.map(ToOwned::to_owned);
    }

    pub(crate) fn take_delivery_queue(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<Job>> {
        self.inner
            .delivery_queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }

    fn record_outcome(&self, attempt: u64, outcome: Result<u16, String>) {
        let mut state = self.state();
        let Some(delivery) = usize::try_from(attempt - 1)
            .ok()
            .and_then(|i| state.deliveries.get_mut(i))
        else {
            return;
        };
        match outcome {
            Ok(status) => delivery.status_code = Some(status),
            Err(e) => delivery.error = Some(e),
        }
    }
}

/// Deliver queued jobs one at a time, in order, until the queue closes.
pub(crate) async fn worker(hub: FakeHub, mut queue: tokio::sync::mpsc::UnboundedReceiver<Job>) {
    let client =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http::<Full<Bytes>>();
    while let Some(job) = queue.recv().await {
        let outcome = match tokio::time::timeout(DELIVERY_TIMEOUT, post(&client, hub.config().app_id, &job)).await {
            Ok(outcome) => outcome,
            Err(_) => Err("timed out after 10 s".to_owned()),
        };
        if let Err(e) = &outcome {
            tracing::warn!(delivery = %job.guid, event = %job.event, error = %e, "webhook delivery failed");
        }
        hub.record_outcome(job.attempt, outcome);
    }
}

async fn post(
    client: &hyper_util::client::legacy::Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    app_id: u64,
    job: &Job,
) -> Result<u16, String> {
    let uri: http::Uri = job
        .url
        .parse()
        .map_err(|e| format!("the webhook URL {:?} is not a URL: {e}", job.url))?;
    let loopback = matches!(uri.host(), Some("127.0.0.1" | "localhost" | "[::1]" | "::1"));
    if uri.scheme_str() != Some("http") || !loopback {
        return Err(format!(
            "fakehub delivers webhooks only to loopback http:// URLs, not {:?}",
            job.url
        ));
    }
    let mut request = http::Request::post(uri)
        .header("content-type", "application/json")
        .header("user-agent", "GitHub-Hookshot/fakehub")
        .header("accept", "*/*")
        .header("x-github-event", &job.event)
        .header("x-github-delivery", &job.guid)
        .header("x-github-hook-id", hook_id(app_id).to_string())
        .header("x-github-hook-installation-target-type", "integration")
        .header("x-github-hook-installation-target-id", app_id.to_string());
    if let Some(secret) = &job.secret {
        request = request
            .header("x-hub-signature-256", signature_256(secret, job.body.as_bytes()))
            .header("x-hub-signature", signature_1(secret, job.body.as_bytes()));
    }
    let request = request
        .body(Full::new(Bytes::from(job.body.clone())))
        .map_err(|e| format!("building the request: {e}"))?;
    let response = client.request(request).await.map_err(|e| format!("{e:#}"))?;
    let status = response.status().as_u16();
    let _ = response.into_body().collect().await;
    Ok(status)
}

/// The webhook's id (`X-GitHub-Hook-ID`): one hook per App.
pub(crate) fn hook_id(app_id: u64) -> u64 {
    400_000_000 + app_id
}

/// `sha256=` and the hex HMAC-SHA256 of `body` keyed with `secret`.
pub(crate) fn signature_256(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// `sha1=` and the hex HMAC-SHA1 (GitHub still sends it, for old receivers).
pub(crate) fn signature_1(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(body);
    format!("sha1={}", hex::encode(mac.finalize().into_bytes()))
}

/// A random (version 4) GUID, as `X-GitHub-Delivery` carries.
fn new_guid() -> String {
    let mut b = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_match_githubs_documented_example() {
        // GitHub's docs ("Validating webhook deliveries"): secret "It's a Secret to Everybody",
        // payload "Hello, World!".
        assert_eq!(
            signature_256("It's a Secret to Everybody", b"Hello, World!"),
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
    }

    #[test]
    fn guids_look_like_guids() {
        let guid = new_guid();
        assert_eq!(guid.len(), 36);
        assert_eq!(guid.matches('-').count(), 4);
        assert_ne!(guid, new_guid());
    }
}
