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
use super::reconcile::reconcile_once;
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
    let mut backoff = settings.min_backoff;
    let mut retry_in: Option<Duration> = None;
    let mut usage_timer = settings.usage.as_ref().map(|u| {
        let mut timer = tokio::time::interval(u.interval);
        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        timer
    });
    // Usage is written only when the last render pass wrote nothing, so it never builds on a
    // status the stores have not caught up with.
    let mut settled = false;
    loop {
        // Wait for a change, a retry, a leadership change, a usage poll or the resync.
        let wait = retry_in.unwrap_or(settings.resync);
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
            retry_in = None;
            continue;
        }
        if usage_due {
            if let Some(usage) = settings.usage.as_ref().filter(|_| settled) {
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

        let started = Instant::now();
        let mut observed = stores.snapshot();
        overlay.apply_to(&mut observed, started);
        let mut ctx = RenderContext::new(
            &settings.platform_namespace,
            k8s_openapi::jiff::Timestamp::now(),
        );
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
                && let Err(error) = writer
                    .warn_platform_config(config_map, &problem.to_string())
                    .await
            {
                tracing::warn!(%error, "could not publish the Event");
            }
        }
        // Started on an invalid configuration with no record of the tiers in force (a first
        // install): no last good to keep, so nothing is rendered
        // (the gateway keeps its config) until it is fixed; its change wakes the loop.
        let Some(tiers) = tiers else {
            retry_in = None;
            continue;
        };
        ctx.tiers = tiers;
        let result = {
            let mut rng = rand::rngs::StdRng::from_os_rng();
            reconcile_once(&writer, &observed, &ctx, &mut rng, &mut overlay).await
        };
        health
            .metrics
            .duration
            .observe(started.elapsed().as_secs_f64());
        let ok = match result {
            Ok((decision, outcome)) => {
                health
                    .metrics
                    .count_writes(&decision.writes, &outcome.failed);
                health
                    .metrics
                    .not_ready
                    .set(decision.not_ready.try_into().unwrap_or(i64::MAX));
                outcome.failed.is_empty()
            }
            Err(error) => {
                settled = false;
                tracing::error!(%error, "reconcile failed");
                false
            }
        };
        let label = ResultLabel {
            result: if ok { "ok" } else { "error" },
        };
        health.metrics.reconciles.get_or_create(&label).inc();
        if ok {
            backoff = settings.min_backoff;
            retry_in = None;
        } else {
            tracing::info!(retry_in = ?backoff, "will retry");
            retry_in = Some(backoff);
            backoff = (backoff * 2).min(settings.max_backoff);
        }
    }
    lease_task.abort();
    tracing::info!("operator stopped");
    Ok(())
}

use rand::SeedableRng as _;

use super::platform::{PlatformTiers, TiersInForce};
