//! Real clients against the HTTP surface: the official `openai` Python SDK runs its test file
//! (`tests/sdk/test_openai_sdk.py`) against `dgidgi up` on the quickstart, and the official
//! `anthropic` and `openai` SDKs run `tests/sdk/test_native_sdks.py`, and LangChain's
//! `ChatOpenAI` and `ChatAnthropic` run `tests/sdk/test_langchain.py`, Google's `google-genai`
//! runs `tests/sdk/test_google_genai.py`, and the Responses API's clients (the `openai` SDK's
//! `responses`, the OpenAI Agents SDK, pydantic-ai's `OpenAIResponsesModel`) run
//! `tests/sdk/test_responses.py`, against the gateway in front of local fakes of the Anthropic,
//! Gemini, Cohere, OpenAI and Responses formats. `.ci/run` creates the
//! venv (`.venv`, or `DGIDGI_PYTHON`); without one these tests say clearly that they skipped.

mod common;

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

fn python() -> Option<PathBuf> {
    let candidate = std::env::var_os("DGIDGI_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python"));
    let usable = Command::new(&candidate)
        .args([
            "-c",
            "import openai, anthropic, pytest, langchain_openai, langchain_anthropic, google.genai, agents, pydantic_ai",
        ])
        .output()
        .is_ok_and(|o| o.status.success());
    // Asked for explicitly (as .ci/run does): a broken venv is a failure, not a skip.
    assert!(
        usable || std::env::var_os("DGIDGI_PYTHON").is_none(),
        "DGIDGI_PYTHON={} cannot import openai, anthropic, pytest, the LangChain chat models, google-genai, the OpenAI Agents SDK and pydantic-ai",
        candidate.display()
    );
    usable.then_some(candidate)
}

struct Gateway(Child);

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_official_openai_sdk_works_unchanged() {
    let Some(python) = python() else {
        eprintln!(
            "SKIPPED: no Python with the openai and anthropic SDKs and pytest (.venv or DGIDGI_PYTHON); .ci/run installs them"
        );
        return;
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let state = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_dgidgi"))
        .args([
            "up",
            "examples/quickstart",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--state-dir",
        ])
        .arg(state.path())
        .current_dir(root)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let _gateway = Gateway(child);
    let mut base_url = None;
    let mut key = None;
    let mut lines = BufReader::new(stdout).lines();
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(rest) = line
            .split(" on ")
            .nth(1)
            .filter(|_| line.starts_with("dgidgi is serving"))
        {
            base_url = Some(rest.trim().to_owned());
        }
        if line.trim_start().starts_with("team-acme/acme key default") {
            key = line.split_whitespace().last().map(str::to_owned);
        }
        if line.starts_with("try:") {
            break;
        }
    }
    // Keep draining the gateway's stdout so it never writes into a closed pipe.
    std::thread::spawn(move || lines.for_each(drop));
    let (base_url, key) = (
        base_url.expect("address printed"),
        key.expect("acme's key printed"),
    );
    pytest(&python, &["tests/sdk/test_openai_sdk.py"], &base_url, &key);
}

/// Runs one pytest file against a gateway; panics with the report if it fails.
fn pytest(python: &Path, files: &[&str], base_url: &str, key: &str) {
    let mut suite = Command::new(python);
    suite
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
        .args(["-o", "asyncio_default_fixture_loop_scope=function"])
        .args(files)
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")));
    common::clients::run_suite(suite, base_url, key, " passed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_sdks_work_against_every_native_format() {
    let Some(python) = python() else {
        eprintln!(
            "SKIPPED: no Python with the openai and anthropic SDKs and pytest (.venv or DGIDGI_PYTHON); .ci/run installs them"
        );
        return;
    };
    let (upstream, _log) = common::fake_providers::start().await;
    let yaml = [
        common::fake_providers::providers_yaml(upstream),
        "\n---\n".to_owned(),
        common::fake_clouds::clouds_yaml(upstream),
    ]
    .concat();
    let output = common::render_yaml(&yaml);
    assert!(output.report.not_ready().is_empty());
    let dir = tempfile::tempdir().unwrap();
    common::gateway::write_config(dir.path(), &output);
    let start = common::gateway::Start {
        settings: dgidgi::gateway::Settings {
            cloud_environment: dgidgi::gateway::tokens::CloudEnvironment {
                azure_authority_host: Some(format!("http://{upstream}")),
                ..Default::default()
            },
            ..dgidgi::gateway::Settings::default()
        },
        ..common::gateway::Start::default()
    };
    let running = common::gateway::start_in(dir.path(), start).await;
    let base_url = format!("http://{}", running.api);
    let key = output.access_keys[0].value.to_string();
    tokio::task::spawn_blocking(move || {
        pytest(
            &python,
            &[
                "tests/sdk/test_native_sdks.py",
                "tests/sdk/test_langchain.py",
                "tests/sdk/test_google_genai.py",
                "tests/sdk/test_responses.py",
            ],
            &base_url,
            &key,
        )
    })
    .await
    .unwrap();
    running.shutdown().await;
}
