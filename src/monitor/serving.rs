//! [`Serving`]: by host slot, the remote jobs compiling on each host in the
//! order they began, so that a server with more jobs than slots finds its
//! oldest one without looking through every active job.
//!
//! A job's id goes in when it begins and comes out when it ends first of
//! its host's jobs (a comparison, no lookup); ids of jobs that ended out of
//! order stay until they reach the front or the queue is compacted, which
//! happens when it holds more than twice the host's jobs (plus a few), so
//! each queue stays bounded by its host's slots.

use super::hosts::HostSlot;
use std::collections::VecDeque;

/// Ids left in a queue on top of twice its host's live jobs before it is
/// compacted.
const SLACK: usize = 16;

/// The queues, by host slot.
#[derive(Debug, Default)]
pub(crate) struct Serving {
    queues: Vec<VecDeque<u32>>,
}

impl Serving {
    /// A new host in `slot`: its queue starts empty.
    pub(crate) fn reset(&mut self, slot: HostSlot) {
        let at = usize::from(slot);
        if self.queues.len() <= at {
            self.queues.resize_with(at + 1, VecDeque::new);
        }
        self.queues[at].clear();
    }

    /// Every host is gone.
    pub(crate) fn clear(&mut self) {
        self.queues.iter_mut().for_each(VecDeque::clear);
    }

    /// Job `id` began on the host in `slot`, which now has `live` remote
    /// jobs; `is_live` tells whether an id still compiles there.
    #[inline]
    pub(crate) fn began(
        &mut self,
        slot: HostSlot,
        id: u32,
        live: u32,
        is_live: impl Fn(u32) -> bool,
    ) {
        let Some(q) = self.queues.get_mut(usize::from(slot)) else {
            return;
        };
        q.push_back(id);
        if q.len() > 2 * live as usize + SLACK {
            q.retain(|&id| is_live(id));
        }
    }

    /// Job `id` ended on the host in `slot`.
    #[inline]
    pub(crate) fn ended(&mut self, slot: HostSlot, id: u32) {
        if let Some(q) = self.queues.get_mut(usize::from(slot)) {
            if q.front() == Some(&id) {
                q.pop_front();
            }
        }
    }

    /// The job that began first of those still compiling on the host in
    /// `slot`, `except` aside; ids passed on the way are dropped.
    pub(crate) fn oldest(
        &mut self,
        slot: HostSlot,
        except: u32,
        is_live: impl Fn(u32) -> bool,
    ) -> Option<u32> {
        let q = self.queues.get_mut(usize::from(slot))?;
        while let Some(&id) = q.front() {
            if is_live(id) {
                break;
            }
            q.pop_front();
        }
        q.iter().copied().find(|&id| id != except && is_live(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn the_oldest_live_job_is_found_and_queues_stay_bounded() {
        let mut serving = Serving::default();
        serving.reset(3);
        let mut live = BTreeSet::new();
        for id in 0..10_000u32 {
            live.insert(id);
            let n = live.len() as u32;
            serving.began(3, id, n, |i| live.contains(&i));
            // Jobs end out of order: every third one stays a while.
            if id >= 4 {
                let gone = if id % 3 == 0 { id - 4 } else { id - 1 };
                if live.remove(&gone) {
                    serving.ended(3, gone);
                }
            }
            assert!(serving.queues[3].len() <= 2 * (live.len() + 1) + SLACK);
        }
        let want = live.iter().copied().next();
        assert_eq!(serving.oldest(3, u32::MAX, |i| live.contains(&i)), want);
        let second = live.iter().copied().nth(1);
        assert_eq!(
            serving.oldest(3, want.unwrap(), |i| live.contains(&i)),
            second
        );
        assert_eq!(serving.oldest(9, 0, |_| true), None);
    }
}
