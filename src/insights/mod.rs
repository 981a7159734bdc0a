//! What the jobs say about builds and hosts (`docs/insights.md`): jobs of
//! one submitter grouped into builds, why a build did not distribute, and
//! hosts that hurt builds. Pure functions of finished jobs and host
//! sessions, so that the live state and the history database give the
//! same answers.
//!
//! ```text
//! State ──feed──▶ live.rs (a reader of its own) ─┐
//! history::query (jobs, host sessions) ──────────┼─▶ builds.rs ─▶ Build (+ reasons.rs: why)
//!                                                └─▶ hosts.rs ─▶ HostFlag (hosts that hurt)
//! ```
//!
//! - [`builds`]: [`Build`]s and the build rule (`--build-gap`).
//! - [`reasons`]: why a build did not distribute, each [`Reason`] with
//!   its evidence, and only what the messages show.
//! - [`hosts`]: [`HostFlag`]s of servers that fail, are slow, differ or
//!   keep leaving.
//! - [`live`]: a reader of the state's change feed that keeps what these
//!   need ([`Live`]): the page, `/api/v1/builds` and `/metrics` read it.

pub mod builds;
pub mod hosts;
#[cfg(feature = "server")]
pub mod live;
pub mod reasons;

pub use builds::{group, Build, DEFAULT_BUILD_GAP};
pub use hosts::{flag_hosts, HostFlag};
#[cfg(feature = "server")]
pub use live::Live;
pub use reasons::{why, Cluster, Gathering, Reason};

use crate::monitor::{EndReason, JobRef, JobState};
use serde::Serialize;
use std::sync::Arc;

/// A finished job, as builds and flags read it.
#[derive(Clone, Debug, PartialEq)]
pub struct Finished {
    /// The submitter's name (shared by its jobs).
    pub client: Option<Arc<str>>,
    /// The host that compiled it (the submitter for a local job).
    pub server: Option<Arc<str>>,
    /// Source (remote) or output (local) file.
    pub file: String,
    /// How it ended.
    pub state: JobState,
    /// Why it ended.
    pub reason: EndReason,
    /// The compiler's exit code, if reported.
    pub exit_code: Option<i32>,
    /// When it was submitted, if known (remote jobs seen waiting).
    pub submit_ms: Option<u64>,
    /// When it began compiling (or began locally).
    pub start_ms: u64,
    /// When it ended.
    pub end_ms: u64,
    /// Wall-clock ms on the server, as it reported.
    pub real_ms: Option<u32>,
    /// Bytes of preprocessed source sent to the server.
    pub in_uncompressed: Option<u32>,
}

impl Finished {
    /// A finished job of the live state, submitted at `submit_ms` if known.
    pub fn of(job: &JobRef<'_>, submit_ms: Option<u64>) -> Option<Finished> {
        Some(Finished {
            client: job.client_name().map(Arc::from),
            server: job.server_name().map(Arc::from),
            file: job.file().into_owned(),
            state: job.state,
            reason: job.reason?,
            exit_code: job.exit_code,
            submit_ms: submit_ms.filter(|&s| s <= job.start_ms),
            start_ms: job.start_ms,
            end_ms: job.end_ms?,
            real_ms: job.stats.map(|s| s.real_ms),
            in_uncompressed: job.stats.map(|s| s.in_uncompressed),
        })
    }

    /// When the build saw it first: submitted, else begun.
    pub fn first_ms(&self) -> u64 {
        self.submit_ms.unwrap_or(self.start_ms)
    }

    /// How long it waited for a server (remote jobs seen submitted).
    pub fn wait_ms(&self) -> Option<u64> {
        if self.is_local() {
            return None;
        }
        self.submit_ms.map(|s| self.start_ms.saturating_sub(s))
    }

    /// A local job: compiled on the submitter without the scheduler.
    pub fn is_local(&self) -> bool {
        self.state == JobState::LocalFinished
    }

    /// A remote job the scheduler gave back to its own submitter.
    pub fn given_back(&self) -> bool {
        !self.is_local() && self.client.is_some() && self.client == self.server
    }

    /// A remote job compiled on another host than its submitter.
    pub fn remote(&self) -> bool {
        !self.is_local() && self.server.is_some() && !self.given_back()
    }

    /// Ended without the compiler's verdict.
    pub fn cut_short(&self) -> bool {
        self.state == JobState::CutShort
    }

    /// The compiler failed.
    pub fn failed(&self) -> bool {
        self.state == JobState::Failed
    }
}

/// A host's session, as flags and reasons read it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HostSpan {
    /// Node name.
    pub name: String,
    /// Platform.
    pub platform: String,
    /// The daemon's protocol version.
    pub protocol: u32,
    /// Features, space separated.
    pub features: String,
    /// Slots.
    pub max_jobs: u32,
    /// Takes no jobs from other hosts.
    pub no_remote: bool,
    /// When it logged in.
    pub login_ms: u64,
    /// When it logged out (`None`: still logged in).
    pub logout_ms: Option<u64>,
}

impl HostSpan {
    /// Logged in at `at_ms`.
    pub fn online_at(&self, at_ms: u64) -> bool {
        self.login_ms <= at_ms && self.logout_ms.map_or(true, |out| at_ms < out)
    }
}

/// The job state named `name` in JSON and in the database.
pub fn job_state(name: &str) -> Option<JobState> {
    Some(match name {
        "waiting" => JobState::Waiting,
        "compiling" => JobState::Compiling,
        "finished" => JobState::Finished,
        "failed" => JobState::Failed,
        "cut_short" => JobState::CutShort,
        "local" => JobState::Local,
        "local_finished" => JobState::LocalFinished,
        _ => return None,
    })
}

/// The end reason named `name` in JSON and in the database.
pub fn end_reason(name: &str) -> Option<EndReason> {
    EndReason::ALL.into_iter().find(|r| r.name() == name)
}

/// The value at quantile `q` (0 to 1) of `sorted`, nearest rank.
pub(crate) fn quantile(sorted: &[u64], q: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}
