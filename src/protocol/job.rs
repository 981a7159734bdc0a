//! Messages about compile jobs, between client, scheduler and daemon:
//! `GET_CS`, `USE_CS`, `NO_CS`, `COMPILE_FILE`, `FILE_CHUNK`,
//! `COMPILE_RESULT`, `JOB_BEGIN`, `JOB_DONE`, `JOB_LOCAL_BEGIN`,
//! `JOB_LOCAL_DONE`.
//!
//! Each `parse_*` reads a whole body at an agreed version; each `write_*`
//! mirrors it. Fields introduced at version N are noted `(vN)`: below that
//! version they decode as 0 or empty and are not written.

use super::wire::{be_u32, be_u32s, put_string, put_u32, string, EnvList, StrList, WResult};
use super::Language;
use bytes::BufMut;

/// `GET_CS`: a client asks the scheduler for a compile server.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct GetCs<'a> {
    /// Environments the job can use.
    pub environments: EnvList<'a>,
    /// The source file (shortened by the client).
    pub filename: &'a [u8],
    /// Source language.
    pub lang: Language,
    /// How many servers the client asks for at once.
    pub count: u32,
    /// Target platform.
    pub target: &'a [u8],
    /// Argument flags.
    pub arg_flags: u32,
    /// The client's own id for this request.
    pub client_id: u32,
    /// (v22) Host the client would like.
    pub preferred_host: &'a [u8],
    /// (v31) 1 if the minimal host version is at least 31.
    pub ignore_unverified: u32,
    /// (v34) Lowest protocol version a server must speak.
    pub minimal_host_version: u32,
    /// (v39) Number of jobs the client runs.
    pub client_count: u32,
    /// (v42) Features the server must have (`NODE_FEATURE_*`).
    pub required_features: u32,
    /// (v43) Niceness of the job, 0 to 20.
    pub niceness: u32,
}

/// Parses a `GET_CS` body.
pub fn parse_get_cs(i: &[u8], version: u32) -> WResult<'_, GetCs<'_>> {
    let (i, environments) = EnvList::parse(i)?;
    let (i, filename) = string(i)?;
    let (i, lang) = be_u32(i)?;
    let (i, count) = be_u32(i)?;
    let (i, target) = string(i)?;
    let (i, arg_flags) = be_u32(i)?;
    let (mut i, client_id) = be_u32(i)?;
    let mut m = GetCs {
        environments,
        filename,
        lang: Language(lang),
        count,
        target,
        arg_flags,
        client_id,
        ..GetCs::default()
    };
    if version >= 22 {
        (i, m.preferred_host) = string(i)?;
    }
    if version >= 31 {
        (i, m.ignore_unverified) = be_u32(i)?;
    }
    if version >= 34 {
        (i, m.minimal_host_version) = be_u32(i)?;
    }
    if version >= 39 {
        (i, m.client_count) = be_u32(i)?;
    }
    if version >= 42 {
        (i, m.required_features) = be_u32(i)?;
    }
    if version >= 43 {
        (i, m.niceness) = be_u32(i)?;
    }
    Ok((i, m))
}

/// Writes a `GET_CS` body.
pub fn write_get_cs(out: &mut impl BufMut, m: &GetCs<'_>, version: u32) {
    m.environments.write(out);
    put_string(out, m.filename);
    put_u32(out, m.lang.0);
    put_u32(out, m.count);
    put_string(out, m.target);
    put_u32(out, m.arg_flags);
    put_u32(out, m.client_id);
    if version >= 22 {
        put_string(out, m.preferred_host);
    }
    if version >= 31 {
        put_u32(out, m.ignore_unverified);
    }
    if version >= 34 {
        put_u32(out, m.minimal_host_version);
    }
    if version >= 39 {
        put_u32(out, m.client_count);
    }
    if version >= 42 {
        put_u32(out, m.required_features);
    }
    if version >= 43 {
        put_u32(out, m.niceness);
    }
}

