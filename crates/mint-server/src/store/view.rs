//! The broker's view: what `POST /api/v1/token` needs, read in one statement. On PostgreSQL the same
//! statement takes the sandbox's mint lease, and one of the installation's mint slots, when a mint is due;
//! and the views of every request waiting for a connection of the pool are read together, in one statement
//! for all of them (one round trip, one transaction, one plan), so a burst of sandboxes costs the database
//! a statement per free connection rather than one per sandbox.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::tokens::{BrokerView, CONNECTION_COLUMNS, LeaseWanted, Reusable, sealed_from};
use super::{Backend, Store, StoreError};

/// The best live token of sandbox `sandbox` for (`installation`, `repository`), still usable for longer than
/// the margin mintd refreshes at (half its life, at most ten minutes), so a refresh is never answered with
/// the token it is replacing: a condition on `minted_tokens t`, ordered, best first. Each argument is an SQL
/// expression; `now` the request's time (unix seconds).
pub(super) fn reusable(sandbox: &str, (installation, repository): (&str, &str), now: &str) -> String {
    format!(
        "t.sandbox_id = {sandbox} \
         AND t.installation_id = {installation} AND t.repository_id = {repository} \
         AND t.revoke_requested_at IS NULL AND t.sealed IS NOT NULL \
         AND t.expires_at - {now} > CASE WHEN (t.expires_at - t.minted_at) / 2 < 600 \
             THEN (t.expires_at - t.minted_at) / 2 ELSE 600 END \
         ORDER BY t.expires_at DESC, t.token_sha256 LIMIT 1"
    )
}

/// The connection's current target, for [`reusable`].
const CURRENT_TARGET: (&str, &str) = ("c.installation_id", "c.repository_id");

const SANDBOX: &str = "s.id, s.product_id, s.created_at, s.expires_at, s.revoked_at";

/// PostgreSQL's view of a batch of requests. `$1` is a JSON array with one object per request (its
/// parameters, as one request's view had them, and `n`, its place in the batch), read as the rows of `i`.
/// - `v`: each request's sandbox, connection, live token (LATERAL) and budget.
/// - `l`: the sandbox's mint lease, for each request whose view finds a mint due, unless another request
///   holds it or took it since (`mint_lease < now_ms`, checked again on the row's latest version).
/// - `w`, `f`, `k`: one slot per leased request, of its installation, unless its installation is in line at
///   the replica or paused. The free slots each installation needs are locked, skipping rows other
///   statements hold (as `take_mint_slots`), numbered, and handed to the requests in the batch's order.
static POSTGRES_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "WITH i AS (SELECT * FROM jsonb_to_recordset($1::jsonb) AS i(n BIGINT, hash TEXT, now BIGINT, \
           window_start BIGINT, now_ms BIGINT, until BIGINT, budget BIGINT, replaces TEXT, holder TEXT, \
           slots BIGINT, slot_until BIGINT, in_line TEXT)), \
         v AS (SELECT i.n, {SANDBOX}, {CONNECTION_COLUMNS}, \
           r.token_sha256 AS reuse_token_sha256, r.sealed AS reuse_sealed, r.seal_key AS reuse_seal_key, \
           r.minted_at AS reuse_minted_at, r.expires_at AS reuse_expires_at, \
           b.recent_mints, b.oldest_recent \
         FROM i JOIN sandboxes s ON s.credential_sha256 = i.hash JOIN connections c ON c.product_id = s.product_id \
         LEFT JOIN LATERAL (SELECT t.token_sha256, t.sealed, t.seal_key, t.minted_at, t.expires_at \
           FROM minted_tokens t WHERE {}) r ON TRUE \
         CROSS JOIN LATERAL (SELECT COUNT(*) AS recent_mints, MIN(t.minted_at) AS oldest_recent \
           FROM minted_tokens t WHERE t.sandbox_id = s.id AND t.minted_at > i.window_start) b), \
         l AS (UPDATE sandboxes SET mint_lease = i.until FROM v JOIN i ON i.n = v.n \
           WHERE sandboxes.id = v.id AND sandboxes.mint_lease < i.now_ms \
           AND v.revoked_at IS NULL AND v.expires_at > i.now AND v.status = 'active' \
           AND v.installation_id IS NOT NULL AND v.repository_id IS NOT NULL AND v.repository IS NOT NULL \
           AND (v.reuse_token_sha256 IS NULL OR v.reuse_token_sha256 = i.replaces) AND v.recent_mints < i.budget \
           RETURNING v.n, sandboxes.mint_lease), \
         w AS (SELECT l.n, v.installation_id, i.holder, i.slots, i.now_ms, i.slot_until, \
             row_number() OVER (PARTITION BY v.installation_id ORDER BY l.n) AS k \
           FROM l JOIN v ON v.n = l.n JOIN i ON i.n = l.n \
           WHERE NOT (v.installation_id::TEXT = ANY (string_to_array(i.in_line, ','))) \
           AND NOT EXISTS (SELECT 1 FROM installation_pauses p \
             WHERE p.installation_id = v.installation_id AND p.until_at > i.now)), \
         f AS (SELECT x.installation_id, x.slot, \
             row_number() OVER (PARTITION BY x.installation_id ORDER BY x.slot) AS k \
           FROM (SELECT installation_id, COUNT(*) AS wanted, MAX(slots) AS slots, MIN(now_ms) AS now_ms \
             FROM w GROUP BY installation_id) g \
           CROSS JOIN LATERAL (SELECT m.installation_id, m.slot FROM mint_slots m \
             WHERE m.installation_id = g.installation_id AND m.slot < g.slots AND m.lease_until < g.now_ms \
             ORDER BY m.slot LIMIT g.wanted FOR UPDATE OF m SKIP LOCKED) x), \
         k AS (UPDATE mint_slots SET holder = w.holder, lease_until = w.slot_until \
           FROM w JOIN f ON f.installation_id = w.installation_id AND f.k = w.k \
           WHERE mint_slots.installation_id = f.installation_id AND mint_slots.slot = f.slot \
           RETURNING w.n, mint_slots.slot) \
         SELECT v.*, l.mint_lease AS leased, k.slot FROM v LEFT JOIN l ON l.n = v.n LEFT JOIN k ON k.n = v.n",
        reusable("s.id", CURRENT_TARGET, "i.now")
    )
});

