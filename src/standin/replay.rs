//! Playing a recording back: [`Pacer`] says when each entry is due, at a
//! speed and with a bound on every wait, for both ways of playing one, and
//! [`play`] feeds a [`State`](crate::monitor::State) straight from the file
//! (`icewatch replay FILE`), on the recording's own clock.
//!
//! The state is fed as the recorded monitor was: each message is applied at
//! the time it arrived then, `start + at`, so jobs last as long as they
//! did whatever the speed, and the state says it is a replay
//! ([`State::set_replay`](crate::monitor::State::set_replay)). A session
//! mark is the recorded scheduler going away and coming back; `END`, the
//! scheduler saying it goes away. When the file ends, the scheduler shows
//! offline: "the recording ended".
//!
//! Raw captures carry no times: they play at once, stamped with the wall
//! clock as they are applied.
//!
//! A long quiet spell plays as [`MAX_WAIT`] at most: the replay's clock
//! then jumps to the next entry (as asciinema's idle limit does), so that
//! no recording, however damaged its times, stalls a replay.
//!
//! ```no_run
//! use icewatch::monitor::{State, StateOptions};
//! use icewatch::standin::replay::{play, PlayOptions};
//! use std::sync::{Arc, Mutex};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let reader = icewatch::capture::recording::open("night.icwr".as_ref())?;
//! let state = Arc::new(Mutex::new(State::new(StateOptions::default())));
//! let changed = icewatch::monitor::changed();
//! let opts = PlayOptions::new("night.icwr", 0.0);
//! let played = play(reader, opts, state.clone(), changed, std::future::pending()).await?;
//! let finished = state.lock().unwrap().totals().jobs_finished;
//! println!("{} messages, {finished} jobs finished", played.messages);
//! # Ok(())
//! # }
//! ```

