//! icecream messages as JSON objects, one a line (`icewatch dump`), and the
//! line that marks a new scheduler session among them ([`SessionJson`]).
//!
//! Each object starts with `"type"`, icecream's own name for the message
//! (`"MON_STATS"`, `"MON_JOB_DONE"`, …, or `"0x99"` for a code icecream does
//! not define), then the decoded fields under the codec's names. Byte strings
//! (file names, host names) are shown as UTF-8, invalid bytes replaced by
//! U+FFFD. A `MON_STATS` text becomes an object of its `Key:Value` lines as
//! [`HostStats`](crate::protocol::stats::HostStats) reads them: in the
//! scheduler's order, numbers as numbers and `NoRemote` as a boolean, keys
//! it does not know and values that do not parse left out. Fields the
//! agreed version does not carry are shown as the codec decodes them: 0 or
//! empty. The short `MON_GET_CS` of protocol 29 and later shows only what
//! it carries.
//!
//! Every line is written straight to the serializer (serde), with no map
//! in between.
//!
//! ```
//! use icewatch::capture::ndjson::MessageJson;
//! use icewatch::protocol::Message;
//!
//! let msg = Message::mon_job_begin(7, 2, 1700000000);
//! let line = serde_json::to_string(&MessageJson::new(&msg, 43)).unwrap();
//! assert_eq!(line, r#"{"type":"MON_JOB_BEGIN","job_id":7,"start_time":1700000000,"host_id":2}"#);
//! let line = serde_json::to_string(&MessageJson::new(&msg, 43).at_ms(Some(5))).unwrap();
//! assert!(line.starts_with(r#"{"type":"MON_JOB_BEGIN","at_ms":5,"job_id":7,"#));
//! ```

use crate::protocol::{
    DecodeError, EnvList, Environment, GetCs, JobDone, Message, MsgType, StrList,
};
use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use std::fmt::Display;

/// One message as its JSON line: `"type"`, `"at_ms"` if it has a time,
/// the message's fields, `"raw"` (the frame in hex) if asked for.
#[derive(Clone, Copy, Debug)]
pub struct MessageJson<'a> {
    msg: &'a Message<'a>,
    version: u32,
    at_ms: Option<u64>,
    raw: Option<&'a [u8]>,
}

impl<'a> MessageJson<'a> {
    /// `msg`, decoded at protocol `version`.
    pub fn new(msg: &'a Message<'a>, version: u32) -> MessageJson<'a> {
        MessageJson {
            msg,
            version,
            at_ms: None,
            raw: None,
        }
    }

    /// With `"at_ms"`: when it was received, if known.
    pub fn at_ms(self, at_ms: Option<u64>) -> MessageJson<'a> {
        MessageJson { at_ms, ..self }
    }

    /// With `"raw"`: the whole frame it came in, if given, in hex.
    pub fn raw(self, frame: Option<&'a [u8]>) -> MessageJson<'a> {
        MessageJson { raw: frame, ..self }
    }
}

/// The line for a frame whose body does not decode: its `"type"`, its
/// `"at_ms"` and `"raw"` as a message's, and the `"error"`.
#[derive(Clone, Debug, Serialize)]
pub struct InvalidJson<'a> {
    /// The frame's type code.
    #[serde(rename = "type", serialize_with = "shown")]
    pub ty: MsgType,
    /// When it was received, if known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at_ms: Option<u64>,
    /// Why it does not decode.
    #[serde(serialize_with = "shown")]
    pub error: &'a DecodeError,
    /// The whole frame, if asked for, in hex.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "hex_of")]
    pub raw: Option<&'a [u8]>,
}

/// The line `icewatch dump` prints where a new scheduler session begins: at
/// a recording's session mark, or when a live dump connects again. The
/// first session has none. It has no `"type"`: it is not a message.
///
/// ```
/// use icewatch::capture::ndjson::SessionJson;
///
/// let mark = SessionJson { session: 2, at_ms: 9000, scheduler: None, protocol: 43 };
/// assert_eq!(serde_json::to_string(&mark).unwrap(), r#"{"session":2,"at_ms":9000,"protocol":43}"#);
/// let live = SessionJson { scheduler: Some("sched.lan:8765"), ..mark };
/// assert_eq!(
///     serde_json::to_string(&live).unwrap(),
///     r#"{"session":2,"at_ms":9000,"scheduler":"sched.lan:8765","protocol":43}"#
/// );
/// ```
#[derive(Clone, Copy, Debug, Serialize)]
pub struct SessionJson<'a> {
    /// The session's number: 2 for the first reconnection.
    pub session: u32,
    /// When it began, as the messages' `at_ms` count it.
    pub at_ms: u64,
    /// The scheduler, as shown to people, when read live.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheduler: Option<&'a str>,
    /// The version agreed in the new session, which the messages after it
    /// are decoded at.
    pub protocol: u32,
}

