//! Shared by the integration tests: a scripted fake icecream scheduler on
//! 127.0.0.1 (port 0) over real TCP, frame builders, the real captures, and
//! the exact final state those captures describe.
//!
//! Each accepted connection plays one [`Script`]: connection `n` plays
//! `scripts[n]`, and every connection after the last script plays the last
//! one again (so a client that retries more often than a test expects still
//! meets a working scheduler). What happens on the scheduler's side is
//! reported as [`Event`]s, which tests await instead of sleeping.
#![allow(dead_code)]

use bytes::BytesMut;
use icewatch::monitor::{
    changed, lock_state, run, Changed, ConnectOptions, SharedState, State, StateOptions, Target,
};
use icewatch::protocol::handshake::handshake;
use icewatch::protocol::{Message, MonStats, MsgType};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// One step of a scripted scheduler connection.
#[derive(Clone, Debug)]
pub enum Step {
    /// The scheduler's side of the handshake offering this version (the
    /// same symmetric exchange), then read the client's MON_LOGIN (reports
    /// [`Event::LoggedIn`], or [`Event::Checked`] if the client closes).
    Handshake(u32),
    /// Send these bytes as they are.
    Send(Vec<u8>),
    /// Do nothing for a while (an idle real scheduler accepts a connection
    /// only between waits of up to 36 s).
    Wait(Duration),
    /// Close the connection (FIN).
    Close,
    /// Reset the connection (RST).
    Reset,
    /// Send nothing; read and drop whatever comes until the client closes
    /// (reports [`Event::ClientClosed`]).
    Hold,
}

/// What one connection does, step by step.
pub type Script = Vec<Step>;

/// What happened on the scheduler's side.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// Connection `n` was accepted.
    Accepted(usize),
    /// Connection `n` completed the handshake at this version and logged in.
    LoggedIn(usize, u32),
    /// Connection `n` completed the handshake, then the client closed it
    /// without logging in (the monitor checking that a quiet scheduler lives).
    Checked(usize),
    /// Connection `n`'s handshake or login failed (the client gave up).
    HandshakeFailed(usize),
    /// The client closed connection `n` while the scheduler held it.
    ClientClosed(usize),
}

/// A fake scheduler; dropping it stops accepting.
pub struct FakeScheduler {
    addr: SocketAddr,
    events: mpsc::UnboundedReceiver<(Instant, Event)>,
    accept: tokio::task::JoinHandle<()>,
}

impl FakeScheduler {
    /// Listens on 127.0.0.1, port 0, and plays `scripts`.
    pub async fn start(scripts: Vec<Script>) -> FakeScheduler {
        FakeScheduler::start_on(0, scripts).await
    }

    /// Listens on 127.0.0.1, `port` (one a stopped scheduler had: the
    /// scheduler back after a restart), and plays `scripts`.
    pub async fn start_on(port: u16, scripts: Vec<Script>) -> FakeScheduler {
        assert!(!scripts.is_empty());
        let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, events) = mpsc::unbounded_channel();
        let accept = tokio::spawn(async move {
            for n in 0.. {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                // Without this, Nagle holds a second small write until the
                // client's delayed ACK: real milliseconds in which a paused
                // clock jumps straight to the next timeout.
                stream.set_nodelay(true).unwrap();
                let _ = tx.send((Instant::now(), Event::Accepted(n)));
                let script = scripts[n.min(scripts.len() - 1)].clone();
                tokio::spawn(play(n, stream, script, tx.clone()));
            }
        });
        FakeScheduler {
            addr,
            events,
            accept,
        }
    }

    /// Stops listening (connections are refused from now on); the
    /// connections accepted so far go on.
    pub async fn stop(&mut self) {
        self.accept.abort();
        let _ = (&mut self.accept).await;
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The next event and when it happened.
    pub async fn next_event(&mut self) -> (Instant, Event) {
        self.events
            .recv()
            .await
            .expect("the fake scheduler stopped")
    }

    /// Skips events until `want`; returns when it happened.
    pub async fn wait_for(&mut self, want: Event) -> Instant {
        loop {
            let (at, event) = self.next_event().await;
            if event == want {
                return at;
            }
        }
    }
}

