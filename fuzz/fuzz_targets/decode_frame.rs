//! The envelope and body decoders on arbitrary bytes.
//!
//! The first input byte picks the agreed version (21 + byte % 24); the rest
//! is a stream of frames, cut with `frame::parse_frame` and decoded with
//! `Message::decode` until the first frame error. Whatever decodes must
//! re-encode into a frame that decodes to the same message, and the
//! re-encoded body may differ from the input only where a zero-length string
//! (which icecream reads as empty but never writes) became `00 00 00 01 00`.

#![no_main]

use bytes::BytesMut;
use icewatch::protocol::frame::{parse_frame, MAX_MSG_SIZE};
use icewatch::protocol::{Message, MIN_PROTOCOL_VERSION, PROTOCOL_VERSION};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, mut input)) = data.split_first() else {
        return;
    };
    let span = PROTOCOL_VERSION - MIN_PROTOCOL_VERSION + 1;
    let version = MIN_PROTOCOL_VERSION + u32::from(pick) % span;
    while let Ok((rest, raw)) = parse_frame(input, MAX_MSG_SIZE) {
        if let Ok(msg) = Message::decode(raw.ty, raw.body, version) {
            if let Message::MonStats(stats) = &msg {
                std::hint::black_box(stats.stats());
            }
            let mut out = BytesMut::new();
            msg.encode(version, &mut out);
            let (tail, again) = parse_frame(&out, MAX_MSG_SIZE).expect("re-encoded frame");
            assert!(tail.is_empty());
            assert_eq!(again.ty, raw.ty);
            assert!(
                same_but_empty_strings(raw.body, again.body),
                "re-encoding changed more than empty strings"
            );
            let back = Message::decode(again.ty, again.body, version).expect("re-encoded body");
            assert_eq!(back, msg);
            let mut out2 = BytesMut::new();
            back.encode(version, &mut out2);
            assert_eq!(out2, out);
        }
        input = rest;
    }
});

/// Whether `encoded` is `original` with some zero-length strings
/// (`00 00 00 00`) written the canonical way (`00 00 00 01 00`).
fn same_but_empty_strings(original: &[u8], encoded: &[u8]) -> bool {
    let (mut a, mut b) = (original, encoded);
    loop {
        match (a, b) {
            ([], []) => return true,
            ([0, 0, 0, 0, ra @ ..], [0, 0, 0, 1, 0, rb @ ..]) => (a, b) = (ra, rb),
            ([x, ra @ ..], [y, rb @ ..]) if x == y => (a, b) = (ra, rb),
            _ => return false,
        }
    }
}
