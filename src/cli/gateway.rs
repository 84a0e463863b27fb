//! `dgidgi gateway`: serve a rendered config directory.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;

use crate::crd::common::{parse_duration_ms, parse_timeout_ms};
use crate::gateway::access_log::AccessLogFormat;
use crate::gateway::cors::CorsPolicy;
use crate::gateway::server::{StartOptions, start, stop_signal};
use crate::gateway::{AdminToken, Settings};
use crate::metering::ledger::LedgerOptions;
use crate::metering::plan::ReservePolicy;
use crate::metering::{FailMode, MeterOptions};

/// Arguments of `dgidgi gateway`.
#[derive(Debug, Args)]
pub struct GatewayArgs {
    /// The rendered config directory (gateway.yaml, keys.yaml, master-key.yaml), as written by
    /// `dgidgi render --config-dir` or mounted from the ConfigMap and Secrets. Hot-reloaded.
    /// Omitted: serve the local CLI settings (`dgidgi config`) as one local tenant.
    #[arg(long, value_name = "DIR")]
    pub config_dir: Option<PathBuf>,
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// Listener and tuning flags shared by `gateway` and `up`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// API listen address.
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    /// Admin listen address (/healthz, /readyz).
    #[arg(long, default_value = "0.0.0.0:9090")]
    pub admin_listen: SocketAddr,
    /// Largest request body in bytes (413 beyond).
    #[arg(long, default_value_t = 10 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Most client connections the API listener holds at once; more are closed at once and
    /// counted (dgidgi_connections_refused_total). Lowered at start to what the process's open
    /// file limit leaves after the admin listener and the upstream connections.
    #[arg(long, default_value_t = 10_000)]
    pub max_connections: usize,
    /// How often the config directory is checked for changes.
    #[arg(long, default_value = "1s")]
    pub reload_interval: String,
    /// How long open requests and streams may finish after SIGTERM.
    #[arg(long, default_value = "30s")]
    pub drain_timeout: String,
    /// How long /readyz reports 503 after SIGTERM before the listeners close (0s: at once).
    #[arg(long, default_value = "0s")]
    pub unready_delay: String,
    /// Directory of the durable usage ledger (SQLite, WAL). Day and month counters are restored
    /// from it on start. Without it, usage lives in memory only.
    #[arg(long, value_name = "DIR", env = "DGIDGI_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Days of per-request ledger records kept (day and month totals are kept regardless).
    #[arg(long, default_value_t = 90, value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub ledger_retention_days: u32,
    /// The most the ledger's database may grow to on disk, in bytes (e.g. 1073741824). Reached,
    /// admissions fail with 503 until retention frees room (metered tenants fail closed before
    /// the volume is full); unset, it grows as far as the volume allows.
    #[arg(long, value_name = "BYTES")]
    pub ledger_max_bytes: Option<u64>,
    /// Also append each finished ledger record as a JSON line to this file (for log shippers).
    #[arg(long, value_name = "PATH", requires = "state_dir")]
    pub ledger_json_lines: Option<PathBuf>,
    /// Redis shared by every replica, so N replicas enforce one tenant's limits as one.
    #[arg(
        long,
        value_name = "URL",
        env = "DGIDGI_REDIS_URL",
        hide_env_values = true
    )]
    pub redis_url: Option<String>,
    /// --redis-url names a Redis (or Valkey) Cluster, 7.0 or later: one or more of its nodes,
    /// separated by commas (`redis://a:6379,redis://b:6379`). Every key then carries a hash tag
    /// (its bucket: a namespace's counters share one slot), so the key names differ from a
    /// single Redis'; see docs/scaling.md for moving from one to the other.
    #[arg(long, env = "DGIDGI_REDIS_CLUSTER", requires = "redis_url")]
    pub redis_cluster: bool,
    /// When Redis does not answer within --redis-timeout: `open` admits (enforcing this
    /// replica's own counters meanwhile), `closed` refuses with 503.
    #[arg(long, value_enum, default_value = "open")]
    pub redis_fail_mode: FailMode,
    /// How long a limit check may wait for Redis before --redis-fail-mode decides.
    #[arg(long, default_value = "50ms")]
    pub redis_timeout: String,
    /// Output tokens reserved for a request whose output neither the request itself
    /// (max_tokens, max_completion_tokens, ...) nor the model's catalog entry (maxOutputTokens)
    /// bounds; such a platform-paid request is sent upstream with this limit written in. A
    /// request that sets its own limit, or whose model has a known maximum, is reserved at that
    /// and passes untouched unless the tenant's remaining allowance is smaller (then it is
    /// lowered to exactly what is left, and the answer says so in x-dgidgi-output-capped).
    /// The platform configuration's `unboundedOutputTokens`, when set, wins over this.
    #[arg(long, alias = "reserve-output-tokens", default_value_t = 4096)]
    pub unbounded_output_tokens: u64,
    /// File holding the bearer token of the admin /usage endpoint (or env DGIDGI_ADMIN_TOKEN).
    /// Without a token the endpoint is off.
    #[arg(long, value_name = "PATH")]
    pub admin_token_file: Option<PathBuf>,
    /// A browser origin allowed to call the API (CORS), e.g. https://app.example.com; repeat
    /// the flag (or separate with commas in the env) for several, `*` for any. None by default:
    /// browsers cannot call the gateway.
    #[arg(
        long = "cors-allow-origin",
        value_name = "ORIGIN",
        env = "DGIDGI_CORS_ALLOW_ORIGINS",
        value_delimiter = ','
    )]
    pub cors_allow_origins: Vec<String>,
    /// The request log on standard output: one line per request (who, which provider and
    /// model, status, latency, tokens; never content or keys), as `text`, `json` or `off`.
    #[arg(long, value_enum, default_value = "text")]
    pub access_log: AccessLogFormat,
    /// Microsoft Entra's authority, where azure-openai providers with an Entra application's
    /// credentials get their tokens (a sovereign cloud's, such as
    /// https://login.microsoftonline.us). Default: https://login.microsoftonline.com.
    #[arg(long, value_name = "URL", env = "AZURE_AUTHORITY_HOST")]
    pub azure_authority_host: Option<String>,
    /// Where OpenTelemetry traces go: an OTLP/HTTP traces URL (http://collector:4318/v1/traces).
    /// The standard variables are read as well (OTEL_EXPORTER_OTLP_ENDPOINT and
    /// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT win, OTEL_SERVICE_NAME, OTEL_TRACES_SAMPLER and
    /// OTEL_TRACES_SAMPLER_ARG, OTEL_BSP_*, OTEL_SDK_DISABLED). Neither set: no traces.
    #[arg(long, value_name = "URL")]
    pub otlp_endpoint: Option<String>,
}

