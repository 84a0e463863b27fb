//! Cross-origin requests from browsers: which origins the platform allows (none by default),
//! the preflight answer, and the headers an allowed origin's responses carry.
//!
//! The SDKs that run in browsers (the `openai` and `anthropic` TypeScript SDKs with
//! `dangerouslyAllowBrowser`, the Vercel AI SDK) send `authorization` or `x-api-key`, their
//! `x-stainless-*` telemetry headers, and Anthropic's version and beta headers; a preflight that
//! refused any of them would fail the call. Keys travel in headers, never cookies, so no
//! `Access-Control-Allow-Credentials` is ever sent.

use hyper::header::{
    ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN,
    ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE, ACCESS_CONTROL_REQUEST_HEADERS,
    ACCESS_CONTROL_REQUEST_METHOD, HeaderMap, HeaderValue, ORIGIN, VARY,
};

/// Request headers a browser client may send (beside the CORS-safelisted ones), and any
/// `x-stainless-` header (the official SDKs' platform and retry headers).
const ALLOWED_HEADERS: &[&str] = &[
    "authorization",
    "content-type",
    "x-api-key",
    "anthropic-version",
    "anthropic-beta",
    "anthropic-dangerous-direct-browser-access",
    "openai-beta",
    "openai-organization",
    "openai-project",
    "x-dgidgi-provider",
    "idempotency-key",
    "user-agent",
];

/// Response headers a browser client may read: request ids (the SDKs surface them), limits and
/// the gateway's own notes.
const EXPOSED_HEADERS: &str = "x-dgidgi-request-id, x-dgidgi-provider, x-dgidgi-model, \
x-dgidgi-fallback, x-dgidgi-output-capped, x-dgidgi-rewritten, x-dgidgi-token-count, request-id, x-request-id, \
openai-processing-ms, retry-after, x-ratelimit-limit-requests, x-ratelimit-remaining-requests, \
x-ratelimit-reset-requests, x-ratelimit-limit-tokens, x-ratelimit-remaining-tokens, \
x-ratelimit-reset-tokens";

/// How long a browser may cache a preflight answer, in seconds.
const MAX_AGE_SECONDS: &str = "600";

/// The origins allowed to call the API from a browser.
#[derive(Clone, Debug, Default)]
pub struct CorsPolicy {
    /// Exact origins (`https://app.example.com`), lower-cased, without a trailing slash.
    origins: Vec<String>,
    /// `*`: any origin.
    any: bool,
}

/// A preflight's verdict.
#[derive(Debug, PartialEq, Eq)]
pub enum Preflight {
    /// Allowed: answer 204 with these headers.
    Allowed(HeaderMap),
    /// The origin, method or a header is not allowed (403, no CORS headers).
    Refused(String),
}

impl CorsPolicy {
    /// A policy allowing `origins` (`*` for any); empty allows none.
    pub fn new(origins: &[String]) -> Result<Self, String> {
        let mut policy = Self::default();
        for origin in origins {
            let origin = origin.trim().trim_end_matches('/').to_ascii_lowercase();
            if origin == "*" {
                policy.any = true;
            } else if origin.starts_with("http://") || origin.starts_with("https://") {
                policy.origins.push(origin);
            } else {
                return Err(format!(
                    "a CORS origin is `*` or a scheme and host such as https://app.example.com, not {origin:?}"
                ));
            }
        }
        Ok(policy)
    }

    /// Whether any origin is allowed at all.
    pub fn is_enabled(&self) -> bool {
        self.any || !self.origins.is_empty()
    }

    fn allows(&self, origin: &HeaderValue) -> bool {
        self.any
            || origin.to_str().is_ok_and(|origin| {
                self.origins
                    .iter()
                    .any(|allowed| allowed.eq_ignore_ascii_case(origin))
            })
    }

