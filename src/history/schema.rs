//! The database schema, as versioned migrations: `MIGRATIONS[n]` takes a
//! database from version `n` to `n + 1`. The schema is a stable interface
//! (`docs/history.md`): users point `sqlite3` and their own SQL at it, so
//! a migration only adds; it never renames nor drops what users query.

/// Migration 3, the same in both dialects: indexes to find a host's and
/// a file's jobs, and the views with names.
const VIEWS: &str = "CREATE INDEX jobs_client ON jobs (client_name, end_ms);
    CREATE INDEX jobs_server ON jobs (server_name, end_ms);
    CREATE INDEX jobs_file ON jobs (file);
    CREATE VIEW job_list AS
        SELECT j.seq, j.session, s.scheduler, j.id, f.name AS file, j.lang,
               j.client, c.name AS client_name, j.server, v.name AS server_name,
               j.state, j.reason, j.exit_code, j.submit_ms, j.start_ms, j.end_ms,
               j.real_ms, j.user_ms, j.sys_ms, j.page_faults,
               j.in_compressed, j.in_uncompressed, j.out_compressed, j.out_uncompressed
        FROM jobs j
        JOIN files f ON f.id = j.file
        LEFT JOIN scheduler_sessions s ON s.id = j.session
        LEFT JOIN host_names c ON c.id = j.client_name
        LEFT JOIN host_names v ON v.id = j.server_name;
    CREATE VIEW host_list AS
        SELECT h.seq, h.session, h.host_id, n.name, h.ip, h.platform, h.max_jobs,
               h.no_remote, h.protocol, h.features, h.login_ms, h.logout_ms
        FROM host_sessions h JOIN host_names n ON n.id = h.name;";

/// The builds of the jobs already kept (migration 6, the same in both
/// dialects): each submitter's jobs (a name at a scheduler) by when they were first seen
/// (`coalesce(submit_ms, start_ms)`), a new build where one begins more
/// than the gap (60 s, `insights::DEFAULT_BUILD_GAP`) after every earlier
/// job of the submitter ended; the rule of `insights::builds::group`.
macro_rules! builds_backfill {
    () => {
        "INSERT INTO builds (session, scheduler, client_name, start_ms, end_ms,
        jobs, remote, given_back, local, failed, cut_short)
    SELECT min(session), scheduler, client_name, min(first_ms), max(end_ms), count(*),
        sum(CASE WHEN state <> 'local_finished' AND server_name IS NOT NULL
            AND (client_name IS NULL OR client_name <> server_name) THEN 1 ELSE 0 END),
        sum(CASE WHEN state <> 'local_finished' AND client_name = server_name
            THEN 1 ELSE 0 END),
        sum(CASE WHEN state = 'local_finished' THEN 1 ELSE 0 END),
        sum(CASE WHEN state = 'failed' THEN 1 ELSE 0 END),
        sum(CASE WHEN state = 'cut_short' THEN 1 ELSE 0 END)
    FROM (SELECT *, sum(new) OVER (PARTITION BY scheduler, client_name
            ORDER BY first_ms, seq ROWS UNBOUNDED PRECEDING) AS build
        FROM (SELECT j.session, coalesce(s.scheduler, '') AS scheduler, j.client_name,
                j.server_name, j.state, j.end_ms, j.seq,
                coalesce(j.submit_ms, j.start_ms) AS first_ms,
                CASE WHEN coalesce(j.submit_ms, j.start_ms) <= max(j.end_ms) OVER (
                    PARTITION BY coalesce(s.scheduler, ''), j.client_name
                    ORDER BY coalesce(j.submit_ms, j.start_ms), j.seq
                    ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) + 60000
                THEN 0 ELSE 1 END AS new
            FROM jobs j LEFT JOIN scheduler_sessions s ON s.id = j.session) AS seen) AS numbered
    GROUP BY scheduler, client_name, build;"
    };
}

/// The indexes of `builds` (migration 6, the same in both dialects): the
/// newest first, those of a window, a submitter's.
macro_rules! builds_indexes {
    () => {
        "CREATE INDEX builds_start ON builds (start_ms);
        CREATE INDEX builds_end ON builds (end_ms);
        CREATE INDEX builds_client ON builds (client_name, start_ms);"
    };
}

