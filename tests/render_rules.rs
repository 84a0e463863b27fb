//! One test (or more) per render rule: tiers, clamping, sources, provider resolution, each
//! security refusal, endpoint checks, policy compilation, and bad input.

mod common;

use common::{MOCK_PROVIDER, PLATFORM_NS, condition, expect_condition, ready, render_yaml};
use dgidgi::config::{Scope, TenantConfig};
use dgidgi::crd::Source;

fn ns(name: &str, labels: &str, annotations: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n  labels: {{{labels}}}\n  annotations: {{{annotations}}}\n---\n"
    )
}

fn tenant(namespace: &str, name: &str, spec: &str) -> String {
    format!(
        "apiVersion: llm.dgidgi.io/v1alpha1\nkind: LlmTenant\nmetadata: {{name: {name}, namespace: {namespace}}}\nspec: {spec}\n---\n"
    )
}

fn provider(namespace: &str, name: &str, spec: &str) -> String {
    format!(
        "apiVersion: llm.dgidgi.io/v1alpha1\nkind: LlmProvider\nmetadata: {{name: {name}, namespace: {namespace}}}\nspec: {spec}\n---\n"
    )
}

fn secret(namespace: &str, name: &str, key: &str, value: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: {namespace}}}\nstringData: {{{key}: {value}}}\n---\n"
    )
}

fn policy(namespace: &str, name: &str, spec: &str) -> String {
    format!(
        "apiVersion: llm.dgidgi.io/v1alpha1\nkind: RoutingPolicy\nmetadata: {{name: {name}, namespace: {namespace}}}\nspec: {spec}\n---\n"
    )
}

fn base() -> String {
    format!("{PLATFORM_NS}---\n{MOCK_PROVIDER}---\n")
}

fn tenant_config<'a>(output: &'a dgidgi::render::RenderOutput, id: &str) -> &'a TenantConfig {
    output
        .config
        .tenants
        .iter()
        .find(|t| t.id == id)
        .unwrap_or_else(|| panic!("tenant {id} missing from config"))
}

// ---- tiers and limits -------------------------------------------------------------------

#[test]
fn tier_defaults_to_free_and_follows_the_namespace_label() {
    let yaml = format!(
        "{}{}{}{}{}",
        base(),
        ns("a", "", ""),
        ns("b", "llm.dgidgi.io/tier: team", ""),
        tenant("a", "t", "{}"),
        tenant("b", "t", "{}")
    );
    let out = render_yaml(&yaml);
    let a = tenant_config(&out, "a/t");
    assert_eq!(a.tier, "free");
    let limits = a.limits.as_ref().unwrap();
    assert_eq!(
        (
            limits.requests_per_minute,
            limits.tokens_per_day,
            limits.concurrent
        ),
        (10, 50_000, 2)
    );
    let b = tenant_config(&out, "b/t");
    assert_eq!(b.tier, "team");
    assert_eq!(b.limits.as_ref().unwrap().requests_per_minute, 200);
    let status = &out
        .report
        .tenants
        .iter()
        .find(|e| e.namespace == "b")
        .unwrap()
        .status;
    assert_eq!(status.tier.as_deref(), Some("team"));
    assert_eq!(status.effective_limits.as_ref().unwrap().concurrent, 50);
}

#[test]
fn a_tenant_cannot_pick_its_own_tier() {
    // The tier lives on the namespace; an LlmTenant has no tier field, and a label on the CR
    // itself changes nothing.
    let yaml = format!(
        "{}{}apiVersion: llm.dgidgi.io/v1alpha1\nkind: LlmTenant\nmetadata: {{name: t, namespace: a, labels: {{llm.dgidgi.io/tier: enterprise}}}}\nspec: {{tier: enterprise}}\n",
        base(),
        ns("a", "", "")
    );
    let out = render_yaml(&yaml);
    // A `tier` in the spec is an unknown field: the tenant is refused, not upgraded.
    let message = expect_condition(
        &out,
        ("LlmTenant", "a", "t"),
        "Ready",
        "False",
        "InvalidSpec",
    );
    assert!(message.contains("spec.tier"), "{message}");
    // A label on the CR itself changes nothing.
    let labelled = format!(
        "{}{}apiVersion: llm.dgidgi.io/v1alpha1\nkind: LlmTenant\nmetadata: {{name: t, namespace: a, labels: {{llm.dgidgi.io/tier: enterprise}}}}\nspec: {{}}\n",
        base(),
        ns("a", "", "")
    );
    assert_eq!(tenant_config(&render_yaml(&labelled), "a/t").tier, "free");
}

#[test]
fn enterprise_numbers_come_from_namespace_annotations() {
    let yaml = format!(
        "{}{}{}",
        base(),
        ns(
            "big",
            "llm.dgidgi.io/tier: enterprise",
            "llm.dgidgi.io/requests-per-minute: '5000', llm.dgidgi.io/tokens-per-day: '90000000', llm.dgidgi.io/concurrent: '300'"
        ),
        tenant("big", "t", "{}")
    );
    let out = render_yaml(&yaml);
    let limits = tenant_config(&out, "big/t").limits.clone().unwrap();
    assert_eq!(
        (
            limits.requests_per_minute,
            limits.tokens_per_day,
            limits.concurrent
        ),
        (5_000, 90_000_000, 300)
    );
}

#[test]
fn unknown_tier_label_is_reported_and_falls_back_to_free() {
    let yaml = format!(
        "{}{}{}",
        base(),
        ns("a", "llm.dgidgi.io/tier: platinum", ""),
        tenant("a", "t", "{}")
    );
    let out = render_yaml(&yaml);
    assert_eq!(tenant_config(&out, "a/t").tier, "free");
    let message = expect_condition(
        &out,
        ("LlmTenant", "a", "t"),
        "TierResolved",
        "False",
        "InvalidTierSettings",
    );
    assert!(message.contains("platinum"));
}

#[test]
fn looser_limits_are_clamped_and_the_status_says_so() {
    let yaml = format!(
        "{}{}{}",
        base(),
        ns("a", "llm.dgidgi.io/tier: pro", ""),
        tenant(
            "a",
            "t",
            "{limits: {requestsPerMinute: 1000, tokensPerDay: 1000, concurrent: 50}}"
        )
    );
    let out = render_yaml(&yaml);
    let limits = tenant_config(&out, "a/t").limits.clone().unwrap();
    assert_eq!(
        (
            limits.requests_per_minute,
            limits.tokens_per_day,
            limits.concurrent
        ),
        (60, 1_000, 10)
    );
    let message = expect_condition(
        &out,
        ("LlmTenant", "a", "t"),
        "LimitsClamped",
        "True",
        "Clamped",
    );
    assert!(
        message.contains("requestsPerMinute 1000 > tier 60"),
        "{message}"
    );
    assert!(message.contains("concurrent 50 > tier 10"), "{message}");
    assert_eq!(ready(&out, "LlmTenant", "a", "t").0, "True");
}