/// `USE_CS`: the scheduler tells a client which server compiles its job.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct UseCs<'a> {
    /// Job id the scheduler assigned.
    pub job_id: u32,
    /// The server's daemon port.
    pub port: u32,
    /// The server's host name or address.
    pub hostname: &'a [u8],
    /// The server's platform.
    pub host_platform: &'a [u8],
    /// Non-zero if the server already has the environment.
    pub got_env: u32,
    /// The client's id from `GET_CS`.
    pub client_id: u32,
    /// (v28) Id of an earlier job this one matches.
    pub matched_job_id: u32,
}

/// Parses a `USE_CS` body.
pub fn parse_use_cs(i: &[u8], version: u32) -> WResult<'_, UseCs<'_>> {
    let (i, job_id) = be_u32(i)?;
    let (i, port) = be_u32(i)?;
    let (i, hostname) = string(i)?;
    let (i, host_platform) = string(i)?;
    let (i, got_env) = be_u32(i)?;
    let (mut i, client_id) = be_u32(i)?;
    let mut matched_job_id = 0;
    if version >= 28 {
        (i, matched_job_id) = be_u32(i)?;
    }
    let m = UseCs {
        job_id,
        port,
        hostname,
        host_platform,
        got_env,
        client_id,
        matched_job_id,
    };
    Ok((i, m))
}

/// Writes a `USE_CS` body.
pub fn write_use_cs(out: &mut impl BufMut, m: &UseCs<'_>, version: u32) {
    put_u32(out, m.job_id);
    put_u32(out, m.port);
    put_string(out, m.hostname);
    put_string(out, m.host_platform);
    put_u32(out, m.got_env);
    put_u32(out, m.client_id);
    if version >= 28 {
        put_u32(out, m.matched_job_id);
    }
}

/// `NO_CS`: the scheduler has no server for a job; compile locally.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct NoCs {
    /// Job id.
    pub job_id: u32,
    /// The client's id from `GET_CS`.
    pub client_id: u32,
}

/// Parses a `NO_CS` body.
pub fn parse_no_cs(i: &[u8]) -> WResult<'_, NoCs> {
    let (i, job_id) = be_u32(i)?;
    let (i, client_id) = be_u32(i)?;
    Ok((i, NoCs { job_id, client_id }))
}

/// Writes a `NO_CS` body.
pub fn write_no_cs(out: &mut impl BufMut, m: &NoCs) {
    put_u32(out, m.job_id);
    put_u32(out, m.client_id);
}

/// `COMPILE_FILE`: a client hands a job to a server.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct CompileFile<'a> {
    /// Source language.
    pub lang: Language,
    /// Job id.
    pub job_id: u32,
    /// Compiler arguments: from v41 every remote argument in order, below
    /// v41 the "remote" arguments only.
    pub flags: StrList<'a>,
    /// (below v41 only) The "rest" arguments.
    pub rest_flags: StrList<'a>,
    /// Environment to compile in.
    pub environment_version: &'a [u8],
    /// Target platform.
    pub target_platform: &'a [u8],
    /// (v30) Compiler binary name on the server.
    pub compiler_name: &'a [u8],
    /// (v34) The input file name.
    pub input_file: &'a [u8],
    /// (v34) The client's working directory.
    pub working_directory: &'a [u8],
    /// (v35) The output file name.
    pub output_file: &'a [u8],
    /// (v35) Non-zero if `-gsplit-dwarf` is on.
    pub dwarf_fission: u32,
}

/// Parses a `COMPILE_FILE` body.
pub fn parse_compile_file(i: &[u8], version: u32) -> WResult<'_, CompileFile<'_>> {
    let (i, lang) = be_u32(i)?;
    let (i, job_id) = be_u32(i)?;
    let (mut i, flags) = StrList::parse(i)?;
    let mut rest_flags = StrList::default();
    if version < 41 {
        (i, rest_flags) = StrList::parse(i)?;
    }
    let (i, environment_version) = string(i)?;
    let (mut i, target_platform) = string(i)?;
    let mut m = CompileFile {
        lang: Language(lang),
        job_id,
        flags,
        rest_flags,
        environment_version,
        target_platform,
        ..CompileFile::default()
    };
    if version >= 30 {
        (i, m.compiler_name) = string(i)?;
    }
    if version >= 34 {
        (i, m.input_file) = string(i)?;
        (i, m.working_directory) = string(i)?;
    }
    if version >= 35 {
        (i, m.output_file) = string(i)?;
        (i, m.dwarf_fission) = be_u32(i)?;
    }
    Ok((i, m))
}

