//! `icewatch replay --as-scheduler`: a capture or recording played to a
//! monitor as a scheduler would send it, and its errors. And `icewatch
//! replay` serving the page: on the recording's own clock.

mod support;

use assert_cmd::cargo::cargo_bin_cmd;
use icewatch::capture::recording::Recorder;
use icewatch::protocol::frame::Frame;
use icewatch::protocol::{Language, Message, MsgType};
use predicates::prelude::*;
use std::collections::HashMap;
use support::captures::{capture, frames_of};
use support::client::SchedulerClient;
use support::command::{http_body, scratch_dir, Running};

#[test]
fn replaying_a_capture_sends_its_exact_frames_then_end_on_ctrl_c() {
    let path = capture(43);
    let expected = frames_of(&path);
    let mut replay = Running::replay_scheduler(&path, &[]);
    let mut m = SchedulerClient::connect(replay.scheduler_addr(), 44);
    assert_eq!(m.version, 43, "offers the capture's own version");
    for (i, want) in expected.iter().enumerate() {
        let got = m.frame().expect("every frame of the capture");
        assert_eq!(&got, want, "frame {i}");
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
    let expected = frames_of(&path);
    let replay = Running::replay_scheduler(&path, &["--speed", "0"]);
    let addr = replay.scheduler_addr();
    for offer in [21, 29, 38, 43] {
        let mut m = SchedulerClient::connect(addr, offer);
        for want in &expected {
            let got = m.frame().unwrap();
            assert_eq!(got.ty(), want.ty());
            let want_msg = want.decode(43).unwrap();
            let got_msg = got.decode(offer).unwrap();
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
    let mut m = SchedulerClient::connect(replay.scheduler_addr(), 44);
    assert_eq!(m.version, 44);
    let mut done = 0;
    let total = frames_of(&path).len();
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
fn replay_and_demo_refuse_a_speed_or_rate_they_cannot_keep_with_one_line() {
    let refused = |args: &[&str], flag: &str, range: &str| {
        cargo_bin_cmd!("icewatch")
            .args(args)
            .assert()
            .code(2)
            .stdout("")
            .stderr(predicate::function(|s: &str| {
                let first = s.lines().next().unwrap_or("");
                first.starts_with("error: invalid value")
                    && first.contains(flag)
                    && first.contains(range)
                    && !s.contains("panicked")
            }));
    };
    for speed in [
        "--speed=-2",
        "--speed=1e-300",
        "--speed=1e300",
        "--speed=NaN",
    ] {
        refused(
            &["replay", "x.icwr", speed],
            "--speed",
            "is neither 0 nor a number from 0.001 to 1000000",
        );
    }
    for rate in ["--rate=1e-300", "--rate=-1", "--rate=inf"] {
        refused(
            &["demo", rate],
            "--rate",
            "is neither 0 nor a number from 0.01 to 1000000",
        );
    }
}

#[test]
fn a_truncated_recording_replays_its_whole_messages_then_warns() {
    let dir = scratch_dir("replay_truncated");
    let path = dir.join("cut.icwr");
    let frames = frames_of(capture(44));
    let mut rec =
        icewatch::capture::recording::Recorder::new(std::fs::File::create(&path).unwrap(), 44, 0)
            .unwrap();
    for frame in &frames[..100] {
        rec.write_frame(0, frame).unwrap();
    }
    // Flushed but never finished: what a crash leaves behind.
    rec.flush().unwrap();
    let replay = Running::replay_scheduler(&path, &[]);
    let mut m = SchedulerClient::connect(replay.scheduler_addr(), 44);
    for want in &frames[..100] {
        assert_eq!(&m.frame().unwrap(), want);
    }
    replay.stderr_until(|l| {
        l.contains("stops early: the file is truncated after 100 whole messages")
    });
}

/// The JSON body of `GET path` from the page at `host` (`IP:PORT`).
fn get_json(host: &str, path: &str) -> serde_json::Value {
    serde_json::from_str(&http_body(host, path)).unwrap()
}

#[test]
fn replaying_a_recording_at_full_speed_serves_its_own_times_and_says_it_is_a_replay() {
    let dir = scratch_dir("replay_page_times");
    let path = dir.join("night.icwr");
    let shown = path.to_str().unwrap();
    let frames = frames_of(capture(43));
    let start = 1_700_000_000_000u64;
    let at = |i: usize| i as u64 * 250;
    let mut rec = Recorder::new(std::fs::File::create(&path).unwrap(), 43, start).unwrap();
    // How long each job compiled (or ran locally), as recorded.
    let mut began = HashMap::new();
    let mut lasted = HashMap::new();
    for (i, frame) in frames.iter().enumerate() {
        rec.write_frame(at(i), frame).unwrap();
        match frame.decode(43).unwrap() {
            Message::MonJobBegin(m) => drop(began.insert(m.job_id, at(i))),
            Message::MonLocalJobBegin(m) => drop(began.insert(m.job_id, at(i))),
            Message::MonJobDone(d) => drop(lasted.insert(d.job_id, at(i) - began[&d.job_id])),
            Message::JobLocalDone(d) => drop(lasted.insert(d.job_id, at(i) - began[&d.job_id])),
            _ => {}
        }
    }
    rec.finish().unwrap();

    let replay = Running::start(&["replay", shown, "--listen", "127.0.0.1:0", "--speed", "0"]);
    let line = replay.stdout_line();
    let host = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("http://"))
        .and_then(|w| w.strip_suffix('/'))
        .unwrap_or_else(|| panic!("no URL in {line:?}"))
        .to_string();
    replay.stderr_until(|l| {
        l.contains(&format!(
            "the recording ended after {} messages",
            frames.len()
        ))
    });
    let snapshot = get_json(&host, "/api/v1/snapshot");
    let last = start + at(frames.len() - 1);
    assert_eq!(
        snapshot["scheduler"],
        serde_json::json!({
            "address": shown,
            "protocol": 43,
            "online": false,
            "since_ms": last,
            "reconnects": 0,
            "error": "the recording ended",
            "replay": {"file": shown, "recorded_ms": start},
        })
    );
    let history = snapshot["history"].as_array().unwrap();
    let shown_lasting: HashMap<u32, u64> = history
        .iter()
        .map(|j| {
            let id = j["id"].as_u64().unwrap() as u32;
            (
                id,
                j["end_ms"].as_u64().unwrap() - j["start_ms"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(shown_lasting.len(), 44);
    assert_eq!(shown_lasting, lasted);
    let failed = history.iter().find(|j| j["state"] == "failed").unwrap();
    assert!(failed["end_ms"].as_u64() > failed["start_ms"].as_u64());
}

#[test]
fn a_recording_of_two_sessions_plays_to_a_monitor_as_its_hosts_leaving_and_new_ones_coming() {
    let dir = scratch_dir("replay_sessions");
    let path = dir.join("restart.icwr");
    let request = Message::mon_get_cs(1, 1, "src/after.cpp", Language::CXX);
    let first = [
        (0, Message::mon_stats(1, "Name:a\nMaxJobs:2\n")),
        (0, Message::mon_stats(2, "Name:b\nMaxJobs:2\n")),
        (1, Message::mon_stats(2, "State:Offline\n")),
        (2, Message::mon_stats(3, "Name:d\nMaxJobs:1\n")),
        (5, Message::End),
    ];
    // The scheduler comes back speaking protocol 28 (the long MON_GET_CS).
    let second = [
        (9, Message::mon_stats(1, "Name:c\nMaxJobs:4\n")),
        (10, request),
    ];
    let mut rec = Recorder::new(std::fs::File::create(&path).unwrap(), 43, 0).unwrap();
    for (at, msg) in &first {
        rec.write_frame(*at, &Frame::encode(msg, 43)).unwrap();
    }
    rec.new_session(9, 28).unwrap();
    for (at, msg) in &second {
        rec.write_frame(*at, &Frame::encode(msg, 28)).unwrap();
    }
    rec.finish().unwrap();

    let mut replay = Running::replay_scheduler(&path, &["--speed", "0"]);
    let mut m = SchedulerClient::connect(replay.scheduler_addr(), 44);
    assert_eq!(m.version, 43, "the first session's version");
    let mut seen = Vec::new();
    while let Some(frame) = m.frame() {
        let ty = m.check(&frame);
        seen.push(match frame.decode(m.version).unwrap() {
            Message::MonStats(s) => format!(
                "{} {}",
                s.host_id,
                String::from_utf8_lossy(s.text).trim_end_matches(['\n', '\0'])
            ),
            Message::MonGetCs(g) => format!(
                "job {} {}",
                g.job_id,
                String::from_utf8_lossy(g.request.filename)
            ),
            _ => ty.to_string(),
        });
        if seen.len() == 8 {
            replay.signal("INT");
        }
    }
    assert_eq!(
        seen,
        [
            "1 Name:a\nMaxJobs:2",
            "2 Name:b\nMaxJobs:2",
            "2 State:Offline",
            "3 Name:d\nMaxJobs:1",
            // No END: the monitor stays, and sees the hosts it knows leave.
            "1 State:Offline",
            "3 State:Offline",
            "1 Name:c\nMaxJobs:4",
            "job 1 src/after.cpp",
            "END",
        ]
    );
    assert!(replay.wait().success());
}
