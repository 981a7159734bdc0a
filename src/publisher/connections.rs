//! Accepting connections so that idle ones cannot starve the rest.
//!
//! Every connection holds a file descriptor, and a process that runs out of
//! them can accept nothing: not `/healthz`, not a new page. So:
//!
//! - the request headers must arrive whole within the header timeout
//!   after a connection opens or its last response went out (hyper's
//!   `header_read_timeout`): a client that sends nothing, or sends its
//!   headers a byte at a time, is closed, and an idle keep-alive connection
//!   too;
//! - at most [`ConnectionLimits::max_connections`] connections are open at
//!   once, WebSocket clients included: below the descriptor limit, whose
//!   soft value [`raise_fd_limit`] raises to the hard one at start, less
//!   [`FD_HEADROOM`] for the scheduler connection, recordings and the rest;
//! - when the cap is reached, a new connection closes the one that has
//!   been waiting longest for a request (the least recently active: opened
//!   or started a request the longest ago; WebSocket clients are never
//!   chosen) and takes its place. Idle connections cost an attacker one
//!   accept each, and a request that arrives is served at once.
//!
//! Shutdown stops accepting, lets requests in progress finish and closes
//! idle connections (hyper's graceful shutdown), then returns.

use axum::Router;
use hyper::server::conn::http1;
use hyper::service::{service_fn, Service as _};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use slab::Slab;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Notify, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

/// File descriptors left for everything but page connections: the
/// standard streams, the listener, the runtime's own, the scheduler
/// connection, a recording, a replayed file.
pub const FD_HEADROOM: u64 = 64;

/// The most connections open at once, whatever the descriptor limit: a
/// connection costs memory too.
pub const MAX_CONNECTIONS: usize = 16_384;

/// How connections are limited.
#[derive(Clone, Debug)]
pub struct ConnectionLimits {
    /// A request's headers must arrive whole within this time.
    pub header_timeout: Duration,
    /// Connections open at once; `None`: from the descriptor limit in
    /// force when serving starts ([`connection_cap`]).
    pub max_connections: Option<usize>,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            header_timeout: Duration::from_secs(10),
            max_connections: None,
        }
    }
}

impl ConnectionLimits {
    /// The cap in force: as set, or from the current descriptor limit.
    pub fn cap(&self) -> usize {
        self.max_connections
            .unwrap_or_else(|| connection_cap(fd_limit()))
            .max(1)
    }
}

/// Raises this process's soft limit on open files to its hard limit;
/// returns the soft limit in force afterwards, if it can be read.
pub fn raise_fd_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        match rlimit::increase_nofile_limit(u64::MAX) {
            Ok(limit) => Some(limit),
            Err(e) => {
                tracing::debug!("cannot raise the limit on open files: {e}");
                fd_limit()
            }
        }
    }
    #[cfg(not(unix))]
    None
}

/// The soft limit on open files in force.
fn fd_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        rlimit::getrlimit(rlimit::Resource::NOFILE)
            .ok()
            .map(|(soft, _)| soft)
    }
    #[cfg(not(unix))]
    None
}

/// The connection cap under a soft limit of `fd_limit` open files: the
/// limit less [`FD_HEADROOM`] (half the limit if that leaves less), at
/// most [`MAX_CONNECTIONS`]; 1,024 less the headroom when the limit is
/// unknown.
pub fn connection_cap(fd_limit: Option<u64>) -> usize {
    let limit = fd_limit.unwrap_or(1024);
    let usable = if limit >= 2 * FD_HEADROOM {
        limit - FD_HEADROOM
    } else {
        limit / 2
    };
    usize::try_from(usable)
        .unwrap_or(usize::MAX)
        .clamp(1, MAX_CONNECTIONS)
}

/// Accepts connections on `listener` and serves `app` on them within
/// `cap` connections, until `shutdown` resolves; then stops accepting and
/// returns once every connection has finished its request (upgraded
/// WebSocket connections are left to their own tasks).
pub async fn serve_connections(
    listener: TcpListener,
    app: Router,
    cap: usize,
    header_timeout: Duration,
    shutdown: impl Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(cap));
    let open = Arc::new(Open::new());
    let closing = CancellationToken::new();
    // Each connection task holds a sender: all are gone when `recv` ends.
    let (running, mut all_done) = mpsc::channel::<()>(1);
    let mut warned = false;
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok(accepted) => accepted,
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                // Out of descriptors, most likely: wait for some to close.
                tracing::warn!("cannot accept a connection: {e}");
                tokio::select! {
                    biased;
                    () = &mut shutdown => break,
                    () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
        };
        let slot = match slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                if !warned {
                    tracing::warn!(
                        "{cap} connections open, the most allowed: each new one closes \
                         the connection idle the longest"
                    );
                    warned = true;
                }
                open.evict_idlest();
                tokio::select! {
                    biased;
                    () = &mut shutdown => break,
                    slot = slots.clone().acquire_owned() => match slot {
                        Ok(slot) => slot,
                        Err(_) => break,
                    },
                }
            }
        };
        let (stream, peer) = stream;
        tokio::spawn(serve_connection(
            stream,
            peer,
            slot,
            app.clone(),
            header_timeout,
            open.clone(),
            closing.clone(),
            running.clone(),
        ));
    }
    drop(listener);
    closing.cancel();
    drop(running);
    let _ = all_done.recv().await;
}