/// Serializes `value` as its `Display` text.
fn shown<S: Serializer>(value: &impl Display, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(value)
}

fn hex_of<S: Serializer>(bytes: &Option<&[u8]>, serializer: S) -> Result<S::Ok, S::Error> {
    match bytes {
        Some(bytes) => serializer.serialize_str(&hex::encode(bytes)),
        None => serializer.serialize_none(),
    }
}

/// A value shown as its `Display` text (a type code, a language).
struct Shown<T>(T);

impl<T: Display> Serialize for Shown<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

/// A wire string as text, invalid UTF-8 replaced.
struct Text<'a>(&'a [u8]);

impl Serialize for Text<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&String::from_utf8_lossy(self.0))
    }
}

/// A list of wire strings, as an array of texts.
struct Strings<'a>(&'a StrList<'a>);

impl Serialize for Strings<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(Text))
    }
}

/// A list of environments, as an array of `{"platform", "version"}`.
struct Environments<'a>(&'a EnvList<'a>);

impl<'a> Serialize for Environments<'a> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Entry<'a> {
            platform: Text<'a>,
            version: Text<'a>,
        }
        let entry = |e: Environment<'a>| Entry {
            platform: Text(e.platform),
            version: Text(e.version),
        };
        serializer.collect_seq(self.0.iter().map(entry))
    }
}

impl Serialize for MessageJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("type", &Shown(self.msg.ty()))?;
        if let Some(at_ms) = self.at_ms {
            map.serialize_entry("at_ms", &at_ms)?;
        }
        fields(&mut map, self.msg, self.version)?;
        if let Some(raw) = self.raw {
            map.serialize_entry("raw", &hex::encode(raw))?;
        }
        map.end()
    }
}

