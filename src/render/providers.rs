//! Provider resolution: each LlmProvider's endpoint, key, models, limits and timeouts, or the
//! reason it cannot be used. Keys are looked up only in the provider's own namespace.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, LazyLock, Mutex};

use crate::crypto::Credential;

use super::report::{READY, RenderReport, ReportEntry};
use super::{ObjectKey, RenderContext, RenderInput, ResourceKind};
use crate::config::{
    BetaFilterConfig, CloudConfig, LongContextPricing, ModelConfig, PricingConfig, ProviderConfig,
    ProviderLimitsConfig, Scope, TimeoutsConfig, UNLISTED_MODEL,
};
use crate::crd::common::{
    ConditionStatus, ConditionUpdate, merge_conditions, parse_timeout_ms, usd_to_micros,
};
use crate::crd::provider::{LlmProviderSpec, ModelSpec, PricingSpec, UnlistedAction};
use crate::crd::{LlmProvider, LlmProviderStatus};
use crate::endpoints::{AllowList, check_tenant_endpoint, reject_credentials};
use crate::providers::ProviderKind;

/// A provider key to be stored in the key store.
pub struct CredentialRow {
    /// Row id (`<namespace>/<name>`).
    pub id: String,
    /// Owning namespace.
    pub tenant_id: String,
    /// Provider type.
    pub provider: String,
    /// The credential.
    pub value: Credential,
}

/// Every provider's outcome.
#[derive(Default)]
pub struct ResolvedProviders {
    /// Ready providers' configs, in (namespace, name) order.
    pub configs: Vec<ProviderConfig>,
    /// Index into `configs` by namespace/name.
    pub ready: BTreeMap<ObjectKey, usize>,
    /// Every LlmProvider seen, Ready or not, valid or not.
    pub known: BTreeSet<ObjectKey>,
    /// Keys of Ready providers, sorted by row id.
    pub credentials: Vec<CredentialRow>,
}

impl ResolvedProviders {
    /// The Ready provider config at namespace/name.
    pub fn get(&self, namespace: &str, name: &str) -> Option<&ProviderConfig> {
        self.ready
            .get(&ObjectKey::new(namespace, name))
            .map(|&index| &self.configs[index])
    }

    /// Ready providers of one namespace, in name order.
    pub fn in_namespace<'a>(
        &'a self,
        namespace: &'a str,
    ) -> impl Iterator<Item = &'a ProviderConfig> + 'a {
        // `configs` is in (namespace, name) order (the inputs' order), so a namespace's
        // providers are one contiguous run: found by halves, not by a scan of every provider for
        // every tenant (10,000 providers × 100,000 tenants).
        let start = self
            .configs
            .partition_point(|p| p.namespace.as_str() < namespace);
        self.configs[start..]
            .iter()
            .take_while(move |p| p.namespace == namespace)
    }
}

/// Why a provider cannot be used.
struct Refusal {
    reason: &'static str,
    message: String,
}

fn refuse(reason: &'static str, message: impl Into<String>) -> Refusal {
    Refusal {
        reason,
        message: message.into(),
    }
}

