//! The gateway end to end, in-process: a real hyper server in front of a local fake upstream
//! that speaks OpenAI's wire format (JSON, SSE, error bodies, 429 with retry-after), driven by
//! a real HTTP client. Retries, fallback before the first byte, no fallback after it, errors in
//! OpenAI's format, hot reload, and the drain on shutdown.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use common::fake_providers::{self, Answers, Fake, Seen};
use common::gateway::{Start, spawn_gateway, start_in, write_config};
use dgidgi::gateway::Settings;
use dgidgi::gateway::server::Running;
use dgidgi::metrics::ResultLabels;
use dgidgi::render::RenderOutput;
use http_body_util::{BodyExt as _, Full};
use hyper::Request;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// The platform's key at the fake upstream.
const UPSTREAM_KEY: &str = fake_providers::KEY;

/// The shared fake upstream (`common::fake_providers`), answering plain chat as this suite's
/// assertions expect; it takes the platform's key, the `byok` tenant's own, and none (the cli
/// endpoint). Scenarios by model name: `common::fake_scenarios`.
async fn fake_upstream() -> Fake {
    fake_providers::start_with(Answers {
        text: Some("from the fake upstream"),
        prompt_tokens: 5,
        completion_tokens: 4,
        cached_tokens: 0,
        keys: &[UPSTREAM_KEY, "sk-tenant-own-0002"],
        keyless: true,
    })
    .await
}

fn fleet(upstream: SocketAddr) -> String {
    format!(
        r#"
apiVersion: v1
kind: Secret
metadata: {{name: fake-key, namespace: dgidgi-system}}
stringData: {{apiKey: {UPSTREAM_KEY}}}
---
apiVersion: llm.dgidgi.io/v1alpha1
kind: LlmProvider
metadata: {{name: fake, namespace: dgidgi-system}}
spec: {{type: openai-compatible, baseUrl: "http://{upstream}/v1", credentialsRef: {{name: fake-key}}, timeouts: {{firstByte: 500ms}}}}
---
apiVersion: llm.dgidgi.io/v1alpha1
kind: LlmProvider
metadata: {{name: staller, namespace: dgidgi-system}}
spec: {{type: openai-compatible, baseUrl: "http://{upstream}/v1", credentialsRef: {{name: fake-key}}, timeouts: {{firstByte: 500ms, total: 700ms}}}}
---
apiVersion: llm.dgidgi.io/v1alpha1
kind: LlmProvider
metadata: {{name: dead, namespace: dgidgi-system}}
spec: {{type: openai-compatible, baseUrl: "http://127.0.0.1:1/v1", credentialsRef: {{name: fake-key}}}}
---
apiVersion: llm.dgidgi.io/v1alpha1
kind: LlmProvider
metadata: {{name: mock, namespace: dgidgi-system}}
spec: {{type: mock}}
---
apiVersion: llm.dgidgi.io/v1alpha1
kind: RoutingPolicy
metadata: {{name: fallbacks, namespace: dgidgi-system}}
spec:
  rules:
  - match: {{model: "via-500"}}
    targets: [{{provider: fake, model: fail-500}}]
    fallback: [{{provider: mock, model: mock-fast}}]
    retry: {{attempts: 1, on: [server-error], backoff: 10ms}}
  - match: {{model: "via-429"}}
    targets: [{{provider: fake, model: fail-429}}]
    fallback: [{{provider: mock, model: mock-fast}}]
  - match: {{model: "via-refused"}}
    targets: [{{provider: dead, model: anything}}]
    fallback: [{{provider: mock, model: mock-fast}}]
  - match: {{model: "via-timeout"}}
    targets: [{{provider: fake, model: slow}}]
    fallback: [{{provider: mock, model: mock-fast}}]
  - match: {{model: "via-break"}}
    targets: [{{provider: fake, model: stream-break}}]
    fallback: [{{provider: mock, model: mock-fast}}]
  - match: {{model: "only-429"}}
    targets: [{{provider: fake, model: fail-429}}]
    retry: {{attempts: 0}}
  - match: {{model: "via-garbage-*"}}
    targets: [{{provider: fake, model: garbage-html}}, {{provider: fake, model: garbage-json}}, {{provider: fake, model: garbage-gzip}}]
    fallback: [{{provider: mock, model: mock-fast}}]
  - match: {{model: "all-fail"}}
    targets: [{{provider: fake, model: fail-500}}]
    fallback: [{{provider: dead, model: x}}]
---
apiVersion: llm.dgidgi.io/v1alpha1
kind: LlmTenant
metadata: {{name: acme, namespace: team-acme}}
spec: {{}}
"#
    )
}

