//! [`Store`]: the SQLite database: opening it (with a one-line error for
//! each way it can be unusable), migrating it, writing batches of
//! [`Record`]s in one transaction each, and deleting what is past the
//! retention.

use super::builds::{BuildRow, OpenBuilds, SqliteBuilds};
use super::record::{JobRecord, Record};
use super::schema::{MIGRATIONS, SCHEMA_VERSION, VERSION_TABLE};
use rusqlite::{params, Connection, ErrorCode, OpenFlags, OptionalExtension, Statement};
use rustc_hash::FxHashMap;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

/// How long a statement waits for another connection's lock before it
/// gives up (then the writer keeps the batch and tries again).
const BUSY_TIMEOUT: Duration = Duration::from_secs(1);

/// Names and files remembered by id; past this the memory starts over.
const CACHE_LIMIT: usize = 1 << 16;

/// Why the history database cannot be used. Each message is one line that
/// names the file and says what to do.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// The file or its folder cannot be written.
    #[error(
        "the history database {0} is read-only: make it (and its folder) writable, \
         or choose another file with --db PATH, or keep no history with --db none"
    )]
    ReadOnly(PathBuf),
    /// Another process holds a lock on it.
    #[error(
        "the history database {0} is locked by another process: stop that process \
         (another icewatch, or an open sqlite3 transaction), or choose another file with --db PATH"
    )]
    Locked(PathBuf),
    /// Not an SQLite database, or damaged.
    #[error(
        "{0} is not an icewatch history database, or it is damaged: move it away \
         (icewatch then starts a new one there), or choose another file with --db PATH"
    )]
    Corrupt(PathBuf),
    /// Written by a newer icewatch.
    #[error(
        "the history database {path} has schema version {found}, newer than this icewatch \
         knows ({known}): use a newer icewatch, or choose another file with --db PATH"
    )]
    Newer {
        /// The file.
        path: PathBuf,
        /// Its version.
        found: u32,
        /// The newest this code knows.
        known: u32,
    },
    /// There is no database there (queries only).
    #[error(
        "there is no history database at {0}: `icewatch monitor` writes one there, \
         or give another with --db PATH"
    )]
    Missing(PathBuf),
    /// The PostgreSQL server cannot be reached.
    #[error(
        "cannot reach the PostgreSQL server of the history {server} ({why}): start it, \
         or correct the host and port in --db"
    )]
    Unreachable {
        /// The server, without the password.
        server: String,
        /// What the connection met.
        why: String,
    },
    /// The PostgreSQL server refused the user.
    #[error(
        "the PostgreSQL server of the history {server} refused user {user:?} \
         (authentication failed): correct the user and password in --db, \
         or let the user in (pg_hba.conf)"
    )]
    Refused {
        /// The server, without the password.
        server: String,
        /// The user.
        user: String,
    },
    /// The database does not exist on the server.
    #[error(
        "there is no database {database:?} on the PostgreSQL server of the history {server}: \
         create it (createdb -O USER {database}) or name another in --db"
    )]
    NoDatabase {
        /// The server, without the password.
        server: String,
        /// The database's name.
        database: String,
    },
    /// The database on the server was written by a newer icewatch.
    #[error(
        "the history database {server} has schema version {found}, newer than this icewatch \
         knows ({known}): use a newer icewatch, or name another database in --db"
    )]
    ServerNewer {
        /// The server, without the password.
        server: String,
        /// Its version.
        found: u32,
        /// The newest this code knows.
        known: u32,
    },
    /// Anything else, with PostgreSQL's words.
    #[error("the history database {server}: {}", super::postgres::words(.source))]
    Postgres {
        /// The server, without the password.
        server: String,
        /// The client's error.
        #[source]
        source: postgres::Error,
    },
    /// Anything else, with SQLite's words.
    #[error("the history database {path}: {source}")]
    Sql {
        /// The file.
        path: PathBuf,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
}

impl HistoryError {
    /// `e`, met while using `path`, as the user should hear of it.
    pub fn of(path: &Path, e: rusqlite::Error) -> HistoryError {
        let path = path.to_path_buf();
        match e.sqlite_error_code() {
            Some(ErrorCode::ReadOnly) => HistoryError::ReadOnly(path),
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => HistoryError::Locked(path),
            Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => {
                HistoryError::Corrupt(path)
            }
            _ => HistoryError::Sql { path, source: e },
        }
    }
}

