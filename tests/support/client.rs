//! A blocking client of a scheduler, as icemon is one: what the tests of
//! `icewatch demo --as-scheduler` and `replay --as-scheduler` read with.

use super::command::PATIENCE;
use bytes::BytesMut;
use icewatch::protocol::frame::{Frame, FrameError, MAX_MSG_SIZE};
use icewatch::protocol::handshake::handshake_blocking;
use icewatch::protocol::{Message, MsgType};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

/// A blocking client of a scheduler (an `icewatch` stand-in): the
/// client's handshake, MON_LOGIN, then whole frames.
pub struct SchedulerClient {
    stream: TcpStream,
    buf: BytesMut,
    /// The agreed protocol version.
    pub version: u32,
}

impl SchedulerClient {
    /// Connects to a scheduler at `addr` offering `offer`.
    pub fn connect(addr: SocketAddr, offer: u32) -> SchedulerClient {
        let mut stream = TcpStream::connect(addr).expect("the scheduler accepts");
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        let version = handshake_blocking(&mut stream, offer).expect("handshake");
        let login = Frame::encode(&Message::MonLogin, version);
        stream.write_all(login.as_bytes()).unwrap();
        SchedulerClient {
            stream,
            buf: BytesMut::new(),
            version,
        }
    }

    /// The next whole frame, or `None` when the scheduler closed.
    pub fn frame(&mut self) -> Option<Frame> {
        loop {
            match Frame::split_from(&mut self.buf, MAX_MSG_SIZE) {
                Ok(frame) => return Some(frame),
                Err(FrameError::Incomplete { .. }) => {}
                Err(e) => panic!("bad frame from the scheduler: {e}"),
            }
            let mut chunk = [0u8; 16 * 1024];
            let n = self
                .stream
                .read(&mut chunk)
                .expect("data from the scheduler in time");
            if n == 0 {
                assert!(self.buf.is_empty(), "closed in the middle of a frame");
                return None;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// The type of a frame, checking that it decodes at the agreed version
    /// into a known message.
    pub fn check(&self, frame: &Frame) -> MsgType {
        let msg = frame
            .decode(self.version)
            .unwrap_or_else(|e| panic!("invalid message from the scheduler: {e}"));
        assert!(
            !matches!(msg, Message::Unknown { .. }),
            "unknown message type {}",
            frame.ty()
        );
        frame.ty()
    }
}