/// Errors of one connection that the listener itself survives.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// Serves HTTP/1.1 on one connection until it closes, is upgraded, is
/// evicted or shuts down. Each request carries the client's address
/// (axum's `ConnectInfo`), for the audit of actions.
#[allow(clippy::too_many_arguments)]
async fn serve_connection(
    stream: TcpStream,
    peer: std::net::SocketAddr,
    slot: OwnedSemaphorePermit,
    app: Router,
    header_timeout: Duration,
    open: Arc<Open>,
    closing: CancellationToken,
    _running: mpsc::Sender<()>,
) {
    let (key, conn) = open.add();
    let service = {
        let (open, conn) = (open.clone(), conn.clone());
        let app = TowerToHyperService::new(app);
        service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
            conn.touch(open.now());
            request
                .extensions_mut()
                .insert(axum::extract::ConnectInfo(peer));
            app.call(request)
        })
    };
    // The slot goes with the socket, into the WebSocket task if upgraded.
    let io = TokioIo::new(Held {
        stream,
        _slot: slot,
    });
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    let connection = http.serve_connection(io, service).with_upgrades();
    tokio::pin!(connection);
    let ended = tokio::select! {
        ended = connection.as_mut() => Some(ended),
        () = conn.evict.notified() => None,
        () = closing.cancelled() => {
            connection.as_mut().graceful_shutdown();
            tokio::select! {
                ended = connection.as_mut() => Some(ended),
                () = conn.evict.notified() => None,
            }
        }
    };
    match ended {
        Some(Err(e)) => tracing::debug!("HTTP connection ended: {e}"),
        None => tracing::debug!("HTTP connection closed to make room"),
        Some(Ok(())) => {}
    }
    open.remove(key);
}

/// The HTTP connections open (not upgraded), for eviction.
struct Open {
    conns: Mutex<Slab<Arc<Conn>>>,
    /// Counts connections opened and requests started: the order in which
    /// connections were last active, without ties.
    clock: AtomicU64,
}

/// One open HTTP connection.
struct Conn {
    /// When it opened or last started a request, on [`Open::clock`].
    active: AtomicU64,
    /// Chosen for eviction (not to be chosen again).
    evicted: AtomicBool,
    /// Told to close.
    evict: Notify,
}

impl Conn {
    fn touch(&self, now: u64) {
        self.active.store(now, Relaxed);
    }
}

impl Open {
    fn new() -> Open {
        Open {
            conns: Mutex::new(Slab::new()),
            clock: AtomicU64::new(0),
        }
    }

    /// The next tick of the activity clock.
    fn now(&self) -> u64 {
        self.clock.fetch_add(1, Relaxed)
    }

    fn add(&self) -> (usize, Arc<Conn>) {
        let conn = Arc::new(Conn {
            active: AtomicU64::new(self.now()),
            evicted: AtomicBool::new(false),
            evict: Notify::new(),
        });
        let key = self.lock().insert(conn.clone());
        (key, conn)
    }

    fn remove(&self, key: usize) {
        self.lock().try_remove(key);
    }

    /// Tells the least recently active connection to close; false if
    /// there is none left to choose.
    fn evict_idlest(&self) -> bool {
        let conns = self.lock();
        let idlest = conns
            .iter()
            .filter(|(_, c)| !c.evicted.load(Relaxed))
            .min_by_key(|(_, c)| c.active.load(Relaxed));
        match idlest {
            Some((_, conn)) => {
                conn.evicted.store(true, Relaxed);
                // A stored permit: the task sees it even if not waiting yet.
                conn.evict.notify_one();
                true
            }
            None => false,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Slab<Arc<Conn>>> {
        self.conns.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A socket holding its connection slot for as long as it is open.
struct Held {
    stream: TcpStream,
    _slot: OwnedSemaphorePermit,
}

impl AsyncRead for Held {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Held {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_leaves_headroom_below_the_descriptor_limit() {
        assert_eq!(connection_cap(Some(1024)), 960);
        assert_eq!(connection_cap(Some(100)), 50);
        assert_eq!(connection_cap(Some(1)), 1);
        assert_eq!(connection_cap(Some(u64::MAX)), MAX_CONNECTIONS);
        assert_eq!(connection_cap(None), 960);
    }

    #[test]
    fn the_least_recently_active_connection_is_evicted_once() {
        let open = Open::new();
        let (_, a) = open.add();
        let (_, b) = open.add();
        let (kc, c) = open.add();
        a.touch(30);
        b.touch(10);
        c.touch(20);
        assert!(open.evict_idlest());
        assert!(b.evicted.load(Relaxed) && !a.evicted.load(Relaxed));
        assert!(open.evict_idlest());
        assert!(c.evicted.load(Relaxed));
        open.remove(kc);
        assert!(open.evict_idlest());
        assert!(!open.evict_idlest(), "none left to choose");
    }
}
