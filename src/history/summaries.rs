//! Each build's details, worked out and kept in `builds.details`
//! (schema version 7), so that the builds of a day come back without
//! reading their jobs (`query::builds`).
//!
//! The details are the [`Build`] that `query::work_out` makes of the
//! build's own jobs, with the cluster around it read without a window
//! (every remote job that ran while it did, the host sessions of that
//! time): the same code and the same result as a query that works them
//! out. They are JSON, `{"v": 2, "of": [start_ms, end_ms, jobs],
//! "servers": [[host_id, jobs], ...], "build": BUILD}`: `v` the form
//! (details of another are worked out again), `of` the row as it was when
//! they were worked out, `servers` the build's servers by their
//! `host_names.id`, most jobs first, `build` the build's object as `GET
//! /api/v1/builds` gives it but for its `servers`, empty here (`open`
//! false, `previous` null: a query sets them), or null when none of its
//! jobs could be read. A build of a large cluster lists up to every host
//! as a server: by id, the details of the bench's 84,500 builds of 200
//! hosts take 1.66 KB a build, against 2.90 KB by name.
//!
//! A build is over once its gap ([`KEPT_GAP_MS`]) has passed since its
//! last job, against the newest end the history holds, or once no
//! session of its scheduler is open. Work is done off the writer's path:
//! a thread with its own connection (`run`) looks, every
//! `COMMIT_EVERY`, whether the writer has committed since its last pass
//! (one atomic load), and then works out a batch of [`BATCH`] builds at
//! a time (and those that ran within the batch's span, whose cluster is
//! the same), the newest first (so a database from before version 7 has its
//! builds filled in, newest first, while the writer goes on). Builds
//! still open are worked out too, so that the last minutes' builds have
//! details once the cluster pauses: once the writer has committed nothing
//! for [`QUIET`], and at most every [`OPEN_EVERY`]. While jobs keep
//! coming, each commit makes them stale at once, and working them out
//! reads every remote job that ran beside them (on a burst of 317,093
//! jobs, 0.4 s of CPU and 20 to 30 MiB of peak RSS for nothing); a build
//! is over anyway [`KEPT_GAP_MS`] after its last job when others follow.
//! Details go stale three ways, each handled:
//!
//! - a late job joins the build (or merges builds): the writer's update
//!   of the row sets `details` to NULL, and a row that changed between
//!   reading it and writing its details is not written;
//! - a job of another submitter that ran while the build did is written
//!   after it was worked out (a compile longer than the gap, or any job
//!   beside a build still open): each pass looks at the jobs written
//!   since the one before, and the details of every build that ended
//!   after the first of them began are worked out again;
//! - a query finds `of` different from the row: it works the build out
//!   itself.

use super::builds::{BuildRow, COLUMNS as BUILD_COLUMNS, KEPT_GAP_MS};
use super::database::{Location, Reading};
use super::query::{self, Conn, Filter, Value};
use super::store::{ms, HistoryError};
use super::writer::Status;
use crate::insights::builds::ServerJobs;
use crate::insights::Build;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Builds worked out in one go, the cluster around them read once: on a
/// burst of 317,093 jobs from 5,000 hosts, a batch of 100 read it again
/// for each of 50 batches of the builds still open (5 s of CPU).
pub const BATCH: usize = 1000;

/// How many times its batch a pass takes at most, when builds after
/// the batch ran within its span (their cluster is read once).
pub const WIDEST: usize = 20;

/// The details written in one transaction, at most (and about): the
/// writer waits for none longer, and a batch of large builds (a server
/// list of every host of a large cluster) is not held whole.
const WRITE_BYTES: usize = 1 << 20;

/// How often the thread looks whether the writer committed.
const LOOK_EVERY: Duration = super::writer::COMMIT_EVERY;

/// How often, at most, the builds still open are worked out: each commit
/// that adds to one makes its details stale, so more often would mostly
/// redo them.
pub const OPEN_EVERY: Duration = Duration::from_secs(10);

/// How long the writer commits nothing before `run` works out the builds
/// still open: the cluster has paused.
pub const QUIET: Duration = Duration::from_secs(2);

/// The form of `builds.details` this code writes (`v`); details of
/// another form are worked out again by the first pass of a
/// [`Summaries`] and, until then, by the query.
const FORM: u64 = 2;

