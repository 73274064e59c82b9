//! Products and who may manage them (matched by GitHub user id, learnt at a login's first sign-in).

use sqlx::Row;

use super::{Store, StoreError, int, upsert_connection};
use crate::model::{Connection, Product};

impl Store {
    pub async fn create_product(&self, id: &str, name: &str, members: &[String], now: i64) -> Result<(), StoreError> {
        let _writing = self.writing().await;
        let mut tx = self.pool.begin().await?;
        sqlx::query("INSERT INTO products (id, name, created_at) VALUES ($1, $2, $3)")
            .bind(id)
            .bind(name)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        for login in members {
            sqlx::query("INSERT INTO product_members (product_id, login) VALUES ($1, $2) ON CONFLICT DO NOTHING")
                .bind(id)
                .bind(login)
                .execute(&mut *tx)
                .await?;
        }
        let unconnected =
            Connection::not_connected("GitHub is not connected yet: connect it on the Integrations page", now);
        upsert_connection(&mut tx, id, &unconnected).await?;
        tx.commit().await?;
        Ok(())
    }
    pub async fn product(&self, id: &str) -> Result<Option<Product>, StoreError> {
        let Some(row) = sqlx::query("SELECT id, name, created_at FROM products WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        let members = sqlx::query("SELECT login FROM product_members WHERE product_id = $1 ORDER BY login")
            .bind(id)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| r.try_get::<String, _>(0))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(Product {
            id: row.try_get("id")?,
            name: row.try_get("name")?,
            members,
            created_at: row.try_get("created_at")?,
        }))
    }
    /// Is the GitHub user `login` (id `user_id`) a member of the product? A member row already bound to an
    /// id matches that id only; a row not bound yet matches its login and is bound to this id now, so a
    /// login renamed and taken by someone else later does not inherit the membership.
    pub async fn is_member(&self, product_id: &str, login: &str, user_id: u64) -> Result<bool, StoreError> {
        let bound = sqlx::query("SELECT 1 FROM product_members WHERE product_id = $1 AND user_id = $2")
            .bind(product_id)
            .bind(int(user_id))
            .fetch_optional(&self.pool)
            .await?;
        if bound.is_some() {
            return Ok(true);
        }
        let _writing = self.writing().await;
        let claimed = sqlx::query(
            "UPDATE product_members SET user_id = $1 WHERE product_id = $2 AND login = $3 AND user_id IS NULL",
        )
        .bind(int(user_id))
        .bind(product_id)
        .bind(login.to_ascii_lowercase())
        .execute(&self.pool)
        .await?;
        Ok(claimed.rows_affected() > 0)
    }
    /// Products the GitHub user is a member of (by id, or by login where no id is bound yet).
    pub async fn products_of(&self, login: &str, user_id: u64) -> Result<Vec<(String, String)>, StoreError> {
        let rows = sqlx::query(
            "SELECT p.id, p.name FROM products p JOIN product_members m ON m.product_id = p.id \
             WHERE m.user_id = $2 OR (m.user_id IS NULL AND m.login = $1) ORDER BY p.name, p.id",
        )
        .bind(login.to_ascii_lowercase())
        .bind(int(user_id))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("id")?, r.try_get("name")?)))
            .collect()
    }
}
