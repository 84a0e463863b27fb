//! The routing decision for one request, as a pure function: which provider/model pairs may
//! serve it, in which order, under which source. The gateway walks the plan (retrying and
//! falling back before the first byte); nothing here does I/O, so every rule of DESIGN §2 is
//! tested without a network.

use crate::config::Source;
use crate::config::{
    CompiledRule, GatewayConfig, ModelConfig, ProviderConfig, RetryConfig, Scope, TenantConfig,
    UNLISTED_MODEL,
};

use super::glob;

/// What routing needs to know about a request.
#[derive(Clone, Copy, Debug, Default)]
pub struct RouteRequest<'a> {
    /// The `model` field, possibly `provider/model`.
    pub model: Option<&'a str>,
    /// The `x-dgidgi-provider` header: a provider name the request narrows to.
    pub provider: Option<&'a str>,
    /// Whether the client asked for a stream.
    pub stream: bool,
    /// Whether the request carries tools.
    pub tools: bool,
    /// Whether it asks for embeddings (served by embedding models only, which serve nothing
    /// else).
    pub embeddings: bool,
}

/// One provider/model pair to try.
#[derive(Clone, Debug, PartialEq)]
pub struct Attempt<'a> {
    /// Where it goes: a configured provider, or a cli tenant's endpoint as its provider.
    pub provider: &'a ProviderConfig,
    /// The model name to send upstream.
    pub model: String,
    /// Its entry in the provider's catalog (or the unlisted models' one), looked up once
    /// here for every later reader: capabilities, pricing, output caps.
    pub model_config: Option<&'a ModelConfig>,
    /// Whether it comes from a fallback chain (counted in `x-dgidgi-fallback`).
    pub fallback: bool,
}

/// The ordered attempts for a request and how to pace them.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan<'a> {
    /// The source that serves the request (platform-served traffic is metered and limited).
    pub source: Source,
    /// Attempts in order; the first that answers before failing wins.
    pub attempts: Vec<Attempt<'a>>,
    /// Retries per attempt.
    pub retry: RetryConfig,
    /// Overall deadline in milliseconds, when a rule sets one.
    pub timeout_ms: Option<u64>,
    /// The model the client asked for (or the tenant's preferred one), for errors and records.
    pub requested_model: String,
}

/// Why no plan could be made; each maps to a clear client error.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// No `model` and no preferred model.
    #[error("no model was given and the tenant has no preferred model")]
    NoModel,
    /// Nothing this tenant may use serves the model.
    #[error("the model {0:?} does not exist or is not available to this tenant")]
    UnknownModel(String),
    /// The request narrowed to a provider this tenant may not use.
    #[error("provider {0:?} is not available to this tenant")]
    ProviderNotAllowed(String),
    /// Providers serve the model, but none with a capability the request needs.
    #[error("no provider serving {model:?} supports {capability}")]
    MissingCapability {
        /// The model.
        model: String,
        /// `streaming` or `tools`.
        capability: &'static str,
    },
    /// A cli-source tenant without a usable endpoint.
    #[error("this tenant's cli endpoint is not configured or not allowed")]
    CliUnavailable,
    /// The platform serves the model, but the tenant's tier may not use it.
    #[error(
        "the {tier} tier may not use {model:?} on the platform's providers; ask the platform for another tier, or use one of the tier's models (GET /v1/models lists them)"
    )]
    ModelNotInTier {
        /// The tenant's tier.
        tier: String,
        /// The model asked for.
        model: String,
    },
}

/// Whether the tenant's tier may use an attempt (its `provider/model` matches one of the
/// tier's globs, or the tier names none). Only the platform's providers are bound by tiers.
pub fn tier_allows(tenant: &TenantConfig, provider: &ProviderConfig, model: &str) -> bool {
    if tenant.allowed_models.is_empty() || provider.scope != Scope::Platform {
        return true;
    }
    let name = format!("{}/{model}", provider.name);
    tenant
        .allowed_models
        .iter()
        .any(|glob| super::glob::matches(glob, &name))
}

