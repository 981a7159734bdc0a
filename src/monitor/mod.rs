//! Live cluster state from a scheduler: the [`State`] data model, fed one
//! decoded message at a time, and the [`connection`] that feeds it.
//!
//! - [`State`] (`state.rs`): hosts, active jobs, a bounded history, links
//!   (who compiles for whom) and totals. No I/O: tests and tools drive it
//!   message by message with [`State::apply`].
//! - [`ChangeSet`] (`change.rs`): what changed since the last
//!   [`State::take_changes`]; [`State::diff`] and [`State::snapshot`]
//!   (`snapshot.rs`) turn state into the JSON of `docs/json.md` and
//!   `docs/websocket.md`.
//! - [`Target`] (`target.rs`): where the scheduler is (address,
//!   `USE_SCHEDULER`, or UDP discovery).
//! - [`Connection`] and [`run`] (`connection.rs`): one session, and the
//!   reconnecting loop that applies every batch of frames to a
//!   [`SharedState`] and notifies the publishers.
//!
//! ```no_run
//! use icewatch::monitor::{run, ConnectOptions, SharedState, State, StateOptions, Target};
//! use std::sync::{Arc, Mutex};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let target = Target::resolve(Some("scheduler.lan"), None, "ICECREAM")?;
//! let state: SharedState = Arc::new(Mutex::new(State::new(StateOptions::default())));
//! let changed = Arc::new(tokio::sync::Notify::new());
//! tokio::spawn(run(ConnectOptions::new(target), state.clone(), changed.clone(), std::future::pending()));
//! loop {
//!     changed.notified().await;
//!     let mut st = state.lock().unwrap();
//!     let changes = st.take_changes();
//!     println!("{}", serde_json::to_string(&st.diff(&changes))?);
//! }
//! # }
//! ```

mod book;
mod change;
mod cluster;
pub mod connection;
mod host_names;
mod hosts;
mod jobs;
mod names;
mod rate;
mod serving;
mod snapshot;
mod state;
pub mod target;

pub use change::ChangeSet;
pub use cluster::{
    EndReason, Host, Job, JobRef, JobState, JobStats, Replay, SchedulerStatus, Totals,
};
pub use connection::{run, run_from, ConnectError, ConnectOptions, Connection, Dialer};
pub use names::MAX_FILE_NAME;
pub use snapshot::{Diff, HostDelta, JobDelta, Link, Snapshot, SNAPSHOT_HISTORY};
pub use state::{
    State, StateOptions, CHANGE_LIMIT, MAX_ACTIVE_JOBS, MAX_HISTORY, MAX_HOSTS, OFFLINE_HOST_LIMIT,
};
pub use target::{Target, TargetError, DEFAULT_NETNAME, DEFAULT_PORT};

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

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
