//! The gateway's response body: a whole buffer, or an upstream event stream re-framed event by
//! event into the client's format (a pass-through when the formats match). A stream that fails
//! mid-way — transport error, the provider's total timeout, an error event in the provider's
//! own format — ends with an error event in the client's format, never with a fake end.
//!
//! A body served by an attempt carries a [`Reporter`]: it reports exactly one completion when the
//! body ends, fails or is dropped.

use std::future::Future as _;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::BodyExt as _;
use http_body_util::combinators::BoxBody;
use hyper::body::{Body, Frame, SizeHint};

use super::completion::{End, Reporter};
use crate::formats::stream::{Flow, Framing, Reframe};
use crate::sse::Event;

/// Bytes of re-framed events gathered into one frame for the client at most, from upstream
/// frames that are already read.
const COALESCE_UP_TO: usize = 32 * 1024;

/// Turns of the scheduler in a row that bring no more of the upstream's body before what was
/// read goes out (see `Stream::poll`).
const IDLE_TURNS: u8 = 1;

/// The same once what is held came in more than one chunk: the upstream is ahead of the relay
/// (an answer it sent whole, a fast local model), and hyper's connection task hands the chunks
/// it has already read over a turn or two apart, the body's end later still. With
/// [`IDLE_TURNS`] alone the end of a stream read whole (`data: [DONE]` and the chunked body's
/// end) went out in a write of its own: strace counted 4.4 writes a streamed request at
/// concurrency 1, 3.0 with three turns (the upstream's, the head's, the events'), and the
/// gateway's CPU a streamed request at concurrency 16 fell ~10 %. The end was seen two idle
/// turns late; the third is margin for a busier runtime. Only for bursts: held after every
/// event of a stream whose events come apart (a model generating), two more turns each were
/// +12 % instructions a request (callgrind) for nothing.
const IDLE_TURNS_IN_A_BURST: u8 = 3;

/// How long what was read is held at most while more keeps arriving (see `Stream::poll`): a
/// busy runtime's turns are long, and an upstream that sends something every turn must not
/// keep its client waiting for a frame's worth. The tests count turns, not time: theirs is long
/// enough that a test thread preempted mid-hold does not end it early.
#[cfg(not(test))]
const HOLD_AT_MOST: std::time::Duration = std::time::Duration::from_millis(1);
#[cfg(test)]
const HOLD_AT_MOST: std::time::Duration = std::time::Duration::from_secs(5);

/// A boxed error for failed transfers.
pub type BodyError = Box<dyn std::error::Error + Send + Sync>;

/// An upstream body, whatever its concrete type (hyper's `Incoming`, or a test body).
pub type UpstreamBody = BoxBody<Bytes, BodyError>;

/// Boxes a hyper body into an [`UpstreamBody`].
pub fn upstream_body<B>(body: B) -> UpstreamBody
where
    B: Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    body.map_err(|error| Box::new(error) as BodyError).boxed()
}

/// Every body the gateway sends.
pub struct ResponseBody {
    kind: Kind,
    meter: Option<Reporter>,
}

enum Kind {
    /// A complete buffer, taken when sent.
    Full(Option<Bytes>),
    /// An upstream event stream being re-framed.
    Stream(Box<Stream>),
}

struct Stream {
    inner: UpstreamBody,
    /// Cuts the upstream's bytes into events (its dialect's framing).
    framing: Box<dyn Framing>,
    reframe: Box<dyn Reframe>,
    /// Reused between reads.
    events: Vec<Event>,
    done: bool,
    /// How the stream ended, until the poll that ends it reports it (after counting the bytes
    /// it sends: a stream read whole in one turn ends before its one frame is handed over, and
    /// the report carries the time of the first byte).
    ended: Option<End>,
    /// Re-framed bytes held back for a turn of the scheduler (see `poll`), and how many turns
    /// in a row brought nothing more.
    held: Vec<u8>,
    idle_turns: u8,
    /// Upstream chunks that put something in what is held (see [`IDLE_TURNS_IN_A_BURST`]).
    held_chunks: u8,
    held_since: Option<std::time::Instant>,
    /// When the provider's `timeouts.total` runs out: the stream ends like a failure.
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl std::fmt::Debug for ResponseBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &self.kind {
            Kind::Full(_) => "full",
            Kind::Stream(_) => "stream",
        };
        f.debug_struct("ResponseBody").field("kind", &kind).finish()
    }
}

