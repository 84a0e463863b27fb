//! The metering facade the request path calls: `admit` before a request is forwarded (counters
//! checked and reserved in one atomic step, then journalled), `settle` once its response has
//! ended (counters moved to the provider's figures, ledger record finished, metrics counted,
//! budget thresholds fired once). Counters live in Redis when configured (shared by every
//! replica), else in the embedded [`Book`] restored from the ledger.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio_util::task::TaskTracker;

use super::book::Book;
use super::charge::{Admitted, Charge, LimitKind, Refusal};
use super::clock::{self, Day, MINUTE_MS, now_ms};
use super::ledger::{Ledger, LedgerError, LedgerOptions, Record, Reserved};
use super::plan::{
    self, Candidate, RequestSize, Reservation, ReservePolicy, Settlement, crossed_thresholds, keys,
};
use super::redis::{RedisCounters, RedisError};
use super::request_id;
use crate::config::BudgetAction;
use crate::config::{GatewayConfig, PricingConfig, ProviderLimitsConfig, TenantConfig};
use crate::metrics::{
    LimitLabels, Metrics, ProviderLabels, RedisLabels, ResultLabels, TenantLabels,
};
use crate::usage::Usage;

/// What to do when Redis does not answer in time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum FailMode {
    /// Admit, enforcing this replica's own embedded counters meanwhile.
    Open,
    /// Refuse with 503 until Redis answers again.
    Closed,
}

/// How the meter is set up.
#[derive(Clone)]
pub struct MeterOptions {
    /// Reservation arithmetic.
    pub policy: ReservePolicy,
    /// The durable ledger, when a state directory is given.
    pub ledger: Option<LedgerOptions>,
    /// Shared counters.
    pub redis_url: Option<String>,
    /// Bound of every Redis call.
    pub redis_timeout: Duration,
    /// What to do when Redis does not answer.
    pub fail_mode: FailMode,
}

impl std::fmt::Debug for MeterOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The Redis URL may carry a password: only whether it is set is shown.
        f.debug_struct("MeterOptions")
            .field("policy", &self.policy)
            .field("ledger", &self.ledger)
            .field("redis_url", &self.redis_url.as_ref().map(|_| "<set>"))
            .field("redis_timeout", &self.redis_timeout)
            .field("fail_mode", &self.fail_mode)
            .finish()
    }
}

impl Default for MeterOptions {
    fn default() -> Self {
        Self {
            policy: ReservePolicy::default(),
            ledger: None,
            redis_url: None,
            redis_timeout: Duration::from_millis(50),
            fail_mode: FailMode::Open,
        }
    }
}

/// Why the meter could not start.
#[derive(Debug, thiserror::Error)]
pub enum MeterError {
    /// The ledger could not be opened.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// The Redis URL is invalid.
    #[error("--redis-url: {0}")]
    Redis(#[from] RedisError),
}

/// Why a request was not admitted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refused {
    /// A rate, token or concurrency limit (429).
    Limit {
        /// Which.
        kind: LimitKind,
        /// Its value.
        limit: u64,
        /// What is left (0 for windows and leases; for tokens/day what is left of it).
        remaining: u64,
        /// When trying again can succeed, in milliseconds.
        retry_after_ms: u64,
    },
    /// The monthly budget (402).
    Budget {
        /// The budget in micro-USD.
        limit: u64,
        /// Spent so far.
        spent: u64,
    },
    /// Counters unreachable and `--redis-fail-mode closed`, or the ledger failing (503).
    Unavailable(&'static str),
    /// The tenant's budget blocks, and a platform model the request may use has no price, so
    /// the budget could not be enforced (400).
    Unpriced(String),
}

/// An admitted request's reservation, carried until it is settled.
#[derive(Debug)]
pub struct Ticket {
    /// Request id (also the ledger key and the counters' member).
    pub request_id: u128,
    /// What each charge's counter held after admission (for `x-ratelimit-*` headers).
    pub admitted: Admitted,
    /// The reservation.
    pub reservation: Reservation,
    tenant: String,
    /// Whose counters it counts against ([`TenantConfig::meter`]).
    meter: String,
    source: String,
    model: String,
    started: Instant,
    started_ms: u64,
    shared: bool,
    budget: Option<(u64, Vec<u32>)>,
    journal: Option<tokio::sync::oneshot::Receiver<Result<(), LedgerError>>>,
    /// What the request asked for (its body, output fields, answers).
    pub size: RequestSize,
}

impl Ticket {
    /// When the request arrived.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// The request id as the ledger and the `x-dgidgi-request-id` header spell it.
    pub fn id_text(&self) -> String {
        request_id::text(self.request_id)
    }

    /// Waits until the admission is durable in the ledger (at once without a ledger). Awaited
    /// before any byte reaches the client, so a crash cannot lose a completed request's usage.
    pub async fn journalled(&mut self) -> Result<(), Refused> {
        let Some(journal) = self.journal.take() else {
            return Ok(());
        };
        match journal.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => {
                tracing::error!("journalling an admission failed: {error}");
                Err(Refused::Unavailable("the usage ledger cannot be written"))
            }
            Err(_) => Err(Refused::Unavailable("the usage ledger has stopped")),
        }
    }
}

/// A provider key's reservation for one attempt.
#[derive(Debug)]
pub struct ProviderTicket {
    charges: Vec<Charge>,
    member: u128,
    shared: bool,
}

/// How a request ended, for settling.
#[derive(Clone, Debug)]
pub struct Served<'a> {
    /// Provider id (or `cli`).
    pub provider: &'a str,
    /// Model that served.
    pub model: &'a str,
    /// Model label for metrics (catalog name or `other`).
    pub model_label: &'a str,
    /// Whether the platform pays (priced against the budget).
    pub platform: bool,
    /// The model's price.
    pub pricing: Option<&'a PricingConfig>,
    /// Provider-reported usage.
    pub usage: Option<Usage>,
    /// HTTP status the client got.
    pub status: u16,
    /// How it ended.
    pub outcome: super::Outcome,
    /// Fallback index that served.
    pub fallback: u32,
    /// Arrival to first byte.
    pub first_byte: Option<Duration>,
    /// The most output tokens (all answers together) the model that served could produce (its
    /// catalog maximum times the answers); `None` when the catalog does not say. A usage report
    /// beyond it is not believed.
    pub output_bound: Option<u64>,
}