/// Plans a request. `pick` is a uniformly random number that drives the weighted choice, so
/// the function stays pure and tests can pin it.
pub fn plan<'a>(
    config: &'a GatewayConfig,
    tenant: &'a TenantConfig,
    request: &RouteRequest<'_>,
    pick: u64,
) -> Result<Plan<'a>, RouteError> {
    if tenant.source == Source::Cli {
        return plan_cli(tenant, request);
    }
    let pools = pools(config, tenant);
    let (narrowed_to, model) = narrow(request, tenant, &pools)?;
    let mut first_error = None;
    for (source, pool) in &pools {
        let pool: Vec<&ProviderConfig> = pool
            .iter()
            .copied()
            .filter(|p| narrowed_to.as_deref().is_none_or(|name| p.name == name))
            .collect();
        match plan_in_pool(config, tenant, &pool, &model, request, pick) {
            Ok((mut attempts, retry, timeout_ms)) => {
                attempts.retain(|attempt| tier_allows(tenant, attempt.provider, &attempt.model));
                if attempts.is_empty() {
                    // Served here, but not for this tier: says more than "unknown" elsewhere.
                    first_error = Some(RouteError::ModelNotInTier {
                        tier: tenant.tier.clone(),
                        model: model.clone(),
                    });
                    continue;
                }
                return Ok(Plan {
                    source: *source,
                    attempts,
                    retry,
                    timeout_ms,
                    requested_model: model,
                });
            }
            // A missing capability says more than "unknown" from a pool that lacks the model.
            Err(error) => match (&first_error, &error) {
                (None, _)
                | (Some(RouteError::UnknownModel(_)), RouteError::MissingCapability { .. }) => {
                    first_error = Some(error);
                }
                _ => {}
            },
        }
    }
    Err(first_error.unwrap_or(RouteError::UnknownModel(model)))
}

/// The providers a tenant may reach, by source, in the order they are tried: a tenant-source
/// tenant's own providers (then the platform's, only with `allowPlatformFallback`), a
/// platform-source tenant's the platform's, a cli tenant none (its endpoint is planned apart, see `plan_cli`).
/// The one place the source boundary is drawn; `/v1/models` lists the same pools.
pub fn pools<'a>(
    config: &'a GatewayConfig,
    tenant: &TenantConfig,
) -> Vec<(Source, Vec<&'a ProviderConfig>)> {
    let mut pools = Vec::with_capacity(2);
    if tenant.source == Source::Tenant {
        // In the config's (namespace, name) order, as the platform pool is.
        let mut own: Vec<&ProviderConfig> = tenant
            .providers
            .iter()
            .filter_map(|id| config.provider(id))
            .filter(|p| p.scope == Scope::Tenant)
            .collect();
        own.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        own.dedup_by(|a, b| a.id == b.id);
        pools.push((Source::Tenant, own));
    }
    if tenant
        .source
        .reaches_platform(tenant.allow_platform_fallback)
    {
        pools.push((Source::Platform, config.platform_providers().collect()));
    }
    pools
}

/// Applies the narrowing header or a `provider/model` prefix. Returns the provider name the
/// request is narrowed to (if any) and the model name.
fn narrow(
    request: &RouteRequest<'_>,
    tenant: &TenantConfig,
    pools: &[(Source, Vec<&ProviderConfig>)],
) -> Result<(Option<String>, String), RouteError> {
    let visible = |name: &str| {
        pools
            .iter()
            .any(|(_, pool)| pool.iter().any(|p| p.name == name))
    };
    let mut model = request
        .model
        .filter(|m| !m.is_empty())
        .map(str::to_owned)
        .or_else(|| tenant.preferred_model.clone())
        .ok_or(RouteError::NoModel)?;
    let mut narrowed = None;
    // `openai/gpt-4o` narrows to provider `openai` only when such a provider is visible;
    // otherwise it is a model name (OpenRouter's ids look like that).
    if let Some((prefix, rest)) = model.split_once('/')
        && !rest.is_empty()
        && visible(prefix)
    {
        narrowed = Some(prefix.to_owned());
        model = rest.to_owned();
    }
    if let Some(header) = request.provider.filter(|h| !h.is_empty()) {
        if !visible(header) || narrowed.as_deref().is_some_and(|n| n != header) {
            return Err(RouteError::ProviderNotAllowed(header.to_owned()));
        }
        narrowed = Some(header.to_owned());
    }
    Ok((narrowed, model))
}

type PoolPlan<'a> = (Vec<Attempt<'a>>, RetryConfig, Option<u64>);

