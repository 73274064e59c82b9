//! Statements read together (PostgreSQL): requests that would each run the same statement while they wait
//! for a connection of the pool are queued, and whoever gets a connection next runs one statement for all of
//! them. A burst costs the database a statement per free connection rather than one per request; a request
//! alone still costs one statement, and waits for nobody.
//!
//! The statement takes `$1`, a JSON array with one object per request (its parameters, and `n`, its place
//! in the batch), and answers at most one row per request, with its `n`. If the statement fails, each
//! request runs it alone, so that an error is its own request's.

use sqlx::Row;
use sqlx::any::AnyRow;

use prometheus_client::metrics::histogram::Histogram;

use super::StoreError;

/// The most requests one statement serves. In a fleet start of 1,000 sandboxes on the 2-core bench machine,
/// batches of at most 8 answered later than batches of 32 (their statements queue for the pool), and 128 or
/// no bound did no better than 32 (docs/performance.md); a smaller statement also holds its rows' locks for
/// less time.
const BATCH_MAX: usize = 32;

/// One kind of statement's queue.
#[derive(Debug, Default)]
pub(crate) struct Batches {
    pending: std::sync::Mutex<Vec<Pending>>,
    next: std::sync::atomic::AtomicU64,
    /// Where each statement's number of requests is counted (the server's metrics).
    sizes: std::sync::OnceLock<Histogram>,
}

/// A request waiting in the queue, and where its answer goes.
struct Pending {
    /// Unique in the queue, so a request that gives up can take its own back.
    id: u64,
    params: serde_json::Value,
    reply: tokio::sync::oneshot::Sender<Answer>,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The parameters may hold a sealed token: never printed.
        f.debug_struct("Pending").field("id", &self.id).finish_non_exhaustive()
    }
}

/// A batch's answer to one of its requests: its row (none: the statement answered nothing for it), or
/// `Alone`: the batch failed, so the request runs the statement by itself, with its parameters handed back.
enum Answer {
    Row(Option<AnyRow>),
    Alone(serde_json::Value),
}

impl Batches {
    fn pending(&self) -> std::sync::MutexGuard<'_, Vec<Pending>> {
        self.pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The first `most` requests in the queue.
    fn take(&self, most: usize) -> Vec<Pending> {
        let mut pending = self.pending();
        let n = pending.len().min(most);
        pending.drain(..n).collect()
    }

    /// Count each statement's requests in `sizes` from now on.
    pub(crate) fn count_in(&self, sizes: Histogram) {
        let _ = self.sizes.set(sizes);
    }

    /// Run `sql` for this request's `params` (a JSON object), together with every request queued for it
    /// once a connection is free, or hear the answer from the request that got one first.
    pub(crate) async fn read(
        &self,
        pool: &sqlx::AnyPool,
        sql: &'static str,
        params: serde_json::Value,
    ) -> Result<Option<AnyRow>, StoreError> {
        let id = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.pending().push(Pending { id, params, reply });
        // Taken back if this request goes away before a batch takes it.
        let queued = Queued { batches: self, id };
        match pool.acquire().await {
            // Batches from the front of the queue, until this request's is run (by this one or another).
            Ok(mut connection) => loop {
                let batch = self.take(BATCH_MAX);
                if batch.is_empty() {
                    break;
                }
                if let Some(sizes) = self.sizes.get() {
                    sizes.observe(f64::from(u32::try_from(batch.len()).unwrap_or(u32::MAX)));
                }
                // On a task of its own: the others in the batch hear their answers even if this request
                // goes away (its caller hung up) while the statement runs.
                connection = match tokio::spawn(run(connection, sql, batch)).await {
                    Ok(connection) => connection,
                    Err(e) => {
                        return Err(StoreError::Unexpected(format!(
                            "a batched statement's task failed: {e}"
                        )));
                    }
                };
                if !queued.waiting() {
                    break;
                }
            },
            // Still queued: nobody will run it. Taken: its answer comes.
            Err(e) if queued.take_back() => return Err(e.into()),
            Err(_) => {}
        }
        match answer.await {
            Ok(Answer::Row(row)) => Ok(row),
            Ok(Answer::Alone(params)) => Ok(sqlx::query(sql)
                .bind(items(std::iter::once(&params)))
                .fetch_optional(pool)
                .await?),
            Err(_) => Err(StoreError::Unexpected(
                "the request running this statement for others stopped before it answered".into(),
            )),
        }
    }
}

/// A request in the queue, taken back when it stops waiting before any batch took it.
struct Queued<'a> {
    batches: &'a Batches,
    id: u64,
}

impl Queued<'_> {
    /// Is the request still in the queue (no batch took it yet)?
    fn waiting(&self) -> bool {
        self.batches.pending().iter().any(|p| p.id == self.id)
    }

    /// Take the request out of the queue; false if a batch took it already.
    fn take_back(&self) -> bool {
        let mut pending = self.batches.pending();
        let at = pending.iter().position(|p| p.id == self.id);
        at.map(|at| pending.remove(at)).is_some()
    }
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.take_back();
    }
}

/// One statement for the batch; each request hears its row, or, if the statement failed, runs its own.
async fn run(
    mut connection: sqlx::pool::PoolConnection<sqlx::Any>,
    sql: &'static str,
    batch: Vec<Pending>,
) -> sqlx::pool::PoolConnection<sqlx::Any> {
    let rows = sqlx::query(sql)
        .bind(items(batch.iter().map(|p| &p.params)))
        .fetch_all(&mut *connection)
        .await;
    let rows = match rows {
        Ok(rows) => rows,
        Err(e) => {
            tracing::debug!(error = %e, requests = batch.len(), "a batched statement failed; each request runs it alone");
            for pending in batch {
                let _ = pending.reply.send(Answer::Alone(pending.params));
            }
            return connection;
        }
    };
    let mut found: Vec<Option<AnyRow>> = (0..batch.len()).map(|_| None).collect();
    for row in rows {
        let place = row.try_get::<i64, _>("n").ok().and_then(|n| usize::try_from(n).ok());
        if let Some(slot) = place.and_then(|n| found.get_mut(n)) {
            *slot = Some(row);
        }
    }
    for (pending, row) in batch.into_iter().zip(found) {
        // A request that went away leaves what its statement took to run out by itself, as a request
        // cancelled mid-statement does.
        let _ = pending.reply.send(Answer::Row(row));
    }
    connection
}

/// `$1`: the requests' parameters, each with its place in the batch.
fn items<'a>(params: impl Iterator<Item = &'a serde_json::Value>) -> String {
    let items = params
        .enumerate()
        .map(|(n, params)| {
            let mut item = params.clone();
            if let Some(fields) = item.as_object_mut() {
                fields.insert("n".into(), n.into());
            }
            item
        })
        .collect();
    serde_json::Value::Array(items).to_string()
}
