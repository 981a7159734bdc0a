//! The icecream wire protocol: a zero-copy codec for every message, at every
//! protocol version from [`MIN_PROTOCOL_VERSION`] (21) to [`PROTOCOL_VERSION`]
//! (44).
//!
//! This layer knows nothing of sockets or of the monitor: it turns bytes into
//! typed messages that borrow from those bytes, and typed messages back into
//! bytes. Any icecream tool can stand on it: a monitor, a scheduler or daemon
//! stand-in for tests, a proxy, a capture reader.
//!
//! # A binary connection, step by step
//!
//! 1. [`handshake`]: on connect both peers send their highest version as a
//!    little-endian word, then the minimum of both; that agreed version
//!    governs every message on the connection. [`handshake::Handshake`] is
//!    the exchange as a state machine free of I/O; [`handshake::handshake`]
//!    (tokio) and [`handshake::handshake_blocking`] run it on a stream.
//! 2. [`frame`]: after the handshake each message is a big-endian length, a
//!    big-endian type code ([`MsgType`]) and a body.
//!    [`frame::parse_frame`] cuts one frame from the front of a buffer, or
//!    says how many more bytes it needs; it refuses a length above the limit
//!    before the body arrives. [`frame::Frame`] is one whole frame, owned,
//!    cut off a read buffer without a copy: its type, its body, its bytes
//!    as they travelled. The module docs show a whole read loop.
//! 3. [`Message::decode`] parses a body at the agreed version into one
//!    [`Message`], borrowing strings and payloads from the body. A body that
//!    is short, too long or malformed is a [`DecodeError`] naming the type,
//!    version, offset and what was expected; a type code this codec does not
//!    know becomes [`Message::Unknown`], so a newer peer never breaks a
//!    connection.
//! 4. [`Message::encode`] appends a whole frame at a version to a
//!    [`BytesMut`](bytes::BytesMut); [`Message::write_body`] writes only the
//!    body to any [`BufMut`](bytes::BufMut). Re-encoding a decoded frame
//!    gives back its exact bytes.
//!
//! A monitor sends [`Message::MonLogin`] and then only reads: the scheduler
//! answers with a [`MonStats`] for every host ([`MonStats::stats`] reads its
//! `Key:Value` text into [`stats::HostStats`]) and streams [`MonGetCs`],
//! [`MonJobBegin`], [`Message::MonJobDone`] (or [`Message::JobDone`] from
//! icecream git master: the same [`JobDone`] body under type 0x4d),
//! [`MonLocalJobBegin`], [`JobLocalDone`] and [`Message::End`].
//!
//! ```
//! use icewatch::protocol::{frame, Message};
//!
//! // What a real icecream 1.4 scheduler sent a monitor: its version word,
//! // the agreed version, then frames.
//! let capture = include_bytes!("../../tests/data/basic.v43.bin");
//! let version = u32::from_le_bytes(capture[4..8].try_into().unwrap());
//! let mut input = &capture[8..];
//! let (mut jobs_done, mut offline) = (0, 0);
//! while !input.is_empty() {
//!     let (rest, raw) = frame::parse_frame(input, frame::MAX_MSG_SIZE).unwrap();
//!     match Message::decode(raw.ty, raw.body, version).unwrap() {
//!         Message::MonJobDone(done) => {
//!             assert!(done.real_ms < 60_000);
//!             jobs_done += 1;
//!         }
//!         Message::MonStats(host) if host.stats().offline => offline += 1,
//!         _ => {}
//!     }
//!     input = rest;
//! }
//! assert_eq!((jobs_done, offline), (42, 1));
//! ```
//!
//! # Where each message lives
//!
//! | module | messages |
//! | --- | --- |
//! | [`monitor`] | `MON_GET_CS`, `MON_JOB_BEGIN`, `MON_LOCAL_JOB_BEGIN`, `MON_STATS` |
//! | [`job`] | `GET_CS`, `USE_CS`, `NO_CS`, `COMPILE_FILE`, `FILE_CHUNK`, `COMPILE_RESULT`, `JOB_BEGIN`, `JOB_DONE` (and `MON_JOB_DONE`), `JOB_LOCAL_BEGIN`, `JOB_LOCAL_DONE` |
//! | [`daemon`] | `LOGIN`, `STATS`, `CS_CONF`, `GET_NATIVE_ENV`, `NATIVE_ENV`, `TRANFER_ENV`, `VERIFY_ENV`, `VERIFY_ENV_RESULT`, `BLACKLIST_HOST_ENV`, `STATUS_TEXT` |
//! | [`Message`] | the bodiless `PING`, `END`, `TIMEOUT`, `MON_LOGIN`, `GET_INTERNALS`; raw `TEXT` |
//!
//! Each message has a struct, a `parse_*` function (a nom parser of the whole
//! body at a version) and a `write_*` function that mirrors it; their types
//! are re-exported here. The messages a scheduler sends monitors are also
//! built in one call each ([`Message::mon_stats`], [`Message::mon_get_cs`],
//! [`Message::mon_job_begin`], [`JobDone::new`],
//! [`Message::mon_local_job_begin`], [`Message::job_local_done`]), with the
//! `MON_STATS` text written by [`stats::HostStats::to_text`]. [`wire`]
//! holds the primitives (big-endian `u32`, strings, counted lists).
//! Outside the binary channel: [`discovery`] (the UDP datagrams that find
//! a scheduler), [`text`] (the scheduler's line protocol on its port + 1)
//! and [`stats`] (the text inside `MON_STATS`).
//!
//! # Versions, bytes and numbers
//!
//! Fields that a version does not carry are documented `(vN)` with the
//! version that brought them; below it they decode as 0 or empty and are not
//! written. Strings on the wire are bytes (file names need not be UTF-8), so
//! messages hold `&[u8]`. Numbers are kept exactly as sent: a job's exit code
//! is the raw `u32` ([`JobDone::exit_code_signed`] reads it as the C `int`),
//! and below v39 the "unknown job id" flag travels as exit code 200
//! ([`JobDone::unknown_job_id`]). The one thing re-encoding does not keep is
//! a zero-length string (`00 00 00 00`), which icecream reads as empty but
//! always writes with its NUL (`00 00 00 01 00`); the codec does the same.
//!
//! # Borrowing and allocation
//!
//! A decoded [`Message`] borrows the frame it came from: keep the frame alive
//! (for example as [`Bytes`](bytes::Bytes) cut from the read buffer) for as
//! long as the message, or copy out what you keep. Counted lists
//! ([`StrList`], [`EnvList`]) stay views of the frame, walked on iteration.
//! Cutting a frame, decoding it and reading `MON_STATS` allocate nothing
//! (`tests/protocol_no_alloc.rs` checks it on the captures); encoding writes
//! straight into the output buffer. `FILE_CHUNK` payloads stay compressed:
//! the codec never inflates them.
//!
//! Nothing here panics on wire data: the parsers are fuzzed (`fuzz/`) and
//! property-tested (`tests/protocol_roundtrip.rs`).

