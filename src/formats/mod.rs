//! Pure translation between the LLM wire formats the gateway speaks. The OpenAI chat format is
//! the gateway's canonical form: every other format translates to and from it — requests,
//! whole responses and stream events (streams through small state machines with explicit
//! state). Nothing here does I/O; the gateway's body layer drives these functions chunk by
//! chunk.
//!
//! What a target format cannot express is a [`FormatError::Unsupported`] (a 400 for the
//! client), never silently dropped.

pub mod anthropic;
pub mod as_sent;
pub mod auth;
pub mod bedrock;
pub mod cohere;
pub mod dialect;
pub mod embeddings;
pub mod estimate;
pub mod gemini;
pub mod models;
pub mod openai;
pub mod pruned;
pub mod responses;
pub mod stream;
pub mod strict;
pub mod volume;

pub use as_sent::{SentBody, SentBodyError, write_with_edited_members};

/// A value (a model id, a deployment name) as one URL path segment: RFC 3986's unreserved
/// characters and `@` (Vertex AI's version separator, a valid path character) kept, everything
/// else percent-encoded (the `:` of a Bedrock model id, a `/`, a space), and a segment of dots
/// alone encoded too, so no value can climb the path (`..`). Every provider URL that names a
/// model or deployment in its path goes through here, so the path sent is the path signed.
pub fn path_segment(value: &str) -> String {
    const KEPT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~')
        .remove(b'@');
    if !value.is_empty() && value.bytes().all(|b| b == b'.') {
        return "%2E".repeat(value.len());
    }
    percent_encoding::utf8_percent_encode(value, KEPT).to_string()
}
use serde_json::{Map, Value};

use crate::usage::Usage;

/// A wire format: what a client speaks or what an upstream speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// OpenAI chat completions (and every OpenAI-compatible provider, Ollama, the mock).
    OpenAi,
    /// Anthropic Messages.
    Anthropic,
    /// Google Gemini generateContent.
    Gemini,
    /// Cohere v2 chat.
    Cohere,
    /// OpenAI's Responses API (`/v1/responses`): a front door, and the format of an OpenAI
    /// upstream that serves it when the client speaks it too.
    Responses,
    /// AWS Bedrock Converse API: an upstream only (no client speaks it to the gateway).
    Bedrock,
}

impl Format {
    /// Every format there is.
    pub const ALL: [Format; 6] = [
        Format::OpenAi,
        Format::Anthropic,
        Format::Gemini,
        Format::Cohere,
        Format::Responses,
        Format::Bedrock,
    ];
}

/// Why a translation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// The request is malformed for its own format (400).
    #[error("{0}")]
    Invalid(String),
    /// The request uses something the target format cannot express (400).
    #[error("{0}")]
    Unsupported(String),
    /// The provider answered something that does not fit its own format (502).
    #[error("the provider's answer could not be read: {0}")]
    Upstream(String),
}

impl FormatError {
    fn invalid(message: impl Into<String>) -> Self {
        Self::Invalid(message.into())
    }

    fn unsupported(message: impl Into<String>) -> Self {
        Self::Unsupported(message.into())
    }

    fn upstream(message: impl Into<String>) -> Self {
        Self::Upstream(message.into())
    }
}

/// A whole (non-streamed) upstream answer in the client's format, with the usage it reported.
/// `model` and `created` fill what a format leaves out.
pub fn translate_response(
    upstream: Format,
    client: Format,
    body: &[u8],
    model: &str,
    created: u64,
) -> Result<(Vec<u8>, Option<Usage>), FormatError> {
    let (from, to) = (dialect::dialect(upstream), dialect::dialect(client));
    if upstream == client {
        // Relayed as it came, but only once it is an answer at all: a 200 with an HTML page,
        // truncated JSON or an undeclared compressed body is the provider failing (fallback
        // before the first byte, else 502), never a success metered as complete.
        let usage = from.usage_of_answer(body);
        // A usage read means the body parsed; without one it is parsed to tell.
        let object = body.trim_ascii_start().first() == Some(&b'{')
            && (usage.is_some() || serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok());
        if !object {
            return Err(FormatError::upstream(format!(
                "the provider's answer is not a JSON object ({} bytes)",
                body.len()
            )));
        }
        return Ok((body.to_vec(), usage));
    }
    let parsed: Value = serde_json::from_slice(body)
        .map_err(|_| FormatError::upstream("the provider's answer is not JSON"))?;
    let canonical = from.response_to_canonical(parsed, model, created)?;
    let usage = canonical.get("usage").and_then(openai::usage_from_value);
    let out = to.response_from_canonical(canonical, created)?;
    Ok((out.to_string().into_bytes(), usage))
}

