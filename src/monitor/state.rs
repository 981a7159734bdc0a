//! [`State`]: the live picture of a cluster, built by applying decoded
//! scheduler messages one by one. Pure data: no I/O, no clock of its own
//! (every call that can change time-based numbers takes `now_ms`).
//!
//! The counting is [`Book`]'s (`book.rs`), the hosts' table [`Hosts`]'
//! (`hosts.rs`), the jobs' [`Jobs`] (`jobs.rs`); this file holds what each
//! message does to them.

use super::book::Book;
use super::cluster::{
    EndReason, Host, JobRef, JobState, JobStats, Replay, SchedulerStatus, Totals,
};
use super::feed::{Changes, Entry, Follower};
use super::host_names::{HostNames, NO_NAME};
use super::hosts::HostSlot;
use super::jobs::{Active, JobEnd, Jobs, Slot};
use super::rate::RateWindow;
use super::serving::Serving;
use crate::protocol::stats::HostStats;
use crate::protocol::{JobDone, Language, Message};
use rustc_hash::{FxHashMap, FxHashSet};
use std::collections::VecDeque;

/// How many offline hosts are kept (shown as offline) before the oldest go.
pub const OFFLINE_HOST_LIMIT: usize = 1024;

/// Jobs ended early whose end report is still expected; past this
/// the set starts over (a report then merely counts as an unknown job).
const ENDED_EARLY_LIMIT: usize = 1 << 16;

/// Hosts named by jobs before they were announced that are remembered; a
/// stream naming more is odd, and the names of its jobs may show up late.
const NAMED_UNKNOWN_LIMIT: usize = 1 << 12;

/// How often [`State::tick`] looks for jobs past the stale limit.
const STALE_CHECK_MS: u64 = 10_000;

/// At most this many active jobs: past it, the oldest eighth ends as stale
/// (a real cluster never comes near; a broken stream could).
pub const MAX_ACTIVE_JOBS: usize = 1 << 18;
/// At most this many hosts; a scheduler announcing more is not believed.
/// (One less than 2^16, so that a job's record can name a host's slot, or
/// none, in two bytes.)
pub const MAX_HOSTS: usize = (1 << 16) - 1;

/// Options of a [`State`].
#[derive(Clone, Debug)]
pub struct StateOptions {
    /// How many finished jobs the history keeps (at least 1, at most
    /// [`MAX_HISTORY`](super::MAX_HISTORY); default 10,000).
    pub history_limit: usize,
    /// A job waiting, compiling or running locally for longer than this
    /// (ms) ends as stale: its end was lost (default one hour; `u64::MAX`:
    /// never).
    pub stale_after_ms: u64,
}

impl Default for StateOptions {
    fn default() -> Self {
        StateOptions {
            history_limit: 10_000,
            stale_after_ms: 3_600_000,
        }
    }
}

/// The live state of one cluster, fed message by message.
///
/// ```
/// use icewatch::monitor::{State, StateOptions};
/// use icewatch::protocol::{Message, MonStats};
///
/// let mut state = State::new(StateOptions::default());
/// state.scheduler_connected("127.0.0.1:8765".into(), 43, 0);
/// let text = b"Name:remote1\nIP:10.0.0.2\nMaxJobs:4\nNoRemote:false\n";
/// state.apply(&Message::MonStats(MonStats { host_id: 7, text }), 1);
/// assert_eq!(state.totals().total_slots, 4);
/// let snapshot = serde_json::to_value(state.snapshot()).unwrap();
/// assert_eq!(snapshot["hosts"][0]["name"], "remote1");
/// ```
#[derive(Debug)]
pub struct State {
    scheduler: SchedulerStatus,
    book: Book,
    /// Active jobs and the history.
    jobs: Jobs,
    /// Offline hosts, oldest first (may name hosts since back online or gone).
    offline: VecDeque<u32>,
    /// Jobs ended because their host left: the scheduler's reports of
    /// their end (exit code 255, or a local job's end) are expected, not
    /// unknown.
    ended_early: FxHashSet<u32>,
    /// Every host name seen, with the counters of hosts that left.
    host_names: HostNames,
    /// By host slot, the remote jobs compiling there in the order they began.
    serving: Serving,
    /// Ids of hosts that jobs named before the host was announced (at most
    /// [`NAMED_UNKNOWN_LIMIT`]): when one is, those jobs show its name.
    named_unknown: FxHashSet<u32>,
    rate: RateWindow,
    clock_ms: u64,
    messages: u64,
    /// Changes made otherwise than by a message (see [`State::revision`]).
    other_changes: u64,
    /// Hosts that got a name (or another) after jobs named them.
    renames: u64,
    sessions: u64,
    /// The history sequence number of the first job of each scheduler
    /// session still in the history, with the session's number.
    session_starts: VecDeque<(u64, u32)>,
    stale_after_ms: u64,
    /// When [`State::tick`] next looks for stale jobs.
    next_stale_check_ms: u64,
}

