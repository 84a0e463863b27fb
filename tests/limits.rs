//! Limits, budgets and metering through the HTTP surface: several gateways sharing a real Redis
//! enforce one tenant's limits as one, a single gateway does the same with embedded counters,
//! streamed and non-streamed requests meter identically, a stream the client cuts is still
//! metered, and neither the ledger nor /metrics holds a key or a prompt.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use common::fake_providers::{self, Answers, Fake};
use common::gateway::{Start, start_in};
use common::http::{self, Answer, header};
use common::redis::{RedisCluster, RedisServer, SharedCounters};
use dgidgi::gateway::server::Running;
use dgidgi::gateway::{AdminToken, Settings};
use dgidgi::metering::ledger::{LedgerOptions, read_all};
use dgidgi::metering::{FailMode, MeterOptions};
use dgidgi::render::RenderOutput;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

const UPSTREAM_KEY: &str = "sk-limits-upstream-key-7d1f";
const PROMPT: &str = "the secret prompt text 93ab";
const ADMIN_TOKEN: &str = "admin-token-for-limits-test-51c2";

/// How the shared fake upstream (`common::fake_providers`) answers this suite: "ok", 11 tokens
/// in and 7 out, with the platform's key or none (the cli endpoint). Its scenarios by model
/// (`common::fake_scenarios`): `slow` answers after a second, `very-slow` after five,
/// `stream-long` streams 200 events 20 ms apart. It counts the requests at it.
const ANSWERS: Answers = Answers {
    text: Some("ok"),
    prompt_tokens: 11,
    completion_tokens: 7,
    cached_tokens: 0,
    keys: &[UPSTREAM_KEY],
    keyless: true,
};

fn fleet(upstream: SocketAddr, namespace_annotations: &str, tenant_spec: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Namespace
metadata:
  name: team-acme
  labels: {{llm.dgidgi.io/tier: enterprise}}
  annotations: {{{namespace_annotations}}}
---
apiVersion: v1
kind: Secret
metadata: {{name: fake-key, namespace: dgidgi-system}}
stringData: {{apiKey: {UPSTREAM_KEY}}}
---
apiVersion: llm.dgidgi.io/v1alpha1
kind: LlmProvider
metadata: {{name: fake, namespace: dgidgi-system}}
spec:
  type: openai-compatible
  baseUrl: "http://{upstream}/v1"
  credentialsRef: {{name: fake-key}}
  timeouts: {{firstByte: 10s, total: 60s}}
  models:
  - {{name: fast, maxOutputTokens: 1000, pricing: {{inputPerMillion: 1, outputPerMillion: 1}}}}
  - {{name: slow, maxOutputTokens: 1000, pricing: {{inputPerMillion: 1, outputPerMillion: 1}}}}
  - {{name: stream-long, maxOutputTokens: 1000, pricing: {{inputPerMillion: 1, outputPerMillion: 1}}}}
  - {{name: very-slow, maxOutputTokens: 1000, pricing: {{inputPerMillion: 1, outputPerMillion: 1}}}}
  - {{name: unpriced, maxOutputTokens: 1000}}
  - {{name: open-ended, pricing: {{inputPerMillion: 1, outputPerMillion: 1}}}}
  - {{name: big, maxOutputTokens: 64000, pricing: {{inputPerMillion: 1, outputPerMillion: 1}}}}
---
apiVersion: llm.dgidgi.io/v1alpha1
kind: LlmProvider
metadata: {{name: fake-limited, namespace: dgidgi-system}}
spec:
  type: openai-compatible
  baseUrl: "http://{upstream}/v1"
  credentialsRef: {{name: fake-key}}
  limits: {{tokensPerMinute: 1000}}
  models:
  - {{name: fast, maxOutputTokens: 1000, pricing: {{inputPerMillion: 1, outputPerMillion: 1}}}}
  - {{name: very-slow, maxOutputTokens: 1000, pricing: {{inputPerMillion: 1, outputPerMillion: 1}}}}
---
apiVersion: llm.dgidgi.io/v1alpha1
kind: LlmProvider
metadata: {{name: mock, namespace: dgidgi-system}}
spec: {{type: mock}}
---
apiVersion: llm.dgidgi.io/v1alpha1
kind: LlmTenant
metadata: {{name: acme, namespace: team-acme}}
spec: {tenant_spec}
"#
    )
}

/// How the gateways of a fleet decide when Redis does not answer in time.
#[derive(Clone)]
struct Shared {
    fail_mode: FailMode,
    timeout: Duration,
    /// Reach Redis here instead (a slow link in front of it).
    url: Option<String>,
}

struct Fleet {
    gateways: Vec<Running>,
    output: RenderOutput,
    upstream: Fake,
    _dir: tempfile::TempDir,
    states: Vec<tempfile::TempDir>,
}

impl Fleet {
    async fn start(
        count: usize,
        redis: Option<&dyn SharedCounters>,
        annotations: &str,
        tenant_spec: &str,
    ) -> Self {
        Self::start_draining(
            count,
            redis,
            annotations,
            tenant_spec,
            Duration::from_secs(5),
        )
        .await
    }

    /// A fleet whose gateways give open requests `drain` to finish when they stop.
    async fn start_draining(
        count: usize,
        redis: Option<&dyn SharedCounters>,
        annotations: &str,
        tenant_spec: &str,
        drain: Duration,
    ) -> Self {
        let shared = Shared {
            fail_mode: FailMode::Closed,
            timeout: Duration::from_secs(2),
            url: None,
        };
        Self::start_with(count, redis, annotations, tenant_spec, drain, shared).await
    }