#[test]
fn tighter_limits_win() {
    let yaml = format!(
        "{}{}{}",
        base(),
        ns("a", "llm.dgidgi.io/tier: team", ""),
        tenant("a", "t", "{limits: {requestsPerMinute: 5}}")
    );
    let out = render_yaml(&yaml);
    assert_eq!(
        tenant_config(&out, "a/t")
            .limits
            .as_ref()
            .unwrap()
            .requests_per_minute,
        5
    );
    assert_eq!(
        condition(&out, "LlmTenant", "a", "t", "LimitsClamped").1,
        "WithinTier"
    );
}

// ---- sources and providers --------------------------------------------------------------

#[test]
fn platform_source_uses_platform_providers_and_metering() {
    let yaml = format!(
        "{}{}{}",
        base(),
        ns("a", "", ""),
        tenant(
            "a",
            "t",
            "{preferredProvider: mock, preferredModel: mock-fast}"
        )
    );
    let out = render_yaml(&yaml);
    let t = tenant_config(&out, "a/t");
    assert_eq!(t.source, Source::Platform);
    assert_eq!(t.preferred_provider.as_deref(), Some("dgidgi-system/mock"));
    assert!(t.providers.is_empty());
    assert!(t.limits.is_some());
}

#[test]
fn tenant_source_uses_only_its_own_providers_and_gets_no_platform_limits() {
    let yaml = format!(
        "{}{}{}{}{}{}",
        base(),
        ns("a", "llm.dgidgi.io/tier: pro", ""),
        secret("a", "key", "apiKey", "sk-tenant-a-secret-0001"),
        provider("a", "mine", "{type: openai, credentialsRef: {name: key}}"),
        provider("b", "theirs", "{type: openai, credentialsRef: {name: key}}"),
        tenant("a", "t", "{source: tenant, preferredProvider: mine}")
    );
    let out = render_yaml(&yaml);
    let t = tenant_config(&out, "a/t");
    assert_eq!(t.source, Source::Tenant);
    assert_eq!(t.providers, vec!["a/mine"]);
    assert_eq!(t.preferred_provider.as_deref(), Some("a/mine"));
    assert!(
        t.limits.is_none(),
        "no platform limits for the tenant source"
    );
    let status = &out.report.tenants[0].status;
    assert!(status.effective_limits.is_none());
    assert_eq!(ready(&out, "LlmTenant", "a", "t").0, "True");
    let mine = out
        .config
        .providers
        .iter()
        .find(|p| p.id == "a/mine")
        .unwrap();
    assert_eq!(mine.scope, Scope::Tenant);
}

#[test]
fn tenant_source_without_ready_providers_fails_unless_platform_fallback_is_allowed() {
    let strict = format!(
        "{}{}{}",
        base(),
        ns("a", "", ""),
        tenant("a", "t", "{source: tenant}")
    );
    let out = render_yaml(&strict);
    assert_eq!(ready(&out, "LlmTenant", "a", "t").1, "NoReadyProviders");
    assert!(tenant_config(&out, "a/t").providers.is_empty());

    let with_fallback = format!(
        "{}{}{}",
        base(),
        ns("a", "", ""),
        tenant("a", "t", "{source: tenant, allowPlatformFallback: true}")
    );
    let out = render_yaml(&with_fallback);
    assert_eq!(ready(&out, "LlmTenant", "a", "t").0, "True");
    assert_eq!(
        condition(&out, "LlmTenant", "a", "t", "ProvidersResolved").1,
        "PlatformFallback"
    );
    let t = tenant_config(&out, "a/t");
    assert!(t.allow_platform_fallback);
    assert!(
        t.limits.is_some(),
        "platform-served traffic keeps the tier limits"
    );
}

#[test]
fn a_listed_provider_that_does_not_exist_is_named_in_the_status() {
    let yaml = format!(
        "{}{}{}",
        base(),
        ns("a", "", ""),
        tenant("a", "t", "{source: tenant, providers: [{name: ghost}]}")
    );
    let out = render_yaml(&yaml);
    let message = expect_condition(
        &out,
        ("LlmTenant", "a", "t"),
        "ProvidersResolved",
        "False",
        "ProviderNotReady",
    );
    assert!(
        message.contains("\"ghost\" not found in namespace \"a\""),
        "{message}"
    );
}

#[test]
fn tenant_cannot_name_another_namespaces_provider() {
    let yaml = format!(
        "{}{}{}{}{}",
        base(),
        ns("a", "", ""),
        secret("b", "key", "apiKey", "sk-tenant-b-secret-0002"),
        provider("b", "theirs", "{type: openai, credentialsRef: {name: key}}"),
        tenant(
            "a",
            "t",
            "{source: tenant, providers: [{name: theirs}], preferredProvider: theirs}"
        )
    );
    let out = render_yaml(&yaml);
    let t = tenant_config(&out, "a/t");
    assert!(t.providers.is_empty());
    assert!(t.preferred_provider.is_none());
    assert_eq!(ready(&out, "LlmTenant", "a", "t").1, "NoReadyProviders");
}

#[test]
fn preferred_provider_must_be_usable_by_the_tenant() {
    let yaml = format!(
        "{}{}{}",
        base(),
        ns("a", "", ""),
        tenant("a", "t", "{preferredProvider: nope}")
    );
    let out = render_yaml(&yaml);
    expect_condition(
        &out,
        ("LlmTenant", "a", "t"),
        "ProvidersResolved",
        "False",
        "PreferredProviderNotFound",
    );
    assert_eq!(ready(&out, "LlmTenant", "a", "t").0, "True");
}

#[test]
fn cli_source_gets_its_endpoint_when_the_namespace_allows_it() {
    let yaml = format!(
        "{}{}{}{}{}",
        base(),
        ns(
            "open",
            "",
            "llm.dgidgi.io/allowed-endpoints: '127.0.0.1/32,localhost'"
        ),
        ns("closed", "", ""),
        tenant(
            "open",
            "t",
            "{source: cli, cli: {endpoint: 'http://localhost:11434/', model: llama3}}"
        ),
        tenant(
            "closed",
            "t",
            "{source: cli, cli: {endpoint: 'http://127.0.0.1:11434', model: llama3}}"
        )
    );
    let out = render_yaml(&yaml);
    let open = tenant_config(&out, "open/t");
    let cli = open.cli.as_ref().unwrap();
    assert_eq!(cli.endpoint, "http://localhost:11434");
    assert_eq!(cli.model.as_deref(), Some("llama3"));
    assert!(open.limits.is_none());
    assert_eq!(open.allowed_endpoints, vec!["127.0.0.1/32", "localhost"]);

    let closed = tenant_config(&out, "closed/t");
    assert!(
        closed.cli.is_none(),
        "a refused endpoint never reaches the config"
    );
    let message = expect_condition(
        &out,
        ("LlmTenant", "closed", "t"),
        "Ready",
        "False",
        "EndpointNotAllowed",
    );
    assert!(message.contains("llm.dgidgi.io/allowed-endpoints"));
}

