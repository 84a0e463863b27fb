//! Calling providers: one pooled HTTP client (HTTP/1.1 and HTTP/2, rustls) for every upstream,
//! the request in each provider's own format (URL and key header), and the classification of
//! failures that decides between retry, fallback and giving up.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::header::{ACCEPT, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::config::RetryOn;
use crate::crypto::Credential;
use crate::formats::auth::{Auth, Scope};
use crate::formats::dialect::dialect;
use crate::providers::ProviderKind;

/// The shared client type.
pub type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Builds the pooled client for platform providers (system resolver).
pub fn http_client() -> HttpClient {
    pooled_client(HttpConnector::new())
}

/// Wraps a TCP connector (any resolver) into the pooled client every upstream call uses:
/// rustls with the webpki roots, HTTP/1.1 and HTTP/2 by ALPN, keep-alive pooling, TCP_NODELAY.
pub fn pooled_client<R>(
    mut http: HttpConnector<R>,
) -> Client<HttpsConnector<HttpConnector<R>>, Full<Bytes>>
where
    HttpsConnector<HttpConnector<R>>: hyper_util::client::legacy::connect::Connect + Clone,
{
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(Duration::from_secs(5)));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(256)
        .build(https)
}

/// Why an attempt failed before anything reached the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// 429 from the provider, with its `retry-after` (seconds) when it gave one.
    RateLimited(Option<u64>),
    /// 5xx from the provider (529 overloaded included).
    ServerError(StatusCode),
    /// No response headers in time.
    Timeout,
    /// The connection could not be made or broke before the response.
    Connect,
    /// The provider does not know the model (404).
    ModelNotFound,
    /// The provider refused the gateway's key (401/403).
    Auth(StatusCode),
    /// A provider type this gateway cannot call yet.
    Unsupported(ProviderKind),
    /// The request uses something this target's format cannot express (a 400 if no other
    /// target can).
    Inexpressible(String),
    /// The provider's answer could not be read or translated.
    BadAnswer(String),
    /// The provider key's own requests or tokens per minute (`LlmProvider.spec.limits`) are
    /// used up: the target is skipped without being called.
    QuotaFull,
    /// The gateway holds its most of whole answers (see [`super::answer_buffers`]).
    NoRoom,
}

impl Failure {
    /// The retry class, if this failure may be retried on the same target.
    pub fn retry_class(&self) -> Option<RetryOn> {
        match self {
            Self::RateLimited(_) => Some(RetryOn::RateLimited),
            Self::ServerError(_) => Some(RetryOn::ServerError),
            Self::Timeout => Some(RetryOn::Timeout),
            Self::Connect => Some(RetryOn::ConnectError),
            Self::ModelNotFound
            | Self::Auth(_)
            | Self::Unsupported(_)
            | Self::Inexpressible(_)
            | Self::BadAnswer(_)
            | Self::QuotaFull
            | Self::NoRoom => None,
        }
    }

    /// Low-cardinality label for the upstream error metric.
    pub fn class(&self) -> &'static str {
        match self {
            Self::RateLimited(_) => "rate_limited",
            Self::ServerError(_) => "server_error",
            Self::Timeout => "timeout",
            Self::Connect => "connect",
            Self::ModelNotFound => "model_not_found",
            Self::Auth(_) => "auth",
            Self::Unsupported(_) => "unsupported",
            Self::Inexpressible(_) => "inexpressible",
            Self::BadAnswer(_) => "bad_answer",
            Self::QuotaFull => "key_quota_full",
            Self::NoRoom => "gateway_busy",
        }
    }

    /// The provider's status, where the failure is one.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::RateLimited(_) => Some(429),
            Self::ServerError(status) | Self::Auth(status) => Some(status.as_u16()),
            Self::ModelNotFound => Some(404),
            _ => None,
        }
    }

    /// Short description for logs and the final error message (no secrets, no bodies).
    pub fn describe(&self) -> String {
        match self {
            Self::RateLimited(_) => "rate limited (429)".to_owned(),
            Self::ServerError(status) => format!("server error ({})", status.as_u16()),
            Self::Timeout => "timed out".to_owned(),
            Self::Connect => "connection failed".to_owned(),
            Self::ModelNotFound => "model not found (404)".to_owned(),
            Self::Auth(status) => {
                format!("refused the gateway's credentials ({})", status.as_u16())
            }
            Self::Unsupported(kind) => {
                format!("provider type {kind} is not supported by this gateway yet")
            }
            Self::Inexpressible(message) => format!("cannot take this request: {message}"),
            Self::BadAnswer(message) => format!("gave an answer that could not be read: {message}"),
            Self::QuotaFull => "used up its key's own per-minute quota (not called)".to_owned(),
            Self::NoRoom => "answered while the gateway held its most of whole answers".to_owned(),
        }
    }
}

/// What an attempt produced.
pub enum Outcome {
    /// A response to relay (2xx, or a 4xx that is the client's own fault).
    Relay(Response<Incoming>),
    /// A complete answer produced in-process.
    Local {
        /// Status.
        status: StatusCode,
        /// Content type.
        content_type: &'static str,
        /// Body.
        body: Bytes,
    },
    /// A failure to retry or fall back from.
    Failed(Failure),
}

