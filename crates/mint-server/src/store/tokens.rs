//! Minted tokens: each one recorded (by hash, with its sealed copy) in the transaction that checks the
//! sandbox may still have it; the revocation queue any replica works; and the broker's one-query view.

use sqlx::Row;

use super::audit::{Action, Actor, NewEvent, record};
use super::{Backend, Store, StoreError, int};
use crate::events;
use crate::model::{Connection, SandboxRow, rfc3339};

/// One token GitHub just issued, as recorded: its hash and its sealed copy, never the token. Owned, so
/// SQLite's writer can record it with others'.
#[derive(Debug, Clone)]
pub struct NewToken {
    pub token_sha256: String,
    pub sandbox_id: String,
    pub installation_id: u64,
    pub repository_id: u64,
    /// `owner/name` as GitHub named it in the mint.
    pub repository: String,
    /// What GitHub granted the token, for the audit trail.
    pub permissions: mint_github::Permissions,
    /// Unix seconds.
    pub minted_at: i64,
    pub expires_at: i64,
    pub sealed: crate::seal::Sealed,
}

/// A token waiting for SQLite's writer to record it, and who waits for the outcome.
pub(crate) struct PendingRecord {
    token: NewToken,
    /// The audit row's detail.
    detail: serde_json::Value,
    now_ms: i64,
    reply: tokio::sync::oneshot::Sender<Result<sqlx::any::AnyRow, StoreError>>,
}

impl std::fmt::Debug for PendingRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingRecord")
            .field("sandbox_id", &self.token.sandbox_id)
            .finish_non_exhaustive()
    }
}

/// A live token the broker may hand out again instead of minting.
#[derive(Debug, Clone)]
pub struct Reusable {
    pub token_sha256: String,
    pub sealed: crate::seal::Sealed,
    pub minted_at: i64,
    pub expires_at: i64,
}

/// What `POST /api/v1/token` needs, read in one query: the sandbox, its product's connection, the best
/// live token for that connection, and how many tokens the sandbox was minted in the budget's window.
#[derive(Debug)]
pub struct BrokerView {
    pub sandbox: SandboxRow,
    pub connection: Connection,
    pub reusable: Option<Reusable>,
    pub recent_mints: i64,
    /// The oldest mint in the window (unix seconds), when there is one.
    pub oldest_recent_mint: Option<i64>,
    /// The sandbox's mint lease, taken by the view itself (PostgreSQL): its value, until (unix ms).
    pub leased: Option<i64>,
    /// A slot of the installation's, taken by the view with the lease (PostgreSQL), for the holder the
    /// caller named.
    pub slot: Option<i64>,
}

/// What the broker's view asks for on PostgreSQL when it would mint: the sandbox's mint lease, in the same
/// statement (one round trip fewer per token). It is taken only when the view finds the sandbox usable,
/// its connection active, no live token to hand out again (but the one the caller reported failing), and
/// budget left; and only if no other request holds it.
#[derive(Debug, Clone)]
pub struct LeaseWanted<'a> {
    /// Unix ms: now, and the lease's end.
    pub now_ms: i64,
    pub until: i64,
    /// Mints the sandbox may have in the budget's window.
    pub budget: i64,
    pub replaces: Option<&'a str>,
    /// With the lease, one of the installation's mint slots (see [`SlotWanted`]).
    pub slot: SlotWanted<'a>,
}

/// A fleet-wide mint slot, taken by the broker's view with the sandbox's lease (PostgreSQL) when the
/// installation is free to take one out of line: nobody is waiting for it at this replica, and GitHub has not
/// paused it.
#[derive(Debug, Clone)]
pub struct SlotWanted<'a> {
    pub holder: &'a str,
    /// The installation's slots (`--mints-per-installation`).
    pub slots: i64,
    /// The slot's lease (unix ms).
    pub until: i64,
    /// Installations not to take a slot of here, their ids joined by commas: their waiters take turns.
    pub in_line: String,
}

/// A revocation a replica took on: the lease is its until it reports the outcome.
#[derive(Debug)]
pub struct Claimed {
    pub token_sha256: String,
    pub sandbox_id: String,
    pub sealed: crate::seal::Sealed,
    pub expires_at: i64,
    pub attempts: i64,
    /// When the event asked for it (unix ms).
    pub requested_at: i64,
}

