//! The Anthropic Messages format: requests and responses to and from the canonical OpenAI form,
//! its stream events (`message_start` … `message_stop`, `ping`, `error`) decoded into canonical
//! chunks and encoded from them, its usage (cache reads and writes) and its error shape.

use serde_json::{Map, Value, json};

use super::FormatError;
use super::pruned::{Keep, TYPES_OF_ITEMS};
use super::stream::{Context, Decoder, Encoder, Reframe};
use crate::usage::Usage;

mod request;
mod response;
mod stream;

pub use request::*;
pub use response::*;
pub use stream::*;

/// The API version the gateway speaks to Anthropic.
pub const VERSION: &str = "2023-06-01";

/// The API version a request to Claude on Vertex AI names in its body.
pub const VERTEX_VERSION: &str = "vertex-2023-10-16";

/// The members a request to Claude on Vertex AI has edited: Vertex takes the model from the URL
/// and the API version from the body; betas go only by the `anthropic-beta` header, which the
/// provider's beta policy filters (a body member would pass unfiltered where a cloud reads it).
pub const VERTEX_MEMBERS: &[&str] = &["model", "anthropic_version", "anthropic_beta"];

/// A Messages request as Claude on Vertex AI takes it: no `model` (it is in the URL),
/// `anthropic_version` in the body where Anthropic's own API reads a header, no betas in the
/// body.
pub fn for_vertex(request: &mut serde_json::Map<String, Value>) {
    request.remove("model");
    request.remove("anthropic_beta");
    request.insert("anthropic_version".into(), Value::from(VERTEX_VERSION));
}

/// Reads an Anthropic `usage`. Its `input_tokens` excludes cache reads and writes; the internal
/// type counts every prompt token, so the three are added.
pub fn usage_from_value(usage: &Value) -> Option<Usage> {
    let usage = usage.as_object()?;
    let number = |key: &str| usage.get(key).and_then(Value::as_u64).unwrap_or(0);
    let cached = number("cache_read_input_tokens");
    let created = number("cache_creation_input_tokens");
    Some(Usage {
        input_tokens: number("input_tokens") + cached + created,
        output_tokens: number("output_tokens"),
        cached_input_tokens: cached,
        cache_creation_input_tokens: created,
    })
}

/// The internal usage as an Anthropic `usage` object.
pub fn usage_value(usage: &Usage) -> Value {
    json!({
        "input_tokens": usage
            .input_tokens
            .saturating_sub(usage.cached_input_tokens + usage.cache_creation_input_tokens),
        "output_tokens": usage.output_tokens,
        "cache_creation_input_tokens": usage.cache_creation_input_tokens,
        "cache_read_input_tokens": usage.cached_input_tokens,
    })
}

/// The Anthropic error `type` for an HTTP status.
pub fn error_type(status: u16) -> &'static str {
    match status {
        400 | 405 | 408 | 422 => "invalid_request_error",
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        504 => "timeout_error",
        _ => "api_error",
    }
}

/// An Anthropic error body: `{"type":"error","error":{"type":...,"message":...}}`.
pub fn error_body(status: u16, message: &str) -> String {
    json!({"type": "error", "error": {"type": error_type(status), "message": message}}).to_string()
}

// ---------------------------------------------------------------------------------------------
// The dialect

/// Anthropic Messages.
pub struct Messages;

