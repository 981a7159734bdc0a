//! The `icewatch` command: [`cli`] says what each subcommand takes (clap),
//! [`commands`] what it does with the library; an error is printed as one
//! line on stderr and the exit code is 1.

mod cli;
mod commands;
mod memory;

use clap::Parser;
use cli::Cli;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

fn main() -> ExitCode {
    memory::configure();
    let cli = Cli::parse();
    // Full screen, a log line would tear the picture: the status line
    // says what the log would (RUST_LOG still asks for it).
    let quiet = matches!(cli.command, cli::Command::Top(_));
    let default_filter = if quiet { "off" } else { "icewatch=info" };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter)),
        )
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let shutdown = on_ctrl_c();
        commands::run(cli, shutdown).await
    });
    // A blocking reader (a file, stdin) must not hold the exit back.
    runtime.shutdown_timeout(Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A token cancelled by the first Ctrl-C (SIGINT) or SIGTERM: every task
/// of the command stops on it. The handlers are in place when it returns,
/// so that a signal sent as soon as the command has said its first line
/// stops it cleanly instead of killing it.
fn on_ctrl_c() -> CancellationToken {
    let token = CancellationToken::new();
    let trigger = token.clone();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let handlers = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        );
        tokio::spawn(async move {
            match handlers {
                (Ok(mut int), Ok(mut term)) => {
                    tokio::select! {
                        _ = int.recv() => {}
                        _ = term.recv() => {}
                    }
                }
                _ => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
            trigger.cancel();
        });
    }
    #[cfg(not(unix))]
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        trigger.cancel();
    });
    token
}
