//! Render: cluster objects in, the gateway's config, key store, key ring, access keys and a
//! status per resource out. A pure function of its inputs (time and randomness are passed in),
//! shared by `dgidgi render` and the operator, and deterministic: given back its own outputs it
//! produces byte-identical outputs.

pub mod input;
pub mod keystore;
pub mod manifests;
pub mod platform;
pub mod policies;
pub mod providers;
pub mod report;
pub mod splice;
pub mod structural;
pub mod tenants;
pub mod tiers;

use std::collections::BTreeMap;

use k8s_openapi::jiff::Timestamp;
use rand::CryptoRng;
use zeroize::Zeroizing;

use crate::config::{CONFIG_VERSION, GatewayConfig};
use crate::crd::{LlmProvider, LlmTenant, RoutingPolicy};
use crate::crypto::{KeyRing, KeyStore};

pub use input::{InputError, InputLoader};
pub use report::RenderReport;
pub use tiers::TierTable;

/// The default platform namespace.
pub const DEFAULT_PLATFORM_NAMESPACE: &str = "dgidgi-system";

/// A namespaced object's identity, ordered namespace first so iteration is deterministic.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl ObjectKey {
    /// Builds a key.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl std::fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// The labels and annotations of a namespace: where the platform-owned tier and endpoint
/// allow-list live.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NamespaceMeta {
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    pub annotations: BTreeMap<String, String>,
}

/// The decoded data of a Secret. `Debug` shows key names only.
#[derive(Clone, Default)]
pub struct SecretValues {
    /// Data keys and their decoded values.
    pub data: BTreeMap<String, Zeroizing<Vec<u8>>>,
    /// Keys whose `data` value was not valid base64.
    pub undecodable: Vec<String>,
}

impl std::fmt::Debug for SecretValues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretValues")
            .field("keys", &self.data.keys().collect::<Vec<_>>())
            .field("undecodable", &self.undecodable)
            .finish()
    }
}

/// Which custom resource a status belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ResourceKind {
    /// LlmProvider.
    LlmProvider,
    /// LlmTenant.
    LlmTenant,
    /// RoutingPolicy.
    RoutingPolicy,
}

impl ResourceKind {
    /// The kind as written in YAML.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::LlmProvider => "LlmProvider",
            Self::LlmTenant => "LlmTenant",
            Self::RoutingPolicy => "RoutingPolicy",
        }
    }
}

/// A custom resource that could not be used at all (schema or CEL violation).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidResource {
    /// Kind.
    pub kind: ResourceKind,
    /// Identity.
    pub key: ObjectKey,
    /// `metadata.generation`, if known.
    pub generation: Option<i64>,
    /// What is wrong, for the status message.
    pub message: String,
}

/// What render reads from the outputs of an earlier render.
#[derive(Debug, Default)]
pub struct Previous {
    /// The master key ring; generated when absent.
    pub key_ring: Option<KeyRing>,
    /// The key store; rows whose source value is unchanged are kept byte for byte.
    pub key_store: Option<KeyStore>,
    /// The status report; keeps `lastTransitionTime` of unchanged conditions.
    pub report: Option<RenderReport>,
}

/// Everything render reads.
#[derive(Debug, Default)]
pub struct RenderInput {
    /// Namespaces by name.
    pub namespaces: BTreeMap<String, NamespaceMeta>,
    /// Secrets by namespace/name (the access key Secrets of earlier renders among them).
    pub secrets: BTreeMap<ObjectKey, SecretValues>,
    /// Valid LlmProviders.
    pub providers: BTreeMap<ObjectKey, LlmProvider>,
    /// Valid LlmTenants.
    pub tenants: BTreeMap<ObjectKey, LlmTenant>,
    /// Valid RoutingPolicies.
    pub policies: BTreeMap<ObjectKey, RoutingPolicy>,
    /// Custom resources refused before render (reported in the status output).
    pub invalid: Vec<InvalidResource>,
    /// The platform configuration (`platform.yaml` of ConfigMap `dgidgi-platform`), as text.
    pub platform_config: Option<String>,
    /// Earlier outputs.
    pub previous: Previous,
}

impl RenderInput {
    /// The namespace's metadata, or empty metadata for a namespace not given as input.
    pub fn namespace(&self, name: &str) -> NamespaceMeta {
        self.namespaces.get(name).cloned().unwrap_or_default()
    }
}

/// Settings and the two impure ingredients, made explicit.
#[derive(Clone, Debug)]
pub struct RenderContext {
    /// The platform namespace.
    pub platform_namespace: String,
    /// "Now", for new rows and condition transitions.
    pub now: Timestamp,
    /// The tiers in force when the input's platform configuration is invalid: the last good
    /// ones (the defaults until there was one). A valid configuration, or none, decides alone.
    pub tiers: TierTable,
    /// How many shards the config and key store are written in (1: the single-file layout;
    /// see [`crate::config::shards`]). The chart's `config.shards` sets it for the operator.
    pub shards: u32,
}

