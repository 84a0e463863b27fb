//! `POST /v1/chat/completions`: authenticate, read and check the body, plan, then walk the plan
//! ([`super::serve`]) until one attempt answers. The reading, checking and planning here are
//! shared with `/v1/messages`, whose body has the same routing fields.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_LENGTH, HeaderMap};
use hyper::{Request, Response, StatusCode};
use serde_json::{Map, Value};

use super::body::ResponseBody;
use super::error::ApiError;
use super::metered;
use super::serve::{AttemptAnswer, ClientRequest, serve, traced_inference};
use super::{Active, Gateway};
use crate::config::TenantConfig;
use crate::config::load::Snapshot;
use crate::formats::{Format, SentBody, SentBodyError};
use crate::routing::plan::{RouteRequest, plan, prefer_healthy};
use crate::telemetry::genai::CHAT;

/// Header a request narrows its provider with.
pub const PROVIDER_HEADER: &str = "x-dgidgi-provider";

/// The access key from `Authorization: Bearer`, `x-api-key` (Anthropic's SDKs) or
/// `x-goog-api-key` (Google's).
pub fn access_key(headers: &HeaderMap) -> Option<&[u8]> {
    if let Some(value) = headers.get(hyper::header::AUTHORIZATION) {
        let bytes = value.as_bytes();
        let scheme = bytes.get(..7)?;
        return scheme
            .eq_ignore_ascii_case(b"bearer ")
            .then(|| bytes[7..].trim_ascii());
    }
    headers
        .get("x-api-key")
        .or_else(|| headers.get(GOOGLE_KEY_HEADER))
        .map(|v| v.as_bytes().trim_ascii())
}

/// The header Google's SDKs send their key in.
pub const GOOGLE_KEY_HEADER: &str = "x-goog-api-key";

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

/// The longest model name accepted. No provider's ids come near it; a longer one would only
/// travel into headers, logs and the ledger (a provider forwarding unlisted models sends the
/// name as written).
const MAX_MODEL_NAME_BYTES: usize = 256;

/// What routing needs from a body of a front door's `format`: the model (for Gemini put in the
/// body from the URL by its front door), whether it streams and uses tools; a body without the
/// conversation its format requires is a 400 before anything is reserved.
pub(super) fn route_request<'a>(
    format: Format,
    request: &'a ParsedRequest<'_>,
) -> Result<RouteRequest<'a>, ApiError> {
    let json = &request.json;
    let (model, provider) = model_and_provider(json, &request.headers)?;
    let stream = match crate::formats::member(json, "stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(stream)) => *stream,
        Some(_) => return Err(ApiError::bad_request("'stream' must be a boolean")),
    };
    let conversation = crate::formats::dialect::dialect(format).conversation();
    let member = conversation.member;
    match Given::in_request(request, member) {
        Given::Items => {}
        Given::Text if conversation.text_allowed => {}
        _ if conversation.text_allowed => {
            return Err(ApiError::bad_request(format!(
                "'{member}' must be a non-empty string or array"
            )));
        }
        _ => {
            return Err(ApiError::bad_request(format!(
                "'{member}' must be a non-empty array"
            )));
        }
    }
    let tools = Given::in_request(request, "tools") == Given::Items;
    Ok(RouteRequest {
        model,
        provider,
        stream,
        tools,
        embeddings: false,
    })
}

/// What a request's conversation member holds, as far as routing checks it.
#[derive(Debug, PartialEq, Eq)]
enum Given {
    /// A non-empty array.
    Items,
    /// A non-empty string.
    Text,
    /// Nothing, or anything else.
    Other,
}

impl Given {
    /// What the member `name` of a request holds, read from its bytes when it was left out.
    fn in_request(request: &ParsedRequest<'_>, name: &str) -> Self {
        if request.left_out.contains(&name) {
            Self::of_raw(request.sent.member(name))
        } else {
            Self::of(crate::formats::member(&request.json, name))
        }
    }

    fn of(value: Option<&Value>) -> Self {
        match value {
            Some(Value::Array(items)) if !items.is_empty() => Self::Items,
            Some(Value::String(text)) if !text.is_empty() => Self::Text,
            _ => Self::Other,
        }
    }

    /// The same judgement on a member's value as it arrived, valid JSON (a member left out of
    /// the parse): an array is empty when `]` follows its `[`, and `""` is the only empty
    /// string.
    fn of_raw(raw: Option<&[u8]>) -> Self {
        let Some(raw) = raw.map(<[u8]>::trim_ascii) else {
            return Self::Other;
        };
        match raw.first() {
            Some(b'[') => match raw[1..].trim_ascii_start().first() {
                Some(b']') | None => Self::Other,
                Some(_) => Self::Items,
            },
            Some(b'"') if raw != b"\"\"" => Self::Text,
            _ => Self::Other,
        }
    }
}

