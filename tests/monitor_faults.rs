//! Everything a scheduler connection can do wrong, played by a scripted fake
//! scheduler over real TCP on 127.0.0.1, with tokio's clock paused so that
//! timeouts and backoff take no real time: a close inside a frame, a length
//! above the limit, unknown types and undecodable bodies, garbage and
//! stalled handshakes, END, a reset, silence, and a scheduler that keeps
//! failing. Each time: no panic, no hang, one log line for the failure, and
//! after the reconnect exactly the new session's hosts.
//!
//! Every script after the last repeats the last one, a working scheduler,
//! so assertions hold even if a loaded machine makes the client retry more.

mod support;

use icewatch::monitor::{lock_state, run, ConnectOptions, SharedState, State, Target};
use icewatch::protocol::{Message, MsgType};
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::*;
use tokio::sync::{oneshot, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// A monitor running against a fake scheduler.
struct Monitor {
    sched: FakeScheduler,
    state: SharedState,
    changed: Arc<Notify>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Monitor {
    async fn start(scripts: Vec<Script>) -> Monitor {
        let sched = FakeScheduler::start(scripts).await;
        let mut opts = ConnectOptions::new(Target::Address {
            host: "127.0.0.1".into(),
            port: sched.port(),
        });
        opts.handshake_timeout = HANDSHAKE_TIMEOUT;
        opts.idle_timeout = IDLE_TIMEOUT;
        opts.backoff_min = Duration::from_millis(100);
        opts.backoff_max = Duration::from_secs(2);
        Monitor::start_with(sched, opts).await
    }

    async fn start_with(sched: FakeScheduler, opts: ConnectOptions) -> Monitor {
        let state = shared_state();
        let changed = Arc::new(Notify::new());
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
    async fn until(&self, what: &str, cond: impl FnMut(&State) -> bool) {
        tokio::time::timeout(
            Duration::from_secs(3600),
            wait_until(&self.state, &self.changed, cond),
        )
        .await
        .unwrap_or_else(|_| panic!("never: {what}; {:?}", lock_state(&self.state).scheduler()));
    }

    /// Waits until a session ends with an error containing `cause`.
    async fn until_lost(&self, cause: &str) -> String {
        self.until(cause, |st| {
            let s = st.scheduler();
            !s.online && s.error.as_deref().is_some_and(|e| e.contains(cause))
        })
        .await;
        lock_state(&self.state).scheduler().error.clone().unwrap()
    }

    async fn event(&mut self, want: Event) -> Instant {
        tokio::time::timeout(Duration::from_secs(3600), self.sched.wait_for(want.clone()))
            .await
            .unwrap_or_else(|_| panic!("never: {want:?}"))
    }

    /// The working session's hosts, and only them, once it is up.
    async fn recovers(mut self) {
        self.until("the working session", |st| {
            st.scheduler().online && st.hosts().count() == 2
        })
        .await;
        {
            let st = lock_state(&self.state);
            st.check_invariants();
            let mut hosts: Vec<_> = st.hosts().map(|h| (h.id, h.online)).collect();
            hosts.sort();
            assert_eq!(
                hosts,
                [(21, true), (22, true)],
                "no ghost of the failed session"
            );
            let t = st.totals();
            assert_eq!((t.hosts_online, t.total_slots, t.active), (2, 5, 0));
            assert!(st.scheduler().error.is_none());
        }
        self.stop.take().unwrap().send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(3600), &mut self.task)
            .await
            .expect("run ends on shutdown")
            .unwrap();
    }
}

fn working() -> Script {
    vec![
        Step::Handshake(43),
        Step::Send(concat(&[
            host(21, "good1", 2, false),
            host(22, "good2", 3, true),
        ])),
        Step::Hold,
    ]
}

fn early_host() -> Vec<u8> {
    host(1, "early", 4, false)
}

#[tokio::test(start_paused = true)]
async fn a_close_inside_a_frame_ends_the_session_and_the_next_one_starts_clean() {
    let cut = host(2, "cut", 1, false);
    let m = Monitor::start(vec![
        vec![
            Step::Handshake(43),
            Step::Send(concat(&[early_host(), cut[..cut.len() / 2].to_vec()])),
            Step::Close,
        ],
        working(),
    ])
    .await;
    let error = m.until_lost("in the middle of a frame").await;
    assert!(error.starts_with("scheduler 127.0.0.1:"), "{error}");
    {
        let st = lock_state(&m.state);
        let hosts: Vec<_> = st.hosts().map(|h| (h.id, h.online)).collect();
        assert_eq!(
            hosts,
            [(1, false)],
            "the whole frame applied, shown offline"
        );
    }
    m.recovers().await;
}

#[tokio::test(start_paused = true)]
async fn a_length_above_the_limit_ends_the_session_without_waiting_for_the_body() {
    let mut huge = (1u32 << 20).wrapping_add(1).to_be_bytes().to_vec();
    huge.extend_from_slice(&MsgType::MON_STATS.0.to_be_bytes());
    let mut m = Monitor::start(vec![
        vec![
            Step::Handshake(43),
            Step::Send(concat(&[early_host(), huge])),
            Step::Hold,
        ],
        working(),
    ])
    .await;
    let error = m.until_lost("exceeds the maximum").await;
    assert!(error.contains("frame length 1048577"), "{error}");
    // The scheduler never sent the body: the client closed on the length.
    m.event(Event::ClientClosed(0)).await;
    m.recovers().await;
}

#[tokio::test(start_paused = true)]
async fn unknown_types_and_undecodable_bodies_are_skipped_and_the_session_goes_on() {
    let unknown = frame(
        &Message::Unknown {
            ty: MsgType(0x99),
            body: b"from a newer scheduler",
        },
        43,
    );
    let mut short_begin = 10u32.to_be_bytes().to_vec();
    short_begin.extend_from_slice(&MsgType::MON_JOB_BEGIN.0.to_be_bytes());
    short_begin.extend_from_slice(&[0, 0, 0, 1, 0, 0]);
    let m = Monitor::start(vec![vec![
        Step::Handshake(43),
        Step::Send(concat(&[unknown, short_begin, host(21, "good1", 2, false)])),
        Step::Send(host(22, "good2", 3, true)),
        Step::Hold,
    ]])
    .await;
    // good2 comes after the odd frames: the session went on past them.
    m.until("both hosts", |st| st.hosts().count() == 2).await;
    {
        let st = lock_state(&m.state);
        let t = st.totals();
        assert_eq!((t.invalid_messages, t.unknown_jobs), (1, 0));
    }
    m.recovers().await;
}

#[tokio::test(start_paused = true)]
async fn a_garbage_or_too_old_handshake_is_refused_and_retried() {
    let mut m = Monitor::start(vec![
        vec![
            Step::Send(b"HTTP/1.0 400 Bad Request\r\n\r\n".to_vec()),
            Step::Hold,
        ],
        vec![Step::Send(20u32.to_le_bytes().to_vec()), Step::Hold],
        working(),
    ])
    .await;
    let error = m.until_lost("not an icecream protocol version").await;
    assert!(error.starts_with("scheduler 127.0.0.1:"), "{error}");
    m.event(Event::ClientClosed(0)).await;
    m.until_lost("older than the oldest supported").await;
    m.event(Event::ClientClosed(1)).await;
    m.recovers().await;
}

#[tokio::test(start_paused = true)]
async fn a_stalled_handshake_times_out_closes_and_is_retried() {
    let mut m = Monitor::start(vec![
        vec![Step::Hold],
        vec![Step::Send(43u32.to_le_bytes().to_vec()), Step::Hold],
        working(),
    ])
    .await;
    let accepted = m.event(Event::Accepted(0)).await;
    let closed = m.event(Event::ClientClosed(0)).await;
    assert!(closed - accepted >= HANDSHAKE_TIMEOUT);
    m.until_lost("handshake timed out after 5s").await;
    // Half a handshake (the version word, never the confirmation) too.
    let accepted = m.event(Event::Accepted(1)).await;
    let closed = m.event(Event::ClientClosed(1)).await;
    assert!(closed - accepted >= HANDSHAKE_TIMEOUT);
    m.recovers().await;
}

#[tokio::test(start_paused = true)]
async fn end_from_the_scheduler_ends_the_session_at_once_and_nothing_after_it_counts() {
    let mut m = Monitor::start(vec![
        vec![
            Step::Handshake(43),
            Step::Send(concat(&[
                early_host(),
                end(),
                host(2, "after-end", 1, false),
            ])),
            Step::Hold,
        ],
        working(),
    ])
    .await;
    m.until_lost("going away (it sent END)").await;
    {
        let st = lock_state(&m.state);
        let hosts: Vec<_> = st.hosts().map(|h| h.id).collect();
        assert_eq!(hosts, [1]);
    }
    m.event(Event::ClientClosed(0)).await;
    m.recovers().await;
}

#[tokio::test(start_paused = true)]
async fn a_reset_connection_is_reported_and_retried() {
    let m = Monitor::start(vec![
        vec![Step::Handshake(43), Step::Send(early_host()), Step::Reset],
        working(),
    ])
    .await;
    m.until("the loss", |st| {
        !st.scheduler().online && st.scheduler().error.is_some()
    })
    .await;
    let error = lock_state(&m.state).scheduler().error.clone().unwrap();
    assert!(
        error.contains("reset") || error.contains("closed the connection"),
        "{error}"
    );
    m.recovers().await;
}

#[tokio::test(start_paused = true)]
async fn a_silent_scheduler_is_dropped_after_the_idle_timeout() {
    let mut m = Monitor::start(vec![
        vec![Step::Handshake(43), Step::Send(early_host()), Step::Hold],
        working(),
    ])
    .await;
    let logged_in = m.event(Event::LoggedIn(0, 43)).await;
    let closed = m.event(Event::ClientClosed(0)).await;
    assert!(closed - logged_in >= IDLE_TIMEOUT);
    m.until_lost("sent nothing for 30s").await;
    m.recovers().await;
}

/// Collects what `tracing` prints.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logs {
    type Writer = Logs;
    fn make_writer(&'a self) -> Logs {
        self.clone()
    }
}

#[tokio::test(start_paused = true)]
async fn a_failing_scheduler_is_retried_with_growing_delays_and_logged_once() {
    let logs = Logs::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .finish();
    let _log = tracing::subscriber::set_default(subscriber);

    let sched = FakeScheduler::start(vec![vec![Step::Close]]).await;
    let mut opts = ConnectOptions::new(Target::Address {
        host: "127.0.0.1".into(),
        port: sched.port(),
    });
    opts.backoff_min = Duration::from_secs(1);
    opts.backoff_max = Duration::from_secs(8);
    let mut m = Monitor::start_with(sched, opts).await;
    let mut accepted = Vec::new();
    for n in 0..7 {
        accepted.push(m.event(Event::Accepted(n)).await);
    }
    // Each delay is drawn from the upper half of a window that doubles: 1, 2, 4, 8, 8, 8 s.
    for (k, pair) in accepted.windows(2).enumerate() {
        let window = Duration::from_secs(1 << k.min(3));
        assert!(pair[1] - pair[0] >= window / 2, "attempt {k}");
    }
    m.until_lost("connection failed during the handshake").await;
    m.stop.take().unwrap().send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(3600), &mut m.task)
        .await
        .expect("run ends on shutdown, even while waiting to retry")
        .unwrap();
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    let warnings = text.lines().filter(|l| l.contains(" WARN ")).count();
    let repeats = text.lines().filter(|l| l.contains("again: ")).count();
    assert_eq!(warnings, 1, "one warning for one cause:\n{text}");
    assert!(repeats >= 5, "repeats at debug level:\n{text}");
    assert!(text.contains("127.0.0.1"), "{text}");
}
