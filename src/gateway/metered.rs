//! The glue between the request path and metering: what a planned request reserves (its
//! candidates and size), the admission awaited alongside the upstream call, and the settlement
//! that runs when the served body reports its completion — streams and client disconnects
//! included — so every admitted request is settled exactly once.

use std::sync::Arc;

use hyper::header::{HeaderName, HeaderValue};
use hyper::{Response, StatusCode};
use serde_json::{Map, Value};

use super::body::ResponseBody;
use super::completion::{Completion, End};
use super::error::ApiError;
use super::limits::{refusal_error, write_admitted_headers};
use super::serve::AttemptAnswer;
use super::{Active, Gateway};
use crate::config::{PricingConfig, Scope, TenantConfig};
use crate::formats::{Format, volume};
use crate::metering::meter::ProviderTicket;
use crate::metering::plan::{Candidate, RequestSize};
use crate::metering::{self, Ticket};
use crate::routing::plan::Plan;

/// Header carrying the gateway's request id (the ledger's key).
pub const REQUEST_ID_HEADER: &str = "x-dgidgi-request-id";

/// The request's size as the reservation bounds it: its body, its largest output field and its
/// answer count, read in its own `format` (see [`volume`]). A field that multiplies output
/// beyond what the gateway can bound is refused for a tenant whose limits or budget apply.
pub fn request_size(
    tenant: &TenantConfig,
    format: Format,
    json: &Map<String, Value>,
    body_bytes: usize,
) -> Result<RequestSize, ApiError> {
    let ask = volume::output_ask(format, json)
        .map_err(|error| ApiError::bad_request(error.to_string()))?;
    let metered = tenant.limits.is_some() || tenant.budget.is_some();
    if let Some(field) = ask.unbounded.filter(|_| metered) {
        return Err(ApiError::bad_request(format!(
            "'{field}' multiplies the output beyond what the gateway can reserve for this tenant's limits; send several requests instead"
        )));
    }
    if let Some(option) = unpriced_service(json).filter(|_| metered) {
        return Err(ApiError::bad_request(format!(
            "{option} buys a service dearer than the price this gateway meters at; leave it out"
        )));
    }
    Ok(RequestSize {
        body_bytes,
        max_output_tokens: ask.max_output_tokens,
        choices: ask.choices,
    })
}

/// A request field that buys a dearer service than any catalog price covers, as the client
/// wrote it: Anthropic's fast mode (`speed` other than `standard`, several times the price),
/// priority processing (`service_tier: "priority"`), and data-residency inference
/// (`inference_geo` other than `global`, at a premium). A metered tenant's request with one is
/// refused rather than metered below its cost (a tenant's own keys pay for it themselves).
fn unpriced_service(json: &Map<String, Value>) -> Option<String> {
    let set = |name: &str| crate::formats::member(json, name).filter(|v| !v.is_null());
    if let Some(speed) = set("speed").filter(|v| v.as_str() != Some("standard")) {
        return Some(format!("'speed: {speed}'"));
    }
    if let Some(tier) = set("service_tier").filter(|v| v.as_str() == Some("priority")) {
        return Some(format!("'service_tier: {tier}'"));
    }
    if let Some(geo) = set("inference_geo").filter(|v| v.as_str() != Some("global")) {
        return Some(format!("'inference_geo: {geo}'"));
    }
    None
}

/// Every model the plan may end up on, so the reservation covers the dearest of them.
pub fn candidates<'a>(planned: &Plan<'a>) -> Vec<Candidate<'a>> {
    planned
        .attempts
        .iter()
        .map(|attempt| Candidate {
            model: attempt.model_config,
            platform: attempt.provider.scope == Scope::Platform,
        })
        .collect()
}

/// Admits a planned request (429/402/503 when refused).
pub async fn admit(
    gateway: &Gateway,
    snapshot: &Active,
    tenant: &crate::config::TenantConfig,
    planned: &Plan<'_>,
    size: RequestSize,
) -> Result<Ticket, ApiError> {
    gateway
        .meter
        .admit(
            tenant,
            &candidates(planned),
            size,
            planned.source.as_str(),
            &planned.requested_model,
            snapshot.config.unbounded_output_tokens,
        )
        .await
        .map_err(|refused| refusal_error(&refused))
}

/// A reservation that can be settled as "nothing served".
pub trait Releasable: Send + 'static {
    /// Settles it as "nothing served": everything it holds is given back.
    fn release(self, gateway: Arc<Gateway>) -> impl Future<Output = ()> + Send;
}

