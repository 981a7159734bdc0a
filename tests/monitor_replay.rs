//! The real captures (`tests/data/basic.vNN.bin`) replayed by a fake
//! scheduler over real TCP on 127.0.0.1 into `connection::run` and a
//! `State`: each protocol version ends in the exact state the capture
//! describes. Also `Connection` used directly, as `dump` and `record` do.

mod support;

use icewatch::monitor::{lock_state, run, ConnectError, ConnectOptions, Connection, Target};
use icewatch::protocol::frame::{parse_frame, MAX_MSG_SIZE};
use std::sync::Arc;
use std::time::Duration;
use support::*;
use tokio::sync::{oneshot, Notify};

fn options(port: u16, protocol: u32) -> ConnectOptions {
    let mut opts = ConnectOptions::new(Target::Address {
        host: "127.0.0.1".into(),
        port,
    });
    opts.protocol = protocol;
    // Generous: nothing in these tests should ever wait this long.
    opts.handshake_timeout = Some(Duration::from_secs(600));
    opts.idle_timeout = Duration::from_secs(3600);
    opts
}

/// A hang guard only: a healthy run finishes in milliseconds.
async fn guarded<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(300), f)
        .await
        .unwrap_or_else(|_| panic!("{what} did not happen"))
}

#[tokio::test]
async fn every_capture_replayed_over_tcp_ends_in_the_exact_state() {
    for &(offered, file) in CAPTURES {
        let (agreed, frames) = capture_frames(file);
        let total = frame_count(frames);
        let mut sched = FakeScheduler::start(vec![vec![
            Step::Handshake(43),
            Step::Send(frames.to_vec()),
            Step::Hold,
        ]])
        .await;
        let state = shared_state();
        let changed = Arc::new(Notify::new());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(run(
            options(sched.port(), offered),
            state.clone(),
            changed.clone(),
            async {
                let _ = stopped.await;
            },
        ));
        guarded(
            "the replay",
            wait_until(&state, &changed, |st| st.messages() == total),
        )
        .await;
        {
            let st = lock_state(&state);
            assert_basic_final_state(&st, agreed);
            assert_eq!(st.history().len(), 44);
            let s = st.scheduler();
            assert!(s.online && s.error.is_none() && s.reconnects == 0);
            assert_eq!(s.address, format!("127.0.0.1:{}", sched.port()));
        }
        guarded("the login", sched.wait_for(Event::LoggedIn(0, agreed))).await;
        stop.send(()).unwrap();
        guarded("the shutdown", task).await.unwrap();
        // Shutting down closes the connection: the scheduler sees it go.
        guarded("the close", sched.wait_for(Event::ClientClosed(0))).await;
    }
}

#[tokio::test]
async fn a_scheduler_that_closes_after_a_capture_leaves_everything_offline_then_comes_back_clean() {
    let (agreed, frames) = capture_frames(CAPTURES[6].1);
    let total = frame_count(frames);
    let mut sched = FakeScheduler::start(vec![
        vec![
            Step::Handshake(43),
            Step::Send(frames.to_vec()),
            Step::Close,
        ],
        vec![
            Step::Handshake(43),
            Step::Send(concat(&[
                host(11, "fresh1", 4, false),
                host(12, "fresh2", 1, true),
            ])),
            Step::Hold,
        ],
    ])
    .await;
    let state = shared_state();
    let changed = Arc::new(Notify::new());
    let mut opts = options(sched.port(), 43);
    opts.backoff_min = Duration::from_millis(10);
    let task = tokio::spawn(run(
        opts,
        state.clone(),
        changed.clone(),
        std::future::pending(),
    ));
    guarded(
        "the loss",
        wait_until(&state, &changed, |st| {
            st.messages() == total && !st.scheduler().online
        }),
    )
    .await;
    {
        let st = lock_state(&state);
        st.check_invariants();
        assert!(st.hosts().all(|h| !h.online));
        let t = st.totals();
        assert_eq!((t.hosts_online, t.total_slots, t.active), (0, 0, 0));
        assert_eq!((t.jobs_finished, t.jobs_failed), (41, 1));
        let error = st.scheduler().error.clone().unwrap();
        assert!(error.ends_with("closed the connection"), "{error}");
    }
    guarded("the reconnect", sched.wait_for(Event::LoggedIn(1, agreed))).await;
    guarded(
        "the fresh burst",
        wait_until(&state, &changed, |st| {
            st.hosts().count() == 2 && st.scheduler().online
        }),
    )
    .await;
    let st = lock_state(&state);
    st.check_invariants();
    let mut names: Vec<_> = st
        .hosts()
        .map(|h| (h.id, h.name.to_string(), h.online))
        .collect();
    names.sort();
    assert_eq!(
        names,
        [(11, "fresh1".into(), true), (12, "fresh2".into(), true)]
    );
    let t = st.totals();
    assert_eq!(
        (t.hosts_online, t.total_slots, t.jobs_finished),
        (2, 5, 41),
        "what is there starts over, counters go on"
    );
    assert_eq!(st.scheduler().reconnects, 1);
    assert_eq!(st.history().len(), 44, "the history spans sessions");
    drop(st);
    task.abort();
}

#[tokio::test]
async fn connection_reads_whole_frames_with_their_length_until_a_clean_close() {
    let (agreed, frames) = capture_frames(CAPTURES[0].1);
    let sched = FakeScheduler::start(vec![vec![
        Step::Handshake(43),
        Step::Send(frames.to_vec()),
        Step::Close,
    ]])
    .await;
    let mut conn = guarded(
        "the connection",
        Connection::connect(&options(sched.port(), 21)),
    )
    .await
    .unwrap();
    assert_eq!(conn.version(), agreed);
    assert_eq!(conn.peer(), sched.addr());
    let mut received = Vec::new();
    while let Some(frame) = guarded("a frame", conn.read_frame()).await.unwrap() {
        let (rest, _) = parse_frame(&frame, MAX_MSG_SIZE).unwrap();
        assert!(rest.is_empty(), "one frame at a time");
        received.extend_from_slice(&frame);
    }
    assert_eq!(received, frames);
}

#[tokio::test]
async fn connection_reports_a_close_inside_a_frame() {
    let (_, frames) = capture_frames(CAPTURES[7].1);
    let sched = FakeScheduler::start(vec![vec![
        Step::Handshake(43),
        Step::Send(frames[..frames.len() - 3].to_vec()),
        Step::Close,
    ]])
    .await;
    let mut conn = Connection::connect_addr(sched.addr(), &options(sched.port(), 44))
        .await
        .unwrap();
    let err = loop {
        match guarded("a frame", conn.read_frame()).await {
            Ok(Some(_)) => {}
            Ok(None) => panic!("a cut frame is not a clean end"),
            Err(e) => break e,
        }
    };
    assert!(matches!(err, ConnectError::ClosedMidFrame { .. }), "{err}");
}
