//! The rendered gateway config: the one contract between the control plane (render, operator)
//! and the data plane (gateway). Render writes it; the gateway loads it. Nothing secret is in
//! here: provider keys are referenced by key store row id, access keys by SHA-256 hash.

pub mod load;
pub mod shards;
mod shared;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::providers::ProviderKind;
pub use shared::{BudgetAction, EffectiveLimits, RetryOn, Source, WorkloadIdentity};

/// File (and ConfigMap key) holding [`GatewayConfig`].
pub const GATEWAY_CONFIG_FILE: &str = "gateway.yaml";
/// File (and Secret key) holding the key store rows.
pub const KEY_STORE_FILE: &str = "keys.yaml";
/// File (and Secret key) holding the master key ring.
pub const MASTER_KEY_FILE: &str = "master-key.yaml";
/// File in a config directory keeping the tenants' access key Secrets between offline renders.
/// The gateway never reads it (it only needs the hashes); a cluster never mounts it.
pub const ACCESS_KEYS_FILE: &str = "access-keys.yaml";

/// Name of the rendered ConfigMap in the platform namespace.
pub const CONFIG_MAP_NAME: &str = "dgidgi-gateway-config";
/// Name of the key store Secret in the platform namespace.
pub const KEY_STORE_SECRET_NAME: &str = "dgidgi-gateway-keys";
/// Name of the master key ring Secret in the platform namespace.
pub const MASTER_KEY_SECRET_NAME: &str = "dgidgi-master-key";
/// Key of an access key Secret's data that holds the key.
pub const ACCESS_KEY_DATA_KEY: &str = "accessKey";

/// Format version of [`GatewayConfig`]; bumped on incompatible changes so an old gateway refuses
/// a config it cannot understand instead of misreading it.
pub const CONFIG_VERSION: u32 = 1;

/// Everything the gateway needs to route, limit and meter requests.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GatewayConfig {
    /// Format version, see [`CONFIG_VERSION`].
    pub version: u32,
    /// The platform namespace the config was rendered for.
    pub platform_namespace: String,
    /// Every Ready provider, sorted by namespace, then name.
    pub providers: Vec<ProviderConfig>,
    /// Every tenant, sorted by id.
    pub tenants: Vec<TenantConfig>,
    /// Compiled routing rules, in match order (priority descending, then id).
    pub routing: Vec<CompiledRule>,
    /// Output tokens reserved (and written upstream) for a platform-paid request that neither
    /// it nor its model's catalog bounds, as the platform configuration sets it; absent: the
    /// gateway's `--unbounded-output-tokens`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unbounded_output_tokens: Option<u64>,
    /// In a sharded layout's index: the shards, with their digests (the tenants, the tenant
    /// namespaces' providers and rules are in them, not here). See [`shards`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shards: Option<shards::ShardIndex>,
}

impl GatewayConfig {
    /// Derives what the file states once into the form the gateway plans on: each cli
    /// tenant's endpoint as its provider. The render calls it on the config it builds and
    /// loading on the config it reads, so both hold the same.
    pub fn link(&mut self) {
        for tenant in &mut self.tenants {
            tenant.cli_provider = tenant
                .cli
                .as_ref()
                .map(|cli| Box::new(cli.provider(tenant)));
        }
    }

    /// A provider by id, by binary search: providers are sorted by (namespace, name) (the render
    /// writes them so and loading sorts them), and a request must not pay a scan of every
    /// tenant's providers.
    pub fn provider(&self, id: &str) -> Option<&ProviderConfig> {
        let (namespace, name) = id.split_once('/')?;
        self.providers
            .binary_search_by(|p| (p.namespace.as_str(), p.name.as_str()).cmp(&(namespace, name)))
            .ok()
            .map(|index| &self.providers[index])
    }

    /// The platform's providers: the contiguous run of the platform namespace in the sorted
    /// list, found in O(log n) however many tenant providers there are.
    pub fn platform_providers(&self) -> impl Iterator<Item = &ProviderConfig> {
        let namespace = self.platform_namespace.as_str();
        let start = self
            .providers
            .partition_point(|p| p.namespace.as_str() < namespace);
        self.providers[start..]
            .iter()
            .take_while(move |p| p.namespace == namespace)
            .filter(|p| p.scope == Scope::Platform)
    }
}

