//! Per-chunk cost of the stream layer: SSE framing alone, and one upstream event re-framed for a
//! client (parse the event's JSON, translate, write the client's bytes) for each pair the
//! gateway serves — the pass-throughs and every translation.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dgidgi::formats::Format;
use dgidgi::formats::stream::{Context, reframer};
use dgidgi::sse::{self, Event};

/// One typical mid-stream event per upstream format (a short text delta).
fn event(format: Format) -> Event {
    let (name, data) = match format {
        Format::OpenAi => (
            None,
            r#"{"id":"chatcmpl-123","object":"chat.completion.chunk","created":1694268190,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{"content":" the quick brown"},"finish_reason":null}]}"#,
        ),
        Format::Anthropic => (
            Some("content_block_delta"),
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" the quick brown"}}"#,
        ),
        Format::Gemini => (
            None,
            r#"{"candidates":[{"content":{"parts":[{"text":" the quick brown"}],"role":"model"},"index":0}],"usageMetadata":{"promptTokenCount":8,"totalTokenCount":8},"modelVersion":"gemini-2.5-flash","responseId":"resp-1"}"#,
        ),
        Format::Cohere => (
            Some("content-delta"),
            r#"{"type":"content-delta","index":0,"delta":{"message":{"content":{"text":" the quick brown"}}}}"#,
        ),
        Format::Responses => (
            Some("response.output_text.delta"),
            r#"{"type":"response.output_text.delta","item_id":"msg_1","output_index":0,"content_index":0,"delta":" the quick brown","logprobs":[],"sequence_number":5}"#,
        ), // Bedrock's event-stream message, as its framing hands it on (type and JSON payload).
        Format::Bedrock => (
            Some("contentBlockDelta"),
            r#"{"contentBlockIndex":0,"delta":{"text":" the quick brown"},"p":"abcdefghijk"}"#,
        ),
    };
    Event {
        event: name.map(str::to_owned),
        data: data.to_owned(),
        ..Event::default()
    }
}

fn framing(c: &mut Criterion) {
    let mut wire = Vec::new();
    let one = event(Format::Anthropic);
    for _ in 0..100 {
        sse::write_event(&mut wire, one.event.as_deref(), &one.data);
    }
    let mut group = c.benchmark_group("sse");
    group.throughput(Throughput::Elements(100));
    group.bench_function("parse 100 events in 1500-byte reads", |b| {
        b.iter(|| {
            let mut parser = sse::Parser::default();
            let mut events = Vec::with_capacity(100);
            for read in wire.chunks(1500) {
                parser.feed(black_box(read), &mut events).unwrap();
            }
            parser.finish(&mut events).unwrap();
            black_box(events.len())
        })
    });
    group.bench_function("write 100 events", |b| {
        b.iter(|| {
            let mut out = Vec::with_capacity(wire.len());
            for _ in 0..100 {
                sse::write_event(&mut out, one.event.as_deref(), black_box(&one.data));
            }
            black_box(out.len())
        })
    });
    group.finish();
}

fn reframing(c: &mut Criterion) {
    let pairs = [
        (Format::OpenAi, Format::OpenAi),
        (Format::Anthropic, Format::Anthropic),
        (Format::Anthropic, Format::OpenAi),
        (Format::Gemini, Format::OpenAi),
        (Format::Cohere, Format::OpenAi),
        (Format::OpenAi, Format::Anthropic),
        (Format::Gemini, Format::Anthropic),
        (Format::Cohere, Format::Anthropic),
        (Format::Responses, Format::Responses),
        (Format::Gemini, Format::Gemini),
        (Format::OpenAi, Format::Responses),
        (Format::Anthropic, Format::Responses),
        (Format::OpenAi, Format::Gemini),
        (Format::Bedrock, Format::OpenAi),
        (Format::Bedrock, Format::Anthropic),
    ];
    let mut group = c.benchmark_group("reframe one chunk");
    group.throughput(Throughput::Elements(1));
    for (upstream, client) in pairs {
        let event = event(upstream);
        let mut reframer = reframer(
            upstream,
            client,
            Context {
                model: "bench".into(),
                created: 1,
                client_wants_usage: false,
                items: None,
            },
        );
        let mut out = Vec::with_capacity(4096);
        group.bench_function(format!("{upstream:?} -> {client:?}"), |b| {
            b.iter(|| {
                out.clear();
                black_box(reframer.event(black_box(&event), &mut out));
                black_box(out.len())
            })
        });
    }
    group.finish();
}

