//! Issue #18, leak 12: text a request controls never forges a log line. A model name with a
//! newline in it, logged when its attempt fails, comes out escaped in the process's own log
//! format (`dgidgi::cli::logger`), on the line it belongs to.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::gateway::InProcess;
use dgidgi::gateway::Settings;

/// Collects everything logged.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newline_in_a_model_name_is_escaped_in_the_log() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing::subscriber::set_global_default(dgidgi::cli::logger(
        "info",
        move || writer.clone(),
        false,
    ))
    .expect("the only subscriber of this test binary");
    // A provider nobody listens on: every attempt fails and is logged with its model name.
    let gateway = InProcess::start(
        r#"
apiVersion: v1
kind: Secret
metadata: {name: dead-key, namespace: dgidgi-system}
stringData: {apiKey: sk-dead}
---
apiVersion: llm.dgidgi.io/v1alpha1
kind: LlmProvider
metadata: {name: dead, namespace: dgidgi-system}
spec: {type: openai-compatible, baseUrl: "http://127.0.0.1:1/v1", credentialsRef: {name: dead-key}}
---
apiVersion: llm.dgidgi.io/v1alpha1
kind: LlmTenant
metadata: {name: acme, namespace: team-acme}
spec: {}
"#,
        Settings::default(),
    )
    .await;
    let forged = "x\nERROR forged: the admin token is hunter2";
    let body = serde_json::json!({"model": format!("dead/{forged}"), "messages": [{"role": "user", "content": "hi"}]});
    let key = gateway.key();
    let (status, _, _) = common::http::send(
        gateway.running.api,
        "POST",
        "/v1/chat/completions",
        Some(&key),
        Some(body.to_string()),
    )
    .await
    .unwrap();
    assert_eq!(status, 502);
    gateway.running.shutdown().await;
    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let failed: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("attempt failed"))
        .collect();
    assert!(!failed.is_empty(), "{log}");
    assert!(
        failed.iter().all(|l| l.contains(r"x\nERROR forged")),
        "{failed:?}"
    );
    assert!(
        !log.lines().any(|l| l.starts_with("ERROR forged")),
        "a request forged a log line:\n{log}"
    );
}
