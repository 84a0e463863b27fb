//! The pure decision of what a request reserves (DESIGN §2, "Reserve, then settle"): one RPM
//! entry, one concurrency lease, an upper bound of its tokens against tokens/day, and that
//! bound's price against the monthly budget; and what it settles to once the provider has
//! reported usage. No clocks, no I/O: the caller passes the time and the facts.

use super::charge::{Charge, FLEX_MAX, Flex, LimitKind, Measure, Release};
use super::clock::{self, DAY_MS, Day, MINUTE_MS};
use crate::config::BudgetAction;
use crate::config::{
    ModelConfig, PricingConfig, ProviderLimitsConfig, TenantConfig, UNLISTED_MODEL,
};
use crate::usage::Usage;

/// Counters outlive their period by this much, so a late settle still finds its key.
const GRACE_MS: u64 = 2 * DAY_MS;

/// Tunables of the reservation arithmetic.
#[derive(Clone, Copy, Debug)]
pub struct ReservePolicy {
    /// Output tokens assumed (and written upstream as the request's limit) when neither the
    /// request nor the model's catalog entry bounds a request's output.
    pub unbounded_output_tokens: u64,
    /// Life of an unreleased concurrency lease (a crashed replica's slots come back after it).
    pub lease_ms: u64,
}

impl Default for ReservePolicy {
    fn default() -> Self {
        Self {
            unbounded_output_tokens: 4_096,
            lease_ms: 15 * MINUTE_MS,
        }
    }
}

/// A model the request may be served by, with what pricing and bounding it needs.
#[derive(Clone, Copy, Debug)]
pub struct Candidate<'a> {
    /// The model's catalog entry, if the provider lists it.
    pub model: Option<&'a ModelConfig>,
    /// Whether the platform pays for it (platform-scope provider): only then is it priced
    /// against the tenant's budget.
    pub platform: bool,
}

/// What the request itself says about its size.
#[derive(Clone, Copy, Debug)]
pub struct RequestSize {
    /// Bytes of the request body (the prompt estimate: one token per four bytes).
    pub body_bytes: usize,
    /// The most output tokens per answer the request allows (the largest of its output fields:
    /// `max_tokens`, `max_completion_tokens`, `maxOutputTokens`, ...), if it set any.
    pub max_output_tokens: Option<u64>,
    /// How many answers it asks for (`n`, `candidateCount`; 1 when not set).
    pub choices: u64,
}

impl Default for RequestSize {
    fn default() -> Self {
        Self {
            body_bytes: 0,
            max_output_tokens: None,
            choices: 1,
        }
    }
}

/// The counter keys of a tenant, shared by the embedded store, Redis and the usage summary.
/// Joined with `concat`, not `format!`: five are made for every request, and the formatting
/// machinery cost ~850 instructions each (callgrind), `concat` a fifth of that.
pub mod keys {
    /// Sliding window of request arrivals.
    pub fn rpm(tenant: &str) -> String {
        ["t:", tenant, ":rpm"].concat()
    }
    /// Sliding window of free requests (token counting), apart from the metered ones.
    pub fn free_rpm(tenant: &str) -> String {
        ["t:", tenant, ":free-rpm"].concat()
    }
    /// Leases of requests in flight.
    pub fn inflight(tenant: &str) -> String {
        ["t:", tenant, ":inflight"].concat()
    }
    /// Leases of a namespace's unmetered requests in flight (its protective ceiling).
    pub fn namespace_inflight(namespace: &str) -> String {
        ["n:", namespace, ":inflight"].concat()
    }
    /// Tokens of a UTC day (`2026-11-25`).
    pub fn tokens(tenant: &str, day: &str) -> String {
        ["t:", tenant, ":tokens:", day].concat()
    }
    /// Requests of a UTC day.
    pub fn requests(tenant: &str, day: &str) -> String {
        ["t:", tenant, ":requests:", day].concat()
    }
    /// Micro-USD of a UTC month (`2026-11`).
    pub fn spend(tenant: &str, month: &str) -> String {
        ["t:", tenant, ":spend:", month].concat()
    }
    /// An alert threshold crossed in a month (a mark, set once).
    pub fn threshold(tenant: &str, month: &str, percent: u32) -> String {
        format!("t:{tenant}:threshold:{month}:{percent}")
    }
    /// Sliding window of a provider key's requests.
    pub fn provider_rpm(provider: &str) -> String {
        ["p:", provider, ":rpm"].concat()
    }
    /// Tokens of a provider key in one clock minute.
    pub fn provider_tpm(provider: &str, minute: u64) -> String {
        format!("p:{provider}:tpm:{minute}")
    }
}

