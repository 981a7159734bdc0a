//! The scheduler connection: [`Connection`] (one session: connect, handshake,
//! MON_LOGIN, then whole frames), [`Dialer`] (reaching the scheduler again
//! and again, with the pace of `docs/connection.md`) and [`run`] (the
//! reconnecting loop that feeds a [`SharedState`]).
//!
//! Our side of the handshake is sent at once, never half: a scheduler waits
//! for a half-done handshake with a blocking read, freezing its whole
//! cluster. Its side may come late (an idle scheduler accepts new
//! connections only between waits of up to 36 s), so by default nothing
//! bounds it; TCP keepalive finds a peer that is gone. Reading never waits
//! for anyone: [`run`] reads into one buffer, decodes every whole frame in
//! it, applies them all under one lock of the state, lets go and notifies;
//! publishers take the changes on their own time.

use super::state::State;
use super::target::{LocateError, Target, DEFAULT_DISCOVERY_WAIT};
use super::{lock_state, now_ms, Changed, SharedState};
use crate::protocol::frame::{parse_frame, Frame, FrameError, RawFrame, MAX_MSG_SIZE};
use crate::protocol::handshake::{handshake, Handshake, HandshakeError};
use crate::protocol::{Message, PROTOCOL_VERSION};
use bytes::{Buf, BytesMut};
use rand::Rng;
use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::pin::Pin;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::{sleep, timeout, Instant, MissedTickBehavior};

/// How much to read at a time.
const READ_CHUNK: usize = 64 * 1024;

/// Why a session could not start or ended. Each names the scheduler.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The scheduler's address could not be found.
    #[error(transparent)]
    Locate(#[from] LocateError),
    /// Looking the address up took too long.
    #[error("looking up {target} timed out after {after:?}")]
    LocateTimeout {
        /// What was looked up.
        target: String,
        /// The time allowed.
        after: Duration,
    },
    /// The TCP connection failed.
    #[error("cannot connect to scheduler {addr}: {source}")]
    Connect {
        /// The scheduler.
        addr: SocketAddr,
        /// Why.
        source: io::Error,
    },
    /// Connecting, the handshake or the login took too long.
    #[error("scheduler {addr}: {phase} timed out after {after:?}")]
    Timeout {
        /// The scheduler.
        addr: SocketAddr,
        /// `"connect"`, `"handshake"` or `"login"`.
        phase: &'static str,
        /// The time allowed.
        after: Duration,
    },
    /// The version handshake failed (not an icecream scheduler, or too old).
    #[error("scheduler {addr}: {source}")]
    Handshake {
        /// The scheduler.
        addr: SocketAddr,
        /// Why.
        source: HandshakeError,
    },
    /// The stream is no longer framed as icecream frames are.
    #[error("scheduler {addr} sent a bad frame: {source}")]
    Frame {
        /// The scheduler.
        addr: SocketAddr,
        /// Why.
        source: FrameError,
    },
    /// The scheduler closed the connection between frames.
    #[error("scheduler {addr} closed the connection")]
    Closed {
        /// The scheduler.
        addr: SocketAddr,
    },
    /// The scheduler closed the connection inside a frame.
    #[error("scheduler {addr} closed the connection in the middle of a frame ({buffered} bytes of it received)")]
    ClosedMidFrame {
        /// The scheduler.
        addr: SocketAddr,
        /// Bytes of the unfinished frame.
        buffered: usize,
    },
    /// Reading or writing failed (reset, ...).
    #[error("scheduler {addr}: {source}")]
    Io {
        /// The scheduler.
        addr: SocketAddr,
        /// Why.
        source: io::Error,
    },
    /// Nothing arrived for too long, and a new connection failed too.
    #[error("scheduler {addr} sent nothing for {after:?} and no longer answers: {check}")]
    Idle {
        /// The scheduler.
        addr: SocketAddr,
        /// The time allowed.
        after: Duration,
        /// Why the check connection failed.
        check: Box<ConnectError>,
    },
    /// Nothing arrived for too long, and a new connection sees other hosts
    /// than this session: the session is dead without having been closed
    /// (the scheduler restarted on a host that rebooted, a NAT forgot it).
    #[error("scheduler {addr} sent nothing for {after:?}, and a new connection sees {check} hosts where this session has {session}: the session is dead")]
    Diverged {
        /// The scheduler.
        addr: SocketAddr,
        /// The time allowed.
        after: Duration,
        /// Hosts online in this session.
        session: usize,
        /// Hosts the new connection was told of.
        check: usize,
    },
    /// The scheduler said END: it is going away.
    #[error("scheduler {addr} is going away (it sent END)")]
    End {
        /// The scheduler.
        addr: SocketAddr,
    },
    /// The peer said END before anything else, as an icecream daemon does
    /// to a monitor's login: it is not the scheduler.
    #[error("{addr} answers like an icecream daemon (iceccd), not the scheduler: it ended the session at the monitor login (the scheduler usually listens on port {port})", port = super::target::DEFAULT_PORT)]
    NotScheduler {
        /// The peer.
        addr: SocketAddr,
    },
}

