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

use crate::events::Events;
use crate::model::{Connection, ConnectionStatus, Product, SandboxRow, now_ms};

mod tokens;

pub use tokens::{
    BrokerView, Claimed, NewToken, Outcome, Reusable, SANDBOX_EXPIRED, SANDBOX_TORN_DOWN, TokenRecord, Whose,
};
use tokens::{Ending, notify, queue_revocations};

/// The schema's history, oldest first. Each file is applied once, in a transaction, and recorded with its
/// checksum in `_sqlx_migrations`; a changed file is refused at start rather than silently diverging.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "init", include_str!("../migrations/0001_init.sql")),
    (2, "connect", include_str!("../migrations/0002_connect.sql")),
    (3, "fleet", include_str!("../migrations/0003_fleet.sql")),
    (4, "revocation", include_str!("../migrations/0004_revocation.sql")),
    (5, "internet", include_str!("../migrations/0005_internet.sql")),
];

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
        match &e {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::WorkerCrashed => StoreError::Unavailable(e.to_string()),
            sqlx::Error::Database(db) if db.code().as_deref().is_some_and(transient_sqlstate) => {
                StoreError::Unavailable(e.to_string())
            }
            _ => StoreError::Query(e.to_string()),
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
    /// Who hears of a change this store made (and, relayed, of other replicas' changes).
    events: std::sync::Arc<Events>,
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
        Ok(Self {
            pool,
            backend,
            url: std::sync::Arc::new(connect_url.into()),
            sqlite_writer: std::sync::Arc::default(),
            events: std::sync::Arc::default(),
        })
    }

    /// Held across a write on SQLite; nothing on PostgreSQL, whose writers do not block each other's rows.
    async fn writing(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
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
    /// revocation: Disconnect ends all of them, Change repository the old repository's. Returns how many.
    pub async fn put_connection(&self, product_id: &str, connection: &Connection) -> Result<u64, StoreError> {
        let _writing = self.writing().await;
        let mut tx = self.pool.begin().await?;
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
        notify(&mut tx, self.backend, &crate::events::product_payload(product_id)).await?;
        tx.commit().await?;
        self.changed(product_id, queued);
        Ok(queued)
    }

    /// After a commit: wake this replica's watchers of the product, and its revoker if tokens were queued
    /// (other replicas hear of it from the database).
    fn changed(&self, product_id: &str, queued: u64) {
        self.events.product_changed(product_id);
        if queued > 0 {
            self.events.revocations_queued();
        }
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

/// A browser session as stored (its id only as SHA-256).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebSession {
    pub login: Option<String>,
    pub user_id: Option<u64>,
    pub csrf: String,
    pub expires_at: i64,
}

/// A single-use OAuth `state`, taken back exactly once by the callback of the same browser session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthState {
    pub session_sha256: String,
    pub purpose: String,
    pub product_id: Option<String>,
    pub installation_hint: Option<u64>,
    pub next_path: Option<String>,
    pub created_at: i64,
}

/// An installation and repository a signed-in user was just shown (by GitHub, with their token) to be able
/// to push to: the only things the connect form may bind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    pub installation_id: u64,
    pub repository_id: u64,
    pub repository: String,
    pub account_login: String,
}

