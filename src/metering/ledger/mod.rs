//! The request ledger: one analytics record per request (never any content) in SQLite, WAL mode,
//! under `--state-dir`, with the per-tenant day and month totals the counters are restored from.
//!
//! Why SQLite (rusqlite, bundled): a single file that survives `kill -9` once a transaction is
//! committed (WAL, `synchronous=NORMAL`: the commit is in the OS before the call returns), SQL
//! for retention and ad-hoc analytics with the stock `sqlite3` tool, and decades of hardening.
//!
//! Writes go through one writer thread that commits whatever has queued up in one transaction
//! (group commit), so many concurrent requests cost one commit. A request's admission is
//! journalled *before* it is forwarded (the caller awaits it), with its reserved amounts added to
//! the totals; settling replaces them with the real figures. A crash between the two leaves the
//! reservation counted: usage is over-counted by at most the reservation, never lost.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use rusqlite::{Connection, Statement, params};
use serde::Serialize;
use tokio::sync::oneshot;

use super::refusals::{self, Refusal};
use super::request_id;

mod writer;
use writer::{Acks, Statements, checkpointer, writer};

/// Why the ledger could not be opened or written.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// SQLite refused.
    #[error("ledger database {path}: {source}")]
    Sql {
        /// The database file.
        path: PathBuf,
        /// The SQLite error.
        source: rusqlite::Error,
    },
    /// The state directory or the JSON lines file could not be used.
    #[error("ledger file {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A batch could not be committed.
    #[error("ledger commit failed: {0}")]
    Commit(String),
    /// The writer thread is gone (the gateway is shutting down).
    #[error("the ledger writer has stopped")]
    Stopped,
}

/// One request's analytics record (DESIGN §6 plus cost, request id, fallbacks, estimated).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Record {
    /// Gateway-assigned request id (hex).
    pub request_id: String,
    /// RFC 3339 UTC time the request arrived.
    pub timestamp: String,
    /// Unix milliseconds the request arrived.
    #[serde(skip)]
    pub ts_ms: u64,
    /// `<namespace>/<name>` of the tenant.
    pub tenant_id: String,
    /// Whose day and month totals it counts in: the counters' identity
    /// ([`crate::config::TenantConfig::meter`]), the namespace for a platform-metered tenant.
    /// Not a column of its own: the totals rows carry it.
    #[serde(skip)]
    pub meter: String,
    /// Provider id that served it (empty when none did).
    pub provider: String,
    /// Model that served it (or was asked for).
    pub model: String,
    /// platform, tenant or cli.
    pub source: String,
    /// Prompt tokens (provider-reported, or 0 when none was).
    pub tokens_input: u64,
    /// Completion tokens.
    pub tokens_output: u64,
    /// Prompt tokens read from cache.
    pub cached_input_tokens: u64,
    /// Tokens counted against tokens/day (the reservation when `estimated`).
    pub tokens: u64,
    /// Micro-USD counted against the budget.
    pub cost_micro_usd: u64,
    /// Arrival to end of response.
    pub latency_ms: u64,
    /// HTTP status the client got.
    pub status: u16,
    /// How it ended ([`super::Outcome::as_str`]): reserved, complete, client_gone,
    /// upstream_failed, failed, interrupted.
    pub outcome: String,
    /// Fallback index of the target that served (0: the first choice).
    pub fallback_count: u32,
    /// True when no provider usage was reported and the reservation was charged.
    pub estimated: bool,
    /// UTC day key.
    #[serde(skip)]
    pub day: String,
    /// UTC month key.
    #[serde(skip)]
    pub month: String,
}

/// Day and month totals of one tenant, as the counters are restored from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// Tokens.
    pub tokens: u64,
    /// Requests.
    pub requests: u64,
    /// Micro-USD.
    pub micro_usd: u64,
}

/// What the ledger held for the current day and month when it was opened.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Restored {
    /// Per tenant, today's totals.
    pub today: HashMap<String, Totals>,
    /// Per tenant, this month's totals.
    pub month: HashMap<String, Totals>,
    /// Per tenant, the alert thresholds already crossed this month.
    pub thresholds: HashMap<String, Vec<u32>>,
    /// Requests found admitted but never settled (a crash): charged their reservation.
    pub interrupted: u64,
}

