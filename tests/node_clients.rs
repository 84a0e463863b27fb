//! Node clients, unchanged, against the gateway in front of the faithful fakes (pinned in
//! `tests/node/package-lock.json`):
//!
//! - Claude Code in headless mode (`claude -p`). A recording proxy between the agent and the
//!   gateway keeps what the agent sent, so the test compares it with what reached the fake
//!   upstream: `anthropic-version`, `anthropic-beta`, `max_tokens` and the whole body as sent,
//!   the agent's tool call carried out, and the token count it asks for before handing a large
//!   file to the model answered by the provider.
//! - The Vercel AI SDK (`tests/node/ai_sdk.mjs`): its OpenAI and Anthropic providers, text,
//!   streams, the tool loop and structured output, each to several formats; and its default
//!   `openai(model)`, which speaks the Responses API (`tests/node/ai_sdk_responses.mjs`): text,
//!   streams, tool loops and a multi-turn chat that refers to earlier items by id.
//! - Codex CLI (`codex exec`), which speaks only the Responses API, runs a shell command.
//!
//! `.ci/run` installs them (`npm ci` in `tests/node`); without them the tests say clearly that
//! they skipped, unless `DGIDGI_NODE_CLIENTS` asks for them (as CI does).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::capture;
use common::fake_providers;
use common::gateway::InProcess;
use dgidgi::gateway::Settings;

fn node_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/node")
}

/// Whether `command` runs; a failure when CI asked for the Node clients.
fn installed(mut command: Command, what: &str) -> bool {
    let usable = command.output().is_ok_and(|o| o.status.success());
    assert!(
        usable || std::env::var_os("DGIDGI_NODE_CLIENTS").is_none(),
        "DGIDGI_NODE_CLIENTS is set but {what} is not installed (npm ci in tests/node)"
    );
    if !usable {
        eprintln!("SKIPPED: {what} is not installed (npm ci in tests/node); .ci/run installs it");
    }
    usable
}

/// The Claude Code binary from `tests/node`, if installed.
fn claude() -> Option<PathBuf> {
    let bin = node_dir().join("node_modules/.bin/claude");
    let mut version = Command::new(&bin);
    version.arg("--version");
    installed(version, "Claude Code").then_some(bin)
}

