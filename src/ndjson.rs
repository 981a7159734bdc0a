//! icecream messages as JSON objects, one a line (`icewatch dump`), and the
//! line that marks a new scheduler session among them ([`session_json`]).
//!
//! Each object starts with `"type"`, icecream's own name for the message
//! (`"MON_STATS"`, `"MON_JOB_DONE"`, …, or `"0x99"` for a code icecream does
//! not define), then the decoded fields under the codec's names. Byte strings
//! (file names, host names) are shown as UTF-8, invalid bytes replaced by
//! U+FFFD. A `MON_STATS` text becomes an object of its `Key:Value` lines,
//! numbers as numbers and `NoRemote` as a boolean. Fields the agreed version
//! does not carry are shown as the codec decodes them: 0 or empty. The
//! short `MON_GET_CS` of protocol 29 and later shows only what it carries.
//!
//! ```
//! use icewatch::ndjson::message_json;
//! use icewatch::protocol::{Message, MonJobBegin};
//!
//! let msg = Message::MonJobBegin(MonJobBegin { job_id: 7, start_time: 1700000000, host_id: 2 });
//! let line = serde_json::to_string(&message_json(&msg, 43)).unwrap();
//! assert_eq!(line, r#"{"type":"MON_JOB_BEGIN","job_id":7,"start_time":1700000000,"host_id":2}"#);
//! ```

use crate::protocol::{EnvList, GetCs, JobDone, Message, StrList};
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::Value;
use std::borrow::Cow;

/// A JSON object that keeps its keys in the order they were added.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Object(Vec<(&'static str, Value)>);

impl Object {
    /// An empty object.
    pub fn new() -> Object {
        Object(Vec::new())
    }

    /// Adds a key (last).
    pub fn push(&mut self, key: &'static str, value: impl Into<Value>) -> &mut Object {
        self.0.push((key, value.into()));
        self
    }

    /// Inserts a key at `index` (or last, if beyond the end).
    pub fn insert(
        &mut self,
        index: usize,
        key: &'static str,
        value: impl Into<Value>,
    ) -> &mut Object {
        let index = index.min(self.0.len());
        self.0.insert(index, (key, value.into()));
        self
    }

    /// The value under `key`, if any.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// Turns the object into a `serde_json::Value` (keys then sorted).
    pub fn into_value(self) -> Value {
        Value::Object(
            self.0
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        )
    }
}

impl Serialize for Object {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// A wire string as text, invalid UTF-8 replaced.
fn text(bytes: &[u8]) -> Value {
    Value::String(String::from_utf8_lossy(bytes).into_owned())
}

fn strings(list: &StrList<'_>) -> Value {
    Value::Array(list.iter().map(text).collect())
}

fn environments(list: &EnvList<'_>) -> Value {
    Value::Array(
        list.iter()
            .map(|e| {
                let mut o = Object::new();
                o.push("platform", text(e.platform))
                    .push("version", text(e.version));
                o.into_value()
            })
            .collect(),
    )
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    s
}

/// The `Key:Value` lines of a `MON_STATS` text as an object (keys sorted).
pub fn stats_object(text_bytes: &[u8]) -> serde_json::Map<String, Value> {
    let mut o = serde_json::Map::new();
    for line in text_bytes.split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let key = String::from_utf8_lossy(&line[..colon]).into_owned();
        let value = typed_stat(&key, &String::from_utf8_lossy(&line[colon + 1..]));
        o.insert(key, value);
    }
    o
}

fn typed_stat(key: &str, value: &str) -> Value {
    match key {
        "MaxJobs" | "Version" | "Load" | "LoadAvg1" | "LoadAvg5" | "LoadAvg10" | "FreeMem" => value
            .parse::<u64>()
            .map(Value::from)
            .unwrap_or_else(|_| Value::from(value)),
        "Speed" => value
            .parse::<f64>()
            .ok()
            .and_then(|f| serde_json::Number::from_f64(f).map(Value::Number))
            .unwrap_or_else(|| Value::from(value)),
        "NoRemote" => match value {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            other => Value::from(other),
        },
        _ => Value::from(value),
    }
}

fn job_done(o: &mut Object, d: &JobDone) {
    o.push("job_id", d.job_id)
        .push("exit_code", d.exit_code_signed())
        .push("real_ms", d.real_ms)
        .push("user_ms", d.user_ms)
        .push("sys_ms", d.sys_ms)
        .push("page_faults", d.page_faults)
        .push("in_compressed", d.in_compressed)
        .push("in_uncompressed", d.in_uncompressed)
        .push("out_compressed", d.out_compressed)
        .push("out_uncompressed", d.out_uncompressed)
        .push("flags", d.flags)
        .push("client_count", d.client_count);
}

