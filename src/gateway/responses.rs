//! `POST /v1/responses`: OpenAI's Responses API as a front door (Codex CLI, the Agents SDK, the
//! Vercel AI SDK's `openai(model)`, pydantic-ai). The same path as chat completions: to a
//! provider that serves the Responses API the request goes as sent, to any other translated
//! ([`crate::formats::responses`]); errors are OpenAI-shaped.
//!
//! Stored responses: the gateway stores none, and on the platform's keys — shared by every
//! tenant — nothing is stored at the provider either (`store` is written `false`) and nothing
//! stored there may be referred to (`previous_response_id`, `conversation`, `prompt`, inputs by
//! `file_id` are refused), so no tenant can reach another's conversation. Tools OpenAI runs and
//! bills apart from tokens (web search, code interpreter, image generation, remote MCP) are
//! refused on the platform's key too: metering could not price them. A tenant's own key
//! passes them through: what it stores lives in the tenant's own account. The one reference
//! the gateway answers itself is an `item_reference` to an assistant message it returned to
//! the same tenant within the hour ([`super::response_items`]): the Vercel AI SDK sends
//! earlier answers that way by default. Retrieving,
//! deleting or cancelling a response by id (`/v1/responses/{id}…`) is not routed: an id names
//! no model, so the gateway could not tell which provider, or whose key, holds it.

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde_json::Value;

use super::Gateway;
use super::body::ResponseBody;
use super::chat::{parse_request, route_and_serve};
use super::error::ApiError;
use crate::formats::Format;

/// Handles one Responses request.
pub async fn handle(
    gateway: Arc<Gateway>,
    request: Request<Incoming>,
) -> Result<Response<ResponseBody>, ApiError> {
    let snapshot = gateway.active()?;
    let mut request = parse_request(&gateway, &snapshot, request, None).await?;
    let tenant = &request.tenant.id;
    // What the references stand for counts as if it had been sent: within the body limit, and
    // in the request's size for the reservation.
    let room = gateway
        .settings
        .max_body_bytes
        .saturating_sub(request.sent.bytes().len());
    if let Some(Value::Array(input)) = request.json.get_mut("input") {
        let added = gateway
            .response_items
            .resolve(tenant, input, room)
            .map_err(|error| ApiError::bad_request(error.to_string()))?;
        if added > 0 {
            request.rewritten.push("input");
            request.added_bytes = added;
        }
    }
    request.items = Some(gateway.response_items.sink(tenant));
    route_and_serve(&gateway, &snapshot, request, Format::Responses).await
}

/// `GET`, `DELETE` or `POST …/cancel` on a stored response: never routed (see the module's
/// documentation), after the caller proved who it is.
pub fn stored(
    gateway: &Gateway,
    request: &Request<Incoming>,
) -> Result<Response<ResponseBody>, ApiError> {
    let snapshot = gateway.active()?;
    super::chat::authenticate(&snapshot, request.headers())?;
    Err(ApiError::new(
        StatusCode::NOT_FOUND,
        "invalid_request_error",
        "response_not_found",
        "the gateway stores no responses and does not route requests by response id; keep the conversation on the client and send it as 'input'",
    ))
}