/// Tenants with their own endpoints on this machine, allowed by their namespaces' annotation:
/// the requests go through the egress-guarded clients.
fn tenant_endpoints(upstream: SocketAddr) -> String {
    format!(
        r#"
apiVersion: v1
kind: Namespace
metadata: {{name: byok, annotations: {{llm.dgidgi.io/allowed-endpoints: "127.0.0.1/32"}}}}
---
apiVersion: v1
kind: Secret
metadata: {{name: own, namespace: byok}}
stringData: {{apiKey: sk-tenant-own-0002}}
---
apiVersion: llm.dgidgi.io/v1alpha1
kind: LlmProvider
metadata: {{name: own, namespace: byok}}
spec: {{type: openai-compatible, baseUrl: "http://{upstream}/v1", credentialsRef: {{name: own}}}}
---
apiVersion: llm.dgidgi.io/v1alpha1
kind: LlmTenant
metadata: {{name: byok, namespace: byok}}
spec: {{source: tenant}}
---
apiVersion: v1
kind: Namespace
metadata: {{name: local, annotations: {{llm.dgidgi.io/allowed-endpoints: "127.0.0.1/32"}}}}
---
apiVersion: llm.dgidgi.io/v1alpha1
kind: LlmTenant
metadata: {{name: local, namespace: local}}
spec: {{source: cli, cli: {{endpoint: "http://{upstream}", model: llama3}}}}
"#
    )
}

struct Harness {
    running: Running,
    output: RenderOutput,
    upstream: Fake,
    dir: tempfile::TempDir,
}

impl Harness {
    async fn new() -> Self {
        Self::with(|_| String::new()).await
    }

    async fn with(extra: impl Fn(SocketAddr) -> String) -> Self {
        let fake = fake_upstream().await;
        let upstream = fake.address;
        let output = common::render_yaml(&format!("{}---\n{}", fleet(upstream), extra(upstream)));
        assert!(
            output.report.not_ready().is_empty(),
            "{:?}",
            output.report.not_ready()
        );
        let dir = tempfile::tempdir().unwrap();
        write_config(dir.path(), &output);
        let how = Start {
            settings: Settings {
                max_body_bytes: 64 * 1024,
                header_read_timeout: Duration::from_millis(300),
                body_read_timeout: Duration::from_millis(500),
                ..Settings::default()
            },
            reload_interval: Duration::from_millis(50),
            ..Start::default()
        };
        let running = start_in(dir.path(), how).await;
        Self {
            running,
            output,
            upstream: fake,
            dir,
        }
    }

    fn key(&self) -> String {
        self.key_of("acme")
    }

    fn key_of(&self, tenant: &str) -> String {
        self.output
            .access_keys
            .iter()
            .find(|k| k.tenant == tenant)
            .unwrap()
            .value
            .to_string()
    }

    async fn chat(&self, body: serde_json::Value) -> (u16, HashMap<String, String>, String) {
        self.post("/v1/chat/completions", &self.key(), body.to_string())
            .await
    }

    async fn post(
        &self,
        path: &str,
        key: &str,
        body: String,
    ) -> (u16, HashMap<String, String>, String) {
        let authorization = format!("Bearer {key}");
        let (status, headers, body) = common::http::send_with(
            self.running.api,
            "POST",
            path,
            &[("authorization", &authorization)],
            Some(body),
        )
        .await
        .expect("the gateway answers");
        (status, headers.into_iter().collect(), body)
    }

