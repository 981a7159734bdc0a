//! The history's store and reader, in process, against both backends
//! (SQLite and PostgreSQL, `support::databases`): what a state's changes
//! become in the database, migrations from every earlier schema version,
//! the one-line errors for unusable databases, and the retention; for
//! PostgreSQL also the schema against SQLite's, several writers in one
//! database, and a server that goes away and comes back.

mod support;

use icewatch::history::query::Filter;
use icewatch::history::schema::{MIGRATIONS, PG_MIGRATIONS, VERSION_TABLE};
use icewatch::history::{
    Book, Database, HistoryError, Location, Reader, Record, Server, Store, SCHEMA_VERSION,
};
use icewatch::monitor::{State, StateOptions};
use icewatch::protocol::{GetCs, JobDone, Language, Message, MonGetCs, MonJobBegin, MonStats};
use icewatch::publisher::keep_blocks::{AuditRecord, BlockBook, Kept};
use libtest_mimic::{Arguments, Trial};
use support::databases::{self, Backend, TestDb};

fn main() {
    let args = Arguments::from_args();
    let mut trials: Vec<Trial> = Vec::new();
    for (name, test) in crate::named![
        a_states_jobs_hosts_and_sessions_come_back_from_the_database,
        pages_follow_one_another_by_cursor_newest_first,
        a_page_names_each_jobs_file_hosts_and_scheduler,
        builds_end_at_a_pause_of_their_submitter,
        every_earlier_schema_version_migrates_keeping_what_it_held,
        a_newer_schema_is_refused_naming_the_database_and_what_to_do,
        retention_deletes_only_what_ended_before_the_cutoff,
        one_scheduler_is_picked_out_of_several_sharing_the_database,
        kept_blocks_and_audit_rows_are_each_schedulers_own_and_outlive_the_connection,
    ] {
        trials.extend(databases::both(name, test));
    }
    for (name, test) in crate::named![
        a_file_that_is_no_database_is_refused_naming_the_file,
        a_locked_database_is_refused_naming_the_file,
    ] {
        trials.push(databases::trial(Backend::Sqlite, name, test));
    }
    for (name, test) in crate::named![
        the_schema_is_sqlites_table_for_table_column_for_column,
        two_instances_starting_and_writing_at_once_share_one_database,
        a_server_that_drops_the_connection_pauses_writing_until_it_is_back,
        unusable_servers_are_refused_in_one_line_without_the_password,
        sslmode_require_is_refused_rather_than_connecting_in_clear,
        revoked_rights_pause_writing_until_they_are_restored,
    ] {
        trials.push(databases::trial(Backend::Postgres, name, test));
    }
    libtest_mimic::run(&args, trials).exit();
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
        let more = self.reader.take(&mut self.state, usize::MAX).records;
        self.records.extend(more);
    }

    fn connected(&mut self, at: u64) {
        self.connected_to("sched:8765", at);
    }

    fn connected_to(&mut self, scheduler: &str, at: u64) {
        self.state.scheduler_connected(scheduler.into(), 43, at);
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

fn a_states_jobs_hosts_and_sessions_come_back_from_the_database(backend: Backend) {
    let db = TestDb::new(backend, "roundtrip");
    let mut store = db.open();
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

    let conn = db.reading();
    let jobs = conn.jobs(&all(Filter::default())).unwrap();
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
    assert_eq!(conn.jobs(&beta).unwrap().len(), 3);
    let failed = Filter {
        failed: true,
        ..all(Filter::default())
    };
    assert_eq!(conn.jobs(&failed).unwrap()[0].file, "src/b.cpp");
    let file = Filter {
        file: Some("a.c".into()),
        ..all(Filter::default())
    };
    assert_eq!(conn.jobs(&file).unwrap().len(), 1);
    let window = Filter {
        since_ms: Some(3_000),
        until_ms: Some(7_000),
        ..all(Filter::default())
    };
    assert_eq!(conn.jobs(&window).unwrap()[0].id, 11);

    let hosts = conn.hosts(&all(Filter::default())).unwrap();
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
    let ended = db.scalar("SELECT end_ms FROM scheduler_sessions ORDER BY id LIMIT 1");
    assert_eq!(ended, Some(5_000));
    let samples = db.scalar("SELECT count(*) FROM load_samples").unwrap();
    assert!(samples >= 3, "one at each login: {samples}");
}

fn pages_follow_one_another_by_cursor_newest_first(backend: Backend) {
    let db = TestDb::new(backend, "pages");
    let mut store = db.open();
    let mut state = Watched::new();
    state.connected(0);
    host(&mut state, 1, "alpha", 0);
    for id in 1..=25 {
        job(&mut state, id, &format!("f{id}.c"), 1, u64::from(id) * 10);
        begin(&mut state, id, 1, u64::from(id) * 10 + 1);
    }
    // Five at a time end in the same millisecond: the later one first.
    for id in 1..=25 {
        done(&mut state, id, 0, 300 + u64::from(id / 5) * 10);
    }
    store.write(&state.records).unwrap();
    let conn = db.reading();
    let mut cursor = None;
    let mut ids = Vec::new();
    loop {
        let page = conn
            .jobs(&Filter {
                limit: 10,
                cursor,
                ..Filter::default()
            })
            .unwrap();
        let Some(last) = page.last() else { break };
        cursor = Some(last.seq);
        ids.extend(page.iter().map(|j| j.id));
    }
    assert_eq!(ids, (1..=25).rev().collect::<Vec<_>>());
}

/// The names of a page's jobs are read apart, a list of ids a statement
/// (up to 512): more files and hosts than one list holds, and every job
/// still gets its own.
fn a_page_names_each_jobs_file_hosts_and_scheduler(backend: Backend) {
    let db = TestDb::new(backend, "names");
    let mut store = db.open();
    let mut state = Watched::new();
    state.connected(0);
    let hosts = 600;
    for id in 1..=hosts {
        host(&mut state, id, &format!("h{id}"), 0);
    }
    let jobs = 1_100;
    for id in 1..=jobs {
        let at = 10 + u64::from(id);
        job(&mut state, id, &format!("f{id}.c"), id % hosts + 1, at);
        begin(&mut state, id, (id + 7) % hosts + 1, at);
        done(&mut state, id, 0, at + 1);
    }
    store.write(&state.records).unwrap();
    let page = db.reading().jobs(&all(Filter::default())).unwrap();
    let ids: Vec<u32> = page.iter().map(|j| j.id).collect();
    assert_eq!(ids, (1..=jobs).rev().collect::<Vec<_>>());
    for j in &page {
        let name = |n: u32| Some(format!("h{}", n % hosts + 1));
        assert_eq!(j.file, format!("f{}.c", j.id));
        assert_eq!(j.client_name, name(j.id), "job {}", j.id);
        assert_eq!(j.server_name, name(j.id + 7), "job {}", j.id);
        assert_eq!(j.scheduler.as_deref(), Some("sched:8765"));
    }
}

fn builds_end_at_a_pause_of_their_submitter(backend: Backend) {
    let db = TestDb::new(backend, "builds");
    let mut store = db.open();
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
    let builds = db
        .reading()
        .builds(&all(Filter::default()), 30_000)
        .unwrap();
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

/// `db` at schema `version`, with a row in each table it has.
fn database_at(db: &TestDb, version: usize) {
    let migrations = match db.backend {
        Backend::Sqlite => MIGRATIONS,
        Backend::Postgres => PG_MIGRATIONS,
    };
    db.execute(VERSION_TABLE);
    for sql in &migrations[..version] {
        db.execute(sql);
    }
    db.execute(&format!("INSERT INTO icewatch_schema VALUES ({version})"));
    if version >= 1 {
        db.execute(
            "INSERT INTO scheduler_sessions (scheduler, protocol, start_ms) VALUES ('old:8765', 43, 100);
             INSERT INTO host_names (name) VALUES ('oldhost');
             INSERT INTO files (name) VALUES ('old.c');
             INSERT INTO jobs (session, id, file, client_name, server_name, state, reason, start_ms, end_ms)
                 VALUES (1, 7, 1, 1, 1, 'finished', 'exit', 200, 300);",
        );
    }
    if version >= 2 {
        db.execute(
            "INSERT INTO host_sessions (session, host_id, name, ip, platform, max_jobs, no_remote, protocol, features, login_ms)
                 VALUES (1, 3, 1, '10.0.0.3', 'x86_64', 4, 0, 43, '', 100);",
        );
    }
    if version == 4 {
        // Kept before blocks had a scheduler.
        db.execute(
            "INSERT INTO kept_blocks (name, since_ms, seen_ms) VALUES ('oldhost', 100, 200);",
        );
    }
}

fn every_earlier_schema_version_migrates_keeping_what_it_held(backend: Backend) {
    for version in 0..SCHEMA_VERSION as usize {
        let db = TestDb::new(backend, &format!("migrate-{version}"));
        database_at(&db, version);
        let mut store =
            Database::open(&db.location()).unwrap_or_else(|e| panic!("from {version}: {e}"));
        let now = db.scalar("SELECT version FROM icewatch_schema");
        assert_eq!(now, Some(i64::from(SCHEMA_VERSION)), "from {version}");
        let conn = db.reading();
        let jobs = conn.jobs(&all(Filter::default())).unwrap();
        let hosts = conn.hosts(&all(Filter::default())).unwrap();
        if version >= 1 {
            assert_eq!(jobs.len(), 1, "from {version}");
            assert_eq!(jobs[0].client_name.as_deref(), Some("oldhost"));
            assert_eq!(jobs[0].file, "old.c");
        }
        assert_eq!(hosts.len(), usize::from(version >= 2), "from {version}");
        let builds = conn.builds(&all(Filter::default()), 60_000).unwrap();
        assert_eq!(builds.len(), usize::from(version >= 1), "from {version}");
        // The first scheduler to keep blocks there adopts the old ones.
        let book = Book::open(&db.location(), "old:8765").unwrap();
        let kept: Vec<String> = book.kept().unwrap().into_iter().map(|k| k.name).collect();
        assert_eq!(
            kept,
            if version == 4 {
                vec!["oldhost"]
            } else {
                vec![]
            }
        );
        // And it takes new records.
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

fn kept_blocks_and_audit_rows_are_each_schedulers_own_and_outlive_the_connection(backend: Backend) {
    let db = TestDb::new(backend, "kept-blocks");
    drop(db.open());
    let k = |name: &str, seen_ms| Kept {
        name: name.to_owned(),
        since_ms: 5,
        seen_ms,
    };
    let a = Book::open(&db.location(), "a:8765").unwrap();
    let b = Book::open(&db.location(), "b:8765").unwrap();
    a.keep(&k("remote2", 5)).unwrap();
    a.keep(&k("remote1", 5)).unwrap();
    // Seen again: the first sighting stays.
    a.keep(&Kept {
        since_ms: 99,
        ..k("remote2", 70)
    })
    .unwrap();
    // The same name blocked on another cluster is that cluster's.
    b.keep(&k("remote1", 8)).unwrap();
    a.forget("remote1").unwrap();
    a.audit(&AuditRecord {
        at_ms: 80,
        action: "reapply",
        host: "remote2".into(),
        who: "icewatch --keep-blocks".into(),
        result: "done",
        said: "blocked remote2 again".into(),
    })
    .unwrap();
    drop((a, b));
    let a = Book::open(&db.location(), "a:8765").unwrap();
    let b = Book::open(&db.location(), "b:8765").unwrap();
    assert_eq!(a.kept().unwrap(), vec![k("remote2", 70)]);
    assert_eq!(b.kept().unwrap(), vec![k("remote1", 8)]);
    assert_eq!(
        db.scalar("SELECT count(*) FROM admin_actions WHERE scheduler = 'a:8765' AND at_ms = 80 AND action = 'reapply' AND result = 'done'"),
        Some(1)
    );
}

fn one_line(e: &HistoryError, at: &Location) -> String {
    let text = e.to_string();
    assert!(!text.contains('\n'), "{text}");
    assert!(text.contains(&at.to_string()), "{text}");
    text
}

fn a_newer_schema_is_refused_naming_the_database_and_what_to_do(backend: Backend) {
    let db = TestDb::new(backend, "newer");
    drop(db.open());
    db.execute("UPDATE icewatch_schema SET version = version + 1");
    let e = Database::open(&db.location()).unwrap_err();
    let text = one_line(&e, &db.location());
    assert!(text.contains("newer than this icewatch"), "{text}");
    assert!(text.contains("--db"), "{text}");
}

fn a_file_that_is_no_database_is_refused_naming_the_file(backend: Backend) {
    let path = TestDb::new(backend, "corrupt").path();
    std::fs::write(&path, vec![0x5a; 8192]).unwrap();
    let e = Store::open(&path).unwrap_err();
    assert!(matches!(e, HistoryError::Corrupt(_)), "{e:?}");
    assert!(one_line(&e, &Location::File(path.clone())).contains("move it away"));
}

fn a_locked_database_is_refused_naming_the_file(backend: Backend) {
    let path = TestDb::new(backend, "locked").path();
    drop(Store::open(&path).unwrap());
    let holder = rusqlite::Connection::open(&path).unwrap();
    holder.execute_batch("PRAGMA journal_mode = DELETE; BEGIN EXCLUSIVE; INSERT INTO files (name) VALUES ('held');").unwrap();
    let e = Store::open(&path).unwrap_err();
    assert!(matches!(e, HistoryError::Locked(_)), "{e:?}");
    assert!(one_line(&e, &Location::File(path.clone())).contains("locked by another process"));
    holder.execute_batch("ROLLBACK").unwrap();
    assert!(Store::open(&path).is_ok(), "free again");
}

fn retention_deletes_only_what_ended_before_the_cutoff(backend: Backend) {
    let db = TestDb::new(backend, "retention");
    let mut store = db.open();
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
    let left = db.reading().jobs(&all(Filter::default())).unwrap();
    assert_eq!(left.len(), 20);
    assert!(left.iter().all(|j| j.end_ms >= 10_500));
}

/// A cluster of `scheduler` with hosts alpha and beta, and jobs
/// `first..first + n` of `x{id}.c`, each in a batch of its own.
fn cluster(scheduler: &str, first: u32, n: u32) -> Vec<Vec<Record>> {
    let mut state = Watched::new();
    state.connected_to(scheduler, 0);
    host(&mut state, 1, "alpha", 0);
    host(&mut state, 2, "beta", 0);
    let mut batches = vec![std::mem::take(&mut state.records)];
    for id in first..first + n {
        let at = u64::from(id) * 10;
        job(&mut state, id, &format!("x{}.c", id % 7), 1, at);
        begin(&mut state, id, 2, at + 1);
        done(&mut state, id, 0, at + 2);
        batches.push(std::mem::take(&mut state.records));
    }
    batches
}

fn one_scheduler_is_picked_out_of_several_sharing_the_database(backend: Backend) {
    let db = TestDb::new(backend, "schedulers");
    for (scheduler, first) in [("north:8765", 1), ("south:8765", 100)] {
        let mut store = db.open();
        for batch in cluster(scheduler, first, 5) {
            store.write(&batch).unwrap();
        }
    }
    let conn = db.reading();
    assert_eq!(conn.jobs(&all(Filter::default())).unwrap().len(), 10);
    for (scheduler, first) in [("north:8765", 1), ("south:8765", 100)] {
        let theirs = all(Filter {
            scheduler: Some(scheduler.into()),
            ..Filter::default()
        });
        let jobs = conn.jobs(&theirs).unwrap();
        let ids: Vec<u32> = jobs.iter().map(|j| j.id).collect();
        assert_eq!(ids, (first..first + 5).rev().collect::<Vec<_>>());
        assert!(jobs
            .iter()
            .all(|j| j.scheduler.as_deref() == Some(scheduler)));
        assert_eq!(conn.hosts(&theirs).unwrap().len(), 2);
        assert_eq!(conn.builds(&theirs, 60_000).unwrap()[0].jobs, 5);
    }
    assert_eq!(db.scalar("SELECT count(*) FROM host_names"), Some(2));
}

/// Each table's and view's columns (`table.column`, by name), each
/// table's columns with the kind of their type, and the indexes.
fn schema_of(db: &TestDb) -> (Vec<String>, Vec<String>, Vec<String>) {
    let kind = |t: &str| {
        let t = t.to_ascii_lowercase();
        if t.contains("int") {
            "integer"
        } else if t.contains("real") || t.contains("double") {
            "real"
        } else {
            "text"
        }
    };
    let (columns, indexes) = match db.backend {
        Backend::Sqlite => {
            let conn = rusqlite::Connection::open(db.path()).unwrap();
            let mut stmt = conn
                .prepare(
                    "SELECT m.name, m.type, p.name, p.type FROM sqlite_master m, \
                     pragma_table_info(m.name) p WHERE m.type IN ('table', 'view')",
                )
                .unwrap();
            let columns: Vec<(String, String, String, String)> = stmt
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
                .unwrap()
                .map(Result::unwrap)
                .collect();
            let mut stmt = conn
                .prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")
                .unwrap();
            let indexes: Vec<String> = stmt
                .query_map([], |r| r.get(0))
                .unwrap()
                .map(Result::unwrap)
                .collect();
            (columns, indexes)
        }
        Backend::Postgres => {
            let mut client = db.client();
            let columns = client
                .query(
                    "SELECT c.table_name::text, CASE t.table_type WHEN 'VIEW' THEN 'view' \
                     ELSE 'table' END, c.column_name::text, c.data_type::text \
                     FROM information_schema.columns c JOIN information_schema.tables t \
                     ON t.table_schema = c.table_schema AND t.table_name = c.table_name \
                     WHERE c.table_schema = 'public'",
                    &[],
                )
                .unwrap()
                .iter()
                .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
                .collect();
            let indexes = client
                .query(
                    "SELECT indexname::text FROM pg_indexes WHERE schemaname = 'public' \
                     AND indexname NOT LIKE '%\\_pkey' AND indexname NOT LIKE '%\\_key'",
                    &[],
                )
                .unwrap()
                .iter()
                .map(|r| r.get(0))
                .collect();
            (columns, indexes)
        }
    };
    let mut names: Vec<String> = columns
        .iter()
        .map(|(t, _, c, _)| format!("{t}.{c}"))
        .collect();
    let mut typed: Vec<String> = columns
        .iter()
        .filter(|(_, what, _, _)| what == "table")
        .map(|(t, _, c, ty)| format!("{t}.{c} {}", kind(ty)))
        .collect();
    let mut indexes = indexes;
    names.sort();
    typed.sort();
    indexes.sort();
    (names, typed, indexes)
}

fn the_schema_is_sqlites_table_for_table_column_for_column(_: Backend) {
    let sqlite = TestDb::new(Backend::Sqlite, "schema");
    let postgres = TestDb::new(Backend::Postgres, "schema");
    drop(sqlite.open());
    drop(postgres.open());
    assert_eq!(
        MIGRATIONS.len(),
        PG_MIGRATIONS.len(),
        "a migration for each"
    );
    let (names, typed, indexes) = schema_of(&sqlite);
    assert!(
        names.contains(&"job_list.client_name".to_owned()),
        "{names:?}"
    );
    assert!(indexes.contains(&"jobs_file".to_owned()), "{indexes:?}");
    assert_eq!((names, typed, indexes), schema_of(&postgres));
}

fn two_instances_starting_and_writing_at_once_share_one_database(backend: Backend) {
    let db = TestDb::new(backend, "two-writers");
    let at = db.location();
    let start = std::sync::Barrier::new(2);
    std::thread::scope(|s| {
        for (scheduler, first) in [("north:8765", 1), ("south:8765", 1000)] {
            let (at, start) = (&at, &start);
            s.spawn(move || {
                let batches = cluster(scheduler, first, 200);
                start.wait();
                // Both migrate the empty database at once, then write the
                // same names and files at once.
                let mut store = Database::open(at).unwrap_or_else(|e| panic!("{e}"));
                for batch in batches {
                    store.write(&batch).unwrap_or_else(|e| panic!("{e}"));
                }
            });
        }
    });
    assert_eq!(db.scalar("SELECT count(*) FROM icewatch_schema"), Some(1));
    assert_eq!(db.scalar("SELECT count(*) FROM jobs"), Some(400));
    assert_eq!(db.scalar("SELECT count(*) FROM host_names"), Some(2));
    assert_eq!(db.scalar("SELECT count(*) FROM files"), Some(7));
    assert_eq!(
        db.scalar("SELECT count(*) FROM scheduler_sessions"),
        Some(2)
    );
    let jobs = db.reading().jobs(&all(Filter::default())).unwrap();
    for j in &jobs {
        let scheduler = if j.id < 1000 {
            "north:8765"
        } else {
            "south:8765"
        };
        assert_eq!(j.scheduler.as_deref(), Some(scheduler), "{j:?}");
        assert_eq!(j.file, format!("x{}.c", j.id % 7));
        assert_eq!(
            (j.client_name.as_deref(), j.server_name.as_deref()),
            (Some("alpha"), Some("beta"))
        );
    }
}

/// The backend process ids of the history's other connections.
fn terminate_others(db: &TestDb) -> i64 {
    db.client()
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
            &[],
        )
        .unwrap()
        .get(0)
}

fn a_server_that_drops_the_connection_pauses_writing_until_it_is_back(backend: Backend) {
    let db = TestDb::new(backend, "terminated");
    let mut store = db.open();
    let mut batches = cluster("sched:8765", 1, 3).into_iter();
    store.write(&batches.next().unwrap()).unwrap();
    store.write(&batches.next().unwrap()).unwrap();
    assert_eq!(terminate_others(&db), 1, "the store's connection");
    let batch = batches.next().unwrap();
    let e = store.write(&batch).unwrap_err();
    let text = one_line(&e, &db.location());
    assert!(!text.contains("panicked"), "{text}");
    // The next attempt connects again and writes what was held.
    store.write(&batch).unwrap_or_else(|e| panic!("{e}"));
    store.write(&batches.next().unwrap()).unwrap();
    assert_eq!(db.scalar("SELECT count(*) FROM jobs"), Some(3));
    assert_eq!(
        db.scalar("SELECT count(*) FROM scheduler_sessions"),
        Some(1)
    );
}

fn revoked_rights_pause_writing_until_they_are_restored(backend: Backend) {
    use icewatch::history::{History, HistoryOptions};
    use icewatch::monitor::{self, lock_state, SharedState};
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    let db = TestDb::new(backend, "revoked");
    let store = db.open();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let state: SharedState = Arc::new(Mutex::new(State::new(StateOptions::default())));
    let changed = monitor::changed();
    let mut wake = changed.subscribe();
    let history = runtime.block_on(async {
        History::start(store, state.clone(), &changed, HistoryOptions::default())
    });
    let status = history.status();
    let finish = |first: u32, n: u32| {
        let mut s = lock_state(&state);
        if first == 1 {
            s.scheduler_connected("sched:8765".into(), 43, 0);
            s.apply(
                &Message::mon_stats(1, b"Name:alpha\nMaxJobs:4\nPlatform:x86_64\n"),
                0,
            );
        }
        for id in first..first + n {
            let at = u64::from(id);
            let get = MonGetCs {
                request: GetCs {
                    filename: b"x.c",
                    lang: Language::C,
                    ..Default::default()
                },
                job_id: id,
                client_id: 1,
            };
            s.apply(&Message::MonGetCs(get), at);
            let begin = MonJobBegin {
                job_id: id,
                start_time: 0,
                host_id: 1,
            };
            s.apply(&Message::MonJobBegin(begin), at);
            let done = JobDone {
                job_id: id,
                ..Default::default()
            };
            s.apply(&Message::MonJobDone(done), at + 1);
        }
        drop(s);
        changed.send_modify(|()| {});
    };
    // Until `cond` holds of the status, woken by its changes (and the
    // writer's commits, seen through the database), for 60 s at most.
    let mut until = |what: &str, cond: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !cond() {
            assert!(Instant::now() < deadline, "never {what}");
            runtime.block_on(async {
                let _ = tokio::time::timeout(Duration::from_millis(50), wake.changed()).await;
            });
        }
    };
    finish(1, 10);
    until("written", &|| {
        db.scalar("SELECT count(*) FROM jobs") == Some(10)
    });
    db.execute("REVOKE INSERT ON jobs FROM CURRENT_USER");
    finish(11, 10);
    until("paused", &|| status.paused().is_some());
    let why = status.paused().unwrap_or_default();
    assert!(why.contains("permission denied"), "{why}");
    assert!(
        why.contains(&db.location().to_string()),
        "names the server: {why}"
    );
    assert!(status.held() > 0, "held while paused");
    db.execute("GRANT INSERT ON jobs TO CURRENT_USER");
    until("resumed", &|| status.paused().is_none());
    runtime.block_on(history.stop());
    assert_eq!(
        db.scalar("SELECT count(*) FROM jobs"),
        Some(20),
        "nothing lost"
    );
    assert_eq!(status.lost(), 0);
}

fn unusable_servers_are_refused_in_one_line_without_the_password(_: Backend) {
    let refused = |url: &str| {
        let at = Location::parse(url).unwrap();
        let e = Database::open(&at).unwrap_err();
        let text = one_line(&e, &at);
        assert!(!text.contains("s3cret"), "{text}");
        (e, text)
    };
    // Nothing listens on a port just given back.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (e, text) = refused(&format!(
        "postgres://icewatch:s3cret@127.0.0.1:{port}/history"
    ));
    assert!(matches!(e, HistoryError::Unreachable { .. }), "{e:?}");
    assert!(
        text.contains(&format!("postgres://icewatch@127.0.0.1:{port}/history")),
        "{text}"
    );
    assert!(text.contains("start it"), "{text}");

    let admin = databases::admin_url();
    let db = TestDb::new(Backend::Postgres, "refused");
    let mut client = db.client();
    let row = client
        .query_one("SELECT current_user::text, current_setting('port')", &[])
        .unwrap();
    let (user, port): (String, String) = (row.get(0), row.get(1));
    let (e, text) = refused(&format!(
        "postgres://{user}:s3cret@127.0.0.1:{port}/postgres"
    ));
    assert!(matches!(e, HistoryError::Refused { .. }), "{e:?}");
    assert!(text.contains("authentication failed"), "{text}");

    let missing = format!("icewatch_test_missing_{}", std::process::id());
    let (e, text) = refused(&databases::with_database(&admin, &missing));
    assert!(matches!(e, HistoryError::NoDatabase { .. }), "{e:?}");
    assert!(
        text.contains(&format!("createdb -O USER {missing}")),
        "{text}"
    );
}

fn sslmode_require_is_refused_rather_than_connecting_in_clear(_: Backend) {
    for url in [
        "postgres://icewatch:s3cret@db.example/history?sslmode=require",
        "postgresql://icewatch:s3cret@db.example/history?sslmode=require",
    ] {
        let e = Location::parse(url).unwrap_err();
        assert!(!e.contains('\n') && !e.contains("s3cret"), "{e}");
        assert!(e.contains("does not speak TLS"), "{e}");
    }
    let server = Server::parse("postgresql://icewatch:s3cret@db.example:5433/history").unwrap();
    assert_eq!(
        server.to_string(),
        "postgres://icewatch@db.example:5433/history"
    );
    let local = Server::parse("postgres:///history").unwrap();
    assert_eq!(
        local.to_string(),
        "postgres:///history?host=/var/run/postgresql"
    );
}
