//! The history's costs, on finished jobs of the demo's simulated cluster
//! (200 hosts, its projects' file names): how fast [`Store::write`] takes
//! them in batches as the writer commits them, how many bytes a job takes
//! in the database with its indexes, and how long the queries of
//! `icewatch history` and the HTTP API take on a large database.
//!
//! Criterion measures the wall-clock ingest (`history/ingest`); the run
//! also prints jobs per CPU-second of the writing thread and of the whole
//! process (which counts any thread SQLite's work moves to), in
//! `HISTORY_BENCH_TURNS` turns (default 5) and their median, beside the
//! same records written into a database whose `jobs` has no index
//! (SQLite's floor for these rows); and, once
//! each, bytes per job and the query times on a database of `HISTORY_BENCH_JOBS` jobs
//! (default 1,000,000; the goals in BENCHMARKS.md are for 10,000,000).
//! `cargo test --all-targets` runs it once on a few thousand jobs.
//!
//! The same stream goes into PostgreSQL too (a database of its own at
//! `ICEWATCH_TEST_POSTGRES`, default the local socket, created and dropped
//! here): jobs per CPU-second of the writing thread, and of it and the
//! server's backend process together; and the two ways to put a batch of
//! jobs in, one binary `COPY` against one `INSERT ... SELECT unnest(...)`
//! of arrays, on the same rows.
//!
//! Bytes per job and the query times are measured in PostgreSQL too, on
//! the same jobs written the same way: bytes from `pg_total_relation_size`
//! of every table (indexes and TOAST included) after a `VACUUM ANALYZE`,
//! as autovacuum leaves a database; queries through the same [`Reading`]
//! as `icewatch history` and the API. `HISTORY_BENCH_DIR` keeps the SQLite
//! file, `HISTORY_BENCH_PGDB=NAME` the PostgreSQL database `NAME`: a later
//! run with the same number of jobs queries them again without filling
//! them (drop them when done: `dropdb NAME`).
//!
//! Run: `cargo bench --bench history`; the large databases alone, without
//! criterion's ingest loop: `HISTORY_BENCH_JOBS=10000000 cargo bench
//! --bench history -- size`; the ingest alone: `cargo bench --bench
//! history -- history/ingest` (a filter runs the parts whose names
//! contain it: `history/ingest`, `history/postgres/ingest`,
//! `history/size`, `history/postgres/size`).

use cpu_time::{ProcessTime, ThreadTime};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use icewatch::history::query::{self, Filter};
use icewatch::history::summaries::Summaries;
use icewatch::history::{Database, Location, PgStore, Reader, Reading, Record, Server, Store};
use icewatch::monitor::{State, StateOptions};
use icewatch::standin::simulation::Simulation;
use postgres::binary_copy::BinaryCopyInWriter;
use postgres::types::Type;
use std::path::Path;
use std::time::{Duration, Instant};

/// Records the writer commits at once at a busy pace.
const BATCH: usize = 10_000;

/// Jobs in the stream: 100,000 under `cargo bench`; a few thousand when
/// `cargo test --all-targets` runs the bench once, to check that it works.
fn stream_jobs() -> usize {
    if benching() {
        100_000
    } else {
        2_000
    }
}

/// Whether `cargo bench` runs this (it passes `--bench`), not `cargo test`.
fn benching() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// Whether the part `name` runs: no filter given, or one that `name`
/// contains (criterion's own filter decides for its loop). A filter is an
/// argument that is neither an option nor a number (an option's value).
fn asked(name: &str) -> bool {
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-') && a.parse::<f64>().is_err())
        .collect();
    filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str()))
}

/// At least `jobs` finished jobs of the simulated cluster, with the host
/// and session records around them, as the reader hands them on.
fn records(jobs: usize) -> Vec<Record> {
    let mut sim = Simulation::new(200, 1);
    let mut state = State::new(StateOptions {
        history_limit: 1 << 20,
        stale_after_ms: u64::MAX,
    });
    let mut reader = Reader::new(&mut state);
    let start = 1_800_000_000_000;
    state.scheduler_connected("sched:8765".into(), 44, start);
    let mut out = Vec::with_capacity(jobs + jobs / 10);
    let mut finished = 0;
    while finished < jobs {
        for _ in 0..1_000 {
            let (at, event) = sim.step();
            state.apply(&event.message(0), start + at);
        }
        let more = reader.take(&mut state, usize::MAX).records;
        finished += more.iter().filter(|r| matches!(r, Record::Job(_))).count();
        out.extend(more);
    }
    out
}

