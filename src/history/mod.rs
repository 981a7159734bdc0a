//! The cluster's history, kept in a database that survives restarts:
//! every finished job, host sessions, scheduler sessions and a load sample
//! per host and minute. Its schema is a stable interface, documented in
//! `docs/history.md`.
//!
//! ```text
//! state ──feed──▶ reader.rs (a task: copies under the lock) ──records──▶ writer.rs (a thread)
//!                                                                          │ a transaction ≤ 250 ms
//!                 store.rs (SQLite, WAL) or postgres.rs (PostgreSQL) ◀────┘   retention: its own thread
//! query.rs: jobs, hosts and builds read back (the CLI, the HTTP API); trace.rs: Chrome trace events
//! ```
//!
//! - [`Reader`] (`reader.rs`): a follower of the state's changes; the
//!   connection never waits for it, nor it for the database.
//! - [`Store`] (`store.rs`): opening the file, with a one-line
//!   [`HistoryError`] for each way it can be unusable; versioned
//!   migrations (`schema.rs`); batches written in one transaction.
//! - [`PgStore`] (`postgres.rs`): the same in PostgreSQL, shared by
//!   several instances; [`Database`] and [`Reading`] (`database.rs`) are
//!   either backend, where [`Location`] says.
//! - the writer (`writer.rs`): commits at least every
//!   [`COMMIT_EVERY`], so that a killed process loses at most that last
//!   moment; what waits for it is packed (`packed.rs`, about 40 bytes a
//!   job), up to [`MAX_HELD_BYTES`]; while the database fails the
//!   [`Status`] says the history is paused.
//! - [`Book`] (`kept.rs`): the blocks `monitor --keep-blocks` keeps and
//!   the audit of actions on the scheduler, written by the text port's
//!   task on a connection of its own.
//! - [`builds`]: the `builds` table, kept by the writer as it writes
//!   jobs, so that the builds of a window come back through an index.
//! - [`summaries`]: each build's details, worked out once it is over by
//!   a thread of its own, so that the builds of a day come back without
//!   reading their jobs.
//! - [`query`]: what the history holds, filtered, newest first.
//! - [`trace`]: jobs as a timeline for Perfetto (Chrome trace events).
//!
//! Keeping a state's history (the `icewatch` command does this for
//! `monitor`):
//!
//! ```no_run
//! use icewatch::history::{History, HistoryOptions, Store};
//! use icewatch::monitor::{self, SharedState, State, StateOptions};
//! use std::sync::{Arc, Mutex};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let state: SharedState = Arc::new(Mutex::new(State::new(StateOptions::default())));
//! let changed = monitor::changed();
//! let store = Store::open("history.sqlite".as_ref())?;
//! let history = History::start(store, state.clone(), &changed, HistoryOptions::default());
//! // ... monitor::run(opts, state, changed, shutdown).await ...
//! history.stop().await;
//! # Ok(())
//! # }
//! ```

pub mod builds;
mod database;
mod kept;
mod packed;
mod postgres;
pub mod query;
mod reader;
mod record;
pub mod schema;
mod store;
pub mod summaries;
pub mod trace;
mod writer;

pub use database::{Database, Location, Reading};
pub use kept::Book;
pub use postgres::{PgStore, Server};
pub use reader::{Reader, Taken, LOAD_EVERY_MS};
pub use record::{HostRecord, JobRecord, LoadSample, Names, Record};
pub use schema::SCHEMA_VERSION;
pub use store::{HistoryError, Store};
pub use writer::{Status, COMMIT_EVERY, MAX_BATCH, MAX_HELD_BYTES, RELEASE_AFTER, RETRY_EVERY};

use crate::monitor::{lock_state, Changed, SharedState};
use packed::Packed;
use std::path::PathBuf;
use std::sync::{mpsc, Arc};
use std::time::Duration;
use tokio::sync::oneshot;

/// Finished jobs are kept this long unless told otherwise (`--retain`).
pub const DEFAULT_RETAIN: Duration = Duration::from_secs(90 * 24 * 3600);

/// The history's file name in its folder.
pub const FILE_NAME: &str = "history.sqlite";

/// Where the history is kept unless told otherwise:
/// `$XDG_STATE_HOME/icewatch/history.sqlite`, else
/// `~/.local/state/icewatch/history.sqlite`; `None` without a home.
pub fn default_path() -> Option<PathBuf> {
    let state = dirs::state_dir().or_else(|| dirs::home_dir().map(|h| h.join(".local/state")))?;
    Some(state.join("icewatch").join(FILE_NAME))
}

/// How the history is kept.
#[derive(Clone, Debug)]
pub struct HistoryOptions {
    /// What ended longer ago than this is deleted.
    pub retain: Duration,
    /// Called once the writer, or the thread that works out the builds'
    /// details, has freed what a burst made it cache, to hand the pages
    /// the allocator keeps back to the system.
    pub release_memory: Option<fn()>,
}

impl Default for HistoryOptions {
    fn default() -> Self {
        HistoryOptions {
            retain: DEFAULT_RETAIN,
            release_memory: None,
        }
    }
}

