//! Gemini's own API as a front door, for apps written with Google's `google-genai` SDK:
//! `POST …/models/{model}:generateContent`, `:streamGenerateContent?alt=sse` and
//! `:countTokens` under the `v1beta` and `v1` prefixes (Google's SDKs use either), with the
//! model list at `GET /v1beta/models`. The same path as every other front door: to a Gemini
//! provider the body goes as sent (the model is in the URL), to any other translated
//! ([`crate::formats::gemini`]); errors are Google-shaped.
//!
//! The access key is accepted as Google's SDKs send it, `x-goog-api-key`, or in the URL's
//! `key` parameter; the request log records the path only, never the query.

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Request, Response};
use serde_json::Value;

use super::body::ResponseBody;
use super::chat::{GOOGLE_KEY_HEADER, access_key, parse_request, route_and_serve};
use super::error::ApiError;
use super::{Gateway, count_tokens};
use crate::formats::Format;

/// The path prefixes Google's SDKs put before `models`.
const PREFIXES: [&str; 2] = ["/v1beta/models/", "/v1/models/"];

/// The model and method of a `…/models/{model}:{method}` path (the model still
/// percent-encoded), or `None` for any other path.
pub fn model_method(path: &str) -> Option<(&str, &str)> {
    let rest = PREFIXES
        .iter()
        .find_map(|prefix| path.strip_prefix(prefix))?;
    let (model, method) = rest.rsplit_once(':')?;
    (!model.is_empty()).then_some((model, method))
}

/// Whether a path belongs to Gemini's API (its errors and model list are then Google-shaped).
pub fn is_gemini_path(path: &str) -> bool {
    path.starts_with("/v1beta/") || model_method(path).is_some()
}

/// Moves a key given in the URL (`?key=`) into the header the gateway reads keys from, when
/// the request carries none: Google's REST examples and some clients authenticate that way.
pub fn key_from_query(request: &mut Request<Incoming>) {
    if access_key(request.headers()).is_some() {
        return;
    }
    let Some(query) = request.uri().query() else {
        return;
    };
    let key = url::form_urlencoded::parse(query.as_bytes())
        .find(|(name, _)| name == "key")
        .map(|(_, value)| value.into_owned());
    if let Some(mut value) = key.and_then(|key| HeaderValue::from_str(&key).ok()) {
        value.set_sensitive(true);
        request.headers_mut().insert(GOOGLE_KEY_HEADER, value);
    }
}

/// Handles `POST …/models/{model}:{method}`.
pub async fn handle(
    gateway: Arc<Gateway>,
    request: Request<Incoming>,
    path: &str,
) -> Result<Response<ResponseBody>, ApiError> {
    let Some((model, method)) = model_method(path) else {
        return Err(ApiError::not_found(path));
    };
    let model = super::models::id_in_path(model);
    // Google's ids are `models/{id}`; a client may send the prefix twice.
    let model = model.strip_prefix("models/").unwrap_or(&model).to_owned();
    let stream = match method {
        "generateContent" | "countTokens" => false,
        "streamGenerateContent" => {
            let sse = request.uri().query().is_some_and(|query| {
                url::form_urlencoded::parse(query.as_bytes()).any(|(k, v)| k == "alt" && v == "sse")
            });
            if !sse {
                return Err(ApiError::bad_request(
                    "streamGenerateContent is served as server-sent events only: add '?alt=sse'",
                ));
            }
            true
        }
        _ => return Err(ApiError::not_found(path)),
    };
    let snapshot = gateway.active()?;
    let mut parsed = parse_request(&gateway, &snapshot, request, None).await?;
    if method == "countTokens"
        && let Some(Value::Object(inner)) = parsed.json.remove("generateContentRequest")
    {
        // countTokens may wrap a whole request; what is counted is that request.
        parsed.json = inner;
    }
    // The routing fields Gemini keeps in the URL, put where the shared path reads them (the
    // body sent upstream is the one that arrived).
    parsed.json.insert("model".into(), Value::String(model));
    if method == "countTokens" {
        return count_tokens::count(&gateway, &snapshot, parsed, Format::Gemini).await;
    }
    parsed.json.insert("stream".into(), Value::Bool(stream));
    route_and_serve(&gateway, &snapshot, parsed, Format::Gemini).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_a_model_and_a_method_under_either_prefix() {
        assert_eq!(
            model_method("/v1beta/models/gemini/gemini-fake:generateContent"),
            Some(("gemini/gemini-fake", "generateContent"))
        );
        assert_eq!(
            model_method("/v1/models/openai-fake%2Fgpt-fake:countTokens"),
            Some(("openai-fake%2Fgpt-fake", "countTokens"))
        );
        assert_eq!(model_method("/v1/models/gpt-4o"), None);
        assert_eq!(model_method("/v1/chat/completions"), None);
        assert!(is_gemini_path("/v1beta/models"));
        assert!(!is_gemini_path("/v1/models"));
    }
}
