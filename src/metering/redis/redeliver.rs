//! Settlements and cancellations Redis did not take, sent again in the background until it
//! does. Both apply once (a settlement takes its reservation's marker, a cancellation sets it
//! only where there is none), so sending one again is safe even when an earlier attempt did
//! arrive. Without this, a Redis pause longer than the fail-mode timeout (a failover, a slow
//! fork) left the request's concurrency lease held until its TTL, the tenant a slot short for
//! 15 minutes, and its tokens and budget charged at the reservation instead of the use.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::task::TaskTracker;

use super::RedisError;
use crate::metrics::ResultLabels;

/// How long one is sent again before it is given up: longer than any lease (15 min), so a
/// settlement that makes it back in time still frees its slot, and well inside the marker's
/// 24 h, after which a settlement would find nothing to settle.
pub(super) const WINDOW: Duration = Duration::from_secs(3600);

/// The most waiting at once (one command of a few hundred bytes each). An outage is met by the
/// settlements of the requests in flight when it began; after those, only cancellations of the
/// reservations that timed out during it arrive, and past this many they are dropped (counted).
const MAX_WAITING: usize = 65_536;

/// How long one try sent again may take to be answered.
pub(super) const PATIENCE: Duration = Duration::from_secs(2);

const FIRST_WAIT: Duration = Duration::from_millis(100);
const LONGEST_WAIT: Duration = Duration::from_secs(5);

/// The wait before the `resend`-th send again (from 1): doubling from 100 ms, at most 5 s, so a
/// short pause is covered within a second and, through a long outage, each waiting call tries
/// once every few seconds.
pub(super) fn wait_before(resend: u32) -> Duration {
    let doublings = resend.saturating_sub(1).min(16);
    FIRST_WAIT.saturating_mul(1 << doublings).min(LONGEST_WAIT)
}

/// `wait` spread over half to one and a half of itself, so the calls of a whole fleet that
/// an outage held do not all arrive in the same instant when Redis returns.
pub(super) fn jittered(wait: Duration) -> Duration {
    wait.mul_f64(0.5 + rand::random::<f64>())
}

/// Whether sending the call again can succeed: after a timeout, a lost connection, Redis
/// loading, busy or out of memory, yes; after a script or type error, which would only repeat,
/// no.
pub(super) fn worth_resending(error: &RedisError) -> bool {
    match error {
        RedisError::Timeout(_) => true,
        RedisError::Call(error) => {
            matches!(error.code(), Some("OOM" | "BUSY"))
                || !matches!(error.retry_method(), redis::RetryMethod::NoRetry)
        }
        // A settlement of a reservation the lost data held has nothing left to settle.
        RedisError::Reply | RedisError::EpochLost => false,
    }
}

/// The places for calls waiting to be sent again, and where their outcomes are counted.
#[derive(Clone)]
pub(super) struct Redeliveries {
    places: Arc<Semaphore>,
    /// The calls waiting, so a stopping gateway can give them a last chance to land.
    waiting: TaskTracker,
    outcomes: Family<ResultLabels, Counter>,
    /// The minute (Unix) of the last warning about one given up: at most one a minute, so the
    /// end of a long outage does not flood the log (the metric counts them all).
    warned_minute: Arc<AtomicU64>,
}

impl Default for Redeliveries {
    fn default() -> Self {
        Self {
            places: Arc::new(Semaphore::new(MAX_WAITING)),
            waiting: TaskTracker::new(),
            outcomes: Family::default(),
            warned_minute: Arc::default(),
        }
    }
}

impl Redeliveries {
    /// Counts outcomes in `outcomes` (`applied`, `abandoned`, `dropped`) from now on.
    pub(super) fn report_to(&mut self, outcomes: Family<ResultLabels, Counter>) {
        self.outcomes = outcomes;
    }

    /// A place for one more waiting call; none (and counted as `dropped`) when all are taken.
    pub(super) fn place(&self) -> Option<OwnedSemaphorePermit> {
        let place = self.places.clone().try_acquire_owned().ok();
        if place.is_none() {
            self.count("dropped");
        }
        place
    }

