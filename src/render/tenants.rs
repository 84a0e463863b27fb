//! Tenant resolution: tier and limits, source and providers, CLI endpoint, budget, access keys.

use std::collections::{BTreeMap, BTreeSet};

use rand::CryptoRng;
use zeroize::Zeroizing;

use super::providers::ResolvedProviders;
use super::report::{READY, RenderReport, ReportEntry};
use super::tiers::{TierResolution, clamp, resolve_tier};
use super::{AccessKeySecret, ObjectKey, RenderContext, RenderInput, ResourceKind};
use crate::config::{
    ACCESS_KEY_DATA_KEY, AccessKeyHash, BudgetConfig, CliConfig, Scope, TenantConfig,
};
use crate::crd::common::{ConditionStatus, ConditionUpdate, merge_conditions, usd_to_micros};
use crate::crd::tenant::{Budget, EffectiveLimits};
use crate::crd::{LlmTenant, LlmTenantStatus, Source};
use crate::crypto::access_key;
use crate::endpoints::{AllowList, check_tenant_endpoint};

/// Name of the access key used when a tenant lists none.
pub const DEFAULT_ACCESS_KEY: &str = "default";

/// Tenants' configs and access key Secrets.
#[derive(Default)]
pub struct TenantOutput {
    /// Configs, sorted by id.
    pub configs: Vec<TenantConfig>,
    /// Access key Secrets, sorted by namespace/name.
    pub access_keys: Vec<AccessKeySecret>,
    /// Namespaces of both tenants of every access key claimed twice (see
    /// [`super::RenderOutput::access_key_conflicts`]).
    pub key_conflicts: BTreeSet<String>,
}

/// Name of the Secret holding a tenant's access key.
pub fn access_key_secret_name(tenant: &str, key_name: &str) -> String {
    format!("{tenant}-llm-access-{key_name}")
}

/// Resolves every tenant, recording each one's status in `report`.
pub fn resolve_all(
    input: &RenderInput,
    ctx: &RenderContext,
    providers: &ResolvedProviders,
    previous: &RenderReport,
    report: &mut RenderReport,
    rng: &mut dyn CryptoRng,
) -> TenantOutput {
    let mut out = TenantOutput::default();
    let mut claimed = ClaimedKeys::default();
    for (key, tenant) in &input.tenants {
        let resolved = resolve_one(input, ctx, providers, key, tenant, &mut claimed, rng);
        if let Some(config) = resolved.config {
            out.configs.push(config);
        }
        out.access_keys.extend(resolved.access_keys);
        report.tenants.push(ReportEntry {
            namespace: key.namespace.clone(),
            name: key.name.clone(),
            status: LlmTenantStatus {
                conditions: merge_conditions(
                    previous.conditions(ResourceKind::LlmTenant, key),
                    resolved.conditions,
                    tenant.metadata.generation,
                    ctx.now,
                ),
                ..resolved.status
            },
        });
    }
    out.access_keys.sort_by(|a, b| a.key.cmp(&b.key));
    out.key_conflicts = claimed.conflicts;
    out
}

struct Resolved {
    config: Option<TenantConfig>,
    access_keys: Vec<AccessKeySecret>,
    status: LlmTenantStatus,
    conditions: Vec<ConditionUpdate>,
}

/// The first problem that keeps a tenant from being served.
struct Blocker {
    reason: &'static str,
    message: String,
}

