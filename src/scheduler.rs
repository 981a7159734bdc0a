//! The scheduler's side of a monitor connection, so that icewatch can stand
//! in for an icecream scheduler: `icewatch demo --as-scheduler` serves the
//! [demo simulation](crate::demo), `icewatch replay --as-scheduler` a
//! recording. Any monitor can connect: icemon, icecream-sundae, icewatch.
//!
//! Like a real scheduler, each connection does the version handshake
//! ([`crate::protocol::handshake`], the same on both sides), waits for
//! `MON_LOGIN`, then sends every message at the agreed version: the long
//! `MON_GET_CS` below protocol 29, and a job's end as `MON_JOB_DONE` (0x55,
//! released schedulers up to icecream 1.4) or `JOB_DONE` (0x4D, git master
//! since 2022), see [`JobDoneType`].
//!
//! The demo serves one shared simulated cluster: a monitor that logs in gets
//! a `MON_STATS` for every host, then the live stream. A monitor that falls
//! too far behind is dropped, as icecream's scheduler drops a monitor that
//! blocks. On shutdown every monitor gets `END`.

use crate::demo::{Event, Simulation};
use crate::protocol::frame::{parse_frame, FrameError, MAX_MSG_SIZE};
use crate::protocol::handshake::{handshake, HandshakeError};
use crate::protocol::{Message, MonStats, MsgType, MIN_PROTOCOL_VERSION, PROTOCOL_VERSION};
use crate::record::{self, Entry, RecordError, Recorded};
use crate::replay::{later, played, Pacer};
use crate::shutdown::Shutdown;
use bytes::BytesMut;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, mpsc, oneshot, Notify};
use tokio::task::JoinSet;
use tokio::time::{sleep_until, timeout, Instant};

/// How long a new connection may take to finish the handshake and log in.
pub const LOGIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Messages a demo monitor may fall behind before it is dropped.
const QUEUE: usize = 4096;
/// How long shutdown waits for monitors to take their `END`.
const GOODBYE: Duration = Duration::from_secs(2);

/// Which type code a job's end goes out under.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum JobDoneType {
    /// `MON_JOB_DONE` (0x55) up to protocol 43, `JOB_DONE` (0x4D) at 44: a
    /// released scheduler, or git master.
    #[default]
    Auto,
    /// Always `MON_JOB_DONE` (0x55), like icecream 1.4 and older.
    Mon,
    /// Always `JOB_DONE` (0x4D), like icecream git master.
    Job,
}

impl JobDoneType {
    /// The type code for a job's end at `version`.
    pub fn code(self, version: u32) -> MsgType {
        match self {
            JobDoneType::Mon => MsgType::MON_JOB_DONE,
            JobDoneType::Job => MsgType::JOB_DONE,
            JobDoneType::Auto if version <= 43 => MsgType::MON_JOB_DONE,
            JobDoneType::Auto => MsgType::JOB_DONE,
        }
    }
}

