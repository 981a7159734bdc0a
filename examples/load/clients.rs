//! `clients`: what a WebSocket client costs `icewatch demo` in memory, and
//! whether it is given back. A fresh `icewatch demo --seed 1` per run; its
//! `VmRSS` (from `/proc/PID/status`) after a warm-up with nobody connected
//! ("before"), with N clients connected and reading ("with"), and once they
//! all left ("after"); then the same again with N new clients ("with
//! again", "after again"): memory kept for reuse does not grow a second
//! time. Each client reads every message and sends nothing, as a browser
//! tab left open does.
//!
//! "After" waits on the resident set, not a fixed time: it is sampled
//! every 100 ms from the moment the server counts no client, until it has
//! not fallen by [`FALL`] for [`QUIET`] (an allocator may hand memory back
//! over seconds); the figure is the resident set then, and the time of its
//! last fall is reported beside it.

use super::{http_get, page_addr, spawn_icewatch, status_kib, stop};
use anyhow::{ensure, Context, Result};
use futures_util::StreamExt;
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// One run's figures, in KiB.
pub struct Clients {
    pub before_kib: u64,
    pub with_kib: u64,
    pub after_kib: u64,
    /// When the resident set last fell after the clients left, in seconds.
    pub after_secs: f64,
    pub again_kib: u64,
    pub after_again_kib: u64,
    pub after_again_secs: f64,
    pub peak_kib: u64,
    pub clients: usize,
}

impl Clients {
    /// What each connected client added.
    pub fn per_client_kib(&self) -> f64 {
        self.with_kib.saturating_sub(self.before_kib) as f64 / self.clients.max(1) as f64
    }

    /// What is still held once every client left.
    pub fn kept_kib(&self) -> i64 {
        self.after_kib as i64 - self.before_kib as i64
    }
}

/// How long the demo runs before "before": its snapshot grows for about
/// 15 s (the 200 newest finished jobs it carries), then keeps its size.
const WARM_UP: Duration = Duration::from_secs(30);
/// How long the clients are held connected before they are measured.
const SETTLE: Duration = Duration::from_secs(5);
/// The resident set has settled once it has not fallen by [`FALL`] for this
/// long...
const QUIET: Duration = Duration::from_secs(10);
/// ...in KiB.
const FALL: u64 = 256;
/// At most this long is waited for it to settle.
const SETTLE_AT_MOST: Duration = Duration::from_secs(180);

pub fn run(bin: &Path, clients: usize) -> Result<Clients> {
    let mut child = spawn_icewatch(bin, &["demo", "--seed", "1", "--listen", "127.0.0.1:0"])?;
    let pid = child.id();
    let page = page_addr(&mut child)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    std::thread::sleep(WARM_UP);
    let before_kib = status_kib(pid, "VmRSS:")?;

    let (with_kib, (after_kib, after_secs)) = wave(&runtime, pid, page, clients)?;
    let (again_kib, (after_again_kib, after_again_secs)) = wave(&runtime, pid, page, clients)?;
    let peak_kib = status_kib(pid, "VmHWM:")?;
    stop(child);
    Ok(Clients {
        before_kib,
        with_kib,
        after_kib,
        after_secs,
        again_kib,
        after_again_kib,
        after_again_secs,
        peak_kib,
        clients,
    })
}

/// Connects `clients` readers, measures, lets them all leave, measures:
/// `VmRSS` with them, in KiB, and after them (see [`settled`]).
fn wave(
    runtime: &tokio::runtime::Runtime,
    pid: u32,
    page: std::net::SocketAddr,
    clients: usize,
) -> Result<(u64, (u64, f64))> {
    let (leave, left) = watch::channel(false);
    let readers = runtime.block_on(async {
        let mut readers = Vec::with_capacity(clients);
        for batch in (0..clients).collect::<Vec<_>>().chunks(100) {
            let opened = futures_util::future::try_join_all(
                batch
                    .iter()
                    .map(|_| tokio_tungstenite::connect_async(format!("ws://{page}/ws"))),
            )
            .await
            .context("a client could not connect")?;
            for (mut ws, _) in opened {
                // The snapshot first: the client is served once it has it.
                let first = tokio::time::timeout(Duration::from_secs(60), ws.next())
                    .await
                    .context("no snapshot in time")?;
                ensure!(matches!(first, Some(Ok(_))), "the server closed: {first:?}");
                let mut left = left.clone();
                readers.push(tokio::spawn(async move {
                    loop {
                        tokio::select! {
                            _ = left.wait_for(|l| *l) => break,
                            msg = ws.next() => if !matches!(msg, Some(Ok(_))) { return },
                        }
                    }
                    let _ = ws.close(None).await;
                    while let Some(Ok(_)) = ws.next().await {}
                }));
            }
        }
        anyhow::Ok(readers)
    })?;
    ensure!(
        clients_connected(page)? == clients as u64,
        "the server does not count {clients} clients"
    );
    std::thread::sleep(SETTLE);
    let with_kib = status_kib(pid, "VmRSS:")?;

    leave.send_replace(true);
    runtime.block_on(futures_util::future::join_all(readers));
    let started = Instant::now();
    while clients_connected(page)? > 0 {
        ensure!(
            started.elapsed() < Duration::from_secs(60),
            "the clients are still counted a minute after they left"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok((with_kib, settled(pid)?))
}

/// Samples `VmRSS` every 100 ms until it has not fallen by [`FALL`] KiB for
/// [`QUIET`]: the resident set then, in KiB, and the seconds from the first
/// sample to its last fall.
fn settled(pid: u32) -> Result<(u64, f64)> {
    let started = Instant::now();
    let mut mark = status_kib(pid, "VmRSS:")?;
    let mut fell_at = Duration::ZERO;
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let rss = status_kib(pid, "VmRSS:")?;
        let now = started.elapsed();
        if rss + FALL <= mark {
            (mark, fell_at) = (rss, now);
        }
        if now - fell_at >= QUIET || now >= SETTLE_AT_MOST {
            return Ok((rss, fell_at.as_secs_f64()));
        }
    }
}

/// `icewatch_websocket_clients` from `/metrics`.
fn clients_connected(page: std::net::SocketAddr) -> Result<u64> {
    let text = http_get(page, "/metrics")?;
    text.lines()
        .find_map(|l| l.strip_prefix("icewatch_websocket_clients "))
        .context("no icewatch_websocket_clients in /metrics")?
        .trim()
        .parse()
        .map_err(Into::into)
}