fn resolve_one(
    input: &RenderInput,
    ctx: &RenderContext,
    providers: &ResolvedProviders,
    key: &ObjectKey,
    tenant: &LlmTenant,
    claimed: &mut ClaimedKeys,
    rng: &mut dyn CryptoRng,
) -> Resolved {
    let spec = &tenant.spec;
    if key.namespace == ctx.platform_namespace {
        return in_platform_namespace(ctx);
    }
    let namespace = input.namespace(&key.namespace);
    let allow = AllowList::for_namespace(&namespace.annotations);
    let tier = resolve_tier(&namespace.labels, &namespace.annotations, &ctx.tiers);
    let mut blockers: Vec<Blocker> = Vec::new();
    let mut conditions = Vec::new();

    let sources = source_providers(ctx, providers, key, tenant);
    blockers.extend(sources.blocker);
    let preferred = preferred_provider(ctx, providers, key, tenant, sources.uses_platform);
    conditions.push(match preferred.problem {
        Some(problem) if sources.condition.status == ConditionStatus::True => ConditionUpdate::new(
            "ProvidersResolved",
            false,
            "PreferredProviderNotFound",
            problem,
        ),
        _ => sources.condition,
    });

    let cli = cli_endpoint(tenant, &allow).unwrap_or_else(|blocker| {
        blockers.push(blocker);
        None
    });

    // Limits: the platform's, for whatever the platform serves.
    let limits = sources.uses_platform.then(|| {
        let (limits, condition) = platform_limits(&tier, tenant);
        conditions.push(condition);
        limits
    });
    conditions.push(tier_condition(&tier));

    let budget = spec.budget.as_ref().map(budget_config).transpose();
    let budget = budget.unwrap_or_else(|message| {
        blockers.push(Blocker {
            reason: "InvalidBudget",
            message,
        });
        None
    });
    let budget = tier_budget(budget, &tier, sources.uses_platform);

    let keys = access_keys(input, key, tenant, claimed, rng);
    blockers.extend(keys.problems.first().map(|problem| Blocker {
        reason: "AccessKeyRejected",
        message: problem.clone(),
    }));

    conditions.insert(0, ready_condition(key, spec.source, &blockers));

    let status = LlmTenantStatus {
        tier: Some(tier.tier.clone()),
        effective_source: Some(spec.source),
        effective_limits: limits.clone(),
        access_key_secrets: keys.secrets.iter().map(|s| s.key.name.clone()).collect(),
        ..LlmTenantStatus::default()
    };
    let config = TenantConfig {
        id: key.to_string(),
        namespace: key.namespace.clone(),
        name: key.name.clone(),
        tier: tier.tier.clone(),
        source: spec.source,
        preferred_provider: preferred.id,
        preferred_model: spec.preferred_model.clone(),
        providers: sources.own_ids,
        allow_platform_fallback: spec.source == Source::Tenant && spec.allow_platform_fallback,
        cli,
        concurrency_ceiling: limits.is_none().then_some(tier.concurrency_ceiling),
        limits,
        allowed_models: if sources.uses_platform {
            tier.models.clone()
        } else {
            Vec::new()
        },
        budget,
        access_keys: keys.hashes,
        allowed_endpoints: if spec.source == Source::Cli {
            allow.entries()
        } else {
            Vec::new()
        },
        cli_provider: None,
    };
    Resolved {
        config: Some(config),
        access_keys: keys.secrets,
        status,
        conditions,
    }
}

/// An LlmTenant in the platform namespace: refused, nothing rendered.
fn in_platform_namespace(ctx: &RenderContext) -> Resolved {
    Resolved {
        config: None,
        access_keys: Vec::new(),
        status: LlmTenantStatus::default(),
        conditions: vec![ConditionUpdate::new(
            READY,
            ConditionStatus::False,
            "TenantInPlatformNamespace",
            format!(
                "LlmTenants belong in tenant namespaces, not the platform namespace {:?}",
                ctx.platform_namespace
            ),
        )],
    }
}

/// Ready reports the first thing that keeps the tenant from being served.
fn ready_condition(key: &ObjectKey, source: Source, blockers: &[Blocker]) -> ConditionUpdate {
    match blockers.first() {
        None => ConditionUpdate::new(
            READY,
            true,
            "Ready",
            format!("served by the {} source", source.as_str()),
        ),
        Some(b) => {
            tracing::warn!(tenant = ?key.to_string(), reason = b.reason, problem = ?b.message, "tenant not ready");
            ConditionUpdate::new(READY, false, b.reason, b.message.clone())
        }
    }
}

/// Which providers serve a tenant: platform ones for the platform source (and for the tenant
/// source's fallback), the namespace's own for the tenant source; never another tenant
/// namespace's.
struct SourceProviders {
    own_ids: Vec<String>,
    uses_platform: bool,
    condition: ConditionUpdate,
    blocker: Option<Blocker>,
}

