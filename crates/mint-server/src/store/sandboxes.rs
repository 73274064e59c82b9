//! Sandboxes: created with a credential kept as its SHA-256, torn down with their tokens queued for
//! revocation in the same transaction.

use sqlx::Row;

use super::tokens::{Ending, SANDBOX_TORN_DOWN, notify, queue_revocations};
use super::{Store, StoreError, connection_from, sandbox_from};
use crate::model::{Connection, SandboxRow, now_ms};

impl Store {
    pub async fn create_sandbox(&self, sandbox: &SandboxRow, credential_sha256: &str) -> Result<(), StoreError> {
        let _writing = self.writing().await;
        sqlx::query(
            "INSERT INTO sandboxes (id, product_id, credential_sha256, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&sandbox.id)
        .bind(&sandbox.product_id)
        .bind(credential_sha256)
        .bind(sandbox.created_at)
        .bind(sandbox.expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
    /// The sandbox whose credential hashes to this, with its product's connection: the broker route's one
    /// query before it mints.
    pub async fn sandbox_with_connection(
        &self,
        credential_sha256: &str,
    ) -> Result<Option<(SandboxRow, Option<Connection>)>, StoreError> {
        let row = sqlx::query(
            "SELECT s.id, s.product_id, s.created_at, s.expires_at, s.revoked_at, \
               c.status, c.reason, c.installation_id, c.repository_id, c.repository, c.account_login, \
               c.account_type, c.installation_url, c.updated_at \
             FROM sandboxes s LEFT JOIN connections c ON c.product_id = s.product_id \
             WHERE s.credential_sha256 = $1",
        )
        .bind(credential_sha256)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let sandbox = sandbox_from(&row)?;
        let connection = match row.try_get::<Option<String>, _>("status")? {
            Some(_) => Some(connection_from(&row)?),
            None => None,
        };
        Ok(Some((sandbox, connection)))
    }
    pub async fn sandbox(&self, id: &str) -> Result<Option<SandboxRow>, StoreError> {
        let row = sqlx::query("SELECT id, product_id, created_at, expires_at, revoked_at FROM sandboxes WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| sandbox_from(&r)).transpose()
    }
    /// Stop the sandbox's credential and, in the same transaction, queue every live token minted for it for
    /// revocation. `None` when there is no such sandbox; tearing down twice is not an error.
    pub async fn revoke_sandbox(&self, id: &str, now: i64) -> Result<Option<SandboxRow>, StoreError> {
        let _writing = self.writing().await;
        let mut tx = self.pool.begin().await?;
        sqlx::query("UPDATE sandboxes SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let Some(row) =
            sqlx::query("SELECT id, product_id, created_at, expires_at, revoked_at FROM sandboxes WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?
        else {
            return Ok(None);
        };
        let sandbox = sandbox_from(&row)?;
        let queued = queue_revocations(&mut tx, self.backend, Ending::Sandbox(id), SANDBOX_TORN_DOWN, now_ms()).await?;
        notify(
            &mut tx,
            self.backend,
            &crate::events::product_payload(&sandbox.product_id),
        )
        .await?;
        tx.commit().await?;
        self.changed(&sandbox.product_id, queued);
        Ok(Some(sandbox))
    }
}
