//! The history's costs, on finished jobs of the demo's simulated cluster
//! (200 hosts, its projects' file names): how fast [`Store::write`] takes
//! them in batches as the writer commits them, how many bytes a job takes
//! in the database with its indexes, and how long the queries of
//! `icewatch history` and the HTTP API take on a large database.
//!
//! Criterion measures the wall-clock ingest (`history/ingest`); the run
//! also prints, once each: jobs per CPU-second of the writing thread, bytes
//! per job, and the query times on a database of `HISTORY_BENCH_JOBS` jobs
//! (default 1,000,000; the goals in BENCHMARKS.md are for 10,000,000).
//! `cargo test --all-targets` runs it once on a few thousand jobs.
//!
//! Run: `cargo bench --bench history`

use cpu_time::ThreadTime;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use icewatch::history::query::{self, Filter};
use icewatch::history::{Reader, Record, Store};
use icewatch::monitor::{State, StateOptions};
use icewatch::standin::simulation::Simulation;
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
        let more = reader.take(&mut state);
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

fn write_all(store: &mut Store, records: &[Record]) {
    for batch in records.chunks(BATCH) {
        store.write(batch).expect("written");
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
            || fresh_store(dir.path()),
            |mut store| write_all(&mut store, &recs),
            BatchSize::PerIteration,
        )
    });
    group.finish();

    // Once, on the writing thread's CPU clock.
    let mut store = fresh_store(dir.path());
    let cpu = ThreadTime::now();
    write_all(&mut store, &recs);
    let spent = cpu.elapsed().as_secs_f64();
    println!(
        "history/ingest: {jobs} jobs in {:.3} CPU-s of the writer: {:.0} jobs per CPU-second",
        spent,
        jobs as f64 / spent
    );
}

/// A month, over which the copies of the stream are spread.
const MONTH_MS: u64 = 30 * 86_400_000;

fn size_and_queries(_: &mut Criterion) {
    let wanted: usize = std::env::var("HISTORY_BENCH_JOBS")
        .ok()
        .and_then(|n| n.parse().ok())
        .filter(|_| benching())
        .unwrap_or(if benching() { 1_000_000 } else { 4_000 });
    // HISTORY_BENCH_DIR keeps the database there, and a later run with the
    // same number of jobs queries it again without filling it.
    let temp = tempfile::tempdir().unwrap();
    let dir = std::env::var_os("HISTORY_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| temp.path().to_path_buf());
    let recs = records(stream_jobs());
    let per_copy = jobs_in(&recs);
    // Copies of the same stream (a burst of a few minutes each), shifted
    // in time so that they spread over a month.
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
    let jobs = copies * per_copy;
    let path = dir.join("history.sqlite");
    let filled = query::open_read(&path).is_ok_and(|c| {
        c.query_row("SELECT count(*) FROM jobs", [], |r| r.get::<_, usize>(0))
            .is_ok_and(|n| n == jobs)
    });
    let store = if filled {
        Store::open(&path).unwrap()
    } else {
        let mut store = fresh_store(&dir);
        let cpu = ThreadTime::now();
        for copy in 0..copies as u64 {
            let shifted: Vec<Record> = recs
                .iter()
                .cloned()
                .map(|r| shift(r, copy, copy * step))
                .collect();
            write_all(&mut store, &shifted);
        }
        println!(
            "history/fill: {jobs} jobs in {:.1} CPU-s of the writer",
            cpu.elapsed().as_secs_f64()
        );
        store
    };
    let conn = store.connection();
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
        .unwrap();
    let bytes = std::fs::metadata(&path).unwrap().len();
    println!(
        "history/size: {jobs} jobs, {bytes} bytes: {:.0} bytes per job, indexes included",
        bytes as f64 / jobs as f64
    );
    // The queries of `icewatch history` and the HTTP API, on a connection
    // of their own as a request opens it, and on one kept open.
    let last = 1_800_000_000_000 + (copies as u64 - 1) * step;
    let end = last + span;
    let timed = |what: &str, run: &dyn Fn(&rusqlite::Connection) -> usize| {
        let (mut cold, mut warm) = (Duration::MAX, Duration::MAX);
        let mut rows = 0;
        let kept = query::open_read(&path).unwrap();
        for _ in 0..5 {
            let t = Instant::now();
            rows = run(&query::open_read(&path).unwrap());
            cold = cold.min(t.elapsed());
            let t = Instant::now();
            run(&kept);
            warm = warm.min(t.elapsed());
        }
        println!(
            "history/query {what}: {rows} rows in {cold:?} on a new connection, \
             {warm:?} on one kept open (best of 5, {jobs} jobs)"
        );
    };
    timed("a 10-minute window", &|conn| {
        let f = Filter {
            since_ms: Some(last + span / 2),
            until_ms: Some(last + span / 2 + 600_000),
            limit: query::MAX_LIMIT,
            ..Filter::default()
        };
        query::jobs(conn, &f).unwrap().len()
    });
    let newest = Filter {
        limit: 1,
        ..Filter::default()
    };
    let host = query::jobs(conn, &newest).unwrap()[0].server_name.clone();
    timed("one host's last day", &|conn| {
        let f = Filter {
            since_ms: Some(end.saturating_sub(86_400_000)),
            host: host.clone(),
            limit: query::MAX_LIMIT,
            ..Filter::default()
        };
        query::jobs(conn, &f).unwrap().len()
    });
    timed("the builds of a day", &|conn| {
        let f = Filter {
            since_ms: Some(end.saturating_sub(86_400_000)),
            limit: query::MAX_LIMIT,
            ..Filter::default()
        };
        query::builds(conn, &f, 60_000).unwrap().len()
    });
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

criterion_group!(benches, ingest, size_and_queries);
criterion_main!(benches);