/// `builds.details`: the build as `GET /api/v1/builds` gives it, but for
/// its servers, which are host ids (`host_names.id`) here: most of the
/// bytes of a build of a large cluster were their names.
#[derive(Serialize, Deserialize)]
struct Details {
    /// [`FORM`].
    v: u64,
    /// The row's `start_ms`, `end_ms` and `jobs` when worked out.
    of: (u64, u64, u64),
    /// The build's servers, most jobs first: (host id, jobs).
    servers: Vec<(i64, u64)>,
    /// The build, its `servers` empty (`None`: none of its jobs could be
    /// read).
    build: Option<Build>,
}

/// The build `details` hold for `row`, its servers named by `names`:
/// `None` if they are not those of the row as it is (or unreadable, or of
/// another form, or naming a host `names` lacks), `Some(None)` if the
/// build has no readable job (a query leaves it out).
pub(crate) fn read(
    details: &str,
    row: &BuildRow,
    names: &HashMap<i64, Arc<str>>,
) -> Option<Option<Build>> {
    let details: Details = serde_json::from_str(details).ok()?;
    if details.v != FORM || details.of != (row.start_ms, row.end_ms, row.jobs) {
        return None;
    }
    let Some(mut b) = details.build else {
        return Some(None);
    };
    b.servers = details
        .servers
        .into_iter()
        .map(|(id, jobs)| {
            Some(ServerJobs {
                name: names.get(&id)?.to_string(),
                jobs,
            })
        })
        .collect::<Option<_>>()?;
    // As `summarise` computes it, not as JSON rounds it.
    b.remote_share = if b.jobs == 0 {
        0.0
    } else {
        b.remote as f64 / b.jobs as f64
    };
    Some(Some(b))
}

/// The details of `build` as `row` is now, its servers by the ids of
/// `ids` (`None`: a server without an id, which the jobs it came from
/// cannot have).
fn write(row: &BuildRow, build: Option<Build>, ids: &HashMap<&str, i64>) -> Option<String> {
    let mut servers = Vec::new();
    let build = match build {
        Some(mut b) => {
            servers = std::mem::take(&mut b.servers)
                .into_iter()
                .map(|s| Some((*ids.get(&*s.name)?, s.jobs)))
                .collect::<Option<_>>()?;
            Some(b)
        }
        None => None,
    };
    let details = Details {
        v: FORM,
        of: (row.start_ms, row.end_ms, row.jobs),
        servers,
        build,
    };
    serde_json::to_string(&details).ok()
}

/// Writes each build's `details` in one transaction, where its row is
/// still as it was worked out; returns how many were.
fn write_all<C: Conn>(conn: &C, details: Vec<(&BuildRow, String)>) -> Result<usize, C::Error> {
    if details.is_empty() {
        return Ok(0);
    }
    conn.execute("BEGIN", &[])?;
    let written = details.into_iter().try_fold(0, |written, (row, json)| {
        let n = conn.execute(
            "UPDATE builds SET details = ?1 WHERE seq = ?2 AND details IS NULL \
             AND start_ms = ?3 AND end_ms = ?4 AND jobs = ?5",
            &[
                Value::Text(json),
                Value::Int(row.seq.unwrap_or(0)),
                Value::Int(ms(row.start_ms)),
                Value::Int(ms(row.end_ms)),
                Value::Int(ms(row.jobs)),
            ],
        )?;
        Ok(written + n)
    });
    let written = written.and_then(|written| conn.execute("COMMIT", &[]).map(|_| written));
    if written.is_err() {
        // The caller hears of the error, not of the rollback's.
        let _ = conn.execute("ROLLBACK", &[]);
    }
    written
}

/// What one pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pass {
    /// Builds over and not worked out, taken (the batch, and at most
    /// [`WIDEST`] times it with those that ran within its span).
    pub taken: usize,
    /// Of those, worked out and written (the others changed meanwhile).
    pub written: usize,
    /// Builds whose details went stale by a job written late.
    pub stale: usize,
}

/// The work on `builds.details` of one connection: which jobs it has
/// looked at for builds they make stale.
#[derive(Debug, Default)]
pub struct Summaries {
    /// The newest `jobs.seq` looked at (`None`: none yet; the jobs
    /// written before the first pass are taken as seen).
    seen: Option<i64>,
    /// Whether details of another form were set aside.
    formed: bool,
    /// When the builds still open were last all worked out, and the
    /// newest `jobs.seq` then.
    open_done: Option<(Instant, i64)>,
    /// Jobs are being written: the builds still open wait.
    busy: bool,
    /// Builds were worked out since the connection's cache was freed.
    cached: bool,
}

