//! Tiers and limits: the tier comes from a namespace label the tenant cannot change, a custom
//! tier's numbers (enterprise by default) from namespace annotations, and a tenant may only
//! tighten what its tier allows. Which tiers exist, and their terms, is the platform's
//! configuration ([`super::platform`]); without one, the four of DESIGN §2.

use std::collections::BTreeMap;

use crate::crd::tenant::{EffectiveLimits, TenantLimits};

/// Namespace label naming the tier (platform-owned).
pub const TIER_LABEL: &str = "llm.dgidgi.io/tier";
/// Namespace annotation with the enterprise requests/min.
pub const RPM_ANNOTATION: &str = "llm.dgidgi.io/requests-per-minute";
/// Namespace annotation with the enterprise tokens/day.
pub const TPD_ANNOTATION: &str = "llm.dgidgi.io/tokens-per-day";
/// Namespace annotation with the enterprise concurrency.
pub const CONCURRENT_ANNOTATION: &str = "llm.dgidgi.io/concurrent";
/// Namespace annotation with the protective concurrency ceiling of tenants the platform does not
/// meter (`tenant` and `cli` sources): not a billing limit, a guard of the gateway's memory.
pub const CONCURRENCY_CEILING_ANNOTATION: &str = "llm.dgidgi.io/concurrency-ceiling";
/// The ceiling when neither the namespace nor the platform configuration sets one.
pub const DEFAULT_CONCURRENCY_CEILING: u64 = 100;

/// One tier's terms, as the platform configured them (or the defaults). Serialized into the
/// gateway ConfigMap's annotation [`crate::render::manifests::TIERS_ANNOTATION`], so an operator
/// that starts on an invalid platform configuration still has the last good one.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TierTerms {
    /// Limits for the `platform` source.
    pub limits: EffectiveLimits,
    /// Whether namespace annotations override these numbers (today's enterprise tier).
    #[serde(default)]
    pub custom: bool,
    /// A monthly budget every tenant of the tier has, at most (micro-USD).
    #[serde(default)]
    pub monthly_budget_micro_usd: Option<u64>,
    /// `provider/model` globs the tier may use on the platform's providers; empty: all.
    // Optional members read as absent when missing, so a record written by a release without
    // them still reads (see `TIERS_ANNOTATION`).
    #[serde(default)]
    pub models: Vec<String>,
}

/// The tiers by name (any label value the platform configures) and the one a namespace without
/// the label is on (DESIGN §2 defaults; the platform configuration may change them).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TierTable {
    /// Every tier, by the label value that selects it.
    pub tiers: BTreeMap<String, TierTerms>,
    /// The tier of a namespace without the label.
    pub default_tier: String,
    /// The protective concurrency ceiling of a namespace whose own annotation sets none
    /// (unmetered sources; DESIGN §2).
    #[serde(default = "default_concurrency_ceiling")]
    pub concurrency_ceiling: u64,
    /// Output tokens reserved (and written upstream) for a platform-paid request that neither
    /// it nor its model's catalog bounds; `None`: the gateway's `--unbounded-output-tokens`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unbounded_output_tokens: Option<u64>,
}

fn default_concurrency_ceiling() -> u64 {
    DEFAULT_CONCURRENCY_CEILING
}

const fn limits(requests_per_minute: u64, tokens_per_day: u64, concurrent: u64) -> EffectiveLimits {
    EffectiveLimits {
        requests_per_minute,
        tokens_per_day,
        concurrent,
    }
}

impl Default for TierTable {
    fn default() -> Self {
        let tier = |limits: EffectiveLimits, custom: bool| TierTerms {
            limits,
            custom,
            monthly_budget_micro_usd: None,
            models: Vec::new(),
        };
        let tiers = BTreeMap::from([
            ("free".to_owned(), tier(limits(10, 50_000, 2), false)),
            ("pro".to_owned(), tier(limits(60, 500_000, 10), false)),
            ("team".to_owned(), tier(limits(200, 2_000_000, 50), false)),
            // "Custom": until the platform annotates the namespace, an enterprise tenant gets
            // the team numbers rather than no limit at all.
            (
                "enterprise".to_owned(),
                tier(limits(200, 2_000_000, 50), true),
            ),
        ]);
        Self {
            tiers,
            default_tier: "free".to_owned(),
            concurrency_ceiling: DEFAULT_CONCURRENCY_CEILING,
            unbounded_output_tokens: None,
        }
    }
}

