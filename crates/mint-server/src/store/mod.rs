//! The database: products, their GitHub connections, sandboxes, and what was minted for each sandbox; one
//! module per group of tables (products, connections, sandboxes, tokens, the web flow's rows, what replicas
//! share).
//! Embedded `SQLite` by default, `PostgreSQL` for a fleet: one schema, one set of queries (sqlx's `Any`
//! driver), migrations embedded in the binary and applied at start.
//!
//! No GitHub token, user token or key is ever written here: credentials and tokens are kept as SHA-256.

use std::time::Duration;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, Row};

use crate::events::Events;
use crate::model::{Connection, ConnectionStatus, SandboxRow};

mod audit;
mod batch;
mod card;
mod connections;
mod fleet;
mod products;
mod sandboxes;
mod tokens;
mod view;
mod web;

pub use audit::{Action, Actor, AuditEvent, Cursor};
pub use card::{AGENT_BRANCH_PREFIX, AgentPull, Landmark, PastRepository};
pub use fleet::SlotRow;
pub use sandboxes::{LiveToken, SandboxSummary};
pub use tokens::{
    BrokerView, Claimed, LeaseWanted, NewToken, Outcome, Reusable, SANDBOX_EXPIRED, SANDBOX_TORN_DOWN, SlotWanted,
    TokenRecord, Whose,
};
pub use web::{Choice, OAuthState, SessionUser, WebSession};

/// The schema's history: every file in `migrations/`, oldest first, embedded at build time. Each is applied
/// once, in a transaction, and recorded with its checksum in `_sqlx_migrations`; a changed file is refused
/// at start rather than silently diverging, and a new file needs no list to be applied.
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

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
    #[error("cannot open the database at {url}: {source}")]
    Open {
        url: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("applying the database schema failed: {0}")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    #[error("the database is unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    #[error("the database failed: {0}")]
    Query(#[source] sqlx::Error),
    /// The database holds what this binary does not understand (a newer version wrote it, or a schema
    /// migration is missing).
    #[error("the database holds what this mint-server does not understand: {0}")]
    Unexpected(String),
}

impl StoreError {
    /// A pool timeout or a lost connection may be over in a moment; a bad query will not.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::WorkerCrashed => StoreError::Unavailable(e),
            sqlx::Error::Database(db) if db.code().as_deref().is_some_and(transient_sqlstate) => {
                StoreError::Unavailable(e)
            }
            _ => StoreError::Query(e),
        }
    }
}

/// PostgreSQL's codes for "the server is going away or not there yet": class 08 (connection exception),
/// 57P01–57P03 (shutdown, crash recovery, starting up), 53300 (too many connections). A restart of the
/// database shows these on connections that were open; they pass when it is back.
fn transient_sqlstate(code: &str) -> bool {
    code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03" | "53300")
}

/// How long a request waits for a database connection before answering 503: short, so a database that
/// is down costs a sandbox a quick retry, not a hang.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

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
    /// For connections of their own outside the pool (the sweep's lock); `Debug` prints a redaction.
    url: std::sync::Arc<secrecy::SecretString>,
    /// SQLite has one writer at a time; writers that collide sleep in SQLite's busy handler (up to 100 ms a
    /// try). Queueing them here instead keeps a burst of mints from stalling on each other.
    sqlite_writer: std::sync::Arc<tokio::sync::Mutex<()>>,
    /// Tokens waiting for SQLite's writer: whoever holds it next records all of them in one transaction.
    pending_records: std::sync::Arc<std::sync::Mutex<Vec<tokens::PendingRecord>>>,
    /// Broker views, and tokens to record, waiting for a connection of the pool (PostgreSQL): whoever gets
    /// one next runs one statement for all of them.
    views: std::sync::Arc<batch::Batches>,
    records: std::sync::Arc<batch::Batches>,
    /// Who hears of a change this store made (and, relayed, of other replicas' changes).
    events: std::sync::Arc<Events>,
}

