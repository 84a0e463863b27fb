//! The running operator: one watch per kind feeding a reflector store, a debounced trigger,
//! and one pass over the whole state whenever something changed (and on a slow resync).
//! Only the Lease holder writes; failures back off exponentially and retry.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::api::{Api, DynamicObject};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource};
use tokio::sync::{Notify, watch};

use super::LEASE_NAME;
use super::leader::LeaseLock;
use super::metrics::ResultLabel;
use super::observed::{Observed, WriteOverlay, index};
use super::plan::Write;
use super::reconcile::{Passes, reconcile_once};
use super::server::Health;
use super::writer::{Writer, api_resource};
use crate::render::{RenderContext, ResourceKind};

/// How the controller runs.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The platform namespace.
    pub platform_namespace: String,
    /// Quiet time after a change before a pass, so a burst (`kubectl apply -f dir/`) costs
    /// one pass.
    pub debounce: Duration,
    /// A pass at least this often even without changes.
    pub resync: Duration,
    /// First retry delay after a failed pass; doubles up to `max_backoff`.
    pub min_backoff: Duration,
    /// Longest retry delay.
    pub max_backoff: Duration,
    /// This replica's name (the pod name), for the Lease and Events.
    pub identity: String,
    /// How long a Lease holds without renewal.
    pub lease_duration: Duration,
    /// Usage polling; None when no admin token is configured.
    pub usage: Option<UsageSettings>,
    /// Where the passes' spans go (`None`: none are made).
    pub traces: Option<crate::telemetry::Traces>,
    /// How many shards the config and key store are written in (the chart's `config.shards`,
    /// which also mounts that many; 1: one ConfigMap and one Secret).
    pub config_shards: u32,
}

/// Where and how often to read the gateways' usage summaries.
#[derive(Clone)]
pub struct UsageSettings {
    /// The Service whose EndpointSlices list the gateway pods' admin ports.
    pub service: String,
    /// Where the admin token comes from.
    pub token: TokenSource,
    /// How often.
    pub interval: Duration,
}

impl std::fmt::Debug for UsageSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UsageSettings")
            .field("service", &self.service)
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

/// The admin token: a mounted file (re-read on every poll, so a rotated Secret is picked up)
/// or a fixed value from the environment.
#[derive(Clone)]
pub enum TokenSource {
    /// A file holding the token.
    File(std::path::PathBuf),
    /// The token itself.
    Value(zeroize::Zeroizing<String>),
}

impl TokenSource {
    fn read(&self) -> Option<zeroize::Zeroizing<String>> {
        match self {
            Self::File(path) => std::fs::read_to_string(path)
                .map(|t| zeroize::Zeroizing::new(t.trim().to_owned()))
                .map_err(|e| tracing::warn!(path = %path.display(), "usage: admin token unreadable: {e}"))
                .ok(),
            Self::Value(value) => Some(value.clone()),
        }
    }
}

async fn tick(timer: &mut Option<tokio::time::Interval>) {
    match timer {
        Some(timer) => {
            timer.tick().await;
        }
        None => futures::future::pending().await,
    }
}

/// One usage poll: read the gateways, write what changed.
async fn poll_usage(
    client: &Client,
    settings: &Settings,
    usage: &UsageSettings,
    stores: &Stores,
    writer: &Writer,
    overlay: &mut WriteOverlay,
    health: &Health,
) {
    let Some(token) = usage.token.read() else {
        return;
    };
    let totals = match super::usage::poll(
        client,
        &settings.platform_namespace,
        &usage.service,
        &token,
    )
    .await
    {
        Ok(Some(totals)) => totals,
        Ok(None) => {
            tracing::debug!("usage: no complete answer from the gateways this round");
            return;
        }
        Err(error) => {
            tracing::warn!(%error, "usage: poll failed");
            return;
        }
    };
    let observed = stores.snapshot();
    let writes = super::usage::plan_usage(&totals, &observed, k8s_openapi::jiff::Timestamp::now());
    let outcome = writer.write_all(&writes, overlay, Instant::now()).await;
    health.metrics.count_writes(&writes, &outcome.failed);
    tracing::info!(
        writes = writes.len(),
        failed = outcome.failed.len(),
        "usage written"
    );
}

struct Stores {
    namespaces: Store<Namespace>,
    secrets: Store<Secret>,
    config_maps: Store<ConfigMap>,
    providers: Store<DynamicObject>,
    tenants: Store<DynamicObject>,
    policies: Store<DynamicObject>,
}

