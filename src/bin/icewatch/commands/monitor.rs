//! `icewatch monitor`: a real scheduler's cluster, served as a page.

use super::{history, page};
use crate::cli::MonitorArgs;
use anyhow::Result;
use icewatch::publisher::ControlOptions;
use tokio_util::sync::CancellationToken;

pub async fn run(args: MonitorArgs, shutdown: CancellationToken) -> Result<()> {
    if let Some(token) = &args.serve.token {
        page::check_token(token)?;
    }
    if args.admin && args.serve.token.is_none() {
        anyhow::bail!(
            "--admin needs a --token (or ICEWATCH_TOKEN): the page's block, unblock and remove \
             would otherwise be open to anyone who reaches it"
        );
    }
    let control = (!args.no_text_port).then(|| ControlOptions {
        admin: args.admin,
        text_port: args.text_port,
        ..ControlOptions::default()
    });
    let opts = super::connect_options(&args.scheduler)?;
    let history = history::open(&args.history, true)?;
    // Reach the scheduler before serving, so that a wrong address or a
    // scheduler that is down is a clear error now, not a silent retry loop.
    // That session is the live one: the scheduler sees a single monitor.
    // From then on the connection reconnects by itself.
    let first = super::connect_once(&opts, &shutdown).await?;
    let listener = page::bind(&args.serve).await?;
    page::serve_from(
        listener,
        &args.serve,
        history,
        opts,
        Some(first),
        control,
        shutdown,
    )
    .await
}
