//! Bytes a server may hold for all its connections together, and what one request holds of them.
//!
//! The proxy's replay copies and the socket's request bodies each have one: whatever a hostile sandbox
//! opens, what they hold stays under the budget, and the gauge in `/metrics` shows it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::metrics::{BytesGauge, Metrics};

/// Bytes that may be held for all connections together.
pub(crate) struct Budget {
    limit: usize,
    used: AtomicUsize,
    /// The gauge in [`Metrics`] that shows what is held.
    gauge: fn(&Metrics) -> &BytesGauge,
}

impl Budget {
    pub(crate) fn new(limit: usize, gauge: fn(&Metrics) -> &BytesGauge) -> Self {
        Self {
            limit,
            used: AtomicUsize::new(0),
            gauge,
        }
    }

    /// Bytes held now.
    #[cfg(test)]
    pub(crate) fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }
}

/// What one request holds of a [`Budget`]; given back when dropped.
pub(crate) struct Charge {
    budget: Arc<Budget>,
    metrics: Arc<Metrics>,
    held: usize,
}

impl Charge {
    pub(crate) fn new(budget: Arc<Budget>, metrics: Arc<Metrics>) -> Self {
        Self {
            budget,
            metrics,
            held: 0,
        }
    }

    /// Hold `total` bytes in all; `false` (holding what it held) if the budget cannot cover them.
    pub(crate) fn cover(&mut self, total: usize) -> bool {
        let Some(more) = total.checked_sub(self.held).filter(|m| *m > 0) else {
            return true;
        };
        let limit = self.budget.limit;
        let taken = self
            .budget
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(more).filter(|u| *u <= limit)
            });
        if taken.is_err() {
            return false;
        }
        self.held += more;
        (self.budget.gauge)(&self.metrics).inc_by(u64::try_from(more).unwrap_or(u64::MAX));
        true
    }

    /// The metrics its gauge is in.
    pub(crate) fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Give back everything held.
    pub(crate) fn release(&mut self) {
        drop(std::mem::replace(self, self.empty()));
    }

    /// A charge on the same budget that holds nothing.
    pub(crate) fn empty(&self) -> Self {
        Self::new(self.budget.clone(), self.metrics.clone())
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.held, Ordering::AcqRel);
        (self.budget.gauge)(&self.metrics).dec_by(u64::try_from(self.held).unwrap_or(u64::MAX));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_share_the_budget_and_give_it_back_when_dropped() {
        let metrics = Arc::new(Metrics::default());
        let budget = Arc::new(Budget::new(100, |m| &m.socket_bodies));
        let mut a = Charge::new(budget.clone(), metrics.clone());
        let mut b = a.empty();
        assert!(a.cover(60));
        assert!(!b.cover(41), "60 + 41 is over 100");
        assert!(b.cover(40));
        assert_eq!(metrics.socket_bodies.get(), 100);
        a.release();
        assert_eq!(metrics.socket_bodies.get(), 40);
        assert!(b.cover(100), "b holds 40 and may grow to 100 now");
        drop(b);
        assert_eq!(budget.used(), 0);
        assert_eq!(metrics.socket_bodies.get(), 0);
    }
}
