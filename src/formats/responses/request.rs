//! Responses API requests into the canonical chat form, and what the platform's shared key may
//! not carry.

use serde_json::{Map, Value, json};

use super::super::FormatError;

/// Tools the model only writes (the client runs them): as free as any output. Every other
/// tool type is run by OpenAI and billed apart from tokens (web search per call, code
/// interpreter per container, image generation per image, remote MCP servers).
const CLIENT_RUN_TOOLS: [&str; 5] = ["function", "custom", "local_shell", "shell", "apply_patch"];

/// Refuses what a Responses request may not do through the platform's key, which every tenant
/// shares: refer to state stored at the provider (continuing a stored conversation, a stored
/// prompt, a file by id — an id would reach what another tenant stored, and what it stands for
/// is outside the reservation), run in the background (its answer would be fetched by id), or
/// use tools OpenAI runs and bills apart from tokens, which metering cannot price.
pub fn refuse_on_shared_key(request: &Map<String, Value>) -> Result<(), FormatError> {
    if request.get("background") == Some(&Value::Bool(true)) {
        return Err(FormatError::unsupported(
            "'background' responses are fetched by id later, which the platform's shared key cannot keep apart by tenant",
        ));
    }
    for tool in crate::formats::items(request.get("tools")).flat_map(namespaced) {
        let kind = tool
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("untyped");
        if !CLIENT_RUN_TOOLS.contains(&kind) {
            return Err(FormatError::unsupported(format!(
                "tools of type {kind:?} are run and billed by the provider apart from tokens, which this gateway cannot meter on the platform's key; use function tools, or your own key"
            )));
        }
    }
    for field in ["previous_response_id", "conversation", "prompt"] {
        if request.get(field).is_some_and(|v| !v.is_null()) {
            return Err(FormatError::unsupported(format!(
                "'{field}' refers to state stored at the provider under the platform's shared key; send the whole conversation as 'input' instead"
            )));
        }
    }
    let input = request.get("input").unwrap_or(&Value::Null);
    if let Some(reference) = input
        .as_array()
        .into_iter()
        .flatten()
        .find(|item| item.get("type").and_then(Value::as_str) == Some("item_reference"))
    {
        let id = reference.get("id").and_then(Value::as_str).unwrap_or("");
        return Err(FormatError::unsupported(format!(
            "'item_reference' {id:?} names no answer this gateway returned to this tenant within the hour (nothing is stored under the platform's shared key); send the item itself"
        )));
    }
    if any_object(input, &|part| {
        part.get("file_id").is_some_and(|v| !v.is_null())
    }) {
        return Err(FormatError::unsupported(
            "inputs by 'file_id' refer to files stored under the platform's shared key; send the file's data instead",
        ));
    }
    if any_object(input, &|part| {
        part.get("file_url").is_some_and(|v| !v.is_null())
    }) {
        return Err(FormatError::unsupported(
            "files by 'file_url' are read by the provider at a length this gateway cannot reserve for on the platform's key; send the file's data instead",
        ));
    }
    Ok(())
}

/// A tool, or the tools a namespace groups (Codex CLI offers its sub-agent tools in one).
fn namespaced(tool: &Value) -> Vec<&Value> {
    match tool.get("type").and_then(Value::as_str) {
        Some("namespace") => tool
            .get("tools")
            .and_then(Value::as_array)
            .map(|tools| tools.iter().collect())
            .unwrap_or_default(),
        _ => vec![tool],
    }
}

/// Whether any object within `value`, at any depth (message parts, a function call's output
/// parts), is one `found` looks for. Strings are not looked into.
fn any_object(value: &Value, found: &dyn Fn(&Map<String, Value>) -> bool) -> bool {
    match value {
        Value::Object(object) => found(object) || object.values().any(|v| any_object(v, found)),
        Value::Array(items) => items.iter().any(|v| any_object(v, found)),
        _ => false,
    }
}