impl TierTable {
    /// The most restrictive tier (fewest tokens a day, then requests a minute, then requests
    /// at once, then name): where a namespace naming no configured tier lands.
    pub fn most_restrictive(&self) -> Option<(&str, &TierTerms)> {
        self.tiers
            .iter()
            .min_by_key(|(name, terms)| {
                let l = &terms.limits;
                (l.tokens_per_day, l.requests_per_minute, l.concurrent, *name)
            })
            .map(|(name, terms)| (name.as_str(), terms))
    }
}

/// The tier a namespace is on and its terms, with anything the platform should fix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TierResolution {
    /// The tier's name.
    pub tier: String,
    /// Its limits (a custom tier's as the namespace's annotations set them).
    pub limits: EffectiveLimits,
    /// Its monthly budget ceiling, if it has one.
    pub monthly_budget_micro_usd: Option<u64>,
    /// The `provider/model` globs it may use; empty: all.
    pub models: Vec<String>,
    /// The protective concurrency ceiling for unmetered sources (any tier).
    pub concurrency_ceiling: u64,
    /// Problems with the label or annotations (what was used instead is said).
    pub problems: Vec<String>,
}

/// Reads the tier from the namespace's labels and, for a custom tier, its annotations. A label
/// naming no configured tier gets the most restrictive one, and says so.
pub fn resolve_tier(
    labels: &BTreeMap<String, String>,
    annotations: &BTreeMap<String, String>,
    table: &TierTable,
) -> TierResolution {
    let mut problems = Vec::new();
    let fallback = || {
        table
            .most_restrictive()
            .map(|(name, terms)| (name.to_owned(), terms.clone()))
    };
    let named = labels.get(TIER_LABEL).unwrap_or(&table.default_tier);
    let (tier, terms) = match table.tiers.get(named) {
        Some(terms) => (named.clone(), terms.clone()),
        None => {
            let (name, terms) = fallback().unwrap_or_else(|| {
                let defaults = TierTable::default();
                let terms = defaults.tiers["free"].clone();
                ("free".to_owned(), terms)
            });
            let known: Vec<&str> = table.tiers.keys().map(String::as_str).collect();
            problems.push(format!(
                "namespace label {TIER_LABEL}={named:?} names no configured tier ({}); using the most restrictive, {name}",
                known.join(", ")
            ));
            (name, terms)
        }
    };
    let limits = if terms.custom {
        let base = &terms.limits;
        let mut read = |key: &str, fallback: u64| match annotations.get(key) {
            None => fallback,
            Some(text) => text.trim().parse::<u64>().unwrap_or_else(|_| {
                problems.push(format!(
                    "namespace annotation {key}={text:?} is not a whole number; using {fallback}"
                ));
                fallback
            }),
        };
        EffectiveLimits {
            requests_per_minute: read(RPM_ANNOTATION, base.requests_per_minute),
            tokens_per_day: read(TPD_ANNOTATION, base.tokens_per_day),
            concurrent: read(CONCURRENT_ANNOTATION, base.concurrent),
        }
    } else {
        terms.limits.clone()
    };
    let platform_ceiling = table.concurrency_ceiling;
    let concurrency_ceiling = match annotations.get(CONCURRENCY_CEILING_ANNOTATION) {
        None => platform_ceiling,
        Some(text) => match text.trim().parse::<u64>() {
            Ok(ceiling) if ceiling > 0 => ceiling,
            _ => {
                problems.push(format!(
                    "namespace annotation {CONCURRENCY_CEILING_ANNOTATION}={text:?} is not a positive whole number; using {platform_ceiling}"
                ));
                platform_ceiling
            }
        },
    };
    TierResolution {
        tier,
        limits,
        monthly_budget_micro_usd: terms.monthly_budget_micro_usd,
        models: terms.models,
        concurrency_ceiling,
        problems,
    }
}

/// Limits after applying a tenant's ask, and which asks were looser than the tier.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClampedLimits {
    /// Limits in force.
    pub limits: EffectiveLimits,
    /// One line per clamped field, e.g. `requestsPerMinute 100 > tier 60`.
    pub clamped: Vec<String>,
}