/// One tenant's figures in the usage summary (the operator writes them into status).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct TenantUsageSummary {
    /// `<namespace>/<name>`.
    pub tenant: String,
    /// Requests today (UTC).
    pub requests_today: u64,
    /// Tokens today (UTC).
    pub tokens_today: u64,
    /// Micro-USD this month (UTC).
    pub spend_this_month_micro_usd: u64,
    /// The monthly budget, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget_micro_usd: Option<u64>,
    /// Alert thresholds reached this month.
    pub thresholds_crossed: Vec<u32>,
    /// Whether spend has reached the budget.
    pub budget_exceeded: bool,
}

/// The admin `/usage` answer.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct UsageSummary {
    /// UTC day.
    pub day: String,
    /// UTC month.
    pub month: String,
    /// True when the figures come from Redis (every replica reports the same totals).
    pub shared: bool,
    /// Per tenant.
    pub tenants: Vec<TenantUsageSummary>,
}

/// The meter.
pub struct Meter {
    book: Mutex<Book>,
    redis: Option<RedisCounters>,
    ledger: Option<Ledger>,
    policy: ReservePolicy,
    fail_mode: FailMode,
    metrics: Arc<Metrics>,
    /// Settlements under way (and cancellations of reservations Redis may have taken): a
    /// stopping gateway waits for them, or the requests it drained would keep their
    /// reservations in Redis until the counters' TTL and in the ledger until the next start.
    settling: TaskTracker,
    /// Whether an unbelievable usage report has been logged (once per process; the metric
    /// counts every one).
    unbelievable_logged: std::sync::atomic::AtomicBool,
    /// Whether the shared counters have answered once (always true without Redis): until
    /// then the replica reports not ready.
    redis_answered: std::sync::atomic::AtomicBool,
    /// Tenants this replica refused for requests per minute or concurrency, until their
    /// `retry-after` (Unix ms): refused again before their body is read.
    cooling: Mutex<hashbrown::HashMap<String, Cooling>>,
    /// This process's id among the replicas sharing Redis.
    replica_id: String,
    /// The ledger's directory, whose usage is added to a Redis that lost its data.
    state_dir: Option<std::path::PathBuf>,
    /// Wakes the heartbeat at once when a reservation finds Redis lost its data.
    resync: tokio::sync::Notify,
    /// The epoch this replica's usage is in (see [`super::rebuild`]).
    added_to: Mutex<Option<String>>,
    /// After an epoch change: how many replicas were heard before it, until when they are
    /// waited for.
    expected: Mutex<Option<(u64, Instant)>>,
    /// How many replicas shared Redis at the last heartbeat (1 until one is heard): a replica
    /// admitting on its own while Redis is unreachable takes this share of each limit.
    replicas: std::sync::atomic::AtomicU64,
}

/// What one heartbeat found.
enum Beat {
    /// Every live replica's usage is in Redis' epoch: reservations go to Redis.
    Complete,
    /// This replica's usage was just added, or another's is not yet: look again soon.
    WaitingForOthers,
    /// Redis did not answer, or adding the usage failed.
    Failed,
}

/// How long a tenant refused for its concurrency is refused again before its body is read.
const CONCURRENCY_COOLING_MS: u64 = 100;

/// How often a replica tells Redis it is alive.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(2);
/// How long a replica counts as alive after its last heartbeat.
const HEARTBEAT_LIFE: Duration = Duration::from_secs(10);

/// A tenant refused for a window or lease limit, and until when.
#[derive(Clone, Copy, Debug)]
struct Cooling {
    kind: LimitKind,
    limit: u64,
    until_ms: u64,
}

/// Cancels a Redis reservation if the admission awaiting it is dropped before the answer.
struct CancelIfDropped<'a> {
    meter: &'a Meter,
    charges: &'a [Charge],
    member: u128,
    armed: bool,
}

impl Drop for CancelIfDropped<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.meter.cancel_lost(self.charges, self.member);
        }
    }
}

/// How long a stopping gateway waits, after its open requests are drained, for their
/// settlements to reach Redis and the ledger.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

