//! `POST /v1/embeddings` in OpenAI's format, before OpenAI-format providers (the request as
//! sent), Gemini and Cohere (translated, [`crate::formats::embeddings`]). The same
//! authentication, routing, fallback, limits and reserve-then-settle as chat: an embedding is
//! input tokens only, reserved at the body's estimate and settled at what the provider reports
//! (Gemini reports nothing: the estimate stands, and the ledger marks it estimated-by-gateway).

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Request, Response};
use serde_json::{Map, Value};

use super::answer_buffers::hold;
use super::body::{ResponseBody, upstream_body};
use super::chat::{ParsedRequest, model_and_provider, parse_request, within};
use super::completion::Reporter;
use super::error::ApiError;
use super::forwarded::{ClientHeaders, copy_provider_headers};
use super::metered;
use super::provider_urls::embeddings_url;
use super::serve::{
    AttemptAnswer, MAX_ANSWER_BYTES, Walk, final_error, no_room, send_to_provider,
    traced_inference, with_retries,
};
use super::stamp::stamp;
use super::upstream::{Failure, Outcome, ReadError, read_bounded};
use super::{Active, Gateway};
use crate::config::Scope;
use crate::formats::Format;
use crate::formats::dialect::dialect;
use crate::formats::embeddings::{EmbeddingsDialect, EmbeddingsTarget};
use crate::formats::{FormatError, embeddings};
use crate::metering::Ticket;
use crate::metering::plan::RequestSize;
use crate::routing::plan::{Attempt, Plan, RouteRequest, plan, prefer_healthy};
use crate::telemetry::genai::EMBEDDINGS;
use crate::usage::Usage;

/// Header choosing Cohere's `input_type` (`search_document`, `search_query`, `classification`,
/// `clustering`); [`embeddings::DEFAULT_COHERE_INPUT_TYPE`] without it.
pub const COHERE_INPUT_TYPE_HEADER: &str = "x-dgidgi-cohere-input-type";

/// Handles one embeddings request.
pub async fn handle(
    gateway: Arc<Gateway>,
    request: Request<Incoming>,
) -> Result<Response<ResponseBody>, ApiError> {
    let snapshot = gateway.active()?;
    let request = parse_request(&gateway, &snapshot, request, None).await?;
    let (model, provider) = model_and_provider(&request.json, &request.headers)?;
    embeddings::check(&request.json).map_err(|error| ApiError::bad_request(error.to_string()))?;
    let routing = RouteRequest {
        model,
        provider,
        stream: false,
        tools: false,
        embeddings: true,
    };
    let mut planned = plan(&snapshot.config, request.tenant, &routing, rand::random())?;
    prefer_healthy(&mut planned.attempts, |id| snapshot.health.is_unhealthy(id));
    // Input only: the reservation is the body's estimate, no output; token ids given as
    // integers count a token each (four bytes in the estimate's terms).
    let token_bytes = embeddings::token_ids(&request.json).saturating_mul(4);
    let size = RequestSize {
        body_bytes: request.sent.bytes().len().saturating_add(token_bytes),
        max_output_tokens: Some(0),
        choices: 1,
    };
    let ticket = metered::admit(&gateway, &snapshot, request.tenant, &planned, size).await?;
    let guard = metered::SettleOnDrop::new(&gateway, ticket);
    let Some(ticket) = guard.get() else {
        return Err(ApiError::not_ready());
    };
    // The routing rule's timeout bounds the whole walk, as for chat; traced, the walk is boxed
    // into its inference span (see `serve::serve`).
    let deadline = planned.timeout_ms.map(Duration::from_millis);
    let result = if gateway.settings.traces.is_some() {
        let walk = Box::pin(walk(&gateway, &snapshot, &planned, &request, ticket));
        let traced = traced_inference(&gateway, &snapshot, &planned, ticket, EMBEDDINGS, walk);
        within(deadline, traced).await
    } else {
        within(
            deadline,
            walk(&gateway, &snapshot, &planned, &request, ticket),
        )
        .await
    };
    metered::finish(&gateway, &snapshot, guard, result).await
}

