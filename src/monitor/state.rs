//! [`State`]: the live picture of a cluster, built by applying decoded
//! scheduler messages one by one. Pure data: no I/O, no clock of its own
//! (every call that can change time-based numbers takes `now_ms`).
//!
//! Bookkeeping rule: a job contributes to counters only through
//! `enter` (when it takes a state) and `leave` (when it gives it up), and it
//! remembers which host and link counters it raised. So whatever order
//! messages arrive in, however many are missing or repeated, every counter
//! goes back down exactly as far as it went up and never below zero.

use super::change::ChangeSet;
use super::jobs::{Active, Ended, JobKey, Jobs, Slot};
use crate::protocol::stats::HostStats;
use crate::protocol::{JobDone, Language, Message, EXIT_CODE_HOST_GONE};
use rustc_hash::{FxHashMap, FxHashSet};
use serde::Serialize;
use slab::Slab;
use std::collections::VecDeque;
use std::num::NonZeroU16;

/// How many offline hosts are kept (shown as offline) before the oldest go.
pub const OFFLINE_HOST_LIMIT: usize = 1024;

/// Jobs ended early whose exit-255 report is still expected; past this
/// the set starts over (a report then merely counts as an unknown job).
const ENDED_EARLY_LIMIT: usize = 1 << 16;

/// At most this many active jobs: past it, the oldest eighth ends with an
/// unknown outcome (a real cluster never comes near; a broken stream could).
pub const MAX_ACTIVE_JOBS: usize = 1 << 18;
/// At most this many hosts; a scheduler announcing more is not believed.
/// (One less than 2^16, so that a job's record can name a host's slot, or
/// none, in two bytes.)
pub const MAX_HOSTS: usize = (1 << 16) - 1;
/// A change set listing more jobs than this collapses into "send a
/// snapshot" (see [`ChangeSet::is_reset`]), so a state whose changes are
/// never taken still stays bounded.
pub const CHANGE_LIMIT: usize = 1 << 20;

/// The longest history a [`State`] keeps, whatever [`StateOptions`] asks.
pub const MAX_HISTORY: usize = 1 << 24;

/// Options of a [`State`].
#[derive(Clone, Debug)]
pub struct StateOptions {
    /// How many finished jobs the history keeps (at least 1, at most
    /// [`MAX_HISTORY`]; default 10,000).
    pub history_limit: usize,
}

