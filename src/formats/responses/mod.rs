//! OpenAI's Responses API (`POST /v1/responses`) as a wire format: what Codex CLI, the Agents
//! SDK, the Vercel AI SDK's `openai(model)` and pydantic-ai's Responses model speak.
//!
//! To an upstream that serves the Responses API itself the request goes as sent (only the
//! model, the output limit and, on the platform's keys, `store` change). To every other target
//! it is translated here into the canonical chat form, and the canonical answer (whole, or
//! stream chunk by chunk) back into a `response` object or the API's typed stream events.
//!
//! What a chat completion cannot carry is refused, never dropped: built-in tools (web search,
//! file search, computer use…), `previous_response_id` and `conversation` (the conversation
//! lives at the upstream that stored it), inputs by file id, background mode. Reasoning items
//! from an earlier turn are the only input left out: they are a model's private state (often
//! encrypted), readable only by the model that wrote them; every target answers without them.

use serde_json::{Map, Value};

use super::FormatError;
use super::stream::{Context, Encoder, Reframe};
use crate::usage::Usage;

mod answer;
mod request;
mod stream;

pub use answer::*;
pub use request::*;
pub use stream::*;

/// The usage of a `response` object (`input_tokens` counts cached tokens too, as OpenAI's
/// `prompt_tokens` does).
pub fn usage_from_value(usage: &Value) -> Option<Usage> {
    let usage = usage.as_object()?;
    let number = |key: &str| usage.get(key).and_then(Value::as_u64);
    Some(Usage {
        input_tokens: number("input_tokens")?,
        output_tokens: number("output_tokens").unwrap_or(0),
        cached_input_tokens: usage
            .get("input_tokens_details")
            .and_then(|d| d.get("cached_tokens"))
            .and_then(Value::as_u64)
            .unwrap_or(0),
        cache_creation_input_tokens: 0,
    })
}

// ---------------------------------------------------------------------------------------------
// The dialect

/// OpenAI's Responses API.
pub struct ResponsesApi;

