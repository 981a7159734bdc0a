//! The job store of a `State` (active jobs by id, the history ring, the
//! file names kept in chunks and compacted) against a plain model: a
//! `HashMap` of the active jobs and a `VecDeque` of the finished ones,
//! file names included. Random sequences of what a scheduler sends (a job
//! requested, begun, done, local jobs, a host going offline, the scheduler
//! restarting, and bursts of many jobs that overflow the history and leave
//! a few jobs running, so that the name store must compact) are applied to
//! both; after each step the state must show exactly the model's jobs.

use icewatch::monitor::{JobState, State, StateOptions, MAX_FILE_NAME};
use icewatch::protocol::stats::{HostStats, OFFLINE};
use icewatch::protocol::{JobDone, Language, Message};
use proptest::prelude::*;
use std::collections::{HashMap, VecDeque};

/// Hosts 1 to `HOSTS` take part; each has more slots than jobs ever run,
/// so that no job ends because its server is overbooked.
const HOSTS: u32 = 4;
const T0: u64 = 1_700_000_000_000;

/// What a job shows: its state, submitter, server and file name.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Shown {
    state: JobState,
    client: Option<u32>,
    server: Option<u32>,
    file: Vec<u8>,
}

/// One step of the scheduler's stream. `pick` chooses among the active
/// jobs that fit, in id order, modulo their number.
#[derive(Clone, Debug)]
enum Op {
    /// MON_GET_CS from `client` for a file named with `name_len` bytes.
    Request { client: u32, name_len: usize },
    /// MON_JOB_BEGIN of a remote job on `server` (again, if it compiles).
    Begin { pick: usize, server: u32 },
    /// MON_JOB_BEGIN of a job never requested (a monitor joining late).
    BeginUnknown { server: u32 },
    /// MON_JOB_DONE of an active job.
    Done { pick: usize, exit_code: u32 },
    /// MON_JOB_DONE of a job the monitor does not know.
    DoneUnknown,
    /// MON_LOCAL_JOB_BEGIN on `host`.
    LocalBegin { host: u32, name_len: usize },
    /// JOB_LOCAL_DONE of an active job (any kind ends as a local one).
    LocalDone { pick: usize },
    /// The host leaves (`State:Offline`), then logs in again.
    Offline { host: u32 },
    /// The scheduler restarts: a new session, the hosts log in again.
    Reconnect,
    /// `jobs` whole jobs, requested, begun and done, with names of
    /// `name_len` bytes; every `stuck`-th never ends.
    Burst {
        jobs: u32,
        name_len: usize,
        stuck: u32,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let host = 1..=HOSTS;
    // Past MAX_FILE_NAME, to see long names cut.
    let name_len = prop_oneof![0..64usize, 64..4200usize];
    prop_oneof![
        4 => (host.clone(), name_len.clone())
            .prop_map(|(client, name_len)| Op::Request { client, name_len }),
        3 => (any::<usize>(), host.clone()).prop_map(|(pick, server)| Op::Begin { pick, server }),
        1 => host.clone().prop_map(|server| Op::BeginUnknown { server }),
        3 => (any::<usize>(), prop_oneof![Just(0u32), Just(1), Just(u32::MAX)])
            .prop_map(|(pick, exit_code)| Op::Done { pick, exit_code }),
        1 => Just(Op::DoneUnknown),
        2 => (host.clone(), name_len).prop_map(|(host, name_len)| Op::LocalBegin { host, name_len }),
        1 => any::<usize>().prop_map(|pick| Op::LocalDone { pick }),
        1 => host.prop_map(|host| Op::Offline { host }),
        1 => Just(Op::Reconnect),
        1 => (50..400u32, 1000..4096usize, 6..40u32)
            .prop_map(|(jobs, name_len, stuck)| Op::Burst { jobs, name_len, stuck }),
    ]
}

/// The state under test and the model, side by side.
struct Run {
    st: State,
    now: u64,
    /// The next job id (the scheduler's one counter).
    next_id: u32,
    active: HashMap<u32, Shown>,
    history: VecDeque<(u32, Shown)>,
    history_limit: usize,
}

impl Run {
    fn new(history_limit: usize) -> Run {
        let mut st = State::new(StateOptions {
            history_limit,
            ..StateOptions::default()
        });
        st.scheduler_connected("127.0.0.1:8765".into(), 43, T0);
        let mut run = Run {
            st,
            now: T0,
            next_id: 1,
            active: HashMap::new(),
            history: VecDeque::new(),
            history_limit,
        };
        run.log_in_every_host();
        run
    }

