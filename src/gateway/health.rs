//! Passive health of providers: consecutive failures (connection, timeout, 5xx, 429) mark a
//! provider unhealthy for a cool-down, and the plan tries healthy targets first. Unhealthy ones
//! stay in the plan as a last resort, so a provider that recovers is found again. Lock-free:
//! one pair of atomics per provider, built with each config.

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
    /// Looked up on every request: hashbrown's map (foldhash; see `config::load::Snapshot`).
    providers: hashbrown::HashMap<String, ProviderHealth>,
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
    /// Logged when it ends a cool-down the log told of (the outage's one other line).
    pub fn record_success(&self, provider_id: &str) {
        if let Some(health) = self.providers.get(provider_id) {
            health.consecutive_failures.store(0, Ordering::Relaxed);
            // Read first: a healthy provider's answers write nothing shared.
            if health.unhealthy_until_ms.load(Ordering::Relaxed) != 0
                && health.unhealthy_until_ms.swap(0, Ordering::Relaxed) != 0
            {
                tracing::info!(provider = ?provider_id, "provider answered again");
            }
        }
    }

    /// Records a failure that says something about the provider's health; whether it started
    /// a cool-down. Each failure past the trip extends the cool-down; only the one that starts
    /// it is logged: during an outage every request fails, and a line per failure was
    /// thousands of lines a second (and the largest cost of a failed request).
    pub fn record_failure(&self, provider_id: &str) -> bool {
        let Some(health) = self.providers.get(provider_id) else {
            return false;
        };
        let failures = health.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        if failures < FAILURES_TO_TRIP {
            return false;
        }
        let now = now_ms();
        // The latest end wins (a failure timed earlier but recorded later never shortens it).
        let before = health
            .unhealthy_until_ms
            .fetch_max(now + COOL_DOWN.as_millis() as u64, Ordering::Relaxed);
        let started = before <= now;
        if started {
            tracing::warn!(
                provider = ?provider_id,
                failures,
                "provider marked unhealthy for {COOL_DOWN:?} (extended while it keeps failing)"
            );
        }
        started
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

    #[test]
    fn an_outage_is_told_once_not_per_failed_request() {
        let book = HealthBook::for_config(&config());
        let started: Vec<bool> = (0..50).map(|_| book.record_failure("ns/p")).collect();
        assert!(book.is_unhealthy("ns/p"));
        // The third failure starts the cool-down (and its one log line); the rest extend it.
        assert_eq!(started.iter().filter(|s| **s).count(), 1);
        assert!(started[2]);
        // After an answer, a new outage is told again.
        book.record_success("ns/p");
        let again: Vec<bool> = (0..3).map(|_| book.record_failure("ns/p")).collect();
        assert_eq!(again, [false, false, true]);
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
