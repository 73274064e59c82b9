//! Who must hear of a change at once: a sandbox's watch (`GET /api/v1/sandbox`) when its product's
//! connection or its own state changes, and the revoker when tokens are queued for revocation.
//!
//! In one process this is a map of watch channels. Across replicas it is PostgreSQL's `LISTEN/NOTIFY`:
//! the store sends a notification inside the transaction that made the change (delivered on commit), and
//! every replica relays what it hears into its own map ([`listen`]). A replica whose listening connection
//! was lost wakes every watcher once it is back, since notifications sent meanwhile are gone.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::{Notify, watch};

/// The PostgreSQL channel every replica listens on.
pub const CHANNEL: &str = "mint_events";
/// A notification's payload: `product:<id>` or this.
pub const REVOCATIONS: &str = "revocations";
const PRODUCT_PREFIX: &str = "product:";

/// The payload that says a product changed.
pub fn product_payload(product_id: &str) -> String {
    format!("{PRODUCT_PREFIX}{product_id}")
}

#[derive(Debug, Default)]
pub struct Events {
    /// One channel per product someone watches; its value is bumped on each change.
    products: Mutex<HashMap<String, watch::Sender<u64>>>,
    /// Bumped when every watcher must look again (this replica may have missed notifications).
    everything: watch::Sender<u64>,
    revocations: Notify,
}

/// What a watcher waits on: its product's changes, and "everything" changes.
#[derive(Debug)]
pub struct ProductWatch {
    product: watch::Receiver<u64>,
    everything: watch::Receiver<u64>,
}

impl ProductWatch {
    /// Resolves at the next change after this watch was made (or after the last `changed`).
    pub async fn changed(&mut self) {
        tokio::select! {
            _ = self.product.changed() => {}
            _ = self.everything.changed() => {}
        }
    }
}

impl Events {
    fn products(&self) -> std::sync::MutexGuard<'_, HashMap<String, watch::Sender<u64>>> {
        self.products.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn watch_product(&self, product_id: &str) -> ProductWatch {
        let product = self
            .products()
            .entry(product_id.to_owned())
            .or_insert_with(|| watch::Sender::new(0))
            .subscribe();
        ProductWatch {
            product,
            everything: self.everything.subscribe(),
        }
    }

    /// The product's connection, or one of its sandboxes, changed here or at another replica.
    pub fn product_changed(&self, product_id: &str) {
        let mut products = self.products();
        if let Some(sender) = products.get(product_id) {
            sender.send_modify(|v| *v = v.wrapping_add(1));
        }
        // Channels nobody watches any more go; this keeps the map as large as the watchers, not the products.
        products.retain(|_, sender| sender.receiver_count() > 0);
    }

    pub fn everything_changed(&self) {
        self.everything.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// Tokens were queued for revocation: the revoker looks now rather than at its next tick.
    pub fn revocations_queued(&self) {
        self.revocations.notify_one();
    }

    /// Resolves once revocations were queued since the last time it resolved.
    pub async fn revocations(&self) {
        self.revocations.notified().await;
    }

    /// A notification from another replica (or this one, through the database).
    pub fn relay(&self, payload: &str) {
        if payload == REVOCATIONS {
            self.revocations_queued();
        } else if let Some(product) = payload.strip_prefix(PRODUCT_PREFIX) {
            self.product_changed(product);
        }
    }
}

/// Relay other replicas' notifications into `events` until the process ends (PostgreSQL only).
pub async fn listen(url: secrecy::SecretString, events: std::sync::Arc<Events>) {
    use secrecy::ExposeSecret as _;
    let mut backoff = Duration::from_millis(250);
    loop {
        let listener = async {
            let mut listener = sqlx::postgres::PgListener::connect(url.expose_secret()).await?;
            listener.listen(CHANNEL).await?;
            Ok::<_, sqlx::Error>(listener)
        };
        let mut listener = match listener.await {
            Ok(listener) => listener,
            Err(e) => {
                tracing::warn!(error = %e, retry_in_ms = backoff.as_millis(), "cannot listen for other replicas' events; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
                continue;
            }
        };
        backoff = Duration::from_millis(250);
        tracing::debug!("listening for other replicas' events");
        // Whatever happened while this replica was not listening: every watcher looks again.
        events.everything_changed();
        events.revocations_queued();
        loop {
            match listener.try_recv().await {
                Ok(Some(notification)) => events.relay(notification.payload()),
                Ok(None) => {
                    tracing::warn!("the connection listening for other replicas' events was lost and is back");
                    events.everything_changed();
                    events.revocations_queued();
                }
                Err(e) => {
                    tracing::warn!(error = %e, "listening for other replicas' events failed; reconnecting");
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_watch_wakes_for_its_product_only_and_unwatched_products_are_forgotten() {
        let events = Events::default();
        let mut watch = events.watch_product("prd_a");
        events.product_changed("prd_b");
        assert!(
            tokio::time::timeout(Duration::from_millis(20), watch.changed())
                .await
                .is_err(),
            "another product's change"
        );
        events.relay(&product_payload("prd_a"));
        tokio::time::timeout(Duration::from_secs(1), watch.changed())
            .await
            .expect("its own product's change wakes it");
        events.everything_changed();
        tokio::time::timeout(Duration::from_secs(1), watch.changed())
            .await
            .expect("everything changed wakes it");
        drop(watch);
        events.product_changed("prd_a");
        assert!(events.products().is_empty(), "no watcher, no channel");
    }
}
