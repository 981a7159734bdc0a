//! Everything a scheduler connection can do wrong, played by a scripted fake
//! scheduler over real TCP on 127.0.0.1, with tokio's clock paused so that
//! timeouts and backoff take no real time: a close inside a frame, a length
//! above the limit, unknown types and undecodable bodies, garbage and
//! stalled handshakes, END, a reset, silence (of a hung scheduler, and of
//! a merely quiet one). Each time: no panic, no hang, and after the
//! reconnect exactly the new session's hosts. (Backoff and logging are in
//! `monitor_logging.rs`.)
//!
//! Every script after the last repeats the last one, a working scheduler,
//! so assertions hold even if a loaded machine makes the client retry more.

mod support;

use icewatch::monitor::{
    lock_state, run_from, ConnectError, ConnectOptions, Connection, JobState, Target,
    RECEIVE_BUFFER,
};
use icewatch::protocol::{Language, Message, MsgType};
use std::time::Duration;
use support::monitor::*;
use support::scheduler::*;

/// The working session's hosts, and only them, once it is up; then stop.
async fn recovers(mut m: Monitor) {
    m.until("the working session", |st| {
        st.scheduler().online && st.hosts().count() == 2
    })
    .await;
    {
        let st = lock_state(&m.state);
        st.check_invariants();
        assert_eq!(
            hosts_by_id(&st),
            [(21, true), (22, true)],
            "no ghost of the failed session"
        );
        let t = st.totals();
        assert_eq!((t.hosts_online, t.total_slots, t.active), (2, 5, 0));
        assert!(st.scheduler().error.is_none());
    }
    m.stop().await;
}

fn early_host() -> Vec<u8> {
    host(1, "early", 4, false)
}

#[tokio::test(start_paused = true)]
async fn a_close_inside_a_frame_ends_the_session_and_the_next_one_starts_clean() {
    let cut = host(2, "cut", 1, false);
    let m = Monitor::start(vec![
        vec![
            Step::Handshake(43),
            Step::Send([early_host(), cut[..cut.len() / 2].to_vec()].concat()),
            Step::Close,
        ],
        working_session(),
    ])
    .await;
    let error = m.until_lost("in the middle of a frame").await;
    assert!(error.starts_with("scheduler 127.0.0.1:"), "{error}");
    {
        let st = lock_state(&m.state);
        assert_eq!(
            hosts_by_id(&st),
            [(1, false)],
            "the whole frame applied, shown offline"
        );
    }
    recovers(m).await;
}

#[tokio::test(start_paused = true)]
async fn a_length_above_the_limit_ends_the_session_without_waiting_for_the_body() {
    let mut m = Monitor::start(vec![
        vec![
            Step::Handshake(43),
            Step::Send([early_host(), oversized_header()].concat()),
            Step::Hold,
        ],
        working_session(),
    ])
    .await;
    let error = m.until_lost("exceeds the maximum").await;
    assert!(error.contains("frame length 1048577"), "{error}");
    // The scheduler never sent the body: the client closed on the length.
    m.event(Event::ClientClosed(0)).await;
    recovers(m).await;
}

#[tokio::test(start_paused = true)]
async fn unknown_types_and_undecodable_bodies_are_skipped_and_the_session_goes_on() {
    let unknown = frame(
        &Message::Unknown {
            ty: MsgType(0x99),
            body: b"from a newer scheduler",
        },
        43,
    );
    let mut short_begin = 10u32.to_be_bytes().to_vec();
    short_begin.extend_from_slice(&MsgType::MON_JOB_BEGIN.0.to_be_bytes());
    short_begin.extend_from_slice(&[0, 0, 0, 1, 0, 0]);
    let m = Monitor::start(vec![vec![
        Step::Handshake(43),
        Step::Send([unknown, short_begin, host(21, "good1", 2, false)].concat()),
        Step::Send(host(22, "good2", 3, true)),
        Step::Hold,
    ]])
    .await;
    // good2 comes after the odd frames: the session went on past them.
    m.until("both hosts", |st| st.hosts().count() == 2).await;
    {
        let st = lock_state(&m.state);
        let t = st.totals();
        assert_eq!((t.invalid_messages, t.unknown_jobs), (1, 0));
    }
    recovers(m).await;
}

