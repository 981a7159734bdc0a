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
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// A record waits at most this long before it is committed: a process
/// killed at any moment loses at most the records of this last period.
pub const COMMIT_EVERY: Duration = Duration::from_millis(250);

/// While the database fails, a new attempt this often.
pub const RETRY_EVERY: Duration = Duration::from_secs(1);

/// Records held in memory, taken from the state but not yet committed
/// (while the database fails, or while a burst outpaces the writer): two
/// transactions' worth. Past this the reader leaves finished jobs in the
/// state's own history, which holds them for it (up to
/// [`MAX_HOLD`](crate::monitor::MAX_HOLD) past `--history`, at 80 bytes
/// and a file name each) until the writer has made room; what leaves
/// even that is counted in [`Status::lost`]. 168 bytes a record, its
/// names shared.
pub const MAX_HELD: usize = 2 * MAX_BATCH;

/// The most records one transaction carries while nothing fails.
const MAX_BATCH: usize = 20_000;

/// How the history fares, for the page and the logs.
#[derive(Debug)]
pub struct Status {
    /// Where the history is kept (shown without a password).
    at: Location,
    /// Woken when writing pauses or resumes.
    wake: Option<Changed>,
    paused: Mutex<Option<String>>,
    /// Finished jobs left the state before the reader took them.
    lagging: AtomicBool,
    /// The reader left finished jobs in the state for want of room.
    waiting: AtomicBool,
    written: AtomicU64,
    held: AtomicU64,
    lost: AtomicU64,
    changes: AtomicU64,
}

impl Status {
    /// The status of the history kept `at`; `wake` hears of each pause
    /// and resumption.
    pub fn new(at: impl Into<Location>, wake: Option<Changed>) -> Status {
        Status {
            at: at.into(),
            wake,
            paused: Mutex::new(None),
            lagging: AtomicBool::new(false),
            waiting: AtomicBool::new(false),
            written: AtomicU64::new(0),
            held: AtomicU64::new(0),
            lost: AtomicU64::new(0),
            changes: AtomicU64::new(0),
        }
    }

    /// Where the history is kept.
    pub fn location(&self) -> &Location {
        &self.at
    }

