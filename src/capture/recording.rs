//! Recordings of a scheduler's monitor stream, and the raw captures the
//! project's tests are made of: writing one, and reading either back.
//!
//! A recording (`icewatch record`) is an [lz4 frame](https://github.com/lz4/lz4/blob/dev/doc/lz4_Frame_format.md)
//! holding, uncompressed (format in `docs/recording.md`):
//!
//! ```text
//! "ICEWATCH"  format u32 LE = 2  protocol u32 LE  start u64 LE (ms since the Unix epoch)
//! then per message:  at u64 LE (ms since start)  the frame exactly as received
//!                    (u32 BE length L, then L bytes: type and body)
//! per new session:   u64 LE 0xFFFF_FFFF_FFFF_FFFE  at u64 LE  protocol u32 LE
//! then the end:      u64 LE 0xFFFF_FFFF_FFFF_FFFF  count u64 LE (messages written)
//! ```
//!
//! A session mark says that the scheduler connection was lost and made
//! again: the frames after it are at the new session's protocol version.
//! Format 1 (the same without session marks) still reads.
//!
//! Times are sane by construction, whatever the file says: they never go
//! back (a time earlier than the one before reads as the one before), and
//! one more than [`MAX_SPAN_MS`] after the start, or a start after the year
//! 9999, is refused as damage. So `start + at` never overflows, and a
//! replay's clock only moves forward.
//!
//! The writer flushes an lz4 block whenever asked ([`Recorder::flush`]), so a
//! recording cut short by a crash still reads back up to the last whole
//! message before the cut; the reader then reports [`RecordError::Truncated`]
//! after the last whole message rather than failing outright.
//!
//! A raw capture (`tests/data/basic.vNN.bin`) is the scheduler's version word
//! and the agreed version word (u32 LE each), then the frames as received.
//! [`open`] tells the two apart by the lz4 magic number.

use crate::protocol::frame::{Frame, MAX_MSG_SIZE};
use crate::protocol::{MIN_PROTOCOL_VERSION, PROTOCOL_VERSION};
use bytes::{BufMut, BytesMut};
use lz4_flex::frame::{BlockMode, FrameDecoder, FrameEncoder, FrameInfo};
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::path::Path;

/// The first bytes of a recording, after decompression.
pub const MAGIC: &[u8; 8] = b"ICEWATCH";
/// The recording format this code writes: 2, with session marks.
pub const FORMAT_VERSION: u32 = 2;
/// The oldest format this code reads: 1, one session without marks.
pub const OLDEST_FORMAT: u32 = 1;
/// The longest a recording spans: 366 days, in milliseconds. The writer
/// refuses a time past it and the reader takes one for damage, so that a
/// single absurd time cannot throw a replay's clock years ahead.
pub const MAX_SPAN_MS: u64 = 366 * 24 * 3600 * 1000;
/// The latest start a recording may have: the end of the year 9999, in
/// milliseconds since the Unix epoch.
pub const MAX_START_MS: u64 = 253_402_300_799_999;
/// The lz4 frame magic number, as it starts a file.
const LZ4_MAGIC: [u8; 4] = 0x184D_2204u32.to_le_bytes();
/// The time word that marks the end of a recording.
const END_MARK: u64 = u64::MAX;
/// The time word that marks a new scheduler session (format 2).
const SESSION_MARK: u64 = u64::MAX - 1;

/// What a recording or capture says about itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// The protocol version agreed with the scheduler in the first session:
    /// the version every frame is encoded at until a session mark says
    /// otherwise.
    pub protocol: u32,
    /// When the recording started, milliseconds since the Unix epoch
    /// (`None` for a raw capture, which has no times).
    pub start_ms: Option<u64>,
    /// Which kind of file it is.
    pub kind: Kind,
}

/// The two kinds of file icewatch reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// An `icewatch record` recording (lz4, with times).
    Recording,
    /// A raw capture: two version words, then frames.
    RawCapture {
        /// The scheduler's own version word.
        scheduler: u32,
    },
}

/// One message read back: the whole frame, as received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recorded {
    /// Milliseconds since the start of the recording (`None` in a raw
    /// capture).
    pub at_ms: Option<u64>,
    /// The protocol version the frame is encoded at: its session's.
    pub protocol: u32,
    /// The frame as received: u32 BE length, type, body.
    pub frame: Frame,
}

