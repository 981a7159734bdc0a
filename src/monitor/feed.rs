//! The change feed: what changed in a [`State`](super::State), for any
//! number of readers, each at its own pace.
//!
//! The state records which hosts and jobs changed (ids only) in one log,
//! and nothing else: a reader ([`Follower`]) takes the entries past its own
//! place ([`State::changes`](super::State::changes)), reads those objects
//! as they are now, and keeps its own memory of what it has shown (the
//! WebSocket's is `publisher/delta.rs`). Finished jobs need no entry: they
//! are numbered in the history, and a reader remembers the next number it
//! has not seen; totals, links and the scheduler a reader compares itself.
//!
//! Recording costs a comparison and at most one entry per object and
//! *epoch*: each object remembers the epoch it last recorded itself in,
//! and any reader's take starts a new one, so a job that changes a hundred
//! times between two takes is one entry. Nothing is recorded while nobody
//! follows. The log keeps what the slowest reader has not taken, up to
//! [`FEED_LIMIT`] entries: past that its older half goes, and a reader that
//! had not taken it is told it lagged ([`Changes::lagged`]) and re-reads a
//! snapshot, so a reader that stops reading never makes the state grow,
//! nor slows the others, nor makes them lag.
//!
//! A second reader is a few lines (this one counts the jobs that finish):
//!
//! ```
//! use icewatch::monitor::{State, StateOptions};
//! use icewatch::protocol::{JobDone, Message, MonGetCs, MonJobBegin};
//!
//! let mut state = State::new(StateOptions::default());
//! state.scheduler_connected("s:8765".into(), 43, 0);
//! let mut reader = state.follow();
//! for id in 1..=3 {
//!     state.apply(&Message::MonGetCs(MonGetCs { job_id: id, client_id: 1, ..Default::default() }), 1);
//!     state.apply(&Message::MonJobBegin(MonJobBegin { job_id: id, start_time: 0, host_id: 1 }), 2);
//! }
//! state.apply(&Message::MonJobDone(JobDone { job_id: 2, ..Default::default() }), 3);
//! let changes = state.changes(&mut reader);
//! assert_eq!(changes.jobs, [1, 2, 3]);
//! let finished: Vec<u32> = state.history_since(changes.done.start).map(|j| j.id).collect();
//! assert_eq!(finished, [2]);
//! assert!(state.changes(&mut reader).jobs.is_empty(), "taken");
//! state.unfollow(reader);
//! ```

use std::collections::VecDeque;
use std::ops::Range;

/// Entries the log keeps for its slowest reader before it gives up on it
/// (and the others): then they all re-read a snapshot.
pub const FEED_LIMIT: usize = 1 << 20;

/// One change: which object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Entry {
    /// A host was added, changed or removed.
    Host(u32),
    /// A job started or changed while active (it may have ended since).
    Job(u32),
    /// A new scheduler session began: every host and job before is gone.
    Session,
}

/// The log of changes and where each reader is in it.
#[derive(Debug, Default)]
pub(crate) struct Feed {
    log: VecDeque<Entry>,
    /// The place of `log[0]` since the state was made.
    first: u64,
    /// Each reader's next place, by [`Follower::slot`]; `None`: a free slot.
    readers: Vec<Option<u64>>,
    /// Readers following.
    following: usize,
    /// Starts at 1 (0 is no epoch), one more at every take.
    epoch: u64,
    /// The place where the current epoch began: a reader that takes from
    /// there takes each object at most once.
    epoch_start: u64,
}

/// A reader of the change feed, made by [`State::follow`](super::State::follow):
/// it holds its place and the next finished job it has not seen. Give it
/// back with [`State::unfollow`](super::State::unfollow) when done.
#[derive(Debug)]
pub struct Follower {
    slot: usize,
    next_done: u64,
}

/// What changed since a reader's last take.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// Hosts added, changed or removed (by id, each once).
    pub hosts: Vec<u32>,
    /// Active jobs that started or changed (by id, each once); some may
    /// have finished since.
    pub jobs: Vec<u32>,
    /// History sequence numbers of the jobs finished since (read them with
    /// [`State::history_since`](super::State::history_since)).
    pub done: Range<u64>,
    /// A new scheduler session began: every host and job of the one before
    /// is gone (the lists name the old ones too).
    pub new_session: bool,
    /// The reader fell too far behind: the lists are incomplete, and it
    /// must read the whole state again.
    pub lagged: bool,
}

