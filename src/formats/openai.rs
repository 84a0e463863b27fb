//! The OpenAI chat completions format: usage extraction from a response body or a stream
//! chunk, and asking an upstream for streamed usage (`stream_options.include_usage`).

use serde_json::{Map, Value};

use crate::usage::Usage;

/// Reads an OpenAI `usage` object. `prompt_tokens` already counts cached tokens; cache reads
/// are `prompt_tokens_details.cached_tokens` (DeepSeek's `prompt_cache_hit_tokens` too).
pub fn usage_from_value(usage: &Value) -> Option<Usage> {
    let usage = usage.as_object()?;
    let number = |key: &str| usage.get(key).and_then(Value::as_u64);
    let input_tokens = number("prompt_tokens")?;
    let output_tokens = number("completion_tokens").unwrap_or(0);
    let cached_input_tokens = usage
        .get("prompt_tokens_details")
        .and_then(|d| d.get("cached_tokens"))
        .and_then(Value::as_u64)
        .or_else(|| number("prompt_cache_hit_tokens"))
        .unwrap_or(0);
    Some(Usage {
        input_tokens,
        output_tokens,
        cached_input_tokens,
        cache_creation_input_tokens: 0,
    })
}

/// The usage of a whole (non-streamed) chat completion body, if it reports one.
pub fn usage_from_response(body: &[u8]) -> Option<Usage> {
    #[derive(serde::Deserialize)]
    struct WithUsage {
        usage: Option<Value>,
    }
    let parsed: WithUsage = serde_json::from_slice(body).ok()?;
    usage_from_value(parsed.usage.as_ref()?)
}

/// The usage a stream chunk carries (with `include_usage`, the last chunk before `[DONE]`).
pub fn usage_from_chunk(chunk: &Value) -> Option<Usage> {
    usage_from_value(chunk.get("usage")?)
}

/// Whether a chunk is the usage-only chunk `include_usage` adds (`"choices": []` and a
/// `usage`), which is stripped when the client did not ask for it.
pub fn is_usage_only_chunk(chunk: &Value) -> bool {
    chunk
        .get("choices")
        .and_then(Value::as_array)
        .is_some_and(Vec::is_empty)
        && chunk.get("usage").is_some_and(Value::is_object)
}

/// Makes a streaming request ask the upstream for usage. Returns whether the client had asked
/// for it itself (then the usage chunk is the client's to receive).
pub fn request_stream_usage(request: &mut Map<String, Value>) -> bool {
    let options = request
        .entry("stream_options")
        .or_insert_with(|| Value::Object(Map::new()));
    if !options.is_object() {
        *options = Value::Object(Map::new());
    }
    let Value::Object(options) = options else {
        return false;
    };
    let asked = options.get("include_usage") == Some(&Value::Bool(true));
    options.insert("include_usage".to_owned(), Value::Bool(true));
    asked
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_usage_with_cached_tokens_from_a_response() {
        let body = json!({
            "id": "chatcmpl-1", "object": "chat.completion", "choices": [],
            "usage": {"prompt_tokens": 2006, "completion_tokens": 300, "total_tokens": 2306,
                      "prompt_tokens_details": {"cached_tokens": 1920}}
        });
        assert_eq!(
            usage_from_response(body.to_string().as_bytes()),
            Some(Usage {
                input_tokens: 2006,
                output_tokens: 300,
                cached_input_tokens: 1920,
                cache_creation_input_tokens: 0
            })
        );
        assert_eq!(usage_from_response(b"{\"choices\":[]}"), None);
        assert_eq!(usage_from_response(b"not json"), None);
    }

    #[test]
    fn reads_deepseek_cache_hits() {
        let usage =
            json!({"prompt_tokens": 10, "completion_tokens": 2, "prompt_cache_hit_tokens": 8});
        assert_eq!(usage_from_value(&usage).unwrap().cached_input_tokens, 8);
    }

    #[test]
    fn recognises_the_usage_only_chunk() {
        let last = json!({"id":"c","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":1}});
        assert!(is_usage_only_chunk(&last));
        assert_eq!(usage_from_chunk(&last).unwrap().input_tokens, 5);
        let content =
            json!({"id":"c","choices":[{"index":0,"delta":{"content":"hi"}}],"usage":null});
        assert!(!is_usage_only_chunk(&content));
        assert_eq!(usage_from_chunk(&content), None);
    }

    #[test]
    fn injects_include_usage_and_says_whether_the_client_asked() {
        let mut request = json!({"model":"m","stream":true})
            .as_object()
            .unwrap()
            .clone();
        assert!(!request_stream_usage(&mut request));
        assert_eq!(request["stream_options"], json!({"include_usage": true}));
        let mut request = json!({"stream_options":{"include_usage":true}})
            .as_object()
            .unwrap()
            .clone();
        assert!(request_stream_usage(&mut request));
        let mut request = json!({"stream_options":{"include_usage":false, "x": 1}})
            .as_object()
            .unwrap()
            .clone();
        assert!(!request_stream_usage(&mut request));
        assert_eq!(
            request["stream_options"],
            json!({"include_usage": true, "x": 1})
        );
    }
}
