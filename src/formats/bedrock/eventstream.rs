//! AWS's binary event-stream framing (`application/vnd.amazon.eventstream`), the framing of a
//! ConverseStream answer, cut into [`Event`]s so the rest of the stream path stays the one
//! every format shares. Each message is a prelude (total length, headers length, their CRC32),
//! typed headers, a payload and a CRC32 of the whole: the `aws-smithy-eventstream` crate reads
//! and checks them, so no framing or checksum is written by hand here. Also the writer the
//! gateway's test fakes and this module's tests produce Converse streams with.

use aws_smithy_eventstream::frame::{read_message_from, write_message_to};
use aws_smithy_types::event_stream::{Header, HeaderValue, Message};

use super::super::stream::{Framing, FramingError};
use crate::sse::Event;

/// The media type of an event-stream answer.
pub const MEDIA_TYPE: &str = "application/vnd.amazon.eventstream";

/// The largest message the framing holds before giving up, so a broken or hostile upstream (a
/// tenant's own endpoint) cannot grow the gateway's memory without bound. A ConverseStream
/// message carries one delta (a few KiB); AWS's format allows 16 MiB, which no Converse event
/// comes near, and which per stream would let one upstream pin far more than an SSE event may
/// (8 MiB).
pub const MAX_MESSAGE_BYTES: usize = 1024 * 1024;

/// The prelude: total length, headers length, prelude CRC32 (four bytes each).
const PRELUDE_BYTES: usize = 12;

/// A prelude and the message CRC: the smallest message there is.
const MIN_MESSAGE_BYTES: usize = PRELUDE_BYTES + 4;

/// The event-stream framing: bytes in whatever reads the network gives, one [`Event`] per
/// message out. A message's event name is its `:event-type` header; an exception or error
/// message (`:message-type` `exception` or `error`) is named after its `:exception-type` or
/// `:error-code` header instead (`UnknownException`, `UnknownError` without one), so the
/// decoder reports it as the upstream's failure. The data
/// is the payload (JSON); an error message without one gets `{"message": <:error-message>}`.
#[derive(Debug, Default)]
pub struct EventStream {
    /// Bytes of the message not yet whole.
    pending: Vec<u8>,
}

/// The total length a message's prelude announces, checked against the bounds, and once the
/// whole prelude is at hand against its CRC (so a corrupted length fails at once rather than
/// after the bytes it announces have been waited for and held); `None` while fewer than its
/// four bytes are at hand.
fn announced_length(bytes: &[u8]) -> Result<Option<usize>, FramingError> {
    let Some(length) = bytes.first_chunk::<4>() else {
        return Ok(None);
    };
    let length = u32::from_be_bytes(*length) as usize;
    if !(MIN_MESSAGE_BYTES..=MAX_MESSAGE_BYTES).contains(&length) {
        return Err(FramingError(format!(
            "an event-stream message announced {length} bytes, outside {MIN_MESSAGE_BYTES}..={MAX_MESSAGE_BYTES}"
        )));
    }
    if let Some(prelude) = bytes.first_chunk::<PRELUDE_BYTES>() {
        let (lengths, crc) = prelude.split_at(8);
        if crc32fast::hash(lengths).to_be_bytes() != crc {
            return Err(FramingError(
                "an event-stream message's prelude fails its CRC".into(),
            ));
        }
    }
    Ok(Some(length))
}

impl Framing for EventStream {
    fn feed(&mut self, bytes: &[u8], out: &mut Vec<Event>) -> Result<(), FramingError> {
        self.pending.extend_from_slice(bytes);
        let mut start = 0;
        // Whole messages are read where they lie; only the unfinished tail is kept.
        loop {
            let rest = &self.pending[start..];
            let Some(length) = announced_length(rest)? else {
                break;
            };
            let Some(whole) = rest.get(..length) else {
                break;
            };
            let message = read_message_from(whole).map_err(|error| {
                FramingError(format!("a malformed event-stream message: {error}"))
            })?;
            out.push(event_of(&message)?);
            start += length;
        }
        self.pending.drain(..start);
        // A prelude checked as soon as it is buffered: a corrupted one fails now, not at the end.
        announced_length(&self.pending).map(|_| ())
    }

