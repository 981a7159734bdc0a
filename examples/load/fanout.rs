//! `fanout`: 200 WebSocket clients on `icewatch monitor` while a fake
//! scheduler sends 10,000 events a second. Each job's MON_GET_CS leaves the
//! scheduler at a recorded instant; the first diff naming the job (in
//! `jobs` or `jobs_done`) reaches every client at another: the difference
//! is that client's latency for that job. The CPU of icewatch over the
//! paced period, and of this harness (the 200 clients reading, the fake
//! scheduler, the mirror state), which shares the machine's cores with it.
//! Beside it, in the same run, what
//! sending the full host and link lists on every diff would cost: the
//! harness applies the same messages to its own `State` and, at each diff,
//! serialises its snapshot's hosts and links.

use super::{cpu, spawn_icewatch, stop};
use anyhow::{ensure, Result};
use futures_util::StreamExt;
use icewatch::monitor::{Link, State, StateOptions};
use icewatch::protocol::frame::{parse_frame, MAX_MSG_SIZE};
use icewatch::protocol::handshake::handshake;
use icewatch::protocol::{Message, PROTOCOL_VERSION};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// One run's results.
pub struct Fanout {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub cpu_cores: f64,
    /// This harness's CPU over the same period: mostly the clients reading.
    pub harness_cores: f64,
    pub diff_bytes_per_event: f64,
    pub full_bytes_per_event: f64,
    /// Sending the full host and link lists after every event instead.
    pub every_change_bytes_per_event: f64,
    pub events: u64,
    pub diffs: u64,
    pub samples: usize,
}

struct Frames {
    /// (frame bytes, job id if it is a MON_GET_CS, decoded message start)
    frames: Vec<(std::ops::Range<usize>, Option<u32>)>,
    bytes: Vec<u8>,
    hosts: usize,
}

fn split(stream: &super::stream::Stream, hosts: u32) -> Frames {
    let mut frames = Vec::new();
    let mut input = &stream.bytes[..];
    let total = stream.bytes.len();
    while let Ok((rest, raw)) = parse_frame(input, MAX_MSG_SIZE) {
        let start = total - input.len();
        let end = total - rest.len();
        let job = match Message::decode(raw.ty, raw.body, PROTOCOL_VERSION) {
            Ok(Message::MonGetCs(m)) => Some(m.job_id),
            _ => None,
        };
        frames.push((start..end, job));
        input = rest;
    }
    Frames {
        frames,
        bytes: stream.bytes.clone(),
        hosts: hosts as usize,
    }
}

pub fn run(bin: &Path, hosts: u32, clients: usize, rate: u64, seconds: u64) -> Result<Fanout> {
    let events = rate * seconds;
    let stream = super::stream::build(hosts, events + u64::from(hosts), PROTOCOL_VERSION);
    let frames = Arc::new(split(&stream, hosts));
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?
        .block_on(fanout(bin, frames, clients, rate, events))
}

