//! Issue #18's property: for any request accepted for a budgeted tenant, the output the target
//! provider is allowed to generate (its output field in the target's own format, or the model's
//! maximum when the request sets none) times the answers it asks for never exceeds what metering
//! reserved, whatever the counters granted and whichever format the target speaks; for a client
//! of each front door's format (OpenAI chat, Responses, Gemini).

use dgidgi::config::{BudgetAction, EffectiveLimits, Source};
use dgidgi::config::{BudgetConfig, ModelConfig, PricingConfig, TenantConfig};
use dgidgi::formats::volume::output_ask;
use dgidgi::formats::{Format, anthropic, cap_output_tokens, cohere, gemini, responses};
use dgidgi::metering::plan::{Candidate, RequestSize, ReservePolicy, output_cap, reserve};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_json::{Map, Value, json};

fn budgeted() -> TenantConfig {
    TenantConfig {
        id: "team-a/acme".into(),
        namespace: "team-a".into(),
        name: "acme".into(),
        tier: "free".into(),
        source: Source::Platform,
        limits: Some(EffectiveLimits {
            requests_per_minute: 10,
            tokens_per_day: 50_000,
            concurrent: 2,
        }),
        budget: Some(BudgetConfig {
            monthly_micro_usd: 100_000,
            alert_thresholds: Vec::new(),
            action: BudgetAction::Block,
        }),
        ..TenantConfig::default()
    }
}

fn model(max_output: Option<u32>) -> ModelConfig {
    ModelConfig {
        embedding: false,
        name: "m".into(),
        aliases: Vec::new(),
        streaming: true,
        function_calling: true,
        context_window: None,
        max_output_tokens: max_output,
        pricing: Some(PricingConfig {
            input_micro_usd_per_million: 3_000_000,
            output_micro_usd_per_million: 15_000_000,
            long_context: None,
        }),
    }
}

/// An output field's value: mostly integers, sometimes what a hostile client would try.
fn field_value() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        3 => Just(None),
        4 => (0u64..2_000_000).prop_map(|n| Some(json!(n))),
        // Small enough for the budget to grant in full, when no cap is written at all.
        3 => (1u64..5_000).prop_map(|n| Some(json!(n))),
        1 => Just(Some(json!(u64::MAX))),
        1 => Just(Some(json!(-1))),
        1 => Just(Some(json!(1e9))),
        1 => Just(Some(json!("100000"))),
        1 => Just(Some(Value::Null)),
    ]
}

fn request() -> impl Strategy<Value = Map<String, Value>> {
    (
        field_value(),
        field_value(),
        field_value(),
        field_value(),
        any::<bool>(),
    )
        .prop_map(|(max_tokens, max_completion, n, best_of, stream)| {
            let mut map = Map::new();
            map.insert("model".into(), json!("m"));
            map.insert(
                "messages".into(),
                json!([{"role": "user", "content": "write a long story"}]),
            );
            for (name, value) in [
                ("max_tokens", max_tokens),
                ("max_completion_tokens", max_completion),
                ("n", n),
                ("best_of", best_of),
            ] {
                if let Some(value) = value {
                    map.insert(name.into(), value);
                }
            }
            map.insert("stream".into(), json!(stream));
            map
        })
}

/// The most output tokens (all answers together) a provider of `format` may generate for
/// `body`, or `None` when nothing bounds it.
fn allowed(format: Format, body: &Map<String, Value>, model: &ModelConfig) -> Option<u64> {
    let ask = output_ask(format, body).expect("the gateway's own body is well formed");
    assert_eq!(
        ask.unbounded, None,
        "an unbounded multiplier reached the target"
    );
    let per_answer = match (ask.max_output_tokens, model.max_output_tokens) {
        (Some(asked), Some(max)) => Some(asked.min(u64::from(max))),
        (Some(asked), None) => Some(asked),
        (None, max) => max.map(u64::from),
    }?;
    Some(per_answer * ask.choices)
}