/// Who owns a provider or a routing rule: the platform namespace or a tenant namespace. For
/// providers it is also the source boundary that fallback never crosses.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum Scope {
    /// Defined in the platform namespace: the platform's keys.
    Platform,
    /// Defined in a tenant namespace: that namespace's tenants' keys.
    Tenant,
}

/// A resolved provider.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ProviderConfig {
    /// `<namespace>/<name>`.
    pub id: String,
    /// Namespace of the LlmProvider.
    pub namespace: String,
    /// Name of the LlmProvider.
    pub name: String,
    /// Wire format.
    #[serde(rename = "type")]
    pub kind: ProviderKind,
    /// Platform or tenant keys.
    pub scope: Scope,
    /// Base URL (absent only for the mock provider).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// Key store row holding the API key (absent when the type needs none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
    /// Whether models outside `models` are accepted.
    pub open_catalog: bool,
    /// Models served, sorted by name. Shared: every provider of a type that keeps its type's
    /// catalog lists the same models, and a loaded config holds one copy of each distinct list
    /// ([`share_models`]; at 100,000 tenants, one in ten with its own provider, the copies
    /// were a fifth of the gateway's memory).
    pub models: Arc<[ModelConfig]>,
    /// What stands for any other model name, when the provider forwards unlisted models (its
    /// name is [`UNLISTED_MODEL`]; the request's own name is what is sent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unlisted: Option<ModelConfig>,
    /// Which `anthropic-beta` values clients may send through this provider.
    #[serde(default, skip_serializing_if = "BetaFilterConfig::is_empty")]
    pub betas: BetaFilterConfig,
    /// Whether it serves OpenAI's Responses API: a `/v1/responses` client's request then goes
    /// to it as sent (else translated to its chat format).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub responses_api: bool,
    /// The key's own quota.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<ProviderLimitsConfig>,
    /// Timeouts in milliseconds.
    pub timeouts: TimeoutsConfig,
    /// For tenant-scoped providers: the namespace's allowed private endpoints, re-checked by the
    /// gateway against the resolved address at connect time.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_endpoints: Vec<String>,
    /// Where a cloud-hosted provider's endpoints are (empty for every other type).
    #[serde(default, skip_serializing_if = "CloudConfig::is_empty")]
    pub cloud: CloudConfig,
    /// The gateway pod's own cloud identity, used instead of a stored credential.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<WorkloadIdentity>,
}

impl ProviderConfig {
    /// The name a model is called by at this provider: its Azure deployment, or its own name.
    pub fn upstream_model<'a>(&'a self, model: &'a str) -> &'a str {
        self.cloud
            .deployments
            .get(model)
            .map_or(model, String::as_str)
    }
}

/// Where a cloud-hosted provider's endpoints are: what `gateway::provider_urls` and the
/// signer read besides the base URL.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CloudConfig {
    /// The cloud region (Bedrock: the region requests are signed for; Vertex AI: the location).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// The Google Cloud project (Vertex AI).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// Azure OpenAI's deployment API version; `None`: Azure's v1 API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// Azure OpenAI's deployments: model → deployment.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub deployments: BTreeMap<String, String>,
}

impl CloudConfig {
    /// Nothing set (every provider not in a cloud).
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }
}

/// The name of the model entry that stands for a provider's unlisted models (also the `model`
/// label of their metrics, so tomorrow's names do not grow the series without bound).
pub const UNLISTED_MODEL: &str = "unlisted";

/// Allow and deny lists of `anthropic-beta` values; a trailing `*` matches a prefix.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BetaFilterConfig {
    /// Only these (empty: any not denied).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<String>,
    /// Never these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny: Vec<String>,
}

impl BetaFilterConfig {
    /// Whether it filters nothing.
    pub fn is_empty(&self) -> bool {
        self.allow.is_empty() && self.deny.is_empty()
    }

    /// Whether a beta may pass. Both are lower-case: render writes the patterns so, and the
    /// gateway lower-cases a client's betas once, before they are judged.
    pub fn passes(&self, beta: &str) -> bool {
        let matches = |pattern: &String| match pattern.strip_suffix('*') {
            Some(prefix) => beta.starts_with(prefix),
            None => beta == pattern,
        };
        !self.deny.iter().any(matches) && (self.allow.is_empty() || self.allow.iter().any(matches))
    }
}

