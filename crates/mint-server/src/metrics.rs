//! What an operator watches in Prometheus: mints and revocations by outcome, the broker's latency, webhook
//! deliveries, GitHub's pauses, and, read at each scrape, the database pool in use, the live tokens and the
//! revocations waiting. Served at `GET /metrics` (the `OpenMetrics` text format) to the metrics token or the admin token.
//!
//! Labels take only values from fixed lists: nothing a caller sends (an event name, a path) becomes a label
//! unless it is one GitHub documents, so anonymous traffic cannot grow the registry.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: &'static str,
    /// `2xx`, `4xx`, `5xx`.
    pub status: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WebhookLabels {
    pub event: &'static str,
    pub outcome: &'static str,
}

/// A step of the token route, in the order a new token goes through them.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum Phase {
    /// Reading the sandbox, its connection, its live token and its budget.
    View,
    /// Waiting for the sandbox's other requests, on this replica and (the lease) on others.
    Sandbox,
    /// Waiting for the installation's turn and a fleet-wide slot.
    Installation,
    /// GitHub's `POST /app/installations/{id}/access_tokens`.
    Github,
    /// Recording the sealed token, its audit row and the check that the sandbox still has the right.
    Record,
}

impl Phase {
    /// The label's value.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::View => "view",
            Phase::Sandbox => "sandbox",
            Phase::Installation => "installation",
            Phase::Github => "github",
            Phase::Record => "record",
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabel {
    pub phase: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolLabels {
    pub state: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatementLabel {
    pub statement: &'static str,
}

type HistogramFamily = Family<RouteLabels, Histogram, fn() -> Histogram>;

/// The server's metrics, registered once.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Calls to GitHub's `POST /app/installations/{id}/access_tokens`, by outcome: `issued`, `refused`
    /// (a 4xx that names the connection or the App), `rate_limited`, `failed` (5xx, timeouts).
    pub mints: Family<OutcomeLabel, Counter>,
    /// Tokens handed out again instead of minting.
    pub reused: Counter,
    /// Revocation attempts, by outcome: `revoked`, `retry`, `gave_up`, `not_mine`.
    pub revocations: Family<OutcomeLabel, Counter>,
    /// The broker's routes, from request to answer.
    pub broker_latency: HistogramFamily,
    /// Where a token request's time goes, step by step.
    token_phases: Family<PhaseLabel, Histogram, fn() -> Histogram>,
    /// Webhook deliveries, by GitHub's event name and outcome.
    pub webhooks: Family<WebhookLabels, Counter>,
    /// Times GitHub asked mint-server to hold off an installation (rate limits, Retry-After).
    pub pauses: Counter,
    db_connections: Family<PoolLabels, Gauge>,
    /// Requests each batched database statement served (PostgreSQL), by statement.
    db_batches: Family<StatementLabel, Histogram, fn() -> Histogram>,
    live_tokens: Gauge,
    revocations_queued: Gauge,
}

fn latency_histogram() -> Histogram {
    // 5 ms to 20 s: a reused token answers in milliseconds, a mint in GitHub's latency, a fleet start in
    // seconds.
    Histogram::new([0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0])
}

fn phase_histogram() -> Histogram {
    // 1 ms to 10 s: a database round trip, a wait for a turn, GitHub.
    Histogram::new([
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ])
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("mint_server");
        let mints = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "mints",
            "Calls to GitHub to mint an installation token, by outcome",
            mints.clone(),
        );
        let reused = Counter::default();
        registry.register(
            "tokens_reused",
            "Live tokens handed out again instead of minting",
            reused.clone(),
        );
        let revocations = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "revocations",
            "Revocation attempts at GitHub, by outcome",
            revocations.clone(),
        );
        let broker_latency: HistogramFamily = Family::new_with_constructor(latency_histogram);
        registry.register(
            "broker_request_duration_seconds",
            "Time from a broker request to its answer, by route and status class",
            broker_latency.clone(),
        );
        let token_phases: Family<PhaseLabel, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(phase_histogram);
        registry.register(
            "token_phase_duration_seconds",
            "Time a token request spent in each step: view, sandbox (waiting for the sandbox's other requests), installation (waiting for a turn), github, record",
            token_phases.clone(),
        );
        let webhooks = Family::<WebhookLabels, Counter>::default();
        registry.register(
            "webhook_deliveries",
            "Webhook deliveries, by event and outcome",
            webhooks.clone(),
        );
        let pauses = Counter::default();
        registry.register(
            "github_pauses",
            "Times GitHub asked to hold off an installation's calls",
            pauses.clone(),
        );
        let db_connections = Family::<PoolLabels, Gauge>::default();
        registry.register(
            "db_connections",
            "Database pool connections, in use or idle, at the scrape",
            db_connections.clone(),
        );
        let db_batches: Family<StatementLabel, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(|| Histogram::new([1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0]));
        registry.register(
            "db_batch_requests",
            "Requests each database statement served together (PostgreSQL): the broker's views and the tokens' records",
            db_batches.clone(),
        );
        let live_tokens = Gauge::default();
        registry.register(
            "live_tokens",
            "Tokens issued to sandboxes that still work and are not queued for revocation, at the scrape",
            live_tokens.clone(),
        );
        let revocations_queued = Gauge::default();
        registry.register(
            "revocations_queued",
            "Tokens queued for revocation that GitHub has not yet confirmed dead, at the scrape",
            revocations_queued.clone(),
        );
        Self {
            registry,
            mints,
            reused,
            revocations,
            broker_latency,
            token_phases,
            webhooks,
            pauses,
            db_connections,
            db_batches,
            live_tokens,
            revocations_queued,
        }
    }
}