impl Releasable for Ticket {
    async fn release(self, gateway: Arc<Gateway>) {
        gateway.meter.settle(self, None).await;
    }
}

impl Releasable for ProviderTicket {
    async fn release(self, gateway: Arc<Gateway>) {
        gateway.meter.settle_provider(self, None).await;
    }
}

/// Holds a reservation — the request's ticket, or a provider key's for one attempt — while
/// its upstream is called. If the request is dropped before the reservation is settled (the
/// client hung up during the call, or a deadline cancelled it), it is released, so its
/// concurrency lease, window entries and Redis marker do not linger.
pub struct SettleOnDrop<T: Releasable> {
    gateway: Arc<Gateway>,
    held: Option<T>,
}

impl<T: Releasable> SettleOnDrop<T> {
    /// Guards `held`.
    pub fn new(gateway: &Arc<Gateway>, held: T) -> Self {
        Self {
            gateway: gateway.clone(),
            held: Some(held),
        }
    }

    /// The reservation, until [`SettleOnDrop::disarm`] takes it.
    pub fn get(&self) -> Option<&T> {
        self.held.as_ref()
    }

    /// The reservation, mutably (to await its admission's journal while still guarded).
    pub fn get_mut(&mut self) -> Option<&mut T> {
        self.held.as_mut()
    }

    /// Takes the reservation back to settle it normally.
    pub fn disarm(mut self) -> Option<T> {
        self.held.take()
    }

    /// Releases the reservation now and waits until it is released (so a client retrying at
    /// once finds its room). The release runs as a task of its own: if the request is dropped
    /// meanwhile (the client hung up, the drain deadline closed its connection), it still
    /// completes, and a stopping gateway waits for it.
    pub async fn release_now(mut self) {
        if let Some(held) = self.held.take() {
            let release = held.release(self.gateway.clone());
            let _ = self.gateway.meter.spawn_settlement(release).await;
        }
    }
}

impl<T: Releasable + std::fmt::Debug> std::fmt::Debug for SettleOnDrop<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("SettleOnDrop").field(&self.held).finish()
    }
}

impl<T: Releasable> Drop for SettleOnDrop<T> {
    fn drop(&mut self) {
        if let Some(held) = self.held.take() {
            let release = held.release(self.gateway.clone());
            drop(self.gateway.meter.spawn_settlement(release));
        }
    }
}

/// What settling needs from the attempt that served, owned so it can outlive the request.
struct SettleFacts {
    provider: String,
    model: String,
    model_label: String,
    platform: bool,
    pricing: Option<PricingConfig>,
    fallback: u32,
    output_bound: Option<u64>,
}

