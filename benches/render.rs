//! Render throughput: parsing and validating the inputs (typed + CEL, as the API server would)
//! and the pure render itself, for 100 and 1,000 tenants (each in its own namespace, with its
//! own provider and key for one tenant in ten).

use std::fmt::Write as _;
use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use dgidgi::render::{InputLoader, RenderContext, render};
use k8s_openapi::jiff::Timestamp;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

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

fn now() -> Timestamp {
    Timestamp::from_second(1_795_608_000).unwrap_or(Timestamp::UNIX_EPOCH)
}

fn bench_render(c: &mut Criterion) {
    let mut group = c.benchmark_group("render");
    group.sample_size(10);
    for tenants in [100usize, 1_000] {
        let yaml = fleet(tenants);
        group.bench_with_input(
            BenchmarkId::new("parse_and_validate", tenants),
            &yaml,
            |b, yaml| {
                b.iter(|| {
                    let mut loader = InputLoader::new("dgidgi-system").expect("schemas compile");
                    loader.add_yaml("fleet.yaml", yaml).expect("fleet parses");
                    black_box(loader.finish())
                });
            },
        );
        let ctx = RenderContext::new("dgidgi-system", now());
        group.bench_with_input(BenchmarkId::new("render", tenants), &yaml, |b, yaml| {
            b.iter_batched(
                || {
                    let mut loader = InputLoader::new("dgidgi-system").expect("schemas compile");
                    loader.add_yaml("fleet.yaml", yaml).expect("fleet parses");
                    loader.finish()
                },
                |input| {
                    black_box(
                        render(input, &ctx, &mut ChaCha20Rng::seed_from_u64(1))
                            .expect("render succeeds"),
                    )
                },
                criterion::BatchSize::LargeInput,
            );
        });
    }
    group.finish();
}

criterion_group!(benches, bench_render);
criterion_main!(benches);
