//! The operator's pass for a fleet of 1,000 tenants (`DGIDGI_BENCH_TENANTS` sets another size;
//! each tenant in its own namespace, one in ten with its own provider and key; 64 shards past
//! 2,000 tenants): the first pass (everything generated and written), the steady-state full pass
//! (stores unchanged: render + plan, zero writes) and the incremental pass deciding a change to
//! one tenant's spec. Before the timings it prints the writes of the first passes, a full pass's
//! phases, the incremental pass's writes (its shard, the index, its status) and the resident
//! memory the stores' objects take.

use std::hint::black_box;
use std::sync::Arc;

use base64::Engine as _;
use criterion::{Criterion, criterion_group, criterion_main};
use dgidgi::operator::incremental::{PassKind, decide_incrementally};
use dgidgi::operator::observed::{Observed, key_of};
use dgidgi::operator::reconcile::decide;
use dgidgi::render::{ObjectKey, RenderContext};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::jiff::Timestamp;
use kube::api::DynamicObject;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use serde_json::json;

/// Tenants in the fleet (`DGIDGI_BENCH_TENANTS` overrides the 1,000 default).
fn tenants() -> usize {
    std::env::var("DGIDGI_BENCH_TENANTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000)
}

fn resource(
    kind: &str,
    namespace: &str,
    name: &str,
    spec: serde_json::Value,
) -> Arc<DynamicObject> {
    let object: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "llm.dgidgi.io/v1alpha1", "kind": kind,
        "metadata": {"name": name, "namespace": namespace, "uid": format!("uid-{namespace}-{name}"),
                     "generation": 1, "resourceVersion": "1"},
        "spec": spec,
    }))
    .unwrap();
    Arc::new(object)
}

