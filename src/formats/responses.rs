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

use serde_json::{Map, Value, json};

use super::stream::{Context, Encoder, Flow, ItemSink, Reframe};
use super::{FormatError, openai};
use crate::sse::{Event, write_event};
use crate::usage::Usage;

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
    for tool in request
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .flat_map(namespaced)
    {
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

/// An id for something the gateway writes, derived from the upstream's id: the same answer
/// always gets the same ids, different answers different ones.
fn derived_id(prefix: &str, from: &str, index: usize) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(format!("{from}\0{index}").as_bytes());
    format!("{prefix}_{}", hex::encode(&digest[..16]))
}

/// The `usage` of a `response` object.
fn usage_value(usage: &Usage, reasoning_tokens: u64) -> Value {
    json!({
        "input_tokens": usage.input_tokens,
        "input_tokens_details": {"cached_tokens": usage.cached_input_tokens},
        "output_tokens": usage.output_tokens,
        "output_tokens_details": {"reasoning_tokens": reasoning_tokens},
        "total_tokens": usage.total_tokens(),
    })
}

/// What a chat completion's `finish_reason` says of a response: its status and, when it was
/// cut short, why.
fn status_of(finish: Option<&str>) -> (&'static str, Value) {
    match finish {
        Some("length") => ("incomplete", json!({"reason": "max_output_tokens"})),
        Some("content_filter") => ("incomplete", json!({"reason": "content_filter"})),
        _ => ("completed", Value::Null),
    }
}

/// A `response` object around its output items.
fn response_object(
    id: &str,
    model: &str,
    created: u64,
    status: &str,
    incomplete: Value,
    output: Vec<Value>,
    usage: Value,
) -> Value {
    json!({
        "id": id, "object": "response", "created_at": created, "status": status,
        "background": false, "error": null, "incomplete_details": incomplete,
        "instructions": null, "max_output_tokens": null, "model": model, "output": output,
        "parallel_tool_calls": true, "previous_response_id": null,
        "reasoning": {"effort": null, "summary": null}, "store": false,
        "temperature": null, "text": {"format": {"type": "text"}}, "tool_choice": "auto",
        "tools": [], "top_p": null, "truncation": "disabled", "usage": usage, "metadata": {},
    })
}

/// A canonical chat completion as a `response` object.
pub fn response_from_openai(completion: &Value, created: u64) -> Result<Value, FormatError> {
    let upstream_id = completion.get("id").and_then(Value::as_str).unwrap_or("");
    let choice = completion
        .pointer("/choices/0")
        .ok_or_else(|| FormatError::upstream("the answer has no choices"))?;
    let message = choice.get("message").unwrap_or(&Value::Null);
    let mut output = Vec::new();
    if let Some(reasoning) = message
        .get("reasoning_content")
        .and_then(Value::as_str)
        .filter(|r| !r.is_empty())
    {
        output.push(
            json!({"type": "reasoning", "id": derived_id("rs", upstream_id, 0),
            "summary": [{"type": "summary_text", "text": reasoning}]}),
        );
    }
    let text = message.get("content").and_then(Value::as_str).unwrap_or("");
    let refusal = message.get("refusal").and_then(Value::as_str);
    if !text.is_empty() || refusal.is_some() {
        let part = match refusal {
            Some(refusal) => json!({"type": "refusal", "refusal": refusal}),
            None => json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []}),
        };
        output.push(
            json!({"type": "message", "id": derived_id("msg", upstream_id, 0),
            "status": "completed", "role": "assistant", "content": [part]}),
        );
    }
    for (index, call) in message
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let call_id = call.get("id").and_then(Value::as_str).unwrap_or_default();
        output.push(json!({"type": "function_call", "id": derived_id("fc", upstream_id, index),
            "call_id": call_id, "name": call.pointer("/function/name").cloned().unwrap_or(Value::Null),
            "arguments": call.pointer("/function/arguments").cloned().unwrap_or(json!("")),
            "status": "completed"}));
    }
    let usage = completion
        .get("usage")
        .and_then(openai::usage_from_value)
        .unwrap_or_default();
    let reasoning_tokens = completion
        .pointer("/usage/completion_tokens_details/reasoning_tokens")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let (status, incomplete) = status_of(choice.get("finish_reason").and_then(Value::as_str));
    let model = completion
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("");
    Ok(response_object(
        &derived_id("resp", upstream_id, 0),
        model,
        created,
        status,
        incomplete,
        output,
        usage_value(&usage, reasoning_tokens),
    ))
}

