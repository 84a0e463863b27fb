//! Reserve-then-settle under concurrency, embedded and through a real Redis shared by several
//! meters (as several gateway replicas share it): limits admit exactly their number, budgets
//! exactly N requests of N × their cost, Redis outages follow the fail mode, and the ledger
//! restores the counters after a restart.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::redis::RedisServer;
use dgidgi::config::{BudgetAction, EffectiveLimits, Source};
use dgidgi::config::{BudgetConfig, ModelConfig, PricingConfig, TenantConfig};
use dgidgi::metering::charge::LimitKind;
use dgidgi::metering::ledger::{LedgerOptions, read_all};
use dgidgi::metering::meter::UsageSummary;
use dgidgi::metering::plan::{Candidate, RequestSize};
use dgidgi::metering::{FailMode, Meter, MeterOptions, Refused, Served, Ticket};
use dgidgi::metrics::Metrics;
use dgidgi::usage::Usage;

fn tenant(limits: Option<EffectiveLimits>, budget: Option<BudgetConfig>) -> TenantConfig {
    // A namespace of its own: a limited tenant counts on its namespace's counters.
    let namespace = format!("team-{}", rand::random::<u32>());
    TenantConfig {
        id: format!("{namespace}/acme"),
        namespace,
        name: "acme".into(),
        tier: "pro".into(),
        source: Source::Platform,
        limits,
        budget,
        ..TenantConfig::default()
    }
}

fn limits(rpm: u64, tpd: u64, concurrent: u64) -> Option<EffectiveLimits> {
    Some(EffectiveLimits {
        requests_per_minute: rpm,
        tokens_per_day: tpd,
        concurrent,
    })
}

fn model() -> ModelConfig {
    ModelConfig {
        embedding: false,
        name: "gpt-test".into(),
        aliases: Vec::new(),
        streaming: true,
        function_calling: true,
        context_window: None,
        max_output_tokens: Some(100),
        pricing: Some(PricingConfig {
            input_micro_usd_per_million: 2_000_000,
            output_micro_usd_per_million: 8_000_000,
            long_context: None,
        }),
    }
}

async fn meter(
    redis: Option<&RedisServer>,
    fail_mode: FailMode,
    state: Option<&std::path::Path>,
) -> Arc<Meter> {
    meter_with_timeout(redis, fail_mode, state, Duration::from_secs(2)).await
}

/// A meter whose Redis calls give up after `timeout` (short only where an outage is tested; a
/// busy CI machine must not turn a slow answer into a refusal elsewhere).
async fn meter_with_timeout(
    redis: Option<&RedisServer>,
    fail_mode: FailMode,
    state: Option<&std::path::Path>,
    timeout: Duration,
) -> Arc<Meter> {
    let options = MeterOptions {
        redis_url: redis.map(RedisServer::url),
        fail_mode,
        redis_timeout: timeout,
        ledger: state.map(|dir| LedgerOptions {
            state_dir: dir.to_owned(),
            retention_days: 30,
            json_lines: Some(dir.join("ledger.jsonl")),
            max_bytes: None,
        }),
        ..MeterOptions::default()
    };
    open_ready(&options, Arc::new(Metrics::default())).await
}

/// Opens a meter counting into `metrics` and waits, as a gateway does, until it is connected
/// and synced with Redis' epoch; heartbeats from then on.
async fn open_ready(options: &MeterOptions, metrics: Arc<Metrics>) -> Arc<Meter> {
    let meter = Arc::new(Meter::open(options, metrics).expect("meter opens"));
    let running = meter.clone();
    tokio::spawn(async move {
        running.warm_up().await;
        running.heartbeats().await;
    });
    for _ in 0..500 {
        if meter.ready() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(meter.ready(), "the meter's Redis is ready");
    meter
}

/// 400 bytes of body: 100 prompt tokens; max 100 output: 200 tokens reserved.
fn size() -> RequestSize {
    RequestSize {
        body_bytes: 400,
        max_output_tokens: Some(100),
        choices: 1,
    }
}

async fn admit(meter: &Meter, tenant: &TenantConfig, m: &ModelConfig) -> Result<Ticket, Refused> {
    let candidates = [Candidate {
        model: Some(m),
        platform: true,
    }];
    meter
        .admit(tenant, &candidates, size(), "platform", "gpt-test", None)
        .await
}

fn served<'a>(m: &'a ModelConfig, usage: Option<Usage>) -> Served<'a> {
    Served {
        provider: "dgidgi-system/openai",
        model: "gpt-test",
        model_label: "gpt-test",
        platform: true,
        pricing: m.pricing.as_ref(),
        usage,
        status: 200,
        outcome: dgidgi::metering::Outcome::Complete,
        fallback: 0,
        first_byte: None,
        output_bound: None,
    }
}

/// Fires `count` admissions at once, spread over `meters`, and counts the admitted ones; the
/// tickets are kept (not settled) so concurrency slots stay taken.
async fn burst(
    meters: &[Arc<Meter>],
    tenant: &TenantConfig,
    count: usize,
) -> (Vec<Ticket>, Vec<Refused>) {
    let m = model();
    let mut tasks = Vec::new();
    for i in 0..count {
        let meter = meters[i % meters.len()].clone();
        let tenant = tenant.clone();
        let m = m.clone();
        tasks.push(tokio::spawn(
            async move { admit(&meter, &tenant, &m).await },
        ));
    }
    let mut admitted = Vec::new();
    let mut refused = Vec::new();
    for task in tasks {
        match task.await.expect("task") {
            Ok(ticket) => admitted.push(ticket),
            Err(why) => refused.push(why),
        }
    }
    (admitted, refused)
}

async fn settle_all(meters: &[Arc<Meter>], tickets: Vec<Ticket>) {
    let m = model();
    for (i, ticket) in tickets.into_iter().enumerate() {
        let usage = Usage {
            input_tokens: 100,
            output_tokens: 50,
            ..Usage::default()
        };
        meters[i % meters.len()]
            .settle(ticket, Some(served(&m, Some(usage))))
            .await;
    }
}

