//! Shared counters in Redis, so N gateway replicas enforce one tenant's limits as one (DESIGN §7).
//! Check-and-reserve is one Lua script over every counter of the request (atomic: all charges
//! or none), settling is a second; every key has a TTL. The calls of concurrent requests leave in
//! one pipeline ([`batch`]). Each call is bounded by a short timeout, after which the caller
//! applies `--redis-fail-mode`; a settlement or cancellation that timed out is sent again in the
//! background ([`redeliver`]). The connection manager reconnects by itself.

mod batch;
mod connection;
mod layout;
mod redeliver;
mod scripts;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use redis::{Cmd, FromRedisValue as _, Script, Value};
use tokio::runtime::{Handle, RuntimeFlavor};

use super::charge::{Admitted, Charge, Refusal, Release};
use super::request_id;
use crate::metrics::ResultLabels;
use batch::{Batcher, Sources};
use connection::Connection;
pub use layout::{CLUSTER_BUCKETS, Epochs, Layout};
use redeliver::Redeliveries;
use scripts::{HEARTBEAT, REBUILD};

/// How long a rebuild's guard stays: longer than any counter it rebuilt (a month and a grace).
const REBUILD_GUARD_MS: u64 = 40 * 86_400_000;

/// The life of a reservation's marker: longer than any request lasts (and than its lease, 15
/// minutes, or its window, one), since a settlement applies only while its marker is there
/// (that is what makes it apply once). A settled request's marker is gone at once, so only
/// reservations never settled (a crashed replica) leave one behind until then.
const MARKER_TTL_MS: u64 = 24 * 3_600_000;

/// The largest amount, limit or adjustment sent to the scripts: Lua's numbers are doubles,
/// exact up to 2^53, and a counter this far below Redis' 64-bit range cannot overflow it in
/// practice (9 × 10^15 tokens, or 9 billion USD in micro-USD, per request).
const MAX_EXACT: u64 = (1 << 53) - 1;

fn exact(value: u64) -> i64 {
    value.min(MAX_EXACT) as i64
}

/// What the gateway checks of the Redis server it shares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerSettings {
    /// `maxmemory-policy`, when the server lets it be read.
    pub eviction_policy: Option<String>,
}

impl ServerSettings {
    /// Whether the server may evict the counters: every counter key has a TTL, so any policy
    /// but `noeviction` (the `volatile-*` ones included) can drop a tenant's usage silently
    /// when memory runs short, and its budget could be spent again.
    pub fn may_evict_counters(&self) -> bool {
        self.eviction_policy
            .as_deref()
            .is_some_and(|policy| policy != "noeviction")
    }
}

/// What a heartbeat learns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Heartbeat {
    /// Live replicas.
    pub replicas: u64,
    /// Redis' epochs, one per bucket.
    pub epochs: Epochs,
    /// Live replicas whose usage is in those epochs.
    pub added: u64,
}

/// Why a Redis call did not give an answer.
#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    /// No answer within the fail-mode timeout.
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
    /// The call failed (connection refused, script error, ...).
    #[error("redis: {0}")]
    Call(#[from] redis::RedisError),
    /// The script answered something unexpected.
    #[error("redis answered an unexpected reply")]
    Reply,
    /// Redis lost its data (its epoch is not the one this replica added its usage to): no
    /// reservation is made until the replica has added it to the new one.
    #[error("redis lost its data; the counters are being rebuilt")]
    EpochLost,
}

impl RedisError {
    /// True when the call cannot have reached Redis (no connection could be made), so there
    /// is nothing of it to cancel.
    pub fn never_sent(&self) -> bool {
        matches!(self, Self::EpochLost)
            || matches!(self, Self::Call(error) if error.is_connection_refusal())
    }

    /// Low-cardinality label for the error metric.
    pub fn class(&self) -> &'static str {
        match self {
            Self::Timeout(_) => "timeout",
            Self::Call(_) => "error",
            Self::Reply => "reply",
            Self::EpochLost => "data_lost",
        }
    }
}