#[tokio::test(start_paused = true)]
async fn a_garbage_or_too_old_handshake_is_refused_and_retried() {
    let mut m = Monitor::start(vec![
        vec![
            Step::Send(b"HTTP/1.0 400 Bad Request\r\n\r\n".to_vec()),
            Step::Hold,
        ],
        vec![Step::Send(20u32.to_le_bytes().to_vec()), Step::Hold],
        working_session(),
    ])
    .await;
    let error = m.until_lost("not an icecream protocol version").await;
    assert!(error.starts_with("scheduler 127.0.0.1:"), "{error}");
    m.event(Event::ClientClosed(0)).await;
    m.until_lost("older than the oldest supported").await;
    m.event(Event::ClientClosed(1)).await;
    recovers(m).await;
}

#[tokio::test(start_paused = true)]
async fn a_stalled_handshake_times_out_closes_and_is_retried() {
    let mut m = Monitor::start(vec![
        vec![Step::Hold],
        vec![Step::Send(43u32.to_le_bytes().to_vec()), Step::Hold],
        working_session(),
    ])
    .await;
    let accepted = m.event(Event::Accepted(0)).await;
    let closed = m.event(Event::ClientClosed(0)).await;
    assert!(closed - accepted >= HANDSHAKE_TIMEOUT);
    m.until_lost("handshake timed out after 5s").await;
    // Half a handshake (the version word, never the confirmation) too.
    let accepted = m.event(Event::Accepted(1)).await;
    let closed = m.event(Event::ClientClosed(1)).await;
    assert!(closed - accepted >= HANDSHAKE_TIMEOUT);
    recovers(m).await;
}

#[tokio::test(start_paused = true)]
async fn a_scheduler_that_answers_the_handshake_late_like_an_idle_one_is_waited_for() {
    let late = [vec![Step::Wait(Duration::from_secs(35))], working_session()].concat();
    let sched = FakeScheduler::start(vec![late]).await;
    let opts = ConnectOptions::new(Target::Address {
        host: "127.0.0.1".into(),
        port: sched.port(),
    });
    let mut m = Monitor::start_with(sched, opts).await;
    // The very first connection got through: no attempt was given up.
    m.event(Event::LoggedIn(0, 43)).await;
    recovers(m).await;
}

#[tokio::test(start_paused = true)]
async fn end_from_the_scheduler_ends_the_session_at_once_and_nothing_after_it_counts() {
    let mut m = Monitor::start(vec![
        vec![
            Step::Handshake(43),
            Step::Send([early_host(), end(), host(2, "after-end", 1, false)].concat()),
            Step::Hold,
        ],
        working_session(),
    ])
    .await;
    m.until_lost("going away (it sent END)").await;
    {
        let st = lock_state(&m.state);
        let hosts: Vec<_> = st.hosts().map(|h| h.id).collect();
        assert_eq!(hosts, [1]);
    }
    m.event(Event::ClientClosed(0)).await;
    recovers(m).await;
}

#[tokio::test(start_paused = true)]
async fn a_reset_connection_is_reported_and_retried() {
    let m = Monitor::start(vec![
        vec![Step::Handshake(43), Step::Send(early_host()), Step::Reset],
        working_session(),
    ])
    .await;
    m.until("the loss", |st| {
        !st.scheduler().online && st.scheduler().error.is_some()
    })
    .await;
    let error = lock_state(&m.state).scheduler().error.clone().unwrap();
    assert!(
        error.contains("reset") || error.contains("closed the connection"),
        "{error}"
    );
    recovers(m).await;
}