/// A model with its capabilities and price.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub struct ModelConfig {
    /// The provider's model id.
    pub name: String,
    /// Other accepted names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// Supports streaming.
    pub streaming: bool,
    /// Supports tools.
    pub function_calling: bool,
    /// Context window in tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_window: Option<u32>,
    /// Largest completion in tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_output_tokens: Option<u32>,
    /// Price, in integer micro-USD per million tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pricing: Option<PricingConfig>,
    /// An embedding model: served on `/v1/embeddings` only.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub embedding: bool,
}

/// Integer prices: micro-USD per million tokens (3 USD/M = 3,000,000).
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub struct PricingConfig {
    /// Micro-USD per million input tokens.
    pub input_micro_usd_per_million: u64,
    /// Micro-USD per million output tokens.
    pub output_micro_usd_per_million: u64,
    /// The rates of a request whose prompt is long.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub long_context: Option<LongContextPricing>,
}

impl PricingConfig {
    /// The same rates 10 % dearer (a cloud's regional surcharge), rounded up to the micro-USD.
    pub fn with_regional_surcharge(self) -> Self {
        let up = |micros: u64| micros.saturating_mul(11).div_ceil(10);
        Self {
            input_micro_usd_per_million: up(self.input_micro_usd_per_million),
            output_micro_usd_per_million: up(self.output_micro_usd_per_million),
            long_context: self.long_context.map(|long| LongContextPricing {
                input_micro_usd_per_million: up(long.input_micro_usd_per_million),
                output_micro_usd_per_million: up(long.output_micro_usd_per_million),
                ..long
            }),
        }
    }
}

/// The dearer rates of a request whose input exceeds a threshold, applied to all its tokens.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub struct LongContextPricing {
    /// Input tokens beyond which these rates apply.
    pub above_input_tokens: u64,
    /// Micro-USD per million input tokens.
    pub input_micro_usd_per_million: u64,
    /// Micro-USD per million output tokens.
    pub output_micro_usd_per_million: u64,
}

impl PricingConfig {
    /// The input and output rates of a request with `input_tokens` of prompt.
    pub fn rates(&self, input_tokens: u64) -> (u64, u64) {
        match self.long_context {
            Some(long) if input_tokens > long.above_input_tokens => (
                long.input_micro_usd_per_million,
                long.output_micro_usd_per_million,
            ),
            _ => (
                self.input_micro_usd_per_million,
                self.output_micro_usd_per_million,
            ),
        }
    }
}

/// A provider key's quota.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ProviderLimitsConfig {
    /// Requests per minute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_per_minute: Option<u64>,
    /// Tokens per minute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_per_minute: Option<u64>,
}

/// Timeouts in milliseconds.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct TimeoutsConfig {
    /// Connection establishment.
    pub connect_ms: u64,
    /// First response byte.
    pub first_byte_ms: u64,
    /// Whole response.
    pub total_ms: u64,
}

impl Default for TimeoutsConfig {
    fn default() -> Self {
        Self {
            connect_ms: 5_000,
            first_byte_ms: 60_000,
            total_ms: 600_000,
        }
    }
}

/// A resolved tenant (`Default`: an empty one, for tests and benchmarks to fill).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TenantConfig {
    /// `<namespace>/<name>`.
    pub id: String,
    /// Namespace of the LlmTenant.
    pub namespace: String,
    /// Name of the LlmTenant.
    pub name: String,
    /// Tier from the namespace label.
    pub tier: String,
    /// Source that serves this tenant.
    pub source: Source,
    /// Provider id used when a request names none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_provider: Option<String>,
    /// Model used when a request names none, and as the last fallback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_model: Option<String>,
    /// For source tenant: ids of the tenant's own Ready providers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub providers: Vec<String>,
    /// For source tenant: whether platform providers may serve what the tenant's cannot.
    pub allow_platform_fallback: bool,
    /// For source cli: the endpoint and model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cli: Option<CliConfig>,
    /// Platform limits (platform source only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<EffectiveLimits>,
    /// `provider/model` globs the tenant's tier may use on the platform's providers; empty:
    /// any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_models: Vec<String>,
    /// Monthly budget, applied to platform-served traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<BudgetConfig>,
    /// Requests in flight at most, for a tenant without platform limits (`tenant` and `cli`
    /// sources): a guard of the gateway's memory set by the platform, not a billing limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency_ceiling: Option<u64>,
    /// Access keys by name and SHA-256 hash (hex); never the keys themselves.
    pub access_keys: Vec<AccessKeyHash>,
    /// The namespace's allowed private endpoints, re-checked at connect time (cli source).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_endpoints: Vec<String>,
    /// For source cli: the endpoint as the provider routing plans on (see
    /// [`GatewayConfig::link`]); not in the file, derived from `cli` when a config is built or
    /// loaded.
    #[serde(skip)]
    pub cli_provider: Option<Box<ProviderConfig>>,
}

