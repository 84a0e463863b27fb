//! `dgidgi up [DIR]`: render DIR (default `examples/quickstart`) and serve it in one process,
//! printing the address, each tenant's access key and a request to paste.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use sha2::{Digest, Sha256};

use super::gateway::{ServeArgs, serve_until_stopped};
use crate::render::{DEFAULT_PLATFORM_NAMESPACE, RenderOutput};

/// Arguments of `dgidgi up`.
#[derive(Debug, Args)]
pub struct UpArgs {
    /// Directory (or file) of CRs, Secrets and Namespaces to render and serve.
    #[arg(default_value = "examples/quickstart")]
    pub dir: PathBuf,
    /// Where the rendered config and keys are kept between runs (default: a directory per
    /// input under the system's temporary directory, so access keys survive restarts).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// The platform namespace.
    #[arg(long, default_value = DEFAULT_PLATFORM_NAMESPACE)]
    pub namespace: String,
    #[command(flatten)]
    pub serve: UpServeArgs,
}

/// `up` listens on loopback by default: it is a laptop command.
#[derive(Debug, Args)]
pub struct UpServeArgs {
    /// API listen address.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Admin listen address.
    #[arg(long, default_value = "127.0.0.1:9090")]
    pub admin_listen: SocketAddr,
}

/// Renders and serves until Ctrl-C.
pub fn run(args: &UpArgs) -> anyhow::Result<ExitCode> {
    let source = std::fs::canonicalize(&args.dir).with_context(|| {
        format!(
            "{} not found (run from the repository root, or name a directory)",
            args.dir.display()
        )
    })?;
    let state = match &args.state_dir {
        Some(dir) => dir.clone(),
        None => {
            let digest = Sha256::digest(source.to_string_lossy().as_bytes());
            std::env::temp_dir().join(format!("dgidgi-up-{}", hex::encode(&digest[..6])))
        }
    };
    let out = state.join("out");
    let config_dir = state.join("config");
    let (output, _) = super::render::render_to(
        std::slice::from_ref(&source),
        Some(&out),
        Some(&config_dir),
        &args.namespace,
        1,
    )?;
    for line in output.report.not_ready() {
        eprintln!("not ready: {line}");
    }
    let serve = ServeArgs {
        listen: args.serve.listen,
        admin_listen: args.serve.admin_listen,
        max_body_bytes: 10 * 1024 * 1024,
        max_connections: 10_000,
        reload_interval: "1s".to_owned(),
        drain_timeout: "10s".to_owned(),
        unready_delay: "0s".to_owned(),
        // Usage survives restarts of `up` like the rendered keys do.
        state_dir: Some(state.join("state")),
        ledger_retention_days: 90,
        ledger_max_bytes: None,
        ledger_json_lines: None,
        redis_url: None,
        redis_cluster: false,
        redis_fail_mode: crate::metering::FailMode::Open,
        redis_timeout: "50ms".to_owned(),
        unbounded_output_tokens: 4096,
        admin_token_file: None,
        cors_allow_origins: Vec::new(),
        access_log: crate::gateway::access_log::AccessLogFormat::Text,
        azure_authority_host: None,
        otlp_endpoint: None,
    };
    let options = serve.options(config_dir.clone())?;
    serve_until_stopped(options, |running| {
        print_welcome(&output, running.api, &state)
    })
}

fn print_welcome(output: &RenderOutput, api: SocketAddr, state: &std::path::Path) {
    // Written in one go and without panicking: a closed stdout must not stop the gateway.
    let mut text = format!(
        "dgidgi is serving {} tenant(s) on http://{api}\nstate (config, keys): {}\n\n",
        output.config.tenants.len(),
        state.display()
    );
    for access in &output.access_keys {
        text.push_str(&format!(
            "  {}/{} key {} {}\n",
            access.key.namespace,
            access.tenant,
            access.key_name,
            access.value.as_str()
        ));
    }
    let example = output.access_keys.iter().find(|k| {
        output.config.tenants.iter().any(|t| {
            t.name == k.tenant
                && t.namespace == k.key.namespace
                && t.source == crate::config::Source::Platform
        })
    });
    if let Some(access) = example {
        text.push_str(&format!(
            "\ntry:\n  curl -s http://{api}/v1/chat/completions -H 'Authorization: Bearer {}' \\\n    -H 'Content-Type: application/json' \\\n    -d '{{\"model\":\"mock-fast\",\"messages\":[{{\"role\":\"user\",\"content\":\"Hello!\"}}]}}'\n",
            access.value.as_str()
        ));
    }
    text.push_str(
        "\nReal providers: put your key in the provider's Secret (e.g. examples/quickstart/10-platform-providers.yaml) and restart.\n",
    );
    let mut stdout = std::io::stdout().lock();
    let _ = std::io::Write::write_all(&mut stdout, text.as_bytes());
    let _ = std::io::Write::flush(&mut stdout);
}
