//! Gemini's own API as a front door (what Google's `google-genai` SDK speaks): a
//! `generateContent` request read into the canonical chat form, and the canonical answer
//! written back as a `GenerateContentResponse` (whole, or `streamGenerateContent?alt=sse`
//! chunks), errors in Google's shape.
//!
//! Function calls get ids when the client gave none (derived from their turn and position), so
//! each `functionResponse` is matched to its call: by its `id` when it has one, else to the
//! first unanswered call of that name in the turn before it. Gemini's OpenAPI-style schemas
//! (`"type": "OBJECT"`, `nullable`) become JSON Schema. What a chat completion cannot carry is
//! refused (Google Search, code execution and URL context tools, cached contents, files by
//! URI that are not images); `safetySettings` are Gemini's own filters and do not travel.

use serde_json::{Map, Value, json};

use super::super::stream::{Context, Encoder};
use super::super::{Format, FormatError, openai, volume};
use crate::sse::write_event;
use crate::usage::Usage;

/// A Gemini request (its model named apart, from the URL) in the canonical form.
pub fn request_to_openai(request: &Map<String, Value>) -> Result<Map<String, Value>, FormatError> {
    if request.get("cachedContent").is_some_and(|v| !v.is_null()) {
        return Err(FormatError::unsupported(
            "'cachedContent' names a cache stored at Google; this model is not served by Gemini",
        ));
    }
    let mut out = Map::new();
    if let Some(model) = request.get("model") {
        out.insert("model".into(), model.clone());
    }
    let mut messages = Vec::new();
    if let Some(system) = either(request, "systemInstruction", "system_instruction")? {
        let text = match system {
            Value::String(text) => text.clone(),
            _ => texts(system.get("parts").unwrap_or(&Value::Null))?,
        };
        messages.push(json!({"role": "system", "content": text}));
    }
    let contents = request
        .get("contents")
        .and_then(Value::as_array)
        .ok_or_else(|| FormatError::invalid("'contents' must be an array"))?;
    // The calls of the latest model turn not answered yet: (id, name).
    let mut pending: Vec<(String, String)> = Vec::new();
    for (turn, content) in contents.iter().enumerate() {
        let parts = content
            .get("parts")
            .and_then(Value::as_array)
            .ok_or_else(|| FormatError::invalid("each content must have 'parts'"))?;
        match content.get("role").and_then(Value::as_str) {
            Some("model") => {
                pending.clear();
                messages.push(model_turn(turn, parts, &mut pending)?);
            }
            None | Some("user" | "function" | "tool") => {
                user_turn(parts, &mut pending, &mut messages)?;
            }
            Some(other) => {
                return Err(FormatError::invalid(format!(
                    "a content's role {other:?} is not user or model"
                )));
            }
        }
    }
    out.insert("messages".into(), Value::Array(messages));
    if let Some(stream) = request.get("stream") {
        out.insert("stream".into(), stream.clone());
    }
    if let Some(tools) = request.get("tools").and_then(Value::as_array) {
        let mut declared = Vec::new();
        for tool in tools {
            let Some(tool) = tool.as_object() else {
                return Err(FormatError::invalid("each tool must be an object"));
            };
            for (kind, value) in tool {
                if kind != "functionDeclarations" && kind != "function_declarations" {
                    return Err(FormatError::unsupported(format!(
                        "the {kind:?} tool is run by Gemini itself; this model takes function declarations only"
                    )));
                }
                for declaration in value.as_array().into_iter().flatten() {
                    declared.push(function_tool(declaration)?);
                }
            }
        }
        if !declared.is_empty() {
            out.insert("tools".into(), Value::Array(declared));
        }
    }
    let tool_config = either(request, "toolConfig", "tool_config")?.and_then(Value::as_object);
    let calling = match tool_config {
        Some(config) => either(config, "functionCallingConfig", "function_calling_config")?,
        None => None,
    };
    if let Some(mode) = calling.and_then(Value::as_object) {
        let allowed = either(mode, "allowedFunctionNames", "allowed_function_names")?
            .and_then(Value::as_array)
            .filter(|names| names.len() == 1);
        let choice = match (mode.get("mode").and_then(Value::as_str), allowed) {
            (Some("ANY"), Some(names)) => {
                json!({"type": "function", "function": {"name": names[0]}})
            }
            (Some("ANY" | "VALIDATED"), None) => json!("required"),
            (Some("NONE"), _) => json!("none"),
            _ => json!("auto"),
        };
        out.insert("tool_choice".into(), choice);
    }
    // Spelled either way (Google reads proto names too); both at once is refused by
    // `volume::output_ask` before any translation.
    let config_name = volume::container_name(Format::Gemini, request);
    if let Some(config) = config_name
        .and_then(|name| request.get(name))
        .and_then(Value::as_object)
    {
        generation_config(config, &mut out)?;
    }
    Ok(out)
}

