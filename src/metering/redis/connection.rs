//! One connection type for a single Redis and a Redis Cluster, so the counters' code is one.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterClientBuilder, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, RedisResult, Value};

/// A self-reconnecting connection: to one Redis, or to a cluster (which follows the slots'
/// moves and its masters' failovers by itself).
#[derive(Clone)]
pub(super) enum Connection {
    Single(ConnectionManager),
    Cluster(Arc<ClusterLink>),
}

/// A cluster connection that is replaced when it has wedged.
///
/// redis-rs' cluster connection (1.8) can wedge for good after a master restarts: its slot
/// refresh waits for a write lock granted to a background reconnect that is not polled while
/// the refresh runs, and from then on every call waits forever, its own response timeout
/// included (reproduced by `tests/limits.rs`' cluster restart test; upstream issues #2418,
/// #2277). A working connection answers — with errors, if a node is down or slow — so the link
/// watches for silence: a call given up (by its caller's timeout) on a connection that has
/// answered nothing for [`WEDGED_AFTER`] replaces it with a fresh one, which discovers the
/// topology anew. A connection is never replaced before it is that old either, so a cluster
/// that cannot be reached is reconnected at most once per [`WEDGED_AFTER`], not per call.
pub(super) struct ClusterLink {
    client: ClusterClient,
    config: ClusterConfig,
    current: ArcSwap<Generation>,
}

/// How long a cluster connection may answer nothing before it counts as wedged: longer than
/// any single call's timeout (the fail-mode timeout, the heartbeat's patience), far shorter
/// than the minutes a wedge lasts.
const WEDGED_AFTER: Duration = Duration::from_secs(3);

/// One cluster connection and when it last answered.
struct Generation {
    id: u64,
    connection: ClusterConnection,
    opened: tokio::time::Instant,
    /// Milliseconds after `opened` of the last answer (an error counts: a node answered).
    answered_at: AtomicU64,
}

impl Generation {
    fn open(id: u64, client: &ClusterClient, config: &ClusterConfig) -> Self {
        Self {
            id,
            connection: client.get_pending_async_connection_with_config(config.clone()),
            opened: tokio::time::Instant::now(),
            answered_at: AtomicU64::new(0),
        }
    }

    fn answered(&self) {
        let at = u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.answered_at.fetch_max(at, Ordering::Relaxed);
    }

    /// Whether it has answered nothing for [`WEDGED_AFTER`] (and is at least that old).
    fn silent(&self) -> bool {
        let last = Duration::from_millis(self.answered_at.load(Ordering::Relaxed));
        silent_for_too_long(self.opened.elapsed(), last)
    }
}

/// Whether a connection `age` old whose last answer came `answered_at` after it opened has been
/// silent for [`WEDGED_AFTER`].
fn silent_for_too_long(age: Duration, answered_at: Duration) -> bool {
    age.saturating_sub(answered_at) >= WEDGED_AFTER
}

impl ClusterLink {
    fn new(client: ClusterClient, config: ClusterConfig) -> Self {
        let first = Generation::open(0, &client, &config);
        Self {
            client,
            config,
            current: ArcSwap::from_pointee(first),
        }
    }

    /// Runs `call` on the current connection, noting its answer; a call given up unanswered
    /// replaces a connection that has been silent too long.
    async fn call<T>(
        &self,
        call: impl AsyncFnOnce(&mut ClusterConnection) -> RedisResult<T>,
    ) -> RedisResult<T> {
        let generation = self.current.load_full();
        let mut watch = SilenceWatch {
            link: self,
            generation: &generation,
            answered: false,
        };
        let mut connection = generation.connection.clone();
        let answer = call(&mut connection).await;
        watch.answered = true;
        generation.answered();
        answer
    }

    /// Opens a new connection in place of `silent`, unless another call already replaced it.
    fn replace(&self, silent: &Arc<Generation>) {
        let fresh = Arc::new(Generation::open(silent.id + 1, &self.client, &self.config));
        let before = self.current.compare_and_swap(silent, fresh);
        if Arc::ptr_eq(&*before, silent) {
            tracing::warn!(
                "the Redis Cluster connection answered nothing for {}s; opened a new one",
                WEDGED_AFTER.as_secs()
            );
        }
    }
}

/// Checks, when a call is given up unanswered (dropped by its caller's timeout), whether its
/// connection has gone silent.
struct SilenceWatch<'a> {
    link: &'a ClusterLink,
    generation: &'a Arc<Generation>,
    answered: bool,
}

impl Drop for SilenceWatch<'_> {
    fn drop(&mut self) {
        if !self.answered && self.generation.silent() {
            self.link.replace(self.generation);
        }
    }
}

impl Connection {
    /// A lazily connecting connection to `url` (a cluster: one or more of its nodes, separated
    /// by commas); every answer bounded by `response_timeout`.
    pub(super) fn open(
        url: &str,
        cluster: bool,
        connect_timeout: Duration,
        response_timeout: Duration,
    ) -> RedisResult<Self> {
        if cluster {
            let seeds: Vec<&str> = url.split(',').map(str::trim).collect();
            let client = ClusterClientBuilder::new(seeds)
                .retries(2)
                .max_retry_wait(2_000)
                .build()?;
            let config = ClusterConfig::new()
                .set_connection_timeout(connect_timeout)
                .set_response_timeout(response_timeout);
            return Ok(Self::Cluster(Arc::new(ClusterLink::new(client, config))));
        }
        let client = redis::Client::open(url)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(connect_timeout))
            .set_response_timeout(Some(response_timeout))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(2));
        Ok(Self::Single(ConnectionManager::new_lazy_with_config(
            client, config,
        )?))
    }

    /// Whether calls of different slots may share one pipeline (a cluster's may not).
    pub(super) fn pipelines_any_keys(&self) -> bool {
        matches!(self, Self::Single(_))
    }
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(connection) => connection.req_packed_command(cmd),
            Self::Cluster(link) => Box::pin(
                link.call(async move |connection| connection.req_packed_command(cmd).await),
            ),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(connection) => connection.req_packed_commands(pipeline, offset, count),
            Self::Cluster(link) => Box::pin(link.call(async move |connection| {
                connection
                    .req_packed_commands(pipeline, offset, count)
                    .await
            })),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(connection) => connection.get_db(),
            Self::Cluster(link) => link.current.load().connection.get_db(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_connection_silent_for_seconds_counts_as_wedged() {
        let ms = Duration::from_millis;
        // Young: never replaced, so an unreachable cluster is not reconnected per call.
        assert!(!silent_for_too_long(ms(2_999), ms(0)));
        assert!(silent_for_too_long(ms(3_000), ms(0)));
        // Slow but answering (errors count): not wedged.
        assert!(!silent_for_too_long(ms(60_000), ms(59_000)));
        // Answered long ago, nothing since.
        assert!(silent_for_too_long(ms(60_000), ms(50_000)));
    }
}
