//! Converse requests to and from the canonical OpenAI form.
//!
//! What Converse cannot express is refused, never dropped: OpenAI-only members
//! ([`refuse_openai_only`]), sampling members Converse has no field for (the model-specific
//! `additionalModelRequestFields` would name them differently for each model family), a JSON
//! schema for the answer, image URLs Bedrock would have to fetch, and tool choices it has no
//! word for.

use serde_json::{Map, Value, json};

use super::super::{
    FormatError, data_url, function_tools, max_tokens, messages, parse_arguments,
    refuse_openai_only, stop_list, text_only,
};

/// Canonical members that change the answer and have no place in a Converse request.
const NO_CONVERSE_FIELD: [&str; 6] = [
    "seed",
    "top_k",
    "presence_penalty",
    "frequency_penalty",
    "reasoning_effort",
    "prediction",
];

/// Converse members that change the answer or its price and have no place in the canonical
/// form: model-specific fields, guardrails (billed apart), prompt-management variables, the
/// latency-optimized tier (priced apart) and extra response fields.
const NO_CANONICAL_FIELD: [&str; 5] = [
    "additionalModelRequestFields",
    "additionalModelResponseFieldPaths",
    "guardrailConfig",
    "promptVariables",
    "performanceConfig",
];

/// Refuses the members of [`NO_CONVERSE_FIELD`] a request sets (a penalty of 0 is no penalty).
fn refuse_unexpressible(request: &Map<String, Value>) -> Result<(), FormatError> {
    for name in NO_CONVERSE_FIELD {
        let set = match request.get(name) {
            None | Some(Value::Null) => false,
            Some(Value::Number(n)) if name.ends_with("_penalty") => n.as_f64() != Some(0.0),
            Some(_) => true,
        };
        if set {
            return Err(FormatError::unsupported(format!(
                "'{name}' cannot be sent to a Bedrock Converse model"
            )));
        }
    }
    if request.get("parallel_tool_calls") == Some(&Value::Bool(false)) {
        return Err(FormatError::unsupported(
            "a Bedrock Converse model cannot be limited to one tool call at a time",
        ));
    }
    Ok(())
}

/// Converse's image format for a media type.
fn image_format(media_type: &str) -> Result<&'static str, FormatError> {
    match media_type {
        "image/png" => Ok("png"),
        "image/jpeg" | "image/jpg" => Ok("jpeg"),
        "image/gif" => Ok("gif"),
        "image/webp" => Ok("webp"),
        other => Err(FormatError::unsupported(format!(
            "images of type {other:?} cannot be sent to a Bedrock Converse model (png, jpeg, gif, webp)"
        ))),
    }
}

/// An `image_url` part as an image block. Converse takes image bytes (or an S3 location),
/// never a URL: an http(s) image would have to be fetched by the gateway, which it does not do.
fn image_block(part: &Value) -> Result<Value, FormatError> {
    let url = part
        .pointer("/image_url/url")
        .and_then(Value::as_str)
        .ok_or_else(|| FormatError::invalid("an image_url part has no url"))?;
    let data = data_url(url).ok_or_else(|| {
        FormatError::unsupported(
            "a Bedrock Converse model takes images inline only: send a base64 data: URL",
        )
    })?;
    Ok(json!({"image": {"format": image_format(data.media_type)?,
        "source": {"bytes": data.data}}}))
}

fn user_blocks(content: &Value) -> Result<Vec<Value>, FormatError> {
    match content {
        Value::String(text) => Ok(vec![json!({ "text": text })]),
        Value::Array(parts) => parts
            .iter()
            .map(|part| match part.get("type").and_then(Value::as_str) {
                Some("text") => {
                    Ok(json!({"text": part.get("text").cloned().unwrap_or(Value::Null)}))
                }
                Some("image_url") => image_block(part),
                other => Err(FormatError::unsupported(format!(
                    "{:?} content parts cannot be sent to a Bedrock Converse model",
                    other.unwrap_or("untyped")
                ))),
            })
            .collect(),
        _ => Err(FormatError::invalid(
            "user message content must be a string or an array",
        )),
    }
}

