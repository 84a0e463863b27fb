//! `kill -9` of a gateway in the middle of a burst, then a restart on the same `--state-dir`:
//! the ledger holds every request the client saw complete, and tokens/day continues from the
//! ledger's figure (settled usage, plus the reservation of what was cut off — never less).

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::gateway::{MOCK_AND_ONE_TENANT, Process, spawn_gateway};
use common::http;
use dgidgi::metering::ledger::read_all;
use dgidgi::render::manifests::config_dir_files;

const TOKEN: &str = "crash-test-admin-token-e4b9";

/// The enterprise namespace limits lifted, in front of `MOCK_AND_ONE_TENANT`.
const NAMESPACE: &str = r#"
apiVersion: v1
kind: Namespace
metadata:
  name: team-acme
  labels: {llm.dgidgi.io/tier: enterprise}
  annotations: {llm.dgidgi.io/requests-per-minute: "1000000", llm.dgidgi.io/tokens-per-day: "1000000000", llm.dgidgi.io/concurrent: "1000"}
---
"#;

/// Starts the binary on the config and state directories; its trace-level log goes to a
/// file in the state directory the test scans for secrets afterwards.
async fn launch(
    config: &std::path::Path,
    state: &std::path::Path,
    token: &std::path::Path,
) -> Process {
    static LAUNCHES: AtomicUsize = AtomicUsize::new(0);
    std::fs::create_dir_all(state).unwrap();
    let launch = LAUNCHES.fetch_add(1, Ordering::SeqCst);
    let log = std::fs::File::create(state.join(format!("gateway-{launch}.log"))).unwrap();
    let extra = [
        "--state-dir".as_ref(),
        state.as_os_str(),
        "--admin-token-file".as_ref(),
        token.as_os_str(),
    ];
    spawn_gateway(config, &["--log", "trace"], &extra, log.into()).await
}

async fn get(address: SocketAddr, path: &str) -> Option<(u16, String)> {
    let (status, _, body) = http::send(address, "GET", path, Some(TOKEN), None).await?;
    Some((status, body))
}

/// One request; `Some((request id, tokens))` when the client saw it complete.
async fn chat(address: SocketAddr, key: &str) -> Option<(String, u64)> {
    let body = serde_json::json!({"model": "mock-fast", "max_tokens": 50, "messages": [{"role": "user", "content": "count to three"}]});
    let (status, headers, body) = http::send(
        address,
        "POST",
        "/v1/chat/completions",
        Some(key),
        Some(body.to_string()),
    )
    .await?;
    if status != 200 {
        return None;
    }
    let id = http::header(&headers, "x-dgidgi-request-id")?.to_owned();
    let json: serde_json::Value = serde_json::from_str(&body).ok()?;
    Some((id, json["usage"]["total_tokens"].as_u64()?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_mid_burst_loses_no_completed_request() {
    let output = common::render_yaml(&format!("{NAMESPACE}{MOCK_AND_ONE_TENANT}"));
    let key = output.access_keys[0].value.to_string();
    let config = tempfile::tempdir().unwrap();
    for file in config_dir_files(&output).unwrap() {
        std::fs::write(config.path().join(&file.path), &file.bytes).unwrap();
    }
    let state = tempfile::tempdir().unwrap();
    let token = config.path().join("admin-token");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();

    let mut gateway = launch(config.path(), state.path(), &token).await;
    let completed: Arc<Mutex<Vec<(String, u64)>>> = Arc::default();
    let mut workers = Vec::new();
    for _ in 0..16 {
        let completed = completed.clone();
        let key = key.clone();
        let api = gateway.api;
        workers.push(tokio::spawn(async move {
            while let Some(done) = chat(api, &key).await {
                completed.lock().unwrap().push(done);
            }
        }));
    }
    // Let the burst run, then kill -9 while requests are in flight.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while completed.lock().unwrap().len() < 150 {
        assert!(
            std::time::Instant::now() < deadline && !workers.iter().all(|w| w.is_finished()),
            "the burst stopped early ({} completed)",
            completed.lock().unwrap().len()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    gateway.child.kill().unwrap();
    gateway.child.wait().unwrap();
    for worker in workers {
        let _ = worker.await;
    }
    let completed = completed.lock().unwrap().clone();
    assert!(completed.len() >= 150);

    let restarted = launch(config.path(), state.path(), &token).await;
    let records = read_all(state.path()).unwrap();
    for (id, tokens) in &completed {
        let record = records
            .iter()
            .find(|r| &r.request_id == id)
            .unwrap_or_else(|| panic!("request {id} completed but is not in the ledger"));
        assert!(
            record.outcome == "complete" || record.outcome == "interrupted",
            "{record:?}"
        );
        // Settled to the usage the client saw, or still charged its (larger) reservation.
        assert!(record.tokens >= *tokens, "{record:?} vs {tokens}");
    }
    let counted: u64 = records
        .iter()
        .filter(|r| r.outcome != "refused" && r.outcome != "failed")
        .map(|r| r.tokens)
        .sum();
    let (status, usage) = get(restarted.admin, "/usage").await.unwrap();
    assert_eq!(status, 200, "{usage}");
    let usage: serde_json::Value = serde_json::from_str(&usage).unwrap();
    let today = usage["tenants"][0]["tokensToday"].as_u64().unwrap();
    assert_eq!(today, counted, "tokens/day continues from the ledger");
    let seen: u64 = completed.iter().map(|(_, t)| t).sum();
    assert!(
        today >= seen,
        "never less than what clients saw: {today} < {seen}"
    );
    // Neither the logs (at trace) nor the ledger hold the access key, the admin token or the
    // prompt.
    let mut everything = Vec::new();
    for entry in std::fs::read_dir(state.path()).unwrap() {
        everything.extend(std::fs::read(entry.unwrap().path()).unwrap());
    }
    let everything = String::from_utf8_lossy(&everything);
    assert!(
        everything.contains("usage counters restored"),
        "the logs were captured"
    );
    for secret in [key.as_str(), TOKEN, "count to three"] {
        assert!(
            !everything.contains(secret),
            "{secret} leaked into the logs or the ledger"
        );
    }
    let mut restarted = restarted;
    restarted.child.kill().unwrap();
    restarted.child.wait().unwrap();
}
