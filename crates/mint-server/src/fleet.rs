//! What replicas coordinate through the database: which one runs the reconcile sweep (a PostgreSQL
//! advisory lock), how many mints per installation are in flight fleet-wide (slots in the database, taken
//! in turn across products), and GitHub's pauses (a 403/429 seen by one replica stops every replica's mints
//! for that installation until GitHub's time).
//!
//! On `SQLite` there is one process: the sweep needs no lock, and the bound is counted in memory.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::Notify;

use crate::model::now_ms;
use crate::store::{Backend, SlotRow, SlotWanted, Store, StoreError};

/// The advisory lock's key: "mintswep" in ASCII, so it is recognisable in `pg_locks`.
pub const SWEEP_LOCK_KEY: i64 = 0x6d69_6e74_7377_6570;

/// The reconcile sweep's lock, held on a connection of its own: PostgreSQL releases a session-level
/// advisory lock when the session ends, so a replica that dies (kill -9, a lost node) frees it for another.
#[derive(Debug, Default)]
pub struct SweepLock {
    held: Option<sqlx::AnyConnection>,
}

impl SweepLock {
    /// Does this replica run the sweep now? Takes the lock if it is free; checks that a held lock's
    /// connection is still alive (a dead one means PostgreSQL has let go of it, or soon will).
    pub async fn hold(&mut self, store: &Store) -> bool {
        if store.backend() == Backend::Sqlite {
            return true;
        }
        if let Some(conn) = self.held.as_mut() {
            if sqlx::query("SELECT 1").execute(&mut *conn).await.is_ok() {
                return true;
            }
            tracing::warn!("lost the connection holding the reconcile sweep's lock; another replica may take it");
            self.held = None;
        }
        let mut conn = match store.dedicated_connection().await {
            Ok(conn) => conn,
            Err(e) => {
                tracing::warn!(error = %e, "cannot reach the database to take the reconcile sweep's lock");
                return false;
            }
        };
        let taken: Result<bool, sqlx::Error> = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(SWEEP_LOCK_KEY)
            .fetch_one(&mut conn)
            .await;
        match taken {
            Ok(true) => {
                tracing::info!("this replica now runs the reconcile sweep (it holds the database's sweep lock)");
                self.held = Some(conn);
                true
            }
            Ok(false) => false,
            Err(e) => {
                tracing::warn!(error = %e, "asking for the reconcile sweep's lock failed");
                false
            }
        }
    }

    pub fn is_held(&self) -> bool {
        self.held.is_some()
    }
}

/// Why a mint was not started.
#[derive(Debug)]
pub enum Refused {
    /// GitHub asked for a pause until this time (unix seconds).
    Paused {
        until: i64,
    },
    /// The installation's slots stayed full for as long as a request may wait.
    Busy {
        waited: Duration,
    },
    Store(StoreError),
}

impl From<StoreError> for Refused {
    fn from(e: StoreError) -> Self {
        Refused::Store(e)
    }
}

/// At most `per_installation` mints in flight per installation across the fleet, handed out in turn
/// across products: a product starting a thousand sandboxes does not starve another's one.
#[derive(Debug)]
pub struct MintGate {
    per_installation: usize,
    /// This replica's name in the slot table.
    replica: String,
    /// How long a request waits for a slot before answering 503.
    max_wait: Duration,
    lanes: Mutex<HashMap<u64, Lane>>,
    /// Installations this replica has minted for: their slot rows exist (PostgreSQL), and the pause an
    /// earlier run recorded was read (SQLite). Done once, by the first request; the others of a burst wait
    /// for it.
    known: Mutex<HashMap<u64, Arc<tokio::sync::OnceCell<()>>>>,
    tickets: AtomicU64,
}

