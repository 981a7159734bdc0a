//! [`Jobs`]: the job table of a [`State`](super::State): active jobs by id
//! in an arena of slots, and the bounded history of finished ones in a ring.
//!
//! A job is written into a slot when it starts and stays there while it is
//! active. When it ends, its record is copied to the end of the history
//! (its file name stays where it was written when the job started, see
//! [`Names`]), and its slot goes straight to the next job that starts. So
//! the slots are as many as the jobs that run at once, and the one a job
//! starts in was in use a moment ago: it is still in the caches. The history is written and dropped in
//! order, which the prefetcher streams. The steady state allocates
//! nothing, and the id index (4 bytes an id, looked up by position:
//! [`JobIndex`]) stays small enough for the caches.

use super::cluster::{EndReason, Job, JobRef, JobState, JobStats};
use super::host_names::{HostNames, NameKey};
use super::hosts::HostSlot;
use super::names::{Name, Names};
use crate::protocol::Language;
use rustc_hash::FxHashMap;
use std::collections::VecDeque;
use std::num::NonZeroU16;

/// The longest history kept, whatever [`StateOptions`](super::StateOptions)
/// asks.
pub const MAX_HISTORY: usize = 1 << 24;

/// The most finished jobs a hold
/// ([`State::hold_history`](super::State::hold_history)) keeps beyond the
/// history's limit: 256 Ki, about 20 MiB, which a database writer far
/// behind takes some seconds to catch up with.
pub const MAX_HOLD: usize = 1 << 18;

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

/// Index of a job in the arena.
pub(crate) type Slot = u32;

/// Slots reserved at the first job (4 MiB of address space).
const SLOTS_RESERVED: usize = 1 << 16;

/// No job (in [`JobIndex`]'s window); never a real slot.
const NO_SLOT: Slot = Slot::MAX;

/// Active job ids → slots. The scheduler numbers jobs with one counter, so
/// the active ones sit among the recent ids: a window of at most
/// [`JobIndex::WINDOW`] ids is looked up by position, and the rest (a job
/// that never ends, an id far from the others) sits in a hash map.
/// Whatever the ids, each message costs a bounded amount of work. No id of
/// the hash map lies in the window.
#[derive(Debug, Default)]
struct JobIndex {
    /// The id of `table[0]`.
    base: u32,
    /// Slots by id - `base`; the window is `table[start..]`, what lies
    /// before `start` has left it (it is cut off now and then).
    table: Vec<Slot>,
    start: usize,
    outside: FxHashMap<u32, Slot>,
    len: usize,
}

impl JobIndex {
    /// The most ids the window covers (256 KiB of slots).
    const WINDOW: usize = 1 << 16;
    /// An id further than this past the window's end goes to the hash map
    /// instead of stretching the window over the ids in between.
    const MAX_GAP: usize = 256;

    /// Where `id` sits in the table, if it falls inside the window.
    fn position(&self, id: u32) -> Option<usize> {
        let at = id.checked_sub(self.base)? as usize;
        (self.start <= at && at < self.table.len()).then_some(at)
    }

    fn get(&self, id: u32) -> Option<Slot> {
        match self.position(id) {
            Some(at) => Some(self.table[at]).filter(|&s| s != NO_SLOT),
            None => self.outside.get(&id).copied(),
        }
    }

    fn insert(&mut self, id: u32, slot: Slot) -> Option<Slot> {
        if self.start == self.table.len() {
            self.table.clear();
            self.start = 0;
            self.base = id;
        }
        let end = u64::from(self.base) + self.table.len() as u64;
        let gap = u64::from(id).checked_sub(end).map(|g| g as usize);
        let old = match (self.position(id), gap) {
            (Some(at), _) => Some(std::mem::replace(&mut self.table[at], slot)),
            (None, Some(gap)) if gap <= Self::MAX_GAP => {
                let first = self.table.len();
                self.table.resize(first + gap + 1, NO_SLOT);
                self.adopt(first);
                let old = std::mem::replace(&mut self.table[first + gap], slot);
                self.slide();
                Some(old)
            }
            (None, _) => self.outside.insert(id, slot),
        };
        let old = old.filter(|&s| s != NO_SLOT);
        self.len += usize::from(old.is_none());
        old
    }

