//! The history in PostgreSQL (`--db postgres://...`): the same schema as
//! SQLite's in PostgreSQL's dialect ([`PG_MIGRATIONS`]), shared by as many
//! icewatch instances as write to it. Migrations run under an advisory
//! lock, so that two instances starting at once migrate once; names and
//! files are added with `INSERT ... ON CONFLICT`, so that two writers
//! adding the same one agree on its id; each scheduler session has an id
//! of its own. A batch of finished jobs goes in with one `INSERT` of
//! arrays (`unnest`), which costs less CPU than a binary `COPY` of the
//! same rows (`benches/history.rs`, BENCHMARKS.md).
//!
//! The synchronous client drives a runtime of its own: it is used from the
//! writer's and the retention's threads, and from blocking tasks.

use super::builds::{BuildRow, OpenBuilds, PgBuilds};
use super::record::Record;
use super::schema::{PG_MIGRATIONS, SCHEMA_VERSION, VERSION_TABLE};
use super::store::{ms, HistoryError};
use postgres::config::{Host, SslMode};
use postgres::error::SqlState;
use postgres::types::ToSql;
use postgres::{Client, Config, NoTls, Transaction};
use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::time::Duration;

/// A connection attempt gives up after this long (the writer then says
/// that the history is paused, and tries again later).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The advisory lock held while migrating (any number; this one spells
/// "icew").
const MIGRATION_LOCK: i64 = 0x6963_6577;

/// Names and files remembered by id; past this the memory starts over.
const CACHE_LIMIT: usize = 1 << 16;

/// A PostgreSQL server and database, from a `postgres://` or
/// `postgresql://` URL.
#[derive(Clone)]
pub struct Server {
    config: Box<Config>,
    shown: String,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

impl fmt::Display for Server {
    /// `postgres://user@host:port/database` (or
    /// `postgres://user@/database?host=/socket/dir`): never the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

impl PartialEq for Server {
    fn eq(&self, other: &Server) -> bool {
        self.shown == other.shown
    }
}

impl Eq for Server {}

impl Server {
    /// Whether `s` names a PostgreSQL server rather than a file.
    pub fn is_url(s: &str) -> bool {
        s.starts_with("postgres://") || s.starts_with("postgresql://")
    }

    /// The server of a `postgres://` URL. Without a host, the local
    /// socket in `/var/run/postgresql`; without a user, the system user's
    /// name. TLS is not supported: `sslmode=require` is refused.
    pub fn parse(url: &str) -> Result<Server, String> {
        let mut config: Config = url
            .parse()
            .map_err(|e| format!("{:?} is not a PostgreSQL URL: {e}", hide_password(url)))?;
        if config.get_ssl_mode() == SslMode::Require {
            return Err(format!(
                "{}: sslmode=require, but this icewatch does not speak TLS to PostgreSQL: \
                 reach the server over a local socket, an SSH tunnel or a trusted network \
                 (sslmode=disable)",
                hide_password(url)
            ));
        }
        if config.get_hosts().is_empty() {
            config.host_path("/var/run/postgresql");
        }
        config.connect_timeout(CONNECT_TIMEOUT);
        config.application_name("icewatch");
        Ok(Server::of(config))
    }

    /// The same server's database `name`.
    pub fn with_database(&self, name: &str) -> Server {
        let mut config = (*self.config).clone();
        config.dbname(name);
        Server::of(config)
    }

    /// The server `config` names, shown without its password.
    fn of(config: Config) -> Server {
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let user = config
            .get_user()
            .map(|u| format!("{u}@"))
            .unwrap_or_default();
        let db = config
            .get_dbname()
            .unwrap_or_else(|| config.get_user().unwrap_or(""));
        let shown = match config.get_hosts().first() {
            Some(Host::Unix(dir)) if port == 5432 => {
                format!("postgres://{user}/{db}?host={}", dir.display())
            }
            Some(Host::Unix(dir)) => {
                format!("postgres://{user}/{db}?host={}&port={port}", dir.display())
            }
            Some(Host::Tcp(host)) => format!("postgres://{user}{host}:{port}/{db}"),
            None => format!("postgres://{user}/{db}"),
        };
        Server {
            config: Box::new(config),
            shown,
        }
    }

    /// The database's name (by default the user's, as PostgreSQL does).
    pub fn database(&self) -> &str {
        self.config
            .get_dbname()
            .or_else(|| self.config.get_user())
            .unwrap_or("")
    }