/// Resolves every LlmProvider, recording each one's status in `report`.
pub fn resolve_all(
    input: &RenderInput,
    ctx: &RenderContext,
    previous: &RenderReport,
    report: &mut RenderReport,
) -> ResolvedProviders {
    let mut out = ResolvedProviders::default();
    out.known.extend(
        input
            .invalid
            .iter()
            .filter(|r| r.kind == ResourceKind::LlmProvider)
            .map(|r| r.key.clone()),
    );
    for (key, provider) in &input.providers {
        out.known.insert(key.clone());
        let outcome = resolve_one(input, ctx, key, &provider.spec);
        let (conditions, models) = match outcome {
            Ok((config, credential)) => {
                let models = config.models.len() as u32;
                let message = if config.open_catalog && config.models.is_empty() {
                    "serves any model the endpoint offers".to_owned()
                } else if config.unlisted.is_some() {
                    format!("{models} model(s) available, and any other forwarded as named")
                } else {
                    format!("{models} model(s) available")
                };
                if let Some(credential) = credential {
                    out.credentials.push(credential);
                }
                out.ready.insert(key.clone(), out.configs.len());
                out.configs.push(config);
                (
                    vec![ConditionUpdate::new(
                        READY,
                        ConditionStatus::True,
                        "Resolved",
                        message,
                    )],
                    Some(models),
                )
            }
            Err(refusal) => {
                tracing::warn!(provider = ?key.to_string(), reason = refusal.reason, problem = ?refusal.message, "provider not ready");
                (
                    vec![ConditionUpdate::new(
                        READY,
                        ConditionStatus::False,
                        refusal.reason,
                        refusal.message,
                    )],
                    None,
                )
            }
        };
        report.providers.push(ReportEntry {
            namespace: key.namespace.clone(),
            name: key.name.clone(),
            status: LlmProviderStatus {
                models,
                conditions: merge_conditions(
                    previous.conditions(ResourceKind::LlmProvider, key),
                    conditions,
                    provider_generation(provider),
                    ctx.now,
                ),
            },
        });
    }
    out.credentials.sort_by(|a, b| a.id.cmp(&b.id));
    out
}

fn provider_generation(provider: &LlmProvider) -> Option<i64> {
    provider.metadata.generation
}

fn resolve_one(
    input: &RenderInput,
    ctx: &RenderContext,
    key: &ObjectKey,
    spec: &LlmProviderSpec,
) -> Result<(ProviderConfig, Option<CredentialRow>), Refusal> {
    let scope = if key.namespace == ctx.platform_namespace {
        Scope::Platform
    } else {
        Scope::Tenant
    };
    let defaults = spec.kind.defaults();

    let base_url = spec
        .base_url
        .as_deref()
        .map(str::to_owned)
        .or_else(|| {
            defaults
                .base_url
                .map(|url| regional(url, spec.region.as_deref()))
        })
        .map(|url| url.trim_end_matches('/').to_owned());
    if base_url.is_none() && spec.kind != crate::providers::ProviderKind::Mock {
        return Err(refuse(
            "BaseUrlMissing",
            format!(
                "type {} has no default baseUrl; set spec.baseUrl",
                spec.kind
            ),
        ));
    }

    if let Some(url) = &base_url {
        if url.contains("{region}") {
            return Err(refuse(
                "RegionMissing",
                format!("type {} needs spec.region (or a spec.baseUrl)", spec.kind),
            ));
        }
        reject_credentials(url).map_err(|e| refuse("CredentialsInUrl", e.to_string()))?;
    }
    if spec.kind == ProviderKind::Bedrock && spec.region.as_deref() == Some("global") {
        return Err(refuse(
            "RegionInvalid",
            "Bedrock has no global region: set the AWS region to call (global inference profiles are model ids, such as global.anthropic.claude-sonnet-4-5-20250929-v1:0)",
        ));
    }
    let azure_deployment_api = spec.azure.as_ref().is_some_and(|a| a.api_version.is_some());
    if spec.kind == ProviderKind::AzureOpenai
        && azure_deployment_api
        && spec.responses_api == Some(true)
    {
        return Err(refuse(
            "InvalidSpec",
            "Azure's deployment API (azure.apiVersion) serves no Responses API; leave out apiVersion to use Azure's v1 API, or responsesApi",
        ));
    }
    if spec.identity.is_some() && scope == Scope::Tenant {
        return Err(refuse(
            "IdentityNotAllowed",
            "identity is the gateway's own cloud identity: only providers in the platform namespace may use it; bring a credential in credentialsRef",
        ));
    }
    let credential = credential_row(input, key, spec)?;
    let mut allowed_endpoints = Vec::new();
    if scope == Scope::Tenant {
        let namespace = input.namespace(&key.namespace);
        let allow = AllowList::for_namespace(&namespace.annotations);
        if let Some(url) = &base_url {
            check_tenant_endpoint(url, &allow)
                .map_err(|e| refuse("EndpointNotAllowed", e.to_string()))?;
        }
        // A tenant's service account names the token endpoint the gateway posts to: it is
        // checked as its API's URL is, and must be https (it receives a signed assertion).
        if let Some(token_uri) = credential
            .as_ref()
            .and_then(|row| token_uri(spec.kind, &row.value))
        {
            if !token_uri.starts_with("https://") {
                return Err(refuse(
                    "EndpointNotAllowed",
                    "the service account's token_uri must be an https URL",
                ));
            }
            check_tenant_endpoint(&token_uri, &allow).map_err(|e| {
                refuse(
                    "EndpointNotAllowed",
                    format!("the service account's token_uri: {e}"),
                )
            })?;
        }
        allowed_endpoints = allow.entries();
    }
    let (models, open_catalog) = catalog(spec)?;

    let timeouts = timeouts(spec)?;
    let limits = spec.limits.as_ref().map(|l| ProviderLimitsConfig {
        requests_per_minute: l.requests_per_minute,
        tokens_per_minute: l.tokens_per_minute,
    });

    Ok((
        ProviderConfig {
            id: key.to_string(),
            namespace: key.namespace.clone(),
            name: key.name.clone(),
            kind: spec.kind,
            scope,
            base_url,
            credential: credential.as_ref().map(|c| c.id.clone()),
            open_catalog,
            models,
            unlisted: unlisted(spec)?,
            betas: beta_filter(spec),
            responses_api: spec.responses_api.unwrap_or_else(|| {
                // Azure serves the Responses API on its v1 API only.
                spec.kind.serves_responses_api()
                    || (spec.kind == ProviderKind::AzureOpenai
                        && spec.azure.as_ref().is_none_or(|a| a.api_version.is_none()))
            }),
            limits,
            timeouts,
            allowed_endpoints,
            cloud: cloud(spec),
            identity: spec.identity,
        },
        credential,
    ))
}

