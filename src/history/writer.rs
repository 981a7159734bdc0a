//! The writer: a thread of its own that gathers the reader's records and
//! commits them in one transaction at least every [`COMMIT_EVERY`]; and
//! the retention, another thread that deletes what is too old in small
//! transactions. When the database fails (a full disk, a file made
//! read-only, a lock held too long) the writer keeps the records, up to
//! [`MAX_HELD`], says that the history is paused ([`Status`]), and tries
//! again every [`RETRY_EVERY`]; the live page goes on regardless.

use super::database::{Database, Location};
use super::record::Record;
use crate::monitor::Changed;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// A record waits at most this long before it is committed: a process
/// killed at any moment loses at most the records of this last period.
pub const COMMIT_EVERY: Duration = Duration::from_millis(250);

/// While the database fails, a new attempt this often.
pub const RETRY_EVERY: Duration = Duration::from_secs(1);

/// Records held in memory while the database fails; past this the
/// oldest are dropped (and counted in [`Status::lost`]). About 30 MiB
/// of finished jobs.
pub const MAX_HELD: usize = 200_000;

/// The most records one transaction carries while nothing fails.
const MAX_BATCH: usize = 20_000;

/// How the history fares, for the page and the logs.
#[derive(Debug, Default)]
pub struct Status {
    /// The database's file (or server, for PostgreSQL).
    file: PathBuf,
    /// Woken when writing pauses or resumes.
    wake: Option<Changed>,
    paused: Mutex<Option<String>>,
    written: AtomicU64,
    held: AtomicU64,
    lost: AtomicU64,
    changes: AtomicU64,
}

impl Status {
    /// The status of the history in `file`; `wake` hears of each pause
    /// and resumption.
    pub fn new(file: PathBuf, wake: Option<Changed>) -> Status {
        Status {
            file,
            wake,
            ..Status::default()
        }
    }

    /// The database's file.
    pub fn file(&self) -> &std::path::Path {
        &self.file
    }

    /// Why writing is paused (the database's error), or `None` while it
    /// writes.
    pub fn paused(&self) -> Option<String> {
        self.paused
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Records committed so far.
    pub fn written(&self) -> u64 {
        self.written.load(Relaxed)
    }

    /// Records waiting to be committed.
    pub fn held(&self) -> u64 {
        self.held.load(Relaxed)
    }

    /// Records dropped because the database failed for too long.
    pub fn lost(&self) -> u64 {
        self.lost.load(Relaxed)
    }

    /// A number that grows each time writing pauses or resumes.
    pub fn revision(&self) -> u64 {
        self.changes.load(Relaxed)
    }

    pub(crate) fn set_paused(&self, why: Option<String>) {
        let mut paused = self.paused.lock().unwrap_or_else(PoisonError::into_inner);
        if *paused != why {
            match &why {
                Some(e) => tracing::warn!("history paused, {e}; holding what comes in memory"),
                None => tracing::info!("history writing again"),
            }
            *paused = why;
            self.changes.fetch_add(1, Relaxed);
            if let Some(wake) = &self.wake {
                wake.send_modify(|()| {});
            }
        }
    }
}

/// Runs the writer until every sender is gone, then commits what is left
/// (one last attempt).
pub(crate) fn run(mut store: Database, records: Receiver<Vec<Record>>, status: Arc<Status>) {
    let mut pending: Vec<Record> = Vec::new();
    // When the pending records are due: COMMIT_EVERY after the first came,
    // or RETRY_EVERY after a failure.
    let mut due: Option<Instant> = None;
    loop {
        let received = match due {
            None => records.recv().map_err(|_| RecvTimeoutError::Disconnected),
            Some(at) => records.recv_timeout(at.saturating_duration_since(Instant::now())),
        };
        let open = match received {
            Ok(batch) => {
                pending.extend(batch);
                while let Ok(more) = records.try_recv() {
                    pending.extend(more);
                }
                true
            }
            Err(RecvTimeoutError::Timeout) => true,
            Err(RecvTimeoutError::Disconnected) => false,
        };
        if pending.is_empty() {
            if !open {
                return;
            }
            continue;
        }
        let at = *due.get_or_insert_with(|| Instant::now() + COMMIT_EVERY);
        if open && Instant::now() < at && pending.len() < MAX_BATCH {
            status.held.store(pending.len() as u64, Relaxed);
            continue;
        }
        match store.write(&pending) {
            Ok(()) => {
                status.written.fetch_add(pending.len() as u64, Relaxed);
                pending.clear();
                due = None;
                status.set_paused(None);
            }
            Err(e) => {
                status.set_paused(Some(e.to_string()));
                if pending.len() > MAX_HELD {
                    let excess = pending.len() - MAX_HELD;
                    pending.drain(..excess);
                    status.lost.fetch_add(excess as u64, Relaxed);
                }
                due = Some(Instant::now() + RETRY_EVERY);
                if !open {
                    tracing::warn!(
                        "history: {} records could not be written before the end",
                        pending.len()
                    );
                    return;
                }
            }
        }
        status.held.store(pending.len() as u64, Relaxed);
    }
}

/// Rows deleted per transaction by the retention.
const EXPIRE_CHUNK: usize = 5_000;

/// How often the retention looks for what has become too old.
const EXPIRE_EVERY: Duration = Duration::from_secs(60);

/// Deletes what ended more than `retain` ago, at once and then every
/// [`EXPIRE_EVERY`], until `stop` has a message or is gone. On its own
/// connection, in small transactions, so that the writer goes on.
pub(crate) fn retain(at: Location, retain: Duration, stop: Receiver<()>) {
    let mut opened = None;
    loop {
        let cutoff = crate::monitor::now_ms()
            .saturating_sub(u64::try_from(retain.as_millis()).unwrap_or(u64::MAX));
        let mut gone = 0;
        if opened.is_none() {
            match Database::open(&at) {
                Ok(db) => opened = Some(db),
                Err(e) => tracing::debug!("history retention: {e}; again later"),
            }
        }
        while let Some(db) = opened.as_mut() {
            match db.expire(cutoff, EXPIRE_CHUNK) {
                Ok(0) => break,
                Ok(n) => gone += n,
                Err(e) => {
                    tracing::debug!("history retention: {e}; again later");
                    break;
                }
            }
            // Between chunks, the writer may take the lock.
            match stop.recv_timeout(Duration::from_millis(1)) {
                Err(RecvTimeoutError::Timeout) => {}
                _ => return,
            }
        }
        if gone > 0 {
            tracing::info!("history: {gone} rows older than the retention deleted");
        }
        match stop.recv_timeout(EXPIRE_EVERY) {
            Err(RecvTimeoutError::Timeout) => {}
            _ => return,
        }
    }
}
