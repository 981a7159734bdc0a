//! Builds, why they did not distribute and hosts that hurt builds, on the
//! real captures (a real icecream 1.4 build: `tests/data/README.md`) and
//! on small clusters written out here; the live reader and the history
//! database must agree.

mod support;

use icewatch::history::query::{self, Filter};
use icewatch::history::{Reader, Store};
use icewatch::insights::{flag_hosts, group, Build, Finished, HostSpan, Live};
use icewatch::monitor::{EndReason, JobState, State, StateOptions};
use std::time::Duration;
use support::captures::{capture_frames, frames_in, CAPTURES};

/// The capture's frames applied one every 10 ms from `t0`, the live
/// reader and the history's reader taking after each; then `after_ms`
/// more of quiet.
fn replay(file: &[u8], after_ms: u64) -> (Live, Vec<icewatch::history::Record>) {
    let t0 = 1_700_000_000_000;
    let (agreed, stream) = capture_frames(file);
    let mut state = State::new(StateOptions::default());
    let live = Live::new(Duration::from_secs(60));
    let mut follower = state.follow();
    let mut reader = Reader::new(&mut state);
    let mut records = Vec::new();
    state.scheduler_connected("127.0.0.1:8765".into(), agreed, t0);
    let mut t = t0;
    for frame in frames_in(stream) {
        t += 10;
        let msg = frame.decode(agreed).expect("a real capture decodes");
        state.apply(&msg, t);
        live.take(&mut state, &mut follower);
        records.extend(reader.take(&mut state, usize::MAX).records);
    }
    state.tick(t + after_ms);
    live.take(&mut state, &mut follower);
    records.extend(reader.take(&mut state, usize::MAX).records);
    (live, records)
}

/// What a build of the capture must be, whichever the protocol version.
fn assert_the_real_build(b: &Build, open: bool) {
    assert_eq!(b.host.as_deref(), Some("localice"));
    assert_eq!(b.open, open);
    // 42 remote compile jobs and 2 local ones (the retry of bad.c, the link).
    assert_eq!((b.jobs, b.local), (44, 2));
    // 26 compiled by localice itself, 8 each by remote1 and remote2.
    assert_eq!((b.given_back, b.remote), (26, 16));
    assert!((b.remote_share - 16.0 / 44.0).abs() < 1e-9);
    assert_eq!((b.failed, b.cut_short), (1, 0));
    let servers: Vec<(&str, u64)> = b
        .servers
        .iter()
        .map(|s| (s.name.as_str(), s.jobs))
        .collect();
    assert_eq!(servers, [("localice", 28), ("remote1", 8), ("remote2", 8)]);
    assert!(b.wait_median_ms.is_some() && b.wait_p95_ms >= b.wait_median_ms);
    assert_eq!(b.slowest.len(), 5);
    assert!(b.previous.is_none(), "its first build");
    let kinds: Vec<&str> = b.why.iter().map(|r| r.kind).collect();
    // The remote slots were free while jobs waited (the scheduler chose
    // localice, whose slots do not count: it takes no remote jobs), no
    // host left mid-job, and every host is x86_64 at protocol 43.
    assert_eq!(kinds, ["given_back", "local_unasked", "retried_locally"]);
    let reason = |kind: &str| b.why.iter().find(|r| r.kind == kind).unwrap();
    assert_eq!(reason("given_back").jobs, 26);
    assert_eq!(
        reason("given_back").summary,
        "26 of 42 remote jobs were given back to localice itself"
    );
    let retried = reason("retried_locally");
    assert_eq!(retried.jobs, 1);
    assert_eq!(
        retried.evidence,
        ["tmp/cluster.yvq3/bad.c failed with exit code 1 on remote1, then tmp/cluster.yvq3/bad.o ran locally"]
    );
    let unasked = reason("local_unasked");
    assert_eq!(unasked.jobs, 1);
    assert!(
        unasked.evidence[0].contains("tmp/cluster.yvq3/prog"),
        "{:?}",
        unasked.evidence
    );
}

