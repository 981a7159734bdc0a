//! The `icewatch` command line: clap definitions and typed options. Each
//! subcommand documents itself in `icewatch help SUBCOMMAND`, with examples.
//! [`crate::commands`] carries them out.

use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};
use icewatch::history::{Location, Server};
use icewatch::monitor::MAX_HISTORY;
use icewatch::standin::session::JobDoneType;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::time::Duration;

/// Where the page and the APIs are served unless `--listen` says otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

const ABOUT: &str = "Live monitor for icecream (icecc) distributed build clusters";

const LONG_ABOUT: &str = "\
Live monitor for icecream (icecc) distributed build clusters.

icewatch logs in to an icecream scheduler as a monitor, keeps a live picture of \
the cluster (hosts, slots, jobs, who compiles for whom) and serves it as a web \
page, a WebSocket stream of JSON diffs, a JSON API and Prometheus metrics. It \
can also print the raw message stream as JSON lines, record it, replay it, and \
simulate a whole cluster for a demo.";

const EXAMPLES: &str = "\
Examples:
  icewatch demo                         a simulated cluster; open the printed URL
  icewatch monitor scheduler.lan        watch a real cluster
  icewatch dump scheduler.lan | jq .    every message as one JSON object a line
  icewatch record scheduler.lan -o build.icwr
  icewatch replay build.icwr --speed 10
  icewatch top scheduler.lan            the cluster in this terminal
  icewatch status --json | jq .totals   one look, for scripts
  icewatch admin scheduler.lan blocks   the hosts the scheduler keeps out";

/// The `icewatch` command.
#[derive(Debug, Parser)]
#[command(
    name = "icewatch",
    version,
    about = ABOUT,
    long_about = LONG_ABOUT,
    after_help = EXAMPLES,
    propagate_version = true
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Watch a real cluster: connect to its scheduler and serve the page
    #[command(
        long_about = "\
Connect to an icecream scheduler as a monitor and serve the live cluster: the \
page at /, a WebSocket of JSON diffs at /ws, JSON at /api/v1/snapshot, \
/api/v1/hosts and /api/v1/jobs, Prometheus metrics at /metrics and /healthz.

The scheduler is found as icecream's own tools find it: HOST[:PORT] or HOST \
PORT if given (port 8765 unless told), else the USE_SCHEDULER environment \
variable (host[:port]), else a UDP broadcast for the network name (-n, default \
ICECREAM). icewatch reconnects by itself when the scheduler goes away.

It also reads the scheduler's text port (its port + 1) for the hosts it keeps \
out and a host's internals, shown in the page's host panel. With --admin (and \
a --token) the panel can block, unblock and remove hosts; every action is \
logged on stderr and in the history (see docs/admin.md).

The scheduler forgets its blocks when it restarts. With --keep-blocks icewatch \
keeps its block list (whoever blocked: the page, `icewatch admin`, telnet) in \
the history and blocks those hosts again on the restarted scheduler; an \
unblock ends a kept block. Until icewatch reaches the new scheduler's text \
port (seconds), a blocked daemon may log in.

It keeps the cluster's history (every finished job, host and scheduler \
sessions, load) in an SQLite file that survives restarts, named at start: \
--db chooses another file, a PostgreSQL database that several icewatch share \
(postgres://USER:PASSWORD@HOST/DATABASE) or none, --retain how long; \
`icewatch history` reads it (docs/history.md).

The first line on stdout is the address to open in a browser.",
        after_help = "\
Examples:
  icewatch monitor                               find the scheduler like icecc does
  icewatch monitor scheduler.lan                 port 8765
  icewatch monitor 10.0.0.5:8765
  USE_SCHEDULER=10.0.0.5 icewatch monitor
  icewatch monitor scheduler.lan --listen 0.0.0.0:8080 --token \"$(openssl rand -hex 16)\"
  icewatch monitor scheduler.lan --admin --token \"$(openssl rand -hex 16)\"
  icewatch monitor scheduler.lan --keep-blocks   blocks survive scheduler restarts
  icewatch monitor scheduler.lan --db none       keep no history
  icewatch monitor scheduler.lan --db postgres://icewatch:PASSWORD@db.lan/icewatch
  icewatch monitor scheduler.lan --db postgres:///icewatch   local socket, as this user"
    )]
    Monitor(MonitorArgs),

    /// Run a simulated cluster and serve its page: no scheduler needed
    #[command(
        long_about = "\
Run a simulated icecream cluster inside icewatch and serve its page exactly as \
`icewatch monitor` does. The simulation is a scheduler speaking the real wire \
protocol over a loopback TCP connection to the real monitor code: hosts with \
different slot counts and platforms, one or two that take no remote jobs, \
builds that burst like `make -j`, a few failures, local jobs and links, hosts \
leaving and joining, and periodic load reports.

With --as-scheduler it serves the same simulation on --port to any monitor \
instead (icemon, icecream-sundae, another icewatch), as a fake scheduler.",
        after_help = "\
Examples:
  icewatch demo                                  then open the printed URL
  icewatch demo --hosts 40 --seed 7 --rate 500
  icewatch demo --as-scheduler --port 8765       then: USE_SCHEDULER=127.0.0.1 icemon
  icewatch demo --as-scheduler --port 0          any free port, printed on stdout"
    )]
    Demo(DemoArgs),

    /// Print every message from a scheduler or a file as one JSON object a line
    #[command(
        long_about = "\
Print every message as one JSON object a line (NDJSON) on stdout: \"type\" is \
icecream's own name for the message (MON_STATS, MON_GET_CS, MON_JOB_BEGIN, \
MON_JOB_DONE or JOB_DONE, MON_LOCAL_JOB_BEGIN, JOB_LOCAL_DONE, END, ...), then \
its decoded fields; a MON_STATS text becomes an object. Status goes to stderr, \
so stdout pipes cleanly into jq.

Reads a live scheduler (found like `icewatch monitor` finds it), or with \
--capture a file: an icewatch recording, or a raw capture (two little-endian \
version words, then frames). Messages read from a recording carry \"at_ms\", \
their time since the recording started.

