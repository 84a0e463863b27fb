//! The Anthropic Messages format: requests and responses to and from the canonical OpenAI form,
//! its stream events (`message_start` … `message_stop`, `ping`, `error`) decoded into canonical
//! chunks and encoded from them, its usage (cache reads and writes) and its error shape.

use serde_json::{Map, Value, json};

use super::stream::{Context, Decoder, Encoder, Flow, Reframe, UpstreamError};
use super::{
    FormatError, data_url, function_tools, max_tokens, messages, openai, parse_arguments,
    refuse_openai_only, stop_list,
};
use crate::sse::{Event, write_event};
use crate::usage::Usage;

/// The API version the gateway speaks to Anthropic.
pub const VERSION: &str = "2023-06-01";

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
// Requests

/// Tool types Anthropic defines that cost only the tokens of the request and its answer: the
/// ones the client runs (the model only asks for them), and tool search, which Anthropic runs
/// over the tool definitions the request itself carries. Each is its name and an eight-digit
/// version (`bash_20250124`, `tool_search_tool_regex_20251119`). Untyped and `custom` tools are
/// the client's own.
const TOKEN_ONLY_TOOLS: [&str; 6] = [
    "bash",
    "text_editor",
    "computer",
    "memory",
    "tool_search_tool_regex",
    "tool_search_tool_bm25",
];

/// Whether a tool type is one of [`TOKEN_ONLY_TOOLS`] with its version.
fn costs_only_tokens(kind: &str) -> bool {
    kind == "custom"
        || TOKEN_ONLY_TOOLS.iter().any(|name| {
            kind.strip_prefix(name)
                .and_then(|rest| rest.strip_prefix('_'))
                .is_some_and(|version| {
                    version.len() == 8 && version.bytes().all(|b| b.is_ascii_digit())
                })
        })
}

/// Refuses what a Messages request may not do through the platform's key, which every tenant
/// shares and the gateway meters:
/// - server tools Anthropic runs apart from the request's tokens: billed apart (web search per
///   search, code execution per container hour) or adding input no reservation could bound
///   (web fetch reads pages of any length into the context);
/// - remote MCP servers, and a container or a file by id (state kept at the provider under the
///   shared key: an id would reach what another tenant stored).
///
/// Options priced above the list rates (`speed`, `inference_geo`) are refused for every metered
/// tenant before this (`gateway::metered::request_size`). On a tenant's own key the request
/// passes as sent.
pub fn refuse_on_shared_key(request: &Map<String, Value>) -> Result<(), FormatError> {
    for tool in request
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some(kind) = tool.get("type").and_then(Value::as_str) else {
            continue;
        };
        if !costs_only_tokens(kind) {
            return Err(FormatError::unsupported(format!(
                "tools of type {kind:?} are run by Anthropic apart from the request's tokens (billed apart, or reading input of any length), which the platform's key cannot meter; use client tools, or your own key"
            )));
        }
    }
    for member in ["mcp_servers", "container"] {
        if request.get(member).is_some_and(|v| !v.is_null()) {
            return Err(FormatError::unsupported(format!(
                "'{member}' is run or kept by Anthropic apart from the request's tokens, which the platform's key cannot meter; remove it, or use your own key"
            )));
        }
    }
    let parts = request
        .get("messages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|message| message.get("content").and_then(Value::as_array))
        .flatten();
    for part in parts {
        let by_id = part.pointer("/source/type").and_then(Value::as_str) == Some("file")
            || part.get("type").and_then(Value::as_str) == Some("container_upload");
        if by_id {
            return Err(FormatError::unsupported(
                "content by file id refers to a file stored under the platform's shared key; send it inline (base64 or text), or use your own key",
            ));
        }
    }
    Ok(())
}

