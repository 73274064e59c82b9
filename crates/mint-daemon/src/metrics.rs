//! What mintd is doing, as counters, gauges and a latency histogram in a `prometheus-client` registry,
//! served as Prometheus text (version 0.0.4) on `GET /metrics`.
//!
//! Labels take only values from fixed lists (a route, a reason, GitHub's status code): nothing a client
//! sends becomes a label, so a hostile sandbox cannot grow the registry.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric, LabelSetEncoder};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::logs::{Repeated, Throttle};

/// Upper bounds (seconds) of the `get` latency buckets: a warm get is well under a millisecond, a cold one
/// waits on GitHub.
const LATENCY_BUCKETS: [f64; 14] = [
    0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 20.0,
];

/// A byte count held right now.
pub(crate) type BytesGauge = Gauge<u64, AtomicU64>;

/// `mint_mints_total`'s labels: a success has no reason, a failure has one.
#[derive(Debug, Clone, Hash, PartialEq, Eq)]
enum MintLabels {
    Success,
    Failure(&'static str),
}

impl EncodeLabelSet for MintLabels {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        match self {
            MintLabels::Success => [("outcome", "success")].encode(encoder),
            MintLabels::Failure(reason) => [("outcome", "failure"), ("reason", reason)].encode(encoder),
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProxiedLabels {
    route: &'static str,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ApiLabels {
    kind: &'static str,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConnectionLabels {
    server: &'static str,
    outcome: &'static str,
}

/// mintd's metrics, registered once.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    mints: Family<MintLabels, Counter>,
    pub(crate) cache_hits: Counter,
    pub(crate) retries: Counter,
    pub(crate) revocations: Counter,
    pub(crate) erases: Counter,
    pub(crate) declined: Counter,
    get_duration: Histogram,
    proxied: Family<ProxiedLabels, Counter>,
    proxy_refusals: Family<ReasonLabel, Counter>,
    proxy_bytes_down: Counter,
    /// Proxied POSTs sent without a replay copy, by why: `budget` (the total was spent) or `too_large`.
    proxy_unreplayable: Family<ReasonLabel, Counter>,
    /// Bytes the proxy holds for replay and push checks right now, across connections.
    pub(crate) proxy_buffered: BytesGauge,
    /// Bytes of request bodies the socket holds right now past each request's first few KiB.
    pub(crate) socket_bodies: BytesGauge,
    /// Connections accepted, by server and how they were let in (or not).
    connections: Family<ConnectionLabels, Counter>,
    pull_requests: Family<OutcomeLabel, Counter>,
    /// GitHub API requests sent on, by what they were (`read`, `comment`, …) and GitHub's status.
    api_requests: Family<ApiLabels, Counter>,
    /// GitHub API requests refused, by why (`merging`, `other_repository`, …).
    api_refusals: Family<ReasonLabel, Counter>,
    /// Events a client can repeat at will: counted here, logged in moderation.
    pub(crate) repeated: Arc<Throttle<Repeated>>,
    token_life: BytesGauge,
}

/// `metric`, registered under `name` (after the `mint_` prefix) with its `help`.
fn register<M: prometheus_client::registry::Metric + Clone>(
    registry: &mut Registry,
    name: &str,
    help: &str,
    metric: M,
) -> M {
    registry.register(name, help, metric.clone());
    metric
}

impl Default for Metrics {
    #[expect(
        clippy::too_many_lines,
        reason = "one registration per metric, in the order they are shown"
    )]
    fn default() -> Self {
        let mut r = Registry::with_prefix("mint");
        let mints = Family::<MintLabels, Counter>::default();
        // Shown from the start, so that a rate over it has a first point at zero.
        let _ = mints.get_or_create(&MintLabels::Success);
        let repeated = Arc::new(Throttle::default());
        // Fields are evaluated in the order written: the exposition lists the metrics in this order.
        Self {
            mints: register(
                &mut r,
                "mints",
                "Installation tokens requested from GitHub, by outcome",
                mints,
            ),
            cache_hits: register(
                &mut r,
                "cache_hits",
                "Credential gets answered from the cached token",
                Counter::default(),
            ),
            retries: register(
                &mut r,
                "retries",
                "Requests to GitHub retried after a transient failure",
                Counter::default(),
            ),
            revocations: register(&mut r, "revocations", "Tokens revoked at GitHub", Counter::default()),
            erases: register(
                &mut r,
                "erases",
                "Tokens dropped because git reported them failing",
                Counter::default(),
            ),
            declined: register(
                &mut r,
                "declined",
                "Credential requests refused by the policy",
                Counter::default(),
            ),
            get_duration: register(
                &mut r,
                "get_duration_seconds",
                "Time to answer a credential get",
                Histogram::new(LATENCY_BUCKETS),
            ),
            proxied: register(
                &mut r,
                "proxy_requests",
                "Git requests forwarded by the git proxy",
                Family::default(),
            ),
            proxy_refusals: register(
                &mut r,
                "proxy_refusals",
                "Git requests the proxy refused, by reason",
                Family::default(),
            ),
            proxy_bytes_down: register(
                &mut r,
                "proxy_bytes_down",
                "Bytes relayed from GitHub to git",
                Counter::default(),
            ),
            proxy_unreplayable: register(
                &mut r,
                "proxy_unreplayable",
                "Proxied POSTs streamed without a copy to replay after a 401, by reason",
                Family::default(),
            ),
            proxy_buffered: register(
                &mut r,
                "proxy_buffered_bytes",
                "Request bytes the proxy holds now (replay copies and push command lists)",
                BytesGauge::default(),
            ),
            socket_bodies: register(
                &mut r,
                "socket_body_bytes",
                "Request body bytes the socket holds now beyond each request's first 4 KiB",
                BytesGauge::default(),
            ),
            connections: register(
                &mut r,
                "connections",
                "Connections accepted, by server and outcome (admitted, reserve, refused, stalled)",
                Family::default(),
            ),
            pull_requests: register(
                &mut r,
                "pull_requests",
                "Pull-request calls past the input checks, by what answered them",
                Family::default(),
            ),
            repeated: {
                r.register_collector(Box::new(RepeatedEvents(repeated.clone())));
                repeated
            },
            api_requests: register(
                &mut r,
                "api_requests",
                "GitHub API requests sent on to GitHub, by kind and GitHub's status",
                Family::default(),
            ),
            api_refusals: register(
                &mut r,
                "api_refusals",
                "GitHub API requests refused before reaching GitHub, by reason",
                Family::default(),
            ),
            token_life: register(
                &mut r,
                "token_life_seconds",
                "Seconds of life left on the token being served",
                BytesGauge::default(),
            ),
            registry: r,
        }
    }
}

