//! The front doors beside chat: token counting, the model list and errors in the caller's
//! shape, CORS for browser clients, and `Allow` on 405 — each through a gateway started in
//! this process, in front of the faithful fakes where a provider answers.

mod common;

use common::fake_providers;
use common::gateway::{InProcess, MOCK_AND_ONE_TENANT};
use common::http::{header, send_with};
use dgidgi::gateway::Settings;
use dgidgi::gateway::cors::CorsPolicy;
use serde_json::{Value, json};

/// The fakes of every format in front of the gateway (an enterprise tenant).
async fn with_fakes() -> (InProcess, fake_providers::Log) {
    let (upstream, log) = fake_providers::start().await;
    let gateway = InProcess::start(
        &fake_providers::providers_yaml(upstream),
        Settings::default(),
    )
    .await;
    (gateway, log)
}

async fn post(
    gateway: &InProcess,
    path: &str,
    headers: &[(&str, &str)],
    body: &Value,
) -> (u16, Vec<(String, String)>, Value) {
    let key = gateway.key();
    let mut all = vec![("x-api-key", key.as_str())];
    all.extend_from_slice(headers);
    let (status, headers, body) = send_with(
        gateway.running.api,
        "POST",
        path,
        &all,
        Some(body.to_string()),
    )
    .await
    .expect("the gateway answers");
    let body = serde_json::from_str(&body).unwrap_or(Value::String(body));
    (status, headers, body)
}