/// A tenant-level reservation: the charges and the bounds they were computed from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reservation {
    /// Charges, in the order they are checked.
    pub charges: Vec<Charge>,
    /// Reserved tokens (prompt estimate + output bound × choices).
    pub tokens: u64,
    /// Reserved micro-USD (0 when no platform candidate is priced).
    pub cost_micro_usd: u64,
    /// The UTC day the counters belong to.
    pub day: String,
    /// The UTC month the counters belong to.
    pub month: String,
    /// Output tokens per answer reserved: the ask until the stores grant it, then the grant.
    pub output_tokens: u64,
    /// Output tokens per answer the request asked for (its largest output field, else the
    /// model's maximum, else the policy's assumption).
    pub asked_output_tokens: u64,
}

impl Reservation {
    /// Whether the counters granted less output than the request asked for (the tenant's
    /// allowance could not cover it).
    pub fn output_shortened(&self) -> bool {
        self.output_tokens < self.asked_output_tokens
    }
}

impl Reservation {
    /// Takes the output the counter store granted (the ask, or less when a limited counter had
    /// less room): every flexible amount, the reserved tokens and price follow it, so settling
    /// gives back exactly what was taken.
    pub fn grant(&mut self, output: u64) {
        if output == self.output_tokens {
            return;
        }
        self.output_tokens = output;
        super::charge::grant(&mut self.charges, output);
        for charge in &self.charges {
            if let Charge::Amount {
                amount,
                flex: Some(_),
                measure,
                ..
            } = charge
            {
                match measure {
                    Measure::Tokens => self.tokens = *amount,
                    Measure::MicroUsd => self.cost_micro_usd = *amount,
                    Measure::Requests => {}
                }
            }
        }
    }
}

/// Price of a request in integer micro-USD, rounded up once over the whole sum.
pub fn cost_micro_usd(pricing: Option<&PricingConfig>, input: u64, output: u64) -> u64 {
    let Some(pricing) = pricing else { return 0 };
    let (input_rate, output_rate) = pricing.rates(input);
    let micro_millionths = (u128::from(input) * u128::from(input_rate))
        .saturating_add(u128::from(output) * u128::from(output_rate));
    u64::try_from(micro_millionths.div_ceil(1_000_000)).unwrap_or(u64::MAX)
}

/// The most output tokens per answer a request may generate on one model: what it asked for
/// (its largest output field), or the model's maximum when it set none or asked for more; the
/// policy's assumption when neither bounds it.
pub fn output_bound(size: RequestSize, model: Option<&ModelConfig>, policy: &ReservePolicy) -> u64 {
    match (size.max_output_tokens, model_max(model)) {
        (Some(asked), Some(max)) => asked.min(max),
        (Some(asked), None) => asked,
        (None, Some(max)) => max,
        (None, None) => policy.unbounded_output_tokens,
    }
}

/// The limit to write into a platform-paid upstream request for `model`, if one is needed: the
/// request's own output fields pass untouched when what they allow (or, when it set none, the
/// model's maximum) is within what was reserved; otherwise the reserved output (never above the
/// model's maximum) is written, so the provider cannot generate more than was reserved. The
/// maximum of a provider's unlisted models is the platform's bound, not a fact about the model,
/// so it is always written into a request that sets no limit of its own.
pub fn output_cap(
    size: RequestSize,
    reserved_output: u64,
    model: Option<&ModelConfig>,
) -> Option<u64> {
    let model_max = model_max(model);
    let known_max = model_max.filter(|_| model.is_none_or(|m| m.name != UNLISTED_MODEL));
    match size.max_output_tokens.or(known_max) {
        Some(allowed) if allowed <= reserved_output => None,
        _ => Some(model_max.map_or(reserved_output, |max| max.min(reserved_output))),
    }
}

