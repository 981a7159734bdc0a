//! How fast `State::apply` takes decoded messages: a cluster of 1,000 hosts
//! with 100,000 remote jobs passing through (MON_GET_CS, MON_JOB_BEGIN,
//! MON_JOB_DONE, about 2,000 in flight), a MON_STATS load update every 100
//! job events (a real 1,000-host cluster sends some 300 a second, far
//! fewer per job at these rates) and a reader of the feed taking the changes every
//! 10,000 events. Goal: at least 10 million events per second on one core.
//!
//! Three measurements of the same stream, so that each has its baseline in
//! the same run: `apply` takes messages decoded beforehand (from frames the
//! codec encoded), `decode` only cuts and decodes those frames (what any
//! reader must spend), and `decode_apply` does both, as the connection does.
//!
//! A second group, `host_churn`, has a host leave and a new one log in, on
//! a state of ten hosts and on one with 64,000 hosts online and 1,024
//! offline: the cost of a login must not grow with the hosts that stay.
//!
//! Run: `cargo bench --bench monitor_apply`

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use icewatch::monitor::{State, StateOptions};
use icewatch::protocol::frame::{parse_frame, MAX_MSG_SIZE};
use icewatch::protocol::stats::{HostStats, OFFLINE};
use icewatch::protocol::{JobDone, Language, Message, PROTOCOL_VERSION};
use std::hint::black_box;

const HOSTS: u32 = 1_000;
const JOBS: u32 = 100_000;
const LAG: u32 = 1_000;

fn stream<'a>(files: &'a [String], texts: &'a [Vec<u8>]) -> Vec<Message<'a>> {
    let mut out = Vec::new();
    let host = |n: u32| n % HOSTS + 1;
    for t in 0..JOBS + 2 * LAG {
        if t < JOBS {
            let file = &files[(t % 64) as usize];
            out.push(Message::mon_get_cs(t + 1, host(t), file, Language::CXX));
        }
        if (LAG..JOBS + LAG).contains(&t) {
            let j = t - LAG;
            out.push(Message::mon_job_begin(j + 1, host(j * 7 + 3), 0));
        }
        if t >= 2 * LAG {
            let j = t - 2 * LAG;
            out.push(Message::MonJobDone(JobDone {
                real_ms: 800,
                ..JobDone::new(j + 1, u32::from(j % 97 == 0))
            }));
        }
        if t % 33 == 0 {
            out.push(Message::mon_stats(host(t), &texts[(t % 4) as usize]));
        }
    }
    out
}

fn host_burst(st: &mut State) {
    for id in 1..=HOSTS {
        st.apply(&Message::mon_stats(id, &login(id)), 0);
    }
}

