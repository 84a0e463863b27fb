//! Server-sent events framing, apart from what the events mean: an incremental parser fed the
//! upstream body in whatever reads the network gives (an event split across reads, several in
//! one read, `\n`, `\r\n` or `\r` line ends, comments, `id:`/`retry:` fields, multi-line
//! `data:`), and a writer. Streams are re-framed event by event, never buffered whole.
//!
//! Follows the WHATWG event-stream grammar, with one deliberate difference: an event still
//! pending when the input ends (no trailing blank line) is delivered by [`Parser::finish`]
//! instead of dropped, since some upstreams close right after their last `data:` line.

use bytes::Bytes;

/// The largest event (or line) the parser holds before giving up, so a broken or hostile
/// upstream cannot grow the gateway's memory without bound.
pub const DEFAULT_MAX_EVENT_BYTES: usize = 8 * 1024 * 1024;

/// One dispatched event.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Event {
    /// The `event:` name, if the event had one (Anthropic and Cohere name theirs; OpenAI and
    /// Gemini do not).
    pub event: Option<String>,
    /// The `data:` lines joined with `\n`.
    pub data: String,
    /// The last `id:` seen in this event.
    pub id: Option<String>,
    /// A `retry:` reconnection time in milliseconds.
    pub retry: Option<u64>,
}

/// Why a stream could not be framed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SseError {
    /// One event grew past the limit.
    #[error("a server-sent event exceeded {0} bytes")]
    TooLarge(usize),
}

/// The incremental parser. Feed it reads with [`Parser::feed`], then call [`Parser::finish`]
/// at end of input.
#[derive(Debug)]
pub struct Parser {
    /// The current, unfinished line.
    line: Vec<u8>,
    /// The previous read ended with `\r`: a `\n` starting the next one belongs to it.
    after_cr: bool,
    /// Nothing has been read yet (a leading byte-order mark is skipped).
    at_start: bool,
    /// The event being assembled.
    pending: Pending,
    max_event_bytes: usize,
}

#[derive(Debug, Default)]
struct Pending {
    event: Option<String>,
    data: String,
    has_data: bool,
    id: Option<String>,
    retry: Option<u64>,
}

impl Pending {
    fn size(&self) -> usize {
        self.data.len() + self.event.as_ref().map_or(0, String::len)
    }

    /// The event to dispatch at a blank line, if it carried data (the grammar drops events
    /// without any `data:` line); the pending state is reset either way.
    fn take(&mut self) -> Option<Event> {
        let pending = std::mem::take(self);
        pending.has_data.then_some(Event {
            event: pending.event,
            data: pending.data,
            id: pending.id,
            retry: pending.retry,
        })
    }
}

impl Default for Parser {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_EVENT_BYTES)
    }
}

impl Parser {
    /// A parser that refuses events larger than `max_event_bytes`.
    pub fn new(max_event_bytes: usize) -> Self {
        Self {
            line: Vec::new(),
            after_cr: false,
            at_start: true,
            pending: Pending::default(),
            max_event_bytes,
        }
    }

    /// Feeds one read; complete events are appended to `out`.
    pub fn feed(&mut self, mut bytes: &[u8], out: &mut Vec<Event>) -> Result<(), SseError> {
        if self.at_start && !bytes.is_empty() {
            // The BOM may itself be split across reads; only a whole one at the start is
            // skipped, which is what every real upstream sends if it sends one at all.
            if let Some(rest) = bytes.strip_prefix(b"\xEF\xBB\xBF") {
                bytes = rest;
            }
            self.at_start = false;
        }
        // An empty read says nothing about whether a `\n` follows a `\r` that ended the last one.
        if self.after_cr && !bytes.is_empty() {
            self.after_cr = false;
            if let Some(rest) = bytes.strip_prefix(b"\n") {
                bytes = rest;
            }
        }
        // `memchr2` looks at a vector of bytes at a time; a byte-by-byte `position` was a fifth
        // of a relayed stream's instructions (callgrind).
        while let Some(end) = memchr::memchr2(b'\n', b'\r', bytes) {
            let (line, rest) = bytes.split_at(end);
            let line_end = rest[0];
            bytes = &rest[1..];
            if line_end == b'\r' {
                match bytes.first() {
                    Some(b'\n') => bytes = &bytes[1..],
                    Some(_) => {}
                    None => self.after_cr = true,
                }
            }
            if self.line.is_empty() {
                self.line_done(line, out)?;
            } else {
                self.push_partial(line)?;
                let whole = std::mem::take(&mut self.line);
                self.line_done(&whole, out)?;
            }
        }
        self.push_partial(bytes)
    }

