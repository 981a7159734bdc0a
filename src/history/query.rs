//! Reading the history back: finished jobs, host sessions and builds,
//! filtered by time, host and file, newest first (by end, or by login), a
//! page at a time (the cursor is the `seq` of the last row of the page
//! before). `icewatch
//! history` and `GET /api/v1/history/*` share these.

use super::builds::{BuildRow, COLUMNS as BUILD_COLUMNS, KEPT_GAP_MS};
use super::store::{ms, HistoryError};
use super::SCHEMA_VERSION;
use crate::insights::builds::one;
pub use crate::insights::Build;
use crate::insights::{end_reason, job_state, Finished, Gathering, HostSpan};
use rusqlite::{Connection, OpenFlags, Row};
use rustc_hash::FxHashMap;
use serde::Serialize;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

/// The most rows one query returns.
pub const MAX_LIMIT: usize = 10_000;

/// How the queries open an SQLite file to read: without SQLite's lock on
/// the connection, taken at every column read otherwise (about a tenth
/// of a page's time); a `Connection` is never shared between threads.
const READ_ONLY: OpenFlags =
    OpenFlags::SQLITE_OPEN_READ_ONLY.union(OpenFlags::SQLITE_OPEN_NO_MUTEX);

/// Opens the history at `path` to read it; it must exist and have this
/// code's schema.
pub fn open(path: &Path) -> Result<Connection, HistoryError> {
    if !path.exists() {
        return Err(HistoryError::Missing(path.to_path_buf()));
    }
    // Read-write if it may, so that an older schema is brought up to date.
    let err = |e| HistoryError::of(path, e);
    match super::Store::open(path) {
        Ok(store) => Ok(store.into_connection()),
        Err(HistoryError::ReadOnly(_)) => {
            let conn = Connection::open_with_flags(path, READ_ONLY).map_err(err)?;
            let found = super::store::version(&conn).map_err(err)?;
            if found != SCHEMA_VERSION {
                return Err(HistoryError::Newer {
                    path: path.to_path_buf(),
                    found,
                    known: SCHEMA_VERSION,
                });
            }
            Ok(conn)
        }
        Err(e) => Err(e),
    }
}

/// Opens the history at `path` only to read it, as the HTTP API does at
/// each request (SQLite's WAL lets readers and the writer go on at once).
pub fn open_read(path: &Path) -> Result<Connection, HistoryError> {
    if !path.exists() {
        return Err(HistoryError::Missing(path.to_path_buf()));
    }
    let err = |e| HistoryError::of(path, e);
    let conn = Connection::open_with_flags(path, READ_ONLY).map_err(err)?;
    conn.busy_timeout(std::time::Duration::from_secs(1))
        .map_err(err)?;
    Ok(conn)
}

/// How many rows a page has unless told.
pub const DEFAULT_LIMIT: usize = 100;

/// Which rows to read.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// Ended (jobs) or still logged in (hosts) at or after this time.
    pub since_ms: Option<u64>,
    /// Ended (jobs) or logged in (hosts) before this time.
    pub until_ms: Option<u64>,
    /// Only jobs submitted by or compiled on this host (by name), or this
    /// host's sessions.
    pub host: Option<String>,
    /// Only jobs whose file name contains this.
    pub file: Option<String>,
    /// Only jobs whose compiler failed (`state` `failed`).
    pub failed: bool,
    /// At most this many rows (at most [`MAX_LIMIT`]).
    pub limit: usize,
    /// Only rows older than the one with this `seq` (the next page).
    pub cursor: Option<i64>,
    /// Only the sessions of the scheduler at this address (where several
    /// icewatch share one database).
    pub scheduler: Option<String>,
}

impl Filter {
    /// The filter of an HTTP query: `since`, `until` (ms since the epoch),
    /// `host`, `file`, `failed` (`true` or `1`), `limit` (1 to
    /// [`MAX_LIMIT`], default [`DEFAULT_LIMIT`]), `cursor` (the `next` of
    /// the page before), `scheduler` (an address). The error names the
    /// parameter.
    pub fn from_params<'a>(param: impl Fn(&str) -> Option<&'a str>) -> Result<Filter, String> {
        let number = |key: &str| -> Result<Option<u64>, String> {
            match param(key).filter(|v| !v.is_empty()) {
                None => Ok(None),
                Some(v) => v
                    .parse()
                    .map(Some)
                    .map_err(|_| format!("{key} {v:?} is not a whole number")),
            }
        };
        let text = |key: &str| param(key).filter(|v| !v.is_empty()).map(str::to_owned);
        let limit = match number("limit")? {
            None => DEFAULT_LIMIT,
            Some(n) if (1..=MAX_LIMIT as u64).contains(&n) => n as usize,
            Some(n) => return Err(format!("limit {n} is not from 1 to {MAX_LIMIT}")),
        };
        let failed = match param("failed") {
            None | Some("" | "false" | "0") => false,
            Some("true" | "1") => true,
            Some(v) => return Err(format!("failed {v:?} is neither true nor false")),
        };
        Ok(Filter {
            since_ms: number("since")?,
            until_ms: number("until")?,
            host: text("host"),
            file: text("file"),
            failed,
            limit,
            cursor: number("cursor")?.map(|c| i64::try_from(c).unwrap_or(i64::MAX)),
            scheduler: text("scheduler"),
        })
    }
}

/// One page of rows under `key` (`jobs`, `hosts`), newest first, and the
/// cursor of the next page (`null` after the last) as `next`: the JSON of
/// `GET /api/v1/history/*`.
pub fn page_json<T: Serialize>(
    key: &str,
    rows: &[T],
    seq: impl Fn(&T) -> i64,
    limit: usize,
) -> String {
    let next = rows.last().filter(|_| rows.len() >= limit).map(seq);
    let mut page = serde_json::Map::new();
    page.insert(
        key.to_owned(),
        serde_json::to_value(rows).unwrap_or_default(),
    );
    page.insert("next".to_owned(), next.into());
    serde_json::Value::Object(page).to_string()
}

