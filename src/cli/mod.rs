//! The command line: one module per subcommand; each returns an exit code instead of exiting so
//! the library never ends the process behind a caller's back.

mod config;
mod crds;
mod files;
mod gateway;
mod operator;
mod render;
mod up;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// dgidgi: Kubernetes operator and multi-tenant LLM gateway.
#[derive(Debug, Parser)]
#[command(name = "dgidgi", version, about, long_about = None)]
pub struct Cli {
    /// Log filter (RUST_LOG syntax), e.g. `info` or `dgidgi=debug`.
    #[arg(long, global = true, env = "DGIDGI_LOG", default_value = "info")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the CustomResourceDefinitions (the YAML under crds/), generated from the Rust types.
    Crds(crds::CrdsArgs),
    /// Render CR, Secret and Namespace YAML into the gateway config, key store and access keys,
    /// offline and deterministically.
    Render(render::RenderArgs),
    /// Serve a rendered config directory: the OpenAI-format LLM gateway.
    Gateway(Box<gateway::GatewayArgs>),
    /// Reconcile the custom resources in a cluster into the gateway's config, key Secrets,
    /// access keys, statuses and Events.
    Operator(operator::OperatorArgs),
    /// Render a directory (default examples/quickstart) and serve it, in one process.
    Up(Box<up::UpArgs>),
    /// Local CLI settings: llm.source, llm.endpoint, llm.model.
    Config(config::ConfigArgs),
}

impl Cli {
    /// Runs the chosen subcommand and turns its outcome into an exit code.
    pub fn run(self) -> ExitCode {
        init_logging(&self.log);
        let result = match self.command {
            Command::Crds(args) => crds::run(&args),
            Command::Render(args) => render::run(&args),
            Command::Gateway(args) => gateway::run(&args),
            Command::Operator(args) => operator::run(&args),
            Command::Up(args) => up::run(&args),
            Command::Config(args) => config::run(&args),
        };
        match result {
            Ok(code) => code,
            Err(error) => {
                eprintln!("error: {error:#}");
                ExitCode::FAILURE
            }
        }
    }
}

/// Logs go to stderr so stdout stays clean for YAML (`dgidgi crds > crds.yaml`).
fn init_logging(filter: &str) {
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    // `try_init` also forwards the `log` records of dependencies (hyper, rustls, kube).
    let _ = tracing_subscriber::util::SubscriberInitExt::try_init(logger(
        filter,
        std::io::stderr,
        ansi,
    ));
}

/// The process's log format, writing to `writer` (tests capture it). Text that requests or
/// inputs control is logged as `?` fields, which this format writes escaped (a newline as
/// `\n`), so it can never start a line of its own.
pub fn logger<W>(filter: &str, writer: W, ansi: bool) -> impl tracing::Subscriber + Send + Sync
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(ansi)
        .with_target(false)
        .finish()
}
