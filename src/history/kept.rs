//! [`Book`]: the kept blocks of `monitor --keep-blocks` and the audit of
//! actions on the scheduler, in the history database (tables
//! `kept_blocks` and `admin_actions`, `docs/history.md`).

use super::store::ms;
use super::{HistoryError, Store};
use rusqlite::{params, Connection};
use std::path::Path;
use std::sync::{Mutex, PoisonError};

/// A connection of its own to the history database, for the few rows the
/// text port's task writes.
#[derive(Debug)]
pub struct Book {
    conn: Mutex<Connection>,
}

impl Book {
    /// Opens (or creates) the history at `path`, schema up to date.
    pub fn open(path: &Path) -> Result<Book, HistoryError> {
        Ok(Book {
            conn: Mutex::new(Store::open(path)?.into_connection()),
        })
    }

    fn with<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, String> {
        let conn = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        f(&conn).map_err(|e| e.to_string())
    }
}

/// Milliseconds as read back.
fn ms_back(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

#[cfg(feature = "server")]
impl crate::publisher::keep_blocks::BlockBook for Book {
    fn kept(&self) -> Result<Vec<crate::publisher::keep_blocks::Kept>, String> {
        self.with(|c| {
            c.prepare("SELECT name, since_ms, seen_ms FROM kept_blocks ORDER BY name")?
                .query_map([], |r| {
                    Ok(crate::publisher::keep_blocks::Kept {
                        name: r.get(0)?,
                        since_ms: ms_back(r.get(1)?),
                        seen_ms: ms_back(r.get(2)?),
                    })
                })?
                .collect()
        })
    }

    fn keep(&self, k: &crate::publisher::keep_blocks::Kept) -> Result<(), String> {
        self.with(|c| {
            c.prepare_cached(
                "INSERT INTO kept_blocks (name, since_ms, seen_ms) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (name) DO UPDATE SET seen_ms = excluded.seen_ms",
            )?
            .execute(params![k.name, ms(k.since_ms), ms(k.seen_ms)])
            .map(drop)
        })
    }

    fn forget(&self, name: &str) -> Result<(), String> {
        self.with(|c| {
            c.prepare_cached("DELETE FROM kept_blocks WHERE name = ?1")?
                .execute([name])
                .map(drop)
        })
    }

    fn audit(&self, a: &crate::publisher::keep_blocks::AuditRecord) -> Result<(), String> {
        self.with(|c| {
            c.prepare_cached(
                "INSERT INTO admin_actions (at_ms, action, host, who, result, said) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![
                ms(a.at_ms),
                a.action,
                a.host,
                a.who,
                a.result,
                a.said
            ])
            .map(drop)
        })
    }
}

#[cfg(all(test, feature = "server"))]
mod tests {
    use super::*;
    use crate::publisher::keep_blocks::{AuditRecord, BlockBook, Kept};

    #[test]
    fn kept_blocks_and_audit_records_outlive_the_connection() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.sqlite");
        let book = Book::open(&path).unwrap();
        let k = |name: &str, seen_ms| Kept {
            name: name.to_owned(),
            since_ms: 5,
            seen_ms,
        };
        book.keep(&k("remote2", 5)).unwrap();
        book.keep(&k("remote1", 5)).unwrap();
        // Seen again: the first sighting stays.
        book.keep(&Kept {
            since_ms: 99,
            ..k("remote2", 70)
        })
        .unwrap();
        book.forget("remote1").unwrap();
        book.audit(&AuditRecord {
            at_ms: 80,
            action: "reapply",
            host: "remote2".into(),
            who: "icewatch --keep-blocks".into(),
            result: "done",
            said: "blocked remote2 again".into(),
        })
        .unwrap();
        drop(book);
        let book = Book::open(&path).unwrap();
        assert_eq!(book.kept().unwrap(), vec![k("remote2", 70)]);
        let audit: (i64, String, String) = book
            .with(|c| {
                c.query_row("SELECT at_ms, action, result FROM admin_actions", [], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
            })
            .unwrap();
        assert_eq!(audit, (80, "reapply".into(), "done".into()));
    }
}