/// The shared counter store.
#[derive(Clone)]
pub struct RedisCounters {
    connection: Connection,
    /// A second connection for calls sent again, which nobody waits on: its answers may take
    /// up to `redeliver::PATIENCE` (the first one's are bounded by the fail-mode timeout).
    patient: Connection,
    /// How keys are named (one Redis, or a cluster's buckets).
    layout: Layout,
    reserve: Script,
    settle: Script,
    cancel: Script,
    timeout: Duration,
    /// The scripts' sources, for loading them again after Redis forgot them.
    sources: Sources,
    /// The batching task, started by the first call on a multi-threaded runtime (`new` need not
    /// run on one) and again if that runtime goes away.
    batcher: Arc<Mutex<Option<Batcher>>>,
    /// Settlements and cancellations waiting to be sent again.
    redeliveries: Redeliveries,
    /// The epoch reservations are made in (see [`Epoch`]).
    epoch: Arc<arc_swap::ArcSwap<Epoch>>,
}

/// Which of Redis' lives this replica's reservations belong to. Redis keeps an epoch key with
/// no TTL; a Redis that restarted empty or failed over without its data has none, and the
/// first replica to notice starts a new one. A replica reserves only in the epoch it has added
/// its ledger's usage to, so a budget spent before Redis lost its data is not spent again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Epoch {
    /// Not checked (a counter store used on its own: tests, tools).
    Unchecked,
    /// Reservations are made in these epochs.
    Synced(Epochs),
    /// Redis' epoch changed under this replica: nothing is reserved until it syncs again.
    Lost,
}

