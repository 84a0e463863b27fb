//! One local fake upstream over raw TCP that speaks four wire formats, chosen by the path as
//! the real APIs do: Anthropic Messages (`/v1/messages`, `x-api-key`, `anthropic-version`, named
//! SSE events, `error` events, 529), Gemini (`/v1beta/models/{model}:generateContent` and
//! `:streamGenerateContent?alt=sse`, `x-goog-api-key`, `usageMetadata`), Cohere v2
//! (`/v2/chat`, `message-start` … `message-end`) and OpenAI (`/v1/chat/completions`).
//!
//! Behaviour is chosen by the model name: `*-midfail` fails mid-stream in the provider's own
//! way, `*-reset` breaks the connection mid-stream, `*-overloaded` answers 529, and the OpenAI
//! path's failure and timing scenarios are in [`super::fake_scenarios`]. A request with tools
//! whose conversation has no tool result yet gets tool calls (two, in parallel), else a text
//! answer echoing the last user text (or the suite's own, see [`Answers`]).
//!
//! It is the one fake upstream of every suite: it logs what arrived (path, headers, the body as
//! sent), counts the requests at it, and checks the key each format expects.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Map, Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// The key every fake format expects.
pub const KEY: &str = "sk-fake-native-key-0001";

/// One request the fake saw.
#[derive(Clone, Debug)]
pub struct Seen {
    /// Path with query.
    pub path: String,
    /// Lower-cased headers.
    pub headers: HashMap<String, String>,
    /// The JSON body.
    pub body: Value,
    /// The body's bytes as they arrived.
    pub raw: Vec<u8>,
}

/// Everything the fake saw, in order.
pub type Log = Arc<Mutex<Vec<Seen>>>;

/// How a suite wants plain OpenAI-format chat answered, and which keys it accepts there.
#[derive(Clone, Copy, Debug)]
pub struct Answers {
    /// The answer's text (`None`: it echoes the last user text).
    pub text: Option<&'static str>,
    /// The usage it reports.
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cached_tokens: u64,
    /// Keys accepted as `Authorization: Bearer <key>`.
    pub keys: &'static [&'static str],
    /// Whether a request without a key is answered (an Ollama-style cli endpoint).
    pub keyless: bool,
}

impl Default for Answers {
    fn default() -> Self {
        Self {
            text: None,
            prompt_tokens: 9,
            completion_tokens: 4,
            cached_tokens: 2,
            keys: &[KEY],
            keyless: false,
        }
    }
}

/// A running fake: its address, what it saw, and what is at it now.
#[derive(Clone)]
pub struct Fake {
    pub address: SocketAddr,
    pub log: Log,
    /// Requests being answered now, and the most at once.
    pub in_flight: Arc<AtomicUsize>,
    pub most_in_flight: Arc<AtomicUsize>,
    /// Streams written to their end (not cut, not reset).
    pub completed_streams: Arc<AtomicUsize>,
    /// Tokens the fake's token endpoints issued (see [`super::fake_clouds`]).
    pub tokens_issued: Arc<AtomicUsize>,
    answers: Answers,
}

impl Fake {
    /// Waits until `count` requests are at the fake (a loaded machine may take a while to get
    /// them there; a fixed sleep made the tests that count on them flaky).
    pub async fn until_in_flight(&self, count: usize) {
        for _ in 0..400 {
            if self.in_flight.load(Ordering::SeqCst) >= count {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("{count} requests never reached the fake upstream");
    }

    /// The bodies of every request, in order.
    pub fn bodies(&self) -> Vec<Value> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .map(|s| s.body.clone())
            .collect()
    }
}

/// Counts a request at the fake until it is answered (or the connection went).
struct AtTheFake(Arc<AtomicUsize>);

impl Drop for AtTheFake {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Starts the fake with the default answers; returns its address and its log.
pub async fn start() -> (SocketAddr, Log) {
    let fake = start_with(Answers::default()).await;
    (fake.address, fake.log)
}

/// Starts the fake answering plain chat as `answers` says.
pub async fn start_with(answers: Answers) -> Fake {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let fake = Fake {
        address: listener.local_addr().unwrap(),
        log: Arc::default(),
        in_flight: Arc::default(),
        most_in_flight: Arc::default(),
        completed_streams: Arc::default(),
        tokens_issued: Arc::default(),
        answers,
    };
    let shared = fake.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let fake = shared.clone();
            tokio::spawn(async move { serve(stream, fake).await });
        }
    });
    fake
}

/// Reads one HTTP/1.1 request (headers and a JSON body of `content-length` bytes).
pub async fn read_request(stream: &mut TcpStream) -> Option<Seen> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 8192];
    let header_end = loop {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
        if let Some(position) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break position + 4;
        }
    };
    let head = String::from_utf8_lossy(&buffer[..header_end]).to_string();
    let headers: HashMap<String, String> = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let path = head.split_whitespace().nth(1)?.to_owned();
    let length: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    while buffer.len() < header_end + length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
    let raw = buffer[header_end..header_end + length].to_vec();
    // A token endpoint's form is no JSON: its body is `Null` and its bytes are in `raw`.
    let body = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    Some(Seen {
        path,
        headers,
        body,
        raw,
    })
}

