//! Serde views of a [`State`]: the whole [`Snapshot`] as documented in
//! `docs/json.md`, and a job as JSON, whole or as what changed since a
//! reader showed it ([`write_job`], which readers' diffs use too).
//!
//! They borrow from the state, so build and serialise them while holding
//! its lock; nothing is copied but the small totals and link records.

use super::cluster::{Host, JobRef, JobState, SchedulerStatus, Totals};
use super::state::State;
use serde::ser::{Serialize, SerializeMap, Serializer};

/// How many finished jobs a snapshot carries (the newest).
pub const SNAPSHOT_HISTORY: usize = 200;

/// Remote jobs compiling from one submitter on one server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Link {
    /// Submitting host id.
    pub from: u32,
    /// Compiling host id (may equal `from`: the scheduler gave the job back).
    pub to: u32,
    /// Jobs compiling on that link now (0 in a diff: the link is gone).
    pub active: u32,
}

/// The whole state: `{scheduler, hosts, links, jobs, history, totals}`.
///
/// Hosts, links and jobs are sorted by id; `history` holds the newest
/// [`SNAPSHOT_HISTORY`] finished jobs, oldest first.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Snapshot<'a> {
    /// The scheduler connection.
    pub scheduler: &'a SchedulerStatus,
    /// Every host, online or recently offline.
    pub hosts: Vec<&'a Host>,
    /// Links with at least one active job.
    pub links: Vec<Link>,
    /// Active jobs: waiting, compiling, local.
    pub jobs: Vec<JobRef<'a>>,
    /// The newest finished jobs.
    pub history: Vec<JobRef<'a>>,
    /// Cluster totals.
    pub totals: Totals,
}

impl State {
    /// The whole state as one serialisable value.
    pub fn snapshot(&self) -> Snapshot<'_> {
        let mut hosts: Vec<&Host> = self.hosts().collect();
        hosts.sort_unstable_by_key(|h| h.id);
        let mut links: Vec<Link> = self
            .links()
            .map(|((from, to), active)| Link { from, to, active })
            .collect();
        links.sort_unstable_by_key(|l| (l.from, l.to));
        let mut jobs: Vec<JobRef<'_>> = self.jobs().collect();
        jobs.sort_unstable_by_key(|j| j.id);
        // Taken from the end: skipping the older ones would read them all.
        let mut history: Vec<JobRef<'_>> = self.history().rev().take(SNAPSHOT_HISTORY).collect();
        history.reverse();
        Snapshot {
            scheduler: self.scheduler(),
            hosts,
            links,
            jobs,
            history,
            totals: self.totals(),
        }
    }
}

/// A job as JSON: its statistics are flattened and null until it ends.
impl Serialize for JobRef<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        write_job(*self, None, true, serializer)
    }
}

/// What a reader showed of an active job: what can change while it runs
/// (the file, language, client and session never do; the end, exit code
/// and statistics come only once it has ended).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct JobShown {
    /// Its server.
    pub server: Option<u32>,
    /// When it was submitted or began.
    pub start_ms: u64,
    /// Waiting, compiling or local.
    pub state: JobState,
    /// [`State::names_revision`] when shown: a later one may have renamed
    /// its hosts.
    pub names: u64,
}

impl JobShown {
    /// `job` as a reader shows it now, in `state`.
    pub fn of(job: &JobRef<'_>, state: &State) -> JobShown {
        JobShown {
            server: job.server,
            start_ms: job.start_ms,
            state: job.state,
            names: state.names_revision(),
        }
    }
}

/// `job` whole, or, if a reader showed it as `before` (`shown` is how it
/// would show it now, see [`JobShown::of`]), its id and the fields that
/// changed since. Whole, its fields that are null are left out unless
/// `nulls` (a diff leaves them out: a new job's end, exit code, statistics
/// and often server are null, a quarter of a busy diff's bytes).
pub fn write_job<S: Serializer>(
    job: JobRef<'_>,
    before: Option<(JobShown, JobShown)>,
    nulls: bool,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let mut s = serializer.serialize_map(None)?;
    s.serialize_entry("id", &job.id)?;
    let whole = before.is_none();
    // Shown if it changed; whole, if set or nulls are wanted.
    let show = |set: bool, changed: bool| if whole { set || nulls } else { changed };
    let changed = |field: fn(&JobShown) -> u64| before.is_some_and(|(b, n)| field(&b) != field(&n));
    let renamed = changed(|s| s.names);
    // The file, language, client and session never change.
    if whole {
        s.serialize_entry("file", &job.file())?;
        s.serialize_entry("session", &job.session())?;
    }
    if show(job.lang.is_some(), false) {
        s.serialize_entry("lang", &job.lang.map(|l| l.name()))?;
    }
    if show(job.client.is_some(), renamed) {
        s.serialize_entry("client", &job.client)?;
        s.serialize_entry("client_name", &job.client_name())?;
    }
    let moved = before.is_some_and(|(b, n)| b.server != n.server);
    if show(job.server.is_some(), moved || renamed) {
        s.serialize_entry("server", &job.server)?;
        s.serialize_entry("server_name", &job.server_name())?;
    }
    if show(true, before.is_some_and(|(b, n)| b.state != n.state)) {
        s.serialize_entry("state", &job.state)?;
    }
    if show(true, changed(|s| s.start_ms)) {
        s.serialize_entry("start_ms", &job.start_ms)?;
    }
    // A reader saw the job active, without these: they are new if set.
    if show(job.end_ms.is_some(), job.end_ms.is_some()) {
        s.serialize_entry("end_ms", &job.end_ms)?;
    }
    if show(job.reason.is_some(), job.reason.is_some()) {
        s.serialize_entry("reason", &job.reason)?;
    }
    if show(job.exit_code.is_some(), job.exit_code.is_some()) {
        s.serialize_entry("exit_code", &job.exit_code)?;
    }
    if show(job.stats.is_some(), job.stats.is_some()) {
        let st = job.stats.as_ref();
        s.serialize_entry("real_ms", &st.map(|t| t.real_ms))?;
        s.serialize_entry("user_ms", &st.map(|t| t.user_ms))?;
        s.serialize_entry("sys_ms", &st.map(|t| t.sys_ms))?;
        s.serialize_entry("page_faults", &st.map(|t| t.page_faults))?;
        s.serialize_entry("in_compressed", &st.map(|t| t.in_compressed))?;
        s.serialize_entry("in_uncompressed", &st.map(|t| t.in_uncompressed))?;
        s.serialize_entry("out_compressed", &st.map(|t| t.out_compressed))?;
        s.serialize_entry("out_uncompressed", &st.map(|t| t.out_uncompressed))?;
    }
    s.end()
}
