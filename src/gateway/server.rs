//! Listeners: the API listener (`/v1/...`) and the admin listener (`/healthz`, `/readyz`),
//! HTTP/1.1 and HTTP/2 on each, with graceful shutdown that stops accepting and lets open
//! requests and streams finish within a deadline.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::Gateway;
use super::body::ResponseBody;
use super::connection::Tracked;
use super::error::ApiError;
use super::{access_log, chat, count_tokens, embeddings, gemini, messages, models, responses};
use crate::formats::Format;

/// Largest number of request headers accepted (431 beyond).
const MAX_HEADERS: usize = 100;

/// A JSON response.
pub fn json_response(status: StatusCode, body: impl Into<bytes::Bytes>) -> Response<ResponseBody> {
    let mut response = Response::new(ResponseBody::full(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// An error in the OpenAI format, with its `retry-after`.
pub fn error_response(error: &ApiError) -> Response<ResponseBody> {
    error_response_in(error, Format::OpenAi)
}

/// An error in the format of the front door it answers (Anthropic's for `/v1/messages`), with
/// its `retry-after` and `x-ratelimit-*` headers.
pub fn error_response_in(error: &ApiError, format: Format) -> Response<ResponseBody> {
    let mut response = json_response(error.status, error.body_in(format));
    error.write_headers(response.headers_mut());
    response
}

/// The API's paths and the methods each takes (the `Allow` of a 405 or a preflight).
fn allowed_methods(path: &str) -> Option<&'static str> {
    match path {
        "/v1/chat/completions"
        | "/v1/messages"
        | "/v1/messages/count_tokens"
        | "/v1/embeddings"
        | "/v1/responses" => Some("POST"),
        "/v1/models" | "/v1beta/models" => Some("GET"),
        _ if gemini::model_method(path).is_some() => Some("POST"),
        _ if path.starts_with("/v1/models/") || path.starts_with("/v1beta/models/") => Some("GET"),
        _ if path.ends_with("/cancel") && path.starts_with("/v1/responses/") => Some("POST"),
        _ if path.starts_with("/v1/responses/") => Some("GET, DELETE"),
        _ => None,
    }
}

/// The format a caller speaks, for its errors and model lists: the front door's for the
/// Messages, Responses and Gemini APIs and chat completions; on the model list shared by
/// several (`/v1/models`), Google's when the key comes Google's way (`x-goog-api-key` or
/// `?key=`: `google-genai` on `v1`), Anthropic's when the request carries `anthropic-version`
/// (every Anthropic SDK sends it), otherwise OpenAI's.
fn caller_format(path: &str, query: Option<&str>, headers: &hyper::HeaderMap) -> Format {
    let google_key = || {
        headers.contains_key(chat::GOOGLE_KEY_HEADER)
            || query.is_some_and(|query| {
                url::form_urlencoded::parse(query.as_bytes()).any(|(name, _)| name == "key")
            })
    };
    if path.starts_with("/v1/messages") {
        Format::Anthropic
    } else if path.starts_with("/v1/responses") {
        Format::Responses
    } else if gemini::is_gemini_path(path) || (path.starts_with("/v1/models") && google_key()) {
        Format::Gemini
    } else if path == "/v1/chat/completions" || !headers.contains_key("anthropic-version") {
        Format::OpenAi
    } else {
        Format::Anthropic
    }
}

/// Routes one API request.
pub async fn api(
    gateway: Arc<Gateway>,
    mut request: Request<Incoming>,
) -> Result<Response<ResponseBody>, Infallible> {
    // Counted on arrival, so every request counts, errors included.
    gateway.metrics.received.inc();
    let path = request.uri().path().to_owned();
    let format = caller_format(&path, request.uri().query(), request.headers());
    if format == Format::Gemini {
        gemini::key_from_query(&mut request);
    }
    let origin = request.headers().get(hyper::header::ORIGIN).cloned();
    let log = gateway.clone();
    // Traced requests take a path of their own (boxed): the handler's future is the request's
    // largest, and the untraced path awaits it where it is made, with no layer to copy it.
    if let Some(traces) = &gateway.settings.traces {
        let trace = crate::telemetry::http::server_span(traces, &request, &path);
        let traced = Box::pin(traced_route(
            gateway,
            request,
            path.clone(),
            format,
            trace.clone(),
        ));
        let (result, entry) = traced.await;
        let response = finish_response(&log, result, entry, origin.as_ref(), format);
        crate::telemetry::http::end_server_span(&trace, response.status().as_u16());
        return Ok(response);
    }
    // With the request log off, no entry is made: notes outside a scope do nothing.
    let (result, entry) = if log.access_log.is_on() {
        let entry = access_log::Entry::arrived(request.method().as_str(), &path);
        access_log::scope(entry, route(gateway, request, &path, format)).await
    } else {
        (route(gateway, request, &path, format).await, None)
    };
    Ok(finish_response(
        &log,
        result,
        entry,
        origin.as_ref(),
        format,
    ))
}

/// A traced request's handling, in its SERVER span's context (`trace`).
async fn traced_route(
    gateway: Arc<Gateway>,
    request: Request<Incoming>,
    path: String,
    format: Format,
    trace: opentelemetry::Context,
) -> (
    Result<Response<ResponseBody>, ApiError>,
    Option<access_log::Entry>,
) {
    use opentelemetry::context::FutureExt as _;
    let log = gateway.clone();
    if log.access_log.is_on() {
        let mut entry = access_log::Entry::arrived(request.method().as_str(), &path);
        entry.trace_id = Some(crate::telemetry::http::trace_id(&trace));
        access_log::scope(
            entry,
            route(gateway, request, &path, format).with_context(trace),
        )
        .await
    } else {
        (
            route(gateway, request, &path, format)
                .with_context(trace)
                .await,
            None,
        )
    }
}

/// The response of a handled request: its error in the caller's format, CORS headers, and its
/// request log line unless its settlement writes it.
fn finish_response(
    log: &Gateway,
    result: Result<Response<ResponseBody>, ApiError>,
    entry: Option<access_log::Entry>,
    origin: Option<&hyper::header::HeaderValue>,
    format: Format,
) -> Response<ResponseBody> {
    let mut response = result.unwrap_or_else(|error| error_response_in(&error, format));
    log.settings.cors.decorate(origin, response.headers_mut());
    // A served request's line is written by its settlement, when its body ends.
    if let Some(mut entry) = entry {
        entry.answered(response.status().as_u16());
        log.access_log.write(&entry);
    }
    response
}

/// Sends a request to its handler.
async fn route(
    gateway: Arc<Gateway>,
    request: Request<Incoming>,
    path: &str,
    format: Format,
) -> Result<Response<ResponseBody>, ApiError> {
    // Each front door's future is boxed: they are the request's largest (the whole attempt
    // loop), and unboxed, every layer above (the request log's scope, the connection) would
    // copy the largest of them on every request, whichever door it came by.
    match (request.method(), path) {
        (&Method::POST, "/v1/chat/completions") => Box::pin(chat::handle(gateway, request)).await,
        (&Method::POST, "/v1/messages") => Box::pin(messages::handle(gateway, request)).await,
        (&Method::POST, "/v1/messages/count_tokens") => {
            Box::pin(count_tokens::handle(gateway, request)).await
        }
        (&Method::POST, "/v1/embeddings") => Box::pin(embeddings::handle(gateway, request)).await,
        (&Method::POST, "/v1/responses") => Box::pin(responses::handle(gateway, request)).await,
        (&Method::GET | &Method::DELETE, path) if path.starts_with("/v1/responses/") => {
            responses::stored(&gateway, &request)
        }
        (&Method::POST, path)
            if path.starts_with("/v1/responses/") && path.ends_with("/cancel") =>
        {
            responses::stored(&gateway, &request)
        }
        (&Method::POST, path) if gemini::model_method(path).is_some() => {
            Box::pin(gemini::handle(gateway, request, path)).await
        }
        (&Method::GET, "/v1/models" | "/v1beta/models") => list_models(&gateway, &request, format),
        (&Method::GET, path) if path.starts_with("/v1/models/") => {
            retrieve_model(&gateway, &request, &path["/v1/models/".len()..], format)
        }
        (&Method::GET, path) if path.starts_with("/v1beta/models/") => {
            retrieve_model(&gateway, &request, &path["/v1beta/models/".len()..], format)
        }
        (&Method::OPTIONS, path) => options(&gateway.settings.cors, request.headers(), path),
        (method, path) => Err(match allowed_methods(path) {
            Some(allowed) => ApiError::method_not_allowed(method.as_str(), path, allowed),
            None => ApiError::not_found(path),
        }),
    }
}

/// `OPTIONS`: a CORS preflight (204 with the CORS headers when the platform allows the origin,
/// 403 otherwise), or a plain question about a path's methods (204 with `Allow`).
fn options(
    cors: &super::cors::CorsPolicy,
    headers: &hyper::HeaderMap,
    path: &str,
) -> Result<Response<ResponseBody>, ApiError> {
    let allowed = allowed_methods(path).ok_or_else(|| ApiError::not_found(path))?;
    let mut response = Response::new(ResponseBody::full(bytes::Bytes::new()));
    *response.status_mut() = StatusCode::NO_CONTENT;
    if !headers.contains_key(hyper::header::ORIGIN) {
        response
            .headers_mut()
            .insert(hyper::header::ALLOW, HeaderValue::from_static(allowed));
        return Ok(response);
    }
    match cors.preflight(headers, allowed) {
        super::cors::Preflight::Allowed(cors_headers) => {
            response.headers_mut().extend(cors_headers);
            Ok(response)
        }
        super::cors::Preflight::Refused(why) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "permission_error",
            "cors_refused",
            why,
        )),
    }
}