use crate::capture::recording::{self, Entry, Reader, RecordError, Recorded};
use crate::monitor::{lock_state, now_ms, Changed, Replay, SharedState};
use crate::protocol::frame::Frame;
use crate::protocol::{stats, Message, MsgType, MIN_PROTOCOL_VERSION, PROTOCOL_VERSION};
use crate::standin::session::{accept_monitors, log_in, JobDoneType, MonitorLink};
use std::collections::BTreeSet;
use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::{interval, sleep_until, Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

/// The longest a replay waits between two entries, whatever the recorded
/// gap and the speed: a longer gap is shortened to this.
pub const MAX_WAIT: Duration = Duration::from_secs(60);

/// What an instant that never comes is clamped to: about 30 years.
const FAR: Duration = Duration::from_secs(30 * 365 * 24 * 3600);

/// Entries read ahead of the player, in chunks.
const CHUNK: usize = 256;
const CHUNKS_AHEAD: usize = 16;

/// `ms` of recorded time played at `speed`, as wall time: saturates instead
/// of failing for a speed so small that the result does not fit. `speed`
/// must be positive.
pub(crate) fn played(ms: u64, speed: f64) -> Duration {
    Duration::try_from_secs_f64(ms as f64 / 1000.0 / speed).unwrap_or(Duration::MAX)
}

/// `start + d`, an instant that never comes (30 years on) for a `d` too
/// large to add.
pub(crate) fn later(start: Instant, d: Duration) -> Instant {
    start.checked_add(d.min(FAR)).unwrap_or(start)
}

/// Whether `speed` paces a replay: a positive, finite factor. Anything else
/// (0, NaN, negative, infinite) plays as fast as the reader goes.
fn paces(speed: f64) -> bool {
    speed.is_finite() && speed > 0.0
}

/// When each entry of a recording is due, played at `speed`: the recorded
/// gap between two entries, divided by the speed and shortened to
/// `max_wait`, after the previous entry was due.
///
/// Counting from the previous entry's due time (not from the wall clock)
/// keeps the pace: a player that fell behind catches up, entry after entry.
#[derive(Clone, Debug)]
pub struct Pacer {
    speed: f64,
    max_wait: Duration,
    /// The entry before the latest: its time and when it was due.
    prev: (u64, Instant),
    /// The latest entry: its time and when it is due.
    last: (u64, Instant),
}

impl Pacer {
    /// A pacer whose time 0 is due now.
    pub fn new(speed: f64, max_wait: Duration) -> Pacer {
        let now = Instant::now();
        Pacer {
            speed,
            max_wait,
            prev: (0, now),
            last: (0, now),
        }
    }

    /// When the entry recorded `at_ms` after the start is due; `None` for
    /// at once (no time, or a speed that does not pace: 0, NaN, negative
    /// or infinite). A time earlier than the latest counts as the latest.
    pub fn due(&mut self, at_ms: Option<u64>) -> Option<Instant> {
        let at = at_ms?.max(self.last.0);
        if !paces(self.speed) {
            self.last.0 = at;
            return None;
        }
        let gap = played(at - self.last.0, self.speed).min(self.max_wait);
        let due = later(self.last.1, gap);
        self.prev = self.last;
        self.last = (at, due);
        Some(due)
    }

    /// The recorded time at `now`, while waiting for the latest entry: the
    /// time of the one before, moved on at the speed since it was due, but
    /// never past the latest entry's (a gap shortened to the longest wait
    /// jumps at its end).
    pub fn recorded_at(&self, now: Instant) -> u64 {
        let (from, since) = self.prev;
        let to = self.last.0;
        if !paces(self.speed) {
            return to;
        }
        let elapsed = now.saturating_duration_since(since).as_secs_f64();
        // A float to integer cast saturates (and NaN gives 0).
        let ms = (elapsed * 1000.0 * self.speed) as u64;
        from.saturating_add(ms).min(to)
    }
}

/// How [`play`] plays a recording.
#[derive(Clone, Debug)]
pub struct PlayOptions {
    /// What the state calls the recording (its file, as given): shown as
    /// the scheduler's address and in `scheduler.replay`.
    pub name: String,
    /// 1 as recorded, 10 ten times faster, 0 as fast as possible (as is
    /// anything that is not a positive, finite number).
    pub speed: f64,
    /// The longest wait between two entries ([`MAX_WAIT`] by default).
    pub max_wait: Duration,
}

impl PlayOptions {
    /// Plays the recording called `name` at `speed`, waiting at most
    /// [`MAX_WAIT`] between two entries.
    pub fn new(name: impl Into<String>, speed: f64) -> PlayOptions {
        PlayOptions {
            name: name.into(),
            speed,
            max_wait: MAX_WAIT,
        }
    }
}

/// How far a [`play`] got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Played {
    /// Messages played (those after a recorded `END`, which the recorded
    /// monitor never took in, not counted).
    pub messages: u64,
    /// Whether it played to the end of the file (else shutdown stopped it).
    pub to_the_end: bool,
}

