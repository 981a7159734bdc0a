//! The demo cluster: a seeded simulation of what an icecream scheduler tells
//! its monitors, for `icewatch demo`.
//!
//! [`Simulation`] is a discrete-event model of a cluster in virtual
//! milliseconds, free of I/O and of the wall clock: the same seed gives the
//! same stream of [`Event`]s. It models what a real scheduler reports:
//!
//! - hosts with different slot counts, platforms and speeds, one or two of
//!   them `--no-remote` workstations that only submit;
//! - builds started by hosts like a `make -jN`: a burst of `N` compile
//!   requests (`MON_GET_CS`), each assigned to a free slot on another host
//!   (`MON_JOB_BEGIN`) or left waiting until one frees, then finished
//!   (`MON_JOB_DONE`); a few files fail, are retried locally and stop the
//!   build; some files and every final link run locally
//!   (`MON_LOCAL_JOB_BEGIN`, `JOB_LOCAL_DONE`);
//! - periodic `MON_STATS` with load, load averages and free memory;
//! - hosts leaving (`State:Offline`, then exit code 255 for each of their
//!   jobs, as the scheduler does; their local jobs just vanish) and joining
//!   again under a new host id.
//!
//! The scheduler side of the wire ([`super::demo`], [`super::session`]) turns the events
//! into frames at each monitor's agreed protocol version and paces them.
//!
//! ```
//! use icewatch::standin::simulation::{Event, Simulation};
//!
//! let mut sim = Simulation::new(12, 1);
//! let (at_ms, first) = sim.step();
//! assert!(matches!(first, Event::Stats { .. }));
//! assert_eq!(at_ms, 0);
//! ```

use crate::protocol::stats::{HostStats, OFFLINE};
use crate::protocol::{
    Environment, GetCs, JobDone, Language, Message, MonGetCs, EXIT_CODE_HOST_GONE,
    JOB_DONE_FROM_SUBMITTER,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};

/// Hosts in the demo cluster unless told otherwise.
pub const DEFAULT_HOSTS: usize = 12;

/// One thing the scheduler tells its monitors, owned so that it can be
/// shared between connections and encoded at each one's protocol version.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// `MON_STATS`: a host's `Key:Value` text.
    Stats {
        /// Host id.
        host_id: u32,
        /// The text ([`HostStats::to_text`]), [`OFFLINE`] when the host
        /// left.
        text: Vec<u8>,
    },
    /// `MON_GET_CS`: a host asks for a compile server; the job waits.
    GetCs {
        /// Job id.
        job_id: u32,
        /// Submitting host id.
        client_id: u32,
        /// Source file.
        file: String,
        /// Source language.
        lang: Language,
        /// The submitter's platform, for the long form below protocol 29.
        platform: &'static str,
        /// How many jobs the submitter runs now.
        client_count: u32,
    },
    /// `MON_JOB_BEGIN`: a server started compiling a job.
    JobBegin {
        /// Job id.
        job_id: u32,
        /// Compiling host id.
        host_id: u32,
    },
    /// `MON_JOB_DONE` (or `JOB_DONE`): a remote job ended.
    JobDone(JobDone),
    /// `MON_LOCAL_JOB_BEGIN`: a host compiles or links on its own.
    LocalBegin {
        /// Host id.
        host_id: u32,
        /// Job id.
        job_id: u32,
        /// Output file.
        file: String,
    },
    /// `JOB_LOCAL_DONE`: a local job ended.
    LocalDone {
        /// Job id.
        job_id: u32,
    },
    /// `END`: the scheduler is going away.
    End,
}

/// The environment a demo job would ship, per platform (long `MON_GET_CS`).
static ENVIRONMENTS: [Environment<'static>; 3] = [
    Environment {
        platform: b"x86_64",
        version: b"/var/tmp/icecc-envs/x86_64/3c1f5e2a9b.tar.zst",
    },
    Environment {
        platform: b"aarch64",
        version: b"/var/tmp/icecc-envs/aarch64/8e07d4b1c6.tar.zst",
    },
    Environment {
        platform: b"i686",
        version: b"/var/tmp/icecc-envs/i686/51ab9f0e27.tar.zst",
    },
];

