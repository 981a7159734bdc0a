//! The load harness: how much CPU and memory `icewatch monitor` spends on a
//! fast scheduler, beside a bare baseline measured in the same run.
//!
//! ```text
//! cargo build --release && cargo run --release --example load -- e2e
//! cargo run --release --example load -- e2e --runs 5 --messages 1000000 --hosts 5000
//! ```
//!
//! `e2e`: a fake scheduler on 127.0.0.1 (port 0) pre-encodes a stream of
//! about a million messages (see `stream.rs`) and writes it as fast as the
//! socket takes it to a child process, then holds the connection open. Three
//! children take turns, once per run:
//!
//! - `target/release/icewatch monitor 127.0.0.1 PORT --listen 127.0.0.1:0
//!   --history 100000`: the real monitor, page server running, state kept;
//! - `target/release/examples/bare_reader PORT COUNT`: frames and decodes
//!   only, keeps nothing;
//!
//! and a third, the same monitor keeping its history (`--db` a fresh file
//! in the temporary folder, the other one `--db none`): the history's cost
//! end to end, the writer's commits included. With `--db URL` (a
//! PostgreSQL database, e.g. `postgres:///icewatch_e2e?host=/var/run/postgresql`,
//! dropped and created again before each run) a fourth keeps its history
//! there; its cost counts the CPU of the server's backend processes of
//! that database too (from `pg_stat_activity` and `/proc/PID/stat`).
//! Both count the jobs that reached the database.
//!
//! For each it reports the CPU time (user + sys, from `/proc/PID/stat`,
//! and the precise on-CPU time of all its threads from
//! `/proc/PID/task/*/schedstat`) spent from its login to the last message,
//! and its peak RSS (`VmHWM`). icewatch is done when the kernel holds no
//! unread byte of the stream on either side and its CPU time stands still;
//! its `/api/v1/snapshot` totals are then checked against the stream's.
//!
//! `apply`: the same stream decoded and applied to a `State` in process, no
//! socket, each run in a fresh child: what the state costs a message, and
//! the page faults of its first touches (see `inproc.rs`).
//!
//! `clients`: the resident memory of `icewatch demo` before, with and after
//! 2,000 WebSocket clients (see `clients.rs`).
//!
//! `top`: the CPU of `icewatch top` in a terminal, idle and at `--rate`
//! messages per second from 500 hosts (see `top.rs`).
//!
//! `watch --page ADDR`: `--clients` WebSocket readers (50 by default) on an
//! icewatch already running, for `--seconds`: how long a new job takes from
//! icewatch to them (see `watch.rs`; scripts/loadgen-scale.sh runs it on a
//! real scheduler).
//!
//! `--icewatch PATH` measures another build of icewatch than the one beside
//! the harness; `--baseline PATH` (modes `fanout` and `clients`, may be
//! repeated) runs that build and this one in turns, in the order given in
//! odd runs and the other way round in even ones, and summarises each:
//!
//! ```text
//! git worktree add /tmp/old 4de6b77 && (cd /tmp/old/web && npm ci) && (cd /tmp/old && cargo build --release)
//! target/release/examples/load fanout --runs 6 --baseline /tmp/old/target/release/icewatch
//! ```

mod clients;
mod fanout;
mod inproc;
mod soak;
mod stream;
mod top;
mod watch;

use anyhow::{bail, ensure, Context, Result};
use icewatch::history::Server;
use icewatch::protocol::handshake::handshake_blocking;
use icewatch::protocol::PROTOCOL_VERSION;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

