//! `icewatch loadgen`: simulated daemons loading a real scheduler.

use crate::cli::LoadgenArgs;
use anyhow::{Context, Result};
use icewatch::protocol::PROTOCOL_VERSION;
use icewatch::standin::loadgen::{self, Options, Summary};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How long discovery listens for the scheduler's answer.
const DISCOVERY_WAIT: Duration = Duration::from_secs(3);

pub async fn run(args: LoadgenArgs, shutdown: CancellationToken) -> Result<()> {
    let target = super::target(&args.scheduler)?;
    let scheduler = *target
        .locate(PROTOCOL_VERSION, DISCOVERY_WAIT)
        .await?
        .first()
        .with_context(|| format!("no address for {target}"))?;
    let seed = args.seed.unwrap_or_else(rand::random);
    let daemons = usize::from(args.daemons);
    // Each daemon holds its connection and its listening socket.
    let (limit, needed) = raise_open_files(2 * daemons as u64 + 64);
    if limit < needed {
        eprintln!(
            "warning: {daemons} daemons need about {needed} open files and the limit is {limit}; \
             raise it (ulimit -n) or some daemons will fail to connect"
        );
    }
    eprintln!(
        "loadgen: {daemons} daemons against {scheduler}, {} requests a minute, seed {seed} \
         (--seed {seed} draws the same again)",
        args.jobs_per_minute
    );
    let options = Options {
        scheduler,
        daemons,
        jobs_per_minute: args.jobs_per_minute,
        duration: args.duration,
        leaves_per_minute: args.leaves_per_minute,
        seed,
        linger: args.linger,
    };
    let summary = loadgen::run(options, shutdown).await?;
    if args.json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        print_summary(&summary);
    }
    Ok(())
}

/// Raises the soft limit on open files towards `needed`; returns the limit
/// now in force and `needed`.
fn raise_open_files(needed: u64) -> (u64, u64) {
    let limit = rlimit::increase_nofile_limit(needed).unwrap_or(0);
    (limit, needed)
}

fn print_summary(s: &Summary) {
    println!(
        "{} daemons, {} logins, {} left and came back",
        s.daemons, s.logins, s.leaves
    );
    println!(
        "jobs: {} requested, {} assigned, {} finished, {} failed, {} cut short",
        s.jobs_requested, s.jobs_assigned, s.jobs_finished, s.jobs_failed, s.jobs_cut_short
    );
    println!(
        "local jobs: {} begun, {} ended",
        s.local_jobs, s.local_jobs_done
    );
    println!(
        "loadgen used {:.1} s of CPU in {:.1} s",
        s.cpu_ms as f64 / 1000.0,
        s.wall_ms as f64 / 1000.0
    );
}
