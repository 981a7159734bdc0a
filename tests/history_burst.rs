//! The history under a burst: a connection that applies batches as fast as
//! it can, far more finished jobs than the state keeps (`--history`, 10,000
//! by default) before the database could take them. Every finished job
//! must reach the database, or be counted as lost.

use icewatch::history::{History, HistoryOptions, Store, MAX_BATCH};
use icewatch::monitor::{self, lock_state, Changed, SharedState, State, StateOptions, MAX_HOLD};
use icewatch::standin::simulation::Simulation;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// A new database in a folder of its own.
fn database(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("history.sqlite")
}

/// A state made with `opts` and its history, kept in a new database
/// (its path is returned).
fn kept_in_a_new_database(
    name: &str,
    opts: StateOptions,
) -> (PathBuf, SharedState, Changed, History) {
    let path = database(name);
    let state: SharedState = Arc::new(Mutex::new(State::new(opts)));
    let changed = monitor::changed();
    let store = Store::open(&path).unwrap();
    let history = History::start(store, state.clone(), &changed, HistoryOptions::default());
    (path, state, changed, history)
}

/// The jobs in the database at `path`.
fn rows(path: &Path) -> u64 {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.query_row("SELECT count(*) FROM jobs", [], |r| r.get(0))
        .unwrap()
}

#[tokio::test(flavor = "current_thread")]
async fn a_burst_of_six_times_the_states_history_reaches_the_database_whole() {
    let opts = StateOptions::default();
    let kept = opts.history_limit as u64;
    let (path, state, changed, history) = kept_in_a_new_database("history-burst", opts);
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

    assert_eq!(
        (rows(&path), status.lost()),
        (done, 0),
        "jobs in the database and jobs lost, of {done} finished"
    );
}

/// One read of the socket can bring more finished jobs than `--history`
/// keeps, applied under one lock before any reader runs; and more than
/// the writer may hold in memory. The state's history holds them for the
/// database's reader until it has taken them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_in_one_batch_waits_in_the_states_history_for_the_database() {
    let opts = StateOptions {
        history_limit: 100,
        ..StateOptions::default()
    };
    let (path, state, changed, history) = kept_in_a_new_database("history-burst-one-batch", opts);
    let status = history.status();

    let start = monitor::now_ms();
    let mut sim = Simulation::new(200, 1);
    let burst = 6 * MAX_BATCH as u64;
    assert!(burst < MAX_HOLD as u64);
    let done = {
        let mut state = lock_state(&state);
        state.scheduler_connected("sched:8765".into(), 44, start);
        let mut page = state.follow();
        let first = state.next_finished();
        while state.next_finished() - first < burst {
            let (at, event) = sim.step();
            state.apply(&event.message(0), start + at);
        }
        assert_eq!(state.history().len(), 100, "the page sees --history");
        let changes = state.changes(&mut page);
        assert_eq!(
            state.history_since(changes.done.start).count(),
            100,
            "and its diff is as long, the held jobs are the database's"
        );
        state.unfollow(page);
        state.next_finished() - first
    };
    changed.send_modify(|()| {});
    // The reader takes what the writer has room for, and is woken for
    // the rest as the writer commits, until the state holds no more than
    // --history: all taken before the stop (which would take the rest).
    let held = || {
        let state = lock_state(&state);
        state.next_finished() - state.first_finished()
    };
    while held() > 100 {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    history.stop().await;
    assert_eq!(
        (rows(&path), status.lost()),
        (done, 0),
        "jobs in the database and jobs lost, of {done} finished"
    );
}

/// `load e2e`'s burst (317,093 finished jobs in a fraction of a second) at
/// the default `--history`, while the database takes nothing at all
/// (another connection holds its write lock, as a writer given no CPU
/// would): more finished jobs than the state may hold for the database
/// (`--history` + `MAX_HOLD`) wait, packed, for the writer, and every one
/// is written once the lock goes.
#[tokio::test(flavor = "current_thread")]
async fn a_burst_past_what_the_state_holds_waits_whole_for_a_database_that_takes_nothing() {
    let opts = StateOptions::default();
    let kept = opts.history_limit as u64;
    let (path, state, changed, history) = kept_in_a_new_database("history-burst-locked", opts);
    let status = history.status();
    let lock = rusqlite::Connection::open(&path).unwrap();
    lock.execute_batch("BEGIN IMMEDIATE").unwrap();

    let burst = (kept + MAX_HOLD as u64) * 6 / 5;
    let start = monitor::now_ms();
    let mut sim = Simulation::new(200, 1);
    lock_state(&state).scheduler_connected("sched:8765".into(), 44, start);
    let first = lock_state(&state).next_finished();
    let done = loop {
        let done = {
            let mut state = lock_state(&state);
            for _ in 0..2_000 {
                let (at, event) = sim.step();
                state.apply(&event.message(0), start + at);
            }
            state.next_finished() - first
        };
        changed.send_modify(|()| {});
        tokio::task::yield_now().await;
        if done >= burst {
            break done;
        }
    };
    assert_eq!((status.written(), status.lost()), (0, 0));

    lock.execute_batch("ROLLBACK").unwrap();
    drop(lock);
    history.stop().await;
    assert_eq!(
        (rows(&path), status.lost()),
        (done, 0),
        "jobs in the database and jobs lost, of {done} finished"
    );
}