impl State {
    /// An empty state: no scheduler, no hosts.
    pub fn new(opts: StateOptions) -> State {
        State {
            scheduler: SchedulerStatus::default(),
            book: Book::default(),
            jobs: Jobs::new(opts.history_limit),
            offline: VecDeque::new(),
            ended_early: FxHashSet::default(),
            host_names: HostNames::default(),
            serving: Serving::default(),
            named_unknown: FxHashSet::default(),
            rate: RateWindow::new(),
            clock_ms: 0,
            messages: 0,
            other_changes: 0,
            renames: 0,
            sessions: 0,
            session_starts: VecDeque::new(),
            stale_after_ms: opts.stale_after_ms,
            next_stale_check_ms: 0,
        }
    }

    /// Applies one message from the scheduler, received at `now_ms`.
    ///
    /// Messages a monitor does not use (PING, END, unknown types) only count
    /// in [`State::messages`]; messages about unknown jobs or hosts are
    /// tolerated and counted in [`Totals`].
    pub fn apply(&mut self, msg: &Message<'_>, now_ms: u64) {
        self.messages += 1;
        self.advance_clock(now_ms);
        match msg {
            Message::MonStats(m) => self.host_stats(m.host_id, &m.stats()),
            Message::MonGetCs(m) => {
                self.job_requested(m.job_id, m.client_id, m.request.filename, m.request.lang)
            }
            Message::MonJobBegin(m) => self.job_begun(m.job_id, m.host_id),
            Message::MonJobDone(d) | Message::JobDone(d) => self.job_done(d),
            Message::MonLocalJobBegin(m) => self.local_job_begun(m.job_id, m.host_id, m.file),
            Message::JobLocalDone(m) => self.local_job_done(m.job_id),
            _ => {}
        }
    }

    /// Counts a message whose body did not decode (the connection skips it).
    pub fn invalid_message(&mut self) {
        self.messages += 1;
        self.book.counts.invalid_messages += 1;
    }

    /// A new session with the scheduler at `address` is up, at `protocol`.
    ///
    /// The scheduler is about to send MON_STATS for every host, under ids
    /// that may have named other hosts before, so the old session's hosts,
    /// jobs and links go (jobs still active end as if the connection was
    /// lost). What stays: the history, the counters that count over time,
    /// and each host's counters under its name, for the host that logs in
    /// again under that name to go on from.
    pub fn scheduler_connected(&mut self, address: String, protocol: u32, now_ms: u64) {
        self.other_changes += 1;
        self.advance_clock(now_ms);
        self.end_all();
        for h in self.book.hosts.iter() {
            self.host_names.carry(h.key, h.tally());
        }
        self.book.feed.record(Entry::Session);
        self.book.hosts.clear();
        self.serving.clear();
        self.book.counts.new_session();
        self.offline.clear();
        self.ended_early.clear();
        self.named_unknown.clear();
        if self.sessions > 0 {
            self.scheduler.reconnects += 1;
        }
        self.sessions += 1;
        let first = self.jobs.next_finished();
        self.session_starts.push_back((first, self.session()));
        let kept = self.jobs.first_finished();
        while self.session_starts.get(1).is_some_and(|&(s, _)| s <= kept) {
            self.session_starts.pop_front();
        }
        self.scheduler.address = address;
        self.scheduler.protocol = Some(protocol);
        self.scheduler.online = true;
        self.scheduler.since_ms = Some(now_ms);
        self.scheduler.error = None;
    }