#[tokio::test]
async fn count_tokens_reaches_an_anthropic_upstream_as_sent() {
    let (gateway, log) = with_fakes().await;
    let request = json!({"model": "anthropic/claude-fake", "system": "be brief",
        "messages": [{"role": "user", "content": "hello there"}],
        "thinking": {"type": "enabled", "budget_tokens": 2048}});
    let (status, headers, body) = post(
        &gateway,
        "/v1/messages/count_tokens?beta=true",
        &[
            ("anthropic-version", "2023-06-01"),
            ("anthropic-beta", "token-counting-2024-11-01"),
        ],
        &request,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let seen = log
        .lock()
        .unwrap()
        .last()
        .cloned()
        .expect("the fake was called");
    assert_eq!(seen.path, "/v1/messages/count_tokens");
    assert_eq!(seen.headers["anthropic-version"], "2023-06-01");
    assert_eq!(seen.headers["anthropic-beta"], "token-counting-2024-11-01");
    let sent = request
        .to_string()
        .replace("anthropic/claude-fake", "claude-fake");
    assert_eq!(String::from_utf8(seen.raw.clone()).unwrap(), sent);
    assert_eq!(body, json!({"input_tokens": sent.len() / 3}));
    assert_eq!(header(&headers, "x-dgidgi-token-count"), Some("provider"));
    assert_eq!(header(&headers, "request-id"), Some("req_fake_0001"));
    gateway.running.shutdown().await;
}

#[tokio::test]
async fn count_tokens_estimates_for_other_targets_and_says_so() {
    let (gateway, log) = with_fakes().await;
    let request = json!({"model": "openai-fake/gpt-fake",
        "messages": [{"role": "user", "content": "x".repeat(400)}]});
    let (status, headers, body) = post(
        &gateway,
        "/v1/messages/count_tokens",
        &[("anthropic-version", "2023-06-01")],
        &request,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(header(&headers, "x-dgidgi-token-count"), Some("estimated"));
    let tokens = body["input_tokens"].as_u64().expect("a count");
    assert!((100..=110).contains(&tokens), "{tokens}");
    assert!(log.lock().unwrap().is_empty(), "no provider was called");
    // An unknown model is the Messages API's 404, in Anthropic's shape.
    let (status, _, body) = post(
        &gateway,
        "/v1/messages/count_tokens",
        &[("anthropic-version", "2023-06-01")],
        &json!({"model": "nope", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["type"], "error", "{body}");
    gateway.running.shutdown().await;
}

/// Counting is free (no tokens, no budget) and apart from the metered requests' rate, but not
/// unbounded: a window of its own at the tenant's requests per minute.
#[tokio::test]
async fn count_tokens_is_free_and_limited_apart_from_chat() {
    let namespace = r#"
apiVersion: v1
kind: Namespace
metadata:
  name: team-acme
  labels: {llm.dgidgi.io/tier: enterprise}
  annotations: {"llm.dgidgi.io/requests-per-minute": "2", "llm.dgidgi.io/tokens-per-day": "100000", "llm.dgidgi.io/concurrent": "5"}
---"#;
    let yaml = format!("{namespace}{MOCK_AND_ONE_TENANT}");
    let gateway = InProcess::start(&yaml, Settings::default()).await;
    let count = json!({"model": "mock-fast", "messages": [{"role": "user", "content": "hi"}]});
    for _ in 0..2 {
        let (status, _, body) = post(&gateway, "/v1/messages/count_tokens", &[], &count).await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, headers, body) = post(&gateway, "/v1/messages/count_tokens", &[], &count).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["type"], "rate_limit_error", "{body}");
    assert!(header(&headers, "retry-after").is_some());
    // The metered requests' own window is untouched, and so are the tokens of the day.
    let chat = json!({"model": "mock-fast", "max_tokens": 10,
        "messages": [{"role": "user", "content": "hi"}]});
    let (status, headers, body) = post(&gateway, "/v1/chat/completions", &[], &chat).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        header(&headers, "x-ratelimit-remaining-requests"),
        Some("1")
    );
    gateway.running.shutdown().await;
}

#[tokio::test]
async fn the_model_list_and_errors_come_in_the_callers_shape() {
    let (gateway, _log) = with_fakes().await;
    let key = gateway.key();
    let api = gateway.running.api;
    let anthropic = [
        ("x-api-key", key.as_str()),
        ("anthropic-version", "2023-06-01"),
    ];
    let (status, _, body) = send_with(api, "GET", "/v1/models?limit=2", &anthropic, None)
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    let page: Value = serde_json::from_str(&body).unwrap();
    let ids: Vec<&str> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2);
    assert_eq!(page["has_more"], true);
    assert_eq!(page["first_id"], ids[0]);
    assert_eq!(page["last_id"], ids[1]);
    assert_eq!(page["data"][0]["type"], "model");
    let after = format!("/v1/models?limit=1000&after_id={}", ids[1]);
    let (_, _, rest) = send_with(api, "GET", &after, &anthropic, None)
        .await
        .unwrap();
    let rest: Value = serde_json::from_str(&rest).unwrap();
    assert_eq!(rest["has_more"], false);
    assert!(!rest["data"].as_array().unwrap().is_empty());
    // One model, and the errors of an Anthropic caller, in Anthropic's shape.
    let (status, _, body) = send_with(api, "GET", "/v1/models/claude-fake", &anthropic, None)
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["type"],
        "model"
    );
    let (status, _, body) = send_with(api, "GET", "/v1/nowhere", &anthropic, None)
        .await
        .unwrap();
    assert_eq!(status, 404);
    let error: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(error["type"], "error", "{body}");
    assert_eq!(error["error"]["type"], "not_found_error", "{body}");
    // An OpenAI caller keeps OpenAI's shapes.
    let openai = [("authorization", &*format!("Bearer {key}"))];
    let (_, _, body) = send_with(api, "GET", "/v1/models", &openai, None)
        .await
        .unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["object"],
        "list"
    );
    let (_, _, body) = send_with(api, "GET", "/v1/nowhere", &openai, None)
        .await
        .unwrap();
    assert!(serde_json::from_str::<Value>(&body).unwrap()["error"]["code"].is_string());
    gateway.running.shutdown().await;
}

