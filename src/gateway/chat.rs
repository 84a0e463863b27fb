//! `POST /v1/chat/completions`: authenticate, read and check the body, plan, then walk the plan
//! (retries with backoff on the rule's failure classes, then the next target) until one
//! attempt answers. Nothing reaches the client before an attempt has answered, so every
//! failure before that point can still fall back.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderMap, HeaderValue};
use hyper::{Request, Response, StatusCode};
use serde_json::{Map, Value};

use super::body::ResponseBody;
use super::error::ApiError;
use super::upstream::{Failure, Outcome, chat_url, cli_chat_url, read_bounded, send_openai};
use super::{Active, Gateway};
use crate::config::load::Snapshot;
use crate::config::{Scope, TenantConfig};
use crate::providers::{ProviderKind, mock};
use crate::routing::plan::{Attempt, Plan, RouteRequest, Upstream, plan, prefer_healthy};

/// Header a request narrows its provider with.
pub const PROVIDER_HEADER: &str = "x-dgidgi-provider";

/// The access key from `Authorization: Bearer` or `x-api-key`.
pub fn access_key(headers: &HeaderMap) -> Option<&[u8]> {
    if let Some(value) = headers.get(hyper::header::AUTHORIZATION) {
        let bytes = value.as_bytes();
        let scheme = bytes.get(..7)?;
        return scheme
            .eq_ignore_ascii_case(b"bearer ")
            .then(|| bytes[7..].trim_ascii());
    }
    headers.get("x-api-key").map(|v| v.as_bytes().trim_ascii())
}

/// Finds the tenant of a request, or 401.
pub fn authenticate<'a>(
    snapshot: &'a Snapshot,
    headers: &HeaderMap,
) -> Result<&'a TenantConfig, ApiError> {
    access_key(headers)
        .filter(|key| !key.is_empty())
        .and_then(|key| snapshot.tenant_for_key(key))
        .ok_or_else(ApiError::unauthorized)
}

/// Reads the body up to the limit (413 beyond; a declared oversize is refused before reading).
pub async fn read_body(
    body: Incoming,
    headers: &HeaderMap,
    limit: usize,
) -> Result<Bytes, ApiError> {
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(ApiError::too_large(limit));
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => {
            Err(ApiError::too_large(limit))
        }
        Err(_) => Err(ApiError::bad_request("the request body could not be read")),
    }
}

/// What routing needs from the parsed body.
fn route_request<'a>(
    json: &'a Map<String, Value>,
    headers: &'a HeaderMap,
) -> Result<RouteRequest<'a>, ApiError> {
    let model = match json.get("model") {
        None | Some(Value::Null) => None,
        Some(Value::String(model)) => Some(model.as_str()),
        Some(_) => return Err(ApiError::bad_request("'model' must be a string")),
    };
    let stream = match json.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(stream)) => *stream,
        Some(_) => return Err(ApiError::bad_request("'stream' must be a boolean")),
    };
    match json.get("messages") {
        Some(Value::Array(messages)) if !messages.is_empty() => {}
        _ => {
            return Err(ApiError::bad_request(
                "'messages' must be a non-empty array",
            ));
        }
    }
    let tools = json
        .get("tools")
        .and_then(Value::as_array)
        .is_some_and(|t| !t.is_empty());
    let provider = match headers.get(PROVIDER_HEADER).map(|v| v.to_str()) {
        None => None,
        Some(Ok(name)) => Some(name),
        Some(Err(_)) => {
            return Err(ApiError::bad_request(
                "x-dgidgi-provider must be a provider name",
            ));
        }
    };
    Ok(RouteRequest {
        model,
        provider,
        stream,
        tools,
    })
}

/// Handles one chat completion request.
pub async fn handle(
    gateway: Arc<Gateway>,
    request: Request<Incoming>,
) -> Result<Response<ResponseBody>, ApiError> {
    let snapshot = gateway
        .snapshot
        .load_full()
        .ok_or_else(ApiError::not_ready)?;
    let (parts, body) = request.into_parts();
    let tenant = authenticate(&snapshot, &parts.headers)?;
    let body = tokio::time::timeout(
        gateway.settings.body_read_timeout,
        read_body(body, &parts.headers, gateway.settings.max_body_bytes),
    )
    .await
    .map_err(|_| ApiError::request_timeout())??;
    let mut json: Map<String, Value> = match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(map)) => map,
        Ok(_) => {
            return Err(ApiError::bad_request(
                "the request body must be a JSON object",
            ));
        }
        Err(error) => {
            return Err(ApiError::bad_request(format!(
                "the request body is not valid JSON (line {}, column {})",
                error.line(),
                error.column()
            )));
        }
    };
    let routing = route_request(&json, &parts.headers)?;
    let stream = routing.stream;
    let mut planned = plan(&snapshot.config, tenant, &routing, rand::random())?;
    prefer_healthy(&mut planned.attempts, |id| snapshot.health.is_unhealthy(id));
    let deadline = planned.timeout_ms.map(Duration::from_millis);
    let walk = walk_plan(&gateway, &snapshot, tenant, &planned, &mut json, stream);
    match deadline {
        Some(limit) => tokio::time::timeout(limit, walk).await.unwrap_or_else(|_| {
            Err(ApiError::upstream(
                StatusCode::GATEWAY_TIMEOUT,
                "upstream_timeout",
                "no provider answered within the routing rule's timeout",
            ))
        }),
        None => walk.await,
    }
}