    fn finish(&mut self, _out: &mut Vec<Event>) -> Result<(), FramingError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        Err(FramingError(format!(
            "the event stream ended in the middle of a message ({} bytes of it)",
            self.pending.len()
        )))
    }
}

/// A string header's value, if the message has it.
fn header<'a>(message: &'a Message, name: &str) -> Option<&'a str> {
    message
        .headers()
        .iter()
        .find(|header| header.name().as_str() == name)
        .and_then(|header| header.value().as_string().ok())
        .map(|value| value.as_str())
}

/// One message as the [`Event`] the decoders read.
fn event_of(message: &Message) -> Result<Event, FramingError> {
    let data = std::str::from_utf8(message.payload())
        .map_err(|_| FramingError("an event-stream payload is not UTF-8".into()))?;
    let (name, data) = match header(message, ":message-type") {
        Some("exception") => (
            header(message, ":exception-type").unwrap_or("UnknownException"),
            data.to_owned(),
        ),
        Some("error") => {
            let data = if data.is_empty() {
                let said = header(message, ":error-message").unwrap_or("");
                serde_json::json!({ "message": said }).to_string()
            } else {
                data.to_owned()
            };
            (
                header(message, ":error-code").unwrap_or("UnknownError"),
                data,
            )
        }
        _ => (
            header(message, ":event-type").unwrap_or(""),
            data.to_owned(),
        ),
    };
    Ok(Event {
        event: Some(name.to_owned()),
        data,
        ..Event::default()
    })
}

