//! The `builds` table, kept as the writer writes jobs, so that the builds
//! of a window are read through an index instead of grouped from every
//! job of it (`query::builds`).
//!
//! The rule is `insights::builds::group` with the gap [`KEPT_GAP_MS`]:
//! a build is a submitter's jobs whose spans, each from when the job was
//! first seen (submitted, else begun) to its end plus the gap, overlap in
//! a chain. That rule does not depend on the order jobs come in, so the
//! writer can apply it job by job as they finish: a job that begins after
//! the submitter's latest build began extends it (or starts the next);
//! one that began earlier (a long compile that ended after a later build
//! began) joins, and so merges, every build its span reaches. Only the
//! latest build of each submitter is remembered; the rest is in the
//! table. A build that spans a commit is the same row, extended; after a
//! restart the latest build of each submitter is read back first.

use super::query::Cells;
use super::record::JobRecord;
use rustc_hash::FxHashMap;
use std::sync::Arc;

/// The gap the table's builds are grouped with: the default
/// `--build-gap`. Queries with another gap group the jobs themselves.
pub const KEPT_GAP_MS: u64 = crate::insights::DEFAULT_BUILD_GAP.as_millis() as u64;

/// Submitters remembered; past this the memory starts over (each
/// submitter's latest build is then read back from the table). Above the
/// hosts of the largest clusters: at 4,096, a burst from 5,000 submitters
/// (`load e2e`) started over every few thousand jobs and read and wrote
/// a build for every second job. About 150 bytes a submitter.
const CACHE_LIMIT: usize = 1 << 14;

/// One row of `builds`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct BuildRow {
    /// Its `seq` (`None`: not written yet).
    pub seq: Option<i64>,
    /// The lowest scheduler session of its jobs.
    pub session: i64,
    /// The address of the scheduler of its jobs.
    pub scheduler: Arc<str>,
    /// The submitter's `host_names` id.
    pub client_name: Option<i64>,
    /// When its first job was first seen.
    pub start_ms: u64,
    /// When its last job ended.
    pub end_ms: u64,
    /// Jobs, remote and local.
    pub jobs: u64,
    /// Compiled on another host than the submitter.
    pub remote: u64,
    /// Given back to the submitter by the scheduler.
    pub given_back: u64,
    /// Compiled locally without the scheduler.
    pub local: u64,
    /// The compiler failed.
    pub failed: u64,
    /// Ended without the compiler's verdict.
    pub cut_short: u64,
}

impl BuildRow {
    /// The build of `job` alone, in the database's `session` and with its
    /// submitter's id (the scheduler comes with [`OpenBuilds::add`]).
    pub fn of(job: &JobRecord, session: i64, client_name: Option<i64>) -> BuildRow {
        use crate::monitor::JobState;
        let local = job.state == JobState::LocalFinished;
        let given_back = !local && job.client_name.is_some() && job.client_name == job.server_name;
        let n = |b: bool| u64::from(b);
        BuildRow {
            seq: None,
            session,
            scheduler: Arc::from(""),
            client_name,
            start_ms: job.submit_ms.unwrap_or(job.start_ms),
            end_ms: job.end_ms,
            jobs: 1,
            remote: n(!local && job.server_name.is_some() && !given_back),
            given_back: n(given_back),
            local: n(local),
            failed: n(job.state == JobState::Failed),
            cut_short: n(job.state == JobState::CutShort),
        }
    }

    /// Takes `other`'s jobs in (the row keeps its `seq`).
    fn absorb(&mut self, other: &BuildRow) {
        self.session = self.session.min(other.session);
        self.start_ms = self.start_ms.min(other.start_ms);
        self.end_ms = self.end_ms.max(other.end_ms);
        self.jobs += other.jobs;
        self.remote += other.remote;
        self.given_back += other.given_back;
        self.local += other.local;
        self.failed += other.failed;
        self.cut_short += other.cut_short;
    }

    /// Whether a job (or build) from `start_ms` to `end_ms` belongs with
    /// this one.
    fn reaches(&self, start_ms: u64, end_ms: u64) -> bool {
        start_ms <= self.end_ms.saturating_add(KEPT_GAP_MS)
            && self.start_ms <= end_ms.saturating_add(KEPT_GAP_MS)
    }

    /// The integer columns after `seq`, in [`COLUMNS`] order (the
    /// scheduler follows them).
    pub fn values(&self) -> [Option<i64>; 10] {
        let n = |v: u64| Some(super::store::ms(v));
        [
            Some(self.session),
            self.client_name,
            n(self.start_ms),
            n(self.end_ms),
            n(self.jobs),
            n(self.remote),
            n(self.given_back),
            n(self.local),
            n(self.failed),
            n(self.cut_short),
        ]
    }

