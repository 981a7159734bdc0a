//! The message stream the load harness plays: a cluster of `hosts` daemons
//! announcing themselves, then remote jobs passing through (MON_GET_CS,
//! MON_JOB_BEGIN, MON_JOB_DONE with about two jobs in flight per host),
//! one local job (MON_LOCAL_JOB_BEGIN, JOB_LOCAL_DONE) for every eight
//! remote ones, one failure in 97, and a MON_STATS load report for every
//! three remote jobs. Every job that begins also ends, so the final totals
//! are known in advance.

use bytes::BytesMut;
use icewatch::protocol::{
    GetCs, JobDone, JobLocalDone, Language, Message, MonGetCs, MonJobBegin, MonLocalJobBegin,
    MonStats,
};

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
        let text = format!(
            "Name:node{id:05}.build.example.org\nIP:10.{}.{}.{}\nMaxJobs:{}\nNoRemote:{}\n\
             Platform:x86_64\nVersion:{version}\nFeatures:env_xz env_zstd\nSpeed:{}.5\nLoad:0\n",
            id >> 16,
            (id >> 8) & 255,
            id & 255,
            4 + id % 13,
            id % 50 == 0,
            10 + id % 30,
        );
        push(
            &Message::MonStats(MonStats {
                host_id: id,
                text: text.as_bytes(),
            }),
            &mut n,
        );
    }
    let files: Vec<String> = (0..256)
        .map(|i| format!("src/subsystem{}/module{i}/implementation_{i}.cpp", i % 17))
        .collect();
    let loads: Vec<String> = (0..8)
        .map(|i| {
            format!(
                "Load:{}\nLoadAvg1:{}\nLoadAvg5:{}\nLoadAvg10:{}\nFreeMem:{}\n",
                i * 120,
                i * 400,
                i * 350,
                i * 300,
                16_000 + i * 1000
            )
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
            push(
                &Message::MonGetCs(MonGetCs {
                    request: GetCs {
                        filename: files[(t % 256) as usize].as_bytes(),
                        lang: Language::CXX,
                        ..GetCs::default()
                    },
                    job_id: (2 * t + 1) as u32,
                    client_id: host(t),
                }),
                &mut n,
            );
            last_job = Some(t);
        }
        let Some(last) = last_job else { break };
        if t >= lag / 2 && t - lag / 2 <= last {
            let j = t - lag / 2;
            push(
                &Message::MonJobBegin(MonJobBegin {
                    job_id: (2 * j + 1) as u32,
                    start_time: 1_700_000_000 + (j / 1000) as u32,
                    host_id: server(j),
                }),
                &mut n,
            );
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
                    job_id: (2 * j + 1) as u32,
                    exit_code,
                    real_ms: 500 + (j % 3000) as u32,
                    user_ms: 400 + (j % 2000) as u32,
                    sys_ms: 30,
                    in_compressed: 40_000,
                    in_uncompressed: 200_000,
                    out_compressed: 20_000,
                    out_uncompressed: 60_000,
                    ..JobDone::default()
                }),
                &mut n,
            );
        }
        if starting && t % 8 == 0 {
            let k = t / 8;
            let id = (2 * k + 2) as u32;
            push(
                &Message::MonLocalJobBegin(MonLocalJobBegin {
                    host_id: host(k * 3),
                    job_id: id,
                    start_time: 1_700_000_000,
                    file: files[(k % 256) as usize].as_bytes(),
                }),
                &mut n,
            );
            push(&Message::JobLocalDone(JobLocalDone { job_id: id }), &mut n);
            local_finished += 1;
        }
        if starting && t % 3 == 0 {
            push(
                &Message::MonStats(MonStats {
                    host_id: host(t * 11),
                    text: loads[(t % 8) as usize].as_bytes(),
                }),
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