/// OpenAI request → Anthropic request. `default_max_tokens` fills Anthropic's required
/// `max_tokens` when the client gave none.
pub fn request_from_openai(
    request: &Map<String, Value>,
    default_max_tokens: u64,
) -> Result<Map<String, Value>, FormatError> {
    refuse_openai_only(request, "Anthropic")?;
    let output_format = output_format_from_openai(request.get("response_format"))?;
    let mut out = Map::new();
    if let Some(model) = request.get("model") {
        out.insert("model".into(), model.clone());
    }
    let mut system: Vec<Value> = Vec::new();
    let mut turns: Vec<(String, Vec<Value>)> = Vec::new();
    for message in messages(request)? {
        let role = message.get("role").and_then(Value::as_str).unwrap_or("");
        let content = message.get("content").unwrap_or(&Value::Null);
        let (role, blocks) = match role {
            "system" | "developer" => {
                let text = super::text_only(content, "a system message")?;
                system.push(json!({"type": "text", "text": text}));
                continue;
            }
            "user" => ("user", user_blocks(content)?),
            "assistant" => ("assistant", assistant_blocks(message)?),
            "tool" => {
                let id = message
                    .get("tool_call_id")
                    .and_then(Value::as_str)
                    .ok_or_else(|| FormatError::invalid("a tool message has no 'tool_call_id'"))?;
                let text = super::text_only(content, "a tool result")?;
                (
                    "user",
                    vec![json!({"type": "tool_result", "tool_use_id": id, "content": text})],
                )
            }
            other => {
                return Err(FormatError::invalid(format!(
                    "unknown message role {other:?}"
                )));
            }
        };
        // Anthropic alternates roles: consecutive turns of one role become one turn.
        match turns.last_mut() {
            Some((last, existing)) if last == role => existing.extend(blocks),
            _ => turns.push((role.to_owned(), blocks)),
        }
    }
    if output_format == OutputFormat::JsonObject {
        system.push(json!({"type": "text", "text": JSON_OBJECT_INSTRUCTION}));
    }
    if !system.is_empty() {
        out.insert("system".into(), Value::Array(system));
    }
    out.insert(
        "messages".into(),
        Value::Array(
            turns
                .into_iter()
                .map(|(role, content)| json!({"role": role, "content": content}))
                .collect(),
        ),
    );
    out.insert(
        "max_tokens".into(),
        json!(max_tokens(request).unwrap_or(default_max_tokens)),
    );
    for key in ["temperature", "top_p", "top_k", "stream"] {
        if let Some(value) = request.get(key).filter(|v| !v.is_null()) {
            out.insert(key.into(), value.clone());
        }
    }
    if let Some(stops) = stop_list(request)? {
        out.insert("stop_sequences".into(), Value::Array(stops));
    }
    if let Some(user) = request.get("user").and_then(Value::as_str) {
        out.insert("metadata".into(), json!({"user_id": user}));
    }
    let tools = function_tools(request)?;
    if !tools.is_empty() {
        let tools = tools
            .into_iter()
            .map(|(name, description, parameters)| {
                let mut tool = json!({"name": name, "input_schema": parameters});
                if let Some(description) = description {
                    tool["description"] = description.clone();
                }
                tool
            })
            .collect();
        out.insert("tools".into(), Value::Array(tools));
    }
    let parallel = request.get("parallel_tool_calls").and_then(Value::as_bool);
    let mut choice = match request.get("tool_choice") {
        None | Some(Value::Null) => None,
        Some(Value::String(mode)) => Some(match mode.as_str() {
            "auto" => json!({"type": "auto"}),
            "required" => json!({"type": "any"}),
            "none" => json!({"type": "none"}),
            other => {
                return Err(FormatError::invalid(format!(
                    "unknown tool_choice {other:?}"
                )));
            }
        }),
        Some(choice) => {
            let name = choice
                .pointer("/function/name")
                .and_then(Value::as_str)
                .ok_or_else(|| FormatError::invalid("tool_choice names no function"))?;
            Some(json!({"type": "tool", "name": name}))
        }
    };
    if parallel == Some(false) {
        let choice = choice.get_or_insert_with(|| json!({"type": "auto"}));
        choice["disable_parallel_tool_use"] = Value::Bool(true);
    }
    if let Some(choice) = choice {
        out.insert("tool_choice".into(), choice);
    }
    if let OutputFormat::Schema(schema) = output_format {
        out.insert(
            "output_config".into(),
            json!({"format": {"type": "json_schema", "schema": schema}}),
        );
    }
    Ok(out)
}

/// The instruction added to the system prompt for OpenAI's JSON mode (`json_object`), which
/// Anthropic has no parameter for: its structured outputs need a schema, and one allowing any
/// object is refused (objects must close with `additionalProperties: false`).
pub const JSON_OBJECT_INSTRUCTION: &str =
    "Respond with a single JSON object and nothing else: no prose, no code fences.";

/// What an OpenAI `response_format` asks of an Anthropic model.
#[derive(Debug, PartialEq)]
enum OutputFormat {
    /// Free text.
    Text,
    /// Any JSON object (JSON mode).
    JsonObject,
    /// JSON following this schema (Anthropic's structured outputs).
    Schema(Value),
}