    /// Answers a preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) for a
    /// path whose methods are `allow`.
    pub fn preflight(&self, request: &HeaderMap, allow: &str) -> Preflight {
        let Some(origin) = request.get(ORIGIN).filter(|origin| self.allows(origin)) else {
            return Preflight::Refused("this origin is not allowed to call the gateway".into());
        };
        let method = request
            .get(ACCESS_CONTROL_REQUEST_METHOD)
            .and_then(|m| m.to_str().ok())
            .unwrap_or("");
        if !allow.split(", ").any(|allowed| allowed == method) {
            return Preflight::Refused(format!("method {method:?} is not allowed here"));
        }
        let asked = request
            .get_all(ACCESS_CONTROL_REQUEST_HEADERS)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|name| !name.is_empty());
        let mut granted = Vec::new();
        for name in asked {
            let lower = name.to_ascii_lowercase();
            if !(ALLOWED_HEADERS.contains(&lower.as_str()) || lower.starts_with("x-stainless-")) {
                return Preflight::Refused(format!("request header {name:?} is not allowed"));
            }
            granted.push(lower);
        }
        let mut headers = HeaderMap::new();
        self.write_origin(origin, &mut headers);
        if let Ok(methods) = HeaderValue::from_str(allow) {
            headers.insert(ACCESS_CONTROL_ALLOW_METHODS, methods);
        }
        if let Ok(granted) = HeaderValue::from_str(&granted.join(", "))
            && !granted.is_empty()
        {
            headers.insert(ACCESS_CONTROL_ALLOW_HEADERS, granted);
        }
        headers.insert(
            ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static(MAX_AGE_SECONDS),
        );
        Preflight::Allowed(headers)
    }

    /// Adds the CORS headers to the response of an actual request from an allowed origin.
    pub fn decorate(&self, origin: Option<&HeaderValue>, response: &mut HeaderMap) {
        let Some(origin) = origin.filter(|_| self.is_enabled()) else {
            return;
        };
        if self.allows(origin) {
            self.write_origin(origin, response);
            response.insert(
                ACCESS_CONTROL_EXPOSE_HEADERS,
                HeaderValue::from_static(EXPOSED_HEADERS),
            );
        } else {
            // Another origin gets another answer: a shared cache must not mix them up.
            response.append(VARY, HeaderValue::from_static("Origin"));
        }
    }

    fn write_origin(&self, origin: &HeaderValue, headers: &mut HeaderMap) {
        headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        // The answer depends on the origin: caches must not serve one origin's to another.
        headers.append(VARY, HeaderValue::from_static("Origin"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn preflight(origin: &str, method: &str, headers: &str) -> HeaderMap {
        let mut request = HeaderMap::new();
        request.insert(ORIGIN, HeaderValue::from_str(origin).unwrap());
        request.insert(
            ACCESS_CONTROL_REQUEST_METHOD,
            HeaderValue::from_str(method).unwrap(),
        );
        request.insert(
            ACCESS_CONTROL_REQUEST_HEADERS,
            HeaderValue::from_str(headers).unwrap(),
        );
        request
    }

    #[test]
    fn only_listed_origins_methods_and_headers_pass_a_preflight() {
        let policy = CorsPolicy::new(&["https://App.example.com/".into()]).unwrap();
        let asked = preflight(
            "https://app.example.com",
            "POST",
            "x-api-key, anthropic-version, X-Stainless-OS, content-type",
        );
        let Preflight::Allowed(headers) = policy.preflight(&asked, "POST") else {
            panic!("allowed");
        };
        assert_eq!(
            headers[ACCESS_CONTROL_ALLOW_ORIGIN],
            "https://app.example.com"
        );
        assert_eq!(
            headers[ACCESS_CONTROL_ALLOW_HEADERS],
            "x-api-key, anthropic-version, x-stainless-os, content-type"
        );
        assert_eq!(headers[ACCESS_CONTROL_ALLOW_METHODS], "POST");
        let other = preflight("https://evil.example.com", "POST", "x-api-key");
        assert!(matches!(
            policy.preflight(&other, "POST"),
            Preflight::Refused(_)
        ));
        let method = preflight("https://app.example.com", "DELETE", "");
        assert!(matches!(
            policy.preflight(&method, "POST"),
            Preflight::Refused(_)
        ));
        let header = preflight("https://app.example.com", "POST", "x-secret-thing");
        assert!(matches!(
            policy.preflight(&header, "POST"),
            Preflight::Refused(_)
        ));
    }

    #[test]
    fn nothing_is_allowed_by_default_and_origins_must_be_origins() {
        let policy = CorsPolicy::default();
        assert!(!policy.is_enabled());
        let asked = preflight("https://app.example.com", "POST", "");
        assert!(matches!(
            policy.preflight(&asked, "POST"),
            Preflight::Refused(_)
        ));
        let mut response = HeaderMap::new();
        policy.decorate(
            Some(&HeaderValue::from_static("https://app.example.com")),
            &mut response,
        );
        assert!(response.is_empty());
        assert!(CorsPolicy::new(&["app.example.com".into()]).is_err());
        assert!(CorsPolicy::new(&["*".into()]).unwrap().is_enabled());
    }
}