#[tokio::test(start_paused = true)]
async fn a_silent_scheduler_that_no_longer_answers_is_dropped() {
    let mut m = Monitor::start(vec![
        vec![Step::Handshake(43), Step::Send(early_host()), Step::Hold],
        // The check connection: the scheduler is hung, it never answers.
        vec![Step::Hold],
        working_session(),
    ])
    .await;
    let logged_in = m.event(Event::LoggedIn(0, 43)).await;
    let checked = m.event(Event::Accepted(1)).await;
    assert!(checked - logged_in >= IDLE_TIMEOUT);
    let closed = m.event(Event::ClientClosed(0)).await;
    assert!(closed - checked >= HANDSHAKE_TIMEOUT);
    let error = m
        .until_lost("sent nothing for 30s and no longer answers")
        .await;
    assert!(error.contains("handshake timed out after 5s"), "{error}");
    recovers(m).await;
}

#[tokio::test(start_paused = true)]
async fn a_quiet_scheduler_that_still_answers_with_the_same_hosts_keeps_its_session() {
    // Each check is a monitor login that gets the host burst and closes.
    let mut m = Monitor::start(vec![
        vec![Step::Handshake(43), Step::Send(early_host()), Step::Hold],
        vec![Step::Handshake(43), Step::Send(early_host()), Step::Hold],
    ])
    .await;
    let logged_in = m.event(Event::LoggedIn(0, 43)).await;
    let first = m.event(Event::LoggedIn(1, 43)).await;
    m.event(Event::ClientClosed(1)).await;
    let second = m.event(Event::LoggedIn(2, 43)).await;
    m.event(Event::ClientClosed(2)).await;
    assert!(first - logged_in >= IDLE_TIMEOUT);
    assert!(second - first >= IDLE_TIMEOUT);
    let st = lock_state(&m.state);
    let s = st.scheduler();
    assert!(s.online && s.error.is_none() && s.reconnects == 0, "{s:?}");
    assert!(st.host(1).is_some_and(|h| h.online));
}

#[tokio::test(start_paused = true)]
async fn a_dead_session_that_never_closes_is_found_by_a_check_that_sees_other_hosts() {
    // The session goes silent without FIN or RST, with a job compiling; a
    // new connection meets a scheduler that restarted (other hosts).
    let job = [
        frame(&Message::mon_get_cs(7, 1, "ghost.c", Language::C), 43),
        frame(&Message::mon_job_begin(7, 1, 0), 43),
    ]
    .concat();
    let mut m = Monitor::start(vec![
        vec![
            Step::Handshake(43),
            Step::Send([early_host(), job].concat()),
            Step::Hold,
        ],
        vec![
            Step::Handshake(43),
            Step::Send(host(3, "reborn", 2, false)),
            Step::Hold,
        ],
        working_session(),
    ])
    .await;
    m.event(Event::LoggedIn(0, 43)).await;
    let error = m.until_lost("the session is dead").await;
    assert!(
        error.contains("a new connection sees 1 hosts where this session has 1"),
        "{error}"
    );
    {
        let st = lock_state(&m.state);
        assert!(st.jobs().next().is_none(), "no ghost job compiling");
        let ghost = st.history().last().unwrap();
        assert_eq!((ghost.id, ghost.state), (7, JobState::CutShort));
    }
    m.event(Event::ClientClosed(0)).await;
    recovers(m).await;
}

