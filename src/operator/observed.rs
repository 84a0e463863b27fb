//! What the operator sees: a snapshot of its reflector stores, and the pure step from that
//! snapshot to render's input. The snapshot is plain data, so tests build it by hand.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::api::DynamicObject;
use kube::{Resource, ResourceExt};
use serde_json::Value;

use crate::config::{CONFIG_MAP_NAME, MASTER_KEY_SECRET_NAME};
use crate::crd::{API_VERSION, LlmProviderStatus, LlmTenantStatus, RoutingPolicyStatus};
use crate::render::manifests::{MANAGED_BY, MANAGED_BY_LABEL, TIERS_ANNOTATION};
use crate::render::platform::{PLATFORM_CONFIG_MAP, PLATFORM_FILE};
use crate::render::report::ReportEntry;
use crate::render::{
    InputError, InputLoader, NamespaceMeta, ObjectKey, RenderInput, RenderReport, ResourceKind,
    TierTable,
};

/// Label value marking an access key Secret (`app.kubernetes.io/component`).
pub const ACCESS_KEY_COMPONENT: &str = "access-key";
/// The component label.
pub const COMPONENT_LABEL: &str = "app.kubernetes.io/component";

/// Why the snapshot could not become render input.
#[derive(Debug, thiserror::Error)]
pub enum ObserveError {
    /// Render's loader refused the input as a whole (corrupt key ring or key store).
    #[error(transparent)]
    Input(#[from] InputError),
    /// An object from the API could not be serialized for the loader.
    #[error("could not serialize {kind} {key} for render: {message}")]
    Serialize {
        /// Kind of the object.
        kind: &'static str,
        /// Its identity.
        key: ObjectKey,
        /// The serializer's message (never object content).
        message: String,
    },
}

/// Every object the operator's decisions depend on, keyed namespace/name (namespaces by name,
/// with an empty namespace).
#[derive(Clone, Debug, Default)]
pub struct Observed {
    /// Namespaces (key: `""/name`).
    pub namespaces: BTreeMap<ObjectKey, Arc<Namespace>>,
    /// Secrets in every namespace.
    pub secrets: BTreeMap<ObjectKey, Arc<Secret>>,
    /// ConfigMaps in the platform namespace.
    pub config_maps: BTreeMap<ObjectKey, Arc<ConfigMap>>,
    /// LlmProviders, untyped so one malformed object is reported on itself instead of
    /// breaking the watch.
    pub providers: BTreeMap<ObjectKey, Arc<DynamicObject>>,
    /// LlmTenants, untyped.
    pub tenants: BTreeMap<ObjectKey, Arc<DynamicObject>>,
    /// RoutingPolicies, untyped.
    pub policies: BTreeMap<ObjectKey, Arc<DynamicObject>>,
}

/// The identity of any namespaced object.
pub fn key_of<K: Resource>(object: &K) -> ObjectKey {
    ObjectKey::new(object.namespace().unwrap_or_default(), object.name_any())
}

/// Collects objects into a map keyed by identity.
pub fn index<K: Resource>(
    objects: impl IntoIterator<Item = Arc<K>>,
) -> BTreeMap<ObjectKey, Arc<K>> {
    objects
        .into_iter()
        .map(|o| (key_of(o.as_ref()), o))
        .collect()
}

impl Observed {
    /// The custom resources of one kind.
    pub fn resources(&self, kind: ResourceKind) -> &BTreeMap<ObjectKey, Arc<DynamicObject>> {
        match kind {
            ResourceKind::LlmProvider => &self.providers,
            ResourceKind::LlmTenant => &self.tenants,
            ResourceKind::RoutingPolicy => &self.policies,
        }
    }

    /// The Secrets LlmProviders name (`spec.credentialsRef.name`, in their own namespace), as
    /// (namespace, name): gathered once per pass, not searched per Secret (100,000 Secrets
    /// against 10,000 providers was a billion comparisons).
    fn credential_refs(&self) -> BTreeSet<(&str, &str)> {
        self.providers
            .iter()
            .filter_map(|(key, object)| {
                let name = object.data.pointer("/spec/credentialsRef/name")?.as_str()?;
                Some((key.namespace.as_str(), name))
            })
            .collect()
    }

    /// Whether render needs this Secret: the platform's key material, an access key Secret of
    /// an earlier pass, or a Secret some LlmProvider names in its own namespace
    /// (`credential_refs`). Other Secrets (service account tokens, Helm releases, ...) never
    /// reach render.
    fn is_render_input(
        key: &ObjectKey,
        secret: &Secret,
        platform_namespace: &str,
        credential_refs: &BTreeSet<(&str, &str)>,
    ) -> bool {
        if key.namespace == platform_namespace
            && (key.name == MASTER_KEY_SECRET_NAME
                || crate::config::shards::is_key_store_secret(&key.name))
        {
            return true;
        }
        is_access_key_secret(secret)
            || credential_refs.contains(&(key.namespace.as_str(), key.name.as_str()))
    }