/// A sandbox, or every sandbox of a product.
#[derive(Debug, Clone, Copy)]
pub enum Whose<'a> {
    Sandbox(&'a str),
    Product(&'a str),
}

/// What came of one revocation attempt.
#[derive(Debug)]
pub enum Outcome<'a> {
    /// GitHub agreed: revoked now, or already dead (401). The sealed copy goes.
    Dead,
    /// It failed (5xx, timeout, rate limit): try again from `next_at` (unix ms).
    Retry { next_at: i64, error: &'a str },
    /// It can no longer be revoked (expired meanwhile, or its sealed copy does not open): the sealed copy
    /// goes, and the token is not called revoked.
    GiveUp { why: &'a str },
    /// This replica cannot open it (another seal key): leave it to a replica that can, from `next_at`.
    NotMine { next_at: i64 },
}

/// Which live tokens an event ends.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Ending<'a> {
    /// Every one of the sandbox's.
    Sandbox(&'a str),
    /// Every one of the product's sandboxes' that `keep` (installation, repository) does not cover.
    ProductExcept {
        product_id: &'a str,
        keep: Option<(u64, u64)>,
    },
    /// The product's sandboxes' tokens for this installation and repository.
    ProductTarget { product_id: &'a str, target: (u64, u64) },
}

/// The condition of a token waiting in the revocation queue (kept in step with the queue's partial index).
const QUEUED: &str = "revoke_requested_at IS NOT NULL AND revoked_at IS NULL AND sealed IS NOT NULL";

pub(super) fn sealed_from(text: Option<String>, key_id: Option<String>) -> Option<crate::seal::Sealed> {
    Some(crate::seal::Sealed {
        text: text?,
        key_id: key_id?,
    })
}

/// Queue the live tokens `ending` names for revocation, in the caller's transaction, and tell every
/// replica's revoker (on PostgreSQL the notification is delivered when the transaction commits). Returns how
/// many were queued.
pub(crate) async fn queue_revocations(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    backend: Backend,
    ending: Ending<'_>,
    reason: &str,
    now_ms: i64,
) -> Result<u64, StoreError> {
    let scope = match ending {
        Ending::Sandbox(_) => "sandbox_id = $4",
        Ending::ProductExcept { .. } => {
            "sandbox_id IN (SELECT id FROM sandboxes WHERE product_id = $4) AND NOT (installation_id = $5 AND repository_id = $6)"
        }
        Ending::ProductTarget { .. } => {
            "sandbox_id IN (SELECT id FROM sandboxes WHERE product_id = $4) AND installation_id = $5 AND repository_id = $6"
        }
    };
    let sql = format!(
        "UPDATE minted_tokens SET revoke_requested_at = $1, revoke_reason = $2, revoke_next_at = $1 \
         WHERE revoke_requested_at IS NULL AND sealed IS NOT NULL AND expires_at > $3 AND {scope}"
    );
    let query = sqlx::query(&sql).bind(now_ms).bind(reason).bind(now_ms / 1000);
    let query = match ending {
        Ending::Sandbox(id) => query.bind(id),
        Ending::ProductExcept { product_id, keep } => {
            let (installation, repository) = keep.map_or((-1, -1), |(i, r)| (int(i), int(r)));
            query.bind(product_id).bind(installation).bind(repository)
        }
        Ending::ProductTarget { product_id, target } => query.bind(product_id).bind(int(target.0)).bind(int(target.1)),
    };
    let queued = query.execute(&mut **tx).await?.rows_affected();
    if queued > 0 {
        notify(tx, backend, events::REVOCATIONS).await?;
    }
    Ok(queued)
}

/// Tell the other replicas (PostgreSQL: delivered at commit; nothing to do on SQLite's one process).
pub(crate) async fn notify(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    backend: Backend,
    payload: &str,
) -> Result<(), StoreError> {
    if backend == Backend::Postgres {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(events::CHANNEL)
            .bind(payload)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// Why a sandbox may not have a token for (installation, repository) now, or `None` when it may.
fn ended_by(
    sandbox: &SandboxRow,
    connection: &Connection,
    (installation_id, repository_id): (u64, u64),
    now: i64,
) -> Option<String> {
    if sandbox.revoked_at.is_some() {
        return Some(SANDBOX_TORN_DOWN.to_owned());
    }
    if now >= sandbox.expires_at {
        return Some(SANDBOX_EXPIRED.to_owned());
    }
    match connection.target() {
        None => Some(connection.reason.clone()),
        Some((i, r, name)) if (i, r) != (installation_id, repository_id) => {
            Some(format!("the product's GitHub connection moved to {name}"))
        }
        Some(_) => None,
    }
}

/// Why a torn-down sandbox's tokens die, in the words its git sees.
pub const SANDBOX_TORN_DOWN: &str =
    "this sandbox was torn down, and its GitHub access with it: ask the orchestrator for a new sandbox";
pub const SANDBOX_EXPIRED: &str =
    "this sandbox's credential expired, and its GitHub access with it: ask the orchestrator for a new sandbox";

impl Store {
    /// Record a token GitHub just issued, and in the same transaction check that the sandbox may still
    /// have it. An event that committed meanwhile (teardown, Disconnect, Change repository) either is seen
    /// here, or sees this row: on PostgreSQL the check locks the sandbox and connection rows (`FOR SHARE`),
    /// which those events update first; SQLite has one writer. The audit trail's row is written with it.
    /// `Some(reason)` means the sandbox may not have it: it is queued for revocation, and must not be handed
    /// out.
    /// `lease` is the sandbox's mint lease as the caller holds it, and `slot` the installation's mint slot
    /// (PostgreSQL): the same statement gives both back.
    pub async fn record_mint(
        &self,
        token: &NewToken,
        now_ms: i64,
        (lease, slot): (Option<i64>, Option<&super::SlotRow>),
    ) -> Result<Option<String>, StoreError> {
        let event = NewEvent {
            product_id: "",
            actor: &Actor::Sandbox,
            action: Action::TokenMinted,
            sandbox_id: Some(&token.sandbox_id),
            repository: Some(&token.repository),
            detail: serde_json::json!({
                "token_sha256": token.token_sha256.get(..12).unwrap_or_default(),
                "installation_id": token.installation_id,
                "repository_id": token.repository_id,
                "permissions": token.permissions,
                "expires_at": rfc3339(token.expires_at),
            }),
        };
        let row = match self.backend {
            // One statement, shared with the other tokens waiting for a connection of the pool: see
            // [`RECORD_SQL`].
            Backend::Postgres => {
                let params = serde_json::json!({
                    "token_sha256": token.token_sha256,
                    "sandbox_id": token.sandbox_id,
                    "installation_id": int(token.installation_id),
                    "repository_id": int(token.repository_id),
                    "minted_at": token.minted_at,
                    "expires_at": token.expires_at,
                    "sealed": token.sealed.text,
                    "seal_key": token.sealed.key_id,
                    "repository": token.repository,
                    "event_id": crate::secrets::new_id("evt_"),
                    "at": now_ms,
                    "actor": event.actor.kind(),
                    "action": event.action.as_str(),
                    "detail": event.detail.to_string(),
                    // No lease: -1, which no lease ever is; no slot: -1, which no slot ever is.
                    "lease": lease.unwrap_or(-1),
                    "slot_installation": slot.map_or(-1, |s| int(s.installation_id)),
                    "slot": slot.map_or(-1, |s| s.slot),
                    "holder": slot.map_or("", |s| s.holder.as_str()),
                });
                self.records
                    .read(&self.pool, RECORD_SQL.as_str(), params)
                    .await?
                    .ok_or_else(|| StoreError::Unexpected(format!("sandbox {} is gone", token.sandbox_id)))?
            }
            // In-process: a transaction of plain statements, under the one writer, shared with the other
            // records waiting for it (one commit, one sync of the log, for all of them).
            Backend::Sqlite => {
                let (reply, answer) = tokio::sync::oneshot::channel();
                self.pending_records().push(PendingRecord {
                    token: token.clone(),
                    detail: event.detail,
                    now_ms,
                    reply,
                });
                {
                    let _writing = self.writing().await;
                    // Empty when the writer before took this record with its own: then its answer is here.
                    let batch = std::mem::take(&mut *self.pending_records());
                    if !batch.is_empty() {
                        self.record_batch(batch).await;
                    }
                }
                answer.await.map_err(|_| {
                    StoreError::Unexpected("the writer recording this token stopped before it finished".into())
                })??
            }
        };
        let sandbox = super::sandbox_from(&row)?;
        let connection = super::connection_from(&row)?;
        let ended = ended_by(
            &sandbox,
            &connection,
            (token.installation_id, token.repository_id),
            now_ms / 1000,
        );
        if let Some(reason) = &ended {
            // The event that ended the sandbox's right committed first, and queued the tokens it saw; this
            // one it could not see, so it is queued here. It was never handed out.
            let _writing = self.writing().await;
            let mut tx = self.pool.begin().await?;
            sqlx::query(
                "UPDATE minted_tokens SET revoke_requested_at = $1, revoke_reason = $2, revoke_next_at = $1 \
                 WHERE token_sha256 = $3",
            )
            .bind(now_ms)
            .bind(reason)
            .bind(&token.token_sha256)
            .execute(&mut *tx)
            .await?;
            notify(&mut tx, self.backend, events::REVOCATIONS).await?;
            tx.commit().await?;
            self.events.revocations_queued();
        }
        Ok(ended)
    }

    fn pending_records(&self) -> std::sync::MutexGuard<'_, Vec<PendingRecord>> {
        self.pending_records
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Record a batch of tokens on SQLite in one transaction (under the writer), and answer each; if the
    /// transaction fails, each is tried alone so that one record's failure is its own.
    async fn record_batch(&self, batch: Vec<PendingRecord>) {
        let rows = if batch.len() > 1 {
            self.record_together(&batch).await.ok()
        } else {
            None
        };
        match rows {
            Some(rows) => {
                for (pending, row) in batch.into_iter().zip(rows) {
                    let _ = pending.reply.send(Ok(row));
                }
            }
            None => {
                for pending in batch {
                    let one = self.record_together(std::slice::from_ref(&pending)).await;
                    let _ = pending.reply.send(one.map(|mut rows| rows.remove(0)));
                }
            }
        }
    }

    /// Each token, its audit row and its sandbox and connection as they stand, in one SQLite transaction.
    async fn record_together(&self, batch: &[PendingRecord]) -> Result<Vec<sqlx::any::AnyRow>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let mut rows = Vec::with_capacity(batch.len());
        for pending in batch {
            bind_token(sqlx::query(INSERT_TOKEN), &pending.token)
                .execute(&mut *tx)
                .await?;
            let row = sqlx::query(&format!(
                "SELECT s.id, s.product_id, s.created_at, s.expires_at, s.revoked_at, {CONNECTION_COLUMNS} \
                 FROM sandboxes s JOIN connections c ON c.product_id = s.product_id WHERE s.id = $1"
            ))
            .bind(&pending.token.sandbox_id)
            .fetch_one(&mut *tx)
            .await?;
            let product_id: String = row.try_get("product_id")?;
            record(
                &mut tx,
                &NewEvent {
                    product_id: &product_id,
                    actor: &Actor::Sandbox,
                    action: Action::TokenMinted,
                    sandbox_id: Some(&pending.token.sandbox_id),
                    repository: Some(&pending.token.repository),
                    detail: pending.detail.clone(),
                },
                pending.now_ms,
            )
            .await?;
            rows.push(row);
        }
        tx.commit().await?;
        Ok(rows)
    }

    /// The best live token of the sandbox for (installation, repository), by the same rule as
    /// [`Store::broker_view`]: what a request that waited for another one's mint hands out.
    pub async fn reusable_token(
        &self,
        sandbox_id: &str,
        (installation_id, repository_id): (u64, u64),
        now: i64,
    ) -> Result<Option<Reusable>, StoreError> {
        static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
            format!(
                "SELECT t.token_sha256, t.sealed, t.seal_key, t.minted_at, t.expires_at FROM minted_tokens t WHERE {}",
                super::view::reusable("$1", ("$2", "$3"), "$4")
            )
        });
        let row = sqlx::query(&SQL)
            .bind(sandbox_id)
            .bind(int(installation_id))
            .bind(int(repository_id))
            .bind(now)
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        Ok(
            sealed_from(row.try_get("sealed")?, row.try_get("seal_key")?).map(|sealed| Reusable {
                token_sha256: row.try_get("token_sha256").unwrap_or_default(),
                sealed,
                minted_at: row.try_get("minted_at").unwrap_or_default(),
                expires_at: row.try_get("expires_at").unwrap_or_default(),
            }),
        )
    }

    /// Tokens minted for the sandbox since `window_start` (unix seconds), and the oldest one's time.
    pub async fn recent_mints(&self, sandbox_id: &str, window_start: i64) -> Result<(i64, Option<i64>), StoreError> {
        let row =
            sqlx::query("SELECT COUNT(*), MIN(minted_at) FROM minted_tokens WHERE sandbox_id = $1 AND minted_at > $2")
                .bind(sandbox_id)
                .bind(window_start)
                .fetch_one(&self.pool)
                .await?;
        Ok((row.try_get(0)?, row.try_get(1)?))
    }

    /// Take the sandbox's mint lease until `until` (unix ms) if nobody holds it and no token usable in
    /// place of a new one was recorded for the sandbox since `viewed_at` (unix seconds; `replaces` is the
    /// one its caller reported failing): one mint at a time per sandbox across the fleet, and none after
    /// another replica's mint the caller has not seen. A replica that dies holding it frees it when the
    /// lease runs out.
    pub async fn take_mint_lease(
        &self,
        sandbox_id: &str,
        (now_ms, until): (i64, i64),
        viewed_at: i64,
        replaces: Option<&str>,
    ) -> Result<bool, StoreError> {
        let _writing = self.writing().await;
        let taken = sqlx::query(
            "UPDATE sandboxes SET mint_lease = $1 WHERE id = $2 AND mint_lease < $3 \
             AND NOT EXISTS (SELECT 1 FROM minted_tokens t WHERE t.sandbox_id = $2 AND t.minted_at >= $4 \
               AND t.revoke_requested_at IS NULL AND t.token_sha256 <> $5)",
        )
        .bind(until)
        .bind(sandbox_id)
        .bind(now_ms)
        .bind(viewed_at)
        .bind(replaces.unwrap_or_default())
        .execute(&self.pool)
        .await?;
        Ok(taken.rows_affected() == 1)
    }

    /// Extend a lease this replica holds (it still holds it when the value is the one it last wrote).
    pub async fn renew_mint_lease(&self, sandbox_id: &str, held: i64, until: i64) -> Result<bool, StoreError> {
        let _writing = self.writing().await;
        let renewed = sqlx::query("UPDATE sandboxes SET mint_lease = $1 WHERE id = $2 AND mint_lease = $3")
            .bind(until)
            .bind(sandbox_id)
            .bind(held)
            .execute(&self.pool)
            .await?;
        Ok(renewed.rows_affected() == 1)
    }

    pub async fn release_mint_lease(&self, sandbox_id: &str, until: i64) -> Result<(), StoreError> {
        let _writing = self.writing().await;
        sqlx::query("UPDATE sandboxes SET mint_lease = 0 WHERE id = $1 AND mint_lease = $2")
            .bind(sandbox_id)
            .bind(until)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Take up to `limit` queued revocations that are due and not held by another replica, until
    /// `lease_until` (unix ms). `SKIP LOCKED` on PostgreSQL: replicas working the queue at once never wait
    /// on each other's rows, and never take the same one.
    pub async fn claim_revocations(
        &self,
        now_ms: i64,
        lease_until: i64,
        limit: i64,
    ) -> Result<Vec<Claimed>, StoreError> {
        let _writing = self.writing().await;
        let skip_locked = match self.backend {
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let rows = sqlx::query(&format!(
            "UPDATE minted_tokens SET revoke_lease = $1, revoke_attempts = revoke_attempts + 1 \
             WHERE token_sha256 IN (SELECT token_sha256 FROM minted_tokens \
               WHERE {QUEUED} AND revoke_next_at <= $2 AND revoke_lease < $2 \
               ORDER BY revoke_next_at LIMIT $3{skip_locked}) \
             RETURNING token_sha256, sandbox_id, sealed, seal_key, expires_at, revoke_attempts, revoke_requested_at"
        ))
        .bind(lease_until)
        .bind(now_ms)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let mut claimed = Vec::with_capacity(rows.len());
        for r in &rows {
            // A row whose sealed copy went meanwhile (expired by another replica's sweep) is not work.
            let Some(sealed) = sealed_from(r.try_get("sealed")?, r.try_get("seal_key")?) else {
                continue;
            };
            claimed.push(Claimed {
                token_sha256: r.try_get("token_sha256")?,
                sandbox_id: r.try_get("sandbox_id")?,
                sealed,
                expires_at: r.try_get("expires_at")?,
                attempts: r.try_get("revoke_attempts")?,
                requested_at: r.try_get::<Option<i64>, _>("revoke_requested_at")?.unwrap_or(now_ms),
            });
        }
        Ok(claimed)
    }

    /// Record what came of a claimed revocation; a token's end (revoked, or given up) goes into the audit
    /// trail in the same transaction.
    pub async fn finish_revocation(
        &self,
        token_sha256: &str,
        outcome: &Outcome<'_>,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let _writing = self.writing().await;
        let mut tx = self.pool.begin().await?;
        let query = match outcome {
            Outcome::Dead => sqlx::query(
                "UPDATE minted_tokens SET revoked_at = $1, sealed = NULL, seal_key = NULL, revoke_lease = 0, \
                 revoke_error = NULL WHERE token_sha256 = $2",
            )
            .bind(now_ms / 1000),
            Outcome::Retry { next_at, error } => {
                sqlx::query(
                    "UPDATE minted_tokens SET revoke_lease = 0, revoke_next_at = $1, revoke_error = $2 WHERE token_sha256 = $3",
                )
                .bind(*next_at)
                .bind(*error)
            }
            Outcome::GiveUp { why } => sqlx::query(
                "UPDATE minted_tokens SET sealed = NULL, seal_key = NULL, revoke_lease = 0, revoke_error = $1 \
                 WHERE token_sha256 = $2",
            )
            .bind(*why),
            Outcome::NotMine { next_at } => {
                sqlx::query("UPDATE minted_tokens SET revoke_lease = 0, revoke_next_at = $1 WHERE token_sha256 = $2")
                    .bind(*next_at)
            }
        };
        query.bind(token_sha256).execute(&mut *tx).await?;
        let (action, why) = match outcome {
            Outcome::Dead => (Action::TokenRevoked, None),
            Outcome::GiveUp { why } => (Action::TokenNotRevoked, Some(*why)),
            Outcome::Retry { .. } | Outcome::NotMine { .. } => return Ok(tx.commit().await?),
        };
        let row = sqlx::query(
            "SELECT t.sandbox_id, t.repository, t.repository_id, t.expires_at, t.revoke_reason, t.revoke_attempts, \
               t.revoke_requested_at, s.product_id \
             FROM minted_tokens t JOIN sandboxes s ON s.id = t.sandbox_id WHERE t.token_sha256 = $1",
        )
        .bind(token_sha256)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(row) = row {
            let product_id: String = row.try_get("product_id")?;
            let sandbox_id: String = row.try_get("sandbox_id")?;
            let repository: Option<String> = row.try_get("repository")?;
            let requested: Option<i64> = row.try_get("revoke_requested_at")?;
            let event = NewEvent {
                product_id: &product_id,
                actor: &Actor::Server,
                action,
                sandbox_id: Some(&sandbox_id),
                repository: repository.as_deref(),
                detail: serde_json::json!({
                    "token_sha256": token_sha256.get(..12).unwrap_or_default(),
                    "repository_id": super::uint(row.try_get("repository_id")?),
                    "expires_at": rfc3339(row.try_get("expires_at")?),
                    "reason": row.try_get::<Option<String>, _>("revoke_reason")?,
                    "why": why,
                    "attempts": row.try_get::<i64, _>("revoke_attempts")?,
                    "after_ms": requested.map(|at| now_ms - at),
                }),
            };
            record(&mut tx, &event, now_ms).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// When the next queued revocation is due (unix ms), if any is queued.
    pub async fn next_revocation_due(&self) -> Result<Option<i64>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT MIN(CASE WHEN revoke_lease > revoke_next_at THEN revoke_lease ELSE revoke_next_at END) \
             FROM minted_tokens WHERE {QUEUED}"
        ))
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get::<Option<i64>, _>(0)?)
    }

    /// (live, queued): tokens that still work and are not queued for revocation, and tokens queued that
    /// GitHub has not confirmed dead.
    pub async fn token_counts(&self, now: i64) -> Result<(i64, i64), StoreError> {
        let row = sqlx::query(&format!(
            "SELECT \
               CAST(COALESCE(SUM(CASE WHEN revoke_requested_at IS NULL AND revoked_at IS NULL AND expires_at > $1 THEN 1 ELSE 0 END), 0) AS BIGINT), \
               CAST(COALESCE(SUM(CASE WHEN {QUEUED} THEN 1 ELSE 0 END), 0) AS BIGINT) \
             FROM minted_tokens WHERE sealed IS NOT NULL"
        ))
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        Ok((row.try_get(0)?, row.try_get(1)?))
    }

    /// Revocations still waiting for GitHub's word among the tokens of `whose`.
    pub async fn pending_revocations(&self, whose: Whose<'_>) -> Result<i64, StoreError> {
        let (scope, id) = match whose {
            Whose::Sandbox(id) => ("sandbox_id = $1", id),
            Whose::Product(id) => ("sandbox_id IN (SELECT id FROM sandboxes WHERE product_id = $1)", id),
        };
        let row = sqlx::query(&format!(
            "SELECT COUNT(*) FROM minted_tokens WHERE {QUEUED} AND {scope}"
        ))
        .bind(id)
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get(0)?)
    }

    /// Housekeeping every replica runs: the sealed copies of expired tokens go (nothing left to revoke), and
    /// the live tokens of sandboxes whose credential expired are queued. Returns (forgotten, queued).
    pub async fn sweep_tokens(&self, now_ms: i64) -> Result<(u64, u64), StoreError> {
        let now = now_ms / 1000;
        let _writing = self.writing().await;
        let mut tx = self.pool.begin().await?;
        let forgotten = sqlx::query(
            "UPDATE minted_tokens SET sealed = NULL, seal_key = NULL, revoke_lease = 0 \
             WHERE sealed IS NOT NULL AND expires_at <= $1",
        )
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let queued = sqlx::query(
            "UPDATE minted_tokens SET revoke_requested_at = $1, revoke_reason = $2, revoke_next_at = $1 \
             WHERE revoke_requested_at IS NULL AND sealed IS NOT NULL AND expires_at > $3 \
             AND sandbox_id IN (SELECT id FROM sandboxes WHERE expires_at <= $3 AND revoked_at IS NULL)",
        )
        .bind(now_ms)
        .bind(SANDBOX_EXPIRED)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if queued > 0 {
            notify(&mut tx, self.backend, events::REVOCATIONS).await?;
        }
        tx.commit().await?;
        Ok((forgotten, queued))
    }

    /// Every token recorded for the sandbox, newest first, as operators see them: never the token.
    pub async fn sandbox_tokens(&self, sandbox_id: &str) -> Result<Vec<TokenRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT token_sha256, installation_id, repository_id, minted_at, expires_at, revoked_at, \
             CAST(CASE WHEN sealed IS NULL THEN 0 ELSE 1 END AS BIGINT) AS held, revoke_reason, revoke_requested_at, revoke_attempts, revoke_error \
             FROM minted_tokens WHERE sandbox_id = $1 ORDER BY minted_at DESC, token_sha256",
        )
        .bind(sandbox_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(TokenRecord {
                    token_sha256: r.try_get("token_sha256")?,
                    installation_id: super::uint(r.try_get("installation_id")?),
                    repository_id: super::uint(r.try_get("repository_id")?),
                    minted_at: r.try_get("minted_at")?,
                    expires_at: r.try_get("expires_at")?,
                    revoked_at: r.try_get("revoked_at")?,
                    sealed: r.try_get::<i64, _>("held")? != 0,
                    revoke_reason: r.try_get("revoke_reason")?,
                    revoke_requested_at: r.try_get("revoke_requested_at")?,
                    revoke_attempts: r.try_get("revoke_attempts")?,
                    revoke_error: r.try_get("revoke_error")?,
                })
            })
            .collect()
    }
}