/// A finished job as the history keeps it: the JOB object of
/// `docs/json.md`, with `seq`, `scheduler` and `submit_ms`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct JobRow {
    /// Its place in the history (the cursor of the next page).
    pub seq: i64,
    /// The scheduler's job id, within its session.
    pub id: u32,
    /// The database's scheduler session.
    pub session: i64,
    /// The scheduler's address in that session.
    pub scheduler: Option<String>,
    /// Source or output file.
    pub file: String,
    /// Language.
    pub lang: Option<String>,
    /// Submitter's id in its session.
    pub client: Option<u32>,
    /// Submitter's name.
    pub client_name: Option<String>,
    /// Server's id in its session.
    pub server: Option<u32>,
    /// Server's name.
    pub server_name: Option<String>,
    /// `finished`, `failed`, `cut_short` or `local_finished`.
    pub state: String,
    /// Why it ended.
    pub reason: String,
    /// When it was submitted, if seen waiting.
    pub submit_ms: Option<u64>,
    /// When it began compiling (or was submitted, if it never began).
    pub start_ms: u64,
    /// When it ended.
    pub end_ms: u64,
    /// The compiler's exit code.
    pub exit_code: Option<i32>,
    /// Wall-clock ms on the server.
    pub real_ms: Option<u32>,
    /// User CPU ms.
    pub user_ms: Option<u32>,
    /// System CPU ms.
    pub sys_ms: Option<u32>,
    /// Major page faults.
    pub page_faults: Option<u32>,
    /// Bytes sent, compressed.
    pub in_compressed: Option<u32>,
    /// Bytes sent, uncompressed.
    pub in_uncompressed: Option<u32>,
    /// Bytes back, compressed.
    pub out_compressed: Option<u32>,
    /// Bytes back, uncompressed.
    pub out_uncompressed: Option<u32>,
}

/// The columns of a page of jobs: the names (file, hosts, scheduler) by
/// their ids, read apart once each ([`names`]).
const JOB_COLUMNS: &str = "j.seq, j.id, j.session, j.file, j.lang, j.client, j.client_name, \
     j.server, j.server_name, j.state, j.reason, j.submit_ms, j.start_ms, j.end_ms, \
     j.exit_code, j.real_ms, j.user_ms, j.sys_ms, j.page_faults, j.in_compressed, \
     j.in_uncompressed, j.out_compressed, j.out_uncompressed";

/// A row of [`JOB_COLUMNS`], and the ids of its file and host names.
fn job_row(r: &dyn Cells) -> (JobRow, [Option<i64>; 3]) {
    let n = |i| r.int(i).and_then(|v| u32::try_from(v).ok());
    let row = JobRow {
        seq: r.int(0).unwrap_or_default(),
        id: n(1).unwrap_or_default(),
        session: r.int(2).unwrap_or_default(),
        scheduler: None,
        file: String::new(),
        lang: r.text(4),
        client: n(5),
        client_name: None,
        server: n(7),
        server_name: None,
        state: r.text(9).unwrap_or_default(),
        reason: r.text(10).unwrap_or_default(),
        submit_ms: time(r, 11),
        start_ms: time(r, 12).unwrap_or_default(),
        end_ms: time(r, 13).unwrap_or_default(),
        exit_code: r.int(14).and_then(|v| i32::try_from(v).ok()),
        real_ms: n(15),
        user_ms: n(16),
        sys_ms: n(17),
        page_faults: n(18),
        in_compressed: n(19),
        in_uncompressed: n(20),
        out_compressed: n(21),
        out_uncompressed: n(22),
    };
    (row, [r.int(3), r.int(6), r.int(8)])
}

/// For each `(table, column, ids)` of `lookups`, `column` of the rows of
/// `table` whose `id` is one of `ids`, by id: each name once, however
/// many jobs of a page share it (joined, it was looked up again for every
/// job).
fn names<C: Conn, const N: usize>(
    conn: &C,
    lookups: [(&str, &str, Vec<i64>); N],
) -> Result<[FxHashMap<i64, String>; N], C::Error> {
    let lookups = lookups.map(|(table, column, mut ids)| {
        ids.sort_unstable();
        ids.dedup();
        (table, column, ids)
    });
    let asked: Vec<_> = lookups
        .iter()
        .map(|(t, c, ids)| (*t, *c, &ids[..]))
        .collect();
    let mut found = std::array::from_fn(|_| FxHashMap::default());
    conn.texts_by_id(&asked, &mut |i, id, name| {
        if let Some(map) = found.get_mut(i) {
            map.insert(id, name);
        }
    })?;
    Ok(found)
}

/// The lengths of the `IN` lists SQLite reads names by: a list of ids is
/// filled up to one of them (repeating its last), so that a few
/// statements serve every page.
const IN_LISTS: [usize; 3] = [8, 64, 512];

/// Column `i` as ms since the epoch.
fn time(r: &dyn Cells, i: usize) -> Option<u64> {
    r.int(i).and_then(|v| u64::try_from(v).ok())
}

/// A parameter of a query.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// An integer.
    Int(i64),
    /// A text.
    Text(String),
}

impl From<i64> for Value {
    fn from(v: i64) -> Value {
        Value::Int(v)
    }
}

impl From<String> for Value {
    fn from(v: String) -> Value {
        Value::Text(v)
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Value {
        Value::Text(v.to_owned())
    }
}

/// A row as the queries read it, column by column (null, or a value of
/// another type: `None`).
pub trait Cells {
    /// An integer (or a boolean, as 0 or 1).
    fn int(&self, i: usize) -> Option<i64>;
    /// A text.
    fn text(&self, i: usize) -> Option<String>;
}

/// A connection the queries read through: SQLite's, or PostgreSQL's
/// ([`PgConn`]).
pub trait Conn {
    /// What a query may fail with.
    type Error;
    /// Gives each row of `sql` (SQLite's dialect, parameters `?1`,
    /// `?2`...) with `params` to `row` as it is read: none is kept.
    fn each(
        &self,
        sql: &str,
        params: &[Value],
        row: &mut dyn FnMut(&dyn Cells),
    ) -> Result<(), Self::Error>;

    /// The rows of `sql` with `params`, each made by `row`.
    fn rows<T>(
        &self,
        sql: &str,
        params: &[Value],
        mut row: impl FnMut(&dyn Cells) -> T,
    ) -> Result<Vec<T>, Self::Error> {
        let mut made = Vec::new();
        self.each(sql, params, &mut |r| made.push(row(r)))?;
        Ok(made)
    }

