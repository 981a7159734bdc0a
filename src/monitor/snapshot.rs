//! Serde views of a [`State`]: the whole [`Snapshot`] and a [`Diff`] of a
//! [`ChangeSet`], as documented in `docs/json.md` and `docs/websocket.md`.
//!
//! They borrow from the state, so build and serialise them while holding
//! its lock; nothing is copied but the small totals and link records.

use super::change::ChangeSet;
use super::cluster::{Host, JobRef, SchedulerStatus, Totals};
use super::state::{JobSeen, State};
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

/// What a [`ChangeSet`] changed, as the diff keys of `docs/websocket.md`;
/// empty keys are left out.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Diff<'a> {
    /// The scheduler connection, if it changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheduler: Option<&'a SchedulerStatus>,
    /// Hosts added or changed: whole when new to the client, else their id
    /// and the fields that changed (merge by id).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<HostDelta<'a>>,
    /// Ids of hosts to drop.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hosts_removed: Vec<u32>,
    /// Links whose count changed (`active: 0` removes one).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<Link>,
    /// Jobs that started or changed state and are still active: whole when
    /// new to the client, else their id and what changed (merge by id).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub jobs: Vec<JobDelta<'a>>,
    /// Jobs that finished: drop from `jobs`, append to the history (merged
    /// like `jobs`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub jobs_done: Vec<JobDelta<'a>>,
    /// The totals, if they changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub totals: Option<Totals>,
}

impl Diff<'_> {
    /// Nothing to send.
    pub fn is_empty(&self) -> bool {
        self.scheduler.is_none()
            && self.hosts.is_empty()
            && self.hosts_removed.is_empty()
            && self.links.is_empty()
            && self.jobs.is_empty()
            && self.jobs_done.is_empty()
            && self.totals.is_none()
    }
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

    /// The diff of `changes` (from [`State::take_changes`] under the same
    /// lock): objects as they are now, ids that are gone as removals, each
    /// list sorted by id.
    pub fn diff<'a>(&'a self, changes: &ChangeSet) -> Diff<'a> {
        let mut hosts = Vec::new();
        let mut hosts_removed = Vec::new();
        for &id in &changes.hosts {
            match self.host(id) {
                Some(now) => hosts.push(HostDelta {
                    now,
                    before: self.published_host(id),
                }),
                None => hosts_removed.push(id),
            }
        }
        // Counted from the active jobs: only if some link changed.
        let counts = if changes.links.is_empty() {
            Default::default()
        } else {
            self.link_counts()
        };
        let mut links: Vec<Link> = changes
            .links
            .iter()
            .map(|&(from, to)| Link {
                from,
                to,
                active: counts.get(&(from, to)).copied().unwrap_or(0),
            })
            .collect();
        let mut jobs: Vec<JobRef<'_>> = if changes.overflow {
            self.jobs().collect()
        } else {
            changes.jobs.iter().filter_map(|&id| self.job(id)).collect()
        };
        hosts.sort_unstable_by_key(|h| h.now.id);
        hosts_removed.sort_unstable();
        links.sort_unstable_by_key(|l| (l.from, l.to));
        jobs.sort_unstable_by_key(|j| j.id);
        let delta = |job: JobRef<'a>| JobDelta {
            now: job,
            before: self.published_job(job),
        };
        Diff {
            scheduler: changes.scheduler.then(|| self.scheduler()),
            hosts,
            hosts_removed,
            links,
            jobs: jobs.into_iter().map(delta).collect(),
            jobs_done: match changes.done_from {
                Some(from) => self.history_since(from).map(delta).collect(),
                None => Vec::new(),
            },
            totals: changes.totals.then(|| self.totals()),
        }
    }
}

/// A host in a diff: the whole host, or, when the client already has it
/// (`before`, as last published), its id and the fields that differ.
#[derive(Clone, Copy, Debug)]
pub struct HostDelta<'a> {
    /// The host now.
    pub now: &'a Host,
    /// The host as the client last saw it, if it saw it.
    pub before: Option<&'a Host>,
}

impl Serialize for HostDelta<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let Some(before) = self.before else {
            return self.now.serialize(serializer);
        };
        let now = self.now;
        let mut s = serializer.serialize_map(None)?;
        s.serialize_entry("id", &now.id)?;
        macro_rules! changed {
            ($($field:ident),*) => {$(
                if now.$field != before.$field {
                    s.serialize_entry(stringify!($field), &now.$field)?;
                }
            )*};
        }
        // Every serialised field of `Host` but its id.
        changed!(
            name,
            ip,
            platform,
            max_jobs,
            no_remote,
            online,
            protocol,
            features,
            speed,
            load,
            load_avg,
            free_mem_mb,
            compiled,
            compiled_own,
            submitted,
            local_jobs,
            active,
            pending,
            failed,
            jobs_in,
            jobs_in_own,
            jobs_out
        );
        s.end()
    }
}

