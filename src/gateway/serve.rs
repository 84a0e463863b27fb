//! The request path shared by every front door (`/v1/chat/completions`, `/v1/messages`): walk
//! the plan (retries with backoff on the rule's failure classes, then the next target) until
//! one attempt answers, with the request translated into each target's format and the answer
//! translated back into the client's. Nothing reaches the client before an attempt has
//! answered, so every failure before that point can still fall back; non-streamed answers are
//! read whole inside the attempt, so even a body that breaks falls back.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::header::{CONTENT_TYPE, HeaderMap, HeaderValue};
use hyper::{Response, StatusCode};
use serde_json::{Map, Value};
use tokio::sync::oneshot;

use super::answer_buffers::{AnswerBuffers, hold};
use super::body::{ResponseBody, UpstreamBody, upstream_body};
use super::completion::{Completion, Reporter};
use super::error::ApiError;
use super::forwarded::{BetaPolicy, ClientHeaders, copy_provider_headers};
use super::metered::SettleOnDrop;
use super::provider_urls::chat_url;
use super::stamp::{said_rewritten, stamp};
use super::tokens;
use super::upstream::{self, Failure, Outcome, Outgoing, ReadError, read_bounded, send};
use super::{Active, Gateway};
use crate::config::Source;
use crate::config::{ProviderConfig, Scope};
use crate::formats::dialect::{Dialect, PassThrough, Target, dialect};
use crate::formats::stream::{Context, ItemSink, reframer};
use crate::formats::{
    Format, FormatError, SentBody, anthropic, responses, write_with_edited_members,
};
use crate::metering::Ticket;
use crate::metering::meter::ProviderTicket;
use crate::metrics::UpstreamErrorLabels;
use crate::providers::{ProviderKind, mock};
use crate::routing::plan::{Attempt, Plan};

/// The largest non-streamed answer read from a provider.
pub(super) const MAX_ANSWER_BYTES: usize = 32 * 1024 * 1024;

/// `max_tokens` for an Anthropic model when neither the client nor the catalog gives one.
const DEFAULT_MAX_TOKENS: u64 = 4096;

/// A parsed client request.
#[derive(Debug)]
pub struct ClientRequest {
    /// The format the client speaks.
    pub format: Format,
    /// Its body, but for the members `left_out` names.
    pub json: Map<String, Value>,
    /// Its body as it arrived.
    pub sent: SentBody,
    /// The members left out of `json`, parsed from `sent` when something reads them.
    pub left_out: &'static [&'static str],
    /// Members the front door changed from what arrived.
    pub rewritten: Vec<&'static str>,
    /// Where a Responses answer's messages are kept.
    pub items: Option<ItemSink>,
    /// Whether it asked for a stream.
    pub stream: bool,
    /// The client's headers its provider reads.
    pub headers: ClientHeaders,
}

/// The response an attempt served, with what the lead's metering needs: the one completion the
/// body will report, and which attempt served it.
#[derive(Debug)]
pub struct AttemptAnswer {
    /// The response to send.
    pub response: Response<ResponseBody>,
    /// Receives exactly one completion when the body ends, fails or is dropped.
    pub completion: oneshot::Receiver<Completion>,
    /// The provider id that served (`cli` for a cli endpoint).
    pub provider: String,
    /// The model sent upstream.
    pub model: String,
    /// Position of the attempt in the plan (0: the first choice).
    pub fallback: usize,
    /// The source that served.
    pub source: Source,
    /// The provider key's reservation for the attempt that served (its own limits), settled
    /// with the tokens it used once the body ends.
    pub quota: Option<SettleOnDrop<ProviderTicket>>,
    /// The inference's trace span, ended by the settlement with what the answer used.
    pub trace: Option<opentelemetry::Context>,
}