    /// Runs `sql` (an update, same dialect) with `params`; returns how
    /// many rows it changed.
    fn execute(&self, sql: &str, params: &[Value]) -> Result<usize, Self::Error>;

    /// For each `(table, column, ids)` of `lookups`, gives `found` the
    /// text `column` of each row of `table` whose `id` is one of `ids`
    /// (sorted, distinct), with the lookup's index and the row's id.
    fn texts_by_id(
        &self,
        lookups: &[(&str, &str, &[i64])],
        found: &mut dyn FnMut(usize, i64, String),
    ) -> Result<(), Self::Error>;

    /// Whether the planner picks indexes by the tables' statistics
    /// (PostgreSQL's), rather than by the form of the query (SQLite's,
    /// without `ANALYZE`), so that a query need not be written for the
    /// plan it wants.
    fn plans_by_statistics(&self) -> bool {
        false
    }
}

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        match self {
            Value::Int(v) => v.to_sql(),
            Value::Text(v) => v.to_sql(),
        }
    }
}

impl Cells for Row<'_> {
    fn int(&self, i: usize) -> Option<i64> {
        self.get(i).ok().flatten()
    }

    fn text(&self, i: usize) -> Option<String> {
        self.get(i).ok().flatten()
    }
}

impl Conn for Connection {
    type Error = rusqlite::Error;

    fn each(
        &self,
        sql: &str,
        params: &[Value],
        row: &mut dyn FnMut(&dyn Cells),
    ) -> rusqlite::Result<()> {
        let mut stmt = self.prepare_cached(sql)?;
        let mut rows = stmt.query(rusqlite::params_from_iter(params))?;
        while let Some(r) = rows.next()? {
            row(r);
        }
        Ok(())
    }

    fn execute(&self, sql: &str, params: &[Value]) -> rusqlite::Result<usize> {
        self.prepare_cached(sql)?
            .execute(rusqlite::params_from_iter(params))
    }

    fn texts_by_id(
        &self,
        lookups: &[(&str, &str, &[i64])],
        found: &mut dyn FnMut(usize, i64, String),
    ) -> rusqlite::Result<()> {
        let chunks = lookups
            .iter()
            .enumerate()
            .flat_map(|(i, (table, column, ids))| {
                (ids.chunks(IN_LISTS[IN_LISTS.len() - 1]))
                    .map(move |chunk| (i, table, column, chunk))
            });
        for (i, table, column, chunk) in chunks {
            let len = IN_LISTS.into_iter().find(|&l| l >= chunk.len());
            let len = len.unwrap_or(chunk.len());
            let list = vec!["?"; len].join(",");
            let sql = format!("SELECT id, {column} FROM {table} WHERE id IN ({list})");
            let last = chunk[chunk.len() - 1];
            let params = chunk.iter().chain(std::iter::repeat(&last)).take(len);
            let mut stmt = self.prepare_cached(&sql)?;
            let mut rows = stmt.query(rusqlite::params_from_iter(params))?;
            while let Some(r) = rows.next()? {
                found(i, r.get(0)?, r.get(1)?);
            }
        }
        Ok(())
    }
}

/// A PostgreSQL connection to read through. The queries' SQL is SQLite's
/// and PostgreSQL's alike but for the parameters (`?1` there, `$1` here)
/// and `instr` (`strpos` here), translated on the way.
pub struct PgConn {
    client: std::cell::RefCell<postgres::Client>,
}

impl PgConn {
    /// Reads through `client`.
    pub fn new(client: postgres::Client) -> PgConn {
        PgConn {
            client: std::cell::RefCell::new(client),
        }
    }
}

impl Cells for postgres::Row {
    fn int(&self, i: usize) -> Option<i64> {
        use postgres::types::Type;
        // By the column's type, read once: trying each type in turn made
        // an error (two allocations) for every null cell.
        match *self.columns().get(i)?.type_() {
            Type::INT8 => self.try_get::<_, Option<i64>>(i).ok()?,
            Type::INT4 => self.try_get::<_, Option<i32>>(i).ok()?.map(i64::from),
            Type::BOOL => self.try_get::<_, Option<bool>>(i).ok()?.map(i64::from),
            _ => None,
        }
    }

    fn text(&self, i: usize) -> Option<String> {
        self.try_get(i).ok().flatten()
    }
}

impl Conn for PgConn {
    type Error = postgres::Error;

    fn each(
        &self,
        sql: &str,
        params: &[Value],
        row: &mut dyn FnMut(&dyn Cells),
    ) -> Result<(), postgres::Error> {
        use postgres::fallible_iterator::FallibleIterator;
        let mut client = self.client.borrow_mut();
        let mut rows = client.query_typed_raw(&pg_sql(sql), typed(params))?;
        while let Some(r) = rows.next()? {
            row(&r);
        }
        Ok(())
    }

    fn texts_by_id(
        &self,
        lookups: &[(&str, &str, &[i64])],
        found: &mut dyn FnMut(usize, i64, String),
    ) -> Result<(), postgres::Error> {
        // One array a lookup, one statement (one round trip) for them all,
        // however many ids.
        let sql = lookups
            .iter()
            .enumerate()
            .map(|(i, (table, column, _))| {
                let n = i + 1;
                format!("SELECT {i}, id, {column} FROM {table} WHERE id = ANY(${n})")
            })
            .collect::<Vec<_>>()
            .join(" UNION ALL ");
        let ids: Vec<_> = lookups
            .iter()
            .map(|(_, _, ids)| {
                let ids = ids as &(dyn postgres::types::ToSql + Sync);
                (ids, postgres::types::Type::INT8_ARRAY)
            })
            .collect();
        for r in self.client.borrow_mut().query_typed(&sql, &ids)? {
            let i = usize::try_from(r.try_get::<_, i32>(0)?).unwrap_or(usize::MAX);
            found(i, r.try_get(1)?, r.try_get(2)?);
        }
        Ok(())
    }

