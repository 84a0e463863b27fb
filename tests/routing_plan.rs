//! The routing decision (DESIGN §2), on configs produced by render: weighted choice, fallback
//! order, capability filtering, narrowing without escalation, and the source boundary.

mod common;

use dgidgi::config::{CLI_PROVIDER, TenantConfig};
use dgidgi::crd::Source;
use dgidgi::render::RenderOutput;
use dgidgi::routing::plan::{Plan, RouteError, RouteRequest, plan};

const FLEET: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: dgidgi-system}
---
apiVersion: v1
kind: Namespace
metadata: {name: team-a, labels: {llm.dgidgi.io/tier: pro}}
---
apiVersion: v1
kind: Namespace
metadata: {name: team-b}
---
apiVersion: v1
kind: Namespace
metadata: {name: team-c, annotations: {llm.dgidgi.io/allowed-endpoints: "localhost"}}
---
apiVersion: v1
kind: Secret
metadata: {name: k, namespace: dgidgi-system}
stringData: {apiKey: sk-platform-0001}
---
apiVersion: llm.dgidgi.io/v1alpha1
kind: LlmProvider
metadata: {name: mock, namespace: dgidgi-system}
spec: {type: mock}
---
apiVersion: llm.dgidgi.io/v1alpha1
kind: LlmProvider
metadata: {name: openai, namespace: dgidgi-system}
spec: {type: openai, credentialsRef: {name: k}}
---
apiVersion: llm.dgidgi.io/v1alpha1
kind: LlmProvider
metadata: {name: perplexity, namespace: dgidgi-system}
spec: {type: perplexity, credentialsRef: {name: k}}
---
apiVersion: llm.dgidgi.io/v1alpha1
kind: LlmProvider
metadata: {name: openrouter, namespace: dgidgi-system}
spec: {type: openrouter, credentialsRef: {name: k}}
---
apiVersion: llm.dgidgi.io/v1alpha1
kind: RoutingPolicy
metadata: {name: default, namespace: dgidgi-system}
spec:
  priority: 10
  rules:
  - match: {model: "gpt-4o*"}
    targets:
    - {provider: openai, model: gpt-4o, weight: 80}
    - {provider: mock, model: mock-smart, weight: 20}
    fallback:
    - {provider: mock, model: mock-fast}
    retry: {attempts: 2, backoff: 100ms}
    timeout: 30s
---
apiVersion: llm.dgidgi.io/v1alpha1
kind: RoutingPolicy
metadata: {name: pro-only, namespace: dgidgi-system}
spec:
  priority: 20
  tenantSelector: {matchLabels: {llm.dgidgi.io/tier: pro}}
  rules:
  - match: {model: "fast"}
    targets: [{provider: mock, model: mock-fast}]
---
apiVersion: llm.dgidgi.io/v1alpha1
kind: LlmTenant
metadata: {name: a, namespace: team-a}
spec: {preferredProvider: mock, preferredModel: mock-smart}
---
apiVersion: v1
kind: Secret
metadata: {name: own, namespace: team-b}
stringData: {apiKey: sk-team-b-0002}
---
apiVersion: llm.dgidgi.io/v1alpha1
kind: LlmProvider
metadata: {name: mine, namespace: team-b}
spec: {type: openai, credentialsRef: {name: own}}
---
apiVersion: llm.dgidgi.io/v1alpha1
kind: RoutingPolicy
metadata: {name: own, namespace: team-b}
spec:
  rules:
  - match: {model: "claude-*"}
    targets: [{provider: mock, model: mock-smart}]
---
apiVersion: llm.dgidgi.io/v1alpha1
kind: LlmTenant
metadata: {name: strict, namespace: team-b}
spec: {source: tenant}
---
apiVersion: llm.dgidgi.io/v1alpha1
kind: LlmTenant
metadata: {name: lenient, namespace: team-b}
spec: {source: tenant, allowPlatformFallback: true}
---
apiVersion: llm.dgidgi.io/v1alpha1
kind: LlmTenant
metadata: {name: local, namespace: team-c}
spec: {source: cli, cli: {endpoint: "http://localhost:11434", model: llama3}}
"#;

fn fleet() -> RenderOutput {
    common::render_yaml(FLEET)
}

/// The fleet without OpenRouter, whose open catalog would serve any model name.
fn closed_fleet() -> RenderOutput {
    common::render_yaml(&FLEET.replace(
        "name: openrouter, namespace: dgidgi-system",
        "name: openrouter, namespace: team-z",
    ))
}

fn tenant<'a>(out: &'a RenderOutput, id: &str) -> &'a TenantConfig {
    out.config.tenants.iter().find(|t| t.id == id).unwrap()
}

fn request(model: &str) -> RouteRequest<'_> {
    RouteRequest {
        model: Some(model),
        ..RouteRequest::default()
    }
}

