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
use icewatch::protocol::{
    GetCs, JobDone, Language, Message, MonGetCs, MonJobBegin, MonStats, PROTOCOL_VERSION,
};
use std::hint::black_box;

const HOSTS: u32 = 1_000;
const JOBS: u32 = 100_000;
const LAG: u32 = 1_000;

fn stream<'a>(files: &'a [String], texts: &'a [String]) -> Vec<Message<'a>> {
    let mut out = Vec::new();
    let host = |n: u32| n % HOSTS + 1;
    for t in 0..JOBS + 2 * LAG {
        if t < JOBS {
            out.push(Message::MonGetCs(MonGetCs {
                request: GetCs {
                    filename: files[(t % 64) as usize].as_bytes(),
                    lang: Language::CXX,
                    ..GetCs::default()
                },
                job_id: t + 1,
                client_id: host(t),
            }));
        }
        if (LAG..JOBS + LAG).contains(&t) {
            let j = t - LAG;
            out.push(Message::MonJobBegin(MonJobBegin {
                job_id: j + 1,
                start_time: 0,
                host_id: host(j * 7 + 3),
            }));
        }
        if t >= 2 * LAG {
            let j = t - 2 * LAG;
            out.push(Message::MonJobDone(JobDone {
                job_id: j + 1,
                exit_code: u32::from(j % 97 == 0),
                real_ms: 800,
                ..JobDone::default()
            }));
        }
        if t % 33 == 0 {
            out.push(Message::MonStats(MonStats {
                host_id: host(t),
                text: texts[(t % 4) as usize].as_bytes(),
            }));
        }
    }
    out
}

fn host_burst(st: &mut State) {
    for id in 1..=HOSTS {
        let text = format!(
            "Name:host{id}\nIP:10.0.{}.{}\nMaxJobs:8\nNoRemote:false\nPlatform:x86_64\n\
             Version:44\nFeatures:env_xz env_zstd\nSpeed:10.0\nLoad:0\n",
            id / 256,
            id % 256
        );
        st.apply(
            &Message::MonStats(MonStats {
                host_id: id,
                text: text.as_bytes(),
            }),
            0,
        );
    }
}

fn apply(c: &mut Criterion) {
    let files: Vec<String> = (0..64)
        .map(|i| format!("src/module{i}/file{i}.cpp"))
        .collect();
    let texts: Vec<String> = (0..4)
        .map(|i| {
            format!(
                "MaxJobs:8\nNoRemote:false\nPlatform:x86_64\nVersion:44\n\
                 Features:env_xz env_zstd\nSpeed:10.0\nLoad:{}\nLoadAvg1:{}\nLoadAvg5:500\nLoadAvg10:400\nFreeMem:20000\n",
                i * 250,
                i * 100
            )
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

/// The login text of host `n`.
fn login(n: u32) -> String {
    format!(
        "Name:host{n}\nIP:10.{}.{}.{}\nMaxJobs:8\nNoRemote:false\nPlatform:x86_64\n\
         Version:44\nFeatures:env_xz env_zstd\nSpeed:10.0\nLoad:0\n",
        n >> 16,
        (n >> 8) & 255,
        n & 255
    )
}

fn stats(st: &mut State, id: u32, text: &str) {
    let msg = Message::MonStats(MonStats {
        host_id: id,
        text: text.as_bytes(),
    });
    st.apply(&msg, 1_700_000_000_000);
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
            stats(&mut st, id, "State:Offline\n");
        }
        // Each iteration: the host online longest leaves, a new one logs in.
        let mut up: std::collections::VecDeque<u32> = (1..=online).collect();
        let mut next = online + 1025;
        let texts: Vec<String> = (0..4096).map(login).collect();
        group.bench_function(name, |b| {
            b.iter(|| {
                if let Some(leaving) = up.pop_front() {
                    stats(&mut st, leaving, "State:Offline\n");
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
