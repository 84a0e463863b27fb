//! The Responses API and Gemini's own API as front doors, over raw HTTP through a gateway
//! started in this process, in front of the fakes of every format (which record what arrived):
//! pass-through as sent to an upstream of the caller's API, translation to the others, typed
//! stream events, stored state kept from the platform's shared key, Google-shaped errors and
//! keys. The real clients (Codex CLI, the SDKs) run in `sdk_clients.rs` and `node_clients.rs`.

mod common;

use common::fake_providers;
use common::gateway::InProcess;
use common::http::{header, send_with};
use dgidgi::gateway::Settings;
use serde_json::{Value, json};

async fn with_fakes() -> (InProcess, fake_providers::Log) {
    let (upstream, log) = fake_providers::start().await;
    let gateway = InProcess::start(
        &fake_providers::providers_yaml(upstream),
        Settings::default(),
    )
    .await;
    (gateway, log)
}

/// Sends a raw body; the answer's status, headers and text.
async fn post_raw(
    gateway: &InProcess,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, Vec<(String, String)>, String) {
    send_with(
        gateway.running.api,
        "POST",
        path,
        headers,
        Some(body.to_owned()),
    )
    .await
    .expect("the gateway answers")
}

fn last_seen(log: &fake_providers::Log) -> fake_providers::Seen {
    log.lock()
        .unwrap()
        .last()
        .cloned()
        .expect("the fake was called")
}

/// The `data:` payloads of an SSE body.
fn events(body: &str) -> Vec<Value> {
    body.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).expect("each event is JSON"))
        .collect()
}

fn bearer(gateway: &InProcess) -> String {
    format!("Bearer {}", gateway.key())
}

// --- Responses -----------------------------------------------------------------------------------

