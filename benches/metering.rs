//! What limits and metering cost a request: the pure reservation plan, the embedded counters'
//! reserve + settle, and the meter's admit + settle round trip embedded, with the SQLite ledger,
//! and through a real Redis (when `redis-server` is installed; skipped with a note otherwise).

use std::hint::black_box;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use dgidgi::config::{BudgetAction, EffectiveLimits, Source};
use dgidgi::config::{BudgetConfig, ModelConfig, PricingConfig, TenantConfig};
use dgidgi::metering::book::Book;
use dgidgi::metering::ledger::LedgerOptions;
use dgidgi::metering::plan::{self, Candidate, RequestSize, ReservePolicy};
use dgidgi::metering::{FailMode, Meter, MeterOptions, Served};
use dgidgi::metrics::Metrics;
use dgidgi::usage::Usage;

#[path = "../tests/common/redis.rs"]
#[allow(
    dead_code,
    reason = "the tests' helper; the benchmark only starts and drops"
)]
mod redis;
use redis::{RedisCluster, RedisServer, SharedCounters};

fn tenant() -> TenantConfig {
    TenantConfig {
        id: "team-a/acme".into(),
        namespace: "team-a".into(),
        name: "acme".into(),
        tier: "team".into(),
        source: Source::Platform,
        // Limits high enough that the benchmark never hits them.
        limits: Some(EffectiveLimits {
            requests_per_minute: u64::MAX / 2,
            tokens_per_day: u64::MAX / 2,
            concurrent: u64::MAX / 2,
        }),
        budget: Some(BudgetConfig {
            monthly_micro_usd: u64::MAX / 2,
            alert_thresholds: vec![50, 80, 100],
            action: BudgetAction::Block,
        }),
        ..TenantConfig::default()
    }
}

fn model() -> ModelConfig {
    ModelConfig {
        embedding: false,
        name: "gpt-4o".into(),
        aliases: Vec::new(),
        streaming: true,
        function_calling: true,
        context_window: Some(128_000),
        max_output_tokens: Some(16_384),
        pricing: Some(PricingConfig {
            input_micro_usd_per_million: 2_500_000,
            output_micro_usd_per_million: 10_000_000,
            long_context: None,
        }),
    }
}

const SIZE: RequestSize = RequestSize {
    body_bytes: 1_200,
    max_output_tokens: Some(256),
    choices: 1,
};

fn served(m: &ModelConfig) -> Served<'_> {
    Served {
        provider: "dgidgi-system/openai",
        model: "gpt-4o",
        model_label: "gpt-4o",
        platform: true,
        pricing: m.pricing.as_ref(),
        usage: Some(Usage {
            input_tokens: 300,
            output_tokens: 120,
            ..Usage::default()
        }),
        status: 200,
        outcome: dgidgi::metering::Outcome::Complete,
        fallback: 0,
        first_byte: None,
        output_bound: None,
    }
}

fn pure(c: &mut Criterion) {
    let t = tenant();
    let m = model();
    let candidates = [Candidate {
        model: Some(&m),
        platform: true,
    }];
    let policy = ReservePolicy::default();
    let now = 1_795_615_200_000;
    c.bench_function("metering/plan_reserve", |b| {
        b.iter(|| plan::reserve(black_box(&t), &candidates, SIZE, &policy, now))
    });
    let reservation = plan::reserve(&t, &candidates, SIZE, &policy, now);
    let mut book = Book::default();
    let mut member = 0u128;
    c.bench_function("metering/book_reserve_settle", |b| {
        b.iter(|| {
            member += 1;
            let _ = book.reserve(&reservation.charges, member, now + member as u64 / 1_000);
            let settled = plan::settlement(&reservation, None, m.pricing.as_ref(), true, true);
            let releases = plan::releases(&reservation.charges, Some(settled));
            book.settle(&releases, member, now)
        })
    });
}

