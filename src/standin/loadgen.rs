//! A load generator for a real icecream scheduler: `icewatch loadgen`.
//!
//! Where the other stand-ins play the scheduler, this plays its daemons.
//! Each simulated `iceccd` is one tokio task with its own connection to the
//! scheduler, spoken with this crate's protocol library exactly as a daemon
//! speaks it (icecream's `daemon/main.cpp`):
//!
//! - it does the version handshake at its own protocol version, sends
//!   `LOGIN` (port, slots, installed environment, node name, platform,
//!   chroot possible, `--no-remote`, features), takes the scheduler's
//!   `CS_CONF` and sends `STATS` every `max_scheduler_pong` seconds;
//! - it listens on its own TCP port, because the scheduler only gives
//!   jobs to a daemon it can connect to (it tries every minute);
//! - as a client's daemon it forwards the client's `GET_CS` with its own
//!   client id; the scheduler answers `USE_CS` (or `NO_CS`: "compile it
//!   yourself"), and the chosen daemon, the compile server, reports the
//!   job's `JOB_BEGIN` and, when the compiler is done, `JOB_DONE`: timings
//!   and sizes drawn as the demo draws them, a few compiles failing, each
//!   failure followed by the client's local retry;
//! - links and the retries run on the client's own host:
//!   `JOB_LOCAL_BEGIN`, then `JOB_LOCAL_DONE`;
//! - now and then a daemon leaves and joins again later, under the same
//!   name, as a restarted `iceccd` does. It leaves as a drained daemon
//!   does: it reports itself fully loaded (load 1000, so the scheduler
//!   gives it no new job), finishes what it runs, then closes.
//!
//! Everything random comes from one seed. The run counts what it asked for
//! and what it reported ([`Summary`]); a monitor of the same scheduler
//! sees exactly those jobs (`tests/real_loadgen.rs` checks it against
//! Debian's scheduler).

use crate::protocol::frame::{parse_frame, FrameError, MAX_MSG_SIZE};
use crate::protocol::handshake::handshake;
use crate::protocol::{
    EnvList, Environment, GetCs, JobBegin, JobDone, JobLocalBegin, JobLocalDone, Language, Login,
    Message, Stats,
};
use bytes::{Buf, BytesMut};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// `NODE_FEATURE_ENV_XZ`: the daemon unpacks `.tar.xz` environments.
pub const NODE_FEATURE_ENV_XZ: u32 = 1 << 0;
/// `NODE_FEATURE_ENV_ZSTD`: the daemon unpacks `.tar.zst` environments.
pub const NODE_FEATURE_ENV_ZSTD: u32 = 1 << 1;

/// How long a daemon waits for the scheduler to answer its handshake: an
/// idle icecream scheduler can take 40 s to accept a new connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(120);
/// Seconds between `STATS` until `CS_CONF` says otherwise (icecream's
/// `MAX_SCHEDULER_PONG`).
const STATS_EVERY: Duration = Duration::from_secs(3);
/// How long a leaving daemon keeps reporting load 1000 before it closes,
/// so that the scheduler has read it before the connection ends.
const DRAIN_GRACE: Duration = Duration::from_secs(2);
/// How long the end of a run waits for jobs in flight to end.
const DRAIN_LIMIT: Duration = Duration::from_secs(60);

/// What to run.
#[derive(Clone, Debug)]
pub struct Options {
    /// The scheduler.
    pub scheduler: SocketAddr,
    /// Simulated daemons.
    pub daemons: usize,
    /// Compile requests (`GET_CS`) a minute, all daemons together; links
    /// and local retries come on top.
    pub jobs_per_minute: f64,
    /// How long the load runs once every daemon is logged in; `None` until
    /// cancelled.
    pub duration: Option<Duration>,
    /// Daemons that leave (and come back a few seconds later) a minute.
    pub leaves_per_minute: f64,
    /// The seed of everything drawn.
    pub seed: u64,
    /// After the last job ended, stay logged in this long before logging
    /// out: a quiet moment in which the scheduler and its monitors can be
    /// compared.
    pub linger: Duration,
}

