//! `icewatch record` and live `icewatch dump`, against the demo running as
//! a scheduler: what is recorded replays frame for frame, Ctrl-C and crashes
//! leave readable files, and unreachable schedulers give one clear line.

mod support;

use assert_cmd::cargo::cargo_bin_cmd;
use predicates::prelude::*;
use std::net::{SocketAddr, TcpListener};
use support::captures::frames_of;
use support::client::SchedulerClient;
use support::command::{dump_capture, scratch_dir, stdout_text, type_counts, Running};

fn demo(seed: &str, rate: &str) -> (Running, SocketAddr) {
    let demo = Running::demo_scheduler(&["--seed", seed, "--rate", rate]);
    let addr = demo.scheduler_addr();
    (demo, addr)
}

/// "... N messages ..." in a progress line.
fn messages_in(line: &str) -> Option<u64> {
    let (_, rest) = line.split_once(": ")?;
    rest.split(' ').next()?.parse().ok()
}

/// `icewatch record ADDR -o PATH`, once a progress line shows at least 20
/// messages; returns that line too.
fn recording_with_progress(addr: SocketAddr, path: &std::path::Path) -> (Running, String) {
    let record = Running::start(&["record", &addr.to_string(), "-o", path.to_str().unwrap()]);
    let line = record.stderr_until(|l| messages_in(l).is_some_and(|n| n >= 20));
    (record, line)
}

#[test]
fn record_then_replay_reproduces_the_same_frames() {
    let (_demo, addr) = demo("9", "0");
    let dir = scratch_dir("record_then_replay");
    let path = dir.join("demo.icwr");
    cargo_bin_cmd!("icewatch")
        .args(["record", &addr.to_string(), "--count", "3000", "-o"])
        .arg(&path)
        .assert()
        .success()
        .stderr(predicate::str::contains("recorded 3000 messages"));
    let frames = frames_of(&path);
    assert_eq!(frames.len(), 3000);

    let replay = Running::replay_scheduler(&path, &["--speed", "0"]);
    let replay_addr = replay.scheduler_addr();
    let mut m = SchedulerClient::connect(replay_addr, 44);
    for (i, want) in frames.iter().enumerate() {
        let got = m.frame().expect("the whole recording");
        assert_eq!(&got, want, "frame {i}");
    }

    // The same through `dump`: live from the replay, and from the file.
    let live = cargo_bin_cmd!("icewatch")
        .args(["dump", &replay_addr.to_string(), "--raw", "--count", "3000"])
        .assert()
        .success();
    let file = cargo_bin_cmd!("icewatch")
        .args(["dump", "--raw", "--capture"])
        .arg(&path)
        .assert()
        .success();
    let raw = |out: &[u8]| -> Vec<String> {
        String::from_utf8(out.to_vec())
            .unwrap()
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                v["raw"].as_str().unwrap().to_string()
            })
            .collect()
    };
    assert_eq!(
        raw(&live.get_output().stdout),
        raw(&file.get_output().stdout)
    );
}

#[test]
fn ctrl_c_ends_a_recording_cleanly_after_showing_progress() {
    let (_demo, addr) = demo("10", "300");
    let dir = scratch_dir("record_ctrl_c");
    let path = dir.join("ctrl-c.icwr");
    let (mut record, line) = recording_with_progress(addr, &path);
    assert!(line.starts_with("recording to "), "{line}");
    let shown = messages_in(&line).unwrap();
    record.signal("INT");
    assert!(record.wait().success());
    let out = dump_capture(&path).success();
    let lines = stdout_text(&out).lines().count() as u64;
    assert!(lines >= shown, "{lines} < {shown}");
}