/// How long a token request waits its turn before answering 503 (mintd gives a request 15 s, and retries).
pub const MAX_QUEUE_WAIT: Duration = Duration::from_secs(10);
/// A slot's lease, renewed every [`SLOT_RENEW`] while its mint runs: a replica that dies mid-mint frees its
/// slots within this, well inside the [`MAX_QUEUE_WAIT`] the other replicas' requests wait.
const SLOT_LEASE: Duration = Duration::from_secs(4);
const SLOT_RENEW: Duration = Duration::from_secs(1);
/// How often the first waiter asks the database again when every slot is held by other replicas.
const SLOT_POLL: Duration = Duration::from_millis(20);

/// One installation's waiters on this replica.
#[derive(Debug, Default)]
struct Lane {
    /// Products with waiters, in the order they take turns.
    turns: VecDeque<String>,
    waiting: HashMap<String, VecDeque<u64>>,
    /// Mints in flight from this replica, and slots taken for waiters who have not picked them up yet.
    in_flight: usize,
    /// Slots the first in line took for the waiters behind it (PostgreSQL), by ticket, until each picks
    /// its own up.
    granted: HashMap<u64, i64>,
    /// A pause this replica learned (from GitHub or the database), so its waiters stop at once.
    paused_until: i64,
    notify: Arc<Notify>,
}

impl Lane {
    /// How many tickets go before this one, taking turns across products: round r serves each product's
    /// r-th waiter, in the order of `turns`.
    fn position(&self, product: &str, ticket: u64) -> Option<usize> {
        let mine = self.turns.iter().position(|p| p == product)?;
        let index = self.waiting.get(product)?.iter().position(|t| *t == ticket)?;
        Some(
            self.turns
                .iter()
                .enumerate()
                .map(|(q, name)| {
                    let len = self.waiting.get(name).map_or(0, VecDeque::len);
                    len.min(index + usize::from(q < mine))
                })
                .sum(),
        )
    }

    /// The first `n` tickets in line, in the order [`Lane::position`] counts.
    fn first(&self, n: usize) -> Vec<(String, u64)> {
        let mut first = Vec::with_capacity(n);
        for round in 0.. {
            let before = first.len();
            for product in &self.turns {
                if first.len() == n {
                    return first;
                }
                if let Some(ticket) = self.waiting.get(product).and_then(|q| q.get(round)) {
                    first.push((product.clone(), *ticket));
                }
            }
            if first.len() == before {
                break;
            }
        }
        first
    }

    /// Waiters in line.
    fn waiting(&self) -> usize {
        self.waiting.values().map(VecDeque::len).sum()
    }

    fn remove(&mut self, product: &str, ticket: u64) {
        let Some(queue) = self.waiting.get_mut(product) else {
            return;
        };
        let was_first = queue.front() == Some(&ticket);
        queue.retain(|t| *t != ticket);
        if queue.is_empty() {
            self.waiting.remove(product);
            self.turns.retain(|p| p != product);
        } else if was_first && self.turns.front().is_some_and(|p| p == product) {
            // The product had its turn: the next product goes first.
            self.turns.rotate_left(1);
        }
        self.notify.notify_waiters();
    }
}

impl MintGate {
    pub fn new(per_installation: usize, max_wait: Duration) -> Self {
        Self {
            per_installation: per_installation.max(1),
            replica: crate::secrets::new_id("rep_"),
            max_wait,
            lanes: Mutex::default(),
            known: Mutex::default(),
            tickets: AtomicU64::new(0),
        }
    }

    pub fn per_installation(&self) -> usize {
        self.per_installation
    }

    fn known(&self, installation_id: u64) -> Arc<tokio::sync::OnceCell<()>> {
        self.known
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(installation_id)
            .or_default()
            .clone()
    }