impl ConnectError {
    /// Whether the scheduler is simply not there now: nothing listens
    /// (refused), its host cannot be reached, or no scheduler answered
    /// discovery. Certain at start; cheap to try again (see [`Dialer`]).
    pub fn is_absent(&self) -> bool {
        match self {
            ConnectError::Connect { .. } | ConnectError::Locate(LocateError::NotFound { .. }) => {
                true
            }
            ConnectError::Timeout { phase, .. } => *phase == "connect",
            _ => false,
        }
    }
}

/// One live session with a scheduler, logged in as a monitor.
#[derive(Debug)]
pub struct Connection {
    stream: TcpStream,
    buf: BytesMut,
    version: u32,
    peer: SocketAddr,
    max_frame: u32,
}

impl Connection {
    /// Finds the scheduler (name lookup or discovery) as `opts` say, then
    /// connects to the first address that works; see
    /// [`Connection::connect_addr`].
    pub async fn connect(opts: &ConnectOptions) -> Result<Connection, ConnectError> {
        let addrs = locate(opts).await?;
        let mut last = None;
        for addr in addrs {
            match Connection::connect_addr(addr, opts).await {
                Ok(conn) => return Ok(conn),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| LocateError::NoAddress(opts.target.to_string()).into()))
    }

    /// Connects to `addr` (within `opts.connect_timeout`), offers
    /// `opts.protocol` (21..=44), completes the handshake (within
    /// `opts.handshake_timeout`, if set) and sends MON_LOGIN.
    pub async fn connect_addr(
        addr: SocketAddr,
        opts: &ConnectOptions,
    ) -> Result<Connection, ConnectError> {
        let (mut stream, version) = shake_hands(addr, opts, opts.handshake_timeout).await?;
        let mut login = BytesMut::new();
        Message::MonLogin.encode(version, &mut login);
        stream
            .write_all(&login)
            .await
            .map_err(|source| ConnectError::Io { addr, source })?;
        Ok(Connection {
            stream,
            buf: BytesMut::with_capacity(READ_CHUNK),
            version,
            peer: addr,
            max_frame: opts.max_frame,
        })
    }

    /// The agreed protocol version.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The receive buffer the kernel gave the connection, in bytes: what
    /// icewatch asked for ([`RECEIVE_BUFFER`]) doubled for the kernel's
    /// own bookkeeping, but capped by `net.core.rmem_max`.
    pub fn receive_buffer(&self) -> io::Result<usize> {
        socket2::SockRef::from(&self.stream).recv_buffer_size()
    }

    /// The scheduler's address.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// Refuses frames longer than `max` (default icecream's 1 MiB).
    pub fn set_max_frame(&mut self, max: u32) {
        self.max_frame = max;
    }

    /// The next whole frame, cut off the read buffer without a copy;
    /// `None` when the scheduler closed the connection cleanly between
    /// frames. Decode it at [`Connection::version`].
    pub async fn read_frame(&mut self) -> Result<Option<Frame>, ConnectError> {
        loop {
            match Frame::split_from(&mut self.buf, self.max_frame) {
                Ok(frame) => return Ok(Some(frame)),
                Err(FrameError::Incomplete { needed }) => match self.fill(needed).await {
                    Ok(()) => {}
                    Err(ConnectError::Closed { .. }) => return Ok(None),
                    Err(e) => return Err(e),
                },
                Err(source) => {
                    return Err(ConnectError::Frame {
                        addr: self.peer,
                        source,
                    })
                }
            }
        }
    }

