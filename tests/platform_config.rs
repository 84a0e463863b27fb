//! The platform configuration (ConfigMap `dgidgi-platform`, issue #26): tiers by any name, a
//! tier's models and budget ceiling, an unknown tier label, and an invalid configuration —
//! through render and through the gateway in front of the fakes.

mod common;

use common::fake_providers;
use common::gateway::InProcess;
use common::http::send;
use dgidgi::gateway::Settings;
use serde_json::{Value, json};

/// A platform with a `starter` tier that may use only the OpenAI-format fake, with a budget
/// ceiling, as the default tier; and the enterprise tier custom, as before.
const PLATFORM: &str = r#"---
apiVersion: v1
kind: ConfigMap
metadata: {name: dgidgi-platform, namespace: dgidgi-system}
data:
  platform.yaml: |
    tiers:
      - {name: starter, requestsPerMinute: 20, tokensPerDay: 100000, concurrent: 4,
         monthlyBudgetUsd: "25", models: ["openai-fake/*"]}
      - {name: enterprise, custom: true, requestsPerMinute: 200, tokensPerDay: 2000000, concurrent: 50}
    defaultTier: starter
"#;

/// A tenant in a namespace without a tier label (so on the default tier) and one on a tier
/// the configuration does not name.
const MORE_TENANTS: &str = r#"---
apiVersion: v1
kind: Namespace
metadata: {name: team-small}
---
apiVersion: llm.dgidgi.io/v1alpha1
kind: LlmTenant
metadata: {name: small, namespace: team-small}
spec: {}
---
apiVersion: v1
kind: Namespace
metadata: {name: team-lost, labels: {llm.dgidgi.io/tier: gold}}
---
apiVersion: llm.dgidgi.io/v1alpha1
kind: LlmTenant
metadata: {name: lost, namespace: team-lost}
spec: {}
"#;

fn yaml(upstream: std::net::SocketAddr, platform: &str) -> String {
    fake_providers::providers_yaml(upstream) + MORE_TENANTS + platform
}

#[tokio::test]
async fn a_tier_gets_its_numbers_budget_and_models_and_an_unknown_one_the_most_restrictive() {
    let (upstream, _log) = fake_providers::start().await;
    let output = common::render_yaml(&yaml(upstream, PLATFORM));
    assert!(output.platform_problem.is_none());
    let tenant = |id: &str| {
        output
            .config
            .tenants
            .iter()
            .find(|t| t.id == id)
            .unwrap()
            .clone()
    };
    let small = tenant("team-small/small");
    assert_eq!(small.tier, "starter");
    let limits = small.limits.as_ref().unwrap();
    assert_eq!(
        (
            limits.requests_per_minute,
            limits.tokens_per_day,
            limits.concurrent
        ),
        (20, 100_000, 4)
    );
    assert_eq!(small.allowed_models, ["openai-fake/*"]);
    assert_eq!(small.budget.as_ref().unwrap().monthly_micro_usd, 25_000_000);
    // The custom tier reads the namespace's annotations, as the enterprise tier always did.
    let acme = tenant("team-acme/acme");
    assert_eq!(acme.tier, "enterprise");
    assert_eq!(acme.limits.as_ref().unwrap().requests_per_minute, 100_000);
    // "gold" names no tier: the most restrictive configured one, and the status says so.
    let lost = tenant("team-lost/lost");
    assert_eq!(lost.tier, "starter");
    let key = dgidgi::render::ObjectKey::new("team-lost", "lost");
    let conditions = output
        .report
        .conditions(dgidgi::render::ResourceKind::LlmTenant, &key);
    let resolved = conditions
        .iter()
        .find(|c| c.type_ == "TierResolved")
        .unwrap();
    assert_eq!(resolved.status, "False");
    assert!(
        resolved
            .message
            .contains("\"gold\" names no configured tier"),
        "{}",
        resolved.message
    );
}

