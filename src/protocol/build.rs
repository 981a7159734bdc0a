//! Building the messages a scheduler sends its monitors, one call each:
//! what stand-ins for a scheduler (the demo, tests, benchmarks, load
//! harnesses) write, instead of spelling out every struct.
//!
//! Arguments come in one order throughout: the job, then the host, then
//! the rest. Fields a constructor does not take are zero or empty; set
//! them with struct update syntax on the message's own struct when they
//! matter (`JobDone { real_ms: 800, ..JobDone::new(7, 0) }`). The text of a
//! `MON_STATS` is written from typed statistics by
//! [`HostStats::to_text`](super::stats::HostStats::to_text).
//!
//! ```
//! use icewatch::protocol::stats::{HostStats, OFFLINE};
//! use icewatch::protocol::{JobDone, Language, Message};
//!
//! let login = HostStats::login("remote1", "10.0.0.2", 4, false).to_text();
//! let stream = [
//!     Message::mon_stats(2, &login),
//!     Message::mon_get_cs(7, 1, "src/main.c", Language::C),
//!     Message::mon_job_begin(7, 2, 1_700_000_000),
//!     Message::MonJobDone(JobDone::new(7, 0)),
//!     Message::mon_local_job_begin(8, 1, 1_700_000_001, "app"),
//!     Message::job_local_done(8),
//!     Message::mon_stats(2, OFFLINE),
//! ];
//! assert!(matches!(&stream[2], Message::MonJobBegin(b) if b.job_id == 7 && b.host_id == 2));
//! ```

use super::{
    GetCs, JobLocalDone, Language, Message, MonGetCs, MonJobBegin, MonLocalJobBegin, MonStats,
};

impl<'a> Message<'a> {
    /// `MON_STATS`: host `host_id` is described by `text`, `Key:Value`
    /// lines (see [`HostStats::to_text`](super::stats::HostStats::to_text)).
    pub fn mon_stats<T: AsRef<[u8]> + ?Sized>(host_id: u32, text: &'a T) -> Message<'a> {
        Message::MonStats(MonStats {
            host_id,
            text: text.as_ref(),
        })
    }

    /// `MON_GET_CS` as schedulers send it from protocol 29: host
    /// `client_id` asks for a server to compile `file` in `lang`, which
    /// becomes job `job_id`. Below 29 the whole request travels; its other
    /// fields are zero or empty here.
    pub fn mon_get_cs<T: AsRef<[u8]> + ?Sized>(
        job_id: u32,
        client_id: u32,
        file: &'a T,
        lang: Language,
    ) -> Message<'a> {
        Message::MonGetCs(MonGetCs {
            request: GetCs {
                filename: file.as_ref(),
                lang,
                ..GetCs::default()
            },
            job_id,
            client_id,
        })
    }

    /// `MON_JOB_BEGIN`: job `job_id` starts compiling on host `host_id` at
    /// `start_time` (seconds since the epoch).
    pub fn mon_job_begin(job_id: u32, host_id: u32, start_time: u32) -> Message<'a> {
        Message::MonJobBegin(MonJobBegin {
            job_id,
            start_time,
            host_id,
        })
    }

    /// `MON_LOCAL_JOB_BEGIN`: host `host_id` compiles job `job_id` itself,
    /// from `start_time` (seconds since the epoch), into `file`.
    pub fn mon_local_job_begin<T: AsRef<[u8]> + ?Sized>(
        job_id: u32,
        host_id: u32,
        start_time: u32,
        file: &'a T,
    ) -> Message<'a> {
        Message::MonLocalJobBegin(MonLocalJobBegin {
            host_id,
            job_id,
            start_time,
            file: file.as_ref(),
        })
    }

    /// `JOB_LOCAL_DONE`: the local job `job_id` ended.
    pub fn job_local_done(job_id: u32) -> Message<'a> {
        Message::JobLocalDone(JobLocalDone { job_id })
    }
}