impl Feed {
    /// The current epoch: an object whose mark differs records itself.
    #[inline]
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.max(1)
    }

    /// Whether anyone follows (else nothing is recorded).
    #[inline]
    pub(crate) fn followed(&self) -> bool {
        self.following > 0
    }

    /// Records `entry`, if anyone follows.
    #[inline]
    pub(crate) fn record(&mut self, entry: Entry) {
        if self.following == 0 {
            return;
        }
        if self.log.len() >= FEED_LIMIT {
            // The older half goes: a reader still in it has lagged and
            // re-reads the state; readers past it go on.
            let half = self.log.len() / 2;
            self.log.drain(..half);
            self.first += half as u64;
        }
        self.log.push_back(entry);
    }

    /// The place after the last entry.
    fn end(&self) -> u64 {
        self.first + self.log.len() as u64
    }

    /// A new reader, from the current place on.
    pub(crate) fn follow(&mut self, next_done: u64) -> Follower {
        let end = self.end();
        let slot = match self.readers.iter().position(Option::is_none) {
            Some(slot) => {
                self.readers[slot] = Some(end);
                slot
            }
            None => {
                self.readers.push(Some(end));
                self.readers.len() - 1
            }
        };
        self.following += 1;
        self.new_epoch();
        Follower { slot, next_done }
    }

    /// The reader leaves; the log forgets what only it had left to read.
    pub(crate) fn unfollow(&mut self, reader: Follower) {
        if let Some(place @ Some(_)) = self.readers.get_mut(reader.slot) {
            *place = None;
            self.following -= 1;
            self.trim();
        }
    }

    /// The changes past `reader`'s place, up to `next_done` finished jobs;
    /// moves its place to the end and starts a new epoch.
    pub(crate) fn take(&mut self, reader: &mut Follower, next_done: u64) -> Changes {
        let end = self.end();
        let Some(place) = self.readers.get_mut(reader.slot).and_then(Option::as_mut) else {
            // A follower of another state, or one given back: it follows
            // nothing, so it must read the whole state.
            return Changes {
                lagged: true,
                done: next_done..next_done,
                ..Changes::default()
            };
        };
        let mut changes = Changes {
            lagged: *place < self.first,
            done: reader.next_done.min(next_done)..next_done,
            ..Changes::default()
        };
        // Since the epoch began, each object recorded itself once.
        let repeats = *place != self.epoch_start;
        let from = usize::try_from(place.saturating_sub(self.first)).unwrap_or(usize::MAX);
        for entry in self.log.range(from.min(self.log.len())..) {
            match *entry {
                Entry::Host(id) => changes.hosts.push(id),
                Entry::Job(id) => changes.jobs.push(id),
                Entry::Session => changes.new_session = true,
            }
        }
        *place = end;
        reader.next_done = next_done;
        self.new_epoch();
        self.trim();
        if repeats {
            for ids in [&mut changes.hosts, &mut changes.jobs] {
                ids.sort_unstable();
                ids.dedup();
            }
        }
        changes
    }

    /// Starts an epoch at the current end: objects record themselves again.
    fn new_epoch(&mut self) {
        self.epoch = self.epoch() + 1;
        self.epoch_start = self.end();
    }

    /// Drops the entries every reader has taken.
    fn trim(&mut self) {
        let slowest = self.readers.iter().flatten().min().copied();
        let keep_from = slowest.unwrap_or_else(|| self.end());
        let drop = usize::try_from(keep_from.saturating_sub(self.first))
            .unwrap_or(usize::MAX)
            .min(self.log.len());
        self.log.drain(..drop);
        self.first += drop as u64;
        // The room stays for the next epoch, which is likely as busy; when
        // nobody follows any more it goes.
        if self.following == 0 {
            self.log = VecDeque::new();
        }
    }

    /// Entries kept now (for tests of the bounds).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.log.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_reader_takes_what_came_since_its_own_last_take() {
        let mut feed = Feed::default();
        feed.record(Entry::Host(1));
        assert_eq!(feed.len(), 0, "nobody follows: nothing is kept");
        let mut a = feed.follow(0);
        feed.record(Entry::Job(5));
        let mut b = feed.follow(0);
        feed.record(Entry::Job(3));
        feed.record(Entry::Job(5));
        feed.record(Entry::Host(2));
        let got = feed.take(&mut a, 4);
        assert_eq!((got.hosts, got.jobs, got.done), (vec![2], vec![3, 5], 0..4));
        feed.record(Entry::Job(9));
        feed.record(Entry::Job(4));
        let got = feed.take(&mut a, 4);
        assert_eq!(got.jobs, [9, 4], "one epoch: as recorded, no sorting");
        feed.record(Entry::Session);
        let got = feed.take(&mut b, 4);
        assert_eq!((got.hosts, got.jobs), (vec![2], vec![3, 4, 5, 9]));
        assert!(got.new_session && !got.lagged);
        let got = feed.take(&mut a, 6);
        assert!(got.new_session && got.jobs.is_empty());
        assert_eq!(got.done, 4..6);
        assert_eq!(feed.len(), 0, "everyone took everything");
        feed.unfollow(a);
        feed.unfollow(b);
        assert!(!feed.followed());
    }

    #[test]
    fn a_reader_that_stops_reading_lags_and_the_log_stays_bounded() {
        let mut feed = Feed::default();
        let mut slow = feed.follow(0);
        let mut quick = feed.follow(0);
        for id in 0..(FEED_LIMIT as u32 * 2 + 10) {
            feed.record(Entry::Job(id));
            if id % 1000 == 0 {
                assert!(!feed.take(&mut quick, 0).lagged);
            }
            assert!(feed.len() <= FEED_LIMIT);
        }
        assert!(feed.take(&mut slow, 0).lagged);
        assert!(!feed.take(&mut slow, 0).lagged, "caught up again");
        let gone = Follower {
            slot: 7,
            next_done: 0,
        };
        let mut gone = gone;
        assert!(feed.take(&mut gone, 0).lagged);
    }
}