/// What a run did, in the terms a monitor of the same scheduler counts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Simulated daemons.
    pub daemons: usize,
    /// Logins, first ones and returns after leaving.
    pub logins: u64,
    /// Times a daemon left on purpose (and came back).
    pub leaves: u64,
    /// Compile requests sent (`GET_CS`).
    pub jobs_requested: u64,
    /// Requests the scheduler answered with a server (`USE_CS`, `NO_CS`).
    pub jobs_assigned: u64,
    /// Remote jobs reported ended with exit code 0 (`JOB_DONE`).
    pub jobs_finished: u64,
    /// Remote jobs reported ended with another exit code.
    pub jobs_failed: u64,
    /// Requested jobs whose end was never reported: the session that
    /// carried them closed first (Ctrl-C, the scheduler went away).
    pub jobs_cut_short: u64,
    /// Local jobs begun (`JOB_LOCAL_BEGIN`): links and retries.
    pub local_jobs: u64,
    /// Local jobs reported ended (`JOB_LOCAL_DONE`).
    pub local_jobs_done: u64,
    /// CPU time this process used, in milliseconds.
    pub cpu_ms: u64,
    /// How long the run took, in milliseconds.
    pub wall_ms: u64,
}

/// Why a run could not start.
#[derive(Debug, thiserror::Error)]
pub enum LoadgenError {
    /// No address to listen on for the scheduler's connection checks.
    #[error("cannot listen for the scheduler's connection checks: {0}")]
    Listen(std::io::Error),
}

#[derive(Default)]
struct Counters {
    logins: AtomicU64,
    leaves: AtomicU64,
    requested: AtomicU64,
    assigned: AtomicU64,
    finished: AtomicU64,
    failed: AtomicU64,
    local: AtomicU64,
    local_done: AtomicU64,
}

impl Counters {
    fn jobs_open(&self) -> u64 {
        let ended = self.finished.load(Relaxed) + self.failed.load(Relaxed);
        let local_open = self.local.load(Relaxed) - self.local_done.load(Relaxed);
        self.requested.load(Relaxed).saturating_sub(ended) + local_open
    }
}

/// What a daemon is asked to do, by the run or by another daemon.
#[derive(Debug)]
enum Cmd {
    /// A client on this host asks for a compile server.
    Submit,
    /// A client on this host links: a local job.
    Link,
    /// The scheduler chose this daemon to compile job `job_id`.
    Compile { job_id: u32, submitter: usize },
    /// A job this daemon submitted ended on its server.
    Ended { failed: bool },
    /// A compile this daemon runs in session `epoch` is done.
    CompileDone {
        epoch: u64,
        job_id: u32,
        submitter: usize,
        started: Instant,
    },
    /// A local job of session `epoch` is done.
    LocalDone { epoch: u64, client_id: u32 },
    /// Drain and leave for `away`, then log in again.
    Leave { away: Duration },
}

/// Who a simulated daemon is.
#[derive(Clone, Debug)]
struct Profile {
    name: String,
    max_jobs: u32,
    platform: &'static str,
    version: u32,
    features: u32,
    no_remote: bool,
    speed: f64,
}

fn profile(index: usize, rng: &mut StdRng) -> Profile {
    // A mix seen in offices: mostly x86-64 build boxes, some arm64, a
    // few developer laptops that take no remote jobs, daemons from
    // icecream 1.3 (protocol 42) to git master (44).
    let no_remote = rng.random_bool(0.05);
    let max_jobs = if no_remote {
        [2, 4, 8][rng.random_range(0..3)]
    } else {
        [1, 2, 4, 4, 8, 8, 12, 16, 32][rng.random_range(0..9)]
    };
    let platform = if rng.random_bool(0.15) {
        "aarch64"
    } else {
        "x86_64"
    };
    let version = match rng.random_range(0..10) {
        0 => 42,
        1..=2 => 44,
        _ => 43,
    };
    let features = match version {
        42 => NODE_FEATURE_ENV_XZ,
        _ => NODE_FEATURE_ENV_XZ | NODE_FEATURE_ENV_ZSTD,
    };
    Profile {
        name: format!("lg{index:04}"),
        max_jobs,
        platform,
        version,
        features,
        no_remote,
        speed: rng.random_range(0.6..1.8),
    }
}

/// The environment every daemon of a platform has installed and every
/// client of that platform sends.
fn environment(platform: &str) -> String {
    format!("loadgen-gcc-12-{platform}.tar.zst")
}

