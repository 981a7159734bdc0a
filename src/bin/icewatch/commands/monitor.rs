//! `icewatch monitor`: a real scheduler's cluster, served as a page.

use super::{history, page};
use crate::cli::{Db, MonitorArgs};
use anyhow::Result;
use icewatch::history::Book;
use icewatch::publisher::keep_blocks::BlockBook;
use icewatch::publisher::ControlOptions;
use std::sync::Arc;
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
    if args.keep_blocks && args.no_text_port {
        anyhow::bail!(
            "--keep-blocks reads and writes the scheduler's block list on its text port: \
             leave out --no-text-port"
        );
    }
    if args.keep_blocks && args.history.db == Some(Db::None) {
        anyhow::bail!(
            "--keep-blocks keeps the block list in the history database: leave out --db none \
             (or give --db PATH)"
        );
    }
    let opts = super::connect_options(&args.scheduler)?;
    let history = history::open(&args.history, true)?;
    // The kept blocks and the audit rows are this scheduler's, by the
    // name it was given, where several clusters share one database.
    let book = match &history {
        Some((db, _)) => Some(
            Arc::new(Book::open(&db.location(), &opts.target.to_string())?) as Arc<dyn BlockBook>,
        ),
        None => None,
    };
    let control = (!args.no_text_port).then(|| ControlOptions {
        admin: args.admin,
        text_port: args.text_port,
        keep_blocks: args.keep_blocks,
        book,
        ..ControlOptions::default()
    });
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
