//! The operator's passes as spans, so a slow reconcile can be seen: `dgidgi.reconcile` (a
//! whole pass) with its steps as children, `dgidgi.render` (the pure render and the plan of
//! writes) and `dgidgi.apply` (the server-side applies).

use opentelemetry::trace::{SpanKind, Status, TraceContextExt as _, Tracer as _};
use opentelemetry::{Context, KeyValue};

use super::Traces;

/// A span named `name` (kind INTERNAL), a child of the current context, as a context.
pub fn span(traces: &Traces, name: &'static str) -> Context {
    let parent = Context::current();
    let span = traces
        .tracer()
        .span_builder(name)
        .with_kind(SpanKind::Internal)
        .start_with_context(traces.tracer(), &parent);
    parent.with_span(span)
}

/// Ends a step's span with what it did (counts), failed or not.
pub fn end(context: &Context, counts: &[(&'static str, usize)], failed: bool) {
    let span = context.span();
    for &(name, count) in counts {
        span.set_attribute(KeyValue::new(
            name,
            i64::try_from(count).unwrap_or(i64::MAX),
        ));
    }
    if failed {
        span.set_status(Status::error(""));
    }
    span.end();
}