fn route<'a>(plan: &Plan<'a>) -> Vec<(String, String, bool)> {
    plan.attempts
        .iter()
        .map(|a| {
            // A cli endpoint is a provider named `cli`: shown by where it points.
            let target = match (&a.provider.base_url, a.provider.id == CLI_PROVIDER) {
                (Some(endpoint), true) => endpoint.clone(),
                _ => a.provider.name.clone(),
            };
            (target, a.model.clone(), a.fallback)
        })
        .collect()
}

#[test]
fn weighted_choice_follows_the_weights() {
    let out = fleet();
    let a = tenant(&out, "team-a/a");
    let mut openai_first = 0;
    for pick in 0..1_000u64 {
        let planned = plan(&out.config, a, &request("gpt-4o"), pick).unwrap();
        if route(&planned)[0].0 == "openai" {
            openai_first += 1;
        }
    }
    assert_eq!(openai_first, 800, "80/20 weights over a uniform pick");
}

#[test]
fn targets_then_fallback_chain_then_the_preferred_model() {
    let out = fleet();
    let a = tenant(&out, "team-a/a");
    let planned = plan(&out.config, a, &request("gpt-4o-mini"), 0).unwrap();
    assert_eq!(planned.source, Source::Platform);
    assert_eq!(
        route(&planned),
        vec![
            ("openai".into(), "gpt-4o".into(), false),
            ("mock".into(), "mock-smart".into(), false),
            ("mock".into(), "mock-fast".into(), true),
        ],
        "the preferred mock/mock-smart is already in the plan and not repeated"
    );
    assert_eq!(planned.retry.attempts, 2);
    assert_eq!(planned.retry.backoff_ms, 100);
    assert_eq!(planned.timeout_ms, Some(30_000));
    assert_eq!(planned.requested_model, "gpt-4o-mini");
}

#[test]
fn without_a_rule_every_serving_provider_is_tried_preferred_first() {
    let out = fleet();
    let a = tenant(&out, "team-a/a");
    let planned = plan(&out.config, a, &request("mock-fast"), 0).unwrap();
    assert_eq!(
        route(&planned)[0],
        ("mock".into(), "mock-fast".into(), false)
    );
    // Open catalogs (OpenRouter) serve any model name.
    let planned = plan(
        &out.config,
        a,
        &request("meta-llama/llama-3.3-70b-instruct"),
        0,
    )
    .unwrap();
    assert_eq!(route(&planned)[0].0, "openrouter");
    // Aliases work.
    assert!(plan_ok(&out, "team-a/a", "mock"));
}

fn plan_ok(out: &RenderOutput, tenant_id: &str, model: &str) -> bool {
    plan(&out.config, tenant(out, tenant_id), &request(model), 0).is_ok()
}

#[test]
fn no_model_uses_the_preferred_one_and_unknown_models_are_errors() {
    let out = fleet();
    let a = tenant(&out, "team-a/a");
    let planned = plan(&out.config, a, &RouteRequest::default(), 0).unwrap();
    assert_eq!(planned.requested_model, "mock-smart");
    let strict = tenant(&out, "team-b/strict");
    assert_eq!(
        super_plan(&out, strict, RouteRequest::default()),
        Err(RouteError::NoModel)
    );
    // mock-fast is only served by the platform; the strict tenant cannot see it.
    assert_eq!(
        super_plan(&out, strict, request("mock-fast")),
        Err(RouteError::UnknownModel("mock-fast".into()))
    );
}

fn super_plan(
    out: &RenderOutput,
    tenant: &TenantConfig,
    request: RouteRequest<'_>,
) -> Result<Vec<(String, String, bool)>, RouteError> {
    plan(&out.config, tenant, &request, 0).map(|p| route(&p))
}

#[test]
fn capability_filtering_drops_targets_that_cannot_serve_the_request() {
    let out = closed_fleet();
    // Perplexity's sonar has no function calling: skipped; tenant a's preferred model serves.
    let with_tools = RouteRequest {
        model: Some("sonar"),
        tools: true,
        embeddings: false,
        ..RouteRequest::default()
    };
    let a = tenant(&out, "team-a/a");
    assert_eq!(
        super_plan(&out, a, with_tools),
        Ok(vec![("mock".into(), "mock-smart".into(), true)])
    );
    assert_eq!(
        super_plan(&out, a, request("sonar")).unwrap()[0],
        ("perplexity".into(), "sonar".into(), false)
    );
    // Without a preferred model there is nothing left: a clear error.
    let lenient = tenant(&out, "team-b/lenient");
    assert_eq!(
        super_plan(&out, lenient, with_tools),
        Err(RouteError::MissingCapability {
            model: "sonar".into(),
            capability: "tools"
        })
    );
}

