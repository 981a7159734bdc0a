//! `State` driven message by message, without any I/O: the real captures,
//! a monitor joining mid-build, hosts leaving with jobs running, unknown
//! ids, bounds, rates, change sets and diffs, and a property test that
//! keeps every counter exact on arbitrary streams while a client rebuilt
//! from one snapshot plus the diffs stays equal to a fresh snapshot.

mod support;

use icewatch::monitor::{
    Changes, EndReason, JobState, State, StateOptions, FEED_LIMIT, MAX_ACTIVE_JOBS, MAX_HOSTS,
    OFFLINE_HOST_LIMIT,
};
use icewatch::protocol::stats::{HostStats, OFFLINE};
use icewatch::protocol::{JobDone, Language, Message};
use icewatch::publisher::delta::{Delta, Update};
use proptest::prelude::*;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use support::captures::{assert_basic_final_state_after, capture_frames, frames_in, CAPTURES};

const T0: u64 = 1_700_000_000_000;

/// The `MON_STATS` text of a host logging in.
fn host_text(name: &str, max_jobs: u32, no_remote: bool) -> Vec<u8> {
    let ip = format!("10.0.0.{max_jobs}");
    HostStats {
        features: Some(b"env_xz"),
        speed: Some(1.5),
        load: Some(10),
        ..HostStats::login(name, &ip, max_jobs, no_remote)
    }
    .to_text()
}

fn done(job_id: u32, exit_code: u32) -> Message<'static> {
    Message::MonJobDone(JobDone {
        job_id,
        exit_code,
        real_ms: 100,
        ..JobDone::default()
    })
}

fn connected() -> State {
    let mut st = State::new(StateOptions::default());
    st.scheduler_connected("127.0.0.1:8765".into(), 43, T0);
    st
}

/// The page's next message as JSON: a diff (`{}` if nothing changed), or
/// `{"snapshot": true}` when the page must read the whole state again.
fn next_diff(st: &mut State, page: &mut Delta) -> Value {
    match page.update(st) {
        Update::Nothing => json!({}),
        Update::Diff(diff) => serde_json::to_value(diff).unwrap(),
        Update::Snapshot => json!({"snapshot": true}),
    }
}

