//! The gateway's Prometheus metrics (prometheus-client): what operators alert and bill on.
//! Names follow the OpenTelemetry GenAI conventions where one exists (`gen_ai_*`), `dgidgi_*`
//! otherwise. Cardinality is bounded: tenants and providers come from the config, models are
//! the provider's catalog names (anything else is `other`), histograms carry no tenant label.
//!
//! A leaf of the crate, outside the gateway: the meter counts into it as much as the request
//! path does, and metering must not import the gateway (the flow runs gateway → metering).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use route::{RouteSeries, RouteSeriesCache};

pub mod route;

/// Labels of a served request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// `<namespace>/<name>`.
    pub tenant: String,
    /// Provider id (`cli` for a cli endpoint, empty when none answered).
    pub provider: String,
    /// Model (catalog name or `other`).
    pub model: String,
    /// platform, tenant or cli.
    pub source: String,
    /// HTTP status class the client got (`2xx`, `4xx`, `5xx`).
    pub status: String,
}

/// Labels of per-route figures (cost, tokens).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// Tenant.
    pub tenant: String,
    /// Provider id.
    pub provider: String,
    /// Model.
    pub model: String,
    /// Source.
    pub source: String,
}

/// Labels of token counts.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TokenLabels {
    /// Tenant.
    pub tenant: String,
    /// Provider id.
    pub provider: String,
    /// Model.
    pub model: String,
    /// Source.
    pub source: String,
    /// `input` or `output` (the GenAI convention's token type).
    pub gen_ai_token_type: &'static str,
}

/// Labels of latency histograms (no tenant: buckets × tenants would be unbounded in practice).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LatencyLabels {
    /// Provider id.
    pub provider: String,
    /// Model.
    pub model: String,
    /// Source.
    pub source: String,
}

/// A tenant and the limit that refused it.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LimitLabels {
    /// Tenant.
    pub tenant: String,
    /// rpm, tpd, concurrency, provider_rpm, provider_tpm.
    pub limit: &'static str,
}

/// One tenant.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TenantLabels {
    /// Tenant.
    pub tenant: String,
}

/// One listener.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerLabels {
    /// api or admin.
    pub listener: &'static str,
}

/// One provider.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProviderLabels {
    /// Provider id.
    pub provider: String,
}

/// A provider and the class of its failure.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamErrorLabels {
    /// Provider id.
    pub provider: String,
    /// rate_limited, server_error, timeout, connect, model_not_found, auth, unsupported, stream.
    pub class: &'static str,
}

/// Outcome of an operation.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// ok or error (reloads, fail-mode decisions); applied, abandoned or dropped (Redis
    /// redeliveries).
    pub result: &'static str,
}

/// A Redis operation.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RedisLabels {
    /// reserve, settle, cancel, mark, read.
    pub op: &'static str,
    /// timeout, error, reply.
    pub class: &'static str,
}

type HistogramFamily = Family<LatencyLabels, Histogram, fn() -> Histogram>;