impl Store {
    /// Connect, and bring the schema up to date.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        Self::open_with_pool(url, None).await
    }

    /// [`Store::open`] keeping `pool` connections (`None`: 16 on PostgreSQL, 8 on SQLite).
    pub async fn open_with_pool(url: &str, pool: Option<u32>) -> Result<Self, StoreError> {
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
            .max_connections(pool.unwrap_or(match backend {
                Backend::Sqlite => 8,
                Backend::Postgres => 16,
            }))
            .acquire_timeout(ACQUIRE_TIMEOUT)
            // No ping on every acquire: it doubled the round trips per token. A connection broken by a
            // database restart fails its next query (503, which mintd retries) and is dropped.
            .test_before_acquire(false)
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
            .map_err(|source| StoreError::Open {
                url: redact_url(url),
                source,
            })?;
        MIGRATOR.run(&pool).await.map_err(StoreError::Migrate)?;
        Ok(Self {
            pool,
            backend,
            url: std::sync::Arc::new(connect_url.into()),
            sqlite_writer: std::sync::Arc::default(),
            pending_records: std::sync::Arc::default(),
            views: std::sync::Arc::default(),
            records: std::sync::Arc::default(),
            events: std::sync::Arc::default(),
        })
    }

    /// Held across a write on SQLite; nothing on PostgreSQL, whose writers do not block each other's rows.
    pub(crate) async fn writing(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        match self.backend {
            Backend::Sqlite => Some(self.sqlite_writer.lock().await),
            Backend::Postgres => None,
        }
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn events(&self) -> &std::sync::Arc<Events> {
        &self.events
    }

    /// Relay other replicas' notifications into [`Store::events`] until the process ends (PostgreSQL; on
    /// SQLite there is no other replica, and this returns at once).
    pub async fn listen(&self) {
        if self.backend == Backend::Postgres {
            crate::events::listen(
                secrecy::SecretString::from(secrecy::ExposeSecret::expose_secret(&*self.url).to_owned()),
                self.events.clone(),
            )
            .await;
        }
    }

    /// Is the database answering, with every migration this binary knows applied?
    pub async fn ready(&self) -> Result<(), StoreError> {
        let applied: i64 = sqlx::query("SELECT COUNT(*) FROM _sqlx_migrations")
            .fetch_one(&self.pool)
            .await?
            .try_get(0)?;
        let known = i64::try_from(MIGRATOR.iter().count()).expect("a handful of migrations");
        if applied < known {
            return Err(StoreError::Unexpected(format!(
                "{applied} of {known} schema migrations applied"
            )));
        }
        Ok(())
    }

    /// Count the requests each batched statement serves (the broker's views, the tokens' records) in these.
    pub fn count_batches(
        &self,
        views: prometheus_client::metrics::histogram::Histogram,
        records: prometheus_client::metrics::histogram::Histogram,
    ) {
        self.views.count_in(views);
        self.records.count_in(records);
    }

    /// The pool: (connections open, of which idle).
    pub fn pool_stats(&self) -> (u32, usize) {
        (self.pool.size(), self.pool.num_idle())
    }

    /// The migrations applied to this database, oldest first: (version, description).
    pub async fn applied_migrations(&self) -> Result<Vec<(i64, String)>, StoreError> {
        let rows = sqlx::query("SELECT version, description FROM _sqlx_migrations WHERE success ORDER BY version")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).collect()
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// After a commit: wake this replica's watchers of the product, and its revoker if tokens were queued
    /// (other replicas hear of it from the database).
    pub(crate) fn changed(&self, product_id: &str, queued: u64) {
        self.events.product_changed(product_id);
        if queued > 0 {
            self.events.revocations_queued();
        }
    }

    /// Delete what has expired: browser sessions, OAuth states (older than `flow_ttl` s), verified choices,
    /// webhook deliveries older than `delivery_ttl` s (the replay window), GitHub's past pauses, and the
    /// records of tokens that expired more than `token_ttl` s ago. Returns how many rows went.
    pub async fn sweep_expired(
        &self,
        now: i64,
        flow_ttl: i64,
        delivery_ttl: i64,
        token_ttl: i64,
    ) -> Result<u64, StoreError> {
        let _writing = self.writing().await;
        let mut gone = 0;
        for (sql, at) in [
            ("DELETE FROM web_sessions WHERE expires_at <= $1", now),
            ("DELETE FROM oauth_states WHERE created_at <= $1", now - flow_ttl),
            ("DELETE FROM verified_choices WHERE expires_at <= $1", now),
            (
                "DELETE FROM webhook_deliveries WHERE received_at <= $1",
                now - delivery_ttl,
            ),
            ("DELETE FROM installation_pauses WHERE until_at <= $1", now),
            (
                "DELETE FROM minted_tokens WHERE expires_at <= $1 AND sealed IS NULL",
                now - token_ttl,
            ),
        ] {
            gone += sqlx::query(sql).bind(at).execute(&self.pool).await?.rows_affected();
        }
        Ok(gone)
    }
    /// Rows per table, for operators (and the tests that bound them).
    pub async fn row_counts(&self) -> Result<Vec<(&'static str, i64)>, StoreError> {
        let mut counts = Vec::new();
        for table in [
            "products",
            "product_members",
            "connections",
            "sandboxes",
            "minted_tokens",
            "web_sessions",
            "oauth_states",
            "verified_choices",
            "webhook_deliveries",
            "installation_pauses",
            "audit_events",
        ] {
            let row = sqlx::query(&format!("SELECT COUNT(*) FROM {table}"))
                .fetch_one(&self.pool)
                .await?;
            counts.push((table, row.try_get(0)?));
        }
        Ok(counts)
    }
}

