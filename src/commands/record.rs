//! `icewatch record`: a scheduler's stream into an lz4 recording, with
//! progress on stderr and a flush every second, across the scheduler's
//! restarts (each new session marked in the file) unless `--once`.

use super::sessions::{Read, Sessions};
use crate::cli::RecordArgs;
use crate::monitor::now_ms;
use crate::record::Recorder;
use crate::shutdown::Shutdown;
use anyhow::{Context, Result};
use std::fs::File;
use std::io::{BufWriter, IsTerminal};
use std::time::Duration;
use tokio::time::{interval_at, Instant, MissedTickBehavior};

/// How often the file is flushed and progress shown.
const FLUSH_EVERY: Duration = Duration::from_secs(1);

pub async fn run(args: RecordArgs, mut shutdown: Shutdown) -> Result<()> {
    let shown = args.output.display().to_string();
    let file = File::create(&args.output).with_context(|| format!("cannot create {shown}"))?;
    let opts = super::connect_options(&args.scheduler)?;
    let first = super::connect_once(&opts, &mut shutdown).await?;
    let mut sessions = Sessions::new(first, opts, args.once);
    let start = Instant::now();
    let mut rec = Recorder::new(BufWriter::new(file), sessions.version(), now_ms())
        .with_context(|| format!("cannot write {shown}"))?;
    let mut tick = interval_at(start + FLUSH_EVERY, FLUSH_EVERY);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let progress = Progress::new(&shown);
    let ended = loop {
        if args.count.is_some_and(|c| rec.messages() >= c) {
            break Ok(());
        }
        tokio::select! {
            read = sessions.next(&mut shutdown) => {
                let at = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
                let written = match read {
                    Ok(Some(Read::Frame(frame))) => rec.write_frame(at, &frame),
                    Ok(Some(Read::Session { protocol, .. })) => rec.new_session(at, protocol),
                    Ok(None) => break Ok(()),
                    Err(e) => break Err(e),
                };
                if let Err(e) = written {
                    break Err(anyhow::Error::from(e).context(format!("cannot write {shown}")));
                }
            }
            _ = tick.tick() => {
                rec.flush().with_context(|| format!("cannot write {shown}"))?;
                progress.show(rec.messages(), rec.bytes(), start.elapsed());
            }
        }
    };
    let (messages, bytes) = (rec.messages(), rec.bytes());
    rec.finish()
        .with_context(|| format!("cannot finish {shown}"))?;
    progress.done();
    let size = std::fs::metadata(&args.output).map_or(0, |m| m.len());
    eprintln!(
        "recorded {messages} messages ({}, {} on disk) in {} to {shown}",
        human_bytes(bytes),
        human_bytes(size),
        clock(start.elapsed())
    );
    ended
        .with_context(|| format!("recording stopped; {shown} holds the {messages} messages before"))
}

/// Progress on stderr: rewritten in place on a terminal, a line a second
/// otherwise (for logs and scripts).
struct Progress {
    terminal: bool,
    file: String,
}

impl Progress {
    fn new(file: &str) -> Progress {
        Progress {
            terminal: std::io::stderr().is_terminal(),
            file: file.to_string(),
        }
    }

    fn show(&self, messages: u64, bytes: u64, elapsed: Duration) {
        let line = format!(
            "recording to {}: {messages} messages, {}, {}",
            self.file,
            human_bytes(bytes),
            clock(elapsed)
        );
        if self.terminal {
            eprint!("\r\x1b[2K{line}");
        } else {
            eprintln!("{line}");
        }
    }

    fn done(&self) {
        if self.terminal {
            eprintln!();
        }
    }
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

fn clock(d: Duration) -> String {
    let s = d.as_secs();
    format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_times_read_like_a_person_writes_them() {
        assert_eq!(human_bytes(900), "900 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(5 << 30), "5.0 GiB");
        assert_eq!(clock(Duration::from_secs(3723)), "1:02:03");
    }
}
