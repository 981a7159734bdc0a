//! [`Book`]: the counting of a [`State`](super::State). A job contributes to
//! counters only through [`Book::enter`] (when it takes a state) and
//! [`Book::leave`] (when it gives it up), and it remembers which host
//! counters it raised ([`Raised`]). So whatever order messages arrive in,
//! however many are missing or repeated, every counter goes back down
//! exactly as far as it went up and never below zero.

use super::change::ChangeSet;
use super::cluster::{Host, JobState};
use super::hosts::{HostSlot, Hosts};
use super::jobs::Active;
use super::state::CHANGE_LIMIT;
use std::num::NonZeroU16;

/// Which counters a job raised, so that `leave` lowers exactly those: the
/// slots of the hosts whose counters it raised (each keeps its slot while
/// any job counts on it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Raised {
    // Each slot plus one, so that `None` takes no room of its own: the
    // record of every job ever kept carries these.
    pub(crate) client_pending: Option<NonZeroU16>,
    pub(crate) server_active: Option<NonZeroU16>,
}

impl Raised {
    pub(crate) fn client_pending(&self) -> Option<HostSlot> {
        self.client_pending.map(|s| s.get() - 1)
    }

    pub(crate) fn server_active(&self) -> Option<HostSlot> {
        self.server_active.map(|s| s.get() - 1)
    }

    // Host slots are below MAX_HOSTS < u16::MAX: plus one never wraps.
    pub(crate) fn set_client_pending(&mut self, slot: HostSlot) {
        self.client_pending = NonZeroU16::new(slot.wrapping_add(1));
    }

    pub(crate) fn set_server_active(&mut self, slot: HostSlot) {
        self.server_active = NonZeroU16::new(slot.wrapping_add(1));
    }
}

#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Counters {
    pub(crate) hosts_online: u32,
    pub(crate) total_slots: u64,
    pub(crate) busy: u64,
    pub(crate) compiling: u64,
    pub(crate) pending: u64,
    pub(crate) local_active: u64,
    pub(crate) jobs_finished: u64,
    pub(crate) jobs_failed: u64,
    pub(crate) jobs_cut_short: u64,
    pub(crate) local_jobs_finished: u64,
    pub(crate) unknown_jobs: u64,
    pub(crate) unknown_hosts: u64,
    pub(crate) invalid_messages: u64,
}

impl Counters {
    /// For a new scheduler session: what is there now (hosts, slots, jobs
    /// in flight) starts from nothing; what was counted over time goes on,
    /// so that counters only grow for the life of the process.
    pub(crate) fn new_session(&mut self) {
        *self = Counters {
            jobs_finished: self.jobs_finished,
            jobs_failed: self.jobs_failed,
            jobs_cut_short: self.jobs_cut_short,
            local_jobs_finished: self.local_jobs_finished,
            unknown_jobs: self.unknown_jobs,
            unknown_hosts: self.unknown_hosts,
            invalid_messages: self.invalid_messages,
            ..Counters::default()
        };
    }
}

/// Hosts, counters and the change set: everything a job's state change
/// touches, apart from the job tables themselves.
#[derive(Debug)]
pub(crate) struct Book {
    pub(crate) hosts: Hosts,
    pub(crate) counts: Counters,
    pub(crate) changes: ChangeSet,
    pub(crate) gen: u64,
}

impl Book {
    pub(crate) fn touch_host(&mut self, id: u32) -> Option<&mut Host> {
        let slot = self.hosts.slot(id)?;
        Some(self.touch_slot(slot))
    }

    /// The host in `slot`, recorded as changed.
    pub(crate) fn touch_slot(&mut self, slot: HostSlot) -> &mut Host {
        let h = &mut self.hosts.slab[usize::from(slot)];
        if h.gen != self.gen {
            h.gen = self.gen;
            self.changes.hosts.push(h.id);
        }
        h
    }

    pub(crate) fn touch_job(&mut self, job: &mut Active) {
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
    pub(crate) fn overflow(&mut self) {
        self.changes.jobs = Vec::new();
        self.changes.overflow = true;
        self.changes.reset = true;
        self.changes.totals = true;
    }

    /// Counts `job` in its current state.
    pub(crate) fn enter(&mut self, job: &mut Active) {
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
                    let h = self.touch_slot(slot);
                    h.active += 1;
                    h.serving += u32::from(job.state == JobState::Compiling);
                    self.counts.busy += 1;
                    job.raised.set_server_active(slot);
                }
            }
            JobState::Finished
            | JobState::Failed
            | JobState::CutShort
            | JobState::LocalFinished => {}
        }
    }

    /// Takes back what `enter` counted for `job`.
    pub(crate) fn leave(&mut self, job: &mut Active) {
        self.changes.totals = true;
        let c = &mut self.counts;
        match job.state {
            JobState::Waiting => c.pending = c.pending.saturating_sub(1),
            JobState::Compiling => c.compiling = c.compiling.saturating_sub(1),
            JobState::Local => c.local_active = c.local_active.saturating_sub(1),
            JobState::Finished
            | JobState::Failed
            | JobState::CutShort
            | JobState::LocalFinished => {}
        }
        let raised = std::mem::take(&mut job.raised);
        if let Some(slot) = raised.client_pending() {
            let h = self.touch_slot(slot);
            h.pending = h.pending.saturating_sub(1);
        }
        if let Some(slot) = raised.server_active() {
            let h = self.touch_slot(slot);
            h.active = h.active.saturating_sub(1);
            if job.state == JobState::Compiling {
                h.serving = h.serving.saturating_sub(1);
            }
            self.counts.busy = self.counts.busy.saturating_sub(1);
        }
    }

    pub(crate) fn set_online(&mut self, id: u32, online: bool) {
        if let Some(slot) = self.hosts.slot(id) {
            self.set_slot_online(slot, online);
        }
    }

    pub(crate) fn set_slot_online(&mut self, slot: HostSlot, online: bool) {
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