/// A flexible amount (see [`Flex`]), when it is one the stores can compute exactly.
fn flex(fixed: u128, per_output: u128, scale: u64, ask: u64) -> Option<Flex> {
    let at_ask = fixed.checked_add(per_output.checked_mul(u128::from(ask))?)?;
    // Nothing to shorten when no output is asked for (embeddings).
    (per_output > 0 && ask > 0 && at_ask < u128::from(FLEX_MAX)).then(|| Flex {
        fixed: u64::try_from(fixed).unwrap_or(u64::MAX),
        per_output: u64::try_from(per_output).unwrap_or(u64::MAX),
        scale,
        ask,
    })
}

/// The tenant-level reservation of a request: limits (platform source only, as rendered),
/// budget (platform-served traffic), and the reporting counters every tenant has. The tokens
/// and the price are reserved at the request's whole ask (every choice, the largest output
/// field or the model's maximum); when a limited counter cannot hold that, the counter store
/// grants less output, atomically (see [`Flex`]), and [`Reservation::grant`] follows it.
pub fn reserve(
    tenant: &TenantConfig,
    candidates: &[Candidate<'_>],
    size: RequestSize,
    policy: &ReservePolicy,
    now_ms: u64,
) -> Reservation {
    let today = Day::of(now_ms);
    let (day, month) = (today.key(), today.month_key());
    let choices = size.choices.max(1);
    let prompt = (size.body_bytes as u64).div_ceil(4);
    // The ask: the most output any candidate may generate.
    let ask = candidates
        .iter()
        .map(|c| output_bound(size, c.model, policy))
        .max()
        .unwrap_or_else(|| output_bound(size, None, policy));
    // Price: the dearest input and the dearest output of the platform-paid candidates, so the
    // amount bounds every candidate's price at any grant — at their long-prompt rates when the
    // prompt estimate (bytes / 4, above the real count for text) is past their threshold.
    let (mut input_price, mut output_price, mut priced) = (0u64, 0u64, false);
    for candidate in candidates.iter().filter(|c| c.platform) {
        if let Some(pricing) = candidate.model.and_then(|m| m.pricing.as_ref()) {
            priced = true;
            let (input_rate, output_rate) = pricing.rates(prompt);
            input_price = input_price.max(input_rate);
            output_price = output_price.max(output_rate);
        }
    }
    let total_output = u128::from(choices) * u128::from(ask);
    let tokens = u64::try_from(u128::from(prompt) + total_output).unwrap_or(u64::MAX);
    let cost_fixed = u128::from(prompt) * u128::from(input_price);
    let cost_per = u128::from(choices) * u128::from(output_price);
    let cost = if priced {
        u64::try_from((cost_fixed + cost_per * u128::from(ask)).div_ceil(1_000_000))
            .unwrap_or(u64::MAX)
    } else {
        0
    };
    let day_ttl = clock::until_next_day(now_ms) + GRACE_MS;
    let month_ttl = clock::until_next_month(now_ms) + GRACE_MS;
    let id = tenant.meter();
    let mut charges = Vec::with_capacity(5);
    if let (None, Some(ceiling)) = (&tenant.limits, tenant.concurrency_ceiling) {
        // Unmetered, but not unbounded: the platform's guard of the gateway's memory, per
        // namespace (a namespace may hold several LlmTenants, and the ceiling is its own).
        charges.push(Charge::Lease {
            key: keys::namespace_inflight(&tenant.namespace),
            limit: ceiling,
            lease_ms: policy.lease_ms,
            kind: LimitKind::Concurrency,
        });
    }
    if let Some(limits) = &tenant.limits {
        charges.push(Charge::Window {
            key: keys::rpm(id),
            limit: limits.requests_per_minute,
            window_ms: MINUTE_MS,
            kind: LimitKind::Rpm,
        });
        charges.push(Charge::Lease {
            key: keys::inflight(id),
            limit: limits.concurrent,
            lease_ms: policy.lease_ms,
            kind: LimitKind::Concurrency,
        });
    }
    charges.push(Charge::Amount {
        key: keys::tokens(id, &day),
        limit: tenant.limits.as_ref().map(|l| l.tokens_per_day),
        amount: tokens,
        ttl_ms: day_ttl,
        kind: tenant.limits.as_ref().map(|_| LimitKind::Tpd),
        measure: Measure::Tokens,
        flex: flex(u128::from(prompt), u128::from(choices), 1, ask),
    });
    charges.push(Charge::Amount {
        key: keys::requests(id, &day),
        limit: None,
        amount: 1,
        ttl_ms: day_ttl,
        kind: None,
        measure: Measure::Requests,
        flex: None,
    });
    let blocking = tenant
        .budget
        .as_ref()
        .filter(|b| b.action == BudgetAction::Block);
    charges.push(Charge::Amount {
        key: keys::spend(id, &month),
        limit: blocking.map(|b| b.monthly_micro_usd),
        amount: cost,
        ttl_ms: month_ttl,
        kind: blocking.map(|_| LimitKind::Budget),
        measure: Measure::MicroUsd,
        flex: if priced {
            flex(cost_fixed, cost_per, 1_000_000, ask)
        } else {
            None
        },
    });
    Reservation {
        charges,
        tokens,
        cost_micro_usd: cost,
        day,
        month,
        output_tokens: ask,
        asked_output_tokens: ask,
    }
}

/// What a free request (counting tokens, which costs no tokens and no money) takes: a place
/// in a per-minute window of its own, as wide as the tenant's requests per minute, so a coding
/// agent that counts before every turn neither spends its tenant's request rate nor floods
/// the gateway. `None` for a tenant without limits.
pub fn reserve_free(tenant: &TenantConfig, now_ms: u64) -> Option<Reservation> {
    let limits = tenant.limits.as_ref()?;
    let today = Day::of(now_ms);
    Some(Reservation {
        charges: vec![Charge::Window {
            key: keys::free_rpm(tenant.meter()),
            limit: limits.requests_per_minute,
            window_ms: MINUTE_MS,
            kind: LimitKind::Rpm,
        }],
        tokens: 0,
        cost_micro_usd: 0,
        day: today.key(),
        month: today.month_key(),
        output_tokens: 0,
        asked_output_tokens: 0,
    })
}

/// A provider key's own quota for one attempt (skipped to the next target when full).
pub fn reserve_provider(
    provider_id: &str,
    limits: &ProviderLimitsConfig,
    tokens: u64,
    now_ms: u64,
) -> Vec<Charge> {
    let mut charges = Vec::with_capacity(2);
    if let Some(rpm) = limits.requests_per_minute {
        charges.push(Charge::Window {
            key: keys::provider_rpm(provider_id),
            limit: rpm,
            window_ms: MINUTE_MS,
            kind: LimitKind::ProviderRpm,
        });
    }
    if let Some(tpm) = limits.tokens_per_minute {
        let minute = now_ms / MINUTE_MS;
        charges.push(Charge::Amount {
            key: keys::provider_tpm(provider_id, minute),
            limit: Some(tpm),
            amount: tokens,
            ttl_ms: 2 * MINUTE_MS,
            kind: Some(LimitKind::ProviderTpm),
            measure: Measure::Tokens,
            flex: None,
        });
    }
    charges
}

/// What a served request settles to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settlement {
    /// Tokens counted against tokens/day.
    pub tokens: u64,
    /// Micro-USD counted against the budget.
    pub cost_micro_usd: u64,
    /// True when the provider reported no usage and the reservation stands.
    pub estimated: bool,
}

