//! RoutingPolicy compilation: tenant selectors resolved to namespaces, provider names to ids,
//! durations to milliseconds, unusable targets dropped with a reason.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::providers::ResolvedProviders;
use super::report::{READY, RenderReport, ReportEntry};
use super::{ObjectKey, RenderContext, RenderInput, ResourceKind};
use crate::config::{CompiledRule, CompiledTarget, RetryConfig, Scope};
use crate::crd::common::{
    ConditionStatus, ConditionUpdate, merge_conditions, parse_duration_ms, parse_timeout_ms,
};
use crate::crd::policy::{RoutingRule, Target};
use crate::crd::{RoutingPolicy, RoutingPolicyStatus};

/// Compiles every policy into rules in match order, recording each policy's status.
pub fn compile_all(
    input: &RenderInput,
    ctx: &RenderContext,
    providers: &ResolvedProviders,
    previous: &RenderReport,
    report: &mut RenderReport,
) -> Vec<CompiledRule> {
    let tenant_namespaces = tenant_namespaces(input, ctx);
    let mut rules = Vec::new();
    for (key, policy) in &input.policies {
        let compiled = compile_one(input, ctx, providers, &tenant_namespaces, key, policy);
        let count = compiled.rules.len() as u32;
        rules.extend(compiled.rules);
        report.policies.push(ReportEntry {
            namespace: key.namespace.clone(),
            name: key.name.clone(),
            status: RoutingPolicyStatus {
                rules: Some(count),
                conditions: merge_conditions(
                    previous.conditions(ResourceKind::RoutingPolicy, key),
                    compiled.conditions,
                    policy.metadata.generation,
                    ctx.now,
                ),
            },
        });
    }
    rules.sort_by(crate::config::CompiledRule::match_order);
    rules
}

/// Every namespace that is not the platform's: declared ones and those holding tenants.
fn tenant_namespaces<'a>(input: &'a RenderInput, ctx: &RenderContext) -> BTreeSet<&'a str> {
    input
        .namespaces
        .keys()
        .map(String::as_str)
        .chain(input.tenants.keys().map(|k| k.namespace.as_str()))
        .filter(|ns| *ns != ctx.platform_namespace)
        .collect()
}

struct Compiled {
    rules: Vec<CompiledRule>,
    conditions: Vec<ConditionUpdate>,
}

fn compile_one(
    input: &RenderInput,
    ctx: &RenderContext,
    providers: &ResolvedProviders,
    tenant_namespaces: &BTreeSet<&str>,
    key: &ObjectKey,
    policy: &RoutingPolicy,
) -> Compiled {
    let spec = &policy.spec;
    let is_platform = key.namespace == ctx.platform_namespace;
    let mut notes = Vec::new();
    let namespaces = if is_platform {
        match &spec.tenant_selector {
            None => None,
            Some(selector) if selector_is_empty(selector) => None,
            Some(selector) => match select_namespaces(selector, input, tenant_namespaces) {
                Ok(list) => Some(list),
                Err(message) => {
                    return Compiled {
                        rules: Vec::new(),
                        conditions: vec![ConditionUpdate::new(
                            READY,
                            false,
                            "InvalidSelector",
                            message,
                        )],
                    };
                }
            },
        }
    } else {
        if spec.tenant_selector.is_some() {
            notes.push("tenantSelector is ignored outside the platform namespace".to_owned());
        }
        Some(vec![key.namespace.clone()])
    };

    let mut problems = Vec::new();
    let mut rules = Vec::new();
    for (index, rule) in spec.rules.iter().enumerate() {
        match compile_rule(ctx, providers, key, is_platform, rule, &mut problems, index) {
            Some(mut compiled) => {
                compiled.id = format!("{key}#{index}");
                compiled.priority = spec.priority;
                compiled.scope = if is_platform {
                    Scope::Platform
                } else {
                    Scope::Tenant
                };
                compiled.namespaces = namespaces.clone();
                rules.push(compiled);
            }
            None => problems.push(format!(
                "rule {index} has no usable target and was left out"
            )),
        }
    }

    let targets_condition = if problems.is_empty() {
        ConditionUpdate::new("TargetsResolved", true, "Resolved", "every target resolved")
    } else {
        ConditionUpdate::new(
            "TargetsResolved",
            false,
            "TargetsUnresolved",
            problems.join("; "),
        )
    };
    let mut summary = format!("{} of {} rule(s) compiled", rules.len(), spec.rules.len());
    if let Some(list) = &namespaces
        && is_platform
    {
        summary.push_str(&format!(", applies to {} namespace(s)", list.len()));
    }
    for note in &notes {
        summary.push_str("; ");
        summary.push_str(note);
    }
    let ready = if rules.is_empty() {
        ConditionUpdate::new(READY, ConditionStatus::False, "NoRulesCompiled", summary)
    } else if problems.is_empty() {
        ConditionUpdate::new(READY, ConditionStatus::True, "Compiled", summary)
    } else {
        ConditionUpdate::new(READY, ConditionStatus::False, "TargetsUnresolved", summary)
    };
    Compiled {
        rules,
        conditions: vec![ready, targets_condition],
    }
}