/// An error in a Responses stream (a `response.failed` would need the response's id, which
/// a failure before the first chunk does not have; `error` events carry none).
fn error_event(out: &mut Vec<u8>, sequence: u64, message: &str) {
    let event = json!({"type": "error", "code": "server_error", "message": message,
        "param": null, "sequence_number": sequence});
    write_event(out, Some("error"), &event.to_string());
}

/// A Responses stream relayed to a client of the same API: events as they came, the usage
/// read from the final `response.completed` (or `response.incomplete`, `response.failed`),
/// finished assistant messages handed to the item sink.
pub struct Passthrough {
    usage: Option<Usage>,
    /// The last `sequence_number` seen, so an error the gateway adds follows it.
    sequence: u64,
    items: Option<ItemSink>,
}

impl Passthrough {
    /// A relay handing finished messages to `items`.
    pub fn new(items: Option<ItemSink>) -> Self {
        Self {
            usage: None,
            sequence: 0,
            items,
        }
    }
}

/// Hands an output item to the sink when it is an assistant message with an id.
fn keep(items: &Option<ItemSink>, item: &Value) {
    if let Some(sink) = items
        && item.get("type").and_then(Value::as_str) == Some("message")
        && item.get("id").and_then(Value::as_str).is_some()
    {
        sink.keep(item);
    }
}

/// The assistant messages of a whole `response` object, handed to the sink.
pub fn keep_output(items: &Option<ItemSink>, response: &[u8]) {
    if items.is_none() {
        return;
    }
    let Ok(parsed) = serde_json::from_slice::<Value>(response) else {
        return;
    };
    for item in parsed
        .get("output")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        keep(items, item);
    }
}

impl Reframe for Passthrough {
    fn event(&mut self, event: &Event, out: &mut Vec<u8>) -> Flow {
        write_event(out, event.event.as_deref(), &event.data);
        let Ok(parsed) = serde_json::from_str::<Value>(&event.data) else {
            return Flow::Continue;
        };
        if let Some(sequence) = parsed.get("sequence_number").and_then(Value::as_u64) {
            self.sequence = sequence;
        }
        if let Some(usage) = parsed.pointer("/response/usage").and_then(usage_from_value) {
            self.usage = Some(usage);
        }
        match parsed.get("type").and_then(Value::as_str) {
            Some("response.output_item.done") => {
                keep(&self.items, parsed.get("item").unwrap_or(&Value::Null));
                Flow::Continue
            }
            Some("response.completed" | "response.incomplete") => Flow::Complete,
            Some("response.failed" | "error") => Flow::Failed,
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
        error_event(out, self.sequence + 1, message);
    }

    fn usage(&self) -> Option<Usage> {
        self.usage
    }
}

/// The output item a stream is writing.
#[derive(Debug)]
enum Open {
    Prose {
        kind: Prose,
        index: usize,
        id: String,
        text: String,
    },
    Call {
        index: usize,
        call: u64,
    },
}

/// The two kinds of prose an answer streams, one item each: a message's text and a reasoning
/// summary. Both live the same way (item added, part added, deltas, text done, part done, item
/// done) under their own names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Prose {
    Message,
    Reasoning,
}

