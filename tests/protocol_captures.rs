//! Golden tests on real captures from an icecream 1.4 scheduler
//! (`tests/data/basic.vNN.bin`, see `tests/data/README.md`): every file
//! decodes completely at its agreed version with the documented counts, and
//! re-encoding every frame reproduces the original bytes.

use bytes::BytesMut;
use icewatch::protocol::frame::{parse_frame, MAX_MSG_SIZE};
use icewatch::protocol::{Message, MsgType};
use std::collections::BTreeMap;

const CAPTURES: &[(u32, &[u8], u32)] = &[
    (21, include_bytes!("data/basic.v21.bin"), 20),
    (22, include_bytes!("data/basic.v22.bin"), 14),
    (29, include_bytes!("data/basic.v29.bin"), 17),
    (34, include_bytes!("data/basic.v34.bin"), 29),
    (38, include_bytes!("data/basic.v38.bin"), 32),
    (39, include_bytes!("data/basic.v39.bin"), 11),
    (43, include_bytes!("data/basic.v43.bin"), 23),
    (44, include_bytes!("data/basic.v44.bin"), 26),
];

fn header(file: &[u8]) -> (u32, u32) {
    let word = |i: usize| u32::from_le_bytes(file[i..i + 4].try_into().unwrap());
    (word(0), word(4))
}

#[test]
fn every_capture_decodes_to_the_documented_counts() {
    for &(offered, file, stats) in CAPTURES {
        let (scheduler, agreed) = header(file);
        assert_eq!(scheduler, 43);
        assert_eq!(agreed, offered.min(43));
        let mut counts = BTreeMap::new();
        let mut input = &file[8..];
        while !input.is_empty() {
            let (rest, raw) = parse_frame(input, MAX_MSG_SIZE).unwrap();
            let msg = Message::decode(raw.ty, raw.body, agreed)
                .unwrap_or_else(|e| panic!("v{offered}: {e}"));
            assert!(
                !matches!(msg, Message::Unknown { .. }),
                "v{offered}: unknown {}",
                raw.ty
            );
            *counts
                .entry(char::from_u32(msg.ty().0).unwrap())
                .or_insert(0u32) += 1;
            input = rest;
        }
        let expected: BTreeMap<char, u32> = [
            ('O', 2),
            ('S', 42),
            ('T', 42),
            ('U', 42),
            ('V', 2),
            ('W', stats),
        ]
        .into();
        assert_eq!(counts, expected, "basic.v{offered}.bin");
    }
}

#[test]
fn re_encoding_every_frame_reproduces_the_capture() {
    for &(offered, file, _) in CAPTURES {
        let (_, agreed) = header(file);
        let mut out = BytesMut::new();
        let mut input = &file[8..];
        while !input.is_empty() {
            let (rest, raw) = parse_frame(input, MAX_MSG_SIZE).unwrap();
            Message::decode(raw.ty, raw.body, agreed)
                .unwrap()
                .encode(agreed, &mut out);
            input = rest;
        }
        assert!(
            out[..] == file[8..],
            "basic.v{offered}.bin differs after re-encoding"
        );
    }
}

#[test]
fn the_capture_tells_one_failed_compile_and_an_offline_host() {
    let (_, file, _) = CAPTURES[6];
    let mut failed = 0;
    let mut offline = Vec::new();
    let mut input = &file[8..];
    while let Ok((rest, raw)) = parse_frame(input, MAX_MSG_SIZE) {
        match Message::decode(raw.ty, raw.body, 43).unwrap() {
            Message::MonJobDone(d) if d.exit_code != 0 => failed += 1,
            Message::MonStats(s) if s.stats().offline => offline.push(s.host_id),
            _ => {}
        }
        input = rest;
    }
    assert_eq!(failed, 1);
    assert_eq!(offline.len(), 1);
    assert_eq!(MsgType::MON_JOB_DONE.name(), Some("MON_JOB_DONE"));
}