/// Why the model stopped, as a whole answer of `format` says (its canonical name). Asked only
/// for a request whose trace is recorded.
pub fn finish_reason_of_answer(format: Format, body: &[u8]) -> Option<crate::usage::FinishReason> {
    dialect::dialect(format).finish_reason_of_answer(body)
}

/// The message of an error body in any of the formats (`error.message`, or Cohere's top-level
/// `message`), so a provider's refusal can be passed on in the client's format.
pub fn error_message(body: &[u8]) -> Option<String> {
    let parsed: Value = serde_json::from_slice(body).ok()?;
    parsed
        .pointer("/error/message")
        .or_else(|| parsed.get("message"))
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// An error body in a client format.
pub fn error_body(client: Format, status: u16, kind: &str, code: &str, message: &str) -> String {
    dialect::dialect(client).error_body(status, kind, code, message)
}

/// A parsed `data:` URL (`data:image/png;base64,....`).
#[derive(Debug, PartialEq, Eq)]
pub struct DataUrl<'a> {
    /// The media type (`image/png`).
    pub media_type: &'a str,
    /// The base64 payload.
    pub data: &'a str,
}

/// Splits a base64 `data:` URL; `None` for anything else (an http(s) URL).
pub fn data_url(url: &str) -> Option<DataUrl<'_>> {
    let rest = url.strip_prefix("data:")?;
    let (header, data) = rest.split_once(',')?;
    let media_type = header.strip_suffix(";base64")?;
    Some(DataUrl { media_type, data })
}

/// A tool-call id for a provider that gives none (Gemini): derived from the response, the
/// call's position and its name, so the same answer always gets the same ids and two calls in
/// one answer never share one. Tool results are mapped back by the name recorded with the id
/// in the conversation, so the id itself needs no lookup table.
pub fn derived_call_id(response_id: &str, index: usize, name: &str) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(format!("{response_id}\0{index}\0{name}").as_bytes());
    format!("call_{}", hex::encode(&digest[..12]))
}

/// The text of an OpenAI message `content` (a string, or text parts); other parts are an
/// error naming `what` (the place that cannot hold them).
fn text_only(content: &Value, what: &str) -> Result<String, FormatError> {
    match content {
        Value::Null => Ok(String::new()),
        Value::String(text) => Ok(text.clone()),
        Value::Array(parts) => {
            let mut text = String::new();
            for part in parts {
                match part.get("type").and_then(Value::as_str) {
                    Some("text") => {
                        text.push_str(part.get("text").and_then(Value::as_str).unwrap_or(""))
                    }
                    other => {
                        return Err(FormatError::unsupported(format!(
                            "{what} can only hold text, not {:?} parts",
                            other.unwrap_or("untyped")
                        )));
                    }
                }
            }
            Ok(text)
        }
        _ => Err(FormatError::invalid(
            "message content must be a string or an array",
        )),
    }
}

/// Builds an OpenAI `usage` object from the internal type.
pub fn openai_usage(usage: &Usage) -> Value {
    serde_json::json!({
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.total_tokens(),
        "prompt_tokens_details": {"cached_tokens": usage.cached_input_tokens},
    })
}

/// Fails on request fields a non-OpenAI target cannot express (sampling several choices,
/// log probabilities, audio, penalties), so they are refused instead of dropped.
fn refuse_openai_only(request: &Map<String, Value>, target: &str) -> Result<(), FormatError> {
    let refuse = |field: &str| {
        Err(FormatError::unsupported(format!(
            "'{field}' cannot be sent to a {target} model"
        )))
    };
    if request
        .get("n")
        .and_then(Value::as_u64)
        .is_some_and(|n| n > 1)
    {
        return refuse("n");
    }
    if request.get("logprobs") == Some(&Value::Bool(true)) {
        return refuse("logprobs");
    }
    if request.get("top_logprobs").is_some_and(|v| !v.is_null()) {
        return refuse("top_logprobs");
    }
    if request.get("audio").is_some_and(|v| !v.is_null()) {
        return refuse("audio");
    }
    if request
        .get("logit_bias")
        .and_then(Value::as_object)
        .is_some_and(|bias| !bias.is_empty())
    {
        return refuse("logit_bias");
    }
    Ok(())
}