enum Op {
    Admit(Record, oneshot::Sender<Result<(), LedgerError>>),
    Settle(Record, Reserved),
    Refused(Refusal),
    /// A row written as it is (tests that lay out a ledger by hand).
    #[cfg(test)]
    Insert(Record),
    Threshold {
        tenant: String,
        month: String,
        percent: u32,
        at: String,
    },
    Flush(oneshot::Sender<()>),
}

/// What a request's admission recorded against its tenant's totals. Its settlement carries
/// them, so the writer computes the totals' change without reading the row back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reserved {
    /// Tokens the admission counted.
    pub tokens: u64,
    /// Micro-USD the admission counted.
    pub cost_micro_usd: u64,
}

/// Handle to the ledger's writer thread.
#[derive(Clone)]
pub struct Ledger {
    ops: mpsc::Sender<Op>,
}

/// Where and how long records are kept.
#[derive(Clone, Debug)]
pub struct LedgerOptions {
    /// The state directory (`ledger.sqlite3` inside).
    pub state_dir: PathBuf,
    /// Days of request records kept (totals are kept for 400 days).
    pub retention_days: u32,
    /// Also append each finished record as a JSON line here, for log shippers.
    pub json_lines: Option<PathBuf>,
    /// The most the ledger's database may grow to on disk (`None`: as far as the volume
    /// goes). Reached, admissions fail (503) until retention frees room: metered tenants fail
    /// closed before the volume is full, and whatever else shares it keeps working.
    pub max_bytes: Option<u64>,
}

const SCHEMA: &str = "
PRAGMA journal_mode = WAL;
PRAGMA synchronous = NORMAL;
-- Checkpoints run on their own thread (see `checkpointer`); this is only the writer's backstop
-- for when sustained traffic keeps that one from ever catching up (the WAL is reset only once
-- it is fully copied back). After a reset the file is cut to 64 MiB.
PRAGMA wal_autocheckpoint = 10000;
PRAGMA journal_size_limit = 67108864;
-- Keyed by the request id itself (WITHOUT ROWID): a rowid table would keep the id in a second
-- B-tree, one more page written per commit (the time index then holds the id, not a rowid). A
-- ledger created before keeps its layout, and the gain is for new ledgers only; the statements
-- are the same for both.
CREATE TABLE IF NOT EXISTS requests (
    request_id TEXT PRIMARY KEY,
    timestamp TEXT NOT NULL,
    ts_ms INTEGER NOT NULL,
    tenant_id TEXT NOT NULL,
    provider TEXT NOT NULL,
    model TEXT NOT NULL,
    source TEXT NOT NULL,
    day TEXT NOT NULL,
    month TEXT NOT NULL,
    tokens_input INTEGER NOT NULL,
    tokens_output INTEGER NOT NULL,
    cached_input_tokens INTEGER NOT NULL,
    tokens INTEGER NOT NULL,
    cost_micro_usd INTEGER NOT NULL,
    latency_ms INTEGER NOT NULL,
    status INTEGER NOT NULL,
    outcome TEXT NOT NULL,
    fallback_count INTEGER NOT NULL,
    estimated INTEGER NOT NULL
) WITHOUT ROWID;
-- Requests left open by a crash are found by time (see `TimeOrder`): an index on the outcome
-- cost every admission and settlement one more page written to the WAL.
DROP INDEX IF EXISTS requests_open;
CREATE TABLE IF NOT EXISTS totals (
    tenant_id TEXT NOT NULL,
    period TEXT NOT NULL,
    tokens INTEGER NOT NULL,
    requests INTEGER NOT NULL,
    micro_usd INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, period)
);
CREATE TABLE IF NOT EXISTS thresholds (
    tenant_id TEXT NOT NULL,
    month TEXT NOT NULL,
    percent INTEGER NOT NULL,
    crossed_at TEXT NOT NULL,
    PRIMARY KEY (tenant_id, month, percent)
);
";