/// Plays `reader` into `state` at the pace `opts` says, notifying `changed`
/// (one waiter: the publisher) after each batch, until the file ends or
/// `shutdown` resolves.
///
/// The state is marked as a replay and its scheduler comes online at the
/// recording's start. Each message is applied at `start + at` (a raw
/// capture's at the wall clock); while waiting for the next one, the
/// state's clock moves on at the speed, ticking once a second. At the end
/// of the file the scheduler goes offline with "the recording ended"
/// (unless it already said `END`); a file that stops early (cut short,
/// damaged) ends it the same way, saying why, and that is the error
/// returned. CancellationToken leaves the state as it is.
pub async fn play(
    reader: Reader,
    opts: PlayOptions,
    state: SharedState,
    changed: Changed,
    shutdown: impl Future<Output = ()>,
) -> Result<Played, RecordError> {
    let header = reader.header();
    let (tx, mut rx) = mpsc::channel(CHUNKS_AHEAD);
    let reading = tokio::task::spawn_blocking(move || read_ahead(reader, tx));
    let mut player = Player {
        state,
        changed,
        pacer: Pacer::new(opts.speed, opts.max_wait),
        start_ms: header.start_ms,
        name: opts.name,
        last_ms: 0,
        gone: false,
        dirty: false,
        messages: 0,
        skipped: 0,
        invalid_logged: false,
    };
    player.begin(header.protocol);
    tokio::pin!(shutdown);
    let mut tick = interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut result = Ok(());
    let mut stopped = false;
    'play: loop {
        let chunk = tokio::select! {
            biased;
            () = shutdown.as_mut() => {
                stopped = true;
                break;
            }
            chunk = rx.recv() => chunk,
        };
        let Some(chunk) = chunk else { break };
        for item in chunk {
            let entry = match item {
                Ok(entry) => entry,
                Err(e) => {
                    result = Err(e);
                    break 'play;
                }
            };
            if let Some(due) = player.pacer.due(entry.at_ms()) {
                if due > Instant::now() {
                    player.publish();
                    if !player.wait(due, &mut tick, shutdown.as_mut()).await {
                        stopped = true;
                        break 'play;
                    }
                }
            }
            player.apply(entry);
        }
        player.publish();
        // Let the publisher have the lock between batches at full speed.
        tokio::task::yield_now().await;
    }
    drop(rx);
    let _ = reading.await;
    if !stopped {
        player.finish(result.as_ref().err());
    }
    result.map(|()| Played {
        messages: player.messages,
        to_the_end: !stopped,
    })
}

/// Reads the whole file in chunks, until it ends or the player stops
/// listening.
fn read_ahead(reader: Reader, tx: mpsc::Sender<Vec<Result<Entry, RecordError>>>) {
    let mut chunk = Vec::with_capacity(CHUNK);
    for item in reader {
        chunk.push(item);
        if chunk.len() == CHUNK {
            let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK));
            if tx.blocking_send(full).is_err() {
                return;
            }
        }
    }
    if !chunk.is_empty() {
        let _ = tx.blocking_send(chunk);
    }
}

/// The state of a [`play`].
struct Player {
    state: SharedState,
    changed: Changed,
    pacer: Pacer,
    start_ms: Option<u64>,
    name: String,
    /// The state's time of the latest entry.
    last_ms: u64,
    /// The recorded scheduler said `END`: its messages until the next
    /// session mark are not applied (the recorded monitor had left).
    gone: bool,
    /// Applied something not yet notified.
    dirty: bool,
    messages: u64,
    skipped: u64,
    invalid_logged: bool,
}

impl Player {
    /// The state's time for an entry recorded `at_ms` after the start (the
    /// wall clock for a raw capture's messages); never earlier than the
    /// one before.
    fn clock(&mut self, at_ms: Option<u64>) -> u64 {
        let t = match (self.start_ms, at_ms) {
            (Some(start), Some(at)) => start.saturating_add(at),
            _ => now_ms(),
        };
        self.last_ms = self.last_ms.max(t);
        self.last_ms
    }

    fn begin(&mut self, protocol: u32) {
        let t = self.clock(Some(0));
        let mut st = lock_state(&self.state);
        st.set_replay(Some(Replay {
            file: self.name.clone(),
            recorded_ms: t,
        }));
        st.scheduler_connected(self.name.clone(), protocol, t);
        drop(st);
        self.changed.send_replace(());
    }

    fn publish(&mut self) {
        if self.dirty {
            self.dirty = false;
            self.changed.send_replace(());
        }
    }

