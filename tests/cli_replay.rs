//! `icewatch replay --as-scheduler`: a capture or recording played to a
//! monitor as a scheduler would send it, and its errors.

mod common;

use assert_cmd::cargo::cargo_bin_cmd;
use common::{capture, scratch_dir, Monitor, Running};
use icewatch::protocol::frame::{parse_frame, MAX_MSG_SIZE};
use icewatch::protocol::{Message, MsgType};
use predicates::prelude::*;

fn frames_of(file: &[u8]) -> Vec<Vec<u8>> {
    let mut input = &file[8..];
    let mut frames = Vec::new();
    while let Ok((rest, _)) = parse_frame(input, MAX_MSG_SIZE) {
        frames.push(input[..input.len() - rest.len()].to_vec());
        input = rest;
    }
    frames
}

#[test]
fn replaying_a_capture_sends_its_exact_frames_then_end_on_ctrl_c() {
    let path = capture(43);
    let expected = frames_of(&std::fs::read(&path).unwrap());
    let mut replay = Running::replay_scheduler(&path, &[]);
    let mut m = Monitor::connect(replay.scheduler_addr(), 44);
    assert_eq!(m.version, 43, "offers the capture's own version");
    for (i, want) in expected.iter().enumerate() {
        let got = m.frame().expect("every frame of the capture");
        assert_eq!(&got[..], &want[..], "frame {i}");
    }
    replay.signal("INT");
    let end = m.frame().expect("END");
    assert_eq!(m.check(&end), MsgType::END);
    assert!(m.frame().is_none());
    assert!(replay.wait().success());
}

#[test]
fn every_monitor_gets_the_whole_capture_at_its_own_version() {
    let path = capture(43);
    let expected = frames_of(&std::fs::read(&path).unwrap());
    let replay = Running::replay_scheduler(&path, &["--speed", "0"]);
    let addr = replay.scheduler_addr();
    for offer in [21, 29, 38, 43] {
        let mut m = Monitor::connect(addr, offer);
        for want in &expected {
            let got = m.frame().unwrap();
            let (_, w) = parse_frame(want, MAX_MSG_SIZE).unwrap();
            let (_, g) = parse_frame(&got, MAX_MSG_SIZE).unwrap();
            assert_eq!(g.ty, w.ty);
            let want_msg = Message::decode(w.ty, w.body, 43).unwrap();
            let got_msg = Message::decode(g.ty, g.body, offer).unwrap();
            // The short MON_GET_CS becomes the long one below 29, with the
            // same file, language, job and client.
            match (want_msg, got_msg) {
                (Message::MonGetCs(a), Message::MonGetCs(b)) => {
                    assert_eq!(
                        (a.job_id, a.client_id, a.request.filename, a.request.lang),
                        (b.job_id, b.client_id, b.request.filename, b.request.lang)
                    );
                }
                (Message::MonJobDone(a), Message::MonJobDone(b)) => {
                    assert_eq!(
                        (a.job_id, a.exit_code, a.real_ms),
                        (b.job_id, b.exit_code, b.real_ms)
                    );
                }
                (a, b) => assert_eq!(a, b, "at protocol {offer}"),
            }
        }
    }
}

#[test]
fn replay_can_rewrite_job_ends_as_git_master_sends_them() {
    let path = capture(43);
    let replay = Running::replay_scheduler(&path, &["--protocol", "44", "--job-done", "auto"]);
    let mut m = Monitor::connect(replay.scheduler_addr(), 44);
    assert_eq!(m.version, 44);
    let mut done = 0;
    let total = frames_of(&std::fs::read(&path).unwrap()).len();
    for _ in 0..total {
        let frame = m.frame().unwrap();
        let ty = m.check(&frame);
        assert_ne!(ty, MsgType::MON_JOB_DONE);
        done += usize::from(ty == MsgType::JOB_DONE);
    }
    assert_eq!(done, 42);
}

#[test]
fn replay_of_a_missing_file_fails_with_one_line() {
    cargo_bin_cmd!("icewatch")
        .args(["replay", "missing.icwr", "--as-scheduler", "--port", "0"])
        .assert()
        .failure()
        .stdout("")
        .stderr(predicate::function(|s: &str| {
            s.lines().count() == 1 && s.starts_with("error: cannot replay missing.icwr: ")
        }));
}

#[test]
fn replay_of_a_file_that_is_not_a_recording_fails_with_one_line() {
    let dir = scratch_dir("replay_not_a_recording");
    let path = dir.join("notes.txt");
    std::fs::write(&path, "just some text, not a capture\n").unwrap();
    cargo_bin_cmd!("icewatch")
        .args(["replay", "--as-scheduler", "--port", "0"])
        .arg(&path)
        .assert()
        .failure()
        .stderr(predicate::function(|s: &str| {
            s.lines().count() == 1 && s.contains("which icewatch does not know")
        }));
}

#[test]
fn replay_refuses_a_negative_speed() {
    cargo_bin_cmd!("icewatch")
        .args(["replay", "x.icwr", "--speed=-2"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("is not a number of 0 or more"));
}

#[test]
fn a_truncated_recording_replays_its_whole_messages_then_warns() {
    let dir = scratch_dir("replay_truncated");
    let path = dir.join("cut.icwr");
    let frames = frames_of(&std::fs::read(capture(44)).unwrap());
    let mut rec =
        icewatch::record::Recorder::new(std::fs::File::create(&path).unwrap(), 44, 0).unwrap();
    for frame in &frames[..100] {
        rec.write_frame(0, frame).unwrap();
    }
    // Flushed but never finished: what a crash leaves behind.
    rec.flush().unwrap();
    let replay = Running::replay_scheduler(&path, &[]);
    let mut m = Monitor::connect(replay.scheduler_addr(), 44);
    for want in &frames[..100] {
        assert_eq!(&m.frame().unwrap()[..], &want[..]);
    }
    replay.stderr_until(|l| {
        l.contains("stops early: the file is truncated after 100 whole messages")
    });
}
