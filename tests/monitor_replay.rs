//! The real captures (`tests/data/basic.vNN.bin`) replayed by a fake
//! scheduler over real TCP on 127.0.0.1 into `connection::run` and a
//! `State`: each protocol version ends in the exact state the capture
//! describes. Also `Connection` used directly, as `dump` and `record` do.
//!
//! And recordings played straight into a `State` (`standin::replay::play`, what
//! `icewatch replay` does): on the recording's clock, across scheduler
//! sessions, and whatever its times say.

mod support;

use icewatch::capture::recording::{self, Recorder, MAX_SPAN_MS};
use icewatch::monitor::{
    lock_state, run, ConnectError, ConnectOptions, Connection, EndReason, JobState, Replay,
    SharedState, State, Target,
};
use icewatch::protocol::{JobDone, Language, Message};
use icewatch::standin::replay::{play, PlayOptions, Played, MAX_WAIT};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;
use support::captures::*;
use support::monitor::*;
use support::scheduler::*;
use tokio::sync::oneshot;

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
        let total = frames_in(frames).len() as u64;
        let mut sched = FakeScheduler::start(vec![vec![
            Step::Handshake(43),
            Step::Send(frames.to_vec()),
            Step::Hold,
        ]])
        .await;
        let state = shared_state();
        let changed = icewatch::monitor::changed();
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
    let total = frames_in(frames).len() as u64;
    let mut sched = FakeScheduler::start(vec![
        vec![
            Step::Handshake(43),
            Step::Send(frames.to_vec()),
            Step::Close,
        ],
        vec![
            Step::Handshake(43),
            Step::Send([host(11, "fresh1", 4, false), host(12, "fresh2", 1, true)].concat()),
            Step::Hold,
        ],
    ])
    .await;
    let state = shared_state();
    let changed = icewatch::monitor::changed();
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
        received.extend_from_slice(frame.as_bytes());
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

/// When the recordings below began, ms since the epoch.
const START: u64 = 1_700_000_000_000;

/// What a hand-made recording holds: a frame at a time, or a session mark.
enum Rec {
    Frame(u64, Vec<u8>),
    Session(u64, u32),
}

/// `entries` recorded to `dir/name`, the first session at `protocol`.
fn recording(dir: &Path, name: &str, protocol: u32, entries: &[Rec]) -> PathBuf {
    let path = dir.join(name);
    let mut rec = Recorder::new(std::fs::File::create(&path).unwrap(), protocol, START).unwrap();
    for entry in entries {
        match entry {
            Rec::Frame(at, frame) => {
                let [frame] = &frames_in(frame)[..] else {
                    panic!("one frame")
                };
                rec.write_frame(*at, frame).unwrap()
            }
            Rec::Session(at, protocol) => rec.new_session(*at, *protocol).unwrap(),
        }
    }
    rec.finish().unwrap();
    path
}

/// Plays `path` into a fresh state, to the end.
async fn played(path: &Path, opts: PlayOptions) -> (SharedState, Result<Played, String>) {
    let state = shared_state();
    let reader = recording::open(path).unwrap();
    let changed = icewatch::monitor::changed();
    // A hang guard only; under paused time it counts the replay's own
    // waits too, so it allows a hundred of the longest.
    let replay = play(reader, opts, state.clone(), changed, std::future::pending());
    let result = tokio::time::timeout(MAX_WAIT * 100, replay)
        .await
        .expect("the replay did not end")
        .map_err(|e| e.to_string());
    (state, result)
}

/// The finished jobs by id: (state, reason, start, end, session).
type Ended = (JobState, Option<EndReason>, u64, Option<u64>, u32);

fn history(st: &State) -> HashMap<u32, Ended> {
    st.history()
        .map(|j| (j.id, (j.state, j.reason, j.start_ms, j.end_ms, j.session())))
        .collect()
}

