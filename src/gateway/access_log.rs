//! The request log: one line per API request, when it is over — what was called, by whom,
//! through which front door and provider, with what result, how fast, and how many tokens.
//! Never content, never keys: the fields are the gateway's own facts (the model name a client
//! asked for is the one text a client writes, and it is escaped).
//!
//! Lines go to standard output (the application's logs go to standard error), as text
//! (`key=value`, values quoted and escaped where needed) or as JSON lines, through a bounded
//! queue and a writer thread of their own: a slow or full stdout drops lines (counted in
//! `dgidgi_access_log_dropped_total`) instead of slowing requests.
//!
//! The entry of a request lives in a task-local while its handler runs, so each layer notes
//! what it learns (the tenant when authenticated, the provider when served) without the
//! handlers' signatures carrying it. A served request's line is written when its body ends,
//! with its tokens and outcome, by the settlement that already waits for that moment.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::Serialize;

/// Lines queued for the writer at most; beyond, lines are dropped and counted. With the text a
/// client writes clipped ([`clipped`]), a line is at most a few KiB, so the queue is too.
const QUEUE: usize = 16_384;

/// The most bytes of a path or a model name a line keeps: a client's text is logged to say what
/// it asked for, not to let it size the log.
pub const MAX_CLIENT_TEXT: usize = 256;

/// `text` cut to `MAX_CLIENT_TEXT` bytes at a character boundary, marked `…` when cut.
pub fn clipped(text: &str) -> String {
    if text.len() <= MAX_CLIENT_TEXT {
        return text.to_owned();
    }
    let mut end = MAX_CLIENT_TEXT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// How request log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum AccessLogFormat {
    /// No request log.
    Off,
    /// `key=value` pairs.
    #[default]
    Text,
    /// One JSON object a line.
    Json,
}

/// Where request log lines go.
#[derive(Clone, Debug, Default)]
pub enum AccessLogSink {
    /// Standard output.
    #[default]
    Stdout,
    /// Kept in memory (tests read them).
    Memory(Arc<Mutex<Vec<String>>>),
}

/// What a request did, filled in as it goes.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Entry {
    /// The gateway's request id (`x-dgidgi-request-id`), once admitted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// HTTP method.
    pub method: String,
    /// Path, without the query.
    pub path: String,
    /// The front door: `chat`, `messages`, `count_tokens`, `embeddings`, `models`, or `other`.
    pub door: &'static str,
    /// The tenant (`namespace/name`), once authenticated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// The source that served: platform, tenant or cli.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<&'static str>,
    /// The provider that served.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// The model sent upstream, or the one asked for when none was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Status sent to the client.
    pub status: u16,
    /// Milliseconds from the request's arrival to the end of its answer.
    pub latency_ms: u64,
    /// Milliseconds to the answer's first byte (served requests).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttfb_ms: Option<u64>,
    /// Input tokens the provider reported.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_tokens: Option<u64>,
    /// Output tokens the provider reported.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_tokens: Option<u64>,
    /// Fallbacks taken before the target that served (0: the first choice).
    pub fallbacks: u32,
    /// The request's trace (W3C trace id), when traces are exported.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// `complete`, `client_gone`, `upstream_failed` for served requests; `answered`,
    /// `rejected` (4xx) or `failed` (5xx) for the others.
    pub outcome: &'static str,
    /// When it arrived.
    #[serde(skip)]
    pub started: Option<Instant>,
    /// Written by the settlement instead of when the handler returns.
    #[serde(skip)]
    deferred: bool,
}

impl Entry {
    /// The entry of a request that just arrived.
    pub fn arrived(method: &str, path: &str) -> Self {
        let door = match path {
            "/v1/chat/completions" => "chat",
            "/v1/messages" => "messages",
            "/v1/messages/count_tokens" => "count_tokens",
            "/v1/embeddings" => "embeddings",
            "/v1/responses" => "responses",
            _ if crate::gateway::gemini::model_method(path).is_some() => "gemini",
            _ if path == "/v1/models" || path.starts_with("/v1/models/") => "models",
            _ => "other",
        };
        Self {
            method: clipped(method),
            path: clipped(path),
            door,
            started: Some(Instant::now()),
            ..Self::default()
        }
    }

    /// Fills the status, outcome (unless set) and latency of an answer complete now.
    pub fn answered(&mut self, status: u16) {
        self.status = status;
        if self.outcome.is_empty() {
            self.outcome = match status {
                200..=399 => "answered",
                400..=499 => "rejected",
                _ => "failed",
            };
        }
        self.latency_ms = self.started.map_or(0, |at| millis(at.elapsed()));
    }

    /// The text form: `key=value` pairs, values quoted and escaped unless plain.
    fn text(&self) -> String {
        let mut line = String::with_capacity(256);
        let mut field = |name: &str, value: &str| {
            if !line.is_empty() {
                line.push(' ');
            }
            let plain = !value.is_empty()
                && value
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_./:@+".contains(&b));
            let _ = if plain {
                write!(line, "{name}={value}")
            } else {
                write!(line, "{name}={value:?}")
            };
        };
        let number = |n: u64| n.to_string();
        field("request_id", self.request_id.as_deref().unwrap_or("-"));
        field("method", &self.method);
        field("path", &self.path);
        field("door", self.door);
        field("tenant", self.tenant.as_deref().unwrap_or("-"));
        field("source", self.source.unwrap_or("-"));
        field("provider", self.provider.as_deref().unwrap_or("-"));
        field("model", self.model.as_deref().unwrap_or("-"));
        field("status", &number(u64::from(self.status)));
        field("latency_ms", &number(self.latency_ms));
        field("ttfb_ms", &self.ttfb_ms.map_or("-".into(), number));
        field(
            "input_tokens",
            &self.input_tokens.map_or("-".into(), number),
        );
        field(
            "output_tokens",
            &self.output_tokens.map_or("-".into(), number),
        );
        field("fallbacks", &number(u64::from(self.fallbacks)));
        if let Some(trace_id) = &self.trace_id {
            field("trace_id", trace_id);
        }
        field("outcome", self.outcome);
        line
    }
}

