//! The platform's configuration: ConfigMap `dgidgi-platform` in the platform namespace, key
//! `platform.yaml`. It names the tiers (any label value, not four fixed ones) and their terms:
//! limits, an optional monthly budget ceiling, the models a tier may use, and whether a
//! namespace's annotations may override its numbers. Absent, the four tiers of DESIGN §2.
//!
//! Read whole or not at all: one bad tier makes the whole configuration invalid, reported with
//! every problem, and the operator keeps the last good one (`dgidgi render` refuses to run).
//! Pure: text in, a [`TierTable`] or the problems out.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::tiers::{TierTable, TierTerms};
use crate::config::EffectiveLimits;
use crate::crd::common::usd_to_micros;

/// Name of the platform configuration's ConfigMap (platform namespace).
pub const PLATFORM_CONFIG_MAP: &str = "dgidgi-platform";
/// Its data key.
pub const PLATFORM_FILE: &str = "platform.yaml";

/// Why a platform configuration was refused: every problem found, one per line.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("ConfigMap {PLATFORM_CONFIG_MAP} is invalid: {}", .problems.join("; "))]
pub struct PlatformConfigError {
    /// What is wrong, each naming the field.
    pub problems: Vec<String>,
}

/// `platform.yaml` as written.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PlatformFile {
    /// The tiers; absent: the defaults.
    #[serde(default)]
    tiers: Option<Vec<TierSpec>>,
    /// The tier of a namespace without the label; absent: `free` if configured, else required.
    #[serde(default)]
    default_tier: Option<String>,
    /// The protective concurrency ceiling of unmetered namespaces without their own annotation;
    /// absent: 100.
    #[serde(default)]
    concurrency_ceiling: Option<u64>,
    /// Output tokens reserved for a request nothing bounds; absent: the gateway's flag.
    #[serde(default)]
    unbounded_output_tokens: Option<u64>,
}

impl PlatformFile {
    /// The platform-wide terms set on `table`, and what is wrong with them.
    fn platform_terms(&self, table: &mut TierTable, problems: &mut Vec<String>) {
        match self.concurrency_ceiling {
            Some(0) => problems.push("concurrencyCeiling must be at least 1".to_owned()),
            Some(ceiling) => table.concurrency_ceiling = ceiling,
            None => {}
        }
        match self.unbounded_output_tokens {
            Some(0) => problems.push(
                "unboundedOutputTokens must be at least 1 (a request nothing bounds would be sent with no room to answer)"
                    .to_owned(),
            ),
            tokens => table.unbounded_output_tokens = tokens,
        }
    }
}

/// One tier as written.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TierSpec {
    name: String,
    requests_per_minute: u64,
    tokens_per_day: u64,
    concurrent: u64,
    #[serde(default)]
    custom: bool,
    #[serde(default)]
    monthly_budget_usd: Option<Usd>,
    #[serde(default)]
    models: Vec<String>,
}

/// A USD amount written as a number (`25`, `2.5`) or a decimal string (`"25.00"`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Usd {
    Number(f64),
    Text(String),
}

impl Usd {
    fn micros(&self) -> Option<u64> {
        match self {
            Self::Number(usd) => usd_to_micros(*usd),
            Self::Text(text) => text.trim().parse::<f64>().ok().and_then(usd_to_micros),
        }
    }
}