    /// The session ended (or an attempt failed) because of `error`: hosts are
    /// shown offline and active jobs end with an unknown outcome.
    pub fn scheduler_lost(&mut self, error: String, now_ms: u64) {
        self.other_changes += 1;
        self.advance_clock(now_ms);
        self.end_all();
        let online: Vec<u32> = self
            .book
            .hosts
            .iter()
            .filter(|h| h.online)
            .map(|h| h.id)
            .collect();
        for id in online {
            self.host_gone(id);
        }
        let s = &mut self.scheduler;
        if s.online || s.since_ms.is_none() {
            s.since_ms = Some(now_ms);
        }
        if s.online || s.error.as_deref() != Some(error.as_str()) {
            s.online = false;
            s.error = Some(error);
        }
    }

    /// Sets the scheduler address shown before a session is up (after
    /// discovery, or while attempts fail).
    pub fn scheduler_address(&mut self, address: &str) {
        if self.scheduler.address != address {
            self.scheduler.address = address.to_owned();
            self.other_changes += 1;
        }
    }

    /// Marks the stream as a recording played back (`None`: live).
    pub fn set_replay(&mut self, replay: Option<Replay>) {
        if self.scheduler.replay != replay {
            self.scheduler.replay = replay;
            self.other_changes += 1;
        }
    }

    /// The current scheduler session's number (1 for the first; 0 before
    /// any).
    pub fn session(&self) -> u32 {
        u32::try_from(self.sessions).unwrap_or(u32::MAX)
    }

    /// Moves the clock on without a message, and now and then ends the
    /// jobs that have run for longer than the stale limit; true if that
    /// changed anything (jobs per minute decays while nothing ends).
    pub fn tick(&mut self, now_ms: u64) -> bool {
        let mut changed = self.advance_clock(now_ms);
        if self.clock_ms >= self.next_stale_check_ms {
            self.next_stale_check_ms = self.clock_ms.saturating_add(STALE_CHECK_MS);
            let limit = self.clock_ms.saturating_sub(self.stale_after_ms);
            if self.stale_after_ms < self.clock_ms {
                for id in self.jobs.active_ids(|j| j.start_ms < limit) {
                    if let Some(slot) = self.jobs.take(id) {
                        self.finish(slot, EndReason::Stale);
                        changed = true;
                    }
                }
            }
        }
        self.other_changes += u64::from(changed);
        changed
    }

    /// A number that grows with every change of what the state shows, so
    /// that two looks at the same revision see the same state.
    pub fn revision(&self) -> u64 {
        self.messages + self.other_changes
    }

    /// A number that grows when a host gets a name (or another) after
    /// active jobs named it: those jobs, recorded as changed, then show
    /// other `client_name`s or `server_name`s than a reader may have seen.
    pub fn names_revision(&self) -> u64 {
        self.renames
    }

    /// Moves the clock to `now_ms` (never back); true if that changed the
    /// jobs per minute.
    fn advance_clock(&mut self, now_ms: u64) -> bool {
        self.clock_ms = self.clock_ms.max(now_ms);
        self.rate.advance(self.clock_ms)
    }

    /// A new reader of the changes, from now on: read the state (a
    /// snapshot) under the same lock, then take what changes after it with
    /// [`State::changes`]. Give it back with [`State::unfollow`]: a reader
    /// that is kept but never reads makes every reader re-read the state
    /// once the feed is full (see [`feed`](super::feed)).
    pub fn follow(&mut self) -> Follower {
        self.book.feed.follow(self.jobs.next_finished())
    }

    /// What changed since `reader` last looked (or began to follow).
    pub fn changes(&mut self, reader: &mut Follower) -> Changes {
        self.book.feed.take(reader, self.jobs.next_finished())
    }

    /// `reader` stops following.
    pub fn unfollow(&mut self, reader: Follower) {
        self.book.feed.unfollow(reader);
    }

    /// Whether anyone follows the changes.
    pub fn followed(&self) -> bool {
        self.book.feed.followed()
    }

    /// Every host, online or recently offline, in no particular order.
    pub fn hosts(&self) -> impl Iterator<Item = &Host> {
        self.book.hosts.iter()
    }

    /// One host.
    pub fn host(&self, id: u32) -> Option<&Host> {
        self.book.hosts.get(id)
    }

