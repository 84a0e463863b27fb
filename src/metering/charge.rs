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
        /// How the amount follows the request's output allowance, when the stores may grant
        /// less output than asked (see [`Flex`]); `None`: the amount is fixed.
        flex: Option<Flex>,
    },
}

/// An amount that depends on how many output tokens the request is granted:
/// `ceil((fixed + per_output × output) / scale)`. A request asks for `ask` output tokens (per
/// choice); when a limited counter cannot hold that, the stores grant the most that still fits
/// (at least one token), atomically with the other charges, and every flexible amount of the
/// list is taken at that grant. So a tenant with room is never capped and one near its limit is
/// capped to exactly what is left, never refused for it and never over.
///
/// Tokens are `fixed` = prompt estimate, `per_output` = choices, `scale` = 1; micro-USD are
/// `fixed` = prompt × input price, `per_output` = choices × output price (micro-USD per
/// million), `scale` = 1,000,000, so the money stays integer. Built only when
/// `fixed + per_output × ask` stays below 2^52, where Redis' Lua numbers are exact.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flex {
    /// The part that does not depend on output.
    pub fixed: u64,
    /// What one output token (per choice) adds, times `scale`; never 0.
    pub per_output: u64,
    /// The divisor (1 for tokens, 1,000,000 for micro-USD).
    pub scale: u64,
    /// Output tokens per choice the request asks for.
    pub ask: u64,
}

/// Moves every flexible amount of a list to the `output` the store granted, so settling gives
/// back exactly what was taken.
pub fn grant(charges: &mut [Charge], output: u64) {
    for charge in charges {
        if let Charge::Amount {
            amount,
            flex: Some(flex),
            ..
        } = charge
        {
            *amount = flex.amount(output);
        }
    }
}

/// The largest `fixed + per_output × ask` a [`Flex`] may have: Lua's numbers are doubles.
pub const FLEX_MAX: u64 = 1 << 52;

impl Flex {
    /// The amount at `output` granted tokens (rounded up: a reservation is an upper bound).
    pub fn amount(&self, output: u64) -> u64 {
        let total = u128::from(self.fixed) + u128::from(self.per_output) * u128::from(output);
        u64::try_from(total.div_ceil(u128::from(self.scale.max(1)))).unwrap_or(u64::MAX)
    }

    /// The most output (at most `ceiling`) whose amount fits in `room`; `None` when not even
    /// the smallest grant fits (one token, or none for a request that asked for none).
    pub fn most_within(&self, room: u64, ceiling: u64) -> Option<u64> {
        let scaled_room = u128::from(room) * u128::from(self.scale.max(1));
        let most = scaled_room
            .checked_sub(u128::from(self.fixed))
            .map_or(0, |free| free / u128::from(self.per_output.max(1)));
        let granted = u64::try_from(most).unwrap_or(u64::MAX).min(ceiling);
        let smallest = self.ask.min(1);
        (self.amount(granted) <= room && granted >= smallest).then_some(granted)
    }
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
    /// The output tokens per choice granted, when the list has [`Flex`] amounts (the ask, or
    /// less when a limited counter had less room).
    pub output: Option<u64>,
}