#[tokio::test]
async fn a_recording_played_at_full_speed_keeps_its_recorded_times_and_says_it_is_a_replay() {
    let dir = tempfile::tempdir().unwrap();
    let (agreed, frames) = capture_frames(CAPTURES[6].1);
    // Uneven gaps, as a real stream has them.
    let at = |i: usize| i as u64 * 100 + (i as u64 % 7) * 13;
    let frames = frames_in(frames);
    let entries: Vec<Rec> = frames
        .iter()
        .enumerate()
        .map(|(i, f)| Rec::Frame(at(i), f.as_bytes().to_vec()))
        .collect();
    let path = recording(dir.path(), "basic.icwr", agreed, &entries);
    // When each job began compiling (or locally) and ended, as recorded.
    let mut began = HashMap::new();
    let mut expected = HashMap::new();
    for (i, f) in frames.iter().enumerate() {
        match f.decode(agreed).unwrap() {
            Message::MonJobBegin(m) => drop(began.insert(m.job_id, at(i))),
            Message::MonLocalJobBegin(m) => drop(began.insert(m.job_id, at(i))),
            Message::MonJobDone(JobDone { job_id, .. })
            | Message::JobLocalDone(icewatch::protocol::JobLocalDone { job_id }) => {
                expected.insert(job_id, at(i) - began[&job_id]);
            }
            _ => {}
        }
    }
    assert_eq!(expected.len(), 44);

    let (state, result) = played(&path, PlayOptions::new("basic.icwr", 0.0)).await;
    assert_eq!(
        result,
        Ok(Played {
            messages: frames.len() as u64,
            to_the_end: true
        })
    );
    let st = lock_state(&state);
    st.check_invariants();
    let durations: HashMap<u32, u64> = st
        .history()
        .map(|j| (j.id, j.end_ms.unwrap() - j.start_ms))
        .collect();
    assert_eq!(durations, expected, "every job lasts as long as recorded");
    assert_ne!(durations[&21], 0, "the failed job too");
    let t = st.totals();
    assert_eq!(
        (t.jobs_finished, t.jobs_failed, t.local_jobs_finished),
        (41, 1, 2)
    );
    let last = START + at(frames.len() - 1);
    assert_eq!(st.clock_ms(), last);
    let s = st.scheduler();
    assert_eq!(s.address, "basic.icwr");
    assert_eq!(
        s.replay,
        Some(Replay {
            file: "basic.icwr".into(),
            recorded_ms: START
        })
    );
    assert_eq!(
        (s.online, s.error.as_deref()),
        (false, Some("the recording ended"))
    );
    assert_eq!(
        (s.since_ms, s.protocol, s.reconnects),
        (Some(last), Some(43), 0)
    );
    let json = serde_json::to_value(st.snapshot()).unwrap();
    assert_eq!(
        json["scheduler"]["replay"],
        serde_json::json!({"file": "basic.icwr", "recorded_ms": START})
    );
}

#[tokio::test]
async fn a_raw_capture_plays_at_once_on_the_wall_clock_and_still_says_replay() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("basic.v21.bin");
    std::fs::write(&path, CAPTURES[0].1).unwrap();
    let before = icewatch::monitor::now_ms();
    let (state, result) = played(&path, PlayOptions::new("basic.v21.bin", 1.0)).await;
    let after = icewatch::monitor::now_ms();
    assert!(result.unwrap().to_the_end);
    let st = lock_state(&state);
    let t = st.totals();
    assert_eq!(
        (t.jobs_finished, t.jobs_failed, t.local_jobs_finished),
        (41, 1, 2)
    );
    let replay = st.scheduler().replay.clone().unwrap();
    assert_eq!(replay.file, "basic.v21.bin");
    assert!((before..=after).contains(&replay.recorded_ms));
    assert!((before..=after).contains(&st.clock_ms()));
    assert_eq!(st.scheduler().error.as_deref(), Some("the recording ended"));
}