impl super::dialect::Dialect for Messages {
    /// `anthropic-version` (required: the gateway's when the client sent none) and
    /// `anthropic-beta`.
    fn client_headers(&self) -> &'static [super::dialect::ClientHeader] {
        use super::dialect::ClientHeader;
        &[
            ClientHeader {
                name: "anthropic-version",
                default: Some(VERSION),
                betas: false,
            },
            ClientHeader {
                name: "anthropic-beta",
                default: None,
                betas: true,
            },
        ]
    }

    /// Anthropic's `created_at` is the epoch: the gateway knows no release dates.
    fn model_object(&self, id: &str, _owner: &str) -> Value {
        json!({"type": "model", "id": id, "display_name": id, "created_at": "1970-01-01T00:00:00Z"})
    }

    /// Paged by `limit`, `after_id` and `before_id`.
    fn model_list(&self, models: &[(&str, &str)], page: &super::models::Page<'_>) -> Value {
        let ids: Vec<&str> = models.iter().map(|(id, _)| *id).collect();
        let (shown, has_more) = page.of(&ids);
        let data: Vec<Value> = shown.iter().map(|id| self.model_object(id, "")).collect();
        json!({
            "data": data,
            "has_more": has_more,
            "first_id": shown.first(),
            "last_id": shown.last(),
        })
    }

    fn refuse_on_shared_key(
        &self,
        request: &Map<String, Value>,
        _edit: &super::dialect::PassThrough<'_>,
    ) -> Result<(), FormatError> {
        refuse_on_shared_key(request)
    }

    /// Besides `mcp_servers` and `container`: each tool's type, and the type and source type
    /// of each content part of each message, and of the parts within them.
    fn shared_key_check_reads(&self) -> Option<&'static [(&'static str, Keep)]> {
        /// A content part as the check reads it, and the parts within it.
        static PART: Keep = Keep::Members(&[
            ("type", Keep::Whole),
            (
                "source",
                Keep::Members(&[("type", Keep::Whole), ("content", Keep::Items(&PART))]),
            ),
            ("content", Keep::Items(&PART)),
        ]);
        const MESSAGE: Keep = Keep::Members(&[("content", Keep::Items(&PART))]);
        Some(&[
            ("tools", TYPES_OF_ITEMS),
            ("messages", Keep::Items(&MESSAGE)),
        ])
    }

    fn forwarded_unread(&self) -> &'static [&'static str] {
        &["messages", "tools", "system"]
    }

    /// `thinking`: a cap may lower its budget below `max_tokens`.
    fn pass_through_members(
        &self,
        _edit: &super::dialect::PassThrough<'_>,
    ) -> &'static [&'static str] {
        &["model", "max_tokens", "thinking"]
    }

    fn fit_to_cap(&self, request: &mut Map<String, Value>, cap: u64) {
        fit_thinking_budget(request, cap);
    }

    fn output_fields(&self) -> &'static super::volume::OutputFields {
        &super::volume::OutputFields {
            within: &[],
            limits: &["max_tokens"],
            choices: &[],
            unbounded: &[],
        }
    }

    fn request_from_canonical(
        &self,
        canonical: &Map<String, Value>,
        target: &super::dialect::Target<'_>,
    ) -> Result<Map<String, Value>, FormatError> {
        let mut request = request_from_openai(canonical, target.default_max_output_tokens)?;
        request.insert("model".into(), Value::from(target.model));
        Ok(request)
    }

    fn format(&self) -> super::Format {
        super::Format::Anthropic
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

    fn finish_reason_of_answer(&self, body: &[u8]) -> Option<crate::usage::FinishReason> {
        // The one field read (Claude Code's answers are relayed as sent).
        #[derive(serde::Deserialize)]
        struct Answer<'a> {
            #[serde(borrow)]
            stop_reason: Option<std::borrow::Cow<'a, str>>,
        }
        let answer: Answer<'_> = serde_json::from_slice(body).ok()?;
        let stop = answer.stop_reason?;
        Some(crate::usage::FinishReason::from_canonical(
            response::finish_from_stop(Some(&stop)),
        ))
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
        _created: u64,
    ) -> Result<Value, FormatError> {
        response_from_openai(&canonical)
    }

    fn stream_decoder(&self, context: &Context) -> Box<dyn Decoder> {
        Box::new(EventDecoder::new(context))
    }

    fn stream_encoder(&self, context: &Context) -> Box<dyn Encoder> {
        Box::new(EventEncoder::new(context))
    }

    fn relay(&self, _context: &Context) -> Option<Box<dyn Reframe>> {
        Some(Box::new(Passthrough::default()))
    }

    fn error_body(&self, status: u16, _kind: &str, _code: &str, message: &str) -> String {
        error_body(status, message)
    }

    fn auth(&self) -> super::dialect::Auth {
        super::dialect::Auth::Header("x-api-key")
    }
}

