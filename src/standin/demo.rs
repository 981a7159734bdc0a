//! The demo served as a scheduler: one shared [simulated
//! cluster](super::simulation). A monitor that logs in gets a `MON_STATS`
//! for every host, then the live stream. A monitor that falls too far
//! behind is dropped, as icecream's scheduler drops a monitor that blocks.
//! On shutdown every monitor gets `END`.

use crate::protocol::stats::HostStats;
use crate::standin::replay::{later, played};
use crate::standin::session::{accept_monitors, log_in, JobDoneType, GOODBYE, QUEUE};
use crate::standin::simulation::{Event, Simulation};
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, mpsc, oneshot, Notify};
use tokio::time::{sleep_until, timeout, Instant};
use tokio_util::sync::CancellationToken;

/// How fast the demo runs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Pace {
    /// The simulation's own time: about as busy as a real cluster.
    RealTime,
    /// On average this many messages per second.
    PerSecond(f64),
    /// As fast as the slowest monitor reads.
    Unlimited,
}

/// What the demo scheduler serves.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    /// Hosts in the cluster.
    pub hosts: usize,
    /// Seed of the simulation.
    pub seed: u64,
    /// How fast it runs.
    pub pace: Pace,
    /// The protocol version offered in the handshake.
    pub offer: u32,
    /// The job-end type code.
    pub job_done: JobDoneType,
}

type LoginReply = (Vec<Arc<Event>>, broadcast::Receiver<Arc<Event>>);

/// Serves the demo cluster to every monitor that connects to `listener`,
/// until `shutdown`.
pub async fn serve_demo(
    listener: TcpListener,
    opts: DemoOptions,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let sim = Simulation::new(opts.hosts, opts.seed);
    let (tx, _) = broadcast::channel(QUEUE);
    let (login_tx, login_rx) = mpsc::channel::<oneshot::Sender<LoginReply>>(16);
    let drained = Arc::new(Notify::new());
    let feed = tokio::spawn(feed(
        sim,
        opts.pace,
        tx,
        login_rx,
        drained.clone(),
        shutdown.clone(),
    ));
    let mut monitors = accept_monitors(&listener, &shutdown, false, |stream| {
        demo_monitor(
            stream,
            opts.offer,
            opts.job_done,
            login_tx.clone(),
            drained.clone(),
        )
    })
    .await;
    drop(login_tx);
    let fed = feed.await;
    let _ = timeout(GOODBYE * 2, async {
        while monitors.join_next().await.is_some() {}
    })
    .await;
    fed.map_err(|e| std::io::Error::other(format!("the simulation failed: {e}")))
}

async fn demo_monitor(
    stream: TcpStream,
    offer: u32,
    job_done: JobDoneType,
    logins: mpsc::Sender<oneshot::Sender<LoginReply>>,
    drained: Arc<Notify>,
) {
    let Some(mut link) = log_in(stream, offer, Some(job_done), "").await else {
        return;
    };
    let (reply_tx, reply_rx) = oneshot::channel();
    if logins.send(reply_tx).await.is_err() {
        link.goodbye().await;
        return;
    }
    let Ok((burst, mut rx)) = reply_rx.await else {
        link.goodbye().await;
        return;
    };
    for event in &burst {
        link.queue_event(event);
    }
    if link.flush().await.is_err() {
        return;
    }
    loop {
        tokio::select! {
            received = rx.recv() => {
                let mut next = received;
                // Take everything that is ready, then write once.
                loop {
                    match next {
                        Ok(event) if *event == Event::End => {
                            drained.notify_one();
                            link.goodbye().await;
                            return;
                        }
                        Ok(event) => link.queue_event(&event),
                        Err(broadcast::error::RecvError::Lagged(n)) => {
                            tracing::warn!(
                                "monitor {} fell {n} messages behind and was dropped, as a scheduler drops a blocking monitor",
                                link.peer()
                            );
                            return;
                        }
                        Err(broadcast::error::RecvError::Closed) => {
                            link.goodbye().await;
                            return;
                        }
                    }
                    if link.queued() >= 64 * 1024 {
                        break;
                    }
                    match rx.try_recv() {
                        Ok(event) => next = Ok(event),
                        Err(broadcast::error::TryRecvError::Lagged(n)) => {
                            next = Err(broadcast::error::RecvError::Lagged(n))
                        }
                        Err(broadcast::error::TryRecvError::Closed) => {
                            next = Err(broadcast::error::RecvError::Closed)
                        }
                        Err(broadcast::error::TryRecvError::Empty) => break,
                    }
                }
                drained.notify_one();
                if link.flush().await.is_err() {
                    return;
                }
            }
            _ = link.closed() => {
                tracing::info!("monitor {} left", link.peer());
                return;
            }
        }
    }
}