#[test]
fn tenant_provider_endpoints_are_checked_but_platform_ones_are_trusted() {
    let yaml = format!(
        "{}{}{}{}{}{}",
        base(),
        ns("a", "", ""),
        provider(
            "dgidgi-system",
            "local",
            "{type: ollama, baseUrl: 'http://10.0.0.7:11434'}"
        ),
        provider(
            "a",
            "metadata",
            "{type: openai-compatible, baseUrl: 'http://169.254.169.254/latest', credentialsRef: {name: k}}"
        ),
        secret("a", "k", "apiKey", "sk-a-metadata-0003"),
        provider("a", "ollama", "{type: ollama}")
    );
    let out = render_yaml(&yaml);
    assert_eq!(
        ready(&out, "LlmProvider", "dgidgi-system", "local").0,
        "True"
    );
    assert_eq!(
        ready(&out, "LlmProvider", "a", "metadata").1,
        "EndpointNotAllowed"
    );
    // The default Ollama URL is localhost: refused in a tenant namespace without the annotation.
    assert_eq!(
        ready(&out, "LlmProvider", "a", "ollama").1,
        "EndpointNotAllowed"
    );
    assert!(!out.config.providers.iter().any(|p| p.namespace == "a"));
    assert!(!out.key_store.rows.iter().any(|r| r.tenant_id == "a"));
}

#[test]
fn tenant_in_the_platform_namespace_is_refused() {
    let yaml = format!("{}{}", base(), tenant("dgidgi-system", "sneaky", "{}"));
    let out = render_yaml(&yaml);
    assert_eq!(
        ready(&out, "LlmTenant", "dgidgi-system", "sneaky").1,
        "TenantInPlatformNamespace"
    );
    assert!(out.config.tenants.is_empty());
    assert!(out.access_keys.is_empty());
}

// ---- secrets and references -------------------------------------------------------------

#[test]
fn a_tenant_provider_naming_a_platform_only_secret_is_refused_and_nothing_leaks() {
    let platform_key = "sk-platform-only-never-leak-7f3a9";
    let yaml = format!(
        "{}{}{}{}{}",
        base(),
        ns("a", "", ""),
        secret("dgidgi-system", "openai-api-key", "apiKey", platform_key),
        provider(
            "a",
            "stolen",
            "{type: openai, credentialsRef: {name: openai-api-key, key: apiKey}}"
        ),
        tenant("a", "t", "{source: tenant, allowPlatformFallback: false}")
    );
    let out = render_yaml(&yaml);
    let message = expect_condition(
        &out,
        ("LlmProvider", "a", "stolen"),
        "Ready",
        "False",
        "SecretNotFound",
    );
    assert!(message.contains("never leave their namespace"));
    assert!(!out.config.providers.iter().any(|p| p.id == "a/stolen"));
    assert!(
        out.key_store.rows.is_empty(),
        "the platform Secret was not stored for the tenant"
    );
    // Not even a ciphertext of it: nothing was sealed at all.
    let everything = common::all_output_text(&out);
    assert!(!everything.contains(platform_key));
}

#[test]
fn a_credentials_ref_naming_another_namespace_is_refused() {
    let yaml = format!(
        "{}{}{}{}",
        base(),
        ns("a", "", ""),
        secret(
            "dgidgi-system",
            "openai-api-key",
            "apiKey",
            "sk-platform-0004"
        ),
        provider(
            "a",
            "sneaky",
            "{type: openai, credentialsRef: {name: openai-api-key, namespace: dgidgi-system}}"
        )
    );
    let out = render_yaml(&yaml);
    // `namespace` is not a field of credentialsRef: refused like kubectl's strict validation.
    let message = expect_condition(
        &out,
        ("LlmProvider", "a", "sneaky"),
        "Ready",
        "False",
        "InvalidSpec",
    );
    assert!(
        message.contains("unknown field(s) spec.credentialsRef.namespace"),
        "{message}"
    );
    assert!(out.key_store.rows.is_empty());
}

#[test]
fn missing_secret_key_and_empty_values_are_conditions_not_crashes() {
    let yaml = format!(
        "{}{}{}{}{}{}",
        base(),
        secret("dgidgi-system", "s1", "other", "x"),
        provider(
            "dgidgi-system",
            "no-key",
            "{type: openai, credentialsRef: {name: s1, key: apiKey}}"
        ),
        secret("dgidgi-system", "s2", "apiKey", "'  '"),
        provider(
            "dgidgi-system",
            "empty",
            "{type: openai, credentialsRef: {name: s2}}"
        ),
        "apiVersion: v1\nkind: Secret\nmetadata: {name: s3, namespace: dgidgi-system}\ndata: {apiKey: '!!notbase64'}\n---\n"
    ) + &provider(
        "dgidgi-system",
        "garbled",
        "{type: openai, credentialsRef: {name: s3}}",
    );
    let out = render_yaml(&yaml);
    assert_eq!(
        ready(&out, "LlmProvider", "dgidgi-system", "no-key").1,
        "SecretKeyNotFound"
    );
    assert_eq!(
        ready(&out, "LlmProvider", "dgidgi-system", "empty").1,
        "SecretValueEmpty"
    );
    assert_eq!(
        ready(&out, "LlmProvider", "dgidgi-system", "garbled").1,
        "SecretKeyInvalid"
    );
    assert_eq!(
        ready(&out, "LlmProvider", "dgidgi-system", "mock").0,
        "True"
    );
}

#[test]
fn secret_data_is_base64_and_string_data_wins() {
    // data: apiKey = "from-data"; stringData overrides it.
    let yaml = format!(
        "{}apiVersion: v1\nkind: Secret\nmetadata: {{name: s, namespace: dgidgi-system}}\ndata: {{apiKey: ZnJvbS1kYXRh, other: ZnJvbS1kYXRh}}\nstringData: {{apiKey: from-string-data}}\n---\n{}",
        base(),
        provider(
            "dgidgi-system",
            "p",
            "{type: openai, credentialsRef: {name: s}}"
        )
    );
    let mut loader = dgidgi::render::InputLoader::new("dgidgi-system").unwrap();
    loader.add_yaml("t.yaml", &yaml).unwrap();
    let input = loader.finish();
    let secret = &input.secrets[&dgidgi::render::ObjectKey::new("dgidgi-system", "s")];
    assert_eq!(secret.data["apiKey"].as_slice(), b"from-string-data");
    assert_eq!(secret.data["other"].as_slice(), b"from-data");
    assert!(
        !format!("{secret:?}").contains("from-"),
        "Debug shows key names only"
    );
}

#[test]
fn provider_keys_are_sealed_per_row_and_trimmed() {
    let yaml = format!(
        "{}{}{}",
        base(),
        "apiVersion: v1\nkind: Secret\nmetadata: {name: s, namespace: dgidgi-system}\ndata: {apiKey: c2stcGxhdGZvcm0tdHJpbW1lZAo=}\n---\n",
        provider(
            "dgidgi-system",
            "openai",
            "{type: openai, credentialsRef: {name: s}}"
        )
    );
    let out = render_yaml(&yaml);
    let row = out.key_store.get("dgidgi-system/openai").unwrap();
    assert_eq!(row.tenant_id, "dgidgi-system");
    assert_eq!(row.provider, "openai");
    let plain =
        dgidgi::crypto::keystore::open(&out.key_ring, row.into(), &row.encrypted_value).unwrap();
    assert_eq!(
        plain.api_key().unwrap(),
        b"sk-platform-trimmed",
        "the trailing newline of `echo | base64` is dropped"
    );
    let p = out
        .config
        .providers
        .iter()
        .find(|p| p.id == "dgidgi-system/openai")
        .unwrap();
    assert_eq!(p.credential.as_deref(), Some("dgidgi-system/openai"));
}

