//! Anthropic's stream events decoded into canonical chunks, encoded from them, and relayed as
//! they come to an Anthropic client.

use serde_json::{Value, json};

use super::super::openai;
use super::super::stream::{Context, Decoder, Encoder, Flow, Reframe, UpstreamError};
use super::*;
use crate::sse::{Event, write_event};
use crate::usage::{FinishReason, Usage};

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
    finish: Option<FinishReason>,
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
        if let Some(stop) = parsed.pointer("/delta/stop_reason").and_then(Value::as_str) {
            self.finish = Some(FinishReason::from_canonical(finish_from_stop(Some(stop))));
        }
        match parsed.get("type").and_then(Value::as_str) {
            Some("message_stop") => Flow::Complete,
            Some("error") => Flow::Failed,
            _ => Flow::Continue,
        }
    }

    fn fail(&mut self, message: &str, out: &mut Vec<u8>) {
        write_event(out, Some("error"), &error_body(500, message));
    }

    fn usage(&self) -> Option<Usage> {
        self.usage
    }

    fn finish_reason(&self) -> Option<FinishReason> {
        self.finish
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
        let Some(choice) = openai::choice_delta(chunk) else {
            return;
        };
        if let Some(text) = choice.reasoning {
            self.text(Open::Thinking, text, out);
        }
        if let Some(text) = choice.content {
            self.text(Open::Text, text, out);
        }
        for call in openai::tool_calls(choice.delta) {
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
        if let Some(finish) = choice.finish {
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