/// Reads OpenAI's `response_format` for Anthropic's structured outputs
/// (`output_config.format`): a `json_schema` keeps its schema, key order included (the order a
/// model writes the fields in), with `additionalProperties: false` added to every object that
/// does not say (Anthropic requires it; OpenAI's strict mode already has it everywhere). The
/// name, description and `strict` have no place there: Anthropic's outputs always follow their
/// schema.
fn output_format_from_openai(format: Option<&Value>) -> Result<OutputFormat, FormatError> {
    let Some(format) = format.filter(|f| !f.is_null()) else {
        return Ok(OutputFormat::Text);
    };
    match format.get("type").and_then(Value::as_str) {
        Some("text") => Ok(OutputFormat::Text),
        Some("json_object") => Ok(OutputFormat::JsonObject),
        Some("json_schema") => {
            let mut schema = format
                .pointer("/json_schema/schema")
                .cloned()
                .ok_or_else(|| {
                    FormatError::invalid("'response_format.json_schema.schema' is required")
                })?;
            close_objects(&mut schema);
            Ok(OutputFormat::Schema(schema))
        }
        _ => Err(FormatError::invalid("unknown response_format type")),
    }
}

/// Adds `additionalProperties: false` to every object schema that does not set it, through
/// properties, items, definitions and combinators.
fn close_objects(schema: &mut Value) {
    let Value::Object(node) = schema else {
        if let Value::Array(items) = schema {
            items.iter_mut().for_each(close_objects);
        }
        return;
    };
    let is_object = node.get("type").and_then(Value::as_str) == Some("object")
        || node.contains_key("properties");
    if is_object && !node.contains_key("additionalProperties") {
        node.insert("additionalProperties".into(), Value::Bool(false));
    }
    for (name, child) in node.iter_mut() {
        match name.as_str() {
            "properties" | "$defs" | "definitions" | "patternProperties" => {
                if let Value::Object(children) = child {
                    children.values_mut().for_each(close_objects);
                }
            }
            "items" | "prefixItems" | "anyOf" | "allOf" | "oneOf" | "not" => close_objects(child),
            _ => {}
        }
    }
}

/// Anthropic's structured output request (`output_config.format`, or the beta's top-level
/// `output_format`) as OpenAI's `response_format`. OpenAI requires a name (Anthropic has none)
/// and is strict only when every property of every object is required (its strict mode
/// refuses optional ones, Anthropic's allows them), so the format is marked strict exactly
/// when the schema already meets that.
fn output_format_to_openai(request: &Map<String, Value>) -> Result<Option<Value>, FormatError> {
    let format = request
        .get("output_config")
        .and_then(|config| config.get("format"))
        .or_else(|| request.get("output_format"))
        .filter(|f| !f.is_null());
    let Some(format) = format else {
        return Ok(None);
    };
    if format.get("type").and_then(Value::as_str) != Some("json_schema") {
        return Err(FormatError::invalid("unknown output format type"));
    }
    let schema = format
        .get("schema")
        .ok_or_else(|| FormatError::invalid("the output format has no schema"))?;
    // OpenAI's strict mode also wants an object at the root.
    let strict = schema.get("properties").is_some() && all_required(schema);
    Ok(Some(json!({"type": "json_schema", "json_schema": {
        "name": "response", "schema": schema, "strict": strict
    }})))
}