impl Prose {
    fn id_prefix(self) -> &'static str {
        match self {
            Self::Message => "msg",
            Self::Reasoning => "rs",
        }
    }

    /// The member of an event that says which part it is about.
    fn part_index(self) -> &'static str {
        match self {
            Self::Message => "content_index",
            Self::Reasoning => "summary_index",
        }
    }

    /// Event names: part added, text delta, text done, part done.
    fn events(self) -> [&'static str; 4] {
        match self {
            Self::Message => [
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
            ],
            Self::Reasoning => [
                "response.reasoning_summary_part.added",
                "response.reasoning_summary_text.delta",
                "response.reasoning_summary_text.done",
                "response.reasoning_summary_part.done",
            ],
        }
    }

    fn part(self, text: &str) -> Value {
        match self {
            Self::Message => {
                json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []})
            }
            Self::Reasoning => json!({"type": "summary_text", "text": text}),
        }
    }

    /// The item, open (`parts` empty) or done.
    fn item(self, id: &str, parts: Vec<Value>) -> Value {
        let status = if parts.is_empty() {
            "in_progress"
        } else {
            "completed"
        };
        match self {
            Self::Message => json!({"type": "message", "id": id, "status": status,
                "role": "assistant", "content": parts}),
            Self::Reasoning => json!({"type": "reasoning", "id": id, "summary": parts}),
        }
    }

    /// A text event about part 0 of item `id`; a message's carry its (absent) log-probs.
    fn text_event(self, id: &str, index: usize, key: &str, text: &str) -> Value {
        let mut event = json!({"item_id": id, "output_index": index, self.part_index(): 0});
        event[key] = Value::String(text.to_owned());
        if self == Self::Message {
            event["logprobs"] = json!([]);
        }
        event
    }
}

/// A function call being streamed: its canonical index, and the item it became.
#[derive(Debug)]
struct Call {
    index: u64,
    item: Value,
}

/// Canonical chunks written as the Responses API's typed stream events, each with its
/// `sequence_number`: `response.created`, `response.in_progress`, items opened and closed
/// (`response.output_item.added`/`.done`, with their content parts), text and argument deltas,
/// then `response.completed` — or `response.incomplete` when the output limit cut the answer
/// short — carrying the whole response with its usage.
pub struct EventEncoder {
    /// Where finished assistant messages go.
    items: Option<ItemSink>,
    id: String,
    model: String,
    created: u64,
    sequence: u64,
    started: bool,
    output: Vec<Value>,
    open: Option<Open>,
    calls: Vec<Call>,
    finish: Option<String>,
    usage: Option<Usage>,
    reasoning_tokens: u64,
}

impl EventEncoder {
    /// An encoder for one stream.
    pub fn new(context: &Context) -> Self {
        Self {
            items: context.items.clone(),
            id: String::new(),
            model: context.model.clone(),
            created: context.created,
            sequence: 0,
            started: false,
            output: Vec::new(),
            open: None,
            calls: Vec::new(),
            finish: None,
            usage: None,
            reasoning_tokens: 0,
        }
    }

    fn emit(&mut self, out: &mut Vec<u8>, kind: &str, mut event: Value) {
        event["type"] = Value::String(kind.to_owned());
        event["sequence_number"] = Value::from(self.sequence);
        self.sequence += 1;
        write_event(out, Some(kind), &event.to_string());
    }

    fn response(&self, status: &str, incomplete: Value, usage: Value) -> Value {
        response_object(
            &self.id,
            &self.model,
            self.created,
            status,
            incomplete,
            self.output.clone(),
            usage,
        )
    }

    fn start(&mut self, chunk: &Value, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        let upstream_id = chunk.get("id").and_then(Value::as_str).unwrap_or("");
        self.id = derived_id("resp", upstream_id, 0);
        if let Some(model) = chunk.get("model").and_then(Value::as_str) {
            self.model = model.to_owned();
        }
        let response = self.response("in_progress", Value::Null, Value::Null);
        self.emit(out, "response.created", json!({"response": response}));
        self.emit(out, "response.in_progress", json!({"response": response}));
    }

    fn item_id(&self, prefix: &str) -> String {
        derived_id(prefix, &self.id, self.output.len())
    }

