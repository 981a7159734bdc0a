//! What each subcommand does. This is the edge of the program: library
//! errors get their context here and reach the user as one line.

mod demo;
mod dump;
mod replay;

use crate::cli::{Cli, Command};
use crate::shutdown::Shutdown;
use anyhow::{Context, Result};
use std::net::SocketAddr;
use tokio::net::TcpListener;

/// Carries out `cli` until it is done or `shutdown` fires.
pub async fn run(cli: Cli, shutdown: Shutdown) -> Result<()> {
    match cli.command {
        Command::Monitor(_) => anyhow::bail!("monitor: not wired yet"),
        Command::Demo(args) => demo::run(args, shutdown).await,
        Command::Dump(args) => dump::run(args, shutdown).await,
        Command::Record(_) => anyhow::bail!("record: not wired yet"),
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