struct Opts {
    runs: usize,
    messages: u64,
    hosts: u32,
    history: u64,
    clients: usize,
    rate: u64,
    seconds: u64,
    every: u64,
    /// The icewatch measured: `--icewatch`, else the one beside the harness.
    icewatch: Option<PathBuf>,
    /// Other icewatch builds run in turns with it: `--baseline` (repeated).
    baselines: Vec<PathBuf>,
    /// The page of a running icewatch: `--page` (mode `watch`).
    page: Option<SocketAddr>,
    /// A PostgreSQL database for a run with its history there: `--db`
    /// (mode `e2e`).
    db: Option<String>,
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let what = args.next().unwrap_or_default();
    let mut opts = Opts {
        runs: 3,
        messages: 1_000_000,
        hosts: 5_000,
        history: 100_000,
        clients: 200,
        rate: 10_000,
        seconds: 10,
        every: 60,
        icewatch: None,
        baselines: Vec::new(),
        page: None,
        db: None,
    };
    match what.as_str() {
        "fanout" => opts.hosts = 1_000,
        "clients" => opts.clients = 2_000,
        "soak" => (opts.hosts, opts.rate, opts.clients, opts.seconds) = (200, 5_000, 4, 3_600),
        "top" => (opts.hosts, opts.seconds) = (500, 20),
        "watch" => (opts.clients, opts.seconds) = (50, 60),
        _ => {}
    }
    while let Some(flag) = args.next() {
        let value = args.next().context("a flag without its value")?;
        match flag.as_str() {
            "--runs" => opts.runs = value.parse()?,
            "--messages" => opts.messages = value.parse()?,
            "--hosts" => opts.hosts = value.parse()?,
            "--history" => opts.history = value.parse()?,
            "--clients" => opts.clients = value.parse()?,
            "--rate" => opts.rate = value.parse()?,
            "--seconds" => opts.seconds = value.parse()?,
            "--every" => opts.every = value.parse()?,
            "--icewatch" => opts.icewatch = Some(PathBuf::from(value)),
            "--baseline" => opts.baselines.push(PathBuf::from(value)),
            "--page" => opts.page = Some(value.parse().context("--page takes IP:PORT")?),
            "--db" => {
                ensure!(Server::is_url(&value), "--db takes a postgres:// URL");
                opts.db = Some(value);
            }
            _ => bail!("unknown flag {flag}"),
        }
    }
    match what.as_str() {
        "e2e" => e2e(&opts),
        "apply" => apply_runs(&opts),
        "apply-once" => inproc::once(opts.hosts, opts.messages, opts.history),
        "fanout" => fanout_runs(&opts),
        "clients" => clients_runs(&opts),
        "soak" => soak::run(
            &opts.icewatch()?,
            &soak::Soak {
                hosts: opts.hosts,
                rate: opts.rate,
                clients: opts.clients,
                seconds: opts.seconds,
                every: opts.every,
                history: opts.history,
            },
        ),
        "top" => top::run(
            &opts.icewatch()?,
            &top::TopLoad {
                hosts: opts.hosts,
                rate: opts.rate,
                seconds: opts.seconds,
                runs: opts.runs,
            },
        ),
        "watch" => watch_clients(&opts),
        _ => bail!(
            "usage: load e2e [--runs N] [--messages N] [--hosts N] [--history N] [--db postgres://...]\n       \
             load apply [--runs N] [--messages N] [--hosts N] [--history N]\n       \
             load fanout [--runs N] [--hosts N] [--clients N] [--rate N] [--seconds N] [--baseline PATH]\n       \
             load clients [--runs N] [--clients N] [--baseline PATH]\n       \
             (every mode but apply: [--icewatch PATH])\n       \
             load soak [--seconds N] [--every N] [--rate N] [--hosts N] [--clients N] [--history N]\n       \
             load top [--runs N] [--hosts N] [--rate N] [--seconds N]\n       \
             load watch --page IP:PORT [--clients N] [--seconds N]"
        ),
    }
}

fn watch_clients(opts: &Opts) -> Result<()> {
    let page = opts
        .page
        .context("watch needs --page IP:PORT of a running icewatch")?;
    let w = watch::run(page, opts.clients, opts.seconds)?;
    println!(
        "{} WebSocket clients for {} s on {page}: job latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms \
         ({} samples, {} messages, {} resyncs), {}",
        w.clients,
        opts.seconds,
        w.p50_ms,
        w.p99_ms,
        w.max_ms,
        w.samples,
        w.messages,
        w.resyncs,
        load_average()
    );
    Ok(())
}

/// What one child spent.
#[derive(Clone, Copy, Debug)]
struct Cost {
    /// user + sys from /proc/PID/stat, seconds (10 ms ticks).
    cpu_stat: f64,
    /// on-CPU time of every thread from schedstat, seconds.
    cpu_sched: f64,
    /// VmHWM, KiB.
    peak_kib: u64,
    /// Minor page faults (first touches of memory), from /proc/PID/stat.
    faults: u64,
    /// From the login to the last message consumed.
    wall: Duration,
    /// Records the history dropped (`database.lost` of the snapshot).
    lost: u64,
    /// CPU of the PostgreSQL server's backends of the history's
    /// connections, seconds (10 ms ticks).
    backends: f64,
    /// CPU of the server's other processes on the history's database
    /// (autovacuum workers) seen at the end, seconds.
    autovacuum: f64,
}

