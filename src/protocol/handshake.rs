//! The version handshake that opens every binary icecream connection.
//!
//! It is symmetric, so the same [`Handshake`] serves a client and a
//! scheduler: on connect each side sends its own highest version as a
//! little-endian `u32` ([`Handshake::hello`]); on reading the peer's word it
//! sends min(own, peer) ([`Handshake::receive`] returns that word); then it
//! reads the peer's second word, which must equal the same minimum. That
//! minimum is the agreed version.
//!
//! Finish it at once: a scheduler waits for a half-done handshake with a
//! blocking read of up to 15 s, freezing its whole cluster meanwhile.
//! [`handshake`] (async) and [`handshake_blocking`] do the whole exchange;
//! bound either with a timeout, since a silent peer leaves it waiting.
//!
//! The state machine on its own, for an event loop of your own (here against
//! an icecream 1.4 scheduler, which speaks 43):
//!
//! ```
//! use icewatch::protocol::handshake::{Handshake, Step};
//!
//! let mut hs = Handshake::new(44)?;
//! let hello = hs.hello(); // send at once on connect
//! assert_eq!(hello, 44u32.to_le_bytes());
//! // The scheduler's first word: its own version.
//! assert_eq!(hs.receive(43u32.to_le_bytes())?, Step::Send(43u32.to_le_bytes()));
//! // Its second word confirms the minimum.
//! assert_eq!(hs.receive(43u32.to_le_bytes())?, Step::Agreed(43));
//! assert_eq!(hs.agreed(), Some(43));
//! # Ok::<(), icewatch::protocol::handshake::HandshakeError>(())
//! ```

use super::{MIN_PROTOCOL_VERSION, PROTOCOL_VERSION};

/// Versions above this are nonsense (icecream uses the same bound).
pub const MAX_SANE_VERSION: u32 = 1 << 20;

/// A handshake that cannot succeed.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// The peer's version is below [`MIN_PROTOCOL_VERSION`].
    #[error("peer speaks protocol {0}, older than the oldest supported ({MIN_PROTOCOL_VERSION})")]
    TooOld(u32),
    /// The peer's version is absurdly large: not an icecream peer.
    #[error("peer sent version word {0}, which is not an icecream protocol version")]
    Absurd(u32),
    /// The peer's second word is not the minimum of both versions.
    #[error("peer confirmed protocol {got}, expected {expected}")]
    Mismatch {
        /// The minimum of both versions.
        expected: u32,
        /// What the peer sent.
        got: u32,
    },
    /// Our own version is outside 21..=44.
    #[error("protocol {0} is not supported (use {MIN_PROTOCOL_VERSION} to {PROTOCOL_VERSION})")]
    Unsupported(u32),
    /// More words were fed after the handshake finished.
    #[error("handshake already finished")]
    Finished,
    /// The connection failed or closed during the handshake.
    #[error("connection failed during the handshake: {0}")]
    Io(#[from] std::io::Error),
}

/// What to do after feeding the peer's word.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Send this word (our min) and wait for the peer's confirmation.
    Send([u8; 4]),
    /// The handshake is done at this version.
    Agreed(u32),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    AwaitPeerVersion,
    AwaitConfirm(u32),
    Done(u32),
}

/// The handshake as a state machine, free of I/O.
#[derive(Clone, Copy, Debug)]
pub struct Handshake {
    own: u32,
    state: State,
}

impl Handshake {
    /// Starts a handshake offering `own` (21..=44).
    pub fn new(own: u32) -> Result<Handshake, HandshakeError> {
        if !(MIN_PROTOCOL_VERSION..=PROTOCOL_VERSION).contains(&own) {
            return Err(HandshakeError::Unsupported(own));
        }
        Ok(Handshake {
            own,
            state: State::AwaitPeerVersion,
        })
    }

    /// The first word to send, at once on connect.
    pub fn hello(&self) -> [u8; 4] {
        self.own.to_le_bytes()
    }