fn plan_in_pool<'a>(
    config: &'a GatewayConfig,
    tenant: &'a TenantConfig,
    pool: &[&'a ProviderConfig],
    model: &str,
    request: &RouteRequest<'_>,
    pick: u64,
) -> Result<PoolPlan<'a>, RouteError> {
    let in_pool = |id: &str| pool.iter().copied().find(|p| p.id == id);
    let mut attempts: Vec<Attempt<'a>> = Vec::new();
    let mut retry = RetryConfig::default();
    let mut timeout_ms = None;
    // The first matching rule with a target in this pool decides; a rule whose targets all lie
    // outside the pool (a platform rule, for a tenant's own keys) does not block the others.
    for rule in config
        .routing
        .iter()
        .filter(|rule| applies(rule, tenant, model, request))
    {
        // A target that serves another kind of request (an embedding model, for chat) is no
        // target of this one: a catch-all rule for chat models does not capture embeddings.
        let of_kind = |provider: &ProviderConfig, target_model: &str| {
            capabilities(provider, provider.model(target_model))
                .serves
                .serves(request.embeddings)
        };
        let targets: Vec<(&'a ProviderConfig, &str, u32)> = rule
            .targets
            .iter()
            .filter_map(|t| in_pool(&t.provider).map(|p| (p, t.model.as_str(), t.weight)))
            .filter(|(p, target_model, _)| of_kind(p, target_model))
            .collect();
        for (provider, target_model) in weighted_order(&targets, pick) {
            push_attempt(&mut attempts, provider, target_model, false);
        }
        for target in &rule.fallback {
            if let Some(provider) = in_pool(&target.provider)
                && of_kind(provider, &target.model)
            {
                push_attempt(&mut attempts, provider, &target.model, true);
            }
        }
        if !attempts.is_empty() {
            retry = rule.retry.clone();
            timeout_ms = rule.timeout_ms;
            break;
        }
    }
    if attempts.is_empty() {
        // No rule: every provider in the pool that serves the model, the preferred first.
        let mut serving: Vec<&'a ProviderConfig> =
            pool.iter().copied().filter(|p| p.serves(model)).collect();
        serving.sort_by_key(|p| Some(&p.id) != tenant.preferred_provider.as_ref());
        for provider in serving {
            push_attempt(&mut attempts, provider, model, false);
        }
    }
    // The tenant's preferred provider/model is the last fallback.
    if let (Some(preferred), Some(preferred_model)) =
        (&tenant.preferred_provider, &tenant.preferred_model)
        && let Some(provider) = in_pool(preferred)
        && !attempts.is_empty()
    {
        push_attempt(&mut attempts, provider, preferred_model, true);
    }
    if attempts.is_empty() {
        return Err(RouteError::UnknownModel(model.to_owned()));
    }
    // What each attempt can do, looked up once.
    let able: Vec<Capabilities> = attempts
        .iter()
        .map(|a| capabilities(a.provider, a.model_config))
        .collect();
    let any_streams = able.iter().any(|c| c.streams);
    let any_kind = able.iter().any(|c| c.serves.serves(request.embeddings));
    let mut able = able.into_iter();
    attempts.retain(|_| {
        able.next().is_some_and(|c| {
            c.serves.serves(request.embeddings)
                && (!request.stream || c.streams)
                && (!request.tools || c.tools)
        })
    });
    if attempts.is_empty() {
        let capability = if !any_kind && request.embeddings {
            "embeddings"
        } else if !any_kind {
            "chat"
        } else if request.stream && !any_streams {
            "streaming"
        } else {
            "tools"
        };
        return Err(RouteError::MissingCapability {
            model: model.to_owned(),
            capability,
        });
    }
    Ok((attempts, retry, timeout_ms))
}

/// What an attempt can do: stream, call tools, and which kind of request it serves. A model the
/// provider does not describe (an open catalog, an unlisted model) is assumed capable: the
/// upstream decides.
struct Capabilities {
    streams: bool,
    tools: bool,
    serves: Serves,
}

/// The capabilities of `model` at `provider`.
fn capabilities(provider: &ProviderConfig, model: Option<&ModelConfig>) -> Capabilities {
    match model {
        Some(entry) if entry.name != UNLISTED_MODEL => Capabilities {
            streams: entry.streaming,
            tools: entry.function_calling,
            serves: if entry.embedding {
                Serves::Embeddings
            } else {
                Serves::Chat
            },
        },
        Some(_) => Capabilities {
            streams: true,
            tools: true,
            serves: Serves::Either,
        },
        None => Capabilities {
            streams: provider.open_catalog,
            tools: provider.open_catalog,
            serves: Serves::Either,
        },
    }
}