/// The request in its canonical (OpenAI) form, made once per request.
struct Prepared {
    client: Format,
    /// The client's headers its provider reads.
    headers: ClientHeaders,
    stream: bool,
    /// The OpenAI client asked for the usage chunk itself.
    client_wants_usage: bool,
    /// The client's body, parsed, but for the members still `left_out`.
    original: Map<String, Value>,
    /// The client's body as it arrived (a pass-through to the same format keeps its bytes).
    sent: SentBody,
    /// The members of `sent` not yet parsed into `original` (see [`Self::whole`]).
    left_out: &'static [&'static str],
    /// Members the front door changed from what arrived.
    rewritten: Vec<&'static str>,
    /// Where a Responses answer's messages are kept.
    items: Option<ItemSink>,
    /// The canonical body, when the client does not speak OpenAI (`None`: not made yet, or the
    /// client speaks OpenAI and `original` is canonical).
    canonical: Option<Result<Map<String, Value>, FormatError>>,
}

impl Prepared {
    /// The client's whole body: the members a front door left out are parsed into `original`
    /// the first time something reads the body whole (a translation). A pass-through reads
    /// only the members it edits, and never needs them.
    fn whole(&mut self) -> Result<&Map<String, Value>, FormatError> {
        for name in self.left_out {
            self.sent
                .parse_into(&mut self.original, name)
                .map_err(|error| {
                    FormatError::Invalid(format!("'{name}' is not valid JSON: {error}"))
                })?;
        }
        self.left_out = &[];
        Ok(&self.original)
    }

    /// The body as `dialect`'s check of the platform's key reads it: the members left out
    /// that the check reads, parsed as deep as it reads them (a tool's type, not its schema),
    /// beside the members parsed already; the whole body when the dialect does not say what
    /// its check reads.
    fn shared_key_view(
        &mut self,
        dialect: &dyn Dialect,
    ) -> Result<Cow<'_, Map<String, Value>>, FormatError> {
        let Some(reads) = dialect.shared_key_check_reads() else {
            return self.whole().map(Cow::Borrowed);
        };
        self.sent
            .with_kept(&self.original, self.left_out, reads)
            .map_err(|error| FormatError::Invalid(format!("the request body: {error}")))
    }

    fn canonical(&mut self) -> Result<&Map<String, Value>, FormatError> {
        self.whole()?;
        // Made once, on the first target that needs it (`None` stays: the client is canonical).
        if self.canonical.is_none() {
            self.canonical = dialect(self.client).request_to_canonical(&self.original);
        }
        match &self.canonical {
            None => Ok(&self.original),
            Some(Ok(canonical)) => Ok(canonical),
            Some(Err(error)) => Err(error.clone()),
        }
    }

    /// The body for one attempt, in the upstream's format.
    fn body_for(
        &mut self,
        attempt: &Attempt<'_>,
        upstream: Format,
        output_cap: Option<u64>,
    ) -> Result<Bytes, FormatError> {
        let provider = attempt.provider;
        let edit = PassThrough {
            model: provider.upstream_model(&attempt.model),
            shared: paid_by_platform(attempt),
            stream: self.stream,
            cap: output_cap,
            // OpenAI itself (not a compatible provider): its reasoning models take only the
            // newer name of the output cap.
            newer_cap_name: provider.kind == ProviderKind::Openai,
            searches_anyway: provider.kind.searches_every_request(),
        };
        let dialect = dialect(upstream);
        // The upstream takes the request's own format (the client's; only a Responses client
        // is served by a Responses upstream, see `upstream_format`): only the members the
        // dialect names change, and the rest of the body goes as it arrived. The platform's
        // key is shared by every tenant: what may not be asked of it is refused first.
        if upstream == self.client {
            if edit.shared {
                let request = self.shared_key_view(dialect)?;
                dialect.refuse_on_shared_key(&request, &edit)?;
            }
            let mut members = dialect.pass_through_members(&edit).to_vec();
            members.extend(&self.rewritten);
            let vertex = on_vertex(provider, upstream);
            if vertex {
                members.extend(anthropic::VERTEX_MEMBERS);
            }
            let body = self.sent.write_edited(&self.original, &members, |json| {
                dialect.pass_through_edit(json, &edit);
                if vertex {
                    anthropic::for_vertex(json);
                }
            });
            return Ok(Bytes::from(body));
        }
        let canonical = self.canonical()?;
        // OpenAI's format is the canonical one: the canonical request is edited as a
        // pass-through would be, written once, not copied per attempt.
        if upstream == Format::OpenAi {
            if edit.shared {
                dialect.refuse_on_shared_key(canonical, &edit)?;
            }
            let members = dialect.pass_through_members(&edit);
            let body = write_with_edited_members(canonical, members, |json| {
                // A translated request names its limit `max_tokens`; OpenAI's reasoning
                // models take only the newer name.
                if edit.newer_cap_name
                    && let Some(max) = json.remove("max_tokens")
                {
                    json.insert("max_completion_tokens".into(), max);
                }
                dialect.pass_through_edit(json, &edit);
            });
            return Ok(Bytes::from(body));
        }
        // Every other pair: the canonical request written in the upstream's dialect.
        let default_max_output_tokens = attempt
            .model_config
            .and_then(|m| m.max_output_tokens)
            .map_or(DEFAULT_MAX_TOKENS, u64::from);
        let target = Target {
            model: provider.upstream_model(&attempt.model),
            default_max_output_tokens,
        };
        let mut json = dialect.request_from_canonical(canonical, &target)?;
        edit.cap(&mut json, upstream);
        if on_vertex(provider, upstream) {
            anthropic::for_vertex(&mut json);
        }
        // A map of JSON values always serializes (string keys, finite numbers).
        Ok(Bytes::from(serde_json::to_vec(&json).unwrap_or_default()))
    }
}