/// The `stop` field of an OpenAI request as a list.
/// Copies the sampling members a target format names otherwise (`(canonical, target)` pairs),
/// skipping the absent and the null.
fn copy_renamed(
    request: &Map<String, Value>,
    out: &mut Map<String, Value>,
    names: &[(&str, &str)],
) {
    for (from, to) in names {
        if let Some(value) = request.get(*from).filter(|v| !v.is_null()) {
            out.insert((*to).into(), value.clone());
        }
    }
}

fn stop_list(request: &Map<String, Value>) -> Result<Option<Vec<Value>>, FormatError> {
    match request.get("stop") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(stop)) => Ok(Some(vec![Value::String(stop.clone())])),
        Some(Value::Array(stops)) => Ok(Some(stops.clone())),
        Some(_) => Err(FormatError::invalid("'stop' must be a string or an array")),
    }
}

/// The messages array of an OpenAI request.
fn messages(request: &Map<String, Value>) -> Result<&Vec<Value>, FormatError> {
    request
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| FormatError::invalid("'messages' must be an array"))
}

/// The output limit of an OpenAI request, as the reservation reads it (the largest of its
/// output fields, see [`volume`]), so a translated request asks for what was reserved.
fn max_tokens(request: &Map<String, Value>) -> Option<u64> {
    volume::output_ask(Format::OpenAi, request)
        .ok()
        .and_then(|ask| ask.max_output_tokens)
}

/// One function tool: name, description, JSON Schema of its parameters.
type FunctionTool<'a> = (&'a str, Option<&'a Value>, Value);

/// The function tools of an OpenAI request.
fn function_tools(request: &Map<String, Value>) -> Result<Vec<FunctionTool<'_>>, FormatError> {
    let Some(tools) = request.get("tools").and_then(Value::as_array) else {
        return Ok(Vec::new());
    };
    tools
        .iter()
        .map(|tool| {
            if tool.get("type").and_then(Value::as_str) != Some("function") {
                return Err(FormatError::unsupported(
                    "only tools of type 'function' can be translated",
                ));
            }
            let function = tool
                .get("function")
                .ok_or_else(|| FormatError::invalid("a tool has no 'function'"))?;
            let name = function
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| FormatError::invalid("a tool function has no 'name'"))?;
            let parameters = function
                .get("parameters")
                .cloned()
                .unwrap_or_else(|| serde_json::json!({"type": "object", "properties": {}}));
            Ok((name, function.get("description"), parameters))
        })
        .collect()
}

/// Parses a tool call's `arguments` string into the object the native formats carry.
fn parse_arguments(arguments: &str) -> Result<Value, FormatError> {
    if arguments.trim().is_empty() {
        return Ok(Value::Object(Map::new()));
    }
    strict::value(arguments.as_bytes())
        .map_err(|_| FormatError::invalid("a tool call's 'arguments' is not valid JSON"))
}

