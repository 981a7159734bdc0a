//! A scripted fake icecream scheduler on 127.0.0.1 (port 0) over real
//! TCP, and the frames its scripts send.
//!
//! Each accepted connection plays one [`Script`]: connection `n` plays
//! `scripts[n]`, and every connection after the last script plays the last
//! one again (so a client that retries more often than a test expects still
//! meets a working scheduler). What happens on the scheduler's side is
//! reported as [`Event`]s, which tests await instead of sleeping.

use icewatch::protocol::frame::Frame;
use icewatch::protocol::handshake::handshake;
use icewatch::protocol::stats::HostStats;
use icewatch::protocol::{Message, MsgType};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
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
                if login[..] != *Frame::encode(&Message::MonLogin, agreed).as_bytes() {
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

/// `msg` as a frame at `version`, the bytes a script sends.
pub fn frame(msg: &Message<'_>, version: u32) -> Vec<u8> {
    Frame::encode(msg, version).as_bytes().to_vec()
}

/// The `MON_STATS` frame of a host logging in, as a real scheduler
/// announces it.
pub fn host(host_id: u32, name: &str, max_jobs: u32, no_remote: bool) -> Vec<u8> {
    let text = HostStats {
        load: Some(28),
        ..HostStats::login(name, "127.0.0.1", max_jobs, no_remote)
    }
    .to_text();
    frame(&Message::mon_stats(host_id, &text), 43)
}

/// An END frame.
pub fn end() -> Vec<u8> {
    frame(&Message::End, 43)
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
        Step::Send([host(21, "good1", 2, false), host(22, "good2", 3, true)].concat()),
        Step::Hold,
    ]
}
