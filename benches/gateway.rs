//! The request path's per-request pieces, on a rendered fleet of 1,000 tenants (the same fleet
//! as the render benchmark): finding the tenant of an access key, the routing decision, parsing
//! a chat body and re-serializing it for the upstream, and reading usage from an answer. The
//! metering and format benchmarks cover the rest of the path; `benches/load.rs` the whole.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use dgidgi::config::load::Snapshot;
use dgidgi::formats::{
    Format, cap_output_tokens, openai, translate_response, write_with_edited_members,
};
use dgidgi::render::manifests::config_dir_files;
use dgidgi::render::{InputLoader, RenderContext, render};
use dgidgi::routing::plan::{RouteRequest, plan};
use k8s_openapi::jiff::Timestamp;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use serde_json::{Map, Value};

#[path = "common/fleet.rs"]
mod fleet;

/// A chat request as SDKs send it (system + user message, a few sampling fields).
const CHAT: &str = r#"{"model":"gpt-4o","messages":[{"role":"system","content":"You are a helpful assistant that answers in one short paragraph."},{"role":"user","content":"What is the capital of France, and why is it famous?"}],"temperature":0.7,"max_tokens":256,"top_p":1,"user":"user-1234"}"#;

/// An OpenAI chat completion as the API returns it.
const ANSWER: &str = r#"{"id":"chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT","object":"chat.completion","created":1741569952,"model":"gpt-4o-2024-08-06","choices":[{"index":0,"message":{"role":"assistant","content":"Paris is the capital of France. It is famous for the Eiffel Tower, the Louvre, its cafés and its long history as a centre of art, fashion and politics.","refusal":null,"annotations":[]},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":38,"completion_tokens":36,"total_tokens":74,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}},"service_tier":"default","system_fingerprint":"fp_fc9f1d7035"}"#;

/// An Anthropic message as the API returns it.
const ANTHROPIC_ANSWER: &str = r#"{"id":"msg_013Zva2CMHLNnXjNJJKqJ2EF","type":"message","role":"assistant","model":"claude-sonnet-4-20250514","content":[{"type":"text","text":"Paris is the capital of France. It is famous for the Eiffel Tower, the Louvre, its cafés and its long history as a centre of art, fashion and politics."}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":38,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":36}}"#;

/// The fleet rendered and loaded as the gateway loads it, and every access key it generated.
fn loaded(tenants: usize) -> (Snapshot, Vec<String>) {
    let mut loader = InputLoader::new("dgidgi-system").expect("schemas compile");
    loader
        .add_yaml("fleet.yaml", &fleet::fleet(tenants))
        .expect("fleet parses");
    let ctx = RenderContext::new(
        "dgidgi-system",
        Timestamp::from_second(1_795_608_000).expect("timestamp"),
    );
    let output = render(loader.finish(), &ctx, &mut ChaCha20Rng::seed_from_u64(1)).expect("render");
    let dir = tempfile::tempdir().expect("tempdir");
    for file in config_dir_files(&output).expect("config files") {
        std::fs::write(dir.path().join(&file.path), &file.bytes).expect("write");
    }
    let snapshot = Snapshot::load(dir.path()).expect("config loads");
    let keys = output
        .access_keys
        .iter()
        .map(|secret| secret.value.to_string())
        .collect();
    (snapshot, keys)
}