    fn execute(&self, sql: &str, params: &[Value]) -> Result<usize, postgres::Error> {
        let n = (self.client.borrow_mut()).execute_typed(&pg_sql(sql), &typed(params))?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    fn plans_by_statistics(&self) -> bool {
        true
    }
}

/// `params` with their PostgreSQL types. Typed, a statement is one round
/// trip instead of three (prepare, execute, close): the API reads on a
/// new connection each time, where nothing prepared could be kept.
fn typed(params: &[Value]) -> Vec<(&(dyn postgres::types::ToSql + Sync), postgres::types::Type)> {
    use postgres::types::Type;
    params
        .iter()
        .map(|p| match p {
            Value::Int(v) => (v as &(dyn postgres::types::ToSql + Sync), Type::INT8),
            Value::Text(v) => (v as &(dyn postgres::types::ToSql + Sync), Type::TEXT),
        })
        .collect()
}

/// SQLite's SQL of the queries in PostgreSQL's dialect.
fn pg_sql(sql: &str) -> String {
    sql.replace('?', "$").replace("instr(", "strpos(")
}

/// Conditions and their parameters, numbered as they are added.
#[derive(Clone, Default)]
struct Where {
    conditions: Vec<String>,
    params: Vec<Value>,
}

impl Where {
    /// Adds `condition`, each `?` of which is the parameter `value`.
    fn add(&mut self, condition: &str, value: impl Into<Value>) {
        self.params.push(value.into());
        let n = self.params.len();
        self.conditions
            .push(condition.replace('?', &format!("?{n}")));
    }

    /// `SELECT select WHERE ... ORDER BY time DESC, seq DESC LIMIT n`
    /// (`time` and `seq` columns of `table`, alias `t`), with its
    /// parameters: newest first, by the index on `time`. The cursor's row
    /// is looked up for its time, so that the next page starts from the
    /// index too.
    fn query<C: Conn>(
        mut self,
        conn: &C,
        select: &str,
        (table, t, time): (&str, &str, &str),
        filter: &Filter,
    ) -> Result<(String, Vec<Value>), C::Error> {
        if let Some(cursor) = filter.cursor {
            let sql = format!("SELECT {time} FROM {table} WHERE seq = ?1");
            let at = conn.rows(&sql, &[Value::Int(cursor)], |r| r.int(0))?;
            match at.into_iter().next().flatten() {
                Some(at) => {
                    self.add(&format!("{t}.{time} <= ?"), at);
                    let n = self.params.len();
                    self.params.push(Value::Int(cursor));
                    let m = self.params.len();
                    let older = format!("({t}.{time} < ?{n} OR {t}.seq < ?{m})");
                    self.conditions.push(older);
                }
                None => self.add(&format!("{t}.seq < ?"), cursor),
            }
        }
        let conditions = self.clause();
        self.params
            .push(Value::Int(filter.limit.clamp(1, MAX_LIMIT) as i64));
        let sql = format!(
            "{select} {conditions} ORDER BY {t}.{time} DESC, {t}.seq DESC LIMIT ?{}",
            self.params.len()
        );
        Ok((sql, self.params))
    }

    /// Only the sessions (`t.session`) of the filter's scheduler.
    fn scheduler(&mut self, t: &str, filter: &Filter) {
        if let Some(address) = &filter.scheduler {
            let theirs = "SELECT id FROM scheduler_sessions WHERE scheduler = ?";
            self.add(&format!("{t}.session IN ({theirs})"), address.clone());
        }
    }

    /// `WHERE` and the conditions, if any.
    fn clause(&self) -> String {
        if self.conditions.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", self.conditions.join(" AND "))
        }
    }
}

/// The id of the host named `name`, if the history knows it.
fn host_id<C: Conn>(conn: &C, name: &str) -> Result<Option<i64>, C::Error> {
    let ids = conn.rows(
        "SELECT id FROM host_names WHERE name = ?1",
        &[Value::from(name)],
        |r| r.int(0),
    )?;
    Ok(ids.into_iter().next().flatten())
}

/// Finished jobs, newest first.
pub fn jobs<C: Conn>(conn: &C, filter: &Filter) -> Result<Vec<JobRow>, C::Error> {
    let mut w = Where::default();
    if let Some(since) = filter.since_ms {
        w.add("j.end_ms >= ?", ms(since));
    }
    if let Some(until) = filter.until_ms {
        w.add("j.end_ms < ?", ms(until));
    }
    if let Some(host) = &filter.host {
        let Some(id) = host_id(conn, host)? else {
            return Ok(Vec::new());
        };
        w.add("(j.client_name = ? OR j.server_name = ?)", id);
    }
    if let Some(file) = &filter.file {
        let matching = "j.file IN (SELECT id FROM files WHERE instr(name, ?) > 0)";
        w.add(matching, file.clone());
    }
    if filter.failed {
        w.add("j.state = ?", "failed");
    }
    w.scheduler("j", filter);
    // The page alone, through the index on end_ms, then the names of its
    // jobs, each once. Joined in the query, PostgreSQL misjudged how many
    // jobs a window of a burst holds and joined and sorted all of them
    // before the limit (92 against 39 ms on 10 M jobs, BENCHMARKS.md).
    let select = format!("SELECT {JOB_COLUMNS} FROM jobs j");
    let (sql, params) = w.query(conn, &select, ("jobs", "j", "end_ms"), filter)?;
    // Into vectors of the page's size: grown row by row, they were a
    // tenth of the time (copies, page faults).
    let limit = filter.limit.clamp(1, MAX_LIMIT);
    let (mut rows, mut ids) = (Vec::with_capacity(limit), Vec::with_capacity(limit));
    conn.rows(&sql, &params, |r| {
        let (row, id) = job_row(r);
        rows.push(row);
        ids.push(id);
    })?;
    let files = ids.iter().filter_map(|[f, ..]| *f).collect();
    let hosts = ids
        .iter()
        .flat_map(|[_, c, s]| [*c, *s])
        .flatten()
        .collect();
    let sessions = rows.iter().map(|r| r.session).collect();
    let [files, hosts, schedulers] = names(
        conn,
        [
            ("files", "name", files),
            ("host_names", "name", hosts),
            ("scheduler_sessions", "scheduler", sessions),
        ],
    )?;
    let name =
        |map: &FxHashMap<i64, String>, id: Option<i64>| id.and_then(|id| map.get(&id).cloned());
    for (row, [file, client, server]) in rows.iter_mut().zip(ids) {
        row.file = name(&files, file).unwrap_or_default();
        row.client_name = name(&hosts, client);
        row.server_name = name(&hosts, server);
        row.scheduler = schedulers.get(&row.session).cloned();
    }
    Ok(rows)
}