#[tokio::test(start_paused = true)]
async fn random_bytes_after_a_valid_handshake_never_break_the_monitor() {
    use rand::{Rng, SeedableRng};
    for seed in 0..8u64 {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut noise = vec![0u8; 4096];
        rng.fill(&mut noise[..]);
        // Some seeds start with a plausible small frame length.
        if seed % 2 == 1 {
            noise[..4].copy_from_slice(&40u32.to_be_bytes());
        }
        let m = Monitor::start(vec![
            vec![
                Step::Handshake(43),
                Step::Send([early_host(), noise].concat()),
                Step::Close,
            ],
            working_session(),
        ])
        .await;
        m.until("the noisy session to end", |st| {
            !st.scheduler().online && st.scheduler().error.is_some()
        })
        .await;
        lock_state(&m.state).check_invariants();
        recovers(m).await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_peer_that_ends_the_login_like_a_daemon_is_no_scheduler_and_is_tried_ever_slower() {
    // An iceccd answers the version handshake, then ends the monitor's
    // login with END: no session of it ever delivers, so the delays grow
    // to the maximum instead of restarting from the minimum.
    let sched = FakeScheduler::start(vec![vec![
        Step::Handshake(43),
        Step::Send(end()),
        Step::Close,
    ]])
    .await;
    let mut opts = ConnectOptions::new(Target::Address {
        host: "127.0.0.1".into(),
        port: sched.port(),
    });
    opts.backoff_min = Duration::from_secs(1);
    opts.backoff_absent_max = Duration::from_secs(2);
    opts.backoff_max = Duration::from_secs(8);
    let mut m = Monitor::start_with(sched, opts).await;
    let mut logins = Vec::new();
    for n in 0..6 {
        logins.push(m.event(Event::LoggedIn(n, 43)).await);
    }
    for (k, pair) in logins.windows(2).enumerate() {
        let window = Duration::from_secs(1 << k.min(3));
        assert!(pair[1] - pair[0] >= window / 2, "attempt {k}");
    }
    let error = m.until_lost("answers like an icecream daemon").await;
    assert!(error.contains("port 8765"), "{error}");
    m.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_first_session_that_is_no_schedulers_ends_the_loop_with_that_error() {
    let sched = FakeScheduler::start(vec![vec![
        Step::Handshake(43),
        Step::Send(end()),
        Step::Close,
    ]])
    .await;
    let opts = ConnectOptions::new(Target::Address {
        host: "127.0.0.1".into(),
        port: sched.port(),
    });
    let first = Connection::connect(&opts).await.unwrap();
    let state = shared_state();
    let changed = icewatch::monitor::changed();
    let ended = run_from(first, opts, state, changed, std::future::pending()).await;
    assert!(
        matches!(ended, Err(ConnectError::NotScheduler { .. })),
        "{ended:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_restarted_scheduler_is_back_within_two_seconds_of_accepting_again() {
    let sched = FakeScheduler::start(vec![vec![
        Step::Handshake(43),
        Step::Send(early_host()),
        Step::Close,
    ]])
    .await;
    let port = sched.port();
    let opts = ConnectOptions::new(Target::Address {
        host: "127.0.0.1".into(),
        port,
    });
    let mut m = Monitor::start_with(sched, opts).await;
    m.event(Event::LoggedIn(0, 43)).await;
    m.until_lost("closed the connection").await;
    // Down for a minute (every attempt refused), then accepting again.
    m.sched.stop().await;
    tokio::time::sleep(Duration::from_secs(60)).await;
    m.sched = FakeScheduler::start_on(port, vec![working_session()]).await;
    let back = tokio::time::Instant::now();
    let logged_in = m.event(Event::LoggedIn(0, 43)).await;
    assert!(
        logged_in - back <= Duration::from_secs(2),
        "{:?} after the scheduler accepted again",
        logged_in - back
    );
    recovers(m).await;
}

/// A new session's first burst (every host) is larger than the window a
/// TCP connection starts with; the scheduler closes a monitor it cannot
/// write to at once. So the connection asks for RECEIVE_BUFFER before it
/// connects, and gets it up to the kernel's cap.
#[tokio::test]
async fn the_connection_asks_for_a_receive_buffer_that_holds_a_large_clusters_burst() {
    let sched = FakeScheduler::start(vec![vec![Step::Handshake(43)]]).await;
    let opts = ConnectOptions::new(Target::Address {
        host: "127.0.0.1".into(),
        port: sched.port(),
    });
    let conn = Connection::connect(&opts).await.unwrap();
    let cap = std::fs::read_to_string("/proc/sys/net/core/rmem_max")
        .ok()
        .and_then(|s| s.trim().parse::<usize>().ok())
        .unwrap_or(usize::MAX);
    let wanted = (RECEIVE_BUFFER as usize).min(cap);
    let got = conn.receive_buffer().unwrap();
    assert!(
        got >= wanted,
        "{got} bytes, {wanted} asked for (rmem_max {cap})"
    );
}