/// Every metric of a gateway.
pub struct Metrics {
    registry: Registry,
    /// API requests received (every one, errors included).
    pub received: Counter,
    /// Requests answered, by tenant, provider, model, source, status.
    pub requests: Family<RequestLabels, Counter>,
    /// Request duration, arrival to the end of the response.
    pub duration: HistogramFamily,
    /// Arrival to the first response byte.
    pub time_to_first_token: HistogramFamily,
    /// Tokens in and out.
    pub tokens: Family<TokenLabels, Counter>,
    /// Micro-USD charged.
    pub cost: Family<RouteLabels, Counter>,
    /// Requests refused by a rate or token limit.
    pub limit_rejections: Family<LimitLabels, Counter>,
    /// Requests refused by a budget.
    pub budget_rejections: Family<TenantLabels, Counter>,
    /// Budget alert thresholds crossed.
    pub budget_thresholds: Family<TenantLabels, Counter>,
    /// Upstream failures by class.
    pub upstream_errors: Family<UpstreamErrorLabels, Counter>,
    /// Requests served by a fallback target.
    pub fallbacks: Family<TenantLabels, Counter>,
    /// Config reloads.
    pub reloads: Family<ResultLabels, Counter>,
    /// Whether a config is loaded.
    pub config_loaded: Gauge,
    /// Redis calls that failed or timed out.
    pub redis_errors: Family<RedisLabels, Counter>,
    /// Requests decided by `--redis-fail-mode` because Redis did not answer.
    pub redis_fail_decisions: Family<ResultLabels, Counter>,
    /// Settlements and cancellations Redis did not take in time, by what became of them when
    /// sent again: a lasting `abandoned` or `dropped` means leases held to their TTL.
    pub redis_redeliveries: Family<ResultLabels, Counter>,
    /// Usage reports not believed (no input, more output than the attempt allowed, counts past
    /// any context): the reservation was charged instead.
    pub unbelievable_usage: Family<ProviderLabels, Counter>,
    /// 1 when the shared Redis may evict counters (its maxmemory-policy is not noeviction).
    pub redis_eviction_unsafe: Gauge,
    /// Replicas sharing Redis at the last heartbeat.
    pub redis_replicas: Gauge,
    /// Bytes the ledger's files take on disk.
    pub ledger_bytes: Gauge,
    /// Connections closed at once because their listener held its most.
    pub connections_refused: Family<ListenerLabels, Counter>,
    /// Request log lines dropped because the writer's queue was full.
    pub access_log_dropped: Counter,
    /// Each route's series of the families above, found once (see [`Metrics::route`]).
    routes: RouteSeriesCache,
}

