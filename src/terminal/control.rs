//! The scheduler's text port in the host pane: what the page's host panel
//! reads (blocked, kept, installing since, and on demand a daemon's
//! `internals`), through the very same [`Control`] the page uses:
//!
//! - `icewatch top HOST` starts one beside its own state ([`Link::Local`]);
//! - `icewatch top --server URL` asks that icewatch's `Control` over its
//!   HTTP API (`GET /api/v1/control`, `GET /api/v1/hosts/NAME/internals`;
//!   [`Link::Server`]), as the page does.
//!
//! So the bounds are the page's: one command at a time on the text port, a
//! deadline on each, `internals` of a host at most once every 10 s. On this
//! side, one request at a time too: the pane asks again only once the last
//! answer came, and every HTTP request has a deadline.

use super::source::Feed;
use crate::publisher::control::{Control, View};
use axum::body::Body;
use hyper::header::{AUTHORIZATION, HOST};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// How often the view is read again (the server polls the text port as
/// often).
pub const READ_EVERY: Duration = Duration::from_secs(5);
/// The longest an HTTP request to the server may take: the server's own
/// wait for its turn and the answer (20 s), and then some.
const HTTP_WITHIN: Duration = Duration::from_secs(25);
/// The most an answer may hold.
const MAX_BODY: usize = 4 << 20;

/// Where the text port's reads come from.
#[derive(Clone, Debug)]
pub enum Link {
    /// The `Control` of this process.
    Local(Arc<Control>),
    /// Another icewatch's API.
    Server {
        /// `HOST:PORT`.
        authority: String,
        /// The page URL's query (`token=…`), if any.
        query: Option<String>,
        /// The token, sent as `Authorization: Bearer`.
        token: Option<String>,
    },
}

impl Link {
    /// The API of the icewatch whose WebSocket is `ws_url` (as
    /// [`websocket_url`](super::source::websocket_url) makes it).
    pub fn server(ws_url: &str, token: Option<String>) -> Link {
        let rest = ws_url.strip_prefix("ws://").unwrap_or(ws_url);
        let (authority, query) = match rest.split_once('?') {
            Some((a, q)) => (a, Some(q.to_owned())),
            None => (rest, None),
        };
        let authority = authority.split('/').next().unwrap_or(authority).to_owned();
        Link::Server {
            authority,
            query,
            token,
        }
    }

    /// The view, or why there is none; `Ok(None)`: the server does not
    /// read the text port.
    async fn view(&self) -> Result<Option<View>, String> {
        match self {
            Link::Local(control) => Ok(Some(control.view())),
            Link::Server { .. } => match self.get("/api/v1/control").await? {
                (StatusCode::NOT_FOUND, _) => Ok(None),
                (StatusCode::OK, body) => serde_json::from_slice(&body)
                    .map(Some)
                    .map_err(|e| format!("/api/v1/control: {e}")),
                (status, _) => Err(format!("/api/v1/control: {status}")),
            },
        }
    }

    /// `host`'s internals, or why not.
    async fn internals(&self, host: &str) -> Result<Vec<crate::protocol::text::Internals>, String> {
        match self {
            Link::Local(control) => control.internals(host).await.map_err(|e| e.to_string()),
            Link::Server { .. } => {
                #[derive(serde::Deserialize)]
                struct Answer {
                    #[serde(default)]
                    daemons: Vec<crate::protocol::text::Internals>,
                    error: Option<String>,
                }
                let name = utf8_percent_encode(host, NON_ALPHANUMERIC);
                let (status, body) = self.get(&format!("/api/v1/hosts/{name}/internals")).await?;
                let answer: Answer = serde_json::from_slice(&body)
                    .map_err(|_| format!("the server answered {status}"))?;
                match answer.error {
                    Some(e) => Err(e),
                    None => Ok(answer.daemons),
                }
            }
        }
    }

    /// One `GET` of the server's API, bounded by [`HTTP_WITHIN`].
    async fn get(&self, path: &str) -> Result<(StatusCode, Vec<u8>), String> {
        let Link::Server {
            authority,
            query,
            token,
        } = self
        else {
            return Err("not a server".into());
        };
        let uri = match query {
            Some(q) => format!("{path}?{q}"),
            None => path.to_owned(),
        };
        let ask = async {
            let stream = TcpStream::connect(authority.as_str())
                .await
                .map_err(|e| format!("cannot connect to {authority}: {e}"))?;
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|e| e.to_string())?;
            tokio::spawn(conn);
            let mut request = Request::get(uri).header(HOST, authority.as_str());
            if let Some(t) = token {
                request = request.header(AUTHORIZATION, format!("Bearer {t}"));
            }
            let request = request.body(Body::empty()).map_err(|e| e.to_string())?;
            let response = sender
                .send_request(request)
                .await
                .map_err(|e| e.to_string())?;
            let status = response.status();
            let body = axum::body::to_bytes(Body::new(response.into_body()), MAX_BODY)
                .await
                .map_err(|e| e.to_string())?;
            Ok((status, body.to_vec()))
        };
        tokio::time::timeout(HTTP_WITHIN, ask)
            .await
            .map_err(|_| format!("{authority} did not answer within {HTTP_WITHIN:?}"))?
    }
}

/// Reads the view every [`READ_EVERY`] and asks the `internals` of each
/// host that comes on `requests`, one at a time, sending what it learns
/// to `tx` until it closes.
pub async fn feed(link: Link, tx: mpsc::Sender<Feed>, mut requests: mpsc::Receiver<String>) {
    let mut tick = tokio::time::interval(READ_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let feed = tokio::select! {
            _ = tick.tick() => match link.view().await {
                Ok(Some(view)) => Feed::Control(Box::new(view)),
                // Not read there: nothing to show, ever.
                Ok(None) => return,
                // The WebSocket's status tells when the server is away.
                Err(_) => continue,
            },
            host = requests.recv() => match host {
                Some(host) => {
                    let answer = link.internals(&host).await;
                    Feed::Internals(host, answer)
                }
                None => return,
            },
            () = tx.closed() => return,
        };
        if tx.send(feed).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_api_is_found_beside_the_websocket() {
        let Link::Server {
            authority, query, ..
        } = Link::server("ws://h:8080/ws?token=a%20b", None)
        else {
            panic!("a server link")
        };
        assert_eq!(authority, "h:8080");
        assert_eq!(query.as_deref(), Some("token=a%20b"));
    }
}