async fn fanout(
    bin: &Path,
    frames: Arc<Frames>,
    clients: usize,
    rate: u64,
    events: u64,
) -> Result<Fanout> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let port = port.to_string();
    let mut args = vec!["monitor", "127.0.0.1", &port, "--listen", "127.0.0.1:0"];
    if super::monitor_takes_db(bin) {
        args.extend(["--db", "none"]);
    }
    let mut child = spawn_icewatch(bin, &args)?;
    // The monitor's session: the one that stays open after its login
    // (`monitor` first makes a check connection that it closes).
    let session = tokio::spawn(async move {
        loop {
            let (mut conn, _) = listener.accept().await?;
            conn.set_nodelay(true)?;
            if handshake(&mut conn, PROTOCOL_VERSION).await.is_err() {
                continue;
            }
            let mut login = [0u8; 8];
            if conn.read_exact(&mut login).await.is_err() {
                continue;
            }
            let mut probe = [0u8; 1];
            match tokio::time::timeout(Duration::from_millis(500), conn.read(&mut probe)).await {
                Err(_) => return anyhow::Ok(conn),
                Ok(_) => continue,
            }
        }
    });
    let pid = child.id();
    let page = super::page_addr(&mut child)?;
    let mut conn = session.await??;
    let mirror = Arc::new(Mutex::new(State::new(StateOptions::default())));
    mirror
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .scheduler_connected("fake".into(), PROTOCOL_VERSION, 0);
    let apply = |range: std::ops::Range<usize>, mirror: &Mutex<State>| {
        if let Ok((_, raw)) = parse_frame(&frames.bytes[range], MAX_MSG_SIZE) {
            if let Ok(m) = Message::decode(raw.ty, raw.body, PROTOCOL_VERSION) {
                if let Ok(mut st) = mirror.lock() {
                    st.apply(&m, icewatch::monitor::now_ms());
                }
            }
        }
    };
    // The cluster first, all at once.
    let burst = frames.frames[frames.hosts - 1].0.end;
    conn.write_all(&frames.bytes[..burst]).await?;
    for (r, _) in &frames.frames[..frames.hosts] {
        apply(r.clone(), &mirror);
    }

    // The clients, each recording (arrival, seq, length) of every message.
    let mut tasks = Vec::new();
    let (full_tx, full_rx) = oneshot::channel::<()>();
    let mut stop_tx = vec![full_tx];
    let mut stop_rx = vec![full_rx];
    for _ in 1..clients {
        let (t, r) = oneshot::channel::<()>();
        stop_tx.push(t);
        stop_rx.push(r);
    }
    for (c, mut stopped) in stop_rx.into_iter().enumerate() {
        let url = format!("ws://{page}/ws");
        let mirror = mirror.clone();
        let (ws, _) = tokio_tungstenite::connect_async(&url).await?;
        tasks.push(tokio::spawn(async move {
            let (_, mut rx) = ws.split();
            let mut got: Vec<(Instant, u64, usize)> = Vec::new();
            let mut texts: Vec<(u64, String, usize)> = Vec::new();
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    m = rx.next() => {
                        let Some(Ok(m)) = m else { break };
                        let at = Instant::now();
                        let Ok(text) = m.into_text() else { continue };
                        let seq = seq_of(&text);
                        got.push((at, seq, text.len()));
                        if c == 0 && text.contains("\"type\":\"diff\"") {
                            let full = mirror.lock().map(|st| {
                                let s = st.snapshot();
                                serde_json::to_string(&serde_json::json!({
                                    "hosts": s.hosts, "links": s.links
                                })).map_or(0, |j| j.len())
                            }).unwrap_or(0);
                            texts.push((seq, text.to_string(), full));
                        }
                    }
                }
            }
            (got, texts)
        }));
    }
    // Let every snapshot arrive before the clock starts.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let cpu_before = cpu(pid)?.1;
    let harness_before = cpu(std::process::id())?.1;
    let started = Instant::now();
    let mut sent_at: HashMap<u32, Instant> = HashMap::new();
    let per_tick = (rate / 100).max(1) as usize;
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let paced = &frames.frames[frames.hosts..];
    let paced = &paced[..paced.len().min(events as usize)];
    for chunk in paced.chunks(per_tick) {
        tick.tick().await;
        let (a, b) = (chunk[0].0.start, chunk[chunk.len() - 1].0.end);
        conn.write_all(&frames.bytes[a..b]).await?;
        let now = Instant::now();
        for (r, job) in chunk {
            if let Some(j) = job {
                sent_at.insert(*j, now);
            }
            apply(r.clone(), &mirror);
        }
    }
    // Trailing diffs: well past the coalescing period.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let elapsed = started.elapsed();
    let cpu_used = (cpu(pid)?.1 - cpu_before) as f64 / 1e9;
    let harness_used = (cpu(std::process::id())?.1 - harness_before) as f64 / 1e9;
    for t in stop_tx {
        let _ = t.send(());
    }
    let mut per_client = Vec::new();
    for t in tasks {
        per_client.push(t.await?);
    }
    drop(conn);
    stop(child);

    // seq -> the jobs it first names.
    let (_, texts) = &per_client[0];
    let mut first_seq: HashMap<u32, u64> = HashMap::new();
    let (mut diff_bytes, mut full_bytes, mut diffs) = (0u64, 0u64, 0u64);
    for (seq, text, full) in texts {
        let v: serde_json::Value = serde_json::from_str(text)?;
        diffs += 1;
        diff_bytes += text.len() as u64;
        full_bytes += *full as u64;
        for key in ["jobs", "jobs_done"] {
            if let Some(list) = v[key].as_array() {
                for j in list {
                    if let Some(id) = j["id"].as_u64() {
                        first_seq.entry(id as u32).or_insert(*seq);
                    }
                }
            }
        }
    }
    let mut lat = Vec::new();
    for (got, _) in &per_client {
        let arrival: HashMap<u64, Instant> = got.iter().map(|&(at, seq, _)| (seq, at)).collect();
        for (job, at) in &sent_at {
            if let Some(seq) = first_seq.get(job) {
                if let Some(r) = arrival.get(seq) {
                    lat.push(r.saturating_duration_since(*at).as_secs_f64() * 1000.0);
                }
            }
        }
    }
    ensure!(!lat.is_empty(), "no job reached a client");
    lat.sort_by(f64::total_cmp);
    let pct = |p: f64| lat[((lat.len() - 1) as f64 * p) as usize];
    let sent = paced.len() as u64;
    let every_change = full_lists_on_every_change(&frames, paced.len())?;
    Ok(Fanout {
        p50_ms: pct(0.5),
        p99_ms: pct(0.99),
        max_ms: lat[lat.len() - 1],
        cpu_cores: cpu_used / elapsed.as_secs_f64(),
        harness_cores: harness_used / elapsed.as_secs_f64(),
        diff_bytes_per_event: diff_bytes as f64 / sent as f64,
        full_bytes_per_event: full_bytes as f64 / sent as f64,
        every_change_bytes_per_event: every_change as f64 / sent as f64,
        events: sent,
        diffs,
        samples: lat.len(),
    })
}