impl Default for StateOptions {
    fn default() -> Self {
        StateOptions {
            history_limit: 10_000,
        }
    }
}

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
    fn new(id: u32) -> Host {
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
    fn update(&mut self, s: &HostStats<'_>) -> bool {
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

/// Which counters a job raised, so that `leave` lowers exactly those: the
/// slots of the hosts whose counters it raised (each keeps its slot while
/// any job counts on it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Raised {
    // Each slot plus one, so that `None` takes no room of its own: the
    // record of every job ever kept carries these.
    client_pending: Option<NonZeroU16>,
    server_active: Option<NonZeroU16>,
}

impl Raised {
    fn client_pending(&self) -> Option<HostSlot> {
        self.client_pending.map(|s| s.get() - 1)
    }

    fn server_active(&self) -> Option<HostSlot> {
        self.server_active.map(|s| s.get() - 1)
    }

    // Host slots are below MAX_HOSTS < u16::MAX: plus one never wraps.
    fn set_client_pending(&mut self, slot: HostSlot) {
        self.client_pending = NonZeroU16::new(slot.wrapping_add(1));
    }

    fn set_server_active(&mut self, slot: HostSlot) {
        self.server_active = NonZeroU16::new(slot.wrapping_add(1));
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

/// What of an active job can change once it is published, as a diff
/// showed it. Only active jobs are marked, so a marked job was shown with
/// no end time, exit code or statistics.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct JobSeen {
    /// [`State`]'s publishing epoch at the time: older marks are void.
    pub(crate) epoch: u32,
    /// The job's [`Active::serial`].
    pub(crate) serial: u32,
    pub(crate) server: Option<u32>,
    pub(crate) start_ms: u64,
    pub(crate) state: JobState,
}

impl Job {
    pub(super) fn new(id: u32, state: JobState, now_ms: u64) -> Job {
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
    key: JobKey,
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

#[derive(Clone, Copy, Debug, Default)]
struct Counters {
    hosts_online: u32,
    total_slots: u64,
    busy: u64,
    compiling: u64,
    pending: u64,
    local_active: u64,
    jobs_finished: u64,
    jobs_failed: u64,
    local_jobs_finished: u64,
    unknown_jobs: u64,
    unknown_hosts: u64,
    invalid_messages: u64,
}

/// Job ends per second over the last minute, in 60 one-second buckets.
#[derive(Clone, Debug)]
struct RateWindow {
    /// (second, job ends in it), at index second % 60.
    buckets: [(u64, u32); 60],
    /// When the oldest counted second leaves the window (ms), so the
    /// per-minute figure changes; `u64::MAX` if nothing is counted.
    next_expiry_ms: u64,
}

impl RateWindow {
    fn new() -> RateWindow {
        RateWindow {
            buckets: [(u64::MAX, 0); 60],
            next_expiry_ms: u64::MAX,
        }
    }

    fn add(&mut self, now_ms: u64) {
        let sec = now_ms / 1000;
        let b = &mut self.buckets[(sec % 60) as usize];
        if b.0 != sec {
            *b = (sec, 0);
        }
        b.1 = b.1.saturating_add(1);
        self.next_expiry_ms = self.next_expiry_ms.min((sec + 60) * 1000);
    }

    fn per_minute(&self, now_ms: u64) -> u64 {
        let sec = now_ms / 1000;
        self.buckets
            .iter()
            .filter(|(s, _)| *s <= sec && sec - *s < 60)
            .map(|(_, n)| u64::from(*n))
            .sum()
    }

    /// Moves the window to `now_ms`; true if the per-minute figure changed.
    fn advance(&mut self, now_ms: u64) -> bool {
        if now_ms < self.next_expiry_ms {
            return false;
        }
        let sec = now_ms / 1000;
        self.next_expiry_ms = self
            .buckets
            .iter()
            .filter(|(s, n)| *n > 0 && *s <= sec && sec - *s < 60)
            .map(|(s, _)| (s + 60) * 1000)
            .min()
            .unwrap_or(u64::MAX);
        true
    }
}

/// Index of a host in [`Hosts`]: below [`MAX_HOSTS`].
type HostSlot = u16;

/// The hosts, each in a slot of its own for as long as it is known, and an
/// index from the scheduler's ids to the slots. A job remembers the slots
/// of the hosts it counts on, so taking its counts back looks nothing up.
#[derive(Debug, Default)]
struct Hosts {
    slab: Slab<Host>,
    index: HostIndex,
}

/// Host ids → slots. The scheduler numbers hosts with a counter from 1, so
/// ids below [`HostIndex::DIRECT`] are looked up in a table by position;
/// a scheduler that has seen more logins than that uses a hash map too.
#[derive(Debug, Default)]
struct HostIndex {
    direct: Vec<Option<HostSlot>>,
    hashed: FxHashMap<u32, HostSlot>,
}

impl HostIndex {
    /// Ids below this are looked up by position (the table takes at most
    /// 256 KiB).
    const DIRECT: u32 = 1 << 16;

    fn get(&self, id: u32) -> Option<HostSlot> {
        if id < Self::DIRECT {
            self.direct.get(id as usize).copied().flatten()
        } else {
            self.hashed.get(&id).copied()
        }
    }

    fn insert(&mut self, id: u32, slot: HostSlot) {
        if id < Self::DIRECT {
            let at = id as usize;
            if self.direct.len() <= at {
                self.direct.resize(at + 1, None);
            }
            self.direct[at] = Some(slot);
        } else {
            self.hashed.insert(id, slot);
        }
    }

    fn remove(&mut self, id: u32) -> Option<HostSlot> {
        if id < Self::DIRECT {
            self.direct.get_mut(id as usize).and_then(Option::take)
        } else {
            self.hashed.remove(&id)
        }
    }

    fn clear(&mut self) {
        self.direct.clear();
        self.hashed.clear();
    }
}

impl Hosts {
    fn slot(&self, id: u32) -> Option<HostSlot> {
        self.index.get(id)
    }

    fn get(&self, id: u32) -> Option<&Host> {
        self.slot(id).map(|slot| &self.slab[usize::from(slot)])
    }

    fn contains(&self, id: u32) -> bool {
        self.index.get(id).is_some()
    }

    fn len(&self) -> usize {
        self.slab.len()
    }

    fn iter(&self) -> impl Iterator<Item = &Host> {
        self.slab.iter().map(|(_, h)| h)
    }

    /// Files a new host; the caller keeps the count under [`MAX_HOSTS`].
    fn insert(&mut self, host: Host) -> HostSlot {
        let id = host.id;
        // At most MAX_HOSTS hosts, so every slot fits.
        let slot = self.slab.insert(host) as HostSlot;
        self.index.insert(id, slot);
        slot
    }

    fn remove(&mut self, id: u32) -> Option<Host> {
        let slot = self.index.remove(id)?;
        Some(self.slab.remove(usize::from(slot)))
    }

    fn clear(&mut self) {
        self.slab.clear();
        self.index.clear();
    }
}

/// Hosts, counters and the change set: everything a job's state change
/// touches, apart from the job tables themselves.
#[derive(Debug)]
struct Book {
    hosts: Hosts,
    counts: Counters,
    changes: ChangeSet,
    gen: u64,
}

impl Book {
    fn touch_host(&mut self, id: u32) -> Option<&mut Host> {
        let slot = self.hosts.slot(id)?;
        Some(self.touch_slot(slot))
    }

    /// The host in `slot`, recorded as changed.
    fn touch_slot(&mut self, slot: HostSlot) -> &mut Host {
        let h = &mut self.hosts.slab[usize::from(slot)];
        if h.gen != self.gen {
            h.gen = self.gen;
            self.changes.hosts.push(h.id);
        }
        h
    }

    fn touch_job(&mut self, job: &mut Active) {
        let gen = self.gen as u32;
        if job.gen != gen && !self.changes.overflow {
            job.gen = gen;
            self.changes.jobs.push(job.id);
            if self.changes.jobs.len() > CHANGE_LIMIT {
                self.overflow();
            }
        }
    }

    /// Too much changed to list, or nobody listens: the change set now
    /// says "everything", and no job is listed until it is taken.
    fn overflow(&mut self) {
        self.changes.jobs = Vec::new();
        self.changes.overflow = true;
        self.changes.reset = true;
        self.changes.totals = true;
    }

    /// Counts `job` in its current state.
    fn enter(&mut self, job: &mut Active) {
        self.touch_job(job);
        self.changes.totals = true;
        let c = &mut self.counts;
        match job.state {
            JobState::Waiting => {
                c.pending += 1;
                if let Some(slot) = job.client.and_then(|id| self.hosts.slot(id)) {
                    self.touch_slot(slot).pending += 1;
                    job.raised.set_client_pending(slot);
                }
            }
            JobState::Compiling | JobState::Local => {
                if job.state == JobState::Local {
                    c.local_active += 1;
                } else {
                    c.compiling += 1;
                }
                if let Some(slot) = job.server.and_then(|id| self.hosts.slot(id)) {
                    self.touch_slot(slot).active += 1;
                    self.counts.busy += 1;
                    job.raised.set_server_active(slot);
                }
            }
            JobState::Finished | JobState::Failed | JobState::LocalFinished => {}
        }
    }

    /// Takes back what `enter` counted for `job`.
    fn leave(&mut self, job: &mut Active) {
        self.changes.totals = true;
        let c = &mut self.counts;
        match job.state {
            JobState::Waiting => c.pending = c.pending.saturating_sub(1),
            JobState::Compiling => c.compiling = c.compiling.saturating_sub(1),
            JobState::Local => c.local_active = c.local_active.saturating_sub(1),
            JobState::Finished | JobState::Failed | JobState::LocalFinished => {}
        }
        let raised = std::mem::take(&mut job.raised);
        if let Some(slot) = raised.client_pending() {
            let h = self.touch_slot(slot);
            h.pending = h.pending.saturating_sub(1);
        }
        if let Some(slot) = raised.server_active() {
            let h = self.touch_slot(slot);
            h.active = h.active.saturating_sub(1);
            self.counts.busy = self.counts.busy.saturating_sub(1);
        }
    }

    fn set_online(&mut self, id: u32, online: bool) {
        if let Some(slot) = self.hosts.slot(id) {
            self.set_slot_online(slot, online);
        }
    }

    fn set_slot_online(&mut self, slot: HostSlot, online: bool) {
        if self.hosts.slab[usize::from(slot)].online == online {
            return;
        }
        let h = self.touch_slot(slot);
        h.online = online;
        let slots = u64::from(h.max_jobs);
        let c = &mut self.counts;
        if online {
            c.hosts_online += 1;
            c.total_slots += slots;
        } else {
            c.hosts_online = c.hosts_online.saturating_sub(1);
            c.total_slots = c.total_slots.saturating_sub(slots);
        }
        self.changes.totals = true;
    }
}

/// How a job ends.
#[derive(Clone, Copy, Debug)]
enum End {
    /// The scheduler reported the end of a remote job.
    Done(i32, Option<JobStats>),
    /// A host of a remote job left: the job fails (the scheduler reports
    /// exit code 255) without having been compiled.
    HostGone,
    /// A local job ended (or its host left).
    LocalDone,
    /// The scheduler connection went away: the outcome is unknown.
    Lost,
}

/// The live state of one cluster, fed message by message.
///
/// ```
/// use icewatch::monitor::{State, StateOptions};
/// use icewatch::protocol::{Message, MonStats};
///
/// let mut state = State::new(StateOptions::default());
/// state.scheduler_connected("127.0.0.1:8765".into(), 43, 0);
/// let text = b"Name:remote1\nIP:10.0.0.2\nMaxJobs:4\nNoRemote:false\n";
/// state.apply(&Message::MonStats(MonStats { host_id: 7, text }), 1);
/// assert_eq!(state.totals().total_slots, 4);
/// let changes = state.take_changes();
/// let diff = serde_json::to_value(state.diff(&changes)).unwrap();
/// assert_eq!(diff["hosts"][0]["name"], "remote1");
/// ```
#[derive(Debug)]
pub struct State {
    scheduler: SchedulerStatus,
    book: Book,
    /// Active jobs and the history.
    jobs: Jobs,
    /// Offline hosts, oldest first (may name hosts since back online or gone).
    offline: VecDeque<u32>,
    /// Remote jobs ended because their host left: the scheduler's exit-255
    /// reports for them are expected, not unknown.
    ended_early: FxHashSet<u32>,
    rate: RateWindow,
    clock_ms: u64,
    messages: u64,
    sessions: u64,
    /// The hosts as the last published diff left them, so that the next
    /// diff carries only the fields that changed since (see
    /// [`State::mark_published`]).
    published: FxHashMap<u32, Host>,
    /// Bumped when published marks become void (see
    /// [`State::forget_published`]).
    published_epoch: u32,
    /// The link counts when changes were last taken.
    links_taken: FxHashMap<(u32, u32), u32>,
}

impl State {
    /// An empty state: no scheduler, no hosts.
    pub fn new(opts: StateOptions) -> State {
        State {
            scheduler: SchedulerStatus::default(),
            book: Book {
                hosts: Hosts::default(),
                counts: Counters::default(),
                changes: ChangeSet::default(),
                gen: 1,
            },
            jobs: Jobs::new(opts.history_limit),
            offline: VecDeque::new(),
            ended_early: FxHashSet::default(),
            rate: RateWindow::new(),
            clock_ms: 0,
            messages: 0,
            sessions: 0,
            published: FxHashMap::default(),
            published_epoch: 0,
            links_taken: FxHashMap::default(),
        }
    }

    /// Host `id` as the last published diff (or snapshot) showed it, if
    /// [`State::mark_published`] recorded it.
    pub(crate) fn published_host(&self, id: u32) -> Option<&Host> {
        self.published.get(&id)
    }

    /// Job `job` as the last published diff showed it, if it did.
    pub(crate) fn published_job(&self, job: JobRef<'_>) -> Option<JobSeen> {
        let seen = self.jobs.seen(job.key)?;
        (seen.epoch == self.published_epoch).then_some(seen)
    }

    /// Records that the diff of `changes` was published: the next
    /// [`State::diff`] sends these hosts and jobs as their changed fields
    /// only.
    pub fn mark_published(&mut self, changes: &ChangeSet) {
        let epoch = self.published_epoch;
        let ids = (!changes.overflow).then_some(&changes.jobs[..]);
        self.jobs.mark_seen(ids, |job| JobSeen {
            epoch,
            serial: job.serial,
            server: job.server,
            start_ms: job.start_ms,
            state: job.state,
        });
        for &id in &changes.hosts {
            match self.book.hosts.get(id) {
                Some(h) => match self.published.get_mut(&id) {
                    Some(seen) => seen.clone_from(h),
                    None => {
                        self.published.insert(id, h.clone());
                    }
                },
                None => {
                    self.published.remove(&id);
                }
            }
        }
    }

    /// Forgets what was published (changes went unpublished): the next
    /// diff sends every host it names whole.
    pub fn forget_published(&mut self) {
        self.published.clear();
        self.published_epoch = self.published_epoch.wrapping_add(1);
        self.jobs.forget_seen();
    }

    /// Nobody is listening: forgets the changes since the last
    /// [`State::take_changes`] and what was published, and stops listing
    /// the jobs that change (a busy cluster changes hundreds of thousands a
    /// second) until the next `take_changes`. A set taken after it says
    /// that everything changed; take one, and drop it, before the snapshot
    /// that a new listener starts from.
    pub fn discard_changes(&mut self) {
        self.take_changes();
        self.forget_published();
        self.book.overflow();
    }

    /// Applies one message from the scheduler, received at `now_ms`.
    ///
    /// Messages a monitor does not use (PING, END, unknown types) only count
    /// in [`State::messages`]; messages about unknown jobs or hosts are
    /// tolerated and counted in [`Totals`].
    pub fn apply(&mut self, msg: &Message<'_>, now_ms: u64) {
        self.messages += 1;
        self.advance_clock(now_ms);
        match msg {
            Message::MonStats(m) => self.host_stats(m.host_id, &m.stats()),
            Message::MonGetCs(m) => {
                self.job_requested(m.job_id, m.client_id, m.request.filename, m.request.lang)
            }
            Message::MonJobBegin(m) => self.job_begun(m.job_id, m.host_id),
            Message::MonJobDone(d) | Message::JobDone(d) => self.job_done(d),
            Message::MonLocalJobBegin(m) => self.local_job_begun(m.job_id, m.host_id, m.file),
            Message::JobLocalDone(m) => self.local_job_done(m.job_id),
            _ => {}
        }
    }

    /// Counts a message whose body did not decode (the connection skips it).
    pub fn invalid_message(&mut self) {
        self.messages += 1;
        self.book.counts.invalid_messages += 1;
        self.book.changes.totals = true;
    }

    /// A new session with the scheduler at `address` is up, at `protocol`.
    ///
    /// The scheduler is about to send MON_STATS for every host, so the old
    /// session's hosts, jobs, links and counters go (jobs still active end as
    /// if the connection was lost; the history stays, across sessions).
    pub fn scheduler_connected(&mut self, address: String, protocol: u32, now_ms: u64) {
        self.advance_clock(now_ms);
        self.end_all();
        let ids: Vec<u32> = self.book.hosts.iter().map(|h| h.id).collect();
        self.book.changes.hosts.extend(ids);
        self.book.changes.repeats = true;
        self.book.hosts.clear();
        self.book.counts = Counters::default();
        self.offline.clear();
        self.ended_early.clear();
        if self.sessions > 0 {
            self.scheduler.reconnects += 1;
        }
        self.sessions += 1;
        self.scheduler.address = address;
        self.scheduler.protocol = Some(protocol);
        self.scheduler.online = true;
        self.scheduler.since_ms = Some(now_ms);
        self.scheduler.error = None;
        self.book.changes.scheduler = true;
        self.book.changes.totals = true;
        self.book.changes.reset = true;
    }

    /// The session ended (or an attempt failed) because of `error`: hosts are
    /// shown offline and active jobs end with an unknown outcome.
    pub fn scheduler_lost(&mut self, error: String, now_ms: u64) {
        self.advance_clock(now_ms);
        self.end_all();
        let online: Vec<u32> = self
            .book
            .hosts
            .iter()
            .filter(|h| h.online)
            .map(|h| h.id)
            .collect();
        for id in online {
            self.host_gone(id);
        }
        let s = &mut self.scheduler;
        if s.online || s.since_ms.is_none() {
            s.since_ms = Some(now_ms);
        }
        if s.online || s.error.as_deref() != Some(error.as_str()) {
            s.online = false;
            s.error = Some(error);
            self.book.changes.scheduler = true;
        }
    }

    /// Sets the scheduler address shown before a session is up (after
    /// discovery, or while attempts fail).
    pub fn scheduler_address(&mut self, address: &str) {
        if self.scheduler.address != address {
            self.scheduler.address = address.to_owned();
            self.book.changes.scheduler = true;
        }
    }

    /// Moves the clock on without a message; true if that changed the
    /// totals (jobs per minute decays while nothing ends).
    pub fn tick(&mut self, now_ms: u64) -> bool {
        self.advance_clock(now_ms)
    }

    /// Moves the clock to `now_ms` (never back); true if that changed the
    /// jobs per minute, which then counts as a change of the totals.
    fn advance_clock(&mut self, now_ms: u64) -> bool {
        self.clock_ms = self.clock_ms.max(now_ms);
        let changed = self.rate.advance(self.clock_ms);
        self.book.changes.totals |= changed;
        changed
    }

    /// What changed since the last call, to turn into a [`Diff`](super::Diff)
    /// with [`State::diff`] while still holding the same lock.
    pub fn take_changes(&mut self) -> ChangeSet {
        // The next period likely changes about as much: size its lists so,
        // instead of growing them from nothing again.
        let next = ChangeSet::sized_like(&self.book.changes);
        let mut changes = std::mem::replace(&mut self.book.changes, next);
        self.book.gen += 1;
        if changes.repeats {
            changes.dedup();
        }
        // Links are counted afresh from the jobs compiling: once a period
        // here rather than twice a job in `apply` (a hash lookup that the
        // caches, busy with the jobs, rarely hold).
        let now = self.link_counts();
        let was = &self.links_taken;
        changes.links.extend(
            now.iter()
                .filter(|&(k, n)| was.get(k) != Some(n))
                .map(|(&k, _)| k),
        );
        changes
            .links
            .extend(was.keys().filter(|&k| !now.contains_key(k)));
        changes.links.sort_unstable();
        self.links_taken = now;
        changes
    }

    /// Every host, online or recently offline, in no particular order.
    pub fn hosts(&self) -> impl Iterator<Item = &Host> {
        self.book.hosts.iter()
    }

    /// One host.
    pub fn host(&self, id: u32) -> Option<&Host> {
        self.book.hosts.get(id)
    }

    /// Active jobs (waiting, compiling, local), in no particular order.
    pub fn jobs(&self) -> impl Iterator<Item = JobRef<'_>> {
        self.jobs.active_slots().map(|slot| self.jobs.lend(slot))
    }

    /// One active job.
    pub fn job(&self, id: u32) -> Option<JobRef<'_>> {
        self.jobs.slot_of(id).map(|slot| self.jobs.lend(slot))
    }

    /// Finished jobs, oldest first, at most `history_limit`.
    pub fn history(&self) -> impl DoubleEndedIterator<Item = JobRef<'_>> + ExactSizeIterator {
        self.jobs.history()
    }

    /// Links: `(submitter, server)` → remote jobs compiling, only non-zero,
    /// in no particular order. Counted from the active jobs on each call.
    pub fn links(&self) -> impl Iterator<Item = ((u32, u32), u32)> + '_ {
        self.link_counts().into_iter()
    }

    /// Active jobs on the link `from` → `to` (0 if none). Counted from the
    /// active jobs on each call.
    pub fn link(&self, from: u32, to: u32) -> u32 {
        let on = |j: &&Active| self.link_of(j) == Some((from, to));
        self.jobs.active().filter(on).count() as u32
    }

    /// Remote jobs compiling on each link.
    pub(crate) fn link_counts(&self) -> FxHashMap<(u32, u32), u32> {
        let mut counts = FxHashMap::default();
        for key in self.jobs.active().filter_map(|j| self.link_of(j)) {
            *counts.entry(key).or_insert(0) += 1;
        }
        counts
    }

    /// The link `job` counts on: a remote job compiling on a known server
    /// for a known submitter.
    fn link_of(&self, job: &Active) -> Option<(u32, u32)> {
        let counted = job.state == JobState::Compiling && job.raised.server_active.is_some();
        let (from, to) = (job.client?, job.server?);
        (counted && self.book.hosts.contains(from)).then_some((from, to))
    }

    /// Cluster totals at the latest time seen.
    pub fn totals(&self) -> Totals {
        let c = &self.book.counts;
        let ended = c.jobs_finished + c.jobs_failed;
        Totals {
            hosts_online: c.hosts_online,
            total_slots: c.total_slots,
            busy_slots: c.busy,
            active: c.compiling + c.local_active,
            pending: c.pending,
            local_active: c.local_active,
            jobs_finished: c.jobs_finished,
            jobs_failed: c.jobs_failed,
            local_jobs_finished: c.local_jobs_finished,
            jobs_per_minute: self.rate.per_minute(self.clock_ms) as f64,
            success_ratio: (ended > 0).then(|| c.jobs_finished as f64 / ended as f64),
            unknown_jobs: c.unknown_jobs,
            unknown_hosts: c.unknown_hosts,
            invalid_messages: c.invalid_messages,
        }
    }

    /// The scheduler connection.
    pub fn scheduler(&self) -> &SchedulerStatus {
        &self.scheduler
    }

    /// Messages applied since the state was made (all sessions).
    pub fn messages(&self) -> u64 {
        self.messages
    }

    /// The latest time seen, ms since the epoch.
    pub fn clock_ms(&self) -> u64 {
        self.clock_ms
    }

    /// Finished jobs with history sequence number `from` or later, oldest first.
    pub(crate) fn history_since(&self, from: u64) -> impl Iterator<Item = JobRef<'_>> {
        self.jobs.history_since(from)
    }

    // ---- messages ----

    fn host_stats(&mut self, id: u32, stats: &HostStats<'_>) {
        let slot = self.book.hosts.slot(id);
        if stats.offline {
            if slot.is_some() {
                self.host_gone(id);
            } else {
                self.book.counts.unknown_hosts += 1;
                self.book.changes.totals = true;
            }
            return;
        }
        let slot = match slot {
            Some(slot) => {
                self.book.set_slot_online(slot, true);
                slot
            }
            None if self.book.hosts.len() >= MAX_HOSTS => {
                self.book.counts.unknown_hosts += 1;
                self.book.changes.totals = true;
                return;
            }
            None => {
                let (name, ip) = (stats.name.unwrap_or(b""), stats.ip.unwrap_or(b""));
                self.forget_offline_twins(id, name, ip);
                let slot = self.book.hosts.insert(Host::new(id));
                self.book.touch_slot(slot);
                self.book.counts.hosts_online += 1;
                self.book.changes.totals = true;
                slot
            }
        };
        let gen = self.book.gen;
        let h = &mut self.book.hosts.slab[usize::from(slot)];
        let old_slots = u64::from(h.max_jobs);
        if h.update(stats) {
            let new_slots = u64::from(h.max_jobs);
            if h.gen != gen {
                h.gen = gen;
                self.book.changes.hosts.push(id);
            }
            let c = &mut self.book.counts;
            c.total_slots = (c.total_slots + new_slots).saturating_sub(old_slots);
            self.book.changes.totals |= new_slots != old_slots;
        }
    }

    /// A daemon that logs in again gets a new id: drop its old offline entry.
    fn forget_offline_twins(&mut self, id: u32, name: &[u8], ip: &[u8]) {
        if self.offline.is_empty() {
            return;
        }
        let twins: Vec<u32> = self
            .book
            .hosts
            .iter()
            .filter(|h| {
                h.id != id && !h.online && h.name.as_bytes() == name && h.ip.as_bytes() == ip
            })
            .map(|h| h.id)
            .collect();
        for twin in twins {
            self.remove_host(twin);
        }
    }

    /// Drops a host. Jobs that still name it (only odd streams start jobs
    /// on an offline host) are counted again without it.
    fn remove_host(&mut self, id: u32) {
        let naming = self
            .jobs
            .active_ids(|j| j.client == Some(id) || j.server == Some(id));
        for &job_id in &naming {
            if let Some(job) = self.jobs.get_mut(job_id) {
                self.book.leave(job);
            }
        }
        if let Some(h) = self.book.hosts.remove(id) {
            if h.online {
                let c = &mut self.book.counts;
                c.hosts_online = c.hosts_online.saturating_sub(1);
                c.total_slots = c.total_slots.saturating_sub(u64::from(h.max_jobs));
            }
        }
        self.book.changes.hosts.push(id);
        self.book.changes.repeats = true;
        for &job_id in &naming {
            if let Some(job) = self.jobs.get_mut(job_id) {
                self.book.enter(job);
            }
        }
    }

    /// The host left: it goes offline and every job on it or from it ends,
    /// as the scheduler ends them (exit code 255 for remote jobs).
    fn host_gone(&mut self, id: u32) {
        let ending = self
            .jobs
            .active_ids(|j| j.server == Some(id) || j.client == Some(id));
        for job_id in ending {
            let Some(slot) = self.jobs.take(job_id) else {
                continue;
            };
            let end = if self.jobs.slot_mut(slot).state == JobState::Local {
                End::LocalDone
            } else {
                if self.ended_early.len() >= ENDED_EARLY_LIMIT {
                    self.ended_early.clear();
                }
                self.ended_early.insert(job_id);
                End::HostGone
            };
            self.finish(slot, end);
        }
        if self.book.hosts.get(id).is_some_and(|h| h.online) {
            self.book.set_online(id, false);
            self.offline.push_back(id);
        }
        while self.offline.len() > OFFLINE_HOST_LIMIT {
            if let Some(old) = self.offline.pop_front() {
                if self.book.hosts.get(old).is_some_and(|h| !h.online) {
                    self.remove_host(old);
                }
            }
        }
    }

    fn job_requested(&mut self, id: u32, client: u32, file: &[u8], lang: Language) {
        let slot = self.start(id, JobState::Waiting, file);
        let job = self.jobs.slot_mut(slot);
        job.lang = Some(lang);
        job.client = Some(client);
        match self.book.touch_host(client) {
            Some(h) => h.submitted += 1,
            None => self.book.counts.unknown_hosts += 1,
        }
        self.book.enter(job);
    }

    /// Files a new active job, not yet counted (the caller sets it up, then
    /// lets the book count it); one already under its id (the scheduler
    /// never reuses an id within a session) ends with an unknown outcome.
    fn start(&mut self, id: u32, state: JobState, file: &[u8]) -> Slot {
        if self.jobs.active_len() >= MAX_ACTIVE_JOBS && self.jobs.get(id).is_none() {
            let mut ids = self.jobs.active_ids(|_| true);
            ids.truncate(ids.len() / 8);
            for old in ids {
                if let Some(slot) = self.jobs.take(old) {
                    self.finish(slot, End::Lost);
                }
            }
        }
        let (slot, displaced) = self.jobs.start(id, state, self.clock_ms, file);
        if let Some(old) = displaced {
            self.book.counts.unknown_jobs += 1;
            self.book.changes.repeats = true;
            self.finish(old, End::Lost);
        }
        slot
    }

    fn job_begun(&mut self, id: u32, server: u32) {
        let now = self.clock_ms;
        let job = match self.jobs.get_mut(id) {
            Some(job) => {
                self.book.leave(job);
                job.state = JobState::Compiling;
                job.start_ms = now;
                job
            }
            None => {
                self.book.counts.unknown_jobs += 1;
                let slot = self.start(id, JobState::Compiling, b"");
                self.jobs.slot_mut(slot)
            }
        };
        job.server = Some(server);
        self.book.enter(job);
        if job.raised.server_active.is_none() {
            self.book.counts.unknown_hosts += 1;
        }
    }

    fn job_done(&mut self, done: &JobDone) {
        let Some(slot) = self.jobs.take(done.job_id) else {
            if !self.ended_early.remove(&done.job_id) {
                self.book.counts.unknown_jobs += 1;
                self.book.changes.totals = true;
            }
            return;
        };
        let end = if self.jobs.slot_mut(slot).state == JobState::Local {
            End::LocalDone
        } else {
            End::Done(done.exit_code_signed(), Some(JobStats::from(done)))
        };
        self.finish(slot, end);
    }

    fn local_job_begun(&mut self, id: u32, host: u32, file: &[u8]) {
        let slot = self.start(id, JobState::Local, file);
        let job = self.jobs.slot_mut(slot);
        job.client = Some(host);
        job.server = Some(host);
        match self.book.touch_host(host) {
            Some(h) => h.local_jobs += 1,
            None => self.book.counts.unknown_hosts += 1,
        }
        self.book.enter(job);
    }

    fn local_job_done(&mut self, id: u32) {
        match self.jobs.take(id) {
            Some(slot) => self.finish(slot, End::LocalDone),
            None => {
                self.book.counts.unknown_jobs += 1;
                self.book.changes.totals = true;
            }
        }
    }

    /// Ends the job in `slot`, taken out of the active jobs, and files it
    /// in the history.
    fn finish(&mut self, slot: Slot, end: End) {
        let job = self.jobs.slot_mut(slot);
        let server_slot = job.raised.server_active();
        self.book.leave(job);
        let (client, server, was) = (job.client, job.server, job.state);
        let now = self.clock_ms;
        let mut ended = Ended {
            state: JobState::Failed,
            end_ms: now,
            exit_code: None,
            stats: None,
        };
        let counted = !matches!(end, End::Lost);
        match end {
            End::HostGone => {
                ended.exit_code = Some(EXIT_CODE_HOST_GONE as i32);
                self.book.counts.jobs_failed += 1;
                if let Some(h) = client.and_then(|id| self.book.touch_host(id)) {
                    h.failed += 1;
                }
            }
            End::Done(exit, stats) => {
                if exit == 0 {
                    ended.state = JobState::Finished;
                    self.book.counts.jobs_finished += 1;
                } else {
                    self.book.counts.jobs_failed += 1;
                }
                ended.exit_code = Some(exit);
                ended.stats = stats;
                let server_at =
                    server_slot.or_else(|| server.and_then(|id| self.book.hosts.slot(id)));
                if let Some(at) = server_at {
                    let h = self.book.touch_slot(at);
                    h.compiled += 1;
                    if client == server {
                        h.compiled_own += 1;
                    }
                }
                if exit != 0 {
                    if let Some(h) = client.and_then(|id| self.book.touch_host(id)) {
                        h.failed += 1;
                    }
                }
            }
            End::LocalDone => {
                ended.state = JobState::LocalFinished;
                self.book.counts.local_jobs_finished += 1;
            }
            End::Lost => {
                if was == JobState::Local {
                    ended.state = JobState::LocalFinished;
                }
            }
        }
        if counted {
            self.rate.add(now);
        }
        if self.book.changes.done_from.is_none() {
            self.book.changes.done_from = Some(self.jobs.next_finished());
        }
        self.jobs.retire(slot, ended);
    }

    /// Ends every active job with an unknown outcome.
    fn end_all(&mut self) {
        for id in self.jobs.active_ids(|_| true) {
            if let Some(slot) = self.jobs.take(id) {
                self.finish(slot, End::Lost);
            }
        }
    }

    /// Recounts everything from the tables and panics where the running
    /// counters disagree (for tests of the bookkeeping).
    #[doc(hidden)]
    pub fn check_invariants(&self) {
        let mut pending = std::collections::HashMap::new();
        let mut active = std::collections::HashMap::new();
        let (mut waiting, mut compiling, mut local, mut busy) = (0u64, 0u64, 0u64, 0u64);
        for j in self.jobs.active() {
            assert!(j.state.is_active(), "job {} is {:?}", j.id, j.state);
            match j.state {
                JobState::Waiting => waiting += 1,
                JobState::Compiling => compiling += 1,
                _ => local += 1,
            }
            if j.raised.client_pending.is_some() {
                *pending.entry(j.client).or_insert(0u32) += 1;
            }
            if j.raised.server_active.is_some() {
                *active.entry(j.server).or_insert(0u32) += 1;
                busy += 1;
            }
        }
        let c = &self.book.counts;
        assert_eq!(
            (c.pending, c.compiling, c.local_active, c.busy),
            (waiting, compiling, local, busy)
        );
        let (mut online, mut slots) = (0u32, 0u64);
        for h in self.book.hosts.iter() {
            assert_eq!(h.pending, pending.get(&Some(h.id)).copied().unwrap_or(0));
            assert_eq!(h.active, active.get(&Some(h.id)).copied().unwrap_or(0));
            if h.online {
                online += 1;
                slots += u64::from(h.max_jobs);
            }
        }
        assert_eq!((c.hosts_online, c.total_slots), (online, slots));
        let (kept, limit) = self.jobs.history_len();
        assert!(kept <= limit);
        assert!(self.book.hosts.iter().filter(|h| !h.online).count() <= OFFLINE_HOST_LIMIT);
    }
}