/// A host's session: from its login to its logout.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HostRow {
    /// Its place in the history (the cursor of the next page).
    pub seq: i64,
    /// The database's scheduler session.
    pub session: i64,
    /// The scheduler's id of the host in that session.
    pub id: u32,
    /// Node name.
    pub name: String,
    /// Address.
    pub ip: String,
    /// Platform.
    pub platform: String,
    /// Slots.
    pub max_jobs: u32,
    /// Takes no remote jobs.
    pub no_remote: bool,
    /// The daemon's protocol version.
    pub protocol: u32,
    /// Features.
    pub features: String,
    /// When it logged in.
    pub login_ms: u64,
    /// When it logged out; null while logged in (or if icewatch stopped
    /// first).
    pub logout_ms: Option<u64>,
}

/// Host sessions, newest first.
pub fn hosts<C: Conn>(conn: &C, filter: &Filter) -> Result<Vec<HostRow>, C::Error> {
    let mut w = Where::default();
    if let Some(since) = filter.since_ms {
        w.add("(h.logout_ms IS NULL OR h.logout_ms >= ?)", ms(since));
    }
    if let Some(until) = filter.until_ms {
        w.add("h.login_ms < ?", ms(until));
    }
    if let Some(host) = &filter.host {
        w.add("n.name = ?", host.clone());
    }
    w.scheduler("h", filter);
    let select = "SELECT h.seq, h.session, h.host_id, n.name, h.ip, h.platform, h.max_jobs, \
         h.no_remote, h.protocol, h.features, h.login_ms, h.logout_ms \
         FROM host_sessions h JOIN host_names n ON n.id = h.name";
    let (sql, params) = w.query(conn, select, ("host_sessions", "h", "login_ms"), filter)?;
    conn.rows(&sql, &params, |r| {
        let n = |i| {
            r.int(i)
                .and_then(|v| u32::try_from(v).ok())
                .unwrap_or_default()
        };
        HostRow {
            seq: r.int(0).unwrap_or_default(),
            session: r.int(1).unwrap_or_default(),
            id: n(2),
            name: r.text(3).unwrap_or_default(),
            ip: r.text(4).unwrap_or_default(),
            platform: r.text(5).unwrap_or_default(),
            max_jobs: n(6),
            no_remote: r.int(7).is_some_and(|v| v != 0),
            protocol: n(8),
            features: r.text(9).unwrap_or_default(),
            login_ms: time(r, 10).unwrap_or_default(),
            logout_ms: time(r, 11),
        }
    })
}

/// Builds (`insights::builds`) of the filter's window, newest first: each
/// submitter's jobs, split where none was submitted, ran nor began for
/// `gap_ms`, with their reasons read against every job of the window and
/// the host sessions. `host` picks a submitter; `failed` keeps builds
/// with a failure; the cursor (the `start_ms` of the last build of the
/// page before) pages back; `file` does not apply.
///
/// With the gap of the `builds` table ([`KEPT_GAP_MS`], the default
/// `--build-gap`) the page's builds are read from that table, whole (a
/// build that began before the window, or ends after it, comes with all
/// its jobs), each with the details worked out once it was over
/// (`builds.details`, [`super::summaries`]); only those not worked out
/// yet have their own jobs read for their details. With another gap,
/// every job that ended in the window is grouped ([`grouped_builds`]).
pub fn builds<C: Conn>(conn: &C, filter: &Filter, gap_ms: u64) -> Result<Vec<Build>, C::Error> {
    if gap_ms == KEPT_GAP_MS {
        kept_builds(conn, filter, true)
    } else {
        grouped_builds(conn, filter, gap_ms)
    }
}

/// The page of [`builds`] (with the table's gap), every build's details
/// worked out from its jobs even where `builds.details` holds them: what
/// the stored details stand for.
pub fn computed_builds<C: Conn>(conn: &C, filter: &Filter) -> Result<Vec<Build>, C::Error> {
    kept_builds(conn, filter, false)
}

/// The jobs that ended in the filter's window (and of its scheduler),
/// grouped into builds in memory with the gap `gap_ms`, newest first.
/// Where several schedulers share the database, each one's jobs are
/// grouped apart, against its own hosts, as the `builds` table keeps
/// them: a submitter of the same name at two schedulers is two hosts.
pub fn grouped_builds<C: Conn>(
    conn: &C,
    filter: &Filter,
    gap_ms: u64,
) -> Result<Vec<Build>, C::Error> {
    use crate::insights::group;
    let schedulers = match &filter.scheduler {
        Some(address) => vec![Some(address.clone())],
        None => {
            let sql = "SELECT DISTINCT scheduler FROM scheduler_sessions";
            let all: Vec<String> = conn
                .rows(sql, &[], |r| r.text(0))?
                .into_iter()
                .flatten()
                .collect();
            if all.len() > 1 {
                all.into_iter().map(Some).collect()
            } else {
                vec![None]
            }
        }
    };
    let names = host_names(conn)?;
    let mut builds = Vec::new();
    for scheduler in schedulers {
        let theirs = Filter {
            scheduler,
            ..filter.clone()
        };
        let mut w = Where::default();
        if let Some(since) = filter.since_ms {
            w.add("j.end_ms >= ?", ms(since));
        }
        if let Some(until) = filter.until_ms {
            w.add("j.end_ms < ?", ms(until));
        }
        w.scheduler("j", &theirs);
        let jobs = finished(conn, &w, &names)?;
        let window = (filter.since_ms, filter.until_ms);
        let hosts = host_spans(conn, window, theirs.scheduler.as_deref())?;
        builds.extend(group(&jobs, &hosts, gap_ms, None));
    }
    Ok(newest_page(&mut builds, filter))
}

/// The window's conditions on `builds b`: ends at or after `since`,
/// begins before `until`, at the filter's scheduler.
fn build_window(filter: &Filter) -> Where {
    let mut window = Where::default();
    if let Some(since) = filter.since_ms {
        window.add("b.end_ms >= ?", ms(since));
    }
    if let Some(until) = filter.until_ms {
        window.add("b.start_ms < ?", ms(until));
    }
    if let Some(address) = &filter.scheduler {
        window.add("b.scheduler = ?", address.clone());
    }
    window
}

