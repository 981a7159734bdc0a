//! The history end to end, with the real binary: `monitor` keeps one by
//! default where it says, `demo` and `replay` only with `--db`, a process
//! killed with SIGKILL loses at most the last second of finished jobs,
//! unusable databases stop the start with one line, and `icewatch history`
//! reads it back. What does not depend on a file runs against both
//! backends, SQLite and PostgreSQL (`support::databases`).

mod support;

use icewatch::history::query::{self, Filter};
use icewatch::history::{Location, Reading};
use libtest_mimic::{Arguments, Trial};
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use support::captures::{capture, frames_of};
use support::command::{get, icewatch, page_url, scratch_dir, split_url, Running, PATIENCE};
use support::databases::{self, Backend, TestDb};

fn main() {
    let args = Arguments::from_args();
    let mut trials: Vec<Trial> = Vec::new();
    for (name, test) in crate::named![
        a_process_killed_with_sigkill_loses_at_most_the_last_second_of_finished_jobs,
        the_http_api_pages_through_the_history_newest_first_under_the_same_rules,
        a_replayed_capture_comes_back_whole_from_the_history_after_a_restart,
    ] {
        trials.extend(databases::both(name, test));
    }
    for (name, test) in crate::named![
        monitor_keeps_its_history_by_default_in_the_state_folder_and_says_where,
        demo_and_replay_keep_none_unless_given_db_and_monitor_none_with_db_none,
        unusable_databases_stop_the_start_with_one_line_naming_the_file,
        a_read_only_database_stops_the_start_with_one_line_naming_the_file,
        a_full_disk_pauses_the_history_without_stopping_the_page_and_loses_nothing,
    ] {
        trials.push(databases::trial(Backend::Sqlite, name, test));
    }
    trials.push(databases::trial(
        Backend::Postgres,
        "unusable_servers_stop_the_start_with_one_line_naming_the_server",
        unusable_servers_stop_the_start_with_one_line_naming_the_server,
    ));
    libtest_mimic::run(&args, trials).exit();
}

/// Every job in the history at `at`, newest first (none while it cannot
/// be read yet).
fn jobs_at(at: &Location) -> Vec<query::JobRow> {
    let all = Filter {
        limit: query::MAX_LIMIT,
        ..Filter::default()
    };
    Reading::open_read(at)
        .and_then(|r| r.jobs(&all))
        .unwrap_or_default()
}

/// Jobs in the history at `at` (0 while it cannot be read yet).
fn jobs_in(at: &Location) -> usize {
    jobs_at(at).len()
}