/// How the ledger finds rows by time (a restart's open rows, the retention's old ones). A
/// ledger keyed `WITHOUT ROWID` was created after request ids became time-ordered (see
/// [`request_id`]), so its key order is time order and an index on `ts_ms` would only repeat
/// it, at a fifth of the writer's time per row (measured: 6.9 → 5.4 µs per request in commits
/// of 16, 4.6 → 3.2 µs in commits of 64). An older ledger, a rowid table that may hold random
/// ids, keeps that index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TimeOrder {
    /// Rows are found by their key, `request_id`.
    Key,
    /// Rows are found by the `requests_by_time` index on `ts_ms`.
    Index,
}

impl TimeOrder {
    /// The ledger's order, with the index made or dropped to match.
    fn of(conn: &Connection) -> rusqlite::Result<Self> {
        let keyed: bool = conn.query_row(
            "SELECT wr FROM pragma_table_list WHERE schema = 'main' AND name = 'requests'",
            [],
            |row| row.get(0),
        )?;
        let order = if keyed { Self::Key } else { Self::Index };
        conn.execute_batch(match order {
            Self::Key => "DROP INDEX IF EXISTS requests_by_time;",
            Self::Index => "CREATE INDEX IF NOT EXISTS requests_by_time ON requests(ts_ms);",
        })?;
        Ok(order)
    }

    /// The column to compare and the value it has for a row admitted at `ms`.
    fn at(self, ms: u64) -> (&'static str, rusqlite::types::Value) {
        match self {
            Self::Key => ("request_id", request_id::first_at(ms).into()),
            Self::Index => ("ts_ms", sql_int(ms).into()),
        }
    }
}

/// How far back a restart looks for requests a crash left open.
const OPEN_HORIZON_MS: u64 = 2 * 86_400_000;

/// The ledger file inside the state directory.
pub const LEDGER_FILE: &str = "ledger.sqlite3";

/// How often refusal counts are written (see [`refusals::Counts`]).
const REFUSALS_EVERY: Duration = Duration::from_secs(10);