async fn walk_plan(
    gateway: &Gateway,
    snapshot: &Active,
    tenant: &TenantConfig,
    planned: &Plan<'_>,
    json: &mut Map<String, Value>,
    stream: bool,
) -> Result<Response<ResponseBody>, ApiError> {
    let mut failures: Vec<Failure> = Vec::new();
    for (index, attempt) in planned.attempts.iter().enumerate() {
        json.insert("model".to_owned(), Value::String(attempt.model.clone()));
        // Encoded at most once per attempt, and only for an upstream that needs bytes.
        let mut encoded: Option<Bytes> = None;
        let tries = 1 + planned.retry.attempts;
        for try_number in 0..tries {
            match call(gateway, snapshot, tenant, attempt, json, &mut encoded).await {
                Outcome::Relay(response) => {
                    if let Upstream::Provider(provider) = attempt.upstream {
                        snapshot.health.record_success(&provider.id);
                    }
                    return Ok(relay(response, attempt, planned, index, stream).await);
                }
                Outcome::Local {
                    status,
                    content_type,
                    body,
                } => {
                    let mut response = Response::new(ResponseBody::full(body));
                    *response.status_mut() = status;
                    response
                        .headers_mut()
                        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
                    stamp(response.headers_mut(), attempt, planned, index);
                    return Ok(response);
                }
                Outcome::Failed(failure) => {
                    let class = failure.retry_class();
                    if let (Upstream::Provider(provider), Some(_)) = (attempt.upstream, class) {
                        snapshot.health.record_failure(&provider.id);
                    }
                    tracing::info!(
                        upstream = %describe(attempt),
                        model = %attempt.model,
                        attempt = try_number + 1,
                        "attempt failed: {}",
                        failure.describe()
                    );
                    let retry = class.is_some_and(|class| planned.retry.on.contains(&class));
                    failures.push(failure);
                    if retry && try_number + 1 < tries {
                        let backoff = planned
                            .retry
                            .backoff_ms
                            .saturating_mul(1 << try_number.min(10));
                        tokio::time::sleep(Duration::from_millis(backoff)).await;
                        continue;
                    }
                    break;
                }
            }
        }
    }
    Err(final_error(&failures, &planned.requested_model))
}

fn describe(attempt: &Attempt<'_>) -> String {
    match attempt.upstream {
        Upstream::Provider(provider) => provider.id.clone(),
        Upstream::Cli(_) => "cli".to_owned(),
    }
}

/// The error for a plan that found no answer: 404 when every provider said it does not know the
/// model; otherwise the most telling failure (a real upstream failure over "not supported").
fn final_error(failures: &[Failure], model: &str) -> ApiError {
    if !failures.is_empty() && failures.iter().all(|f| *f == Failure::ModelNotFound) {
        return ApiError::from(crate::routing::plan::RouteError::UnknownModel(
            model.to_owned(),
        ));
    }
    let telling = failures
        .iter()
        .rev()
        .find(|f| !matches!(f, Failure::Unsupported(_) | Failure::ModelNotFound))
        .or(failures.last());
    let message = |what: &str| format!("every provider for {model:?} failed; the last one {what}");
    match telling {
        Some(Failure::Timeout) => ApiError::upstream(
            StatusCode::GATEWAY_TIMEOUT,
            "upstream_timeout",
            message("timed out"),
        ),
        // The provider's own limit is passed on as a 429 with its retry-after (DESIGN §2).
        Some(Failure::RateLimited(retry_after)) => ApiError {
            retry_after: *retry_after,
            ..ApiError::upstream(
                StatusCode::TOO_MANY_REQUESTS,
                "upstream_rate_limited",
                message("was rate limited (429)"),
            )
        },
        Some(Failure::ServerError(_)) => ApiError::upstream(
            StatusCode::SERVICE_UNAVAILABLE,
            "upstream_unavailable",
            message("answered 5xx"),
        ),
        Some(other) => ApiError::upstream(
            StatusCode::BAD_GATEWAY,
            "upstream_error",
            message(&other.describe()),
        ),
        None => ApiError::upstream(
            StatusCode::BAD_GATEWAY,
            "upstream_error",
            "no provider could be tried",
        ),
    }
}