/// SQLite's view of one request: no LATERAL, so a scalar subquery per column, each a short walk of the same
/// index; no lease or slot (one process, whose locks are enough).
static SQLITE_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let rule = reusable("s.id", CURRENT_TARGET, "$2");
    let reuse = |column: &str| format!("(SELECT t.{column} FROM minted_tokens t WHERE {rule}) AS reuse_{column}");
    format!(
        "SELECT {SANDBOX}, {CONNECTION_COLUMNS}, {}, {}, {}, {}, {}, \
           (SELECT COUNT(*) FROM minted_tokens t WHERE t.sandbox_id = s.id AND t.minted_at > $3) AS recent_mints, \
           (SELECT MIN(t.minted_at) FROM minted_tokens t WHERE t.sandbox_id = s.id AND t.minted_at > $3) AS oldest_recent, \
           NULL AS leased, NULL AS slot \
         FROM sandboxes s JOIN connections c ON c.product_id = s.product_id \
         WHERE s.credential_sha256 = $1",
        reuse("token_sha256"),
        reuse("sealed"),
        reuse("seal_key"),
        reuse("minted_at"),
        reuse("expires_at"),
    )
});

impl Store {
    /// The broker's view of the sandbox holding the credential with this hash; `window_start` is the
    /// budget's. On PostgreSQL the same statement takes what `wanted` names when a mint is due, and reads
    /// the views of the other requests waiting for the pool with this one's.
    pub async fn broker_view(
        &self,
        credential_sha256: &str,
        now: i64,
        window_start: i64,
        wanted: &LeaseWanted<'_>,
    ) -> Result<Option<BrokerView>, StoreError> {
        let row = match self.backend {
            Backend::Sqlite => {
                sqlx::query(&SQLITE_SQL)
                    .bind(credential_sha256)
                    .bind(now)
                    .bind(window_start)
                    .fetch_optional(&self.pool)
                    .await?
            }
            Backend::Postgres => {
                let params = serde_json::json!({
                    "hash": credential_sha256,
                    "now": now,
                    "window_start": window_start,
                    "now_ms": wanted.now_ms,
                    "until": wanted.until,
                    "budget": wanted.budget,
                    "replaces": wanted.replaces.unwrap_or_default(),
                    "holder": wanted.slot.holder,
                    "slots": wanted.slot.slots,
                    "slot_until": wanted.slot.until,
                    "in_line": wanted.slot.in_line,
                });
                self.views.read(&self.pool, POSTGRES_SQL.as_str(), params).await?
            }
        };
        row.as_ref().map(view_from).transpose()
    }
}

fn view_from(row: &AnyRow) -> Result<BrokerView, StoreError> {
    let reusable = match (
        row.try_get::<Option<String>, _>("reuse_token_sha256")?,
        sealed_from(row.try_get("reuse_sealed")?, row.try_get("reuse_seal_key")?),
        row.try_get::<Option<i64>, _>("reuse_minted_at")?,
        row.try_get::<Option<i64>, _>("reuse_expires_at")?,
    ) {
        (Some(token_sha256), Some(sealed), Some(minted_at), Some(expires_at)) => Some(Reusable {
            token_sha256,
            sealed,
            minted_at,
            expires_at,
        }),
        _ => None,
    };
    Ok(BrokerView {
        sandbox: super::sandbox_from(row)?,
        connection: super::connection_from(row)?,
        reusable,
        recent_mints: row.try_get("recent_mints")?,
        oldest_recent_mint: row.try_get("oldest_recent")?,
        leased: row.try_get("leased")?,
        slot: row.try_get("slot")?,
    })
}
