//! ConverseStream events decoded into canonical chunks and encoded from them. The events come
//! framed by [`super::eventstream::EventStream`], each named by its type: `messageStart`,
//! `contentBlockStart`, `contentBlockDelta`, `contentBlockStop`, `messageStop`, then
//! `metadata` (the usage) — after the stop, so an answer is complete only at `metadata`, or at
//! the end of the input once it stopped. An exception mid-stream is the upstream's failure.

use serde_json::{Value, json};

use super::super::openai;
use super::super::stream::{Context, Decoder, Encoder, UpstreamError};
use super::eventstream::{encode_event, encode_exception};
use super::response::{answer_id, finish_from_stop, stop_from_finish};
use super::{usage_from_value, usage_value};
use crate::sse::Event;
use crate::usage::Usage;

/// Whether an event's name is a failure: Bedrock's exceptions (`throttlingException`,
/// `modelStreamErrorException`, …) end in `Exception`, and the framing names an error message
/// by its code, which AWS writes in PascalCase (`InternalFailure`); stream events are
/// camelCase. Unknown camelCase events are ones added later, and skipped.
fn is_failure(name: &str) -> bool {
    name.ends_with("Exception") || name.starts_with(|c: char| c.is_ascii_uppercase())
}

fn failure_message(name: &str, payload: &Value) -> String {
    let said = payload
        .get("message")
        .or_else(|| payload.get("Message"))
        .and_then(Value::as_str)
        .unwrap_or("the provider failed in the middle of the stream");
    format!("{name}: {said}")
}

/// ConverseStream events read into canonical chunks.
#[derive(Debug)]
pub struct EventDecoder {
    id: String,
    model: String,
    created: u64,
    usage: Option<Usage>,
    /// The role chunk went out.
    started: bool,
    /// Content block index → canonical tool call index, for toolUse blocks.
    tools: Vec<(u64, usize)>,
    /// `messageStop` came (the usage may still follow).
    stopped: bool,
}

impl EventDecoder {
    /// A decoder for one stream.
    pub fn new(context: &Context) -> Self {
        Self {
            id: answer_id(context.created),
            model: context.model.clone(),
            created: context.created,
            usage: None,
            started: false,
            tools: Vec::new(),
            stopped: false,
        }
    }

    fn chunk(&self, delta: Value, finish: Option<&str>) -> Value {
        openai::chunk(&self.id, &self.model, self.created, delta, finish)
    }

    /// The role chunk, once, before anything else (at `messageStart`, or the first content if
    /// that never came).
    fn start(&mut self, out: &mut Vec<Value>) {
        if !self.started {
            self.started = true;
            out.push(self.chunk(json!({"role": "assistant", "content": ""}), None));
        }
    }

    fn usage_chunk(&self) -> Value {
        let usage = self.usage.unwrap_or_default();
        openai::usage_chunk(&self.id, &self.model, self.created, &usage)
    }

    fn block_start(&mut self, event: &Value, out: &mut Vec<Value>) {
        let Some(tool) = event.pointer("/start/toolUse") else {
            return;
        };
        let index = event
            .get("contentBlockIndex")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        let call = self.tools.len();
        self.tools.push((index, call));
        out.push(self.chunk(
            json!({"tool_calls": [{"index": call,
                "id": tool.get("toolUseId").cloned().unwrap_or(Value::Null),
                "type": "function",
                "function": {"name": tool.get("name").cloned().unwrap_or(Value::Null), "arguments": ""}}]}),
            None,
        ));
    }

    fn block_delta(&self, event: &Value, out: &mut Vec<Value>) {
        let delta = event.get("delta").unwrap_or(&Value::Null);
        if let Some(text) = delta.get("text") {
            out.push(self.chunk(json!({ "content": text }), None));
        } else if let Some(input) = delta.pointer("/toolUse/input") {
            let index = event
                .get("contentBlockIndex")
                .and_then(Value::as_u64)
                .unwrap_or(0);
            if let Some(&(_, call)) = self.tools.iter().find(|(i, _)| *i == index) {
                out.push(self.chunk(
                    json!({"tool_calls": [{"index": call, "function": {"arguments": input}}]}),
                    None,
                ));
            }
        } else if let Some(text) = delta.pointer("/reasoningContent/text") {
            out.push(self.chunk(json!({ "reasoning_content": text }), None));
        }
        // A reasoning signature or redacted reasoning has no canonical place.
    }
}

