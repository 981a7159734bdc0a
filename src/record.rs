//! Recordings of a scheduler's monitor stream, and the raw captures the
//! project's tests are made of: writing one, and reading either back.
//!
//! A recording (`icewatch record`) is an [lz4 frame](https://github.com/lz4/lz4/blob/dev/doc/lz4_Frame_format.md)
//! holding, uncompressed (format in `docs/recording.md`):
//!
//! ```text
//! "ICEWATCH"  format u32 LE = 1  protocol u32 LE  start u64 LE (ms since the Unix epoch)
//! then per message:  at u64 LE (ms since start)  the frame exactly as received
//!                    (u32 BE length L, then L bytes: type and body)
//! then the end:      u64 LE 0xFFFF_FFFF_FFFF_FFFF  count u64 LE (messages written)
//! ```
//!
//! The writer flushes an lz4 block whenever asked ([`Recorder::flush`]), so a
//! recording cut short by a crash still reads back up to the last whole
//! message before the cut; the reader then reports [`RecordError::Truncated`]
//! after the last whole message rather than failing outright.
//!
//! A raw capture (`tests/data/basic.vNN.bin`) is the scheduler's version word
//! and the agreed version word (u32 LE each), then the frames as received.
//! [`open`] tells the two apart by the lz4 magic number.

use crate::protocol::frame::MAX_MSG_SIZE;
use crate::protocol::{MIN_PROTOCOL_VERSION, PROTOCOL_VERSION};
use bytes::{BufMut, Bytes, BytesMut};
use lz4_flex::frame::{BlockMode, FrameDecoder, FrameEncoder, FrameInfo};
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::path::Path;

/// The first bytes of a recording, after decompression.
pub const MAGIC: &[u8; 8] = b"ICEWATCH";
/// The recording format this code writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// The lz4 frame magic number, as it starts a file.
const LZ4_MAGIC: [u8; 4] = 0x184D_2204u32.to_le_bytes();
/// The time word that marks the end of a recording.
const END_MARK: u64 = u64::MAX;

/// What a recording or capture says about itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// The protocol version agreed with the scheduler: the version every
    /// frame is encoded at.
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
    /// The frame: u32 BE length, type, body.
    pub frame: Bytes,
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
    #[error("recording format {0} is not supported (this icewatch reads format {FORMAT_VERSION})")]
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
    frame_buf: BytesMut,
}

impl<W: Write> Recorder<W> {
    /// Starts a recording of a stream at `protocol`, begun at `start_ms`
    /// (milliseconds since the Unix epoch); writes the header.
    pub fn new(out: W, protocol: u32, start_ms: u64) -> io::Result<Recorder<W>> {
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
            frame_buf: BytesMut::with_capacity(256),
        })
    }

    /// Appends one whole frame (length word included), received `at_ms`
    /// milliseconds after the start.
    pub fn write_frame(&mut self, at_ms: u64, frame: &[u8]) -> io::Result<()> {
        let valid = frame
            .get(..4)
            .map(|w| u32::from_be_bytes([w[0], w[1], w[2], w[3]]) as usize + 4 == frame.len());
        if valid != Some(true) || frame.len() < 8 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a whole frame: the length word does not match",
            ));
        }
        // A time that collides with the end mark cannot happen in practice
        // (585 million years); clamp it anyway.
        let at_ms = at_ms.min(END_MARK - 1);
        self.frame_buf.clear();
        self.frame_buf.put_u64_le(at_ms);
        self.frame_buf.put_slice(frame);
        self.out.write_all(&self.frame_buf)?;
        self.messages += 1;
        self.bytes += frame.len() as u64;
        Ok(())
    }

    /// Compresses what is buffered and hands it to the file, so that a crash
    /// after this loses nothing before it.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()?;
        self.out.get_mut().flush()
    }

    /// Messages written so far.
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