impl Store {
    /// A signed-in browser session (created at sign-in only: an anonymous browser has no row).
    pub async fn create_session(
        &self,
        id_sha256: &str,
        user: &SessionUser<'_>,
        now: i64,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        let _writing = self.writing().await;
        sqlx::query(
            "INSERT INTO web_sessions (id_sha256, login, user_id, csrf, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(id_sha256)
        .bind(user.login)
        .bind(int(user.user_id))
        .bind(user.csrf)
        .bind(now)
        .bind(expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn session(&self, id_sha256: &str) -> Result<Option<WebSession>, StoreError> {
        let row = sqlx::query("SELECT login, user_id, csrf, expires_at FROM web_sessions WHERE id_sha256 = $1")
            .bind(id_sha256)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            Ok(WebSession {
                login: r.try_get("login")?,
                user_id: r.try_get::<Option<i64>, _>("user_id")?.map(uint),
                csrf: r.try_get("csrf")?,
                expires_at: r.try_get("expires_at")?,
            })
        })
        .transpose()
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

    pub async fn delete_session(&self, id_sha256: &str) -> Result<(), StoreError> {
        let _writing = self.writing().await;
        sqlx::query("DELETE FROM web_sessions WHERE id_sha256 = $1")
            .bind(id_sha256)
            .execute(&self.pool)
            .await?;
        sqlx::query("DELETE FROM verified_choices WHERE session_sha256 = $1")
            .bind(id_sha256)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn put_oauth_state(&self, state_sha256: &str, state: &OAuthState) -> Result<(), StoreError> {
        let _writing = self.writing().await;
        sqlx::query(
            "INSERT INTO oauth_states (state_sha256, session_sha256, purpose, product_id, installation_hint, next_path, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(state_sha256)
        .bind(&state.session_sha256)
        .bind(&state.purpose)
        .bind(state.product_id.as_deref())
        .bind(state.installation_hint.map(int))
        .bind(state.next_path.as_deref())
        .bind(state.created_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Take a state back: it is deleted whether or not it matches, so it can never be used twice.
    pub async fn take_oauth_state(&self, state_sha256: &str) -> Result<Option<OAuthState>, StoreError> {
        let row = sqlx::query(
            "SELECT session_sha256, purpose, product_id, installation_hint, next_path, created_at \
             FROM oauth_states WHERE state_sha256 = $1",
        )
        .bind(state_sha256)
        .fetch_optional(&self.pool)
        .await?;
        let _writing = self.writing().await;
        let deleted = sqlx::query("DELETE FROM oauth_states WHERE state_sha256 = $1")
            .bind(state_sha256)
            .execute(&self.pool)
            .await?;
        if deleted.rows_affected() == 0 {
            // Another request took it between our read and our delete: it is theirs.
            return Ok(None);
        }
        row.map(|r| {
            Ok(OAuthState {
                session_sha256: r.try_get("session_sha256")?,
                purpose: r.try_get("purpose")?,
                product_id: r.try_get("product_id")?,
                installation_hint: r.try_get::<Option<i64>, _>("installation_hint")?.map(uint),
                next_path: r.try_get("next_path")?,
                created_at: r.try_get("created_at")?,
            })
        })
        .transpose()
    }

    /// Replace what this session may bind for the product.
    pub async fn put_choices(
        &self,
        session_sha256: &str,
        product_id: &str,
        choices: &[Choice],
        expires_at: i64,
    ) -> Result<(), StoreError> {
        let _writing = self.writing().await;
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM verified_choices WHERE session_sha256 = $1 AND product_id = $2")
            .bind(session_sha256)
            .bind(product_id)
            .execute(&mut *tx)
            .await?;
        for c in choices {
            sqlx::query(
                "INSERT INTO verified_choices \
                   (session_sha256, product_id, installation_id, repository_id, repository, account_login, expires_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
            )
            .bind(session_sha256)
            .bind(product_id)
            .bind(int(c.installation_id))
            .bind(int(c.repository_id))
            .bind(&c.repository)
            .bind(&c.account_login)
            .bind(expires_at)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn choices(&self, session_sha256: &str, product_id: &str, now: i64) -> Result<Vec<Choice>, StoreError> {
        let rows = sqlx::query(
            "SELECT installation_id, repository_id, repository, account_login FROM verified_choices \
             WHERE session_sha256 = $1 AND product_id = $2 AND expires_at > $3 ORDER BY account_login, repository",
        )
        .bind(session_sha256)
        .bind(product_id)
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Choice {
                    installation_id: uint(r.try_get("installation_id")?),
                    repository_id: uint(r.try_get("repository_id")?),
                    repository: r.try_get("repository")?,
                    account_login: r.try_get("account_login")?,
                })
            })
            .collect()
    }

    pub async fn clear_choices(&self, session_sha256: &str, product_id: &str) -> Result<(), StoreError> {
        let _writing = self.writing().await;
        sqlx::query("DELETE FROM verified_choices WHERE session_sha256 = $1 AND product_id = $2")
            .bind(session_sha256)
            .bind(product_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Remember a webhook delivery; `false` when its id or its signed body was seen before (a redelivery,
    /// another replica's copy, or a body replayed under a new delivery id).
    pub async fn first_delivery(
        &self,
        delivery_id: &str,
        body_sha256: &str,
        event: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let _writing = self.writing().await;
        let done = sqlx::query(
            "INSERT INTO webhook_deliveries (delivery_id, body_sha256, event, received_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT DO NOTHING",
        )
        .bind(delivery_id)
        .bind(body_sha256)
        .bind(event)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
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
}

impl Store {
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
        ] {
            let row = sqlx::query(&format!("SELECT COUNT(*) FROM {table}"))
                .fetch_one(&self.pool)
                .await?;
            counts.push((table, row.try_get(0)?));
        }
        Ok(counts)
    }
}

/// Who signs in: their GitHub login and id, and the new session's CSRF token.
#[derive(Debug)]
pub struct SessionUser<'a> {
    pub login: &'a str,
    pub user_id: u64,
    pub csrf: &'a str,
}

/// What replicas share for minting: GitHub's pauses, the fleet-wide slots, the sweep's connection.
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

    /// Take a free slot of the installation's first `slots` for `holder` until `lease_until` (unix ms), unless
    /// the installation is paused (PostgreSQL only). `SKIP LOCKED`: replicas taking slots at once never wait
    /// on each other's rows, and two never get the same slot.
    pub async fn take_mint_slot(
        &self,
        installation_id: u64,
        slots: usize,
        holder: &str,
        now_ms: i64,
        lease_until: i64,
    ) -> Result<Option<i64>, StoreError> {
        let row = sqlx::query(
            "UPDATE mint_slots SET holder = $1, lease_until = $2 \
             WHERE installation_id = $3 AND slot = ( \
               SELECT slot FROM mint_slots WHERE installation_id = $3 AND slot < $4 AND lease_until < $5 \
               AND NOT EXISTS (SELECT 1 FROM installation_pauses p WHERE p.installation_id = $3 AND p.until_at > $6) \
               ORDER BY slot LIMIT 1 FOR UPDATE SKIP LOCKED) \
             RETURNING slot",
        )
        .bind(holder)
        .bind(lease_until)
        .bind(int(installation_id))
        .bind(i64::try_from(slots).unwrap_or(i64::MAX))
        .bind(now_ms)
        .bind(now_ms / 1000)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| Ok(r.try_get(0)?)).transpose()
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

async fn upsert_connection(
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
        installation_url: r.try_get("installation_url")?,
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
