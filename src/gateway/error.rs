//! Errors the gateway answers with, in the caller's format (OpenAI's for `/v1/chat`), each with
//! an honest status code and a short machine-readable code. Messages never carry key material.

use bytes::Bytes;
use hyper::StatusCode;

use crate::routing::plan::RouteError;

/// An error response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// OpenAI error `type`.
    pub kind: &'static str,
    /// OpenAI error `code`.
    pub code: &'static str,
    /// Human-readable message.
    pub message: String,
    /// Seconds for a `retry-after` header, when the error is a rate limit.
    pub retry_after: Option<u64>,
    /// Further headers (`x-ratelimit-*` on limit refusals).
    pub headers: Vec<(&'static str, String)>,
    /// The provider (id) and model that answered a request the gateway then could not relay:
    /// the provider generated (and bills) the answer, so the request is charged its
    /// reservation rather than released.
    pub answered_by: Option<Box<(String, String)>>,
}

impl ApiError {
    /// An error with its OpenAI `type` and `code`.
    pub fn new(
        status: StatusCode,
        kind: &'static str,
        code: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status,
            kind,
            code,
            message: message.into(),
            retry_after: None,
            headers: Vec::new(),
            answered_by: None,
        }
    }

    /// 400: the request body is not what the endpoint takes.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "invalid_request",
            message,
        )
    }

    /// 401: no key, or a key no tenant has.
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            "invalid_api_key",
            "missing or unknown access key; send it as 'Authorization: Bearer <key>' or 'x-api-key: <key>'",
        )
    }

    /// 404 for an unknown path.
    pub fn not_found(path: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            "not_found",
            format!("no such endpoint: {path}"),
        )
    }

    /// 405 for a known path with the wrong method.
    pub fn method_not_allowed(method: &str, path: &str, allowed: &'static str) -> Self {
        let mut error = Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_request_error",
            "method_not_allowed",
            format!("{method} is not allowed on {path}"),
        );
        // RFC 9110: a 405 says which methods the resource takes.
        error.headers.push(("allow", allowed.to_owned()));
        error
    }

    /// 408: the body did not arrive in time.
    pub fn request_timeout() -> Self {
        Self::new(
            StatusCode::REQUEST_TIMEOUT,
            "invalid_request_error",
            "request_timeout",
            "the request body did not arrive in time",
        )
    }

    /// 413: the body exceeds the configured limit.
    pub fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request_error",
            "request_too_large",
            format!("request body exceeds {limit} bytes"),
        )
    }

    /// 503: no config has been loaded yet.
    pub fn not_ready() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "api_error",
            "not_ready",
            "the gateway has no config loaded yet",
        )
    }

    /// Upstream failures after every retry and fallback.
    pub fn upstream(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self::new(status, "api_error", code, message)
    }

    /// Writes `retry-after` and the extra headers.
    pub fn write_headers(&self, headers: &mut hyper::HeaderMap) {
        use hyper::header::{HeaderName, HeaderValue};
        if let Some(seconds) = self.retry_after {
            headers.insert(hyper::header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        for (name, value) in &self.headers {
            if let Ok(value) = HeaderValue::from_str(value) {
                headers.insert(HeaderName::from_static(name), value);
            }
        }
    }

    /// The JSON body: `{"error":{"message","type","param","code"}}`.
    pub fn body(&self) -> Bytes {
        Bytes::from(crate::formats::dialect::openai_error_body(
            self.kind,
            self.code,
            &self.message,
        ))
    }

    /// The JSON body in a client's format (Anthropic's for `/v1/messages`).
    pub fn body_in(&self, format: crate::formats::Format) -> Bytes {
        Bytes::from(crate::formats::error_body(
            format,
            self.status.as_u16(),
            self.kind,
            self.code,
            &self.message,
        ))
    }

    /// The same error as one SSE event, for failures after a stream has started.
    pub fn sse_event(&self) -> Bytes {
        Bytes::from(format!(
            "data: {}\n\n",
            String::from_utf8_lossy(&self.body())
        ))
    }
}

impl From<RouteError> for ApiError {
    fn from(error: RouteError) -> Self {
        let message = error.to_string();
        match error {
            RouteError::NoModel => Self::bad_request(message),
            RouteError::UnknownModel(_) => Self::new(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                "model_not_found",
                message,
            ),
            RouteError::ProviderNotAllowed(_) => Self::new(
                StatusCode::FORBIDDEN,
                "permission_error",
                "provider_not_allowed",
                message,
            ),
            RouteError::MissingCapability { .. } => Self::new(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "unsupported_capability",
                message,
            ),
            RouteError::ModelNotInTier { .. } => Self::new(
                StatusCode::FORBIDDEN,
                "permission_error",
                "model_not_in_tier",
                message,
            ),
            RouteError::CliUnavailable => {
                Self::upstream(StatusCode::SERVICE_UNAVAILABLE, "cli_unavailable", message)
            }
        }
    }
}
