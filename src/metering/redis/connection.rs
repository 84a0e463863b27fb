//! One connection type for a single Redis and a Redis Cluster, so the counters' code is one.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterClientBuilder, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, RedisResult, Value};

/// A self-reconnecting connection: to one Redis, or to a cluster (which follows the slots'
/// moves and its masters' failovers by itself).
#[derive(Clone)]
pub(super) enum Connection {
    Single(ConnectionManager),
    Cluster(Arc<ClusterLink>),
}

/// A cluster connection that is replaced when it stalls.
///
/// redis-rs' cluster connection (1.8) can wedge for good after a master restarts: its slot
/// refresh waits for a write lock granted to a background reconnect that is not polled while
/// the refresh runs, and from then on every call waits forever, its own response timeout
/// included (reproduced by `tests/limits.rs`' cluster restart test; upstream issues #2418,
/// #2277). A working connection answers every call within the response timeout, with an error
/// if the node is slow; a call still unanswered then, given up by its caller or by the link,
/// has hit the wedge, so the link opens a fresh connection (which discovers the topology anew)
/// for the calls made after it.
pub(super) struct ClusterLink {
    client: ClusterClient,
    config: ClusterConfig,
    /// How long a call may go unanswered before the connection counts as wedged.
    stall: Duration,
    /// The connection in use and its generation (so concurrent stalled calls replace it once).
    current: ArcSwap<(u64, ClusterConnection)>,
}

impl ClusterLink {
    fn new(client: ClusterClient, config: ClusterConfig, response_timeout: Duration) -> Self {
        let connection = client.get_pending_async_connection_with_config(config.clone());
        Self {
            client,
            config,
            stall: response_timeout,
            current: ArcSwap::from_pointee((0, connection)),
        }
    }

    /// Runs `call` on the current connection; replaces the connection if the call stalls
    /// (unanswered after the response timeout, whether the link or the caller gives up first).
    async fn call<T>(
        &self,
        call: impl AsyncFnOnce(&mut ClusterConnection) -> RedisResult<T>,
    ) -> RedisResult<T> {
        let current = self.current.load_full();
        let mut watch = StallWatch {
            link: self,
            generation: current.0,
            started: tokio::time::Instant::now(),
            answered: false,
        };
        let mut connection = current.1.clone();
        // A margin past the response timeout lets the connection's own timeout answer first.
        let bound = self.stall + Duration::from_millis(100);
        let answer = tokio::time::timeout(bound, call(&mut connection)).await;
        watch.answered = answer.is_ok();
        answer.unwrap_or_else(|_| {
            Err(RedisError::from((
                ErrorKind::Io,
                "the cluster connection stalled; a new one is opened",
            )))
        })
    }

    /// Opens a new connection in place of generation `stalled`, unless another call already
    /// replaced it.
    fn replace(&self, stalled: u64) {
        let current = self.current.load();
        if current.0 != stalled {
            return;
        }
        let fresh = self
            .client
            .get_pending_async_connection_with_config(self.config.clone());
        let before = self
            .current
            .compare_and_swap(&*current, Arc::new((stalled + 1, fresh)));
        if Arc::ptr_eq(&*before, &*current) {
            tracing::warn!("the Redis Cluster connection stalled; opened a new one");
        }
    }
}

/// Replaces the link's connection when a call on it goes unanswered for the response timeout
/// (checked when the call ends or is dropped by its caller's own timeout).
struct StallWatch<'a> {
    link: &'a ClusterLink,
    generation: u64,
    started: tokio::time::Instant,
    answered: bool,
}

impl Drop for StallWatch<'_> {
    fn drop(&mut self) {
        if !self.answered && self.started.elapsed() >= self.link.stall {
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
            return Ok(Self::Cluster(Arc::new(ClusterLink::new(
                client,
                config,
                response_timeout,
            ))));
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
            Self::Cluster(link) => link.current.load().1.get_db(),
        }
    }
}