impl Decoder for EventDecoder {
    fn event(&mut self, event: &Event, out: &mut Vec<Value>) -> Result<bool, UpstreamError> {
        let name = event.event.as_deref().unwrap_or("");
        let parsed: Value = serde_json::from_str(&event.data)
            .map_err(|_| UpstreamError("the provider sent an event that is not JSON".into()))?;
        if is_failure(name) {
            return Err(UpstreamError(failure_message(name, &parsed)));
        }
        match name {
            "messageStart" => self.start(out),
            "contentBlockStart" => {
                self.start(out);
                self.block_start(&parsed, out);
            }
            "contentBlockDelta" => {
                self.start(out);
                self.block_delta(&parsed, out);
            }
            "messageStop" => {
                self.start(out);
                self.stopped = true;
                let stop = parsed.get("stopReason").and_then(Value::as_str);
                out.push(self.chunk(json!({}), Some(finish_from_stop(stop))));
            }
            "metadata" => {
                if let Some(usage) = parsed.get("usage").and_then(usage_from_value) {
                    self.usage.get_or_insert_default().merge(usage);
                }
                if self.stopped {
                    out.push(self.usage_chunk());
                    return Ok(true);
                }
            }
            _ => {} // contentBlockStop, and events added later
        }
        Ok(false)
    }

    /// Complete when the model stopped: a stream cut before `metadata` lost only the usage.
    fn end(&mut self, out: &mut Vec<Value>) -> bool {
        // Stopped, but the usage (`metadata`) never came: no usage chunk rather than one of
        // zeros a client would believe (metering settles on the reservation).
        if self.stopped && self.usage.is_some() {
            out.push(self.usage_chunk());
        }
        self.stopped
    }

    fn usage(&self) -> Option<Usage> {
        self.usage
    }
}

/// What kind of content block is open in an [`EventEncoder`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    Text,
    Reasoning,
    Tool(u64),
}

/// Canonical chunks written as a ConverseStream (binary event-stream messages): what a Converse
/// front door would send, and what lets a canonical stream be checked against the decoder.
#[derive(Debug, Default)]
pub struct EventEncoder {
    started: bool,
    /// The open block and its index.
    open: Option<(Open, u64)>,
    next_block: u64,
    /// Canonical tool call index → content block index.
    tools: Vec<(u64, u64)>,
    finish: Option<String>,
    usage: Option<Usage>,
}

fn event(out: &mut Vec<u8>, name: &str, payload: &Value) {
    out.extend(encode_event(name, payload.to_string().as_bytes()));
}

impl EventEncoder {
    fn start(&mut self, out: &mut Vec<u8>) {
        if !self.started {
            self.started = true;
            event(out, "messageStart", &json!({"role": "assistant"}));
        }
    }

    fn close(&mut self, out: &mut Vec<u8>) {
        if let Some((_, index)) = self.open.take() {
            event(
                out,
                "contentBlockStop",
                &json!({ "contentBlockIndex": index }),
            );
        }
    }

    /// The index of the open block of `kind`, a new one opened when another is open.
    fn block(&mut self, kind: Open, out: &mut Vec<u8>) -> u64 {
        if let Some((open, index)) = self.open
            && open == kind
        {
            return index;
        }
        self.close(out);
        let index = self.next_block;
        self.next_block += 1;
        self.open = Some((kind, index));
        index
    }

    fn text(&mut self, kind: Open, text: &str, out: &mut Vec<u8>) {
        if text.is_empty() {
            return;
        }
        let index = self.block(kind, out);
        let delta = match kind {
            Open::Reasoning => json!({"reasoningContent": {"text": text}}),
            _ => json!({ "text": text }),
        };
        event(
            out,
            "contentBlockDelta",
            &json!({"contentBlockIndex": index, "delta": delta}),
        );
    }

    fn tool_call(&mut self, call: &Value, out: &mut Vec<u8>) {
        let call_index = call.get("index").and_then(Value::as_u64).unwrap_or(0);
        let known = self.tools.iter().find(|(i, _)| *i == call_index);
        let index = match known {
            Some(&(_, index)) => index,
            None => {
                let index = self.block(Open::Tool(call_index), out);
                self.tools.push((call_index, index));
                event(
                    out,
                    "contentBlockStart",
                    &json!({"contentBlockIndex": index, "start": {"toolUse": {
                        "toolUseId": call.get("id").cloned().unwrap_or(Value::Null),
                        "name": call.pointer("/function/name").cloned().unwrap_or(Value::Null)}}}),
                );
                index
            }
        };
        if let Some(arguments) = call.pointer("/function/arguments").and_then(Value::as_str)
            && !arguments.is_empty()
        {
            event(
                out,
                "contentBlockDelta",
                &json!({"contentBlockIndex": index, "delta": {"toolUse": {"input": arguments}}}),
            );
        }
    }
}