#[tokio::test]
async fn a_responses_request_reaches_a_responses_upstream_as_sent_with_store_off() {
    let (gateway, log) = with_fakes().await;
    let auth = bearer(&gateway);
    // Key order, number spellings and escapes a re-serializer would change.
    let sent = r#"{"temperature":1e0,"model":"openai-resp/gpt-fake","input":[{"role":"user","content":"caf\u00e9 ok"}],"store":true,"max_output_tokens":300,"metadata":{"z":"1","a":"2"}}"#;
    let (status, headers, body) = post_raw(
        &gateway,
        "/v1/responses",
        &[("authorization", &auth), ("openai-beta", "responses=v1")],
        sent,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let seen = last_seen(&log);
    assert_eq!(seen.path, "/v1/responses");
    assert_eq!(seen.headers["openai-beta"], "responses=v1");
    // Only the model and `store` changed, in place: the platform's key is shared by tenants.
    let expected = sent
        .replace("openai-resp/gpt-fake", "gpt-fake")
        .replace(r#""store":true"#, r#""store":false"#);
    assert_eq!(String::from_utf8(seen.raw).unwrap(), expected);
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["output"][0]["content"][0]["text"], "echo: café ok");
    assert_eq!(answer["store"], false);
    assert_eq!(header(&headers, "x-dgidgi-provider"), Some("openai-resp"));
    gateway.running.shutdown().await;
}

/// What a provider would spend apart from the tokens of the model the gateway reserved and
/// priced is refused on the platform's key, naming the member, before any provider is called:
/// OpenRouter's model routing and plugins, OpenAI's web search, Anthropic's server tools and
/// remote MCP servers. Before, they were passed through as sent (a tenant on a cheap model could
/// have OpenRouter serve a dear one, or run searches the platform paid for unmetered). Client
/// tools Anthropic defines (bash, text editor) are billed as tokens and pass.
#[tokio::test]
async fn spending_the_reservation_cannot_price_is_refused_on_the_platforms_key() {
    let (gateway, log) = with_fakes().await;
    let auth = bearer(&gateway);
    let key = gateway.key();
    let chat = |extra: Value| {
        let mut body = json!({"model": "openai-resp/gpt-fake", "messages": [{"role": "user", "content": "hi"}]});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        body
    };
    let messages = |extra: Value| {
        let mut body = json!({"model": "anthropic/claude-fake", "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        body
    };
    let openai_headers = [("authorization", auth.as_str())];
    let anthropic_headers = [
        ("x-api-key", key.as_str()),
        ("anthropic-version", "2023-06-01"),
    ];
    for (path, headers, body, named) in [
        (
            "/v1/chat/completions",
            &openai_headers[..],
            chat(json!({"models": ["openai/gpt-5"]})),
            "'models'",
        ),
        (
            "/v1/chat/completions",
            &openai_headers[..],
            chat(json!({"route": "fallback"})),
            "'route'",
        ),
        (
            "/v1/chat/completions",
            &openai_headers[..],
            chat(json!({"plugins": [{"id": "web"}]})),
            "'plugins'",
        ),
        (
            "/v1/chat/completions",
            &openai_headers[..],
            chat(json!({"web_search_options": {}})),
            "'web_search_options'",
        ),
        // serde_json's `Value` read this object as `null` (its private raw-value token), which
        // the check let through while the provider got an object and searched.
        (
            "/v1/chat/completions",
            &openai_headers[..],
            chat(json!({"web_search_options": {"$serde_json::private::RawValue": "null"}})),
            "'web_search_options'",
        ),
        (
            "/v1/messages",
            &anthropic_headers[..],
            messages(json!({"mcp_servers": {"$serde_json::private::RawValue": "null"}})),
            "'mcp_servers'",
        ),
        (
            "/v1/messages",
            &anthropic_headers[..],
            messages(
                json!({"tools": [{"type": "web_search_20250305", "name": "web_search", "max_uses": 5}]}),
            ),
            "web_search_20250305",
        ),
        (
            "/v1/messages",
            &anthropic_headers[..],
            messages(
                json!({"mcp_servers": [{"type": "url", "url": "https://example.com/sse", "name": "x"}]}),
            ),
            "'mcp_servers'",
        ),
        (
            "/v1/chat/completions",
            &openai_headers[..],
            chat(json!({"tools": [{"type": "browser_search"}]})),
            "browser_search",
        ),
        (
            "/v1/chat/completions",
            &openai_headers[..],
            chat(json!({"messages": [{"role": "user", "content": [
                {"type": "file", "file": {"file_id": "file-of-tenant-a"}}]}]})),
            "'file_id'",
        ),
        (
            "/v1/messages",
            &anthropic_headers[..],
            messages(json!({"tools": [{"type": "web_fetch_20250910", "name": "web_fetch"}]})),
            "web_fetch_20250910",
        ),
        (
            "/v1/messages",
            &anthropic_headers[..],
            messages(json!({"messages": [{"role": "user", "content": [
            {"type": "document", "source": {"type": "file", "file_id": "file_of_tenant_a"}}]}]})),
            "file id",
        ),
        (
            "/v1/messages",
            &anthropic_headers[..],
            messages(json!({"messages": [{"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "t1", "content": [
                {"type": "image", "source": {"type": "file", "file_id": "file_of_tenant_a"}}]}]}]})),
            "file id",
        ),
    ] {
        let before = log.lock().unwrap().len();
        let (status, _, answer) = post_raw(&gateway, path, headers, &body.to_string()).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert!(answer.contains(named), "{named}: {answer}");
        assert_eq!(
            log.lock().unwrap().len(),
            before,
            "no provider was called: {body}"
        );
    }
    // Billed as tokens only: tools the client runs, and tool search over the request's own
    // tool definitions (Claude Code sends it).
    for tool in [
        json!({"type": "bash_20250124", "name": "bash"}),
        json!({"type": "tool_search_tool_regex_20251119", "name": "tool_search_tool_regex"}),
    ] {
        let client_tool = messages(json!({"tools": [tool]}));
        let (status, _, answer) = post_raw(
            &gateway,
            "/v1/messages",
            &anthropic_headers,
            &client_tool.to_string(),
        )
        .await;
        assert_eq!(status, 200, "{answer}");
    }
    gateway.running.shutdown().await;
}