/// What to write back.
pub enum Reply {
    Json(u16, Value),
    /// SSE events; `reset` breaks the connection after them instead of ending cleanly.
    Stream {
        events: Vec<String>,
        reset: bool,
    },
    /// Any status, content type and body (`extra`: more header lines, each ending `\r\n`).
    Raw {
        status: u16,
        content_type: &'static str,
        extra: &'static str,
        body: Vec<u8>,
    },
    /// SSE events `pace` apart, then the end: clean, reset, or a stall (the connection held
    /// open, silent, for ten seconds).
    Paced {
        events: Vec<String>,
        pace: Duration,
        end: StreamEnd,
    },
    /// The reply after a pause.
    After(Duration, Box<Reply>),
}

/// How a paced stream ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamEnd {
    Clean,
    Reset,
    Stall,
}

async fn serve(mut stream: TcpStream, fake: Fake) {
    let Some(seen) = read_request(&mut stream).await else {
        return;
    };
    fake.log.lock().unwrap().push(seen.clone());
    let now = fake.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    fake.most_in_flight.fetch_max(now, Ordering::SeqCst);
    let _at = AtTheFake(fake.in_flight.clone());
    let (seen, then): (Seen, fn(Reply) -> Reply) = match super::fake_clouds::arrive(seen, &fake) {
        super::fake_clouds::Arrival::Native(seen) => (seen, |reply| reply),
        super::fake_clouds::Arrival::Through(seen, then) => (seen, then),
        super::fake_clouds::Arrival::Answered(reply) => {
            write_reply(&mut stream, reply, &fake).await;
            let _ = stream.shutdown().await;
            return;
        }
    };
    let reply = if seen.path.ends_with(":batchEmbedContents") {
        gemini_embed(&seen)
    } else if seen.path.starts_with("/v2/embed") {
        cohere_embed(&seen)
    } else if seen.path.ends_with("/responses") {
        super::fake_responses::responses(&seen)
    } else if seen.path.ends_with("/embeddings") {
        openai_embed(&seen)
    } else if seen.path.starts_with("/v1/messages") {
        anthropic(&seen)
    } else if seen.path.starts_with("/v1beta/models/") {
        gemini(&seen)
    } else if seen.path.starts_with("/v2/chat") {
        cohere(&seen)
    } else {
        openai(&seen, &fake.answers)
    };
    write_reply(&mut stream, then(reply), &fake).await;
    let _ = stream.shutdown().await;
}

async fn write_reply(stream: &mut TcpStream, mut reply: Reply, fake: &Fake) {
    while let Reply::After(pause, then) = reply {
        tokio::time::sleep(pause).await;
        reply = *then;
    }
    match reply {
        Reply::Json(status, body) => {
            // A request id and the provider's own limits, as Anthropic's and OpenAI's answers
            // carry them.
            let extra =
                "request-id: req_fake_0001\r\nanthropic-ratelimit-requests-remaining: 49\r\n";
            let body = body.to_string().into_bytes();
            write_whole(stream, status, "application/json", extra, &body).await;
        }
        Reply::Raw {
            status,
            content_type,
            extra,
            body,
        } => write_whole(stream, status, content_type, extra, &body).await,
        Reply::Stream { events, reset } => {
            let end = if reset {
                StreamEnd::Reset
            } else {
                StreamEnd::Clean
            };
            write_stream(stream, events, Duration::ZERO, end, fake).await;
        }
        Reply::Paced { events, pace, end } => write_stream(stream, events, pace, end, fake).await,
        Reply::After(..) => unreachable!("unwrapped above"),
    }
}

async fn write_whole(
    stream: &mut TcpStream,
    status: u16,
    content_type: &str,
    extra: &str,
    body: &[u8],
) {
    let head = format!(
        "HTTP/1.1 {status} X\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n{extra}connection: close\r\n\r\n",
        body.len()
    );
    if stream.write_all(head.as_bytes()).await.is_ok() {
        let _ = stream.write_all(body).await;
    }
}

async fn write_stream(
    stream: &mut TcpStream,
    events: Vec<String>,
    pace: Duration,
    end: StreamEnd,
    fake: &Fake,
) {
    // A reset announces more than it sends, so the client sees a broken body.
    let framing = if end == StreamEnd::Reset {
        "content-length: 100000\r\n"
    } else {
        ""
    };
    let head = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n{framing}connection: close\r\n\r\n"
    );
    if stream.write_all(head.as_bytes()).await.is_err() {
        return;
    }
    for (index, event) in events.iter().enumerate() {
        if index > 0 && !pace.is_zero() {
            tokio::time::sleep(pace).await;
        }
        if stream.write_all(event.as_bytes()).await.is_err() {
            return;
        }
        let _ = stream.flush().await;
        tokio::task::yield_now().await;
    }
    match end {
        StreamEnd::Clean => {
            fake.completed_streams.fetch_add(1, Ordering::SeqCst);
        }
        StreamEnd::Reset => {}
        StreamEnd::Stall => tokio::time::sleep(Duration::from_secs(10)).await,
    }
}

fn model_of(seen: &Seen) -> String {
    seen.body["model"].as_str().unwrap_or_default().to_owned()
}

fn wants_stream(seen: &Seen) -> bool {
    seen.body["stream"] == Value::Bool(true)
}

// --- Embeddings -----------------------------------------------------------------------------

/// The fakes' embedding of a text: `dimensions` values that say which text it was (its length)
/// and where they stand, all exact in `f32` (so OpenAI's base64 packing can be checked).
pub fn fake_vector(text: &str, dimensions: u64) -> Vec<f64> {
    (0..dimensions)
        .map(|i| (text.len() as f64 + i as f64) * 0.25)
        .collect()
}

