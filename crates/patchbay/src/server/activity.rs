//! What one connection is doing, for its timeouts: busy (a request in flight:
//! no timeout here, the request timeout applies), receiving a request head
//! (bounded in total, so a client cannot trickle headers a byte at a time), or
//! idle between requests. The socket wrapper and the service report to it; the
//! connection task asks it when the connection must close.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;

/// Why a connection was closed by its timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// The request line and headers did not arrive in time.
    HeaderRead,
    /// No request came in time.
    Idle,
}

impl Expiry {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::HeaderRead => "header_read_timeout",
            Self::Idle => "idle_timeout",
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Bytes of a request head have come (or the connection is new) since then.
    Head(Instant),
    /// Nothing since the last response (or its last byte written) then.
    Idle(Instant),
    /// Requests in flight.
    Busy(usize),
}

/// A connection's activity. Shared by its socket, its service and its task.
#[derive(Debug)]
pub struct Activity {
    phase: Mutex<Phase>,
    changed: Notify,
    header_read_timeout: Duration,
    idle_timeout: Duration,
}

impl Activity {
    /// A new connection: its request head is due within `header_read_timeout`.
    pub fn new(header_read_timeout: Duration, idle_timeout: Duration) -> Arc<Self> {
        Arc::new(Self {
            phase: Mutex::new(Phase::Head(Instant::now())),
            changed: Notify::new(),
            header_read_timeout,
            idle_timeout,
        })
    }

    /// When the connection must close if nothing changes; `None` while busy.
    pub fn deadline(&self) -> Option<(Instant, Expiry)> {
        match *self.phase.lock() {
            Phase::Head(since) => Some((since + self.header_read_timeout, Expiry::HeaderRead)),
            Phase::Idle(since) => Some((since + self.idle_timeout, Expiry::Idle)),
            Phase::Busy(_) => None,
        }
    }

    /// Waits until the phase changes in a way that may bring the deadline nearer.
    pub async fn changed(&self) {
        self.changed.notified().await;
    }

    /// A request head was parsed: the request is in flight until the guard drops.
    pub fn request_started(self: &Arc<Self>) -> InFlight {
        let mut phase = self.phase.lock();
        *phase = match *phase {
            Phase::Busy(n) => Phase::Busy(n + 1),
            _ => Phase::Busy(1),
        };
        drop(phase);
        self.changed.notify_one();
        InFlight(self.clone())
    }

    fn request_finished(&self) {
        let mut phase = self.phase.lock();
        *phase = match *phase {
            Phase::Busy(n) if n > 1 => Phase::Busy(n - 1),
            _ => Phase::Idle(Instant::now()),
        };
        drop(phase);
        self.changed.notify_one();
    }

    /// Bytes arrived: when idle, they start a request head.
    fn read(&self) {
        let mut phase = self.phase.lock();
        if let Phase::Idle(_) = *phase {
            *phase = Phase::Head(Instant::now());
            drop(phase);
            self.changed.notify_one();
        }
    }

    /// Bytes left: a response still being written is not idleness.
    fn wrote(&self) {
        let mut phase = self.phase.lock();
        if let Phase::Idle(_) = *phase {
            *phase = Phase::Idle(Instant::now());
        }
    }
}

/// A request in flight; dropping it (response ready, or request abandoned)
/// makes the connection idle again once no other request is in flight.
#[derive(Debug)]
pub struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.request_finished();
    }
}

/// A socket that reports its reads and writes to the connection's [`Activity`].
#[derive(Debug)]
pub struct Watched<T> {
    inner: T,
    activity: Arc<Activity>,
}

impl<T> Watched<T> {
    /// Wraps `inner`.
    pub fn new(inner: T, activity: Arc<Activity>) -> Self {
        Self { inner, activity }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.read();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.wrote();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.wrote();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: Duration = Duration::from_secs(10);
    const IDLE: Duration = Duration::from_secs(60);

    /// Asserts the deadline is `expiry`, counted from a moment in `from..=to`.
    fn due(activity: &Activity, expiry: Expiry, from: Instant, to: Instant) -> Instant {
        let (at, got) = activity.deadline().expect("a deadline");
        assert_eq!(got, expiry);
        let limit = match expiry {
            Expiry::HeaderRead => HEAD,
            Expiry::Idle => IDLE,
        };
        assert!(at >= from + limit && at <= to + limit, "{at:?}");
        at
    }

    #[test]
    fn a_new_connection_owes_its_head_and_a_finished_one_may_idle() {
        let before = Instant::now();
        let activity = Activity::new(HEAD, IDLE);
        let head = due(&activity, Expiry::HeaderRead, before, Instant::now());
        activity.read();
        activity.read();
        assert_eq!(
            activity.deadline(),
            Some((head, Expiry::HeaderRead)),
            "trickled bytes do not extend the head's time"
        );
        let first = activity.request_started();
        let second = activity.request_started();
        assert_eq!(activity.deadline(), None, "busy: no deadline");
        drop(first);
        assert_eq!(activity.deadline(), None, "one request still in flight");
        let before = Instant::now();
        drop(second);
        let idle = due(&activity, Expiry::Idle, before, Instant::now());
        activity.read();
        assert_eq!(
            activity.deadline().map(|d| d.1),
            Some(Expiry::HeaderRead),
            "the next request's first bytes start its head"
        );
        let _third = activity.request_started();
        assert!(idle > head);
    }

    #[test]
    fn writing_a_response_is_not_idleness() {
        let activity = Activity::new(HEAD, IDLE);
        drop(activity.request_started());
        let (idle, _) = activity.deadline().unwrap();
        std::thread::yield_now();
        let before = Instant::now();
        activity.wrote();
        let after_write = due(&activity, Expiry::Idle, before, Instant::now());
        assert!(after_write >= idle);
    }
}