/// Finishes a metered request: on an answer, stamps the request id and rate-limit headers and
/// settles when the body reports its completion; on a failure before any answer, releases the
/// reservation at once.
pub async fn finish(
    gateway: &Arc<Gateway>,
    snapshot: &Active,
    mut guard: SettleOnDrop<Ticket>,
    result: Result<AttemptAnswer, ApiError>,
) -> Result<Response<ResponseBody>, ApiError> {
    let Some(ticket) = guard.get_mut() else {
        return Err(ApiError::not_ready());
    };
    let id = ticket.id_text();
    let mut served = match result {
        Ok(served) => served,
        Err(mut error) => {
            match error.answered_by.take() {
                Some(answered) => {
                    let (provider, model) = *answered;
                    if let Some(ticket) = guard.disarm() {
                        charge_reservation(gateway, snapshot, ticket, provider, model).await;
                    }
                }
                None => guard.release_now().await,
            }
            super::access_log::note(|entry| entry.request_id = Some(id.clone()));
            error.headers.push((REQUEST_ID_HEADER, id));
            return Err(error);
        }
    };
    // Usually long done: the journal commit ran alongside the upstream call.
    if let Err(refused) = ticket.journalled().await {
        // The provider was called: its key keeps the reservation.
        let quota = served.quota.take().and_then(SettleOnDrop::disarm);
        if let Some(ticket) = guard.disarm() {
            let owner = gateway.clone();
            let settlement = gateway.meter.spawn_settlement(async move {
                if let Some(quota) = quota {
                    let reserved = ticket.reservation.tokens;
                    owner.meter.settle_provider(quota, Some(reserved)).await;
                }
                owner.meter.settle(ticket, None).await;
            });
            let _ = settlement.await;
        }
        return Err(refusal_error(&refused));
    }
    let Some(ticket) = guard.disarm() else {
        return Err(ApiError::not_ready());
    };
    let provider = snapshot.provider(&served.provider);
    let model = provider.and_then(|p| p.model(&served.model));
    let facts = SettleFacts {
        model_label: model.map_or_else(|| "other".to_owned(), |m| m.name.clone()),
        platform: provider.is_some_and(|p| p.scope == Scope::Platform),
        pricing: model.and_then(|m| m.pricing),
        provider: served.provider.clone(),
        model: served.model.clone(),
        fallback: u32::try_from(served.fallback).unwrap_or(u32::MAX),
        output_bound: crate::metering::plan::model_output_bound(ticket.size, model),
    };
    // The request's log line is written when its body ends, with what it used.
    let entry = super::access_log::defer().map(|mut entry| {
        entry.request_id = Some(id.clone());
        entry.source = Some(served.source.as_str());
        entry.provider = Some(served.provider.clone());
        entry.model = Some(served.model.clone());
        entry.fallbacks = facts.fallback;
        entry
    });
    let headers = served.response.headers_mut();
    write_admitted_headers(&ticket, headers);
    if let Ok(value) = HeaderValue::from_str(&id) {
        headers.insert(const { HeaderName::from_static(REQUEST_ID_HEADER) }, value);
    }
    let status = served.response.status();
    let completion = served.completion;
    let quota = served.quota.and_then(SettleOnDrop::disarm);
    let trace = served.trace;
    let owner = gateway.clone();
    drop(gateway.meter.spawn_settlement(async move {
        let completion = completion.await.unwrap_or(Completion {
            usage: None,
            end: End::ClientGone,
            first_byte: None,
            status: status.as_u16(),
            finish_reason: None,
        });
        // The settlement's own state (Redis calls, the ledger record) is kilobytes: boxed, it
        // is allocated once when the body ends instead of being copied into every request's
        // task when it is spawned.
        Box::pin(settle_served(
            owner, ticket, quota, facts, completion, status, entry, trace,
        ))
        .await;
    }));
    Ok(served.response)
}

/// Settles a request whose provider answered but whose answer the gateway could not relay at
/// its reservation (no usage was read: charged as estimated), in a task of its own that a
/// dropped request cannot cut short.
async fn charge_reservation(
    gateway: &Arc<Gateway>,
    snapshot: &Active,
    ticket: Ticket,
    provider: String,
    model: String,
) {
    let platform = snapshot
        .provider(&provider)
        .is_some_and(|p| p.scope == Scope::Platform);
    // The provider's own status: it answered, and a successful answer is billed (with an
    // error status the meter would take the answer as unbilled).
    let status = StatusCode::OK.as_u16();
    let owner = gateway.clone();
    let settlement = gateway.meter.spawn_settlement(async move {
        let served = metering::Served {
            provider: &provider,
            model: &model,
            model_label: "other",
            platform,
            pricing: None,
            usage: None,
            status,
            outcome: metering::Outcome::UpstreamFailed,
            fallback: 0,
            first_byte: None,
            output_bound: None,
        };
        owner.meter.settle(ticket, Some(served)).await;
    });
    let _ = settlement.await;
}

/// Settles a served request and the provider key's reservation of the attempt that served.
#[allow(clippy::too_many_arguments)]
async fn settle_served(
    gateway: Arc<Gateway>,
    ticket: Ticket,
    quota: Option<ProviderTicket>,
    facts: SettleFacts,
    completion: Completion,
    status: StatusCode,
    entry: Option<super::access_log::Entry>,
    trace: Option<opentelemetry::Context>,
) {
    // The provider key's own tokens per minute count what it served; without a usage report,
    // the reservation stands. Settled alongside the tenant's: with Redis both calls leave in
    // one pipeline.
    let tokens = completion
        .usage
        .map_or(ticket.reservation.tokens, |usage| usage.total_tokens());
    let provider = async {
        if let Some(quota) = quota {
            gateway.meter.settle_provider(quota, Some(tokens)).await;
        }
    };
    tokio::join!(
        provider,
        settle(&gateway, ticket, &facts, completion, status, entry, trace)
    );
}