    /// The (model, authorization) of every request the fake upstream received.
    fn requests(&self) -> Vec<(String, String)> {
        self.seen()
            .iter()
            .map(|seen| {
                let model = seen.body["model"].as_str().unwrap_or_default().to_owned();
                let authorization = seen.headers.get("authorization").cloned();
                (model, authorization.unwrap_or_default())
            })
            .collect()
    }

    /// Every request the fake upstream received, whole.
    fn seen(&self) -> Vec<Seen> {
        self.upstream.log.lock().unwrap().clone()
    }

    fn completed_streams(&self) -> usize {
        self.upstream.completed_streams.load(Ordering::SeqCst)
    }

    fn calls_for(&self, model: &str) -> usize {
        self.requests().iter().filter(|(m, _)| m == model).count()
    }
}

async fn get_text(address: SocketAddr, path: &str) -> String {
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let response = client
        .get(format!("http://{address}{path}").parse().unwrap())
        .await
        .unwrap();
    String::from_utf8_lossy(&response.into_body().collect().await.unwrap().to_bytes()).into_owned()
}

/// Starts a slow streamed request (three events 400 ms apart) and returns its whole body.
fn spawn_slow_stream(address: SocketAddr, key: String) -> tokio::task::JoinHandle<String> {
    tokio::spawn(async move {
        let client: Client<HttpConnector, Full<Bytes>> =
            Client::builder(TokioExecutor::new()).build_http();
        let body = serde_json::json!({"model": "fake/stream-slow", "stream": true, "messages": [{"role": "user", "content": "x"}]});
        let request = Request::post(format!("http://{address}/v1/chat/completions"))
            .header("authorization", format!("Bearer {key}"))
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap();
        let response = client.request(request).await.unwrap();
        String::from_utf8(
            response
                .into_body()
                .collect()
                .await
                .unwrap()
                .to_bytes()
                .to_vec(),
        )
        .unwrap()
    })
}

fn user(model: &str) -> serde_json::Value {
    serde_json::json!({"model": model, "messages": [{"role": "user", "content": "hello"}]})
}

#[tokio::test]
async fn a_provider_answer_is_relayed_with_the_platform_key_and_headers() {
    let h = Harness::new().await;
    let (status, headers, body) = h.chat(serde_json::json!({"model": "fake/gpt-x", "messages": [{"role": "user", "content": "hi"}], "temperature": 0.2})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["x-dgidgi-provider"], "fake");
    assert_eq!(headers["x-dgidgi-model"], "gpt-x");
    assert_eq!(headers["x-dgidgi-source"], "platform");
    assert_eq!(headers["x-dgidgi-fallback"], "0");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        json["choices"][0]["message"]["content"],
        "from the fake upstream"
    );
    let seen = h.requests();
    assert_eq!(
        seen,
        vec![("gpt-x".to_owned(), format!("Bearer {UPSTREAM_KEY}"))],
        "model rewritten, key decrypted and sent"
    );
    h.running.shutdown().await;
}

#[tokio::test]
async fn failures_before_the_first_byte_fall_back() {
    for (model, upstream_calls) in [
        ("via-500", 2),
        ("via-429", 1),
        ("via-refused", 0),
        ("via-timeout", 1),
    ] {
        // A fresh gateway per case: failures here also count towards the fake's health.
        let h = Harness::new().await;
        let (status, headers, body) = h.chat(user(model)).await;
        assert_eq!(status, 200, "{model}: {body}");
        assert_eq!(headers["x-dgidgi-provider"], "mock", "{model}");
        assert_eq!(headers["x-dgidgi-fallback"], "1", "{model}");
        let target = match model {
            "via-500" => "fail-500",
            "via-429" => "fail-429",
            "via-timeout" => "slow",
            _ => "anything",
        };
        assert_eq!(
            h.calls_for(target),
            upstream_calls,
            "{model}: retries on the rule's classes only"
        );
        h.running.shutdown().await;
    }
}