impl Stores {
    fn snapshot(&self) -> Observed {
        Observed {
            namespaces: index(self.namespaces.state()),
            secrets: index(self.secrets.state()),
            config_maps: index(self.config_maps.state()),
            providers: index(self.providers.state()),
            tenants: index(self.tenants.state()),
            policies: index(self.policies.state()),
        }
    }

    async fn wait_until_ready(&self) -> Result<(), reflector::store::WriterDropped> {
        self.namespaces.wait_until_ready().await?;
        self.secrets.wait_until_ready().await?;
        self.config_maps.wait_until_ready().await?;
        self.providers.wait_until_ready().await?;
        self.tenants.wait_until_ready().await?;
        self.policies.wait_until_ready().await
    }
}

/// Drives a watch into its store, poking `changed` on every event. managedFields are dropped
/// before they reach the store (they are most of an object's size and never read).
fn drive<K>(
    stream: impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
    writer: reflector::store::Writer<K>,
    changed: Arc<Notify>,
    what: &'static str,
) where
    K: Resource + Clone + Send + Sync + std::fmt::Debug + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone + Send + Sync,
{
    let stream = reflector::reflector(
        writer,
        stream
            .default_backoff()
            .modify(|o| o.meta_mut().managed_fields = None),
    );
    tokio::spawn(async move {
        stream
            .for_each(|event| {
                if let Err(error) = event {
                    tracing::warn!(what, error = %crate::redact::serde_message(&error.to_string()), "watch error");
                } else {
                    changed.notify_one();
                }
                futures::future::ready(())
            })
            .await;
    });
}

fn start_watches(client: &Client, platform_namespace: &str, changed: &Arc<Notify>) -> Stores {
    let config = watcher::Config::default;
    let (namespaces, w) = reflector::store();
    drive(
        watcher(Api::<Namespace>::all(client.clone()), config()),
        w,
        changed.clone(),
        "namespaces",
    );
    let (secrets, w) = reflector::store();
    drive(
        watcher(Api::<Secret>::all(client.clone()), config()),
        w,
        changed.clone(),
        "secrets",
    );
    let (config_maps, w) = reflector::store();
    drive(
        watcher(
            Api::<ConfigMap>::namespaced(client.clone(), platform_namespace),
            config(),
        ),
        w,
        changed.clone(),
        "configmaps",
    );
    let dynamic = |kind: ResourceKind| {
        let ar = api_resource(kind);
        let writer = reflector::store::Writer::<DynamicObject>::new(ar.clone());
        let store = writer.as_reader();
        drive(
            watcher(
                Api::<DynamicObject>::all_with(client.clone(), &ar),
                config(),
            ),
            writer,
            changed.clone(),
            kind.as_str(),
        );
        store
    };
    Stores {
        namespaces,
        secrets,
        config_maps,
        providers: dynamic(ResourceKind::LlmProvider),
        tenants: dynamic(ResourceKind::LlmTenant),
        policies: dynamic(ResourceKind::RoutingPolicy),
    }
}

/// Runs until `shutdown` resolves. Writes nothing before every store has synced (render on a
/// half-filled store would generate keys that already exist) or while another replica holds
/// the Lease.
pub async fn run(
    client: Client,
    settings: Settings,
    health: Arc<Health>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    tokio::pin!(shutdown);
    let changed = Arc::new(Notify::new());
    let stores = start_watches(&client, &settings.platform_namespace, &changed);

    let (leader_tx, mut leader) = watch::channel(false);
    let lock = LeaseLock::new(
        client.clone(),
        &settings.platform_namespace,
        LEASE_NAME,
        &settings.identity,
        settings.lease_duration,
    );
    let lease_task = tokio::spawn(lock.run(leader_tx));

    tokio::select! {
        synced = stores.wait_until_ready() => synced?,
        () = &mut shutdown => {
            lease_task.abort();
            return Ok(());
        }
    }
    health.ready.store(true, Ordering::Relaxed);
    tracing::info!("watches synced");

    let writer = Writer::new(client.clone(), Some(settings.identity.clone()));
    let mut platform = PlatformTiers::default();
    let mut overlay = WriteOverlay::default();
    let mut passes = Passes::new(settings.resync);
    let mut pacing = Pacing::new(settings.min_backoff, settings.max_backoff);
    let mut usage_timer = settings.usage.as_ref().map(|u| {
        let mut timer = tokio::time::interval(u.interval);
        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        timer
    });
    loop {
        // Wait for a change, a retry, a leadership change, a usage poll or the resync.
        let wait = pacing.retry_in.unwrap_or(settings.resync);
        let mut usage_due = false;
        tokio::select! {
            () = tick(&mut usage_timer) => usage_due = true,
            () = changed.notified() => {}
            () = tokio::time::sleep(wait) => {}
            result = leader.changed() => {
                if result.is_err() {
                    break;
                }
            }
            () = &mut shutdown => break,
        }
        // Debounce: wait until the changes stop for a moment.
        if !usage_due {
            loop {
                tokio::select! {
                    () = changed.notified() => {}
                    () = tokio::time::sleep(settings.debounce) => break,
                }
            }
        }
        let is_leader = *leader.borrow();
        health.metrics.leader.set(i64::from(is_leader));
        if !is_leader {
            pacing.lost_leadership();
            // Another leader may have written meanwhile: the next pass starts from scratch.
            passes.forget();
            continue;
        }
        if usage_due {
            if let Some(usage) = settings.usage.as_ref().filter(|_| pacing.settled) {
                poll_usage(
                    &client,
                    &settings,
                    usage,
                    &stores,
                    &writer,
                    &mut overlay,
                    &health,
                )
                .await;
            }
            continue;
        }
        let pass = Pass {
            settings: &settings,
            stores: &stores,
            writer: &writer,
            health: &health,
        };
        let outcome = pass.render(&mut platform, &mut overlay, &mut passes).await;
        if let Some(retry_in) = pacing.after(outcome) {
            tracing::info!(?retry_in, "will retry");
        }
    }
    lease_task.abort();
    tracing::info!("operator stopped");
    Ok(())
}