    /// What an update of the row binds: with its start and session
    /// ([`UPDATE`]) or without ([`UPDATE_END`]), then `seq`.
    fn changed(&self, whole: bool) -> Vec<Option<i64>> {
        let [session, _, start, rest @ ..] = self.values();
        let mut out = Vec::with_capacity(10);
        if whole {
            out.extend([session, start]);
        }
        out.extend(rest);
        out.push(self.seq);
        out
    }

    /// The row of `seq` and [`COLUMNS`].
    pub fn read(r: &dyn Cells) -> BuildRow {
        let n = |i| r.int(i).and_then(|v| u64::try_from(v).ok()).unwrap_or(0);
        BuildRow {
            seq: r.int(0),
            session: r.int(1).unwrap_or(0),
            scheduler: Arc::from(r.text(11).unwrap_or_default()),
            client_name: r.int(2),
            start_ms: n(3),
            end_ms: n(4),
            jobs: n(5),
            remote: n(6),
            given_back: n(7),
            local: n(8),
            failed: n(9),
            cut_short: n(10),
        }
    }
}

/// The columns of `builds` after `seq`, as [`BuildRow::values`] gives them.
pub(crate) const COLUMNS: &str = "session, client_name, start_ms, end_ms, jobs, remote, \
     given_back, local, failed, cut_short, scheduler";

/// What the writer does to `builds` in its transaction (SQLite's in
/// `store.rs`, PostgreSQL's in `postgres.rs`). A submitter is a
/// scheduler's address and a `host_names` id (`None`: the rows whose
/// `client_name` is null).
pub(crate) trait BuildTable {
    /// What it may fail with.
    type Error;
    /// The address of the scheduler of the database's `session`.
    fn scheduler(&mut self, session: i64) -> Result<String, Self::Error>;
    /// The rows of `sql` (SQLite's dialect) with the submitter as `?1`
    /// (its name's id) and `?2` (its scheduler), and `?3` if given.
    fn select(
        &mut self,
        sql: &str,
        submitter: &Submitter,
        and: Option<i64>,
    ) -> Result<Vec<BuildRow>, Self::Error>;
    /// The submitter's latest build.
    fn latest(&mut self, submitter: &Submitter) -> Result<Option<BuildRow>, Self::Error> {
        Ok(self.select(&latest_sql(submitter), submitter, None)?.pop())
    }
    /// The submitter's builds that end at or after `from_ms` (oldest
    /// first).
    fn ending_since(
        &mut self,
        submitter: &Submitter,
        from_ms: u64,
    ) -> Result<Vec<BuildRow>, Self::Error> {
        let from = super::store::ms(from_ms);
        self.select(&ending_since_sql(submitter), submitter, Some(from))
    }
    /// Adds `row`; returns its `seq`.
    fn insert(&mut self, row: &BuildRow) -> Result<i64, Self::Error>;
    /// Writes `row` over the one of its `seq`; its start and session too
    /// if `whole`.
    fn update(&mut self, row: &BuildRow, whole: bool) -> Result<(), Self::Error>;
    /// Deletes the row of `seq`.
    fn delete(&mut self, seq: i64) -> Result<(), Self::Error>;
}

/// The latest build of a submitter, and whether the table lags behind it.
#[derive(Debug)]
struct Latest {
    row: Option<BuildRow>,
    dirty: bool,
    /// Its start or session changed since it was written.
    moved: bool,
}

/// The builds the writer keeps up to date: each submitter's latest, read
/// from the table when first needed, written at [`OpenBuilds::flush`].
#[derive(Debug, Default)]
pub(crate) struct OpenBuilds {
    latest: FxHashMap<Submitter, Latest>,
    schedulers: FxHashMap<i64, Arc<str>>,
}

/// A submitter: its scheduler's address, its name's id.
pub(crate) type Submitter = (Arc<str>, Option<i64>);