impl ServeArgs {
    /// The start options for a config directory.
    pub fn options(&self, config_dir: PathBuf) -> anyhow::Result<StartOptions> {
        let duration = |flag: &str, text: &str| {
            parse_timeout_ms(text)
                .map(Duration::from_millis)
                .with_context(|| format!("--{flag}"))
        };
        Ok(StartOptions {
            config_dir,
            listen: self.listen,
            admin_listen: self.admin_listen,
            settings: Settings {
                max_body_bytes: self.max_body_bytes,
                max_connections: self.max_connections,
                metering: MeterOptions {
                    policy: ReservePolicy {
                        unbounded_output_tokens: self.unbounded_output_tokens,
                        ..ReservePolicy::default()
                    },
                    ledger: self.state_dir.as_ref().map(|dir| LedgerOptions {
                        state_dir: dir.clone(),
                        retention_days: self.ledger_retention_days,
                        max_bytes: self.ledger_max_bytes,
                        json_lines: self.ledger_json_lines.clone(),
                    }),
                    redis_url: self.redis_url.clone(),
                    redis_cluster: self.redis_cluster,
                    redis_timeout: duration("redis-timeout", &self.redis_timeout)?,
                    fail_mode: self.redis_fail_mode,
                },
                admin_token: self.admin_token()?,
                cors: CorsPolicy::new(&self.cors_allow_origins)
                    .map_err(anyhow::Error::msg)
                    .context("--cors-allow-origin")?,
                access_log: self.access_log,
                traces: crate::telemetry::Traces::from_env(self.otlp_endpoint.as_deref())?,
                cloud_environment: crate::gateway::tokens::CloudEnvironment {
                    azure_authority_host: self.azure_authority_host.clone(),
                    ..crate::gateway::tokens::CloudEnvironment::from_env()
                },
                ..Settings::default()
            },
            reload_interval: duration("reload-interval", &self.reload_interval)?,
            drain: duration("drain-timeout", &self.drain_timeout)?,
            // Zero is a valid delay (report and close at once), unlike the timeouts above.
            unready_delay: parse_duration_ms(&self.unready_delay)
                .map(Duration::from_millis)
                .context("--unready-delay")?,
        })
    }
}

