//! The Google Gemini `generateContent` format: canonical requests written as `contents`/`parts`
//! with `systemInstruction`, `functionDeclarations` and `generationConfig`; responses and
//! `streamGenerateContent?alt=sse` chunks read back, with `usageMetadata` and `finishReason`.
//!
//! Gemini gives function calls no ids: ids are derived from the response id, the call's
//! position and its name ([`super::derived_call_id`]), and tool results are sent back by the
//! function name the conversation recorded for that id.

mod front;

pub use front::{
    ChunkEncoder, error_body, refuse_on_shared_key, request_to_openai, response_from_openai,
    stream_error,
};
use serde_json::{Map, Value, json};

use super::stream::{Context, Decoder, UpstreamError};
use super::{
    FormatError, data_url, derived_call_id, function_tools, max_tokens, messages, openai,
    parse_arguments, refuse_openai_only, stop_list,
};
use crate::sse::Event;
use crate::usage::Usage;

/// Reads a Gemini `usageMetadata`. `promptTokenCount` already includes cached tokens; thinking
/// tokens are output the provider bills.
pub fn usage_from_value(usage: &Value) -> Option<Usage> {
    let usage = usage.as_object()?;
    let number = |key: &str| usage.get(key).and_then(Value::as_u64).unwrap_or(0);
    Some(Usage {
        input_tokens: number("promptTokenCount") + number("toolUsePromptTokenCount"),
        output_tokens: number("candidatesTokenCount") + number("thoughtsTokenCount"),
        cached_input_tokens: number("cachedContentTokenCount"),
        cache_creation_input_tokens: 0,
    })
}

