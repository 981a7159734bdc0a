//! `icewatch history`: the history read back, as a table or JSON lines;
//! and the `--db` of the commands that keep one.

use crate::cli::{Db, HistoryArgs, HistoryCommand, HistoryQuery, HistoryWhat};
use anyhow::{Context, Error, Result};
use icewatch::history::query::{self, Filter};
use icewatch::history::{self, Database, HistoryOptions, Location, Reading, Server};
use serde::Serialize;
use std::io::Write;
use std::path::PathBuf;

/// The default history file, or why there is none.
fn default_path() -> Result<PathBuf> {
    history::default_path().context(
        "no home folder to keep the history in (neither XDG_STATE_HOME nor HOME is set): \
         give --db PATH, or --db none",
    )
}

/// Opens the history `args` asks for (`monitor` keeps one unless told
/// not to: `by_default`), and says where it goes.
pub fn open(args: &HistoryArgs, by_default: bool) -> Result<Option<(Database, HistoryOptions)>> {
    let at = match &args.db {
        Some(Db::None) => return Ok(None),
        Some(Db::File(path)) => Location::File(path.clone()),
        Some(Db::Postgres(url)) => Location::Postgres(Server::parse(url).map_err(Error::msg)?),
        None if by_default => Location::File(default_path()?),
        None => return Ok(None),
    };
    let store = tokio::task::block_in_place(|| Database::open(&at))?;
    eprintln!(
        "keeping the history in {at} for {} (--db none keeps none; read it with `icewatch history jobs`)",
        days(args.retain)
    );
    let opts = HistoryOptions {
        retain: args.retain,
        release_memory: Some(crate::memory::release),
    };
    Ok(Some((store, opts)))
}

pub fn run(cmd: HistoryCommand) -> Result<()> {
    let (q, gap) = match &cmd.what {
        HistoryWhat::Jobs(q) | HistoryWhat::Hosts(q) => (q, None),
        HistoryWhat::Builds(b) => (&b.query, Some(b.gap)),
        HistoryWhat::Trace(t) => (&t.query, None),
    };
    let at = match &q.db {
        Some(Db::File(path)) => Location::File(path.clone()),
        Some(Db::Postgres(url)) => Location::Postgres(Server::parse(url).map_err(Error::msg)?),
        Some(Db::None) => anyhow::bail!("--db none keeps no history: there is none to read"),
        None => Location::File(default_path()?),
    };
    let conn = Reading::open(&at)?;
    let filter = Filter {
        since_ms: q.since,
        until_ms: q.until,
        host: q.host.clone(),
        file: q.file.clone(),
        failed: q.failed,
        limit: usize::from(q.limit),
        cursor: None,
        scheduler: q.scheduler.clone(),
    };
    if let HistoryWhat::Trace(t) = &cmd.what {
        let mut jobs = Vec::new();
        let mut page = Filter {
            limit: query::MAX_LIMIT,
            ..filter
        };
        loop {
            let rows = conn.jobs(&page)?;
            let full = rows.len() >= page.limit;
            page.cursor = rows.last().map(|j| j.seq);
            jobs.extend(rows);
            if !full {
                break;
            }
        }
        return write_trace(&jobs, &t.output);
    }
    let mut out = std::io::stdout().lock();
    match &cmd.what {
        HistoryWhat::Jobs(_) => {
            let rows = conn.jobs(&filter)?;
            print(&mut out, q, &rows, JOB_HEADER, |j| {
                vec![
                    time(j.end_ms),
                    j.state.clone(),
                    j.exit_code.map_or("-".into(), |c| c.to_string()),
                    j.client_name.clone().unwrap_or_else(|| "?".into()),
                    j.server_name.clone().unwrap_or_else(|| "-".into()),
                    duration(j.end_ms.saturating_sub(j.start_ms)),
                    j.file.clone(),
                ]
            })
        }
        HistoryWhat::Hosts(_) => {
            let rows = conn.hosts(&filter)?;
            print(&mut out, q, &rows, HOST_HEADER, |h| {
                vec![
                    time(h.login_ms),
                    h.logout_ms.map_or("-".into(), time),
                    h.name.clone(),
                    h.ip.clone(),
                    h.max_jobs.to_string(),
                    h.platform.clone(),
                    h.protocol.to_string(),
                ]
            })
        }
        HistoryWhat::Trace(_) => Ok(()),
        HistoryWhat::Builds(_) => {
            let gap = u64::try_from(gap.unwrap_or_default().as_millis()).unwrap_or(u64::MAX);
            let rows = conn.builds(&filter, gap)?;
            print(&mut out, q, &rows, BUILD_HEADER, |b| {
                let wait = |ms: Option<u64>| ms.map_or("-".into(), duration);
                let change = b.previous.as_ref().map_or("-".into(), |p| {
                    let sign = if p.duration_ms < 0 { "-" } else { "+" };
                    format!("{sign}{}", duration(p.duration_ms.unsigned_abs()))
                });
                let why: Vec<&str> = b.why.iter().map(|r| r.kind).collect();
                vec![
                    time(b.start_ms),
                    duration(b.duration_ms),
                    b.host.clone().unwrap_or_else(|| "?".into()),
                    b.jobs.to_string(),
                    format!("{:.0}%", b.remote_share * 100.0),
                    b.given_back.to_string(),
                    b.local.to_string(),
                    b.failed.to_string(),
                    b.cut_short.to_string(),
                    format!("{}/{}", wait(b.wait_median_ms), wait(b.wait_p95_ms)),
                    b.servers.len().to_string(),
                    change,
                    if why.is_empty() {
                        "-".into()
                    } else {
                        why.join(",")
                    },
                ]
            })
        }
    }
    .context("cannot write to stdout")
}

