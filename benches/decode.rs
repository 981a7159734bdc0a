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
//! Run: `cargo bench --bench decode`. The message count per iteration is
//! printed first, so messages/s = count / time.

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
                    black_box(stats.stats());
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

fn decode(c: &mut Criterion) {
    let segments = stream();
    let bytes: usize = segments.iter().map(|s| s.frames.len()).sum();
    let messages = decode_all(&segments);
    eprintln!("stream: {bytes} bytes, {messages} messages per iteration");
    let flat: Vec<u8> = segments
        .iter()
        .flat_map(|s| s.frames.iter().copied())
        .collect();
    let mut copy = vec![0u8; flat.len()];

    let mut group = c.benchmark_group("stream");
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

criterion_group!(benches, decode);
criterion_main!(benches);