/// What a model serves.
#[derive(Clone, Copy)]
enum Serves {
    Chat,
    Embeddings,
    /// Not described (an open catalog, an unlisted model): the upstream decides.
    Either,
}

impl Serves {
    fn serves(self, embeddings: bool) -> bool {
        match self {
            Self::Chat => !embeddings,
            Self::Embeddings => embeddings,
            Self::Either => true,
        }
    }
}

/// Adds an attempt unless the same provider/model pair is already planned.
fn push_attempt<'a>(
    attempts: &mut Vec<Attempt<'a>>,
    provider: &'a ProviderConfig,
    model: &str,
    fallback: bool,
) {
    let duplicate = attempts
        .iter()
        .any(|a| a.provider.id == provider.id && a.model == model);
    if !duplicate {
        attempts.push(Attempt {
            provider,
            model: model.to_owned(),
            model_config: provider.model(model),
            fallback,
        });
    }
}

fn applies(
    rule: &CompiledRule,
    tenant: &TenantConfig,
    model: &str,
    request: &RouteRequest<'_>,
) -> bool {
    rule.namespaces
        .as_ref()
        .is_none_or(|list| list.binary_search(&tenant.namespace).is_ok())
        && glob::matches(&rule.model, model)
        && rule.streaming.is_none_or(|s| s == request.stream)
        && rule.tools.is_none_or(|t| t == request.tools)
}

/// Orders weighted targets: the first is drawn with probability weight/total using `pick`; the
/// rest follow by descending weight (then config order), as the retry order after a failure.
fn weighted_order<'a, 'm>(
    targets: &[(&'a ProviderConfig, &'m str, u32)],
    pick: u64,
) -> Vec<(&'a ProviderConfig, &'m str)> {
    let total: u64 = targets.iter().map(|t| u64::from(t.2)).sum();
    if total == 0 {
        return targets.iter().map(|t| (t.0, t.1)).collect();
    }
    let mut point = pick % total;
    let mut first = 0;
    for (index, target) in targets.iter().enumerate() {
        let weight = u64::from(target.2);
        if point < weight {
            first = index;
            break;
        }
        point -= weight;
    }
    let mut rest: Vec<usize> = (0..targets.len()).filter(|&i| i != first).collect();
    rest.sort_by_key(|&i| std::cmp::Reverse(targets[i].2));
    std::iter::once(first)
        .chain(rest)
        .map(|i| (targets[i].0, targets[i].1))
        .collect()
}

/// Moves attempts on unhealthy providers behind the healthy ones, keeping each group's order:
/// healthy targets are tried first, unhealthy ones stay as a last resort.
pub fn prefer_healthy(attempts: &mut [Attempt<'_>], is_unhealthy: impl Fn(&str) -> bool) {
    attempts.sort_by_key(|attempt| is_unhealthy(&attempt.provider.id));
}

fn plan_cli<'a>(
    tenant: &'a TenantConfig,
    request: &RouteRequest<'_>,
) -> Result<Plan<'a>, RouteError> {
    let (Some(cli), Some(endpoint)) = (&tenant.cli, &tenant.cli_provider) else {
        return Err(RouteError::CliUnavailable);
    };
    if let Some(header) = request.provider.filter(|h| !h.is_empty()) {
        return Err(RouteError::ProviderNotAllowed(header.to_owned()));
    }
    let model = request
        .model
        .filter(|m| !m.is_empty())
        .map(str::to_owned)
        .or_else(|| cli.model.clone())
        .ok_or(RouteError::NoModel)?;
    if request.embeddings {
        // A cli endpoint is planned for chat only (Ollama's embeddings are not offered yet).
        return Err(RouteError::MissingCapability {
            model,
            capability: "embeddings",
        });
    }
    Ok(Plan {
        source: Source::Cli,
        attempts: vec![Attempt {
            provider: endpoint,
            model: model.clone(),
            model_config: None,
            fallback: false,
        }],
        retry: RetryConfig::default(),
        timeout_ms: None,
        requested_model: model,
    })
}
