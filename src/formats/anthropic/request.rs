//! Anthropic Messages requests to and from the canonical OpenAI form, and what the platform's
//! shared key may not carry.

use serde_json::{Map, Value, json};

use super::super::{
    FormatError, data_url, function_tools, max_tokens, messages, parse_arguments,
    refuse_openai_only, stop_list,
};

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
    for tool in crate::formats::items(request.get("tools")) {
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
    let mut parts = crate::formats::items(request.get("messages"))
        .flat_map(|message| crate::formats::items(message.get("content")));
    if parts.any(by_file_id) {
        return Err(FormatError::unsupported(
            "content by file id refers to a file stored under the platform's shared key; send it inline (base64 or text), or use your own key",
        ));
    }
    Ok(())
}

/// Whether a content part, or a part within it, names a file by id: a `source` of type `file`
/// or a `container_upload`, at the top of a message or inside a `tool_result`'s content or a
/// document's content source (which hold parts of their own).
fn by_file_id(part: &Value) -> bool {
    let source = part.get("source");
    source.and_then(|s| s.get("type")).and_then(Value::as_str) == Some("file")
        || part.get("type").and_then(Value::as_str) == Some("container_upload")
        || crate::formats::items(part.get("content"))
            .chain(crate::formats::items(source.and_then(|s| s.get("content"))))
            .any(by_file_id)
}

/// Anthropic refuses a `thinking.budget_tokens` at or above `max_tokens`: when a cap lowers
/// `max_tokens` that far, the thinking budget is lowered to fit beneath it, or, below
/// Anthropic's 1,024-token minimum, extended thinking is turned off, so a tenant near its limit
/// gets a shorter answer rather than a refusal.
pub(crate) fn fit_thinking_budget(json: &mut Map<String, Value>, cap: u64) {
    const MIN_THINKING_BUDGET: u64 = 1_024;
    let Some(budget) = json
        .get("thinking")
        .and_then(|t| t.get("budget_tokens"))
        .and_then(Value::as_u64)
    else {
        return;
    };
    if budget < cap {
        return;
    }
    let fitted = cap.saturating_sub(1);
    if fitted >= MIN_THINKING_BUDGET {
        if let Some(Value::Object(thinking)) = json.get_mut("thinking") {
            thinking.insert("budget_tokens".to_owned(), Value::from(fitted));
        }
    } else {
        json.remove("thinking");
    }
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
                let text = super::super::text_only(content, "a system message")?;
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
                let text = super::super::text_only(content, "a tool result")?;
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
    let text = super::super::text_only(
        message.get("content").unwrap_or(&Value::Null),
        "an assistant message",
    )?;
    if !text.is_empty() {
        blocks.push(json!({"type": "text", "text": text}));
    }
    for call in crate::formats::openai::tool_calls(message) {
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
