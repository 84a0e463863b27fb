//! `RoutingPolicy`: which provider/model serves a requested model, with weights, fallback,
//! retries and timeouts.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{DURATION_RULE, TIMEOUT_RULE};
pub use crate::config::RetryOn;

/// Routing rules. In the platform namespace a policy applies to the tenant namespaces its
/// tenantSelector picks; elsewhere only to its own namespace.
#[derive(CustomResource, Clone, Debug, Deserialize, Serialize, PartialEq, KubeSchema)]
#[kube(
    group = "llm.dgidgi.io",
    version = "v1alpha1",
    kind = "RoutingPolicy",
    plural = "routingpolicies",
    singular = "routingpolicy",
    shortname = "llmrp",
    namespaced,
    cel,
    status = "RoutingPolicyStatus",
    doc = "Routing rules for requested models: weighted targets, an ordered fallback chain, retries and timeouts.",
    printcolumn = r#"{"name":"Priority", "type":"integer", "jsonPath":".spec.priority", "description":"Higher wins when several rules match"}"#,
    printcolumn = r#"{"name":"Rules", "type":"integer", "jsonPath":".status.rules", "description":"Rules compiled into the gateway config"}"#,
    printcolumn = r#"{"name":"Ready", "type":"string", "jsonPath":".status.conditions[?(@.type==\"Ready\")].status", "description":"Whether every rule compiled"}"#,
    printcolumn = r#"{"name":"Reason", "type":"string", "jsonPath":".status.conditions[?(@.type==\"Ready\")].reason", "description":"Why it is (not) ready"}"#,
    printcolumn = r#"{"name":"Age", "type":"date", "jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct RoutingPolicySpec {
    /// Higher wins when rules of several policies match the same request (default 0).
    #[serde(default)]
    pub priority: i32,
    /// Platform namespace only: the tenant namespaces (by label) this policy applies to. Empty or
    /// omitted: all of them. Ignored in tenant namespaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_selector: Option<LabelSelector>,
    /// Rules, matched in order within this policy.
    #[schemars(length(max = 64))]
    #[x_kube(validation = Rule::new("self.size() > 0").message("a policy needs at least one rule"))]
    pub rules: Vec<RoutingRule>,
}

/// One routing rule.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoutingRule {
    /// Which requests this rule serves.
    #[serde(rename = "match")]
    pub matcher: RuleMatch,
    /// Weighted targets; the gateway picks among the healthy ones by weight.
    #[schemars(length(max = 16))]
    #[x_kube(validation = Rule::new("self.size() > 0").message("a rule needs at least one target"))]
    pub targets: Vec<WeightedTarget>,
    /// Tried in order when every target fails before the first byte reached the client.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub fallback: Vec<Target>,
    /// Retries on the same target before moving on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetrySpec>,
    /// Overall time budget for the request across retries and fallbacks (e.g. 60s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new(TIMEOUT_RULE).message("timeout must be a non-zero duration such as 500ms, 30s or 2m"))]
    pub timeout: Option<String>,
}

/// What a request must look like for a rule to apply.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RuleMatch {
    /// Glob on the requested model name: `*` matches any run of characters, `?` one character.
    #[schemars(length(max = 256))]
    #[x_kube(validation = Rule::new("self.size() > 0").message("match.model must not be empty"))]
    pub model: String,
    /// Only match requests that do (true) or do not (false) ask for streaming.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub streaming: Option<bool>,
    /// Only match requests that do (true) or do not (false) carry tools.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<bool>,
}

/// A provider/model pair with a load-balancing weight.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct WeightedTarget {
    /// Name of an LlmProvider (this namespace first, then the platform namespace).
    #[schemars(length(max = 253))]
    #[x_kube(validation = Rule::new("self.size() > 0").message("provider must not be empty"))]
    pub provider: String,
    /// Model to ask that provider for.
    #[schemars(length(max = 256))]
    #[x_kube(validation = Rule::new("self.size() > 0").message("model must not be empty"))]
    pub model: String,
    /// Relative share of traffic (default 1).
    #[serde(default = "default_weight")]
    #[x_kube(validation = Rule::new("self > 0 && self <= 1000000").message("weight must be between 1 and 1000000"))]
    pub weight: u32,
}

fn default_weight() -> u32 {
    1
}

/// A provider/model pair in a fallback chain.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Target {
    /// Name of an LlmProvider (this namespace first, then the platform namespace).
    #[schemars(length(max = 253))]
    #[x_kube(validation = Rule::new("self.size() > 0").message("provider must not be empty"))]
    pub provider: String,
    /// Model to ask that provider for.
    #[schemars(length(max = 256))]
    #[x_kube(validation = Rule::new("self.size() > 0").message("model must not be empty"))]
    pub model: String,
}

/// Retry behaviour for one target.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetrySpec {
    /// Extra attempts on the same target (0-10).
    #[x_kube(validation = Rule::new("self >= 0 && self <= 10").message("attempts must be between 0 and 10"))]
    pub attempts: u32,
    /// Failure classes that are retried (default: all of them).
    #[serde(default = "RetryOn::all")]
    #[schemars(length(max = 4))]
    pub on: Vec<RetryOn>,
    /// Wait before the first retry, doubled each time (default 200ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new(DURATION_RULE).message("backoff must be a duration such as 200ms or 1s"))]
    pub backoff: Option<String>,
}

/// Observed state of a routing policy.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoutingPolicyStatus {
    /// Number of rules compiled into the gateway config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules: Option<u32>,
    /// Standard conditions: Ready, TargetsResolved.
    #[serde(default)]
    pub conditions: Vec<Condition>,
}