impl Ledger {
    /// Opens (or creates) the ledger, settles what a crash left open, prunes old records, and
    /// starts the writer thread. `today`/`month` are the current UTC period keys.
    pub fn open(
        options: &LedgerOptions,
        today: &str,
        month: &str,
        now_ms: u64,
    ) -> Result<(Self, Restored), LedgerError> {
        std::fs::create_dir_all(&options.state_dir).map_err(|source| LedgerError::Io {
            path: options.state_dir.clone(),
            source,
        })?;
        let path = options.state_dir.join(LEDGER_FILE);
        let sql = |source| LedgerError::Sql {
            path: path.clone(),
            source,
        };
        let mut conn = Connection::open(&path).map_err(sql)?;
        conn.execute_batch(SCHEMA).map_err(sql)?;
        conn.execute_batch(refusals::SCHEMA).map_err(sql)?;
        if let Some(max_bytes) = options.max_bytes {
            let page_size: i64 = conn
                .query_row("PRAGMA page_size", [], |row| row.get(0))
                .map_err(sql)?;
            let pages = (max_bytes / u64::try_from(page_size).unwrap_or(4096).max(1)).max(1);
            // The writer's connection is this one: the bound holds for every commit.
            conn.query_row(&format!("PRAGMA max_page_count = {pages}"), [], |_| Ok(()))
                .map_err(sql)?;
        }
        conn.busy_timeout(Duration::from_secs(5)).map_err(sql)?;
        let order = TimeOrder::of(&conn).map_err(sql)?;
        // A file whose tables the statements do not fit is refused here, not batch by batch.
        drop(Statements::prepare(&conn).map_err(sql)?);
        // No request stays open longer than its timeouts allow (minutes); two days covers any.
        // Rows are found through `order`; `ts_ms` decides (a row whose id does not begin with
        // its millisecond, which no build writes into a keyed ledger, is then only missed,
        // never wrongly pruned).
        let open_since = now_ms.saturating_sub(OPEN_HORIZON_MS);
        let (column, bound) = order.at(open_since);
        let interrupted = conn
            .execute(
                &format!(
                    "UPDATE requests SET outcome = 'interrupted', estimated = 1
                     WHERE {column} >= ?1 AND ts_ms >= ?2 AND outcome = 'reserved'"
                ),
                params![bound, sql_int(open_since)],
            )
            .map_err(sql)? as u64;
        let cutoff = now_ms.saturating_sub(u64::from(options.retention_days) * 86_400_000);
        let (column, bound) = order.at(cutoff);
        conn.execute(
            &format!("DELETE FROM requests WHERE {column} < ?1 AND ts_ms < ?2"),
            params![bound, sql_int(cutoff)],
        )
        .map_err(sql)?;
        conn.execute(refusals::PRUNE, params![refusals::minute_key(cutoff)])
            .map_err(sql)?;
        let restored = restore(&mut conn, today, month, interrupted).map_err(sql)?;
        let json_lines = match &options.json_lines {
            None => None,
            Some(path) => Some(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|source| LedgerError::Io {
                        path: path.clone(),
                        source,
                    })?,
            ),
        };
        let checkpoints = Connection::open(&path).map_err(sql)?;
        let (ops, receiver) = mpsc::channel();
        // The writer holds `alive`; when it ends, the checkpointer's channel disconnects.
        let (alive, writer_gone) = mpsc::channel::<()>();
        let spawned = |name: &str| LedgerError::Io {
            path: options.state_dir.join(name),
            source: std::io::Error::other("could not start the thread"),
        };
        let acks = Acks::start();
        std::thread::Builder::new()
            .name("dgidgi-ledger".into())
            .spawn(move || {
                writer(conn, receiver, json_lines, path, acks);
                drop(alive);
            })
            .map_err(|_| spawned("dgidgi-ledger"))?;
        std::thread::Builder::new()
            .name("dgidgi-ledger-checkpoint".into())
            .spawn(move || checkpointer(&checkpoints, &writer_gone))
            .map_err(|_| spawned("dgidgi-ledger-checkpoint"))?;
        Ok((Self { ops }, restored))
    }

    /// Journals an admitted request with its reserved amounts; the receiver resolves once the
    /// record is committed (awaited alongside the upstream call, so it adds no latency there).
    pub fn admit(&self, record: Record) -> oneshot::Receiver<Result<(), LedgerError>> {
        let (ack, done) = oneshot::channel();
        if let Err(mpsc::SendError(Op::Admit(_, ack))) = self.ops.send(Op::Admit(record, ack)) {
            let _ = ack.send(Err(LedgerError::Stopped));
        }
        done
    }

    /// Replaces an admitted request's reservation (`reserved`, what its admission record
    /// carried) with its settled figures (not awaited: a crash before the commit leaves the
    /// reservation counted).
    pub fn settle(&self, record: Record, reserved: Reserved) {
        if self.ops.send(Op::Settle(record, reserved)).is_err() {
            tracing::warn!("ledger writer stopped; a settlement was not recorded");
        }
    }

    /// Counts a request refused by a limit or budget in its tenant's row for that minute and
    /// reason (no totals change, and no row of its own: see [`super::refusals`]).
    pub fn refused(&self, refusal: Refusal) {
        let _ = self.ops.send(Op::Refused(refusal));
    }

    /// Writes a row as it is.
    #[cfg(test)]
    fn insert(&self, record: Record) {
        let _ = self.ops.send(Op::Insert(record));
    }

    /// Records an alert threshold crossed this month.
    pub fn threshold(&self, tenant: &str, month: &str, percent: u32, at: String) {
        let _ = self.ops.send(Op::Threshold {
            tenant: tenant.to_owned(),
            month: month.to_owned(),
            percent,
            at,
        });
    }

    /// Waits until everything sent so far is committed (shutdown, tests).
    pub async fn flush(&self) {
        let (ack, done) = oneshot::channel();
        if self.ops.send(Op::Flush(ack)).is_ok() {
            let _ = done.await;
        }
    }
}

