//! [`Names`]: the file names of the jobs of a [`Jobs`](super::jobs::Jobs)
//! table, active and finished, back to back in chunks of bytes rather than
//! one heap buffer each.
//!
//! A name is written once, when its job starts, where the previous one
//! ended, and stays where it is until the job leaves the history: a job
//! that ends takes its name along without copying it. Consecutive jobs
//! write consecutive bytes, which the prefetcher streams, where 100,000
//! separate buffers, each last touched 100,000 jobs ago, cost a cache miss
//! apiece (and an allocation apiece until the history is full). Jobs end,
//! and leave the history, in about the order they started, so chunks empty
//! whole, the oldest first; an emptied chunk is reused.
//!
//! A few long-lived names must not hold many chunks: once the chunks hold
//! more than twice the bytes still in use (plus a few chunks), the owner of
//! the names moves the ones in chunks at most three quarters in use into
//! the newest ([`Names::compact`]). That takes a visit of every name kept,
//! but it frees at least two thirds of the bytes in use since the last
//! time: memory stays proportional to the names in use, and the work to
//! the names written, whatever the jobs do.
//!
//! Names are kept as the scheduler sent them, up to [`MAX_FILE_NAME`] bytes;
//! readers decode them (lossy UTF-8, see [`JobRef::file`](super::JobRef::file)),
//! so the many names nobody reads are never validated.

/// Bytes of a chunk.
const CHUNK: usize = 64 * 1024;

/// The most bytes of a file name kept: Linux's `PATH_MAX`. What a scheduler
/// sends beyond it is no path; the name keeps its first `MAX_FILE_NAME` bytes.
pub const MAX_FILE_NAME: usize = 4096;

// A [`Name`] has 16 bits for where in a chunk, and for the length.
const _: () = assert!(CHUNK <= 1 << 16 && MAX_FILE_NAME < 1 << 16);

/// Free chunks kept with their buffers, ready for the next names.
const SPARE_CHUNKS: usize = 2;

/// Where a job's name lies: `len` bytes at `at` in chunk `chunk` of a
/// [`Names`]. The empty name (the default) lies nowhere.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Name {
    chunk: u32,
    at: u16,
    len: u16,
}

#[derive(Debug, Default)]
struct Chunk {
    bytes: Vec<u8>,
    /// Bytes of its names still in use.
    live: usize,
    in_use: bool,
}

