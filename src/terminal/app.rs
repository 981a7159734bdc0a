//! [`run`]: the terminal itself. Takes the terminal over (raw mode, the
//! alternate screen; given back on exit and on a panic, by a panic
//! hook), merges what the source sends into the [`Model`], takes keys
//! into the [`View`], and draws: at once after a key or a resize, after a
//! change at most once per period, and once a second for the clocks and
//! the sparklines. ratatui draws only the cells that changed, and each
//! frame leaves whole (`Frames`), so nothing flickers.

use super::draw::{draw, host_rows, Screen};
use super::model::{Asked, Model};
use super::source::Feed;
use super::view::View;
use crate::monitor::now_ms;
use crossterm::event::{Event, EventStream};
use crossterm::terminal::{BeginSynchronizedUpdate, EndSynchronizedUpdate, EnterAlternateScreen};
use futures_util::{Stream, StreamExt};
use ratatui::backend::{Backend, CrosstermBackend};
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
/// from; a change is drawn at most once per `period`. The host pane's
/// `internals` requests go to `internals` (answered on the feed), if given.
pub async fn run(
    feed: mpsc::Receiver<Feed>,
    internals: Option<mpsc::Sender<String>>,
    source: &str,
    period: Duration,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let mut terminal = take_terminal()?;
    let events = EventStream::new();
    let result = show(
        &mut terminal,
        events,
        (feed, internals),
        source,
        period,
        shutdown,
    )
    .await;
    ratatui::restore();
    result
}

/// The terminal as [`run`] draws on it.
type Screenful = Terminal<CrosstermBackend<Frames>>;

/// ratatui's `try_init` on [`Frames`]: raw mode, the alternate screen,
/// and a panic hook that gives the terminal back first.
fn take_terminal() -> io::Result<Screenful> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        ratatui::restore();
        hook(info);
    }));
    crossterm::terminal::enable_raw_mode()?;
    crossterm::execute!(io::stdout(), EnterAlternateScreen)?;
    Terminal::new(CrosstermBackend::new(Frames::default()))
}

/// stdout for whole frames. What ratatui writes is kept until it
/// flushes, then leaves in one write, marked as one synchronized update
/// (terminals that do not know the mark ignore it). Plain stdout writes
/// every 1 KiB, so a terminal, tmux or ssh could show half a frame.
#[derive(Default)]
struct Frames {
    pending: Vec<u8>,
}

impl io::Write for Frames {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        if self.pending.is_empty() {
            crossterm::queue!(self.pending, BeginSynchronizedUpdate)?;
        }
        self.pending.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.pending.is_empty() {
            crossterm::queue!(self.pending, EndSynchronizedUpdate)?;
            let written = io::stdout().lock().write_all(&self.pending);
            // Cleared even after a failed write: the next frame is whole.
            self.pending.clear();
            written?;
        }
        io::stdout().flush()
    }
}

