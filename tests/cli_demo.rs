//! `icewatch demo --as-scheduler`: the simulated cluster served over the
//! real wire protocol to a monitor, at every version, ended by Ctrl-C.

mod support;

use icewatch::protocol::{Message, MsgType};
use std::collections::BTreeSet;
use support::client::SchedulerClient;
use support::command::Running;

/// Every type a monitor can receive from a scheduler, job ends as `done`.
fn monitor_types(done: MsgType) -> BTreeSet<MsgType> {
    [
        MsgType::MON_STATS,
        MsgType::MON_GET_CS,
        MsgType::MON_JOB_BEGIN,
        done,
        MsgType::MON_LOCAL_JOB_BEGIN,
        MsgType::JOB_LOCAL_DONE,
    ]
    .into()
}

/// Reads until every monitor type was seen (at most `limit` messages);
/// returns the types seen.
fn read_every_type(m: &mut SchedulerClient, done: MsgType, limit: usize) -> BTreeSet<MsgType> {
    let wanted = monitor_types(done);
    let mut seen = BTreeSet::new();
    for _ in 0..limit {
        let frame = m.frame().expect("the demo keeps sending");
        seen.insert(m.check(&frame));
        if wanted.is_subset(&seen) {
            break;
        }
    }
    seen
}

/// After Ctrl-C: everything still queued, then END, then the close.
fn read_to_end(m: &mut SchedulerClient) -> Vec<MsgType> {
    let mut rest = Vec::new();
    while let Some(frame) = m.frame() {
        rest.push(m.check(&frame));
        assert!(rest.len() < 1_000_000, "no END in sight");
    }
    rest
}

#[test]
fn demo_as_scheduler_serves_every_monitor_message_then_end_on_ctrl_c() {
    let mut demo = Running::demo_scheduler(&["--seed", "1", "--rate", "0"]);
    let addr = demo.scheduler_addr();
    assert!(addr.ip().is_loopback());
    let mut m = SchedulerClient::connect(addr, 44);
    assert_eq!(m.version, 44);
    let seen = read_every_type(&mut m, MsgType::JOB_DONE, 200_000);
    assert_eq!(
        seen,
        monitor_types(MsgType::JOB_DONE),
        "git master's job end at 44"
    );
    demo.signal("INT");
    let rest = read_to_end(&mut m);
    assert_eq!(rest.last(), Some(&MsgType::END));
    assert!(demo.wait().success());
}

#[test]
fn demo_as_scheduler_speaks_a_released_scheduler_to_older_monitors() {
    let demo = Running::demo_scheduler(&["--seed", "2", "--rate", "0"]);
    let addr = demo.scheduler_addr();
    for offer in [43, 29, 22, 21] {
        let mut m = SchedulerClient::connect(addr, offer);
        assert_eq!(m.version, offer);
        let seen = read_every_type(&mut m, MsgType::MON_JOB_DONE, 200_000);
        assert_eq!(
            seen,
            monitor_types(MsgType::MON_JOB_DONE),
            "protocol {offer}"
        );
    }
}

#[test]
fn the_long_mon_get_cs_goes_to_monitors_below_protocol_29() {
    let demo = Running::demo_scheduler(&["--seed", "3", "--rate", "0"]);
    let addr = demo.scheduler_addr();
    let mut m = SchedulerClient::connect(addr, 28);
    loop {
        let frame = m.frame().unwrap();
        if let Message::MonGetCs(get) = frame.decode(28).unwrap() {
            assert_eq!(get.request.environments.len(), 1);
            assert_eq!(get.request.count, 1);
            assert!(!get.request.target.is_empty());
            break;
        }
    }
}

#[test]
fn job_done_type_can_be_pinned_either_way() {
    let demo = Running::demo_scheduler(&["--seed", "4", "--rate", "0", "--job-done", "job"]);
    let mut m = SchedulerClient::connect(demo.scheduler_addr(), 43);
    let seen = read_every_type(&mut m, MsgType::JOB_DONE, 200_000);
    assert!(seen.contains(&MsgType::JOB_DONE) && !seen.contains(&MsgType::MON_JOB_DONE));
    drop(demo);

    let demo = Running::demo_scheduler(&["--seed", "4", "--rate", "0", "--job-done", "mon"]);
    let mut m = SchedulerClient::connect(demo.scheduler_addr(), 44);
    let seen = read_every_type(&mut m, MsgType::MON_JOB_DONE, 200_000);
    assert!(seen.contains(&MsgType::MON_JOB_DONE) && !seen.contains(&MsgType::JOB_DONE));
}

/// The decoded messages, with the wall-clock start times zeroed.
fn first_messages(seed: &str, n: usize) -> Vec<String> {
    let demo = Running::demo_scheduler(&["--seed", seed, "--rate", "0"]);
    let mut m = SchedulerClient::connect(demo.scheduler_addr(), 44);
    (0..n)
        .map(|_| {
            let frame = m.frame().unwrap();
            let mut msg = frame.decode(44).unwrap();
            match &mut msg {
                Message::MonJobBegin(b) => b.start_time = 0,
                Message::MonLocalJobBegin(b) => b.start_time = 0,
                _ => {}
            }
            format!("{msg:?}")
        })
        .collect()
}

#[test]
fn the_same_seed_gives_the_same_cluster_and_jobs() {
    let a = first_messages("11", 3_000);
    let b = first_messages("11", 3_000);
    assert_eq!(a, b);
    let c = first_messages("12", 3_000);
    assert_ne!(a, c);
}

#[test]
fn a_daemon_that_connects_to_the_demo_is_turned_away_and_monitors_keep_going() {
    use icewatch::protocol::{frame::Frame, handshake::handshake_blocking, Login};
    use std::io::{Read, Write};
    let demo = Running::demo_scheduler(&["--seed", "5", "--rate", "0"]);
    let addr = demo.scheduler_addr();
    let mut daemon = std::net::TcpStream::connect(addr).unwrap();
    daemon
        .set_read_timeout(Some(support::command::PATIENCE))
        .unwrap();
    let v = handshake_blocking(&mut daemon, 44).unwrap();
    let login = Frame::encode(&Message::Login(Login::default()), v);
    daemon.write_all(login.as_bytes()).unwrap();
    let mut rest = Vec::new();
    assert_eq!(
        daemon.read_to_end(&mut rest).unwrap(),
        0,
        "closed without a word"
    );
    demo.stderr_until(|l| l.contains("expected MON_LOGIN, got LOGIN"));
    let mut m = SchedulerClient::connect(addr, 44);
    let seen = read_every_type(&mut m, MsgType::JOB_DONE, 200_000);
    assert_eq!(seen, monitor_types(MsgType::JOB_DONE));
}

#[test]
fn a_demo_paced_by_rate_delivers_valid_messages() {
    // A monitor more than 4096 messages behind is dropped: at 500 a second
    // that leaves this test eight seconds of slack on a loaded machine.
    let demo = Running::demo_scheduler(&["--seed", "6", "--rate", "500"]);
    let mut m = SchedulerClient::connect(demo.scheduler_addr(), 44);
    for _ in 0..500 {
        let frame = m.frame().unwrap();
        m.check(&frame);
    }
}