/// An open history database, ready to write.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
    path: PathBuf,
    /// The database's id of each scheduler session of this process, by the
    /// state's number.
    sessions: HashMap<u32, i64>,
    names: FxHashMap<String, i64>,
    files: FxHashMap<String, i64>,
    builds: OpenBuilds,
}

/// Sets a connection up: WAL, and a bounded wait for locks.
fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // A new database gets pages of 8 KiB (SQLite's default is 4): an
    // insert into `jobs` and its four indexes walks shallower trees and
    // splits pages less often, about 13 % more jobs a CPU-second into a
    // new database in `benches/history.rs` and the same filling one to
    // 1 M jobs. 16 KiB gave 22 % on the first but cost 20 to 30 % on the
    // second, where index pages leave the cache and are read and written
    // back whole. It has to come before WAL and the first table; a
    // database that exists keeps its own size.
    conn.execute_batch("PRAGMA page_size = 8192")?;
    // WAL: readers never block the writer; NORMAL: a commit survives the
    // process being killed (only a power cut may lose the last ones).
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::debug!("the history database keeps journal mode {mode}");
    }
    // An 8 MiB page cache (SQLite's default is 2 MiB) holds the pages that
    // a batch of jobs touches in the table and its indexes: 30 % more jobs a
    // CPU-second in `benches/history.rs`.
    // A checkpoint every 4,000 pages of WAL (32 MiB at 8 KiB a page)
    // instead of 1,000: a page that several commits change is copied into
    // the database once, not at each; 18 % less CPU filling a database to
    // 1 M jobs in `benches/history.rs` (8 KiB pages, in turns).
    conn.execute_batch(
        "PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = OFF; PRAGMA cache_size = -8192; \
         PRAGMA wal_autocheckpoint = 4000;",
    )
}

/// The schema version of `conn`'s database (0: none yet).
pub(crate) fn version(conn: &Connection) -> rusqlite::Result<u32> {
    let exists: bool = conn.query_row(
        "SELECT count(*) > 0 FROM sqlite_master WHERE name = 'icewatch_schema'",
        [],
        |r| r.get(0),
    )?;
    if !exists {
        return Ok(0);
    }
    let v: Option<u32> = conn
        .query_row("SELECT max(version) FROM icewatch_schema", [], |r| r.get(0))
        .optional()?
        .flatten();
    Ok(v.unwrap_or(0))
}

/// Applies the migrations from the database's version up to `target`.
pub(crate) fn migrate_to(conn: &mut Connection, target: u32) -> rusqlite::Result<u32> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    tx.execute_batch(VERSION_TABLE)?;
    let from = version(&tx)?;
    if from >= target {
        return Ok(from);
    }
    for (i, sql) in MIGRATIONS
        .iter()
        .enumerate()
        .take(target as usize)
        .skip(from as usize)
    {
        super::schema::announce(from, i as u32 + 1);
        tx.execute_batch(sql)?;
        tracing::debug!("history schema migrated to version {}", i + 1);
    }
    tx.execute("DELETE FROM icewatch_schema", [])?;
    tx.execute(
        "INSERT INTO icewatch_schema (version) VALUES (?1)",
        [target],
    )?;
    tx.commit()?;
    Ok(from)
}