/// The fields of `msg`, in wire order.
fn fields<M: SerializeMap>(o: &mut M, msg: &Message<'_>, version: u32) -> Result<(), M::Error> {
    match msg {
        Message::Ping
        | Message::End
        | Message::Timeout
        | Message::MonLogin
        | Message::GetInternals => {}
        Message::Text(t) => o.serialize_entry("text", &Text(t))?,
        Message::GetNativeEnv(m) => {
            o.serialize_entry("compiler", &Text(m.compiler))?;
            o.serialize_entry("extra_files", &Strings(&m.extra_files))?;
            o.serialize_entry("compression", &Text(m.compression))?;
        }
        Message::NativeEnv(m) => o.serialize_entry("native_version", &Text(m.native_version))?,
        Message::GetCs(r) => {
            o.serialize_entry("filename", &Text(r.filename))?;
            o.serialize_entry("lang", &Shown(r.lang))?;
            get_cs_rest(o, r)?;
        }
        Message::UseCs(m) => {
            o.serialize_entry("job_id", &m.job_id)?;
            o.serialize_entry("port", &m.port)?;
            o.serialize_entry("hostname", &Text(m.hostname))?;
            o.serialize_entry("host_platform", &Text(m.host_platform))?;
            o.serialize_entry("got_env", &m.got_env)?;
            o.serialize_entry("client_id", &m.client_id)?;
            o.serialize_entry("matched_job_id", &m.matched_job_id)?;
        }
        Message::CompileFile(m) => {
            o.serialize_entry("lang", &Shown(m.lang))?;
            o.serialize_entry("job_id", &m.job_id)?;
            o.serialize_entry("flags", &Strings(&m.flags))?;
            o.serialize_entry("rest_flags", &Strings(&m.rest_flags))?;
            o.serialize_entry("environment_version", &Text(m.environment_version))?;
            o.serialize_entry("target_platform", &Text(m.target_platform))?;
            o.serialize_entry("compiler_name", &Text(m.compiler_name))?;
            o.serialize_entry("input_file", &Text(m.input_file))?;
            o.serialize_entry("working_directory", &Text(m.working_directory))?;
            o.serialize_entry("output_file", &Text(m.output_file))?;
            o.serialize_entry("dwarf_fission", &m.dwarf_fission)?;
        }
        Message::FileChunk(m) => {
            o.serialize_entry("uncompressed_len", &m.uncompressed_len)?;
            o.serialize_entry("compression", &m.compression)?;
            o.serialize_entry("data_len", &m.data.len())?;
        }
        Message::CompileResult(m) => {
            o.serialize_entry("err", &Text(m.err))?;
            o.serialize_entry("out", &Text(m.out))?;
            o.serialize_entry("status", &m.status)?;
            o.serialize_entry("was_out_of_memory", &m.was_out_of_memory)?;
            o.serialize_entry("have_dwo_file", &m.have_dwo_file)?;
        }
        Message::JobBegin(m) => {
            o.serialize_entry("job_id", &m.job_id)?;
            o.serialize_entry("start_time", &m.start_time)?;
            o.serialize_entry("client_count", &m.client_count)?;
        }
        Message::JobDone(d) | Message::MonJobDone(d) => job_done(o, d)?,
        Message::JobLocalBegin(m) => {
            o.serialize_entry("start_time", &m.start_time)?;
            o.serialize_entry("output_file", &Text(m.output_file))?;
            o.serialize_entry("id", &m.id)?;
            o.serialize_entry("full_job", &m.full_job)?;
        }
        Message::JobLocalDone(m) => o.serialize_entry("job_id", &m.job_id)?,
        Message::Login(m) => {
            o.serialize_entry("port", &m.port)?;
            o.serialize_entry("max_jobs", &m.max_jobs)?;
            o.serialize_entry("environments", &Environments(&m.environments))?;
            o.serialize_entry("node_name", &Text(m.node_name))?;
            o.serialize_entry("host_platform", &Text(m.host_platform))?;
            o.serialize_entry("chroot_possible", &m.chroot_possible)?;
            o.serialize_entry("no_remote", &m.no_remote)?;
            o.serialize_entry("features", &m.features)?;
        }
        Message::Stats(m) => {
            o.serialize_entry("load", &m.load)?;
            o.serialize_entry("load_avg1", &m.load_avg1)?;
            o.serialize_entry("load_avg5", &m.load_avg5)?;
            o.serialize_entry("load_avg10", &m.load_avg10)?;
            o.serialize_entry("free_mem", &m.free_mem)?;
        }
        Message::MonGetCs(m) => {
            o.serialize_entry("job_id", &m.job_id)?;
            o.serialize_entry("client_id", &m.client_id)?;
            o.serialize_entry("filename", &Text(m.request.filename))?;
            o.serialize_entry("lang", &Shown(m.request.lang))?;
            if version < 29 {
                get_cs_rest(o, &m.request)?;
            }
        }
        Message::MonJobBegin(m) => {
            o.serialize_entry("job_id", &m.job_id)?;
            o.serialize_entry("start_time", &m.start_time)?;
            o.serialize_entry("host_id", &m.host_id)?;
        }
        Message::MonLocalJobBegin(m) => {
            o.serialize_entry("host_id", &m.host_id)?;
            o.serialize_entry("job_id", &m.job_id)?;
            o.serialize_entry("start_time", &m.start_time)?;
            o.serialize_entry("file", &Text(m.file))?;
        }
        Message::MonStats(m) => {
            o.serialize_entry("host_id", &m.host_id)?;
            o.serialize_entry("stats", &m.stats())?;
        }
        Message::EnvTransfer(m) => {
            o.serialize_entry("name", &Text(m.name))?;
            o.serialize_entry("target", &Text(m.target))?;
        }
        Message::StatusText(m) => o.serialize_entry("text", &Text(m.text))?,
        Message::CsConf(m) => {
            o.serialize_entry("max_scheduler_pong", &m.max_scheduler_pong)?;
            o.serialize_entry("max_scheduler_ping", &m.max_scheduler_ping)?;
            o.serialize_entry("bench_source", &Text(m.bench_source))?;
        }
        Message::VerifyEnv(m) => {
            o.serialize_entry("environment", &Text(m.environment))?;
            o.serialize_entry("target", &Text(m.target))?;
        }
        Message::VerifyEnvResult(m) => o.serialize_entry("ok", &m.ok)?,
        Message::BlacklistHostEnv(m) => {
            o.serialize_entry("environment", &Text(m.environment))?;
            o.serialize_entry("target", &Text(m.target))?;
            o.serialize_entry("hostname", &Text(m.hostname))?;
        }
        Message::NoCs(m) => {
            o.serialize_entry("job_id", &m.job_id)?;
            o.serialize_entry("client_id", &m.client_id)?;
        }
        Message::Unknown { body, .. } => o.serialize_entry("body", &hex::encode(body))?,
    }
    Ok(())
}

fn job_done<M: SerializeMap>(o: &mut M, d: &JobDone) -> Result<(), M::Error> {
    o.serialize_entry("job_id", &d.job_id)?;
    o.serialize_entry("exit_code", &d.exit_code_signed())?;
    o.serialize_entry("real_ms", &d.real_ms)?;
    o.serialize_entry("user_ms", &d.user_ms)?;
    o.serialize_entry("sys_ms", &d.sys_ms)?;
    o.serialize_entry("page_faults", &d.page_faults)?;
    o.serialize_entry("in_compressed", &d.in_compressed)?;
    o.serialize_entry("in_uncompressed", &d.in_uncompressed)?;
    o.serialize_entry("out_compressed", &d.out_compressed)?;
    o.serialize_entry("out_uncompressed", &d.out_uncompressed)?;
    o.serialize_entry("flags", &d.flags)?;
    o.serialize_entry("client_count", &d.client_count)
}

