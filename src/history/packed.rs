//! Records on their way to the database, packed: a burst finishes jobs far
//! faster than the database takes them (317,093 in 0.3 s in `load e2e`,
//! against seconds of the writer), and what waits meanwhile is most of the
//! process's memory. A [`JobRecord`] takes 168 bytes; packed, its numbers
//! are varints (postcard's encoding), its id and times differences from the
//! job before, its names an index into the chunk's list of names (each
//! shared with the reader's): about 40 bytes, which LZ4 halves while they
//! wait (19.5 bytes a job of `load e2e`'s burst, its names 19 more). The
//! few other records (host logins, sessions, load samples) stay as they
//! are, in their place.
//!
//! The reader packs what it takes, the writer unpacks a transaction's worth
//! at a time ([`Packed::unpack`]), the batch it unpacks uncompressed.

use super::record::{JobRecord, Record};
use crate::monitor::{EndReason, JobState, JobStats};
use crate::protocol::Language;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::sync::Arc;

/// Records in their order, jobs packed.
#[derive(Debug, Default)]
pub struct Packed {
    /// A packed [`Item`] a record, from `read` on; compressed (LZ4) from
    /// when it is sealed to its first unpacking.
    bytes: Vec<u8>,
    read: usize,
    compressed: bool,
    /// [`Packed::size`].
    size: usize,
    /// The jobs' file and host names, each once, and the memory they take.
    names: Vec<Arc<str>>,
    names_bytes: usize,
    /// The records that are not jobs, in order.
    others: VecDeque<Record>,
    /// Records not unpacked yet.
    len: usize,
    /// The previous job's id and end, packing and unpacking.
    last: (u32, u64),
    /// Records that could not be packed.
    dropped: usize,
    /// Where each name is in `names`, while packing: by address, as the
    /// reader shares each name between its records (and `names` keeps
    /// every one alive, so no address is taken twice).
    index: FxHashMap<usize, u32>,
}

/// One record as packed.
#[derive(Serialize, Deserialize)]
enum Item {
    /// The next of [`Packed::others`].
    Other,
    Job(Job),
}

/// A [`JobRecord`] as packed.
#[derive(Serialize, Deserialize)]
struct Job {
    session: u32,
    /// Less the previous job's.
    id: i64,
    /// An index into the names.
    file: u32,
    /// A [`Language`]'s number plus one; 0 for none.
    lang: u8,
    client: Option<u32>,
    /// An index into the names plus one; 0 for none.
    client_name: u32,
    server: Option<u32>,
    server_name: u32,
    state: u8,
    reason: u8,
    exit_code: Option<i32>,
    /// Before the start.
    submit: Option<i64>,
    /// Before the end.
    start: i64,
    /// Less the previous job's end.
    end: i64,
    /// In the order of its fields, varints like the rest.
    stats: Option<JobStats>,
}

/// The records of a [`Packed`] that could not be read back (a packing
/// bug: it is counted as lost, never a panic).
#[derive(Debug, PartialEq, Eq)]
pub struct Unreadable(pub usize);

impl Packed {
    /// `records`, packed.
    pub fn of(records: Vec<Record>) -> Packed {
        let mut packed = Packed::default();
        packed.push(records);
        packed.seal();
        packed
    }

    /// Packs `records` after those packed so far.
    fn push(&mut self, records: Vec<Record>) {
        for record in records {
            let item = match record {
                Record::Job(j) => Item::Job(self.pack(j)),
                other => {
                    self.others.push_back(other);
                    Item::Other
                }
            };
            let at = self.bytes.len();
            match postcard::to_io(&item, &mut self.bytes) {
                Ok(_) => self.len += 1,
                // Into a vector nothing fails; were it to, counted.
                Err(_) => {
                    self.bytes.truncate(at);
                    self.dropped += 1;
                }
            }
        }
    }

    /// Done packing: gives back the room packing needed, to be unpacked.
    fn seal(&mut self) {
        self.bytes = lz4_flex::block::compress_prepend_size(&self.bytes);
        self.compressed = true;
        self.names.shrink_to_fit();
        self.others.shrink_to_fit();
        self.index = FxHashMap::default();
        self.size = self.bytes.capacity()
            + self.names_bytes
            + self.others.capacity() * std::mem::size_of::<Record>();
        self.last = (0, 0);
    }

    fn pack(&mut self, j: JobRecord) -> Job {
        let (last_id, last_end) = self.last;
        self.last = (j.id, j.end_ms);
        Job {
            session: j.session,
            id: i64::from(j.id) - i64::from(last_id),
            file: self.name(&j.file),
            lang: j.lang.map_or(0, lang_code),
            client: j.client,
            client_name: j.client_name.map_or(0, |n| self.name(&n) + 1),
            server: j.server,
            server_name: j.server_name.map_or(0, |n| self.name(&n) + 1),
            state: state_code(j.state),
            reason: reason_code(j.reason),
            exit_code: j.exit_code,
            submit: j.submit_ms.map(|s| j.start_ms.wrapping_sub(s) as i64),
            start: j.end_ms.wrapping_sub(j.start_ms) as i64,
            end: j.end_ms.wrapping_sub(last_end) as i64,
            stats: j.stats,
        }
    }