use rand::SeedableRng as _;

/// How a render pass went, for the loop's pacing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PassOutcome {
    /// Nothing rendered: an invalid platform configuration and no tiers on record. The fix
    /// wakes the loop; no retry.
    Held,
    /// Rendered and applied; `wrote`: something was written.
    Applied {
        /// Whether any write was made.
        wrote: bool,
    },
    /// The pass or one of its writes failed.
    Failed,
}

/// What the loop carries between passes: when to retry after a failure (exponential backoff),
/// and whether usage may be written (only after a pass that wrote nothing, so usage never
/// builds on a status the stores have not caught up with).
#[derive(Debug)]
struct Pacing {
    min_backoff: Duration,
    max_backoff: Duration,
    backoff: Duration,
    retry_in: Option<Duration>,
    settled: bool,
}

impl Pacing {
    fn new(min_backoff: Duration, max_backoff: Duration) -> Self {
        Self {
            min_backoff,
            max_backoff,
            backoff: min_backoff,
            retry_in: None,
            settled: false,
        }
    }

    /// Another replica leads: nothing to retry, and the stores must catch up with its writes
    /// (a pass that writes nothing) before usage is written again.
    fn lost_leadership(&mut self) {
        self.retry_in = None;
        self.settled = false;
    }

    /// Takes a pass's outcome; returns the retry delay when it failed.
    fn after(&mut self, outcome: PassOutcome) -> Option<Duration> {
        match outcome {
            PassOutcome::Held => {
                self.retry_in = None;
            }
            PassOutcome::Applied { wrote } => {
                self.settled = !wrote;
                self.backoff = self.min_backoff;
                self.retry_in = None;
            }
            PassOutcome::Failed => {
                self.settled = false;
                self.retry_in = Some(self.backoff);
                self.backoff = (self.backoff * 2).min(self.max_backoff);
            }
        }
        self.retry_in
    }
}

/// One render pass's inputs: the observed state, where it writes, where it reports.
struct Pass<'a> {
    settings: &'a Settings,
    stores: &'a Stores,
    writer: &'a Writer,
    health: &'a Health,
}

