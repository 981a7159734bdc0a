//! The message stream the load harness plays: a cluster of `hosts` daemons
//! announcing themselves, then remote jobs passing through (MON_GET_CS,
//! MON_JOB_BEGIN, MON_JOB_DONE with about two jobs in flight per host),
//! one local job (MON_LOCAL_JOB_BEGIN, JOB_LOCAL_DONE) for every eight
//! remote ones, one failure in 97, and a MON_STATS load report for every
//! three remote jobs. Every job that begins also ends, so the final totals
//! are known in advance.

use bytes::BytesMut;
use icewatch::protocol::stats::HostStats;
use icewatch::protocol::{JobDone, Language, Message};

/// A pre-encoded stream and what a monitor must count after it.
pub struct Stream {
    /// Every frame, back to back, at the agreed version.
    pub bytes: Vec<u8>,
    /// How many frames.
    pub messages: u64,
    /// Remote jobs that end with exit code 0.
    pub finished: u64,
    /// Remote jobs that end otherwise.
    pub failed: u64,
    /// Local jobs that end.
    pub local_finished: u64,
}

/// About `messages` frames (never fewer) for `hosts` hosts at `version`.
pub fn build(hosts: u32, messages: u64, version: u32) -> Stream {
    let mut out = BytesMut::with_capacity(messages as usize * 64);
    let mut n = 0u64;
    let mut push = |m: &Message<'_>, n: &mut u64| {
        m.encode(version, &mut out);
        *n += 1;
    };
    for id in 1..=hosts {
        let [_, a, b, c] = id.to_be_bytes();
        let (name, ip) = (
            format!("node{id:05}.build.example.org"),
            format!("10.{a}.{b}.{c}"),
        );
        let text = HostStats {
            version: Some(version),
            speed: Some(f64::from(10 + id % 30) + 0.5),
            ..HostStats::login(&name, &ip, 4 + id % 13, id % 50 == 0)
        }
        .to_text();
        push(&Message::mon_stats(id, &text), &mut n);
    }
    let files: Vec<String> = (0..256)
        .map(|i| format!("src/subsystem{}/module{i}/implementation_{i}.cpp", i % 17))
        .collect();
    let loads: Vec<Vec<u8>> = (0..8)
        .map(|i| {
            HostStats {
                load: Some(i * 120),
                load_avg1: Some(i * 400),
                load_avg5: Some(i * 350),
                load_avg10: Some(i * 300),
                free_mem: Some(16_000 + i * 1000),
                ..HostStats::default()
            }
            .to_text()
        })
        .collect();
    let lag = u64::from(hosts) * 2;
    let host = |j: u64| (j % u64::from(hosts)) as u32 + 1;
    let server = |j: u64| ((j * 7 + 3) % u64::from(hosts)) as u32 + 1;
    let (mut finished, mut failed, mut local_finished) = (0, 0, 0);
    // Remote job j has id 2j+1; local job k has id 2k+2 (one counter, as
    // the scheduler's, never reused).
    let mut t = 0u64;
    let mut last_job = None;
    loop {
        let starting = n < messages;
        if starting {
            let file = &files[(t % 256) as usize];
            let request = Message::mon_get_cs((2 * t + 1) as u32, host(t), file, Language::CXX);
            push(&request, &mut n);
            last_job = Some(t);
        }
        let Some(last) = last_job else { break };
        if t >= lag / 2 && t - lag / 2 <= last {
            let j = t - lag / 2;
            let start_time = 1_700_000_000 + (j / 1000) as u32;
            let begin = Message::mon_job_begin((2 * j + 1) as u32, server(j), start_time);
            push(&begin, &mut n);
        }
        if t >= lag {
            let j = t - lag;
            if j > last {
                break;
            }
            let exit_code = u32::from(j % 97 == 0);
            if exit_code == 0 {
                finished += 1;
            } else {
                failed += 1;
            }
            push(
                &Message::MonJobDone(JobDone {
                    real_ms: 500 + (j % 3000) as u32,
                    user_ms: 400 + (j % 2000) as u32,
                    sys_ms: 30,
                    in_compressed: 40_000,
                    in_uncompressed: 200_000,
                    out_compressed: 20_000,
                    out_uncompressed: 60_000,
                    ..JobDone::new((2 * j + 1) as u32, exit_code)
                }),
                &mut n,
            );
        }
        if starting && t % 8 == 0 {
            let k = t / 8;
            let id = (2 * k + 2) as u32;
            let file = &files[(k % 256) as usize];
            let begin = Message::mon_local_job_begin(id, host(k * 3), 1_700_000_000, file);
            push(&begin, &mut n);
            push(&Message::job_local_done(id), &mut n);
            local_finished += 1;
        }
        if starting && t % 3 == 0 {
            push(
                &Message::mon_stats(host(t * 11), &loads[(t % 8) as usize]),
                &mut n,
            );
        }
        t += 1;
    }
    Stream {
        bytes: out.to_vec(),
        messages: n,
        finished,
        failed,
        local_finished,
    }
}
