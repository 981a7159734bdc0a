//! `icewatch history builds` on the history of a replayed real build
//! (`tests/data/README.md`), and `/api/v1/builds` of the same replay: one
//! build of `localice` with its reasons, as a table and as JSON lines.

mod support;

use icewatch::history::query;
use serde_json::Value;
use std::time::{Duration, Instant};
use support::captures::capture;
use support::command::{get, icewatch, page_url, scratch_dir, split_url, Running, PATIENCE};

#[test]
fn the_builds_of_a_replayed_real_build_read_back_as_a_table_json_lines_and_from_the_api() {
    let dir = scratch_dir("cli-builds");
    let db = dir.join("h.sqlite");
    let replay = capture(43);
    let mut command = icewatch();
    command.args([
        "replay",
        replay.to_str().unwrap(),
        "--speed",
        "0",
        "--listen",
        "127.0.0.1:0",
    ]);
    command.arg("--db").arg(&db).args(["--build-gap", "5s"]);
    let mut run = Running::spawn(command);
    let (host, _) = split_url(&page_url(&run));
    // The whole build, live: the replay ends, and with the scheduler gone
    // the build has ended.
    let deadline = Instant::now() + PATIENCE;
    let live = loop {
        let (status, body) = get(&host, "/api/v1/builds");
        assert_eq!(status, 200);
        let page: Value = serde_json::from_str(&body).unwrap();
        let done = page["builds"][0]["jobs"] == 44 && page["builds"][0]["open"] == false;
        if done {
            break page;
        }
        assert!(Instant::now() < deadline, "the build in time: {body}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(live["gap_ms"], 5000);
    let why: Vec<&str> = live["builds"][0]["why"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["kind"].as_str().unwrap())
        .collect();
    assert_eq!(why, ["given_back", "local_unasked", "retried_locally"]);
    // Stopped, every job is in the history.
    run.signal("INT");
    assert!(run.wait().success());
    let conn = query::open(&db).unwrap();
    let jobs: i64 = conn
        .query_row("SELECT count(*) FROM jobs", [], |r| r.get(0))
        .unwrap();
    assert_eq!(jobs, 44);

    let read = |args: &[&str]| {
        let out = icewatch()
            .args(["history", "builds", "--db", db.to_str().unwrap()])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let lines: Vec<Value> = read(&["--json"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1);
    let b = &lines[0];
    assert_eq!(b["host"], "localice");
    assert_eq!(
        (b["jobs"].as_u64(), b["remote"].as_u64()),
        (Some(44), Some(16))
    );
    assert_eq!(
        (b["given_back"].as_u64(), b["local"].as_u64()),
        (Some(26), Some(2))
    );
    assert_eq!(
        (b["failed"].as_u64(), b["cut_short"].as_u64()),
        (Some(1), Some(0))
    );
    assert_eq!(
        b["why"], live["builds"][0]["why"],
        "the history says what the live page said"
    );
    let table = read(&["--host", "localice"]);
    let rows: Vec<&str> = table.lines().collect();
    assert_eq!(rows.len(), 2, "{table}");
    assert!(
        rows[0].starts_with("STARTED") && rows[0].ends_with("WHY"),
        "{table}"
    );
    let cells: Vec<&str> = rows[1].split_whitespace().collect();
    assert_eq!(cells[2..5], ["localice", "44", "36%"], "{table}");
    assert_eq!(
        cells.last(),
        Some(&"given_back,local_unasked,retried_locally")
    );
    // --gap is the older name of --build-gap; another host has no builds.
    assert_eq!(read(&["--gap", "1s", "--host", "remote1", "--json"]), "");
}