    /// Waits until `due`, moving the state's clock on once a second; false
    /// if `shutdown` came first.
    async fn wait(
        &mut self,
        due: Instant,
        tick: &mut tokio::time::Interval,
        mut shutdown: std::pin::Pin<&mut impl Future<Output = ()>>,
    ) -> bool {
        let sleep = sleep_until(due);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                biased;
                () = shutdown.as_mut() => return false,
                () = sleep.as_mut() => return true,
                _ = tick.tick() => {
                    let at = self.pacer.recorded_at(Instant::now());
                    let t = self.clock(Some(at));
                    if lock_state(&self.state).tick(t) {
                        self.changed.send_replace(());
                    }
                }
            }
        }
    }

    fn apply(&mut self, entry: Entry) {
        let t = self.clock(entry.at_ms());
        let mut st = lock_state(&self.state);
        self.dirty = true;
        match entry {
            Entry::Message(_) if self.gone => self.skipped += 1,
            Entry::Message(m) => {
                self.messages += 1;
                match m.frame.decode(m.protocol) {
                    Ok(Message::End) => {
                        st.scheduler_lost("the scheduler went away (it sent END)".into(), t);
                        self.gone = true;
                    }
                    Ok(msg) => st.apply(&msg, t),
                    Err(e) => {
                        st.invalid_message();
                        if self.invalid_logged {
                            tracing::debug!("skipped: {e}");
                        } else {
                            tracing::warn!("skipped a recorded message that does not decode (later ones are logged at debug level): {e}");
                            self.invalid_logged = true;
                        }
                    }
                }
            }
            Entry::Session {
                number, protocol, ..
            } => {
                if st.scheduler().online {
                    st.scheduler_lost(
                        format!("the scheduler went away; session {number} begins"),
                        t,
                    );
                }
                st.scheduler_connected(self.name.clone(), protocol, t);
                self.gone = false;
            }
        }
        st.tick(t);
    }

    /// The file ended (`failure` says why, if early): the scheduler goes
    /// offline, as the recorded monitor last saw it.
    fn finish(&mut self, failure: Option<&RecordError>) {
        if self.skipped > 0 {
            tracing::warn!(
                "{} recorded messages after the scheduler's END were not played",
                self.skipped
            );
        }
        let text = match failure {
            None => "the recording ended".to_string(),
            Some(e) => format!("the recording ended early: {e}"),
        };
        let mut st = lock_state(&self.state);
        if st.scheduler().online {
            st.scheduler_lost(text, self.last_ms);
        }
        drop(st);
        self.changed.send_replace(());
    }
}

// ---- a recording served as a scheduler ----

/// What `replay --as-scheduler` serves.
#[derive(Clone, Debug)]
pub struct ReplayOptions {
    /// The recording or capture.
    pub path: PathBuf,
    /// Playback speed: 1 as recorded, 2 twice as fast, 0 as fast as the
    /// monitor reads. Raw captures have no times and always go as fast.
    pub speed: f64,
    /// Version offered in the handshake; `None` offers the recording's own.
    pub offer: Option<u32>,
    /// Rewrite job ends to this type code; `None` keeps them as recorded.
    pub job_done: Option<JobDoneType>,
    /// Serve one monitor only, then stop listening.
    pub once: bool,
    /// The longest wait between two entries, whatever the recorded gap
    /// ([`crate::standin::replay::MAX_WAIT`] in `icewatch replay`).
    pub max_wait: Duration,
}

/// Plays the recording to every monitor that connects, each from the start,
/// until `shutdown`. After the last message the connection stays open (a
/// quiet scheduler), unless the recording ends with `END`.
///
/// A monitor sees one session, however many the recording holds: at a
/// session mark, every host it was told about goes offline (`MON_STATS`
/// `State:Offline`, as when daemons leave), then the new session's
/// messages follow, re-encoded from its protocol version to the monitor's.
/// An `END` right before a session mark is not sent.
pub async fn serve_recording(
    listener: TcpListener,
    opts: ReplayOptions,
    shutdown: CancellationToken,
) -> Result<(), RecordError> {
    // Fail early and clearly on a file that cannot be replayed.
    let header = recording::open(&opts.path)?.header();
    let offer = opts
        .offer
        .unwrap_or(header.protocol)
        .clamp(MIN_PROTOCOL_VERSION, PROTOCOL_VERSION);
    let mut monitors = accept_monitors(&listener, &shutdown, opts.once, |stream| {
        replay_monitor(stream, opts.clone(), offer, shutdown.clone())
    })
    .await;
    drop(listener);
    while monitors.join_next().await.is_some() {}
    Ok(())
}