A live dump goes on when the scheduler restarts: it connects again as \
`monitor` does and prints a line {\"session\": N, \"at_ms\": ..., \"scheduler\": \
..., \"protocol\": ...} before the new session's messages. --once stops at the \
first end instead.",
        after_help = "\
Examples:
  icewatch dump scheduler.lan | jq 'select(.type == \"MON_JOB_DONE\")'
  icewatch dump --capture build.icwr --raw
  icewatch dump --capture tests/data/basic.v43.bin | jq -r .type | sort | uniq -c"
    )]
    Dump(DumpArgs),

    /// Record a scheduler's message stream to a file
    #[command(
        long_about = "\
Record everything a scheduler sends to a monitor into an lz4-compressed file \
(format in docs/recording.md): a header with the protocol version and the \
start time, then every frame as received with its time. Progress (messages, \
bytes, elapsed) goes to stderr. The file is flushed every second, so a \
recording cut short by a crash still reads back up to the last whole message; \
Ctrl-C ends it cleanly. When the scheduler goes away the recording goes on: \
icewatch connects again as `monitor` does and marks the new scheduler session \
in the file; --once ends the recording at the first end instead.

Play it back with `icewatch replay`, or print it with `icewatch dump --capture`.",
        after_help = "\
Examples:
  icewatch record scheduler.lan -o monday.icwr
  icewatch record 10.0.0.5 8765 -o short.icwr --count 1000"
    )]
    Record(RecordArgs),

    /// Serve the page from a recording as if it were live
    #[command(
        long_about = "\
Serve the page from a recording (or a raw capture) as if the cluster were \
live, at the recorded pace times --speed (0: as fast as possible; a quiet \
spell plays as a minute at most). The page runs on the recording's clock: \
jobs last as long as they did, whatever the speed, and the scheduler shows as \
a replay of the file, offline once the recording ended. Scheduler restarts in \
the recording play as the recorded monitor saw them.

With --as-scheduler it plays the recording to any monitor that connects to \
--port instead, each from the start, as a fake scheduler; a scheduler restart \
in the recording reaches the monitor as its hosts leaving and new ones coming.",
        after_help = "\
Examples:
  icewatch replay monday.icwr                    then open the printed URL
  icewatch replay monday.icwr --speed 20
  icewatch replay monday.icwr --as-scheduler --port 8765 --speed 0"
    )]
    Replay(ReplayArgs),

    /// The cluster in this terminal: hosts, slots, jobs, sparklines
    #[command(
        long_about = "\
Show the live cluster full screen in this terminal, as icecream-sundae does and \
more: sundae's host table (ID, NAME, IN, CUR, MAX, a bar of the slots, OUT, \
LOCAL, ACTIVE, PENDING, SPEED) and totals with its keys, the job list (waiting, \
compiling, local, recently finished, failed with the reason), busy-slot \
sparklines of the cluster and of each host, a pane with a host's details, a \
filter by host or file name, and the scheduler's state (online, offline, \
reconnecting) in the status line. Press ? for the keys.

The scheduler is found as `icewatch monitor` finds it (HOST[:PORT], HOST PORT, \
USE_SCHEDULER, or broadcast) and icewatch logs in to it itself. With --server \
it reads a running icewatch's WebSocket instead (the address `icewatch monitor` \
prints), so that a team's terminals do not each log in to the scheduler. Either \
way the screen is the same, redrawn at most every --period after a change.

It works on 80x24 and 16-colour terminals, follows resizes, and gives the \
terminal back as it was on exit and on a crash. It needs a terminal: for \
scripts, see `icewatch status`.",
        after_help = "\
Keys (as in icecream-sundae): j/k or arrows select a host, h/l or arrows and \
Tab choose the sort column, r reverses it, Space or Enter opens the host's \
pane, a lists what each host compiles; f chooses the jobs shown, / filters, \
? helps, q quits.

Examples:
  icewatch top                                  find the scheduler like icecc does
  icewatch top scheduler.lan
  icewatch top --server http://watch.lan:8080/ --token \"$TOKEN\"
  icewatch demo --as-scheduler --port 0         then: icewatch top 127.0.0.1:PORT"
    )]
    Top(TopArgs),

    /// One look at the cluster for scripts: the host table and the free slots
    #[command(
        long_about = "\
Connect to the scheduler, wait until its first burst of host statistics has \
settled, print the host table and the totals (hosts, slots, busy, waiting, \
free: the capacity to give `make -j`) and exit 0. With --json print the \
snapshot JSON of docs/json.md instead (what /api/v1/snapshot serves, without \
its \"type\" and \"seq\").

Settled means: a scheduler announces every host it knows at once when a \
monitor logs in; status prints when no new host has appeared for 500 ms, and \
at the latest 5 s after it logged in. The scheduler is found as `icewatch \
monitor` finds it. When no scheduler answers (refused, unknown name, no \
answer within --timeout, not a scheduler) it prints one line on stderr and \
exits 1.",
        after_help = "\
Examples:
  icewatch status scheduler.lan
  make -j\"$(icewatch status --json | jq '.totals.total_slots')\"
  icewatch status --json | jq '.hosts[] | select(.online) | .name'"
    )]
    Status(StatusArgs),

    /// Talk to the scheduler's text port: list, block, unblock, remove hosts
    #[command(
        long_about = "\
Talk to the icecream scheduler's text port (its port + 1, 8766 by default) \
directly, as telnet would, and print the answer: the daemons (list), the \
hosts it keeps out (blocks), block, unblock or remove a host by node name or \
IP address, or ask daemons for their internal state (internals).

The scheduler is found as `icewatch monitor` finds it (HOST[:PORT], else \
USE_SCHEDULER, else a broadcast); --text-port gives the text port's address \
directly. The text port has no access control of its own: anyone who \
reaches it can do all of this.