/// An assistant message's text and tool calls as blocks (its earlier reasoning is dropped:
/// the model's own scratchpad, which no provider needs back).
fn assistant_blocks(message: &Value) -> Result<Vec<Value>, FormatError> {
    let mut blocks = Vec::new();
    let text = text_only(
        message.get("content").unwrap_or(&Value::Null),
        "an assistant message",
    )?;
    if !text.is_empty() {
        blocks.push(json!({ "text": text }));
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
        blocks.push(json!({"toolUse": {"toolUseId": id, "name": name,
            "input": parse_arguments(arguments)?}}));
    }
    Ok(blocks)
}

fn tool_result(message: &Value) -> Result<Value, FormatError> {
    let id = message
        .get("tool_call_id")
        .and_then(Value::as_str)
        .ok_or_else(|| FormatError::invalid("a tool message has no 'tool_call_id'"))?;
    let text = text_only(
        message.get("content").unwrap_or(&Value::Null),
        "a tool result",
    )?;
    Ok(json!({"toolResult": {"toolUseId": id, "content": [{ "text": text }]}}))
}

/// The conversation as Converse turns and system blocks. Converse requires user and assistant
/// turns to alternate: consecutive messages of one role (a tool result is a user turn) become
/// one turn. System messages anywhere are hoisted into `system`, as for Anthropic.
fn turns(request: &Map<String, Value>) -> Result<(Vec<Value>, Vec<Value>), FormatError> {
    let mut system = Vec::new();
    let mut turns: Vec<(&'static str, Vec<Value>)> = Vec::new();
    for message in messages(request)? {
        let content = message.get("content").unwrap_or(&Value::Null);
        let (role, blocks) = match message.get("role").and_then(Value::as_str).unwrap_or("") {
            "system" | "developer" => {
                system.push(json!({"text": text_only(content, "a system message")?}));
                continue;
            }
            "user" => ("user", user_blocks(content)?),
            "assistant" => ("assistant", assistant_blocks(message)?),
            "tool" => ("user", vec![tool_result(message)?]),
            other => {
                return Err(FormatError::invalid(format!(
                    "unknown message role {other:?}"
                )));
            }
        };
        // Converse refuses a turn without content: an empty one adds nothing to merge.
        if blocks.is_empty() {
            continue;
        }
        match turns.last_mut() {
            Some((last, existing)) if *last == role => existing.extend(blocks),
            _ => turns.push((role, blocks)),
        }
    }
    let turns = turns
        .into_iter()
        .map(|(role, content)| json!({"role": role, "content": content}))
        .collect();
    Ok((system, turns))
}

/// What an OpenAI `response_format` asks of a Converse model: nothing, or the JSON-mode
/// instruction. Converse has no structured-output parameter: a schema is refused rather than
/// forced through a tool, which would turn the answer into a tool call the client did not ask
/// for.
fn json_mode(request: &Map<String, Value>) -> Result<bool, FormatError> {
    let Some(format) = request.get("response_format").filter(|f| !f.is_null()) else {
        return Ok(false);
    };
    match format.get("type").and_then(Value::as_str) {
        Some("text") => Ok(false),
        Some("json_object") => Ok(true),
        Some("json_schema") => Err(FormatError::unsupported(
            "a Bedrock Converse model cannot be held to a JSON schema ('response_format' json_schema); use json_object, or a tool",
        )),
        _ => Err(FormatError::invalid("unknown response_format type")),
    }
}

/// `inferenceConfig`: the output limit always (the gateway must bound generation; the
/// catalog's maximum when the request gave none), and the sampling members it set.
fn inference_config(
    request: &Map<String, Value>,
    default_max_tokens: u64,
) -> Result<Value, FormatError> {
    let mut config = Map::new();
    config.insert(
        "maxTokens".into(),
        json!(max_tokens(request).unwrap_or(default_max_tokens)),
    );
    super::super::copy_renamed(
        request,
        &mut config,
        &[("temperature", "temperature"), ("top_p", "topP")],
    );
    if let Some(stops) = stop_list(request)? {
        config.insert("stopSequences".into(), Value::Array(stops));
    }
    Ok(Value::Object(config))
}

/// `toolConfig`, if the request offers tools the model may call. Converse has no tool choice
/// `none`: the tools are left out instead, which Converse refuses when the conversation holds
/// tool use (it requires `toolConfig` then), so that combination is refused here.
fn tool_config(
    request: &Map<String, Value>,
    turns: &[Value],
) -> Result<Option<Value>, FormatError> {
    let tools = function_tools(request)?;
    if tools.is_empty() {
        return Ok(None);
    }
    let choice = match request.get("tool_choice") {
        None | Some(Value::Null) => None,
        Some(Value::String(mode)) => match mode.as_str() {
            "auto" => Some(json!({"auto": {}})),
            "required" => Some(json!({"any": {}})),
            "none" if holds_tool_use(turns) => {
                return Err(FormatError::unsupported(
                    "tool_choice 'none' cannot be sent to a Bedrock Converse model once the conversation holds tool calls; use 'auto'",
                ));
            }
            "none" => return Ok(None),
            other => {
                return Err(FormatError::invalid(format!(
                    "unknown tool_choice {other:?}"
                )));
            }
        },
        Some(choice) => {
            let name = choice
                .pointer("/function/name")
                .and_then(Value::as_str)
                .ok_or_else(|| FormatError::invalid("tool_choice names no function"))?;
            Some(json!({"tool": {"name": name}}))
        }
    };
    let specs: Vec<Value> = tools
        .into_iter()
        .map(|(name, description, parameters)| {
            let mut spec = json!({"name": name, "inputSchema": {"json": parameters}});
            if let Some(description) = description {
                spec["description"] = description.clone();
            }
            json!({ "toolSpec": spec })
        })
        .collect();
    let mut config = json!({ "tools": specs });
    if let Some(choice) = choice {
        config["toolChoice"] = choice;
    }
    Ok(Some(config))
}

fn holds_tool_use(turns: &[Value]) -> bool {
    turns
        .iter()
        .filter_map(|turn| turn.get("content").and_then(Value::as_array))
        .flatten()
        .any(|block| block.get("toolUse").is_some() || block.get("toolResult").is_some())
}

/// OpenAI request → Converse request (no model: it goes in the URL). `default_max_tokens`
/// fills `inferenceConfig.maxTokens` when the client gave no limit.
pub fn request_from_openai(
    request: &Map<String, Value>,
    default_max_tokens: u64,
) -> Result<Map<String, Value>, FormatError> {
    refuse_openai_only(request, "Bedrock Converse")?;
    refuse_unexpressible(request)?;
    let (mut system, turns) = turns(request)?;
    if json_mode(request)? {
        system.push(json!({"text": super::super::anthropic::JSON_OBJECT_INSTRUCTION}));
    }
    let mut out = Map::new();
    let tools = tool_config(request, &turns)?;
    out.insert("messages".into(), Value::Array(turns));
    if !system.is_empty() {
        out.insert("system".into(), Value::Array(system));
    }
    out.insert(
        "inferenceConfig".into(),
        inference_config(request, default_max_tokens)?,
    );
    if let Some(tools) = tools {
        out.insert("toolConfig".into(), tools);
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Converse → canonical

/// The text of Converse text blocks (`[{"text"}]`), joined by newlines; other blocks are an
/// error naming `what`.
fn blocks_text(blocks: &[Value], what: &str) -> Result<String, FormatError> {
    let mut texts = Vec::new();
    for block in blocks {
        match block.get("text").and_then(Value::as_str) {
            Some(text) => texts.push(text),
            None => {
                return Err(FormatError::unsupported(format!(
                    "{what} can only hold text blocks here"
                )));
            }
        }
    }
    Ok(texts.join("\n"))
}

/// A Converse image block as a canonical `image_url` part with a data: URL.
fn image_part(image: &Value) -> Result<Value, FormatError> {
    let format = image.get("format").and_then(Value::as_str).unwrap_or("");
    let Some(bytes) = image.pointer("/source/bytes").and_then(Value::as_str) else {
        return Err(FormatError::unsupported(
            "only inline image bytes can be translated (not an S3 location)",
        ));
    };
    Ok(
        json!({"type": "image_url", "image_url": {"url": format!("data:image/{format};base64,{bytes}")}}),
    )
}

/// The text of a tool result's content blocks (`json` blocks written as JSON text).
fn tool_result_text(result: &Value) -> Result<String, FormatError> {
    let mut text = String::new();
    for block in crate::formats::items(result.get("content")) {
        if let Some(part) = block.get("text").and_then(Value::as_str) {
            text.push_str(part);
        } else if let Some(json) = block.get("json") {
            text.push_str(&json.to_string());
        } else {
            return Err(FormatError::unsupported(
                "only text and json tool results can be translated",
            ));
        }
    }
    Ok(text)
}

fn user_to_openai(blocks: &[Value], chat: &mut Vec<Value>) -> Result<(), FormatError> {
    let mut parts = Vec::new();
    for block in blocks {
        if let Some(text) = block.get("text") {
            parts.push(json!({"type": "text", "text": text}));
        } else if let Some(image) = block.get("image") {
            parts.push(image_part(image)?);
        } else if let Some(result) = block.get("toolResult") {
            chat.push(json!({"role": "tool",
                "tool_call_id": result.get("toolUseId").cloned().unwrap_or(Value::Null),
                "content": tool_result_text(result)?}));
        } else {
            return Err(FormatError::unsupported(
                "only text, image and toolResult user blocks can be translated",
            ));
        }
    }
    if !parts.is_empty() {
        chat.push(json!({"role": "user", "content": parts}));
    }
    Ok(())
}

fn assistant_to_openai(blocks: &[Value]) -> Result<Value, FormatError> {
    let mut text = String::new();
    let mut calls = Vec::new();
    for block in blocks {
        if let Some(part) = block.get("text").and_then(Value::as_str) {
            text.push_str(part);
        } else if let Some(call) = block.get("toolUse") {
            calls.push(super::response::tool_call(call));
        } else if block.get("reasoningContent").is_none() {
            return Err(FormatError::unsupported(
                "only text, toolUse and reasoning assistant blocks can be translated",
            ));
        }
    }
    let content = if text.is_empty() && !calls.is_empty() {
        Value::Null
    } else {
        Value::String(text)
    };
    let mut message = json!({"role": "assistant", "content": content});
    if !calls.is_empty() {
        message["tool_calls"] = Value::Array(calls);
    }
    Ok(message)
}

fn tools_to_openai(config: &Value, out: &mut Map<String, Value>) -> Result<(), FormatError> {
    let mut tools = Vec::new();
    for tool in crate::formats::items(config.get("tools")) {
        let spec = tool
            .get("toolSpec")
            .ok_or_else(|| FormatError::unsupported("only toolSpec tools can be translated"))?;
        let mut function = json!({
            "name": spec.get("name").cloned().unwrap_or(Value::Null),
            "parameters": spec.pointer("/inputSchema/json").cloned().unwrap_or_else(|| json!({"type": "object"})),
        });
        if let Some(description) = spec.get("description") {
            function["description"] = description.clone();
        }
        tools.push(json!({"type": "function", "function": function}));
    }
    if !tools.is_empty() {
        out.insert("tools".into(), Value::Array(tools));
    }
    let choice = match config.get("toolChoice") {
        None | Some(Value::Null) => return Ok(()),
        Some(choice) if choice.get("auto").is_some() => json!("auto"),
        Some(choice) if choice.get("any").is_some() => json!("required"),
        Some(choice) => match choice.pointer("/tool/name") {
            Some(name) => json!({"type": "function", "function": {"name": name}}),
            None => return Err(FormatError::invalid("unknown toolChoice")),
        },
    };
    out.insert("tool_choice".into(), choice);
    Ok(())
}

/// Converse request → OpenAI request (what a Converse front door would need; the model is not
/// in the body, so none is set).
pub fn request_to_openai(request: &Map<String, Value>) -> Result<Map<String, Value>, FormatError> {
    if let Some(name) = NO_CANONICAL_FIELD
        .iter()
        .find(|name| request.get(**name).is_some_and(|v| !v.is_null()))
    {
        return Err(FormatError::unsupported(format!(
            "'{name}' can only be sent to a Bedrock Converse model"
        )));
    }
    let mut chat = Vec::new();
    if let Some(system) = request.get("system").and_then(Value::as_array) {
        chat.push(json!({"role": "system", "content": blocks_text(system, "the system prompt")?}));
    }
    let turns = request
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| FormatError::invalid("'messages' must be an array"))?;
    for turn in turns {
        let blocks = turn
            .get("content")
            .and_then(Value::as_array)
            .ok_or_else(|| FormatError::invalid("a message's content must be an array"))?;
        match turn.get("role").and_then(Value::as_str) {
            Some("user") => user_to_openai(blocks, &mut chat)?,
            Some("assistant") => chat.push(assistant_to_openai(blocks)?),
            other => {
                return Err(FormatError::invalid(format!(
                    "a message must have role 'user' or 'assistant' (got {other:?})"
                )));
            }
        }
    }
    let mut out = Map::new();
    out.insert("messages".into(), Value::Array(chat));
    if let Some(config) = request.get("inferenceConfig").filter(|c| !c.is_null()) {
        let config = config
            .as_object()
            .ok_or_else(|| FormatError::invalid("'inferenceConfig' must be an object"))?;
        super::super::copy_renamed(
            config,
            &mut out,
            &[
                ("maxTokens", "max_tokens"),
                ("temperature", "temperature"),
                ("topP", "top_p"),
                ("stopSequences", "stop"),
            ],
        );
    }
    if let Some(config) = request.get("toolConfig").filter(|c| !c.is_null()) {
        tools_to_openai(config, &mut out)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap()
    }

    fn converse(request: Value) -> Result<Map<String, Value>, FormatError> {
        request_from_openai(&object(request), 4096)
    }

    #[test]
    fn text_and_system_messages_become_turns_and_system_blocks() {
        let out = converse(json!({"model": "m", "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "developer", "content": [{"type": "text", "text": "and kind"}]},
            {"role": "user", "content": "hi"}],
            "temperature": 0.5, "top_p": 0.9, "max_tokens": 512, "stream": true, "user": "u1"}))
        .unwrap();
        assert_eq!(
            Value::Object(out),
            json!({
                "messages": [{"role": "user", "content": [{"text": "hi"}]}],
                "system": [{"text": "be brief"}, {"text": "and kind"}],
                "inferenceConfig": {"maxTokens": 512, "temperature": 0.5, "topP": 0.9},
            })
        );
    }

    #[test]
    fn max_tokens_is_always_written_and_stop_becomes_a_list() {
        let out = converse(json!({"messages": [{"role": "user", "content": "hi"}], "stop": "x"}))
            .unwrap();
        assert_eq!(
            out["inferenceConfig"],
            json!({"maxTokens": 4096, "stopSequences": ["x"]})
        );
        let out = converse(json!({"messages": [{"role": "user", "content": "hi"}],
            "max_completion_tokens": 77, "stop": ["a", "b"]}))
        .unwrap();
        assert_eq!(
            out["inferenceConfig"],
            json!({"maxTokens": 77, "stopSequences": ["a", "b"]})
        );
    }

    #[test]
    fn inline_images_become_bytes_and_linked_ones_are_refused() {
        let out = converse(json!({"messages": [{"role": "user", "content": [
            {"type": "text", "text": "what is it"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR"}}]}]}))
        .unwrap();
        assert_eq!(
            out["messages"][0]["content"],
            json!([{"text": "what is it"},
                {"image": {"format": "png", "source": {"bytes": "iVBOR"}}}])
        );
        let linked = converse(json!({"messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}]}));
        assert!(matches!(linked, Err(FormatError::Unsupported(_))));
        let tiff = converse(json!({"messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:image/tiff;base64,AA"}}]}]}));
        assert!(matches!(tiff, Err(FormatError::Unsupported(_))));
    }

    fn tool_conversation() -> Value {
        json!({"messages": [
            {"role": "user", "content": "weather in Paris and Rome?"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "t1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "t2", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Rome\"}"}}]},
            {"role": "tool", "tool_call_id": "t1", "content": "sunny"},
            {"role": "tool", "tool_call_id": "t2", "content": [{"type": "text", "text": "rain"}]},
            {"role": "user", "content": "thanks"}],
            "tools": [{"type": "function", "function": {"name": "get_weather",
                "description": "Weather of a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]})
    }

    #[test]
    fn tool_calls_and_results_alternate_as_merged_turns() {
        let out = converse(tool_conversation()).unwrap();
        assert_eq!(
            out["messages"],
            json!([
                {"role": "user", "content": [{"text": "weather in Paris and Rome?"}]},
                {"role": "assistant", "content": [
                    {"toolUse": {"toolUseId": "t1", "name": "get_weather", "input": {"city": "Paris"}}},
                    {"toolUse": {"toolUseId": "t2", "name": "get_weather", "input": {"city": "Rome"}}}]},
                {"role": "user", "content": [
                    {"toolResult": {"toolUseId": "t1", "content": [{"text": "sunny"}]}},
                    {"toolResult": {"toolUseId": "t2", "content": [{"text": "rain"}]}},
                    {"text": "thanks"}]}
            ])
        );
        assert_eq!(
            out["toolConfig"],
            json!({"tools": [{"toolSpec": {"name": "get_weather", "description": "Weather of a city",
                "inputSchema": {"json": {"type": "object", "properties": {"city": {"type": "string"}}}}}}]})
        );
    }

    #[test]
    fn each_tool_choice_has_its_converse_form() {
        let with = |choice: Value| {
            let mut request = tool_conversation();
            request["tool_choice"] = choice;
            converse(request)
        };
        let choice = |choice: Value| with(choice).unwrap()["toolConfig"]["toolChoice"].clone();
        assert_eq!(choice(json!("auto")), json!({"auto": {}}));
        assert_eq!(choice(json!("required")), json!({"any": {}}));
        assert_eq!(
            choice(json!({"type": "function", "function": {"name": "get_weather"}})),
            json!({"tool": {"name": "get_weather"}})
        );
        // No `none` in Converse: the tools are left out, which the conversation's tool calls
        // forbid.
        assert!(matches!(
            with(json!("none")),
            Err(FormatError::Unsupported(_))
        ));
        let fresh = converse(json!({"messages": [{"role": "user", "content": "hi"}],
            "tools": tool_conversation()["tools"].clone(), "tool_choice": "none"}))
        .unwrap();
        assert!(fresh.get("toolConfig").is_none());
    }

    #[test]
    fn what_converse_cannot_express_is_refused() {
        for extra in [
            json!({"response_format": {"type": "json_schema", "json_schema": {"name": "r", "schema": {"type": "object"}}}}),
            json!({"n": 2}),
            json!({"logprobs": true}),
            json!({"seed": 1}),
            json!({"frequency_penalty": 0.5}),
            json!({"reasoning_effort": "high"}),
            json!({"parallel_tool_calls": false}),
        ] {
            let mut request = json!({"messages": [{"role": "user", "content": "hi"}]});
            for (name, value) in extra.as_object().unwrap() {
                request[name] = value.clone();
            }
            assert!(
                matches!(converse(request), Err(FormatError::Unsupported(_))),
                "{extra}"
            );
        }
        // A zero penalty is no penalty; JSON mode is an instruction.
        let out = converse(json!({"messages": [{"role": "user", "content": "hi"}],
            "presence_penalty": 0, "response_format": {"type": "json_object"}}))
        .unwrap();
        assert_eq!(
            out["system"],
            json!([{"text": super::super::super::anthropic::JSON_OBJECT_INSTRUCTION}])
        );
    }

    #[test]
    fn a_converse_request_reads_back_into_the_canonical_form() {
        let canonical = object(tool_conversation());
        let mut with_system = canonical.clone();
        with_system.insert(
            "messages".into(),
            json!([{"role": "system", "content": "be brief"}]),
        );
        let converse = request_from_openai(&canonical, 300).unwrap();
        let back = request_to_openai(&converse).unwrap();
        assert_eq!(back["max_tokens"], 300);
        assert_eq!(back["messages"][1]["tool_calls"][1]["id"], "t2");
        assert_eq!(
            back["messages"][2],
            json!({"role": "tool", "tool_call_id": "t1", "content": "sunny"})
        );
        assert_eq!(
            back["messages"][4],
            json!({"role": "user", "content": [{"type": "text", "text": "thanks"}]})
        );
        assert_eq!(back["tools"][0]["function"]["name"], "get_weather");
        let system = request_from_openai(&with_system, 1).unwrap();
        let back = request_to_openai(&system).unwrap();
        assert_eq!(
            back["messages"][0],
            json!({"role": "system", "content": "be brief"})
        );
        let guarded =
            object(json!({"messages": [], "guardrailConfig": {"guardrailIdentifier": "g"}}));
        assert!(matches!(
            request_to_openai(&guarded),
            Err(FormatError::Unsupported(_))
        ));
    }
}
