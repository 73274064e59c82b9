//! The database: products, their GitHub connections, sandboxes, and what was minted for each sandbox.
//! Embedded `SQLite` by default, `PostgreSQL` for a fleet: one schema, one set of queries (sqlx's `Any`
//! driver), migrations embedded in the binary and applied at start.
//!
//! No GitHub token, user token or key is ever written here: credentials and tokens are kept as SHA-256.

use std::borrow::Cow;
use std::pin::Pin;
use std::time::Duration;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};
use sqlx::{AnyPool, Row};

use crate::model::{Connection, ConnectionStatus, Product, SandboxRow};

/// The schema's history, oldest first. Each file is applied once, in a transaction, and recorded with its
/// checksum in `_sqlx_migrations`; a changed file is refused at start rather than silently diverging.
const MIGRATIONS: &[(i64, &str, &str)] = &[(1, "init", include_str!("../migrations/0001_init.sql"))];

/// Which database is behind the URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "--database {url}: not a database URL mint-server knows: use sqlite://FILE (embedded, the default) or postgres://USER@HOST/DB"
    )]
    UnknownScheme { url: String },
    #[error("cannot open the database at {url}: {cause}")]
    Open { url: String, cause: String },
    #[error("applying the database schema failed: {0}")]
    Migrate(String),
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    #[error("the database failed: {0}")]
    Query(String),
}

impl StoreError {
    /// A pool timeout or a lost connection may be over in a moment; a bad query will not.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) | sqlx::Error::Tls(_) => {
                StoreError::Unavailable(e.to_string())
            }
            other => StoreError::Query(other.to_string()),
        }
    }
}

/// `postgres://user:secret@host/db` → `postgres://user:***@host/db`, for messages and logs.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
            let hidden = if userinfo.contains(':') { ":***" } else { "" };
            format!("{scheme}://{user}{hidden}@{host}{path}")
        }
        None => url.to_owned(),
    }
}

/// The database handle the handlers share.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
}

#[derive(Debug)]
struct Embedded;

impl<'s> MigrationSource<'s> for Embedded {
    fn resolve(self) -> Pin<Box<dyn Future<Output = Result<Vec<Migration>, sqlx::error::BoxDynError>> + Send + 's>> {
        Box::pin(async {
            Ok(MIGRATIONS
                .iter()
                .map(|&(version, description, sql)| {
                    Migration::new(
                        version,
                        Cow::Borrowed(description),
                        MigrationType::Simple,
                        Cow::Borrowed(sql),
                        false,
                    )
                })
                .collect())
        })
    }
}