impl ResponseBody {
    /// A complete body (errors, model lists): nothing to meter.
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        Self {
            kind: Kind::Full(Some(bytes.into())),
            meter: None,
        }
    }

    /// A complete body served by an attempt: `meter` reports when it has been handed over.
    pub fn metered(bytes: impl Into<Bytes>, meter: Reporter) -> Self {
        Self {
            kind: Kind::Full(Some(bytes.into())),
            meter: Some(meter),
        }
    }

    /// An upstream event stream, cut into events by `framing` and re-framed by `reframe` until
    /// it ends or `deadline`.
    pub fn stream(
        inner: UpstreamBody,
        framing: Box<dyn Framing>,
        reframe: Box<dyn Reframe>,
        deadline: tokio::time::Instant,
        meter: Reporter,
    ) -> Self {
        Self {
            kind: Kind::Stream(Box::new(Stream {
                inner,
                framing,
                reframe,
                events: Vec::new(),
                done: false,
                ended: None,
                held: Vec::new(),
                idle_turns: 0,
                held_chunks: 0,
                held_since: None,
                deadline: Box::pin(tokio::time::sleep_until(deadline)),
            })),
            meter: Some(meter),
        }
    }
}

/// How a stream whose re-framer says `flow` ends.
fn end_of(flow: Flow) -> End {
    if flow == Flow::Complete {
        End::Complete
    } else {
        End::UpstreamFailed
    }
}

impl Stream {
    /// Ends the stream; the poll that ends it reports it (see `ended`).
    fn end(&mut self, end: End) {
        self.done = true;
        self.ended = Some(end);
    }

    /// Ends the stream after a failure: the client-format error goes out.
    fn fail(&mut self, message: &str, out: &mut Vec<u8>) {
        tracing::warn!(error = ?message, "upstream stream failed");
        self.reframe.fail(message, out);
        self.end(End::UpstreamFailed);
    }

    /// Whether `out` (of which `held_before` bytes were held over from the last turn) is held
    /// for one more turn: while turns bring more, and for up to [`IDLE_TURNS`] that do not
    /// ([`IDLE_TURNS_IN_A_BURST`] once it came in more than one chunk), for [`HOLD_AT_MOST`]
    /// in all.
    fn hold_for_a_turn(&mut self, out: &[u8], held_before: usize) -> bool {
        let since = *self.held_since.get_or_insert_with(std::time::Instant::now);
        if since.elapsed() >= HOLD_AT_MOST {
            return false;
        }
        if out.len() > held_before {
            self.idle_turns = 0;
            return true;
        }
        self.idle_turns += 1;
        let idle_turns = if self.held_chunks > 1 {
            IDLE_TURNS_IN_A_BURST
        } else {
            IDLE_TURNS
        };
        self.idle_turns <= idle_turns
    }