/// Refuses what a Gemini request may not do through the platform's key, which every tenant
/// shares, when it goes to Gemini as sent: refer to state stored at Google (a cached content,
/// a file uploaded to the Files API — another tenant's, maybe, and outside the reservation),
/// use tools Gemini runs and bills apart from tokens (Google Search and Maps grounding per
/// prompt, URL context and file search reading input no one reserved for, code execution), or
/// have Gemini read media by URI other than an image (a video or document of unknown length;
/// send its data inline instead, where it counts in the request's size).
pub fn refuse_on_shared_key(request: &Map<String, Value>) -> Result<(), FormatError> {
    if either(request, "cachedContent", "cached_content")?.is_some() {
        return Err(FormatError::unsupported(
            "'cachedContent' names a cache stored under the platform's shared key; send the contents instead",
        ));
    }
    let tools = request.get("tools").and_then(Value::as_array);
    for tool in tools.into_iter().flatten().filter_map(Value::as_object) {
        if let Some(kind) = tool
            .keys()
            .find(|kind| *kind != "functionDeclarations" && *kind != "function_declarations")
        {
            return Err(FormatError::unsupported(format!(
                "the {kind:?} tool is run and billed by Gemini apart from tokens, which this gateway cannot meter on the platform's key; use function declarations, or your own key"
            )));
        }
    }
    let contents = request.get("contents").and_then(Value::as_array);
    let parts = contents
        .into_iter()
        .flatten()
        .filter_map(|content| content.get("parts").and_then(Value::as_array))
        .flatten();
    for part in parts {
        let Some(file) = part.get("fileData").or_else(|| part.get("file_data")) else {
            continue;
        };
        let field = |json_name, proto_name| {
            file.get(json_name)
                .or_else(|| file.get(proto_name))
                .and_then(Value::as_str)
                .unwrap_or("")
        };
        let (uri, media) = (field("fileUri", "file_uri"), field("mimeType", "mime_type"));
        if is_files_api(uri) {
            return Err(FormatError::unsupported(
                "files uploaded to Gemini's Files API are stored under the platform's shared key; send the file's data inline instead",
            ));
        }
        if !media.starts_with("image/") {
            return Err(FormatError::unsupported(format!(
                "{media:?} read by URI has a length this gateway cannot reserve for on the platform's key; send the data inline instead"
            )));
        }
    }
    Ok(())
}

/// Whether a file URI names a file uploaded to Gemini's Files API (`files/…`, or its URL).
fn is_files_api(uri: &str) -> bool {
    let path = uri
        .strip_prefix("https://generativelanguage.googleapis.com/")
        .map(|rest| rest.split_once('/').map_or(rest, |(_, path)| path))
        .unwrap_or(uri);
    path.starts_with("files/")
}

/// A member by its JSON name or its proto name (`maxOutputTokens` or `max_output_tokens`), as
/// Google reads either; naming both is refused, as the copies could differ.
fn either<'a>(
    map: &'a Map<String, Value>,
    json_name: &str,
    proto_name: &str,
) -> Result<Option<&'a Value>, FormatError> {
    let found = |name| map.get(name).filter(|v| !v.is_null());
    if json_name == proto_name {
        return Ok(found(json_name));
    }
    match (found(json_name), found(proto_name)) {
        (Some(_), Some(_)) => Err(FormatError::invalid(format!(
            "'{json_name}' and '{proto_name}' are the same field spelled twice; send one"
        ))),
        (value, None) | (None, value) => Ok(value),
    }
}