    fn remove(&mut self, id: u32) -> Option<Slot> {
        let old = match self.position(id) {
            Some(at) => Some(std::mem::replace(&mut self.table[at], NO_SLOT)),
            None => self.outside.remove(&id),
        };
        let old = old.filter(|&s| s != NO_SLOT);
        self.len -= usize::from(old.is_some());
        self.trim();
        old
    }

    /// Moves the hash map's entries for the table positions from `first`,
    /// just added to the window, into it.
    fn adopt(&mut self, first: usize) {
        if self.outside.is_empty() {
            return;
        }
        for at in first..self.table.len() {
            let id = self.base.wrapping_add(at as u32);
            if let Some(slot) = self.outside.remove(&id) {
                self.table[at] = slot;
            }
        }
    }

    /// Moves the oldest ids out of a window grown past [`JobIndex::WINDOW`].
    fn slide(&mut self) {
        while self.table.len() - self.start > Self::WINDOW {
            let slot = self.table[self.start];
            if slot != NO_SLOT {
                let id = self.base.wrapping_add(self.start as u32);
                self.outside.insert(id, slot);
            }
            self.start += 1;
        }
        self.trim();
    }

    /// Moves the window's start past ended ids, and now and then cuts off
    /// what lies before it.
    fn trim(&mut self) {
        while self.table.get(self.start) == Some(&NO_SLOT) {
            self.start += 1;
        }
        if self.start >= Self::WINDOW && self.start * 2 >= self.table.len() {
            self.table.drain(..self.start);
            self.base = self.base.wrapping_add(self.start as u32);
            self.start = 0;
        }
    }

    fn slots(&self) -> impl Iterator<Item = Slot> + '_ {
        let window = self.table[self.start..].iter().copied();
        window
            .filter(|&s| s != NO_SLOT)
            .chain(self.outside.values().copied())
    }
}

/// An active job as its slot keeps it: what of a [`Job`] a running job
/// has (no end yet), its file name's place, the counters it raised, and
/// its publishing marks, in one cache line. A job's slot is read or
/// written at each of its messages, and the slots of the jobs in flight
/// are as many as they are: a line a job rather than two keeps half as
/// many bytes in the caches.
#[derive(Clone, Copy, Debug)]
#[repr(align(64))]
pub(crate) struct Active {
    pub(crate) start_ms: u64,
    pub(crate) id: u32,
    pub(crate) name: Name,
    pub(crate) lang: Option<Language>,
    pub(crate) client: Option<u32>,
    pub(crate) server: Option<u32>,
    pub(crate) raised: Raised,
    /// The low 32 bits of the publishing period it last changed in (a job
    /// would have to go unchanged for 2^32 periods, 13 years of 100 ms, to
    /// be taken for one changed in this one).
    pub(crate) gen: u32,
    pub(crate) state: JobState,
}

const _: () = assert!(std::mem::size_of::<Active>() == 64);

impl Active {
    pub(super) fn new(id: u32, state: JobState, now_ms: u64) -> Active {
        Active {
            start_ms: now_ms,
            id,
            name: Name::default(),
            lang: None,
            client: None,
            server: None,
            raised: Raised::default(),
            gen: 0,
            state,
        }
    }

    /// The job as [`State`](super::State) shows it.
    pub(crate) fn job(&self) -> Job {
        Job {
            lang: self.lang,
            client: self.client,
            server: self.server,
            ..Job::new(self.id, self.state, self.start_ms)
        }
    }
}