/// `jobs` as a Chrome trace in `output` ("-": stdout).
fn write_trace(jobs: &[query::JobRow], output: &std::path::Path) -> Result<()> {
    let shown = output.display();
    if output.as_os_str() == "-" {
        history::trace::write_trace(jobs, std::io::stdout().lock())
            .context("cannot write the trace to stdout")?;
    } else {
        let file = std::fs::File::create(output)
            .with_context(|| format!("cannot create the trace file {shown}"))?;
        let mut out = std::io::BufWriter::new(file);
        history::trace::write_trace(jobs, &mut out)
            .and_then(|()| out.flush())
            .with_context(|| format!("cannot write the trace file {shown}"))?;
        eprintln!(
            "{} jobs written to {shown}: open it in https://ui.perfetto.dev",
            jobs.len()
        );
    }
    Ok(())
}

const JOB_HEADER: &[&str] = &["ENDED", "STATE", "EXIT", "CLIENT", "SERVER", "TOOK", "FILE"];
const HOST_HEADER: &[&str] = &[
    "LOGIN", "LOGOUT", "NAME", "IP", "SLOTS", "PLATFORM", "PROTOCOL",
];
const BUILD_HEADER: &[&str] = &[
    "STARTED", "TOOK", "HOST", "JOBS", "REMOTE", "BACK", "LOCAL", "FAILED", "CUT", "WAIT",
    "SERVERS", "CHANGE", "WHY",
];

/// `rows` as JSON lines, or as a table of `header` and `cells`.
fn print<T: Serialize>(
    out: &mut impl Write,
    q: &HistoryQuery,
    rows: &[T],
    header: &[&str],
    cells: impl Fn(&T) -> Vec<String>,
) -> std::io::Result<()> {
    if q.json {
        for row in rows {
            serde_json::to_writer(&mut *out, row)?;
            writeln!(out)?;
        }
        return Ok(());
    }
    let table: Vec<Vec<String>> = rows.iter().map(cells).collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &table {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |out: &mut dyn Write, cells: &[&str]| -> std::io::Result<()> {
        let last = cells.len().saturating_sub(1);
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i == last {
                writeln!(out, "{cell}")?;
            } else {
                write!(out, "{cell:<w$}  ")?;
            }
        }
        Ok(())
    };
    line(out, header)?;
    for row in &table {
        let cells: Vec<&str> = row.iter().map(String::as_str).collect();
        line(out, &cells)?;
    }
    if table.is_empty() {
        eprintln!("nothing in the history matches");
    }
    Ok(())
}

/// A time in ms since the epoch, in UTC to the second.
fn time(ms: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// A duration in ms, to the tenth of a second.
fn duration(ms: u64) -> String {
    format!("{}.{}s", ms / 1000, ms % 1000 / 100)
}

/// A retention as people say it: in days when it is whole days.
fn days(d: std::time::Duration) -> String {
    let secs = d.as_secs();
    if secs % 86_400 == 0 {
        format!("{} days", secs / 86_400)
    } else {
        humantime::format_duration(d).to_string()
    }
}
