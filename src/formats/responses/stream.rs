//! The Responses API's typed stream events: encoded from canonical chunks, decoded into them,
//! and relayed as they come to a Responses client (keeping the items it may refer to later).

use serde_json::{Value, json};

use super::super::openai;
use super::super::stream::{Context, Decoder, Encoder, Flow, ItemSink, Reframe, UpstreamError};
use super::*;
use crate::sse::{Event, write_event};
use crate::usage::{FinishReason, Usage};

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
    finish: Option<FinishReason>,
    /// The last `sequence_number` seen, so an error the gateway adds follows it.
    sequence: u64,
    items: Option<ItemSink>,
}

impl Passthrough {
    /// A relay handing finished messages to `items`.
    pub fn new(items: Option<ItemSink>) -> Self {
        Self {
            usage: None,
            finish: None,
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
    for item in crate::formats::items(parsed.get("output")) {
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
            Some("response.completed" | "response.incomplete") => {
                let response = parsed.get("response").unwrap_or(&Value::Null);
                self.finish = Some(FinishReason::from_canonical(finish_of_answer(response)));
                Flow::Complete
            }
            Some("response.failed" | "error") => Flow::Failed,
            _ => Flow::Continue,
        }
    }

    fn fail(&mut self, message: &str, out: &mut Vec<u8>) {
        error_event(out, self.sequence + 1, message);
    }

    fn usage(&self) -> Option<Usage> {
        self.usage
    }

    fn finish_reason(&self) -> Option<FinishReason> {
        self.finish
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
        let Some(choice) = openai::choice_delta(chunk) else {
            return;
        };
        if let Some(text) = choice.reasoning {
            self.prose(Prose::Reasoning, text, out);
        }
        if let Some(text) = choice.content {
            self.prose(Prose::Message, text, out);
        }
        for call in openai::tool_calls(choice.delta) {
            self.call(call, out);
        }
        if let Some(finish) = choice.finish {
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

impl Decoder for EventDecoder {
    fn event(&mut self, event: &Event, out: &mut Vec<Value>) -> Result<bool, UpstreamError> {
        let parsed: Value = serde_json::from_str(&event.data)
            .map_err(|_| UpstreamError("the provider sent an event that is not JSON".to_owned()))?;
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
                return Err(UpstreamError(message.to_owned()));
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
