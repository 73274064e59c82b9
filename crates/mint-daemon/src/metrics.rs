//! What mintd is doing, as counters and a latency histogram, served as Prometheus text on `GET /metrics`.
//!
//! A handful of atomics rendered by hand: a metrics framework would outweigh what it carries here.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the `get` latency buckets: a warm get is well under a millisecond, a cold one
/// waits on GitHub.
const LATENCY_BUCKETS: [f64; 14] = [
    0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 20.0,
];

#[derive(Default)]
pub struct Metrics {
    mints_ok: AtomicU64,
    mint_failures: Mutex<BTreeMap<&'static str, u64>>,
    pub(crate) cache_hits: AtomicU64,
    pub(crate) retries: AtomicU64,
    pub(crate) revocations: AtomicU64,
    pub(crate) erases: AtomicU64,
    pub(crate) declined: AtomicU64,
    proxied: Mutex<BTreeMap<(&'static str, u16), u64>>,
    proxy_refusals: Mutex<BTreeMap<&'static str, u64>>,
    proxy_bytes_down: AtomicU64,
    /// Proxied POSTs sent without a replay copy, by why: `budget` (the total was spent) or `too_large`.
    proxy_unreplayable: Mutex<BTreeMap<&'static str, u64>>,
    /// Bytes the proxy holds for replay and push checks right now, across connections.
    pub(crate) proxy_buffered: AtomicU64,
    /// Bytes of request bodies the socket holds right now past each request's first few KiB.
    pub(crate) socket_bodies: AtomicU64,
    /// Connections accepted, by server and how they were let in (or not).
    connections: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    pull_requests: Mutex<BTreeMap<&'static str, u64>>,
    /// GitHub API requests sent on, by what they were (`read`, `comment`, …) and GitHub's status.
    api_requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    /// GitHub API requests refused, by why (`merging`, `other_repository`, …).
    api_refusals: Mutex<BTreeMap<&'static str, u64>>,
    /// Events a client can repeat at will: counted here, logged in moderation.
    pub(crate) repeated: crate::logs::Throttle,
    latency_buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_us: AtomicU64,
}

impl Metrics {
    pub(crate) fn mint_succeeded(&self) {
        self.mints_ok.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn mint_failed(&self, reason: &'static str) {
        let mut failures = self
            .mint_failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *failures.entry(reason).or_default() += 1;
    }

    pub(crate) fn proxied(&self, route: &'static str, status: u16) {
        let mut map = self.proxied.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *map.entry((route, status)).or_default() += 1;
    }

    pub(crate) fn proxy_refused(&self, reason: &'static str) {
        let mut map = self
            .proxy_refusals
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *map.entry(reason).or_default() += 1;
    }

    /// A `POST /v1/pulls` that passed the input checks, by what answered it: `github`, `remembered`,
    /// `limited` (the bucket was empty) or `github_rate_limited`.
    pub(crate) fn pull_request(&self, outcome: &'static str) {
        let mut map = self
            .pull_requests
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *map.entry(outcome).or_default() += 1;
    }

    /// A GitHub API request that was sent on: what it was, and GitHub's status.
    pub(crate) fn api_request(&self, what: &'static str, status: u16) {
        let mut map = self
            .api_requests
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *map.entry((what, status)).or_default() += 1;
    }

    /// A GitHub API request refused before GitHub heard of it, and why.
    pub(crate) fn api_refused(&self, reason: &'static str) {
        let mut map = self
            .api_refusals
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *map.entry(reason).or_default() += 1;
    }

    /// The API endpoint's counters.
    fn render_api(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP mint_api_requests_total GitHub API requests sent on to GitHub, by kind and GitHub's status."
        );
        let _ = writeln!(out, "# TYPE mint_api_requests_total counter");
        let requests = self
            .api_requests
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for ((what, status), n) in requests.iter() {
            let _ = writeln!(
                out,
                "mint_api_requests_total{{kind=\"{what}\",status=\"{status}\"}} {n}"
            );
        }
        drop(requests);
        let _ = writeln!(
            out,
            "# HELP mint_api_refusals_total GitHub API requests refused before reaching GitHub, by reason."
        );
        let _ = writeln!(out, "# TYPE mint_api_refusals_total counter");
        let refusals = self
            .api_refusals
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (reason, n) in refusals.iter() {
            let _ = writeln!(out, "mint_api_refusals_total{{reason=\"{reason}\"}} {n}");
        }
    }