#[tokio::test]
async fn when_everything_fails_the_error_is_honest() {
    let h = Harness::new().await;
    let (status, _, body) = h.chat(user("all-fail")).await;
    assert_eq!(status, 502, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["error"]["code"], "upstream_error");
    assert!(!body.contains(UPSTREAM_KEY));
    // The provider's own rate limit is passed on as a 429 with its retry-after.
    let (status, headers, body) = h.chat(user("only-429")).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(headers["retry-after"], "1");
    assert!(body.contains("upstream_rate_limited"));
    // A client error from the provider is the client's: relayed, not retried elsewhere.
    let (status, _, body) = h.chat(serde_json::json!({"model": "fake/bad-request", "messages": [{"role": "user", "content": "x"}]})).await;
    assert_eq!(status, 400);
    assert!(body.contains("temperature must be <= 2"));
    h.running.shutdown().await;
}

/// Issue #18, leak 7: a 200 whose body is not an answer in the provider's format is the
/// provider failing: another target is tried before the first byte, and without one the client
/// gets a 502, never the garbage as a success.
#[tokio::test]
async fn a_garbage_success_is_an_upstream_failure() {
    let h = Harness::new().await;
    for model in ["garbage-html", "garbage-json", "garbage-gzip"] {
        for stream in [false, true] {
            let mut request = user(&format!("fake/{model}"));
            request["stream"] = stream.into();
            let (status, headers, body) = h.chat(request).await;
            assert_eq!(status, 502, "{model} (stream: {stream}): {body}");
            assert!(headers["content-type"].starts_with("application/json"));
            let json: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(json["error"]["code"], "upstream_error", "{body}");
        }
    }
    // With somewhere else to go, the plan walks on: all three garbage targets, then the mock.
    let (status, headers, body) = h.chat(user("via-garbage-any")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["x-dgidgi-provider"], "mock");
    assert_eq!(headers["x-dgidgi-fallback"], "3");
    h.running.shutdown().await;
}