impl TenantConfig {
    /// Whose counters this tenant's requests count against: its namespace's when the platform
    /// limits it, its own otherwise. A tier is the namespace's (a label the tenant cannot
    /// change), and so is the allowance: every LlmTenant of a namespace that the platform
    /// meters shares one set of counters, so a second LlmTenant — or the same one deleted and
    /// created under a new name — gets no fresh requests, tokens or budget. An LlmTenant's
    /// own tighter limits and budget are checked against the shared figures. Tenants the
    /// platform does not limit count on their own (informational) counters, so their own-key
    /// traffic never spends a metered neighbour's allowance. A namespace has no `/`, an id
    /// has one: the two never name the same counter.
    pub fn meter(&self) -> &str {
        if self.limits.is_some() {
            &self.namespace
        } else {
            &self.id
        }
    }
}

/// A cli-source tenant's endpoint.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CliConfig {
    /// Base URL of the Ollama-compatible endpoint.
    pub endpoint: String,
    /// Model to use there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

/// What a cli endpoint is called where a provider's name or id would show (the
/// `x-dgidgi-provider` header, metrics, logs). No LlmProvider has it as id (theirs hold a `/`)
/// nor as name in a cli tenant's plan (a cli plan holds its endpoint alone).
pub const CLI_PROVIDER: &str = "cli";

impl CliConfig {
    /// The endpoint as a provider like any other: the Ollama type (OpenAI's format, no key, an
    /// open catalog), the tenant's own (no platform limits, no pricing), reached through the
    /// client that re-checks the tenant's allowed private endpoints at connect time, with the
    /// default timeouts.
    fn provider(&self, tenant: &TenantConfig) -> ProviderConfig {
        ProviderConfig {
            base_url: Some(self.endpoint.clone()),
            open_catalog: true,
            allowed_endpoints: tenant.allowed_endpoints.clone(),
            ..ProviderConfig::bare(
                CLI_PROVIDER,
                &tenant.namespace,
                CLI_PROVIDER,
                ProviderKind::Ollama,
                Scope::Tenant,
            )
        }
    }
}

/// A budget in integer micro-USD.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BudgetConfig {
    /// Micro-USD per UTC month.
    pub monthly_micro_usd: u64,
    /// Alert thresholds in percent, ascending and unique.
    pub alert_thresholds: Vec<u32>,
    /// Block or alert when spent.
    pub action: BudgetAction,
}

/// An access key, by hash.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AccessKeyHash {
    /// Name of the key.
    pub name: String,
    /// Lowercase hex SHA-256 of the key.
    pub sha256: String,
}

/// A routing rule, with provider references resolved to ids.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CompiledRule {
    /// `<namespace>/<policy>#<rule index>`.
    pub id: String,
    /// Priority of the policy.
    pub priority: i32,
    /// Platform-wide or a tenant namespace's own; at equal priority a tenant's own rule wins.
    pub scope: Scope,
    /// Tenant namespaces the rule applies to, sorted (binary-searched per request); `None`
    /// means every tenant namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespaces: Option<Vec<String>>,
    /// Model glob.
    pub model: String,
    /// Streaming requirement, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub streaming: Option<bool>,
    /// Tools requirement, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<bool>,
    /// Weighted targets.
    pub targets: Vec<CompiledTarget>,
    /// Ordered fallback chain (weight is unused there and always 1).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fallback: Vec<CompiledTarget>,
    /// Retries per target.
    pub retry: RetryConfig,
    /// Overall request timeout in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

impl CompiledRule {
    /// The namespace of the RoutingPolicy the rule came from (its id is
    /// `<namespace>/<policy>#<index>`).
    pub fn policy_namespace(&self) -> &str {
        self.id
            .split_once('/')
            .map_or(self.id.as_str(), |(namespace, _)| namespace)
    }