#[test]
fn a_recording_cut_short_by_a_crash_reads_back_every_flushed_message() {
    let (_demo, addr) = demo("11", "300");
    let dir = scratch_dir("record_crash");
    let path = dir.join("crash.icwr");
    let (mut record, line) = recording_with_progress(addr, &path);
    let flushed = messages_in(&line).unwrap();
    record.signal("KILL");
    let status = record.wait();
    assert!(!status.success());
    let out = dump_capture(&path)
        .failure()
        .stderr(predicate::str::contains("is truncated after"));
    let lines = stdout_text(&out).lines().count() as u64;
    assert!(lines >= flushed, "{lines} < {flushed}");
}

#[test]
fn live_dump_prints_one_object_per_message_with_its_time() {
    let (_demo, addr) = demo("12", "0");
    let out = cargo_bin_cmd!("icewatch")
        .args(["dump", &addr.to_string(), "-c", "2000"])
        .assert()
        .success()
        .stderr(predicate::str::contains("protocol 44"));
    let stdout = stdout_text(&out);
    let counts = type_counts(&stdout);
    assert_eq!(counts.values().sum::<u32>(), 2000);
    for ty in counts.keys() {
        assert!(
            [
                "MON_STATS",
                "MON_GET_CS",
                "MON_JOB_BEGIN",
                "JOB_DONE",
                "MON_LOCAL_JOB_BEGIN",
                "JOB_LOCAL_DONE"
            ]
            .contains(&ty.as_str()),
            "{ty}"
        );
    }
    assert!(stdout.lines().all(|l| l.contains(r#""at_ms":"#)));
}

#[test]
fn dump_finds_the_scheduler_through_use_scheduler() {
    let (_demo, addr) = demo("13", "0");
    cargo_bin_cmd!("icewatch")
        .env("USE_SCHEDULER", addr.to_string())
        .env_remove("ICECC_SCHEDULER")
        .args(["dump", "-c", "10", "--protocol", "43"])
        .assert()
        .success()
        .stdout(predicate::function(|s: &str| s.lines().count() == 10))
        .stderr(predicate::str::contains("protocol 43"));
}

/// A loopback port with nothing listening on it.
fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

#[test]
fn a_scheduler_that_is_not_there_gives_one_line_with_a_hint() {
    let addr = closed_port();
    let dir = scratch_dir("record_not_there");
    let output = dir.join("never.icwr");
    let target = addr.to_string();
    let dump = vec!["dump", target.as_str()];
    let record = vec!["record", target.as_str(), "-o", output.to_str().unwrap()];
    for args in [dump, record] {
        cargo_bin_cmd!("icewatch")
            .args(&args)
            .assert()
            .failure()
            .stdout("")
            .stderr(predicate::function(move |s: &str| {
                let last = s.lines().last().unwrap_or("");
                last.starts_with(&format!("error: cannot connect to scheduler {addr}"))
                    && last.contains("is the icecream scheduler running there")
                    && last.contains("USE_SCHEDULER")
            }));
    }
}

#[test]
fn something_that_is_not_a_scheduler_gives_one_line_with_a_hint() {
    use std::io::Write;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let web = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n");
    });
    cargo_bin_cmd!("icewatch")
        .args(["dump", &addr.to_string()])
        .assert()
        .failure()
        .stderr(predicate::function(|s: &str| {
            let last = s.lines().last().unwrap_or("");
            last.contains("not an icecream protocol version")
                && last.contains("is that an icecream scheduler?")
        }));
    web.join().unwrap();
}

#[test]
fn a_bad_scheduler_address_gives_one_line() {
    cargo_bin_cmd!("icewatch")
        .args(["dump", "sched.lan:http"])
        .assert()
        .failure()
        .stderr(predicate::function(|s: &str| {
            s.lines().count() == 1 && s.contains("invalid port") && s.contains("sched.lan:http")
        }));
}

#[test]
fn record_into_a_path_that_cannot_be_created_gives_one_line() {
    cargo_bin_cmd!("icewatch")
        .args(["record", "127.0.0.1", "-o", "/no/such/dir/x.icwr"])
        .assert()
        .failure()
        .stderr(predicate::function(|s: &str| {
            s.lines().count() == 1 && s.starts_with("error: cannot create /no/such/dir/x.icwr: ")
        }));
}
