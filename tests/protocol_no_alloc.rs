//! Decoding what a monitor receives makes no heap allocation: every frame of
//! every capture in `tests/data/` is cut out (`frame::parse_frame`), decoded
//! (`Message::decode`) and, for `MON_STATS`, read into typed host statistics
//! (`MonStats::stats`) under a counting global allocator.
//!
//! allocation-counter counts the allocations of the measuring thread only:
//! the test harness's own threads, busy on a loaded machine, do not count.

use icewatch::protocol::frame::{parse_frame, MAX_MSG_SIZE};
use icewatch::protocol::Message;
use std::hint::black_box;

const CAPTURES: &[&[u8]] = &[
    include_bytes!("data/basic.v21.bin"),
    include_bytes!("data/basic.v22.bin"),
    include_bytes!("data/basic.v29.bin"),
    include_bytes!("data/basic.v34.bin"),
    include_bytes!("data/basic.v38.bin"),
    include_bytes!("data/basic.v39.bin"),
    include_bytes!("data/basic.v43.bin"),
    include_bytes!("data/basic.v44.bin"),
];

/// Decodes every frame of one capture, touching every field a monitor
/// reads; returns how many messages and how many MON_STATS it decoded.
fn decode_capture(file: &[u8]) -> (usize, usize) {
    let version = u32::from_le_bytes([file[4], file[5], file[6], file[7]]);
    let mut input = &file[8..];
    let (mut messages, mut stats) = (0, 0);
    while !input.is_empty() {
        let (rest, raw) = parse_frame(input, MAX_MSG_SIZE).expect("a whole frame");
        let msg = Message::decode(raw.ty, raw.body, version).expect("a valid body");
        match &msg {
            Message::MonStats(m) => {
                black_box(m.stats());
                stats += 1;
            }
            Message::MonGetCs(m) => {
                black_box(m.request.environments.iter().count());
            }
            _ => {}
        }
        black_box(msg);
        messages += 1;
        input = rest;
    }
    (messages, stats)
}

#[test]
fn decoding_every_monitor_message_of_the_captures_allocates_nothing() {
    let mut messages = 0;
    let mut stats = 0;
    let made = allocation_counter::measure(|| {
        for file in CAPTURES {
            let (m, s) = decode_capture(file);
            messages += m;
            stats += s;
        }
    });

    // 130 job messages per capture plus its MON_STATS (172 in all).
    assert_eq!((messages, stats), (8 * 130 + 172, 172));
    assert_eq!(
        (made.count_total, made.bytes_total),
        (0, 0),
        "decoding {messages} messages allocated: {made:?}"
    );

    // The counter does see allocations: a control that must count one.
    let control = allocation_counter::measure(|| {
        black_box(Vec::<u8>::with_capacity(black_box(16)));
    });
    assert!(control.count_total >= 1);
}
