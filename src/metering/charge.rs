//! The vocabulary shared by the limit planner and the counter stores: a request's reservation
//! is a list of [`Charge`]s, checked and applied all together or not at all, and later settled
//! with a list of [`Release`]s. The embedded store and the Redis script execute the same lists,
//! so one tenant's limits mean the same thing on one replica or many.

/// Which limit a charge enforces; also the `limit` label of the refusal metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LimitKind {
    /// The tenant's requests per minute.
    Rpm,
    /// The tenant's tokens per UTC day.
    Tpd,
    /// The tenant's requests in flight.
    Concurrency,
    /// The tenant's monthly budget (micro-USD).
    Budget,
    /// A provider key's requests per minute.
    ProviderRpm,
    /// A provider key's tokens per minute.
    ProviderTpm,
}

impl LimitKind {
    /// Label value for metrics and the short name in error messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rpm => "rpm",
            Self::Tpd => "tpd",
            Self::Concurrency => "concurrency",
            Self::Budget => "budget",
            Self::ProviderRpm => "provider_rpm",
            Self::ProviderTpm => "provider_tpm",
        }
    }
}

/// One thing a request takes from a counter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Charge {
    /// One entry in a sliding window of `window_ms` holding at most `limit` entries (exact
    /// requests-per-minute: never more than `limit` in any window, not just per clock minute).
    Window {
        /// Counter key.
        key: String,
        /// Most entries in any window.
        limit: u64,
        /// Window length.
        window_ms: u64,
        /// The limit enforced.
        kind: LimitKind,
    },
    /// One lease among at most `limit` live ones (concurrency). A lease that is never released
    /// (a crashed replica) expires after `lease_ms`, so a slot cannot leak forever.
    Lease {
        /// Counter key.
        key: String,
        /// Most live leases.
        limit: u64,
        /// Life of an unreleased lease.
        lease_ms: u64,
        /// The limit enforced.
        kind: LimitKind,
    },
    /// `amount` added to a counter that may not pass `limit` (`None`: counted, never refused).
    /// `ttl_ms` runs to the end of the counter's day, month or minute (plus a grace), so keys
    /// of past periods go.
    Amount {
        /// Counter key.
        key: String,
        /// Highest value the counter may reach; `None` for counters kept only for reporting.
        limit: Option<u64>,
        /// What this request reserves.
        amount: u64,
        /// The rest of the counter's period (plus a grace), from the time of the request.
        ttl_ms: u64,
        /// The limit enforced, if any.
        kind: Option<LimitKind>,
        /// What the amount counts, so settling knows which real figure replaces it.
        measure: Measure,
    },
}

/// What an amount counter counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Measure {
    /// Tokens (input + output).
    Tokens,
    /// Requests.
    Requests,
    /// Micro-USD.
    MicroUsd,
}

impl Charge {
    /// The counter key.
    pub fn key(&self) -> &str {
        match self {
            Self::Window { key, .. } | Self::Lease { key, .. } | Self::Amount { key, .. } => key,
        }
    }

    /// What undoes or settles this charge: windows and leases by removing the request's entry,
    /// amounts by adding `settled - reserved` (negative when the request used less).
    pub fn release(&self, settled_amount: u64) -> Release {
        match self {
            Self::Window { key, .. } => Release::Window { key: key.clone() },
            Self::Lease { key, .. } => Release::Lease { key: key.clone() },
            Self::Amount {
                key,
                amount,
                ttl_ms,
                ..
            } => Release::Adjust {
                key: key.clone(),
                delta: i64::try_from(i128::from(settled_amount) - i128::from(*amount)).unwrap_or(
                    if settled_amount > *amount {
                        i64::MAX
                    } else {
                        i64::MIN
                    },
                ),
                ttl_ms: *ttl_ms,
            },
        }
    }
}

/// One step of settling a reservation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Release {
    /// Remove the request's entry from a window (only when the request is released unused).
    Window {
        /// Counter key.
        key: String,
    },
    /// Remove the request's lease.
    Lease {
        /// Counter key.
        key: String,
    },
    /// Add `delta` to a counter (never below zero); a counter that expired in between is
    /// created again with `ttl_ms`.
    Adjust {
        /// Counter key.
        key: String,
        /// Settled minus reserved.
        delta: i64,
        /// Life of the key if this write creates it again.
        ttl_ms: u64,
    },
}

/// Why a reservation was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// Position of the refused charge in the list.
    pub index: usize,
    /// The counter's limit.
    pub limit: u64,
    /// What the counter held (entries, leases, or amount) when refused.
    pub current: u64,
    /// When trying again could succeed, in milliseconds (0 if unknown).
    pub retry_after_ms: u64,
}

/// What a successful reservation observed, per charge, for `x-ratelimit-remaining-*` headers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Admitted {
    /// For each charge, what its counter held after this request was added.
    pub after: Vec<u64>,
}