/// The Anthropic fake as a platform provider with the built-in catalog (the agent's default
/// model must be in it), for an enterprise tenant whose limits never decide the test.
fn catalog_yaml(upstream: std::net::SocketAddr) -> String {
    let key = fake_providers::KEY;
    format!(
        r#"
apiVersion: v1
kind: Namespace
metadata:
  name: team-acme
  labels: {{llm.dgidgi.io/tier: enterprise}}
  annotations: {{"llm.dgidgi.io/requests-per-minute": "100000", "llm.dgidgi.io/tokens-per-day": "1000000000", "llm.dgidgi.io/concurrent": "1000"}}
---
apiVersion: v1
kind: Secret
metadata: {{name: native-key, namespace: dgidgi-system}}
stringData: {{apiKey: {key}}}
---
apiVersion: llm.dgidgi.io/v1alpha1
kind: LlmProvider
metadata: {{name: anthropic, namespace: dgidgi-system}}
spec: {{type: anthropic, baseUrl: "http://{upstream}", credentialsRef: {{name: native-key}}}}
---
apiVersion: llm.dgidgi.io/v1alpha1
kind: LlmTenant
metadata: {{name: acme, namespace: team-acme}}
spec: {{}}
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_code_runs_a_tool_and_finishes_through_the_gateway() {
    let Some(claude) = claude() else {
        return;
    };
    let (upstream, log) = fake_providers::start().await;
    let gateway = InProcess::start(&catalog_yaml(upstream), Settings::default()).await;
    let (proxy, sends) = capture::start(gateway.running.api).await;
    let home = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let notes = work.path().join("notes.txt");
    // Large enough (~40 KB) that the agent counts its tokens before it hands it to the model.
    let filler = "lorem ipsum dolor sit amet ".repeat(1_500);
    std::fs::write(&notes, format!("the launch code is 4711\n{filler}\n")).unwrap();
    let prompt = format!("Read {} and tell me the launch code.", notes.display());
    let key = gateway.key();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(claude)
            .args(["-p", &prompt, "--output-format", "json"])
            .args(["--allowedTools", "Read", "--max-turns", "4"])
            .current_dir(work.path())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", home.path())
            .env("ANTHROPIC_BASE_URL", format!("http://{proxy}"))
            .env("ANTHROPIC_API_KEY", key)
            .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
            .env("DISABLE_TELEMETRY", "1")
            .env("DISABLE_AUTOUPDATER", "1")
            .env("DISABLE_ERROR_REPORTING", "1")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let result: serde_json::Value = serde_json::from_str(stdout.trim()).expect("a JSON result");
    assert_eq!(result["is_error"], false, "{result}");
    assert!(
        result["result"].as_str().unwrap().contains("4711"),
        "{result}"
    );

    // Every Messages request the agent sent reached the provider as sent: the same version,
    // betas (it sends none that change the price) and body, max_tokens included.
    let sends = sends.lock().unwrap().clone();
    let seen = log.lock().unwrap().clone();
    let messages: Vec<_> = sends
        .iter()
        .filter(|s| s.path.starts_with("/v1/messages?") || s.path == "/v1/messages")
        .collect();
    let arrived: Vec<_> = seen.iter().filter(|s| s.path == "/v1/messages").collect();
    assert!(
        messages.len() >= 2,
        "a tool turn and an answer: {messages:#?}"
    );
    assert_eq!(messages.len(), arrived.len());
    for (sent, arrived) in messages.iter().zip(&arrived) {
        assert_eq!(
            arrived.headers["anthropic-version"],
            sent.headers["anthropic-version"]
        );
        let betas = &sent.headers["anthropic-beta"];
        assert!(betas.contains("claude-code-"), "{betas}");
        assert_eq!(&arrived.headers["anthropic-beta"], betas);
        assert_eq!(arrived.body["max_tokens"], sent.body["max_tokens"]);
        assert_eq!(arrived.body, sent.body, "the body arrives as sent");
    }
    // The agent ran its Read tool and sent the file back.
    let last = &arrived.last().unwrap().body["messages"];
    assert!(last.to_string().contains("4711"), "{last}");
    // It counted the file's tokens first: the count reached the provider as sent.
    let counts: Vec<_> = sends
        .iter()
        .filter(|s| s.path.starts_with("/v1/messages/count_tokens"))
        .collect();
    let counted: Vec<_> = seen
        .iter()
        .filter(|s| s.path == "/v1/messages/count_tokens")
        .collect();
    assert!(!counts.is_empty(), "the agent counted tokens");
    assert_eq!(counts.len(), counted.len());
    for (sent, arrived) in counts.iter().zip(&counted) {
        assert_eq!(arrived.body, sent.body, "the count's body arrives as sent");
        assert_eq!(
            arrived.headers["anthropic-beta"],
            sent.headers["anthropic-beta"]
        );
    }
    gateway.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_vercel_ai_sdk_works_unchanged_against_every_format() {
    let mut probe = Command::new("node");
    probe
        .args(["-e", "import('ai').then(() => import('@ai-sdk/anthropic'))"])
        .current_dir(node_dir());
    if !installed(probe, "the Vercel AI SDK") {
        return;
    }
    let (upstream, _log) = fake_providers::start().await;
    let gateway = InProcess::start(
        &fake_providers::providers_yaml(upstream),
        Settings::default(),
    )
    .await;
    let base = format!("http://{}", gateway.running.api);
    let key = gateway.key();
    tokio::task::spawn_blocking(move || {
        let mut suite = Command::new("node");
        suite.arg("ai_sdk.mjs").current_dir(node_dir());
        common::clients::run_suite(suite, &base, &key, "checks passed");
        let mut responses = Command::new("node");
        responses
            .arg("ai_sdk_responses.mjs")
            .current_dir(node_dir());
        common::clients::run_suite(responses, &base, &key, "checks passed, 0 failed");
    })
    .await
    .unwrap();
    gateway.running.shutdown().await;
}

/// The Codex CLI binary from `tests/node`, if installed.
fn codex() -> Option<PathBuf> {
    let bin = node_dir().join("node_modules/.bin/codex");
    let mut version = Command::new(&bin);
    version.arg("--version");
    installed(version, "Codex CLI").then_some(bin)
}

/// Codex's configuration: the gateway as a custom model provider speaking the Responses API,
/// no retries, and nothing that reaches the network beyond it (analytics, plugins, update
/// checks, endless reconnects).
fn codex_config(base_url: &str, model: &str) -> String {
    format!(
        r#"model = "{model}"
model_provider = "dgidgi"
approval_policy = "never"
sandbox_mode = "danger-full-access"
check_for_update_on_startup = false
web_search = "disabled"

[model_providers.dgidgi]
name = "dgidgi"
base_url = "{base_url}/v1"
env_key = "DGIDGI_API_KEY"
wire_api = "responses"
request_max_retries = 0
stream_max_retries = 0
stream_idle_timeout_ms = 30000

[analytics]
enabled = false

[feedback]
enabled = false

[features]
plugins = false
unbounded_connection_retries = false
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codex_runs_a_shell_command_and_finishes_through_the_gateway() {
    let Some(codex) = codex() else {
        return;
    };
    let (upstream, log) = fake_providers::start().await;
    let gateway = InProcess::start(
        &fake_providers::providers_yaml(upstream),
        Settings::default(),
    )
    .await;
    let (proxy, sends) = capture::start(gateway.running.api).await;
    // Once to an upstream serving the Responses API (passed through), once translated for
    // Anthropic's Messages API.
    for (model, upstream_path) in [
        ("openai-resp/gpt-fake", "/v1/responses"),
        ("anthropic/claude-fake", "/v1/messages"),
    ] {
        let home = tempfile::tempdir().unwrap();
        let work = tempfile::tempdir().unwrap();
        std::fs::write(
            home.path().join("config.toml"),
            codex_config(&format!("http://{proxy}"), model),
        )
        .unwrap();
        let (key, codex, home_path, work_path) = (
            gateway.key(),
            codex.clone(),
            home.path().to_owned(),
            work.path().to_owned(),
        );
        let before = (sends.lock().unwrap().len(), log.lock().unwrap().len());
        let output = tokio::task::spawn_blocking(move || {
            Command::new(codex)
                .args([
                    "exec",
                    "--skip-git-repo-check",
                    "--ephemeral",
                    "--strict-config",
                ])
                .args(["--json", "Run the shell command: echo dgidgi-codex-ok"])
                .current_dir(work_path)
                .stdin(std::process::Stdio::null())
                .env_clear()
                .env("PATH", std::env::var_os("PATH").unwrap_or_default())
                .env("HOME", &home_path)
                .env("CODEX_HOME", &home_path)
                .env("DGIDGI_API_KEY", key)
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{model}: {stdout}\n{stderr}");
        // The JSON event log: the command ran, and the final message carries its output.
        let events: Vec<serde_json::Value> = stdout
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect();
        let ran = events.iter().any(|e| {
            e["type"] == "item.completed"
                && e["item"]["type"] == "command_execution"
                && e["item"]["command"]
                    .as_str()
                    .is_some_and(|c| c.contains("echo dgidgi-codex-ok"))
                && e["item"]["exit_code"] == 0
        });
        assert!(ran, "{model}: the agent ran the command: {stdout}");
        let answered = events.iter().any(|e| {
            e["type"] == "item.completed"
                && e["item"]["type"] == "agent_message"
                && e["item"]["text"]
                    .as_str()
                    .is_some_and(|t| t.contains("dgidgi-codex-ok"))
        });
        assert!(
            answered,
            "{model}: the final message holds the output: {stdout}"
        );

        let sends = sends.lock().unwrap()[before.0..].to_vec();
        let arrived: Vec<_> = log.lock().unwrap()[before.1..]
            .iter()
            .filter(|s| s.path == upstream_path)
            .cloned()
            .collect();
        assert_eq!(sends.len(), 2, "{model}: a tool turn and an answer");
        assert_eq!(arrived.len(), 2, "{model}");
        for (sent, arrived) in sends.iter().zip(&arrived) {
            assert_eq!(sent.path, "/v1/responses");
            if upstream_path == "/v1/responses" {
                // Passed through: the body as sent, but for the model's name and the output
                // limit Codex leaves out, which the reservation needs (Codex already sends
                // `store: false`, so nothing else changed).
                let mut expected = sent.body.clone();
                expected["model"] = serde_json::json!("gpt-fake");
                let mut arrived = arrived.body.clone();
                let limit = arrived
                    .as_object_mut()
                    .and_then(|body| body.remove("max_output_tokens"));
                assert!(limit.is_some_and(|l| l.as_u64().is_some()), "{model}");
                assert!(arrived == expected, "{model}: the body arrives as sent");
            } else {
                // Translated: Codex's developer messages became Anthropic's system prompt,
                // and the second turn carries the command's output as a tool result.
                assert!(arrived.body["system"].to_string().contains("Codex"));
            }
        }
        let last = arrived.last().unwrap().body.to_string();
        assert!(last.contains("dgidgi-codex-ok"), "{model}: {last}");
    }
    gateway.running.shutdown().await;
}
