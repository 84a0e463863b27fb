//! The GenAI semantic conventions as dgidgi uses them, pinned to semantic conventions
//! **1.37.0** (the version that named `gen_ai.provider.name`; what
//! `OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental` selects in other SDKs at that
//! version). Attribute names are the registry's; dgidgi's own are under `dgidgi.`.

use std::time::Duration;

use opentelemetry::trace::{SpanKind, Status, TraceContextExt as _};
use opentelemetry::{Context, KeyValue};

use super::Traces;
use crate::providers::ProviderKind;
use crate::usage::{FinishReason, Usage};

/// The schema the spans follow.
pub const SCHEMA_URL: &str = "https://opentelemetry.io/schemas/1.37.0";

/// `gen_ai.operation.name`.
pub const OPERATION_NAME: &str = "gen_ai.operation.name";
/// `gen_ai.provider.name`.
pub const PROVIDER_NAME: &str = "gen_ai.provider.name";
/// `gen_ai.request.model`.
pub const REQUEST_MODEL: &str = "gen_ai.request.model";
/// `gen_ai.response.model`.
pub const RESPONSE_MODEL: &str = "gen_ai.response.model";
/// `gen_ai.request.max_tokens`.
pub const REQUEST_MAX_TOKENS: &str = "gen_ai.request.max_tokens";
/// `gen_ai.usage.input_tokens`.
pub const USAGE_INPUT_TOKENS: &str = "gen_ai.usage.input_tokens";
/// `gen_ai.usage.output_tokens`.
pub const USAGE_OUTPUT_TOKENS: &str = "gen_ai.usage.output_tokens";
/// `gen_ai.response.finish_reasons`.
pub const RESPONSE_FINISH_REASONS: &str = "gen_ai.response.finish_reasons";
/// `error.type`.
pub const ERROR_TYPE: &str = "error.type";

/// The operation of a chat request (every front door's: Messages, Responses and Gemini's
/// generateContent are chats too).
pub const CHAT: &str = "chat";
/// The operation of an embeddings request.
pub const EMBEDDINGS: &str = "embeddings";

/// `gen_ai.provider.name` of a provider type: the registry's well-known value where it has
/// one, else the type's own name.
pub fn provider_name(kind: ProviderKind) -> &'static str {
    match kind {
        ProviderKind::Openai => "openai",
        ProviderKind::Anthropic => "anthropic",
        ProviderKind::Gemini => "gcp.gemini",
        ProviderKind::Groq => "groq",
        ProviderKind::Mistral => "mistral_ai",
        ProviderKind::Cohere => "cohere",
        ProviderKind::Perplexity => "perplexity",
        ProviderKind::Xai => "x_ai",
        ProviderKind::Deepseek => "deepseek",
        ProviderKind::AzureOpenai => "azure.ai.openai",
        ProviderKind::Bedrock => "aws.bedrock",
        // Claude on Vertex too: the platform that serves it is named, not the model's maker.
        ProviderKind::VertexAi => "gcp.vertex_ai",
        other => other.as_str(),
    }
}

/// What an inference span is opened with.
pub struct Inference<'a> {
    /// `chat` or `embeddings`.
    pub operation: &'static str,
    /// The model the client asked for.
    pub requested_model: &'a str,
    /// The output limit the request set, if any.
    pub max_tokens: Option<u64>,
    /// The tenant (`namespace/name`).
    pub tenant: &'a str,
    /// The source serving it: platform, tenant or cli.
    pub source: &'static str,
}

/// The GenAI CLIENT span `{operation} {model}` of one request's inference, across its retries
/// and fallbacks (each attempt is a child HTTP span), a child of the current context (the
/// request's SERVER span), as the context its attempts run in.
pub fn inference_span(traces: &Traces, inference: &Inference<'_>) -> Context {
    super::start_span(traces, &Context::current(), SpanKind::Client, || {
        let mut attributes = vec![
            KeyValue::new(OPERATION_NAME, inference.operation),
            KeyValue::new(REQUEST_MODEL, inference.requested_model.to_owned()),
            KeyValue::new("dgidgi.tenant", inference.tenant.to_owned()),
            KeyValue::new("dgidgi.source", inference.source),
        ];
        if let Some(max) = inference.max_tokens {
            attributes.push(KeyValue::new(
                REQUEST_MAX_TOKENS,
                i64::try_from(max).unwrap_or(i64::MAX),
            ));
        }
        let name = format!("{} {}", inference.operation, inference.requested_model);
        (name, attributes)
    })
}

