//! `icewatch monitor`: a real scheduler's cluster, served as a page.

use super::{history, page};
use crate::cli::{Db, MonitorArgs};
use anyhow::Result;
use icewatch::history::{Book, Database};
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
    let book = match &history {
        Some((Database::Sqlite(store), _)) => {
            Some(Arc::new(Book::open(store.path())?) as Arc<dyn BlockBook>)
        }
        Some((Database::Postgres(_), _)) if args.keep_blocks => anyhow::bail!(
            "--keep-blocks keeps its list in an SQLite history only, for now: several clusters \
             sharing one PostgreSQL database would share one list. Give --db PATH, or leave \
             out --keep-blocks"
        ),
        // The audit's rows too are SQLite's only; stderr and the metric
        // have them either way.
        Some((Database::Postgres(_), _)) | None => None,
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
