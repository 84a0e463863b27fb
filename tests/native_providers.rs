//! Native provider formats end to end: the gateway in-process in front of local fakes of the
//! Anthropic, Gemini, Cohere and OpenAI wire formats (tests/common/fake_providers.rs). OpenAI
//! clients reach the three native formats; Anthropic clients (`/v1/messages`) reach Anthropic
//! (pass-through) and OpenAI-format upstreams (translated). Tools round-trip with stable ids,
//! usage is read, and a provider failing mid-stream in its own way ends the client's stream
//! with an error in the client's format, never a fake end.

mod common;

use std::collections::HashMap;

use common::fake_providers::{self, Log};
use common::gateway::InProcess;
use dgidgi::gateway::Settings;
use dgidgi::sse;
use serde_json::{Value, json};

pub struct Harness {
    pub gateway: InProcess,
    pub log: Log,
}

impl Harness {
    pub async fn new() -> Self {
        let (upstream, log) = fake_providers::start().await;
        let yaml = fake_providers::providers_yaml(upstream);
        let gateway = InProcess::start(&yaml, Settings::default()).await;
        let not_ready = gateway.output.report.not_ready();
        assert!(not_ready.is_empty(), "{not_ready:?}");
        Self { gateway, log }
    }

    pub fn key(&self) -> String {
        self.gateway.output.access_keys[0].value.to_string()
    }

    pub async fn post(&self, path: &str, body: &Value) -> (u16, HashMap<String, String>, String) {
        let key = self.key();
        let (status, headers, body) = common::http::send_with(
            self.gateway.running.api,
            "POST",
            path,
            &[("x-api-key", &key)],
            Some(body.to_string()),
        )
        .await
        .expect("the gateway answers");
        (status, headers.into_iter().collect(), body)
    }

    fn last_seen(&self) -> common::fake_providers::Seen {
        self.log.lock().unwrap().last().cloned().unwrap()
    }
}

fn tools() -> Value {
    json!([{"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
        "additionalProperties": false}}}])
}

/// The data of every SSE event, with its name.
fn events(body: &str) -> Vec<(Option<String>, String)> {
    sse::parse_all(body.as_bytes())
        .unwrap()
        .into_iter()
        .map(|e| (e.event, e.data))
        .collect()
}

/// Reassembles an OpenAI stream: text, tool calls (id, name, arguments), finish, usage, done.
struct OpenAiStream {
    text: String,
    calls: Vec<(String, String, String)>,
    finish: Option<String>,
    usage: Option<Value>,
    done: bool,
    error: Option<String>,
}

fn openai_stream(body: &str) -> OpenAiStream {
    let mut out = OpenAiStream {
        text: String::new(),
        calls: Vec::new(),
        finish: None,
        usage: None,
        done: false,
        error: None,
    };
    for (_, data) in events(body) {
        if data == "[DONE]" {
            out.done = true;
            continue;
        }
        let chunk: Value = serde_json::from_str(&data).unwrap();
        if let Some(message) = chunk.pointer("/error/message") {
            out.error = Some(message.as_str().unwrap().to_owned());
            continue;
        }
        if chunk["usage"].is_object() {
            out.usage = Some(chunk["usage"].clone());
        }
        let Some(choice) = chunk.pointer("/choices/0") else {
            continue;
        };
        out.text += choice["delta"]["content"].as_str().unwrap_or("");
        for call in choice["delta"]["tool_calls"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let index = call["index"].as_u64().unwrap() as usize;
            if out.calls.len() <= index {
                out.calls.resize(index + 1, Default::default());
            }
            if let Some(id) = call["id"].as_str() {
                out.calls[index].0 = id.to_owned();
            }
            if let Some(name) = call["function"]["name"].as_str() {
                out.calls[index].1 = name.to_owned();
            }
            out.calls[index].2 += call["function"]["arguments"].as_str().unwrap_or("");
        }
        if let Some(finish) = choice["finish_reason"].as_str() {
            out.finish = Some(finish.to_owned());
        }
    }
    out
}

const NATIVE: [(&str, &str); 3] = [
    ("anthropic", "anthropic/claude-fake"),
    ("gemini", "gemini/gemini-fake"),
    ("cohere", "cohere/command-fake"),
];

