//! A client of the scheduler's text port (its port + 1), as telnet would
//! talk to it: one command, the lines of its answer up to `200 done`. Used
//! by `icewatch admin` and by the page's reads and actions
//! (`publisher::control`). The line protocol itself is
//! [`protocol::text`](crate::protocol::text).
//!
//! Every wait is bounded: the greeting (an idle 1.4 scheduler takes up to
//! 36 s to accept a new connection), each answer, each line's length. A
//! port that greets with anything but the text port's `200` line, icecream's
//! binary protocol included (the scheduler's own port and a daemon's send
//! their protocol version first), is named as not a text port.
//!
//! ```no_run
//! use icewatch::monitor::text_port::TextPort;
//! use icewatch::protocol::text::Command;
//! use std::time::Duration;
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let addr = "127.0.0.1:8766".parse()?;
//! let mut port = TextPort::connect(addr, Duration::from_secs(60)).await?;
//! for line in port.ask(&Command::ListBlocks, Duration::from_secs(10)).await? {
//!     println!("blocked: {}", line.trim());
//! }
//! # Ok(())
//! # }
//! ```

use crate::protocol::text::{self, Command, ListCsEntry};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};

/// The longest line accepted from the port (a daemon's `internals` text
/// comes as one message of many lines; each line is short).
const MAX_LINE: usize = 64 * 1024;
/// The most lines one answer may hold.
const MAX_LINES: usize = 100_000;

/// What went wrong talking to a text port.
#[derive(Debug, thiserror::Error)]
pub enum TextPortError {
    /// The TCP connection failed.
    #[error("cannot connect to the scheduler's text port at {addr}: {source}")]
    Connect {
        /// The port's address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The port answered, but not as a text port.
    #[error("{addr} does not answer as an icecream text port: {seen}")]
    NotTextPort {
        /// The port's address.
        addr: SocketAddr,
        /// What it said instead.
        seen: String,
    },
    /// Nothing came within the time allowed.
    #[error("the text port at {addr} did not {what} within {limit:?}")]
    Timeout {
        /// The port's address.
        addr: SocketAddr,
        /// What was waited for.
        what: &'static str,
        /// How long.
        limit: Duration,
    },
    /// The scheduler closed the connection or it broke.
    #[error("the text port at {addr} closed the connection{how}")]
    Closed {
        /// The port's address.
        addr: SocketAddr,
        /// The error, if it broke rather than closed.
        how: String,
    },
    /// The scheduler refused the command (`401 …`, `Invalid command …`).
    #[error("the scheduler refused `{command}`: {line}")]
    Refused {
        /// The command sent.
        command: String,
        /// Its answer.
        line: String,
    },
    /// The scheduler's address is not known (yet), so neither is its text
    /// port's.
    #[error("the scheduler's text port is not known yet (scheduler address {0:?})")]
    NoAddress(String),
    /// `removecs` of a name no connected daemon has.
    #[error("no daemon named {0:?} is connected to the scheduler")]
    NoSuchHost(String),
    /// A host name that cannot go on a command line.
    #[error("{0:?} is not a host name (no blanks or control characters)")]
    BadName(String),
}

/// One connection to a text port, greeted.
#[derive(Debug)]
pub struct TextPort {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    addr: SocketAddr,
    greeting: String,
}

impl TextPort {
    /// Connects and reads the greeting, all within `limit`.
    pub async fn connect(addr: SocketAddr, limit: Duration) -> Result<TextPort, TextPortError> {
        let deadline = Instant::now() + limit;
        let timeout = |what| TextPortError::Timeout { addr, what, limit };
        let stream = timeout_at(deadline, TcpStream::connect(addr))
            .await
            .map_err(|_| timeout("accept the connection"))?
            .map_err(|source| TextPortError::Connect { addr, source })?;
        let (read, writer) = stream.into_split();
        let mut port = TextPort {
            reader: BufReader::new(read),
            writer,
            addr,
            greeting: String::new(),
        };
        // A port of icecream's binary protocol sends 4 bytes and no line
        // end: judge the first bytes as they come.
        let start = match timeout_at(deadline, port.reader.fill_buf()).await {
            Err(_) => return Err(port.silent(timeout("greet"))),
            Ok(Err(e)) => return Err(port.closed(&e)),
            Ok(Ok([])) => return Err(port.silent(port.closed_cleanly())),
            Ok(Ok(buf)) => String::from_utf8_lossy(buf).into_owned(),
        };
        let head = start.as_bytes();
        if !b"200".starts_with(&head[..head.len().min(3)]) || head.contains(&0) {
            return Err(port.not_text_port(&describe_greeting(&start)));
        }
        let first = port
            .line(deadline, "greet")
            .await
            .map_err(|e| port.silent(e))?;
        if !text::is_greeting(&first) {
            return Err(port.not_text_port(&describe_greeting(&first)));
        }
        let mut line = first;
        loop {
            port.greeting.push_str(line.trim_end());
            port.greeting.push('\n');
            if text::is_greeting_end(&line) {
                return Ok(port);
            }
            line = port.line(deadline, "finish its greeting").await?;
        }
    }