A blocked host is disconnected and cannot log in again until it is \
unblocked; the scheduler forgets its blocks when it restarts. A removed host \
is disconnected and usually logs in again within seconds.",
        after_help = "\
Examples:
  icewatch admin scheduler.lan list
  icewatch admin scheduler.lan block buildbox7      keep it out
  icewatch admin scheduler.lan unblock buildbox7
  icewatch admin internals buildbox7                scheduler from USE_SCHEDULER
  icewatch admin --text-port 10.0.0.5:8766 blocks",
        args_conflicts_with_subcommands = false,
        subcommand_precedence_over_arg = true
    )]
    Admin(AdminArgs),

    /// Load a real scheduler with simulated daemons and their builds
    #[command(
        long_about = "\
Load a real icecream scheduler with N simulated iceccd daemons, to measure the \
scheduler and its monitors at the size of a large build farm.

Each daemon logs in as iceccd does (slots, platform, protocol 42 to 44 and \
features drawn from a realistic mix, about one in twenty --no-remote), sends \
its load every few seconds, and listens on a port of its own, because the \
scheduler only sends jobs to daemons it can connect to. Compile requests come \
from random daemons, as icecc clients ask their own daemon; the scheduler \
picks a server and that simulated daemon reports the job's begin and end. \
About one compile in fifty fails and is retried locally; links run locally. \
Now and then a daemon drains (reports itself fully loaded, finishes its jobs), \
leaves and logs in again a few seconds later.

The load starts once every daemon is logged in and runs for --duration; then \
no new job starts, every job ends, the daemons stay a while (--linger) and log \
out. Ctrl-C logs every daemon out at once; the scheduler ends the jobs they \
had. At the end a summary goes to stdout (with --json, one JSON object).

Run it only against a scheduler you own: its daemons take real jobs. Each \
daemon uses two file descriptors; loadgen raises its own limit as far as the \
hard limit (ulimit -Hn) allows, and warns when that is not enough.",
        after_help = "\
Examples:
  icewatch loadgen 127.0.0.1 --daemons 50 --duration 30s
  icewatch loadgen sched.test:8765 --daemons 500 --jobs-per-minute 10000 --duration 5m --json
  icewatch loadgen --daemons 20 --seed 7        find the scheduler like iceccd does; Ctrl-C ends it"
    )]
    Loadgen(LoadgenArgs),

    /// Read the cluster's history: finished jobs, host sessions, builds
    #[command(
        long_about = "\
Read what `icewatch monitor` kept of the cluster's past (docs/history.md): \
finished jobs, host sessions and builds, newest first, as a table or with \
--json as one JSON object a line. The history is an SQLite file, or a \
PostgreSQL database that several icewatch share (see --db), so sqlite3, psql \
and your own SQL read it too.

Times (--since, --until) are a duration before now (30m, 2h, 1d), a date and \
time in UTC (2026-12-07T08:00:00Z, \"2026-12-07 08:00\") or milliseconds \
since the epoch.",
        after_help = "\
Examples:
  icewatch history jobs --since 1h                  the last hour's jobs
  icewatch history jobs --failed --since 1d --json | jq .file
  icewatch history jobs --host build7 --file parser.cpp
  icewatch history hosts --since 1d
  icewatch history builds --since 1d --build-gap 30s
  icewatch history builds --host build7 --json | jq .why
  icewatch history jobs --db postgres://icewatch@db.lan/icewatch --scheduler sched-tokyo:8765"
    )]
    History(HistoryCommand),
}

/// `icewatch history`.
#[derive(Debug, Clone, Args)]
pub struct HistoryCommand {
    /// What to read.
    #[command(subcommand)]
    pub what: HistoryWhat,
}

/// What `icewatch history` reads.
#[derive(Debug, Clone, Subcommand)]
pub enum HistoryWhat {
    /// Finished jobs, newest first
    Jobs(HistoryQuery),
    /// Host sessions (login to logout), newest first
    Hosts(HistoryQuery),
    /// Builds: each submitter's jobs until a pause without any (--build-gap),
    /// with why they did not distribute (docs/insights.md)
    Builds(BuildsArgs),
    /// Jobs as a timeline that Perfetto and chrome://tracing open
    #[command(
        long_about = "\
Write the jobs of a time window as a Chrome trace (JSON trace event format): \
one slice per job, a track per host and slot, the submitter, the exit code and \
why it ended as arguments. Open it in https://ui.perfetto.dev or chrome://tracing.",
        after_help = "\
Examples:
  icewatch history trace --since 2h -o build.json
  icewatch history trace --since \"2026-12-07 08:00\" --until \"2026-12-07 09:00\" --host build7 -o -"
    )]
    Trace(TraceArgs),
}

/// `icewatch history trace`.
#[derive(Debug, Clone, Args)]
pub struct TraceArgs {
    /// Which jobs (--limit does not apply: every job of the window).
    #[command(flatten)]
    pub query: HistoryQuery,

    /// The file to write ("-": stdout)
    #[arg(short = 'o', long, value_name = "FILE")]
    pub output: PathBuf,
}

/// Which part of the history, and how to print it.
#[derive(Debug, Clone, Args)]
pub struct HistoryQuery {
    /// The history: an SQLite file, or a PostgreSQL database
    /// (postgres://USER:PASSWORD@HOST:PORT/DATABASE, postgresql://...)
    /// [default: $XDG_STATE_HOME/icewatch/history.sqlite, else
    /// ~/.local/state/icewatch/history.sqlite]
    #[arg(long, value_name = "PATH|URL", value_parser = db)]
    pub db: Option<Db>,

    /// Only jobs and hosts of the scheduler at this address (host:port, as
    /// in the scheduler_sessions table), where several icewatch share one
    /// database
    #[arg(long, value_name = "ADDRESS")]
    pub scheduler: Option<String>,

    /// Only what ended at or after this time (30m, 2h, 1d ago; a UTC date
    /// and time; ms since the epoch)
    #[arg(long, value_name = "WHEN", value_parser = when)]
    pub since: Option<u64>,

    /// Only what ended (jobs) or began (hosts) before this time
    #[arg(long, value_name = "WHEN", value_parser = when)]
    pub until: Option<u64>,