/// Reserves for `json` as the gateway does for a client of format `front`, then checks every
/// body a target can receive for it (as sent to a provider of the client's own format, and
/// translated through the canonical form to each other format), with the allowance cap
/// written as the gateway writes it: none may let the provider generate more than was reserved.
fn check_every_target(
    front: Format,
    json: &Map<String, Value>,
    max_output: Option<u32>,
    granted_fraction: f64,
    new_name: bool,
) -> Result<(), TestCaseError> {
    let tenant = budgeted();
    let model = model(max_output);
    // Accepted or refused as the gateway does (a malformed or unboundable field is a 400).
    let Ok(ask) = output_ask(front, json) else {
        return Ok(());
    };
    if ask.unbounded.is_some() {
        return Ok(());
    }
    let size = RequestSize {
        body_bytes: serde_json::to_vec(json).unwrap().len(),
        max_output_tokens: ask.max_output_tokens,
        choices: ask.choices,
    };
    let candidates = [Candidate {
        model: Some(&model),
        platform: true,
    }];
    let mut reservation = reserve(&tenant, &candidates, size, &ReservePolicy::default(), 0);
    // The counters may grant any output from one token to the whole ask, never more than the
    // tenant's tokens per day hold (a larger ask is refused or shortened).
    let asked = reservation.output_tokens;
    let day = tenant
        .limits
        .as_ref()
        .map_or(u64::MAX, |l| l.tokens_per_day);
    let granted = ((asked as f64 * granted_fraction) as u64).clamp(asked.min(1), asked.min(day));
    reservation.grant(granted);
    let reserved_output = reservation.tokens - size.body_bytes.div_ceil(4) as u64;
    let cap = output_cap(size, reservation.output_tokens, Some(&model));
    // The client's own format as sent, then the canonical form and every translation of it.
    let mut targets: Vec<(Format, Map<String, Value>)> = vec![(front, json.clone())];
    let canonical = match front {
        Format::Responses => responses::request_to_openai(json),
        Format::Gemini => gemini::request_to_openai(json),
        _ => Ok(json.clone()),
    };
    if let Ok(canonical) = canonical {
        if front != Format::OpenAi {
            targets.push((Format::OpenAi, canonical.clone()));
        }
        if let Ok(body) = anthropic::request_from_openai(&canonical, 4_096) {
            targets.push((Format::Anthropic, body));
        }
        if front != Format::Gemini
            && let Ok(body) = gemini::request_from_openai(&canonical)
        {
            targets.push((Format::Gemini, body));
        }
        if let Ok(body) = cohere::request_from_openai(&canonical) {
            targets.push((Format::Cohere, body));
        }
    }
    for (format, mut body) in targets {
        if let Some(cap) = cap {
            cap_output_tokens(&mut body, format, new_name, cap);
        }
        let may = allowed(format, &body, &model);
        prop_assert!(may.is_some(), "{format:?}: nothing bounds {body:?}");
        prop_assert!(
            may.unwrap_or(u64::MAX) <= reserved_output,
            "{front:?} → {format:?}: may generate {may:?}, reserved {reserved_output} ({body:?})"
        );
    }
    Ok(())
}

/// A Responses request: `max_output_tokens` as a hostile client might write it.
fn responses_request() -> impl Strategy<Value = Map<String, Value>> {
    (field_value(), any::<bool>()).prop_map(|(max_output_tokens, stream)| {
        let mut map = Map::new();
        map.insert("model".into(), json!("m"));
        map.insert("input".into(), json!("write a long story"));
        if let Some(value) = max_output_tokens {
            map.insert("max_output_tokens".into(), value);
        }
        map.insert("stream".into(), json!(stream));
        map
    })
}

/// A Gemini request: `generationConfig`'s limit and answer count, each under its JSON name or
/// its proto name (Google reads both), the member itself spelled either way, or `null`.
fn gemini_request() -> impl Strategy<Value = Map<String, Value>> {
    (
        field_value(),
        field_value(),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        prop_oneof![4 => Just(false), 1 => Just(true)],
    )
        .prop_map(
            |(limit, count, proto_config, proto_limit, proto_count, null)| {
                let mut config = Map::new();
                if let Some(value) = limit {
                    let name = if proto_limit {
                        "max_output_tokens"
                    } else {
                        "maxOutputTokens"
                    };
                    config.insert(name.into(), value);
                }
                if let Some(value) = count {
                    let name = if proto_count {
                        "candidate_count"
                    } else {
                        "candidateCount"
                    };
                    config.insert(name.into(), value);
                }
                let mut map = Map::new();
                map.insert(
                    "contents".into(),
                    json!([{"role": "user", "parts": [{"text": "write a long story"}]}]),
                );
                let name = if proto_config {
                    "generation_config"
                } else {
                    "generationConfig"
                };
                // `null` is an unset member to Google, and a cap must still land.
                let config = if null {
                    Value::Null
                } else {
                    Value::Object(config)
                };
                map.insert(name.into(), config);
                map
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn what_a_target_may_generate_never_exceeds_what_was_reserved(
        json in request(),
        max_output in prop_oneof![Just(None), (1u32..200_000).prop_map(Some)],
        granted_fraction in prop_oneof![Just(1.0), 0.0f64..=1.0],
        new_name in any::<bool>(),
    ) {
        check_every_target(Format::OpenAi, &json, max_output, granted_fraction, new_name)?;
    }

    /// The same for the Responses and Gemini front doors (issue #20).
    #[test]
    fn the_responses_and_gemini_doors_reserve_what_every_target_may_generate(
        front_json in prop_oneof![
            responses_request().prop_map(|json| (Format::Responses, json)),
            gemini_request().prop_map(|json| (Format::Gemini, json)),
        ],
        max_output in prop_oneof![Just(None), (1u32..200_000).prop_map(Some)],
        granted_fraction in prop_oneof![Just(1.0), 0.0f64..=1.0],
        new_name in any::<bool>(),
    ) {
        let (front, json) = front_json;
        check_every_target(front, &json, max_output, granted_fraction, new_name)?;
    }
}