/// The text of a list of parts (system instructions hold text only).
fn texts(parts: &Value) -> Result<String, FormatError> {
    let mut text = String::new();
    for part in parts.as_array().into_iter().flatten() {
        match part.get("text").and_then(Value::as_str) {
            Some(piece) => text.push_str(piece),
            None => {
                return Err(FormatError::unsupported(
                    "a system instruction can only hold text for this model",
                ));
            }
        }
    }
    Ok(text)
}

/// A model turn: its text, and its function calls with their ids (the client's, or derived).
fn model_turn(
    turn: usize,
    parts: &[Value],
    pending: &mut Vec<(String, String)>,
) -> Result<Value, FormatError> {
    let mut text = String::new();
    let mut calls = Vec::new();
    for part in parts {
        if let Some(call) = part.get("functionCall") {
            let name = call
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| FormatError::invalid("a functionCall has no 'name'"))?;
            let id = call
                .get("id")
                .and_then(Value::as_str)
                .map_or_else(|| format!("call_{turn}_{}", calls.len()), str::to_owned);
            let arguments = call
                .get("args")
                .map_or_else(|| "{}".to_owned(), Value::to_string);
            calls.push(json!({"id": id, "type": "function",
                "function": {"name": name, "arguments": arguments}}));
            pending.push((id, name.to_owned()));
        } else if part.get("thought") == Some(&Value::Bool(true)) {
            // The model's own reasoning from an earlier turn: no other model reads it.
        } else if let Some(piece) = part.get("text").and_then(Value::as_str) {
            text.push_str(piece);
        }
    }
    let mut message = json!({"role": "assistant",
        "content": if text.is_empty() && !calls.is_empty() { Value::Null } else { Value::String(text) }});
    if !calls.is_empty() {
        message["tool_calls"] = Value::Array(calls);
    }
    Ok(message)
}

/// A user turn: function responses become tool messages (answering the pending calls), the
/// rest one user message.
fn user_turn(
    parts: &[Value],
    pending: &mut Vec<(String, String)>,
    messages: &mut Vec<Value>,
) -> Result<(), FormatError> {
    let mut content = Vec::new();
    for part in parts {
        if let Some(answer) = part.get("functionResponse") {
            let name = answer.get("name").and_then(Value::as_str).unwrap_or("");
            let by_id = answer.get("id").and_then(Value::as_str);
            let position = pending
                .iter()
                .position(|(id, called)| by_id.map_or(called == name, |by_id| by_id == id))
                .ok_or_else(|| {
                    FormatError::invalid(format!(
                        "the functionResponse for {name:?} answers no functionCall of the turn before it"
                    ))
                })?;
            let (id, _) = pending.remove(position);
            let result = answer.get("response").cloned().unwrap_or(Value::Null);
            messages
                .push(json!({"role": "tool", "tool_call_id": id, "content": result.to_string()}));
        } else if let Some(text) = part.get("text").and_then(Value::as_str) {
            content.push(json!({"type": "text", "text": text}));
        } else if let Some(inline) = part.get("inlineData").or_else(|| part.get("inline_data")) {
            let media = inline
                .get("mimeType")
                .or_else(|| inline.get("mime_type"))
                .and_then(Value::as_str)
                .unwrap_or("");
            let data = inline.get("data").and_then(Value::as_str).unwrap_or("");
            if !media.starts_with("image/") {
                return Err(FormatError::unsupported(format!(
                    "inline {media:?} data cannot be sent to this model; images only"
                )));
            }
            let url = format!("data:{media};base64,{data}");
            content.push(json!({"type": "image_url", "image_url": {"url": url}}));
        } else if let Some(file) = part.get("fileData").or_else(|| part.get("file_data")) {
            let uri = file
                .get("fileUri")
                .or_else(|| file.get("file_uri"))
                .and_then(Value::as_str)
                .unwrap_or("");
            let media = file
                .get("mimeType")
                .or_else(|| file.get("mime_type"))
                .and_then(Value::as_str)
                .unwrap_or("");
            if !media.starts_with("image/") || !uri.starts_with("https://") {
                return Err(FormatError::unsupported(
                    "files by URI are read by Gemini itself; this model takes images by https URL only",
                ));
            }
            content.push(json!({"type": "image_url", "image_url": {"url": uri}}));
        } else {
            return Err(FormatError::unsupported(
                "this part cannot be sent to a model not served by Gemini",
            ));
        }
    }
    if content.is_empty() {
        return Ok(());
    }
    let only_text = content.iter().all(|p| p["type"] == "text");
    let content = if only_text {
        Value::String(
            content
                .iter()
                .filter_map(|p| p["text"].as_str())
                .collect::<Vec<_>>()
                .join("\n"),
        )
    } else {
        Value::Array(content)
    };
    messages.push(json!({"role": "user", "content": content}));
    Ok(())
}