/// Why a connection did not become a monitor.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// The handshake failed.
    #[error(transparent)]
    Handshake(#[from] HandshakeError),
    /// The peer sent something other than `MON_LOGIN` first.
    #[error("expected MON_LOGIN, got {0}: not a monitor")]
    NotAMonitor(MsgType),
    /// The peer sent a malformed frame.
    #[error("malformed first message: {0}")]
    Frame(#[from] FrameError),
    /// The peer took too long.
    #[error("no MON_LOGIN within {LOGIN_TIMEOUT:?}")]
    Timeout,
    /// The connection failed.
    #[error("connection failed: {0}")]
    Io(#[from] std::io::Error),
}

/// A logged-in monitor: frames queue in a buffer and go out on
/// [`MonitorLink::flush`].
pub struct MonitorLink {
    read: OwnedReadHalf,
    write: OwnedWriteHalf,
    version: u32,
    job_done: Option<JobDoneType>,
    out: BytesMut,
    peer: SocketAddr,
}

/// Does the scheduler's part of a new connection: the handshake offering
/// `offer`, then waits for `MON_LOGIN`. `job_done` picks the job-end type
/// code; `None` sends job ends as they are given.
pub async fn accept_monitor(
    stream: TcpStream,
    offer: u32,
    job_done: Option<JobDoneType>,
) -> Result<MonitorLink, LoginError> {
    let peer = stream.peer_addr()?;
    stream.set_nodelay(true)?;
    let mut stream = stream;
    let login = async {
        let version = handshake(&mut stream, offer).await?;
        let mut buf = BytesMut::with_capacity(64);
        loop {
            match parse_frame(&buf, MAX_MSG_SIZE) {
                Ok((_, raw)) if raw.ty == MsgType::MON_LOGIN => return Ok(version),
                Ok((_, raw)) => return Err(LoginError::NotAMonitor(raw.ty)),
                Err(FrameError::Incomplete { .. }) => {}
                Err(e) => return Err(e.into()),
            }
            if stream.read_buf(&mut buf).await? == 0 {
                return Err(LoginError::Io(std::io::ErrorKind::UnexpectedEof.into()));
            }
        }
    };
    let version = timeout(LOGIN_TIMEOUT, login)
        .await
        .map_err(|_| LoginError::Timeout)??;
    let (read, write) = stream.into_split();
    Ok(MonitorLink {
        read,
        write,
        version,
        job_done,
        out: BytesMut::with_capacity(16 * 1024),
        peer,
    })
}

/// Accepts monitors on `listener` until `shutdown` (with `once`, until the
/// first one), each served by its own task: `serve(stream)`. Finished tasks
/// are reaped meanwhile; the ones still running are returned.
async fn accept_monitors<F>(
    listener: &TcpListener,
    shutdown: &Shutdown,
    once: bool,
    mut serve: impl FnMut(TcpStream) -> F,
) -> JoinSet<()>
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let mut monitors = JoinSet::new();
    let mut stop = shutdown.clone();
    loop {
        tokio::select! {
            _ = stop.wait() => break,
            accepted = listener.accept() => {
                match accepted {
                    Ok((stream, _)) => {
                        monitors.spawn(serve(stream));
                        if once {
                            break;
                        }
                    }
                    Err(e) => tracing::warn!("accepting a monitor failed: {e}"),
                }
            }
            Some(_) = monitors.join_next(), if !monitors.is_empty() => {}
        }
    }
    monitors
}

/// [`accept_monitor`], logged either way: a connection that does not log
/// in as a monitor gives `None`; `serving` ends the login line.
async fn log_in(
    stream: TcpStream,
    offer: u32,
    job_done: Option<JobDoneType>,
    serving: &str,
) -> Option<MonitorLink> {
    match accept_monitor(stream, offer, job_done).await {
        Ok(link) => {
            tracing::info!(
                "monitor {} logged in at protocol {}{serving}",
                link.peer(),
                link.version()
            );
            Some(link)
        }
        Err(e) => {
            tracing::warn!("a connection did not log in as a monitor: {e}");
            None
        }
    }
}

impl MonitorLink {
    /// The agreed protocol version.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The monitor's address.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// Bytes queued and not yet flushed.
    pub fn queued(&self) -> usize {
        self.out.len()
    }

    /// Queues a message, encoded at the agreed version.
    pub fn queue(&mut self, msg: &Message<'_>) {
        match (msg, self.job_done) {
            (Message::MonJobDone(d) | Message::JobDone(d), Some(kind)) => {
                if kind.code(self.version) == MsgType::JOB_DONE {
                    Message::JobDone(*d).encode(self.version, &mut self.out)
                } else {
                    Message::MonJobDone(*d).encode(self.version, &mut self.out)
                }
            }
            _ => msg.encode(self.version, &mut self.out),
        }
    }

    /// Queues a demo event, stamping job starts with the current time.
    pub fn queue_event(&mut self, event: &Event) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.queue(&event.message(u32::try_from(now).unwrap_or(u32::MAX)));
    }

    /// Queues a frame exactly as given.
    pub fn queue_raw(&mut self, frame: &[u8]) {
        self.out.extend_from_slice(frame);
    }

    /// Sends what is queued.
    pub async fn flush(&mut self) -> std::io::Result<()> {
        self.write.write_all(&self.out).await?;
        self.out.clear();
        Ok(())
    }

    /// Resolves when the monitor closes its side (or the socket fails).
    /// Anything it sends is ignored, as a scheduler ignores a monitor.
    /// Cancel-safe.
    pub async fn closed(&mut self) {
        let mut scratch = [0u8; 512];
        loop {
            match self.read.read(&mut scratch).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    }

    /// Sends `END` and closes the connection.
    pub async fn goodbye(mut self) {
        self.queue(&Message::End);
        let _ = timeout(GOODBYE, async {
            let _ = self.flush().await;
            let _ = self.write.shutdown().await;
        })
        .await;
    }
}

/// How fast the demo runs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Pace {
    /// The simulation's own time: about as busy as a real cluster.
    RealTime,
    /// On average this many messages per second.
    PerSecond(f64),
    /// As fast as the slowest monitor reads.
    Unlimited,
}