/// Whether a request in `format` goes to Claude on Vertex AI (whose body differs from
/// Anthropic's own API: [`anthropic::for_vertex`]).
fn on_vertex(provider: &ProviderConfig, format: Format) -> bool {
    provider.kind == ProviderKind::VertexAi && format == Format::Anthropic
}

/// The format an attempt's upstream speaks for a client: a provider that serves OpenAI's
/// Responses API gets a Responses client's request in that API (as sent); everything else its
/// type's own format.
fn upstream_format(attempt: &Attempt<'_>, client: Format) -> Format {
    let provider = attempt.provider;
    let format = provider.kind.format_of(&attempt.model);
    if client == Format::Responses && provider.responses_api && format == Format::OpenAi {
        Format::Responses
    } else {
        format
    }
}

/// Sends a request through `client`, signed with a short-lived credential where the provider
/// takes one (a token exchanged for its stored credential, or the pod's workload identity:
/// [`super::tokens`]).
async fn send_signed<C>(
    gateway: &Gateway,
    client: &hyper_util::client::legacy::Client<C, http_body_util::Full<Bytes>>,
    provider: &ProviderConfig,
    mut outgoing: Outgoing<'_>,
) -> Outcome
where
    C: hyper_util::client::legacy::connect::Connect + Clone + Send + Sync + 'static,
{
    // Most providers sign with their stored key: the fetch (a large future, token grants and
    // the workload identities' calls) is boxed and entered only by those that do not.
    let fetching = tokens::fetches(provider, outgoing.credential);
    let fetched = match fetching {
        false => Ok(None),
        true => Box::pin(gateway.tokens.fetch(client, provider, outgoing.credential)).await,
    };
    let fetched = match fetched {
        Ok(fetched) => fetched,
        Err(error) => {
            tracing::warn!(provider = ?provider.id, "no credential for the provider: {error}");
            return Outcome::Failed(token_failure(&error));
        }
    };
    if let Some(fetched) = &fetched {
        if let tokens::Fetched::Bearer(_) = fetched {
            outgoing.auth = crate::formats::auth::Auth::Bearer;
        }
        outgoing.credential = Some(fetched.credential());
    }
    let outcome = send(client, outgoing).await;
    if fetched.is_some() && matches!(outcome, Outcome::Failed(Failure::Auth(_))) {
        // Refused with a fetched credential: revoked or expired early; the next request
        // fetches a new one.
        gateway.tokens.evict(&provider.id);
    }
    outcome
}