fn list_models(
    gateway: &Gateway,
    request: &Request<Incoming>,
    format: Format,
) -> Result<Response<ResponseBody>, ApiError> {
    let page = models::Page::from_query(request.uri().query()).map_err(ApiError::bad_request)?;
    for_tenant(gateway, request, |snapshot, tenant| {
        Ok(json_response(
            StatusCode::OK,
            models::list(snapshot, tenant, format, &page),
        ))
    })
}

/// `GET /v1/models/{id}`: one model the tenant may use (404 for any other).
fn retrieve_model(
    gateway: &Gateway,
    request: &Request<Incoming>,
    id: &str,
    format: Format,
) -> Result<Response<ResponseBody>, ApiError> {
    // Model ids may hold a slash (`provider/model`) and arrive percent-encoded by some SDKs.
    let id = models::id_in_path(id);
    for_tenant(gateway, request, |snapshot, tenant| {
        models::retrieve(snapshot, tenant, &id, format)
            .map(|body| json_response(StatusCode::OK, body))
            .ok_or_else(|| {
                ApiError::from(crate::routing::plan::RouteError::UnknownModel(
                    id.clone().into_owned(),
                ))
            })
    })
}

/// Answers a request of an authenticated tenant on the config in force.
fn for_tenant(
    gateway: &Gateway,
    request: &Request<Incoming>,
    answer: impl FnOnce(
        &crate::config::load::Snapshot,
        &crate::config::TenantConfig,
    ) -> Result<Response<ResponseBody>, ApiError>,
) -> Result<Response<ResponseBody>, ApiError> {
    let snapshot = gateway.active()?;
    let tenant = chat::authenticate(&snapshot, request.headers())?;
    access_log::note(|entry| entry.tenant = Some(tenant.id.clone()));
    answer(&snapshot, tenant)
}