impl Drop for FakeScheduler {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn play(
    n: usize,
    mut stream: TcpStream,
    script: Script,
    tx: mpsc::UnboundedSender<(Instant, Event)>,
) {
    let send = |e| {
        let _ = tx.send((Instant::now(), e));
    };
    for step in script {
        match step {
            Step::Handshake(version) => {
                let Ok(agreed) = handshake(&mut stream, version).await else {
                    send(Event::HandshakeFailed(n));
                    return;
                };
                let mut login = [0u8; 8];
                match stream.read(&mut login[..1]).await {
                    Ok(0) => {
                        send(Event::Checked(n));
                        return;
                    }
                    Ok(_) if stream.read_exact(&mut login[1..]).await.is_ok() => {}
                    _ => {
                        send(Event::HandshakeFailed(n));
                        return;
                    }
                }
                if login != [0, 0, 0, 4, 0, 0, 0, MsgType::MON_LOGIN.0 as u8] {
                    send(Event::HandshakeFailed(n));
                    return;
                }
                send(Event::LoggedIn(n, agreed));
            }
            Step::Send(bytes) => {
                if stream.write_all(&bytes).await.is_err() {
                    return;
                }
            }
            Step::Wait(d) => tokio::time::sleep(d).await,
            Step::Close => return,
            Step::Reset => {
                // A zero linger turns the close into an RST; it never blocks.
                #[allow(deprecated)]
                let _ = stream.set_linger(Some(Duration::ZERO));
                return;
            }
            Step::Hold => {
                let mut sink = [0u8; 1024];
                while let Ok(1..) = stream.read(&mut sink).await {}
                send(Event::ClientClosed(n));
                return;
            }
        }
    }
}

/// One encoded frame.
pub fn frame(msg: &Message<'_>, version: u32) -> Vec<u8> {
    let mut out = BytesMut::new();
    msg.encode(version, &mut out);
    out.to_vec()
}

/// A MON_STATS frame.
pub fn stats(host_id: u32, text: &str) -> Vec<u8> {
    frame(
        &Message::MonStats(MonStats {
            host_id,
            text: text.as_bytes(),
        }),
        43,
    )
}

/// A MON_STATS frame announcing a host as a real scheduler does at login.
pub fn host(host_id: u32, name: &str, max_jobs: u32, no_remote: bool) -> Vec<u8> {
    stats(
        host_id,
        &format!(
            "Name:{name}\nIP:127.0.0.1\nMaxJobs:{max_jobs}\nNoRemote:{no_remote}\nPlatform:x86_64\n\
             Version:43\nFeatures:env_xz env_zstd\nSpeed:0.000000\nLoad:28\n"
        ),
    )
}

/// An END frame.
pub fn end() -> Vec<u8> {
    frame(&Message::End, 43)
}

/// Frames laid end to end.
pub fn concat(frames: &[Vec<u8>]) -> Vec<u8> {
    frames.concat()
}

/// A frame header announcing a MON_STATS body one byte longer than the
/// 1 MiB limit; no body follows.
pub fn oversized_header() -> Vec<u8> {
    let mut header = (1u32 << 20).wrapping_add(1).to_be_bytes().to_vec();
    header.extend_from_slice(&MsgType::MON_STATS.0.to_be_bytes());
    header
}

/// A scheduler that works: hosts `good1` (id 21, 2 slots) and `good2`
/// (id 22, 3 slots, no remote jobs), then the connection held open.
pub fn working_session() -> Script {
    vec![
        Step::Handshake(43),
        Step::Send(concat(&[
            host(21, "good1", 2, false),
            host(22, "good2", 3, true),
        ])),
        Step::Hold,
    ]
}

/// Every host the state knows, as (id, online), by id.
pub fn hosts_by_id(st: &State) -> Vec<(u32, bool)> {
    let mut hosts: Vec<_> = st.hosts().map(|h| (h.id, h.online)).collect();
    hosts.sort();
    hosts
}

/// The real captures: (version offered, file). See `tests/data/README.md`.
pub const CAPTURES: &[(u32, &[u8])] = &[
    (21, include_bytes!("../data/basic.v21.bin")),
    (22, include_bytes!("../data/basic.v22.bin")),
    (29, include_bytes!("../data/basic.v29.bin")),
    (34, include_bytes!("../data/basic.v34.bin")),
    (38, include_bytes!("../data/basic.v38.bin")),
    (39, include_bytes!("../data/basic.v39.bin")),
    (43, include_bytes!("../data/basic.v43.bin")),
    (44, include_bytes!("../data/basic.v44.bin")),
];

/// A capture's agreed version and its frames (everything after the handshake).
pub fn capture_frames(file: &[u8]) -> (u32, &[u8]) {
    let agreed = u32::from_le_bytes(file[4..8].try_into().unwrap());
    (agreed, &file[8..])
}

/// How many frames a capture holds.
pub fn frame_count(mut frames: &[u8]) -> u64 {
    let mut n = 0;
    while !frames.is_empty() {
        let len = u32::from_be_bytes(frames[..4].try_into().unwrap()) as usize;
        frames = &frames[4 + len..];
        n += 1;
    }
    n
}

/// A fresh shared state.
pub fn shared_state() -> SharedState {
    Arc::new(Mutex::new(State::new(StateOptions::default())))
}

/// Waits, without polling, until `cond` holds for the state; the
/// connection sends on `changed` after every change.
pub async fn wait_until(
    state: &SharedState,
    changed: &Changed,
    mut cond: impl FnMut(&State) -> bool,
) {
    let mut wakeups = changed.subscribe();
    loop {
        if cond(&lock_state(state)) {
            return;
        }
        if wakeups.changed().await.is_err() {
            return;
        }
    }
}

/// The exact end state of every `basic` capture (derived from the frames
/// independently of icewatch): three hosts, `remote2` gone at the end, 42
/// remote jobs all submitted by `localice` (job 21, `bad.c`, failed with
/// exit code 1), compiled 26 by `localice` itself, 8 by `remote1`, 8 by
/// `remote2`, and 2 local jobs on `localice` (22 and 44).
pub fn assert_basic_final_state(st: &State, agreed: u32) {
    assert_basic_final_state_after(st, agreed, 1);
}

/// [`assert_basic_final_state`] after the capture was played in `sessions`
/// scheduler sessions in a row: what counts over time is that many times
/// as high (hosts keep their counters by name across sessions).
pub fn assert_basic_final_state_after(st: &State, agreed: u32, sessions: u64) {
    st.check_invariants();
    let n = sessions;
    let mut hosts: Vec<_> = st.hosts().collect();
    hosts.sort_by_key(|h| h.id);
    let summary: Vec<_> = hosts
        .iter()
        .map(|h| {
            (
                (h.id, &*h.name, h.online, h.no_remote, h.max_jobs),
                (
                    h.submitted,
                    h.compiled,
                    h.compiled_own,
                    h.failed,
                    h.local_jobs,
                ),
                (h.active, h.pending),
                (h.jobs_in, h.jobs_in_own, h.jobs_out),
            )
        })
        .collect();
    // IN adds up to OUT: 26 + 8 + 8 jobs in, 42 out, localice's 26 given
    // back to it among them.
    assert_eq!(
        summary,
        [
            (
                (1, "localice", true, true, 2),
                (42 * n, 26 * n, 26 * n, n, 2 * n),
                (0, 0),
                (26 * n, 26 * n, 42 * n)
            ),
            (
                (2, "remote1", true, false, 2),
                (0, 8 * n, 0, 0, 0),
                (0, 0),
                (8 * n, 0, 0)
            ),
            (
                (3, "remote2", false, false, 3),
                (0, 8 * n, 0, 0, 0),
                (0, 0),
                (8 * n, 0, 0)
            ),
        ],
        "protocol {agreed}"
    );
    let t = st.totals();
    assert_eq!(
        (
            t.jobs_finished,
            t.jobs_failed,
            t.jobs_cut_short,
            t.local_jobs_finished,
            t.active,
            t.pending
        ),
        (41 * n, n, 0, 2 * n, 0, 0)
    );
    assert_eq!((t.hosts_online, t.total_slots, t.busy_slots), (2, 4, 0));
    assert_eq!(
        (t.unknown_jobs, t.unknown_hosts, t.invalid_messages),
        (0, 0, 0)
    );
    assert_eq!(st.jobs().count(), 0);
    assert_eq!(st.links().count(), 0);
    // The newest 44 finished jobs are this capture's (the history may also
    // hold an earlier session's).
    let newest: Vec<_> = st.history().rev().take(44).collect();
    assert_eq!(newest.len(), 44);
    let failed: Vec<_> = newest
        .iter()
        .filter(|j| j.exit_code.is_some_and(|c| c != 0))
        .map(|j| {
            (
                j.id,
                j.exit_code,
                j.client,
                j.file().rsplit('/').next().map(str::to_owned),
            )
        })
        .collect();
    assert_eq!(failed, [(21, Some(1), Some(1), Some("bad.c".to_owned()))]);
    let mut local: Vec<_> = newest
        .iter()
        .filter(|j| j.state == icewatch::monitor::JobState::LocalFinished)
        .map(|j| (j.id, j.client, j.server))
        .collect();
    local.sort();
    assert_eq!(local, [(22, Some(1), Some(1)), (44, Some(1), Some(1))]);
    assert_eq!(st.scheduler().protocol, Some(agreed));
}

/// The handshake timeout of [`Monitor::start`].
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// The idle timeout of [`Monitor::start`].
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// `connection::run` and a fresh state against a fake scheduler.
pub struct Monitor {
    pub sched: FakeScheduler,
    pub state: SharedState,
    pub changed: Changed,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Monitor {
    pub async fn start(scripts: Vec<Script>) -> Monitor {
        let sched = FakeScheduler::start(scripts).await;
        let mut opts = ConnectOptions::new(Target::Address {
            host: "127.0.0.1".into(),
            port: sched.port(),
        });
        opts.handshake_timeout = Some(HANDSHAKE_TIMEOUT);
        opts.idle_timeout = IDLE_TIMEOUT;
        opts.backoff_min = Duration::from_millis(100);
        opts.backoff_max = Duration::from_secs(2);
        Monitor::start_with(sched, opts).await
    }

    pub async fn start_with(sched: FakeScheduler, opts: ConnectOptions) -> Monitor {
        let state = shared_state();
        let changed = changed();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(run(opts, state.clone(), changed.clone(), async {
            let _ = stopped.await;
        }));
        Monitor {
            sched,
            state,
            changed,
            stop: Some(stop),
            task,
        }
    }

    /// Waits (in paused time, so any bound is generous) until `cond` holds.
    pub async fn until(&self, what: &str, cond: impl FnMut(&State) -> bool) {
        tokio::time::timeout(
            Duration::from_secs(3600),
            wait_until(&self.state, &self.changed, cond),
        )
        .await
        .unwrap_or_else(|_| panic!("never: {what}; {:?}", lock_state(&self.state).scheduler()));
    }

    /// Waits until a session ends with an error containing `cause`.
    pub async fn until_lost(&self, cause: &str) -> String {
        self.until(cause, |st| {
            let s = st.scheduler();
            !s.online && s.error.as_deref().is_some_and(|e| e.contains(cause))
        })
        .await;
        lock_state(&self.state).scheduler().error.clone().unwrap()
    }

    pub async fn event(&mut self, want: Event) -> Instant {
        tokio::time::timeout(Duration::from_secs(3600), self.sched.wait_for(want.clone()))
            .await
            .unwrap_or_else(|_| panic!("never: {want:?}"))
    }

    /// Stops the monitor and waits until `run` has returned.
    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(3600), &mut self.task)
            .await
            .expect("run ends on shutdown, even while waiting to retry")
            .unwrap();
    }
}