/// What a recording holds, in order: messages, and marks where a new
/// scheduler session begins.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    /// A message, as received.
    Message(Recorded),
    /// The scheduler connection was lost and made again (a scheduler
    /// restart, a network cut): a new session begins, at `protocol`, and
    /// the scheduler announces its hosts again under new ids.
    Session {
        /// The session's number: 2 for the first mark (the header opens
        /// session 1), then 3, ...
        number: u32,
        /// When the new session began, milliseconds since the start.
        at_ms: u64,
        /// The protocol version agreed in the new session: every frame
        /// after the mark is encoded at it.
        protocol: u32,
    },
}

impl Entry {
    /// When it happened, milliseconds since the start (`None` for a message
    /// of a raw capture).
    pub fn at_ms(&self) -> Option<u64> {
        match self {
            Entry::Message(m) => m.at_ms,
            Entry::Session { at_ms, .. } => Some(*at_ms),
        }
    }

    /// The message, if it is one.
    pub fn into_message(self) -> Option<Recorded> {
        match self {
            Entry::Message(m) => Some(m),
            Entry::Session { .. } => None,
        }
    }
}

/// Why a file cannot be read (further).
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The file could not be opened or read.
    #[error(transparent)]
    Io(#[from] io::Error),
    /// The file is empty.
    #[error("the file is empty: neither an icewatch recording nor a capture")]
    Empty,
    /// An lz4 file that is not an icewatch recording.
    #[error("not an icewatch recording (an lz4 file without the ICEWATCH header)")]
    NotARecording,
    /// A recording in a format this version does not know.
    #[error("recording format {0} is not supported (this icewatch reads formats {OLDEST_FORMAT} to {FORMAT_VERSION})")]
    UnsupportedFormat(u32),
    /// A recording or capture at a protocol version outside 21..=44.
    #[error(
        "the file says protocol version {0}, which icewatch does not know (it reads {MIN_PROTOCOL_VERSION} to {PROTOCOL_VERSION})"
    )]
    UnknownVersion(u32),
    /// The file ends inside a message or before the end mark: it was cut
    /// short. Everything before has been read.
    #[error("the file is truncated after {messages} whole messages (cut short?)")]
    Truncated {
        /// Whole messages read before the cut.
        messages: u64,
    },
    /// The file is damaged.
    #[error("the file is corrupt after {messages} messages: {reason}")]
    Corrupt {
        /// Whole messages read before the damage.
        messages: u64,
        /// What is wrong.
        reason: String,
    },
}

/// Writes a recording.
pub struct Recorder<W: Write> {
    out: FrameEncoder<W>,
    messages: u64,
    bytes: u64,
    last_at: u64,
    frame_buf: BytesMut,
}

/// An argument the writer refuses, so that it never writes what the reader
/// would refuse.
fn invalid_input(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, what)
}

impl<W: Write> Recorder<W> {
    /// Starts a recording of a stream at `protocol`, begun at `start_ms`
    /// (milliseconds since the Unix epoch); writes the header.
    ///
    /// Refuses a protocol version outside 21 to 44 and a start after
    /// [`MAX_START_MS`].
    pub fn new(out: W, protocol: u32, start_ms: u64) -> io::Result<Recorder<W>> {
        if check_version(protocol).is_err() {
            return Err(invalid_input(format!(
                "protocol version {protocol} is not one icewatch knows"
            )));
        }
        if start_ms > MAX_START_MS {
            return Err(invalid_input(format!(
                "a start time of {start_ms} ms after 1970 is past the year 9999"
            )));
        }
        let info = FrameInfo::new()
            .block_mode(BlockMode::Linked)
            .block_checksums(true);
        let mut out = FrameEncoder::with_frame_info(info, out);
        let mut header = BytesMut::with_capacity(24);
        header.put_slice(MAGIC);
        header.put_u32_le(FORMAT_VERSION);
        header.put_u32_le(protocol);
        header.put_u64_le(start_ms);
        out.write_all(&header)?;
        Ok(Recorder {
            out,
            messages: 0,
            bytes: 0,
            last_at: 0,
            frame_buf: BytesMut::with_capacity(256),
        })
    }

