//! [`Names`]: the file names of the jobs of a [`Jobs`](super::jobs::Jobs)
//! arena, back to back in chunks of bytes rather than one heap buffer each.
//!
//! A name is written once, where the previous one ended, so consecutive
//! jobs write consecutive bytes: the prefetcher streams them, where
//! 100,000 separate buffers, each last touched 100,000 jobs ago, cost a
//! cache miss apiece (and an allocation apiece until the history is full).
//! A chunk whose names have all gone is reused. A few long-lived names must
//! not hold many chunks: once chunks hold more than twice the bytes still
//! in use, the sparse ones are emptied into the newest, so memory stays
//! proportional to the names in use whatever the jobs do.
//!
//! Names of finished jobs move to a [`NameRing`]: they leave the history in
//! the order they entered it, so chunks empty from the oldest, whole, and
//! need no compaction.
//!
//! Names are kept as the scheduler sent them, up to [`MAX_FILE_NAME`] bytes;
//! readers decode them (lossy UTF-8, see [`JobRef::file`](super::JobRef::file)),
//! so the many names nobody reads are never validated.

use super::jobs::{Active, Slot};
use std::collections::VecDeque;

/// Bytes of a chunk.
const CHUNK: usize = 64 * 1024;

/// The most bytes of a file name kept: Linux's `PATH_MAX`. What a scheduler
/// sends beyond it is no path; the name keeps its first `MAX_FILE_NAME` bytes.
pub const MAX_FILE_NAME: usize = 4096;

// A [`RingName`] has 16 bits for where in a chunk, and for the length.
const _: () = assert!(CHUNK <= 1 << 16 && MAX_FILE_NAME < 1 << 16);

/// Free chunks kept with their buffers, ready for the next names.
const SPARE_CHUNKS: usize = 2;

/// Where a job's name lies: `len` bytes at `at` in chunk `chunk` of a
/// [`Names`]. The empty name (the default) lies nowhere.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Name {
    chunk: u32,
    at: u32,
    len: u32,
}

/// Where a finished job's name lies in a [`NameRing`]: as [`Name`], in 8
/// bytes (a chunk is 64 KiB, a name at most 4 KiB).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct RingName {
    chunk: u32,
    at: u16,
    len: u16,
}

#[derive(Debug, Default)]
struct Chunk {
    bytes: Vec<u8>,
    /// Bytes of its names still in use.
    live: usize,
    /// Every name written to it since it was last emptied: the slot whose
    /// job it was written for, and where (the job may have left since).
    names: Vec<(Slot, u32)>,
    in_use: bool,
}

/// The names of a job arena. Each method that may move names takes the
/// arena's slots, to point their jobs at the new places.
#[derive(Debug, Default)]
pub(crate) struct Names {
    chunks: Vec<Chunk>,
    /// The chunk being written, if any.
    current: Option<u32>,
    /// Chunks not in use (with a buffer only the first [`SPARE_CHUNKS`]).
    free: Vec<u32>,
    /// Bytes of names in use.
    live: usize,
    /// Bytes of the buffers of the chunks in use.
    held: usize,
    /// For copying a name between two chunks.
    scratch: Vec<u8>,
}

impl Names {
    /// The bytes of `name`.
    pub(crate) fn get(&self, name: Name) -> &[u8] {
        if name.len == 0 {
            return &[];
        }
        let at = name.at as usize;
        &self.chunks[name.chunk as usize].bytes[at..at + name.len as usize]
    }

    /// Stores `bytes` (its first [`MAX_FILE_NAME`]) as the name of the job in
    /// `slot` and returns where.
    pub(crate) fn add(&mut self, bytes: &[u8], slot: Slot, slots: &mut [Active]) -> Name {
        let bytes = &bytes[..bytes.len().min(MAX_FILE_NAME)];
        if bytes.is_empty() {
            return Name::default();
        }
        if self.held > 2 * self.live + 4 * CHUNK {
            self.compact(slots);
        }
        self.write(bytes, slot)
    }

    /// The job that had `name` no longer needs it.
    pub(crate) fn remove(&mut self, name: Name) {
        if name.len == 0 {
            return;
        }
        let c = &mut self.chunks[name.chunk as usize];
        c.live -= name.len as usize;
        self.live -= name.len as usize;
        if c.live == 0 && self.current != Some(name.chunk) {
            self.recycle(name.chunk);
        }
    }

    /// Appends `bytes` to the current chunk, or to a new one if it has no
    /// room left.
    fn write(&mut self, bytes: &[u8], slot: Slot) -> Name {
        let chunk = match self.current {
            Some(i) if self.chunks[i as usize].room() >= bytes.len() => i,
            _ => self.next_chunk(),
        };
        let c = &mut self.chunks[chunk as usize];
        let at = c.bytes.len() as u32;
        c.bytes.extend_from_slice(bytes);
        c.live += bytes.len();
        c.names.push((slot, at));
        self.live += bytes.len();
        Name {
            chunk,
            at,
            len: bytes.len() as u32,
        }
    }