/// A job in a diff: the whole job, or, when the client already has it
/// (`before`, as last published), its id and the fields that changed (the
/// file, language, client and session never do).
#[derive(Clone, Copy, Debug)]
pub struct JobDelta<'a> {
    /// The job now.
    pub now: JobRef<'a>,
    /// What the client last saw of it, if it saw it.
    before: Option<JobSeen>,
}

impl Serialize for JobDelta<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serialize_job(self.now, self.before, false, serializer)
    }
}

/// A job as JSON: its statistics are flattened and null until it ends.
impl Serialize for JobRef<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serialize_job(*self, None, true, serializer)
    }
}

/// `job` whole, or, if the client saw it as `before`, its id and the fields
/// that changed since. Whole, its fields that are null are left out unless
/// `nulls` (a diff leaves them out: a new job's end, exit code, statistics
/// and often server are null, a quarter of a busy diff's bytes).
fn serialize_job<S: Serializer>(
    job: JobRef<'_>,
    before: Option<JobSeen>,
    nulls: bool,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let mut s = serializer.serialize_map(None)?;
    s.serialize_entry("id", &job.id)?;
    let whole = before.is_none();
    // Shown if it changed; whole, if set or nulls are wanted.
    let show = |set: bool, changed: bool| if whole { set || nulls } else { changed };
    // The file, language, client and session never change.
    if whole {
        s.serialize_entry("file", &job.file())?;
        s.serialize_entry("session", &job.session())?;
    }
    if show(job.lang.is_some(), false) {
        s.serialize_entry("lang", &job.lang.map(|l| l.name()))?;
    }
    if show(job.client.is_some(), false) {
        s.serialize_entry("client", &job.client)?;
        s.serialize_entry("client_name", &job.client_name())?;
    }
    if show(
        job.server.is_some(),
        before.is_some_and(|b| job.server != b.server),
    ) {
        s.serialize_entry("server", &job.server)?;
        s.serialize_entry("server_name", &job.server_name())?;
    }
    if show(true, before.is_some_and(|b| job.state != b.state)) {
        s.serialize_entry("state", &job.state)?;
    }
    if show(true, before.is_some_and(|b| job.start_ms != b.start_ms)) {
        s.serialize_entry("start_ms", &job.start_ms)?;
    }
    // A client saw the job active, without these: they are new if set.
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::StateOptions;
    use crate::protocol::{Message, MonStats};

    #[test]
    fn a_host_delta_names_every_field_of_a_host() {
        let mut state = State::new(StateOptions::default());
        state.scheduler_connected("s:1".into(), 43, 0);
        let text = b"Name:a\nIP:10.0.0.1\nMaxJobs:4\nNoRemote:true\nPlatform:p\nVersion:43\n\
                     Features:f\nSpeed:2.5\nLoad:9\nLoadAvg1:1\nLoadAvg5:1\nLoadAvg10:1\nFreeMem:9\n";
        state.apply(&Message::MonStats(MonStats { host_id: 1, text }), 1);
        let now = state.host(1).expect("host 1");
        // A host that differs from `now` in every field.
        let mut before = now.clone();
        before.name = "b".into();
        before.ip = "".into();
        before.platform = "".into();
        before.max_jobs += 1;
        before.no_remote = !now.no_remote;
        before.online = !now.online;
        before.protocol += 1;
        before.features = "".into();
        before.speed += 1.0;
        before.load += 1;
        before.load_avg = None;
        before.free_mem_mb = None;
        before.compiled += 1;
        before.compiled_own += 1;
        before.submitted += 1;
        before.local_jobs += 1;
        before.active += 1;
        before.pending += 1;
        before.failed += 1;
        before.jobs_in += 1;
        before.jobs_in_own += 1;
        before.jobs_out += 1;
        let delta = serde_json::to_value(HostDelta {
            now,
            before: Some(&before),
        })
        .expect("JSON");
        let whole = serde_json::to_value(now).expect("JSON");
        assert_eq!(delta, whole, "a field of Host is missing from HostDelta");
        let same = serde_json::to_value(HostDelta {
            now,
            before: Some(now),
        })
        .expect("JSON");
        assert_eq!(same, serde_json::json!({"id": 1}));
    }
}
