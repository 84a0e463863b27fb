//! The incremental pass: a change to one tenant among 100,000 re-renders its namespace, not the
//! fleet. The operator keeps what its last pass rendered ([`Memo`]); the next pass finds which
//! namespaces' objects changed since (a digest of each namespace's object versions), renders the
//! platform and those namespaces alone, and splices that into the output it kept
//! ([`crate::render::splice`]); only the shards whose content changed are serialized again, and
//! only those namespaces' access keys and statuses are compared with the cluster.
//!
//! A full pass stays for what touches everyone: the first pass, a change in the platform
//! namespace or its configuration, other tiers or shard count, a change to more than a quarter
//! of the namespaces, an access key claimed in two namespaces, the periodic resync, and any pass
//! after one whose writes failed (the kept output would then be ahead of the cluster).

use std::collections::{BTreeSet, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::{Duration, Instant};

use kube::Resource;
use kube::api::DynamicObject;
use rand::CryptoRng;

use super::observed::{Observed, Partial};
use super::plan::plan_of;
use super::reconcile::{Decision, ReconcileError};
use crate::config::shards::{Encoded, bucket};
use crate::render::manifests::documents_reusing;
use crate::render::platform::PLATFORM_CONFIG_MAP;
use crate::render::splice::splice;
use crate::render::{RenderContext, RenderOutput, TierTable, render};

/// When a change reaches more than this share of the namespaces (1/N), a full pass is cheaper
/// than gathering the pieces.
const FULL_PASS_SHARE: usize = 4;

/// What the inputs looked like, by namespace: a digest of every object's kind, name and
/// version (`resourceVersion`; the content where there is none, as in hand-built tests).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fingerprints {
    /// The platform namespace's inputs and the platform configuration. The operator's own
    /// outputs there (the config ConfigMaps, the key store Secrets) are left out: the kept
    /// output is what they hold, and the plan compares them whole on every pass.
    platform: u64,
    /// Every other namespace's objects (its Namespace, Secrets and custom resources), sorted
    /// by namespace.
    namespaces: Vec<(String, u64)>,
}

impl Fingerprints {
    /// The digests of `observed`.
    pub fn of(observed: &Observed, platform_namespace: &str) -> Self {
        // Each store is walked in key order (namespace first), so a namespace's objects are one
        // run, summed without a lookup each; the stores are walked on every core, then their
        // runs merged. A sum, so the digest does not depend on the order objects come in.
        use crate::render::ResourceKind;
        #[derive(Clone, Copy)]
        enum Store {
            Namespaces,
            Secrets,
            ConfigMaps,
            Resources(ResourceKind),
        }
        const STORES: [Store; 6] = [
            Store::Namespaces,
            Store::Secrets,
            Store::ConfigMaps,
            Store::Resources(ResourceKind::LlmProvider),
            Store::Resources(ResourceKind::LlmTenant),
            Store::Resources(ResourceKind::RoutingPolicy),
        ];
        let per_store = crate::parallel::map(&STORES, "fingerprints", |&store| {
            let mut runs = Runs::default();
            match store {
                Store::Namespaces => {
                    for (key, object) in &observed.namespaces {
                        runs.add(&key.name, "Namespace", "", object.as_ref());
                    }
                }
                Store::Secrets => {
                    for (key, object) in &observed.secrets {
                        let ours = key.namespace == platform_namespace
                            && crate::config::shards::is_key_store_secret(&key.name);
                        if !ours {
                            runs.add(&key.namespace, "Secret", &key.name, object.as_ref());
                        }
                    }
                }
                Store::ConfigMaps => {
                    for (key, object) in &observed.config_maps {
                        if key.namespace == platform_namespace && key.name == PLATFORM_CONFIG_MAP {
                            runs.add(&key.namespace, "ConfigMap", &key.name, object.as_ref());
                        }
                    }
                }
                Store::Resources(kind) => {
                    let kind_name = kind.as_str();
                    for (key, object) in observed.resources(kind) {
                        if key.namespace == platform_namespace {
                            // Without its status: a platform resource's status is this
                            // operator's output (a rule's "applies to N namespaces" changes
                            // with every new namespace), and a change to it must not make the
                            // next pass a full one. The platform is rendered on every pass.
                            runs.push(
                                &key.namespace,
                                (kind_name, &key.name, without_status(object)),
                            );
                        } else {
                            runs.add(&key.namespace, kind_name, &key.name, object.as_ref());
                        }
                    }
                }
            }
            runs.0
        });
        let mut runs: Vec<(&str, u64)> = per_store.into_iter().flatten().collect();
        // Six sorted runs of runs: the stable sort finds and merges them.
        runs.sort_by(|a, b| a.0.cmp(b.0));
        let mut platform = 0u64;
        let mut namespaces: Vec<(String, u64)> = Vec::with_capacity(observed.namespaces.len());
        for (namespace, digest) in runs {
            if namespace == platform_namespace {
                platform = platform.wrapping_add(digest);
            } else {
                match namespaces.last_mut() {
                    Some((last, sum)) if last == namespace => *sum = sum.wrapping_add(digest),
                    _ => namespaces.push((namespace.to_owned(), digest)),
                }
            }
        }
        Self {
            platform,
            namespaces,
        }
    }