/// Whether every object in a schema lists all its properties as required and is closed.
fn all_required(schema: &Value) -> bool {
    match schema {
        Value::Array(items) => items.iter().all(all_required),
        Value::Object(node) => {
            // An object without properties (any object) is not strict for OpenAI.
            if node.get("type").and_then(Value::as_str) == Some("object")
                && !node.contains_key("properties")
            {
                return false;
            }
            if let Some(Value::Object(properties)) = node.get("properties") {
                let required: Vec<&str> = node
                    .get("required")
                    .and_then(Value::as_array)
                    .map(|r| r.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                let closed = node.get("additionalProperties") == Some(&Value::Bool(false));
                if !closed || !properties.keys().all(|k| required.contains(&k.as_str())) {
                    return false;
                }
            }
            node.iter().all(|(name, child)| match name.as_str() {
                "properties" | "$defs" | "definitions" => child
                    .as_object()
                    .is_none_or(|c| c.values().all(all_required)),
                "items" | "anyOf" | "allOf" | "oneOf" | "prefixItems" => all_required(child),
                _ => true,
            })
        }
        _ => true,
    }
}

fn image_block(part: &Value) -> Result<Value, FormatError> {
    let url = part
        .pointer("/image_url/url")
        .and_then(Value::as_str)
        .ok_or_else(|| FormatError::invalid("an image_url part has no url"))?;
    Ok(match data_url(url) {
        Some(data) => json!({"type": "image", "source": {
            "type": "base64", "media_type": data.media_type, "data": data.data}}),
        None => json!({"type": "image", "source": {"type": "url", "url": url}}),
    })
}

fn user_blocks(content: &Value) -> Result<Vec<Value>, FormatError> {
    match content {
        Value::String(text) => Ok(vec![json!({"type": "text", "text": text})]),
        Value::Array(parts) => parts
            .iter()
            .map(|part| match part.get("type").and_then(Value::as_str) {
                Some("text") => Ok(json!({"type": "text", "text": part.get("text").cloned().unwrap_or(Value::Null)})),
                Some("image_url") => image_block(part),
                other => Err(FormatError::unsupported(format!(
                    "{:?} content parts cannot be sent to an Anthropic model",
                    other.unwrap_or("untyped")
                ))),
            })
            .collect(),
        _ => Err(FormatError::invalid(
            "user message content must be a string or an array",
        )),
    }
}

fn assistant_blocks(message: &Value) -> Result<Vec<Value>, FormatError> {
    let mut blocks = Vec::new();
    let text = super::text_only(
        message.get("content").unwrap_or(&Value::Null),
        "an assistant message",
    )?;
    if !text.is_empty() {
        blocks.push(json!({"type": "text", "text": text}));
    }
    for call in message
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let id = call.get("id").and_then(Value::as_str).unwrap_or_default();
        let name = call
            .pointer("/function/name")
            .and_then(Value::as_str)
            .ok_or_else(|| FormatError::invalid("a tool call has no function name"))?;
        let arguments = call
            .pointer("/function/arguments")
            .and_then(Value::as_str)
            .unwrap_or("");
        blocks.push(json!({"type": "tool_use", "id": id, "name": name,
                           "input": parse_arguments(arguments)?}));
    }
    Ok(blocks)
}

