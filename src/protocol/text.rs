//! The scheduler's text port (its port + 1, 8766 by default): one command a
//! line, answered by lines that end with `200 done`.
//!
//! Commands: `listcs`, `listblocks`, `listjobs`, `removecs HOST…`,
//! `blockcs HOST…`, `unblockcs HOST…`, `internals [HOST…]`, `help`, `quit`.
//! HOST matches a node name or an IP. On connect the scheduler greets with a
//! few lines ending in `200 Use 'help' for help and 'quit' to quit.`

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

/// One daemon line of a `listcs` answer:
/// ` NAME (IP:PORT) [PLATFORM] speed=S jobs=CUR/MAX load=L`.
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
    let load = rest.split_whitespace().next()?;
    Some(ListCsEntry {
        name,
        ip,
        port: port.parse().ok()?,
        platform,
        speed: speed.parse().ok()?,
        jobs: jobs.parse().ok()?,
        max_jobs: max_jobs.parse().ok()?,
        load: load.parse().ok()?,
    })
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
        assert_eq!(parse_listcs_line("   job 3 …"), None);
        assert!(is_done("200 done\n") && !is_greeting_end("200 done"));
    }
}
