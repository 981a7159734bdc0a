//! The `builds` table the writer keeps, against both backends (SQLite
//! and PostgreSQL, `support::databases`): the builds read from it are
//! those of grouping the same jobs in memory, whatever order the jobs
//! finish in and however the commits cut them; a build that spans
//! commits and a restart of the writer is one row; the migration groups
//! the jobs a database already held the same way. The details kept in
//! `builds.details` (`history::summaries`) are those worked out from the
//! jobs, whenever they are worked out, and the query takes them while
//! they are those of the build as it is.

mod support;

use icewatch::history::query::Filter;
use icewatch::history::schema::{BUILDS_VERSION, MIGRATIONS, PG_MIGRATIONS};
use icewatch::history::summaries::Summaries;
use icewatch::history::{Database, HostRecord, JobRecord, Record, SCHEMA_VERSION};
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
        kept_details_are_those_worked_out_from_the_jobs,
        the_builds_of_a_database_of_version_6_are_worked_out,
        the_query_takes_kept_details_until_a_late_job_joins_the_build,
        a_long_compile_written_late_makes_the_builds_it_ran_beside_worked_out_again,
        two_schedulers_sharing_a_database_keep_a_submitter_s_builds_apart,
        the_retention_leaves_a_build_that_ends_after_the_cutoff_whole,
        a_running_history_works_out_the_builds_that_end,
        builds_still_open_have_their_details_kept,
        details_of_an_earlier_form_are_worked_out_again,
        a_window_s_builds_are_those_that_overlap_it,
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

/// A host that takes remote jobs, logged in to session `session` at 0.
fn login(session: u32, host_id: u32, name: &str, max_jobs: u32) -> Record {
    Record::HostLogin(HostRecord {
        session,
        host_id,
        name: name.into(),
        ip: format!("10.0.0.{host_id}"),
        platform: "x86_64".into(),
        max_jobs,
        no_remote: false,
        protocol: 44,
        features: String::new(),
        login_ms: 0,
    })
}

/// [`random_jobs`] with two servers logged in, a slot each (so that the
/// cluster is full now and then), and the
/// south scheduler's session ended after its last job.
fn random_cluster(seed: u64, n: u32) -> Vec<Record> {
    let mut records = random_jobs(seed, n);
    records.splice(3..3, [login(1, 1, "beta", 1), login(1, 2, "gamma", 1)]);
    let end = records
        .iter()
        .filter_map(|r| match r {
            Record::Job(j) if j.session == 2 => Some(j.end_ms),
            _ => None,
        })
        .max();
    let at = records
        .iter()
        .rposition(|r| matches!(r, Record::Job(j) if Some(j.end_ms) == end));
    if let (Some(at), Some(end_ms)) = (at, end) {
        records.insert(at + 1, Record::SessionEnd { local: 2, end_ms });
    }
    records
}

/// The builds of `filter` with their kept details, and worked out from
/// the jobs.
fn kept_and_computed(db: &TestDb, filter: &Filter) -> (Vec<Build>, Vec<Build>) {
    let reading = db.reading();
    let kept = reading.builds(filter, GAP).unwrap();
    (kept, reading.computed_builds(filter).unwrap())
}

/// Works out the details of every build that is over.
fn catch_up(db: &TestDb, summaries: &mut Summaries) {
    summaries.catch_up(&db.reading()).unwrap();
}

/// Builds with details kept, and without.
fn kept_and_not(db: &TestDb) -> (i64, i64) {
    let count = |sql| db.scalar(sql).unwrap_or(0);
    (
        count("SELECT count(*) FROM builds WHERE details IS NOT NULL"),
        count("SELECT count(*) FROM builds WHERE details IS NULL"),
    )
}

