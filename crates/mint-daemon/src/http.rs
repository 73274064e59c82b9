//! The one HTTP/1.1 accept loop both of mintd's servers run — the local API on the unix socket and the git
//! proxy on TCP: serve until told to stop, then stop accepting and let requests in flight finish.
//!
//! A hostile sandbox can open connections and never read from them, so each server runs under [`Limits`]:
//! a connection whose answer cannot be written for [`Limits::write_stall`] is dropped, at most
//! [`Limits::max_connections`] (and [`Limits::per_peer`] per uid) are held, and past those a
//! [`Limits::reserve`] of connections is served one request each under a short deadline, so `get` and
//! `/healthz` still answer while the held ones are taken. Past the reserve, a connection is closed at once.

use std::collections::HashMap;
use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::logs::Repeated;
use crate::metrics::Metrics;

/// After shutdown is asked for, requests in flight get this long to finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
/// `accept` failing (out of file descriptors, typically) is retried after this, doubling to [`ACCEPT_BACKOFF_MAX`].
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// How one server bounds its connections.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// The server's name in `/metrics` (`socket`, `proxy`).
    pub(crate) name: &'static str,
    /// A request's head must arrive within this; it also ends an idle keep-alive connection.
    pub(crate) header_timeout: Duration,
    /// A connection whose answer makes no progress for this long (the client does not read) is dropped.
    pub(crate) write_stall: Duration,
    /// Connections held at once.
    pub(crate) max_connections: usize,
    /// Of those, per peer uid (the unix socket's `SO_PEERCRED`; every TCP peer counts as one).
    pub(crate) per_peer: usize,
    /// Connections past the caps, each served one request under [`Limits::reserve_deadline`].
    pub(crate) reserve: usize,
    pub(crate) reserve_deadline: Duration,
    /// hyper's read and write buffer per connection (its default is about 400 KiB).
    pub(crate) max_buf_size: usize,
}

/// Something connections come from.
pub(crate) trait Listener {
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    fn accept(&self) -> impl Future<Output = std::io::Result<Self::Stream>> + Send;
    /// Whose connection this is, for [`Limits::per_peer`].
    fn peer_key(stream: &Self::Stream) -> u32;
}

/// The kernel's send buffer for each socket connection (it doubles what is asked). Answers a client leaves
/// unread sit there and are charged to mintd's memory cgroup: at Linux's default of 208 KiB, the held
/// connections' unread answers alone came near the pod's 64 MiB. mintd's answers are a few KiB.
const SOCKET_SNDBUF: usize = 16 * 1024;

impl Listener for tokio::net::UnixListener {
    type Stream = tokio::net::UnixStream;
    async fn accept(&self) -> std::io::Result<Self::Stream> {
        let (stream, _) = tokio::net::UnixListener::accept(self).await?;
        nix::sys::socket::setsockopt(&stream, nix::sys::socket::sockopt::SndBuf, &SOCKET_SNDBUF)?;
        Ok(stream)
    }
    fn peer_key(stream: &Self::Stream) -> u32 {
        // An unreadable credential shares one bucket: it is refused by the server's peer check anyway.
        stream.peer_cred().map_or(u32::MAX, |c| c.uid())
    }
}

impl Listener for tokio::net::TcpListener {
    type Stream = tokio::net::TcpStream;
    async fn accept(&self) -> std::io::Result<Self::Stream> {
        let (stream, _) = tokio::net::TcpListener::accept(self).await?;
        // git's smart HTTP is request and answer in turn: Nagle's algorithm would hold a small write back
        // until the peer's delayed ACK.
        stream.set_nodelay(true)?;
        Ok(stream)
    }
    fn peer_key(_: &Self::Stream) -> u32 {
        // The proxy listens on loopback for the sandbox: every peer is the sandbox.
        0
    }
}

/// Accept from `listener` and serve each connection with the service `service_for` makes for it (it sees
/// the stream, e.g. to read the peer's credentials), until `shutdown` resolves; then drain.
pub(crate) async fn serve<L, S, B>(
    listener: L,
    limits: Limits,
    service_for: impl Fn(&L::Stream) -> S,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()>,
) where
    L: Listener,
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>, Error = Infallible> + Send + 'static,
    S::Future: Send + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut held = hyper::server::conn::http1::Builder::new();
    held.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(limits.max_buf_size);
    let mut reserve = held.clone();
    reserve.keep_alive(false);
    let admission = Arc::new(Admission::new(limits));
    let mut backoff = ACCEPT_BACKOFF_MIN;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(stream) => {
                    backoff = ACCEPT_BACKOFF_MIN;
                    let Some(slot) = admission.admit(L::peer_key(&stream)) else {
                        metrics.connection(limits.name, "refused");
                        if metrics.repeated.should_log(Repeated::ConnectionShed) {
                            tracing::warn!(
                                server = limits.name,
                                held = limits.max_connections,
                                reserve = limits.reserve,
                                "closed a connection at once: every connection slot is taken"
                            );
                        }
                        continue;
                    };
                    let in_reserve = slot.in_reserve;
                    metrics.connection(limits.name, if in_reserve { "reserve" } else { "admitted" });
                    let service = service_for(&stream);
                    let io = TokioIo::new(StallGuard::new(stream, limits, metrics.clone()));
                    let builder = if in_reserve { &reserve } else { &held };
                    let connection = graceful.watch(builder.serve_connection(io, service));
                    let deadline = limits.reserve_deadline;
                    tokio::spawn(async move {
                        let _slot = slot;
                        let ended = if in_reserve {
                            match tokio::time::timeout(deadline, connection).await {
                                Ok(ended) => ended,
                                Err(_) => return,
                            }
                        } else {
                            connection.await
                        };
                        if let Err(e) = ended {
                            tracing::debug!(error = %e, "connection ended with an error");
                        }
                    });
                }
                Err(e) => {
                    // Typically out of file descriptors: keep serving those already connected, and retry
                    // less often while it lasts.
                    if metrics.repeated.should_log(Repeated::AcceptFailed) {
                        tracing::warn!(error = %e, retry_in_ms = backoff.as_millis(), "accept failed");
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                }
            },
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(SHUTDOWN_GRACE) => {
            tracing::warn!("requests still in flight after the grace period were cut off");
        }
    }
}