/// Whole milliseconds of a duration.
pub fn millis(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

tokio::task_local! {
    static CURRENT: RefCell<Entry>;
}

/// Runs a request's handler with its entry, and returns the entry as the handler left it
/// (`None` when the settlement took it to write later).
pub async fn scope<F: Future>(entry: Entry, handler: F) -> (F::Output, Option<Entry>) {
    CURRENT
        .scope(RefCell::new(entry), async move {
            let output = handler.await;
            let entry = CURRENT.with(RefCell::take);
            (output, (!entry.deferred).then_some(entry))
        })
        .await
}

/// Notes something about the current request (nothing outside a request's scope).
pub fn note(edit: impl FnOnce(&mut Entry)) {
    let _ = CURRENT.try_with(|entry| edit(&mut entry.borrow_mut()));
}

/// Takes the current request's entry for the settlement to write when its body ends.
pub fn defer() -> Option<Entry> {
    CURRENT
        .try_with(|entry| {
            let mut entry = entry.borrow_mut();
            let taken = std::mem::take(&mut *entry);
            entry.deferred = true;
            taken
        })
        .ok()
}

/// The request log's writer.
pub struct AccessLog {
    format: AccessLogFormat,
    queue: Option<SyncSender<String>>,
    dropped: prometheus_client::metrics::counter::Counter,
}

impl AccessLog {
    /// A log in `format` to `sink`; `dropped` counts the lines a full queue refused.
    pub fn new(
        format: AccessLogFormat,
        sink: AccessLogSink,
        dropped: prometheus_client::metrics::counter::Counter,
    ) -> Self {
        let queue = (format != AccessLogFormat::Off).then(|| {
            let (sender, receiver) = sync_channel(QUEUE);
            match sink {
                AccessLogSink::Stdout => {
                    // A thread of its own: writes to a pipe may block, requests must not.
                    let spawned = std::thread::Builder::new()
                        .name("dgidgi-access-log".into())
                        .spawn(move || write_lines(&receiver, &mut std::io::stdout()));
                    if let Err(error) = spawned {
                        tracing::error!("the request log could not start: {error}");
                    }
                }
                AccessLogSink::Memory(lines) => {
                    let _ = std::thread::Builder::new()
                        .name("dgidgi-access-log".into())
                        .spawn(move || {
                            while let Ok(line) = receiver.recv() {
                                if let Ok(mut lines) = lines.lock() {
                                    lines.push(line);
                                }
                            }
                        });
                }
            }
            sender
        });
        Self {
            format,
            queue,
            dropped,
        }
    }

    /// Whether lines are written at all (with `off`, requests note nothing and allocate
    /// nothing for the log).
    pub fn is_on(&self) -> bool {
        self.queue.is_some()
    }

    /// Writes one request's line.
    pub fn write(&self, entry: &Entry) {
        let Some(queue) = &self.queue else {
            return;
        };
        let line = match self.format {
            AccessLogFormat::Off => return,
            AccessLogFormat::Text => entry.text(),
            AccessLogFormat::Json => serde_json::to_string(entry).unwrap_or_default(),
        };
        match queue.try_send(line) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.dropped.inc();
            }
        }
    }
}

/// Writes queued lines, flushing whenever the queue is empty.
fn write_lines(queue: &Receiver<String>, out: &mut impl std::io::Write) {
    let mut buffered = std::io::BufWriter::with_capacity(64 * 1024, out);
    while let Ok(line) = queue.recv() {
        let mut next = Some(line);
        while let Some(line) = next {
            let _ = buffered.write_all(line.as_bytes());
            let _ = buffered.write_all(b"\n");
            next = queue.try_recv().ok();
        }
        let _ = buffered.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_lines_escape_what_a_client_wrote() {
        let mut entry = Entry::arrived("POST", "/v1/chat/completions");
        entry.tenant = Some("team-acme/acme".into());
        entry.model = Some("gpt\nrequest_id=forged".into());
        entry.answered(404);
        let line = entry.text();
        assert!(!line.contains('\n'), "{line}");
        assert!(line.contains(r#"model="gpt\nrequest_id=forged""#), "{line}");
        assert!(line.contains("door=chat tenant=team-acme/acme"), "{line}");
        assert!(line.contains("status=404"), "{line}");
        assert!(line.contains("outcome=rejected"), "{line}");
        // A client's text is clipped, so it cannot size the log.
        let long = Entry::arrived("GET", &format!("/v1/{}", "é".repeat(10_000)));
        assert!(long.path.len() <= MAX_CLIENT_TEXT + "…".len());
        assert!(long.path.ends_with('…'));
    }

    #[tokio::test]
    async fn notes_reach_the_entry_and_a_deferred_entry_is_not_returned() {
        let (_, entry) = scope(Entry::arrived("GET", "/v1/models"), async {
            note(|e| e.tenant = Some("a/b".into()));
        })
        .await;
        assert_eq!(entry.unwrap().tenant.as_deref(), Some("a/b"));
        let (taken, entry) = scope(Entry::arrived("POST", "/v1/messages"), async {
            note(|e| e.provider = Some("anthropic".into()));
            defer()
        })
        .await;
        assert!(entry.is_none());
        assert_eq!(taken.unwrap().provider.as_deref(), Some("anthropic"));
    }
}