    /// The time to write for `at_ms`: never earlier than the last one
    /// written, and an error past [`MAX_SPAN_MS`].
    fn time(&mut self, at_ms: u64) -> io::Result<u64> {
        if at_ms > MAX_SPAN_MS {
            return Err(invalid_input(format!(
                "{at_ms} ms after the start: a recording spans at most {} days, start a new one",
                MAX_SPAN_MS / 86_400_000
            )));
        }
        self.last_at = self.last_at.max(at_ms);
        Ok(self.last_at)
    }

    /// Appends `frame` as it was received, `at_ms` milliseconds after the
    /// start (a time earlier than the last one written is written as that
    /// one). Refuses a time more than [`MAX_SPAN_MS`] after the start.
    pub fn write_frame(&mut self, at_ms: u64, frame: &Frame) -> io::Result<()> {
        let frame = frame.as_bytes();
        let at_ms = self.time(at_ms)?;
        self.frame_buf.clear();
        self.frame_buf.put_u64_le(at_ms);
        self.frame_buf.put_slice(frame);
        self.out.write_all(&self.frame_buf)?;
        self.messages += 1;
        self.bytes += frame.len() as u64;
        Ok(())
    }

    /// Marks the start of a new scheduler session, `at_ms` milliseconds
    /// after the start, at `protocol` (the version agreed in its
    /// handshake): the connection was lost and made again. Frames written
    /// after it are taken to be at `protocol`.
    pub fn new_session(&mut self, at_ms: u64, protocol: u32) -> io::Result<()> {
        if check_version(protocol).is_err() {
            return Err(invalid_input(format!(
                "protocol version {protocol} is not one icewatch knows"
            )));
        }
        let at_ms = self.time(at_ms)?;
        self.frame_buf.clear();
        self.frame_buf.put_u64_le(SESSION_MARK);
        self.frame_buf.put_u64_le(at_ms);
        self.frame_buf.put_u32_le(protocol);
        self.out.write_all(&self.frame_buf)
    }

    /// Compresses what is buffered and hands it to the file, so that a crash
    /// after this loses nothing before it.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()?;
        self.out.get_mut().flush()
    }

    /// Messages written so far (session marks not counted).
    pub fn messages(&self) -> u64 {
        self.messages
    }

    /// Frame bytes written so far (before compression).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Writes the end mark and closes the lz4 frame; returns the writer.
    pub fn finish(mut self) -> io::Result<W> {
        let mut end = [0u8; 16];
        end[..8].copy_from_slice(&END_MARK.to_le_bytes());
        end[8..].copy_from_slice(&self.messages.to_le_bytes());
        self.out.write_all(&end)?;
        let mut out = self.out.finish().map_err(io::Error::other)?;
        out.flush()?;
        Ok(out)
    }
}

/// Reads a recording or a raw capture, one entry at a time.
pub struct Reader {
    header: Header,
    input: Input,
    /// The recording's format (1 or 2; 0 for a raw capture).
    format: u32,
    /// The protocol of the frames read now: the current session's.
    protocol: u32,
    /// Sessions begun so far (1 before any mark).
    sessions: u32,
    /// The latest time read: no later time reads earlier.
    last_at: u64,
    messages: u64,
    done: bool,
}

enum Input {
    Recording(Box<BufReader<FrameDecoder<BufReader<File>>>>),
    Raw(BufReader<File>),
}

