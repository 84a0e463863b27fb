//! The ledger's one writer thread: admissions, settlements, refusals and thresholds batched
//! into one transaction per commit group, acknowledged once durable, with the day and month
//! totals changed in the same transaction.

use super::*;

/// The admissions a commit made durable, answered together.
pub(super) struct Committed {
    waiting: Vec<oneshot::Sender<Result<(), LedgerError>>>,
    /// Flushes in the batch, answered after its admissions: once `flush` returns, every
    /// admission sent before it has its answer.
    flushed: Vec<oneshot::Sender<()>>,
    /// `Err` carries the commit's error text (each waiter gets its own `LedgerError`).
    result: Result<(), String>,
}

impl Committed {
    fn answer(self) {
        for ack in self.waiting {
            let _ = ack.send(
                self.result
                    .as_ref()
                    .map(|_| ())
                    .map_err(|e| LedgerError::Commit(e.clone())),
            );
        }
        for ack in self.flushed {
            let _ = ack.send(());
        }
    }
}

/// How a commit's waiting admissions are told. Answering each one from the writer thread woke
/// the runtime's worker once per admission: on a shared core the woken worker preempts the
/// writer, runs the one ready request, parks, and the writer's next answer wakes it again (about
/// nine `eventfd` wake-ups per commit at concurrency 16; metered throughput rose by a third
/// without them). A task on the runtime answers the whole commit instead: one cross-thread wake
/// per commit, and the requests it readies go on the worker's own run queue.
pub(super) enum Acks {
    /// Through a task on the runtime the ledger was opened on.
    Runtime(tokio::sync::mpsc::UnboundedSender<Committed>),
    /// Straight from the writer: the ledger was opened outside a multi-threaded runtime (a
    /// current-thread runtime runs the task only while someone blocks on it, so admissions
    /// awaited from elsewhere would never be answered), or that runtime is gone.
    Direct,
}

impl Acks {
    pub(super) fn start() -> Self {
        let runtime = match tokio::runtime::Handle::try_current() {
            Ok(runtime)
                if runtime.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread =>
            {
                runtime
            }
            _ => return Self::Direct,
        };
        let (sender, mut commits) = tokio::sync::mpsc::unbounded_channel::<Committed>();
        runtime.spawn(async move {
            while let Some(committed) = commits.recv().await {
                committed.answer();
            }
        });
        Self::Runtime(sender)
    }

    fn send(&self, committed: Committed) {
        if committed.waiting.is_empty() && committed.flushed.is_empty() {
            return;
        }
        match self {
            Self::Runtime(sender) => {
                if let Err(tokio::sync::mpsc::error::SendError(committed)) = sender.send(committed)
                {
                    committed.answer();
                }
            }
            Self::Direct => committed.answer(),
        }
    }
}

/// Turns given to the request threads before a commit, while each brings more records.
const GATHER_TURNS: usize = 4;

/// The most records in one commit.
const MAX_BATCH: usize = 512;

