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
    drop(accept(gateway, Snapshot::load(dir)?));
    Ok(())
}

/// Swaps a checked snapshot in, says so, and counts it; returns the one it replaced.
fn accept(gateway: &Gateway, snapshot: Snapshot) -> Option<Arc<super::Active>> {
    tracing::info!(
        tenants = snapshot.config.tenants.len(),
        providers = snapshot.config.providers.len(),
        rules = snapshot.config.routing.len(),
        fingerprint = %hex::encode(&snapshot.fingerprint[..8]),
        "config loaded"
    );
    let previous = gateway.install(snapshot);
    gateway.metrics.reload(true);
    previous
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
        let Ok(loaded) = load_behind_requests(gateway.clone(), dir.clone(), files).await else {
            continue;
        };
        match loaded {
            Ok(()) => refused = None,
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

/// The nice value a reload runs at, the lowest there is: a core busy with requests gives it
/// about one part in seventy (the kernel weighs nice 19 at 15 against a worker's 1,024), an
/// idle core all of it. Measured with `LOAD_SCENARIOS=100k-reload cargo bench --bench load`
/// (one core, JSON at concurrency 16, reloading 100,000 tenants back to back): p99 2.9× the
/// steady one at the workers' priority, 2.2× at nice 10, 1.0× at nice 19, with as many reloads
/// done (one every four seconds).
pub const RELOAD_NICENESS: i32 = 19;

/// Parses `files` and installs them on a thread of its own at [`RELOAD_NICENESS`] (the threads
/// it starts to parse shards inherit it), then drops the config it replaced there too, once
/// the requests that started on it are done. A 100,000-tenant config is about 0.4 s of CPU to
/// parse and a few tens of milliseconds to free: at the workers' priority, on a worker, that
/// tripled the p99 of the requests sharing the core. On a core saturated for good the reload
/// waits for spare time instead (up to half a minute at 100,000 tenants); the last good config
/// serves meanwhile. Where the priority cannot be lowered, it works as before.
async fn load_behind_requests(
    gateway: Arc<Gateway>,
    dir: PathBuf,
    files: ConfigFiles,
) -> Result<Result<(), LoadError>, tokio::sync::oneshot::error::RecvError> {
    let (sender, receiver) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("config-reload".into())
        .spawn(move || {
            lower_this_threads_priority();
            match Snapshot::from_files(&dir, &files) {
                Ok(snapshot) => {
                    let previous = accept(&gateway, snapshot);
                    sender.send(Ok(())).ok();
                    retire(previous);
                }
                Err(error) => {
                    sender.send(Err(error)).ok();
                }
            }
        });
    if let Err(error) = spawned {
        tracing::warn!(%error, "no thread for the config reload");
    }
    receiver.await
}

/// How long a replaced config waits for the requests still using it before it is dropped
/// here regardless (then the last of them frees it).
const RETIRE_WAIT: Duration = Duration::from_secs(30);

/// Drops a replaced config on the calling thread once nothing else holds it (requests that
/// started on it finish on it), checking every 10 ms for at most [`RETIRE_WAIT`].
fn retire(previous: Option<Arc<super::Active>>) {
    let Some(previous) = previous else { return };
    let started = std::time::Instant::now();
    while Arc::strong_count(&previous) > 1 && started.elapsed() < RETIRE_WAIT {
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(previous);
}

/// Lowers the calling thread's priority to [`RELOAD_NICENESS`] (Linux keeps a nice value per
/// thread).
fn lower_this_threads_priority() {
    // The lowest priority of the thread's (normal) policy: nice 19.
    let lowered =
        thread_priority::set_current_thread_priority(thread_priority::ThreadPriority::Min);
    if let Err(error) = lowered {
        tracing::debug!(%error, "the config reload keeps the workers' priority");
    }
}

#[cfg(test)]
mod tests {
    /// The nice value of the calling thread (`/proc/thread-self/stat`, field 19).
    fn niceness() -> i32 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").expect("stat");
        let after_name = stat.rsplit_once(')').expect("a command name").1;
        after_name
            .split_whitespace()
            .nth(16)
            .expect("field 19")
            .parse()
            .expect("a number")
    }

    #[test]
    fn a_reload_runs_at_nice_19_and_the_threads_it_starts_too() {
        let base = niceness();
        let (own, inherited) = std::thread::spawn(|| {
            super::lower_this_threads_priority();
            let inherited = std::thread::spawn(niceness).join().expect("a thread");
            (niceness(), inherited)
        })
        .join()
        .expect("a thread");
        // A process started at nice 0 (a test runner niced further cannot be raised back).
        if base == 0 {
            assert_eq!(own, super::RELOAD_NICENESS);
        }
        assert_eq!(inherited, own, "the threads it starts inherit it");
        assert_eq!(niceness(), base, "the caller's own priority is left alone");
    }
}
