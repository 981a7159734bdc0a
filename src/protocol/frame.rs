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
//! An async connection does the same over a `BytesMut`, but keeps each
//! frame: [`Frame::split_from`] cuts it off the buffer as an owned [`Frame`]
//! (`split_to(4 + L).freeze()`, no copy), whose messages borrow it while the
//! buffer fills again.
//!
//! ```
//! use bytes::BytesMut;
//! use icewatch::protocol::frame::{Frame, FrameError, MAX_MSG_SIZE};
//! use icewatch::protocol::{Message, MsgType};
//!
//! let mut buf = BytesMut::new();
//! Message::job_local_done(7).encode(43, &mut buf);
//! Message::End.encode(43, &mut buf);
//! let done = Frame::split_from(&mut buf, MAX_MSG_SIZE)?;
//! assert_eq!(done.ty(), MsgType::JOB_LOCAL_DONE);
//! assert_eq!(done.as_bytes(), [0, 0, 0, 8, 0, 0, 0, 0x4f, 0, 0, 0, 7]);
//! assert_eq!(done.decode(43)?, Message::job_local_done(7));
//! assert_eq!(Frame::split_from(&mut buf, MAX_MSG_SIZE)?.decode(43)?, Message::End);
//! assert_eq!(
//!     Frame::split_from(&mut buf, MAX_MSG_SIZE),
//!     Err(FrameError::Incomplete { needed: 4 })
//! );
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use super::{DecodeError, Message, MsgType};
use bytes::{Bytes, BytesMut};
use std::fmt;

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

/// One whole frame, owned: its bytes exactly as they travelled (length
/// word, type code, body), so that a recording keeps them byte for byte,
/// with the type and body read off them without parsing again.
///
/// A `Frame` is always whole: its length word says how long it is, and it
/// has a type code. It is made by cutting one off a read buffer
/// ([`Frame::split_from`]) or by encoding a message ([`Frame::encode`]);
/// cloning one shares its bytes.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Frame {
    ty: MsgType,
    bytes: Bytes,
}

impl Frame {
    /// Cuts the first whole frame off the front of `buf`, without copying
    /// it. `max_len` bounds the length word as in [`parse_frame`]; on any
    /// error (among them [`FrameError::Incomplete`]: read more, then try
    /// again) `buf` is left as it was.
    #[inline]
    pub fn split_from(buf: &mut BytesMut, max_len: u32) -> Result<Frame, FrameError> {
        let (rest, raw) = parse_frame(buf, max_len)?;
        let (ty, len) = (raw.ty, buf.len() - rest.len());
        Ok(Frame {
            ty,
            bytes: buf.split_to(len).freeze(),
        })
    }

    /// `msg` encoded at protocol `version`, as a frame of its own.
    pub fn encode(msg: &Message<'_>, version: u32) -> Frame {
        let mut out = BytesMut::new();
        msg.encode(version, &mut out);
        Frame {
            ty: msg.ty(),
            bytes: out.freeze(),
        }
    }

    /// The type code.
    #[inline]
    pub fn ty(&self) -> MsgType {
        self.ty
    }

    /// The body: what follows the type code.
    #[inline]
    pub fn body(&self) -> &[u8] {
        self.bytes.get(8..).unwrap_or_default()
    }

    /// The whole frame, length word included, as it travelled.
    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The body decoded at the agreed protocol `version`: the message
    /// borrows the frame.
    #[inline]
    pub fn decode(&self, version: u32) -> Result<Message<'_>, DecodeError> {
        Message::decode(self.ty, self.body(), version)
    }
}

impl fmt::Debug for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Frame")
            .field("ty", &self.ty)
            .field("len", &self.bytes.len())
            .finish()
    }
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
    fn a_frame_cut_from_a_buffer_keeps_its_bytes_and_leaves_the_rest() {
        let mut buf = BytesMut::from(&[0, 0, 0, 6, 0, 0, 0, 0x99, 1, 2, 0, 0][..]);
        let frame = Frame::split_from(&mut buf, MAX_MSG_SIZE).unwrap();
        assert_eq!((frame.ty(), frame.body()), (MsgType(0x99), &[1, 2][..]));
        assert_eq!(frame.as_bytes(), [0, 0, 0, 6, 0, 0, 0, 0x99, 1, 2]);
        assert_eq!(&buf[..], [0, 0]);
        assert_eq!(
            Frame::split_from(&mut buf, MAX_MSG_SIZE),
            Err(FrameError::Incomplete { needed: 2 })
        );
        assert_eq!(&buf[..], [0, 0], "an incomplete frame stays in the buffer");
        assert_eq!(Frame::encode(&Message::End, 43).as_bytes(), END_FRAME);
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