fn fleet() -> Observed {
    let mut observed = Observed::default();
    let add_ns = |observed: &mut Observed, name: &str, tier: &str| {
        let ns: Namespace = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "labels": {"llm.dgidgi.io/tier": tier}, "resourceVersion": "1"},
        }))
        .unwrap();
        observed.namespaces.insert(key_of(&ns), Arc::new(ns));
    };
    add_ns(&mut observed, "dgidgi-system", "free");
    let p = resource(
        "LlmProvider",
        "dgidgi-system",
        "mock",
        json!({"type": "mock"}),
    );
    observed.providers.insert(key_of(p.as_ref()), p);
    let policy = resource(
        "RoutingPolicy",
        "dgidgi-system",
        "default",
        json!({
            "priority": 10,
            "rules": [{"match": {"model": "fast"}, "targets": [{"provider": "mock", "model": "mock-fast"}],
                       "fallback": [{"provider": "mock", "model": "mock-smart"}]}],
        }),
    );
    observed.policies.insert(key_of(policy.as_ref()), policy);
    let tiers = ["free", "pro", "team", "enterprise"];
    for i in 0..tenants() {
        let ns = format!("tenant-{i:05}");
        add_ns(&mut observed, &ns, tiers[i % tiers.len()]);
        let own = i % 10 == 0;
        if own {
            let secret: Secret = serde_json::from_value(json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "openai", "namespace": ns, "resourceVersion": "1"},
                "data": {"apiKey": base64::engine::general_purpose::STANDARD.encode(format!("sk-bench-{i}"))},
            }))
            .unwrap();
            observed.secrets.insert(key_of(&secret), Arc::new(secret));
            let p = resource(
                "LlmProvider",
                &ns,
                "my-openai",
                json!({"type": "openai", "credentialsRef": {"name": "openai"}}),
            );
            observed.providers.insert(key_of(p.as_ref()), p);
        }
        let spec = if own {
            json!({"source": "tenant", "providers": [{"name": "my-openai"}]})
        } else {
            json!({"source": "platform", "limits": {"requestsPerMinute": 5},
                   "budget": {"monthlyUsd": 10, "alertThresholds": [50, 80, 100]}})
        };
        let t = resource("LlmTenant", &ns, "app", spec);
        observed.tenants.insert(key_of(t.as_ref()), t);
    }
    observed
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn bench(c: &mut Criterion) {
    let mut ctx = RenderContext::new(
        "dgidgi-system",
        Timestamp::from_second(1_795_608_000).unwrap(),
    );
    // The chart's advice: one shard fits about 2,000 tenants, 64 about 120,000.
    ctx.shards = if tenants() <= 2_000 { 1 } else { 64 };
    let before = rss_kib();
    let mut observed = fleet();
    let first_started = std::time::Instant::now();
    let first = decide(&observed, &ctx, &mut ChaCha20Rng::seed_from_u64(1)).unwrap();
    let first_time = first_started.elapsed();
    observed.apply_writes(&first.writes);
    let after = rss_kib();
    {
        use dgidgi::operator::plan::plan;
        use dgidgi::render::render;
        let t = std::time::Instant::now();
        let input = observed.render_input("dgidgi-system").unwrap();
        let t_input = t.elapsed();
        let t = std::time::Instant::now();
        let output = render(input, &ctx, &mut ChaCha20Rng::seed_from_u64(2)).unwrap();
        let t_render = t.elapsed();
        let t = std::time::Instant::now();
        let writes = plan(&output, &observed).unwrap();
        let t_plan = t.elapsed();
        eprintln!(
            "phases: input {t_input:?} render {t_render:?} plan {t_plan:?} ({} writes)",
            writes.len()
        );
    }
    let steady = decide(&observed, &ctx, &mut ChaCha20Rng::seed_from_u64(2)).unwrap();
    let tenants = tenants();
    eprintln!(
        "operator, {tenants} tenants: first pass {} writes in {first_time:?}; steady-state pass {} writes; \
         stores + one pass resident: {} KiB ({} KiB before)",
        first.writes.len(),
        steady.writes.len(),
        after.saturating_sub(before),
        before
    );
    assert!(
        steady.writes.is_empty(),
        "a steady-state pass writes nothing"
    );
    c.bench_function(
        &format!("operator steady-state pass, {tenants} tenants"),
        |b| {
            b.iter(|| {
                black_box(decide(&observed, &ctx, &mut ChaCha20Rng::seed_from_u64(3)).unwrap());
            });
        },
    );

    // The incremental pass: one tenant's spec changes (a new resourceVersion, as the API server
    // gives it), against the output kept from the pass before.
    let resync = std::time::Duration::MAX;
    let mut memo = None;
    let (_, kind) = decide_incrementally(
        &observed,
        &ctx,
        &mut ChaCha20Rng::seed_from_u64(4),
        &mut memo,
        resync,
    )
    .unwrap();
    assert_eq!(kind, PassKind::Full);
    let changed = ObjectKey::new("tenant-00001", "app");
    let mut version = 1;
    let mut change_one = |observed: &mut Observed| {
        version += 1;
        let mut tenant = (*observed.tenants[&changed]).clone();
        tenant.data["spec"]["limits"]["requestsPerMinute"] = json!(version % 50 + 1);
        tenant.metadata.resource_version = Some(version.to_string());
        tenant.metadata.generation = Some(version);
        observed.tenants.insert(changed.clone(), Arc::new(tenant));
    };
    change_one(&mut observed);
    let started = std::time::Instant::now();
    let (decision, kind) = decide_incrementally(
        &observed,
        &ctx,
        &mut ChaCha20Rng::seed_from_u64(5),
        &mut memo,
        resync,
    )
    .unwrap();
    eprintln!(
        "operator, {tenants} tenants: one tenant changed: {kind:?} pass in {:?}, writes {:?}",
        started.elapsed(),
        decision.writes
    );
    assert_eq!(kind, PassKind::Incremental(1));
    c.bench_function(
        &format!("operator one-tenant change, {tenants} tenants"),
        |b| {
            b.iter(|| {
                change_one(&mut observed);
                let (decision, kind) = decide_incrementally(
                    &observed,
                    &ctx,
                    &mut ChaCha20Rng::seed_from_u64(6),
                    &mut memo,
                    resync,
                )
                .unwrap();
                assert_eq!(kind, PassKind::Incremental(1));
                black_box(decision);
            });
        },
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10);
    targets = bench
}
criterion_main!(benches);