    /// Runs one waiting call's tries in the background, holding its place until it ends.
    pub(super) fn spawn(
        &self,
        place: OwnedSemaphorePermit,
        tries: impl Future<Output = ()> + Send + 'static,
    ) {
        self.waiting.spawn(async move {
            let _place = place;
            tries.await;
        });
    }

    /// Waits until every call waiting now has landed or been given up, or `deadline` passes;
    /// how many are still waiting then.
    pub(super) async fn wait_until(&self, deadline: tokio::time::Instant) -> usize {
        self.waiting.close();
        let _ = tokio::time::timeout_at(deadline, self.waiting.wait()).await;
        self.waiting.len()
    }

    /// Counts one outcome.
    pub(super) fn count(&self, result: &'static str) {
        self.outcomes.get_or_create(&ResultLabels { result }).inc();
    }

    /// Counts one given up, and warns about it unless a warning went out this minute.
    pub(super) fn abandon(&self, resends: u32, error: &RedisError) {
        self.count("abandoned");
        let minute = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_secs() / 60);
        if self.warned_minute.swap(minute, Ordering::Relaxed) != minute {
            tracing::warn!(
                resends,
                "a Redis settlement or cancellation was given up (all are counted in dgidgi_redis_redeliveries_total); its counters keep the reservation until their TTL: {error}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_waits_double_from_a_tenth_of_a_second_to_five() {
        let waits: Vec<u64> = (1..=8).map(|n| wait_before(n).as_millis() as u64).collect();
        assert_eq!(waits, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        assert_eq!(wait_before(0), FIRST_WAIT);
        assert_eq!(wait_before(u32::MAX), LONGEST_WAIT);
    }

    fn io_error(kind: std::io::ErrorKind) -> RedisError {
        RedisError::Call(redis::RedisError::from(std::io::Error::from(kind)))
    }

    #[test]
    fn jitter_keeps_a_wait_within_half_and_one_and_a_half_of_itself() {
        for _ in 0..1_000 {
            let wait = jittered(Duration::from_secs(2));
            assert!(
                wait >= Duration::from_secs(1) && wait <= Duration::from_secs(3),
                "{wait:?}"
            );
        }
    }

    #[test]
    fn timeouts_and_lost_connections_are_resent_script_errors_are_not() {
        assert!(worth_resending(&RedisError::Timeout(
            Duration::from_millis(50)
        )));
        assert!(worth_resending(&io_error(
            std::io::ErrorKind::ConnectionRefused
        )));
        let out_of_memory = match redis::parse_redis_value(
            b"-OOM command not allowed when used memory > 'maxmemory'\r\n",
        ) {
            Ok(redis::Value::ServerError(error)) => redis::RedisError::from(error),
            other => panic!("a server error, not {other:?}"),
        };
        assert!(worth_resending(&RedisError::Call(out_of_memory)));
        let loading = redis::RedisError::from((
            redis::ErrorKind::Server(redis::ServerErrorKind::BusyLoading),
            "LOADING",
        ));
        assert!(worth_resending(&RedisError::Call(loading)));
        let script_error = redis::RedisError::from((
            redis::ErrorKind::Server(redis::ServerErrorKind::ResponseError),
            "ERR user_script:1: Script attempted to access nonexistent global variable",
        ));
        assert!(!worth_resending(&RedisError::Call(script_error)));
        assert!(!worth_resending(&RedisError::Reply));
    }

    #[test]
    fn only_a_refused_connection_means_the_call_never_left() {
        assert!(io_error(std::io::ErrorKind::ConnectionRefused).never_sent());
        assert!(!io_error(std::io::ErrorKind::ConnectionReset).never_sent());
        assert!(!RedisError::Timeout(Duration::from_millis(50)).never_sent());
    }

    #[test]
    fn past_the_last_place_calls_are_dropped_and_counted() {
        let mut redeliveries = Redeliveries::default();
        let outcomes = Family::<ResultLabels, Counter>::default();
        redeliveries.report_to(outcomes.clone());
        let held: Vec<_> = (0..MAX_WAITING)
            .map(|_| redeliveries.place().expect("a place"))
            .collect();
        assert!(redeliveries.place().is_none());
        let dropped = outcomes
            .get_or_create(&ResultLabels { result: "dropped" })
            .get();
        assert_eq!(dropped, 1);
        drop(held);
        assert!(redeliveries.place().is_some(), "places come back");
    }
}