/// Opens a recording or a raw capture and reads its header.
pub fn open(path: &Path) -> Result<Reader, RecordError> {
    let mut file = BufReader::new(File::open(path)?);
    let mut first = [0u8; 4];
    let got = read_full(&mut file, &mut first)?;
    if got == 0 {
        return Err(RecordError::Empty);
    }
    if got == 4 && first == LZ4_MAGIC {
        // Start again so the decoder sees the whole lz4 frame.
        let file = BufReader::new(File::open(path)?);
        let mut input = BufReader::new(FrameDecoder::new(file));
        let mut header = [0u8; 24];
        let got = read_full(&mut input, &mut header).map_err(|e| corrupt_or_cut(e, 0))?;
        if got >= MAGIC.len() && &header[..8] != MAGIC {
            return Err(RecordError::NotARecording);
        }
        if got < header.len() {
            return Err(RecordError::Truncated { messages: 0 });
        }
        let word =
            |i: usize| u32::from_le_bytes([header[i], header[i + 1], header[i + 2], header[i + 3]]);
        let format = word(8);
        if !(OLDEST_FORMAT..=FORMAT_VERSION).contains(&format) {
            return Err(RecordError::UnsupportedFormat(format));
        }
        let protocol = word(12);
        check_version(protocol)?;
        let mut start = [0u8; 8];
        start.copy_from_slice(&header[16..24]);
        let start_ms = u64::from_le_bytes(start);
        if start_ms > MAX_START_MS {
            return Err(RecordError::Corrupt {
                messages: 0,
                reason: format!("a start time of {start_ms} ms after 1970, past the year 9999"),
            });
        }
        return Ok(Reader {
            header: Header {
                protocol,
                start_ms: Some(start_ms),
                kind: Kind::Recording,
            },
            input: Input::Recording(Box::new(input)),
            format,
            protocol,
            sessions: 1,
            last_at: 0,
            messages: 0,
            done: false,
        });
    }
    let mut second = [0u8; 4];
    if got < 4 || read_full(&mut file, &mut second)? < 4 {
        return Err(RecordError::Truncated { messages: 0 });
    }
    let scheduler = u32::from_le_bytes(first);
    let protocol = u32::from_le_bytes(second);
    check_version(protocol)?;
    if scheduler < protocol || scheduler > crate::protocol::handshake::MAX_SANE_VERSION {
        return Err(RecordError::Corrupt {
            messages: 0,
            reason: format!(
                "the scheduler's version word {scheduler} cannot have agreed on version {protocol}"
            ),
        });
    }
    Ok(Reader {
        header: Header {
            protocol,
            start_ms: None,
            kind: Kind::RawCapture { scheduler },
        },
        input: Input::Raw(file),
        format: 0,
        protocol,
        sessions: 1,
        last_at: 0,
        messages: 0,
        done: false,
    })
}

fn check_version(v: u32) -> Result<(), RecordError> {
    if (MIN_PROTOCOL_VERSION..=PROTOCOL_VERSION).contains(&v) {
        Ok(())
    } else {
        Err(RecordError::UnknownVersion(v))
    }
}

/// Reads until `buf` is full or the input ends; returns how much was read.
fn read_full<R: Read + ?Sized>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// An lz4 error: a cut inside a block is a truncation, the rest damage.
fn corrupt_or_cut(e: io::Error, messages: u64) -> RecordError {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        RecordError::Truncated { messages }
    } else {
        RecordError::Corrupt {
            messages,
            reason: format!("damaged lz4 data ({e})"),
        }
    }
}

impl Reader {
    /// What the file says about itself.
    pub fn header(&self) -> Header {
        self.header
    }

    /// Messages read so far (session marks not counted).
    pub fn messages(&self) -> u64 {
        self.messages
    }

    /// The protocol version of the frames read now: the one of the last
    /// session begun.
    pub fn protocol(&self) -> u32 {
        self.protocol
    }