fn apply_all(st: &mut State, msgs: &[Message<'_>], now: u64) {
    for m in msgs {
        st.apply(m, now);
        st.check_invariants();
    }
}

#[test]
fn every_capture_applied_message_by_message_keeps_the_books_and_ends_exactly() {
    for &(_, file) in CAPTURES {
        let (agreed, stream) = capture_frames(file);
        let frames = frames_in(stream);
        let mut st = connected();
        let mut peak_links = 0;
        for frame in &frames {
            st.apply(&frame.decode(agreed).unwrap(), T0);
            st.check_invariants();
            peak_links = peak_links.max(st.links().count());
        }
        st.scheduler_connected("127.0.0.1:8765".into(), agreed, T0);
        // After a reconnect the hosts start over, under ids that are new or
        // another's; their counters go on by name: replay once more.
        for frame in &frames {
            st.apply(&frame.decode(agreed).unwrap(), T0);
        }
        let history: Vec<_> = st.history().map(|j| j.id).collect();
        assert_eq!(history.len(), 88);
        assert_eq!(history[..44], history[44..], "the history spans sessions");
        // localice compiled for itself, remote1 and remote2 for localice.
        assert_eq!(peak_links, 3);
        assert_basic_final_state_after(&st, agreed, 2);
        let sessions: Vec<u32> = st.history().map(|j| j.session()).collect();
        assert_eq!((sessions[0], sessions[43], sessions[44]), (1, 1, 2));
    }
}

#[test]
fn a_monitor_joining_mid_build_counts_unknown_jobs_and_keeps_going() {
    let mut st = connected();
    let (a, b) = (host_text("a", 2, false), host_text("b", 4, false));
    apply_all(
        &mut st,
        &[Message::mon_stats(1, &a), Message::mon_stats(2, &b)],
        T0,
    );
    apply_all(&mut st, &[Message::mon_job_begin(50, 2, 0)], T0 + 1);
    let job = st.job(50).unwrap();
    assert_eq!(
        (job.state, job.client, job.server, &*job.file(), job.lang),
        (JobState::Compiling, None, Some(2), "", None)
    );
    assert_eq!(st.host(2).unwrap().active, 1);
    assert_eq!(st.totals().busy_slots, 1);
    assert_eq!(st.links().count(), 0, "no submitter, no link");
    apply_all(
        &mut st,
        &[done(50, 0), done(51, 0), Message::job_local_done(52)],
        T0 + 2,
    );
    let t = st.totals();
    assert_eq!((t.unknown_jobs, t.jobs_finished, t.active), (3, 1, 0));
    assert_eq!(st.host(2).unwrap().compiled, 1);
    assert_eq!(st.host(2).unwrap().active, 0);
}

#[test]
fn a_host_going_offline_finishes_its_jobs_and_the_schedulers_exit_255_reports_are_expected() {
    let mut st = connected();
    let (h1, h2, h3) = (
        host_text("h1", 1, true),
        host_text("h2", 2, false),
        host_text("h3", 3, false),
    );
    apply_all(
        &mut st,
        &[
            Message::mon_stats(1, &h1),
            Message::mon_stats(2, &h2),
            Message::mon_stats(3, &h3),
        ],
        T0,
    );
    apply_all(
        &mut st,
        &[
            Message::mon_get_cs(10, 1, "a.c", Language::CXX),
            Message::mon_job_begin(10, 2, 0),
            Message::mon_get_cs(11, 1, "b.c", Language::CXX),
            Message::mon_job_begin(11, 3, 0),
            Message::mon_get_cs(12, 2, "c.c", Language::CXX),
            Message::mon_local_job_begin(13, 2, 0, "out.o"),
        ],
        T0 + 10,
    );
    assert_eq!(st.totals().total_slots, 6);
    assert_eq!(st.host(2).unwrap().active, 2);
    apply_all(&mut st, &[Message::mon_stats(2, OFFLINE)], T0 + 20);
    let h2 = st.host(2).unwrap();
    assert!(!h2.online);
    assert_eq!((h2.active, h2.pending, h2.failed), (0, 0, 0));
    assert_eq!(h2.compiled, 0, "job 10 was cut short, not compiled");
    let ended: BTreeMap<u32, (JobState, Option<EndReason>, Option<i32>)> = st
        .history()
        .map(|j| (j.id, (j.state, j.reason, j.exit_code)))
        .collect();
    let left = Some(EndReason::HostLeft);
    assert_eq!(
        ended,
        BTreeMap::from([
            (10, (JobState::CutShort, left, None)),
            (12, (JobState::CutShort, left, None)),
            (13, (JobState::LocalFinished, left, None)),
        ])
    );
    assert_eq!(st.job(11).unwrap().state, JobState::Compiling);
    let t = st.totals();
    assert_eq!(
        (
            t.hosts_online,
            t.total_slots,
            t.active,
            t.jobs_failed,
            t.jobs_cut_short,
            t.local_jobs_finished,
            t.success_ratio
        ),
        (2, 4, 1, 0, 2, 1, None),
        "jobs cut short are no compiler outcome"
    );
    assert_eq!((st.link(1, 2), st.link(1, 3)), (0, 1));
    assert_eq!(st.host(1).unwrap().failed, 0);
    // What the scheduler sends next for those jobs is no surprise, for
    // remote and local jobs alike.
    apply_all(
        &mut st,
        &[done(10, 255), done(12, 255), Message::job_local_done(13)],
        T0 + 21,
    );
    let t = st.totals();
    assert_eq!(t.unknown_jobs, 0);
    assert_eq!(
        (t.jobs_failed, t.jobs_cut_short, t.local_jobs_finished),
        (0, 2, 1),
        "each job counted once"
    );
}

#[test]
fn messages_naming_unknown_hosts_are_counted_and_touch_no_host() {
    let mut st = connected();
    apply_all(
        &mut st,
        &[
            Message::mon_get_cs(1, 99, "x.c", Language::CXX),
            Message::mon_job_begin(1, 98, 0),
            done(1, 0),
            Message::mon_stats(97, OFFLINE),
        ],
        T0,
    );
    let t = st.totals();
    assert_eq!(
        (t.unknown_hosts, t.unknown_jobs, t.jobs_finished),
        (3, 0, 1)
    );
    assert_eq!(st.hosts().count(), 0);
    let job = st.history().next().unwrap();
    assert_eq!((job.client, job.server), (Some(99), Some(98)));
}

#[test]
fn the_history_keeps_only_the_newest_jobs() {
    let mut st = State::new(StateOptions {
        history_limit: 3,
        ..StateOptions::default()
    });
    st.scheduler_connected("s:1".into(), 43, T0);
    let h = host_text("h", 8, false);
    st.apply(&Message::mon_stats(1, &h), T0);
    for id in 1..=5 {
        apply_all(
            &mut st,
            &[
                Message::mon_local_job_begin(id, 1, 0, "out.o"),
                Message::job_local_done(id),
            ],
            T0,
        );
    }
    let ids: Vec<u32> = st.history().map(|j| j.id).collect();
    assert_eq!(ids, [3, 4, 5]);
    assert_eq!(st.totals().local_jobs_finished, 5);
}

#[test]
fn a_job_in_a_recycled_slot_carries_nothing_of_the_job_before_it() {
    let mut st = State::new(StateOptions {
        history_limit: 2,
        ..StateOptions::default()
    });
    st.scheduler_connected("s:1".into(), 43, T0);
    for id in 1..=2 {
        st.apply(
            &Message::mon_stats(id, &host_text(&format!("h{id}"), 4, false)),
            T0,
        );
    }
    let files: Vec<String> = (0..8)
        .map(|i| format!("src/{}.cpp", "long_name_".repeat(i % 3 + 1)))
        .collect();
    for (id, file) in (1..).zip(&files) {
        apply_all(
            &mut st,
            &[
                Message::mon_get_cs(id, 1, file, Language::CXX),
                Message::mon_job_begin(id, 2, 0),
                done(id, id % 2),
            ],
            T0 + u64::from(id),
        );
    }
    let history: Vec<(u32, String, Option<i32>)> = st
        .history()
        .map(|j| (j.id, j.file().into_owned(), j.exit_code))
        .collect();
    assert_eq!(
        history,
        [
            (7, files[6].clone(), Some(1)),
            (8, files[7].clone(), Some(0))
        ]
    );
    // Every slot has been used and freed; a new job takes one over.
    st.apply(
        &Message::mon_get_cs(100, 1, "new.c", Language::CXX),
        T0 + 100,
    );
    let job = st.job(100).expect("filed");
    assert_eq!(
        (&*job.file(), job.state, job.server, job.end_ms),
        ("new.c", JobState::Waiting, None, None)
    );
    assert!(job.exit_code.is_none() && job.stats.is_none());
    assert_eq!(job.start_ms, T0 + 100);
    // A MON_JOB_BEGIN for an id never requested is filed with no file.
    st.apply(&Message::mon_job_begin(200, 2, 0), T0 + 200);
    assert_eq!(st.job(200).map(|j| j.file_bytes()), Some(&b""[..]));
    st.check_invariants();
    assert_eq!(st.host(2).unwrap().compiled, 8);
}

/// The moment the anchors in `shared/anchors` show: other monitors leave the
/// no-remote host's slots and jobs out of one total and not the other.
#[test]
fn jobs_that_never_end_keep_their_file_names_while_a_hundred_thousand_pass() {
    // One job in a thousand never ends: its name pins the chunk of names it
    // was written to, until the store empties such chunks into a new one.
    let mut st = connected();
    let (a, b) = (host_text("a", 8, false), host_text("b", 8, false));
    apply_all(
        &mut st,
        &[Message::mon_stats(1, &a), Message::mon_stats(2, &b)],
        T0,
    );
    let file = |id: u32| format!("/home/build/project/src/module{}/source_{id}.cpp", id % 97);
    for id in 1..=100_000u32 {
        let name = file(id);
        st.apply(
            &Message::mon_get_cs(id, 1, &name, Language::CXX),
            T0 + u64::from(id),
        );
        if id % 1000 != 0 {
            st.apply(&Message::mon_job_begin(id, 2, 0), T0 + u64::from(id));
            st.apply(&done(id, 0), T0 + u64::from(id));
        }
    }
    st.check_invariants();
    assert_eq!(st.jobs().count(), 100);
    for job in st.jobs() {
        assert_eq!(job.file(), file(job.id), "job {}", job.id);
    }
    let newest = st.history().next_back().expect("a history");
    assert_eq!((newest.id, newest.file()), (99_999, file(99_999).into()));
}

#[test]
fn busy_and_total_slots_include_no_remote_hosts_so_they_agree_with_the_host_table() {
    let mut st = connected();
    let hosts = [
        ("localice", 2, true),
        ("remote1", 2, false),
        ("remote2", 3, false),
        ("remote3", 1, false),
        ("remote4", 2, false),
        ("remote5", 3, false),
    ];
    let texts: Vec<Vec<u8>> = hosts.iter().map(|&(n, m, r)| host_text(n, m, r)).collect();
    for (i, t) in texts.iter().enumerate() {
        st.apply(&Message::mon_stats(i as u32 + 1, t), T0);
    }
    let mut job = 0;
    let files: Vec<String> = (0..20).map(|i| format!("src{i}.c")).collect();
    for (server, &(_, slots, _)) in hosts.iter().enumerate().skip(1) {
        for _ in 0..slots {
            job += 1;
            apply_all(
                &mut st,
                &[
                    Message::mon_get_cs(job, 1, &files[job as usize], Language::CXX),
                    Message::mon_job_begin(job, server as u32 + 1, 0),
                ],
                T0,
            );
        }
    }
    for _ in 0..4 {
        job += 1;
        apply_all(
            &mut st,
            &[Message::mon_get_cs(
                job,
                1,
                &files[job as usize],
                Language::CXX,
            )],
            T0,
        );
    }
    apply_all(
        &mut st,
        &[
            Message::mon_local_job_begin(100, 1, 0, "out.o"),
            Message::mon_local_job_begin(101, 1, 0, "out.o"),
        ],
        T0,
    );
    let t = st.totals();
    assert_eq!(
        (
            t.hosts_online,
            t.total_slots,
            t.busy_slots,
            t.active,
            t.pending,
            t.local_active
        ),
        (6, 13, 13, 13, 4, 2)
    );
    let table_busy: u64 = st.hosts().map(|h| u64::from(h.active)).sum();
    let table_slots: u64 = st.hosts().map(|h| u64::from(h.max_jobs)).sum();
    assert_eq!((table_busy, table_slots), (t.busy_slots, t.total_slots));
    let localice = st.host(1).unwrap();
    assert_eq!(
        (
            localice.active,
            localice.pending,
            localice.submitted,
            localice.local_jobs
        ),
        (2, 4, 15, 2)
    );
    let links: Vec<_> = {
        let mut l: Vec<_> = st.links().collect();
        l.sort();
        l
    };
    assert_eq!(
        links,
        [
            ((1, 2), 2),
            ((1, 3), 3),
            ((1, 4), 1),
            ((1, 5), 2),
            ((1, 6), 3)
        ]
    );
}

#[test]
fn jobs_per_minute_slides_with_the_clock_and_success_ratio_counts_remote_ends() {
    let mut st = connected();
    let h = host_text("h", 4, false);
    st.apply(&Message::mon_stats(1, &h), T0);
    assert_eq!(st.totals().success_ratio, None);
    apply_all(
        &mut st,
        &[
            Message::mon_get_cs(1, 1, "a.c", Language::CXX),
            Message::mon_job_begin(1, 1, 0),
            done(1, 0),
            Message::mon_get_cs(2, 1, "b.c", Language::CXX),
            Message::mon_job_begin(2, 1, 0),
            done(2, 0),
            Message::mon_get_cs(3, 1, "c.c", Language::CXX),
            Message::mon_job_begin(3, 1, 0),
            done(3, 1),
            Message::mon_local_job_begin(4, 1, 0, "out.o"),
            Message::job_local_done(4),
        ],
        T0 + 500,
    );
    let t = st.totals();
    assert_eq!(t.jobs_per_minute, 4.0);
    assert_eq!(t.success_ratio, Some(2.0 / 3.0));
    assert!(!st.tick(T0 + 30_000), "still inside the minute");
    assert_eq!(st.totals().jobs_per_minute, 4.0);
    assert!(st.tick(T0 + 61_000), "the minute has passed");
    assert_eq!(st.totals().jobs_per_minute, 0.0);
    assert!(!st.tick(T0 + 1_000), "the clock never runs backwards");
}

#[test]
fn the_feed_names_only_what_changed_and_diffs_read_the_state_as_it_is_now() {
    let mut st = connected();
    let mut page = Delta::follow(&mut st);
    let (a, b) = (host_text("a", 2, false), host_text("b", 4, false));
    apply_all(
        &mut st,
        &[Message::mon_stats(1, &a), Message::mon_stats(2, &b)],
        T0,
    );
    let d = next_diff(&mut st, &mut page);
    assert_eq!(d["hosts"].as_array().unwrap().len(), 2);
    assert!(d.get("scheduler").is_none(), "the page saw it online");
    assert_eq!(d["totals"]["total_slots"], 6);
    assert_eq!(next_diff(&mut st, &mut page), json!({}));

    // A repeated MON_STATS changes nothing.
    apply_all(&mut st, &[Message::mon_stats(1, &a)], T0);
    assert_eq!(next_diff(&mut st, &mut page), json!({}));

    // A second reader, following from here, at its own pace.
    let mut other = st.follow();
    apply_all(
        &mut st,
        &[
            Message::mon_get_cs(5, 1, "x.c", Language::CXX),
            Message::mon_job_begin(5, 2, 0),
        ],
        T0 + 1,
    );
    let c = st.changes(&mut other);
    assert_eq!((&c.hosts[..], &c.jobs[..]), (&[1, 2][..], &[5][..]));
    assert!(st.changes(&mut other).jobs.is_empty());
    let d = next_diff(&mut st, &mut page);
    assert_eq!(d["jobs"][0]["state"], "compiling");
    assert_eq!(d["links"], json!([{"from": 1, "to": 2, "active": 1}]));
    assert!(d.get("jobs_done").is_none() && d.get("hosts_removed").is_none());

    apply_all(&mut st, &[done(5, 0)], T0 + 2);
    let d = next_diff(&mut st, &mut page);
    assert!(
        d.get("jobs").is_none(),
        "finished jobs are only in jobs_done"
    );
    assert_eq!(d["jobs_done"][0]["id"], 5);
    assert_eq!(d["jobs_done"][0]["state"], "finished");
    assert_eq!(d["links"], json!([{"from": 1, "to": 2, "active": 0}]));
    assert_eq!(st.links().count(), 0, "a link at zero goes once announced");

    // The other reader took nothing since: it gets all of it at once.
    apply_all(
        &mut st,
        &[Message::mon_get_cs(6, 1, "y.c", Language::CXX)],
        T0 + 3,
    );
    let first = next_diff(&mut st, &mut page);
    assert_eq!(first["jobs"][0]["state"], "waiting");
    apply_all(
        &mut st,
        &[
            Message::mon_job_begin(6, 1, 0),
            Message::mon_stats(2, OFFLINE),
        ],
        T0 + 4,
    );
    let d = next_diff(&mut st, &mut page);
    assert_eq!(
        d["jobs"][0],
        json!({"id": 6, "server": 1, "server_name": "a", "state": "compiling", "start_ms": T0 + 4})
    );
    assert_eq!(d["hosts"][1]["online"], false);
    assert_eq!(d["totals"]["hosts_online"], 1);
    let c = st.changes(&mut other);
    assert_eq!(
        (&c.hosts[..], &c.jobs[..], c.done.clone()),
        (&[1, 2][..], &[6][..], 0..1),
        "job 5 only finished since this reader's last look"
    );
    st.unfollow(other);
}

#[test]
fn with_nobody_following_nothing_is_recorded_and_a_new_reader_starts_from_now() {
    let mut st = connected();
    apply_all(
        &mut st,
        &[Message::mon_stats(1, &host_text("a", 2, false))],
        T0,
    );
    let reader = st.follow();
    st.unfollow(reader);
    assert!(!st.followed());
    apply_all(
        &mut st,
        &[
            Message::mon_get_cs(5, 1, "x.c", Language::CXX),
            Message::mon_job_begin(5, 1, 0),
        ],
        T0 + 1,
    );
    let mut reader = st.follow();
    assert_eq!(
        st.changes(&mut reader),
        Changes {
            done: 0..0,
            ..Changes::default()
        }
    );
    apply_all(
        &mut st,
        &[Message::mon_get_cs(6, 1, "y.c", Language::CXX)],
        T0 + 2,
    );
    let c = st.changes(&mut reader);
    assert_eq!((&c.hosts[..], &c.jobs[..]), (&[1][..], &[6][..]));
    assert!(!c.lagged);
}

#[test]
fn a_new_session_drops_the_old_hosts_and_jobs_so_no_ghost_remains() {
    let mut st = connected();
    let (a, b) = (host_text("a", 2, false), host_text("b", 4, false));
    apply_all(
        &mut st,
        &[
            Message::mon_stats(1, &a),
            Message::mon_stats(2, &b),
            Message::mon_get_cs(5, 1, "x.c", Language::CXX),
            Message::mon_job_begin(5, 2, 0),
            done(4, 0),
        ],
        T0,
    );
    let mut page = Delta::follow(&mut st);
    st.scheduler_connected("127.0.0.1:8765".into(), 43, T0 + 5);
    st.check_invariants();
    assert_eq!(st.hosts().count(), 0);
    assert_eq!(st.jobs().count(), 0);
    let ended = st.history().last().unwrap();
    assert_eq!(
        (ended.id, ended.state, ended.reason, ended.exit_code),
        (5, JobState::CutShort, Some(EndReason::SchedulerLost), None)
    );
    assert_eq!(
        (ended.client_name(), ended.server_name(), ended.session()),
        (Some("a"), Some("b"), 1),
        "an ended job keeps its hosts' names and its session"
    );
    let t = st.totals();
    assert_eq!(
        (
            t.jobs_failed,
            t.jobs_cut_short,
            t.unknown_jobs,
            t.total_slots
        ),
        (0, 1, 1, 0),
        "counters go on across sessions"
    );
    assert_eq!(st.scheduler().reconnects, 1);
    assert_eq!(
        next_diff(&mut st, &mut page),
        json!({"snapshot": true}),
        "a new session: the page reads the whole state again"
    );
}

#[test]
fn losing_the_scheduler_shows_hosts_offline_and_ends_jobs_with_an_unknown_outcome() {
    let mut st = connected();
    let a = host_text("a", 2, false);
    apply_all(
        &mut st,
        &[
            Message::mon_stats(1, &a),
            Message::mon_local_job_begin(7, 1, 0, "out.o"),
            Message::mon_get_cs(8, 1, "w.c", Language::CXX),
        ],
        T0,
    );
    let mut page = Delta::follow(&mut st);
    st.scheduler_lost(
        "scheduler 127.0.0.1:8765 closed the connection".into(),
        T0 + 9,
    );
    st.check_invariants();
    assert!(st.hosts().all(|h| !h.online));
    let ended: Vec<_> = st
        .history()
        .map(|j| (j.id, j.state, j.reason, j.exit_code))
        .collect();
    let lost = Some(EndReason::SchedulerLost);
    assert_eq!(
        ended,
        [
            (7, JobState::LocalFinished, lost, None),
            (8, JobState::CutShort, lost, None)
        ]
    );
    let t = st.totals();
    assert_eq!(
        (
            t.active,
            t.pending,
            t.hosts_online,
            t.jobs_failed,
            t.jobs_cut_short,
            t.local_jobs_finished
        ),
        (0, 0, 0, 0, 1, 0)
    );
    let s = st.scheduler();
    assert!(!s.online);
    assert_eq!(s.since_ms, Some(T0 + 9));
    let d = next_diff(&mut st, &mut page);
    assert_eq!(d["scheduler"]["online"], false);
    assert_eq!(d["jobs_done"].as_array().map(Vec::len), Some(2));
    // The same failure again changes nothing.
    st.scheduler_lost(
        "scheduler 127.0.0.1:8765 closed the connection".into(),
        T0 + 20,
    );
    assert_eq!(next_diff(&mut st, &mut page), json!({}));
    assert_eq!(st.scheduler().since_ms, Some(T0 + 9));
}

#[test]
fn a_daemon_that_logs_in_again_replaces_its_offline_entry() {
    let mut st = connected();
    let r = host_text("remote2", 3, false);
    apply_all(
        &mut st,
        &[Message::mon_stats(3, &r), Message::mon_stats(3, OFFLINE)],
        T0,
    );
    let mut page = Delta::follow(&mut st);
    apply_all(&mut st, &[Message::mon_stats(7, &r)], T0 + 1);
    let ids: Vec<u32> = st.hosts().map(|h| h.id).collect();
    assert_eq!(ids, [7]);
    let d = next_diff(&mut st, &mut page);
    assert_eq!(d["hosts_removed"], json!([3]));
    assert_eq!(d["hosts"][0]["id"], 7);
}

#[test]
fn offline_hosts_are_kept_up_to_a_bound() {
    let mut st = connected();
    for id in 0..(OFFLINE_HOST_LIMIT as u32 + 50) {
        let t = host_text(&format!("h{id}"), 1, false);
        st.apply(&Message::mon_stats(id, &t), T0);
        st.apply(&Message::mon_stats(id, OFFLINE), T0);
    }
    st.check_invariants();
    assert_eq!(st.hosts().count(), OFFLINE_HOST_LIMIT);
    assert!(st.host(0).is_none() && st.host(OFFLINE_HOST_LIMIT as u32 + 49).is_some());
}

#[test]
fn a_stream_that_never_ends_its_jobs_or_announces_endless_hosts_stays_bounded() {
    let mut st = connected();
    let h = host_text("h", 4, false);
    st.apply(&Message::mon_stats(1, &h), T0);
    for id in 0..(MAX_ACTIVE_JOBS as u32 + 1000) {
        st.apply(&Message::mon_get_cs(id, 1, "f.c", Language::CXX), T0);
    }
    st.check_invariants();
    assert!(st.jobs().count() <= MAX_ACTIVE_JOBS);
    assert!(st.job(0).is_none(), "the oldest went first");
    assert!(st.job(MAX_ACTIVE_JOBS as u32 + 999).is_some());
    assert_eq!(st.host(1).unwrap().pending as usize, st.jobs().count());

    // So does one that only begins jobs nobody requested.
    let base = MAX_ACTIVE_JOBS as u32 + 1000;
    for id in base..base + MAX_ACTIVE_JOBS as u32 + 1000 {
        st.apply(&Message::mon_job_begin(id, 1, 0), T0);
    }
    st.check_invariants();
    assert!(st.jobs().count() <= MAX_ACTIVE_JOBS);

    for id in 0..(MAX_HOSTS as u32 + 10) {
        st.apply(&Message::mon_stats(id + 2, &h), T0);
    }
    assert_eq!(st.hosts().count(), MAX_HOSTS);
    assert_eq!(st.totals().unknown_hosts, 11);
    st.check_invariants();
}

#[test]
fn a_reader_that_never_reads_is_told_it_lagged_instead_of_the_feed_growing() {
    let mut st = connected();
    let h = host_text("h", 4, false);
    st.apply(&Message::mon_stats(1, &h), T0);
    let mut page = Delta::follow(&mut st);
    let mut id = 0;
    while id <= FEED_LIMIT as u32 + 10 {
        st.apply(&Message::mon_get_cs(id, 1, "f.c", Language::CXX), T0);
        st.apply(&Message::mon_job_begin(id, 1, 0), T0);
        st.apply(&done(id, 0), T0);
        id += 1;
    }
    assert_eq!(next_diff(&mut st, &mut page), json!({"snapshot": true}));
    st.apply(&Message::mon_get_cs(id, 1, "last.c", Language::CXX), T0);
    st.apply(&Message::mon_job_begin(id, 1, 0), T0);
    let d = next_diff(&mut st, &mut page);
    let whole = serde_json::to_value(st.job(id).unwrap()).unwrap();
    assert_eq!(
        d["jobs"],
        json!([job(&whole)]),
        "whole, null fields left out"
    );
    assert_eq!(d["links"], json!([{"from": 1, "to": 1, "active": 1}]));
    st.check_invariants();
}

// ---- arbitrary streams ----

#[derive(Clone, Debug)]
enum Op {
    Stats(u32, u32, bool),
    Offline(u32),
    GetCs(u32, u32),
    Begin(u32, u32),
    Done(u32, u32),
    LocalBegin(u32, u32),
    LocalDone(u32),
    Connected,
    Lost,
    Tick(u64),
    Take,
}

fn op() -> impl Strategy<Value = Op> {
    let host = 1u32..5;
    let job = 1u32..8;
    prop_oneof![
        (host.clone(), 0u32..4, any::<bool>()).prop_map(|(h, m, r)| Op::Stats(h, m, r)),
        host.clone().prop_map(Op::Offline),
        (job.clone(), host.clone()).prop_map(|(j, h)| Op::GetCs(j, h)),
        (job.clone(), host.clone()).prop_map(|(j, h)| Op::Begin(j, h)),
        (job.clone(), prop_oneof![Just(0u32), Just(1), Just(255)])
            .prop_map(|(j, e)| Op::Done(j, e)),
        (job.clone(), host.clone()).prop_map(|(j, h)| Op::LocalBegin(j, h)),
        job.prop_map(Op::LocalDone),
        Just(Op::Connected),
        Just(Op::Lost),
        (0u64..90_000).prop_map(Op::Tick),
        Just(Op::Take),
    ]
}

/// A client of `docs/websocket.md`: one snapshot, then diffs applied by its rules.
#[derive(Debug, Default, PartialEq)]
struct Client {
    scheduler: Value,
    hosts: BTreeMap<u64, Value>,
    links: BTreeMap<(u64, u64), u64>,
    jobs: BTreeMap<u64, Value>,
    history: Vec<Value>,
    totals: Value,
}

fn id(v: &Value) -> u64 {
    v["id"].as_u64().unwrap()
}

/// A job as a client keeps it: a diff leaves out a new job's null fields,
/// a snapshot does not; missing means null.
fn job(v: &Value) -> Value {
    let mut j = v.clone();
    j.as_object_mut().unwrap().retain(|_, f| !f.is_null());
    j
}

impl Client {
    fn from_snapshot(s: &Value) -> Client {
        let mut c = Client {
            scheduler: s["scheduler"].clone(),
            totals: s["totals"].clone(),
            history: s["history"].as_array().unwrap().iter().map(job).collect(),
            ..Client::default()
        };
        for h in s["hosts"].as_array().unwrap() {
            c.hosts.insert(id(h), h.clone());
        }
        for l in s["links"].as_array().unwrap() {
            let key = (l["from"].as_u64().unwrap(), l["to"].as_u64().unwrap());
            c.links.insert(key, l["active"].as_u64().unwrap());
        }
        for j in s["jobs"].as_array().unwrap() {
            c.jobs.insert(id(j), job(j));
        }
        c
    }

    fn apply(&mut self, d: &Value) {
        let list = |k: &str| d.get(k).map_or(vec![], |v| v.as_array().unwrap().clone());
        for key in ["hosts", "hosts_removed", "links", "jobs", "jobs_done"] {
            assert_ne!(d.get(key), Some(&json!([])), "empty keys are left out");
        }
        if let Some(s) = d.get("scheduler") {
            self.scheduler = s.clone();
        }
        // A host or job the client has comes as the fields that changed.
        let merge = |old: Option<Value>, new: Value| match old {
            Some(mut old) => {
                for (k, v) in new.as_object().unwrap() {
                    old[k] = v.clone();
                }
                old
            }
            None => new,
        };
        for h in list("hosts") {
            let old = self.hosts.remove(&id(&h));
            self.hosts.insert(id(&h), merge(old, h));
        }
        for h in list("hosts_removed") {
            self.hosts.remove(&h.as_u64().unwrap());
        }
        for l in list("links") {
            let key = (l["from"].as_u64().unwrap(), l["to"].as_u64().unwrap());
            match l["active"].as_u64().unwrap() {
                0 => self.links.remove(&key),
                n => self.links.insert(key, n),
            };
        }
        // Ended first: after a scheduler restart one id can end and start again.
        for j in list("jobs_done") {
            let old = self.jobs.remove(&id(&j));
            self.history.push(job(&merge(old, j)));
        }
        for j in list("jobs") {
            let old = self.jobs.remove(&id(&j));
            self.jobs.insert(id(&j), job(&merge(old, j)));
        }
        if let Some(t) = d.get("totals") {
            self.totals = t.clone();
        }
    }

    fn agrees_with(&self, fresh: &Client) {
        assert_eq!(self.scheduler, fresh.scheduler);
        assert_eq!(self.hosts, fresh.hosts);
        assert_eq!(self.links, fresh.links);
        assert_eq!(self.jobs, fresh.jobs);
        assert_eq!(self.totals, fresh.totals);
        let tail = &self.history[self.history.len().saturating_sub(fresh.history.len())..];
        assert_eq!(tail, &fresh.history[..]);
    }
}

/// The page's next message, applied to the client.
fn take(st: &mut State, page: &mut Delta, client: &mut Client) {
    match page.update(st) {
        Update::Nothing => {}
        Update::Diff(diff) => client.apply(&serde_json::to_value(diff).unwrap()),
        Update::Snapshot => {
            *client = Client::from_snapshot(&serde_json::to_value(st.snapshot()).unwrap())
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_stream_keeps_every_counter_exact_and_diffs_rebuild_the_snapshot(
        ops in proptest::collection::vec(op(), 1..120)
    ) {
        let mut st = connected();
        let mut page = Delta::follow(&mut st);
        let mut client = Client::from_snapshot(&serde_json::to_value(st.snapshot()).unwrap());
        let mut now = T0;
        let texts: Vec<Vec<u8>> = (0..4u32)
            .flat_map(|m| [false, true].map(|r| host_text(&format!("m{m}{r}"), m, r)))
            .collect();
        for op in ops {
            now += 250;
            match op {
                Op::Stats(h, m, r) => st.apply(&Message::mon_stats(h, &texts[(m * 2 + u32::from(r)) as usize]), now),
                Op::Offline(h) => st.apply(&Message::mon_stats(h, OFFLINE), now),
                Op::GetCs(j, h) => st.apply(&Message::mon_get_cs(j, h, "f.c", Language::CXX), now),
                Op::Begin(j, h) => st.apply(&Message::mon_job_begin(j, h, 0), now),
                Op::Done(j, e) => st.apply(&done(j, e), now),
                Op::LocalBegin(j, h) => st.apply(&Message::mon_local_job_begin(j, h, 0, "out.o"), now),
                Op::LocalDone(j) => st.apply(&Message::job_local_done(j), now),
                Op::Connected => st.scheduler_connected("s:1".into(), 43, now),
                Op::Lost => st.scheduler_lost("gone".into(), now),
                Op::Tick(dt) => {
                    now += dt;
                    st.tick(now);
                }
                Op::Take => take(&mut st, &mut page, &mut client),
            }
            st.check_invariants();
        }
        take(&mut st, &mut page, &mut client);
        let fresh = Client::from_snapshot(&serde_json::to_value(st.snapshot()).unwrap());
        client.agrees_with(&fresh);
    }
}

#[test]
fn jobs_whose_end_never_comes_end_as_stale_so_no_host_compiles_more_than_its_slots() {
    let mut st = connected();
    let hosts = 200u32;
    for h in 1..=hosts {
        st.apply(
            &Message::mon_stats(h, &host_text(&format!("h{h}"), 4, false)),
            T0,
        );
    }
    // A local job on host 1 runs beside its remote ones.
    st.apply(&Message::mon_local_job_begin(u32::MAX, 1, 0, "out.o"), T0);
    // 100,000 jobs begin and not one end arrives (lost messages).
    for id in 0..100_000u32 {
        let server = 1 + (id * 7919) % hosts;
        st.apply(
            &Message::mon_get_cs(id, 1 + id % hosts, "f.c", Language::CXX),
            T0 + u64::from(id),
        );
        st.apply(&Message::mon_job_begin(id, server, 0), T0 + u64::from(id));
    }
    st.check_invariants();
    let t = st.totals();
    assert_eq!(
        t.active - t.local_active,
        800,
        "remote jobs compiling on 800 slots"
    );
    assert!(st
        .hosts()
        .all(|h| h.active <= h.max_jobs + u32::from(h.id == 1)));
    assert_eq!(st.host(1).unwrap().active, 5, "4 remote and its local job");
    assert_eq!(t.jobs_cut_short, 100_000 - 800);
    let stale = st.history().last().unwrap();
    assert_eq!(
        (stale.state, stale.reason),
        (JobState::CutShort, Some(EndReason::Stale))
    );
    assert_eq!((t.jobs_failed, t.success_ratio), (0, None));

    // And past the stale limit (an hour by default) the rest end too.
    let later = T0 + 100_000 + 3_600_001;
    st.tick(later);
    st.check_invariants();
    assert_eq!(st.jobs().count(), 0);
    assert_eq!(st.totals().jobs_cut_short, 100_000);
}