/// Whether the catalog's Claude prices (Anthropic's list prices, which Vertex AI charges on its
/// global endpoint) are 10 % dearer here: Claude on a regional Vertex endpoint.
fn regional_claude_surcharge(spec: &LlmProviderSpec) -> bool {
    spec.kind == ProviderKind::VertexAi && spec.region.as_deref().is_some_and(|r| r != "global")
}

/// A default base URL in the provider's region: `{region}` replaced, and Vertex AI's
/// `global` location, which has no regional host, at the bare one.
fn regional(url: &str, region: Option<&str>) -> String {
    match region {
        Some("global") => url.replace("{region}-", ""),
        Some(region) => url.replace("{region}", region),
        None => url.to_owned(),
    }
}

/// Where a cloud-hosted provider's endpoints are.
fn cloud(spec: &LlmProviderSpec) -> CloudConfig {
    let azure = spec.azure.clone().unwrap_or_default();
    CloudConfig {
        region: spec.region.clone(),
        project: spec.project.clone(),
        api_version: azure.api_version,
        deployments: azure
            .deployments
            .into_iter()
            .map(|d| (d.model, d.deployment))
            .collect(),
    }
}

/// The key store row of a provider's key, read from the Secret its `credentialsRef` names in
/// its own namespace (`None`: the type needs no key).
fn credential_row(
    input: &RenderInput,
    key: &ObjectKey,
    spec: &LlmProviderSpec,
) -> Result<Option<CredentialRow>, Refusal> {
    Ok(match &spec.credentials_ref {
        None if spec.kind.requires_credentials() && spec.identity.is_none() => {
            return Err(refuse(
                "CredentialsMissing",
                format!("type {} needs spec.credentialsRef", spec.kind),
            ));
        }
        None => None,
        Some(reference) => {
            let secret_key = ObjectKey::new(&key.namespace, &reference.name);
            let secret = input.secrets.get(&secret_key).ok_or_else(|| {
                refuse(
                    "SecretNotFound",
                    format!(
                        "Secret {:?} not found in namespace {:?} (references never leave their namespace)",
                        reference.name, key.namespace
                    ),
                )
            })?;
            let value = match &reference.parts {
                None => {
                    Credential::key(secret_value(secret, &reference.name, &reference.key)?.to_vec())
                }
                Some(parts) => {
                    let parts = parts
                        .named()
                        .map(|(part, secret_key)| {
                            let value = secret_value(secret, &reference.name, secret_key)?;
                            Ok((part, zeroize::Zeroizing::new(value.to_vec())))
                        })
                        .collect::<Result<Vec<_>, Refusal>>()?;
                    Credential::parts(parts)
                        .map_err(|error| refuse("CredentialPartsInvalid", error.to_string()))?
                }
            };
            check_credential_shape(spec.kind, &value)?;
            Some(CredentialRow {
                id: key.to_string(),
                tenant_id: key.namespace.clone(),
                provider: spec.kind.as_str().to_owned(),
                value,
            })
        }
    })
}