/// What a publisher without diffs would send one client: the full host and
/// link lists (`{"hosts":[...],"links":[...]}`) after each of the `events`
/// paced events. Replays the stream into a fresh state and keeps each
/// host's and link's JSON length up to date from the change sets, so the
/// total is exact without serialising the whole lists 100,000 times; the
/// final lists are serialised once to check the bookkeeping.
fn full_lists_on_every_change(frames: &Frames, events: usize) -> Result<u64> {
    fn json_len<T: serde::Serialize>(value: &T) -> usize {
        serde_json::to_vec(value).map_or(0, |v| v.len())
    }
    // `{"hosts":[h,h],"links":[l]}`: the objects, their commas, the frame.
    fn lists_len(hosts: &HashMap<u32, usize>, links: &HashMap<(u32, u32), usize>) -> usize {
        r#"{"hosts":[],"links":[]}"#.len()
            + hosts.values().sum::<usize>()
            + hosts.len().saturating_sub(1)
            + links.values().sum::<usize>()
            + links.len().saturating_sub(1)
    }
    let mut state = State::new(StateOptions::default());
    state.scheduler_connected("fake".into(), PROTOCOL_VERSION, 0);
    let mut hosts = HashMap::new();
    let mut links = HashMap::new();
    let mut total = 0u64;
    let mut reader = state.follow();
    for (n, (range, _)) in frames.frames[..frames.hosts + events].iter().enumerate() {
        let (_, raw) = parse_frame(&frames.bytes[range.clone()], MAX_MSG_SIZE)?;
        let msg = Message::decode(raw.ty, raw.body, PROTOCOL_VERSION)?;
        state.apply(&msg, icewatch::monitor::now_ms());
        for id in state.changes(&mut reader).hosts {
            match state.host(id) {
                Some(h) => hosts.insert(id, json_len(h)),
                None => hosts.remove(&id),
            };
        }
        links = state
            .link_counts()
            .into_iter()
            .map(|((from, to), active)| ((from, to), json_len(&Link { from, to, active })))
            .collect();
        if n >= frames.hosts {
            total += lists_len(&hosts, &links) as u64;
        }
    }
    let snapshot = state.snapshot();
    let last = json_len(&serde_json::json!({"hosts": snapshot.hosts, "links": snapshot.links}));
    let kept = lists_len(&hosts, &links);
    ensure!(
        last == kept,
        "bookkeeping: {kept} bytes, the lists are {last}"
    );
    Ok(total)
}

fn seq_of(text: &str) -> u64 {
    text.split("\"seq\":")
        .nth(1)
        .map(|s| {
            s.chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
        })
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}
