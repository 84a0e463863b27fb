//! Rebuilding Redis' counters when it lost its data (DESIGN §7: "a Redis that lost its data is
//! rebuilt from the replicas' ledgers; their sum is the fleet's usage").
//!
//! Redis holds an epoch key with no TTL. A Redis that restarted empty (or failed over to a
//! replica without the data) has none; the first gateway replica to notice starts a new one.
//! Each replica then adds its own ledger's totals for the day and the month to the new epoch's
//! counters, exactly once (a guard per epoch, ledger and chunk), and only then reserves in it:
//! until it has, its requests are decided by `--redis-fail-mode`. Which epoch a ledger's usage
//! was last added to is kept next to the ledger (`redis-epoch`), so a replica that restarts on
//! the same state directory against a Redis that kept its data adds nothing twice.
//!
//! What this cannot restore (stated in docs/scaling.md): the usage in the ledgers of replicas
//! that are gone (their state directories are not read by anyone), concurrency leases and
//! request windows in flight at the loss (at most one window's and one lease life's worth),
//! and usage admitted while no replica had synced (decided by the fail mode, and added with
//! that replica's ledger).

use std::path::{Path, PathBuf};

use super::clock::{self, DAY_MS, Day};
use super::ledger::{self, LedgerError};
use super::plan::keys;

/// The file beside the ledger naming the epoch its usage was last added to.
const EPOCH_FILE: &str = "redis-epoch";
/// The file beside the ledger naming this ledger (its rebuild guards carry the name).
const LEDGER_ID_FILE: &str = "ledger-id";
/// Counters per rebuild call.
const CHUNK: usize = 256;

/// A counter to add to: key, amount, TTL in ms.
pub type Counter = (String, u64, u64);

/// What a replica adds to a new epoch: its ledger's totals of today and this month, as counter
/// increments (zeros left out), in a stable order (so a retried rebuild chunks the same way).
pub fn ledger_counters(state_dir: &Path, now_ms: u64) -> Result<Vec<Counter>, LedgerError> {
    let today = Day::of(now_ms);
    let (day, month) = (today.key(), today.month_key());
    let totals = ledger::current_totals(state_dir, &day, &month)?;
    let day_ttl = clock::until_next_day(now_ms) + 2 * DAY_MS;
    let month_ttl = clock::until_next_month(now_ms) + 2 * DAY_MS;
    let mut counters = Vec::new();
    for (tenant, figures) in &totals.today {
        counters.push((keys::tokens(tenant, &day), figures.tokens, day_ttl));
        counters.push((keys::requests(tenant, &day), figures.requests, day_ttl));
    }
    for (tenant, figures) in &totals.month {
        counters.push((keys::spend(tenant, &month), figures.micro_usd, month_ttl));
    }
    counters.retain(|(_, amount, _)| *amount > 0);
    counters.sort();
    Ok(counters)
}

/// The counters split into the chunks one rebuild call adds, each with its guard's name.
pub fn chunks<'c>(
    counters: &'c [Counter],
    epoch: &str,
    ledger_id: &str,
) -> impl Iterator<Item = (String, &'c [Counter])> {
    counters
        .chunks(CHUNK)
        .enumerate()
        .map(move |(index, chunk)| (format!("rebuilt:{epoch}:{ledger_id}:{index}"), chunk))
}

/// The epoch a state directory's usage was last added to.
pub fn synced_epoch(state_dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(state_dir.join(EPOCH_FILE)).ok()?;
    Some(text.trim().to_owned()).filter(|epoch| !epoch.is_empty())
}

/// Records that a state directory's usage is in `epoch` (written whole, then renamed).
pub fn record_synced(state_dir: &Path, epoch: &str) -> std::io::Result<()> {
    write_whole(&state_dir.join(EPOCH_FILE), epoch)
}

/// This ledger's name, made the first time it is asked for.
pub fn ledger_id(state_dir: &Path, new: impl FnOnce() -> String) -> std::io::Result<String> {
    let path = state_dir.join(LEDGER_ID_FILE);
    if let Ok(text) = std::fs::read_to_string(&path)
        && !text.trim().is_empty()
    {
        return Ok(text.trim().to_owned());
    }
    let id = new();
    write_whole(&path, &id)?;
    Ok(id)
}

fn write_whole(path: &Path, text: &str) -> std::io::Result<()> {
    let mut partial = PathBuf::from(path);
    partial.set_extension("partial");
    std::fs::write(&partial, text)?;
    std::fs::rename(partial, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_synced_epoch_and_the_ledger_id_are_kept_beside_the_ledger() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(synced_epoch(dir.path()), None);
        record_synced(dir.path(), "e1").unwrap();
        assert_eq!(synced_epoch(dir.path()).as_deref(), Some("e1"));
        let id = ledger_id(dir.path(), || "l1".to_owned()).unwrap();
        assert_eq!(id, "l1");
        assert_eq!(ledger_id(dir.path(), || "other".to_owned()).unwrap(), "l1");
    }

    #[test]
    fn chunks_are_named_by_epoch_ledger_and_position() {
        let counters: Vec<Counter> = (0..300).map(|i| (format!("k{i:03}"), 1, 1)).collect();
        let named: Vec<(String, usize)> = chunks(&counters, "e", "l")
            .map(|(guard, chunk)| (guard, chunk.len()))
            .collect();
        assert_eq!(
            named,
            vec![
                ("rebuilt:e:l:0".to_owned(), 256),
                ("rebuilt:e:l:1".to_owned(), 44)
            ]
        );
    }
}