impl Pass<'_> {
    /// Renders the observed state and applies the difference: the platform configuration's
    /// tiers first (the last good kept, a refusal published once), then one reconcile.
    async fn render(
        &self,
        platform: &mut PlatformTiers,
        overlay: &mut WriteOverlay,
        passes: &mut Passes,
    ) -> PassOutcome {
        let (settings, health) = (self.settings, self.health);
        let started = Instant::now();
        let mut observed = self.stores.snapshot();
        overlay.apply_to(&mut observed, started);
        let mut ctx = RenderContext::new(
            &settings.platform_namespace,
            k8s_openapi::jiff::Timestamp::now(),
        );
        ctx.shards = settings.config_shards;
        let namespace = &settings.platform_namespace;
        let (tiers, problem) = match platform.update_from(&observed, namespace) {
            TiersInForce::Configured(tiers) => (Some(tiers), None),
            TiersInForce::LastGood(tiers, problem) => (Some(tiers), Some(problem)),
            TiersInForce::Hold(problem) => (None, Some(problem)),
        };
        health
            .metrics
            .platform_config_invalid
            .set(i64::from(problem.is_some()));
        if let Some(problem) = problem.filter(|p| platform.is_new(p)) {
            tracing::error!(%problem, keeping_last_good = tiers.is_some(), "platform configuration refused");
            if let Some(config_map) = observed.platform_config_map(namespace)
                && let Err(error) = self
                    .writer
                    .warn_platform_config(config_map, &problem.to_string())
                    .await
            {
                tracing::warn!(%error, "could not publish the Event");
            }
        }
        // Started on an invalid configuration with no record of the tiers in force (a first
        // install): no last good to keep, so nothing is rendered (the gateway keeps its
        // config) until it is fixed; its change wakes the loop.
        let Some(tiers) = tiers else {
            return PassOutcome::Held;
        };
        ctx.tiers = tiers;
        let pass = settings
            .traces
            .as_ref()
            .map(|traces| crate::telemetry::operator::span(traces, "dgidgi.reconcile"));
        let result = {
            use opentelemetry::context::FutureExt as _;
            let mut rng = rand::rngs::StdRng::from_os_rng();
            let traces = settings.traces.as_ref();
            let once = reconcile_once(
                self.writer,
                &observed,
                &ctx,
                &mut rng,
                overlay,
                passes,
                traces,
            );
            match &pass {
                Some(context) => once.with_context(context.clone()).await,
                None => once.await,
            }
        };
        if let Some(context) = &pass {
            crate::telemetry::operator::end(context, &[], result.is_err());
        }
        health
            .metrics
            .duration
            .observe(started.elapsed().as_secs_f64());
        let outcome = match result {
            Ok((decision, outcome)) => {
                health
                    .metrics
                    .count_writes(&decision.writes, &outcome.failed);
                health
                    .metrics
                    .not_ready
                    .set(decision.not_ready.try_into().unwrap_or(i64::MAX));
                if outcome.failed.is_empty() {
                    // Events are not watched: publishing one leaves the stores as they were.
                    let wrote = decision
                        .writes
                        .iter()
                        .any(|write| !matches!(write, Write::Event(_)));
                    PassOutcome::Applied { wrote }
                } else {
                    PassOutcome::Failed
                }
            }
            Err(error) => {
                tracing::error!(%error, "reconcile failed");
                PassOutcome::Failed
            }
        };
        let label = ResultLabel {
            result: if outcome == PassOutcome::Failed {
                "error"
            } else {
                "ok"
            },
        };
        health.metrics.reconciles.get_or_create(&label).inc();
        outcome
    }
}

use super::platform::{PlatformTiers, TiersInForce};

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_millis(350);

    /// Usage is written once the passes go quiet. The loop once kept a `settled` flag that
    /// nothing ever set, so a running operator never wrote `status.usage` nor budget
    /// conditions; this pins the rule.
    #[test]
    fn usage_may_be_written_after_a_pass_that_wrote_nothing_and_not_before() {
        let mut pacing = Pacing::new(MIN, MAX);
        assert!(!pacing.settled, "not before the first pass");
        assert_eq!(pacing.after(PassOutcome::Applied { wrote: true }), None);
        assert!(!pacing.settled, "the stores have not seen that write yet");
        assert_eq!(pacing.after(PassOutcome::Applied { wrote: false }), None);
        assert!(pacing.settled);
        pacing.after(PassOutcome::Failed);
        assert!(!pacing.settled);
        // Held on an invalid platform configuration: neither retried nor settled anew.
        pacing.after(PassOutcome::Held);
        assert_eq!((pacing.retry_in, pacing.settled), (None, false));
        // Leadership lost and regained: the stores catch up with the other leader first.
        pacing.after(PassOutcome::Applied { wrote: false });
        pacing.lost_leadership();
        assert!(!pacing.settled);
    }

    #[test]
    fn failures_back_off_exponentially_to_the_ceiling_and_a_success_resets() {
        let mut pacing = Pacing::new(MIN, MAX);
        let delays: Vec<_> = (0..4)
            .map(|_| pacing.after(PassOutcome::Failed).unwrap())
            .collect();
        assert_eq!(
            delays,
            [
                MIN,
                MIN * 2,
                Duration::from_millis(350),
                Duration::from_millis(350)
            ]
        );
        assert_eq!(pacing.after(PassOutcome::Applied { wrote: false }), None);
        assert_eq!(pacing.after(PassOutcome::Failed), Some(MIN));
    }
}
