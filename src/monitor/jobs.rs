//! [`Jobs`]: the job table of a [`State`](super::State), active jobs by id
//! and the bounded history of finished ones, kept in one arena of slots.
//!
//! A job is written into a slot once, when it starts, and never moves:
//! finishing it moves only its slot number into the history, and a job
//! that leaves the history hands its slot, file name buffer included, to
//! the next job that starts. So the steady state allocates nothing, and the
//! id index, at 8 bytes an entry, stays small enough for the caches however
//! large the jobs are.

use super::state::{Job, JobState, MAX_HISTORY};
use rustc_hash::FxHashMap;
use std::collections::VecDeque;

/// Index of a job in the arena.
pub(crate) type Slot = u32;

/// A file name buffer this large or larger is not kept for the next job.
const KEPT_FILE_BYTES: usize = 256;

/// Active jobs and the history, in one arena.
#[derive(Debug)]
pub(crate) struct Jobs {
    /// Every job ever filed that is still active, in the history, or free.
    slots: Vec<Job>,
    /// Active jobs: id → slot.
    active: FxHashMap<u32, Slot>,
    /// Finished jobs, oldest first.
    history: VecDeque<Slot>,
    /// Slots of jobs that left the history, for the next jobs.
    free: Vec<Slot>,
    /// Jobs ever pushed to the history (the sequence number of the next one).
    pushed: u64,
    /// At most this many finished jobs are kept.
    history_limit: usize,
}

impl Jobs {
    /// An empty table that keeps `history_limit` finished jobs (at least 1,
    /// at most [`MAX_HISTORY`]).
    pub(crate) fn new(history_limit: usize) -> Jobs {
        Jobs {
            slots: Vec::new(),
            active: FxHashMap::default(),
            history: VecDeque::new(),
            free: Vec::new(),
            pushed: 0,
            history_limit: history_limit.clamp(1, MAX_HISTORY),
        }
    }

    /// How many jobs are active.
    pub(crate) fn active_len(&self) -> usize {
        self.active.len()
    }

    /// The active job `id`.
    pub(crate) fn get(&self, id: u32) -> Option<&Job> {
        self.active.get(&id).map(|&slot| &self.slots[slot as usize])
    }

    /// The active job `id`, to change it.
    pub(crate) fn get_mut(&mut self, id: u32) -> Option<&mut Job> {
        self.active
            .get(&id)
            .map(|&slot| &mut self.slots[slot as usize])
    }

    /// The job in `slot` (active, finished or free).
    pub(crate) fn slot_mut(&mut self, slot: Slot) -> &mut Job {
        &mut self.slots[slot as usize]
    }

    /// Active jobs, in no particular order.
    pub(crate) fn active(&self) -> impl Iterator<Item = &Job> {
        self.active.values().map(|&slot| &self.slots[slot as usize])
    }

    /// Calls `f` on every active job.
    pub(crate) fn for_each_active_mut(&mut self, mut f: impl FnMut(&mut Job)) {
        for &slot in self.active.values() {
            f(&mut self.slots[slot as usize]);
        }
    }

    /// Ids of the active jobs for which `keep` is true, in id order.
    pub(crate) fn active_ids(&self, keep: impl Fn(&Job) -> bool) -> Vec<u32> {
        let mut ids: Vec<u32> = self.active().filter(|j| keep(j)).map(|j| j.id).collect();
        ids.sort_unstable();
        ids
    }

    /// Finished jobs, oldest first.
    pub(crate) fn history(&self) -> impl DoubleEndedIterator<Item = &Job> + ExactSizeIterator + '_ {
        self.history.iter().map(|&slot| &self.slots[slot as usize])
    }

    /// Finished jobs with history sequence number `from` or later, oldest first.
    pub(crate) fn history_since(&self, from: u64) -> impl Iterator<Item = &Job> {
        let first = self.pushed - self.history.len() as u64;
        let skip = usize::try_from(from.saturating_sub(first)).unwrap_or(usize::MAX);
        self.history().skip(skip)
    }

    /// The sequence number the next finished job will have.
    pub(crate) fn next_finished(&self) -> u64 {
        self.pushed
    }

    /// How many finished jobs are kept now, and at most.
    pub(crate) fn history_len(&self) -> (usize, usize) {
        (self.history.len(), self.history_limit)
    }

    /// Files a new active job `id` in `state`, started at `now_ms`, with the
    /// file name `file` (lossy UTF-8). Returns its slot, and the slot of the
    /// job the id named until now, if any: that one is no longer active
    /// (its caller ends it).
    pub(crate) fn start(
        &mut self,
        id: u32,
        state: JobState,
        now_ms: u64,
        file: &[u8],
    ) -> (Slot, Option<Slot>) {
        let slot = match self.free.pop() {
            Some(slot) => {
                let job = &mut self.slots[slot as usize];
                let mut name = std::mem::take(&mut job.file);
                if name.capacity() >= KEPT_FILE_BYTES {
                    name = String::new();
                }
                *job = Job::new(id, state, now_ms);
                job.file = name;
                slot
            }
            None => {
                // At most MAX_ACTIVE_JOBS + 1 + MAX_HISTORY slots: fits.
                let slot = self.slots.len() as Slot;
                self.slots.push(Job::new(id, state, now_ms));
                slot
            }
        };
        let name = &mut self.slots[slot as usize].file;
        name.clear();
        match std::str::from_utf8(file) {
            Ok(t) => name.push_str(t),
            Err(_) => name.push_str(&String::from_utf8_lossy(file)),
        }
        (slot, self.active.insert(id, slot))
    }

    /// Takes job `id` out of the active jobs; its slot stays its own until
    /// [`Jobs::retire`].
    pub(crate) fn take(&mut self, id: u32) -> Option<Slot> {
        self.active.remove(&id)
    }

    /// Files the ended job in `slot` (taken out of the active jobs) in the
    /// history; the oldest finished job leaves if the history is full.
    pub(crate) fn retire(&mut self, slot: Slot) {
        if self.history.len() >= self.history_limit {
            if let Some(old) = self.history.pop_front() {
                self.free.push(old);
            }
        }
        self.history.push_back(slot);
        self.pushed += 1;
    }
}