/// A Responses request in the canonical (OpenAI chat) form.
pub fn request_to_openai(request: &Map<String, Value>) -> Result<Map<String, Value>, FormatError> {
    for (field, why) in [
        (
            "previous_response_id",
            "continues a conversation stored at OpenAI's Responses API",
        ),
        (
            "conversation",
            "continues a conversation stored at OpenAI's Responses API",
        ),
        ("prompt", "names a prompt template stored at OpenAI"),
    ] {
        if request.get(field).is_some_and(|v| !v.is_null()) {
            return Err(FormatError::unsupported(format!(
                "'{field}' {why}; this model is not served by that API: send the whole conversation as 'input'"
            )));
        }
    }
    if request.get("background") == Some(&Value::Bool(true)) {
        return Err(FormatError::unsupported(
            "'background' responses are kept by OpenAI's Responses API; this model is not served by it",
        ));
    }
    let mut out = Map::new();
    if let Some(model) = request.get("model") {
        out.insert("model".into(), model.clone());
    }
    let mut messages = Vec::new();
    match request.get("instructions") {
        None | Some(Value::Null) => {}
        Some(Value::String(text)) => {
            messages.push(json!({"role": "system", "content": text}));
        }
        Some(_) => return Err(FormatError::invalid("'instructions' must be a string")),
    }
    match request.get("input") {
        Some(Value::String(text)) => messages.push(json!({"role": "user", "content": text})),
        Some(Value::Array(items)) => {
            for item in items {
                input_item(item, &mut messages)?;
            }
        }
        _ => {
            return Err(FormatError::invalid(
                "'input' must be a string or an array of items",
            ));
        }
    }
    out.insert("messages".into(), Value::Array(messages));
    if let Some(max) = request.get("max_output_tokens").filter(|v| !v.is_null()) {
        out.insert("max_tokens".into(), max.clone());
    }
    for field in [
        "temperature",
        "top_p",
        "stream",
        "parallel_tool_calls",
        "user",
        "safety_identifier",
        "prompt_cache_key",
        "service_tier",
        "top_logprobs",
    ] {
        if let Some(value) = request.get(field).filter(|v| !v.is_null()) {
            out.insert(field.into(), value.clone());
        }
    }
    if request
        .get("top_logprobs")
        .is_some_and(|v| v.as_u64().is_some_and(|n| n > 0))
    {
        out.insert("logprobs".into(), Value::Bool(true));
    }
    if let Some(effort) = request
        .get("reasoning")
        .and_then(|r| r.get("effort"))
        .filter(|v| !v.is_null())
    {
        out.insert("reasoning_effort".into(), effort.clone());
    }
    if let Some(tools) = request.get("tools").and_then(Value::as_array) {
        // A namespace's functions are offered as plain function tools under their own names.
        let tools = tools
            .iter()
            .flat_map(namespaced)
            .map(tool)
            .collect::<Result<Vec<_>, _>>()?;
        if !tools.is_empty() {
            out.insert("tools".into(), Value::Array(tools));
        }
    }
    if let Some(choice) = request.get("tool_choice").filter(|v| !v.is_null()) {
        out.insert("tool_choice".into(), tool_choice(choice)?);
    }
    let format = request.get("text").and_then(|t| t.get("format"));
    if let Some(format) = format.filter(|v| !v.is_null())
        && let Some(response_format) = response_format(format)?
    {
        out.insert("response_format".into(), response_format);
    }
    if let Some(verbosity) = request
        .get("text")
        .and_then(|t| t.get("verbosity"))
        .filter(|v| !v.is_null())
    {
        out.insert("verbosity".into(), verbosity.clone());
    }
    Ok(out)
}

/// One input item appended to the canonical messages. Function calls join the assistant
/// message before them (a chat completion carries one turn's calls in one message).
fn input_item(item: &Value, messages: &mut Vec<Value>) -> Result<(), FormatError> {
    let kind = item.get("type").and_then(Value::as_str);
    match kind {
        None | Some("message") => {
            let role = item
                .get("role")
                .and_then(Value::as_str)
                .ok_or_else(|| FormatError::invalid("an input message has no 'role'"))?;
            let role = match role {
                "user" | "assistant" | "system" => role,
                "developer" => "system",
                other => {
                    return Err(FormatError::invalid(format!(
                        "an input message's role {other:?} is not user, assistant, system or developer"
                    )));
                }
            };
            let content = message_content(item.get("content").unwrap_or(&Value::Null), role)?;
            messages.push(json!({"role": role, "content": content}));
        }
        Some("function_call") => {
            let text = |field: &str| {
                item.get(field).and_then(Value::as_str).ok_or_else(|| {
                    FormatError::invalid(format!("a function_call item has no '{field}'"))
                })
            };
            let call = json!({"id": text("call_id")?, "type": "function",
                "function": {"name": text("name")?, "arguments": text("arguments")?}});
            let joins = messages
                .last()
                .is_some_and(|last| last.get("role").and_then(Value::as_str) == Some("assistant"));
            if joins && let Some(Value::Object(last)) = messages.last_mut() {
                match last.get_mut("tool_calls") {
                    Some(Value::Array(calls)) => calls.push(call),
                    _ => {
                        last.insert("tool_calls".into(), Value::Array(vec![call]));
                    }
                }
            } else {
                messages.push(json!({"role": "assistant", "content": null, "tool_calls": [call]}));
            }
        }
        Some("function_call_output") => {
            let call_id = item.get("call_id").and_then(Value::as_str).ok_or_else(|| {
                FormatError::invalid("a function_call_output item has no 'call_id'")
            })?;
            let output = match item.get("output") {
                Some(Value::String(text)) => text.clone(),
                Some(Value::Array(parts)) => {
                    let mut text = String::new();
                    for part in parts {
                        match part.get("type").and_then(Value::as_str) {
                            Some("input_text" | "output_text") => text.push_str(
                                part.get("text").and_then(Value::as_str).unwrap_or_default(),
                            ),
                            other => {
                                return Err(FormatError::unsupported(format!(
                                    "a function call's output can only hold text for this model, not {:?} parts",
                                    other.unwrap_or("untyped")
                                )));
                            }
                        }
                    }
                    text
                }
                _ => {
                    return Err(FormatError::invalid(
                        "a function_call_output item's 'output' must be a string or an array",
                    ));
                }
            };
            messages.push(json!({"role": "tool", "tool_call_id": call_id, "content": output}));
        }
        // A model's private state from an earlier turn: see the module's documentation.
        Some("reasoning") => {}
        Some("item_reference") => {
            let id = item.get("id").and_then(Value::as_str).unwrap_or("");
            return Err(FormatError::unsupported(format!(
                "'item_reference' {id:?} names no answer this gateway returned to this tenant within the hour; send the item itself"
            )));
        }
        Some(other) => {
            return Err(FormatError::unsupported(format!(
                "input items of type {other:?} are kept or run by OpenAI's Responses API; this model is not served by it"
            )));
        }
    }
    Ok(())
}