/// OpenAI request → Gemini request body (the model goes in the URL, not the body).
pub fn request_from_openai(
    request: &Map<String, Value>,
) -> Result<Map<String, Value>, FormatError> {
    refuse_openai_only(request, "Gemini")?;
    let mut system: Vec<Value> = Vec::new();
    let mut contents: Vec<(String, Vec<Value>)> = Vec::new();
    // Tool call id → function name, from the assistant turns seen so far.
    let mut names: Vec<(String, String)> = Vec::new();
    for message in messages(request)? {
        let role = message.get("role").and_then(Value::as_str).unwrap_or("");
        let content = message.get("content").unwrap_or(&Value::Null);
        let (role, parts) = match role {
            "system" | "developer" => {
                let text = super::text_only(content, "a system message")?;
                system.push(json!({"text": text}));
                continue;
            }
            "user" => ("user", user_parts(content)?),
            "assistant" => ("model", model_parts(message, &mut names)?),
            "tool" => {
                let id = message
                    .get("tool_call_id")
                    .and_then(Value::as_str)
                    .ok_or_else(|| FormatError::invalid("a tool message has no 'tool_call_id'"))?;
                let name = names
                    .iter()
                    .find(|(known, _)| known == id)
                    .map(|(_, name)| name.clone())
                    .ok_or_else(|| {
                        FormatError::invalid(format!(
                            "tool result {id:?} answers no tool call of an earlier assistant message"
                        ))
                    })?;
                let text = super::text_only(content, "a tool result")?;
                // Gemini wants an object: a JSON object result goes as it is, anything else
                // is wrapped.
                let response = match serde_json::from_str::<Value>(&text) {
                    Ok(Value::Object(object)) => Value::Object(object),
                    _ => json!({"content": text}),
                };
                (
                    "user",
                    vec![json!({"functionResponse": {"name": name, "response": response}})],
                )
            }
            other => {
                return Err(FormatError::invalid(format!(
                    "unknown message role {other:?}"
                )));
            }
        };
        match contents.last_mut() {
            Some((last, existing)) if last == role => existing.extend(parts),
            _ => contents.push((role.to_owned(), parts)),
        }
    }
    let mut out = Map::new();
    out.insert(
        "contents".into(),
        Value::Array(
            contents
                .into_iter()
                .map(|(role, parts)| json!({"role": role, "parts": parts}))
                .collect(),
        ),
    );
    if !system.is_empty() {
        out.insert("systemInstruction".into(), json!({"parts": system}));
    }
    let tools = function_tools(request)?;
    if !tools.is_empty() {
        let declarations: Vec<Value> = tools
            .into_iter()
            .map(|(name, description, parameters)| {
                // `parametersJsonSchema` takes full JSON Schema (what OpenAI clients send,
                // `additionalProperties` included), unlike the OpenAPI subset of `parameters`.
                let mut declaration = json!({"name": name, "parametersJsonSchema": parameters});
                if let Some(description) = description {
                    declaration["description"] = description.clone();
                }
                declaration
            })
            .collect();
        out.insert(
            "tools".into(),
            json!([{"functionDeclarations": declarations}]),
        );
    }
    match request.get("tool_choice") {
        None | Some(Value::Null) => {}
        Some(Value::String(mode)) => {
            let mode = match mode.as_str() {
                "auto" => "AUTO",
                "none" => "NONE",
                "required" => "ANY",
                other => {
                    return Err(FormatError::invalid(format!(
                        "unknown tool_choice {other:?}"
                    )));
                }
            };
            out.insert(
                "toolConfig".into(),
                json!({"functionCallingConfig": {"mode": mode}}),
            );
        }
        Some(choice) => {
            let name = choice
                .pointer("/function/name")
                .ok_or_else(|| FormatError::invalid("tool_choice names no function"))?;
            out.insert(
                "toolConfig".into(),
                json!({"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [name]}}),
            );
        }
    }
    let mut config = Map::new();
    let sampling = [
        ("temperature", "temperature"),
        ("top_p", "topP"),
        ("top_k", "topK"),
        ("seed", "seed"),
        ("presence_penalty", "presencePenalty"),
        ("frequency_penalty", "frequencyPenalty"),
    ];
    super::copy_renamed(request, &mut config, &sampling);
    if let Some(max) = max_tokens(request) {
        config.insert("maxOutputTokens".into(), json!(max));
    }
    if let Some(stops) = stop_list(request)? {
        config.insert("stopSequences".into(), Value::Array(stops));
    }
    if let Some(format) = request.get("response_format").filter(|v| !v.is_null()) {
        match format.get("type").and_then(Value::as_str) {
            Some("text") => {}
            Some("json_object") => {
                config.insert("responseMimeType".into(), json!("application/json"));
            }
            Some("json_schema") => {
                config.insert("responseMimeType".into(), json!("application/json"));
                if let Some(schema) = format.pointer("/json_schema/schema") {
                    config.insert("responseJsonSchema".into(), schema.clone());
                }
            }
            _ => return Err(FormatError::invalid("unknown response_format type")),
        }
    }
    if !config.is_empty() {
        out.insert("generationConfig".into(), Value::Object(config));
    }
    Ok(out)
}

fn user_parts(content: &Value) -> Result<Vec<Value>, FormatError> {
    match content {
        Value::String(text) => Ok(vec![json!({"text": text})]),
        Value::Array(parts) => parts
            .iter()
            .map(|part| match part.get("type").and_then(Value::as_str) {
                Some("text") => Ok(json!({"text": part.get("text").cloned().unwrap_or(Value::Null)})),
                Some("image_url") => {
                    let url = part
                        .pointer("/image_url/url")
                        .and_then(Value::as_str)
                        .ok_or_else(|| FormatError::invalid("an image_url part has no url"))?;
                    let data = data_url(url).ok_or_else(|| {
                        FormatError::unsupported(
                            "a Gemini model takes images inline only: send them as base64 data: URLs",
                        )
                    })?;
                    Ok(json!({"inlineData": {"mimeType": data.media_type, "data": data.data}}))
                }
                other => Err(FormatError::unsupported(format!(
                    "{:?} content parts cannot be sent to a Gemini model",
                    other.unwrap_or("untyped")
                ))),
            })
            .collect(),
        _ => Err(FormatError::invalid(
            "user message content must be a string or an array",
        )),
    }
}

fn model_parts(
    message: &Value,
    names: &mut Vec<(String, String)>,
) -> Result<Vec<Value>, FormatError> {
    let mut parts = Vec::new();
    let text = super::text_only(
        message.get("content").unwrap_or(&Value::Null),
        "an assistant message",
    )?;
    if !text.is_empty() {
        parts.push(json!({"text": text}));
    }
    for call in crate::formats::openai::tool_calls(message) {
        let name = call
            .pointer("/function/name")
            .and_then(Value::as_str)
            .ok_or_else(|| FormatError::invalid("a tool call has no function name"))?;
        if let Some(id) = call.get("id").and_then(Value::as_str) {
            names.push((id.to_owned(), name.to_owned()));
        }
        let arguments = call
            .pointer("/function/arguments")
            .and_then(Value::as_str)
            .unwrap_or("");
        parts.push(json!({"functionCall": {"name": name, "args": parse_arguments(arguments)?}}));
    }
    Ok(parts)
}

fn finish_reason(reason: Option<&str>, called: bool) -> Option<&'static str> {
    Some(match reason? {
        "STOP" if called => "tool_calls",
        "STOP" | "FINISH_REASON_UNSPECIFIED" => "stop",
        "MAX_TOKENS" => "length",
        "MALFORMED_FUNCTION_CALL" | "UNEXPECTED_TOOL_CALL" => "stop",
        // SAFETY, RECITATION, BLOCKLIST, PROHIBITED_CONTENT, SPII, IMAGE_SAFETY, OTHER, ...
        _ => "content_filter",
    })
}

fn candidate_parts(response: &Value) -> &[Value] {
    response
        .pointer("/candidates/0/content/parts")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn error_of(response: &Value) -> Option<String> {
    let error = response.get("error")?;
    Some(
        error
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("the provider reported an error")
            .to_owned(),
    )
}

/// Gemini response → OpenAI response. `fallback_id` names it when Gemini gave no
/// `responseId`; `model` when it gave no `modelVersion`.
pub fn response_to_openai(
    response: &Value,
    model: &str,
    created: u64,
) -> Result<Value, FormatError> {
    if let Some(message) = error_of(response) {
        return Err(FormatError::upstream(message));
    }
    let id = response_id(response, created);
    let mut text = String::new();
    let mut reasoning = String::new();
    let mut calls = Vec::new();
    for part in candidate_parts(response) {
        if let Some(call) = part.get("functionCall") {
            let name = call.get("name").and_then(Value::as_str).unwrap_or("");
            calls.push(json!({
                "id": call.get("id").and_then(Value::as_str).map(str::to_owned)
                    .unwrap_or_else(|| derived_call_id(&id, calls.len(), name)),
                "type": "function",
                "function": {"name": name, "arguments": call.get("args").map(Value::to_string).unwrap_or_else(|| "{}".to_owned())},
            }));
        } else if let Some(part_text) = part.get("text").and_then(Value::as_str) {
            if part.get("thought") == Some(&Value::Bool(true)) {
                reasoning.push_str(part_text);
            } else {
                text.push_str(part_text);
            }
        }
    }
    let reason = response
        .pointer("/candidates/0/finishReason")
        .and_then(Value::as_str)
        .or_else(|| {
            response
                .pointer("/promptFeedback/blockReason")
                .map(|_| "SAFETY")
        });
    let mut message = json!({"role": "assistant",
        "content": if text.is_empty() && !calls.is_empty() { Value::Null } else { Value::String(text) }});
    if !calls.is_empty() {
        message["tool_calls"] = Value::Array(calls.clone());
    }
    if !reasoning.is_empty() {
        message["reasoning_content"] = Value::String(reasoning);
    }
    let usage = response
        .get("usageMetadata")
        .and_then(usage_from_value)
        .unwrap_or_default();
    let model = response
        .get("modelVersion")
        .and_then(Value::as_str)
        .unwrap_or(model);
    let finish = finish_reason(reason, !calls.is_empty()).unwrap_or("stop");
    Ok(super::openai::completion(
        Value::from(id),
        model.into(),
        created,
        message,
        finish.into(),
        &usage,
    ))
}

fn response_id(response: &Value, created: u64) -> String {
    response
        .get("responseId")
        .and_then(Value::as_str)
        .map_or_else(|| format!("gemini-{created}"), str::to_owned)
}

/// Gemini stream chunks (each a whole `GenerateContentResponse`) read into canonical chunks.
#[derive(Debug)]
pub struct ChunkDecoder {
    id: Option<String>,
    model: String,
    created: u64,
    calls: usize,
    usage: Option<Usage>,
    finished: bool,
    started: bool,
}

impl ChunkDecoder {
    /// A decoder for one stream.
    pub fn new(context: &Context) -> Self {
        Self {
            id: None,
            model: context.model.clone(),
            created: context.created,
            calls: 0,
            usage: None,
            finished: false,
            started: false,
        }
    }
}

impl Decoder for ChunkDecoder {
    fn event(&mut self, event: &Event, out: &mut Vec<Value>) -> Result<bool, UpstreamError> {
        let response: Value = serde_json::from_str(&event.data)
            .map_err(|_| UpstreamError("the provider sent a chunk that is not JSON".into()))?;
        if let Some(message) = error_of(&response) {
            return Err(UpstreamError(message));
        }
        let id = self
            .id
            .get_or_insert_with(|| response_id(&response, self.created))
            .clone();
        if let Some(usage) = response.get("usageMetadata").and_then(usage_from_value) {
            // Every chunk carries the running totals: the latest wins.
            self.usage = Some(usage);
        }
        let chunk = |delta: Value, finish: Option<&str>| {
            openai::chunk(&id, &self.model, self.created, delta, finish)
        };
        if !self.started {
            self.started = true;
            out.push(chunk(json!({"role": "assistant", "content": ""}), None));
        }
        for part in candidate_parts(&response) {
            if let Some(call) = part.get("functionCall") {
                let name = call.get("name").and_then(Value::as_str).unwrap_or("");
                let call_id = call
                    .get("id")
                    .and_then(Value::as_str)
                    .map_or_else(|| derived_call_id(&id, self.calls, name), str::to_owned);
                out.push(chunk(
                    json!({"tool_calls": [{"index": self.calls, "id": call_id, "type": "function",
                        "function": {"name": name, "arguments": call.get("args").map(Value::to_string).unwrap_or_else(|| "{}".to_owned())}}]}),
                    None,
                ));
                self.calls += 1;
            } else if let Some(text) = part.get("text").and_then(Value::as_str) {
                let key = if part.get("thought") == Some(&Value::Bool(true)) {
                    "reasoning_content"
                } else {
                    "content"
                };
                out.push(chunk(json!({ key: text }), None));
            }
        }
        let reason = response
            .pointer("/candidates/0/finishReason")
            .and_then(Value::as_str)
            .or_else(|| {
                response
                    .pointer("/promptFeedback/blockReason")
                    .map(|_| "SAFETY")
            });
        if let Some(finish) = finish_reason(reason, self.calls > 0) {
            self.finished = true;
            out.push(chunk(json!({}), Some(finish)));
        }
        Ok(false)
    }

    fn end(&mut self, out: &mut Vec<Value>) -> bool {
        if self.finished {
            let id = self.id.clone().unwrap_or_default();
            out.push(openai::usage_chunk(
                &id,
                &self.model,
                self.created,
                &self.usage.unwrap_or_default(),
            ));
        }
        self.finished
    }

    fn usage(&self) -> Option<Usage> {
        self.usage
    }
}

// ---------------------------------------------------------------------------------------------
// The dialect

/// A URL of one of a model's methods (`generateContent`, `countTokens`…) under a provider's
/// `base` URL and its type's `path` (which holds `{model}`): the model id percent-encoded into
/// the path (ids such as `tunedModels/x` hold a slash).
pub fn method_url(base: &str, path: &str, model: &str, method: &str) -> String {
    let model = super::path_segment(model);
    format!("{base}{}:{method}", path.replace("{model}", &model))
}

/// Google Gemini's generateContent.
pub struct GenerateContent;

impl super::dialect::Dialect for GenerateContent {
    fn model_object(&self, id: &str, _owner: &str) -> Value {
        json!({
            "name": format!("models/{id}"), "baseModelId": id, "displayName": id,
            "supportedGenerationMethods": ["generateContent", "streamGenerateContent", "countTokens"],
        })
    }

    /// Every model on one page: Google's pager stops where no `nextPageToken` is given.
    fn model_list(&self, models: &[(&str, &str)], _page: &super::models::Page<'_>) -> Value {
        let models: Vec<Value> = models
            .iter()
            .map(|(id, owner)| self.model_object(id, owner))
            .collect();
        json!({ "models": models })
    }

    fn refuse_on_shared_key(
        &self,
        request: &Map<String, Value>,
        _edit: &super::dialect::PassThrough<'_>,
    ) -> Result<(), FormatError> {
        refuse_on_shared_key(request)
    }

    /// The model is in the URL: only the output limit may change, and the member that holds
    /// it is written anew only then.
    fn pass_through_members(
        &self,
        edit: &super::dialect::PassThrough<'_>,
    ) -> &'static [&'static str] {
        match edit.cap {
            Some(_) => &["generationConfig", "generation_config"],
            None => &[],
        }
    }

    fn pass_through_edit(
        &self,
        request: &mut Map<String, Value>,
        edit: &super::dialect::PassThrough<'_>,
    ) {
        edit.cap(request, super::Format::Gemini);
    }

    fn embeddings(&self) -> Option<&'static dyn super::embeddings::EmbeddingsDialect> {
        Some(&super::embeddings::GeminiEmbeddings)
    }

    fn conversation(&self) -> super::dialect::Conversation {
        super::dialect::Conversation {
            member: "contents",
            text_allowed: false,
        }
    }

    fn output_fields(&self) -> &'static super::volume::OutputFields {
        // Google's JSON parser takes a field by its proto name as well as its JSON name
        // (`generation_config.max_output_tokens` is `generationConfig.maxOutputTokens`), and a
        // pass-through body goes as sent: both spellings are read. Thinking tokens count within
        // `maxOutputTokens`.
        &super::volume::OutputFields {
            within: &["generationConfig", "generation_config"],
            limits: &["maxOutputTokens", "max_output_tokens"],
            choices: &["candidateCount", "candidate_count"],
            unbounded: &[],
        }
    }

    fn request_from_canonical(
        &self,
        canonical: &Map<String, Value>,
        _target: &super::dialect::Target<'_>,
    ) -> Result<Map<String, Value>, FormatError> {
        // The model goes in the URL.
        request_from_openai(canonical)
    }

    fn chat_url(&self, base: &str, path: &str, model: &str, stream: bool) -> Option<String> {
        let method = if stream {
            "streamGenerateContent?alt=sse"
        } else {
            "generateContent"
        };
        Some(method_url(base, path, model, method))
    }

    fn format(&self) -> super::Format {
        super::Format::Gemini
    }

    fn request_to_canonical(
        &self,
        request: &Map<String, Value>,
    ) -> Option<Result<Map<String, Value>, FormatError>> {
        Some(request_to_openai(request))
    }

    fn usage_of_answer(&self, body: &[u8]) -> Option<Usage> {
        super::dialect::usage_member(
            body,
            super::dialect::UsageMember::UsageMetadata,
            usage_from_value,
        )
    }

    fn response_to_canonical(
        &self,
        answer: Value,
        model: &str,
        created: u64,
    ) -> Result<Value, FormatError> {
        response_to_openai(&answer, model, created)
    }

    fn response_from_canonical(
        &self,
        canonical: Value,
        _created: u64,
    ) -> Result<Value, FormatError> {
        response_from_openai(&canonical)
    }

    fn stream_decoder(&self, context: &Context) -> Box<dyn Decoder> {
        Box::new(ChunkDecoder::new(context))
    }

    fn stream_encoder(&self, context: &Context) -> Box<dyn super::stream::Encoder> {
        Box::new(ChunkEncoder::new(context))
    }

    fn relay(&self, context: &Context) -> Option<Box<dyn super::stream::Reframe>> {
        Some(Box::new(super::stream::Relay::new(
            Box::new(ChunkDecoder::new(context)),
            stream_error,
        )))
    }

    fn error_body(&self, status: u16, _kind: &str, _code: &str, message: &str) -> String {
        error_body(status, message)
    }

    fn auth(&self) -> super::dialect::Auth {
        super::dialect::Auth::Header("x-goog-api-key")
    }
}
