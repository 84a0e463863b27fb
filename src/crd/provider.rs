//! `LlmProvider`: one upstream LLM API (a provider type, its endpoint, its key, its models).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{SecretKeyRef, TIMEOUT_RULE};
use crate::providers::ProviderKind;

/// Desired state of an upstream LLM provider. In the platform namespace it is platform-wide;
/// in any other namespace it belongs to that namespace's tenants only.
#[derive(CustomResource, Clone, Debug, Deserialize, Serialize, PartialEq, KubeSchema)]
#[kube(
    group = "llm.dgidgi.io",
    version = "v1alpha1",
    kind = "LlmProvider",
    plural = "llmproviders",
    singular = "llmprovider",
    shortname = "llmp",
    namespaced,
    cel,
    status = "LlmProviderStatus",
    doc = "An upstream LLM API (OpenAI, Anthropic, Gemini, an Ollama endpoint, ...) with its credentials, models, limits and timeouts.",
    printcolumn = r#"{"name":"Type", "type":"string", "jsonPath":".spec.type", "description":"Provider wire format"}"#,
    printcolumn = r#"{"name":"Ready", "type":"string", "jsonPath":".status.conditions[?(@.type==\"Ready\")].status", "description":"Whether the gateway can use this provider"}"#,
    printcolumn = r#"{"name":"Reason", "type":"string", "jsonPath":".status.conditions[?(@.type==\"Ready\")].reason", "description":"Why it is (not) ready"}"#,
    printcolumn = r#"{"name":"Models", "type":"integer", "jsonPath":".status.models", "description":"Number of models served"}"#,
    printcolumn = r#"{"name":"Age", "type":"date", "jsonPath":".metadata.creationTimestamp"}"#
)]
#[x_kube(validation = Rule::new("self.type in ['ollama', 'mock'] || has(self.credentialsRef) || has(self.identity)").message("credentialsRef is required for every provider type except ollama and mock (a cloud provider in the platform namespace may use identity instead)"))]
#[x_kube(validation = Rule::new("!has(self.identity) || !has(self.credentialsRef)").message("a provider uses either credentialsRef or identity, not both"))]
#[x_kube(validation = Rule::new("!has(self.identity) || (self.type == 'bedrock' && self.identity in ['aws-web-identity', 'eks-pod-identity']) || (self.type == 'vertex-ai' && self.identity == 'gke-metadata') || (self.type == 'azure-openai' && self.identity == 'azure-workload-identity')").message("identity: aws-web-identity or eks-pod-identity for bedrock, gke-metadata for vertex-ai, azure-workload-identity for azure-openai"))]
#[x_kube(validation = Rule::new("self.type != 'openai-compatible' || has(self.baseUrl)").message("baseUrl is required for type openai-compatible"))]
#[x_kube(validation = Rule::new("self.type != 'azure-openai' || has(self.baseUrl)").message("baseUrl (the resource's endpoint, https://NAME.openai.azure.com) is required for type azure-openai"))]
#[x_kube(validation = Rule::new("self.type != 'bedrock' || has(self.region)").message("region is required for type bedrock"))]
#[x_kube(validation = Rule::new("self.type != 'vertex-ai' || (has(self.region) && has(self.project))").message("region and project are required for type vertex-ai"))]
#[x_kube(validation = Rule::new("!has(self.azure) || self.type == 'azure-openai'").message("azure is only read for type azure-openai"))]
#[x_kube(validation = Rule::new("!has(self.project) || self.type == 'vertex-ai'").message("project is only read for type vertex-ai"))]
#[x_kube(validation = Rule::new("!has(self.credentialsRef) || !has(self.credentialsRef.parts) || (self.type == 'bedrock' && has(self.credentialsRef.parts.accessKeyId) && has(self.credentialsRef.parts.secretAccessKey) && !has(self.credentialsRef.parts.tenantId) && !has(self.credentialsRef.parts.clientId) && !has(self.credentialsRef.parts.clientSecret)) || (self.type == 'azure-openai' && has(self.credentialsRef.parts.tenantId) && has(self.credentialsRef.parts.clientId) && has(self.credentialsRef.parts.clientSecret) && !has(self.credentialsRef.parts.accessKeyId) && !has(self.credentialsRef.parts.secretAccessKey) && !has(self.credentialsRef.parts.sessionToken))").message("credentialsRef.parts is for type bedrock (accessKeyId, secretAccessKey, optional sessionToken) and azure-openai (tenantId, clientId, clientSecret); every other credential is one key"))]
#[serde(rename_all = "camelCase")]
pub struct LlmProviderSpec {
    /// Wire format and defaults of the upstream: openai, anthropic, gemini, groq, mistral, cohere,
    /// perplexity, xai, deepseek, openrouter, together, the clouds azure-openai, bedrock and
    /// vertex-ai, ollama, openai-compatible, or mock (a built-in offline provider for demos and
    /// load tests).
    #[serde(rename = "type")]
    pub kind: ProviderKind,
    /// Base URL of the API (http or https). Optional: each type has its default. In a tenant
    /// namespace it must not point at loopback, link-local or private addresses unless the
    /// namespace annotation llm.dgidgi.io/allowed-endpoints allows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    #[x_kube(validation = Rule::new("isURL(self) && self.matches('^https?://[^/?#@]+([/?#].*)?$')").message("baseUrl must be an absolute http or https URL without credentials"))]
    pub base_url: Option<String>,
    /// The credential: a key of a Secret in the same namespace, or several (`parts`). Required
    /// except for ollama and mock. An API key for most types; for azure-openai an `api-key`,
    /// or the parts tenantId, clientId and clientSecret of a Microsoft Entra application; for
    /// bedrock a Bedrock API key, or the parts accessKeyId, secretAccessKey and optional
    /// sessionToken of an AWS access key (requests are signed with SigV4); for vertex-ai a
    /// service account's JSON key (exchanged for short-lived access tokens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_ref: Option<SecretKeyRef>,
    /// The cloud region the provider's endpoint is in: an AWS region for bedrock (us-east-1),
    /// a Google Cloud location for vertex-ai (us-east5, europe-west1, or global). Sets the
    /// default baseUrl, and for bedrock the region requests are signed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]+(-[a-z0-9]+)*$')").message("region must be lower-case letters, digits and dashes, such as us-east-1"))]
    pub region: Option<String>,
    /// The Google Cloud project id (type vertex-ai).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z][a-z0-9-]{4,61}[a-z0-9]$')").message("project must be a Google Cloud project id (6-30 lower-case letters, digits and dashes)"))]
    pub project: Option<String>,
    /// Azure OpenAI's deployments and API version (type azure-openai).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azure: Option<AzureSpec>,
    /// Use the gateway pod's own cloud identity instead of a stored credential (for
    /// organisations that forbid static cloud keys): aws-web-identity (IRSA) or
    /// eks-pod-identity for bedrock, gke-metadata (GKE Workload Identity) for vertex-ai,
    /// azure-workload-identity for azure-openai. The identity is the gateway's, so only
    /// providers in the platform namespace may use it; tokens are cached and refreshed before
    /// they expire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<crate::config::WorkloadIdentity>,
    /// Models this provider serves. Omitted: the built-in catalog for the type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    #[x_kube(validation = Rule::new("self.all(m, self.exists_one(o, o.name == m.name))").message("model names must be unique"))]
    pub models: Option<Vec<ModelSpec>>,
    /// The key's own quota at the provider; the gateway skips this provider when it is exhausted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<ProviderLimits>,
    /// How long the gateway waits for this provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeouts: Option<ProviderTimeouts>,
    /// What happens to a model name that neither `models` nor the built-in catalog lists:
    /// refused with 404 (the default), or forwarded as named, metered at a price and bounded
    /// by a maximum output set here, so a model released tomorrow works without a new release
    /// while budgets still hold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unlisted_models: Option<UnlistedModels>,
    /// Which `anthropic-beta` features clients may turn on at this provider (Anthropic-format
    /// providers; the client's header is otherwise forwarded as sent). A beta that changes
    /// what a request costs (`context-1m-*`) is never forwarded on the platform's keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub betas: Option<BetaFilter>,
    /// Whether this provider serves OpenAI's Responses API (`responses` beside its
    /// `chat/completions` endpoint). When it does, a client of the gateway's `/v1/responses`
    /// is passed through to it as sent; otherwise the request is translated to the provider's
    /// chat format. Defaults to true for type `openai` and for `azure-openai` on Azure's v1 API
    /// (no `azure.apiVersion`), false for every other type (set it
    /// for an OpenAI-compatible server that serves the API, such as vLLM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub responses_api: Option<bool>,
}

