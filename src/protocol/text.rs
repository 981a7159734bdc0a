//! The scheduler's text port (its port + 1, 8766 by default): one command a
//! line, answered by lines that end with `200 done`.
//!
//! Commands: `listcs`, `listblocks`, `listjobs`, `removecs HOST…`,
//! `blockcs HOST…`, `unblockcs HOST…`, `internals [HOST…]`, `help`, `quit`.
//! HOST matches a node name or an IP. On connect the scheduler greets with a
//! few lines ending in `200 Use 'help' for help and 'quit' to quit.`
//!
//! What icecream 1.4's scheduler answers (`scheduler/scheduler.cpp`,
//! `handle_line`), each answer ending in `200 done`:
//!
//! ```text
//! 200-ICECC 1.4.0: 41s uptime, 2 hosts, 0 jobs in queue (0 total).
//! 200 Use 'help' for help and 'quit' to quit.
//! listcs         → " remote1 (127.0.0.1:10246) [x86_64] speed=12.50 jobs=0/2 load=0"
//!                  (+ " busy installing since 3 s" while it installs an environment;
//!                  its jobs follow, indented by three spaces)
//! listblocks     → "   remote1", one blocked name a line
//! blockcs NAME   → "removing host NAME" if it was connected; nothing else
//! removecs NAME  → the same, without keeping it out
//! unblockcs NAME → nothing
//! blockcs        → "401 Sure. But which hosts?"
//! bogus          → "Invalid command 'bogus'"
//! internals NAME → each matching daemon's `dump_internals` text
//!                  ("Node Name: remote1" then "  Key: value" lines),
//!                  or "NAME not reporting"
//! ```
//!
//! `internals` makes the scheduler ask the daemon and wait for its answer,
//! with every other client of the scheduler waiting meanwhile: ask it
//! sparingly.

use std::fmt;

/// A command for the text port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// `listcs`: every daemon with its jobs.
    ListCs,
    /// `listblocks`: blocked hosts.
    ListBlocks,
    /// `listjobs`: every job the scheduler knows.
    ListJobs,
    /// `removecs HOST…`: disconnect daemons.
    RemoveCs(Vec<String>),
    /// `blockcs HOST…`: disconnect and keep out.
    BlockCs(Vec<String>),
    /// `unblockcs HOST…`: let back in.
    UnblockCs(Vec<String>),
    /// `internals [HOST…]`: daemons' internal status.
    Internals(Vec<String>),
    /// `help`.
    Help,
    /// `quit`.
    Quit,
}

impl Command {
    /// Parses a command line as the scheduler does (case-insensitive command,
    /// words split on blanks); `None` for an unknown or empty command.
    pub fn parse(line: &str) -> Option<Command> {
        let mut words = line.split_whitespace();
        let cmd = words.next()?.to_ascii_lowercase();
        let hosts: Vec<String> = words.map(str::to_owned).collect();
        Some(match cmd.as_str() {
            "listcs" => Command::ListCs,
            "listblocks" => Command::ListBlocks,
            "listjobs" => Command::ListJobs,
            "removecs" => Command::RemoveCs(hosts),
            "blockcs" => Command::BlockCs(hosts),
            "unblockcs" => Command::UnblockCs(hosts),
            "internals" => Command::Internals(hosts),
            "help" => Command::Help,
            "quit" | "exit" => Command::Quit,
            _ => return None,
        })
    }
}

impl fmt::Display for Command {
    /// The command line to send, without the newline.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (name, hosts): (&str, &[String]) = match self {
            Command::ListCs => ("listcs", &[]),
            Command::ListBlocks => ("listblocks", &[]),
            Command::ListJobs => ("listjobs", &[]),
            Command::RemoveCs(h) => ("removecs", h),
            Command::BlockCs(h) => ("blockcs", h),
            Command::UnblockCs(h) => ("unblockcs", h),
            Command::Internals(h) => ("internals", h),
            Command::Help => ("help", &[]),
            Command::Quit => ("quit", &[]),
        };
        f.write_str(name)?;
        for h in hosts {
            write!(f, " {h}")?;
        }
        Ok(())
    }
}

/// Whether a line ends an answer (`200 done`).
pub fn is_done(line: &str) -> bool {
    line.trim_end() == "200 done"
}

/// Whether a line ends the greeting (`200 Use 'help'…`).
pub fn is_greeting_end(line: &str) -> bool {
    line.starts_with("200 ") && !is_done(line)
}