    fn send(&mut self, msg: Message<'_>) {
        self.now += 10;
        self.st.apply(&msg, self.now);
    }

    fn log_in_every_host(&mut self) {
        for id in 1..=HOSTS {
            self.log_in(id);
        }
    }

    fn log_in(&mut self, id: u32) {
        let name = format!("host{id}");
        let text = HostStats::login(&name, "10.0.0.1", 1 << 20, false).to_text();
        self.send(Message::mon_stats(id, &text));
    }

    /// A new job's id and a file name of `len` bytes, not all of them
    /// UTF-8, that no other job has.
    fn new_job(&mut self, len: usize) -> (u32, Vec<u8>) {
        let id = self.next_id;
        self.next_id += 1;
        let mut file = format!("src/{id}/").into_bytes();
        file.resize(len.max(file.len()), b'a' + (id % 26) as u8);
        if id % 5 == 0 {
            file.push(0xff);
        }
        (id, file)
    }

    /// The ids of the active jobs for which `fits` holds, in order.
    fn ids(&self, fits: impl Fn(&Shown) -> bool) -> Vec<u32> {
        let mut ids: Vec<u32> = self
            .active
            .iter()
            .filter(|(_, job)| fits(job))
            .map(|(&id, _)| id)
            .collect();
        ids.sort_unstable();
        ids
    }

    /// The id of the `pick`-th active job for which `fits` holds.
    fn pick(&self, pick: usize, fits: impl Fn(&Shown) -> bool) -> Option<u32> {
        let ids = self.ids(fits);
        ids.get(pick % ids.len().max(1)).copied()
    }

    /// The model's side of a job's end, as `state`: to the history, the
    /// oldest out. A local job ends as one, however it ends.
    fn retire(&mut self, id: u32, state: JobState) {
        let mut job = self.active.remove(&id).expect("an active job");
        job.state = match job.state {
            JobState::Local => JobState::LocalFinished,
            _ => state,
        };
        self.history.push_back((id, job));
        if self.history.len() > self.history_limit {
            self.history.pop_front();
        }
    }

    /// Every active job for which `ends` holds, ended in id order.
    fn retire_all(&mut self, state: JobState, ends: impl Fn(&Shown) -> bool) {
        for id in self.ids(ends) {
            self.retire(id, state);
        }
    }

    fn request(&mut self, client: u32, name_len: usize) -> u32 {
        let (id, file) = self.new_job(name_len);
        self.send(Message::mon_get_cs(id, client, &file, Language::CXX));
        self.active
            .insert(id, shown(JobState::Waiting, client, None, &file));
        id
    }

    fn begin(&mut self, id: u32, server: u32) {
        self.send(Message::mon_job_begin(id, server, 0));
        let job = self.active.get_mut(&id).expect("an active job");
        job.state = JobState::Compiling;
        job.server = Some(server);
    }

    fn done(&mut self, id: u32, exit_code: u32) {
        self.send(Message::MonJobDone(JobDone::new(id, exit_code)));
        let state = match exit_code {
            0 => JobState::Finished,
            _ => JobState::Failed,
        };
        self.retire(id, state);
    }