    /// A fleet whose gateways decide Redis calls as `shared` says.
    async fn start_with(
        count: usize,
        redis: Option<&dyn SharedCounters>,
        annotations: &str,
        tenant_spec: &str,
        drain: Duration,
        shared: Shared,
    ) -> Self {
        let upstream = fake_providers::start_with(ANSWERS).await;
        let address = upstream.address;
        // `UPSTREAM` in the tenant's spec is the fake upstream's address (a cli endpoint).
        let tenant_spec = tenant_spec.replace("UPSTREAM", &address.to_string());
        let output = common::render_yaml(&fleet(address, annotations, &tenant_spec));
        assert!(
            output.report.not_ready().is_empty(),
            "{:?}",
            output.report.not_ready()
        );
        let dir = tempfile::tempdir().unwrap();
        common::gateway::write_config(dir.path(), &output);
        let mut gateways = Vec::new();
        let mut states = Vec::new();
        for _ in 0..count {
            let state = tempfile::tempdir().unwrap();
            let settings = Settings {
                metering: MeterOptions {
                    ledger: Some(LedgerOptions {
                        state_dir: state.path().to_owned(),
                        retention_days: 30,
                        json_lines: None,
                        max_bytes: None,
                    }),
                    redis_url: shared.url.clone().or_else(|| redis.map(|r| r.url())),
                    redis_cluster: redis.is_some_and(|r| r.cluster()),
                    fail_mode: shared.fail_mode,
                    redis_timeout: shared.timeout,
                    ..MeterOptions::default()
                },
                admin_token: AdminToken::new(ADMIN_TOKEN),
                ..Settings::default()
            };
            let how = Start {
                settings,
                drain,
                ..Start::default()
            };
            gateways.push(start_in(dir.path(), how).await);
            states.push(state);
        }
        Self {
            gateways,
            output,
            upstream,
            _dir: dir,
            states,
        }
    }

    fn key(&self) -> String {
        self.output.access_keys[0].value.to_string()
    }

    /// Fires `count` requests at once, round-robin over the gateways.
    async fn burst(
        &self,
        count: usize,
        body: serde_json::Value,
    ) -> Vec<(u16, Vec<(String, String)>, String)> {
        let mut tasks = Vec::new();
        for i in 0..count {
            let address = self.gateways[i % self.gateways.len()].api;
            let key = self.key();
            let body = body.clone();
            tasks.push(tokio::spawn(
                async move { post(address, &key, &body).await },
            ));
        }
        let mut results = Vec::new();
        for task in tasks {
            results.push(task.await.unwrap());
        }
        results
    }

    async fn stop(self) {
        for gateway in self.gateways {
            gateway.shutdown().await;
        }
    }
}

/// Sends `count` requests for `model` without waiting for them (to hang up on, or to drain).
fn in_background(
    address: SocketAddr,
    key: &str,
    model: &str,
    count: usize,
) -> Vec<tokio::task::JoinHandle<Answer>> {
    (0..count)
        .map(|_| {
            let (key, body) = (key.to_owned(), ask(model));
            tokio::spawn(async move { post(address, &key, &body).await })
        })
        .collect()
}

/// Whether a request for `model` is admitted within two seconds (asked every 25 ms): what a
/// reservation given back in the background looks like to the next client.
async fn admitted_soon(address: SocketAddr, key: &str, model: &str) -> bool {
    for _ in 0..80 {
        tokio::time::sleep(Duration::from_millis(25)).await;
        if post(address, key, &ask(model)).await.0 == 200 {
            return true;
        }
    }
    false
}

/// A tenant with room for one request at a time.
const ONE_SLOT: &str = r#""llm.dgidgi.io/requests-per-minute": "1000", "llm.dgidgi.io/tokens-per-day": "100000000", "llm.dgidgi.io/concurrent": "1""#;

/// Holds Redis's writes (the gateway's scripts) for `ms`; its other commands go on.
async fn pause_writes(redis: &RedisServer, ms: u64) {
    let mut admin = redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let _: () = redis::cmd("CLIENT")
        .arg(&["PAUSE", &ms.to_string(), "WRITE"])
        .query_async(&mut admin)
        .await
        .unwrap();
}

/// The tenant of `limits` on a new gateway sharing `redis` has `slots` requests' room at once.
async fn assert_slots_free(redis: &RedisServer, limits: &str, slots: usize, why: &str) {
    let fleet = Fleet::start(1, Some(redis), limits, "{}").await;
    for (status, _, body) in fleet.burst(slots, ask("fake/fast")).await {
        assert_eq!(status, 200, "{why}: {body}");
    }
    fleet.stop().await;
}