impl Summaries {
    /// One pass on `conn`: the builds that jobs written since the last
    /// pass make stale, then `batch` builds that are over, newest first,
    /// with those that ran within their span (up to [`WIDEST`] times
    /// `batch` in all); and those still open too when
    /// [`Summaries::open_due`].
    /// The first pass also sets aside details of another form than this
    /// code's, to be worked out again.
    pub fn pass<C: Conn>(&mut self, conn: &C, batch: usize) -> Result<Pass, C::Error> {
        let mut pass = Pass::default();
        if !self.formed {
            // Found by a read, which takes no lock from the writer, and
            // set aside a few at a time.
            let other = conn.rows(
                &format!(
                    "SELECT seq FROM builds \
                     WHERE details IS NOT NULL AND details NOT LIKE '{{\"v\":{FORM},%'"
                ),
                &[],
                |r| r.int(0).map(Value::Int),
            )?;
            let other: Vec<Value> = other.into_iter().flatten().collect();
            for some in other.chunks(BATCH) {
                let list: Vec<String> = (1..=some.len()).map(|n| format!("?{n}")).collect();
                let sql = format!(
                    "UPDATE builds SET details = NULL WHERE seq IN ({})",
                    list.join(", ")
                );
                pass.stale += conn.execute(&sql, some)?;
            }
            self.formed = true;
        }
        let newest = |sql: &str| -> Result<Option<i64>, C::Error> {
            Ok(conn.rows(sql, &[], |r| r.int(0))?.pop().flatten())
        };
        let seq = newest("SELECT max(seq) FROM jobs")?.unwrap_or(0);
        if let Some(seen) = self.seen.filter(|&s| s < seq) {
            let first = conn.rows(
                "SELECT min(start_ms) FROM jobs WHERE seq > ?1 AND seq <= ?2 \
                 AND state <> 'local_finished'",
                &[Value::Int(seen), Value::Int(seq)],
                |r| r.int(0),
            )?;
            if let Some(first) = first.into_iter().flatten().next() {
                pass.stale += conn.execute(
                    "UPDATE builds SET details = NULL WHERE details IS NOT NULL AND end_ms >= ?1",
                    &[Value::Int(first)],
                )?;
            }
        }
        let open = self.open_due();
        self.seen = Some(seq);
        let Some(end) = newest("SELECT max(end_ms) FROM jobs")? else {
            return Ok(pass);
        };
        let over = end.saturating_sub(ms(KEPT_GAP_MS));
        // Newest first: the open ones (when taken), then those over.
        let (which, mut params) = if open {
            ("", Vec::new())
        } else {
            (
                "AND (end_ms <= ?1 OR NOT EXISTS (SELECT 1 FROM scheduler_sessions s \
                 WHERE s.scheduler = b.scheduler AND s.end_ms IS NULL))",
                vec![Value::Int(over)],
            )
        };
        let taken = |params: &[Value], span: &str| {
            let sql = format!(
                "SELECT seq, {BUILD_COLUMNS} FROM builds b WHERE details IS NULL {which} {span} \
                 ORDER BY end_ms DESC LIMIT ?{}",
                params.len()
            );
            conn.rows(&sql, params, |r| BuildRow::read(r))
        };
        let limit = |n: usize| Value::Int(i64::try_from(n).unwrap_or(i64::MAX));
        let mut rows = taken(&[params.as_slice(), &[limit(batch)]].concat(), "")?;
        if let (true, Some(newest)) = (rows.len() == batch, rows.first()) {
            // And the others that ran within the span of these, up to
            // WIDEST batches: the cluster around them is read once for
            // all (the 5,000 builds of a burst ran at once).
            let from = rows.iter().map(|b| b.start_ms).min().unwrap_or(0);
            let n = params.len();
            params.extend([
                Value::Int(ms(from)),
                Value::Int(ms(newest.end_ms)),
                limit(WIDEST * batch),
            ]);
            // (A build ends after it starts: the index on `end_ms` is
            // read from `from` only.)
            let span = format!(
                "AND start_ms >= ?{0} AND end_ms >= ?{0} AND end_ms <= ?{1}",
                n + 1,
                n + 2
            );
            rows = taken(&params, &span)?;
        }
        pass.taken = rows.len();
        self.cached |= pass.taken > 0;
        if open && pass.taken < batch {
            self.open_done = Some((Instant::now(), seq));
        }
        let names = query::host_names(conn)?;
        let ids: HashMap<&str, i64> = names.iter().map(|(&id, n)| (&**n, id)).collect();
        // Kept as JSON, a few KB a build, and written a transaction at a
        // time, each as soon as they take WRITE_BYTES.
        let mut details = Vec::new();
        let mut bytes = 0;
        query::work_out_each(conn, &rows, &Filter::default(), &names, &mut |i, build| {
            if let Some(json) = write(&rows[i], build, &ids) {
                bytes += json.len();
                details.push((&rows[i], json));
            }
            if bytes >= WRITE_BYTES {
                pass.written += write_all(conn, std::mem::take(&mut details))?;
                bytes = 0;
            }
            Ok(())
        })?;
        pass.written += write_all(conn, details)?;
        Ok(pass)
    }