    pub(crate) fn proxy_unreplayable(&self, reason: &'static str) {
        let mut map = self
            .proxy_unreplayable
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *map.entry(reason).or_default() += 1;
    }

    /// A connection to `server` (`socket` or `proxy`): `admitted`, `reserve` (over a cap, served one
    /// short request), `refused` (over every cap, closed at once), `stalled` (dropped: it did not read).
    pub(crate) fn connection(&self, server: &'static str, outcome: &'static str) {
        let mut map = self
            .connections
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *map.entry((server, outcome)).or_default() += 1;
    }

    pub(crate) fn proxy_bytes_down(&self, n: usize) {
        self.proxy_bytes_down
            .fetch_add(u64::try_from(n).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// The mediated-mode proxy's counters.
    fn render_proxy(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP mint_proxy_requests_total Git requests forwarded by the git proxy."
        );
        let _ = writeln!(out, "# TYPE mint_proxy_requests_total counter");
        let proxied = self.proxied.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for ((route, status), n) in proxied.iter() {
            let _ = writeln!(
                out,
                "mint_proxy_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
            );
        }
        drop(proxied);
        let _ = writeln!(
            out,
            "# HELP mint_proxy_refusals_total Git requests the proxy refused, by reason."
        );
        let _ = writeln!(out, "# TYPE mint_proxy_refusals_total counter");
        let refusals = self
            .proxy_refusals
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (reason, n) in refusals.iter() {
            let _ = writeln!(out, "mint_proxy_refusals_total{{reason=\"{reason}\"}} {n}");
        }
        drop(refusals);
        let _ = writeln!(
            out,
            "# HELP mint_proxy_bytes_down_total Bytes relayed from GitHub to git."
        );
        let _ = writeln!(out, "# TYPE mint_proxy_bytes_down_total counter");
        let down = self.proxy_bytes_down.load(Ordering::Relaxed);
        let _ = writeln!(out, "mint_proxy_bytes_down_total {down}");
        let _ = writeln!(
            out,
            "# HELP mint_proxy_unreplayable_total Proxied POSTs streamed without a copy to replay after a 401, by reason."
        );
        let _ = writeln!(out, "# TYPE mint_proxy_unreplayable_total counter");
        let unreplayable = self
            .proxy_unreplayable
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (reason, n) in unreplayable.iter() {
            let _ = writeln!(out, "mint_proxy_unreplayable_total{{reason=\"{reason}\"}} {n}");
        }
        drop(unreplayable);
        let _ = writeln!(
            out,
            "# HELP mint_proxy_buffered_bytes Request bytes the proxy holds now (replay copies and push command lists)."
        );
        let _ = writeln!(out, "# TYPE mint_proxy_buffered_bytes gauge");
        let buffered = self.proxy_buffered.load(Ordering::Relaxed);
        let _ = writeln!(out, "mint_proxy_buffered_bytes {buffered}");
        let _ = writeln!(
            out,
            "# HELP mint_socket_body_bytes Request body bytes the socket holds now beyond each request's first 4 KiB."
        );
        let _ = writeln!(out, "# TYPE mint_socket_body_bytes gauge");
        let bodies = self.socket_bodies.load(Ordering::Relaxed);
        let _ = writeln!(out, "mint_socket_body_bytes {bodies}");
        let _ = writeln!(
            out,
            "# HELP mint_connections_total Connections accepted, by server and outcome (admitted, reserve, refused, stalled)."
        );
        let _ = writeln!(out, "# TYPE mint_connections_total counter");
        let connections = self
            .connections
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for ((server, outcome), n) in connections.iter() {
            let _ = writeln!(
                out,
                "mint_connections_total{{server=\"{server}\",outcome=\"{outcome}\"}} {n}"
            );
        }
        drop(connections);
    }

    /// What clients asked for that did not all reach GitHub or the log: pull requests, repeated events.
    fn render_client(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP mint_pull_requests_total Pull-request calls past the input checks, by what answered them."
        );
        let _ = writeln!(out, "# TYPE mint_pull_requests_total counter");
        let pulls = self
            .pull_requests
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (outcome, n) in pulls.iter() {
            let _ = writeln!(out, "mint_pull_requests_total{{outcome=\"{outcome}\"}} {n}");
        }
        drop(pulls);
        let _ = writeln!(
            out,
            "# HELP mint_client_events_total Events a client can repeat at will (refusals, declines, accept errors), all counted."
        );
        let _ = writeln!(out, "# TYPE mint_client_events_total counter");
        let repeated = self.repeated.counts();
        for (event, seen, _) in &repeated {
            let _ = writeln!(out, "mint_client_events_total{{event=\"{}\"}} {seen}", event.label());
        }
        let _ = writeln!(
            out,
            "# HELP mint_log_lines_suppressed_total Of those, how many got no log line of their own."
        );
        let _ = writeln!(out, "# TYPE mint_log_lines_suppressed_total counter");
        for (event, _, suppressed) in &repeated {
            let _ = writeln!(
                out,
                "mint_log_lines_suppressed_total{{event=\"{}\"}} {suppressed}",
                event.label()
            );
        }
    }