#[tokio::test]
async fn a_wrong_method_is_told_what_is_allowed() {
    let gateway = InProcess::start(MOCK_AND_ONE_TENANT, Settings::default()).await;
    let api = gateway.running.api;
    for (path, allowed) in [
        ("/v1/messages/count_tokens", "POST"),
        ("/v1/chat/completions", "POST"),
        ("/v1/models", "GET"),
    ] {
        let (status, headers, _) = send_with(api, "DELETE", path, &[], None).await.unwrap();
        assert_eq!(status, 405, "{path}");
        assert_eq!(header(&headers, "allow"), Some(allowed), "{path}");
    }
    gateway.running.shutdown().await;
}

/// A browser's preflight: answered for an origin the platform allows, with the headers the
/// SDKs send from a browser; refused (no CORS headers) for any other, and by default.
#[tokio::test]
async fn browser_preflight_with_and_without_an_allowed_origin() {
    let settings = Settings {
        cors: CorsPolicy::new(&["https://app.example.com".into()]).unwrap(),
        ..Settings::default()
    };
    let gateway = InProcess::start(MOCK_AND_ONE_TENANT, settings).await;
    let api = gateway.running.api;
    let asked = "authorization, content-type, x-stainless-os, x-stainless-retry-count, anthropic-version, anthropic-beta, anthropic-dangerous-direct-browser-access";
    let preflight = |origin: &'static str| {
        [
            ("origin", origin),
            ("access-control-request-method", "POST"),
            ("access-control-request-headers", asked),
        ]
    };
    let (status, headers, _) = send_with(
        api,
        "OPTIONS",
        "/v1/messages",
        &preflight("https://app.example.com"),
        None,
    )
    .await
    .unwrap();
    assert_eq!(status, 204);
    assert_eq!(
        header(&headers, "access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert_eq!(
        header(&headers, "access-control-allow-headers"),
        Some(asked)
    );
    assert_eq!(
        header(&headers, "access-control-allow-methods"),
        Some("POST")
    );
    let (status, headers, _) = send_with(
        api,
        "OPTIONS",
        "/v1/messages",
        &preflight("https://evil.example.com"),
        None,
    )
    .await
    .unwrap();
    assert_eq!(status, 403);
    assert_eq!(header(&headers, "access-control-allow-origin"), None);
    // The actual request from the allowed origin may read the request id and the limits.
    let key = gateway.key();
    let (status, headers, body) = send_with(
        api,
        "POST",
        "/v1/chat/completions",
        &[
            ("authorization", &format!("Bearer {key}")),
            ("origin", "https://app.example.com"),
        ],
        Some(
            json!({"model": "mock-fast", "messages": [{"role": "user", "content": "hi"}]})
                .to_string(),
        ),
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        header(&headers, "access-control-allow-origin"),
        Some("https://app.example.com")
    );
    let exposed = header(&headers, "access-control-expose-headers").unwrap();
    assert!(
        exposed.contains("x-dgidgi-request-id")
            && exposed.contains("x-ratelimit-remaining-requests")
    );
    gateway.running.shutdown().await;

    // By default no origin is allowed.
    let gateway = InProcess::start(MOCK_AND_ONE_TENANT, Settings::default()).await;
    let (status, headers, _) = send_with(
        gateway.running.api,
        "OPTIONS",
        "/v1/chat/completions",
        &preflight("https://app.example.com"),
        None,
    )
    .await
    .unwrap();
    assert_eq!(status, 403);
    assert_eq!(header(&headers, "access-control-allow-origin"), None);
    gateway.running.shutdown().await;
}