    /// Calls `f` on every whole frame already received, in order, until it
    /// breaks; returns how many it was given. Reads nothing.
    pub fn for_each_frame(
        &mut self,
        mut f: impl FnMut(RawFrame<'_>) -> ControlFlow<()>,
    ) -> Result<usize, ConnectError> {
        let mut input = &self.buf[..];
        let mut n = 0;
        let result = loop {
            match parse_frame(input, self.max_frame) {
                Ok((rest, frame)) => {
                    input = rest;
                    n += 1;
                    if f(frame).is_break() {
                        break Ok(n);
                    }
                }
                Err(FrameError::Incomplete { .. }) => break Ok(n),
                Err(source) => {
                    break Err(ConnectError::Frame {
                        addr: self.peer,
                        source,
                    })
                }
            }
        };
        let used = self.buf.len() - input.len();
        self.buf.advance(used);
        result
    }

    /// Waits for more bytes from the scheduler; the end of the stream is
    /// [`ConnectError::Closed`] or [`ConnectError::ClosedMidFrame`].
    pub async fn read_more(&mut self) -> Result<(), ConnectError> {
        let needed = match parse_frame(&self.buf, self.max_frame) {
            Err(FrameError::Incomplete { needed }) => needed,
            _ => 1,
        };
        self.fill(needed).await
    }

    async fn fill(&mut self, needed: usize) -> Result<(), ConnectError> {
        self.buf.reserve(needed.max(READ_CHUNK));
        let addr = self.peer;
        match self.stream.read_buf(&mut self.buf).await {
            Ok(0) if self.buf.is_empty() => Err(ConnectError::Closed { addr }),
            Ok(0) => Err(ConnectError::ClosedMidFrame {
                addr,
                buffered: self.buf.len(),
            }),
            Ok(_) => Ok(()),
            Err(source) => Err(ConnectError::Io { addr, source }),
        }
    }
}

/// The receive buffer asked for before connecting (the kernel caps it at
/// `net.core.rmem_max` and doubles it). The scheduler writes to a monitor
/// without blocking and closes the monitor's connection when a write finds
/// its socket full (`flush_writebuf() failed ... Resource temporarily
/// unavailable` in its log): a new monitor is sent every host at once, and
/// at 800 daemons that burst outgrew the 128 KiB a connection starts with
/// (`tcp_rmem`), so the scheduler dropped icewatch every time it logged in
/// (BENCHMARKS.md, "Real scheduler at scale"). Asked before the connect,
/// the larger window is offered from the first byte.
pub const RECEIVE_BUFFER: u32 = 4 << 20;

/// Connects to `addr` and completes the version handshake: the TCP connect
/// within `opts.connect_timeout`, the handshake within `handshake` if set.
async fn shake_hands(
    addr: SocketAddr,
    opts: &ConnectOptions,
    handshake_timeout: Option<Duration>,
) -> Result<(TcpStream, u32), ConnectError> {
    let protocol = opts.protocol;
    Handshake::new(protocol).map_err(|source| ConnectError::Handshake { addr, source })?;
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4(),
        SocketAddr::V6(_) => TcpSocket::new_v6(),
    }
    .map_err(|source| ConnectError::Connect { addr, source })?;
    // Best effort: without it the connection still works, as before.
    let _ = socket.set_recv_buffer_size(RECEIVE_BUFFER);
    let stream = timeout(opts.connect_timeout, socket.connect(addr))
        .await
        .map_err(|_| ConnectError::Timeout {
            addr,
            phase: "connect",
            after: opts.connect_timeout,
        })?
        .map_err(|source| ConnectError::Connect { addr, source })?;
    let mut stream = stream;
    let io_error = |source| ConnectError::Io { addr, source };
    stream.set_nodelay(true).map_err(io_error)?;
    if let Some(idle) = opts.keepalive {
        keep_alive(&stream, idle).map_err(io_error)?;
    }
    let shake = handshake(&mut stream, protocol);
    let version = match handshake_timeout {
        Some(t) => timeout(t, shake).await.map_err(|_| ConnectError::Timeout {
            addr,
            phase: "handshake",
            after: t,
        })?,
        None => shake.await,
    }
    .map_err(|source| ConnectError::Handshake { addr, source })?;
    Ok((stream, version))
}