impl Store {
    /// Opens (or creates, with its folder) the database at `path` and
    /// brings its schema up to date.
    pub fn open(path: &Path) -> Result<Store, HistoryError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if let Err(e) = std::fs::create_dir_all(dir) {
                return Err(HistoryError::Sql {
                    path: path.to_path_buf(),
                    source: rusqlite::Error::InvalidPath(
                        format!("cannot create its folder: {e}").into(),
                    ),
                });
            }
        }
        let err = |e| HistoryError::of(path, e);
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut conn = Connection::open_with_flags(path, flags).map_err(err)?;
        if conn.is_readonly(rusqlite::MAIN_DB).map_err(err)? {
            return Err(HistoryError::ReadOnly(path.to_path_buf()));
        }
        configure(&conn).map_err(err)?;
        let found = version(&conn).map_err(err)?;
        if found > SCHEMA_VERSION {
            return Err(HistoryError::Newer {
                path: path.to_path_buf(),
                found,
                known: SCHEMA_VERSION,
            });
        }
        migrate_to(&mut conn, SCHEMA_VERSION).map_err(err)?;
        Ok(Store {
            conn,
            path: path.to_path_buf(),
            sessions: HashMap::new(),
            names: FxHashMap::default(),
            files: FxHashMap::default(),
            builds: OpenBuilds::default(),
        })
    }

    /// Frees the pages SQLite's cache holds between writes (those of a
    /// burst's indexes: up to the cache's 8 MiB); the next write reads
    /// back the few it needs.
    pub fn release_memory(&self) {
        let _ = self.conn.release_memory();
    }

    /// The database's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The connection, for queries.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// The connection alone, for queries.
    pub fn into_connection(self) -> Connection {
        self.conn
    }

    /// Writes `records` in one transaction: all of them or, on an error,
    /// none (then the caller keeps them and tries again).
    pub fn write(&mut self, records: &[Record]) -> rusqlite::Result<()> {
        let mut new_sessions = Vec::new();
        let result = self.write_in_transaction(records, &mut new_sessions);
        match result {
            Ok(()) => self.sessions.extend(new_sessions),
            // What was learned in the transaction went with it.
            Err(_) => {
                self.names.clear();
                self.files.clear();
                self.builds.forget();
            }
        }
        result
    }

    fn write_in_transaction(
        &mut self,
        records: &[Record],
        new_sessions: &mut Vec<(u32, i64)>,
    ) -> rusqlite::Result<()> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        // Prepared once a transaction: taken from the cache for every
        // statement, it was looked up by its text (700 parameters long)
        // and its bindings cleared each time.
        let mut many = tx.prepare_cached(&INSERT_JOBS)?;
        let mut rest = records;
        while let Some((record, after)) = rest.split_first() {
            // Jobs in a row go many to a statement; the rest one at a time.
            let jobs = rest
                .iter()
                .take(JOBS_PER_INSERT)
                .take_while(|r| matches!(r, Record::Job(_)))
                .count();
            if jobs > 0 {
                let mut one;
                let (rows, insert) = match jobs {
                    JOBS_PER_INSERT => (jobs, &mut many),
                    _ => {
                        one = tx.prepare_cached(&INSERT_ONE_JOB)?;
                        (1, &mut one)
                    }
                };
                for (row, record) in rest[..rows].iter().enumerate() {
                    if let Record::Job(job) = record {
                        let ids = job_ids(
                            &tx,
                            &self.sessions,
                            &mut self.names,
                            &mut self.files,
                            new_sessions,
                            job,
                        )?;
                        bind_job(insert, row, ids, job)?;
                        let [session, _, client, _] = ids;
                        let build = BuildRow::of(job, session.unwrap_or(0), client);
                        self.builds.add(&mut SqliteBuilds(&tx), build)?;
                    }
                }
                insert.raw_execute()?;
                rest = &rest[rows..];
                continue;
            }
            rest = after;
            match record {
                Record::Session {
                    local,
                    scheduler,
                    protocol,
                    start_ms,
                } => {
                    tx.prepare_cached(
                        "INSERT INTO scheduler_sessions (scheduler, protocol, start_ms) VALUES (?1, ?2, ?3)",
                    )?
                    .execute(params![scheduler, protocol, ms(*start_ms)])?;
                    new_sessions.push((*local, tx.last_insert_rowid()));
                }
                Record::SessionEnd { local, end_ms } => {
                    let id = session_id(&tx, &self.sessions, new_sessions, *local, *end_ms)?;
                    tx.prepare_cached("UPDATE scheduler_sessions SET end_ms = ?1 WHERE id = ?2")?
                        .execute(params![ms(*end_ms), id])?;
                }
                Record::Job(_) => {}
                Record::HostLogin(h) => {
                    let session =
                        session_id(&tx, &self.sessions, new_sessions, h.session, h.login_ms)?;
                    let name = lookup(&tx, &mut self.names, "host_names", &h.name)?;
                    tx.prepare_cached(
                        "INSERT INTO host_sessions (session, host_id, name, ip, platform, max_jobs, \
                         no_remote, protocol, features, login_ms) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                    )?
                    .execute(params![
                        session,
                        h.host_id,
                        name,
                        h.ip,
                        h.platform,
                        h.max_jobs,
                        h.no_remote,
                        h.protocol,
                        h.features,
                        ms(h.login_ms)
                    ])?;
                }
                Record::HostLogout {
                    session,
                    host_id,
                    at_ms,
                } => {
                    let session = session_id(&tx, &self.sessions, new_sessions, *session, *at_ms)?;
                    tx.prepare_cached(
                        "UPDATE host_sessions SET logout_ms = ?1 \
                         WHERE session = ?2 AND host_id = ?3 AND logout_ms IS NULL",
                    )?
                    .execute(params![ms(*at_ms), session, host_id])?;
                }
                Record::Load(s) => {
                    let name = lookup(&tx, &mut self.names, "host_names", &s.name)?;
                    tx.prepare_cached(
                        "INSERT INTO load_samples (name, at_ms, load, load_avg1, free_mem_mb) \
                         VALUES (?1, ?2, ?3, ?4, ?5)",
                    )?
                    .execute(params![
                        name,
                        ms(s.at_ms),
                        s.load,
                        s.load_avg1,
                        s.free_mem_mb
                    ])?;
                }
            }
        }
        drop(many);
        self.builds.flush(&mut SqliteBuilds(&tx))?;
        tx.commit()
    }

    /// Deletes at most `chunk` rows of each table that ended before
    /// `cutoff_ms`; returns how many went. Small chunks keep each
    /// transaction short, so that the writer never waits long.
    pub fn expire(&self, cutoff_ms: u64, chunk: usize) -> rusqlite::Result<usize> {
        expire(&self.conn, cutoff_ms, chunk)
    }
}

