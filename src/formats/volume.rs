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

/// Where a format keeps its output fields (each dialect's
/// [`super::dialect::Dialect::output_fields`]).
#[derive(Debug)]
pub struct OutputFields {
    /// The object member holding the fields (`generationConfig`) in each spelling the provider
    /// reads, first the one the gateway writes; empty for the top level.
    pub within: &'static [&'static str],
    /// The output-limit fields.
    pub limits: &'static [&'static str],
    /// The answer-count field, in each spelling the provider reads.
    pub choices: &'static [&'static str],
    /// Fields that multiply output and cannot be bounded (refused when set above 1).
    pub unbounded: &'static [&'static str],
}

fn fields(format: Format) -> &'static OutputFields {
    super::dialect::dialect(format).output_fields()
}

/// The names of a format's output-limit fields (the ones an allowance cap writes).
pub fn limit_fields(format: Format) -> &'static [&'static str] {
    fields(format).limits
}

/// A positive integer field, or a 400 naming it. Zero is refused too: several servers read an
/// output limit of 0 as "no limit" (Ollama's `num_predict`), which nothing could reserve.
fn count(map: &Map<String, Value>, name: &str) -> Result<Option<u64>, FormatError> {
    match super::member(map, name) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => value
            .as_u64()
            .filter(|count| *count > 0)
            .map(Some)
            .ok_or_else(|| FormatError::invalid(format!("'{name}' must be a positive integer"))),
    }
}

/// The names of the member that holds `format`'s output fields, in each spelling (none when
/// they sit at the top level).
pub fn containers(format: Format) -> &'static [&'static str] {
    fields(format).within
}

/// The name of the member that holds `format`'s output fields in `request` (the spelling the
/// client used, else the one the gateway writes), or `None` when they sit at the top level.
pub fn container_name(format: Format, request: &Map<String, Value>) -> Option<&'static str> {
    let within = fields(format).within;
    let used = within
        .iter()
        .find(|name| super::member(request, name).is_some());
    used.or(within.first()).copied()
}

/// The member holding the output fields, read once: a body that spells it twice is refused,
/// as no one can say which copy the provider obeys.
fn container<'a>(
    fields: &OutputFields,
    request: &'a Map<String, Value>,
) -> Result<Option<&'a Map<String, Value>>, FormatError> {
    if fields.within.is_empty() {
        return Ok(Some(request));
    }
    let mut given = fields
        .within
        .iter()
        .filter(|name| super::member(request, name).is_some());
    let (Some(name), second) = (given.next(), given.next()) else {
        return Ok(None);
    };
    if let Some(second) = second {
        return Err(FormatError::invalid(format!(
            "'{name}' and '{second}' are the same member spelled twice; send one"
        )));
    }
    match request.get(*name) {
        Some(Value::Object(map)) => Ok(Some(map)),
        None | Some(Value::Null) => Ok(None),
        Some(_) => Err(FormatError::invalid(format!("'{name}' must be an object"))),
    }
}

/// Reads a request's output ask in its own `format`; a malformed output field is a 400.
pub fn output_ask(format: Format, request: &Map<String, Value>) -> Result<OutputAsk, FormatError> {
    let fields = fields(format);
    let empty = Map::new();
    let map = container(fields, request)?.unwrap_or(&empty);
    let mut max_output_tokens: Option<u64> = None;
    for name in fields.limits {
        if let Some(asked) = count(map, name)? {
            max_output_tokens = Some(max_output_tokens.map_or(asked, |max| max.max(asked)));
        }
    }
    // Each spelling the provider may obey counts; the largest is reserved for.
    let mut choices = 1;
    for name in fields.choices {
        match count(map, name)? {
            None => {}
            Some(n) if (1..=MAX_CHOICES).contains(&n) => choices = choices.max(n),
            Some(_) => {
                return Err(FormatError::invalid(format!(
                    "'{name}' must be between 1 and {MAX_CHOICES}"
                )));
            }
        }
    }
    let unbounded = fields.unbounded.iter().copied().find(|name| {
        super::member(map, name).is_some_and(|v| !v.is_null() && v.as_u64() != Some(1))
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
        // Google reads a field by its proto name too: the snake_case spellings count as much.
        let snake = ask(
            Format::Gemini,
            json!({"generation_config": {"max_output_tokens": 60_000, "candidate_count": 8}}),
        )
        .unwrap();
        assert_eq!((snake.max_output_tokens, snake.choices), (Some(60_000), 8));
        let mixed = ask(
            Format::Gemini,
            json!({"generationConfig": {"maxOutputTokens": 10, "max_output_tokens": 900, "candidateCount": 1, "candidate_count": 3}}),
        )
        .unwrap();
        assert_eq!((mixed.max_output_tokens, mixed.choices), (Some(900), 3));
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
        // Which copy Google would obey is unknown: both spellings of the member are refused.
        let twice = json!({"generationConfig": {"maxOutputTokens": 10}, "generation_config": {"maxOutputTokens": 60_000}});
        assert!(ask(Format::Gemini, twice).is_err());
        assert!(
            ask(
                Format::Gemini,
                json!({"generation_config": {"candidate_count": 129}})
            )
            .is_err()
        );
    }
}