    /// Connects. The client drives a runtime of its own, which may not
    /// start on a thread that runs async tasks: use it from a thread of
    /// its own or in `spawn_blocking`.
    pub fn connect(&self) -> Result<Client, postgres::Error> {
        self.config.connect(NoTls)
    }

    /// `e`, met while using this server, as the user should hear of it.
    pub fn error(&self, e: postgres::Error) -> HistoryError {
        let server = self.shown.clone();
        match e.code() {
            Some(c)
                if *c == SqlState::INVALID_PASSWORD
                    || *c == SqlState::INVALID_AUTHORIZATION_SPECIFICATION =>
            {
                HistoryError::Refused {
                    server,
                    user: self
                        .config
                        .get_user()
                        .map_or_else(|| std::env::var("USER").unwrap_or_default(), str::to_owned),
                }
            }
            Some(c) if *c == SqlState::INVALID_CATALOG_NAME => HistoryError::NoDatabase {
                server,
                database: self.database().to_owned(),
            },
            _ => {
                let io = std::error::Error::source(&e)
                    .and_then(|s| s.downcast_ref::<std::io::Error>())
                    .map(std::io::Error::kind);
                match io {
                    Some(
                        std::io::ErrorKind::ConnectionRefused
                        | std::io::ErrorKind::NotFound
                        | std::io::ErrorKind::TimedOut,
                    ) => HistoryError::Unreachable {
                        server,
                        why: words(&e),
                    },
                    _ => HistoryError::Postgres { server, source: e },
                }
            }
        }
    }
}

/// What the server or the client said, in one line: the server's own
/// message ("permission denied for table jobs") rather than the
/// client's "db error".
pub(crate) fn words(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => db.message().to_owned(),
        None => match std::error::Error::source(e) {
            Some(cause) => format!("{e}: {cause}"),
            None => e.to_string(),
        }
        .replace('\n', " "),
    }
}

/// `url` with its password replaced by `***`, for messages.
fn hide_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (auth, host) = match rest.split_once('@') {
        Some(parts) => parts,
        None => return url.to_owned(),
    };
    match auth.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

/// The schema version of the database (0: none yet).
fn version(tx: &mut Transaction<'_>) -> Result<u32, postgres::Error> {
    let exists: bool = tx
        .query_one("SELECT to_regclass('icewatch_schema') IS NOT NULL", &[])?
        .get(0);
    if !exists {
        return Ok(0);
    }
    let v: Option<i32> = tx
        .query_one("SELECT max(version) FROM icewatch_schema", &[])?
        .get(0);
    Ok(v.and_then(|v| u32::try_from(v).ok()).unwrap_or(0))
}

/// Brings the database's schema up to `target` under the advisory lock
/// (another instance starting at once waits, then finds it done); returns
/// the version found, which may be newer than `target`.
pub(crate) fn migrate_to(client: &mut Client, target: u32) -> Result<u32, postgres::Error> {
    let mut tx = client.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
    let from = version(&mut tx)?;
    if from >= target {
        return Ok(from);
    }
    tx.batch_execute(VERSION_TABLE)?;
    for (i, sql) in PG_MIGRATIONS
        .iter()
        .enumerate()
        .take(target as usize)
        .skip(from as usize)
    {
        super::schema::announce(from, i as u32 + 1);
        tx.batch_execute(sql)?;
        tracing::debug!("history schema migrated to version {}", i + 1);
    }
    tx.execute("DELETE FROM icewatch_schema", &[])?;
    let target_i32 = i32::try_from(target).unwrap_or(i32::MAX);
    tx.execute(
        "INSERT INTO icewatch_schema (version) VALUES ($1)",
        &[&target_i32],
    )?;
    tx.commit()?;
    Ok(from)
}

/// An open history in PostgreSQL, ready to write.
pub struct PgStore {
    server: Server,
    client: Client,
    /// The database's id of each scheduler session of this process, by the
    /// state's number.
    sessions: HashMap<u32, i64>,
    names: HashMap<String, i64>,
    files: HashMap<String, i64>,
    builds: OpenBuilds,
    /// The last write failed: the next connects again first.
    reconnect: bool,
}

impl fmt::Debug for PgStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgStore")
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

/// A batch of jobs in one statement: a column's values as an array
/// each, the integers first ([`JOB_INTEGERS`] of them), then `lang`,
/// `state` and `reason`. Cheaper than a binary `COPY` of the same rows
/// (`benches/history.rs`).
const INSERT_JOBS: &str =
    "INSERT INTO jobs (session, id, file, client, client_name, server, server_name, \
     exit_code, submit_ms, start_ms, end_ms, real_ms, user_ms, sys_ms, page_faults, \
     in_compressed, in_uncompressed, out_compressed, out_uncompressed, lang, state, \
     reason) SELECT * FROM unnest($1::int8[], $2::int8[], $3::int8[], $4::int8[], \
     $5::int8[], $6::int8[], $7::int8[], $8::int8[], $9::int8[], $10::int8[], \
     $11::int8[], $12::int8[], $13::int8[], $14::int8[], $15::int8[], $16::int8[], \
     $17::int8[], $18::int8[], $19::int8[], $20::text[], $21::text[], $22::text[])";

/// The integer columns of [`INSERT_JOBS`].
const JOB_INTEGERS: usize = 19;

impl PgStore {
    /// Connects to `server` and brings its schema up to date. Blocks: in
    /// async code, call it from `spawn_blocking` or `block_in_place`.
    pub fn open(server: &Server) -> Result<PgStore, HistoryError> {
        let err = |e| server.error(e);
        let mut client = server.connect().map_err(err)?;
        let found = migrate_to(&mut client, SCHEMA_VERSION).map_err(err)?;
        if found > SCHEMA_VERSION {
            return Err(HistoryError::ServerNewer {
                server: server.to_string(),
                found,
                known: SCHEMA_VERSION,
            });
        }
        Ok(PgStore {
            server: server.clone(),
            client,
            sessions: HashMap::new(),
            names: HashMap::new(),
            files: HashMap::new(),
            builds: OpenBuilds::default(),
            reconnect: false,
        })
    }