    fn lanes(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Lane>> {
        self.lanes.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Wait for the installation's turn and a free slot; the permit gives the slot back when dropped.
    pub async fn enter(
        self: &Arc<Self>,
        store: &Store,
        installation_id: u64,
        product_id: &str,
    ) -> Result<MintPermit, Refused> {
        let now = crate::model::now();
        if let Some(until) = self.local_pause(installation_id, now) {
            return Err(Refused::Paused { until });
        }
        // Once per installation in this process's life: on PostgreSQL make sure its slot rows exist; on
        // SQLite (one process, so every later pause is noted here as it is recorded) read the pause an
        // earlier run recorded.
        let known = self.known(installation_id);
        if !known.initialized() {
            known
                .get_or_try_init(|| async {
                    match store.backend() {
                        Backend::Postgres => store.ensure_mint_slots(installation_id, self.per_installation).await,
                        Backend::Sqlite => {
                            if let Some(until) = store.paused_until(installation_id, now).await? {
                                self.note_pause(installation_id, until);
                            }
                            Ok(())
                        }
                    }
                })
                .await?;
            if let Some(until) = self.local_pause(installation_id, now) {
                return Err(Refused::Paused { until });
            }
        }
        let ticket = self.tickets.fetch_add(1, Ordering::Relaxed);
        {
            let mut lanes = self.lanes();
            let lane = lanes.entry(installation_id).or_default();
            let queue = lane.waiting.entry(product_id.to_owned()).or_default();
            if queue.is_empty() {
                lane.turns.push_back(product_id.to_owned());
            }
            queue.push_back(ticket);
        }
        let mut waiter = Waiter {
            gate: self,
            store,
            installation_id,
            product_id,
            ticket,
            queued: true,
        };
        let started = tokio::time::Instant::now();
        loop {
            let notify = self.lanes().entry(installation_id).or_default().notify.clone();
            let notified = notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let (granted, in_line, paused) = {
                let mut lanes = self.lanes();
                let lane = lanes.entry(installation_id).or_default();
                (
                    lane.granted.remove(&ticket),
                    lane.position(product_id, ticket).map(|p| (p, lane.waiting())),
                    lane.paused_until,
                )
            };
            if let Some(slot) = granted {
                // The first in line took this slot for us, and took us out of the line.
                waiter.queued = false;
                return Ok(self.permit(store, installation_id, Some(slot)));
            }
            if paused > crate::model::now() {
                return Err(Refused::Paused { until: paused });
            }
            let left = self.max_wait.saturating_sub(started.elapsed());
            if left.is_zero() {
                return Err(Refused::Busy {
                    waited: started.elapsed(),
                });
            }
            match in_line {
                Some((0, waiting)) => match self.take_slots(store, installation_id, waiting).await? {
                    Taken::Slots(slots) => {
                        let mine = self.hand_out(&mut waiter, store, slots);
                        return Ok(self.permit(store, installation_id, mine));
                    }
                    Taken::Paused(until) => {
                        self.note_pause(installation_id, until);
                        return Err(Refused::Paused { until });
                    }
                    Taken::Full => {
                        // A local release wakes us; another replica's is seen at the next poll.
                        let poll = if store.backend() == Backend::Postgres {
                            SLOT_POLL
                        } else {
                            left
                        };
                        let _ = tokio::time::timeout(poll.min(left), notified).await;
                    }
                },
                _ => {
                    let _ = tokio::time::timeout(left, notified).await;
                }
            }
        }
    }

    /// What the broker's view asks for to take a slot with the sandbox's lease (PostgreSQL): one of this
    /// replica's slots, leased from `now_ms`, of an installation nobody here is in line for (whose waiters
    /// take turns) and that GitHub has not paused here.
    pub fn slot_wanted(&self, now_ms: i64) -> SlotWanted<'_> {
        let now = crate::model::now();
        let in_line = self
            .lanes()
            .iter()
            .filter(|(_, lane)| !lane.turns.is_empty() || lane.paused_until > now)
            .map(|(id, _)| id.to_string())
            .collect::<Vec<_>>()
            .join(",");
        SlotWanted {
            holder: &self.replica,
            slots: i64::try_from(self.per_installation).unwrap_or(i64::MAX),
            until: now_ms + lease_ms(SLOT_LEASE),
            in_line,
        }
    }

    /// A slot the broker's view took with the sandbox's lease, because nobody here was in line for the
    /// installation: counted here as in flight, renewed while its mint runs, given back like any other.
    pub fn adopt(self: &Arc<Self>, store: &Store, installation_id: u64, slot: i64) -> MintPermit {
        self.lanes().entry(installation_id).or_default().in_flight += 1;
        self.permit(store, installation_id, Some(slot))
    }

    fn permit(self: &Arc<Self>, store: &Store, installation_id: u64, slot: Option<i64>) -> MintPermit {
        MintPermit {
            gate: self.clone(),
            store: store.clone(),
            installation_id,
            renewal: slot.map(|slot| self.renew_slot(store, installation_id, slot)),
            slot,
        }
    }

    /// The first in line took `slots` (at least one): it keeps the first, and the next in line, in turn, get
    /// the others; any left over (their waiters went meanwhile) are given back.
    fn hand_out(self: &Arc<Self>, waiter: &mut Waiter<'_>, store: &Store, slots: Vec<Option<i64>>) -> Option<i64> {
        waiter.leave();
        let mut slots = slots.into_iter();
        let mine = slots.next().flatten();
        let mut left_over = Vec::new();
        {
            let mut lanes = self.lanes();
            let lane = lanes.entry(waiter.installation_id).or_default();
            let mut next = lane.first(slots.len()).into_iter();
            for slot in slots.flatten() {
                match next.next() {
                    Some((product, ticket)) => {
                        lane.remove(&product, ticket);
                        lane.granted.insert(ticket, slot);
                    }
                    None => left_over.push(slot),
                }
            }
            lane.notify.notify_waiters();
        }
        for slot in left_over {
            drop(self.permit(store, waiter.installation_id, Some(slot)));
        }
        mine
    }

    /// Up to `wanted` slots: on PostgreSQL in one round trip, unless the installation is paused; in memory
    /// one at a time, exactly in turn.
    async fn take_slots(&self, store: &Store, installation_id: u64, wanted: usize) -> Result<Taken, StoreError> {
        match store.backend() {
            Backend::Sqlite => {
                let mut lanes = self.lanes();
                let lane = lanes.entry(installation_id).or_default();
                Ok(if lane.in_flight < self.per_installation {
                    lane.in_flight += 1;
                    Taken::Slots(vec![None])
                } else {
                    Taken::Full
                })
            }
            Backend::Postgres => {
                let now_ms = now_ms();
                let lease = now_ms + lease_ms(SLOT_LEASE);
                let wanted = wanted.clamp(1, self.per_installation);
                let slots = store
                    .take_mint_slots(
                        installation_id,
                        (self.per_installation, wanted),
                        &self.replica,
                        now_ms,
                        lease,
                    )
                    .await?;
                if slots.is_empty() {
                    return match store.paused_until(installation_id, now_ms / 1000).await? {
                        Some(until) => Ok(Taken::Paused(until)),
                        None => Ok(Taken::Full),
                    };
                }
                self.lanes().entry(installation_id).or_default().in_flight += slots.len();
                Ok(Taken::Slots(slots.into_iter().map(Some).collect()))
            }
        }
    }

    /// Keep the slot's lease ahead of the clock while its mint runs (the permit aborts this when dropped).
    fn renew_slot(&self, store: &Store, installation_id: u64, slot: i64) -> tokio::task::JoinHandle<()> {
        let (store, replica) = (store.clone(), self.replica.clone());
        keep_renewed(
            format!("installation {installation_id}'s mint slot {slot}"),
            (SLOT_RENEW, SLOT_LEASE),
            move |until| {
                let (store, replica) = (store.clone(), replica.clone());
                async move { store.renew_mint_slot(installation_id, slot, &replica, until).await }
            },
        )
    }

    fn local_pause(&self, installation_id: u64, now: i64) -> Option<i64> {
        self.lanes()
            .get(&installation_id)
            .map(|l| l.paused_until)
            .filter(|until| *until > now)
    }

    /// Remember a pause here too, and stop this replica's waiters for the installation now.
    pub fn note_pause(&self, installation_id: u64, until: i64) {
        let mut lanes = self.lanes();
        let lane = lanes.entry(installation_id).or_default();
        lane.paused_until = lane.paused_until.max(until);
        lane.notify.notify_waiters();
    }

    /// GitHub said to wait: record it for every replica, and stop this one's waiters at once.
    pub async fn pause(&self, store: &Store, installation_id: u64, wait: Duration, reason: &str) -> i64 {
        let until = crate::model::now() + i64::try_from(wait.as_secs().max(1)).unwrap_or(i64::MAX);
        self.note_pause(installation_id, until);
        if let Err(e) = store.pause_installation(installation_id, until, reason).await {
            tracing::warn!(error = %e, installation = installation_id, "could not record GitHub's pause for the other replicas");
        }
        until
    }
}

/// Renew a lease in the database every `every`, each time to `lease` from now, until the task is aborted:
/// `renew(until)` answers whether this replica still held it. A lease lost (it ran out and may be another's
/// now) ends the renewal; a renewal that failed is tried again at the next tick.
pub(crate) fn keep_renewed<F, Fut>(
    what: String,
    (every, lease): (Duration, Duration),
    mut renew: F,
) -> tokio::task::JoinHandle<()>
where
    F: FnMut(i64) -> Fut + Send + 'static,
    Fut: Future<Output = Result<bool, StoreError>> + Send,
{
    tokio::spawn(async move {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match renew(now_ms() + lease_ms(lease)).await {
                Ok(true) => {}
                Ok(false) => {
                    tracing::warn!(lease = %what, "a lease ran out before it was renewed, and may be another's now; the mint it guards goes on and is recorded");
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, lease = %what, "could not renew a lease; trying again in a moment");
                }
            }
        }
    })
}