async fn settle(
    gateway: &Gateway,
    ticket: Ticket,
    facts: &SettleFacts,
    completion: Completion,
    status: StatusCode,
    entry: Option<super::access_log::Entry>,
    trace: Option<opentelemetry::Context>,
) {
    let outcome = match completion.end {
        End::Complete => metering::Outcome::Complete,
        End::ClientGone => metering::Outcome::ClientGone,
        End::UpstreamFailed => metering::Outcome::UpstreamFailed,
    };
    let first_byte = completion
        .first_byte
        .map(|at| at.saturating_duration_since(ticket.started()));
    let served = metering::Served {
        provider: &facts.provider,
        model: &facts.model,
        model_label: &facts.model_label,
        platform: facts.platform,
        pricing: facts.pricing.as_ref(),
        usage: completion.usage,
        status: if completion.status == 0 {
            status.as_u16()
        } else {
            completion.status
        },
        outcome,
        fallback: facts.fallback,
        first_byte,
        output_bound: facts.output_bound,
    };
    if let Some(mut entry) = entry {
        entry.outcome = outcome.as_str();
        entry.ttfb_ms = first_byte.map(super::access_log::millis);
        entry.input_tokens = served.usage.map(|usage| usage.input_tokens);
        entry.output_tokens = served.usage.map(|usage| usage.output_tokens);
        entry.answered(served.status);
        gateway.access_log.write(&entry);
    }
    if let Some(context) = &trace {
        // What the answer cost: its usage at the model's price, or the reservation when no
        // usage was reported (what the meter charges then).
        let cost_micro_usd = served
            .usage
            .map_or(ticket.reservation.cost_micro_usd, |usage| {
                metering::plan::cost_micro_usd(
                    facts.pricing.as_ref(),
                    usage.input_tokens,
                    usage.output_tokens,
                )
            });
        let settled = crate::telemetry::genai::Settled {
            usage: served.usage,
            cost_micro_usd,
            first_byte,
            outcome: outcome.as_str(),
            finish_reason: completion.finish_reason,
        };
        crate::telemetry::genai::settled(context, &settled);
    }
    gateway.meter.settle(ticket, Some(served)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(limited: bool) -> TenantConfig {
        let yaml = if limited {
            "{id: a/t, namespace: a, name: t, tier: free, source: platform, allowPlatformFallback: false, accessKeys: [], limits: {requestsPerMinute: 1, tokensPerDay: 1, concurrent: 1}}"
        } else {
            "{id: a/t, namespace: a, name: t, tier: free, source: tenant, allowPlatformFallback: false, accessKeys: []}"
        };
        serde_yaml::from_str(yaml).expect("tenant")
    }

    #[test]
    fn the_request_names_its_own_output_cap() {
        let size = |body: &str| {
            let json: Map<String, Value> = serde_json::from_str(body).unwrap();
            request_size(&tenant(true), Format::OpenAi, &json, 40)
        };
        // Both of OpenAI's names: the larger is what a provider may honour.
        let both = size(r#"{"max_completion_tokens": 300, "max_tokens": 9}"#).unwrap();
        assert_eq!(both.max_output_tokens, Some(300));
        let both = size(r#"{"max_completion_tokens": 1, "max_tokens": 1000000}"#).unwrap();
        assert_eq!(both.max_output_tokens, Some(1_000_000));
        assert_eq!(
            size(r#"{"max_tokens": 9}"#).unwrap().max_output_tokens,
            Some(9)
        );
        assert_eq!(size("{}").unwrap().max_output_tokens, None);
        assert_eq!(
            size(r#"{"n": 128, "max_tokens": 1000}"#).unwrap().choices,
            128
        );
        assert_eq!(size(r#"{"best_of": 8}"#).unwrap_err().status, 400);
        // A tenant's own keys: nothing to reserve, so nothing to refuse.
        let json: Map<String, Value> = serde_json::from_str(r#"{"best_of": 8}"#).unwrap();
        assert!(request_size(&tenant(false), Format::OpenAi, &json, 40).is_ok());
    }

    #[test]
    fn a_dearer_service_than_the_price_metered_is_refused_for_metered_tenants() {
        let size = |tenant: &TenantConfig, body: &str| {
            let json: Map<String, Value> = serde_json::from_str(body).unwrap();
            request_size(tenant, Format::Anthropic, &json, 40).map(|_| ())
        };
        let metered = tenant(true);
        for dear in [
            r#"{"speed": "fast"}"#,
            r#"{"service_tier": "priority"}"#,
            r#"{"inference_geo": "us"}"#,
        ] {
            assert_eq!(size(&metered, dear).unwrap_err().status, 400, "{dear}");
            assert!(size(&tenant(false), dear).is_ok(), "{dear}");
        }
        for plain in [
            r#"{"speed": "standard"}"#,
            r#"{"service_tier": "auto"}"#,
            r#"{"inference_geo": "global"}"#,
            r#"{"speed": null}"#,
        ] {
            assert!(size(&metered, plain).is_ok(), "{plain}");
        }
    }
}