/// One message with string headers, written out with its CRCs.
fn encode(headers: &[(&'static str, &str)], payload: &[u8]) -> Vec<u8> {
    let headers = headers
        .iter()
        .map(|(name, value)| Header::new(*name, HeaderValue::String((*value).to_owned().into())))
        .collect();
    let message = Message::new_from_parts(headers, payload.to_vec());
    let mut bytes = Vec::with_capacity(payload.len() + 128);
    // Writing fails only past the format's limits (a header over 32 KiB, a message over
    // 4 GiB), which no event the gateway or a test writes comes near: nothing is written then.
    if write_message_to(&message, &mut bytes).is_err() {
        bytes.clear();
    }
    bytes
}

/// One ConverseStream event (`messageStart`, `contentBlockDelta`, `metadata`, …) with its JSON
/// `payload`, framed as Bedrock sends it. Used by the gateway's test fakes (`tests/common/`)
/// and by the stream encoder that writes canonical chunks as a Converse stream.
pub fn encode_event(event_type: &str, payload: &[u8]) -> Vec<u8> {
    encode(
        &[
            (":event-type", event_type),
            (":content-type", "application/json"),
            (":message-type", "event"),
        ],
        payload,
    )
}

/// One ConverseStream exception (`throttlingException`, `modelStreamErrorException`, …)
/// carrying `{"message": message}`, framed as Bedrock sends it mid-stream. Used by test fakes
/// and by the stream encoder's failure.
pub fn encode_exception(exception_type: &str, message: &str) -> Vec<u8> {
    let payload = serde_json::json!({ "message": message }).to_string();
    encode(
        &[
            (":exception-type", exception_type),
            (":content-type", "application/json"),
            (":message-type", "exception"),
        ],
        payload.as_bytes(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_prelude_that_fails_its_crc_fails_before_the_message_it_announces_arrives() {
        // A plausible length (1,000 bytes) under a wrong prelude CRC: refused on its twelfth
        // byte, not held while the rest trickles in.
        let mut prelude = 1000u32.to_be_bytes().to_vec();
        prelude.extend(100u32.to_be_bytes());
        prelude.extend([0, 0, 0, 0]);
        let mut framing = EventStream::default();
        let mut out = Vec::new();
        assert!(framing.feed(&prelude[..11], &mut out).is_ok());
        assert!(framing.feed(&prelude[11..], &mut out).is_err());
        assert!(out.is_empty());
    }

    fn sample() -> Vec<u8> {
        let mut bytes = encode_event("messageStart", br#"{"role":"assistant"}"#);
        bytes.extend(encode_event(
            "contentBlockDelta",
            br#"{"contentBlockIndex":0,"delta":{"text":"h\u00e9llo"}}"#,
        ));
        bytes.extend(encode_exception("throttlingException", "slow down"));
        bytes
    }

    fn frame(chunks: &[&[u8]]) -> Result<Vec<Event>, FramingError> {
        let mut framing = EventStream::default();
        let mut out = Vec::new();
        for chunk in chunks {
            framing.feed(chunk, &mut out)?;
        }
        framing.finish(&mut out)?;
        Ok(out)
    }

    fn named(name: &str, data: &str) -> Event {
        Event {
            event: Some(name.to_owned()),
            data: data.to_owned(),
            ..Event::default()
        }
    }

    #[test]
    fn messages_become_events_named_by_their_type() {
        let events = frame(&[sample().as_slice()]).unwrap();
        assert_eq!(
            events,
            vec![
                named("messageStart", r#"{"role":"assistant"}"#),
                named(
                    "contentBlockDelta",
                    r#"{"contentBlockIndex":0,"delta":{"text":"h\u00e9llo"}}"#
                ),
                named("throttlingException", r#"{"message":"slow down"}"#),
            ]
        );
    }

    #[test]
    fn an_error_message_is_named_by_its_code_and_carries_its_message() {
        let bytes = encode(
            &[
                (":message-type", "error"),
                (":error-code", "InternalFailure"),
                (":error-message", "it broke"),
            ],
            b"",
        );
        assert_eq!(
            frame(&[bytes.as_slice()]).unwrap(),
            vec![named("InternalFailure", r#"{"message":"it broke"}"#)]
        );
    }

    #[test]
    fn a_stream_cut_inside_a_message_is_an_error_at_its_end() {
        let bytes = sample();
        let error = frame(&[&bytes[..bytes.len() - 1]]).unwrap_err();
        assert!(error.0.contains("middle of a message"), "{error}");
    }

    #[test]
    fn a_length_beyond_the_limit_is_refused_as_soon_as_it_is_read() {
        let mut framing = EventStream::default();
        let mut out = Vec::new();
        let huge = u32::try_from(MAX_MESSAGE_BYTES + 1).unwrap().to_be_bytes();
        assert!(framing.feed(&huge, &mut out).is_err());
        assert!(out.is_empty());
    }

    #[test]
    fn a_corrupted_message_crc_is_an_error() {
        let mut bytes = encode_event("messageStop", br#"{"stopReason":"end_turn"}"#);
        let last = bytes.len() - 1;
        bytes[last] ^= 0x01;
        let error = frame(&[bytes.as_slice()]).unwrap_err();
        assert!(error.0.contains("checksum"), "{error}");
    }

    proptest! {
        #[test]
        fn any_split_of_a_stream_frames_the_same_events(
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..12)
        ) {
            let bytes = sample();
            let mut at: Vec<usize> = cuts.iter().map(|cut| cut.index(bytes.len() + 1)).collect();
            at.sort_unstable();
            let mut chunks: Vec<&[u8]> = Vec::new();
            let mut from = 0;
            for cut in at {
                chunks.push(&bytes[from..cut]);
                from = cut;
            }
            chunks.push(&bytes[from..]);
            let events = frame(&chunks).unwrap();
            prop_assert_eq!(events.len(), 3);
            prop_assert_eq!(events, frame(&[bytes.as_slice()]).unwrap());
        }

        /// CRC32 catches every error of up to 32 bits: a flipped byte anywhere (length,
        /// headers, payload, either checksum) fails the stream, never frames another event.
        #[test]
        fn flipping_any_byte_of_a_stream_is_an_error(
            at in any::<prop::sample::Index>(),
            mask in 1u8..=255,
        ) {
            let mut bytes = sample();
            let at = at.index(bytes.len());
            bytes[at] ^= mask;
            prop_assert!(frame(&[bytes.as_slice()]).is_err(), "flipped byte {} by {:#x}", at, mask);
        }
    }
}