impl Event {
    /// The message this event is on the wire; `now_secs` stamps job starts
    /// (seconds since the epoch, as daemons report them).
    pub fn message(&self, now_secs: u32) -> Message<'_> {
        match self {
            Event::Stats { host_id, text } => Message::mon_stats(*host_id, text),
            Event::GetCs {
                job_id,
                client_id,
                file,
                lang,
                platform,
                client_count,
            } => {
                let env = ENVIRONMENTS
                    .iter()
                    .position(|e| e.platform == platform.as_bytes())
                    .unwrap_or(0);
                Message::MonGetCs(MonGetCs {
                    request: GetCs {
                        environments: crate::protocol::EnvList::from_slice(
                            &ENVIRONMENTS[env..=env],
                        ),
                        filename: file.as_bytes(),
                        lang: *lang,
                        count: 1,
                        target: platform.as_bytes(),
                        client_id: *job_id,
                        ignore_unverified: 1,
                        minimal_host_version: 31,
                        client_count: *client_count,
                        ..GetCs::default()
                    },
                    job_id: *job_id,
                    client_id: *client_id,
                })
            }
            Event::JobBegin { job_id, host_id } => {
                Message::mon_job_begin(*job_id, *host_id, now_secs)
            }
            Event::JobDone(done) => Message::MonJobDone(*done),
            Event::LocalBegin {
                host_id,
                job_id,
                file,
            } => Message::mon_local_job_begin(*job_id, *host_id, now_secs, file),
            Event::LocalDone { job_id } => Message::job_local_done(*job_id),
            Event::End => Message::End,
        }
    }
}

/// Something the simulation will do at a virtual time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Action {
    /// Host (index, epoch) starts a build.
    StartBuild(usize, u32),
    /// Host (index, epoch) reports its load.
    Stats(usize, u32),
    /// A server starts the job.
    Begin(u32),
    /// A remote job ends.
    Done(u32),
    /// A local job ends.
    LocalDone(u32),
    /// Some host leaves the cluster.
    Leave,
    /// Host (index) joins again.
    Join(usize),
}

#[derive(Clone, Debug)]
struct Host {
    /// Current host id; a host that joins again gets a new one.
    id: u32,
    /// Bumped on every leave, so stale actions for the host are ignored.
    epoch: u32,
    online: bool,
    name: String,
    ip: String,
    max_jobs: u32,
    no_remote: bool,
    platform: &'static str,
    version: u32,
    /// How fast it compiles, relative to an average host.
    speed: f64,
    mem_mb: u32,
    /// Remote jobs assigned to it (slots in use).
    serving: u32,
    /// Its own local jobs.
    local: u32,
    /// Load averages over 1, 5 and 10 minutes.
    load_avg: [f64; 3],
    last_stats_ms: u64,
    /// Jobs it compiled, for the scheduler's speed estimate.
    compiled: u32,
}

#[derive(Clone, Debug)]
struct Job {
    client: usize,
    server: Option<usize>,
    build: u32,
    local: bool,
    fails: bool,
    file: String,
    started_ms: u64,
}

#[derive(Clone, Debug)]
struct Build {
    host: usize,
    project: usize,
    files_left: u32,
    in_flight: u32,
    parallel: u32,
    failed: bool,
    next_file: u32,
}

/// A seeded, deterministic model of a cluster's monitor stream.
#[derive(Clone, Debug)]
pub struct Simulation {
    rng: StdRng,
    now_ms: u64,
    seq: u64,
    agenda: BinaryHeap<Reverse<(u64, u64, Action)>>,
    out: VecDeque<(u64, Event)>,
    hosts: Vec<Host>,
    jobs: BTreeMap<u32, Job>,
    builds: BTreeMap<u32, Build>,
    waiting: VecDeque<u32>,
    next_host_id: u32,
    next_job_id: u32,
    next_build_id: u32,
}

const NAMES: &[&str] = &[
    "ada", "babbage", "curie", "dijkstra", "euler", "fermat", "gauss", "hopper", "ito", "jacobi",
    "knuth", "lovelace", "meitner", "noether", "ostrom", "pascal", "quine", "ritchie", "shannon",
    "turing", "ulam", "volta", "wirth", "yalow",
];

struct Project {
    name: &'static str,
    dirs: &'static [&'static str],
    lang: Language,
}

