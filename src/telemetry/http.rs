//! W3C trace context at the HTTP edges: a client's `traceparent`/`tracestate` read into the
//! request's parent context, and an attempt's written into the request to the provider (so
//! the provider's own spans, where it records any, join the client's trace).

use opentelemetry::propagation::TextMapPropagator as _;
use opentelemetry::trace::{SpanKind, Status, TraceContextExt as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::propagation::TraceContextPropagator;

use super::Traces;

/// A request's SERVER span (`{method} {route}`, HTTP's attributes), a child of the context its
/// `traceparent` names, as the context its handler runs in.
pub fn server_span<B>(traces: &Traces, request: &hyper::Request<B>, path: &str) -> Context {
    let parent = extract(request.headers());
    super::start_span(traces, &parent, SpanKind::Server, || {
        let method = request.method().as_str();
        let route = route(path);
        (
            format!("{method} {route}"),
            vec![
                KeyValue::new("http.request.method", method.to_owned()),
                KeyValue::new("url.path", path.to_owned()),
                KeyValue::new("http.route", route.to_owned()),
                KeyValue::new("url.scheme", "http"),
            ],
        )
    })
}

/// Ends a request's SERVER span with the status it answered (its response headers: a stream's
/// body goes on in the GenAI span, which ends with it).
pub fn end_server_span(context: &Context, status: u16) {
    let span = context.span();
    if !span.is_recording() {
        span.end();
        return;
    }
    span.set_attribute(KeyValue::new(
        "http.response.status_code",
        i64::from(status),
    ));
    if status >= 500 {
        span.set_attribute(KeyValue::new("error.type", status.to_string()));
        span.set_status(Status::error(""));
    }
    span.end();
}

/// The trace id of a context's span, as the request log writes it.
pub fn trace_id(context: &Context) -> String {
    context.span().span_context().trace_id().to_string()
}

/// The parent context a request's `traceparent` names (an empty context without one, or with
/// one that does not parse).
pub fn extract(headers: &hyper::HeaderMap) -> Context {
    TraceContextPropagator::new().extract(&opentelemetry_http::HeaderExtractor(headers))
}

/// Writes `context`'s span as `traceparent` (and its `tracestate`) into `headers`, replacing
/// any the client sent.
pub fn inject(context: &Context, headers: &mut hyper::HeaderMap) {
    TraceContextPropagator::new()
        .inject_context(context, &mut opentelemetry_http::HeaderInjector(headers));
}

/// `http.route` of a path the gateway serves: the path itself for the fixed routes, the
/// template for Gemini's model paths (a model name is not part of a route).
pub fn route(path: &str) -> &str {
    if path.starts_with("/v1beta/models/") || path.starts_with("/v1/models/") && path.contains(':')
    {
        "/v1beta/models/{model}:{method}"
    } else if path.starts_with("/v1/models/") {
        "/v1/models/{model}"
    } else {
        path
    }
}

/// Records a limit decision that refused a request as an event (`dgidgi.limit`) of the current
/// span: which limit (`rate_limit_exceeded`, `budget_exceeded`, …) and what the client was told
/// (the numbers of the limit, never content).
pub fn limit_decision(code: &'static str, message: &str) {
    let context = Context::current();
    let span = context.span();
    if span.is_recording() {
        span.add_event(
            "dgidgi.limit",
            vec![
                KeyValue::new("dgidgi.limit.code", code),
                KeyValue::new("dgidgi.limit.message", message.to_owned()),
            ],
        );
    }
}
