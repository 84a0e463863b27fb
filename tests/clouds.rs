//! The clouds (Azure OpenAI, Vertex AI) in front of local fakes that check what arrived: the
//! URL layout, the auth each takes (Azure's `api-key` and `api-version`, tokens exchanged for
//! an Entra application's credentials or a Google service account's signed JWT), the body
//! each expects, and their answers passed on in the caller's format.

mod common;

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use common::fake_clouds::{self, AZURE_FILTERED_ANSWER, AZURE_FILTERED_PROMPT};
use common::fake_providers::{self, Fake, KEY, Seen};
use common::gateway::InProcess;
use dgidgi::gateway::Settings;
use dgidgi::sse;
use serde_json::{Value, json};

struct Clouds {
    gateway: InProcess,
    fake: Fake,
}

impl Clouds {
    async fn new() -> Self {
        let fake = fake_providers::start_with(fake_providers::Answers::default()).await;
        let yaml = [
            fake_providers::providers_yaml(fake.address),
            "\n---\n".to_owned(),
            fake_clouds::clouds_yaml(fake.address),
        ]
        .concat();
        let settings = Settings {
            cloud_environment: dgidgi::gateway::tokens::CloudEnvironment {
                azure_authority_host: Some(format!("http://{}", fake.address)),
                ..Default::default()
            },
            ..Settings::default()
        };
        let gateway = InProcess::start(&yaml, settings).await;
        let not_ready = gateway.output.report.not_ready();
        assert!(not_ready.is_empty(), "{not_ready:?}");
        Self { gateway, fake }
    }

    async fn post(&self, path: &str, body: &Value) -> (u16, HashMap<String, String>, String) {
        let key = self.gateway.output.access_keys[0].value.to_string();
        let (status, headers, body) = common::http::send_with(
            self.gateway.running.api,
            "POST",
            path,
            &[("authorization", &format!("Bearer {key}"))],
            Some(body.to_string()),
        )
        .await
        .expect("the gateway answers");
        (status, headers.into_iter().collect(), body)
    }

    fn seen(&self) -> Vec<Seen> {
        self.fake.log.lock().unwrap().clone()
    }

    fn last_at(&self, prefix: &str) -> Seen {
        self.seen()
            .into_iter()
            .rev()
            .find(|s| s.path.starts_with(prefix))
            .unwrap_or_else(|| panic!("nothing reached {prefix}"))
    }
}

fn chat(model: &str, text: &str, stream: bool) -> Value {
    json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": text}]})
}

fn chunks(body: &str) -> Vec<Value> {
    sse::parse_all(body.as_bytes())
        .unwrap()
        .into_iter()
        .filter(|e| e.data != "[DONE]")
        .map(|e| serde_json::from_str(&e.data).unwrap())
        .collect()
}

/// The text of an OpenAI-format stream.
fn streamed_text(body: &str) -> String {
    chunks(body)
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect()
}

#[tokio::test]
async fn azure_v1_api_takes_the_deployment_in_the_body_and_the_key_in_api_key() {
    let clouds = Clouds::new().await;
    let (status, _, body) = clouds
        .post(
            "/v1/chat/completions",
            &chat("azure/azure-gpt", "hello azure", false),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        answer["choices"][0]["message"]["content"],
        "echo: hello azure"
    );
    let seen = clouds.last_at("/openai/");
    assert_eq!(seen.path, "/openai/v1/chat/completions");
    assert_eq!(seen.headers["api-key"], KEY);
    assert!(!seen.headers.contains_key("authorization"));
    assert_eq!(seen.body["model"], "prod-gpt");
}