impl std::fmt::Debug for RedisCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry a password: never printed.
        f.debug_struct("RedisCounters")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl RedisCounters {
    /// A lazily connecting, self-reconnecting client of one Redis, or of a cluster (`url`
    /// then names one or more of its nodes, separated by commas); `timeout` bounds every call.
    pub fn new(url: &str, layout: Layout, timeout: Duration) -> Result<Self, RedisError> {
        let connect = timeout.max(Duration::from_millis(200));
        let cluster = layout.is_cluster();
        let connection = Connection::open(url, cluster, connect, timeout)?;
        let patient = Connection::open(url, cluster, connect, redeliver::PATIENCE)?;
        let sources = scripts::sources(MARKER_TTL_MS);
        Ok(Self {
            connection,
            patient,
            layout,
            reserve: Script::new(&sources[0]),
            settle: Script::new(&sources[1]),
            cancel: Script::new(&sources[2]),
            timeout,
            sources: Arc::from(sources),
            batcher: Arc::default(),
            redeliveries: Redeliveries::default(),
            epoch: Arc::new(arc_swap::ArcSwap::from_pointee(Epoch::Unchecked)),
        })
    }

    /// Counts what became of the settlements and cancellations sent again (`applied`: Redis
    /// took it, which changes nothing if an earlier copy arrived; `abandoned` after an hour or
    /// an error that would only repeat; `dropped` when too many were waiting).
    pub fn report_redeliveries_to(mut self, outcomes: Family<ResultLabels, Counter>) -> Self {
        self.redeliveries.report_to(outcomes);
        self
    }

    /// Runs one script call with the next pipeline (see [`batch`]); the reply as integers. On a
    /// current-thread runtime the call goes alone: a task there runs only while something
    /// awaits on that runtime, and the caller may be waiting on another.
    async fn evaluate(&self, call: Cmd) -> redis::RedisResult<Vec<i64>> {
        let reply = match self.batcher() {
            Some(batcher) => batcher.call(call).await?,
            None => batch::call_alone(self.connection.clone(), call, &self.sources).await?,
        };
        Ok(Vec::<i64>::from_redis_value(reply)?)
    }

    /// The running batching task, started on this multi-threaded runtime if there is none.
    /// None on a cluster, whose pipelines may not mix slots: there each call goes alone (the
    /// cluster connection still writes the calls queued at once together, node by node).
    fn batcher(&self) -> Option<Batcher> {
        if !self.connection.pipelines_any_keys() {
            return None;
        }
        let runtime = Handle::try_current()
            .ok()
            .filter(|handle| handle.runtime_flavor() == RuntimeFlavor::MultiThread)?;
        let mut slot = self.batcher.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(batcher) = slot.as_ref().filter(|batcher| !batcher.is_closed()) {
            return Some(batcher.clone());
        }
        let batcher = Batcher::start(&runtime, self.connection.clone(), self.sources.clone());
        *slot = Some(batcher.clone());
        Some(batcher)
    }

    /// The start of an `EVALSHA` of `script` with `keys` keys (the keys, then the args follow).
    /// Built here because the redis crate keeps its own script invocation's command private and
    /// sends it at once, and these calls go into a pipeline.
    fn script_call(script: &Script, keys: usize) -> Cmd {
        let mut call = redis::cmd("EVALSHA");
        call.arg(script.get_hash()).arg(keys);
        call
    }

    /// The bucket of a reservation's counters (all of one group, see [`layout`]).
    fn bucket(&self, charges: &[Charge]) -> u32 {
        let bucket = charges
            .first()
            .map_or(0, |charge| self.layout.bucket_of(charge.key()));
        debug_assert!(
            charges
                .iter()
                .all(|charge| self.layout.bucket_of(charge.key()) == bucket),
            "one reservation's counters share a bucket"
        );
        bucket
    }

    /// The key marking one reservation of `member`: a request's tenant reservation has its
    /// request id, each of its provider attempts a member of its own, so no two reservations
    /// share a marker (a settlement sent again must never take another's).
    fn marker(&self, bucket: u32, charges: &[Charge], member: &str) -> String {
        let first = charges.first().map_or("", Charge::key);
        self.layout
            .key_of_parts(bucket, &["r:", member, ":", first])
    }

    /// Check-and-reserve, one round trip.
    pub async fn reserve(
        &self,
        charges: &[Charge],
        member: u128,
    ) -> Result<Result<Admitted, Refusal>, RedisError> {
        let bucket = self.bucket(charges);
        let mut call = Self::script_call(&self.reserve, charges.len() + 2);
        for charge in charges {
            call.arg(self.layout.key(bucket, charge.key()));
        }
        let member = request_id::text(member);
        call.arg(self.marker(bucket, charges, &member))
            .arg(self.layout.epoch(bucket))
            .arg(member);
        match &**self.epoch.load() {
            Epoch::Unchecked => call.arg(""),
            Epoch::Synced(epochs) => match epochs.of(bucket) {
                Some(epoch) => call.arg(epoch),
                None => return Err(RedisError::EpochLost),
            },
            Epoch::Lost => return Err(RedisError::EpochLost),
        };
        // Each charge's arguments, as wide as its kind (see `scripts::RESERVE`).
        let mut flexible = false;
        for charge in charges {
            match charge {
                Charge::Window {
                    limit, window_ms, ..
                } => call.arg("w").arg(exact(*limit)).arg(exact(*window_ms)),
                Charge::Lease {
                    limit, lease_ms, ..
                } => call.arg("l").arg(exact(*limit)).arg(exact(*lease_ms)),
                Charge::Amount {
                    limit,
                    amount,
                    ttl_ms,
                    flex,
                    ..
                } => {
                    call.arg(if flex.is_some() { "f" } else { "a" })
                        .arg(limit.map_or(-1, exact))
                        .arg(exact(*amount))
                        .arg(*ttl_ms);
                    if let Some(flex) = flex {
                        flexible = true;
                        call.arg(format!(
                            "{} {} {}",
                            exact(flex.fixed),
                            exact(flex.per_output),
                            exact(flex.scale)
                        ))
                        .arg(exact(flex.ask))
                    } else {
                        &mut call
                    }
                }
            };
        }
        let reply = self.bounded(self.evaluate(call)).await?;
        match reply.as_slice() {
            [0, after @ ..] => {
                let (after, output) = match after.split_last() {
                    Some((output, after)) if flexible => (after, Some((*output).max(0) as u64)),
                    _ => (after, None),
                };
                Ok(Ok(Admitted {
                    after: after.iter().map(|v| (*v).max(0) as u64).collect(),
                    output,
                }))
            }
            [-2] => {
                // Noticed at once, not at the next heartbeat: no reservation goes to this
                // Redis until this replica has added its usage to the new epoch.
                self.epoch.store(Arc::new(Epoch::Lost));
                Err(RedisError::EpochLost)
            }
            [index, limit, current, retry] if *index > 0 => Ok(Err(Refusal {
                index: (*index - 1) as usize,
                limit: (*limit).max(0) as u64,
                current: (*current).max(0) as u64,
                retry_after_ms: (*retry).max(0) as u64,
            })),
            // -1: cancelled before it arrived; anything else is not ours.
            _ => Err(RedisError::Reply),
        }
    }

    /// Settles the reservation made by `charges`, one round trip off the request path; returns
    /// each counter's value afterwards. When Redis does not answer in time the error is returned
    /// and the settlement is sent again in the background until it is taken.
    pub async fn settle(
        &self,
        charges: &[Charge],
        releases: &[Release],
        member: u128,
    ) -> Result<Vec<u64>, RedisError> {
        self.release(&self.settle, charges, releases, member).await
    }

    /// Cancels a reservation whose answer was lost (a timeout, or its caller went away):
    /// everything it took is given back if it was made, and it is never made if it is still on
    /// its way. Exactly once; sent again in the background when Redis does not answer in time.
    pub async fn cancel(&self, charges: &[Charge], member: u128) -> Result<(), RedisError> {
        let releases = super::plan::releases(charges, None);
        self.release(&self.cancel, charges, &releases, member)
            .await
            .map(|_| ())
    }

    async fn release(
        &self,
        script: &Script,
        charges: &[Charge],
        releases: &[Release],
        member: u128,
    ) -> Result<Vec<u64>, RedisError> {
        let call = self.release_call(script, charges, releases, member);
        match self.bounded(self.evaluate(call)).await {
            Ok(reply) => Ok(reply.into_iter().map(|v| v.max(0) as u64).collect()),
            Err(error) => {
                // Built again only now, off the common path: both scripts apply once, so a
                // copy sent after an attempt that did reach Redis changes nothing.
                if redeliver::worth_resending(&error) {
                    self.send_again(self.release_call(script, charges, releases, member));
                }
                Err(error)
            }
        }
    }

    /// The `EVALSHA` of a settling or cancelling `script` for the reservation of `charges`.
    fn release_call(
        &self,
        script: &Script,
        charges: &[Charge],
        releases: &[Release],
        member: u128,
    ) -> Cmd {
        let bucket = self.bucket(charges);
        let mut call = Self::script_call(script, releases.len() + 1);
        for release in releases {
            let (Release::Window { key } | Release::Lease { key } | Release::Adjust { key, .. }) =
                release;
            call.arg(self.layout.key(bucket, key));
        }
        let member = request_id::text(member);
        call.arg(self.marker(bucket, charges, &member)).arg(member);
        // Each release's arguments, as wide as its kind (see `scripts::APPLY_RELEASES`).
        for release in releases {
            match release {
                Release::Window { .. } => call.arg("w"),
                Release::Lease { .. } => call.arg("l"),
                Release::Adjust { delta, ttl_ms, .. } => {
                    let delta = (*delta).clamp(-(MAX_EXACT as i64), MAX_EXACT as i64);
                    call.arg("a").arg(delta).arg(*ttl_ms)
                }
            };
        }
        call
    }

    /// Sends `call` again in the background, waiting longer between tries, until Redis takes
    /// it, answers with an error that would only repeat, or an hour has passed. The tries go
    /// alone on the patient connection: nobody waits on them, and a Redis that answers slower
    /// than the fail-mode timeout still takes them.
    fn send_again(&self, call: Cmd) {
        let Some(place) = self.redeliveries.place() else {
            tracing::debug!("too many Redis calls waiting to be sent again; one dropped");
            return;
        };
        let counters = self.clone();
        self.redeliveries.spawn(place, async move {
            let given_up_at = Instant::now() + redeliver::WINDOW;
            let mut resend = 0;
            loop {
                resend += 1;
                tokio::time::sleep(redeliver::jittered(redeliver::wait_before(resend))).await;
                let attempt =
                    batch::call_alone(counters.patient.clone(), call.clone(), &counters.sources);
                let Err(error) = within(redeliver::PATIENCE, attempt).await else {
                    tracing::debug!(
                        resend,
                        "a Redis settlement or cancellation sent again was taken"
                    );
                    counters.redeliveries.count("applied");
                    return;
                };
                if !redeliver::worth_resending(&error) || Instant::now() >= given_up_at {
                    counters.redeliveries.abandon(resend, &error);
                    return;
                }
            }
        });
    }

    /// Gives the settlements and cancellations waiting to be sent again until `deadline` to
    /// land (a stopping gateway's last chance to free its tenants' slots); how many are still
    /// waiting then.
    pub async fn wait_for_redeliveries(&self, deadline: tokio::time::Instant) -> usize {
        self.redeliveries.wait_until(deadline).await
    }

    /// Connects, loads the scripts and reads the server's eviction policy, waiting up to
    /// `patience` (not the fail-mode timeout: this runs before the replica reports ready). A
    /// replica that did this at start decides its first requests through Redis like every later
    /// one; made lazily instead, the first reservations waited for the connection, timed out
    /// and were decided by the fail mode, each replica admitting on its own (a cold fleet let
    /// 12-14 requests through an RPM of 10).
    pub async fn warm_up(&self, patience: Duration) -> Result<ServerSettings, RedisError> {
        let mut connection = self.connection.clone();
        let load = async {
            batch::load(&mut connection, &self.sources).await?;
            // Managed Redis services may refuse CONFIG: then the policy is unknown.
            let policy: Option<Vec<String>> = redis::cmd("CONFIG")
                .arg("GET")
                .arg("maxmemory-policy")
                .query_async(&mut connection)
                .await
                .ok();
            Ok(ServerSettings {
                eviction_policy: policy.and_then(|pair| pair.into_iter().nth(1)),
            })
        };
        let settings = within(patience, load).await?;
        // The pipeline task runs from now on, not from the first request.
        drop(self.batcher());
        Ok(settings)
    }

    /// How keys are named (one Redis, or a cluster's buckets).
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// Records that replica `id` is alive for `life` and that its usage is in `added_to` (if
    /// any); returns how many replicas are alive, Redis' epochs (`candidate` becomes a
    /// bucket's epoch where it has none), and how many live replicas have added their usage to
    /// those epochs.
    pub async fn heartbeat(
        &self,
        id: &str,
        life: Duration,
        candidate: &str,
        added_to: Option<&Epochs>,
    ) -> Result<Heartbeat, RedisError> {
        // A cluster's buckets each keep their epoch, read (and started where gone) first; the
        // fleet's keys then compare the list by its name. A single Redis' one epoch is read by
        // the heartbeat script itself, as earlier releases do.
        let buckets = if self.layout.is_cluster() {
            Some(self.bucket_epochs(candidate).await?)
        } else {
            None
        };
        let mut connection = self.patient.clone();
        let (replicas, epoch, added): (u64, String, u64) = within(
            redeliver::PATIENCE,
            Script::new(HEARTBEAT)
                .key(self.layout.fleet("replicas"))
                .key(self.layout.fleet("epoch"))
                .key(self.layout.fleet("replica-epochs"))
                .arg(id)
                .arg(life.as_millis() as u64)
                .arg(candidate)
                .arg(added_to.map(Epochs::name).unwrap_or_default())
                .arg(buckets.as_ref().map(Epochs::name).unwrap_or_default())
                .invoke_async(&mut connection),
        )
        .await?;
        Ok(Heartbeat {
            replicas,
            epochs: buckets.unwrap_or_else(|| Epochs::new(vec![epoch])),
            added,
        })
    }

    /// Every bucket's epoch, `candidate` set where a bucket has none (it lost its data, or is
    /// new). One `SET NX GET` per bucket (Redis 7.0 or later), sent at once.
    async fn bucket_epochs(&self, candidate: &str) -> Result<Epochs, RedisError> {
        let reads = (0..self.layout.buckets()).map(|bucket| {
            let mut connection = self.patient.clone();
            let key = self.layout.epoch(bucket);
            async move {
                let before: Option<String> = redis::cmd("SET")
                    .arg(key)
                    .arg(candidate)
                    .arg("NX")
                    .arg("GET")
                    .query_async(&mut connection)
                    .await?;
                Ok(before.unwrap_or_else(|| candidate.to_owned()))
            }
        });
        let epochs = within(redeliver::PATIENCE, futures::future::try_join_all(reads)).await?;
        Ok(Epochs::new(epochs))
    }

    /// The epochs reservations are made in.
    pub fn epoch(&self) -> Arc<Epoch> {
        self.epoch.load_full()
    }

    /// Reserves nothing until [`RedisCounters::sync_epoch`] names the epochs (a gateway's
    /// counters start so; used alone, a store does not check epochs).
    pub fn await_epoch(&self) {
        self.epoch.store(Arc::new(Epoch::Lost));
    }

    /// Makes reservations in `epochs` from now on.
    pub fn sync_epoch(&self, epochs: Epochs) {
        self.epoch.store(Arc::new(Epoch::Synced(epochs)));
    }

    /// Adds a replica's usage to `bucket`'s counters of `epoch`, once per `guard` (named by the
    /// epoch, the ledger and the chunk), and only while the bucket's epoch is `epoch`;
    /// `counters` are (key, amount, TTL ms), all of `bucket`. True if this call added them,
    /// false if an earlier one had.
    pub async fn rebuild(
        &self,
        bucket: u32,
        guard: &str,
        epoch: &str,
        counters: &[(String, u64, u64)],
    ) -> Result<bool, RedisError> {
        let mut connection = self.patient.clone();
        let rebuild = Script::new(REBUILD);
        let mut script = rebuild.prepare_invoke();
        script
            .key(self.layout.key(bucket, guard))
            .key(self.layout.epoch(bucket))
            .arg(REBUILD_GUARD_MS)
            .arg(epoch);
        for (key, amount, ttl) in counters {
            debug_assert_eq!(self.layout.bucket_of(key), bucket, "{key}");
            script
                .key(self.layout.key(bucket, key))
                .arg(exact(*amount))
                .arg(*ttl);
        }
        let added: i64 = within(redeliver::PATIENCE, script.invoke_async(&mut connection)).await?;
        match added {
            // The bucket lost its data again meanwhile: nothing was added.
            -1 => Err(RedisError::EpochLost),
            added => Ok(added == 1),
        }
    }

    /// Sets a mark once across all replicas (`SET NX`); true for the first setter.
    pub async fn mark_once(&self, mark: &str, ttl_ms: u64) -> Result<bool, RedisError> {
        let mut connection = self.connection.clone();
        let mut command = redis::cmd("SET");
        command
            .arg(self.layout.counter(mark))
            .arg(1)
            .arg("NX")
            .arg("PX")
            .arg(ttl_ms.max(1));
        let reply: Value = self.bounded(command.query_async(&mut connection)).await?;
        Ok(matches!(reply, Value::Okay | Value::SimpleString(_)))
    }

    /// Reads amount counters (the usage summary); missing keys read as 0.
    pub async fn amounts(&self, keys: &[String]) -> Result<Vec<u64>, RedisError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut connection = self.connection.clone();
        let mut command = redis::cmd("MGET");
        for key in keys {
            command.arg(self.layout.counter(key));
        }
        let reply: Vec<Option<i64>> = self.bounded(command.query_async(&mut connection)).await?;
        Ok(reply
            .into_iter()
            .map(|v| v.unwrap_or(0).max(0) as u64)
            .collect())
    }

    /// `call`, given up after the fail-mode timeout.
    async fn bounded<T>(
        &self,
        call: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, RedisError> {
        within(self.timeout, call).await
    }
}

/// `call`, given up after `timeout`.
async fn within<T>(
    timeout: Duration,
    call: impl Future<Output = redis::RedisResult<T>>,
) -> Result<T, RedisError> {
    match tokio::time::timeout(timeout, call).await {
        Err(_) => Err(RedisError::Timeout(timeout)),
        Ok(result) => Ok(result?),
    }
}
