//! Log lines a client can cause at will, held to a burst per window and kind: the first [`LOG_BURST`] of a
//! kind in each [`LOG_WINDOW`] are written, the rest only counted, and the kind's next window opens with one
//! line saying how many were not written. So a flood of refused requests cannot flood the log (or the disk
//! under it), and each daemon's `/metrics` still counts every one.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

/// Per kind, at most [`LOG_BURST`] lines are written per this window.
pub const LOG_WINDOW: Duration = Duration::from_secs(10);
/// Lines per kind per [`LOG_WINDOW`]; past it, the next window opens with one summary line.
pub const LOG_BURST: u64 = 20;

/// A kind of repeated event, named as the summary line and `/metrics` label it.
pub trait LogKind: Copy + Eq + Hash {
    fn label(self) -> &'static str;
}

impl LogKind for &'static str {
    fn label(self) -> &'static str {
        self
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Window {
    started: Option<Instant>,
    logged: u64,
    suppressed: u64,
}

/// Per kind: events seen, events not logged, and the current window.
#[derive(Debug, Clone, Copy, Default)]
struct Tally {
    seen: u64,
    not_logged: u64,
    window: Window,
}

/// Counts each kind of event and decides whether it gets a log line.
#[derive(Debug)]
pub struct Throttle<K> {
    kinds: Mutex<HashMap<K, Tally>>,
}

impl<K> Default for Throttle<K> {
    fn default() -> Self {
        Self {
            kinds: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: LogKind> Throttle<K> {
    fn kinds(&self) -> MutexGuard<'_, HashMap<K, Tally>> {
        self.kinds.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Count one `kind`; `true` if it should be logged. The first event of a window after one that dropped
    /// lines writes the summary of that window.
    pub fn should_log(&self, kind: K) -> bool {
        let now = Instant::now();
        let mut kinds = self.kinds();
        let tally = kinds.entry(kind).or_default();
        tally.seen += 1;
        let window = &mut tally.window;
        if window.started.is_none_or(|started| now >= started + LOG_WINDOW) {
            if window.suppressed > 0 {
                tracing::warn!(
                    event = kind.label(),
                    not_logged = window.suppressed,
                    window_s = LOG_WINDOW.as_secs(),
                    "more of the same were not logged; /metrics counts them all"
                );
            }
            *window = Window {
                started: Some(now),
                ..Window::default()
            };
        }
        if window.logged < LOG_BURST {
            window.logged += 1;
            true
        } else {
            window.suppressed += 1;
            tally.not_logged += 1;
            false
        }
    }

    /// For `/metrics`: of `kind`, how many were seen and how many got no line of their own.
    pub fn counts(&self, kind: K) -> (u64, u64) {
        self.kinds().get(&kind).map_or((0, 0), |t| (t.seen, t.not_logged))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_burst_per_window_is_logged_then_counted_only() {
        let throttle = Throttle::<&'static str>::default();
        let logged = (0..10_000).filter(|_| throttle.should_log("declined")).count();
        assert_eq!(logged, 20);
        assert!(throttle.should_log("refused"), "each kind has its own budget");
        tokio::time::sleep(LOG_WINDOW).await;
        assert!(throttle.should_log("declined"), "a new window logs again");
        assert_eq!(throttle.counts("declined"), (10_001, 9_980));
        assert_eq!(throttle.counts("refused"), (1, 0));
        assert_eq!(throttle.counts("never"), (0, 0));
    }
}