impl OpenBuilds {
    /// Puts the build of one job (`BuildRow::of`) where it belongs.
    pub fn add<T: BuildTable>(&mut self, table: &mut T, mut job: BuildRow) -> Result<(), T::Error> {
        job.scheduler = match self.schedulers.get(&job.session) {
            Some(s) => s.clone(),
            None => {
                let s: Arc<str> = Arc::from(table.scheduler(job.session)?);
                if self.schedulers.len() >= CACHE_LIMIT {
                    self.schedulers.clear();
                }
                self.schedulers.insert(job.session, s.clone());
                s
            }
        };
        let client = (job.scheduler.clone(), job.client_name);
        if !self.latest.contains_key(&client) {
            if self.latest.len() >= CACHE_LIMIT {
                self.flush(table)?;
                self.latest.clear();
            }
            let row = table.latest(&client)?;
            self.latest.insert(client.clone(), Latest::clean(row));
        }
        let Some(latest) = self.latest.get_mut(&client) else {
            return Ok(());
        };
        match &mut latest.row {
            Some(last) if job.start_ms >= last.start_ms => {
                if last.reaches(job.start_ms, job.end_ms) {
                    latest.moved |= job.session < last.session;
                    last.absorb(&job);
                } else {
                    write(table, latest)?;
                    latest.row = Some(job);
                }
                latest.dirty = true;
            }
            None => {
                latest.row = Some(job);
                latest.dirty = true;
            }
            Some(_) => {
                // Began before the latest build: it may join older builds
                // to one another, and to the latest.
                write(table, latest)?;
                let from = job.start_ms.saturating_sub(KEPT_GAP_MS);
                let mut merged = job.clone();
                let mut gone = Vec::new();
                for b in table.ending_since(&client, from)? {
                    if b.reaches(job.start_ms, job.end_ms) {
                        if merged.seq.is_none() {
                            merged.seq = b.seq;
                        } else {
                            gone.extend(b.seq);
                        }
                        merged.absorb(&b);
                    }
                }
                for seq in gone {
                    table.delete(seq)?;
                }
                let mut written = Latest {
                    row: Some(merged),
                    dirty: true,
                    moved: true,
                };
                write(table, &mut written)?;
                latest.row = table.latest(&client)?;
            }
        }
        Ok(())
    }

    /// Writes every build the table lags behind.
    pub fn flush<T: BuildTable>(&mut self, table: &mut T) -> Result<(), T::Error> {
        for latest in self.latest.values_mut() {
            write(table, latest)?;
        }
        Ok(())
    }

    /// Forgets what it remembers (after a transaction that failed).
    pub fn forget(&mut self) {
        self.latest.clear();
        self.schedulers.clear();
    }
}

impl Latest {
    /// `row` as the table has it.
    fn clean(row: Option<BuildRow>) -> Latest {
        Latest {
            row,
            dirty: false,
            moved: false,
        }
    }
}

/// Writes `latest` if the table lags behind it.
fn write<T: BuildTable>(table: &mut T, latest: &mut Latest) -> Result<(), T::Error> {
    if let (true, Some(row)) = (latest.dirty, latest.row.as_mut()) {
        match row.seq {
            Some(_) => table.update(row, latest.moved)?,
            None => row.seq = Some(table.insert(row)?),
        }
        latest.dirty = false;
        latest.moved = false;
    }
    Ok(())
}

/// The condition on a submitter (`?1` its name's id, `?2` its
/// scheduler).
fn whose(submitter: &Submitter) -> &'static str {
    match submitter.1 {
        Some(_) => "client_name = ?1 AND scheduler = ?2",
        None => "client_name IS NULL AND ?1 IS NULL AND scheduler = ?2",
    }
}

/// The latest build of a submitter ([`whose`]).
fn latest_sql(submitter: &Submitter) -> String {
    format!(
        "SELECT seq, {COLUMNS} FROM builds WHERE {} ORDER BY start_ms DESC LIMIT 1",
        whose(submitter)
    )
}

/// A submitter's builds that end at or after `?3`.
fn ending_since_sql(submitter: &Submitter) -> String {
    format!(
        "SELECT seq, {COLUMNS} FROM builds WHERE {} AND end_ms >= ?3 ORDER BY start_ms",
        whose(submitter)
    )
}

/// A row's insert: [`BuildRow::values`] and the scheduler.
const INSERT: &str = "INSERT INTO builds (session, client_name, start_ms, end_ms, jobs, \
     remote, given_back, local, failed, cut_short, scheduler) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)";

/// A row's update: the values of [`BuildRow::changed`] (whole).
const UPDATE: &str = "UPDATE builds SET session = ?1, start_ms = ?2, end_ms = ?3, jobs = ?4, \
     remote = ?5, given_back = ?6, local = ?7, failed = ?8, cut_short = ?9 WHERE seq = ?10";

/// The update of a build that only grew: its start and session stay, and
/// so do the entries of the indexes on them (a third of the cost of
/// keeping the table, in `benches/history.rs`).
const UPDATE_END: &str = "UPDATE builds SET end_ms = ?1, jobs = ?2, remote = ?3, \
     given_back = ?4, local = ?5, failed = ?6, cut_short = ?7 WHERE seq = ?8";