impl Opts {
    /// The icewatch binary measured.
    fn icewatch(&self) -> Result<PathBuf> {
        match &self.icewatch {
            Some(path) => {
                ensure!(path.exists(), "{} is missing", path.display());
                Ok(path.clone())
            }
            None => built("icewatch"),
        }
    }

    /// The binaries to run in turns, named: the baselines (if any) and the
    /// one measured.
    fn contenders(&self) -> Result<Vec<(String, PathBuf)>> {
        let mut named = Vec::new();
        for path in &self.baselines {
            ensure!(path.exists(), "{} is missing", path.display());
            named.push((format!("baseline {}", path.display()), path.clone()));
        }
        let icewatch = self.icewatch()?;
        named.push((icewatch.display().to_string(), icewatch));
        Ok(named)
    }
}

/// Runs `measure` on each contender `runs` times, in turns (in order in
/// odd runs, the other way round in even ones), printing each result
/// with `show`; returns each contender's results.
fn in_turns<T>(
    contenders: &[(String, PathBuf)],
    runs: usize,
    mut measure: impl FnMut(&Path) -> Result<T>,
    show: impl Fn(&T) -> String,
) -> Result<Vec<Vec<T>>> {
    let mut results: Vec<Vec<T>> = contenders.iter().map(|_| Vec::new()).collect();
    for run in 1..=runs {
        let mut order: Vec<usize> = (0..contenders.len()).collect();
        if run % 2 == 0 {
            order.reverse();
        }
        for i in order {
            let (name, bin) = &contenders[i];
            let r = measure(bin)?;
            let label = if contenders.len() > 1 {
                format!("{name}, run {run}")
            } else {
                format!("run {run}")
            };
            println!("{label}: {}", show(&r));
            results[i].push(r);
        }
    }
    Ok(results)
}