#[tokio::test]
async fn stored_state_is_refused_on_the_platforms_key_and_never_routed_by_id() {
    let (gateway, log) = with_fakes().await;
    let auth = bearer(&gateway);
    for (body, named) in [
        (
            json!({"model": "openai-resp/gpt-fake", "input": "again", "previous_response_id": "resp_of_tenant_a"}),
            "previous_response_id",
        ),
        (
            json!({"model": "openai-resp/gpt-fake", "input": [{"role": "user", "content": [
                {"type": "input_image", "file_id": "file-of-tenant-a"}]}]}),
            "file_id",
        ),
        (
            json!({"model": "anthropic/claude-fake", "input": "again", "previous_response_id": "resp_1"}),
            "previous_response_id",
        ),
        // Billed per call, apart from tokens: nothing the reservation could cover.
        (
            json!({"model": "openai-resp/gpt-fake", "input": "news?", "tools": [{"type": "web_search"}]}),
            "web_search",
        ),
    ] {
        let before = log.lock().unwrap().len();
        let (status, _, answer) = post_raw(
            &gateway,
            "/v1/responses",
            &[("authorization", &auth)],
            &body.to_string(),
        )
        .await;
        assert_eq!(status, 400, "{answer}");
        let answer: Value = serde_json::from_str(&answer).unwrap();
        assert!(
            answer["error"]["message"].as_str().unwrap().contains(named),
            "{answer}"
        );
        assert_eq!(log.lock().unwrap().len(), before, "no provider was called");
    }
    for (method, path) in [
        ("GET", "/v1/responses/resp_of_tenant_a"),
        ("DELETE", "/v1/responses/resp_of_tenant_a"),
        ("GET", "/v1/responses/resp_of_tenant_a/input_items"),
        ("POST", "/v1/responses/resp_of_tenant_a/cancel"),
    ] {
        let (status, _, body) = send_with(
            gateway.running.api,
            method,
            path,
            &[("authorization", &auth)],
            None,
        )
        .await
        .unwrap();
        assert_eq!(status, 404, "{method} {path}: {body}");
        assert_eq!(
            serde_json::from_str::<Value>(&body).unwrap()["error"]["code"],
            "response_not_found"
        );
        let (status, _, _) = send_with(gateway.running.api, method, path, &[], None)
            .await
            .unwrap();
        assert_eq!(status, 401, "{method} {path} without a key");
    }
    gateway.running.shutdown().await;
}

#[tokio::test]
async fn a_responses_request_is_translated_for_other_formats_whole_and_streamed() {
    let (gateway, log) = with_fakes().await;
    let auth = bearer(&gateway);
    for model in [
        "anthropic/claude-fake",
        "gemini/gemini-fake",
        "openai-fake/gpt-fake",
    ] {
        let body = json!({"model": model, "instructions": "be brief", "input": "hello responses",
            "max_output_tokens": 200});
        let (status, _, answer) = post_raw(
            &gateway,
            "/v1/responses",
            &[("authorization", &auth)],
            &body.to_string(),
        )
        .await;
        assert_eq!(status, 200, "{model}: {answer}");
        let answer: Value = serde_json::from_str(&answer).unwrap();
        assert_eq!(answer["object"], "response", "{model}");
        assert_eq!(answer["status"], "completed", "{model}");
        assert_eq!(
            answer["output"][0]["content"][0]["text"], "echo: hello responses",
            "{model}"
        );
        assert!(
            answer["usage"]["input_tokens"].as_u64().unwrap() > 0,
            "{model}"
        );

        let mut streamed = body.clone();
        streamed["stream"] = json!(true);
        let (status, _, text) = post_raw(
            &gateway,
            "/v1/responses",
            &[("authorization", &auth)],
            &streamed.to_string(),
        )
        .await;
        assert_eq!(status, 200, "{model}: {text}");
        let events = events(&text);
        let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_eq!(kinds.first(), Some(&"response.created"), "{model}");
        assert_eq!(
            kinds.last(),
            Some(&"response.completed"),
            "{model}: {kinds:?}"
        );
        let deltas: String = events
            .iter()
            .filter(|e| e["type"] == "response.output_text.delta")
            .map(|e| e["delta"].as_str().unwrap())
            .collect();
        assert_eq!(deltas, "echo: hello responses", "{model}");
        let sequence: Vec<u64> = events
            .iter()
            .map(|e| e["sequence_number"].as_u64().unwrap())
            .collect();
        assert_eq!(sequence, (0..events.len() as u64).collect::<Vec<_>>());
        let completed = events.last().unwrap();
        assert!(
            completed["response"]["usage"]["output_tokens"]
                .as_u64()
                .unwrap()
                > 0
        );
    }
    // The Anthropic upstream got a Messages request: instructions as its system prompt.
    let anthropic = log
        .lock()
        .unwrap()
        .iter()
        .find(|s| s.path.starts_with("/v1/messages"))
        .cloned()
        .unwrap();
    assert_eq!(anthropic.body["max_tokens"], 200);
    assert!(anthropic.body["system"].to_string().contains("be brief"));
    gateway.running.shutdown().await;
}

