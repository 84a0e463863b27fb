//! `POST /v1/messages`: the Anthropic Messages API as a front door before any provider. The
//! same authentication, routing, fallback and `x-dgidgi-*` headers as `/v1/chat/completions`
//! (the shared path in [`super::chat`] and [`super::serve`]); an Anthropic upstream gets the
//! request as it came, any other a translation. Errors are Anthropic-shaped (the server renders
//! them for this path).

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Request, Response};
use serde_json::Value;

use super::Gateway;
use super::body::ResponseBody;
use super::chat::{parse_request, route_and_serve};
use super::error::ApiError;
use crate::formats::Format;

/// Handles one Messages request.
pub async fn handle(
    gateway: Arc<Gateway>,
    request: Request<Incoming>,
) -> Result<Response<ResponseBody>, ApiError> {
    let snapshot = gateway.active()?;
    let request = parse_request(&gateway, &snapshot, request, Some(Format::Anthropic)).await?;
    // Anthropic requires max_tokens; checking it here gives the same answer whatever serves.
    match request.json.get("max_tokens") {
        Some(Value::Number(n)) if n.as_u64().is_some_and(|n| n > 0) => {}
        _ => {
            return Err(ApiError::bad_request(
                "'max_tokens' is required and must be a positive integer",
            ));
        }
    }
    route_and_serve(&gateway, &snapshot, request, Format::Anthropic).await
}