/// Anthropic request → OpenAI request (the `/v1/messages` front door before a provider of
/// another format).
pub fn request_to_openai(request: &Map<String, Value>) -> Result<Map<String, Value>, FormatError> {
    let mut out = Map::new();
    if let Some(model) = request.get("model") {
        out.insert("model".into(), model.clone());
    }
    if request
        .get("thinking")
        .and_then(|t| t.get("type"))
        .and_then(Value::as_str)
        .is_some_and(|t| t == "enabled")
    {
        return Err(FormatError::unsupported(
            "'thinking' can only be sent to an Anthropic model",
        ));
    }
    let mut chat: Vec<Value> = Vec::new();
    match request.get("system") {
        None | Some(Value::Null) => {}
        Some(Value::String(text)) => chat.push(json!({"role": "system", "content": text})),
        Some(Value::Array(blocks)) => {
            let text = blocks_text(blocks, "the system prompt")?;
            chat.push(json!({"role": "system", "content": text}));
        }
        Some(_) => {
            return Err(FormatError::invalid(
                "'system' must be a string or an array",
            ));
        }
    }
    let turns = request
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| FormatError::invalid("'messages' must be an array"))?;
    for turn in turns {
        let role = turn.get("role").and_then(Value::as_str).unwrap_or("");
        let content = turn.get("content").unwrap_or(&Value::Null);
        match (role, content) {
            (_, Value::String(text)) if role == "user" || role == "assistant" => {
                chat.push(json!({"role": role, "content": text}));
            }
            ("user", Value::Array(blocks)) => user_to_openai(blocks, &mut chat)?,
            // System text between turns (coding agents send it): a system message in place.
            ("system", Value::String(text)) => {
                chat.push(json!({"role": "system", "content": text}));
            }
            ("system", Value::Array(blocks)) => {
                let text = blocks_text(blocks, "a system message")?;
                chat.push(json!({"role": "system", "content": text}));
            }
            ("assistant", Value::Array(blocks)) => chat.push(assistant_to_openai(blocks)?),
            _ => {
                return Err(FormatError::invalid(format!(
                    "a message must have role 'user', 'assistant' or 'system' and string or array content (got role {role:?})"
                )));
            }
        }
    }
    out.insert("messages".into(), Value::Array(chat));
    if let Some(max) = request.get("max_tokens") {
        out.insert("max_tokens".into(), max.clone());
    }
    for key in ["temperature", "top_p", "top_k", "stream"] {
        if let Some(value) = request.get(key).filter(|v| !v.is_null()) {
            out.insert(key.into(), value.clone());
        }
    }
    if let Some(stops) = request.get("stop_sequences").filter(|v| !v.is_null()) {
        out.insert("stop".into(), stops.clone());
    }
    if let Some(user) = request.get("metadata").and_then(|m| m.get("user_id")) {
        out.insert("user".into(), user.clone());
    }
    if let Some(tools) = request.get("tools").and_then(Value::as_array) {
        let tools = tools
            .iter()
            .map(|tool| {
                if tool.get("type").and_then(Value::as_str).is_some_and(|t| t != "custom") {
                    return Err(FormatError::unsupported(
                        "Anthropic server tools can only be used with an Anthropic model",
                    ));
                }
                let mut function = json!({
                    "name": tool.get("name").cloned().unwrap_or(Value::Null),
                    "parameters": tool.get("input_schema").cloned().unwrap_or_else(|| json!({"type": "object"})),
                });
                if let Some(description) = tool.get("description") {
                    function["description"] = description.clone();
                }
                Ok(json!({"type": "function", "function": function}))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if !tools.is_empty() {
            out.insert("tools".into(), Value::Array(tools));
        }
    }
    if let Some(choice) = request.get("tool_choice").filter(|v| !v.is_null()) {
        let mapped = match choice.get("type").and_then(Value::as_str) {
            Some("auto") => json!("auto"),
            Some("any") => json!("required"),
            Some("none") => json!("none"),
            Some("tool") => {
                json!({"type": "function", "function": {"name": choice.get("name").cloned().unwrap_or(Value::Null)}})
            }
            _ => return Err(FormatError::invalid("unknown tool_choice type")),
        };
        out.insert("tool_choice".into(), mapped);
        if choice.get("disable_parallel_tool_use") == Some(&Value::Bool(true)) {
            out.insert("parallel_tool_calls".into(), Value::Bool(false));
        }
    }
    if let Some(format) = output_format_to_openai(request)? {
        out.insert("response_format".into(), format);
    }
    Ok(out)
}

fn blocks_text(blocks: &[Value], what: &str) -> Result<String, FormatError> {
    let mut text = String::new();
    for block in blocks {
        match block.get("type").and_then(Value::as_str) {
            Some("text") => {
                if !text.is_empty() {
                    text.push('\n');
                }
                text.push_str(block.get("text").and_then(Value::as_str).unwrap_or(""));
            }
            other => {
                return Err(FormatError::unsupported(format!(
                    "{what} can only hold text blocks here, not {:?}",
                    other.unwrap_or("untyped")
                )));
            }
        }
    }
    Ok(text)
}

fn user_to_openai(blocks: &[Value], chat: &mut Vec<Value>) -> Result<(), FormatError> {
    let mut parts: Vec<Value> = Vec::new();
    for block in blocks {
        match block.get("type").and_then(Value::as_str) {
            Some("text") => parts.push(
                json!({"type": "text", "text": block.get("text").cloned().unwrap_or(Value::Null)}),
            ),
            Some("image") => {
                let source = block.get("source").unwrap_or(&Value::Null);
                let url = match source.get("type").and_then(Value::as_str) {
                    Some("base64") => format!(
                        "data:{};base64,{}",
                        source
                            .get("media_type")
                            .and_then(Value::as_str)
                            .unwrap_or(""),
                        source.get("data").and_then(Value::as_str).unwrap_or("")
                    ),
                    Some("url") => source
                        .get("url")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_owned(),
                    _ => {
                        return Err(FormatError::unsupported(
                            "only base64 and url image sources can be translated",
                        ));
                    }
                };
                parts.push(json!({"type": "image_url", "image_url": {"url": url}}));
            }
            Some("tool_result") => {
                let id = block.get("tool_use_id").cloned().unwrap_or(Value::Null);
                let content = match block.get("content") {
                    None | Some(Value::Null) => String::new(),
                    Some(Value::String(text)) => text.clone(),
                    Some(Value::Array(inner)) => blocks_text(inner, "a tool result")?,
                    Some(_) => {
                        return Err(FormatError::invalid(
                            "tool_result content must be a string or an array",
                        ));
                    }
                };
                chat.push(json!({"role": "tool", "tool_call_id": id, "content": content}));
            }
            other => {
                return Err(FormatError::unsupported(format!(
                    "{:?} content blocks can only be sent to an Anthropic model",
                    other.unwrap_or("untyped")
                )));
            }
        }
    }
    if !parts.is_empty() {
        chat.push(json!({"role": "user", "content": parts}));
    }
    Ok(())
}

fn assistant_to_openai(blocks: &[Value]) -> Result<Value, FormatError> {
    let mut text = String::new();
    let mut calls: Vec<Value> = Vec::new();
    for block in blocks {
        match block.get("type").and_then(Value::as_str) {
            Some("text") => text.push_str(block.get("text").and_then(Value::as_str).unwrap_or("")),
            Some("tool_use") => calls.push(json!({
                "id": block.get("id").cloned().unwrap_or(Value::Null),
                "type": "function",
                "function": {
                    "name": block.get("name").cloned().unwrap_or(Value::Null),
                    "arguments": block.get("input").map(Value::to_string).unwrap_or_else(|| "{}".to_owned()),
                },
            })),
            // Earlier turns' reasoning is the model's own scratchpad; Anthropic itself drops it
            // from the context of later turns, so no other provider needs it either.
            Some("thinking" | "redacted_thinking") => {}
            other => {
                return Err(FormatError::unsupported(format!(
                    "{:?} content blocks can only be sent to an Anthropic model",
                    other.unwrap_or("untyped")
                )));
            }
        }
    }
    let mut message = json!({"role": "assistant", "content": if text.is_empty() && !calls.is_empty() { Value::Null } else { Value::String(text) }});
    if !calls.is_empty() {
        message["tool_calls"] = Value::Array(calls);
    }
    Ok(message)
}

// ---------------------------------------------------------------------------------------------
// Responses

fn finish_from_stop(stop: Option<&str>) -> &'static str {
    match stop {
        Some("max_tokens" | "model_context_window_exceeded") => "length",
        Some("tool_use") => "tool_calls",
        Some("refusal") => "content_filter",
        _ => "stop",
    }
}