/// Routes one admin request.
pub async fn admin(
    gateway: Arc<Gateway>,
    request: Request<Incoming>,
) -> Result<Response<ResponseBody>, Infallible> {
    let response = match request.uri().path() {
        "/healthz" => json_response(StatusCode::OK, r#"{"status":"ok"}"#),
        "/readyz" if gateway.draining.load(std::sync::atomic::Ordering::Relaxed) => {
            json_response(StatusCode::SERVICE_UNAVAILABLE, r#"{"status":"draining"}"#)
        }
        "/readyz" if !gateway.meter.ready() => json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            r#"{"status":"waiting for redis"}"#,
        ),
        "/readyz" if gateway.snapshot.load().is_some() => {
            json_response(StatusCode::OK, r#"{"status":"ready"}"#)
        }
        "/readyz" => json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            r#"{"status":"no config loaded"}"#,
        ),
        "/usage" => super::admin::usage(&gateway, &request).await,
        "/metrics" => {
            let mut response = Response::new(ResponseBody::full(gateway.metrics.encode()));
            response.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            response
        }
        path => error_response(&ApiError::not_found(path)),
    };
    Ok(response)
}

/// Which handler a listener runs.
#[derive(Clone, Copy, Debug)]
pub enum Role {
    /// The API.
    Api,
    /// Health and readiness.
    Admin,
}

impl Role {
    /// The `listener` label of its metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Api => "api",
            Self::Admin => "admin",
        }
    }
}

/// Most connections the admin listener holds at once: probes and scrapes need few, and a
/// flooded API listener cannot take these.
pub const ADMIN_MAX_CONNECTIONS: usize = 256;

