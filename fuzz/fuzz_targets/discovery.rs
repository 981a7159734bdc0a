//! The discovery datagram parsers on arbitrary bytes.
//!
//! The first byte is the version our request carried; the rest is a
//! datagram, read as a reply to that request, as a scheduler announcement and
//! as a request. A parsed reply, rebuilt with `discovery_reply`, parses back
//! to the same information (as far as the request's layout carries it).

#![no_main]

use icewatch::protocol::discovery::*;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&request, datagram)) = data.split_first() else {
        return;
    };
    if let Ok(info) = parse_discovery_reply(datagram, request) {
        assert!(!info.netname.contains(&0));
        let rebuilt = discovery_reply(request, &info);
        let back = parse_discovery_reply(&rebuilt, request).expect("rebuilt reply");
        // A name may lose its last byte: a datagram without a NUL fills its
        // buffer, a reply keeps one byte for the NUL.
        assert!(info.netname.starts_with(back.netname));
        if request >= 33 {
            assert_eq!(
                (back.version, back.start_time),
                (info.version, info.start_time)
            );
        } else {
            assert_eq!((back.version, back.start_time), (32, 0));
        }
    }
    if let Some(info) = parse_scheduler_announcement(datagram) {
        assert!(!info.netname.contains(&0));
        assert!(info.version <= 255);
    }
    if let Some(version) = parse_discovery_request(datagram) {
        assert_eq!([version], datagram);
    }
});
