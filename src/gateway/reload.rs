//! Hot reload: the config directory is polled; a changed one is parsed and checked off the
//! request path and swapped in atomically. In-flight requests finish on the snapshot they
//! started with. A directory that fails to load is refused with a log line and a counter, and
//! the last good config keeps serving. Polling content (not file events) also follows the
//! atomic `..data` link swap Kubernetes does for mounted ConfigMaps and Secrets.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::Gateway;
use crate::config::load::{ConfigFiles, LoadError, Snapshot};

/// Loads the directory once into the gateway.
pub fn load_now(gateway: &Gateway, dir: &Path) -> Result<(), LoadError> {
    accept(gateway, Snapshot::load(dir)?);
    Ok(())
}

/// Swaps a checked snapshot in, says so, and counts it.
fn accept(gateway: &Gateway, snapshot: Snapshot) {
    tracing::info!(
        tenants = snapshot.config.tenants.len(),
        providers = snapshot.config.providers.len(),
        rules = snapshot.config.routing.len(),
        fingerprint = %hex::encode(&snapshot.fingerprint[..8]),
        "config loaded"
    );
    gateway.install(snapshot);
    gateway.metrics.reload(true);
}

/// Watches `dir` every `interval` until the task is dropped.
pub async fn watch(gateway: Arc<Gateway>, dir: PathBuf, interval: Duration) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut refused: Option<[u8; 32]> = None;
    loop {
        ticker.tick().await;
        // File reads and parsing stay off the request workers.
        let read_dir = dir.clone();
        let files = match tokio::task::spawn_blocking(move || ConfigFiles::read(&read_dir)).await {
            Ok(Ok(files)) => files,
            Ok(Err(error)) => {
                // Mid-swap (Kubernetes' ..data link) or removed: keep serving the last good one.
                tracing::debug!("config directory not readable: {error}");
                continue;
            }
            Err(_) => continue,
        };
        let fingerprint = files.fingerprint();
        let current = gateway.snapshot.load().as_ref().map(|s| s.fingerprint);
        if current == Some(fingerprint) || refused == Some(fingerprint) {
            continue;
        }
        let parse_dir = dir.clone();
        let parsed =
            tokio::task::spawn_blocking(move || Snapshot::from_files(&parse_dir, &files)).await;
        let Ok(parsed) = parsed else { continue };
        match parsed {
            Ok(snapshot) => {
                accept(&gateway, snapshot);
                refused = None;
            }
            Err(error) => {
                tracing::warn!(
                    error = ?format!("{error:#}"),
                    "refused the new config, the last good one keeps serving"
                );
                gateway.metrics.reload(false);
                refused = Some(fingerprint);
            }
        }
    }
}
