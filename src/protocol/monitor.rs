//! Messages the scheduler sends to monitors: `MON_GET_CS`, `MON_JOB_BEGIN`,
//! `MON_LOCAL_JOB_BEGIN`, `MON_STATS` (and `MON_LOGIN`, which has no body).
//! Job ends reuse [`JobDone`](super::JobDone) and
//! [`JobLocalDone`](super::JobLocalDone).

use super::job::{parse_get_cs, write_get_cs, GetCs};
use super::stats::HostStats;
use super::wire::{be_u32, be_u32s, put_string, put_u32, string, WResult};
use bytes::BufMut;

/// `MON_GET_CS`: a client asked for a compile server (the job now waits).
///
/// From v29 only `request.filename` and `request.lang` travel; below v29 the
/// whole [`GetCs`] body does.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct MonGetCs<'a> {
    /// The request (only file name and language from v29).
    pub request: GetCs<'a>,
    /// Job id the scheduler assigned.
    pub job_id: u32,
    /// Host id of the submitting daemon.
    pub client_id: u32,
}

/// Parses a `MON_GET_CS` body.
#[inline]
pub fn parse_mon_get_cs(i: &[u8], version: u32) -> WResult<'_, MonGetCs<'_>> {
    let (i, request) = if version >= 29 {
        let (i, filename) = string(i)?;
        let (i, lang) = be_u32(i)?;
        (
            i,
            GetCs {
                filename,
                lang: super::Language(lang),
                ..GetCs::default()
            },
        )
    } else {
        parse_get_cs(i, version)?
    };
    let (i, [job_id, client_id]) = be_u32s(i)?;
    Ok((
        i,
        MonGetCs {
            request,
            job_id,
            client_id,
        },
    ))
}

/// Writes a `MON_GET_CS` body.
pub fn write_mon_get_cs(out: &mut impl BufMut, m: &MonGetCs<'_>, version: u32) {
    if version >= 29 {
        put_string(out, m.request.filename);
        put_u32(out, m.request.lang.0);
    } else {
        write_get_cs(out, &m.request, version);
    }
    put_u32(out, m.job_id);
    put_u32(out, m.client_id);
}

/// `MON_JOB_BEGIN`: a server started a remote job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct MonJobBegin {
    /// Job id.
    pub job_id: u32,
    /// Start time, seconds since the epoch.
    pub start_time: u32,
    /// Host id of the compiling server.
    pub host_id: u32,
}

/// Parses a `MON_JOB_BEGIN` body.
#[inline]
pub fn parse_mon_job_begin(i: &[u8]) -> WResult<'_, MonJobBegin> {
    let (i, [job_id, start_time, host_id]) = be_u32s(i)?;
    Ok((
        i,
        MonJobBegin {
            job_id,
            start_time,
            host_id,
        },
    ))
}

/// Writes a `MON_JOB_BEGIN` body.
pub fn write_mon_job_begin(out: &mut impl BufMut, m: &MonJobBegin) {
    put_u32(out, m.job_id);
    put_u32(out, m.start_time);
    put_u32(out, m.host_id);
}

/// `MON_LOCAL_JOB_BEGIN`: a daemon compiles a job on its own host.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct MonLocalJobBegin<'a> {
    /// Host id of the daemon.
    pub host_id: u32,
    /// Job id, from the scheduler's own counter (unique with remote jobs).
    pub job_id: u32,
    /// Start time, seconds since the epoch.
    pub start_time: u32,
    /// The output file.
    pub file: &'a [u8],
}

/// Parses a `MON_LOCAL_JOB_BEGIN` body.
#[inline]
pub fn parse_mon_local_job_begin(i: &[u8]) -> WResult<'_, MonLocalJobBegin<'_>> {
    let (i, [host_id, job_id, start_time]) = be_u32s(i)?;
    let (i, file) = string(i)?;
    Ok((
        i,
        MonLocalJobBegin {
            host_id,
            job_id,
            start_time,
            file,
        },
    ))
}

/// Writes a `MON_LOCAL_JOB_BEGIN` body.
pub fn write_mon_local_job_begin(out: &mut impl BufMut, m: &MonLocalJobBegin<'_>) {
    put_u32(out, m.host_id);
    put_u32(out, m.job_id);
    put_u32(out, m.start_time);
    put_string(out, m.file);
}

/// `MON_STATS`: a host's state as `Key:Value` lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct MonStats<'a> {
    /// Host id.
    pub host_id: u32,
    /// The `Key:Value\n` text.
    pub text: &'a [u8],
}

impl<'a> MonStats<'a> {
    /// The typed statistics in the text.
    #[inline]
    pub fn stats(&self) -> HostStats<'a> {
        HostStats::parse(self.text)
    }
}

/// Parses a `MON_STATS` body.
#[inline]
pub fn parse_mon_stats(i: &[u8]) -> WResult<'_, MonStats<'_>> {
    let (i, host_id) = be_u32(i)?;
    let (i, text) = string(i)?;
    Ok((i, MonStats { host_id, text }))
}

/// Writes a `MON_STATS` body.
pub fn write_mon_stats(out: &mut impl BufMut, m: &MonStats<'_>) {
    put_u32(out, m.host_id);
    put_string(out, m.text);
}