    /// Runs the parsed events through the re-framer; stops at a completion or failure.
    fn drain_events(&mut self, out: &mut Vec<u8>) {
        for event in self.events.drain(..) {
            match self.reframe.event(&event, out) {
                Flow::Continue => {}
                flow => {
                    self.done = true;
                    self.ended = Some(end_of(flow));
                    break;
                }
            }
        }
        self.events.clear();
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
        meter: &mut Option<Reporter>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let mut out = std::mem::take(&mut self.held);
        let held_before = out.len();
        loop {
            if self.done && out.is_empty() {
                return Poll::Ready(None);
            }
            if self.deadline.as_mut().poll(cx).is_ready() {
                self.fail("the provider's total timeout ran out", &mut out);
                break;
            }
            match Pin::new(&mut self.inner).poll_frame(cx) {
                Poll::Pending if out.is_empty() => return Poll::Pending,
                // Events are relayed together when they come together. hyper hands an
                // upstream's body over one chunk at a time (its connection's task decodes the
                // next only once this one is taken, and that takes it two turns of the
                // scheduler), and most upstreams send each event in a chunk of its own: relayed
                // as they came, each cost a write to the client and a wake of the client. So
                // what is read is held while the connection's task reads on: a turn at a time
                // while turns bring more, IDLE_TURNS turns without anything more (more in a
                // burst), and HOLD_AT_MOST in all, up to COALESCE_UP_TO bytes. The wait is for
                // what the upstream has already sent, never for a token it has not.
                Poll::Pending
                    if out.len() < COALESCE_UP_TO && self.hold_for_a_turn(&out, held_before) =>
                {
                    self.held = out;
                    // Woken after the runtime's other ready tasks (the connection's) ran.
                    let _ = std::pin::pin!(tokio::task::yield_now()).poll(cx);
                    return Poll::Pending;
                }
                Poll::Pending => break,
                Poll::Ready(Some(Ok(frame))) => {
                    let Ok(data) = frame.into_data() else {
                        continue; // trailers
                    };
                    if let Err(error) = self.framing.feed(&data, &mut self.events) {
                        self.fail(&error.to_string(), &mut out);
                        break;
                    }
                    let before = out.len();
                    self.drain_events(&mut out);
                    // Only a chunk that put something in what is held counts toward a burst
                    // (not one stripped whole: a usage chunk nobody asked for, a comment).
                    if out.len() > before {
                        self.held_chunks = self.held_chunks.saturating_add(1);
                    }
                    if let Some(meter) = meter {
                        meter.set_usage(self.reframe.usage());
                    }
                    // Frames already read are relayed together (see the holding above).
                    if out.len() >= COALESCE_UP_TO || self.done {
                        break;
                    }
                }
                Poll::Ready(Some(Err(error))) => {
                    let message = format!("the provider's connection failed mid-stream ({error})");
                    self.fail(&message, &mut out);
                    break;
                }
                Poll::Ready(None) => {
                    // The framing fails only on what `feed` already reported (an oversize event).
                    let _ = self.framing.finish(&mut self.events);
                    self.drain_events(&mut out);
                    if !self.done {
                        let flow = self.reframe.end(&mut out);
                        self.end(end_of(flow));
                    }
                    break;
                }
            }
        }
        self.idle_turns = 0;
        self.held_chunks = 0;
        self.held_since = None;
        if let Some(meter) = meter {
            if !out.is_empty() {
                meter.bytes_sent();
            }
            if let Some(end) = self.ended.take() {
                meter.set_usage(self.reframe.usage());
                meter.set_finish_reason(self.reframe.finish_reason());
                meter.finish(end);
            }
        }
        if out.is_empty() {
            return Poll::Ready(None);
        }
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(out)))))
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        match &mut this.kind {
            Kind::Full(bytes) => {
                let bytes = bytes.take();
                if let Some(meter) = &mut this.meter {
                    if bytes.as_ref().is_some_and(|b| !b.is_empty()) {
                        meter.bytes_sent();
                    }
                    meter.finish(End::Complete);
                }
                Poll::Ready(bytes.filter(|b| !b.is_empty()).map(|b| Ok(Frame::data(b))))
            }
            Kind::Stream(stream) => stream.poll(cx, &mut this.meter),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full(bytes) => bytes.is_none(),
            Kind::Stream(stream) => stream.done,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(Some(bytes)) => SizeHint::with_exact(bytes.len() as u64),
            Kind::Full(None) => SizeHint::with_exact(0),
            Kind::Stream(_) => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::Format;
    use crate::formats::stream::{self, reframer};
    use crate::gateway::completion::Completion;
    use crate::usage::Usage;
    use tokio::sync::{mpsc, oneshot};

    /// An upstream body fed by the test, frame by frame.
    struct Channel(mpsc::UnboundedReceiver<Result<Bytes, BodyError>>);

    impl Body for Channel {
        type Data = Bytes;
        type Error = BodyError;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
            self.0.poll_recv(cx).map(|o| o.map(|r| r.map(Frame::data)))
        }
    }

    type Feed = mpsc::UnboundedSender<Result<Bytes, BodyError>>;

    /// A stream body over `inner`, re-framed from `upstream` to `client`.
    fn stream_over(
        inner: UpstreamBody,
        upstream: Format,
        client: Format,
    ) -> (ResponseBody, oneshot::Receiver<Completion>) {
        let (meter, completion) = Reporter::new(200);
        let context = stream::Context {
            model: "m".into(),
            created: 1,
            client_wants_usage: false,
            items: None,
        };
        let body = ResponseBody::stream(
            inner,
            crate::formats::dialect::dialect(upstream).framing(),
            reframer(upstream, client, context),
            tokio::time::Instant::now() + std::time::Duration::from_secs(60),
            meter,
        );
        (body, completion)
    }

    fn streamed(
        upstream: Format,
        client: Format,
    ) -> (ResponseBody, Feed, oneshot::Receiver<Completion>) {
        let (feed, receiver) = mpsc::unbounded_channel();
        let (body, completion) = stream_over(BoxBody::new(Channel(receiver)), upstream, client);
        (body, feed, completion)
    }

    fn chunk(text: &str) -> Bytes {
        Bytes::from(format!(
            "data: {{\"id\":\"c\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{text}\"}},\"finish_reason\":null}}]}}\n\n"
        ))
    }

    const USAGE: &str = "data: {\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2,\"total_tokens\":7}}\n\n";

    #[tokio::test]
    async fn a_whole_answer_reports_its_usage_once_sent() {
        let (mut meter, completion) = Reporter::new(200);
        meter.set_usage(Some(Usage {
            input_tokens: 4,
            output_tokens: 1,
            ..Usage::default()
        }));
        let body = ResponseBody::metered(Bytes::from_static(b"{}"), meter);
        assert_eq!(body.collect().await.unwrap().to_bytes(), "{}");
        let completion = completion.await.unwrap();
        assert_eq!(completion.end, End::Complete);
        assert_eq!(completion.usage.unwrap().input_tokens, 4);
        assert!(completion.first_byte.is_some());
    }

    #[tokio::test]
    async fn a_stream_reports_the_usage_it_read_and_strips_the_usage_chunk() {
        let (body, feed, completion) = streamed(Format::OpenAi, Format::OpenAi);
        feed.send(Ok(chunk("hel"))).unwrap();
        // An event split across reads, and two in one read.
        feed.send(Ok(Bytes::from_static(
            b"data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_",
        )))
        .unwrap();
        feed.send(Ok(Bytes::from(format!(
            "reason\":\"stop\"}}]}}\n\n{USAGE}data: [DONE]\n\n"
        ))))
        .unwrap();
        drop(feed);
        let bytes = body.collect().await.unwrap().to_bytes();
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            text.contains("\"hel\"") && text.ends_with("data: [DONE]\n\n"),
            "{text}"
        );
        assert!(!text.contains("prompt_tokens"), "not asked for: {text}");
        let completion = completion.await.unwrap();
        assert_eq!(completion.end, End::Complete);
        assert_eq!(completion.usage.unwrap().total_tokens(), 7);
        // Read whole in one turn, the stream went out as one frame and ended in the same poll:
        // its first byte still counts (the time to first token of traces and metrics).
        assert!(completion.first_byte.is_some());
    }

    #[tokio::test]
    async fn events_already_read_go_out_in_one_frame_and_none_waits_for_more() {
        let (mut body, feed, _completion) = streamed(Format::OpenAi, Format::OpenAi);
        // Three chunks read before the body is polled: one frame to the client.
        for text in ["a", "b", "c"] {
            feed.send(Ok(chunk(text))).unwrap();
        }
        let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
        let text = String::from_utf8_lossy(&first);
        assert_eq!(text.matches("data: ").count(), 3, "{text}");
        // One more, with nothing after it yet: it goes out alone, after IDLE_TURNS idle turns.
        feed.send(Ok(chunk("d"))).unwrap();
        let second = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert!(String::from_utf8_lossy(&second).contains("\"d\""));
        // A flood is cut into frames of a bounded size (Tokio's cooperative budget may cut
        // them sooner: the channel then answers not ready).
        let event = chunk("x");
        let flood = 2 * COALESCE_UP_TO / event.len() + 1;
        for _ in 0..flood {
            feed.send(Ok(event.clone())).unwrap();
        }
        let mut relayed = 0;
        while relayed < flood * event.len() {
            let frame = body.frame().await.unwrap().unwrap().into_data().unwrap();
            assert!(frame.len() > event.len() && frame.len() < COALESCE_UP_TO + event.len());
            relayed += frame.len();
        }
    }

    /// An upstream body that has read every chunk and hands each over after the given number
    /// of polls that find nothing, as hyper's connection task was seen to: the events a poll or
    /// so apart, the stream's last event and its end later (strace: with one idle turn the end
    /// left in a write of its own).
    struct HandedOver {
        chunks: std::collections::VecDeque<(u8, Option<Bytes>)>,
        polls_without: u8,
    }

    impl Body for HandedOver {
        type Data = Bytes;
        type Error = BodyError;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
            let Some(&(after, _)) = self.chunks.front() else {
                return Poll::Ready(None);
            };
            if self.polls_without < after {
                self.polls_without += 1;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            self.polls_without = 0;
            let chunk = self.chunks.pop_front().and_then(|(_, chunk)| chunk);
            Poll::Ready(chunk.map(|chunk| Ok(Frame::data(chunk))))
        }
    }

    fn handed_over(chunks: Vec<(u8, Option<Bytes>)>) -> ResponseBody {
        let upstream = BoxBody::new(HandedOver {
            chunks: chunks.into(),
            polls_without: 0,
        });
        stream_over(upstream, Format::OpenAi, Format::OpenAi).0
    }

    #[tokio::test]
    async fn a_stream_read_whole_leaves_in_one_frame_with_its_end() {
        // Three events a poll or so apart, then `[DONE]` and the body's end three polls later
        // each: two idle turns of the relay's, more than IDLE_TURNS (fails with
        // IDLE_TURNS_IN_A_BURST = 1: checked).
        let mut body = handed_over(vec![
            (0, Some(chunk("a"))),
            (1, Some(chunk("b"))),
            (1, Some(chunk("c"))),
            (3, Some(Bytes::from_static(b"data: [DONE]\n\n"))),
            (3, None),
        ]);
        let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
        let text = String::from_utf8_lossy(&first);
        assert_eq!(text.matches("data: ").count(), 4, "{text}");
        assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
        assert!(body.frame().await.is_none());
    }

    #[tokio::test]
    async fn events_that_come_apart_are_not_held_for_a_burst() {
        // One event, then the next three polls later: a stream whose events come apart goes
        // out event by event after IDLE_TURNS idle turns, not held for a burst's.
        let mut body = handed_over(vec![(0, Some(chunk("a"))), (3, Some(chunk("b")))]);
        let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
        let text = String::from_utf8_lossy(&first);
        assert_eq!(text.matches("data: ").count(), 1, "{text}");
        let second = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert!(String::from_utf8_lossy(&second).contains("\"b\""));
        // Nor after a chunk that was read and stripped (the usage chunk nobody asked for):
        // nothing of it is held, so the event after it starts no burst.
        let stripped = Bytes::from_static(USAGE.as_bytes());
        let mut body = handed_over(vec![
            (0, Some(stripped)),
            (3, Some(chunk("a"))),
            (3, Some(chunk("b"))),
        ]);
        let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
        let text = String::from_utf8_lossy(&first);
        assert_eq!(text.matches("data: ").count(), 1, "{text}");
    }

    #[tokio::test]
    async fn a_client_leaving_mid_stream_reports_client_gone() {
        let (mut body, feed, completion) = streamed(Format::OpenAi, Format::Anthropic);
        feed.send(Ok(chunk("hi"))).unwrap();
        let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert!(String::from_utf8_lossy(&first).contains("message_start"));
        drop(body);
        let completion = completion.await.unwrap();
        assert_eq!(completion.end, End::ClientGone);
        assert!(completion.first_byte.is_some());
    }

    #[tokio::test]
    async fn a_reset_upstream_reports_upstream_failed_and_ends_with_an_error_event() {
        let (body, feed, completion) = streamed(Format::OpenAi, Format::OpenAi);
        feed.send(Ok(chunk("hi"))).unwrap();
        feed.send(Ok(Bytes::from_static(USAGE.as_bytes()))).unwrap();
        feed.send(Err("connection reset".into())).unwrap();
        let bytes = body.collect().await.unwrap().to_bytes();
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.contains("upstream_stream_error"), "{text}");
        assert!(!text.contains("[DONE]"), "{text}");
        let completion = completion.await.unwrap();
        assert_eq!(completion.end, End::UpstreamFailed);
        assert_eq!(
            completion.usage.map(|u| u.input_tokens),
            Some(5),
            "usage read before the failure still counts"
        );
    }
}