    /// Only jobs submitted by or compiled on this host, or its sessions (by name)
    #[arg(long, value_name = "NAME")]
    pub host: Option<String>,

    /// Only jobs whose file name contains this
    #[arg(long, value_name = "TEXT")]
    pub file: Option<String>,

    /// Only jobs whose compiler failed
    #[arg(long)]
    pub failed: bool,

    /// At most this many rows (1 to 10000)
    #[arg(long, value_name = "N", default_value_t = 100,
          value_parser = clap::value_parser!(u16).range(1..=10_000))]
    pub limit: u16,

    /// One JSON object a line instead of a table
    #[arg(long)]
    pub json: bool,
}

/// `icewatch history builds`.
#[derive(Debug, Clone, Args)]
pub struct BuildsArgs {
    /// Which jobs, and how to print.
    #[command(flatten)]
    pub query: HistoryQuery,

    /// A pause this long without a job of a submitter (none submitted,
    /// running or beginning) ends its build. At the default, builds are
    /// read from those the history keeps; another gap groups every job of
    /// the window again, which takes seconds on a day of a large cluster
    #[arg(long = "build-gap", visible_alias = "gap", value_name = "DURATION",
          default_value = "60s", value_parser = duration)]
    pub gap: Duration,
}

/// A moment given as a duration before now, a UTC date and time, or ms
/// since the epoch; in ms since the epoch.
fn when(s: &str) -> Result<u64, String> {
    if let Ok(ms) = s.parse::<u64>() {
        return Ok(ms);
    }
    let since_epoch = |t: std::time::SystemTime| {
        t.duration_since(std::time::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .map_err(|_| format!("{s:?} is before 1970"))
    };
    if let Ok(ago) = humantime::parse_duration(s) {
        let now = since_epoch(std::time::SystemTime::now())?;
        return Ok(now.saturating_sub(u64::try_from(ago.as_millis()).unwrap_or(u64::MAX)));
    }
    // A date and time to the second, to the minute, or a date alone.
    let parsed = [s.to_owned(), format!("{s}:00"), format!("{s} 00:00:00")]
        .iter()
        .find_map(|t| humantime::parse_rfc3339_weak(t).ok());
    match parsed {
        Some(t) => since_epoch(t),
        None => Err(format!(
            "{s:?} is neither a duration before now (2h, 1d), a UTC date and time \
             (2026-12-07T08:00:00Z) nor ms since the epoch"
        )),
    }
}

/// `icewatch admin`.
#[derive(Debug, Clone, Args)]
pub struct AdminArgs {
    /// The scheduler, as HOST or HOST:PORT (its text port is PORT + 1);
    /// without it, USE_SCHEDULER or discovery by broadcast
    #[arg(value_name = "HOST[:PORT]")]
    pub host: Option<String>,

    /// What to do.
    #[command(subcommand)]
    pub action: AdminAction,

    /// The text port's own address (HOST:PORT), instead of a scheduler's
    /// port + 1 (not with HOST[:PORT])
    #[arg(long, value_name = "ADDR", global = true)]
    pub text_port: Option<String>,

    /// The network name to look for when discovering the scheduler
    #[arg(
        short = 'n',
        long,
        value_name = "NETNAME",
        default_value = "ICECREAM",
        global = true
    )]
    pub netname: String,

    /// How long to wait for the text port to greet (an idle icecream 1.4
    /// scheduler accepts a new connection only every 36 s or so) and then
    /// for each answer (e.g. 90s, 2m)
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = duration, global = true)]
    pub timeout: Duration,
}

/// What `icewatch admin` does.
#[derive(Debug, Clone, Subcommand)]
pub enum AdminAction {
    /// The daemons the scheduler knows, with their jobs, slots and load
    List,
    /// The hosts the scheduler keeps out, one a line
    Blocks,
    /// Disconnect a host and keep it out until it is unblocked
    Block {
        /// Its node name or IP address
        name: String,
    },
    /// Let a blocked host log in again
    Unblock {
        /// The name or address it was blocked by
        name: String,
    },
    /// Disconnect a host (it may log in again)
    Remove {
        /// Its node name or IP address
        name: String,
    },
    /// The daemons' own account: environments, features, jobs, cpu, memory
    Internals {
        /// One host's node name or IP address [default: every daemon]
        name: Option<String>,
    },
}

/// `icewatch top`.
#[derive(Debug, Clone, Args)]
pub struct TopArgs {
    /// Where the scheduler is.
    #[command(flatten)]
    pub scheduler: SchedulerArgs,

    /// Read this running icewatch's WebSocket instead of the scheduler:
    /// HOST:PORT, the page's URL (http://HOST:PORT/) or ws://HOST:PORT/ws
    #[arg(long, value_name = "URL", conflicts_with_all = ["host", "port", "protocol", "netname"])]
    pub server: Option<String>,

    /// With --server: the token of that icewatch (sent as `Authorization:
    /// Bearer T`)
    #[arg(long, value_name = "T", env = "ICEWATCH_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// Draw a change at most this often (e.g. 250ms, 1s)
    #[arg(long, value_name = "DURATION", default_value = "250ms", value_parser = period)]
    pub period: Duration,
}

/// `icewatch status`.
#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    /// Where the scheduler is.
    #[command(flatten)]
    pub scheduler: SchedulerArgs,

    /// Print the snapshot JSON (docs/json.md) instead of the table
    #[arg(long)]
    pub json: bool,

    /// Give up when the scheduler has not answered within this (an idle
    /// icecream scheduler may take 40 s to take a new monitor)
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = period)]
    pub timeout: Duration,
}

/// `icewatch loadgen`.
#[derive(Debug, Clone, Args)]
pub struct LoadgenArgs {
    /// Where the scheduler is.
    #[command(flatten)]
    pub scheduler: SchedulerAddr,

