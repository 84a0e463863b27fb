//! Streams re-framed event by event: a [`Decoder`] turns one upstream event (in the provider's
//! format) into canonical OpenAI chunks, an [`Encoder`] turns canonical chunks into the client's
//! wire bytes. A [`Reframe`] is what the body layer drives: the two composed, or a cheaper
//! pass-through when the client speaks the upstream's format (the bytes are kept, only usage
//! and failures are read on the way).

use serde_json::Value;

use super::Format;
use super::dialect::dialect;
use crate::sse::Event;
use crate::usage::{FinishReason, Usage};

/// How a stream's bytes are cut into events, before a [`Decoder`] or a [`Reframe`] reads them:
/// each dialect's [`super::dialect::Dialect::framing`]. Every format streams server-sent events
/// but Bedrock's Converse, whose AWS binary event-stream
/// ([`super::bedrock::eventstream::EventStream`]) maps each of its messages to an [`Event`]
/// (its type as the event name, its payload as the data), so the rest of the stream path stays
/// as it is; another framing (JSON lines) would do the same.
pub trait Framing: Send {
    /// Reads more bytes; complete events are appended to `out`.
    fn feed(&mut self, bytes: &[u8], out: &mut Vec<Event>) -> Result<(), FramingError>;
    /// The input ended: whatever event is left complete is appended.
    fn finish(&mut self, out: &mut Vec<Event>) -> Result<(), FramingError>;
}

/// Why a stream could not be cut into events (safe to show the client).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FramingError(pub String);

impl Framing for crate::sse::Parser {
    fn feed(&mut self, bytes: &[u8], out: &mut Vec<Event>) -> Result<(), FramingError> {
        crate::sse::Parser::feed(self, bytes, out).map_err(|e| FramingError(e.to_string()))
    }

    fn finish(&mut self, out: &mut Vec<Event>) -> Result<(), FramingError> {
        crate::sse::Parser::finish(self, out).map_err(|e| FramingError(e.to_string()))
    }
}

/// What the stream does after an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// More to come.
    Continue,
    /// The upstream said the answer is complete; nothing after this matters.
    Complete,
    /// The upstream reported a failure in its own format; the client got an error event.
    Failed,
}

/// A failure the upstream reported inside its stream (an Anthropic `error` event, a Gemini
/// error object, a Cohere `ERROR` finish), with a message safe to show the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamError(pub String);

/// One upstream format, read into canonical chunks.
pub trait Decoder: Send {
    /// Reads one event; canonical chunks are appended to `out`. `Ok(true)` when the upstream
    /// said the answer is complete.
    fn event(&mut self, event: &Event, out: &mut Vec<Value>) -> Result<bool, UpstreamError>;
    /// The upstream's input ended without a completion marker (formats without one, such as
    /// Gemini, complete here): `Ok(true)` if the answer is complete.
    fn end(&mut self, out: &mut Vec<Value>) -> bool;
    /// What the upstream reported so far.
    fn usage(&self) -> Option<Usage>;
}

/// Canonical chunks written in one client format.
pub trait Encoder: Send {
    /// Writes one chunk.
    fn chunk(&mut self, chunk: &Value, out: &mut Vec<u8>);
    /// Writes the end of a complete answer.
    fn done(&mut self, out: &mut Vec<u8>);
    /// Writes a failure (the stream then ends without a completion marker).
    fn error(&mut self, message: &str, out: &mut Vec<u8>);
}

/// What a client is told of a stream that ended before its answer did.
pub const INCOMPLETE_STREAM: &str = "the provider ended the stream before the answer was complete";

/// What the body layer drives: one upstream event in, the client's bytes out.
pub trait Reframe: Send {
    /// Handles one upstream event.
    fn event(&mut self, event: &Event, out: &mut Vec<u8>) -> Flow;
    /// The upstream's input ended cleanly (no transport error). A relay that saw no end of
    /// its format's answer says the answer is incomplete.
    fn end(&mut self, out: &mut Vec<u8>) -> Flow {
        self.fail(INCOMPLETE_STREAM, out);
        Flow::Failed
    }
    /// The upstream broke (transport error, timeout): writes the client-format error.
    fn fail(&mut self, message: &str, out: &mut Vec<u8>);
    /// The usage reported so far.
    fn usage(&self) -> Option<Usage>;
    /// Why the model stopped, once the stream said so.
    fn finish_reason(&self) -> Option<FinishReason>;
}

/// Keeps the last finish reason canonical `chunks` name.
fn note_finish(chunks: &[Value], finish: &mut Option<FinishReason>) {
    if let Some(reason) = chunks.iter().rev().find_map(FinishReason::of_canonical) {
        *finish = Some(reason);
    }
}

