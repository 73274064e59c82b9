//! A product's GitHub connection. Every write queues, in its own transaction, the revocation of the live
//! tokens the new connection no longer covers, and tells every replica.

use sqlx::Row;

use super::audit::{Action, Actor, NewEvent, connection_change, record};
use super::tokens::{Ending, notify, queue_revocations};
use super::{Store, StoreError, connection_from, int, upsert_connection};
use crate::model::{Connection, ConnectionStatus, now_ms};

impl Store {
    pub async fn connection(&self, product_id: &str) -> Result<Option<Connection>, StoreError> {
        let row = sqlx::query(
            "SELECT status, reason, installation_id, repository_id, repository, account_login, account_type, \
             installation_url, updated_at FROM connections WHERE product_id = $1",
        )
        .bind(product_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| connection_from(&r)).transpose()
    }
    /// Replace the product's connection (connect, change repository, disconnect). In the same transaction,
    /// every live token of the product's sandboxes that the new connection does not cover is queued for
    /// revocation: Disconnect ends all of them, Change repository the old repository's. The audit trail
    /// records what the change was and who made it. Returns how many tokens were queued.
    pub async fn put_connection(
        &self,
        product_id: &str,
        connection: &Connection,
        actor: &Actor,
    ) -> Result<u64, StoreError> {
        let _writing = self.writing().await;
        let mut tx = self.pool.begin().await?;
        let old = sqlx::query(
            "SELECT status, reason, installation_id, repository_id, repository, account_login, account_type, \
             installation_url, updated_at FROM connections WHERE product_id = $1",
        )
        .bind(product_id)
        .fetch_optional(&mut *tx)
        .await?
        .map(|r| connection_from(&r))
        .transpose()?;
        upsert_connection(&mut tx, product_id, connection).await?;
        let (keep, reason) = match connection.target() {
            Some((installation, repository, name)) => (
                Some((installation, repository)),
                format!("the product's GitHub connection moved to {name}"),
            ),
            None => (None, connection.reason.clone()),
        };
        let ending = Ending::ProductExcept { product_id, keep };
        let queued = queue_revocations(&mut tx, self.backend, ending, &reason, now_ms()).await?;
        let disconnected_before =
            sqlx::query("SELECT id FROM audit_events WHERE product_id = $1 AND action = $2 LIMIT 1")
                .bind(product_id)
                .bind(Action::Disconnected.as_str())
                .fetch_optional(&mut *tx)
                .await?
                .is_some();
        let (action, repository, detail) = connection_change(old.as_ref(), connection, queued, disconnected_before);
        let event = NewEvent {
            product_id,
            actor,
            action,
            sandbox_id: None,
            repository: repository.as_deref(),
            detail,
        };
        record(&mut tx, &event, now_ms()).await?;
        notify(&mut tx, self.backend, &crate::events::product_payload(product_id)).await?;
        tx.commit().await?;
        self.changed(product_id, queued);
        Ok(queued)
    }
    /// Record what GitHub said about a connection while minting for it — but only if the connection is
    /// still the one the mint was for, so a late answer never overwrites a reconnect.
    pub async fn set_connection_status(
        &self,
        product_id: &str,
        (installation_id, repository_id): (u64, u64),
        status: ConnectionStatus,
        reason: &str,
        now: i64,
        actor: &Actor,
    ) -> Result<bool, StoreError> {
        let _writing = self.writing().await;
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE connections SET status = $1, reason = $2, updated_at = $3 \
             WHERE product_id = $4 AND installation_id = $5 AND repository_id = $6",
        )
        .bind(status.as_str())
        .bind(reason)
        .bind(now)
        .bind(product_id)
        .bind(int(installation_id))
        .bind(int(repository_id))
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        let repository: Option<String> = sqlx::query("SELECT repository FROM connections WHERE product_id = $1")
            .bind(product_id)
            .fetch_one(&mut *tx)
            .await?
            .try_get(0)?;
        // A connection GitHub no longer serves (uninstalled, suspended, repository removed) ends its tokens
        // too: GitHub already refuses an uninstalled installation's, and a suspended one's must not come
        // back when it is unsuspended.
        let queued = if status == ConnectionStatus::Active {
            0
        } else {
            let ending = Ending::ProductTarget {
                product_id,
                target: (installation_id, repository_id),
            };
            queue_revocations(&mut tx, self.backend, ending, reason, now_ms()).await?
        };
        let event = NewEvent {
            product_id,
            actor,
            action: Action::StatusChanged,
            sandbox_id: None,
            repository: repository.as_deref(),
            detail: serde_json::json!({
                "status": status.as_str(),
                "reason": reason,
                "installation_id": installation_id,
                "repository_id": repository_id,
                "revoked": queued,
            }),
        };
        record(&mut tx, &event, now_ms()).await?;
        notify(&mut tx, self.backend, &crate::events::product_payload(product_id)).await?;
        tx.commit().await?;
        self.changed(product_id, queued);
        Ok(true)
    }
    /// GitHub reported the repository under another name (renamed or transferred): keep the display name true.
    pub async fn rename_repository(
        &self,
        product_id: &str,
        repository_id: u64,
        full_name: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        let _writing = self.writing().await;
        let mut tx = self.pool.begin().await?;
        let Some(row) = sqlx::query("SELECT repository FROM connections WHERE product_id = $1 AND repository_id = $2")
            .bind(product_id)
            .bind(int(repository_id))
            .fetch_optional(&mut *tx)
            .await?
        else {
            return Ok(());
        };
        let old: Option<String> = row.try_get(0)?;
        if old.as_deref() == Some(full_name) {
            return Ok(());
        }
        sqlx::query(
            "UPDATE connections SET repository = $1, updated_at = $2 WHERE product_id = $3 AND repository_id = $4",
        )
        .bind(full_name)
        .bind(now)
        .bind(product_id)
        .bind(int(repository_id))
        .execute(&mut *tx)
        .await?;
        let event = NewEvent {
            product_id,
            actor: &Actor::GitHub,
            action: Action::RepositoryRenamed,
            sandbox_id: None,
            repository: Some(full_name),
            detail: serde_json::json!({"from": old, "repository_id": repository_id}),
        };
        record(&mut tx, &event, now_ms()).await?;
        tx.commit().await?;
        Ok(())
    }
    /// Every product whose connection names this installation, with the connection.
    pub async fn connections_of_installation(
        &self,
        installation_id: u64,
    ) -> Result<Vec<(String, Connection)>, StoreError> {
        self.connections_where("installation_id = $1", Some(installation_id))
            .await
    }
    /// Every connection that names an installation (for the reconcile sweep).
    pub async fn installed_connections(&self) -> Result<Vec<(String, Connection)>, StoreError> {
        self.connections_where("installation_id IS NOT NULL", None).await
    }
    async fn connections_where(
        &self,
        filter: &str,
        installation_id: Option<u64>,
    ) -> Result<Vec<(String, Connection)>, StoreError> {
        let sql = format!(
            "SELECT product_id, status, reason, installation_id, repository_id, repository, account_login, account_type, \
             installation_url, updated_at FROM connections WHERE {filter} ORDER BY product_id"
        );
        let mut query = sqlx::query(&sql);
        if let Some(id) = installation_id {
            query = query.bind(int(id));
        }
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| Ok((r.try_get("product_id")?, connection_from(r)?)))
            .collect()
    }
    /// Products waiting for an owner of `account` to approve the App's installation there.
    pub async fn pending_products_for(&self, account: &str) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT product_id FROM connections WHERE status = $1 AND LOWER(account_login) = $2 ORDER BY product_id",
        )
        .bind(ConnectionStatus::PendingApproval.as_str())
        .bind(account.to_ascii_lowercase())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
    }
}