/// A running history: the reader task, the writer thread, the
/// retention thread and the summaries' thread. [`History::stop`] commits what is left.
#[derive(Debug)]
pub struct History {
    status: Arc<Status>,
    location: Location,
    stop_reader: Option<oneshot::Sender<()>>,
    reader: tokio::task::JoinHandle<()>,
    writer: std::thread::JoinHandle<()>,
    stop_retention: mpsc::Sender<()>,
    stop_summaries: mpsc::Sender<()>,
}

/// How often the reader looks even when nothing wakes it (for the load
/// samples and a session that ended).
const READ_EVERY: Duration = Duration::from_secs(1);

impl History {
    /// Starts keeping `state`'s history in `store` (a [`Store`] or a
    /// [`Database`]): a reader woken by `changed`, a writer thread, and
    /// the retention.
    pub fn start(
        store: impl Into<Database>,
        state: SharedState,
        changed: &Changed,
        opts: HistoryOptions,
    ) -> History {
        let store = store.into();
        let location = store.location();
        let status = Arc::new(Status::new(location.clone(), Some(changed.clone())));
        let (records, inbox) = mpsc::channel();
        let writer = {
            let status = status.clone();
            std::thread::Builder::new()
                .name("history writer".into())
                .spawn(move || writer::run(store, inbox, status, opts.release_memory))
        };
        let writer = match writer {
            Ok(w) => w,
            // No thread: nothing is written, and the status says so.
            Err(e) => {
                status.set_paused(Some(format!("cannot start the history writer: {e}")));
                std::thread::spawn(|| {})
            }
        };
        let (stop_retention, retention_stop) = mpsc::channel();
        let retention_at = location.clone();
        let _ = std::thread::Builder::new()
            .name("history retention".into())
            .spawn(move || writer::retain(retention_at, opts.retain, retention_stop));
        let (stop_summaries, summaries_stop) = mpsc::channel();
        let (summaries_at, committed) = (location.clone(), status.clone());
        let release = opts.release_memory;
        let _ = std::thread::Builder::new()
            .name("history summaries".into())
            .spawn(move || summaries::run(summaries_at, committed, summaries_stop, release));
        let (stop_reader, mut stopped) = oneshot::channel();
        let mut wakeups = changed.subscribe();
        let held = status.clone();
        // Following from now, not from when the task first runs: what
        // finishes meanwhile is the history's too.
        let mut reader = Reader::new(&mut lock_state(&state));
        let reader = tokio::spawn(async move {
            let mut tick = tokio::time::interval(READ_EVERY);
            // The reader never waits for the writer: at every wakeup it
            // takes what finished, a transaction's worth at a time, packed,
            // as long as MAX_HELD_BYTES leaves room; the rest waits in the
            // state's history, held for it, and the writer wakes it when
            // it has made room. It takes without a pause between: what
            // the state holds for it takes three times the room it takes
            // packed.
            'wakeups: loop {
                let last = tokio::select! {
                    r = wakeups.changed() => r.is_err(),
                    _ = tick.tick() => false,
                    _ = &mut stopped => true,
                };
                loop {
                    let mut room = if last { usize::MAX } else { held.room() };
                    if room == 0 {
                        held.wait_for_room();
                        // The writer may have made room before it could
                        // see that the reader waits.
                        room = held.room();
                    }
                    let missed = reader.missed();
                    let taken = reader.take(&mut lock_state(&state), room);
                    let batch = held.admit(Packed::of(taken.records), reader.missed() - missed);
                    if !batch.is_empty() && records.send(batch).is_err() {
                        break 'wakeups;
                    }
                    if !taken.behind || room == 0 {
                        break;
                    }
                }
                if last {
                    break;
                }
            }
            if reader.missed() > 0 {
                tracing::warn!(
                    "history: {} finished jobs left the state's history before they were \
                     copied (a longer --history keeps up with a faster pace)",
                    reader.missed()
                );
            }
            reader.leave(&mut lock_state(&state));
        });
        History {
            status,
            location,
            stop_reader: Some(stop_reader),
            reader,
            writer,
            stop_retention,
            stop_summaries,
        }
    }

    /// How writing fares.
    pub fn status(&self) -> Arc<Status> {
        self.status.clone()
    }

    /// Where the history is kept.
    pub fn location(&self) -> &Location {
        &self.location
    }

    /// Takes what changed last, commits everything and stops.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop_reader.take() {
            let _ = stop.send(());
        }
        let _ = self.stop_retention.send(());
        let _ = self.stop_summaries.send(());
        let _ = (&mut self.reader).await;
        let writer = self.writer;
        let _ = tokio::task::spawn_blocking(move || writer.join()).await;
    }
}

/// The history's status on the page: `"database"` in the snapshot and in
/// the diffs after a pause or a resumption (`docs/json.md`).
#[cfg(feature = "server")]
impl crate::publisher::Annex for Status {
    fn key(&self) -> &'static str {
        "database"
    }

    fn revision(&self) -> u64 {
        Status::revision(self)
    }

    fn json(&self) -> String {
        let paused = self.paused();
        serde_json::json!({
            "file": self.location().to_string(),
            "paused": paused.is_some(),
            "error": paused,
            "held": self.held(),
            "lost": self.lost(),
        })
        .to_string()
    }
}