/// What the demo scheduler serves.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    /// Hosts in the cluster.
    pub hosts: usize,
    /// Seed of the simulation.
    pub seed: u64,
    /// How fast it runs.
    pub pace: Pace,
    /// The protocol version offered in the handshake.
    pub offer: u32,
    /// The job-end type code.
    pub job_done: JobDoneType,
}

type LoginReply = (Vec<Arc<Event>>, broadcast::Receiver<Arc<Event>>);

/// Serves the demo cluster to every monitor that connects to `listener`,
/// until `shutdown`.
pub async fn serve_demo(
    listener: TcpListener,
    opts: DemoOptions,
    shutdown: Shutdown,
) -> std::io::Result<()> {
    let sim = Simulation::new(opts.hosts, opts.seed);
    let (tx, _) = broadcast::channel(QUEUE);
    let (login_tx, login_rx) = mpsc::channel::<oneshot::Sender<LoginReply>>(16);
    let drained = Arc::new(Notify::new());
    let feed = tokio::spawn(feed(
        sim,
        opts.pace,
        tx,
        login_rx,
        drained.clone(),
        shutdown.clone(),
    ));
    let mut monitors = accept_monitors(&listener, &shutdown, false, |stream| {
        demo_monitor(
            stream,
            opts.offer,
            opts.job_done,
            login_tx.clone(),
            drained.clone(),
        )
    })
    .await;
    drop(login_tx);
    let fed = feed.await;
    let _ = timeout(GOODBYE * 2, async {
        while monitors.join_next().await.is_some() {}
    })
    .await;
    fed.map_err(|e| std::io::Error::other(format!("the simulation failed: {e}")))
}

async fn demo_monitor(
    stream: TcpStream,
    offer: u32,
    job_done: JobDoneType,
    logins: mpsc::Sender<oneshot::Sender<LoginReply>>,
    drained: Arc<Notify>,
) {
    let Some(mut link) = log_in(stream, offer, Some(job_done), "").await else {
        return;
    };
    let (reply_tx, reply_rx) = oneshot::channel();
    if logins.send(reply_tx).await.is_err() {
        link.goodbye().await;
        return;
    }
    let Ok((burst, mut rx)) = reply_rx.await else {
        link.goodbye().await;
        return;
    };
    for event in &burst {
        link.queue_event(event);
    }
    if link.flush().await.is_err() {
        return;
    }
    loop {
        tokio::select! {
            received = rx.recv() => {
                let mut next = received;
                // Take everything that is ready, then write once.
                loop {
                    match next {
                        Ok(event) if *event == Event::End => {
                            drained.notify_one();
                            link.goodbye().await;
                            return;
                        }
                        Ok(event) => link.queue_event(&event),
                        Err(broadcast::error::RecvError::Lagged(n)) => {
                            tracing::warn!(
                                "monitor {} fell {n} messages behind and was dropped, as a scheduler drops a blocking monitor",
                                link.peer()
                            );
                            return;
                        }
                        Err(broadcast::error::RecvError::Closed) => {
                            link.goodbye().await;
                            return;
                        }
                    }
                    if link.queued() >= 64 * 1024 {
                        break;
                    }
                    match rx.try_recv() {
                        Ok(event) => next = Ok(event),
                        Err(broadcast::error::TryRecvError::Lagged(n)) => {
                            next = Err(broadcast::error::RecvError::Lagged(n))
                        }
                        Err(broadcast::error::TryRecvError::Closed) => {
                            next = Err(broadcast::error::RecvError::Closed)
                        }
                        Err(broadcast::error::TryRecvError::Empty) => break,
                    }
                }
                drained.notify_one();
                if link.flush().await.is_err() {
                    return;
                }
            }
            _ = link.closed() => {
                tracing::info!("monitor {} left", link.peer());
                return;
            }
        }
    }
}