    /// Render's input: every object through the same loader `dgidgi render` uses (so the API
    /// server's checks are repeated and one bad object is reported on itself), plus the
    /// current statuses as the previous report (so unchanged conditions keep their times).
    pub fn render_input(&self, platform_namespace: &str) -> Result<RenderInput, ObserveError> {
        self.render_input_of(platform_namespace, None)
    }

    /// [`Self::render_input`] of the platform namespace's objects and those of `partial`'s
    /// namespaces (all when `None`), with every namespace's labels and annotations: what
    /// [`crate::render::splice`] needs to render a few namespaces for a whole output.
    pub fn render_input_of(
        &self,
        platform_namespace: &str,
        partial: Option<Partial<'_>>,
    ) -> Result<RenderInput, ObserveError> {
        let only = partial.as_ref().map(|p| p.namespaces);
        let scope = Scope {
            platform: platform_namespace,
            only,
        };
        let mut loader = InputLoader::new(platform_namespace)?;
        // Every object as a document, in one batch the loader checks on every core (no YAML
        // text in between: writing and reading it back was most of a large fleet's pass).
        let mut documents = Vec::new();
        // Out of scope, a namespace is only its labels and annotations (the platform rules'
        // selectors read every namespace's), taken as they are rather than checked again.
        let mut labels_only: BTreeMap<String, NamespaceMeta> = BTreeMap::new();
        if only.is_some() {
            // Collected in key order: built in one go, not by 100,000 inserts.
            labels_only = self
                .namespaces
                .iter()
                .filter(|(key, _)| !scope.includes(&key.name))
                .map(|(key, namespace)| {
                    let meta = NamespaceMeta {
                        labels: namespace.labels().clone(),
                        annotations: namespace.annotations().clone(),
                    };
                    (key.name.clone(), meta)
                })
                .collect();
        }
        for (key, namespace) in &self.namespaces {
            if !scope.includes(&key.name) {
                continue;
            }
            let slim = Namespace {
                metadata: kube::api::ObjectMeta {
                    name: namespace.metadata.name.clone(),
                    labels: namespace.metadata.labels.clone(),
                    annotations: namespace.metadata.annotations.clone(),
                    ..Default::default()
                },
                ..Default::default()
            };
            documents.push(document("Namespace", key, &slim)?);
        }
        // Key material first: the loader wants the ring before anything that may use it.
        let credential_refs = self.credential_refs();
        for (key, secret) in scope.of(&self.secrets) {
            if Self::is_render_input(key, secret, platform_namespace, &credential_refs) {
                let slim = Secret {
                    metadata: kube::api::ObjectMeta {
                        name: secret.metadata.name.clone(),
                        namespace: secret.metadata.namespace.clone(),
                        ..Default::default()
                    },
                    data: secret.data.clone(),
                    string_data: secret.string_data.clone(),
                    type_: secret.type_.clone(),
                    ..Default::default()
                };
                documents.push(document("Secret", key, &slim)?);
            }
        }
        for kind in [
            ResourceKind::LlmProvider,
            ResourceKind::LlmTenant,
            ResourceKind::RoutingPolicy,
        ] {
            for (key, object) in scope.of(self.resources(kind)) {
                documents.push(document(
                    kind.as_str(),
                    key,
                    &resource_document(kind, object),
                )?);
            }
        }
        loader.add_values("the cluster", documents)?;
        let mut input = loader.finish();
        if let Some(partial) = &partial {
            // A namespace left out still counts among the tenant namespaces when it holds
            // valid tenants without a Namespace object, as a full render would count it.
            for &namespace in partial.with_tenants {
                if !labels_only.contains_key(namespace) && !scope.includes(namespace) {
                    labels_only.insert(namespace.to_owned(), NamespaceMeta::default());
                }
            }
            // The few namespaces in scope join the many left out (not the other way round).
            for (name, meta) in std::mem::take(&mut input.namespaces) {
                labels_only.insert(name, meta);
            }
            input.namespaces = labels_only;
        }
        input.platform_config = self.platform_config(platform_namespace).map(str::to_owned);
        input.previous.report = Some(self.current_report_of(&scope));
        Ok(input)
    }

    /// ConfigMap `dgidgi-platform` of the platform namespace, if there is one.
    pub fn platform_config_map(&self, platform_namespace: &str) -> Option<&ConfigMap> {
        let key = ObjectKey::new(platform_namespace, PLATFORM_CONFIG_MAP);
        self.config_maps.get(&key).map(AsRef::as_ref)
    }

