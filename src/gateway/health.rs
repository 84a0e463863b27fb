//! Passive health of providers: consecutive failures (connection, timeout, 5xx, 429) mark a
//! provider unhealthy for a cool-down, and the plan tries healthy targets first. Unhealthy ones
//! stay in the plan as a last resort, so a provider that recovers is found again. Lock-free:
//! one pair of atomics per provider, built with each config.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use crate::config::GatewayConfig;
use crate::metering::clock::now_ms;

/// Failures in a row that make a provider unhealthy.
pub const FAILURES_TO_TRIP: u32 = 3;
/// How long an unhealthy provider is tried only as a last resort.
pub const COOL_DOWN: Duration = Duration::from_secs(10);

#[derive(Debug, Default)]
struct ProviderHealth {
    consecutive_failures: AtomicU32,
    unhealthy_until_ms: AtomicU64,
}

/// Health of every provider of one config.
#[derive(Debug, Default)]
pub struct HealthBook {
    providers: HashMap<String, ProviderHealth>,
}

impl HealthBook {
    /// A book with every provider of `config` healthy.
    pub fn for_config(config: &GatewayConfig) -> Self {
        Self {
            providers: config
                .providers
                .iter()
                .map(|p| (p.id.clone(), ProviderHealth::default()))
                .collect(),
        }
    }

    /// Whether the provider is in its cool-down.
    pub fn is_unhealthy(&self, provider_id: &str) -> bool {
        self.providers
            .get(provider_id)
            .is_some_and(|h| h.unhealthy_until_ms.load(Ordering::Relaxed) > now_ms())
    }

    /// Records an answer: the provider is healthy again.
    pub fn record_success(&self, provider_id: &str) {
        if let Some(health) = self.providers.get(provider_id) {
            health.consecutive_failures.store(0, Ordering::Relaxed);
            health.unhealthy_until_ms.store(0, Ordering::Relaxed);
        }
    }

    /// Records a failure that says something about the provider's health. Each failure past
    /// the trip extends the cool-down; only the one that starts it is logged: during an outage
    /// every request fails, and a line per failure was thousands of lines a second (and the
    /// largest cost of a failed request).
    pub fn record_failure(&self, provider_id: &str) {
        if let Some(health) = self.providers.get(provider_id) {
            let failures = health.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
            if failures >= FAILURES_TO_TRIP {
                let now = now_ms();
                let until = now + COOL_DOWN.as_millis() as u64;
                let before = health.unhealthy_until_ms.swap(until, Ordering::Relaxed);
                if before <= now {
                    tracing::warn!(
                        provider = ?provider_id,
                        failures,
                        "provider marked unhealthy for {COOL_DOWN:?}"
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ProviderConfig, Scope};

    fn config() -> GatewayConfig {
        GatewayConfig {
            providers: vec![ProviderConfig::mock_for_tests("ns/p", Scope::Platform)],
            ..GatewayConfig::default()
        }
    }

    /// Collects what is logged.
    #[derive(Clone, Default)]
    struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn an_outage_is_logged_once_not_per_failed_request() {
        let book = HealthBook::for_config(&config());
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            for _ in 0..50 {
                book.record_failure("ns/p");
            }
        });
        assert!(book.is_unhealthy("ns/p"));
        let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        assert_eq!(log.matches("marked unhealthy").count(), 1, "{log}");
        assert!(log.contains("failures=3"), "{log}");
    }

    #[test]
    fn three_failures_trip_and_a_success_heals() {
        let book = HealthBook::for_config(&config());
        book.record_failure("ns/p");
        book.record_failure("ns/p");
        assert!(!book.is_unhealthy("ns/p"));
        book.record_failure("ns/p");
        assert!(book.is_unhealthy("ns/p"));
        book.record_success("ns/p");
        assert!(!book.is_unhealthy("ns/p"));
        assert!(!book.is_unhealthy("unknown"));
    }
}
