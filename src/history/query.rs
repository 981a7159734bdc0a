//! Reading the history back: finished jobs, host sessions and builds,
//! filtered by time, host and file, newest first (by end, or by login), a
//! page at a time (the cursor is the `seq` of the last row of the page
//! before). `icewatch
//! history` and `GET /api/v1/history/*` share these.

use super::store::{ms, HistoryError};
use super::SCHEMA_VERSION;
pub use crate::insights::Build;
use rusqlite::types::ToSql;
use rusqlite::{Connection, OpenFlags, OptionalExtension, Row};
use serde::Serialize;
use std::path::Path;

/// The most rows one query returns.
pub const MAX_LIMIT: usize = 10_000;

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
            let conn =
                Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(err)?;
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
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(err)?;
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
}

impl Filter {
    /// The filter of an HTTP query: `since`, `until` (ms since the epoch),
    /// `host`, `file`, `failed` (`true` or `1`), `limit` (1 to
    /// [`MAX_LIMIT`], default [`DEFAULT_LIMIT`]), `cursor` (the `next` of
    /// the page before). The error names the parameter.
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

const JOB_COLUMNS: &str = "j.seq, j.id, j.session, s.scheduler, f.name, j.lang, j.client, \
     c.name, j.server, v.name, j.state, j.reason, j.submit_ms, j.start_ms, j.end_ms, \
     j.exit_code, j.real_ms, j.user_ms, j.sys_ms, j.page_faults, j.in_compressed, \
     j.in_uncompressed, j.out_compressed, j.out_uncompressed";

const JOB_JOINS: &str = "JOIN files f ON f.id = j.file \
     LEFT JOIN scheduler_sessions s ON s.id = j.session \
     LEFT JOIN host_names c ON c.id = j.client_name \
     LEFT JOIN host_names v ON v.id = j.server_name";

fn job_row(r: &Row<'_>) -> rusqlite::Result<JobRow> {
    Ok(JobRow {
        seq: r.get(0)?,
        id: r.get(1)?,
        session: r.get(2)?,
        scheduler: r.get(3)?,
        file: r.get(4)?,
        lang: r.get(5)?,
        client: r.get(6)?,
        client_name: r.get(7)?,
        server: r.get(8)?,
        server_name: r.get(9)?,
        state: r.get(10)?,
        reason: r.get(11)?,
        submit_ms: r.get(12)?,
        start_ms: r.get(13)?,
        end_ms: r.get(14)?,
        exit_code: r.get(15)?,
        real_ms: r.get(16)?,
        user_ms: r.get(17)?,
        sys_ms: r.get(18)?,
        page_faults: r.get(19)?,
        in_compressed: r.get(20)?,
        in_uncompressed: r.get(21)?,
        out_compressed: r.get(22)?,
        out_uncompressed: r.get(23)?,
    })
}

/// Conditions and their parameters, numbered as they are added.
#[derive(Default)]
struct Where {
    conditions: Vec<String>,
    params: Vec<Box<dyn ToSql>>,
}

impl Where {
    /// Adds `condition`, each `?` of which is the parameter `value`.
    fn add(&mut self, condition: &str, value: impl ToSql + 'static) {
        self.params.push(Box::new(value));
        let n = self.params.len();
        self.conditions
            .push(condition.replace('?', &format!("?{n}")));
    }

    /// `WHERE` and the conditions, or nothing without any.
    fn clause(&self) -> String {
        if self.conditions.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", self.conditions.join(" AND "))
        }
    }

    /// `SELECT select WHERE ... ORDER BY time DESC, seq DESC LIMIT n`
    /// (`time` and `seq` columns of `table`, alias `t`), with its
    /// parameters: newest first, by the index on `time`. The cursor's row
    /// is looked up for its time, so that the next page starts from the
    /// index too.
    fn query(
        mut self,
        conn: &Connection,
        select: &str,
        (table, t, time): (&str, &str, &str),
        filter: &Filter,
    ) -> rusqlite::Result<(String, Vec<Box<dyn ToSql>>)> {
        if let Some(cursor) = filter.cursor {
            let at: Option<i64> = conn
                .prepare_cached(&format!("SELECT {time} FROM {table} WHERE seq = ?1"))?
                .query_row([cursor], |r| r.get(0))
                .optional()?;
            match at {
                Some(at) => {
                    self.add(&format!("{t}.{time} <= ?"), at);
                    let n = self.params.len();
                    self.params.push(Box::new(cursor));
                    let m = self.params.len();
                    let older = format!("({t}.{time} < ?{n} OR {t}.seq < ?{m})");
                    self.conditions.push(older);
                }
                None => self.add(&format!("{t}.seq < ?"), cursor),
            }
        }
        let conditions = if self.conditions.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", self.conditions.join(" AND "))
        };
        self.params
            .push(Box::new(filter.limit.clamp(1, MAX_LIMIT) as i64));
        let sql = format!(
            "{select} {conditions} ORDER BY {t}.{time} DESC, {t}.seq DESC LIMIT ?{}",
            self.params.len()
        );
        Ok((sql, self.params))
    }
}