fn stop_from_finish(finish: Option<&str>) -> &'static str {
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
    Ok(json!({
        "id": response.get("id").cloned().unwrap_or(Value::Null),
        "object": "chat.completion",
        "created": created,
        "model": response.get("model").cloned().unwrap_or(Value::Null),
        "choices": [{
            "index": 0,
            "message": message,
            "finish_reason": finish_from_stop(response.get("stop_reason").and_then(Value::as_str)),
        }],
        "usage": super::openai_usage(&usage),
    }))
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
    for call in message
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
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

fn message_id(upstream: &str) -> String {
    if upstream.starts_with("msg_") {
        upstream.to_owned()
    } else {
        format!("msg_{upstream}")
    }
}

// ---------------------------------------------------------------------------------------------
// Streams

/// Reads usage from the events that carry it.
fn event_usage(event: &Value) -> Option<Usage> {
    match event.get("type").and_then(Value::as_str) {
        Some("message_start") => event.pointer("/message/usage").and_then(usage_from_value),
        Some("message_delta") => event.get("usage").and_then(usage_from_value),
        _ => None,
    }
}

fn error_message(event: &Value) -> String {
    event
        .pointer("/error/message")
        .and_then(Value::as_str)
        .unwrap_or("the provider failed in the middle of the stream")
        .to_owned()
}

/// Anthropic upstream, Anthropic client: events pass as they came; usage and failures are read.
#[derive(Debug, Default)]
pub struct Passthrough {
    usage: Option<Usage>,
}

impl Reframe for Passthrough {
    fn event(&mut self, event: &Event, out: &mut Vec<u8>) -> Flow {
        write_event(out, event.event.as_deref(), &event.data);
        let Ok(parsed) = serde_json::from_str::<Value>(&event.data) else {
            return Flow::Continue;
        };
        if let Some(usage) = event_usage(&parsed) {
            self.usage.get_or_insert_default().merge(usage);
        }
        match parsed.get("type").and_then(Value::as_str) {
            Some("message_stop") => Flow::Complete,
            Some("error") => Flow::Failed,
            _ => Flow::Continue,
        }
    }

    fn end(&mut self, out: &mut Vec<u8>) -> Flow {
        self.fail(
            "the provider ended the stream before the answer was complete",
            out,
        );
        Flow::Failed
    }

    fn fail(&mut self, message: &str, out: &mut Vec<u8>) {
        write_event(out, Some("error"), &error_body(500, message));
    }

    fn usage(&self) -> Option<Usage> {
        self.usage
    }
}

/// Anthropic events read into canonical chunks.
#[derive(Debug)]
pub struct EventDecoder {
    id: String,
    model: String,
    created: u64,
    usage: Option<Usage>,
    /// Content block index → OpenAI tool call index, for tool_use blocks.
    tools: Vec<(u64, usize)>,
    finish: Option<&'static str>,
}

impl EventDecoder {
    /// A decoder for one stream.
    pub fn new(context: &Context) -> Self {
        Self {
            id: String::new(),
            model: context.model.clone(),
            created: context.created,
            usage: None,
            tools: Vec::new(),
            finish: None,
        }
    }

