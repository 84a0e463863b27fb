//! The ledger's admissions journal: the admissions of a batch appended to a plain file in one
//! `write`, which makes them survive `kill -9` as surely as a SQLite commit does (both are in
//! the OS once the call returns; neither syncs to the disk per request) at a small part of the
//! cost, so a request waits for that write instead of a transaction. SQLite then takes the
//! records in larger, less frequent transactions, after which the journal is emptied.
//!
//! Each ledger writer keeps its own journal file in the state directory, locked (`flock`) for
//! as long as the process lives. At open, a journal whose lock is free belongs to a gateway
//! that is gone: its records are written to SQLite (those already there are skipped) and the
//! file removed. A journal still locked belongs to a live gateway sharing the directory (a
//! rolling update on a shared volume) and is left alone.

use std::fs::{File, OpenOptions};
use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};

use super::ledger::Record;

/// Journal files are named `ledger-journal-<random>.jsonl`.
const PREFIX: &str = "ledger-journal-";
const SUFFIX: &str = ".jsonl";

/// One line: the record and the fields its analytics form leaves out.
type Line = (Record, u64, String, String);

/// This process's journal, locked while it is open.
pub(super) struct Journal {
    file: File,
    path: PathBuf,
    buffer: Vec<u8>,
}

impl Journal {
    /// Creates a new journal in `dir` and locks it.
    pub(super) fn create(dir: &Path) -> std::io::Result<Self> {
        let path = dir.join(format!("{PREFIX}{:016x}{SUFFIX}", rand::random::<u64>()));
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)?;
        file.lock()?;
        Ok(Self {
            file,
            path,
            buffer: Vec::new(),
        })
    }

    /// Appends `records` in one write; they are journalled once this returns.
    pub(super) fn append<'r>(
        &mut self,
        records: impl IntoIterator<Item = &'r Record>,
    ) -> std::io::Result<()> {
        self.buffer.clear();
        for record in records {
            let line = (record, record.ts_ms, &record.day, &record.month);
            serde_json::to_writer(&mut self.buffer, &line)?;
            self.buffer.push(b'\n');
        }
        self.file.write_all(&self.buffer)
    }

    /// Empties the journal: everything in it is in SQLite now.
    pub(super) fn clear(&mut self) -> std::io::Result<()> {
        self.file.set_len(0)
    }

    /// Removes the journal (a clean shutdown, with everything in SQLite).
    pub(super) fn remove(self) -> std::io::Result<()> {
        std::fs::remove_file(&self.path)
    }

    /// Where it is.
    pub(super) fn path(&self) -> &Path {
        &self.path
    }
}

/// The journal of a gateway that is gone, locked by this process until it is removed.
pub(super) struct Orphan {
    path: PathBuf,
    _lock: File,
    /// The admissions it holds, in order.
    pub(super) records: Vec<Record>,
    /// Lines that could not be read (a write cut short by the crash: never answered).
    pub(super) unreadable: usize,
}

impl Orphan {
    /// Removes the file once its records are in SQLite.
    pub(super) fn remove(self) -> std::io::Result<()> {
        std::fs::remove_file(&self.path)
    }

    /// Where it is.
    pub(super) fn path(&self) -> &Path {
        &self.path
    }
}

/// The journals in `dir` whose writer is gone (their lock is free), read.
pub(super) fn orphans(dir: &Path) -> std::io::Result<Vec<Orphan>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let is_journal = path
            .file_name()
            .and_then(|name| name.to_str())
            .is_some_and(|name| name.starts_with(PREFIX) && name.ends_with(SUFFIX));
        if !is_journal {
            continue;
        }
        let file = OpenOptions::new().read(true).write(true).open(&path)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => continue,
            Err(std::fs::TryLockError::Error(error)) => return Err(error),
        }
        let (records, unreadable) = read(&file)?;
        found.push(Orphan {
            path,
            _lock: file,
            records,
            unreadable,
        });
    }
    Ok(found)
}

/// Every record of a journal, and how many lines could not be read.
fn read(file: &File) -> std::io::Result<(Vec<Record>, usize)> {
    let mut records = Vec::new();
    let mut unreadable = 0;
    for line in BufReader::new(file).split(b'\n') {
        let line = line?;
        if line.is_empty() {
            continue;
        }
        match serde_json::from_slice::<Line>(&line) {
            Ok((mut record, ts_ms, day, month)) => {
                record.ts_ms = ts_ms;
                record.day = day;
                record.month = month;
                records.push(record);
            }
            Err(_) => unreadable += 1,
        }
    }
    Ok((records, unreadable))
}

/// Every record journalled in `dir` and not yet cleared, whoever holds the journal (tests).
pub fn read_all(dir: &Path) -> std::io::Result<Vec<Record>> {
    let mut records = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|name| name.to_str());
        if name.is_some_and(|name| name.starts_with(PREFIX) && name.ends_with(SUFFIX)) {
            records.extend(read(&File::open(&path)?)?.0);
        }
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str) -> Record {
        Record {
            request_id: id.to_owned(),
            timestamp: "2026-12-01T04:00:00Z".to_owned(),
            ts_ms: 1_764_561_600_000,
            tenant_id: "team/acme".to_owned(),
            provider: "openai".to_owned(),
            model: "gpt-4o-mini".to_owned(),
            source: "platform".to_owned(),
            tokens_input: 0,
            tokens_output: 0,
            cached_input_tokens: 0,
            tokens: 200,
            cost_micro_usd: 800,
            latency_ms: 0,
            status: 0,
            outcome: "reserved".to_owned(),
            fallback_count: 0,
            estimated: true,
            day: "2026-12-01".to_owned(),
            month: "2026-12".to_owned(),
        }
    }

    #[test]
    fn a_journal_is_read_back_whole_once_its_writer_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let mut journal = Journal::create(dir.path()).unwrap();
        journal.append([&record("a"), &record("b")]).unwrap();
        // Its writer alive: not an orphan.
        assert!(orphans(dir.path()).unwrap().is_empty());
        assert_eq!(read_all(dir.path()).unwrap().len(), 2);
        journal.append([&record("c")]).unwrap();
        let path = journal.path().to_owned();
        drop(journal);
        // A write cut short by the crash.
        OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"[{\"request_id\":\"d\",\"times")
            .unwrap();
        let found = orphans(dir.path()).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(
            found[0].records,
            vec![record("a"), record("b"), record("c")],
            "every field back, the ones the analytics form leaves out too"
        );
        assert_eq!(found[0].unreadable, 1);
        // Held by this reader: not an orphan for anyone else meanwhile.
        assert!(orphans(dir.path()).unwrap().is_empty());
        for orphan in found {
            orphan.remove().unwrap();
        }
        assert!(read_all(dir.path()).unwrap().is_empty());
    }

    #[test]
    fn a_cleared_journal_holds_nothing_and_takes_new_records() {
        let dir = tempfile::tempdir().unwrap();
        let mut journal = Journal::create(dir.path()).unwrap();
        journal.append([&record("a")]).unwrap();
        journal.clear().unwrap();
        assert!(read_all(dir.path()).unwrap().is_empty());
        journal.append([&record("b")]).unwrap();
        assert_eq!(read_all(dir.path()).unwrap(), vec![record("b")]);
        journal.remove().unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