    /// Namespaces whose objects differ between `self` and `other` (added and removed ones too).
    fn changed(&self, other: &Self) -> BTreeSet<String> {
        // Both sorted by namespace: one walk side by side.
        let (mut mine, mut theirs) = (
            self.namespaces.iter().peekable(),
            other.namespaces.iter().peekable(),
        );
        let mut changed = BTreeSet::new();
        loop {
            let order = match (mine.peek(), theirs.peek()) {
                (None, None) => break,
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (Some(a), Some(b)) => a.0.cmp(&b.0),
            };
            match order {
                std::cmp::Ordering::Less => changed.extend(mine.next().map(|a| a.0.clone())),
                std::cmp::Ordering::Greater => changed.extend(theirs.next().map(|b| b.0.clone())),
                std::cmp::Ordering::Equal => {
                    if let (Some(a), Some(b)) = (mine.next(), theirs.next())
                        && a.1 != b.1
                    {
                        changed.insert(a.0.clone());
                    }
                }
            }
        }
        changed
    }
}

/// One store's objects summed by namespace, in the store's (namespace-first) order.
#[derive(Default)]
struct Runs<'a>(Vec<(&'a str, u64)>);

impl<'a> Runs<'a> {
    /// Adds an object's digest (kind, name and version: its `resourceVersion`, which the API
    /// server changes on every write and never reuses; its content when it has none, as in
    /// hand-built tests) to its namespace's run.
    fn add<K: Resource + serde::Serialize>(
        &mut self,
        namespace: &'a str,
        kind: &str,
        name: &str,
        object: &K,
    ) {
        let mut hasher = DefaultHasher::new();
        (kind, name).hash(&mut hasher);
        match &object.meta().resource_version {
            Some(version) => version.hash(&mut hasher),
            None => serde_json::to_vec(object)
                .unwrap_or_default()
                .hash(&mut hasher),
        }
        self.sum(namespace, hasher.finish());
    }

    /// Adds the digest of `parts` to `namespace`'s run.
    fn push(&mut self, namespace: &'a str, parts: impl Hash) {
        let mut hasher = DefaultHasher::new();
        parts.hash(&mut hasher);
        self.sum(namespace, hasher.finish());
    }

    fn sum(&mut self, namespace: &'a str, digest: u64) {
        match self.0.last_mut() {
            Some((last, sum)) if *last == namespace => *sum = sum.wrapping_add(digest),
            _ => self.0.push((namespace, digest)),
        }
    }
}

/// A custom resource as render reads it, without its status (serialized: the platform
/// namespace holds a few).
fn without_status(object: &DynamicObject) -> Vec<u8> {
    let mut data = object.data.clone();
    if let serde_json::Value::Object(fields) = &mut data {
        fields.remove("status");
    }
    let meta = &object.metadata;
    serde_json::to_vec(&(
        &meta.uid,
        meta.generation,
        &meta.labels,
        &meta.annotations,
        data,
    ))
    .unwrap_or_default()
}