mod build;
pub mod daemon;
pub mod discovery;
pub mod frame;
pub mod handshake;
pub mod job;
mod message;
pub mod monitor;
pub mod stats;
pub mod text;
pub mod wire;

pub use daemon::*;
pub use job::*;
pub use message::{DecodeError, Message};
pub use monitor::*;
pub use wire::{EnvList, Environment, StrList};

use std::fmt;

/// The newest protocol version this codec speaks (icecream git master).
pub const PROTOCOL_VERSION: u32 = 44;
/// The oldest protocol version icecream still accepts.
pub const MIN_PROTOCOL_VERSION: u32 = 21;

/// A message type code: the `u32` after a frame's length.
///
/// Codes count up from `'A'`. Unknown codes are kept as numbers so a newer
/// peer never breaks the connection.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MsgType(pub u32);

macro_rules! msg_types {
    ($($name:ident = $code:literal,)*) => {
        impl MsgType {
            $(#[doc = concat!("`", stringify!($name), "`")]
            pub const $name: MsgType = MsgType($code);)*

            /// Every type code icecream defines, in order.
            pub const ALL: &'static [MsgType] = &[$(MsgType::$name),*];

            /// icecream's own name for the type (`"MON_STATS"`), if it has one.
            pub fn name(self) -> Option<&'static str> {
                match self.0 {
                    $($code => Some(stringify!($name)),)*
                    _ => None,
                }
            }
        }
    };
}

msg_types! {
    UNKNOWN = 0x41,
    PING = 0x42,
    END = 0x43,
    TIMEOUT = 0x44,
    GET_NATIVE_ENV = 0x45,
    NATIVE_ENV = 0x46,
    GET_CS = 0x47,
    USE_CS = 0x48,
    COMPILE_FILE = 0x49,
    FILE_CHUNK = 0x4a,
    COMPILE_RESULT = 0x4b,
    JOB_BEGIN = 0x4c,
    JOB_DONE = 0x4d,
    JOB_LOCAL_BEGIN = 0x4e,
    JOB_LOCAL_DONE = 0x4f,
    LOGIN = 0x50,
    STATS = 0x51,
    MON_LOGIN = 0x52,
    MON_GET_CS = 0x53,
    MON_JOB_BEGIN = 0x54,
    MON_JOB_DONE = 0x55,
    MON_LOCAL_JOB_BEGIN = 0x56,
    MON_STATS = 0x57,
    TRANFER_ENV = 0x58,
    TEXT = 0x59,
    STATUS_TEXT = 0x5a,
    GET_INTERNALS = 0x5b,
    CS_CONF = 0x5c,
    VERIFY_ENV = 0x5d,
    VERIFY_ENV_RESULT = 0x5e,
    BLACKLIST_HOST_ENV = 0x5f,
    NO_CS = 0x60,
}

impl fmt::Display for MsgType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "0x{:02x}", self.0),
        }
    }
}

impl fmt::Debug for MsgType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MsgType({self})")
    }
}

/// A compile job's source language, as the raw wire value.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Language(pub u32);

impl Language {
    /// C.
    pub const C: Language = Language(0);
    /// C++.
    pub const CXX: Language = Language(1);
    /// Objective-C.
    pub const OBJC: Language = Language(2);
    /// Objective-C++.
    pub const OBJCXX: Language = Language(3);
    /// A custom compiler.
    pub const CUSTOM: Language = Language(4);

    /// A short name: `C`, `C++`, `ObjC`, `ObjC++`, `custom`, or `?`.
    pub fn name(self) -> &'static str {
        match self.0 {
            0 => "C",
            1 => "C++",
            2 => "ObjC",
            3 => "ObjC++",
            4 => "custom",
            _ => "?",
        }
    }
}

impl fmt::Display for Language {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            0..=4 => f.write_str(self.name()),
            n => write!(f, "lang{n}"),
        }
    }
}

impl fmt::Debug for Language {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Language({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_codes_count_up_from_a() {
        for (i, ty) in MsgType::ALL.iter().enumerate() {
            assert_eq!(ty.0, 0x41 + i as u32);
        }
        assert_eq!(MsgType::NO_CS.to_string(), "NO_CS");
        assert_eq!(MsgType(0x99).to_string(), "0x99");
    }
}