    /// Simulated daemons (1 to 5000)
    #[arg(long, value_name = "N", default_value_t = 50,
          value_parser = clap::value_parser!(u16).range(1..=5000))]
    pub daemons: u16,

    /// Compile requests a minute, all daemons together (links and local
    /// retries come on top, about one in fifteen)
    #[arg(long, value_name = "R", default_value_t = 600.0, value_parser = per_minute)]
    pub jobs_per_minute: f64,

    /// How long the load runs once every daemon is logged in (e.g. 30s,
    /// 5m) [default: until Ctrl-C]
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,

    /// Daemons that drain, leave and come back, a minute (0: none)
    #[arg(long, value_name = "R", default_value_t = 6.0, value_parser = per_minute)]
    pub leaves_per_minute: f64,

    /// After the last job ended, stay logged in this long before logging
    /// out: a quiet moment to compare the scheduler with its monitors
    #[arg(long, value_name = "DURATION", default_value = "0s",
          value_parser = humantime::parse_duration)]
    pub linger: Duration,

    /// Seed of everything drawn: the same seed gives the same daemons and
    /// the same requests [default: random, printed on stderr]
    #[arg(long, value_name = "S")]
    pub seed: Option<u64>,

    /// Print the summary as one JSON object
    #[arg(long)]
    pub json: bool,
}

fn per_minute(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..=1_000_000.0).contains(&v) => Ok(v.abs()),
        _ => Err(format!("{s:?} is not a number from 0 to 1000000")),
    }
}

/// Where the scheduler is.
#[derive(Debug, Clone, Args)]
pub struct SchedulerAddr {
    /// The scheduler, as HOST or HOST:PORT; without it, USE_SCHEDULER or
    /// discovery by broadcast
    #[arg(value_name = "HOST[:PORT]")]
    pub host: Option<String>,

    /// The scheduler's port, if not given with the host [default: 8765]
    #[arg(value_name = "PORT")]
    pub port: Option<u16>,

    /// The network name to look for when discovering the scheduler
    #[arg(short = 'n', long, value_name = "NETNAME", default_value = "ICECREAM")]
    pub netname: String,
}

/// Where the scheduler is, and how to speak to it.
#[derive(Debug, Clone, Args)]
pub struct SchedulerArgs {
    /// Where the scheduler is.
    #[command(flatten)]
    pub addr: SchedulerAddr,

    /// The protocol version to offer the scheduler (21 to 44)
    #[arg(long, value_name = "N", default_value_t = 44,
          value_parser = clap::value_parser!(u32).range(21..=44))]
    pub protocol: u32,
}

/// How the page and APIs are served.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// The address to serve the page on; a non-loopback address without a
    /// token prints a warning
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,

    /// Require this token on every route but /healthz (as `Authorization:
    /// Bearer T` or `?token=T`; the printed URL carries it); it may not be
    /// empty
    #[arg(long, value_name = "T", env = "ICEWATCH_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// Without a token, also answer requests that name this host (a reverse
    /// proxy's name, this machine's DNS name); repeatable. Loopback names
    /// and addresses and the --listen address are always allowed
    #[arg(long = "allowed-host", value_name = "NAME", value_parser = allowed_host)]
    pub allowed_hosts: Vec<String>,

    /// Gather changes for this long before sending a diff to browsers
    #[arg(long, value_name = "MS", default_value_t = 100)]
    pub coalesce_ms: u64,

    /// Finished jobs to remember (1 to 16,777,216)
    #[arg(long, value_name = "N", default_value_t = 10_000, value_parser = history_len)]
    pub history: usize,

    /// A job waiting, compiling or running locally for longer than this
    /// ends as stale, its end lost (e.g. 90m, 2h; "never" to keep them)
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = stale_after)]
    pub stale_after: std::option::Option<Duration>,

    /// A pause this long without a job of a submitter (none submitted,
    /// running or beginning) ends its build, in the page's builds list and
    /// /api/v1/builds (docs/insights.md)
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = duration)]
    pub build_gap: Duration,
}

/// Where the history is kept, and for how long.
#[derive(Debug, Clone, Args)]
pub struct HistoryArgs {
    /// Keep the history (finished jobs, host and scheduler sessions, load)
    /// in this SQLite file, in a PostgreSQL database that several icewatch
    /// may share (postgres://USER:PASSWORD@HOST:PORT/DATABASE; without a
    /// host, the local socket; TLS is not supported), or "none" to keep
    /// none [monitor's default: $XDG_STATE_HOME/icewatch/history.sqlite,
    /// else ~/.local/state/icewatch/history.sqlite; demo and replay keep
    /// none unless given]
    #[arg(long, value_name = "PATH|URL|none", value_parser = db)]
    pub db: Option<Db>,

    /// Delete what ended longer ago than this (e.g. 30d, 1y)
    #[arg(long, value_name = "DURATION", default_value = "90d", value_parser = duration)]
    pub retain: Duration,
}

/// Where `--db` says the history goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Db {
    /// No history.
    None,
    /// This SQLite file.
    File(PathBuf),
    /// This PostgreSQL database's URL, checked when it is opened (so
    /// that an error never repeats the password, as clap would).
    Postgres(String),
}

fn db(s: &str) -> Result<Db, String> {
    match s {
        "" => Err("give a file, a postgres:// URL, or \"none\" for no history".to_string()),
        "none" => Ok(Db::None),
        _ if Server::is_url(s) => Ok(Db::Postgres(s.to_owned())),
        _ => match Location::parse(s)? {
            Location::File(path) => Ok(Db::File(path)),
            Location::Postgres(_) => Ok(Db::Postgres(s.to_owned())),
        },
    }
}

/// A duration of at least a second (`--retain`, `--gap`, `--timeout`).
fn duration(s: &str) -> Result<Duration, String> {
    match humantime::parse_duration(s) {
        Ok(d) if d >= Duration::from_secs(1) => Ok(d),
        Ok(_) => Err(format!("{s:?} is shorter than a second")),
        Err(e) => Err(format!(
            "{s:?} is not a duration such as 60s, 2m, 30d or 1y ({e})"
        )),
    }
}

/// `icewatch monitor`.
#[derive(Debug, Clone, Args)]
pub struct MonitorArgs {
    /// Where the scheduler is.
    #[command(flatten)]
    pub scheduler: SchedulerArgs,