fn e2e(opts: &Opts) -> Result<()> {
    let icewatch = opts.icewatch()?;
    let reader = built("examples/bare_reader")?;
    let built = Instant::now();
    let stream = stream::build(opts.hosts, opts.messages, PROTOCOL_VERSION);
    println!(
        "stream: {} messages, {:.1} MiB, {} hosts, {} remote jobs ({} failed), {} local jobs; built in {:.2?}",
        stream.messages,
        stream.bytes.len() as f64 / 1048576.0,
        opts.hosts,
        stream.finished + stream.failed,
        stream.failed,
        stream.local_finished,
        built.elapsed()
    );
    println!("machine: {} cores, {}", cores(), cpu_model());
    let stream = Arc::new(stream);
    let mut rows = Vec::new();
    let mut postgres_rows = Vec::new();
    // Each run's history starts empty, as a new installation's.
    let db_dir = std::env::temp_dir().join(format!("icewatch-load-{}", std::process::id()));
    std::fs::create_dir_all(&db_dir)?;
    let db = db_dir.join("history.sqlite");
    let db_arg = db.to_str().context("a UTF-8 temporary path")?;
    let pg = opts.db.as_deref().map(Postgres::new).transpose()?;
    for run in 1..=opts.runs {
        let base = run_reader(&reader, &stream)?;
        let ice = run_icewatch(&icewatch, &stream, opts.history, "none")?;
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{db_arg}{suffix}"));
        }
        let kept = run_icewatch(&icewatch, &stream, opts.history, db_arg)?;
        println!(
            "run {run}: bare reader cpu {:.3} s (stat {:.2} s) peak {:.1} MiB faults {} in {:.2?} | \
             icewatch cpu {:.3} s (stat {:.2} s) peak {:.1} MiB faults {} in {:.2?} | ratio {:.2}x",
            base.cpu_sched,
            base.cpu_stat,
            base.peak_kib as f64 / 1024.0,
            base.faults,
            base.wall,
            ice.cpu_sched,
            ice.cpu_stat,
            ice.peak_kib as f64 / 1024.0,
            ice.faults,
            ice.wall,
            ice.cpu_sched / base.cpu_sched
        );
        let written =
            rusqlite::Connection::open(&db)?
                .query_row("SELECT count(*) FROM jobs", [], |r| r.get::<_, u64>(0))?;
        let jobs = stream.finished + stream.failed + stream.local_finished;
        println!(
            "run {run}: icewatch with history cpu {:.3} s peak {:.1} MiB in {:.2?} | \
             ratio to --db none {:.2}x | {written} of {jobs} jobs in the database, {} records lost",
            kept.cpu_sched,
            kept.peak_kib as f64 / 1024.0,
            kept.wall,
            kept.cpu_sched / ice.cpu_sched,
            kept.lost
        );
        if let Some(pg) = &pg {
            pg.recreate()?;
            let cost = run_icewatch(&icewatch, &stream, opts.history, &pg.url)?;
            let written = pg.jobs()?;
            println!(
                "run {run}: icewatch with history in PostgreSQL cpu {:.3} s + its backends {:.2} s \
                 (autovacuum seen {:.2} s) peak {:.1} MiB in {:.2?} | ratio to --db none {:.2}x, \
                 with the backends {:.2}x | {written} of {jobs} jobs in the database, {} records lost",
                cost.cpu_sched,
                cost.backends,
                cost.autovacuum,
                cost.peak_kib as f64 / 1024.0,
                cost.wall,
                cost.cpu_sched / ice.cpu_sched,
                (cost.cpu_sched + cost.backends) / ice.cpu_sched,
                cost.lost
            );
            postgres_rows.push(cost);
        }
        rows.push((base, ice, kept));
    }
    let _ = std::fs::remove_dir_all(&db_dir);
    if let Some(pg) = &pg {
        pg.drop_database()?;
    }
    summarise(
        &rows,
        3,
        &[
            ("bare reader cpu s", |r| r.0.cpu_sched),
            ("icewatch cpu s", |r| r.1.cpu_sched),
            ("ratio icewatch/bare", |r| r.1.cpu_sched / r.0.cpu_sched),
            ("icewatch with history cpu s", |r| r.2.cpu_sched),
            ("ratio history/--db none", |r| r.2.cpu_sched / r.1.cpu_sched),
            ("bare reader peak MiB", |r| r.0.peak_kib as f64 / 1024.0),
            ("icewatch peak MiB", |r| r.1.peak_kib as f64 / 1024.0),
            ("icewatch with history peak MiB", |r| {
                r.2.peak_kib as f64 / 1024.0
            }),
        ],
    );
    if !postgres_rows.is_empty() {
        let with_none: Vec<_> = postgres_rows
            .iter()
            .zip(&rows)
            .map(|(p, r)| (*p, r.1))
            .collect();
        summarise(
            &with_none,
            3,
            &[
                ("icewatch with PostgreSQL cpu s", |r| r.0.cpu_sched),
                ("its backends cpu s", |r| r.0.backends),
                ("autovacuum seen cpu s", |r| r.0.autovacuum),
                ("ratio PostgreSQL/--db none", |r| {
                    r.0.cpu_sched / r.1.cpu_sched
                }),
                ("ratio PostgreSQL with backends/--db none", |r| {
                    (r.0.cpu_sched + r.0.backends) / r.1.cpu_sched
                }),
                ("icewatch with PostgreSQL peak MiB", |r| {
                    r.0.peak_kib as f64 / 1024.0
                }),
            ],
        );
    }
    Ok(())
}

/// The PostgreSQL database of the e2e runs: dropped and made again empty
/// before each run, dropped at the end.
struct Postgres {
    url: String,
    server: Server,
}

impl Postgres {
    fn new(url: &str) -> Result<Postgres> {
        let server = Server::parse(url).map_err(anyhow::Error::msg)?;
        let name = server.database();
        ensure!(
            !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "--db {server}: the database is dropped and created at each run: name it with \
             letters, digits and _ only"
        );
        Ok(Postgres {
            url: url.to_owned(),
            server,
        })
    }

    /// Runs `sql` on the server's `postgres` database.
    fn admin(&self, sql: &str) -> Result<()> {
        let admin = self.server.with_database("postgres");
        let mut client = admin.connect().map_err(|e| admin.error(e))?;
        client.batch_execute(sql)?;
        Ok(())
    }

