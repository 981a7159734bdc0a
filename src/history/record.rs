//! What the reader copies out of the state for the writer: owned records,
//! so that the state's lock is held only while copying.

use crate::monitor::{EndReason, Host, JobRef, JobState, JobStats};
use rustc_hash::FxHashSet;
use std::sync::Arc;

/// One thing to keep.
#[derive(Clone, Debug, PartialEq)]
pub enum Record {
    /// A scheduler session began (`local` is the state's session number,
    /// 1 for the first of this process).
    Session {
        /// The state's number for it.
        local: u32,
        /// The scheduler's address.
        scheduler: String,
        /// The agreed protocol version.
        protocol: Option<u32>,
        /// When it began.
        start_ms: u64,
    },
    /// The scheduler session `local` ended.
    SessionEnd {
        /// The state's number for it.
        local: u32,
        /// When it ended.
        end_ms: u64,
    },
    /// A job finished.
    Job(JobRecord),
    /// A host logged in.
    HostLogin(HostRecord),
    /// The host `host_id` of session `session` logged out.
    HostLogout {
        /// The state's session number.
        session: u32,
        /// The scheduler's id of the host in that session.
        host_id: u32,
        /// When.
        at_ms: u64,
    },
    /// A host's load at one moment (one a minute).
    Load(LoadSample),
}

/// A finished job, as `jobs` keeps it.
#[derive(Clone, Debug, PartialEq)]
pub struct JobRecord {
    /// The state's scheduler session number.
    pub session: u32,
    /// The scheduler's job id.
    pub id: u32,
    /// Source (remote) or output (local) file (shared by the records of
    /// its jobs while they wait for the database).
    pub file: Arc<str>,
    /// Its language's name (`C++`).
    pub lang: Option<&'static str>,
    /// The submitter's id in its session.
    pub client: Option<u32>,
    /// The submitter's name (shared by the records of its jobs).
    pub client_name: Option<Arc<str>>,
    /// The server's id in its session.
    pub server: Option<u32>,
    /// The server's name (shared by the records of its jobs).
    pub server_name: Option<Arc<str>>,
    /// How it ended.
    pub state: JobState,
    /// Why it ended.
    pub reason: EndReason,
    /// The compiler's exit code, if reported.
    pub exit_code: Option<i32>,
    /// When it was submitted, if the reader saw it waiting.
    pub submit_ms: Option<u64>,
    /// When it began compiling (or was submitted, if it never began).
    pub start_ms: u64,
    /// When it ended.
    pub end_ms: u64,
    /// What the server reported.
    pub stats: Option<JobStats>,
}

impl JobRecord {
    /// The record of a finished job; `None` for one still active. Host
    /// and file names come from `names`, which keeps each once.
    pub fn of(job: &JobRef<'_>, submit_ms: Option<u64>, names: &mut Names) -> Option<JobRecord> {
        Some(JobRecord {
            session: job.session(),
            id: job.id,
            file: names.get(&job.file()),
            lang: job.lang.map(|l| l.name()),
            client: job.client,
            client_name: job.client_name().map(|n| names.get(n)),
            server: job.server,
            server_name: job.server_name().map(|n| names.get(n)),
            state: job.state,
            reason: job.reason?,
            exit_code: job.exit_code,
            submit_ms: submit_ms.filter(|&s| s <= job.start_ms),
            start_ms: job.start_ms,
            end_ms: job.end_ms?,
            stats: job.stats,
        })
    }
}

/// Host and file names, each kept once for the records that name it: a
/// burst of jobs waiting for the database holds each file name once.
#[derive(Debug, Default)]
pub struct Names(FxHashSet<Arc<str>>);

impl Names {
    /// Names kept at most; past this the set starts over. Above the hosts
    /// of the largest clusters (at 4,096, a burst from 5,000 hosts made
    /// each name again every few thousand jobs).
    const LIMIT: usize = 1 << 14;

    /// `name`, shared.
    pub fn get(&mut self, name: &str) -> Arc<str> {
        if let Some(n) = self.0.get(name) {
            return n.clone();
        }
        if self.0.len() >= Self::LIMIT {
            self.0.clear();
        }
        let n: Arc<str> = name.into();
        self.0.insert(n.clone());
        n
    }
}

/// A host's login, as `host_sessions` keeps it.
#[derive(Clone, Debug, PartialEq)]
pub struct HostRecord {
    /// The state's scheduler session number.
    pub session: u32,
    /// The scheduler's id of the host.
    pub host_id: u32,
    /// Node name.
    pub name: String,
    /// Address.
    pub ip: String,
    /// Platform.
    pub platform: String,
    /// Slots.
    pub max_jobs: u32,
    /// Takes no remote jobs.
    pub no_remote: bool,
    /// The daemon's protocol version.
    pub protocol: u32,
    /// Features.
    pub features: String,
    /// When it logged in.
    pub login_ms: u64,
}

impl HostRecord {
    /// `host`'s login in session `session` at `at_ms`.
    pub fn of(host: &Host, session: u32, at_ms: u64) -> HostRecord {
        HostRecord {
            session,
            host_id: host.id,
            name: host.name.to_string(),
            ip: host.ip.to_string(),
            platform: host.platform.to_string(),
            max_jobs: host.max_jobs,
            no_remote: host.no_remote,
            protocol: host.protocol,
            features: host.features.to_string(),
            login_ms: at_ms,
        }
    }
}

/// A host's load at one moment.
#[derive(Clone, Debug, PartialEq)]
pub struct LoadSample {
    /// Node name.
    pub name: String,
    /// When.
    pub at_ms: u64,
    /// 0 (idle) to 1000 (full).
    pub load: u32,
    /// Load average over a minute, if reported.
    pub load_avg1: Option<f64>,
    /// Free memory in MiB, if reported.
    pub free_mem_mb: Option<u32>,
}

impl LoadSample {
    /// `host`'s load at `at_ms`.
    pub fn of(host: &Host, at_ms: u64) -> LoadSample {
        LoadSample {
            name: host.name.to_string(),
            at_ms,
            load: host.load,
            load_avg1: host.load_avg.map(|a| a[0]),
            free_mem_mb: host.free_mem_mb,
        }
    }
}