#[tokio::test]
async fn a_model_outside_the_tier_is_refused_by_name_and_not_listed() {
    let (upstream, log) = fake_providers::start().await;
    // Without the budget ceiling: the fakes' models have no price, which a budget refuses.
    let platform = PLATFORM.replace("monthlyBudgetUsd: \"25\", ", "");
    let gateway = InProcess::start(&yaml(upstream, &platform), Settings::default()).await;
    let key = gateway
        .output
        .access_keys
        .iter()
        .find(|k| k.tenant == "small")
        .unwrap()
        .value
        .to_string();
    let api = gateway.running.api;
    let chat = |model: &str| {
        json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}).to_string()
    };
    let before = log.lock().unwrap().len();
    let (status, _, body) = send(
        api,
        "POST",
        "/v1/chat/completions",
        Some(&key),
        Some(chat("anthropic/claude-fake")),
    )
    .await
    .unwrap();
    assert_eq!(status, 403, "{body}");
    let error: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(error["error"]["code"], "model_not_in_tier", "{body}");
    assert!(body.contains("the starter tier may not use"), "{body}");
    assert_eq!(log.lock().unwrap().len(), before, "no provider was called");
    let (status, _, body) = send(
        api,
        "POST",
        "/v1/chat/completions",
        Some(&key),
        Some(chat("openai-fake/gpt-fake")),
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{body}");
    let (status, _, body) = send(api, "GET", "/v1/models", Some(&key), None)
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("gpt-fake"), "{body}");
    assert!(!body.contains("claude-fake"), "{body}");
    gateway.running.shutdown().await;
}

#[tokio::test]
async fn an_invalid_configuration_is_reported_whole_and_changes_no_tier() {
    let (upstream, _log) = fake_providers::start().await;
    let broken = PLATFORM
        .replace("concurrent: 4", "concurrent: 0")
        .replace("defaultTier: starter", "defaultTier: platinum");
    let output = common::render_yaml(&yaml(upstream, &broken));
    let problem = output.platform_problem.expect("refused");
    let text = problem.to_string();
    assert!(text.contains("concurrent must be at least 1"), "{text}");
    assert!(text.contains("\"platinum\""), "{text}");
    // The context's tiers (the last good ones; here the defaults) decided.
    let small = output
        .config
        .tenants
        .iter()
        .find(|t| t.id == "team-small/small")
        .unwrap();
    assert_eq!(small.tier, "free");
    assert!(small.allowed_models.is_empty());
}

/// The platform-wide terms (issue #26: "the defaults of today's flags that are platform policy"):
/// the concurrency ceiling of unmetered namespaces without their own annotation, and the output
/// reservation of a request nothing bounds, which is also the limit written upstream. And a
/// `defaultTier` naming one of the built-in tiers is honoured without `tiers` (it was ignored).
#[tokio::test]
async fn platform_wide_terms_set_the_ceiling_and_the_unbounded_output_reservation() {
    let (upstream, log) = fake_providers::start().await;
    let platform = r#"---
apiVersion: v1
kind: ConfigMap
metadata: {name: dgidgi-platform, namespace: dgidgi-system}
data:
  platform.yaml: |
    defaultTier: pro
    concurrencyCeiling: 7
    unboundedOutputTokens: 2000
---
apiVersion: v1
kind: Namespace
metadata: {name: team-local, annotations: {llm.dgidgi.io/allowed-endpoints: 127.0.0.0/8}}
---
apiVersion: llm.dgidgi.io/v1alpha1
kind: LlmTenant
metadata: {name: local, namespace: team-local}
spec: {source: cli, cli: {endpoint: "http://127.0.0.1:11434", model: llama3}}
"#;
    let gateway = InProcess::start(&yaml(upstream, platform), Settings::default()).await;
    let output = &gateway.output;
    assert!(
        output.platform_problem.is_none(),
        "{:?}",
        output.platform_problem
    );
    assert_eq!(output.config.unbounded_output_tokens, Some(2000));
    let tenant = |id: &str| output.config.tenants.iter().find(|t| t.id == id).unwrap();
    assert_eq!(tenant("team-local/local").concurrency_ceiling, Some(7));
    assert_eq!(
        tenant("team-small/small").tier,
        "pro",
        "defaultTier without tiers"
    );
    // The fake's models list no maximum output: the configured reservation is written upstream.
    let key = output
        .access_keys
        .iter()
        .find(|k| k.tenant == "small")
        .unwrap()
        .value
        .to_string();
    let chat =
        json!({"model": "openai-fake/gpt-fake", "messages": [{"role": "user", "content": "hi"}]});
    let (status, _, body) = send(
        gateway.running.api,
        "POST",
        "/v1/chat/completions",
        Some(&key),
        Some(chat.to_string()),
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{body}");
    let seen = log.lock().unwrap().last().cloned().unwrap();
    assert_eq!(seen.body["max_tokens"], 2000, "{}", seen.body);
    gateway.running.shutdown().await;
}