fn get_cs_rest(o: &mut Object, r: &GetCs<'_>) {
    o.push("environments", environments(&r.environments))
        .push("count", r.count)
        .push("target", text(r.target))
        .push("arg_flags", r.arg_flags)
        .push("request_client_id", r.client_id)
        .push("preferred_host", text(r.preferred_host))
        .push("ignore_unverified", r.ignore_unverified)
        .push("minimal_host_version", r.minimal_host_version)
        .push("client_count", r.client_count)
        .push("required_features", r.required_features)
        .push("niceness", r.niceness);
}

/// The JSON object for one message decoded at `version`.
pub fn message_json(msg: &Message<'_>, version: u32) -> Object {
    let mut o = Object::new();
    let ty: Cow<'static, str> = match msg.ty().name() {
        Some(name) => Cow::Borrowed(name),
        None => Cow::Owned(msg.ty().to_string()),
    };
    o.push("type", ty.into_owned());
    match msg {
        Message::Ping
        | Message::End
        | Message::Timeout
        | Message::MonLogin
        | Message::GetInternals => {}
        Message::Text(t) => {
            o.push("text", text(t));
        }
        Message::GetNativeEnv(m) => {
            o.push("compiler", text(m.compiler))
                .push("extra_files", strings(&m.extra_files))
                .push("compression", text(m.compression));
        }
        Message::NativeEnv(m) => {
            o.push("native_version", text(m.native_version));
        }
        Message::GetCs(r) => {
            o.push("filename", text(r.filename))
                .push("lang", r.lang.to_string());
            get_cs_rest(&mut o, r);
        }
        Message::UseCs(m) => {
            o.push("job_id", m.job_id)
                .push("port", m.port)
                .push("hostname", text(m.hostname))
                .push("host_platform", text(m.host_platform))
                .push("got_env", m.got_env)
                .push("client_id", m.client_id)
                .push("matched_job_id", m.matched_job_id);
        }
        Message::CompileFile(m) => {
            o.push("lang", m.lang.to_string())
                .push("job_id", m.job_id)
                .push("flags", strings(&m.flags))
                .push("rest_flags", strings(&m.rest_flags))
                .push("environment_version", text(m.environment_version))
                .push("target_platform", text(m.target_platform))
                .push("compiler_name", text(m.compiler_name))
                .push("input_file", text(m.input_file))
                .push("working_directory", text(m.working_directory))
                .push("output_file", text(m.output_file))
                .push("dwarf_fission", m.dwarf_fission);
        }
        Message::FileChunk(m) => {
            o.push("uncompressed_len", m.uncompressed_len)
                .push("compression", m.compression)
                .push("data_len", m.data.len());
        }
        Message::CompileResult(m) => {
            o.push("err", text(m.err))
                .push("out", text(m.out))
                .push("status", m.status)
                .push("was_out_of_memory", m.was_out_of_memory)
                .push("have_dwo_file", m.have_dwo_file);
        }
        Message::JobBegin(m) => {
            o.push("job_id", m.job_id)
                .push("start_time", m.start_time)
                .push("client_count", m.client_count);
        }
        Message::JobDone(d) | Message::MonJobDone(d) => job_done(&mut o, d),
        Message::JobLocalBegin(m) => {
            o.push("start_time", m.start_time)
                .push("output_file", text(m.output_file))
                .push("id", m.id)
                .push("full_job", m.full_job);
        }
        Message::JobLocalDone(m) => {
            o.push("job_id", m.job_id);
        }
        Message::Login(m) => {
            o.push("port", m.port)
                .push("max_jobs", m.max_jobs)
                .push("environments", environments(&m.environments))
                .push("node_name", text(m.node_name))
                .push("host_platform", text(m.host_platform))
                .push("chroot_possible", m.chroot_possible)
                .push("no_remote", m.no_remote)
                .push("features", m.features);
        }
        Message::Stats(m) => {
            o.push("load", m.load)
                .push("load_avg1", m.load_avg1)
                .push("load_avg5", m.load_avg5)
                .push("load_avg10", m.load_avg10)
                .push("free_mem", m.free_mem);
        }
        Message::MonGetCs(m) => {
            o.push("job_id", m.job_id)
                .push("client_id", m.client_id)
                .push("filename", text(m.request.filename))
                .push("lang", m.request.lang.to_string());
            if version < 29 {
                get_cs_rest(&mut o, &m.request);
            }
        }
        Message::MonJobBegin(m) => {
            o.push("job_id", m.job_id)
                .push("start_time", m.start_time)
                .push("host_id", m.host_id);
        }
        Message::MonLocalJobBegin(m) => {
            o.push("host_id", m.host_id)
                .push("job_id", m.job_id)
                .push("start_time", m.start_time)
                .push("file", text(m.file));
        }
        Message::MonStats(m) => {
            o.push("host_id", m.host_id)
                .push("stats", stats_object(m.text));
        }
        Message::EnvTransfer(m) => {
            o.push("name", text(m.name)).push("target", text(m.target));
        }
        Message::StatusText(m) => {
            o.push("text", text(m.text));
        }
        Message::CsConf(m) => {
            o.push("max_scheduler_pong", m.max_scheduler_pong)
                .push("max_scheduler_ping", m.max_scheduler_ping)
                .push("bench_source", text(m.bench_source));
        }
        Message::VerifyEnv(m) => {
            o.push("environment", text(m.environment))
                .push("target", text(m.target));
        }
        Message::VerifyEnvResult(m) => {
            o.push("ok", m.ok);
        }
        Message::BlacklistHostEnv(m) => {
            o.push("environment", text(m.environment))
                .push("target", text(m.target))
                .push("hostname", text(m.hostname));
        }
        Message::NoCs(m) => {
            o.push("job_id", m.job_id).push("client_id", m.client_id);
        }
        Message::Unknown { body, .. } => {
            o.push("body", hex(body));
        }
    }
    o
}