/// A token count for the fakes' usage: one per word.
fn words(texts: &[&str]) -> u64 {
    texts
        .iter()
        .map(|t| t.split_whitespace().count() as u64)
        .sum()
}

/// OpenAI's `POST /v1/embeddings`: floats or base64 (little-endian f32), usage in tokens.
fn openai_embed(seen: &Seen) -> Reply {
    if seen.headers.get("authorization").map(String::as_str) != Some(&format!("Bearer {KEY}")) {
        return Reply::Json(
            401,
            json!({"error": {"message": "bad key", "type": "invalid_request_error", "param": null, "code": "invalid_api_key"}}),
        );
    }
    // `text-embed-flaky` is overloaded every other call (a retry finds it back).
    static FLAKY: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    if model_of(seen) == "text-embed-flaky"
        && FLAKY
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
            .is_multiple_of(2)
    {
        return Reply::Json(
            503,
            json!({"error": {"message": "overloaded", "type": "server_error", "param": null, "code": null}}),
        );
    }
    let texts: Vec<&str> = match &seen.body["input"] {
        Value::String(text) => vec![text.as_str()],
        Value::Array(items) => items.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if texts.is_empty() {
        return Reply::Json(
            400,
            json!({"error": {"message": "'input' is required", "type": "invalid_request_error", "param": "input", "code": null}}),
        );
    }
    let dimensions = seen.body["dimensions"].as_u64().unwrap_or(4);
    let base64 = seen.body["encoding_format"] == "base64";
    let data: Vec<Value> = texts
        .iter()
        .enumerate()
        .map(|(index, text)| {
            let vector = fake_vector(text, dimensions);
            let embedding = if base64 {
                use base64::Engine as _;
                let packed: Vec<u8> = vector
                    .iter()
                    .flat_map(|v| (*v as f32).to_le_bytes())
                    .collect();
                json!(base64::engine::general_purpose::STANDARD.encode(packed))
            } else {
                json!(vector)
            };
            json!({"object": "embedding", "index": index, "embedding": embedding})
        })
        .collect();
    let tokens = words(&texts);
    Reply::Json(
        200,
        json!({"object": "list", "data": data, "model": model_of(seen),
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}),
    )
}

/// Gemini's `models/{model}:batchEmbedContents`: one request per text, no usage reported.
fn gemini_embed(seen: &Seen) -> Reply {
    if seen.headers.get("x-goog-api-key").map(String::as_str) != Some(KEY) {
        return Reply::Json(
            403,
            json!({"error": {"code": 403, "message": "API key not valid", "status": "PERMISSION_DENIED"}}),
        );
    }
    let Some(requests) = seen.body["requests"].as_array().filter(|r| !r.is_empty()) else {
        return Reply::Json(
            400,
            json!({"error": {"code": 400, "message": "requests is required", "status": "INVALID_ARGUMENT"}}),
        );
    };
    let embeddings: Vec<Value> = requests
        .iter()
        .map(|request| {
            let text = request["content"]["parts"][0]["text"]
                .as_str()
                .unwrap_or_default();
            let dimensions = request["outputDimensionality"].as_u64().unwrap_or(4);
            json!({"values": fake_vector(text, dimensions)})
        })
        .collect();
    Reply::Json(200, json!({"embeddings": embeddings}))
}

/// Cohere's `POST /v2/embed`: `input_type` and `embedding_types` required, usage in billed units.
fn cohere_embed(seen: &Seen) -> Reply {
    if seen.headers.get("authorization").map(String::as_str) != Some(&format!("Bearer {KEY}")) {
        return Reply::Json(401, json!({"message": "invalid api token"}));
    }
    if !seen.body["input_type"].is_string() {
        return Reply::Json(
            400,
            json!({"message": "input_type is required for embed v2"}),
        );
    }
    let texts: Vec<&str> = seen.body["texts"]
        .as_array()
        .map(|t| t.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let dimensions = seen.body["output_dimension"].as_u64().unwrap_or(4);
    let vectors: Vec<Vec<f64>> = texts.iter().map(|t| fake_vector(t, dimensions)).collect();
    Reply::Json(
        200,
        json!({"id": "embed-fake-1", "embeddings": {"float": vectors}, "texts": texts,
        "meta": {"api_version": {"version": "2"}, "billed_units": {"input_tokens": words(&texts)}}}),
    )
}

// --- Structured output ----------------------------------------------------------------------

/// An answer that follows `schema`, its fields in the schema's order (the order a model writes
/// them under structured outputs).
pub fn example_of(schema: &Value) -> Value {
    match schema["type"].as_str() {
        Some("object") => Value::Object(
            schema["properties"]
                .as_object()
                .map(|properties| {
                    properties
                        .iter()
                        .map(|(name, property)| (name.clone(), example_of(property)))
                        .collect()
                })
                .unwrap_or_default(),
        ),
        Some("array") => json!([example_of(&schema["items"])]),
        Some("integer") => json!(7),
        Some("number") => json!(2.5),
        Some("boolean") => json!(true),
        _ => match schema["enum"].as_array().and_then(|e| e.first()) {
            Some(first) => first.clone(),
            None => json!("text"),
        },
    }
}

/// Whether an object schema's properties come in the order its `required` lists them.
fn properties_in_required_order(schema: &Value) -> bool {
    let properties: Vec<&String> = schema["properties"]
        .as_object()
        .map(|p| p.keys().collect())
        .unwrap_or_default();
    let required: Vec<&str> = schema["required"]
        .as_array()
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    properties
        .iter()
        .map(|p| p.as_str())
        .eq(required.iter().copied())
}

/// Whether every object of a schema sets `additionalProperties: false` (both APIs' rule), and,
/// for OpenAI's strict mode (`all_required`), lists every property as required.
fn schema_is_closed(schema: &Value, all_required: bool) -> bool {
    match schema {
        Value::Object(node) => {
            if let Some(Value::Object(properties)) = node.get("properties") {
                if node.get("additionalProperties") != Some(&Value::Bool(false)) {
                    return false;
                }
                let required = node["required"].as_array().cloned().unwrap_or_default();
                if all_required && !properties.keys().all(|k| required.contains(&json!(k))) {
                    return false;
                }
            }
            node.values()
                .all(|child| schema_is_closed(child, all_required))
        }
        Value::Array(items) => items
            .iter()
            .all(|child| schema_is_closed(child, all_required)),
        _ => true,
    }
}

// --- Anthropic --------------------------------------------------------------------------------

fn anthropic_error(status: u16, kind: &str, message: &str) -> Reply {
    Reply::Json(
        status,
        json!({"type": "error", "error": {"type": kind, "message": message}}),
    )
}

fn named(event: &str, data: &Value) -> String {
    format!("event: {event}\ndata: {data}\n\n")
}

/// `POST /v1/messages/count_tokens`: the model and messages are required, `max_tokens` is not
/// a field of it; the count is the fake's own (a token per three bytes of the body), so a test
/// can tell it from the gateway's estimate.
fn anthropic_count_tokens(seen: &Seen) -> Reply {
    if !seen.body["model"].is_string() || !seen.body["messages"].is_array() {
        return anthropic_error(
            400,
            "invalid_request_error",
            "model and messages are required",
        );
    }
    if seen.body.get("max_tokens").is_some() {
        return anthropic_error(
            400,
            "invalid_request_error",
            "max_tokens: Extra inputs are not permitted",
        );
    }
    Reply::Json(200, json!({"input_tokens": seen.raw.len() / 3}))
}

fn anthropic(seen: &Seen) -> Reply {
    if seen.headers.get("x-api-key").map(String::as_str) != Some(KEY) {
        return anthropic_error(401, "authentication_error", "invalid x-api-key");
    }
    if !seen.headers.contains_key("anthropic-version") {
        return anthropic_error(400, "invalid_request_error", "anthropic-version required");
    }
    let model = model_of(seen);
    if seen.path.starts_with("/v1/messages/count_tokens") {
        return anthropic_count_tokens(seen);
    }
    if seen.body["max_tokens"].as_u64().is_none() {
        return anthropic_error(400, "invalid_request_error", "max_tokens: Field required");
    }
    if model.ends_with("-overloaded") {
        return anthropic_error(529, "overloaded_error", "Overloaded");
    }
    let messages = seen.body["messages"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let last = messages.last().cloned().unwrap_or(Value::Null);
    let answered = last["content"]
        .as_array()
        .is_some_and(|b| b.iter().any(|b| b["type"] == "tool_result"));
    let tool = seen.body["tools"][0]["name"].as_str().map(str::to_owned);
    let text = match &last["content"] {
        Value::String(text) => text.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .flat_map(|b| {
                // A tool result's content is a string or blocks of its own.
                let nested = b["content"].as_array().into_iter().flatten();
                b["text"]
                    .as_str()
                    .or(b["content"].as_str())
                    .into_iter()
                    .chain(nested.filter_map(|n| n["text"].as_str()))
            })
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    };
    // A forced tool (structured output by tool calling) is called once, with input that
    // follows its schema; otherwise the first tool twice, for Paris and Berlin.
    let forced = seen.body["tool_choice"]["name"].as_str().and_then(|name| {
        let tools = seen.body["tools"].as_array()?;
        let tool = tools.iter().find(|t| t["name"] == name)?;
        Some((name.to_owned(), example_of(&tool["input_schema"])))
    });
    // A coding agent (Claude Code) with its Read tool, asked about a file it names: it reads
    // it, once.
    // Its prompt need not be the last message (it sends system messages between turns).
    let prompts: String = messages
        .iter()
        .filter(|m| m["role"] == "user")
        .flat_map(|m| match &m["content"] {
            Value::String(text) => vec![text.clone()],
            Value::Array(blocks) => blocks
                .iter()
                .filter_map(|b| b["text"].as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        })
        .collect::<Vec<_>>()
        .join(" ");
    let read = seen.body["tools"]
        .as_array()
        .is_some_and(|tools| tools.iter().any(|t| t["name"] == "Read"))
        .then(|| {
            prompts
                .split_whitespace()
                .find(|word| word.starts_with('/') && word.contains("notes.txt"))
                .map(|path| path.trim_end_matches(['.', ',']).to_owned())
        })
        .flatten();
    // A coding agent (Codex CLI, through a translation) with its shell tool runs one command.
    let shell = seen.body["tools"]
        .as_array()
        .is_some_and(|tools| tools.iter().any(|t| t["name"] == "exec_command"));
    let calls: Vec<(String, String, Value)> = match (&tool, answered, forced) {
        (_, false, Some((name, input))) => vec![("toolu_01F".into(), name, input)],
        (_, false, None) if shell => vec![(
            "toolu_01S".into(),
            "exec_command".into(),
            json!({"cmd": super::fake_responses::CODEX_COMMAND}),
        )],
        (_, false, None) if read.is_some() => vec![(
            "toolu_01R".into(),
            "Read".into(),
            json!({"file_path": read.unwrap_or_default()}),
        )],
        (Some(name), false, None) => vec![
            ("toolu_01A".into(), name.clone(), json!({"city": "Paris"})),
            ("toolu_01B".into(), name.clone(), json!({"city": "Berlin"})),
        ],
        _ => Vec::new(),
    };
    let structured = seen.body.pointer("/output_config/format/schema");
    if let Some(schema) = structured
        && !schema_is_closed(schema, false)
    {
        return anthropic_error(
            400,
            "invalid_request_error",
            "output_config.format.schema: For 'object' type, 'additionalProperties' must be explicitly set to false",
        );
    }
    if let Some(schema) = structured
        && schema["required"].as_array().map(Vec::len)
            == schema["properties"].as_object().map(Map::len)
        && !properties_in_required_order(schema)
    {
        return anthropic_error(
            400,
            "invalid_request_error",
            "fake: the schema's properties arrived out of the client's order",
        );
    }
    let reply_text = if let Some(schema) = structured {
        example_of(schema).to_string()
    } else if calls.is_empty() {
        format!("echo: {text}")
    } else {
        "Let me check.".to_owned()
    };
    let stop = if calls.is_empty() {
        "end_turn"
    } else {
        "tool_use"
    };
    if !wants_stream(seen) {
        let mut content = vec![json!({"type": "text", "text": reply_text})];
        for (id, name, input) in &calls {
            content.push(json!({"type": "tool_use", "id": id, "name": name, "input": input}));
        }
        return Reply::Json(
            200,
            json!({"id": "msg_fake01", "type": "message", "role": "assistant", "model": model,
                "content": content, "stop_reason": stop, "stop_sequence": null,
                "usage": {"input_tokens": 12, "output_tokens": 6,
                          "cache_creation_input_tokens": 2, "cache_read_input_tokens": 4}}),
        );
    }
    let mut events = vec![
        named(
            "message_start",
            &json!({"type": "message_start", "message": {"id": "msg_fake01", "type": "message",
                "role": "assistant", "model": model, "content": [], "stop_reason": null,
                "stop_sequence": null, "usage": {"input_tokens": 12, "output_tokens": 1,
                "cache_creation_input_tokens": 2, "cache_read_input_tokens": 4}}}),
        ),
        named(
            "content_block_start",
            &json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ),
        named("ping", &json!({"type": "ping"})),
    ];
    let (first, second) = reply_text.split_at(reply_text.len() / 2);
    for piece in [first, second] {
        events.push(named(
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}}),
        ));
    }
    if model.ends_with("-midfail") {
        events.push(named(
            "error",
            &json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
        ));
        return Reply::Stream {
            events,
            reset: false,
        };
    }
    if model.ends_with("-reset") {
        return Reply::Stream {
            events,
            reset: true,
        };
    }
    events.push(named(
        "content_block_stop",
        &json!({"type": "content_block_stop", "index": 0}),
    ));
    for (n, (id, name, input)) in calls.iter().enumerate() {
        let index = n + 1;
        events.push(named(
            "content_block_start",
            &json!({"type": "content_block_start", "index": index,
                "content_block": {"type": "tool_use", "id": id, "name": name, "input": {}}}),
        ));
        let arguments = input.to_string();
        let (a, b) = arguments.split_at(arguments.len() / 2);
        for piece in [a, b] {
            events.push(named(
                "content_block_delta",
                &json!({"type": "content_block_delta", "index": index,
                    "delta": {"type": "input_json_delta", "partial_json": piece}}),
            ));
        }
        events.push(named(
            "content_block_stop",
            &json!({"type": "content_block_stop", "index": index}),
        ));
    }
    events.push(named(
        "message_delta",
        &json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": null},
            "usage": {"output_tokens": 6}}),
    ));
    events.push(named("message_stop", &json!({"type": "message_stop"})));
    Reply::Stream {
        events,
        reset: false,
    }
}