impl Store {
    /// Connect, and bring the schema up to date.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            return Err(StoreError::UnknownScheme { url: redact_url(url) });
        };
        let connect_url = match backend {
            // Create the file on first start; a named mode (ro, rw, memory) is the operator's choice.
            Backend::Sqlite if !url.contains("mode=") => {
                format!("{url}{}mode=rwc", if url.contains('?') { '&' } else { '?' })
            }
            _ => url.to_owned(),
        };
        let pool = AnyPoolOptions::new()
            // SQLite has one writer at a time whatever the pool size; a few connections serve the reads.
            .max_connections(match backend {
                Backend::Sqlite => 8,
                Backend::Postgres => 16,
            })
            .acquire_timeout(Duration::from_secs(5))
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL: readers never wait for the writer, and a commit survives kill -9.
                        sqlx::query("PRAGMA journal_mode = WAL").execute(&mut *conn).await?;
                        sqlx::query("PRAGMA busy_timeout = 10000").execute(&mut *conn).await?;
                        sqlx::query("PRAGMA foreign_keys = ON").execute(&mut *conn).await?;
                    }
                    Ok(())
                })
            })
            .connect(&connect_url)
            .await
            .map_err(|e| StoreError::Open {
                url: redact_url(url),
                cause: e.to_string(),
            })?;
        let migrator = Migrator::new(Embedded)
            .await
            .map_err(|e| StoreError::Migrate(e.to_string()))?;
        migrator
            .run(&pool)
            .await
            .map_err(|e| StoreError::Migrate(e.to_string()))?;
        Ok(Self { pool, backend })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Is the database answering, with every migration this binary knows applied?
    pub async fn ready(&self) -> Result<(), StoreError> {
        let applied: i64 = sqlx::query("SELECT COUNT(*) FROM _sqlx_migrations")
            .fetch_one(&self.pool)
            .await?
            .try_get(0)?;
        let known = i64::try_from(MIGRATIONS.len()).expect("a handful of migrations");
        if applied < known {
            return Err(StoreError::Query(format!(
                "{applied} of {known} schema migrations applied"
            )));
        }
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    pub async fn create_product(&self, id: &str, name: &str, members: &[String], now: i64) -> Result<(), StoreError> {
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

    pub async fn connection(&self, product_id: &str) -> Result<Option<Connection>, StoreError> {
        let row = sqlx::query(
            "SELECT status, reason, installation_id, repository_id, repository, account_login, account_type, updated_at \
             FROM connections WHERE product_id = $1",
        )
        .bind(product_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| connection_from(&r)).transpose()
    }

    /// Replace the product's connection (connect, change repository, disconnect).
    pub async fn put_connection(&self, product_id: &str, connection: &Connection) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        upsert_connection(&mut tx, product_id, connection).await?;
        tx.commit().await?;
        Ok(())
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
    ) -> Result<bool, StoreError> {
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
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// GitHub reported the repository under another name (renamed or transferred): keep the display name true.
    pub async fn rename_repository(
        &self,
        product_id: &str,
        repository_id: u64,
        full_name: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE connections SET repository = $1, updated_at = $2 WHERE product_id = $3 AND repository_id = $4",
        )
        .bind(full_name)
        .bind(now)
        .bind(product_id)
        .bind(int(repository_id))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn create_sandbox(&self, sandbox: &SandboxRow, credential_sha256: &str) -> Result<(), StoreError> {
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

    /// The sandbox whose credential hashes to this, whatever its state: the caller decides, the same way
    /// for unknown, expired and revoked.
    pub async fn sandbox_by_credential(&self, credential_sha256: &str) -> Result<Option<SandboxRow>, StoreError> {
        let row = sqlx::query(
            "SELECT id, product_id, created_at, expires_at, revoked_at FROM sandboxes WHERE credential_sha256 = $1",
        )
        .bind(credential_sha256)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| sandbox_from(&r)).transpose()
    }

    pub async fn sandbox(&self, id: &str) -> Result<Option<SandboxRow>, StoreError> {
        let row = sqlx::query("SELECT id, product_id, created_at, expires_at, revoked_at FROM sandboxes WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| sandbox_from(&r)).transpose()
    }

    /// Stop the sandbox's credential. `None` when there is no such sandbox; revoking twice is not an error.
    pub async fn revoke_sandbox(&self, id: &str, now: i64) -> Result<Option<()>, StoreError> {
        sqlx::query("UPDATE sandboxes SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
            .bind(now)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(self.sandbox(id).await?.map(|_| ()))
    }

    pub async fn record_mint(&self, minted: &MintRecord<'_>) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO minted_tokens (token_sha256, sandbox_id, installation_id, repository_id, minted_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(minted.token_sha256)
        .bind(minted.sandbox_id)
        .bind(int(minted.installation_id))
        .bind(int(minted.repository_id))
        .bind(minted.minted_at)
        .bind(minted.expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Tokens minted for the sandbox that are neither revoked nor expired.
    pub async fn live_tokens(&self, sandbox_id: &str, now: i64) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT token_sha256, expires_at FROM minted_tokens \
             WHERE sandbox_id = $1 AND revoked_at IS NULL AND expires_at > $2 ORDER BY minted_at",
        )
        .bind(sandbox_id)
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("token_sha256")?, r.try_get("expires_at")?)))
            .collect()
    }

    pub async fn mark_token_revoked(&self, token_sha256: &str, now: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE minted_tokens SET revoked_at = $1 WHERE token_sha256 = $2 AND revoked_at IS NULL")
            .bind(now)
            .bind(token_sha256)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

/// One minted token, as recorded (never the token itself).
#[derive(Debug)]
pub struct MintRecord<'a> {
    pub token_sha256: &'a str,
    pub sandbox_id: &'a str,
    pub installation_id: u64,
    pub repository_id: u64,
    pub minted_at: i64,
    pub expires_at: i64,
}

async fn upsert_connection(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    product_id: &str,
    c: &Connection,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO connections \
           (product_id, status, reason, installation_id, repository_id, repository, account_login, account_type, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
         ON CONFLICT (product_id) DO UPDATE SET status = excluded.status, reason = excluded.reason, \
           installation_id = excluded.installation_id, repository_id = excluded.repository_id, \
           repository = excluded.repository, account_login = excluded.account_login, \
           account_type = excluded.account_type, updated_at = excluded.updated_at",
    )
    .bind(product_id)
    .bind(c.status.as_str())
    .bind(&c.reason)
    .bind(c.installation_id.map(int))
    .bind(c.repository_id.map(int))
    .bind(c.repository.as_deref())
    .bind(c.account_login.as_deref())
    .bind(c.account_type.as_deref())
    .bind(c.updated_at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

fn connection_from(r: &AnyRow) -> Result<Connection, StoreError> {
    let status: String = r.try_get("status")?;
    Ok(Connection {
        status: ConnectionStatus::parse(&status)
            .ok_or_else(|| StoreError::Query(format!("unknown connection status {status:?} in the database")))?,
        reason: r.try_get("reason")?,
        installation_id: r.try_get::<Option<i64>, _>("installation_id")?.map(uint),
        repository_id: r.try_get::<Option<i64>, _>("repository_id")?.map(uint),
        repository: r.try_get("repository")?,
        account_login: r.try_get("account_login")?,
        account_type: r.try_get("account_type")?,
        updated_at: r.try_get("updated_at")?,
    })
}

fn sandbox_from(r: &AnyRow) -> Result<SandboxRow, StoreError> {
    Ok(SandboxRow {
        id: r.try_get("id")?,
        product_id: r.try_get("product_id")?,
        created_at: r.try_get("created_at")?,
        expires_at: r.try_get("expires_at")?,
        revoked_at: r.try_get("revoked_at")?,
    })
}

/// GitHub's ids are positive and far below 2^63.
fn int(id: u64) -> i64 {
    i64::try_from(id).unwrap_or(i64::MAX)
}

fn uint(id: i64) -> u64 {
    u64::try_from(id).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn database_passwords_never_reach_a_message() {
        assert_eq!(
            redact_url("postgres://mint:s3cret@db.internal:5432/mint?sslmode=require"),
            "postgres://mint:***@db.internal:5432/mint?sslmode=require"
        );
        assert_eq!(redact_url("postgres://mint@db/mint"), "postgres://mint@db/mint");
        assert_eq!(redact_url("sqlite://mint-server.db"), "sqlite://mint-server.db");
    }
}