#[tokio::test]
async fn function_calls_go_round_through_a_translated_target() {
    let (gateway, _log) = with_fakes().await;
    let auth = bearer(&gateway);
    let tools = json!([{"type": "function", "name": "get_weather", "description": "Weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
        "required": ["city"], "additionalProperties": false}, "strict": true}]);
    for model in ["anthropic/claude-fake", "openai-resp/gpt-fake"] {
        let first =
            json!({"model": model, "input": "weather in Paris and Berlin?", "tools": tools});
        let (status, _, answer) = post_raw(
            &gateway,
            "/v1/responses",
            &[("authorization", &auth)],
            &first.to_string(),
        )
        .await;
        assert_eq!(status, 200, "{answer}");
        let answer: Value = serde_json::from_str(&answer).unwrap();
        let calls: Vec<&Value> = answer["output"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["type"] == "function_call")
            .collect();
        assert_eq!(calls.len(), 2, "{model}: {answer}");
        let mut input = vec![json!({"role": "user", "content": "weather in Paris and Berlin?"})];
        for call in &calls {
            input.push((*call).clone());
            let city = if call["arguments"].as_str().unwrap().contains("Paris") {
                "Paris"
            } else {
                "Berlin"
            };
            input.push(
                json!({"type": "function_call_output", "call_id": call["call_id"],
                "output": format!("sunny in {city}")}),
            );
        }
        let second = json!({"model": model, "input": input, "tools": tools});
        let (status, _, answer) = post_raw(
            &gateway,
            "/v1/responses",
            &[("authorization", &auth)],
            &second.to_string(),
        )
        .await;
        assert_eq!(status, 200, "{answer}");
        let answer: Value = serde_json::from_str(&answer).unwrap();
        let text = answer["output"][0]["content"][0]["text"].as_str().unwrap();
        assert!(text.starts_with("echo: "), "{model}: {answer}");
        assert!(text.contains("sunny in"), "{model}: {answer}");
    }
    gateway.running.shutdown().await;
}

#[tokio::test]
async fn a_responses_stream_failing_midway_says_so_in_the_apis_events() {
    let (gateway, _log) = with_fakes().await;
    let auth = bearer(&gateway);
    for model in [
        "openai-resp/gpt-midfail",
        "anthropic/claude-midfail",
        "openai-resp/gpt-reset",
    ] {
        let body = json!({"model": model, "input": "hello", "stream": true});
        let (status, _, text) = post_raw(
            &gateway,
            "/v1/responses",
            &[("authorization", &auth)],
            &body.to_string(),
        )
        .await;
        assert_eq!(status, 200, "{model}: {text}");
        let events = events(&text);
        let last = events.last().unwrap();
        assert!(
            last["type"] == "response.failed" || last["type"] == "error",
            "{model}: {last}"
        );
        assert!(
            !events.iter().any(|e| e["type"] == "response.completed"),
            "{model}"
        );
    }
    gateway.running.shutdown().await;
}

// --- Gemini --------------------------------------------------------------------------------------