/// The failure a request meets when its provider's credential could not be fetched: the
/// token endpoint's own trouble is retried and falls back as the provider's would be
/// (unreachable, 5xx, 429); a refusal is an authentication failure.
fn token_failure(error: &tokens::TokenError) -> Failure {
    use tokens::TokenError;
    match error {
        TokenError::Unreachable => Failure::Connect,
        TokenError::Refused(429) => Failure::RateLimited(None),
        TokenError::Refused(status @ 500..=599) => {
            Failure::ServerError(StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_GATEWAY))
        }
        TokenError::Refused(_) | TokenError::Grant(_) | TokenError::NoIdentity { .. } => {
            Failure::Auth(StatusCode::UNAUTHORIZED)
        }
    }
}

/// Runs a request's walk (`walk`, boxed: see [`serve`]) in its GenAI inference span when traces
/// are exported: ended here if no provider answered, else by the settlement when the answer's
/// body ends ([`AttemptAnswer::trace`]).
pub(super) async fn traced_inference(
    gateway: &Gateway,
    snapshot: &Active,
    planned: &Plan<'_>,
    ticket: &Ticket,
    operation: &'static str,
    walk: impl Future<Output = Result<AttemptAnswer, ApiError>>,
) -> Result<AttemptAnswer, ApiError> {
    use crate::telemetry::genai;
    use opentelemetry::context::FutureExt as _;
    let Some(traces) = &gateway.settings.traces else {
        return walk.await;
    };
    let inference = genai::Inference {
        operation,
        requested_model: &planned.requested_model,
        max_tokens: ticket
            .size
            .max_output_tokens
            .filter(|_| operation == genai::CHAT),
        tenant: ticket.tenant(),
        source: planned.source.as_str(),
    };
    let context = genai::inference_span(traces, &inference);
    match walk.with_context(context.clone()).await {
        Ok(mut answer) => {
            if let Some(provider) = snapshot.provider(&answer.provider) {
                genai::answered(&context, provider.kind, &answer.model, answer.fallback);
            }
            answer.trace = Some(context);
            Ok(answer)
        }
        Err(error) => {
            genai::failed(&context, error.code);
            Err(error)
        }
    }
}

/// Walks the plan for a parsed request and returns what served it. (Traced by the caller with
/// [`traced_inference`] when traces are exported; untraced, it is awaited where it is made:
/// its future is the request's largest, and every layer around it would copy it.)
pub async fn serve(
    gateway: &Arc<Gateway>,
    snapshot: &Active,
    planned: &Plan<'_>,
    request: ClientRequest,
    ticket: &Ticket,
) -> Result<AttemptAnswer, ApiError> {
    let client_wants_usage = request.format == Format::OpenAi
        && request
            .json
            .get("stream_options")
            .and_then(|o| o.get("include_usage"))
            == Some(&Value::Bool(true));
    let mut prepared = Prepared {
        client: request.format,
        headers: request.headers,
        stream: request.stream,
        client_wants_usage,
        original: request.json,
        sent: request.sent,
        left_out: request.left_out,
        rewritten: request.rewritten,
        items: request.items,
        canonical: None,
    };
    let mut failures: Vec<Failure> = Vec::new();
    let walk = Walk {
        gateway,
        snapshot,
        planned,
        ticket,
    };
    for (index, attempt) in planned.attempts.iter().enumerate() {
        let format = upstream_format(attempt, prepared.client);
        // Platform-paid attempts never generate more than metering reserved for them: their
        // output is limited only when the request's own fields would allow more.
        let output_cap = if paid_by_platform(attempt) {
            gateway.meter.output_cap(ticket, attempt.model_config)
        } else {
            None
        };
        let body = match prepared.body_for(attempt, format, output_cap) {
            Ok(body) => body,
            Err(FormatError::Invalid(message)) => return Err(ApiError::bad_request(message)),
            Err(error) => {
                failures.push(Failure::Inexpressible(error.to_string()));
                continue;
            }
        };
        let (prepared, body) = (&prepared, &body);
        let once = || try_once(gateway, snapshot, attempt, prepared, format, body);
        let retried = with_retries(&walk, attempt, &mut failures, once).await?;
        let Some(((mut response, completion), quota)) = retried else {
            continue;
        };
        snapshot.health.record_success(&attempt.provider.id);
        // Said only when the tenant's allowance is what lowered the limit.
        let shortened = output_cap.filter(|_| ticket.reservation.output_shortened());
        stamp(response.headers_mut(), attempt, planned, index, shortened);
        said_rewritten(response.headers_mut(), &prepared.rewritten);
        return Ok(AttemptAnswer {
            response,
            completion,
            provider: attempt.provider.id.clone(),
            model: attempt.model.clone(),
            fallback: index,
            source: planned.source,
            quota,
            trace: None,
        });
    }
    Err(final_error(&failures, &planned.requested_model))
}

