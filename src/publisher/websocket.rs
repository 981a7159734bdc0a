//! WebSocket fan-out: one JSON text per change, shared by every client.
//!
//! The [`Hub`] owns the sequence number and a bounded
//! [`broadcast`] channel of already-serialised
//! messages. [`Hub::run`] is the one publishing task: it wakes when the
//! reading task signals a change, waits out the coalescing period, and under
//! the state lock takes the changes, renders one `diff` and sends that same
//! text to every client. [`serve_client`] feeds one client: a `snapshot`
//! rendered under the same lock as its subscription (so no diff falls in
//! between), then the diffs as they come. A client that falls behind the
//! bounded channel gets a fresh snapshot instead of the diffs it missed; a
//! client whose socket stays blocked past a timeout is dropped. Nothing is
//! buffered per client beyond its socket, and nobody waits for a slow client.
//!
//! The contract with the page is `docs/websocket.md`.

use bytes::Bytes;
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;
use tokio::sync::{broadcast, watch};
use tokio::time::{sleep_until, timeout, Instant};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_util::sync::CancellationToken;

/// A state that can be published: the whole of it, and what changed since
/// a reader's last look. [`State`](crate::monitor::State) implements it (in
/// `json.rs`, its reader being a [`Delta`](super::delta::Delta)); tests may
/// publish anything else.
pub trait Render: Send + 'static {
    /// The hub's memory of what it has sent, and its place in the changes.
    type Reader: Send + 'static;
    /// Starts following the changes, from a snapshot taken now.
    fn follow(&mut self) -> Self::Reader;
    /// Stops following them (nobody listens).
    fn unfollow(&mut self, reader: Self::Reader);
    /// The whole state as a `snapshot` message with sequence number `seq`.
    fn snapshot_message(&self, seq: u64) -> String;
    /// The changes since `reader`'s last look, as a `diff` message with
    /// sequence number `seq`.
    fn diff_message(&mut self, reader: &mut Self::Reader, seq: u64) -> Rendered;
    /// A number that changes whenever the state does, so that snapshots
    /// taken at the same revision share one rendering; `None`: render
    /// each anew.
    fn revision(&self) -> Option<u64> {
        None
    }
}

/// What [`Render::diff_message`] made of the changes.
#[derive(Debug)]
pub enum Rendered {
    /// Nothing to send.
    Nothing,
    /// This `diff` message.
    Diff(String),
    /// Too much changed to say in a diff: send everyone a snapshot.
    Snapshot,
}

/// Something published beside the state, under a top-level key of its own
/// in every snapshot and in the diffs after it changed (the history's
/// status): what no reader of the state knows.
pub trait Annex: Send + Sync + std::fmt::Debug {
    /// The top-level key.
    fn key(&self) -> &'static str;
    /// A number that changes whenever the value does.
    fn revision(&self) -> u64;
    /// The value, as JSON.
    fn json(&self) -> String;
}

/// `message` (a JSON object) with `annex`'s key and value added.
fn with_annex(mut message: String, annex: &dyn Annex) -> String {
    if message.ends_with('}') {
        message.pop();
        let sep = if message.ends_with('{') { "" } else { "," };
        message.push_str(&format!("{sep}\"{}\":{}}}", annex.key(), annex.json()));
    }
    message
}

/// Tuning of the fan-out.
#[derive(Clone, Debug)]
pub struct HubOptions {
    /// At most one diff per this period.
    pub coalesce: Duration,
    /// Diffs a client may fall behind before it gets a fresh snapshot.
    pub queue: usize,
    /// A client whose socket accepts nothing for this long is dropped.
    pub client_timeout: Duration,
    /// Published beside the state, if anything.
    pub annex: Option<Arc<dyn Annex>>,
    /// Snapshots say `"text_port": true`: the server reads the scheduler's
    /// text port (`/api/v1/control`, `docs/admin.md`).
    pub text_port: bool,
    /// Snapshots say `"admin": true`: the page may offer the actions of
    /// `docs/admin.md`.
    pub admin: bool,
    /// Snapshots say `"keep_blocks": true`: the server keeps the
    /// scheduler's blocks across its restarts (`docs/admin.md`).
    pub keep_blocks: bool,
}

impl Default for HubOptions {
    fn default() -> Self {
        HubOptions {
            coalesce: Duration::from_millis(100),
            queue: 64,
            client_timeout: Duration::from_secs(30),
            annex: None,
            text_port: false,
            admin: false,
            keep_blocks: false,
        }
    }
}

