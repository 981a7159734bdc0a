//! Mode `apply`: the e2e stream applied in process, without a socket, to
//! tell what the state costs from what reading costs. Each run is a fresh
//! child process (`load apply-once`), so that every run starts, as
//! `icewatch monitor` does, with memory never touched.

use super::stream;
use anyhow::{ensure, Context, Result};
use icewatch::monitor::{State, StateOptions};
use icewatch::protocol::frame::{parse_frame, MAX_MSG_SIZE};
use icewatch::protocol::{Message, PROTOCOL_VERSION};
use std::process::Command;

/// One run's cost.
pub struct Applied {
    /// Thread CPU time per message, framing and decoding included.
    pub ns_per_msg: f64,
    /// Thread CPU time per message of framing and decoding alone.
    pub decode_ns_per_msg: f64,
    /// Minor page faults while applying.
    pub faults: u64,
}

/// Runs `load apply-once` in a child process and reads its figures.
pub fn run(hosts: u32, messages: u64, history: u64) -> Result<Applied> {
    let exe = std::env::current_exe()?;
    let out = Command::new(exe)
        .args(["apply-once", "--hosts", &hosts.to_string()])
        .args(["--messages", &messages.to_string()])
        .args(["--history", &history.to_string()])
        .output()?;
    ensure!(
        out.status.success(),
        "apply-once: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout)?;
    let mut f = text.split_whitespace().map(str::parse::<f64>);
    let mut next = || -> Result<f64> { Ok(f.next().context("apply-once said too little")??) };
    Ok(Applied {
        ns_per_msg: next()?,
        decode_ns_per_msg: next()?,
        faults: next()? as u64,
    })
}

/// In this process: decodes the stream once (the baseline), then decodes
/// and applies it to a fresh state; prints ns/message of each and the page
/// faults of the second.
pub fn once(hosts: u32, messages: u64, history: u64) -> Result<()> {
    let s = stream::build(hosts, messages, PROTOCOL_VERSION);
    let pass = |mut state: Option<&mut State>| -> Result<f64> {
        let started = cpu_time::ThreadTime::now();
        let mut input = &s.bytes[..];
        let mut n = 0u64;
        while let Ok((rest, raw)) = parse_frame(input, MAX_MSG_SIZE) {
            input = rest;
            let msg = &Message::decode(raw.ty, raw.body, PROTOCOL_VERSION)?;
            match (state.as_deref_mut(), msg) {
                // A clock that moves a millisecond per thousand messages;
                // nobody follows the changes, as when no page is open.
                (Some(st), _) => st.apply(msg, 1_000_000 + n / 1_000),
                // As the bare reader does: statistics texts are read too.
                (None, Message::MonStats(m)) => {
                    std::hint::black_box(m.stats());
                }
                (None, _) => {
                    std::hint::black_box(msg);
                }
            }
            n += 1;
        }
        ensure!(n == s.messages, "{n} of {} messages", s.messages);
        Ok(started.elapsed().as_nanos() as f64 / n as f64)
    };
    let decode = pass(None)?;
    let mut state = State::new(StateOptions {
        history_limit: history as usize,
        ..StateOptions::default()
    });
    let before = super::cpu(std::process::id())?.2;
    let apply = pass(Some(&mut state))?;
    let faults = super::cpu(std::process::id())?.2 - before;
    let t = state.totals();
    ensure!(
        (t.jobs_finished, t.jobs_failed) == (s.finished, s.failed),
        "applied {:?}, the stream holds {:?}",
        (t.jobs_finished, t.jobs_failed),
        (s.finished, s.failed)
    );
    println!("{apply:.2} {decode:.2} {faults}");
    Ok(())
}
