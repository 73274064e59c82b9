//! What replicas share for minting: GitHub's pauses, the fleet-wide slots, the sweep's connection.

use sqlx::Row;

use super::{Store, StoreError, int};

/// A fleet-wide mint slot's row as its holder knows it, for a statement that gives it back along with its
/// own work (the token's record).
#[derive(Debug, Clone)]
pub struct SlotRow {
    pub installation_id: u64,
    pub slot: i64,
    /// The holding replica's id in the table.
    pub holder: String,
}

impl Store {
    /// GitHub asked us to wait until `until` (unix seconds) before minting for the installation again.
    /// A later pause replaces an earlier one; an earlier one never shortens a later.
    pub async fn pause_installation(&self, installation_id: u64, until: i64, reason: &str) -> Result<(), StoreError> {
        let _writing = self.writing().await;
        sqlx::query(
            "INSERT INTO installation_pauses (installation_id, until_at, reason) VALUES ($1, $2, $3) \
             ON CONFLICT (installation_id) DO UPDATE SET until_at = excluded.until_at, reason = excluded.reason \
             WHERE installation_pauses.until_at < excluded.until_at",
        )
        .bind(int(installation_id))
        .bind(until)
        .bind(reason)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
    /// Until when (unix seconds) the installation's mints are paused, if they are at `now`.
    pub async fn paused_until(&self, installation_id: u64, now: i64) -> Result<Option<i64>, StoreError> {
        let row = sqlx::query("SELECT until_at FROM installation_pauses WHERE installation_id = $1 AND until_at > $2")
            .bind(int(installation_id))
            .bind(now)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| Ok(r.try_get(0)?)).transpose()
    }
    /// Make sure the installation has `slots` slot rows (PostgreSQL only). Idempotent, so every replica
    /// runs it once per installation it mints for.
    pub async fn ensure_mint_slots(&self, installation_id: u64, slots: usize) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO mint_slots (installation_id, slot, lease_until) \
             SELECT $1, s, 0 FROM generate_series(0::BIGINT, $2::BIGINT - 1) AS s ON CONFLICT DO NOTHING",
        )
        .bind(int(installation_id))
        .bind(i64::try_from(slots).unwrap_or(i64::MAX))
        .execute(&self.pool)
        .await?;
        Ok(())
    }
    /// Take up to `count` free slots of the installation's first `slots` for `holder` until `lease_until`
    /// (unix ms), unless the installation is paused (PostgreSQL only): one round trip for several waiters in
    /// line. `SKIP LOCKED`: replicas taking slots at once never wait on each other's rows, and two never get
    /// the same slot.
    pub async fn take_mint_slots(
        &self,
        installation_id: u64,
        (slots, count): (usize, usize),
        holder: &str,
        now_ms: i64,
        lease_until: i64,
    ) -> Result<Vec<i64>, StoreError> {
        let rows = sqlx::query(
            "UPDATE mint_slots SET holder = $1, lease_until = $2 \
             WHERE installation_id = $3 AND slot IN ( \
               SELECT slot FROM mint_slots WHERE installation_id = $3 AND slot < $4 AND lease_until < $5 \
               AND NOT EXISTS (SELECT 1 FROM installation_pauses p WHERE p.installation_id = $3 AND p.until_at > $6) \
               ORDER BY slot LIMIT $7 FOR UPDATE SKIP LOCKED) \
             RETURNING slot",
        )
        .bind(holder)
        .bind(lease_until)
        .bind(int(installation_id))
        .bind(i64::try_from(slots).unwrap_or(i64::MAX))
        .bind(now_ms)
        .bind(now_ms / 1000)
        .bind(i64::try_from(count).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
    }
    /// Push the slot's lease to `lease_until` (unix ms) while `holder` still holds it; false if it does not.
    pub async fn renew_mint_slot(
        &self,
        installation_id: u64,
        slot: i64,
        holder: &str,
        lease_until: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE mint_slots SET lease_until = $1 WHERE installation_id = $2 AND slot = $3 AND holder = $4",
        )
        .bind(lease_until)
        .bind(int(installation_id))
        .bind(slot)
        .bind(holder)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }
    /// Give a slot back (only if `holder` still holds it: a lease that ran out may be someone else's now).
    pub async fn release_mint_slot(&self, installation_id: u64, slot: i64, holder: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE mint_slots SET holder = NULL, lease_until = 0 WHERE installation_id = $1 AND slot = $2 AND holder = $3")
            .bind(int(installation_id))
            .bind(slot)
            .bind(holder)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
    /// Slots of the installation held now (for tests and operators: "how many mints are in flight").
    pub async fn mint_slots_held(&self, installation_id: u64, now_ms: i64) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) FROM mint_slots WHERE installation_id = $1 AND lease_until >= $2")
            .bind(int(installation_id))
            .bind(now_ms)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get(0)?)
    }
    /// A connection of its own, outside the pool: a session-level lock lives exactly as long as it.
    pub async fn dedicated_connection(&self) -> Result<sqlx::AnyConnection, StoreError> {
        use secrecy::ExposeSecret as _;
        use sqlx::Connection as _;
        Ok(sqlx::AnyConnection::connect(self.url.expose_secret()).await?)
    }
}