    /// Closes the open item: its closing events, and the finished item into `output`.
    fn close(&mut self, out: &mut Vec<u8>) {
        match self.open.take() {
            None => {}
            Some(Open::Prose {
                kind,
                index,
                id,
                text,
            }) => {
                let [_, _, text_done, part_done] = kind.events();
                let event = kind.text_event(&id, index, "text", &text);
                self.emit(out, text_done, event);
                let part = kind.part(&text);
                let event = json!({"item_id": id, "output_index": index,
                    kind.part_index(): 0, "part": part});
                self.emit(out, part_done, event);
                let item = kind.item(&id, vec![part]);
                self.emit(
                    out,
                    "response.output_item.done",
                    json!({"output_index": index, "item": item}),
                );
                // Messages are what a later request may refer to by id.
                if kind == Prose::Message {
                    keep(&self.items, &item);
                }
                self.output.push(item);
            }
            Some(Open::Call { index, call }) => {
                let Some(position) = self.calls.iter().position(|c| c.index == call) else {
                    return;
                };
                let mut item = self.calls[position].item.clone();
                item["status"] = json!("completed");
                let id = item.get("id").cloned().unwrap_or(Value::Null);
                let arguments = item.get("arguments").cloned().unwrap_or(json!(""));
                self.emit(
                    out,
                    "response.function_call_arguments.done",
                    json!({"item_id": id,
                    "output_index": index, "arguments": arguments}),
                );
                self.emit(
                    out,
                    "response.output_item.done",
                    json!({"output_index": index, "item": item}),
                );
                self.output.push(item);
            }
        }
    }

    /// Streams a piece of prose: opens its item first unless one of its kind is open.
    fn prose(&mut self, kind: Prose, text: &str, out: &mut Vec<u8>) {
        if text.is_empty() {
            return;
        }
        let [part_added, delta, _, _] = kind.events();
        if !matches!(self.open, Some(Open::Prose { kind: open, .. }) if open == kind) {
            self.close(out);
            let (index, id) = (self.output.len(), self.item_id(kind.id_prefix()));
            let item = kind.item(&id, Vec::new());
            self.emit(
                out,
                "response.output_item.added",
                json!({"output_index": index, "item": item}),
            );
            let event = json!({"item_id": id, "output_index": index,
                kind.part_index(): 0, "part": kind.part("")});
            self.emit(out, part_added, event);
            self.open = Some(Open::Prose {
                kind,
                index,
                id,
                text: String::new(),
            });
        }
        if let Some(Open::Prose {
            index,
            id,
            text: written,
            ..
        }) = &mut self.open
        {
            written.push_str(text);
            let event = kind.text_event(id, *index, "delta", text);
            self.emit(out, delta, event);
        }
    }

    fn call(&mut self, delta: &Value, out: &mut Vec<u8>) {
        let call = delta.get("index").and_then(Value::as_u64).unwrap_or(0);
        let open = matches!(self.open, Some(Open::Call { call: open, .. }) if open == call);
        if !open && !self.calls.iter().any(|c| c.index == call) {
            self.close(out);
            let (index, id) = (self.output.len(), self.item_id("fc"));
            let item = json!({"type": "function_call", "id": id,
                "call_id": delta.get("id").cloned().unwrap_or(Value::Null),
                "name": delta.pointer("/function/name").cloned().unwrap_or(Value::Null),
                "arguments": "", "status": "in_progress"});
            self.emit(
                out,
                "response.output_item.added",
                json!({"output_index": index, "item": item}),
            );
            self.calls.push(Call { index: call, item });
            self.open = Some(Open::Call { index, call });
        }
        let Some(arguments) = delta
            .pointer("/function/arguments")
            .and_then(Value::as_str)
            .filter(|a| !a.is_empty())
        else {
            return;
        };
        let Some(entry) = self.calls.iter_mut().find(|c| c.index == call) else {
            return;
        };
        // Appended in place: a copy per delta would cost the square of the arguments' length.
        match entry.item.get_mut("arguments") {
            Some(Value::String(written)) => written.push_str(arguments),
            _ => entry.item["arguments"] = Value::String(arguments.to_owned()),
        }
        let id = entry.item.get("id").cloned().unwrap_or(Value::Null);
        // Arguments of a call already closed (a provider interleaving calls) still reach the
        // finished item; their delta is only sent while the call is the open item.
        if let Some(Open::Call { index, call: open }) = self.open
            && open == call
        {
            let event = json!({"item_id": id, "output_index": index, "delta": arguments});
            self.emit(out, "response.function_call_arguments.delta", event);
        }
    }
}