fn source_providers(
    ctx: &RenderContext,
    providers: &ResolvedProviders,
    key: &ObjectKey,
    tenant: &LlmTenant,
) -> SourceProviders {
    let spec = &tenant.spec;
    let platform_count = providers.in_namespace(&ctx.platform_namespace).count();
    let uses_platform = spec.source.reaches_platform(spec.allow_platform_fallback);
    let resolved =
        |reason, message: String| ConditionUpdate::new("ProvidersResolved", true, reason, message);
    let unresolved =
        |reason, message: String| ConditionUpdate::new("ProvidersResolved", false, reason, message);
    let blocked = |message: &str| {
        Some(Blocker {
            reason: "NoReadyProviders",
            message: message.to_owned(),
        })
    };
    let (own_ids, condition, blocker) = match spec.source {
        Source::Platform if platform_count == 0 => {
            let message = "the platform has no Ready providers";
            (
                Vec::new(),
                unresolved("NoReadyProviders", message.to_owned()),
                blocked(message),
            )
        }
        Source::Platform => (
            Vec::new(),
            resolved("Resolved", format!("{platform_count} platform provider(s)")),
            None,
        ),
        Source::Tenant => {
            let (ids, problems) = own_providers(providers, key, tenant);
            let fallback_note = if uses_platform {
                "; platform fallback allowed"
            } else {
                ""
            };
            let no_provider = ids.is_empty() && !uses_platform;
            let none_message =
                "no Ready LlmProvider in this namespace and allowPlatformFallback is false";
            let condition = if !problems.is_empty() {
                unresolved(
                    "ProviderNotReady",
                    format!("{}{fallback_note}", problems.join("; ")),
                )
            } else if no_provider {
                unresolved("NoReadyProviders", none_message.to_owned())
            } else if ids.is_empty() {
                resolved(
                    "PlatformFallback",
                    "no own provider is Ready; requests go to platform providers".to_owned(),
                )
            } else {
                resolved(
                    "Resolved",
                    format!("{} own provider(s){fallback_note}", ids.len()),
                )
            };
            let blocker = if no_provider {
                blocked(none_message)
            } else {
                None
            };
            (ids, condition, blocker)
        }
        Source::Cli => (
            Vec::new(),
            resolved("CliEndpoint", "served by the cli endpoint".to_owned()),
            None,
        ),
    };
    SourceProviders {
        own_ids,
        uses_platform,
        condition,
        blocker,
    }
}

/// The preferred provider's id, if it is one this tenant may use, or why it is ignored.
struct Preferred {
    id: Option<String>,
    problem: Option<String>,
}

fn preferred_provider(
    ctx: &RenderContext,
    providers: &ResolvedProviders,
    key: &ObjectKey,
    tenant: &LlmTenant,
    uses_platform: bool,
) -> Preferred {
    let spec = &tenant.spec;
    let Some(name) = &spec.preferred_provider else {
        return Preferred {
            id: None,
            problem: None,
        };
    };
    let own = (spec.source == Source::Tenant)
        .then(|| providers.get(&key.namespace, name))
        .flatten()
        .filter(|p| p.scope == Scope::Tenant);
    let platform = uses_platform
        .then(|| providers.get(&ctx.platform_namespace, name))
        .flatten();
    let id = own.or(platform).map(|p| p.id.clone());
    let problem = (id.is_none() && spec.source != Source::Cli).then(|| {
        format!(
            "preferredProvider {name:?} is not a Ready provider this tenant may use; it is ignored"
        )
    });
    Preferred { id, problem }
}