/// The window's conditions, the builds that end from `since` on listed
/// from the index `builds_end` alone, if they are at most four pages
/// (`None`: more), for SQLite. Without the list it reads builds newest first
/// through `builds_start` from the window's end until the page is full:
/// when the window holds less than a page (every build of a day), every
/// build before it down to the first.
fn since_listed<C: Conn>(conn: &C, filter: &Filter, since: u64) -> Result<Option<Where>, C::Error> {
    let since = ms(since);
    let since_on = conn.rows(
        "SELECT count(*) FROM builds WHERE end_ms >= ?1",
        &[Value::Int(since)],
        |r| r.int(0),
    )?;
    let page = filter.limit.clamp(1, MAX_LIMIT) as i64;
    if since_on.into_iter().flatten().next().unwrap_or(0) > 4 * page {
        return Ok(None);
    }
    let mut w = build_window(&Filter {
        since_ms: None,
        ..filter.clone()
    });
    w.add("b.seq IN (SELECT seq FROM builds WHERE end_ms >= ?)", since);
    Ok(Some(w))
}

/// The builds of the page from the `builds` table, each with its stored
/// details if `stored` and they are those of the row as it is now, else
/// with the details of its own jobs ([`work_out`]); and the change from
/// the previous build of its submitter in the window.
fn kept_builds<C: Conn>(conn: &C, filter: &Filter, stored: bool) -> Result<Vec<Build>, C::Error> {
    let window = build_window(filter);
    let host = match &filter.host {
        Some(host) => match host_id(conn, host)? {
            Some(id) => Some(id),
            None => return Ok(Vec::new()),
        },
        None => None,
    };
    let by_form = !conn.plans_by_statistics();
    let mut w = match (filter.since_ms, host) {
        (Some(since), None) if by_form => {
            since_listed(conn, filter, since)?.unwrap_or_else(|| window.clone())
        }
        _ => window.clone(),
    };
    if let Some(id) = host {
        w.add("b.client_name = ?", id);
    }
    if filter.failed {
        w.add("b.failed > ?", 0);
    }
    if let Some(cursor) = filter.cursor {
        w.add("b.start_ms < ?", cursor);
    }
    let conditions = w.clause();
    w.params
        .push(Value::Int(filter.limit.clamp(1, MAX_LIMIT) as i64));
    // In SQLite the page's rows are chosen first, then read with their
    // details: sorted with them, they filled its cache and went to a
    // temporary file. The page is sorted below.
    let page = format!(
        "{conditions} ORDER BY b.start_ms DESC, b.seq DESC LIMIT ?{}",
        w.params.len()
    );
    let sql = if by_form {
        format!(
            "SELECT seq, {BUILD_COLUMNS}, details FROM builds WHERE seq IN \
             (SELECT b.seq FROM builds b {page})"
        )
    } else {
        format!("SELECT seq, {BUILD_COLUMNS}, details FROM builds b {page}")
    };
    let rows = conn.rows(&sql, &w.params, |r| (BuildRow::read(r), r.text(12)))?;
    let mut builds = Vec::with_capacity(rows.len());
    let mut pending = Vec::new();
    // For the details kept and for the builds worked out alike.
    let names = host_names(conn)?;
    for (row, details) in rows {
        match details
            .filter(|_| stored)
            .and_then(|d| super::summaries::read(&d, &row, &names))
        {
            Some(build) => builds.extend(build.map(|b| (row, b))),
            None => pending.push(row),
        }
    }
    let worked_out = work_out(conn, &pending, filter, &names)?;
    builds.extend(
        pending
            .into_iter()
            .zip(worked_out)
            .filter_map(|(row, b)| Some((row, b?))),
    );
    previous(conn, &mut builds, (&window, filter.since_ms), host)?;
    // As `group` orders builds that begin at once: by submitter; then as
    // the page's rows are.
    builds
        .sort_by(|(r, a), (s, b)| (b.start_ms, &a.host, s.seq).cmp(&(a.start_ms, &b.host, r.seq)));
    Ok(builds.into_iter().map(|(_, b)| b).collect())
}

/// The build of each of `rows` (`None`: none of its jobs could be read)
/// from its own jobs, as the page of `filter` shows it: the cluster
/// around them (for their reasons) from the remote jobs of their
/// scheduler that ran while they did ([`LONGEST_JOB_MS`] at most) and
/// ended in the filter's window,
/// and its host sessions. Without a window (`Filter::default()`) these
/// are the details `builds.details` keeps. `names`: [`host_names`].
pub(crate) fn work_out<C: Conn>(
    conn: &C,
    rows: &[BuildRow],
    filter: &Filter,
    names: &HashMap<i64, Arc<str>>,
) -> Result<Vec<Option<Build>>, C::Error> {
    let mut builds = vec![None; rows.len()];
    work_out_each(conn, rows, filter, names, &mut |i, build| {
        builds[i] = build;
        Ok(())
    })?;
    Ok(builds)
}

/// [`work_out`], each build given to `done` with its index in `rows` as
/// soon as it is worked out (no statement is open then: `done` may use
/// `conn`).
pub(crate) fn work_out_each<C: Conn>(
    conn: &C,
    rows: &[BuildRow],
    filter: &Filter,
    names: &HashMap<i64, Arc<str>>,
    done: &mut dyn FnMut(usize, Option<Build>) -> Result<(), C::Error>,
) -> Result<(), C::Error> {
    let mut schedulers: Vec<&str> = rows.iter().map(|r| &*r.scheduler).collect();
    schedulers.sort_unstable();
    schedulers.dedup();
    for scheduler in schedulers {
        let theirs: Vec<usize> = (0..rows.len())
            .filter(|&i| &*rows[i].scheduler == scheduler)
            .collect();
        let of = theirs.iter().map(|&i| &rows[i]);
        let span = (
            of.clone().map(|b| b.start_ms).min().unwrap_or(0),
            of.map(|b| b.end_ms).max().unwrap_or(0),
        );
        // The host sessions that matter from the first job the cluster
        // counts to the last build's end: one that logged out before
        // then, or logged in after, changes neither the slots nor who was
        // online. A job that ran while the builds did began at most
        // LONGEST_JOB_MS before the first, or else on a server still
        // online then.
        let (from, to) = span;
        let first = from.saturating_sub(LONGEST_JOB_MS);
        let last = to.saturating_add(1);
        let since = filter.since_ms.map_or(first, |s| s.max(first));
        let until = filter.until_ms.map_or(last, |u| u.min(last));
        let hosts = host_spans(conn, (Some(since), Some(until)), Some(scheduler))?;
        let mut cluster = Gathering::new(&hosts);
        cluster_jobs(conn, scheduler, span, filter, &mut |server, start, end| {
            if let Some(server) = names.get(&server) {
                cluster.add(server, start, end);
            }
        })?;
        let cluster = cluster.cluster();
        for i in theirs {
            let jobs = build_jobs(conn, &rows[i], names)?;
            done(
                i,
                (!jobs.is_empty())
                    .then(|| one(&jobs.iter().collect::<Vec<_>>(), &cluster, KEPT_GAP_MS)),
            )?;
        }
    }
    Ok(())
}