/// A function declaration as a canonical function tool.
fn function_tool(declaration: &Value) -> Result<Value, FormatError> {
    let name = declaration
        .get("name")
        .ok_or_else(|| FormatError::invalid("a function declaration has no 'name'"))?;
    let parameters = match declaration
        .get("parametersJsonSchema")
        .or_else(|| declaration.get("parameters_json_schema"))
    {
        Some(schema) => schema.clone(),
        None => declaration
            .get("parameters")
            .map_or_else(|| json!({"type": "object", "properties": {}}), json_schema),
    };
    let mut function = json!({"name": name, "parameters": parameters});
    if let Some(description) = declaration.get("description") {
        function["description"] = description.clone();
    }
    Ok(json!({"type": "function", "function": function}))
}

/// Gemini's OpenAPI-style schema as JSON Schema: type names lower-cased, `nullable` as a
/// `"null"` type, Gemini's ordering hint left out, and the snake_case spellings Google's Python
/// SDK sends (`any_of`, `max_items`…) in JSON Schema's own.
fn json_schema(schema: &Value) -> Value {
    match schema {
        Value::Object(object) => {
            let mut out = Map::new();
            let nullable = object.get("nullable") == Some(&Value::Bool(true));
            for (key, value) in object {
                let key = &match key.as_str() {
                    "any_of" => "anyOf".to_owned(),
                    "max_items" => "maxItems".to_owned(),
                    "min_items" => "minItems".to_owned(),
                    "max_length" => "maxLength".to_owned(),
                    "min_length" => "minLength".to_owned(),
                    "max_properties" => "maxProperties".to_owned(),
                    "min_properties" => "minProperties".to_owned(),
                    other => other.to_owned(),
                };
                match key.as_str() {
                    "nullable" | "propertyOrdering" | "property_ordering" => {}
                    "type" => {
                        let name = value.as_str().map(str::to_ascii_lowercase);
                        let kind = match name {
                            Some(name) if nullable => json!([name, "null"]),
                            Some(name) => Value::String(name),
                            None => value.clone(),
                        };
                        out.insert(key.clone(), kind);
                    }
                    "properties" => {
                        let properties = value
                            .as_object()
                            .map(|p| {
                                p.iter()
                                    .map(|(name, schema)| (name.clone(), json_schema(schema)))
                                    .collect()
                            })
                            .unwrap_or_default();
                        out.insert(key.clone(), Value::Object(properties));
                    }
                    "items" => {
                        out.insert(key.clone(), json_schema(value));
                    }
                    "anyOf" => {
                        let options = value.as_array().into_iter().flatten().map(json_schema);
                        out.insert(key.clone(), Value::Array(options.collect()));
                    }
                    _ => {
                        out.insert(key.clone(), value.clone());
                    }
                }
            }
            Value::Object(out)
        }
        other => other.clone(),
    }
}