pub(crate) async fn upsert_connection(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    product_id: &str,
    c: &Connection,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO connections \
           (product_id, status, reason, installation_id, repository_id, repository, account_login, account_type, \
            installation_url, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
         ON CONFLICT (product_id) DO UPDATE SET status = excluded.status, reason = excluded.reason, \
           installation_id = excluded.installation_id, repository_id = excluded.repository_id, \
           repository = excluded.repository, account_login = excluded.account_login, \
           account_type = excluded.account_type, installation_url = excluded.installation_url, \
           updated_at = excluded.updated_at",
    )
    .bind(product_id)
    .bind(c.status.as_str())
    .bind(&c.reason)
    .bind(c.installation_id.map(int))
    .bind(c.repository_id.map(int))
    .bind(c.repository.as_deref())
    .bind(c.account_login.as_deref())
    .bind(c.account_type.as_deref())
    .bind(c.installation_url.as_deref())
    .bind(c.updated_at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub(crate) fn connection_from(r: &AnyRow) -> Result<Connection, StoreError> {
    let status: String = r.try_get("status")?;
    Ok(Connection {
        status: ConnectionStatus::parse(&status)
            .ok_or_else(|| StoreError::Unexpected(format!("unknown connection status {status:?} in the database")))?,
        reason: r.try_get("reason")?,
        installation_id: r.try_get::<Option<i64>, _>("installation_id")?.map(uint),
        repository_id: r.try_get::<Option<i64>, _>("repository_id")?.map(uint),
        repository: r.try_get("repository")?,
        account_login: r.try_get("account_login")?,
        account_type: r.try_get("account_type")?,
        installation_url: r.try_get("installation_url")?,
        updated_at: r.try_get("updated_at")?,
    })
}

pub(crate) fn sandbox_from(r: &AnyRow) -> Result<SandboxRow, StoreError> {
    Ok(SandboxRow {
        id: r.try_get("id")?,
        product_id: r.try_get("product_id")?,
        created_at: r.try_get("created_at")?,
        expires_at: r.try_get("expires_at")?,
        revoked_at: r.try_get("revoked_at")?,
    })
}

/// GitHub's ids are positive and far below 2^63.
pub(crate) fn int(id: u64) -> i64 {
    i64::try_from(id).unwrap_or(i64::MAX)
}

pub(crate) fn uint(id: i64) -> u64 {
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
