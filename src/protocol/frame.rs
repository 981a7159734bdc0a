//! The envelope around every message after the handshake: a big-endian
//! `u32` length `L` (not counting itself), then `L` bytes: a big-endian `u32`
//! type code and the body.
//!
//! [`parse_frame`] is a streaming parser: on a partial buffer it says how many
//! more bytes it needs, and it checks the length against a maximum before
//! anything is taken or allocated, as icecream itself does.

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