/// Serves `listener` until `shutdown` turns true, then drains open connections for up to
/// `drain`. At most `max_connections` are held at once (more are accepted and closed at once,
/// and counted), each must send its first byte within the header timeout, and one idle that
/// long is closed (see [`super::connection`]).
pub async fn serve(
    listener: TcpListener,
    gateway: Arc<Gateway>,
    role: Role,
    mut shutdown: watch::Receiver<bool>,
    drain: Duration,
) {
    let stop = CancellationToken::new();
    let streams = StreamTasks::default();
    let idle = gateway.settings.header_read_timeout;
    let max_connections = match role {
        Role::Api => gateway.settings.max_connections,
        Role::Admin => ADMIN_MAX_CONNECTIONS,
    };
    let permits = Arc::new(Semaphore::new(max_connections.max(1)));
    // Aborted at the drain deadline: each connection still open is then dropped, which cuts its
    // socket and ends its bodies, so their requests settle as cut before the process exits.
    let mut connections = JoinSet::new();
    let mut builder = auto::Builder::new(streams.clone());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(idle)
        .max_headers(MAX_HEADERS)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        // A peer that stopped answering is found and closed even while a stream is open.
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(20));
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(pair) => pair,
                    Err(error) => {
                        tracing::warn!("accept failed: {error}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Ok(permit) = permits.clone().try_acquire_owned() else {
                    // Full: closed at once rather than held, so file descriptors stay for the
                    // connections in use (and the other listener).
                    gateway.metrics.connections_refused(role.as_str());
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let gateway = gateway.clone();
                let builder = builder.clone();
                let stop = stop.clone();
                connections.spawn(async move {
                    let _permit = permit;
                    if !super::connection::first_byte(&stream, idle, &stop).await {
                        return;
                    }
                    let activity = super::connection::Activity::new();
                    let tracker = activity.clone();
                    let service = service_fn(move |request| {
                        let gateway = gateway.clone();
                        let in_flight = tracker.started();
                        async move {
                            let response = match role {
                                Role::Api => api(gateway, request).await,
                                Role::Admin => admin(gateway, request).await,
                            }?;
                            Ok::<_, Infallible>(response.map(|body| Tracked::new(body, in_flight)))
                        }
                    });
                    let connection =
                        builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                    let served = super::connection::drive(
                        connection,
                        |connection| connection.graceful_shutdown(),
                        &activity,
                        idle,
                        &stop,
                    );
                    if let Err(error) = served.await {
                        tracing::debug!(%peer, "connection ended: {error}");
                    }
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {
                // A connection ended; its slot in the set is reaped.
            }
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    break;
                }
            }
        }
    }
    drop(listener);
    stop.cancel();
    let drained = async { while connections.join_next().await.is_some() {} };
    tokio::select! {
        () = drained => tracing::info!(?role, "drained"),
        () = tokio::time::sleep(drain) => {
            tracing::warn!(?role, "drain deadline passed; closing open connections");
            // Aborted and awaited: by the time this returns, each cut request has handed its
            // settlement to the meter, which `Running::shutdown` then waits for.
            streams.cut.cancel();
            connections.shutdown().await;
            streams.tasks.close();
            streams.tasks.wait().await;
        }
    }
}

/// Runs the request handlers of HTTP/2 connections (hyper gives each stream a task of its
/// own, outside the connection's), so the drain deadline can cut them like HTTP/1 requests and
/// wait until each has handed its settlement to the meter.
#[derive(Clone, Default)]
struct StreamTasks {
    tasks: TaskTracker,
    cut: CancellationToken,
}

impl<F> hyper::rt::Executor<F> for StreamTasks
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, task: F) {
        let cut = self.cut.clone();
        self.tasks.spawn(async move {
            tokio::select! {
                biased;
                _ = task => {}
                () = cut.cancelled() => {}
            }
        });
    }
}

/// Binds an address, naming it in the error.
pub async fn bind(address: SocketAddr) -> anyhow::Result<TcpListener> {
    use anyhow::Context as _;
    TcpListener::bind(address)
        .await
        .with_context(|| format!("binding {address}"))
}

/// Where a started gateway listens, and how to stop it.
pub struct Running {
    /// The API listener's address.
    pub api: SocketAddr,
    /// The admin listener's address.
    pub admin: SocketAddr,
    /// The shared state (config in force, meter, metrics).
    pub gateway: Arc<Gateway>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    unready_delay: Duration,
}

