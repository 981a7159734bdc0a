//! The `Handshake` state machine fed arbitrary peer words.
//!
//! The first byte picks our own version (21..=44); every following 4 bytes
//! are one word from the peer. Checked against a model of the exchange: the
//! reply to a sane first word is min(own, peer), the handshake agrees only on
//! a confirmation equal to that, and nothing is accepted after agreement.

#![no_main]

use icewatch::protocol::handshake::{Handshake, HandshakeError, Step, MAX_SANE_VERSION};
use icewatch::protocol::{MIN_PROTOCOL_VERSION, PROTOCOL_VERSION};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, words)) = data.split_first() else {
        return;
    };
    let span = PROTOCOL_VERSION - MIN_PROTOCOL_VERSION + 1;
    let own = MIN_PROTOCOL_VERSION + u32::from(pick) % span;
    let mut hs = Handshake::new(own).expect("a supported version");
    assert_eq!(hs.hello(), own.to_le_bytes());
    // The model: None before the peer's version, Some(min) after it.
    let mut expected: Option<u32> = None;
    let mut agreed: Option<u32> = None;
    for chunk in words.chunks_exact(4) {
        let word = [chunk[0], chunk[1], chunk[2], chunk[3]];
        let peer = u32::from_le_bytes(word);
        let step = hs.receive(word);
        match (agreed, expected) {
            (Some(_), _) => assert!(matches!(step, Err(HandshakeError::Finished))),
            (None, None) => match step {
                Ok(Step::Send(reply)) => {
                    assert!((MIN_PROTOCOL_VERSION..=MAX_SANE_VERSION).contains(&peer));
                    assert_eq!(u32::from_le_bytes(reply), peer.min(own));
                    expected = Some(peer.min(own));
                }
                Err(HandshakeError::TooOld(v)) => {
                    assert_eq!(v, peer);
                    assert!(peer < MIN_PROTOCOL_VERSION);
                }
                Err(HandshakeError::Absurd(v)) => {
                    assert_eq!(v, peer);
                    assert!(peer > MAX_SANE_VERSION);
                }
                other => panic!("first word {peer}: {other:?}"),
            },
            (None, Some(min)) => match step {
                Ok(Step::Agreed(v)) => {
                    assert_eq!((v, peer), (min, min));
                    agreed = Some(v);
                }
                Err(HandshakeError::Mismatch { expected, got }) => {
                    assert_eq!((expected, got), (min, peer));
                    assert_ne!(peer, min);
                }
                other => panic!("second word {peer}: {other:?}"),
            },
        }
        assert_eq!(hs.agreed(), agreed);
        if let Some(v) = agreed {
            assert!((MIN_PROTOCOL_VERSION..=own).contains(&v));
        }
    }
});
