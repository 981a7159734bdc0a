//! Each build's details, worked out once it is over and kept in
//! `builds.details` (schema version 7), so that the builds of a day come
//! back without reading their jobs (`query::builds`).
//!
//! The details are the [`Build`] that `query::work_out` makes of the
//! build's own jobs, with the cluster around it read without a window
//! (every remote job that ran while it did, the host sessions of that
//! time): the same code and the same result as a query that works them
//! out. They are JSON, `{"of": [start_ms, end_ms, jobs], "build": BUILD}`:
//! `of` is the row as it was when they were worked out, `build` the
//! build's object as `GET /api/v1/builds` gives it (`open` false,
//! `previous` null: a query sets it), or null when none of its jobs could
//! be read.
//!
//! A build is over once its gap ([`KEPT_GAP_MS`]) has passed since its
//! last job, against the newest end the history holds, or once no
//! session of its scheduler is open. Work is done off the writer's path:
//! a thread with its own connection (`run`) looks, every
//! `COMMIT_EVERY`, whether the writer has committed since its last pass
//! (one atomic load), and then works out a batch of [`BATCH`] builds at
//! a time, the newest first (so a database from before version 7 has its builds
//! filled in, newest first, while the writer goes on). Details go stale
//! three ways, each handled:
//!
//! - a late job joins the build (or merges builds): the writer's update
//!   of the row sets `details` to NULL, and a row that changed between
//!   reading it and writing its details is not written;
//! - a job of another submitter that ran while the build did is written
//!   after it was worked out (a compile longer than the gap): each pass
//!   looks at the jobs written since the one before, and the details of
//!   every build that ended after the first of them began are worked out
//!   again;
//! - a query finds `of` different from the row: it works the build out
//!   itself.

use super::builds::{BuildRow, COLUMNS as BUILD_COLUMNS, KEPT_GAP_MS};
use super::database::{Location, Reading};
use super::query::{self, Conn, Filter, Value};
use super::store::{ms, HistoryError};
use super::writer::Status;
use crate::insights::Build;
use serde::{Deserialize, Serialize};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::Duration;

/// Builds worked out in one go; between two, the writer may take the
/// database.
pub const BATCH: usize = 100;

/// How often the thread looks whether the writer committed.
const LOOK_EVERY: Duration = super::writer::COMMIT_EVERY;

/// `builds.details`.
#[derive(Serialize, Deserialize)]
struct Details {
    /// The row's `start_ms`, `end_ms` and `jobs` when worked out.
    of: (u64, u64, u64),
    /// The build (`None`: none of its jobs could be read).
    build: Option<Build>,
}

/// The build `details` hold for `row`: `None` if they are not those of
/// the row as it is (or unreadable), `Some(None)` if the build has no
/// readable job (a query leaves it out).
pub(crate) fn read(details: &str, row: &BuildRow) -> Option<Option<Build>> {
    let details: Details = serde_json::from_str(details).ok()?;
    if details.of != (row.start_ms, row.end_ms, row.jobs) {
        return None;
    }
    Some(details.build.map(|mut b| {
        // As `summarise` computes it, not as JSON rounds it.
        b.remote_share = if b.jobs == 0 {
            0.0
        } else {
            b.remote as f64 / b.jobs as f64
        };
        b
    }))
}

/// What one pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pass {
    /// Builds over and not worked out, taken (at most [`BATCH`]).
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
}

impl Summaries {
    /// One pass on `conn`: the builds that jobs written since the last
    /// pass make stale, then up to `batch` builds that are over, newest
    /// first.
    pub fn pass<C: Conn>(&mut self, conn: &C, batch: usize) -> Result<Pass, C::Error> {
        let mut pass = Pass::default();
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
                pass.stale = conn.execute(
                    "UPDATE builds SET details = NULL WHERE details IS NOT NULL AND end_ms >= ?1",
                    &[Value::Int(first)],
                )?;
            }
        }
        self.seen = Some(seq);
        let Some(end) = newest("SELECT max(end_ms) FROM jobs")? else {
            return Ok(pass);
        };
        let over = end.saturating_sub(ms(KEPT_GAP_MS));
        let sql = format!(
            "SELECT seq, {BUILD_COLUMNS} FROM builds b WHERE details IS NULL AND (end_ms <= ?1 \
             OR NOT EXISTS (SELECT 1 FROM scheduler_sessions s \
             WHERE s.scheduler = b.scheduler AND s.end_ms IS NULL)) \
             ORDER BY end_ms DESC LIMIT ?2"
        );
        let batch = i64::try_from(batch).unwrap_or(i64::MAX);
        let rows = conn.rows(&sql, &[Value::Int(over), Value::Int(batch)], |r| {
            BuildRow::read(r)
        })?;
        pass.taken = rows.len();
        let builds = query::work_out(conn, &rows, &Filter::default())?;
        for (row, build) in rows.iter().zip(builds) {
            let details = Details {
                of: (row.start_ms, row.end_ms, row.jobs),
                build,
            };
            let Ok(json) = serde_json::to_string(&details) else {
                continue;
            };
            pass.written += conn.execute(
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
        }
        Ok(pass)
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
pub(crate) fn run(at: Location, status: Arc<Status>, stop: Receiver<()>) {
    let mut summaries = Summaries::default();
    let mut reading = None;
    let mut done = None;
    loop {
        let written = status.written();
        if done != Some(written) {
            if reading.is_none() {
                match Reading::open(&at) {
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
        match stop.recv_timeout(LOOK_EVERY) {
            Err(RecvTimeoutError::Timeout) => {}
            _ => return,
        }
    }
}