/// The longest remote job the cluster around a build counts: the jobs of
/// the cluster are read through the index on `end_ms`, from the build's
/// start to its end and this much more.
pub const LONGEST_JOB_MS: u64 = 3_600_000;

/// Gives `job` the server (`host_names.id`), start and end of each remote
/// job of `scheduler`'s sessions that ran at some moment of `span` and
/// ended in the filter's window (and at most [`LONGEST_JOB_MS`] after
/// the span), as they are read: a busy cluster runs hundreds of
/// thousands of jobs beside a long build.
fn cluster_jobs<C: Conn>(
    conn: &C,
    scheduler: &str,
    (from, to): (u64, u64),
    filter: &Filter,
    job: &mut dyn FnMut(i64, u64, u64),
) -> Result<(), C::Error> {
    let mut c = Where::default();
    c.add("j.end_ms > ?", ms(from));
    c.add("j.end_ms <= ?", ms(to.saturating_add(LONGEST_JOB_MS)));
    c.add("j.start_ms <= ?", ms(to));
    c.add("j.state <> ?", "local_finished");
    if let Some(since) = filter.since_ms {
        c.add("j.end_ms >= ?", ms(since));
    }
    if let Some(until) = filter.until_ms {
        c.add("j.end_ms < ?", ms(until));
    }
    c.add(THEIRS, scheduler);
    let sql = format!(
        "SELECT j.server_name, j.start_ms, j.end_ms FROM jobs j {}",
        c.clause()
    );
    conn.each(&sql, &c.params, &mut |r| {
        if let (Some(server), Some(start), Some(end)) = (r.int(0), time(r, 1), time(r, 2)) {
            job(server, start, end);
        }
    })
}

/// Jobs (`j`) of the sessions of the scheduler at an address (`?`).
const THEIRS: &str = "j.session IN (SELECT id FROM scheduler_sessions WHERE scheduler = ?)";

/// The jobs of the build of `row`: its submitter's jobs (at the build's
/// scheduler) that ended within it; its builds before ended before this
/// one began, and those after it began after it ended.
fn build_jobs<C: Conn>(
    conn: &C,
    row: &BuildRow,
    names: &HashMap<i64, Arc<str>>,
) -> Result<Vec<Finished>, C::Error> {
    let mut j = Where::default();
    match row.client_name {
        Some(id) => j.add("j.client_name = ?", id),
        None => j.conditions.push("j.client_name IS NULL".to_owned()),
    }
    j.add("j.end_ms >= ?", ms(row.start_ms));
    j.add("j.end_ms <= ?", ms(row.end_ms));
    j.add(THEIRS, &*row.scheduler);
    finished(conn, &j, names)
}

/// Sets each build's change from the previous build of its submitter in
/// the window (`host`: the page is that submitter's): those of the
/// window that began from the page's first on, read at once, and for
/// each submitter's first build of the page the one before, all in one
/// more query.
fn previous<C: Conn>(
    conn: &C,
    builds: &mut [(BuildRow, Build)],
    (window, since): (&Where, Option<u64>),
    host: Option<i64>,
) -> Result<(), C::Error> {
    use crate::insights::builds::Change;
    let (Some(from), Some(to)) = (
        builds.iter().map(|(r, _)| r.start_ms).min(),
        builds.iter().map(|(r, _)| r.start_ms).max(),
    ) else {
        return Ok(());
    };
    let mut w = window.clone();
    if let Some(id) = host {
        w.add("b.client_name = ?", id);
    }
    w.add("b.start_ms >= ?", ms(from));
    w.add("b.start_ms < ?", ms(to));
    let sql = format!("SELECT seq, {BUILD_COLUMNS} FROM builds b {}", w.clause());
    let mut known: HashMap<(Arc<str>, Option<i64>), Vec<BuildRow>> = HashMap::new();
    for row in conn.rows(&sql, &w.params, |r| BuildRow::read(r))? {
        known
            .entry((row.scheduler.clone(), row.client_name))
            .or_default()
            .push(row);
    }
    for list in known.values_mut() {
        list.sort_by_key(|b| b.start_ms);
    }
    let share = |b: &BuildRow| {
        if b.jobs == 0 {
            0.0
        } else {
            b.remote as f64 / b.jobs as f64
        }
    };
    let first_of_theirs = |row: &BuildRow| {
        known
            .get(&(row.scheduler.clone(), row.client_name))
            .map_or(true, |theirs| {
                theirs.partition_point(|b| b.start_ms < row.start_ms) == 0
            })
    };
    let firsts: Vec<&BuildRow> = builds
        .iter()
        .map(|(r, _)| r)
        .filter(|r| first_of_theirs(r))
        .collect();
    let earlier = latest_before(conn, &firsts)?;
    for (row, build) in builds.iter_mut() {
        let theirs = known
            .get(&(row.scheduler.clone(), row.client_name))
            .map(Vec::as_slice)
            .unwrap_or_default();
        let before = match theirs.partition_point(|b| b.start_ms < row.start_ms) {
            // In the window if it ends in it, as the submitter's builds
            // before it end earlier still.
            0 => row
                .seq
                .and_then(|seq| earlier.get(&seq))
                .filter(|b| since.map_or(true, |s| b.end_ms >= s))
                .cloned(),
            n => theirs.get(n - 1).cloned(),
        };
        build.previous = before.map(|a| Change {
            start_ms: a.start_ms,
            duration_ms: build.duration_ms as i64 - (a.end_ms - a.start_ms) as i64,
            jobs: build.jobs as i64 - a.jobs as i64,
            remote_share: build.remote_share - share(&a),
        });
    }
    Ok(())
}

