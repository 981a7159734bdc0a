//! The cluster's vocabulary, as [`State`](super::State) lends it out and the
//! publishers show it: the scheduler connection, [`Host`], [`Job`] and its
//! [`JobState`], [`Totals`]. Plain data; the state keeps them up to date.

use crate::protocol::stats::HostStats;
use crate::protocol::{JobDone, Language};
use serde::{Deserialize, Serialize};

/// The scheduler connection as the publishers show it (and as a client
/// of their JSON reads it back: fields it lacks take their defaults).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
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
    /// Set when the stream is a recording played back, not a live scheduler.
    pub replay: Option<Replay>,
}

/// A recording played back as the scheduler (`icewatch replay`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Replay {
    /// The recording's file name.
    pub file: String,
    /// When it was recorded, ms since the epoch. The state's clock is the
    /// recording's: job times are as recorded.
    pub recorded_ms: u64,
}

/// A host (a daemon) known to the scheduler.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Host {
    /// The scheduler's id for the host in the current session (new each
    /// time the daemon logs in; a restarted scheduler gives old ids to
    /// other hosts). The name is what stays.
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
    /// Remote jobs it submitted (asked the scheduler a server for).
    pub submitted: u64,
    /// Local jobs it started.
    pub local_jobs: u64,
    /// Jobs compiling on it now: remote jobs it serves plus its local jobs.
    pub active: u32,
    /// Jobs it submitted that wait for a server.
    pub pending: u32,
    /// Remote jobs it submitted whose compiler failed (a non-zero exit
    /// code reported; not jobs cut short).
    pub failed: u64,
    /// Remote jobs that began compiling on it, from any submitter, its own
    /// given back to it included (the host table's IN).
    pub jobs_in: u64,
    /// Of `jobs_in`, its own jobs the scheduler gave back to it.
    pub jobs_in_own: u64,
    /// Its remote jobs that began compiling on a server, itself included
    /// (the host table's OUT: over all hosts, the `jobs_in` add up to it).
    pub jobs_out: u64,
    #[serde(skip)]
    pub(crate) gen: u64,
    /// The key of its name (see `host_names.rs`).
    #[serde(skip)]
    pub(crate) key: u16,
    /// Remote jobs compiling on it now (`active` without its local jobs).
    #[serde(skip)]
    pub(crate) serving: u32,
}

/// A host's running counters: what goes on when the same host (by name)
/// logs in again, in this scheduler session or a later one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Tally {
    pub(crate) compiled: u64,
    pub(crate) compiled_own: u64,
    pub(crate) submitted: u64,
    pub(crate) local_jobs: u64,
    pub(crate) failed: u64,
    pub(crate) jobs_in: u64,
    pub(crate) jobs_in_own: u64,
    pub(crate) jobs_out: u64,
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
            jobs_in: 0,
            jobs_in_own: 0,
            jobs_out: 0,
            gen: 0,
            key: 0,
            serving: 0,
        }
    }

    /// Its running counters.
    pub(crate) fn tally(&self) -> Tally {
        Tally {
            compiled: self.compiled,
            compiled_own: self.compiled_own,
            submitted: self.submitted,
            local_jobs: self.local_jobs,
            failed: self.failed,
            jobs_in: self.jobs_in,
            jobs_in_own: self.jobs_in_own,
            jobs_out: self.jobs_out,
        }
    }

    /// Goes on from `tally`, counted by the same host before.
    pub(crate) fn add_tally(&mut self, t: Tally) {
        self.compiled += t.compiled;
        self.compiled_own += t.compiled_own;
        self.submitted += t.submitted;
        self.local_jobs += t.local_jobs;
        self.failed += t.failed;
        self.jobs_in += t.jobs_in;
        self.jobs_in_own += t.jobs_in_own;
        self.jobs_out += t.jobs_out;
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
    /// The compiler's exit code 0 was reported.
    Finished,
    /// A non-zero exit code of the compiler was reported.
    Failed,
    /// A remote job that ended without the compiler's verdict: its host
    /// left, the connection to the scheduler ended, or it could not still
    /// be running ([`EndReason`] says which).
    CutShort,
    /// Compiling on its own host, outside the scheduler's placement.
    Local,
    /// A local job that ended.
    LocalFinished,
}

