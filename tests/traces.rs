//! OpenTelemetry traces, received by a local OTLP/HTTP receiver that decodes the protobuf with
//! the `opentelemetry-proto` definitions: the spans of a plain request, a stream, a request
//! that retried and fell back, and a refused one, with their attributes checked by name and
//! value; the client's `traceparent` as the parent; the upstream fake receiving the
//! `traceparent` of its attempt's span; and no content or key in any attribute.

mod common;

use std::time::Duration;

use common::fake_providers::{self, Fake};
use common::gateway::InProcess;
use common::otlp::{Received, Spans, gated_receiver, receiver};
use dgidgi::gateway::Settings;
use dgidgi::telemetry::Traces;
use serde_json::json;

struct Traced {
    gateway: InProcess,
    fake: Fake,
    traces: Traces,
    spans: Spans,
}

const TRACE_ID: &str = "0af7651916cd43dd8448eb211c80319c";
const CLIENT_SPAN: &str = "b7ad6b7169203331";

impl Traced {
    async fn new() -> Self {
        let fake = fake_providers::start_with(fake_providers::Answers::default()).await;
        let (address, spans) = receiver().await;
        let traces = Traces::build(Some(&format!("http://{address}/v1/traces"))).unwrap();
        let policy = format!(
            "apiVersion: llm.dgidgi.io/v1alpha1\nkind: LlmProvider\nmetadata: {{name: failing, namespace: dgidgi-system}}\nspec: {{type: openai-compatible, baseUrl: \"http://{}/v1\", credentialsRef: {{name: native-key}}, models: [{{name: fail-500}}]}}\n---\napiVersion: llm.dgidgi.io/v1alpha1\nkind: RoutingPolicy\nmetadata: {{name: p, namespace: dgidgi-system}}\nspec: {{rules: [{{match: {{model: flaky}}, targets: [{{provider: failing, model: fail-500}}], fallback: [{{provider: anthropic, model: claude-fake}}], retry: {{attempts: 1, on: [server-error], backoff: 10ms}}}}]}}\n---\n",
            fake.address
        );
        let yaml = [
            fake_providers::providers_yaml(fake.address),
            "\n---\n".into(),
            policy,
        ]
        .concat();
        let settings = Settings {
            traces: Some(traces.clone()),
            ..Settings::default()
        };
        let gateway = InProcess::start(&yaml, settings).await;
        Self {
            gateway,
            fake,
            traces,
            spans,
        }
    }

    async fn chat(&self, body: serde_json::Value) -> (u16, String) {
        self.post("/v1/chat/completions", body).await
    }

    async fn post(&self, path: &str, body: serde_json::Value) -> (u16, String) {
        self.post_in(path, body, "01").await
    }

    /// Posts with the client's `traceparent`, its flags `flags` (`01` sampled, `00` not).
    async fn post_in(&self, path: &str, body: serde_json::Value, flags: &str) -> (u16, String) {
        let key = self.gateway.key();
        let traceparent = format!("00-{TRACE_ID}-{CLIENT_SPAN}-{flags}");
        let (status, _, body) = common::http::send_with(
            self.gateway.running.api,
            "POST",
            path,
            &[
                ("authorization", &format!("Bearer {key}")),
                ("traceparent", &traceparent),
            ],
            Some(body.to_string()),
        )
        .await
        .unwrap();
        (status, body)
    }