    /// The server.
    pub fn server(&self) -> &Server {
        &self.server
    }

    /// The connection alone, for queries.
    pub fn into_client(self) -> Client {
        self.client
    }

    /// Writes `records` in one transaction: all of them or, on an error,
    /// none (then the caller keeps them and tries again). After a
    /// failure the connection is made again first: the server may have
    /// restarted or dropped it.
    pub fn write(&mut self, records: &[Record]) -> Result<(), postgres::Error> {
        self.connected()?;
        let mut new_sessions = Vec::new();
        let result = self.write_in_transaction(records, &mut new_sessions);
        match result {
            Ok(()) => self.sessions.extend(new_sessions),
            // What was learned in the transaction went with it.
            Err(_) => {
                self.names.clear();
                self.files.clear();
                self.builds.forget();
                self.reconnect = true;
            }
        }
        result
    }

    /// Connects again if the last attempt failed or the server closed
    /// the connection.
    fn connected(&mut self) -> Result<(), postgres::Error> {
        if self.reconnect || self.client.is_closed() {
            self.client = self.server.connect()?;
            self.reconnect = false;
        }
        Ok(())
    }

    fn write_in_transaction(
        &mut self,
        records: &[Record],
        new_sessions: &mut Vec<(u32, i64)>,
    ) -> Result<(), postgres::Error> {
        let mut tx = self.client.transaction()?;
        // Every name and file first, in one statement each.
        let mut names = BTreeSet::new();
        let mut files = BTreeSet::new();
        for record in records {
            match record {
                Record::Job(j) => {
                    files.insert(&*j.file);
                    names.extend(j.client_name.as_deref());
                    names.extend(j.server_name.as_deref());
                }
                Record::HostLogin(h) => {
                    names.insert(h.name.as_str());
                }
                Record::Load(s) => {
                    names.insert(s.name.as_str());
                }
                _ => {}
            }
        }
        learn(&mut tx, &mut self.names, "host_names", names)?;
        learn(&mut tx, &mut self.files, "files", files)?;
        let mut sessions = Sessions {
            known: &self.sessions,
            new: new_sessions,
        };
        let mut jobs = Vec::new();
        let mut loads = Loads::default();
        for record in records {
            match record {
                Record::Session {
                    local,
                    scheduler,
                    protocol,
                    start_ms,
                } => {
                    let protocol = protocol.map(i64::from);
                    let id: i64 = tx
                        .query_one(
                            "INSERT INTO scheduler_sessions (scheduler, protocol, start_ms) \
                             VALUES ($1, $2, $3) RETURNING id",
                            &[scheduler, &protocol, &ms(*start_ms)],
                        )?
                        .get(0);
                    sessions.new.push((*local, id));
                }
                Record::SessionEnd { local, end_ms } => {
                    let id = sessions.id(&mut tx, *local, *end_ms)?;
                    tx.execute(
                        "UPDATE scheduler_sessions SET end_ms = $1 WHERE id = $2",
                        &[&ms(*end_ms), &id],
                    )?;
                }
                Record::Job(job) => {
                    let session = sessions.id(&mut tx, job.session, job.start_ms)?;
                    jobs.push((session, job));
                }
                Record::HostLogin(h) => {
                    let session = sessions.id(&mut tx, h.session, h.login_ms)?;
                    let name = self.names.get(&h.name).copied().unwrap_or_default();
                    tx.execute(
                        "INSERT INTO host_sessions (session, host_id, name, ip, platform, \
                         max_jobs, no_remote, protocol, features, login_ms) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                        &[
                            &session,
                            &i64::from(h.host_id),
                            &name,
                            &h.ip,
                            &h.platform,
                            &i64::from(h.max_jobs),
                            &i64::from(h.no_remote),
                            &i64::from(h.protocol),
                            &h.features,
                            &ms(h.login_ms),
                        ],
                    )?;
                }
                Record::HostLogout {
                    session,
                    host_id,
                    at_ms,
                } => {
                    let session = sessions.id(&mut tx, *session, *at_ms)?;
                    tx.execute(
                        "UPDATE host_sessions SET logout_ms = $1 \
                         WHERE session = $2 AND host_id = $3 AND logout_ms IS NULL",
                        &[&ms(*at_ms), &session, &i64::from(*host_id)],
                    )?;
                }
                Record::Load(s) => {
                    loads
                        .name
                        .push(self.names.get(&s.name).copied().unwrap_or_default());
                    loads.at_ms.push(ms(s.at_ms));
                    loads.load.push(i64::from(s.load));
                    loads.load_avg1.push(s.load_avg1);
                    loads.free_mem_mb.push(s.free_mem_mb.map(i64::from));
                }
            }
        }
        if !jobs.is_empty() {
            let name = |n: &Option<std::sync::Arc<str>>| {
                n.as_deref().and_then(|n| self.names.get(n).copied())
            };
            let mut integers: [Vec<Option<i64>>; JOB_INTEGERS] = Default::default();
            let (mut lang, mut state, mut reason) = (Vec::new(), Vec::new(), Vec::new());
            for (session, job) in &jobs {
                let st = job.stats.as_ref();
                let stat = |f: fn(&crate::monitor::JobStats) -> u32| st.map(|s| i64::from(f(s)));
                let file = self.files.get(&*job.file).copied().unwrap_or_default();
                let row: [Option<i64>; JOB_INTEGERS] = [
                    Some(*session),
                    Some(i64::from(job.id)),
                    Some(file),
                    job.client.map(i64::from),
                    name(&job.client_name),
                    job.server.map(i64::from),
                    name(&job.server_name),
                    job.exit_code.map(i64::from),
                    job.submit_ms.map(ms),
                    Some(ms(job.start_ms)),
                    Some(ms(job.end_ms)),
                    stat(|s| s.real_ms),
                    stat(|s| s.user_ms),
                    stat(|s| s.sys_ms),
                    stat(|s| s.page_faults),
                    stat(|s| s.in_compressed),
                    stat(|s| s.in_uncompressed),
                    stat(|s| s.out_compressed),
                    stat(|s| s.out_uncompressed),
                ];
                for (column, value) in integers.iter_mut().zip(row) {
                    column.push(value);
                }
                lang.push(job.lang);
                state.push(job.state.name());
                reason.push(job.reason.name());
            }
            let mut params: Vec<&(dyn ToSql + Sync)> =
                integers.iter().map(|c| c as &(dyn ToSql + Sync)).collect();
            params.extend([&lang as &(dyn ToSql + Sync), &state, &reason]);
            tx.execute(INSERT_JOBS, &params)?;
            let mut table = PgBuilds(&mut tx);
            for (session, job) in &jobs {
                let build = BuildRow::of(job, *session, name(&job.client_name));
                self.builds.add(&mut table, build)?;
            }
            self.builds.flush(&mut table)?;
        }
        if !loads.name.is_empty() {
            tx.execute(
                "INSERT INTO load_samples (name, at_ms, load, load_avg1, free_mem_mb) \
                 SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], \
                 $4::float8[], $5::bigint[])",
                &[
                    &loads.name,
                    &loads.at_ms,
                    &loads.load,
                    &loads.load_avg1,
                    &loads.free_mem_mb,
                ],
            )?;
        }
        tx.commit()
    }

