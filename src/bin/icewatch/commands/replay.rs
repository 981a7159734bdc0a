//! `icewatch replay`: a recording served as if live, as a page or to other
//! monitors as a fake scheduler.

use super::{bind_scheduler, history, page};
use crate::cli::ReplayArgs;
use anyhow::{Context, Result};
use icewatch::capture::recording;
use icewatch::standin::replay::{play, PlayOptions, MAX_WAIT};
use icewatch::standin::replay::{serve_recording, ReplayOptions};
use std::net::SocketAddr;
use tokio_util::sync::CancellationToken;

pub async fn run(args: ReplayArgs, shutdown: CancellationToken) -> Result<()> {
    let shown = args.file.display().to_string();
    let reader = recording::open(&args.file).with_context(|| format!("cannot replay {shown}"))?;
    let header = reader.header();
    eprintln!(
        "replaying {shown} (protocol {}) at {}",
        header.protocol,
        speed_text(args.speed)
    );
    if args.scheduler.as_scheduler {
        let opts = ReplayOptions {
            path: args.file.clone(),
            speed: args.speed,
            offer: args.protocol,
            job_done: args.job_done.map(Into::into),
            once: false,
            max_wait: MAX_WAIT,
        };
        let addr = SocketAddr::new(args.scheduler.bind, args.scheduler.port);
        let listener = bind_scheduler(addr).await?;
        serve_recording(listener, opts, shutdown)
            .await
            .with_context(|| format!("cannot replay {shown}"))?;
        return Ok(());
    }
    // The recording feeds the page's state directly, on its own clock: a
    // job lasts as long as it did, whatever the speed.
    let history = history::open(&args.history, false)?;
    let page = page::bind(&args.serve).await?;
    let opts = PlayOptions::new(shown.clone(), args.speed);
    let feed = |state, changed, stop: CancellationToken| async move {
        match play(reader, opts, state, changed, stop.cancelled_owned()).await {
            Ok(played) if played.to_the_end => eprintln!(
                "the recording ended after {} messages; its last state is served until Ctrl-C",
                played.messages
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!("replay of {shown} stops early: {e}"),
        }
        Ok(())
    };
    page::serve_fed(
        page,
        &args.serve,
        history,
        None,
        shutdown,
        "the replay",
        feed,
    )
    .await
}

fn speed_text(speed: f64) -> String {
    if speed == 0.0 {
        "full speed".to_string()
    } else {
        format!("{speed}x the recorded pace")
    }
}