/// `generationConfig` into the canonical fields.
fn generation_config(
    config: &Map<String, Value>,
    out: &mut Map<String, Value>,
) -> Result<(), FormatError> {
    for (from, proto_name, to) in [
        ("temperature", "temperature", "temperature"),
        ("topP", "top_p", "top_p"),
        ("topK", "top_k", "top_k"),
        ("seed", "seed", "seed"),
        ("presencePenalty", "presence_penalty", "presence_penalty"),
        ("frequencyPenalty", "frequency_penalty", "frequency_penalty"),
        ("maxOutputTokens", "max_output_tokens", "max_tokens"),
        ("stopSequences", "stop_sequences", "stop"),
        ("candidateCount", "candidate_count", "n"),
    ] {
        if let Some(value) = either(config, from, proto_name)? {
            // Google's Python SDK writes integers as floats (`"topK": 20.0`); the other formats
            // take whole numbers there.
            let value = match value.as_f64() {
                Some(n)
                    if from != "temperature" && from != "topP" && n.fract() == 0.0 && n >= 0.0 =>
                {
                    Value::from(n as u64)
                }
                _ => value.clone(),
            };
            out.insert(to.into(), value);
        }
    }
    let json_mime = either(config, "responseMimeType", "response_mime_type")?
        .and_then(Value::as_str)
        == Some("application/json");
    let schema = match (
        either(config, "responseJsonSchema", "response_json_schema")?,
        either(config, "responseSchema", "response_schema")?,
    ) {
        (Some(schema), _) => Some(schema.clone()),
        (None, Some(schema)) => Some(json_schema(schema)),
        (None, None) => None,
    };
    match (json_mime, schema) {
        (true, Some(schema)) => {
            out.insert(
                "response_format".into(),
                json!({"type": "json_schema", "json_schema": {"name": "response", "schema": schema}}),
            );
        }
        (true, None) => {
            out.insert("response_format".into(), json!({"type": "json_object"}));
        }
        (false, Some(_)) => {
            return Err(FormatError::invalid(
                "a response schema needs 'responseMimeType': 'application/json'",
            ));
        }
        (false, None) => {}
    }
    Ok(())
}

/// Gemini's `finishReason` for a canonical `finish_reason`.
fn finish_reason(finish: Option<&str>) -> Option<&'static str> {
    Some(match finish? {
        "length" => "MAX_TOKENS",
        "content_filter" => "SAFETY",
        _ => "STOP",
    })
}

/// The `usageMetadata` of a usage.
fn usage_metadata(usage: &Usage) -> Value {
    let mut metadata = json!({"promptTokenCount": usage.input_tokens,
        "candidatesTokenCount": usage.output_tokens, "totalTokenCount": usage.total_tokens()});
    if usage.cached_input_tokens > 0 {
        metadata["cachedContentTokenCount"] = json!(usage.cached_input_tokens);
    }
    metadata
}

/// A function call part, its arguments parsed back into an object.
fn call_part(id: &Value, name: &Value, arguments: &str) -> Value {
    let args = crate::formats::strict::value(arguments.as_bytes())
        .ok()
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({}));
    json!({"functionCall": {"id": id, "name": name, "args": args}})
}

/// A canonical chat completion as a `GenerateContentResponse`.
pub fn response_from_openai(completion: &Value) -> Result<Value, FormatError> {
    let choice = completion
        .pointer("/choices/0")
        .ok_or_else(|| FormatError::upstream("the answer has no choices"))?;
    let message = choice.get("message").unwrap_or(&Value::Null);
    let mut parts = Vec::new();
    if let Some(reasoning) = message
        .get("reasoning_content")
        .and_then(Value::as_str)
        .filter(|r| !r.is_empty())
    {
        parts.push(json!({"text": reasoning, "thought": true}));
    }
    if let Some(text) = message
        .get("content")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
    {
        parts.push(json!({"text": text}));
    }
    for call in crate::formats::openai::tool_calls(message) {
        let arguments = call
            .pointer("/function/arguments")
            .and_then(Value::as_str)
            .unwrap_or("");
        let name = call.pointer("/function/name").unwrap_or(&Value::Null);
        parts.push(call_part(
            call.get("id").unwrap_or(&Value::Null),
            name,
            arguments,
        ));
    }
    let usage = completion
        .get("usage")
        .and_then(openai::usage_from_value)
        .unwrap_or_default();
    let finish = finish_reason(choice.get("finish_reason").and_then(Value::as_str));
    Ok(json!({
        "candidates": [{"content": {"role": "model", "parts": parts},
            "finishReason": finish.unwrap_or("STOP"), "index": 0}],
        "usageMetadata": usage_metadata(&usage),
        "modelVersion": completion.get("model").cloned().unwrap_or(Value::Null),
        "responseId": completion.get("id").cloned().unwrap_or(Value::Null),
    }))
}