    /// How to serve.
    #[command(flatten)]
    pub serve: ServeArgs,

    /// The history.
    #[command(flatten)]
    pub history: HistoryArgs,

    /// Let the page block, unblock and remove hosts through the scheduler's
    /// text port (POST /api/v1/hosts/NAME/block, ...); needs --token
    #[arg(long)]
    pub admin: bool,

    /// The scheduler's text port (HOST:PORT) for its block list, the hosts'
    /// internals and --admin [default: the scheduler's port + 1]
    #[arg(long, value_name = "ADDR", conflicts_with = "no_text_port")]
    pub text_port: Option<SocketAddr>,

    /// Do not read the scheduler's text port at all
    #[arg(long, conflicts_with = "admin")]
    pub no_text_port: bool,

    /// Keep the scheduler's block list in the history database and block
    /// those hosts again whenever the scheduler restarts (it forgets its
    /// blocks); an unblock, from anywhere, ends a kept block. Needs the
    /// history (not --db none) and the text port
    #[arg(long)]
    pub keep_blocks: bool,
}

/// Which type code job ends go out under, as a scheduler would send them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum JobDoneArg {
    /// 0x55 (MON_JOB_DONE) up to protocol 43, 0x4D (JOB_DONE) at 44
    Auto,
    /// Always 0x55 (MON_JOB_DONE), like icecream 1.4 and older
    Mon,
    /// Always 0x4D (JOB_DONE), like icecream git master
    Job,
}

impl From<JobDoneArg> for JobDoneType {
    fn from(arg: JobDoneArg) -> JobDoneType {
        match arg {
            JobDoneArg::Auto => JobDoneType::Auto,
            JobDoneArg::Mon => JobDoneType::Mon,
            JobDoneArg::Job => JobDoneType::Job,
        }
    }
}

/// Options of `--as-scheduler`.
#[derive(Debug, Clone, Args)]
pub struct AsSchedulerArgs {
    /// Serve monitors as a fake icecream scheduler instead of serving the page
    #[arg(long)]
    pub as_scheduler: bool,

    /// With --as-scheduler: the port to listen on (0: any free port; the
    /// address is printed on stdout)
    #[arg(
        long,
        value_name = "P",
        default_value_t = 8765,
        requires = "as_scheduler"
    )]
    pub port: u16,

    /// With --as-scheduler: the address to listen on
    #[arg(long, value_name = "IP", default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST),
          requires = "as_scheduler")]
    pub bind: IpAddr,
}

/// `icewatch demo`.
#[derive(Debug, Clone, Args)]
#[command(group = page_group())]
pub struct DemoArgs {
    /// Hosts in the simulated cluster
    #[arg(long, value_name = "N", default_value_t = 12,
          value_parser = clap::value_parser!(u16).range(2..=5000))]
    pub hosts: u16,

    /// Seed of the simulation: the same seed gives the same cluster and jobs
    /// [default: random, printed on stderr]
    #[arg(long, value_name = "S")]
    pub seed: Option<u64>,

    /// Messages per second on average, from 0.01 to 1000000 (0: as fast as
    /// monitors read) [default: the pace of a busy real cluster]
    #[arg(long, value_name = "R", value_parser = rate)]
    pub rate: Option<f64>,

    /// The protocol version the simulated scheduler offers (21 to 44)
    #[arg(long, value_name = "N", default_value_t = 44,
          value_parser = clap::value_parser!(u32).range(21..=44))]
    pub protocol: u32,

    /// The type code of job ends
    #[arg(long, value_name = "TYPE", value_enum, default_value_t = JobDoneArg::Auto)]
    pub job_done: JobDoneArg,

    /// Fake-scheduler mode.
    #[command(flatten)]
    pub scheduler: AsSchedulerArgs,

    /// How to serve the page.
    #[command(flatten)]
    pub serve: ServeArgs,

    /// The history.
    #[command(flatten)]
    pub history: HistoryArgs,
}

/// `icewatch dump`.
#[derive(Debug, Clone, Args)]
pub struct DumpArgs {
    /// Where the scheduler is.
    #[command(flatten)]
    pub scheduler: SchedulerArgs,

    /// Read this recording or raw capture instead of a scheduler
    #[arg(long, value_name = "FILE", conflicts_with_all = ["host", "port"])]
    pub capture: Option<PathBuf>,

    /// Add each whole frame (length, type, body) in hex as "raw"
    #[arg(long)]
    pub raw: bool,

    /// Stop after this many messages
    #[arg(short = 'c', long, value_name = "N")]
    pub count: Option<u64>,

    /// Stop when the scheduler goes away instead of waiting for it again
    #[arg(long, conflicts_with = "capture")]
    pub once: bool,
}

/// `icewatch record`.
#[derive(Debug, Clone, Args)]
pub struct RecordArgs {
    /// Where the scheduler is.
    #[command(flatten)]
    pub scheduler: SchedulerArgs,

    /// The file to write (replaced if it exists)
    #[arg(short = 'o', long, value_name = "FILE")]
    pub output: PathBuf,

    /// Stop after this many messages
    #[arg(short = 'c', long, value_name = "N")]
    pub count: Option<u64>,

    /// Stop when the scheduler goes away instead of waiting for it again
    #[arg(long)]
    pub once: bool,
}

/// `icewatch replay`.
#[derive(Debug, Clone, Args)]
#[command(group = page_group())]
pub struct ReplayArgs {
    /// The recording (or raw capture) to play
    #[arg(value_name = "FILE")]
    pub file: PathBuf,

    /// Playback speed, from 0.001 to 1000000: 1 as recorded, 10 ten times
    /// faster; 0 as fast as possible (raw captures have no times and always
    /// play at once). A quiet spell plays as a minute at most
    #[arg(long, value_name = "X", default_value_t = 1.0, value_parser = speed)]
    pub speed: f64,

