//! `icewatch demo`: the simulated cluster, as a page or as a fake scheduler.

use super::{bind_scheduler, history, page};
use crate::cli::DemoArgs;
use anyhow::Result;
use icewatch::protocol::PROTOCOL_VERSION;
use icewatch::standin::demo::{serve_demo, DemoOptions, Pace};
use std::net::SocketAddr;
use tokio_util::sync::CancellationToken;

pub async fn run(args: DemoArgs, shutdown: CancellationToken) -> Result<()> {
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
    if args.scheduler.as_scheduler {
        let addr = SocketAddr::new(args.scheduler.bind, args.scheduler.port);
        let listener = bind_scheduler(addr).await?;
        serve_demo(listener, opts, shutdown).await?;
        return Ok(());
    }
    // The simulated scheduler listens on loopback and the real monitor code
    // connects to it, exactly as it would to a real one.
    let history = history::open(&args.history, false)?;
    let (scheduler, target) = page::loopback_scheduler("the simulated scheduler").await?;
    let page = page::bind(&args.serve).await?;
    let simulation = tokio::spawn(serve_demo(scheduler, opts, shutdown.clone()));
    let connect = page::connect_options(target, PROTOCOL_VERSION);
    page::serve(page, &args.serve, history, connect, shutdown).await?;
    simulation.await??;
    Ok(())
}