/// Walks the plan until one target answers.
async fn walk(
    gateway: &Arc<Gateway>,
    snapshot: &Active,
    planned: &Plan<'_>,
    request: &ParsedRequest<'_>,
    ticket: &Ticket,
) -> Result<AttemptAnswer, ApiError> {
    let input_type = request
        .headers
        .get(COHERE_INPUT_TYPE_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or(embeddings::DEFAULT_COHERE_INPUT_TYPE);
    let headers = ClientHeaders::from_request(&request.headers);
    let mut failures = Vec::new();
    let walk = Walk {
        gateway,
        snapshot,
        planned,
        ticket,
    };
    for (index, attempt) in planned.attempts.iter().enumerate() {
        let provider = attempt.provider;
        let model = provider.upstream_model(&attempt.model);
        let endpoint = dialect(provider.kind.format_of(model)).embeddings();
        let url = embeddings_url(provider, model);
        let (Some(endpoint), Some(url)) = (endpoint, url) else {
            failures.push(Failure::Inexpressible(format!(
                "{} models serve no embeddings",
                provider.kind
            )));
            continue;
        };
        let target = EmbeddingsTarget { model, input_type };
        let body = match endpoint.request(&request.json, &request.sent, &target) {
            Ok(body) => Bytes::from(body),
            Err(FormatError::Invalid(message)) => return Err(ApiError::bad_request(message)),
            Err(error) => {
                failures.push(Failure::Inexpressible(error.to_string()));
                continue;
            }
        };
        // Tried again on this target when the rule's retry policy covers the failure (an
        // answer that breaks off or does not read as vectors included), as for chat; then
        // the next target.
        let (headers, body, url, json) = (&headers, &body, &url, &request.json);
        let once = || async move {
            let deadline = Instant::now() + Duration::from_millis(provider.timeouts.total_ms);
            let model = &attempt.model;
            let sent = send_to_provider(gateway, snapshot, provider, model, url, headers, body);
            let response = match tokio::time::timeout_at(deadline, sent).await {
                Ok(Outcome::Relay(response)) => response,
                Ok(Outcome::Failed(failure)) => return Err(failure),
                // Embeddings are never answered in-process.
                Ok(Outcome::Local { .. }) => return Err(Failure::Unsupported(provider.kind)),
                Err(_) => return Err(Failure::Timeout),
            };
            read_answer(gateway, attempt, endpoint, json, response, deadline).await
        };
        let retried = with_retries(&walk, attempt, &mut failures, once).await?;
        let Some((read, quota)) = retried else {
            continue;
        };
        // An answer that cannot be relayed ends the walk; the key's quota settles as it drops.
        let (parts, out, usage, room) = read?;
        snapshot.health.record_success(&provider.id);
        let (mut meter, completion) = Reporter::new(parts.status.as_u16());
        meter.set_usage(usage);
        let mut response = Response::new(ResponseBody::metered(hold(out, room), meter));
        *response.status_mut() = parts.status;
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let platform = provider.scope == Scope::Platform;
        copy_provider_headers(&parts.headers, response.headers_mut(), platform);
        stamp(response.headers_mut(), attempt, planned, index, None);
        return Ok(AttemptAnswer {
            response,
            completion,
            provider: provider.id.clone(),
            model: attempt.model.clone(),
            fallback: index,
            source: planned.source,
            quota,
            trace: None,
        });
    }
    Err(final_error(&failures, &planned.requested_model))
}

/// What an answered try gave, whole: the provider's status and headers, the body written for
/// the OpenAI-format client, the usage it reports, and the room it holds in the answer buffers.
type ReadAnswer = (
    hyper::http::response::Parts,
    Bytes,
    Option<Usage>,
    Option<tokio::sync::OwnedSemaphorePermit>,
);

/// Reads an answer whole (by `deadline`) and writes it for the client: a provider's refusal
/// (a 4xx) in OpenAI's shape, vectors translated from the provider's format. `Err`: a failure
/// to retry or fall back from; `Ok(Err(_))`: the provider answered (and bills) but the answer
/// cannot be relayed, and the walk ends here.
async fn read_answer(
    gateway: &Gateway,
    attempt: &Attempt<'_>,
    endpoint: &dyn EmbeddingsDialect,
    request: &Map<String, Value>,
    response: Response<hyper::body::Incoming>,
    deadline: Instant,
) -> Result<Result<ReadAnswer, ApiError>, Failure> {
    let (parts, incoming) = response.into_parts();
    let success = parts.status.is_success();
    // A refusal is a short error; an answer may be tens of MiB of vectors.
    let limit = if success { MAX_ANSWER_BYTES } else { 64 * 1024 };
    let read = read_bounded(
        upstream_body(incoming),
        limit,
        Some(&gateway.answer_buffers),
    );
    let read = tokio::time::timeout_at(deadline, read)
        .await
        .unwrap_or(Err(ReadError::Broken));
    let (answer, room) = match read {
        Ok(read) => read,
        // The provider answered (and bills), but the answer cannot be relayed: charged at
        // the reservation, and no other target is paid for the same inputs.
        Err(error) if success => {
            let (status, code, message) = match error {
                ReadError::NoRoom => return Ok(Err(no_room(attempt))),
                ReadError::TooLarge => (
                    hyper::StatusCode::BAD_GATEWAY,
                    "answer_too_large",
                    "the embeddings answer is larger than the gateway relays (32 MiB): send fewer inputs or fewer dimensions",
                ),
                ReadError::Broken => (
                    hyper::StatusCode::BAD_GATEWAY,
                    "upstream_error",
                    "the provider's answer broke off or took too long",
                ),
            };
            return Ok(Err(ApiError {
                answered_by: Some(Box::new((
                    attempt.provider.id.clone(),
                    attempt.model.clone(),
                ))),
                ..ApiError::upstream(status, code, message)
            }));
        }
        Err(_) => return Err(Failure::Connect),
    };
    let (out, usage) = if success {
        match endpoint.answer(&answer, request, &attempt.model) {
            // `None`: the answer passes as it came.
            Ok((out, usage)) => (out.map_or_else(|| answer.clone(), Bytes::from), usage),
            Err(error) => return Err(Failure::BadAnswer(error.to_string())),
        }
    } else {
        // The provider's own refusal of the request (a 4xx), in OpenAI's shape.
        let message = crate::formats::error_message(&answer)
            .unwrap_or_else(|| format!("the provider refused the request ({})", parts.status));
        let body = crate::formats::error_body(
            Format::OpenAi,
            parts.status.as_u16(),
            "invalid_request_error",
            "upstream_error",
            &message,
        );
        (Bytes::from(body), None)
    };
    Ok(Ok((parts, out, usage, room)))
}