fn jobs_in(records: &[Record]) -> usize {
    records
        .iter()
        .filter(|r| matches!(r, Record::Job(_)))
        .count()
}

fn fresh_store(dir: &Path) -> Store {
    let path = dir.join("history.sqlite");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    Store::open(&path).expect("a new database")
}

fn write_all(db: &mut Database, records: &[Record]) {
    for batch in records.chunks(BATCH) {
        db.write(batch).expect("written");
    }
}

fn ingest(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let recs = records(stream_jobs());
    let jobs = jobs_in(&recs);
    let mut group = c.benchmark_group("history");
    group.throughput(Throughput::Elements(jobs as u64));
    group.sample_size(10);
    group.bench_function("ingest", |b| {
        b.iter_batched(
            || Database::from(fresh_store(dir.path())),
            |mut db| write_all(&mut db, &recs),
            BatchSize::PerIteration,
        )
    });
    group.finish();

    // On the CPU clocks: the writing thread's, and the whole process's
    // (which counts any thread the database works on besides it), in
    // `HISTORY_BENCH_TURNS` turns (default 5), each into a new database.
    let turns = std::env::var("HISTORY_BENCH_TURNS")
        .ok()
        .and_then(|n| n.parse().ok())
        .filter(|_| benching())
        .unwrap_or(if benching() { 5 } else { 1 })
        * usize::from(asked("history/ingest"));
    // Each turn also writes the same records through the same code into a
    // database whose `jobs` has no index: SQLite's floor for these rows,
    // beside which the indexes' cost shows.
    let (mut rates, mut floor) = (Vec::new(), Vec::new());
    for turn in 1..=turns {
        for indexed in [true, false] {
            let store = fresh_store(dir.path());
            if !indexed {
                let unindexed = "DROP INDEX jobs_end; DROP INDEX jobs_client; \
                    DROP INDEX jobs_server; DROP INDEX jobs_file;";
                store.connection().execute_batch(unindexed).unwrap();
            }
            let mut db = Database::from(store);
            let (thread, process) = (ThreadTime::now(), ProcessTime::now());
            write_all(&mut db, &recs);
            drop(db);
            let (thread, process) = (
                thread.elapsed().as_secs_f64(),
                process.elapsed().as_secs_f64(),
            );
            let what = if indexed { "" } else { ", jobs unindexed" };
            println!(
                "history/ingest: turn {turn}{what}, {jobs} jobs in {thread:.3} CPU-s of the \
                 writer, {process:.3} of the process: {:.0} jobs per CPU-second of the writer, \
                 {:.0} of the process",
                jobs as f64 / thread,
                jobs as f64 / process
            );
            let rate = jobs as f64 / process;
            if indexed {
                rates.push(rate)
            } else {
                floor.push(rate)
            }
        }
    }
    if rates.is_empty() {
        return;
    }
    for (what, rates) in [("", &mut rates), (", jobs unindexed", &mut floor)] {
        rates.sort_by(f64::total_cmp);
        println!(
            "history/ingest{what}: median {:.0} jobs per CPU-second of the process ({:.0} to {:.0})",
            rates[rates.len() / 2],
            rates[0],
            rates[rates.len() - 1]
        );
    }
}

/// A month, over which the copies of the stream are spread.
const MONTH_MS: u64 = 30 * 86_400_000;

/// The large database of `size_and_queries`: copies of the same stream (a
/// burst of a few minutes each), shifted in time so that they spread over
/// a month.
struct Month {
    recs: Vec<Record>,
    copies: usize,
    /// From one copy to the next.
    step: u64,
    /// One copy's length.
    span: u64,
    jobs: usize,
}

impl Month {
    fn new(wanted: usize) -> Month {
        let recs = records(stream_jobs());
        let per_copy = jobs_in(&recs);
        let span = recs
            .iter()
            .filter_map(|r| match r {
                Record::Job(j) => Some(j.end_ms),
                _ => None,
            })
            .max()
            .unwrap_or(0)
            - 1_800_000_000_000
            + 60_000;
        let copies = wanted.div_ceil(per_copy);
        let step = span.max(MONTH_MS / copies as u64);
        Month {
            recs,
            copies,
            step,
            span,
            jobs: copies * per_copy,
        }
    }

