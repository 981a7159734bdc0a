//! Where the history is kept ([`Location`]: an SQLite file or a
//! PostgreSQL server), and the two backends behind one face: [`Database`]
//! to write, [`Reading`] to read back.

use super::postgres::{PgStore, Server};
use super::query::{self, Build, Filter, HostRow, JobRow};
use super::record::Record;
use super::store::{HistoryError, Store};
use std::fmt;
use std::path::PathBuf;

/// Where the history is kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// An SQLite file.
    File(PathBuf),
    /// A PostgreSQL database.
    Postgres(Server),
}

impl Location {
    /// A `postgres://` or `postgresql://` URL, else a file's path.
    pub fn parse(s: &str) -> Result<Location, String> {
        if Server::is_url(s) {
            Server::parse(s).map(Location::Postgres)
        } else if s.contains("://") {
            Err(format!(
                "{s:?}: the history is an SQLite file (a path) or a PostgreSQL database \
                 (postgres://USER@HOST/DATABASE)"
            ))
        } else {
            Ok(Location::File(PathBuf::from(s)))
        }
    }
}

impl fmt::Display for Location {
    /// The file, or the server without the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::File(p) => p.display().fmt(f),
            Location::Postgres(s) => s.fmt(f),
        }
    }
}

impl From<PathBuf> for Location {
    fn from(path: PathBuf) -> Location {
        Location::File(path)
    }
}

/// An open history, ready to write: SQLite's or PostgreSQL's.
// One or two a process, moved once: their sizes do not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Database {
    /// An SQLite file.
    Sqlite(Store),
    /// A PostgreSQL database.
    Postgres(PgStore),
}

impl From<Store> for Database {
    fn from(store: Store) -> Database {
        Database::Sqlite(store)
    }
}

impl Database {
    /// Opens (or creates) the history at `at` and brings its schema up
    /// to date.
    pub fn open(at: &Location) -> Result<Database, HistoryError> {
        match at {
            Location::File(path) => Store::open(path).map(Database::Sqlite),
            Location::Postgres(server) => PgStore::open(server).map(Database::Postgres),
        }
    }

    /// Where it is.
    pub fn location(&self) -> Location {
        match self {
            Database::Sqlite(s) => Location::File(s.path().to_path_buf()),
            Database::Postgres(p) => Location::Postgres(p.server().clone()),
        }
    }

    /// Writes `records` in one transaction: all or none.
    pub fn write(&mut self, records: &[Record]) -> Result<(), HistoryError> {
        match self {
            Database::Sqlite(s) => s.write(records).map_err(|e| HistoryError::of(s.path(), e)),
            Database::Postgres(p) => p.write(records).map_err(|e| p.server().error(e)),
        }
    }

    /// Frees what the connection caches between writes (SQLite's pages;
    /// a PostgreSQL connection caches none here).
    pub fn release_memory(&self) {
        if let Database::Sqlite(s) = self {
            s.release_memory();
        }
    }

    /// Deletes at most `chunk` rows of each table that ended before
    /// `cutoff_ms`; returns how many went.
    pub fn expire(&mut self, cutoff_ms: u64, chunk: usize) -> Result<usize, HistoryError> {
        match self {
            Database::Sqlite(s) => s
                .expire(cutoff_ms, chunk)
                .map_err(|e| HistoryError::of(s.path(), e)),
            Database::Postgres(p) => p.expire(cutoff_ms, chunk).map_err(|e| p.server().error(e)),
        }
    }
}

/// A history opened to read: jobs, hosts and builds as [`query`] reads
/// them, from either backend.
pub enum Reading {
    /// An SQLite file.
    Sqlite(rusqlite::Connection, PathBuf),
    /// A PostgreSQL database.
    Postgres(Box<query::PgConn>, Server),
}

impl fmt::Debug for Reading {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reading::Sqlite(_, p) => write!(f, "Reading({})", p.display()),
            Reading::Postgres(_, s) => write!(f, "Reading({s})"),
        }
    }
}