/// A job's messages at `version`, by hand.
fn request(job_id: u32, client: u32, file: &str, version: u32) -> Vec<u8> {
    frame(
        &Message::mon_get_cs(job_id, client, file, Language::CXX),
        version,
    )
}

fn job_done(job_id: u32, exit_code: u32, version: u32) -> Vec<u8> {
    let done = JobDone {
        job_id,
        exit_code,
        real_ms: 1000,
        client_count: 1,
        ..JobDone::default()
    };
    frame(&Message::MonJobDone(done), version)
}

#[tokio::test]
async fn two_sessions_at_two_protocol_versions_replay_as_a_scheduler_restart() {
    let dir = tempfile::tempdir().unwrap();
    // An old scheduler (protocol 28: the long MON_GET_CS, no client count
    // in job ends) says END and is replaced by icecream 1.4 (43), which
    // hands out host id 1 again, to another host.
    let (old, new) = (28, 43);
    let begin = |job, host, v| frame(&Message::mon_job_begin(job, host, 0), v);
    let path = recording(
        dir.path(),
        "restart.icwr",
        old,
        &[
            Rec::Frame(0, host(1, "a", 2, false)),
            Rec::Frame(0, host(2, "b", 2, false)),
            Rec::Frame(100, request(10, 1, "s1/one.cpp", old)),
            Rec::Frame(150, begin(10, 2, old)),
            Rec::Frame(1_150, job_done(10, 0, old)),
            Rec::Frame(1_200, request(11, 1, "s1/two.cpp", old)),
            Rec::Frame(1_300, begin(11, 2, old)),
            Rec::Frame(4_000, frame(&Message::End, old)),
            Rec::Session(5_000, new),
            Rec::Frame(5_000, host(1, "c", 4, false)),
            Rec::Frame(5_100, request(1, 1, "s2/three.cpp", new)),
            Rec::Frame(5_200, begin(1, 1, new)),
            Rec::Frame(7_200, job_done(1, 1, new)),
        ],
    );
    let (state, result) = played(&path, PlayOptions::new("restart.icwr", 0.0)).await;
    assert_eq!(
        result,
        Ok(Played {
            messages: 12,
            to_the_end: true
        })
    );
    let st = lock_state(&state);
    st.check_invariants();
    let jobs = history(&st);
    use EndReason::*;
    use JobState::*;
    assert_eq!(
        jobs,
        HashMap::from([
            (
                10,
                (Finished, Some(Exit), START + 150, Some(START + 1_150), 1)
            ),
            // In flight when the scheduler said END: its outcome is unknown.
            (
                11,
                (
                    CutShort,
                    Some(SchedulerLost),
                    START + 1_300,
                    Some(START + 4_000),
                    1
                )
            ),
            (
                1,
                (Failed, Some(Exit), START + 5_200, Some(START + 7_200), 2)
            ),
        ])
    );
    let files: HashMap<u32, (String, Option<&str>)> = st
        .history()
        .map(|j| (j.id, (j.file().into_owned(), j.client_name())))
        .collect();
    assert_eq!(files[&11], ("s1/two.cpp".to_string(), Some("a")));
    assert_eq!(
        files[&1],
        ("s2/three.cpp".to_string(), Some("c")),
        "decoded at 43"
    );
    let s = st.scheduler();
    assert_eq!((s.protocol, s.reconnects, s.online), (Some(new), 1, false));
    assert_eq!(s.error.as_deref(), Some("the recording ended"));
    let hosts: Vec<_> = st
        .hosts()
        .map(|h| (h.id, h.name.to_string(), h.online))
        .collect();
    assert_eq!(hosts, [(1, "c".to_string(), false)]);
    assert_eq!(st.totals().invalid_messages, 0);
}