/// Who holds which connection slots.
struct Admission {
    limits: Limits,
    state: Mutex<AdmissionState>,
}

#[derive(Default)]
struct AdmissionState {
    held: usize,
    reserve: usize,
    per_peer: HashMap<u32, usize>,
}

/// One connection's slot, given back when the connection ends.
struct Slot {
    admission: Arc<Admission>,
    peer: u32,
    in_reserve: bool,
}

impl Admission {
    fn new(limits: Limits) -> Self {
        Self {
            limits,
            state: Mutex::new(AdmissionState::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, AdmissionState> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn admit(self: &Arc<Self>, peer: u32) -> Option<Slot> {
        let mut state = self.state();
        let of_peer = state.per_peer.get(&peer).copied().unwrap_or(0);
        let in_reserve = if state.held < self.limits.max_connections && of_peer < self.limits.per_peer {
            state.held += 1;
            *state.per_peer.entry(peer).or_default() += 1;
            false
        } else if state.reserve < self.limits.reserve {
            state.reserve += 1;
            true
        } else {
            return None;
        };
        Some(Slot {
            admission: self.clone(),
            peer,
            in_reserve,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut state = self.admission.state();
        if self.in_reserve {
            state.reserve -= 1;
        } else {
            state.held -= 1;
            if let Some(n) = state.per_peer.get_mut(&self.peer) {
                *n -= 1;
                if *n == 0 {
                    state.per_peer.remove(&self.peer);
                }
            }
        }
    }
}

/// A stream whose writes fail once they have made no progress for [`Limits::write_stall`]: hyper then ends
/// the connection, so a client that never reads its answers cannot hold it (nor the answers' memory).
struct StallGuard<S> {
    inner: S,
    limits: Limits,
    metrics: Arc<Metrics>,
    stalled_since: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<S> StallGuard<S> {
    fn new(inner: S, limits: Limits, metrics: Arc<Metrics>) -> Self {
        Self {
            inner,
            limits,
            metrics,
            stalled_since: None,
        }
    }

    /// The write is pending: has it been for too long?
    fn check_stall(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        let limit = self.limits.write_stall;
        let timer = self
            .stalled_since
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        if timer.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        self.stalled_since = None;
        self.metrics.connection(self.limits.name, "stalled");
        if self.metrics.repeated.should_log(Repeated::ConnectionShed) {
            tracing::warn!(
                server = self.limits.name,
                stalled_s = limit.as_secs(),
                "dropped a connection that stopped reading its answers"
            );
        }
        Poll::Ready(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("the client read nothing for {} s", limit.as_secs()),
        ))
    }

    fn guard<T>(&mut self, cx: &mut Context<'_>, polled: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        match polled {
            Poll::Ready(result) => {
                self.stalled_since = None;
                Poll::Ready(result)
            }
            Poll::Pending => self.check_stall(cx).map(Err),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for StallGuard<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for StallGuard<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.guard(cx, polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.guard(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_flush(cx);
        self.guard(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.guard(cx, polled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            name: "test",
            header_timeout: Duration::from_secs(5),
            write_stall: Duration::from_secs(10),
            max_connections: 3,
            per_peer: 2,
            reserve: 1,
            reserve_deadline: Duration::from_secs(1),
            max_buf_size: 64 * 1024,
        }
    }

    #[test]
    fn peers_share_the_held_slots_up_to_their_cap_then_the_reserve_then_nothing() {
        let admission = Arc::new(Admission::new(limits()));
        let a1 = admission.admit(1).expect("held");
        let a2 = admission.admit(1).expect("held");
        assert!(!a1.in_reserve && !a2.in_reserve);
        let a3 = admission.admit(1).expect("over its cap: the reserve");
        assert!(a3.in_reserve);
        assert!(admission.admit(1).is_none(), "reserve taken");
        let b1 = admission.admit(2).expect("another peer still gets a held slot");
        assert!(!b1.in_reserve);
        assert!(
            admission.admit(3).is_none(),
            "every held slot and the reserve are taken"
        );
        drop(a3);
        assert!(admission.admit(3).expect("the reserve came back").in_reserve);
        drop(a1);
        assert!(!admission.admit(3).expect("a held slot came back").in_reserve);
        let state = admission.state();
        assert_eq!((state.held, state.reserve), (2, 0));
        assert_eq!(state.per_peer.get(&1), Some(&1));
        assert_eq!(state.per_peer.get(&3), None, "dropped slots leave no entry behind");
    }

    #[tokio::test(start_paused = true)]
    async fn a_peer_that_never_reads_is_cut_off_after_the_write_stall() {
        use tokio::io::AsyncWriteExt;
        let (ours, _theirs) = tokio::io::duplex(64);
        let metrics = Arc::new(Metrics::default());
        let mut guarded = StallGuard::new(ours, limits(), metrics.clone());
        let started = tokio::time::Instant::now();
        let written = guarded.write_all(&[0u8; 1024]).await;
        let error = written.expect_err("nobody reads");
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert!(error.to_string().contains("read nothing for 10 s"), "{error}");
        assert_eq!(started.elapsed(), limits().write_stall);
        assert!(
            metrics
                .render(None)
                .contains("mint_connections_total{server=\"test\",outcome=\"stalled\"} 1")
        );
    }
}