const PROJECTS: &[Project] = &[
    Project {
        name: "engine",
        dirs: &[
            "src/render",
            "src/physics",
            "src/audio",
            "src/core",
            "tests",
        ],
        lang: Language::CXX,
    },
    Project {
        name: "netd",
        dirs: &["src", "src/proto", "lib/compat", "tests"],
        lang: Language::C,
    },
    Project {
        name: "office",
        dirs: &[
            "sw/source/core",
            "sc/source/ui",
            "vcl/source/gdi",
            "sal/osl",
        ],
        lang: Language::CXX,
    },
    Project {
        name: "kernel",
        dirs: &["fs/ext4", "mm", "net/ipv4", "drivers/gpu", "kernel/sched"],
        lang: Language::C,
    },
    Project {
        name: "mailer",
        dirs: &["Sources/UI", "Sources/Sync", "Vendor/sqlite"],
        lang: Language::OBJC,
    },
];

#[rustfmt::skip]
const STEMS: &[&str] = &[
    "alloc", "buffer", "cache", "codec", "config", "context", "device", "dispatch", "driver",
    "event", "filter", "format", "graph", "handler", "index", "layout", "loader", "main", "manager",
    "parser", "pool", "queue", "reader", "render", "scheduler", "session", "shader", "socket",
    "stream", "table", "task", "texture", "thread", "timer", "util", "view", "writer",
];

impl Simulation {
    /// A cluster of `hosts` hosts (at least 2) seeded with `seed`.
    pub fn new(hosts: usize, seed: u64) -> Simulation {
        let mut sim = Simulation {
            rng: StdRng::seed_from_u64(seed),
            now_ms: 0,
            seq: 0,
            agenda: BinaryHeap::new(),
            out: VecDeque::new(),
            hosts: Vec::new(),
            jobs: BTreeMap::new(),
            builds: BTreeMap::new(),
            waiting: VecDeque::new(),
            next_host_id: 1,
            next_job_id: 1,
            next_build_id: 1,
        };
        let count = hosts.max(2);
        for index in 0..count {
            let host = sim.make_host(index, count);
            sim.hosts.push(host);
        }
        for index in 0..count {
            sim.join(index);
            // Workstations start building at once so the page moves at once.
            let first_build = if sim.hosts[index].no_remote {
                sim.rng.random_range(0..1_500)
            } else {
                sim.rng.random_range(1_000..20_000)
            };
            sim.schedule(
                first_build,
                Action::StartBuild(index, sim.hosts[index].epoch),
            );
        }
        let first_leave = sim.rng.random_range(30_000..60_000);
        sim.schedule(first_leave, Action::Leave);
        sim
    }

    /// The next event and its virtual time in milliseconds since the start.
    /// The stream never ends.
    pub fn step(&mut self) -> (u64, Event) {
        loop {
            if let Some(next) = self.out.pop_front() {
                return next;
            }
            let Some(Reverse((at, _, action))) = self.agenda.pop() else {
                // Never empty: `Leave` always schedules the next one. Should
                // that change, a later `Leave` keeps the stream going.
                self.schedule(1_000, Action::Leave);
                continue;
            };
            self.now_ms = at;
            self.run(action);
        }
    }