    /// The index of `name` among the names.
    fn name(&mut self, name: &Arc<str>) -> u32 {
        let (names, bytes) = (&mut self.names, &mut self.names_bytes);
        *self.index.entry(name.as_ptr() as usize).or_insert_with(|| {
            // The pointer, and the name after its two counts.
            *bytes += 4 * std::mem::size_of::<usize>() + name.len();
            names.push(name.clone());
            u32::try_from(names.len() - 1).unwrap_or(u32::MAX)
        })
    }

    /// Records not unpacked yet.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Records that could not be packed (none but for a bug: counted as
    /// lost, never a panic).
    pub fn dropped(&self) -> usize {
        self.dropped
    }

    /// Whether every record was unpacked.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The memory it takes sealed, about: its names whole, as if it were
    /// the last to hold them (the reader's own list of names lets go of
    /// them). The same from its sealing to its end, for the count of what
    /// waits: once it is being unpacked its bytes take up to twice what
    /// they did sealed, for one batch at a time.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Moves up to `max` records, the oldest first, to `out`. A record
    /// that cannot be read back ends the unpacking: it and those after it
    /// are dropped and counted.
    pub fn unpack(&mut self, out: &mut Vec<Record>, max: usize) -> Result<(), Unreadable> {
        if std::mem::take(&mut self.compressed) && self.len > 0 {
            match lz4_flex::block::decompress_size_prepended(&self.bytes) {
                Ok(bytes) => self.bytes = bytes,
                Err(_) => self.bytes.clear(),
            }
        }
        let count = max.min(self.len);
        out.reserve_exact(count);
        for _ in 0..count {
            match self.next() {
                Some(record) => {
                    out.push(record);
                    self.len -= 1;
                }
                None => {
                    let lost = std::mem::take(&mut self.len);
                    self.others.clear();
                    return Err(Unreadable(lost));
                }
            }
        }
        Ok(())
    }

    fn next(&mut self) -> Option<Record> {
        let rest = self.bytes.get(self.read..)?;
        let (item, after) = postcard::take_from_bytes::<Item>(rest).ok()?;
        self.read = self.bytes.len() - after.len();
        let j = match item {
            Item::Other => return self.others.pop_front(),
            Item::Job(j) => j,
        };
        let (last_id, last_end) = self.last;
        let id = u32::try_from(i64::from(last_id) + j.id).ok()?;
        let end_ms = last_end.wrapping_add(j.end as u64);
        self.last = (id, end_ms);
        let start_ms = end_ms.wrapping_sub(j.start as u64);
        let name = |i: u32| self.names.get(usize::try_from(i).ok()?).cloned();
        let host = |i: u32| match i {
            0 => Some(None),
            i => name(i - 1).map(Some),
        };
        Some(Record::Job(JobRecord {
            session: j.session,
            id,
            file: name(j.file)?,
            lang: j.lang.checked_sub(1).map(|l| Language(u32::from(l)).name()),
            client: j.client,
            client_name: host(j.client_name)?,
            server: j.server,
            server_name: host(j.server_name)?,
            state: *STATES.get(usize::from(j.state))?,
            reason: *EndReason::ALL.get(usize::from(j.reason))?,
            exit_code: j.exit_code,
            submit_ms: j.submit.map(|s| start_ms.wrapping_sub(s as u64)),
            start_ms,
            end_ms,
            stats: j.stats,
        }))
    }
}

/// Every state, in the order of [`state_code`].
const STATES: [JobState; 7] = [
    JobState::Waiting,
    JobState::Compiling,
    JobState::Finished,
    JobState::Failed,
    JobState::CutShort,
    JobState::Local,
    JobState::LocalFinished,
];

fn state_code(state: JobState) -> u8 {
    match state {
        JobState::Waiting => 0,
        JobState::Compiling => 1,
        JobState::Finished => 2,
        JobState::Failed => 3,
        JobState::CutShort => 4,
        JobState::Local => 5,
        JobState::LocalFinished => 6,
    }
}

fn reason_code(reason: EndReason) -> u8 {
    match reason {
        EndReason::Exit => 0,
        EndReason::LocalDone => 1,
        EndReason::HostLeft => 2,
        EndReason::SchedulerLost => 3,
        EndReason::Stale => 4,
    }
}

