//! [`Hosts`]: the hosts of the current scheduler session, each in a slot of
//! its own, found by the scheduler's id.

use super::cluster::Host;
use rustc_hash::FxHashMap;
use slab::Slab;

/// Index of a host in [`Hosts`]: below [`MAX_HOSTS`].
pub(crate) type HostSlot = u16;

/// The hosts, each in a slot of its own for as long as it is known, and an
/// index from the scheduler's ids to the slots. A job remembers the slots
/// of the hosts it counts on, so taking its counts back looks nothing up.
#[derive(Debug, Default)]
pub(crate) struct Hosts {
    pub(crate) slab: Slab<Host>,
    index: HostIndex,
}

/// Host ids → slots. The scheduler numbers hosts with a counter from 1, so
/// ids below [`HostIndex::DIRECT`] are looked up in a table by position;
/// a scheduler that has seen more logins than that uses a hash map too.
#[derive(Debug, Default)]
struct HostIndex {
    direct: Vec<Option<HostSlot>>,
    hashed: FxHashMap<u32, HostSlot>,
}

impl HostIndex {
    /// Ids below this are looked up by position (the table takes at most
    /// 256 KiB).
    const DIRECT: u32 = 1 << 16;

    #[inline]
    pub(crate) fn get(&self, id: u32) -> Option<HostSlot> {
        if id < Self::DIRECT {
            self.direct.get(id as usize).copied().flatten()
        } else {
            self.hashed.get(&id).copied()
        }
    }

    pub(crate) fn insert(&mut self, id: u32, slot: HostSlot) {
        if id < Self::DIRECT {
            let at = id as usize;
            if self.direct.len() <= at {
                self.direct.resize(at + 1, None);
            }
            self.direct[at] = Some(slot);
        } else {
            self.hashed.insert(id, slot);
        }
    }

    pub(crate) fn remove(&mut self, id: u32) -> Option<HostSlot> {
        if id < Self::DIRECT {
            self.direct.get_mut(id as usize).and_then(Option::take)
        } else {
            self.hashed.remove(&id)
        }
    }

    pub(crate) fn clear(&mut self) {
        self.direct.clear();
        self.hashed.clear();
    }
}

impl Hosts {
    #[inline]
    pub(crate) fn slot(&self, id: u32) -> Option<HostSlot> {
        self.index.get(id)
    }

    pub(crate) fn get(&self, id: u32) -> Option<&Host> {
        self.slot(id).map(|slot| &self.slab[usize::from(slot)])
    }

    #[inline]
    pub(crate) fn contains(&self, id: u32) -> bool {
        self.index.get(id).is_some()
    }

    pub(crate) fn len(&self) -> usize {
        self.slab.len()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Host> {
        self.slab.iter().map(|(_, h)| h)
    }

    /// Files a new host; the caller keeps the count under [`MAX_HOSTS`].
    pub(crate) fn insert(&mut self, host: Host) -> HostSlot {
        let id = host.id;
        // At most MAX_HOSTS hosts, so every slot fits.
        let slot = self.slab.insert(host) as HostSlot;
        self.index.insert(id, slot);
        slot
    }

    pub(crate) fn remove(&mut self, id: u32) -> Option<Host> {
        let slot = self.index.remove(id)?;
        Some(self.slab.remove(usize::from(slot)))
    }

    pub(crate) fn clear(&mut self) {
        self.slab.clear();
        self.index.clear();
    }
}
