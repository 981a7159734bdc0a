//! Serving the page: the monitor's connection (or a replay) feeding the
//! state, and the publisher serving it. Shared by `monitor`, `demo` and
//! `replay`.

use crate::cli::ServeArgs;
use anyhow::{Context, Result};
use icewatch::history::{History, HistoryOptions, Store};
use icewatch::monitor::{
    self, Changed, ConnectOptions, Connection, SharedState, State, StateOptions, Target,
};
use icewatch::publisher::{self, ControlOptions, ServeOptions};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Checks the page options, raises the limit on open files (connections
/// are capped below it) and binds the page's address; warns when it is
/// reachable from other machines without a token.
pub async fn bind(args: &ServeArgs) -> Result<TcpListener> {
    if let Some(token) = &args.token {
        check_token(token)?;
    }
    publisher::raise_fd_limit();
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {} for the page", args.listen))?;
    let local = listener.local_addr()?;
    if let Some(warning) = exposure_warning(local, args.token.as_deref()) {
        eprintln!("{warning}");
    }
    Ok(listener)
}

/// Refuses a token that protects nothing: empty or only whitespace (what
/// `--token "$TOKEN"` gives with TOKEN unset), or one that cannot travel
/// in an HTTP header.
pub(super) fn check_token(token: &str) -> Result<()> {
    if token.trim().is_empty() {
        anyhow::bail!(
            "the token is empty: --token \"\" or an empty ICEWATCH_TOKEN would let anyone in; \
             give a token, or leave both out"
        );
    }
    if token.trim() != token || token.chars().any(char::is_control) {
        anyhow::bail!(
            "the token (--token or ICEWATCH_TOKEN) starts or ends with whitespace or holds a \
             control character: no HTTP header could carry it"
        );
    }
    Ok(())
}

/// The warning for a page reachable from other machines without a token.
fn exposure_warning(local: SocketAddr, token: Option<&str>) -> Option<String> {
    (!local.ip().is_loopback() && token.is_none()).then(|| {
        format!(
            "warning: serving on {local}, reachable from other machines, without a token: \
             anyone who can reach it sees the cluster (set --token or ICEWATCH_TOKEN)"
        )
    })
}

/// The address to open in a browser, with the token if there is one.
pub fn url(local: SocketAddr, token: Option<&str>) -> String {
    let ip = match local.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    let host = SocketAddr::new(ip, local.port());
    match token {
        Some(t) => format!(
            "http://{host}/?token={}",
            utf8_percent_encode(t, NOT_UNRESERVED)
        ),
        None => format!("http://{host}/"),
    }
}

/// What a token leaves as it is in a URL: RFC 3986's unreserved
/// characters; everything else is percent-encoded.
const NOT_UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A listener on loopback, any free port, for a scheduler played inside this
/// process (`what` names it in the error), and the target that reaches it.
pub async fn loopback_scheduler(what: &str) -> Result<(TcpListener, Target)> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .with_context(|| format!("cannot listen on loopback for {what}"))?;
    let target = Target::Address {
        host: Ipv4Addr::LOCALHOST.to_string(),
        port: listener.local_addr()?.port(),
    };
    Ok((listener, target))
}

/// How the page's connection reaches `target`, offering `protocol`.
pub fn connect_options(target: Target, protocol: u32) -> ConnectOptions {
    let mut connect = ConnectOptions::new(target);
    connect.protocol = protocol;
    connect
}

/// Connects as `connect` says (reconnecting as needed) and serves the page
/// on `listener` until `shutdown`. Prints the URL on stdout first.
pub async fn serve(
    listener: TcpListener,
    args: &ServeArgs,
    history: Option<(Store, HistoryOptions)>,
    connect: ConnectOptions,
    shutdown: CancellationToken,
) -> Result<()> {
    serve_from(listener, args, history, connect, None, None, shutdown).await
}

/// [`serve`], with `first`, if given, as the first session: the
/// connection that checked the scheduler at start. If that one is no
/// scheduler's, stops and says so. With `control`, the page reads (and
/// may act through) the scheduler's text port.
pub async fn serve_from(
    listener: TcpListener,
    args: &ServeArgs,
    history: Option<(Store, HistoryOptions)>,
    connect: ConnectOptions,
    first: Option<Connection>,
    control: Option<ControlOptions>,
    shutdown: CancellationToken,
) -> Result<()> {
    let feed = |state, changed, stop: CancellationToken| async move {
        match first {
            Some(conn) => {
                monitor::run_from(conn, connect, state, changed, stop.cancelled_owned()).await?
            }
            None => monitor::run(connect, state, changed, stop.cancelled_owned()).await,
        }
        Ok(())
    };
    let what = "the scheduler connection";
    serve_fed(listener, args, history, control, shutdown, what, feed).await
}