impl Metrics {
    pub fn mint(&self, outcome: &'static str) {
        self.mints.get_or_create(&OutcomeLabel { outcome }).inc();
    }

    pub fn revocation(&self, outcome: &'static str) {
        self.revocations.get_or_create(&OutcomeLabel { outcome }).inc();
    }

    pub fn webhook(&self, event: &'static str, outcome: &'static str) {
        self.webhooks.get_or_create(&WebhookLabels { event, outcome }).inc();
    }

    pub fn broker_answered(&self, route: &'static str, status: http::StatusCode, seconds: f64) {
        let status = match status.as_u16() {
            200..=399 => "2xx",
            400..=499 => "4xx",
            _ => "5xx",
        };
        self.broker_latency
            .get_or_create(&RouteLabels { route, status })
            .observe(seconds);
    }

    /// A step of a token request took from `started` until now.
    pub fn phase(&self, phase: Phase, started: std::time::Instant) {
        self.phase_took(phase, started.elapsed());
    }

    /// A step of a token request took `took` (in pieces, such as waiting here, then for other replicas).
    pub fn phase_took(&self, phase: Phase, took: std::time::Duration) {
        self.token_phases
            .get_or_create(&PhaseLabel { phase: phase.as_str() })
            .observe(took.as_secs_f64());
    }

    /// Where the store counts the requests each batched statement serves.
    pub fn batch_sizes(&self, statement: &'static str) -> Histogram {
        self.db_batches.get_or_create(&StatementLabel { statement }).clone()
    }

    /// What is read at the scrape: the pool, and the tokens' states.
    pub fn observe(&self, pool: (u32, usize), tokens: (i64, i64)) {
        let (size, idle) = pool;
        let idle = i64::try_from(idle).unwrap_or(i64::MAX);
        self.db_connections
            .get_or_create(&PoolLabels { state: "in_use" })
            .set(i64::from(size) - idle);
        self.db_connections
            .get_or_create(&PoolLabels { state: "idle" })
            .set(idle);
        self.live_tokens.set(tokens.0);
        self.revocations_queued.set(tokens.1);
    }

    /// The exposition, ending in `# EOF`.
    pub fn encode(&self) -> String {
        let mut text = String::with_capacity(4096);
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing into a String cannot fail, and the metrics encode themselves");
        text
    }
}

/// The outcome of a mint call, as the metric names it.
pub fn mint_outcome(result: &Result<mint_github::MintedToken, mint_github::GithubError>) -> &'static str {
    match result {
        Ok(_) => "issued",
        Err(e) if e.hold_off().is_some() => "rate_limited",
        Err(e) if e.is_transient() => "failed",
        Err(_) => "refused",
    }
}