#[test]
fn a_replayed_real_build_is_one_build_with_its_reasons_live_and_from_the_history() {
    for &(version, file) in CAPTURES {
        // Live, right after the build and once the gap has passed.
        let (live, _) = replay(file, 0);
        let builds = live.builds();
        assert_eq!(builds.len(), 1, "v{version}");
        assert_the_real_build(&builds[0], true);
        let (live, records) = replay(file, 61_000);
        let builds = live.builds();
        assert_eq!(builds.len(), 1, "v{version}");
        assert_the_real_build(&builds[0], false);
        // From the database the history wrote.
        let dir =
            std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("insights-v{version}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut store = Store::open(&dir.join("h.sqlite")).unwrap();
        store.write(&records).unwrap();
        let filter = Filter {
            limit: 100,
            ..Filter::default()
        };
        let from_db = query::builds(store.connection(), &filter, 60_000).unwrap();
        assert_eq!(from_db.len(), 1, "v{version}");
        assert_the_real_build(&from_db[0], false);
        assert_eq!(
            from_db[0], builds[0],
            "the history and the live reader agree (v{version})"
        );
    }
}

fn job(client: &str, server: &str, submit: u64, start: u64, end: u64) -> Finished {
    Finished {
        client: Some(client.into()),
        server: Some(server.into()),
        file: format!("src/f{submit}.cpp"),
        state: JobState::Finished,
        reason: EndReason::Exit,
        exit_code: Some(0),
        submit_ms: Some(submit),
        start_ms: start,
        end_ms: end,
        real_ms: Some(u32::try_from(end - start).unwrap()),
        in_uncompressed: Some(1 << 20),
    }
}

fn host(name: &str, slots: u32, login: u64) -> HostSpan {
    HostSpan {
        name: name.into(),
        platform: "x86_64".into(),
        protocol: 43,
        features: "env_xz env_zstd".into(),
        max_jobs: slots,
        no_remote: false,
        login_ms: login,
        logout_ms: None,
    }
}

#[test]
fn a_pause_of_the_gap_ends_a_build_and_the_next_one_says_what_changed() {
    let jobs = vec![
        job("ws", "a", 0, 10, 1_000),
        job("ws", "b", 500, 510, 2_000),
        // 30 s later: a new build with the default gap of 60 s? No: the
        // gap here is 20 s.
        job("ws", "a", 32_000, 32_010, 33_000),
        job("ci", "a", 1_000, 1_010, 1_500),
    ];
    let hosts = [host("a", 4, 0), host("b", 4, 0)];
    let builds = group(&jobs, &hosts, 20_000, Some(40_000));
    let seen: Vec<_> = builds
        .iter()
        .map(|b| {
            (
                b.host.as_deref().unwrap(),
                b.start_ms,
                b.end_ms,
                b.jobs,
                b.open,
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("ws", 0, 2_000, 2, false),
            ("ci", 1_000, 1_500, 1, false),
            ("ws", 32_000, 33_000, 1, true),
        ]
    );
    let change = builds[2].previous.as_ref().unwrap();
    assert_eq!(
        (change.start_ms, change.duration_ms, change.jobs),
        (0, -1_000, -1)
    );
    let one = group(&jobs, &hosts, 40_000, None);
    assert_eq!(
        one.iter()
            .filter(|b| b.host.as_deref() == Some("ws"))
            .count(),
        1
    );
}

#[test]
fn jobs_that_waited_while_every_remote_slot_was_busy_say_the_cluster_was_full() {
    // One server with 2 slots, busy from 0 to 10 s with ci's jobs; ws
    // submits at 1 s and waits until 10 s.
    let mut jobs = vec![
        job("ci", "a", 0, 0, 10_000),
        job("ci", "a", 0, 0, 10_000),
        job("ws", "a", 1_000, 10_000, 11_000),
    ];
    let workstation = |name| HostSpan {
        no_remote: true,
        ..host(name, 1, 0)
    };
    let hosts = [host("a", 2, 0), workstation("ws"), workstation("ci")];
    let builds = group(&jobs, &hosts, 60_000, None);
    let ws = builds
        .iter()
        .find(|b| b.host.as_deref() == Some("ws"))
        .unwrap();
    let full = ws
        .why
        .iter()
        .find(|r| r.kind == "cluster_full")
        .expect("cluster full");
    assert_eq!(full.jobs, 1);
    assert!(
        full.evidence[0].contains("all 2 slots of the 1 hosts"),
        "{:?}",
        full.evidence
    );
    assert_eq!(ws.wait_median_ms, Some(9_000));
    // With a free slot, it is not claimed.
    jobs.remove(0);
    let builds = group(&jobs, &hosts, 60_000, None);
    let ws = builds
        .iter()
        .find(|b| b.host.as_deref() == Some("ws"))
        .unwrap();
    assert!(
        ws.why.iter().all(|r| r.kind != "cluster_full"),
        "{:?}",
        ws.why
    );
}

#[test]
fn servers_that_left_and_a_platform_few_share_are_reasons() {
    let mut cut = job("ws", "a", 0, 10, 500);
    cut.state = JobState::CutShort;
    cut.reason = EndReason::HostLeft;
    cut.exit_code = None;
    // Less than half of its jobs compiled elsewhere: two came back to it.
    let jobs = vec![
        cut,
        job("ws", "ws", 0, 10, 900),
        job("ws", "ws", 5, 15, 900),
    ];
    let mut ws = host("ws", 2, 0);
    ws.platform = "aarch64".into();
    let hosts = [ws, host("a", 4, 0), host("b", 4, 0)];
    let builds = group(&jobs, &hosts, 60_000, None);
    let kinds: Vec<&str> = builds[0].why.iter().map(|r| r.kind).collect();
    assert_eq!(kinds, ["given_back", "servers_left", "few_eligible"]);
    assert_eq!(
        builds[0].why[1].evidence[0],
        "cut short when its server left: a"
    );
    assert_eq!(
        builds[0].why[2].summary,
        "only 0 of 2 hosts that take remote jobs share ws's platform and protocol"
    );
}

#[test]
fn hosts_that_fail_are_slow_differ_or_flap_are_flagged_and_others_not() {
    let mut jobs = Vec::new();
    for i in 0..10u64 {
        for server in ["a", "b", "c", "bad", "slow"] {
            let mut j = job("ws", server, i * 1_000, i * 1_000, i * 1_000 + 100);
            if server == "slow" {
                j.real_ms = Some(500);
            }
            if server == "bad" && i < 4 {
                j.state = JobState::Failed;
                j.exit_code = Some(1);
            }
            jobs.push(j);
        }
    }
    let now = 5_000_000;
    let mut hosts: Vec<HostSpan> = ["a", "b", "c", "bad", "slow"]
        .iter()
        .map(|n| host(n, 4, 0))
        .collect();
    hosts[2].protocol = 42;
    // "a" left and joined twice in the last hour.
    for login in [now - 3_000_000, now - 2_000_000] {
        let mut again = host("a", 4, login);
        again.logout_ms = Some(login + 500_000);
        hosts.push(again);
    }
    hosts[0].login_ms = now - 1_000_000;
    let flags: Vec<(String, &str)> = flag_hosts(&jobs, &hosts, now)
        .into_iter()
        .map(|f| (f.host, f.kind))
        .collect();
    assert_eq!(
        flags,
        [
            ("a".to_string(), "flapping"),
            ("bad".to_string(), "failing"),
            ("c".to_string(), "protocol"),
            ("slow".to_string(), "slow"),
        ]
    );
}
