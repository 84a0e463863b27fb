//! Tiers and limits: the tier comes from a namespace label the tenant cannot change, enterprise
//! numbers from namespace annotations, and a tenant may only tighten what its tier allows.

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
/// The ceiling when the namespace sets none.
pub const DEFAULT_CONCURRENCY_CEILING: u64 = 100;

/// A platform tier.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tier {
    /// Default for every namespace without a label.
    Free,
    /// Paid.
    Pro,
    /// Paid, larger.
    Team,
    /// Numbers from namespace annotations.
    Enterprise,
}

impl Tier {
    /// Label spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Free => "free",
            Self::Pro => "pro",
            Self::Team => "team",
            Self::Enterprise => "enterprise",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        match text {
            "free" => Some(Self::Free),
            "pro" => Some(Self::Pro),
            "team" => Some(Self::Team),
            "enterprise" => Some(Self::Enterprise),
            _ => None,
        }
    }
}

/// Limits per tier (DESIGN §2 defaults; the operator's configuration may change them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TierTable {
    /// Free tier.
    pub free: EffectiveLimits,
    /// Pro tier.
    pub pro: EffectiveLimits,
    /// Team tier.
    pub team: EffectiveLimits,
    /// Enterprise numbers used where a namespace gives no annotation.
    pub enterprise_default: EffectiveLimits,
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
        Self {
            free: limits(10, 50_000, 2),
            pro: limits(60, 500_000, 10),
            team: limits(200, 2_000_000, 50),
            // "Custom": until the platform annotates the namespace, an enterprise tenant gets the
            // team numbers rather than no limit at all.
            enterprise_default: limits(200, 2_000_000, 50),
        }
    }
}

/// The tier a namespace is on and its limits, with anything the platform should fix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TierResolution {
    /// The tier.
    pub tier: Tier,
    /// Its limits.
    pub limits: EffectiveLimits,
    /// The protective concurrency ceiling for unmetered sources (any tier).
    pub concurrency_ceiling: u64,
    /// Problems with the label or annotations (the defaults were used instead).
    pub problems: Vec<String>,
}

/// Reads the tier from the namespace's labels and, for enterprise, its annotations.
pub fn resolve_tier(
    labels: &BTreeMap<String, String>,
    annotations: &BTreeMap<String, String>,
    table: &TierTable,
) -> TierResolution {
    let mut problems = Vec::new();
    let tier = match labels.get(TIER_LABEL) {
        None => Tier::Free,
        Some(value) => Tier::parse(value).unwrap_or_else(|| {
            problems.push(format!(
                "namespace label {TIER_LABEL}={value:?} is not one of free, pro, team, enterprise; using free"
            ));
            Tier::Free
        }),
    };
    let limits = match tier {
        Tier::Free => table.free.clone(),
        Tier::Pro => table.pro.clone(),
        Tier::Team => table.team.clone(),
        Tier::Enterprise => {
            let base = &table.enterprise_default;
            let mut read = |key: &str, fallback: u64| {
                match annotations.get(key) {
                None => fallback,
                Some(text) => text.trim().parse::<u64>().unwrap_or_else(|_| {
                    problems.push(format!(
                        "namespace annotation {key}={text:?} is not a whole number; using {fallback}"
                    ));
                    fallback
                }),
            }
            };
            EffectiveLimits {
                requests_per_minute: read(RPM_ANNOTATION, base.requests_per_minute),
                tokens_per_day: read(TPD_ANNOTATION, base.tokens_per_day),
                concurrent: read(CONCURRENT_ANNOTATION, base.concurrent),
            }
        }
    };
    let concurrency_ceiling = match annotations.get(CONCURRENCY_CEILING_ANNOTATION) {
        None => DEFAULT_CONCURRENCY_CEILING,
        Some(text) => match text.trim().parse::<u64>() {
            Ok(ceiling) if ceiling > 0 => ceiling,
            _ => {
                problems.push(format!(
                    "namespace annotation {CONCURRENCY_CEILING_ANNOTATION}={text:?} is not a positive whole number; using {DEFAULT_CONCURRENCY_CEILING}"
                ));
                DEFAULT_CONCURRENCY_CEILING
            }
        },
    };
    TierResolution {
        tier,
        limits,
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
        assert_eq!(r.tier, Tier::Free);
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
    fn unknown_tier_falls_back_to_free_with_a_problem() {
        let r = resolve_tier(
            &map(&[(TIER_LABEL, "platinum")]),
            &map(&[]),
            &TierTable::default(),
        );
        assert_eq!(r.tier, Tier::Free);
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
