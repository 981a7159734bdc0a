//! [`HostNames`]: every host name the monitor has seen, across scheduler
//! sessions, each under a small key.
//!
//! A host's identity for people is its name: the scheduler gives a daemon a
//! new id each time it logs in, and a restarted scheduler hands out the
//! same ids again to other hosts. So a finished job keeps the keys of its
//! submitter's and server's names as they were when it ran (two bytes
//! each), and a host that leaves hands its running counters to its name,
//! for the host that logs in again under that name to go on from.

use super::cluster::Tally;
use rustc_hash::FxHashMap;

/// A name's key; [`NO_NAME`] for none.
pub(crate) type NameKey = u16;

/// No name (the host was never announced, or the table is full).
pub(crate) const NO_NAME: NameKey = 0;

/// The most names kept (keys 1 to 65,535). Past it, new names get no key:
/// their finished jobs show no names and their counters start over when
/// they log in again. A real cluster has a few thousand hosts at most.
const MAX_NAMES: usize = u16::MAX as usize;

#[derive(Debug)]
struct Entry {
    name: Box<str>,
    /// The counters of the host that last left under this name.
    carried: Option<Tally>,
}

/// Host names by key, and keys by name.
#[derive(Debug, Default)]
pub(crate) struct HostNames {
    /// Entry of key `k` at `k - 1`.
    entries: Vec<Entry>,
    keys: FxHashMap<Box<str>, NameKey>,
}

impl HostNames {
    /// The key of `name`, given one if it has none yet; [`NO_NAME`] for the
    /// empty name or when the table is full.
    pub(crate) fn key(&mut self, name: &str) -> NameKey {
        if name.is_empty() {
            return NO_NAME;
        }
        if let Some(&key) = self.keys.get(name) {
            return key;
        }
        if self.entries.len() >= MAX_NAMES {
            return NO_NAME;
        }
        self.entries.push(Entry {
            name: Box::from(name),
            carried: None,
        });
        // At most MAX_NAMES entries: the key fits.
        let key = self.entries.len() as NameKey;
        self.keys.insert(Box::from(name), key);
        key
    }

    /// The name of `key`.
    pub(crate) fn name(&self, key: NameKey) -> Option<&str> {
        let at = usize::from(key).checked_sub(1)?;
        self.entries.get(at).map(|e| &*e.name)
    }

    /// Keeps the counters of a host leaving under `key`.
    pub(crate) fn carry(&mut self, key: NameKey, tally: Tally) {
        if let Some(e) = usize::from(key)
            .checked_sub(1)
            .and_then(|at| self.entries.get_mut(at))
        {
            e.carried = Some(tally);
        }
    }

    /// The counters a host that left under `key` handed over, once.
    pub(crate) fn take_carried(&mut self, key: NameKey) -> Option<Tally> {
        let at = usize::from(key).checked_sub(1)?;
        self.entries.get_mut(at)?.carried.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_keeps_its_key_and_hands_its_counters_over_once() {
        let mut names = HostNames::default();
        assert_eq!(names.key(""), NO_NAME);
        let a = names.key("a");
        let b = names.key("b");
        assert_ne!(a, b);
        assert_eq!(names.key("a"), a);
        assert_eq!(names.name(b), Some("b"));
        assert_eq!(names.name(NO_NAME), None);
        let tally = Tally {
            compiled: 3,
            ..Tally::default()
        };
        names.carry(a, tally);
        assert_eq!(names.take_carried(b), None);
        assert_eq!(names.take_carried(a), Some(tally));
        assert_eq!(names.take_carried(a), None);
    }

    #[test]
    fn past_the_last_key_names_get_none() {
        let mut names = HostNames::default();
        for n in 0..MAX_NAMES {
            assert_ne!(names.key(&n.to_string()), NO_NAME);
        }
        assert_eq!(names.key("one too many"), NO_NAME);
        assert_eq!(names.key("0"), 1);
    }
}