/// [`Store::expire`] on any connection to the database.
pub(crate) fn expire(conn: &Connection, cutoff_ms: u64, chunk: usize) -> rusqlite::Result<usize> {
    let cutoff = ms(cutoff_ms);
    let chunk = i64::try_from(chunk).unwrap_or(i64::MAX);
    let mut gone = 0;
    for sql in [
        "DELETE FROM jobs WHERE seq IN (SELECT seq FROM jobs WHERE end_ms < ?1 LIMIT ?2)",
        "DELETE FROM builds WHERE seq IN (SELECT seq FROM builds WHERE end_ms < ?1 LIMIT ?2)",
        "DELETE FROM load_samples WHERE rowid IN \
         (SELECT rowid FROM load_samples WHERE at_ms < ?1 LIMIT ?2)",
        "DELETE FROM host_sessions WHERE seq IN \
         (SELECT seq FROM host_sessions WHERE logout_ms < ?1 LIMIT ?2)",
        "DELETE FROM scheduler_sessions WHERE id IN (SELECT id FROM scheduler_sessions s \
         WHERE end_ms < ?1 AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.session = s.id) \
         AND NOT EXISTS (SELECT 1 FROM host_sessions h WHERE h.session = s.id) LIMIT ?2)",
    ] {
        gone += conn.prepare_cached(sql)?.execute(params![cutoff, chunk])?;
    }
    Ok(gone)
}

/// Milliseconds as SQLite stores integers.
pub(crate) fn ms(t: u64) -> i64 {
    i64::try_from(t).unwrap_or(i64::MAX)
}

/// The database's id of the state's session `local`; one without a
/// record of its start (the reader lagged) gets one now.
fn session_id(
    tx: &Connection,
    known: &HashMap<u32, i64>,
    new: &mut Vec<(u32, i64)>,
    local: u32,
    at_ms: u64,
) -> rusqlite::Result<i64> {
    if let Some(&id) = known.get(&local) {
        return Ok(id);
    }
    if let Some(&(_, id)) = new.iter().find(|(l, _)| *l == local) {
        return Ok(id);
    }
    tx.prepare_cached("INSERT INTO scheduler_sessions (scheduler, start_ms) VALUES ('', ?1)")?
        .execute([ms(at_ms)])?;
    let id = tx.last_insert_rowid();
    new.push((local, id));
    Ok(id)
}

/// The id of `name` in `table` (`host_names` or `files`), added if new.
fn lookup(
    tx: &Connection,
    cache: &mut FxHashMap<String, i64>,
    table: &str,
    name: &str,
) -> rusqlite::Result<i64> {
    if let Some(&id) = cache.get(name) {
        return Ok(id);
    }
    let found: Option<i64> = tx
        .prepare_cached(&format!("SELECT id FROM {table} WHERE name = ?1"))?
        .query_row([name], |r| r.get(0))
        .optional()?;
    let id = match found {
        Some(id) => id,
        None => {
            tx.prepare_cached(&format!("INSERT INTO {table} (name) VALUES (?1)"))?
                .execute([name])?;
            tx.last_insert_rowid()
        }
    };
    if cache.len() >= CACHE_LIMIT {
        cache.clear();
    }
    cache.insert(name.to_owned(), id);
    Ok(id)
}