    fn step(&mut self, op: &Op) {
        let remote = |job: &Shown| job.state != JobState::Local;
        match *op {
            Op::Request { client, name_len } => drop(self.request(client, name_len)),
            Op::Begin { pick, server } => {
                if let Some(id) = self.pick(pick, remote) {
                    self.begin(id, server);
                }
            }
            Op::BeginUnknown { server } => {
                let (id, _) = self.new_job(0);
                self.send(Message::mon_job_begin(id, server, 0));
                let job = Shown {
                    client: None,
                    ..shown(JobState::Compiling, server, Some(server), b"")
                };
                self.active.insert(id, job);
            }
            Op::Done { pick, exit_code } => {
                if let Some(id) = self.pick(pick, |_| true) {
                    self.done(id, exit_code);
                }
            }
            Op::DoneUnknown => {
                let (id, _) = self.new_job(0);
                self.send(Message::MonJobDone(JobDone::new(id, 0)));
            }
            Op::LocalBegin { host, name_len } => {
                let (id, file) = self.new_job(name_len);
                self.send(Message::mon_local_job_begin(id, host, 0, &file));
                let job = shown(JobState::Local, host, Some(host), &file);
                self.active.insert(id, job);
            }
            Op::LocalDone { pick } => {
                if let Some(id) = self.pick(pick, |_| true) {
                    self.send(Message::job_local_done(id));
                    self.retire(id, JobState::LocalFinished);
                }
            }
            Op::Offline { host } => {
                self.send(Message::mon_stats(host, OFFLINE));
                let on = |job: &Shown| job.client == Some(host) || job.server == Some(host);
                self.retire_all(JobState::CutShort, on);
                self.log_in(host);
            }
            Op::Reconnect => {
                self.now += 10;
                self.st
                    .scheduler_connected("127.0.0.1:8765".into(), 43, self.now);
                self.retire_all(JobState::CutShort, |_| true);
                self.log_in_every_host();
            }
            Op::Burst {
                jobs,
                name_len,
                stuck,
            } => {
                for n in 0..jobs {
                    let id = self.request(n % HOSTS + 1, name_len);
                    self.begin(id, (n * 7) % HOSTS + 1);
                    if n % stuck != 0 {
                        self.done(id, 0);
                    }
                }
            }
        }
    }

    /// The state shows exactly the model's jobs, and its books add up.
    fn check(&self) -> Result<(), TestCaseError> {
        let active: HashMap<u32, Shown> = self
            .st
            .jobs()
            .map(|j| (j.id, shown_of(&j, j.file_bytes())))
            .collect();
        prop_assert_eq!(active.len(), self.st.jobs().count(), "one entry an id");
        let want: HashMap<u32, Shown> = self
            .active
            .iter()
            .map(|(&id, job)| (id, kept(job)))
            .collect();
        prop_assert_eq!(active, want);
        let history: Vec<(u32, Shown)> = self
            .st
            .history()
            .map(|j| (j.id, shown_of(&j, j.file_bytes())))
            .collect();
        let want: Vec<(u32, Shown)> = self
            .history
            .iter()
            .map(|(id, job)| (*id, kept(job)))
            .collect();
        prop_assert_eq!(history, want);
        self.st.check_invariants();
        Ok(())
    }
}

fn shown(state: JobState, client: u32, server: Option<u32>, file: &[u8]) -> Shown {
    Shown {
        state,
        client: Some(client),
        server,
        file: file.to_vec(),
    }
}

fn shown_of(job: &icewatch::monitor::Job, file: &[u8]) -> Shown {
    Shown {
        state: job.state,
        client: job.client,
        server: job.server,
        file: file.to_vec(),
    }
}

/// What the state keeps of a job's file name: its first
/// [`MAX_FILE_NAME`] bytes.
fn kept(job: &Shown) -> Shown {
    Shown {
        file: job.file[..job.file.len().min(MAX_FILE_NAME)].to_vec(),
        ..job.clone()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn the_job_store_agrees_with_a_map_and_a_queue_after_every_message(
        history_limit in prop_oneof![1..8usize, 8..300usize],
        ops in proptest::collection::vec(op(), 1..60),
    ) {
        let mut run = Run::new(history_limit);
        for op in &ops {
            run.step(op);
            run.check()?;
        }
    }
}

/// Jobs that never end leave a name in every chunk of the name store;
/// the store compacts them while the history turns over many times, and
/// every name still reads back.
#[test]
fn names_of_jobs_that_never_end_survive_compaction() {
    let mut run = Run::new(16);
    for _ in 0..8 {
        run.step(&Op::Burst {
            jobs: 400,
            name_len: 3000,
            stuck: 20,
        });
        run.check().unwrap();
        run.step(&Op::Offline { host: 2 });
        run.check().unwrap();
    }
}