fn latency_histogram() -> Histogram {
    // 0.25 ms .. ~8 min.
    Histogram::new(exponential_buckets(0.000_25, 2.0, 22))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let metrics = Self {
            received: Counter::default(),
            requests: Family::default(),
            duration: Family::new_with_constructor(latency_histogram),
            time_to_first_token: Family::new_with_constructor(latency_histogram),
            tokens: Family::default(),
            cost: Family::default(),
            limit_rejections: Family::default(),
            budget_rejections: Family::default(),
            budget_thresholds: Family::default(),
            upstream_errors: Family::default(),
            fallbacks: Family::default(),
            reloads: Family::default(),
            config_loaded: Gauge::default(),
            redis_errors: Family::default(),
            redis_fail_decisions: Family::default(),
            redis_redeliveries: Family::default(),
            unbelievable_usage: Family::default(),
            connections_refused: Family::default(),
            access_log_dropped: Counter::default(),
            redis_eviction_unsafe: Gauge::default(),
            redis_replicas: Gauge::default(),
            ledger_bytes: Gauge::default(),
            routes: RouteSeriesCache::default(),
            registry: Registry::default(),
        };
        registry.register(
            "dgidgi_http_requests_received",
            "API requests received, errors included",
            metrics.received.clone(),
        );
        registry.register(
            "dgidgi_requests",
            "Requests answered, by tenant, provider, model, source and status class",
            metrics.requests.clone(),
        );
        registry.register_with_unit(
            "gen_ai_server_request_duration",
            "Request duration, arrival to end of response",
            Unit::Seconds,
            metrics.duration.clone(),
        );
        registry.register_with_unit(
            "gen_ai_server_time_to_first_token",
            "Arrival to the first response byte",
            Unit::Seconds,
            metrics.time_to_first_token.clone(),
        );
        registry.register(
            "gen_ai_client_token_usage",
            "Tokens reported by providers, by type (input, output)",
            metrics.tokens.clone(),
        );
        registry.register(
            "dgidgi_cost_micro_usd",
            "Micro-USD charged to tenants",
            metrics.cost.clone(),
        );
        registry.register(
            "dgidgi_limit_rejections",
            "Requests refused by a rate, token or concurrency limit",
            metrics.limit_rejections.clone(),
        );
        registry.register(
            "dgidgi_budget_rejections",
            "Requests refused because the monthly budget is spent",
            metrics.budget_rejections.clone(),
        );
        registry.register(
            "dgidgi_budget_thresholds_crossed",
            "Budget alert thresholds crossed (once per threshold and month)",
            metrics.budget_thresholds.clone(),
        );
        registry.register(
            "dgidgi_upstream_errors",
            "Upstream failures by class",
            metrics.upstream_errors.clone(),
        );
        registry.register(
            "dgidgi_fallbacks",
            "Requests served by a fallback target",
            metrics.fallbacks.clone(),
        );
        registry.register(
            "dgidgi_config_reloads",
            "Config directories loaded (ok) or refused (error; the last good config kept serving)",
            metrics.reloads.clone(),
        );
        registry.register(
            "dgidgi_config_loaded",
            "Whether a config is loaded (1) or not (0)",
            metrics.config_loaded.clone(),
        );
        registry.register(
            "dgidgi_redis_errors",
            "Redis calls that failed or timed out",
            metrics.redis_errors.clone(),
        );
        registry.register(
            "dgidgi_redis_fail_mode_decisions",
            "Requests decided by --redis-fail-mode while Redis did not answer (ok: admitted)",
            metrics.redis_fail_decisions.clone(),
        );
        registry.register(
            "dgidgi_redis_redeliveries",
            "Settlements and cancellations Redis did not take in time, sent again: applied, abandoned (after an hour or a permanent error), dropped (too many waiting)",
            metrics.redis_redeliveries.clone(),
        );
        registry.register(
            "dgidgi_unbelievable_usage",
            "Provider usage reports not believed (no input tokens, more output than the attempt allowed, or more input than any context): the reservation was charged instead, marked estimated",
            metrics.unbelievable_usage.clone(),
        );
        registry.register(
            "dgidgi_redis_eviction_unsafe",
            "1 when the shared Redis may evict counters (maxmemory-policy is not noeviction): usage can vanish and be spent again",
            metrics.redis_eviction_unsafe.clone(),
        );
        registry.register(
            "dgidgi_redis_replicas",
            "Replicas sharing Redis at the last heartbeat: each takes this share of a limit while Redis is unreachable and it fails open",
            metrics.redis_replicas.clone(),
        );
        registry.register(
            "dgidgi_ledger_bytes",
            "Bytes the ledger's files (database, write-ahead log, index) take under --state-dir, measured every minute",
            metrics.ledger_bytes.clone(),
        );
        registry.register(
            "dgidgi_connections_refused",
            "Connections closed at once because their listener held its most (--max-connections for the API)",
            metrics.connections_refused.clone(),
        );
        registry.register(
            "dgidgi_access_log_dropped",
            "Request log lines dropped because standard output could not take them as fast as they came",
            metrics.access_log_dropped.clone(),
        );
        Self {
            registry,
            ..metrics
        }
    }
}

impl Metrics {
    /// Where a served request of this route is counted: its series in `requests`, `duration`,
    /// `time_to_first_token`, `tokens` and `cost`, looked up once per route rather than once per
    /// series and request.
    pub fn route(
        &self,
        tenant: &str,
        provider: &str,
        model: &str,
        source: &str,
    ) -> std::sync::Arc<RouteSeries> {
        self.routes.get(self, tenant, provider, model, source)
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        if prometheus_client::encoding::text::encode(&mut text, &self.registry).is_err() {
            tracing::error!("encoding the metrics failed");
        }
        text
    }

    /// Counts a connection its listener had no room for.
    pub fn connections_refused(&self, listener: &'static str) {
        self.connections_refused
            .get_or_create(&ListenerLabels { listener })
            .inc();
    }

    /// Counts a config reload.
    pub fn reload(&self, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.reloads.get_or_create(&ResultLabels { result }).inc();
    }
}

/// The status class label of a status code.
pub fn status_class(status: u16) -> String {
    format!("{}xx", status / 100)
}
