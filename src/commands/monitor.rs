//! `icewatch monitor`: a real scheduler's cluster, served as a page.

use super::page;
use crate::cli::MonitorArgs;
use crate::shutdown::Shutdown;
use anyhow::Result;

pub async fn run(args: MonitorArgs, mut shutdown: Shutdown) -> Result<()> {
    let target = super::target(&args.scheduler)?;
    // Reach the scheduler once before serving, so that a wrong address or a
    // scheduler that is down is a clear error now, not a silent retry loop.
    // From then on the connection reconnects by itself.
    drop(super::connect_once(&args.scheduler, &mut shutdown).await?);
    let listener = page::bind(&args.serve).await?;
    let connect = page::connect_options(target, args.scheduler.protocol);
    page::serve(listener, &args.serve, connect, shutdown).await
}