/// Asks the kernel to probe a connection quiet for `idle`, every third of
/// that, three times: a peer that is gone without a word (its host
/// rebooted, a NAT forgot the connection) is found within twice `idle`.
fn keep_alive(stream: &TcpStream, idle: Duration) -> io::Result<()> {
    let probes = socket2::TcpKeepalive::new()
        .with_time(idle)
        .with_interval((idle / 3).max(Duration::from_secs(1)))
        .with_retries(3);
    socket2::SockRef::from(stream).set_tcp_keepalive(&probes)
}

/// The hosts a new monitor session is told of (id → name), to compare with
/// a quiet session's: it logs in, takes the burst of MON_STATS a scheduler
/// sends every new monitor, and stops at the first pause of `opts.check_quiet`
/// (after `opts.check_timeout` at most) before it closes.
async fn hosts_now(
    addr: SocketAddr,
    opts: &ConnectOptions,
) -> Result<BTreeMap<u32, String>, ConnectError> {
    let check = async {
        let mut conn = Connection::connect_addr(addr, opts).await?;
        let mut hosts = BTreeMap::new();
        loop {
            let frame = match timeout(opts.check_quiet, conn.read_frame()).await {
                Err(_) => return Ok(hosts),
                Ok(Ok(Some(frame))) => frame,
                Ok(Ok(None)) => return Err(ConnectError::Closed { addr }),
                Ok(Err(e)) => return Err(e),
            };
            if let Ok(Message::MonStats(m)) = frame.decode(conn.version()) {
                let stats = m.stats();
                if stats.offline {
                    hosts.remove(&m.host_id);
                } else if let Some(name) = stats.name {
                    hosts.insert(m.host_id, String::from_utf8_lossy(name).into_owned());
                }
            }
        }
    };
    timeout(opts.check_timeout, check)
        .await
        .unwrap_or(Err(ConnectError::Timeout {
            addr,
            phase: "check",
            after: opts.check_timeout,
        }))
}

/// The addresses of `opts.target`, each lookup bounded in time.
async fn locate(opts: &ConnectOptions) -> Result<Vec<SocketAddr>, ConnectError> {
    let limit = match &opts.target {
        Target::Address { .. } => opts.connect_timeout,
        Target::Discover { .. } => opts.discovery_wait + opts.connect_timeout,
    };
    timeout(
        limit,
        opts.target.locate(opts.protocol, opts.discovery_wait),
    )
    .await
    .map_err(|_| ConnectError::LocateTimeout {
        target: opts.target.to_string(),
        after: limit,
    })?
    .map_err(ConnectError::from)
}

/// How to reach the scheduler, and how patiently.
#[derive(Clone, Debug)]
pub struct ConnectOptions {
    /// Where the scheduler is.
    pub target: Target,
    /// The protocol version offered (default 44; 21..=44).
    pub protocol: u32,
    /// Bound on the address lookup and on the TCP connect (default 10 s).
    pub connect_timeout: Duration,
    /// Bound on the scheduler's side of the handshake, if any (default
    /// none). An idle scheduler accepts new connections only between waits
    /// of up to 36 s (icecream's `MAX_SCHEDULER_PING`), so a connection can
    /// sit in its backlog that long; waiting costs the scheduler nothing,
    /// since our side of the handshake is always sent at once, and TCP
    /// keepalive finds a scheduler that is gone.
    pub handshake_timeout: Option<Duration>,
    /// TCP keepalive: probe a session quiet for this long (default 30 s),
    /// so that a dead one ends within twice that; `None`: no probes.
    pub keepalive: Option<Duration>,
    /// After this long without a message (default 60 s) the scheduler is
    /// checked with a second monitor connection: a quiet cluster whose
    /// hosts are the session's keeps its session; a scheduler that does not
    /// answer, or tells the new connection of other hosts, ends it.
    pub idle_timeout: Duration,
    /// The check connection's burst of hosts ends at a pause this long
    /// (default 1 s).
    pub check_quiet: Duration,
    /// Bound on the whole check (default 45 s: an idle scheduler answers a
    /// new connection within 36 s).
    pub check_timeout: Duration,
    /// First delay before trying again (default 250 ms).
    pub backoff_min: Duration,
    /// Longest delay while the scheduler is not there, refusing or
    /// unreachable (default 2 s): it is back within that of accepting again.
    pub backoff_absent_max: Duration,
    /// Longest delay after a scheduler that answered wrongly (default 30 s).
    pub backoff_max: Duration,
    /// Longest frame accepted (default icecream's 1 MiB).
    pub max_frame: u32,
    /// How long discovery listens for schedulers (default 2 s).
    pub discovery_wait: Duration,
}