#[test]
fn narrowing_restricts_and_never_escalates() {
    let out = fleet();
    let a = tenant(&out, "team-a/a");
    // A header narrows a rule's targets to that provider.
    let narrowed = RouteRequest {
        model: Some("gpt-4o"),
        provider: Some("mock"),
        ..RouteRequest::default()
    };
    let attempts = super_plan(&out, a, narrowed).unwrap();
    assert!(attempts.iter().all(|(p, _, _)| p == "mock"), "{attempts:?}");
    // `provider/model` narrows too when the prefix is a visible provider.
    let attempts = super_plan(&out, a, request("openai/gpt-4o-mini")).unwrap();
    assert_eq!(attempts[0], ("openai".into(), "gpt-4o".into(), false));
    assert!(attempts.iter().all(|(p, _, _)| p == "openai"));
    // Otherwise the slash is part of the model name (OpenRouter ids).
    let attempts = super_plan(&out, a, request("anthropic/claude-sonnet-4")).unwrap();
    assert_eq!(
        attempts[0],
        (
            "openrouter".into(),
            "anthropic/claude-sonnet-4".into(),
            false
        )
    );
    // Naming a provider the tenant may not use is refused, not ignored.
    let escalate = RouteRequest {
        model: Some("gpt-4o"),
        provider: Some("mine"),
        ..RouteRequest::default()
    };
    assert_eq!(
        super_plan(&out, a, escalate),
        Err(RouteError::ProviderNotAllowed("mine".into()))
    );
    let strict = tenant(&out, "team-b/strict");
    let escalate = RouteRequest {
        model: Some("gpt-4o"),
        provider: Some("openai"),
        ..RouteRequest::default()
    };
    assert_eq!(
        super_plan(&out, strict, escalate),
        Err(RouteError::ProviderNotAllowed("openai".into()))
    );
}

#[test]
fn the_source_boundary_is_never_crossed_without_platform_fallback() {
    let out = fleet();
    let strict = tenant(&out, "team-b/strict");
    // Its own policy targets a platform provider: filtered out, the tenant's own key only.
    assert_eq!(
        super_plan(&out, strict, request("claude-sonnet-4")),
        Err(RouteError::UnknownModel("claude-sonnet-4".into()))
    );
    let planned = plan(&out.config, strict, &request("gpt-4o"), 0).unwrap();
    assert_eq!(planned.source, Source::Tenant);
    // The platform gpt-4o* rule names platform providers: none survive; its own provider
    // serves gpt-4o directly instead.
    assert_eq!(
        route(&planned),
        vec![("mine".into(), "gpt-4o".into(), false)]
    );

    let lenient = tenant(&out, "team-b/lenient");
    let planned = plan(&out.config, lenient, &request("mock-fast"), 0).unwrap();
    assert_eq!(
        planned.source,
        Source::Platform,
        "platform-served, so platform-metered"
    );
    let planned = dgidgi::routing::plan::plan(&out.config, lenient, &request("gpt-4o"), 0).unwrap();
    assert_eq!(planned.source, Source::Tenant, "own provider first");
}

#[test]
fn rules_apply_only_to_the_namespaces_they_select() {
    let out = closed_fleet();
    let a = tenant(&out, "team-a/a");
    assert_eq!(
        super_plan(&out, a, request("fast")).unwrap()[0],
        ("mock".into(), "mock-fast".into(), false)
    );
    let lenient = tenant(&out, "team-b/lenient");
    assert_eq!(
        super_plan(&out, lenient, request("fast")),
        Err(RouteError::UnknownModel("fast".into()))
    );
}

#[test]
fn cli_tenants_go_to_their_endpoint_only() {
    let out = fleet();
    let local = tenant(&out, "team-c/local");
    let planned = plan(&out.config, local, &RouteRequest::default(), 0).unwrap();
    assert_eq!(planned.source, Source::Cli);
    assert_eq!(
        route(&planned),
        vec![("http://localhost:11434".into(), "llama3".into(), false)]
    );
    let narrowed = RouteRequest {
        model: Some("llama3"),
        provider: Some("openai"),
        ..RouteRequest::default()
    };
    assert_eq!(
        super_plan(&out, local, narrowed),
        Err(RouteError::ProviderNotAllowed("openai".into()))
    );
}

#[test]
fn unhealthy_providers_move_behind_healthy_ones_but_stay() {
    let out = fleet();
    let a = tenant(&out, "team-a/a");
    let mut planned = plan(&out.config, a, &request("gpt-4o"), 0).unwrap();
    assert_eq!(route(&planned)[0].0, "openai");
    dgidgi::routing::plan::prefer_healthy(&mut planned.attempts, |id| id == "dgidgi-system/openai");
    let order: Vec<String> = route(&planned)
        .into_iter()
        .map(|(p, m, _)| format!("{p}/{m}"))
        .collect();
    assert_eq!(
        order,
        vec!["mock/mock-smart", "mock/mock-fast", "openai/gpt-4o"]
    );
}
