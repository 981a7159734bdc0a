//! The cluster's vocabulary, as [`State`](super::State) lends it out and the
//! publishers show it: the scheduler connection, [`Host`], [`Job`] and its
//! [`JobState`], [`Totals`]. Plain data; the state keeps them up to date.

use super::jobs::JobKey;
use crate::protocol::stats::HostStats;
use crate::protocol::{JobDone, Language};
use serde::Serialize;

/// The scheduler connection as the publishers show it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SchedulerStatus {
    /// The scheduler's address (`host:port`), empty before the first attempt.
    pub address: String,
    /// The agreed protocol version of the current or last session.
    pub protocol: Option<u32>,
    /// Whether a session is up.
    pub online: bool,
    /// When it last went online or offline, ms since the epoch.
    pub since_ms: Option<u64>,
    /// Sessions started after the first one.
    pub reconnects: u64,
    /// Why the last session ended or the last attempt failed (null while online).
    pub error: Option<String>,
}

/// A host (a daemon) known to the scheduler.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Host {
    /// The scheduler's id for the host (new each time the daemon logs in).
    pub id: u32,
    /// Node name.
    pub name: Box<str>,
    /// Address as the scheduler sees it.
    pub ip: Box<str>,
    /// Platform, e.g. `x86_64`.
    pub platform: Box<str>,
    /// Compile slots.
    pub max_jobs: u32,
    /// Takes no jobs from other hosts (`--no-remote`); its slots still count.
    pub no_remote: bool,
    /// Still connected to the scheduler.
    pub online: bool,
    /// The daemon's protocol version.
    pub protocol: u32,
    /// Features, space separated.
    pub features: Box<str>,
    /// The scheduler's speed estimate.
    pub speed: f64,
    /// Load, 0 (idle) to 1000 (full).
    pub load: u32,
    /// Load averages over 1, 5 and 10 minutes; `None` until a STATS update.
    pub load_avg: Option<[f64; 3]>,
    /// Free memory in MiB; `None` until a STATS update.
    pub free_mem_mb: Option<u32>,
    /// Remote jobs it compiled to the end as server, whatever the exit code
    /// (its own included, see `compiled_own`).
    pub compiled: u64,
    /// Of `compiled`, jobs it had submitted itself (the scheduler gave them back).
    pub compiled_own: u64,
    /// Remote jobs it submitted.
    pub submitted: u64,
    /// Local jobs it started.
    pub local_jobs: u64,
    /// Jobs compiling on it now: remote jobs it serves plus its local jobs.
    pub active: u32,
    /// Jobs it submitted that wait for a server.
    pub pending: u32,
    /// Remote jobs it submitted that failed.
    pub failed: u64,
    #[serde(skip)]
    pub(crate) gen: u64,
}

impl Host {
    pub(crate) fn new(id: u32) -> Host {
        Host {
            id,
            name: Box::from(""),
            ip: Box::from(""),
            platform: Box::from(""),
            max_jobs: 0,
            no_remote: false,
            online: true,
            protocol: 0,
            features: Box::from(""),
            speed: 0.0,
            load: 0,
            load_avg: None,
            free_mem_mb: None,
            compiled: 0,
            compiled_own: 0,
            submitted: 0,
            local_jobs: 0,
            active: 0,
            pending: 0,
            failed: 0,
            gen: 0,
        }
    }

    /// Takes what a MON_STATS text carries; true if anything changed.
    pub(crate) fn update(&mut self, s: &HostStats<'_>) -> bool {
        let mut changed = set_text(&mut self.name, s.name);
        changed |= set_text(&mut self.ip, s.ip);
        changed |= set_text(&mut self.platform, s.platform);
        changed |= set_text(&mut self.features, s.features);
        changed |= set(&mut self.max_jobs, s.max_jobs);
        changed |= set(&mut self.no_remote, s.no_remote);
        changed |= set(&mut self.protocol, s.version);
        changed |= set(&mut self.load, s.load);
        changed |= set(&mut self.free_mem_mb, s.free_mem.map(Some));
        if let Some(speed) = s.speed {
            let speed = if speed.is_finite() { speed } else { 0.0 };
            if speed.to_bits() != self.speed.to_bits() {
                self.speed = speed;
                changed = true;
            }
        }
        if let (Some(a), Some(b), Some(c)) = (s.load_avg1, s.load_avg5, s.load_avg10) {
            let avg = [a, b, c].map(|v| f64::from(v) / 1000.0);
            changed |= set(&mut self.load_avg, Some(Some(avg)));
        }
        changed
    }
}

fn set<T: PartialEq>(dst: &mut T, src: Option<T>) -> bool {
    match src {
        Some(v) if *dst != v => {
            *dst = v;
            true
        }
        _ => false,
    }
}

/// Replaces `dst` only when the bytes differ, so a repeated MON_STATS
/// allocates nothing. Small enough to inline (a load report names no text
/// field); the replacing is out of line.
fn set_text(dst: &mut Box<str>, src: Option<&[u8]>) -> bool {
    #[cold]
    #[inline(never)]
    fn replace(dst: &mut Box<str>, b: &[u8]) {
        *dst = text(b);
    }
    match src {
        Some(b) if b != dst.as_bytes() => {
            replace(dst, b);
            true
        }
        _ => false,
    }
}

/// Wire bytes as text: borrowed when valid UTF-8 (the usual case, checked
/// quickly), with U+FFFD for invalid sequences otherwise.
fn text(b: &[u8]) -> Box<str> {
    match std::str::from_utf8(b) {
        Ok(s) => Box::from(s),
        Err(_) => String::from_utf8_lossy(b).into(),
    }
}