    /// The port's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The greeting's lines (`200-ICECC 1.4.0: 41s uptime, …`).
    pub fn greeting(&self) -> &str {
        &self.greeting
    }

    /// Sends `command` and returns the lines of its answer, without the
    /// final `200 done`; a refusal is an error. The whole answer must come
    /// within `limit`.
    pub async fn ask(
        &mut self,
        command: &Command,
        limit: Duration,
    ) -> Result<Vec<String>, TextPortError> {
        if let Command::RemoveCs(hosts)
        | Command::BlockCs(hosts)
        | Command::UnblockCs(hosts)
        | Command::Internals(hosts) = command
        {
            if let Some(bad) = hosts.iter().find(|h| !text::valid_host_name(h)) {
                return Err(TextPortError::BadName(bad.clone()));
            }
        }
        let deadline = Instant::now() + limit;
        let sent = format!("{command}\n");
        timeout_at(deadline, self.writer.write_all(sent.as_bytes()))
            .await
            .map_err(|_| TextPortError::Timeout {
                addr: self.addr,
                what: "take the command",
                limit,
            })?
            .map_err(|e| self.closed(&e))?;
        let mut lines = Vec::new();
        loop {
            let line = self.line(deadline, "answer").await?;
            if text::is_done(&line) {
                break;
            }
            if text::is_refusal(&line) {
                // Read on to `200 done`, so the connection stays usable.
                while !text::is_done(&self.line(deadline, "answer").await?) {}
                return Err(TextPortError::Refused {
                    command: command.to_string(),
                    line: line.trim_end().to_owned(),
                });
            }
            if lines.len() == MAX_LINES {
                return Err(self.not_text_port("an answer of more than 100,000 lines"));
            }
            lines.push(line.trim_end_matches(['\n', '\r']).to_owned());
        }
        Ok(lines)
    }

    /// `listcs`: the daemons, with their jobs left out.
    pub async fn list_cs(&mut self, limit: Duration) -> Result<Vec<Daemon>, TextPortError> {
        let lines = self.ask(&Command::ListCs, limit).await?;
        Ok(lines
            .iter()
            .filter_map(|l| text::parse_listcs_line(l))
            .map(Daemon::from)
            .collect())
    }

    /// `listblocks`: the names the scheduler keeps out, in its order.
    pub async fn list_blocks(&mut self, limit: Duration) -> Result<Vec<String>, TextPortError> {
        let lines = self.ask(&Command::ListBlocks, limit).await?;
        Ok(lines
            .iter()
            .filter_map(|l| text::parse_listblocks_line(l))
            .map(str::to_owned)
            .collect())
    }

