//! The history's store and reader, in process: what a state's changes
//! become in the database, migrations from every earlier schema version,
//! the one-line errors for unusable files, and the retention.

use icewatch::history::query::{self, Filter};
use icewatch::history::schema::{MIGRATIONS, VERSION_TABLE};
use icewatch::history::{HistoryError, Reader, Record, Store, SCHEMA_VERSION};
use icewatch::monitor::{State, StateOptions};
use icewatch::protocol::{GetCs, JobDone, Language, Message, MonGetCs, MonJobBegin, MonStats};
use std::path::{Path, PathBuf};

fn scratch(test: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("history-{test}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("history.sqlite")
}

/// A state and its history reader, which takes after every message as
/// the real one does at each wakeup.
struct Watched {
    state: State,
    reader: Reader,
    records: Vec<Record>,
}

impl Watched {
    fn new() -> Watched {
        let mut state = State::new(StateOptions::default());
        let reader = Reader::new(&mut state);
        Watched {
            state,
            reader,
            records: Vec::new(),
        }
    }

    fn apply(&mut self, msg: &Message<'_>, at: u64) {
        self.state.apply(msg, at);
        self.take();
    }

    fn take(&mut self) {
        let more = self.reader.take(&mut self.state);
        self.records.extend(more);
    }

    fn connected(&mut self, at: u64) {
        self.state.scheduler_connected("sched:8765".into(), 43, at);
        self.take();
    }
}

fn host(state: &mut Watched, id: u32, name: &str, at: u64) {
    let text = format!("Name:{name}\nIP:10.0.0.{id}\nMaxJobs:4\nPlatform:x86_64\nLoad:250\n");
    state.apply(
        &Message::MonStats(MonStats {
            host_id: id,
            text: text.as_bytes(),
        }),
        at,
    );
}

fn host_leaves(state: &mut Watched, id: u32, at: u64) {
    let text = b"State:Offline\n";
    state.apply(&Message::MonStats(MonStats { host_id: id, text }), at);
}

/// Job `id` submitted by host `client` at `at`.
fn job(state: &mut Watched, id: u32, file: &str, client: u32, at: u64) {
    let request = GetCs {
        filename: file.as_bytes(),
        lang: Language::CXX,
        ..Default::default()
    };
    let get = MonGetCs {
        request,
        job_id: id,
        client_id: client,
    };
    state.apply(&Message::MonGetCs(get), at);
}

fn begin(state: &mut Watched, id: u32, server: u32, at: u64) {
    let begin = MonJobBegin {
        job_id: id,
        start_time: 0,
        host_id: server,
    };
    state.apply(&Message::MonJobBegin(begin), at);
}

fn done(state: &mut Watched, id: u32, exit: u32, at: u64) {
    let done = JobDone {
        job_id: id,
        exit_code: exit,
        real_ms: 4,
        ..Default::default()
    };
    state.apply(&Message::MonJobDone(done), at);
}

fn all(filter: Filter) -> Filter {
    Filter {
        limit: 10_000,
        ..filter
    }
}

#[test]
fn a_states_jobs_hosts_and_sessions_come_back_from_the_database() {
    let path = scratch("roundtrip");
    let mut store = Store::open(&path).unwrap();
    let mut state = Watched::new();
    state.connected(1_000);
    host(&mut state, 1, "alpha", 1_000);
    host(&mut state, 2, "beta", 1_000);
    job(&mut state, 10, "src/a.cpp", 1, 2_000);
    begin(&mut state, 10, 2, 2_100);
    done(&mut state, 10, 0, 2_500);
    job(&mut state, 11, "src/b.cpp", 2, 3_000);
    begin(&mut state, 11, 1, 3_100);
    done(&mut state, 11, 1, 3_600);
    host_leaves(&mut state, 2, 4_000);
    // The scheduler restarts: job ids start over, host ids name others.
    state.state.scheduler_lost("gone".into(), 5_000);
    state.take();
    state.connected(6_000);
    host(&mut state, 1, "beta", 6_000);
    job(&mut state, 10, "src/c.cpp", 1, 7_000);
    begin(&mut state, 10, 1, 7_100);
    done(&mut state, 10, 0, 7_200);
    store.write(&state.records).unwrap();
    drop(store);

    let conn = query::open(&path).unwrap();
    let jobs = query::jobs(&conn, &all(Filter::default())).unwrap();
    let seen: Vec<_> = jobs
        .iter()
        .map(|j| {
            (
                j.id,
                j.file.as_str(),
                j.client_name.as_deref(),
                j.server_name.as_deref(),
                j.state.as_str(),
                j.reason.as_str(),
                j.exit_code,
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            (
                10,
                "src/c.cpp",
                Some("beta"),
                Some("beta"),
                "finished",
                "exit",
                Some(0)
            ),
            (
                11,
                "src/b.cpp",
                Some("beta"),
                Some("alpha"),
                "failed",
                "exit",
                Some(1)
            ),
            (
                10,
                "src/a.cpp",
                Some("alpha"),
                Some("beta"),
                "finished",
                "exit",
                Some(0)
            ),
        ],
        "newest first"
    );
    assert_ne!(jobs[0].session, jobs[2].session, "sessions never mix");
    assert_eq!(jobs[2].scheduler.as_deref(), Some("sched:8765"));
    assert_eq!(
        (jobs[2].submit_ms, jobs[2].start_ms, jobs[2].end_ms),
        (Some(2_000), 2_100, 2_500)
    );
    assert_eq!(jobs[2].lang.as_deref(), Some("C++"));
    assert_eq!(jobs[2].real_ms, Some(4));

    let beta = Filter {
        host: Some("beta".into()),
        ..all(Filter::default())
    };
    assert_eq!(query::jobs(&conn, &beta).unwrap().len(), 3);
    let failed = Filter {
        failed: true,
        ..all(Filter::default())
    };
    assert_eq!(query::jobs(&conn, &failed).unwrap()[0].file, "src/b.cpp");
    let file = Filter {
        file: Some("a.c".into()),
        ..all(Filter::default())
    };
    assert_eq!(query::jobs(&conn, &file).unwrap().len(), 1);
    let window = Filter {
        since_ms: Some(3_000),
        until_ms: Some(7_000),
        ..all(Filter::default())
    };
    assert_eq!(query::jobs(&conn, &window).unwrap()[0].id, 11);

    let hosts = query::hosts(&conn, &all(Filter::default())).unwrap();
    let sessions: Vec<_> = hosts
        .iter()
        .map(|h| (h.name.as_str(), h.login_ms, h.logout_ms))
        .collect();
    assert_eq!(
        sessions,
        [
            ("beta", 6_000, None),
            ("beta", 1_000, Some(4_000)),
            ("alpha", 1_000, Some(5_000)),
        ]
    );
    let ended: Option<i64> = conn
        .query_row(
            "SELECT end_ms FROM scheduler_sessions ORDER BY id LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(ended, Some(5_000));
    let samples: i64 = conn
        .query_row("SELECT count(*) FROM load_samples", [], |r| r.get(0))
        .unwrap();
    assert!(samples >= 3, "one at each login: {samples}");
}

#[test]
fn pages_follow_one_another_by_cursor_newest_first() {
    let path = scratch("pages");
    let mut store = Store::open(&path).unwrap();
    let mut state = Watched::new();
    state.connected(0);
    host(&mut state, 1, "alpha", 0);
    for id in 1..=25 {
        job(&mut state, id, &format!("f{id}.c"), 1, u64::from(id) * 10);
        begin(&mut state, id, 1, u64::from(id) * 10 + 1);
        done(&mut state, id, 0, u64::from(id) * 10 + 2);
    }
    store.write(&state.records).unwrap();
    let conn = store.connection();
    let mut cursor = None;
    let mut ids = Vec::new();
    loop {
        let page = query::jobs(
            conn,
            &Filter {
                limit: 10,
                cursor,
                ..Filter::default()
            },
        )
        .unwrap();
        let Some(last) = page.last() else { break };
        cursor = Some(last.seq);
        ids.extend(page.iter().map(|j| j.id));
    }
    assert_eq!(ids, (1..=25).rev().collect::<Vec<_>>());
}

#[test]
fn builds_end_at_a_pause_of_their_submitter() {
    let path = scratch("builds");
    let mut store = Store::open(&path).unwrap();
    let mut state = Watched::new();
    state.connected(0);
    host(&mut state, 1, "alpha", 0);
    host(&mut state, 2, "beta", 0);
    // alpha: two builds a minute apart; beta: one, with a failure.
    for (id, client, at, exit) in [
        (1, 1, 1_000, 0),
        (2, 1, 3_000, 0),
        (3, 2, 4_000, 1),
        (4, 1, 70_000, 0),
    ] {
        job(&mut state, id, "x.c", client, at);
        begin(&mut state, id, 2, at + 1);
        done(&mut state, id, exit, at + 500);
    }
    store.write(&state.records).unwrap();
    let builds = query::builds(store.connection(), &all(Filter::default()), 30_000).unwrap();
    let seen: Vec<_> = builds
        .iter()
        .map(|b| (b.host.as_deref(), b.start_ms, b.end_ms, b.jobs, b.failed))
        .collect();
    assert_eq!(
        seen,
        [
            (Some("alpha"), 70_000, 70_500, 1, 0),
            (Some("beta"), 4_000, 4_500, 1, 1),
            (Some("alpha"), 1_000, 3_500, 2, 0),
        ]
    );
}

/// A database at schema `version`, with a row in each table it has.
fn database_at(path: &Path, version: usize) {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch(VERSION_TABLE).unwrap();
    for sql in &MIGRATIONS[..version] {
        conn.execute_batch(sql).unwrap();
    }
    conn.execute("INSERT INTO icewatch_schema VALUES (?1)", [version])
        .unwrap();
    if version >= 1 {
        conn.execute_batch(
            "INSERT INTO scheduler_sessions (id, scheduler, protocol, start_ms) VALUES (1, 'old:8765', 43, 100);
             INSERT INTO host_names (id, name) VALUES (1, 'oldhost');
             INSERT INTO files (id, name) VALUES (1, 'old.c');
             INSERT INTO jobs (session, id, file, client_name, server_name, state, reason, start_ms, end_ms)
                 VALUES (1, 7, 1, 1, 1, 'finished', 'exit', 200, 300);",
        )
        .unwrap();
    }
    if version >= 2 {
        conn.execute_batch(
            "INSERT INTO host_sessions (session, host_id, name, ip, platform, max_jobs, no_remote, protocol, features, login_ms)
                 VALUES (1, 3, 1, '10.0.0.3', 'x86_64', 4, 0, 43, '', 100);",
        )
        .unwrap();
    }
}

#[test]
fn every_earlier_schema_version_migrates_keeping_what_it_held() {
    for version in 0..SCHEMA_VERSION as usize {
        let path = scratch(&format!("migrate-{version}"));
        database_at(&path, version);
        let store = Store::open(&path).unwrap_or_else(|e| panic!("from {version}: {e}"));
        let conn = store.connection();
        let now: u32 = conn
            .query_row("SELECT version FROM icewatch_schema", [], |r| r.get(0))
            .unwrap();
        assert_eq!(now, SCHEMA_VERSION, "from {version}");
        let jobs = query::jobs(conn, &all(Filter::default())).unwrap();
        let hosts = query::hosts(conn, &all(Filter::default())).unwrap();
        if version >= 1 {
            assert_eq!(jobs.len(), 1, "from {version}");
            assert_eq!(jobs[0].client_name.as_deref(), Some("oldhost"));
            assert_eq!(jobs[0].file, "old.c");
        }
        assert_eq!(hosts.len(), usize::from(version >= 2), "from {version}");
        // And it takes new records.
        let mut store = store;
        store
            .write(&[Record::Session {
                local: 1,
                scheduler: "new".into(),
                protocol: None,
                start_ms: 1,
            }])
            .unwrap();
    }
}

fn one_line(e: &HistoryError, path: &Path) -> String {
    let text = e.to_string();
    assert!(!text.contains('\n'), "{text}");
    assert!(text.contains(&path.display().to_string()), "{text}");
    text
}

#[test]
fn a_newer_schema_is_refused_naming_the_file_and_what_to_do() {
    let path = scratch("newer");
    drop(Store::open(&path).unwrap());
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute("UPDATE icewatch_schema SET version = version + 1", [])
        .unwrap();
    let e = Store::open(&path).unwrap_err();
    let text = one_line(&e, &path);
    assert!(text.contains("newer than this icewatch"), "{text}");
    assert!(text.contains("--db"), "{text}");
}

#[test]
fn a_file_that_is_no_database_is_refused_naming_the_file() {
    let path = scratch("corrupt");
    std::fs::write(&path, vec![0x5a; 8192]).unwrap();
    let e = Store::open(&path).unwrap_err();
    assert!(matches!(e, HistoryError::Corrupt(_)), "{e:?}");
    assert!(one_line(&e, &path).contains("move it away"));
}

#[test]
fn a_locked_database_is_refused_naming_the_file() {
    let path = scratch("locked");
    drop(Store::open(&path).unwrap());
    let holder = rusqlite::Connection::open(&path).unwrap();
    holder.execute_batch("PRAGMA journal_mode = DELETE; BEGIN EXCLUSIVE; INSERT INTO files (name) VALUES ('held');").unwrap();
    let e = Store::open(&path).unwrap_err();
    assert!(matches!(e, HistoryError::Locked(_)), "{e:?}");
    assert!(one_line(&e, &path).contains("locked by another process"));
    holder.execute_batch("ROLLBACK").unwrap();
    assert!(Store::open(&path).is_ok(), "free again");
}

#[test]
fn retention_deletes_only_what_ended_before_the_cutoff() {
    let path = scratch("retention");
    let mut store = Store::open(&path).unwrap();
    let mut state = Watched::new();
    state.connected(0);
    host(&mut state, 1, "alpha", 0);
    for id in 1..=30 {
        let at = u64::from(id) * 1_000;
        job(&mut state, id, "x.c", 1, at);
        begin(&mut state, id, 1, at + 1);
        done(&mut state, id, 0, at + 2);
    }
    store.write(&state.records).unwrap();
    while store.expire(10_500, 4).unwrap() > 0 {}
    let left = query::jobs(store.connection(), &all(Filter::default())).unwrap();
    assert_eq!(left.len(), 20);
    assert!(left.iter().all(|j| j.end_ms >= 10_500));
}