fn restore(
    conn: &mut Connection,
    today: &str,
    month: &str,
    interrupted: u64,
) -> rusqlite::Result<Restored> {
    let mut restored = Restored {
        interrupted,
        ..Restored::default()
    };
    let mut totals = conn.prepare(
        "SELECT tenant_id, period, tokens, requests, micro_usd FROM totals WHERE period IN (?1, ?2)",
    )?;
    let day_period = format!("day:{today}");
    let month_period = format!("month:{month}");
    let rows = totals.query_map(params![day_period, month_period], |row| {
        Ok((
            row.get::<_, String>(0)?,
            row.get::<_, String>(1)?,
            Totals {
                tokens: row.get::<_, i64>(2)?.max(0) as u64,
                requests: row.get::<_, i64>(3)?.max(0) as u64,
                micro_usd: row.get::<_, i64>(4)?.max(0) as u64,
            },
        ))
    })?;
    for row in rows {
        let (tenant, period, totals) = row?;
        if period == day_period {
            restored.today.insert(tenant, totals);
        } else {
            restored.month.insert(tenant, totals);
        }
    }
    let mut crossed = conn
        .prepare("SELECT tenant_id, percent FROM thresholds WHERE month = ?1 ORDER BY percent")?;
    let rows = crossed.query_map(params![month], |row| {
        Ok((row.get::<_, String>(0)?, row.get::<_, u32>(1)?))
    })?;
    for row in rows {
        let (tenant, percent) = row?;
        restored.thresholds.entry(tenant).or_default().push(percent);
    }
    Ok(restored)
}

/// Today's and this month's totals per tenant as the ledger in `state_dir` holds them now (read
/// on a connection of its own, beside the writer: what Redis is rebuilt from).
pub fn current_totals(state_dir: &Path, today: &str, month: &str) -> Result<Restored, LedgerError> {
    let path = state_dir.join(LEDGER_FILE);
    let sql = |source| LedgerError::Sql {
        path: path.clone(),
        source,
    };
    let mut conn = Connection::open(&path).map_err(sql)?;
    conn.busy_timeout(Duration::from_secs(5)).map_err(sql)?;
    restore(&mut conn, today, month, 0).map_err(sql)
}

/// Reads back every record (tests and the ledger export).
pub fn read_all(state_dir: &Path) -> Result<Vec<Record>, LedgerError> {
    let path = state_dir.join(LEDGER_FILE);
    let sql = |source| LedgerError::Sql {
        path: path.clone(),
        source,
    };
    let conn = Connection::open(&path).map_err(sql)?;
    let mut statement = conn
        .prepare(
            "SELECT request_id, timestamp, ts_ms, tenant_id, provider, model, source, tokens_input, tokens_output,
                cached_input_tokens, tokens, cost_micro_usd, latency_ms, status, outcome, fallback_count,
                estimated, day, month FROM requests ORDER BY ts_ms, request_id",
        )
        .map_err(sql)?;
    let rows = statement
        .query_map([], |row| {
            Ok(Record {
                request_id: row.get(0)?,
                timestamp: row.get(1)?,
                ts_ms: row.get::<_, i64>(2)? as u64,
                tenant_id: row.get(3)?,
                meter: String::new(),
                provider: row.get(4)?,
                model: row.get(5)?,
                source: row.get(6)?,
                tokens_input: row.get::<_, i64>(7)? as u64,
                tokens_output: row.get::<_, i64>(8)? as u64,
                cached_input_tokens: row.get::<_, i64>(9)? as u64,
                tokens: row.get::<_, i64>(10)? as u64,
                cost_micro_usd: row.get::<_, i64>(11)? as u64,
                latency_ms: row.get::<_, i64>(12)? as u64,
                status: row.get(13)?,
                outcome: row.get(14)?,
                fallback_count: row.get(15)?,
                estimated: row.get(16)?,
                day: row.get(17)?,
                month: row.get(18)?,
            })
        })
        .map_err(sql)?;
    rows.collect::<Result<_, _>>().map_err(sql)
}

