//! `icewatch admin`: the scheduler's text port, from the command line.

use crate::cli::{AdminAction, AdminArgs};
use anyhow::{Context, Result};
use icewatch::monitor::target::DEFAULT_DISCOVERY_WAIT;
use icewatch::monitor::text_port::{TextPort, TextPortError};
use icewatch::monitor::{ConnectOptions, Target};
use icewatch::protocol::text::{self, Command};
use std::net::SocketAddr;
use tokio_util::sync::CancellationToken;

pub async fn run(args: AdminArgs, shutdown: CancellationToken) -> Result<()> {
    if let AdminAction::Block { name }
    | AdminAction::Unblock { name }
    | AdminAction::Remove { name }
    | AdminAction::Internals { name: Some(name) } = &args.action
    {
        check(name)?;
    }
    let addr = text_port_address(&args).await?;
    let limit = args.timeout;
    let work = async {
        let connect = TextPort::connect(addr, limit);
        tokio::pin!(connect);
        let mut port = tokio::select! {
            port = &mut connect => port,
            () = tokio::time::sleep(super::WAIT_NOTICE) => {
                eprintln!(
                    "waiting for the text port at {addr} to answer… (an idle icecream scheduler \
                     takes new connections only every 36 s or so; Ctrl-C to give up)"
                );
                connect.await
            }
        }
        .map_err(|e| explain(e, &args))?;
        carry_out(&mut port, &args.action, limit).await
    };
    tokio::select! {
        result = work => result,
        () = shutdown.cancelled() => anyhow::bail!("interrupted while talking to the text port at {addr}"),
    }
}

/// Where the text port is: `--text-port`, or the scheduler's port + 1.
async fn text_port_address(args: &AdminArgs) -> Result<SocketAddr> {
    if let (Some(given), Some(host)) = (&args.text_port, &args.host) {
        anyhow::bail!("give the scheduler ({host}) or --text-port {given}, not both");
    }
    if let Some(given) = &args.text_port {
        return tokio::net::lookup_host(given.as_str())
            .await
            .ok()
            .and_then(|mut a| a.next())
            .with_context(|| {
                format!("--text-port {given}: not an address HOST:PORT that resolves")
            });
    }
    let target = Target::resolve(args.host.as_deref(), None, &args.netname)?;
    let protocol = ConnectOptions::new(target.clone()).protocol;
    let scheduler = target
        .locate(protocol, DEFAULT_DISCOVERY_WAIT)
        .await?
        .into_iter()
        .next()
        .with_context(|| format!("{target} resolves to no address"))?;
    let port = scheduler.port().checked_add(1).with_context(|| {
        format!(
            "the scheduler's port is {}: its text port would be past 65535",
            scheduler.port()
        )
    })?;
    Ok(SocketAddr::new(scheduler.ip(), port))
}

/// A hint where one helps.
fn explain(e: TextPortError, args: &AdminArgs) -> anyhow::Error {
    let hint = match &e {
        TextPortError::Connect { .. } => {
            "is the icecream scheduler running there? Give the scheduler's address \
             (HOST or HOST:PORT, its port; icewatch adds 1), or the text port's with --text-port"
        }
        TextPortError::NotTextPort { .. } if args.text_port.is_none() => {
            "give the scheduler's own port (icewatch adds 1), or the text port with --text-port"
        }
        _ => "",
    };
    if hint.is_empty() {
        e.into()
    } else {
        anyhow::anyhow!("{e}; {hint}")
    }
}

async fn carry_out(
    port: &mut TextPort,
    action: &AdminAction,
    limit: std::time::Duration,
) -> Result<()> {
    match action {
        AdminAction::List => {
            let daemons = port.list_cs(limit).await?;
            if daemons.is_empty() {
                eprintln!("no daemon is logged in to the scheduler at {}", port.addr());
            }
            let width = daemons
                .iter()
                .map(|d| d.name.len())
                .max()
                .unwrap_or(0)
                .max(4);
            if !daemons.is_empty() {
                println!(
                    "{:width$}  {:21}  {:10}  {:>5}  {:>8}  {:>4}",
                    "NAME", "ADDRESS", "PLATFORM", "JOBS", "SPEED", "LOAD"
                );
            }
            for d in daemons {
                let jobs = format!("{}/{}", d.jobs, d.max_jobs);
                let installing = d.installing_s.map_or_else(String::new, |s| {
                    format!("  installing an environment for {s} s")
                });
                println!(
                    "{:width$}  {:21}  {:10}  {jobs:>5}  {:>8.2}  {:>3}%{installing}",
                    d.name,
                    d.address,
                    d.platform,
                    d.speed,
                    d.load / 10
                );
            }
        }
        AdminAction::Blocks => {
            let blocked = port.list_blocks(limit).await?;
            if blocked.is_empty() {
                eprintln!("the scheduler at {} keeps no host out", port.addr());
            }
            for name in blocked {
                println!("{name}");
            }
        }
        AdminAction::Block { name } => println!("{}", port.block(name, limit).await?.said),
        AdminAction::Unblock { name } => {
            let outcome = port.unblock(name, limit).await?;
            if !outcome.changed {
                anyhow::bail!("{}", outcome.said);
            }
            println!("{}", outcome.said);
        }
        AdminAction::Remove { name } => match port.remove(name, limit).await {
            Ok(outcome) => println!("{}", outcome.said),
            Err(e @ TextPortError::NoSuchHost(_)) => {
                anyhow::bail!("{e} (`icewatch admin list` shows them)")
            }
            Err(e) => return Err(e.into()),
        },
        AdminAction::Internals { name } => {
            let hosts: Vec<String> = name.iter().cloned().collect();
            let lines = port.ask(&Command::Internals(hosts), limit).await?;
            let daemons = text::parse_internals(lines.iter().map(String::as_str));
            match name {
                Some(name) if daemons.is_empty() => anyhow::bail!(
                    "no daemon named {name} is connected to the scheduler (`icewatch admin list` shows them)"
                ),
                None if daemons.is_empty() => {
                    eprintln!("no daemon is logged in to the scheduler at {}", port.addr());
                }
                _ => {}
            }
            for line in lines {
                println!("{line}");
            }
        }
    }
    Ok(())
}

/// Refuses a name that would not reach the scheduler as one host.
fn check(name: &str) -> Result<()> {
    if !text::valid_host_name(name) {
        anyhow::bail!("{name:?} is not a host name or address: no blanks or control characters");
    }
    Ok(())
}
