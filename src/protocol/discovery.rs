//! Finding a scheduler by UDP broadcast (port 8765 by default).
//!
//! A client broadcasts one byte, its protocol version. Each scheduler that
//! hears it answers with a datagram whose layout depends on that byte:
//!
//! | client version | reply length | first byte | then |
//! | --- | --- | --- | --- |
//! | < 33 | 16 | version + 1 | netname |
//! | 33..=35 | 32 | version + 2 | u32 version, u64 start time (little-endian), netname |
//! | 36..=37 | 268 | version + 2 | same as above |
//! | ≥ 38 | 268 | version + 3 | u32 version, u32 start high, u32 start low (big-endian), netname |
//!
//! Netnames are NUL-terminated and compared case-insensitively. Schedulers
//! also announce themselves to each other with an `ICF` datagram of 268 bytes
//! ([`parse_scheduler_announcement`]). Never broadcast outside a private
//! network in tests.
//!
//! A client's side, with the reply a version-43 scheduler would send:
//!
//! ```
//! use icewatch::protocol::discovery::*;
//!
//! let request = discovery_request(44); // broadcast this to port 8765
//! let scheduler = SchedulerInfo { version: 43, start_time: 1_700_000_000, netname: b"ICECREAM" };
//! let datagram = discovery_reply(request[0], &scheduler); // what comes back
//! let found = parse_discovery_reply(&datagram, request[0])?;
//! assert_eq!(found, scheduler);
//! assert!(found.netname.eq_ignore_ascii_case(b"icecream"));
//! # Ok::<(), DiscoveryError>(())
//! ```

/// Length of a current reply.
pub const REPLY_LEN: usize = 268;
/// Length of a reply to clients of version 33 to 35.
pub const REPLY_LEN_OLD_2: usize = 32;
/// Length of a reply to clients older than 33.
pub const REPLY_LEN_OLD_1: usize = 16;

/// A scheduler's answer to a discovery request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SchedulerInfo<'a> {
    /// The scheduler's protocol version (32 when an old reply does not say).
    pub version: u32,
    /// When the scheduler started, seconds since the epoch (0 if unknown).
    pub start_time: u64,
    /// The network name it serves.
    pub netname: &'a [u8],
}

/// A datagram that is not a valid reply to our request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not a scheduler discovery reply ({len} bytes, first byte {mark}) for a request of version {request}")]
pub struct DiscoveryError {
    /// Datagram length.
    pub len: usize,
    /// Its first byte.
    pub mark: u8,
    /// The version byte we sent.
    pub request: u8,
}

/// The datagram a client broadcasts: its protocol version as one byte.
pub fn discovery_request(version: u8) -> [u8; 1] {
    [version]
}

/// Reads a discovery request (as a scheduler does): the client's version.
pub fn parse_discovery_request(buf: &[u8]) -> Option<u8> {
    match buf {
        [v] => Some(*v),
        _ => None,
    }
}

/// Builds the reply a scheduler sends to a request of version `request`.
pub fn discovery_reply(request: u8, info: &SchedulerInfo<'_>) -> Vec<u8> {
    let (len, mark, header) = match request {
        0..=32 => (REPLY_LEN_OLD_1, request.wrapping_add(1), Vec::new()),
        33..=37 => {
            let len = if request < 36 {
                REPLY_LEN_OLD_2
            } else {
                REPLY_LEN
            };
            let mut h = info.version.to_le_bytes().to_vec();
            h.extend_from_slice(&info.start_time.to_le_bytes());
            (len, request + 2, h)
        }
        _ => {
            let mut h = info.version.to_be_bytes().to_vec();
            h.extend_from_slice(&((info.start_time >> 32) as u32).to_be_bytes());
            h.extend_from_slice(&(info.start_time as u32).to_be_bytes());
            (REPLY_LEN, request.wrapping_add(3), h)
        }
    };
    let mut buf = vec![0u8; len];
    buf[0] = mark;
    buf[1..1 + header.len()].copy_from_slice(&header);
    let name_room = len - 2 - header.len();
    let name = &info.netname[..info.netname.len().min(name_room)];
    buf[1 + header.len()..1 + header.len() + name.len()].copy_from_slice(name);
    buf
}

/// Reads a scheduler's reply to a request we sent with version `request`.
pub fn parse_discovery_reply(buf: &[u8], request: u8) -> Result<SchedulerInfo<'_>, DiscoveryError> {
    let err = DiscoveryError {
        len: buf.len(),
        mark: buf.first().copied().unwrap_or(0),
        request,
    };
    let mark = err.mark;
    let le = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    match buf.len() {
        REPLY_LEN_OLD_1 if mark == request.wrapping_add(1) => Ok(SchedulerInfo {
            version: 32,
            start_time: 0,
            netname: c_str(&buf[1..]),
        }),
        REPLY_LEN_OLD_2 | REPLY_LEN if mark == request.wrapping_add(2) => {
            let mut time = [0u8; 8];
            time.copy_from_slice(&buf[5..13]);
            Ok(SchedulerInfo {
                version: le(&buf[1..5]),
                start_time: u64::from_le_bytes(time),
                netname: c_str(&buf[13..]),
            })
        }
        REPLY_LEN if mark == request.wrapping_add(3) => Ok(SchedulerInfo {
            version: be(&buf[1..5]),
            start_time: (u64::from(be(&buf[5..9])) << 32) | u64::from(be(&buf[9..13])),
            netname: c_str(&buf[13..]),
        }),
        _ => Err(err),
    }
}

/// Reads a scheduler-to-scheduler `ICF` announcement (version 38 and up).
pub fn parse_scheduler_announcement(buf: &[u8]) -> Option<SchedulerInfo<'_>> {
    if buf.len() != REPLY_LEN || &buf[..3] != b"ICF" {
        return None;
    }
    let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    Some(SchedulerInfo {
        version: u32::from(buf[3]),
        start_time: (u64::from(be(&buf[4..8])) << 32) | u64::from(be(&buf[8..12])),
        netname: c_str(&buf[12..]),
    })
}

/// Bytes up to the first NUL.
fn c_str(b: &[u8]) -> &[u8] {
    b.iter().position(|&c| c == 0).map_or(b, |n| &b[..n])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reply_layout_round_trips() {
        let info = SchedulerInfo {
            version: 43,
            start_time: 0x1_2345_6789,
            netname: b"ICECREAM",
        };
        for request in [21u8, 30, 33, 35, 36, 37, 38, 43, 44] {
            let reply = discovery_reply(request, &info);
            let back = parse_discovery_reply(&reply, request).unwrap();
            assert_eq!(back.netname, b"ICECREAM", "request {request}");
            if request >= 33 {
                assert_eq!(back, info, "request {request}");
            }
        }
    }

    #[test]
    fn a_reply_to_someone_else_is_refused() {
        let reply = discovery_reply(
            44,
            &SchedulerInfo {
                version: 44,
                start_time: 1,
                netname: b"X",
            },
        );
        assert!(parse_discovery_reply(&reply, 43).is_err());
        assert!(parse_discovery_reply(&reply[..20], 44).is_err());
        assert!(parse_discovery_reply(&[], 44).is_err());
    }

    #[test]
    fn announcement_reads_version_time_and_name() {
        let mut buf = vec![0u8; REPLY_LEN];
        buf[..4].copy_from_slice(b"ICF\x2b");
        buf[11] = 5;
        buf[12..16].copy_from_slice(b"LAB1");
        let info = parse_scheduler_announcement(&buf).unwrap();
        assert_eq!(
            (info.version, info.start_time, info.netname),
            (43, 5, &b"LAB1"[..])
        );
    }
}