fn kept_details_are_those_worked_out_from_the_jobs(backend: Backend) {
    let mut reasons = std::collections::BTreeSet::new();
    for seed in 0..5 {
        let db = TestDb::new(backend, &format!("details-{seed}"));
        let mut store = db.open();
        let mut rng = StdRng::seed_from_u64(seed + 200);
        let records = random_cluster(seed, 500);
        // Passes between the writer's commits, as the thread makes them:
        // builds grow, merge and have late compiles run beside them after
        // they were worked out.
        let mut summaries = Summaries::default();
        let mut rest = &records[..];
        while !rest.is_empty() {
            let n = rng.random_range(1..=rest.len().min(60));
            store.write(&rest[..n]).unwrap();
            rest = &rest[n..];
            if rng.random_bool(0.3) {
                summaries.pass_on(&db.reading(), 5).unwrap();
            }
        }
        catch_up(&db, &mut summaries);
        let (kept, open) = kept_and_not(&db);
        assert!(kept > 10, "seed {seed}: {kept} builds worked out");
        // At most north's last builds are not over: south's session ended.
        assert!(open <= 3, "seed {seed}: {open} builds open");
        let south =
            "SELECT count(*) FROM builds WHERE scheduler = 'south:8765' AND details IS NULL";
        assert_eq!(db.scalar(south), Some(0), "seed {seed}");
        for filter in filters(&db) {
            let (kept, computed) = kept_and_computed(&db, &filter);
            assert!(!computed.is_empty(), "seed {seed}, {filter:?}");
            assert_eq!(kept, computed, "seed {seed}, {filter:?}");
        }
        let all = kept_and_computed(&db, &all(Filter::default())).0;
        reasons.extend(all.iter().flat_map(|b| b.why.iter().map(|r| r.kind)));
    }
    // The details compared hold reasons of every kind the jobs can show.
    for kind in [
        "cluster_full",
        "given_back",
        "local_unasked",
        "retried_locally",
    ] {
        assert!(reasons.contains(kind), "{kind} in {reasons:?}");
    }
}

fn the_builds_of_a_database_of_version_6_are_worked_out(backend: Backend) {
    let db = TestDb::new(backend, "details-from-6");
    let mut store = db.open();
    let mut rng = StdRng::seed_from_u64(7);
    write_in_batches(&mut store, &random_cluster(7, 400), &mut rng);
    drop(store);
    // The same database as version 6 left it.
    db.execute(
        "DROP INDEX builds_pending; ALTER TABLE builds DROP COLUMN details; \
         UPDATE icewatch_schema SET version = 6",
    );
    drop(db.open());
    assert_eq!(
        db.scalar("SELECT version FROM icewatch_schema"),
        Some(i64::from(SCHEMA_VERSION))
    );
    assert_eq!(kept_and_not(&db).0, 0, "none worked out by the migration");
    // A batch at a time, newest first: 4, and those that ran within
    // their span (the cluster around them is read once for all).
    let newest_4 = "(SELECT start_ms, end_ms FROM builds ORDER BY end_ms DESC LIMIT 4) b";
    let span = format!(
        "SELECT count(*) FROM builds, (SELECT min(start_ms) AS f, max(end_ms) AS t FROM {newest_4}) s \
         WHERE start_ms >= s.f AND end_ms <= s.t"
    );
    let within = db.scalar(&span).unwrap();
    assert!(
        within > 4,
        "builds besides the newest 4 ran within their span"
    );
    let mut summaries = Summaries::default();
    let pass = summaries.pass_on(&db.reading(), 4).unwrap();
    let within = usize::try_from(within).unwrap();
    assert_eq!((pass.taken, pass.written), (within, within));
    let newest = "SELECT max(end_ms) FROM builds WHERE details IS NOT NULL";
    let oldest = "SELECT min(end_ms) FROM builds WHERE details IS NULL";
    assert!(db.scalar(newest) > db.scalar(oldest));
    catch_up(&db, &mut summaries);
    let (kept, open) = kept_and_not(&db);
    assert!(kept > 10 && open <= 3, "{kept} worked out, {open} not");
    let (kept, computed) = kept_and_computed(&db, &all(Filter::default()));
    assert_eq!(kept, computed);
}