/// Where a job is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Submitted, waiting for a server.
    Waiting,
    /// Compiling on a server.
    Compiling,
    /// Ended with exit code 0.
    Finished,
    /// Ended otherwise (or its end was not seen: then no exit code).
    Failed,
    /// Compiling on its own host, outside the scheduler's placement.
    Local,
    /// A local job that ended.
    LocalFinished,
}

impl JobState {
    /// Waiting, compiling or local.
    pub fn is_active(self) -> bool {
        matches!(
            self,
            JobState::Waiting | JobState::Compiling | JobState::Local
        )
    }

    /// The name used in JSON (`"local_finished"`).
    pub fn name(self) -> &'static str {
        match self {
            JobState::Waiting => "waiting",
            JobState::Compiling => "compiling",
            JobState::Finished => "finished",
            JobState::Failed => "failed",
            JobState::Local => "local",
            JobState::LocalFinished => "local_finished",
        }
    }
}

/// What a server reports when a remote job ends.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct JobStats {
    /// Wall-clock ms.
    pub real_ms: u32,
    /// User CPU ms.
    pub user_ms: u32,
    /// System CPU ms.
    pub sys_ms: u32,
    /// Major page faults.
    pub page_faults: u32,
    /// Bytes sent to the server, compressed.
    pub in_compressed: u32,
    /// Bytes sent to the server, uncompressed.
    pub in_uncompressed: u32,
    /// Bytes sent back, compressed.
    pub out_compressed: u32,
    /// Bytes sent back, uncompressed.
    pub out_uncompressed: u32,
}

impl From<&JobDone> for JobStats {
    fn from(d: &JobDone) -> Self {
        JobStats {
            real_ms: d.real_ms,
            user_ms: d.user_ms,
            sys_ms: d.sys_ms,
            page_faults: d.page_faults,
            in_compressed: d.in_compressed,
            in_uncompressed: d.in_uncompressed,
            out_compressed: d.out_compressed,
            out_uncompressed: d.out_uncompressed,
        }
    }
}
/// A compile job, remote or local, as [`State`] shows it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Job {
    /// The scheduler's id (one counter for remote and local jobs).
    pub id: u32,
    /// Source language; `None` for local jobs and jobs first seen mid-way.
    pub lang: Option<Language>,
    /// Submitting host; `None` if the job was first seen mid-way.
    pub client: Option<u32>,
    /// Compiling host; `None` while waiting.
    pub server: Option<u32>,
    /// Where it is in its life.
    pub state: JobState,
    /// When it was submitted, started compiling or started locally
    /// (monitor clock, ms since the epoch).
    pub start_ms: u64,
    /// When it ended.
    pub end_ms: Option<u64>,
    /// The compiler's exit code (remote jobs whose end was reported).
    pub exit_code: Option<i32>,
    /// What the server reported at the end.
    pub stats: Option<JobStats>,
}

impl Job {
    pub(crate) fn new(id: u32, state: JobState, now_ms: u64) -> Job {
        Job {
            id,
            lang: None,
            client: None,
            server: None,
            state,
            start_ms: now_ms,
            end_ms: None,
            exit_code: None,
            stats: None,
        }
    }
}

/// A job as [`State`] lends it out: its record (the fields of [`Job`],
/// through `Deref`) and its file name.
#[derive(Clone, Copy, Debug)]
pub struct JobRef<'a> {
    job: Job,
    file: &'a [u8],
    pub(crate) key: JobKey,
}

impl<'a> JobRef<'a> {
    pub(crate) fn new(job: Job, file: &'a [u8], key: JobKey) -> JobRef<'a> {
        JobRef { job, file, key }
    }

    /// Source file (remote jobs) or output file (local jobs), bytes that
    /// are not UTF-8 replaced by U+FFFD; empty if never seen.
    pub fn file(&self) -> std::borrow::Cow<'a, str> {
        String::from_utf8_lossy(self.file)
    }

    /// The file name as the scheduler sent it (its first
    /// [`MAX_FILE_NAME`](super::MAX_FILE_NAME) bytes).
    pub fn file_bytes(&self) -> &'a [u8] {
        self.file
    }
}

impl std::ops::Deref for JobRef<'_> {
    type Target = Job;

    fn deref(&self) -> &Job {
        &self.job
    }
}

/// Cluster-wide numbers.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Totals {
    /// Hosts online.
    pub hosts_online: u32,
    /// Slots of every online host, no-remote hosts included.
    pub total_slots: u64,
    /// Jobs compiling on known hosts (remote and local): the sum of the hosts' `active`.
    pub busy_slots: u64,
    /// Jobs compiling anywhere, remote and local.
    pub active: u64,
    /// Jobs waiting for a server.
    pub pending: u64,
    /// Of `active`, local jobs.
    pub local_active: u64,
    /// Remote jobs that ended with exit code 0.
    pub jobs_finished: u64,
    /// Remote jobs that ended otherwise (255: their host left).
    pub jobs_failed: u64,
    /// Local jobs that ended.
    pub local_jobs_finished: u64,
    /// Jobs (remote and local) that ended in the last minute.
    pub jobs_per_minute: f64,
    /// `jobs_finished / (jobs_finished + jobs_failed)`; `None` before any.
    pub success_ratio: Option<f64>,
    /// Messages about jobs never seen begin (joined mid-build): tolerated.
    pub unknown_jobs: u64,
    /// Messages naming hosts never announced: tolerated.
    pub unknown_hosts: u64,
    /// Messages whose body did not decode: skipped.
    pub invalid_messages: u64,
}