pub(super) fn writer(
    conn: Connection,
    ops: mpsc::Receiver<Op>,
    mut json_lines: Option<std::fs::File>,
    path: PathBuf,
    acks: Acks,
) {
    // `open` prepared them once already, so this fails only if SQLite itself does; then the
    // batch is answered with the error, as a failed commit is, and the next one tries again.
    let mut statements = Statements::prepare(&conn);
    let mut refused = refusals::Counts::default();
    let mut refusals_written = std::time::Instant::now();
    loop {
        // Waiting refusal counts are written on time even when nothing else comes.
        let next = if refused.is_empty() {
            ops.recv().map_err(|_| mpsc::RecvTimeoutError::Disconnected)
        } else {
            ops.recv_timeout(REFUSALS_EVERY.saturating_sub(refusals_written.elapsed()))
        };
        let first = match next {
            Ok(op) => Some(op),
            Err(mpsc::RecvTimeoutError::Timeout) => None,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        if statements.is_err() {
            statements = Statements::prepare(&conn);
        }
        // Give the request threads turns before committing, while each brings more records
        // (up to GATHER_TURNS): on a busy core they queue more meanwhile and one commit covers
        // them all (a commit costs the same for one record as for fifty). With nothing else
        // runnable the first turn returns at once and brings nothing.
        let mut batch: Vec<Op> = first.into_iter().collect();
        for _ in 0..GATHER_TURNS {
            if batch.is_empty() || batch.len() >= MAX_BATCH {
                break;
            }
            std::thread::yield_now();
            let before = batch.len();
            batch.extend(ops.try_iter().take(MAX_BATCH - before));
            if batch.len() == before {
                break;
            }
        }
        for op in &batch {
            if let Op::Refused(refusal) = op {
                refused.add(refusal);
            }
        }
        let refusals_due = !refused.is_empty()
            && (refusals_written.elapsed() >= REFUSALS_EVERY
                || batch.iter().any(|op| matches!(op, Op::Flush(_))));
        if !refusals_due && batch.iter().all(|op| matches!(op, Op::Refused(_))) {
            // Only refusals, and not their time yet: no commit (no WAL pages) at all.
            continue;
        }
        let result = match statements.as_mut() {
            Ok(statements) => commit(statements, &batch, refusals_due.then_some(&refused))
                .map_err(|error| error.to_string()),
            Err(error) => Err(format!("preparing the ledger's statements failed: {error}")),
        };
        if refusals_due && result.is_ok() {
            if let Some(file) = json_lines.as_mut() {
                // Refusals go out as their sums, one line per tenant, minute and reason (a
                // line per refused request would let one tenant fill the disk).
                for row in refused.rows() {
                    write_json_line(file, &row);
                }
            }
            refused.clear();
            refusals_written = std::time::Instant::now();
        }
        if let Err(error) = &result {
            tracing::error!(path = %path.display(), "ledger commit failed: {error}");
        }
        let mut committed = Committed {
            waiting: Vec::new(),
            flushed: Vec::new(),
            result,
        };
        for op in batch {
            match op {
                Op::Admit(_, ack) => committed.waiting.push(ack),
                Op::Settle(record, _) => {
                    if let Some(file) = json_lines.as_mut() {
                        write_json_line(file, &record);
                    }
                }
                Op::Refused(_) => {}
                #[cfg(test)]
                Op::Insert(_) => {}
                Op::Flush(ack) => {
                    if let Some(file) = json_lines.as_mut() {
                        let _ = file.flush();
                    }
                    committed.flushed.push(ack);
                }
                Op::Threshold { .. } => {}
            }
        }
        acks.send(committed);
    }
    // The ledger is closing: the refusal counts still waiting are written.
    if refused.is_empty() {
        return;
    }
    let Ok(statements) = statements.as_mut() else {
        tracing::error!(path = %path.display(), "closing with refusal counts unwritten: the ledger's statements could not be prepared");
        return;
    };
    {
        match commit(statements, &[], Some(&refused)) {
            Ok(()) => {
                if let Some(file) = json_lines.as_mut() {
                    for row in refused.rows() {
                        write_json_line(file, &row);
                    }
                    let _ = file.flush();
                }
            }
            Err(error) => {
                tracing::error!(path = %path.display(), "writing the refusal counts failed: {error}");
            }
        }
    }
}

/// How often the WAL is copied back into the database file.
const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);

/// Checkpoints the WAL from its own connection, so the writer never does: an automatic
/// checkpoint runs inside the commit that crosses the threshold and held every admission waiting
/// on that commit for the whole copy and fsync (~100 ms p99 spikes under load). A PASSIVE
/// checkpoint never blocks the writer; once it has copied everything, the writer's next commit
/// starts the WAL over, so the file stays small.
pub(super) fn checkpointer(conn: &Connection, writer_gone: &mpsc::Receiver<()>) {
    while let Err(mpsc::RecvTimeoutError::Timeout) = writer_gone.recv_timeout(CHECKPOINT_INTERVAL) {
        if let Err(error) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::warn!("ledger checkpoint failed: {error}");
        }
    }
    // The writer is gone: copy what is left so the WAL does not outlive the process.
    let _ = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
}

pub(super) fn write_json_line(file: &mut std::fs::File, record: &impl Serialize) {
    match serde_json::to_vec(record) {
        Ok(mut line) => {
            line.push(b'\n');
            if let Err(error) = file.write_all(&line) {
                tracing::warn!("writing the ledger's JSON lines failed: {error}");
            }
        }
        Err(error) => tracing::warn!("encoding a ledger record failed: {error}"),
    }
}

/// Statements of the commit path, parsed once per connection (SQLite's parser was a third of
/// the writer's time when each statement was prepared per call).
pub(super) const INSERT_REQUEST: &str = "INSERT OR REPLACE INTO requests (request_id, provider, model, tokens_input, tokens_output,
        cached_input_tokens, tokens, cost_micro_usd, latency_ms, status, outcome, fallback_count, estimated,
        timestamp, ts_ms, tenant_id, source, day, month)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)";