#[tokio::test]
async fn azure_deployment_api_names_the_deployment_and_version_in_the_url() {
    let clouds = Clouds::new().await;
    let (status, _, body) = clouds
        .post(
            "/v1/chat/completions",
            &chat("azure-dated/azure-gpt", "dated", true),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // Azure's opening chunk (no choices, the prompt's filter results) is relayed as it came
    // to an OpenAI client, and the answer's text follows.
    assert_eq!(streamed_text(&body), "echo: dated");
    let seen = clouds.last_at("/openai/");
    assert_eq!(
        seen.path,
        "/openai/deployments/prod-gpt/chat/completions?api-version=2024-10-21"
    );
    assert_eq!(seen.headers["api-key"], KEY);
    // Embeddings go to the embedding model's deployment.
    let (status, _, body) = clouds
        .post(
            "/v1/embeddings",
            &json!({"model": "azure-dated/azure-embed", "input": "vector me"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        clouds.last_at("/openai/").path,
        "/openai/deployments/prod-embed/embeddings?api-version=2024-10-21"
    );
}

#[tokio::test]
async fn an_anthropic_client_in_front_of_azure_streams_with_usage() {
    let clouds = Clouds::new().await;
    let (status, _, body) = clouds
        .post(
            "/v1/messages",
            &json!({"model": "azure/azure-gpt", "max_tokens": 64, "stream": true,
                "messages": [{"role": "user", "content": "via messages"}]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let events = sse::parse_all(body.as_bytes()).unwrap();
    let names: Vec<&str> = events
        .iter()
        .map(|e| e.event.as_deref().unwrap_or(""))
        .collect();
    assert_eq!(names.first(), Some(&"message_start"), "{names:?}");
    assert_eq!(names.last(), Some(&"message_stop"), "{names:?}");
    let delta = events
        .iter()
        .find(|e| e.event.as_deref() == Some("message_delta"))
        .unwrap();
    let delta: Value = serde_json::from_str(&delta.data).unwrap();
    assert_eq!(delta["usage"]["output_tokens"], 4);
}

#[tokio::test]
async fn azures_content_filter_reaches_each_client_in_its_own_format() {
    let clouds = Clouds::new().await;
    // A filtered prompt: an OpenAI client gets Azure's own 400, content_filter code and all.
    let (status, _, body) = clouds
        .post(
            "/v1/chat/completions",
            &chat("azure/azure-gpt", AZURE_FILTERED_PROMPT, false),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    let error: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(error["error"]["code"], "content_filter");
    assert_eq!(
        error["error"]["innererror"]["code"],
        "ResponsibleAIPolicyViolation"
    );
    // An Anthropic client gets an Anthropic error carrying Azure's message.
    let (status, _, body) = clouds
        .post(
            "/v1/messages",
            &json!({"model": "azure/azure-gpt", "max_tokens": 64,
                "messages": [{"role": "user", "content": AZURE_FILTERED_PROMPT}]}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    let error: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(error["type"], "error");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("content management policy"),
        "{error}"
    );
    // A filtered answer: finish_reason content_filter, and Anthropic's `refusal` for its
    // clients, whole or streamed.
    let (status, _, body) = clouds
        .post(
            "/v1/chat/completions",
            &chat("azure/azure-gpt", AZURE_FILTERED_ANSWER, false),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["choices"][0]["finish_reason"], "content_filter");
    for stream in [false, true] {
        let (status, _, body) = clouds
            .post(
                "/v1/messages",
                &json!({"model": "azure/azure-gpt", "max_tokens": 64, "stream": stream,
                    "messages": [{"role": "user", "content": AZURE_FILTERED_ANSWER}]}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        assert!(body.contains(r#""stop_reason":"refusal""#), "{body}");
    }
}

#[tokio::test]
async fn an_entra_application_token_is_exchanged_once_and_reused() {
    let clouds = Clouds::new().await;
    // A burst on a cold cache waits for one exchange.
    let burst = (0..6).map(|n| {
        let body = chat("azure-entra/azure-gpt", &format!("burst {n}"), false);
        let clouds = &clouds;
        async move { clouds.post("/v1/chat/completions", &body).await.0 }
    });
    let statuses = futures::future::join_all(burst).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    for round in 0..3 {
        let (status, _, body) = clouds
            .post(
                "/v1/chat/completions",
                &chat(
                    "azure-entra/azure-gpt",
                    &format!("entra {round}"),
                    round == 1,
                ),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(clouds.fake.tokens_issued.load(Ordering::SeqCst), 1);
    let exchanges: Vec<Seen> = clouds
        .seen()
        .into_iter()
        .filter(|s| s.path.ends_with("/oauth2/v2.0/token"))
        .collect();
    assert_eq!(exchanges.len(), 1);
    let seen = clouds.last_at("/openai/");
    assert_eq!(seen.headers["authorization"], "Bearer eyJ.fake-0");
    assert!(!seen.headers.contains_key("api-key"));
}

#[tokio::test]
async fn vertex_serves_gemini_and_claude_with_a_service_accounts_token() {
    let clouds = Clouds::new().await;
    // An OpenAI client in front of Gemini on Vertex, whole and streamed.
    for stream in [false, true] {
        let (status, _, body) = clouds
            .post(
                "/v1/chat/completions",
                &chat("vertex/gemini-vertex", "hello gemini", stream),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let text = if stream {
            streamed_text(&body)
        } else {
            serde_json::from_str::<Value>(&body).unwrap()["choices"][0]["message"]["content"]
                .as_str()
                .unwrap()
                .to_owned()
        };
        assert_eq!(text, "echo: hello gemini");
    }
    let seen = clouds.last_at("/v1/projects/");
    assert_eq!(
        seen.path,
        "/v1/projects/fake-project/locations/us-east5/publishers/google/models/gemini-vertex:streamGenerateContent?alt=sse"
    );
    assert_eq!(seen.headers["authorization"], "Bearer ya29.fake-0");
    // An Anthropic client in front of Claude on Vertex: its body as sent, but for the model
    // (in the URL) and the version (in the body).
    let sent = r#"{"max_tokens":64,"model":"vertex/claude-vertex","messages":[{"role":"user","content":"hello claude"}],"metadata":{"user_id":"u-1"}}"#;
    let key = clouds.gateway.output.access_keys[0].value.to_string();
    let (status, _, body) = common::http::send_with(
        clouds.gateway.running.api,
        "POST",
        "/v1/messages",
        &[("x-api-key", &key), ("anthropic-version", "2023-06-01")],
        Some(sent.to_owned()),
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["content"][0]["text"], "echo: hello claude");
    let seen = clouds.last_at("/v1/projects/");
    assert_eq!(
        seen.path,
        "/v1/projects/fake-project/locations/us-east5/publishers/anthropic/models/claude-vertex:rawPredict"
    );
    // The fake put the model back for its Anthropic handler; what arrived had none.
    let arrived = String::from_utf8(seen.raw.clone()).unwrap();
    assert!(
        arrived.contains(r#""metadata":{"user_id":"u-1"}"#),
        "{arrived}"
    );
    // An OpenAI client in front of Claude on Vertex, streamed.
    let (status, _, body) = clouds
        .post(
            "/v1/chat/completions",
            &chat("vertex/claude-vertex", "streamed claude", true),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(streamed_text(&body), "echo: streamed claude");
    assert!(
        clouds
            .last_at("/v1/projects/")
            .path
            .ends_with("claude-vertex:streamRawPredict")
    );
    // One token served every request.
    assert_eq!(clouds.fake.tokens_issued.load(Ordering::SeqCst), 1);
}

/// A Vertex AI provider (`vertex`, model `gemini-vertex`) in front of `fake` with the service
/// account `json`, the mock and one tenant, and `more` resources.
fn vertex_alone(fake: &Fake, json: &str, more: &str) -> String {
    use base64::Engine as _;
    let account = base64::engine::general_purpose::STANDARD.encode(json);
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: sa, namespace: dgidgi-system}}\ndata: {{key.json: {account}}}\n---\napiVersion: llm.dgidgi.io/v1alpha1\nkind: LlmProvider\nmetadata: {{name: vertex, namespace: dgidgi-system}}\nspec: {{type: vertex-ai, baseUrl: \"http://{}\", region: us-east5, project: fake-project, credentialsRef: {{name: sa, key: key.json}}, models: [{{name: gemini-vertex}}]}}\n---\n{more}{}",
        fake.address,
        common::gateway::MOCK_AND_ONE_TENANT
    )
}

#[tokio::test]
async fn a_bad_service_account_fails_the_attempt_without_leaking_it() {
    let fake = fake_providers::start_with(fake_providers::Answers::default()).await;
    let json = fake_clouds::service_account_json(&format!("http://{}/token", fake.address))
        .replace(
            fake_clouds::SERVICE_ACCOUNT,
            "intruder@elsewhere.iam.gserviceaccount.com",
        );
    let yaml = vertex_alone(&fake, &json, "");
    let gateway = InProcess::start(&yaml, Settings::default()).await;
    let key = gateway.output.access_keys[0].value.to_string();
    let (status, _, body) = common::http::send(
        gateway.running.api,
        "POST",
        "/v1/chat/completions",
        Some(&key),
        Some(chat("vertex/gemini-vertex", "hi", false).to_string()),
    )
    .await
    .unwrap();
    assert_eq!(status, 502, "{body}");
    assert!(
        !body.contains("PRIVATE KEY") && !body.contains("intruder"),
        "{body}"
    );
    // Nothing reached Vertex without a token.
    assert!(
        fake.log
            .lock()
            .unwrap()
            .iter()
            .all(|s| !s.path.starts_with("/v1/projects/"))
    );
}

const BEDROCK_CLAUDE: &str = "us.anthropic.claude-fake-v1:0";

#[tokio::test]
async fn bedrock_converse_signed_with_sigv4_for_every_client() {
    let clouds = Clouds::new().await;
    let model = format!("bedrock/{BEDROCK_CLAUDE}");
    // An OpenAI client, whole and streamed (the stream is AWS's binary event-stream).
    let (status, _, body) = clouds
        .post(
            "/v1/chat/completions",
            &chat(&model, "hello bedrock", false),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        answer["choices"][0]["message"]["content"],
        "echo: hello bedrock"
    );
    assert_eq!(answer["usage"]["completion_tokens"], 4);
    let seen = clouds.last_at("/model/");
    assert_eq!(seen.path, "/model/us.anthropic.claude-fake-v1%3A0/converse");
    let authorization = &seen.headers["authorization"];
    assert!(
        authorization.starts_with(&format!(
            "AWS4-HMAC-SHA256 Credential={}/",
            common::fake_bedrock::ACCESS_KEY_ID
        )) && authorization.contains("/us-east-1/bedrock/aws4_request"),
        "{authorization}"
    );
    assert!(!seen.headers.contains_key("x-amz-security-token"));
    let (status, _, body) = clouds
        .post(
            "/v1/chat/completions",
            &chat(&model, "streamed bedrock", true),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(streamed_text(&body), "echo: streamed bedrock");
    let seen = clouds.last_at("/model/");
    assert_eq!(
        seen.path,
        "/model/us.anthropic.claude-fake-v1%3A0/converse-stream"
    );
    assert!(seen.headers["accept"].contains("application/vnd.amazon.eventstream"));
    // An Anthropic client, streamed with tools.
    let (status, _, body) = clouds
        .post(
            "/v1/messages",
            &json!({"model": model, "max_tokens": 64, "stream": true,
                "tools": [{"name": "get_weather", "input_schema": {"type": "object",
                    "properties": {"city": {"type": "string"}}}}],
                "messages": [{"role": "user", "content": "weather?"}]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""stop_reason":"tool_use""#), "{body}");
    assert!(
        body.contains(r#"\"city\":\"Paris\""#) || body.contains("Paris"),
        "{body}"
    );
    // The gateway bounded the answer: Converse's maxTokens is always written.
    assert_eq!(
        clouds.last_at("/model/").body["inferenceConfig"]["maxTokens"],
        64
    );
}

#[tokio::test]
async fn bedrock_takes_temporary_credentials_and_api_keys() {
    let clouds = Clouds::new().await;
    let (status, _, body) = clouds
        .post(
            "/v1/chat/completions",
            &chat(
                &format!("bedrock-session/{BEDROCK_CLAUDE}"),
                "with a session",
                false,
            ),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let seen = clouds.last_at("/model/");
    assert_eq!(
        seen.headers["x-amz-security-token"],
        common::fake_bedrock::SESSION_TOKEN
    );
    assert!(seen.headers["authorization"].contains("x-amz-security-token"));
    let (status, _, body) = clouds
        .post(
            "/v1/chat/completions",
            &chat("bedrock-key/amazon.nova-fake-v1", "with an api key", false),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let seen = clouds.last_at("/model/");
    assert_eq!(seen.headers["authorization"], format!("Bearer {KEY}"));
    assert!(!seen.headers.contains_key("x-amz-date"));
}

#[tokio::test]
async fn bedrocks_refusals_and_stream_failures_reach_the_client_in_its_format() {
    let clouds = Clouds::new().await;
    // A bare Claude id: Bedrock's ValidationException, as the client's own error.
    let (status, _, body) = clouds
        .post(
            "/v1/messages",
            &json!({"model": "bedrock/anthropic.claude-bare-v1:0", "max_tokens": 16,
                "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    let error: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(error["type"], "error");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("inference profile"),
        "{error}"
    );
    // A stream that fails midway ends with the client's error event, not a clean stop.
    let (status, _, body) = clouds
        .post(
            "/v1/chat/completions",
            &chat(
                &format!("bedrock/{BEDROCK_CLAUDE}"),
                common::fake_bedrock::FAIL_MID_STREAM,
                true,
            ),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("failed mid-stream"), "{body}");
    assert!(!body.contains("[DONE]"), "{body}");
}

#[tokio::test]
async fn no_cloud_credential_or_token_reaches_the_logs_metrics_or_answers() {
    let fake = fake_providers::start_with(fake_providers::Answers::default()).await;
    let yaml = [
        fake_providers::providers_yaml(fake.address),
        "\n---\n".to_owned(),
        fake_clouds::clouds_yaml(fake.address),
    ]
    .concat();
    let (output, dir) = common::gateway::config_dir(&yaml);
    let logs = tempfile::tempdir().unwrap();
    let (stdout, stderr) = (logs.path().join("stdout"), logs.path().join("stderr"));
    let authority = format!("http://{}", fake.address);
    let extra: Vec<&std::ffi::OsStr> = vec![
        "--azure-authority-host".as_ref(),
        authority.as_ref(),
        "--access-log".as_ref(),
        "json".as_ref(),
    ];
    let mut gateway = common::gateway::spawn_gateway_with_stdout(
        dir.path(),
        &["--log", "trace"],
        &extra,
        std::fs::File::create(&stdout).unwrap().into(),
        std::fs::File::create(&stderr).unwrap().into(),
    )
    .await;
    let key = output.access_keys[0].value.to_string();
    let mut answers = String::new();
    for model in [
        "azure/azure-gpt",
        "azure-entra/azure-gpt",
        "vertex/gemini-vertex",
        "vertex/claude-vertex",
        &format!("bedrock/{BEDROCK_CLAUDE}"),
        &format!("bedrock-session/{BEDROCK_CLAUDE}"),
        "bedrock-key/amazon.nova-fake-v1",
        "bedrock/anthropic.claude-bare-v1:0",
    ] {
        for stream in [false, true] {
            let (_, _, body) = common::http::send(
                gateway.api,
                "POST",
                "/v1/chat/completions",
                Some(&key),
                Some(chat(model, "scan me", stream).to_string()),
            )
            .await
            .unwrap();
            answers.push_str(&body);
        }
    }
    let (_, _, metrics) = common::http::send(gateway.admin, "GET", "/metrics", None, None)
        .await
        .unwrap();
    // The request log writes in batches (every 50 ms): wait for the answered requests' lines
    // before the gateway is killed (a kill -9 loses what is not written yet).
    let written = || {
        std::fs::read_to_string(&stdout)
            .unwrap_or_default()
            .lines()
            .filter(|line| line.contains("\"status\":200"))
            .count()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while written() < 14 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    gateway.child.kill().unwrap();
    gateway.child.wait().unwrap();
    // Every request reached its cloud with the credential (so the logs had their chance).
    let seen = fake.log.lock().unwrap().clone();
    let signatures: Vec<String> = seen
        .iter()
        .filter_map(|s| s.headers.get("authorization"))
        .filter_map(|a| a.split("Signature=").nth(1).map(str::to_owned))
        .collect();
    assert!(signatures.len() >= 4, "{signatures:?}");
    let pem_line = fake_clouds::SERVICE_ACCOUNT_KEY.lines().nth(5).unwrap();
    let mut secrets: Vec<String> = vec![
        KEY.into(),
        pem_line.into(),
        common::fake_bedrock::SECRET_ACCESS_KEY.into(),
        common::fake_bedrock::SESSION_TOKEN.into(),
        "ya29.fake-0".into(),
        "eyJ.fake-0".into(),
    ];
    secrets.extend(signatures);
    let logged = [
        std::fs::read_to_string(&stdout).unwrap(),
        std::fs::read_to_string(&stderr).unwrap(),
    ]
    .concat();
    assert!(logged.len() > 1000, "the logs were written: {logged}");
    // Every answered request was metered from its API's own usage fields (Converse's
    // inputTokens/outputTokens: 9 and 4 at the fake), streamed or not.
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&stdout)
        .unwrap()
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .filter(|line: &serde_json::Value| line["status"] == 200)
        .collect();
    assert_eq!(lines.len(), 14, "{lines:?}");
    for line in &lines {
        assert!(line["input_tokens"].as_u64() > Some(0), "{line}");
        assert!(line["output_tokens"].as_u64() > Some(0), "{line}");
        if line["provider"]
            .as_str()
            .is_some_and(|p| p.contains("bedrock"))
        {
            assert_eq!(
                (
                    line["input_tokens"].as_u64(),
                    line["output_tokens"].as_u64()
                ),
                (Some(9), Some(4)),
                "{line}"
            );
        }
    }
    for (place, text) in [
        ("logs", &logged),
        ("metrics", &metrics),
        ("answers", &answers),
    ] {
        for secret in &secrets {
            assert!(!text.contains(secret.as_str()), "{place} leak {secret:?}");
        }
    }
}

#[tokio::test]
async fn a_responses_client_reaches_azures_v1_responses_api_as_sent() {
    let clouds = Clouds::new().await;
    let sent = r#"{"model":"azure/azure-gpt","input":"hello responses","store":false,"metadata":{"k":"v"}}"#;
    let key = clouds.gateway.output.access_keys[0].value.to_string();
    let (status, _, body) = common::http::send(
        clouds.gateway.running.api,
        "POST",
        "/v1/responses",
        Some(&key),
        Some(sent.to_owned()),
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{body}");
    let seen = clouds.last_at("/openai/");
    assert_eq!(seen.path, "/openai/v1/responses");
    assert_eq!(seen.headers["api-key"], KEY);
    // As sent, but for the deployment's name and the output cap the platform's key enforces.
    assert_eq!(
        String::from_utf8(seen.raw.clone()).unwrap(),
        sent.replace("azure/azure-gpt", "prod-gpt")
            .replace("}}", "},\"max_output_tokens\":4096}")
    );
    // The deployment API has no Responses endpoint: the same client is translated to chat.
    let (status, _, body) = common::http::send(
        clouds.gateway.running.api,
        "POST",
        "/v1/responses",
        Some(&key),
        Some(sent.replace("azure/", "azure-dated/")),
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        clouds.last_at("/openai/").path,
        "/openai/deployments/prod-gpt/chat/completions?api-version=2024-10-21"
    );
}

#[tokio::test]
async fn the_pods_workload_identities_sign_without_a_stored_key() {
    let fake = fake_providers::start_with(fake_providers::Answers::default()).await;
    let files = tempfile::tempdir().unwrap();
    let file = |name: &str, token: &str| {
        let path = files.path().join(name);
        std::fs::write(&path, format!("{token}\n")).unwrap();
        path
    };
    let environment = dgidgi::gateway::tokens::CloudEnvironment {
        azure_authority_host: Some(format!("http://{}", fake.address)),
        azure_client_id: Some(fake_clouds::ENTRA_CLIENT.into()),
        azure_tenant_id: Some(fake_clouds::ENTRA_TENANT.into()),
        azure_federated_token_file: Some(file("azure", fake_clouds::FEDERATED_TOKEN)),
        aws_role_arn: Some(fake_clouds::ROLE_ARN.into()),
        aws_web_identity_token_file: Some(file("aws", fake_clouds::WEB_IDENTITY_TOKEN)),
        aws_sts_endpoint: Some(format!("http://{}/sts/", fake.address)),
        aws_container_credentials_full_uri: Some(format!("http://{}/v1/credentials", fake.address)),
        aws_container_authorization_token_file: Some(file("eks", fake_clouds::POD_IDENTITY_TOKEN)),
        gce_metadata_host: Some(fake.address.to_string()),
    };
    let provider = |name: &str, spec: &str| {
        format!(
            "apiVersion: llm.dgidgi.io/v1alpha1\nkind: LlmProvider\nmetadata: {{name: {name}, namespace: dgidgi-system}}\nspec: {{baseUrl: \"http://{}\", {spec}}}\n---\n",
            fake.address
        )
    };
    let yaml = [
        provider("irsa", "type: bedrock, region: us-east-1, identity: aws-web-identity, models: [{name: amazon.nova-fake-v1}]"),
        provider("pod", "type: bedrock, region: us-east-1, identity: eks-pod-identity, models: [{name: amazon.nova-fake-v1}]"),
        provider("gke", &format!("type: vertex-ai, region: us-east5, project: {}, identity: gke-metadata, models: [{{name: gemini-vertex}}, {{name: claude-vertex}}]", fake_clouds::PROJECT)),
        provider("aks", "type: azure-openai, identity: azure-workload-identity, azure: {deployments: [{model: azure-gpt, deployment: prod-gpt}]}, models: [{name: azure-gpt}]"),
        common::gateway::MOCK_AND_ONE_TENANT.to_owned(),
    ]
    .concat();
    let settings = Settings {
        cloud_environment: environment,
        ..Settings::default()
    };
    let gateway = InProcess::start(&yaml, settings).await;
    assert!(
        gateway.output.report.not_ready().is_empty(),
        "{:?}",
        gateway.output.report.not_ready()
    );
    let key = gateway.key();
    for model in [
        "irsa/amazon.nova-fake-v1",
        "pod/amazon.nova-fake-v1",
        "gke/gemini-vertex",
        "gke/claude-vertex",
        "aks/azure-gpt",
    ] {
        for round in 0..2 {
            let (status, _, body) = common::http::send(
                gateway.running.api,
                "POST",
                "/v1/chat/completions",
                Some(&key),
                Some(chat(model, &format!("{model} {round}"), round == 1).to_string()),
            )
            .await
            .unwrap();
            assert_eq!(status, 200, "{model}: {body}");
        }
    }
    let seen = fake.log.lock().unwrap().clone();
    // One fetch per identity, reused: STS, the pod identity agent, the metadata server, Entra.
    let fetches = |path: &str| seen.iter().filter(|s| s.path.ends_with(path)).count();
    assert_eq!(fetches("/sts"), 1);
    assert_eq!(fetches("/v1/credentials"), 1);
    assert_eq!(fetches("/service-accounts/default/token"), 1);
    assert_eq!(fetches("/oauth2/v2.0/token"), 1);
    // Bedrock was signed with the temporary credentials, their session token included.
    let signed: Vec<&Seen> = seen
        .iter()
        .filter(|s| s.path.starts_with("/model/"))
        .collect();
    assert_eq!(signed.len(), 4);
    for request in signed {
        assert_eq!(
            request.headers["x-amz-security-token"],
            common::fake_bedrock::SESSION_TOKEN
        );
    }
}

#[tokio::test]
async fn a_token_endpoint_that_is_down_is_the_providers_connection_failure_and_falls_back() {
    // Vertex's service account points at a token endpoint nobody listens on; the policy falls
    // back to the mock, and the failure is counted as the provider's connection failure.
    let fake = fake_providers::start_with(fake_providers::Answers::default()).await;
    let closed = common::gateway::free_port();
    let json = fake_clouds::service_account_json(&format!("http://127.0.0.1:{closed}/token"));
    let fallback = "apiVersion: llm.dgidgi.io/v1alpha1\nkind: RoutingPolicy\nmetadata: {name: p, namespace: dgidgi-system}\nspec: {rules: [{match: {model: g}, targets: [{provider: vertex, model: gemini-vertex}], fallback: [{provider: mock, model: mock-fast}]}]}\n---\n";
    let yaml = vertex_alone(&fake, &json, fallback);
    let gateway = InProcess::start(&yaml, Settings::default()).await;
    let key = gateway.key();
    for _ in 0..2 {
        let (status, headers, body) = common::http::send(
            gateway.running.api,
            "POST",
            "/v1/chat/completions",
            Some(&key),
            Some(chat("g", "hi", false).to_string()),
        )
        .await
        .unwrap();
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            common::http::header(&headers, "x-dgidgi-provider"),
            Some("mock")
        );
    }
    let metrics = common::http::send(gateway.running.admin, "GET", "/metrics", None, None)
        .await
        .unwrap()
        .2;
    // Counted as the provider's connection failure, not as a refused key.
    assert!(
        metrics
            .lines()
            .any(|l| l.contains("dgidgi_upstream_errors_total")
                && l.contains("vertex")
                && l.contains("connect")),
        "{}",
        metrics
            .lines()
            .filter(|l| l.contains("upstream_errors"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[tokio::test]
async fn a_refused_token_request_is_remembered_so_a_burst_does_not_repeat_it() {
    let fake = fake_providers::start_with(fake_providers::Answers::default()).await;
    let json = fake_clouds::service_account_json(&format!("http://{}/token", fake.address))
        .replace(
            fake_clouds::SERVICE_ACCOUNT,
            "intruder@elsewhere.iam.gserviceaccount.com",
        );
    let yaml = vertex_alone(&fake, &json, "");
    let gateway = InProcess::start(&yaml, Settings::default()).await;
    let key = gateway.key();
    for _ in 0..4 {
        let (status, _, body) = common::http::send(
            gateway.running.api,
            "POST",
            "/v1/chat/completions",
            Some(&key),
            Some(chat("vertex/gemini-vertex", "hi", false).to_string()),
        )
        .await
        .unwrap();
        assert_eq!(status, 502, "{body}");
    }
    let asked = fake
        .log
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.path == "/token")
        .count();
    assert_eq!(asked, 1, "the refusal is remembered for a few seconds");
}