/// A recorded token as operators see it.
#[derive(Debug, Clone)]
pub struct TokenRecord {
    pub token_sha256: String,
    pub installation_id: u64,
    pub repository_id: u64,
    pub minted_at: i64,
    pub expires_at: i64,
    /// When GitHub agreed it is dead (unix seconds).
    pub revoked_at: Option<i64>,
    /// A sealed copy is kept (it may still need revoking).
    pub sealed: bool,
    pub revoke_reason: Option<String>,
    pub revoke_requested_at: Option<i64>,
    pub revoke_attempts: i64,
    pub revoke_error: Option<String>,
}

impl TokenRecord {
    /// `live`, `revoking` (queued, GitHub has not agreed yet), `revoked` (GitHub agreed) or `expired`.
    pub fn state(&self, now: i64) -> &'static str {
        if self.revoked_at.is_some() {
            "revoked"
        } else if self.expires_at <= now || !self.sealed {
            "expired"
        } else if self.revoke_requested_at.is_some() {
            "revoking"
        } else {
            "live"
        }
    }
}

/// A minted token's row: $1 to $9.
/// [`INSERT_TOKEN`]'s nine parameters, `$1` to `$9`, from the token.
fn bind_token<'q>(query: AnyQuery<'q>, token: &'q NewToken) -> AnyQuery<'q> {
    query
        .bind(&token.token_sha256)
        .bind(&token.sandbox_id)
        .bind(int(token.installation_id))
        .bind(int(token.repository_id))
        .bind(token.minted_at)
        .bind(token.expires_at)
        .bind(&token.sealed.text)
        .bind(&token.sealed.key_id)
        .bind(&token.repository)
}