#[tokio::test]
async fn openai_clients_reach_every_native_format_with_text_and_usage() {
    let h = Harness::new().await;
    for (provider, model) in NATIVE {
        let (status, headers, body) = h
            .post(
                "/v1/chat/completions",
                &json!({"model": model, "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello there"}]}),
            )
            .await;
        assert_eq!(status, 200, "{provider}: {body}");
        assert_eq!(headers["x-dgidgi-provider"], provider);
        let answer: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(answer["object"], "chat.completion", "{provider}");
        assert_eq!(
            answer["choices"][0]["message"]["content"], "echo: hello there",
            "{provider}: {body}"
        );
        assert_eq!(answer["choices"][0]["finish_reason"], "stop");
        let usage = &answer["usage"];
        let (prompt, completion, cached) = match provider {
            // Anthropic's input_tokens excludes cache reads (4) and writes (2).
            "anthropic" => (18, 6, 4),
            "gemini" => (10, 5, 3),
            _ => (7, 3, 0),
        };
        assert_eq!(usage["prompt_tokens"], prompt, "{provider}");
        assert_eq!(usage["completion_tokens"], completion, "{provider}");
        assert_eq!(usage["prompt_tokens_details"]["cached_tokens"], cached);
        let seen = h.last_seen();
        match provider {
            "anthropic" => {
                assert_eq!(seen.path, "/v1/messages");
                assert_eq!(seen.body["system"][0]["text"], "be brief");
                assert_eq!(seen.headers["anthropic-version"], "2023-06-01");
            }
            "gemini" => {
                assert_eq!(seen.path, "/v1beta/models/gemini-fake:generateContent");
                assert_eq!(
                    seen.body["systemInstruction"]["parts"][0]["text"],
                    "be brief"
                );
                assert!(!seen.path.contains("key="));
            }
            _ => {
                assert_eq!(seen.path, "/v2/chat");
                assert_eq!(seen.body["messages"][0]["role"], "system");
            }
        }
    }
    h.gateway.running.shutdown().await;
}

#[tokio::test]
async fn openai_clients_stream_from_every_native_format() {
    let h = Harness::new().await;
    for (provider, model) in NATIVE {
        for with_usage in [false, true] {
            let mut request = json!({"model": model, "stream": true,
                "messages": [{"role": "user", "content": "stream this"}]});
            if with_usage {
                request["stream_options"] = json!({"include_usage": true});
            }
            let (status, headers, body) = h.post("/v1/chat/completions", &request).await;
            assert_eq!(status, 200, "{provider}: {body}");
            assert!(headers["content-type"].starts_with("text/event-stream"));
            let stream = openai_stream(&body);
            assert_eq!(stream.text, "echo: stream this", "{provider}: {body}");
            assert_eq!(stream.finish.as_deref(), Some("stop"), "{provider}");
            assert!(stream.done && stream.error.is_none(), "{provider}: {body}");
            assert_eq!(
                stream.usage.is_some(),
                with_usage,
                "{provider}: the usage chunk only when asked: {body}"
            );
        }
    }
    h.gateway.running.shutdown().await;
}