    pub(crate) fn observe_get(&self, took: Duration) {
        let seconds = took.as_secs_f64();
        for (bound, bucket) in LATENCY_BUCKETS.iter().zip(&self.latency_buckets) {
            if seconds <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        self.latency_sum_us
            .fetch_add(u64::try_from(took.as_micros()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// The Prometheus text exposition; `token_life_left` is the current token's remaining seconds.
    pub fn render(&self, token_life_left: Option<u64>) -> String {
        let mut out = String::with_capacity(2048);
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "# HELP mint_mints_total Installation tokens requested from GitHub, by outcome."
        );
        let _ = writeln!(out, "# TYPE mint_mints_total counter");
        let _ = writeln!(out, "mint_mints_total{{outcome=\"success\"}} {}", load(&self.mints_ok));
        let failures = self
            .mint_failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (reason, n) in failures.iter() {
            let _ = writeln!(out, "mint_mints_total{{outcome=\"failure\",reason=\"{reason}\"}} {n}");
        }
        drop(failures);
        for (name, help, counter) in [
            (
                "mint_cache_hits_total",
                "Credential gets answered from the cached token.",
                &self.cache_hits,
            ),
            (
                "mint_retries_total",
                "Requests to GitHub retried after a transient failure.",
                &self.retries,
            ),
            ("mint_revocations_total", "Tokens revoked at GitHub.", &self.revocations),
            (
                "mint_erases_total",
                "Tokens dropped because git reported them failing.",
                &self.erases,
            ),
            (
                "mint_declined_total",
                "Credential requests refused by the policy.",
                &self.declined,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                load(counter)
            );
        }
        let _ = writeln!(out, "# HELP mint_get_duration_seconds Time to answer a credential get.");
        let _ = writeln!(out, "# TYPE mint_get_duration_seconds histogram");
        for (bound, bucket) in LATENCY_BUCKETS.iter().zip(&self.latency_buckets) {
            let _ = writeln!(
                out,
                "mint_get_duration_seconds_bucket{{le=\"{bound}\"}} {}",
                load(bucket)
            );
        }
        let count = load(&self.latency_count);
        let _ = writeln!(out, "mint_get_duration_seconds_bucket{{le=\"+Inf\"}} {count}");
        #[expect(clippy::cast_precision_loss, reason = "microsecond sums stay far below 2^52")]
        let sum = load(&self.latency_sum_us) as f64 / 1e6;
        let _ = writeln!(
            out,
            "mint_get_duration_seconds_sum {sum}\nmint_get_duration_seconds_count {count}"
        );
        self.render_proxy(&mut out);
        self.render_client(&mut out);
        self.render_api(&mut out);
        let _ = writeln!(
            out,
            "# HELP mint_token_life_seconds Seconds of life left on the token being served."
        );
        let _ = writeln!(out, "# TYPE mint_token_life_seconds gauge");
        let _ = writeln!(out, "mint_token_life_seconds {}", token_life_left.unwrap_or(0));
        out
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
}