/// The pass-through of a chat request body (~6 KiB: a system prompt, a conversation, two tools
/// with schemas): indexing the body as sent and writing it with the model and the output limit
/// edited, against serializing the parsed body with the same edit (what the gateway did before
/// bodies were kept as sent).
fn pass_through(c: &mut Criterion) {
    use dgidgi::formats::{SentBody, write_with_edited_members};
    use serde_json::{Map, Value, json};
    let tool = |name: &str| {
        json!({"type": "function", "function": {"name": name, "description": "Look something up",
            "parameters": {"type": "object", "properties": {"query": {"type": "string"},
            "limit": {"type": "integer"}}, "required": ["query", "limit"], "additionalProperties": false}}})
    };
    let mut messages =
        vec![json!({"role": "system", "content": "You are a careful assistant. ".repeat(20)})];
    for turn in 0..12 {
        messages.push(
            json!({"role": "user", "content": format!("question {turn}: {}", "words ".repeat(40))}),
        );
        messages.push(json!({"role": "assistant", "content": format!("answer {turn}: {}", "words ".repeat(30))}));
    }
    let body = json!({"model": "gpt-4o", "messages": messages, "tools": [tool("search"), tool("fetch")],
        "temperature": 0.2, "max_tokens": 900});
    let bytes = bytes::Bytes::from(serde_json::to_vec(&body).unwrap());
    let Value::Object(parsed) = body else {
        unreachable!()
    };
    let names = [
        "model",
        "max_tokens",
        "max_completion_tokens",
        "stream_options",
    ];
    let edit = |json: &mut Map<String, Value>| {
        json.insert("model".into(), json!("gpt-4o-2024-08-06"));
        json.insert("max_tokens".into(), json!(500));
    };
    let mut group = c.benchmark_group("pass-through");
    group.throughput(Throughput::Bytes(bytes.len() as u64));
    // As the chat front door reads a body: the conversation and tools left as they came.
    let unread =
        dgidgi::formats::dialect::dialect(dgidgi::formats::Format::OpenAi).forwarded_unread();
    group.bench_function("read as sent (conversation unparsed) + write edited", |b| {
        b.iter(|| {
            let (sent, shallow) = SentBody::read(bytes.clone(), unread, &[]).unwrap();
            sent.write_edited(&shallow, &names, edit)
        });
    });
    group.bench_function("serialize parsed + edit", |b| {
        b.iter(|| write_with_edited_members(&parsed, &names, edit));
    });
    group.finish();
}

/// What signing costs per upstream request: a bearer key, and AWS SigV4 (the canonical
/// request, the body's SHA-256 and four HMACs) on a 4 KiB Converse body.
fn signing(c: &mut Criterion) {
    use dgidgi::crypto::Credential;
    use dgidgi::formats::auth::{ACCESS_KEY_ID, Auth, SECRET_ACCESS_KEY, SESSION_TOKEN, Scope};
    let body = bytes::Bytes::from(vec![b'x'; 4096]);
    let request = || {
        hyper::Request::post(
            "https://bedrock-runtime.us-east-1.amazonaws.com/model/us.anthropic.claude-sonnet-4-5-20250929-v1%3A0/converse-stream",
        )
        .header("content-type", "application/json")
        .header("accept", "application/json, application/vnd.amazon.eventstream")
        .body(body.clone())
        .unwrap()
    };
    let scope = Scope {
        region: Some("us-east-1"),
        time: std::time::SystemTime::now(),
    };
    let key = Credential::key(b"sk-bench-0000000000000000000000000000".to_vec());
    let parts = Credential::parts(
        [
            (ACCESS_KEY_ID, "AKIABENCH0000000000"),
            (
                SECRET_ACCESS_KEY,
                "bench/secret/access/key/0000000000000000",
            ),
            (SESSION_TOKEN, "FwoGZXIvYXdzEBench//session+token=="),
        ]
        .map(|(n, v)| (n, zeroize::Zeroizing::new(v.as_bytes().to_vec()))),
    )
    .unwrap();
    let mut group = c.benchmark_group("sign a request");
    group.bench_function("bearer key", |b| {
        b.iter(|| {
            let mut request = request();
            Auth::Bearer.sign(&mut request, &key, &scope).unwrap();
            black_box(request)
        })
    });
    group.bench_function("aws sigv4, 4 KiB body, session token", |b| {
        b.iter(|| {
            let mut request = request();
            Auth::SigV4 { service: "bedrock" }
                .sign(&mut request, &parts, &scope)
                .unwrap();
            black_box(request)
        })
    });
    group.finish();
}

criterion_group!(benches, framing, reframing, pass_through, signing);
criterion_main!(benches);