    /// Why writing is paused (the database's error) or lagging (finished
    /// jobs were lost), or `None` while it keeps up.
    pub fn paused(&self) -> Option<String> {
        let paused = self.paused.lock().unwrap_or_else(PoisonError::into_inner);
        paused.clone().or_else(|| {
            self.lagging.load(Relaxed).then(|| {
                format!(
                    "the history {} lags behind a burst: finished jobs are lost (counted) \
                     until it catches up",
                    self.at
                )
            })
        })
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

    /// How many more records the reader may take now: [`MAX_HELD`] less
    /// those that wait for the database, and at most a transaction's
    /// worth at once (the writer then takes the batch whole).
    pub(crate) fn room(&self) -> usize {
        let held = usize::try_from(self.held.load(Relaxed)).unwrap_or(usize::MAX);
        MAX_HELD.saturating_sub(held).min(MAX_BATCH)
    }

    /// The reader left finished jobs in the state: the writer wakes it
    /// after its next commit.
    pub(crate) fn wait_for_room(&self) {
        self.waiting.store(true, Relaxed);
    }

    /// Counts `batch` as held on its way to the writer, and `missed`
    /// finished jobs that left the state before the reader took them as
    /// lost: then the history lags until nothing is missed and the writer
    /// has caught up by half.
    pub(crate) fn admit(&self, mut batch: Vec<Record>, missed: u64) -> Vec<Record> {
        if missed > 0 {
            self.lost.fetch_add(missed, Relaxed);
            self.set_lagging(true);
        } else if self.held.load(Relaxed) <= MAX_HELD as u64 / 2 {
            self.set_lagging(false);
        }
        batch.shrink_to_fit();
        self.held.fetch_add(batch.len() as u64, Relaxed);
        batch
    }

    fn set_lagging(&self, lagging: bool) {
        if self.lagging.swap(lagging, Relaxed) != lagging {
            if lagging {
                tracing::warn!(
                    "history: finished jobs are lost: the state let them go before the \
                     history took them (a longer --history keeps up with a faster pace)"
                );
            }
            self.changed();
        }
    }

    fn changed(&self) {
        self.changes.fetch_add(1, Relaxed);
        self.wake_readers();
    }

    fn wake_readers(&self) {
        if let Some(wake) = &self.wake {
            wake.send_modify(|()| {});
        }
    }

    pub(crate) fn set_paused(&self, why: Option<String>) {
        let mut paused = self.paused.lock().unwrap_or_else(PoisonError::into_inner);
        if *paused != why {
            match &why {
                Some(e) => tracing::warn!("history paused, {e}; holding what comes in memory"),
                None => tracing::info!("history writing again"),
            }
            *paused = why;
            drop(paused);
            self.changed();
        }
    }
}

/// Runs the writer until every sender is gone, then commits what is left
/// (one last attempt). A transaction carries at most about [`MAX_BATCH`]
/// records; what waits beyond that stays in the channel, in the reader's
/// batches.
pub(crate) fn run(mut store: Database, records: Receiver<Vec<Record>>, status: Arc<Status>) {
    let mut pending: Vec<Record> = Vec::new();
    // When the pending records are due: COMMIT_EVERY after the first came,
    // or RETRY_EVERY after a failure.
    let mut due: Option<Instant> = None;
    let mut failing = false;
    let mut open = true;
    loop {
        if open && pending.len() < MAX_BATCH {
            let received = match due {
                None => records.recv().map_err(|_| RecvTimeoutError::Disconnected),
                Some(at) => records.recv_timeout(at.saturating_duration_since(Instant::now())),
            };
            match received {
                Ok(batch) => {
                    gather(&mut pending, batch);
                    while pending.len() < MAX_BATCH {
                        match records.try_recv() {
                            Ok(more) => gather(&mut pending, more),
                            Err(_) => break,
                        }
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => open = false,
            }
        } else if let Some(at) = due.filter(|_| open && failing) {
            // A full transaction waits for the next attempt.
            std::thread::sleep(at.saturating_duration_since(Instant::now()));
        }
        if pending.is_empty() {
            if !open {
                return;
            }
            continue;
        }
        let at = *due.get_or_insert_with(|| Instant::now() + COMMIT_EVERY);
        let full = pending.len() >= MAX_BATCH && !failing;
        if open && !full && Instant::now() < at {
            continue;
        }
        match store.write(&pending) {
            Ok(()) => {
                status.written.fetch_add(pending.len() as u64, Relaxed);
                status.held.fetch_sub(pending.len() as u64, Relaxed);
                if status.waiting.swap(false, Relaxed) {
                    // The reader left jobs in the state: there is room now.
                    status.wake_readers();
                }
                pending.clear();
                due = None;
                failing = false;
                status.set_paused(None);
            }
            Err(e) => {
                status.set_paused(Some(e.to_string()));
                due = Some(Instant::now() + RETRY_EVERY);
                failing = true;
                if !open {
                    tracing::warn!(
                        "history: {} records could not be written before the end",
                        pending.len()
                    );
                    status.lost.fetch_add(pending.len() as u64, Relaxed);
                    return;
                }
            }
        }
    }
}

/// Adds the reader's `batch` to the `pending` records: the batch itself if
/// none are, else with room for exactly it, so that what waits never takes
/// twice its size (168 bytes a record, tens of thousands in a burst).
fn gather(pending: &mut Vec<Record>, batch: Vec<Record>) {
    if pending.is_empty() {
        *pending = batch;
    } else {
        pending.reserve_exact(batch.len());
        pending.extend(batch);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::record::JobRecord;
    use crate::monitor::{EndReason, JobState};

    fn job(id: u32) -> Record {
        Record::Job(JobRecord {
            session: 1,
            id,
            file: "a.cpp".into(),
            lang: None,
            client: None,
            client_name: None,
            server: None,
            server_name: None,
            state: JobState::Finished,
            reason: EndReason::Exit,
            exit_code: Some(0),
            submit_ms: None,
            start_ms: 1,
            end_ms: 2,
            stats: None,
        })
    }

    #[test]
    fn gathered_batches_take_the_room_of_their_records_only() {
        let batch = |n: u32| (0..n).map(job).collect::<Vec<_>>();
        let mut pending = Vec::new();
        let first = batch(MAX_BATCH as u32);
        let at = first.as_ptr();
        gather(&mut pending, first);
        assert_eq!(pending.as_ptr(), at, "the first batch is taken as it is");
        gather(&mut pending, batch(100));
        assert_eq!(pending.capacity(), MAX_BATCH + 100, "not twice the first");
    }

    #[test]
    fn missed_jobs_are_counted_and_the_history_lags_until_half_is_written() {
        let status = Status::new(std::path::PathBuf::from("h.sqlite"), None);
        assert_eq!(status.admit(vec![job(1)], 0).len(), 1);
        assert_eq!(
            (status.held(), status.lost(), status.paused()),
            (1, 0, None)
        );
        assert_eq!(status.room(), MAX_BATCH, "a transaction's worth at once");
        status.held.store(MAX_HELD as u64 - 5, Relaxed);
        assert_eq!(status.room(), 5);

        status.held.store(MAX_HELD as u64, Relaxed);
        assert_eq!(status.room(), 0, "the reader leaves jobs in the state");
        assert_eq!(status.admit(vec![job(2)], 7).len(), 1);
        assert_eq!(status.lost(), 7);
        let why = status.paused().expect("lagging");
        assert!(why.contains("h.sqlite") && why.contains("lost"), "{why}");

        // Still more than half held: still lagging.
        status.held.store(MAX_HELD as u64 / 2 + 1, Relaxed);
        status.admit(Vec::new(), 0);
        assert!(status.paused().is_some());
        let revisions = status.revision();
        status.held.store(MAX_HELD as u64 / 2, Relaxed);
        status.admit(Vec::new(), 0);
        assert_eq!(status.paused(), None);
        assert_eq!(status.revision(), revisions + 1, "caught up");
    }
}