impl Encoder for EventEncoder {
    fn chunk(&mut self, chunk: &Value, out: &mut Vec<u8>) {
        self.start(out);
        if let Some(usage) = chunk.get("usage").and_then(openai::usage_from_value) {
            self.usage = Some(usage);
        }
        let Some(choice) = openai::choice_delta(chunk) else {
            return;
        };
        if let Some(text) = choice.reasoning {
            self.text(Open::Reasoning, text, out);
        }
        if let Some(text) = choice.content {
            self.text(Open::Text, text, out);
        }
        for call in openai::tool_calls(choice.delta) {
            self.tool_call(call, out);
        }
        if let Some(finish) = choice.finish {
            self.finish = Some(finish.to_owned());
        }
    }

    fn done(&mut self, out: &mut Vec<u8>) {
        self.start(out);
        self.close(out);
        let stop = stop_from_finish(self.finish.as_deref());
        event(out, "messageStop", &json!({ "stopReason": stop }));
        let usage = usage_value(&self.usage.unwrap_or_default());
        event(
            out,
            "metadata",
            &json!({"usage": usage, "metrics": {"latencyMs": 0}}),
        );
    }

    fn error(&mut self, message: &str, out: &mut Vec<u8>) {
        out.extend(encode_exception("internalServerException", message));
    }
}

#[cfg(test)]
mod tests {
    use super::super::super::stream::{Framing, INCOMPLETE_STREAM};
    use super::super::eventstream::EventStream;
    use super::*;

    fn context() -> Context {
        Context {
            model: "anthropic.claude-3-5-sonnet-20240620-v1:0".into(),
            created: 1700,
            client_wants_usage: true,
            items: None,
        }
    }

    fn wire(events: &[(&str, Value)]) -> Vec<u8> {
        events
            .iter()
            .flat_map(|(name, payload)| encode_event(name, payload.to_string().as_bytes()))
            .collect()
    }

    /// Frames and decodes `bytes`: the canonical chunks, whether the answer completed, and the
    /// upstream's failure if one came.
    fn decode(bytes: &[u8]) -> (Vec<Value>, bool, Option<UpstreamError>, Option<Usage>) {
        let mut framing = EventStream::default();
        let mut events = Vec::new();
        framing.feed(bytes, &mut events).unwrap();
        framing.finish(&mut events).unwrap();
        let mut decoder = EventDecoder::new(&context());
        let mut chunks = Vec::new();
        for event in &events {
            match decoder.event(event, &mut chunks) {
                Ok(true) => return (chunks, true, None, decoder.usage()),
                Ok(false) => {}
                Err(error) => return (chunks, false, Some(error), decoder.usage()),
            }
        }
        let complete = decoder.end(&mut chunks);
        (chunks, complete, None, decoder.usage())
    }

    fn deltas(chunks: &[Value]) -> Vec<Value> {
        chunks
            .iter()
            .filter_map(|c| c.pointer("/choices/0/delta").cloned())
            .collect()
    }

