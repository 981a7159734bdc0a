//! What each subcommand does. This is the edge of the program: library
//! errors get their context here and reach the user as one line.

mod demo;
mod dump;
mod monitor;
mod page;
mod record;
mod replay;

use crate::cli::{Cli, Command, SchedulerArgs};
use crate::monitor::{ConnectError, Connection, Target, DEFAULT_PORT};
use crate::shutdown::Shutdown;
use anyhow::{Context, Result};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpListener;

/// Bound on each step of reaching a scheduler: lookup, connect, handshake.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Carries out `cli` until it is done or `shutdown` fires.
pub async fn run(cli: Cli, shutdown: Shutdown) -> Result<()> {
    match cli.command {
        Command::Monitor(args) => monitor::run(args, shutdown).await,
        Command::Demo(args) => demo::run(args, shutdown).await,
        Command::Dump(args) => dump::run(args, shutdown).await,
        Command::Record(args) => record::run(args, shutdown).await,
        Command::Replay(args) => replay::run(args, shutdown).await,
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
fn target(args: &SchedulerArgs) -> Result<Target> {
    Ok(Target::resolve(
        args.host.as_deref(),
        args.port,
        &args.netname,
    )?)
}

/// Connects to the scheduler once, as a monitor; a failure comes with a hint.
async fn connect_once(args: &SchedulerArgs, shutdown: &mut Shutdown) -> Result<Connection> {
    let target = target(args)?;
    eprintln!("connecting to {target}");
    let conn = tokio::select! {
        conn = Connection::connect(&target, args.protocol, CONNECT_TIMEOUT) => conn,
        _ = shutdown.wait() => anyhow::bail!("interrupted while connecting to {target}"),
    };
    match conn {
        Ok(conn) => {
            eprintln!(
                "connected to the scheduler at {}, protocol {}",
                conn.peer(),
                conn.version()
            );
            Ok(conn)
        }
        Err(e) => match hint(&e, &target) {
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
        ConnectError::Resolve { .. } | ConnectError::NoAddress(_) => {
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
