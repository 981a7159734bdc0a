//! The writer: a thread of its own that gathers the reader's records and
//! commits them in one transaction at least every [`COMMIT_EVERY`]; and
//! the retention, another thread that deletes what is too old in small
//! transactions. The records come [packed](super::packed) and wait so
//! until their transaction, up to [`MAX_HELD_BYTES`]. When the database
//! fails (a full disk, a file made read-only, a lock held too long) the
//! writer keeps them, says that the history is paused ([`Status`]), and
//! tries again every [`RETRY_EVERY`]; the live page goes on regardless.

use super::database::{Database, Location};
use super::packed::{Packed, Unreadable};
use super::record::Record;
use crate::monitor::Changed;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// A record waits at most this long before it is committed: a process
/// killed at any moment loses at most the records of this last period.
pub const COMMIT_EVERY: Duration = Duration::from_millis(250);

/// While the database fails, a new attempt this often.
pub const RETRY_EVERY: Duration = Duration::from_secs(1);

/// The most memory that records taken from the state but not yet
/// committed may take, packed (while the database fails, or while a burst
/// outpaces the writer), their names counted: about 640,000 finished jobs
/// of `load e2e`'s burst (317,093), 19.5 bytes each compressed and 19
/// more for their batch's names. Past this the reader
/// leaves finished jobs in the state's own history, which holds them for
/// it (up to [`MAX_HOLD`](crate::monitor::MAX_HOLD) past `--history`, at
/// 80 bytes and a file name each) until the writer has made room; what
/// leaves even that is counted in [`Status::lost`]. Besides these, the
/// transaction being written holds up to [`MAX_BATCH`] records unpacked,
/// and the batch they come from uncompressed.
pub const MAX_HELD_BYTES: usize = 24 << 20;

