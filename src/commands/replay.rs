//! `icewatch replay`: a recording served as if live, as a page or to other
//! monitors as a fake scheduler.

use super::bind_scheduler;
use crate::cli::ReplayArgs;
use crate::record;
use crate::scheduler::{serve_recording, ReplayOptions};
use crate::shutdown::Shutdown;
use anyhow::{Context, Result};
use std::net::SocketAddr;

pub async fn run(args: ReplayArgs, shutdown: Shutdown) -> Result<()> {
    let shown = args.file.display().to_string();
    let header = record::open(&args.file)
        .with_context(|| format!("cannot replay {shown}"))?
        .header();
    eprintln!(
        "replaying {shown} (protocol {}) at {}",
        header.protocol,
        speed_text(args.speed)
    );
    let opts = ReplayOptions {
        path: args.file.clone(),
        speed: args.speed,
        offer: args.protocol,
        job_done: args.job_done.map(Into::into),
        once: false,
    };
    let addr = SocketAddr::new(args.scheduler.bind, args.scheduler.port);
    let listener = bind_scheduler(addr).await?;
    serve_recording(listener, opts, shutdown)
        .await
        .with_context(|| format!("cannot replay {shown}"))?;
    Ok(())
}

fn speed_text(speed: f64) -> String {
    if speed == 0.0 {
        "full speed".to_string()
    } else {
        format!("{speed}x the recorded pace")
    }
}