    fn chunk(&self, delta: Value, finish: Option<&str>) -> Value {
        openai::chunk(&self.id, &self.model, self.created, delta, finish)
    }
}

impl Decoder for EventDecoder {
    fn event(&mut self, event: &Event, out: &mut Vec<Value>) -> Result<bool, UpstreamError> {
        let parsed: Value = serde_json::from_str(&event.data)
            .map_err(|_| UpstreamError("the provider sent an event that is not JSON".into()))?;
        if let Some(usage) = event_usage(&parsed) {
            self.usage.get_or_insert_default().merge(usage);
        }
        match parsed.get("type").and_then(Value::as_str) {
            Some("message_start") => {
                if let Some(id) = parsed.pointer("/message/id").and_then(Value::as_str) {
                    self.id = id.to_owned();
                }
                if let Some(model) = parsed.pointer("/message/model").and_then(Value::as_str) {
                    self.model = model.to_owned();
                }
                out.push(self.chunk(json!({"role": "assistant", "content": ""}), None));
            }
            Some("content_block_start") => {
                let block = parsed.get("content_block").unwrap_or(&Value::Null);
                if block.get("type").and_then(Value::as_str) == Some("tool_use") {
                    let index = parsed.get("index").and_then(Value::as_u64).unwrap_or(0);
                    let call = self.tools.len();
                    self.tools.push((index, call));
                    out.push(self.chunk(
                        json!({"tool_calls": [{"index": call,
                            "id": block.get("id").cloned().unwrap_or(Value::Null),
                            "type": "function",
                            "function": {"name": block.get("name").cloned().unwrap_or(Value::Null), "arguments": ""}}]}),
                        None,
                    ));
                }
            }
            Some("content_block_delta") => {
                let delta = parsed.get("delta").unwrap_or(&Value::Null);
                match delta.get("type").and_then(Value::as_str) {
                    Some("text_delta") => out.push(self.chunk(
                        json!({"content": delta.get("text").cloned().unwrap_or(Value::Null)}),
                        None,
                    )),
                    Some("thinking_delta") => out.push(self.chunk(
                        json!({"reasoning_content": delta.get("thinking").cloned().unwrap_or(Value::Null)}),
                        None,
                    )),
                    Some("input_json_delta") => {
                        let index = parsed.get("index").and_then(Value::as_u64).unwrap_or(0);
                        if let Some(&(_, call)) = self.tools.iter().find(|(i, _)| *i == index) {
                            out.push(self.chunk(
                                json!({"tool_calls": [{"index": call, "function": {
                                    "arguments": delta.get("partial_json").cloned().unwrap_or(Value::Null)}}]}),
                                None,
                            ));
                        }
                    }
                    _ => {}
                }
            }
            Some("message_delta") => {
                let stop = parsed.pointer("/delta/stop_reason").and_then(Value::as_str);
                let finish = finish_from_stop(stop);
                self.finish = Some(finish);
                out.push(self.chunk(json!({}), Some(finish)));
            }
            Some("message_stop") => {
                let usage = self.usage.unwrap_or_default();
                out.push(openai::usage_chunk(
                    &self.id,
                    &self.model,
                    self.created,
                    &usage,
                ));
                return Ok(true);
            }
            Some("error") => return Err(UpstreamError(error_message(&parsed))),
            _ => {} // ping, content_block_stop, and events added later
        }
        Ok(false)
    }

    fn end(&mut self, _out: &mut Vec<Value>) -> bool {
        false
    }

    fn usage(&self) -> Option<Usage> {
        self.usage
    }
}

/// Which content block is open in an [`EventEncoder`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    Text,
    Thinking,
    Tool(u64),
}

/// Canonical chunks written as Anthropic events, for the `/v1/messages` front door.
#[derive(Debug)]
pub struct EventEncoder {
    model: String,
    started: bool,
    open: Option<(Open, usize)>,
    next_block: usize,
    /// OpenAI tool call index → content block index.
    tools: Vec<(u64, usize)>,
    finish: Option<String>,
    usage: Option<Usage>,
}

impl EventEncoder {
    /// An encoder for one stream.
    pub fn new(context: &Context) -> Self {
        Self {
            model: context.model.clone(),
            started: false,
            open: None,
            next_block: 0,
            tools: Vec::new(),
            finish: None,
            usage: None,
        }
    }