/// Starts a long stream (200 events, 4 s) and returns its request id and the response, whose
/// body the caller reads as far as it likes.
async fn open_long_stream(address: SocketAddr, key: &str) -> (String, Response<Incoming>) {
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let mut long = ask("fake/stream-long");
    long["stream"] = true.into();
    let request = Request::post(format!("http://{address}/v1/chat/completions"))
        .header("authorization", format!("Bearer {key}"))
        .body(Full::new(Bytes::from(long.to_string())))
        .unwrap();
    let response = client.request(request).await.unwrap();
    let id = response.headers()["x-dgidgi-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    (id, response)
}

async fn post(address: SocketAddr, key: &str, body: &serde_json::Value) -> Answer {
    http::post_chat(address, key, body).await
}

fn ask(model: &str) -> serde_json::Value {
    serde_json::json!({"model": model, "max_tokens": 100, "messages": [{"role": "user", "content": PROMPT}]})
}

async fn rpm_holds_across(count: usize, redis: Option<&dyn SharedCounters>) {
    let fleet = Fleet::start(
        count,
        redis,
        r#""llm.dgidgi.io/requests-per-minute": "50", "llm.dgidgi.io/tokens-per-day": "100000000", "llm.dgidgi.io/concurrent": "1000""#,
        "{}",
    )
    .await;
    let results = fleet.burst(300, ask("mock/mock-fast")).await;
    let ok = results.iter().filter(|(s, _, _)| *s == 200).count();
    assert_eq!(ok, 50, "exactly RPM requests succeed");
    for (status, headers, body) in results.iter().filter(|(s, _, _)| *s != 200) {
        assert_eq!(*status, 429, "{body}");
        assert!(header(headers, "retry-after").is_some_and(|v| v.parse::<u64>().unwrap() >= 1));
        assert_eq!(header(headers, "x-ratelimit-limit-requests"), Some("50"));
        assert_eq!(header(headers, "x-ratelimit-remaining-requests"), Some("0"));
        assert!(body.contains("rate_limit_exceeded"), "{body}");
    }
    fleet.stop().await;
}

async fn concurrency_holds_across(count: usize, redis: Option<&dyn SharedCounters>) {
    let fleet = Fleet::start(
        count,
        redis,
        r#""llm.dgidgi.io/requests-per-minute": "100000", "llm.dgidgi.io/tokens-per-day": "100000000", "llm.dgidgi.io/concurrent": "5""#,
        "{}",
    )
    .await;
    let results = fleet.burst(30, ask("fake/slow")).await;
    assert!(
        fleet.upstream.most_in_flight.load(Ordering::SeqCst) <= 5,
        "never more than 5 in flight"
    );
    let ok = results.iter().filter(|(s, _, _)| *s == 200).count();
    assert!(ok >= 5, "the five slots were used ({ok})");
    for (status, headers, _) in results.iter().filter(|(s, _, _)| *s != 200) {
        assert_eq!(*status, 429);
        assert_eq!(header(headers, "x-ratelimit-limit-concurrency"), Some("5"));
    }
    fleet.stop().await;
}

async fn budget_holds_across(count: usize, redis: Option<&dyn SharedCounters>) {
    // Body bytes / 4 prompt tokens + 100 output tokens, at 1 USD/M each: micro-USD = tokens.
    let body = ask("fake/slow");
    let prompt = (body.to_string().len() as u64).div_ceil(4);
    let per_request = prompt + 100;
    let budget_usd = (4 * per_request) as f64 / 1e6;
    let fleet = Fleet::start(
        count,
        redis,
        "",
        &format!("{{budget: {{monthlyUsd: {budget_usd}, alertThresholds: [50], action: block}}}}"),
    )
    .await;
    let results = fleet.burst(40, body).await;
    let ok = results.iter().filter(|(s, _, _)| *s == 200).count();
    assert_eq!(ok, 4, "a budget of 4 × a request's cost admits exactly 4");
    for (status, _, body) in results.iter().filter(|(s, _, _)| *s != 200) {
        assert_eq!(*status, 402, "{body}");
        assert!(body.contains("insufficient_quota"));
    }
    // A model without a price cannot be budgeted: refused up front, not served for free.
    let (status, _, body) = post(fleet.gateways[0].api, &fleet.key(), &ask("fake/unpriced")).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("model_not_priced"), "{body}");
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_reserved_output_bound_is_what_the_provider_is_asked_for() {
    let fleet = Fleet::start(1, None, "", "{}").await;
    let (address, key) = (fleet.gateways[0].api, fleet.key());
    let mut unbounded = ask("fake/fast");
    unbounded.as_object_mut().unwrap().remove("max_tokens");
    assert_eq!(post(address, &key, &unbounded).await.0, 200);
    let mut greedy = ask("fake/fast");
    greedy["max_tokens"] = 50_000.into();
    assert_eq!(post(address, &key, &greedy).await.0, 200);
    assert_eq!(post(address, &key, &ask("fake/fast")).await.0, 200);
    // The model's max output (1,000) bounds both the unbounded and the greedy request; a request
    // asking for less keeps its own number.
    let seen: Vec<Option<u64>> = fleet
        .upstream
        .bodies()
        .iter()
        .map(|body| body["max_tokens"].as_u64())
        .collect();
    // Issue #18: the model's maximum is reserved for the request that sets nothing, which
    // passes untouched (the provider cannot generate more); the greedy one is lowered to it.
    assert_eq!(seen, vec![None, Some(1_000), Some(100)]);
    fleet.stop().await;
}

/// The output fields of each request the upstream received: `max_tokens`,
/// `max_completion_tokens`, `n`.
fn seen_output(fleet: &Fleet) -> Vec<(Option<u64>, Option<u64>, Option<u64>)> {
    fleet
        .upstream
        .bodies()
        .iter()
        .map(|b| {
            (
                b["max_tokens"].as_u64(),
                b["max_completion_tokens"].as_u64(),
                b["n"].as_u64(),
            )
        })
        .collect()
}

/// Waits until every gateway of the fleet has settled what it served (settlements run after
/// the answer is sent).
/// Waits until every gateway has heard the whole fleet's heartbeats. A Redis that loses its data
/// is rebuilt from the ledgers of the replicas heard before the loss (docs/scaling.md): one that
/// started after another's last heartbeat is not waited for by it.
async fn all_heard(fleet: &Fleet) {
    let count = fleet.gateways.len() as u64;
    for _ in 0..1000 {
        if fleet
            .gateways
            .iter()
            .all(|g| g.gateway.meter.replicas() >= count)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the gateways did not hear each other");
}

async fn settled(fleet: &Fleet) {
    for _ in 0..500 {
        if fleet
            .gateways
            .iter()
            .all(|g| g.gateway.meter.settlements_in_flight() == 0)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("settlements did not finish");
}

/// The prompt tokens the gateway estimates for a body (one per four bytes).
fn prompt_estimate(body: &serde_json::Value) -> u64 {
    (body.to_string().len() as u64).div_ceil(4)
}

const TOKENS_PER_DAY_10K: &str = r#""llm.dgidgi.io/requests-per-minute": "1000", "llm.dgidgi.io/tokens-per-day": "10000", "llm.dgidgi.io/concurrent": "100""#;

/// Issue #18, leaks 1 and 2: both of OpenAI's output fields, and `n`, are reserved and capped.
/// Before, the reservation read only `max_completion_tokens` (1) and forwarded `max_tokens:
/// 1000000` as sent; `n` was reserved as one answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_output_field_and_n_are_covered_by_the_reservation() {
    for redis in [None, Some(RedisServer::start())] {
        let fleet = Fleet::start(
            1,
            redis.as_ref().map(|r| r as &dyn SharedCounters),
            TOKENS_PER_DAY_10K,
            "{}",
        )
        .await;
        let (address, key) = (fleet.gateways[0].api, fleet.key());
        // A model without a known maximum: the request's largest field is its ask.
        let mut both = ask("fake/open-ended");
        both["max_completion_tokens"] = 1.into();
        both["max_tokens"] = 1_000_000.into();
        let (status, headers, body) = post(address, &key, &both).await;
        assert_eq!(status, 200, "{body}");
        let left = 10_000 - prompt_estimate(&both);
        assert_eq!(
            header(&headers, "x-dgidgi-output-capped"),
            Some(left.to_string().as_str())
        );
        // `n` answers of up to 100 each: 4 × 100 reserved, nothing capped.
        settled(&fleet).await;
        let mut four = ask("fake/fast");
        four["n"] = 4.into();
        let (status, headers, body) = post(address, &key, &four).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(header(&headers, "x-dgidgi-output-capped"), None);
        let remaining: u64 = header(&headers, "x-ratelimit-remaining-tokens")
            .unwrap()
            .parse()
            .unwrap();
        // The first request settled to its 18 reported tokens.
        assert_eq!(remaining, 10_000 - 18 - prompt_estimate(&four) - 4 * 100);
        // 128 answers of 1,000 cannot fit in what is left: each is capped to its share.
        settled(&fleet).await;
        let mut many = ask("fake/fast");
        many["n"] = 128.into();
        many["max_tokens"] = 1_000.into();
        let (status, headers, body) = post(address, &key, &many).await;
        assert_eq!(status, 200, "{body}");
        let share = (10_000 - 2 * 18 - prompt_estimate(&many)) / 128;
        assert_eq!(
            header(&headers, "x-dgidgi-output-capped"),
            Some(share.to_string().as_str())
        );
        assert_eq!(
            seen_output(&fleet),
            vec![
                (Some(left), Some(1), None),
                (Some(100), None, Some(4)),
                (Some(share), None, Some(128)),
            ]
        );
        // A field that multiplies output beyond what can be bounded is refused, not forwarded.
        let mut best_of = ask("fake/fast");
        best_of["best_of"] = 20.into();
        let (status, _, body) = post(address, &key, &best_of).await;
        assert_eq!(status, 400, "{body}");
        assert!(body.contains("best_of"), "{body}");
        assert_eq!(fleet.upstream.bodies().len(), 3);
        fleet.stop().await;
    }
}

/// Issue #18, leak 6: a tenant with room is never capped (a coding agent's 64,000 passes as
/// sent; before, every platform request was cut to --reserve-output-tokens, 4,096), and one
/// near its limit is capped to exactly what is left, never refused for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_output_limit_is_lowered_only_by_what_the_tenant_has_left() {
    for redis in [None, Some(RedisServer::start())] {
        let fleet = Fleet::start(
            1,
            redis.as_ref().map(|r| r as &dyn SharedCounters),
            r#""llm.dgidgi.io/requests-per-minute": "1000", "llm.dgidgi.io/tokens-per-day": "100000", "llm.dgidgi.io/concurrent": "100""#,
            "{}",
        )
        .await;
        let (address, key) = (fleet.gateways[0].api, fleet.key());
        let mut agent = ask("fake/big");
        agent["max_tokens"] = 64_000.into();
        let (status, headers, body) = post(address, &key, &agent).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(header(&headers, "x-dgidgi-output-capped"), None);
        // 100,000 - 18 used: the next has room for 64,000 too; one asking for 99,990 (on a
        // model without a known maximum) is capped to exactly what is left, and the one after
        // it to what is left then.
        let mut expected = vec![Some(64_000), Some(64_000)];
        settled(&fleet).await;
        let (status, _, _) = post(address, &key, &agent).await;
        assert_eq!(status, 200);
        let mut greedy = ask("fake/open-ended");
        greedy["max_tokens"] = 99_990.into();
        let prompt = prompt_estimate(&greedy);
        for used in [2 * 18, 3 * 18] {
            settled(&fleet).await;
            let (status, headers, body) = post(address, &key, &greedy).await;
            assert_eq!(status, 200, "{body}");
            let left = 100_000 - used - prompt;
            assert_eq!(
                header(&headers, "x-dgidgi-output-capped"),
                Some(left.to_string().as_str())
            );
            expected.push(Some(left));
        }
        let seen: Vec<Option<u64>> = seen_output(&fleet).iter().map(|s| s.0).collect();
        assert_eq!(seen, expected);
        fleet.stop().await;
    }
}

/// A provider key's tokens per minute count what each request used (the provider's usage
/// report: 18 tokens here), not what it reserved (~130): thirty requests fit in 1,000 a
/// minute. Before settlements reached the key's counter, the eighth was refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_provider_keys_tokens_per_minute_count_what_was_used() {
    let redis = RedisServer::start();
    for shared in [None, Some(&redis as &dyn SharedCounters)] {
        let fleet = Fleet::start(1, shared, "", "{}").await;
        let (address, key) = (fleet.gateways[0].api, fleet.key());
        for request in 0..30 {
            let (status, _, body) = post(address, &key, &ask("fake-limited/fast")).await;
            assert_eq!(
                status,
                200,
                "request {request} (shared: {}): {body}",
                shared.is_some()
            );
        }
        fleet.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_hanging_up_during_the_upstream_call_frees_its_slot() {
    let fleet = Fleet::start(
        1,
        None,
        r#""llm.dgidgi.io/requests-per-minute": "1000", "llm.dgidgi.io/tokens-per-day": "100000000", "llm.dgidgi.io/concurrent": "1""#,
        "{}",
    )
    .await;
    let (address, key) = (fleet.gateways[0].api, fleet.key());
    let hung_up = in_background(address, &key, "fake/very-slow", 1);
    fleet.upstream.until_in_flight(1).await;
    hung_up[0].abort();
    // The upstream would answer five seconds from now; the slot must be free long before.
    assert!(
        admitted_soon(address, &key, "fake/fast").await,
        "the hung-up request's concurrency slot came back"
    );
    fleet.stop().await;
}

/// Clients hanging up during the upstream call give back what their attempt reserved on the
/// provider key too: seven of them hold ~910 of its 1,000 tokens a minute while they wait, and
/// a request right after they hang up finds the room again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clients_hanging_up_give_back_their_provider_keys_tokens() {
    let fleet = Fleet::start(1, None, "", "{}").await;
    let (address, key) = (fleet.gateways[0].api, fleet.key());
    let hung_up = in_background(address, &key, "fake-limited/very-slow", 7);
    fleet.upstream.until_in_flight(7).await;
    let (status, _, body) = post(address, &key, &ask("fake-limited/fast")).await;
    assert_eq!(status, 429, "the key is full while they wait: {body}");
    for request in &hung_up {
        request.abort();
    }
    // The upstream would answer five seconds from now; the room must be back long before.
    assert!(
        admitted_soon(address, &key, "fake-limited/fast").await,
        "the hung-up attempts' tokens came back"
    );
    fleet.stop().await;
}

/// A gateway that stops settles what it served before it exits: the requests it drains end
/// during shutdown, and their settlements (a Redis round trip, then the ledger) must land,
/// or each one's concurrency slot stays taken in Redis for the lease's 15 minutes and its
/// ledger row stays open at the reservation. Before the meter waited for them, this failed
/// one run in two without the pause below and every run with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stopping_gateway_settles_the_requests_it_drains() {
    let redis = RedisServer::start();
    let limits = r#""llm.dgidgi.io/requests-per-minute": "1000", "llm.dgidgi.io/tokens-per-day": "100000000", "llm.dgidgi.io/concurrent": "4""#;
    let fleet = Fleet::start(1, Some(&redis), limits, "{}").await;
    let (address, key) = (fleet.gateways[0].api, fleet.key());
    let draining = in_background(address, &key, "fake/slow", 4);
    // Redis holds writes for the moment the requests end (they answer a second after they
    // start), so their settlements are still under way when the drain is over.
    tokio::time::sleep(Duration::from_millis(800)).await;
    pause_writes(&redis, 600).await;
    let Fleet {
        gateways, states, ..
    } = fleet;
    for gateway in gateways {
        gateway.shutdown().await;
    }
    let mut ids = Vec::new();
    for request in draining {
        let (status, headers, body) = request.await.unwrap();
        assert_eq!(status, 200, "drained, not cut: {body}");
        ids.push(header(&headers, "x-dgidgi-request-id").unwrap().to_owned());
    }
    let records = read_all(states[0].path()).unwrap();
    for id in &ids {
        let record = records.iter().find(|r| &r.request_id == id).unwrap();
        assert_eq!(
            record.outcome, "complete",
            "settled before exit: {record:?}"
        );
    }
    // The same tenant on a new gateway finds all four slots free at once.
    assert_slots_free(&redis, limits, 4, "the drained requests' slots came back").await;
}