/// The cli endpoint of a cli-source tenant, checked against the namespace's allow-list.
fn cli_endpoint(tenant: &LlmTenant, allow: &AllowList) -> Result<Option<CliConfig>, Blocker> {
    let spec = &tenant.spec;
    match (&spec.source, &spec.cli) {
        (Source::Cli, Some(cli)) => match check_tenant_endpoint(&cli.endpoint, allow) {
            Ok(()) => Ok(Some(CliConfig {
                endpoint: cli.endpoint.trim_end_matches('/').to_owned(),
                model: cli.model.clone().or_else(|| spec.preferred_model.clone()),
            })),
            Err(error) => Err(Blocker {
                reason: "EndpointNotAllowed",
                message: format!("cli.endpoint: {error}"),
            }),
        },
        (Source::Cli, None) => Err(Blocker {
            reason: "CliEndpointMissing",
            message: "source cli requires cli.endpoint".to_owned(),
        }),
        _ => Ok(None),
    }
}

/// The tier's limits tightened by the tenant's ask, and the LimitsClamped condition.
fn platform_limits(
    tier: &TierResolution,
    tenant: &LlmTenant,
) -> (EffectiveLimits, ConditionUpdate) {
    let clamped = clamp(&tier.limits, tenant.spec.limits.as_ref());
    let condition = if clamped.clamped.is_empty() {
        ConditionUpdate::new(
            "LimitsClamped",
            false,
            "WithinTier",
            format!("within the {} tier", tier.tier),
        )
    } else {
        ConditionUpdate::new(
            "LimitsClamped",
            true,
            "Clamped",
            format!(
                "asked for more than the {} tier allows: {}",
                tier.tier,
                clamped.clamped.join(", ")
            ),
        )
    };
    (clamped.limits, condition)
}

fn tier_condition(tier: &TierResolution) -> ConditionUpdate {
    if tier.problems.is_empty() {
        ConditionUpdate::new(
            "TierResolved",
            true,
            "Resolved",
            format!("tier {}", tier.tier),
        )
    } else {
        ConditionUpdate::new(
            "TierResolved",
            false,
            "InvalidTierSettings",
            tier.problems.join("; "),
        )
    }
}

/// The tenant's own Ready providers (ids), and a message per listed one that cannot be used.
fn own_providers(
    providers: &ResolvedProviders,
    key: &ObjectKey,
    tenant: &LlmTenant,
) -> (Vec<String>, Vec<String>) {
    let mut problems = Vec::new();
    let ids = match &tenant.spec.providers {
        None => providers
            .in_namespace(&key.namespace)
            .map(|p| p.id.clone())
            .collect(),
        Some(list) => {
            let mut ids = BTreeSet::new();
            for reference in list {
                let object = ObjectKey::new(&key.namespace, &reference.name);
                match providers.get(&key.namespace, &reference.name) {
                    Some(p) => {
                        ids.insert(p.id.clone());
                    }
                    None if providers.known.contains(&object) => {
                        problems.push(format!("LlmProvider {:?} is not Ready", reference.name));
                    }
                    None => problems.push(format!(
                        "LlmProvider {:?} not found in namespace {:?}",
                        reference.name, key.namespace
                    )),
                }
            }
            ids.into_iter().collect()
        }
    };
    (ids, problems)
}

/// The tenant's budget under its tier's ceiling, for platform-served traffic: the tier's when
/// the tenant sets none, the lower of the two otherwise (a tenant may tighten, never loosen).
fn tier_budget(
    budget: Option<BudgetConfig>,
    tier: &TierResolution,
    uses_platform: bool,
) -> Option<BudgetConfig> {
    let Some(ceiling) = tier.monthly_budget_micro_usd.filter(|_| uses_platform) else {
        return budget;
    };
    Some(match budget {
        Some(mut own) => {
            own.monthly_micro_usd = own.monthly_micro_usd.min(ceiling);
            // An alert-only budget cannot lift the tier's ceiling: the tier's blocks.
            own.action = crate::crd::tenant::BudgetAction::Block;
            own
        }
        None => BudgetConfig {
            monthly_micro_usd: ceiling,
            alert_thresholds: vec![50, 80, 100],
            action: crate::crd::tenant::BudgetAction::Block,
        },
    })
}

