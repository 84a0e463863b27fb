//! The admin `/usage` endpoint: per-tenant usage for the operator, behind a bearer token (it
//! reveals every tenant's figures, so without a configured token it does not exist).

use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};

use super::Gateway;
use super::body::ResponseBody;
use super::chat::access_key;
use super::error::ApiError;
use super::server::{error_response, json_response};

/// `GET /usage`.
pub async fn usage(gateway: &Gateway, request: &Request<Incoming>) -> Response<ResponseBody> {
    let Some(token) = &gateway.settings.admin_token else {
        return error_response(&ApiError::not_found("/usage"));
    };
    if !access_key(request.headers()).is_some_and(|presented| token.matches(presented)) {
        return error_response(&ApiError::unauthorized());
    }
    let Some(active) = gateway.snapshot.load_full() else {
        return error_response(&ApiError::not_ready());
    };
    let summary = gateway.meter.summary(&active.snapshot.config).await;
    match serde_json::to_vec(&summary) {
        Ok(body) => json_response(StatusCode::OK, body),
        Err(_) => error_response(&ApiError::upstream(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "the usage summary could not be encoded",
        )),
    }
}