/// A remote job of `alpha` at north, compiled on beta from `at` for
/// `took` ms.
fn alpha(id: u32, at: u64, took: u64) -> Record {
    Record::Job(job(
        1,
        id,
        Some("alpha"),
        Some("beta"),
        JobState::Finished,
        (Some(at), at + 10, at + 10 + took),
    ))
}

fn the_query_takes_kept_details_until_a_late_job_joins_the_build(backend: Backend) {
    let db = TestDb::new(backend, "details-stale");
    let mut store = db.open();
    store
        .write(&[
            session(1, "north:8765"),
            alpha(1, 0, 1_000),
            alpha(2, 500, 2_000),
        ])
        .unwrap();
    // A second build, far enough after the first to end it.
    store.write(&[alpha(3, 300_000, 1_000)]).unwrap();
    let mut summaries = Summaries::default();
    catch_up(&db, &mut summaries);
    assert_eq!(kept_and_not(&db), (2, 0), "the second, still open, too");
    // Kept details are what the query gives: changed behind its back, the
    // query shows the change.
    db.execute("UPDATE builds SET details = replace(details, 'src/f', 'kept/f')");
    let kept = kept_and_computed(&db, &all(Filter::default())).0;
    let first = kept.last().unwrap();
    assert_eq!(first.slowest[0].file, "kept/f2.c", "{first:?}");
    assert_eq!(kept[0].slowest[0].file, "kept/f3.c", "{:?}", kept[0]);
    // A compile that began in the first build ends late and joins it:
    // its kept details are no longer its own; the second's still are.
    store.write(&[alpha(4, 2_000, 200_000)]).unwrap();
    assert_eq!(kept_and_not(&db), (1, 1));
    db.execute("UPDATE builds SET details = replace(details, 'kept/f', 'src/f')");
    let (kept, computed) = kept_and_computed(&db, &all(Filter::default()));
    assert_eq!(kept, computed);
    assert_eq!(kept.last().unwrap().jobs, 3);
    // Details that are not the row's (changed by hand) are not taken.
    catch_up(&db, &mut summaries);
    db.execute("UPDATE builds SET details = replace(details, 'src/f', 'kept/f')");
    db.execute("UPDATE builds SET end_ms = end_ms + 1 WHERE start_ms = 0");
    let kept = kept_and_computed(&db, &all(Filter::default())).0;
    assert!(kept.last().unwrap().slowest[0].file.starts_with("src/"));
}

fn a_long_compile_written_late_makes_the_builds_it_ran_beside_worked_out_again(backend: Backend) {
    let db = TestDb::new(backend, "details-beside");
    let mut store = db.open();
    let beta = |id: u32, at: u64, took: u64| {
        Record::Job(job(
            1,
            id,
            Some("beta"),
            Some("gamma"),
            JobState::Finished,
            (Some(at), at, at + took),
        ))
    };
    // gamma has one slot. alpha's job waits for it at 1,000 while beta's
    // long compile holds it, written only when it ends, after alpha's
    // build was worked out.
    store
        .write(&[
            session(1, "north:8765"),
            login(1, 1, "gamma", 1),
            alpha(1, 1_000, 500),
        ])
        .unwrap();
    store.write(&[alpha(2, 100_000, 500)]).unwrap();
    let mut summaries = Summaries::default();
    catch_up(&db, &mut summaries);
    let first = |db: &TestDb| {
        kept_and_computed(db, &all(Filter::default()))
            .0
            .last()
            .cloned()
    };
    assert!(first(&db).unwrap().why.is_empty());
    store.write(&[beta(3, 0, 300_000)]).unwrap();
    let pass = summaries.pass_on(&db.reading(), 10).unwrap();
    assert!(pass.stale >= 1, "{pass:?}");
    let (kept, computed) = kept_and_computed(&db, &all(Filter::default()));
    assert_eq!(kept, computed);
    let alpha_first = kept
        .iter()
        .rfind(|b| b.host.as_deref() == Some("alpha"))
        .unwrap();
    let kinds: Vec<_> = alpha_first.why.iter().map(|r| r.kind).collect();
    assert_eq!(kinds, ["cluster_full"]);
    assert_eq!(kept_and_not(&db).1, 1, "only beta's build is open");
}