    fn start(&mut self, chunk: &Value, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        let id = message_id(chunk.get("id").and_then(Value::as_str).unwrap_or(""));
        let model = chunk
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or(&self.model);
        let start = json!({"type": "message_start", "message": {
            "id": id, "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": 0, "output_tokens": 0}}});
        write_event(out, Some("message_start"), &start.to_string());
    }

    fn close(&mut self, out: &mut Vec<u8>) {
        if let Some((_, index)) = self.open.take() {
            write_event(
                out,
                Some("content_block_stop"),
                &json!({"type": "content_block_stop", "index": index}).to_string(),
            );
        }
    }

    fn open(&mut self, kind: Open, block: Value, out: &mut Vec<u8>) -> usize {
        self.close(out);
        let index = self.next_block;
        self.next_block += 1;
        self.open = Some((kind, index));
        write_event(
            out,
            Some("content_block_start"),
            &json!({"type": "content_block_start", "index": index, "content_block": block})
                .to_string(),
        );
        index
    }

    fn delta(out: &mut Vec<u8>, index: usize, delta: Value) {
        write_event(
            out,
            Some("content_block_delta"),
            &json!({"type": "content_block_delta", "index": index, "delta": delta}).to_string(),
        );
    }

    fn text(&mut self, kind: Open, text: &str, out: &mut Vec<u8>) {
        if text.is_empty() {
            return;
        }
        let index = match self.open {
            Some((open, index)) if open == kind => index,
            _ => match kind {
                Open::Thinking => self.open(
                    kind,
                    json!({"type": "thinking", "thinking": "", "signature": ""}),
                    out,
                ),
                _ => self.open(kind, json!({"type": "text", "text": ""}), out),
            },
        };
        let delta = match kind {
            Open::Thinking => json!({"type": "thinking_delta", "thinking": text}),
            _ => json!({"type": "text_delta", "text": text}),
        };
        Self::delta(out, index, delta);
    }
}

impl Encoder for EventEncoder {
    fn chunk(&mut self, chunk: &Value, out: &mut Vec<u8>) {
        self.start(chunk, out);
        if let Some(usage) = chunk.get("usage").and_then(openai::usage_from_value) {
            self.usage = Some(usage);
        }
        let Some(choice) = chunk.pointer("/choices/0") else {
            return;
        };
        let delta = choice.get("delta").unwrap_or(&Value::Null);
        if let Some(text) = delta.get("reasoning_content").and_then(Value::as_str) {
            self.text(Open::Thinking, text, out);
        }
        if let Some(text) = delta.get("content").and_then(Value::as_str) {
            self.text(Open::Text, text, out);
        }
        for call in delta
            .get("tool_calls")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let call_index = call.get("index").and_then(Value::as_u64).unwrap_or(0);
            let known = self
                .tools
                .iter()
                .find(|(i, _)| *i == call_index)
                .map(|t| t.1);
            let block = match known {
                Some(block) => block,
                None => {
                    let block = self.open(
                        Open::Tool(call_index),
                        json!({"type": "tool_use",
                            "id": call.get("id").cloned().unwrap_or(Value::Null),
                            "name": call.pointer("/function/name").cloned().unwrap_or(Value::Null),
                            "input": {}}),
                        out,
                    );
                    self.tools.push((call_index, block));
                    block
                }
            };
            if let Some(arguments) = call.pointer("/function/arguments").and_then(Value::as_str)
                && !arguments.is_empty()
            {
                Self::delta(
                    out,
                    block,
                    json!({"type": "input_json_delta", "partial_json": arguments}),
                );
            }
        }
        if let Some(finish) = choice.get("finish_reason").and_then(Value::as_str) {
            self.finish = Some(finish.to_owned());
        }
    }

    fn done(&mut self, out: &mut Vec<u8>) {
        self.start(&Value::Null, out);
        self.close(out);
        let usage = self.usage.unwrap_or_default();
        let delta = json!({"type": "message_delta",
            "delta": {"stop_reason": stop_from_finish(self.finish.as_deref()), "stop_sequence": null},
            "usage": usage_value(&usage)});
        write_event(out, Some("message_delta"), &delta.to_string());
        write_event(out, Some("message_stop"), r#"{"type":"message_stop"}"#);
    }

    fn error(&mut self, message: &str, out: &mut Vec<u8>) {
        write_event(out, Some("error"), &error_body(500, message));
    }
}

// ---------------------------------------------------------------------------------------------
// The dialect

/// Anthropic Messages.
pub struct Messages;

impl super::dialect::Dialect for Messages {
    fn fit_to_cap(&self, request: &mut Map<String, Value>, cap: u64) {
        super::fit_thinking_budget(request, cap);
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
        super::dialect::usage_member(body, "usage", usage_from_value)
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