/// The update of `row`, whole or not.
fn update_sql(whole: bool) -> &'static str {
    if whole {
        UPDATE
    } else {
        UPDATE_END
    }
}

const SCHEDULER: &str = "SELECT coalesce(max(scheduler), '') FROM scheduler_sessions WHERE id = ?1";

/// `builds` in an SQLite transaction.
pub(crate) struct SqliteBuilds<'a>(pub &'a rusqlite::Connection);

impl BuildTable for SqliteBuilds<'_> {
    type Error = rusqlite::Error;

    fn scheduler(&mut self, session: i64) -> rusqlite::Result<String> {
        self.0
            .prepare_cached(SCHEDULER)?
            .query_row([session], |r| r.get(0))
    }

    fn select(
        &mut self,
        sql: &str,
        (scheduler, client): &Submitter,
        and: Option<i64>,
    ) -> rusqlite::Result<Vec<BuildRow>> {
        let scheduler: &str = scheduler;
        let mut params: Vec<&dyn rusqlite::ToSql> = vec![client, &scheduler];
        params.extend(and.as_ref().map(|v| v as &dyn rusqlite::ToSql));
        let mut stmt = self.0.prepare_cached(sql)?;
        let rows = stmt.query_map(&*params, |r| Ok(BuildRow::read(r)))?;
        rows.collect()
    }

    fn insert(&mut self, row: &BuildRow) -> rusqlite::Result<i64> {
        let values = row.values();
        let mut params: Vec<&dyn rusqlite::ToSql> =
            values.iter().map(|v| v as &dyn rusqlite::ToSql).collect();
        let scheduler = &*row.scheduler;
        params.push(&scheduler);
        self.0.prepare_cached(INSERT)?.execute(&*params)?;
        Ok(self.0.last_insert_rowid())
    }

    fn update(&mut self, row: &BuildRow, whole: bool) -> rusqlite::Result<()> {
        self.0
            .prepare_cached(update_sql(whole))?
            .execute(rusqlite::params_from_iter(row.changed(whole)))?;
        Ok(())
    }

    fn delete(&mut self, seq: i64) -> rusqlite::Result<()> {
        self.0
            .prepare_cached("DELETE FROM builds WHERE seq = ?1")?
            .execute([seq])?;
        Ok(())
    }
}

/// `builds` in a PostgreSQL transaction.
pub(crate) struct PgBuilds<'a, 'b>(pub &'a mut postgres::Transaction<'b>);

/// A PostgreSQL parameter.
type PgParam<'a> = &'a (dyn postgres::types::ToSql + Sync);

impl BuildTable for PgBuilds<'_, '_> {
    type Error = postgres::Error;

    fn scheduler(&mut self, session: i64) -> Result<String, postgres::Error> {
        let sql = SCHEDULER.replace('?', "$");
        Ok(self.0.query_one(&sql, &[&session])?.get(0))
    }

    fn select(
        &mut self,
        sql: &str,
        (scheduler, client): &Submitter,
        and: Option<i64>,
    ) -> Result<Vec<BuildRow>, postgres::Error> {
        let scheduler: &str = scheduler;
        let mut params: Vec<PgParam<'_>> = vec![client, &scheduler];
        params.extend(and.as_ref().map(|v| v as PgParam<'_>));
        let sql = sql
            .replace("?1 IS NULL", "?1::int8 IS NULL")
            .replace('?', "$");
        let rows = self.0.query(&sql, &params)?;
        Ok(rows.iter().map(|r| BuildRow::read(r)).collect())
    }

    fn insert(&mut self, row: &BuildRow) -> Result<i64, postgres::Error> {
        let values = row.values();
        let mut params: Vec<PgParam<'_>> = values.iter().map(|v| v as PgParam<'_>).collect();
        let scheduler = &*row.scheduler;
        params.push(&scheduler);
        let sql = format!("{} RETURNING seq", INSERT.replace('?', "$"));
        Ok(self.0.query_one(&sql, &params)?.get(0))
    }

    fn update(&mut self, row: &BuildRow, whole: bool) -> Result<(), postgres::Error> {
        let values = row.changed(whole);
        let params: Vec<PgParam<'_>> = values.iter().map(|v| v as PgParam<'_>).collect();
        self.0
            .execute(&update_sql(whole).replace('?', "$"), &params)?;
        Ok(())
    }

    fn delete(&mut self, seq: i64) -> Result<(), postgres::Error> {
        self.0
            .execute("DELETE FROM builds WHERE seq = $1", &[&seq])?;
        Ok(())
    }
}