/// How a request to `kind` in `format` carries a key: the format's way, or the type's own
/// (Azure OpenAI's `api-key` header).
pub fn key_auth(kind: ProviderKind, format: crate::formats::Format) -> Auth {
    match kind {
        ProviderKind::AzureOpenai => Auth::Header("api-key"),
        _ => dialect(format).auth(),
    }
}

/// One request to a provider, before it is signed.
pub struct Outgoing<'a> {
    /// How the credential is written into it.
    pub auth: Auth,
    /// The provider's region (what an AWS signature is scoped to).
    pub region: Option<&'a str>,
    /// The provider's type (its format's signer, its own headers).
    pub kind: ProviderKind,
    /// Where it goes.
    pub url: &'a str,
    /// The provider's credential, if it has one.
    pub credential: Option<&'a Credential>,
    /// The body, in the provider's format.
    pub body: Bytes,
    /// How long to wait for the response headers.
    pub first_byte: Duration,
    /// The client's headers the provider reads.
    pub forwarded: Vec<(hyper::header::HeaderName, HeaderValue)>,
    /// Where the attempt's span goes (`None`: traces are off).
    pub traces: Option<&'a crate::telemetry::Traces>,
}

/// Sends a request in the provider's own format and classifies the answer. The credential is
/// written by the format's signer (never into the URL), marked sensitive.
pub async fn send<C>(client: &Client<C, Full<Bytes>>, outgoing: Outgoing<'_>) -> Outcome
where
    C: hyper_util::client::legacy::connect::Connect + Clone + Send + Sync + 'static,
{
    let trace = outgoing
        .traces
        .map(|traces| crate::telemetry::genai::attempt_span(traces, outgoing.url, outgoing.kind));
    let outcome = send_traced(client, outgoing, trace.as_ref()).await;
    if let Some(context) = &trace {
        let (status, error) = match &outcome {
            Outcome::Relay(response) => (Some(response.status().as_u16()), None),
            Outcome::Local { status, .. } => (Some(status.as_u16()), None),
            Outcome::Failed(failure) => (failure.status(), Some(failure.class())),
        };
        crate::telemetry::genai::attempt_ended(context, status, error);
    }
    outcome
}

/// [`send`] within the attempt's span (`trace`), whose `traceparent` the request carries.
async fn send_traced<C>(
    client: &Client<C, Full<Bytes>>,
    outgoing: Outgoing<'_>,
    trace: Option<&opentelemetry::Context>,
) -> Outcome
where
    C: hyper_util::client::legacy::connect::Connect + Clone + Send + Sync + 'static,
{
    let Outgoing {
        auth,
        region,
        kind: provider_kind,
        url,
        credential,
        body,
        first_byte,
        forwarded,
        traces: _,
    } = outgoing;
    let mut builder = Request::builder()
        .method(Method::POST)
        .uri(url)
        .header(CONTENT_TYPE, "application/json")
        .header(ACCEPT, accept(provider_kind));
    // The client's headers its provider reads (see `super::forwarded`), then the type's own
    // (OpenRouter's app attribution).
    for (name, value) in forwarded {
        builder = builder.header(name, value);
    }
    for &(name, value) in provider_kind.defaults().headers {
        builder = builder.header(name, value);
    }
    let Ok(mut request) = builder.body(body) else {
        return Outcome::Failed(Failure::Connect);
    };
    // The attempt's trace context (signed with the rest: SigV4 covers it).
    if let Some(context) = trace {
        crate::telemetry::http::inject(context, request.headers_mut());
    }
    let scope = Scope {
        region,
        time: std::time::SystemTime::now(),
    };
    if let Some(credential) = credential
        && let Err(error) = auth.sign(&mut request, credential, &scope)
    {
        tracing::error!(kind = provider_kind.as_str(), "{error}");
        return Outcome::Failed(Failure::Auth(StatusCode::UNAUTHORIZED));
    }
    let request = request.map(Full::new);
    let response = match tokio::time::timeout(first_byte, client.request(request)).await {
        Err(_) => return Outcome::Failed(Failure::Timeout),
        Ok(Err(error)) => {
            tracing::debug!("upstream request failed: {error}");
            return Outcome::Failed(Failure::Connect);
        }
        Ok(Ok(response)) => response,
    };
    let status = response.status();
    match status.as_u16() {
        200..=299 => Outcome::Relay(response),
        429 => {
            let retry_after = response
                .headers()
                .get(hyper::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok());
            Outcome::Failed(Failure::RateLimited(retry_after))
        }
        401 | 403 => Outcome::Failed(Failure::Auth(status)),
        404 => Outcome::Failed(Failure::ModelNotFound),
        // 529 (Anthropic's "overloaded") included.
        500..=599 => Outcome::Failed(Failure::ServerError(status)),
        // Other 4xx: the request itself is wrong; the provider's own error goes back.
        _ => Outcome::Relay(response),
    }
}

/// The `Accept` of a request to `kind`: JSON, or its format's stream (AWS's event-stream for
/// Bedrock, server-sent events for every other).
fn accept(kind: ProviderKind) -> &'static str {
    match dialect(kind.format()).stream_media_type() {
        "text/event-stream" => "application/json, text/event-stream",
        _ => "application/json, application/vnd.amazon.eventstream",
    }
}