impl ServeArgs {
    /// The admin token from --admin-token-file, else from DGIDGI_ADMIN_TOKEN.
    fn admin_token(&self) -> anyhow::Result<Option<AdminToken>> {
        let text = match &self.admin_token_file {
            Some(path) => zeroize::Zeroizing::new(
                std::fs::read_to_string(path)
                    .with_context(|| format!("--admin-token-file {}", path.display()))?,
            ),
            None => match std::env::var("DGIDGI_ADMIN_TOKEN") {
                Ok(token) => zeroize::Zeroizing::new(token),
                Err(_) => return Ok(None),
            },
        };
        match AdminToken::new(&text) {
            Some(token) => Ok(Some(token)),
            None => anyhow::bail!("the admin token is empty"),
        }
    }
}

/// Builds the runtime and serves until SIGTERM or Ctrl-C.
pub fn run(args: &GatewayArgs) -> anyhow::Result<ExitCode> {
    match &args.config_dir {
        Some(dir) => serve_until_stopped(args.serve.options(dir.clone())?, |_| {}),
        None => serve_local(&args.serve),
    }
}

/// Serves the local CLI settings: they are rendered (with the same render as everything else)
/// into `<config home>/local-gateway`, so the printed access key stays the same between runs.
fn serve_local(serve: &ServeArgs) -> anyhow::Result<ExitCode> {
    let state = super::config::config_home()?.join("local-gateway");
    std::fs::create_dir_all(&state).with_context(|| format!("creating {}", state.display()))?;
    let inputs = state.join("inputs.yaml");
    super::files::write_atomic(&inputs, super::config::local_inputs()?.as_bytes(), false)?;
    let config_dir = state.join("config");
    let (output, _) = super::render::render_to(
        std::slice::from_ref(&inputs),
        None,
        Some(&config_dir),
        crate::render::DEFAULT_PLATFORM_NAMESPACE,
        1,
    )?;
    if let Some(line) = output.report.not_ready().first() {
        anyhow::bail!("the local settings are not usable: {line}");
    }
    let key = output
        .access_keys
        .first()
        .map(|k| k.value.to_string())
        .context("no access key was rendered")?;
    let cli = output.config.tenants.first().and_then(|t| t.cli.clone());
    serve_until_stopped(serve.options(config_dir)?, move |running| {
        let endpoint = cli.as_ref().map_or("?", |c| c.endpoint.as_str());
        let text = format!(
            "dgidgi local gateway on http://{} -> {endpoint}\naccess key: {key}\n",
            running.api
        );
        let mut stdout = std::io::stdout().lock();
        let _ = std::io::Write::write_all(&mut stdout, text.as_bytes());
        let _ = std::io::Write::flush(&mut stdout);
    })
}

/// Serves `options` on a new multi-threaded runtime until a stop signal; `started` runs once
/// the listeners are bound (to print addresses and keys).
pub fn serve_until_stopped(
    mut options: StartOptions,
    started: impl FnOnce(&crate::gateway::server::Running),
) -> anyhow::Result<ExitCode> {
    options.settings.max_connections = fit_open_files(options.settings.max_connections);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let running = start(options).await?;
        started(&running);
        stop_signal().await;
        tracing::info!("stopping: no new connections; draining open ones");
        let traces = running.traces();
        running.shutdown().await;
        // The spans still queued go out before the process ends (a bounded wait).
        if let Some(traces) = traces {
            tokio::task::spawn_blocking(move || traces.shutdown())
                .await
                .ok();
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// File descriptors kept for everything but client connections: upstream connections, the
/// ledger, the config directory, Redis.
const RESERVED_FILES: u64 = 1_024;

/// Raises the open-file limit to its hard maximum (the default soft limit, often 1,024, is
/// what a few hundred idle sockets used to exhaust) and returns how many API connections fit in
/// it next to the admin listener and [`RESERVED_FILES`]; `wanted` when they all fit.
fn fit_open_files(wanted: usize) -> usize {
    let limit = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(error) => {
            tracing::warn!("reading the open-file limit failed: {error}");
            return wanted;
        }
    };
    let room = limit
        .saturating_sub(crate::gateway::server::ADMIN_MAX_CONNECTIONS as u64)
        .saturating_sub(RESERVED_FILES)
        .max(64);
    let fitted = usize::try_from(room).unwrap_or(usize::MAX).min(wanted);
    if fitted < wanted {
        tracing::warn!(
            open_files = limit,
            "--max-connections {wanted} does not fit the open-file limit; holding at most {fitted} API connections (raise `ulimit -n`)"
        );
    }
    fitted
}