/// Whether a line of an answer is the scheduler refusing the command
/// (`401 Sure. But which hosts?`, `Invalid command '…'`).
pub fn is_refusal(line: &str) -> bool {
    line.starts_with("401 ") || line.starts_with("Invalid command")
}

/// Whether a connection's first line is the text port's greeting
/// (`200-ICECC 1.4.0: …` or a bare `200 …`).
pub fn is_greeting(line: &str) -> bool {
    line.starts_with("200-ICECC") || line.starts_with("200 ")
}

/// The scheduler's uptime in seconds, from its greeting
/// (`200-ICECC 1.4.0: 41s uptime, …` gives 41); `None` if it does not say.
pub fn greeting_uptime_s(greeting: &str) -> Option<u64> {
    let line = greeting.lines().find(|l| l.starts_with("200-ICECC"))?;
    let (_, rest) = line.split_once(": ")?;
    rest.split_once("s uptime")?.0.trim().parse().ok()
}

/// A host name to put on a command line: not empty, no blanks or control
/// characters (they would split it into other hosts or other commands).
pub fn valid_host_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && !name.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// One name of a `listblocks` answer (`   NAME`).
pub fn parse_listblocks_line(line: &str) -> Option<&str> {
    let name = line.trim();
    (!name.is_empty() && !is_done(line) && !is_refusal(line)).then_some(name)
}

/// One daemon line of a `listcs` answer:
/// ` NAME (IP:PORT) [PLATFORM] speed=S jobs=CUR/MAX load=L`, then
/// ` busy installing since N s` while it installs an environment.
#[derive(Clone, Debug, PartialEq)]
pub struct ListCsEntry<'a> {
    /// Node name.
    pub name: &'a str,
    /// Address the scheduler sees.
    pub ip: &'a str,
    /// Daemon port.
    pub port: u16,
    /// Platform.
    pub platform: &'a str,
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

/// Parses a `listcs` daemon line; `None` for job lines (indented by three
/// spaces) and anything else.
pub fn parse_listcs_line(line: &str) -> Option<ListCsEntry<'_>> {
    let rest = line.strip_prefix(' ')?;
    if rest.starts_with(' ') {
        return None;
    }
    let (name, rest) = rest.split_once(" (")?;
    let (addr, rest) = rest.split_once(") [")?;
    let (ip, port) = addr.rsplit_once(':')?;
    let (platform, rest) = rest.split_once("] speed=")?;
    let (speed, rest) = rest.split_once(" jobs=")?;
    let (jobs, rest) = rest.split_once('/')?;
    let (max_jobs, rest) = rest.split_once(" load=")?;
    let (load, rest) = rest.split_once(' ').unwrap_or((rest, ""));
    let installing_s = match rest.strip_prefix("busy installing since ") {
        Some(since) => Some(since.trim_end().strip_suffix(" s")?.parse().ok()?),
        None => None,
    };
    Some(ListCsEntry {
        name,
        ip,
        port: port.parse().ok()?,
        platform,
        speed: speed.parse().ok()?,
        jobs: jobs.parse().ok()?,
        max_jobs: max_jobs.parse().ok()?,
        load: load.trim_end().parse().ok()?,
        installing_s,
    })
}

/// One daemon's answer to `internals` (its `dump_internals`): the node
/// name, then each `Key: value` line as given (`Architecture`,
/// `NativeEnv (gcc)`, `ReceivedEnv[…] last_use`, `Current kids`,
/// `Supported features`, `cpu`, `load`, `memory`, …).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Internals {
    /// The daemon's node name.
    pub name: String,
    /// False when the scheduler got no answer from it (`NAME not reporting`).
    pub reporting: bool,
    /// Its lines, split at the first `: `, in order.
    pub fields: Vec<(String, String)>,
}