/// The most input tokens a report is believed for: past the largest context any model has
/// (10 million tokens), whatever the catalog says (a catalog's context can be stale: Anthropic's
/// 1M-context beta serves models listed at 200k).
pub const MAX_BELIEVABLE_INPUT_TOKENS: u64 = 10_000_000;

/// Whether a provider's usage report could describe a real answer: some input (every request
/// has a prompt), no more input than any context holds, and no more output than the model
/// could have produced (`output_bound`, all answers together, see [`model_output_bound`]) or,
/// when the catalog does not say, than [`MAX_BELIEVABLE_INPUT_TOKENS`].
/// A report that fails is treated as missing: the reservation is charged, marked estimated.
pub fn believable(usage: &Usage, output_bound: Option<u64>) -> bool {
    usage.input_tokens > 0
        && usage.input_tokens <= MAX_BELIEVABLE_INPUT_TOKENS
        && usage.output_tokens <= output_bound.unwrap_or(MAX_BELIEVABLE_INPUT_TOKENS)
}

/// The most output tokens (all answers together) the model that served could have produced: its
/// catalog maximum per answer, times the answers asked for; `None` when the catalog does not
/// say. This is the line past which usage is not believed, deliberately not the limit the
/// gateway wrote: a provider that generated past that limit (one that does not count reasoning
/// against it, say) still charges for what it really produced, which the tenant then pays.
pub fn model_output_bound(size: RequestSize, model: Option<&ModelConfig>) -> Option<u64> {
    Some(model_max(model)?.saturating_mul(size.choices.max(1)))
}

