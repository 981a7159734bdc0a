//! Decoding throughput of the codec beside a plain memcpy of the same bytes.
//!
//! The stream is realistic: every capture in `tests/data/` (what a real
//! icecream 1.4 scheduler sent a monitor, at eight protocol versions) has its
//! frames repeated until the whole stream is about 50 MB. One iteration cuts
//! every frame (`frame::parse_frame`), decodes it at its capture's agreed
//! version (`Message::decode`) and reads every `MON_STATS` text into typed
//! host statistics (`MonStats::stats`). The `memcpy` benchmark copies the
//! same bytes into a buffer allocated once, in the same run.
//!
//! Both are measured twice: `stream` in wall-clock time (criterion's
//! default) and `stream-cpu` in the benchmark thread's CPU time, which a
//! machine shared with other work inflates far less (time spent descheduled
//! does not count; cache and memory contention still do).
//!
//! Run: `cargo bench --bench decode`. The message count per iteration is
//! printed first, so messages/s = count / time.

use cpu_time::ThreadTime;
use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use icewatch::protocol::frame::{parse_frame, MAX_MSG_SIZE};
use icewatch::protocol::Message;
use std::hint::black_box;
use std::time::Duration;

const CAPTURES: &[&[u8]] = &[
    include_bytes!("../tests/data/basic.v21.bin"),
    include_bytes!("../tests/data/basic.v22.bin"),
    include_bytes!("../tests/data/basic.v29.bin"),
    include_bytes!("../tests/data/basic.v34.bin"),
    include_bytes!("../tests/data/basic.v38.bin"),
    include_bytes!("../tests/data/basic.v39.bin"),
    include_bytes!("../tests/data/basic.v43.bin"),
    include_bytes!("../tests/data/basic.v44.bin"),
];

const TARGET_BYTES: usize = 50_000_000;

/// One capture's frames repeated, to be decoded at its agreed version.
struct Segment {
    version: u32,
    frames: Vec<u8>,
}

fn stream() -> Vec<Segment> {
    let per_capture = TARGET_BYTES / CAPTURES.len();
    CAPTURES
        .iter()
        .map(|file| {
            let version = u32::from_le_bytes([file[4], file[5], file[6], file[7]]);
            let one = &file[8..];
            let mut frames = Vec::with_capacity(per_capture + one.len());
            while frames.len() < per_capture {
                frames.extend_from_slice(one);
            }
            Segment { version, frames }
        })
        .collect()
}

/// Decodes every frame; returns how many messages it decoded.
fn decode_all(segments: &[Segment]) -> usize {
    let mut messages = 0;
    for segment in segments {
        let mut input = &segment.frames[..];
        while let Ok((rest, raw)) = parse_frame(input, MAX_MSG_SIZE) {
            match &Message::decode(raw.ty, raw.body, segment.version) {
                Ok(Message::MonStats(stats)) => {
                    black_box(&stats.stats());
                }
                Ok(msg) => {
                    black_box(msg);
                }
                Err(e) => panic!("{e}"),
            }
            messages += 1;
            input = rest;
        }
        assert!(input.is_empty());
    }
    messages
}

/// The benchmark thread's CPU time, formatted as durations.
struct ThreadCpuTime;

impl Measurement for ThreadCpuTime {
    type Intermediate = ThreadTime;
    type Value = Duration;

    fn start(&self) -> ThreadTime {
        ThreadTime::now()
    }
    fn end(&self, start: ThreadTime) -> Duration {
        start.elapsed()
    }
    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }
    fn zero(&self) -> Duration {
        Duration::ZERO
    }
    fn to_f64(&self, value: &Duration) -> f64 {
        value.as_nanos() as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        static WALL: WallTime = WallTime;
        WALL.formatter()
    }
}

fn stream_group<M: Measurement>(c: &mut Criterion<M>, name: &str) {
    let segments = stream();
    let bytes: usize = segments.iter().map(|s| s.frames.len()).sum();
    let messages = decode_all(&segments);
    eprintln!("stream: {bytes} bytes, {messages} messages per iteration");
    let flat = segments
        .iter()
        .fold(Vec::with_capacity(bytes), |mut all, s| {
            all.extend_from_slice(&s.frames);
            all
        });
    let mut copy = vec![0u8; flat.len()];

    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Bytes(bytes as u64));
    group.sample_size(30);
    group.measurement_time(Duration::from_secs(10));
    group.bench_function("decode", |b| {
        b.iter(|| assert_eq!(decode_all(black_box(&segments)), messages))
    });
    group.bench_function("memcpy", |b| {
        b.iter(|| {
            copy.copy_from_slice(black_box(&flat));
            black_box(&mut copy);
        })
    });
    group.finish();
}

fn wall_time(c: &mut Criterion) {
    stream_group(c, "stream");
}

fn cpu_time(c: &mut Criterion<ThreadCpuTime>) {
    stream_group(c, "stream-cpu");
}

criterion_group!(wall, wall_time);
criterion_group! {
    name = cpu;
    config = Criterion::default().with_measurement(ThreadCpuTime);
    targets = cpu_time
}
criterion_main!(wall, cpu);