/// A compile's wall time: log-normal around 1.5 s, scaled by speed, as
/// the demo simulation draws it.
fn compile_time(rng: &mut impl Rng, speed: f64) -> Duration {
    Duration::from_millis(crate::standin::simulation::compile_ms(rng, speed))
}

fn unix_now() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX))
}

/// What every daemon task shares.
struct Shared {
    scheduler: SocketAddr,
    counters: Counters,
    /// Each daemon's mailbox, by index.
    mailboxes: Vec<mpsc::UnboundedSender<Cmd>>,
    /// Daemon index by listening port, to route `USE_CS`.
    by_port: HashMap<u16, usize>,
    /// Logged in and not leaving: may submit.
    online: Vec<AtomicBool>,
}

/// Runs the load until `options.duration` has passed (then lets every
/// job end, lingers, and logs out) or `cancel` fires (then logs out at
/// once). Fails only when it cannot start; a scheduler that cannot be
/// reached is retried by every daemon, as `iceccd` does, and said on
/// stderr.
pub async fn run(options: Options, cancel: CancellationToken) -> Result<Summary, LoadgenError> {
    let start = Instant::now();
    let cpu_start = cpu_time::ProcessTime::now();
    let ip = local_ip_towards(options.scheduler).map_err(LoadgenError::Listen)?;
    let mut rng = StdRng::seed_from_u64(options.seed);
    let mut listeners = Vec::with_capacity(options.daemons);
    let mut by_port = HashMap::with_capacity(options.daemons);
    let mut inboxes = Vec::with_capacity(options.daemons);
    let mut mailboxes = Vec::with_capacity(options.daemons);
    for index in 0..options.daemons {
        let listener = TcpListener::bind((ip, 0))
            .await
            .map_err(LoadgenError::Listen)?;
        let port = listener.local_addr().map_err(LoadgenError::Listen)?.port();
        by_port.insert(port, index);
        listeners.push(listener);
        let (tx, rx) = mpsc::unbounded_channel();
        mailboxes.push(tx);
        inboxes.push(rx);
    }
    let shared = Arc::new(Shared {
        scheduler: options.scheduler,
        counters: Counters::default(),
        mailboxes,
        by_port,
        online: (0..options.daemons)
            .map(|_| AtomicBool::new(false))
            .collect(),
    });
    let stop = cancel.child_token();
    let mut daemons = JoinSet::new();
    for (index, (listener, inbox)) in listeners.into_iter().zip(inboxes).enumerate() {
        let daemon = Daemon {
            index,
            profile: profile(index, &mut rng),
            rng: StdRng::seed_from_u64(rng.random()),
            shared: shared.clone(),
            listener,
            inbox,
            stop: stop.clone(),
            epoch: 0,
        };
        daemons.spawn(daemon.run());
    }

    let logged_in = wait_for_logins(&shared, options.daemons, &cancel).await;
    if logged_in {
        drive(&options, &shared, &mut rng, &cancel).await;
    }
    if !cancel.is_cancelled() && drain(&shared, &cancel).await {
        eprintln!(
            "loadgen: quiet: every job has ended; {} daemons stay logged in for {:?}",
            options.daemons, options.linger
        );
        tokio::select! {
            () = tokio::time::sleep(options.linger) => {}
            () = cancel.cancelled() => {}
        }
    }
    stop.cancel();
    while daemons.join_next().await.is_some() {}

    let c = &shared.counters;
    let requested = c.requested.load(Relaxed);
    let finished = c.finished.load(Relaxed);
    let failed = c.failed.load(Relaxed);
    Ok(Summary {
        daemons: options.daemons,
        logins: c.logins.load(Relaxed),
        leaves: c.leaves.load(Relaxed),
        jobs_requested: requested,
        jobs_assigned: c.assigned.load(Relaxed),
        jobs_finished: finished,
        jobs_failed: failed,
        jobs_cut_short: requested.saturating_sub(finished + failed),
        local_jobs: c.local.load(Relaxed),
        local_jobs_done: c.local_done.load(Relaxed),
        cpu_ms: u64::try_from(cpu_start.elapsed().as_millis()).unwrap_or(u64::MAX),
        wall_ms: u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX),
    })
}

