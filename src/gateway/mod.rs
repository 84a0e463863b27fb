//! The data plane: a hyper server that authenticates tenants, plans each request with the pure
//! routing decision, calls providers with retries and fallback before the first byte, and
//! relays answers as they arrive. Config comes from a rendered config directory, hot-reloaded.

pub mod access_log;
pub mod admin;
pub mod answer_buffers;
pub mod body;
pub mod body_shape;
pub mod chat;
pub mod completion;
pub mod connection;
pub mod cors;
pub mod count_tokens;
pub mod egress;
pub mod embeddings;
pub mod error;
pub mod forwarded;
pub mod gemini;
pub mod health;
pub mod limits;
pub mod messages;
pub mod metered;
pub mod models;
pub mod provider_urls;
pub mod reload;
pub mod response_items;
pub mod responses;
pub mod serve;
pub mod server;
pub mod stamp;
pub mod tokens;
pub mod upstream;

use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwapOption;
use zeroize::Zeroizing;

use crate::config::load::Snapshot;
use crate::crypto::{Credential, keystore};
use upstream::HttpClient;

/// Tunables of the request path.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Largest request body accepted (413 beyond).
    pub max_body_bytes: usize,
    /// How long a client may take to send its request headers (the connection is closed
    /// with 408 beyond), and how long a connection may sit with no request in flight (its
    /// first byte included) before it is closed, so idle connections cannot pile up.
    pub header_read_timeout: std::time::Duration,
    /// How long a client may take to send its body (408 beyond), against slow-body attacks.
    pub body_read_timeout: std::time::Duration,
    /// Most connections the API listener holds at once (more are closed at once and counted
    /// in `dgidgi_connections_refused_total`); the admin listener has its own.
    pub max_connections: usize,
    /// Limits, budgets and the ledger.
    pub metering: crate::metering::MeterOptions,
    /// Bearer token of the admin `/usage` endpoint (the endpoint answers 404 without one).
    pub admin_token: Option<AdminToken>,
    /// The browser origins allowed to call the API (none by default).
    pub cors: cors::CorsPolicy,
    /// The request log's format.
    pub access_log: access_log::AccessLogFormat,
    /// Where the request log goes.
    pub access_log_sink: access_log::AccessLogSink,
    /// Where the pod's cloud identities and token authorities are (Entra's authority, IRSA's,
    /// EKS Pod Identity's, GKE's and Azure Workload Identity's variables).
    pub cloud_environment: tokens::CloudEnvironment,
    /// Where traces go (`None`: none are made).
    pub traces: Option<crate::telemetry::Traces>,
}

/// The admin token: compared in constant time, wiped on drop, never printed.
#[derive(Clone)]
pub struct AdminToken(Zeroizing<String>);

impl AdminToken {
    /// Wraps a token (surrounding whitespace, like a file's trailing newline, is dropped).
    pub fn new(token: &str) -> Option<Self> {
        let token = token.trim();
        (!token.is_empty()).then(|| Self(Zeroizing::new(token.to_owned())))
    }

    /// Whether `presented` is this token.
    pub fn matches(&self, presented: &[u8]) -> bool {
        use subtle::ConstantTimeEq as _;
        self.0.as_bytes().ct_eq(presented).into()
    }
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(<redacted>)")
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            max_body_bytes: 10 * 1024 * 1024,
            header_read_timeout: std::time::Duration::from_secs(30),
            body_read_timeout: std::time::Duration::from_secs(30),
            max_connections: 10_000,
            metering: crate::metering::MeterOptions::default(),
            admin_token: None,
            cors: cors::CorsPolicy::default(),
            // The binary writes it (`--access-log`); a gateway embedded elsewhere asks for it.
            access_log: access_log::AccessLogFormat::Off,
            access_log_sink: access_log::AccessLogSink::default(),
            cloud_environment: tokens::CloudEnvironment::default(),
            traces: None,
        }
    }
}

/// A loaded config with what serving it needs: the guarded clients of its tenant endpoints.
pub struct Active {
    /// The config.
    pub snapshot: Snapshot,
    /// One egress-guarded client per tenant allow-list.
    pub guarded: egress::GuardedClients,
    /// Passive health of the providers.
    pub health: health::HealthBook,
    /// Provider credentials, opened the first time a request needs each one and kept (wiped
    /// on drop) for the life of this config, so AES-GCM is not on every request's path.
    /// Looked up on every request: hashbrown's map (foldhash; see `config::load::Snapshot`).
    keys: hashbrown::HashMap<String, OnceLock<Option<Credential>>>,
}

