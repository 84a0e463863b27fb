//! Helpers shared by the integration tests: render YAML text with a fixed clock and a seeded
//! random generator, so outputs are reproducible.
#![allow(dead_code)]

pub mod gateway;
pub mod http;
pub mod otlp;
pub mod redis;

use dgidgi::render::{InputLoader, RenderContext, RenderOutput, render};
use k8s_openapi::jiff::Timestamp;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

/// The fixed "now" of the tests: 2026-11-25T12:00:00Z.
pub const NOW: i64 = 1_795_608_000;

pub fn now() -> Timestamp {
    Timestamp::from_second(NOW).unwrap()
}

/// Loads every `(name, text)` pair and renders with the default platform namespace.
pub fn render_texts(texts: &[(&str, &str)], seed: u64) -> RenderOutput {
    render_texts_at(texts, seed, now())
}

pub fn render_texts_at(texts: &[(&str, &str)], seed: u64, at: Timestamp) -> RenderOutput {
    let mut loader = InputLoader::new("dgidgi-system").unwrap();
    for (name, text) in texts {
        loader.add_yaml(name, text).expect("inputs parse");
    }
    let ctx = RenderContext::new("dgidgi-system", at);
    render(loader.finish(), &ctx, &mut ChaCha20Rng::seed_from_u64(seed)).expect("render succeeds")
}

pub fn render_yaml(yaml: &str) -> RenderOutput {
    render_texts(&[("test.yaml", yaml)], 42)
}

/// The Ready condition (status, reason, message) of a resource in the report.
pub fn ready(
    output: &RenderOutput,
    kind: &str,
    namespace: &str,
    name: &str,
) -> (String, String, String) {
    condition(output, kind, namespace, name, "Ready")
}

pub fn condition(
    output: &RenderOutput,
    kind: &str,
    namespace: &str,
    name: &str,
    type_: &str,
) -> (String, String, String) {
    let report = &output.report;
    let conditions = match kind {
        "LlmProvider" => report
            .providers
            .iter()
            .find(|e| e.namespace == namespace && e.name == name)
            .map(|e| &e.status.conditions),
        "LlmTenant" => report
            .tenants
            .iter()
            .find(|e| e.namespace == namespace && e.name == name)
            .map(|e| &e.status.conditions),
        "RoutingPolicy" => report
            .policies
            .iter()
            .find(|e| e.namespace == namespace && e.name == name)
            .map(|e| &e.status.conditions),
        other => panic!("unknown kind {other}"),
    }
    .unwrap_or_else(|| panic!("{kind} {namespace}/{name} not in the report"));
    let c = conditions
        .iter()
        .find(|c| c.type_ == type_)
        .unwrap_or_else(|| {
            panic!("{kind} {namespace}/{name} has no {type_} condition: {conditions:?}")
        });
    (c.status.clone(), c.reason.clone(), c.message.clone())
}

/// Asserts a condition's status and reason and returns its message.
pub fn expect_condition(
    output: &RenderOutput,
    (kind, namespace, name): (&str, &str, &str),
    type_: &str,
    status: &str,
    reason: &str,
) -> String {
    let (actual_status, actual_reason, message) = condition(output, kind, namespace, name, type_);
    assert_eq!(
        (actual_status.as_str(), actual_reason.as_str()),
        (status, reason),
        "{kind} {namespace}/{name} {type_}: {message}"
    );
    message
}

/// Every file render writes (manifests and config dir), concatenated, for scanning.
pub fn all_output_text(output: &RenderOutput) -> String {
    let mut text = String::new();
    for file in dgidgi::render::manifests::manifest_files(output)
        .unwrap()
        .into_iter()
        .chain(dgidgi::render::manifests::config_dir_files(output).unwrap())
    {
        text.push_str(&file.path);
        text.push('\n');
        text.push_str(&String::from_utf8_lossy(&file.bytes));
    }
    text
}

/// Every file under a directory, recursively, in sorted order.
pub fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            files.extend(files_under(&path));
        } else {
            files.push(path);
        }
    }
    files
}

/// Reads every YAML file of a directory (recursively, sorted) as (path, text).
pub fn read_dir_texts(dir: &std::path::Path) -> Vec<(String, String)> {
    files_under(dir)
        .into_iter()
        .filter(|path| path.extension().is_some_and(|e| e == "yaml"))
        .map(|path| {
            (
                path.display().to_string(),
                std::fs::read_to_string(&path).unwrap(),
            )
        })
        .collect()
}

pub const PLATFORM_NS: &str = "apiVersion: v1\nkind: Namespace\nmetadata: {name: dgidgi-system}\n";

pub const MOCK_PROVIDER: &str = "apiVersion: llm.dgidgi.io/v1alpha1\nkind: LlmProvider\nmetadata: {name: mock, namespace: dgidgi-system}\nspec: {type: mock}\n";
pub mod capture;
pub mod clients;
pub mod fake_bedrock;
pub mod fake_clouds;
pub mod fake_providers;
pub mod fake_responses;
pub mod fake_scenarios;