/// Splits the lines of an `internals` answer into one [`Internals`] per
/// daemon. Lines before the first daemon's are ignored.
pub fn parse_internals<'a>(lines: impl IntoIterator<Item = &'a str>) -> Vec<Internals> {
    let mut daemons: Vec<Internals> = Vec::new();
    for line in lines {
        let line = line.trim_end();
        if let Some(name) = line.strip_prefix("Node Name: ") {
            daemons.push(Internals {
                name: name.to_owned(),
                reporting: true,
                ..Internals::default()
            });
        } else if let Some(name) = line.strip_suffix(" not reporting") {
            daemons.push(Internals {
                name: name.to_owned(),
                reporting: false,
                fields: Vec::new(),
            });
        } else if let Some(last) = daemons.last_mut() {
            let line = line.trim_start();
            if line.is_empty() {
                continue;
            }
            let (key, value) = line
                .split_once(": ")
                .unwrap_or((line.strip_suffix(':').unwrap_or(line), ""));
            last.fields.push((key.to_owned(), value.to_owned()));
        }
    }
    daemons
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_round_trip_through_their_lines() {
        for cmd in [
            Command::ListCs,
            Command::RemoveCs(vec!["remote1".into(), "10.0.0.2".into()]),
            Command::Internals(vec![]),
            Command::Quit,
        ] {
            assert_eq!(Command::parse(&cmd.to_string()), Some(cmd));
        }
        assert_eq!(Command::parse("  LISTJOBS \n"), Some(Command::ListJobs));
        assert_eq!(Command::parse("dance"), None);
    }

    #[test]
    fn reads_a_listcs_line_and_skips_job_lines() {
        let e =
            parse_listcs_line(" remote1 (127.0.0.1:10246) [x86_64] speed=12.50 jobs=1/2 load=300")
                .unwrap();
        assert_eq!(
            (e.name, e.ip, e.port, e.platform),
            ("remote1", "127.0.0.1", 10246, "x86_64")
        );
        assert_eq!((e.speed, e.jobs, e.max_jobs, e.load), (12.5, 1, 2, 300));
        assert_eq!(e.installing_s, None);
        assert_eq!(parse_listcs_line("   job 3 …"), None);
        assert!(is_done("200 done\n") && !is_greeting_end("200 done"));
        let busy = parse_listcs_line(
            " remote2 (127.0.0.1:10247) [x86_64] speed=0.00 jobs=0/3 load=0 busy installing since 7 s",
        )
        .unwrap();
        assert_eq!(
            (busy.name, busy.load, busy.installing_s),
            ("remote2", 0, Some(7))
        );
    }

    #[test]
    fn reads_the_scheduler_s_other_answers_as_icecream_1_4_gives_them() {
        assert!(is_greeting(
            "200-ICECC 1.4.0: 41s uptime, 0 hosts, 0 jobs in queue (0 total)."
        ));
        assert!(!is_greeting("+\0\0\0") && !is_greeting("HTTP/1.1 400 Bad Request"));
        assert_eq!(
            greeting_uptime_s(
                "200-ICECC 1.4.0: 41s uptime, 2 hosts, 0 jobs in queue (0 total).\n\
                 200 Use 'help' for help and 'quit' to quit.\n"
            ),
            Some(41)
        );
        assert_eq!(greeting_uptime_s("200 hello\n"), None);
        assert_eq!(parse_listblocks_line("   remote1"), Some("remote1"));
        assert_eq!(parse_listblocks_line("200 done"), None);
        assert!(is_refusal("401 Sure. But which hosts?"));
        assert!(is_refusal("Invalid command 'bogus'") && !is_refusal("removing host a"));
        for bad in ["", "a b", "a\nlistcs", "a\tb", "a\u{7f}"] {
            assert!(!valid_host_name(bad), "{bad:?}");
        }
        assert!(valid_host_name("remote1") && valid_host_name("10.0.0.2"));
    }

    #[test]
    fn splits_internals_per_daemon() {
        let text = "Node Name: remote1\n  Remote name: \n  Architecture: x86_64\n  \
                    NativeEnv (gcc): /x/native.tar.gz, size 100\n  Current kids: 0 (max: 2)\n  \
                    Supported features: env_xz env_zstd\n  cpu: 98 idle, 0 nice\n\n\
                    remote2 not reporting\n";
        let d = parse_internals(text.lines());
        assert_eq!(d.len(), 2);
        assert_eq!((d[0].name.as_str(), d[0].reporting), ("remote1", true));
        assert_eq!(d[0].fields[0], ("Remote name".into(), String::new()));
        assert_eq!(
            d[0].fields[2],
            (
                "NativeEnv (gcc)".into(),
                "/x/native.tar.gz, size 100".into()
            )
        );
        assert_eq!(
            d[0].fields.last().unwrap(),
            &("cpu".into(), "98 idle, 0 nice".into())
        );
        assert_eq!(
            (d[1].name.as_str(), d[1].reporting, d[1].fields.len()),
            ("remote2", false, 0)
        );
    }
}