    /// The tiers the gateway's current config was rendered with, as recorded on its ConfigMap
    /// (absent, or unreadable: `None`).
    pub fn recorded_tiers(&self, platform_namespace: &str) -> Option<TierTable> {
        let key = ObjectKey::new(platform_namespace, CONFIG_MAP_NAME);
        let config_map = self.config_maps.get(&key)?;
        let recorded = config_map
            .metadata
            .annotations
            .as_ref()?
            .get(TIERS_ANNOTATION)?;
        serde_json::from_str(recorded).ok()
    }

    /// The platform configuration's text (`platform.yaml` of that ConfigMap; empty when the
    /// ConfigMap lacks it), if there is the ConfigMap.
    pub fn platform_config(&self, platform_namespace: &str) -> Option<&str> {
        // Present without the key: empty text, which the configuration refuses by name.
        let config_map = self.platform_config_map(platform_namespace)?;
        let text = config_map.data.as_ref().and_then(|d| d.get(PLATFORM_FILE));
        Some(text.map_or("", String::as_str))
    }

    /// The statuses the custom resources carry now, in render's report shape. A status that
    /// does not parse is treated as absent (render writes a fresh one).
    pub fn current_report(&self) -> RenderReport {
        self.current_report_of(&Scope {
            platform: "",
            only: None,
        })
    }

    fn current_report_of(&self, scope: &Scope<'_>) -> RenderReport {
        fn entries<'a, S: serde::de::DeserializeOwned>(
            objects: impl Iterator<Item = (&'a ObjectKey, &'a Arc<DynamicObject>)>,
        ) -> Vec<ReportEntry<S>> {
            objects
                .filter_map(|(key, object)| {
                    let status = object.data.get("status")?;
                    let status = serde_json::from_value(status.clone()).ok()?;
                    Some(ReportEntry {
                        namespace: key.namespace.clone(),
                        name: key.name.clone(),
                        status,
                    })
                })
                .collect()
        }
        RenderReport {
            providers: entries::<LlmProviderStatus>(scope.of(&self.providers)),
            tenants: entries::<LlmTenantStatus>(scope.of(&self.tenants)),
            policies: entries::<RoutingPolicyStatus>(scope.of(&self.policies)),
            ..RenderReport::default()
        }
    }
}

/// What a partial render takes: the namespaces whose objects it renders, and what it cannot
/// see of the others.
#[derive(Clone, Copy, Debug)]
pub struct Partial<'a> {
    /// The namespaces rendered (with the platform's).
    pub namespaces: &'a BTreeSet<String>,
    /// The namespaces holding valid tenants, from the last whole output: one without a
    /// Namespace object still counts among the tenant namespaces the platform rules select
    /// from, and whether its tenants are valid is known without checking them again.
    pub with_tenants: &'a [&'a str],
}

/// The namespaces a pass renders (and its plan looks at): the platform's and `only`'s, or
/// every one.
pub(super) struct Scope<'a> {
    /// The platform namespace, always in scope.
    pub(super) platform: &'a str,
    /// The others in scope (`None`: all).
    pub(super) only: Option<&'a BTreeSet<String>>,
}

impl<'a> Scope<'a> {
    /// Whether `namespace` is in scope.
    pub(super) fn includes(&self, namespace: &str) -> bool {
        self.only
            .is_none_or(|only| namespace == self.platform || only.contains(namespace))
    }

    /// The entries of `map` (keyed namespace first) in scope, in key order: each namespace's
    /// run found by halves, so a pass over a few namespaces does not walk 100,000 objects.
    fn of<V>(
        &self,
        map: &'a BTreeMap<ObjectKey, V>,
    ) -> Box<dyn Iterator<Item = (&'a ObjectKey, &'a V)> + 'a> {
        let Some(only) = self.only else {
            return Box::new(map.iter());
        };
        let mut namespaces: BTreeSet<&'a str> = only.iter().map(String::as_str).collect();
        namespaces.insert(self.platform);
        Box::new(namespaces.into_iter().flat_map(move |namespace| {
            map.range(ObjectKey::new(namespace, "")..)
                .take_while(move |(key, _)| key.namespace == namespace)
        }))
    }
}