/// One line per request, with who, what served, status, timing and tokens — and never the
/// content or a key.
#[tokio::test]
async fn the_request_log_has_a_line_per_request_without_content_or_keys() {
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let (upstream, _log) = fake_providers::start().await;
    let settings = Settings {
        access_log: dgidgi::gateway::access_log::AccessLogFormat::Json,
        access_log_sink: dgidgi::gateway::access_log::AccessLogSink::Memory(lines.clone()),
        ..Settings::default()
    };
    let gateway = InProcess::start(&fake_providers::providers_yaml(upstream), settings).await;
    let secret = "the secret prompt text 8c1f";
    let chat = json!({"model": "anthropic/claude-fake", "max_tokens": 20,
        "messages": [{"role": "user", "content": secret}]});
    let (status, headers, _) = post(&gateway, "/v1/chat/completions", &[], &chat).await;
    assert_eq!(status, 200);
    let request_id = header(&headers, "x-dgidgi-request-id").unwrap().to_owned();
    let streamed = json!({"model": "openai-fake/gpt-fake", "stream": true,
        "messages": [{"role": "user", "content": secret}]});
    let (status, _, _) = post(&gateway, "/v1/chat/completions", &[], &streamed).await;
    assert_eq!(status, 200);
    let (status, _, _) = send_with(
        gateway.running.api,
        "POST",
        "/v1/chat/completions",
        &[("authorization", "Bearer dgk_not-a-key")],
        Some(chat.to_string()),
    )
    .await
    .unwrap();
    assert_eq!(status, 401);
    let entries = loop {
        let entries: Vec<Value> = lines
            .lock()
            .unwrap()
            .iter()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        if entries.len() >= 3 {
            break entries;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    let text = lines.lock().unwrap().join("\n");
    assert!(!text.contains(secret), "{text}");
    assert!(!text.contains(&gateway.key()), "{text}");
    assert!(!text.contains(fake_providers::KEY), "{text}");
    let served = entries
        .iter()
        .find(|e| e["request_id"] == request_id.as_str())
        .expect("the served request's line");
    assert_eq!(served["tenant"], "team-acme/acme");
    assert_eq!(served["door"], "chat");
    assert_eq!(served["source"], "platform");
    assert_eq!(served["provider"], "dgidgi-system/anthropic");
    assert_eq!(served["model"], "claude-fake");
    assert_eq!(served["status"], 200);
    assert_eq!(served["outcome"], "complete");
    assert_eq!(served["fallbacks"], 0);
    assert!(served["input_tokens"].as_u64().is_some(), "{served}");
    assert!(served["output_tokens"].as_u64().is_some(), "{served}");
    assert!(served["latency_ms"].as_u64().is_some() && served["ttfb_ms"].as_u64().is_some());
    let stream = entries
        .iter()
        .find(|e| e["provider"] == "dgidgi-system/openai-fake")
        .expect("the stream's line");
    assert_eq!(stream["outcome"], "complete");
    assert!(stream["output_tokens"].as_u64().is_some(), "{stream}");
    let refused = entries
        .iter()
        .find(|e| e["status"] == 401)
        .expect("the 401");
    assert_eq!(refused["outcome"], "rejected");
    assert!(refused.get("tenant").is_none());
    gateway.running.shutdown().await;
}

/// A provider that forwards unlisted models: tomorrow's model works today, as named, metered
/// at the provider's price and bounded by its maximum output; one that does not refuses it.
#[tokio::test]
async fn unlisted_models_are_forwarded_bounded_and_metered_when_the_provider_says_so() {
    let (upstream, log) = fake_providers::start().await;
    let yaml = fake_providers::providers_yaml(upstream).replace(
        "{name: text-embed-flaky, embedding: true}]}",
        "{name: text-embed-flaky, embedding: true}], unlistedModels: {action: Forward, maxOutputTokens: 700, pricing: {inputPerMillion: 1, outputPerMillion: 2}}}",
    );
    assert!(yaml.contains("unlistedModels"));
    let gateway = InProcess::start(&yaml, Settings::default()).await;
    let request = json!({"model": "openai-fake/gpt-next-2027",
        "messages": [{"role": "user", "content": "hi"}]});
    let (status, headers, body) = post(&gateway, "/v1/chat/completions", &[], &request).await;
    assert_eq!(status, 200, "{body}");
    let seen = log.lock().unwrap().last().cloned().unwrap();
    assert_eq!(seen.body["model"], "gpt-next-2027");
    // Its bound is the platform's, not the model's own: written in.
    assert_eq!(seen.body["max_tokens"], 700);
    assert_eq!(header(&headers, "x-dgidgi-model"), Some("gpt-next-2027"));
    // A request with its own smaller limit passes it as sent.
    let limited = json!({"model": "openai-fake/gpt-next-2027", "max_tokens": 50,
        "messages": [{"role": "user", "content": "hi"}]});
    let (status, _, _) = post(&gateway, "/v1/chat/completions", &[], &limited).await;
    assert_eq!(status, 200);
    assert_eq!(log.lock().unwrap().last().unwrap().body["max_tokens"], 50);
    // Another provider, refusing unlisted models (the default), answers 404.
    let other = json!({"model": "anthropic/claude-next-2027", "max_tokens": 5,
        "messages": [{"role": "user", "content": "hi"}]});
    let (status, _, _) = post(&gateway, "/v1/chat/completions", &[], &other).await;
    assert_eq!(status, 404);
    // The model list shows what is listed, not a pattern.
    let key = gateway.key();
    let (_, _, list) = send_with(
        gateway.running.api,
        "GET",
        "/v1/models",
        &[("authorization", &format!("Bearer {key}"))],
        None,
    )
    .await
    .unwrap();
    assert!(
        !list.contains("unlisted") && list.contains("gpt-fake"),
        "{list}"
    );
    gateway.running.shutdown().await;
}

/// What a hostile tenant writes cannot size the request log, the headers or the ledger: a model
/// name past 256 bytes is refused before routing, a long path is clipped in the log.
#[tokio::test]
async fn client_text_cannot_size_the_request_log() {
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let settings = Settings {
        access_log: dgidgi::gateway::access_log::AccessLogFormat::Text,
        access_log_sink: dgidgi::gateway::access_log::AccessLogSink::Memory(lines.clone()),
        ..Settings::default()
    };
    let gateway = InProcess::start(MOCK_AND_ONE_TENANT, settings).await;
    let long = json!({"model": "\u{200b}".repeat(100_000),
        "messages": [{"role": "user", "content": "hi"}]});
    let (status, _, body) = post(&gateway, "/v1/chat/completions", &[], &long).await;
    assert_eq!(status, 400, "{body}");
    let path = format!("/v1/{}", "x".repeat(50_000));
    let (status, _, _) = send_with(gateway.running.api, "GET", &path, &[], None)
        .await
        .unwrap();
    assert_eq!(status, 404);
    let text = loop {
        let text = lines.lock().unwrap().join("\n");
        if lines.lock().unwrap().len() >= 2 {
            break text;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert!(text.len() < 4_000, "{} bytes of log", text.len());
    gateway.running.shutdown().await;
}

/// `/v1/embeddings`: to an OpenAI-format upstream as sent, to Gemini and Cohere translated;
/// the answer in OpenAI's shape (floats, or its base64), and metered as input tokens — the
/// provider's count where it gives one, the reservation where it does not (Gemini).
#[tokio::test]
async fn embeddings_reach_every_format_and_are_metered_as_input() {
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let (upstream, log) = fake_providers::start().await;
    let settings = Settings {
        access_log: dgidgi::gateway::access_log::AccessLogFormat::Json,
        access_log_sink: dgidgi::gateway::access_log::AccessLogSink::Memory(lines.clone()),
        ..Settings::default()
    };
    let gateway = InProcess::start(&fake_providers::providers_yaml(upstream), settings).await;
    let input = json!(["one two three", "four"]);
    for (model, sent_input_type) in [
        ("openai-fake/text-embed-fake", None),
        ("gemini/gemini-embed-fake", None),
        ("cohere/embed-fake", Some("search_document")),
    ] {
        let request = json!({"model": model, "input": input, "dimensions": 3});
        let (status, headers, body) = post(&gateway, "/v1/embeddings", &[], &request).await;
        assert_eq!(status, 200, "{model}: {body}");
        assert_eq!(body["object"], "list", "{body}");
        assert_eq!(
            body["data"][1]["embedding"],
            json!(fake_providers::fake_vector("four", 3)),
            "{model}"
        );
        assert!(
            body["usage"]["prompt_tokens"].as_u64().unwrap() > 0,
            "{body}"
        );
        assert!(header(&headers, "x-dgidgi-request-id").is_some());
        let seen = log.lock().unwrap().last().cloned().unwrap();
        if let Some(input_type) = sent_input_type {
            assert_eq!(seen.body["input_type"], input_type);
        }
    }
    // As sent to the OpenAI-format upstream, base64 included.
    let packed = json!({"model": "openai-fake/text-embed-fake", "input": "hi there", "encoding_format": "base64"});
    let (status, _, body) = post(&gateway, "/v1/embeddings", &[], &packed).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["data"][0]["embedding"].is_string());
    let raw = String::from_utf8(log.lock().unwrap().last().unwrap().raw.clone()).unwrap();
    assert_eq!(
        raw,
        packed
            .to_string()
            .replace("openai-fake/text-embed-fake", "text-embed-fake")
    );
    // Translated answers are packed as OpenAI packs them.
    let packed = json!({"model": "gemini/gemini-embed-fake", "input": "hi", "encoding_format": "base64", "dimensions": 2});
    let (_, _, body) = post(&gateway, "/v1/embeddings", &[], &packed).await;
    assert_eq!(
        body["data"][0]["embedding"], "AAAAPwAAQD8=",
        "0.5 and 0.75 as little-endian f32"
    );
    // A chat model is no embedding model, and an embedding model serves no chat.
    let wrong = json!({"model": "openai-fake/gpt-fake", "input": "hi"});
    let (status, _, body) = post(&gateway, "/v1/embeddings", &[], &wrong).await;
    assert_eq!(status, 400, "{body}");
    let chat = json!({"model": "openai-fake/text-embed-fake", "messages": [{"role": "user", "content": "hi"}]});
    let (status, _, body) = post(&gateway, "/v1/chat/completions", &[], &chat).await;
    assert_eq!(status, 400, "{body}");
    // Anthropic has no embeddings: a clear 400, nothing sent.
    let before = log.lock().unwrap().len();
    let nowhere = json!({"model": "anthropic/claude-fake", "input": "hi"});
    let (status, _, _) = post(&gateway, "/v1/embeddings", &[], &nowhere).await;
    assert_eq!(status, 400);
    assert_eq!(log.lock().unwrap().len(), before);
    // Metered as input tokens: the provider's count (3 + 1 words), the estimate for Gemini.
    let entries = loop {
        let entries: Vec<Value> = lines
            .lock()
            .unwrap()
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .filter(|e: &Value| e["door"] == "embeddings" && e["status"] == 200)
            .collect();
        if entries.len() >= 5 {
            break entries;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    let by = |provider: &str| {
        entries
            .iter()
            .find(|e| e["provider"] == provider)
            .cloned()
            .unwrap()
    };
    assert_eq!(by("dgidgi-system/openai-fake")["input_tokens"], 4);
    assert_eq!(by("dgidgi-system/cohere")["input_tokens"], 4);
    // Gemini reports no usage: charged at the reservation, marked estimated in the ledger.
    assert!(by("dgidgi-system/gemini").get("input_tokens").is_none());
    gateway.running.shutdown().await;
}

/// Embeddings are limited like chat: the tenant's requests per minute and tokens per day.
#[tokio::test]
async fn embeddings_are_limited_like_chat() {
    let (upstream, _log) = fake_providers::start().await;
    let yaml = fake_providers::providers_yaml(upstream)
        .replace(
            r#"llm.dgidgi.io/requests-per-minute: "100000""#,
            r#"llm.dgidgi.io/requests-per-minute: "3""#,
        )
        .replace(
            r#"llm.dgidgi.io/tokens-per-day: "1000000000""#,
            r#"llm.dgidgi.io/tokens-per-day: "2000""#,
        );
    assert!(yaml.contains(r#"requests-per-minute: "3""#));
    let gateway = InProcess::start(&yaml, Settings::default()).await;
    // A body of ~12 KB is estimated at ~3,000 tokens: more than the day's 2,000.
    let big = json!({"model": "openai-fake/text-embed-fake", "input": "word ".repeat(2_400)});
    let (status, _, body) = post(&gateway, "/v1/embeddings", &[], &big).await;
    assert_eq!(status, 429, "{body}");
    // A refused request takes no place in the minute's window: three more fit.
    let small = json!({"model": "openai-fake/text-embed-fake", "input": "hello"});
    for _ in 0..3 {
        let (status, _, body) = post(&gateway, "/v1/embeddings", &[], &small).await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, headers, body) = post(&gateway, "/v1/embeddings", &[], &small).await;
    assert_eq!(status, 429, "{body}");
    assert!(header(&headers, "retry-after").is_some());
    gateway.running.shutdown().await;
}

/// A catch-all routing rule for chat models does not capture embeddings, and a batch larger
/// than a target takes is a clear 400 naming the limit.
#[tokio::test]
async fn embeddings_route_past_chat_rules_and_respect_batch_limits() {
    let (upstream, log) = fake_providers::start().await;
    let rule = r#"
---
apiVersion: llm.dgidgi.io/v1alpha1
kind: RoutingPolicy
metadata: {name: everything-to-gpt, namespace: dgidgi-system}
spec:
  priority: 100
  tenantSelector: {matchLabels: {}}
  rules:
    - match: {model: "text-embed-flaky"}
      targets:
        - {provider: openai-fake, model: text-embed-flaky}
      retry: {attempts: 1, on: [server-error], backoff: 10ms}
    - match: {model: "*"}
      targets:
        - {provider: openai-fake, model: gpt-fake}
"#;
    let yaml = format!("{}{rule}", fake_providers::providers_yaml(upstream));
    let gateway = InProcess::start(&yaml, Settings::default()).await;
    let request = json!({"model": "text-embed-fake", "input": "hello"});
    let (status, headers, body) = post(&gateway, "/v1/embeddings", &[], &request).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        log.lock().unwrap().last().unwrap().body["model"],
        "text-embed-fake"
    );
    assert_eq!(header(&headers, "x-dgidgi-provider"), Some("openai-fake"));
    assert_eq!(header(&headers, "x-dgidgi-model"), Some("text-embed-fake"));
    // A rule's retries cover embeddings: an overloaded model is asked again.
    let flaky = json!({"model": "text-embed-flaky", "input": "x"});
    let (status, _, body) = post(&gateway, "/v1/embeddings", &[], &flaky).await;
    assert_eq!(status, 200, "{body}");
    // Chat still follows the rule.
    let chat = json!({"model": "anything", "messages": [{"role": "user", "content": "hi"}]});
    let (status, headers, _) = post(&gateway, "/v1/chat/completions", &[], &chat).await;
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "x-dgidgi-model"), Some("gpt-fake"));
    // Gemini embeds at most 100 inputs a call.
    let inputs: Vec<String> = (0..101).map(|i| format!("text {i}")).collect();
    let many = json!({"model": "gemini/gemini-embed-fake", "input": inputs});
    let before = log.lock().unwrap().len();
    let (status, _, body) = post(&gateway, "/v1/embeddings", &[], &many).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("at most 100"), "{body}");
    assert_eq!(log.lock().unwrap().len(), before, "nothing was sent");
    gateway.running.shutdown().await;
}