    /// Match order: priority first; at equal priority a tenant's own rules before platform-wide
    /// ones; then by id, for determinism.
    pub fn match_order(a: &Self, b: &Self) -> std::cmp::Ordering {
        b.priority
            .cmp(&a.priority)
            .then_with(|| b.scope.cmp(&a.scope))
            .then_with(|| a.id.cmp(&b.id))
    }
}

/// A resolved target.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CompiledTarget {
    /// Provider id.
    pub provider: String,
    /// Model name at that provider.
    pub model: String,
    /// Load-balancing weight.
    pub weight: u32,
}

/// Retry settings.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RetryConfig {
    /// Extra attempts on the same target.
    pub attempts: u32,
    /// Failure classes retried.
    pub on: Vec<RetryOn>,
    /// First backoff in milliseconds, doubled per attempt.
    pub backoff_ms: u64,
}

impl ProviderConfig {
    /// The catalog entry for `model`, by name or alias.
    pub fn model(&self, model: &str) -> Option<&ModelConfig> {
        self.models
            .iter()
            .find(|m| m.name == model || m.aliases.iter().any(|a| a == model))
            .or(self.unlisted.as_ref())
    }

    /// Whether `model` (a name or an alias) is served here.
    pub fn serves(&self, model: &str) -> bool {
        self.open_catalog || self.model(model).is_some()
    }
}

/// Makes providers with equal model lists share one list, the ones already in `shared` first
/// (so calls over parts of a config, each part as it is parsed, share across the parts).
pub fn share_models(providers: &mut [ProviderConfig], shared: &mut HashSet<Arc<[ModelConfig]>>) {
    for provider in providers {
        match shared.get(&provider.models) {
            Some(list) => provider.models = Arc::clone(list),
            None => {
                shared.insert(Arc::clone(&provider.models));
            }
        }
    }
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            attempts: 0,
            on: RetryOn::all(),
            backoff_ms: 200,
        }
    }
}

impl ProviderConfig {
    /// A provider of `kind` with nothing configured beyond who it is: no URL, key, models or
    /// limits, a closed catalog, the default timeouts.
    fn bare(id: &str, namespace: &str, name: &str, kind: ProviderKind, scope: Scope) -> Self {
        ProviderConfig {
            id: id.into(),
            namespace: namespace.into(),
            name: name.into(),
            kind,
            scope,
            base_url: None,
            credential: None,
            open_catalog: false,
            models: Arc::default(),
            unlisted: None,
            betas: BetaFilterConfig::default(),
            responses_api: false,
            limits: None,
            timeouts: TimeoutsConfig::default(),
            allowed_endpoints: Vec::new(),
            cloud: CloudConfig::default(),
            identity: None,
        }
    }

    /// A mock provider with nothing else set (unit tests of code that only reads ids and scopes).
    #[cfg(test)]
    pub(crate) fn mock_for_tests(id: &str, scope: Scope) -> Self {
        let (namespace, name) = id.split_once('/').unwrap_or(("", id));
        Self::bare(id, namespace, name, ProviderKind::Mock, scope)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platform_providers_and_lookup_by_id_on_the_sorted_list() {
        // Namespaces sorting around "dgidgi-system" (as ids, "dgidgi-system-x/…" would sort
        // before "dgidgi-system/…"; as (namespace, name) after).
        let mut providers = vec![
            ProviderConfig::mock_for_tests("a/own", Scope::Tenant),
            ProviderConfig::mock_for_tests("dgidgi-system-x/own", Scope::Tenant),
            ProviderConfig::mock_for_tests("dgidgi-system/mock", Scope::Platform),
            ProviderConfig::mock_for_tests("dgidgi-system/openai", Scope::Platform),
            ProviderConfig::mock_for_tests("dgidgi-system0/own", Scope::Tenant),
            ProviderConfig::mock_for_tests("dgidgi-systemx/own", Scope::Tenant),
            ProviderConfig::mock_for_tests("zeta/own", Scope::Tenant),
        ];
        providers.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        let config = GatewayConfig {
            platform_namespace: "dgidgi-system".into(),
            providers,
            ..GatewayConfig::default()
        };
        let platform: Vec<&str> = config.platform_providers().map(|p| p.id.as_str()).collect();
        assert_eq!(platform, ["dgidgi-system/mock", "dgidgi-system/openai"]);
        for p in &config.providers {
            assert_eq!(config.provider(&p.id).map(|f| &f.id), Some(&p.id));
        }
        assert!(config.provider("dgidgi-system/missing").is_none());
    }
}
