//! A token bucket per client address, for what anonymous clients may start (`/login`: each one writes an
//! OAuth state and sends a browser to GitHub). Hand-written rather than a crate's: it is a dozen lines,
//! runs on `tokio::time::Instant` (so its tests use paused time), and bounds its own memory.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Addresses remembered at most; beyond this, those whose buckets are full again are forgotten first.
const MAX_ADDRESSES: usize = 10_000;

#[derive(Debug)]
pub struct PerAddress {
    burst: f64,
    /// Tokens added per second.
    rate: f64,
    buckets: Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

impl PerAddress {
    /// `burst` at once, then one every `every`.
    pub fn new(burst: u32, every: Duration) -> Self {
        Self {
            burst: f64::from(burst),
            rate: 1.0 / every.as_secs_f64(),
            buckets: Mutex::default(),
        }
    }

    /// Take one token for `addr`, or say how long until one is there.
    pub fn take(&self, addr: IpAddr) -> Result<(), Duration> {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if buckets.len() >= MAX_ADDRESSES && !buckets.contains_key(&addr) {
            let (burst, rate) = (self.burst, self.rate);
            buckets.retain(|_, (tokens, at)| *tokens + now.duration_since(*at).as_secs_f64() * rate < burst);
            if buckets.len() >= MAX_ADDRESSES {
                // Everyone remembered is still limited: the newcomer shares the fullest-drained fate.
                return Err(Duration::from_secs_f64(1.0 / self.rate));
            }
        }
        let (tokens, at) = buckets.entry(addr).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.rate).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - *tokens) / self.rate))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_burst_then_one_per_interval_per_address() {
        let limit = PerAddress::new(3, Duration::from_secs(2));
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().expect("ip"), "192.0.2.2".parse().expect("ip"));
        for _ in 0..3 {
            assert!(limit.take(a).is_ok());
        }
        let wait = limit.take(a).expect_err("the burst is spent");
        assert!(
            wait <= Duration::from_secs(2) && wait > Duration::from_millis(1900),
            "{wait:?}"
        );
        assert!(limit.take(b).is_ok(), "another address has its own bucket");
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(limit.take(a).is_ok());
        assert!(limit.take(a).is_err());
    }
}
