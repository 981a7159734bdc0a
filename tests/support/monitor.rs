//! The library's monitor as `icewatch monitor` runs it (`connection::run`
//! feeding a `State`) against a [`FakeScheduler`], and waiting on a
//! state's changes without polling.

use super::scheduler::{Event, FakeScheduler, Script};
use icewatch::monitor::{
    changed, lock_state, run, Changed, ConnectOptions, SharedState, State, StateOptions, Target,
};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;

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

/// Every host the state knows, as (id, online), by id.
pub fn hosts_by_id(st: &State) -> Vec<(u32, bool)> {
    let mut hosts: Vec<_> = st.hosts().map(|h| (h.id, h.online)).collect();
    hosts.sort();
    hosts
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