fn lease_ms(lease: Duration) -> i64 {
    i64::try_from(lease.as_millis()).unwrap_or(i64::MAX)
}

enum Taken {
    /// Slots, at least one: their rows on PostgreSQL, `None` for the in-memory count.
    Slots(Vec<Option<i64>>),
    Full,
    Paused(i64),
}

/// A place in an installation's queue; leaves the queue when dropped (the request was cancelled), and gives
/// back a slot taken for it that it did not pick up.
struct Waiter<'a> {
    gate: &'a Arc<MintGate>,
    store: &'a Store,
    installation_id: u64,
    product_id: &'a str,
    ticket: u64,
    queued: bool,
}

impl Waiter<'_> {
    fn leave(&mut self) {
        if !self.queued {
            return;
        }
        self.queued = false;
        if let Some(lane) = self.gate.lanes().get_mut(&self.installation_id) {
            lane.remove(self.product_id, self.ticket);
        }
    }
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        self.leave();
        let granted = self
            .gate
            .lanes()
            .get_mut(&self.installation_id)
            .and_then(|lane| lane.granted.remove(&self.ticket));
        if let Some(slot) = granted {
            drop(self.gate.permit(self.store, self.installation_id, Some(slot)));
        }
    }
}

/// One mint's place in the bound; the slot is given back when this is dropped.
#[derive(Debug)]
pub struct MintPermit {
    gate: Arc<MintGate>,
    store: Store,
    installation_id: u64,
    slot: Option<i64>,
    /// The slot's lease renewal, while the mint runs.
    renewal: Option<tokio::task::JoinHandle<()>>,
}