/// Serves the page on `listener` until `shutdown`, keeping the state's
/// history in `history` if given, from a state that `feed` keeps up to
/// date: `feed(state, changed, stop)` runs beside the
/// publisher, notifies `changed` when it changed the state, and ends when
/// `stop` fires at the latest. If it ends earlier, the page goes on showing
/// the state as it left it; if it fails, the page stops and the error
/// (`what` names the feed) is the result. Prints the URL on stdout first.
pub async fn serve_fed<F, Fut>(
    listener: TcpListener,
    args: &ServeArgs,
    history: Option<(Store, HistoryOptions)>,
    control: Option<ControlOptions>,
    shutdown: CancellationToken,
    what: &str,
    feed: F,
) -> Result<()>
where
    F: FnOnce(SharedState, Changed, CancellationToken) -> Fut,
    Fut: Future<Output = Result<()>> + Send + 'static,
{
    let local = listener.local_addr()?;
    println!("open {} in a browser", url(local, args.token.as_deref()));
    let state: SharedState = Arc::new(Mutex::new(State::new(StateOptions {
        history_limit: args.history,
        stale_after_ms: args.stale_after.map_or(u64::MAX, |d| {
            u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
        }),
    })));
    let changed = monitor::changed();
    let history = history.map(|(store, opts)| History::start(store, state.clone(), &changed, opts));
    // Not a shutdown signal: a trigger dropped when the feed ends well
    // would stop the page too.
    let gave_up = Arc::new(Notify::new());
    let fed = feed(state.clone(), changed.clone(), shutdown.clone());
    let feeding = {
        let gave_up = gave_up.clone();
        tokio::spawn(async move {
            let result = fed.await;
            if result.is_err() {
                gave_up.notify_one();
            }
            result
        })
    };
    let mut opts = ServeOptions::default()
        .coalesce(Duration::from_millis(args.coalesce_ms))
        .token(args.token.clone())
        .allowed_hosts(args.allowed_hosts.clone())
        .release_memory(crate::memory::release);
    opts.control = control;
    opts.build_gap = Some(args.build_gap);
    if let Some(history) = &history {
        opts.hub.annex = Some(history.status());
        opts.history = Some(history.path().to_path_buf());
    }
    let stop = async move {
        tokio::select! {
            () = shutdown.cancelled_owned() => {}
            () = gave_up.notified() => {}
        }
    };
    let served = publisher::serve(listener, state, changed, opts, stop).await;
    if served.is_err() {
        // The server failed on its own: the feed has no one to feed.
        feeding.abort();
    }
    let fed = feeding.await;
    // What finished last goes to the database before the end.
    if let Some(history) = history {
        history.stop().await;
    }
    served?;
    fed.with_context(|| format!("{what} failed"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_page_beyond_loopback_without_a_token_is_warned_about() {
        let open: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        let local: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let v6: SocketAddr = "[::1]:8080".parse().unwrap();
        assert!(exposure_warning(open, None).is_some_and(|w| w.contains("without a token")));
        assert!(exposure_warning(open, Some("t")).is_none());
        assert!(exposure_warning(local, None).is_none());
        assert!(exposure_warning(v6, None).is_none());
    }

    #[test]
    fn an_empty_or_blank_token_is_refused_in_one_line() {
        for refused in ["", " ", "\t\n"] {
            let e = check_token(refused).unwrap_err().to_string();
            assert!(e.contains("the token is empty"), "{e}");
            assert!(e.contains("--token") && e.contains("ICEWATCH_TOKEN"), "{e}");
            assert!(!e.contains('\n'), "{e}");
        }
        for refused in [" s3cret", "s3cret\n", "s3c\u{7f}ret"] {
            assert!(check_token(refused).is_err(), "{refused:?}");
        }
        assert!(check_token("s3cret/+ with spaces inside").is_ok());
    }

    #[test]
    fn the_url_names_a_reachable_host_and_carries_the_token() {
        let any: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        assert_eq!(url(any, None), "http://127.0.0.1:8080/");
        let local: SocketAddr = "127.0.0.1:9".parse().unwrap();
        assert_eq!(
            url(local, Some("a b/c-._~é")),
            "http://127.0.0.1:9/?token=a%20b%2Fc-._~%C3%A9"
        );
        let v6: SocketAddr = "[::]:80".parse().unwrap();
        assert_eq!(url(v6, Some("x")), "http://[::1]:80/?token=x");
    }
}
