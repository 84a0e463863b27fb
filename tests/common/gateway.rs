//! A gateway started in the test's own process from YAML, and the bits tests that start the
//! binary share.

use std::time::Duration;

use dgidgi::gateway::Settings;
use dgidgi::gateway::server::{Running, StartOptions, start};
use dgidgi::render::RenderOutput;
use dgidgi::render::manifests::config_dir_files;

/// The mock provider and one tenant (`team-acme/acme`) on the platform source.
pub const MOCK_AND_ONE_TENANT: &str = r#"
apiVersion: llm.dgidgi.io/v1alpha1
kind: LlmProvider
metadata: {name: mock, namespace: dgidgi-system}
spec: {type: mock}
---
apiVersion: llm.dgidgi.io/v1alpha1
kind: LlmTenant
metadata: {name: acme, namespace: team-acme}
spec: {}
"#;

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port()
}

/// Renders `yaml` into a fresh config directory.
pub fn config_dir(yaml: &str) -> (RenderOutput, tempfile::TempDir) {
    let output = super::render_yaml(yaml);
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &output);
    (output, dir)
}

/// Writes a render's config directory files into `dir` (a gateway watching it reloads them).
pub fn write_config(dir: &std::path::Path, output: &RenderOutput) {
    for file in config_dir_files(output).unwrap() {
        std::fs::write(dir.join(&file.path), &file.bytes).unwrap();
    }
}

/// How a test gateway runs, apart from its config directory: every field has the default
/// most tests want.
pub struct Start {
    /// The gateway's settings.
    pub settings: Settings,
    /// How often it looks for a new config.
    pub reload_interval: Duration,
    /// How long open requests get to finish when it stops.
    pub drain: Duration,
    /// How long it reports itself unready before its listeners close.
    pub unready_delay: Duration,
}

impl Default for Start {
    fn default() -> Self {
        Self {
            settings: Settings::default(),
            reload_interval: Duration::from_secs(60),
            drain: Duration::from_secs(5),
            unready_delay: Duration::ZERO,
        }
    }
}

/// Starts a gateway in this process on the config in `dir`, on loopback ports: the one place
/// tests fill the gateway's start options.
pub async fn start_in(dir: &std::path::Path, how: Start) -> Running {
    start(StartOptions {
        config_dir: dir.to_owned(),
        listen: "127.0.0.1:0".parse().unwrap(),
        admin_listen: "127.0.0.1:0".parse().unwrap(),
        settings: how.settings,
        reload_interval: how.reload_interval,
        drain: how.drain,
        unready_delay: how.unready_delay,
    })
    .await
    .unwrap()
}

/// A gateway serving `yaml` on loopback ports, in this process.
pub struct InProcess {
    /// The running gateway.
    pub running: Running,
    /// What was rendered (its access keys).
    pub output: RenderOutput,
    _dir: tempfile::TempDir,
}

impl InProcess {
    /// Starts one with `settings`.
    pub async fn start(yaml: &str, settings: Settings) -> Self {
        let how = Start {
            settings,
            drain: Duration::from_secs(1),
            ..Start::default()
        };
        Self::start_with(yaml, how).await
    }

    /// Starts one as `how` says.
    pub async fn start_with(yaml: &str, how: Start) -> Self {
        let (output, dir) = config_dir(yaml);
        let running = start_in(dir.path(), how).await;
        Self {
            running,
            output,
            _dir: dir,
        }
    }

    /// The first tenant's access key.
    pub fn key(&self) -> String {
        self.output.access_keys[0].value.to_string()
    }
}

/// A gateway binary running as its own process (what a signal or `kill -9` reaches).
pub struct Process {
    pub child: std::process::Child,
    pub api: std::net::SocketAddr,
    pub admin: std::net::SocketAddr,
}

/// Starts `dgidgi [global…] gateway --listen … --admin-listen … --config-dir <config>
/// [extra…]` on free ports, its stderr to `stderr`, and waits until `/readyz` answers 200.
pub async fn spawn_gateway(
    config: &std::path::Path,
    global: &[&str],
    extra: &[&std::ffi::OsStr],
    stderr: std::process::Stdio,
) -> Process {
    spawn_gateway_with_stdout(config, global, extra, std::process::Stdio::null(), stderr).await
}

/// [`spawn_gateway`] with its standard output (the request log) to `stdout`.
pub async fn spawn_gateway_with_stdout(
    config: &std::path::Path,
    global: &[&str],
    extra: &[&std::ffi::OsStr],
    stdout: std::process::Stdio,
    stderr: std::process::Stdio,
) -> Process {
    spawn_gateway_in_env(config, global, extra, &[], (stdout, stderr)).await
}

/// [`spawn_gateway_with_stdout`] with `env` added to the process's environment.
pub async fn spawn_gateway_in_env(
    config: &std::path::Path,
    global: &[&str],
    extra: &[&std::ffi::OsStr],
    env: &[(&str, &str)],
    (stdout, stderr): (std::process::Stdio, std::process::Stdio),
) -> Process {
    let (api, admin) = (free_port(), free_port());
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_dgidgi"))
        .args(global)
        .arg("gateway")
        .args(["--listen", &format!("127.0.0.1:{api}")])
        .args(["--admin-listen", &format!("127.0.0.1:{admin}")])
        .arg("--config-dir")
        .arg(config)
        .args(extra)
        .envs(env.iter().copied())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .unwrap();
    let process = Process {
        child,
        api: ([127, 0, 0, 1], api).into(),
        admin: ([127, 0, 0, 1], admin).into(),
    };
    for _ in 0..200 {
        let ready = super::http::send(process.admin, "GET", "/readyz", None, None).await;
        if ready.is_some_and(|(status, _, _)| status == 200) {
            return process;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the gateway did not become ready");
}