/// `mint_client_events_total` and `mint_log_lines_suppressed_total`, read from the log throttle at the
/// scrape: it already counts every event, so nothing is counted twice.
#[derive(Debug)]
struct RepeatedEvents(Arc<Throttle<Repeated>>);

impl prometheus_client::collector::Collector for RepeatedEvents {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for (name, help, suppressed) in [
            (
                "client_events",
                "Events a client can repeat at will (refusals, declines, accept errors), all counted.",
                false,
            ),
            (
                "log_lines_suppressed",
                "Of those, how many got no log line of their own.",
                true,
            ),
        ] {
            let mut family =
                encoder.encode_descriptor(name, help, None, prometheus_client::metrics::MetricType::Counter)?;
            for event in Repeated::ALL {
                let (seen, not_logged) = self.0.counts(event);
                let labels = [("event", event.label())];
                let count = ConstCounter::new(if suppressed { not_logged } else { seen });
                count.encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

impl Metrics {
    pub(crate) fn mint_succeeded(&self) {
        self.mints.get_or_create(&MintLabels::Success).inc();
    }

    pub(crate) fn mint_failed(&self, reason: &'static str) {
        self.mints.get_or_create(&MintLabels::Failure(reason)).inc();
    }

    pub(crate) fn proxied(&self, route: &'static str, status: u16) {
        self.proxied.get_or_create(&ProxiedLabels { route, status }).inc();
    }

    pub(crate) fn proxy_refused(&self, reason: &'static str) {
        self.proxy_refusals.get_or_create(&ReasonLabel { reason }).inc();
    }

    /// A `POST /v1/pulls` that passed the input checks, by what answered it: `github`, `remembered`,
    /// `limited` (the bucket was empty) or `github_rate_limited`.
    pub(crate) fn pull_request(&self, outcome: &'static str) {
        self.pull_requests.get_or_create(&OutcomeLabel { outcome }).inc();
    }

    /// A GitHub API request that was sent on: what it was, and GitHub's status.
    pub(crate) fn api_request(&self, kind: &'static str, status: u16) {
        self.api_requests.get_or_create(&ApiLabels { kind, status }).inc();
    }

    /// A GitHub API request refused before GitHub heard of it, and why.
    pub(crate) fn api_refused(&self, reason: &'static str) {
        self.api_refusals.get_or_create(&ReasonLabel { reason }).inc();
    }

    pub(crate) fn proxy_unreplayable(&self, reason: &'static str) {
        self.proxy_unreplayable.get_or_create(&ReasonLabel { reason }).inc();
    }

    /// A connection to `server` (`socket` or `proxy`): `admitted`, `reserve` (over a cap, served one
    /// short request), `refused` (over every cap, closed at once), `stalled` (dropped: it did not read).
    pub(crate) fn connection(&self, server: &'static str, outcome: &'static str) {
        self.connections
            .get_or_create(&ConnectionLabels { server, outcome })
            .inc();
    }

    pub(crate) fn proxy_bytes_down(&self, n: usize) {
        self.proxy_bytes_down.inc_by(u64::try_from(n).unwrap_or(u64::MAX));
    }

    pub(crate) fn observe_get(&self, took: Duration) {
        self.get_duration.observe(took.as_secs_f64());
    }

    /// The Prometheus text exposition; `token_life_left` is the current token's remaining seconds.
    pub fn render(&self, token_life_left: Option<u64>) -> String {
        self.token_life.set(token_life_left.unwrap_or(0));
        let mut text = String::with_capacity(4096);
        prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry)
            .expect("writing into a String cannot fail, and the metrics encode themselves");
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        m.mint_succeeded();
        m.mint_failed("installation_not_found");
        m.mint_failed("installation_not_found");
        m.observe_get(Duration::from_micros(300));
        m.observe_get(Duration::from_millis(700));
        let text = m.render(Some(3500));
        for line in [
            "mint_mints_total{outcome=\"success\"} 1",
            "mint_mints_total{outcome=\"failure\",reason=\"installation_not_found\"} 2",
            "mint_get_duration_seconds_bucket{le=\"0.00025\"} 0",
            "mint_get_duration_seconds_bucket{le=\"0.0005\"} 1",
            "mint_get_duration_seconds_bucket{le=\"1\"} 2",
            "mint_get_duration_seconds_bucket{le=\"+Inf\"} 2",
            "mint_get_duration_seconds_count 2",
            "mint_token_life_seconds 3500",
            "# TYPE mint_retries_total counter",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
    }

    /// What Prometheus reads: every series parses, with the names, labels and values mintd counted.
    #[test]
    fn the_scrape_parses_as_prometheus_text() {
        let m = Metrics::default();
        m.mint_failed("timeout");
        m.proxied("receive_pack", 200);
        m.connection("socket", "stalled");
        m.api_request("read", 404);
        m.repeated.should_log(crate::logs::Repeated::CredentialDeclined);
        m.socket_bodies.inc_by(4096);
        let text = m.render(None);
        let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("parses");
        let value = |name: &str, labels: &[(&str, &str)]| {
            scrape
                .samples
                .iter()
                .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
                .map(|s| match s.value {
                    prometheus_parse::Value::Counter(v)
                    | prometheus_parse::Value::Gauge(v)
                    | prometheus_parse::Value::Untyped(v) => v,
                    _ => f64::NAN,
                })
        };
        assert_eq!(value("mint_mints_total", &[("outcome", "success")]), Some(0.0));
        assert_eq!(
            value("mint_mints_total", &[("outcome", "failure"), ("reason", "timeout")]),
            Some(1.0)
        );
        assert_eq!(
            value(
                "mint_proxy_requests_total",
                &[("route", "receive_pack"), ("status", "200")]
            ),
            Some(1.0)
        );
        assert_eq!(
            value(
                "mint_connections_total",
                &[("server", "socket"), ("outcome", "stalled")]
            ),
            Some(1.0)
        );
        assert_eq!(
            value("mint_api_requests_total", &[("kind", "read"), ("status", "404")]),
            Some(1.0)
        );
        assert_eq!(
            value("mint_client_events_total", &[("event", "credential_declined")]),
            Some(1.0)
        );
        assert_eq!(
            value("mint_log_lines_suppressed_total", &[("event", "credential_declined")]),
            Some(0.0)
        );
        assert_eq!(value("mint_socket_body_bytes", &[]), Some(4096.0));
        assert_eq!(value("mint_token_life_seconds", &[]), Some(0.0));
        assert_eq!(value("mint_declined_total", &[]), Some(0.0));
        assert!(
            scrape.docs.contains_key("mint_get_duration_seconds"),
            "the histogram has its HELP: {text}"
        );
    }
}
