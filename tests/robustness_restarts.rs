//! A scheduler that restarts 100 times in a row, each session ending in a
//! different way (clean close, reset, a close inside a frame, a length above
//! the limit, END, random bytes after valid frames), with jobs in flight
//! every time. `connection::run` and `State` must come through every one:
//! no panic, a reconnect each time, the last session's cluster exactly, and
//! afterwards as many open file descriptors and live tokio tasks as before.
//! Time is paused: backoff and timeouts take no real time. One test in this
//! file, so that no other test opens descriptors meanwhile.
//!
//! (Each fault alone, and silence and stalled handshakes, are in
//! `monitor_faults.rs`.)

mod support;

use icewatch::monitor::lock_state;
use icewatch::protocol::{Language, Message};
use rand::{Rng, SeedableRng};
use std::time::Duration;
use support::leaks::{alive_tasks, open_fds};
use support::monitor::*;
use support::scheduler::*;

const RESTARTS: u32 = 100;

/// Session `i`: two hosts of its own, a job submitted and begun between
/// them, then an end of kind `i % 6`.
fn session(i: u32, rng: &mut rand::rngs::StdRng) -> Script {
    let (a, b) = (1000 + 2 * i, 1001 + 2 * i);
    let job = frame(&Message::mon_get_cs(10 + i, a, "", Language::C), 43);
    let begin = frame(&Message::mon_job_begin(10 + i, b, 0), 43);
    let mut frames = vec![host(a, "a", 2, false), host(b, "b", 4, false), job, begin];
    let mut ending = Step::Close;
    match i % 6 {
        0 => {}
        1 => ending = Step::Reset,
        2 => {
            let cut = host(9, "cut", 1, false);
            frames.push(cut[..cut.len() - 3].to_vec());
        }
        3 => {
            frames.push(oversized_header());
            ending = Step::Hold;
        }
        4 => frames.push(end()),
        _ => {
            let mut noise = vec![0u8; 512];
            rng.fill(&mut noise[..]);
            frames.push(noise);
        }
    }
    vec![Step::Handshake(43), Step::Send(frames.concat()), ending]
}

/// Lets aborted tasks and closed sockets settle: a bounded number of
/// (paused, so instant) sleeps until `done` holds.
async fn settle(mut done: impl FnMut() -> bool) -> bool {
    for _ in 0..1000 {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    done()
}

#[tokio::test(start_paused = true)]
async fn a_hundred_restarts_each_ending_badly_leak_no_descriptor_or_task_and_end_in_the_last_state()
{
    let fds_before = open_fds();
    let tasks_before = alive_tasks();
    let mut rng = rand::rngs::StdRng::seed_from_u64(6);
    let mut scripts: Vec<Script> = (0..RESTARTS).map(|i| session(i, &mut rng)).collect();
    scripts.push(working_session());
    let mut m = Monitor::start(scripts).await;

    m.until("the last session", |st| {
        st.scheduler().online && st.host(21).is_some_and(|h| h.online)
    })
    .await;
    {
        let st = lock_state(&m.state);
        st.check_invariants();
        assert!(
            st.scheduler().reconnects >= u64::from(RESTARTS),
            "{:?}",
            st.scheduler()
        );
        assert_eq!(
            hosts_by_id(&st),
            [(21, true), (22, true)],
            "nothing of the old sessions"
        );
        assert_eq!(
            st.jobs().count(),
            0,
            "no job of the old sessions still runs"
        );
        // Every session's job ended (unknown outcome) into the bounded history.
        assert!(st.history().len() <= 10_000);
        let t = st.totals();
        assert_eq!(
            (t.hosts_online, t.total_slots, t.active, t.pending),
            (2, 5, 0, 0)
        );
    }
    // While the session is up: the accept loop, the held connection and run.
    assert!(alive_tasks() <= tasks_before + 3, "{} tasks", alive_tasks());

    m.stop().await;
    drop(m);
    let fds_ok = settle(|| open_fds() == fds_before).await;
    assert!(
        fds_ok,
        "{} descriptors open, {fds_before} before",
        open_fds()
    );
    let tasks_ok = settle(|| alive_tasks() == tasks_before).await;
    assert!(
        tasks_ok,
        "{} tasks alive, {tasks_before} before",
        alive_tasks()
    );
}
