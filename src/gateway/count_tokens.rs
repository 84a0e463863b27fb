//! Token counting: `POST /v1/messages/count_tokens` (Anthropic's, which coding agents such as
//! Claude Code call before a turn to manage their context) and Gemini's `:countTokens`. Routed
//! like the front door's own requests: to an upstream of the caller's format the request goes
//! as sent (model name aside) and its count comes back; in front of any other target the
//! answer is an estimate ([`crate::formats::estimate`]) and says so in
//! `x-dgidgi-token-count: estimated`.
//!
//! Counting is free for the tenant — no tokens, no budget, no ledger record — but not
//! unbounded: it is admitted at the tenant's requests per minute in a window of its own
//! ([`crate::metering::plan::reserve_free`]).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};
use serde_json::Value;

use super::body::{ResponseBody, upstream_body};
use super::chat::{ParsedRequest, parse_request, route_request};
use super::error::ApiError;
use super::forwarded::{ClientHeaders, copy_provider_headers};
use super::limits::refusal_error;
use super::provider_urls::{count_tokens_url, vertex_claude_model};
use super::serve::send_to_provider;
use super::server::json_response;
use super::upstream::{Outcome, read_bounded};
use super::{Active, Gateway};
use crate::config::Scope;
use crate::formats::anthropic;
use crate::formats::{Format, estimate};
use crate::providers::ProviderKind;
use crate::routing::plan::{plan, prefer_healthy};

/// Header saying how the count was made: `provider` or `estimated`.
pub const TOKEN_COUNT_HEADER: HeaderName = HeaderName::from_static("x-dgidgi-token-count");

/// Largest count answer read from a provider (a count is a few dozen bytes).
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// The longest a count may take at a provider, answer included (its `timeouts.total` when
/// shorter): a count is one small answer, and an endpoint that trickles it must not hold the
/// gateway's sockets and tasks.
const MAX_COUNT_TIME: Duration = Duration::from_secs(30);

/// Handles one Anthropic token counting request.
pub async fn handle(
    gateway: Arc<Gateway>,
    request: Request<Incoming>,
) -> Result<Response<ResponseBody>, ApiError> {
    let snapshot = gateway.active()?;
    let request = parse_request(&gateway, &snapshot, request, None).await?;
    count(&gateway, &snapshot, request, Format::Anthropic).await
}

/// Counts a parsed request of a front door's `format` (Anthropic or Gemini).
pub async fn count(
    gateway: &Arc<Gateway>,
    snapshot: &Active,
    request: ParsedRequest<'_>,
    format: Format,
) -> Result<Response<ResponseBody>, ApiError> {
    let routing = route_request(format, &request)?;
    let mut planned = plan(&snapshot.config, request.tenant, &routing, rand::random())?;
    prefer_healthy(&mut planned.attempts, |id| snapshot.health.is_unhealthy(id));
    gateway
        .meter
        .admit_free(request.tenant)
        .await
        .map_err(|refused| refusal_error(&refused))?;
    let headers = ClientHeaders::from_request(&request.headers);
    // The target that would serve the request counts it; when it cannot be reached, the next
    // Anthropic target of the plan may, and a target of another format ends the walk.
    for attempt in &planned.attempts {
        let provider = attempt.provider;
        if provider.kind.format_of(&attempt.model) != format {
            break;
        }
        let model = provider.upstream_model(&attempt.model);
        let url = count_tokens_url(provider, format, model);
        let body = if format == Format::Gemini {
            // The model is in the URL; the body goes as it came.
            request.sent.bytes().clone()
        } else if provider.kind == ProviderKind::VertexAi {
            // Vertex counts at a pseudo-model: the model (Vertex's name for it) stays in the
            // body, beside the version.
            let model = vertex_claude_model(model);
            let body =
                request
                    .sent
                    .write_edited(&request.json, anthropic::VERTEX_MEMBERS, |json| {
                        anthropic::for_vertex(json);
                        json.insert("model".into(), Value::String(model));
                    });
            Bytes::from(body)
        } else {
            let body = request
                .sent
                .write_edited(&request.json, &["model"], |json| {
                    json.insert("model".into(), Value::String(model.to_owned()));
                });
            Bytes::from(body)
        };
        let Some(url) = url else {
            break;
        };
        let limit = Duration::from_millis(provider.timeouts.total_ms).min(MAX_COUNT_TIME);
        let deadline = tokio::time::Instant::now() + limit;
        let catalog_model = &attempt.model;
        let sent = send_to_provider(
            gateway,
            snapshot,
            provider,
            catalog_model,
            &url,
            &headers,
            &body,
        );
        let Ok(outcome) = tokio::time::timeout_at(deadline, sent).await else {
            tracing::info!(provider = ?provider.id, "token counting timed out at the provider");
            continue;
        };
        match outcome {
            Outcome::Relay(response) => {
                let (parts, incoming) = response.into_parts();
                let read = read_bounded(upstream_body(incoming), MAX_ANSWER_BYTES, None);
                let Ok(Ok((answer, _))) = tokio::time::timeout_at(deadline, read).await else {
                    continue;
                };
                super::access_log::note(|entry| {
                    entry.provider = Some(provider.id.clone());
                    entry.model = Some(attempt.model.clone());
                });
                let mut response = json_response(parts.status, answer);
                let platform = provider.scope == Scope::Platform;
                copy_provider_headers(&parts.headers, response.headers_mut(), platform);
                response
                    .headers_mut()
                    .insert(TOKEN_COUNT_HEADER, HeaderValue::from_static("provider"));
                return Ok(response);
            }
            Outcome::Failed(failure) => {
                tracing::info!(
                    provider = ?provider.id,
                    failure = ?failure.describe(),
                    "token counting failed at the provider"
                );
            }
            Outcome::Local { .. } => break,
        }
    }
    let answer = if format == Format::Gemini {
        let canonical = crate::formats::gemini::request_to_openai(&request.json)
            .map_err(|error| ApiError::bad_request(error.to_string()))?;
        serde_json::json!({ "totalTokens": estimate::input_tokens(&canonical) })
    } else {
        serde_json::json!({ "input_tokens": estimate::input_tokens(&request.json) })
    };
    let mut response = json_response(StatusCode::OK, answer.to_string());
    response
        .headers_mut()
        .insert(TOKEN_COUNT_HEADER, HeaderValue::from_static("estimated"));
    Ok(response)
}