#[tokio::test]
async fn streams_are_relayed_and_a_mid_stream_failure_ends_with_an_error_event() {
    let h = Harness::new().await;
    let (status, headers, body) = h
        .chat(serde_json::json!({"model": "fake/stream-ok", "stream": true, "messages": [{"role": "user", "content": "x"}]}))
        .await;
    assert_eq!(status, 200);
    assert!(headers["content-type"].starts_with("text/event-stream"));
    assert_eq!(body.matches("data: {").count(), 3);
    assert!(body.ends_with("data: [DONE]\n\n"));

    let (status, headers, body) = h
        .chat(serde_json::json!({"model": "via-break", "stream": true, "messages": [{"role": "user", "content": "x"}]}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        headers["x-dgidgi-provider"], "fake",
        "no fallback after the first byte"
    );
    assert!(body.contains("\"one \""), "{body}");
    assert!(body.contains("upstream_stream_error"), "{body}");
    assert!(
        !body.contains("[DONE]"),
        "never a fake end of stream: {body}"
    );
    assert!(!body.contains("\"finish_reason\":\"stop\""), "{body}");
    h.running.shutdown().await;
}

#[tokio::test]
async fn bad_requests_get_openai_shaped_errors() {
    let h = Harness::new().await;
    let cases: Vec<(String, String, u16, &str)> = vec![
        (h.key(), "{not json".into(), 400, "invalid_request"),
        (h.key(), "[1,2]".into(), 400, "invalid_request"),
        (
            h.key(),
            r#"{"model":"mock-fast"}"#.into(),
            400,
            "invalid_request",
        ),
        (
            h.key(),
            r#"{"model":7,"messages":[{"role":"user","content":"x"}]}"#.into(),
            400,
            "invalid_request",
        ),
        (
            "dgk_wrong".into(),
            user("mock-fast").to_string(),
            401,
            "invalid_api_key",
        ),
        (
            "".into(),
            user("mock-fast").to_string(),
            401,
            "invalid_api_key",
        ),
        (h.key(), "x".repeat(70 * 1024), 413, "request_too_large"),
    ];
    for (key, body, expected, code) in cases {
        let (status, _, text) = h.post("/v1/chat/completions", &key, body.clone()).await;
        assert_eq!(status, expected, "{}: {text}", &body[..body.len().min(60)]);
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(json["error"]["code"], code, "{text}");
    }
    // Narrowed to the mock (a closed catalog), an unknown model is 404 model_not_found.
    let narrowed = h
        .post(
            "/v1/chat/completions",
            &h.key(),
            user("mock/unknown-model").to_string(),
        )
        .await;
    assert_eq!(narrowed.0, 404, "{}", narrowed.2);
    assert!(narrowed.2.contains("model_not_found"));
    let (status, _, text) = h.post("/v1/nope", &h.key(), "{}".into()).await;
    assert_eq!(status, 404, "{text}");
    h.running.shutdown().await;
}

#[tokio::test]
async fn hot_reload_swaps_good_configs_and_refuses_corrupt_ones() {
    let h = Harness::new().await;
    let (status, _, _) = h.chat(user("mock-fast")).await;
    assert_eq!(status, 200);
    // A new tenant appears: its key works after the reload.
    let upstream = fake_upstream().await.address;
    let mut texts = fleet(upstream);
    texts.push_str("---\napiVersion: llm.dgidgi.io/v1alpha1\nkind: LlmTenant\nmetadata: {name: newcomer, namespace: team-new}\nspec: {}\n");
    let updated = common::render_yaml(&texts);
    write_config(h.dir.path(), &updated);
    let newcomer = updated
        .access_keys
        .iter()
        .find(|k| k.tenant == "newcomer")
        .unwrap()
        .value
        .to_string();
    let mut served = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if h.post(
            "/v1/chat/completions",
            &newcomer,
            user("mock-fast").to_string(),
        )
        .await
        .0 == 200
        {
            served = true;
            break;
        }
    }
    assert!(served, "the new config was not picked up");
    // A corrupt config is refused; the last good one keeps serving.
    std::fs::write(
        h.dir.path().join("gateway.yaml"),
        "version: 1\nproviders: [oops\n",
    )
    .unwrap();
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if h.running
            .gateway
            .metrics
            .reloads
            .get_or_create(&ResultLabels { result: "error" })
            .get()
            > 0
        {
            break;
        }
    }
    assert!(
        h.running
            .gateway
            .metrics
            .reloads
            .get_or_create(&ResultLabels { result: "error" })
            .get()
            > 0
    );
    assert_eq!(
        h.post(
            "/v1/chat/completions",
            &newcomer,
            user("mock-fast").to_string()
        )
        .await
        .0,
        200
    );
    let metrics = get_text(h.running.admin, "/metrics").await;
    assert!(
        metrics.contains("dgidgi_config_reloads_total{result=\"error\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("dgidgi_config_loaded 1"), "{metrics}");
    h.running.shutdown().await;
}

#[tokio::test]
async fn shutdown_drains_an_open_stream() {
    let h = Harness::new().await;
    let key = h.key();
    let api = h.running.api;
    let stream = spawn_slow_stream(api, key);
    tokio::time::sleep(Duration::from_millis(200)).await;
    h.running.shutdown().await;
    let body = stream.await.unwrap();
    assert!(
        body.ends_with("data: [DONE]\n\n"),
        "the open stream finished: {body}"
    );
    assert_eq!(body.matches("data: {").count(), 3);
}

#[tokio::test]
async fn tenant_keys_and_cli_endpoints_go_through_the_guarded_clients() {
    let h = Harness::with(tenant_endpoints).await;
    let byok = h.key_of("byok");
    let (status, headers, body) = h
        .post(
            "/v1/chat/completions",
            &byok,
            user("gpt-anything").to_string(),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["x-dgidgi-source"], "tenant");
    assert_eq!(headers["x-dgidgi-provider"], "own");
    assert!(
        h.requests()
            .iter()
            .any(|(_, auth)| auth == "Bearer sk-tenant-own-0002")
    );
    // The platform's mock is not the tenant's: "mock-fast" goes to its own (open) endpoint.
    let (status, headers, _) = h
        .post("/v1/chat/completions", &byok, user("mock-fast").to_string())
        .await;
    assert_eq!(status, 200);
    assert_eq!(headers["x-dgidgi-provider"], "own");
    // Another tenant's requests never carry this tenant's key.
    let before = h.requests().len();
    assert_eq!(h.chat(user("fake/gpt-x")).await.0, 200);
    let last: Vec<(String, String)> = h.requests()[before..].to_vec();
    assert_eq!(
        last,
        [("gpt-x".to_owned(), format!("Bearer {UPSTREAM_KEY}"))]
    );

    let local = h.key_of("local");
    let (status, headers, body) = h
        .post(
            "/v1/chat/completions",
            &local,
            serde_json::json!({"messages": [{"role": "user", "content": "x"}]}).to_string(),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["x-dgidgi-source"], "cli");
    assert_eq!(headers["x-dgidgi-model"], "llama3");
    assert!(
        h.requests()
            .iter()
            .any(|(model, auth)| model == "llama3" && auth.is_empty()),
        "no key is sent to a cli endpoint"
    );
    h.running.shutdown().await;
}

/// Sends raw bytes and returns what the server answered before closing.
async fn raw_exchange(address: SocketAddr, request: &[u8], pause: Duration) -> String {
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream.write_all(request).await.unwrap();
    tokio::time::sleep(pause).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn protocol_abuse_gets_the_right_status() {
    let h = Harness::new().await;
    // Both Content-Length and Transfer-Encoding (request smuggling): hyper frames the body by
    // Transfer-Encoding as RFC 9112 §6.3 says, drops Content-Length, and closes the connection
    // after one response, so nothing smuggled behind it is ever read as a second request.
    let smuggle = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n";
    let answer = raw_exchange(h.running.api, smuggle, Duration::ZERO).await;
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );
    assert_eq!(
        answer.matches("HTTP/1.1 ").count(),
        1,
        "one response only: {answer}"
    );
    // Too many headers: 431.
    let mut many = b"GET /v1/models HTTP/1.1\r\nHost: x\r\n".to_vec();
    for i in 0..150 {
        many.extend_from_slice(format!("x-h{i}: v\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    let answer = raw_exchange(h.running.api, &many, Duration::ZERO).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    // Headers that never finish: the connection is answered 408 and closed.
    let answer = raw_exchange(
        h.running.api,
        b"GET /v1/models HTTP/1.1\r\nHost: x\r\n",
        Duration::from_millis(600),
    )
    .await;
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer}"
    );
    h.running.shutdown().await;
}

#[tokio::test]
async fn provider_specific_fields_pass_through_untouched() {
    let h = Harness::new().await;
    let (status, _, body) = h.chat(user("fake/quirky")).await;
    assert_eq!(status, 200, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    // Groq's x_groq usage, Perplexity's citations, DeepSeek's reasoning_content.
    assert_eq!(json["x_groq"]["usage"]["total_tokens"], 9);
    assert_eq!(json["citations"][0], "https://example.com/a");
    assert_eq!(
        json["choices"][0]["message"]["reasoning_content"],
        "thinking..."
    );
    h.running.shutdown().await;
}

#[tokio::test]
async fn a_failing_provider_is_cooled_down_and_healthy_targets_go_first() {
    let h = Harness::new().await;
    // Three failures in a row (one request, retried once, plus one more) trip the breaker.
    assert_eq!(h.chat(user("via-500")).await.0, 200);
    assert_eq!(h.chat(user("via-429")).await.0, 200);
    let calls = h.calls_for("fail-500") + h.calls_for("fail-429");
    assert_eq!(calls, 3);
    // Now the fake is tried last: the mock fallback answers without touching it.
    let (status, headers, _) = h.chat(user("via-500")).await;
    assert_eq!(status, 200);
    assert_eq!(headers["x-dgidgi-provider"], "mock");
    assert_eq!(
        headers["x-dgidgi-fallback"], "0",
        "the healthy target came first"
    );
    assert_eq!(h.calls_for("fail-500") + h.calls_for("fail-429"), 3);
    h.running.shutdown().await;
}

#[tokio::test]
async fn openrouter_requests_carry_its_attribution_headers() {
    let h = Harness::with(|upstream| {
        format!(
            "apiVersion: llm.dgidgi.io/v1alpha1\nkind: LlmProvider\nmetadata: {{name: router, namespace: dgidgi-system}}\nspec: {{type: openrouter, baseUrl: \"http://{upstream}/api/v1\", credentialsRef: {{name: fake-key}}}}\n"
        )
    })
    .await;
    let (status, _, body) = h
        .chat(user("router/meta-llama/llama-3.3-70b-instruct"))
        .await;
    assert_eq!(status, 200, "{body}");
    let seen = h.requests();
    assert!(
        seen.iter()
            .any(|(m, _)| m == "meta-llama/llama-3.3-70b-instruct"),
        "{seen:?}"
    );
    let titled = |s: &Seen| {
        s.headers.get("x-title").map(String::as_str) == Some("dgidgi")
            && s.headers.get("http-referer").map(String::as_str) == Some("https://dgidgi.io")
    };
    assert!(h.seen().iter().any(titled), "{seen:?}");
    h.running.shutdown().await;
}

#[tokio::test]
async fn wrong_methods_are_405_and_the_client_leaving_cancels_the_upstream() {
    let h = Harness::new().await;
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let response = client
        .get(
            format!("http://{}/v1/chat/completions", h.running.api)
                .parse()
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 405);
    // It says what the path takes (issue #19).
    assert_eq!(response.headers()["allow"], "POST");

    // Start a slow stream and walk away after the first event: the gateway drops the upstream
    // request, so the fake upstream's next write fails instead of completing the stream.
    let mut stream = TcpStream::connect(h.running.api).await.unwrap();
    let body = serde_json::json!({"model": "fake/stream-slow", "stream": true, "messages": [{"role": "user", "content": "x"}]}).to_string();
    let request = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Length: {}\r\n\r\n{body}",
        h.key(),
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut first = [0u8; 512];
    let n = stream.read(&mut first).await.unwrap();
    assert!(String::from_utf8_lossy(&first[..n]).starts_with("HTTP/1.1 200"));
    drop(stream);
    let before = h.seen().len();
    // The upstream needs ~1.2 s to finish; give the cancellation time to reach it.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(
        h.seen().len(),
        before,
        "no retry or second request after the client left"
    );
    assert_eq!(
        h.completed_streams(),
        0,
        "the upstream stream was cut, not completed"
    );
    h.running.shutdown().await;
}

#[tokio::test]
async fn sigterm_to_the_binary_drains_an_open_stream_and_exits_cleanly() {
    let upstream = fake_upstream().await.address;
    let output = common::render_yaml(&fleet(upstream));
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &output);
    let gateway = spawn_gateway(dir.path(), &[], &[], std::process::Stdio::null()).await;
    let (mut child, address) = (gateway.child, gateway.api);
    let key = output.access_keys[0].value.to_string();
    let stream = spawn_slow_stream(address, key);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let body = stream.await.unwrap();
    assert!(
        body.ends_with("data: [DONE]\n\n"),
        "the open stream finished: {body}"
    );
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "clean exit after draining: {status:?}");
}

