//! The metric series one route (tenant, provider, model, source) counts into, found once and
//! kept. Counting a served request through the label families cloned four or five label
//! strings and SipHashed a label set for each of six series, every request: 7,500 instructions,
//! 6.5 % of a bare request's (callgrind). A route's series are now looked up by borrowed names
//! in one map and counted through handles that share the families' own counters, so
//! `/metrics` shows exactly what it showed before; series that appear only when something
//! happens (a status class, time to first token, token counts) are still made the first time.

use std::sync::{Arc, OnceLock, PoisonError, RwLock};
use std::time::Duration;

use hashbrown::{Equivalent, HashMap};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;

use super::{LatencyLabels, Metrics, RequestLabels, RouteLabels, TokenLabels, status_class};

/// Where requests of one route are counted.
pub struct RouteSeries {
    labels: RouteLabels,
    /// `dgidgi_requests` by status class (`status / 100`), made on first use.
    requests: [OnceLock<Counter>; 10],
    duration: Histogram,
    time_to_first_token: OnceLock<Histogram>,
    /// `gen_ai_client_token_usage`, input then output, made on first use.
    tokens: [OnceLock<Counter>; 2],
    cost: Counter,
}

/// The route series made so far (as many as the families' label sets: bounded by the config).
#[derive(Default)]
pub struct RouteSeriesCache {
    routes: RwLock<HashMap<RouteLabels, Arc<RouteSeries>>>,
}

/// A route named by borrowed strings: finds its entry without building its labels. Hashes as
/// [`RouteLabels`] does (the same fields in the same order; a `String` hashes as its `str`).
#[derive(Hash)]
struct RouteRef<'a> {
    tenant: &'a str,
    provider: &'a str,
    model: &'a str,
    source: &'a str,
}

impl Equivalent<RouteLabels> for RouteRef<'_> {
    fn equivalent(&self, key: &RouteLabels) -> bool {
        self.tenant == key.tenant
            && self.provider == key.provider
            && self.model == key.model
            && self.source == key.source
    }
}

impl RouteSeriesCache {
    /// The series of a route, made (with its always-present series) on its first request.
    pub fn get(
        &self,
        metrics: &Metrics,
        tenant: &str,
        provider: &str,
        model: &str,
        source: &str,
    ) -> Arc<RouteSeries> {
        let route = RouteRef {
            tenant,
            provider,
            model,
            source,
        };
        let known = self.routes.read().unwrap_or_else(PoisonError::into_inner);
        if let Some(series) = known.get(&route) {
            return series.clone();
        }
        drop(known);
        // A route's first request (or a race with another one): made once, under the lock.
        let mut routes = self.routes.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(series) = routes.get(&route) {
            return series.clone();
        }
        let labels = RouteLabels::from(&route);
        let series = Arc::new(RouteSeries::new(metrics, labels.clone()));
        routes.insert(labels, series.clone());
        series
    }
}

impl From<&RouteRef<'_>> for RouteLabels {
    fn from(route: &RouteRef<'_>) -> Self {
        Self {
            tenant: route.tenant.to_owned(),
            provider: route.provider.to_owned(),
            model: route.model.to_owned(),
            source: route.source.to_owned(),
        }
    }
}

impl RouteSeries {
    fn new(metrics: &Metrics, labels: RouteLabels) -> Self {
        let duration = metrics
            .duration
            .get_or_create(&latency_labels(&labels))
            .clone();
        let cost = metrics.cost.get_or_create(&labels).clone();
        Self {
            labels,
            requests: Default::default(),
            duration,
            time_to_first_token: OnceLock::new(),
            tokens: Default::default(),
            cost,
        }
    }

    /// Counts an answered request with the status the client got.
    pub fn answered(&self, metrics: &Metrics, status: u16) {
        let made = || {
            metrics
                .requests
                .get_or_create(&RequestLabels {
                    tenant: self.labels.tenant.clone(),
                    provider: self.labels.provider.clone(),
                    model: self.labels.model.clone(),
                    source: self.labels.source.clone(),
                    status: status_class(status),
                })
                .clone()
        };
        match self.requests.get(usize::from(status / 100)) {
            Some(slot) => slot.get_or_init(made).inc(),
            None => made().inc(),
        };
    }

    /// Observes a request's duration, arrival to the end of its response.
    pub fn took(&self, latency: Duration) {
        self.duration.observe(latency.as_secs_f64());
    }

    /// Observes the time from arrival to the response's first byte.
    pub fn first_byte_after(&self, metrics: &Metrics, first: Duration) {
        self.time_to_first_token
            .get_or_init(|| {
                metrics
                    .time_to_first_token
                    .get_or_create(&latency_labels(&self.labels))
                    .clone()
            })
            .observe(first.as_secs_f64());
    }