/// Binds only what a settlement changes (see `write_settlement`): the admission's fixed facts
/// (its time, tenant, source, day and month) are not bound again to be ignored, as they were
/// when both statements took the same nineteen parameters.
const SETTLE_REQUEST: &str =
    "UPDATE requests SET provider = ?2, model = ?3, tokens_input = ?4, tokens_output = ?5,
        cached_input_tokens = ?6, tokens = ?7, cost_micro_usd = ?8, latency_ms = ?9, status = ?10,
        outcome = ?11, fallback_count = ?12, estimated = ?13
     WHERE request_id = ?1 AND outcome IN ('reserved', 'interrupted')";
const ADD_TOTALS: &str = "INSERT INTO totals (tenant_id, period, tokens, requests, micro_usd) VALUES (?1, ?2, ?3, ?4, ?5)
     ON CONFLICT (tenant_id, period) DO UPDATE SET tokens = tokens + ?3, requests = requests + ?4,
        micro_usd = micro_usd + ?5";
const INSERT_THRESHOLD: &str = "INSERT OR IGNORE INTO thresholds (tenant_id, month, percent, crossed_at) VALUES (?1, ?2, ?3, ?4)";

/// The writer's statements, prepared once for its life. Through rusqlite's statement cache each
/// use hashed the statement's whole text twice (to take it and to put it back) and cleared its
/// bindings: ~6,000 instructions a request, with `BEGIN` and `COMMIT` parsed anew for every
/// commit (callgrind).
pub(super) struct Statements<'c> {
    begin: Statement<'c>,
    commit: Statement<'c>,
    rollback: Statement<'c>,
    insert: Statement<'c>,
    settle: Statement<'c>,
    add_totals: Statement<'c>,
    insert_threshold: Statement<'c>,
    add_refusals: Statement<'c>,
}

impl<'c> Statements<'c> {
    pub(super) fn prepare(conn: &'c Connection) -> rusqlite::Result<Self> {
        Ok(Self {
            begin: conn.prepare("BEGIN")?,
            commit: conn.prepare("COMMIT")?,
            rollback: conn.prepare("ROLLBACK")?,
            insert: conn.prepare(INSERT_REQUEST)?,
            settle: conn.prepare(SETTLE_REQUEST)?,
            add_totals: conn.prepare(ADD_TOTALS)?,
            insert_threshold: conn.prepare(INSERT_THRESHOLD)?,
            add_refusals: conn.prepare(refusals::ADD)?,
        })
    }
}

/// What one batch adds to one tenant's totals of one period: keyed by (tenant, period kind,
/// period key) borrowed from the batch's records; the `day:…`/`month:…` text is made once per
/// key when written, not per record.
///
/// hashbrown's map, hashed with foldhash: SipHash over the three texts of four keys a request
/// was ~1,700 of the writer's instructions per request (callgrind); the keys are the config's
/// tenants and periods.
type TotalsDelta<'b> = hashbrown::HashMap<(&'b str, &'static str, &'b str), (i64, i64, i64)>;

/// Writes a batch (and the refusal counts, when due) in one transaction; all of it or, on an
/// error, none of it.
pub(super) fn commit(
    statements: &mut Statements<'_>,
    batch: &[Op],
    refused: Option<&refusals::Counts>,
) -> rusqlite::Result<()> {
    if let Err(error) = statements.begin.execute([]) {
        // A transaction a failed ROLLBACK left open would fail every batch after it: end it
        // and begin once more.
        let _ = statements.rollback.execute([]);
        statements.begin.execute([]).map_err(|_| error)?;
    }
    let written =
        write_batch(statements, batch, refused).and_then(|()| statements.commit.execute([]));
    if written.is_err() {
        // Nothing of a failed batch stays (a failed COMMIT leaves its transaction open). With
        // no transaction left open this fails too, harmlessly.
        let _ = statements.rollback.execute([]);
    }
    written.map(drop)
}