/// Writes a `COMPILE_FILE` body.
pub fn write_compile_file(out: &mut impl BufMut, m: &CompileFile<'_>, version: u32) {
    put_u32(out, m.lang.0);
    put_u32(out, m.job_id);
    m.flags.write(out);
    if version < 41 {
        m.rest_flags.write(out);
    }
    put_string(out, m.environment_version);
    put_string(out, m.target_platform);
    if version >= 30 {
        put_string(out, m.compiler_name);
    }
    if version >= 34 {
        put_string(out, m.input_file);
        put_string(out, m.working_directory);
    }
    if version >= 35 {
        put_string(out, m.output_file);
        put_u32(out, m.dwarf_fission);
    }
}

/// Compression of a [`FileChunk`] payload: LZO.
pub const COMPRESSION_LZO: u32 = 0;
/// Compression of a [`FileChunk`] payload: Zstandard (v40).
pub const COMPRESSION_ZSTD: u32 = 1;

/// `FILE_CHUNK`: a piece of a preprocessed source or object file, kept
/// compressed: this codec never inflates payloads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct FileChunk<'a> {
    /// Size of the payload once decompressed.
    pub uncompressed_len: u32,
    /// (v40) [`COMPRESSION_LZO`] or [`COMPRESSION_ZSTD`]; LZO below v40.
    pub compression: u32,
    /// The compressed bytes.
    pub data: &'a [u8],
}

/// Parses a `FILE_CHUNK` body.
pub fn parse_file_chunk(i: &[u8], version: u32) -> WResult<'_, FileChunk<'_>> {
    let (i, uncompressed_len) = be_u32(i)?;
    let (mut i, compressed_len) = be_u32(i)?;
    let mut compression = COMPRESSION_LZO;
    if version >= 40 {
        (i, compression) = be_u32(i)?;
    }
    let len = compressed_len as usize;
    if i.len() < len {
        return Err(nom::Err::Error(super::wire::WireError {
            at: i,
            expected: "as many payload bytes as the compressed length says",
        }));
    }
    let (data, i) = i.split_at(len);
    Ok((
        i,
        FileChunk {
            uncompressed_len,
            compression,
            data,
        },
    ))
}

/// Writes a `FILE_CHUNK` body.
pub fn write_file_chunk(out: &mut impl BufMut, m: &FileChunk<'_>, version: u32) {
    put_u32(out, m.uncompressed_len);
    put_u32(out, super::wire::wire_len(m.data.len()));
    if version >= 40 {
        put_u32(out, m.compression);
    }
    out.put_slice(m.data);
}

/// `COMPILE_RESULT`: a server reports how the compiler ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct CompileResult<'a> {
    /// The compiler's standard error.
    pub err: &'a [u8],
    /// The compiler's standard output.
    pub out: &'a [u8],
    /// The compiler's exit status.
    pub status: u32,
    /// Non-zero if the server ran out of memory.
    pub was_out_of_memory: u32,
    /// (v35) Non-zero if a `.dwo` file follows.
    pub have_dwo_file: u32,
}

/// Parses a `COMPILE_RESULT` body.
pub fn parse_compile_result(i: &[u8], version: u32) -> WResult<'_, CompileResult<'_>> {
    let (i, err) = string(i)?;
    let (i, out) = string(i)?;
    let (i, status) = be_u32(i)?;
    let (mut i, was_out_of_memory) = be_u32(i)?;
    let mut have_dwo_file = 0;
    if version >= 35 {
        (i, have_dwo_file) = be_u32(i)?;
    }
    Ok((
        i,
        CompileResult {
            err,
            out,
            status,
            was_out_of_memory,
            have_dwo_file,
        },
    ))
}