    /// Makes an empty chunk the current one.
    fn next_chunk(&mut self) -> u32 {
        if let Some(old) = self.current.take() {
            if self.chunks[old as usize].live == 0 {
                self.recycle(old);
            }
        }
        let i = self.free.pop().unwrap_or_else(|| {
            self.chunks.push(Chunk::default());
            (self.chunks.len() - 1) as u32
        });
        let c = &mut self.chunks[i as usize];
        c.bytes.reserve_exact(CHUNK);
        c.in_use = true;
        self.held += c.bytes.capacity();
        self.current = Some(i);
        i
    }

    /// Returns the emptied chunk `i` to the free ones.
    fn recycle(&mut self, i: u32) {
        let spare = self.free.len() < SPARE_CHUNKS;
        let c = &mut self.chunks[i as usize];
        debug_assert_eq!(c.live, 0);
        self.held -= c.bytes.capacity();
        c.in_use = false;
        c.bytes.clear();
        c.names.clear();
        if !spare {
            c.bytes = Vec::new();
            c.names = Vec::new();
        }
        self.free.push(i);
    }

    /// Moves the names still in use out of every chunk at most half in use
    /// (but the current one) into the current one, and frees those chunks.
    fn compact(&mut self, slots: &mut [Active]) {
        let sparse: Vec<u32> = (0..self.chunks.len() as u32)
            .filter(|&i| {
                let c = &self.chunks[i as usize];
                c.in_use && self.current != Some(i) && c.live * 2 <= c.bytes.capacity()
            })
            .collect();
        for i in sparse {
            let names = std::mem::take(&mut self.chunks[i as usize].names);
            for &(slot, at) in &names {
                let job = &mut slots[slot as usize];
                if job.name.len == 0 || job.name.chunk != i || job.name.at != at {
                    continue;
                }
                let old = job.name;
                let mut bytes = std::mem::take(&mut self.scratch);
                bytes.clear();
                bytes.extend_from_slice(self.get(old));
                job.name = self.write(&bytes, slot);
                self.scratch = bytes;
                self.chunks[i as usize].live -= old.len as usize;
                self.live -= old.len as usize;
            }
            self.chunks[i as usize].names = names;
            self.recycle(i);
        }
    }

    /// (bytes of names in use, bytes of the chunks in use), for tests.
    #[cfg(test)]
    fn usage(&self) -> (usize, usize) {
        (self.live, self.held)
    }
}

/// The names of the finished jobs, in the order they finished, in a queue
/// of chunks: a name is written after the last and leaves after the ones
/// before it, so a chunk is emptied whole, from the oldest, and memory is
/// the bytes in use plus at most two chunks.
#[derive(Debug, Default)]
pub(crate) struct NameRing {
    /// Oldest first; names are written to the last.
    chunks: VecDeque<Vec<u8>>,
    /// The number of `chunks[0]` (counting every chunk ever filled, wrapping).
    first: u32,
    /// An emptied chunk, for the next.
    spare: Vec<u8>,
}

impl NameRing {
    /// The bytes of `name`.
    pub(crate) fn get(&self, name: RingName) -> &[u8] {
        if name.len == 0 {
            return &[];
        }
        let at = usize::from(name.at);
        let chunk = name.chunk.wrapping_sub(self.first) as usize;
        &self.chunks[chunk][at..at + usize::from(name.len)]
    }

    /// Appends `bytes` (its first [`MAX_FILE_NAME`]) and returns where.
    pub(crate) fn push(&mut self, bytes: &[u8]) -> RingName {
        let bytes = &bytes[..bytes.len().min(MAX_FILE_NAME)];
        if bytes.is_empty() {
            return RingName::default();
        }
        let full = self
            .chunks
            .back()
            .map_or(true, |c| c.capacity() - c.len() < bytes.len());
        if full {
            let mut next = std::mem::take(&mut self.spare);
            next.clear();
            next.reserve_exact(CHUNK);
            self.chunks.push_back(next);
        }
        let n = self.chunks.len() - 1;
        let last = &mut self.chunks[n];
        // Below CHUNK and MAX_FILE_NAME, both within u16.
        let at = last.len() as u16;
        last.extend_from_slice(bytes);
        RingName {
            chunk: self.first.wrapping_add(n as u32),
            at,
            len: bytes.len() as u16,
        }
    }

    /// `name`, the oldest name still kept, leaves (and any older with it).
    pub(crate) fn pop(&mut self, name: RingName) {
        if name.len == 0 {
            return;
        }
        while self.first != name.chunk && self.chunks.len() > 1 {
            if let Some(empty) = self.chunks.pop_front() {
                self.spare = empty;
            }
            self.first = self.first.wrapping_add(1);
        }
    }