fn compile_rule(
    ctx: &RenderContext,
    providers: &ResolvedProviders,
    key: &ObjectKey,
    is_platform: bool,
    rule: &RoutingRule,
    problems: &mut Vec<String>,
    index: usize,
) -> Option<CompiledRule> {
    let mut resolve = |what: &str, target: &Target, weight: u32| -> Option<CompiledTarget> {
        // A tenant's policy may name its own providers or platform ones; a platform policy only
        // platform ones. Another tenant's providers are never reachable by name.
        let own = (!is_platform)
            .then(|| providers.get(&key.namespace, &target.provider))
            .flatten();
        let provider = own.or_else(|| providers.get(&ctx.platform_namespace, &target.provider));
        let Some(provider) = provider else {
            let known = providers
                .known
                .contains(&ObjectKey::new(&key.namespace, &target.provider))
                || providers
                    .known
                    .contains(&ObjectKey::new(&ctx.platform_namespace, &target.provider));
            let state = if known { "is not Ready" } else { "not found" };
            problems.push(format!(
                "rule {index} {what}: provider {:?} {state}",
                target.provider
            ));
            return None;
        };
        if !provider.serves(&target.model) {
            problems.push(format!(
                "rule {index} {what}: provider {:?} does not serve model {:?}",
                target.provider, target.model
            ));
            return None;
        }
        Some(CompiledTarget {
            provider: provider.id.clone(),
            model: target.model.clone(),
            weight,
        })
    };
    let targets: Vec<CompiledTarget> = rule
        .targets
        .iter()
        .filter_map(|t| {
            resolve(
                "target",
                &Target {
                    provider: t.provider.clone(),
                    model: t.model.clone(),
                },
                t.weight,
            )
        })
        .collect();
    let fallback: Vec<CompiledTarget> = rule
        .fallback
        .iter()
        .filter_map(|t| resolve("fallback", t, 1))
        .collect();
    if targets.is_empty() && fallback.is_empty() {
        return None;
    }
    let retry = match &rule.retry {
        None => RetryConfig::default(),
        Some(retry) => {
            let mut on = retry.on.clone();
            on.sort();
            on.dedup();
            let backoff_ms = match retry.backoff.as_deref().map(parse_duration_ms) {
                None => RetryConfig::default().backoff_ms,
                Some(Ok(ms)) => ms,
                Some(Err(error)) => {
                    problems.push(format!("rule {index} retry.backoff: {error}"));
                    return None;
                }
            };
            RetryConfig {
                attempts: retry.attempts,
                on,
                backoff_ms,
            }
        }
    };
    let timeout_ms = match rule.timeout.as_deref().map(parse_timeout_ms) {
        None => None,
        Some(Ok(ms)) => Some(ms),
        Some(Err(error)) => {
            problems.push(format!("rule {index} timeout: {error}"));
            return None;
        }
    };
    Some(CompiledRule {
        id: String::new(),
        priority: 0,
        scope: Scope::Platform,
        namespaces: None,
        model: rule.matcher.model.clone(),
        streaming: rule.matcher.streaming,
        tools: rule.matcher.tools,
        targets,
        fallback,
        retry,
        timeout_ms,
    })
}