/// Google's status name for an HTTP status.
fn status_name(status: u16) -> &'static str {
    match status {
        400 | 413 | 422 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        405 | 501 => "UNIMPLEMENTED",
        408 | 504 => "DEADLINE_EXCEEDED",
        402 | 429 => "RESOURCE_EXHAUSTED",
        409 => "ABORTED",
        499 => "CANCELLED",
        502 | 503 => "UNAVAILABLE",
        _ => "INTERNAL",
    }
}

/// An error body in Google's shape.
pub fn error_body(status: u16, message: &str) -> String {
    json!({"error": {"code": status, "message": message, "status": status_name(status)}})
        .to_string()
}

/// A failure inside a Gemini stream (Gemini writes its error object as a `data:` chunk).
pub fn stream_error(message: &str) -> String {
    error_body(500, message)
}

/// A function call being streamed (Gemini sends each whole, so they are held to the end).
#[derive(Debug)]
struct HeldCall {
    index: u64,
    id: Value,
    name: Value,
    arguments: String,
}

/// Canonical chunks written as `streamGenerateContent?alt=sse` chunks: text as it comes,
/// function calls whole in the last chunk, with the finish reason and usage.
#[derive(Debug)]
pub struct ChunkEncoder {
    model: String,
    id: Value,
    calls: Vec<HeldCall>,
    finish: Option<String>,
    usage: Option<Usage>,
}

impl ChunkEncoder {
    /// An encoder for one stream.
    pub fn new(context: &Context) -> Self {
        Self {
            model: context.model.clone(),
            id: Value::Null,
            calls: Vec::new(),
            finish: None,
            usage: None,
        }
    }

    fn write(&self, parts: Vec<Value>, last: bool, out: &mut Vec<u8>) {
        let mut candidate = json!({"content": {"role": "model", "parts": parts}, "index": 0});
        let mut chunk = json!({"candidates": [candidate.clone()],
            "modelVersion": self.model, "responseId": self.id});
        if last {
            candidate["finishReason"] =
                json!(finish_reason(self.finish.as_deref()).unwrap_or("STOP"));
            chunk["candidates"] = json!([candidate]);
            chunk["usageMetadata"] = usage_metadata(&self.usage.unwrap_or_default());
        }
        write_event(out, None, &chunk.to_string());
    }
}

impl Encoder for ChunkEncoder {
    fn chunk(&mut self, chunk: &Value, out: &mut Vec<u8>) {
        if self.id.is_null()
            && let Some(id) = chunk.get("id").filter(|v| !v.is_null())
        {
            self.id = id.clone();
        }
        if let Some(usage) = chunk.get("usage").and_then(openai::usage_from_value) {
            self.usage = Some(usage);
        }
        let Some(choice) = openai::choice_delta(chunk) else {
            return;
        };
        let mut parts = Vec::new();
        if let Some(text) = choice.reasoning.filter(|t| !t.is_empty()) {
            parts.push(json!({"text": text, "thought": true}));
        }
        if let Some(text) = choice.content.filter(|t| !t.is_empty()) {
            parts.push(json!({"text": text}));
        }
        if !parts.is_empty() {
            self.write(parts, false, out);
        }
        for call in openai::tool_calls(choice.delta) {
            let index = call.get("index").and_then(Value::as_u64).unwrap_or(0);
            let arguments = call
                .pointer("/function/arguments")
                .and_then(Value::as_str)
                .unwrap_or("");
            match self.calls.iter_mut().find(|c| c.index == index) {
                Some(held) => held.arguments.push_str(arguments),
                None => self.calls.push(HeldCall {
                    index,
                    id: call.get("id").cloned().unwrap_or(Value::Null),
                    name: call
                        .pointer("/function/name")
                        .cloned()
                        .unwrap_or(Value::Null),
                    arguments: arguments.to_owned(),
                }),
            }
        }
        if let Some(finish) = choice.finish {
            self.finish = Some(finish.to_owned());
        }
    }