    fn drop_database(&self) -> Result<()> {
        let name = self.server.database();
        self.admin(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
    }

    fn recreate(&self) -> Result<()> {
        self.drop_database()?;
        self.admin(&format!("CREATE DATABASE {}", self.server.database()))
    }

    /// The jobs in the database.
    fn jobs(&self) -> Result<u64> {
        let mut client = self.server.connect().map_err(|e| self.server.error(e))?;
        let n: i64 = client.query_one("SELECT count(*) FROM jobs", &[])?.get(0);
        Ok(u64::try_from(n)?)
    }
}

/// The server's processes on a database (but the one asking), each with
/// whether it serves a client (else an autovacuum worker) and its CPU so
/// far (user + sys ticks of /proc/PID/stat).
fn backends(client: &mut postgres::Client) -> Result<HashMap<i32, (bool, u64)>> {
    let rows = client.query(
        "SELECT pid, backend_type = 'client backend' FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
        &[],
    )?;
    let mut cpu_of = HashMap::new();
    for row in rows {
        let pid: i32 = row.get(0);
        // One that has gone since is not counted.
        if let Ok(pid_u32) = u32::try_from(pid) {
            if let Ok((ticks, _, _)) = cpu(pid_u32) {
                cpu_of.insert(pid, (row.get(1), ticks));
            }
        }
    }
    Ok(cpu_of)
}

fn apply_runs(opts: &Opts) -> Result<()> {
    println!(
        "apply in process: {} messages, {} hosts, history {}; machine: {} cores, {}",
        opts.messages,
        opts.hosts,
        opts.history,
        cores(),
        cpu_model()
    );
    let mut rows = Vec::new();
    for run in 1..=opts.runs {
        let a = inproc::run(opts.hosts, opts.messages, opts.history)?;
        println!(
            "run {run}: decode + apply {:.1} ns/message, decode alone {:.1} ns/message, \
             {} page faults",
            a.ns_per_msg, a.decode_ns_per_msg, a.faults
        );
        rows.push(a);
    }
    summarise(
        &rows,
        1,
        &[
            ("decode + apply ns/message", |a| a.ns_per_msg),
            ("decode alone ns/message", |a| a.decode_ns_per_msg),
            ("page faults", |a| a.faults as f64),
        ],
    );
    Ok(())
}

fn fanout_runs(opts: &Opts) -> Result<()> {
    let contenders = opts.contenders()?;
    println!(
        "fanout: {} clients, {} events/s for {} s, {} hosts; machine: {} cores, {}",
        opts.clients,
        opts.rate,
        opts.seconds,
        opts.hosts,
        cores(),
        cpu_model()
    );
    let results = in_turns(
        &contenders,
        opts.runs,
        |bin| fanout::run(bin, opts.hosts, opts.clients, opts.rate, opts.seconds),
        |f| {
            format!(
                "latency p50 {:.1} ms p99 {:.1} ms max {:.1} ms ({} samples) | \
                 icewatch {:.3} cores, harness {:.3} cores | {} events, {} diffs | \
                 bytes/event/client: diff {:.1}; \
                 full lists per diff {:.1} ({:.1}x), full lists per change {:.0} ({:.0}x)",
                f.p50_ms,
                f.p99_ms,
                f.max_ms,
                f.samples,
                f.cpu_cores,
                f.harness_cores,
                f.events,
                f.diffs,
                f.diff_bytes_per_event,
                f.full_bytes_per_event,
                f.full_bytes_per_event / f.diff_bytes_per_event,
                f.every_change_bytes_per_event,
                f.every_change_bytes_per_event / f.diff_bytes_per_event
            )
        },
    )?;
    for ((name, _), rows) in contenders.iter().zip(&results) {
        println!("{name}:");
        summarise(
            rows,
            2,
            &[
                ("p50 ms", |f: &fanout::Fanout| f.p50_ms),
                ("p99 ms", |f| f.p99_ms),
                ("icewatch cores", |f| f.cpu_cores),
                ("harness cores", |f| f.harness_cores),
                ("diff bytes/event/client", |f| f.diff_bytes_per_event),
                ("full lists per diff bytes/event/client", |f| {
                    f.full_bytes_per_event
                }),
                ("full lists per diff / diff", |f| {
                    f.full_bytes_per_event / f.diff_bytes_per_event
                }),
                ("full lists per change bytes/event/client", |f| {
                    f.every_change_bytes_per_event
                }),
                ("full lists per change / diff", |f| {
                    f.every_change_bytes_per_event / f.diff_bytes_per_event
                }),
            ],
        );
    }
    Ok(())
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn clients_runs(opts: &Opts) -> Result<()> {
    let contenders = opts.contenders()?;
    println!(
        "clients: {} WebSocket clients on icewatch demo; machine: {} cores, {}",
        opts.clients,
        cores(),
        cpu_model()
    );
    let results = in_turns(
        &contenders,
        opts.runs,
        |bin| clients::run(bin, opts.clients),
        |c| {
            format!(
                "RSS before {:.1} MiB, with {} clients {:.1} MiB, after {:.1} MiB ({:.1} s), \
                 with {} new clients {:.1} MiB, after {:.1} MiB ({:.1} s) (peak {:.1} MiB) | \
                 {:.1} KiB per client, {:+.1} MiB kept after they left",
                mib(c.before_kib),
                c.clients,
                mib(c.with_kib),
                mib(c.after_kib),
                c.after_secs,
                c.clients,
                mib(c.again_kib),
                mib(c.after_again_kib),
                c.after_again_secs,
                mib(c.peak_kib),
                c.per_client_kib(),
                c.kept_kib() as f64 / 1024.0
            )
        },
    )?;
    for ((name, _), rows) in contenders.iter().zip(&results) {
        println!("{name}:");
        summarise(
            rows,
            1,
            &[
                ("RSS before MiB", |c: &clients::Clients| mib(c.before_kib)),
                ("RSS with clients MiB", |c| mib(c.with_kib)),
                ("RSS after MiB", |c| mib(c.after_kib)),
                ("s for RSS to settle after", |c| c.after_secs),
                ("RSS with new clients MiB", |c| mib(c.again_kib)),
                ("RSS after them MiB", |c| mib(c.after_again_kib)),
                ("s for RSS to settle after them", |c| c.after_again_secs),
                ("KiB per client", |c| c.per_client_kib()),
                ("MiB kept after", |c| c.kept_kib() as f64 / 1024.0),
            ],
        );
    }
    Ok(())
}

/// A named figure taken from one run's results.
type Figure<'a, T> = (&'a str, fn(&T) -> f64);

/// Prints each figure's median, minimum and maximum over the runs, with
/// `decimals` places.
fn summarise<T>(rows: &[T], decimals: usize, figures: &[Figure<'_, T>]) {
    for (name, figure) in figures {
        let mut v: Vec<f64> = rows.iter().map(figure).collect();
        v.sort_by(f64::total_cmp);
        println!(
            "{name}: median {:.decimals$}, min {:.decimals$}, max {:.decimals$} (n={})",
            v[v.len() / 2],
            v[0],
            v[v.len() - 1],
            v.len()
        );
    }
}

/// Starts `icewatch ARGS` with its stdout piped for [`page_addr`] and its
/// stderr dropped.
fn spawn_icewatch<S: AsRef<std::ffi::OsStr>>(bin: &Path, args: &[S]) -> Result<Child> {
    Ok(Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?)
}

/// Whether `bin monitor` takes `--db` (builds from before the history do
/// not, and keep none): so that older builds run in turns as baselines.
fn monitor_takes_db(bin: &Path) -> bool {
    Command::new(bin)
        .args(["monitor", "--help"])
        .stderr(Stdio::null())
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).contains("--db"))
}