/// A stream still open at the drain deadline is cut, and settled as cut before the gateway
/// exits: its ledger row says `client_gone` and its Redis concurrency slot is free. Before,
/// the deadline only stopped waiting: the connection ran on until the process exited, the
/// settlement never ran, and the slot stayed taken for the lease's 15 minutes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stream_open_past_the_drain_deadline_is_cut_and_settled() {
    let redis = RedisServer::start();
    let fleet =
        Fleet::start_draining(1, Some(&redis), ONE_SLOT, "{}", Duration::from_millis(300)).await;
    let (address, key) = (fleet.gateways[0].api, fleet.key());
    let (id, response) = open_long_stream(address, &key).await;
    // The client keeps reading: the stream (4 s) outlasts the drain.
    let reading = tokio::spawn(async move { response.into_body().collect().await.is_ok() });
    let Fleet {
        gateways, states, ..
    } = fleet;
    let stopping = std::time::Instant::now();
    for gateway in gateways {
        gateway.shutdown().await;
    }
    assert!(
        stopping.elapsed() < Duration::from_secs(3),
        "stopped at the deadline, not at the stream's end"
    );
    assert!(!reading.await.unwrap(), "the stream was cut");
    let records = read_all(states[0].path()).unwrap();
    let record = records.iter().find(|r| r.request_id == id).unwrap();
    assert_eq!(record.outcome, "client_gone", "settled as cut: {record:?}");
    assert_slots_free(&redis, ONE_SLOT, 1, "the cut stream's slot came back").await;
}

