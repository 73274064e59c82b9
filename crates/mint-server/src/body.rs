//! Reading a request body with a memory budget: each route caps its own body, a body that stalls for
//! [`IDLE`] or takes longer than [`DEADLINE`] in all is cut off, and what all requests hold together is
//! bounded by one budget of bytes, so a thousand connections each sending a body just under its route's
//! cap cannot add up to more than the budget. A request whose bytes the budget cannot cover is answered
//! 503 with `Retry-After`, and its connection closed.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt as _;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Bytes of request bodies all connections together may hold at once.
pub const BUDGET: usize = 16 * 1024 * 1024;
/// However the bytes trickle in, a body must be complete within this (the per-frame idle timeout is
/// shorter: [`IDLE`]).
pub const DEADLINE: Duration = Duration::from_secs(20);
/// The longest pause between two pieces of a body.
pub const IDLE: Duration = Duration::from_secs(5);

/// Why a body was not read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("the request body is larger than this route takes ({limit} bytes)")]
    TooLarge { limit: usize },
    #[error("mint-server is holding as many request bodies as it may: retry in a second")]
    Busy,
    #[error("the request body did not arrive in time")]
    TimedOut,
    #[error("reading the request body failed: {0}")]
    Broken(String),
}

/// The budget every request body is charged against.
#[derive(Debug, Clone)]
pub struct Budget(Arc<Semaphore>);

impl Default for Budget {
    fn default() -> Self {
        Self::new(BUDGET)
    }
}

impl Budget {
    pub fn new(bytes: usize) -> Self {
        Self(Arc::new(Semaphore::new(bytes)))
    }

    /// Bytes not held by any body now.
    pub fn available(&self) -> usize {
        self.0.available_permits()
    }
}

/// A body read within the budget; its bytes stay charged until this is dropped.
#[derive(Debug)]
pub struct Held {
    pub bytes: Bytes,
    _charge: Option<OwnedSemaphorePermit>,
}

/// Read `body` whole, at most `limit` bytes, each chunk charged to `budget` as it arrives; `observe` sees
/// every chunk (a webhook's HMAC is computed as the body arrives). With `retain` below `limit`, only the
/// first `retain` bytes are kept (and charged); the rest are observed and dropped, and the answer says
/// the body was cut (`None`).
pub async fn read(
    body: Body,
    limit: usize,
    retain: usize,
    budget: &Budget,
    mut observe: impl FnMut(&[u8]),
) -> Result<Option<Held>, BodyError> {
    let mut body = body;
    let mut kept = BytesMut::new();
    let mut charge: Option<OwnedSemaphorePermit> = None;
    let (mut total, mut cut) = (0usize, false);
    let reading = async {
        while let Some(frame) = tokio::time::timeout(IDLE, body.frame())
            .await
            .map_err(|_| BodyError::TimedOut)?
        {
            let frame = frame.map_err(|e| classify(&e, limit))?;
            let Ok(chunk) = frame.into_data() else {
                continue;
            };
            total += chunk.len();
            if total > limit {
                return Err(BodyError::TooLarge { limit });
            }
            observe(&chunk);
            let keep = chunk.len().min(retain.saturating_sub(kept.len()));
            if keep < chunk.len() {
                cut = true;
            }
            if keep > 0 {
                let more = u32::try_from(keep).map_err(|_| BodyError::TooLarge { limit })?;
                let permit = budget
                    .0
                    .clone()
                    .try_acquire_many_owned(more)
                    .map_err(|_| BodyError::Busy)?;
                match charge.as_mut() {
                    Some(held) => held.merge(permit),
                    None => charge = Some(permit),
                }
                kept.extend_from_slice(&chunk[..keep]);
            }
        }
        Ok(())
    };
    tokio::time::timeout(DEADLINE, reading)
        .await
        .map_err(|_| BodyError::TimedOut)??;
    Ok((!cut).then(|| Held {
        bytes: kept.freeze(),
        _charge: charge,
    }))
}

/// A broken body: the connection failed (or a length limit below said so).
fn classify(e: &(dyn std::error::Error + 'static), limit: usize) -> BodyError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if err.is::<http_body_util::LengthLimitError>() {
            return BodyError::TooLarge { limit };
        }
        source = err.source();
    }
    BodyError::Broken(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(parts: &[&'static [u8]]) -> Body {
        let parts: Vec<Result<Bytes, std::io::Error>> = parts.iter().map(|p| Ok(Bytes::from_static(p))).collect();
        Body::from_stream(futures_util::stream::iter(parts))
    }

    #[tokio::test]
    async fn bodies_share_one_budget_and_give_it_back() {
        let budget = Budget::new(10);
        let first = read(chunks(&[b"12345", b"678"]), 100, 100, &budget, |_| {})
            .await
            .expect("read")
            .expect("whole");
        assert_eq!(&first.bytes[..], b"12345678");
        assert_eq!(budget.available(), 2);
        assert!(matches!(
            read(chunks(&[b"abc"]), 100, 100, &budget, |_| {}).await,
            Err(BodyError::Busy)
        ));
        drop(first);
        assert_eq!(budget.available(), 10);
    }

    #[tokio::test]
    async fn a_body_over_its_limit_is_refused_and_a_cut_one_is_observed_whole() {
        let budget = Budget::new(100);
        assert!(matches!(
            read(chunks(&[b"123456"]), 5, 5, &budget, |_| {}).await,
            Err(BodyError::TooLarge { limit: 5 })
        ));
        let mut seen = 0;
        let cut = read(chunks(&[b"1234", b"5678"]), 100, 4, &budget, |c| seen += c.len())
            .await
            .expect("read");
        assert!(cut.is_none(), "more than it keeps");
        assert_eq!(seen, 8, "every byte was observed");
        assert_eq!(budget.available(), 100);
    }
}