    /// The virtual time of the last event, in milliseconds.
    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }

    /// Messages per virtual second, measured by running a copy of the model
    /// for `samples` events. Used to turn a rate in messages per second into
    /// a pace.
    pub fn natural_rate(&self, samples: usize) -> f64 {
        let mut probe = self.clone();
        let start = probe.now_ms;
        let mut end = start;
        for _ in 0..samples.max(1) {
            end = probe.step().0;
        }
        let secs = (end.saturating_sub(start)) as f64 / 1000.0;
        if secs > 0.0 {
            samples.max(1) as f64 / secs
        } else {
            f64::INFINITY
        }
    }

    fn make_host(&mut self, index: usize, count: usize) -> Host {
        let base = NAMES[index % NAMES.len()];
        let name = if index < NAMES.len() {
            base.to_string()
        } else {
            format!("{base}-{}", index / NAMES.len() + 1)
        };
        // One workstation that never compiles for others, two in a larger
        // cluster, like developers' laptops in a real office.
        let no_remote = index == 0 || (count >= 8 && index == count / 2);
        let max_jobs = if no_remote {
            [2, 4, 8][self.rng.random_range(0..3)]
        } else {
            [1, 2, 4, 4, 8, 8, 12, 16, 32][self.rng.random_range(0..9)]
        };
        let platform = match self.rng.random_range(0..20) {
            0..=2 => "aarch64",
            3 => "i686",
            _ => "x86_64",
        };
        let platform = if index == 1 { "x86_64" } else { platform };
        Host {
            id: 0,
            epoch: 0,
            online: false,
            name,
            ip: format!("10.0.{}.{}", index / 200, 10 + index % 200),
            max_jobs,
            no_remote,
            platform,
            version: if self.rng.random_bool(0.7) { 44 } else { 43 },
            speed: self.rng.random_range(0.6..1.8),
            mem_mb: [8_192, 16_384, 32_768, 65_536][self.rng.random_range(0..4)],
            serving: 0,
            local: 0,
            load_avg: [0.0; 3],
            last_stats_ms: 0,
            compiled: 0,
        }
    }

    fn schedule(&mut self, delay_ms: u64, action: Action) {
        self.seq += 1;
        self.agenda
            .push(Reverse((self.now_ms + delay_ms, self.seq, action)));
    }

    fn emit(&mut self, event: Event) {
        self.out.push_back((self.now_ms, event));
    }

    fn run(&mut self, action: Action) {
        match action {
            Action::StartBuild(host, epoch) => {
                if self.hosts[host].online && self.hosts[host].epoch == epoch {
                    self.start_build(host);
                }
            }
            Action::Stats(host, epoch) => {
                if self.hosts[host].online && self.hosts[host].epoch == epoch {
                    self.report_stats(host);
                    let next = self.rng.random_range(2_000..5_000);
                    self.schedule(next, Action::Stats(host, epoch));
                }
            }
            Action::Begin(job) => self.begin(job),
            Action::Done(job) => self.done(job),
            Action::LocalDone(job) => self.local_done(job),
            Action::Leave => {
                self.leave();
                let next = self.rng.random_range(45_000..120_000);
                self.schedule(next, Action::Leave);
            }
            Action::Join(host) => {
                self.join(host);
                let first_build = self.rng.random_range(2_000..15_000);
                self.schedule(
                    first_build,
                    Action::StartBuild(host, self.hosts[host].epoch),
                );
                self.assign_waiting();
            }
        }
    }

    fn join(&mut self, index: usize) {
        let id = self.next_host_id;
        self.next_host_id += 1;
        let host = &mut self.hosts[index];
        host.id = id;
        host.online = true;
        host.serving = 0;
        host.local = 0;
        host.last_stats_ms = self.now_ms;
        let epoch = host.epoch;
        let text = self.stats_text(&self.hosts[index], false);
        self.emit(Event::Stats { host_id: id, text });
        let first = self.rng.random_range(500..3_000);
        self.schedule(first, Action::Stats(index, epoch));
    }

    /// icecream's `MON_STATS` text: the login form has `Load` only, the form
    /// sent after a daemon's `STATS` adds load averages and free memory.
    fn stats_text(&self, h: &Host, with_averages: bool) -> Vec<u8> {
        let login = HostStats {
            platform: Some(h.platform.as_bytes()),
            version: Some(h.version),
            speed: Some(if h.compiled == 0 { 0.0 } else { h.speed * 25.0 }),
            load: Some(self.load(h)),
            ..HostStats::login(&h.name, &h.ip, h.max_jobs, h.no_remote)
        };
        if !with_averages {
            return login.to_text();
        }
        let used_mb = (h.serving + h.local) * 350;
        let [load_avg1, load_avg5, load_avg10] = h.load_avg.map(|avg| Some((avg * 1000.0) as u32));
        HostStats {
            load_avg1,
            load_avg5,
            load_avg10,
            free_mem: Some(h.mem_mb.saturating_sub(1_500 + used_mb)),
            ..login
        }
        .to_text()
    }

    /// Load 0..1000: busy slots over slots, as a daemon reports it.
    fn load(&self, h: &Host) -> u32 {
        let busy = f64::from(h.serving + h.local);
        let slots = f64::from(h.max_jobs.max(1));
        ((busy / slots).min(1.0) * 1000.0) as u32
    }

    fn report_stats(&mut self, index: usize) {
        let now = self.now_ms;
        let host = &mut self.hosts[index];
        let dt = (now - host.last_stats_ms) as f64 / 1000.0;
        host.last_stats_ms = now;
        let running = f64::from(host.serving + host.local);
        for (avg, minutes) in host.load_avg.iter_mut().zip([1.0, 5.0, 10.0]) {
            let decay = (-dt / (60.0 * minutes)).exp();
            *avg = *avg * decay + running * (1.0 - decay);
        }
        let (id, text) = (host.id, self.stats_text(&self.hosts[index], true));
        self.emit(Event::Stats { host_id: id, text });
    }

    fn start_build(&mut self, host: usize) {
        if self.builds.values().any(|b| b.host == host) {
            return;
        }
        let id = self.next_build_id;
        self.next_build_id += 1;
        let parallel = [4, 8, 8, 16, 16, 24, 32, 48][self.rng.random_range(0..8)];
        let build = Build {
            host,
            project: self.rng.random_range(0..PROJECTS.len()),
            files_left: self.rng.random_range(6..160),
            in_flight: 0,
            parallel,
            failed: false,
            next_file: self.rng.random_range(0..STEMS.len() as u32),
        };
        self.builds.insert(id, build);
        // `make -jN` starts N compiles at once: a burst of requests.
        self.fill_build(id);
    }

    fn fill_build(&mut self, id: u32) {
        loop {
            let Some(build) = self.builds.get(&id) else {
                return;
            };
            if build.failed || build.files_left == 0 || build.in_flight >= build.parallel {
                break;
            }
            self.submit(id);
        }
        self.finish_build_if_done(id);
    }

    fn next_source(&mut self, build: u32) -> (String, Language) {
        let Some(b) = self.builds.get_mut(&build) else {
            return (String::new(), Language::C);
        };
        let project = &PROJECTS[b.project];
        let n = b.next_file;
        b.next_file += 1;
        let dir = project.dirs[(n as usize / STEMS.len()) % project.dirs.len()];
        let stem = STEMS[n as usize % STEMS.len()];
        let round = n as usize / (STEMS.len() * project.dirs.len());
        let suffix = if round == 0 {
            String::new()
        } else {
            format!("_{round}")
        };
        let ext = match project.lang {
            Language::C => "c",
            Language::OBJC => "m",
            _ => "cpp",
        };
        (
            format!("{}/{dir}/{stem}{suffix}.{ext}", project.name),
            project.lang,
        )
    }

    fn submit(&mut self, build_id: u32) {
        let (file, lang) = self.next_source(build_id);
        let Some(build) = self.builds.get_mut(&build_id) else {
            return;
        };
        build.files_left -= 1;
        build.in_flight += 1;
        let client = build.host;
        let in_flight = build.in_flight;
        let job_id = self.next_job_id;
        self.next_job_id += 1;
        // Some files are compiled where they are: icecc keeps cheap jobs
        // and anything it cannot send (odd flags, no environment) local.
        if self.rng.random_bool(0.07) {
            self.start_local(client, build_id, job_id, object_of(&file));
            return;
        }
        let fails = self.rng.random_bool(0.015);
        self.jobs.insert(
            job_id,
            Job {
                client,
                server: None,
                build: build_id,
                local: false,
                fails,
                file: file.clone(),
                started_ms: self.now_ms,
            },
        );
        let host = &self.hosts[client];
        self.emit(Event::GetCs {
            job_id,
            client_id: host.id,
            file,
            lang,
            platform: host.platform,
            client_count: in_flight,
        });
        self.waiting.push_back(job_id);
        self.assign_waiting();
    }

    fn start_local(&mut self, host: usize, build: u32, job_id: u32, file: String) {
        let h = &mut self.hosts[host];
        h.local += 1;
        let host_id = h.id;
        let speed = h.speed;
        self.jobs.insert(
            job_id,
            Job {
                client: host,
                server: Some(host),
                build,
                local: true,
                fails: false,
                file: file.clone(),
                started_ms: self.now_ms,
            },
        );
        self.emit(Event::LocalBegin {
            host_id,
            job_id,
            file,
        });
        let duration = self.compile_ms(speed);
        self.schedule(duration, Action::LocalDone(job_id));
    }

    /// A compile's wall time: log-normal around 1.5 s, scaled by speed.
    fn compile_ms(&mut self, speed: f64) -> u64 {
        let u1: f64 = self.rng.random_range(f64::EPSILON..1.0);
        let u2: f64 = self.rng.random();
        let normal = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
        let ms = (1_500f64.ln() + 0.7 * normal).exp() / speed;
        ms.clamp(120.0, 40_000.0) as u64
    }

    /// Gives waiting jobs, oldest first, to hosts with a free slot.
    fn assign_waiting(&mut self) {
        let mut still_waiting = VecDeque::with_capacity(self.waiting.len());
        while let Some(job_id) = self.waiting.pop_front() {
            let Some(job) = self.jobs.get(&job_id) else {
                continue;
            };
            match self.pick_server(job.client) {
                Some(server) => {
                    self.hosts[server].serving += 1;
                    if let Some(job) = self.jobs.get_mut(&job_id) {
                        job.server = Some(server);
                    }
                    // The client connects, maybe ships its environment first.
                    let latency = if self.rng.random_bool(0.05) {
                        self.rng.random_range(300..2_000)
                    } else {
                        self.rng.random_range(5..60)
                    };
                    self.schedule(latency, Action::Begin(job_id));
                }
                None => still_waiting.push_back(job_id),
            }
        }
        self.waiting = still_waiting;
    }

    /// A random free slot on another host that takes remote jobs, weighted
    /// by free slots and speed like the scheduler's preference.
    fn pick_server(&mut self, client: usize) -> Option<usize> {
        let weight = |i: usize, h: &Host| {
            if !h.online || h.no_remote || i == client || h.serving >= h.max_jobs {
                0.0
            } else {
                f64::from(h.max_jobs - h.serving) * h.speed
            }
        };
        let total: f64 = self
            .hosts
            .iter()
            .enumerate()
            .map(|(i, h)| weight(i, h))
            .sum();
        if total <= 0.0 {
            return None;
        }
        let mut pick = self.rng.random_range(0.0..total);
        let mut last = None;
        for (i, h) in self.hosts.iter().enumerate() {
            let w = weight(i, h);
            if w > 0.0 {
                last = Some(i);
                if pick < w {
                    return Some(i);
                }
                pick -= w;
            }
        }
        last
    }

    fn begin(&mut self, job_id: u32) {
        let Some(job) = self.jobs.get_mut(&job_id) else {
            return;
        };
        let Some(server) = job.server else {
            return;
        };
        job.started_ms = self.now_ms;
        let host = &self.hosts[server];
        let (host_id, speed) = (host.id, host.speed);
        self.emit(Event::JobBegin { job_id, host_id });
        let duration = self.compile_ms(speed);
        let duration = if self.jobs.get(&job_id).is_some_and(|j| j.fails) {
            duration / 4
        } else {
            duration
        };
        self.schedule(duration, Action::Done(job_id));
    }

    fn done(&mut self, job_id: u32) {
        let Some(job) = self.jobs.remove(&job_id) else {
            return;
        };
        if let Some(server) = job.server {
            let host = &mut self.hosts[server];
            host.serving = host.serving.saturating_sub(1);
            host.compiled += 1;
        }
        let real_ms = (self.now_ms - job.started_ms).min(u64::from(u32::MAX)) as u32;
        let source_kb: u32 = self.rng.random_range(150..3_000);
        let object_kb: u32 = self.rng.random_range(20..900);
        let client_count = self.builds.get(&job.build).map_or(0, |b| b.in_flight);
        let exit_code = u32::from(job.fails);
        let page_faults = self.rng.random_range(0..4_000);
        self.emit(Event::JobDone(JobDone {
            job_id,
            exit_code,
            real_ms,
            user_ms: real_ms / 10 * 9,
            sys_ms: real_ms / 12,
            page_faults,
            in_compressed: source_kb * 1024 / 5,
            in_uncompressed: source_kb * 1024,
            out_compressed: if job.fails { 0 } else { object_kb * 1024 / 3 },
            out_uncompressed: if job.fails { 0 } else { object_kb * 1024 },
            flags: JOB_DONE_FROM_SUBMITTER,
            client_count,
        }));
        if job.fails {
            // icecc compiles a failed job again locally to get the real
            // diagnostics, then make stops starting new files.
            if let Some(build) = self.builds.get_mut(&job.build) {
                build.failed = true;
            }
            let local_id = self.next_job_id;
            self.next_job_id += 1;
            self.start_local(job.client, job.build, local_id, object_of(&job.file));
        } else {
            self.end_one(job.build);
        }
        self.assign_waiting();
    }

    fn local_done(&mut self, job_id: u32) {
        let Some(job) = self.jobs.remove(&job_id) else {
            return;
        };
        let host = &mut self.hosts[job.client];
        host.local = host.local.saturating_sub(1);
        self.emit(Event::LocalDone { job_id });
        self.end_one(job.build);
    }

    /// One job of a build ended: start the next file, or link.
    fn end_one(&mut self, build_id: u32) {
        let Some(build) = self.builds.get_mut(&build_id) else {
            return;
        };
        build.in_flight = build.in_flight.saturating_sub(1);
        self.fill_build(build_id);
    }

    fn finish_build_if_done(&mut self, build_id: u32) {
        let Some(build) = self.builds.get(&build_id) else {
            return;
        };
        if build.in_flight > 0 || (build.files_left > 0 && !build.failed) {
            return;
        }
        let host = build.host;
        let link = !build.failed && build.files_left == 0 && build.parallel > 0;
        let project = PROJECTS[build.project].name;
        if link {
            // The final link runs on the submitting host.
            if let Some(b) = self.builds.get_mut(&build_id) {
                b.in_flight = 1;
                b.parallel = 0;
            }
            let job_id = self.next_job_id;
            self.next_job_id += 1;
            self.start_local(host, build_id, job_id, format!("{project}/build/{project}"));
            return;
        }
        self.builds.remove(&build_id);
        let idle = if self.hosts[host].no_remote {
            self.rng.random_range(3_000..20_000)
        } else {
            self.rng.random_range(10_000..90_000)
        };
        let epoch = self.hosts[host].epoch;
        self.schedule(idle, Action::StartBuild(host, epoch));
    }

    /// A daemon goes away: what `handle_end` in icecream's scheduler sends.
    fn leave(&mut self) {
        let candidates: Vec<usize> = (0..self.hosts.len())
            .filter(|&i| self.hosts[i].online && !self.hosts[i].no_remote)
            .collect();
        if candidates.len() < 3 {
            return;
        }
        let index = candidates[self.rng.random_range(0..candidates.len())];
        let host_id = self.hosts[index].id;
        self.emit(Event::Stats {
            host_id,
            text: OFFLINE.to_vec(),
        });
        let gone = |job: &Job| job.client == index || (!job.local && job.server == Some(index));
        // Waiting requests of the leaving submitter first, then every other
        // job it submitted or served, each ended with exit code 255.
        let waiting: Vec<u32> = self
            .waiting
            .iter()
            .copied()
            .filter(|id| self.jobs.get(id).is_some_and(|j| j.client == index))
            .collect();
        let others: Vec<u32> = self
            .jobs
            .iter()
            .filter(|(id, job)| gone(job) && !waiting.contains(id))
            .map(|(&id, _)| id)
            .collect();
        for job_id in waiting.into_iter().chain(others) {
            let Some(job) = self.jobs.remove(&job_id) else {
                continue;
            };
            if job.local {
                // The scheduler does not tell monitors about local jobs of
                // a daemon that vanished.
                continue;
            }
            if let Some(server) = job.server {
                let h = &mut self.hosts[server];
                h.serving = h.serving.saturating_sub(1);
            }
            self.emit(Event::JobDone(JobDone::new(job_id, EXIT_CODE_HOST_GONE)));
            if job.client != index {
                // The client compiles the file itself after losing its server.
                let local_id = self.next_job_id;
                self.next_job_id += 1;
                self.start_local(job.client, job.build, local_id, object_of(&job.file));
            }
        }
        self.waiting
            .retain(|id| self.jobs.get(id).is_some_and(|j| j.client != index));
        self.builds.retain(|_, b| b.host != index);
        let host = &mut self.hosts[index];
        host.online = false;
        host.epoch += 1;
        host.serving = 0;
        host.local = 0;
        host.load_avg = [0.0; 3];
        let back = self.rng.random_range(15_000..45_000);
        self.schedule(back, Action::Join(index));
        self.assign_waiting();
    }

    /// Jobs known to the model.
    #[cfg(test)]
    fn jobs_in_flight(&self) -> usize {
        self.jobs.len()
    }

    /// Checks the model's own bookkeeping: slots never overbooked, every
    /// job on an online host.
    #[cfg(test)]
    fn check_invariants(&self) -> Result<(), String> {
        for h in &self.hosts {
            if h.serving > h.max_jobs {
                return Err(format!(
                    "{} serves {} of {} slots",
                    h.name, h.serving, h.max_jobs
                ));
            }
            if h.no_remote && h.serving > 0 {
                return Err(format!("no-remote host {} serves jobs", h.name));
            }
        }
        for (id, job) in &self.jobs {
            if !self.hosts[job.client].online {
                return Err(format!("job {id} belongs to an offline host"));
            }
            if let Some(s) = job.server {
                if !self.hosts[s].online {
                    return Err(format!("job {id} runs on an offline host"));
                }
            }
        }
        Ok(())
    }
}

