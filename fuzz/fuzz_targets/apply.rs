//! The monitor's state on arbitrary streams of frames.
//!
//! The first input byte picks the agreed version (21 + byte % 24), the
//! second the history limit (1 to 64, so that finished jobs leave it and
//! their slots are taken over early); the rest is a stream of frames, cut
//! and decoded as the connection does and applied to one `State`. Every 16
//! messages a page's `Delta` takes the changes and turns them into a diff,
//! as the publisher does; every counter is recounted from the tables (the
//! state panics where they disagree). At the end the scheduler goes away
//! and comes back, which must leave no active job, link or host behind.

#![no_main]

use icewatch::monitor::{State, StateOptions};
use icewatch::publisher::delta::{Delta, Update};
use icewatch::protocol::frame::{parse_frame, MAX_MSG_SIZE};
use icewatch::protocol::{Message, MIN_PROTOCOL_VERSION, PROTOCOL_VERSION};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [pick, history, rest @ ..] = data else {
        return;
    };
    let mut input = rest;
    let span = PROTOCOL_VERSION - MIN_PROTOCOL_VERSION + 1;
    let version = MIN_PROTOCOL_VERSION + u32::from(*pick) % span;
    let mut state = State::new(StateOptions {
        history_limit: 1 + usize::from(*history % 64),
        ..StateOptions::default()
    });
    state.scheduler_connected("fuzz:8765".into(), version, 0);
    let mut page = Delta::follow(&mut state);
    let mut now = 1_700_000_000_000;
    let mut n = 0u64;
    while let Ok((rest, raw)) = parse_frame(input, MAX_MSG_SIZE) {
        match Message::decode(raw.ty, raw.body, version) {
            Ok(msg) => state.apply(&msg, now),
            Err(_) => state.invalid_message(),
        }
        n += 1;
        now += 250;
        if n % 16 == 0 {
            publish(&mut state, &mut page);
            state.check_invariants();
        }
        input = rest;
    }
    publish(&mut state, &mut page);
    state.check_invariants();
    state.scheduler_lost("gone".into(), now);
    state.check_invariants();
    state.scheduler_connected("fuzz:8765".into(), version, now);
    state.check_invariants();
    assert_eq!(state.jobs().count(), 0);
    assert_eq!(state.links().count(), 0);
    assert_eq!(state.hosts().count(), 0);
});

/// Takes the changes and renders their diff, as the page would get it.
fn publish(state: &mut State, page: &mut Delta) {
    if let Update::Diff(diff) = page.update(state) {
        let text = serde_json::to_string(&diff).expect("a diff serialises");
        std::hint::black_box(text);
    }
}
