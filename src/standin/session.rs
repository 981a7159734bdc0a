//! The scheduler's side of a monitor connection. Like a real scheduler,
//! each connection does the version handshake
//! ([`crate::protocol::handshake`], the same on both sides), waits for
//! `MON_LOGIN`, then sends every message at the agreed version: the long
//! `MON_GET_CS` below protocol 29, and a job's end as `MON_JOB_DONE` (0x55,
//! released schedulers up to icecream 1.4) or `JOB_DONE` (0x4D, git master
//! since 2022), see [`JobDoneType`].

use crate::protocol::frame::{parse_frame, FrameError, MAX_MSG_SIZE};
use crate::protocol::handshake::{handshake, HandshakeError};
use crate::protocol::{Message, MsgType};
use crate::standin::simulation::Event;
use bytes::BytesMut;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

/// How long a new connection may take to finish the handshake and log in.
pub const LOGIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Messages a demo monitor may fall behind before it is dropped.
pub(crate) const QUEUE: usize = 4096;
/// How long shutdown waits for monitors to take their `END`.
pub(crate) const GOODBYE: Duration = Duration::from_secs(2);

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
    pub(crate) job_done: Option<JobDoneType>,
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
pub(crate) async fn accept_monitors<F>(
    listener: &TcpListener,
    shutdown: &CancellationToken,
    once: bool,
    mut serve: impl FnMut(TcpStream) -> F,
) -> JoinSet<()>
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let mut monitors = JoinSet::new();
    let stop = shutdown.clone();
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
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
pub(crate) async fn log_in(
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
