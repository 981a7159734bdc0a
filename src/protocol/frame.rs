//! The envelope around every message after the handshake: a big-endian
//! `u32` length `L` (not counting itself), then `L` bytes: a big-endian `u32`
//! type code and the body.
//!
//! [`parse_frame`] is a streaming parser: on a partial buffer it says how many
//! more bytes it needs, and it checks the length against a maximum before
//! anything is taken or allocated, as icecream itself does (it drops a peer
//! whose length word exceeds [`MAX_MSG_SIZE`]). A whole frame is handed out
//! as a [`RawFrame`] for [`Message::decode`](super::Message::decode), which
//! then treats a short body as an invalid message, never as "need more".
//!
//! A monitor's read loop over a blocking socket (a thread replays a real
//! scheduler's capture on the other end, in pieces that cut frames apart):
//!
//! ```
//! use bytes::{Buf, BytesMut};
//! use icewatch::protocol::frame::{parse_frame, FrameError, MAX_MSG_SIZE};
//! use icewatch::protocol::handshake::handshake_blocking;
//! use icewatch::protocol::{Message, PROTOCOL_VERSION};
//! use std::io::{Read, Write};
//! use std::os::unix::net::UnixStream;
//!
//! let (mut socket, mut scheduler) = UnixStream::pair()?;
//! let capture = include_bytes!("../../tests/data/basic.v43.bin");
//! let replay = std::thread::spawn(move || -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//!     handshake_blocking(&mut scheduler, 43)?;
//!     let mut login = [0u8; 8];
//!     scheduler.read_exact(&mut login)?;
//!     assert_eq!(login, [0, 0, 0, 4, 0, 0, 0, 0x52]); // MON_LOGIN
//!     for piece in capture[8..].chunks(1000) {
//!         scheduler.write_all(piece)?;
//!     }
//!     Ok(())
//! });
//!
//! let version = handshake_blocking(&mut socket, PROTOCOL_VERSION)?;
//! let mut out = BytesMut::new();
//! Message::MonLogin.encode(version, &mut out);
//! socket.write_all(&out)?;
//!
//! let mut buf = BytesMut::with_capacity(64 * 1024);
//! let mut chunk = [0u8; 4096];
//! let mut jobs_done = 0;
//! loop {
//!     match parse_frame(&buf, MAX_MSG_SIZE) {
//!         Ok((rest, raw)) => {
//!             let used = buf.len() - rest.len();
//!             if let Message::MonJobDone(_) = Message::decode(raw.ty, raw.body, version)? {
//!                 jobs_done += 1;
//!             }
//!             buf.advance(used);
//!         }
//!         // Read at least `needed` more bytes; end on a clean close.
//!         Err(FrameError::Incomplete { needed: _ }) => {
//!             let n = socket.read(&mut chunk)?;
//!             if n == 0 {
//!                 break;
//!             }
//!             buf.extend_from_slice(&chunk[..n]);
//!         }
//!         // Too large or too short: the stream cannot be trusted any more.
//!         Err(e) => return Err(e.into()),
//!     }
//! }
//! assert!(buf.is_empty(), "the scheduler closed inside a frame");
//! assert_eq!((version, jobs_done), (43, 42));
//! replay.join().unwrap().unwrap();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! An async connection does the same over a `BytesMut` and cuts each frame
//! with `split_to(4 + L).freeze()`, so decoded messages can borrow an owned
//! `Bytes` while the buffer fills again.

use super::MsgType;

/// icecream's own limit on a frame's length (`MAX_MSG_SIZE`, 1 MiB).
pub const MAX_MSG_SIZE: u32 = 1 << 20;

/// One frame cut out of a buffer, body not yet decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawFrame<'a> {
    /// The type code.
    pub ty: MsgType,
    /// The body, after the type code.
    pub body: &'a [u8],
}

/// Why no frame could be taken from a buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The buffer ends inside the frame: read at least `needed` more bytes.
    #[error("incomplete frame: {needed} more bytes needed")]
    Incomplete {
        /// Bytes still missing (at least).
        needed: usize,
    },
    /// The length word exceeds the maximum; the stream cannot be trusted.
    #[error("frame length {len} exceeds the maximum of {max} bytes")]
    TooLarge {
        /// The length announced.
        len: u32,
        /// The maximum allowed.
        max: u32,
    },
    /// The length word is too small to hold a type code.
    #[error("frame length {len} is too small to hold a message type")]
    TooShort {
        /// The length announced.
        len: u32,
    },
}

/// Takes one frame from the front of `input`; returns the rest and the frame.
///
/// `max_len` bounds the length word (use [`MAX_MSG_SIZE`] unless you have a
/// reason); it is checked as soon as the four length bytes are there.
#[inline]
pub fn parse_frame(input: &[u8], max_len: u32) -> Result<(&[u8], RawFrame<'_>), FrameError> {
    let Some((len_word, rest)) = input.split_first_chunk::<4>() else {
        return Err(FrameError::Incomplete {
            needed: 4 - input.len(),
        });
    };
    let len = u32::from_be_bytes(*len_word);
    if len > max_len {
        return Err(FrameError::TooLarge { len, max: max_len });
    }
    if len < 4 {
        return Err(FrameError::TooShort { len });
    }
    let len = len as usize;
    if rest.len() < len {
        return Err(FrameError::Incomplete {
            needed: len - rest.len(),
        });
    }
    let (frame, rest) = rest.split_at(len);
    let (ty, body) = frame.split_at(4);
    let ty = MsgType(u32::from_be_bytes([ty[0], ty[1], ty[2], ty[3]]));
    Ok((rest, RawFrame { ty, body }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const END_FRAME: [u8; 8] = [0, 0, 0, 4, 0, 0, 0, 0x43];

    #[test]
    fn takes_one_frame_and_leaves_the_rest() {
        let mut input = END_FRAME.to_vec();
        input.push(7);
        let (rest, frame) = parse_frame(&input, MAX_MSG_SIZE).unwrap();
        assert_eq!(rest, &[7]);
        assert_eq!(
            frame,
            RawFrame {
                ty: MsgType::END,
                body: &[]
            }
        );
    }

    #[test]
    fn every_prefix_is_incomplete_with_the_exact_need() {
        for n in 0..END_FRAME.len() {
            let needed = if n < 4 { 4 - n } else { 8 - n };
            assert_eq!(
                parse_frame(&END_FRAME[..n], MAX_MSG_SIZE),
                Err(FrameError::Incomplete { needed })
            );
        }
    }

    #[test]
    fn oversized_length_is_refused_before_the_body_arrives() {
        let input = [0, 0x10, 0, 1];
        assert_eq!(
            parse_frame(&input, MAX_MSG_SIZE),
            Err(FrameError::TooLarge {
                len: MAX_MSG_SIZE + 1,
                max: MAX_MSG_SIZE
            })
        );
        assert_eq!(
            parse_frame(&[0, 0, 0, 3], MAX_MSG_SIZE),
            Err(FrameError::TooShort { len: 3 })
        );
    }
}