impl Running {
    /// The trace pipeline, for the caller to flush once the gateway has stopped.
    pub fn traces(&self) -> Option<crate::telemetry::Traces> {
        self.gateway.settings.traces.clone()
    }

    /// Reports not-ready (so load balancers stop sending), waits `unready_delay`, then stops
    /// accepting, drains open requests and streams, and waits for both listeners.
    pub async fn shutdown(self) {
        self.gateway
            .draining
            .store(true, std::sync::atomic::Ordering::Relaxed);
        if !self.unready_delay.is_zero() {
            tracing::info!(
                "reporting not ready for {:?} before closing the listeners",
                self.unready_delay
            );
            tokio::time::sleep(self.unready_delay).await;
        }
        let _ = self.shutdown.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
        // Settlements of the drained requests reach Redis and the ledger before the process
        // exits.
        self.gateway.meter.stop(crate::metering::STOP_GRACE).await;
        // Their request log lines too (the settlements write the served requests' lines).
        let gateway = self.gateway.clone();
        let _ = tokio::task::spawn_blocking(move || gateway.access_log.close()).await;
    }
}

/// What `start` needs.
pub struct StartOptions {
    /// The rendered config directory.
    pub config_dir: std::path::PathBuf,
    /// API address (port 0: any free port).
    pub listen: SocketAddr,
    /// Admin address.
    pub admin_listen: SocketAddr,
    /// Request-path tunables.
    pub settings: super::Settings,
    /// How often the config directory is checked for changes.
    pub reload_interval: Duration,
    /// How long open requests may run on after shutdown starts.
    pub drain: Duration,
    /// How long `/readyz` answers 503 before the listeners close, so a Service's endpoints
    /// drop this replica before it stops accepting.
    pub unready_delay: Duration,
}

/// Loads the config (a failure leaves the gateway not ready, answering 503, until a good one
/// appears), binds both listeners and starts serving and watching.
pub async fn start(options: StartOptions) -> anyhow::Result<Running> {
    let gateway = Gateway::new(options.settings)?;
    if let Err(error) = super::reload::load_now(&gateway, &options.config_dir) {
        tracing::warn!(
            error = ?format!("{error:#}"),
            "no usable config yet, not ready until one appears"
        );
        gateway.metrics.reload(false);
    }
    // The shared counters connect before the first request: briefly here (a replica that
    // starts with Redis up decides its first requests through it), then in the background
    // until Redis answers, `/readyz` answering 503 meanwhile.
    let warm = tokio::spawn({
        let gateway = gateway.clone();
        async move {
            gateway.meter.warm_up().await;
            gateway.meter.heartbeats().await;
        }
    });
    let _ = tokio::time::timeout(REDIS_WARM_UP, async {
        while !gateway.meter.ready() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let api_listener = bind(options.listen).await?;
    let admin_listener = bind(options.admin_listen).await?;
    let api = api_listener.local_addr()?;
    let admin = admin_listener.local_addr()?;
    let (shutdown, receiver) = watch::channel(false);
    let watcher = tokio::spawn(super::reload::watch(
        gateway.clone(),
        options.config_dir.clone(),
        options.reload_interval,
    ));
    let sweeper = tokio::spawn(sweep_counters(gateway.clone()));
    let tasks = vec![
        tokio::spawn(serve(
            api_listener,
            gateway.clone(),
            Role::Api,
            receiver.clone(),
            options.drain,
        )),
        tokio::spawn(serve(
            admin_listener,
            gateway.clone(),
            Role::Admin,
            receiver.clone(),
            options.drain,
        )),
        tokio::spawn(async move {
            let mut receiver = receiver;
            let _ = receiver.wait_for(|stop| *stop).await;
            watcher.abort();
            sweeper.abort();
            warm.abort();
        }),
    ];
    tracing::info!(%api, %admin, "gateway listening");
    Ok(Running {
        api,
        admin,
        gateway,
        shutdown,
        tasks,
        unready_delay: options.unready_delay,
    })
}

/// How long `start` waits for Redis before it binds the listeners anyway (not ready until it
/// answers).
const REDIS_WARM_UP: Duration = Duration::from_secs(2);

/// Drops expired embedded counters every minute, so memory follows live tenants.
async fn sweep_counters(gateway: Arc<Gateway>) {
    let mut ticker = tokio::time::interval(Duration::from_secs(60));
    loop {
        ticker.tick().await;
        gateway.meter.sweep();
    }
}

/// Resolves when the process is asked to stop (SIGTERM or Ctrl-C).
pub async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