impl Active {
    /// Builds what serving a snapshot needs.
    pub fn new(snapshot: Snapshot) -> Self {
        let guarded = egress::GuardedClients::for_snapshot(&snapshot);
        let health = health::HealthBook::for_config(&snapshot.config);
        let keys = snapshot
            .key_store
            .rows
            .iter()
            .map(|row| (row.id.clone(), OnceLock::new()))
            .collect();
        Self {
            snapshot,
            guarded,
            health,
            keys,
        }
    }

    /// The opened credential of a key store row, or `None` if the row is missing or does not
    /// open.
    pub fn credential(&self, row_id: &str) -> Option<&Credential> {
        let cell = self.keys.get(row_id)?;
        cell.get_or_init(|| {
            let row = self.snapshot.key_store.get(row_id)?;
            keystore::open(&self.snapshot.key_ring, row.into(), &row.encrypted_value).ok()
        })
        .as_ref()
    }
}

impl std::ops::Deref for Active {
    type Target = Snapshot;
    fn deref(&self) -> &Snapshot {
        &self.snapshot
    }
}

/// Everything a request handler needs, shared by all connections.
pub struct Gateway {
    /// The config in force; swapped atomically on reload, so a request keeps the snapshot it
    /// started with.
    pub snapshot: ArcSwapOption<Active>,
    /// The pooled upstream client.
    pub client: HttpClient,
    /// Tunables.
    pub settings: Settings,
    /// Set when shutdown starts: `/readyz` answers 503 from then on.
    pub draining: std::sync::atomic::AtomicBool,
    /// Prometheus metrics.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Limits, budgets and the ledger.
    pub meter: crate::metering::Meter,
    /// Room for whole answers held at once, across every request.
    pub answer_buffers: answer_buffers::AnswerBuffers,
    /// The request log.
    pub access_log: access_log::AccessLog,
    /// Assistant messages the Responses front door returned, for `item_reference`s.
    pub response_items: response_items::ResponseItems,
    /// Bearer tokens exchanged for the providers that take no static key.
    pub tokens: tokens::Tokens,
}

impl Gateway {
    /// A gateway with no config yet (it answers 503 until one is loaded). Fails when the
    /// ledger under the state directory cannot be opened or the Redis URL is invalid.
    pub fn new(settings: Settings) -> Result<Arc<Self>, crate::metering::meter::MeterError> {
        let metrics = Arc::new(crate::metrics::Metrics::default());
        let meter = crate::metering::Meter::open(&settings.metering, metrics.clone())?;
        let access_log = access_log::AccessLog::new(
            settings.access_log,
            settings.access_log_sink.clone(),
            metrics.access_log_dropped.clone(),
        );
        let tokens = tokens::Tokens::new(settings.cloud_environment.clone());
        Ok(Arc::new(Self {
            snapshot: ArcSwapOption::empty(),
            client: upstream::http_client(),
            settings,
            draining: std::sync::atomic::AtomicBool::new(false),
            metrics,
            meter,
            answer_buffers: answer_buffers::AnswerBuffers::new(answer_buffers::DEFAULT_TOTAL_BYTES),
            access_log,
            response_items: response_items::ResponseItems::default(),
            tokens,
        }))
    }

    /// The config in force, for a request to keep while it runs (503 `not_ready` before the
    /// first one loaded).
    pub fn active(&self) -> Result<Arc<Active>, error::ApiError> {
        self.snapshot
            .load_full()
            .ok_or_else(error::ApiError::not_ready)
    }

    /// Swaps in a new config.
    /// Returns the config it replaced, for the caller to drop where a large one's teardown
    /// does not hold up requests.
    pub fn install(&self, snapshot: Snapshot) -> Option<Arc<Active>> {
        // Credentials fetched for providers the new config no longer has are dropped.
        let providers = snapshot
            .config
            .providers
            .iter()
            .map(|p| p.id.as_str())
            .collect();
        self.tokens.retain(&providers);
        let previous = self.snapshot.swap(Some(Arc::new(Active::new(snapshot))));
        self.metrics.config_loaded.set(1);
        previous
    }
}