    /// Bytes held, for tests.
    #[cfg(test)]
    fn held(&self) -> usize {
        self.chunks.iter().map(Vec::capacity).sum::<usize>() + self.spare.capacity()
    }
}

impl Chunk {
    /// Bytes that still fit without growing the buffer.
    fn room(&self) -> usize {
        self.bytes.capacity() - self.bytes.len()
    }
}

#[cfg(test)]
mod tests {
    use super::{NameRing, Names, CHUNK, MAX_FILE_NAME};
    use crate::monitor::jobs::Active;
    use crate::monitor::state::JobState;
    use proptest::prelude::*;

    fn name_of(n: u32, len: usize) -> Vec<u8> {
        let mut v = format!("job{n}/").into_bytes();
        v.resize(len.max(v.len()), b'a' + (n % 26) as u8);
        v
    }

    proptest! {
        /// Whatever names come and go, each job reads back its own, and the
        /// chunks never hold much more than twice the bytes in use.
        #[test]
        fn every_job_reads_its_own_name_and_memory_stays_bounded(
            ops in proptest::collection::vec((0usize..64, 0usize..3000, any::<bool>()), 1..600)
        ) {
            let mut slots: Vec<Active> = (0..64)
                .map(|i| Active::new(i, JobState::Waiting, 0))
                .collect();
            let mut want: Vec<Option<Vec<u8>>> = vec![None; 64];
            let mut names = Names::default();
            for (n, (slot, len, long)) in ops.into_iter().enumerate() {
                // Mostly short names, now and then one too long to be a path.
                let len = if long && len < 20 { MAX_FILE_NAME + len } else { len % 200 };
                let old = std::mem::take(&mut slots[slot].name);
                names.remove(old);
                if want[slot].take().is_some() && n % 3 == 0 {
                    continue;
                }
                let mut bytes = name_of(n as u32, len);
                slots[slot].name = names.add(&bytes, slot as u32, &mut slots);
                bytes.truncate(MAX_FILE_NAME);
                want[slot] = Some(bytes);
                for (s, w) in want.iter().enumerate() {
                    let got = names.get(slots[s].name);
                    prop_assert_eq!(got, w.as_deref().unwrap_or(&[]), "slot {}", s);
                }
                let (live, held) = names.usage();
                prop_assert!(held <= 2 * live + 5 * CHUNK, "{} held for {} live", held, live);
            }
        }
    }

    proptest! {
        /// Names leave the ring in the order they came: each one kept reads
        /// back, and the ring holds little more than them (a chunk is left
        /// for the next when a name does not fit: it wastes less than the
        /// longest name, a sixteenth of it; plus the first, the last and
        /// the spare chunk).
        #[test]
        fn the_ring_reads_back_every_name_kept_and_holds_little_more(
            ops in proptest::collection::vec((0usize..5000, 0usize..4), 1..800)
        ) {
            let mut ring = NameRing::default();
            let mut kept = std::collections::VecDeque::new();
            for (n, (len, pops)) in ops.into_iter().enumerate() {
                for _ in 0..pops.min(kept.len()) {
                    if let Some((name, _)) = kept.pop_front() {
                        ring.pop(name);
                    }
                }
                let mut bytes = name_of(n as u32, len);
                let name = ring.push(&bytes);
                bytes.truncate(MAX_FILE_NAME);
                kept.push_back((name, bytes));
                let live: usize = kept.iter().map(|(_, b)| b.len()).sum();
                for (name, bytes) in &kept {
                    prop_assert_eq!(ring.get(*name), &bytes[..]);
                }
                prop_assert!(
                    ring.held() <= live * 16 / 15 + 3 * CHUNK,
                    "{} held for {}", ring.held(), live
                );
            }
        }
    }

    #[test]
    fn names_kept_for_long_do_not_keep_their_chunks() {
        // Slot 0 takes one name after another; every 700th name (about one
        // a chunk) stays, in a slot of its own, as if its job never ended.
        let mut slots: Vec<Active> = (0..200)
            .map(|i| Active::new(i, JobState::Waiting, 0))
            .collect();
        let mut names = Names::default();
        let mut kept = Vec::new();
        for n in 0..100_000u32 {
            let bytes = name_of(n, 100);
            let slot = if n % 700 == 0 { kept.len() + 1 } else { 0 };
            if slot == 0 {
                let old = std::mem::take(&mut slots[0].name);
                names.remove(old);
            } else {
                kept.push(bytes.clone());
            }
            slots[slot].name = names.add(&bytes, slot as u32, &mut slots);
        }
        for (i, bytes) in kept.iter().enumerate() {
            assert_eq!(names.get(slots[i + 1].name), &bytes[..]);
        }
        let (live, held) = names.usage();
        assert_eq!(live, 100 * (kept.len() + 1));
        assert!(held <= 6 * CHUNK, "{held} bytes held for {live}");
    }
}
