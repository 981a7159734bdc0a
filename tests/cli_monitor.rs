//! `icewatch monitor` at start against scripted schedulers: a slow one (an
//! idle real scheduler answers a new connection's handshake only between
//! waits of up to 36 s) is waited for, with a word on stderr, over a single
//! connection that then is the live session; a peer that answers like a
//! daemon is named so and left. Waits are on lines and scheduler events,
//! never on time.

mod support;

use std::time::Duration;
use support::command::Running;
use support::scheduler::{end, host, Event, FakeScheduler, Step};

/// Events of `sched` until `want`, all of them.
async fn events_until(sched: &mut FakeScheduler, want: Event) -> Vec<Event> {
    let mut seen = Vec::new();
    loop {
        let (_, event) = tokio::time::timeout(support::command::PATIENCE, sched.next_event())
            .await
            .expect("the scheduler's next event in time");
        seen.push(event.clone());
        if event == want {
            return seen;
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn monitor_waits_for_a_slow_scheduler_says_so_and_keeps_that_one_session() {
    // Longer than the five seconds the start allowed before.
    let mut sched = FakeScheduler::start(vec![vec![
        Step::Wait(Duration::from_secs(6)),
        Step::Handshake(43),
        Step::Send(host(1, "slowpoke", 2, false)),
        Step::Hold,
    ]])
    .await;
    let addr = sched.addr().to_string();
    let mut monitor = Running::start(&["monitor", &addr, "--listen", "127.0.0.1:0"]);
    let waiting = tokio::task::block_in_place(|| {
        monitor.stderr_until(|l| l.contains("waiting for the scheduler"))
    });
    assert!(waiting.contains(&addr), "{waiting}");
    let url = tokio::task::block_in_place(|| monitor.stdout_line());
    assert!(url.contains("http://127.0.0.1:"), "{url}");
    assert_eq!(
        events_until(&mut sched, Event::LoggedIn(0, 43)).await,
        [Event::Accepted(0), Event::LoggedIn(0, 43)]
    );
    // The page's session is that same connection: when the monitor is
    // stopped, that is the connection it closes, and it never opened
    // another one.
    monitor.signal("INT");
    assert!(tokio::task::block_in_place(|| monitor.wait()).success());
    assert_eq!(
        events_until(&mut sched, Event::ClientClosed(0)).await,
        [Event::ClientClosed(0)]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn monitor_pointed_at_a_daemon_says_it_is_no_scheduler_and_exits() {
    let sched = FakeScheduler::start(vec![vec![
        Step::Handshake(43),
        Step::Send(end()),
        Step::Close,
    ]])
    .await;
    let addr = sched.addr().to_string();
    let mut monitor = Running::start(&["monitor", &addr, "--listen", "127.0.0.1:0"]);
    let status = tokio::task::block_in_place(|| monitor.wait());
    assert_eq!(status.code(), Some(1));
    let stderr = monitor.rest_of_stderr();
    let last = stderr.last().unwrap();
    assert!(
        last.starts_with("error: ")
            && last.contains("answers like an icecream daemon")
            && last.contains("port 8765"),
        "{last}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn dump_goes_on_across_a_scheduler_restart_and_marks_it_unless_once() {
    let scripts = vec![
        vec![
            Step::Handshake(43),
            Step::Send(host(1, "before", 2, false)),
            Step::Close,
        ],
        vec![
            Step::Handshake(42),
            Step::Send(host(1, "after", 3, false)),
            Step::Hold,
        ],
    ];
    let sched = FakeScheduler::start(scripts.clone()).await;
    let addr = sched.addr().to_string();
    let mut dump = Running::start(&["dump", &addr]);
    let lines: Vec<serde_json::Value> = tokio::task::block_in_place(|| {
        (0..3)
            .map(|_| serde_json::from_str(&dump.stdout_line()).unwrap())
            .collect()
    });
    assert_eq!(lines[0]["type"], "MON_STATS");
    assert_eq!(lines[0]["stats"]["Name"], "before");
    assert_eq!(lines[1]["session"], 2);
    assert_eq!(lines[1]["protocol"], 42);
    assert!(lines[1].get("type").is_none(), "{}", lines[1]);
    assert_eq!(lines[2]["stats"]["Name"], "after");
    dump.signal("INT");
    assert!(tokio::task::block_in_place(|| dump.wait()).success());

    let sched = FakeScheduler::start(scripts).await;
    let addr = sched.addr().to_string();
    let mut once = Running::start(&["dump", &addr, "--once"]);
    let status = tokio::task::block_in_place(|| once.wait());
    assert!(status.success());
    let stdout = once.rest_of_stdout();
    assert_eq!(stdout.len(), 1, "{stdout:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn record_goes_on_across_a_scheduler_restart_and_marks_the_new_session() {
    let sched = FakeScheduler::start(vec![
        vec![
            Step::Handshake(43),
            Step::Send(host(1, "before", 2, false)),
            Step::Close,
        ],
        vec![
            Step::Handshake(42),
            Step::Send(host(1, "after", 3, false)),
            Step::Hold,
        ],
    ])
    .await;
    let dir = support::command::scratch_dir("record_across_restart");
    let file = dir.join("night.icwr");
    let addr = sched.addr().to_string();
    let file_arg = file.to_str().unwrap();
    let mut record = Running::start(&["record", &addr, "-o", file_arg, "--count", "2"]);
    assert!(tokio::task::block_in_place(|| record.wait()).success());
    let dumped = support::command::stdout_text(&support::command::dump_capture(&file).success());
    let lines: Vec<serde_json::Value> = dumped
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "{dumped}");
    assert_eq!(lines[0]["stats"]["Name"], "before");
    assert_eq!(
        (&lines[1]["session"], &lines[1]["protocol"]),
        (&2.into(), &42.into())
    );
    assert_eq!(lines[2]["stats"]["Name"], "after");
}
