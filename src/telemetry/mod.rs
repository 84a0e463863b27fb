//! OpenTelemetry traces: OTLP export (HTTP/protobuf), configured the standard way
//! (`OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, `OTEL_SERVICE_NAME`,
//! `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG`, `OTEL_BSP_*`, `OTEL_SDK_DISABLED`), off
//! when no endpoint is named. Spans are exported by the SDK's batch processor on a thread of
//! its own, through a bounded queue (`OTEL_BSP_MAX_QUEUE_SIZE`, 2,048 spans): a request never
//! waits for the collector, and a collector that is down costs dropped spans, not memory.
//!
//! The spans follow the OpenTelemetry semantic conventions: HTTP's for the request
//! ([`http`]), and the GenAI conventions ([`genai`], version pinned there) for the inference
//! and each upstream attempt; the operator's passes are spans too ([`operator`]). Never
//! content, never keys.

pub mod genai;
pub mod http;
pub mod operator;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};

/// Whether the current context's span is recorded (sampled): what asks for work done only for
/// a trace (reading an answer's finish reason again) checks this first.
pub fn recording() -> bool {
    use opentelemetry::trace::TraceContextExt as _;
    opentelemetry::Context::map_current(|context| context.span().is_recording())
}

/// Starts a span of `kind` under `parent` and returns the context it runs in, named and
/// described by `describe` only when it is recorded: an unsampled span (nearly all of them at a
/// low sampling ratio) allocates no name and no attribute. The samplers the SDK reads from
/// `OTEL_TRACES_SAMPLER` decide by the parent and the trace id, never by name or attributes.
pub(crate) fn start_span(
    traces: &Traces,
    parent: &opentelemetry::Context,
    kind: opentelemetry::trace::SpanKind,
    describe: impl FnOnce() -> (String, Vec<opentelemetry::KeyValue>),
) -> opentelemetry::Context {
    use opentelemetry::trace::{TraceContextExt as _, Tracer as _};
    let span = traces
        .tracer()
        .span_builder("")
        .with_kind(kind)
        .start_with_context(traces.tracer(), parent);
    let context = parent.with_span(span);
    let span = context.span();
    if span.is_recording() {
        let (name, attributes) = describe();
        span.update_name(name);
        span.set_attributes(attributes);
    }
    context
}

/// The service name when `OTEL_SERVICE_NAME` names none.
const DEFAULT_SERVICE_NAME: &str = "dgidgi-gateway";

/// The trace pipeline: the provider (which owns the export thread) and the gateway's tracer.
#[derive(Clone, Debug)]
pub struct Traces {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
}

/// Why traces could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("the OTLP trace exporter could not be built: {0}")]
pub struct TracesError(String);

impl Traces {
    /// The pipeline the environment describes (`None`: no OTLP endpoint is named, or
    /// `OTEL_SDK_DISABLED=true`). `endpoint` (a flag) names the OTLP endpoint when the
    /// environment does not.
    pub fn from_env(endpoint: Option<&str>) -> Result<Option<Self>, TracesError> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        if var("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            return Ok(None);
        }
        let named = var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_some()
            || var("OTEL_EXPORTER_OTLP_ENDPOINT").is_some();
        match (named, endpoint) {
            // The exporter reads the variables itself (the per-signal one wins).
            (true, _) => Self::build(None).map(Some),
            (false, Some(endpoint)) => Self::build(Some(endpoint)).map(Some),
            (false, None) => Ok(None),
        }
    }

    /// A pipeline exporting to `endpoint` (the traces URL, `…/v1/traces`), or to the one the
    /// environment names.
    pub fn build(endpoint: Option<&str>) -> Result<Self, TracesError> {
        use opentelemetry_otlp::{Protocol, WithExportConfig as _};
        let mut exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary);
        if let Some(endpoint) = endpoint {
            exporter = exporter.with_endpoint(endpoint);
        }
        let exporter = exporter
            .build()
            .map_err(|error| TracesError(error.to_string()))?;
        let mut resource = opentelemetry_sdk::Resource::builder();
        if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
            resource = resource.with_service_name(DEFAULT_SERVICE_NAME);
        }
        let resource = resource
            .with_attribute(opentelemetry::KeyValue::new(
                "service.version",
                env!("CARGO_PKG_VERSION"),
            ))
            .build();
        // The sampler is the SDK's default, read from OTEL_TRACES_SAMPLER(_ARG): parent-based,
        // always on unless set.
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource)
            .build();
        let tracer = provider.tracer("dgidgi");
        Ok(Self { provider, tracer })
    }

    /// The gateway's tracer.
    pub fn tracer(&self) -> &SdkTracer {
        &self.tracer
    }

    /// Exports what is queued now (tests; a shutdown does it too).
    pub fn flush(&self) {
        if let Err(error) = self.provider.force_flush() {
            tracing::debug!("trace export flush: {error}");
        }
    }

    /// Exports what is queued and stops the export thread (at shutdown).
    pub fn shutdown(&self) {
        if let Err(error) = self.provider.shutdown() {
            tracing::debug!("trace export shut down: {error}");
        }
    }
}
