//! The in-process backend's usage store: budgets' spend and the tokens used
//! by day, kept on disk so a restart never resets a day's budget.
//!
//! SQLite (through `rusqlite`, bundled) rather than redb: its WAL mode lets
//! `hfconnect usage` read the file while `serve` writes it (redb opens a
//! file in one process only), its format is stable and readable with the
//! `sqlite3` tool an admin already has, and it is the most used embedded
//! store there is. One process writes a store: `serve` holds an exclusive
//! lock on `<store>.lock` while it runs, and a second one is refused.
//!
//! The ledger in memory decides; the store follows it. Writes go to one
//! thread that commits whatever has queued in one transaction (group
//! commit), so a task never waits on the disk. A slot is written as its
//! absolute figures (the latest write wins), a day's tokens as increments.
//! Reservations are written so `hfconnect usage` shows them, and dropped
//! when a store is opened: the process that held them is gone, as a Redis
//! reservation of a replica that died expires.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};

use crate::catalog::Span;

/// The store's schema version; a newer file is refused, not rewritten.
const SCHEMA: i64 = 1;

/// How long the writer lets writes gather before it commits them: what a
/// crash of the process can lose of the spend recorded just before it.
const LINGER: std::time::Duration = std::time::Duration::from_millis(5);

/// How long rows are kept: spend of windows that ended more than this ago,
/// and days older than this, are pruned when a store is opened.
pub(crate) const KEEP_DAYS: u64 = 93;

/// One budget slot's figures, as the ledger holds them now.
#[derive(Debug, Clone)]
pub(crate) struct SlotRow {
    /// The budget's identity (name, subject, members, target, window).
    pub budget: String,
    /// `""` for the budget's subject as a whole, else the member.
    pub payer: String,
    pub span: Span,
    pub used: u64,
    pub reserved: u64,
}

/// Tokens one subject used on one model in one UTC day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DayRow {
    /// Days since the Unix epoch.
    pub day: u64,
    pub subject: String,
    pub integration: String,
    pub model: String,
    pub prompt: u64,
    pub completion: u64,
}

enum Write {
    Slot(SlotRow),
    Day(DayRow),
    Flush(mpsc::Sender<()>),
}

/// Why a store cannot be used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StoreError {
    #[error("the usage store `{path}` cannot be opened: {why}")]
    Open { path: String, why: String },
    #[error("the usage store `{path}` is in use by another process (its lock `{path}.lock` is held); one process writes a store")]
    Locked { path: String },
    #[error("the usage store `{path}` was written by a newer hfconnect (schema {found}, this one knows {SCHEMA})")]
    Newer { path: String, found: i64 },
}

fn shown(p: &Path) -> String {
    crate::untrusted::Untrusted(&p.display().to_string()).to_string()
}

fn sql(path: &Path) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
    move |e| StoreError::Open {
        path: shown(path),
        why: e.to_string(),
    }
}

/// What a store held when it was opened.
#[derive(Debug, Default)]
pub(crate) struct Loaded {
    pub slots: Vec<SlotRow>,
    pub days: Vec<DayRow>,
}

/// A usage store open for writing.
pub(crate) struct Store {
    path: PathBuf,
    tx: Option<mpsc::Sender<Write>>,
    writer: Option<JoinHandle<()>>,
    #[cfg(target_os = "linux")]
    _lock: nix::fcntl::Flock<std::fs::File>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn schema(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
         CREATE TABLE IF NOT EXISTS spend (
           budget TEXT NOT NULL, payer TEXT NOT NULL,
           window_start INTEGER NOT NULL, window_end INTEGER NOT NULL,
           used INTEGER NOT NULL, reserved INTEGER NOT NULL,
           PRIMARY KEY (budget, payer, window_start)) WITHOUT ROWID;
         CREATE TABLE IF NOT EXISTS daily (
           day INTEGER NOT NULL, subject TEXT NOT NULL,
           integration TEXT NOT NULL, model TEXT NOT NULL,
           prompt INTEGER NOT NULL, completion INTEGER NOT NULL,
           PRIMARY KEY (day, subject, integration, model)) WITHOUT ROWID;",
    )
    .map_err(sql(path))?;
    let found: Option<i64> = conn
        .query_row("SELECT value FROM meta WHERE key = 'schema'", [], |r| {
            r.get(0)
        })
        .optional()
        .map_err(sql(path))?;
    match found {
        Some(v) if v > SCHEMA => Err(StoreError::Newer {
            path: shown(path),
            found: v,
        }),
        Some(_) => Ok(()),
        None => conn
            .execute(
                "INSERT INTO meta (key, value) VALUES ('schema', ?1)",
                [SCHEMA],
            )
            .map(drop)
            .map_err(sql(path)),
    }
}

