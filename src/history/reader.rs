//! The reader: a follower of the state's [feed](crate::monitor::feed) that
//! copies, under the lock and nothing more, what is to be kept: jobs that
//! finished ([`State::held_since`]), hosts that logged in or out (by
//! comparing the hosts it has seen), scheduler sessions that began or
//! ended, and each host's load once a minute. The records go to the writer
//! thread; the reader never waits for the database.

use super::record::{HostRecord, JobRecord, LoadSample, Names, Record};
use crate::monitor::{Follower, JobState, State, MAX_ACTIVE_JOBS};
use rustc_hash::{FxHashMap, FxHashSet};

/// A load sample per host this often (state clock).
pub const LOAD_EVERY_MS: u64 = 60_000;

/// What one [`Reader::take`] copied.
#[derive(Debug, Default)]
pub struct Taken {
    /// The records, in order.
    pub records: Vec<Record>,
    /// Finished jobs were left in the state's history for want of room.
    pub behind: bool,
}

/// What the reader remembers of what it has copied.
#[derive(Debug)]
pub struct Reader {
    follower: Option<Follower>,
    /// Scheduler sessions recorded (the state numbers them from 1).
    announced: u32,
    /// Whether the last session recorded was seen online.
    online: bool,
    /// Hosts of the current session seen online.
    hosts: FxHashSet<u32>,
    /// When each job of the current session that the reader saw waiting
    /// was submitted.
    submitted: FxHashMap<u32, u64>,
    /// The load minute last sampled.
    load_minute: u64,
    /// Finished jobs that the state's history no longer held when read.
    missed: u64,
    /// The history number of the next finished job to copy (`None`
    /// before the first take): its own, so that a feed that lagged (and
    /// reports no finished jobs) costs nothing the state still holds.
    next_done: Option<u64>,
    /// Host and file names, shared by the records.
    names: Names,
}

impl Reader {
    /// Starts following `state` from now.
    pub fn new(state: &mut State) -> Reader {
        let follower = state.follow();
        state.hold_history(Some(state.next_finished()));
        Reader {
            follower: Some(follower),
            announced: 0,
            online: false,
            hosts: FxHashSet::default(),
            submitted: FxHashMap::default(),
            load_minute: 0,
            missed: 0,
            next_done: None,
            names: Names::default(),
        }
    }

    /// Stops following `state`, and lets go of the jobs it held.
    pub fn leave(mut self, state: &mut State) {
        if let Some(f) = self.follower.take() {
            state.unfollow(f);
            state.hold_history(None);
        }
    }

    /// Finished jobs that went from the state's history before the reader
    /// copied them (the history was too short for the pace).
    pub fn missed(&self) -> u64 {
        self.missed
    }

    /// What happened since the last call, as records to keep, with at
    /// most `room` finished jobs: the others stay held in the state's
    /// history (see [`State::hold_history`]) for the next call, and
    /// `behind` says that some did.
    pub fn take(&mut self, state: &mut State, room: usize) -> Taken {
        let Some(follower) = self.follower.as_mut() else {
            return Taken::default();
        };
        let changes = state.changes(follower);
        let mut out = Vec::new();
        let session = state.session();
        let scheduler = state.scheduler();
        let now = state.clock_ms();
        if session != self.announced {
            // The session before ended when the new one began, if not already.
            let ended = scheduler.since_ms.unwrap_or(now);
            self.end_session(ended, &mut out);
            for local in self.announced + 1..=session {
                out.push(Record::Session {
                    local,
                    scheduler: scheduler.address.clone(),
                    protocol: scheduler.protocol,
                    start_ms: scheduler.since_ms.unwrap_or(now),
                });
            }
            self.announced = session;
            self.online = true;
        }
        // Jobs of the session seen waiting: their submission time.
        for &id in &changes.jobs {
            if let Some(job) = state.job(id).filter(|j| j.state == JobState::Waiting) {
                if self.submitted.len() >= MAX_ACTIVE_JOBS {
                    self.submitted.clear();
                }
                self.submitted.insert(id, job.start_ms);
            }
        }
        // Finished jobs from the first not copied yet; those the state no
        // longer holds (a hold has a bound) are missed.
        let from = self.next_done.unwrap_or(changes.done.start);
        let first = from.max(state.first_finished());
        self.missed += first - from;
        let mut next = first;
        // As many as are taken, so that the batch never doubles its room
        // (a burst takes tens of thousands at once).
        let count = usize::try_from(state.next_finished() - first).map_or(room, |n| n.min(room));
        out.reserve_exact(count);
        for job in state.held_since(first).take(count) {
            next += 1;
            let submit = if job.session() == session {
                self.submitted.remove(&job.id)
            } else {
                None
            };
            if let Some(record) = JobRecord::of(&job, submit, &mut self.names) {
                out.push(Record::Job(record));
            }
        }
        self.next_done = Some(next);
        let behind = next < changes.done.end;
        // Hosts that logged in or out.
        let everyone = changes.lagged || changes.new_session;
        let ids: Vec<u32> = if everyone {
            state
                .hosts()
                .map(|h| h.id)
                .chain(self.hosts.iter().copied())
                .collect()
        } else {
            changes.hosts
        };
        // Few of the hosts that changed logged in or out: their records
        // apart, so that the batch grows by exactly them.
        let mut logins = Vec::new();
        for id in ids {
            match state.host(id).filter(|h| h.online) {
                Some(host) if session > 0 => {
                    if self.hosts.insert(id) {
                        logins.push(Record::HostLogin(HostRecord::of(host, session, now)));
                        logins.push(Record::Load(LoadSample::of(host, now)));
                    }
                }
                _ => {
                    if self.hosts.remove(&id) {
                        logins.push(Record::HostLogout {
                            session,
                            host_id: id,
                            at_ms: now,
                        });
                    }
                }
            }
        }
        out.reserve_exact(logins.len());
        out.append(&mut logins);
        if self.online && !scheduler.online {
            self.end_session(scheduler.since_ms.unwrap_or(now), &mut out);
        }
        // A load sample per host at its login and at each new minute.
        let minute = now / LOAD_EVERY_MS;
        if minute != self.load_minute {
            self.load_minute = minute;
            let online = state
                .hosts()
                .filter(|h| h.online && self.hosts.contains(&h.id));
            out.extend(online.map(|h| Record::Load(LoadSample::of(h, now))));
        }
        state.hold_history(Some(next));
        Taken {
            records: out,
            behind,
        }
    }

    /// The recorded session ends at `at_ms`, its hosts with it.
    fn end_session(&mut self, at_ms: u64, out: &mut Vec<Record>) {
        if self.announced == 0 || !self.online {
            return;
        }
        let mut hosts: Vec<u32> = self.hosts.drain().collect();
        hosts.sort_unstable();
        for host_id in hosts {
            out.push(Record::HostLogout {
                session: self.announced,
                host_id,
                at_ms,
            });
        }
        self.submitted.clear();
        out.push(Record::SessionEnd {
            local: self.announced,
            end_ms: at_ms,
        });
        self.online = false;
    }
}
