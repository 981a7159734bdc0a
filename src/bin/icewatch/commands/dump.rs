//! `icewatch dump`: every message as one JSON object a line on stdout.

use super::sessions::{Read, Sessions};
use crate::cli::DumpArgs;
use anyhow::{Context, Result};
use icewatch::capture::ndjson::{InvalidJson, MessageJson, SessionJson};
use icewatch::capture::recording::{self, Entry, Kind};
use icewatch::protocol::frame::Frame;
use serde::Serialize;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub async fn run(args: DumpArgs, shutdown: CancellationToken) -> Result<()> {
    match &args.capture {
        Some(path) => {
            let path = path.clone();
            let (raw, count) = (args.raw, args.count);
            tokio::task::spawn_blocking(move || dump_file(&path, raw, count)).await?
        }
        None => dump_live(&args, shutdown).await,
    }
}

/// Prints what a live scheduler sends, across its restarts (a line
/// `{"session": N, ...}` between sessions), until `--count` is reached,
/// Ctrl-C, or with `--once` the end of the first session.
async fn dump_live(args: &DumpArgs, shutdown: CancellationToken) -> Result<()> {
    let opts = super::connect_options(&args.scheduler)?;
    let first = super::connect_once(&opts, &shutdown).await?;
    let mut sessions = Sessions::new(first, opts, args.once);
    let start = Instant::now();
    let mut lines = LineWriter::new(BufWriter::new(io::stdout()), args.raw);
    let ended = loop {
        if args.count.is_some_and(|c| lines.messages >= c) {
            break Ok(());
        }
        let read = match sessions.next(&shutdown).await {
            Ok(Some(read)) => read,
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        };
        let at = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
        let written = match read {
            Read::Frame(frame) => lines.write(&frame, sessions.version(), Some(at)),
            Read::Session {
                number,
                scheduler,
                protocol,
            } => lines.session(number, at, Some(&scheduler), protocol),
        };
        match written.and_then(|()| lines.flush()) {
            Ok(()) => {}
            Err(e) if reader_gone(&e) => return Ok(()),
            Err(e) => return Err(e).context("cannot write to stdout"),
        }
    };
    let _ = lines.flush();
    eprintln!("{} messages", lines.messages);
    ended
}

/// Writes NDJSON lines for frames; counts messages that do not decode.
pub(super) struct LineWriter<W: Write> {
    out: W,
    raw: bool,
    pub(super) messages: u64,
    pub(super) invalid: u64,
}

impl<W: Write> LineWriter<W> {
    pub(super) fn new(out: W, raw: bool) -> LineWriter<W> {
        LineWriter {
            out,
            raw,
            messages: 0,
            invalid: 0,
        }
    }

    /// One line for one frame, decoded at `version`.
    pub(super) fn write(
        &mut self,
        frame: &Frame,
        version: u32,
        at_ms: Option<u64>,
    ) -> io::Result<()> {
        let raw = self.raw.then(|| frame.as_bytes());
        match frame.decode(version) {
            Ok(msg) => self.line(&MessageJson::new(&msg, version).at_ms(at_ms).raw(raw))?,
            Err(error) => {
                self.invalid += 1;
                let ty = frame.ty();
                self.line(&InvalidJson {
                    ty,
                    at_ms,
                    error: &error,
                    raw,
                })?;
            }
        }
        self.messages += 1;
        Ok(())
    }

    fn line(&mut self, line: &impl Serialize) -> io::Result<()> {
        serde_json::to_writer(&mut self.out, line)?;
        self.out.write_all(b"\n")
    }

    /// The line that marks the start of scheduler session `number` (2 and
    /// up), `at_ms` after the start, at `protocol`, with the scheduler's
    /// address when read live.
    pub(super) fn session(
        &mut self,
        number: u32,
        at_ms: u64,
        scheduler: Option<&str>,
        protocol: u32,
    ) -> io::Result<()> {
        self.line(&SessionJson {
            session: number,
            at_ms,
            scheduler,
            protocol,
        })
    }

    pub(super) fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// Whether an output error only means the reader went away (`| head`).
pub(super) fn reader_gone(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::BrokenPipe
}

fn dump_file(path: &Path, raw: bool, count: Option<u64>) -> Result<()> {
    let shown = path.display();
    let reader = recording::open(path).with_context(|| format!("cannot read {shown}"))?;
    let header = reader.header();
    match header.kind {
        Kind::Recording => eprintln!("{shown}: icewatch recording, protocol {}", header.protocol),
        Kind::RawCapture { scheduler } => eprintln!(
            "{shown}: raw capture, protocol {} (the scheduler offered {scheduler})",
            header.protocol
        ),
    }
    let mut lines = LineWriter::new(BufWriter::new(io::stdout().lock()), raw);
    let mut failure = None;
    let mut sessions = 1;
    for item in reader {
        if count.is_some_and(|c| lines.messages >= c) {
            break;
        }
        let written = match item {
            Ok(Entry::Message(rec)) => lines.write(&rec.frame, rec.protocol, rec.at_ms),
            Ok(Entry::Session {
                number,
                at_ms,
                protocol,
            }) => {
                sessions = number;
                lines.session(number, at_ms, None, protocol)
            }
            Err(e) => {
                failure = Some(e);
                break;
            }
        };
        if let Err(e) = written {
            if reader_gone(&e) {
                return Ok(());
            }
            return Err(e).context("cannot write to stdout");
        }
    }
    match lines.flush() {
        Err(e) if !reader_gone(&e) => return Err(e).context("cannot write to stdout"),
        _ => {}
    }
    eprintln!(
        "{shown}: {} messages{}{}",
        lines.messages,
        if sessions > 1 {
            format!(" in {sessions} scheduler sessions")
        } else {
            String::new()
        },
        if lines.invalid > 0 {
            format!(", {} that do not decode", lines.invalid)
        } else {
            String::new()
        }
    );
    match failure {
        Some(e) => Err(e).with_context(|| format!("cannot read all of {shown}")),
        None => Ok(()),
    }
}