#[tokio::test]
async fn a_session_mark_without_end_ends_the_old_sessions_jobs_at_the_mark() {
    let dir = tempfile::tempdir().unwrap();
    let path = recording(
        dir.path(),
        "cut.icwr",
        43,
        &[
            Rec::Frame(0, host(1, "a", 2, false)),
            Rec::Frame(10, request(5, 1, "x.cpp", 43)),
            Rec::Frame(20, frame(&Message::mon_job_begin(5, 1, 0), 43)),
            Rec::Session(9_000, 44),
            Rec::Frame(9_000, host(1, "a", 2, false)),
        ],
    );
    let (state, result) = played(&path, PlayOptions::new("cut.icwr", 0.0)).await;
    assert!(result.unwrap().to_the_end);
    let st = lock_state(&state);
    assert_eq!(
        history(&st)[&5],
        (
            JobState::CutShort,
            Some(EndReason::SchedulerLost),
            START + 20,
            Some(START + 9_000),
            1
        )
    );
    assert_eq!(st.scheduler().protocol, Some(44));
    assert_eq!(st.scheduler().reconnects, 1);
}

/// A recording whose times are exactly `times`, one frame each (what no
/// `Recorder` writes: times that go back, or absurd ones).
fn hand_made(dir: &Path, times_and_frames: &[(u64, Vec<u8>)]) -> PathBuf {
    let mut enc = lz4_flex::frame::FrameEncoder::new(Vec::new());
    enc.write_all(b"ICEWATCH").unwrap();
    enc.write_all(&2u32.to_le_bytes()).unwrap();
    enc.write_all(&43u32.to_le_bytes()).unwrap();
    enc.write_all(&START.to_le_bytes()).unwrap();
    for (at, frame) in times_and_frames {
        enc.write_all(&at.to_le_bytes()).unwrap();
        enc.write_all(frame).unwrap();
    }
    enc.write_all(&u64::MAX.to_le_bytes()).unwrap();
    enc.write_all(&(times_and_frames.len() as u64).to_le_bytes())
        .unwrap();
    let path = dir.join("odd.icwr");
    std::fs::write(&path, enc.finish().unwrap()).unwrap();
    path
}

#[tokio::test(start_paused = true)]
async fn times_that_jump_or_go_back_neither_stall_a_replay_nor_move_its_clock_back() {
    let dir = tempfile::tempdir().unwrap();
    let day = 86_400_000;
    let begin = |job| frame(&Message::mon_job_begin(job, 1, 0), 43);
    let path = hand_made(
        dir.path(),
        &[
            (0, host(1, "a", 8, false)),
            (10, request(1, 1, "one.cpp", 43)),
            (20, begin(1)),
            // Nothing for 300 days, then a time that goes back.
            (300 * day, job_done(1, 0, 43)),
            (5, request(2, 1, "two.cpp", 43)),
            (300 * day + 10, begin(2)),
            (300 * day + 1_010, job_done(2, 0, 43)),
        ],
    );
    // At the recorded pace, and at a pace no one would ask for (only the
    // command line refuses it).
    for speed in [1.0, 1e-300] {
        let started = tokio::time::Instant::now();
        let (state, result) = played(&path, PlayOptions::new("odd.icwr", speed)).await;
        assert!(result.unwrap().to_the_end);
        // Paused time: what passed is exactly what the replay waited.
        let waited = started.elapsed();
        assert!(waited <= MAX_WAIT * 7, "{speed}: waited {waited:?}");
        let st = lock_state(&state);
        let jobs = history(&st);
        assert_eq!(jobs[&1].2, START + 20);
        assert_eq!(jobs[&1].3, Some(START + 300 * day), "as recorded");
        assert_eq!(
            (jobs[&2].2, jobs[&2].3),
            (START + 300 * day + 10, Some(START + 300 * day + 1_010))
        );
        assert_eq!(st.clock_ms(), START + 300 * day + 1_010);
    }
}

