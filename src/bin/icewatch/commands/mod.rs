//! What each subcommand does. This is the edge of the program: library
//! errors get their context here and reach the user as one line.

mod admin;
mod demo;
mod dump;
mod history;
mod loadgen;
mod monitor;
mod page;
mod record;
mod replay;
mod sessions;
mod status;
mod top;

use crate::cli::{Cli, Command, SchedulerAddr, SchedulerArgs};
use anyhow::{Context, Result};
use icewatch::monitor::{
    ConnectError, ConnectOptions, Connection, LocateError, Target, DEFAULT_PORT,
};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// How long a start waits in silence before it says what it waits for.
const WAIT_NOTICE: Duration = Duration::from_secs(1);

/// Carries out `cli` until it is done or `shutdown` fires.
pub async fn run(cli: Cli, shutdown: CancellationToken) -> Result<()> {
    match cli.command {
        Command::Monitor(args) => monitor::run(args, shutdown).await,
        Command::Demo(args) => demo::run(args, shutdown).await,
        Command::Dump(args) => dump::run(args, shutdown).await,
        Command::Record(args) => record::run(args, shutdown).await,
        Command::Replay(args) => replay::run(args, shutdown).await,
        // Blocking reads (PostgreSQL's client drives a runtime of its own).
        Command::History(cmd) => tokio::task::block_in_place(|| history::run(cmd)),
        Command::Top(args) => top::run(args, shutdown).await,
        Command::Status(args) => status::run(args, shutdown).await,
        Command::Admin(args) => admin::run(args, shutdown).await,
        Command::Loadgen(args) => loadgen::run(args, shutdown).await,
    }
}

/// Binds the fake scheduler's port and prints its address on stdout (the
/// first line, for scripts and tests that ask for port 0).
async fn bind_scheduler(addr: SocketAddr) -> Result<TcpListener> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} for monitors"))?;
    let local = listener.local_addr()?;
    println!("icecream scheduler listening on {local}");
    eprintln!(
        "point a monitor at it: `icewatch monitor {local}`, or `USE_SCHEDULER={local} icemon`"
    );
    Ok(listener)
}

/// Where the scheduler is, from the command line and the environment.
fn target(addr: &SchedulerAddr) -> Result<Target> {
    Ok(Target::resolve(
        addr.host.as_deref(),
        addr.port,
        &addr.netname,
    )?)
}

/// How to reach the scheduler, from the command line and the environment.
fn connect_options(args: &SchedulerArgs) -> Result<ConnectOptions> {
    let mut opts = ConnectOptions::new(target(&args.addr)?);
    opts.protocol = args.protocol;
    Ok(opts)
}

/// Connects to the scheduler once, as a monitor, however long it takes
/// to answer, and says what it waits for while it waits. What cannot
/// change by waiting (refused, unknown name, unreachable) fails at once,
/// with a hint.
async fn connect_once(opts: &ConnectOptions, shutdown: &CancellationToken) -> Result<Connection> {
    connect_saying(opts, shutdown, true).await
}

/// [`connect_once`]; `chatty`: also says where it connects and when it
/// did (a command for scripts says only what it waits for, and errors).
async fn connect_saying(
    opts: &ConnectOptions,
    shutdown: &CancellationToken,
    chatty: bool,
) -> Result<Connection> {
    let target = &opts.target;
    if chatty {
        eprintln!("connecting to {target}");
    }
    let connect = Connection::connect(opts);
    tokio::pin!(connect);
    let notice = tokio::time::sleep(WAIT_NOTICE);
    tokio::pin!(notice);
    let mut told = false;
    let conn = loop {
        tokio::select! {
            conn = &mut connect => break conn,
            () = &mut notice, if !told => {
                told = true;
                eprintln!(
                    "waiting for the scheduler at {target} to answer… (an idle icecream \
                     scheduler takes new connections only every 36 s or so; Ctrl-C to give up)"
                );
            }
            () = shutdown.cancelled() => anyhow::bail!("interrupted while waiting for the scheduler at {target}"),
        }
    };
    match conn {
        Ok(conn) => {
            if !chatty {
                return Ok(conn);
            }
            eprintln!(
                "connected to {} (protocol {}), logged in as a monitor",
                conn.peer(),
                conn.version()
            );
            Ok(conn)
        }
        Err(e) => match hint(&e, target) {
            Some(hint) => Err(anyhow::anyhow!("{e}; {hint}")),
            None => Err(e.into()),
        },
    }
}

/// What to check when the scheduler cannot be reached.
fn hint(e: &ConnectError, target: &Target) -> Option<String> {
    let port = match target {
        Target::Address { port, .. } | Target::Discover { port, .. } => *port,
    };
    let port_hint = if port == DEFAULT_PORT {
        String::new()
    } else {
        format!(" (icecream's default port is {DEFAULT_PORT}, not {port})")
    };
    match e {
        ConnectError::Connect { .. } | ConnectError::Timeout { .. } => Some(format!(
            "is the icecream scheduler running there, and listening on port {port}?{port_hint} \
             Without an address icewatch uses USE_SCHEDULER=host[:port], else asks by broadcast"
        )),
        ConnectError::Locate(LocateError::Resolve { .. } | LocateError::NoAddress(_)) => {
            Some("check the host name, or give the scheduler's IP address".to_string())
        }
        ConnectError::Handshake { .. } => Some(format!(
            "is that an icecream scheduler? Its monitor port is usually {DEFAULT_PORT} \
             ({} is its text port){port_hint}",
            DEFAULT_PORT + 1
        )),
        _ => None,
    }
}