    /// Counts the tokens a provider reported.
    pub fn used(&self, metrics: &Metrics, input: u64, output: u64) {
        for ((slot, kind), value) in self
            .tokens
            .iter()
            .zip(["input", "output"])
            .zip([input, output])
        {
            slot.get_or_init(|| {
                metrics
                    .tokens
                    .get_or_create(&TokenLabels {
                        tenant: self.labels.tenant.clone(),
                        provider: self.labels.provider.clone(),
                        model: self.labels.model.clone(),
                        source: self.labels.source.clone(),
                        gen_ai_token_type: kind,
                    })
                    .clone()
            })
            .inc_by(value);
        }
    }

    /// Counts what the request was charged.
    pub fn charged(&self, micro_usd: u64) {
        self.cost.inc_by(micro_usd);
    }
}

fn latency_labels(route: &RouteLabels) -> LatencyLabels {
    LatencyLabels {
        provider: route.provider.clone(),
        model: route.model.clone(),
        source: route.source.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One served request, as the test counts it both ways.
    struct Answer<'a> {
        route: (&'a str, &'a str, &'a str, &'a str),
        status: u16,
        first_byte: Option<Duration>,
        usage: Option<(u64, u64)>,
        micro_usd: u64,
    }

    /// How a served request was counted before route series: straight through the families.
    fn count_through_families(m: &Metrics, answer: &Answer<'_>) {
        let Answer {
            route: (tenant, provider, model, source),
            status,
            first_byte,
            usage,
            micro_usd,
        } = *answer;
        let route = RouteLabels {
            tenant: tenant.into(),
            provider: provider.into(),
            model: model.into(),
            source: source.into(),
        };
        m.requests
            .get_or_create(&RequestLabels {
                tenant: tenant.into(),
                provider: provider.into(),
                model: model.into(),
                source: source.into(),
                status: status_class(status),
            })
            .inc();
        let latency = latency_labels(&route);
        m.duration.get_or_create(&latency).observe(0.003);
        if let Some(first) = first_byte {
            m.time_to_first_token
                .get_or_create(&latency)
                .observe(first.as_secs_f64());
        }
        if let Some((input, output)) = usage {
            for (kind, value) in [("input", input), ("output", output)] {
                m.tokens
                    .get_or_create(&TokenLabels {
                        tenant: tenant.into(),
                        provider: provider.into(),
                        model: model.into(),
                        source: source.into(),
                        gen_ai_token_type: kind,
                    })
                    .inc_by(value);
            }
        }
        m.cost.get_or_create(&route).inc_by(micro_usd);
    }

    fn count_through_route(m: &Metrics, answer: &Answer<'_>) {
        let (tenant, provider, model, source) = answer.route;
        let route = m.route(tenant, provider, model, source);
        route.answered(m, answer.status);
        route.took(Duration::from_millis(3));
        if let Some(first) = answer.first_byte {
            route.first_byte_after(m, first);
        }
        if let Some((input, output)) = answer.usage {
            route.used(m, input, output);
        }
        route.charged(answer.micro_usd);
    }

    #[test]
    fn route_series_expose_exactly_what_the_families_did() {
        let a = ("team-a/default", "openai", "gpt-4o-mini", "platform");
        let b = ("team-b/default", "own", "gpt-4o-mini", "tenant");
        let requests = [
            (a, 200, Some(Duration::from_millis(1)), Some((12, 30)), 42),
            (a, 502, None, None, 0),
            (a, 200, None, Some((1, 2)), 3),
            (b, 200, Some(Duration::from_millis(2)), None, 0),
            (b, 429, None, None, 0),
        ];
        let (before, after) = (Metrics::default(), Metrics::default());
        for (route, status, first_byte, usage, micro_usd) in requests {
            let answer = Answer {
                route,
                status,
                first_byte,
                usage,
                micro_usd,
            };
            count_through_families(&before, &answer);
            count_through_route(&after, &answer);
        }
        // The same series with the same values (a family's series come in hash order).
        let lines = |m: &Metrics| {
            let mut lines: Vec<String> = m.encode().lines().map(str::to_owned).collect();
            lines.sort();
            lines
        };
        assert_eq!(lines(&after), lines(&before));
        // Series made on first use only: b never reported tokens.
        assert!(!after.encode().contains("team-b/default\",provider=\"own\",model=\"gpt-4o-mini\",source=\"tenant\",gen_ai_token_type"));
        assert!(after.encode().contains("team-a/default\",provider=\"openai\",model=\"gpt-4o-mini\",source=\"platform\",gen_ai_token_type=\"input\"} 13"));
    }

    #[test]
    fn a_route_is_found_again_not_made_again() {
        let m = Metrics::default();
        let first = m.route("t/a", "openai", "gpt-4o", "platform");
        let again = m.route("t/a", "openai", "gpt-4o", "platform");
        let other = m.route("t/a", "openai", "gpt-4o", "tenant");
        assert!(Arc::ptr_eq(&first, &again));
        assert!(!Arc::ptr_eq(&first, &other));
    }
}