#[tokio::test]
async fn tool_calls_round_trip_through_every_native_format_with_stable_ids() {
    let h = Harness::new().await;
    for (provider, model) in NATIVE {
        for stream in [false, true] {
            let question = json!({"role": "user", "content": "weather in Paris and Berlin?"});
            let (status, _, body) = h
                .post(
                    "/v1/chat/completions",
                    &json!({"model": model, "stream": stream, "tools": tools(), "messages": [question]}),
                )
                .await;
            assert_eq!(status, 200, "{provider}: {body}");
            let (calls, finish) = if stream {
                let s = openai_stream(&body);
                (s.calls, s.finish)
            } else {
                let answer: Value = serde_json::from_str(&body).unwrap();
                let calls = answer["choices"][0]["message"]["tool_calls"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|c| {
                        (
                            c["id"].as_str().unwrap().to_owned(),
                            c["function"]["name"].as_str().unwrap().to_owned(),
                            c["function"]["arguments"].as_str().unwrap().to_owned(),
                        )
                    })
                    .collect();
                let finish = answer["choices"][0]["finish_reason"]
                    .as_str()
                    .map(str::to_owned);
                (calls, finish)
            };
            assert_eq!(finish.as_deref(), Some("tool_calls"), "{provider}: {body}");
            assert_eq!(calls.len(), 2, "{provider} (parallel calls): {body}");
            let cities: Vec<Value> = calls
                .iter()
                .map(|c| serde_json::from_str::<Value>(&c.2).unwrap()["city"].clone())
                .collect();
            assert_eq!(cities, [json!("Paris"), json!("Berlin")], "{provider}");
            assert!(
                calls
                    .iter()
                    .all(|c| c.1 == "get_weather" && !c.0.is_empty())
            );
            assert_ne!(calls[0].0, calls[1].0, "{provider}: distinct ids");
            // Send the results back under the ids the gateway gave.
            let assistant = json!({"role": "assistant", "content": null, "tool_calls": calls.iter().map(|c| json!({
                "id": c.0, "type": "function", "function": {"name": c.1, "arguments": c.2}})).collect::<Vec<_>>()});
            let mut messages = vec![question.clone(), assistant];
            for (n, call) in calls.iter().enumerate() {
                messages.push(json!({"role": "tool", "tool_call_id": call.0, "content": format!("{{\"temp\": {n}}}")}));
            }
            let (status, _, body) = h
                .post(
                    "/v1/chat/completions",
                    &json!({"model": model, "tools": tools(), "messages": messages}),
                )
                .await;
            assert_eq!(status, 200, "{provider}: {body}");
            let seen = h.last_seen();
            match provider {
                "anthropic" => {
                    let results = &seen.body["messages"][2]["content"];
                    assert_eq!(results[0]["type"], "tool_result");
                    assert_eq!(results[0]["tool_use_id"], calls[0].0.as_str());
                    assert_eq!(results[1]["tool_use_id"], calls[1].0.as_str());
                    assert_eq!(
                        seen.body["messages"][1]["content"][0]["id"],
                        calls[0].0.as_str()
                    );
                }
                "gemini" => {
                    let parts = &seen.body["contents"][2]["parts"];
                    assert_eq!(parts[0]["functionResponse"]["name"], "get_weather");
                    assert_eq!(parts[1]["functionResponse"]["response"]["temp"], 1);
                    assert_eq!(
                        seen.body["contents"][1]["parts"][0]["functionCall"]["args"]["city"],
                        "Paris"
                    );
                }
                _ => {
                    assert_eq!(
                        seen.body["messages"][2]["tool_call_id"],
                        calls[0].0.as_str()
                    );
                    assert_eq!(
                        seen.body["messages"][1]["tool_calls"][1]["id"],
                        calls[1].0.as_str()
                    );
                }
            }
        }
    }
    h.gateway.running.shutdown().await;
}

#[tokio::test]
async fn a_provider_failing_mid_stream_ends_the_openai_stream_with_an_error() {
    let h = Harness::new().await;
    for model in [
        "anthropic/claude-midfail",
        "anthropic/claude-reset",
        "gemini/gemini-midfail",
        "gemini/gemini-reset",
        "cohere/command-reset",
        "openai-fake/gpt-reset",
    ] {
        let (status, _, body) = h
            .post(
                "/v1/chat/completions",
                &json!({"model": model, "stream": true, "messages": [{"role": "user", "content": "x"}]}),
            )
            .await;
        assert_eq!(status, 200, "{model}: {body}");
        let stream = openai_stream(&body);
        assert!(stream.error.is_some(), "{model}: {body}");
        assert!(!stream.done, "{model}: never a fake [DONE]: {body}");
        assert_ne!(stream.finish.as_deref(), Some("stop"), "{model}: {body}");
    }
    h.gateway.running.shutdown().await;
}