/// How an Azure OpenAI resource is called.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct AzureSpec {
    /// The deployment API's version (`2024-10-21`, `2025-04-01-preview`): requests go to
    /// `/openai/deployments/{deployment}/…?api-version=…`. Omitted: Azure's v1 API
    /// (`/openai/v1/…`, no version), which also serves the Responses API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new("self.matches('^[0-9]{4}-[0-9]{2}-[0-9]{2}(-preview)?$')").message("apiVersion looks like 2024-10-21 or 2025-04-01-preview"))]
    pub api_version: Option<String>,
    /// The deployment serving each model. A model not listed is called by its own name, which
    /// is how deployments are often named.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 128))]
    #[x_kube(validation = Rule::new("self.all(d, self.exists_one(o, o.model == d.model))").message("each model has one deployment"))]
    pub deployments: Vec<AzureDeployment>,
}

/// One model's Azure deployment.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct AzureDeployment {
    /// The model, as clients ask for it and the catalog (or `models`) prices it.
    #[schemars(length(min = 1, max = 128))]
    pub model: String,
    /// The deployment's name in the Azure resource.
    #[schemars(
        length(min = 1, max = 64),
        regex(pattern = "^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    )]
    pub deployment: String,
}

/// The provider's policy for models it does not list.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.action != 'Forward' || (has(self.maxOutputTokens) && has(self.pricing))").message("forwarding unlisted models needs maxOutputTokens and pricing, so reservations and budgets still hold"))]
pub struct UnlistedModels {
    /// Refuse (default): an unlisted model is a 404. Forward: sent to this provider as named.
    #[serde(default)]
    pub action: UnlistedAction,
    /// The most output tokens an unlisted model may generate in one answer: what a request
    /// without its own limit reserves, and the limit written into it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self > 0").message("maxOutputTokens must be positive"))]
    pub max_output_tokens: Option<u32>,
    /// Context window in tokens, if known (bounds what usage reports are believed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self > 0").message("contextWindow must be positive"))]
    pub context_window: Option<u32>,
    /// The price unlisted models are metered at (set the dearest you expect to forward).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pricing: Option<PricingSpec>,
}