/// Applies a tenant's requested limits: tighter asks win, looser asks are clamped to the tier.
pub fn clamp(tier: &EffectiveLimits, ask: Option<&TenantLimits>) -> ClampedLimits {
    let mut clamped = Vec::new();
    let mut pick = |field: &str, tier_value: u64, asked: Option<u64>| match asked {
        Some(value) if value > tier_value => {
            clamped.push(format!("{field} {value} > tier {tier_value}"));
            tier_value
        }
        Some(value) => value,
        None => tier_value,
    };
    let ask = ask.cloned().unwrap_or_default();
    let limits = EffectiveLimits {
        requests_per_minute: pick(
            "requestsPerMinute",
            tier.requests_per_minute,
            ask.requests_per_minute,
        ),
        tokens_per_day: pick("tokensPerDay", tier.tokens_per_day, ask.tokens_per_day),
        concurrent: pick("concurrent", tier.concurrent, ask.concurrent),
    };
    ClampedLimits { limits, clamped }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn missing_label_means_free() {
        let r = resolve_tier(&map(&[]), &map(&[]), &TierTable::default());
        assert_eq!(r.tier, "free");
        assert_eq!(r.limits, limits(10, 50_000, 2));
        assert!(r.problems.is_empty());
    }

    #[test]
    fn each_tier_has_its_numbers() {
        let table = TierTable::default();
        for (label, expected) in [
            ("pro", limits(60, 500_000, 10)),
            ("team", limits(200, 2_000_000, 50)),
        ] {
            let r = resolve_tier(&map(&[(TIER_LABEL, label)]), &map(&[]), &table);
            assert_eq!(r.limits, expected);
        }
    }

    #[test]
    fn unknown_tier_falls_back_to_the_most_restrictive_with_a_problem() {
        let r = resolve_tier(
            &map(&[(TIER_LABEL, "platinum")]),
            &map(&[]),
            &TierTable::default(),
        );
        assert_eq!(r.tier, "free");
        assert_eq!(r.problems.len(), 1);
        assert!(r.problems[0].contains("platinum"));
    }

    #[test]
    fn enterprise_reads_annotations() {
        let r = resolve_tier(
            &map(&[(TIER_LABEL, "enterprise")]),
            &map(&[
                (RPM_ANNOTATION, "5000"),
                (TPD_ANNOTATION, "90000000"),
                (CONCURRENT_ANNOTATION, "400"),
            ]),
            &TierTable::default(),
        );
        assert_eq!(r.limits, limits(5_000, 90_000_000, 400));
    }

    #[test]
    fn enterprise_bad_annotation_uses_default_and_says_so() {
        let r = resolve_tier(
            &map(&[(TIER_LABEL, "enterprise")]),
            &map(&[(RPM_ANNOTATION, "lots")]),
            &TierTable::default(),
        );
        assert_eq!(r.limits.requests_per_minute, 200);
        assert!(r.problems[0].contains("lots"));
    }

    #[test]
    fn annotations_are_ignored_below_enterprise() {
        let r = resolve_tier(
            &map(&[(TIER_LABEL, "pro")]),
            &map(&[(RPM_ANNOTATION, "5000")]),
            &TierTable::default(),
        );
        assert_eq!(r.limits.requests_per_minute, 60);
    }

    #[test]
    fn tenants_only_tighten() {
        let tier = limits(60, 500_000, 10);
        let tighter = TenantLimits {
            requests_per_minute: Some(30),
            tokens_per_day: None,
            concurrent: Some(0),
        };
        let out = clamp(&tier, Some(&tighter));
        assert_eq!(out.limits, limits(30, 500_000, 0));
        assert!(out.clamped.is_empty());

        let looser = TenantLimits {
            requests_per_minute: Some(1_000),
            tokens_per_day: Some(400_000),
            concurrent: Some(11),
        };
        let out = clamp(&tier, Some(&looser));
        assert_eq!(out.limits, limits(60, 400_000, 10));
        assert_eq!(
            out.clamped,
            vec![
                "requestsPerMinute 1000 > tier 60",
                "concurrent 11 > tier 10"
            ]
        );
        assert_eq!(clamp(&tier, None).limits, tier);
    }
}