/// Migration 7, the same in both dialects: a build's details as JSON
/// (`history::summaries`), and the builds still to work out, by end.
const SUMMARIES: &str = "ALTER TABLE builds ADD COLUMN details TEXT;
    CREATE INDEX builds_pending ON builds (end_ms) WHERE details IS NULL;";

/// Migrations in order; the schema version is how many were applied.
pub const MIGRATIONS: &[&str] = &[
    // 1: scheduler sessions and finished jobs.
    "CREATE TABLE scheduler_sessions (
        id INTEGER PRIMARY KEY,
        scheduler TEXT NOT NULL,
        protocol INTEGER,
        start_ms INTEGER NOT NULL,
        end_ms INTEGER
    );
    CREATE TABLE host_names (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE
    );
    CREATE TABLE files (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE
    );
    CREATE TABLE jobs (
        seq INTEGER PRIMARY KEY,
        session INTEGER NOT NULL,
        id INTEGER NOT NULL,
        file INTEGER NOT NULL,
        lang TEXT,
        client INTEGER,
        client_name INTEGER,
        server INTEGER,
        server_name INTEGER,
        state TEXT NOT NULL,
        reason TEXT NOT NULL,
        exit_code INTEGER,
        submit_ms INTEGER,
        start_ms INTEGER NOT NULL,
        end_ms INTEGER NOT NULL,
        real_ms INTEGER,
        user_ms INTEGER,
        sys_ms INTEGER,
        page_faults INTEGER,
        in_compressed INTEGER,
        in_uncompressed INTEGER,
        out_compressed INTEGER,
        out_uncompressed INTEGER
    );
    CREATE INDEX jobs_end ON jobs (end_ms);",
    // 2: host sessions and load samples.
    "CREATE TABLE host_sessions (
        seq INTEGER PRIMARY KEY,
        session INTEGER NOT NULL,
        host_id INTEGER NOT NULL,
        name INTEGER NOT NULL,
        ip TEXT NOT NULL,
        platform TEXT NOT NULL,
        max_jobs INTEGER NOT NULL,
        no_remote INTEGER NOT NULL,
        protocol INTEGER NOT NULL,
        features TEXT NOT NULL,
        login_ms INTEGER NOT NULL,
        logout_ms INTEGER
    );
    CREATE INDEX host_sessions_host ON host_sessions (session, host_id);
    CREATE INDEX host_sessions_login ON host_sessions (login_ms);
    CREATE TABLE load_samples (
        name INTEGER NOT NULL,
        at_ms INTEGER NOT NULL,
        load INTEGER NOT NULL,
        load_avg1 REAL,
        free_mem_mb INTEGER
    );
    CREATE INDEX load_samples_at ON load_samples (at_ms);",
    // 3: finding a host's and a file's jobs, and views with names.
    VIEWS,
    // 4: the blocks `monitor --keep-blocks` keeps, and the audit of
    // actions on the scheduler.
    "CREATE TABLE kept_blocks (
        name TEXT PRIMARY KEY,
        since_ms INTEGER NOT NULL,
        seen_ms INTEGER NOT NULL
    );
    CREATE TABLE admin_actions (
        seq INTEGER PRIMARY KEY,
        at_ms INTEGER NOT NULL,
        action TEXT NOT NULL,
        host TEXT NOT NULL,
        who TEXT NOT NULL,
        result TEXT NOT NULL,
        said TEXT NOT NULL
    );
    CREATE INDEX admin_actions_at ON admin_actions (at_ms);",
    // 5: kept blocks and audit rows by scheduler, for icewatch instances
    // of several clusters sharing one database. SQLite cannot change a
    // primary key in place: the table is made again, same name, same
    // columns and one more; the rows kept so far get the scheduler ''
    // (the first `--keep-blocks` to open the database adopts them).
    "CREATE TABLE kept_blocks_5 (
        name TEXT NOT NULL,
        since_ms INTEGER NOT NULL,
        seen_ms INTEGER NOT NULL,
        scheduler TEXT NOT NULL DEFAULT '',
        PRIMARY KEY (scheduler, name)
    );
    INSERT INTO kept_blocks_5 (name, since_ms, seen_ms)
        SELECT name, since_ms, seen_ms FROM kept_blocks;
    DROP TABLE kept_blocks;
    ALTER TABLE kept_blocks_5 RENAME TO kept_blocks;
    ALTER TABLE admin_actions ADD COLUMN scheduler TEXT NOT NULL DEFAULT '';",
    // 6: builds, kept as the writer writes their jobs (`history::builds`),
    // with those of the jobs already kept.
    concat!(
        "CREATE TABLE builds (
        seq INTEGER PRIMARY KEY,
        session INTEGER NOT NULL,
        scheduler TEXT NOT NULL,
        client_name INTEGER,
        start_ms INTEGER NOT NULL,
        end_ms INTEGER NOT NULL,
        jobs INTEGER NOT NULL,
        remote INTEGER NOT NULL,
        given_back INTEGER NOT NULL,
        local INTEGER NOT NULL,
        failed INTEGER NOT NULL,
        cut_short INTEGER NOT NULL
    );",
        builds_backfill!(),
        builds_indexes!()
    ),
    // 7: each build's details (waits, servers, slowest files, reasons),
    // worked out once it is over (`history::summaries`), NULL until then.
    SUMMARIES,
    // 8: `jobs_end` in the order pages are read, newest first by
    // `(end_ms, seq)`. An SQLite index's entries end with the rowid, which
    // is `seq`: it has that order already.
    "-- jobs_end is (end_ms, seq) already",
];