impl Reading {
    /// Opens the history at `at` to read it: it must exist (an older
    /// schema is brought up to date where it may be).
    pub fn open(at: &Location) -> Result<Reading, HistoryError> {
        match at {
            Location::File(path) => Ok(Reading::Sqlite(query::open(path)?, path.clone())),
            Location::Postgres(server) => {
                let client = PgStore::open(server)?.into_client();
                Ok(Reading::Postgres(
                    Box::new(query::PgConn::new(client)),
                    server.clone(),
                ))
            }
        }
    }

    /// Opens the history at `at` only to read it, as the HTTP API does at
    /// each request (the writer made it, and keeps its schema).
    pub fn open_read(at: &Location) -> Result<Reading, HistoryError> {
        match at {
            Location::File(path) => Ok(Reading::Sqlite(query::open_read(path)?, path.clone())),
            Location::Postgres(server) => {
                let client = server.connect().map_err(|e| server.error(e))?;
                Ok(Reading::Postgres(
                    Box::new(query::PgConn::new(client)),
                    server.clone(),
                ))
            }
        }
    }

    /// Frees the pages SQLite's cache holds (a PostgreSQL connection
    /// caches none here).
    pub fn release_memory(&self) {
        if let Reading::Sqlite(c, _) = self {
            let _ = c.release_memory();
        }
    }

    /// Finished jobs, newest first.
    pub fn jobs(&self, filter: &Filter) -> Result<Vec<JobRow>, HistoryError> {
        match self {
            Reading::Sqlite(c, p) => query::jobs(c, filter).map_err(|e| HistoryError::of(p, e)),
            Reading::Postgres(c, s) => query::jobs(c.as_ref(), filter).map_err(|e| s.error(e)),
        }
    }

    /// Host sessions, newest first.
    pub fn hosts(&self, filter: &Filter) -> Result<Vec<HostRow>, HistoryError> {
        match self {
            Reading::Sqlite(c, p) => query::hosts(c, filter).map_err(|e| HistoryError::of(p, e)),
            Reading::Postgres(c, s) => query::hosts(c.as_ref(), filter).map_err(|e| s.error(e)),
        }
    }

    /// Builds, newest first (see [`query::builds`]).
    pub fn builds(&self, filter: &Filter, gap_ms: u64) -> Result<Vec<Build>, HistoryError> {
        match self {
            Reading::Sqlite(c, p) => {
                query::builds(c, filter, gap_ms).map_err(|e| HistoryError::of(p, e))
            }
            Reading::Postgres(c, s) => {
                query::builds(c.as_ref(), filter, gap_ms).map_err(|e| s.error(e))
            }
        }
    }

    /// Builds as [`Reading::builds`] gives them with the table's gap, each
    /// worked out from its jobs even where its details are kept (see
    /// [`query::computed_builds`]).
    pub fn computed_builds(&self, filter: &Filter) -> Result<Vec<Build>, HistoryError> {
        match self {
            Reading::Sqlite(c, p) => {
                query::computed_builds(c, filter).map_err(|e| HistoryError::of(p, e))
            }
            Reading::Postgres(c, s) => {
                query::computed_builds(c.as_ref(), filter).map_err(|e| s.error(e))
            }
        }
    }

    /// Builds grouped from the window's jobs in memory, newest first (see
    /// [`query::grouped_builds`]): what [`Reading::builds`] does for a
    /// gap other than the `builds` table's.
    pub fn grouped_builds(&self, filter: &Filter, gap_ms: u64) -> Result<Vec<Build>, HistoryError> {
        match self {
            Reading::Sqlite(c, p) => {
                query::grouped_builds(c, filter, gap_ms).map_err(|e| HistoryError::of(p, e))
            }
            Reading::Postgres(c, s) => {
                query::grouped_builds(c.as_ref(), filter, gap_ms).map_err(|e| s.error(e))
            }
        }
    }
}
