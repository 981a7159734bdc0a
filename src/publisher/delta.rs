//! [`Delta`]: what the page has been shown, so that each WebSocket diff
//! carries only what changed since, field by field (`docs/websocket.md`).
//!
//! A `Delta` is one reader of the state's [feed](crate::monitor::feed): it
//! takes the ids that changed, reads those hosts and jobs as they are now,
//! compares them with what it showed last (its own copy of each host, and
//! of each active job what can change while it runs) and remembers the new
//! values. Totals, links and the scheduler it compares whole. When it fell
//! too far behind, or a new scheduler session replaced every host, it has
//! nothing to compare with: the clients then get a fresh snapshot.

use crate::monitor::{
    write_job, Follower, Host, JobRef, JobShown, Link, SchedulerStatus, State, Totals,
};
use rustc_hash::FxHashMap;
use serde::ser::{Serialize, SerializeMap, Serializer};

/// What the page was shown, and where it is in the state's changes.
#[derive(Debug)]
pub struct Delta {
    follower: Follower,
    hosts: FxHashMap<u32, Host>,
    /// Active jobs as shown (finished ones are forgotten once sent).
    jobs: FxHashMap<u32, JobShown>,
    links: FxHashMap<(u32, u32), u32>,
    totals: Totals,
    scheduler: SchedulerStatus,
}

/// What to send after a look at the changes.
#[derive(Debug)]
pub enum Update<'a> {
    /// Nothing changed.
    Nothing,
    /// These changes.
    Diff(Box<Diff<'a>>),
    /// Too much changed to say (the reader lagged, or a new scheduler
    /// session began): send the whole state; the delta now remembers it.
    Snapshot,
}

impl Delta {
    /// Starts following `state`, as a snapshot taken now shows it.
    pub fn follow(state: &mut State) -> Delta {
        let follower = state.follow();
        let mut delta = Delta {
            follower,
            hosts: FxHashMap::default(),
            jobs: FxHashMap::default(),
            links: FxHashMap::default(),
            totals: state.totals(),
            scheduler: state.scheduler().clone(),
        };
        delta.remember_all(state);
        delta
    }

    /// Stops following (nobody listens any more).
    pub fn unfollow(self, state: &mut State) {
        state.unfollow(self.follower);
    }

    /// Remembers `state` as a snapshot of it now shows it.
    fn remember_all(&mut self, state: &State) {
        self.hosts.clear();
        self.hosts.extend(state.hosts().map(|h| (h.id, h.clone())));
        self.jobs.clear();
        self.jobs
            .extend(state.jobs().map(|j| (j.id, JobShown::of(&j, state))));
        self.links = state.link_counts();
        self.totals = state.totals();
        self.scheduler = state.scheduler().clone();
    }

    /// What changed in `state` since the last look, as the diff to send
    /// (and remembered as shown).
    pub fn update<'a>(&mut self, state: &'a mut State) -> Update<'a> {
        let mut changes = state.changes(&mut self.follower);
        let state: &'a State = state;
        // In id order, so that the same changes make the same text.
        changes.hosts.sort_unstable();
        changes.jobs.sort_unstable();
        if changes.lagged || changes.new_session {
            self.remember_all(state);
            return Update::Snapshot;
        }
        let mut diff = Diff::default();
        for id in changes.hosts {
            match state.host(id) {
                Some(now) => {
                    let before = self.hosts.insert(id, now.clone());
                    diff.hosts.push(HostDelta { now, before });
                }
                None => {
                    if self.hosts.remove(&id).is_some() {
                        diff.hosts_removed.push(id);
                    }
                }
            }
        }
        // Finished jobs first: a job that ends and one that starts under
        // its id (only odd streams reuse an id) are two jobs.
        for now in state.history_since(changes.done.start) {
            let before = self.jobs.remove(&now.id);
            let shown = JobShown::of(&now, state);
            diff.jobs_done.push(JobDelta {
                now,
                before: before.map(|b| (b, shown)),
            });
        }
        for id in changes.jobs {
            if let Some(now) = state.job(id) {
                let shown = JobShown::of(&now, state);
                let before = self.jobs.insert(id, shown);
                diff.jobs.push(JobDelta {
                    now,
                    before: before.map(|b| (b, shown)),
                });
            }
        }
        let links = state.link_counts();
        if links != self.links {
            let mut changed: Vec<Link> = links
                .iter()
                .filter(|&(k, n)| self.links.get(k) != Some(n))
                .map(|(&(from, to), &active)| Link { from, to, active })
                .collect();
            changed.extend(self.links.keys().filter(|k| !links.contains_key(k)).map(
                |&(from, to)| Link {
                    from,
                    to,
                    active: 0,
                },
            ));
            changed.sort_unstable_by_key(|l| (l.from, l.to));
            diff.links = changed;
            self.links = links;
        }
        let totals = state.totals();
        if totals != self.totals {
            self.totals = totals;
            diff.totals = Some(totals);
        }
        let scheduler = state.scheduler();
        if *scheduler != self.scheduler {
            self.scheduler.clone_from(scheduler);
            diff.scheduler = Some(scheduler);
        }
        if diff.is_empty() {
            Update::Nothing
        } else {
            Update::Diff(Box::new(diff))
        }
    }
}

/// What changed, as the diff keys of `docs/websocket.md`; empty keys are
/// left out.
#[derive(Clone, Debug, Default, serde::Serialize)]
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

/// A host in a diff: the whole host, or, when the client already has it
/// (`before`, as last shown), its id and the fields that differ.
#[derive(Clone, Debug)]
pub struct HostDelta<'a> {
    /// The host now.
    pub now: &'a Host,
    /// The host as the client last saw it, if it saw it.
    pub before: Option<Host>,
}

impl Serialize for HostDelta<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let Some(before) = &self.before else {
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

/// A job in a diff: the whole job, or, when the client already has it, its
/// id and the fields that changed since it was shown (`before`: as shown
/// then, as it would be shown now).
#[derive(Clone, Copy, Debug)]
pub struct JobDelta<'a> {
    /// The job now.
    pub now: JobRef<'a>,
    /// What the client last saw of it, and the same now, if it saw it.
    pub before: Option<(JobShown, JobShown)>,
}

impl Serialize for JobDelta<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        write_job(self.now, self.before, false, serializer)
    }
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
            before: Some(before),
        })
        .expect("JSON");
        let whole = serde_json::to_value(now).expect("JSON");
        assert_eq!(delta, whole, "a field of Host is missing from HostDelta");
        let same = serde_json::to_value(HostDelta {
            now,
            before: Some(now.clone()),
        })
        .expect("JSON");
        assert_eq!(same, serde_json::json!({"id": 1}));
    }
}
