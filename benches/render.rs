//! Render throughput: parsing and validating the inputs (typed + CEL, as the API server would)
//! and the pure render itself, for 100, 1,000 and 10,000 tenants (each in its own namespace, with its
//! own provider and key for one tenant in ten).

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use dgidgi::render::{InputLoader, RenderContext, render};
use k8s_openapi::jiff::Timestamp;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

#[path = "common/fleet.rs"]
mod fleet;
use fleet::fleet;

fn now() -> Timestamp {
    Timestamp::from_second(1_795_608_000).unwrap_or(Timestamp::UNIX_EPOCH)
}

fn bench_render(c: &mut Criterion) {
    let mut group = c.benchmark_group("render");
    group.sample_size(10);
    for tenants in [100usize, 1_000, 10_000] {
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
