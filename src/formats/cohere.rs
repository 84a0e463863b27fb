//! The Cohere v2 chat format: canonical requests written for `/v2/chat`, responses and stream
//! events (`message-start` … `message-end`, with usage at the end) read back.

use serde_json::{Map, Value, json};

use super::stream::{Context, Decoder, UpstreamError};
use super::{
    FormatError, function_tools, max_tokens, messages, openai, refuse_openai_only, stop_list,
};
use crate::sse::Event;
use crate::usage::Usage;

/// Reads a Cohere `usage`: the billed units when given (what the provider charges), else the
/// raw token counts; `cached_tokens` are prompt tokens read from its cache.
pub fn usage_from_value(usage: &Value) -> Option<Usage> {
    let counts = usage
        .get("billed_units")
        .filter(|b| b.get("input_tokens").is_some())
        .or_else(|| usage.get("tokens"))?;
    let number = |value: &Value, key: &str| value.get(key).and_then(Value::as_u64).unwrap_or(0);
    Some(Usage {
        input_tokens: number(counts, "input_tokens"),
        output_tokens: number(counts, "output_tokens"),
        cached_input_tokens: number(usage, "cached_tokens"),
        cache_creation_input_tokens: 0,
    })
}

/// OpenAI request → Cohere v2 chat request.
pub fn request_from_openai(
    request: &Map<String, Value>,
) -> Result<Map<String, Value>, FormatError> {
    refuse_openai_only(request, "Cohere")?;
    let mut out = Map::new();
    if let Some(model) = request.get("model") {
        out.insert("model".into(), model.clone());
    }
    let mut chat = Vec::new();
    for message in messages(request)? {
        let role = message.get("role").and_then(Value::as_str).unwrap_or("");
        let content = message.get("content").unwrap_or(&Value::Null);
        chat.push(match role {
            "system" | "developer" => {
                json!({"role": "system", "content": super::text_only(content, "a system message")?})
            }
            "user" => json!({"role": "user", "content": user_content(content)?}),
            "assistant" => {
                let text = super::text_only(content, "an assistant message")?;
                match message.get("tool_calls").and_then(Value::as_array) {
                    Some(calls) if !calls.is_empty() => {
                        let mut turn = json!({"role": "assistant", "tool_calls": calls});
                        if !text.is_empty() {
                            turn["tool_plan"] = Value::String(text);
                        }
                        turn
                    }
                    _ => json!({"role": "assistant", "content": text}),
                }
            }
            "tool" => json!({
                "role": "tool",
                "tool_call_id": message.get("tool_call_id").cloned()
                    .ok_or_else(|| FormatError::invalid("a tool message has no 'tool_call_id'"))?,
                "content": super::text_only(content, "a tool result")?,
            }),
            other => {
                return Err(FormatError::invalid(format!(
                    "unknown message role {other:?}"
                )));
            }
        });
    }
    out.insert("messages".into(), Value::Array(chat));
    let tools = function_tools(request)?;
    if !tools.is_empty() {
        let tools = tools
            .into_iter()
            .map(|(name, description, parameters)| {
                let mut function = json!({"name": name, "parameters": parameters});
                if let Some(description) = description {
                    function["description"] = description.clone();
                }
                json!({"type": "function", "function": function})
            })
            .collect();
        out.insert("tools".into(), Value::Array(tools));
    }
    match request.get("tool_choice") {
        None | Some(Value::Null) => {}
        Some(Value::String(mode)) => match mode.as_str() {
            "auto" => {}
            "required" => {
                out.insert("tool_choice".into(), json!("REQUIRED"));
            }
            "none" => {
                out.insert("tool_choice".into(), json!("NONE"));
            }
            other => {
                return Err(FormatError::invalid(format!(
                    "unknown tool_choice {other:?}"
                )));
            }
        },
        Some(_) => {
            return Err(FormatError::unsupported(
                "a Cohere model cannot be made to call one named tool; use tool_choice 'required'",
            ));
        }
    }
    if request.get("parallel_tool_calls") == Some(&Value::Bool(false)) {
        return Err(FormatError::unsupported(
            "a Cohere model cannot be limited to one tool call at a time",
        ));
    }
    let sampling = [
        ("temperature", "temperature"),
        ("top_p", "p"),
        ("top_k", "k"),
        ("seed", "seed"),
        ("presence_penalty", "presence_penalty"),
        ("frequency_penalty", "frequency_penalty"),
        ("stream", "stream"),
    ];
    super::copy_renamed(request, &mut out, &sampling);
    if let Some(max) = max_tokens(request) {
        out.insert("max_tokens".into(), json!(max));
    }
    if let Some(stops) = stop_list(request)? {
        out.insert("stop_sequences".into(), Value::Array(stops));
    }
    if let Some(format) = request.get("response_format").filter(|v| !v.is_null()) {
        match format.get("type").and_then(Value::as_str) {
            Some("text") => {}
            Some("json_object") => {
                out.insert("response_format".into(), json!({"type": "json_object"}));
            }
            Some("json_schema") => {
                let mut mapped = json!({"type": "json_object"});
                if let Some(schema) = format.pointer("/json_schema/schema") {
                    mapped["json_schema"] = schema.clone();
                }
                out.insert("response_format".into(), mapped);
            }
            _ => return Err(FormatError::invalid("unknown response_format type")),
        }
    }
    Ok(out)
}