    /// Feeds the next 4-byte word from the peer.
    pub fn receive(&mut self, word: [u8; 4]) -> Result<Step, HandshakeError> {
        let peer = u32::from_le_bytes(word);
        match self.state {
            State::AwaitPeerVersion => {
                if peer > MAX_SANE_VERSION {
                    return Err(HandshakeError::Absurd(peer));
                }
                if peer < MIN_PROTOCOL_VERSION {
                    return Err(HandshakeError::TooOld(peer));
                }
                let agreed = peer.min(self.own);
                self.state = State::AwaitConfirm(agreed);
                Ok(Step::Send(agreed.to_le_bytes()))
            }
            State::AwaitConfirm(expected) => {
                if peer != expected {
                    return Err(HandshakeError::Mismatch {
                        expected,
                        got: peer,
                    });
                }
                self.state = State::Done(expected);
                Ok(Step::Agreed(expected))
            }
            State::Done(_) => Err(HandshakeError::Finished),
        }
    }

    /// The agreed version, once done.
    pub fn agreed(&self) -> Option<u32> {
        match self.state {
            State::Done(v) => Some(v),
            _ => None,
        }
    }
}

/// Runs the whole handshake over an async stream; returns the agreed version.
///
/// Bound it with a timeout: a peer that never answers leaves it waiting.
pub async fn handshake<S>(io: &mut S, own: u32) -> Result<u32, HandshakeError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut hs = Handshake::new(own)?;
    io.write_all(&hs.hello()).await?;
    io.flush().await?;
    loop {
        let mut word = [0u8; 4];
        io.read_exact(&mut word).await?;
        match hs.receive(word)? {
            Step::Send(reply) => {
                io.write_all(&reply).await?;
                io.flush().await?;
            }
            Step::Agreed(v) => return Ok(v),
        }
    }
}

/// Runs the whole handshake over a blocking stream; returns the agreed version.
pub fn handshake_blocking<S: std::io::Read + std::io::Write>(
    io: &mut S,
    own: u32,
) -> Result<u32, HandshakeError> {
    let mut hs = Handshake::new(own)?;
    io.write_all(&hs.hello())?;
    io.flush()?;
    loop {
        let mut word = [0u8; 4];
        io.read_exact(&mut word)?;
        match hs.receive(word)? {
            Step::Send(reply) => {
                io.write_all(&reply)?;
                io.flush()?;
            }
            Step::Agreed(v) => return Ok(v),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agrees_on_the_minimum_like_a_1_4_scheduler() {
        let mut hs = Handshake::new(44).unwrap();
        assert_eq!(hs.hello(), [44, 0, 0, 0]);
        assert_eq!(
            hs.receive([43, 0, 0, 0]).unwrap(),
            Step::Send([43, 0, 0, 0])
        );
        assert_eq!(hs.receive([43, 0, 0, 0]).unwrap(), Step::Agreed(43));
        assert_eq!(hs.agreed(), Some(43));
        assert!(matches!(
            hs.receive([43, 0, 0, 0]),
            Err(HandshakeError::Finished)
        ));
    }

    #[test]
    fn refuses_old_absurd_and_mismatched_peers() {
        let mut hs = Handshake::new(44).unwrap();
        assert!(matches!(
            hs.receive(20u32.to_le_bytes()),
            Err(HandshakeError::TooOld(20))
        ));
        let mut hs = Handshake::new(44).unwrap();
        assert!(matches!(
            hs.receive([0x48, 0x54, 0x54, 0x50]),
            Err(HandshakeError::Absurd(_))
        ));
        let mut hs = Handshake::new(34).unwrap();
        hs.receive(43u32.to_le_bytes()).unwrap();
        assert!(matches!(
            hs.receive(43u32.to_le_bytes()),
            Err(HandshakeError::Mismatch {
                expected: 34,
                got: 43
            })
        ));
        assert!(matches!(
            Handshake::new(45),
            Err(HandshakeError::Unsupported(45))
        ));
    }

    #[test]
    fn both_roles_agree_over_a_socket_pair() {
        let (mut a, mut b) = std::os::unix::net::UnixStream::pair().unwrap();
        let peer = std::thread::spawn(move || handshake_blocking(&mut b, 43).unwrap());
        assert_eq!(handshake_blocking(&mut a, 44).unwrap(), 43);
        assert_eq!(peer.join().unwrap(), 43);
    }
}