impl ConnectOptions {
    /// The defaults, for `target`.
    pub fn new(target: Target) -> ConnectOptions {
        ConnectOptions {
            target,
            protocol: PROTOCOL_VERSION,
            connect_timeout: Duration::from_secs(10),
            handshake_timeout: None,
            keepalive: Some(Duration::from_secs(30)),
            idle_timeout: Duration::from_secs(60),
            check_quiet: Duration::from_secs(1),
            check_timeout: Duration::from_secs(45),
            backoff_min: Duration::from_millis(250),
            backoff_absent_max: Duration::from_secs(2),
            backoff_max: Duration::from_secs(30),
            max_frame: MAX_MSG_SIZE,
            discovery_wait: DEFAULT_DISCOVERY_WAIT,
        }
    }
}

/// Exponential backoff with jitter: each delay is drawn from the upper half
/// of a window that doubles, up to `absent_max` while the scheduler is not
/// there and up to `max` otherwise.
#[derive(Clone, Debug)]
struct Backoff {
    min: Duration,
    absent_max: Duration,
    max: Duration,
    window: Duration,
}

impl Backoff {
    fn new(opts: &ConnectOptions) -> Backoff {
        let max = opts.backoff_max.max(opts.backoff_min);
        Backoff {
            min: opts.backoff_min,
            absent_max: opts.backoff_absent_max.clamp(opts.backoff_min, max),
            max,
            window: opts.backoff_min,
        }
    }

    fn next_delay(&mut self, absent: bool) -> Duration {
        let cap = if absent { self.absent_max } else { self.max };
        let window = self.window.min(cap);
        self.window = (window * 2).min(cap);
        let nanos = u64::try_from(window.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(rand::rng().random_range(nanos / 2..=nanos))
    }

    fn reset(&mut self) {
        self.window = self.min;
    }
}

/// Reaches the scheduler again and again: one attempt at a time
/// ([`Dialer::dial`]), and the pause before the next ([`Dialer::pause`]),
/// which `docs/connection.md` describes: quick while the scheduler is not
/// there (a refused connection costs it nothing), slower and slower while
/// something answers wrongly, from the start again after a session that
/// worked. Failures of one kind in a row are logged once.
#[derive(Debug)]
pub struct Dialer {
    opts: ConnectOptions,
    backoff: Backoff,
    /// Attempts that failed since the last session that connected.
    failures: u64,
    last_kind: Option<std::mem::Discriminant<ConnectError>>,
}

impl Dialer {
    /// A dialer that connects as `opts` say.
    pub fn new(opts: ConnectOptions) -> Dialer {
        Dialer {
            backoff: Backoff::new(&opts),
            opts,
            failures: 0,
            last_kind: None,
        }
    }

    /// The options it dials with.
    pub fn options(&self) -> &ConnectOptions {
        &self.opts
    }

    /// How the target is shown for `addr`: as given, or the address
    /// discovery found.
    pub fn shown(&self, addr: SocketAddr) -> String {
        match &self.opts.target {
            Target::Address { .. } => self.opts.target.to_string(),
            Target::Discover { .. } => addr.to_string(),
        }
    }