/// How a job ended: what [`Jobs::retire`] adds to its record.
#[derive(Clone, Copy, Debug)]
pub(crate) struct JobEnd {
    /// Finished, failed, cut short or local finished.
    pub(crate) state: JobState,
    pub(crate) reason: EndReason,
    pub(crate) end_ms: u64,
    pub(crate) exit_code: Option<i32>,
    pub(crate) stats: Option<JobStats>,
    /// The keys of its submitter's and server's names at its end.
    pub(crate) client_name: NameKey,
    pub(crate) server_name: NameKey,
}

/// A finished job as the history keeps it: what a [`Job`] shows, in 80
/// bytes (which optional fields are there as bits). The language is kept
/// in a byte: values past 254, which no compiler has, read back as 255
/// (named `?` as any unknown one).
#[derive(Clone, Copy, Debug)]
struct Retired {
    start_ms: u64,
    end_ms: u64,
    stats: JobStats,
    id: u32,
    client: u32,
    server: u32,
    exit_code: i32,
    name: Name,
    client_name: NameKey,
    server_name: NameKey,
    lang: u8,
    state: JobState,
    reason: EndReason,
    /// Which of the optional fields are there (`Retired::CLIENT`...).
    has: u8,
}

const _: () = assert!(std::mem::size_of::<Retired>() == 80);

impl Retired {
    const CLIENT: u8 = 1;
    const SERVER: u8 = 2;
    const EXIT_CODE: u8 = 4;
    const STATS: u8 = 8;
    const LANG: u8 = 16;

    fn new(job: &Active, end: &JobEnd, name: Name) -> Retired {
        let bit = |present: bool, bit: u8| if present { bit } else { 0 };
        Retired {
            start_ms: job.start_ms,
            end_ms: end.end_ms,
            stats: end.stats.unwrap_or_default(),
            id: job.id,
            client: job.client.unwrap_or(0),
            server: job.server.unwrap_or(0),
            exit_code: end.exit_code.unwrap_or(0),
            name,
            client_name: end.client_name,
            server_name: end.server_name,
            lang: job.lang.map_or(0, |l| u8::try_from(l.0).unwrap_or(u8::MAX)),
            state: end.state,
            reason: end.reason,
            has: bit(job.client.is_some(), Retired::CLIENT)
                | bit(job.server.is_some(), Retired::SERVER)
                | bit(end.exit_code.is_some(), Retired::EXIT_CODE)
                | bit(end.stats.is_some(), Retired::STATS)
                | bit(job.lang.is_some(), Retired::LANG),
        }
    }

    /// The job it keeps (its name apart).
    fn job(&self) -> Job {
        let has = |bit: u8| self.has & bit != 0;
        Job {
            lang: has(Retired::LANG).then_some(Language(u32::from(self.lang))),
            client: has(Retired::CLIENT).then_some(self.client),
            server: has(Retired::SERVER).then_some(self.server),
            end_ms: Some(self.end_ms),
            exit_code: has(Retired::EXIT_CODE).then_some(self.exit_code),
            stats: has(Retired::STATS).then_some(self.stats),
            reason: Some(self.reason),
            ..Job::new(self.id, self.state, self.start_ms)
        }
    }
}

/// Active jobs in an arena, and the history.
#[derive(Debug)]
pub(crate) struct Jobs {
    /// Active jobs, and free slots.
    slots: Vec<Active>,
    /// Active jobs: id → slot.
    active: JobIndex,
    /// Free slots, the last freed on top.
    free: Vec<Slot>,
    /// The file names of the jobs in `slots` and `history`.
    names: Names,
    /// Finished jobs, oldest first.
    history: VecDeque<Retired>,
    /// Jobs ever pushed to the history (the sequence number of the next one).
    pushed: u64,
    /// At most this many finished jobs are kept, but for those held.
    history_limit: usize,
    /// Finished jobs numbered from here on stay (up to [`MAX_HOLD`] past
    /// the limit) until the hold moves past them.
    hold: Option<u64>,
}