// --- Gemini -----------------------------------------------------------------------------------

fn gemini(seen: &Seen) -> Reply {
    let error = |status: u16, code: &str, message: &str| {
        Reply::Json(
            status,
            json!({"error": {"code": status, "message": message, "status": code}}),
        )
    };
    if seen.headers.get("x-goog-api-key").map(String::as_str) != Some(KEY) {
        return error(403, "PERMISSION_DENIED", "API key missing");
    }
    if seen.path.contains("key=") {
        return error(400, "INVALID_ARGUMENT", "the key must not be in the URL");
    }
    let rest = seen.path.trim_start_matches("/v1beta/models/");
    let (model, method) = rest.split_once(':').unwrap_or((rest, ""));
    let stream = method == "streamGenerateContent?alt=sse";
    if method == "countTokens" {
        // The fake's own count (a token per three bytes of the body), so a test can tell it
        // from the gateway's estimate.
        if !seen.body["contents"].is_array() {
            return error(400, "INVALID_ARGUMENT", "contents is required");
        }
        return Reply::Json(200, json!({"totalTokens": seen.raw.len() / 3}));
    }
    if !stream && method != "generateContent" {
        return error(404, "NOT_FOUND", "unknown method");
    }
    let contents = seen.body["contents"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let last = contents.last().cloned().unwrap_or(Value::Null);
    let answered = last["parts"]
        .as_array()
        .is_some_and(|p| p.iter().any(|p| p.get("functionResponse").is_some()));
    let tool = seen.body["tools"][0]["functionDeclarations"][0]["name"]
        .as_str()
        .map(str::to_owned);
    let text: String = last["parts"]
        .as_array()
        .map(|p| {
            p.iter()
                .filter_map(|p| p["text"].as_str())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default();
    let usage = json!({"promptTokenCount": 10, "candidatesTokenCount": 5, "totalTokenCount": 15,
        "cachedContentTokenCount": 3});
    let parts: Vec<Value> = match (&tool, answered) {
        (Some(name), false) => vec![
            json!({"functionCall": {"name": name, "args": {"city": "Paris"}}}),
            json!({"functionCall": {"name": name, "args": {"city": "Berlin"}}}),
        ],
        _ => match seen.body.pointer("/generationConfig/responseJsonSchema") {
            Some(schema) => vec![json!({"text": example_of(schema).to_string()})],
            None => vec![json!({"text": format!("echo: {text}")})],
        },
    };
    // Gemini's rules for structured output: a schema needs the JSON mime type, and the older
    // `responseSchema` (an OpenAPI subset) refuses JSON Schema's `additionalProperties`.
    let config = &seen.body["generationConfig"];
    if config.get("responseJsonSchema").is_some()
        && config["responseMimeType"] != "application/json"
    {
        return error(
            400,
            "INVALID_ARGUMENT",
            "responseMimeType must be application/json",
        );
    }
    if config["responseSchema"]
        .to_string()
        .contains("additionalProperties")
    {
        return error(
            400,
            "INVALID_ARGUMENT",
            "Invalid JSON payload received. Unknown name \"additionalProperties\" at 'generation_config.response_schema'",
        );
    }
    if !stream {
        return Reply::Json(
            200,
            json!({"candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": "STOP", "index": 0}],
                "usageMetadata": usage, "modelVersion": model, "responseId": "resp-fake01"}),
        );
    }
    let chunk = |parts: Value, finish: Option<&str>, usage: &Value| {
        let mut candidate = json!({"content": {"role": "model", "parts": parts}, "index": 0});
        if let Some(finish) = finish {
            candidate["finishReason"] = json!(finish);
        }
        let body = json!({"candidates": [candidate], "usageMetadata": usage,
            "modelVersion": model, "responseId": "resp-fake01"});
        format!("data: {body}\r\n\r\n")
    };
    let early = json!({"promptTokenCount": 10, "totalTokenCount": 10});
    let mut events = vec![chunk(json!([{"text": "echo"}]), None, &early)];
    if model.ends_with("-midfail") {
        events.push(format!(
            "data: {}\r\n\r\n",
            json!({"error": {"code": 500, "message": "An internal error has occurred.", "status": "INTERNAL"}})
        ));
        return Reply::Stream {
            events,
            reset: false,
        };
    }
    if model.ends_with("-reset") {
        return Reply::Stream {
            events,
            reset: true,
        };
    }
    match (&tool, answered) {
        (Some(_), false) => {
            events = vec![chunk(Value::Array(parts), Some("STOP"), &usage)];
        }
        _ => {
            let rest = format!(": {text}");
            events.push(chunk(json!([{"text": rest}]), Some("STOP"), &usage));
        }
    }
    Reply::Stream {
        events,
        reset: false,
    }
}

// --- Cohere -----------------------------------------------------------------------------------

fn cohere(seen: &Seen) -> Reply {
    if seen.headers.get("authorization").map(String::as_str) != Some(&format!("Bearer {KEY}")) {
        return Reply::Json(401, json!({"message": "invalid api token"}));
    }
    let model = model_of(seen);
    let messages = seen.body["messages"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let last = messages.last().cloned().unwrap_or(Value::Null);
    let answered = last["role"] == "tool";
    let tool = seen.body["tools"][0]["function"]["name"]
        .as_str()
        .map(str::to_owned);
    let text = match &last["content"] {
        Value::String(text) => text.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p["text"].as_str())
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    };
    let usage = json!({"billed_units": {"input_tokens": 7, "output_tokens": 3},
        "tokens": {"input_tokens": 20, "output_tokens": 3}});
    let calls: Vec<Value> = match (&tool, answered) {
        (Some(name), false) => vec![
            json!({"id": "weather_abc1", "type": "function", "function": {"name": name, "arguments": "{\"city\":\"Paris\"}"}}),
            json!({"id": "weather_abc2", "type": "function", "function": {"name": name, "arguments": "{\"city\":\"Berlin\"}"}}),
        ],
        _ => Vec::new(),
    };
    // Cohere's v2 structured output: the schema itself under `response_format.json_schema`.
    let reply = match seen.body.pointer("/response_format/json_schema") {
        Some(schema) => example_of(schema).to_string(),
        None => format!("echo: {text}"),
    };
    let finish = if calls.is_empty() {
        "COMPLETE"
    } else {
        "TOOL_CALL"
    };
    if !wants_stream(seen) {
        let message = if calls.is_empty() {
            json!({"role": "assistant", "content": [{"type": "text", "text": reply}]})
        } else {
            json!({"role": "assistant", "tool_plan": "I will look up the weather.", "tool_calls": calls})
        };
        return Reply::Json(
            200,
            json!({"id": "cohere-fake01", "finish_reason": finish, "message": message, "usage": usage}),
        );
    }
    let event = |kind: &str, body: Value| {
        let mut body = body;
        body["type"] = json!(kind);
        format!("event: {kind}\ndata: {body}\n\n")
    };
    let mut events = vec![event(
        "message-start",
        json!({"id": "cohere-fake01", "delta": {"message": {"role": "assistant", "content": [], "tool_plan": "", "tool_calls": [], "citations": []}}}),
    )];
    if calls.is_empty() {
        events.push(event(
            "content-start",
            json!({"index": 0, "delta": {"message": {"content": {"type": "text", "text": ""}}}}),
        ));
        for piece in reply.split_inclusive(' ') {
            events.push(event(
                "content-delta",
                json!({"index": 0, "delta": {"message": {"content": {"text": piece}}}}),
            ));
        }
        if model.ends_with("-reset") {
            return Reply::Stream {
                events,
                reset: true,
            };
        }
        events.push(event("content-end", json!({"index": 0})));
    } else {
        events.push(event(
            "tool-plan-delta",
            json!({"delta": {"message": {"tool_plan": "I will look up the weather."}}}),
        ));
        for (index, call) in calls.iter().enumerate() {
            let arguments = call["function"]["arguments"].as_str().unwrap_or_default();
            let (a, b) = arguments.split_at(arguments.len() / 2);
            events.push(event(
                "tool-call-start",
                json!({"index": index, "delta": {"message": {"tool_calls": {"id": call["id"], "type": "function",
                    "function": {"name": call["function"]["name"], "arguments": a}}}}}),
            ));
            events.push(event(
                "tool-call-delta",
                json!({"index": index, "delta": {"message": {"tool_calls": {"function": {"arguments": b}}}}}),
            ));
            events.push(event("tool-call-end", json!({"index": index})));
        }
    }
    events.push(event(
        "message-end",
        json!({"delta": {"finish_reason": finish, "usage": usage}}),
    ));
    Reply::Stream {
        events,
        reset: false,
    }
}

// --- OpenAI -----------------------------------------------------------------------------------

fn openai(seen: &Seen, answers: &Answers) -> Reply {
    let authorization = seen.headers.get("authorization");
    let accepted = match authorization {
        None => answers.keyless,
        Some(value) => answers
            .keys
            .iter()
            .any(|key| *value == format!("Bearer {key}")),
    };
    if !accepted {
        return Reply::Json(
            401,
            json!({"error": {"message": "bad key", "type": "invalid_request_error", "param": null, "code": "invalid_api_key"}}),
        );
    }
    if let Some(reply) = super::fake_scenarios::openai_scenario(seen, answers) {
        return reply;
    }
    let model = model_of(seen);
    let messages = seen.body["messages"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let last = messages.last().cloned().unwrap_or(Value::Null);
    let answered = last["role"] == "tool";
    let tool = seen.body["tools"][0]["function"]["name"]
        .as_str()
        .map(str::to_owned);
    let text = match &last["content"] {
        Value::String(text) => text.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p["text"].as_str())
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    };
    let (input, output) = (answers.prompt_tokens, answers.completion_tokens);
    let usage = json!({"prompt_tokens": input, "completion_tokens": output,
        "total_tokens": input + output,
        "prompt_tokens_details": {"cached_tokens": answers.cached_tokens}});
    let forced = seen.body["tool_choice"]["function"]["name"]
        .as_str()
        .and_then(|name| {
            let tools = seen.body["tools"].as_array()?;
            let tool = tools.iter().find(|t| t["function"]["name"] == name)?;
            let arguments = example_of(&tool["function"]["parameters"]).to_string();
            Some(json!({"id": "call_oaF", "type": "function",
                "function": {"name": name, "arguments": arguments}}))
        });
    let calls: Vec<Value> = match (&tool, answered) {
        _ if forced.is_some() && !answered => forced.into_iter().collect(),
        (Some(name), false) => vec![
            json!({"id": "call_oa1", "type": "function", "function": {"name": name, "arguments": "{\"city\":\"Paris\"}"}}),
            json!({"id": "call_oa2", "type": "function", "function": {"name": name, "arguments": "{\"city\":\"Berlin\"}"}}),
        ],
        _ => Vec::new(),
    };
    let structured = seen.body.pointer("/response_format/json_schema");
    if let Some(format) = structured
        && format["strict"] == true
        && !schema_is_closed(&format["schema"], true)
    {
        return Reply::Json(
            400,
            json!({"error": {"message": "Invalid schema for response_format: In context=(), 'required' is required to be supplied and to be an array including every key in properties.", "type": "invalid_request_error", "param": "response_format", "code": null}}),
        );
    }
    // A strict schema from an SDK lists `required` in field order, as `properties` is: a
    // gateway that re-sorted keys would be caught here.
    if let Some(format) = structured
        && format["strict"] == true
        && !properties_in_required_order(&format["schema"])
    {
        return Reply::Json(
            400,
            json!({"error": {"message": "fake: the schema's properties arrived out of the client's order", "type": "invalid_request_error", "param": "response_format", "code": null}}),
        );
    }
    let reply = match structured {
        Some(format) => example_of(&format["schema"]).to_string(),
        None => answers
            .text
            .map_or_else(|| format!("echo: {text}"), str::to_owned),
    };
    let finish = if calls.is_empty() {
        "stop"
    } else {
        "tool_calls"
    };
    if !wants_stream(seen) {
        let mut message = json!({"role": "assistant", "content": if calls.is_empty() { json!(reply) } else { Value::Null }});
        if !calls.is_empty() {
            message["tool_calls"] = Value::Array(calls);
        }
        return Reply::Json(
            200,
            json!({"id": "chatcmpl-fake01", "object": "chat.completion", "created": 1, "model": model,
                "choices": [{"index": 0, "message": message, "finish_reason": finish}], "usage": usage}),
        );
    }
    let chunk = |delta: Value, finish: Option<&str>| {
        let body = json!({"id": "chatcmpl-fake01", "object": "chat.completion.chunk", "created": 1,
            "model": model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
        format!("data: {body}\n\n")
    };
    let mut events = vec![chunk(json!({"role": "assistant", "content": ""}), None)];
    if calls.is_empty() {
        for piece in reply.split_inclusive(' ') {
            events.push(chunk(json!({"content": piece}), None));
        }
    } else {
        for (index, call) in calls.iter().enumerate() {
            let arguments = call["function"]["arguments"].as_str().unwrap_or_default();
            let (a, b) = arguments.split_at(arguments.len() / 2);
            events.push(chunk(
                json!({"tool_calls": [{"index": index, "id": call["id"], "type": "function",
                    "function": {"name": call["function"]["name"], "arguments": a}}]}),
                None,
            ));
            events.push(chunk(
                json!({"tool_calls": [{"index": index, "function": {"arguments": b}}]}),
                None,
            ));
        }
    }
    if model.ends_with("-reset") {
        return Reply::Stream {
            events,
            reset: true,
        };
    }
    events.push(chunk(json!({}), Some(finish)));
    if seen.body["stream_options"]["include_usage"] == Value::Bool(true) {
        let body = json!({"id": "chatcmpl-fake01", "object": "chat.completion.chunk", "created": 1,
            "model": model, "choices": [], "usage": usage});
        events.push(format!("data: {body}\n\n"));
    }
    events.push("data: [DONE]\n\n".to_owned());
    Reply::Stream {
        events,
        reset: false,
    }
}

/// The platform providers in front of the fake, one per format (YAML for the renderer):
/// `anthropic`, `gemini`, `cohere` and `openai-fake`, each with the models the tests use, and
/// the built-in `mock`.
pub fn providers_yaml(upstream: SocketAddr) -> String {
    let provider = |name: &str, kind: &str, base: &str, models: &[&str]| {
        let models: Vec<String> = models.iter().map(|m| format!("{{name: {m}}}")).collect();
        format!(
            "apiVersion: llm.dgidgi.io/v1alpha1\nkind: LlmProvider\nmetadata: {{name: {name}, namespace: dgidgi-system}}\nspec: {{type: {kind}, baseUrl: \"http://{upstream}{base}\", credentialsRef: {{name: native-key}}, models: [{}]}}\n---\n",
            models.join(", ")
        )
    };
    [
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: native-key, namespace: dgidgi-system}}\nstringData: {{apiKey: {KEY}}}\n---\n"
        ),
        provider(
            "anthropic",
            "anthropic",
            "",
            &["claude-fake", "claude-midfail", "claude-reset", "claude-overloaded"],
        ),
        provider(
            "gemini",
            "gemini",
            "/v1beta",
            &["gemini-fake", "gemini-midfail", "gemini-reset", "gemini-embed-fake, embedding: true"],
        ),
        provider(
            "cohere",
            "cohere",
            "",
            &["command-fake", "command-reset", "embed-fake, embedding: true"],
        ),
        // An OpenAI-compatible server that serves the Responses API too.
        format!(
            "apiVersion: llm.dgidgi.io/v1alpha1\nkind: LlmProvider\nmetadata: {{name: openai-resp, namespace: dgidgi-system}}\nspec: {{type: openai-compatible, baseUrl: \"http://{upstream}/v1\", credentialsRef: {{name: native-key}}, responsesApi: true, models: [{{name: gpt-fake}}, {{name: gpt-reset}}, {{name: gpt-midfail}}]}}\n---\n"
        ),
        provider(
            "openai-fake",
            "openai-compatible",
            "/v1",
            &[
                "gpt-fake",
                "gpt-reset",
                "text-embed-fake, embedding: true",
                "text-embed-flaky, embedding: true",
            ],
        ),
        // An enterprise namespace with room enough that limits never decide these tests.
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: team-acme\n  labels: {llm.dgidgi.io/tier: enterprise}\n  annotations: {llm.dgidgi.io/requests-per-minute: \"100000\", llm.dgidgi.io/tokens-per-day: \"1000000000\", llm.dgidgi.io/concurrent: \"1000\"}\n---\n".to_owned(),
        "apiVersion: llm.dgidgi.io/v1alpha1\nkind: LlmProvider\nmetadata: {name: mock, namespace: dgidgi-system}\nspec: {type: mock}\n---\n".to_owned(),
        "apiVersion: llm.dgidgi.io/v1alpha1\nkind: LlmTenant\nmetadata: {name: acme, namespace: team-acme}\nspec: {}\n".to_owned(),
    ]
    .concat()
}