#[tokio::test]
async fn timeouts_and_honest_final_errors() {
    let h = Harness::new().await;
    // A stream that stalls after its first event is ended by the provider's total timeout,
    // with an error event, not left hanging.
    let started = std::time::Instant::now();
    let (status, _, body) = h
        .chat(serde_json::json!({"model": "staller/stream-stall", "stream": true, "messages": [{"role": "user", "content": "x"}]}))
        .await;
    assert_eq!(status, 200);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "cut by the total timeout"
    );
    assert!(body.contains("\"one \""), "{body}");
    assert!(body.contains("upstream_stream_error"), "{body}");
    assert!(!body.contains("[DONE]"));
    // Every provider says it does not know the model: 404, not 502.
    let (status, _, body) = h.chat(user("fake/missing")).await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("model_not_found"));
    // A body that never arrives: 408.
    let mut stream = TcpStream::connect(h.running.api).await.unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Length: 100\r\n\r\n{{\"model\":",
        h.key()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
    // A narrowing header that is not text: 400, never silently ignored.
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let request = Request::post(format!("http://{}/v1/chat/completions", h.running.api))
        .header("authorization", format!("Bearer {}", h.key()))
        .header(
            "x-dgidgi-provider",
            hyper::header::HeaderValue::from_bytes(b"mo\xffck").unwrap(),
        )
        .body(Full::new(Bytes::from(user("mock-fast").to_string())))
        .unwrap();
    assert_eq!(
        client.request(request).await.unwrap().status().as_u16(),
        400
    );
    h.running.shutdown().await;
}

#[tokio::test]
async fn readyz_reports_draining_before_the_listeners_close() {
    let upstream = fake_upstream().await.address;
    let output = common::render_yaml(&fleet(upstream));
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &output);
    let how = Start {
        reload_interval: Duration::from_millis(50),
        unready_delay: Duration::from_millis(600),
        ..Start::default()
    };
    let running = start_in(dir.path(), how).await;
    let admin = running.admin;
    assert!(get_text(admin, "/readyz").await.contains("ready"));
    let stopping = tokio::spawn(running.shutdown());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(get_text(admin, "/readyz").await.contains("draining"));
    stopping.await.unwrap();
}