#[cfg(test)]
mod structured_output_tests {
    use super::*;

    fn object(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap()
    }

    #[test]
    fn a_json_schema_becomes_output_config_in_its_own_key_order() {
        let request = object(
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "r", "strict": true,
                "schema": {"type": "object", "properties": {
                    "zeta": {"type": "string"},
                    "alpha": {"type": "object", "properties": {"b": {"type": "number"}, "a": {"type": "string"}}}
                }, "required": ["zeta", "alpha"], "additionalProperties": false}}}}),
        );
        let out = request_from_openai(&request, 100).unwrap();
        let schema = &out["output_config"]["format"]["schema"];
        assert_eq!(out["output_config"]["format"]["type"], "json_schema");
        let keys: Vec<&String> = schema["properties"].as_object().unwrap().keys().collect();
        assert_eq!(keys, ["zeta", "alpha"]);
        let inner: Vec<&String> = schema["properties"]["alpha"]["properties"]
            .as_object()
            .unwrap()
            .keys()
            .collect();
        assert_eq!(inner, ["b", "a"]);
        // The nested object did not close itself: Anthropic requires it.
        assert_eq!(schema["properties"]["alpha"]["additionalProperties"], false);
        assert!(out.get("response_format").is_none());
    }

    #[test]
    fn system_messages_between_turns_stay_in_place() {
        let request = object(json!({"model": "m", "max_tokens": 9, "messages": [
            {"role": "user", "content": "hi"},
            {"role": "system", "content": [{"type": "text", "text": "now be brief"}]},
            {"role": "user", "content": "again"}]}));
        let out = request_to_openai(&request).unwrap();
        assert_eq!(
            out["messages"][1],
            json!({"role": "system", "content": "now be brief"})
        );
    }

    #[test]
    fn json_mode_becomes_an_instruction() {
        let request = object(json!({"model": "m", "messages": [
            {"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
            "response_format": {"type": "json_object"}}));
        let out = request_from_openai(&request, 100).unwrap();
        assert_eq!(out["system"][1]["text"], JSON_OBJECT_INSTRUCTION);
        assert!(out.get("output_config").is_none());
    }

    #[test]
    fn output_config_becomes_response_format_strict_only_when_openai_can_be() {
        let strict = object(json!({"model": "m", "max_tokens": 9,
            "messages": [{"role": "user", "content": "hi"}],
            "output_config": {"format": {"type": "json_schema", "schema": {"type": "object",
                "properties": {"b": {"type": "string"}, "a": {"type": "integer"}},
                "required": ["b", "a"], "additionalProperties": false}}}}));
        let out = request_to_openai(&strict).unwrap();
        assert_eq!(out["response_format"]["type"], "json_schema");
        assert_eq!(out["response_format"]["json_schema"]["strict"], true);
        assert_eq!(out["response_format"]["json_schema"]["name"], "response");
        let keys: Vec<&String> = out["response_format"]["json_schema"]["schema"]["properties"]
            .as_object()
            .unwrap()
            .keys()
            .collect();
        assert_eq!(keys, ["b", "a"]);
        let optional = object(json!({"model": "m", "max_tokens": 9,
            "messages": [{"role": "user", "content": "hi"}],
            "output_format": {"type": "json_schema", "schema": {"type": "object",
                "properties": {"b": {"type": "string"}, "a": {"type": "integer"}},
                "required": ["b"], "additionalProperties": false}}}));
        let out = request_to_openai(&optional).unwrap();
        assert_eq!(out["response_format"]["json_schema"]["strict"], false);
    }
}
