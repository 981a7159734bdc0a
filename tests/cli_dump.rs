//! `icewatch dump --capture`: NDJSON from raw captures and recordings, and
//! its errors.

mod support;

use assert_cmd::cargo::cargo_bin_cmd;
use icewatch::capture::recording::Recorder;
use predicates::prelude::*;
use std::collections::BTreeMap;
use support::captures::{capture, frames_of};
use support::command::{dump_capture, scratch_dir, stdout_text, type_counts};

/// MON_STATS counts per capture, from `tests/data/README.md`; every capture
/// also holds O=2 S=42 T=42 U=42 V=2.
const STATS: &[(u32, u32)] = &[
    (21, 20),
    (22, 14),
    (29, 17),
    (34, 29),
    (38, 32),
    (39, 11),
    (43, 23),
    (44, 26),
];

#[test]
fn dump_capture_prints_exactly_the_documented_counts_for_every_capture() {
    for &(version, stats) in STATS {
        let out = dump_capture(capture(version)).success();
        let stdout = stdout_text(&out);
        let expected: BTreeMap<String, u32> = [
            ("JOB_LOCAL_DONE", 2),
            ("MON_GET_CS", 42),
            ("MON_JOB_BEGIN", 42),
            ("MON_JOB_DONE", 42),
            ("MON_LOCAL_JOB_BEGIN", 2),
            ("MON_STATS", stats),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        assert_eq!(type_counts(&stdout), expected, "basic.v{version}.bin");
    }
}

#[test]
fn dump_raw_hex_of_every_line_adds_up_to_the_capture() {
    let out = cargo_bin_cmd!("icewatch")
        .args(["dump", "--raw", "--capture"])
        .arg(capture(39))
        .assert()
        .success();
    let stdout = stdout_text(&out);
    let hex: String = stdout
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["raw"].as_str().unwrap().to_string()
        })
        .collect();
    let file = std::fs::read(capture(39)).unwrap();
    let expected: String = file[8..].iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(hex, expected);
}

#[test]
fn dump_shows_decoded_fields_and_host_stats_as_an_object() {
    let out = dump_capture(capture(43)).success();
    let stdout = stdout_text(&out);
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let stats = &lines[0];
    assert_eq!(stats["type"], "MON_STATS");
    assert_eq!(stats["stats"]["Name"], "localice");
    assert_eq!(stats["stats"]["NoRemote"], true);
    assert_eq!(stats["stats"]["MaxJobs"], 2);
    let failed: Vec<_> = lines
        .iter()
        .filter(|l| l["type"] == "MON_JOB_DONE" && l["exit_code"] != 0)
        .collect();
    assert_eq!(failed.len(), 1);
    let offline = lines
        .iter()
        .filter(|l| l["stats"]["State"] == "Offline")
        .count();
    assert_eq!(offline, 1);
    let begin = lines.iter().find(|l| l["type"] == "MON_JOB_BEGIN").unwrap();
    assert!(begin["job_id"].is_u64() && begin["host_id"].is_u64() && begin["start_time"].is_u64());
}

#[test]
fn dump_status_goes_to_stderr_and_count_stops_early() {
    cargo_bin_cmd!("icewatch")
        .args(["dump", "--count", "5", "--capture"])
        .arg(capture(21))
        .assert()
        .success()
        .stdout(predicate::function(|s: &str| s.lines().count() == 5))
        .stderr(predicate::str::contains("raw capture, protocol 21"));
}