/// A binary built beside this harness, in target/release.
fn built(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    // target/release/examples/load -> target/release
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .context("where is target/release?")?
        .join(name);
    ensure!(
        bin.exists(),
        "{} is missing: run `cargo build --release --examples --bins` first",
        bin.display()
    );
    Ok(bin)
}

/// The page's address, from the first line `icewatch` prints; the rest of
/// its output is drained so that it never blocks on a full pipe.
fn page_addr(child: &mut Child) -> Result<SocketAddr> {
    let mut out = BufReader::new(child.stdout.take().context("stdout")?);
    let mut line = String::new();
    out.read_line(&mut line)?;
    thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    line.split("http://")
        .nth(1)
        .and_then(|s| s.split('/').next())
        .with_context(|| format!("no URL in {line:?}"))?
        .parse()
        .map_err(Into::into)
}

/// A fake scheduler: every connection that logs in gets the whole stream;
/// the connection is then handed back (still open) with the time its
/// writing started and ended. Connections that close early (a check
/// connection) are dropped.
type Served = (TcpStream, Instant, (u64, u64, u64));

fn fake_scheduler(
    stream: Arc<stream::Stream>,
    pid: Arc<OnceLock<u32>>,
) -> Result<(SocketAddr, mpsc::Receiver<Served>)> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let _ = conn.set_nodelay(true);
            if handshake_blocking(&mut conn, PROTOCOL_VERSION).is_err() {
                continue;
            }
            let mut login = [0u8; 8];
            if conn.read_exact(&mut login).is_err() {
                continue;
            }
            let before = pid.get().and_then(|&p| cpu(p).ok()).unwrap_or((0, 0, 0));
            let started = Instant::now();
            if conn.write_all(&stream.bytes).is_err() {
                continue;
            }
            if tx.send((conn, started, before)).is_err() {
                return;
            }
        }
    });
    Ok((addr, rx))
}

