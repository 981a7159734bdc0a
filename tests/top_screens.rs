//! `icewatch top`'s screens, drawn on ratatui's `TestBackend` and pinned
//! by insta snapshots at 80×24 and 200×50: a real scheduler's capture
//! (`tests/data/basic.v43.bin`) applied to a state on a clock of its own
//! (one message every 250 ms), rendered as the WebSocket messages the
//! screen reads, as `icewatch top` does in-process; the host pane with what
//! the scheduler's text port tells of the host. Nothing depends on the
//! wall clock, so the screens are the same on every run.

mod support;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use icewatch::monitor::State;
use icewatch::monitor::StateOptions;
use icewatch::protocol::frame::Frame;
use icewatch::protocol::text::parse_internals;
use icewatch::publisher::delta::Delta;
use icewatch::publisher::json::{diff_message, snapshot_message};
use icewatch::publisher::keep_blocks::Kept;
use icewatch::publisher::websocket::Rendered;
use icewatch::terminal::model::ControlView;
use icewatch::terminal::{draw, host_rows, Asked, Model, Received, Screen, View};
use ratatui::backend::TestBackend;
use ratatui::Terminal;
use support::captures::{capture, frames_of};

/// When the capture's first message arrived, on the test's clock.
const START_MS: u64 = 1_700_000_000_000;
/// The time between two messages of the capture.
const STEP_MS: u64 = 250;

/// The capture played into a state, read as the terminal reads it.
struct Played {
    state: State,
    delta: Delta,
    model: Model,
    seq: u64,
    frames: Vec<Frame>,
    next: usize,
}

impl Played {
    fn new() -> Played {
        let frames = frames_of(capture(43));
        let mut state = State::new(StateOptions::default());
        state.scheduler_connected("127.0.0.1:8765".into(), 43, START_MS);
        let delta = Delta::follow(&mut state);
        let mut model = Model::new();
        assert_eq!(
            model.receive(&snapshot_message(&state, 0)).unwrap(),
            Received::Snapshot
        );
        Played {
            state,
            delta,
            model,
            seq: 0,
            frames,
            next: 0,
        }
    }

    /// Applies the next `n` messages, then one diff and one sparkline
    /// sample, as the terminal takes them.
    fn play(&mut self, n: usize) {
        for frame in &self.frames[self.next..(self.next + n).min(self.frames.len())] {
            let msg = frame.decode(43).unwrap();
            self.state.apply(&msg, self.now());
            self.next += 1;
        }
        match diff_message(&mut self.state, &mut self.delta, self.seq + 1) {
            Rendered::Nothing => {}
            Rendered::Diff(text) => {
                self.seq += 1;
                assert_eq!(self.model.receive(&text).unwrap(), Received::Diff);
            }
            Rendered::Snapshot => {
                self.seq += 1;
                self.model
                    .receive(&snapshot_message(&self.state, self.seq))
                    .unwrap();
            }
        }
        self.model.sample();
    }

    fn now(&self) -> u64 {
        START_MS + self.next as u64 * STEP_MS
    }

    /// Plays until `done` says so, a few messages at a time.
    fn until(&mut self, done: impl Fn(&Model) -> bool) {
        while !done(&self.model) {
            assert!(self.next < self.frames.len(), "the capture ended first");
            self.play(3);
        }
    }

    fn screen(&self, view: &View, width: u16, height: u16) -> String {
        let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
        let screen = Screen {
            model: &self.model,
            view,
            now_ms: self.now(),
            source: "127.0.0.1:8765",
            link_error: None,
        };
        terminal.draw(|f| draw(f, &screen)).unwrap();
        terminal.backend().to_string()
    }

    fn press(&self, view: &mut View, keys: &str) {
        for c in keys.chars() {
            let code = match c {
                '\n' => KeyCode::Enter,
                ' ' => KeyCode::Char(' '),
                c => KeyCode::Char(c),
            };
            view.key(
                KeyEvent::new(code, KeyModifiers::NONE),
                &host_rows(&self.model, view),
            );
        }
    }
}

