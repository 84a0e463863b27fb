//! The operator's own Prometheus metrics: passes, their outcome and duration, writes by kind.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Outcome label of a pass.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    /// `ok` or `error`.
    pub result: &'static str,
}

/// Kind label of a write.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WriteLabel {
    /// `configmap`, `secret`, `delete`, `status` or `event`.
    pub kind: &'static str,
    /// `ok` or `error`.
    pub result: &'static str,
}

/// Every metric the operator exports.
pub struct Metrics {
    registry: Registry,
    /// Passes by outcome.
    pub reconciles: Family<ResultLabel, Counter>,
    /// Seconds per pass (render + plan + writes).
    pub duration: Histogram,
    /// Writes by kind and outcome.
    pub writes: Family<WriteLabel, Counter>,
    /// 1 while this replica holds the Lease.
    pub leader: Gauge,
    /// Resources whose Ready condition is not True.
    pub not_ready: Gauge,
    /// 1 while the platform configuration (ConfigMap `dgidgi-platform`) is invalid and the
    /// last good one is in force (or, from a start on an invalid one, nothing is rendered).
    pub platform_config_invalid: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let reconciles = Family::<ResultLabel, Counter>::default();
        let duration = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        let writes = Family::<WriteLabel, Counter>::default();
        let leader = Gauge::default();
        let not_ready = Gauge::default();
        let platform_config_invalid = Gauge::default();
        registry.register(
            "dgidgi_operator_platform_config_invalid",
            "1 while ConfigMap dgidgi-platform is invalid and the last good configuration is kept",
            platform_config_invalid.clone(),
        );
        registry.register(
            "dgidgi_operator_reconciles",
            "Reconcile passes by result",
            reconciles.clone(),
        );
        registry.register(
            "dgidgi_operator_reconcile_duration_seconds",
            "Duration of a reconcile pass",
            duration.clone(),
        );
        registry.register(
            "dgidgi_operator_writes",
            "API writes by kind and result",
            writes.clone(),
        );
        registry.register(
            "dgidgi_operator_leader",
            "1 while this replica holds the Lease",
            leader.clone(),
        );
        registry.register(
            "dgidgi_operator_not_ready_resources",
            "Custom resources whose Ready condition is not True",
            not_ready.clone(),
        );
        Self {
            registry,
            reconciles,
            duration,
            writes,
            leader,
            not_ready,
            platform_config_invalid,
        }
    }
}

impl Metrics {
    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        if prometheus_client::encoding::text::encode(&mut text, &self.registry).is_err() {
            text.clear();
        }
        text
    }

    /// Counts the writes of a pass.
    pub fn count_writes(
        &self,
        writes: &[super::plan::Write],
        failed: &[super::writer::WriteError],
    ) {
        use super::plan::Write;
        for write in writes {
            let kind = match write {
                Write::ApplyConfigMap(_) => "configmap",
                Write::ApplySecret(_) => "secret",
                Write::DeleteSecret(_) => "delete",
                Write::Status { .. } => "status",
                Write::Event(_) => "event",
            };
            let label = format!("{write:?}");
            let result = if failed.iter().any(|f| f.what == label) {
                "error"
            } else {
                "ok"
            };
            self.writes
                .get_or_create(&WriteLabel { kind, result })
                .inc();
        }
    }
}