/// A model's catalog maximum output per answer, if the catalog gives one.
fn model_max(model: Option<&ModelConfig>) -> Option<u64> {
    model.and_then(|m| m.max_output_tokens).map(u64::from)
}

/// Usage figures above this are not believed (a hostile or broken upstream could otherwise wrap
/// the counters): about a trillion tokens, far beyond any real request.
const MAX_BELIEVABLE_TOKENS: u64 = 1 << 40;

/// Settles to the provider's usage, or keeps the reservation when it reported none (a stream
/// cut short, a provider without usage), so nothing escapes metering. A request that did not
/// complete (client gone, upstream failed) may have reported only part of its usage (Anthropic
/// reports output at the end): it is charged at least its reservation.
pub fn settlement(
    reservation: &Reservation,
    usage: Option<Usage>,
    pricing: Option<&PricingConfig>,
    platform: bool,
    complete: bool,
) -> Settlement {
    let Some(usage) = usage else {
        return Settlement {
            tokens: reservation.tokens,
            cost_micro_usd: reservation.cost_micro_usd,
            estimated: true,
        };
    };
    let input = usage.input_tokens.min(MAX_BELIEVABLE_TOKENS);
    let output = usage.output_tokens.min(MAX_BELIEVABLE_TOKENS);
    let reported = Settlement {
        tokens: input + output,
        cost_micro_usd: if platform {
            cost_micro_usd(pricing, input, output)
        } else {
            0
        },
        estimated: false,
    };
    if complete {
        return reported;
    }
    Settlement {
        tokens: reported.tokens.max(reservation.tokens),
        cost_micro_usd: reported.cost_micro_usd.max(reservation.cost_micro_usd),
        estimated: true,
    }
}

/// The releases that settle a list of charges. `settled` is `None` when no provider answered:
/// then everything is given back (the RPM entry included — DESIGN §2, released before the
/// first byte). When served, the RPM entry stays, the lease goes and the amounts move to the
/// settled figures. A served request's request counter already holds what it reserved (one
/// request), so it has no release: in Redis that is one call less per request, about 5 % of a
/// request's script work, which is what bounds how many requests one Redis meters.
pub fn releases(charges: &[Charge], settled: Option<Settlement>) -> Vec<Release> {
    charges
        .iter()
        .filter_map(|charge| match (charge, settled) {
            (Charge::Window { .. }, Some(_)) => None,
            (Charge::Window { .. } | Charge::Lease { .. }, _) => Some(charge.release(0)),
            (Charge::Amount { measure, .. }, settled) => {
                let value = match (measure, settled) {
                    (_, None) => 0,
                    (Measure::Tokens, Some(s)) => s.tokens,
                    (Measure::MicroUsd, Some(s)) => s.cost_micro_usd,
                    // It reserved the one request it was, and keeps it.
                    (Measure::Requests, Some(_)) => return None,
                };
                Some(charge.release(value))
            }
        })
        .collect()
}