fn selector_is_empty(selector: &LabelSelector) -> bool {
    selector
        .match_labels
        .as_ref()
        .is_none_or(BTreeMap::is_empty)
        && selector
            .match_expressions
            .as_ref()
            .is_none_or(Vec::is_empty)
}

/// Evaluates a label selector over the tenant namespaces (namespaces without a Namespace object
/// among the inputs have no labels).
fn select_namespaces(
    selector: &LabelSelector,
    input: &RenderInput,
    tenant_namespaces: &BTreeSet<&str>,
) -> Result<Vec<String>, String> {
    // Validate even when there is no namespace to match yet.
    selector_matches(selector, &BTreeMap::new())?;
    let mut selected = Vec::new();
    let none = BTreeMap::new();
    for &namespace in tenant_namespaces {
        let labels = input
            .namespaces
            .get(namespace)
            .map_or(&none, |meta| &meta.labels);
        if selector_matches(selector, labels)? {
            selected.push(namespace.to_owned());
        }
    }
    Ok(selected)
}

/// Kubernetes label selector semantics (matchLabels AND every matchExpression).
pub fn selector_matches(
    selector: &LabelSelector,
    labels: &BTreeMap<String, String>,
) -> Result<bool, String> {
    let labels_match = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    if !labels_match {
        return Ok(false);
    }
    for requirement in selector.match_expressions.iter().flatten() {
        let values = requirement.values.as_deref().unwrap_or_default();
        let value = labels.get(&requirement.key);
        let ok = match requirement.operator.as_str() {
            "In" if !values.is_empty() => value.is_some_and(|v| values.contains(v)),
            "NotIn" if !values.is_empty() => value.is_none_or(|v| !values.contains(v)),
            "Exists" if values.is_empty() => value.is_some(),
            "DoesNotExist" if values.is_empty() => value.is_none(),
            "In" | "NotIn" => {
                return Err(format!(
                    "tenantSelector: operator {} needs values",
                    requirement.operator
                ));
            }
            "Exists" | "DoesNotExist" => {
                return Err(format!(
                    "tenantSelector: operator {} takes no values",
                    requirement.operator
                ));
            }
            other => return Err(format!("tenantSelector: unknown operator {other:?}")),
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn requirement(key: &str, operator: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.to_owned(),
            operator: operator.to_owned(),
            values: (!values.is_empty()).then(|| values.iter().map(|v| (*v).to_owned()).collect()),
        }
    }

    #[test]
    fn selector_semantics() {
        let ns = labels(&[("llm.dgidgi.io/tier", "pro"), ("team", "a")]);
        let by_label = LabelSelector {
            match_labels: Some(labels(&[("llm.dgidgi.io/tier", "pro")])),
            match_expressions: None,
        };
        assert_eq!(selector_matches(&by_label, &ns), Ok(true));
        assert_eq!(selector_matches(&by_label, &labels(&[])), Ok(false));
        for (req, expected) in [
            (requirement("team", "In", &["a", "b"]), true),
            (requirement("team", "NotIn", &["a"]), false),
            (requirement("other", "NotIn", &["a"]), true),
            (requirement("team", "Exists", &[]), true),
            (requirement("team", "DoesNotExist", &[]), false),
        ] {
            let selector = LabelSelector {
                match_labels: None,
                match_expressions: Some(vec![req]),
            };
            assert_eq!(selector_matches(&selector, &ns), Ok(expected));
        }
        let bad = LabelSelector {
            match_labels: None,
            match_expressions: Some(vec![requirement("team", "Near", &["a"])]),
        };
        assert!(selector_matches(&bad, &ns).is_err());
        let missing_values = LabelSelector {
            match_labels: None,
            match_expressions: Some(vec![requirement("team", "In", &[])]),
        };
        assert!(selector_matches(&missing_values, &ns).is_err());
    }
}