/// What every attempt of one request's walk shares: the gateway, the config it started with,
/// its plan and its admission.
#[derive(Clone, Copy)]
pub(super) struct Walk<'a, 'p> {
    pub gateway: &'a Arc<Gateway>,
    pub snapshot: &'a Active,
    pub planned: &'a Plan<'p>,
    pub ticket: &'a Ticket,
}

/// The provider key's quota held by an answered try, settled when the answer ends.
pub(super) type KeyQuota = Option<SettleOnDrop<ProviderTicket>>;

/// Tries one attempt as often as the rule's retry policy allows, for every endpoint (chat and
/// embeddings alike): the provider key's own quota is taken before each try and given back
/// when the try fails; a failure is recorded (metric, health, log) and pushed to `failures`,
/// and tried again after the backoff when the policy covers it. `Ok(None)`: the attempt is
/// spent, the caller falls back to the next. The caller records the provider healthy once
/// the answer is whole enough to relay (a body that breaks is not a healthy answer). An answer the gateway has no room to hold ends
/// the walk: that provider answered (and bills), another would find no room either.
pub(super) async fn with_retries<T, Try>(
    walk: &Walk<'_, '_>,
    attempt: &Attempt<'_>,
    failures: &mut Vec<Failure>,
    mut once: impl FnMut() -> Try,
) -> Result<Option<(T, KeyQuota)>, ApiError>
where
    Try: Future<Output = Result<T, Failure>>,
{
    let Walk {
        gateway,
        snapshot,
        planned,
        ticket,
    } = *walk;
    for try_number in 0..=planned.retry.attempts {
        let quota = match key_quota(gateway, attempt.provider, ticket).await {
            Ok(quota) => quota,
            Err(full) => {
                failures.push(full);
                return Ok(None);
            }
        };
        let failure = match once().await {
            Ok(answer) => return Ok(Some((answer, quota))),
            Err(failure) => failure,
        };
        if let Some(quota) = quota {
            quota.release_now().await;
        }
        if failure == Failure::NoRoom {
            return Err(no_room(attempt));
        }
        let again = try_again(gateway, snapshot, planned, attempt, &failure, try_number).await;
        failures.push(failure);
        if !again {
            break;
        }
    }
    Ok(None)
}

/// The answer to a request whose provider answered when the gateway had no room to hold the
/// answer: charged its reservation, not retried elsewhere.
pub(super) fn no_room(attempt: &Attempt<'_>) -> ApiError {
    ApiError {
        answered_by: Some(Box::new((
            attempt.provider.id.clone(),
            attempt.model.clone(),
        ))),
        ..ApiError::upstream(
            StatusCode::SERVICE_UNAVAILABLE,
            "gateway_busy",
            "the gateway holds its most of whole answers; try again shortly",
        )
    }
}