/// A count as SQLite's integer: SQLite stores signed 64-bit integers, and a figure past
/// `i64::MAX` (only an absurd one) is stored as that, never wrapped to a negative number.
fn sql_int(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::writer::{INSERT_REQUEST, commit, write_row};
    use super::*;

    fn options(state_dir: &Path, retention_days: u32) -> LedgerOptions {
        LedgerOptions {
            state_dir: state_dir.to_owned(),
            retention_days,
            json_lines: None,
            max_bytes: None,
        }
    }

    #[test]
    fn the_ledger_runs_in_wal_mode_without_a_sync_per_commit() {
        let dir = tempfile::tempdir().unwrap();
        let options = options(dir.path(), 1);
        let (_ledger, restored) = Ledger::open(&options, "2026-11-25", "2026-11", 0).unwrap();
        assert_eq!(restored, Restored::default());
        let conn = Connection::open(dir.path().join(LEDGER_FILE)).unwrap();
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |row| row.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
    }

    #[test]
    fn a_failed_batch_leaves_nothing_and_the_next_one_commits() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(SCHEMA).unwrap();
        conn.execute_batch(refusals::SCHEMA).unwrap();
        // A row SQLite refuses, in the middle of a batch.
        conn.execute_batch(
            "CREATE TRIGGER poison BEFORE INSERT ON requests WHEN NEW.request_id = 'poison'
             BEGIN SELECT RAISE(ABORT, 'refused'); END;",
        )
        .unwrap();
        let mut statements = Statements::prepare(&conn).unwrap();
        let admit = |id: &str| Op::Admit(record(id, 10, 5, "reserved"), oneshot::channel().0);
        let failed = commit(
            &mut statements,
            &[admit("a"), admit("poison"), admit("b")],
            None,
        );
        assert!(failed.is_err());
        // The transaction was rolled back, not left open: the next batch commits.
        commit(&mut statements, &[admit("c")], None).unwrap();
        let ids: Vec<String> = conn
            .prepare("SELECT request_id FROM requests ORDER BY request_id")
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(ids, ["c"]);
        let (tokens, requests): (i64, i64) = conn
            .query_row(
                "SELECT SUM(tokens), SUM(requests) FROM totals WHERE period LIKE 'day:%'",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .unwrap();
        assert_eq!((tokens, requests), (10, 1));
        // A transaction left open on the connection (a ROLLBACK that failed) is ended, and the
        // batch commits instead of failing with every later one.
        conn.execute_batch("BEGIN").unwrap();
        commit(&mut statements, &[admit("d")], None).unwrap();
        assert!(conn.is_autocommit());
        let d: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM requests WHERE request_id = 'd'",
                [],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(d, 1);
    }

    fn record(id: &str, tokens: u64, cost_micro_usd: u64, outcome: &str) -> Record {
        Record {
            request_id: id.to_owned(),
            timestamp: "2026-11-30T00:00:00Z".to_owned(),
            ts_ms: 1,
            tenant_id: "team/acme".to_owned(),
            meter: "team/acme".to_owned(),
            provider: String::new(),
            model: "m".to_owned(),
            source: "platform".to_owned(),
            tokens_input: 0,
            tokens_output: 0,
            cached_input_tokens: 0,
            tokens,
            cost_micro_usd,
            latency_ms: 0,
            status: 0,
            outcome: outcome.to_owned(),
            fallback_count: 0,
            estimated: true,
            day: "2026-11-30".to_owned(),
            month: "2026-11".to_owned(),
        }
    }

    /// Admits 200 records at once and checks each answer means its row is committed.
    async fn admit_many_and_check_each_is_durable(ledger: &Ledger, dir: &Path) {
        let answers: Vec<_> = (0..200)
            .map(|i| ledger.admit(record(&format!("r{i:03}"), 1, 1, "reserved")))
            .collect();
        for answer in answers {
            answer.await.unwrap().unwrap();
        }
        let conn = Connection::open(dir.join(LEDGER_FILE)).unwrap();
        let committed: i64 = conn
            .query_row("SELECT count(*) FROM requests", [], |row| row.get(0))
            .unwrap();
        assert_eq!(committed, 200);
    }

    #[test]
    fn every_admission_is_answered_after_its_commit_inside_and_outside_a_runtime() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap();
        // Opened on a runtime: a task there answers each commit's admissions together.
        let on_runtime = tempfile::tempdir().unwrap();
        runtime.block_on(async {
            let (ledger, _) =
                Ledger::open(&options(on_runtime.path(), 1), "2026-11-30", "2026-11", 0).unwrap();
            admit_many_and_check_each_is_durable(&ledger, on_runtime.path()).await;
        });
        // Opened outside any runtime: the writer answers them itself.
        let outside = tempfile::tempdir().unwrap();
        let (ledger, _) =
            Ledger::open(&options(outside.path(), 1), "2026-11-30", "2026-11", 0).unwrap();
        runtime.block_on(admit_many_and_check_each_is_durable(
            &ledger,
            outside.path(),
        ));
        // Opened on a current-thread runtime that nobody drives any more: the writer answers.
        let idle = tempfile::tempdir().unwrap();
        let current = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let (ledger, _) = current
            .block_on(async { Ledger::open(&options(idle.path(), 1), "2026-11-30", "2026-11", 0) })
            .unwrap();
        runtime.block_on(admit_many_and_check_each_is_durable(&ledger, idle.path()));
        drop(current);
        // Opened on a runtime that is gone since: the writer answers them itself.
        let gone = tempfile::tempdir().unwrap();
        let first = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap();
        let (ledger, _) = first
            .block_on(async { Ledger::open(&options(gone.path(), 1), "2026-11-30", "2026-11", 0) })
            .unwrap();
        drop(first);
        runtime.block_on(admit_many_and_check_each_is_durable(&ledger, gone.path()));
    }

    #[tokio::test]
    async fn a_settlement_replaces_its_reservation_in_the_totals_once() {
        let dir = tempfile::tempdir().unwrap();
        let options = options(dir.path(), 1);
        let (ledger, _) = Ledger::open(&options, "2026-11-30", "2026-11", 0).unwrap();
        ledger
            .admit(record("a", 200, 800, "reserved"))
            .await
            .unwrap()
            .unwrap();
        let reserved = Reserved {
            tokens: 200,
            cost_micro_usd: 800,
        };
        ledger.settle(record("a", 150, 600, "complete"), reserved);
        // Settled twice (a defect elsewhere) or never admitted: the totals do not move.
        ledger.settle(record("a", 999, 9_999, "complete"), reserved);
        ledger.settle(record("never-admitted", 50, 50, "complete"), reserved);
        // A row another gateway marked interrupted is still settled (tokens 100 -> 40).
        ledger
            .admit(record("b", 100, 400, "reserved"))
            .await
            .unwrap()
            .unwrap();
        Connection::open(dir.path().join(LEDGER_FILE))
            .unwrap()
            .execute(
                "UPDATE requests SET outcome = 'interrupted' WHERE request_id = 'b'",
                [],
            )
            .unwrap();
        ledger.settle(
            record("b", 40, 160, "complete"),
            Reserved {
                tokens: 100,
                cost_micro_usd: 400,
            },
        );
        ledger.flush().await;

        let conn = Connection::open(dir.path().join(LEDGER_FILE)).unwrap();
        for period in ["day:2026-11-30", "month:2026-11"] {
            let totals: (i64, i64, i64) = conn
                .query_row(
                    "SELECT tokens, requests, micro_usd FROM totals WHERE tenant_id = ?1 AND period = ?2",
                    params!["team/acme", period],
                    |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
                )
                .unwrap();
            assert_eq!(totals, (150 + 40, 2, 600 + 160), "{period}");
        }
        let rows = read_all(dir.path()).unwrap();
        let settled: Vec<_> = rows
            .iter()
            .map(|r| (r.tokens, r.cost_micro_usd, r.outcome.as_str()))
            .collect();
        assert_eq!(settled, vec![(150, 600, "complete"), (40, 160, "complete")]);
    }

    const DAY_MS: u64 = 86_400_000;
    /// 2026-12-01T06:25:09Z.
    const NOW: u64 = 1_796_106_309_000;

    /// Four requests, by how long ago they were admitted and how they stand: 40 days (past a
    /// 30-day retention), 3 days open (past the horizon for open rows: left alone), an hour
    /// open and an hour complete.
    const AGES: [(u64, &str); 4] = [
        (40 * DAY_MS, "complete"),
        (3 * DAY_MS, "reserved"),
        (3_600_000, "reserved"),
        (3_600_000, "complete"),
    ];

    /// Opens the ledger at `NOW` with a 30-day retention and returns each request's outcome
    /// (`None`: pruned), in `AGES` order.
    fn reopened(dir: &Path, ids: &[String]) -> Vec<Option<String>> {
        let options = options(dir, 30);
        let (ledger, restored) = Ledger::open(&options, "2026-12-01", "2026-12", NOW).unwrap();
        drop(ledger);
        assert_eq!(restored.interrupted, 1);
        let rows = read_all(dir).unwrap();
        ids.iter()
            .map(|id| {
                rows.iter()
                    .find(|r| &r.request_id == id)
                    .map(|r| r.outcome.clone())
            })
            .collect()
    }

    fn expected() -> Vec<Option<String>> {
        [
            None,
            Some("reserved"),
            Some("interrupted"),
            Some("complete"),
        ]
        .map(|o| o.map(str::to_owned))
        .to_vec()
    }

    /// A new ledger finds rows by time through their time-ordered ids, with no index of its
    /// own on `ts_ms`: a restart marks the open rows of the last two days interrupted and
    /// prunes the rows past the retention, each by a search of the key, not a scan.
    #[tokio::test]
    async fn a_new_ledger_finds_rows_by_time_through_their_ids() {
        let dir = tempfile::tempdir().unwrap();
        let options = options(dir.path(), 400);
        let (ledger, _) = Ledger::open(&options, "2026-12-01", "2026-12", NOW).unwrap();
        let mut ids = Vec::new();
        for (age, outcome) in AGES {
            let mut r = record(&request_id::text(request_id::new(NOW - age)), 1, 1, outcome);
            r.ts_ms = NOW - age;
            ids.push(r.request_id.clone());
            ledger.insert(r);
        }
        // An id that does not begin with its millisecond (no build writes one into this
        // layout) is not pruned for sorting low: `ts_ms` decides.
        let mut stray = record(&request_id::text(1), 1, 1, "complete");
        stray.ts_ms = NOW - 3_600_000;
        ids.push(stray.request_id.clone());
        ledger.insert(stray);
        ledger.flush().await;
        drop(ledger);
        let mut want = expected();
        want.push(Some("complete".to_owned()));
        assert_eq!(reopened(dir.path(), &ids), want);

        let conn = Connection::open(dir.path().join(LEDGER_FILE)).unwrap();
        let indexes: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_schema WHERE type = 'index' AND tbl_name = 'requests' AND sql IS NOT NULL",
                [],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(indexes, 0, "no index besides the key");
        let (column, cutoff) = TimeOrder::Key.at(NOW - 30 * DAY_MS);
        let plan: String = conn
            .query_row(
                &format!(
                    "EXPLAIN QUERY PLAN DELETE FROM requests WHERE {column} < ?1 AND ts_ms < ?2"
                ),
                params![cutoff, 0],
                |row| row.get(3),
            )
            .unwrap();
        assert!(plan.contains("SEARCH requests USING PRIMARY KEY"), "{plan}");
    }

    /// A ledger from before time-ordered ids (a rowid table, random ids) keeps finding rows by
    /// `ts_ms`, through an index.
    #[tokio::test]
    async fn an_older_ledger_finds_rows_by_time_through_its_index() {
        let dir = tempfile::tempdir().unwrap();
        let older = SCHEMA.replace(") WITHOUT ROWID;", ");");
        assert_ne!(older, SCHEMA);
        let conn = Connection::open(dir.path().join(LEDGER_FILE)).unwrap();
        conn.execute_batch(&older).unwrap();
        let mut ids = Vec::new();
        for (age, outcome) in AGES {
            let mut r = record(&request_id::text(rand::random()), 1, 1, outcome);
            r.ts_ms = NOW - age;
            write_row(&mut conn.prepare(INSERT_REQUEST).unwrap(), &r).unwrap();
            ids.push(r.request_id);
        }
        drop(conn);
        assert_eq!(reopened(dir.path(), &ids), expected());
        let conn = Connection::open(dir.path().join(LEDGER_FILE)).unwrap();
        assert_eq!(TimeOrder::of(&conn).unwrap(), TimeOrder::Index);
    }
}
