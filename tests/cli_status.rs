//! `icewatch status`: one look at a scheduler (here a real scheduler's
//! capture replayed as one), as a table or as the snapshot JSON that the
//! page's `/api/v1/snapshot` serves; a one-line error when nobody answers.

mod support;

use icewatch::monitor::{State, StateOptions};
use serde_json::Value;
use std::path::PathBuf;
use std::time::Instant;
use support::captures::{capture, frames_of};
use support::command::{http_body, icewatch, scratch_dir, Running, PATIENCE};

/// The capture cut in the middle of its build: every slot busy and jobs
/// waiting (its header, then its first frames).
fn mid_build_capture() -> PathBuf {
    let file = std::fs::read(capture(43)).unwrap();
    let mut state = State::new(StateOptions::default());
    state.scheduler_connected("s".into(), 43, 0);
    // The header (the agreed version), then whole frames.
    let mut cut = 8;
    for frame in frames_of(capture(43)) {
        state.apply(&frame.decode(43).unwrap(), 0);
        cut += frame.as_bytes().len();
        let t = state.totals();
        if t.busy_slots == t.total_slots && t.total_slots > 0 && t.pending > 0 {
            break;
        }
    }
    let path = scratch_dir("status-mid-build").join("mid.v43.bin");
    std::fs::write(&path, &file[..cut]).unwrap();
    path
}

/// The snapshot without what differs between two monitors of the same
/// stream: when each saw each message (and the WebSocket's `type`/`seq`),
/// and what the serving icewatch itself offers (`text_port`, `admin`:
/// `monitor` reads the scheduler's text port, `status` does not; its
/// history's `database`: `status` keeps none).
fn without_times(mut v: Value) -> Value {
    let o = v.as_object_mut().unwrap();
    for own in ["type", "seq", "text_port", "admin", "database"] {
        o.remove(own);
    }
    o["scheduler"]["since_ms"] = Value::Null;
    for list in ["jobs", "history"] {
        for job in o[list].as_array_mut().unwrap() {
            job["start_ms"] = Value::Null;
            job["end_ms"] = Value::Null;
        }
    }
    v
}

#[test]
fn status_json_mid_build_equals_the_page_snapshot() {
    let replay = Running::replay_scheduler(&mid_build_capture(), &[]);
    let addr = replay.scheduler_addr().to_string();
    let out = icewatch()
        .args(["status", &addr, "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status: Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    let jobs = status["jobs"].as_array().unwrap();
    assert!(
        jobs.iter().any(|j| j["state"] == "compiling"),
        "mid-build: {status}"
    );
    assert!(
        jobs.iter().any(|j| j["state"] == "waiting"),
        "mid-build: {status}"
    );
    assert_eq!(
        status["totals"]["busy_slots"],
        status["totals"]["total_slots"]
    );

    let page = Running::start(&["monitor", &addr, "--listen", "127.0.0.1:0"]);
    let line = page.stdout_line();
    let host = line
        .split("http://")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .unwrap_or_else(|| panic!("no URL in {line:?}"))
        .to_string();
    let want = without_times(status);
    let deadline = Instant::now() + PATIENCE;
    loop {
        let snapshot: Value = serde_json::from_str(&http_body(&host, "/api/v1/snapshot")).unwrap();
        let got = without_times(snapshot);
        if got == want {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the page's snapshot\n{got}\nis not status's\n{want}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn status_prints_the_host_table_and_the_free_slots() {
    let replay = Running::replay_scheduler(&capture(43), &[]);
    let addr = replay.scheduler_addr().to_string();
    let out = icewatch().args(["status", &addr]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].contains("NAME") && lines[0].contains("PENDING"),
        "{text}"
    );
    assert!(
        text.contains("localice") && text.contains("no-remote"),
        "{text}"
    );
    // remote2 left at the end of the capture: two hosts, 4 slots, all free.
    assert!(!text.contains("remote2"), "{text}");
    assert!(text.contains("hosts:   2 online"), "{text}");
    assert!(
        text.contains("slots:   4 (2 on hosts that take remote jobs)"),
        "{text}"
    );
    assert!(text.contains("free:    4"), "{text}");
}

#[test]
fn status_without_a_scheduler_fails_in_one_line() {
    let out = icewatch().args(["status", "127.0.0.1:1"]).output().unwrap();
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("error: cannot connect to scheduler 127.0.0.1:1"),
        "{err}"
    );
}