    /// Writes every copy as the writer would, in batches; prints the CPU
    /// of the writing thread (and of `backend`, the server's process, if
    /// any).
    fn fill(&self, db: &mut Database, what: &str, backend: Option<i32>) {
        let (cpu, server) = (ThreadTime::now(), backend.map(process_cpu));
        for copy in 0..self.copies as u64 {
            let shifted: Vec<Record> = self
                .recs
                .iter()
                .cloned()
                .map(|r| shift(r, copy, copy * self.step))
                .collect();
            write_all(db, &shifted);
        }
        let server = backend_cpu(backend.zip(server));
        println!(
            "history/{what}fill: {} jobs in {:.1} CPU-s of the writer{server}",
            self.jobs,
            cpu.elapsed().as_secs_f64()
        );
    }

    /// Works out the details of every build that is over, as the
    /// history's summaries thread does (nothing if a run before did);
    /// prints the CPU of the working thread (and of its server backend).
    fn summarize(&self, at: &Location, what: &str) {
        let reading = Reading::open(at).unwrap();
        let backend = match &reading {
            Reading::Postgres(c, _) => {
                query::Conn::rows(&**c, "SELECT pg_backend_pid()", &[], |r| r.int(0))
                    .unwrap()
                    .pop()
                    .flatten()
                    .and_then(|pid| i32::try_from(pid).ok())
            }
            Reading::Sqlite(..) => None,
        };
        let (cpu, server) = (ThreadTime::now(), backend.map(process_cpu));
        let wall = Instant::now();
        let pass = Summaries::default().catch_up(&reading).unwrap();
        let server = backend_cpu(backend.zip(server));
        println!(
            "history/{what}summaries: {} builds worked out in {:.1} CPU-s of the thread{server}, \
             {:.1} s ({} jobs)",
            pass.written,
            cpu.elapsed().as_secs_f64(),
            wall.elapsed().as_secs_f64(),
            self.jobs
        );
    }

    /// The queries of `icewatch history` and the HTTP API, on a
    /// connection of their own as a request opens it, and on one kept
    /// open.
    fn queries(&self, at: &Location, what: &str) {
        let jobs = self.jobs;
        let timed = |query: &str, run: &dyn Fn(&Reading) -> usize| {
            let (mut cold, mut warm) = (Duration::MAX, Duration::MAX);
            let mut rows = 0;
            let kept = Reading::open_read(at).unwrap();
            for _ in 0..5 {
                let t = Instant::now();
                rows = run(&Reading::open_read(at).unwrap());
                cold = cold.min(t.elapsed());
                let t = Instant::now();
                run(&kept);
                warm = warm.min(t.elapsed());
            }
            println!(
                "history/{what}query {query}: {rows} rows in {cold:?} on a new connection, \
                 {warm:?} on one kept open (best of 5, {jobs} jobs)"
            );
        };
        let last = 1_800_000_000_000 + (self.copies as u64 - 1) * self.step;
        let end = last + self.span;
        let window = last + self.span / 2;
        timed("a 10-minute window", &|db| {
            let f = Filter {
                since_ms: Some(window),
                until_ms: Some(window + 600_000),
                limit: query::MAX_LIMIT,
                ..Filter::default()
            };
            db.jobs(&f).unwrap().len()
        });
        let newest = Filter {
            limit: 1,
            ..Filter::default()
        };
        let host = Reading::open_read(at).unwrap().jobs(&newest).unwrap()[0]
            .server_name
            .clone();
        timed("one host's last day", &|db| {
            let f = Filter {
                since_ms: Some(end.saturating_sub(86_400_000)),
                host: host.clone(),
                limit: query::MAX_LIMIT,
                ..Filter::default()
            };
            db.jobs(&f).unwrap().len()
        });
        // The builds of a day: a page as `history builds` and the API
        // give it, every build of the day, both from the `builds` table;
        // and every build grouped from the day's jobs (the way before the
        // table, and still the way with another --build-gap).
        let day = |limit| Filter {
            since_ms: Some(end.saturating_sub(86_400_000)),
            limit,
            ..Filter::default()
        };
        timed("the builds of a day, a page", &|db| {
            db.builds(&day(query::DEFAULT_LIMIT), 60_000).unwrap().len()
        });
        timed("the builds of a day, all of them", &|db| {
            db.builds(&day(query::MAX_LIMIT), 60_000).unwrap().len()
        });
        timed(
            "the builds of a day, all of them, worked out from their jobs",
            &|db| db.computed_builds(&day(query::MAX_LIMIT)).unwrap().len(),
        );
        // The last day ends with a burst whose builds are still open (the
        // gap has not passed since their last job): worked out at each
        // query. The day before is over.
        let before = Filter {
            since_ms: Some(end.saturating_sub(2 * 86_400_000)),
            until_ms: Some(end.saturating_sub(86_400_000)),
            limit: query::MAX_LIMIT,
            ..Filter::default()
        };
        timed("the builds of the day before, all of them", &|db| {
            db.builds(&before, 60_000).unwrap().len()
        });
        timed(
            "the builds of the day before, worked out from their jobs",
            &|db| db.computed_builds(&before).unwrap().len(),
        );
        timed("the builds of a day, grouped from its jobs", &|db| {
            db.grouped_builds(&day(query::MAX_LIMIT), 60_000)
                .unwrap()
                .len()
        });
    }
}

