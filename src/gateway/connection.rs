//! One accepted connection's life: what bounds it before, between and during requests.
//!
//! - **Before the first byte.** hyper-util's protocol detection (HTTP/1 or HTTP/2) has no
//!   timer: a socket that never sends a byte was held forever. The first byte must arrive
//!   within the header timeout.
//! - **Idle.** A connection with nothing in flight for the header timeout is closed gracefully
//!   (HTTP/2 gets a GOAWAY; hyper's own HTTP/1 header timer also covers keep-alive waits), so
//!   idle HTTP/2 clients cannot pile up. A request in flight keeps its connection whatever its
//!   upstream takes: only the absence of requests counts as idle.
//! - **Shutdown.** The listener's stop signal asks every connection to finish gracefully.
//!
//! How many connections a listener holds at once is its [`tokio::sync::Semaphore`]'s business
//! (see `server::serve`): a full listener refuses new ones instead of running out of file
//! descriptors, and the admin listener has its own.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::{Body, Frame, SizeHint};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// What a connection is doing: requests in flight, and when the last one ended.
#[derive(Debug)]
pub struct Activity {
    in_flight: AtomicUsize,
    /// Milliseconds since `opened` when the connection last had nothing in flight.
    idle_since_ms: AtomicU64,
    opened: Instant,
}

impl Activity {
    /// A connection just accepted.
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            in_flight: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(0),
            opened: Instant::now(),
        })
    }

    /// A request arrived: the connection is busy until its response body is gone.
    pub fn started(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(self.clone())
    }

    /// How long the connection has had nothing in flight (zero while a request runs).
    fn idle_for(&self) -> Duration {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return Duration::ZERO;
        }
        let since = Duration::from_millis(self.idle_since_ms.load(Ordering::Acquire));
        self.opened.elapsed().saturating_sub(since)
    }
}

/// One request in flight; its end (the response body dropped) stamps the connection's idle
/// clock.
#[derive(Debug)]
pub struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let activity = &self.0;
        let now = activity.opened.elapsed().as_millis() as u64;
        activity.idle_since_ms.fetch_max(now, Ordering::AcqRel);
        activity.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that holds its request's [`InFlight`] until it is dropped (sent, or cut).
#[derive(Debug)]
pub struct Tracked<B> {
    body: B,
    _in_flight: InFlight,
}

impl<B> Tracked<B> {
    /// Ties `body` to the request it answers.
    pub fn new(body: B, in_flight: InFlight) -> Self {
        Self {
            body,
            _in_flight: in_flight,
        }
    }
}

impl<B: Body + Unpin> Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// Waits for a new connection's first byte; false when none came within `timeout`, the socket
/// failed, or the listener is stopping (a connection that has asked for nothing is not waited
/// for), and the connection should be dropped unserved.
pub async fn first_byte(
    stream: &tokio::net::TcpStream,
    timeout: Duration,
    stop: &CancellationToken,
) -> bool {
    // `peek` waits for a byte and leaves it for hyper; `readable` alone may wake spuriously.
    let mut first = [0u8; 1];
    tokio::select! {
        peeked = tokio::time::timeout(timeout, stream.peek(&mut first)) => {
            matches!(peeked, Ok(Ok(1..)))
        }
        () = stop.cancelled() => false,
    }
}

/// Drives `connection` to its end: asked to finish gracefully (`graceful_shutdown`) once it
/// has been idle for `idle`, or when `stop` fires.
pub async fn drive<C: Future>(
    connection: C,
    graceful_shutdown: impl Fn(Pin<&mut C>),
    activity: &Activity,
    idle: Duration,
    stop: &CancellationToken,
) -> C::Output {
    let mut connection = std::pin::pin!(connection);
    let mut closing = false;
    // Checked a few times per idle period: a connection outlives its idleness by at most a
    // quarter of it.
    let mut ticks = tokio::time::interval(idle.max(Duration::from_millis(40)) / 4);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            output = connection.as_mut() => return output,
            () = stop.cancelled(), if !closing => {
                closing = true;
                graceful_shutdown(connection.as_mut());
            }
            _ = ticks.tick(), if !closing => {
                if activity.idle_for() >= idle {
                    closing = true;
                    graceful_shutdown(connection.as_mut());
                }
            }
        }
    }
}