    /// Reads exactly `buf.len()` bytes of a recording, or says it was cut.
    fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), RecordError> {
        let messages = self.messages;
        let input: &mut dyn Read = match &mut self.input {
            Input::Raw(r) => r,
            Input::Recording(r) => r,
        };
        if read_full(input, buf).map_err(|e| corrupt_or_cut(e, messages))? < buf.len() {
            return Err(RecordError::Truncated { messages });
        }
        Ok(())
    }

    fn corrupt(&self, reason: String) -> RecordError {
        RecordError::Corrupt {
            messages: self.messages,
            reason,
        }
    }

    /// A time word read back: never earlier than the one before, and
    /// refused past [`MAX_SPAN_MS`].
    fn time(&mut self, at: u64) -> Result<u64, RecordError> {
        if at > MAX_SPAN_MS {
            return Err(self.corrupt(format!(
                "a time {at} ms after the start, more than a recording spans ({} days)",
                MAX_SPAN_MS / 86_400_000
            )));
        }
        self.last_at = self.last_at.max(at);
        Ok(self.last_at)
    }

    fn next_entry(&mut self) -> Result<Option<Entry>, RecordError> {
        let at_ms = match self.input {
            Input::Raw(_) => None,
            Input::Recording(_) => {
                let mut word = [0u8; 8];
                self.read_exact(&mut word)?;
                match u64::from_le_bytes(word) {
                    END_MARK => return self.end_mark().map(|()| None),
                    SESSION_MARK if self.format >= 2 => return self.session_mark().map(Some),
                    at => Some(self.time(at)?),
                }
            }
        };
        let messages = self.messages;
        let input: &mut dyn Read = match &mut self.input {
            Input::Raw(r) => r,
            Input::Recording(r) => r,
        };
        let mut len_word = [0u8; 4];
        match read_full(input, &mut len_word).map_err(|e| corrupt_or_cut(e, messages))? {
            0 if at_ms.is_none() => return Ok(None),
            4 => {}
            _ => return Err(RecordError::Truncated { messages }),
        }
        let len = u32::from_be_bytes(len_word);
        if !(4..=MAX_MSG_SIZE).contains(&len) {
            return Err(self.corrupt(format!(
                "a frame length of {len} bytes (the limit is {MAX_MSG_SIZE})"
            )));
        }
        let mut bytes = BytesMut::zeroed(4 + len as usize);
        bytes[..4].copy_from_slice(&len_word);
        self.read_exact(&mut bytes[4..])?;
        // Its length was checked above: it is one whole frame.
        let frame = Frame::split_from(&mut bytes, MAX_MSG_SIZE)
            .map_err(|e| self.corrupt(format!("a frame that is not one ({e})")))?;
        self.messages += 1;
        Ok(Some(Entry::Message(Recorded {
            at_ms,
            protocol: self.protocol,
            frame,
        })))
    }

    /// The rest of a session mark: its time and protocol version.
    fn session_mark(&mut self) -> Result<Entry, RecordError> {
        let mut mark = [0u8; 12];
        self.read_exact(&mut mark)?;
        let mut at = [0u8; 8];
        at.copy_from_slice(&mark[..8]);
        let at_ms = self.time(u64::from_le_bytes(at))?;
        let protocol = u32::from_le_bytes([mark[8], mark[9], mark[10], mark[11]]);
        if check_version(protocol).is_err() {
            return Err(self.corrupt(format!(
                "a new session at protocol version {protocol}, which icewatch does not know"
            )));
        }
        self.protocol = protocol;
        self.sessions = self.sessions.saturating_add(1);
        Ok(Entry::Session {
            number: self.sessions,
            at_ms,
            protocol,
        })
    }

    /// The rest of the end mark: the count must match, and nothing follow.
    fn end_mark(&mut self) -> Result<(), RecordError> {
        let mut count = [0u8; 8];
        self.read_exact(&mut count)?;
        let count = u64::from_le_bytes(count);
        if count != self.messages {
            return Err(self.corrupt(format!("the end mark counts {count} messages")));
        }
        let mut extra = [0u8; 1];
        match self.read_exact(&mut extra) {
            Err(RecordError::Truncated { .. }) => Ok(()),
            Err(e) => Err(e),
            Ok(()) => Err(self.corrupt("data after the end mark".into())),
        }
    }
}

impl Iterator for Reader {
    type Item = Result<Entry, RecordError>;

