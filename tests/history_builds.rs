//! The `builds` table the writer keeps, against both backends (SQLite
//! and PostgreSQL, `support::databases`): the builds read from it are
//! those of grouping the same jobs in memory, whatever order the jobs
//! finish in and however the commits cut them; a build that spans
//! commits and a restart of the writer is one row; the migration groups
//! the jobs a database already held the same way.

mod support;

use icewatch::history::query::Filter;
use icewatch::history::schema::{BUILDS_VERSION, MIGRATIONS, PG_MIGRATIONS};
use icewatch::history::{Database, JobRecord, Record, SCHEMA_VERSION};
use icewatch::insights::Build;
use icewatch::monitor::{EndReason, JobState};
use libtest_mimic::{Arguments, Trial};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::sync::Arc;
use support::databases::{self, Backend, TestDb};

fn main() {
    let args = Arguments::from_args();
    let mut trials: Vec<Trial> = Vec::new();
    for (name, test) in crate::named![
        kept_builds_are_the_builds_of_the_grouped_jobs,
        a_build_across_commits_and_a_restart_is_one_row,
        a_long_job_that_ends_late_joins_the_builds_it_reaches,
        the_migration_groups_the_jobs_already_kept,
    ] {
        trials.extend(databases::both(name, test));
    }
    libtest_mimic::run(&args, trials).exit();
}

const GAP: u64 = 60_000;

fn all(filter: Filter) -> Filter {
    Filter {
        limit: 10_000,
        ..filter
    }
}

/// The scheduler session `local` of `scheduler`.
fn session(local: u32, scheduler: &str) -> Record {
    Record::Session {
        local,
        scheduler: scheduler.into(),
        protocol: Some(44),
        start_ms: 0,
    }
}

/// A job of session `session`, submitted by `client` at `submit_ms` (if
/// seen), begun at `start_ms`, ended at `end_ms`.
fn job(
    session: u32,
    id: u32,
    client: Option<&str>,
    server: Option<&str>,
    state: JobState,
    times: (Option<u64>, u64, u64),
) -> JobRecord {
    let (submit_ms, start_ms, end_ms) = times;
    JobRecord {
        session,
        id,
        file: format!("src/f{}.c", id % 13).into(),
        lang: Some("C++"),
        client: client.map(|_| 1),
        client_name: client.map(Arc::from),
        server: server.map(|_| 2),
        server_name: server.map(Arc::from),
        state,
        reason: if state == JobState::LocalFinished {
            EndReason::LocalDone
        } else {
            EndReason::Exit
        },
        exit_code: Some(i32::from(state == JobState::Failed)),
        submit_ms,
        start_ms,
        end_ms,
        stats: None,
    }
}

/// Jobs of a few submitters at two schedulers (each submitter at one, as
/// a host is in one cluster), with pauses around the gap and a few long
/// compiles, in the order they end.
fn random_jobs(seed: u64, n: u32) -> Vec<Record> {
    let mut rng = StdRng::seed_from_u64(seed);
    let clients = [Some("alpha"), Some("beta"), Some("gamma"), None];
    let servers = ["alpha", "beta", "gamma", "delta"];
    let mut at = [0u64; 4];
    let mut jobs = Vec::new();
    for id in 0..n {
        let c = rng.random_range(0..clients.len());
        // Mostly close together, now and then a pause near the gap.
        at[c] += match rng.random_range(0..20) {
            0 => rng.random_range(GAP - 2_000..GAP + 2_000),
            1 => rng.random_range(GAP..3 * GAP),
            _ => rng.random_range(0..3_000),
        };
        let submit = at[c];
        let wait = rng.random_range(0..500);
        let took = match rng.random_range(0..30) {
            0 => rng.random_range(GAP..4 * GAP),
            _ => rng.random_range(10..5_000),
        };
        let state = match rng.random_range(0..10) {
            0 => JobState::LocalFinished,
            1 => JobState::Failed,
            2 => JobState::CutShort,
            _ => JobState::Finished,
        };
        let server = match state {
            JobState::LocalFinished => clients[c],
            _ => Some(servers[rng.random_range(0..servers.len())]),
        };
        let seen = (state != JobState::LocalFinished && rng.random_bool(0.8)).then_some(submit);
        // gamma submits to south; the others to north, which restarted
        // (two sessions, jobs of both in flight).
        let session = match (c, rng.random_bool(0.3)) {
            (2, _) => 2,
            (_, true) => 3,
            (_, false) => 1,
        };
        jobs.push(job(
            session,
            id,
            clients[c],
            server,
            state,
            (seen, submit + wait, submit + wait + took),
        ));
    }
    jobs.sort_by_key(|j| j.end_ms);
    let mut records = vec![
        session(1, "north:8765"),
        session(2, "south:8765"),
        session(3, "north:8765"),
    ];
    records.extend(jobs.into_iter().map(Record::Job));
    records
}

/// Writes `records` in batches of random sizes (each a commit).
fn write_in_batches(store: &mut Database, records: &[Record], rng: &mut StdRng) {
    let mut rest = records;
    while !rest.is_empty() {
        let n = rng.random_range(1..=rest.len().min(40));
        store.write(&rest[..n]).unwrap();
        rest = &rest[n..];
    }
}

/// The filters whose builds both ways must agree on: every build, one
/// submitter's, the failed ones, one scheduler's, a short page and the
/// page after it.
fn filters(db: &TestDb) -> Vec<Filter> {
    let mut filters = vec![
        all(Filter::default()),
        all(Filter {
            host: Some("beta".into()),
            ..Filter::default()
        }),
        all(Filter {
            failed: true,
            ..Filter::default()
        }),
        all(Filter {
            scheduler: Some("south:8765".into()),
            ..Filter::default()
        }),
        Filter {
            limit: 7,
            ..Filter::default()
        },
    ];
    let page = db.reading().builds(&filters[4], GAP).unwrap();
    filters.push(Filter {
        limit: 7,
        cursor: page.last().map(|b| b.start_ms as i64),
        ..Filter::default()
    });
    filters
}