pub(super) fn write_batch(
    statements: &mut Statements<'_>,
    batch: &[Op],
    refused: Option<&refusals::Counts>,
) -> rusqlite::Result<()> {
    // A batch's changes to the totals are summed first and written once per tenant and period:
    // under load one batch holds many requests of few tenants.
    let mut totals = TotalsDelta::default();
    for op in batch {
        match op {
            Op::Admit(record, _) => {
                write_row(&mut statements.insert, record)?;
                add_totals(
                    &mut totals,
                    record,
                    sql_int(record.tokens),
                    1,
                    sql_int(record.cost_micro_usd),
                );
            }
            Op::Settle(record, reserved) => {
                // The settled record replaces the admission's figures in place (an UPDATE
                // rewrites one row; a REPLACE would delete and re-insert it in every index).
                // No row still open (its admission never committed, or it was settled already):
                // nothing to change in the totals. `interrupted` is open too: a gateway that
                // opened the same ledger (a rolling update on a shared volume) marks the other's
                // in-flight rows so, and their settlements still arrive.
                if write_settlement(&mut statements.settle, record)? == 0 {
                    continue;
                }
                // A request that never reached a provider is not counted at all.
                let requests = if record.outcome == crate::metering::Outcome::Failed.as_str() {
                    -1
                } else {
                    0
                };
                add_totals(
                    &mut totals,
                    record,
                    sql_int(record.tokens) - sql_int(reserved.tokens),
                    requests,
                    sql_int(record.cost_micro_usd) - sql_int(reserved.cost_micro_usd),
                );
            }
            // Counted by the writer, written as sums (see `refusals::Counts`).
            Op::Refused(_) => {}
            #[cfg(test)]
            Op::Insert(record) => {
                write_row(&mut statements.insert, record)?;
            }
            Op::Threshold {
                tenant,
                month,
                percent,
                at,
            } => {
                statements
                    .insert_threshold
                    .execute(params![tenant, month, percent, at])?;
            }
            Op::Flush(_) => {}
        }
    }
    for ((tenant, kind, key), (tokens, requests, micro_usd)) in &totals {
        let period = format!("{kind}:{key}");
        statements
            .add_totals
            .execute(params![tenant, period, tokens, requests, micro_usd])?;
    }
    match refused {
        Some(refused) => refused.write(&mut statements.add_refusals),
        None => Ok(()),
    }
}

/// Runs `INSERT_REQUEST`: a record's figures (as a settlement writes them), then the facts fixed
/// at its admission; the number of rows changed.
pub(super) fn write_row(statement: &mut Statement<'_>, r: &Record) -> rusqlite::Result<usize> {
    bind_figures(statement, r)?;
    statement.raw_bind_parameter(14, &r.timestamp)?;
    statement.raw_bind_parameter(15, sql_int(r.ts_ms))?;
    statement.raw_bind_parameter(16, &r.tenant_id)?;
    statement.raw_bind_parameter(17, &r.source)?;
    statement.raw_bind_parameter(18, &r.day)?;
    statement.raw_bind_parameter(19, &r.month)?;
    statement.raw_execute()
}

/// Runs `SETTLE_REQUEST` with a settled record's figures; the number of rows changed (0 or 1).
fn write_settlement(statement: &mut Statement<'_>, r: &Record) -> rusqlite::Result<usize> {
    bind_figures(statement, r)?;
    statement.raw_execute()
}

/// Binds what a settlement writes of a record as parameters ?1 to ?13 of both statements: the
/// request id it is found by, then what served it and what it used. Bound one by one (as
/// `params!` would): an array of values to bind cost ~1,500 instructions a request more.
fn bind_figures(statement: &mut Statement<'_>, r: &Record) -> rusqlite::Result<()> {
    statement.raw_bind_parameter(1, &r.request_id)?;
    statement.raw_bind_parameter(2, &r.provider)?;
    statement.raw_bind_parameter(3, &r.model)?;
    statement.raw_bind_parameter(4, sql_int(r.tokens_input))?;
    statement.raw_bind_parameter(5, sql_int(r.tokens_output))?;
    statement.raw_bind_parameter(6, sql_int(r.cached_input_tokens))?;
    statement.raw_bind_parameter(7, sql_int(r.tokens))?;
    statement.raw_bind_parameter(8, sql_int(r.cost_micro_usd))?;
    statement.raw_bind_parameter(9, sql_int(r.latency_ms))?;
    statement.raw_bind_parameter(10, r.status)?;
    statement.raw_bind_parameter(11, &r.outcome)?;
    statement.raw_bind_parameter(12, r.fallback_count)?;
    statement.raw_bind_parameter(13, r.estimated)
}

/// Adds a record's change to its tenant's day and month totals of the batch.
pub(super) fn add_totals<'b>(
    totals: &mut TotalsDelta<'b>,
    r: &'b Record,
    tokens: i64,
    requests: i64,
    micro_usd: i64,
) {
    for (kind, key) in [("day", r.day.as_str()), ("month", r.month.as_str())] {
        let entry = totals.entry((r.meter.as_str(), kind, key)).or_default();
        entry.0 += tokens;
        entry.1 += requests;
        entry.2 += micro_usd;
    }
}