impl Observed {
    /// Applies writes to the snapshot the way the API server and the watches would (apply
    /// replaces, status lands on the object, Events are dropped, and what is written gets a new
    /// `resourceVersion`): how tests and benchmarks reach the state after a pass without a
    /// cluster.
    pub fn apply_writes(&mut self, writes: &[super::plan::Write]) {
        use super::plan::Write;
        use std::sync::atomic::{AtomicU64, Ordering};
        static RESOURCE_VERSION: AtomicU64 = AtomicU64::new(1_000_000);
        let next_version = || Some(RESOURCE_VERSION.fetch_add(1, Ordering::Relaxed).to_string());
        for write in writes {
            match write {
                Write::ApplyConfigMap(cm) => {
                    let mut cm = cm.clone();
                    cm.metadata.resource_version = next_version();
                    self.config_maps.insert(key_of(&cm), Arc::new(cm));
                }
                Write::ApplySecret(secret) => {
                    let mut secret = secret.clone();
                    secret.metadata.resource_version = next_version();
                    self.secrets.insert(key_of(&secret), Arc::new(secret));
                }
                Write::DeleteSecret(key) => {
                    self.secrets.remove(key);
                }
                Write::Status { kind, key, status } => {
                    let map = match kind {
                        ResourceKind::LlmProvider => &mut self.providers,
                        ResourceKind::LlmTenant => &mut self.tenants,
                        ResourceKind::RoutingPolicy => &mut self.policies,
                    };
                    if let Some(object) = map.get_mut(key) {
                        let mut updated = (**object).clone();
                        if let Value::Object(fields) = &mut updated.data {
                            fields.insert("status".to_owned(), status.clone());
                        }
                        if updated.metadata.resource_version.is_some() {
                            updated.metadata.resource_version = next_version();
                        }
                        *object = Arc::new(updated);
                    }
                }
                Write::Event(_) => {}
            }
        }
    }
}

/// Whether a Secret is an access key Secret dgidgi wrote.
pub fn is_access_key_secret(secret: &Secret) -> bool {
    let labels = secret.labels();
    labels.get(MANAGED_BY_LABEL).map(String::as_str) == Some(MANAGED_BY)
        && labels.get(COMPONENT_LABEL).map(String::as_str) == Some(ACCESS_KEY_COMPONENT)
}

/// A custom resource as the loader reads it: with apiVersion and kind (list items may lack
/// them) and without managedFields (noise the loader would only skip).
fn resource_document(kind: ResourceKind, object: &DynamicObject) -> Value {
    let mut metadata = object.metadata.clone();
    metadata.managed_fields = None;
    let mut document = serde_json::Map::new();
    document.insert("apiVersion".into(), Value::String(API_VERSION.to_owned()));
    document.insert("kind".into(), Value::String(kind.as_str().to_owned()));
    document.insert(
        "metadata".into(),
        serde_json::to_value(&metadata).unwrap_or(Value::Null),
    );
    if let Value::Object(fields) = &object.data {
        for (field, value) in fields {
            if field != "apiVersion" && field != "kind" && field != "metadata" {
                document.insert(field.clone(), value.clone());
            }
        }
    }
    Value::Object(document)
}

/// An object as a document of render's input.
fn document<T: serde::Serialize>(
    kind: &'static str,
    key: &ObjectKey,
    object: &T,
) -> Result<serde_yaml::Value, ObserveError> {
    serde_yaml::to_value(object).map_err(|e| ObserveError::Serialize {
        kind,
        key: key.clone(),
        message: crate::redact::serde_message(&e.to_string()),
    })
}

/// Secrets this operator just wrote, remembered until the watch shows them. Render generates
/// what is missing (the master key ring, access keys), so a pass that ran on a store that has
/// not yet seen our own write would generate them a second time and overwrite good keys.
#[derive(Debug, Default)]
pub struct WriteOverlay {
    entries: BTreeMap<ObjectKey, (Option<Arc<Secret>>, Instant)>,
}

/// How long a written Secret shadows the store before the store is trusted again (someone
/// else may have changed it meanwhile).
pub const OVERLAY_TTL: Duration = Duration::from_secs(60);

impl WriteOverlay {
    /// Remembers a Secret we applied.
    pub fn applied(&mut self, secret: Secret, now: Instant) {
        let key = key_of(&secret);
        self.entries.insert(key, (Some(Arc::new(secret)), now));
    }

    /// Remembers a Secret we deleted.
    pub fn deleted(&mut self, key: ObjectKey, now: Instant) {
        self.entries.insert(key, (None, now));
    }

    /// Number of writes the store has not shown yet.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether every write has been seen.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Lays our recent writes over the snapshot, forgetting those the store already shows.
    pub fn apply_to(&mut self, observed: &mut Observed, now: Instant) {
        self.entries.retain(|key, (written, at)| {
            let seen = match (written.as_ref(), observed.secrets.get(key)) {
                (Some(written), Some(stored)) => written.data == stored.data,
                (None, None) => true,
                _ => false,
            };
            let keep = !seen && now.duration_since(*at) < OVERLAY_TTL;
            if keep {
                match written {
                    Some(secret) => {
                        observed.secrets.insert(key.clone(), secret.clone());
                    }
                    None => {
                        observed.secrets.remove(key);
                    }
                }
            }
            keep
        });
    }
}