/// The address this host reaches `scheduler` from: where the scheduler's
/// connection checks will come to. Connecting a UDP socket sends nothing.
fn local_ip_towards(scheduler: SocketAddr) -> std::io::Result<IpAddr> {
    let any: SocketAddr = if scheduler.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        ([0u16; 8], 0).into()
    };
    let probe = std::net::UdpSocket::bind(any)?;
    probe.connect(scheduler)?;
    Ok(probe.local_addr()?.ip())
}

/// Waits until every daemon has logged in, saying how many have while it
/// waits. False if cancelled.
async fn wait_for_logins(shared: &Shared, daemons: usize, cancel: &CancellationToken) -> bool {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut said = Instant::now();
    loop {
        let online = shared.online.iter().filter(|o| o.load(Relaxed)).count();
        if online == daemons {
            eprintln!("loadgen: {daemons} daemons logged in");
            return true;
        }
        if said.elapsed() >= Duration::from_secs(5) {
            eprintln!(
                "loadgen: {online} of {daemons} daemons logged in, waiting for the scheduler"
            );
            said = Instant::now();
        }
        tokio::select! {
            _ = tick.tick() => {}
            () = cancel.cancelled() => return false,
        }
    }
}

/// The load itself: requests at random moments (a Poisson process at the
/// asked rate) from random online daemons, and daemons leaving.
async fn drive(options: &Options, shared: &Shared, rng: &mut StdRng, cancel: &CancellationToken) {
    let end = options.duration.map(|d| tokio::time::Instant::now() + d);
    let per_second = options.jobs_per_minute / 60.0;
    let leaves_per_second = options.leaves_per_minute / 60.0;
    let mut next_job = tokio::time::Instant::now() + exponential(rng, per_second);
    let mut next_leave = tokio::time::Instant::now() + exponential(rng, leaves_per_second);
    loop {
        let until_end = async {
            match end {
                Some(end) => tokio::time::sleep_until(end).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = cancel.cancelled() => return,
            () = until_end => return,
            () = tokio::time::sleep_until(next_job) => {
                next_job += exponential(rng, per_second);
                if let Some(index) = pick_online(shared, rng) {
                    // About one job in fifteen is a link, run locally.
                    let cmd = if rng.random_bool(1.0 / 15.0) { Cmd::Link } else { Cmd::Submit };
                    let _ = shared.mailboxes[index].send(cmd);
                }
            }
            () = tokio::time::sleep_until(next_leave) => {
                next_leave += exponential(rng, leaves_per_second);
                if let Some(index) = pick_online(shared, rng) {
                    shared.online[index].store(false, Relaxed);
                    let away = Duration::from_millis(rng.random_range(2_000..8_000));
                    let _ = shared.mailboxes[index].send(Cmd::Leave { away });
                }
            }
        }
    }
}

/// Waits until every job has ended and every daemon is back (true), or
/// [`DRAIN_LIMIT`] has passed or `cancel` fired (false).
async fn drain(shared: &Shared, cancel: &CancellationToken) -> bool {
    let deadline = Instant::now() + DRAIN_LIMIT;
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    while Instant::now() < deadline {
        let all_back = shared.online.iter().all(|o| o.load(Relaxed));
        if shared.counters.jobs_open() == 0 && all_back {
            return true;
        }
        tokio::select! {
            _ = tick.tick() => {}
            () = cancel.cancelled() => return false,
        }
    }
    eprintln!(
        "loadgen: {} jobs still open after {DRAIN_LIMIT:?}; logging out, they count as cut short",
        shared.counters.jobs_open()
    );
    false
}

/// A wait drawn from an exponential distribution with `rate` a second;
/// an hour for a rate of zero.
fn exponential(rng: &mut StdRng, rate: f64) -> Duration {
    if rate <= 0.0 {
        return Duration::from_secs(3600);
    }
    let u: f64 = rng.random_range(f64::EPSILON..1.0);
    Duration::from_secs_f64((-u.ln() / rate).min(3600.0))
}

fn pick_online(shared: &Shared, rng: &mut StdRng) -> Option<usize> {
    let n = shared.online.len();
    if n == 0 {
        return None;
    }
    // The first online one from a random start.
    let start = rng.random_range(0..n);
    (0..n)
        .map(|k| (start + k) % n)
        .find(|&i| shared.online[i].load(Relaxed))
}

/// One simulated daemon, over all its sessions.
struct Daemon {
    index: usize,
    profile: Profile,
    rng: StdRng,
    shared: Arc<Shared>,
    listener: TcpListener,
    inbox: mpsc::UnboundedReceiver<Cmd>,
    stop: CancellationToken,
    /// Counts sessions: what a closed session left running is over.
    epoch: u64,
}

/// How a session ended.
enum SessionEnd {
    Stopped,
    Left(Duration),
    Lost(String),
}

/// One session's bookkeeping.
#[derive(Default)]
struct Session {
    version: u32,
    next_client_id: u32,
    /// Compiles running here.
    serving: u32,
    /// Compiles given here while every slot was busy (the scheduler
    /// preloads a server with a few more than its slots): they begin as
    /// slots free up, as in `iceccd`.
    queued: VecDeque<(u32, usize)>,
    /// Jobs submitted here and not ended.
    submitted: u32,
    /// Local jobs running here.
    local: u32,
    leaving: Option<(tokio::time::Instant, Duration)>,
}

impl Daemon {
    async fn run(mut self) {
        // Spread the logins over a second, as daemons starting over a
        // network would.
        let stagger = Duration::from_millis(self.rng.random_range(0..1_000));
        tokio::select! {
            () = tokio::time::sleep(stagger) => {}
            () = self.stop.cancelled() => return,
        }
        loop {
            let away = match self.session().await {
                SessionEnd::Stopped => return,
                SessionEnd::Left(away) => away,
                SessionEnd::Lost(why) => {
                    tracing::warn!("{}: {why}; logging in again in 3 s", self.profile.name);
                    Duration::from_secs(3)
                }
            };
            self.shared.online[self.index].store(false, Relaxed);
            let back = tokio::time::Instant::now() + away;
            loop {
                tokio::select! {
                    () = tokio::time::sleep_until(back) => break,
                    () = self.stop.cancelled() => return,
                    // Jobs routed here while away are gone: the scheduler
                    // ended them when the connection closed.
                    Some(cmd) = self.inbox.recv() => self.while_away(cmd),
                    accepted = self.listener.accept() => drop(accepted),
                }
            }
        }
    }

    /// What arrives for a closed session: its jobs are over, ended by the
    /// scheduler when the connection closed; their clients hear so.
    fn while_away(&mut self, cmd: Cmd) {
        if let Cmd::Compile { submitter, .. } | Cmd::CompileDone { submitter, .. } = cmd {
            let _ = self.shared.mailboxes[submitter].send(Cmd::Ended { failed: false });
        }
    }

    async fn session(&mut self) -> SessionEnd {
        self.epoch += 1;
        let connect = async {
            let mut stream = TcpStream::connect(self.shared.scheduler).await?;
            stream.set_nodelay(true)?;
            let version = handshake(&mut stream, self.profile.version)
                .await
                .map_err(std::io::Error::other)?;
            Ok::<_, std::io::Error>((stream, version))
        };
        let (stream, version) = tokio::select! {
            r = tokio::time::timeout(CONNECT_TIMEOUT, connect) => match r {
                Ok(Ok(v)) => v,
                Ok(Err(e)) => return SessionEnd::Lost(format!("cannot reach the scheduler: {e}")),
                Err(_) => return SessionEnd::Lost("the scheduler did not answer".into()),
            },
            () = self.stop.cancelled() => return SessionEnd::Stopped,
        };
        let (mut read, mut write) = stream.into_split();
        let mut s = Session {
            version,
            ..Session::default()
        };
        let mut out = BytesMut::with_capacity(1024);
        let env = environment(self.profile.platform);
        let installed = [Environment {
            platform: self.profile.platform.as_bytes(),
            version: env.as_bytes(),
        }];
        let port = self.listener.local_addr().map_or(0, |a| a.port());
        Message::Login(Login {
            port: u32::from(port),
            max_jobs: self.profile.max_jobs,
            environments: EnvList::from_slice(&installed),
            node_name: self.profile.name.as_bytes(),
            host_platform: self.profile.platform.as_bytes(),
            chroot_possible: 1,
            no_remote: u32::from(self.profile.no_remote),
            features: self.profile.features,
        })
        .encode(version, &mut out);
        if let Err(e) = write.write_all(&out).await {
            return SessionEnd::Lost(format!("login failed: {e}"));
        }
        out.clear();
        let mut stats_every = STATS_EVERY;
        let mut next_stats = tokio::time::Instant::now() + stats_every;
        let mut buf = BytesMut::with_capacity(4096);
        let end = loop {
            let drained = s.leaving.filter(|&(since, _)| {
                s.serving == 0
                    && s.queued.is_empty()
                    && s.submitted == 0
                    && s.local == 0
                    && since.elapsed() >= DRAIN_GRACE
            });
            if let Some((_, away)) = drained {
                let _ = write.shutdown().await;
                break SessionEnd::Left(away);
            }
            tokio::select! {
                () = self.stop.cancelled() => {
                    // A daemon that stops closes its connection; the
                    // scheduler ends what it had in flight.
                    let _ = write.shutdown().await;
                    break SessionEnd::Stopped;
                }
                n = read.read_buf(&mut buf) => match n {
                    Ok(0) => break SessionEnd::Lost("the scheduler closed the connection".into()),
                    Err(e) => break SessionEnd::Lost(format!("reading from the scheduler: {e}")),
                    Ok(_) => {
                        match self.take_frames(&mut buf, &mut s, &mut out) {
                            Ok(Some(every)) => {
                                stats_every = every;
                                next_stats = tokio::time::Instant::now();
                            }
                            Ok(None) => {}
                            Err(e) => break SessionEnd::Lost(e),
                        }
                    }
                },
                Some(cmd) = self.inbox.recv() => self.command(cmd, &mut s, &mut out),
                () = tokio::time::sleep_until(next_stats) => {
                    next_stats += stats_every;
                    self.stats(&s, &mut out);
                }
                // The scheduler's check that this daemon takes connections.
                accepted = self.listener.accept() => drop(accepted),
                () = tokio::time::sleep(DRAIN_GRACE), if s.leaving.is_some() => {}
            }
            if !out.is_empty() {
                if let Err(e) = write.write_all(&out).await {
                    break SessionEnd::Lost(format!("writing to the scheduler: {e}"));
                }
                out.clear();
            }
        };
        // What was given here and not begun is over with the session.
        for (_, submitter) in s.queued.drain(..) {
            let _ = self.shared.mailboxes[submitter].send(Cmd::Ended { failed: false });
        }
        end
    }

    /// Handles whole frames from the scheduler; `Some(interval)` once
    /// `CS_CONF` has configured the stats interval (the daemon is in).
    fn take_frames(
        &mut self,
        buf: &mut BytesMut,
        s: &mut Session,
        out: &mut BytesMut,
    ) -> Result<Option<Duration>, String> {
        let mut configured = None;
        loop {
            let used = match parse_frame(buf, MAX_MSG_SIZE) {
                Ok((rest, raw)) => {
                    let msg =
                        Message::decode(raw.ty, raw.body, s.version).map_err(|e| e.to_string())?;
                    match msg {
                        Message::CsConf(conf) => {
                            let secs = u64::from(conf.max_scheduler_pong.clamp(1, 60));
                            configured = Some(Duration::from_secs(secs));
                            if !self.shared.online[self.index].swap(true, Relaxed) {
                                self.shared.counters.logins.fetch_add(1, Relaxed);
                            }
                        }
                        Message::UseCs(u) => {
                            let server = u16::try_from(u.port)
                                .ok()
                                .and_then(|p| self.shared.by_port.get(&p).copied());
                            self.assigned(u.job_id, server);
                        }
                        Message::NoCs(n) => self.assigned(n.job_id, Some(self.index)),
                        Message::Ping => Message::Ping.encode(s.version, out),
                        Message::End => return Err("the scheduler said END".into()),
                        _ => {}
                    }
                    buf.len() - rest.len()
                }
                Err(FrameError::Incomplete { .. }) => return Ok(configured),
                Err(e) => return Err(format!("bad frame from the scheduler: {e}")),
            };
            buf.advance(used);
        }
    }

    fn assigned(&mut self, job_id: u32, server: Option<usize>) {
        self.shared.counters.assigned.fetch_add(1, Relaxed);
        let submitter = self.index;
        match server {
            Some(server) => {
                let _ = self.shared.mailboxes[server].send(Cmd::Compile { job_id, submitter });
            }
            None => {
                tracing::warn!("job {job_id} went to a daemon this run does not know");
                let _ = self.shared.mailboxes[submitter].send(Cmd::Ended { failed: false });
            }
        }
    }

    fn stats(&mut self, s: &Session, out: &mut BytesMut) {
        let load = if s.leaving.is_some() {
            1000
        } else {
            (s.serving + s.local) * 900 / self.profile.max_jobs.max(1)
        };
        let load = load.min(1000);
        let avg = load * self.profile.max_jobs.min(16) / 4;
        Message::Stats(Stats {
            load,
            load_avg1: avg,
            load_avg5: avg,
            load_avg10: avg,
            free_mem: 16_384 - (s.serving + s.local).min(16) * 512,
        })
        .encode(s.version, out);
    }

    fn command(&mut self, cmd: Cmd, s: &mut Session, out: &mut BytesMut) {
        let version = s.version;
        let counters = &self.shared.counters;
        match cmd {
            Cmd::Submit => {
                s.next_client_id += 1;
                s.submitted += 1;
                counters.requested.fetch_add(1, Relaxed);
                let env = environment(self.profile.platform);
                let envs = [Environment {
                    platform: self.profile.platform.as_bytes(),
                    version: env.as_bytes(),
                }];
                let (file, lang) = self.source_file();
                Message::GetCs(GetCs {
                    environments: EnvList::from_slice(&envs),
                    filename: file.as_bytes(),
                    lang,
                    count: 1,
                    target: self.profile.platform.as_bytes(),
                    arg_flags: 0,
                    client_id: s.next_client_id,
                    preferred_host: b"",
                    ignore_unverified: 1,
                    minimal_host_version: 0,
                    client_count: s.submitted + s.local,
                    required_features: 0,
                    niceness: 5,
                })
                .encode(version, out);
            }
            Cmd::Link => self.local_job(s, out, "a.out"),
            Cmd::Compile { job_id, submitter } => {
                s.queued.push_back((job_id, submitter));
                self.begin_compiles(s, out);
            }
            Cmd::CompileDone { epoch, .. } | Cmd::LocalDone { epoch, .. }
                if epoch != self.epoch =>
            {
                self.while_away(cmd);
            }
            Cmd::CompileDone {
                job_id,
                submitter,
                started,
                ..
            } => {
                s.serving = s.serving.saturating_sub(1);
                // About one compile in fifty fails (a syntax error).
                let failed = self.rng.random_bool(0.02);
                let real_ms = u32::try_from(started.elapsed().as_millis()).unwrap_or(u32::MAX);
                let source_kb: u32 = self.rng.random_range(150..3_000);
                let object_kb: u32 = if failed {
                    0
                } else {
                    self.rng.random_range(20..900)
                };
                Message::JobDone(JobDone {
                    job_id,
                    exit_code: u32::from(failed),
                    real_ms,
                    user_ms: real_ms / 10 * 9,
                    sys_ms: real_ms / 12,
                    page_faults: self.rng.random_range(0..4_000),
                    in_compressed: source_kb * 1024 / 5,
                    in_uncompressed: source_kb * 1024,
                    out_compressed: object_kb * 1024 / 3,
                    out_uncompressed: object_kb * 1024,
                    flags: 0,
                    client_count: s.serving,
                })
                .encode(version, out);
                let counter = if failed {
                    &counters.failed
                } else {
                    &counters.finished
                };
                counter.fetch_add(1, Relaxed);
                let _ = self.shared.mailboxes[submitter].send(Cmd::Ended { failed });
                self.begin_compiles(s, out);
            }
            Cmd::Ended { failed } => {
                s.submitted = s.submitted.saturating_sub(1);
                // icecc compiles a failed file again locally, for the
                // compiler's own diagnostics.
                if failed {
                    self.local_job(s, out, "retry.o");
                }
            }
            Cmd::LocalDone { client_id, .. } => {
                s.local = s.local.saturating_sub(1);
                counters.local_done.fetch_add(1, Relaxed);
                Message::JobLocalDone(JobLocalDone { job_id: client_id }).encode(version, out);
                self.begin_compiles(s, out);
            }
            Cmd::Leave { away } => {
                counters.leaves.fetch_add(1, Relaxed);
                s.leaving = Some((tokio::time::Instant::now(), away));
                self.stats(s, out);
            }
        }
    }

    /// Begins queued compiles while slots are free (local jobs take slots
    /// too), each with its `JOB_BEGIN`.
    fn begin_compiles(&mut self, s: &mut Session, out: &mut BytesMut) {
        while s.serving + s.local < self.profile.max_jobs.max(1) {
            let Some((job_id, submitter)) = s.queued.pop_front() else {
                return;
            };
            s.serving += 1;
            Message::JobBegin(JobBegin {
                job_id,
                start_time: unix_now(),
                client_count: s.serving,
            })
            .encode(s.version, out);
            let after = compile_time(&mut self.rng, self.profile.speed);
            self.later(
                after,
                Cmd::CompileDone {
                    epoch: self.epoch,
                    job_id,
                    submitter,
                    started: Instant::now(),
                },
            );
        }
    }

    fn local_job(&mut self, s: &mut Session, out: &mut BytesMut, output: &str) {
        s.next_client_id += 1;
        s.local += 1;
        self.shared.counters.local.fetch_add(1, Relaxed);
        let client_id = s.next_client_id;
        Message::JobLocalBegin(JobLocalBegin {
            start_time: unix_now(),
            output_file: output.as_bytes(),
            id: client_id,
            full_job: 0,
        })
        .encode(s.version, out);
        let after = compile_time(&mut self.rng, self.profile.speed) / 2;
        let epoch = self.epoch;
        self.later(after, Cmd::LocalDone { epoch, client_id });
    }

    /// Sends `cmd` to this daemon after `after`.
    fn later(&self, after: Duration, cmd: Cmd) {
        let mailbox = self.shared.mailboxes[self.index].clone();
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            let _ = mailbox.send(cmd);
        });
    }

    fn source_file(&mut self) -> (String, Language) {
        const DIRS: &[&str] = &["src/core", "src/net", "lib/util", "tests", "drivers/gpu"];
        const STEMS: &[&str] = &["alloc", "buffer", "codec", "parser", "render", "socket"];
        let dir = DIRS[self.rng.random_range(0..DIRS.len())];
        let stem = STEMS[self.rng.random_range(0..STEMS.len())];
        let n: u32 = self.rng.random_range(0..400);
        if self.rng.random_bool(0.6) {
            (format!("{dir}/{stem}{n}.cpp"), Language::CXX)
        } else {
            (format!("{dir}/{stem}{n}.c"), Language::C)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profiles(seed: u64, n: usize) -> Vec<Profile> {
        let mut rng = StdRng::seed_from_u64(seed);
        (0..n).map(|i| profile(i, &mut rng)).collect()
    }

    #[test]
    fn the_same_seed_draws_the_same_daemons_from_a_realistic_mix() {
        let key = |p: &Profile| {
            (
                p.name.clone(),
                p.max_jobs,
                p.platform,
                p.version,
                p.no_remote,
            )
        };
        let a: Vec<_> = profiles(7, 500).iter().map(key).collect();
        let b: Vec<_> = profiles(7, 500).iter().map(key).collect();
        assert_eq!(a, b);
        assert_ne!(a, profiles(8, 500).iter().map(key).collect::<Vec<_>>());
        let all = profiles(7, 500);
        let count = |f: &dyn Fn(&Profile) -> bool| all.iter().filter(|p| f(p)).count();
        assert!((5..60).contains(&count(&|p| p.no_remote)));
        assert!((30..130).contains(&count(&|p| p.platform == "aarch64")));
        for version in [42, 43, 44] {
            assert!(count(&|p| p.version == version) >= 20, "protocol {version}");
        }
        assert!(all.iter().all(|p| (1..=32).contains(&p.max_jobs)));
    }

    #[test]
    fn waits_follow_the_rate() {
        let mut rng = StdRng::seed_from_u64(1);
        let total: f64 = (0..10_000)
            .map(|_| exponential(&mut rng, 100.0).as_secs_f64())
            .sum();
        // 10,000 waits at 100 a second: about 100 s.
        assert!((95.0..105.0).contains(&total), "{total}");
        assert_eq!(exponential(&mut rng, 0.0), Duration::from_secs(3600));
    }
}