/// Records which provider and model answered, after how many fallbacks.
pub fn answered(context: &Context, provider: ProviderKind, model: &str, fallbacks: usize) {
    let span = context.span();
    if !span.is_recording() {
        return;
    }
    span.set_attribute(KeyValue::new(PROVIDER_NAME, provider_name(provider)));
    span.set_attribute(KeyValue::new(RESPONSE_MODEL, model.to_owned()));
    span.set_attribute(KeyValue::new(
        "dgidgi.fallback_count",
        i64::try_from(fallbacks).unwrap_or(i64::MAX),
    ));
}

/// Ends an inference no provider answered, with the class of its failure.
pub fn failed(context: &Context, error_type: &str) {
    let span = context.span();
    if !span.is_recording() {
        span.end();
        return;
    }
    span.set_attribute(KeyValue::new(ERROR_TYPE, error_type.to_owned()));
    span.set_status(Status::error(""));
    span.end();
}

/// What an answered inference used, when its body ended.
pub struct Settled {
    /// The usage the provider reported.
    pub usage: Option<Usage>,
    /// What it was charged, micro-USD.
    pub cost_micro_usd: u64,
    /// From the request's arrival to the answer's first byte.
    pub first_byte: Option<Duration>,
    /// How the answer ended (`complete`, `client_gone`, `upstream_failed`).
    pub outcome: &'static str,
    /// Why the model stopped, when the answer said (canonical names).
    pub finish_reason: Option<FinishReason>,
}

/// Ends an answered inference with its usage, cost and time to first token.
pub fn settled(context: &Context, settled: &Settled) {
    let span = context.span();
    if !span.is_recording() {
        span.end();
        return;
    }
    let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    if let Some(usage) = settled.usage {
        span.set_attribute(KeyValue::new(USAGE_INPUT_TOKENS, count(usage.input_tokens)));
        span.set_attribute(KeyValue::new(
            USAGE_OUTPUT_TOKENS,
            count(usage.output_tokens),
        ));
    }
    span.set_attribute(KeyValue::new(
        "dgidgi.cost_micro_usd",
        count(settled.cost_micro_usd),
    ));
    span.set_attribute(KeyValue::new("dgidgi.outcome", settled.outcome));
    if let Some(reason) = settled.finish_reason {
        // A string array, as the convention types it, of the one reason kept: the first
        // choice's (with `n` > 1, a stream keeps the last chunk's).
        span.set_attribute(KeyValue::new(
            RESPONSE_FINISH_REASONS,
            opentelemetry::Value::Array(
                vec![opentelemetry::StringValue::from(reason.as_str())].into(),
            ),
        ));
    }
    if let Some(first_byte) = settled.first_byte {
        span.set_attribute(KeyValue::new(
            "dgidgi.time_to_first_token_ms",
            count(u64::try_from(first_byte.as_millis()).unwrap_or(u64::MAX)),
        ));
    }
    if settled.outcome == "upstream_failed" {
        span.set_attribute(KeyValue::new(ERROR_TYPE, "upstream_failed"));
        span.set_status(Status::error(""));
    }
    span.end();
}

/// An upstream attempt's HTTP CLIENT span (`POST`), a child of the current context (the
/// inference), as the context whose `traceparent` the request to the provider carries.
pub fn attempt_span(traces: &Traces, url: &str, provider: ProviderKind) -> Context {
    super::start_span(traces, &Context::current(), SpanKind::Client, || {
        let mut attributes = vec![
            KeyValue::new("http.request.method", "POST"),
            KeyValue::new(PROVIDER_NAME, provider_name(provider)),
        ];
        if let Ok(parsed) = url::Url::parse(url) {
            if let Some(host) = parsed.host_str() {
                attributes.push(KeyValue::new("server.address", host.to_owned()));
            }
            if let Some(port) = parsed.port_or_known_default() {
                attributes.push(KeyValue::new("server.port", i64::from(port)));
            }
            // The path only: a query is the provider's business (never a key: keys go in
            // headers).
            attributes.push(KeyValue::new("url.path", parsed.path().to_owned()));
        }
        ("POST".to_owned(), attributes)
    })
}

/// Ends an attempt's span with what came back: a status, or the failure's class.
pub fn attempt_ended(context: &Context, status: Option<u16>, error_type: Option<&str>) {
    let span = context.span();
    if !span.is_recording() {
        span.end();
        return;
    }
    if let Some(status) = status {
        span.set_attribute(KeyValue::new(
            "http.response.status_code",
            i64::from(status),
        ));
    }
    if let Some(error_type) = error_type {
        span.set_attribute(KeyValue::new(ERROR_TYPE, error_type.to_owned()));
        span.set_status(Status::error(""));
    }
    span.end();
}
