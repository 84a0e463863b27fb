//! Whole Responses API answers to and from the canonical chat form.

use serde_json::{Value, json};

use super::super::{FormatError, openai};
use super::*;
use crate::usage::Usage;

/// An id for something the gateway writes, derived from the upstream's id: the same answer
/// always gets the same ids, different answers different ones.
pub(super) fn derived_id(prefix: &str, from: &str, index: usize) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(format!("{from}\0{index}").as_bytes());
    format!("{prefix}_{}", hex::encode(&digest[..16]))
}

/// The `usage` of a `response` object.
pub(super) fn usage_value(usage: &Usage, reasoning_tokens: u64) -> Value {
    json!({
        "input_tokens": usage.input_tokens,
        "input_tokens_details": {"cached_tokens": usage.cached_input_tokens},
        "output_tokens": usage.output_tokens,
        "output_tokens_details": {"reasoning_tokens": reasoning_tokens},
        "total_tokens": usage.total_tokens(),
    })
}

/// What a chat completion's `finish_reason` says of a response: its status and, when it was
/// cut short, why.
pub(super) fn status_of(finish: Option<&str>) -> (&'static str, Value) {
    match finish {
        Some("length") => ("incomplete", json!({"reason": "max_output_tokens"})),
        Some("content_filter") => ("incomplete", json!({"reason": "content_filter"})),
        _ => ("completed", Value::Null),
    }
}

/// A `response` object around its output items.
pub(super) fn response_object(
    id: &str,
    model: &str,
    created: u64,
    status: &str,
    incomplete: Value,
    output: Vec<Value>,
    usage: Value,
) -> Value {
    json!({
        "id": id, "object": "response", "created_at": created, "status": status,
        "background": false, "error": null, "incomplete_details": incomplete,
        "instructions": null, "max_output_tokens": null, "model": model, "output": output,
        "parallel_tool_calls": true, "previous_response_id": null,
        "reasoning": {"effort": null, "summary": null}, "store": false,
        "temperature": null, "text": {"format": {"type": "text"}}, "tool_choice": "auto",
        "tools": [], "top_p": null, "truncation": "disabled", "usage": usage, "metadata": {},
    })
}

/// A canonical chat completion as a `response` object.
pub fn response_from_openai(completion: &Value, created: u64) -> Result<Value, FormatError> {
    let upstream_id = completion.get("id").and_then(Value::as_str).unwrap_or("");
    let choice = completion
        .pointer("/choices/0")
        .ok_or_else(|| FormatError::upstream("the answer has no choices"))?;
    let message = choice.get("message").unwrap_or(&Value::Null);
    let mut output = Vec::new();
    if let Some(reasoning) = message
        .get("reasoning_content")
        .and_then(Value::as_str)
        .filter(|r| !r.is_empty())
    {
        output.push(
            json!({"type": "reasoning", "id": derived_id("rs", upstream_id, 0),
            "summary": [{"type": "summary_text", "text": reasoning}]}),
        );
    }
    let text = message.get("content").and_then(Value::as_str).unwrap_or("");
    let refusal = message.get("refusal").and_then(Value::as_str);
    if !text.is_empty() || refusal.is_some() {
        let part = match refusal {
            Some(refusal) => json!({"type": "refusal", "refusal": refusal}),
            None => json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []}),
        };
        output.push(
            json!({"type": "message", "id": derived_id("msg", upstream_id, 0),
            "status": "completed", "role": "assistant", "content": [part]}),
        );
    }
    for (index, call) in crate::formats::openai::tool_calls(message).enumerate() {
        let call_id = call.get("id").and_then(Value::as_str).unwrap_or_default();
        output.push(json!({"type": "function_call", "id": derived_id("fc", upstream_id, index),
            "call_id": call_id, "name": call.pointer("/function/name").cloned().unwrap_or(Value::Null),
            "arguments": call.pointer("/function/arguments").cloned().unwrap_or(json!("")),
            "status": "completed"}));
    }
    let usage = completion
        .get("usage")
        .and_then(openai::usage_from_value)
        .unwrap_or_default();
    let reasoning_tokens = completion
        .pointer("/usage/completion_tokens_details/reasoning_tokens")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let (status, incomplete) = status_of(choice.get("finish_reason").and_then(Value::as_str));
    let model = completion
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("");
    Ok(response_object(
        &derived_id("resp", upstream_id, 0),
        model,
        created,
        status,
        incomplete,
        output,
        usage_value(&usage, reasoning_tokens),
    ))
}

/// A `response` object read into a canonical chat completion (for a client of another format
/// when the target serves only the Responses API).
pub fn response_to_openai(response: &Value, created: u64) -> Result<Value, FormatError> {
    let output = response
        .get("output")
        .and_then(Value::as_array)
        .ok_or_else(|| FormatError::upstream("the response has no 'output'"))?;
    let mut text = String::new();
    let mut reasoning = String::new();
    let mut calls = Vec::new();
    for item in output {
        match item.get("type").and_then(Value::as_str) {
            Some("message") => {
                for part in crate::formats::items(item.get("content")) {
                    if let Some(piece) = part.get("text").and_then(Value::as_str) {
                        text.push_str(piece);
                    }
                }
            }
            Some("reasoning") => {
                for part in crate::formats::items(item.get("summary")) {
                    reasoning.push_str(part.get("text").and_then(Value::as_str).unwrap_or(""));
                }
            }
            Some("function_call") => calls.push(json!({"id": item.get("call_id"),
                "type": "function", "function": {"name": item.get("name"),
                "arguments": item.get("arguments").cloned().unwrap_or(json!(""))}})),
            _ => {}
        }
    }
    let mut message = json!({"role": "assistant", "content": if calls.is_empty() || !text.is_empty() { json!(text) } else { Value::Null }});
    if !reasoning.is_empty() {
        message["reasoning_content"] = Value::String(reasoning);
    }
    let finish = finish_of_answer(response);
    if !calls.is_empty() {
        message["tool_calls"] = Value::Array(calls);
    }
    let usage = response
        .get("usage")
        .and_then(usage_from_value)
        .unwrap_or_default();
    Ok(super::super::openai::completion(
        response.get("id").cloned().unwrap_or(json!("")),
        response.get("model").cloned().unwrap_or(json!("")),
        created,
        message,
        finish.into(),
        &usage,
    ))
}

/// A chat completion's `finish_reason` for a whole response: `tool_calls` when it called any,
/// else its status's.
pub(super) fn finish_of_answer(response: &Value) -> &'static str {
    let called = crate::formats::items(response.get("output"))
        .any(|item| item.get("type").and_then(Value::as_str) == Some("function_call"));
    if called {
        "tool_calls"
    } else {
        finish_of(response)
    }
}

/// A chat completion's `finish_reason` for a response's status.
pub(super) fn finish_of(response: &Value) -> &'static str {
    match response
        .pointer("/incomplete_details/reason")
        .and_then(Value::as_str)
    {
        Some("max_output_tokens") => "length",
        Some("content_filter") => "content_filter",
        _ => "stop",
    }
}