fn two_schedulers_sharing_a_database_keep_a_submitter_s_builds_apart(backend: Backend) {
    let db = TestDb::new(backend, "details-shared");
    drop(db.open());
    // Two icewatch, each watching its own scheduler, write at once; a
    // host named alpha submits to each, at the same moments.
    let writers: Vec<_> = [("north:8765", "n1"), ("south:8765", "s1")]
        .into_iter()
        .map(|(scheduler, server)| {
            let mut store = db.open();
            std::thread::spawn(move || {
                let mut records = vec![session(1, scheduler)];
                for i in 0..60u32 {
                    // Two builds: a pause of two gaps after the 30th job.
                    let at = u64::from(i) * 1_000 + u64::from(i / 30) * 2 * GAP;
                    records.push(Record::Job(job(
                        1,
                        i,
                        Some("alpha"),
                        Some(server),
                        JobState::Finished,
                        (Some(at), at + 5, at + 800),
                    )));
                }
                for chunk in records.chunks(7) {
                    // The other writer may hold SQLite's lock past the
                    // wait: the writer thread tries again, and so does
                    // this.
                    let mut tries = 0;
                    while let Err(e) = store.write(chunk) {
                        tries += 1;
                        assert!(tries < 20, "{e}");
                    }
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    catch_up(&db, &mut Summaries::default());
    let (kept, computed) = kept_and_computed(&db, &all(Filter::default()));
    assert_eq!(kept, computed);
    let spans: Vec<_> = kept.iter().map(|b| (b.start_ms, b.jobs)).collect();
    let second = 30_000 + 2 * GAP;
    assert_eq!(spans, [(second, 30), (second, 30), (0, 30), (0, 30)]);
    // Grouped from the jobs (another --build-gap), apart too; builds
    // that begin together come in either order.
    let by_server = |mut builds: Vec<Build>| {
        builds.sort_by_key(|b| (b.start_ms, b.servers.first().map(|s| s.name.clone())));
        builds
    };
    let grouped = db.reading().grouped_builds(&all(Filter::default()), GAP);
    assert_eq!(by_server(grouped.unwrap()), by_server(kept.clone()));
    for (scheduler, server) in [("north:8765", "n1"), ("south:8765", "s1")] {
        let theirs = db
            .reading()
            .builds(
                &all(Filter {
                    scheduler: Some(scheduler.into()),
                    ..Filter::default()
                }),
                GAP,
            )
            .unwrap();
        assert_eq!(theirs.len(), 2, "{scheduler}");
        for b in &theirs {
            let servers: Vec<_> = b.servers.iter().map(|s| s.name.as_str()).collect();
            assert_eq!(servers, [server], "{scheduler}");
        }
    }
}

fn the_retention_leaves_a_build_that_ends_after_the_cutoff_whole(backend: Backend) {
    let db = TestDb::new(backend, "retained");
    let mut store = db.open();
    let mut records = vec![session(1, "north:8765")];
    for i in 0..20u32 {
        // A build from 0 to 19.8 s, and one more two gaps later.
        let at = u64::from(i) * 1_000 + u64::from(i / 19) * 2 * GAP;
        records.push(Record::Job(job(
            1,
            i,
            Some("alpha"),
            Some("beta"),
            JobState::Finished,
            (Some(at), at + 5, at + 800),
        )));
    }
    store.write(&records).unwrap();
    catch_up(&db, &mut Summaries::default());
    let before = db.reading().builds(&all(Filter::default()), GAP).unwrap();
    assert_eq!(before.iter().map(|b| b.jobs).collect::<Vec<_>>(), [1, 19]);
    // The cutoff falls in the first build: its first ten jobs go.
    while store.expire(10_000, 4).unwrap() > 0 {}
    assert_eq!(db.scalar("SELECT count(*) FROM jobs"), Some(10));
    let after = db.reading().builds(&all(Filter::default()), GAP).unwrap();
    assert_eq!(after, before);
}

fn a_running_history_works_out_the_builds_that_end(backend: Backend) {
    use icewatch::history::{History, HistoryOptions};
    use icewatch::monitor::{self, lock_state, SharedState, State, StateOptions};
    use icewatch::standin::simulation::Simulation;
    use std::sync::Mutex;
    use std::time::{Duration, Instant};
    const START: u64 = 1_800_000_000_000;
    let db = TestDb::new(backend, "details-running");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let state: SharedState = Arc::new(Mutex::new(State::new(StateOptions::default())));
    let changed = monitor::changed();
    let store = db.open();
    let history = runtime.block_on(async {
        let history = History::start(store, state.clone(), &changed, HistoryOptions::default());
        // The simulated cluster's builds, over half an hour of its time.
        let mut sim = Simulation::new(40, 3);
        lock_state(&state).scheduler_connected("sched:8765".into(), 44, START);
        let mut at = 0;
        while at < 30 * 60_000 {
            {
                let mut state = lock_state(&state);
                for _ in 0..500 {
                    let (t, event) = sim.step();
                    at = t;
                    state.apply(&event.message(0), START + t);
                }
            }
            changed.send_modify(|()| {});
            tokio::task::yield_now().await;
        }
        history
    });
    // The runtime's threads go on: the reader, then the writer's commits,
    // after which the thread works the builds out. Every build that is
    // over gets its details; those still open (the scheduler's session is)
    // too, once the writer has paused.
    let deadline = Instant::now() + Duration::from_secs(120);
    while kept_and_not(&db).1 != 0 || kept_and_not(&db).0 == 0 {
        assert!(
            Instant::now() < deadline,
            "{:?} not worked out",
            kept_and_not(&db)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    runtime.block_on(history.stop());
    let (kept, open) = kept_and_not(&db);
    assert!(kept >= 5, "{kept} builds worked out, {open} not");
    let still_open = "SELECT count(*) FROM builds WHERE end_ms > \
                      (SELECT max(end_ms) FROM jobs) - 60000";
    assert!(
        db.scalar(still_open) > Some(0),
        "builds still open among them"
    );
    let (kept, computed) = kept_and_computed(&db, &all(Filter::default()));
    assert_eq!(kept, computed);
}

/// A database `name` with `records` written in batches of a random size
/// (seeded by `seed`), and its writer.
fn written(backend: Backend, name: &str, seed: u64, records: &[Record]) -> (TestDb, Database) {
    let db = TestDb::new(backend, name);
    let mut store = db.open();
    write_in_batches(&mut store, records, &mut StdRng::seed_from_u64(seed));
    (db, store)
}

fn builds_still_open_have_their_details_kept(backend: Backend) {
    // North's session stays open: its last builds have not had their gap.
    let records = random_cluster(11, 400);
    let (db, mut store) = written(backend, "details-open", 11, &records);
    let end = "SELECT max(end_ms) FROM jobs";
    let open = format!("SELECT count(*) FROM builds WHERE end_ms > ({end}) - {GAP}");
    assert!(db.scalar(&open) > Some(0));
    // While jobs are being written, they wait.
    let mut summaries = Summaries::default();
    assert!(
        !summaries.release_due(),
        "nothing worked out, nothing to free"
    );
    summaries.set_busy(true);
    catch_up(&db, &mut summaries);
    let (kept, left) = kept_and_not(&db);
    assert!(kept > 0 && left > 0, "{kept} worked out, {left} left");
    assert!(
        Some(left) <= db.scalar(&open),
        "only builds still open are left"
    );
    // What the passes cached is freed once the writer pauses, once.
    assert!(!summaries.release_due(), "not while jobs are written");
    summaries.set_busy(false);
    assert!(summaries.release_due());
    assert!(!summaries.release_due());
    catch_up(&db, &mut summaries);
    assert_eq!(kept_and_not(&db).1, 0, "every build worked out");
    assert!(summaries.release_due(), "the open builds' pass cached too");
    let (kept, computed) = kept_and_computed(&db, &all(Filter::default()));
    assert_eq!(kept, computed);
    // A job joins north's newest build: the query works it out until the
    // next pass that takes open builds.
    let newest: Vec<Record> = records
        .iter()
        .filter_map(|r| match r {
            Record::Job(j) if j.session == 1 => Some(j.clone()),
            _ => None,
        })
        .max_by_key(|j| j.end_ms)
        .map(|mut j| {
            j.id += 100_000;
            j.end_ms += 1;
            Record::Job(j)
        })
        .into_iter()
        .collect();
    store.write(&newest).unwrap();
    assert!(kept_and_not(&db).1 > 0);
    let (kept, computed) = kept_and_computed(&db, &all(Filter::default()));
    assert_eq!(kept, computed);
    catch_up(&db, &mut Summaries::default());
    assert_eq!(kept_and_not(&db).1, 0);
    assert_eq!(kept_and_computed(&db, &all(Filter::default())).0, computed);
}

fn details_of_an_earlier_form_are_worked_out_again(backend: Backend) {
    let (db, _store) = written(backend, "details-form", 12, &random_cluster(12, 300));
    catch_up(&db, &mut Summaries::default());
    let (worked_out, _) = kept_and_not(&db);
    let (kept, computed) = kept_and_computed(&db, &all(Filter::default()));
    assert_eq!(kept, computed);
    // Details of another form (here: without `v`) are not taken ...
    db.execute("UPDATE builds SET details = replace(details, '\"v\":2,', '')");
    assert_eq!(kept_and_computed(&db, &all(Filter::default())).0, computed);
    // ... and the first pass of a history sets them aside, to be worked
    // out again.
    catch_up(&db, &mut Summaries::default());
    assert_eq!(kept_and_not(&db), (worked_out, 0));
    let this_form = "SELECT count(*) FROM builds WHERE details LIKE '{\"v\":2,%'";
    assert_eq!(db.scalar(this_form), Some(worked_out));
    assert_eq!(kept_and_computed(&db, &all(Filter::default())).0, computed);
}

fn a_window_s_builds_are_those_that_overlap_it(backend: Backend) {
    let (db, _store) = written(backend, "window", 13, &random_jobs(13, 400));
    let key = |b: &Build| (b.host.clone(), b.start_ms, b.end_ms, b.jobs);
    let every = db.reading().builds(&all(Filter::default()), GAP).unwrap();
    let first = every.iter().map(|b| b.start_ms).min().unwrap();
    let last = every.iter().map(|b| b.end_ms).max().unwrap();
    let at = |tenths: u64| first + (last - first) * tenths / 10;
    // Windows whose builds since are many beside the page (read newest
    // first through `builds_start`) and few (listed from `builds_end`):
    // more than four pages of 3 since at(1), fewer since at(9).
    let ending_from = |t: u64| every.iter().filter(|b| b.end_ms >= t).count();
    assert!(
        ending_from(at(1)) > 12 && ending_from(at(9)) <= 12,
        "{}",
        every.len()
    );
    for (since, until, limit) in [
        (at(1), None, 3),
        (at(1), Some(at(5)), 10_000),
        (at(4), Some(at(6)), 4),
        (at(9), None, 3),
        (at(9), None, 10_000),
        (last + 1, None, 10),
    ] {
        let filter = Filter {
            since_ms: Some(since),
            until_ms: until,
            limit,
            ..Filter::default()
        };
        let got: Vec<_> = db.reading().builds(&filter, GAP).unwrap();
        let expected: Vec<_> = every
            .iter()
            .filter(|b| b.end_ms >= since && until.map_or(true, |u| b.start_ms < u))
            .take(limit)
            .map(key)
            .collect();
        assert_eq!(
            got.iter().map(key).collect::<Vec<_>>(),
            expected,
            "{filter:?}"
        );
    }
}