/// A `GET_CS` request past its file name and language.
fn get_cs_rest<M: SerializeMap>(o: &mut M, r: &GetCs<'_>) -> Result<(), M::Error> {
    o.serialize_entry("environments", &Environments(&r.environments))?;
    o.serialize_entry("count", &r.count)?;
    o.serialize_entry("target", &Text(r.target))?;
    o.serialize_entry("arg_flags", &r.arg_flags)?;
    o.serialize_entry("request_client_id", &r.client_id)?;
    o.serialize_entry("preferred_host", &Text(r.preferred_host))?;
    o.serialize_entry("ignore_unverified", &r.ignore_unverified)?;
    o.serialize_entry("minimal_host_version", &r.minimal_host_version)?;
    o.serialize_entry("client_count", &r.client_count)?;
    o.serialize_entry("required_features", &r.required_features)?;
    o.serialize_entry("niceness", &r.niceness)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::frame::{parse_frame, MAX_MSG_SIZE};

    fn first_of(capture: &[u8], ty: u32) -> String {
        let version = u32::from_le_bytes([capture[4], capture[5], capture[6], capture[7]]);
        let mut input = &capture[8..];
        while let Ok((rest, raw)) = parse_frame(input, MAX_MSG_SIZE) {
            if raw.ty.0 == ty {
                let msg = Message::decode(raw.ty, raw.body, version).unwrap();
                return serde_json::to_string(&MessageJson::new(&msg, version)).unwrap();
            }
            input = rest;
        }
        panic!("no message of type {ty:#x}");
    }

    #[test]
    fn host_stats_become_a_typed_object() {
        let line = first_of(include_bytes!("../../tests/data/basic.v43.bin"), 0x57);
        assert_eq!(
            line,
            r#"{"type":"MON_STATS","host_id":1,"stats":{"Name":"localice","IP":"127.0.0.1","MaxJobs":2,"NoRemote":true,"Platform":"x86_64","Version":43,"Features":"env_xz env_zstd","Speed":0.0,"Load":28}}"#
        );
        let offline = Message::mon_stats(3, "Colour:blue\nState:Offline\n");
        let line = serde_json::to_string(&MessageJson::new(&offline, 43)).unwrap();
        assert_eq!(
            line,
            r#"{"type":"MON_STATS","host_id":3,"stats":{"State":"Offline"}}"#
        );
    }

    #[test]
    fn the_long_mon_get_cs_below_29_shows_the_whole_request() {
        let short = first_of(include_bytes!("../../tests/data/basic.v43.bin"), 0x53);
        assert!(!short.contains("environments"), "{short}");
        let long = first_of(include_bytes!("../../tests/data/basic.v22.bin"), 0x53);
        assert!(long.contains(r#""environments":["#), "{long}");
        assert!(
            long.starts_with(r#"{"type":"MON_GET_CS","job_id":"#),
            "{long}"
        );
    }

    #[test]
    fn job_done_shows_a_signed_exit_code_and_unknown_types_their_body() {
        let done = Message::MonJobDone(JobDone::new(3, u32::MAX));
        let line = serde_json::to_string(&MessageJson::new(&done, 44)).unwrap();
        assert!(line.starts_with(r#"{"type":"MON_JOB_DONE","job_id":3,"exit_code":-1,"#));
        let unknown = Message::Unknown {
            ty: MsgType(0x99),
            body: b"\x01\xff",
        };
        let raw = [0, 0, 0, 6, 0, 0, 0, 0x99, 1, 0xff];
        let json = MessageJson::new(&unknown, 44)
            .at_ms(Some(3))
            .raw(Some(&raw));
        let line = serde_json::to_string(&json).unwrap();
        assert_eq!(
            line,
            r#"{"type":"0x99","at_ms":3,"body":"01ff","raw":"000000060000009901ff"}"#
        );
    }

    #[test]
    fn a_body_that_does_not_decode_is_a_line_with_its_error() {
        let error = Message::decode(MsgType::MON_JOB_BEGIN, &[0, 0, 0, 1], 43).unwrap_err();
        let line = InvalidJson {
            ty: MsgType::MON_JOB_BEGIN,
            at_ms: None,
            error: &error,
            raw: None,
        };
        assert_eq!(
            serde_json::to_string(&line).unwrap(),
            format!(r#"{{"type":"MON_JOB_BEGIN","error":"{error}"}}"#)
        );
    }

    #[test]
    fn file_names_that_are_not_utf8_are_shown_with_replacements() {
        let msg = Message::mon_local_job_begin(2, 1, 3, b"caf\xe9.o");
        let line = serde_json::to_string(&MessageJson::new(&msg, 44)).unwrap();
        assert!(line.contains("\"file\":\"caf\u{fffd}.o\""), "{line}");
    }
}
