//! Deciding: desired state (render's output) against observed state (the stores) gives the
//! list of writes. Pure and deterministic, so a pass over unchanged stores yields nothing.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::ResourceExt;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::observed::{Observed, Scope, is_access_key_secret, key_of};
use crate::crd::LlmTenantStatus;
use crate::render::manifests::{
    Documents, access_key_secret, config_map, config_shard_maps, documents, key_ring_secret,
    key_store_secret, key_store_shard_secrets,
};
use crate::render::report::{READY, ReportEntry};
use crate::render::{ObjectKey, RenderError, RenderOutput, ResourceKind};

/// Condition types the usage poller owns; render never produces them, so a status written
/// from render keeps the observed ones.
pub const USAGE_CONDITIONS: &[&str] = &["BudgetExceeded"];

/// One write to the cluster.
#[derive(Clone, PartialEq)]
pub enum Write {
    /// Server-side apply of the gateway ConfigMap.
    ApplyConfigMap(ConfigMap),
    /// Server-side apply of a Secret (key ring, key store or an access key).
    ApplySecret(Secret),
    /// Delete an access key Secret render no longer produces.
    DeleteSecret(ObjectKey),
    /// Server-side apply of a custom resource's status subresource.
    Status {
        /// Kind of the resource.
        kind: ResourceKind,
        /// Its identity.
        key: ObjectKey,
        /// The whole status.
        status: Value,
    },
    /// An Event on a custom resource.
    Event(EventWrite),
}

impl std::fmt::Debug for Write {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::ApplyConfigMap(cm) => write!(f, "ApplyConfigMap({})", key_of(cm)),
            // Never the data: it is key material.
            Self::ApplySecret(secret) => write!(f, "ApplySecret({})", key_of(secret)),
            Self::DeleteSecret(key) => write!(f, "DeleteSecret({key})"),
            Self::Status { kind, key, .. } => write!(f, "Status({} {key})", kind.as_str()),
            Self::Event(event) => write!(
                f,
                "Event({} {} {})",
                event.kind.as_str(),
                event.key,
                event.reason
            ),
        }
    }
}

impl Write {
    /// The namespace the write lands in.
    pub fn namespace(&self) -> &str {
        match self {
            Self::ApplyConfigMap(cm) => cm.metadata.namespace.as_deref().unwrap_or_default(),
            Self::ApplySecret(secret) => secret.metadata.namespace.as_deref().unwrap_or_default(),
            Self::DeleteSecret(key) | Self::Status { key, .. } => &key.namespace,
            Self::Event(event) => &event.key.namespace,
        }
    }
}

/// An Event to publish, regarding one custom resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventWrite {
    /// Kind of the resource.
    pub kind: ResourceKind,
    /// Its identity.
    pub key: ObjectKey,
    /// Its uid, so the Event points at this incarnation.
    pub uid: Option<String>,
    /// Warning (something to fix) or Normal.
    pub warning: bool,
    /// The condition's reason.
    pub reason: String,
    /// The condition type and message (render's messages never hold secret values).
    pub note: String,
}

/// Compares render's output with the stores and lists the writes that make the cluster match,
/// in a safe order: key material before the config that refers to it, then deletions, then
/// statuses, then Events.
pub fn plan(output: &RenderOutput, observed: &Observed) -> Result<Vec<Write>, RenderError> {
    Ok(plan_of(output, &documents(output)?, observed, None))
}

/// [`plan`] of documents already serialized, looking only at the access keys and statuses of
/// the platform namespace and `only`'s namespaces (all when `None`): an incremental pass knows
/// the others are as they were. The config and key material are compared whole (a comparison
/// of bytes), so a shard someone else changed or deleted is put back by the next pass.
pub fn plan_of(
    output: &RenderOutput,
    docs: &Documents,
    observed: &Observed,
    only: Option<&BTreeSet<String>>,
) -> Vec<Write> {
    let scope = Scope {
        platform: &output.config.platform_namespace,
        only,
    };
    let in_scope = |namespace: &str| scope.includes(namespace);
    let mut writes = Vec::new();

    let mut secrets = vec![key_ring_secret(output, docs)];
    secrets.extend(key_store_shard_secrets(output, docs));
    secrets.push(key_store_secret(output, docs));
    secrets.extend(
        output
            .access_keys
            .iter()
            .filter(|access| in_scope(&access.key.namespace))
            .map(access_key_secret),
    );
    for secret in &secrets {
        if !secret_matches(
            secret,
            observed.secrets.get(&key_of(secret)).map(AsRef::as_ref),
        ) {
            writes.push(Write::ApplySecret(secret.clone()));
        }
    }

    // The shards before the index that names them: only the shards that changed are written
    // (one tenant's change rewrites its shard and the index).
    let mut maps = config_shard_maps(output, docs);
    maps.push(config_map(output, docs));
    for cm in maps {
        if !config_map_matches(
            &cm,
            observed.config_maps.get(&key_of(&cm)).map(AsRef::as_ref),
        ) {
            writes.push(Write::ApplyConfigMap(cm));
        }
    }

    for (key, secret) in &observed.secrets {
        if !in_scope(&key.namespace) {
            continue;
        }
        // By halves (render sorts them): a scan per Secret was quadratic in tenants.
        let wanted = output
            .access_keys
            .binary_search_by(|a| a.key.cmp(key))
            .is_ok();
        if !wanted && is_access_key_secret(secret) {
            writes.push(Write::DeleteSecret(key.clone()));
        }
    }

    let mut events = Vec::new();
    statuses(
        ResourceKind::LlmProvider,
        &output.report.providers,
        observed,
        &in_scope,
        |_, s| s,
        &mut writes,
        &mut events,
    );
    statuses(
        ResourceKind::LlmTenant,
        &output.report.tenants,
        observed,
        &in_scope,
        keep_usage,
        &mut writes,
        &mut events,
    );
    statuses(
        ResourceKind::RoutingPolicy,
        &output.report.policies,
        observed,
        &in_scope,
        |_, s| s,
        &mut writes,
        &mut events,
    );
    writes.extend(events.into_iter().map(Write::Event));
    writes
}