    fn done(&mut self, out: &mut Vec<u8>) {
        let parts: Vec<Value> = self
            .calls
            .iter()
            .map(|call| call_part(&call.id, &call.name, &call.arguments))
            .collect();
        let parts = if parts.is_empty() {
            vec![json!({"text": ""})]
        } else {
            parts
        };
        self.write(parts, true, out);
    }

    fn error(&mut self, message: &str, out: &mut Vec<u8>) {
        write_event(out, None, &stream_error(message));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap()
    }

    #[test]
    fn the_platforms_key_refuses_stored_state_billed_tools_and_media_of_unknown_length() {
        let refused = |extra: Value| {
            let mut request =
                object(json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}));
            request.extend(object(extra));
            refuse_on_shared_key(&request).err()
        };
        assert_eq!(refused(json!({})), None);
        assert_eq!(
            refused(json!({"tools": [{"functionDeclarations": [{"name": "w"}]}]})),
            None
        );
        for extra in [
            json!({"cachedContent": "cachedContents/abc"}),
            json!({"cached_content": "cachedContents/abc"}),
            json!({"tools": [{"googleSearch": {}}]}),
            json!({"tools": [{"function_declarations": [], "url_context": {}}]}),
            json!({"contents": [{"role": "user", "parts": [{"fileData": {"fileUri": "https://generativelanguage.googleapis.com/v1beta/files/abc", "mimeType": "image/png"}}]}]}),
            json!({"contents": [{"role": "user", "parts": [{"file_data": {"file_uri": "files/abc", "mime_type": "image/png"}}]}]}),
            json!({"contents": [{"role": "user", "parts": [{"fileData": {"fileUri": "https://www.youtube.com/watch?v=x", "mimeType": "video/mp4"}}]}]}),
        ] {
            assert!(refused(extra.clone()).is_some(), "{extra}");
        }
        let image = json!({"contents": [{"role": "user", "parts": [{"fileData": {"fileUri": "https://example.com/cat.png", "mimeType": "image/png"}}]}]});
        assert_eq!(refused(image), None);
    }

    #[test]
    fn fields_by_their_proto_names_are_read_and_a_field_named_both_ways_is_refused() {
        let request = object(
            json!({"system_instruction": {"parts": [{"text": "be brief"}]},
            "contents": [{"role": "user", "parts": [{"text": "hi"}]}],
            "tools": [{"function_declarations": [{"name": "w", "parameters": {"type": "OBJECT"}}]}],
            "tool_config": {"function_calling_config": {"mode": "ANY", "allowed_function_names": ["w"]}},
            "generation_config": {"max_output_tokens": 50, "candidate_count": 2}}),
        );
        let out = request_to_openai(&request).unwrap();
        assert_eq!(
            out["messages"][0],
            json!({"role": "system", "content": "be brief"})
        );
        assert_eq!(
            out["tool_choice"],
            json!({"type": "function", "function": {"name": "w"}})
        );
        assert_eq!((&out["max_tokens"], &out["n"]), (&json!(50), &json!(2)));
        let twice = object(json!({"systemInstruction": {"parts": [{"text": "a"}]},
            "system_instruction": {"parts": [{"text": "b"}]}, "contents": []}));
        assert!(request_to_openai(&twice).is_err());
    }

    #[test]
    fn contents_become_a_conversation_with_calls_and_their_answers_paired() {
        let request = object(json!({"model": "m",
            "systemInstruction": {"parts": [{"text": "be brief"}]},
            "contents": [
                {"role": "user", "parts": [{"text": "weather?"}]},
                {"role": "model", "parts": [
                    {"functionCall": {"name": "w", "args": {"city": "Paris"}}},
                    {"functionCall": {"name": "w", "args": {"city": "Berlin"}}}]},
                {"role": "user", "parts": [
                    {"functionResponse": {"name": "w", "response": {"sky": "sunny"}}},
                    {"functionResponse": {"name": "w", "response": {"sky": "rain"}}}]}],
            "tools": [{"functionDeclarations": [{"name": "w", "parameters": {"type": "OBJECT",
                "properties": {"city": {"type": "STRING", "nullable": true}}, "required": ["city"]}}]}],
            "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["w"]}},
            "generationConfig": {"maxOutputTokens": 50, "temperature": 0.5, "stopSequences": ["x"]}}));
        let out = request_to_openai(&request).unwrap();
        assert_eq!(
            Value::Object(out),
            json!({"model": "m", "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": "weather?"},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_1_0", "type": "function", "function": {"name": "w", "arguments": "{\"city\":\"Paris\"}"}},
                    {"id": "call_1_1", "type": "function", "function": {"name": "w", "arguments": "{\"city\":\"Berlin\"}"}}]},
                {"role": "tool", "tool_call_id": "call_1_0", "content": "{\"sky\":\"sunny\"}"},
                {"role": "tool", "tool_call_id": "call_1_1", "content": "{\"sky\":\"rain\"}"}],
                "tools": [{"type": "function", "function": {"name": "w", "parameters": {"type": "object",
                    "properties": {"city": {"type": ["string", "null"]}}, "required": ["city"]}}}],
                "tool_choice": {"type": "function", "function": {"name": "w"}},
                "temperature": 0.5, "max_tokens": 50, "stop": ["x"]})
        );
    }

    #[test]
    fn what_only_gemini_runs_is_refused_by_name() {
        let search = object(
            json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}],
            "tools": [{"googleSearch": {}}]}),
        );
        let error = request_to_openai(&search).unwrap_err();
        assert!(matches!(&error, FormatError::Unsupported(m) if m.contains("googleSearch")));
        let orphan = object(json!({"contents": [{"role": "user", "parts": [
            {"functionResponse": {"name": "w", "response": {}}}]}]}));
        assert!(matches!(
            request_to_openai(&orphan),
            Err(FormatError::Invalid(_))
        ));
    }

    #[test]
    fn a_completion_becomes_a_generate_content_response() {
        let completion = json!({"id": "chatcmpl-1", "model": "m", "choices": [{"index": 0,
            "message": {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "w", "arguments": "{\"city\":\"Paris\"}"}}]},
            "finish_reason": "tool_calls"}],
            "usage": {"prompt_tokens": 9, "completion_tokens": 4}});
        let response = response_from_openai(&completion).unwrap();
        assert_eq!(
            response["candidates"][0]["content"]["parts"][0],
            json!({"functionCall": {"id": "call_1", "name": "w", "args": {"city": "Paris"}}})
        );
        assert_eq!(response["candidates"][0]["finishReason"], "STOP");
        assert_eq!(response["usageMetadata"]["totalTokenCount"], 13);
        assert_eq!(
            error_body(429, "slow down"),
            json!({"error": {"code": 429, "message": "slow down", "status": "RESOURCE_EXHAUSTED"}})
                .to_string()
        );
    }

    #[test]
    fn a_stream_sends_text_as_it_comes_and_calls_whole_at_the_end() {
        let context = Context {
            model: "m".into(),
            created: 1,
            client_wants_usage: false,
            items: None,
        };
        let mut encoder = ChunkEncoder::new(&context);
        let mut out = Vec::new();
        for chunk in [
            json!({"id": "c", "choices": [{"index": 0, "delta": {"content": "hi"}}]}),
            json!({"id": "c", "choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "k",
                "function": {"name": "w", "arguments": "{\"a\""}}]}}]}),
            json!({"id": "c", "choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0,
                "function": {"arguments": ":1}"}}]}, "finish_reason": "tool_calls"}]}),
            json!({"id": "c", "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2}}),
        ] {
            encoder.chunk(&chunk, &mut out);
        }
        encoder.done(&mut out);
        let chunks: Vec<Value> = String::from_utf8(out)
            .unwrap()
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .map(|d| serde_json::from_str(d).unwrap())
            .collect();
        assert_eq!(chunks.len(), 2);
        assert_eq!(
            chunks[0]["candidates"][0]["content"]["parts"][0]["text"],
            "hi"
        );
        assert_eq!(
            chunks[1]["candidates"][0]["content"]["parts"][0]["functionCall"]["args"],
            json!({"a": 1})
        );
        assert_eq!(chunks[1]["usageMetadata"]["candidatesTokenCount"], 2);
    }
}