/// The object file a local compile of `source` writes.
fn object_of(source: &str) -> String {
    let stem = source.rsplit_once('.').map_or(source, |(s, _)| s);
    format!("{stem}.o")
}

/// Whether a `MON_STATS` event says its host left.
pub fn is_offline(event: &Event) -> bool {
    matches!(event, Event::Stats { text, .. } if HostStats::parse(text).offline)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::MsgType;
    use bytes::BytesMut;
    use std::collections::BTreeSet;

    #[test]
    fn the_same_seed_gives_the_same_stream() {
        let mut a = Simulation::new(12, 7);
        let mut b = Simulation::new(12, 7);
        for _ in 0..20_000 {
            assert_eq!(a.step(), b.step());
        }
        let mut c = Simulation::new(12, 8);
        let differs = (0..2_000).any(|_| a.step() != c.step());
        assert!(differs);
    }

    #[test]
    fn a_long_run_keeps_its_books_and_stays_bounded() {
        let mut sim = Simulation::new(12, 3);
        let mut last = 0;
        for _ in 0..200_000 {
            let (at, _) = sim.step();
            assert!(at >= last, "time went backwards");
            last = at;
            sim.check_invariants().unwrap();
            assert!(sim.jobs_in_flight() < 12 * 48 + 100);
        }
        assert!(
            sim.agenda.len() < 2_000,
            "agenda grew to {}",
            sim.agenda.len()
        );
    }

    #[test]
    fn the_stream_uses_every_monitor_message_and_leaves_and_joins() {
        let mut sim = Simulation::new(12, 1);
        let mut types = BTreeSet::new();
        let (mut offline, mut failed, mut gone, mut waited) = (0, 0, 0, 0);
        let mut begun = BTreeSet::new();
        let mut requested = BTreeSet::new();
        for _ in 0..50_000 {
            let (_, event) = sim.step();
            match &event {
                Event::JobDone(d) if d.exit_code == EXIT_CODE_HOST_GONE => gone += 1,
                Event::JobDone(d) if d.exit_code != 0 => failed += 1,
                Event::GetCs { job_id, .. } => {
                    requested.insert(*job_id);
                }
                Event::JobBegin { job_id, .. } => {
                    assert!(requested.contains(job_id), "begin before request");
                    begun.insert(*job_id);
                }
                _ => {}
            }
            if is_offline(&event) {
                offline += 1;
            }
            if let Event::JobDone(d) = &event {
                if !begun.contains(&d.job_id) {
                    waited += 1;
                }
            }
            types.insert(event.message(0).ty());
        }
        let expected: BTreeSet<MsgType> = [
            MsgType::MON_STATS,
            MsgType::MON_GET_CS,
            MsgType::MON_JOB_BEGIN,
            MsgType::MON_JOB_DONE,
            MsgType::MON_LOCAL_JOB_BEGIN,
            MsgType::JOB_LOCAL_DONE,
        ]
        .into();
        assert_eq!(types, expected);
        assert!(
            offline > 0 && failed > 0 && gone > 0,
            "{offline} {failed} {gone}"
        );
        assert!(waited > 0, "no job ever ended while waiting for a server");
    }

    #[test]
    fn every_event_encodes_and_decodes_at_every_version() {
        let mut sim = Simulation::new(6, 2);
        let events: Vec<Event> = (0..3_000).map(|_| sim.step().1).collect();
        for version in 21..=44 {
            for event in &events {
                let msg = event.message(1_700_000_000);
                let mut out = BytesMut::new();
                msg.encode(version, &mut out);
                let (rest, raw) =
                    crate::protocol::frame::parse_frame(&out, crate::protocol::frame::MAX_MSG_SIZE)
                        .unwrap();
                assert!(rest.is_empty());
                let back = Message::decode(raw.ty, raw.body, version).unwrap();
                assert_eq!(back.ty(), msg.ty());
            }
        }
    }

    #[test]
    fn one_or_two_workstations_take_no_remote_jobs() {
        let count = |hosts| {
            Simulation::new(hosts, 5)
                .hosts
                .iter()
                .filter(|h| h.no_remote)
                .count()
        };
        assert_eq!(count(4), 1);
        assert_eq!(count(12), 2);
    }

    #[test]
    fn the_natural_rate_is_a_few_dozen_messages_a_second() {
        let rate = Simulation::new(12, 1).natural_rate(5_000);
        assert!((5.0..500.0).contains(&rate), "{rate}");
    }
}
