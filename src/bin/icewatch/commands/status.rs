//! `icewatch status`: one look at the cluster, for scripts. Waits until the
//! scheduler's first burst of host statistics has settled, prints the host
//! table and totals (or the snapshot JSON) and exits.

use crate::cli::StatusArgs;
use anyhow::Result;
use icewatch::monitor::{self, lock_state, JobState, SharedState, State, StateOptions};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The burst has settled when no new host appeared for this long...
pub const SETTLE: Duration = Duration::from_millis(500);
/// ...or at the latest this long after the login.
pub const SETTLE_LIMIT: Duration = Duration::from_secs(5);

pub async fn run(args: StatusArgs, shutdown: CancellationToken) -> Result<()> {
    let opts = super::connect_options(&args.scheduler)?;
    let target = opts.target.to_string();
    let first = tokio::time::timeout(args.timeout, super::connect_saying(&opts, &shutdown, false))
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "no answer from the scheduler at {target} within {} (--timeout)",
                humantime::format_duration(args.timeout)
            )
        })??;
    let state: SharedState = Arc::new(Mutex::new(State::new(StateOptions::default())));
    let changed = monitor::changed();
    let mut wakeups = changed.subscribe();
    let stop = shutdown.child_token();
    let feeding = tokio::spawn(monitor::run_from(
        first,
        opts,
        state.clone(),
        changed,
        stop.clone().cancelled_owned(),
    ));
    let limit = Instant::now() + SETTLE_LIMIT;
    let mut hosts = 0;
    let mut quiet_until = Instant::now() + SETTLE;
    loop {
        tokio::select! {
            woke = wakeups.changed() => {
                if woke.is_err() { break }
                let now = lock_state(&state).hosts().count();
                if now != hosts {
                    hosts = now;
                    quiet_until = Instant::now() + SETTLE;
                }
            }
            () = tokio::time::sleep_until(quiet_until.min(limit)) => break,
            () = shutdown.cancelled() => anyhow::bail!("interrupted while reading the scheduler at {target}"),
        }
        // The session ended before it settled: a port that is no
        // scheduler's ends at once.
        if feeding.is_finished() {
            break;
        }
    }
    stop.cancel();
    if let Ok(Err(e)) = feeding.await {
        return Err(e.into());
    }
    let state = lock_state(&state);
    let out = if args.json {
        serde_json::to_string(&state.snapshot())?
    } else {
        table(&state)
    };
    println!("{out}");
    Ok(())
}

/// The host table (icecream-sundae's columns) and the totals.
fn table(state: &State) -> String {
    let mut hosts: Vec<_> = state.hosts().filter(|h| h.online).collect();
    hosts.sort_by_key(|h| h.id);
    let name_width = hosts.iter().map(|h| h.name.len()).max().unwrap_or(4).max(4);
    let mut own = std::collections::HashMap::<u32, u32>::new();
    for j in state.jobs() {
        if matches!(j.state, JobState::Compiling | JobState::Local) {
            if let Some(c) = j.client {
                *own.entry(c).or_default() += 1;
            }
        }
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:>4} {:<name_width$} {:>6} {:>3} {:>3} {:>6} {:>5} {:>6} {:>7} {:>6}  MODE",
        "ID", "NAME", "IN", "CUR", "MAX", "OUT", "LOCAL", "ACTIVE", "PENDING", "SPEED"
    );
    for h in &hosts {
        let row = format!(
            "{:>4} {:<name_width$} {:>6} {:>3} {:>3} {:>6} {:>5} {:>6} {:>7} {:>6.1}  {}",
            h.id,
            h.name,
            h.jobs_in,
            h.active,
            h.max_jobs,
            h.jobs_out,
            h.local_jobs,
            own.get(&h.id).copied().unwrap_or(0),
            h.pending,
            h.speed,
            if h.no_remote { "no-remote" } else { "" }
        );
        let _ = writeln!(out, "{}", row.trim_end());
    }
    let t = state.totals();
    let remote: u32 = hosts
        .iter()
        .filter(|h| !h.no_remote)
        .map(|h| h.max_jobs)
        .sum();
    let _ = writeln!(out);
    let _ = writeln!(out, "hosts:   {} online", t.hosts_online);
    let _ = writeln!(
        out,
        "slots:   {} ({remote} on hosts that take remote jobs)",
        t.total_slots
    );
    let _ = writeln!(out, "busy:    {} ({} local)", t.busy_slots, t.local_active);
    let _ = writeln!(out, "waiting: {}", t.pending);
    let _ = write!(
        out,
        "free:    {}",
        t.total_slots.saturating_sub(t.busy_slots)
    );
    out
}