/// The names of a job table.
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
        let at = usize::from(name.at);
        &self.chunks[name.chunk as usize].bytes[at..at + usize::from(name.len)]
    }

    /// Stores `bytes` (its first [`MAX_FILE_NAME`]) and returns where.
    pub(crate) fn add(&mut self, bytes: &[u8]) -> Name {
        let bytes = &bytes[..bytes.len().min(MAX_FILE_NAME)];
        if bytes.is_empty() {
            return Name::default();
        }
        let chunk = match self.current {
            Some(i) if self.chunks[i as usize].room() >= bytes.len() => i,
            _ => self.next_chunk(),
        };
        let c = &mut self.chunks[chunk as usize];
        // Below CHUNK and MAX_FILE_NAME, both within u16.
        let at = c.bytes.len() as u16;
        c.bytes.extend_from_slice(bytes);
        c.live += bytes.len();
        self.live += bytes.len();
        Name {
            chunk,
            at,
            len: bytes.len() as u16,
        }
    }

    /// The holder of `name` no longer needs it.
    pub(crate) fn release(&mut self, name: Name) {
        if name.len == 0 {
            return;
        }
        let c = &mut self.chunks[name.chunk as usize];
        c.live -= usize::from(name.len);
        self.live -= usize::from(name.len);
        if c.live == 0 && self.current != Some(name.chunk) {
            self.recycle(name.chunk);
        }
    }

    /// Whether the chunks hold so much more than the names in use that
    /// their holder should call [`Names::compact`].
    pub(crate) fn wants_compaction(&self) -> bool {
        self.held > 2 * self.live + 4 * CHUNK
    }

    /// Moves the names in chunks at most three quarters in use (but the
    /// current one) to the newest, and frees those chunks. `names` must
    /// be every name in use, each once (empty ones may come too).
    pub(crate) fn compact<'a>(&mut self, names: impl Iterator<Item = &'a mut Name>) {
        let sparse: Vec<bool> = (0..self.chunks.len())
            .map(|i| {
                let c = &self.chunks[i];
                c.in_use && self.current != Some(i as u32) && c.live * 4 <= c.bytes.capacity() * 3
            })
            .collect();
        for name in names {
            if name.len > 0 && sparse[name.chunk as usize] {
                *name = self.relocate(*name);
            }
        }
        for (i, _) in sparse.iter().enumerate().filter(|(_, &s)| s) {
            // A name in use that was not given keeps its chunk.
            debug_assert_eq!(self.chunks[i].live, 0, "a name in use was not given");
            if self.chunks[i].live == 0 {
                self.recycle(i as u32);
            }
        }
    }

    /// Writes `name` again where names are written now.
    fn relocate(&mut self, name: Name) -> Name {
        let mut bytes = std::mem::take(&mut self.scratch);
        bytes.clear();
        bytes.extend_from_slice(self.get(name));
        let moved = self.add(&bytes);
        self.scratch = bytes;
        self.chunks[name.chunk as usize].live -= usize::from(name.len);
        self.live -= usize::from(name.len);
        moved
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
        if !spare {
            c.bytes = Vec::new();
        }
        self.free.push(i);
    }

    /// (bytes of names in use, bytes of the chunks in use), for tests.
    #[cfg(test)]
    pub(super) fn usage(&self) -> (usize, usize) {
        (self.live, self.held)
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
    use super::{Name, Names, CHUNK, MAX_FILE_NAME};
    use proptest::prelude::*;
    use std::collections::VecDeque;

    fn name_of(n: u32, len: usize) -> Vec<u8> {
        let mut v = format!("job{n}/").into_bytes();
        v.resize(len.max(v.len()), b'a' + (n % 26) as u8);
        v
    }

    /// Holders of names, as a job table is: it compacts them when asked.
    #[derive(Default)]
    struct Holders {
        names: Names,
        held: Vec<Option<(Name, Vec<u8>)>>,
    }

    impl Holders {
        fn add(&mut self, at: usize, n: u32, len: usize) {
            if self.held.len() <= at {
                self.held.resize(at + 1, None);
            }
            if self.names.wants_compaction() {
                let names = self.held.iter_mut().flatten().map(|(name, _)| name);
                self.names.compact(names);
            }
            let mut bytes = name_of(n, len);
            let name = self.names.add(&bytes);
            bytes.truncate(MAX_FILE_NAME);
            if let Some((old, _)) = self.held[at].replace((name, bytes)) {
                self.names.release(old);
            }
        }

        fn release(&mut self, at: usize) {
            if let Some((old, _)) = self.held.get_mut(at).and_then(Option::take) {
                self.names.release(old);
            }
        }

        fn check(&self) -> Result<(), TestCaseError> {
            for (at, (name, bytes)) in self
                .held
                .iter()
                .enumerate()
                .filter_map(|(i, h)| Some((i, h.as_ref()?)))
            {
                prop_assert_eq!(self.names.get(*name), &bytes[..], "holder {}", at);
            }
            let live: usize = self.held.iter().flatten().map(|(_, b)| b.len()).sum();
            let (counted, held) = self.names.usage();
            prop_assert_eq!(counted, live);
            prop_assert!(
                held <= 2 * live + 5 * CHUNK,
                "{} held for {} live",
                held,
                live
            );
            Ok(())
        }
    }

    proptest! {
        /// Whatever names come and go, each holder reads back its own, and
        /// the chunks never hold much more than twice the bytes in use.
        #[test]
        fn every_holder_reads_its_own_name_and_memory_stays_bounded(
            ops in proptest::collection::vec((0usize..64, 0usize..3000, any::<bool>()), 1..600)
        ) {
            let mut h = Holders::default();
            for (n, (at, len, long)) in ops.into_iter().enumerate() {
                // Mostly short names, now and then one too long to be a path.
                let len = if long && len < 20 { MAX_FILE_NAME + len } else { len % 200 };
                if n % 3 == 0 {
                    h.release(at);
                } else {
                    h.add(at, n as u32, len);
                }
                h.check()?;
            }
        }

        /// Names released in the order they came, as the history's are:
        /// the chunks hold little more than them (a chunk is left for the
        /// next when a name does not fit: it wastes less than the longest
        /// name, a sixteenth of it; plus the oldest and the current chunk).
        #[test]
        fn names_released_in_order_hold_little_more_than_themselves(
            ops in proptest::collection::vec((0usize..5000, 0usize..4), 1..800)
        ) {
            let mut names = Names::default();
            let mut kept = VecDeque::new();
            for (n, (len, releases)) in ops.into_iter().enumerate() {
                for _ in 0..releases.min(kept.len()) {
                    if let Some((name, _)) = kept.pop_front() {
                        names.release(name);
                    }
                }
                let bytes = name_of(n as u32, len);
                let name = names.add(&bytes);
                kept.push_back((name, bytes[..bytes.len().min(MAX_FILE_NAME)].to_vec()));
                let live: usize = kept.iter().map(|(_, b)| b.len()).sum();
                for (name, bytes) in &kept {
                    prop_assert_eq!(names.get(*name), &bytes[..]);
                }
                prop_assert!(!names.wants_compaction());
                let held = names.usage().1;
                prop_assert!(held <= live * 16 / 15 + 2 * CHUNK, "{} held for {}", held, live);
            }
        }
    }

    #[test]
    fn names_kept_for_long_do_not_keep_their_chunks() {
        // Holder 0 takes one name after another; every 700th name (about
        // one a chunk) stays, with a holder of its own, as if its job never
        // ended.
        let mut h = Holders::default();
        let mut kept = 0;
        for n in 0..100_000u32 {
            let at = if n % 700 == 0 { kept + 1 } else { 0 };
            kept += usize::from(at > 0);
            h.add(at, n, 100);
        }
        h.check().unwrap();
        let (live, held) = h.names.usage();
        assert_eq!(live, 100 * (kept + 1));
        assert!(held <= 6 * CHUNK, "{held} bytes held for {live}");
    }
}