fn run_reader(bin: &Path, stream: &Arc<stream::Stream>) -> Result<Cost> {
    let child_pid = Arc::new(OnceLock::new());
    let (addr, done) = fake_scheduler(stream.clone(), child_pid.clone())?;
    let mut child = Command::new(bin)
        .args([addr.port().to_string(), stream.messages.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let pid = child.id();
    let _ = child_pid.set(pid);
    let mut out = BufReader::new(child.stdout.take().context("stdout")?);
    let mut line = String::new();
    out.read_line(&mut line)?;
    let (_conn, started, before) = done.recv_timeout(Duration::from_secs(60))?;
    ensure!(
        line.trim() == format!("done {} invalid 0", stream.messages),
        "the bare reader said {line:?}"
    );
    let cost = sample(pid, started, before)?;
    stop(child);
    Ok(cost)
}

/// `icewatch monitor` on `stream`, keeping its history in `db` (a path, a
/// `postgres://` URL or "none").
fn run_icewatch(bin: &Path, stream: &Arc<stream::Stream>, history: u64, db: &str) -> Result<Cost> {
    let child_pid = Arc::new(OnceLock::new());
    let (addr, done) = fake_scheduler(stream.clone(), child_pid.clone())?;
    let mut child = spawn_icewatch(
        bin,
        &[
            "monitor",
            "127.0.0.1",
            &addr.port().to_string(),
            "--listen",
            "127.0.0.1:0",
            "--db",
            db,
            "--history",
            &history.to_string(),
        ],
    )?;
    let pid = child.id();
    let _ = child_pid.set(pid);
    let page = page_addr(&mut child)?;
    // The history's backends once it has opened it (a backend that comes
    // later counts whole).
    let mut pg = if Server::is_url(db) {
        let server = Server::parse(db).map_err(anyhow::Error::msg)?;
        let mut client = server.connect().map_err(|e| server.error(e))?;
        let before = backends(&mut client)?;
        Some((client, before))
    } else {
        None
    };
    let (conn, started, before) = done.recv_timeout(Duration::from_secs(120))?;
    let sched_port = addr.port();
    let child_port = conn.peer_addr()?.port();
    // Everything written is read once neither side's queue holds a byte.
    while queued(sched_port, child_port)? > 0 {
        thread::sleep(Duration::from_millis(5));
    }
    // Then the last batch is applied once the CPU time stands still; with
    // a history, once nothing waits for the database either, and the
    // CPU has stood still long enough for the builds still open to be
    // worked out (the history does that once the writer has paused for
    // `summaries::QUIET`): their cost, and their memory, count. Its
    // threads wake to look every 250 ms: still is under 1 ms of CPU in 20.
    let (still_for, idle_ns) = if db == "none" {
        (5, 0)
    } else {
        let quiet = icewatch::history::summaries::QUIET.as_millis();
        (u32::try_from(quiet / 20 + 50)?, 1_000_000)
    };
    let mut last = cpu(pid)?.1;
    let mut still = 0;
    while still < still_for {
        thread::sleep(Duration::from_millis(20));
        let now = cpu(pid)?.1;
        still = if now - last <= idle_ns { still + 1 } else { 0 };
        last = now;
        if still == still_for && db != "none" {
            let snap: serde_json::Value =
                serde_json::from_str(&http_get(page, "/api/v1/snapshot")?)?;
            if snap["database"]["held"].as_u64() != Some(0) {
                still = 0;
            }
        }
    }
    let mut cost = sample(pid, started, before)?;
    if let Some((client, before)) = &mut pg {
        for (pid, (serves, now)) in backends(client)? {
            let since = before.get(&pid).map_or(0, |b| b.1);
            let seconds = now.saturating_sub(since) as f64 / 100.0;
            if serves {
                cost.backends += seconds;
            } else {
                cost.autovacuum += seconds;
            }
        }
    }
    let snap: serde_json::Value = serde_json::from_str(&http_get(page, "/api/v1/snapshot")?)?;
    cost.lost = snap["database"]["lost"].as_u64().unwrap_or(0);
    let t = &snap["totals"];
    let got = (
        t["jobs_finished"].as_u64(),
        t["jobs_failed"].as_u64(),
        t["local_jobs_finished"].as_u64(),
        t["hosts_online"].as_u64(),
    );
    let want = (
        Some(stream.finished),
        Some(stream.failed),
        Some(stream.local_finished),
    );
    ensure!(
        (got.0, got.1, got.2) == want,
        "icewatch counted {got:?}, the stream holds {want:?}"
    );
    drop(conn);
    stop(child);
    Ok(cost)
}

/// Bytes of the stream still in the kernel: the scheduler's send queue
/// plus the child's receive queue, from /proc/net/tcp.
fn queued(sched_port: u16, child_port: u16) -> Result<u64> {
    let table = std::fs::read_to_string("/proc/net/tcp")?;
    let mut total = 0;
    let mut seen = 0;
    for line in table.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let port = |a: &str| u16::from_str_radix(a.rsplit(':').next().unwrap_or(""), 16).ok();
        let (Some(local), Some(remote)) = (port(f[1]), port(f[2])) else {
            continue;
        };
        let Some((tx, rx)) = f[4].split_once(':') else {
            continue;
        };
        if (local, remote) == (sched_port, child_port) {
            total += u64::from_str_radix(tx, 16)?;
            seen += 1;
        } else if (local, remote) == (child_port, sched_port) {
            total += u64::from_str_radix(rx, 16)?;
            seen += 1;
        }
    }
    ensure!(seen == 2, "the stream's sockets are not in /proc/net/tcp");
    Ok(total)
}

/// (user + sys ticks and minor faults from /proc/PID/stat, schedstat ns
/// of every thread).
fn cpu(pid: u32) -> Result<(u64, u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = stat.rsplit_once(')').context("stat")?.1;
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields 10, 14 and 15 of stat; `after` starts at field 3.
    let faults = f[7].parse::<u64>()?;
    let ticks = f[11].parse::<u64>()? + f[12].parse::<u64>()?;
    let mut ns = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let s = std::fs::read_to_string(task?.path().join("schedstat"))?;
        ns += s
            .split_whitespace()
            .next()
            .context("schedstat")?
            .parse::<u64>()?;
    }
    Ok((ticks, ns, faults))
}