/// The most records one transaction carries (168 bytes each unpacked,
/// its names shared).
pub const MAX_BATCH: usize = 20_000;

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
    /// The memory the held records take, packed.
    held_bytes: AtomicU64,
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
            held_bytes: AtomicU64::new(0),
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

    /// How many more records the reader may take now: a transaction's
    /// worth while what waits for the database takes less than
    /// [`MAX_HELD_BYTES`], else none.
    pub(crate) fn room(&self) -> usize {
        if self.held_bytes.load(Relaxed) < MAX_HELD_BYTES as u64 {
            MAX_BATCH
        } else {
            0
        }
    }

    /// The reader left finished jobs in the state: the writer wakes it
    /// after its next commit.
    pub(crate) fn wait_for_room(&self) {
        self.waiting.store(true, Relaxed);
    }

    /// Counts `batch` as held on its way to the writer, and
    /// `missed` finished jobs that left the state before the reader took
    /// them as lost: then the history lags until nothing is missed and the
    /// writer has caught up by half.
    pub(crate) fn admit(&self, batch: Packed, missed: u64) -> Packed {
        let missed = missed + batch.dropped() as u64;
        if missed > 0 {
            self.lost.fetch_add(missed, Relaxed);
            self.set_lagging(true);
        } else if self.held_bytes.load(Relaxed) <= MAX_HELD_BYTES as u64 / 2 {
            self.set_lagging(false);
        }
        self.held.fetch_add(batch.len() as u64, Relaxed);
        self.held_bytes.fetch_add(batch.size() as u64, Relaxed);
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

/// How long the writer waits with nothing to write before it frees what
/// its connection caches (and calls the history's `release_memory`):
/// after a burst, the 8 MiB of pages of its indexes would stay resident
/// for nothing; at a busy cluster's pace the writer never waits so long.
pub const RELEASE_AFTER: Duration = Duration::from_secs(1);

/// Runs the writer until every sender is gone, then commits what is left
/// (one last attempt). A transaction carries at most [`MAX_BATCH`]
/// records, unpacked from the reader's batches as it is made. Once it
/// has waited [`RELEASE_AFTER`] for more, it frees what it cached, then
/// calls `release`.
pub(crate) fn run(
    mut store: Database,
    records: Receiver<Packed>,
    status: Arc<Status>,
    release: Option<fn()>,
) {
    let mut waiting = Waiting::default();
    let mut pending: Vec<Record> = Vec::new();
    // When the pending records are due: COMMIT_EVERY after the first came,
    // or RETRY_EVERY after a failure.
    let mut due: Option<Instant> = None;
    let mut failing = false;
    let mut open = true;
    // Written since the connection's cache was last freed.
    let mut cached = false;
    loop {
        waiting.unpack(&mut pending, &status);
        if !pending.is_empty() {
            due.get_or_insert_with(|| Instant::now() + COMMIT_EVERY);
        }
        if open && pending.len() < MAX_BATCH {
            let received = match due {
                None if cached => match records.recv_timeout(RELEASE_AFTER) {
                    Err(RecvTimeoutError::Timeout) => {
                        store.release_memory();
                        if let Some(release) = release {
                            release();
                        }
                        cached = false;
                        continue;
                    }
                    received => received,
                },
                None => records.recv().map_err(|_| RecvTimeoutError::Disconnected),
                Some(at) => records.recv_timeout(at.saturating_duration_since(Instant::now())),
            };
            match received {
                Ok(batch) => {
                    waiting.0.push_back(batch);
                    waiting.0.extend(records.try_iter());
                    waiting.unpack(&mut pending, &status);
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => open = false,
            }
        } else if let Some(at) = due.filter(|_| open && failing) {
            // A full transaction waits for the next attempt.
            std::thread::sleep(at.saturating_duration_since(Instant::now()));
        }
        if pending.is_empty() {
            if !open && waiting.0.is_empty() {
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
                // Its room goes back to the system between bursts.
                pending = Vec::new();
                cached = true;
                due = None;
                failing = false;
                status.set_paused(None);
            }
            Err(e) => {
                status.set_paused(Some(e.to_string()));
                due = Some(Instant::now() + RETRY_EVERY);
                failing = true;
                if !open {
                    let left = pending.len() + waiting.0.iter().map(Packed::len).sum::<usize>();
                    tracing::warn!("history: {left} records could not be written before the end");
                    status.lost.fetch_add(left as u64, Relaxed);
                    return;
                }
            }
        }
    }
}

/// The reader's batches that wait for the database, oldest first.
#[derive(Debug, Default)]
struct Waiting(VecDeque<Packed>);

impl Waiting {
    /// Unpacks the oldest records into `pending`, up to [`MAX_BATCH`]; a
    /// batch all unpacked no longer counts in `status`'s held bytes.
    fn unpack(&mut self, pending: &mut Vec<Record>, status: &Status) {
        while let Some(oldest) = self.0.front_mut() {
            let room = MAX_BATCH.saturating_sub(pending.len());
            if room == 0 {
                return;
            }
            if let Err(Unreadable(lost)) = oldest.unpack(pending, room) {
                tracing::error!("history: {lost} records could not be unpacked");
                status.held.fetch_sub(lost as u64, Relaxed);
                status.lost.fetch_add(lost as u64, Relaxed);
            }
            if oldest.is_empty() {
                status.held_bytes.fetch_sub(oldest.size() as u64, Relaxed);
                self.0.pop_front();
            }
        }
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

    /// Calls of [`count_release`].
    static RELEASED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

    fn count_release() {
        RELEASED.fetch_add(1, Relaxed);
    }

    /// Waits until `done`, a minute at most.
    fn wait_until(what: &str, done: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !done() {
            assert!(Instant::now() < deadline, "{what}: not after a minute");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn a_writer_left_waiting_frees_what_it_cached_then_writes_on() {
        let dir = std::env::temp_dir().join(format!("icewatch-release-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("history.sqlite");
        let store = Database::from(crate::history::Store::open(&path).unwrap());
        let status = Arc::new(Status::new(path.clone(), None));
        let (send, inbox) = std::sync::mpsc::channel();
        let writer = {
            let status = status.clone();
            std::thread::spawn(move || run(store, inbox, status, Some(count_release)))
        };
        let session = Record::Session {
            local: 1,
            scheduler: "sched:8765".into(),
            protocol: Some(44),
            start_ms: 0,
        };
        let batch = |records| status.admit(Packed::of(records), 0);
        send.send(batch(vec![session, job(1), job(2)])).unwrap();
        wait_until("freed after the first write", || {
            RELEASED.load(Relaxed) == 1
        });
        assert_eq!(status.written(), 3);

        send.send(batch(vec![job(3)])).unwrap();
        wait_until("freed after the second", || RELEASED.load(Relaxed) == 2);
        assert_eq!(status.written(), 4, "written on a connection freed before");
        drop(send);
        writer.join().unwrap();
        let conn = rusqlite::Connection::open(&path).unwrap();
        let jobs: i64 = conn
            .query_row("SELECT count(*) FROM jobs", [], |r| r.get(0))
            .unwrap();
        assert_eq!(jobs, 3);
        assert_eq!(RELEASED.load(Relaxed), 2, "nothing to free at the end");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn waiting_batches_are_unpacked_a_transaction_at_a_time_and_then_let_go() {
        let status = Status::new(std::path::PathBuf::from("h.sqlite"), None);
        let batch = |from: u32, n: u32| (from..from + n).map(job).collect::<Vec<_>>();
        let first = status.admit(Packed::of(batch(0, MAX_BATCH as u32 - 10)), 0);
        let second = status.admit(Packed::of(batch(MAX_BATCH as u32, 100)), 0);
        let mut waiting = Waiting(VecDeque::from([first, second]));
        let both = status.held_bytes.load(Relaxed);
        assert!(both > 0);
        assert_eq!(status.held(), MAX_BATCH as u64 + 90);

        let mut pending = Vec::new();
        waiting.unpack(&mut pending, &status);
        assert_eq!(pending.len(), MAX_BATCH, "a transaction's worth");
        assert_eq!(pending.capacity(), MAX_BATCH, "and its room only");
        assert_eq!(pending[0], job(0));
        assert_eq!(pending[MAX_BATCH - 10], job(MAX_BATCH as u32));
        assert_eq!(waiting.0.len(), 1, "the first batch is let go");
        assert!(status.held_bytes.load(Relaxed) < both);

        pending.clear();
        waiting.unpack(&mut pending, &status);
        assert_eq!(pending.len(), 90);
        assert_eq!(pending[89], job(MAX_BATCH as u32 + 99));
        assert!(waiting.0.is_empty());
        assert_eq!(status.held_bytes.load(Relaxed), 0);
    }

    #[test]
    fn missed_jobs_are_counted_and_the_history_lags_until_half_is_written() {
        let status = Status::new(std::path::PathBuf::from("h.sqlite"), None);
        assert_eq!(status.admit(Packed::of(vec![job(1)]), 0).len(), 1);
        assert_eq!(
            (status.held(), status.lost(), status.paused()),
            (1, 0, None)
        );
        assert_eq!(status.room(), MAX_BATCH, "a transaction's worth at once");
        let bytes = |n: usize| status.held_bytes.store(n as u64, Relaxed);
        bytes(MAX_HELD_BYTES - 1);
        assert_eq!(status.room(), MAX_BATCH);

        bytes(MAX_HELD_BYTES);
        assert_eq!(status.room(), 0, "the reader leaves jobs in the state");
        assert_eq!(status.admit(Packed::of(vec![job(2)]), 7).len(), 1);
        assert_eq!(status.lost(), 7);
        let why = status.paused().expect("lagging");
        assert!(why.contains("h.sqlite") && why.contains("lost"), "{why}");

        // Still more than half held: still lagging.
        bytes(MAX_HELD_BYTES / 2 + 1);
        status.admit(Packed::default(), 0);
        assert!(status.paused().is_some());
        let revisions = status.revision();
        bytes(MAX_HELD_BYTES / 2);
        status.admit(Packed::default(), 0);
        assert_eq!(status.paused(), None);
        assert_eq!(status.revision(), revisions + 1, "caught up");
    }
}
