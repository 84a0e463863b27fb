//! An estimate of a request's input tokens, for token counting in front of a provider that has
//! no counting endpoint of its own. It is said to be one (`x-dgidgi-token-count: estimated`):
//! every model has its own tokenizer, and only the provider's count is exact.
//!
//! The estimate is about four bytes of text a token (the usual figure for English under BPE
//! tokenizers), counted over every string a model reads (system, messages, tool definitions,
//! tool arguments and results), plus a few tokens of framing per message and per tool, and a
//! flat amount per image or document.

use serde_json::{Map, Value};

/// Bytes of text per token.
const BYTES_PER_TOKEN: u64 = 4;
/// Framing tokens per message (role and separators).
const PER_MESSAGE: u64 = 4;
/// Framing tokens per tool definition.
const PER_TOOL: u64 = 8;
/// Tokens of an image or a document: Anthropic counts about (width × height) / 750 for an
/// image, some 1,600 for a typical 1,092×1,092 one; a document varies too widely to guess
/// better.
const PER_MEDIA: u64 = 1_600;

/// The estimated tokens of a text.
pub fn text_tokens(text: &str) -> u64 {
    (text.len() as u64).div_ceil(BYTES_PER_TOKEN)
}

/// The estimated input tokens of an Anthropic Messages request (`system`, `messages`, `tools`).
pub fn input_tokens(request: &Map<String, Value>) -> u64 {
    let mut text_bytes = 0u64;
    let mut framing = 0u64;
    if let Some(system) = request.get("system") {
        text_bytes += readable_bytes(system, &mut framing);
    }
    if let Some(Value::Array(messages)) = request.get("messages") {
        for message in messages {
            framing += PER_MESSAGE;
            if let Some(content) = message.get("content") {
                text_bytes += readable_bytes(content, &mut framing);
            }
        }
    }
    if let Some(Value::Array(tools)) = request.get("tools") {
        for tool in tools {
            framing += PER_TOOL;
            text_bytes += readable_bytes(tool, &mut framing);
        }
    }
    text_bytes.div_ceil(BYTES_PER_TOKEN) + framing
}

/// Bytes of the text in a value (strings, and object keys, which a schema's model reads), with
/// the flat amount of each image or document added to `framing`.
fn readable_bytes(value: &Value, framing: &mut u64) -> u64 {
    match value {
        Value::String(text) => text.len() as u64,
        Value::Array(items) => items.iter().map(|v| readable_bytes(v, framing)).sum(),
        Value::Object(object) => {
            let kind = object.get("type").and_then(Value::as_str);
            if matches!(kind, Some("image" | "document" | "image_url")) {
                *framing += PER_MEDIA;
                return 0;
            }
            object
                .iter()
                .filter(|(name, _)| name.as_str() != "type" && name.as_str() != "cache_control")
                .map(|(name, v)| name.len() as u64 + readable_bytes(v, framing))
                .sum()
        }
        Value::Number(number) => number.to_string().len() as u64,
        Value::Bool(_) | Value::Null => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn estimate(request: Value) -> u64 {
        input_tokens(request.as_object().unwrap())
    }

    #[test]
    fn text_counts_a_token_per_four_bytes_plus_framing() {
        let short = estimate(json!({"messages": [{"role": "user", "content": "abcdefgh"}]}));
        assert_eq!(short, 2 + PER_MESSAGE);
        let longer = estimate(json!({
            "system": "x".repeat(400),
            "messages": [{"role": "user", "content": [{"type": "text", "text": "y".repeat(400)}]}]
        }));
        // The system's 400 bytes and the text part's 400, plus its key `text`.
        assert_eq!(longer, (800 + 4u64).div_ceil(4) + PER_MESSAGE);
    }

    #[test]
    fn tools_and_images_count() {
        let with_image = estimate(json!({"messages": [{"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "A".repeat(100_000)}}
        ]}]}));
        assert_eq!(with_image, PER_MEDIA + PER_MESSAGE);
        let with_tool = estimate(json!({"messages": [], "tools": [{"name": "get_weather",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}]}));
        assert!(with_tool > PER_TOOL, "{with_tool}");
    }
}