fn user_content(content: &Value) -> Result<Value, FormatError> {
    match content {
        Value::String(_) => Ok(content.clone()),
        Value::Array(parts) => parts
            .iter()
            .map(|part| match part.get("type").and_then(Value::as_str) {
                Some("text") => Ok(json!({"type": "text", "text": part.get("text").cloned().unwrap_or(Value::Null)})),
                Some("image_url") => Ok(json!({"type": "image_url", "image_url": {
                    "url": part.pointer("/image_url/url").cloned()
                        .ok_or_else(|| FormatError::invalid("an image_url part has no url"))?}})),
                other => Err(FormatError::unsupported(format!(
                    "{:?} content parts cannot be sent to a Cohere model",
                    other.unwrap_or("untyped")
                ))),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        _ => Err(FormatError::invalid(
            "user message content must be a string or an array",
        )),
    }
}

fn finish_reason(reason: &str) -> &'static str {
    match reason {
        "MAX_TOKENS" => "length",
        "TOOL_CALL" => "tool_calls",
        _ => "stop", // COMPLETE, STOP_SEQUENCE
    }
}

/// Cohere response → OpenAI response.
pub fn response_to_openai(
    response: &Value,
    model: &str,
    created: u64,
) -> Result<Value, FormatError> {
    let message = response
        .get("message")
        .ok_or_else(|| FormatError::upstream("the response has no message"))?;
    let reason = response
        .get("finish_reason")
        .and_then(Value::as_str)
        .unwrap_or("COMPLETE");
    if reason == "ERROR" {
        return Err(FormatError::upstream("the provider reported an error"));
    }
    let mut text = String::new();
    for part in crate::formats::items(message.get("content")) {
        if part.get("type").and_then(Value::as_str) == Some("text") {
            text.push_str(part.get("text").and_then(Value::as_str).unwrap_or(""));
        }
    }
    let calls = message
        .get("tool_calls")
        .and_then(Value::as_array)
        .filter(|c| !c.is_empty());
    let mut out = json!({"role": "assistant",
        "content": if text.is_empty() && calls.is_some() { Value::Null } else { Value::String(text) }});
    if let Some(calls) = calls {
        out["tool_calls"] = Value::Array(calls.clone());
    }
    if let Some(plan) = message.get("tool_plan").and_then(Value::as_str) {
        out["reasoning_content"] = Value::String(plan.to_owned());
    }
    let usage = response
        .get("usage")
        .and_then(usage_from_value)
        .unwrap_or_default();
    Ok(super::openai::completion(
        response.get("id").cloned().unwrap_or(Value::Null),
        model.into(),
        created,
        out,
        finish_reason(reason).into(),
        &usage,
    ))
}

/// Cohere stream events read into canonical chunks.
#[derive(Debug)]
pub struct EventDecoder {
    id: String,
    model: String,
    created: u64,
    usage: Option<Usage>,
}

impl EventDecoder {
    /// A decoder for one stream.
    pub fn new(context: &Context) -> Self {
        Self {
            id: String::new(),
            model: context.model.clone(),
            created: context.created,
            usage: None,
        }
    }
}

impl Decoder for EventDecoder {
    fn event(&mut self, event: &Event, out: &mut Vec<Value>) -> Result<bool, UpstreamError> {
        let parsed: Value = serde_json::from_str(&event.data)
            .map_err(|_| UpstreamError("the provider sent an event that is not JSON".into()))?;
        let kind = parsed
            .get("type")
            .and_then(Value::as_str)
            .or(event.event.as_deref())
            .unwrap_or("");
        let chunk = |delta: Value, finish: Option<&str>| {
            openai::chunk(&self.id, &self.model, self.created, delta, finish)
        };
        let message = parsed.pointer("/delta/message").unwrap_or(&Value::Null);
        let index = parsed.get("index").and_then(Value::as_u64).unwrap_or(0);
        match kind {
            "message-start" => {
                if let Some(id) = parsed.get("id").and_then(Value::as_str) {
                    self.id = id.to_owned();
                }
                out.push(openai::chunk(
                    &self.id,
                    &self.model,
                    self.created,
                    json!({"role": "assistant", "content": ""}),
                    None,
                ));
            }
            "content-delta" => {
                if let Some(text) = message.pointer("/content/text") {
                    out.push(chunk(json!({"content": text}), None));
                }
            }
            "tool-plan-delta" => {
                if let Some(plan) = message.get("tool_plan") {
                    out.push(chunk(json!({"reasoning_content": plan}), None));
                }
            }
            "tool-call-start" => {
                let call = message.get("tool_calls").unwrap_or(&Value::Null);
                out.push(chunk(
                    json!({"tool_calls": [{"index": index,
                        "id": call.get("id").cloned().unwrap_or(Value::Null),
                        "type": "function",
                        "function": {
                            "name": call.pointer("/function/name").cloned().unwrap_or(Value::Null),
                            "arguments": call.pointer("/function/arguments").cloned().unwrap_or(json!("")),
                        }}]}),
                    None,
                ));
            }
            "tool-call-delta" => {
                if let Some(arguments) = message.pointer("/tool_calls/function/arguments") {
                    out.push(chunk(
                        json!({"tool_calls": [{"index": index, "function": {"arguments": arguments}}]}),
                        None,
                    ));
                }
            }
            "message-end" => {
                let delta = parsed.get("delta").unwrap_or(&Value::Null);
                if let Some(usage) = delta.get("usage").and_then(usage_from_value) {
                    self.usage = Some(usage);
                }
                let reason = delta
                    .get("finish_reason")
                    .and_then(Value::as_str)
                    .unwrap_or("COMPLETE");
                if reason == "ERROR" {
                    let message = delta
                        .get("error")
                        .and_then(Value::as_str)
                        .unwrap_or("the provider failed in the middle of the stream");
                    return Err(UpstreamError(message.to_owned()));
                }
                out.push(chunk(json!({}), Some(finish_reason(reason))));
                out.push(openai::usage_chunk(
                    &self.id,
                    &self.model,
                    self.created,
                    &self.usage.unwrap_or_default(),
                ));
                return Ok(true);
            }
            _ => {} // content-start/-end, tool-call-end, citations
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

// ---------------------------------------------------------------------------------------------
// The dialect

/// Cohere v2 chat: a target only (no front door speaks it), whose answers reach clients in the
/// canonical form.
pub struct Chat;

impl super::dialect::Dialect for Chat {
    /// No client speaks Cohere's format to the gateway; were one to, its model and output
    /// limit are what would change.
    fn pass_through_members(
        &self,
        _edit: &super::dialect::PassThrough<'_>,
    ) -> &'static [&'static str] {
        &["model", "max_tokens"]
    }

    fn embeddings(&self) -> Option<&'static dyn super::embeddings::EmbeddingsDialect> {
        Some(&super::embeddings::CohereEmbeddings)
    }

    fn output_fields(&self) -> &'static super::volume::OutputFields {
        &super::volume::OutputFields {
            within: &[],
            limits: &["max_tokens"],
            choices: &[],
            unbounded: &["num_generations"],
        }
    }

    fn request_from_canonical(
        &self,
        canonical: &Map<String, Value>,
        target: &super::dialect::Target<'_>,
    ) -> Result<Map<String, Value>, FormatError> {
        let mut request = request_from_openai(canonical)?;
        request.insert("model".into(), Value::from(target.model));
        Ok(request)
    }

    fn format(&self) -> super::Format {
        super::Format::Cohere
    }

    fn request_to_canonical(
        &self,
        _request: &Map<String, Value>,
    ) -> Option<Result<Map<String, Value>, FormatError>> {
        Some(Err(FormatError::invalid(
            "Cohere's format is not a front door",
        )))
    }

    fn usage_of_answer(&self, body: &[u8]) -> Option<Usage> {
        super::dialect::usage_member(
            body,
            super::dialect::UsageMember::Usage,
            super::anthropic::usage_from_value,
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
        Ok(canonical)
    }

    fn stream_decoder(&self, context: &Context) -> Box<dyn Decoder> {
        Box::new(EventDecoder::new(context))
    }

    fn stream_encoder(&self, context: &Context) -> Box<dyn super::stream::Encoder> {
        Box::new(super::openai::ChunkEncoder::new(context.client_wants_usage))
    }

    fn relay(&self, _context: &Context) -> Option<Box<dyn super::stream::Reframe>> {
        None
    }
}