    fn tool_stream() -> Vec<(&'static str, Value)> {
        vec![
            ("messageStart", json!({"role": "assistant", "p": "abc"})),
            (
                "contentBlockDelta",
                json!({"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": "hmm"}}}),
            ),
            (
                "contentBlockDelta",
                json!({"contentBlockIndex": 0, "delta": {"reasoningContent": {"signature": "s"}}}),
            ),
            ("contentBlockStop", json!({"contentBlockIndex": 0})),
            (
                "contentBlockDelta",
                json!({"contentBlockIndex": 1, "delta": {"text": "Let me check."}}),
            ),
            ("contentBlockStop", json!({"contentBlockIndex": 1})),
            (
                "contentBlockStart",
                json!({"contentBlockIndex": 2, "start": {"toolUse": {"toolUseId": "tooluse_a", "name": "get_weather"}}}),
            ),
            (
                "contentBlockDelta",
                json!({"contentBlockIndex": 2, "delta": {"toolUse": {"input": "{\"city\":"}}}),
            ),
            (
                "contentBlockDelta",
                json!({"contentBlockIndex": 2, "delta": {"toolUse": {"input": "\"Paris\"}"}}}),
            ),
            ("contentBlockStop", json!({"contentBlockIndex": 2})),
            ("messageStop", json!({"stopReason": "tool_use"})),
            (
                "metadata",
                json!({"usage": {"inputTokens": 30, "outputTokens": 12, "totalTokens": 50,
                    "cacheReadInputTokens": 8}, "metrics": {"latencyMs": 300}}),
            ),
        ]
    }

    #[test]
    fn a_converse_stream_decodes_into_canonical_chunks() {
        let (chunks, complete, error, usage) = decode(&wire(&tool_stream()));
        assert!(complete);
        assert_eq!(error, None);
        assert_eq!(
            deltas(&chunks),
            vec![
                json!({"role": "assistant", "content": ""}),
                json!({"reasoning_content": "hmm"}),
                json!({"content": "Let me check."}),
                json!({"tool_calls": [{"index": 0, "id": "tooluse_a", "type": "function",
                    "function": {"name": "get_weather", "arguments": ""}}]}),
                json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\":"}}]}),
                json!({"tool_calls": [{"index": 0, "function": {"arguments": "\"Paris\"}"}}]}),
                json!({}),
            ]
        );
        let finish: Vec<&Value> = chunks
            .iter()
            .filter_map(|c| c.pointer("/choices/0/finish_reason"))
            .filter(|f| !f.is_null())
            .collect();
        assert_eq!(finish, [&json!("tool_calls")]);
        let last = chunks.last().unwrap();
        assert_eq!(
            last["usage"],
            json!({"prompt_tokens": 38, "completion_tokens": 12, "total_tokens": 50,
                "prompt_tokens_details": {"cached_tokens": 8}})
        );
        assert_eq!(last["id"], "bedrock-1700");
        assert_eq!(last["model"], "anthropic.claude-3-5-sonnet-20240620-v1:0");
        assert_eq!(usage.map(|u| u.cached_input_tokens), Some(8));
    }

    #[test]
    fn a_stream_that_stopped_is_complete_at_its_end_even_without_metadata() {
        let mut events = tool_stream();
        events.pop();
        let (chunks, complete, _, _) = decode(&wire(&events));
        assert!(complete);
        // No usage came, and none is made up.
        assert!(
            chunks
                .iter()
                .all(|c| c.get("usage").is_none_or(Value::is_null))
        );
        // Cut before the stop: incomplete.
        events.truncate(5);
        let (_, complete, error, _) = decode(&wire(&events));
        assert!(!complete);
        assert_eq!(error, None);
    }

    #[test]
    fn an_exception_mid_stream_is_the_upstreams_failure() {
        for exception in [
            "internalServerException",
            "modelStreamErrorException",
            "validationException",
            "throttlingException",
            "serviceUnavailableException",
        ] {
            let mut bytes = wire(&tool_stream()[..3]);
            bytes.extend(encode_exception(exception, "too many tokens"));
            let (chunks, complete, error, _) = decode(&bytes);
            assert!(!complete);
            let UpstreamError(message) = error.expect("a failure");
            assert!(message.contains(exception), "{message}");
            assert!(message.contains("too many tokens"), "{message}");
            assert_eq!(deltas(&chunks).len(), 2);
        }
    }

    #[test]
    fn canonical_chunks_encode_into_a_stream_that_decodes_back() {
        let (chunks, _, _, _) = decode(&wire(&tool_stream()));
        let mut encoder = EventEncoder::default();
        let mut bytes = Vec::new();
        for chunk in &chunks {
            encoder.chunk(chunk, &mut bytes);
        }
        encoder.done(&mut bytes);
        let (again, complete, error, usage) = decode(&bytes);
        assert!(complete);
        assert_eq!(error, None);
        assert_eq!(deltas(&again), deltas(&chunks));
        assert_eq!(usage.map(|u| u.total_tokens()), Some(50));
        let mut failed = Vec::new();
        encoder.error(INCOMPLETE_STREAM, &mut failed);
        let (_, _, error, _) = decode(&failed);
        assert!(error.is_some_and(|e| e.0.contains(INCOMPLETE_STREAM)));
    }
}