async fn rpm_is_exact(meters: &[Arc<Meter>]) {
    let t = tenant(limits(50, 10_000_000, 1_000), None);
    let (admitted, refused) = burst(meters, &t, 300).await;
    assert_eq!(admitted.len(), 50, "exactly the RPM limit is admitted");
    assert_eq!(refused.len(), 250);
    for why in &refused {
        match why {
            Refused::Limit {
                kind: LimitKind::Rpm,
                limit: 50,
                retry_after_ms,
                ..
            } => assert!(*retry_after_ms > 0 && *retry_after_ms <= 60_000),
            other => panic!("unexpected refusal {other:?}"),
        }
    }
    settle_all(meters, admitted).await;
    // Settled requests keep their RPM entries: still refused within the minute.
    assert!(burst(meters, &t, 5).await.0.is_empty());
}

async fn concurrency_is_exact(meters: &[Arc<Meter>]) {
    let t = tenant(limits(10_000, 10_000_000, 5), None);
    let (admitted, refused) = burst(meters, &t, 60).await;
    assert_eq!(admitted.len(), 5, "never more than 5 in flight");
    assert!(refused.iter().all(|r| matches!(
        r,
        Refused::Limit {
            kind: LimitKind::Concurrency,
            ..
        }
    )));
    // Releasing two frees exactly two slots.
    let mut admitted = admitted;
    let two: Vec<Ticket> = admitted.drain(..2).collect();
    settle_all(meters, two).await;
    let (more, _) = burst(meters, &t, 20).await;
    assert_eq!(more.len(), 2);
    // A failure before the first byte gives everything back.
    for ticket in more {
        meters[0].settle(ticket, None).await;
    }
    let (again, _) = burst(meters, &t, 20).await;
    assert_eq!(again.len(), 2);
}

async fn budget_is_exact(meters: &[Arc<Meter>]) {
    // A request reserves 100 in + 100 out: 2e-4 + 8e-4 USD = 1,000 micro-USD. Budget: 7 of them.
    let budget = BudgetConfig {
        monthly_micro_usd: 7_000,
        alert_thresholds: vec![50, 90],
        action: BudgetAction::Block,
    };
    let t = tenant(None, Some(budget));
    let (admitted, refused) = burst(meters, &t, 100).await;
    assert_eq!(admitted.len(), 7, "a budget of N × cost admits exactly N");
    assert!(
        refused
            .iter()
            .all(|r| matches!(r, Refused::Budget { limit: 7_000, .. }))
    );
    // Settling to the real (smaller) usage frees budget for more: 100 in + 50 out = 600.
    settle_all(meters, admitted).await;
    let summary = meters[0].summary(&config_of(&t)).await;
    let figures = &summary.tenants[0];
    assert_eq!(figures.spend_this_month_micro_usd, 7 * 600);
    assert_eq!(figures.tokens_today, 7 * 150);
    assert_eq!(figures.requests_today, 7);
    assert_eq!(figures.thresholds_crossed, vec![50]);
    // 2,800 left: two more reservations of 1,000 fit, a third does not; it is admitted with its
    // output capped to exactly what is left (800 micro-USD: 200 of prompt, 75 output tokens at
    // 8 each), and a fourth finds nothing left.
    let (more, refused) = burst(meters, &t, 10).await;
    assert_eq!(more.len(), 3);
    let mut granted: Vec<(u64, u64)> = more
        .iter()
        .map(|t| (t.reservation.output_tokens, t.reservation.cost_micro_usd))
        .collect();
    granted.sort_unstable();
    assert_eq!(granted, vec![(75, 800), (100, 1_000), (100, 1_000)]);
    assert!(
        refused
            .iter()
            .all(|r| matches!(r, Refused::Budget { spent: 7_000, .. }))
    );
}