/// The loop of [`run`], on any backend, with any stream of terminal events.
async fn show<B: Backend>(
    terminal: &mut Terminal<B>,
    mut events: impl Stream<Item = io::Result<Event>> + Unpin,
    (mut feed, internals): (mpsc::Receiver<Feed>, Option<mpsc::Sender<String>>),
    source: &str,
    period: Duration,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    tokio::pin!(shutdown);
    let mut model = Model::new();
    let mut view = View::default();
    let mut link_error: Option<String> = None;
    let mut feeding = true;
    let mut sampler = tokio::time::interval(SAMPLE_EVERY);
    sampler.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut dirty = true;
    let mut last_draw: Option<Instant> = None;
    let mut replay_clock: (Option<u64>, Instant) = (None, Instant::now());
    loop {
        let due = last_draw.map_or(Instant::now(), |t| t + period);
        if dirty && Instant::now() >= due {
            // A replay runs on the recording's clock: the newest time it
            // mentioned, plus the time since it did.
            if model.clock_ms != replay_clock.0 {
                replay_clock = (model.clock_ms, Instant::now());
            }
            let now = match (model.is_replay(), replay_clock.0) {
                (true, Some(clock)) => {
                    let since = replay_clock.1.elapsed().as_millis();
                    clock.saturating_add(u64::try_from(since).unwrap_or(u64::MAX))
                }
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
                    if std::mem::take(&mut view.ask_internals) {
                        ask_internals(&mut model, &view, internals.as_ref());
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
                Some(Feed::Control(control)) => {
                    model.control = Some(*control);
                    dirty = true;
                }
                Some(Feed::Internals(host, answer)) => {
                    let asked = match answer {
                        Ok(daemons) => Asked::Answer(daemons),
                        Err(e) => Asked::Failed(e),
                    };
                    model.internals = Some((host, asked));
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

/// Sends the selected host's `internals` request, unless one is on its
/// way: one at a time.
fn ask_internals(model: &mut Model, view: &View, to: Option<&mpsc::Sender<String>>) {
    let Some(to) = to else { return };
    if matches!(model.internals, Some((_, Asked::Asking))) {
        return;
    }
    let Some(host) = view.selected.and_then(|id| model.hosts.get(&id)) else {
        return;
    };
    let name = host.name.clone();
    if to.try_send(name.clone()).is_ok() {
        model.internals = Some((name, Asked::Asking));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
    use ratatui::backend::TestBackend;

    fn diff(seq: u64) -> Feed {
        Feed::Message(format!(
            r#"{{"type":"diff","seq":{seq},"totals":{{"busy_slots":{seq},"total_slots":200}}}}"#
        ))
    }

    /// On the test's own clock (paused, advanced only by the runtime when
    /// every task waits): 100 changes over a second are drawn at most once
    /// per period, and a key at once.
    #[tokio::test(start_paused = true)]
    async fn changes_are_drawn_at_most_once_a_period_and_keys_at_once() {
        let (tx, rx) = mpsc::channel(8);
        let (keys_tx, keys) = mpsc::channel::<io::Result<Event>>(1);
        let keys =
            futures_util::stream::unfold(
                keys,
                |mut rx| async move { rx.recv().await.map(|e| (e, rx)) },
            );
        let feeding = tokio::spawn(async move {
            let snapshot = r#"{"type":"snapshot","seq":0,"scheduler":{"online":true},"hosts":[],"links":[],"jobs":[],"history":[]}"#;
            tx.send(Feed::Message(snapshot.into())).await.unwrap();
            for seq in 1..=100 {
                tokio::time::sleep(Duration::from_millis(10)).await;
                tx.send(diff(seq)).await.unwrap();
            }
            // A key draws at once, whatever the period.
            let key = |c| {
                Ok(Event::Key(KeyEvent::new(
                    KeyCode::Char(c),
                    KeyModifiers::NONE,
                )))
            };
            keys_tx.send(key('?')).await.unwrap();
            keys_tx.send(key('x')).await.unwrap();
            keys_tx.send(key('q')).await.unwrap();
        });
        let mut terminal = Terminal::new(TestBackend::new(80, 24)).unwrap();
        let start = Instant::now();
        show(
            &mut terminal,
            Box::pin(keys),
            (rx, None),
            "test",
            Duration::from_millis(250),
            std::future::pending(),
        )
        .await
        .unwrap();
        feeding.await.unwrap();
        let elapsed = start.elapsed();
        // The first frame, one per 250 ms of the second of changes, and
        // the two keys that changed the screen (help opened and closed).
        let frames = terminal.get_frame().count();
        let most = 1 + (elapsed.as_millis() / 250) as usize + 1 + 2;
        assert!(elapsed >= Duration::from_secs(1), "{elapsed:?}");
        assert!(
            (4..=most).contains(&frames),
            "{frames} frames in {elapsed:?}, at most {most}"
        );
        let screen = terminal.backend().to_string();
        assert!(
            screen.contains("Slots 100/200 busy"),
            "the last change is drawn:\n{screen}"
        );
    }
}
