//! `LlmTenant`: one tenant's choice of LLM source, its preferences, limits, budget and keys.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use crate::config::{BudgetAction, EffectiveLimits, Source};

/// Desired state of a tenant. The tier is *not* here: it comes from the namespace label
/// `llm.dgidgi.io/tier`, which the platform owns and the tenant cannot change.
#[derive(CustomResource, Clone, Debug, Deserialize, Serialize, PartialEq, KubeSchema)]
#[kube(
    group = "llm.dgidgi.io",
    version = "v1alpha1",
    kind = "LlmTenant",
    plural = "llmtenants",
    singular = "llmtenant",
    shortname = "llmt",
    namespaced,
    cel,
    status = "LlmTenantStatus",
    doc = "A tenant of the LLM gateway: which source serves it (platform keys, its own keys, or a local CLI endpoint), its preferences, limits, budget and access keys.",
    printcolumn = r#"{"name":"Source", "type":"string", "jsonPath":".status.effectiveSource", "description":"Source that serves this tenant"}"#,
    printcolumn = r#"{"name":"Tier", "type":"string", "jsonPath":".status.tier", "description":"Tier from the namespace label"}"#,
    printcolumn = r#"{"name":"Ready", "type":"string", "jsonPath":".status.conditions[?(@.type==\"Ready\")].status", "description":"Whether the tenant can be served"}"#,
    printcolumn = r#"{"name":"Reason", "type":"string", "jsonPath":".status.conditions[?(@.type==\"Ready\")].reason", "description":"Why it is (not) ready"}"#,
    printcolumn = r#"{"name":"Spend", "type":"number", "jsonPath":".status.usage.spendThisMonthUsd", "description":"USD spent this month", "priority":1}"#,
    printcolumn = r#"{"name":"Age", "type":"date", "jsonPath":".metadata.creationTimestamp"}"#
)]
#[kube(validation = Rule::new("self.metadata.name.size() <= 63").message("LlmTenant names are at most 63 characters (they label the access key Secrets)"))]
#[x_kube(validation = Rule::new("self.source != 'cli' || has(self.cli)").message("source cli requires cli.endpoint"))]
#[serde(rename_all = "camelCase")]
pub struct LlmTenantSpec {
    /// Where this tenant's requests go: platform (the platform's shared keys, metered, tier
    /// limits; default), tenant (the tenant's own LlmProviders and keys, no platform limits), or
    /// cli (a local or self-hosted Ollama-compatible endpoint).
    #[serde(default)]
    pub source: Source,
    /// Provider used when a request names no provider (an LlmProvider name visible to the tenant).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub preferred_provider: Option<String>,
    /// Model used as the last fallback and when a request names none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub preferred_model: Option<String>,
    /// For source tenant: the LlmProviders in this namespace to use (default: all of them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub providers: Option<Vec<ProviderRef>>,
    /// For source tenant: whether requests may fall back to platform providers when none of the
    /// tenant's own providers can serve them. Default false, for privacy.
    #[serde(default)]
    pub allow_platform_fallback: bool,
    /// For source cli: the Ollama-compatible endpoint and model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cli: Option<CliSpec>,
    /// Limits tighter than the tier's. Looser values are clamped to the tier (see status).
    /// Checked against the namespace's counters: every metered LlmTenant of a namespace shares
    /// its tier's one allowance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<TenantLimits>,
    /// Monthly spending budget for platform-served traffic, checked against the namespace's
    /// spend (every metered LlmTenant of a namespace shares one allowance).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<Budget>,
    /// Gateway access keys for the tenant's applications, each stored in the Secret
    /// `<tenant>-llm-access-<name>` in this namespace. Omitted: one key named default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16))]
    #[x_kube(validation = Rule::new("self.all(k, self.exists_one(o, o.name == k.name))").message("access key names must be unique"))]
    pub access_keys: Option<Vec<AccessKeySpec>>,
}

/// A reference to an LlmProvider in the tenant's own namespace.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProviderRef {
    /// Name of an LlmProvider in this namespace.
    #[schemars(length(max = 253))]
    #[x_kube(validation = Rule::new("self.size() > 0").message("provider name must not be empty"))]
    pub name: String,
}

/// A local or self-hosted Ollama-compatible endpoint.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct CliSpec {
    /// Base URL of the endpoint, e.g. http://localhost:11434. Loopback and private addresses must
    /// be allowed by the namespace annotation llm.dgidgi.io/allowed-endpoints.
    #[schemars(length(max = 2048))]
    #[x_kube(validation = Rule::new("isURL(self) && self.matches('^https?://[^/?#@]+([/?#].*)?$')").message("cli.endpoint must be an absolute http or https URL without credentials"))]
    pub endpoint: String,
    /// Model to use at that endpoint, e.g. llama3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub model: Option<String>,
}

/// Limits a tenant asks for; each may only be tighter than its tier's.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct TenantLimits {
    /// Requests per minute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 0").message("requestsPerMinute must not be negative"))]
    pub requests_per_minute: Option<u64>,
    /// Tokens per UTC day.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 0").message("tokensPerDay must not be negative"))]
    pub tokens_per_day: Option<u64>,
    /// Requests in flight at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 0").message("concurrent must not be negative"))]
    pub concurrent: Option<u64>,
}

/// A monthly (UTC) budget in USD.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Budget {
    /// Budget per UTC month in USD; decimals allowed (0.05).
    #[x_kube(validation = Rule::new("self >= 0.0 && self <= 1000000000.0").message("monthlyUsd must be between 0 and 1e9"))]
    pub monthly_usd: f64,
    /// Percentages of the budget (1-100) at which an alert is recorded, once per month each.
    #[serde(default = "default_thresholds")]
    #[schemars(length(max = 10))]
    #[x_kube(validation = Rule::new("self.all(t, t >= 1 && t <= 100)").message("alert thresholds must be between 1 and 100"))]
    pub alert_thresholds: Vec<u32>,
    /// What happens when the budget is spent: block (refuse with 402) or alert (record only).
    #[serde(default)]
    pub action: BudgetAction,
}

fn default_thresholds() -> Vec<u32> {
    vec![50, 80, 100]
}

/// A named gateway access key.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccessKeySpec {
    /// Name of the key (a DNS label); its Secret is `<tenant>-llm-access-<name>`.
    // A schema pattern, not a CEL `matches()`: checked natively per key (see render::structural).
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,
}

/// Observed state of a tenant.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LlmTenantStatus {
    /// Tier read from the namespace label llm.dgidgi.io/tier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    /// The source that actually serves this tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effective_source: Option<Source>,
    /// Limits in force: the tier's, tightened by spec.limits. Absent for tenant and cli sources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effective_limits: Option<EffectiveLimits>,
    /// Names of the Secrets (in this namespace) that hold the tenant's access keys.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub access_key_secrets: Vec<String>,
    /// Usage reported by the gateways: for a tenant the platform limits, its namespace's (every
    /// metered LlmTenant of a namespace shares one allowance); for the others, its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<TenantUsage>,
    /// Standard conditions: Ready, ProvidersResolved, LimitsClamped, BudgetExceeded.
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

/// Usage figures reported back by the gateways.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TenantUsage {
    /// Tokens used today (UTC).
    pub tokens_today: u64,
    /// USD spent this month (UTC).
    pub spend_this_month_usd: f64,
    /// When these figures were collected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
}
