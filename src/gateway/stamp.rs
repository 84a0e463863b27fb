//! The `x-dgidgi-*` headers an answer carries: what served it (provider, model, source, the
//! fallback index), and what the gateway changed in the request (the output limit it lowered,
//! the members it rewrote). The gateway changes only what it must, and says so here.

use hyper::header::{HeaderMap, HeaderName, HeaderValue};

use super::chat::PROVIDER_HEADER;
use crate::routing::plan::{Attempt, Plan};

/// The headers that say who served an answer. Constants, not text: a name given as text is
/// parsed and checked again on every insert.
const SERVED_BY: [HeaderName; 3] = [
    HeaderName::from_static(PROVIDER_HEADER),
    HeaderName::from_static("x-dgidgi-model"),
    HeaderName::from_static("x-dgidgi-source"),
];
const FALLBACK_HEADER: HeaderName = HeaderName::from_static("x-dgidgi-fallback");
/// Set when the tenant's remaining allowance could not cover the output the request asked for,
/// and a lower limit was written into the upstream request: the limit written, per answer.
pub const OUTPUT_CAPPED_HEADER: HeaderName = HeaderName::from_static("x-dgidgi-output-capped");

/// Set when the gateway wrote members of the request anew beyond the model and output limit
/// (item references resolved into `input`): the members, comma-separated.
pub const REWRITTEN_HEADER: HeaderName = HeaderName::from_static("x-dgidgi-rewritten");

/// Says which members of the request the gateway rewrote, when it rewrote any.
pub(super) fn said_rewritten(headers: &mut HeaderMap, rewritten: &[&'static str]) {
    if rewritten.is_empty() {
        return;
    }
    if let Ok(value) = HeaderValue::from_str(&rewritten.join(",")) {
        headers.insert(REWRITTEN_HEADER, value);
    }
}

/// The `x-dgidgi-*` headers saying what served the request.
pub(super) fn stamp(
    headers: &mut HeaderMap,
    attempt: &Attempt<'_>,
    planned: &Plan<'_>,
    index: usize,
    output_cap: Option<u64>,
) {
    if let Some(cap) = output_cap {
        headers.insert(OUTPUT_CAPPED_HEADER, HeaderValue::from(cap));
    }
    let provider = attempt.provider.name.as_str();
    for (name, value) in
        SERVED_BY
            .into_iter()
            .zip([provider, attempt.model.as_str(), planned.source.as_str()])
    {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(name, value);
        }
    }
    headers.insert(FALLBACK_HEADER, HeaderValue::from(index));
}