    /// Deletes at most `chunk` rows of each table that ended before
    /// `cutoff_ms`; returns how many went.
    pub fn expire(&mut self, cutoff_ms: u64, chunk: usize) -> Result<usize, postgres::Error> {
        self.connected()?;
        let cutoff = ms(cutoff_ms);
        let chunk = i64::try_from(chunk).unwrap_or(i64::MAX);
        let mut gone = 0;
        for sql in [
            "DELETE FROM jobs WHERE seq IN (SELECT seq FROM jobs WHERE end_ms < $1 LIMIT $2)",
            "DELETE FROM builds WHERE seq IN (SELECT seq FROM builds WHERE end_ms < $1 LIMIT $2)",
            "DELETE FROM load_samples WHERE ctid IN \
             (SELECT ctid FROM load_samples WHERE at_ms < $1 LIMIT $2)",
            "DELETE FROM host_sessions WHERE seq IN \
             (SELECT seq FROM host_sessions WHERE logout_ms < $1 LIMIT $2)",
            "DELETE FROM scheduler_sessions WHERE id IN (SELECT id FROM scheduler_sessions s \
             WHERE end_ms < $1 AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.session = s.id) \
             AND NOT EXISTS (SELECT 1 FROM host_sessions h WHERE h.session = s.id) LIMIT $2)",
        ] {
            gone += self
                .client
                .execute(sql, &[&cutoff, &chunk])
                .inspect_err(|_| self.reconnect = true)?;
        }
        Ok(usize::try_from(gone).unwrap_or(usize::MAX))
    }
}