/// The model a body names and the provider the `x-dgidgi-provider` header narrows to, as every
/// front door reads them (and notes the model in the request log).
pub(super) fn model_and_provider<'a>(
    json: &'a Map<String, Value>,
    headers: &'a HeaderMap,
) -> Result<(Option<&'a str>, Option<&'a str>), ApiError> {
    let model = match crate::formats::member(json, "model") {
        None | Some(Value::Null) => None,
        Some(Value::String(model)) if model.len() > MAX_MODEL_NAME_BYTES => {
            return Err(ApiError::bad_request(format!(
                "'model' is longer than {MAX_MODEL_NAME_BYTES} bytes"
            )));
        }
        Some(Value::String(model)) => Some(model.as_str()),
        Some(_) => return Err(ApiError::bad_request("'model' must be a string")),
    };
    let provider = match headers.get(PROVIDER_HEADER).map(|v| v.to_str()) {
        None => None,
        Some(Ok(name)) => Some(name),
        Some(Err(_)) => {
            return Err(ApiError::bad_request(
                "x-dgidgi-provider must be a provider name",
            ));
        }
    };
    if let Some(model) = model {
        super::access_log::note(|entry| entry.model = Some(super::access_log::clipped(model)));
    }
    Ok((model, provider))
}

/// A request of either front door, authenticated and parsed.
pub struct ParsedRequest<'a> {
    /// Its tenant.
    pub tenant: &'a TenantConfig,
    /// Its headers (routing reads `x-dgidgi-provider`).
    pub headers: HeaderMap,
    /// Its body, but for the members [`Self::left_out`] names.
    pub json: Map<String, Value>,
    /// The body as it arrived, for a pass-through to an upstream of the client's format.
    pub sent: SentBody,
    /// The members left out of `json` ([`crate::formats::dialect::Dialect::forwarded_unread`]),
    /// parsed from `sent` only if something reads them: a translation, or a check of the
    /// platform's key (see [`super::serve`]'s `Prepared`).
    pub left_out: &'static [&'static str],
    /// Members of `json` the front door changed from what arrived (a pass-through writes
    /// them anew).
    pub rewritten: Vec<&'static str>,
    /// Where a Responses answer's messages are kept for later references.
    pub items: Option<crate::formats::stream::ItemSink>,
    /// Bytes the front door added to what arrived (earlier items a reference stood for),
    /// counted in the request's size as if sent.
    pub added_bytes: usize,
}

/// Authenticates, reads and parses a request of any front door: the tenant from its key (once,
/// before the body is read), the body bounded and within the body timeout, checked for shape,
/// indexed as sent and parsed. A front door that only forwards its body when the plan allows
/// (`passes_through`: its format) leaves the members its dialect forwards unread as bytes
/// ([`crate::formats::dialect::Dialect::forwarded_unread`]), and reads of them what the
/// platform key's check reads.
pub async fn parse_request<'a>(
    gateway: &Gateway,
    snapshot: &'a Snapshot,
    request: Request<Incoming>,
    passes_through: Option<Format>,
) -> Result<ParsedRequest<'a>, ApiError> {
    let (parts, body) = request.into_parts();
    // Before the body is read: an unknown key costs the gateway nothing more, and neither does
    // a tenant this replica refused for its rate or concurrency moments ago.
    let tenant = authenticate(snapshot, &parts.headers)?;
    super::access_log::note(|entry| entry.tenant = Some(tenant.id.clone()));
    if let Some(refused) = gateway.meter.still_refused(tenant) {
        return Err(super::limits::refusal_error(&refused));
    }
    let body = tokio::time::timeout(
        gateway.settings.body_read_timeout,
        read_body(body, &parts.headers, gateway.settings.max_body_bytes),
    )
    .await
    .map_err(|_| ApiError::request_timeout())??;
    if !super::body_shape::within_bounds(&body) {
        return Err(ApiError::bad_request(format!(
            "the request body holds more than {} JSON values",
            super::body_shape::MAX_VALUES
        )));
    }
    let dialect = passes_through.map(crate::formats::dialect::dialect);
    let left_out = dialect.map_or(&[][..], |dialect| dialect.forwarded_unread());
    // Read with the body only for a tenant the platform's key may serve: its check is never
    // run on a tenant's own key.
    let kept = dialect
        .filter(|_| {
            tenant
                .source
                .reaches_platform(tenant.allow_platform_fallback)
        })
        .and_then(|dialect| dialect.shared_key_check_reads())
        .unwrap_or(&[]);
    let (sent, json) = match SentBody::read(body.clone(), left_out, kept) {
        Ok(read) => read,
        Err(SentBodyError::NotAnObject) => return Err(not_a_json_object(&body)),
        Err(error) => return Err(ApiError::bad_request(error.to_string())),
    };
    Ok(ParsedRequest {
        tenant,
        headers: parts.headers,
        json,
        sent,
        left_out,
        rewritten: Vec::new(),
        items: None,
        added_bytes: 0,
    })
}

