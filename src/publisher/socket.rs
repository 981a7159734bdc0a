//! The WebSocket handshake over hyper's upgrade, and the socket the fan-out
//! writes to, made to cost little per client.
//!
//! What a client costs is mostly buffers: tungstenite reads into a buffer of
//! `read_buffer_size` that it fills with zeros before every read (128 KiB
//! by default), and copies every message it sends into a write buffer that
//! keeps the capacity of the largest message ever sent (the snapshot, 100
//! KB on the demo, megabytes on a big cluster). Clients send nothing
//! icewatch uses, so the read buffer is small; messages longer than
//! [`FRAGMENT`] go out as fragments of that size, so the write buffer never
//! holds more than one (RFC 6455 §5.4; browsers join them). The text of a
//! diff stays shared by every client: a fragment is a slice of it.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::Sink;
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// A server-side WebSocket over an upgraded HTTP/1.1 connection.
pub type ServerSocket = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// The longest frame sent: longer messages go out in fragments this long.
pub const FRAGMENT: usize = 8 * 1024;

/// Read buffer: clients send pings, a close, little else.
const READ_BUFFER: usize = 4 * 1024;

/// The socket settings: a small read buffer, each frame written at once,
/// and client messages up to `max_message` bytes.
pub fn config(max_message: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
        .max_write_buffer_size(4 * FRAGMENT)
        .max_message_size(Some(max_message))
        .max_frame_size(Some(max_message))
}

/// Answers a WebSocket handshake (RFC 6455 §4.2) and runs `serve` on the
/// socket once the connection is upgraded; refuses anything else with
/// 400, or 426 for a request that does not ask for an upgrade.
pub fn upgrade<F, Fut>(mut request: Request, config: WebSocketConfig, serve: F) -> Response
where
    F: FnOnce(ServerSocket) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let headers = request.headers();
    if !has_token(headers, header::CONNECTION, "upgrade")
        || !has_token(headers, header::UPGRADE, "websocket")
    {
        return refuse(
            StatusCode::UPGRADE_REQUIRED,
            "426 Upgrade Required: /ws is a WebSocket",
        );
    }
    if headers.get(header::SEC_WEBSOCKET_VERSION) != Some(&HeaderValue::from_static("13")) {
        return refuse(
            StatusCode::BAD_REQUEST,
            "400 Bad Request: Sec-WebSocket-Version must be 13",
        );
    }
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "400 Bad Request: no Sec-WebSocket-Key",
        );
    };
    let accept = derive_accept_key(key.as_bytes());
    let Some(on_upgrade) = request
        .extensions_mut()
        .remove::<hyper::upgrade::OnUpgrade>()
    else {
        return refuse(
            StatusCode::UPGRADE_REQUIRED,
            "426 Upgrade Required: this connection cannot be upgraded",
        );
    };
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let io = TokioIo::new(upgraded);
                serve(WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await).await;
            }
            Err(e) => tracing::debug!("WebSocket upgrade failed: {e}"),
        }
    });
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = response.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(accept) = HeaderValue::from_str(&accept) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    }
    response
}

fn refuse(status: StatusCode, reason: &'static str) -> Response {
    (status, format!("{reason}\n")).into_response()
}

/// Whether a comma-separated header lists `token` (any case).
fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// A sink that sends text messages longer than `size` as fragments of
/// `size` bytes, each a slice of the message's shared bytes.
pub struct Fragmenting<S> {
    inner: S,
    size: usize,
    /// The message being sent and how much of it is sent.
    rest: Option<(Bytes, usize)>,
}

impl<S> Fragmenting<S> {
    /// Fragments of `size` bytes (at least 1) sent to `inner`.
    pub fn new(inner: S, size: usize) -> Self {
        Fragmenting {
            inner,
            size: size.max(1),
            rest: None,
        }
    }
}

impl<S: Sink<Message> + Unpin> Fragmenting<S> {
    /// Hands the rest of the current message to `inner`, a fragment at a
    /// time as it is ready for one.
    fn poll_rest(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        while let Some((text, sent)) = &mut self.rest {
            ready!(Pin::new(&mut self.inner).poll_ready(cx))?;
            let start = *sent;
            let end = text.len().min(start + self.size);
            let opcode = if start == 0 {
                Data::Text
            } else {
                Data::Continue
            };
            let frame = Frame::message(
                text.slice(start..end),
                OpCode::Data(opcode),
                end == text.len(),
            );
            if end == text.len() {
                self.rest = None;
            } else {
                *sent = end;
            }
            Pin::new(&mut self.inner).start_send(Message::Frame(frame))?;
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: Sink<Message> + Unpin> Sink<Message> for Fragmenting<S> {
    type Error = S::Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        let this = self.get_mut();
        ready!(this.poll_rest(cx))?;
        Pin::new(&mut this.inner).poll_ready(cx)
    }

    fn start_send(self: Pin<&mut Self>, item: Message) -> Result<(), S::Error> {
        let this = self.get_mut();
        match item {
            Message::Text(text) if text.len() > this.size => {
                this.rest = Some((Bytes::from(text), 0));
                Ok(())
            }
            other => Pin::new(&mut this.inner).start_send(other),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        let this = self.get_mut();
        ready!(this.poll_rest(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        let this = self.get_mut();
        ready!(this.poll_rest(cx))?;
        Pin::new(&mut this.inner).poll_close(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::SinkExt;

    #[tokio::test]
    async fn a_long_text_goes_out_as_fragments_that_join_into_it() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Message>();
        let inner = Box::pin(futures_util::sink::unfold(
            tx,
            |tx, m: Message| async move { tx.send(m).map(|()| tx) },
        ));
        let mut sink = Fragmenting::new(inner, 4);
        sink.send(Message::text("0123456789")).await.unwrap();
        sink.send(Message::text("abcd")).await.unwrap();
        drop(sink);
        let mut sent = Vec::new();
        while let Some(m) = rx.recv().await {
            sent.push(m);
        }
        let frames: Vec<(OpCode, bool, Vec<u8>)> = sent[..3]
            .iter()
            .map(|m| match m {
                Message::Frame(f) => (f.header().opcode, f.header().is_final, f.payload().to_vec()),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            frames,
            [
                (OpCode::Data(Data::Text), false, b"0123".to_vec()),
                (OpCode::Data(Data::Continue), false, b"4567".to_vec()),
                (OpCode::Data(Data::Continue), true, b"89".to_vec()),
            ]
        );
        assert_eq!(
            sent[3..],
            [Message::text("abcd")],
            "a short text is sent whole"
        );
    }
}