/// The tiers a platform configuration describes, or everything wrong with it. `None` (no
/// ConfigMap, or no `platform.yaml` in it) is the defaults.
pub fn tiers(text: Option<&str>) -> Result<TierTable, PlatformConfigError> {
    let Some(text) = text else {
        return Ok(TierTable::default());
    };
    // The ConfigMap is there but says nothing (a misspelt key, `platform.yml`): a mistake, not
    // a wish for the defaults, which would drop every tier's models and budget.
    if text.trim().is_empty() {
        return Err(PlatformConfigError {
            problems: vec![format!("{PLATFORM_FILE} is missing or empty")],
        });
    }
    // The parser's message as it is: the configuration holds names and numbers, nothing
    // secret, and the field it names is what the platform engineer must fix.
    let file: PlatformFile = serde_yaml::from_str(text).map_err(|error| PlatformConfigError {
        problems: vec![format!("{PLATFORM_FILE}: {error}")],
    })?;
    let mut problems = Vec::new();
    let mut defaults = TierTable::default();
    file.platform_terms(&mut defaults, &mut problems);
    let Some(specs) = file.tiers else {
        match file.default_tier {
            Some(name) if !defaults.tiers.contains_key(&name) => problems.push(format!(
                "defaultTier {name:?} is not one of the default tiers"
            )),
            Some(name) => defaults.default_tier = name,
            None => {}
        }
        return if problems.is_empty() {
            Ok(defaults)
        } else {
            Err(PlatformConfigError { problems })
        };
    };
    if specs.is_empty() {
        problems.push("tiers: at least one tier is needed".to_owned());
    }
    let mut tiers = BTreeMap::new();
    for (index, spec) in specs.into_iter().enumerate() {
        let at = format!("tiers[{index}] ({:?})", spec.name);
        if let Some(problem) = label_value_problem(&spec.name) {
            problems.push(format!("{at}: name {problem}"));
        }
        if spec.requests_per_minute == 0 {
            problems.push(format!(
                "{at}: requestsPerMinute must be at least 1 (a tier that may send nothing is no tier)"
            ));
        }
        if spec.concurrent == 0 {
            problems.push(format!("{at}: concurrent must be at least 1"));
        }
        let budget = match &spec.monthly_budget_usd {
            None => None,
            Some(usd) => {
                let micros = usd.micros();
                if micros.is_none() {
                    problems.push(format!("{at}: monthlyBudgetUsd is not a USD amount"));
                }
                micros
            }
        };
        for glob in &spec.models {
            if glob.is_empty() || !glob.contains('/') {
                problems.push(format!(
                    "{at}: models entry {glob:?} must be a provider/model glob (e.g. openai/gpt-4o-mini, anthropic/*)"
                ));
            }
        }
        let terms = TierTerms {
            limits: EffectiveLimits {
                requests_per_minute: spec.requests_per_minute,
                tokens_per_day: spec.tokens_per_day,
                concurrent: spec.concurrent,
            },
            custom: spec.custom,
            monthly_budget_micro_usd: budget,
            models: spec.models,
        };
        if tiers.insert(spec.name.clone(), terms).is_some() {
            problems.push(format!("{at}: a tier named {:?} is given twice", spec.name));
        }
    }
    let default_tier = match file.default_tier {
        Some(name) => name,
        None if tiers.contains_key("free") => "free".to_owned(),
        None => {
            problems.push("defaultTier is needed when no tier is named \"free\"".to_owned());
            String::new()
        }
    };
    if !default_tier.is_empty() && !tiers.contains_key(&default_tier) {
        problems.push(format!("defaultTier {default_tier:?} names no tier given"));
    }
    if problems.is_empty() {
        Ok(TierTable {
            tiers,
            default_tier,
            ..defaults
        })
    } else {
        Err(PlatformConfigError { problems })
    }
}