/// Keeps what the usage poller wrote: `usage` and its conditions.
fn keep_usage(observed: Option<&LlmTenantStatus>, mut status: LlmTenantStatus) -> LlmTenantStatus {
    if let Some(observed) = observed {
        status.usage = observed.usage.clone();
        for condition in &observed.conditions {
            let owned = USAGE_CONDITIONS.contains(&condition.type_.as_str());
            if owned && !status.conditions.iter().any(|c| c.type_ == condition.type_) {
                status.conditions.push(condition.clone());
            }
        }
    }
    status
}

fn statuses<S>(
    kind: ResourceKind,
    entries: &[ReportEntry<S>],
    observed: &Observed,
    in_scope: &dyn Fn(&str) -> bool,
    merge: impl Fn(Option<&S>, S) -> S,
    writes: &mut Vec<Write>,
    events: &mut Vec<EventWrite>,
) where
    S: Clone + PartialEq + Serialize + DeserializeOwned + HasConditions,
{
    for entry in entries.iter().filter(|entry| in_scope(&entry.namespace)) {
        let key = ObjectKey::new(&entry.namespace, &entry.name);
        let Some(object) = observed.resources(kind).get(&key) else {
            continue;
        };
        let current: Option<S> = object
            .data
            .get("status")
            .and_then(|s| serde_json::from_value(s.clone()).ok());
        let desired = merge(current.as_ref(), entry.status.clone());
        if current.as_ref() == Some(&desired) {
            continue;
        }
        let Ok(status) = serde_json::to_value(&desired) else {
            continue;
        };
        writes.push(Write::Status {
            kind,
            key: key.clone(),
            status,
        });
        events.extend(
            transitions(
                current.as_ref().map(HasConditions::conditions),
                desired.conditions(),
            )
            .into_iter()
            .map(|condition| EventWrite {
                kind,
                key: key.clone(),
                uid: object.uid(),
                warning: is_warning(condition),
                reason: condition.reason.clone(),
                note: format!("{}: {}", condition.type_, condition.message),
            }),
        );
    }
}

/// Conditions that changed status or reason. On a resource's first status only Ready is
/// announced, so a new resource gets one Event, not one per condition.
fn transitions<'a>(previous: Option<&[Condition]>, next: &'a [Condition]) -> Vec<&'a Condition> {
    let previous: BTreeMap<&str, &Condition> = previous
        .unwrap_or_default()
        .iter()
        .map(|c| (c.type_.as_str(), c))
        .collect();
    let first = previous.is_empty();
    next.iter()
        .filter(|c| match previous.get(c.type_.as_str()) {
            Some(old) => old.status != c.status || old.reason != c.reason,
            None => !first || c.type_ == READY,
        })
        .collect()
}

/// A Warning when the condition tells someone to act.
fn is_warning(condition: &Condition) -> bool {
    let bad_when_true = USAGE_CONDITIONS.contains(&condition.type_.as_str());
    (condition.status == "True") == bad_when_true
}

/// Status types that carry conditions.
pub trait HasConditions {
    /// The conditions.
    fn conditions(&self) -> &[Condition];
}

impl HasConditions for crate::crd::LlmProviderStatus {
    fn conditions(&self) -> &[Condition] {
        &self.conditions
    }
}

impl HasConditions for LlmTenantStatus {
    fn conditions(&self) -> &[Condition] {
        &self.conditions
    }
}

impl HasConditions for crate::crd::RoutingPolicyStatus {
    fn conditions(&self) -> &[Condition] {
        &self.conditions
    }
}

/// Whether every label or annotation we set is there with our value (others may add more).
fn includes(
    desired: &Option<BTreeMap<String, String>>,
    observed: &Option<BTreeMap<String, String>>,
) -> bool {
    let empty = BTreeMap::new();
    let observed = observed.as_ref().unwrap_or(&empty);
    desired
        .iter()
        .flatten()
        .all(|(k, v)| observed.get(k) == Some(v))
}

fn secret_matches(desired: &Secret, observed: Option<&Secret>) -> bool {
    let Some(observed) = observed else {
        return false;
    };
    let owners_match = desired.metadata.owner_references.is_none()
        || desired.metadata.owner_references == observed.metadata.owner_references;
    observed.data == desired.data
        && includes(&desired.metadata.labels, &observed.metadata.labels)
        && includes(
            &desired.metadata.annotations,
            &observed.metadata.annotations,
        )
        && owners_match
}

fn config_map_matches(desired: &ConfigMap, observed: Option<&ConfigMap>) -> bool {
    let Some(observed) = observed else {
        return false;
    };
    observed.data == desired.data
        && observed.binary_data == desired.binary_data
        && includes(&desired.metadata.labels, &observed.metadata.labels)
        && includes(
            &desired.metadata.annotations,
            &observed.metadata.annotations,
        )
}