/// Why a job ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// The server reported the compiler's exit code ([`JobState::Finished`]
    /// or [`JobState::Failed`]).
    Exit,
    /// A local job's end was reported.
    LocalDone,
    /// Its server or its submitter left the scheduler (which then reports
    /// exit code 255 for it; its client usually compiles it again locally).
    HostLeft,
    /// The connection to the scheduler ended: the outcome is unknown.
    SchedulerLost,
    /// The monitor ended it: it could not still be running (its server's
    /// slots were all taken by newer jobs, it ran for longer than any
    /// compile plausibly does, or a new job came under its id).
    Stale,
}

impl EndReason {
    /// The name used in JSON (`"host_left"`).
    pub fn name(self) -> &'static str {
        match self {
            EndReason::Exit => "exit",
            EndReason::LocalDone => "local_done",
            EndReason::HostLeft => "host_left",
            EndReason::SchedulerLost => "scheduler_lost",
            EndReason::Stale => "stale",
        }
    }

    /// Every reason, in the order above.
    pub const ALL: [EndReason; 5] = [
        EndReason::Exit,
        EndReason::LocalDone,
        EndReason::HostLeft,
        EndReason::SchedulerLost,
        EndReason::Stale,
    ];
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
            JobState::CutShort => "cut_short",
            JobState::Local => "local",
            JobState::LocalFinished => "local_finished",
        }
    }
}

/// What a server reports when a remote job ends.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
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

/// The fields in their order.
impl From<[u32; 8]> for JobStats {
    fn from(s: [u32; 8]) -> Self {
        let [real_ms, user_ms, sys_ms, page_faults, in_compressed, in_uncompressed, out_compressed, out_uncompressed] =
            s;
        JobStats {
            real_ms,
            user_ms,
            sys_ms,
            page_faults,
            in_compressed,
            in_uncompressed,
            out_compressed,
            out_uncompressed,
        }
    }
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
/// A compile job, remote or local, as [`State`](super::State) shows it.
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
    /// Why it ended; `None` while active.
    pub reason: Option<EndReason>,
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
            reason: None,
        }
    }
}

/// A job as [`State`](super::State) lends it out: its record (the fields
/// of [`Job`], through `Deref`), its file name, the scheduler session it
/// belongs to and the names of its hosts as they were when it ran.
#[derive(Clone, Copy, Debug)]
pub struct JobRef<'a> {
    job: Job,
    file: &'a [u8],
    /// Its history sequence number, if it finished.
    pub(crate) seq: Option<u64>,
    pub(crate) session: u32,
    pub(crate) client_name: Option<&'a str>,
    pub(crate) server_name: Option<&'a str>,
}

impl<'a> JobRef<'a> {
    pub(crate) fn new(job: Job, file: &'a [u8], seq: Option<u64>) -> JobRef<'a> {
        JobRef {
            job,
            file,
            seq,
            session: 0,
            client_name: None,
            server_name: None,
        }
    }

    /// The scheduler session it belongs to: 1 for the first session the
    /// monitor saw, one more for each reconnection. Its `id`, `client` and
    /// `server` are the scheduler's numbers within that session.
    pub fn session(&self) -> u32 {
        self.session
    }

    /// The submitting host's name as it was when the job ran (`None` if
    /// the host was never announced).
    pub fn client_name(&self) -> Option<&'a str> {
        self.client_name
    }

    /// The compiling host's name as it was when the job ran.
    pub fn server_name(&self) -> Option<&'a str> {
        self.server_name
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

/// Cluster-wide numbers (read back from JSON, fields it lacks are 0).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
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
    /// Remote jobs whose compiler exited with 0.
    pub jobs_finished: u64,
    /// Remote jobs whose compiler exited otherwise.
    pub jobs_failed: u64,
    /// Remote jobs cut short (see [`JobState::CutShort`]).
    pub jobs_cut_short: u64,
    /// Local jobs that ended.
    pub local_jobs_finished: u64,
    /// Jobs (remote and local) that ended in the last minute, by a report
    /// of their end or their host leaving.
    pub jobs_per_minute: f64,
    /// `jobs_finished / (jobs_finished + jobs_failed)`: compiler outcomes
    /// only; `None` before any.
    pub success_ratio: Option<f64>,
    /// Messages about jobs never seen begin (joined mid-build): tolerated.
    pub unknown_jobs: u64,
    /// Messages naming hosts never announced: tolerated.
    pub unknown_hosts: u64,
    /// Messages whose body did not decode: skipped.
    pub invalid_messages: u64,
}