/// The 400 for a body that is not a JSON object, saying where it stops being JSON. Read again
/// whole only on this error path, for the line and column a client can look up.
fn not_a_json_object(body: &[u8]) -> ApiError {
    match crate::formats::strict::check(body) {
        Err(error) => ApiError::bad_request(format!(
            "the request body is not valid JSON (line {}, column {})",
            error.line(),
            error.column()
        )),
        Ok(_) => ApiError::bad_request("the request body must be a JSON object"),
    }
}

/// Plans a parsed request and walks the plan within the rule's timeout.
pub async fn route_and_serve(
    gateway: &Arc<Gateway>,
    snapshot: &Active,
    request: ParsedRequest<'_>,
    format: Format,
) -> Result<Response<ResponseBody>, ApiError> {
    let routing = route_request(format, &request)?;
    let stream = routing.stream;
    let mut planned = plan(&snapshot.config, request.tenant, &routing, rand::random())?;
    let ParsedRequest {
        tenant,
        headers,
        json,
        sent,
        left_out,
        rewritten,
        items,
        added_bytes,
    } = request;
    prefer_healthy(&mut planned.attempts, |id| snapshot.health.is_unhealthy(id));
    // Top-level names are checked once when the body arrives (`SentBody::read`); the output
    // fields held one level down are checked here.
    for container in crate::formats::volume::containers(format) {
        if let Some(name) = sent.duplicate_within(container) {
            return Err(ApiError::bad_request(format!(
                "'{container}' names '{name}' more than once"
            )));
        }
    }
    let body_bytes = sent.bytes().len().saturating_add(added_bytes);
    let size = metered::request_size(tenant, format, &json, body_bytes)?;
    let ticket = metered::admit(gateway, snapshot, tenant, &planned, size).await?;
    let deadline = planned.timeout_ms.map(Duration::from_millis);
    let request = ClientRequest {
        format,
        json,
        sent,
        left_out,
        rewritten,
        items,
        stream,
        headers: super::forwarded::ClientHeaders::from_request(&headers),
    };
    let guard = metered::SettleOnDrop::new(gateway, ticket);
    let Some(ticket) = guard.get() else {
        return Err(ApiError::not_ready());
    };
    let result = if gateway.settings.traces.is_some() {
        let walk = Box::pin(serve(gateway, snapshot, &planned, request, ticket));
        let traced = traced_inference(gateway, snapshot, &planned, ticket, CHAT, walk);
        within(deadline, traced).await
    } else {
        within(
            deadline,
            serve(gateway, snapshot, &planned, request, ticket),
        )
        .await
    };
    metered::finish(gateway, snapshot, guard, result).await
}

/// A walk bounded by the routing rule's timeout, when it has one.
///
/// A plain function returning a future, not an `async fn`: an `async fn` keeps its argument
/// (the walk, kilobytes) in its state beside the copy it awaits, which doubled every front
/// door's future and the bytes moved when it is boxed (measured with `-Zprint-type-sizes`:
/// 9,040 bytes for 4,448 of walk).
pub(super) fn within<F>(
    deadline: Option<std::time::Duration>,
    walk: F,
) -> impl Future<Output = Result<AttemptAnswer, ApiError>>
where
    F: Future<Output = Result<AttemptAnswer, ApiError>>,
{
    use futures::future::{Either, FutureExt as _};
    match deadline {
        Some(limit) => Either::Left(tokio::time::timeout(limit, walk).map(|timed| {
            timed.unwrap_or_else(|_| {
                Err(ApiError::upstream(
                    StatusCode::GATEWAY_TIMEOUT,
                    "upstream_timeout",
                    "no provider answered within the routing rule's timeout",
                ))
            })
        })),
        None => Either::Right(walk),
    }
}

/// Handles one chat completion request.
pub async fn handle(
    gateway: Arc<Gateway>,
    request: Request<Incoming>,
) -> Result<Response<ResponseBody>, ApiError> {
    let snapshot = gateway.active()?;
    let request = parse_request(&gateway, &snapshot, request, Some(Format::OpenAi)).await?;
    route_and_serve(&gateway, &snapshot, request, Format::OpenAi).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_left_as_bytes_is_judged_as_its_parsed_value_is() {
        for raw in [
            "[]",
            "[ ]",
            "[\n\t]",
            "[0]",
            "[ [] ]",
            "[{}]",
            r#""""#,
            r#""a""#,
            r#""\u0000""#,
            r#""\"""#,
            "null",
            "{}",
            r#"{"a":[1]}"#,
            "0",
            "true",
            "false",
            "-1",
        ] {
            let value: Value = serde_json::from_str(raw).unwrap();
            assert_eq!(
                Given::of_raw(Some(raw.as_bytes())),
                Given::of(Some(&value)),
                "{raw}"
            );
        }
        assert_eq!(Given::of_raw(None), Given::Other);
    }
}