/// One try of one attempt: the call, and its answer read or relayed in the client's format
/// (or why it failed, for the attempt loop in [`serve`] to retry or fall back from).
async fn try_once(
    gateway: &Gateway,
    snapshot: &Active,
    attempt: &Attempt<'_>,
    prepared: &Prepared,
    format: Format,
    body: &Bytes,
) -> Result<(Response<ResponseBody>, oneshot::Receiver<Completion>), Failure> {
    let buffers = &gateway.answer_buffers;
    let provider = attempt.provider;
    let outcome = match provider.kind {
        ProviderKind::Mock => {
            // The mock reads the canonical request the OpenAI-format body was made from.
            let request = match serde_json::from_slice::<Map<String, Value>>(body) {
                Ok(request) => request,
                Err(_) => prepared.original.clone(),
            };
            let reply = mock::chat_completion(&request, &attempt.model);
            Outcome::Local {
                status: StatusCode::OK,
                content_type: reply.content_type,
                body: Bytes::from(reply.body),
            }
        }
        _ => {
            let model = provider.upstream_model(&attempt.model);
            let url = chat_url(provider, format, model, prepared.stream);
            let Some(url) = url else {
                return Err(Failure::Unsupported(provider.kind));
            };
            let (headers, model) = (&prepared.headers, &attempt.model);
            send_to_provider(gateway, snapshot, provider, model, &url, headers, body).await
        }
    };
    match outcome {
        Outcome::Relay(response) => {
            let (parts, incoming) = response.into_parts();
            let (status, headers) = (parts.status, &parts.headers);
            let relayed = upstream_body(incoming);
            answer(prepared, attempt, format, status, headers, relayed, buffers).await
        }
        Outcome::Local {
            status,
            content_type,
            body,
        } => {
            let mut headers = HeaderMap::new();
            headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
            let local = upstream_body(http_body_util::Full::new(body));
            answer(prepared, attempt, format, status, &headers, local, buffers).await
        }
        Outcome::Failed(failure) => Err(failure),
    }
}

/// The provider key's own quota for one try (`None`: the key has none of its own); a full one
/// is [`Failure::QuotaFull`], and the target is skipped without being called.
pub(super) async fn key_quota(
    gateway: &Arc<Gateway>,
    provider: &ProviderConfig,
    ticket: &Ticket,
) -> Result<Option<SettleOnDrop<ProviderTicket>>, Failure> {
    let Some(limits) = &provider.limits else {
        return Ok(None);
    };
    match gateway
        .meter
        .admit_provider(&provider.id, limits, ticket)
        .await
    {
        Ok(quota) => Ok(Some(SettleOnDrop::new(gateway, quota))),
        Err(_) => Err(Failure::QuotaFull),
    }
}

/// Records a failed try (the upstream error metric, the provider's health, a log line) and
/// says whether the rule's retry policy tries the same target again, after sleeping its
/// backoff.
pub(super) async fn try_again(
    gateway: &Gateway,
    snapshot: &Active,
    planned: &Plan<'_>,
    attempt: &Attempt<'_>,
    failure: &Failure,
    try_number: u32,
) -> bool {
    gateway
        .metrics
        .upstream_errors
        .get_or_create(&UpstreamErrorLabels {
            provider: attempt.provider.id.clone(),
            class: failure.class(),
        })
        .inc();
    let class = failure.retry_class();
    if class.is_some() {
        let _ = snapshot.health.record_failure(&attempt.provider.id);
    }
    // Request-controlled text (the model name) as escaped fields: a newline in it cannot
    // start a forged log line.
    tracing::info!(
        upstream = ?attempt.provider.id,
        model = ?attempt.model,
        attempt = try_number + 1,
        failure = ?failure.describe(),
        "attempt failed"
    );
    let retry = class.is_some_and(|class| planned.retry.on.contains(&class));
    if !retry || try_number >= planned.retry.attempts {
        return false;
    }
    let backoff = planned
        .retry
        .backoff_ms
        .saturating_mul(1 << try_number.min(10));
    tokio::time::sleep(Duration::from_millis(backoff)).await;
    true
}

/// Unix seconds: the `created` of answers the gateway writes or translates.
fn now() -> u64 {
    crate::metering::clock::now_ms() / 1000
}

fn total_deadline(attempt: &Attempt<'_>) -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_millis(attempt.provider.timeouts.total_ms)
}

