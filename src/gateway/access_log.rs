//! The request log: one line per API request, when it is over — what was called, by whom,
//! through which front door and provider, with what result, how fast, and how many tokens.
//! Never content, never keys: the fields are the gateway's own facts (the model name a client
//! asked for is the one text a client writes, and it is escaped).
//!
//! Lines go to standard output (the application's logs go to standard error), as text
//! (`key=value`, values quoted and escaped where needed) or as JSON lines. A request appends its
//! line to a shared buffer and wakes no one; a writer thread of its own writes the buffer out
//! every [`FLUSH_EVERY`] (sooner when it passes [`FLUSH_AT`]), so lines reach stdout in batches,
//! as nginx's buffered access log does. Waking the writer for every line cost a futex wake and
//! two context switches per request, a quarter of a bare gateway's throughput on one core. A
//! slow or full stdout drops lines past [`MAX_BUFFERED`] (counted in
//! `dgidgi_access_log_dropped_total`) instead of slowing requests; shutdown writes what is left.
//!
//! The entry of a request lives in a task-local while its handler runs, so each layer notes
//! what it learns (the tenant when authenticated, the provider when served) without the
//! handlers' signatures carrying it. A served request's line is written when its body ends,
//! with its tokens and outcome, by the settlement that already waits for that moment.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::Serialize;

/// How long a line waits in the buffer at most before the writer writes it.
pub const FLUSH_EVERY: Duration = Duration::from_millis(50);

/// How long a closing log waits for its writer's last batch at most.
pub const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// A buffer this full wakes the writer before its period is up.
const FLUSH_AT: usize = 256 * 1024;