    /// `blockcs NAME`, unless NAME is blocked already: the scheduler lists
    /// a name once for each time it was blocked and `unblockcs` takes one
    /// away, so a name is blocked once.
    pub async fn block(&mut self, name: &str, limit: Duration) -> Result<Outcome, TextPortError> {
        if self.list_blocks(limit).await?.iter().any(|b| b == name) {
            return Ok(Outcome::unchanged(format!("{name} was already blocked")));
        }
        let lines = self
            .ask(&Command::BlockCs(vec![name.to_owned()]), limit)
            .await?;
        Ok(Outcome::changed(if removed(&lines) {
            format!("blocked {name}: it was connected and has been removed")
        } else {
            format!(
                "blocked {name}: no daemon of that name or address is connected now; \
                 none can log in under it"
            )
        }))
    }

    /// `unblockcs NAME`, if NAME is blocked.
    pub async fn unblock(&mut self, name: &str, limit: Duration) -> Result<Outcome, TextPortError> {
        let blocked = self.list_blocks(limit).await?;
        if !blocked.iter().any(|b| b == name) {
            let list = if blocked.is_empty() {
                "none".to_owned()
            } else {
                blocked.join(", ")
            };
            return Ok(Outcome::unchanged(format!(
                "{name} is not blocked (blocked: {list})"
            )));
        }
        self.ask(&Command::UnblockCs(vec![name.to_owned()]), limit)
            .await?;
        Ok(Outcome::changed(format!(
            "unblocked {name}: it may log in again"
        )))
    }

    /// `removecs NAME`; an error if no daemon of that name is connected.
    pub async fn remove(&mut self, name: &str, limit: Duration) -> Result<Outcome, TextPortError> {
        let lines = self
            .ask(&Command::RemoveCs(vec![name.to_owned()]), limit)
            .await?;
        if !removed(&lines) {
            return Err(TextPortError::NoSuchHost(name.to_owned()));
        }
        Ok(Outcome::changed(format!(
            "removed {name}: it may log in again (a block keeps it out)"
        )))
    }

    /// One line, bounded in length, by `deadline`.
    async fn line(
        &mut self,
        deadline: Instant,
        what: &'static str,
    ) -> Result<String, TextPortError> {
        let mut bytes = Vec::new();
        let limit = deadline.saturating_duration_since(Instant::now());
        loop {
            let buf = match timeout_at(deadline, self.reader.fill_buf()).await {
                Err(_) => {
                    return Err(TextPortError::Timeout {
                        addr: self.addr,
                        what,
                        limit,
                    })
                }
                Ok(Err(e)) => return Err(self.closed(&e)),
                Ok(Ok(buf)) => buf,
            };
            if buf.is_empty() {
                if bytes.is_empty() {
                    return Err(self.closed_cleanly());
                }
                break;
            }
            let (take, end) = match buf.iter().position(|&b| b == b'\n') {
                Some(at) => (at + 1, true),
                None => (buf.len(), false),
            };
            bytes.extend_from_slice(&buf[..take]);
            self.reader.consume(take);
            if end {
                break;
            }
            if bytes.len() > MAX_LINE {
                return Err(self.not_text_port("a line of more than 64 KiB"));
            }
        }
        // icecream sends the answer's own NUL-terminated strings.
        bytes.retain(|&b| b != 0);
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    fn closed(&self, e: &std::io::Error) -> TextPortError {
        TextPortError::Closed {
            addr: self.addr,
            how: format!(": {e}"),
        }
    }

    fn closed_cleanly(&self) -> TextPortError {
        TextPortError::Closed {
            addr: self.addr,
            how: String::new(),
        }
    }

    /// What a port that says nothing at first is: not a text port.
    fn silent(&self, e: TextPortError) -> TextPortError {
        match e {
            TextPortError::Closed { .. } => {
                self.not_text_port("it closed the connection without a greeting")
            }
            TextPortError::Timeout { limit, .. } => self.not_text_port(&format!(
                "it accepted the connection but sent no greeting within {limit:?}"
            )),
            e => e,
        }
    }

    fn not_text_port(&self, seen: &str) -> TextPortError {
        TextPortError::NotTextPort {
            addr: self.addr,
            seen: seen.to_owned(),
        }
    }
}

/// Whether an answer to `blockcs` or `removecs` says a daemon was
/// disconnected (`removing host NAME`).
fn removed(lines: &[String]) -> bool {
    lines.iter().any(|l| l.starts_with("removing host"))
}

/// What a block, an unblock or a remove did.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Outcome {
    /// Whether the scheduler's block list or its daemons changed.
    pub changed: bool,
    /// What happened, in a sentence.
    pub said: String,
}

impl Outcome {
    fn changed(said: String) -> Outcome {
        Outcome {
            changed: true,
            said,
        }
    }