fn read(conn: &Connection, path: &Path, now: u64) -> Result<Loaded, StoreError> {
    let to_u64 = |v: i64| u64::try_from(v).unwrap_or(0);
    let mut slots = Vec::new();
    let mut q = conn
        .prepare("SELECT budget, payer, window_start, window_end, used, reserved FROM spend WHERE window_end > ?1")
        .map_err(sql(path))?;
    let rows = q
        .query_map([now as i64], |r| {
            Ok(SlotRow {
                budget: r.get(0)?,
                payer: r.get(1)?,
                span: Span {
                    start: to_u64(r.get(2)?),
                    end: to_u64(r.get(3)?),
                },
                used: to_u64(r.get(4)?),
                reserved: to_u64(r.get(5)?),
            })
        })
        .map_err(sql(path))?;
    for row in rows {
        slots.push(row.map_err(sql(path))?);
    }
    let mut days = Vec::new();
    let first = (now / 86_400).saturating_sub(KEEP_DAYS);
    let mut q = conn
        .prepare("SELECT day, subject, integration, model, prompt, completion FROM daily WHERE day >= ?1 ORDER BY day, subject, integration, model")
        .map_err(sql(path))?;
    let rows = q
        .query_map([first as i64], |r| {
            Ok(DayRow {
                day: to_u64(r.get(0)?),
                subject: r.get(1)?,
                integration: r.get(2)?,
                model: r.get(3)?,
                prompt: to_u64(r.get(4)?),
                completion: to_u64(r.get(5)?),
            })
        })
        .map_err(sql(path))?;
    for row in rows {
        days.push(row.map_err(sql(path))?);
    }
    Ok(Loaded { slots, days })
}

/// Read a store without writing it (`hfconnect usage`, while `serve` may run).
pub(crate) fn read_only(path: &Path, now: u64) -> Result<Loaded, StoreError> {
    if !path.exists() {
        return Err(StoreError::Open {
            path: shown(path),
            why: "there is no such file (no task has been charged yet, or the path is wrong)"
                .into(),
        });
    }
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sql(path))?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(sql(path))?;
    read(&conn, path, now)
}

#[cfg(target_os = "linux")]
fn lock(path: &Path) -> Result<nix::fcntl::Flock<std::fs::File>, StoreError> {
    let mut lock_path = path.as_os_str().to_owned();
    lock_path.push(".lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| StoreError::Open {
            path: shown(path),
            why: format!("its lock file cannot be made: {e}"),
        })?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock)
        .map_err(|_| StoreError::Locked { path: shown(path) })
}

impl Store {
    /// Open (or make) the store at `path` for writing, with what it holds
    /// for windows not over at `now`; reservations of a previous run are
    /// released and old rows pruned.
    pub(crate) fn open(path: &Path, now: u64) -> Result<(Store, Loaded), StoreError> {
        #[cfg(target_os = "linux")]
        let lock = lock(path)?;
        let conn = Connection::open(path).map_err(sql(path))?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(sql(path))?;
        // WAL lets readers in while this process writes; NORMAL syncs at
        // checkpoints: a crash of the process loses nothing committed.
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(sql(path))?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(sql(path))?;
        schema(&conn, path)?;
        let old_window = now.saturating_sub(KEEP_DAYS * 86_400);
        conn.execute_batch(&format!(
            "UPDATE spend SET reserved = 0 WHERE reserved != 0;
             DELETE FROM spend WHERE window_end < {old_window};
             DELETE FROM daily WHERE day < {};",
            (now / 86_400).saturating_sub(KEEP_DAYS)
        ))
        .map_err(sql(path))?;
        let loaded = read(&conn, path, now)?;
        let (tx, rx) = mpsc::channel();
        let shown_path = shown(path);
        let writer = std::thread::Builder::new()
            .name("hfconnect-usage-store".into())
            .spawn(move || write_loop(conn, rx, shown_path))
            .map_err(|e| StoreError::Open {
                path: shown(path),
                why: format!("its writer thread cannot start: {e}"),
            })?;
        Ok((
            Store {
                path: path.to_path_buf(),
                tx: Some(tx),
                writer: Some(writer),
                #[cfg(target_os = "linux")]
                _lock: lock,
            },
            loaded,
        ))
    }