/// The middle of the build: every host busy, jobs waiting.
fn mid_build() -> Played {
    let mut p = Played::new();
    p.until(|m| m.totals.busy_slots >= 5 && m.totals.pending > 0 && m.history.len() > 5);
    p
}

#[test]
fn the_main_screen_mid_build() {
    let p = mid_build();
    let view = View::default();
    insta::assert_snapshot!("mid_build_80x24", p.screen(&view, 80, 24));
    insta::assert_snapshot!("mid_build_200x50", p.screen(&view, 200, 50));
    // sundae's `a`: each host's running jobs under it.
    let mut view = View::default();
    p.press(&mut view, "a");
    insta::assert_snapshot!("details_80x24", p.screen(&view, 80, 24));
}

#[test]
fn a_host_pane_sorted_by_in_reversed() {
    let p = mid_build();
    let mut view = View::default();
    // Sort by IN (two columns right), largest first, select the first host.
    p.press(&mut view, "llrj ");
    assert!(view.pane);
    insta::assert_snapshot!("pane_80x24", p.screen(&view, 80, 24));
    insta::assert_snapshot!("pane_200x50", p.screen(&view, 200, 50));
}

#[test]
fn help_over_the_screen() {
    let p = mid_build();
    let mut view = View::default();
    p.press(&mut view, "?");
    insta::assert_snapshot!("help_80x24", p.screen(&view, 80, 24));
}

#[test]
fn the_end_filtered_to_failures_with_their_reason() {
    let mut p = Played::new();
    let n = p.frames.len();
    p.play(n);
    let mut view = View::default();
    p.press(&mut view, "fff");
    let failed = p.screen(&view, 80, 24);
    assert!(
        failed.contains("FAIL") && failed.contains("exit code"),
        "{failed}"
    );
    insta::assert_snapshot!("failed_80x24", failed);
    // A filter by file keeps the hosts that worked on it and its jobs.
    let mut view = View::default();
    p.press(&mut view, "/src1.c\n");
    insta::assert_snapshot!("filter_200x50", p.screen(&view, 200, 50));
}

#[test]
fn a_host_pane_with_what_the_text_port_tells() {
    let mut p = mid_build();
    let mut view = View::default();
    p.press(&mut view, "j ");
    let name = view
        .selected
        .and_then(|id| p.model.hosts.get(&id))
        .map(|h| h.name.clone())
        .unwrap();
    // Before a read of the text port, the pane says nothing of it.
    assert!(!p.screen(&view, 80, 24).contains("blocked"));
    // What `GET /api/v1/control` gives: this host blocked, kept by
    // --keep-blocks, installing an environment.
    p.model.control = Some(ControlView {
        answering: true,
        blocked: vec![name.clone()],
        installing: [(name.clone(), 3)].into(),
        keep_blocks: true,
        kept: vec![Kept {
            name: name.clone(),
            since_ms: START_MS,
            seen_ms: START_MS,
        }],
        ..ControlView::default()
    });
    // And `i`'s answer: a real daemon's `dump_internals` (docs/admin.md).
    let answer = "Node Name: remote1\n  Remote name: 127.0.0.1\n  Cache Size: 81735070\n  \
                  Architecture: x86_64\n  Current kids: 0 (max: 2)\n  \
                  Supported features: env_xz env_zstd\n  cpu: 1000 idle, 0 nice\n";
    p.model.internals = Some((name, Asked::Answer(parse_internals(answer.lines()))));
    let screen = p.screen(&view, 80, 24);
    assert!(screen.contains("blocked yes"), "{screen}");
    insta::assert_snapshot!("pane_text_port_80x24", screen);
    insta::assert_snapshot!("pane_text_port_200x50", p.screen(&view, 200, 50));
}
