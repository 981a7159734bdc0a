//! [`Book`]: the kept blocks of `monitor --keep-blocks` and the audit of
//! actions on the scheduler, in the history database, SQLite or
//! PostgreSQL (tables `kept_blocks` and `admin_actions`, by scheduler:
//! `docs/history.md`).

use super::database::{Database, Location, Reading};
use super::query::{Cells, Conn, PgConn, Value};
use super::store::ms;
use super::HistoryError;
use std::sync::{Mutex, PoisonError};

/// A connection of its own to the history database (SQLite or
/// PostgreSQL), for the few rows the text port's task writes: those of
/// one scheduler, where several icewatch instances share the database.
#[derive(Debug)]
pub struct Book {
    scheduler: String,
    conn: Mutex<Reading>,
}

impl Book {
    /// Opens (or creates) the history `at`, its schema up to date, for
    /// the kept blocks and audit rows of `scheduler`, as
    /// `monitor` was given it. Blocks kept before they had a scheduler
    /// (schema 4, one cluster a database) become `scheduler`'s.
    pub fn open(at: &Location, scheduler: &str) -> Result<Book, HistoryError> {
        let conn = match Database::open(at)? {
            Database::Sqlite(store) => {
                let path = store.path().to_path_buf();
                Reading::Sqlite(store.into_connection(), path)
            }
            Database::Postgres(store) => {
                let server = store.server().clone();
                Reading::Postgres(Box::new(PgConn::new(store.into_client())), server)
            }
        };
        match &conn {
            Reading::Sqlite(c, path) => adopt(c, scheduler).map_err(|e| HistoryError::of(path, e)),
            Reading::Postgres(c, server) => {
                adopt(c.as_ref(), scheduler).map_err(|e| server.error(e))
            }
        }?;
        Ok(Book {
            scheduler: scheduler.to_owned(),
            conn: Mutex::new(conn),
        })
    }

    /// The rows of `sql` (SQLite's dialect) on either backend.
    fn rows<T>(
        &self,
        sql: &str,
        params: &[Value],
        row: impl FnMut(&dyn Cells) -> T,
    ) -> Result<Vec<T>, String> {
        let conn = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        match &*conn {
            Reading::Sqlite(c, _) => c.rows(sql, params, row).map_err(|e| e.to_string()),
            Reading::Postgres(c, _) => c.rows(sql, params, row).map_err(|e| e.to_string()),
        }
    }

    /// `scheduler` and then `more`, as parameters.
    fn of(&self, more: impl IntoIterator<Item = Value>) -> Vec<Value> {
        std::iter::once(Value::Text(self.scheduler.clone()))
            .chain(more)
            .collect()
    }
}

/// Makes the blocks kept without a scheduler (schema 4) `scheduler`'s.
fn adopt<C: Conn>(c: &C, scheduler: &str) -> Result<(), C::Error> {
    c.rows(
        "INSERT INTO kept_blocks (scheduler, name, since_ms, seen_ms) \
         SELECT ?1, name, since_ms, seen_ms FROM kept_blocks WHERE scheduler = '' \
         ON CONFLICT (scheduler, name) DO NOTHING",
        &[Value::Text(scheduler.to_owned())],
        |_| (),
    )?;
    c.rows("DELETE FROM kept_blocks WHERE scheduler = ''", &[], |_| ())?;
    Ok(())
}

/// Milliseconds as read back.
fn ms_back(v: Option<i64>) -> u64 {
    v.and_then(|v| u64::try_from(v).ok()).unwrap_or(0)
}

#[cfg(feature = "server")]
impl crate::publisher::keep_blocks::BlockBook for Book {
    fn kept(&self) -> Result<Vec<crate::publisher::keep_blocks::Kept>, String> {
        self.rows(
            "SELECT name, since_ms, seen_ms FROM kept_blocks WHERE scheduler = ?1 ORDER BY name",
            &self.of([]),
            |r| crate::publisher::keep_blocks::Kept {
                name: r.text(0).unwrap_or_default(),
                since_ms: ms_back(r.int(1)),
                seen_ms: ms_back(r.int(2)),
            },
        )
    }

    fn keep(&self, k: &crate::publisher::keep_blocks::Kept) -> Result<(), String> {
        self.rows(
            "INSERT INTO kept_blocks (scheduler, name, since_ms, seen_ms) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT (scheduler, name) DO UPDATE SET seen_ms = excluded.seen_ms",
            &self.of([
                Value::Text(k.name.clone()),
                Value::Int(ms(k.since_ms)),
                Value::Int(ms(k.seen_ms)),
            ]),
            |_| (),
        )
        .map(drop)
    }

    fn forget(&self, name: &str) -> Result<(), String> {
        self.rows(
            "DELETE FROM kept_blocks WHERE scheduler = ?1 AND name = ?2",
            &self.of([Value::Text(name.to_owned())]),
            |_| (),
        )
        .map(drop)
    }

    fn audit(&self, a: &crate::publisher::keep_blocks::AuditRecord) -> Result<(), String> {
        self.rows(
            "INSERT INTO admin_actions (scheduler, at_ms, action, host, who, result, said) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            &self.of([
                Value::Int(ms(a.at_ms)),
                Value::Text(a.action.to_owned()),
                Value::Text(a.host.clone()),
                Value::Text(a.who.clone()),
                Value::Text(a.result.to_owned()),
                Value::Text(a.said.clone()),
            ]),
            |_| (),
        )
        .map(drop)
    }
}