/// Reads a recording or a raw capture, one message at a time.
pub struct Reader {
    header: Header,
    input: Input,
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
        if format != FORMAT_VERSION {
            return Err(RecordError::UnsupportedFormat(format));
        }
        let protocol = word(12);
        check_version(protocol)?;
        let mut start = [0u8; 8];
        start.copy_from_slice(&header[16..24]);
        return Ok(Reader {
            header: Header {
                protocol,
                start_ms: Some(u64::from_le_bytes(start)),
                kind: Kind::Recording,
            },
            input: Input::Recording(Box::new(input)),
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

    /// Messages read so far.
    pub fn messages(&self) -> u64 {
        self.messages
    }

    fn next_message(&mut self) -> Result<Option<Recorded>, RecordError> {
        let messages = self.messages;
        let cut = |e| corrupt_or_cut(e, messages);
        let at_ms = match &mut self.input {
            Input::Raw(_) => None,
            Input::Recording(input) => {
                let mut word = [0u8; 8];
                match read_full(input, &mut word).map_err(cut)? {
                    8 => {}
                    _ => return Err(RecordError::Truncated { messages }),
                }
                let at = u64::from_le_bytes(word);
                if at == END_MARK {
                    let mut count = [0u8; 8];
                    if read_full(input, &mut count).map_err(cut)? < 8 {
                        return Err(RecordError::Truncated { messages });
                    }
                    let count = u64::from_le_bytes(count);
                    if count != messages {
                        return Err(RecordError::Corrupt {
                            messages,
                            reason: format!("the end mark counts {count} messages"),
                        });
                    }
                    let mut extra = [0u8; 1];
                    if read_full(input, &mut extra).map_err(cut)? != 0 {
                        return Err(RecordError::Corrupt {
                            messages,
                            reason: "data after the end mark".into(),
                        });
                    }
                    return Ok(None);
                }
                Some(at)
            }
        };
        let input: &mut dyn Read = match &mut self.input {
            Input::Raw(r) => r,
            Input::Recording(r) => r,
        };
        let mut len_word = [0u8; 4];
        match read_full(input, &mut len_word).map_err(cut)? {
            0 if at_ms.is_none() => return Ok(None),
            4 => {}
            _ => return Err(RecordError::Truncated { messages }),
        }
        let len = u32::from_be_bytes(len_word);
        if !(4..=MAX_MSG_SIZE).contains(&len) {
            return Err(RecordError::Corrupt {
                messages,
                reason: format!("a frame length of {len} bytes (the limit is {MAX_MSG_SIZE})"),
            });
        }
        let mut frame = BytesMut::zeroed(4 + len as usize);
        frame[..4].copy_from_slice(&len_word);
        if read_full(input, &mut frame[4..]).map_err(cut)? < len as usize {
            return Err(RecordError::Truncated { messages });
        }
        self.messages += 1;
        Ok(Some(Recorded {
            at_ms,
            frame: frame.freeze(),
        }))
    }
}

impl Iterator for Reader {
    type Item = Result<Recorded, RecordError>;

    /// The next message; after an error or the end, `None`.
    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.next_message() {
            Ok(Some(m)) => Some(Ok(m)),
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

    fn frames() -> Vec<Vec<u8>> {
        (0..500u32)
            .map(|i| {
                let body = format!("Name:host{i}\nLoad:{}\n", i % 1000);
                let mut f = Vec::new();
                f.extend_from_slice(&(4 + 4 + 4 + body.len() as u32 + 1).to_be_bytes());
                f.extend_from_slice(&0x57u32.to_be_bytes());
                f.extend_from_slice(&i.to_be_bytes());
                f.extend_from_slice(&(body.len() as u32 + 1).to_be_bytes());
                f.extend_from_slice(body.as_bytes());
                f.push(0);
                f
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
        let back: Vec<Recorded> = reader.by_ref().map(Result::unwrap).collect();
        assert_eq!(back.len(), 500);
        for (i, (r, f)) in back.iter().zip(frames()).enumerate() {
            assert_eq!(r.at_ms, Some(i as u64 * 10));
            assert_eq!(&r.frame[..], &f[..]);
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
                        assert_eq!(&r.frame[..], &all[read][..]);
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
        let capture = include_bytes!("../tests/data/basic.v29.bin");
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
}
