//! How much output a request asks for, read in its own wire format: the one place that knows
//! which fields control how much a provider generates (DESIGN §2: every such field is covered
//! by the reservation). Each format's output-limit fields (the largest wins when several are
//! given: a provider may honour either), its answer count (`n`, `candidateCount`), and the
//! fields that multiply output but cannot be bounded by the gateway (refused for tenants whose
//! limits or budget apply, instead of forwarded).

use serde_json::{Map, Value};

use super::{Format, FormatError};

/// The most answers a request may ask for (OpenAI's own limit for `n`).
pub const MAX_CHOICES: u64 = 128;

/// What a request asks for, as far as its output volume goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutputAsk {
    /// The largest of its output-limit fields, if it set any.
    pub max_output_tokens: Option<u64>,
    /// How many answers it asks for (1 when not set).
    pub choices: u64,
    /// A field present that multiplies output in a way the gateway cannot bound.
    pub unbounded: Option<&'static str>,
}

/// Where a format keeps its output fields.
struct Fields {
    /// An object member holding the fields (`generationConfig`), or the top level.
    within: Option<&'static str>,
    /// The output-limit fields.
    limits: &'static [&'static str],
    /// The answer-count field.
    choices: Option<&'static str>,
    /// Fields that multiply output and cannot be bounded (refused when set above 1).
    unbounded: &'static [&'static str],
}

fn fields(format: Format) -> Fields {
    match format {
        Format::OpenAi => Fields {
            within: None,
            // OpenAI's two names, then what OpenAI-compatible servers also honour on this
            // path: llama.cpp's `n_predict` (read before `max_tokens`), Ollama's `num_predict`,
            // Hugging Face TGI's `max_new_tokens`.
            limits: &[
                "max_completion_tokens",
                "max_tokens",
                "n_predict",
                "num_predict",
                "max_new_tokens",
            ],
            choices: Some("n"),
            // vLLM and other compatible servers honour `best_of` on chat requests: it samples
            // that many answers and returns the best, each one paid for.
            unbounded: &["best_of"],
        },
        Format::Anthropic => Fields {
            within: None,
            limits: &["max_tokens"],
            choices: None,
            unbounded: &[],
        },
        Format::Gemini => Fields {
            within: Some("generationConfig"),
            limits: &["maxOutputTokens"],
            choices: Some("candidateCount"),
            unbounded: &[],
        },
        Format::Cohere => Fields {
            within: None,
            limits: &["max_tokens"],
            choices: None,
            unbounded: &["num_generations"],
        },
        // Reasoning tokens count within `max_output_tokens`; one answer per request.
        Format::Responses => Fields {
            within: None,
            limits: &["max_output_tokens"],
            choices: None,
            unbounded: &[],
        },
    }
}

/// The names of a format's output-limit fields (the ones an allowance cap writes).
pub fn limit_fields(format: Format) -> &'static [&'static str] {
    fields(format).limits
}

/// A positive integer field, or a 400 naming it. Zero is refused too: several servers read an
/// output limit of 0 as "no limit" (Ollama's `num_predict`), which nothing could reserve.
fn count(map: &Map<String, Value>, name: &str) -> Result<Option<u64>, FormatError> {
    match map.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => value
            .as_u64()
            .filter(|count| *count > 0)
            .map(Some)
            .ok_or_else(|| FormatError::invalid(format!("'{name}' must be a positive integer"))),
    }
}

/// Reads a request's output ask in its own `format`; a malformed output field is a 400.
pub fn output_ask(format: Format, request: &Map<String, Value>) -> Result<OutputAsk, FormatError> {
    let fields = fields(format);
    let empty = Map::new();
    let map = match fields.within.map(|name| request.get(name)) {
        None => request,
        Some(None | Some(Value::Null)) => &empty,
        Some(Some(Value::Object(map))) => map,
        Some(Some(_)) => {
            return Err(FormatError::invalid(format!(
                "'{}' must be an object",
                fields.within.unwrap_or_default()
            )));
        }
    };
    let mut max_output_tokens: Option<u64> = None;
    for name in fields.limits {
        if let Some(asked) = count(map, name)? {
            max_output_tokens = Some(max_output_tokens.map_or(asked, |max| max.max(asked)));
        }
    }
    let choices = match fields.choices {
        None => 1,
        Some(name) => match count(map, name)? {
            None => 1,
            Some(n) if (1..=MAX_CHOICES).contains(&n) => n,
            Some(_) => {
                return Err(FormatError::invalid(format!(
                    "'{name}' must be between 1 and {MAX_CHOICES}"
                )));
            }
        },
    };
    let unbounded = fields.unbounded.iter().copied().find(|name| {
        map.get(*name)
            .is_some_and(|v| !v.is_null() && v.as_u64() != Some(1))
    });
    Ok(OutputAsk {
        max_output_tokens,
        choices,
        unbounded,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ask(format: Format, body: Value) -> Result<OutputAsk, FormatError> {
        let Value::Object(map) = body else {
            unreachable!()
        };
        output_ask(format, &map)
    }

    #[test]
    fn the_largest_output_field_and_the_answer_count_are_read_in_each_format() {
        let both = ask(
            Format::OpenAi,
            json!({"max_completion_tokens": 1, "max_tokens": 1_000_000, "n": 128}),
        )
        .unwrap();
        assert_eq!(both.max_output_tokens, Some(1_000_000));
        assert_eq!(both.choices, 128);
        // A compatible server's own name for the limit counts as much as OpenAI's.
        let alias = ask(
            Format::OpenAi,
            json!({"max_tokens": 10, "n_predict": 1_000_000}),
        )
        .unwrap();
        assert_eq!(alias.max_output_tokens, Some(1_000_000));
        let anthropic = ask(Format::Anthropic, json!({"max_tokens": 64_000})).unwrap();
        assert_eq!(
            (anthropic.max_output_tokens, anthropic.choices),
            (Some(64_000), 1)
        );
        let gemini = ask(
            Format::Gemini,
            json!({"generationConfig": {"maxOutputTokens": 500, "candidateCount": 4}}),
        )
        .unwrap();
        assert_eq!((gemini.max_output_tokens, gemini.choices), (Some(500), 4));
        let none = ask(Format::OpenAi, json!({"messages": []})).unwrap();
        assert_eq!(
            (none.max_output_tokens, none.choices, none.unbounded),
            (None, 1, None)
        );
    }

    #[test]
    fn malformed_counts_and_unbounded_multipliers_are_named() {
        for body in [
            json!({"max_tokens": 1e9}),
            json!({"max_tokens": "1000000"}),
            json!({"max_completion_tokens": -1}),
            json!({"max_tokens": 0}),
            json!({"n": 0}),
            json!({"n": 129}),
        ] {
            assert!(ask(Format::OpenAi, body.clone()).is_err(), "{body}");
        }
        assert_eq!(
            ask(Format::OpenAi, json!({"best_of": 20}))
                .unwrap()
                .unbounded,
            Some("best_of")
        );
        assert_eq!(
            ask(Format::OpenAi, json!({"best_of": 1}))
                .unwrap()
                .unbounded,
            None
        );
        assert_eq!(
            ask(Format::Cohere, json!({"num_generations": 5}))
                .unwrap()
                .unbounded,
            Some("num_generations")
        );
        assert!(ask(Format::Gemini, json!({"generationConfig": 3})).is_err());
    }
}
