//! Scheduler-to-monitor messages built in one call each, for the tests that
//! apply them to a `State` directly, without a connection.
#![allow(dead_code)]

use icewatch::protocol::{
    GetCs, JobLocalDone, Language, Message, MonGetCs, MonJobBegin, MonLocalJobBegin, MonStats,
};

/// `MON_STATS` for `host_id` with this text.
pub fn stats(host_id: u32, text: &str) -> Message<'_> {
    Message::MonStats(MonStats {
        host_id,
        text: text.as_bytes(),
    })
}

/// `MON_GET_CS`: `client_id` asks for a server to compile `file`.
pub fn get_cs(job_id: u32, client_id: u32, file: &str, lang: Language) -> Message<'_> {
    Message::MonGetCs(MonGetCs {
        request: GetCs {
            filename: file.as_bytes(),
            lang,
            ..GetCs::default()
        },
        job_id,
        client_id,
    })
}

/// `MON_JOB_BEGIN`: job `job_id` starts compiling on `host_id`.
pub fn begin(job_id: u32, host_id: u32) -> Message<'static> {
    Message::MonJobBegin(MonJobBegin {
        job_id,
        start_time: 0,
        host_id,
    })
}

/// `MON_LOCAL_JOB_BEGIN`: `host_id` compiles job `job_id` itself.
pub fn local_begin(job_id: u32, host_id: u32, file: &str) -> Message<'_> {
    Message::MonLocalJobBegin(MonLocalJobBegin {
        host_id,
        job_id,
        start_time: 0,
        file: file.as_bytes(),
    })
}

/// `JOB_LOCAL_DONE`.
pub fn local_done(job_id: u32) -> Message<'static> {
    Message::JobLocalDone(JobLocalDone { job_id })
}