impl super::dialect::Dialect for ResponsesApi {
    fn client_headers(&self) -> &'static [super::dialect::ClientHeader] {
        &super::openai::CLIENT_HEADERS
    }

    /// Beside the provider's chat endpoint (`…/chat/completions` → `…/responses`).
    fn chat_url(&self, base: &str, path: &str, _model: &str, _stream: bool) -> Option<String> {
        super::openai::beside_chat(base, path, "responses")
    }

    fn refuse_on_shared_key(
        &self,
        request: &Map<String, Value>,
        _edit: &super::dialect::PassThrough<'_>,
    ) -> Result<(), FormatError> {
        refuse_on_shared_key(request)
    }

    fn pass_through_members(
        &self,
        _edit: &super::dialect::PassThrough<'_>,
    ) -> &'static [&'static str] {
        &["model", "max_output_tokens", "store"]
    }

    /// Nothing is stored under a shared key (`store` off).
    fn pass_through_edit(
        &self,
        request: &mut Map<String, Value>,
        edit: &super::dialect::PassThrough<'_>,
    ) {
        request.insert("model".into(), Value::from(edit.model));
        if edit.shared {
            request.insert("store".into(), Value::Bool(false));
        }
        edit.cap(request, super::Format::Responses);
    }

    fn conversation(&self) -> super::dialect::Conversation {
        super::dialect::Conversation {
            member: "input",
            text_allowed: true,
        }
    }

    fn output_fields(&self) -> &'static super::volume::OutputFields {
        // Reasoning tokens count within `max_output_tokens`; one answer per request.
        &super::volume::OutputFields {
            within: &[],
            limits: &["max_output_tokens"],
            choices: &[],
            unbounded: &[],
        }
    }

    fn request_from_canonical(
        &self,
        _canonical: &Map<String, Value>,
        _target: &super::dialect::Target<'_>,
    ) -> Result<Map<String, Value>, FormatError> {
        // Only a Responses client is served by a Responses upstream, with its request as sent.
        Err(FormatError::unsupported(
            "the Responses API serves Responses clients only",
        ))
    }

    fn format(&self) -> super::Format {
        super::Format::Responses
    }

    fn request_to_canonical(
        &self,
        request: &Map<String, Value>,
    ) -> Option<Result<Map<String, Value>, FormatError>> {
        Some(request_to_openai(request))
    }

    fn usage_of_answer(&self, body: &[u8]) -> Option<Usage> {
        super::dialect::usage_member(body, super::dialect::UsageMember::Usage, usage_from_value)
    }

    fn response_to_canonical(
        &self,
        answer: Value,
        _model: &str,
        created: u64,
    ) -> Result<Value, FormatError> {
        response_to_openai(&answer, created)
    }

    fn response_from_canonical(
        &self,
        canonical: Value,
        created: u64,
    ) -> Result<Value, FormatError> {
        response_from_openai(&canonical, created)
    }

    fn stream_decoder(&self, context: &Context) -> Box<dyn super::stream::Decoder> {
        Box::new(EventDecoder::new(context))
    }

    fn stream_encoder(&self, context: &Context) -> Box<dyn Encoder> {
        Box::new(EventEncoder::new(context))
    }

    fn relay(&self, context: &Context) -> Option<Box<dyn Reframe>> {
        Some(Box::new(Passthrough::new(context.items.clone())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap()
    }

    #[test]
    fn items_become_one_conversation_with_calls_joined_to_their_turn() {
        let request = object(json!({"model": "m", "instructions": "be brief",
            "max_output_tokens": 300, "input": [
                {"role": "user", "content": [{"type": "input_text", "text": "weather?"}]},
                {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "opaque"},
                {"type": "function_call", "call_id": "c1", "name": "w", "arguments": "{\"city\":\"Paris\"}"},
                {"type": "function_call", "call_id": "c2", "name": "w", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
                {"type": "function_call_output", "call_id": "c2", "output": [{"type": "input_text", "text": "rain"}]}],
            "tools": [{"type": "function", "name": "w", "parameters": {"type": "object"}, "strict": true}],
            "tool_choice": {"type": "function", "name": "w"},
            "text": {"format": {"type": "json_schema", "name": "f", "schema": {"type": "object"}, "strict": true}}}));
        let out = request_to_openai(&request).unwrap();
        assert_eq!(
            Value::Object(out),
            json!({"model": "m", "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": [{"type": "text", "text": "weather?"}]},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "w", "arguments": "{\"city\":\"Paris\"}"}},
                    {"id": "c2", "type": "function", "function": {"name": "w", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
                {"role": "tool", "tool_call_id": "c2", "content": "rain"}],
                "max_tokens": 300,
                "tools": [{"type": "function", "function": {"name": "w", "parameters": {"type": "object"}, "strict": true}}],
                "tool_choice": {"type": "function", "function": {"name": "w"}},
                "response_format": {"type": "json_schema", "json_schema": {"name": "f", "schema": {"type": "object"}, "strict": true}}})
        );
    }

    #[test]
    fn what_only_the_responses_api_can_do_is_refused_by_name() {
        for (body, named) in [
            (
                json!({"input": "hi", "previous_response_id": "resp_1"}),
                "previous_response_id",
            ),
            (
                json!({"input": "hi", "tools": [{"type": "web_search"}]}),
                "web_search",
            ),
            (
                json!({"input": [{"type": "item_reference", "id": "msg_1"}]}),
                "item_reference",
            ),
            (
                json!({"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]}),
                "input_file",
            ),
            (json!({"input": "hi", "background": true}), "background"),
        ] {
            let error = request_to_openai(&object(body)).unwrap_err();
            assert!(
                matches!(&error, FormatError::Unsupported(m) if m.contains(named)),
                "{error:?}"
            );
        }
        let shared = object(json!({"input": [{"role": "user", "content": [
            {"type": "input_image", "file_id": "file_123"}]}]}));
        assert!(refuse_on_shared_key(&shared).is_err());
        assert!(refuse_on_shared_key(&object(json!({"input": "hi"}))).is_ok());
        // A file by id hidden in a tool's output parts, or one the provider fetches by URL.
        for hidden in [
            json!({"input": [{"type": "function_call_output", "call_id": "c",
                "output": [{"type": "input_file", "file_id": "file-platforms"}]}]}),
            json!({"input": [{"role": "user", "content": [
                {"type": "input_file", "file_url": "https://example.com/huge.pdf"}]}]}),
        ] {
            assert!(
                refuse_on_shared_key(&object(hidden.clone())).is_err(),
                "{hidden}"
            );
        }
        // Text that merely mentions the words is no file.
        let text = json!({"input": [{"role": "user", "content": "what is a file_id?"}]});
        assert!(refuse_on_shared_key(&object(text)).is_ok());
        for paid in [
            "web_search",
            "code_interpreter",
            "image_generation",
            "mcp",
            "file_search",
        ] {
            let request = object(
                json!({"input": "hi", "tools": [{"type": "function", "name": "f"}, {"type": paid}]}),
            );
            let error = refuse_on_shared_key(&request).unwrap_err();
            assert!(
                matches!(&error, FormatError::Unsupported(m) if m.contains(paid)),
                "{error:?}"
            );
        }
        let free = object(
            json!({"input": "hi", "tools": [{"type": "function", "name": "f"},
            {"type": "custom", "name": "apply_patch"}, {"type": "local_shell"}]}),
        );
        assert!(refuse_on_shared_key(&free).is_ok());
        assert!(refuse_on_shared_key(&object(json!({"input": "hi", "background": true}))).is_err());
        let hidden = object(
            json!({"input": "hi", "tools": [{"type": "namespace", "name": "n",
            "tools": [{"type": "web_search"}]}]}),
        );
        assert!(refuse_on_shared_key(&hidden).is_err());
    }

    #[test]
    fn a_completion_becomes_a_response_cut_short_when_the_limit_was_reached() {
        let completion = json!({"id": "chatcmpl-1", "model": "m", "choices": [{"index": 0,
            "message": {"role": "assistant", "content": "hel", "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "w", "arguments": "{}"}}]},
            "finish_reason": "length"}],
            "usage": {"prompt_tokens": 9, "completion_tokens": 4, "prompt_tokens_details": {"cached_tokens": 2}}});
        let response = response_from_openai(&completion, 7).unwrap();
        assert_eq!(response["status"], "incomplete");
        assert_eq!(
            response["incomplete_details"]["reason"],
            "max_output_tokens"
        );
        assert_eq!(response["output"][0]["content"][0]["text"], "hel");
        assert_eq!(response["output"][1]["call_id"], "call_1");
        assert_eq!(
            response["usage"]["input_tokens_details"]["cached_tokens"],
            2
        );
        assert_eq!(response["usage"]["total_tokens"], 13);
        assert!(response["id"].as_str().unwrap().starts_with("resp_"));
    }

    fn events(bytes: &[u8]) -> Vec<Value> {
        String::from_utf8(bytes.to_vec())
            .unwrap()
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .map(|d| serde_json::from_str(d).unwrap())
            .collect()
    }

    #[test]
    fn chunks_become_typed_events_in_order_with_sequence_numbers() {
        let context = Context {
            model: "m".into(),
            created: 1,
            client_wants_usage: false,
            items: None,
        };
        let mut encoder = EventEncoder::new(&context);
        let mut out = Vec::new();
        for chunk in [
            json!({"id": "c", "choices": [{"index": 0, "delta": {"role": "assistant", "content": "he"}}]}),
            json!({"id": "c", "choices": [{"index": 0, "delta": {"content": "llo"}}]}),
            json!({"id": "c", "choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "call_1",
                "type": "function", "function": {"name": "w", "arguments": "{\"ci"}}]}}]}),
            json!({"id": "c", "choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0,
                "function": {"arguments": "ty\":1}"}}]}}]}),
            json!({"id": "c", "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}),
            json!({"id": "c", "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 3}}),
        ] {
            encoder.chunk(&chunk, &mut out);
        }
        encoder.done(&mut out);
        let events = events(&out);
        let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_eq!(
            kinds,
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.done",
                "response.output_item.done",
                "response.completed",
            ]
        );
        let sequence: Vec<u64> = events
            .iter()
            .map(|e| e["sequence_number"].as_u64().unwrap())
            .collect();
        assert_eq!(sequence, (0..15).collect::<Vec<u64>>());
        let done = &events[14]["response"];
        assert_eq!(done["output"][0]["content"][0]["text"], "hello");
        assert_eq!(done["output"][1]["arguments"], "{\"city\":1}");
        assert_eq!(done["output"][1]["call_id"], "call_1");
        assert_eq!(done["usage"]["output_tokens"], 3);
        assert_eq!(events[0]["response"]["id"], done["id"]);
    }

    #[test]
    fn a_stream_cut_by_the_output_limit_ends_incomplete() {
        let context = Context {
            model: "m".into(),
            created: 1,
            client_wants_usage: false,
            items: None,
        };
        let mut encoder = EventEncoder::new(&context);
        let mut out = Vec::new();
        encoder.chunk(
            &json!({"id": "c", "choices": [{"index": 0, "delta": {"content": "cut"}, "finish_reason": "length"}]}),
            &mut out,
        );
        encoder.done(&mut out);
        let last = events(&out).pop().unwrap();
        assert_eq!(last["type"], "response.incomplete");
        assert_eq!(
            last["response"]["incomplete_details"]["reason"],
            "max_output_tokens"
        );
    }
}