#[cfg(test)]
mod path_segment_tests {
    #[test]
    fn a_segment_cannot_leave_its_place() {
        assert_eq!(
            super::path_segment("anthropic.claude-v1:0"),
            "anthropic.claude-v1%3A0"
        );
        assert_eq!(
            super::path_segment("claude-x@20250929"),
            "claude-x@20250929"
        );
        assert_eq!(super::path_segment("a/b c?d#e"), "a%2Fb%20c%3Fd%23e");
        assert_eq!(super::path_segment(".."), "%2E%2E");
        assert_eq!(super::path_segment("."), "%2E");
        assert_eq!(super::path_segment("v1.0"), "v1.0");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_is_found_by_name_in_small_and_large_objects_alike() {
        for size in [0, 1, 2, SCAN_AT_MOST, SCAN_AT_MOST + 1, 40] {
            let object: Map<String, Value> = (0..size)
                .map(|i| (format!("m{i}"), Value::from(i)))
                .collect();
            for i in 0..size + 2 {
                let name = format!("m{i}");
                assert_eq!(
                    member(&object, &name),
                    object.get(&name),
                    "{name} of {size}"
                );
            }
            // Names that differ only past their length's check, or by case.
            assert_eq!(member(&object, "M0"), None);
            assert_eq!(member(&object, ""), None);
        }
    }

    #[test]
    fn data_urls_are_split_and_other_urls_are_not() {
        assert_eq!(
            data_url("data:image/png;base64,iVBOR"),
            Some(DataUrl {
                media_type: "image/png",
                data: "iVBOR"
            })
        );
        assert_eq!(data_url("https://example.com/cat.png"), None);
        assert_eq!(data_url("data:text/plain,hello"), None);
    }

    #[test]
    fn derived_ids_are_deterministic_and_distinct() {
        assert_eq!(
            derived_call_id("r1", 0, "get_weather"),
            derived_call_id("r1", 0, "get_weather")
        );
        assert_ne!(
            derived_call_id("r1", 0, "get_weather"),
            derived_call_id("r1", 1, "get_weather")
        );
        assert!(derived_call_id("r", 0, "f").starts_with("call_"));
    }
}

/// Caps the output tokens of a request already in `format`: every output-limit field the format
/// has that the request set is lowered to at most `cap` (both of OpenAI's names when both are
/// given: providers honour either), and one is added when none is set, so a provider can never
/// generate more than metering reserved. `openai_new_name` picks `max_completion_tokens` over
/// `max_tokens` when neither is present (OpenAI's reasoning models refuse the older name).
pub fn cap_output_tokens(
    json: &mut serde_json::Map<String, serde_json::Value>,
    format: Format,
    openai_new_name: bool,
    cap: u64,
) {
    use serde_json::Value;
    let fields = volume::limit_fields(format);
    let target = match volume::container_name(format, json) {
        Some(name) => {
            let config = json
                .entry(name)
                .or_insert_with(|| Value::Object(serde_json::Map::new()));
            // A null member is an unset one to Google: the limit goes into a new object.
            if config.is_null() {
                *config = Value::Object(serde_json::Map::new());
            }
            match config {
                Value::Object(config) => config,
                _ => return,
            }
        }
        None => &mut *json,
    };
    let mut any = false;
    for name in fields {
        if let Some(value) = target.get_mut(*name) {
            any = true;
            let asked = value.as_u64().map_or(cap, |asked| asked.min(cap));
            *value = Value::from(asked);
        }
    }
    let dialect = dialect::dialect(format);
    if !any {
        target.insert(
            dialect.cap_field(openai_new_name).to_owned(),
            Value::from(cap),
        );
    }
    dialect.fit_to_cap(json, cap);
}

/// Objects of up to this many members are searched name by name (see [`member`]).
const SCAN_AT_MOST: usize = 16;

/// A member of a JSON object, by name. The request path reads a body's few members a few dozen
/// times per request, and serde_json's map (an `IndexMap` under `preserve_order`) hashes the
/// name with SipHash on every lookup, ~200 instructions (callgrind: 8 % of a bare request). A
/// body's objects hold a handful of members, and comparing a handful of names, most of them
/// told apart by their length, costs a fraction of one hash; larger objects are looked up by
/// hash. The same answer either way: a map holds each name once.
pub(crate) fn member<'a>(object: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    if object.len() <= SCAN_AT_MOST {
        object
            .iter()
            .find_map(|(key, value)| (key == name).then_some(value))
    } else {
        object.get(name)
    }
}

/// The items of a member that should be an array; none when it is absent or not one.
pub(crate) fn items(member: Option<&Value>) -> impl Iterator<Item = &Value> {
    member.and_then(Value::as_array).into_iter().flatten()
}

#[cfg(test)]
mod cap_tests {
    use super::*;
    use serde_json::json;

    fn capped(body: serde_json::Value, format: Format, new_name: bool) -> serde_json::Value {
        let serde_json::Value::Object(mut map) = body else {
            unreachable!()
        };
        cap_output_tokens(&mut map, format, new_name, 100);
        serde_json::Value::Object(map)
    }