#[tokio::test]
async fn each_openai_format_provider_type_gets_its_path_key_and_stream_shape() {
    // Every provider type that speaks the OpenAI format, pointed at the fake: the gateway must
    // call the type's own endpoint path under the base URL, with the key as a Bearer token, and
    // relay its stream shape (Groq's x_groq usage, DeepSeek's reasoning deltas, Perplexity's
    // citations) untouched.
    let cases = [
        ("openai", "/v1", "/v1/chat/completions", "stream-ok"),
        (
            "groq",
            "/openai/v1",
            "/openai/v1/chat/completions",
            "groq-stream",
        ),
        ("mistral", "/v1", "/v1/chat/completions", "stream-ok"),
        ("perplexity", "", "/chat/completions", "perplexity-stream"),
        ("xai", "/v1", "/v1/chat/completions", "stream-ok"),
        ("deepseek", "", "/chat/completions", "deepseek-stream"),
        (
            "openrouter",
            "/api/v1",
            "/api/v1/chat/completions",
            "stream-ok",
        ),
        ("ollama", "", "/v1/chat/completions", "stream-ok"),
        // Added as one catalog entry (issue #21): the variant, its spelling and its defaults.
        ("together", "/v1", "/v1/chat/completions", "stream-ok"),
    ];
    let h = Harness::with(|upstream| {
        cases
            .iter()
            .map(|(kind, suffix, _, model)| {
                format!(
                    "apiVersion: llm.dgidgi.io/v1alpha1\nkind: LlmProvider\nmetadata: {{name: p-{kind}, namespace: dgidgi-system}}\nspec: {{type: {kind}, baseUrl: \"http://{upstream}{suffix}\", credentialsRef: {{name: fake-key}}, models: [{{name: {model}}}]}}\n---\n"
                )
            })
            .collect()
    })
    .await;
    for (kind, _, path, model) in cases {
        let request = serde_json::json!({"model": format!("p-{kind}/{model}"), "stream": true, "messages": [{"role": "user", "content": "x"}]});
        let (status, headers, body) = h.chat(request).await;
        assert_eq!(status, 200, "{kind}: {body}");
        assert_eq!(headers["x-dgidgi-provider"], format!("p-{kind}"));
        assert!(
            headers["content-type"].starts_with("text/event-stream"),
            "{kind}"
        );
        assert!(body.ends_with("data: [DONE]\n\n"), "{kind}: {body}");
        let seen = h.seen();
        assert!(
            seen.iter()
                .any(|s| s.body["model"] == *model && s.path == path),
            "{kind}: {seen:?}"
        );
        match model {
            "groq-stream" => assert!(
                body.contains("\"x_groq\"") && body.contains("\"total_tokens\":8"),
                "{body}"
            ),
            "deepseek-stream" => {
                assert!(body.contains("\"reasoning_content\":\"step 1\""), "{body}")
            }
            "perplexity-stream" => assert!(body.contains("\"citations\""), "{body}"),
            _ => {}
        }
    }
    // Ollama is the one type that is called without a key requirement, but a configured key is
    // still sent; every call above carried the platform key.
    let keyed = h
        .requests()
        .iter()
        .filter(|(_, auth)| *auth == format!("Bearer {UPSTREAM_KEY}"))
        .count();
    assert_eq!(keyed, cases.len());
    h.running.shutdown().await;
}