    /// With --as-scheduler: the protocol version to offer (21 to 44)
    /// [default: the recording's]
    #[arg(long, value_name = "N", requires = "as_scheduler",
          value_parser = clap::value_parser!(u32).range(21..=44))]
    pub protocol: Option<u32>,

    /// With --as-scheduler: rewrite job ends to this type code [default: as
    /// recorded]
    #[arg(long, value_name = "TYPE", value_enum, requires = "as_scheduler")]
    pub job_done: Option<JobDoneArg>,

    /// Fake-scheduler mode.
    #[command(flatten)]
    pub scheduler: AsSchedulerArgs,

    /// How to serve the page.
    #[command(flatten)]
    pub serve: ServeArgs,

    /// The history.
    #[command(flatten)]
    pub history: HistoryArgs,
}

/// Options about the page make no sense for a fake scheduler.
fn page_group() -> ArgGroup {
    ArgGroup::new("page")
        .multiple(true)
        .args([
            "listen",
            "coalesce_ms",
            "history",
            "allowed_hosts",
            "db",
            "retain",
        ])
        .conflicts_with("as_scheduler")
}

/// A history length the state keeps as asked: 1 to [`MAX_HISTORY`].
fn history_len(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if (1..=MAX_HISTORY).contains(&n) => Ok(n),
        _ => Err(format!("{s:?} is not a number from 1 to {MAX_HISTORY}")),
    }
}

fn stale_after(s: &str) -> Result<Option<Duration>, String> {
    if s == "never" {
        return Ok(None);
    }
    match humantime::parse_duration(s) {
        Ok(d) if d >= Duration::from_secs(1) => Ok(Some(d)),
        Ok(_) => Err(format!("{s:?} is shorter than a second")),
        Err(e) => Err(format!("{s:?} is not a duration such as 30m or 2h ({e})")),
    }
}

/// A host name or an IP address for `--allowed-host`.
fn allowed_host(s: &str) -> Result<String, String> {
    icewatch::publisher::host::check_allowed_host(s)
}

/// The slowest and fastest `--speed` of a replay.
pub const SPEED_RANGE: RangeInclusive<f64> = 0.001..=1e6;
/// The slowest and fastest `--rate` of the demo, in messages per second.
pub const RATE_RANGE: RangeInclusive<f64> = 0.01..=1e6;

/// 0, or a number in `range`: what `--speed` and `--rate` take.
fn zero_or_in(s: &str, range: &RangeInclusive<f64>) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v == 0.0 || range.contains(&v) => Ok(v.abs()),
        _ => Err(format!(
            "{s:?} is neither 0 nor a number from {} to {}",
            range.start(),
            range.end()
        )),
    }
}

/// A duration from 10 ms to an hour: `--period`, `--timeout`.
fn period(s: &str) -> Result<Duration, String> {
    match humantime::parse_duration(s) {
        Ok(d) if (Duration::from_millis(10)..=Duration::from_secs(3600)).contains(&d) => Ok(d),
        Ok(_) => Err(format!("{s:?} is not from 10ms to 1h")),
        Err(e) => Err(format!("{s:?} is not a duration such as 250ms or 2s ({e})")),
    }
}

fn speed(s: &str) -> Result<f64, String> {
    zero_or_in(s, &SPEED_RANGE)
}