/// One key's value of a Secret, trimmed; missing, undecodable or empty is a refusal that names
/// the key (never the value).
fn secret_value<'a>(
    secret: &'a super::SecretValues,
    secret_name: &str,
    secret_key: &str,
) -> Result<&'a [u8], Refusal> {
    if secret.undecodable.iter().any(|k| k == secret_key) {
        return Err(refuse(
            "SecretKeyInvalid",
            format!("key {secret_key:?} of Secret {secret_name:?} is not valid base64"),
        ));
    }
    let value = secret.data.get(secret_key).ok_or_else(|| {
        refuse(
            "SecretKeyNotFound",
            format!("Secret {secret_name:?} has no key {secret_key:?}"),
        )
    })?;
    let trimmed = trim_ascii_whitespace(value);
    if trimmed.is_empty() {
        return Err(refuse(
            "SecretValueEmpty",
            format!("key {secret_key:?} of Secret {secret_name:?} is empty"),
        ));
    }
    Ok(trimmed)
}

/// The token endpoint a credential names (a Vertex AI service account's `token_uri`).
fn token_uri(kind: ProviderKind, credential: &Credential) -> Option<String> {
    if kind != ProviderKind::VertexAi {
        return None;
    }
    let account =
        crate::providers::grants::ServiceAccount::from_json(credential.api_key()?).ok()?;
    Some(account.token_uri)
}

/// Whether a credential has the parts its type signs with (the CRD's CEL rule says the same
/// to `kubectl apply`; this covers the offline render and explains which part is missing).
fn check_credential_shape(kind: ProviderKind, credential: &Credential) -> Result<(), Refusal> {
    let Credential::Parts(parts) = credential else {
        // A Vertex AI credential is a service account's JSON key: read now, so a wrong file
        // is reported on the resource rather than on its first request (the error names no
        // value).
        if kind == ProviderKind::VertexAi
            && let Some(json) = credential.api_key()
        {
            crate::providers::grants::ServiceAccount::from_json(json)
                .map_err(|error| refuse("CredentialInvalid", error.to_string()))?;
        }
        return Ok(());
    };
    let shape = kind.credential_parts().ok_or_else(|| {
        refuse(
            "CredentialPartsInvalid",
            format!("type {kind} takes one key, not credentialsRef.parts"),
        )
    })?;
    if let Some(missing) = shape.required.iter().find(|p| !parts.contains_key(**p)) {
        return Err(refuse(
            "CredentialPartsInvalid",
            format!("type {kind} needs the credential part {missing:?}"),
        ));
    }
    if let Some(unknown) = parts
        .keys()
        .find(|p| !shape.required.contains(&p.as_str()) && !shape.optional.contains(&p.as_str()))
    {
        return Err(refuse(
            "CredentialPartsInvalid",
            format!("type {kind} takes no credential part {unknown:?}"),
        ));
    }
    Ok(())
}

/// The models a provider serves, sorted by name, and whether others are accepted: the CR's
/// own list (closed), or its type's catalog.
fn catalog(spec: &LlmProviderSpec) -> Result<(Arc<[ModelConfig]>, bool), Refusal> {
    let Some(models) = &spec.models else {
        let surcharge = regional_claude_surcharge(spec);
        return Ok((
            type_catalog(spec.kind, surcharge),
            spec.kind.defaults().open_catalog,
        ));
    };
    let mut models = models
        .iter()
        .map(model_from_spec)
        .collect::<Result<Vec<_>, _>>()?;
    check_unique_model_names(&models)?;
    models.sort_by(|a, b| a.name.cmp(&b.name));
    Ok((models.into(), false))
}

