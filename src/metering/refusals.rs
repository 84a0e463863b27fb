//! Refused requests in the ledger, counted per tenant, UTC minute and reason: one row per
//! combination, not one per request. A tenant flooding the gateway with requests it is refused
//! for (its own RPM, budget, ...) grows the state directory by a few rows a minute at most, so it
//! cannot fill the volume every other tenant's usage is recorded on.

use std::path::Path;

use hashbrown::HashMap;
use rusqlite::{Connection, Statement, params};
use serde::Serialize;

/// The table (created with the ledger's schema).
pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS refusals (
    tenant_id TEXT NOT NULL,
    minute TEXT NOT NULL,
    reason TEXT NOT NULL,
    status INTEGER NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, minute, reason)
) WITHOUT ROWID;
";

/// Adds a batch's count to its row.
pub const ADD: &str = "INSERT INTO refusals (tenant_id, minute, reason, status, count)
    VALUES (?1, ?2, ?3, ?4, ?5)
    ON CONFLICT (tenant_id, minute, reason) DO UPDATE SET count = count + excluded.count";

/// Drops the rows of minutes before a cutoff (the ledger's retention).
pub const PRUNE: &str = "DELETE FROM refusals WHERE minute < ?1";

/// One refused request, as the meter reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// `<namespace>/<name>`.
    pub tenant_id: String,
    /// When it was refused (Unix milliseconds).
    pub ts_ms: u64,
    /// Which limit refused it: rpm, tpd, concurrency, budget, ...
    pub reason: &'static str,
    /// The status the client got (429, 402).
    pub status: u16,
}

/// A row of the table: how many requests of a tenant one reason refused in one minute.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RefusalCount {
    /// `<namespace>/<name>`.
    pub tenant_id: String,
    /// The UTC minute, `2026-12-06T07:31Z`.
    pub minute: String,
    /// Which limit refused them.
    pub reason: String,
    /// The status the clients got.
    pub status: u16,
    /// How many.
    pub count: u64,
}

/// The UTC minute of a time, as the table keys it (`2026-12-06T07:31Z`).
pub fn minute_key(ts_ms: u64) -> String {
    let day = super::clock::Day::of(ts_ms).key();
    let minute_of_day = (ts_ms % super::clock::DAY_MS) / 60_000;
    format!("{day}T{:02}:{:02}Z", minute_of_day / 60, minute_of_day % 60)
}

/// Refusals not yet written, summed per row. The ledger's writer keeps them and writes them
/// every few seconds (and when flushed or stopped), not with every commit: each commit appends
/// pages to the write-ahead log, and refusals come as fast as a hostile client can send. A
/// crash loses at most those seconds of refusal counts, never usage.
#[derive(Debug, Default)]
pub struct Counts {
    rows: HashMap<(String, String, &'static str), (u16, i64)>,
}

impl Counts {
    /// Counts one refusal.
    pub fn add(&mut self, refusal: &Refusal) {
        let minute = minute_key(refusal.ts_ms);
        match self
            .rows
            .get_mut(&(refusal.tenant_id.clone(), minute.clone(), refusal.reason))
        {
            Some(entry) => entry.1 += 1,
            None => {
                self.rows.insert(
                    (refusal.tenant_id.clone(), minute, refusal.reason),
                    (refusal.status, 1),
                );
            }
        }
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Forgets what was written.
    pub fn clear(&mut self) {
        self.rows.clear();
    }

    /// Writes the sums (inside the batch's transaction).
    pub fn write(&self, add: &mut Statement<'_>) -> rusqlite::Result<()> {
        for ((tenant, minute, reason), (status, count)) in &self.rows {
            add.execute(params![tenant, minute, reason, status, count])?;
        }
        Ok(())
    }

    /// The sums as rows (for the JSON lines: one line per row a batch touched).
    pub fn rows(&self) -> impl Iterator<Item = RefusalCount> + '_ {
        self.rows
            .iter()
            .map(|((tenant, minute, reason), (status, count))| RefusalCount {
                tenant_id: tenant.clone(),
                minute: minute.clone(),
                reason: (*reason).to_owned(),
                status: *status,
                count: u64::try_from(*count).unwrap_or(0),
            })
    }
}

/// Every refusal row of the ledger in a state directory, oldest minute first.
pub fn read(state_dir: &Path) -> rusqlite::Result<Vec<RefusalCount>> {
    let conn = Connection::open(state_dir.join(super::ledger::LEDGER_FILE))?;
    let mut statement = conn.prepare(
        "SELECT tenant_id, minute, reason, status, count FROM refusals ORDER BY minute, tenant_id, reason",
    )?;
    let rows = statement.query_map([], |row| {
        Ok(RefusalCount {
            tenant_id: row.get(0)?,
            minute: row.get(1)?,
            reason: row.get(2)?,
            status: row.get(3)?,
            count: row.get::<_, i64>(4)?.max(0) as u64,
        })
    })?;
    rows.collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minutes_are_utc_and_zero_padded() {
        // 2026-12-01T06:25:09Z.
        assert_eq!(minute_key(1_796_106_309_000), "2026-12-01T06:25Z");
        assert_eq!(minute_key(0), "1970-01-01T00:00Z");
    }

    #[test]
    fn a_batch_sums_refusals_per_tenant_minute_and_reason() {
        let refusal = |tenant: &str, ts_ms: u64, reason: &'static str| Refusal {
            tenant_id: tenant.to_owned(),
            ts_ms,
            reason,
            status: 429,
        };
        let batch = [
            refusal("a/t", 0, "rpm"),
            refusal("a/t", 59_999, "rpm"),
            refusal("a/t", 60_000, "rpm"),
            refusal("a/t", 0, "tpd"),
            refusal("b/t", 0, "rpm"),
        ];
        let mut counts = Counts::default();
        for refusal in &batch {
            counts.add(refusal);
        }
        let mut rows: Vec<(String, String, String, u64)> = counts
            .rows()
            .map(|r| (r.tenant_id, r.minute, r.reason, r.count))
            .collect();
        rows.sort();
        let row = |t: &str, m: &str, r: &str, n| (t.to_owned(), m.to_owned(), r.to_owned(), n);
        assert_eq!(
            rows,
            vec![
                row("a/t", "1970-01-01T00:00Z", "rpm", 2),
                row("a/t", "1970-01-01T00:00Z", "tpd", 1),
                row("a/t", "1970-01-01T00:01Z", "rpm", 1),
                row("b/t", "1970-01-01T00:00Z", "rpm", 1),
            ]
        );
    }
}