/// The version whose migration adds `builds` and groups every job
/// already kept into it: the one migration that takes time on a large
/// history (said at start).
pub const BUILDS_VERSION: u32 = 6;

/// What to say before migrating from version `from` to `version`, if it
/// may take long: a new database (`from` 0) holds no jobs to group.
fn announcement(from: u32, version: u32) -> Option<String> {
    (from > 0 && version == BUILDS_VERSION).then(|| {
        format!(
            "the history database is being migrated to schema version {version}: \
             grouping the jobs it holds into builds (on millions of jobs this takes a while)"
        )
    })
}

/// Says [`announcement`], if any.
pub(crate) fn announce(from: u32, version: u32) {
    if let Some(said) = announcement(from, version) {
        tracing::info!("{said}");
    }
}

/// The schema version this code writes.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// Creates the table that holds the version (one row), if missing.
pub const VERSION_TABLE: &str =
    "CREATE TABLE IF NOT EXISTS icewatch_schema (version INTEGER NOT NULL)";

/// [`MIGRATIONS`] in PostgreSQL's dialect: the same tables, columns,
/// indexes and views, version for version (a test compares them). Every
/// integer is a `BIGINT` (SQLite's integers are 64 bits), every id an
/// identity column, and the names and files are unique so that several
/// writers may add the same one at once (`INSERT ... ON CONFLICT`).
pub const PG_MIGRATIONS: &[&str] = &[
    // 1: scheduler sessions and finished jobs.
    "CREATE TABLE scheduler_sessions (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        scheduler TEXT NOT NULL,
        protocol BIGINT,
        start_ms BIGINT NOT NULL,
        end_ms BIGINT
    );
    CREATE TABLE host_names (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        name TEXT NOT NULL UNIQUE
    );
    CREATE TABLE files (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        name TEXT NOT NULL UNIQUE
    );
    CREATE TABLE jobs (
        seq BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        session BIGINT NOT NULL,
        id BIGINT NOT NULL,
        file BIGINT NOT NULL,
        lang TEXT,
        client BIGINT,
        client_name BIGINT,
        server BIGINT,
        server_name BIGINT,
        state TEXT NOT NULL,
        reason TEXT NOT NULL,
        exit_code BIGINT,
        submit_ms BIGINT,
        start_ms BIGINT NOT NULL,
        end_ms BIGINT NOT NULL,
        real_ms BIGINT,
        user_ms BIGINT,
        sys_ms BIGINT,
        page_faults BIGINT,
        in_compressed BIGINT,
        in_uncompressed BIGINT,
        out_compressed BIGINT,
        out_uncompressed BIGINT
    );
    CREATE INDEX jobs_end ON jobs (end_ms);",
    // 2: host sessions and load samples.
    "CREATE TABLE host_sessions (
        seq BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        session BIGINT NOT NULL,
        host_id BIGINT NOT NULL,
        name BIGINT NOT NULL,
        ip TEXT NOT NULL,
        platform TEXT NOT NULL,
        max_jobs BIGINT NOT NULL,
        no_remote BIGINT NOT NULL,
        protocol BIGINT NOT NULL,
        features TEXT NOT NULL,
        login_ms BIGINT NOT NULL,
        logout_ms BIGINT
    );
    CREATE INDEX host_sessions_host ON host_sessions (session, host_id);
    CREATE INDEX host_sessions_login ON host_sessions (login_ms);
    CREATE TABLE load_samples (
        name BIGINT NOT NULL,
        at_ms BIGINT NOT NULL,
        load BIGINT NOT NULL,
        load_avg1 DOUBLE PRECISION,
        free_mem_mb BIGINT
    );
    CREATE INDEX load_samples_at ON load_samples (at_ms);",
    // 3: finding a host's and a file's jobs, and views with names.
    VIEWS,
    // 4: the blocks `monitor --keep-blocks` keeps, and the audit of
    // actions on the scheduler.
    "CREATE TABLE kept_blocks (
        name TEXT PRIMARY KEY,
        since_ms BIGINT NOT NULL,
        seen_ms BIGINT NOT NULL
    );
    CREATE TABLE admin_actions (
        seq BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        at_ms BIGINT NOT NULL,
        action TEXT NOT NULL,
        host TEXT NOT NULL,
        who TEXT NOT NULL,
        result TEXT NOT NULL,
        said TEXT NOT NULL
    );
    CREATE INDEX admin_actions_at ON admin_actions (at_ms);",
    // 5: kept blocks and audit rows by scheduler.
    "ALTER TABLE kept_blocks ADD COLUMN scheduler TEXT NOT NULL DEFAULT '';
    ALTER TABLE kept_blocks DROP CONSTRAINT kept_blocks_pkey;
    ALTER TABLE kept_blocks ADD PRIMARY KEY (scheduler, name);
    ALTER TABLE admin_actions ADD COLUMN scheduler TEXT NOT NULL DEFAULT '';",
    // 6: builds, kept as the writer writes their jobs (`history::builds`),
    // with those of the jobs already kept.
    concat!(
        "CREATE TABLE builds (
        seq BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        session BIGINT NOT NULL,
        scheduler TEXT NOT NULL,
        client_name BIGINT,
        start_ms BIGINT NOT NULL,
        end_ms BIGINT NOT NULL,
        jobs BIGINT NOT NULL,
        remote BIGINT NOT NULL,
        given_back BIGINT NOT NULL,
        local BIGINT NOT NULL,
        failed BIGINT NOT NULL,
        cut_short BIGINT NOT NULL
    );",
        builds_backfill!(),
        builds_indexes!()
    ),
    // 7: each build's details (waits, servers, slowest files, reasons),
    // worked out once it is over (`history::summaries`), NULL until then.
    SUMMARIES,
    // 8: `jobs_end` in the order pages are read, newest first by
    // `(end_ms, seq)`: on `end_ms` alone PostgreSQL sorted each page by
    // `seq` among jobs that ended in the same millisecond (a third of a
    // 10-minute window's time on 10 M jobs, BENCHMARKS.md).
    "DROP INDEX jobs_end;
    CREATE INDEX jobs_end ON jobs (end_ms, seq);",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_database_that_holds_jobs_hears_that_grouping_them_takes_a_while() {
        assert_eq!(announcement(0, BUILDS_VERSION), None, "a new database");
        let said = announcement(BUILDS_VERSION - 1, BUILDS_VERSION).expect("an older one");
        assert!(said.contains("grouping the jobs"), "{said}");
        assert_eq!(announcement(BUILDS_VERSION - 1, BUILDS_VERSION + 1), None);
    }
}