    /// Ends the input: a last line without a line end is processed and a pending event
    /// without its blank line is delivered.
    pub fn finish(&mut self, out: &mut Vec<Event>) -> Result<(), SseError> {
        if !self.line.is_empty() {
            let whole = std::mem::take(&mut self.line);
            self.line_done(&whole, out)?;
        }
        self.after_cr = false;
        out.extend(self.pending.take());
        Ok(())
    }

    fn push_partial(&mut self, bytes: &[u8]) -> Result<(), SseError> {
        if self.line.len() + bytes.len() + self.pending.size() > self.max_event_bytes {
            return Err(SseError::TooLarge(self.max_event_bytes));
        }
        self.line.extend_from_slice(bytes);
        Ok(())
    }

    fn line_done(&mut self, line: &[u8], out: &mut Vec<Event>) -> Result<(), SseError> {
        if line.is_empty() {
            out.extend(self.pending.take());
            return Ok(());
        }
        if line[0] == b':' {
            return Ok(()); // a comment (keep-alive)
        }
        let (name, value) = match line.iter().position(|&b| b == b':') {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &b""[..]),
        };
        if self.pending.size() + value.len() > self.max_event_bytes {
            return Err(SseError::TooLarge(self.max_event_bytes));
        }
        // Valid UTF-8 (every real upstream's) is checked by `from_utf8`'s fast path; the lossy
        // conversion, which walks its input chunk by chunk, was another fifth (callgrind), and
        // is kept for the invalid bytes it replaces.
        let value = match std::str::from_utf8(value) {
            Ok(text) => std::borrow::Cow::Borrowed(text),
            Err(_) => String::from_utf8_lossy(value),
        };
        match name {
            b"data" => {
                if self.pending.has_data {
                    self.pending.data.push('\n');
                }
                self.pending.data.push_str(&value);
                self.pending.has_data = true;
            }
            b"event" => self.pending.event = Some(value.into_owned()),
            // An id with NUL is ignored by the grammar.
            b"id" if !value.contains('\0') => self.pending.id = Some(value.into_owned()),
            b"retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                self.pending.retry = value.parse().ok();
            }
            _ => {} // unknown fields are ignored
        }
        Ok(())
    }
}

/// Parses a whole SSE body at once (tests, small bodies).
pub fn parse_all(bytes: &[u8]) -> Result<Vec<Event>, SseError> {
    let mut parser = Parser::default();
    let mut events = Vec::new();
    parser.feed(bytes, &mut events)?;
    parser.finish(&mut events)?;
    Ok(events)
}

/// Appends one event in wire form to `out`: `event:` if named, one `data:` line per line of
/// `data`, and the blank line that dispatches it.
pub fn write_event(out: &mut Vec<u8>, event: Option<&str>, data: &str) {
    if let Some(name) = event {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(name.as_bytes());
        out.push(b'\n');
    }
    for line in data.split('\n') {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(line.strip_suffix('\r').unwrap_or(line).as_bytes());
        out.push(b'\n');
    }
    out.push(b'\n');
}

/// One event in wire form.
pub fn event_bytes(event: Option<&str>, data: &str) -> Bytes {
    let mut out = Vec::with_capacity(data.len() + 32);
    write_event(&mut out, event, data);
    Bytes::from(out)
}