fn size_and_queries(_: &mut Criterion) {
    if !asked("history/size") && !asked("history/postgres/size") {
        return;
    }
    let wanted: usize = std::env::var("HISTORY_BENCH_JOBS")
        .ok()
        .and_then(|n| n.parse().ok())
        .filter(|_| benching())
        .unwrap_or(if benching() { 1_000_000 } else { 4_000 });
    let month = Month::new(wanted);
    if asked("history/size") {
        sqlite_size_and_queries(&month);
    }
    if asked("history/postgres/size") {
        postgres_size_and_queries(&month);
    }
}

/// Bytes per job and the queries in SQLite.
fn sqlite_size_and_queries(month: &Month) {
    let jobs = month.jobs;
    // HISTORY_BENCH_DIR keeps the database there, and a later run with the
    // same number of jobs queries it again without filling it.
    let temp = tempfile::tempdir().unwrap();
    let dir = std::env::var_os("HISTORY_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| temp.path().to_path_buf());
    let path = dir.join("history.sqlite");
    let filled = query::open_read(&path).is_ok_and(|c| {
        c.query_row("SELECT count(*) FROM jobs", [], |r| r.get::<_, usize>(0))
            .is_ok_and(|n| n == jobs)
    });
    let store = if filled {
        Store::open(&path).unwrap()
    } else {
        let mut db = Database::from(fresh_store(&dir));
        month.fill(&mut db, "", None);
        let Database::Sqlite(store) = db else {
            unreachable!("an SQLite file")
        };
        store
    };
    drop(store);
    let at = Location::File(path.clone());
    month.summarize(&at, "");
    let store = Store::open(&path).unwrap();
    store
        .connection()
        .execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
        .unwrap();
    let bytes = std::fs::metadata(&path).unwrap().len();
    println!(
        "history/size: {jobs} jobs, {bytes} bytes: {:.0} bytes per job, indexes included",
        bytes as f64 / jobs as f64
    );
    drop(store);
    month.queries(&at, "");
}

/// The same in PostgreSQL: a database of its own, or the one named by
/// `HISTORY_BENCH_PGDB`, kept and queried again by a later run with the
/// same number of jobs.
fn postgres_size_and_queries(month: &Month) {
    let Some((mut admin, server)) = postgres_admin() else {
        return;
    };
    let kept = std::env::var("HISTORY_BENCH_PGDB").ok();
    let name = kept
        .clone()
        .unwrap_or_else(|| format!("icewatch_bench_month_{}", std::process::id()));
    let server = server.with_database(&name);
    let at = Location::Postgres(server.clone());
    let filled = server.connect().is_ok_and(|mut c| {
        c.query_one("SELECT count(*) FROM jobs", &[])
            .is_ok_and(|r| r.get::<_, i64>(0) == month.jobs as i64)
    });
    if !filled {
        recreate(&mut admin, &name);
        let mut db = Database::open(&at).expect("the bench database opens");
        let Database::Postgres(pg) = &db else {
            unreachable!("a postgres:// location")
        };
        let backend = writer_backend(pg);
        month.fill(&mut db, "postgres/", Some(backend));
        drop(db);
        // What autovacuum does over a month of writes: the planner's
        // statistics and the visibility map (index-only scans).
        let mut client = server.connect().unwrap();
        client.batch_execute("VACUUM ANALYZE").unwrap();
    }
    month.summarize(&at, "postgres/");
    let mut client = server.connect().unwrap();
    client.batch_execute("VACUUM ANALYZE builds").unwrap();
    // Every table of the history with its indexes and TOAST.
    let bytes: i64 = client
        .query_one(
            "SELECT sum(pg_total_relation_size(c.oid))::int8 FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = current_schema() AND c.relkind = 'r'",
            &[],
        )
        .unwrap()
        .get(0);
    drop(client);
    println!(
        "history/postgres/size: {} jobs, {bytes} bytes: {:.0} bytes per job, indexes included",
        month.jobs,
        bytes as f64 / month.jobs as f64
    );
    month.queries(&at, "postgres/");
    if kept.is_none() {
        drop_database(&mut admin, &name);
    }
}

/// ", N CPU-s of its server backend": what the backend process `pid` took
/// since it had taken `before`; nothing without a backend.
fn backend_cpu(backend: Option<(i32, Duration)>) -> String {
    backend
        .map(|(pid, before)| {
            format!(
                ", {:.1} CPU-s of its server backend",
                process_cpu(pid).saturating_sub(before).as_secs_f64()
            )
        })
        .unwrap_or_default()
}

/// CPU time (user + system) of the process `pid` so far, from
/// `/proc/PID/stat` (in clock ticks of 10 ms).
fn process_cpu(pid: i32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<u64> = after_name
        .split_whitespace()
        .filter_map(|f| f.parse().ok())
        .collect();
    // utime and stime are fields 14 and 15 of stat; after the name, the
    // numbers start at field 4 (field 3, the state, is a letter).
    let ticks = fields.get(10).copied().unwrap_or(0) + fields.get(11).copied().unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

/// The server's backend process of `client`, whose CPU is counted too.
fn backend_pid(client: &mut postgres::Client) -> i32 {
    client
        .query_one("SELECT pg_backend_pid()", &[])
        .unwrap()
        .get(0)
}

/// The server of `ICEWATCH_TEST_POSTGRES` (default the local socket),
/// connected; `None` (said) where it cannot be reached.
fn postgres_admin() -> Option<(postgres::Client, Server)> {
    let url = std::env::var("ICEWATCH_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres:///postgres?host=/var/run/postgresql".to_owned());
    let server = Server::parse(&url).expect("ICEWATCH_TEST_POSTGRES is a URL");
    match server.connect() {
        Ok(c) => Some((c, server)),
        Err(e) => {
            println!("history/postgres: skipped, {url} cannot be reached: {e}");
            None
        }
    }
}

/// A new, empty database `name` (a former one dropped).
fn recreate(admin: &mut postgres::Client, name: &str) {
    drop_database(admin, name);
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .unwrap();
}

fn drop_database(admin: &mut postgres::Client, name: &str) {
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .unwrap();
}

/// The server's backend process of `pg`'s connection: the one connection
/// to its database besides a new one made to ask.
fn writer_backend(pg: &PgStore) -> i32 {
    let mut watch = pg.server().connect().unwrap();
    let others = watch
        .query(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() \
             AND pid <> pg_backend_pid()",
            &[],
        )
        .unwrap();
    others.first().map_or(0, |r| r.get(0))
}

fn postgres_ingest(_: &mut Criterion) {
    if !asked("history/postgres/ingest") {
        return;
    }
    let Some((mut admin, server)) = postgres_admin() else {
        return;
    };
    let name = format!("icewatch_bench_{}", std::process::id());
    recreate(&mut admin, &name);
    let bench = server.with_database(&name);
    let at = Location::Postgres(bench.clone());

    let recs = records(stream_jobs());
    let jobs = jobs_in(&recs);
    let mut store = Database::open(&at).expect("the bench database opens");
    let Database::Postgres(pg) = &store else {
        unreachable!("a postgres:// location")
    };
    let backend = writer_backend(pg);
    let (cpu, server) = (ThreadTime::now(), process_cpu(backend));
    let wall = Instant::now();
    for batch in recs.chunks(BATCH) {
        store.write(batch).expect("written");
    }
    let (spent, wall) = (cpu.elapsed().as_secs_f64(), wall.elapsed());
    let with_server = spent + (process_cpu(backend) - server).as_secs_f64();
    println!(
        "history/postgres/ingest: {jobs} jobs in {wall:?}: {:.0} jobs per CPU-second of the \
         writer, {:.0} of the writer and its server backend together",
        jobs as f64 / spent,
        jobs as f64 / with_server
    );
    drop(store);

    // COPY against INSERT ... unnest, on the same job rows (ids fixed).
    let rows: Vec<&icewatch::history::JobRecord> = recs
        .iter()
        .filter_map(|r| match r {
            Record::Job(j) => Some(j),
            _ => None,
        })
        .collect();
    let mut client = bench.connect().unwrap();
    let backend = backend_pid(&mut client);
    let columns = "session, id, file, state, reason, exit_code, start_ms, end_ms, real_ms";
    let measure =
        |client: &mut postgres::Client, how: &str, run: &dyn Fn(&mut postgres::Client)| {
            client.batch_execute("TRUNCATE jobs").unwrap();
            let (cpu, server) = (ThreadTime::now(), process_cpu(backend));
            run(client);
            let both = cpu.elapsed().as_secs_f64() + (process_cpu(backend) - server).as_secs_f64();
            println!(
                "history/postgres/{how}: {} jobs, {:.0} jobs per CPU-second of client and server",
                rows.len(),
                rows.len() as f64 / both
            );
        };
    measure(&mut client, "copy", &|client| {
        for chunk in rows.chunks(BATCH) {
            let mut tx = client.transaction().unwrap();
            let sink = tx
                .copy_in(&format!("COPY jobs ({columns}) FROM STDIN BINARY"))
                .unwrap();
            let types = [
                Type::INT8,
                Type::INT8,
                Type::INT8,
                Type::TEXT,
                Type::TEXT,
                Type::INT8,
                Type::INT8,
                Type::INT8,
                Type::INT8,
            ];
            let mut copy = BinaryCopyInWriter::new(sink, &types);
            for j in chunk {
                copy.write(&[
                    &1i64,
                    &i64::from(j.id),
                    &1i64,
                    &j.state.name(),
                    &j.reason.name(),
                    &j.exit_code.map(i64::from),
                    &(j.start_ms as i64),
                    &(j.end_ms as i64),
                    &j.stats.map(|s| i64::from(s.real_ms)),
                ])
                .unwrap();
            }
            copy.finish().unwrap();
            tx.commit().unwrap();
        }
    });
    measure(&mut client, "insert-unnest", &|client| {
        for chunk in rows.chunks(BATCH) {
            let column = |f: &dyn Fn(&icewatch::history::JobRecord) -> Option<i64>| {
                chunk.iter().map(|j| f(j)).collect::<Vec<_>>()
            };
            let text = |f: &dyn Fn(&icewatch::history::JobRecord) -> &'static str| {
                chunk.iter().map(|j| f(j)).collect::<Vec<_>>()
            };
            let mut tx = client.transaction().unwrap();
            tx.execute(
                &format!(
                    "INSERT INTO jobs ({columns}) SELECT * FROM unnest($1::int8[], $2::int8[], \
                     $3::int8[], $4::text[], $5::text[], $6::int8[], $7::int8[], $8::int8[], \
                     $9::int8[])"
                ),
                &[
                    &column(&|_| Some(1)),
                    &column(&|j| Some(i64::from(j.id))),
                    &column(&|_| Some(1)),
                    &text(&|j| j.state.name()),
                    &text(&|j| j.reason.name()),
                    &column(&|j| j.exit_code.map(i64::from)),
                    &column(&|j| Some(j.start_ms as i64)),
                    &column(&|j| Some(j.end_ms as i64)),
                    &column(&|j| j.stats.map(|s| i64::from(s.real_ms))),
                ],
            )
            .unwrap();
            tx.commit().unwrap();
        }
    });
    drop(client);
    drop_database(&mut admin, &name);
}

/// `r` of copy `copy`: `offset` ms later, in its own scheduler session.
fn shift(r: Record, copy: u64, offset: u64) -> Record {
    let session = |s: u32| s + copy as u32 * 10;
    match r {
        Record::Job(mut j) => {
            j.session = session(j.session);
            j.start_ms += offset;
            j.end_ms += offset;
            j.submit_ms = j.submit_ms.map(|t| t + offset);
            Record::Job(j)
        }
        Record::Session {
            local,
            scheduler,
            protocol,
            start_ms,
        } => Record::Session {
            local: session(local),
            scheduler,
            protocol,
            start_ms: start_ms + offset,
        },
        Record::SessionEnd { local, end_ms } => Record::SessionEnd {
            local: session(local),
            end_ms: end_ms + offset,
        },
        Record::HostLogin(mut h) => {
            h.session = session(h.session);
            h.login_ms += offset;
            Record::HostLogin(h)
        }
        Record::HostLogout {
            session: s,
            host_id,
            at_ms,
        } => Record::HostLogout {
            session: session(s),
            host_id,
            at_ms: at_ms + offset,
        },
        Record::Load(mut l) => {
            l.at_ms += offset;
            Record::Load(l)
        }
    }
}

criterion_group!(benches, ingest, postgres_ingest, size_and_queries);
criterion_main!(benches);