fn budget_config(budget: &Budget) -> Result<BudgetConfig, String> {
    let monthly_micro_usd = usd_to_micros(budget.monthly_usd).ok_or_else(|| {
        format!(
            "budget.monthlyUsd {} is not a valid USD amount",
            budget.monthly_usd
        )
    })?;
    if let Some(bad) = budget
        .alert_thresholds
        .iter()
        .find(|t| !(1..=100).contains(*t))
    {
        return Err(format!(
            "budget.alertThresholds: {bad} is not between 1 and 100"
        ));
    }
    let mut alert_thresholds = budget.alert_thresholds.clone();
    alert_thresholds.sort_unstable();
    alert_thresholds.dedup();
    Ok(BudgetConfig {
        monthly_micro_usd,
        alert_thresholds,
        action: budget.action,
    })
}

struct AccessKeys {
    secrets: Vec<AccessKeySecret>,
    hashes: Vec<AccessKeyHash>,
    problems: Vec<String>,
}

/// Keeps each access key given back in its Secret, generates the missing ones.
/// Access key Secret names and key hashes already taken by earlier tenants of this render.
/// Two tenants can produce the same Secret name (`a` + `b-llm-access-c` and `a-llm-access-b` +
/// `c`), and a tenant could copy a key it knows into its own Secret; either would make a key
/// ambiguous, so the later claimant is refused.
#[derive(Default)]
struct ClaimedKeys {
    secrets: BTreeSet<ObjectKey>,
    /// Each claimed key hash, with the namespace of the tenant holding it.
    hashes: BTreeMap<String, String>,
    /// Namespaces of both sides of every refused second claim.
    conflicts: BTreeSet<String>,
}

fn access_keys(
    input: &RenderInput,
    key: &ObjectKey,
    tenant: &LlmTenant,
    claimed: &mut ClaimedKeys,
    rng: &mut dyn CryptoRng,
) -> AccessKeys {
    let names: Vec<String> = match &tenant.spec.access_keys {
        Some(list) if !list.is_empty() => list.iter().map(|k| k.name.clone()).collect(),
        _ => vec![DEFAULT_ACCESS_KEY.to_owned()],
    };
    let mut out = AccessKeys {
        secrets: Vec::new(),
        hashes: Vec::new(),
        problems: Vec::new(),
    };
    for name in names {
        let secret_name = access_key_secret_name(&key.name, &name);
        if secret_name.len() > 253 {
            out.problems.push(format!(
                "access key Secret name {secret_name:?} is longer than 253 characters"
            ));
            continue;
        }
        let secret_key = ObjectKey::new(&key.namespace, &secret_name);
        if !claimed.secrets.insert(secret_key.clone()) {
            out.problems.push(format!(
                "access key Secret name {secret_name:?} is already used by another tenant in this namespace; rename the key"
            ));
            continue;
        }
        let given = input
            .secrets
            .get(&secret_key)
            .and_then(|secret| secret.data.get(ACCESS_KEY_DATA_KEY));
        let value = match given {
            None => access_key::generate(rng),
            Some(bytes) => match std::str::from_utf8(bytes) {
                Ok(text) if text.trim().len() >= access_key::MIN_LEN => {
                    Zeroizing::new(text.trim().to_owned())
                }
                _ => {
                    out.problems.push(format!(
                        "Secret {secret_name:?} holds an access key shorter than {} characters; delete it to get a generated one",
                        access_key::MIN_LEN
                    ));
                    continue;
                }
            },
        };
        let sha256 = access_key::hash(value.as_bytes());
        if let Some(holder) = claimed.hashes.get(&sha256) {
            claimed.conflicts.insert(holder.clone());
            claimed.conflicts.insert(key.namespace.clone());
            out.problems.push(format!(
                "Secret {secret_name:?} holds an access key that is already in use; delete it to get a generated one"
            ));
            continue;
        }
        claimed.hashes.insert(sha256.clone(), key.namespace.clone());
        out.hashes.push(AccessKeyHash {
            name: name.clone(),
            sha256,
        });
        out.secrets.push(AccessKeySecret {
            key: secret_key,
            tenant: key.name.clone(),
            key_name: name,
            owner_uid: tenant.metadata.uid.clone(),
            value,
        });
    }
    out
}