/// Waits until the history at `at` holds at least `n` jobs.
fn until_jobs(at: &Location, n: usize) {
    let deadline = Instant::now() + PATIENCE;
    while jobs_in(at) < n {
        assert!(Instant::now() < deadline, "{n} jobs in {at} in time");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `icewatch history ARGS`, which must succeed; its stdout.
fn history(args: &[&str]) -> String {
    let out = icewatch().arg("history").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "icewatch history {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Every job of the history at `db` (a file or URL), as `icewatch
/// history jobs --json` prints them.
fn all_jobs(db: &str) -> Vec<Value> {
    json_lines(&history(&[
        "jobs", "--db", db, "--json", "--limit", "10000",
    ]))
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn monitor_keeps_its_history_by_default_in_the_state_folder_and_says_where(_: Backend) {
    let home = scratch_dir("history-default");
    let sched = Running::demo_scheduler(&["--seed", "5", "--rate", "3000"]);
    let addr = sched.scheduler_addr().to_string();
    let mut command = icewatch();
    command
        .args(["monitor", &addr, "--listen", "127.0.0.1:0"])
        .env("XDG_STATE_HOME", &home);
    let mut monitor = Running::spawn(command);
    let db = home.join("icewatch/history.sqlite");
    let said = monitor.stderr_until(|l| l.contains("keeping the history in"));
    assert!(said.contains(&db.display().to_string()), "{said}");
    assert!(said.contains("for 90 days"), "{said}");
    let at = Location::File(db.clone());
    until_jobs(&at, 50);
    monitor.signal("INT");
    assert!(monitor.wait().success());
    let kept = jobs_in(&at);

    let lines = all_jobs(db.to_str().unwrap());
    assert_eq!(lines.len(), kept, "every job kept, once");
    for job in &lines {
        for key in [
            "id",
            "file",
            "client_name",
            "server_name",
            "state",
            "reason",
            "exit_code",
            "start_ms",
            "end_ms",
        ] {
            assert!(job.get(key).is_some(), "{key} in {job}");
        }
        assert!(job["end_ms"].as_u64() >= job["start_ms"].as_u64(), "{job}");
    }
    // Without --db, `history` reads the same default file.
    let mut table = icewatch();
    table
        .args(["history", "jobs", "--limit", "3"])
        .env("XDG_STATE_HOME", &home);
    let out = table.output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("ENDED "), "{text}");
    assert_eq!(text.lines().count(), 4, "a header and 3 jobs: {text}");
    let hosts = json_lines(&history(&["hosts", "--db", db.to_str().unwrap(), "--json"]));
    assert!(!hosts.is_empty());
    assert!(hosts.iter().all(|h| h["name"].as_str().is_some()));

    // The whole history as a Chrome trace: one complete event per job.
    let trace_file = home.join("build.json");
    history(&[
        "trace",
        "--db",
        db.to_str().unwrap(),
        "-o",
        trace_file.to_str().unwrap(),
    ]);
    let trace: Value = serde_json::from_slice(&std::fs::read(&trace_file).unwrap()).unwrap();
    let events = trace["traceEvents"].as_array().unwrap();
    let complete: Vec<&Value> = events.iter().filter(|e| e["ph"] == "X").collect();
    assert_eq!(complete.len(), kept);
    for e in complete {
        assert!(e["ts"].is_u64() && e["dur"].is_u64() && e["pid"].is_u64() && e["tid"].is_u64());
        assert!(e["args"].get("submitter").is_some() && e["args"].get("exit_code").is_some());
    }
}

fn demo_and_replay_keep_none_unless_given_db_and_monitor_none_with_db_none(_: Backend) {
    let home = scratch_dir("history-none");
    let sched = Running::demo_scheduler(&["--seed", "5"]);
    let addr = sched.scheduler_addr().to_string();
    let replay = capture(43);
    let runs: [Vec<&str>; 3] = [
        vec!["demo", "--listen", "127.0.0.1:0"],
        vec![
            "replay",
            replay.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ],
        vec!["monitor", &addr, "--listen", "127.0.0.1:0", "--db", "none"],
    ];
    for args in runs {
        let mut command = icewatch();
        command.args(&args).env("XDG_STATE_HOME", &home);
        let mut run = Running::spawn(command);
        page_url(&run);
        run.signal("INT");
        assert!(run.wait().success(), "{args:?}");
        let said = run.rest_of_stderr().join("\n");
        assert!(!said.contains("keeping the history"), "{args:?}: {said}");
        assert!(!home.join("icewatch").exists(), "{args:?} wrote a history");
    }
}

/// The finished jobs the history at `at` holds: id → end_ms.
fn ends_kept(at: &Location) -> HashMap<u64, u64> {
    jobs_at(at)
        .into_iter()
        .map(|j| (u64::from(j.id), j.end_ms))
        .collect()
}

/// `icewatch demo --seed SEED --rate RATE --db DB` with a fresh database
/// of `backend`, serving its page: the process, the database and the
/// page's `HOST:PORT`.
fn demo_with_db(backend: Backend, test: &str, seed: &str, rate: &str) -> (Running, TestDb, String) {
    let db = TestDb::new(backend, test);
    let demo = Running::start(&[
        "demo",
        "--listen",
        "127.0.0.1:0",
        "--seed",
        seed,
        "--rate",
        rate,
        "--db",
        &db.arg,
    ]);
    let (host, _) = split_url(&page_url(&demo));
    (demo, db, host)
}

/// The finished jobs the page's state holds now: id → end_ms.
fn finished_now(host: &str) -> HashMap<u64, u64> {
    let (status, body) = get(host, "/api/v1/jobs?state=finished&limit=100000");
    assert_eq!(status, 200, "{body}");
    let jobs: Vec<Value> = serde_json::from_str(&body).unwrap();
    jobs.iter()
        .filter(|j| j["session"] == 1)
        .map(|j| (j["id"].as_u64().unwrap(), j["end_ms"].as_u64().unwrap()))
        .collect()
}

fn a_process_killed_with_sigkill_loses_at_most_the_last_second_of_finished_jobs(backend: Backend) {
    let (mut demo, db, host) = demo_with_db(backend, "history-kill", "9", "2000");
    // Until enough jobs ended more than a second ago to judge by.
    let deadline = Instant::now() + PATIENCE;
    let (shown, killed_ms) = loop {
        let shown = finished_now(&host);
        let now = icewatch::monitor::now_ms();
        if shown.values().filter(|&&end| end + 1_000 <= now).count() >= 100 {
            break (shown, now);
        }
        assert!(Instant::now() < deadline, "jobs finish in time");
        std::thread::sleep(Duration::from_millis(50));
    };
    demo.signal("KILL");
    demo.wait();
    let kept = ends_kept(&db.location());
    let old: Vec<_> = shown
        .iter()
        .filter(|(_, &end)| end + 1_000 <= killed_ms)
        .collect();
    assert!(old.len() >= 100, "enough jobs to judge: {}", old.len());
    for (id, end) in old {
        assert_eq!(
            kept.get(id),
            Some(end),
            "job {id}, ended {end}, killed at {killed_ms}"
        );
    }
}

/// The first line of stderr of a command that must fail.
fn refusal(mut command: std::process::Command) -> String {
    let out = command.output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    let line = err
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("an error line in {err}"))
        .to_string();
    line
}

fn monitor_with_db(db: &Path) -> std::process::Command {
    let mut command = icewatch();
    // Nobody listens there: the database is checked before the scheduler.
    command.args(["monitor", "127.0.0.1:1", "--listen", "127.0.0.1:0", "--db"]);
    command.arg(db);
    command
}

fn unusable_databases_stop_the_start_with_one_line_naming_the_file(_: Backend) {
    let dir = scratch_dir("history-refused");
    let corrupt = dir.join("corrupt.sqlite");
    std::fs::write(&corrupt, vec![0x5a; 8192]).unwrap();
    let line = refusal(monitor_with_db(&corrupt));
    assert!(line.contains(&corrupt.display().to_string()), "{line}");
    assert!(line.contains("not an icewatch history database"), "{line}");

    let newer = dir.join("newer.sqlite");
    drop(icewatch::history::Store::open(&newer).unwrap());
    rusqlite::Connection::open(&newer)
        .unwrap()
        .execute("UPDATE icewatch_schema SET version = version + 1", [])
        .unwrap();
    let line = refusal(monitor_with_db(&newer));
    assert!(line.contains("newer than this icewatch"), "{line}");

    let missing = dir.join("missing.sqlite");
    let mut read = icewatch();
    read.args(["history", "jobs", "--db"]).arg(&missing);
    let line = refusal(read);
    assert!(line.contains("there is no history database at"), "{line}");
}

/// A folder in /tmp that the user `nobody` may read but not write.
fn read_only_for_nobody(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("icewatch-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    drop(icewatch::history::Store::open(&dir.join("h.sqlite")).unwrap());
    dir
}

fn a_read_only_database_stops_the_start_with_one_line_naming_the_file(_: Backend) {
    let dir = read_only_for_nobody("readonly");
    let db = dir.join("h.sqlite");
    let as_root = std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false);
    let mut command = if as_root {
        // root writes whatever the mode says: run it as nobody.
        let mut c = std::process::Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(assert_cmd::cargo::cargo_bin!("icewatch"));
        c
    } else {
        let mut perms = std::fs::metadata(&db).unwrap().permissions();
        perms.set_readonly(true);
        std::fs::set_permissions(&db, perms).unwrap();
        std::process::Command::new(assert_cmd::cargo::cargo_bin!("icewatch"))
    };
    command
        .args(["monitor", "127.0.0.1:1", "--listen", "127.0.0.1:0", "--db"])
        .arg(&db);
    let line = refusal(command);
    assert!(line.contains(&db.display().to_string()), "{line}");
    assert!(line.contains("read-only"), "{line}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The snapshot's `database` object, read from the page's API.
fn history_status(host: &str) -> Value {
    let (status, body) = get(host, "/api/v1/snapshot");
    assert_eq!(status, 200, "the page answers: {body}");
    let snapshot: Value = serde_json::from_str(&body).unwrap();
    snapshot["database"].clone()
}

/// Waits until the snapshot's `database` satisfies `want`.
fn until_history(host: &str, what: &str, want: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let status = history_status(host);
        if want(&status) {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "history {what} in time: {status}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn a_full_disk_pauses_the_history_without_stopping_the_page_and_loses_nothing(_: Backend) {
    let dir = scratch_dir("history-full");
    let db = dir.join("h.sqlite");
    // A file size limit stands for a full disk: past it writes fail with
    // EFBIG (SIGXFSZ ignored) until the limit is raised again.
    let mut command = std::process::Command::new("sh");
    command
        .args([
            "-c",
            "trap '' XFSZ; exec prlimit --fsize=400000:unlimited \"$0\" \"$@\"",
        ])
        .arg(assert_cmd::cargo::cargo_bin!("icewatch"))
        .args(["demo", "--listen", "127.0.0.1:0", "--seed", "4"])
        .args(["--rate", "4000", "--db"])
        .arg(&db);
    let mut demo = Running::spawn(command);
    let (host, _) = split_url(&page_url(&demo));
    let paused = until_history(&host, "paused", |h| h["paused"] == true);
    assert!(
        paused["error"]
            .as_str()
            .is_some_and(|e| e.contains("h.sqlite")),
        "{paused}"
    );
    // The page goes on: jobs keep finishing.
    let done = |h: &str| {
        let (_, body) = get(h, "/api/v1/snapshot");
        let snapshot: Value = serde_json::from_str(&body).unwrap();
        snapshot["totals"]["jobs_finished"].as_u64().unwrap()
    };
    let before = done(&host);
    until_history(&host, "holding records", |h| h["held"].as_u64() > Some(0));
    let deadline = Instant::now() + PATIENCE;
    while done(&host) <= before {
        assert!(
            Instant::now() < deadline,
            "jobs finish while the history is paused"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Room again: writing resumes with what was held.
    let raised = std::process::Command::new("prlimit")
        .arg(format!("--pid={}", demo.pid()))
        .arg("--fsize=unlimited:unlimited")
        .status()
        .unwrap();
    assert!(raised.success());
    until_history(&host, "writing again", |h| h["paused"] == false);
    let shown = finished_now(&host);
    demo.signal("INT");
    assert!(demo.wait().success());
    let kept = ends_kept(&Location::File(db));
    assert!(shown.len() > 100, "{}", shown.len());
    for (id, end) in &shown {
        assert_eq!(kept.get(id), Some(end), "job {id} kept");
    }
}

fn the_http_api_pages_through_the_history_newest_first_under_the_same_rules(backend: Backend) {
    let (mut demo, db, host) = demo_with_db(backend, "history-http", "12", "3000");
    until_jobs(&db.location(), 120);
    let page = |query: &str| -> Value {
        let (status, body) = get(&host, &format!("/api/v1/history/jobs?{query}"));
        assert_eq!(status, 200, "{query}: {body}");
        serde_json::from_str(&body).unwrap()
    };
    let first = page("limit=50");
    let cursor = first["next"].as_i64().expect("a next page");
    let second = page(&format!("limit=50&cursor={cursor}"));
    let seqs: Vec<i64> = [&first, &second]
        .iter()
        .flat_map(|p| p["jobs"].as_array().unwrap().iter())
        .map(|j| j["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs.len(), 100);
    assert!(
        seqs.windows(2).all(|w| w[0] > w[1]),
        "newest first, no repeat"
    );
    // One host's jobs name it as submitter or server.
    let name = first["jobs"][0]["client_name"].as_str().unwrap().to_owned();
    let mine = page(&format!("host={name}&limit=20"));
    assert!(mine["jobs"].as_array().unwrap().iter().all(|j| {
        j["client_name"].as_str() == Some(&name) || j["server_name"].as_str() == Some(&name)
    }));
    // Another scheduler's rows only (several icewatch sharing a database).
    let elsewhere = page("scheduler=elsewhere:8765");
    assert_eq!(elsewhere["jobs"].as_array().map(Vec::len), Some(0));
    let hosts: Value = serde_json::from_str(&get(&host, "/api/v1/history/hosts").1).unwrap();
    assert!(!hosts["hosts"].as_array().unwrap().is_empty());
    let (status, body) = get(&host, "/api/v1/history/jobs?limit=0");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("limit"), "{body}");
    // The same Host rule as every other route (DNS rebinding).
    let mut s = std::net::TcpStream::connect(&host).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    let request =
        "GET /api/v1/history/jobs HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n";
    std::io::Write::write_all(&mut s, request.as_bytes()).unwrap();
    let mut answer = String::new();
    std::io::Read::read_to_string(&mut s, &mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 421"), "{answer}");
    demo.signal("INT");
    assert!(demo.wait().success());

    let mut bare = Running::start(&["demo", "--listen", "127.0.0.1:0"]);
    let (host, _) = split_url(&page_url(&bare));
    let (status, body) = get(&host, "/api/v1/history/jobs");
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("keeps no history"), "{body}");
    bare.signal("INT");
    bare.wait();
}

/// What the history must give back of a job: its names, times and why it
/// ended.
type Kept = (
    u64,
    String,
    Option<String>,
    Option<String>,
    String,
    String,
    Option<i64>,
    u64,
    u64,
);

fn kept(j: &Value) -> Kept {
    let text = |k: &str| j[k].as_str().map(str::to_owned);
    (
        j["id"].as_u64().unwrap(),
        text("file").unwrap(),
        text("client_name"),
        text("server_name"),
        text("state").unwrap(),
        text("reason").unwrap(),
        j["exit_code"].as_i64(),
        j["start_ms"].as_u64().unwrap(),
        j["end_ms"].as_u64().unwrap(),
    )
}

fn a_replayed_capture_comes_back_whole_from_the_history_after_a_restart(backend: Backend) {
    use icewatch::capture::recording::{self, Recorder};
    use icewatch::monitor::{changed, lock_state, State, StateOptions};
    use icewatch::standin::replay::{play, PlayOptions};
    use std::sync::{Arc, Mutex};

    // A real scheduler's capture, as a recording with times (an hour ago,
    // within the retention), so that the times kept can be checked.
    let dir = scratch_dir("history-acceptance");
    let rec_path = dir.join("basic.icwr");
    let db = TestDb::new(backend, "history-acceptance");
    let start = icewatch::monitor::now_ms() - 3_600_000;
    let mut rec = Recorder::new(std::fs::File::create(&rec_path).unwrap(), 43, start).unwrap();
    for (i, frame) in frames_of(capture(43)).iter().enumerate() {
        rec.write_frame(i as u64 * 37, frame).unwrap();
    }
    rec.finish().unwrap();
    let shown = rec_path.to_str().unwrap();

    // What the state makes of it, in process: every finished job.
    let state = Arc::new(Mutex::new(State::new(StateOptions::default())));
    let reader = recording::open(&rec_path).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime
        .block_on(play(
            reader,
            PlayOptions::new(shown, 0.0),
            state.clone(),
            changed(),
            std::future::pending(),
        ))
        .unwrap();
    let mut want: Vec<Kept> = {
        let st = lock_state(&state);
        st.history()
            .map(|j| {
                (
                    u64::from(j.id),
                    j.file().into_owned(),
                    j.client_name().map(str::to_owned),
                    j.server_name().map(str::to_owned),
                    j.state.name().to_owned(),
                    j.reason.unwrap().name().to_owned(),
                    j.exit_code.map(i64::from),
                    j.start_ms,
                    j.end_ms.unwrap(),
                )
            })
            .collect()
    };
    want.sort();
    assert!(want.len() >= 40, "{} jobs", want.len());

    // Played twice into the database, icewatch stopped after each.
    for _ in 0..2 {
        let mut replay = Running::start(&[
            "replay",
            shown,
            "--speed",
            "0",
            "--listen",
            "127.0.0.1:0",
            "--db",
            &db.arg,
        ]);
        replay.stderr_until(|l| l.contains("the recording ended"));
        replay.signal("INT");
        assert!(replay.wait().success());
    }
    // Read back by a new process: both plays, whole, each in its session.
    let lines = all_jobs(&db.arg);
    let mut sessions: std::collections::BTreeMap<i64, Vec<Kept>> = Default::default();
    for j in &lines {
        sessions
            .entry(j["session"].as_i64().unwrap())
            .or_default()
            .push(kept(j));
    }
    assert_eq!(sessions.len(), 2, "one scheduler session per play");
    // Picked by scheduler: a replay's is the recording.
    let pick = |scheduler: &str| {
        let args = ["jobs", "--db", &db.arg, "--json", "--limit", "10000"];
        json_lines(&history(&[&args[..], &["--scheduler", scheduler]].concat())).len()
    };
    assert_eq!(pick(shown), lines.len());
    assert_eq!(pick("elsewhere:8765"), 0);
    for (session, mut got) in sessions {
        got.sort();
        assert_eq!(got, want, "session {session}");
    }
}

fn unusable_servers_stop_the_start_with_one_line_naming_the_server(_: Backend) {
    let monitor = |db: &str| {
        let mut command = icewatch();
        command.args([
            "monitor",
            "127.0.0.1:1",
            "--listen",
            "127.0.0.1:0",
            "--db",
            db,
        ]);
        let line = refusal(command);
        assert!(!line.contains("s3cret"), "{line}");
        line
    };
    // Nothing listens on a port just given back.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let line = monitor(&format!(
        "postgres://icewatch:s3cret@127.0.0.1:{port}/history"
    ));
    assert!(
        line.contains(&format!("postgres://icewatch@127.0.0.1:{port}/history")),
        "{line}"
    );
    assert!(
        line.contains("cannot reach the PostgreSQL server"),
        "{line}"
    );

    let line = monitor("postgresql://icewatch:s3cret@127.0.0.1/history?sslmode=require");
    assert!(line.contains("does not speak TLS"), "{line}");

    let missing = format!("icewatch_test_missing_{}", std::process::id());
    let url = databases::with_database(&databases::admin_url(), &missing);
    let mut read = icewatch();
    read.args(["history", "jobs", "--db", &url]);
    let line = refusal(read);
    assert!(
        line.contains(&format!("there is no database \"{missing}\"")),
        "{line}"
    );

    let db = TestDb::new(Backend::Postgres, "newer");
    drop(db.open());
    db.execute("UPDATE icewatch_schema SET version = version + 1");
    let line = monitor(&db.arg);
    assert!(line.contains("newer than this icewatch"), "{line}");
    assert!(line.contains(&db.location().to_string()), "{line}");
}