/// Makes one attempt.
async fn call(
    gateway: &Gateway,
    snapshot: &Active,
    tenant: &TenantConfig,
    attempt: &Attempt<'_>,
    json: &Map<String, Value>,
    encoded: &mut Option<Bytes>,
) -> Outcome {
    // A map of JSON values always serializes (string keys, finite numbers).
    let mut body = || {
        encoded
            .get_or_insert_with(|| Bytes::from(serde_json::to_vec(json).unwrap_or_default()))
            .clone()
    };
    match attempt.upstream {
        Upstream::Cli(cli) => {
            let url = cli_chat_url(&cli.endpoint);
            let Some(client) = snapshot.guarded.get(&tenant.allowed_endpoints) else {
                return Outcome::Failed(Failure::Connect);
            };
            send_openai(
                client,
                ProviderKind::Ollama,
                &url,
                None,
                body(),
                Duration::from_secs(60),
            )
            .await
        }
        Upstream::Provider(provider) if provider.kind == ProviderKind::Mock => {
            let reply = mock::chat_completion(json, &attempt.model);
            Outcome::Local {
                status: StatusCode::OK,
                content_type: reply.content_type,
                body: Bytes::from(reply.body),
            }
        }
        Upstream::Provider(provider) => {
            let Some(url) = chat_url(provider) else {
                return Outcome::Failed(Failure::Unsupported(provider.kind));
            };
            let key = match &provider.credential {
                None => None,
                Some(row_id) => match snapshot.provider_key(row_id) {
                    Some(key) => Some(key),
                    None => {
                        tracing::error!(provider = %provider.id, "the provider's key could not be decrypted");
                        return Outcome::Failed(Failure::Auth(StatusCode::INTERNAL_SERVER_ERROR));
                    }
                },
            };
            let first_byte = Duration::from_millis(provider.timeouts.first_byte_ms);
            if provider.scope == Scope::Platform {
                return send_openai(
                    &gateway.client,
                    provider.kind,
                    &url,
                    key,
                    body(),
                    first_byte,
                )
                .await;
            }
            // Tenant endpoints go through the client whose resolver enforces the allow-list.
            match snapshot.guarded.get(&provider.allowed_endpoints) {
                Some(client) => {
                    send_openai(client, provider.kind, &url, key, body(), first_byte).await
                }
                None => Outcome::Failed(Failure::Connect),
            }
        }
    }
}

/// Relays an upstream response: its status and content type, our headers, and the body as it
/// arrives (SSE failures end with an error event).
async fn relay(
    upstream: Response<Incoming>,
    attempt: &Attempt<'_>,
    planned: &Plan<'_>,
    index: usize,
    stream: bool,
) -> Response<ResponseBody> {
    let status = upstream.status();
    let content_type = upstream.headers().get(CONTENT_TYPE).cloned();
    let is_sse = content_type
        .as_ref()
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    let body = if status.is_success() {
        let error_event = (stream || is_sse).then(|| {
            ApiError::upstream(
                StatusCode::BAD_GATEWAY,
                "upstream_stream_error",
                "the provider failed in the middle of the stream",
            )
            .sse_event()
        });
        let total_ms = match attempt.upstream {
            Upstream::Provider(provider) => provider.timeouts.total_ms,
            Upstream::Cli(_) => crate::config::TimeoutsConfig::default().total_ms,
        };
        let deadline = tokio::time::Instant::now() + Duration::from_millis(total_ms);
        ResponseBody::relay(upstream.into_body(), error_event, deadline)
    } else {
        // A client error from the provider: pass its message on, bounded.
        let bytes = read_bounded(upstream.into_body(), 64 * 1024)
            .await
            .unwrap_or_default();
        ResponseBody::full(bytes)
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    if let Some(content_type) = content_type {
        response.headers_mut().insert(CONTENT_TYPE, content_type);
    }
    stamp(response.headers_mut(), attempt, planned, index);
    response
}

/// The `x-dgidgi-*` headers saying what served the request.
fn stamp(headers: &mut HeaderMap, attempt: &Attempt<'_>, planned: &Plan<'_>, index: usize) {
    let provider = match attempt.upstream {
        Upstream::Provider(provider) => provider.name.as_str(),
        Upstream::Cli(_) => "cli",
    };
    for (name, value) in [
        ("x-dgidgi-provider", provider),
        ("x-dgidgi-model", attempt.model.as_str()),
        ("x-dgidgi-source", planned.source.as_str()),
    ] {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(name, value);
        }
    }
    headers.insert("x-dgidgi-fallback", HeaderValue::from(index));
}