async fn replay_monitor(
    stream: TcpStream,
    opts: ReplayOptions,
    offer: u32,
    shutdown: CancellationToken,
) {
    let serving = format!(", replaying {}", opts.path.display());
    let Some(mut link) = log_in(stream, offer, opts.job_done, &serving).await else {
        return;
    };
    let (tx, mut rx) = mpsc::channel(1024);
    let path = opts.path.clone();
    let reader = tokio::task::spawn_blocking(move || {
        let reader = match recording::open(&path) {
            Ok(r) => r,
            Err(e) => {
                let _ = tx.blocking_send(Err(e));
                return;
            }
        };
        for item in reader {
            if tx.blocking_send(item).is_err() {
                return;
            }
        }
    });
    let mut pacer = Pacer::new(opts.speed, opts.max_wait);
    // The hosts this monitor was told are online, to tell it they left
    // when the recorded session ends.
    let mut hosts = BTreeSet::new();
    // An END goes out only if the recording goes on in the same session or
    // ends with it: a session mark after it means the monitor stays.
    let mut held_end: Option<Recorded> = None;
    loop {
        let item = tokio::select! {
            item = rx.recv() => item,
            _ = shutdown.cancelled() => break,
            _ = link.closed() => return,
        };
        let entry = match item {
            None => break,
            Some(Ok(entry)) => entry,
            Some(Err(e)) => {
                tracing::warn!("replay of {} stops early: {e}", opts.path.display());
                break;
            }
        };
        if let Some(due) = pacer.due(entry.at_ms()) {
            if due > Instant::now() {
                if link.flush().await.is_err() {
                    return;
                }
                tokio::select! {
                    _ = sleep_until(due) => {}
                    _ = shutdown.cancelled() => break,
                    _ = link.closed() => return,
                }
            }
        }
        match entry {
            Entry::Session { .. } => {
                held_end = None;
                for host_id in std::mem::take(&mut hosts) {
                    link.queue(&Message::mon_stats(host_id, stats::OFFLINE));
                }
            }
            Entry::Message(recorded) => {
                if let Some(end) = held_end.take() {
                    resend(&mut link, end.protocol, &end.frame);
                }
                match seen(&recorded) {
                    Seen::End => held_end = Some(recorded),
                    Seen::Host(id, online) => {
                        if online {
                            hosts.insert(id);
                        } else {
                            hosts.remove(&id);
                        }
                        resend(&mut link, recorded.protocol, &recorded.frame);
                    }
                    Seen::Other => resend(&mut link, recorded.protocol, &recorded.frame),
                }
            }
        }
        if (link.queued() >= 64 * 1024 || rx.is_empty()) && link.flush().await.is_err() {
            return;
        }
    }
    drop(rx);
    let _ = reader.await;
    if let Some(end) = held_end {
        resend(&mut link, end.protocol, &end.frame);
        let _ = link.flush().await;
        return;
    }
    if !shutdown.is_cancelled() {
        if link.flush().await.is_err() {
            return;
        }
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = link.closed() => return,
        }
    }
    link.goodbye().await;
}

/// What a recorded message means to the fake scheduler.
enum Seen {
    /// `END`: the scheduler goes away.
    End,
    /// A host's `MON_STATS`: its id, and whether it is online.
    Host(u32, bool),
    /// Anything else.
    Other,
}

fn seen(recorded: &Recorded) -> Seen {
    match recorded.frame.decode(recorded.protocol) {
        Ok(Message::End) => Seen::End,
        Ok(Message::MonStats(m)) => Seen::Host(m.host_id, !m.stats().offline),
        _ => Seen::Other,
    }
}

