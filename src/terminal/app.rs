//! [`run`]: the terminal itself. Takes the terminal over (raw mode, the
//! alternate screen; given back on exit and on a panic, by ratatui's
//! hook), merges what the source sends into the [`Model`], takes keys
//! into the [`View`], and draws: at once after a key or a resize, after a
//! change at most once per period, and once a second for the clocks and
//! the sparklines. ratatui draws only the cells that changed, so nothing
//! flickers.

use super::draw::{draw, host_rows, Screen};
use super::model::Model;
use super::source::Feed;
use super::view::View;
use crate::monitor::now_ms;
use crossterm::event::{Event, EventStream};
use futures_util::StreamExt;
use ratatui::backend::Backend;
use ratatui::Terminal;
use std::future::Future;
use std::io;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// How often the sparklines take a sample (and the clocks tick).
pub const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// Shows `feed` in the terminal until the person quits, the terminal's
/// input ends, or `shutdown` fires; `source` names where the feed comes
/// from; a change is drawn at most once per `period`.
pub async fn run(
    feed: mpsc::Receiver<Feed>,
    source: &str,
    period: Duration,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let mut terminal = ratatui::try_init()?;
    let result = show(&mut terminal, feed, source, period, shutdown).await;
    ratatui::restore();
    result
}

/// The loop of [`run`], on any backend.
async fn show<B: Backend>(
    terminal: &mut Terminal<B>,
    mut feed: mpsc::Receiver<Feed>,
    source: &str,
    period: Duration,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    tokio::pin!(shutdown);
    let mut events = EventStream::new();
    let mut model = Model::new();
    let mut view = View::default();
    let mut link_error: Option<String> = None;
    let mut feeding = true;
    let mut sampler = tokio::time::interval(SAMPLE_EVERY);
    sampler.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut dirty = true;
    let mut last_draw: Option<Instant> = None;
    loop {
        let due = last_draw.map_or(Instant::now(), |t| t + period);
        if dirty && Instant::now() >= due {
            let now = match (model.is_replay(), model.clock_ms) {
                (true, Some(clock)) => clock,
                _ => now_ms(),
            };
            let screen = Screen {
                model: &model,
                view: &view,
                now_ms: now,
                source,
                link_error: link_error.as_deref(),
            };
            terminal.draw(|frame| draw(frame, &screen))?;
            dirty = false;
            last_draw = Some(Instant::now());
        }
        tokio::select! {
            event = events.next() => match event {
                Some(Ok(Event::Key(key))) => {
                    let rows = host_rows(&model, &view);
                    if view.key(key, &rows) {
                        dirty = true;
                        last_draw = None;
                    }
                    if view.quit {
                        return Ok(());
                    }
                }
                Some(Ok(Event::Resize(..))) => {
                    terminal.autoresize()?;
                    dirty = true;
                    last_draw = None;
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e),
                None => return Ok(()),
            },
            msg = feed.recv(), if feeding => match msg {
                Some(Feed::Message(text)) => {
                    // A message that is not one is skipped: the next
                    // snapshot sets the picture right.
                    if model.receive(&text).is_ok() {
                        link_error = None;
                        dirty = true;
                    }
                }
                Some(Feed::Down(why)) => {
                    link_error = Some(why);
                    dirty = true;
                }
                None => feeding = false,
            },
            _ = sampler.tick() => {
                model.sample();
                dirty = true;
            }
            () = tokio::time::sleep_until(due), if dirty => {}
            () = &mut shutdown => return Ok(()),
        }
    }
}