/// The hosts a monitor logging in is told about: the last `MON_STATS` sent
/// for every host still online, in the short form a scheduler sends at login
/// (up to the `Load` line).
#[derive(Default)]
struct HostTable(BTreeMap<u32, Arc<Event>>);

impl HostTable {
    fn note(&mut self, event: &Event) {
        if let Event::Stats { host_id, text } = event {
            if crate::demo::is_offline(event) {
                self.0.remove(host_id);
            } else {
                let login_form = match text.find("\nLoadAvg1:") {
                    Some(end) => &text[..=end],
                    None => text,
                };
                self.0.insert(
                    *host_id,
                    Arc::new(Event::Stats {
                        host_id: *host_id,
                        text: login_form.to_string(),
                    }),
                );
            }
        }
    }

    fn burst(&self) -> Vec<Arc<Event>> {
        self.0.values().cloned().collect()
    }
}

/// Runs the simulation at its pace and hands each event to every monitor.
async fn feed(
    mut sim: Simulation,
    pace: Pace,
    tx: broadcast::Sender<Arc<Event>>,
    mut logins: mpsc::Receiver<oneshot::Sender<LoginReply>>,
    drained: Arc<Notify>,
    mut shutdown: Shutdown,
) {
    let speed = match pace {
        Pace::RealTime => Some(1.0),
        Pace::PerSecond(rate) => Some(rate / sim.natural_rate(20_000)),
        Pace::Unlimited => None,
    };
    let mut hosts = HostTable::default();
    let start = Instant::now();
    let mut sent: u64 = 0;
    let login = |reply: oneshot::Sender<LoginReply>, hosts: &HostTable| {
        let _ = reply.send((hosts.burst(), tx.subscribe()));
    };
    loop {
        let (at_ms, event) = sim.step();
        let due = speed
            .filter(|s| s.is_finite() && *s > 0.0)
            .map(|s| later(start, played(at_ms, s)));
        loop {
            let waiting_for_readers =
                speed.is_none() && (tx.receiver_count() == 0 || tx.len() >= QUEUE / 2);
            let sleeping = due.is_some_and(|d| d > Instant::now());
            if !waiting_for_readers && !sleeping {
                break;
            }
            let notified = drained.notified();
            tokio::select! {
                biased;
                _ = shutdown.wait() => {
                    let _ = tx.send(Arc::new(Event::End));
                    return;
                }
                reply = logins.recv() => match reply {
                    Some(reply) => login(reply, &hosts),
                    None => return,
                },
                _ = sleep_until(due.unwrap_or_else(Instant::now)), if sleeping => {}
                _ = notified, if waiting_for_readers => {}
            }
        }
        while let Ok(reply) = logins.try_recv() {
            login(reply, &hosts);
        }
        if shutdown.is_set() {
            let _ = tx.send(Arc::new(Event::End));
            return;
        }
        hosts.note(&event);
        // No monitor listening is fine: a scheduler runs without monitors.
        let _ = tx.send(Arc::new(event));
        sent += 1;
        if sent % 256 == 0 {
            tokio::task::yield_now().await;
        }
    }
}

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
    /// ([`crate::replay::MAX_WAIT`] in `icewatch replay`).
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
    shutdown: Shutdown,
) -> Result<(), RecordError> {
    // Fail early and clearly on a file that cannot be replayed.
    let header = record::open(&opts.path)?.header();
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
    mut shutdown: Shutdown,
) {
    let serving = format!(", replaying {}", opts.path.display());
    let Some(mut link) = log_in(stream, offer, opts.job_done, &serving).await else {
        return;
    };
    let (tx, mut rx) = mpsc::channel(1024);
    let path = opts.path.clone();
    let reader = tokio::task::spawn_blocking(move || {
        let reader = match record::open(&path) {
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
            _ = shutdown.wait() => break,
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
                    _ = shutdown.wait() => break,
                    _ = link.closed() => return,
                }
            }
        }
        match entry {
            Entry::Session { .. } => {
                held_end = None;
                for host_id in std::mem::take(&mut hosts) {
                    link.queue(&Message::MonStats(MonStats {
                        host_id,
                        text: b"State:Offline\n",
                    }));
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
    if !shutdown.is_set() {
        if link.flush().await.is_err() {
            return;
        }
        tokio::select! {
            _ = shutdown.wait() => {}
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
    let Ok((_, raw)) = parse_frame(&recorded.frame, MAX_MSG_SIZE) else {
        return Seen::Other;
    };
    match Message::decode(raw.ty, raw.body, recorded.protocol) {
        Ok(Message::End) => Seen::End,
        Ok(Message::MonStats(m)) => Seen::Host(m.host_id, !m.stats().offline),
        _ => Seen::Other,
    }
}

/// Queues a recorded frame for a monitor, re-encoded if its version or the
/// job-end type differs.
fn resend(link: &mut MonitorLink, recorded_version: u32, frame: &[u8]) {
    let Ok((_, raw)) = parse_frame(frame, MAX_MSG_SIZE) else {
        return;
    };
    let is_job_done = raw.ty == MsgType::MON_JOB_DONE || raw.ty == MsgType::JOB_DONE;
    let same = recorded_version == link.version()
        && (!is_job_done
            || link
                .job_done
                .map_or(true, |k| k.code(link.version()) == raw.ty));
    if same {
        link.queue_raw(frame);
    } else {
        match Message::decode(raw.ty, raw.body, recorded_version) {
            Ok(msg) => link.queue(&msg),
            Err(e) => tracing::warn!("skipping a message that does not decode: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::handshake::handshake;

    /// A minimal monitor: handshake, MON_LOGIN, then frames.
    struct TestMonitor {
        s: TcpStream,
        buf: BytesMut,
        version: u32,
    }

    impl TestMonitor {
        async fn connect(addr: SocketAddr, offer: u32) -> TestMonitor {
            let mut s = TcpStream::connect(addr).await.unwrap();
            let version = handshake(&mut s, offer).await.unwrap();
            let mut login = BytesMut::new();
            Message::MonLogin.encode(version, &mut login);
            s.write_all(&login).await.unwrap();
            TestMonitor {
                s,
                buf: BytesMut::new(),
                version,
            }
        }

        /// Reads frames until `stop` says so or the peer closes; returns
        /// their types.
        async fn read_until(&mut self, mut stop: impl FnMut(&Message<'_>) -> bool) -> Vec<MsgType> {
            let mut seen = Vec::new();
            loop {
                loop {
                    let (used, ty, done) = match parse_frame(&self.buf, MAX_MSG_SIZE) {
                        Ok((rest, raw)) => {
                            let msg = Message::decode(raw.ty, raw.body, self.version).unwrap();
                            assert!(!matches!(msg, Message::Unknown { .. }));
                            (self.buf.len() - rest.len(), raw.ty, stop(&msg))
                        }
                        Err(FrameError::Incomplete { .. }) => break,
                        Err(e) => panic!("{e}"),
                    };
                    let _ = self.buf.split_to(used);
                    seen.push(ty);
                    if done {
                        return seen;
                    }
                }
                if self.s.read_buf(&mut self.buf).await.unwrap() == 0 {
                    return seen;
                }
            }
        }
    }

    #[tokio::test]
    async fn a_monitor_gets_the_hosts_then_jobs_then_end_on_shutdown() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (trigger, shutdown) = crate::shutdown::channel();
        let opts = DemoOptions {
            hosts: 12,
            seed: 1,
            pace: Pace::Unlimited,
            offer: 44,
            job_done: JobDoneType::Auto,
        };
        let server = tokio::spawn(serve_demo(listener, opts, shutdown));
        let mut m = TestMonitor::connect(addr, 43).await;
        assert_eq!(m.version, 43);
        let mut stats = 0;
        let first = m
            .read_until(|_| {
                stats += 1;
                stats == 12
            })
            .await;
        assert!(first.iter().all(|t| *t == MsgType::MON_STATS), "{first:?}");
        let mut begins = 0;
        let seen = m
            .read_until(|m| {
                begins += usize::from(matches!(m, Message::MonJobBegin(_)));
                begins >= 50
            })
            .await;
        assert!(seen.contains(&MsgType::MON_GET_CS));
        trigger.fire();
        let rest = m.read_until(|m| matches!(m, Message::End)).await;
        assert_eq!(rest.last(), Some(&MsgType::END));
        let all: Vec<MsgType> = seen.into_iter().chain(rest).collect();
        assert!(all.contains(&MsgType::MON_JOB_DONE));
        assert!(!all.contains(&MsgType::JOB_DONE), "0x4D at protocol 43");
        server.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn a_demo_at_a_rate_too_slow_to_send_anything_still_serves_and_stops() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (trigger, shutdown) = crate::shutdown::channel();
        let opts = DemoOptions {
            hosts: 3,
            seed: 1,
            pace: Pace::PerSecond(1e-300),
            offer: 44,
            job_done: JobDoneType::Auto,
        };
        let server = tokio::spawn(serve_demo(listener, opts, shutdown));
        let mut m = TestMonitor::connect(addr, 44).await;
        trigger.fire();
        // What happens at time 0 may go out; nothing after it is due
        // before the end of time.
        let seen = m.read_until(|m| matches!(m, Message::End)).await;
        assert_eq!(seen.last(), Some(&MsgType::END));
        server
            .await
            .unwrap()
            .expect("the simulation ran to the shutdown");
    }

    #[test]
    fn job_ends_go_out_as_a_release_or_git_master_would_send_them() {
        assert_eq!(JobDoneType::Auto.code(43), MsgType::MON_JOB_DONE);
        assert_eq!(JobDoneType::Auto.code(44), MsgType::JOB_DONE);
        assert_eq!(JobDoneType::Mon.code(44), MsgType::MON_JOB_DONE);
        assert_eq!(JobDoneType::Job.code(21), MsgType::JOB_DONE);
    }

    #[test]
    fn the_login_burst_has_the_short_stats_of_online_hosts() {
        let mut table = HostTable::default();
        for (host_id, text) in [
            (
                2,
                "Name:b\nLoad:5\nLoadAvg1:1\nLoadAvg5:1\nLoadAvg10:1\nFreeMem:9\n",
            ),
            (1, "Name:a\nLoad:0\n"),
            (3, "Name:c\nLoad:0\n"),
            (3, "State:Offline\n"),
        ] {
            table.note(&Event::Stats {
                host_id,
                text: text.into(),
            });
        }
        let burst: Vec<Event> = table.burst().iter().map(|e| (**e).clone()).collect();
        assert_eq!(
            burst,
            vec![
                Event::Stats {
                    host_id: 1,
                    text: "Name:a\nLoad:0\n".into()
                },
                Event::Stats {
                    host_id: 2,
                    text: "Name:b\nLoad:5\n".into()
                },
            ]
        );
    }
}