/// What to do with an unlisted model.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
pub enum UnlistedAction {
    /// 404, as for any unknown model.
    #[default]
    Refuse,
    /// Send it to this provider as named.
    Forward,
}

/// Allow and deny lists of `anthropic-beta` values (a trailing `*` matches a prefix, as in
/// `context-1m-*`).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct BetaFilter {
    /// Only these betas are forwarded (empty: any not denied).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 128)))]
    pub allow: Vec<String>,
    /// These betas are never forwarded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 128)))]
    pub deny: Vec<String>,
}

/// One model served by a provider.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelSpec {
    /// The provider's own model id, e.g. claude-sonnet-4-5-20250929.
    #[schemars(length(max = 128))]
    #[x_kube(validation = Rule::new("self.size() > 0").message("model name must not be empty"))]
    pub name: String,
    /// Other names clients may use for this model, e.g. claude-sonnet-4-5.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16), inner(length(max = 128)))]
    pub aliases: Vec<String>,
    /// Whether the model supports streaming responses (default true).
    #[serde(default = "default_true")]
    pub streaming: bool,
    /// Whether the model supports tools / function calling (default true).
    #[serde(default = "default_true")]
    pub function_calling: bool,
    /// Context window in tokens, used to bound reservations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self > 0").message("contextWindow must be positive"))]
    pub context_window: Option<u32>,
    /// Largest completion the model produces, used to bound token reservations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self > 0").message("maxOutputTokens must be positive"))]
    pub max_output_tokens: Option<u32>,
    /// Price in USD per million tokens; drives cost metering and budgets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pricing: Option<PricingSpec>,
    /// An embedding model (default false): served on /v1/embeddings only, and chat requests
    /// never go to it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub embedding: bool,
}