    /// The spans received once `count` SERVER spans (one per request) and their inferences
    /// are in.
    async fn received(&self, servers: usize, inferences: usize) -> Vec<Received> {
        for _ in 0..100 {
            self.traces.flush();
            let spans = self.spans.lock().unwrap().clone();
            let count = |kind: i32, prefix: &str| {
                spans
                    .iter()
                    .filter(|s| s.kind == kind && s.name.starts_with(prefix))
                    .count()
            };
            if count(2, "POST /") >= servers
                && count(3, "chat ") >= inferences
                && spans
                    .iter()
                    .filter(|s| s.attributes.contains_key("dgidgi.outcome"))
                    .count()
                    >= inferences
            {
                return spans;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the spans never arrived: {:?}", self.spans.lock().unwrap());
    }
}

fn the<'a>(spans: &'a [Received], name: &str) -> Vec<&'a Received> {
    spans.iter().filter(|s| s.name == name).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_is_a_server_span_an_inference_and_an_attempt_in_the_clients_trace() {
    let traced = Traced::new().await;
    let (status, body) = traced
        .chat(json!({"model": "anthropic/claude-fake", "max_tokens": 50,
            "messages": [{"role": "user", "content": "secret prompt text"}]}))
        .await;
    assert_eq!(status, 200, "{body}");
    let spans = traced.received(1, 1).await;
    let server = the(&spans, "POST /v1/chat/completions")[0];
    assert_eq!(server.kind, 2, "SERVER");
    assert_eq!(server.trace_id, TRACE_ID);
    assert_eq!(
        server.parent, CLIENT_SPAN,
        "the client's span is the parent"
    );
    assert_eq!(server.attributes["http.request.method"], "POST");
    assert_eq!(server.attributes["http.route"], "/v1/chat/completions");
    assert_eq!(server.attributes["http.response.status_code"], "200");
    let inference = the(&spans, "chat claude-fake")[0];
    assert_eq!(inference.kind, 3, "CLIENT");
    assert_eq!(inference.parent, server.span_id);
    let attributes = &inference.attributes;
    assert_eq!(attributes["gen_ai.operation.name"], "chat");
    assert_eq!(attributes["gen_ai.provider.name"], "anthropic");
    assert_eq!(attributes["gen_ai.request.model"], "claude-fake");
    assert_eq!(attributes["gen_ai.response.model"], "claude-fake");
    assert_eq!(attributes["gen_ai.request.max_tokens"], "50");
    assert!(
        attributes["gen_ai.usage.input_tokens"]
            .parse::<u64>()
            .unwrap()
            > 0
    );
    assert!(
        attributes["gen_ai.usage.output_tokens"]
            .parse::<u64>()
            .unwrap()
            > 0
    );
    assert_eq!(attributes["dgidgi.tenant"], "team-acme/acme");
    assert_eq!(attributes["dgidgi.source"], "platform");
    assert_eq!(attributes["dgidgi.fallback_count"], "0");
    assert!(attributes.contains_key("dgidgi.cost_micro_usd"));
    assert_eq!(attributes["gen_ai.response.finish_reasons"], r#"["stop"]"#);
    let attempt = spans
        .iter()
        .find(|s| s.name == "POST" && s.parent == inference.span_id)
        .expect("an attempt span under the inference");
    assert_eq!(attempt.kind, 3);
    assert_eq!(attempt.attributes["http.response.status_code"], "200");
    assert_eq!(attempt.attributes["url.path"], "/v1/messages");
    // The provider was called with the attempt's own trace context.
    let seen = traced.fake.log.lock().unwrap().last().cloned().unwrap();
    assert_eq!(
        seen.headers["traceparent"],
        format!("00-{TRACE_ID}-{}-01", attempt.span_id)
    );
    assert_no_content_or_secret(&spans, &traced);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_and_a_fallback_and_a_refusal_each_leave_their_spans() {
    let traced = Traced::new().await;
    let (status, body) = traced
        .chat(json!({"model": "gemini/gemini-fake", "stream": true,
            "messages": [{"role": "user", "content": "stream it"}]}))
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = traced
        .chat(json!({"model": "flaky", "messages": [{"role": "user", "content": "retry me"}]}))
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = traced
        .chat(json!({"model": "nobody/nothing", "messages": [{"role": "user", "content": "x"}]}))
        .await;
    assert_eq!(status, 404);
    let spans = traced.received(3, 2).await;
    // The stream: usage and time to first token, read when the stream ended.
    let stream = the(&spans, "chat gemini-fake")[0];
    assert_eq!(stream.attributes["gen_ai.provider.name"], "gcp.gemini");
    assert!(stream.attributes.contains_key("gen_ai.usage.output_tokens"));
    assert!(
        stream
            .attributes
            .contains_key("dgidgi.time_to_first_token_ms")
    );
    assert_eq!(stream.attributes["dgidgi.outcome"], "complete");
    assert_eq!(
        stream.attributes["gen_ai.response.finish_reasons"],
        r#"["stop"]"#
    );
    // The fallback: two failed tries of fail-500 (a retry), then the fallback answered.
    let flaky = the(&spans, "chat flaky")[0];
    assert_eq!(flaky.attributes["dgidgi.fallback_count"], "1");
    assert_eq!(flaky.attributes["gen_ai.response.model"], "claude-fake");
    let attempts: Vec<&Received> = spans
        .iter()
        .filter(|s| s.name == "POST" && s.parent == flaky.span_id)
        .collect();
    assert_eq!(attempts.len(), 3, "{attempts:?}");
    let failed: Vec<_> = attempts.iter().filter(|a| a.error).collect();
    assert_eq!(failed.len(), 2);
    for attempt in failed {
        assert_eq!(attempt.attributes["error.type"], "server_error");
        assert_eq!(attempt.attributes["http.response.status_code"], "500");
    }
    // The refusal: its SERVER span, with its status, and no inference.
    let refused: Vec<&Received> = spans
        .iter()
        .filter(|s| {
            s.kind == 2
                && s.attributes
                    .get("http.response.status_code")
                    .map(String::as_str)
                    == Some("404")
        })
        .collect();
    assert_eq!(refused.len(), 1);
    assert!(spans.iter().all(|s| s.parent != refused[0].span_id));
    assert_no_content_or_secret(&spans, &traced);
    // The picture in docs/observability.md: `DGIDGI_TRACE_PICTURE=docs/trace.svg`.
    if let Ok(path) = std::env::var("DGIDGI_TRACE_PICTURE") {
        std::fs::write(path, common::otlp::waterfall_svg(&spans, &flaky.parent)).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finish_reasons_are_read_from_answers_relayed_as_sent_and_translated() {
    let traced = Traced::new().await;
    let tools = json!([{"type": "function", "function": {"name": "weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]);
    let user = json!([{"role": "user", "content": "weather?"}]);
    // A whole answer relayed as sent (re-read for its reason because the trace is recorded).
    let (status, body) = traced
        .chat(json!({"model": "openai-resp/gpt-fake", "messages": user}))
        .await;
    assert_eq!(status, 200, "{body}");
    // Streams relayed as sent: OpenAI's chunks and Anthropic's events, both calling tools.
    let (status, body) = traced
        .chat(
            json!({"model": "openai-resp/gpt-fake", "stream": true, "tools": tools,
            "messages": user}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = traced
        .post(
            "/v1/messages",
            json!({"model": "anthropic/claude-fake", "max_tokens": 64, "stream": true,
                "tools": [{"name": "weather", "input_schema": {"type": "object"}}],
                "messages": user}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let spans = traced.received(3, 3).await;
    let reasons = |name: &str| -> Vec<String> {
        the(&spans, name)
            .iter()
            .map(|s| s.attributes["gen_ai.response.finish_reasons"].clone())
            .collect()
    };
    let mut openai = reasons("chat gpt-fake");
    openai.sort();
    assert_eq!(openai, [r#"["stop"]"#, r#"["tool_calls"]"#]);
    assert_eq!(reasons("chat claude-fake"), [r#"["tool_calls"]"#]);
}

/// A client's trace it did not sample is followed unsampled: nothing is exported, and the
/// provider still receives the trace's id (its own span unsampled), so the trace stays one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsampled_client_trace_exports_nothing_and_still_propagates() {
    let traced = Traced::new().await;
    for (path, body) in [
        (
            "/v1/chat/completions",
            json!({"model": "anthropic/claude-fake", "messages": [{"role": "user", "content": "hi"}]}),
        ),
        (
            "/v1/chat/completions",
            json!({"model": "flaky", "messages": [{"role": "user", "content": "hi"}]}),
        ),
        (
            "/v1/chat/completions",
            json!({"model": "nobody/nothing", "messages": [{"role": "user", "content": "x"}]}),
        ),
    ] {
        traced.post_in(path, body, "00").await;
    }
    let seen = traced.fake.log.lock().unwrap().last().cloned().unwrap();
    let traceparent = &seen.headers["traceparent"];
    assert!(
        traceparent.starts_with(&format!("00-{TRACE_ID}-")) && traceparent.ends_with("-00"),
        "{traceparent}"
    );
    assert_ne!(
        traceparent,
        &format!("00-{TRACE_ID}-{CLIENT_SPAN}-00"),
        "a span of its own"
    );
    let flushing = traced.traces.clone();
    tokio::task::spawn_blocking(move || flushing.flush())
        .await
        .unwrap();
    assert!(
        traced.spans.lock().unwrap().is_empty(),
        "{:?}",
        traced.spans.lock().unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limit_that_refuses_a_request_is_an_event_of_its_span() {
    let (address, spans) = receiver().await;
    let traces = Traces::build(Some(&format!("http://{address}/v1/traces"))).unwrap();
    let yaml = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: team-acme\n  labels: {llm.dgidgi.io/tier: enterprise}\n  annotations: {llm.dgidgi.io/requests-per-minute: \"1\"}\n---\napiVersion: llm.dgidgi.io/v1alpha1\nkind: LlmProvider\nmetadata: {name: mock, namespace: dgidgi-system}\nspec: {type: mock}\n---\napiVersion: llm.dgidgi.io/v1alpha1\nkind: LlmTenant\nmetadata: {name: acme, namespace: team-acme}\nspec: {}\n";
    let settings = Settings {
        traces: Some(traces.clone()),
        ..Settings::default()
    };
    let gateway = InProcess::start(yaml, settings).await;
    let key = gateway.key();
    let mut statuses = Vec::new();
    for _ in 0..2 {
        statuses.push(common::http::chat_hi(gateway.running.api, &key).await.0);
    }
    assert_eq!(statuses, [200, 429]);
    let flushing = traces.clone();
    tokio::task::spawn_blocking(move || flushing.flush())
        .await
        .unwrap();
    let spans = spans.lock().unwrap().clone();
    let refused = spans
        .iter()
        .find(|s| {
            s.attributes
                .get("http.response.status_code")
                .map(String::as_str)
                == Some("429")
        })
        .expect("the refused request's span");
    assert_eq!(refused.events, ["dgidgi.limit"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_collector_down_requests_are_unaffected() {
    let fake = fake_providers::start_with(fake_providers::Answers::default()).await;
    let closed = common::gateway::free_port();
    let traces = Traces::build(Some(&format!("http://127.0.0.1:{closed}/v1/traces"))).unwrap();
    let settings = Settings {
        traces: Some(traces.clone()),
        ..Settings::default()
    };
    let gateway = InProcess::start(&fake_providers::providers_yaml(fake.address), settings).await;
    let key = gateway.key();
    for _ in 0..20 {
        let (status, _, body) = common::http::send(
            gateway.running.api,
            "POST",
            "/v1/chat/completions",
            Some(&key),
            Some(json!({"model": "anthropic/claude-fake", "messages": [{"role": "user", "content": "hi"}]}).to_string()),
        )
        .await
        .unwrap();
        assert_eq!(status, 200, "{body}");
    }
    // A flush toward nobody fails (logged), and returns.
    tokio::task::spawn_blocking(move || traces.flush())
        .await
        .unwrap();
}

/// A collector that hangs: requests are served as before while it does, and what waits for it
/// is bounded by the export queue (`OTEL_BSP_MAX_QUEUE_SIZE`): spans past the bound are
/// dropped, never kept, so memory stays bounded however long the collector hangs. The gateway
/// runs as its own process, configured by the standard variables.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_collector_costs_dropped_spans_not_memory() {
    const QUEUE: usize = 64;
    const BATCH: usize = 16;
    const REQUESTS: usize = 200;
    let (open, gate) = tokio::sync::watch::channel(false);
    let (address, spans) = gated_receiver(Some(gate)).await;
    let yaml = format!(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: team-acme\n  labels: {{llm.dgidgi.io/tier: enterprise}}\n  annotations: {{llm.dgidgi.io/requests-per-minute: \"1000000\", llm.dgidgi.io/concurrent: \"1000\"}}\n---\n{}",
        common::gateway::MOCK_AND_ONE_TENANT
    );
    let (output, dir) = common::gateway::config_dir(&yaml);
    let key = output.access_keys[0].value.to_string();
    let endpoint = format!("http://{address}/v1/traces");
    let (queue, batch) = (QUEUE.to_string(), BATCH.to_string());
    let env = [
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", endpoint.as_str()),
        ("OTEL_BSP_MAX_QUEUE_SIZE", queue.as_str()),
        ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", batch.as_str()),
        ("OTEL_BSP_SCHEDULE_DELAY", "20"),
        // The hung export waits for the gate however slow this machine is (the default gives
        // up after 10 s and sends the next batch into the hang too).
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "600000"),
    ];
    let null = || std::process::Stdio::null();
    let mut gateway =
        common::gateway::spawn_gateway_in_env(dir.path(), &[], &[], &env, (null(), null())).await;
    for _ in 0..REQUESTS {
        let (status, answer) = common::http::chat_hi(gateway.api, &key).await;
        assert_eq!(status, 200, "{answer}");
    }
    // The collector recovers: the spans still queued arrive, the rest were dropped.
    open.send(true).unwrap();
    // Until the count has been the same for half a second (a busy machine may take a while to
    // send the first batch).
    let (mut received, mut steady) = (0, 0);
    for _ in 0..600 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = spans.lock().unwrap().len();
        steady = if now > 0 && now == received {
            steady + 1
        } else {
            0
        };
        received = now;
        if steady == 5 {
            break;
        }
    }
    gateway.child.kill().unwrap();
    let _ = gateway.child.wait();
    // Each request leaves two spans (server and inference; the built-in mock makes no upstream
    // call): 400 were made (all 400 arrive with a queue that holds them).
    assert!(received > 0, "the recovered collector got nothing");
    // The bound: the queue, the batch the hung export holds, and the batch the export thread
    // was filling when it blocked (the SDK reads the queue into it); never the 400.
    assert!(
        received <= QUEUE + 2 * BATCH,
        "{received} spans were kept for a hung collector: more than its queue of {QUEUE} and two batches of {BATCH}"
    );
}

fn assert_no_content_or_secret(spans: &[Received], traced: &Traced) {
    let key = traced.gateway.key();
    for span in spans {
        for (name, value) in &span.attributes {
            for secret in [
                key.as_str(),
                fake_providers::KEY,
                "secret prompt text",
                "stream it",
                "retry me",
                "echo:",
            ] {
                assert!(!value.contains(secret), "{} {name}={value}", span.name);
            }
        }
    }
}