/// Turns an upstream answer into the client's response: a stream re-framed as it arrives, or a
/// whole answer read (bounded, within the provider's total timeout) and translated. A body
/// that cannot be read is a failure of the attempt (nothing has reached the client yet).
async fn answer(
    prepared: &Prepared,
    attempt: &Attempt<'_>,
    format: Format,
    status: StatusCode,
    headers: &HeaderMap,
    body: UpstreamBody,
    buffers: &AnswerBuffers,
) -> Result<(Response<ResponseBody>, oneshot::Receiver<Completion>), Failure> {
    let client = prepared.client;
    // Server-sent events for every format but Bedrock's (AWS binary event-stream).
    let is_stream = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with(dialect(format).stream_media_type()));
    let (meter, completion) = Reporter::new(status.as_u16());
    let deadline = total_deadline(attempt);
    if status.is_success() && prepared.stream && !is_stream {
        // A stream was asked for and something else came (an HTML error page, a proxy's
        // answer): the provider failed, and nothing has reached the client yet.
        let what = headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("no content type");
        return Err(Failure::BadAnswer(format!(
            "a stream was asked for and the provider answered {what:?}"
        )));
    }
    if status.is_success() && (prepared.stream || is_stream) {
        let context = Context {
            model: attempt.model.clone(),
            created: now(),
            client_wants_usage: prepared.client_wants_usage,
            items: prepared.items.clone(),
        };
        let (framing, reframe) = (dialect(format).framing(), reframer(format, client, context));
        let body = ResponseBody::stream(body, framing, reframe, deadline, meter);
        let mut response = Response::new(body);
        *response.status_mut() = status;
        response.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream; charset=utf-8"),
        );
        response
            .headers_mut()
            .insert("cache-control", HeaderValue::from_static("no-cache"));
        copy_provider_headers(headers, response.headers_mut(), paid_by_platform(attempt));
        return Ok((response, completion));
    }
    let limit = if status.is_success() {
        MAX_ANSWER_BYTES
    } else {
        64 * 1024
    };
    let (bytes, room) = tokio::time::timeout_at(deadline, read_bounded(body, limit, Some(buffers)))
        .await
        .map_err(|_| Failure::Timeout)?
        .map_err(|error| match error {
            ReadError::NoRoom => Failure::NoRoom,
            ReadError::Broken | ReadError::TooLarge => Failure::Connect,
        })?;
    let (out, meter) = if status.is_success() {
        match crate::formats::translate_response(format, client, &bytes, &attempt.model, now()) {
            Ok((out, usage)) => {
                if client == Format::Responses {
                    responses::keep_output(&prepared.items, &out);
                }
                let mut meter = meter;
                meter.set_usage(usage);
                if crate::telemetry::recording() {
                    meter
                        .set_finish_reason(crate::formats::finish_reason_of_answer(format, &bytes));
                }
                (Bytes::from(out), meter)
            }
            Err(error) => return Err(Failure::BadAnswer(error.to_string())),
        }
    } else if format == client {
        // The provider's own refusal, already in the client's format.
        (bytes, meter)
    } else {
        let message = crate::formats::error_message(&bytes)
            .unwrap_or_else(|| format!("the provider refused the request ({status})"));
        let body = crate::formats::error_body(
            client,
            status.as_u16(),
            "invalid_request_error",
            "upstream_error",
            &message,
        );
        (Bytes::from(body), meter)
    };
    // The answer keeps its room until the client has read it (or left).
    let out = hold(out, room);
    let mut response = Response::new(ResponseBody::metered(out, meter));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    copy_provider_headers(headers, response.headers_mut(), paid_by_platform(attempt));
    Ok((response, completion))
}

/// Whether the platform's key pays for an attempt (cli endpoints and tenants' own keys do not).
fn paid_by_platform(attempt: &Attempt<'_>) -> bool {
    attempt.provider.scope == Scope::Platform
}

