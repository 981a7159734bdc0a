//! [`Model`]: what the terminal view knows of the cluster, merged from the
//! `snapshot` and `diff` messages of `docs/websocket.md` exactly as the
//! page's `web/js/model.js` merges them, whichever way they came: from a
//! running icewatch's WebSocket, or rendered in this process from a state
//! it feeds itself. So both ways of running `icewatch top` show the same
//! thing for the same messages.
//!
//! Besides the merge it keeps what the messages leave implicit: the busy
//! slots of the cluster and of each host over time, for the sparklines,
//! one sample each time [`Model::sample`] is called.

use crate::monitor::{SchedulerStatus as Scheduler, Totals};
use crate::protocol::text::Internals;
pub use crate::publisher::control::View as ControlView;
use serde::{Deserialize, Deserializer};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

/// Finished jobs kept for the job list and the host pane (a snapshot
/// carries the newest 200).
pub const HISTORY_KEPT: usize = 200;
/// Samples kept for each sparkline: as wide as the widest sparkline drawn.
pub const SAMPLES_KEPT: usize = 120;

/// `Some` for any value the message has, `null` included (`Some(None)` for
/// an `Option` field): a field left out of a diff is `None`.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// An object of the JSON that a diff may send whole or as its changed
/// fields only: the whole type (defaults for what a new object leaves out,
/// as a new job leaves out its null fields) and the partial one it merges.
macro_rules! mergeable {
    ($(#[$doc:meta])* $name:ident / $partial:ident { $($(#[$fdoc:meta])* $field:ident: $ty:ty,)* }) => {
        $(#[$doc])*
        #[derive(Clone, Debug, Default, Deserialize, PartialEq)]
        #[serde(default)]
        pub struct $name {
            /// The scheduler's id (in its current session).
            pub id: u32,
            $($(#[$fdoc])* pub $field: $ty,)*
        }

        #[derive(Deserialize)]
        struct $partial {
            id: u32,
            $(#[serde(default, deserialize_with = "present")] $field: Option<$ty>,)*
        }

        impl $partial {
            /// Merged into what was shown before, or whole if nothing was.
            fn merge(self, before: Option<$name>) -> $name {
                let mut merged = before.unwrap_or_default();
                merged.id = self.id;
                $(if let Some(v) = self.$field { merged.$field = v; })*
                merged
            }
        }
    };
}

mergeable! {
    /// A host, as the JSON of `docs/json.md` describes it (the fields the
    /// terminal shows).
    Host / HostDelta {
        /// Node name.
        name: String,
        /// Address as the scheduler sees it.
        ip: String,
        /// Platform, e.g. `x86_64`.
        platform: String,
        /// Compile slots.
        max_jobs: u32,
        /// Takes no jobs from other hosts.
        no_remote: bool,
        /// Still connected to the scheduler.
        online: bool,
        /// The daemon's protocol version.
        protocol: u32,
        /// Features, space separated.
        features: String,
        /// The scheduler's speed estimate.
        speed: f64,
        /// 0 (idle) to 1000 (full).
        load: u32,
        /// Load averages over 1, 5 and 10 minutes, once reported.
        load_avg: Option<[f64; 3]>,
        /// Free memory in MiB, once reported.
        free_mem_mb: Option<u64>,
        /// Remote jobs it submitted.
        submitted: u64,
        /// Local jobs it started.
        local_jobs: u64,
        /// Jobs compiling on it now, remote and local.
        active: u32,
        /// Its jobs waiting for a server.
        pending: u32,
        /// Its remote jobs whose compiler failed.
        failed: u64,
        /// Remote jobs that began compiling on it (sundae's IN).
        jobs_in: u64,
        /// Of `jobs_in`, its own given back to it.
        jobs_in_own: u64,
        /// Its remote jobs that began compiling on a server (sundae's OUT).
        jobs_out: u64,
    }
}

mergeable! {
    /// A job, as the JSON of `docs/json.md` describes it (the fields the
    /// terminal shows).
    Job / JobDelta {
        /// The scheduler session its ids belong to.
        session: Option<u32>,
        /// Source file (remote) or output file (local).
        file: String,
        /// The submitting host's id.
        client: Option<u32>,
        /// The submitting host's name when the job ran.
        client_name: Option<String>,
        /// The compiling host's id.
        server: Option<u32>,
        /// The compiling host's name when the job ran.
        server_name: Option<String>,
        /// `waiting`, `compiling`, `local`, `finished`, `failed`,
        /// `cut_short`, `local_finished`.
        state: String,
        /// Why it ended.
        reason: Option<String>,
        /// When it was submitted or began, ms since the epoch.
        start_ms: u64,
        /// When it ended.
        end_ms: Option<u64>,
        /// The compiler's exit code.
        exit_code: Option<i64>,
        /// Wall-clock compile time as the server reported it.
        real_ms: Option<u64>,
    }
}

/// A link: `from` has `active` jobs compiling on `to`.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq)]
struct Link {
    from: u32,
    to: u32,
    active: u32,
}

/// Any message of the WebSocket, as far as the model reads it.
#[derive(Deserialize)]
struct Message {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    seq: u64,
    scheduler: Option<Scheduler>,
    #[serde(default)]
    hosts: Vec<HostDelta>,
    #[serde(default)]
    hosts_removed: Vec<u32>,
    #[serde(default)]
    links: Vec<Link>,
    #[serde(default)]
    jobs: Vec<JobDelta>,
    #[serde(default)]
    jobs_done: Vec<JobDelta>,
    #[serde(default)]
    history: Vec<JobDelta>,
    totals: Option<Totals>,
}

/// What a message did to the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Received {
    /// A snapshot replaced everything.
    Snapshot,
    /// A diff was merged.
    Diff,
    /// A diff that is not the next one: nothing merged; the model waits
    /// for a snapshot (the server sends one; a client reconnects).
    Gap,
    /// A message of a kind the model does not know, ignored.
    Other,
}

/// The cluster as the messages so far describe it.
#[derive(Clone, Debug, Default)]
pub struct Model {
    /// The `seq` of the last message merged; `None` before a snapshot and
    /// after a gap.
    pub seq: Option<u64>,
    /// The scheduler connection; `None` before the first snapshot.
    pub scheduler: Option<Scheduler>,
    /// Hosts by id, offline ones included.
    pub hosts: BTreeMap<u32, Host>,
    /// Active jobs by id: waiting, compiling, local.
    pub jobs: BTreeMap<u32, Job>,
    /// Finished jobs, oldest first, at most [`HISTORY_KEPT`].
    pub history: VecDeque<Job>,
    /// Cluster-wide numbers.
    pub totals: Totals,
    /// Jobs compiling for each pair of hosts: (submitter, server).
    links: BTreeMap<(u32, u32), u32>,
    /// The newest time the messages mentioned: the state's clock.
    pub clock_ms: Option<u64>,
    /// Busy slots of the cluster, one per sample, oldest first.
    pub busy: VecDeque<u64>,
    /// Busy slots of each host by name (a host's identity across ids).
    pub host_busy: HashMap<String, VecDeque<u64>>,
    /// The scheduler's text port as the server last read it (what the
    /// page's `/api/v1/control` gives); `None` before a read, or where
    /// icewatch does not read it.
    pub control: Option<ControlView>,
    /// The host pane's `internals`: the host asked about, and the answer.
    pub internals: Option<(String, Asked)>,
}

/// Where a host's `internals` request stands.
#[derive(Clone, Debug, PartialEq)]
pub enum Asked {
    /// Sent; no answer yet.
    Asking,
    /// The daemons that answered (none: no daemon of that name).
    Answer(Vec<Internals>),
    /// Why there is no answer.
    Failed(String),
}

impl Model {
    /// An empty model, waiting for a snapshot.
    pub fn new() -> Model {
        Model::default()
    }

    /// Merges one message (a WebSocket text); a text that is not such a
    /// message is an error and changes nothing.
    pub fn receive(&mut self, text: &str) -> Result<Received, serde_json::Error> {
        let msg: Message = serde_json::from_str(text)?;
        Ok(match msg.kind.as_str() {
            "snapshot" => {
                self.apply_snapshot(msg);
                Received::Snapshot
            }
            "diff" if self.seq.is_some_and(|s| s + 1 == msg.seq) => {
                self.apply_diff(msg);
                Received::Diff
            }
            "diff" => {
                self.seq = None;
                Received::Gap
            }
            _ => Received::Other,
        })
    }

    fn apply_snapshot(&mut self, msg: Message) {
        self.seq = Some(msg.seq);
        self.scheduler = msg.scheduler;
        self.totals = msg.totals.unwrap_or_default();
        self.hosts = msg
            .hosts
            .into_iter()
            .map(|h| (h.id, h.merge(None)))
            .collect();
        self.links = msg
            .links
            .iter()
            .map(|l| ((l.from, l.to), l.active))
            .collect();
        self.jobs = msg
            .jobs
            .into_iter()
            .map(|j| (j.id, j.merge(None)))
            .collect();
        self.history = msg.history.into_iter().map(|j| j.merge(None)).collect();
        self.trim_history();
        self.clock_ms = None;
        self.note_times();
    }

    fn apply_diff(&mut self, msg: Message) {
        self.seq = Some(msg.seq);
        if let Some(s) = msg.scheduler {
            self.scheduler = Some(s);
        }
        if let Some(t) = msg.totals {
            self.totals = t;
        }
        for h in msg.hosts {
            let before = self.hosts.remove(&h.id);
            self.hosts.insert(h.id, h.merge(before));
        }
        for id in msg.hosts_removed {
            self.hosts.remove(&id);
        }
        for l in msg.links {
            if l.active > 0 {
                self.links.insert((l.from, l.to), l.active);
            } else {
                self.links.remove(&(l.from, l.to));
            }
        }
        // Ends first: after a scheduler restart one id can end and start again.
        for j in msg.jobs_done {
            let before = self.jobs.remove(&j.id);
            let job = j.merge(before);
            self.note(&job);
            self.history.push_back(job);
        }
        for j in msg.jobs {
            let before = self.jobs.remove(&j.id);
            let job = j.merge(before);
            self.note(&job);
            self.jobs.insert(job.id, job);
        }
        self.trim_history();
        if let Some(since) = self.scheduler.as_ref().and_then(|s| s.since_ms) {
            self.clock_ms = self.clock_ms.max(Some(since));
        }
    }

    fn trim_history(&mut self) {
        while self.history.len() > HISTORY_KEPT {
            self.history.pop_front();
        }
    }

    fn note_times(&mut self) {
        let mut newest = self.scheduler.as_ref().and_then(|s| s.since_ms);
        for j in self.jobs.values().chain(&self.history) {
            newest = newest.max(Some(j.start_ms)).max(j.end_ms);
        }
        self.clock_ms = newest;
    }

    fn note(&mut self, job: &Job) {
        self.clock_ms = self.clock_ms.max(Some(job.start_ms)).max(job.end_ms);
    }

    /// Whether the scheduler is a recording played back: then times are
    /// the recording's, not this machine's.
    pub fn is_replay(&self) -> bool {
        self.scheduler.as_ref().is_some_and(|s| s.replay.is_some())
    }

    /// Takes one sample of the busy slots, of the cluster and of each
    /// online host, for the sparklines. Call it at a steady pace.
    pub fn sample(&mut self) {
        push_sample(&mut self.busy, self.totals.busy_slots);
        let mut seen = HashSet::with_capacity(self.hosts.len());
        for h in self.hosts.values().filter(|h| h.online) {
            let samples = self.host_busy.entry(h.name.clone()).or_default();
            push_sample(samples, u64::from(h.active));
            seen.insert(h.name.as_str());
        }
        // A host that is gone takes a zero, and is forgotten once all its
        // samples are zeros: a cluster whose hosts come and go stays bounded.
        let gone: Vec<String> = self
            .host_busy
            .keys()
            .filter(|k| !seen.contains(k.as_str()))
            .cloned()
            .collect();
        for name in gone {
            if let Some(samples) = self.host_busy.get_mut(&name) {
                push_sample(samples, 0);
                if samples.iter().all(|&s| s == 0) {
                    self.host_busy.remove(&name);
                }
            }
        }
    }

    /// A job's host on `side` as a name: the name it carries, else the
    /// current host with its id (for a job of this session), else `#id`.
    pub fn host_name(&self, job: &Job, server: bool) -> Option<String> {
        let (name, id) = if server {
            (&job.server_name, job.server)
        } else {
            (&job.client_name, job.client)
        };
        if let Some(n) = name {
            return Some(n.clone());
        }
        let id = id?;
        let current = job.session.is_none() || job.session == self.session();
        match self.hosts.get(&id) {
            Some(h) if current && !h.name.is_empty() => Some(h.name.clone()),
            _ => Some(format!("#{id}")),
        }
    }

    /// The scheduler session of now: 1 for the first, one more per reconnect.
    fn session(&self) -> Option<u32> {
        self.scheduler
            .as_ref()
            .map(|s| u32::try_from(s.reconnects + 1).unwrap_or(u32::MAX))
    }

    /// Per host id: its own jobs running now anywhere, remote and local
    /// (sundae's ACTIVE), and its local jobs running now.
    pub fn own_jobs(&self) -> HashMap<u32, (u32, u32)> {
        let mut per: HashMap<u32, (u32, u32)> = HashMap::new();
        for j in self.jobs.values() {
            let local = j.state == "local";
            if j.state == "compiling" || local {
                if let Some(c) = j.client {
                    per.entry(c).or_default().0 += 1;
                }
                if let (true, Some(s)) = (local, j.server) {
                    per.entry(s).or_default().1 += 1;
                }
            }
        }
        per
    }

    /// Each submitter's jobs compiling on host `to` now, by submitter id.
    pub fn links_to(&self, to: u32) -> impl Iterator<Item = (u32, u32)> + '_ {
        self.links
            .iter()
            .filter(move |(&(_, t), _)| t == to)
            .map(|(&(from, _), &n)| (from, n))
    }
}

fn push_sample(samples: &mut VecDeque<u64>, value: u64) {
    if samples.len() == SAMPLES_KEPT {
        samples.pop_front();
    }
    samples.push_back(value);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_diff_merges_changed_fields_and_a_gap_waits_for_a_snapshot() {
        let mut m = Model::new();
        let snap = r#"{"type":"snapshot","seq":4,"scheduler":{"address":"s:8765","online":true},
            "hosts":[{"id":1,"name":"a","max_jobs":2,"online":true}],"links":[],
            "jobs":[{"id":7,"file":"x.c","client":1,"state":"waiting","start_ms":10}],
            "history":[],"totals":{"total_slots":2}}"#;
        assert_eq!(m.receive(snap).unwrap(), Received::Snapshot);
        let diff = r#"{"type":"diff","seq":5,"hosts":[{"id":1,"active":1}],
            "jobs":[{"id":7,"state":"compiling","server":1}]}"#;
        assert_eq!(m.receive(diff).unwrap(), Received::Diff);
        assert_eq!(m.hosts[&1].name, "a");
        assert_eq!(m.hosts[&1].active, 1);
        assert_eq!(
            (m.jobs[&7].file.as_str(), m.jobs[&7].server),
            ("x.c", Some(1))
        );
        let done = r#"{"type":"diff","seq":6,"jobs_done":[{"id":7,"state":"failed","exit_code":1,"end_ms":30}]}"#;
        m.receive(done).unwrap();
        assert!(m.jobs.is_empty());
        assert_eq!(m.history[0].file, "x.c");
        assert_eq!(m.clock_ms, Some(30));
        assert_eq!(
            m.receive(r#"{"type":"diff","seq":9}"#).unwrap(),
            Received::Gap
        );
        assert_eq!(
            m.receive(r#"{"type":"diff","seq":7}"#).unwrap(),
            Received::Gap
        );
        assert!(m.receive("not json").is_err());
    }

    #[test]
    fn sparklines_stay_bounded_and_forget_hosts_that_are_gone() {
        let mut m = Model::new();
        m.hosts.insert(
            1,
            Host {
                id: 1,
                name: "a".into(),
                online: true,
                active: 2,
                ..Host::default()
            },
        );
        for _ in 0..SAMPLES_KEPT + 5 {
            m.sample();
        }
        assert_eq!(m.busy.len(), SAMPLES_KEPT);
        assert_eq!(m.host_busy["a"].back(), Some(&2));
        m.hosts.clear();
        for _ in 0..SAMPLES_KEPT {
            m.sample();
        }
        assert!(m.host_busy.is_empty());
    }
}
