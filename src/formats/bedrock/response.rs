//! Whole Converse answers to and from the canonical OpenAI form.

use serde_json::{Value, json};

use super::super::{FormatError, openai, parse_arguments};
use super::{usage_from_value, usage_value};

/// The canonical `finish_reason` of a Converse `stopReason`. A guardrail stepping in and a
/// filtered answer are both OpenAI's `content_filter`.
pub(super) fn finish_from_stop(stop: Option<&str>) -> &'static str {
    match stop {
        Some("tool_use") => "tool_calls",
        Some("max_tokens" | "model_context_window_exceeded") => "length",
        Some("guardrail_intervened" | "content_filtered") => "content_filter",
        _ => "stop",
    }
}

/// The Converse `stopReason` of a canonical `finish_reason`.
pub(super) fn stop_from_finish(finish: Option<&str>) -> &'static str {
    match finish {
        Some("length") => "max_tokens",
        Some("tool_calls" | "function_call") => "tool_use",
        Some("content_filter") => "content_filtered",
        _ => "end_turn",
    }
}

/// The id of an answer Converse gives none: one per request, stamped with its time like
/// Gemini's fallback.
pub(super) fn answer_id(created: u64) -> String {
    format!("bedrock-{created}")
}

/// A Converse `toolUse` block as a canonical tool call (arguments as JSON text).
pub(super) fn tool_call(call: &Value) -> Value {
    json!({
        "id": call.get("toolUseId").cloned().unwrap_or(Value::Null),
        "type": "function",
        "function": {
            "name": call.get("name").cloned().unwrap_or(Value::Null),
            "arguments": call.get("input").map_or_else(|| "{}".to_owned(), Value::to_string),
        },
    })
}

/// Converse answer → OpenAI chat completion. Converse names neither the answer nor the model:
/// `model` (the one the request went to) and `created` fill them.
pub fn response_to_openai(
    response: &Value,
    model: &str,
    created: u64,
) -> Result<Value, FormatError> {
    let blocks = response
        .pointer("/output/message/content")
        .and_then(Value::as_array)
        .ok_or_else(|| FormatError::upstream("the answer has no output.message.content array"))?;
    let mut text = String::new();
    let mut reasoning = String::new();
    let mut calls = Vec::new();
    for block in blocks {
        if let Some(part) = block.get("text").and_then(Value::as_str) {
            text.push_str(part);
        } else if let Some(call) = block.get("toolUse") {
            calls.push(tool_call(call));
        } else if let Some(part) = block
            .pointer("/reasoningContent/reasoningText/text")
            .and_then(Value::as_str)
        {
            reasoning.push_str(part);
        }
    }
    let content = if text.is_empty() && !calls.is_empty() {
        Value::Null
    } else {
        Value::String(text)
    };
    let mut message = json!({"role": "assistant", "content": content});
    if !calls.is_empty() {
        message["tool_calls"] = Value::Array(calls);
    }
    if !reasoning.is_empty() {
        message["reasoning_content"] = Value::String(reasoning);
    }
    let usage = response
        .get("usage")
        .and_then(usage_from_value)
        .unwrap_or_default();
    let finish = finish_from_stop(response.get("stopReason").and_then(Value::as_str));
    Ok(super::super::openai::completion(
        answer_id(created).into(),
        model.into(),
        created,
        message,
        finish.into(),
        &usage,
    ))
}

