//! The history under a burst: a connection that applies batches as fast as
//! it can, far more finished jobs than the state keeps (`--history`, 10,000
//! by default) before the database could take them. Every finished job
//! must reach the database, or be counted as lost.

use icewatch::history::{History, HistoryOptions, Store};
use icewatch::monitor::{self, lock_state, SharedState, State, StateOptions};
use icewatch::standin::simulation::Simulation;
use std::path::Path;
use std::sync::{Arc, Mutex};

#[tokio::test(flavor = "current_thread")]
async fn a_burst_of_six_times_the_states_history_reaches_the_database_whole() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("history-burst");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("history.sqlite");
    let opts = StateOptions::default();
    let kept = opts.history_limit as u64;
    let state: SharedState = Arc::new(Mutex::new(State::new(opts)));
    let changed = monitor::changed();
    let store = Store::open(&path).unwrap();
    let history = History::start(store, state.clone(), &changed, HistoryOptions::default());
    let status = history.status();

    // The connection: a batch of messages under the lock, a wakeup, and on
    // to the next batch; the other tasks run between batches, as they do
    // on a runtime of one thread. The database's writer is a thread of
    // its own and goes at its own pace.
    let start = monitor::now_ms();
    let mut sim = Simulation::new(200, 1);
    lock_state(&state).scheduler_connected("sched:8765".into(), 44, start);
    // Counts the jobs that enter the state's history.
    let mut counter = lock_state(&state).follow();
    let mut done = 0;
    while done < 6 * kept {
        {
            let mut state = lock_state(&state);
            for _ in 0..2_000 {
                let (at, event) = sim.step();
                state.apply(&event.message(0), start + at);
            }
            let changes = state.changes(&mut counter);
            assert!(!changes.lagged);
            done += changes.done.end - changes.done.start;
        }
        changed.send_modify(|()| {});
        tokio::task::yield_now().await;
    }
    lock_state(&state).unfollow(counter);
    history.stop().await;

    let conn = rusqlite::Connection::open(&path).unwrap();
    let rows: u64 = conn
        .query_row("SELECT count(*) FROM jobs", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        (rows, status.lost()),
        (done, 0),
        "jobs in the database and jobs lost, of {done} finished"
    );
}
