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
use super::redis::{Epochs, Layout, RedisCounters, RedisError};
use super::request_id;
use crate::config::BudgetAction;
use crate::config::{GatewayConfig, PricingConfig, ProviderLimitsConfig, TenantConfig};
use crate::metrics::{
    LimitLabels, Metrics, ProviderLabels, RedisLabels, ResultLabels, TenantLabels,
};
use crate::usage::Usage;

mod admit;
mod settle;
mod summary;
mod sync;

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
    /// Whether `redis_url` names a Redis (or Valkey) Cluster: one or more of its nodes,
    /// separated by commas; the counters' keys then carry hash tags (see
    /// [`crate::metering::redis::Layout`]).
    pub redis_cluster: bool,
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
            .field("redis_cluster", &self.redis_cluster)
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
            redis_cluster: false,
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
    /// The tenant (`namespace/name`).
    pub fn tenant(&self) -> &str {
        &self.tenant
    }

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
    /// The epochs this replica's usage is in (see [`super::rebuild`]).
    added_to: Mutex<Option<Epochs>>,
    /// After an epoch change: how many replicas were heard before it, until when they are
    /// waited for.
    expected: Mutex<Option<(u64, Instant)>>,
    /// The most replicas a heartbeat heard lately, and until when that stands (see
    /// `most_heard_lately`).
    peak: Mutex<(u64, Instant)>,
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
                let layout = if options.redis_cluster {
                    Layout::CLUSTER
                } else {
                    Layout::SINGLE
                };
                let counters = RedisCounters::new(url, layout, options.redis_timeout)?
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
            policy: options.policy,
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
            peak: Mutex::new((0, Instant::now())),
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
            // Boxed here (as in `give_back`): the Redis call's state is kilobytes, and inline it
            // would sit in every request's future, Redis or not, and be copied with it.
            let reserved = Box::pin(redis.reserve(charges, member)).await;
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
            let settled = Box::pin(redis.settle(charges, releases, member)).await;
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