#[tokio::test]
async fn a_gemini_request_reaches_a_gemini_upstream_as_sent() {
    let (gateway, log) = with_fakes().await;
    let key = gateway.key();
    let sent = r#"{"contents":[{"role":"user","parts":[{"text":"hello genai"}]}],"generationConfig":{"temperature":1e0,"maxOutputTokens":300},"safetySettings":[]}"#;
    let (status, headers, body) = post_raw(
        &gateway,
        "/v1beta/models/gemini%2Fgemini-fake:generateContent",
        &[("x-goog-api-key", &key)],
        sent,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let seen = last_seen(&log);
    assert_eq!(seen.path, "/v1beta/models/gemini-fake:generateContent");
    assert_eq!(seen.headers["x-goog-api-key"], fake_providers::KEY);
    assert_eq!(String::from_utf8(seen.raw).unwrap(), sent);
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        answer["candidates"][0]["content"]["parts"][0]["text"],
        "echo: hello genai"
    );
    assert_eq!(header(&headers, "x-dgidgi-provider"), Some("gemini"));
    // Google reads fields by their proto names too: such a body goes as sent as well, and one
    // naming `generationConfig` both ways is refused before any provider is called (metering
    // could read one copy while Google obeys the other).
    let proto_names = r#"{"contents":[{"role":"user","parts":[{"text":"hello genai"}]}],"generation_config":{"max_output_tokens":300,"candidate_count":1}}"#;
    let (status, _, body) = post_raw(
        &gateway,
        "/v1beta/models/gemini%2Fgemini-fake:generateContent",
        &[("x-goog-api-key", &key)],
        proto_names,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(String::from_utf8(last_seen(&log).raw).unwrap(), proto_names);
    let before = log.lock().unwrap().len();
    let twice = r#"{"contents":[{"role":"user","parts":[{"text":"x"}]}],"generationConfig":{"maxOutputTokens":10},"generation_config":{"max_output_tokens":60000}}"#;
    let (status, _, body) = post_raw(
        &gateway,
        "/v1beta/models/gemini%2Fgemini-fake:generateContent",
        &[("x-goog-api-key", &key)],
        twice,
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let error: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(error["error"]["status"], "INVALID_ARGUMENT", "{body}");
    assert!(body.contains("generation_config"), "{body}");
    assert_eq!(log.lock().unwrap().len(), before, "no provider was called");
    // On the platform's key, shared by every tenant: nothing stored at Google, no tool Google
    // bills apart from tokens, no media of unknown length by URI.
    for (extra, named) in [
        (
            r#""generationConfig":{"maxOutputTokens":60000,"maxOutputTokens":10}"#,
            "maxOutputTokens",
        ),
        (r#""tools":[{"googleSearch":{}}]"#, "googleSearch"),
        (
            r#""cachedContent":"cachedContents/someone-elses""#,
            "cachedContent",
        ),
    ] {
        let body =
            format!(r#"{{"contents":[{{"role":"user","parts":[{{"text":"x"}}]}}],{extra}}}"#);
        let (status, _, answer) = post_raw(
            &gateway,
            "/v1beta/models/gemini%2Fgemini-fake:generateContent",
            &[("x-goog-api-key", &key)],
            &body,
        )
        .await;
        assert_eq!(status, 400, "{answer}");
        assert!(answer.contains(named), "{answer}");
    }
    assert_eq!(log.lock().unwrap().len(), before, "no provider was called");
    gateway.running.shutdown().await;
}

#[tokio::test]
async fn a_gemini_request_is_translated_for_other_formats_and_keys_work_in_the_url() {
    let (gateway, log) = with_fakes().await;
    let key = gateway.key();
    let body = json!({"systemInstruction": {"parts": [{"text": "be brief"}]},
        "contents": [{"role": "user", "parts": [{"text": "hello genai"}]}],
        "generationConfig": {"maxOutputTokens": 100}});
    for prefix in ["/v1beta", "/v1"] {
        for model in ["openai-fake/gpt-fake", "anthropic/claude-fake"] {
            // The key in the URL, as Google's REST examples pass it.
            let path = format!("{prefix}/models/{model}:generateContent?key={key}");
            let (status, _, answer) = post_raw(&gateway, &path, &[], &body.to_string()).await;
            assert_eq!(status, 200, "{path}: {answer}");
            let answer: Value = serde_json::from_str(&answer).unwrap();
            assert_eq!(
                answer["candidates"][0]["content"]["parts"][0]["text"],
                "echo: hello genai"
            );
            assert!(
                answer["usageMetadata"]["promptTokenCount"]
                    .as_u64()
                    .unwrap()
                    > 0
            );
        }
    }
    let seen = last_seen(&log);
    assert_eq!(seen.body["max_tokens"], 100);
    assert_eq!(seen.body["system"][0]["text"], "be brief");
    // Streamed, with function calls, through a translation.
    let tools = json!([{"functionDeclarations": [{"name": "get_weather",
        "parameters": {"type": "OBJECT", "properties": {"city": {"type": "STRING"}}}}]}]);
    let asked =
        json!({"contents": [{"role": "user", "parts": [{"text": "weather?"}]}], "tools": tools});
    let (status, _, text) = post_raw(
        &gateway,
        "/v1beta/models/openai-fake/gpt-fake:streamGenerateContent?alt=sse",
        &[("x-goog-api-key", &key)],
        &asked.to_string(),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let chunks = events(&text);
    let last = chunks.last().unwrap();
    let parts = last["candidates"][0]["content"]["parts"]
        .as_array()
        .unwrap();
    assert_eq!(parts.len(), 2, "{last}");
    assert_eq!(parts[0]["functionCall"]["args"]["city"], "Paris");
    assert_eq!(last["candidates"][0]["finishReason"], "STOP");
    // The OpenAI upstream got JSON Schema, not Gemini's upper-case type names.
    let seen = last_seen(&log);
    assert_eq!(
        seen.body["tools"][0]["function"]["parameters"]["type"],
        "object"
    );
    gateway.running.shutdown().await;
}

#[tokio::test]
async fn gemini_streams_count_tokens_models_and_errors_are_googles() {
    let (gateway, log) = with_fakes().await;
    let key = gateway.key();
    let auth: [(&str, &str); 1] = [("x-goog-api-key", &key)];
    let body = json!({"contents": [{"role": "user", "parts": [{"text": "stream please"}]}]});
    // Streamed from a Gemini upstream: relayed chunk by chunk.
    let (status, _, text) = post_raw(
        &gateway,
        "/v1beta/models/gemini/gemini-fake:streamGenerateContent?alt=sse",
        &auth,
        &body.to_string(),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let joined: String = events(&text)
        .iter()
        .filter_map(|c| c["candidates"][0]["content"]["parts"][0]["text"].as_str())
        .collect();
    assert_eq!(joined, "echo: stream please");
    // Counting: the provider's own count for a Gemini target, an estimate for another.
    let (status, headers, answer) = post_raw(
        &gateway,
        "/v1beta/models/gemini/gemini-fake:countTokens",
        &auth,
        &body.to_string(),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        serde_json::from_str::<Value>(&answer).unwrap()["totalTokens"],
        body.to_string().len() / 3
    );
    assert_eq!(header(&headers, "x-dgidgi-token-count"), Some("provider"));
    assert_eq!(
        last_seen(&log).path,
        "/v1beta/models/gemini-fake:countTokens"
    );
    let (status, headers, answer) = post_raw(
        &gateway,
        "/v1beta/models/anthropic/claude-fake:countTokens",
        &auth,
        &body.to_string(),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert!(
        serde_json::from_str::<Value>(&answer).unwrap()["totalTokens"]
            .as_u64()
            .unwrap()
            > 0
    );
    assert_eq!(header(&headers, "x-dgidgi-token-count"), Some("estimated"));
    // The model list in Google's shape.
    let (status, _, list) = send_with(gateway.running.api, "GET", "/v1beta/models", &auth, None)
        .await
        .unwrap();
    assert_eq!(status, 200, "{list}");
    let list: Value = serde_json::from_str(&list).unwrap();
    let names: Vec<&str> = list["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"models/gemini-fake"), "{names:?}");
    // Errors: Google's shape, for a bad key, an unknown model and a missing `alt=sse`.
    for (path, headers, status, code) in [
        (
            "/v1beta/models/gemini/gemini-fake:generateContent",
            vec![("x-goog-api-key", "nope")],
            401,
            "UNAUTHENTICATED",
        ),
        (
            "/v1beta/models/nope/none:generateContent",
            auth.to_vec(),
            404,
            "NOT_FOUND",
        ),
        (
            "/v1beta/models/gemini/gemini-fake:streamGenerateContent",
            auth.to_vec(),
            400,
            "INVALID_ARGUMENT",
        ),
    ] {
        let (got, _, answer) = post_raw(&gateway, path, &headers, &body.to_string()).await;
        assert_eq!(got, status, "{path}: {answer}");
        let answer: Value = serde_json::from_str(&answer).unwrap();
        assert_eq!(answer["error"]["status"], code, "{path}: {answer}");
        assert_eq!(answer["error"]["code"], status);
    }
    gateway.running.shutdown().await;
}

#[tokio::test]
async fn an_earlier_answer_referred_to_by_id_is_sent_whole_and_unknown_ids_are_refused() {
    let (upstream, log) = fake_providers::start().await;
    // A second tenant on the same platform keys, to try the first one's ids.
    let rival = "---\napiVersion: llm.dgidgi.io/v1alpha1\nkind: LlmTenant\nmetadata: {name: rival, namespace: team-rival}\nspec: {}\n";
    let yaml = fake_providers::providers_yaml(upstream) + rival;
    let gateway = InProcess::start(&yaml, Settings::default()).await;
    let key_of = |tenant: &str| {
        let key = gateway
            .output
            .access_keys
            .iter()
            .find(|k| k.tenant == tenant);
        format!("Bearer {}", key.unwrap().value.as_str())
    };
    let auth = key_of("acme");
    let rival_auth = key_of("rival");
    let mut ids = Vec::new();
    for (model, upstream_path, stream) in [
        ("anthropic/claude-fake", "/v1/messages", false),
        ("anthropic/claude-fake", "/v1/messages", true),
        ("openai-resp/gpt-fake", "/v1/responses", false),
        ("openai-resp/gpt-fake", "/v1/responses", true),
    ] {
        let first = json!({"model": model, "input": "remember me", "stream": stream});
        let (status, _, text) = post_raw(
            &gateway,
            "/v1/responses",
            &[("authorization", &auth)],
            &first.to_string(),
        )
        .await;
        assert_eq!(status, 200, "{text}");
        let message = if stream {
            events(&text)
                .into_iter()
                .find(|e| e["type"] == "response.output_item.done")
                .unwrap()["item"]
                .clone()
        } else {
            serde_json::from_str::<Value>(&text).unwrap()["output"][0].clone()
        };
        let id = message["id"].as_str().unwrap().to_owned();
        ids.push(id.clone());
        // The Vercel AI SDK's second turn: the earlier answer by reference.
        let second = json!({"model": model, "input": [
            {"role": "user", "content": "remember me"},
            {"type": "item_reference", "id": id},
            {"role": "user", "content": "again"}]});
        let (status, headers, text) = post_raw(
            &gateway,
            "/v1/responses",
            &[("authorization", &auth)],
            &second.to_string(),
        )
        .await;
        assert_eq!(status, 200, "{model} {stream}: {text}");
        // The gateway says what it wrote anew.
        let rewritten = headers
            .iter()
            .find(|(name, _)| name == "x-dgidgi-rewritten");
        assert_eq!(
            rewritten.map(|(_, value)| value.as_str()),
            Some("input"),
            "{headers:?}"
        );
        let seen = last_seen(&log);
        assert_eq!(seen.path, upstream_path);
        let sent = seen.body.to_string();
        assert!(sent.contains("echo: remember me"), "{model}: {sent}");
        assert!(!sent.contains("item_reference"), "{model}: {sent}");
    }
    let unknown = json!({"model": "openai-resp/gpt-fake", "input": [
        {"type": "item_reference", "id": "msg_of_someone_else"}]});
    let before = log.lock().unwrap().len();
    let (status, _, text) = post_raw(
        &gateway,
        "/v1/responses",
        &[("authorization", &auth)],
        &unknown.to_string(),
    )
    .await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("msg_of_someone_else"), "{text}");
    assert_eq!(log.lock().unwrap().len(), before, "no provider was called");
    // Another tenant naming the first one's items gets the same 400: ids are per tenant.
    for id in ids {
        let stolen = json!({"model": "openai-resp/gpt-fake", "input": [
            {"type": "item_reference", "id": id}]});
        let (status, _, text) = post_raw(
            &gateway,
            "/v1/responses",
            &[("authorization", &rival_auth)],
            &stolen.to_string(),
        )
        .await;
        assert_eq!(status, 400, "{text}");
        assert!(!text.contains("remember me"), "{text}");
    }
    assert_eq!(log.lock().unwrap().len(), before, "no provider was called");
    gateway.running.shutdown().await;
}

/// The chat and Messages front doors leave the conversation and the tools unparsed (a
/// pass-through forwards them as they came): what they hold is still judged as before, a
/// translation still reads them whole, and a broken body gets the same answers.
#[tokio::test]
async fn what_a_pass_through_leaves_unparsed_is_judged_and_translated_as_before() {
    let (gateway, log) = with_fakes().await;
    let auth = bearer(&gateway);
    let openai = [("authorization", auth.as_str())];
    for (body, status, said) in [
        (
            r#"{"model": "openai-resp/gpt-fake", "messages": "#,
            400,
            "not valid JSON (line 1, column 46)",
        ),
        (
            r#"[{"model": "openai-resp/gpt-fake"}]"#,
            400,
            "must be a JSON object",
        ),
        (
            r#"{"model": "openai-resp/gpt-fake", "messages": [ ]}"#,
            400,
            "'messages' must be a non-empty array",
        ),
        (
            r#"{"model": "openai-resp/gpt-fake", "messages": "hi"}"#,
            400,
            "'messages' must be a non-empty array",
        ),
        (
            r#"{"model": "openai-resp/gpt-fake"}"#,
            400,
            "'messages' must be a non-empty array",
        ),
        // Empty tools are no tools; a bad escape deep in a left-out member is still bad JSON.
        (
            r#"{"model": "openai-resp/gpt-fake", "tools": [], "messages": [{"role": "user", "content": "hi"}]}"#,
            200,
            "chat.completion",
        ),
        (
            r#"{"model": "openai-resp/gpt-fake", "messages": [{"role": "user", "content": "\x"}]}"#,
            400,
            "not valid JSON",
        ),
    ] {
        let (got, _, answer) = post_raw(&gateway, "/v1/chat/completions", &openai, body).await;
        assert_eq!(got, status, "{body}: {answer}");
        assert!(answer.contains(said), "{body}: {answer}");
    }
    // As sent to an upstream of the client's format, byte for byte past the model.
    let sent = r#"{"messages":[{"role":"user","content":"hi \u00e9"}],"model":"openai-resp/gpt-fake","tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object","properties":{"z":{"type":"number"},"a":{"type":"number"}}}}}]}"#;
    let (got, _, answer) = post_raw(&gateway, "/v1/chat/completions", &openai, sent).await;
    assert_eq!(got, 200, "{answer}");
    let raw = String::from_utf8(last_seen(&log).raw).unwrap();
    assert!(
        raw.starts_with(r#"{"messages":[{"role":"user","content":"hi \u00e9"}],"model":"gpt-fake","tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object","properties":{"z":{"type":"number"},"a":{"type":"number"}}}}}]"#),
        "{raw}"
    );
    // Translated for an upstream of another format: the conversation and tools read whole.
    let translated = sent.replace("openai-resp/gpt-fake", "anthropic/claude-fake");
    let (got, _, answer) = post_raw(&gateway, "/v1/chat/completions", &openai, &translated).await;
    assert_eq!(got, 200, "{answer}");
    let seen = last_seen(&log);
    assert_eq!(
        seen.body["messages"][0]["content"][0]["text"], "hi é",
        "{}",
        seen.body
    );
    assert_eq!(seen.body["tools"][0]["name"], "f", "{}", seen.body);
    // What a parse refuses is refused in a member left unparsed too, before any provider: a
    // lone surrogate (JSON's grammar, but no text), a number beyond f64, nesting past 128.
    let before = log.lock().unwrap().len();
    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    for body in [
        sent.replace(r"\u00e9", r"\ud800"),
        translated.replace(r"\u00e9", r"\ud800"),
        sent.replace(r#""type":"number"}}"#, r#""type":"number","max":1e400}}"#),
        sent.replace(r#""content":"hi \u00e9""#, &format!(r#""content":{deep}"#)),
    ] {
        let (got, _, answer) = post_raw(&gateway, "/v1/chat/completions", &openai, &body).await;
        assert_eq!(got, 400, "{body}: {answer}");
        assert!(
            answer.contains("not valid JSON (line 1, column"),
            "{answer}"
        );
    }
    assert_eq!(log.lock().unwrap().len(), before, "no provider was called");
    // The Messages front door leaves its system prompt too; a translation reads it.
    let key = gateway.key();
    let anthropic = [
        ("x-api-key", key.as_str()),
        ("anthropic-version", "2023-06-01"),
    ];
    let body = r#"{"model": "openai-resp/gpt-fake", "max_tokens": 50, "system": [{"type": "text", "text": "be brief"}], "messages": [{"role": "user", "content": "hi"}]}"#;
    let (got, _, answer) = post_raw(&gateway, "/v1/messages", &anthropic, body).await;
    assert_eq!(got, 200, "{answer}");
    let seen = last_seen(&log);
    assert_eq!(
        seen.body["messages"][0]["content"], "be brief",
        "{}",
        seen.body
    );
    gateway.running.shutdown().await;
}