/// A request still waiting on its upstream at the drain deadline is cut with its connection,
/// and what it reserved is given back before the gateway exits — over HTTP/1.1 and HTTP/2,
/// where hyper runs each stream's handler in a task of its own (the HTTP/1.1 case failed one
/// run in three while the cut connections were not awaited).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_request_waiting_on_its_upstream_at_the_drain_deadline_gives_its_slot_back() {
    let redis = RedisServer::start();
    for http2 in [false, true] {
        cut_at_the_deadline_and_given_back(&redis, http2).await;
    }
}

async fn cut_at_the_deadline_and_given_back(redis: &RedisServer, http2: bool) {
    let fleet =
        Fleet::start_draining(1, Some(redis), ONE_SLOT, "{}", Duration::from_millis(300)).await;
    let (address, key) = (fleet.gateways[0].api, fleet.key());
    let client: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .http2_only(http2)
        .build_http();
    let request = Request::post(format!("http://{address}/v1/chat/completions"))
        .header("authorization", format!("Bearer {key}"))
        .body(Full::new(Bytes::from(ask("fake/very-slow").to_string())))
        .unwrap();
    let waiting = tokio::spawn(async move { client.request(request).await.map(|r| r.status()) });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let Fleet {
        gateways, states, ..
    } = fleet;
    for gateway in gateways {
        gateway.shutdown().await;
    }
    let answer = waiting.await.unwrap();
    assert!(
        answer.is_err(),
        "cut at the deadline (HTTP/2: {http2}): {answer:?}"
    );
    let records = read_all(states[0].path()).unwrap();
    assert_eq!(records.len(), 1, "{records:?}");
    assert_ne!(
        records[0].outcome, "reserved",
        "settled (HTTP/2: {http2}): {records:?}"
    );
    let why = format!("the cut request's slot came back (HTTP/2: {http2})");
    assert_slots_free(redis, ONE_SLOT, 1, &why).await;
}