impl MintPermit {
    /// Give the permit up here and leave the slot's row to a statement of the caller's that gives it back
    /// with its own work (the record's): the renewal stops, and this replica's waiters are let in. `None` on
    /// SQLite, whose slots are only counted here. If that statement fails, the row's lease frees it (4 s).
    pub fn into_slot_row(mut self) -> Option<SlotRow> {
        let slot = self.slot.take()?;
        Some(SlotRow {
            installation_id: self.installation_id,
            slot,
            holder: self.gate.replica.clone(),
        })
    }
}

impl Drop for MintPermit {
    fn drop(&mut self) {
        if let Some(renewal) = self.renewal.take() {
            renewal.abort();
        }
        {
            let mut lanes = self.gate.lanes();
            if let Some(lane) = lanes.get_mut(&self.installation_id) {
                lane.in_flight = lane.in_flight.saturating_sub(1);
                lane.notify.notify_waiters();
                if lane.in_flight == 0 && lane.turns.is_empty() && lane.paused_until < crate::model::now() {
                    lanes.remove(&self.installation_id);
                }
            }
        }
        if let Some(slot) = self.slot {
            let (store, gate, installation_id) = (self.store.clone(), self.gate.clone(), self.installation_id);
            tokio::spawn(async move {
                if let Err(e) = store.release_mint_slot(installation_id, slot, &gate.replica).await {
                    tracing::warn!(error = %e, installation = installation_id, "could not give a mint slot back; its lease frees it");
                }
                // Our own waiters may be polling for exactly this slot.
                if let Some(lane) = gate.lanes().get(&installation_id) {
                    lane.notify.notify_waiters();
                }
            });
        }
    }
}