/// Alert thresholds (percent of the budget) crossed between `before` and `after`.
pub fn crossed_thresholds(budget: u64, percents: &[u32], before: u64, after: u64) -> Vec<u32> {
    if budget == 0 {
        return Vec::new();
    }
    percents
        .iter()
        .copied()
        .filter(|p| {
            let line = u128::from(budget) * u128::from(*p);
            u128::from(before) * 100 < line && u128::from(after) * 100 >= line
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{BudgetConfig, TenantConfig};
    use crate::config::{EffectiveLimits, Source};

    fn tenant(limits: Option<EffectiveLimits>, budget: Option<BudgetConfig>) -> TenantConfig {
        TenantConfig {
            id: "team-a/acme".into(),
            namespace: "team-a".into(),
            name: "acme".into(),
            tier: "pro".into(),
            source: Source::Platform,
            limits,
            budget,
            ..TenantConfig::default()
        }
    }

    fn pro() -> EffectiveLimits {
        EffectiveLimits {
            requests_per_minute: 60,
            tokens_per_day: 500_000,
            concurrent: 10,
        }
    }

    fn model(max_output: Option<u32>, input: u64, output: u64) -> ModelConfig {
        ModelConfig {
            embedding: false,
            name: "m".into(),
            aliases: Vec::new(),
            streaming: true,
            function_calling: true,
            context_window: None,
            max_output_tokens: max_output,
            pricing: Some(PricingConfig {
                input_micro_usd_per_million: input,
                output_micro_usd_per_million: output,
                long_context: None,
            }),
        }
    }

    const NOW: u64 = 1_795_615_200_000; // 2026-11-25T14:00Z

    #[test]
    fn cost_is_integer_and_rounded_up_once() {
        let pricing = PricingConfig {
            input_micro_usd_per_million: 3_000_000,
            output_micro_usd_per_million: 15_000_000,
            long_context: None,
        };
        // 1,000 in × 3 USD/M + 500 out × 15 USD/M = 0.003 + 0.0075 USD.
        assert_eq!(cost_micro_usd(Some(&pricing), 1_000, 500), 10_500);
        // One token at 3 USD/M is 3 micro-USD; at 0.15 USD/M it rounds up to 1.
        assert_eq!(cost_micro_usd(Some(&pricing), 1, 0), 3);
        let cheap = PricingConfig {
            input_micro_usd_per_million: 150_000,
            output_micro_usd_per_million: 0,
            long_context: None,
        };
        assert_eq!(cost_micro_usd(Some(&cheap), 1, 0), 1);
        assert_eq!(cost_micro_usd(None, 1_000_000, 1_000_000), 0);
        // No overflow at the extremes.
        let dear = PricingConfig {
            input_micro_usd_per_million: u64::MAX,
            output_micro_usd_per_million: u64::MAX,
            long_context: None,
        };
        assert_eq!(cost_micro_usd(Some(&dear), u64::MAX, u64::MAX), u64::MAX);
    }

    #[test]
    fn a_long_prompt_is_priced_at_its_long_rates_throughout() {
        let pricing = PricingConfig {
            input_micro_usd_per_million: 3_000_000,
            output_micro_usd_per_million: 15_000_000,
            long_context: Some(crate::config::LongContextPricing {
                above_input_tokens: 200_000,
                input_micro_usd_per_million: 6_000_000,
                output_micro_usd_per_million: 22_500_000,
            }),
        };
        assert_eq!(cost_micro_usd(Some(&pricing), 200_000, 1_000), 615_000);
        // One token more and every token is at the long rates.
        assert_eq!(cost_micro_usd(Some(&pricing), 200_001, 1_000), 1_222_506);
    }

    #[test]
    fn an_unlisted_models_maximum_is_always_written_into_a_request_without_a_limit() {
        let model = |name: &str| ModelConfig {
            embedding: false,
            name: name.into(),
            aliases: Vec::new(),
            streaming: true,
            function_calling: true,
            context_window: None,
            max_output_tokens: Some(1_000),
            pricing: None,
        };
        let unlimited = RequestSize {
            body_bytes: 40,
            max_output_tokens: None,
            choices: 1,
        };
        // A listed model cannot exceed its maximum: nothing to write.
        assert_eq!(output_cap(unlimited, 1_000, Some(&model("listed"))), None);
        // An unlisted one may: its bound is written in.
        assert_eq!(
            output_cap(unlimited, 1_000, Some(&model(UNLISTED_MODEL))),
            Some(1_000)
        );
        let asked = RequestSize {
            max_output_tokens: Some(500),
            ..unlimited
        };
        assert_eq!(output_cap(asked, 500, Some(&model(UNLISTED_MODEL))), None);
    }

    #[test]
    fn the_reservation_bounds_tokens_and_prices_the_dearest_candidate() {
        let limits = EffectiveLimits {
            requests_per_minute: 60,
            tokens_per_day: 500_000,
            concurrent: 10,
        };
        let budget = BudgetConfig {
            monthly_micro_usd: 5_000_000,
            alert_thresholds: vec![50, 80],
            action: BudgetAction::Block,
        };
        let cheap = model(Some(1_000), 1_000_000, 2_000_000);
        let dear = model(Some(8_000), 3_000_000, 15_000_000);
        let candidates = [
            Candidate {
                model: Some(&cheap),
                platform: true,
            },
            Candidate {
                model: Some(&dear),
                platform: true,
            },
        ];
        let size = RequestSize {
            body_bytes: 400,
            max_output_tokens: Some(2_000),
            choices: 1,
        };
        let r = reserve(
            &tenant(Some(limits), Some(budget)),
            &candidates,
            size,
            &ReservePolicy::default(),
            NOW,
        );
        // 100 prompt tokens; output min(2000 asked, 8000 model, 4096 cap) on the dear model.
        assert_eq!(r.tokens, 2_100);
        assert_eq!(
            r.cost_micro_usd,
            cost_micro_usd(dear.pricing.as_ref(), 100, 2_000)
        );
        assert_eq!(
            (r.day.as_str(), r.month.as_str()),
            ("2026-11-25", "2026-11")
        );
        let kinds: Vec<_> = r
            .charges
            .iter()
            .map(|c| match c {
                Charge::Window { kind, .. } | Charge::Lease { kind, .. } => Some(*kind),
                Charge::Amount { kind, .. } => *kind,
            })
            .collect();
        assert_eq!(
            kinds,
            vec![
                Some(LimitKind::Rpm),
                Some(LimitKind::Concurrency),
                Some(LimitKind::Tpd),
                None,
                Some(LimitKind::Budget)
            ]
        );
    }

    #[test]
    fn a_limited_tenant_counts_on_its_namespace_and_an_unlimited_one_on_its_own() {
        let m = model(Some(100), 1, 1);
        let candidates = [Candidate {
            model: Some(&m),
            platform: true,
        }];
        let keys_of = |t: &TenantConfig| -> Vec<String> {
            reserve(
                t,
                &candidates,
                RequestSize::default(),
                &ReservePolicy::default(),
                NOW,
            )
            .charges
            .iter()
            .map(|c| c.key().to_owned())
            .collect()
        };
        let limited = keys_of(&tenant(Some(pro()), None));
        assert!(
            limited.iter().all(|k| k.starts_with("t:team-a:")),
            "{limited:?}"
        );
        let mut renamed = tenant(Some(pro()), None);
        renamed.id = "team-a/acme-2".into();
        renamed.name = "acme-2".into();
        assert_eq!(keys_of(&renamed), limited, "a new name is no new allowance");
        let own = keys_of(&tenant(None, None));
        assert!(
            own.iter().all(|k| k.starts_with("t:team-a/acme:")),
            "{own:?}"
        );
    }

    #[test]
    fn tenants_without_limits_are_only_counted_and_tenant_keys_cost_nothing() {
        let alert = BudgetConfig {
            monthly_micro_usd: 1_000,
            alert_thresholds: vec![50],
            action: BudgetAction::Alert,
        };
        let m = model(None, 1_000_000, 1_000_000);
        let own = [Candidate {
            model: Some(&m),
            platform: false,
        }];
        let r = reserve(
            &tenant(None, Some(alert)),
            &own,
            RequestSize::default(),
            &ReservePolicy::default(),
            NOW,
        );
        assert_eq!(r.cost_micro_usd, 0);
        assert!(
            r.charges
                .iter()
                .all(|c| matches!(c, Charge::Amount { limit: None, .. }))
        );
        // A cheaper cap applies when neither request nor model bounds output.
        let policy = ReservePolicy {
            unbounded_output_tokens: 100,
            ..ReservePolicy::default()
        };
        assert_eq!(
            reserve(
                &tenant(None, None),
                &own,
                RequestSize::default(),
                &policy,
                NOW
            )
            .tokens,
            100
        );
    }

    #[test]
    fn settling_moves_amounts_to_usage_or_keeps_the_reservation() {
        let m = model(None, 1_000_000, 1_000_000);
        let candidates = [Candidate {
            model: Some(&m),
            platform: true,
        }];
        let limits = EffectiveLimits {
            requests_per_minute: 1,
            tokens_per_day: 10_000,
            concurrent: 1,
        };
        let r = reserve(
            &tenant(Some(limits), None),
            &candidates,
            RequestSize {
                body_bytes: 40,
                max_output_tokens: Some(90),
                choices: 1,
            },
            &ReservePolicy::default(),
            NOW,
        );
        assert_eq!(r.tokens, 100);
        let usage = Usage {
            input_tokens: 7,
            output_tokens: 3,
            ..Usage::default()
        };
        let settled = settlement(&r, Some(usage), m.pricing.as_ref(), true, true);
        assert_eq!(
            settled,
            Settlement {
                tokens: 10,
                cost_micro_usd: 10,
                estimated: false
            }
        );
        let releases = releases(&r.charges, Some(settled));
        // The RPM entry stays (the request was made); the lease goes; amounts move; the
        // request counter keeps its one request and is not sent at all.
        assert!(!releases.iter().any(|r| matches!(r, Release::Window { .. })));
        // A limited tenant counts on its namespace's counters (`TenantConfig::meter`).
        let requests_key = keys::requests("team-a", "2026-11-25");
        assert!(
            !releases
                .iter()
                .any(|r| matches!(r, Release::Adjust { key, .. } if *key == requests_key)),
            "{releases:?}"
        );
        assert!(releases.iter().any(|r| matches!(r, Release::Lease { .. })));
        assert!(releases.contains(&Release::Adjust {
            key: keys::tokens("team-a", "2026-11-25"),
            delta: -90,
            ttl_ms: clock::until_next_day(NOW) + GRACE_MS
        }));
        let kept = settlement(&r, None, m.pricing.as_ref(), true, true);
        // A stream cut after a partial report is charged at least its reservation.
        let cut = settlement(&r, Some(usage), m.pricing.as_ref(), true, false);
        assert_eq!(
            (cut.tokens, cut.cost_micro_usd, cut.estimated),
            (100, r.cost_micro_usd, true)
        );
        // Absurd reports are bounded, never wrapped.
        let absurd = Usage {
            input_tokens: u64::MAX,
            output_tokens: u64::MAX,
            ..Usage::default()
        };
        assert_eq!(
            settlement(&r, Some(absurd), m.pricing.as_ref(), true, true).tokens,
            2 << 40
        );
        assert!(kept.estimated && kept.tokens == 100 && kept.cost_micro_usd == r.cost_micro_usd);
        // Nothing served: everything given back, the RPM entry and the request included.
        let all = releases_of_nothing(&r);
        assert!(all.iter().any(|r| matches!(r, Release::Window { .. })));
        assert!(
            all.iter().any(
                |r| matches!(r, Release::Adjust { key, delta: -1, .. } if *key == requests_key)
            )
        );
    }

    fn releases_of_nothing(r: &Reservation) -> Vec<Release> {
        releases(&r.charges, None)
    }

    #[test]
    fn counter_keys_keep_their_layout() {
        // Replicas of two versions share these keys in Redis during a rolling update: a new
        // layout would split every counter in two.
        let t = "team-a/acme";
        assert_eq!(keys::rpm(t), "t:team-a/acme:rpm");
        assert_eq!(keys::inflight(t), "t:team-a/acme:inflight");
        assert_eq!(
            keys::tokens(t, "2026-11-25"),
            "t:team-a/acme:tokens:2026-11-25"
        );
        assert_eq!(
            keys::requests(t, "2026-11-25"),
            "t:team-a/acme:requests:2026-11-25"
        );
        assert_eq!(keys::spend(t, "2026-11"), "t:team-a/acme:spend:2026-11");
        assert_eq!(
            keys::threshold(t, "2026-11", 80),
            "t:team-a/acme:threshold:2026-11:80"
        );
        assert_eq!(keys::provider_rpm("openai"), "p:openai:rpm");
        assert_eq!(keys::provider_tpm("openai", 7), "p:openai:tpm:7");
    }

    #[test]
    fn thresholds_fire_when_crossed_not_before() {
        assert_eq!(
            crossed_thresholds(1_000, &[50, 80, 100], 0, 499),
            Vec::<u32>::new()
        );
        assert_eq!(
            crossed_thresholds(1_000, &[50, 80, 100], 499, 500),
            vec![50]
        );
        assert_eq!(
            crossed_thresholds(1_000, &[50, 80, 100], 500, 1_200),
            vec![80, 100]
        );
        assert_eq!(crossed_thresholds(0, &[50], 0, 10), Vec::<u32>::new());
    }
}
