//! Live cluster state from a scheduler: the [`State`] data model, fed one
//! decoded message at a time, the [`connection`] that feeds it, and the
//! [`feed`] of its changes that any number of readers follow.
//!
//! ```text
//! connection.rs ──apply──▶ state.rs ──records──▶ feed.rs ──▶ readers (publisher::delta, …)
//!   target.rs             book.rs (counting), hosts.rs, jobs.rs (+ names.rs),
//!                         host_names.rs, serving.rs, rate.rs
//!                         cluster.rs: the vocabulary (Host, Job, Totals, …)
//!                         snapshot.rs: the whole state as JSON
//! ```
//!
//! - [`State`] (`state.rs`): hosts, active jobs, a bounded history, links
//!   (who compiles for whom) and totals; what each message does to them.
//!   No I/O: tests and tools drive it message by message with
//!   [`State::apply`]. The public types it lends out are in `cluster.rs`.
//! - [`feed`]: which hosts and jobs changed, for each reader
//!   ([`State::follow`], [`State::changes`]) at its own pace; readers keep
//!   their own memory of what they showed.
//! - [`State::snapshot`] (`snapshot.rs`): the JSON of `docs/json.md`.
//! - [`Target`] (`target.rs`): where the scheduler is (address,
//!   `USE_SCHEDULER`, or UDP discovery).
//! - [`text_port`]: a client of the scheduler's text port (port + 1), for
//!   its block list, `internals` and its commands.
//! - [`Connection`], [`Dialer`] and [`run`] (`connection.rs`): one
//!   session, reaching the scheduler again and again, and the reconnecting
//!   loop that applies every batch of frames to a [`SharedState`] and
//!   notifies its readers.
//!
//! A reader of the live state (this one prints the ids of the hosts that
//! change):
//!
//! ```no_run
//! use icewatch::monitor::{changed, lock_state, run, ConnectOptions, SharedState, State, StateOptions, Target};
//! use std::sync::{Arc, Mutex};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let target = Target::resolve(Some("scheduler.lan"), None, "ICECREAM")?;
//! let state: SharedState = Arc::new(Mutex::new(State::new(StateOptions::default())));
//! let changed = changed();
//! let mut wakeups = changed.subscribe();
//! let mut reader = lock_state(&state).follow();
//! tokio::spawn(run(ConnectOptions::new(target), state.clone(), changed, std::future::pending()));
//! loop {
//!     wakeups.changed().await?;
//!     let changes = lock_state(&state).changes(&mut reader);
//!     println!("hosts {:?}, {} jobs finished", changes.hosts, changes.done.end - changes.done.start);
//! }
//! # }
//! ```

mod book;
mod cluster;
pub mod connection;
pub mod feed;
mod host_names;
mod hosts;
mod jobs;
mod names;
mod rate;
mod serving;
mod snapshot;
mod state;
pub mod target;
pub mod text_port;

pub use cluster::{
    EndReason, Host, Job, JobRef, JobState, JobStats, Replay, SchedulerStatus, Totals,
};
pub use connection::{
    run, run_from, ConnectError, ConnectOptions, Connection, Dialer, RECEIVE_BUFFER,
};
pub use feed::{Changes, Follower, FEED_LIMIT};
pub use jobs::{MAX_HISTORY, MAX_HOLD};
pub use names::MAX_FILE_NAME;
pub use snapshot::{write_job, JobShown, Link, Snapshot, SNAPSHOT_HISTORY};
pub use state::{State, StateOptions, MAX_ACTIVE_JOBS, MAX_HOSTS, OFFLINE_HOST_LIMIT};
pub use target::{LocateError, Target, TargetError, DEFAULT_NETNAME, DEFAULT_PORT};

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use tokio::sync::watch;

/// Tells every reader of a [`SharedState`] that it changed: the
/// connection sends on it after each batch it applied; each reader waits on
/// a receiver of its own ([`watch::Sender::subscribe`]), so none takes
/// another's wakeup, and one that was busy sees at once that something
/// changed meanwhile. Make one with [`changed`].
pub type Changed = watch::Sender<()>;

/// A new [`Changed`], with nobody waiting yet.
pub fn changed() -> Changed {
    watch::channel(()).0
}

/// The state shared between the connection and the publishers. Lock it
/// briefly and never across an `.await`: the connection must never wait.
pub type SharedState = Arc<Mutex<State>>;

/// Locks the shared state; a panic elsewhere while it was held does not
/// make it unusable (every update leaves it consistent).
pub fn lock_state(state: &SharedState) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The wall clock in milliseconds since the epoch, as the state wants it.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