/// A batch's load samples, column by column (one `INSERT` of arrays).
#[derive(Default)]
struct Loads {
    name: Vec<i64>,
    at_ms: Vec<i64>,
    load: Vec<i64>,
    load_avg1: Vec<Option<f64>>,
    free_mem_mb: Vec<Option<i64>>,
}

/// The scheduler sessions of a batch: those known, those added in it.
struct Sessions<'a> {
    known: &'a HashMap<u32, i64>,
    new: &'a mut Vec<(u32, i64)>,
}

impl Sessions<'_> {
    /// The database's id of the state's session `local`; one without a
    /// record of its start (the reader lagged) gets one now.
    fn id(
        &mut self,
        tx: &mut Transaction<'_>,
        local: u32,
        at_ms: u64,
    ) -> Result<i64, postgres::Error> {
        if let Some(&id) = self.known.get(&local) {
            return Ok(id);
        }
        if let Some(&(_, id)) = self.new.iter().find(|(l, _)| *l == local) {
            return Ok(id);
        }
        let id: i64 = tx
            .query_one(
                "INSERT INTO scheduler_sessions (scheduler, start_ms) VALUES ('', $1) RETURNING id",
                &[&ms(at_ms)],
            )?
            .get(0);
        self.new.push((local, id));
        Ok(id)
    }
}

/// Adds the `wanted` names that `cache` does not know to `table`
/// (`host_names` or `files`) unless another writer did, and learns their
/// ids. In sorted order, so that two writers never wait for each other in
/// a circle.
fn learn(
    tx: &mut Transaction<'_>,
    cache: &mut HashMap<String, i64>,
    table: &str,
    wanted: BTreeSet<&str>,
) -> Result<(), postgres::Error> {
    if cache.len() >= CACHE_LIMIT {
        cache.clear();
    }
    let missing: Vec<&str> = wanted
        .into_iter()
        .filter(|n| !cache.contains_key(*n))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    tx.execute(
        &format!(
            "INSERT INTO {table} (name) SELECT unnest($1::text[]) ORDER BY 1 \
             ON CONFLICT (name) DO NOTHING"
        ),
        &[&missing],
    )?;
    for row in tx.query(
        &format!("SELECT id, name FROM {table} WHERE name = ANY($1)"),
        &[&missing],
    )? {
        cache.insert(row.get(1), row.get(0));
    }
    Ok(())
}