/// Writes a `COMPILE_RESULT` body.
pub fn write_compile_result(out: &mut impl BufMut, m: &CompileResult<'_>, version: u32) {
    put_string(out, m.err);
    put_string(out, m.out);
    put_u32(out, m.status);
    put_u32(out, m.was_out_of_memory);
    if version >= 35 {
        put_u32(out, m.have_dwo_file);
    }
}

/// `JOB_BEGIN`: a server starts compiling a job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct JobBegin {
    /// Job id.
    pub job_id: u32,
    /// Start time, seconds since the epoch on the server.
    pub start_time: u32,
    /// (v39) Number of jobs the server runs for clients.
    pub client_count: u32,
}

/// Parses a `JOB_BEGIN` body.
pub fn parse_job_begin(i: &[u8], version: u32) -> WResult<'_, JobBegin> {
    let (i, job_id) = be_u32(i)?;
    let (mut i, start_time) = be_u32(i)?;
    let mut client_count = 0;
    if version >= 39 {
        (i, client_count) = be_u32(i)?;
    }
    Ok((
        i,
        JobBegin {
            job_id,
            start_time,
            client_count,
        },
    ))
}

/// Writes a `JOB_BEGIN` body.
pub fn write_job_begin(out: &mut impl BufMut, m: &JobBegin, version: u32) {
    put_u32(out, m.job_id);
    put_u32(out, m.start_time);
    if version >= 39 {
        put_u32(out, m.client_count);
    }
}

/// `JOB_DONE` flag: the message comes from the job's submitter.
pub const JOB_DONE_FROM_SUBMITTER: u32 = 1 << 0;
/// `JOB_DONE` flag: `job_id` is the client's id, the job id is unknown.
pub const JOB_DONE_UNKNOWN_JOB_ID: u32 = 1 << 1;
/// Below v39, this exit code stands for [`JOB_DONE_UNKNOWN_JOB_ID`].
pub const EXIT_CODE_UNKNOWN_JOB_ID: u32 = 200;
/// Exit code the scheduler reports for the jobs of a daemon that went away.
pub const EXIT_CODE_HOST_GONE: u32 = 255;

/// `JOB_DONE` and `MON_JOB_DONE`: a job ended, with its statistics.
///
/// The same body travels as type `MON_JOB_DONE` (0x55) from released
/// schedulers and as `JOB_DONE` (0x4d) from icecream git master.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct JobDone {
    /// Job id.
    pub job_id: u32,
    /// The compiler's exit code as sent (a C `int` in a `u32`).
    pub exit_code: u32,
    /// Wall-clock milliseconds.
    pub real_ms: u32,
    /// User CPU milliseconds.
    pub user_ms: u32,
    /// System CPU milliseconds.
    pub sys_ms: u32,
    /// Major page faults.
    pub page_faults: u32,
    /// Bytes sent to the server, compressed.
    pub in_compressed: u32,
    /// Bytes sent to the server, uncompressed.
    pub in_uncompressed: u32,
    /// Bytes sent back, compressed.
    pub out_compressed: u32,
    /// Bytes sent back, uncompressed.
    pub out_uncompressed: u32,
    /// [`JOB_DONE_FROM_SUBMITTER`], [`JOB_DONE_UNKNOWN_JOB_ID`].
    pub flags: u32,
    /// (v39) Number of jobs the client runs.
    pub client_count: u32,
}

impl JobDone {
    /// Job `job_id` ended with `exit_code`; every statistic zero (set the
    /// ones that matter with struct update syntax).
    pub fn new(job_id: u32, exit_code: u32) -> JobDone {
        JobDone {
            job_id,
            exit_code,
            ..JobDone::default()
        }
    }

    /// The exit code as the signed integer the compiler returned.
    pub fn exit_code_signed(&self) -> i32 {
        self.exit_code as i32
    }

