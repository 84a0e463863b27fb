//! Whole Anthropic answers to and from the canonical OpenAI form.

use serde_json::{Value, json};

use super::super::{FormatError, openai, parse_arguments};
use super::*;

// ---------------------------------------------------------------------------------------------
// Responses

pub(super) fn finish_from_stop(stop: Option<&str>) -> &'static str {
    match stop {
        Some("max_tokens" | "model_context_window_exceeded") => "length",
        Some("tool_use") => "tool_calls",
        Some("refusal") => "content_filter",
        _ => "stop",
    }
}

pub(super) fn stop_from_finish(finish: Option<&str>) -> &'static str {
    match finish {
        Some("length") => "max_tokens",
        Some("tool_calls" | "function_call") => "tool_use",
        Some("content_filter") => "refusal",
        _ => "end_turn",
    }
}

/// Anthropic response → OpenAI response. `created` is the Unix time to stamp.
pub fn response_to_openai(response: &Value, created: u64) -> Result<Value, FormatError> {
    let blocks = response
        .get("content")
        .and_then(Value::as_array)
        .ok_or_else(|| FormatError::upstream("the response has no content array"))?;
    let mut text = String::new();
    let mut reasoning = String::new();
    let mut calls = Vec::new();
    for block in blocks {
        match block.get("type").and_then(Value::as_str) {
            Some("text") => text.push_str(block.get("text").and_then(Value::as_str).unwrap_or("")),
            Some("thinking") => {
                reasoning.push_str(block.get("thinking").and_then(Value::as_str).unwrap_or(""))
            }
            Some("tool_use") => calls.push(json!({
                "id": block.get("id").cloned().unwrap_or(Value::Null),
                "type": "function",
                "function": {
                    "name": block.get("name").cloned().unwrap_or(Value::Null),
                    "arguments": block.get("input").map(Value::to_string).unwrap_or_else(|| "{}".to_owned()),
                },
            })),
            _ => {}
        }
    }
    let mut message = json!({"role": "assistant",
        "content": if text.is_empty() && !calls.is_empty() { Value::Null } else { Value::String(text) }});
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
    let finish = finish_from_stop(response.get("stop_reason").and_then(Value::as_str));
    Ok(super::super::openai::completion(
        response.get("id").cloned().unwrap_or(Value::Null),
        response.get("model").cloned().unwrap_or(Value::Null),
        created,
        message,
        finish.into(),
        &usage,
    ))
}

/// OpenAI response → Anthropic response (the `/v1/messages` front door).
pub fn response_from_openai(response: &Value) -> Result<Value, FormatError> {
    let choice = response
        .pointer("/choices/0")
        .ok_or_else(|| FormatError::upstream("the response has no choices"))?;
    let message = choice.get("message").unwrap_or(&Value::Null);
    let mut content = Vec::new();
    if let Some(text) = message.get("content").and_then(Value::as_str)
        && !text.is_empty()
    {
        content.push(json!({"type": "text", "text": text}));
    }
    for call in crate::formats::openai::tool_calls(message) {
        let arguments = call
            .pointer("/function/arguments")
            .and_then(Value::as_str)
            .unwrap_or("");
        let input = parse_arguments(arguments).map_err(|_| {
            FormatError::upstream("the provider returned tool arguments that are not JSON")
        })?;
        content.push(json!({"type": "tool_use",
            "id": call.get("id").cloned().unwrap_or(Value::Null),
            "name": call.pointer("/function/name").cloned().unwrap_or(Value::Null),
            "input": input}));
    }
    let usage = response
        .get("usage")
        .and_then(openai::usage_from_value)
        .unwrap_or_default();
    Ok(json!({
        "id": message_id(response.get("id").and_then(Value::as_str).unwrap_or("")),
        "type": "message",
        "role": "assistant",
        "model": response.get("model").cloned().unwrap_or(Value::Null),
        "content": content,
        "stop_reason": stop_from_finish(choice.get("finish_reason").and_then(Value::as_str)),
        "stop_sequence": null,
        "usage": usage_value(&usage),
    }))
}

pub(super) fn message_id(upstream: &str) -> String {
    if upstream.starts_with("msg_") {
        upstream.to_owned()
    } else {
        format!("msg_{upstream}")
    }
}
