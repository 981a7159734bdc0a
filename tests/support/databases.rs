//! The history's two backends for the tests: a fresh database per test,
//! an SQLite file or a PostgreSQL database created and dropped by the
//! test, and the tests themselves as libtest-mimic trials, one per
//! backend.
//!
//! PostgreSQL is found at `ICEWATCH_TEST_POSTGRES` (a URL of a database
//! the user may connect to, and a user allowed to create databases),
//! by default the local socket as the system user:
//! `postgres:///postgres?host=/var/run/postgresql`. Where it cannot be
//! reached, the PostgreSQL trials are ignored with the reason, or fail
//! under CI (`CI` set), where `.ci/run` starts one.

use icewatch::history::{Database, Location, Reading, Server};
use libtest_mimic::{Completion, Trial};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

/// The server the tests use unless `ICEWATCH_TEST_POSTGRES` names another.
pub const DEFAULT_POSTGRES: &str = "postgres:///postgres?host=/var/run/postgresql";

/// A backend of the history.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// An SQLite file.
    Sqlite,
    /// A PostgreSQL database.
    Postgres,
}

impl Backend {
    /// Both, in the order the trials list them.
    pub const ALL: [Backend; 2] = [Backend::Sqlite, Backend::Postgres];

    /// Its name in the trials' names.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// The URL of the server the tests create their databases on.
pub fn admin_url() -> String {
    std::env::var("ICEWATCH_TEST_POSTGRES").unwrap_or_else(|_| DEFAULT_POSTGRES.to_owned())
}

/// `url` naming the database `name` instead of its own.
pub fn with_database(url: &str, name: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("postgres", url));
    let (rest, params) = match rest.split_once('?') {
        Some((r, p)) => (r, format!("?{p}")),
        None => (rest, String::new()),
    };
    let authority = rest.split_once('/').map_or(rest, |(a, _)| a);
    format!("{scheme}://{authority}/{name}{params}")
}

fn connect(url: &str) -> Result<postgres::Client, String> {
    let server = Server::parse(url)?;
    server.connect().map_err(|e| server.error(e).to_string())
}

/// Whether PostgreSQL can be reached, or why not (asked once).
pub fn postgres_reachable() -> Result<(), String> {
    static REACHABLE: OnceLock<Result<(), String>> = OnceLock::new();
    REACHABLE
        .get_or_init(|| {
            let mut client = connect(&admin_url())?;
            let can: bool = client
                .query_one(
                    "SELECT rolcreatedb OR rolsuper FROM pg_roles WHERE rolname = current_user",
                    &[],
                )
                .map_err(|e| e.to_string())?
                .get(0);
            if can {
                Ok(())
            } else {
                Err(format!(
                    "the user of {} may not create databases (ICEWATCH_TEST_POSTGRES)",
                    admin_url()
                ))
            }
        })
        .clone()
}

/// A test's own database: a fresh file, or a fresh PostgreSQL database
/// dropped again at the end.
pub struct TestDb {
    /// Which backend.
    pub backend: Backend,
    /// What `--db` takes: the file, or the URL.
    pub arg: String,
    /// The PostgreSQL database's name.
    name: String,
}

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// Once a process: [`sweep`].
static SWEEP: std::sync::Once = std::sync::Once::new();

/// Drops the test databases of test processes that are gone (killed
/// before their `Drop` ran), so that they do not pile up on the server.
fn sweep(admin: &mut postgres::Client) {
    let Ok(rows) = admin.query(
        "SELECT datname FROM pg_database WHERE datname LIKE 'icewatch\\_test\\_%'",
        &[],
    ) else {
        return;
    };
    for row in rows {
        let name: String = row.get(0);
        let pid = name.split('_').nth(2).unwrap_or_default();
        if !pid.is_empty() && !Path::new("/proc").join(pid).exists() {
            let _ = admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
        }
    }
}