/// Why a name cannot be a label value (what `llm.dgidgi.io/tier` may hold), if it cannot.
fn label_value_problem(name: &str) -> Option<&'static str> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    let edges = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    if name.is_empty() || name.len() > 63 {
        Some("must be 1 to 63 characters")
    } else if !name.chars().all(allowed)
        || !edges(name.chars().next())
        || !edges(name.chars().last())
    {
        Some(
            "must be a label value: letters, digits, '-', '_', '.', starting and ending with a letter or digit",
        )
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platform_wide_terms_apply_with_or_without_tiers_and_zero_is_refused() {
        let table = tiers(Some(
            "concurrencyCeiling: 7\nunboundedOutputTokens: 2000\ndefaultTier: pro\n",
        ))
        .expect("valid");
        assert_eq!(
            (
                table.concurrency_ceiling,
                table.unbounded_output_tokens,
                table.default_tier.as_str()
            ),
            (7, Some(2000), "pro")
        );
        let with_tiers = tiers(Some(
            "tiers: [{name: free, requestsPerMinute: 1, tokensPerDay: 1, concurrent: 1}]\nconcurrencyCeiling: 3\n",
        ))
        .expect("valid");
        assert_eq!(
            (
                with_tiers.concurrency_ceiling,
                with_tiers.unbounded_output_tokens
            ),
            (3, None)
        );
        let problems = tiers(Some("concurrencyCeiling: 0\nunboundedOutputTokens: 0\n"))
            .unwrap_err()
            .problems;
        assert_eq!(problems.len(), 2, "{problems:?}");
    }

    #[test]
    fn no_configuration_is_the_four_default_tiers() {
        assert_eq!(tiers(None), Ok(TierTable::default()));
        assert_eq!(tiers(Some("{}")), Ok(TierTable::default()));
    }

    #[test]
    fn tiers_by_any_name_with_budgets_models_and_a_default() {
        let table = tiers(Some(
            r#"
tiers:
  - {name: starter, requestsPerMinute: 20, tokensPerDay: 100000, concurrent: 4,
     monthlyBudgetUsd: "25", models: ["openai/gpt-4o-mini", "anthropic/claude-haiku-*"]}
  - {name: pro, requestsPerMinute: 100, tokensPerDay: 1000000, concurrent: 10, monthlyBudgetUsd: 2.5}
  - {name: enterprise, custom: true, requestsPerMinute: 200, tokensPerDay: 2000000, concurrent: 50}
defaultTier: starter
"#,
        ))
        .unwrap();
        assert_eq!(table.default_tier, "starter");
        let starter = &table.tiers["starter"];
        assert_eq!(starter.limits.requests_per_minute, 20);
        assert_eq!(starter.monthly_budget_micro_usd, Some(25_000_000));
        assert_eq!(starter.models.len(), 2);
        assert_eq!(table.tiers["pro"].monthly_budget_micro_usd, Some(2_500_000));
        assert!(table.tiers["enterprise"].custom);
        assert_eq!(
            table.most_restrictive().map(|(name, _)| name),
            Some("starter")
        );
    }

    #[test]
    fn every_problem_is_reported_and_nothing_is_taken() {
        let error = tiers(Some(
            r#"
tiers:
  - {name: "Bad Name", requestsPerMinute: 0, tokensPerDay: 1, concurrent: 0, monthlyBudgetUsd: "lots", models: ["gpt-4o"]}
  - {name: dup, requestsPerMinute: 1, tokensPerDay: 1, concurrent: 1}
  - {name: dup, requestsPerMinute: 1, tokensPerDay: 1, concurrent: 1}
defaultTier: gold
"#,
        ))
        .unwrap_err();
        let all = error.problems.join("\n");
        for expected in [
            "name must be a label value",
            "requestsPerMinute must be at least 1",
            "concurrent must be at least 1",
            "monthlyBudgetUsd is not a USD amount",
            "provider/model glob",
            "given twice",
            "defaultTier \"gold\"",
        ] {
            assert!(all.contains(expected), "{expected}: {all}");
        }
        // Unknown fields and wrong types are refused by name, without echoing values.
        let typo = tiers(Some(
            "tiers: [{name: a, requestsPerMinute: 1, tokensPerDay: 1, concurrent: 1, rpm: 5}]",
        ))
        .unwrap_err();
        assert!(typo.problems[0].contains("rpm"), "{typo}");
        assert!(tiers(Some("tiers: [{name: a}]")).is_err());
        assert!(tiers(Some("tiers: []")).is_err());
        assert!(
            tiers(Some("")).is_err(),
            "a ConfigMap without platform.yaml"
        );
        assert!(
            tiers(Some(
                "tiers: [{name: a, requestsPerMinute: 1, tokensPerDay: 1, concurrent: 1}]"
            ))
            .is_err()
        );
    }
}