    /// Active jobs (waiting, compiling, local), in no particular order.
    pub fn jobs(&self) -> impl Iterator<Item = JobRef<'_>> {
        self.jobs.active_slots().map(|slot| self.lend(slot))
    }

    /// One active job.
    pub fn job(&self, id: u32) -> Option<JobRef<'_>> {
        self.jobs.slot_of(id).map(|slot| self.lend(slot))
    }

    /// Finished jobs, oldest first, at most `history_limit` (the newest:
    /// not those kept only for a [hold](State::hold_history)).
    pub fn history(&self) -> impl DoubleEndedIterator<Item = JobRef<'_>> + ExactSizeIterator {
        self.jobs
            .history(&self.host_names)
            .map(|job| self.in_session(job))
    }

    /// The active job in `slot`, its hosts named as they are now.
    fn lend(&self, slot: Slot) -> JobRef<'_> {
        let mut job = self.jobs.lend(slot);
        let name = |id: Option<u32>| {
            let host = self.book.hosts.get(id?)?;
            Some(&*host.name).filter(|n| !n.is_empty())
        };
        job.client_name = name(job.client);
        job.server_name = name(job.server);
        job.session = self.session();
        job
    }

    /// `job`, finished, with the number of the session it belongs to.
    fn in_session<'a>(&self, mut job: JobRef<'a>) -> JobRef<'a> {
        if let Some(seq) = job.seq {
            let at = self
                .session_starts
                .partition_point(|&(first, _)| first <= seq);
            job.session = at
                .checked_sub(1)
                .and_then(|at| self.session_starts.get(at))
                .map_or(0, |&(_, session)| session);
        }
        job
    }

    /// Links: `(submitter, server)` → remote jobs compiling, only non-zero,
    /// in no particular order. Counted from the active jobs on each call.
    pub fn links(&self) -> impl Iterator<Item = ((u32, u32), u32)> + '_ {
        self.link_counts().into_iter()
    }

    /// Active jobs on the link `from` → `to` (0 if none). Counted from the
    /// active jobs on each call.
    pub fn link(&self, from: u32, to: u32) -> u32 {
        let on = |j: &&Active| self.link_of(j) == Some((from, to));
        self.jobs.active().filter(on).count() as u32
    }

    /// Remote jobs compiling on each link.
    pub fn link_counts(&self) -> FxHashMap<(u32, u32), u32> {
        let mut counts = FxHashMap::default();
        for key in self.jobs.active().filter_map(|j| self.link_of(j)) {
            *counts.entry(key).or_insert(0) += 1;
        }
        counts
    }

    /// The link `job` counts on: a remote job compiling on a known server
    /// for a known submitter.
    fn link_of(&self, job: &Active) -> Option<(u32, u32)> {
        let counted = job.state == JobState::Compiling && job.raised.server_active.is_some();
        let (from, to) = (job.client?, job.server?);
        (counted && self.book.hosts.contains(from)).then_some((from, to))
    }

    /// Cluster totals at the latest time seen.
    pub fn totals(&self) -> Totals {
        let c = &self.book.counts;
        let ended = c.jobs_finished + c.jobs_failed;
        Totals {
            hosts_online: c.hosts_online,
            total_slots: c.total_slots,
            busy_slots: c.busy,
            active: c.compiling + c.local_active,
            pending: c.pending,
            local_active: c.local_active,
            jobs_finished: c.jobs_finished,
            jobs_failed: c.jobs_failed,
            jobs_cut_short: c.jobs_cut_short,
            local_jobs_finished: c.local_jobs_finished,
            jobs_per_minute: self.rate.per_minute(self.clock_ms) as f64,
            success_ratio: (ended > 0).then(|| c.jobs_finished as f64 / ended as f64),
            unknown_jobs: c.unknown_jobs,
            unknown_hosts: c.unknown_hosts,
            invalid_messages: c.invalid_messages,
        }
    }

    /// The scheduler connection.
    pub fn scheduler(&self) -> &SchedulerStatus {
        &self.scheduler
    }

    /// Messages applied since the state was made (all sessions).
    pub fn messages(&self) -> u64 {
        self.messages
    }

    /// The latest time seen, ms since the epoch.
    pub fn clock_ms(&self) -> u64 {
        self.clock_ms
    }

    /// Keeps the finished jobs with history sequence number `from` or
    /// later (`None`: none) in the history past `history_limit`, up to
    /// [`MAX_HOLD`](super::MAX_HOLD) more, until a later call moves the
    /// hold: for one reader that must not miss a job a burst would push
    /// out (the history database). [`State::held_since`] reads them.
    pub fn hold_history(&mut self, from: Option<u64>) {
        self.jobs.hold(from);
    }

    /// The history sequence number of the oldest finished job kept.
    pub fn first_finished(&self) -> u64 {
        self.jobs.first_finished()
    }

    /// The history sequence number the next finished job will have.
    pub fn next_finished(&self) -> u64 {
        self.jobs.next_finished()
    }

    /// Finished jobs with history sequence number `from` or later, oldest
    /// first, of the newest `history_limit` (as [`State::history`]).
    pub fn history_since(&self, from: u64) -> impl Iterator<Item = JobRef<'_>> {
        self.jobs
            .history_since(from, false, &self.host_names)
            .map(|job| self.in_session(job))
    }

    /// [`State::history_since`], and the jobs held past `history_limit`
    /// ([`State::hold_history`]): for the hold's reader.
    pub fn held_since(&self, from: u64) -> impl Iterator<Item = JobRef<'_>> {
        self.jobs
            .history_since(from, true, &self.host_names)
            .map(|job| self.in_session(job))
    }

    // ---- messages ----

    fn host_stats(&mut self, id: u32, stats: &HostStats<'_>) {
        let slot = self.book.hosts.slot(id);
        if stats.offline {
            if slot.is_some() {
                self.host_gone(id);
            } else {
                self.book.counts.unknown_hosts += 1;
            }
            return;
        }
        let slot = match slot {
            Some(slot) => {
                self.book.set_slot_online(slot, true);
                slot
            }
            None if self.book.hosts.len() >= MAX_HOSTS => {
                self.book.counts.unknown_hosts += 1;
                return;
            }
            None => {
                let (name, ip) = (stats.name.unwrap_or(b""), stats.ip.unwrap_or(b""));
                self.forget_offline_twins(id, name, ip);
                let slot = self.book.hosts.insert(Host::new(id));
                self.serving.reset(slot);
                self.book.touch_slot(slot);
                self.book.counts.hosts_online += 1;
                slot
            }
        };
        let epoch = self.book.feed.epoch();
        let h = &mut self.book.hosts.slab[usize::from(slot)];
        let old_slots = u64::from(h.max_jobs);
        let renamed = stats.name.is_some_and(|n| n != h.name.as_bytes());
        if h.update(stats) {
            let new_slots = u64::from(h.max_jobs);
            if h.gen != epoch {
                h.gen = epoch;
                self.book.feed.record(Entry::Host(id));
            }
            let c = &mut self.book.counts;
            c.total_slots = (c.total_slots + new_slots).saturating_sub(old_slots);
        }
        if renamed {
            self.name_host(slot);
        }
    }

    /// Gives the host in `slot` the key of its (new) name; a host named for
    /// the first time goes on from the counters a host of that name left.
    /// Its active jobs, which show its name, are recorded as changed, under
    /// a new [`State::names_revision`].
    fn name_host(&mut self, slot: HostSlot) {
        let h = &mut self.book.hosts.slab[usize::from(slot)];
        let key = self.host_names.key(&h.name);
        let first = h.key == NO_NAME;
        h.key = key;
        if first {
            if let Some(tally) = self.host_names.take_carried(key) {
                h.add_tally(tally);
            }
        }
        let id = h.id;
        // Only jobs that named the host before it was known, or a host
        // renamed (which real schedulers never do), show another name now.
        if first && !self.named_unknown.remove(&id) {
            return;
        }
        for job in self
            .jobs
            .active_ids(|j| j.client == Some(id) || j.server == Some(id))
        {
            if let Some(job) = self.jobs.get_mut(job) {
                self.book.touch_job(job);
            }
        }
        self.renames += 1;
    }

    /// A daemon that logs in again gets a new id: drop its old offline entry.
    /// Only the offline hosts are looked at (at most [`OFFLINE_HOST_LIMIT`]),
    /// however many are online.
    fn forget_offline_twins(&mut self, id: u32, name: &[u8], ip: &[u8]) {
        let hosts = &self.book.hosts;
        let mut twins: Vec<u32> = self
            .offline
            .iter()
            .copied()
            .filter(|&o| {
                o != id
                    && hosts.get(o).is_some_and(|h| {
                        !h.online && h.name.as_bytes() == name && h.ip.as_bytes() == ip
                    })
            })
            .collect();
        twins.sort_unstable();
        twins.dedup();
        for twin in twins {
            self.remove_host(twin);
        }
    }

    /// Drops a host. Jobs that still name it (only odd streams start jobs
    /// on an offline host) are counted again without it.
    fn remove_host(&mut self, id: u32) {
        let naming = self
            .jobs
            .active_ids(|j| j.client == Some(id) || j.server == Some(id));
        for &job_id in &naming {
            if let Some(job) = self.jobs.get_mut(job_id) {
                self.book.leave(job);
            }
        }
        if let Some(h) = self.book.hosts.remove(id) {
            self.host_names.carry(h.key, h.tally());
            if h.online {
                let c = &mut self.book.counts;
                c.hosts_online = c.hosts_online.saturating_sub(1);
                c.total_slots = c.total_slots.saturating_sub(u64::from(h.max_jobs));
            }
        }
        self.book.feed.record(Entry::Host(id));
        for &job_id in &naming {
            if let Some(job) = self.jobs.get_mut(job_id) {
                self.book.enter(job);
            }
        }
        // Those jobs show no name for it now, and its name again if a host
        // comes under its id.
        if !naming.is_empty() {
            self.renames += 1;
            if self.named_unknown.len() < NAMED_UNKNOWN_LIMIT {
                self.named_unknown.insert(id);
            }
        }
    }

    /// The host left: it goes offline and every job on it or from it ends,
    /// as the scheduler ends them (exit code 255 for remote jobs), cut short.
    fn host_gone(&mut self, id: u32) {
        let ending = self
            .jobs
            .active_ids(|j| j.server == Some(id) || j.client == Some(id));
        for job_id in ending {
            let Some(slot) = self.jobs.take(job_id) else {
                continue;
            };
            if self.ended_early.len() >= ENDED_EARLY_LIMIT {
                self.ended_early.clear();
            }
            self.ended_early.insert(job_id);
            self.finish(slot, EndReason::HostLeft);
        }
        if self.book.hosts.get(id).is_some_and(|h| h.online) {
            self.book.set_online(id, false);
            self.offline.push_back(id);
        }
        while self.offline.len() > OFFLINE_HOST_LIMIT {
            if let Some(old) = self.offline.pop_front() {
                if self.book.hosts.get(old).is_some_and(|h| !h.online) {
                    self.remove_host(old);
                }
            }
        }
    }

    fn job_requested(&mut self, id: u32, client: u32, file: &[u8], lang: Language) {
        let slot = self.start(id, JobState::Waiting, file);
        let job = self.jobs.slot_mut(slot);
        job.lang = Some(lang);
        job.client = Some(client);
        match self.book.touch_host(client) {
            Some(h) => h.submitted += 1,
            None => note_unknown(&mut self.book, &mut self.named_unknown, client),
        }
        self.book.enter(job);
    }

    /// Files a new active job, not yet counted (the caller sets it up, then
    /// lets the book count it); one already under its id (the scheduler
    /// never reuses an id within a session) ends as stale.
    fn start(&mut self, id: u32, state: JobState, file: &[u8]) -> Slot {
        if self.jobs.active_len() >= MAX_ACTIVE_JOBS && self.jobs.get(id).is_none() {
            let mut ids = self.jobs.active_ids(|_| true);
            ids.truncate(ids.len() / 8);
            for old in ids {
                if let Some(slot) = self.jobs.take(old) {
                    self.finish(slot, EndReason::Stale);
                }
            }
        }
        let (slot, displaced) = self.jobs.start(id, state, self.clock_ms, file);
        if let Some(old) = displaced {
            self.book.counts.unknown_jobs += 1;
            self.finish(old, EndReason::Stale);
        }
        slot
    }

    /// Job `id` began compiling on `server`: it counts in the submitter's
    /// OUT and the server's IN once, however often its begin is repeated.
    /// If the server now has more remote jobs than slots, the oldest of
    /// them cannot still be running (its end was lost): it ends as stale.
    fn job_begun(&mut self, id: u32, server: u32) {
        let now = self.clock_ms;
        // The submitter's slot, if it counts the job as waiting: found
        // without a lookup.
        let mut client_slot = None;
        let (job, fresh) = match self.jobs.get_mut(id) {
            Some(job) => {
                let fresh = job.state != JobState::Compiling;
                client_slot = job.raised.client_pending();
                self.book.leave(job);
                job.state = JobState::Compiling;
                job.start_ms = now;
                (job, fresh)
            }
            None => {
                self.book.counts.unknown_jobs += 1;
                let slot = self.start(id, JobState::Compiling, b"");
                (self.jobs.slot_mut(slot), true)
            }
        };
        job.server = Some(server);
        self.book.enter(job);
        let client = job.client;
        let Some(at) = job.raised.server_active() else {
            note_unknown(&mut self.book, &mut self.named_unknown, server);
            return;
        };
        if fresh {
            let h = self.book.touch_slot(at);
            h.jobs_in += 1;
            if client == Some(server) {
                h.jobs_in_own += 1;
            }
            let client_slot = client_slot.or_else(|| client.and_then(|c| self.book.hosts.slot(c)));
            if let Some(c) = client_slot {
                self.book.touch_slot(c).jobs_out += 1;
            }
        }
        let h = &self.book.hosts.slab[usize::from(at)];
        let (live, over) = (h.serving, h.max_jobs > 0 && h.serving > h.max_jobs);
        let jobs = &self.jobs;
        self.serving
            .began(at, id, live, |id| compiling_on(jobs, id, at));
        if over {
            self.end_oldest_on(at, id);
        }
    }

    /// Ends the longest-running remote job on the server in `slot` but
    /// `except`, as stale.
    #[cold]
    fn end_oldest_on(&mut self, slot: HostSlot, except: u32) {
        let jobs = &self.jobs;
        let oldest = self
            .serving
            .oldest(slot, except, |id| compiling_on(jobs, id, slot));
        if let Some(at) = oldest.and_then(|id| self.jobs.take(id)) {
            self.finish(at, EndReason::Stale);
        }
    }

    fn job_done(&mut self, done: &JobDone) {
        let Some(slot) = self.jobs.take(done.job_id) else {
            if !self.ended_early.remove(&done.job_id) {
                self.book.counts.unknown_jobs += 1;
            }
            return;
        };
        if self.jobs.slot_mut(slot).state == JobState::Local {
            self.finish(slot, EndReason::LocalDone);
        } else {
            let exit = (done.exit_code_signed(), JobStats::from(done));
            self.finish_with_exit(slot, Some(exit));
        }
    }

    fn local_job_begun(&mut self, id: u32, host: u32, file: &[u8]) {
        let slot = self.start(id, JobState::Local, file);
        let job = self.jobs.slot_mut(slot);
        job.client = Some(host);
        job.server = Some(host);
        match self.book.touch_host(host) {
            Some(h) => h.local_jobs += 1,
            None => note_unknown(&mut self.book, &mut self.named_unknown, host),
        }
        self.book.enter(job);
    }

    fn local_job_done(&mut self, id: u32) {
        match self.jobs.take(id) {
            Some(slot) => self.finish(slot, EndReason::LocalDone),
            None if self.ended_early.remove(&id) => {}
            None => {
                self.book.counts.unknown_jobs += 1;
            }
        }
    }

    /// Ends the job in `slot`, taken out of the active jobs, for `reason`
    /// (not [`EndReason::Exit`]: see [`State::finish_with_exit`]).
    fn finish(&mut self, slot: Slot, reason: EndReason) {
        self.end(slot, reason, None);
    }

    /// Ends the remote job in `slot`, taken out of the active jobs, with
    /// the compiler's exit code and the server's statistics.
    fn finish_with_exit(&mut self, slot: Slot, exit: Option<(i32, JobStats)>) {
        self.end(slot, EndReason::Exit, exit);
    }

    /// Ends the job in `slot` and files it in the history with its hosts'
    /// names as they are now.
    fn end(&mut self, slot: Slot, reason: EndReason, exit: Option<(i32, JobStats)>) {
        let job = self.jobs.slot_mut(slot);
        let server_slot = job.raised.server_active();
        self.book.leave(job);
        let (id, client, server) = (job.id, job.client, job.server);
        let local = job.state == JobState::Local;
        if let Some(at) = server_slot.filter(|_| !local) {
            self.serving.ended(at, id);
        }
        let now = self.clock_ms;
        let hosts = &self.book.hosts;
        let key = |id: Option<u32>| id.and_then(|id| hosts.get(id)).map_or(NO_NAME, |h| h.key);
        let server_key = match server_slot {
            Some(at) => hosts.slab[usize::from(at)].key,
            None => key(server),
        };
        let state = match (reason, exit) {
            _ if local => JobState::LocalFinished,
            (EndReason::Exit, Some((0, _))) => JobState::Finished,
            (EndReason::Exit, _) => JobState::Failed,
            (EndReason::LocalDone, _) => JobState::LocalFinished,
            _ => JobState::CutShort,
        };
        let mut end = JobEnd {
            state,
            reason,
            end_ms: now,
            exit_code: None,
            stats: None,
            client_name: key(client),
            server_name: server_key,
        };
        let c = &mut self.book.counts;
        match end.state {
            JobState::Finished => c.jobs_finished += 1,
            JobState::Failed => c.jobs_failed += 1,
            JobState::CutShort => c.jobs_cut_short += 1,
            _ => {}
        }
        // Ends the messages report: a job ended by the connection's loss
        // or by the monitor's judgement is not a job event of the cluster.
        if matches!(
            reason,
            EndReason::Exit | EndReason::LocalDone | EndReason::HostLeft
        ) {
            self.rate.add(now);
            if local {
                c.local_jobs_finished += 1;
            }
        }
        if let Some((exit, stats)) = exit {
            end.exit_code = Some(exit);
            end.stats = Some(stats);
            let server_at = server_slot.or_else(|| server.and_then(|id| self.book.hosts.slot(id)));
            if let Some(at) = server_at {
                let h = self.book.touch_slot(at);
                h.compiled += 1;
                if client == server {
                    h.compiled_own += 1;
                }
            }
            if exit != 0 {
                if let Some(h) = client.and_then(|id| self.book.touch_host(id)) {
                    h.failed += 1;
                }
            }
        }
        self.jobs.retire(slot, end);
    }

    /// Ends every active job with an unknown outcome.
    fn end_all(&mut self) {
        for id in self.jobs.active_ids(|_| true) {
            if let Some(slot) = self.jobs.take(id) {
                self.finish(slot, EndReason::SchedulerLost);
            }
        }
    }

    /// Recounts everything from the tables and panics where the running
    /// counters disagree (for tests of the bookkeeping).
    #[doc(hidden)]
    pub fn check_invariants(&self) {
        let mut pending = std::collections::HashMap::new();
        let mut active = std::collections::HashMap::new();
        let (mut waiting, mut compiling, mut local, mut busy) = (0u64, 0u64, 0u64, 0u64);
        for j in self.jobs.active() {
            assert!(j.state.is_active(), "job {} is {:?}", j.id, j.state);
            match j.state {
                JobState::Waiting => waiting += 1,
                JobState::Compiling => compiling += 1,
                _ => local += 1,
            }
            if j.raised.client_pending.is_some() {
                *pending.entry(j.client).or_insert(0u32) += 1;
            }
            if j.raised.server_active.is_some() {
                *active.entry(j.server).or_insert(0u32) += 1;
                busy += 1;
            }
        }
        let c = &self.book.counts;
        assert_eq!(
            (c.pending, c.compiling, c.local_active, c.busy),
            (waiting, compiling, local, busy)
        );
        let (mut online, mut slots) = (0u32, 0u64);
        for h in self.book.hosts.iter() {
            assert_eq!(h.pending, pending.get(&Some(h.id)).copied().unwrap_or(0));
            assert_eq!(h.active, active.get(&Some(h.id)).copied().unwrap_or(0));
            if h.online {
                online += 1;
                slots += u64::from(h.max_jobs);
            }
        }
        assert_eq!((c.hosts_online, c.total_slots), (online, slots));
        let (kept, limit) = self.jobs.history_len();
        assert!(kept <= limit + super::MAX_HOLD);
        assert!(self.book.hosts.iter().filter(|h| !h.online).count() <= OFFLINE_HOST_LIMIT);
    }
}

/// Whether job `id` is compiling on the host in `slot`, as a remote job.
fn compiling_on(jobs: &Jobs, id: u32, slot: HostSlot) -> bool {
    jobs.get(id)
        .is_some_and(|j| j.state == JobState::Compiling && j.raised.server_active() == Some(slot))
}

/// A job names host `id`, which was never announced: counted, and noted
/// so that the job shows the host's name once it is.
fn note_unknown(book: &mut Book, named_unknown: &mut FxHashSet<u32>, id: u32) {
    book.counts.unknown_hosts += 1;
    if named_unknown.len() < NAMED_UNKNOWN_LIMIT {
        named_unknown.insert(id);
    }
}