    pub(crate) fn slot(&self, row: SlotRow) {
        self.send(Write::Slot(row));
    }

    pub(crate) fn day(&self, row: DayRow) {
        self.send(Write::Day(row));
    }

    fn send(&self, w: Write) {
        if let Some(tx) = &self.tx {
            // The writer only stops when the store is dropped.
            let _ = tx.send(w);
        }
    }

    /// Wait until everything sent so far is committed.
    pub(crate) fn flush(&self) {
        let (done, wait) = mpsc::channel();
        self.send(Write::Flush(done));
        let _ = wait.recv();
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        // Closing the channel lets the writer commit what is queued and stop.
        self.tx = None;
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

/// The writer: one transaction per batch of whatever has queued.
fn write_loop(mut conn: Connection, rx: mpsc::Receiver<Write>, path: String) {
    let mut failing = false;
    while let Ok(first) = rx.recv() {
        // Let a burst gather (a flush is not kept waiting): at most one
        // commit every LINGER, whatever the rate of tasks.
        if !matches!(first, Write::Flush(_)) {
            std::thread::sleep(LINGER);
        }
        // Coalesce what queued: a slot's latest figures win (they are
        // absolute), a day's tokens add up; under load a batch of thousands
        // of writes is a handful of rows.
        let mut slots: rustc_hash::FxHashMap<(String, String, u64), SlotRow> =
            rustc_hash::FxHashMap::default();
        let mut days: rustc_hash::FxHashMap<(u64, String, String, String), (u64, u64)> =
            rustc_hash::FxHashMap::default();
        let mut flushed = Vec::new();
        for w in std::iter::once(first).chain(rx.try_iter().take(65_536)) {
            match w {
                Write::Slot(r) => {
                    slots.insert((r.budget.clone(), r.payer.clone(), r.span.start), r);
                }
                Write::Day(r) => {
                    let t = days
                        .entry((r.day, r.subject, r.integration, r.model))
                        .or_default();
                    t.0 = t.0.saturating_add(r.prompt);
                    t.1 = t.1.saturating_add(r.completion);
                }
                Write::Flush(done) => flushed.push(done),
            }
        }
        let result = (|| -> rusqlite::Result<()> {
            let tx = conn.transaction()?;
            {
                let mut slot = tx.prepare_cached(
                    "INSERT INTO spend (budget, payer, window_start, window_end, used, reserved)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT (budget, payer, window_start)
                     DO UPDATE SET used = excluded.used, reserved = excluded.reserved, window_end = excluded.window_end",
                )?;
                let mut day = tx.prepare_cached(
                    "INSERT INTO daily (day, subject, integration, model, prompt, completion)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT (day, subject, integration, model)
                     DO UPDATE SET prompt = prompt + excluded.prompt, completion = completion + excluded.completion",
                )?;
                let n = |v: u64| v.min(i64::MAX as u64) as i64;
                for r in slots.values() {
                    slot.execute(params![
                        r.budget,
                        r.payer,
                        n(r.span.start),
                        n(r.span.end),
                        n(r.used),
                        n(r.reserved)
                    ])?;
                }
                for ((d, subject, integration, model), (p, c)) in &days {
                    day.execute(params![n(*d), subject, integration, model, n(*p), n(*c)])?;
                }
            }
            tx.commit()
        })();
        match result {
            Ok(()) if failing => {
                failing = false;
                tracing::warn!(store = %path, "the usage store is written again");
            }
            Ok(()) => {}
            Err(e) if !failing => {
                failing = true;
                tracing::error!(store = %path, error = %crate::untrusted::Field::new(&e.to_string()), "the usage store cannot be written: spend is still counted in memory, but a restart would forget what was not written");
            }
            Err(_) => {}
        }
        for done in flushed {
            let _ = done.send(());
        }
    }
}