impl Jobs {
    /// An empty table that keeps `history_limit` finished jobs (at least 1,
    /// at most [`MAX_HISTORY`]).
    pub(crate) fn new(history_limit: usize) -> Jobs {
        Jobs {
            slots: Vec::new(),
            active: JobIndex::default(),
            free: Vec::new(),
            names: Names::default(),
            history: VecDeque::new(),
            pushed: 0,
            history_limit: history_limit.clamp(1, MAX_HISTORY),
            hold: None,
        }
    }

    /// How many jobs are active.
    pub(crate) fn active_len(&self) -> usize {
        self.active.len
    }

    /// The active job `id`.
    pub(crate) fn get(&self, id: u32) -> Option<&Active> {
        self.active.get(id).map(|slot| &self.slots[slot as usize])
    }

    /// The active job in `slot` with its file name.
    pub(crate) fn lend(&self, slot: Slot) -> JobRef<'_> {
        let job = &self.slots[slot as usize];
        JobRef::new(job.job(), self.names.get(job.name), None)
    }

    /// `done`, of the history, with history sequence number `seq`, its
    /// file name and its hosts' names (from `hosts`).
    fn lend_retired<'a>(&'a self, done: &Retired, seq: u64, hosts: &'a HostNames) -> JobRef<'a> {
        let mut job = JobRef::new(done.job(), self.names.get(done.name), Some(seq));
        job.client_name = hosts.name(done.client_name);
        job.server_name = hosts.name(done.server_name);
        job
    }

    /// The slot of the active job `id`.
    pub(crate) fn slot_of(&self, id: u32) -> Option<Slot> {
        self.active.get(id)
    }

    /// The active job `id`, to change it.
    pub(crate) fn get_mut(&mut self, id: u32) -> Option<&mut Active> {
        self.active
            .get(id)
            .map(|slot| &mut self.slots[slot as usize])
    }

    /// The job in `slot` (active, finished or free).
    pub(crate) fn slot_mut(&mut self, slot: Slot) -> &mut Active {
        &mut self.slots[slot as usize]
    }

    /// Active jobs, in no particular order.
    pub(crate) fn active(&self) -> impl Iterator<Item = &Active> {
        self.active.slots().map(|slot| &self.slots[slot as usize])
    }

    /// Slots of the active jobs, in no particular order.
    pub(crate) fn active_slots(&self) -> impl Iterator<Item = Slot> + '_ {
        self.active.slots()
    }

    /// Ids of the active jobs for which `keep` is true, in id order.
    pub(crate) fn active_ids(&self, keep: impl Fn(&Active) -> bool) -> Vec<u32> {
        let mut ids: Vec<u32> = self.active().filter(|j| keep(j)).map(|j| j.id).collect();
        ids.sort_unstable();
        ids
    }

    /// The newest finished jobs, at most the limit (not those only held),
    /// oldest first, their hosts named from `hosts`.
    pub(crate) fn history<'a>(
        &'a self,
        hosts: &'a HostNames,
    ) -> impl DoubleEndedIterator<Item = JobRef<'a>> + ExactSizeIterator + 'a {
        let held = self.history.len().saturating_sub(self.history_limit);
        let first = self.first_finished() + held as u64;
        self.history
            .range(held..)
            .enumerate()
            .map(move |(i, done)| self.lend_retired(done, first + i as u64, hosts))
    }

    /// The finished jobs with history sequence number `from` or later,
    /// oldest first: of the newest `history_limit`, or also of those held
    /// past it if `held`.
    pub(crate) fn history_since<'a>(
        &'a self,
        from: u64,
        held: bool,
        hosts: &'a HostNames,
    ) -> impl Iterator<Item = JobRef<'a>> + 'a {
        let first = self.first_finished();
        let visible = self.pushed - self.history.len().min(self.history_limit) as u64;
        let from = if held { from } else { from.max(visible) };
        let skip = usize::try_from(from.saturating_sub(first)).unwrap_or(usize::MAX);
        let skip = skip.min(self.history.len());
        self.history
            .range(skip..)
            .enumerate()
            .map(move |(i, done)| self.lend_retired(done, first + (skip + i) as u64, hosts))
    }

    /// The sequence number of the oldest finished job kept.
    pub(crate) fn first_finished(&self) -> u64 {
        self.pushed - self.history.len() as u64
    }

    /// The sequence number the next finished job will have.
    pub(crate) fn next_finished(&self) -> u64 {
        self.pushed
    }

    /// How many finished jobs are kept now, held ones included, and at
    /// most without a hold.
    pub(crate) fn history_len(&self) -> (usize, usize) {
        (self.history.len(), self.history_limit)
    }

    /// Keeps the finished jobs numbered `from` on (`None`: none) past the
    /// limit, up to [`MAX_HOLD`] more, for a reader that must see every
    /// one; what the hold no longer covers goes.
    pub(crate) fn hold(&mut self, from: Option<u64>) {
        self.hold = from;
        while self.history.len() > self.history_limit && !self.holds_oldest() {
            self.drop_oldest();
        }
        if self.hold.is_none() && self.history.capacity() > 2 * self.history_limit.max(64) {
            self.history.shrink_to(self.history_limit);
        }
    }

    /// Whether the oldest finished job kept is held, and may stay.
    fn holds_oldest(&self) -> bool {
        self.hold.is_some_and(|from| from <= self.first_finished())
            && self.history.len() < self.history_limit + MAX_HOLD
    }

    fn drop_oldest(&mut self) {
        if let Some(old) = self.history.pop_front() {
            self.names.release(old.name);
        }
    }

    /// Files a new active job `id` in `state`, started at `now_ms`, with the
    /// file name `file`. Returns its slot, and the slot of the
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
                self.slots[slot as usize] = Active::new(id, state, now_ms);
                slot
            }
            None => {
                if self.slots.len() == self.slots.capacity() {
                    // An over-aligned vector grows by copying into new
                    // memory; room for many slots at once is only address
                    // space, and its pages are touched as slots are used.
                    let more = self.slots.len().max(SLOTS_RESERVED);
                    self.slots.reserve_exact(more);
                }
                // At most MAX_ACTIVE_JOBS + 1 slots: fits.
                let slot = self.slots.len() as Slot;
                self.slots.push(Active::new(id, state, now_ms));
                slot
            }
        };
        if self.names.wants_compaction() {
            let active = self.slots.iter_mut().map(|job| &mut job.name);
            let done = self.history.iter_mut().map(|done| &mut done.name);
            self.names.compact(active.chain(done));
        }
        let name = self.names.add(file);
        let job = &mut self.slots[slot as usize];
        job.name = name;
        (slot, self.active.insert(id, slot))
    }

    /// Takes job `id` out of the active jobs; its slot stays its own until
    /// [`Jobs::retire`].
    pub(crate) fn take(&mut self, id: u32) -> Option<Slot> {
        self.active.remove(id)
    }

    /// Files the job in `slot` (taken out of the active jobs), `end`, in
    /// the history, and frees the slot; the oldest finished job leaves if
    /// the history is full.
    pub(crate) fn retire(&mut self, slot: Slot, end: JobEnd) {
        if self.history.len() >= self.history_limit && !self.holds_oldest() {
            self.drop_oldest();
        } else if self.history.len() == self.history.capacity() {
            // Grown to the limit exactly, not to the next power of two,
            // which the ring would then fill; past it (held) in steps.
            let limit = if self.history.len() < self.history_limit {
                self.history_limit
            } else {
                self.history_limit + MAX_HOLD
            };
            let want = (self.history.len() * 2).max(64).min(limit);
            self.history.reserve_exact(want - self.history.len());
        }
        let job = &mut self.slots[slot as usize];
        let name = std::mem::take(&mut job.name);
        let done = Retired::new(job, &end, name);
        self.history.push_back(done);
        self.free.push(slot);
        self.pushed += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::{Active, JobEnd, JobIndex, Jobs, Retired, Slot};
    use crate::monitor::cluster::EndReason;
    use crate::monitor::cluster::{Job, JobState, JobStats};
    use crate::monitor::host_names::HostNames;
    use crate::monitor::names::Name;
    use crate::protocol::Language;
    use proptest::prelude::*;
    use std::collections::HashMap;

    /// Checks `index` against `model`, the map it must behave as.
    fn agree(index: &JobIndex, model: &HashMap<u32, Slot>, ids: &[u32]) {
        assert_eq!(index.len, model.len());
        for id in ids {
            assert_eq!(index.get(*id), model.get(id).copied(), "id {id}");
        }
        let mut got: Vec<Slot> = index.slots().collect();
        let mut want: Vec<Slot> = model.values().copied().collect();
        got.sort_unstable();
        want.sort_unstable();
        assert_eq!(got, want);
        let window = &index.table[index.start..];
        assert!(window.len() <= JobIndex::WINDOW);
        assert_ne!(window.first(), Some(&super::NO_SLOT));
        assert!(index.table.len() <= 2 * JobIndex::WINDOW + JobIndex::MAX_GAP + 1);
    }

    fn id() -> impl Strategy<Value = u32> {
        prop_oneof![0u32..600, (u32::MAX - 300)..=u32::MAX, any::<u32>(),]
    }

    fn state() -> impl Strategy<Value = JobState> {
        prop_oneof![
            Just(JobState::Finished),
            Just(JobState::Failed),
            Just(JobState::CutShort),
            Just(JobState::LocalFinished),
        ]
    }

    fn reason() -> impl Strategy<Value = EndReason> {
        proptest::sample::select(&EndReason::ALL[..])
    }

    proptest! {
        /// The history's record gives back every field a finished job shows,
        /// whichever are there.
        #[test]
        fn a_finished_job_reads_back_from_its_history_record(
            id in any::<u32>(),
            state in state(),
            reason in reason(),
            hosts in (any::<Option<u32>>(), any::<Option<u32>>()),
            times in (any::<u64>(), any::<u64>()),
            exit_code in any::<Option<i32>>(),
            lang in proptest::option::of(0u32..255),
            stats in any::<Option<[u32; 8]>>(),
        ) {
            let mut active = Active::new(id, JobState::Compiling, times.0);
            (active.client, active.server) = hosts;
            active.lang = lang.map(Language);
            let end = JobEnd {
                state,
                reason,
                end_ms: times.1,
                exit_code,
                stats: stats.map(JobStats::from),
                client_name: 0,
                server_name: 0,
            };
            let want = Job {
                id,
                lang: active.lang,
                client: hosts.0,
                server: hosts.1,
                state,
                start_ms: times.0,
                end_ms: Some(times.1),
                exit_code,
                stats: end.stats,
                reason: Some(reason),
            };
            prop_assert_eq!(Retired::new(&active, &end, Name::default()).job(), want);
        }

        #[test]
        fn the_index_behaves_as_a_map_whatever_the_ids(
            ops in proptest::collection::vec((any::<bool>(), id()), 1..400)
        ) {
            let mut index = JobIndex::default();
            let mut model = HashMap::new();
            let mut ids = Vec::new();
            for (n, (insert, id)) in ops.into_iter().enumerate() {
                ids.push(id);
                if insert {
                    let slot = n as Slot;
                    prop_assert_eq!(index.insert(id, slot), model.insert(id, slot));
                } else {
                    prop_assert_eq!(index.remove(id), model.remove(&id));
                }
                agree(&index, &model, &ids);
            }
        }
    }

    /// The end of a job the compiler finished with exit code 0.
    fn exited() -> JobEnd {
        JobEnd {
            state: JobState::Finished,
            reason: EndReason::Exit,
            end_ms: 1,
            exit_code: Some(0),
            stats: None,
            client_name: 0,
            server_name: 0,
        }
    }

    #[test]
    fn names_read_back_when_long_jobs_make_their_chunks_compact() {
        // 20 jobs in flight, each ending 20 jobs after it started, but one
        // in 50 never ends: their names, one every few kilobytes, would
        // keep every chunk but for compaction.
        let name = |id: u32| format!("src/dir{id}/{}.cpp", "x".repeat(80 + id as usize % 40));
        let mut jobs = Jobs::new(300);
        for id in 0..20_000u32 {
            jobs.start(id, JobState::Compiling, 0, name(id).as_bytes());
            let Some(old) = id.checked_sub(20).filter(|old| old % 50 != 0) else {
                continue;
            };
            let slot = jobs.take(old).expect("active");
            jobs.retire(slot, exited());
        }
        let mut live = 0;
        for job in jobs
            .active_slots()
            .map(|s| jobs.lend(s))
            .chain(jobs.history(&HostNames::default()))
        {
            assert_eq!(job.file(), name(job.id));
            live += job.file_bytes().len();
        }
        assert_eq!(jobs.history(&HostNames::default()).len(), 300);
        let (counted, held) = jobs.names.usage();
        assert_eq!(counted, live);
        assert!(held <= 2 * live + 5 * 64 * 1024, "{held} held for {live}");
    }

    #[test]
    fn a_job_that_never_ends_leaves_the_window_for_the_hash_map() {
        let mut index = JobIndex::default();
        let mut model = HashMap::new();
        index.insert(1, 0);
        model.insert(1, 0);
        for id in 2..(3 * JobIndex::WINDOW as u32) {
            index.insert(id, id);
            model.insert(id, id);
            if id > 2 {
                index.remove(id - 1);
                model.remove(&(id - 1));
            }
        }
        assert_eq!(index.outside.len(), 1, "only the stuck job is hashed");
        agree(&index, &model, &[1, 2, 3 * JobIndex::WINDOW as u32 - 1]);
        assert!(index.table.len() - index.start <= 2);
    }

    #[test]
    fn a_hold_keeps_finished_jobs_past_the_limit_up_to_its_bound() {
        let mut jobs = Jobs::new(10);
        let finish = |jobs: &mut Jobs, id: u32| {
            let (slot, _) = jobs.start(id, JobState::Compiling, 0, format!("{id}.c").as_bytes());
            jobs.take(id);
            jobs.retire(slot, exited());
        };
        let hosts = HostNames::default();
        jobs.hold(Some(0));
        for id in 0..100 {
            finish(&mut jobs, id);
        }
        assert_eq!(jobs.history_len().0, 100, "all held");
        let newest: Vec<u32> = jobs.history(&hosts).map(|j| j.id).collect();
        assert_eq!(newest, (90..100).collect::<Vec<_>>(), "the limit's newest");
        let held: Vec<String> = jobs
            .history_since(0, true, &hosts)
            .map(|j| j.file().into())
            .collect();
        assert_eq!(held.len(), 100);
        let seen: Vec<u32> = jobs.history_since(0, false, &hosts).map(|j| j.id).collect();
        assert_eq!(seen, newest, "other readers see the limit's newest only");
        assert_eq!((held[0].as_str(), held[99].as_str()), ("0.c", "99.c"));

        // Moving the hold lets go of what it passed, down to the limit.
        jobs.hold(Some(50));
        assert_eq!(jobs.first_finished(), 50);
        jobs.hold(Some(95));
        assert_eq!(jobs.first_finished(), 90, "never below the limit");

        // Past the bound, the oldest go even though held.
        jobs.hold(Some(jobs.next_finished()));
        for id in 100..(100 + super::MAX_HOLD as u32 + 20) {
            finish(&mut jobs, id);
        }
        assert_eq!(jobs.history_len().0, 10 + super::MAX_HOLD);
        jobs.hold(None);
        assert_eq!(jobs.history_len().0, 10, "released");
        assert!(jobs.history.capacity() < 1000, "its room given back");
    }
}