/// A client that hangs up while its admission waits on Redis leaves nothing reserved: the
/// script still runs once Redis resumes, and the gateway cancels it. Before, the concurrency
/// slot it took stayed taken for the lease's 15 minutes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_hanging_up_during_its_admission_leaves_nothing_reserved() {
    let redis = RedisServer::start();
    let fleet = Fleet::start(1, Some(&redis), ONE_SLOT, "{}").await;
    let (address, key) = (fleet.gateways[0].api, fleet.key());
    // Connected and the scripts loaded, so the next reservation is in Redis at once.
    assert_eq!(post(address, &key, &ask("fake/fast")).await.0, 200);
    // The reservation script waits in Redis for a second; the client gives up before.
    pause_writes(&redis, 1_000).await;
    let hung_up = in_background(address, &key, "fake/fast", 1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    hung_up[0].abort();
    tokio::time::sleep(Duration::from_millis(900)).await;
    // Redis resumes, runs the reservation, then its cancellation; the slot would otherwise be
    // taken for the lease's 15 minutes.
    assert!(
        admitted_soon(address, &key, "fake/fast").await,
        "the hung-up admission's slot came back"
    );
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_gateways_sharing_redis_enforce_one_tenants_limits_as_one() {
    // Each case starts from an empty Redis (the tenant's counters would carry over).
    let mut redis = RedisServer::start();
    rpm_holds_across(3, Some(&redis)).await;
    redis.restart();
    concurrency_holds_across(3, Some(&redis)).await;
    redis.restart();
    budget_holds_across(3, Some(&redis)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_gateway_without_redis_enforces_the_same() {
    rpm_holds_across(1, None).await;
    concurrency_holds_across(1, None).await;
    budget_holds_across(1, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn streamed_and_unstreamed_meter_the_same_and_a_cut_stream_is_metered() {
    let fleet = Fleet::start(1, None, "", "{}").await;
    let address = fleet.gateways[0].api;
    let key = fleet.key();
    let (status, headers, _) = post(address, &key, &ask("fake/fast")).await;
    assert_eq!(status, 200);
    let plain_id = header(&headers, "x-dgidgi-request-id").unwrap().to_owned();
    let mut streamed = ask("fake/fast");
    streamed["stream"] = true.into();
    let (status, headers, body) = post(address, &key, &streamed).await;
    assert_eq!(status, 200);
    assert!(body.trim_end().ends_with("data: [DONE]"), "{body}");
    assert!(
        !body.contains("\"usage\""),
        "the client did not ask for usage: {body}"
    );
    let stream_id = header(&headers, "x-dgidgi-request-id").unwrap().to_owned();

    // A client that reads a little of a long stream and hangs up.
    let (cut_id, response) = open_long_stream(address, &key).await;
    let mut body = response.into_body();
    let _first = body.frame().await;
    drop(body);

    let state = fleet.states[0].path().to_owned();
    let mut records = Vec::new();
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        records = read_all(&state).unwrap();
        if records
            .iter()
            .any(|r| r.request_id == cut_id && r.outcome != "reserved")
        {
            break;
        }
    }
    let find = |id: &str| {
        records
            .iter()
            .find(|r| r.request_id == id)
            .unwrap_or_else(|| panic!("{id} in {records:?}"))
            .clone()
    };
    let (plain, stream, cut) = (find(&plain_id), find(&stream_id), find(&cut_id));
    assert_eq!((plain.tokens_input, plain.tokens_output), (11, 7));
    assert_eq!(
        (stream.tokens_input, stream.tokens_output),
        (plain.tokens_input, plain.tokens_output)
    );
    assert_eq!(stream.cost_micro_usd, plain.cost_micro_usd);
    assert_eq!(stream.tokens, plain.tokens);
    assert!(!plain.estimated && !stream.estimated);
    assert_eq!(cut.outcome, "client_gone");
    assert!(cut.tokens > 0, "a cut stream is still metered: {cut:?}");

    // No key, access key or prompt in the ledger, the metrics or the usage summary.
    let admin = fleet.gateways[0].admin;
    let metrics = get(admin, "/metrics", None).await.1;
    let (status, usage) = get(admin, "/usage", Some(ADMIN_TOKEN)).await;
    assert_eq!(status, 200, "{usage}");
    let summary: serde_json::Value = serde_json::from_str(&usage).unwrap();
    assert_eq!(summary["tenants"][0]["tenant"], "team-acme/acme");
    assert!(summary["tenants"][0]["tokensToday"].as_u64().unwrap() >= 36);
    assert_eq!(get(admin, "/usage", Some("wrong")).await.0, 401);
    assert_eq!(get(admin, "/usage", None).await.0, 401);
    let mut ledger_bytes = Vec::new();
    for entry in std::fs::read_dir(&state).unwrap() {
        ledger_bytes.extend(std::fs::read(entry.unwrap().path()).unwrap());
    }
    let ledger = String::from_utf8_lossy(&ledger_bytes);
    for (name, text) in [
        ("ledger", ledger.as_ref()),
        ("metrics", &metrics),
        ("usage", &usage),
    ] {
        for secret in [UPSTREAM_KEY, key.as_str(), PROMPT, ADMIN_TOKEN] {
            assert!(!text.contains(secret), "{name} leaks {secret}");
        }
    }
    assert!(
        metrics.contains("gen_ai_client_token_usage_total{"),
        "{metrics}"
    );
    assert!(
        metrics.contains("dgidgi_cost_micro_usd_total{"),
        "{metrics}"
    );
    fleet.stop().await;
}

async fn get(address: SocketAddr, path: &str, token: Option<&str>) -> (u16, String) {
    let (status, _, body) = http::send(address, "GET", path, token, None)
        .await
        .expect("the admin listener answers");
    (status, body)
}

/// Issue #18, leak 5: three fresh replicas sharing Redis, failing open, enforce a tenant's RPM
/// of 10 exactly from their very first requests. Redis is behind a link with a 60 ms round
/// trip and the timeout is 250 ms: a warm call fits, but a cold one (connect, a script Redis
/// does not know yet, loading it, calling it again) does not. Before, the connection was made
/// lazily by the first reservations, which timed out, failed open, and each replica admitted on
/// its own (12 to 14 of 30).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_cold_replicas_enforce_rpm_from_their_first_request() {
    let redis = RedisServer::start();
    let link = common::redis::SlowLink::start(redis.port, Duration::from_millis(30)).await;
    let shared = Shared {
        fail_mode: FailMode::Open,
        timeout: Duration::from_millis(250),
        url: Some(link.url()),
    };
    let fleet = Fleet::start_with(
        3,
        Some(&redis),
        r#""llm.dgidgi.io/requests-per-minute": "10", "llm.dgidgi.io/tokens-per-day": "100000000", "llm.dgidgi.io/concurrent": "1000""#,
        "{}",
        Duration::from_secs(5),
        shared,
    )
    .await;
    for gateway in &fleet.gateways {
        let (status, _, body) = http::send(gateway.admin, "GET", "/readyz", None, None)
            .await
            .unwrap();
        assert_eq!(status, 200, "{body}");
    }
    let results = fleet.burst(30, ask("mock/mock-fast")).await;
    let ok = results.iter().filter(|(s, _, _)| *s == 200).count();
    assert_eq!(ok, 10, "30 requests on 3 cold replicas at RPM 10");
    fleet.stop().await;
}

/// A replica whose Redis has not answered yet is not ready; it is once Redis is up. A Redis
/// that may evict the counters (`volatile-lru`: every counter has a TTL) is reported in a
/// metric and the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readiness_waits_for_redis_and_an_evicting_redis_is_reported() {
    let redis = RedisServer::start();
    let client = redis::Client::open(redis.url()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory-policy")
        .arg("volatile-lru")
        .query_async(&mut connection)
        .await
        .unwrap();
    let fleet = Fleet::start(1, Some(&redis), "", "{}").await;
    let admin = fleet.gateways[0].admin;
    let (status, _, _) = http::send(admin, "GET", "/readyz", None, None)
        .await
        .unwrap();
    assert_eq!(status, 200);
    let (_, _, metrics) = http::send(admin, "GET", "/metrics", None, None)
        .await
        .unwrap();
    assert!(
        metrics.contains("dgidgi_redis_eviction_unsafe 1"),
        "{metrics}"
    );
    fleet.stop().await;
    // Redis down at start: the replica serves its listeners but is not ready until Redis
    // answers.
    let mut down = RedisServer::start();
    down.stop();
    let fleet = Fleet::start(1, Some(&down), "", "{}").await;
    let admin = fleet.gateways[0].admin;
    let (status, _, body) = http::send(admin, "GET", "/readyz", None, None)
        .await
        .unwrap();
    assert_eq!(
        (status, body.as_str()),
        (503, r#"{"status":"waiting for redis"}"#)
    );
    down.restart();
    let mut ready = false;
    for _ in 0..200 {
        if http::send(admin, "GET", "/readyz", None, None)
            .await
            .unwrap()
            .0
            == 200
        {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ready, "ready once Redis answers");
    fleet.stop().await;
}

/// Issue #18: a tenant the platform does not meter (its own keys, or a cli endpoint) still has a
/// protective concurrency ceiling, so it cannot hold the gateway's memory with unbounded
/// requests in flight: the namespace annotation `llm.dgidgi.io/concurrency-ceiling` (default
/// 100). Before, such tenants had no ceiling at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unmetered_tenant_has_a_protective_concurrency_ceiling() {
    let fleet = Fleet::start(
        1,
        None,
        r#""llm.dgidgi.io/allowed-endpoints": "127.0.0.0/8", "llm.dgidgi.io/concurrency-ceiling": "2""#,
        r#"{source: cli, cli: {endpoint: "http://UPSTREAM", model: slow}}"#,
    )
    .await;
    let tenant = &fleet.output.config.tenants[0];
    assert_eq!(
        (tenant.limits.as_ref(), tenant.concurrency_ceiling),
        (None, Some(2))
    );
    let results = fleet.burst(6, ask("slow")).await;
    let ok = results.iter().filter(|(s, _, _)| *s == 200).count();
    assert_eq!(ok, 2, "{results:?}");
    for (status, _, body) in results.iter().filter(|(s, _, _)| *s != 200) {
        assert_eq!(*status, 429, "{body}");
        assert!(body.contains("concurrent requests"), "{body}");
    }
    assert!(fleet.upstream.most_in_flight.load(Ordering::SeqCst) <= 2);
    fleet.stop().await;
}

/// A namespace's tier is one allowance: a second LlmTenant in the namespace (or the same one
/// deleted and created under a new name) shares the counters of the first, so it gets no fresh
/// requests, tokens or budget. Before, the counters were keyed by LlmTenant and two tenants in
/// one namespace were admitted 2 × RPM.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_metered_llmtenant_of_a_namespace_shares_its_tiers_allowance() {
    let second = "{}\n---\napiVersion: llm.dgidgi.io/v1alpha1\nkind: LlmTenant\nmetadata: {name: acme-renamed, namespace: team-acme}\nspec: {}";
    let fleet = Fleet::start(
        1,
        None,
        r#""llm.dgidgi.io/requests-per-minute": "50", "llm.dgidgi.io/tokens-per-day": "100000000", "llm.dgidgi.io/concurrent": "1000""#,
        second,
    )
    .await;
    let keys: Vec<String> = fleet
        .output
        .access_keys
        .iter()
        .map(|k| k.value.to_string())
        .collect();
    assert_eq!(keys.len(), 2, "one access key per LlmTenant");
    let address = fleet.gateways[0].api;
    let mut tasks = Vec::new();
    for i in 0..80 {
        let key = keys[i % 2].clone();
        tasks.push(tokio::spawn(async move {
            post(address, &key, &ask("mock/mock-fast")).await.0
        }));
    }
    let mut ok = [0usize; 2];
    for (i, task) in tasks.into_iter().enumerate() {
        if task.await.unwrap() == 200 {
            ok[i % 2] += 1;
        }
    }
    assert_eq!(ok[0] + ok[1], 50, "one namespace, one RPM: {ok:?}");
    // The usage each LlmTenant reports is its namespace's.
    let (status, usage) = get(fleet.gateways[0].admin, "/usage", Some(ADMIN_TOKEN)).await;
    assert_eq!(status, 200, "{usage}");
    let usage: serde_json::Value = serde_json::from_str(&usage).unwrap();
    let requests: Vec<u64> = usage["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["requestsToday"].as_u64().unwrap())
        .collect();
    assert_eq!(requests, vec![50, 50], "{usage}");
    fleet.stop().await;
}

/// Issue #18, leak 4: three replicas failing open while Redis is down admit about one limit
/// between them, not one each. Each mirrors what it admitted through Redis and takes its share
/// of the limit (RPM 10 over 3 replicas: 3 each) from the heartbeat count. Before, each fell
/// back to counters that had never seen its Redis admissions and admitted a full limit alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_failing_open_take_their_share_of_a_limit() {
    let mut redis = RedisServer::start();
    let shared = Shared {
        fail_mode: FailMode::Open,
        timeout: Duration::from_millis(200),
        url: None,
    };
    let fleet = Fleet::start_with(
        3,
        Some(&redis),
        r#""llm.dgidgi.io/requests-per-minute": "10", "llm.dgidgi.io/tokens-per-day": "100000000", "llm.dgidgi.io/concurrent": "1000""#,
        "{}",
        Duration::from_secs(5),
        shared,
    )
    .await;
    // Every replica has heard that there are three.
    for gateway in &fleet.gateways {
        let mut heard = false;
        for _ in 0..100 {
            let (_, _, metrics) = http::send(gateway.admin, "GET", "/metrics", None, None)
                .await
                .unwrap();
            if metrics.contains("dgidgi_redis_replicas 3") {
                heard = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(heard, "a replica never heard of the other two");
    }
    // Two requests through each replica while Redis answers.
    let before = fleet.burst(6, ask("mock/mock-fast")).await;
    assert!(before.iter().all(|(s, _, _)| *s == 200), "{before:?}");
    redis.stop();
    // Redis down: each replica may admit its share (3) less the 2 it already admitted.
    let during = fleet.burst(30, ask("mock/mock-fast")).await;
    let ok = during.iter().filter(|(s, _, _)| *s == 200).count();
    assert_eq!(ok, 3, "admitted while Redis was down");
    // Back, so the replicas' lost calls land and they stop at once.
    redis.restart();
    fleet.stop().await;
}

// Spends until refused, one request at a time, round the replicas; how many were served.
// Each answer's settlement lands before the next request (as the bound below assumes: at
// most the refused request's own reservation is left as room); on a loaded machine it
// could otherwise still be on its way, leaving that reservation's room too.
async fn spend_until_refused(fleet: &Fleet) -> usize {
    let key = fleet.key();
    let mut served = 0;
    for i in 0..600 {
        let address = fleet.gateways[i % 3].api;
        let (status, _, body) = post(address, &key, &ask("fake/fast")).await;
        match status {
            200 => {
                served += 1;
                settled(fleet).await;
            }
            402 => break,
            // Redis lost its data and this replica has not rebuilt it yet: decided by the
            // fail mode (closed here).
            503 => tokio::time::sleep(Duration::from_millis(50)).await,
            _ => panic!("{status}: {body}"),
        }
    }
    served
}

/// What the ledgers in `states` hold as `tenant`'s spend this month.
fn ledgers_month_spend(states: &[std::path::PathBuf], tenant: &str) -> u64 {
    let today = dgidgi::metering::clock::Day::of(dgidgi::metering::clock::now_ms());
    states
        .iter()
        .map(|state| {
            dgidgi::metering::ledger::current_totals(state, &today.key(), &today.month_key())
                .unwrap()
                .month
                .get(tenant)
                .map_or(0, |t| t.micro_usd)
        })
        .sum()
}

/// Issue #18, leak 3: a Redis that lost its data (FLUSHALL, then a restart without
/// persistence) mid-month does not let a tenant spend its budget again. The replicas add their
/// ledgers' usage to the new epoch before they reserve in it, so the counters equal the
/// ledgers' sum. Before, every day's and month's counter started again from zero.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_redis_that_lost_its_data_is_rebuilt_from_the_ledgers() {
    let mut redis = RedisServer::start();
    let mut fleet = Fleet::start(
        3,
        Some(&redis),
        "",
        "{budget: {monthlyUsd: 0.002, alertThresholds: [50], action: block}}",
    )
    .await;
    let first = spend_until_refused(&fleet).await;
    assert!(first > 5, "{first} served before the budget ran out");
    all_heard(&fleet).await;
    let client = redis::Client::open(redis.url()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("FLUSHALL")
        .query_async(&mut connection)
        .await
        .unwrap();
    // The budget was spent before Redis forgot it: still spent. Not to the last micro-USD: the
    // refusal that ended the first round may have counted the previous request at its
    // reservation (its settlement was still on its way to Redis), while the ledgers hold what
    // it cost, so the rebuilt counter may leave room for the few requests that reservation
    // covered. What must not happen is the budget starting again from zero (it did before),
    // and the ledgers' sum, checked below, must stay within the budget.
    let again = spend_until_refused(&fleet).await;
    assert!(
        again <= 5,
        "served {again} again after FLUSHALL ({first} before)"
    );
    all_heard(&fleet).await;
    redis.restart();
    let after_restart = spend_until_refused(&fleet).await;
    assert!(
        again + after_restart <= 5,
        "served {after_restart} again after a restart ({again} after FLUSHALL)"
    );
    let month = dgidgi::metering::clock::Day::of(dgidgi::metering::clock::now_ms()).month_key();
    let spend_key = format!("dgidgi:t:team-acme:spend:{month}");
    // Kept past the fleet's stop (which flushes the ledgers).
    let kept = std::mem::take(&mut fleet.states);
    let states: Vec<std::path::PathBuf> = kept.iter().map(|s| s.path().to_owned()).collect();
    fleet.stop().await;
    let ledgers = ledgers_month_spend(&states, "team-acme");
    assert!(
        ledgers <= 2_000,
        "spent {ledgers} of a 2,000 micro-USD budget"
    );
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let counted: Option<u64> = redis::cmd("GET")
        .arg(&spend_key)
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(counted, Some(ledgers), "Redis holds the ledgers' sum");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_gateways_sharing_a_redis_cluster_enforce_one_tenants_limits_as_one() {
    // Each case starts from an empty cluster (the tenant's counters would carry over).
    let cluster = RedisCluster::start();
    rpm_holds_across(3, Some(&cluster)).await;
    cluster.flush_all();
    concurrency_holds_across(3, Some(&cluster)).await;
    cluster.flush_all();
    budget_holds_across(3, Some(&cluster)).await;
}

/// A cluster loses data one master at a time. The master holding a tenant's bucket restarted
/// empty: its counters are rebuilt from the ledgers, as a single Redis' are. Another master
/// restarted empty: the tenant's counters, which kept their data, are not added to again
/// (each bucket has its own epoch; a replica adds its ledger only to the buckets whose epoch
/// changed).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cluster_master_that_lost_its_data_is_rebuilt_and_the_others_are_not_added_to() {
    let mut cluster = RedisCluster::start();
    let mut fleet = Fleet::start(
        3,
        Some(&cluster),
        "",
        "{budget: {monthlyUsd: 0.002, alertThresholds: [50], action: block}}",
    )
    .await;
    let first = spend_until_refused(&fleet).await;
    assert!(first > 5, "{first} served before the budget ran out");
    let month = dgidgi::metering::clock::Day::of(dgidgi::metering::clock::now_ms()).month_key();
    let spend_key =
        dgidgi::metering::redis::Layout::CLUSTER.counter(&format!("t:team-acme:spend:{month}"));
    let owner = cluster.owner_of(&spend_key).await;
    let before = cluster.get(&spend_key).await.expect("the spend counter");
    assert!(before <= 2_000, "{before}");

    all_heard(&fleet).await;
    cluster.restart_empty((owner + 1) % 3);
    let after_other = spend_until_refused(&fleet).await;
    assert!(
        after_other <= 5,
        "served {after_other} after another master's loss"
    );
    let kept = cluster.get(&spend_key).await.expect("kept");
    assert!(
        (before..=2_000).contains(&kept),
        "the counter that kept its data was added to again: {before} → {kept}"
    );

    all_heard(&fleet).await;
    cluster.restart_empty(owner);
    let again = spend_until_refused(&fleet).await;
    assert!(
        after_other + again <= 5,
        "served {again} again after its master's loss ({first} before)"
    );
    let states: Vec<std::path::PathBuf> =
        fleet.states.iter().map(|s| s.path().to_owned()).collect();
    let kept_states = std::mem::take(&mut fleet.states);
    fleet.stop().await;
    let ledgers = ledgers_month_spend(&states, "team-acme");
    drop(kept_states);
    assert!(
        ledgers <= 2_000,
        "spent {ledgers} of a 2,000 micro-USD budget"
    );
    assert_eq!(
        cluster.get(&spend_key).await,
        Some(ledgers),
        "the rebuilt master holds the ledgers' sum"
    );
}