/// The builds of `filter` from the table and from grouping the jobs.
fn both_ways(db: &TestDb, filter: &Filter) -> (Vec<Build>, Vec<Build>) {
    let reading = db.reading();
    let kept = reading.builds(filter, GAP).unwrap();
    let grouped = reading.grouped_builds(filter, GAP).unwrap();
    (kept, grouped)
}

fn kept_builds_are_the_builds_of_the_grouped_jobs(backend: Backend) {
    for seed in 0..6 {
        let db = TestDb::new(backend, &format!("kept-{seed}"));
        let mut store = db.open();
        let mut rng = StdRng::seed_from_u64(seed + 100);
        write_in_batches(&mut store, &random_jobs(seed, 400), &mut rng);
        for filter in filters(&db) {
            let (kept, grouped) = both_ways(&db, &filter);
            assert!(!grouped.is_empty(), "seed {seed}, {filter:?}");
            assert_eq!(kept, grouped, "seed {seed}, {filter:?}");
        }
        // One row per build.
        let everything = both_ways(&db, &all(Filter::default())).1;
        let rows = db.scalar("SELECT count(*) FROM builds");
        assert_eq!(rows, Some(everything.len() as i64), "seed {seed}");
    }
}

fn a_build_across_commits_and_a_restart_is_one_row(backend: Backend) {
    let db = TestDb::new(backend, "across");
    let finished = |id: u32, at: u64| {
        Record::Job(job(
            1,
            id,
            Some("alpha"),
            Some("beta"),
            JobState::Finished,
            (Some(at), at + 10, at + 1_000),
        ))
    };
    let mut store = db.open();
    store
        .write(&[session(1, "north:8765"), finished(1, 1_000)])
        .unwrap();
    store.write(&[finished(2, 30_000)]).unwrap();
    drop(store);
    // A new writer (icewatch restarted) goes on with the open build.
    let mut store = db.open();
    store
        .write(&[session(1, "north:8765"), finished(3, 80_000)])
        .unwrap();
    store.write(&[finished(4, 200_000)]).unwrap();
    let (kept, grouped) = both_ways(&db, &all(Filter::default()));
    assert_eq!(kept, grouped);
    let spans: Vec<_> = kept
        .iter()
        .map(|b| (b.start_ms, b.end_ms, b.jobs))
        .collect();
    assert_eq!(spans, [(200_000, 201_000, 1), (1_000, 81_000, 3)]);
    assert_eq!(db.scalar("SELECT count(*) FROM builds"), Some(2));
}

fn a_long_job_that_ends_late_joins_the_builds_it_reaches(backend: Backend) {
    let db = TestDb::new(backend, "late");
    let mut store = db.open();
    let quick = |id: u32, at: u64| {
        Record::Job(job(
            1,
            id,
            Some("alpha"),
            Some("beta"),
            JobState::Finished,
            (Some(at), at, at + 100),
        ))
    };
    // Two builds two minutes apart, each committed; then a compile that
    // began between them ends, and makes them one.
    store
        .write(&[session(1, "north:8765"), quick(1, 0)])
        .unwrap();
    store.write(&[quick(2, 200_000)]).unwrap();
    assert_eq!(db.scalar("SELECT count(*) FROM builds"), Some(2));
    let long = job(
        1,
        3,
        Some("alpha"),
        Some("gamma"),
        JobState::Finished,
        (Some(50_000), 50_000, 250_000),
    );
    store.write(&[Record::Job(long)]).unwrap();
    let (kept, grouped) = both_ways(&db, &all(Filter::default()));
    assert_eq!(kept, grouped);
    assert_eq!(kept.len(), 1);
    assert_eq!(
        (kept[0].start_ms, kept[0].end_ms, kept[0].jobs),
        (0, 250_000, 3)
    );
    assert_eq!(db.scalar("SELECT count(*) FROM builds"), Some(1));
}

fn the_migration_groups_the_jobs_already_kept(backend: Backend) {
    let migrations = match backend {
        Backend::Sqlite => MIGRATIONS,
        Backend::Postgres => PG_MIGRATIONS,
    };
    let before = migrations
        .iter()
        .position(|m| m.contains("CREATE TABLE builds"))
        .expect("a migration adds builds");
    assert_eq!(
        before + 1,
        BUILDS_VERSION as usize,
        "the version said at start"
    );
    for seed in 0..3 {
        let db = TestDb::new(backend, &format!("migrate-builds-{seed}"));
        let mut store = db.open();
        let mut rng = StdRng::seed_from_u64(seed);
        write_in_batches(&mut store, &random_jobs(seed, 300), &mut rng);
        drop(store);
        let written = both_ways(&db, &all(Filter::default())).0;
        // The same jobs in a database of the schema before `builds`.
        db.execute(&format!(
            "DROP TABLE builds; UPDATE icewatch_schema SET version = {before}"
        ));
        drop(Database::open(&db.location()).unwrap());
        assert_eq!(
            db.scalar("SELECT version FROM icewatch_schema"),
            Some(i64::from(SCHEMA_VERSION))
        );
        let (kept, grouped) = both_ways(&db, &all(Filter::default()));
        assert_eq!(kept, grouped, "seed {seed}");
        assert_eq!(kept, written, "seed {seed}");
    }
}
