//! `soak`: `icewatch demo` at a high rate for a long time, with WebSocket
//! clients reading every message, and the process's memory sampled at a
//! fixed interval: resident (`VmRSS`), peak (`VmHWM`) and CPU seconds, one
//! CSV line per sample, then whether memory stayed flat after warm-up.

use super::{cpu, page_addr, spawn_icewatch, status_kib, stop};
use anyhow::{ensure, Result};
use futures_util::StreamExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the soak was asked to do.
pub struct Soak {
    pub hosts: u32,
    pub rate: u64,
    pub clients: usize,
    pub seconds: u64,
    pub every: u64,
    pub history: u64,
}

pub fn run(bin: &Path, soak: &Soak) -> Result<()> {
    let mut child = spawn_icewatch(
        bin,
        &[
            "demo",
            "--hosts",
            &soak.hosts.to_string(),
            "--rate",
            &soak.rate.to_string(),
            "--seed",
            "1",
            "--history",
            &soak.history.to_string(),
            "--listen",
            "127.0.0.1:0",
        ],
    )?;
    let pid = child.id();
    let page = page_addr(&mut child)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let received = Arc::new(AtomicU64::new(0));
    let bytes = Arc::new(AtomicU64::new(0));
    runtime.block_on(async {
        for _ in 0..soak.clients {
            let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{page}/ws")).await?;
            let (received, bytes) = (received.clone(), bytes.clone());
            tokio::spawn(async move {
                let (_, mut rx) = ws.split();
                while let Some(Ok(msg)) = rx.next().await {
                    received.fetch_add(1, Relaxed);
                    bytes.fetch_add(msg.len() as u64, Relaxed);
                }
            });
        }
        anyhow::Ok(())
    })?;

    println!("minute,rss_kib,hwm_kib,cpu_s,ws_messages,ws_mib");
    let started = Instant::now();
    let mut samples = Vec::new();
    loop {
        let elapsed = started.elapsed();
        let (rss, hwm) = (status_kib(pid, "VmRSS:")?, status_kib(pid, "VmHWM:")?);
        let cpu_s = cpu(pid)?.1 as f64 / 1e9;
        println!(
            "{:.1},{rss},{hwm},{cpu_s:.1},{},{:.1}",
            elapsed.as_secs_f64() / 60.0,
            received.load(Relaxed),
            bytes.load(Relaxed) as f64 / 1048576.0
        );
        samples.push((elapsed, rss, cpu_s));
        if elapsed >= Duration::from_secs(soak.seconds) {
            break;
        }
        std::thread::sleep(Duration::from_secs(soak.every).min(
            Duration::from_secs(soak.seconds).saturating_sub(elapsed) + Duration::from_millis(1),
        ));
        ensure!(
            child.try_wait()?.is_none(),
            "icewatch demo exited during the soak"
        );
    }
    stop(child);
    drop(runtime);

    // Warm-up: the first tenth of the run (the history fills up there).
    let warm = samples
        .iter()
        .position(|s| s.0 >= Duration::from_secs(soak.seconds / 10))
        .unwrap_or(0);
    let after: Vec<u64> = samples[warm..].iter().map(|s| s.1).collect();
    let (low, high) = (
        after.iter().min().copied().unwrap_or(0),
        after.iter().max().copied().unwrap_or(0),
    );
    let (first, last) = (samples[warm], samples[samples.len() - 1]);
    println!(
        "after warm-up ({:.0} min on): RSS {:.1} to {:.1} MiB (first {:.1}, last {:.1}); \
         {:.2} cores on average; {} WebSocket messages to {} clients",
        first.0.as_secs_f64() / 60.0,
        low as f64 / 1024.0,
        high as f64 / 1024.0,
        first.1 as f64 / 1024.0,
        last.1 as f64 / 1024.0,
        (last.2 - samples[0].2) / (last.0 - samples[0].0).as_secs_f64().max(1e-9),
        received.load(Relaxed),
        soak.clients
    );
    Ok(())
}