/// A type's catalog as a provider's model list, with the regional surcharge on the models of
/// another format than the type's (Claude on a regional Vertex AI endpoint) when `surcharge`.
/// Built once per process and shared by every provider that keeps its type's catalog: at
/// 100,000 tenants, one in ten with its own provider, a list per provider was 10,000 copies
/// of the same 18 models.
fn type_catalog(kind: ProviderKind, surcharge: bool) -> Arc<[ModelConfig]> {
    type Built = HashMap<(ProviderKind, bool), Arc<[ModelConfig]>>;
    static BUILT: LazyLock<Mutex<Built>> = LazyLock::new(Mutex::default);
    let build = || -> Arc<[ModelConfig]> {
        let mut models: Vec<ModelConfig> = kind
            .defaults()
            .models
            .iter()
            .map(model_from_catalog)
            .collect();
        models.sort_by(|a, b| a.name.cmp(&b.name));
        if surcharge {
            for model in models
                .iter_mut()
                .filter(|m| kind.format_of(&m.name) != kind.format())
            {
                model.pricing = model.pricing.map(PricingConfig::with_regional_surcharge);
            }
        }
        models.into()
    };
    // A poisoned lock only means another thread panicked mid-insert of a pure value.
    let mut built = BUILT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    Arc::clone(built.entry((kind, surcharge)).or_insert_with(build))
}

/// The `anthropic-beta` filter, lower-cased as the gateway compares.
fn beta_filter(spec: &LlmProviderSpec) -> BetaFilterConfig {
    let lower =
        |list: &[String]| -> Vec<String> { list.iter().map(|b| b.to_ascii_lowercase()).collect() };
    spec.betas
        .as_ref()
        .map(|betas| BetaFilterConfig {
            allow: lower(&betas.allow),
            deny: lower(&betas.deny),
        })
        .unwrap_or_default()
}

/// API keys pasted into Secrets often carry a trailing newline (`echo key | base64`).
fn trim_ascii_whitespace(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |i| i + 1);
    &bytes[start..end]
}

fn pricing(spec: &PricingSpec) -> Result<PricingConfig, Refusal> {
    let convert = |field: &str, usd: f64| {
        usd_to_micros(usd).ok_or_else(|| {
            refuse(
                "InvalidPricing",
                format!("{field} {usd} is not a valid USD amount"),
            )
        })
    };
    let long_context = match &spec.long_context {
        None => None,
        Some(long) => Some(LongContextPricing {
            above_input_tokens: long.above_input_tokens,
            input_micro_usd_per_million: convert(
                "longContext.inputPerMillion",
                long.input_per_million,
            )?,
            output_micro_usd_per_million: convert(
                "longContext.outputPerMillion",
                long.output_per_million,
            )?,
        }),
    };
    Ok(PricingConfig {
        input_micro_usd_per_million: convert("inputPerMillion", spec.input_per_million)?,
        output_micro_usd_per_million: convert("outputPerMillion", spec.output_per_million)?,
        long_context,
    })
}

/// The model standing for every name the provider does not list, when it forwards them.
fn unlisted(spec: &LlmProviderSpec) -> Result<Option<ModelConfig>, Refusal> {
    let Some(unlisted) = spec
        .unlisted_models
        .as_ref()
        .filter(|u| u.action == UnlistedAction::Forward)
    else {
        return Ok(None);
    };
    // The CRD's rule requires both; a config rendered from files skips the API server.
    let (Some(max_output_tokens), Some(pricing_spec)) =
        (unlisted.max_output_tokens, unlisted.pricing.as_ref())
    else {
        return Err(refuse(
            "UnlistedModelsUnbounded",
            "forwarding unlisted models needs maxOutputTokens and pricing, so reservations and budgets still hold".to_owned(),
        ));
    };
    Ok(Some(ModelConfig {
        embedding: false,
        name: UNLISTED_MODEL.to_owned(),
        aliases: Vec::new(),
        streaming: true,
        function_calling: true,
        context_window: unlisted.context_window,
        max_output_tokens: Some(max_output_tokens),
        pricing: Some(pricing(pricing_spec)?),
    }))
}

