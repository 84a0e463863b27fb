//! How limit and budget decisions reach the client: 429 with `retry-after` and the
//! `x-ratelimit-*` headers OpenAI's clients read, 402 `insufficient_quota` for a spent budget,
//! 503 when the shared counters cannot be reached and the fail mode is closed; and the same
//! headers on admitted responses, so clients can pace themselves before they are refused.

use hyper::HeaderMap;
use hyper::StatusCode;
use hyper::header::{HeaderName, HeaderValue};

use super::error::ApiError;
use crate::metering::charge::{Charge, LimitKind};
use crate::metering::{Refused, Ticket};

/// `1m30s`-style durations, as OpenAI writes `x-ratelimit-reset-*`.
fn reset_text(ms: u64) -> String {
    let seconds = ms.div_ceil(1_000);
    match (seconds / 3_600, seconds % 3_600 / 60, seconds % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m{s}s"),
        (h, m, s) => format!("{h}h{m}m{s}s"),
    }
}

/// The client-facing error of a refused admission.
pub fn refusal_error(refused: &Refused) -> ApiError {
    let error = refusal_error_of(refused);
    // The limit decision, as an event of the request's span (a no-op when traces are off).
    crate::telemetry::http::limit_decision(error.code, error.message.as_str());
    error
}

fn refusal_error_of(refused: &Refused) -> ApiError {
    match refused {
        Refused::Limit {
            kind,
            limit,
            remaining,
            retry_after_ms,
        } => {
            let (what, family, kind_text) = match kind {
                LimitKind::Tpd => ("tokens per day", "tokens", "tokens"),
                LimitKind::Concurrency => ("concurrent requests", "concurrency", "requests"),
                LimitKind::ProviderTpm => ("provider tokens per minute", "tokens", "tokens"),
                _ => ("requests per minute", "requests", "requests"),
            };
            let wait = reset_text(*retry_after_ms);
            let mut error = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                kind_text,
                "rate_limit_exceeded",
                format!("rate limit reached on {what}: limit {limit}; try again in {wait}"),
            );
            error.retry_after = Some(retry_after_ms.div_ceil(1_000).max(1));
            let (limit_header, remaining_header, reset_header) = match family {
                "tokens" => (
                    "x-ratelimit-limit-tokens",
                    "x-ratelimit-remaining-tokens",
                    "x-ratelimit-reset-tokens",
                ),
                "concurrency" => (
                    "x-ratelimit-limit-concurrency",
                    "x-ratelimit-remaining-concurrency",
                    "x-ratelimit-reset-concurrency",
                ),
                _ => (
                    "x-ratelimit-limit-requests",
                    "x-ratelimit-remaining-requests",
                    "x-ratelimit-reset-requests",
                ),
            };
            error.headers = vec![
                (limit_header, limit.to_string()),
                (remaining_header, remaining.to_string()),
                (reset_header, wait),
            ];
            error
        }
        Refused::Budget { limit, spent } => ApiError::new(
            StatusCode::PAYMENT_REQUIRED,
            "insufficient_quota",
            "insufficient_quota",
            format!(
                "the tenant's monthly budget is spent ({} of {} USD); it renews on the 1st (UTC)",
                usd(*spent),
                usd(*limit)
            ),
        ),
        Refused::Unpriced(model) => ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "model_not_priced",
            format!(
                "{model:?} has no price in the platform's catalog, and this tenant's budget blocks when spent: \
                 ask the platform team to add its pricing, or use a priced model"
            ),
        ),
        Refused::Unavailable(why) => ApiError::upstream(
            StatusCode::SERVICE_UNAVAILABLE,
            "limits_unavailable",
            format!("{why}; try again shortly"),
        ),
    }
}

fn usd(micro: u64) -> String {
    format!("{}.{:06}", micro / 1_000_000, micro % 1_000_000)
}

/// `x-ratelimit-limit/remaining-*` of an admitted request's limited counters.
pub fn write_admitted_headers(ticket: &Ticket, headers: &mut HeaderMap) {
    for (charge, after) in ticket
        .reservation
        .charges
        .iter()
        .zip(&ticket.admitted.after)
    {
        let (limit, names) = match charge {
            Charge::Window {
                limit,
                kind: LimitKind::Rpm,
                ..
            } => (*limit, REQUEST_LIMIT_HEADERS),
            Charge::Amount {
                limit: Some(limit),
                kind: Some(LimitKind::Tpd),
                ..
            } => (*limit, TOKEN_LIMIT_HEADERS),
            _ => continue,
        };
        for (name, value) in names.into_iter().zip([limit, limit.saturating_sub(*after)]) {
            headers.insert(name, HeaderValue::from(value));
        }
    }
}

/// `x-ratelimit-{limit,remaining}-requests` and `-tokens`, as constants: a name given as text is
/// parsed and checked again on every insert, four times for every metered answer.
const REQUEST_LIMIT_HEADERS: [HeaderName; 2] = [
    HeaderName::from_static("x-ratelimit-limit-requests"),
    HeaderName::from_static("x-ratelimit-remaining-requests"),
];
const TOKEN_LIMIT_HEADERS: [HeaderName; 2] = [
    HeaderName::from_static("x-ratelimit-limit-tokens"),
    HeaderName::from_static("x-ratelimit-remaining-tokens"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rate_limit_says_when_to_come_back() {
        let error = refusal_error(&Refused::Limit {
            kind: LimitKind::Rpm,
            limit: 50,
            remaining: 0,
            retry_after_ms: 20_500,
        });
        assert_eq!(error.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(error.retry_after, Some(21));
        let mut headers = HeaderMap::new();
        error.write_headers(&mut headers);
        assert_eq!(headers["retry-after"], "21");
        assert_eq!(headers["x-ratelimit-limit-requests"], "50");
        assert_eq!(headers["x-ratelimit-remaining-requests"], "0");
        assert_eq!(headers["x-ratelimit-reset-requests"], "21s");
        assert_eq!(reset_text(3_600_000 * 10 + 61_000), "10h1m1s");
    }

    #[test]
    fn a_spent_budget_is_402_insufficient_quota() {
        let error = refusal_error(&Refused::Budget {
            limit: 5_000_000,
            spent: 5_000_100,
        });
        assert_eq!(error.status, StatusCode::PAYMENT_REQUIRED);
        assert_eq!(
            (error.kind, error.code),
            ("insufficient_quota", "insufficient_quota")
        );
        assert!(
            error.message.contains("5.000100 of 5.000000 USD"),
            "{}",
            error.message
        );
    }
}