impl Encoder for EventEncoder {
    fn chunk(&mut self, chunk: &Value, out: &mut Vec<u8>) {
        self.start(chunk, out);
        if let Some(usage) = chunk.get("usage").and_then(openai::usage_from_value) {
            self.usage = Some(usage);
            self.reasoning_tokens = chunk
                .pointer("/usage/completion_tokens_details/reasoning_tokens")
                .and_then(Value::as_u64)
                .unwrap_or(0);
        }
        let Some(choice) = chunk.pointer("/choices/0") else {
            return;
        };
        let delta = choice.get("delta").unwrap_or(&Value::Null);
        if let Some(text) = delta.get("reasoning_content").and_then(Value::as_str) {
            self.prose(Prose::Reasoning, text, out);
        }
        if let Some(text) = delta.get("content").and_then(Value::as_str) {
            self.prose(Prose::Message, text, out);
        }
        for call in delta
            .get("tool_calls")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            self.call(call, out);
        }
        if let Some(finish) = choice.get("finish_reason").and_then(Value::as_str) {
            self.finish = Some(finish.to_owned());
        }
    }

    fn done(&mut self, out: &mut Vec<u8>) {
        self.start(&Value::Null, out);
        self.close(out);
        let usage = usage_value(&self.usage.unwrap_or_default(), self.reasoning_tokens);
        let (status, incomplete) = status_of(self.finish.as_deref());
        let response = self.response(status, incomplete, usage);
        let kind = if status == "completed" {
            "response.completed"
        } else {
            "response.incomplete"
        };
        self.emit(out, kind, json!({"response": response}));
    }

    fn error(&mut self, message: &str, out: &mut Vec<u8>) {
        if !self.started {
            error_event(out, self.sequence, message);
            return;
        }
        self.close(out);
        let mut response = self.response("failed", Value::Null, Value::Null);
        response["error"] = json!({"code": "server_error", "message": message});
        self.emit(out, "response.failed", json!({"response": response}));
    }
}

/// A `response` object read into a canonical chat completion (for a client of another format
/// when the target serves only the Responses API).
pub fn response_to_openai(response: &Value, created: u64) -> Result<Value, FormatError> {
    let output = response
        .get("output")
        .and_then(Value::as_array)
        .ok_or_else(|| FormatError::upstream("the response has no 'output'"))?;
    let mut text = String::new();
    let mut reasoning = String::new();
    let mut calls = Vec::new();
    for item in output {
        match item.get("type").and_then(Value::as_str) {
            Some("message") => {
                for part in item
                    .get("content")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    if let Some(piece) = part.get("text").and_then(Value::as_str) {
                        text.push_str(piece);
                    }
                }
            }
            Some("reasoning") => {
                for part in item
                    .get("summary")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    reasoning.push_str(part.get("text").and_then(Value::as_str).unwrap_or(""));
                }
            }
            Some("function_call") => calls.push(json!({"id": item.get("call_id"),
                "type": "function", "function": {"name": item.get("name"),
                "arguments": item.get("arguments").cloned().unwrap_or(json!(""))}})),
            _ => {}
        }
    }
    let mut message = json!({"role": "assistant", "content": if calls.is_empty() || !text.is_empty() { json!(text) } else { Value::Null }});
    if !reasoning.is_empty() {
        message["reasoning_content"] = Value::String(reasoning);
    }
    let finish = if !calls.is_empty() {
        "tool_calls"
    } else {
        finish_of(response)
    };
    if !calls.is_empty() {
        message["tool_calls"] = Value::Array(calls);
    }
    let usage = response
        .get("usage")
        .and_then(usage_from_value)
        .unwrap_or_default();
    Ok(
        json!({"id": response.get("id").cloned().unwrap_or(json!("")),
        "object": "chat.completion", "created": created,
        "model": response.get("model").cloned().unwrap_or(json!("")),
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": super::openai_usage(&usage)}),
    )
}

/// A chat completion's `finish_reason` for a response's status.
fn finish_of(response: &Value) -> &'static str {
    match response
        .pointer("/incomplete_details/reason")
        .and_then(Value::as_str)
    {
        Some("max_output_tokens") => "length",
        Some("content_filter") => "content_filter",
        _ => "stop",
    }
}