fn model_from_spec(spec: &ModelSpec) -> Result<ModelConfig, Refusal> {
    let mut aliases = spec.aliases.clone();
    aliases.sort();
    aliases.dedup();
    Ok(ModelConfig {
        embedding: spec.embedding,
        name: spec.name.clone(),
        aliases,
        streaming: spec.streaming,
        function_calling: spec.function_calling,
        context_window: spec.context_window,
        max_output_tokens: spec.max_output_tokens,
        pricing: spec.pricing.as_ref().map(pricing).transpose()?,
    })
}

fn model_from_catalog(model: &crate::providers::catalog::CatalogModel) -> ModelConfig {
    let mut aliases: Vec<String> = model.aliases.iter().map(|a| (*a).to_owned()).collect();
    aliases.sort();
    ModelConfig {
        embedding: model.embedding,
        name: model.name.to_owned(),
        aliases,
        streaming: model.streaming,
        function_calling: model.function_calling,
        context_window: Some(model.context_window),
        max_output_tokens: Some(model.max_output_tokens),
        pricing: Some(PricingConfig {
            input_micro_usd_per_million: usd_to_micros(model.input_per_million).unwrap_or(0),
            output_micro_usd_per_million: usd_to_micros(model.output_per_million).unwrap_or(0),
            long_context: model.long_context.as_ref().map(|long| LongContextPricing {
                above_input_tokens: long.above_input_tokens,
                input_micro_usd_per_million: usd_to_micros(long.input_per_million).unwrap_or(0),
                output_micro_usd_per_million: usd_to_micros(long.output_per_million).unwrap_or(0),
            }),
        }),
    }
}

fn check_unique_model_names(models: &[ModelConfig]) -> Result<(), Refusal> {
    let mut seen = BTreeSet::new();
    for model in models {
        for name in std::iter::once(&model.name).chain(&model.aliases) {
            if !seen.insert(name.as_str()) {
                return Err(refuse(
                    "DuplicateModelName",
                    format!("model name or alias {name:?} is used twice"),
                ));
            }
        }
    }
    Ok(())
}

fn timeouts(spec: &LlmProviderSpec) -> Result<TimeoutsConfig, Refusal> {
    let defaults = TimeoutsConfig::default();
    let Some(t) = &spec.timeouts else {
        return Ok(defaults);
    };
    let parse = |field: &str, value: &Option<String>, fallback: u64| match value {
        None => Ok(fallback),
        Some(text) => parse_timeout_ms(text)
            .map_err(|e| refuse("InvalidDuration", format!("timeouts.{field}: {e}"))),
    };
    Ok(TimeoutsConfig {
        connect_ms: parse("connect", &t.connect, defaults.connect_ms)?,
        first_byte_ms: parse("firstByte", &t.first_byte, defaults.first_byte_ms)?,
        total_ms: parse("total", &t.total, defaults.total_ms)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_catalog_has_unique_names_and_is_built_once() {
        // Every type, from the schema the CRD publishes (a type added later is checked too).
        let schema = serde_json::to_value(schemars::schema_for!(ProviderKind)).unwrap();
        // One variant each, with its doc comment: `{"const": "openai", …}` or `{"enum": […]}`.
        let kinds: Vec<ProviderKind> = schema["oneOf"]
            .as_array()
            .expect("ProviderKind's schema lists its values")
            .iter()
            .flat_map(|variant| match &variant["enum"] {
                serde_json::Value::Array(names) => names.clone(),
                _ => vec![variant["const"].clone()],
            })
            .map(|name| serde_json::from_value(name).unwrap())
            .collect();
        assert!(kinds.len() >= 15, "{kinds:?}");
        for kind in kinds {
            for surcharge in [false, true] {
                let models = type_catalog(kind, surcharge);
                // What every CR's own list must pass, the catalogs pass too.
                assert!(check_unique_model_names(&models).is_ok(), "{kind:?}");
                assert!(
                    models.windows(2).all(|w| w[0].name <= w[1].name),
                    "{kind:?}"
                );
                assert!(Arc::ptr_eq(&models, &type_catalog(kind, surcharge)));
            }
        }
    }
}
