//! The one token-usage type every provider's report is read into (OpenAI `usage`, Anthropic
//! `message_start`/`message_delta` usage, Gemini `usageMetadata`, Cohere `usage.tokens`), so
//! metering settles one shape whatever served the request.

use serde::{Deserialize, Serialize};

/// Tokens one request used, as the provider reported them.
///
/// `input_tokens` counts ALL prompt tokens (OpenAI `prompt_tokens` semantics): cache reads and
/// cache writes are included in it, and broken out in the two cache fields so prices can tell
/// them apart.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Every prompt token, cached or not.
    pub input_tokens: u64,
    /// Generated tokens (reasoning tokens included).
    pub output_tokens: u64,
    /// Of `input_tokens`, how many were read from the provider's prompt cache.
    pub cached_input_tokens: u64,
    /// Of `input_tokens`, how many were written to the provider's prompt cache.
    pub cache_creation_input_tokens: u64,
}

impl Usage {
    /// Input plus output: what a tokens-per-day limit counts.
    pub fn total_tokens(&self) -> u64 {
        self.input_tokens.saturating_add(self.output_tokens)
    }

    /// Merges a later report of the same request into this one, field by field, keeping the
    /// larger figure: streams report usage in pieces (Anthropic: input at `message_start`,
    /// output at `message_delta`; Gemini: cumulative figures on every chunk), and a later
    /// report never lowers a count.
    pub fn merge(&mut self, later: Usage) {
        self.input_tokens = self.input_tokens.max(later.input_tokens);
        self.output_tokens = self.output_tokens.max(later.output_tokens);
        self.cached_input_tokens = self.cached_input_tokens.max(later.cached_input_tokens);
        self.cache_creation_input_tokens = self
            .cache_creation_input_tokens
            .max(later.cache_creation_input_tokens);
    }
}

/// Why a model stopped generating, in the canonical (OpenAI chat) names every dialect already
/// maps its own to (Anthropic's `max_tokens` is `length`, Gemini's `SAFETY` is
/// `content_filter`, …): what a trace's `gen_ai.response.finish_reasons` records, so one query
/// finds every truncated answer whichever provider served it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinishReason {
    /// The model ended its answer (or reached a stop sequence).
    Stop,
    /// The output limit cut it.
    Length,
    /// It called tools.
    ToolCalls,
    /// A content filter stopped it.
    ContentFilter,
    /// A reason the canonical form has no name for (OpenAI's deprecated `function_call`, a
    /// gateway's own `error`).
    Other,
}

impl FinishReason {
    /// The reason a canonical `finish_reason` names.
    pub fn from_canonical(name: &str) -> Self {
        match name {
            "stop" => Self::Stop,
            "length" => Self::Length,
            "tool_calls" => Self::ToolCalls,
            "content_filter" => Self::ContentFilter,
            _ => Self::Other,
        }
    }

    /// The reason a canonical chunk or answer (`choices[0].finish_reason`) names, if any.
    pub fn of_canonical(value: &serde_json::Value) -> Option<Self> {
        // Looked up member by member: a JSON pointer is parsed again on every call, and this
        // runs on every chunk of every stream.
        value
            .get("choices")?
            .get(0)?
            .get("finish_reason")?
            .as_str()
            .map(Self::from_canonical)
    }

    /// Its canonical name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stop => "stop",
            Self::Length => "length",
            Self::ToolCalls => "tool_calls",
            Self::ContentFilter => "content_filter",
            Self::Other => "other",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finish_reasons_round_trip_their_canonical_names() {
        for reason in [
            FinishReason::Stop,
            FinishReason::Length,
            FinishReason::ToolCalls,
            FinishReason::ContentFilter,
        ] {
            assert_eq!(FinishReason::from_canonical(reason.as_str()), reason);
        }
        assert_eq!(
            FinishReason::from_canonical("function_call"),
            FinishReason::Other
        );
        let chunk = serde_json::json!({"choices": [{"delta": {}, "finish_reason": "length"}]});
        assert_eq!(
            FinishReason::of_canonical(&chunk),
            Some(FinishReason::Length)
        );
        let open = serde_json::json!({"choices": [{"delta": {}, "finish_reason": null}]});
        assert_eq!(FinishReason::of_canonical(&open), None);
    }

    #[test]
    fn merge_keeps_the_largest_of_each_field() {
        let mut usage = Usage {
            input_tokens: 10,
            cached_input_tokens: 4,
            ..Usage::default()
        };
        usage.merge(Usage {
            output_tokens: 7,
            ..Usage::default()
        });
        assert_eq!(
            usage,
            Usage {
                input_tokens: 10,
                output_tokens: 7,
                cached_input_tokens: 4,
                cache_creation_input_tokens: 0
            }
        );
        assert_eq!(usage.total_tokens(), 17);
    }

    #[test]
    fn serializes_with_snake_case_fields() {
        let json = serde_json::to_value(Usage {
            input_tokens: 1,
            output_tokens: 2,
            cached_input_tokens: 3,
            cache_creation_input_tokens: 4,
        })
        .unwrap();
        assert_eq!(
            json,
            serde_json::json!({"input_tokens":1,"output_tokens":2,"cached_input_tokens":3,"cache_creation_input_tokens":4})
        );
    }
}
