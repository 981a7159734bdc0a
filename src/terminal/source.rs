//! Where the terminal view's messages come from, both as the WebSocket
//! messages of `docs/websocket.md`, so that one [`Model`](super::Model)
//! merges them:
//!
//! - [`from_state`]: a reader of a [`State`](crate::monitor::State) fed in
//!   this process (`icewatch top HOST`): a snapshot, then a diff of what
//!   changed, rendered as the WebSocket hub renders them, at most one per
//!   period;
//! - [`from_server`]: a running icewatch's WebSocket (`icewatch top
//!   --server URL`), reconnecting with backoff while it is away.

use super::model::ControlView;
use crate::monitor::{lock_state, Changed, SharedState};
use crate::protocol::text::Internals;
use crate::publisher::delta::Delta;
use crate::publisher::json::{diff_message, snapshot_message};
use crate::publisher::websocket::Rendered;
use futures_util::StreamExt;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message as WsMessage;

/// What a source tells the view.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Feed {
    /// A WebSocket message: a snapshot or a diff.
    Message(String),
    /// The link to the source is down, for this reason; it is retried.
    Down(String),
    /// The scheduler's text port, as the server last read it.
    Control(Box<ControlView>),
    /// A host's `internals`, asked for by the host pane.
    Internals(String, Result<Vec<Internals>, String>),
}

/// The longest wait between two attempts to reach an icewatch.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Follows `state` (a reader of its change feed) and sends a snapshot,
/// then after each change a diff of it, at most one per `period`, until
/// `tx` is closed. `changed` is the state's wakeup.
pub async fn from_state(
    state: SharedState,
    changed: Changed,
    tx: mpsc::Sender<Feed>,
    period: Duration,
) {
    let mut wakeups = changed.subscribe();
    let (mut delta, first) = {
        let mut s = lock_state(&state);
        let delta = Delta::follow(&mut s);
        (delta, snapshot_message(&s, 0))
    };
    let mut seq = 0;
    if tx.send(Feed::Message(first)).await.is_err() {
        delta.unfollow(&mut lock_state(&state));
        return;
    }
    let mut sent = Instant::now();
    loop {
        tokio::select! {
            woke = wakeups.changed() => if woke.is_err() { break },
            () = tx.closed() => break,
        }
        tokio::select! {
            () = tokio::time::sleep_until(sent + period) => {}
            () = tx.closed() => break,
        }
        let text = {
            let mut s = lock_state(&state);
            match diff_message(&mut s, &mut delta, seq + 1) {
                Rendered::Nothing => continue,
                Rendered::Diff(text) => {
                    seq += 1;
                    text
                }
                Rendered::Snapshot => {
                    seq += 1;
                    snapshot_message(&s, seq)
                }
            }
        };
        sent = Instant::now();
        if tx.send(Feed::Message(text)).await.is_err() {
            break;
        }
    }
    delta.unfollow(&mut lock_state(&state));
}

/// The WebSocket address of the icewatch at `server`: `ws://HOST:PORT/ws`
/// from `HOST:PORT`, `http://HOST:PORT/` (the page's address, as
/// `icewatch monitor` prints it) or a `ws://` URL. A token in the page's
/// URL (`?token=T`) is kept.
pub fn websocket_url(server: &str) -> Result<String, String> {
    let (scheme, rest) = match server.split_once("://") {
        Some(("http" | "ws", rest)) => ("ws", rest),
        Some(("https" | "wss", _)) => {
            return Err(format!(
                "{server}: icewatch top speaks plain ws:// only; reach a TLS proxy's icewatch through an SSH tunnel"
            ))
        }
        Some((other, _)) => return Err(format!("{server}: {other}:// is not an icewatch address (http:// or ws://)")),
        None => ("ws", server),
    };
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    if authority.is_empty() {
        return Err(format!("{server}: no host in the address"));
    }
    let (path, query) = match path.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path, None),
    };
    let path = if path.is_empty() || path == "/" {
        "/ws"
    } else {
        path
    };
    Ok(match query {
        Some(q) => format!("{scheme}://{authority}{path}?{q}"),
        None => format!("{scheme}://{authority}{path}"),
    })
}

/// Reads the icewatch WebSocket at `url` (made by [`websocket_url`]),
/// with `token` if given, and sends its messages, until `tx` is closed.
/// When the link fails or ends, sends why and tries again, waiting longer
/// each time up to 5 s.
pub async fn from_server(url: String, token: Option<String>, tx: mpsc::Sender<Feed>) {
    let mut backoff = Duration::from_millis(250);
    loop {
        let why = match read_server(&url, token.as_deref(), &tx).await {
            Ok(()) => return,
            Err(e) => e,
        };
        if tx.send(Feed::Down(why)).await.is_err() {
            return;
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = tx.closed() => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// One connection: `Ok` when `tx` closed, else why the link ended.
async fn read_server(
    url: &str,
    token: Option<&str>,
    tx: &mpsc::Sender<Feed>,
) -> Result<(), String> {
    let mut request = url
        .into_client_request()
        .map_err(|e| format!("{url}: {e}"))?;
    if let Some(t) = token {
        let value = HeaderValue::from_str(&format!("Bearer {t}"))
            .map_err(|_| "the token cannot travel in an HTTP header".to_string())?;
        request.headers_mut().insert("authorization", value);
    }
    let connect = tokio::select! {
        c = tokio_tungstenite::connect_async(request) => c,
        () = tx.closed() => return Ok(()),
    };
    let (mut ws, _) = connect.map_err(|e| format!("cannot connect: {e}"))?;
    loop {
        let msg = tokio::select! {
            m = ws.next() => m,
            () = tx.closed() => return Ok(()),
        };
        match msg {
            Some(Ok(WsMessage::Text(text))) => {
                if tx
                    .send(Feed::Message(text.as_str().to_owned()))
                    .await
                    .is_err()
                {
                    return Ok(());
                }
            }
            Some(Ok(WsMessage::Close(_))) | None => {
                return Err(format!("{url} closed the connection"))
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_address_or_a_bare_host_becomes_the_websocket() {
        assert_eq!(
            websocket_url("127.0.0.1:8080").unwrap(),
            "ws://127.0.0.1:8080/ws"
        );
        assert_eq!(websocket_url("http://h:8080/").unwrap(), "ws://h:8080/ws");
        assert_eq!(
            websocket_url("http://h:8080/?token=a%20b").unwrap(),
            "ws://h:8080/ws?token=a%20b"
        );
        assert_eq!(websocket_url("ws://h/ws").unwrap(), "ws://h/ws");
        assert!(websocket_url("https://h/").unwrap_err().contains("ws://"));
        assert!(websocket_url("ftp://h/").is_err());
        assert!(websocket_url("http:///").is_err());
    }
}