impl RenderContext {
    /// A context with default tiers, writing the single-file layout.
    pub fn new(platform_namespace: impl Into<String>, now: Timestamp) -> Self {
        Self {
            platform_namespace: platform_namespace.into(),
            now,
            tiers: TierTable::default(),
            shards: 1,
        }
    }
}

/// A tenant access key to be stored in its Secret.
#[derive(Clone)]
pub struct AccessKeySecret {
    /// Namespace and Secret name (`<tenant>-llm-access-<name>`).
    pub key: ObjectKey,
    /// The LlmTenant it belongs to.
    pub tenant: String,
    /// The key's name in the tenant spec.
    pub key_name: String,
    /// The LlmTenant's uid, for an owner reference (absent offline without uids).
    pub owner_uid: Option<String>,
    /// The key.
    pub value: Zeroizing<String>,
}

impl std::fmt::Debug for AccessKeySecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessKeySecret")
            .field("key", &self.key)
            .field("tenant", &self.tenant)
            .field("key_name", &self.key_name)
            .finish_non_exhaustive()
    }
}

/// Everything render produces.
#[derive(Debug)]
pub struct RenderOutput {
    /// The gateway config (ConfigMap data).
    pub config: GatewayConfig,
    /// The key store (Secret data).
    pub key_store: KeyStore,
    /// The master key ring, as given or newly generated.
    pub key_ring: KeyRing,
    /// Whether the ring was generated by this render.
    pub key_ring_generated: bool,
    /// Access key Secrets, sorted by namespace/name.
    pub access_keys: Vec<AccessKeySecret>,
    /// Status of every custom resource.
    pub report: RenderReport,
    /// Why the platform configuration was refused (the context's tiers were used), if it was.
    pub platform_problem: Option<platform::PlatformConfigError>,
    /// The tiers this render used (recorded with the config, see
    /// [`manifests::TIERS_ANNOTATION`]).
    pub tiers: TierTable,
    /// How many shards the config and key store are written in (1: one file each).
    pub shards: u32,
    /// Namespaces whose tenants claimed an access key another tenant claimed too (both sides):
    /// the one render result that crosses namespaces, so the operator's incremental pass
    /// renders them together ([`splice`]).
    pub access_key_conflicts: std::collections::BTreeSet<String>,
}

/// Why render could not produce outputs. Input problems are statuses, not errors; these are
/// failures to produce key material or to serialize, which must never be written half-done.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// Sealing or serializing key material failed.
    #[error(transparent)]
    Crypto(#[from] crate::crypto::CryptoError),
    /// Serializing an output failed.
    #[error("could not serialize {what}: {source}")]
    Serialize {
        /// Which output.
        what: &'static str,
        /// The serializer's error.
        source: serde_yaml::Error,
    },
    /// Serializing an output as JSON failed.
    #[error("could not serialize {what}: {message}")]
    Json {
        /// Which output.
        what: &'static str,
        /// The serializer's error.
        message: String,
    },
    /// Splitting or writing the shards failed.
    #[error(transparent)]
    Shards(#[from] crate::config::shards::ShardError),
}

/// Renders the whole gateway configuration. Takes the previous key ring out of `input` (it is
/// moved into the output) and otherwise only reads.
pub fn render(
    mut input: RenderInput,
    ctx: &RenderContext,
    rng: &mut dyn CryptoRng,
) -> Result<RenderOutput, RenderError> {
    let (key_ring, key_ring_generated) = match input.previous.key_ring.take() {
        Some(ring) => (ring, false),
        None => (KeyRing::generate(rng), true),
    };
    let mut previous_report = input.previous.report.take().unwrap_or_default();
    // Looked up by halves for every resource; sorting what is already sorted is one scan.
    previous_report.sort();
    let mut report = RenderReport::default();
    let (tiers, platform_problem) = match platform::tiers(input.platform_config.as_deref()) {
        Ok(tiers) => (tiers, None),
        Err(problem) => (ctx.tiers.clone(), Some(problem)),
    };
    let ctx = &RenderContext {
        tiers,
        ..ctx.clone()
    };

    let resolved = providers::resolve_all(&input, ctx, &previous_report, &mut report);
    let key_store = keystore::reconcile(
        input.previous.key_store.as_ref(),
        &key_ring,
        &resolved.credentials,
        ctx.now,
        rng,
    )?;
    let tenant_out =
        tenants::resolve_all(&input, ctx, &resolved, &previous_report, &mut report, rng);
    let routing = policies::compile_all(&input, ctx, &resolved, &previous_report, &mut report);
    report.add_invalid(&input.invalid, &previous_report, ctx.now);
    report.sort();

    let mut config = GatewayConfig {
        version: CONFIG_VERSION,
        platform_namespace: ctx.platform_namespace.clone(),
        providers: resolved.configs,
        tenants: tenant_out.configs,
        routing,
        unbounded_output_tokens: ctx.tiers.unbounded_output_tokens,
        shards: None,
    };
    config.link();
    Ok(RenderOutput {
        config,
        key_store,
        key_ring,
        key_ring_generated,
        access_keys: tenant_out.access_keys,
        report,
        platform_problem,
        tiers: ctx.tiers.clone(),
        shards: ctx.shards,
        access_key_conflicts: tenant_out.key_conflicts,
    })
}
