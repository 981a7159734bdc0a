//! The scheduler connection: [`Connection`] (one session: connect, handshake,
//! MON_LOGIN, then whole frames) and [`run`] (the reconnecting loop that
//! feeds a [`SharedState`]).
//!
//! The handshake completes at once and within a bounded time: a scheduler
//! waits for a half-done handshake with a blocking read, freezing its whole
//! cluster. Reading never waits for anyone: [`run`] reads into one buffer,
//! decodes every whole frame in it, applies them all under one lock of the
//! state, lets go and notifies; publishers take the changes on their own time.

use super::state::State;
use super::target::{Target, DEFAULT_DISCOVERY_WAIT};
use super::{lock_state, now_ms, SharedState};
use crate::protocol::frame::{parse_frame, FrameError, RawFrame, MAX_MSG_SIZE};
use crate::protocol::handshake::{handshake, Handshake, HandshakeError};
use crate::protocol::{Message, PROTOCOL_VERSION};
use bytes::{Buf, Bytes, BytesMut};
use rand::Rng;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::{sleep, timeout, Instant, MissedTickBehavior};

/// How much to read at a time.
const READ_CHUNK: usize = 64 * 1024;

/// Why a session could not start or ended. Each names the scheduler.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The host name does not resolve.
    #[error("cannot resolve scheduler address {target}: {source}")]
    Resolve {
        /// The address as given.
        target: String,
        /// The resolver's error.
        source: io::Error,
    },
    /// The host name resolves to nothing.
    #[error("scheduler address {0} resolves to no address")]
    NoAddress(String),
    /// Looking the address up took too long.
    #[error("looking up {target} timed out after {after:?}")]
    LocateTimeout {
        /// What was looked up.
        target: String,
        /// The time allowed.
        after: Duration,
    },
    /// No scheduler answered the discovery broadcast.
    #[error("no scheduler of network {netname:?} answered on port {port} within {wait:?} (give its address, or set USE_SCHEDULER=host[:port])")]
    NotFound {
        /// The network name asked for.
        netname: String,
        /// The port asked on.
        port: u16,
        /// How long we listened.
        wait: Duration,
    },
    /// The discovery socket failed.
    #[error("cannot broadcast for a scheduler: {0}")]
    Discovery(#[source] io::Error),
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
    /// Nothing arrived for too long, and a new handshake failed too.
    #[error("scheduler {addr} sent nothing for {after:?} and no longer answers: {check}")]
    Idle {
        /// The scheduler.
        addr: SocketAddr,
        /// The time allowed.
        after: Duration,
        /// Why the check connection failed.
        check: Box<ConnectError>,
    },
    /// The scheduler said END: it is going away.
    #[error("scheduler {addr} is going away (it sent END)")]
    End {
        /// The scheduler.
        addr: SocketAddr,
    },
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
    /// Finds the scheduler (name lookup or discovery), then connects to the
    /// first address that works; see [`Connection::connect_addr`].
    pub async fn connect(
        target: &Target,
        protocol: u32,
        handshake_timeout: Duration,
    ) -> Result<Connection, ConnectError> {
        let addrs = locate(target, protocol, handshake_timeout, DEFAULT_DISCOVERY_WAIT).await?;
        let mut last = None;
        for addr in addrs {
            match Connection::connect_addr(addr, protocol, handshake_timeout).await {
                Ok(conn) => return Ok(conn),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| ConnectError::NoAddress(target.to_string())))
    }

    /// Connects to `addr`, offers `protocol` (21..=44), completes the
    /// handshake and sends MON_LOGIN, each step within `handshake_timeout`.
    pub async fn connect_addr(
        addr: SocketAddr,
        protocol: u32,
        handshake_timeout: Duration,
    ) -> Result<Connection, ConnectError> {
        Connection::open(addr, protocol, handshake_timeout, handshake_timeout).await
    }

    /// [`Connection::connect_addr`] with its own bound for the TCP connect.
    async fn open(
        addr: SocketAddr,
        protocol: u32,
        connect_timeout: Duration,
        handshake_timeout: Duration,
    ) -> Result<Connection, ConnectError> {
        let t = handshake_timeout;
        let (mut stream, version) = shake_hands(addr, protocol, connect_timeout, t).await?;
        let mut login = BytesMut::new();
        Message::MonLogin.encode(version, &mut login);
        timeout(t, stream.write_all(&login))
            .await
            .map_err(|_| ConnectError::Timeout {
                addr,
                phase: "login",
                after: t,
            })?
            .map_err(|source| ConnectError::Io { addr, source })?;
        Ok(Connection {
            stream,
            buf: BytesMut::with_capacity(READ_CHUNK),
            version,
            peer: addr,
            max_frame: MAX_MSG_SIZE,
        })
    }

    /// The agreed protocol version.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The scheduler's address.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// Refuses frames longer than `max` (default icecream's 1 MiB).
    pub fn set_max_frame(&mut self, max: u32) {
        self.max_frame = max;
    }

    /// The next whole frame, length word included; `None` when the scheduler
    /// closed the connection cleanly between frames.
    pub async fn read_frame(&mut self) -> Result<Option<Bytes>, ConnectError> {
        loop {
            match parse_frame(&self.buf, self.max_frame) {
                Ok((rest, _)) => {
                    let len = self.buf.len() - rest.len();
                    return Ok(Some(self.buf.split_to(len).freeze()));
                }
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

/// Connects to `addr` and completes the version handshake, each in its time.
async fn shake_hands(
    addr: SocketAddr,
    protocol: u32,
    connect_timeout: Duration,
    t: Duration,
) -> Result<(TcpStream, u32), ConnectError> {
    let timed_out = |phase, after| ConnectError::Timeout { addr, phase, after };
    Handshake::new(protocol).map_err(|source| ConnectError::Handshake { addr, source })?;
    let mut stream = timeout(connect_timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| timed_out("connect", connect_timeout))?
        .map_err(|source| ConnectError::Connect { addr, source })?;
    stream
        .set_nodelay(true)
        .map_err(|source| ConnectError::Io { addr, source })?;
    let version = timeout(t, handshake(&mut stream, protocol))
        .await
        .map_err(|_| timed_out("handshake", t))?
        .map_err(|source| ConnectError::Handshake { addr, source })?;
    Ok((stream, version))
}

/// Whether the scheduler at `addr` still answers: a quiet cluster sends a
/// monitor nothing for a long time (daemons report only load changes),
/// while a hung scheduler answers no new handshake. The check connection
/// closes right after the handshake, which the scheduler takes in stride.
async fn still_there(addr: SocketAddr, opts: &ConnectOptions) -> Result<(), ConnectError> {
    shake_hands(
        addr,
        opts.protocol,
        opts.connect_timeout,
        opts.handshake_timeout,
    )
    .await
    .map(drop)
}

/// The addresses of `target`, each lookup bounded in time.
async fn locate(
    target: &Target,
    protocol: u32,
    lookup_timeout: Duration,
    discovery_wait: Duration,
) -> Result<Vec<SocketAddr>, ConnectError> {
    let limit = match target {
        Target::Address { .. } => lookup_timeout,
        Target::Discover { .. } => discovery_wait + lookup_timeout,
    };
    timeout(limit, target.locate(protocol, discovery_wait))
        .await
        .map_err(|_| ConnectError::LocateTimeout {
            target: target.to_string(),
            after: limit,
        })?
}

/// How [`run`] connects and reconnects.
#[derive(Clone, Debug)]
pub struct ConnectOptions {
    /// Where the scheduler is.
    pub target: Target,
    /// The protocol version offered (default 44; 21..=44).
    pub protocol: u32,
    /// Bound on the address lookup and on the TCP connect (default 10 s).
    pub connect_timeout: Duration,
    /// Bound on the handshake and the login (default 45 s). An idle
    /// scheduler accepts new connections only between waits of up to 36 s
    /// (icecream's `MAX_SCHEDULER_PING`), so a connection can sit in its
    /// backlog that long; waiting costs the scheduler nothing, since our
    /// side of the handshake is always sent at once.
    pub handshake_timeout: Duration,
    /// After this long without a message (default 60 s) the scheduler is
    /// checked with a second connection that only does the handshake: a
    /// quiet cluster keeps its session, a scheduler that does not answer
    /// ends it.
    pub idle_timeout: Duration,
    /// First delay before reconnecting (default 500 ms).
    pub backoff_min: Duration,
    /// Longest delay before reconnecting (default 30 s).
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
            handshake_timeout: Duration::from_secs(45),
            idle_timeout: Duration::from_secs(60),
            backoff_min: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
            max_frame: MAX_MSG_SIZE,
            discovery_wait: DEFAULT_DISCOVERY_WAIT,
        }
    }
}

/// Exponential backoff with jitter: each delay is drawn from the upper half
/// of a window that doubles up to the maximum.
#[derive(Clone, Debug)]
struct Backoff {
    min: Duration,
    max: Duration,
    window: Duration,
}

impl Backoff {
    fn new(min: Duration, max: Duration) -> Backoff {
        Backoff {
            min,
            max: max.max(min),
            window: min,
        }
    }

    fn next_delay(&mut self) -> Duration {
        let window = self.window;
        self.window = (window * 2).min(self.max);
        let nanos = u64::try_from(window.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(rand::rng().random_range(nanos / 2..=nanos))
    }

    fn reset(&mut self) {
        self.window = self.min;
    }
}

/// What a session got to before it ended.
#[derive(Clone, Copy, Debug, Default)]
struct Progress {
    /// The handshake and login went through.
    connected: bool,
    /// At least one message arrived: a working scheduler, so backoff resets.
    delivered: bool,
}

/// Keeps `state` in step with the scheduler until `shutdown` resolves.
///
/// Each session: locate, connect, handshake, MON_LOGIN; then read, apply each
/// batch of frames under one lock and notify `changed` (one waiter, e.g. the
/// publisher's coalescing task). Connecting and losing the scheduler update
/// the state and notify at once. Any failure (refused, timeout, bad
/// handshake, bad frame, END, EOF, reset, silence of a scheduler that no
/// longer answers a new handshake) is logged once with its cause and
/// retried after an exponential backoff with jitter, reset after a session
/// that delivered messages. Bodies that do not decode are counted in the
/// totals and skipped; the session goes on.
pub async fn run(
    opts: ConnectOptions,
    state: SharedState,
    changed: Arc<Notify>,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut backoff = Backoff::new(opts.backoff_min, opts.backoff_max);
    // Failures of the same kind in a row are one story: warn once.
    let mut last_kind = None;
    let mut failures = 0u64;
    loop {
        let mut progress = Progress::default();
        let error = tokio::select! {
            biased;
            () = &mut shutdown => return,
            e = session(&opts, &state, &changed, &mut progress, failures) => e,
        };
        if progress.delivered {
            backoff.reset();
        }
        let text = error.to_string();
        let kind = std::mem::discriminant(&error);
        if progress.connected || last_kind != Some(kind) {
            tracing::warn!(scheduler = %opts.target, "{text}");
        } else {
            tracing::debug!(scheduler = %opts.target, "again: {text}");
        }
        last_kind = Some(kind);
        failures = if progress.connected { 0 } else { failures + 1 };
        lock_state(&state).scheduler_lost(text, now_ms());
        changed.notify_one();
        let delay = backoff.next_delay();
        tokio::select! {
            biased;
            () = &mut shutdown => return,
            () = sleep(delay) => {}
        }
    }
}

/// One session, from locating the scheduler to its end (always an error).
async fn session(
    opts: &ConnectOptions,
    state: &SharedState,
    changed: &Notify,
    progress: &mut Progress,
    failures: u64,
) -> ConnectError {
    let addrs = match locate(
        &opts.target,
        opts.protocol,
        opts.connect_timeout,
        opts.discovery_wait,
    )
    .await
    {
        Ok(addrs) => addrs,
        Err(e) => return e,
    };
    let shown = |addr: SocketAddr| match &opts.target {
        Target::Address { .. } => opts.target.to_string(),
        Target::Discover { .. } => addr.to_string(),
    };
    let mut last = None;
    let mut conn = None;
    for addr in addrs {
        lock_state(state).scheduler_address(&shown(addr));
        match Connection::open(
            addr,
            opts.protocol,
            opts.connect_timeout,
            opts.handshake_timeout,
        )
        .await
        {
            Ok(c) => {
                conn = Some(c);
                break;
            }
            Err(e) => last = Some(e),
        }
    }
    let Some(mut conn) = conn else {
        return last.unwrap_or_else(|| ConnectError::NoAddress(opts.target.to_string()));
    };
    conn.set_max_frame(opts.max_frame);
    progress.connected = true;
    let addr = conn.peer();
    lock_state(state).scheduler_connected(shown(addr), conn.version(), now_ms());
    changed.notify_one();
    if failures > 0 {
        tracing::info!(scheduler = %addr, protocol = conn.version(), "connected to the scheduler after {failures} failed attempt(s)");
    } else {
        tracing::info!(scheduler = %addr, protocol = conn.version(), "connected to the scheduler");
    }
    read_loop(&mut conn, opts, state, changed, progress).await
}

/// A pending [`still_there`].
type Check<'a> = Pin<Box<dyn Future<Output = Result<(), ConnectError>> + Send + 'a>>;

/// Reads, applies and notifies until the session ends.
async fn read_loop(
    conn: &mut Connection,
    opts: &ConnectOptions,
    state: &SharedState,
    changed: &Notify,
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
                ControlFlow::Continue(())
            });
            (batch, end)
        };
        match batch {
            Ok(0) => {}
            Ok(_) => {
                progress.delivered = true;
                changed.notify_one();
            }
            Err(e) => return e,
        }
        if end {
            return ConnectError::End { addr };
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
                check = Some(Box::pin(still_there(addr, opts)));
            }
            answer = async {
                match check.as_mut() {
                    Some(c) => c.await,
                    None => std::future::pending().await,
                }
            }, if check.is_some() => {
                check = None;
                match answer {
                    Ok(()) => {
                        tracing::debug!(scheduler = %addr, "quiet for {:?}, but it answers", opts.idle_timeout);
                        idle.as_mut().reset(Instant::now() + opts.idle_timeout);
                    }
                    Err(e) => return ConnectError::Idle { addr, after: opts.idle_timeout, check: Box::new(e) },
                }
            }
            _ = tick.tick() => {
                if lock_state(state).tick(now_ms()) {
                    changed.notify_one();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_within_jitter_up_to_the_maximum_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(1000));
        let windows = [100, 200, 400, 800, 1000, 1000];
        for w in windows {
            let d = b.next_delay();
            let w = Duration::from_millis(w);
            assert!(
                d >= w / 2 && d <= w,
                "{d:?} outside the upper half of {w:?}"
            );
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }
}