/// Why a whole body could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadError {
    /// It broke off.
    Broken,
    /// It is larger than the limit.
    TooLarge,
    /// The gateway holds its most of whole answers (see [`super::answer_buffers`]).
    NoRoom,
}

/// Reads a whole upstream body, bounded by `limit` and by the room `buffers` has (taken as it
/// is read, and returned with the bytes: hold it as long as they live). A body that arrives in
/// one frame (most answers) is kept as it came, without a copy.
pub async fn read_bounded(
    mut body: super::body::UpstreamBody,
    limit: usize,
    buffers: Option<&super::answer_buffers::AnswerBuffers>,
) -> Result<(Bytes, Option<tokio::sync::OwnedSemaphorePermit>), ReadError> {
    let mut first: Option<Bytes> = None;
    let mut rest: Vec<u8> = Vec::new();
    let mut room: Option<tokio::sync::OwnedSemaphorePermit> = None;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| ReadError::Broken)?;
        if let Ok(data) = frame.into_data() {
            // Whatever has been read is in `first` (one frame) or in `rest` (more), never both.
            let read = first.as_ref().map_or(0, Bytes::len) + rest.len();
            if read + data.len() > limit {
                return Err(ReadError::TooLarge);
            }
            if let Some(buffers) = buffers {
                // Room is counted on the running total (KiB rounded up once), not per frame: an
                // answer trickled a byte a frame takes no more room than it is.
                let needed = (read + data.len()).div_ceil(1024);
                let held = room.as_ref().map_or(0, |room| room.num_permits());
                if needed > held {
                    let more = buffers
                        .take((needed - held) * 1024)
                        .ok_or(ReadError::NoRoom)?;
                    match room.as_mut() {
                        Some(room) => room.merge(more),
                        None => room = Some(more),
                    }
                }
            }
            if first.is_none() && rest.is_empty() {
                first = Some(data);
            } else {
                if let Some(head) = first.take() {
                    rest.extend_from_slice(&head);
                }
                rest.extend_from_slice(&data);
            }
        }
    }
    Ok((first.unwrap_or_else(|| Bytes::from(rest)), room))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::StreamBody;
    use hyper::body::Frame;

    fn frames(parts: &[&'static str]) -> super::super::body::UpstreamBody {
        let frames: Vec<Result<Frame<Bytes>, std::io::Error>> = parts
            .iter()
            .map(|part| Ok(Frame::data(Bytes::from_static(part.as_bytes()))))
            .collect();
        super::super::body::upstream_body(StreamBody::new(futures::stream::iter(frames)))
    }

    async fn read(parts: &[&'static str], limit: usize) -> Option<Bytes> {
        read_bounded(frames(parts), limit, None)
            .await
            .ok()
            .map(|(bytes, _)| bytes)
    }

    #[tokio::test]
    async fn a_body_is_read_whole_and_bounded_whatever_its_frames() {
        let one = read(&["abcdef"], 6).await;
        assert_eq!(one.as_deref(), Some(b"abcdef".as_slice()));
        // Three frames of 2 bytes fit a 6-byte limit exactly (the first frame counted once).
        let three = read(&["ab", "cd", "ef"], 6).await;
        assert_eq!(three.as_deref(), Some(b"abcdef".as_slice()));
        assert_eq!(read(&["ab", "cd", "efg"], 6).await, None);
        assert_eq!(read(&["abcdefg"], 6).await, None);
        assert_eq!(read(&[], 6).await.as_deref(), Some(b"".as_slice()));
    }

    #[tokio::test]
    async fn reading_takes_room_from_the_gateways_total() {
        let buffers = crate::gateway::answer_buffers::AnswerBuffers::new(4 * 1024);
        let big = Box::leak("x".repeat(3 * 1024).into_boxed_str());
        let held = read_bounded(frames(&[big]), 1 << 20, Some(&buffers))
            .await
            .expect("room for one");
        assert_eq!(buffers.available_bytes(), 1024);
        assert_eq!(
            read_bounded(frames(&[big]), 1 << 20, Some(&buffers))
                .await
                .unwrap_err(),
            ReadError::NoRoom
        );
        drop(held);
        assert_eq!(buffers.available_bytes(), 4 * 1024);
        // A body trickled a byte a frame takes the room of its size, not a KiB a byte.
        let bytes: Vec<&'static str> = (0..2048).map(|_| "x").collect();
        let trickled = read_bounded(frames(&bytes), 1 << 20, Some(&buffers))
            .await
            .expect("room for 2 KiB");
        assert_eq!(buffers.available_bytes(), 2 * 1024);
        drop(trickled);
    }
}
