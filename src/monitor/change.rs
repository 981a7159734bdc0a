//! [`ChangeSet`]: what changed in a [`State`](super::State) since the last
//! [`State::take_changes`](super::State::take_changes), as ids only.
//!
//! Recording a change costs a comparison and at most one push per object and
//! period (each host and job remembers the period it was last recorded in),
//! so the hot path stays cheap however often an object changes; links are
//! counted afresh when the set is taken and compared with the last count.
//! The objects themselves are read from the state when the set is turned
//! into a [`Diff`](super::Diff).

/// A change set listing more jobs than this collapses into "send a
/// snapshot" (see [`ChangeSet::is_reset`]), so a state whose changes are
/// never taken still stays bounded.
pub const CHANGE_LIMIT: usize = 1 << 20;

/// Ids of what changed; turn it into JSON with [`State::diff`](super::State::diff).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChangeSet {
    /// Hosts added, changed or removed, each once, in the order they changed.
    pub(crate) hosts: Vec<u32>,
    /// Links `(submitter, server)` whose count changed (as counted when the
    /// set was taken), in order.
    pub(crate) links: Vec<(u32, u32)>,
    /// Jobs that started or changed state.
    pub(crate) jobs: Vec<u32>,
    /// History sequence number of the first job finished in this period.
    pub(crate) done_from: Option<u64>,
    pub(crate) scheduler: bool,
    pub(crate) totals: bool,
    pub(crate) reset: bool,
    /// An id may be listed twice (an object was dropped and made again).
    pub(crate) repeats: bool,
    /// Too many jobs changed to list them: all of them count as changed.
    pub(crate) overflow: bool,
}

impl ChangeSet {
    /// Nothing changed.
    pub fn is_empty(&self) -> bool {
        !self.overflow
            && self.hosts.is_empty()
            && self.links.is_empty()
            && self.jobs.is_empty()
            && self.done_from.is_none()
            && !self.scheduler
            && !self.totals
    }

    /// An empty set whose lists have room for as many ids as `other`'s.
    pub(crate) fn sized_like(other: &ChangeSet) -> ChangeSet {
        ChangeSet {
            hosts: Vec::with_capacity(other.hosts.len()),
            jobs: Vec::with_capacity(other.jobs.len()),
            ..ChangeSet::default()
        }
    }

    /// Adds a later change set to this one (for publishers that coalesce).
    ///
    /// Diff the merged set under the same lock that took the later one: a
    /// diff always shows objects as they are now, so merged ids read right.
    pub fn merge(&mut self, other: ChangeSet) {
        fn union<T: Ord>(a: &mut Vec<T>, b: Vec<T>) {
            a.extend(b);
            a.sort_unstable();
            a.dedup();
        }
        union(&mut self.hosts, other.hosts);
        union(&mut self.links, other.links);
        union(&mut self.jobs, other.jobs);
        self.done_from = match (self.done_from, other.done_from) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.scheduler |= other.scheduler;
        self.totals |= other.totals;
        self.reset |= other.reset;
        self.overflow |= other.overflow;
        self.repeats = false;
    }

    /// Lists every id once, in id order.
    pub(crate) fn dedup(&mut self) {
        self.hosts.sort_unstable();
        self.hosts.dedup();
        self.jobs.sort_unstable();
        self.jobs.dedup();
        self.links.sort_unstable();
        self.links.dedup();
        self.repeats = false;
    }

    /// Ids of hosts added, changed or removed.
    pub fn hosts(&self) -> &[u32] {
        &self.hosts
    }

    /// Ids of jobs that started or changed state (some may have ended since).
    pub fn jobs(&self) -> &[u32] {
        &self.jobs
    }

    /// Links whose count changed.
    pub fn links(&self) -> &[(u32, u32)] {
        &self.links
    }

    /// Whether any job finished.
    pub fn jobs_finished(&self) -> bool {
        self.done_from.is_some()
    }

    /// Whether the scheduler connection changed.
    pub fn scheduler_changed(&self) -> bool {
        self.scheduler
    }

    /// Whether the totals changed.
    pub fn totals_changed(&self) -> bool {
        self.totals
    }

    /// Whether a publisher should send a fresh snapshot rather than this
    /// diff: a new scheduler session replaced every host (the diff is still
    /// complete), or so much changed that the set stopped listing jobs (the
    /// diff then carries every active job).
    pub fn is_reset(&self) -> bool {
        self.reset
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merging_unites_ids_and_keeps_the_earliest_finished_job() {
        let mut a = ChangeSet {
            hosts: vec![1, 3],
            done_from: Some(7),
            ..ChangeSet::default()
        };
        let b = ChangeSet {
            hosts: vec![2, 3],
            jobs: vec![9],
            done_from: Some(5),
            totals: true,
            ..ChangeSet::default()
        };
        a.merge(b);
        assert_eq!(a.hosts(), &[1, 2, 3]);
        assert_eq!(a.jobs(), &[9]);
        assert_eq!(a.done_from, Some(5));
        assert!(a.totals_changed() && !a.scheduler_changed());
        assert!(!a.is_empty());
        assert!(ChangeSet::default().is_empty());
    }
}