/// Runs `sql` with `params`, each row made by `row`.
fn rows<T>(
    conn: &Connection,
    (sql, params): (String, Vec<Box<dyn ToSql>>),
    row: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<Vec<T>> {
    let refs: Vec<&dyn ToSql> = params.iter().map(|p| p.as_ref() as &dyn ToSql).collect();
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(refs.as_slice(), row)?;
    rows.collect()
}

/// The id of the host named `name`, if the history knows it.
fn host_id(conn: &Connection, name: &str) -> rusqlite::Result<Option<i64>> {
    conn.prepare_cached("SELECT id FROM host_names WHERE name = ?1")?
        .query_row([name], |r| r.get(0))
        .optional()
}

/// Finished jobs, newest first.
pub fn jobs(conn: &Connection, filter: &Filter) -> rusqlite::Result<Vec<JobRow>> {
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
    let select = format!("SELECT {JOB_COLUMNS} FROM jobs j {JOB_JOINS}");
    let query = w.query(conn, &select, ("jobs", "j", "end_ms"), filter)?;
    rows(conn, query, job_row)
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
pub fn hosts(conn: &Connection, filter: &Filter) -> rusqlite::Result<Vec<HostRow>> {
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
    let select = "SELECT h.seq, h.session, h.host_id, n.name, h.ip, h.platform, h.max_jobs, \
         h.no_remote, h.protocol, h.features, h.login_ms, h.logout_ms \
         FROM host_sessions h JOIN host_names n ON n.id = h.name";
    let query = w.query(conn, select, ("host_sessions", "h", "login_ms"), filter)?;
    rows(conn, query, |r| {
        Ok(HostRow {
            seq: r.get(0)?,
            session: r.get(1)?,
            id: r.get(2)?,
            name: r.get(3)?,
            ip: r.get(4)?,
            platform: r.get(5)?,
            max_jobs: r.get(6)?,
            no_remote: r.get(7)?,
            protocol: r.get(8)?,
            features: r.get(9)?,
            login_ms: r.get(10)?,
            logout_ms: r.get(11)?,
        })
    })
}

/// Builds (`insights::builds`) of the jobs that ended in the filter's
/// window, newest first: each submitter's jobs, split where none was
/// submitted, ran nor began for `gap_ms`, with their reasons read against
/// every job of the window and the host sessions. `host` picks a
/// submitter; `failed` keeps builds with a failure; the cursor (the
/// `start_ms` of the last build of the page before) pages back; `file`
/// does not apply.
pub fn builds(conn: &Connection, filter: &Filter, gap_ms: u64) -> rusqlite::Result<Vec<Build>> {
    use crate::insights::{end_reason, group, job_state, Finished, HostSpan};
    let mut w = Where::default();
    if let Some(since) = filter.since_ms {
        w.add("j.end_ms >= ?", ms(since));
    }
    if let Some(until) = filter.until_ms {
        w.add("j.end_ms < ?", ms(until));
    }
    let conditions = w.clause();
    // Host names are few: read once and shared, not joined per job.
    let names: std::collections::HashMap<i64, std::sync::Arc<str>> = rows(
        conn,
        ("SELECT id, name FROM host_names".to_owned(), Vec::new()),
        |r| Ok((r.get(0)?, std::sync::Arc::from(r.get::<_, String>(1)?))),
    )?
    .into_iter()
    .collect();
    let name = |id: Option<i64>| id.and_then(|id| names.get(&id).cloned());
    let sql = format!(
        "SELECT j.client_name, j.server_name, f.name, j.state, j.reason, j.exit_code, \
         j.submit_ms, j.start_ms, j.end_ms, j.real_ms, j.in_uncompressed \
         FROM jobs j JOIN files f ON f.id = j.file {conditions}"
    );
    let jobs: Vec<Option<Finished>> = rows(conn, (sql, w.params), |r| {
        let (state, reason): (String, String) = (r.get(3)?, r.get(4)?);
        // A state or reason this code does not know (a newer writer's)
        // leaves the job out rather than guess.
        let Some((state, reason)) = job_state(&state).zip(end_reason(&reason)) else {
            return Ok(None);
        };
        Ok(Some(Finished {
            client: name(r.get(0)?),
            server: name(r.get(1)?),
            file: r.get(2)?,
            state,
            reason,
            exit_code: r.get(5)?,
            submit_ms: r.get(6)?,
            start_ms: r.get(7)?,
            end_ms: r.get(8)?,
            real_ms: r.get(9)?,
            in_uncompressed: r.get(10)?,
        }))
    })?;
    let jobs: Vec<Finished> = jobs.into_iter().flatten().collect();
    let mut h = Where::default();
    if let Some(since) = filter.since_ms {
        h.add("(h.logout_ms IS NULL OR h.logout_ms >= ?)", ms(since));
    }
    if let Some(until) = filter.until_ms {
        h.add("h.login_ms < ?", ms(until));
    }
    let conditions = h.clause();
    let sql = format!(
        "SELECT n.name, h.platform, h.protocol, h.features, h.max_jobs, h.no_remote, \
         h.login_ms, h.logout_ms FROM host_sessions h JOIN host_names n ON n.id = h.name \
         {conditions}"
    );
    let hosts = rows(conn, (sql, h.params), |r| {
        Ok(HostSpan {
            name: r.get(0)?,
            platform: r.get(1)?,
            protocol: r.get(2)?,
            features: r.get(3)?,
            max_jobs: r.get(4)?,
            no_remote: r.get(5)?,
            login_ms: r.get(6)?,
            logout_ms: r.get(7)?,
        })
    })?;
    let mut builds = group(&jobs, &hosts, gap_ms, None);
    Ok(newest_page(&mut builds, filter))
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
