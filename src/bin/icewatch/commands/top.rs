//! `icewatch top`: the cluster in this terminal, from the scheduler
//! (a state fed in this process) or from a running icewatch's WebSocket.

use crate::cli::TopArgs;
use anyhow::{Context, Result};
use icewatch::monitor::{self, SharedState, State, StateOptions};
use icewatch::publisher::{Control, ControlOptions};
use icewatch::terminal::{app, control, source};
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Messages the source may hold before it waits for the screen.
const QUEUE: usize = 64;

pub async fn run(args: TopArgs, shutdown: CancellationToken) -> Result<()> {
    if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
        anyhow::bail!(
            "icewatch top needs a terminal; for scripts, `icewatch status` prints the cluster once"
        );
    }
    let (tx, rx) = mpsc::channel(QUEUE);
    let (ask, asked) = mpsc::channel(1);
    let stop = shutdown.child_token();
    let (source, link) = match &args.server {
        Some(server) => {
            let url = source::websocket_url(server).map_err(anyhow::Error::msg)?;
            if let Some(token) = &args.token {
                super::page::check_token(token)?;
            }
            tokio::spawn(source::from_server(
                url.clone(),
                args.token.clone(),
                tx.clone(),
            ));
            let link = control::Link::server(&url, args.token.clone());
            (url, link)
        }
        None => {
            let opts = super::connect_options(&args.scheduler)?;
            // A wrong address or a scheduler that is down is a clear error
            // before the screen is taken; from then on the connection
            // reconnects by itself and the status line tells.
            let first = super::connect_once(&opts, &shutdown).await?;
            let shown = opts.target.to_string();
            let state: SharedState = Arc::new(Mutex::new(State::new(StateOptions::default())));
            let changed = monitor::changed();
            let feeding = stop.clone();
            let (s, c) = (state.clone(), changed.clone());
            tokio::spawn(async move {
                let _ = monitor::run_from(first, opts, s, c, feeding.cancelled_owned()).await;
            });
            // The page's own reader of the text port, with its bounds.
            let control = Control::start(state.clone(), ControlOptions::default());
            tokio::spawn(source::from_state(state, changed, tx.clone(), args.period));
            (shown, control::Link::Local(Arc::new(control)))
        }
    };
    tokio::spawn(control::feed(link, tx, asked));
    let shown = app::run(rx, Some(ask), &source, args.period, shutdown.cancelled())
        .await
        .context("the terminal failed");
    stop.cancel();
    shown
}