#[test]
fn dump_reads_an_icewatch_recording_with_receive_times() {
    let dir = scratch_dir("dump_recording");
    let path = dir.join("rec.icwr");
    let mut rec =
        Recorder::new(std::fs::File::create(&path).unwrap(), 44, 1_700_000_000_000).unwrap();
    for (i, frame) in frames_of(capture(44)).iter().enumerate() {
        rec.write_frame(i as u64 * 7, frame).unwrap();
    }
    rec.finish().unwrap();
    let out = dump_capture(&path)
        .success()
        .stderr(predicate::str::contains("icewatch recording, protocol 44"));
    let stdout = stdout_text(&out);
    let times: Vec<u64> = stdout
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["at_ms"].as_u64().unwrap()
        })
        .collect();
    assert_eq!(times.len(), 2 + 42 * 3 + 2 + 26);
    assert!(times.iter().enumerate().all(|(i, t)| *t == i as u64 * 7));
    assert!(stdout.starts_with(r#"{"type":"MON_STATS","at_ms":0,"#));
}

#[test]
fn dump_of_a_missing_file_fails_with_one_line() {
    cargo_bin_cmd!("icewatch")
        .args(["dump", "--capture", "no/such/file.icwr"])
        .assert()
        .failure()
        .stdout("")
        .stderr(predicate::function(|s: &str| {
            s.lines().count() == 1
                && s.starts_with("error: cannot read no/such/file.icwr: ")
                && s.contains("No such file")
        }));
}

#[test]
fn dump_of_a_capture_at_an_unknown_version_fails_with_one_line() {
    let dir = scratch_dir("dump_unknown_version");
    let mut file = std::fs::read(capture(43)).unwrap();
    file[4..8].copy_from_slice(&45u32.to_le_bytes());
    let path = dir.join("v45.bin");
    std::fs::write(&path, &file).unwrap();
    dump_capture(&path)
        .failure()
        .stdout("")
        .stderr(predicate::function(|s: &str| {
            s.lines().count() == 1
                && s.contains("protocol version 45, which icewatch does not know")
        }));
}

#[test]
fn dump_of_a_truncated_capture_prints_every_whole_message_then_fails() {
    let dir = scratch_dir("dump_truncated");
    let file = std::fs::read(capture(43)).unwrap();
    let path = dir.join("cut.bin");
    std::fs::write(&path, &file[..1000]).unwrap();
    let out = dump_capture(&path)
        .failure()
        .stderr(predicate::str::contains("truncated after 6 whole messages"));
    let stdout = stdout_text(&out);
    assert_eq!(stdout.lines().count(), 6);
}

#[test]
fn dump_of_a_corrupt_recording_fails_without_a_panic() {
    let dir = scratch_dir("dump_corrupt");
    let path = dir.join("bad.icwr");
    let mut rec = Recorder::new(Vec::new(), 43, 0).unwrap();
    for frame in frames_of(capture(43)) {
        rec.write_frame(0, &frame).unwrap();
    }
    let mut bytes = rec.finish().unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    dump_capture(&path).code(1).stderr(
        predicate::str::contains("is corrupt after 0 messages: damaged lz4 data")
            .and(predicate::str::contains("panicked").not()),
    );
}

#[test]
fn dump_prints_a_line_where_each_new_scheduler_session_begins() {
    use icewatch::protocol::{frame::Frame, Language, Message};
    let stats = Message::mon_stats(1, "Name:a\nMaxJobs:2\n");
    let request = Message::mon_get_cs(4, 1, "src/after.c", Language::C);
    let dir = scratch_dir("dump_sessions");
    let path = dir.join("restart.icwr");
    let mut rec = Recorder::new(std::fs::File::create(&path).unwrap(), 43, 0).unwrap();
    rec.write_frame(3, &Frame::encode(&stats, 43)).unwrap();
    rec.write_frame(5, &Frame::encode(&request, 43)).unwrap();
    // The scheduler comes back speaking protocol 28: the long MON_GET_CS.
    rec.new_session(9_000, 28).unwrap();
    rec.write_frame(9_000, &Frame::encode(&stats, 28)).unwrap();
    rec.write_frame(9_004, &Frame::encode(&request, 28))
        .unwrap();
    rec.finish().unwrap();
    let out = dump_capture(&path)
        .success()
        .stderr(predicate::str::contains(
            "4 messages in 2 scheduler sessions",
        ));
    let lines: Vec<serde_json::Value> = stdout_text(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let shown: Vec<(String, u64)> = lines
        .iter()
        .map(|v| {
            let what = v["type"].as_str().map_or_else(
                || format!("session {} at {}", v["session"], v["protocol"]),
                str::to_owned,
            );
            (what, v["at_ms"].as_u64().unwrap())
        })
        .collect();
    assert_eq!(
        shown,
        [
            ("MON_STATS".to_string(), 3),
            ("MON_GET_CS".to_string(), 5),
            ("session 2 at 28".to_string(), 9_000),
            ("MON_STATS".to_string(), 9_000),
            ("MON_GET_CS".to_string(), 9_004),
        ]
    );
    assert_eq!(lines[1]["filename"], "src/after.c");
    assert_eq!(lines[1].get("environments"), None, "short at 43");
    assert_eq!(lines[4]["filename"], "src/after.c", "decoded at 28");
    assert_eq!(
        lines[4]["environments"],
        serde_json::json!([]),
        "long at 28"
    );
    // Counting stops at messages, not at marks.
    let out = cargo_bin_cmd!("icewatch")
        .args(["dump", "--count", "3", "--capture"])
        .arg(&path)
        .assert()
        .success();
    assert_eq!(stdout_text(&out).lines().count(), 4);
}