    fn unchanged(said: String) -> Outcome {
        Outcome {
            changed: false,
            said,
        }
    }
}

/// What a port sent instead of the text port's greeting, in words.
fn describe_greeting(first: &str) -> String {
    let bytes = first.as_bytes();
    let binary = bytes
        .iter()
        .any(|&b| b < 0x20 && !matches!(b, b'\n' | b'\r' | b'\t'));
    if binary {
        let hex: Vec<String> = bytes.iter().take(8).map(|b| format!("{b:02x}")).collect();
        format!(
            "it sent binary data ({}), as icecream's scheduler and daemon ports do; \
             the text port is the scheduler's port + 1 (8766 by default)",
            hex.join(" ")
        )
    } else {
        let shown: String = first.trim_end().chars().take(80).collect();
        format!("it greeted with {shown:?}")
    }
}

/// A daemon as `listcs` shows it.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Daemon {
    /// Node name.
    pub name: String,
    /// `IP:PORT` as the scheduler sees it.
    pub address: String,
    /// Platform.
    pub platform: String,
    /// Speed estimate.
    pub speed: f64,
    /// Jobs running.
    pub jobs: u32,
    /// Slots.
    pub max_jobs: u32,
    /// Load, 0 to 1000.
    pub load: u32,
    /// Seconds since it began installing an environment, while it does.
    pub installing_s: Option<u64>,
}

impl From<ListCsEntry<'_>> for Daemon {
    fn from(e: ListCsEntry<'_>) -> Daemon {
        Daemon {
            name: e.name.to_owned(),
            address: format!("{}:{}", e.ip, e.port),
            platform: e.platform.to_owned(),
            speed: e.speed,
            jobs: e.jobs,
            max_jobs: e.max_jobs,
            load: e.load,
            installing_s: e.installing_s,
        }
    }
}

/// The text port of the scheduler at `scheduler` (`host:port`, as the
/// state shows it): the same host, port + 1, looked up.
pub async fn text_port_of(scheduler: &str) -> Option<SocketAddr> {
    let (host, port) = scheduler.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = port.parse::<u16>().ok()?.checked_add(1)?;
    tokio::net::lookup_host((host, port)).await.ok()?.next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_greetings_are_named_as_icecream_s_other_ports() {
        let said = describe_greeting("+\0\0\0");
        assert!(said.contains("binary data (2b 00 00 00)"), "{said}");
        assert!(said.contains("port + 1"), "{said}");
        assert_eq!(
            describe_greeting("SSH-2.0-OpenSSH_9.2\r\n"),
            "it greeted with \"SSH-2.0-OpenSSH_9.2\""
        );
    }

    #[tokio::test]
    async fn the_text_port_of_a_scheduler_is_its_port_plus_one() {
        assert_eq!(
            text_port_of("127.0.0.1:8765").await,
            Some("127.0.0.1:8766".parse().unwrap())
        );
        assert_eq!(
            text_port_of("[::1]:9000").await,
            Some("[::1]:9001".parse().unwrap())
        );
        assert_eq!(text_port_of("127.0.0.1:65535").await, None);
        assert_eq!(text_port_of("").await, None);
    }
}