/// A language's name (as [`Language::name`] gives it) as its number plus
/// one; any other name as the unknown language's (`?`).
fn lang_code(name: &str) -> u8 {
    (0..5)
        .find(|&l| Language(l).name() == name)
        .map_or(6, |l| l as u8 + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::record::LoadSample;
    use proptest::prelude::*;

    fn job() -> impl Strategy<Value = JobRecord> {
        let names: Vec<Arc<str>> = ["a.cpp", "src/b.c", "node1", "node2"]
            .map(Arc::from)
            .to_vec();
        let name = proptest::sample::select(names);
        (
            (any::<u32>(), any::<u32>(), name.clone(), 0u32..8),
            (
                any::<Option<u32>>(),
                proptest::option::of(name.clone()),
                any::<Option<u32>>(),
                proptest::option::of(name),
            ),
            (
                proptest::sample::select(&STATES[..]),
                proptest::sample::select(&EndReason::ALL[..]),
                any::<Option<i32>>(),
            ),
            (any::<Option<u64>>(), any::<u64>(), any::<u64>()),
            any::<Option<[u32; 8]>>(),
        )
            .prop_map(|(a, b, c, d, stats)| JobRecord {
                session: a.0,
                id: a.1,
                file: a.2,
                lang: (a.3 > 0).then(|| Language(a.3 - 1).name()),
                client: b.0,
                client_name: b.1,
                server: b.2,
                server_name: b.3,
                state: c.0,
                reason: c.1,
                exit_code: c.2,
                submit_ms: d.0,
                start_ms: d.1,
                end_ms: d.2,
                stats: stats.map(JobStats::from),
            })
    }

    fn record() -> impl Strategy<Value = Record> {
        prop_oneof![
            4 => job().prop_map(Record::Job),
            1 => any::<(u32, u64)>().prop_map(|(local, end_ms)| Record::SessionEnd { local, end_ms }),
            1 => any::<u32>().prop_map(|load| Record::Load(LoadSample {
                name: "node1".into(),
                at_ms: 7,
                load,
                load_avg1: None,
                free_mem_mb: Some(3),
            })),
        ]
    }

    proptest! {
        /// Whatever the records, they come back as they went in, in
        /// their order, however they are taken out.
        #[test]
        fn records_unpack_as_they_were_packed(
            records in proptest::collection::vec(record(), 0..200),
            step in 1usize..50,
        ) {
            let mut packed = Packed::of(records.clone());
            prop_assert_eq!((packed.len(), packed.dropped()), (records.len(), 0));
            let mut out = Vec::new();
            while !packed.is_empty() {
                let before = out.len();
                prop_assert_eq!(packed.unpack(&mut out, step), Ok(()));
                prop_assert!(out.len() - before <= step);
            }
            prop_assert_eq!(out, records);
        }
    }

    #[test]
    fn a_job_of_a_busy_cluster_packs_in_under_48_bytes() {
        let file: Arc<str> = "src/subsystem3/module42/implementation_42.cpp".into();
        let (client, server): (Arc<str>, Arc<str>) =
            ("node00042.build".into(), "node04242.build".into());
        let records: Vec<Record> = (0..10_000u32)
            .map(|i| {
                Record::Job(JobRecord {
                    session: 1,
                    id: 2 * i + 1,
                    file: file.clone(),
                    lang: Some("C++"),
                    client: Some(42),
                    client_name: Some(client.clone()),
                    server: Some(4242),
                    server_name: Some(server.clone()),
                    state: JobState::Finished,
                    reason: EndReason::Exit,
                    exit_code: Some(0),
                    submit_ms: Some(1_700_000_000_000 + u64::from(i)),
                    start_ms: 1_700_000_000_020 + u64::from(i),
                    end_ms: 1_700_000_001_500 + u64::from(i),
                    stats: Some(JobStats {
                        real_ms: 1480,
                        user_ms: 1200,
                        sys_ms: 150,
                        page_faults: 3,
                        in_compressed: 120_000,
                        in_uncompressed: 480_000,
                        out_compressed: 30_000,
                        out_uncompressed: 90_000,
                    }),
                })
            })
            .collect();
        let packed = Packed::of(records);
        assert!(packed.size() < 48 * 10_000, "{} bytes", packed.size());
    }

    #[test]
    fn a_record_that_cannot_be_read_back_is_counted_not_a_panic() {
        let mut packed = Packed::of(vec![
            Record::SessionEnd {
                local: 1,
                end_ms: 2
            };
            3
        ]);
        packed.others.pop_back();
        let mut out = Vec::new();
        assert_eq!(packed.unpack(&mut out, 10), Err(Unreadable(1)));
        assert_eq!((out.len(), packed.len()), (2, 0));
    }

    #[test]
    fn a_batch_that_cannot_be_uncompressed_is_counted_not_a_panic() {
        let mut packed = Packed::of(vec![
            Record::SessionEnd {
                local: 1,
                end_ms: 2
            };
            3
        ]);
        packed.bytes.truncate(2);
        let mut out = Vec::new();
        assert_eq!(packed.unpack(&mut out, 10), Err(Unreadable(3)));
        assert_eq!((out.len(), packed.len()), (0, 0));
    }
}
