//! `icewatch replay`: a recording served as if live, as a page or to other
//! monitors as a fake scheduler.

use super::{bind_scheduler, page};
use crate::cli::ReplayArgs;
use crate::protocol::PROTOCOL_VERSION;
use crate::record;
use crate::replay::MAX_WAIT;
use crate::scheduler::{serve_recording, ReplayOptions};
use crate::shutdown::Shutdown;
use anyhow::{Context, Result};
use std::net::SocketAddr;
use std::time::Duration;

/// How long the page waits on a finished replay before calling it gone.
const QUIET_END: Duration = Duration::from_secs(365 * 24 * 3600);

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
    let mut opts = ReplayOptions {
        path: args.file.clone(),
        speed: args.speed,
        offer: args.protocol,
        job_done: args.job_done.map(Into::into),
        once: false,
        max_wait: MAX_WAIT,
    };
    if args.scheduler.as_scheduler {
        let addr = SocketAddr::new(args.scheduler.bind, args.scheduler.port);
        let listener = bind_scheduler(addr).await?;
        serve_recording(listener, opts, shutdown)
            .await
            .with_context(|| format!("cannot replay {shown}"))?;
        return Ok(());
    }
    // The recording plays once, over loopback, to the real monitor code. When
    // it ends with the scheduler leaving, the page shows it offline, as the
    // recorded monitor saw it.
    opts.once = true;
    let (scheduler, target) = page::loopback_scheduler("the replay").await?;
    let page = page::bind(&args.serve).await?;
    let playing = tokio::spawn(serve_recording(scheduler, opts, shutdown.clone()));
    let mut connect = page::connect_options(target, PROTOCOL_VERSION);
    // After the last message the replay falls silent: that is the end of
    // the recording, not a dead scheduler.
    connect.idle_timeout = QUIET_END;
    page::serve(page, &args.serve, connect, shutdown).await?;
    playing
        .await?
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