/// What a stream translation needs to know about the request.
#[derive(Clone, Debug)]
pub struct Context {
    /// The model that served the request (used when the upstream does not name it).
    pub model: String,
    /// Unix seconds for the `created` field of OpenAI chunks.
    pub created: u64,
    /// The OpenAI client asked for `stream_options.include_usage` (the usage chunk is theirs).
    pub client_wants_usage: bool,
    /// Where a Responses stream hands each finished assistant message (so a later request may
    /// refer to it by id, see [`super::responses`]).
    pub items: Option<ItemSink>,
}

/// Receives the assistant messages a Responses answer returned, each whole, with its id.
#[derive(Clone)]
pub struct ItemSink(pub std::sync::Arc<dyn Fn(&Value) + Send + Sync>);

impl ItemSink {
    /// Hands over one item.
    pub fn keep(&self, item: &Value) {
        (self.0)(item);
    }
}

impl std::fmt::Debug for ItemSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ItemSink")
    }
}

/// The re-framer for an upstream format and a client format: the format's own relay when the
/// two are the same and its dialect has one, else the upstream's decoder composed with the
/// client's encoder through canonical chunks.
pub fn reframer(upstream: Format, client: Format, context: Context) -> Box<dyn Reframe> {
    let from = dialect(upstream);
    if upstream == client
        && let Some(relay) = from.relay(&context)
    {
        return relay;
    }
    Box::new(Translated {
        decoder: from.stream_decoder(&context),
        encoder: dialect(client).stream_encoder(&context),
        chunks: Vec::new(),
        finish: None,
    })
}

/// A stream relayed to a client of the upstream's own format: each event as it came, read on
/// the way by the format's decoder for its usage and whether the answer completed.
pub struct Relay {
    decoder: Box<dyn Decoder>,
    /// The decoder's chunks, read and dropped.
    scratch: Vec<Value>,
    /// The format's own error event, written when the stream breaks.
    fail: fn(&str) -> String,
    finish: Option<FinishReason>,
}

impl Relay {
    /// Relays events as they come, read by `decoder`; `fail` writes the format's own error
    /// event when the stream breaks.
    pub fn new(decoder: Box<dyn Decoder>, fail: fn(&str) -> String) -> Self {
        Self {
            decoder,
            scratch: Vec::new(),
            fail,
            finish: None,
        }
    }
}

impl Reframe for Relay {
    fn event(&mut self, event: &Event, out: &mut Vec<u8>) -> Flow {
        crate::sse::write_event(out, event.event.as_deref(), &event.data);
        let result = self.decoder.event(event, &mut self.scratch);
        note_finish(&self.scratch, &mut self.finish);
        self.scratch.clear();
        match result {
            Ok(false) => Flow::Continue,
            Ok(true) => Flow::Complete,
            Err(_) => Flow::Failed,
        }
    }

    fn end(&mut self, out: &mut Vec<u8>) -> Flow {
        let complete = self.decoder.end(&mut self.scratch);
        note_finish(&self.scratch, &mut self.finish);
        self.scratch.clear();
        if complete {
            return Flow::Complete;
        }
        self.fail(INCOMPLETE_STREAM, out);
        Flow::Failed
    }

    fn fail(&mut self, message: &str, out: &mut Vec<u8>) {
        crate::sse::write_event(out, None, &(self.fail)(message));
    }

    fn usage(&self) -> Option<Usage> {
        self.decoder.usage()
    }

    fn finish_reason(&self) -> Option<FinishReason> {
        self.finish
    }
}

/// A decoder and an encoder composed through canonical chunks.
struct Translated {
    decoder: Box<dyn Decoder>,
    encoder: Box<dyn Encoder>,
    /// Reused between events.
    chunks: Vec<Value>,
    finish: Option<FinishReason>,
}

impl Translated {
    fn flush(&mut self, out: &mut Vec<u8>) {
        note_finish(&self.chunks, &mut self.finish);
        for chunk in self.chunks.drain(..) {
            self.encoder.chunk(&chunk, out);
        }
    }
}

impl Reframe for Translated {
    fn event(&mut self, event: &Event, out: &mut Vec<u8>) -> Flow {
        let result = self.decoder.event(event, &mut self.chunks);
        self.flush(out);
        match result {
            Ok(false) => Flow::Continue,
            Ok(true) => {
                self.encoder.done(out);
                Flow::Complete
            }
            Err(UpstreamError(message)) => {
                self.encoder.error(&message, out);
                Flow::Failed
            }
        }
    }

    fn end(&mut self, out: &mut Vec<u8>) -> Flow {
        let complete = self.decoder.end(&mut self.chunks);
        self.flush(out);
        if complete {
            self.encoder.done(out);
            Flow::Complete
        } else {
            self.encoder.error(INCOMPLETE_STREAM, out);
            Flow::Failed
        }
    }

    fn fail(&mut self, message: &str, out: &mut Vec<u8>) {
        self.encoder.error(message, out);
    }

    fn usage(&self) -> Option<Usage> {
        self.decoder.usage()
    }
    fn finish_reason(&self) -> Option<FinishReason> {
        self.finish
    }
}