/// What the render context decided that is not in the cluster's objects: a change to any of it
/// changes every namespace's output.
#[derive(Clone, Debug, PartialEq)]
struct Basis {
    platform_namespace: String,
    tiers: TierTable,
    shards: u32,
}

impl Basis {
    fn of(ctx: &RenderContext) -> Self {
        Self {
            platform_namespace: ctx.platform_namespace.clone(),
            tiers: ctx.tiers.clone(),
            shards: ctx.shards,
        }
    }
}

/// What the last pass rendered, kept for the next one.
pub struct Memo {
    basis: Basis,
    fingerprints: Fingerprints,
    output: RenderOutput,
    /// The shards as last serialized.
    written: Option<Encoded>,
    /// The shard buckets the last splice changed (to serialize again).
    changed_buckets: BTreeSet<usize>,
    /// Every claimed access key's hash, with the namespace of the tenant holding it.
    key_holders: HashMap<String, String>,
    /// When the last full pass ran.
    full_at: Instant,
}

impl std::fmt::Debug for Memo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Memo")
            .field("namespaces", &self.fingerprints.namespaces.len())
            .field("full_at", &self.full_at)
            .finish_non_exhaustive()
    }
}

/// Which kind of pass ran (for logs and metrics).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PassKind {
    /// Everything rendered.
    Full,
    /// The platform and this many changed namespaces rendered.
    Incremental(usize),
}

/// Decides like [`super::reconcile::decide`], from `memo` when it can: see the module's
/// documentation. `memo` holds this pass's output afterwards; `resync` is how long a memo
/// serves before a full pass.
pub fn decide_incrementally(
    observed: &Observed,
    ctx: &RenderContext,
    rng: &mut dyn CryptoRng,
    memo: &mut Option<Memo>,
    resync: Duration,
) -> Result<(Decision, PassKind), ReconcileError> {
    let fingerprints = Fingerprints::of(observed, &ctx.platform_namespace);
    let basis = Basis::of(ctx);
    if let Some(kept) = memo.as_mut()
        && let Some(mut namespaces) = kept.scope(&basis, &fingerprints, resync)
    {
        // An access key claimed by a namespace left out: render again with the holder's
        // namespace too (render gives a key to its first claimant in render order, which it can
        // only decide seeing both). The holders of a key are one namespace each, so a second
        // try settles it; a full pass if it did not.
        for _ in 0..2 {
            let with_tenants = kept.namespaces_with_tenants();
            let partial = Partial {
                namespaces: &namespaces,
                with_tenants: &with_tenants,
            };
            let input = observed.render_input_of(&ctx.platform_namespace, Some(partial))?;
            let part = render(input, ctx, rng)?;
            let holders = kept.holders_left_out(&part, &namespaces);
            if holders.is_empty() {
                kept.splice(part, &namespaces, fingerprints);
                let decision = kept.decide(observed, Some(&namespaces))?;
                return Ok((decision, PassKind::Incremental(namespaces.len())));
            }
            namespaces.extend(holders);
        }
        tracing::info!("an access key is claimed in several namespaces; rendering everything");
    }
    *memo = None;
    let input = observed.render_input(&ctx.platform_namespace)?;
    let output = render(input, ctx, rng)?;
    let kept = memo.insert(Memo {
        basis,
        fingerprints,
        key_holders: key_holders(&output),
        output,
        written: None,
        changed_buckets: BTreeSet::new(),
        full_at: Instant::now(),
    });
    Ok((kept.decide(observed, None)?, PassKind::Full))
}

impl Memo {
    /// Makes the next pass decide `namespaces` again, as if they had changed. False when one
    /// of them is the platform namespace: only a full pass will do then.
    pub fn forget_namespaces(&mut self, namespaces: &BTreeSet<String>) -> bool {
        if namespaces.contains(&self.basis.platform_namespace) {
            return false;
        }
        self.fingerprints
            .namespaces
            .retain(|(namespace, _)| !namespaces.contains(namespace));
        true
    }

