//! [`Book`]: the counting of a [`State`](super::State). A job contributes to
//! counters only through [`Book::enter`] (when it takes a state) and
//! [`Book::leave`] (when it gives it up), and it remembers which host
//! counters it raised ([`Raised`](super::jobs::Raised)). So whatever order messages arrive in,
//! however many are missing or repeated, every counter goes back down
//! exactly as far as it went up and never below zero.

use super::cluster::{Host, JobState};
use super::feed::{Entry, Feed};
use super::hosts::{HostSlot, Hosts};
use super::jobs::Active;

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

/// Hosts, counters and the feed of changes: everything a job's state
/// change touches, apart from the job tables themselves.
#[derive(Debug, Default)]
pub(crate) struct Book {
    pub(crate) hosts: Hosts,
    pub(crate) counts: Counters,
    pub(crate) feed: Feed,
}

impl Book {
    #[inline]
    pub(crate) fn touch_host(&mut self, id: u32) -> Option<&mut Host> {
        let slot = self.hosts.slot(id)?;
        Some(self.touch_slot(slot))
    }

    /// The host in `slot`, recorded as changed (once an epoch).
    #[inline]
    pub(crate) fn touch_slot(&mut self, slot: HostSlot) -> &mut Host {
        let h = &mut self.hosts.slab[usize::from(slot)];
        let epoch = self.feed.epoch();
        if h.gen != epoch {
            h.gen = epoch;
            self.feed.record(Entry::Host(h.id));
        }
        h
    }

    /// `job`, recorded as changed (once an epoch; its mark holds the
    /// epoch's low 32 bits: a job would have to stay unchanged for 2^32
    /// takes to be taken for one changed in this one).
    #[inline]
    pub(crate) fn touch_job(&mut self, job: &mut Active) {
        let epoch = self.feed.epoch() as u32;
        if job.gen != epoch {
            job.gen = epoch;
            self.feed.record(Entry::Job(job.id));
        }
    }

    /// Counts `job` in its current state.
    pub(crate) fn enter(&mut self, job: &mut Active) {
        self.touch_job(job);
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
    }
}