// ---- access keys ------------------------------------------------------------------------

#[test]
fn access_keys_are_generated_hashed_and_kept_when_given_back() {
    let yaml = format!(
        "{}{}{}",
        base(),
        ns("a", "", ""),
        tenant("a", "acme", "{accessKeys: [{name: default}, {name: ci}]}")
    );
    let first = render_yaml(&yaml);
    assert_eq!(first.access_keys.len(), 2);
    let names: Vec<_> = first
        .access_keys
        .iter()
        .map(|k| k.key.name.as_str())
        .collect();
    assert_eq!(names, vec!["acme-llm-access-ci", "acme-llm-access-default"]);
    let t = tenant_config(&first, "a/acme");
    for (hash, secret) in t
        .access_keys
        .iter()
        .zip(["acme-llm-access-default", "acme-llm-access-ci"])
    {
        let key = first
            .access_keys
            .iter()
            .find(|k| k.key.name == secret)
            .unwrap();
        assert_eq!(
            hash.sha256,
            dgidgi::crypto::access_key::hash(key.value.as_bytes())
        );
        assert!(key.value.starts_with("dgk_"));
    }
    // Give the Secrets back: same keys, other seed.
    let given: String = first
        .access_keys
        .iter()
        .map(|k| secret("a", &k.key.name, "accessKey", &k.value))
        .collect();
    let second = common::render_texts(&[("in.yaml", &yaml), ("given.yaml", &given)], 999);
    assert_eq!(tenant_config(&second, "a/acme").access_keys, t.access_keys);
}

#[test]
fn a_short_access_key_given_by_a_tenant_is_refused() {
    let yaml = format!(
        "{}{}{}{}",
        base(),
        ns("a", "", ""),
        tenant("a", "acme", "{}"),
        secret("a", "acme-llm-access-default", "accessKey", "password1")
    );
    let out = render_yaml(&yaml);
    let message = expect_condition(
        &out,
        ("LlmTenant", "a", "acme"),
        "Ready",
        "False",
        "AccessKeyRejected",
    );
    assert!(!message.contains("password1"));
    assert!(tenant_config(&out, "a/acme").access_keys.is_empty());
}

#[test]
fn budgets_become_integer_micro_usd() {
    let yaml = format!(
        "{}{}{}",
        base(),
        ns("a", "", ""),
        tenant(
            "a",
            "t",
            "{budget: {monthlyUsd: 0.05, alertThresholds: [100, 50, 50]}}"
        )
    );
    let out = render_yaml(&yaml);
    let budget = tenant_config(&out, "a/t").budget.clone().unwrap();
    assert_eq!(budget.monthly_micro_usd, 50_000);
    assert_eq!(budget.alert_thresholds, vec![50, 100]);
    assert_eq!(budget.action, dgidgi::crd::tenant::BudgetAction::Block);
}

// ---- invalid resources (schema and CEL, as the API server would refuse them) -------------

