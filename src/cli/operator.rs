//! `dgidgi operator`: reconcile the custom resources into the gateway's config, Secrets,
//! statuses and Events (see [`crate::operator`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;

use crate::crd::common::parse_duration_ms;
use crate::gateway::server::stop_signal;
use crate::operator::controller::{Settings, TokenSource, UsageSettings, run as run_controller};
use crate::operator::server::{Health, bind, serve};
use crate::render::DEFAULT_PLATFORM_NAMESPACE;

/// Arguments of `dgidgi operator`.
#[derive(Debug, Args)]
pub struct OperatorArgs {
    /// The platform namespace: its LlmProviders and RoutingPolicies are platform-wide, and the
    /// ConfigMap, key Secrets and Lease live there.
    #[arg(long, default_value = DEFAULT_PLATFORM_NAMESPACE)]
    pub namespace: String,
    /// Listen address for /healthz, /readyz and /metrics.
    #[arg(long, default_value = "0.0.0.0:8081")]
    pub listen: SocketAddr,
    /// The Service whose EndpointSlices list the gateway pods' admin ports (usage polling).
    #[arg(long, default_value = "dgidgi-gateway-admin")]
    pub gateway_admin_service: String,
    /// File holding the gateways' admin token (usage polling). Without it the token is read
    /// from DGIDGI_ADMIN_TOKEN; with neither, usage is not polled.
    #[arg(long, value_name = "PATH")]
    pub gateway_admin_token_file: Option<PathBuf>,
    /// How often the gateways' usage summaries are read into status.
    #[arg(long, default_value = "30s", value_parser = duration)]
    pub usage_interval: Duration,
    /// Quiet time after a change before a pass.
    #[arg(long, default_value = "500ms", value_parser = duration)]
    pub debounce: Duration,
    /// A full pass at least this often.
    #[arg(long, default_value = "5m", value_parser = duration)]
    pub resync: Duration,
    /// How long the Lease holds without renewal.
    #[arg(long, default_value = "15s", value_parser = duration)]
    pub lease_duration: Duration,
    /// This replica's identity on the Lease and Events (default: $POD_NAME or the host name).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Write the gateway config and key store in this many shards (ConfigMaps
    /// `dgidgi-gateway-config-NNN`, Secrets `dgidgi-gateway-keys-NNN`, each well under
    /// Kubernetes' 1 MiB), for fleets past a few thousand tenants; 1: one of each. The gateway
    /// pods must mount as many (the chart's `config.shards` sets both).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub config_shards: u32,
}

fn duration(text: &str) -> Result<Duration, String> {
    parse_duration_ms(text)
        .map(Duration::from_millis)
        .map_err(|e| e.to_string())
}

fn usage_settings(args: &OperatorArgs) -> Option<UsageSettings> {
    let token = match &args.gateway_admin_token_file {
        Some(path) => TokenSource::File(path.clone()),
        None => match std::env::var("DGIDGI_ADMIN_TOKEN") {
            Ok(token) if !token.trim().is_empty() => {
                TokenSource::Value(zeroize::Zeroizing::new(token.trim().to_owned()))
            }
            _ => {
                tracing::info!(
                    "no gateway admin token (--gateway-admin-token-file or DGIDGI_ADMIN_TOKEN): usage is not polled"
                );
                return None;
            }
        },
    };
    Some(UsageSettings {
        service: args.gateway_admin_service.clone(),
        token,
        interval: args.usage_interval,
    })
}

/// Runs the operator until SIGTERM or Ctrl-C.
pub fn run(args: &OperatorArgs) -> anyhow::Result<ExitCode> {
    let identity = args
        .identity
        .clone()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| format!("dgidgi-operator-{}", std::process::id()));
    let settings = Settings {
        config_shards: args.config_shards,
        platform_namespace: args.namespace.clone(),
        debounce: args.debounce,
        resync: args.resync,
        min_backoff: Duration::from_millis(500),
        max_backoff: Duration::from_secs(60),
        identity,
        lease_duration: args.lease_duration,
        usage: usage_settings(args),
        traces: crate::telemetry::Traces::from_env(None)?,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let client = kube::Client::try_default()
            .await
            .context("connecting to the Kubernetes API (kubeconfig or in-cluster)")?;
        let health = Arc::new(Health::default());
        let listener = bind(args.listen)
            .await
            .with_context(|| format!("binding {}", args.listen))?;
        tracing::info!(listen = %args.listen, namespace = %args.namespace, "operator starting");
        let server = tokio::spawn(serve(listener, health.clone()));
        let result = run_controller(client, settings, health, stop_signal()).await;
        server.abort();
        result
    })?;
    Ok(ExitCode::SUCCESS)
}