/// The line `icewatch dump` prints where a new scheduler session begins:
/// at a recording's session mark, or when a live dump connects again. The
/// first session has none. `number` is the session's (2 for the first
/// reconnection), `at_ms` its time as the messages' `at_ms` count it, and
/// `protocol` the version agreed in the new session, which the messages
/// after it are decoded at. It has no `"type"`: it is not a message.
///
/// ```
/// let line = serde_json::to_string(&icewatch::ndjson::session_json(2, 9000, 43)).unwrap();
/// assert_eq!(line, r#"{"session":2,"at_ms":9000,"protocol":43}"#);
/// ```
pub fn session_json(number: u32, at_ms: u64, protocol: u32) -> Object {
    let mut o = Object::new();
    o.push("session", number)
        .push("at_ms", at_ms)
        .push("protocol", protocol);
    o
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
                return serde_json::to_string(&message_json(&msg, version)).unwrap();
            }
            input = rest;
        }
        panic!("no message of type {ty:#x}");
    }

    #[test]
    fn host_stats_become_a_typed_object() {
        let line = first_of(include_bytes!("../tests/data/basic.v43.bin"), 0x57);
        assert_eq!(
            line,
            r#"{"type":"MON_STATS","host_id":1,"stats":{"Features":"env_xz env_zstd","IP":"127.0.0.1","Load":28,"MaxJobs":2,"Name":"localice","NoRemote":true,"Platform":"x86_64","Speed":0.0,"Version":43}}"#
        );
    }

    #[test]
    fn the_long_mon_get_cs_below_29_shows_the_whole_request() {
        let short = first_of(include_bytes!("../tests/data/basic.v43.bin"), 0x53);
        assert!(!short.contains("environments"), "{short}");
        let long = first_of(include_bytes!("../tests/data/basic.v22.bin"), 0x53);
        assert!(long.contains(r#""environments":["#), "{long}");
        assert!(
            long.starts_with(r#"{"type":"MON_GET_CS","job_id":"#),
            "{long}"
        );
    }

    #[test]
    fn job_done_shows_a_signed_exit_code_and_unknown_types_their_body() {
        let done = Message::MonJobDone(JobDone {
            job_id: 3,
            exit_code: u32::MAX,
            ..JobDone::default()
        });
        let line = serde_json::to_string(&message_json(&done, 44)).unwrap();
        assert!(line.starts_with(r#"{"type":"MON_JOB_DONE","job_id":3,"exit_code":-1,"#));
        let unknown = Message::Unknown {
            ty: crate::protocol::MsgType(0x99),
            body: b"\x01\xff",
        };
        let line = serde_json::to_string(&message_json(&unknown, 44)).unwrap();
        assert_eq!(line, r#"{"type":"0x99","body":"01ff"}"#);
    }

    #[test]
    fn file_names_that_are_not_utf8_are_shown_with_replacements() {
        let msg = Message::MonLocalJobBegin(crate::protocol::MonLocalJobBegin {
            host_id: 1,
            job_id: 2,
            start_time: 3,
            file: b"caf\xe9.o",
        });
        let line = serde_json::to_string(&message_json(&msg, 44)).unwrap();
        assert!(line.contains("\"file\":\"caf\u{fffd}.o\""), "{line}");
    }
}