/// The latest build of the submitter of each of `rows` that began before
/// it, by the `seq` of the row: one query, through `builds_client` (with
/// the window's conditions the planners took `builds_end` and read every
/// build since), whose rows without a submitter ask a query each.
fn latest_before<C: Conn>(
    conn: &C,
    rows: &[&BuildRow],
) -> Result<HashMap<i64, BuildRow>, C::Error> {
    let mut latest = HashMap::new();
    let named: Vec<Value> = rows
        .iter()
        .filter(|r| r.client_name.is_some())
        .filter_map(|r| r.seq.map(Value::Int))
        .collect();
    if !named.is_empty() {
        let list: Vec<String> = (1..=named.len()).map(|n| format!("?{n}")).collect();
        let sql = format!(
            "SELECT seq, {BUILD_COLUMNS}, x.f FROM (SELECT f.seq AS f, \
             (SELECT p.seq FROM builds p WHERE p.client_name = f.client_name \
             AND p.scheduler = f.scheduler AND p.start_ms < f.start_ms \
             ORDER BY p.start_ms DESC LIMIT 1) AS p \
             FROM builds f WHERE f.seq IN ({})) x JOIN builds b ON b.seq = x.p",
            list.join(", ")
        );
        for (first, row) in conn.rows(&sql, &named, |r| (r.int(12), BuildRow::read(r)))? {
            latest.extend(first.map(|f| (f, row)));
        }
    }
    for row in rows.iter().filter(|r| r.client_name.is_none()) {
        let sql = format!(
            "SELECT seq, {BUILD_COLUMNS} FROM builds b WHERE b.client_name IS NULL \
             AND b.scheduler = ?1 AND b.start_ms < ?2 ORDER BY b.start_ms DESC LIMIT 1"
        );
        let params = [Value::from(&*row.scheduler), Value::Int(ms(row.start_ms))];
        let found = conn.rows(&sql, &params, |r| BuildRow::read(r))?.pop();
        latest.extend(row.seq.zip(found));
    }
    Ok(latest)
}

/// Every host name by id: they are few, so read once and shared rather
/// than joined to every job.
pub(crate) fn host_names<C: Conn>(conn: &C) -> Result<HashMap<i64, Arc<str>>, C::Error> {
    Ok(conn
        .rows("SELECT id, name FROM host_names", &[], |r| {
            r.int(0).zip(r.text(1).map(Arc::from))
        })?
        .into_iter()
        .flatten()
        .collect())
}

/// The jobs of `w` (on `jobs j`) as builds read them. A job this code
/// cannot read whole (a state or reason of a newer writer's) is left out
/// rather than guessed.
fn finished<C: Conn>(
    conn: &C,
    w: &Where,
    names: &HashMap<i64, Arc<str>>,
) -> Result<Vec<Finished>, C::Error> {
    let name = |id: Option<i64>| id.and_then(|id| names.get(&id).cloned());
    let sql = format!(
        "SELECT j.client_name, j.server_name, f.name, j.state, j.reason, j.exit_code, \
         j.submit_ms, j.start_ms, j.end_ms, j.real_ms, j.in_uncompressed \
         FROM jobs j JOIN files f ON f.id = j.file {}",
        w.clause()
    );
    Ok(conn
        .rows(&sql, &w.params, |r| {
            let n32 = |i| r.int(i).and_then(|v| u32::try_from(v).ok());
            Some(Finished {
                client: name(r.int(0)),
                server: name(r.int(1)),
                file: r.text(2)?,
                state: job_state(&r.text(3)?)?,
                reason: end_reason(&r.text(4)?)?,
                exit_code: r.int(5).and_then(|v| i32::try_from(v).ok()),
                submit_ms: time(r, 6),
                start_ms: time(r, 7)?,
                end_ms: time(r, 8)?,
                real_ms: n32(9),
                in_uncompressed: n32(10),
            })
        })?
        .into_iter()
        .flatten()
        .collect())
}

/// The host sessions still logged in at `since` (or later) that logged
/// in before `until`, of the scheduler at an address if given.
fn host_spans<C: Conn>(
    conn: &C,
    (since, until): (Option<u64>, Option<u64>),
    scheduler: Option<&str>,
) -> Result<Vec<HostSpan>, C::Error> {
    let mut h = Where::default();
    if let Some(address) = scheduler {
        let theirs = "h.session IN (SELECT id FROM scheduler_sessions WHERE scheduler = ?)";
        h.add(theirs, address);
    }
    if let Some(since) = since {
        h.add("(h.logout_ms IS NULL OR h.logout_ms >= ?)", ms(since));
    }
    if let Some(until) = until {
        h.add("h.login_ms < ?", ms(until));
    }
    let sql = format!(
        "SELECT n.name, h.platform, h.protocol, h.features, h.max_jobs, h.no_remote, \
         h.login_ms, h.logout_ms FROM host_sessions h JOIN host_names n ON n.id = h.name \
         {}",
        h.clause()
    );
    Ok(conn
        .rows(&sql, &h.params, |r| {
            let n32 = |i| r.int(i).and_then(|v| u32::try_from(v).ok());
            Some(HostSpan {
                name: r.text(0)?,
                platform: r.text(1)?,
                protocol: n32(2)?,
                features: r.text(3)?,
                max_jobs: n32(4)?,
                no_remote: r.int(5)? != 0,
                login_ms: time(r, 6)?,
                logout_ms: time(r, 7),
            })
        })?
        .into_iter()
        .flatten()
        .collect())
}

/// `builds` that `filter`'s host, failed and cursor keep, newest first, at
/// most its limit.
pub fn newest_page(builds: &mut Vec<Build>, filter: &Filter) -> Vec<Build> {
    builds.retain(|b| {
        filter
            .host
            .as_ref()
            .as_ref()
            .map_or(true, |h| b.host.as_ref() == Some(h))
            && (!filter.failed || b.failed > 0)
            && filter
                .cursor
                .map_or(true, |c| i64::try_from(b.start_ms).is_ok_and(|s| s < c))
    });
    builds.sort_by_key(|b| std::cmp::Reverse(b.start_ms));
    builds.truncate(filter.limit.clamp(1, MAX_LIMIT));
    std::mem::take(builds)
}
