//! The synthetic fleet the render and gateway benchmarks share.

use std::fmt::Write as _;

/// A synthetic fleet: platform providers and policies, `tenants` tenants over all tiers and
/// sources.
pub fn fleet(tenants: usize) -> String {
    let mut yaml = String::from(
        "apiVersion: llm.dgidgi.io/v1alpha1\nkind: LlmProvider\nmetadata: {name: mock, namespace: dgidgi-system}\nspec: {type: mock}\n---\n\
         apiVersion: v1\nkind: Secret\nmetadata: {name: openai, namespace: dgidgi-system}\nstringData: {apiKey: sk-bench-platform}\n---\n\
         apiVersion: llm.dgidgi.io/v1alpha1\nkind: LlmProvider\nmetadata: {name: openai, namespace: dgidgi-system}\nspec: {type: openai, credentialsRef: {name: openai}}\n---\n\
         apiVersion: llm.dgidgi.io/v1alpha1\nkind: RoutingPolicy\nmetadata: {name: default, namespace: dgidgi-system}\nspec:\n  priority: 10\n  rules:\n  - match: {model: 'gpt-4o*'}\n    targets: [{provider: openai, model: gpt-4o, weight: 9}, {provider: mock, model: mock-smart}]\n    fallback: [{provider: mock, model: mock-fast}]\n    retry: {attempts: 2, backoff: 200ms}\n    timeout: 60s\n---\n\
         apiVersion: llm.dgidgi.io/v1alpha1\nkind: RoutingPolicy\nmetadata: {name: paid, namespace: dgidgi-system}\nspec:\n  tenantSelector: {matchExpressions: [{key: llm.dgidgi.io/tier, operator: In, values: [pro, team]}]}\n  rules:\n  - match: {model: fast}\n    targets: [{provider: mock, model: mock-fast}]\n---\n",
    );
    let tiers = ["free", "pro", "team", "enterprise"];
    for i in 0..tenants {
        let ns = format!("tenant-{i:05}");
        let tier = tiers[i % tiers.len()];
        let _ = write!(
            yaml,
            "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}, labels: {{llm.dgidgi.io/tier: {tier}}}}}\n---\n"
        );
        if i % 10 == 0 {
            let _ = write!(
                yaml,
                "apiVersion: v1\nkind: Secret\nmetadata: {{name: own, namespace: {ns}}}\nstringData: {{apiKey: sk-bench-{i}}}\n---\n\
                 apiVersion: llm.dgidgi.io/v1alpha1\nkind: LlmProvider\nmetadata: {{name: own, namespace: {ns}}}\nspec: {{type: openai, credentialsRef: {{name: own}}}}\n---\n\
                 apiVersion: llm.dgidgi.io/v1alpha1\nkind: LlmTenant\nmetadata: {{name: t, namespace: {ns}}}\nspec: {{source: tenant, preferredProvider: own}}\n---\n"
            );
        } else {
            let _ = write!(
                yaml,
                "apiVersion: llm.dgidgi.io/v1alpha1\nkind: LlmTenant\nmetadata: {{name: t, namespace: {ns}}}\nspec: {{limits: {{requestsPerMinute: 30}}, budget: {{monthlyUsd: 25.5}}, accessKeys: [{{name: default}}, {{name: ci}}]}}\n---\n"
            );
        }
    }
    yaml
}