/// The error for a plan that found no answer: 404 when every provider said it does not know the
/// model; 400 when no target could express the request; otherwise the most telling failure (a
/// real upstream failure over "not supported").
pub(super) fn final_error(failures: &[Failure], model: &str) -> ApiError {
    if !failures.is_empty() && failures.iter().all(|f| *f == Failure::ModelNotFound) {
        return ApiError::from(crate::routing::plan::RouteError::UnknownModel(
            model.to_owned(),
        ));
    }
    let passive = |f: &Failure| {
        matches!(
            f,
            Failure::Unsupported(_) | Failure::ModelNotFound | Failure::Inexpressible(_)
        )
    };
    if failures.iter().all(passive)
        && let Some(Failure::Inexpressible(message)) = failures
            .iter()
            .find(|f| matches!(f, Failure::Inexpressible(_)))
    {
        return ApiError::bad_request(message.clone());
    }
    let telling = failures
        .iter()
        .rev()
        .find(|f| !passive(f))
        .or(failures.last());
    let message = |what: &str| format!("every provider for {model:?} failed; the last one {what}");
    match telling {
        Some(Failure::Timeout) => ApiError::upstream(
            StatusCode::GATEWAY_TIMEOUT,
            "upstream_timeout",
            message("timed out"),
        ),
        // The provider's own limit is passed on as a 429 with its retry-after (DESIGN §2).
        Some(Failure::QuotaFull) => ApiError {
            retry_after: Some(1),
            ..ApiError::upstream(
                StatusCode::TOO_MANY_REQUESTS,
                "provider_quota_exceeded",
                message("is at its key's own per-minute limit"),
            )
        },
        Some(Failure::RateLimited(retry_after)) => ApiError {
            retry_after: *retry_after,
            ..ApiError::upstream(
                StatusCode::TOO_MANY_REQUESTS,
                "upstream_rate_limited",
                message("was rate limited (429)"),
            )
        },
        Some(Failure::ServerError(_)) => ApiError::upstream(
            StatusCode::SERVICE_UNAVAILABLE,
            "upstream_unavailable",
            message("answered 5xx"),
        ),
        Some(other) => ApiError::upstream(
            StatusCode::BAD_GATEWAY,
            "upstream_error",
            message(&other.describe()),
        ),
        None => ApiError::upstream(
            StatusCode::BAD_GATEWAY,
            "upstream_error",
            "no provider could be tried",
        ),
    }
}

/// Sends a body in the provider's own format to `url` on one of its endpoints: with its key
/// (decrypted once per config), the client's headers its format reads, and through the
/// egress-guarded client when the provider is a tenant's own. `model` is the model as the
/// catalog names it (its format and beta policy are looked up by it), not the name the
/// provider calls it by.
pub async fn send_to_provider(
    gateway: &Gateway,
    snapshot: &Active,
    provider: &ProviderConfig,
    model: &str,
    url: &str,
    headers: &ClientHeaders,
    body: &Bytes,
) -> Outcome {
    let credential = match &provider.credential {
        None => None,
        Some(row_id) => match snapshot.credential(row_id) {
            Some(credential) => Some(credential),
            None => {
                tracing::error!(provider = ?provider.id, "the provider's key could not be decrypted");
                return Outcome::Failed(Failure::Auth(StatusCode::INTERNAL_SERVER_ERROR));
            }
        },
    };
    let format = provider.kind.format_of(model);
    let outgoing = Outgoing {
        auth: upstream::key_auth(provider.kind, format),
        region: provider.cloud.region.as_deref(),
        kind: provider.kind,
        url,
        credential,
        body: body.clone(),
        first_byte: Duration::from_millis(provider.timeouts.first_byte_ms),
        forwarded: headers.for_upstream(format, BetaPolicy::for_provider(provider, model)),
        traces: gateway.settings.traces.as_ref(),
    };
    if provider.scope == Scope::Platform {
        return send_signed(gateway, &gateway.client, provider, outgoing).await;
    }
    // Tenant endpoints (and their token endpoints) go through the client whose resolver
    // enforces the allow-list.
    match snapshot.guarded.get(&provider.allowed_endpoints) {
        Some(client) => send_signed(gateway, client, provider, outgoing).await,
        None => Outcome::Failed(Failure::Connect),
    }
}