impl TestDb {
    /// A new, empty database for the test `test`.
    pub fn new(backend: Backend, test: &str) -> TestDb {
        match backend {
            Backend::Sqlite => {
                let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("history-{test}"));
                let _ = std::fs::remove_dir_all(&dir);
                std::fs::create_dir_all(&dir).unwrap();
                let file = dir.join("history.sqlite");
                TestDb {
                    backend,
                    arg: file.display().to_string(),
                    name: String::new(),
                }
            }
            Backend::Postgres => {
                let name = format!(
                    "icewatch_test_{}_{}",
                    std::process::id(),
                    NEXT.fetch_add(1, Ordering::Relaxed)
                );
                let mut admin = connect(&admin_url()).unwrap();
                SWEEP.call_once(|| sweep(&mut admin));
                let drop = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                admin.batch_execute(&drop).unwrap();
                admin
                    .batch_execute(&format!("CREATE DATABASE {name}"))
                    .unwrap();
                TestDb {
                    backend,
                    arg: with_database(&admin_url(), &name),
                    name,
                }
            }
        }
    }

    /// Where it is.
    pub fn location(&self) -> Location {
        Location::parse(&self.arg).unwrap()
    }

    /// The SQLite file (SQLite only).
    pub fn path(&self) -> PathBuf {
        PathBuf::from(&self.arg)
    }

    /// Opened to write.
    pub fn open(&self) -> Database {
        Database::open(&self.location()).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Opened to read.
    pub fn reading(&self) -> Reading {
        Reading::open(&self.location()).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Runs `sql` (statements separated by `;`), as a user would.
    pub fn execute(&self, sql: &str) {
        match self.backend {
            Backend::Sqlite => rusqlite::Connection::open(self.path())
                .unwrap()
                .execute_batch(sql)
                .unwrap(),
            Backend::Postgres => self.client().batch_execute(sql).unwrap(),
        }
    }

    /// The first column of the first row of `sql`: an integer or null.
    pub fn scalar(&self, sql: &str) -> Option<i64> {
        match self.backend {
            Backend::Sqlite => rusqlite::Connection::open(self.path())
                .unwrap()
                .query_row(sql, [], |r| r.get(0))
                .unwrap(),
            Backend::Postgres => {
                let row = self.client().query_one(sql, &[]).unwrap();
                row.try_get::<_, Option<i64>>(0)
                    .or_else(|_| row.try_get::<_, Option<i32>>(0).map(|v| v.map(i64::from)))
                    .unwrap()
            }
        }
    }

    /// A connection to the PostgreSQL database.
    pub fn client(&self) -> postgres::Client {
        connect(&self.arg).unwrap()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if self.backend == Backend::Postgres {
            if let Ok(mut admin) = connect(&admin_url()) {
                let _ = admin.batch_execute(&format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    self.name
                ));
            }
        }
    }
}

/// The trial `backend::name` running `test`; a PostgreSQL one that
/// cannot run is ignored with the reason, or fails under CI.
pub fn trial(backend: Backend, name: &str, test: fn(Backend)) -> Trial {
    let full = format!("{}::{name}", backend.name());
    if backend == Backend::Postgres {
        if let Err(why) = postgres_reachable() {
            if std::env::var_os("CI").is_some() {
                return Trial::test(full, move || {
                    Err(format!("PostgreSQL must be reachable in CI, but: {why}").into())
                });
            }
            return Trial::ignorable_test(full, move || Ok(Completion::ignored_with(why)));
        }
    }
    // libtest-mimic reports a panic as the trial's failure.
    Trial::test(full, move || {
        test(backend);
        Ok(())
    })
}

/// `test` as a trial for each backend.
pub fn both(name: &str, test: fn(Backend)) -> [Trial; 2] {
    Backend::ALL.map(|b| trial(b, name, test))
}

/// Test functions as `(name, fn(Backend))`, for [`both`] and [`trial`].
#[macro_export]
macro_rules! named {
    ($($test:ident),* $(,)?) => {
        [$((stringify!($test), $test as fn($crate::support::databases::Backend))),*]
    };
}