/// OpenAI chat completion → Converse answer (what a Converse front door would need).
pub fn response_from_openai(response: &Value) -> Result<Value, FormatError> {
    let choice = response
        .pointer("/choices/0")
        .ok_or_else(|| FormatError::upstream("the response has no choices"))?;
    let message = choice.get("message").unwrap_or(&Value::Null);
    let mut content = Vec::new();
    if let Some(text) = message.get("reasoning_content").and_then(Value::as_str)
        && !text.is_empty()
    {
        content.push(json!({"reasoningContent": {"reasoningText": {"text": text}}}));
    }
    if let Some(text) = message.get("content").and_then(Value::as_str)
        && !text.is_empty()
    {
        content.push(json!({ "text": text }));
    }
    for call in openai::tool_calls(message) {
        let arguments = call
            .pointer("/function/arguments")
            .and_then(Value::as_str)
            .unwrap_or("");
        let input = parse_arguments(arguments).map_err(|_| {
            FormatError::upstream("the provider returned tool arguments that are not JSON")
        })?;
        content.push(json!({"toolUse": {
            "toolUseId": call.get("id").cloned().unwrap_or(Value::Null),
            "name": call.pointer("/function/name").cloned().unwrap_or(Value::Null),
            "input": input}}));
    }
    let usage = response
        .get("usage")
        .and_then(openai::usage_from_value)
        .unwrap_or_default();
    Ok(json!({
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": stop_from_finish(choice.get("finish_reason").and_then(Value::as_str)),
        "usage": usage_value(&usage),
        "metrics": {"latencyMs": 0},
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(content: Value, stop: &str) -> Value {
        json!({"output": {"message": {"role": "assistant", "content": content}},
            "stopReason": stop,
            "usage": {"inputTokens": 12, "outputTokens": 7, "totalTokens": 19},
            "metrics": {"latencyMs": 420}})
    }

    #[test]
    fn a_text_answer_becomes_a_chat_completion() {
        let out = response_to_openai(
            &answer(json!([{"text": "Hello"}, {"text": "!"}]), "end_turn"),
            "claude",
            1700,
        )
        .unwrap();
        assert_eq!(
            out,
            json!({"id": "bedrock-1700", "object": "chat.completion", "created": 1700,
                "model": "claude",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello!"},
                    "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19,
                    "prompt_tokens_details": {"cached_tokens": 0}}})
        );
    }

    #[test]
    fn tool_use_and_reasoning_are_kept() {
        let out = response_to_openai(
            &answer(
                json!([
                    {"reasoningContent": {"reasoningText": {"text": "they want weather", "signature": "sig"}}},
                    {"toolUse": {"toolUseId": "tooluse_1", "name": "get_weather", "input": {"city": "Paris"}}}
                ]),
                "tool_use",
            ),
            "m",
            1,
        )
        .unwrap();
        let message = &out["choices"][0]["message"];
        assert_eq!(message["content"], Value::Null);
        assert_eq!(message["reasoning_content"], "they want weather");
        assert_eq!(
            message["tool_calls"],
            json!([{"id": "tooluse_1", "type": "function",
                "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}])
        );
        assert_eq!(out["choices"][0]["finish_reason"], "tool_calls");
    }

    #[test]
    fn each_stop_reason_has_its_finish_reason() {
        for (stop, finish) in [
            ("end_turn", "stop"),
            ("tool_use", "tool_calls"),
            ("max_tokens", "length"),
            ("stop_sequence", "stop"),
            ("guardrail_intervened", "content_filter"),
            ("content_filtered", "content_filter"),
        ] {
            let out = response_to_openai(&answer(json!([{"text": "x"}]), stop), "m", 1).unwrap();
            assert_eq!(out["choices"][0]["finish_reason"], finish, "{stop}");
        }
    }

    #[test]
    fn cache_reads_count_as_cached_prompt_tokens() {
        let mut cached = answer(json!([{"text": "x"}]), "end_turn");
        cached["usage"] = json!({"inputTokens": 10, "outputTokens": 2, "totalTokens": 162,
            "cacheReadInputTokens": 100, "cacheWriteInputTokens": 50});
        let out = response_to_openai(&cached, "m", 1).unwrap();
        assert_eq!(
            out["usage"],
            json!({"prompt_tokens": 160, "completion_tokens": 2, "total_tokens": 162,
                "prompt_tokens_details": {"cached_tokens": 100}})
        );
    }

    #[test]
    fn an_answer_without_content_is_the_providers_failure() {
        let error = response_to_openai(&json!({"message": "nope"}), "m", 1).unwrap_err();
        assert!(matches!(error, FormatError::Upstream(_)));
    }

    #[test]
    fn a_chat_completion_is_written_as_a_converse_answer_and_read_back() {
        let original = answer(
            json!([{"text": "Hi"}, {"toolUse": {"toolUseId": "t", "name": "f", "input": {"a": 1}}}]),
            "tool_use",
        );
        let canonical = response_to_openai(&original, "m", 5).unwrap();
        let converse = response_from_openai(&canonical).unwrap();
        assert_eq!(converse["output"], original["output"]);
        assert_eq!(converse["stopReason"], "tool_use");
        assert_eq!(converse["usage"]["totalTokens"], 19);
    }
}