    /// One attempt: locate the scheduler, then connect to the first of its
    /// addresses that works; `trying` hears of each address tried, as
    /// [`Dialer::shown`] shows it.
    pub async fn dial(&mut self, mut trying: impl FnMut(&str)) -> Result<Connection, ConnectError> {
        let addrs = locate(&self.opts).await?;
        let mut last = None;
        for addr in addrs {
            trying(&self.shown(addr));
            match Connection::connect_addr(addr, &self.opts).await {
                Ok(conn) => {
                    if self.failures > 0 {
                        tracing::info!(scheduler = %addr, protocol = conn.version(), "connected to the scheduler after {} failed attempt(s)", self.failures);
                    } else {
                        tracing::info!(scheduler = %addr, protocol = conn.version(), "connected to the scheduler");
                    }
                    self.failures = 0;
                    return Ok(conn);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| LocateError::NoAddress(self.opts.target.to_string()).into()))
    }

    /// Logs `error`, which ended a session (`delivered`: one that brought
    /// messages, `connected`: one that got as far as the login) or an
    /// attempt, and says how long to wait before the next attempt.
    pub fn pause(&mut self, error: &ConnectError, connected: bool, delivered: bool) -> Duration {
        let kind = std::mem::discriminant(error);
        if connected || self.last_kind != Some(kind) {
            tracing::warn!(scheduler = %self.opts.target, "{error}");
        } else {
            tracing::debug!(scheduler = %self.opts.target, "again: {error}");
        }
        self.last_kind = Some(kind);
        if !connected {
            self.failures += 1;
        }
        // A session that worked: the scheduler is likely restarting, so
        // quickly again; one that connected and brought nothing (a peer
        // that is no scheduler, one that closes at once) slows down.
        if delivered {
            self.backoff.reset();
        }
        self.backoff.next_delay(delivered || error.is_absent())
    }
}

/// Keeps `state` in step with the scheduler until `shutdown` resolves.
///
/// Each session: locate, connect, handshake, MON_LOGIN; then read, apply each
/// batch of frames under one lock and tell every reader by `changed`. Connecting and losing the scheduler update
/// the state and notify at once. Any failure (refused, timeout, bad
/// handshake, bad frame, END, EOF, reset, a quiet session that a new
/// connection finds dead) is logged once with its cause and retried after
/// the pause of a [`Dialer`]. Bodies that do not decode are counted in the
/// totals and skipped; the session goes on.
pub async fn run(
    opts: ConnectOptions,
    state: SharedState,
    changed: Changed,
    shutdown: impl Future<Output = ()>,
) {
    // Only a given first session can end the loop.
    let _ = sessions(None, opts, state, changed, shutdown).await;
}

/// [`run`], starting with `first`, a session already up (the one a command
/// opened to check the scheduler at start), so the scheduler sees a single
/// monitor. If that session turns out not to be a scheduler's
/// ([`ConnectError::NotScheduler`]), returns that error at once; anything
/// else is retried as [`run`] does.
pub async fn run_from(
    first: Connection,
    opts: ConnectOptions,
    state: SharedState,
    changed: Changed,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ConnectError> {
    sessions(Some(first), opts, state, changed, shutdown).await
}

async fn sessions(
    mut first: Option<Connection>,
    opts: ConnectOptions,
    state: SharedState,
    changed: Changed,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ConnectError> {
    tokio::pin!(shutdown);
    let mut dialer = Dialer::new(opts);
    loop {
        let given = first.is_some();
        let mut progress = Progress::default();
        let error = tokio::select! {
            biased;
            () = &mut shutdown => return Ok(()),
            e = session(&mut dialer, first.take(), &state, &changed, &mut progress) => e,
        };
        if given && matches!(error, ConnectError::NotScheduler { .. }) {
            return Err(error);
        }
        let delay = dialer.pause(&error, progress.connected, progress.delivered);
        lock_state(&state).scheduler_lost(error.to_string(), now_ms());
        changed.send_replace(());
        tokio::select! {
            biased;
            () = &mut shutdown => return Ok(()),
            () = sleep(delay) => {}
        }
    }
}

/// What a session got to before it ended.
#[derive(Clone, Copy, Debug, Default)]
struct Progress {
    /// The handshake and login went through.
    connected: bool,
    /// At least one message (END aside) arrived: a working scheduler.
    delivered: bool,
}

/// One session, from locating the scheduler (unless it is `given`) to its
/// end (always an error).
async fn session(
    dialer: &mut Dialer,
    given: Option<Connection>,
    state: &SharedState,
    changed: &Changed,
    progress: &mut Progress,
) -> ConnectError {
    let mut conn = match given {
        Some(conn) => conn,
        None => {
            let dialed = dialer
                .dial(|shown| lock_state(state).scheduler_address(shown))
                .await;
            match dialed {
                Ok(conn) => conn,
                Err(e) => return e,
            }
        }
    };
    progress.connected = true;
    let addr = conn.peer();
    lock_state(state).scheduler_connected(dialer.shown(addr), conn.version(), now_ms());
    changed.send_replace(());
    read_loop(&mut conn, dialer.options(), state, changed, progress).await
}

/// A pending check of a quiet session (see [`hosts_now`]).
type Check<'a> =
    Pin<Box<dyn Future<Output = Result<BTreeMap<u32, String>, ConnectError>> + Send + 'a>>;

/// Reads, applies and notifies until the session ends.
async fn read_loop(
    conn: &mut Connection,
    opts: &ConnectOptions,
    state: &SharedState,
    changed: &Changed,
    progress: &mut Progress,
) -> ConnectError {
    let addr = conn.peer();
    let version = conn.version();
    let idle = sleep(opts.idle_timeout);
    tokio::pin!(idle);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut invalid_logged = false;
    let mut check: Option<Check<'_>> = None;
    loop {
        let (batch, end) = {
            let mut end = false;
            let mut guard: Option<std::sync::MutexGuard<'_, State>> = None;
            let now = now_ms();
            let batch = conn.for_each_frame(|raw| {
                let st = guard.get_or_insert_with(|| lock_state(state));
                // Matched by reference: moving the message out costs a copy.
                match &Message::decode(raw.ty, raw.body, version) {
                    Ok(Message::End) => {
                        end = true;
                        return ControlFlow::Break(());
                    }
                    Ok(msg) => st.apply(msg, now),
                    Err(e) => {
                        st.invalid_message();
                        if invalid_logged {
                            tracing::debug!(scheduler = %addr, "skipped: {e}");
                        } else {
                            tracing::warn!(scheduler = %addr, "skipped a message that does not decode (later ones are logged at debug level): {e}");
                            invalid_logged = true;
                        }
                    }
                }
                progress.delivered = true;
                ControlFlow::Continue(())
            });
            (batch, end)
        };
        match batch {
            Ok(0) => {}
            Ok(_) => changed.send_replace(()),
            Err(e) => return e,
        }
        if end {
            return match progress.delivered {
                true => ConnectError::End { addr },
                false => ConnectError::NotScheduler { addr },
            };
        }
        tokio::select! {
            biased;
            read = conn.read_more() => {
                if let Err(e) = read {
                    return e;
                }
                idle.as_mut().reset(Instant::now() + opts.idle_timeout);
                check = None;
            }
            () = &mut idle, if check.is_none() => {
                check = Some(Box::pin(hosts_now(addr, opts)));
            }
            answer = async {
                match check.as_mut() {
                    Some(c) => c.await,
                    None => std::future::pending().await,
                }
            }, if check.is_some() => {
                check = None;
                let after = opts.idle_timeout;
                let seen = match answer {
                    Ok(hosts) => hosts,
                    Err(e) => return ConnectError::Idle { addr, after, check: Box::new(e) },
                };
                let ours: BTreeMap<u32, String> = lock_state(state)
                    .hosts()
                    .filter(|h| h.online)
                    .map(|h| (h.id, h.name.to_string()))
                    .collect();
                if seen != ours {
                    return ConnectError::Diverged { addr, after, session: ours.len(), check: seen.len() };
                }
                tracing::debug!(scheduler = %addr, "quiet for {after:?}, but it answers with this session's hosts");
                idle.as_mut().reset(Instant::now() + opts.idle_timeout);
            }
            _ = tick.tick() => {
                if lock_state(state).tick(now_ms()) {
                    changed.send_replace(());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backoff(min: u64, absent_max: u64, max: u64) -> Backoff {
        let mut opts = ConnectOptions::new(Target::Address {
            host: "s".into(),
            port: 1,
        });
        opts.backoff_min = Duration::from_millis(min);
        opts.backoff_absent_max = Duration::from_millis(absent_max);
        opts.backoff_max = Duration::from_millis(max);
        Backoff::new(&opts)
    }

    fn within(d: Duration, window_ms: u64) {
        let w = Duration::from_millis(window_ms);
        assert!(
            d >= w / 2 && d <= w,
            "{d:?} outside the upper half of {w:?}"
        );
    }

    #[test]
    fn backoff_doubles_within_jitter_up_to_the_maximum_and_resets() {
        let mut b = backoff(100, 400, 1000);
        for w in [100, 200, 400, 800, 1000, 1000] {
            within(b.next_delay(false), w);
        }
        b.reset();
        assert!(b.next_delay(false) <= Duration::from_millis(100));
    }

    #[test]
    fn while_the_scheduler_is_absent_the_delay_stays_short() {
        let mut b = backoff(100, 400, 1000);
        for w in [100, 200, 400, 400, 400] {
            within(b.next_delay(true), w);
        }
        // Something answering wrongly slows down from there.
        for w in [400, 800, 1000] {
            within(b.next_delay(false), w);
        }
        within(b.next_delay(true), 400);
    }
}
