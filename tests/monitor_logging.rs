//! What the reconnect loop logs and how it paces itself, against a fake
//! scheduler that accepts and closes at once, in paused time: delays grow
//! (exponential backoff with jitter) and the repeated failure is one
//! warning, the repeats only at debug level.
//!
//! Alone in its own test binary: `tracing` caches which call sites are
//! enabled globally, so a subscriber set for one test thread can miss
//! events while other tests run in parallel threads.

mod support;

use icewatch::monitor::{ConnectOptions, Target};
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::monitor::*;
use support::scheduler::*;

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
    m.stop().await;
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    let warnings = text.lines().filter(|l| l.contains(" WARN ")).count();
    let repeats = text.lines().filter(|l| l.contains("again: ")).count();
    assert_eq!(warnings, 1, "one warning for one cause:\n{text}");
    assert!(repeats >= 5, "repeats at debug level:\n{text}");
    assert!(text.contains("127.0.0.1"), "{text}");
}