/// The database's ids of `job`'s session, file, submitter and server
/// names, as [`bind_job`] takes them.
fn job_ids(
    tx: &Connection,
    sessions: &HashMap<u32, i64>,
    names: &mut FxHashMap<String, i64>,
    files: &mut FxHashMap<String, i64>,
    new_sessions: &mut Vec<(u32, i64)>,
    job: &JobRecord,
) -> rusqlite::Result<[Option<i64>; 4]> {
    let session = session_id(tx, sessions, new_sessions, job.session, job.start_ms)?;
    let file = lookup(tx, files, "files", &job.file)?;
    let mut name = |n: &Option<Arc<str>>| match n {
        Some(n) => lookup(tx, names, "host_names", n).map(Some),
        None => Ok(None),
    };
    let client = name(&job.client_name)?;
    let server = name(&job.server_name)?;
    Ok([Some(session), Some(file), client, server])
}

/// The columns of `jobs` that a finished job fills, in binding order.
const JOB_COLUMNS: [&str; 22] = [
    "session",
    "id",
    "file",
    "lang",
    "client",
    "client_name",
    "server",
    "server_name",
    "state",
    "reason",
    "exit_code",
    "submit_ms",
    "start_ms",
    "end_ms",
    "real_ms",
    "user_ms",
    "sys_ms",
    "page_faults",
    "in_compressed",
    "in_uncompressed",
    "out_compressed",
    "out_uncompressed",
];

/// Finished jobs one `INSERT` carries when that many come in a row: one
/// statement for many rows spares SQLite's work per statement (25 % more
/// jobs a CPU-second than one row a statement in `benches/history.rs`).
/// `OR FAIL`: an error leaves the rows before it in place instead of
/// undoing the statement, which spares SQLite a statement journal (the
/// whole transaction is rolled back on any error anyway); with the
/// journal, 32 rows a statement took twice the time of one.
const JOBS_PER_INSERT: usize = 32;

/// `INSERT INTO jobs (...) VALUES (?, ...), ...` for `rows` jobs.
fn job_insert(rows: usize) -> String {
    let row = format!("({})", vec!["?"; JOB_COLUMNS.len()].join(","));
    format!(
        "INSERT OR FAIL INTO jobs ({}) VALUES {}",
        JOB_COLUMNS.join(","),
        vec![row; rows].join(",")
    )
}

static INSERT_ONE_JOB: LazyLock<String> = LazyLock::new(|| job_insert(1));
static INSERT_JOBS: LazyLock<String> = LazyLock::new(|| job_insert(JOBS_PER_INSERT));

/// Binds `job` as the `row`th row of an insert of [`JOB_COLUMNS`].
fn bind_job(
    stmt: &mut Statement<'_>,
    row: usize,
    ids: [Option<i64>; 4],
    job: &JobRecord,
) -> rusqlite::Result<()> {
    let [session, file, client_name, server_name] = ids;
    let st = job.stats.as_ref();
    // Each value bound with its own type: no `dyn ToSql` a value.
    let mut at = row * JOB_COLUMNS.len();
    macro_rules! bind {
        ($($value:expr),* $(,)?) => {$(
            at += 1;
            stmt.raw_bind_parameter(at, $value)?;
        )*};
    }
    bind!(
        session,
        job.id,
        file,
        job.lang,
        job.client,
        client_name,
        job.server,
        server_name,
        job.state.name(),
        job.reason.name(),
        job.exit_code,
        job.submit_ms.map(ms),
        ms(job.start_ms),
        ms(job.end_ms),
        st.map(|s| s.real_ms),
        st.map(|s| s.user_ms),
        st.map(|s| s.sys_ms),
        st.map(|s| s.page_faults),
        st.map(|s| s.in_compressed),
        st.map(|s| s.in_uncompressed),
        st.map(|s| s.out_compressed),
        st.map(|s| s.out_uncompressed),
    );
    Ok(())
}
