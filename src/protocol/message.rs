//! [`Message`]: every icecream message as one enum, with decoding of a body
//! at an agreed version and encoding of a whole frame.

use super::daemon::*;
use super::job::*;
use super::monitor::*;
use super::MsgType;
use bytes::{BufMut, BytesMut};

/// One decoded icecream message, borrowing from the frame it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message<'a> {
    /// `PING` (no body).
    Ping,
    /// `END`: end of file chunks, or the peer is going away.
    End,
    /// `TIMEOUT` (unused by icecream, no body).
    Timeout,
    /// `GET_NATIVE_ENV`.
    GetNativeEnv(GetNativeEnv<'a>),
    /// `NATIVE_ENV`.
    NativeEnv(NativeEnv<'a>),
    /// `GET_CS`.
    GetCs(GetCs<'a>),
    /// `USE_CS`.
    UseCs(UseCs<'a>),
    /// `COMPILE_FILE`.
    CompileFile(CompileFile<'a>),
    /// `FILE_CHUNK`.
    FileChunk(FileChunk<'a>),
    /// `COMPILE_RESULT`.
    CompileResult(CompileResult<'a>),
    /// `JOB_BEGIN`.
    JobBegin(JobBegin),
    /// `JOB_DONE`, also what icecream git master sends monitors for a job end.
    JobDone(JobDone),
    /// `JOB_LOCAL_BEGIN`.
    JobLocalBegin(JobLocalBegin<'a>),
    /// `JOB_LOCAL_DONE`.
    JobLocalDone(JobLocalDone),
    /// `LOGIN`.
    Login(Login<'a>),
    /// `STATS`.
    Stats(Stats),
    /// `MON_LOGIN` (no body).
    MonLogin,
    /// `MON_GET_CS`.
    MonGetCs(MonGetCs<'a>),
    /// `MON_JOB_BEGIN`.
    MonJobBegin(MonJobBegin),
    /// `MON_JOB_DONE`, what released schedulers send monitors for a job end.
    MonJobDone(JobDone),
    /// `MON_LOCAL_JOB_BEGIN`.
    MonLocalJobBegin(MonLocalJobBegin<'a>),
    /// `MON_STATS`.
    MonStats(MonStats<'a>),
    /// `TRANFER_ENV`.
    EnvTransfer(EnvTransfer<'a>),
    /// `TEXT`: a raw line (used on icecream's text channels).
    Text(&'a [u8]),
    /// `STATUS_TEXT`.
    StatusText(StatusText<'a>),
    /// `GET_INTERNALS` (no body).
    GetInternals,
    /// `CS_CONF`.
    CsConf(CsConf<'a>),
    /// `VERIFY_ENV`.
    VerifyEnv(VerifyEnv<'a>),
    /// `VERIFY_ENV_RESULT`.
    VerifyEnvResult(VerifyEnvResult),
    /// `BLACKLIST_HOST_ENV`.
    BlacklistHostEnv(BlacklistHostEnv<'a>),
    /// `NO_CS`.
    NoCs(NoCs),
    /// `UNKNOWN` (0x41) or a type code this codec does not know, with its
    /// body untouched: a newer peer must not break the connection.
    Unknown {
        /// The type code.
        ty: MsgType,
        /// The body.
        body: &'a [u8],
    },
}

/// A body that does not parse at the agreed version.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid {ty} message at protocol {version}: expected {expected} at body offset {offset} of {len}")]
pub struct DecodeError {
    /// The message type.
    pub ty: MsgType,
    /// The agreed protocol version.
    pub version: u32,
    /// Offset in the body where parsing stopped.
    pub offset: usize,
    /// Length of the body.
    pub len: usize,
    /// What was expected there.
    pub expected: &'static str,
}

impl<'a> Message<'a> {
    /// Decodes a message body of type `ty` at the agreed `version`.
    ///
    /// The whole body must be used: a short body and trailing bytes are both
    /// a [`DecodeError`]. Unknown type codes give [`Message::Unknown`].
    pub fn decode(ty: MsgType, body: &'a [u8], version: u32) -> Result<Message<'a>, DecodeError> {
        let v = version;
        let invalid = |at: &[u8], expected| invalid(ty, version, body, at, expected);
        // Each arm builds the final result in place: a `Message` is large,
        // and copying it between intermediate results costs more than
        // parsing a monitor message.
        macro_rules! whole {
            ($parsed:expr, $variant:path) => {
                match $parsed {
                    Ok(([], m)) => Ok($variant(m)),
                    Ok((rest, _)) => Err(invalid(rest, "end of message")),
                    Err(nom::Err::Error(e) | nom::Err::Failure(e)) => {
                        Err(invalid(e.at, e.expected))
                    }
                    Err(nom::Err::Incomplete(_)) => Err(invalid(&[], "more bytes")),
                }
            };
        }
        macro_rules! bodiless {
            ($msg:expr) => {
                match body {
                    [] => Ok($msg),
                    rest => Err(invalid(rest, "end of message")),
                }
            };
        }
        match ty {
            MsgType::MON_GET_CS => whole!(parse_mon_get_cs(body, v), Message::MonGetCs),
            MsgType::MON_JOB_BEGIN => whole!(parse_mon_job_begin(body), Message::MonJobBegin),
            MsgType::MON_JOB_DONE => whole!(parse_job_done(body, v), Message::MonJobDone),
            MsgType::MON_LOCAL_JOB_BEGIN => {
                whole!(parse_mon_local_job_begin(body), Message::MonLocalJobBegin)
            }
            MsgType::MON_STATS => whole!(parse_mon_stats(body), Message::MonStats),
            MsgType::PING => bodiless!(Message::Ping),
            MsgType::END => bodiless!(Message::End),
            MsgType::TIMEOUT => bodiless!(Message::Timeout),
            MsgType::MON_LOGIN => bodiless!(Message::MonLogin),
            MsgType::GET_INTERNALS => bodiless!(Message::GetInternals),
            MsgType::TEXT => Ok(Message::Text(body)),
            MsgType::GET_NATIVE_ENV => whole!(parse_get_native_env(body, v), Message::GetNativeEnv),
            MsgType::NATIVE_ENV => whole!(parse_native_env(body), Message::NativeEnv),
            MsgType::GET_CS => whole!(parse_get_cs(body, v), Message::GetCs),
            MsgType::USE_CS => whole!(parse_use_cs(body, v), Message::UseCs),
            MsgType::COMPILE_FILE => whole!(parse_compile_file(body, v), Message::CompileFile),
            MsgType::FILE_CHUNK => whole!(parse_file_chunk(body, v), Message::FileChunk),
            MsgType::COMPILE_RESULT => {
                whole!(parse_compile_result(body, v), Message::CompileResult)
            }
            MsgType::JOB_BEGIN => whole!(parse_job_begin(body, v), Message::JobBegin),
            MsgType::JOB_DONE => whole!(parse_job_done(body, v), Message::JobDone),
            MsgType::JOB_LOCAL_BEGIN => {
                whole!(parse_job_local_begin(body, v), Message::JobLocalBegin)
            }
            MsgType::JOB_LOCAL_DONE => whole!(parse_job_local_done(body), Message::JobLocalDone),
            MsgType::LOGIN => whole!(parse_login(body, v), Message::Login),
            MsgType::STATS => whole!(parse_stats(body), Message::Stats),
            MsgType::TRANFER_ENV => whole!(parse_env_transfer(body), Message::EnvTransfer),
            MsgType::STATUS_TEXT => whole!(parse_status_text(body), Message::StatusText),
            MsgType::CS_CONF => whole!(parse_cs_conf(body), Message::CsConf),
            MsgType::VERIFY_ENV => whole!(parse_verify_env(body), Message::VerifyEnv),
            MsgType::VERIFY_ENV_RESULT => {
                whole!(parse_verify_env_result(body), Message::VerifyEnvResult)
            }
            MsgType::BLACKLIST_HOST_ENV => {
                whole!(parse_blacklist_host_env(body), Message::BlacklistHostEnv)
            }
            MsgType::NO_CS => whole!(parse_no_cs(body), Message::NoCs),
            _ => Ok(Message::Unknown { ty, body }),
        }
    }

    /// The message's type code.
    pub fn ty(&self) -> MsgType {
        match self {
            Message::Ping => MsgType::PING,
            Message::End => MsgType::END,
            Message::Timeout => MsgType::TIMEOUT,
            Message::GetNativeEnv(_) => MsgType::GET_NATIVE_ENV,
            Message::NativeEnv(_) => MsgType::NATIVE_ENV,
            Message::GetCs(_) => MsgType::GET_CS,
            Message::UseCs(_) => MsgType::USE_CS,
            Message::CompileFile(_) => MsgType::COMPILE_FILE,
            Message::FileChunk(_) => MsgType::FILE_CHUNK,
            Message::CompileResult(_) => MsgType::COMPILE_RESULT,
            Message::JobBegin(_) => MsgType::JOB_BEGIN,
            Message::JobDone(_) => MsgType::JOB_DONE,
            Message::JobLocalBegin(_) => MsgType::JOB_LOCAL_BEGIN,
            Message::JobLocalDone(_) => MsgType::JOB_LOCAL_DONE,
            Message::Login(_) => MsgType::LOGIN,
            Message::Stats(_) => MsgType::STATS,
            Message::MonLogin => MsgType::MON_LOGIN,
            Message::MonGetCs(_) => MsgType::MON_GET_CS,
            Message::MonJobBegin(_) => MsgType::MON_JOB_BEGIN,
            Message::MonJobDone(_) => MsgType::MON_JOB_DONE,
            Message::MonLocalJobBegin(_) => MsgType::MON_LOCAL_JOB_BEGIN,
            Message::MonStats(_) => MsgType::MON_STATS,
            Message::EnvTransfer(_) => MsgType::TRANFER_ENV,
            Message::Text(_) => MsgType::TEXT,
            Message::StatusText(_) => MsgType::STATUS_TEXT,
            Message::GetInternals => MsgType::GET_INTERNALS,
            Message::CsConf(_) => MsgType::CS_CONF,
            Message::VerifyEnv(_) => MsgType::VERIFY_ENV,
            Message::VerifyEnvResult(_) => MsgType::VERIFY_ENV_RESULT,
            Message::BlacklistHostEnv(_) => MsgType::BLACKLIST_HOST_ENV,
            Message::NoCs(_) => MsgType::NO_CS,
            Message::Unknown { ty, .. } => *ty,
        }
    }

    /// Writes the body at `version` (no length, no type code).
    pub fn write_body(&self, out: &mut impl BufMut, version: u32) {
        let v = version;
        match self {
            Message::Ping
            | Message::End
            | Message::Timeout
            | Message::MonLogin
            | Message::GetInternals => {}
            Message::Text(text) => out.put_slice(text),
            Message::Unknown { body, .. } => out.put_slice(body),
            Message::GetNativeEnv(m) => write_get_native_env(out, m, v),
            Message::NativeEnv(m) => write_native_env(out, m),
            Message::GetCs(m) => write_get_cs(out, m, v),
            Message::UseCs(m) => write_use_cs(out, m, v),
            Message::CompileFile(m) => write_compile_file(out, m, v),
            Message::FileChunk(m) => write_file_chunk(out, m, v),
            Message::CompileResult(m) => write_compile_result(out, m, v),
            Message::JobBegin(m) => write_job_begin(out, m, v),
            Message::JobDone(m) | Message::MonJobDone(m) => write_job_done(out, m, v),
            Message::JobLocalBegin(m) => write_job_local_begin(out, m, v),
            Message::JobLocalDone(m) => write_job_local_done(out, m),
            Message::Login(m) => write_login(out, m, v),
            Message::Stats(m) => write_stats(out, m),
            Message::MonGetCs(m) => write_mon_get_cs(out, m, v),
            Message::MonJobBegin(m) => write_mon_job_begin(out, m),
            Message::MonLocalJobBegin(m) => write_mon_local_job_begin(out, m),
            Message::MonStats(m) => write_mon_stats(out, m),
            Message::EnvTransfer(m) => write_env_transfer(out, m),
            Message::StatusText(m) => write_status_text(out, m),
            Message::CsConf(m) => write_cs_conf(out, m),
            Message::VerifyEnv(m) => write_verify_env(out, m),
            Message::VerifyEnvResult(m) => write_verify_env_result(out, m),
            Message::BlacklistHostEnv(m) => write_blacklist_host_env(out, m),
            Message::NoCs(m) => write_no_cs(out, m),
        }
    }

    /// Appends the whole frame (length, type, body) at `version` to `out`.
    pub fn encode(&self, version: u32, out: &mut BytesMut) {
        let start = out.len();
        out.put_u32(0);
        out.put_u32(self.ty().0);
        self.write_body(out, version);
        let len = super::wire::wire_len(out.len() - start - 4);
        out[start..start + 4].copy_from_slice(&len.to_be_bytes());
    }
}

#[cold]
fn invalid(
    ty: MsgType,
    version: u32,
    body: &[u8],
    at: &[u8],
    expected: &'static str,
) -> DecodeError {
    DecodeError {
        ty,
        version,
        offset: body.len().saturating_sub(at.len()),
        len: body.len(),
        expected,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_body_names_type_version_and_offset() {
        let err = Message::decode(MsgType::MON_JOB_BEGIN, &[0, 0, 0, 1, 0, 0], 43).unwrap_err();
        assert_eq!(err.offset, 4);
        assert_eq!(
            err.to_string(),
            "invalid MON_JOB_BEGIN message at protocol 43: expected a 4-byte integer at body offset 4 of 6"
        );
    }

    #[test]
    fn trailing_bytes_are_invalid() {
        let err = Message::decode(MsgType::END, &[1], 43).unwrap_err();
        assert_eq!(err.expected, "end of message");
    }

    #[test]
    fn unknown_type_keeps_its_body() {
        let msg = Message::decode(MsgType(0x1234), b"xyz", 44).unwrap();
        assert_eq!(
            msg,
            Message::Unknown {
                ty: MsgType(0x1234),
                body: b"xyz"
            }
        );
        let mut out = BytesMut::new();
        msg.encode(44, &mut out);
        assert_eq!(&out[..], &[0, 0, 0, 7, 0, 0, 0x12, 0x34, b'x', b'y', b'z']);
    }

    #[test]
    fn job_done_is_accepted_under_both_codes() {
        let done = JobDone {
            job_id: 7,
            exit_code: 1,
            ..JobDone::default()
        };
        let mut body = BytesMut::new();
        write_job_done(&mut body, &done, 44);
        assert_eq!(
            Message::decode(MsgType::JOB_DONE, &body, 44),
            Ok(Message::JobDone(done))
        );
        assert_eq!(
            Message::decode(MsgType::MON_JOB_DONE, &body, 44),
            Ok(Message::MonJobDone(done))
        );
    }
}