/// Bytes buffered for the writer at most; beyond, lines are dropped and counted. With the text
/// a client writes clipped ([`clipped`]), a line is at most a few KiB.
const MAX_BUFFERED: usize = 8 * 1024 * 1024;

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

    /// The text form: `key=value` pairs, values quoted and escaped unless plain. Written with
    /// `push_str` and `itoa`, not `write!`: the formatting machinery was most of the line's cost
    /// (callgrind: ~4,000 instructions a request).
    fn text(&self) -> String {
        fn field(line: &mut String, name: &str, value: &str) {
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(name);
            line.push('=');
            let plain = !value.is_empty()
                && value
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_./:@+".contains(&b));
            if plain {
                line.push_str(value);
            } else {
                let _ = write!(line, "{value:?}");
            }
        }
        fn number(line: &mut String, name: &str, value: Option<u64>) {
            match value {
                Some(n) => field(line, name, itoa::Buffer::new().format(n)),
                None => field(line, name, "-"),
            }
        }
        let mut line = String::with_capacity(256);
        field(
            &mut line,
            "request_id",
            self.request_id.as_deref().unwrap_or("-"),
        );
        field(&mut line, "method", &self.method);
        field(&mut line, "path", &self.path);
        field(&mut line, "door", self.door);
        field(&mut line, "tenant", self.tenant.as_deref().unwrap_or("-"));
        field(&mut line, "source", self.source.unwrap_or("-"));
        field(
            &mut line,
            "provider",
            self.provider.as_deref().unwrap_or("-"),
        );
        field(&mut line, "model", self.model.as_deref().unwrap_or("-"));
        number(&mut line, "status", Some(u64::from(self.status)));
        number(&mut line, "latency_ms", Some(self.latency_ms));
        number(&mut line, "ttfb_ms", self.ttfb_ms);
        number(&mut line, "input_tokens", self.input_tokens);
        number(&mut line, "output_tokens", self.output_tokens);
        number(&mut line, "fallbacks", Some(u64::from(self.fallbacks)));
        if let Some(trace_id) = &self.trace_id {
            field(&mut line, "trace_id", trace_id);
        }
        field(&mut line, "outcome", self.outcome);
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
///
/// Made of combinators, not `async`: an `async` wrapper keeps the handler it is given beside
/// the copy it awaits, twice the bytes moved with every request's future.
pub fn scope<F: Future>(
    entry: Entry,
    handler: F,
) -> impl Future<Output = (F::Output, Option<Entry>)> {
    use futures::FutureExt as _;
    // The map runs inside the scope's poll, where the entry is still set.
    CURRENT.scope(
        RefCell::new(entry),
        handler.map(|output| {
            let entry = CURRENT.with(RefCell::take);
            (output, (!entry.deferred).then_some(entry))
        }),
    )
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
    writer: Option<Writer>,
    dropped: prometheus_client::metrics::counter::Counter,
}

/// The buffer requests append to, and the thread that writes it out.
struct Writer {
    shared: Arc<Shared>,
    thread: Option<std::thread::Thread>,
}

struct Shared {
    buffered: Mutex<Buffered>,
    /// Set by the writer when it has written the last of the buffer and ends.
    finished: (Mutex<bool>, Condvar),
}

struct Buffered {
    bytes: Vec<u8>,
    /// Set once, under the same lock as every append: lines after it are dropped and counted,
    /// and the writer's last batch has every line before it.
    closed: bool,
}

impl AccessLog {
    /// A log in `format` to `sink`; `dropped` counts the lines a full buffer refused.
    pub fn new(
        format: AccessLogFormat,
        sink: AccessLogSink,
        dropped: prometheus_client::metrics::counter::Counter,
    ) -> Self {
        let writer = (format != AccessLogFormat::Off).then(|| {
            let shared = Arc::new(Shared {
                buffered: Mutex::new(Buffered {
                    bytes: Vec::new(),
                    closed: false,
                }),
                finished: (Mutex::new(false), Condvar::new()),
            });
            let for_thread = shared.clone();
            // A thread of its own: writes to a pipe may block, requests must not.
            let spawned = std::thread::Builder::new()
                .name("dgidgi-access-log".into())
                .spawn(move || {
                    match sink {
                        AccessLogSink::Stdout => {
                            write_batches(&for_thread, &mut std::io::stdout());
                        }
                        AccessLogSink::Memory(lines) => {
                            write_batches(&for_thread, &mut Lines(lines));
                        }
                    }
                    let (finished, ended) = &for_thread.finished;
                    *finished.lock().unwrap_or_else(PoisonError::into_inner) = true;
                    ended.notify_all();
                });
            let thread = match spawned {
                Ok(thread) => Some(thread.thread().clone()),
                Err(error) => {
                    tracing::error!("the request log could not start: {error}");
                    None
                }
            };
            Writer { shared, thread }
        });
        Self {
            format,
            writer,
            dropped,
        }
    }

    /// Whether lines are written at all (with `off`, requests note nothing and allocate
    /// nothing for the log).
    pub fn is_on(&self) -> bool {
        self.writer.is_some()
    }

    /// Writes one request's line.
    pub fn write(&self, entry: &Entry) {
        let Some(writer) = &self.writer else {
            return;
        };
        let line = match self.format {
            AccessLogFormat::Off => return,
            AccessLogFormat::Text => entry.text(),
            AccessLogFormat::Json => serde_json::to_string(entry).unwrap_or_default(),
        };
        let wake = {
            let mut buffered = writer.shared.lock();
            if buffered.closed || buffered.bytes.len() + line.len() >= MAX_BUFFERED {
                self.dropped.inc();
                return;
            }
            let before = buffered.bytes.len();
            buffered.bytes.extend_from_slice(line.as_bytes());
            buffered.bytes.push(b'\n');
            before < FLUSH_AT && buffered.bytes.len() >= FLUSH_AT
        };
        if wake && let Some(thread) = &writer.thread {
            thread.unpark();
        }
    }

    /// Writes out what is buffered and stops the writer (at shutdown; lines written after
    /// are dropped and counted). Waits for the write, at most [`CLOSE_WAIT`]: a stdout nobody
    /// reads must not keep the process from exiting.
    pub fn close(&self) {
        let Some(writer) = &self.writer else {
            return;
        };
        writer.close();
        let (finished, ended) = &writer.shared.finished;
        let finished = finished.lock().unwrap_or_else(PoisonError::into_inner);
        let (finished, _) = ended
            .wait_timeout_while(finished, CLOSE_WAIT, |finished| !*finished)
            .unwrap_or_else(PoisonError::into_inner);
        if !*finished {
            tracing::warn!("the request log's last lines were not written in {CLOSE_WAIT:?}");
        }
    }
}

impl Drop for AccessLog {
    /// A log dropped without `close` still ends its writer (after its last batch).
    fn drop(&mut self) {
        if let Some(writer) = &self.writer {
            writer.close();
        }
    }
}

impl Writer {
    /// Marks the log closed and wakes the writer for its last batch.
    fn close(&self) {
        self.shared.lock().closed = true;
        if let Some(thread) = &self.thread {
            thread.unpark();
        }
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Buffered> {
        self.buffered.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Writes the buffer out every [`FLUSH_EVERY`], or when woken, until closed. Two buffers take
/// turns, so requests append to one that has kept its room from an earlier batch.
fn write_batches(shared: &Shared, out: &mut impl std::io::Write) {
    let mut batch = Vec::new();
    loop {
        let closed = {
            let mut buffered = shared.lock();
            std::mem::swap(&mut buffered.bytes, &mut batch);
            buffered.closed
        };
        if !batch.is_empty() {
            let _ = out.write_all(&batch).and_then(|()| out.flush());
            batch.clear();
            // A burst's room is not kept for good.
            batch.shrink_to(2 * FLUSH_AT);
        }
        if closed {
            return;
        }
        std::thread::park_timeout(FLUSH_EVERY);
    }
}

/// The lines kept in memory for tests, one entry per line.
struct Lines(Arc<Mutex<Vec<String>>>);

impl std::io::Write for Lines {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let mut lines = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        lines.extend(String::from_utf8_lossy(bytes).lines().map(str::to_owned));
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
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

    #[test]
    fn lines_are_written_in_batches_and_all_of_them_by_close() {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let dropped = prometheus_client::metrics::counter::Counter::default();
        let log = AccessLog::new(
            AccessLogFormat::Text,
            AccessLogSink::Memory(lines.clone()),
            dropped.clone(),
        );
        let mut entry = Entry::arrived("POST", "/v1/chat/completions");
        entry.answered(200);
        // Written by the writer's period, without a close.
        log.write(&entry);
        let started = Instant::now();
        while lines.lock().unwrap().is_empty() {
            assert!(started.elapsed() < Duration::from_secs(10), "never written");
            std::thread::sleep(Duration::from_millis(5));
        }
        // Whatever is buffered when the log closes is written before close returns.
        for _ in 0..1_000 {
            log.write(&entry);
        }
        log.close();
        assert_eq!(lines.lock().unwrap().len(), 1_001);
        assert!(
            lines
                .lock()
                .unwrap()
                .iter()
                .all(|l| l.contains("door=chat"))
        );
        // After, lines are dropped and counted, not kept in a buffer nobody writes.
        log.write(&entry);
        assert_eq!(dropped.get(), 1);
        assert_eq!(lines.lock().unwrap().len(), 1_001);
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