fn default_true() -> bool {
    true
}

/// Model price in USD per million tokens (decimals allowed, converted to integer micro-USD).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct PricingSpec {
    /// USD per million input (prompt) tokens.
    #[x_kube(validation = Rule::new("self >= 0.0 && self <= 1000000.0").message("inputPerMillion must be between 0 and 1000000"))]
    pub input_per_million: f64,
    /// USD per million output (completion) tokens.
    #[x_kube(validation = Rule::new("self >= 0.0 && self <= 1000000.0").message("outputPerMillion must be between 0 and 1000000"))]
    pub output_per_million: f64,
    /// The dearer rates of a long prompt: a request whose input exceeds `aboveInputTokens` is
    /// priced at these rates throughout (how OpenAI prices prompts over 272K tokens, Anthropic
    /// its 1M-token context beta, Haiku 5.5 prompts over 100K). With it, the `context-1m-*`
    /// betas are forwarded on the platform's keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub long_context: Option<LongContextPricingSpec>,
}

/// Rates for requests with a long prompt.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct LongContextPricingSpec {
    /// Input tokens beyond which the request is priced at these rates.
    #[x_kube(validation = Rule::new("self > 0").message("aboveInputTokens must be positive"))]
    pub above_input_tokens: u64,
    /// USD per million input tokens for such a request.
    #[x_kube(validation = Rule::new("self >= 0.0 && self <= 1000000.0").message("inputPerMillion must be between 0 and 1000000"))]
    pub input_per_million: f64,
    /// USD per million output tokens for such a request.
    #[x_kube(validation = Rule::new("self >= 0.0 && self <= 1000000.0").message("outputPerMillion must be between 0 and 1000000"))]
    pub output_per_million: f64,
}

/// The provider key's own quota.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProviderLimits {
    /// Requests per minute the key allows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self > 0").message("requestsPerMinute must be positive"))]
    pub requests_per_minute: Option<u64>,
    /// Tokens per minute the key allows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self > 0").message("tokensPerMinute must be positive"))]
    pub tokens_per_minute: Option<u64>,
}

/// Timeouts as duration strings (`200ms`, `5s`, `10m`).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProviderTimeouts {
    /// Time to establish the TCP/TLS connection (default 5s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new(TIMEOUT_RULE).message("connect must be a non-zero duration such as 200ms, 5s or 1m"))]
    pub connect: Option<String>,
    /// Time until the first response byte (default 60s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new(TIMEOUT_RULE).message("firstByte must be a non-zero duration such as 200ms, 5s or 1m"))]
    pub first_byte: Option<String>,
    /// Time for the whole response, streaming included (default 600s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new(TIMEOUT_RULE).message("total must be a non-zero duration such as 200ms, 5s or 1m"))]
    pub total: Option<String>,
}

/// Observed state of a provider, written by the operator (or `dgidgi render`'s status output).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LlmProviderStatus {
    /// Number of models the gateway will route to on this provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub models: Option<u32>,
    /// Standard conditions: Ready.
    #[serde(default)]
    pub conditions: Vec<Condition>,
}