/// The hosts a monitor logging in is told about: the last `MON_STATS` sent
/// for every host still online, in the short form a scheduler sends at login
/// (up to the `Load` line).
#[derive(Default)]
struct HostTable(BTreeMap<u32, Arc<Event>>);

impl HostTable {
    fn note(&mut self, event: &Event) {
        if let Event::Stats { host_id, text } = event {
            if crate::standin::simulation::is_offline(event) {
                self.0.remove(host_id);
            } else {
                let login_form = HostStats {
                    load_avg1: None,
                    load_avg5: None,
                    load_avg10: None,
                    free_mem: None,
                    ..HostStats::parse(text)
                };
                self.0.insert(
                    *host_id,
                    Arc::new(Event::Stats {
                        host_id: *host_id,
                        text: login_form.to_text(),
                    }),
                );
            }
        }
    }

    fn burst(&self) -> Vec<Arc<Event>> {
        self.0.values().cloned().collect()
    }
}

/// Runs the simulation at its pace and hands each event to every monitor.
async fn feed(
    mut sim: Simulation,
    pace: Pace,
    tx: broadcast::Sender<Arc<Event>>,
    mut logins: mpsc::Receiver<oneshot::Sender<LoginReply>>,
    drained: Arc<Notify>,
    shutdown: CancellationToken,
) {
    let speed = match pace {
        Pace::RealTime => Some(1.0),
        Pace::PerSecond(rate) => Some(rate / sim.natural_rate(20_000)),
        Pace::Unlimited => None,
    };
    let mut hosts = HostTable::default();
    let start = Instant::now();
    let mut sent: u64 = 0;
    let login = |reply: oneshot::Sender<LoginReply>, hosts: &HostTable| {
        let _ = reply.send((hosts.burst(), tx.subscribe()));
    };
    loop {
        let (at_ms, event) = sim.step();
        let due = speed
            .filter(|s| s.is_finite() && *s > 0.0)
            .map(|s| later(start, played(at_ms, s)));
        loop {
            let waiting_for_readers =
                speed.is_none() && (tx.receiver_count() == 0 || tx.len() >= QUEUE / 2);
            let sleeping = due.is_some_and(|d| d > Instant::now());
            if !waiting_for_readers && !sleeping {
                break;
            }
            let notified = drained.notified();
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => {
                    let _ = tx.send(Arc::new(Event::End));
                    return;
                }
                reply = logins.recv() => match reply {
                    Some(reply) => login(reply, &hosts),
                    None => return,
                },
                _ = sleep_until(due.unwrap_or_else(Instant::now)), if sleeping => {}
                _ = notified, if waiting_for_readers => {}
            }
        }
        while let Ok(reply) = logins.try_recv() {
            login(reply, &hosts);
        }
        if shutdown.is_cancelled() {
            let _ = tx.send(Arc::new(Event::End));
            return;
        }
        hosts.note(&event);
        // No monitor listening is fine: a scheduler runs without monitors.
        let _ = tx.send(Arc::new(event));
        sent += 1;
        if sent % 256 == 0 {
            tokio::task::yield_now().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::frame::{parse_frame, FrameError, MAX_MSG_SIZE};
    use crate::protocol::handshake::handshake;
    use crate::protocol::{Message, MsgType};
    use bytes::BytesMut;
    use std::net::SocketAddr;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A minimal monitor: handshake, MON_LOGIN, then frames.
    struct TestMonitor {
        s: TcpStream,
        buf: BytesMut,
        version: u32,
    }

    impl TestMonitor {
        async fn connect(addr: SocketAddr, offer: u32) -> TestMonitor {
            let mut s = TcpStream::connect(addr).await.unwrap();
            let version = handshake(&mut s, offer).await.unwrap();
            let mut login = BytesMut::new();
            Message::MonLogin.encode(version, &mut login);
            s.write_all(&login).await.unwrap();
            TestMonitor {
                s,
                buf: BytesMut::new(),
                version,
            }
        }

        /// Reads frames until `stop` says so or the peer closes; returns
        /// their types.
        async fn read_until(&mut self, mut stop: impl FnMut(&Message<'_>) -> bool) -> Vec<MsgType> {
            let mut seen = Vec::new();
            loop {
                loop {
                    let (used, ty, done) = match parse_frame(&self.buf, MAX_MSG_SIZE) {
                        Ok((rest, raw)) => {
                            let msg = Message::decode(raw.ty, raw.body, self.version).unwrap();
                            assert!(!matches!(msg, Message::Unknown { .. }));
                            (self.buf.len() - rest.len(), raw.ty, stop(&msg))
                        }
                        Err(FrameError::Incomplete { .. }) => break,
                        Err(e) => panic!("{e}"),
                    };
                    let _ = self.buf.split_to(used);
                    seen.push(ty);
                    if done {
                        return seen;
                    }
                }
                if self.s.read_buf(&mut self.buf).await.unwrap() == 0 {
                    return seen;
                }
            }
        }
    }

    #[tokio::test]
    async fn a_monitor_gets_the_hosts_then_jobs_then_end_on_shutdown() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let trigger = shutdown.clone();
        let opts = DemoOptions {
            hosts: 12,
            seed: 1,
            pace: Pace::Unlimited,
            offer: 44,
            job_done: JobDoneType::Auto,
        };
        let server = tokio::spawn(serve_demo(listener, opts, shutdown));
        let mut m = TestMonitor::connect(addr, 43).await;
        assert_eq!(m.version, 43);
        let mut stats = 0;
        let first = m
            .read_until(|_| {
                stats += 1;
                stats == 12
            })
            .await;
        assert!(first.iter().all(|t| *t == MsgType::MON_STATS), "{first:?}");
        let mut begins = 0;
        let seen = m
            .read_until(|m| {
                begins += usize::from(matches!(m, Message::MonJobBegin(_)));
                begins >= 50
            })
            .await;
        assert!(seen.contains(&MsgType::MON_GET_CS));
        trigger.cancel();
        let rest = m.read_until(|m| matches!(m, Message::End)).await;
        assert_eq!(rest.last(), Some(&MsgType::END));
        let all: Vec<MsgType> = seen.into_iter().chain(rest).collect();
        assert!(all.contains(&MsgType::MON_JOB_DONE));
        assert!(!all.contains(&MsgType::JOB_DONE), "0x4D at protocol 43");
        server.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn a_demo_at_a_rate_too_slow_to_send_anything_still_serves_and_stops() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let trigger = shutdown.clone();
        let opts = DemoOptions {
            hosts: 3,
            seed: 1,
            pace: Pace::PerSecond(1e-300),
            offer: 44,
            job_done: JobDoneType::Auto,
        };
        let server = tokio::spawn(serve_demo(listener, opts, shutdown));
        let mut m = TestMonitor::connect(addr, 44).await;
        trigger.cancel();
        // What happens at time 0 may go out; nothing after it is due
        // before the end of time.
        let seen = m.read_until(|m| matches!(m, Message::End)).await;
        assert_eq!(seen.last(), Some(&MsgType::END));
        server
            .await
            .unwrap()
            .expect("the simulation ran to the shutdown");
    }

    #[test]
    fn job_ends_go_out_as_a_release_or_git_master_would_send_them() {
        assert_eq!(JobDoneType::Auto.code(43), MsgType::MON_JOB_DONE);
        assert_eq!(JobDoneType::Auto.code(44), MsgType::JOB_DONE);
        assert_eq!(JobDoneType::Mon.code(44), MsgType::MON_JOB_DONE);
        assert_eq!(JobDoneType::Job.code(21), MsgType::JOB_DONE);
    }

    #[test]
    fn the_login_burst_has_the_short_stats_of_online_hosts() {
        let mut table = HostTable::default();
        for (host_id, text) in [
            (
                2,
                "Name:b\nLoad:5\nLoadAvg1:1\nLoadAvg5:1\nLoadAvg10:1\nFreeMem:9\n",
            ),
            (1, "Name:a\nLoad:0\n"),
            (3, "Name:c\nLoad:0\n"),
            (3, "State:Offline\n"),
        ] {
            table.note(&Event::Stats {
                host_id,
                text: text.into(),
            });
        }
        let burst: Vec<Event> = table.burst().iter().map(|e| (**e).clone()).collect();
        assert_eq!(
            burst,
            vec![
                Event::Stats {
                    host_id: 1,
                    text: "Name:a\nLoad:0\n".into()
                },
                Event::Stats {
                    host_id: 2,
                    text: "Name:b\nLoad:5\n".into()
                },
            ]
        );
    }
}