/// A Responses stream read into canonical chunks (for a client of another format).
#[derive(Debug)]
pub struct EventDecoder {
    /// The response's id (from `response.created`), for the chunks' `id`.
    id: String,
    model: String,
    created: u64,
    usage: Option<Usage>,
    /// Output index → canonical tool call index, for function calls.
    calls: Vec<(u64, usize)>,
}

impl EventDecoder {
    /// A decoder for one stream.
    pub fn new(context: &Context) -> Self {
        Self {
            id: String::new(),
            model: context.model.clone(),
            created: context.created,
            usage: None,
            calls: Vec::new(),
        }
    }

    fn chunk(&self, delta: Value, finish: Option<&str>) -> Value {
        openai::chunk(&self.id, &self.model, self.created, delta, finish)
    }
}

impl super::stream::Decoder for EventDecoder {
    fn event(
        &mut self,
        event: &Event,
        out: &mut Vec<Value>,
    ) -> Result<bool, super::stream::UpstreamError> {
        let parsed: Value = serde_json::from_str(&event.data).map_err(|_| {
            super::stream::UpstreamError("the provider sent an event that is not JSON".to_owned())
        })?;
        let output_index = parsed
            .get("output_index")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        match parsed.get("type").and_then(Value::as_str) {
            Some("response.created") => {
                let response = parsed.get("response").unwrap_or(&Value::Null);
                if let Some(id) = response.get("id").and_then(Value::as_str) {
                    self.id = id.to_owned();
                }
                if let Some(model) = response.get("model").and_then(Value::as_str) {
                    self.model = model.to_owned();
                }
                out.push(self.chunk(json!({"role": "assistant", "content": ""}), None));
            }
            Some("response.output_text.delta") => {
                let text = parsed.get("delta").cloned().unwrap_or(json!(""));
                out.push(self.chunk(json!({"content": text}), None));
            }
            Some("response.reasoning_summary_text.delta") => {
                let text = parsed.get("delta").cloned().unwrap_or(json!(""));
                out.push(self.chunk(json!({"reasoning_content": text}), None));
            }
            Some("response.output_item.added")
                if parsed.pointer("/item/type").and_then(Value::as_str)
                    == Some("function_call") =>
            {
                let index = self.calls.len();
                self.calls.push((output_index, index));
                let item = &parsed["item"];
                out.push(self.chunk(
                    json!({"tool_calls": [{"index": index,
                    "id": item.get("call_id"), "type": "function",
                    "function": {"name": item.get("name"), "arguments": ""}}]}),
                    None,
                ));
            }
            Some("response.function_call_arguments.delta") => {
                if let Some((_, index)) = self.calls.iter().find(|(o, _)| *o == output_index) {
                    let arguments = parsed.get("delta").cloned().unwrap_or(json!(""));
                    out.push(self.chunk(
                        json!({"tool_calls": [{"index": index,
                        "function": {"arguments": arguments}}]}),
                        None,
                    ));
                }
            }
            Some(kind @ ("response.completed" | "response.incomplete")) => {
                let response = parsed.get("response").unwrap_or(&Value::Null);
                self.usage = response.get("usage").and_then(usage_from_value);
                let finish = if !self.calls.is_empty() {
                    "tool_calls"
                } else if kind == "response.incomplete" {
                    finish_of(response)
                } else {
                    "stop"
                };
                out.push(self.chunk(json!({}), Some(finish)));
                if let Some(usage) = &self.usage {
                    out.push(openai::usage_chunk(
                        &self.id,
                        &self.model,
                        self.created,
                        usage,
                    ));
                }
                return Ok(true);
            }
            Some("response.failed" | "error") => {
                let message = parsed
                    .pointer("/response/error/message")
                    .or_else(|| parsed.get("message"))
                    .and_then(Value::as_str)
                    .unwrap_or("the provider failed in the middle of the stream");
                return Err(super::stream::UpstreamError(message.to_owned()));
            }
            _ => {}
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

/// OpenAI's Responses API.
pub struct ResponsesApi;

impl super::dialect::Dialect for ResponsesApi {
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