    /// Whether `job_id` is a client id because the job id was unknown
    /// (a flag from v39, exit code 200 below).
    pub fn unknown_job_id(&self, version: u32) -> bool {
        self.flags & JOB_DONE_UNKNOWN_JOB_ID != 0
            || (version < 39 && self.exit_code == EXIT_CODE_UNKNOWN_JOB_ID)
    }
}

/// Parses a `JOB_DONE` / `MON_JOB_DONE` body.
#[inline]
pub fn parse_job_done(i: &[u8], version: u32) -> WResult<'_, JobDone> {
    let (mut i, words) = be_u32s::<11>(i)?;
    #[rustfmt::skip]
    let [
        job_id, exit_code, real_ms, user_ms, sys_ms, page_faults,
        in_compressed, in_uncompressed, out_compressed, out_uncompressed, flags,
    ] = words;
    let mut client_count = 0;
    if version >= 39 {
        (i, client_count) = be_u32(i)?;
    }
    let m = JobDone {
        job_id,
        exit_code,
        real_ms,
        user_ms,
        sys_ms,
        page_faults,
        in_compressed,
        in_uncompressed,
        out_compressed,
        out_uncompressed,
        flags,
        client_count,
    };
    Ok((i, m))
}

/// Writes a `JOB_DONE` / `MON_JOB_DONE` body.
pub fn write_job_done(out: &mut impl BufMut, m: &JobDone, version: u32) {
    for v in [
        m.job_id,
        m.exit_code,
        m.real_ms,
        m.user_ms,
        m.sys_ms,
        m.page_faults,
        m.in_compressed,
        m.in_uncompressed,
        m.out_compressed,
        m.out_uncompressed,
        m.flags,
    ] {
        put_u32(out, v);
    }
    if version >= 39 {
        put_u32(out, m.client_count);
    }
}

/// `JOB_LOCAL_BEGIN`: a daemon starts compiling a job on its own host.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct JobLocalBegin<'a> {
    /// Start time, seconds since the epoch.
    pub start_time: u32,
    /// The output file.
    pub output_file: &'a [u8],
    /// The daemon's id for the job.
    pub id: u32,
    /// (v44) Non-zero if the whole job (preprocessing too) runs locally.
    pub full_job: u32,
}

/// Parses a `JOB_LOCAL_BEGIN` body.
pub fn parse_job_local_begin(i: &[u8], version: u32) -> WResult<'_, JobLocalBegin<'_>> {
    let (i, start_time) = be_u32(i)?;
    let (i, output_file) = string(i)?;
    let (mut i, id) = be_u32(i)?;
    let mut full_job = 0;
    if version >= 44 {
        (i, full_job) = be_u32(i)?;
    }
    Ok((
        i,
        JobLocalBegin {
            start_time,
            output_file,
            id,
            full_job,
        },
    ))
}

/// Writes a `JOB_LOCAL_BEGIN` body.
pub fn write_job_local_begin(out: &mut impl BufMut, m: &JobLocalBegin<'_>, version: u32) {
    put_u32(out, m.start_time);
    put_string(out, m.output_file);
    put_u32(out, m.id);
    if version >= 44 {
        put_u32(out, m.full_job);
    }
}

/// `JOB_LOCAL_DONE`: a local job ended (also sent to monitors).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct JobLocalDone {
    /// Job id (for monitors, the scheduler's id from `MON_LOCAL_JOB_BEGIN`).
    pub job_id: u32,
}

/// Parses a `JOB_LOCAL_DONE` body.
#[inline]
pub fn parse_job_local_done(i: &[u8]) -> WResult<'_, JobLocalDone> {
    let (i, job_id) = be_u32(i)?;
    Ok((i, JobLocalDone { job_id }))
}

/// Writes a `JOB_LOCAL_DONE` body.
pub fn write_job_local_done(out: &mut impl BufMut, m: &JobLocalDone) {
    put_u32(out, m.job_id);
}