/// Writes a parsed event back in wire form (including `id:` and `retry:`), so a pass-through
/// can re-frame without losing fields.
pub fn write_full(out: &mut Vec<u8>, event: &Event) {
    if let Some(id) = &event.id {
        out.extend_from_slice(b"id: ");
        out.extend_from_slice(id.as_bytes());
        out.push(b'\n');
    }
    if let Some(retry) = event.retry {
        out.extend_from_slice(format!("retry: {retry}\n").as_bytes());
    }
    write_event(out, event.event.as_deref(), &event.data);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(event: Option<&str>, data: &str) -> Event {
        Event {
            event: event.map(str::to_owned),
            data: data.to_owned(),
            ..Event::default()
        }
    }

    #[test]
    fn parses_named_and_unnamed_events() {
        let events =
            parse_all(b"event: message_start\ndata: {\"a\":1}\n\ndata: [DONE]\n\n").unwrap();
        assert_eq!(
            events,
            vec![ev(Some("message_start"), "{\"a\":1}"), ev(None, "[DONE]")]
        );
    }

    #[test]
    fn invalid_utf8_is_replaced_and_valid_text_kept_whole() {
        let events = parse_all(b"event: e\xff\ndata: caf\xc3\xa9 \xc3\ndata: ok\n\n").unwrap();
        assert_eq!(
            events,
            vec![ev(Some("e\u{FFFD}"), "caf\u{e9} \u{FFFD}\nok")]
        );
    }

    #[test]
    fn handles_crlf_cr_and_mixed_line_ends() {
        let events = parse_all(b"data: a\r\n\r\ndata: b\r\rdata: c\n\r\n").unwrap();
        assert_eq!(events, vec![ev(None, "a"), ev(None, "b"), ev(None, "c")]);
    }

    #[test]
    fn a_crlf_split_across_reads_is_one_line_end() {
        let mut parser = Parser::default();
        let mut out = Vec::new();
        parser.feed(b"data: a\r", &mut out).unwrap();
        parser.feed(b"\n\r", &mut out).unwrap();
        assert_eq!(out, vec![ev(None, "a")]);
        parser.feed(b"\ndata: b\n\n", &mut out).unwrap();
        assert_eq!(out, vec![ev(None, "a"), ev(None, "b")]);
    }

    #[test]
    fn an_empty_read_between_cr_and_lf_changes_nothing() {
        let mut parser = Parser::default();
        let mut out = Vec::new();
        parser.feed(b"data: a\r", &mut out).unwrap();
        parser.feed(b"", &mut out).unwrap();
        parser.feed(b"\ndata: b\r\n\r\n", &mut out).unwrap();
        assert_eq!(out, vec![ev(None, "a\nb")]);
    }

    #[test]
    fn skips_comments_and_keeps_id_and_retry() {
        let events = parse_all(b": ping\nid: 7\nretry: 1500\nretry: x\ndata: hi\n\n").unwrap();
        assert_eq!(
            events,
            vec![Event {
                event: None,
                data: "hi".into(),
                id: Some("7".into()),
                retry: Some(1500),
            }]
        );
    }

    #[test]
    fn joins_multi_line_data_and_keeps_a_space_after_the_first() {
        let events = parse_all(b"data:one\ndata:  two\ndata\n\n").unwrap();
        assert_eq!(events, vec![ev(None, "one\n two\n")]);
    }

    #[test]
    fn events_without_data_are_not_dispatched() {
        assert_eq!(parse_all(b"event: x\n\n:c\n\n").unwrap(), vec![]);
        assert_eq!(parse_all(b"data:\n\n").unwrap(), vec![ev(None, "")]);
    }

    #[test]
    fn a_final_event_without_a_blank_line_is_delivered_at_finish() {
        assert_eq!(
            parse_all(b"data: a\n\ndata: last").unwrap(),
            vec![ev(None, "a"), ev(None, "last")]
        );
        assert_eq!(parse_all(b"data: last\n").unwrap(), vec![ev(None, "last")]);
    }

    #[test]
    fn skips_a_leading_bom() {
        assert_eq!(
            parse_all(b"\xEF\xBB\xBFdata: x\n\n").unwrap(),
            vec![ev(None, "x")]
        );
    }

    #[test]
    fn refuses_an_event_past_the_limit() {
        let mut parser = Parser::new(16);
        let mut out = Vec::new();
        assert_eq!(
            parser.feed(b"data: 0123456789", &mut out),
            Ok(()),
            "under the limit so far"
        );
        assert_eq!(
            parser.feed(b"abcdefghij", &mut out),
            Err(SseError::TooLarge(16))
        );
        let mut parser = Parser::new(16);
        let long = [
            b"data: ".as_slice(),
            &[b'x'; 12],
            b"\ndata: ",
            &[b'y'; 12],
            b"\n",
        ]
        .concat();
        assert_eq!(parser.feed(&long, &mut out), Err(SseError::TooLarge(16)));
    }

    #[test]
    fn the_writer_round_trips_through_the_parser() {
        let mut out = Vec::new();
        write_event(&mut out, Some("content_block_delta"), "{\"x\":1}");
        write_event(&mut out, None, "two\nlines");
        write_full(
            &mut out,
            &Event {
                event: Some("e".into()),
                data: "d".into(),
                id: Some("3".into()),
                retry: Some(10),
            },
        );
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            "event: content_block_delta\ndata: {\"x\":1}\n\ndata: two\ndata: lines\n\nid: 3\nretry: 10\nevent: e\ndata: d\n\n"
        );
        let events = parse_all(&out).unwrap();
        assert_eq!(events[0], ev(Some("content_block_delta"), "{\"x\":1}"));
        assert_eq!(events[1], ev(None, "two\nlines"));
        assert_eq!(events[2].id.as_deref(), Some("3"));
    }

    mod split {
        use super::super::*;
        use proptest::prelude::*;

        /// A valid stream: events with names, ids, comments, multi-line data, each with one
        /// of the three line ends.
        fn stream() -> impl Strategy<Value = Vec<u8>> {
            let line_end = prop_oneof![Just("\n"), Just("\r\n"), Just("\r")];
            let event = (
                proptest::option::of("[a-z_]{1,12}"),
                proptest::collection::vec("[ -~é€😀]{0,20}", 1..4),
                proptest::option::of("[0-9]{1,4}"),
                proptest::bool::ANY,
                line_end,
            )
                .prop_map(|(name, data, id, comment, nl)| {
                    let mut s = String::new();
                    if comment {
                        s.push_str(": keep-alive");
                        s.push_str(nl);
                    }
                    if let Some(name) = name {
                        s.push_str(&format!("event: {name}{nl}"));
                    }
                    if let Some(id) = id {
                        s.push_str(&format!("id: {id}{nl}"));
                    }
                    for line in data {
                        s.push_str(&format!("data: {line}{nl}"));
                    }
                    s.push_str(nl);
                    s
                });
            (proptest::collection::vec(event, 0..8), proptest::bool::ANY).prop_map(
                |(events, drop_last_blank)| {
                    let mut all = events.concat();
                    // Sometimes the final blank line is missing (end of input delivers it).
                    if drop_last_blank && (all.ends_with("\n\n") || all.ends_with("\r\r")) {
                        all.pop();
                    }
                    all.into_bytes()
                },
            )
        }

        proptest! {
            #[test]
            fn any_split_yields_the_same_events(
                bytes in stream(),
                cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..12),
            ) {
                let whole = parse_all(&bytes).unwrap();
                let mut points: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
                points.sort_unstable();
                let mut parser = Parser::default();
                let mut events = Vec::new();
                let mut start = 0;
                for point in points {
                    parser.feed(&bytes[start..point], &mut events).unwrap();
                    start = point;
                }
                parser.feed(&bytes[start..], &mut events).unwrap();
                parser.finish(&mut events).unwrap();
                prop_assert_eq!(events, whole);
            }
        }
    }
}
