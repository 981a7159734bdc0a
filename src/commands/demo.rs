//! `icewatch demo`: the simulated cluster, as a page or as a fake scheduler.

use super::bind_scheduler;
use crate::cli::DemoArgs;
use crate::scheduler::{serve_demo, DemoOptions, Pace};
use crate::shutdown::Shutdown;
use anyhow::Result;
use std::net::SocketAddr;

pub async fn run(args: DemoArgs, shutdown: Shutdown) -> Result<()> {
    let seed = args.seed.unwrap_or_else(rand::random);
    let pace = match args.rate {
        None => Pace::RealTime,
        Some(0.0) => Pace::Unlimited,
        Some(r) => Pace::PerSecond(r),
    };
    eprintln!(
        "demo cluster: {} hosts, seed {seed} (--seed {seed} shows the same again)",
        args.hosts
    );
    let opts = DemoOptions {
        hosts: usize::from(args.hosts),
        seed,
        pace,
        offer: args.protocol,
        job_done: args.job_done.into(),
    };
    let addr = SocketAddr::new(args.scheduler.bind, args.scheduler.port);
    let listener = bind_scheduler(addr).await?;
    serve_demo(listener, opts, shutdown).await?;
    Ok(())
}