fn rfc3339(unix_ms: u64) -> String {
    k8s_openapi::jiff::Timestamp::from_millisecond(unix_ms as i64)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

impl Meter {
    /// Opens the ledger (restoring today's and this month's counters from it) and the Redis
    /// client (connecting lazily; the gateway starts even while Redis is down).
    pub fn open(options: &MeterOptions, metrics: Arc<Metrics>) -> Result<Self, MeterError> {
        let now = now_ms();
        let today = Day::of(now);
        let mut book = Book::default();
        let ledger = match &options.ledger {
            None => None,
            Some(ledger_options) => {
                let (ledger, restored) =
                    Ledger::open(ledger_options, &today.key(), &today.month_key(), now)?;
                let day_expiry = now + clock::until_next_day(now) + 2 * clock::DAY_MS;
                let month_expiry = now + clock::until_next_month(now) + 2 * clock::DAY_MS;
                let (day, month) = (today.key(), today.month_key());
                for (tenant, totals) in &restored.today {
                    book.set_amount(&keys::tokens(tenant, &day), totals.tokens, day_expiry);
                    book.set_amount(&keys::requests(tenant, &day), totals.requests, day_expiry);
                }
                for (tenant, totals) in &restored.month {
                    book.set_amount(&keys::spend(tenant, &month), totals.micro_usd, month_expiry);
                }
                for (tenant, percents) in &restored.thresholds {
                    for percent in percents {
                        book.mark_once(&keys::threshold(tenant, &month, *percent));
                    }
                }
                if restored.interrupted > 0 {
                    tracing::warn!(
                        requests = restored.interrupted,
                        "the ledger held requests admitted but never settled (a crash); they stay charged at their reservation"
                    );
                }
                tracing::info!(
                    tenants = restored.today.len(),
                    "usage counters restored from the ledger"
                );
                Some(ledger)
            }
        };
        let redis = match &options.redis_url {
            None => None,
            Some(url) => {
                let counters = RedisCounters::new(url, options.redis_timeout)?
                    .report_redeliveries_to(metrics.redis_redeliveries.clone());
                // Nothing is reserved in Redis before this replica has synced with its epoch.
                counters.await_epoch();
                Some(counters)
            }
        };
        Ok(Self {
            book: Mutex::new(book),
            redis,
            ledger,
            policy: options.policy.clone(),
            fail_mode: options.fail_mode,
            metrics,
            settling: TaskTracker::new(),
            unbelievable_logged: std::sync::atomic::AtomicBool::new(false),
            redis_answered: std::sync::atomic::AtomicBool::new(options.redis_url.is_none()),
            cooling: Mutex::default(),
            replica_id: request_id::text(request_id::new(now)),
            state_dir: options.ledger.as_ref().map(|l| l.state_dir.clone()),
            resync: tokio::sync::Notify::new(),
            added_to: Mutex::default(),
            expected: Mutex::default(),
            replicas: std::sync::atomic::AtomicU64::new(1),
        })
    }

    /// The output limit to write into a platform-paid upstream request of an admitted request
    /// on `model`, when its own fields would allow more than was reserved for it (`None`: the
    /// request passes as asked).
    pub fn output_cap(
        &self,
        ticket: &Ticket,
        model: Option<&crate::config::ModelConfig>,
    ) -> Option<u64> {
        plan::output_cap(ticket.size, ticket.reservation.output_tokens, model)
    }

    /// Whether the counters are ready to decide requests: with Redis, once it has answered
    /// (see [`Meter::warm_up`]).
    pub fn ready(&self) -> bool {
        self.redis_answered
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// Connects to Redis and loads its scripts, trying again until it answers, then reports
    /// ready. A server whose eviction policy could drop counters is reported loudly (and in
    /// `dgidgi_redis_eviction_unsafe`), every time it is found so. Returns at once without
    /// Redis.
    pub async fn warm_up(&self) {
        let Some(redis) = &self.redis else {
            return;
        };
        let mut wait = Duration::from_millis(100);
        loop {
            match redis.warm_up(Duration::from_secs(5)).await {
                Ok(settings) => {
                    let unsafe_policy = settings.may_evict_counters();
                    self.metrics
                        .redis_eviction_unsafe
                        .set(i64::from(unsafe_policy));
                    if unsafe_policy {
                        tracing::error!(
                            policy = ?settings.eviction_policy,
                            "Redis may evict the shared counters (maxmemory-policy is not noeviction): a tenant's usage can vanish and its limits and budget be spent again; set maxmemory-policy noeviction"
                        );
                    }
                    if self.heartbeat().await {
                        self.redis_answered
                            .store(true, std::sync::atomic::Ordering::Release);
                        tracing::info!("Redis answered; the shared counters are ready");
                        return;
                    }
                }
                Err(error) => self.redis_failed("connect", &error),
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(5));
        }
    }

    /// Tells Redis this replica is alive every few seconds, learning how many replicas share
    /// it (the share each takes of a limit while Redis is unreachable). Runs until dropped;
    /// returns at once without Redis.
    pub async fn heartbeats(&self) {
        if self.redis.is_none() {
            return;
        }
        let mut ticks = tokio::time::interval(HEARTBEAT_EVERY);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                () = self.resync.notified() => {}
            }
            self.heartbeat().await;
        }
    }

    /// One heartbeat: how many replicas share Redis, and whether its epoch is the one this
    /// replica reserves in; if not (Redis lost its data, or this replica meets it for the
    /// first time), this replica's usage is added to it first (see [`super::rebuild`]).
    async fn heartbeat(&self) -> bool {
        let Some(redis) = &self.redis else {
            return true;
        };
        // Until every live replica has added its usage to a new epoch, its counters are short:
        // looked at again soon rather than at the next heartbeat.
        for _ in 0..40 {
            match self.beat(redis).await {
                Beat::Complete => return true,
                Beat::Failed => return false,
                Beat::WaitingForOthers => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
        false
    }

    /// One heartbeat, and the sync it calls for.
    async fn beat(&self, redis: &RedisCounters) -> Beat {
        let candidate = request_id::text(request_id::new(now_ms()));
        let added_to = self.added_to();
        let heard = match redis
            .heartbeat(
                &self.replica_id,
                HEARTBEAT_LIFE,
                &candidate,
                added_to.as_deref(),
            )
            .await
        {
            Ok(heard) => heard,
            Err(error) => {
                // The count last heard stands.
                self.redis_failed("heartbeat", &error);
                return Beat::Failed;
            }
        };
        let count = heard.replicas.max(1);
        let now = Instant::now();
        let new_epoch = added_to.as_deref() != Some(heard.epoch.as_str());
        // After Redis lost its data (and with it the replica set), the replicas heard before
        // are expected back until their entries' life has passed: they are waited for, and
        // counted in the share each takes of a limit while failing open.
        let pending = {
            let mut expected = self.expected.lock().unwrap_or_else(PoisonError::into_inner);
            if expected.is_some_and(|(_, until)| now >= until) {
                *expected = None;
            }
            if new_epoch {
                let before = self.replicas();
                let waited = expected.map_or(0, |(replicas, _)| replicas);
                *expected = Some((before.max(waited), now + HEARTBEAT_LIFE));
            }
            expected.map(|(replicas, _)| replicas)
        };
        let share = count.max(pending.unwrap_or(0));
        self.replicas
            .store(share, std::sync::atomic::Ordering::Relaxed);
        self.metrics
            .redis_replicas
            .set(i64::try_from(count).unwrap_or(i64::MAX));
        if new_epoch {
            // Redis lost its data, or this replica meets it for the first time: its usage goes
            // in first, and the next beat says so to the others.
            redis.await_epoch();
            return match self
                .add_usage(redis, &heard.epoch, added_to.is_none())
                .await
            {
                Ok(()) => Beat::WaitingForOthers,
                Err(error) => {
                    tracing::error!(
                        "adding this replica's usage to Redis' new epoch failed (tried again at the next heartbeat; requests are decided by --redis-fail-mode meanwhile): {error:#}"
                    );
                    Beat::Failed
                }
            };
        }
        // Only the replicas expected back are waited for: a newcomer (a scale-up, a restart
        // that cannot add its usage) never holds the others off Redis.
        if pending.is_some_and(|expected| heard.added < expected) {
            redis.await_epoch();
            return Beat::WaitingForOthers;
        }
        if *redis.epoch() != super::redis::Epoch::Synced(heard.epoch.clone()) {
            redis.sync_epoch(heard.epoch);
        }
        Beat::Complete
    }

    /// The epoch this replica's usage is in: remembered, or, at start, recorded beside the
    /// ledger by an earlier run.
    fn added_to(&self) -> Option<String> {
        let mut added = self.added_to.lock().unwrap_or_else(PoisonError::into_inner);
        if added.is_none() {
            *added = self
                .state_dir
                .as_deref()
                .and_then(super::rebuild::synced_epoch);
        }
        added.clone()
    }

    /// Adds this replica's ledger usage to `epoch` (once: guards in Redis), then records that
    /// it is there. A ledger that never took part in an epoch (`first`: no epoch recorded beside
    /// it) adopts the current one instead: it is a new ledger (nothing to add) or one written
    /// before epochs existed, whose usage the counters of the Redis it used already hold.
    async fn add_usage(
        &self,
        redis: &RedisCounters,
        epoch: &str,
        first: bool,
    ) -> anyhow::Result<()> {
        use super::rebuild;
        if let (Some(dir), false) = (&self.state_dir, first) {
            // Everything admitted so far is in the totals read next.
            self.flush().await;
            let (read_from, now) = (dir.clone(), now_ms());
            let counters =
                tokio::task::spawn_blocking(move || rebuild::ledger_counters(&read_from, now))
                    .await??;
            let ledger_id = rebuild::ledger_id(dir, || request_id::text(request_id::new(now)))?;
            let mut added = 0;
            for (guard, chunk) in rebuild::chunks(&counters, epoch, &ledger_id) {
                if redis.rebuild(&guard, epoch, chunk).await? {
                    added += chunk.len();
                }
            }
            tracing::warn!(
                epoch = ?epoch,
                counters = added,
                "Redis lost its data: added this ledger's day and month totals to its new epoch"
            );
        }
        *self.added_to.lock().unwrap_or_else(PoisonError::into_inner) = Some(epoch.to_owned());
        if let Some(dir) = &self.state_dir
            && let Err(error) = rebuild::record_synced(dir, epoch)
        {
            // Remembered in memory; the guards keep a restart from adding twice.
            tracing::warn!("recording Redis' epoch beside the ledger failed: {error}");
        }
        Ok(())
    }

    /// Replicas sharing Redis at the last heartbeat.
    fn replicas(&self) -> u64 {
        self.replicas.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn book(&self) -> std::sync::MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn redis_failed(&self, op: &'static str, error: &RedisError) {
        tracing::warn!(op, "redis call failed: {error}");
        self.metrics
            .redis_errors
            .get_or_create(&RedisLabels {
                op,
                class: error.class(),
            })
            .inc();
    }

    /// Checks and reserves; `shared` says where the counters were taken.
    async fn take(
        &self,
        charges: &[Charge],
        member: u128,
        now: u64,
    ) -> Result<(Result<Admitted, Refusal>, bool), Refused> {
        if let Some(redis) = &self.redis {
            // Dropped mid-call (the client hung up, the drain deadline cut the request), the
            // script may still run, and nobody would give it back.
            let mut in_flight = CancelIfDropped {
                meter: self,
                charges,
                member,
                armed: true,
            };
            let reserved = redis.reserve(charges, member).await;
            in_flight.armed = false;
            match reserved {
                Ok(result) => {
                    if let Ok(admitted) = &result {
                        self.mirror(charges, admitted, member, now);
                    }
                    return Ok((result, true));
                }
                Err(error) => {
                    if matches!(error, RedisError::EpochLost) {
                        self.resync.notify_one();
                    }
                    self.redis_failed("reserve", &error);
                    // Unless it never left (no connection), the script may have run or still
                    // run: cancel it, exactly once.
                    if !error.never_sent() {
                        self.cancel_lost(charges, member);
                    }
                    let admitted = self.fail_mode == FailMode::Open;
                    let result = if admitted { "ok" } else { "error" };
                    self.metrics
                        .redis_fail_decisions
                        .get_or_create(&ResultLabels { result })
                        .inc();
                    if !admitted {
                        return Err(Refused::Unavailable(
                            "the shared usage counters are unreachable",
                        ));
                    }
                }
            }
        }
        // Without Redis (one replica), or failing open: on this replica's own counters, which
        // mirror what it admitted through Redis, at its share of each limit.
        let replicas = if self.redis.is_some() {
            self.replicas()
        } else {
            1
        };
        Ok((
            self.book().reserve_share(charges, member, now, replicas),
            false,
        ))
    }

    /// Keeps this replica's own counters a mirror of what it admitted through Redis (its
    /// windows and leases) and of the fleet's amounts as Redis reported them, so it can go on
    /// alone, at its share, if Redis becomes unreachable.
    fn mirror(&self, charges: &[Charge], admitted: &Admitted, member: u128, now: u64) {
        self.book().mirror(charges, &admitted.after, member, now);
    }

    /// Cancels, in the background, a Redis reservation whose outcome is unknown (its call timed
    /// out or its caller went away); resent there until Redis takes it.
    fn cancel_lost(&self, charges: &[Charge], member: u128) {
        let Some(redis) = &self.redis else {
            return;
        };
        let (redis, charges) = (redis.clone(), charges.to_vec());
        let metrics = self.metrics.clone();
        drop(self.settling.spawn(async move {
            if let Err(error) = redis.cancel(&charges, member).await {
                tracing::warn!(
                    "cancelling a lost reservation failed (resent in the background if Redis may take it later): {error}"
                );
                let labels = RedisLabels {
                    op: "cancel",
                    class: error.class(),
                };
                metrics.redis_errors.get_or_create(&labels).inc();
            }
        }));
    }

    async fn give_back(
        &self,
        charges: &[Charge],
        releases: &[super::charge::Release],
        member: u128,
        shared: bool,
    ) -> Vec<u64> {
        if shared && let Some(redis) = &self.redis {
            let settled = redis.settle(charges, releases, member).await;
            // The mirror settles too (see `Meter::mirror`), with the fleet's figures when Redis
            // gave them.
            let fleet = settled.as_deref().unwrap_or_default();
            self.book()
                .mirror_settled(releases, fleet, member, now_ms());
            match settled {
                Ok(after) => return after,
                Err(error) => {
                    // Sent again in the background (`dgidgi_redis_redeliveries`); until it is
                    // taken the lease stays held and the amounts keep the reservation.
                    self.redis_failed("settle", &error);
                    return Vec::new();
                }
            }
        }
        self.book().settle(releases, member, now_ms())
    }

    /// Admits a request or says why not. The admission is sent to the ledger at once; await
    /// [`Ticket::journalled`] before answering the client.
    /// `unbounded_output_tokens`: the platform configuration's reservation for an output
    /// nothing bounds, over the gateway's own ([`ReservePolicy`]).
    pub async fn admit(
        &self,
        tenant: &TenantConfig,
        candidates: &[Candidate<'_>],
        size: RequestSize,
        source: &str,
        model: &str,
        unbounded_output_tokens: Option<u64>,
    ) -> Result<Ticket, Refused> {
        let started = Instant::now();
        let now = now_ms();
        let blocking = tenant
            .budget
            .as_ref()
            .is_some_and(|b| b.action == BudgetAction::Block);
        if blocking
            && candidates
                .iter()
                .any(|c| c.platform && c.model.and_then(|m| m.pricing.as_ref()).is_none())
        {
            return Err(Refused::Unpriced(model.to_owned()));
        }
        let request_id = request_id::new(now);
        let configured;
        let policy = match unbounded_output_tokens {
            Some(tokens) => {
                configured = ReservePolicy {
                    unbounded_output_tokens: tokens,
                    ..self.policy.clone()
                };
                &configured
            }
            None => &self.policy,
        };
        let mut reservation = plan::reserve(tenant, candidates, size, policy, now);
        let (result, shared) = self.take(&reservation.charges, request_id, now).await?;
        let admitted = match result {
            Ok(admitted) => {
                if let Some(granted) = admitted.output {
                    reservation.grant(granted);
                }
                admitted
            }
            Err(refusal) => {
                let refused = self.refused(tenant, &reservation, &refusal, now);
                if let Some(ledger) = &self.ledger {
                    let (status, reason) = match &refused {
                        Refused::Budget { .. } => (402, LimitKind::Budget.as_str()),
                        Refused::Limit { kind, .. } => (429, kind.as_str()),
                        _ => (503, "unavailable"),
                    };
                    ledger.refused(super::refusals::Refusal {
                        tenant_id: tenant.id.clone(),
                        ts_ms: now,
                        reason,
                        status,
                    });
                }
                return Err(refused);
            }
        };
        let journal = self.ledger.as_ref().map(|ledger| {
            ledger.admit(self.record(
                request_id,
                (&tenant.id, tenant.meter()),
                source,
                model,
                now,
                &reservation,
                reservation.tokens,
                reservation.cost_micro_usd,
            ))
        });
        Ok(Ticket {
            request_id,
            admitted,
            tenant: tenant.id.clone(),
            meter: tenant.meter().to_owned(),
            source: source.to_owned(),
            model: model.to_owned(),
            started,
            started_ms: now,
            shared,
            budget: tenant
                .budget
                .as_ref()
                .map(|b| (b.monthly_micro_usd, b.alert_thresholds.clone())),
            reservation,
            journal,
            size,
        })
    }

    #[expect(
        clippy::too_many_arguments,
        reason = "one record's fields, named at the call"
    )]
    fn record(
        &self,
        request_id: u128,
        (tenant, meter): (&str, &str),
        source: &str,
        model: &str,
        now: u64,
        reservation: &Reservation,
        tokens: u64,
        cost: u64,
    ) -> Record {
        Record {
            request_id: request_id::text(request_id),
            timestamp: rfc3339(now),
            ts_ms: now,
            tenant_id: tenant.to_owned(),
            meter: meter.to_owned(),
            provider: String::new(),
            model: model.to_owned(),
            source: source.to_owned(),
            tokens_input: 0,
            tokens_output: 0,
            cached_input_tokens: 0,
            tokens,
            cost_micro_usd: cost,
            latency_ms: 0,
            status: 0,
            outcome: super::Outcome::Reserved.as_str().into(),
            fallback_count: 0,
            estimated: true,
            day: reservation.day.clone(),
            month: reservation.month.clone(),
        }
    }

    fn refused(
        &self,
        tenant: &TenantConfig,
        reservation: &Reservation,
        refusal: &Refusal,
        now: u64,
    ) -> Refused {
        let kind = match reservation.charges.get(refusal.index) {
            Some(Charge::Window { kind, .. } | Charge::Lease { kind, .. }) => *kind,
            Some(Charge::Amount {
                kind: Some(kind), ..
            }) => *kind,
            _ => LimitKind::Rpm,
        };
        let tenant_label = || TenantLabels {
            tenant: tenant.id.clone(),
        };
        if kind == LimitKind::Budget {
            self.metrics
                .budget_rejections
                .get_or_create(&tenant_label())
                .inc();
            return Refused::Budget {
                limit: refusal.limit,
                spent: refusal.current,
            };
        }
        self.metrics
            .limit_rejections
            .get_or_create(&LimitLabels {
                tenant: tenant.id.clone(),
                limit: kind.as_str(),
            })
            .inc();
        let retry_after_ms = match kind {
            LimitKind::Tpd => clock::until_next_day(now),
            LimitKind::Concurrency => 1_000,
            _ => refusal.retry_after_ms.max(1),
        };
        // A window frees no place before its oldest entry leaves (its retry-after); a lease
        // may free any moment, so a tenant at its concurrency cools only briefly: enough to
        // turn a flood into a few body reads a second, not enough to starve a busy tenant.
        let cooling = match kind {
            LimitKind::Rpm => Some(retry_after_ms),
            LimitKind::Concurrency => Some(CONCURRENCY_COOLING_MS),
            _ => None,
        };
        if let Some(cooling_ms) = cooling {
            self.cooling
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(
                    tenant.id.clone(),
                    Cooling {
                        kind,
                        limit: refusal.limit,
                        until_ms: now + cooling_ms,
                    },
                );
        }
        Refused::Limit {
            kind,
            limit: refusal.limit,
            remaining: refusal.limit.saturating_sub(refusal.current),
            retry_after_ms,
        }
    }

    /// Admits a free request (token counting) at the tenant's requests per minute, in a window
    /// of its own (see [`plan::reserve_free`]). A refusal here does not cool the tenant's
    /// metered requests.
    pub async fn admit_free(&self, tenant: &TenantConfig) -> Result<(), Refused> {
        let now = now_ms();
        let Some(reservation) = plan::reserve_free(tenant, now) else {
            return Ok(());
        };
        let member = request_id::new(now);
        let (result, shared) = self.take(&reservation.charges, member, now).await?;
        match result {
            Ok(_) => {
                // Nothing to give back (a window entry leaves with its minute), but a shared
                // reservation's marker is taken now rather than left for a day.
                if shared {
                    self.give_back(&reservation.charges, &[], member, true)
                        .await;
                }
                Ok(())
            }
            Err(refusal) => {
                self.metrics
                    .limit_rejections
                    .get_or_create(&LimitLabels {
                        tenant: tenant.id.clone(),
                        limit: LimitKind::Rpm.as_str(),
                    })
                    .inc();
                Err(Refused::Limit {
                    kind: LimitKind::Rpm,
                    limit: refusal.limit,
                    remaining: refusal.limit.saturating_sub(refusal.current),
                    retry_after_ms: refusal.retry_after_ms.max(1),
                })
            }
        }
    }

    /// The refusal of a tenant this replica refused for requests per minute or concurrency
    /// within its `retry-after`: checked before the request's body is read (no Redis call, no
    /// parsing), so a tenant hammering past its limit costs the gateway its headers only. The
    /// answer is the one it got, with the time left. Counted like any refusal.
    pub fn still_refused(&self, tenant: &TenantConfig) -> Option<Refused> {
        let now = now_ms();
        let cooling = {
            let mut cooling = self.cooling.lock().unwrap_or_else(PoisonError::into_inner);
            let entry = *cooling.get(tenant.id.as_str())?;
            if entry.until_ms <= now {
                cooling.remove(tenant.id.as_str());
                return None;
            }
            entry
        };
        self.metrics
            .limit_rejections
            .get_or_create(&LimitLabels {
                tenant: tenant.id.clone(),
                limit: cooling.kind.as_str(),
            })
            .inc();
        if let Some(ledger) = &self.ledger {
            ledger.refused(super::refusals::Refusal {
                tenant_id: tenant.id.clone(),
                ts_ms: now,
                reason: cooling.kind.as_str(),
                status: 429,
            });
        }
        Some(Refused::Limit {
            kind: cooling.kind,
            limit: cooling.limit,
            remaining: 0,
            retry_after_ms: cooling.until_ms - now,
        })
    }

    /// Takes a provider key's own quota for one attempt; `Err` means skip to the next target.
    pub async fn admit_provider(
        &self,
        provider_id: &str,
        limits: &ProviderLimitsConfig,
        ticket: &Ticket,
    ) -> Result<ProviderTicket, LimitKind> {
        let now = now_ms();
        let charges = plan::reserve_provider(provider_id, limits, ticket.reservation.tokens, now);
        // Each attempt is its own reservation: a retry or fallback to the same key is another
        // upstream request (another entry in the key's window), and settling one attempt, even
        // a copy resent long after, must never take another's marker.
        let member = request_id::new(now);
        if charges.is_empty() {
            return Ok(ProviderTicket {
                charges,
                member,
                shared: false,
            });
        }
        // The provider limit is advisory under a Redis outage: open or closed, the tenant's
        // own admission has already been decided.
        match self.take(&charges, member, now).await {
            Ok((Ok(_), shared)) => Ok(ProviderTicket {
                charges,
                member,
                shared,
            }),
            Ok((Err(refusal), _)) => {
                let kind = match charges.get(refusal.index) {
                    Some(Charge::Amount { .. }) => LimitKind::ProviderTpm,
                    _ => LimitKind::ProviderRpm,
                };
                self.metrics
                    .limit_rejections
                    .get_or_create(&LimitLabels {
                        tenant: ticket.tenant.clone(),
                        limit: kind.as_str(),
                    })
                    .inc();
                Err(kind)
            }
            Err(_) => Ok(ProviderTicket {
                charges: Vec::new(),
                member,
                shared: false,
            }),
        }
    }

    /// Settles a provider ticket: released when the attempt failed before answering, moved to
    /// the real tokens when it served.
    pub async fn settle_provider(&self, ticket: ProviderTicket, served_tokens: Option<u64>) {
        if ticket.charges.is_empty() {
            return;
        }
        let settled = served_tokens.map(|tokens| Settlement {
            tokens,
            cost_micro_usd: 0,
            estimated: false,
        });
        let releases = plan::releases(&ticket.charges, settled);
        self.give_back(&ticket.charges, &releases, ticket.member, ticket.shared)
            .await;
    }

    /// Settles a request: `served` is `None` when no provider answered (everything released).
    pub async fn settle(&self, ticket: Ticket, served: Option<Served<'_>>) {
        // A report no real answer could give (no input at all, more output than the attempt
        // allowed, counts past any context) is treated as missing: the reservation stands.
        let reported = served.as_ref().and_then(|s| s.usage);
        let believed = served.as_ref().and_then(|s| {
            let usage = s.usage?;
            if plan::believable(&usage, s.output_bound) {
                return Some(usage);
            }
            self.unbelievable_usage(s.provider, &usage);
            None
        });
        let settlement = served.as_ref().map(|s| {
            // A provider error answer (4xx relayed) is not billed by providers.
            let usage = match believed {
                None if !(200..300).contains(&s.status) => Some(Usage::default()),
                usage => usage,
            };
            plan::settlement(
                &ticket.reservation,
                usage,
                s.pricing,
                s.platform,
                s.outcome == super::Outcome::Complete,
            )
        });
        let releases = plan::releases(&ticket.reservation.charges, settlement);
        let after = self
            .give_back(
                &ticket.reservation.charges,
                &releases,
                ticket.request_id,
                ticket.shared,
            )
            .await;
        if let (Some(_), Some((budget, percents))) = (settlement, &ticket.budget) {
            self.fire_thresholds(&ticket, &releases, &after, *budget, percents)
                .await;
        }
        let latency = ticket.started.elapsed();
        if let Some(ledger) = &self.ledger {
            let mut record = self.record(
                ticket.request_id,
                (&ticket.tenant, &ticket.meter),
                &ticket.source,
                &ticket.model,
                ticket.started_ms,
                &ticket.reservation,
                settlement.map_or(0, |s| s.tokens),
                settlement.map_or(0, |s| s.cost_micro_usd),
            );
            record.latency_ms = latency.as_millis() as u64;
            match &served {
                Some(s) => {
                    let usage = reported.unwrap_or_default();
                    record.provider = s.provider.to_owned();
                    record.model = s.model.to_owned();
                    record.tokens_input = usage.input_tokens;
                    record.tokens_output = usage.output_tokens;
                    record.cached_input_tokens = usage.cached_input_tokens;
                    record.status = s.status;
                    record.outcome = s.outcome.as_str().into();
                    record.fallback_count = s.fallback;
                    record.estimated = settlement.is_some_and(|s| s.estimated);
                }
                None => {
                    record.outcome = super::Outcome::Failed.as_str().into();
                    record.estimated = false;
                }
            }
            ledger.settle(
                record,
                Reserved {
                    tokens: ticket.reservation.tokens,
                    cost_micro_usd: ticket.reservation.cost_micro_usd,
                },
            );
        }
        if let (Some(served), Some(settlement)) = (served, settlement) {
            self.count(&ticket, &served, believed, settlement, latency);
        }
    }

    /// Counts a usage report that was not believed, and says so in the log the first time.
    fn unbelievable_usage(&self, provider: &str, usage: &Usage) {
        self.metrics
            .unbelievable_usage
            .get_or_create(&ProviderLabels {
                provider: provider.to_owned(),
            })
            .inc();
        if !self
            .unbelievable_logged
            .swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            tracing::warn!(
                provider = ?provider,
                input = usage.input_tokens,
                output = usage.output_tokens,
                "a provider reported usage no answer could have (no input, or more than allowed); the reservation is charged instead (counted in dgidgi_unbelievable_usage_total, logged once)"
            );
        }
    }

    fn count(
        &self,
        ticket: &Ticket,
        served: &Served<'_>,
        usage: Option<Usage>,
        settlement: Settlement,
        latency: Duration,
    ) {
        let route = self.metrics.route(
            &ticket.tenant,
            served.provider,
            served.model_label,
            &ticket.source,
        );
        route.answered(&self.metrics, served.status);
        route.took(latency);
        if let Some(first) = served.first_byte {
            route.first_byte_after(&self.metrics, first);
        }
        if let Some(usage) = usage {
            route.used(&self.metrics, usage.input_tokens, usage.output_tokens);
        }
        if served.fallback > 0 {
            self.metrics
                .fallbacks
                .get_or_create(&TenantLabels {
                    tenant: ticket.tenant.clone(),
                })
                .inc();
        }
        route.charged(settlement.cost_micro_usd);
    }

    async fn fire_thresholds(
        &self,
        ticket: &Ticket,
        releases: &[super::charge::Release],
        after: &[u64],
        budget: u64,
        percents: &[u32],
    ) {
        let spend_key = keys::spend(&ticket.meter, &ticket.reservation.month);
        let Some(spent) = releases
            .iter()
            .zip(after)
            .find(|(r, _)| matches!(r, super::charge::Release::Adjust { key, .. } if *key == spend_key))
            .map(|(_, v)| *v)
        else {
            return;
        };
        // Every line the spend has reached, not only those this settlement crossed: the spend
        // is the namespace's (`TenantConfig::meter`), so a neighbour's settlement may have taken
        // it past this tenant's line. Each is announced once: the marks decide, this replica's
        // own first (it keeps the ones it has seen), then Redis' for the fleet.
        for percent in crossed_thresholds(budget, percents, 0, spent) {
            let mark = keys::threshold(&ticket.tenant, &ticket.reservation.month, percent);
            if !self.book().mark_once(&mark) {
                continue;
            }
            let first = match (&self.redis, ticket.shared) {
                (Some(redis), true) => {
                    let ttl = clock::until_next_month(now_ms()) + 2 * clock::DAY_MS;
                    match redis.mark_once(&mark, ttl).await {
                        Ok(first) => first,
                        Err(error) => {
                            self.redis_failed("mark", &error);
                            true
                        }
                    }
                }
                _ => true,
            };
            if first {
                tracing::warn!(tenant = ?ticket.tenant, percent, "budget alert threshold crossed");
                self.metrics
                    .budget_thresholds
                    .get_or_create(&TenantLabels {
                        tenant: ticket.tenant.clone(),
                    })
                    .inc();
                if let Some(ledger) = &self.ledger {
                    ledger.threshold(
                        &ticket.tenant,
                        &ticket.reservation.month,
                        percent,
                        rfc3339(now_ms()),
                    );
                }
            }
        }
    }

    /// The usage summary for the operator.
    pub async fn summary(&self, config: &GatewayConfig) -> UsageSummary {
        let now = now_ms();
        let today = Day::of(now);
        let (day, month) = (today.key(), today.month_key());
        let keys: Vec<String> = config
            .tenants
            .iter()
            .flat_map(|t| {
                [
                    keys::requests(t.meter(), &day),
                    keys::tokens(t.meter(), &day),
                    keys::spend(t.meter(), &month),
                ]
            })
            .collect();
        let (values, shared) = match &self.redis {
            Some(redis) => match redis.amounts(&keys).await {
                Ok(values) => (values, true),
                Err(error) => {
                    self.redis_failed("read", &error);
                    (self.local_amounts(&keys, now), false)
                }
            },
            None => (self.local_amounts(&keys, now), false),
        };
        let tenants = config
            .tenants
            .iter()
            .zip(values.chunks(3))
            .map(|(tenant, v)| {
                let spent = v.get(2).copied().unwrap_or(0);
                let budget = tenant.budget.as_ref();
                let limit = budget.map(|b| b.monthly_micro_usd);
                TenantUsageSummary {
                    tenant: tenant.id.clone(),
                    requests_today: v.first().copied().unwrap_or(0),
                    tokens_today: v.get(1).copied().unwrap_or(0),
                    spend_this_month_micro_usd: spent,
                    budget_micro_usd: limit,
                    thresholds_crossed: budget.map_or_else(Vec::new, |b| {
                        crossed_thresholds(b.monthly_micro_usd, &b.alert_thresholds, 0, spent)
                    }),
                    budget_exceeded: budget.is_some_and(|b| {
                        b.monthly_micro_usd > 0 && spent >= b.monthly_micro_usd
                            || b.monthly_micro_usd == 0 && b.action == BudgetAction::Block
                    }),
                }
            })
            .collect();
        UsageSummary {
            day,
            month,
            shared,
            tenants,
        }
    }

    fn local_amounts(&self, keys: &[String], now: u64) -> Vec<u64> {
        let book = self.book();
        keys.iter().map(|k| book.amount(k, now)).collect()
    }

    /// Drops expired counters; called every minute.
    pub fn sweep(&self) {
        self.book().sweep(now_ms(), MINUTE_MS);
        self.report_ledger_size();
    }

    /// Sets `dgidgi_ledger_bytes` to what the ledger's files take on disk (the database, its
    /// write-ahead log and index), so a filling volume is seen before it is full.
    pub fn report_ledger_size(&self) {
        let Some(dir) = &self.state_dir else {
            return;
        };
        let bytes: u64 = ["", "-wal", "-shm"]
            .iter()
            .filter_map(|suffix| {
                let name = format!("{}{suffix}", super::ledger::LEDGER_FILE);
                std::fs::metadata(dir.join(name)).ok()
            })
            .map(|meta| meta.len())
            .sum();
        self.metrics
            .ledger_bytes
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    /// Runs a settlement in the background, where [`Meter::stop`] waits for it: the request
    /// that made it is answered and gone, the reservation it releases is not.
    /// The handle lets a caller wait for it without being able to cut it short.
    pub fn spawn_settlement(
        &self,
        settlement: impl Future<Output = ()> + Send + 'static,
    ) -> tokio::task::JoinHandle<()> {
        self.settling.spawn(settlement)
    }

    /// The meter's part of stopping: waits up to `grace` for the settlements under way and the
    /// Redis calls waiting to be sent again, then for the ledger to commit everything. What is
    /// still unsettled at the deadline is logged; Redis keeps those reservations until their
    /// counters' TTL, and the next start settles their ledger rows at the reservation.
    pub async fn stop(&self, grace: Duration) {
        let deadline = tokio::time::Instant::now() + grace;
        self.settling.close();
        if tokio::time::timeout_at(deadline, self.settling.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                unsettled = self.settling.len(),
                "stopping before every settlement finished (gave them {grace:?})"
            );
        }
        if let Some(redis) = &self.redis {
            let waiting = redis.wait_for_redeliveries(deadline).await;
            if waiting > 0 {
                tracing::warn!(
                    waiting,
                    "stopping with Redis settlements or cancellations still unsent; their counters keep the reservations until their TTL"
                );
            }
        }
        self.flush().await;
    }

    /// Settlements under way (a served request's settlement runs after its answer is sent).
    pub fn settlements_in_flight(&self) -> usize {
        self.settling.len()
    }

    /// Waits for the ledger to commit everything queued (shutdown, tests).
    pub async fn flush(&self) {
        if let Some(ledger) = &self.ledger {
            ledger.flush().await;
        }
    }
}