fn config_of(t: &TenantConfig) -> dgidgi::config::GatewayConfig {
    dgidgi::config::GatewayConfig {
        version: dgidgi::config::CONFIG_VERSION,
        platform_namespace: "dgidgi-system".into(),
        providers: Vec::new(),
        tenants: vec![t.clone()],
        routing: Vec::new(),
        unbounded_output_tokens: None,
        shards: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_instance_with_embedded_counters_is_exact() {
    let one = [meter(None, FailMode::Open, None).await];
    rpm_is_exact(&one).await;
    concurrency_is_exact(&one).await;
    budget_is_exact(&one).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_instances_sharing_redis_enforce_one_limit() {
    let redis = RedisServer::start();
    let mut three: Vec<Arc<Meter>> = Vec::new();
    for _ in 0..3 {
        three.push(meter(Some(&redis), FailMode::Closed, None).await);
    }
    rpm_is_exact(&three).await;
    concurrency_is_exact(&three).await;
    budget_is_exact(&three).await;
    let t = tenant(None, None);
    let summary: UsageSummary = three[1].summary(&config_of(&t)).await;
    assert!(summary.shared, "figures come from Redis");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_redis_outage_follows_the_fail_mode_and_recovery_is_automatic() {
    let mut redis = RedisServer::start();
    let open = meter_with_timeout(
        Some(&redis),
        FailMode::Open,
        None,
        Duration::from_millis(100),
    )
    .await;
    let closed = meter_with_timeout(
        Some(&redis),
        FailMode::Closed,
        None,
        Duration::from_millis(100),
    )
    .await;
    let t = tenant(limits(3, 1_000_000, 100), None);
    let m = model();
    assert!(admit(&closed, &t, &m).await.is_ok());
    redis.stop();
    let started = std::time::Instant::now();
    assert_eq!(
        admit(&closed, &t, &m).await.unwrap_err(),
        Refused::Unavailable("the shared usage counters are unreachable")
    );
    // Decided promptly (the timeout is 100 ms; the bound here is generous, not a benchmark).
    assert!(started.elapsed() < Duration::from_secs(5));
    // Fail-open admits, but still enforces this replica's own counters: 3 per minute.
    let mut admitted = 0;
    for _ in 0..6 {
        if admit(&open, &t, &m).await.is_ok() {
            admitted += 1;
        }
    }
    assert_eq!(admitted, 3);
    redis.restart();
    // The connection manager reconnects by itself; a restarted (empty) Redis admits again.
    let mut recovered = false;
    for _ in 0..100 {
        if admit(&closed, &t, &m).await.is_ok() {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(recovered, "the gateway recovers when Redis returns");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ledger_restores_counters_and_keeps_unsettled_reservations() {
    let state = tempfile::tempdir().expect("tempdir");
    let t = tenant(limits(1_000, 1_000, 100), None);
    let m = model();
    {
        let meter = meter(None, FailMode::Open, Some(state.path())).await;
        let settled = admit(&meter, &t, &m).await.expect("admitted");
        meter
            .settle(
                settled,
                Some(served(
                    &m,
                    Some(Usage {
                        input_tokens: 120,
                        output_tokens: 30,
                        ..Usage::default()
                    }),
                )),
            )
            .await;
        // Admitted, then the process "dies" before settling: the reservation (200) stands.
        let _lost = admit(&meter, &t, &m).await.expect("admitted");
        meter.flush().await;
        std::mem::forget(_lost);
    }
    let reopened = meter(None, FailMode::Open, Some(state.path())).await;
    let summary = reopened.summary(&config_of(&t)).await;
    assert_eq!(summary.tenants[0].tokens_today, 150 + 200);
    assert_eq!(summary.tenants[0].requests_today, 2);
    // tokens/day continues from there: 1,000 - 350 leaves room for 3 reservations of 200.
    let mut admitted = 0;
    for _ in 0..10 {
        if admit(&reopened, &t, &m).await.is_ok() {
            admitted += 1;
        }
    }
    assert_eq!(admitted, 3);
    reopened.flush().await;
    let records = read_all(state.path()).expect("ledger reads");
    let outcomes: Vec<&str> = records.iter().map(|r| r.outcome.as_str()).collect();
    assert_eq!(outcomes.iter().filter(|o| **o == "complete").count(), 1);
    assert_eq!(outcomes.iter().filter(|o| **o == "interrupted").count(), 1);
    // Refusals are counted per tenant, minute and reason (issue #18), not a row each.
    assert_eq!(outcomes.iter().filter(|o| **o == "refused").count(), 0);
    let refused = dgidgi::metering::refusals::read(state.path()).expect("refusals read");
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(
        (
            refused[0].tenant_id.as_str(),
            refused[0].reason.as_str(),
            refused[0].status,
            refused[0].count
        ),
        (t.id.as_str(), "tpd", 429, 7)
    );
    let complete = records
        .iter()
        .find(|r| r.outcome == "complete")
        .expect("one");
    assert_eq!(
        (
            complete.tokens_input,
            complete.tokens_output,
            complete.cost_micro_usd
        ),
        (120, 30, 480)
    );
    let lines = std::fs::read_to_string(state.path().join("ledger.jsonl")).expect("json lines");
    // The settled request is a line of its own; the seven refusals one line of their sum.
    let (sums, records): (Vec<&str>, Vec<&str>) =
        lines.lines().partition(|line| line.contains(r#""reason""#));
    assert_eq!(sums.len(), 1, "{lines}");
    let sum: serde_json::Value = serde_json::from_str(sums[0]).expect("JSON");
    assert_eq!(
        (sum["reason"].as_str(), sum["count"].as_u64()),
        (Some("tpd"), Some(7))
    );
    assert!(!records.is_empty(), "finished records are also JSON lines");
    for line in records {
        let record: serde_json::Value = serde_json::from_str(line).expect("each line is JSON");
        for field in [
            "tenant_id",
            "provider",
            "model",
            "source",
            "tokens_input",
            "tokens_output",
            "latency_ms",
            "status",
            "timestamp",
        ] {
            assert!(record.get(field).is_some(), "{field} in {line}");
        }
    }
}

/// Tenant `t`'s charges of one concurrency slot and 600 of its 1,000 tokens a day.
fn one_slot_and_600_tokens(t: &str) -> Vec<dgidgi::metering::charge::Charge> {
    use dgidgi::metering::charge::{Charge, Measure};
    vec![
        Charge::Lease {
            key: format!("t:{t}:inflight"),
            limit: 1,
            lease_ms: 900_000,
            kind: LimitKind::Concurrency,
        },
        Charge::Amount {
            key: format!("t:{t}:tokens"),
            limit: Some(1_000),
            amount: 600,
            ttl_ms: 900_000,
            kind: Some(LimitKind::Tpd),
            measure: Measure::Tokens,
            flex: None,
        },
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reservation_whose_answer_was_lost_is_cancelled_exactly_once() {
    use dgidgi::metering::redis::RedisCounters;
    let redis = RedisServer::start();
    let counters = RedisCounters::new(
        &redis.url(),
        dgidgi::metering::redis::Layout::SINGLE,
        Duration::from_secs(2),
    )
    .expect("client");
    let charges = one_slot_and_600_tokens("x");
    // Made, then its answer "lost": the cancellation gives everything back.
    assert!(counters.reserve(&charges, 1).await.unwrap().is_ok());
    counters.cancel(&charges, 1).await.unwrap();
    assert_eq!(
        counters.amounts(&["t:x:tokens".into()]).await.unwrap(),
        vec![0]
    );
    // Cancelling twice changes nothing more.
    counters.cancel(&charges, 1).await.unwrap();
    assert_eq!(
        counters.amounts(&["t:x:tokens".into()]).await.unwrap(),
        vec![0]
    );
    // The slot is free again: another request takes it.
    assert!(counters.reserve(&charges, 2).await.unwrap().is_ok());
    // A cancellation that overtakes its reservation stops it from being made.
    counters.cancel(&charges, 3).await.unwrap();
    assert!(counters.reserve(&charges, 3).await.is_err());
    assert_eq!(
        counters.amounts(&["t:x:tokens".into()]).await.unwrap(),
        vec![600]
    );
    // A normal settlement removes the marker (and a later cancel is then a no-op).
    let releases = dgidgi::metering::plan::releases(&charges, None);
    counters.settle(&charges, &releases, 2).await.unwrap();
    counters.cancel(&charges, 2).await.unwrap();
    assert_eq!(
        counters.amounts(&["t:x:tokens".into()]).await.unwrap(),
        vec![0]
    );
}

/// Each attempt of one request on a provider key is a reservation of its own: a retry or a
/// fallback to the same key is another upstream request, so it counts against the key's
/// requests per minute, and settling one attempt (at once, or resent later after a Redis
/// pause) never releases another's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_attempt_on_a_provider_key_is_a_reservation_of_its_own() {
    use dgidgi::config::ProviderLimitsConfig;
    let redis = RedisServer::start();
    for shared in [None, Some(&redis)] {
        let meter = meter(shared, FailMode::Closed, None).await;
        let ticket = admit(&meter, &tenant(None, None), &model())
            .await
            .expect("admitted");
        let limits = ProviderLimitsConfig {
            requests_per_minute: Some(2),
            tokens_per_minute: None,
        };
        let attempt = || meter.admit_provider("key-a", &limits, &ticket);
        let first = attempt().await.expect("first attempt");
        let second = attempt().await.expect("second attempt");
        assert_eq!(
            attempt().await.err(),
            Some(LimitKind::ProviderRpm),
            "two attempts are two requests (shared: {})",
            shared.is_some()
        );
        // The first failed before answering: its slot comes back, the second keeps its own.
        meter.settle_provider(first, None).await;
        let third = attempt().await.expect("the first's slot");
        assert_eq!(attempt().await.err(), Some(LimitKind::ProviderRpm));
        meter.settle_provider(second, Some(10)).await;
        meter.settle_provider(third, Some(10)).await;
    }
}

/// A settlement Redis did not take in time is sent again until it is. Redis pauses writes, so
/// the settlement waits there and the caller gives up; the connection is then cut, which throws
/// the waiting command away, and Redis resumes. Sent again, the settlement frees the concurrency
/// slot within seconds instead of the lease's 15 minutes, and charges the tokens used, not the
/// reservation. A stop waits for it, up to its deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_settlement_redis_did_not_take_is_sent_again_until_it_is() {
    use dgidgi::metering::plan::{Settlement, releases};
    use dgidgi::metering::redis::RedisCounters;
    use dgidgi::metrics::ResultLabels;
    use prometheus_client::metrics::{counter::Counter, family::Family};

    let redis = RedisServer::start();
    let outcomes = Family::<ResultLabels, Counter>::default();
    let counters = RedisCounters::new(
        &redis.url(),
        dgidgi::metering::redis::Layout::SINGLE,
        Duration::from_millis(200),
    )
    .expect("client")
    .report_redeliveries_to(outcomes.clone());
    let charges = one_slot_and_600_tokens("y");
    assert!(counters.reserve(&charges, 1).await.unwrap().is_ok());
    assert!(
        counters.reserve(&charges, 2).await.unwrap().is_err(),
        "one slot, held"
    );

    let mut admin = redis::Client::open(redis.url())
        .expect("admin client")
        .get_multiplexed_async_connection()
        .await
        .expect("admin connection");
    // The gateway's `EVALSHA`s are writes: they wait; the admin's `CLIENT` commands are not.
    let _: () = redis::cmd("CLIENT")
        .arg(&["PAUSE", "30000", "WRITE"])
        .query_async(&mut admin)
        .await
        .expect("pause");
    let used = Settlement {
        tokens: 100,
        cost_micro_usd: 0,
        estimated: false,
    };
    let settled = counters
        .settle(&charges, &releases(&charges, Some(used)), 1)
        .await;
    assert!(settled.is_err(), "paused: no answer in time");
    let _: i64 = redis::cmd("CLIENT")
        .arg(&["KILL", "TYPE", "normal", "SKIPME", "yes"])
        .query_async(&mut admin)
        .await
        .expect("kill the gateway's connection");
    // Still paused: a stop that gives it a moment finds it waiting.
    let soon = tokio::time::Instant::now() + Duration::from_millis(300);
    assert_eq!(counters.wait_for_redeliveries(soon).await, 1);
    let _: () = redis::cmd("CLIENT")
        .arg("UNPAUSE")
        .query_async(&mut admin)
        .await
        .expect("unpause");

    // Resumed: a stop waits for it to land (as a stopping gateway does, see `Meter::stop`).
    let later = tokio::time::Instant::now() + Duration::from_secs(20);
    assert_eq!(counters.wait_for_redeliveries(later).await, 0);
    let applied = outcomes.get_or_create(&ResultLabels { result: "applied" });
    assert_eq!(applied.get(), 1, "counted as sent again and taken");
    // A read may fail once while the connection manager notices the cut and reconnects.
    let tokens = || async { counters.amounts(&["t:y:tokens".into()]).await.ok() };
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while tokens().await.is_none() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        tokens().await,
        Some(vec![100]),
        "settled to the tokens used"
    );
    assert!(
        counters.reserve(&charges, 2).await.unwrap().is_ok(),
        "the slot is free again"
    );
    // Sending the settlement once more (as a second replica's copy would) changes nothing.
    counters
        .settle(&charges, &releases(&charges, Some(used)), 1)
        .await
        .unwrap();
    assert_eq!(tokens().await, Some(vec![700]));
}

/// The Redis scripts and the embedded book execute the same charge lists: on one sequence of
/// reservations (refused at every position of the list, so the script's undo runs for each),
/// settlements and cancellations, both admit and refuse the same requests with the same
/// figures, settle to the same values, and every key Redis holds afterwards has a TTL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_and_the_embedded_book_agree_on_every_outcome() {
    use dgidgi::metering::book::Book;
    use dgidgi::metering::charge::{Charge, Flex, Measure, grant};
    use dgidgi::metering::clock::now_ms;
    use dgidgi::metering::plan::{Settlement, releases};
    use dgidgi::metering::redis::RedisCounters;
    use rand_chacha::ChaCha8Rng;
    use rand_chacha::rand_core::{RngCore as _, SeedableRng as _};

    let redis = RedisServer::start();
    let counters = RedisCounters::new(
        &redis.url(),
        dgidgi::metering::redis::Layout::SINGLE,
        Duration::from_secs(2),
    )
    .expect("client");
    let mut book = Book::default();
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    // Four tenants, each held back by a different one of its limits (the others are wide), so
    // refusals happen at every position of the list.
    let tight = [
        (10, 1_000, 1_000_000, 1_000_000),
        (1_000, 3, 1_000_000, 1_000_000),
        (1_000, 1_000, 4_000, 1_000_000),
        (1_000, 1_000, 1_000_000, 5_000),
    ];
    // Flexible amounts (a request's output granted below its ask when a counter is short): the
    // tokens as prompt + choices × output, the price in micro-USD per million.
    let charges = |tenant: usize, tokens: u64, cost: u64, output: Option<(u64, u64)>| {
        let (rpm, concurrent, tokens_per_day, budget) = tight[tenant];
        let tokens_flex = output.map(|(ask, choices)| Flex {
            fixed: tokens / 4,
            per_output: choices,
            scale: 1,
            ask,
        });
        let spend_flex = output.map(|(ask, choices)| Flex {
            fixed: cost * 250_000,
            per_output: choices * 1_500_000,
            scale: 1_000_000,
            ask,
        });
        vec![
            Charge::Window {
                key: format!("t:{tenant}:rpm"),
                limit: rpm,
                window_ms: 600_000,
                kind: LimitKind::Rpm,
            },
            Charge::Lease {
                key: format!("t:{tenant}:inflight"),
                limit: concurrent,
                lease_ms: 700_000,
                kind: LimitKind::Concurrency,
            },
            Charge::Amount {
                key: format!("t:{tenant}:tokens"),
                limit: Some(tokens_per_day),
                amount: tokens_flex.map_or(tokens, |f| f.amount(f.ask)),
                ttl_ms: 800_000,
                kind: Some(LimitKind::Tpd),
                measure: Measure::Tokens,
                flex: tokens_flex,
            },
            Charge::Amount {
                key: format!("t:{tenant}:requests"),
                limit: None,
                amount: 1,
                ttl_ms: 900_000,
                kind: None,
                measure: Measure::Requests,
                flex: None,
            },
            Charge::Amount {
                key: format!("t:{tenant}:spend"),
                limit: Some(budget),
                amount: spend_flex.map_or(cost, |f| f.amount(f.ask)),
                ttl_ms: 1_000_000,
                kind: Some(LimitKind::Budget),
                measure: Measure::MicroUsd,
                flex: spend_flex,
            },
        ]
    };
    let mut held: Vec<(u128, Vec<Charge>, Vec<Charge>)> = Vec::new();
    let mut shrunk = 0;
    let mut refused_at = [0usize; 5];
    let mut admitted = 0;
    for member in 1..=800u128 {
        let roll = rng.next_u32() % 10;
        if roll < 6 || held.is_empty() {
            let output = (rng.next_u32() % 2 == 0).then(|| {
                (
                    u64::from(rng.next_u32() % 2_000),
                    u64::from(1 + rng.next_u32() % 3),
                )
            });
            let list = charges(
                rng.next_u32() as usize % tight.len(),
                u64::from(rng.next_u32() % 700),
                u64::from(rng.next_u32() % 900),
                output,
            );
            let by_book = book.reserve(&list, member, now_ms());
            let by_redis = counters
                .reserve(&list, member)
                .await
                .expect("redis answers");
            match (&by_book, &by_redis) {
                (Ok(book_after), Ok(redis_after)) => {
                    assert_eq!(book_after, redis_after, "request {member}");
                    admitted += 1;
                    let mut granted = list.clone();
                    if let (Some(output), Some((ask, _))) = (book_after.output, output) {
                        assert!(output <= ask, "granted more than asked");
                        if output < ask {
                            shrunk += 1;
                        }
                        grant(&mut granted, output);
                    }
                    held.push((member, granted, list));
                }
                (Err(book_refusal), Err(redis_refusal)) => {
                    assert_eq!(
                        (book_refusal.index, book_refusal.limit, book_refusal.current),
                        (
                            redis_refusal.index,
                            redis_refusal.limit,
                            redis_refusal.current
                        ),
                        "request {member}"
                    );
                    if book_refusal.index == 0 {
                        assert!(redis_refusal.retry_after_ms > 0, "a full window says when");
                    }
                    refused_at[book_refusal.index] += 1;
                    // Its reserve "timed out" on the gateway's side: the cancellation finds
                    // the refusal left nothing, and takes nothing back.
                    if roll < 2 {
                        counters.cancel(&list, member).await.expect("cancel");
                    }
                }
                _ => panic!("request {member}: book {by_book:?}, redis {by_redis:?}"),
            }
        } else {
            let (settled_member, list, asked) =
                held.swap_remove(rng.next_u32() as usize % held.len());
            if roll == 9 {
                // Cancelled (the answer was lost, so the gateway never learned the grant: it
                // cancels the list as asked): everything taken goes back.
                book.settle(&releases(&list, None), settled_member, now_ms());
                counters
                    .cancel(&asked, settled_member)
                    .await
                    .expect("cancel");
            } else {
                let settlement = Settlement {
                    tokens: u64::from(rng.next_u32() % 900),
                    cost_micro_usd: u64::from(rng.next_u32() % 1_200),
                    estimated: false,
                };
                let steps = releases(&list, Some(settlement));
                let by_book = book.settle(&steps, settled_member, now_ms());
                let by_redis = counters
                    .settle(&list, &steps, settled_member)
                    .await
                    .expect("settle");
                assert_eq!(by_book, by_redis, "settling {settled_member}");
                // A retry whose first attempt reached Redis (its answer was lost) changes
                // nothing.
                if roll == 8 {
                    let again = counters
                        .settle(&list, &steps, settled_member)
                        .await
                        .expect("settle again");
                    assert!(again.is_empty(), "settled twice: {again:?}");
                }
            }
        }
    }
    // Every position of the list refused something, so every undo length ran.
    assert!(admitted > 20, "{admitted} admitted");
    assert!(shrunk >= 5, "only {shrunk} grants below the ask");
    for (index, count) in refused_at.iter().enumerate() {
        if index != 3 {
            assert!(*count > 0, "no refusal at charge {index}: {refused_at:?}");
        }
    }
    let keys: Vec<String> = (0..tight.len())
        .flat_map(|t| ["tokens", "requests", "spend"].map(|c| format!("t:{t}:{c}")))
        .collect();
    let book_amounts: Vec<u64> = keys.iter().map(|k| book.amount(k, now_ms())).collect();
    assert_eq!(counters.amounts(&keys).await.unwrap(), book_amounts);
    let client = redis::Client::open(redis.url()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let stored: Vec<String> = redis::cmd("KEYS")
        .arg("dgidgi:*")
        .query_async(&mut connection)
        .await
        .unwrap();
    let windows = (0..tight.len()).map(|t| format!("t:{t}:rpm"));
    for key in keys.iter().cloned().chain(windows) {
        assert!(
            stored.contains(&format!("dgidgi:{key}")),
            "{key} in {stored:?}"
        );
    }
    // Each key's TTL is its own charge's (windows and leases from their last write, amounts
    // from their first; markers outlive any request): no slot mixed up, none missing.
    for key in stored {
        let ttl: i64 = redis::cmd("PTTL")
            .arg(&key)
            .query_async(&mut connection)
            .await
            .unwrap();
        let marker = key.starts_with("dgidgi:r:");
        let set = [
            (":rpm", 600_000),
            (":inflight", 700_000),
            (":tokens", 800_000),
            (":requests", 900_000),
            (":spend", 1_000_000),
        ]
        .iter()
        .find(|(suffix, _)| !marker && key.ends_with(suffix))
        .map_or(86_400_000, |(_, ttl)| *ttl);
        assert!(
            ttl <= set && ttl > set - 60_000,
            "{key}: TTL {ttl} ms, set {set} ms"
        );
    }
}

/// Calls made together leave in one pipeline, and each still gets its own answer: a call whose
/// script fails does not fail the others (and leaves nothing of itself behind), and after Redis
/// forgot its scripts (a restart, here a `SCRIPT FLUSH`) every call of the batch that found them
/// missing is sent once more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_calls_answer_one_by_one_and_survive_forgotten_scripts() {
    use dgidgi::metering::charge::{Charge, Measure};
    use dgidgi::metering::redis::RedisCounters;

    let redis = RedisServer::start();
    let counters = Arc::new(
        RedisCounters::new(
            &redis.url(),
            dgidgi::metering::redis::Layout::SINGLE,
            Duration::from_secs(2),
        )
        .expect("client"),
    );
    let amount = |key: &str, amount: u64| {
        vec![Charge::Amount {
            key: key.into(),
            limit: None,
            amount,
            ttl_ms: 600_000,
            kind: None,
            measure: Measure::Tokens,
            flex: None,
        }]
    };
    let client = redis::Client::open(redis.url()).unwrap();
    let mut admin = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("RPUSH")
        .arg("dgidgi:t:b:list")
        .arg("not a counter")
        .query_async(&mut admin)
        .await
        .unwrap();
    for round in 0..3u128 {
        let _: () = redis::cmd("SCRIPT")
            .arg("FLUSH")
            .query_async(&mut admin)
            .await
            .unwrap();
        let reads_before = reads_processed(&mut admin).await;
        let calls = (0..64u128).map(|i| {
            let counters = counters.clone();
            // Every eighth call counts into a key that holds a list: its script fails after
            // the first of its two charges, which must not stay.
            let charges = if i % 8 == 7 {
                [amount("t:b:partial", 10), amount("t:b:list", 10)].concat()
            } else {
                amount("t:b:tokens", 10)
            };
            tokio::spawn(async move { counters.reserve(&charges, round * 1_000 + i + 1).await })
        });
        let mut failed = 0;
        for (i, call) in calls.collect::<Vec<_>>().into_iter().enumerate() {
            match call.await.unwrap() {
                Ok(Ok(_)) => assert_ne!(i % 8, 7, "call {i} should have failed"),
                Err(error) => {
                    assert_eq!(i % 8, 7, "call {i} failed: {error}");
                    failed += 1;
                }
                Ok(Err(refusal)) => panic!("no limit, yet refused: {refusal:?}"),
            }
        }
        assert_eq!(failed, 8);
        // 64 calls, sent again after the flush, and the scripts loaded: a few pipelines, not
        // a read per call (the INFO calls themselves are two of these reads).
        let reads_after = reads_processed(&mut admin).await;
        assert!(
            reads_after - reads_before < 32,
            "{} reads for 64 calls",
            reads_after - reads_before
        );
    }
    assert_eq!(
        counters
            .amounts(&["t:b:tokens".into(), "t:b:partial".into()])
            .await
            .unwrap(),
        vec![3 * 56 * 10, 0]
    );
}

/// How many reads Redis has processed (one per batch of commands it read from a client).
async fn reads_processed(connection: &mut redis::aio::MultiplexedConnection) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("stats")
        .query_async(connection)
        .await
        .unwrap();
    info.lines()
        .find_map(|line| line.strip_prefix("total_reads_processed:"))
        .and_then(|value| value.trim().parse().ok())
        .expect("INFO stats has total_reads_processed")
}

/// Issue #18, leak 8: a usage report no answer could have (u64::MAX tokens, more output than
/// the attempt allowed, or no input at all) is not believed: the reservation is charged, marked
/// estimated, counted in a metric, and the ledger stores proper integers. Before, u64::MAX was
/// charged as 2^41 tokens and the ledger stored -1; 0/0 made a request free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_no_answer_could_have_is_not_believed() {
    let state = tempfile::tempdir().expect("tempdir");
    let metrics = Arc::new(Metrics::default());
    let options = MeterOptions {
        ledger: Some(LedgerOptions {
            state_dir: state.path().to_owned(),
            retention_days: 30,
            json_lines: None,
            max_bytes: None,
        }),
        ..MeterOptions::default()
    };
    let meter = Meter::open(&options, metrics.clone()).expect("meter opens");
    let t = tenant(limits(1_000, 1_000_000, 100), None);
    let m = model();
    let absurd = [
        Usage {
            input_tokens: u64::MAX,
            output_tokens: u64::MAX,
            ..Usage::default()
        },
        Usage::default(),
        Usage {
            input_tokens: 10,
            output_tokens: 101,
            ..Usage::default()
        },
    ];
    for usage in absurd {
        let ticket = admit(&meter, &t, &m).await.expect("admitted");
        assert_eq!(ticket.reservation.tokens, 200);
        let mut served = served(&m, Some(usage));
        // The attempt was allowed 100 output tokens.
        served.output_bound = Some(100);
        meter.settle(ticket, Some(served)).await;
    }
    // Believable: 10 in, 100 out.
    let ticket = admit(&meter, &t, &m).await.expect("admitted");
    let mut fine = served(
        &m,
        Some(Usage {
            input_tokens: 10,
            output_tokens: 100,
            ..Usage::default()
        }),
    );
    fine.output_bound = Some(100);
    meter.settle(ticket, Some(fine)).await;
    let summary = meter.summary(&config_of(&t)).await;
    assert_eq!(summary.tenants[0].tokens_today, 3 * 200 + 110);
    meter.flush().await;
    let records = read_all(state.path()).expect("ledger reads");
    let mut estimated: Vec<(u64, bool)> = records.iter().map(|r| (r.tokens, r.estimated)).collect();
    estimated.sort_unstable();
    assert_eq!(
        estimated,
        vec![(110, false), (200, true), (200, true), (200, true)]
    );
    assert!(
        records
            .iter()
            .all(|r| r.tokens_input <= i64::MAX as u64 && r.tokens_output <= i64::MAX as u64),
        "{records:?}"
    );
    let text = metrics.encode();
    assert!(
        text.contains("dgidgi_unbelievable_usage_total{provider=\"dgidgi-system/openai\"} 3"),
        "{text}"
    );
}

/// Issue #18, leak 10: one tenant's refusals cannot fill the disk the ledger shares with every
/// other tenant. 5,000 refused requests grow the state directory by at most 256 KiB (before:
/// a 300-byte row each, 120k refusals in 20 s filled a small volume and every tenant got 503).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_grow_the_state_directory_by_a_bounded_amount() {
    let state = tempfile::tempdir().expect("tempdir");
    let meter = meter(None, FailMode::Open, Some(state.path())).await;
    // Concurrency 1, held: every later request is refused.
    let t = tenant(limits(1_000_000, 1_000_000_000, 1), None);
    let m = model();
    let held = admit(&meter, &t, &m).await.expect("admitted");
    meter.flush().await;
    let size = |dir: &std::path::Path| -> u64 {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum()
    };
    let before = size(state.path());
    for _ in 0..5_000 {
        assert!(admit(&meter, &t, &m).await.is_err());
    }
    meter.flush().await;
    let grown = size(state.path()).saturating_sub(before);
    assert!(
        grown <= 256 * 1024,
        "5,000 refusals grew the state directory by {grown} bytes"
    );
    let refused = dgidgi::metering::refusals::read(state.path()).expect("refusals read");
    assert_eq!(
        refused.iter().map(|r| r.count).sum::<u64>(),
        5_000,
        "{refused:?}"
    );
    assert!(
        refused
            .iter()
            .all(|r| r.reason == "concurrency" && r.status == 429)
    );
    meter.settle(held, None).await;
}

/// Issue #18: the ledger's disk use can be bounded (`--ledger-max-bytes`). A full ledger fails
/// admissions closed (503 `limits_unavailable`: nothing is served that could not be recorded)
/// instead of filling the volume, and its database stays within the bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_ledger_fails_admissions_closed_within_its_bound() {
    let state = tempfile::tempdir().expect("tempdir");
    let max_bytes = 128 * 1024;
    let options = MeterOptions {
        ledger: Some(LedgerOptions {
            state_dir: state.path().to_owned(),
            retention_days: 30,
            json_lines: None,
            max_bytes: Some(max_bytes),
        }),
        ..MeterOptions::default()
    };
    let meter = Meter::open(&options, Arc::new(Metrics::default())).expect("meter opens");
    let t = tenant(limits(1_000_000, 1_000_000_000, 100), None);
    let m = model();
    let mut recorded = 0;
    let refused = loop {
        let mut ticket = admit(&meter, &t, &m)
            .await
            .expect("admitted by the counters");
        match ticket.journalled().await {
            Ok(()) => {
                recorded += 1;
                meter.settle(ticket, Some(served(&m, None))).await;
            }
            Err(refused) => {
                meter.settle(ticket, None).await;
                break refused;
            }
        }
        assert!(recorded < 100_000, "the ledger never filled");
    };
    assert_eq!(
        refused,
        Refused::Unavailable("the usage ledger cannot be written")
    );
    assert!(
        recorded > 50,
        "only {recorded} recorded before the ledger was full"
    );
    let database = std::fs::metadata(state.path().join("ledger.sqlite3"))
        .expect("the ledger file")
        .len();
    assert!(
        database <= max_bytes,
        "{database} bytes past a {max_bytes}-byte bound"
    );
}

/// Upgrading to epochs doubles nothing: a ledger that never took part in one (written by a
/// build before them) adopts the epoch of the Redis it meets instead of adding its usage, which
/// that Redis' counters already hold. Its next loss of data is rebuilt as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ledger_from_before_epochs_adopts_the_redis_it_meets() {
    let redis = RedisServer::start();
    let state = tempfile::tempdir().expect("tempdir");
    let t = tenant(limits(1_000, 1_000_000, 100), None);
    let m = model();
    let tokens_key = |day: &str| format!("dgidgi:t:{}:tokens:{day}", t.meter());
    let day = dgidgi::metering::clock::Day::of(dgidgi::metering::clock::now_ms()).key();
    let client = redis::Client::open(redis.url()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    {
        let meter = meter(Some(&redis), FailMode::Closed, Some(state.path())).await;
        for _ in 0..3 {
            let ticket = admit(&meter, &t, &m).await.expect("admitted");
            meter.settle(ticket, Some(served(&m, None))).await;
        }
        meter.flush().await;
    }
    let counted: u64 = redis::cmd("GET")
        .arg(tokens_key(&day))
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(counted, 3 * 200);
    // As before epochs existed: no epoch beside the ledger, none in Redis.
    std::fs::remove_file(state.path().join("redis-epoch")).unwrap();
    let _: () = redis::cmd("DEL")
        .arg("dgidgi:epoch")
        .query_async(&mut connection)
        .await
        .unwrap();
    let _upgraded = meter(Some(&redis), FailMode::Closed, Some(state.path())).await;
    let counted: u64 = redis::cmd("GET")
        .arg(tokens_key(&day))
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(counted, 3 * 200, "the ledger's usage was added twice");
}

/// Every metered LlmTenant of a namespace spends one allowance: a neighbour's spend that takes
/// the namespace past an LlmTenant's alert line is announced at that tenant's next settlement,
/// once (by every replica together, through Redis). Before, a threshold was announced only when
/// the tenant's own settlement crossed it, so this one was never announced by the gateway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_threshold_crossed_by_a_neighbours_spend_is_announced_at_the_next_settlement() {
    let redis = RedisServer::start();
    for shared in [false, true] {
        let metrics = Arc::new(Metrics::default());
        let options = MeterOptions {
            redis_url: shared.then(|| redis.url()),
            fail_mode: FailMode::Closed,
            redis_timeout: Duration::from_secs(2),
            ..MeterOptions::default()
        };
        let meter = open_ready(&options, metrics.clone()).await;
        let alerted = tenant(
            limits(1_000, 1_000_000, 100),
            Some(BudgetConfig {
                monthly_micro_usd: 4_000,
                alert_thresholds: vec![50],
                action: BudgetAction::Alert,
            }),
        );
        let mut neighbour = tenant(limits(1_000, 1_000_000, 100), None);
        neighbour.namespace = alerted.namespace.clone();
        neighbour.id = format!("{}/neighbour", alerted.namespace);
        neighbour.name = "neighbour".into();
        let m = model();
        // 50 input and 50 output tokens: 500 micro-USD a request, below its reservation.
        let usage = Usage {
            input_tokens: 50,
            output_tokens: 50,
            ..Usage::default()
        };
        let announced = || {
            metrics
                .budget_thresholds
                .get_or_create(&dgidgi::metrics::TenantLabels {
                    tenant: alerted.id.clone(),
                })
                .get()
        };
        for _ in 0..5 {
            let ticket = admit(&meter, &neighbour, &m).await.expect("admitted");
            meter.settle(ticket, Some(served(&m, Some(usage)))).await;
        }
        assert_eq!(
            announced(),
            0,
            "nothing of the alerted tenant's settled yet"
        );
        for _ in 0..2 {
            let ticket = admit(&meter, &alerted, &m).await.expect("admitted");
            meter.settle(ticket, Some(served(&m, Some(usage)))).await;
        }
        assert_eq!(announced(), 1, "announced once (shared: {shared})");
    }
}

/// The counters of one Redis, and a connection of its own to look at what the scripts left.
async fn counters_and_a_look_inside(
    redis: &RedisServer,
) -> (
    dgidgi::metering::redis::RedisCounters,
    redis::aio::MultiplexedConnection,
) {
    use dgidgi::metering::redis::{Layout, RedisCounters};
    let counters =
        RedisCounters::new(&redis.url(), Layout::SINGLE, Duration::from_secs(2)).expect("client");
    let connection = redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    (counters, connection)
}

/// A window's expired entries are counted out at once and removed now and then (by one
/// request in sixteen, chosen by the last hex digit of its random id): a busy tenant's set holds
/// its live entries and a few more, never every request it ever made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_windows_expired_entries_are_counted_out_and_removed() {
    use dgidgi::metering::charge::Charge;
    let redis = RedisServer::start();
    let (counters, mut connection) = counters_and_a_look_inside(&redis).await;
    let charges = vec![Charge::Window {
        key: "t:w:rpm".into(),
        limit: 5,
        window_ms: 50,
        kind: LimitKind::Rpm,
    }];
    // Members 1 to 100 spell their last hex digit as `member % 16`: 16, 32, … 96 remove.
    for member in 1..=100u128 {
        // At least 15 ms apart, at most four of them are in any 50 ms: each is admitted if only
        // the live entries count, and the sixth is refused if the expired ones did too.
        tokio::time::sleep(Duration::from_millis(15)).await;
        assert!(
            counters.reserve(&charges, member).await.unwrap().is_ok(),
            "request {member} is admitted"
        );
    }
    let held: u64 = redis::cmd("ZCARD")
        .arg("dgidgi:t:w:rpm")
        .query_async(&mut connection)
        .await
        .unwrap();
    // 96 removed what had expired before it: 96 to 100 are held, and at most the three before
    // 96 that were live then (fewer if the machine stalled long enough for the set's TTL, the
    // window, to end it: hence no lower bound). Without the removal, all 100.
    assert!(held <= 8, "{held} entries held after 100 requests");
}

/// A counter that cannot be counted (another type under its key) fails the reservation, and
/// what the script had applied before it is taken back: the lease and the marker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_counter_that_cannot_be_counted_leaves_nothing_reserved() {
    let redis = RedisServer::start();
    let (counters, mut connection) = counters_and_a_look_inside(&redis).await;
    // The lease comes first and is applied; the tokens' key holds a list.
    let _: () = redis::cmd("RPUSH")
        .arg(&["dgidgi:t:y:tokens", "not a counter"])
        .query_async(&mut connection)
        .await
        .unwrap();
    let charges = one_slot_and_600_tokens("y");
    assert!(
        counters.reserve(&charges, 7).await.is_err(),
        "the reservation fails"
    );
    let leases: u64 = redis::cmd("ZCARD")
        .arg("dgidgi:t:y:inflight")
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(
        leases, 0,
        "the lease applied before the failure is taken back"
    );
    let markers: Vec<String> = redis::cmd("KEYS")
        .arg("dgidgi:r:*")
        .query_async(&mut connection)
        .await
        .unwrap();
    assert!(markers.is_empty(), "no marker stays: {markers:?}");
    // With the key fixed, the same request is reserved.
    let _: () = redis::cmd("DEL")
        .arg("dgidgi:t:y:tokens")
        .query_async(&mut connection)
        .await
        .unwrap();
    assert!(counters.reserve(&charges, 7).await.unwrap().is_ok());
}