/// A `/proc/PID/status` field in KiB (`VmHWM:`, `VmRSS:`).
fn status_kib(pid: u32, field: &str) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .with_context(|| format!("no {field}"))?
        .parse()
        .map_err(Into::into)
}

/// What `pid` spent since `before` (its CPU at login).
fn sample(pid: u32, started: Instant, before: (u64, u64, u64)) -> Result<Cost> {
    let (ticks, ns, faults) = cpu(pid)?;
    let ticks = ticks.saturating_sub(before.0);
    Ok(Cost {
        faults: faults.saturating_sub(before.2),
        cpu_stat: ticks as f64 / 100.0,
        cpu_sched: ns.saturating_sub(before.1) as f64 / 1e9,
        peak_kib: status_kib(pid, "VmHWM:")?,
        wall: started.elapsed(),
        lost: 0,
        backends: 0.0,
        autovacuum: 0.0,
    })
}

fn stop(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

fn http_get(addr: SocketAddr, path: &str) -> Result<String> {
    let mut s = TcpStream::connect(addr)?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut body = String::new();
    s.read_to_string(&mut body)?;
    let (head, body) = body.split_once("\r\n\r\n").context("no HTTP body")?;
    ensure!(
        head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
        "{head}"
    );
    Ok(body.to_string())
}

/// The machine's load averages (1, 5, 15 minutes), as /proc/loadavg says.
fn load_average() -> String {
    let avg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let fields: Vec<&str> = avg.split_whitespace().take(3).collect();
    format!("load average {}", fields.join(" "))
}

fn cores() -> usize {
    thread::available_parallelism().map_or(0, |n| n.get())
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_default()
}