#[test]
fn invalid_resources_are_reported_and_left_out_while_the_rest_renders() {
    let cases = [
        (
            "LlmTenant",
            "cli-no-endpoint",
            tenant("a", "cli-no-endpoint", "{source: cli}"),
            "source cli requires cli.endpoint",
        ),
        (
            "LlmTenant",
            "bad-source",
            tenant("a", "bad-source", "{source: everywhere}"),
            "spec.source",
        ),
        (
            "LlmTenant",
            "bad-threshold",
            tenant(
                "a",
                "bad-threshold",
                "{budget: {monthlyUsd: 5, alertThresholds: [0, 150]}}",
            ),
            "between 1 and 100",
        ),
        (
            "LlmTenant",
            "bad-url",
            tenant("a", "bad-url", "{source: cli, cli: {endpoint: 'ftp://x'}}"),
            "absolute http or https URL",
        ),
        (
            "LlmTenant",
            "bad-key-name",
            tenant(
                "a",
                "bad-key-name",
                "{accessKeys: [{name: default}, {name: CI_Key}]}",
            ),
            "spec.accessKeys[1].name should match '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$'",
        ),
        (
            "LlmTenant",
            "long-key-name",
            tenant(
                "a",
                "long-key-name",
                &format!("{{accessKeys: [{{name: {}}}]}}", "k".repeat(64)),
            ),
            "spec.accessKeys[0].name: Too long: may not be more than 63 characters",
        ),
        (
            "LlmTenant",
            "too-many-keys",
            tenant(
                "a",
                "too-many-keys",
                &format!(
                    "{{accessKeys: [{}]}}",
                    (0..17)
                        .map(|i| format!("{{name: k{i}}}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ),
            "spec.accessKeys: Too many: 17 (must have at most 16 items)",
        ),
        (
            "LlmProvider",
            "no-creds",
            provider("a", "no-creds", "{type: openai}"),
            "credentialsRef is required",
        ),
        (
            "LlmProvider",
            "bad-type",
            provider("a", "bad-type", "{type: skynet}"),
            "spec.type",
        ),
        (
            "LlmProvider",
            "bad-timeout",
            provider(
                "a",
                "bad-timeout",
                "{type: mock, timeouts: {connect: 5 seconds}}",
            ),
            "connect must be a non-zero duration",
        ),
        (
            "LlmProvider",
            "compat-no-url",
            provider(
                "a",
                "compat-no-url",
                "{type: openai-compatible, credentialsRef: {name: x}}",
            ),
            "baseUrl is required",
        ),
        (
            "RoutingPolicy",
            "zero-weight",
            policy(
                "a",
                "zero-weight",
                "{rules: [{match: {model: x}, targets: [{provider: mock, model: mock-fast, weight: 0}]}]}",
            ),
            "weight must be between",
        ),
        (
            "RoutingPolicy",
            "no-targets",
            policy(
                "a",
                "no-targets",
                "{rules: [{match: {model: x}, targets: []}]}",
            ),
            "at least one target",
        ),
        (
            "RoutingPolicy",
            "bad-backoff",
            policy(
                "a",
                "bad-backoff",
                "{rules: [{match: {model: x}, targets: [{provider: mock, model: mock-fast}], retry: {attempts: 1, backoff: soon}}]}",
            ),
            "backoff must be a duration",
        ),
        (
            "RoutingPolicy",
            "too-many-retries",
            policy(
                "a",
                "too-many-retries",
                "{rules: [{match: {model: x}, targets: [{provider: mock, model: mock-fast}], retry: {attempts: 50}}]}",
            ),
            "attempts must be between 0 and 10",
        ),
    ];
    let mut yaml = format!("{}{}{}", base(), ns("a", "", ""), tenant("a", "good", "{}"));
    for (_, _, doc, _) in &cases {
        yaml.push_str(doc);
    }
    let out = render_yaml(&yaml);
    for (kind, name, _, expected) in &cases {
        let (status, reason, message) = ready(&out, kind, "a", name);
        assert_eq!(
            (status.as_str(), reason.as_str()),
            ("False", "InvalidSpec"),
            "{kind} {name}"
        );
        assert!(
            message.contains(expected),
            "{kind} {name}: {message:?} should mention {expected:?}"
        );
    }
    assert_eq!(ready(&out, "LlmTenant", "a", "good").0, "True");
    assert_eq!(out.config.tenants.len(), 1);
    assert!(!out.config.providers.iter().any(|p| p.namespace == "a"));
    assert!(out.config.routing.is_empty());
}

#[test]
fn unknown_kinds_are_skipped_with_a_warning() {
    let yaml = format!(
        "{}apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web, namespace: a}}\n---\napiVersion: llm.dgidgi.io/v1beta9\nkind: LlmTenant\nmetadata: {{name: future, namespace: a}}\n",
        base()
    );
    let mut loader = dgidgi::render::InputLoader::new("dgidgi-system").unwrap();
    loader.add_yaml("mixed.yaml", &yaml).unwrap();
    let warnings = loader.warnings().join("\n");
    assert!(
        warnings.contains("mixed.yaml document 3: Deployment a/web: skipped"),
        "{warnings}"
    );
    assert!(
        warnings.contains("LlmTenant a/future: skipped"),
        "{warnings}"
    );
}

#[test]
fn unparseable_yaml_names_the_source_and_line() {
    let mut loader = dgidgi::render::InputLoader::new("dgidgi-system").unwrap();
    let error = loader
        .add_yaml(
            "broken.yaml",
            "apiVersion: v1\nkind: Namespace\n---\nmetadata: {name: [unclosed\n",
        )
        .unwrap_err()
        .to_string();
    // Line numbers count from the top of the file, across documents.
    assert!(
        error.starts_with("broken.yaml:5:1: invalid YAML"),
        "{error}"
    );
}

#[test]
fn corrupt_master_key_stops_render_instead_of_orphaning_rows() {
    let mut loader = dgidgi::render::InputLoader::new("dgidgi-system").unwrap();
    let error = loader
        .add_yaml(
            "out.yaml",
            "apiVersion: v1\nkind: Secret\nmetadata: {name: dgidgi-master-key, namespace: dgidgi-system}\nstringData:\n  master-key.yaml: |\n    active: k1\n    keys: []\n",
        )
        .unwrap_err()
        .to_string();
    assert!(error.contains("dgidgi-master-key"), "{error}");
    assert!(error.contains("not in the ring"), "{error}");
}

// ---- routing policies -------------------------------------------------------------------

#[test]
fn policies_compile_with_priority_selectors_and_resolved_targets() {
    let yaml = format!(
        "{}{}{}{}{}{}{}",
        base(),
        ns("a", "llm.dgidgi.io/tier: pro", ""),
        ns("zz-own", "", ""),
        policy(
            "dgidgi-system",
            "paid",
            "{priority: 10, tenantSelector: {matchLabels: {llm.dgidgi.io/tier: pro}}, rules: [{match: {model: 'gpt-*', tools: true}, targets: [{provider: mock, model: mock-smart, weight: 3}, {provider: mock, model: mock-fast}], fallback: [{provider: mock, model: mock-fast}], retry: {attempts: 2, on: [timeout, rate-limited], backoff: 1s}, timeout: 1m30s}]}"
        ),
        policy(
            "dgidgi-system",
            "everyone",
            "{priority: 1, rules: [{match: {model: '*'}, targets: [{provider: mock, model: mock-fast}]}]}"
        ),
        policy(
            "zz-own",
            "own",
            "{priority: 10, rules: [{match: {model: 'gpt-*'}, targets: [{provider: mock, model: mock}]}]}"
        ),
        tenant("a", "t", "{}")
    );
    let out = render_yaml(&yaml);
    let ids: Vec<_> = out.config.routing.iter().map(|r| r.id.as_str()).collect();
    // Priority first; at equal priority the namespace's own rule before platform-wide ones,
    // even though "dgidgi-system" sorts before "zz-own".
    assert_eq!(
        ids,
        vec![
            "zz-own/own#0",
            "dgidgi-system/paid#0",
            "dgidgi-system/everyone#0"
        ]
    );
    let paid = &out.config.routing[1];
    assert_eq!(paid.namespaces.as_deref(), Some(&["a".to_owned()][..]));
    assert_eq!(paid.tools, Some(true));
    assert_eq!(paid.targets[0].provider, "dgidgi-system/mock");
    assert_eq!(paid.targets[0].weight, 3);
    assert_eq!(paid.targets[1].weight, 1);
    assert_eq!(paid.fallback.len(), 1);
    assert_eq!(paid.retry.attempts, 2);
    assert_eq!(paid.retry.backoff_ms, 1_000);
    assert_eq!(
        paid.retry.on,
        vec![
            dgidgi::crd::policy::RetryOn::RateLimited,
            dgidgi::crd::policy::RetryOn::Timeout
        ]
    );
    assert_eq!(paid.timeout_ms, Some(90_000));
    assert!(
        out.config.routing[2].namespaces.is_none(),
        "empty selector = every tenant namespace"
    );
    assert_eq!(
        out.config.routing[0].namespaces.as_deref(),
        Some(&["zz-own".to_owned()][..])
    );
    assert_eq!(
        ready(&out, "RoutingPolicy", "dgidgi-system", "paid").1,
        "Compiled"
    );
}

#[test]
fn unresolvable_targets_are_dropped_with_reasons() {
    let yaml = format!(
        "{}{}{}{}",
        base(),
        ns("a", "", ""),
        secret("b", "k", "apiKey", "sk-b-0005"),
        provider("b", "private", "{type: openai, credentialsRef: {name: k}}")
    ) + &policy(
        "a",
        "mixed",
        "{rules: [{match: {model: x}, targets: [{provider: mock, model: mock-fast}, {provider: private, model: gpt-4o}, {provider: mock, model: no-such-model}]}, {match: {model: y}, targets: [{provider: ghost, model: m}]}]}",
    );
    let out = render_yaml(&yaml);
    assert_eq!(out.config.routing.len(), 1);
    assert_eq!(
        out.config.routing[0].targets.len(),
        1,
        "another namespace's provider is unreachable by name"
    );
    let message = expect_condition(
        &out,
        ("RoutingPolicy", "a", "mixed"),
        "Ready",
        "False",
        "TargetsUnresolved",
    );
    assert!(message.contains("1 of 2 rule(s) compiled"), "{message}");
    let (_, _, targets) = condition(&out, "RoutingPolicy", "a", "mixed", "TargetsResolved");
    assert!(
        targets.contains("provider \"private\" not found"),
        "{targets}"
    );
    assert!(
        targets.contains("does not serve model \"no-such-model\""),
        "{targets}"
    );
    assert!(targets.contains("rule 1 has no usable target"), "{targets}");
}

#[test]
fn invalid_selector_operator_is_reported() {
    let yaml = format!(
        "{}{}",
        base(),
        policy(
            "dgidgi-system",
            "odd",
            "{tenantSelector: {matchExpressions: [{key: x, operator: Near, values: [y]}]}, rules: [{match: {model: x}, targets: [{provider: mock, model: mock-fast}]}]}"
        )
    );
    let out = render_yaml(&yaml);
    assert_eq!(
        ready(&out, "RoutingPolicy", "dgidgi-system", "odd").1,
        "InvalidSelector"
    );
    assert!(out.config.routing.is_empty());
}

#[test]
fn model_catalog_defaults_and_custom_models_with_prices() {
    let yaml = format!(
        "{}{}{}",
        base(),
        secret("dgidgi-system", "k", "apiKey", "sk-0006"),
        provider(
            "dgidgi-system",
            "custom",
            "{type: openai-compatible, baseUrl: 'https://llm.example.com/v1/', credentialsRef: {name: k}, models: [{name: big, aliases: [b], maxOutputTokens: 1000, pricing: {inputPerMillion: 0.15, outputPerMillion: 0.6}}]}"
        )
    );
    let out = render_yaml(&yaml);
    let custom = out
        .config
        .providers
        .iter()
        .find(|p| p.name == "custom")
        .unwrap();
    assert_eq!(
        custom.base_url.as_deref(),
        Some("https://llm.example.com/v1")
    );
    assert!(
        !custom.open_catalog,
        "an explicit model list is authoritative"
    );
    let pricing = custom.models[0].pricing.unwrap();
    assert_eq!(
        (
            pricing.input_micro_usd_per_million,
            pricing.output_micro_usd_per_million
        ),
        (150_000, 600_000)
    );
    let mock = out
        .config
        .providers
        .iter()
        .find(|p| p.name == "mock")
        .unwrap();
    assert!(
        mock.models
            .iter()
            .any(|m| m.name == "mock-fast" && m.aliases == vec!["mock"])
    );
}

/// A provider type of an existing wire format is one catalog entry: its default base URL and
/// its priced catalog, with nothing else to write (issue #21).
#[test]
fn together_ai_is_a_catalog_entry_of_the_openai_format() {
    let yaml = format!(
        "{}{}{}",
        base(),
        secret("dgidgi-system", "k", "apiKey", "tg-0001"),
        provider(
            "dgidgi-system",
            "together",
            "{type: together, credentialsRef: {name: k}}"
        )
    );
    let out = render_yaml(&yaml);
    assert!(
        out.report.not_ready().is_empty(),
        "{:?}",
        out.report.not_ready()
    );
    let together = out
        .config
        .providers
        .iter()
        .find(|p| p.name == "together")
        .unwrap();
    assert_eq!(
        together.base_url.as_deref(),
        Some("https://api.together.xyz/v1")
    );
    assert_eq!(together.kind.format(), dgidgi::formats::Format::OpenAi);
    let llama = together
        .models
        .iter()
        .find(|m| m.name == "meta-llama/Llama-3.3-70B-Instruct-Turbo")
        .expect("the catalog's models");
    let pricing = llama.pricing.unwrap();
    assert_eq!(
        (
            pricing.input_micro_usd_per_million,
            pricing.output_micro_usd_per_million
        ),
        (880_000, 880_000)
    );
}

#[test]
fn duplicate_model_names_are_refused() {
    let yaml = format!(
        "{}{}",
        base(),
        provider(
            "dgidgi-system",
            "dup",
            "{type: mock, models: [{name: a, aliases: [b]}, {name: b}]}"
        )
    );
    let out = render_yaml(&yaml);
    // Caught by the CRD's CEL rule only for equal names; aliases colliding with names by render.
    assert_eq!(
        ready(&out, "LlmProvider", "dgidgi-system", "dup").1,
        "DuplicateModelName"
    );
}

// ---- hardening ------------------------------------------------------------------------------

#[test]
fn unknown_fields_are_refused_like_strict_field_validation() {
    let yaml = format!(
        "{}{}{}",
        base(),
        ns("a", "", ""),
        tenant("a", "typo", "{limits: {requestsPerHour: 5}, bogusField: 1}")
    );
    let out = render_yaml(&yaml);
    let message = expect_condition(
        &out,
        ("LlmTenant", "a", "typo"),
        "Ready",
        "False",
        "InvalidSpec",
    );
    assert!(message.contains("spec.bogusField"), "{message}");
    assert!(message.contains("spec.limits.requestsPerHour"), "{message}");
    // Empty values of known optional fields are fine.
    let empty = format!(
        "{}{}{}",
        base(),
        ns("a", "", ""),
        tenant("a", "ok", "{providers: [], cli: null}")
    );
    assert_eq!(
        ready(&render_yaml(&empty), "LlmTenant", "a", "ok").0,
        "True"
    );
}

#[test]
fn names_that_are_not_kubernetes_names_are_skipped() {
    let yaml = format!(
        "{}{}{}{}",
        base(),
        tenant("../../pwned", "evil", "{}"),
        tenant("a", "../x", "{}"),
        tenant("a", "Bad_Name!", "{}")
    );
    let mut loader = dgidgi::render::InputLoader::new("dgidgi-system").unwrap();
    loader.add_yaml("evil.yaml", &yaml).unwrap();
    let warnings = loader.warnings().join("\n");
    assert_eq!(warnings.matches("is not a valid").count(), 3, "{warnings}");
    assert!(loader.finish().tenants.is_empty());
}

#[test]
fn long_tenant_names_and_zero_timeouts_are_refused() {
    // A valid Kubernetes name (dotted labels), but too long to be a label value.
    let long = "tenant.with.a.rather.long.dotted.name.for.testing.the.label.limit";
    let yaml = format!(
        "{}{}{}{}",
        base(),
        ns("a", "", ""),
        tenant("a", long, "{}"),
        provider("a", "slow", "{type: mock, timeouts: {firstByte: 0s}}")
    );
    let out = render_yaml(&yaml);
    let message = expect_condition(
        &out,
        ("LlmTenant", "a", long),
        "Ready",
        "False",
        "InvalidSpec",
    );
    assert!(message.contains("at most 63 characters"), "{message}");
    let message = expect_condition(
        &out,
        ("LlmProvider", "a", "slow"),
        "Ready",
        "False",
        "InvalidSpec",
    );
    assert!(message.contains("non-zero"), "{message}");
}

#[test]
fn urls_with_credentials_are_refused_everywhere() {
    let yaml = format!(
        "{}{}{}",
        base(),
        secret("dgidgi-system", "k", "apiKey", "sk-0007"),
        provider(
            "dgidgi-system",
            "leaky",
            "{type: openai, baseUrl: 'https://user:sk-in-url@api.example.com/v1', credentialsRef: {name: k}}"
        )
    );
    let out = render_yaml(&yaml);
    let message = expect_condition(
        &out,
        ("LlmProvider", "dgidgi-system", "leaky"),
        "Ready",
        "False",
        "InvalidSpec",
    );
    assert!(!message.contains("sk-in-url"), "{message}");
    assert!(!common::all_output_text(&out).contains("sk-in-url"));
}

#[test]
fn colliding_access_key_secrets_and_copied_keys_are_refused() {
    // `a` + key `b-llm-access-c` and `a-llm-access-b` + key `c` name the same Secret.
    let yaml = format!(
        "{}{}{}{}",
        base(),
        ns("n", "", ""),
        tenant("n", "a", "{accessKeys: [{name: b-llm-access-c}]}"),
        tenant("n", "a-llm-access-b", "{accessKeys: [{name: c}]}")
    );
    let out = render_yaml(&yaml);
    assert_eq!(ready(&out, "LlmTenant", "n", "a").0, "True");
    let message = expect_condition(
        &out,
        ("LlmTenant", "n", "a-llm-access-b"),
        "Ready",
        "False",
        "AccessKeyRejected",
    );
    assert!(
        message.contains("already used by another tenant"),
        "{message}"
    );

    // A tenant copying another tenant's key into its own Secret gets refused, not a shared key.
    let copied = "dgk_copied-key-copied-key-copied-key-000000";
    let yaml = format!(
        "{}{}{}{}{}{}{}",
        base(),
        ns("x", "", ""),
        ns("y", "", ""),
        tenant("x", "first", "{}"),
        secret("x", "first-llm-access-default", "accessKey", copied),
        tenant("y", "second", "{}"),
        secret("y", "second-llm-access-default", "accessKey", copied)
    );
    let out = render_yaml(&yaml);
    assert_eq!(ready(&out, "LlmTenant", "x", "first").0, "True");
    let message = expect_condition(
        &out,
        ("LlmTenant", "y", "second"),
        "Ready",
        "False",
        "AccessKeyRejected",
    );
    assert!(!message.contains(copied));
    let hashes: Vec<_> = out
        .config
        .tenants
        .iter()
        .flat_map(|t| t.access_keys.iter())
        .collect();
    assert_eq!(hashes.len(), 1);
}

// ---- clouds -------------------------------------------------------------------------------

#[test]
fn cloud_providers_need_what_their_type_signs_with() {
    let aws = "apiVersion: v1\nkind: Secret\nmetadata: {name: aws, namespace: dgidgi-system}\nstringData: {id: AKIA1, secret: s3cr3t-aws, token: t0k3n}\n---\n";
    let cases = [
        // CEL: a Bedrock provider names its region; parts are Bedrock's or Azure's Entra app's.
        (
            "no-region",
            "{type: bedrock, credentialsRef: {name: aws, parts: {accessKeyId: id, secretAccessKey: secret}}}",
            "InvalidSpec",
            "region is required",
        ),
        (
            "half-key",
            "{type: bedrock, region: us-east-1, credentialsRef: {name: aws, parts: {accessKeyId: id}}}",
            "InvalidSpec",
            "credentialsRef.parts",
        ),
        (
            "parts-on-openai",
            "{type: openai, credentialsRef: {name: aws, parts: {accessKeyId: id, secretAccessKey: secret}}}",
            "InvalidSpec",
            "credentialsRef.parts",
        ),
        (
            "bad-region",
            "{type: bedrock, region: \"us-east-1.evil.example/\", credentialsRef: {name: aws}}",
            "InvalidSpec",
            "region must be",
        ),
        (
            "azure-no-url",
            "{type: azure-openai, credentialsRef: {name: aws}}",
            "InvalidSpec",
            "baseUrl",
        ),
        (
            "vertex-no-project",
            "{type: vertex-ai, region: us-east5, credentialsRef: {name: aws}}",
            "InvalidSpec",
            "project",
        ),
        // Render: a part naming a key the Secret lacks; a Vertex key that is no service account.
        (
            "missing-key",
            "{type: bedrock, region: us-east-1, credentialsRef: {name: aws, parts: {accessKeyId: id, secretAccessKey: nope}}}",
            "SecretKeyNotFound",
            "nope",
        ),
        (
            "not-an-account",
            "{type: vertex-ai, region: us-east5, project: my-project-1, credentialsRef: {name: aws, key: secret}}",
            "CredentialInvalid",
            "not a service account",
        ),
    ];
    let yaml: String = [base(), aws.to_owned()]
        .into_iter()
        .chain(
            cases
                .iter()
                .map(|(name, spec, _, _)| provider("dgidgi-system", name, spec)),
        )
        .collect();
    let output = render_yaml(&yaml);
    for (name, _, reason, says) in cases {
        let message = expect_condition(
            &output,
            ("LlmProvider", "dgidgi-system", name),
            "Ready",
            "False",
            reason,
        );
        assert!(message.contains(says), "{name}: {message}");
        for secret in ["s3cr3t-aws", "t0k3n"] {
            assert!(!message.contains(secret), "{name}: {message}");
        }
    }
}

#[test]
fn cloud_providers_resolve_their_regional_endpoints_and_sealed_parts() {
    let aws = "apiVersion: v1\nkind: Secret\nmetadata: {name: aws, namespace: dgidgi-system}\nstringData: {id: AKIA1, secret: s3cr3t-aws, token: t0k3n}\n---\n";
    let yaml = format!(
        "{}{aws}{}{}",
        base(),
        provider(
            "dgidgi-system",
            "bedrock",
            "{type: bedrock, region: eu-central-1, credentialsRef: {name: aws, parts: {accessKeyId: id, secretAccessKey: secret, sessionToken: token}}}"
        ),
        provider(
            "dgidgi-system",
            "azure",
            "{type: azure-openai, baseUrl: \"https://res.openai.azure.com/\", credentialsRef: {name: aws, key: secret}, azure: {apiVersion: \"2024-10-21\", deployments: [{model: gpt-4.1, deployment: prod}]}}"
        ),
    );
    let output = render_yaml(&yaml);
    assert!(
        output.report.not_ready().is_empty(),
        "{:?}",
        output.report.not_ready()
    );
    let provider = |name: &str| {
        output
            .config
            .providers
            .iter()
            .find(|p| p.name == name)
            .unwrap()
            .clone()
    };
    let bedrock = provider("bedrock");
    assert_eq!(
        bedrock.base_url.as_deref(),
        Some("https://bedrock-runtime.eu-central-1.amazonaws.com")
    );
    assert_eq!(bedrock.cloud.region.as_deref(), Some("eu-central-1"));
    assert!(
        bedrock
            .models
            .iter()
            .any(|m| m.name == "global.anthropic.claude-sonnet-4-5-20250929-v1:0")
    );
    let azure = provider("azure");
    assert_eq!(
        azure.base_url.as_deref(),
        Some("https://res.openai.azure.com")
    );
    assert_eq!(azure.upstream_model("gpt-4.1"), "prod");
    assert_eq!(azure.upstream_model("gpt-4o"), "gpt-4o");
    assert_eq!(azure.cloud.api_version.as_deref(), Some("2024-10-21"));
    // The three parts are one sealed row; no part is in the config or the key store in clear.
    let text = serde_yaml::to_string(&output.config).unwrap();
    for secret in ["AKIA1", "s3cr3t-aws", "t0k3n"] {
        assert!(!text.contains(secret));
    }
    let row = output.key_store.get("dgidgi-system/bedrock").unwrap();
    assert!(
        row.encrypted_value.starts_with("dgv2:"),
        "{}",
        row.encrypted_value
    );
    let store = serde_yaml::to_string(&output.key_store).unwrap();
    for secret in ["AKIA1", "s3cr3t-aws", "t0k3n"] {
        assert!(!store.contains(secret));
    }
}

#[test]
fn a_tenant_can_use_neither_the_gateways_identity_nor_an_internal_token_endpoint() {
    let account = |token_uri: &str| {
        use base64::Engine as _;
        let json = serde_json::json!({
            "type": "service_account", "client_email": "a@p.iam.gserviceaccount.com",
            "private_key": "-----BEGIN PRIVATE KEY-----\nAA\n-----END PRIVATE KEY-----\n",
            "token_uri": token_uri,
        });
        base64::engine::general_purpose::STANDARD.encode(json.to_string())
    };
    let secret = |name: &str, token_uri: &str| {
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: team-a}}\ndata: {{key.json: {}}}\n---\n",
            account(token_uri)
        )
    };
    let vertex = |name: &str| {
        provider(
            "team-a",
            name,
            &format!(
                "{{type: vertex-ai, region: us-east5, project: my-project-1, credentialsRef: {{name: {name}, key: key.json}}}}"
            ),
        )
    };
    let yaml = [
        base(),
        ns("team-a", "", ""),
        provider(
            "team-a",
            "borrowed",
            "{type: bedrock, region: us-east-1, identity: aws-web-identity}",
        ),
        secret("metadata", "http://169.254.169.254/token"),
        vertex("metadata"),
        secret("private", "https://10.0.0.7/token"),
        vertex("private"),
        secret("plain", "http://oauth2.googleapis.com/token"),
        vertex("plain"),
        secret("google", "https://oauth2.googleapis.com/token"),
        vertex("google"),
    ]
    .concat();
    let output = render_yaml(&yaml);
    let borrowed = expect_condition(
        &output,
        ("LlmProvider", "team-a", "borrowed"),
        "Ready",
        "False",
        "IdentityNotAllowed",
    );
    assert!(borrowed.contains("platform namespace"), "{borrowed}");
    for name in ["metadata", "private", "plain"] {
        let message = expect_condition(
            &output,
            ("LlmProvider", "team-a", name),
            "Ready",
            "False",
            "EndpointNotAllowed",
        );
        assert!(message.contains("token_uri"), "{name}: {message}");
    }
    let (status, _, message) = ready(&output, "LlmProvider", "team-a", "google");
    assert_eq!(status, "True", "{message}");
}

#[test]
fn claude_on_a_regional_vertex_endpoint_is_priced_ten_percent_above_the_global_one() {
    let sa = {
        use base64::Engine as _;
        let json = serde_json::json!({
            "type": "service_account", "client_email": "a@p.iam.gserviceaccount.com",
            "private_key": "-----BEGIN PRIVATE KEY-----\nAA\n-----END PRIVATE KEY-----\n",
            "token_uri": "https://oauth2.googleapis.com/token",
        });
        base64::engine::general_purpose::STANDARD.encode(json.to_string())
    };
    let yaml = format!(
        "{}apiVersion: v1\nkind: Secret\nmetadata: {{name: sa, namespace: dgidgi-system}}\ndata: {{key.json: {sa}}}\n---\n{}{}",
        base(),
        provider(
            "dgidgi-system",
            "regional",
            "{type: vertex-ai, region: us-east5, project: my-project-1, credentialsRef: {name: sa, key: key.json}}"
        ),
        provider(
            "dgidgi-system",
            "global",
            "{type: vertex-ai, region: global, project: my-project-1, credentialsRef: {name: sa, key: key.json}}"
        ),
    );
    let output = render_yaml(&yaml);
    let price = |provider: &str, model: &str| {
        let provider = output
            .config
            .providers
            .iter()
            .find(|p| p.name == provider)
            .unwrap();
        let pricing = provider
            .models
            .iter()
            .find(|m| m.name == model)
            .unwrap()
            .pricing
            .unwrap();
        (
            pricing.input_micro_usd_per_million,
            pricing.output_micro_usd_per_million,
        )
    };
    assert_eq!(
        price("global", "claude-sonnet-4-5-20250929"),
        (3_000_000, 15_000_000)
    );
    assert_eq!(
        price("regional", "claude-sonnet-4-5-20250929"),
        (3_300_000, 16_500_000)
    );
    // Gemini is priced alike everywhere.
    assert_eq!(
        price("regional", "gemini-4-neon"),
        price("global", "gemini-4-neon")
    );
    let base = |provider: &str| {
        output
            .config
            .providers
            .iter()
            .find(|p| p.name == provider)
            .unwrap()
            .base_url
            .clone()
            .unwrap()
    };
    assert_eq!(base("global"), "https://aiplatform.googleapis.com");
    assert_eq!(
        base("regional"),
        "https://us-east5-aiplatform.googleapis.com"
    );
}

/// A large input is checked on every core in batches; what it yields is exactly what the same
/// documents yield one by one: the same resources, the same invalid ones with the same
/// messages, in the same order.
#[test]
fn a_large_input_checked_in_parallel_yields_what_one_by_one_does() {
    let mut yaml = String::new();
    for i in 0..600 {
        let spec = match i % 50 {
            7 => "{budget: {monthlyUsd: -3}}".to_owned(),
            13 => "{limits: {requestsPerMinute: 10}, sourcee: tenant}".to_owned(),
            21 => "{source: cli}".to_owned(),
            _ => format!("{{limits: {{requestsPerMinute: {}}}}}", 10 + i),
        };
        yaml.push_str(&format!(
            "apiVersion: v1\nkind: Namespace\nmetadata: {{name: ns-{i}}}\n---\napiVersion: llm.dgidgi.io/v1alpha1\nkind: LlmTenant\nmetadata: {{name: t, namespace: ns-{i}}}\nspec: {spec}\n---\n"
        ));
    }
    let mut together = dgidgi::render::InputLoader::new("dgidgi-system").unwrap();
    together.add_yaml("fleet.yaml", &yaml).unwrap();
    let mut one_by_one = dgidgi::render::InputLoader::new("dgidgi-system").unwrap();
    for document in yaml.split("---\n").filter(|d| !d.trim().is_empty()) {
        one_by_one.add_yaml("fleet.yaml", document).unwrap();
    }
    let (together, one_by_one) = (together.finish(), one_by_one.finish());
    assert_eq!(together.tenants.len(), one_by_one.tenants.len());
    assert!(together.tenants.len() > 500, "the valid ones are in");
    let invalid = |input: &dgidgi::render::RenderInput| {
        input
            .invalid
            .iter()
            .map(|r| format!("{} {}", r.key, r.message))
            .collect::<Vec<_>>()
    };
    assert_eq!(invalid(&together), invalid(&one_by_one));
    assert!(invalid(&together).len() >= 24, "{:?}", invalid(&together));
    for (key, tenant) in &together.tenants {
        assert_eq!(
            serde_json::to_value(tenant).unwrap(),
            serde_json::to_value(&one_by_one.tenants[key]).unwrap()
        );
    }
}