/// Counters of the fan-out, for `/metrics` and for tests.
#[derive(Debug, Default)]
pub struct HubStats {
    /// Clients connected now.
    pub clients: AtomicU64,
    /// Diffs rendered and broadcast.
    pub diffs: AtomicU64,
    /// Snapshots sent (first ones and resyncs).
    pub snapshots: AtomicU64,
    /// Snapshots sent because a client fell behind.
    pub resyncs: AtomicU64,
    /// Snapshots rendered (those taken at once share one rendering).
    pub renders: AtomicU64,
    /// Clients dropped because their socket stayed blocked.
    pub timeouts: AtomicU64,
    /// Bytes of messages handed to client sockets.
    pub bytes_sent: AtomicU64,
}

/// A rendered snapshot, shared by everyone who asks for it while it is
/// current and someone still holds it.
struct Shared(Arc<String>);

impl AsRef<[u8]> for Shared {
    fn as_ref(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

/// The last snapshot rendered: the sequence number, the revision and the
/// annex's revision it shows, and the text while anyone holds it (so that
/// memory goes when they do).
type SnapshotCache = Option<(u64, u64, u64, Weak<String>)>;

/// The fan-out of one shared state to every WebSocket client.
pub struct Hub<S: Render> {
    state: Arc<Mutex<S>>,
    /// Sequence number of the last diff; changed only under the state lock.
    seq: AtomicU64,
    /// See [`SnapshotCache`]; used under the state lock.
    last_snapshot: Mutex<SnapshotCache>,
    /// What the clients were sent, while any listen; used under the state
    /// lock.
    reader: Mutex<Option<S::Reader>>,
    /// The annex's revision last sent in a diff; used under the state lock.
    annex_sent: AtomicU64,
    tx: broadcast::Sender<Utf8Bytes>,
    closing: CancellationToken,
    opts: HubOptions,
    stats: HubStats,
}

impl<S: Render> Hub<S> {
    /// A hub publishing `state`.
    pub fn new(state: Arc<Mutex<S>>, opts: HubOptions) -> Arc<Hub<S>> {
        let (tx, _) = broadcast::channel(opts.queue.max(1));
        Arc::new(Hub {
            state,
            seq: AtomicU64::new(0),
            last_snapshot: Mutex::new(None),
            reader: Mutex::new(None),
            annex_sent: AtomicU64::new(0),
            tx,
            closing: CancellationToken::new(),
            opts,
            stats: HubStats::default(),
        })
    }

    /// The published state (lock it briefly, never across an `.await`).
    pub fn state(&self) -> MutexGuard<'_, S> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The fan-out's counters.
    pub fn stats(&self) -> &HubStats {
        &self.stats
    }

    /// The sequence number of the last diff sent.
    pub fn seq(&self) -> u64 {
        let _guard = self.state();
        self.seq.load(Relaxed)
    }

    /// Sends what changed since the last flush as one diff, if anyone
    /// listens; stops following the changes when nobody does. Call it with
    /// the state locked (`state` is the guard).
    fn flush(&self, state: &mut S) {
        let mut reader = self.reader.lock().unwrap_or_else(PoisonError::into_inner);
        if self.tx.receiver_count() == 0 {
            if let Some(reader) = reader.take() {
                state.unfollow(reader);
            }
            return;
        }
        let Some(reader) = reader.as_mut() else {
            return;
        };
        let seq = self.seq.load(Relaxed) + 1;
        let annex = self.opts.annex.as_deref().filter(|a| {
            let revision = a.revision();
            self.annex_sent.swap(revision, Relaxed) != revision
        });
        // Receivers may all have gone since the check: nothing to do then.
        let rendered = match (state.diff_message(reader, seq), annex) {
            (Rendered::Nothing, Some(annex)) => Rendered::Diff(with_annex(
                format!("{{\"type\":\"diff\",\"seq\":{seq}}}"),
                annex,
            )),
            (Rendered::Diff(text), Some(annex)) => Rendered::Diff(with_annex(text, annex)),
            (rendered, _) => rendered,
        };
        match rendered {
            Rendered::Nothing => {}
            Rendered::Diff(text) => {
                self.seq.store(seq, Relaxed);
                self.stats.diffs.fetch_add(1, Relaxed);
                let _ = self.tx.send(Utf8Bytes::from(text));
            }
            Rendered::Snapshot => {
                self.stats.resyncs.fetch_add(1, Relaxed);
                let _ = self.tx.send(shared_text(self.render(state)));
            }
        }
    }

    /// Publishes pending changes now (outside the coalescing rhythm).
    pub fn flush_now(&self) {
        self.flush(&mut self.state());
    }

    /// A snapshot and the subscription that continues it without a gap:
    /// pending changes go out first as a diff to the other clients, so the
    /// snapshot is exactly the state after diff `seq`.
    pub fn subscribe(&self) -> (Utf8Bytes, broadcast::Receiver<Utf8Bytes>) {
        let mut state = self.state();
        self.flush(&mut state);
        {
            let mut reader = self.reader.lock().unwrap_or_else(PoisonError::into_inner);
            if reader.is_none() {
                *reader = Some(state.follow());
            }
        }
        let text = self.render(&state);
        let rx = self.tx.subscribe();
        drop(state);
        self.stats.snapshots.fetch_add(1, Relaxed);
        (shared_text(text), rx)
    }

    /// The whole state as a `snapshot` message, after publishing pending
    /// changes (for clients that poll instead of subscribing).
    pub fn snapshot(&self) -> Bytes {
        let mut state = self.state();
        self.flush(&mut state);
        Bytes::from_owner(Shared(self.render(&state)))
    }

    /// The snapshot of `state` (locked) as it is now: rendered once for
    /// everyone who asks while it stays current and held, so that many
    /// requests at once cost one rendering and one copy of the text.
    fn render(&self, state: &S) -> Arc<String> {
        let seq = self.seq.load(Relaxed);
        let revision = state.revision();
        let annex = self.opts.annex.as_deref();
        let annex_revision = annex.map_or(0, Annex::revision);
        let mut last = self
            .last_snapshot
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let (Some(rev), Some((s, r, a, text))) = (revision, last.as_ref()) {
            if (*s, *r, *a) == (seq, rev, annex_revision) {
                if let Some(text) = text.upgrade() {
                    return text;
                }
            }
        }
        let mut text = state.snapshot_message(seq);
        for (on, field) in [
            (self.opts.admin, "\"admin\":true,"),
            (self.opts.text_port, "\"text_port\":true,"),
            (self.opts.keep_blocks, "\"keep_blocks\":true,"),
        ] {
            if on && text.starts_with('{') {
                text.insert_str(1, field);
            }
        }
        if let Some(annex) = annex {
            text = with_annex(text, annex);
        }
        let text = Arc::new(text);
        self.stats.renders.fetch_add(1, Relaxed);
        *last = revision.map(|rev| (seq, rev, annex_revision, Arc::downgrade(&text)));
        text
    }

    /// The publishing task: after each signal on `changed` (a receiver of
    /// the connection's [`Changed`](crate::monitor::Changed), made before
    /// the task is spawned so that no signal falls in between), at most one
    /// diff per coalescing period, until [`Hub::close`].
    pub async fn run(self: Arc<Self>, mut changed: watch::Receiver<()>) {
        let closing = self.closing.clone();
        let mut last = None::<Instant>;
        loop {
            tokio::select! {
                biased;
                () = closing.cancelled() => return,
                seen = changed.changed() => if seen.is_err() { return },
            }
            if let Some(last) = last {
                tokio::select! {
                    biased;
                    () = closing.cancelled() => return,
                    () = sleep_until(last + self.opts.coalesce) => {}
                }
            }
            self.flush_now();
            last = Some(Instant::now());
        }
    }

    /// Calls `release` once clients have left and no more have come or
    /// gone for [`DEPARTURES_SETTLE`], until [`Hub::close`]: an allocator
    /// that keeps what it freed for reuse (glibc's) is told to give it
    /// back then, not on every departure.
    pub async fn release_after_departures(self: Arc<Self>, release: fn()) {
        let closing = self.closing.clone();
        let mut departures = Departures::default();
        loop {
            tokio::select! {
                biased;
                () = closing.cancelled() => return,
                () = tokio::time::sleep(DEPARTURES_SETTLE) => {}
            }
            if departures.settled(self.stats.clients.load(Relaxed)) {
                release();
            }
        }
    }

    /// Ends [`Hub::run`] and makes every client close its socket.
    pub fn close(&self) {
        self.closing.cancel();
    }

    /// Resolves once [`Hub::close`] was called.
    pub fn closed(&self) -> impl Future<Output = ()> + Send + 'static {
        self.closing.clone().cancelled_owned()
    }
}

/// How long the number of clients must stay the same after some left
/// before [`Hub::release_after_departures`] releases memory.
pub const DEPARTURES_SETTLE: Duration = Duration::from_secs(5);

/// The number of clients seen at each check: whether some left since the
/// last release and the number has since stood still.
#[derive(Debug, Default)]
struct Departures {
    /// The most clients seen since the last release.
    peak: u64,
    /// The number at the previous check.
    last: u64,
}

impl Departures {
    /// Takes the number of clients now: true when it is below the peak
    /// and the same as at the previous check (the departures are over).
    fn settled(&mut self, clients: u64) -> bool {
        let settled = clients < self.peak && clients == self.last;
        self.last = clients;
        self.peak = if settled {
            clients
        } else {
            self.peak.max(clients)
        };
        settled
    }
}

/// Why a client's session ended.
#[derive(Debug, PartialEq, Eq)]
pub enum ClientEnd {
    /// The client closed, or its stream ended or failed.
    Closed,
    /// Sending to the client failed.
    SendFailed,
    /// The client's socket accepted nothing for the client timeout.
    TimedOut,
    /// The server is shutting down.
    Shutdown,
}

/// Feeds one client: a snapshot, then every diff, with a fresh snapshot
/// whenever it falls behind. Generic over the socket's two halves so tests
/// can drive it with channels; what the client sends is read (to answer
/// pings and notice a close) and otherwise ignored.
pub async fn serve_client<S, Si, St, E>(hub: Arc<Hub<S>>, mut sink: Si, mut stream: St) -> ClientEnd
where
    S: Render,
    Si: Sink<Message> + Unpin,
    St: Stream<Item = Result<Message, E>> + Unpin,
{
    let stats = &hub.stats;
    let _connected = Connected::new(&stats.clients);
    let closing = hub.closing.clone();
    let (snapshot, mut rx) = hub.subscribe();
    let mut outgoing = Some(snapshot);
    let end = loop {
        if let Some(text) = outgoing.take() {
            let len = text.len() as u64;
            match timeout(hub.opts.client_timeout, sink.send(Message::Text(text))).await {
                Ok(Ok(())) => stats.bytes_sent.fetch_add(len, Relaxed),
                Ok(Err(_)) => break ClientEnd::SendFailed,
                Err(_) => {
                    stats.timeouts.fetch_add(1, Relaxed);
                    break ClientEnd::TimedOut;
                }
            };
        }
        tokio::select! {
            biased;
            () = closing.cancelled() => {
                let close = Message::Close(Some(CloseFrame { code: CloseCode::Away, reason: "server shutting down".into() }));
                let _ = timeout(Duration::from_secs(1), sink.send(close)).await;
                break ClientEnd::Shutdown;
            }
            received = rx.recv() => match received {
                Ok(text) => outgoing = Some(text),
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    let (snapshot, fresh) = hub.subscribe();
                    rx = fresh;
                    stats.resyncs.fetch_add(1, Relaxed);
                    outgoing = Some(snapshot);
                }
                Err(broadcast::error::RecvError::Closed) => break ClientEnd::Shutdown,
            },
            incoming = stream.next() => match incoming {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break ClientEnd::Closed,
                Some(Ok(_)) => {}
            },
        }
    };
    end
}

/// Counts a client as connected for as long as it lives (even if its task
/// is cancelled).
struct Connected<'a>(&'a AtomicU64);

impl<'a> Connected<'a> {
    fn new(clients: &'a AtomicU64) -> Self {
        clients.fetch_add(1, Relaxed);
        Connected(clients)
    }
}

impl Drop for Connected<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

/// A shared snapshot as a WebSocket text, without copying it.
fn shared_text(text: Arc<String>) -> Utf8Bytes {
    Utf8Bytes::try_from(Bytes::from_owner(Shared(text.clone())))
        .unwrap_or_else(|_| Utf8Bytes::from(text.as_str()))
}

#[cfg(test)]
mod tests {
    use super::Departures;

    #[test]
    fn departures_release_once_the_count_stands_still_below_its_peak() {
        let mut d = Departures::default();
        let checks = [0, 3, 2000, 2000, 1200, 0, 0, 0, 5, 5, 4, 4, 4];
        let released: Vec<bool> = checks.iter().map(|&n| d.settled(n)).collect();
        let expected = [
            false, false, false, false, false, false, true, false, false, false, false, true, false,
        ];
        assert_eq!(released, expected, "checks {checks:?}");
    }
}