    /// Says whether jobs are being written: while they are, passes leave
    /// the builds still open for when the cluster pauses.
    pub fn set_busy(&mut self, busy: bool) {
        self.busy = busy;
    }

    /// Whether it is time to free what the connection cached: builds
    /// were worked out since the last time, and jobs are not being
    /// written (a busy cluster's next pass reads the same pages). Says so
    /// once.
    pub fn release_due(&mut self) -> bool {
        let due = self.cached && !self.busy;
        self.cached &= !due;
        due
    }

    /// Whether the next pass takes the builds still open too: jobs are not
    /// being written, and none has yet, or jobs were written since the
    /// last that did and [`OPEN_EVERY`] has passed since. An open build's
    /// details go stale as soon as it grows; kept, they spare the query
    /// of the last minutes working it out once the build pauses or ends.
    pub fn open_due(&self) -> bool {
        if self.busy {
            return false;
        }
        match self.open_done {
            None => true,
            Some((at, seq)) => self.seen != Some(seq) && at.elapsed() >= OPEN_EVERY,
        }
    }

    /// Passes until no build that is over is left to work out.
    pub fn catch_up(&mut self, reading: &Reading) -> Result<Pass, HistoryError> {
        let mut total = Pass::default();
        loop {
            let pass = self.pass_on(reading, BATCH)?;
            total.taken += pass.taken;
            total.written += pass.written;
            total.stale += pass.stale;
            if pass.taken < BATCH || pass.written == 0 {
                return Ok(total);
            }
        }
    }

    /// [`Summaries::pass`] on either backend.
    pub fn pass_on(&mut self, reading: &Reading, batch: usize) -> Result<Pass, HistoryError> {
        match reading {
            Reading::Sqlite(c, p) => self.pass(c, batch).map_err(|e| HistoryError::of(p, e)),
            Reading::Postgres(c, s) => self.pass(c.as_ref(), batch).map_err(|e| s.error(e)),
        }
    }
}

/// Works out the builds of the history `at` as they end, on a connection
/// of its own, until `stop` has a message or is gone: a pass whenever the
/// writer has committed (`status`), batch after batch while builds wait.
/// Once builds were worked out and the writer pauses, it frees the pages
/// its connection cached and calls `release`.
pub(crate) fn run(at: Location, status: Arc<Status>, stop: Receiver<()>, release: Option<fn()>) {
    let mut summaries = Summaries::default();
    let mut reading = None;
    let mut done = None;
    // The writer's count of records and when it last changed.
    let mut last = (status.written(), Instant::now());
    loop {
        let written = status.written();
        if written != last.0 {
            last = (written, Instant::now());
        }
        summaries.set_busy(last.1.elapsed() < QUIET);
        if done != Some(written) || summaries.open_due() {
            if reading.is_none() {
                match Reading::open(&at).and_then(small_cache) {
                    Ok(r) => reading = Some(r),
                    Err(e) => tracing::debug!("history summaries: {e}; again later"),
                }
            }
            while let Some(r) = &reading {
                match summaries.pass_on(r, BATCH) {
                    Ok(pass) if pass.taken < BATCH || pass.written == 0 => {
                        done = Some(written);
                        break;
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::debug!("history summaries: {e}; again later");
                        reading = None;
                    }
                }
                // Between batches, the writer may take the lock.
                match stop.recv_timeout(Duration::from_millis(1)) {
                    Err(RecvTimeoutError::Timeout) => {}
                    _ => return,
                }
            }
        }
        if summaries.release_due() {
            if let Some(r) = &reading {
                r.release_memory();
            }
            if let Some(release) = release {
                release();
            }
        }
        match stop.recv_timeout(LOOK_EVERY) {
            Err(RecvTimeoutError::Timeout) => {}
            _ => return,
        }
    }
}

/// `reading` with SQLite's own page cache of 2 MiB, not the writer's 8:
/// a pass reads the jobs written since the last one and those around its
/// builds once each, so a larger cache would only keep them resident.
fn small_cache(reading: Reading) -> Result<Reading, HistoryError> {
    if let Reading::Sqlite(conn, path) = &reading {
        conn.execute_batch("PRAGMA cache_size = -2048")
            .map_err(|e| HistoryError::of(path, e))?;
    }
    Ok(reading)
}