/// Queues a recorded frame for a monitor, re-encoded if its version or the
/// job-end type differs.
fn resend(link: &mut MonitorLink, recorded_version: u32, frame: &Frame) {
    let ty = frame.ty();
    let is_job_done = ty == MsgType::MON_JOB_DONE || ty == MsgType::JOB_DONE;
    let same = recorded_version == link.version()
        && (!is_job_done || link.job_done.map_or(true, |k| k.code(link.version()) == ty));
    if same {
        link.queue_raw(frame.as_bytes());
    } else {
        match frame.decode(recorded_version) {
            Ok(msg) => link.queue(&msg),
            Err(e) => tracing::warn!("skipping a message that does not decode: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pace_too_slow_to_count_saturates_instead_of_panicking() {
        assert_eq!(played(1_500, 1.0), Duration::from_millis(1_500));
        assert_eq!(played(1_000, 4.0), Duration::from_millis(250));
        assert_eq!(played(1, 1e-300), Duration::MAX);
        assert_eq!(played(u64::MAX, f64::MIN_POSITIVE), Duration::MAX);
        assert_eq!(played(0, 1e-300), Duration::ZERO);
        let now = Instant::now();
        assert_eq!(
            later(now, Duration::from_secs(2)),
            now + Duration::from_secs(2)
        );
        assert_eq!(later(now, Duration::MAX), now + FAR);
    }

    #[tokio::test(start_paused = true)]
    async fn each_wait_is_the_recorded_gap_at_the_speed_and_at_most_the_longest() {
        let max = Duration::from_secs(60);
        let mut pacer = Pacer::new(2.0, max);
        let t0 = Instant::now();
        let dues: Vec<Duration> = [1_000, 3_000, 2_000, 3_000 + 3_600_000, 3_600_000 + 3_100]
            .into_iter()
            .map(|at| pacer.due(Some(at)).unwrap() - t0)
            .collect();
        let ms = Duration::from_millis;
        // Half the gaps; a time that goes back waits nothing; an hour
        // waits a minute; the catch-up keeps the pace after it.
        assert_eq!(
            dues,
            [ms(500), ms(1_500), ms(1_500), ms(61_500), ms(61_550)]
        );

        let mut slow = Pacer::new(1e-300, max);
        assert_eq!(slow.due(Some(1)).unwrap() - t0, max);
        assert_eq!(slow.due(Some(1)).unwrap() - t0, max, "no gap, no wait");

        for speed in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let mut fast = Pacer::new(speed, max);
            assert_eq!(fast.due(Some(5_000)), None, "{speed}");
        }
        assert_eq!(Pacer::new(1.0, max).due(None), None, "a raw capture");
    }

    #[tokio::test(start_paused = true)]
    async fn the_recorded_time_moves_at_the_speed_up_to_the_entry_waited_for() {
        let mut pacer = Pacer::new(4.0, Duration::from_secs(60));
        let t0 = Instant::now();
        pacer.due(Some(1_000));
        let due = pacer.due(Some(9_000)).unwrap();
        assert_eq!(due - t0, Duration::from_millis(2_250));
        let at = |ms| pacer.recorded_at(t0 + Duration::from_millis(ms));
        assert_eq!(at(0), 1_000, "before the previous entry was due");
        assert_eq!(at(250), 1_000);
        assert_eq!(at(1_250), 5_000);
        assert_eq!(at(2_250), 9_000);
        assert_eq!(at(60_000), 9_000, "never past the entry waited for");

        // A shortened gap: the clock moves at the speed, then jumps.
        let mut pacer = Pacer::new(1.0, Duration::from_secs(1));
        pacer.due(Some(0));
        let due = pacer.due(Some(3_600_000)).unwrap();
        assert_eq!(pacer.recorded_at(due - Duration::from_millis(1)), 999);
        assert_eq!(pacer.recorded_at(due + Duration::from_secs(5)), 6_000);
    }
}