#[tokio::test]
async fn anthropic_overloaded_is_a_server_error() {
    let h = Harness::new().await;
    let (status, _, body) = h
        .post(
            "/v1/chat/completions",
            &json!({"model": "anthropic/claude-overloaded", "messages": [{"role": "user", "content": "x"}]}),
        )
        .await;
    assert_eq!(status, 503, "{body}");
    let (status, _, body) = h
        .post(
            "/v1/messages",
            &json!({"model": "anthropic/claude-overloaded", "max_tokens": 10, "messages": [{"role": "user", "content": "x"}]}),
        )
        .await;
    assert_eq!(status, 503, "{body}");
    let error: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(error["type"], "error");
    assert_eq!(error["error"]["type"], "api_error");
    h.gateway.running.shutdown().await;
}

#[tokio::test]
async fn images_go_inline_and_what_a_target_cannot_take_is_a_400() {
    let h = Harness::new().await;
    let image = |url: &str| json!([{"type": "text", "text": "what is this?"}, {"type": "image_url", "image_url": {"url": url}}]);
    let data = "data:image/png;base64,iVBORw0KGgo=";
    for (provider, model) in NATIVE {
        let (status, _, body) = h
            .post(
                "/v1/chat/completions",
                &json!({"model": model, "messages": [{"role": "user", "content": image(data)}]}),
            )
            .await;
        assert_eq!(status, 200, "{provider}: {body}");
        let seen = h.last_seen();
        match provider {
            "anthropic" => assert_eq!(
                seen.body["messages"][0]["content"][1]["source"],
                json!({"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="})
            ),
            "gemini" => assert_eq!(
                seen.body["contents"][0]["parts"][1]["inlineData"],
                json!({"mimeType": "image/png", "data": "iVBORw0KGgo="})
            ),
            _ => assert_eq!(
                seen.body["messages"][0]["content"][1]["image_url"]["url"],
                data
            ),
        }
    }
    let (status, _, body) = h
        .post(
            "/v1/chat/completions",
            &json!({"model": "gemini/gemini-fake", "messages": [{"role": "user", "content": image("https://example.com/cat.png")}]}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("inline"), "{body}");
    let (status, _, body) = h
        .post(
            "/v1/chat/completions",
            &json!({"model": "anthropic/claude-fake", "n": 2, "messages": [{"role": "user", "content": "x"}]}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("'n'"), "{body}");
    h.gateway.running.shutdown().await;
}

/// Reassembles an Anthropic stream: text, tool uses (id, name, input), stop reason, usage.
struct AnthropicStream {
    names: Vec<String>,
    text: String,
    tools: Vec<(String, String, String)>,
    stop: Option<String>,
    output_tokens: Option<u64>,
    error: Option<String>,
}

fn anthropic_stream(body: &str) -> AnthropicStream {
    let mut out = AnthropicStream {
        names: Vec::new(),
        text: String::new(),
        tools: Vec::new(),
        stop: None,
        output_tokens: None,
        error: None,
    };
    for (name, data) in events(body) {
        let event: Value = serde_json::from_str(&data).unwrap();
        let name = name.expect("every Anthropic event is named");
        assert_eq!(event["type"], name.as_str(), "{body}");
        out.names.push(name.clone());
        match name.as_str() {
            "content_block_start" if event["content_block"]["type"] == "tool_use" => {
                let block = &event["content_block"];
                out.tools.push((
                    block["id"].as_str().unwrap().to_owned(),
                    block["name"].as_str().unwrap().to_owned(),
                    String::new(),
                ));
            }
            "content_block_delta" => {
                out.text += event["delta"]["text"].as_str().unwrap_or("");
                if let Some(json) = event["delta"]["partial_json"].as_str() {
                    out.tools.last_mut().unwrap().2 += json;
                }
            }
            "message_delta" => {
                out.stop = event["delta"]["stop_reason"].as_str().map(str::to_owned);
                out.output_tokens = event["usage"]["output_tokens"].as_u64();
            }
            "error" => out.error = event["error"]["message"].as_str().map(str::to_owned),
            _ => {}
        }
    }
    out
}

#[tokio::test]
async fn the_messages_front_door_passes_anthropic_through_and_translates_openai() {
    let h = Harness::new().await;
    for (upstream, model) in [
        ("anthropic", "anthropic/claude-fake"),
        ("openai-fake", "openai-fake/gpt-fake"),
        ("gemini", "gemini/gemini-fake"),
    ] {
        let request = json!({"model": model, "max_tokens": 100, "system": "be brief",
            "messages": [{"role": "user", "content": [{"type": "text", "text": "hi claude"}]}]});
        let (status, headers, body) = h.post("/v1/messages", &request).await;
        assert_eq!(status, 200, "{upstream}: {body}");
        assert_eq!(headers["x-dgidgi-provider"], upstream);
        let message: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(message["type"], "message");
        assert_eq!(
            message["content"][0]["text"], "echo: hi claude",
            "{upstream}"
        );
        assert_eq!(message["stop_reason"], "end_turn");
        assert!(message["usage"]["output_tokens"].as_u64().unwrap() > 0);
        if upstream == "anthropic" {
            assert_eq!(
                h.last_seen().body["system"],
                "be brief",
                "passed through as sent"
            );
        }
        if upstream == "openai-fake" {
            let seen = h.last_seen();
            assert_eq!(
                seen.body["messages"][0],
                json!({"role": "system", "content": "be brief"})
            );
            assert_eq!(seen.body["max_tokens"], 100);
        }

        let mut streamed = request.clone();
        streamed["stream"] = json!(true);
        let (status, _, body) = h.post("/v1/messages", &streamed).await;
        assert_eq!(status, 200, "{upstream}: {body}");
        let stream = anthropic_stream(&body);
        assert_eq!(stream.text, "echo: hi claude", "{upstream}: {body}");
        assert_eq!(stream.names.first().unwrap(), "message_start");
        assert_eq!(stream.names.last().unwrap(), "message_stop");
        assert_eq!(stream.stop.as_deref(), Some("end_turn"));
        assert!(stream.output_tokens.unwrap() > 0, "{upstream}: {body}");
        if upstream == "openai-fake" {
            assert_eq!(
                h.last_seen().body["stream_options"]["include_usage"],
                true,
                "the gateway asks an OpenAI-format upstream for usage"
            );
        }
    }
    h.gateway.running.shutdown().await;
}

#[tokio::test]
async fn the_messages_front_door_round_trips_tools() {
    let h = Harness::new().await;
    let tools = json!([{"name": "get_weather", "description": "Weather of a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}]);
    for model in [
        "anthropic/claude-fake",
        "openai-fake/gpt-fake",
        "cohere/command-fake",
    ] {
        for stream in [false, true] {
            let question = json!({"role": "user", "content": "weather?"});
            let (status, _, body) = h
                .post(
                    "/v1/messages",
                    &json!({"model": model, "max_tokens": 100, "stream": stream, "tools": tools, "messages": [question]}),
                )
                .await;
            assert_eq!(status, 200, "{model}: {body}");
            let uses: Vec<(String, String, Value)> = if stream {
                let s = anthropic_stream(&body);
                assert_eq!(s.stop.as_deref(), Some("tool_use"), "{model}: {body}");
                s.tools
                    .into_iter()
                    .map(|(id, name, input)| (id, name, serde_json::from_str(&input).unwrap()))
                    .collect()
            } else {
                let message: Value = serde_json::from_str(&body).unwrap();
                assert_eq!(message["stop_reason"], "tool_use", "{model}: {body}");
                message["content"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|b| b["type"] == "tool_use")
                    .map(|b| {
                        (
                            b["id"].as_str().unwrap().to_owned(),
                            b["name"].as_str().unwrap().to_owned(),
                            b["input"].clone(),
                        )
                    })
                    .collect()
            };
            assert_eq!(uses.len(), 2, "{model}: {body}");
            assert_eq!(uses[0].2["city"], "Paris");
            assert_eq!(uses[1].2["city"], "Berlin");
            let assistant = json!({"role": "assistant", "content": uses.iter().map(|(id, name, input)|
                json!({"type": "tool_use", "id": id, "name": name, "input": input})).collect::<Vec<_>>()});
            let results = json!({"role": "user", "content": uses.iter().map(|(id, _, _)|
                json!({"type": "tool_result", "tool_use_id": id, "content": "sunny"})).collect::<Vec<_>>()});
            let (status, _, body) = h
                .post(
                    "/v1/messages",
                    &json!({"model": model, "max_tokens": 100, "tools": tools, "messages": [question, assistant, results]}),
                )
                .await;
            assert_eq!(status, 200, "{model}: {body}");
            let seen = h.last_seen();
            if model.starts_with("openai-fake") || model.starts_with("cohere") {
                assert_eq!(
                    seen.body["messages"][1]["tool_calls"][0]["id"],
                    uses[0].0.as_str()
                );
                assert_eq!(seen.body["messages"][2]["role"], "tool");
                assert_eq!(seen.body["messages"][2]["tool_call_id"], uses[0].0.as_str());
                assert_eq!(seen.body["messages"][3]["tool_call_id"], uses[1].0.as_str());
            } else {
                assert_eq!(
                    seen.body["messages"][2]["content"][1]["tool_use_id"],
                    uses[1].0.as_str()
                );
            }
        }
    }
    h.gateway.running.shutdown().await;
}

#[tokio::test]
async fn the_messages_front_door_speaks_anthropic_errors() {
    let h = Harness::new().await;
    let cases = [
        (
            json!({"model": "anthropic/claude-fake", "messages": [{"role": "user", "content": "x"}]}),
            400,
        ),
        (
            json!({"model": "nope/nothing", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}),
            404,
        ),
        (
            json!({"model": "openai-fake/gpt-fake", "max_tokens": 5, "thinking": {"type": "enabled", "budget_tokens": 1024},
            "messages": [{"role": "user", "content": "x"}]}),
            400,
        ),
    ];
    for (request, expected) in cases {
        let (status, _, body) = h.post("/v1/messages", &request).await;
        assert_eq!(status, expected, "{body}");
        let error: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(error["type"], "error", "{body}");
        assert!(
            error["error"]["type"].as_str().unwrap().ends_with("_error"),
            "{body}"
        );
        assert!(error["error"]["message"].is_string());
    }
    // A mid-stream failure reaches the Anthropic client as an `error` event, with no
    // message_stop, whichever format failed.
    for model in [
        "anthropic/claude-midfail",
        "openai-fake/gpt-reset",
        "gemini/gemini-midfail",
    ] {
        let (status, _, body) = h
            .post(
                "/v1/messages",
                &json!({"model": model, "max_tokens": 5, "stream": true, "messages": [{"role": "user", "content": "x"}]}),
            )
            .await;
        assert_eq!(status, 200, "{model}: {body}");
        let stream = anthropic_stream(&body);
        assert!(stream.error.is_some(), "{model}: {body}");
        assert!(
            !stream.names.contains(&"message_stop".to_owned()),
            "{model}: {body}"
        );
    }
    h.gateway.running.shutdown().await;
}

#[tokio::test]
async fn the_messages_front_door_serves_the_built_in_mock() {
    let h = Harness::new().await;
    let request = json!({"model": "mock/mock-fast", "max_tokens": 50,
        "messages": [{"role": "user", "content": "hello mock"}]});
    let (status, headers, body) = h.post("/v1/messages", &request).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["x-dgidgi-provider"], "mock");
    let message: Value = serde_json::from_str(&body).unwrap();
    assert!(
        message["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("hello mock"),
        "{body}"
    );
    assert!(
        message["usage"]["input_tokens"].as_u64().unwrap() > 0,
        "{body}"
    );
    let mut streamed = request.clone();
    streamed["stream"] = json!(true);
    let (status, _, body) = h.post("/v1/messages", &streamed).await;
    assert_eq!(status, 200, "{body}");
    let stream = anthropic_stream(&body);
    assert!(stream.text.contains("hello mock"), "{body}");
    assert_eq!(stream.names.last().unwrap(), "message_stop");
    assert!(
        stream.output_tokens.unwrap() > 0,
        "usage reaches the Anthropic client: {body}"
    );
    h.gateway.running.shutdown().await;
}

/// Issue #19 (a first part): what Claude Code sends in its headers reaches Anthropic as sent
/// (`anthropic-version`, `anthropic-beta`), except a beta that changes the price on the
/// platform's key (`context-1m-*`, which the catalog does not price); the provider's request id
/// comes back, its own rate-limit headers do not (a platform tenant sees its own). Before, the
/// version was replaced with a fixed one, the betas were dropped, and no provider header came
/// back.
#[tokio::test]
async fn anthropic_headers_pass_through_and_the_request_id_comes_back() {
    let h = Harness::new().await;
    let key = h.key();
    let request = json!({"model": "anthropic/claude-fake", "max_tokens": 50,
        "messages": [{"role": "user", "content": "hello"}]});
    let (status, headers, body) = common::http::send_with(
        h.gateway.running.api,
        "POST",
        "/v1/messages?beta=true",
        &[
            ("x-api-key", &key),
            ("anthropic-version", "2023-06-01"),
            (
                "anthropic-beta",
                "claude-code-20250219,context-1m-2025-08-07,interleaved-thinking-2025-05-14",
            ),
        ],
        Some(request.to_string()),
    )
    .await
    .expect("the gateway answers");
    assert_eq!(status, 200, "{body}");
    let seen = h.last_seen();
    assert_eq!(seen.headers["anthropic-version"], "2023-06-01");
    assert_eq!(
        seen.headers["anthropic-beta"],
        "claude-code-20250219,interleaved-thinking-2025-05-14"
    );
    let headers: HashMap<String, String> = headers.into_iter().collect();
    assert_eq!(
        headers.get("request-id").map(String::as_str),
        Some("req_fake_0001")
    );
    assert!(!headers.contains_key("anthropic-ratelimit-requests-remaining"));
    h.gateway.running.shutdown().await;
}

impl Harness {
    /// Posts `body` as these exact bytes.
    async fn post_text(&self, path: &str, body: &str) -> (u16, String) {
        let key = self.key();
        let (status, _, body) = common::http::send_with(
            self.gateway.running.api,
            "POST",
            path,
            &[("x-api-key", &key), ("anthropic-version", "2023-06-01")],
            Some(body.to_owned()),
        )
        .await
        .expect("the gateway answers");
        (status, body)
    }
}

/// A pass-through to an upstream of the client's own format arrives as sent: key order (a
/// strict schema's `properties` is the order the model writes), number text, escapes and
/// unknown fields; only the model name is changed.
#[tokio::test]
async fn a_same_format_request_arrives_as_sent_with_only_the_model_changed() {
    let h = Harness::new().await;
    let schema = r#"{"type":"json_schema","json_schema":{"name":"r","strict":true,"schema":{"type":"object","properties":{"zeta":{"type":"string"},"alpha":{"type":"number"}},"required":["zeta","alpha"],"additionalProperties":false}}}"#;
    let openai = format!(
        r#"{{"temperature":1.0,"model":"openai-fake/gpt-fake","messages":[{{"role":"user","content":"caf\u00e9"}}],"response_format":{schema},"x_unknown":{{"b":1e3,"a":null}},"max_tokens":50}}"#
    );
    let (status, body) = h.post_text("/v1/chat/completions", &openai).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        String::from_utf8(h.last_seen().raw).unwrap(),
        openai.replace("openai-fake/gpt-fake", "gpt-fake")
    );

    let anthropic = r#"{"max_tokens":50,"system":"be \"brief\"","model":"anthropic/claude-fake","messages":[{"role":"user","content":"h\u00e9"}],"temperature":0.50,"output_config":{"effort":"low"},"metadata":{"z":1,"a":2}}"#;
    let (status, body) = h.post_text("/v1/messages", anthropic).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        String::from_utf8(h.last_seen().raw).unwrap(),
        anthropic.replace("anthropic/claude-fake", "claude-fake")
    );
    h.gateway.running.shutdown().await;
}

/// A body naming a member twice is refused before anything is sent: parsers disagree on which
/// copy wins, so metering could read one `max_tokens` while the provider obeys the other.
#[tokio::test]
async fn a_body_naming_a_member_twice_is_refused() {
    let h = Harness::new().await;
    let body = r#"{"max_tokens":100000,"model":"anthropic/claude-fake","messages":[{"role":"user","content":"hi"}],"max_tokens":5}"#;
    let (status, answer) = h.post_text("/v1/messages", body).await;
    assert_eq!(status, 400, "{answer}");
    assert!(answer.contains("`max_tokens` more than once"), "{answer}");
    assert!(h.log.lock().unwrap().is_empty());
    h.gateway.running.shutdown().await;
}