    #[test]
    fn every_format_gets_at_most_the_reserved_output() {
        assert_eq!(
            capped(json!({"max_tokens": 500}), Format::OpenAi, true),
            json!({"max_tokens": 100})
        );
        assert_eq!(
            capped(json!({"max_completion_tokens": 50}), Format::OpenAi, false),
            json!({"max_completion_tokens": 50})
        );
        assert_eq!(
            capped(json!({}), Format::OpenAi, true),
            json!({"max_completion_tokens": 100})
        );
        assert_eq!(
            capped(json!({}), Format::OpenAi, false),
            json!({"max_tokens": 100})
        );
        assert_eq!(
            capped(json!({"max_tokens": 4096}), Format::Anthropic, false),
            json!({"max_tokens": 100})
        );
        assert_eq!(
            capped(json!({}), Format::Cohere, false),
            json!({"max_tokens": 100})
        );
        assert_eq!(
            capped(
                json!({"generationConfig": {"temperature": 0.1, "maxOutputTokens": 900}}),
                Format::Gemini,
                false
            ),
            json!({"generationConfig": {"temperature": 0.1, "maxOutputTokens": 100}})
        );
        assert_eq!(
            capped(json!({}), Format::Gemini, false),
            json!({"generationConfig": {"maxOutputTokens": 100}})
        );
        // Spelled by its proto names (Google reads both): capped where the client put it, not
        // in a second copy of the member.
        assert_eq!(
            capped(
                json!({"generation_config": {"max_output_tokens": 900, "maxOutputTokens": 50}}),
                Format::Gemini,
                false
            ),
            json!({"generation_config": {"max_output_tokens": 100, "maxOutputTokens": 50}})
        );
        assert_eq!(
            capped(json!({"generation_config": {}}), Format::Gemini, false),
            json!({"generation_config": {"maxOutputTokens": 100}})
        );
        assert_eq!(
            capped(json!({"generationConfig": null}), Format::Gemini, false),
            json!({"generationConfig": {"maxOutputTokens": 100}})
        );
    }

    #[test]
    fn a_thinking_budget_is_fitted_beneath_a_lowered_max_tokens() {
        let thinking = |budget: u64| json!({"max_tokens": 16_000, "thinking": {"type": "enabled", "budget_tokens": budget}});
        let fitted = |cap: u64, budget: u64| {
            let serde_json::Value::Object(mut map) = thinking(budget) else {
                unreachable!()
            };
            cap_output_tokens(&mut map, Format::Anthropic, false, cap);
            serde_json::Value::Object(map)
        };
        assert_eq!(
            fitted(5_000, 10_000),
            json!({"max_tokens": 5_000, "thinking": {"type": "enabled", "budget_tokens": 4_999}})
        );
        // Room for the budget: untouched.
        assert_eq!(
            fitted(12_000, 10_000),
            json!({"max_tokens": 12_000, "thinking": {"type": "enabled", "budget_tokens": 10_000}})
        );
        // Below Anthropic's minimum budget: no extended thinking rather than a refusal.
        assert_eq!(fitted(800, 10_000), json!({"max_tokens": 800}));
    }
}

#[cfg(test)]
mod edited_members_tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn edited_members_replace_the_originals_and_the_rest_is_written_as_it_was() {
        let body = json!({
            "model": "asked", "max_tokens": 900, "temperature": 0.2,
            "messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "function"}]
        });
        let Value::Object(body) = body else {
            unreachable!()
        };
        let written = write_with_edited_members(
            &body,
            &[
                "model",
                "max_tokens",
                "max_completion_tokens",
                "stream_options",
            ],
            |json| {
                json.insert("model".into(), json!("served"));
                let max = json.remove("max_tokens").expect("present");
                json.insert("max_completion_tokens".into(), max);
            },
        );
        let parsed: Value = serde_json::from_slice(&written).expect("JSON");
        assert_eq!(
            parsed,
            json!({
                "model": "served", "max_completion_tokens": 900, "temperature": 0.2,
                "messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "function"}]
            })
        );
        // Each member once: nothing named twice in the text.
        let text = String::from_utf8(written).expect("UTF-8");
        assert_eq!(text.matches("\"model\"").count(), 1);
        assert!(!text.contains("\"max_tokens\""));
    }
}