#[tokio::test(start_paused = true)]
async fn a_time_beyond_any_recording_stops_the_replay_there_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    for absurd in [u64::MAX - 2, MAX_SPAN_MS + 1, 20 * 365 * 86_400_000] {
        let path = hand_made(
            dir.path(),
            &[
                (0, host(1, "a", 8, false)),
                (10, request(1, 1, "one.cpp", 43)),
                (absurd, frame(&Message::mon_job_begin(1, 1, 0), 43)),
                (30, job_done(1, 0, 43)),
            ],
        );
        let started = tokio::time::Instant::now();
        let (state, result) = played(&path, PlayOptions::new("odd.icwr", 1.0)).await;
        assert!(started.elapsed() <= MAX_WAIT, "{absurd}");
        let err = result.unwrap_err();
        assert!(
            err.contains("corrupt after 2 messages: a time")
                && err.contains("more than a recording spans"),
            "{err}"
        );
        let st = lock_state(&state);
        assert_eq!(st.clock_ms(), START + 10);
        let s = st.scheduler();
        assert!(!s.online);
        assert_eq!(
            s.error.as_deref(),
            Some(&*format!("the recording ended early: {err}"))
        );
        assert_eq!(history(&st)[&1].1, Some(EndReason::SchedulerLost));
    }
}

#[tokio::test(start_paused = true)]
async fn a_replay_at_the_recorded_pace_keeps_it_and_shortens_only_long_gaps() {
    let dir = tempfile::tempdir().unwrap();
    let path = recording(
        dir.path(),
        "paced.icwr",
        43,
        &[
            Rec::Frame(1_000, host(1, "a", 8, false)),
            Rec::Frame(3_000, request(1, 1, "one.cpp", 43)),
            Rec::Frame(3_500, frame(&Message::mon_job_begin(1, 1, 0), 43)),
            // An hour of nothing plays as the longest wait.
            Rec::Frame(3_603_500, job_done(1, 0, 43)),
        ],
    );
    for (speed, expected) in [
        (1.0, Duration::from_millis(3_500) + MAX_WAIT),
        (10.0, Duration::from_millis(350) + MAX_WAIT),
        (0.5, Duration::from_millis(7_000) + MAX_WAIT),
    ] {
        let started = tokio::time::Instant::now();
        let (state, result) = played(&path, PlayOptions::new("paced.icwr", speed)).await;
        assert!(result.unwrap().to_the_end);
        let waited = started.elapsed();
        // Paused time moves only when the replay waits; rounding to the
        // nanosecond on each of four waits aside, exactly.
        let slack = Duration::from_micros(1);
        assert!(
            waited >= expected - slack && waited <= expected + slack,
            "{speed}: {waited:?}, not {expected:?}"
        );
        let st = lock_state(&state);
        let job = history(&st)[&1];
        assert_eq!((job.2, job.3), (START + 3_500, Some(START + 3_603_500)));
    }
}

#[tokio::test(start_paused = true)]
async fn while_a_replay_waits_its_clock_moves_on_at_the_speed() {
    let dir = tempfile::tempdir().unwrap();
    let path = recording(
        dir.path(),
        "slow.icwr",
        43,
        &[
            Rec::Frame(0, host(1, "a", 8, false)),
            Rec::Frame(40_000, host(2, "b", 8, false)),
        ],
    );
    let state = shared_state();
    let changed = icewatch::monitor::changed();
    let reader = recording::open(&path).unwrap();
    let playing = tokio::spawn(play(
        reader,
        PlayOptions::new("slow.icwr", 2.0),
        state.clone(),
        changed.clone(),
        std::future::pending(),
    ));
    // At twice the pace, 20 s wait for the second host: 10 s in, the
    // state's clock is 20 s on (ticked once a second), not yet 40.
    guarded(
        "the first host",
        wait_until(&state, &changed, |st| st.hosts().count() == 1),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(10_500)).await;
    let clock = lock_state(&state).clock_ms();
    assert!(
        (START + 19_000..=START + 21_000).contains(&clock),
        "{}",
        clock - START
    );
    assert!(
        guarded("the end", playing)
            .await
            .unwrap()
            .unwrap()
            .to_the_end
    );
    assert_eq!(lock_state(&state).clock_ms(), START + 40_000);
}