fn rate(s: &str) -> Result<f64, String> {
    zero_or_in(s, &RATE_RANGE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn verify_cli() {
        Cli::command().debug_assert();
    }

    #[test]
    fn host_and_port_may_come_together_or_apart() {
        let cli = Cli::try_parse_from(["icewatch", "monitor", "sched.lan", "9000"]).unwrap();
        let Command::Monitor(m) = cli.command else {
            panic!()
        };
        assert_eq!(m.scheduler.addr.host.as_deref(), Some("sched.lan"));
        assert_eq!(m.scheduler.addr.port, Some(9000));
        assert_eq!(m.serve.listen.to_string(), DEFAULT_LISTEN);
    }

    #[test]
    fn scheduler_options_need_as_scheduler() {
        assert!(Cli::try_parse_from(["icewatch", "demo", "--port", "0"]).is_err());
        assert!(Cli::try_parse_from(["icewatch", "demo", "--as-scheduler", "--port", "0"]).is_ok());
        assert!(Cli::try_parse_from([
            "icewatch",
            "demo",
            "--as-scheduler",
            "--listen",
            "127.0.0.1:1"
        ])
        .is_err());
        assert!(Cli::try_parse_from(["icewatch", "dump", "h", "--capture", "f"]).is_err());
        assert!(Cli::try_parse_from(["icewatch", "replay", "f", "--speed", "-1"]).is_err());
        assert!(Cli::try_parse_from(["icewatch", "monitor", "--protocol", "20"]).is_err());
    }

    #[test]
    fn admin_takes_an_optional_scheduler_before_its_action() {
        let admin = |args: &[&str]| {
            let cli = Cli::try_parse_from([&["icewatch", "admin"], args].concat()).unwrap();
            let Command::Admin(a) = cli.command else {
                panic!()
            };
            a
        };
        let a = admin(&["sched.lan:9000", "block", "remote1"]);
        assert_eq!(a.host.as_deref(), Some("sched.lan:9000"));
        assert!(matches!(a.action, AdminAction::Block { ref name } if name == "remote1"));
        let a = admin(&["blocks"]);
        assert_eq!(a.host, None);
        assert!(matches!(a.action, AdminAction::Blocks));
        let a = admin(&["internals", "--text-port", "127.0.0.1:8766"]);
        assert!(matches!(a.action, AdminAction::Internals { name: None }));
        assert_eq!(a.text_port.as_deref(), Some("127.0.0.1:8766"));
        assert!(Cli::try_parse_from(["icewatch", "admin", "block"]).is_err());
        assert!(Cli::try_parse_from(["icewatch", "monitor", "--admin", "--no-text-port"]).is_err());
    }

    #[test]
    fn top_reads_a_scheduler_or_an_icewatch_not_both() {
        let cli = Cli::try_parse_from(["icewatch", "top", "sched.lan", "--period", "1s"]).unwrap();
        let Command::Top(t) = cli.command else {
            panic!()
        };
        assert_eq!(
            (t.scheduler.addr.host.as_deref(), t.period),
            (Some("sched.lan"), Duration::from_secs(1))
        );
        assert!(Cli::try_parse_from(["icewatch", "top", "--server", "h:8080"]).is_ok());
        assert!(
            Cli::try_parse_from(["icewatch", "top", "sched.lan", "--server", "h:8080"]).is_err()
        );
        assert!(Cli::try_parse_from(["icewatch", "top", "--period", "1ms"]).is_err());
        let cli = Cli::try_parse_from(["icewatch", "status", "--json", "--timeout", "5s"]).unwrap();
        let Command::Status(s) = cli.command else {
            panic!()
        };
        assert!(s.json && s.timeout == Duration::from_secs(5));
    }

    #[test]
    fn allowed_hosts_repeat_and_must_be_names_or_addresses() {
        let cli = Cli::try_parse_from([
            "icewatch",
            "demo",
            "--allowed-host",
            "icewatch.example.org",
            "--allowed-host",
            "192.0.2.7",
        ])
        .unwrap();
        let Command::Demo(d) = cli.command else {
            panic!()
        };
        assert_eq!(d.serve.allowed_hosts, ["icewatch.example.org", "192.0.2.7"]);
        for bad in ["http://a.example", "a.example:8080", ""] {
            assert!(
                Cli::try_parse_from(["icewatch", "demo", "--allowed-host", bad]).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn speeds_and_rates_out_of_range_are_refused_naming_the_flag() {
        let speed =
            |x: &str| Cli::try_parse_from(["icewatch", "replay", "f", &format!("--speed={x}")]);
        let rate = |x: &str| Cli::try_parse_from(["icewatch", "demo", &format!("--rate={x}")]);
        for ok in ["0", "-0", "0.001", "1", "2.5", "1e6"] {
            let Command::Replay(r) = speed(ok).unwrap().command else {
                panic!()
            };
            assert!(r.speed == 0.0 || SPEED_RANGE.contains(&r.speed), "{ok}");
        }
        for ok in ["0", "0.01", "500", "1000000"] {
            assert!(rate(ok).is_ok(), "{ok}");
        }
        for bad in [
            "1e-300", "0.0009", "1e7", "-1", "nan", "inf", "-inf", "fast", "",
        ] {
            let err = speed(bad).unwrap_err().to_string();
            let first = err.lines().next().unwrap();
            assert!(
                first.contains("--speed")
                    && first.contains("neither 0 nor a number from 0.001 to 1000000"),
                "{err}"
            );
        }
        for bad in ["1e-300", "0.001", "2e6", "-5", "NaN"] {
            let err = rate(bad).unwrap_err().to_string();
            let first = err.lines().next().unwrap();
            assert!(
                first.contains("--rate")
                    && first.contains("neither 0 nor a number from 0.01 to 1000000"),
                "{err}"
            );
        }
    }

    #[test]
    fn loadgen_takes_a_scheduler_and_refuses_what_it_cannot_run() {
        let parse = |args: &[&str]| {
            Cli::try_parse_from(["icewatch", "loadgen"].iter().chain(args).copied())
        };
        let Command::Loadgen(l) = parse(&["sched.lan", "9000", "--duration", "30s"])
            .unwrap()
            .command
        else {
            panic!()
        };
        assert_eq!(
            (
                l.scheduler.host.as_deref(),
                l.scheduler.port,
                l.daemons,
                l.duration
            ),
            (
                Some("sched.lan"),
                Some(9000),
                50,
                Some(Duration::from_secs(30))
            )
        );
        for (args, flag) in [
            (&["--daemons", "0"][..], "--daemons"),
            (&["--daemons", "5001"], "--daemons"),
            (&["--jobs-per-minute=-1"], "--jobs-per-minute"),
            (&["--leaves-per-minute", "NaN"], "--leaves-per-minute"),
            (&["--duration", "soon"], "--duration"),
        ] {
            let err = parse(args).unwrap_err().to_string();
            assert!(err.lines().next().unwrap().contains(flag), "{err}");
        }
    }

    #[test]
    fn the_history_database_is_a_file_or_none_and_kept_for_a_duration() {
        let monitor = |extra: &[&str]| {
            let cli = Cli::try_parse_from([&["icewatch", "monitor"], extra].concat());
            cli.map(|c| match c.command {
                Command::Monitor(m) => m.history,
                _ => unreachable!(),
            })
        };
        let default = monitor(&[]).unwrap();
        assert_eq!(
            (default.db, default.retain),
            (None, Duration::from_secs(90 * 86_400))
        );
        assert_eq!(monitor(&["--db", "none"]).unwrap().db, Some(Db::None));
        let file = monitor(&["--db", "h.sqlite", "--retain", "30d"]).unwrap();
        assert_eq!(file.db, Some(Db::File("h.sqlite".into())));
        assert_eq!(file.retain, Duration::from_secs(30 * 86_400));
        for refused in [
            &["--db", ""][..],
            &["--retain", "soon"],
            &["--retain", "10ms"],
        ] {
            assert!(monitor(refused).is_err(), "{refused:?}");
        }
        let since = |w: &str| Cli::try_parse_from(["icewatch", "history", "jobs", "--since", w]);
        for ok in [
            "2h",
            "1d",
            "2026-12-07T08:00:00Z",
            "2026-12-07 08:00",
            "1700000000000",
        ] {
            assert!(since(ok).is_ok(), "{ok}");
        }
        let err = since("yesterday").unwrap_err().to_string();
        assert!(err.contains("neither a duration before now"), "{err}");
    }

    #[test]
    fn a_history_the_state_would_not_keep_is_refused() {
        let history = |n: &str| Cli::try_parse_from(["icewatch", "demo", "--history", n]);
        assert!(history("1").is_ok() && history(&MAX_HISTORY.to_string()).is_ok());
        for refused in ["0", &(MAX_HISTORY + 1).to_string(), "lots"] {
            let err = history(refused).unwrap_err().to_string();
            assert!(err.contains("is not a number from 1 to 16777216"), "{err}");
        }
    }
}