    /// The next entry; after an error or the end, `None`.
    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.next_entry() {
            Ok(Some(entry)) => Some(Ok(entry)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn frames() -> Vec<Frame> {
        (0..500u32)
            .map(|i| {
                let text = format!("Name:host{i}\nLoad:{}\n", i % 1000);
                Frame::encode(&crate::protocol::Message::mon_stats(i, &text), 43)
            })
            .collect()
    }

    fn write_to(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    fn record(flush_every: usize, finish: bool) -> Vec<u8> {
        let mut rec = Recorder::new(Cursor::new(Vec::new()), 43, 1_700_000_000_000).unwrap();
        for (i, f) in frames().iter().enumerate() {
            rec.write_frame(i as u64 * 10, f).unwrap();
            if (i + 1) % flush_every == 0 {
                rec.flush().unwrap();
            }
        }
        if finish {
            rec.finish().unwrap().into_inner()
        } else {
            rec.flush().unwrap();
            rec.out.get_ref().get_ref().clone()
        }
    }

    fn tempdir(name: &str) -> std::path::PathBuf {
        let dir =
            std::env::temp_dir().join(format!("icewatch-record-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_finished_recording_reads_back_every_frame_with_its_time() {
        let dir = tempdir("whole");
        let path = write_to(&dir, "r.icwr", &record(50, true));
        let mut reader = open(&path).unwrap();
        assert_eq!(
            reader.header(),
            Header {
                protocol: 43,
                start_ms: Some(1_700_000_000_000),
                kind: Kind::Recording
            }
        );
        let back: Vec<Entry> = reader.by_ref().map(Result::unwrap).collect();
        assert_eq!(back.len(), 500);
        for (i, (r, f)) in back.into_iter().zip(frames()).enumerate() {
            let r = r.into_message().unwrap();
            assert_eq!(r.at_ms, Some(i as u64 * 10));
            assert_eq!(r.protocol, 43);
            assert_eq!(r.frame, f);
        }
    }

    #[test]
    fn a_recording_cut_anywhere_reads_back_a_prefix_then_says_so() {
        let dir = tempdir("cut");
        let whole = record(7, true);
        let all = frames();
        for cut in (0..whole.len()).step_by(97).chain([whole.len() - 1]) {
            let path = write_to(&dir, "cut.icwr", &whole[..cut]);
            let reader = match open(&path) {
                Ok(r) => r,
                Err(RecordError::Truncated { messages: 0 } | RecordError::Empty) => continue,
                Err(e) => panic!("cut at {cut}: {e}"),
            };
            let mut read = 0;
            let mut ended = None;
            for item in reader {
                match item {
                    Ok(r) => {
                        let r = r.into_message().unwrap();
                        assert_eq!(r.frame, all[read]);
                        read += 1;
                    }
                    Err(e) => ended = Some(e),
                }
            }
            match ended {
                Some(RecordError::Truncated { messages }) => assert_eq!(messages, read as u64),
                // Only the lz4 end mark was cut: every message and our own
                // end mark are there.
                None if cut + 4 >= whole.len() => assert_eq!(read, all.len()),
                other => panic!("cut at {cut}: {other:?}"),
            }
        }
    }

    #[test]
    fn an_unfinished_recording_keeps_everything_flushed() {
        let dir = tempdir("unfinished");
        let path = write_to(&dir, "u.icwr", &record(10, false));
        let items: Vec<_> = open(&path).unwrap().collect();
        assert_eq!(items.len(), 501);
        assert!(matches!(
            items.last(),
            Some(Err(RecordError::Truncated { messages: 500 }))
        ));
    }

    #[test]
    fn damaged_bytes_are_an_error_not_a_panic() {
        let dir = tempdir("damaged");
        let whole = record(25, true);
        for at in (0..whole.len()).step_by(53) {
            let mut bad = whole.clone();
            bad[at] ^= 0x5a;
            let path = write_to(&dir, "bad.icwr", &bad);
            if let Ok(reader) = open(&path) {
                for item in reader {
                    if item.is_err() {
                        break;
                    }
                }
            }
        }
    }

    #[test]
    fn raw_captures_are_read_and_odd_files_refused() {
        let dir = tempdir("raw");
        let capture = include_bytes!("../../tests/data/basic.v29.bin");
        let path = write_to(&dir, "c.bin", capture);
        let mut reader = open(&path).unwrap();
        assert_eq!(reader.header().protocol, 29);
        assert_eq!(reader.header().kind, Kind::RawCapture { scheduler: 43 });
        assert_eq!(
            reader.by_ref().map(Result::unwrap).count(),
            2 + 42 * 3 + 2 + 17
        );

        let mut odd = capture.to_vec();
        odd[4] = 12;
        let path = write_to(&dir, "v12.bin", &odd);
        assert!(matches!(open(&path), Err(RecordError::UnknownVersion(12))));

        let path = write_to(&dir, "cut.bin", &capture[..capture.len() - 3]);
        let last = open(&path).unwrap().last().unwrap();
        assert!(matches!(last, Err(RecordError::Truncated { .. })));

        let path = write_to(&dir, "empty", b"");
        assert!(matches!(open(&path), Err(RecordError::Empty)));

        let mut other = Vec::new();
        let mut enc = FrameEncoder::new(&mut other);
        enc.write_all(b"hello, this is not a recording").unwrap();
        enc.finish().unwrap();
        let path = write_to(&dir, "other.lz4", &other);
        assert!(matches!(open(&path), Err(RecordError::NotARecording)));
    }

    /// An lz4 file holding `header` fields and then `body`, as any writer
    /// could make it.
    fn hand_made(format: u32, protocol: u32, start_ms: u64, body: &[u8]) -> Vec<u8> {
        let mut enc = FrameEncoder::new(Vec::new());
        enc.write_all(MAGIC).unwrap();
        enc.write_all(&format.to_le_bytes()).unwrap();
        enc.write_all(&protocol.to_le_bytes()).unwrap();
        enc.write_all(&start_ms.to_le_bytes()).unwrap();
        enc.write_all(body).unwrap();
        enc.finish().unwrap()
    }

    fn timed(at: u64, frame: &Frame) -> Vec<u8> {
        [&at.to_le_bytes()[..], frame.as_bytes()].concat()
    }

    fn end(count: u64) -> Vec<u8> {
        [END_MARK.to_le_bytes(), count.to_le_bytes()].concat()
    }

    #[test]
    fn a_recording_of_two_sessions_reads_back_each_frame_at_its_sessions_protocol() {
        let dir = tempdir("sessions");
        let f = frames();
        let mut rec = Recorder::new(Cursor::new(Vec::new()), 43, 1_700_000_000_000).unwrap();
        rec.write_frame(5, &f[0]).unwrap();
        rec.write_frame(6, &f[1]).unwrap();
        rec.new_session(9_000, 29).unwrap();
        rec.write_frame(9_001, &f[2]).unwrap();
        rec.new_session(12_000, 44).unwrap();
        assert_eq!(rec.messages(), 3, "marks are not messages");
        let path = write_to(&dir, "two.icwr", &rec.finish().unwrap().into_inner());
        let mut reader = open(&path).unwrap();
        assert_eq!(reader.header().protocol, 43);
        let message = |at, protocol, i: usize| {
            Entry::Message(Recorded {
                at_ms: Some(at),
                protocol,
                frame: f[i].clone(),
            })
        };
        let session = |number, at_ms, protocol| Entry::Session {
            number,
            at_ms,
            protocol,
        };
        let entries: Vec<Entry> = reader.by_ref().map(Result::unwrap).collect();
        assert_eq!(
            entries,
            [
                message(5, 43, 0),
                message(6, 43, 1),
                session(2, 9_000, 29),
                message(9_001, 29, 2),
                session(3, 12_000, 44),
            ]
        );
        assert_eq!((reader.messages(), reader.protocol()), (3, 44));
    }

    #[test]
    fn format_1_still_reads_and_has_no_session_marks() {
        let dir = tempdir("format1");
        let f = &frames()[0];
        let body = [timed(3, f), timed(SESSION_MARK, f), end(2)].concat();
        let path = write_to(&dir, "v1.icwr", &hand_made(1, 38, 0, &body));
        let items: Vec<_> = open(&path).unwrap().collect();
        let first = items[0].as_ref().unwrap().clone().into_message().unwrap();
        assert_eq!((first.at_ms, first.protocol), (Some(3), 38));
        // Format 1 clamped times to this word: in it, it is a time, and an
        // absurd one.
        assert!(
            matches!(&items[1], Err(RecordError::Corrupt { messages: 1, reason }) if reason.contains("more than a recording spans")),
            "{items:?}"
        );

        let path = write_to(&dir, "v3.icwr", &hand_made(3, 43, 0, &end(0)));
        assert!(matches!(
            open(&path),
            Err(RecordError::UnsupportedFormat(3))
        ));
    }

    #[test]
    fn times_never_go_back_and_absurd_ones_are_damage() {
        let dir = tempdir("times");
        let f = &frames()[0];
        let times = |body: &[u8]| -> Vec<Result<Option<u64>, String>> {
            let path = write_to(&dir, "t.icwr", &hand_made(2, 43, 1_700_000_000_000, body));
            open(&path)
                .unwrap()
                .map(|e| e.map(|e| e.at_ms()).map_err(|e| e.to_string()))
                .collect()
        };
        let back = [timed(50, f), timed(20, f), timed(60, f), end(3)].concat();
        assert_eq!(times(&back), [Ok(Some(50)), Ok(Some(50)), Ok(Some(60))]);

        let mark_back = [
            timed(50, f),
            SESSION_MARK.to_le_bytes().to_vec(),
            10u64.to_le_bytes().to_vec(),
            43u32.to_le_bytes().to_vec(),
            end(1),
        ]
        .concat();
        assert_eq!(times(&mark_back), [Ok(Some(50)), Ok(Some(50))]);

        for absurd in [u64::MAX - 2, MAX_SPAN_MS + 1, 5 * 365 * 86_400_000] {
            let got = times(&[timed(1, f), timed(absurd, f), timed(2, f), end(3)].concat());
            assert_eq!(got.len(), 2, "{got:?}");
            let err = got[1].clone().unwrap_err();
            assert!(
                err.contains("corrupt after 1 messages: a time")
                    && err.contains("more than a recording spans (366 days)"),
                "{err}"
            );
        }
        assert_eq!(
            times(&[timed(MAX_SPAN_MS, f), end(1)].concat()),
            [Ok(Some(MAX_SPAN_MS))]
        );

        let path = write_to(
            &dir,
            "late.icwr",
            &hand_made(2, 43, MAX_START_MS + 1, &end(0)),
        );
        assert!(matches!(
            open(&path),
            Err(RecordError::Corrupt { reason, .. }) if reason.contains("past the year 9999")
        ));
    }

    #[test]
    fn the_writer_writes_nothing_the_reader_would_refuse() {
        let f = &frames()[0];
        let mut rec = Recorder::new(Vec::new(), 43, 0).unwrap();
        rec.write_frame(100, f).unwrap();
        rec.write_frame(40, f).unwrap();
        rec.new_session(30, 44).unwrap();
        assert!(rec.write_frame(MAX_SPAN_MS + 1, f).is_err());
        assert!(rec.new_session(u64::MAX, 44).is_err());
        assert!(rec.new_session(200, 45).is_err());
        assert_eq!(rec.messages(), 2);
        let dir = tempdir("writer");
        let path = write_to(&dir, "w.icwr", &rec.finish().unwrap());
        let times: Vec<Option<u64>> = open(&path).unwrap().map(|e| e.unwrap().at_ms()).collect();
        assert_eq!(times, [Some(100), Some(100), Some(100)]);

        assert!(Recorder::new(Vec::new(), 20, 0).is_err());
        assert!(Recorder::new(Vec::new(), 43, MAX_START_MS + 1).is_err());
    }

    #[test]
    fn a_bad_or_cut_session_mark_is_an_error_after_the_messages_before_it() {
        let dir = tempdir("bad_mark");
        let f = &frames()[0];
        let mark = |protocol: u32| {
            [
                SESSION_MARK.to_le_bytes().to_vec(),
                7u64.to_le_bytes().to_vec(),
                protocol.to_le_bytes().to_vec(),
            ]
            .concat()
        };
        let path = write_to(
            &dir,
            "v12.icwr",
            &hand_made(2, 43, 0, &[timed(1, f), mark(12), end(1)].concat()),
        );
        let last = open(&path).unwrap().last().unwrap();
        assert!(
            matches!(&last, Err(RecordError::Corrupt { messages: 1, reason }) if reason.contains("protocol version 12")),
            "{last:?}"
        );
        let cut = [timed(1, f), mark(43)[..15].to_vec()].concat();
        let path = write_to(&dir, "cut.icwr", &hand_made(2, 43, 0, &cut));
        let last = open(&path).unwrap().last().unwrap();
        assert!(matches!(last, Err(RecordError::Truncated { messages: 1 })));
    }
}