type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>;

const INSERT_TOKEN: &str = "INSERT INTO minted_tokens (token_sha256, sandbox_id, installation_id, repository_id, \
     minted_at, expires_at, sealed, seal_key, repository) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";

/// PostgreSQL's record of a batch of tokens (`$1`: one JSON object per token, see [`super::batch`]): the
/// tokens, their audit rows, each sandbox's mint lease and installation's slot given back, and the check,
/// which locks each sandbox's row (the lease's update) and its connection's (`FOR SHARE`). Data-modifying
/// CTEs run to completion whether or not the query reads them, in the statement's own transaction; the
/// update's RETURNING is each sandbox's latest version.
static RECORD_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "WITH i AS (SELECT * FROM jsonb_to_recordset($1::jsonb) AS i(n BIGINT, token_sha256 TEXT, sandbox_id TEXT, \
           installation_id BIGINT, repository_id BIGINT, minted_at BIGINT, expires_at BIGINT, sealed TEXT, \
           seal_key TEXT, repository TEXT, event_id TEXT, at BIGINT, actor TEXT, action TEXT, detail TEXT, \
           lease BIGINT, slot_installation BIGINT, slot BIGINT, holder TEXT)), \
         t AS (INSERT INTO minted_tokens (token_sha256, sandbox_id, installation_id, repository_id, minted_at, \
           expires_at, sealed, seal_key, repository) \
           SELECT token_sha256, sandbox_id, installation_id, repository_id, minted_at, expires_at, sealed, \
           seal_key, repository FROM i), \
         a AS (INSERT INTO audit_events (id, product_id, at, actor, action, sandbox_id, repository, detail) \
           SELECT i.event_id, s.product_id, i.at, i.actor, i.action, s.id, i.repository, i.detail \
           FROM i JOIN sandboxes s ON s.id = i.sandbox_id), \
         s AS (UPDATE sandboxes SET mint_lease = CASE WHEN mint_lease = i.lease THEN 0 ELSE mint_lease END \
           FROM i WHERE sandboxes.id = i.sandbox_id \
           RETURNING i.n, sandboxes.id, sandboxes.product_id, sandboxes.created_at, sandboxes.expires_at, \
           sandboxes.revoked_at), \
         k AS (UPDATE mint_slots SET holder = NULL, lease_until = 0 FROM i \
           WHERE mint_slots.installation_id = i.slot_installation AND mint_slots.slot = i.slot \
           AND mint_slots.holder = i.holder) \
         SELECT s.n, s.id, s.product_id, s.created_at, s.expires_at, s.revoked_at, {CONNECTION_COLUMNS} \
         FROM s JOIN connections c ON c.product_id = s.product_id FOR SHARE OF c"
    )
});

/// The connection's columns, for a query joining `connections c`.
pub(crate) const CONNECTION_COLUMNS: &str = "c.status, c.reason, c.installation_id, c.repository_id, c.repository, \
     c.account_login, c.account_type, c.installation_url, c.updated_at";