/// Per-sandbox locks on this replica, by credential: a sandbox's requests read its state and mint one at a
/// time, so a later one hands out what the first minted. Entries go once nobody holds or waits for them
/// (checked when there are many).
#[derive(Debug, Default)]
pub struct MintLocks {
    locks: Mutex<HashMap<String, Weak<tokio::sync::Mutex<()>>>>,
}

impl MintLocks {
    /// The sandbox's lock on this replica (`key`: its credential's hash).
    pub async fn lock(&self, key: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut locks = self.locks.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if locks.len() >= 1024 {
                locks.retain(|_, lock| lock.strong_count() > 0);
            }
            let entry = locks.entry(key.to_owned()).or_default();
            entry.upgrade().unwrap_or_else(|| {
                let lock = Arc::new(tokio::sync::Mutex::new(()));
                *entry = Arc::downgrade(&lock);
                lock
            })
        };
        lock.lock_owned().await
    }
}

#[cfg(test)]
mod tests {
    use super::Lane;

    fn lane(queues: &[(&str, &[u64])]) -> Lane {
        let mut lane = Lane::default();
        for (product, tickets) in queues {
            lane.turns.push_back((*product).to_owned());
            lane.waiting
                .insert((*product).to_owned(), tickets.iter().copied().collect());
        }
        lane
    }

    /// The first in line hands the slots it took to the waiters in the order they take turns: each product's
    /// first waiter, then each one's second, and so on.
    #[test]
    fn the_first_in_line_are_counted_in_turns_across_products() {
        let lane = lane(&[("busy", &[1, 2, 3, 4]), ("quiet", &[5]), ("other", &[6, 7])]);
        let first: Vec<u64> = lane.first(5).into_iter().map(|(_, t)| t).collect();
        assert_eq!(first, [1, 5, 6, 2, 7]);
        for (position, ticket) in lane.first(10).into_iter().enumerate() {
            assert_eq!(lane.position(&ticket.0, ticket.1), Some(position), "{ticket:?}");
        }
        assert_eq!(lane.first(10).len(), 7);
        assert_eq!(lane.waiting(), 7);
    }

    /// Slots granted in turn leave the line as [`Lane::remove`] does, so the next product in turn is first.
    #[test]
    fn after_a_hand_out_the_next_in_turn_is_first() {
        let mut lane = lane(&[("busy", &[1, 2, 3]), ("quiet", &[4, 5])]);
        for (product, ticket) in lane.first(3) {
            lane.remove(&product, ticket);
        }
        // busy 1, quiet 4, busy 2 went: quiet's second waiter is next, then busy's third.
        assert_eq!(lane.position("quiet", 5), Some(0));
        assert_eq!(lane.position("busy", 3), Some(1));
    }
}
