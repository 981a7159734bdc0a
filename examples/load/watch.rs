//! `watch`: N WebSocket clients on an icewatch that is already running
//! (`--page ADDR`), typically `icewatch monitor` on a real scheduler under
//! `icewatch loadgen` (scripts/loadgen-scale.sh with `CLIENTS=50`). The
//! scheduler's sending instant is not known there, so a job's latency is
//! measured from icewatch's own stamp: a job first seen by a client (in
//! `jobs` or `jobs_done`) carries `start_ms`, icewatch's wall clock when
//! it took in the job's last start (its request, or its begin when both
//! fell in one coalescing period); the client's wall clock at arrival less
//! that stamp is the time from icewatch holding the job to the page
//! holding it: the state, the coalescing period, the JSON and the socket.
//! Both clocks are this machine's.

use anyhow::{ensure, Context, Result};
use futures_util::StreamExt;
use serde::Deserialize;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What the clients saw.
pub struct Watch {
    pub clients: usize,
    pub samples: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Snapshots received after the first one: a client fell behind.
    pub resyncs: u64,
    pub messages: u64,
}

#[derive(Deserialize)]
struct Message {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    jobs: Vec<Job>,
    #[serde(default)]
    jobs_done: Vec<Job>,
}

#[derive(Deserialize)]
struct Job {
    id: u64,
    session: Option<u64>,
    start_ms: Option<f64>,
}

/// Connects `clients` readers to `ws://page/ws` for `seconds`.
pub fn run(page: SocketAddr, clients: usize, seconds: u64) -> Result<Watch> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(watch(page, clients, seconds))
}

fn unix_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1e3)
}

async fn watch(page: SocketAddr, clients: usize, seconds: u64) -> Result<Watch> {
    let url = format!("ws://{page}/ws");
    let mut readers = Vec::with_capacity(clients);
    for _ in 0..clients {
        let (ws, _) = tokio_tungstenite::connect_async(&url)
            .await
            .with_context(|| format!("connecting to {url}"))?;
        readers.push(ws);
    }
    let until = tokio::time::Instant::now() + Duration::from_secs(seconds);
    let tasks: Vec<_> = readers
        .into_iter()
        .map(|ws| {
            tokio::spawn(async move {
                let (_, mut rx) = ws.split();
                let (mut seen, mut lat) = (HashSet::new(), Vec::new());
                let (mut snapshots, mut messages) = (0u64, 0u64);
                loop {
                    let next = tokio::time::timeout_at(until, rx.next()).await;
                    let Ok(Some(Ok(m))) = next else { break };
                    let at = unix_ms();
                    let Ok(text) = m.into_text() else { continue };
                    messages += 1;
                    let Ok(msg) = serde_json::from_str::<Message>(&text) else {
                        continue;
                    };
                    let first = snapshots == 0;
                    if msg.kind == "snapshot" {
                        snapshots += 1;
                    }
                    for job in msg.jobs.iter().chain(&msg.jobs_done) {
                        // Jobs in the first snapshot were there before the
                        // clock started; later snapshots are resyncs.
                        if seen.insert((job.session, job.id)) && !(first && msg.kind == "snapshot")
                        {
                            if let Some(start) = job.start_ms {
                                lat.push(at - start);
                            }
                        }
                    }
                }
                (lat, snapshots.saturating_sub(1), messages)
            })
        })
        .collect();
    let (mut lat, mut resyncs, mut messages) = (Vec::new(), 0, 0);
    for task in tasks {
        let (l, r, m) = task.await?;
        lat.extend(l);
        resyncs += r;
        messages += m;
    }
    ensure!(
        !lat.is_empty(),
        "no new job reached a client in {seconds} s"
    );
    lat.sort_by(f64::total_cmp);
    let pct = |p: f64| lat[((lat.len() - 1) as f64 * p) as usize];
    Ok(Watch {
        clients,
        samples: lat.len(),
        p50_ms: pct(0.5),
        p99_ms: pct(0.99),
        max_ms: lat[lat.len() - 1],
        resyncs,
        messages,
    })
}