    /// The namespaces to render, or `None` for a full pass.
    fn scope(
        &self,
        basis: &Basis,
        fingerprints: &Fingerprints,
        resync: Duration,
    ) -> Option<BTreeSet<String>> {
        if self.full_at.elapsed() >= resync
            || self.basis != *basis
            || self.fingerprints.platform != fingerprints.platform
        {
            return None;
        }
        let mut namespaces = self.fingerprints.changed(fingerprints);
        if namespaces.len() > fingerprints.namespaces.len() / FULL_PASS_SHARE + 1 {
            return None;
        }
        namespaces.extend(self.output.access_key_conflicts.iter().cloned());
        Some(namespaces)
    }

    /// The namespaces left out of `namespaces` whose tenants hold an access key `part` claims.
    fn holders_left_out(
        &self,
        part: &RenderOutput,
        namespaces: &BTreeSet<String>,
    ) -> BTreeSet<String> {
        part.config
            .tenants
            .iter()
            .flat_map(|tenant| &tenant.access_keys)
            .filter_map(|key| self.key_holders.get(&key.sha256))
            .filter(|holder| !namespaces.contains(*holder))
            .cloned()
            .collect()
    }

    /// The namespaces the kept output has tenants in, in order.
    fn namespaces_with_tenants(&self) -> Vec<&str> {
        let mut namespaces: Vec<&str> = self
            .output
            .config
            .tenants
            .iter()
            .map(|tenant| tenant.namespace.as_str())
            .collect();
        namespaces.dedup();
        namespaces
    }

    fn splice(&mut self, part: RenderOutput, namespaces: &BTreeSet<String>, prints: Fingerprints) {
        self.key_holders
            .retain(|_, holder| !namespaces.contains(holder));
        self.key_holders.extend(key_holders(&part));
        // The buckets of what the namespaces held before and hold now.
        let mut changed = buckets_of(&self.output, namespaces);
        splice(&mut self.output, part, namespaces);
        changed.extend(buckets_of(&self.output, namespaces));
        self.changed_buckets = changed;
        self.fingerprints = prints;
    }

    /// The writes that make the cluster match the kept output.
    fn decide(
        &mut self,
        observed: &Observed,
        only: Option<&BTreeSet<String>>,
    ) -> Result<Decision, ReconcileError> {
        let reuse = only
            .and(self.written.as_ref())
            .map(|w| (w, &self.changed_buckets));
        let (docs, written) = documents_reusing(&self.output, reuse)?;
        self.written = written;
        Ok(Decision {
            writes: plan_of(&self.output, &docs, observed, only),
            not_ready: self.output.report.not_ready().len(),
            key_ring_generated: self.output.key_ring_generated,
        })
    }
}

/// The shard buckets of what `namespaces` contribute to `output`: their tenants, providers,
/// rules and stored keys, and the namespaces themselves (a shard lists the namespaces of its
/// bucket that platform rules select). The platform's own part is in the index, written on
/// every pass.
fn buckets_of(output: &RenderOutput, namespaces: &BTreeSet<String>) -> BTreeSet<usize> {
    let count = output.shards;
    let config = &output.config;
    let mut ids: Vec<&str> = namespaces.iter().map(String::as_str).collect();
    ids.extend(
        config
            .tenants
            .iter()
            .filter(|t| namespaces.contains(&t.namespace))
            .map(|t| t.id.as_str()),
    );
    ids.extend(
        config
            .providers
            .iter()
            .filter(|p| namespaces.contains(&p.namespace))
            .map(|p| p.id.as_str()),
    );
    ids.extend(
        config
            .routing
            .iter()
            .filter(|r| namespaces.contains(r.policy_namespace()))
            .map(|r| r.id.as_str()),
    );
    ids.extend(
        output
            .key_store
            .rows
            .iter()
            .filter(|row| namespaces.contains(&row.tenant_id))
            .map(|row| row.id.as_str()),
    );
    ids.into_iter().map(|id| bucket(id, count)).collect()
}

/// Each claimed access key's hash, with its tenant's namespace.
fn key_holders(output: &RenderOutput) -> HashMap<String, String> {
    output
        .config
        .tenants
        .iter()
        .flat_map(|tenant| {
            tenant
                .access_keys
                .iter()
                .map(|key| (key.sha256.clone(), tenant.namespace.clone()))
        })
        .collect()
}