fn request_path(c: &mut Criterion) {
    let (snapshot, keys) = loaded(1_000);
    let key = keys[keys.len() / 2].as_bytes();
    c.bench_function("gateway/authenticate (SHA-256 + lookup, 1k tenants)", |b| {
        b.iter(|| black_box(snapshot.tenant_for_key(black_box(key))).is_some())
    });
    c.bench_function("gateway/authenticate unknown key", |b| {
        b.iter(|| black_box(snapshot.tenant_for_key(black_box(b"dgk_not_a_key_of_anyone"))))
    });

    let tenant = snapshot.tenant_for_key(key).expect("the key has a tenant");
    let request = RouteRequest {
        model: Some("gpt-4o"),
        provider: None,
        stream: false,
        tools: false,
        embeddings: false,
    };
    c.bench_function(
        "gateway/routing decision (policy match, weights, fallback)",
        |b| {
            let mut pick = 0u64;
            b.iter(|| {
                pick = pick.wrapping_add(0x9e37_79b9_7f4a_7c15);
                black_box(plan(&snapshot.config, tenant, &request, pick).expect("planned"))
            })
        },
    );

    c.bench_function(
        "gateway/chat body parse + re-serialize for the upstream",
        |b| {
            b.iter(|| {
                let mut json: Map<String, Value> =
                    serde_json::from_slice(black_box(CHAT.as_bytes())).expect("parses");
                json.insert("model".into(), Value::String("gpt-4o".into()));
                black_box(serde_json::to_vec(&json).expect("serializes"))
            })
        },
    );

    // A realistic conversation (40 messages, ~40 KB): re-addressed for an upstream of the
    // client's format, as each attempt does (the model and the output cap change).
    let conversation: Map<String, Value> = serde_json::from_value(serde_json::json!({
        "model": "gpt-4o",
        "max_tokens": 800,
        "messages": (0..40)
            .map(|i| serde_json::json!({
                "role": if i % 2 == 0 { "user" } else { "assistant" },
                "content": format!("turn {i}: {}", "a sentence of the conversation. ".repeat(30)),
            }))
            .collect::<Vec<_>>(),
    }))
    .expect("an object");
    c.bench_function(
        "gateway/re-address a 40-message body for the upstream",
        |b| {
            b.iter(|| {
                black_box(write_with_edited_members(
                    black_box(&conversation),
                    &[
                        "model",
                        "stream_options",
                        "max_tokens",
                        "max_completion_tokens",
                    ],
                    |json| {
                        json.insert("model".into(), Value::String("gpt-4o-2024-08-06".into()));
                        cap_output_tokens(json, Format::OpenAi, true, 500);
                    },
                ))
            })
        },
    );

    // The same conversation passed through as sent (the pass-through's real path since bodies
    // are kept as they arrived): read as the chat front door reads it (the conversation and
    // tools left unparsed), then written with the same edit.
    let unread =
        dgidgi::formats::dialect::dialect(dgidgi::formats::Format::OpenAi).forwarded_unread();
    let sent_bytes = bytes::Bytes::from(serde_json::to_vec(&conversation).expect("serializes"));
    c.bench_function(
        "gateway/re-address a 40-message body as sent (index + write)",
        |b| {
            b.iter(|| {
                let (sent, shallow) =
                    dgidgi::formats::SentBody::read(black_box(sent_bytes.clone()), unread, &[])
                        .expect("an object");
                black_box(sent.write_edited(
                    &shallow,
                    &[
                        "model",
                        "stream_options",
                        "max_tokens",
                        "max_completion_tokens",
                    ],
                    |json| {
                        json.insert("model".into(), Value::String("gpt-4o-2024-08-06".into()));
                        cap_output_tokens(json, Format::OpenAi, true, 500);
                    },
                ))
            })
        },
    );

    c.bench_function("gateway/usage from an OpenAI answer", |b| {
        b.iter(|| black_box(openai::usage_from_response(black_box(ANSWER.as_bytes()))))
    });
    c.bench_function("gateway/answer OpenAI -> OpenAI (usage, model)", |b| {
        b.iter(|| {
            black_box(
                translate_response(
                    Format::OpenAi,
                    Format::OpenAi,
                    ANSWER.as_bytes(),
                    "gpt-4o",
                    1_764_000_000,
                )
                .expect("translates"),
            )
        })
    });
    c.bench_function(
        "gateway/answer Anthropic -> OpenAI (translation, usage)",
        |b| {
            b.iter(|| {
                black_box(
                    translate_response(
                        Format::Anthropic,
                        Format::OpenAi,
                        ANTHROPIC_ANSWER.as_bytes(),
                        "claude-sonnet-4-20250514",
                        1_764_000_000,
                    )
                    .expect("translates"),
                )
            })
        },
    );
}

criterion_group!(benches, request_path);
criterion_main!(benches);