/// A message's content in the canonical form: a string, or parts (text and images).
fn message_content(content: &Value, role: &str) -> Result<Value, FormatError> {
    let parts = match content {
        Value::String(text) => return Ok(Value::String(text.clone())),
        Value::Array(parts) => parts,
        _ => {
            return Err(FormatError::invalid(
                "an input message's 'content' must be a string or an array",
            ));
        }
    };
    let mut out = Vec::with_capacity(parts.len());
    for part in parts {
        let text = || {
            part.get("text")
                .cloned()
                .unwrap_or(Value::String(String::new()))
        };
        match part.get("type").and_then(Value::as_str) {
            Some("input_text" | "output_text" | "text") => {
                out.push(json!({"type": "text", "text": text()}));
            }
            Some("refusal") => {
                let refusal = part.get("refusal").cloned().unwrap_or(Value::Null);
                out.push(json!({"type": "text", "text": refusal}));
            }
            Some("input_image") => {
                let Some(url) = part.get("image_url").and_then(Value::as_str) else {
                    return Err(FormatError::unsupported(
                        "an image by 'file_id' is stored at OpenAI; this model takes images by URL or data URL",
                    ));
                };
                let mut image = json!({"url": url});
                if let Some(detail) = part.get("detail").filter(|v| !v.is_null()) {
                    image["detail"] = detail.clone();
                }
                out.push(json!({"type": "image_url", "image_url": image}));
            }
            other => {
                return Err(FormatError::unsupported(format!(
                    "message parts of type {:?} cannot be sent to this model",
                    other.unwrap_or("untyped")
                )));
            }
        }
    }
    // Assistant and system turns are text in every format; a string keeps them simple.
    if role != "user" {
        let text: String = out
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect();
        return Ok(Value::String(text));
    }
    Ok(Value::Array(out))
}

/// A Responses tool in the canonical form: function tools only.
fn tool(tool: &Value) -> Result<Value, FormatError> {
    match tool.get("type").and_then(Value::as_str) {
        Some("function") => {
            let name = tool
                .get("name")
                .ok_or_else(|| FormatError::invalid("a function tool has no 'name'"))?;
            let mut function = json!({"name": name});
            for field in ["description", "parameters", "strict"] {
                if let Some(value) = tool.get(field).filter(|v| !v.is_null()) {
                    function[field] = value.clone();
                }
            }
            Ok(json!({"type": "function", "function": function}))
        }
        other => Err(FormatError::unsupported(format!(
            "tools of type {:?} are run by OpenAI's Responses API itself; this model takes function tools only",
            other.unwrap_or("untyped")
        ))),
    }
}

/// `tool_choice` in the canonical form.
fn tool_choice(choice: &Value) -> Result<Value, FormatError> {
    match choice {
        Value::String(mode) if ["auto", "none", "required"].contains(&mode.as_str()) => {
            Ok(choice.clone())
        }
        Value::Object(object) if object.get("type").and_then(Value::as_str) == Some("function") => {
            let name = object
                .get("name")
                .ok_or_else(|| FormatError::invalid("'tool_choice' names no function"))?;
            Ok(json!({"type": "function", "function": {"name": name}}))
        }
        _ => Err(FormatError::unsupported(
            "this 'tool_choice' names a tool only OpenAI's Responses API runs",
        )),
    }
}

/// `text.format` as the canonical `response_format` (`None` for plain text).
fn response_format(format: &Value) -> Result<Option<Value>, FormatError> {
    match format.get("type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(json!({"type": "json_object"}))),
        Some("json_schema") => {
            let mut schema = Map::new();
            for field in ["name", "description", "schema", "strict"] {
                if let Some(value) = format.get(field).filter(|v| !v.is_null()) {
                    schema.insert(field.into(), value.clone());
                }
            }
            schema
                .entry("name")
                .or_insert_with(|| Value::String("response".into()));
            Ok(Some(
                json!({"type": "json_schema", "json_schema": Value::Object(schema)}),
            ))
        }
        _ => Err(FormatError::invalid(
            "'text.format.type' must be text, json_object or json_schema",
        )),
    }
}