/// `journalled`: also wait for the admission's ledger commit, as a request does before its first
/// byte reaches the client (one request per transaction: no group commit to share it with).
fn round_trip(c: &mut Criterion, name: &str, options: MeterOptions, journalled: bool) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let meter = {
        let _guard = runtime.enter();
        Meter::open(&options, Arc::new(Metrics::default())).expect("meter")
    };
    let t = tenant();
    let m = model();
    let candidates = [Candidate {
        model: Some(&m),
        platform: true,
    }];
    c.bench_function(name, |b| {
        b.iter(|| {
            runtime.block_on(async {
                let mut ticket = meter
                    .admit(&t, &candidates, SIZE, "platform", "gpt-4o", None)
                    .await
                    .expect("admitted");
                if journalled {
                    ticket.journalled().await.expect("committed");
                }
                meter.settle(ticket, Some(served(&m))).await;
            })
        })
    });
    runtime.block_on(meter.flush());
}

fn meters(c: &mut Criterion) {
    round_trip(
        c,
        "metering/admit_settle_embedded",
        MeterOptions::default(),
        false,
    );
    let state = tempfile::tempdir().expect("tempdir");
    let with_ledger = || MeterOptions {
        ledger: Some(LedgerOptions {
            state_dir: state.path().to_owned(),
            retention_days: 30,
            json_lines: None,
            max_bytes: None,
        }),
        ..MeterOptions::default()
    };
    round_trip(
        c,
        "metering/admit_settle_embedded_with_ledger",
        with_ledger(),
        false,
    );
    round_trip(
        c,
        "metering/admit_committed_settle_with_ledger",
        with_ledger(),
        true,
    );
    let installed = Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !installed {
        eprintln!("redis-server not found: metering/admit_settle_redis skipped");
        return;
    }
    let server = RedisServer::start();
    round_trip(
        c,
        "metering/admit_settle_redis",
        MeterOptions {
            redis_url: Some(server.url()),
            redis_timeout: Duration::from_millis(200),
            fail_mode: FailMode::Closed,
            ..MeterOptions::default()
        },
        false,
    );
    drop(server);
    redis_cpu_per_request();
}

/// What Redis spends per request (its CPU time, all masters of a cluster summed), so how many
/// requests one Redis core carries: 20,000 admit + settle round trips, 64 at a time, against one
/// Redis and against a three-master cluster. Printed, not a criterion figure (Redis' CPU, not
/// this process' time, is the measure).
fn redis_cpu_per_request() {
    let single = RedisServer::start();
    redis_cost("one Redis", &single, || single.cpu_ticks());
    drop(single);
    let cluster = RedisCluster::start();
    redis_cost("three-master cluster", &cluster, || cluster.cpu_ticks());
}

fn redis_cost(name: &str, store: &dyn SharedCounters, cpu_ticks: impl Fn() -> u64) {
    const REQUESTS: usize = 20_000;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let options = MeterOptions {
        redis_url: Some(store.url()),
        redis_cluster: store.cluster(),
        redis_timeout: Duration::from_secs(1),
        fail_mode: FailMode::Closed,
        ..MeterOptions::default()
    };
    let meter = {
        let _guard = runtime.enter();
        Arc::new(Meter::open(&options, Arc::new(Metrics::default())).expect("meter"))
    };
    runtime.block_on(meter.warm_up());
    let (t, m) = (Arc::new(tenant()), Arc::new(model()));
    let run = |count: usize| {
        use futures::StreamExt as _;
        runtime.block_on(
            futures::stream::iter(0..count).for_each_concurrent(64, |_| {
                let (meter, t, m) = (meter.clone(), t.clone(), m.clone());
                async move {
                    let candidates = [Candidate {
                        model: Some(&m),
                        platform: true,
                    }];
                    let ticket = meter
                        .admit(&t, &candidates, SIZE, "platform", "gpt-4o", None)
                        .await
                        .expect("admitted");
                    meter.settle(ticket, Some(served(&m))).await;
                }
            }),
        );
        runtime.block_on(async {
            while meter.settlements_in_flight() > 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
    };
    run(2_000);
    let (before, started) = (cpu_ticks(), std::time::Instant::now());
    run(REQUESTS);
    let (ticks, elapsed) = (cpu_ticks() - before, started.elapsed());
    let micros = ticks as f64 * 10_000.0 / REQUESTS as f64;
    eprintln!(
        "metering/redis_cpu ({name}): {micros:.1} µs of Redis CPU per request, so ~{:.0} requests/s per Redis core; {:.0} requests/s from one client process",
        1e6 / micros,
        REQUESTS as f64 / elapsed.as_secs_f64()
    );
}

criterion_group!(benches, pure, meters);
criterion_main!(benches);