fn apply(c: &mut Criterion) {
    let files: Vec<String> = (0..64)
        .map(|i| format!("src/module{i}/file{i}.cpp"))
        .collect();
    // The form a scheduler sends after a daemon's STATS.
    let texts: Vec<Vec<u8>> = (0..4)
        .map(|i| {
            HostStats {
                name: None,
                ip: None,
                load: Some(i * 250),
                load_avg1: Some(i * 100),
                load_avg5: Some(500),
                load_avg10: Some(400),
                free_mem: Some(20_000),
                ..daemon("", "")
            }
            .to_text()
        })
        .collect();
    let built = stream(&files, &texts);
    let mut wire = BytesMut::new();
    for m in &built {
        m.encode(PROTOCOL_VERSION, &mut wire);
    }
    let frames = split_frames(&wire);
    let msgs: Vec<Message<'_>> = frames
        .iter()
        .map(|(ty, body)| Message::decode(*ty, body, PROTOCOL_VERSION).expect("own frames decode"))
        .collect();
    assert_eq!(msgs, built, "the codec round-trips the stream");
    let fresh = || {
        let mut st = State::new(StateOptions::default());
        st.scheduler_connected("bench:8765".into(), 44, 0);
        host_burst(&mut st);
        let reader = st.follow();
        (st, reader)
    };
    let mut group = c.benchmark_group("monitor_apply");
    group.throughput(Throughput::Elements(msgs.len() as u64));
    group.sample_size(20);
    group.bench_function("decode", |b| {
        b.iter(|| {
            let mut input = &wire[..];
            let mut n = 0u32;
            while let Ok((rest, raw)) = parse_frame(input, MAX_MSG_SIZE) {
                if let Ok(m) = Message::decode(raw.ty, raw.body, PROTOCOL_VERSION) {
                    black_box(&m);
                    n += 1;
                }
                input = rest;
            }
            n
        })
    });
    group.bench_function("decode_apply", |b| {
        b.iter_batched(
            fresh,
            |(mut st, mut reader)| {
                let mut input = &wire[..];
                let mut i = 0u64;
                while let Ok((rest, raw)) = parse_frame(input, MAX_MSG_SIZE) {
                    if let Ok(m) = Message::decode(raw.ty, raw.body, PROTOCOL_VERSION) {
                        st.apply(&m, 1_700_000_000_000 + i / 1_000);
                    }
                    if i % 10_000 == 9_999 {
                        black_box(st.changes(&mut reader));
                    }
                    i += 1;
                    input = rest;
                }
                st
            },
            criterion::BatchSize::LargeInput,
        )
    });
    group.bench_function("apply", |b| {
        b.iter_batched(
            fresh,
            |(mut st, mut reader)| {
                for (i, m) in msgs.iter().enumerate() {
                    st.apply(m, 1_700_000_000_000 + i as u64 / 1_000);
                    if i % 10_000 == 9_999 {
                        black_box(st.changes(&mut reader));
                    }
                }
                st
            },
            criterion::BatchSize::LargeInput,
        )
    });
    group.finish();
}

/// How every host of the bench reports itself: 8 slots, protocol 44.
fn daemon<'a>(name: &'a str, ip: &'a str) -> HostStats<'a> {
    HostStats {
        version: Some(44),
        speed: Some(10.0),
        ..HostStats::login(name, ip, 8, false)
    }
}

/// The login text of host `n`.
fn login(n: u32) -> Vec<u8> {
    let [_, a, b, c] = n.to_be_bytes();
    daemon(&format!("host{n}"), &format!("10.{a}.{b}.{c}")).to_text()
}

fn stats(st: &mut State, id: u32, text: &[u8]) {
    st.apply(&Message::mon_stats(id, text), 1_700_000_000_000);
}

fn host_churn(c: &mut Criterion) {
    let mut group = c.benchmark_group("host_churn");
    for (name, online) in [("10_hosts", 10u32), ("64000_hosts", 64_000)] {
        let mut st = State::new(StateOptions::default());
        st.scheduler_connected("bench:8765".into(), 44, 0);
        for id in 1..=online + 1024 {
            stats(&mut st, id, &login(id));
        }
        for id in online + 1..=online + 1024 {
            stats(&mut st, id, OFFLINE);
        }
        // Each iteration: the host online longest leaves, a new one logs in.
        let mut up: std::collections::VecDeque<u32> = (1..=online).collect();
        let mut next = online + 1025;
        let texts: Vec<Vec<u8>> = (0..4096).map(login).collect();
        group.bench_function(name, |b| {
            b.iter(|| {
                if let Some(leaving) = up.pop_front() {
                    stats(&mut st, leaving, OFFLINE);
                }
                stats(&mut st, next, &texts[next as usize % texts.len()]);
                up.push_back(next);
                next += 1;
            })
        });
    }
    group.finish();
}

/// (type, body) of every frame in `wire`.
fn split_frames(wire: &[u8]) -> Vec<(icewatch::protocol::MsgType, &[u8])> {
    let mut out = Vec::new();
    let mut input = wire;
    while let Ok((rest, raw)) = parse_frame(input, MAX_MSG_SIZE) {
        out.push((raw.ty, raw.body));
        input = rest;
    }
    assert!(input.is_empty());
    out
}

criterion_group!(benches, apply, host_churn);
criterion_main!(benches);
