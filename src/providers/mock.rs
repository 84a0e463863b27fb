//! The built-in `mock` provider: deterministic OpenAI-format answers with real usage numbers,
//! streaming and tool calls, so the quickstart, demos and load tests run offline. Pure: a
//! request in, response bytes out.

use serde_json::{Map, Value, json};

/// A mock answer: JSON for a plain request, a complete SSE stream for a streaming one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MockReply {
    /// `application/json` or `text/event-stream`.
    pub content_type: &'static str,
    /// The body.
    pub body: Vec<u8>,
}

/// Fixed creation time, so answers are byte-for-byte reproducible.
const CREATED: u64 = 1_700_000_000;

/// Answers an OpenAI chat completion request (already parsed) for `model`.
pub fn chat_completion(request: &Map<String, Value>, model: &str) -> MockReply {
    let prompt_tokens = estimate_tokens(request.get("messages"));
    let last_user = last_user_text(request.get("messages"));
    let tool = first_tool(request);
    let content = format!(
        "Mock answer from {model}: you said \"{}\".",
        truncate(&last_user, 80)
    );
    let completion_tokens = content.split_whitespace().count() as u64;
    let id = format!("chatcmpl-mock-{:016x}", fnv1a(last_user.as_bytes()));
    let usage = json!({
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    });
    let stream = request
        .get("stream")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if !stream {
        let message = match &tool {
            Some(name) => json!({"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_mock_0", "type": "function", "function": {"name": name, "arguments": "{}"}}
            ]}),
            None => json!({"role": "assistant", "content": content}),
        };
        let body = json!({
            "id": id,
            "object": "chat.completion",
            "created": CREATED,
            "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": if tool.is_some() { "tool_calls" } else { "stop" }}],
            "usage": usage,
        });
        return MockReply {
            content_type: "application/json",
            body: body.to_string().into_bytes(),
        };
    }
    let include_usage = request
        .get("stream_options")
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let chunk = |delta: Value, finish: Value| {
        json!({"id": id, "object": "chat.completion.chunk", "created": CREATED, "model": model,
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    };
    let mut events = vec![chunk(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    )];
    match &tool {
        Some(name) => {
            events.push(chunk(
                json!({"tool_calls": [{"index": 0, "id": "call_mock_0", "type": "function", "function": {"name": name, "arguments": ""}}]}),
                Value::Null,
            ));
            events.push(chunk(
                json!({"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]}),
                Value::Null,
            ));
            events.push(chunk(json!({}), json!("tool_calls")));
        }
        None => {
            let words: Vec<&str> = content.split_inclusive(' ').collect();
            for word in words {
                events.push(chunk(json!({"content": word}), Value::Null));
            }
            events.push(chunk(json!({}), json!("stop")));
        }
    }
    if include_usage {
        events.push(
            json!({"id": id, "object": "chat.completion.chunk", "created": CREATED, "model": model,
                           "choices": [], "usage": usage}),
        );
    }
    let mut body = String::new();
    for event in events {
        body.push_str("data: ");
        body.push_str(&event.to_string());
        body.push_str("\n\n");
    }
    body.push_str("data: [DONE]\n\n");
    MockReply {
        content_type: "text/event-stream",
        body: body.into_bytes(),
    }
}

/// About four characters per token, as OpenAI's rule of thumb; at least one.
fn estimate_tokens(messages: Option<&Value>) -> u64 {
    let chars: usize = messages
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .map(|m| text_of(m.get("content")).len() + 4)
                .sum()
        })
        .unwrap_or(0);
    (chars as u64).div_ceil(4).max(1)
}

fn text_of(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

fn last_user_text(messages: Option<&Value>) -> String {
    messages
        .and_then(Value::as_array)
        .and_then(|list| {
            list.iter()
                .rev()
                .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        })
        .map(|m| text_of(m.get("content")))
        .unwrap_or_default()
}

/// The tool the mock "calls": the first one, unless `tool_choice` is `none`.
fn first_tool(request: &Map<String, Value>) -> Option<String> {
    if request.get("tool_choice").and_then(Value::as_str) == Some("none") {
        return None;
    }
    request
        .get("tools")
        .and_then(Value::as_array)
        .and_then(|tools| tools.first())
        .and_then(|tool| tool.get("function"))
        .and_then(|f| f.get("name"))
        .and_then(Value::as_str)
        .map(str::to_owned)
}

fn truncate(text: &str, max_chars: usize) -> String {
    let cleaned: String = text
        .chars()
        .filter(|c| *c != '"' && !c.is_control())
        .collect();
    cleaned.chars().take(max_chars).collect()
}

/// FNV-1a, for stable ids without a hashing dependency's randomness.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap()
    }

    #[test]
    fn plain_answer_has_usage_and_is_deterministic() {
        let req = request(
            json!({"model": "mock-fast", "messages": [{"role": "user", "content": "Hello there"}]}),
        );
        let a = chat_completion(&req, "mock-fast");
        assert_eq!(a, chat_completion(&req, "mock-fast"));
        let body: Value = serde_json::from_slice(&a.body).unwrap();
        assert_eq!(body["object"], "chat.completion");
        assert!(
            body["choices"][0]["message"]["content"]
                .as_str()
                .unwrap()
                .contains("Hello there")
        );
        let usage = &body["usage"];
        assert_eq!(
            usage["total_tokens"].as_u64().unwrap(),
            usage["prompt_tokens"].as_u64().unwrap() + usage["completion_tokens"].as_u64().unwrap()
        );
    }

    #[test]
    fn streams_are_sse_with_usage_when_asked_and_done() {
        let req = request(
            json!({"model": "m", "stream": true, "stream_options": {"include_usage": true},
                                 "messages": [{"role": "user", "content": "hi"}]}),
        );
        let reply = chat_completion(&req, "m");
        assert_eq!(reply.content_type, "text/event-stream");
        let text = String::from_utf8(reply.body).unwrap();
        assert!(text.ends_with("data: [DONE]\n\n"));
        let events: Vec<Value> = text
            .split("\n\n")
            .filter_map(|e| e.strip_prefix("data: "))
            .filter(|e| *e != "[DONE]")
            .map(|e| serde_json::from_str(e).unwrap())
            .collect();
        assert!(
            events
                .iter()
                .any(|e| e["choices"][0]["finish_reason"] == "stop")
        );
        assert!(
            events.last().unwrap()["usage"]["total_tokens"]
                .as_u64()
                .unwrap()
                > 0
        );
    }

    #[test]
    fn tools_produce_a_tool_call() {
        let req = request(
            json!({"model": "m", "messages": [{"role": "user", "content": "weather?"}],
                                 "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]}),
        );
        let body: Value = serde_json::from_slice(&chat_completion(&req, "m").body).unwrap();
        assert_eq!(body["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(
            body["choices"][0]["message"]["tool_calls"][0]["function"]["name"],
            "get_weather"
        );
    }
}
