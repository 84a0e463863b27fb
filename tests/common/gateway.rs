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
    for file in config_dir_files(&output).unwrap() {
        std::fs::write(dir.path().join(&file.path), &file.bytes).unwrap();
    }
    (output, dir)
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
        let (output, dir) = config_dir(yaml);
        let running = start(StartOptions {
            config_dir: dir.path().to_owned(),
            listen: "127.0.0.1:0".parse().unwrap(),
            admin_listen: "127.0.0.1:0".parse().unwrap(),
            settings,
            reload_interval: Duration::from_secs(60),
            drain: Duration::from_secs(1),
            unready_delay: Duration::ZERO,
        })
        .await
        .unwrap();
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
