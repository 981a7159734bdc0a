//! The WebSocket handshake over hyper's upgrade, and the socket the fan-out
//! writes to, made to cost little per client, in memory and in CPU.
//!
//! tungstenite, left to itself, reads into a buffer of `read_buffer_size`
//! that it fills with zeros before every read (128 KiB by default), and
//! copies every message it sends into a write buffer that keeps the
//! capacity of the largest message ever sent (the snapshot: 100 KB on the
//! demo, megabytes on a big cluster). Clients send nothing icewatch uses,
//! so the read buffer is small. And no message is copied: [`Socket`]
//! writes each text straight from the bytes that every client shares, a
//! frame header (formatted by tungstenite) before each [`FRAGMENT`] of it,
//! up to 32 frames a system call (`writev`). tungstenite still reads,
//! answers pings and closes, and writes those small control frames itself,
//! never inside a message of ours.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::{Sink, Stream};
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::io::{self, IoSlice};
use std::ops::Range;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::FrameHeader;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

/// A server-side WebSocket over an upgraded HTTP/1.1 connection.
pub type ServerSocket = Socket<TokioIo<hyper::upgrade::Upgraded>>;

/// The longest frame sent: longer messages go out in fragments this long
/// (RFC 6455 §5.4; browsers join them), so that no client has to take a
/// long frame. A fragment costs a 4-byte header and no buffer; 8 KiB, 32
/// KiB and whole messages measured the same in the fan-out.
pub const FRAGMENT: usize = 8 * 1024;

/// Read buffer: clients send pings and a close, frames of at most 131
/// bytes. tungstenite allocates it per client and zeroes it whole.
const READ_BUFFER: usize = 1024;

/// The socket settings: a small read buffer, tungstenite's own frames (a
/// pong, a close) written at once, and client messages up to
/// `max_message` bytes.
pub fn config(max_message: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
        .max_write_buffer_size(4 * 1024)
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
                let ws = WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await;
                serve(Socket::new(ws, FRAGMENT)).await;
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

/// A server WebSocket that writes its text and binary messages itself,
/// from the message's own bytes, in frames of at most `fragment` bytes;
/// the rest (reading, pings, pongs, closing) is tungstenite's.
pub struct Socket<T> {
    ws: WebSocketStream<T>,
    /// The data message being written, if any.
    out: Option<Outgoing>,
    fragment: usize,
    /// A close was sent or received: no data message may follow.
    closed: bool,
}

/// The longest header of a frame from the server (no mask, 64-bit length).
const MAX_HEADER: usize = 10;
/// Frames handed to the connection in one vectored write.
const FRAMES_PER_WRITE: usize = 32;

/// A data message on its way out: the frames before `frame` are written,
/// and `written` bytes of that one (its header, then its payload).
struct Outgoing {
    payload: Bytes,
    text: bool,
    frame: usize,
    written: usize,
}

impl Outgoing {
    /// How many frames the message takes: at least one, for an empty one.
    fn frames(&self, size: usize) -> usize {
        self.payload.len().div_ceil(size).max(1)
    }

    /// The bytes of the message frame `k` carries.
    fn chunk(&self, k: usize, size: usize) -> Range<usize> {
        let start = (k * size).min(self.payload.len());
        start..(start + size).min(self.payload.len())
    }

    /// Formats frame `k`'s header into `buf`; returns its length.
    fn header(&self, k: usize, size: usize, buf: &mut [u8; MAX_HEADER]) -> usize {
        let opcode = match (k, self.text) {
            (0, true) => Data::Text,
            (0, false) => Data::Binary,
            _ => Data::Continue,
        };
        let header = FrameHeader {
            is_final: k + 1 == self.frames(size),
            opcode: OpCode::Data(opcode),
            ..FrameHeader::default()
        };
        let len = self.chunk(k, size).len() as u64;
        // Unmasked, it is at most MAX_HEADER bytes: formatting cannot fail.
        let _ = header.format(len, &mut &mut buf[..]);
        header.len(len)
    }

    /// Counts `n` more bytes as written; true once the whole message is.
    fn advance(&mut self, mut n: usize, size: usize) -> bool {
        let frames = self.frames(size);
        while n > 0 && self.frame < frames {
            let chunk = self.chunk(self.frame, size).len();
            let wire = FrameHeader::default().len(chunk as u64) + chunk;
            let taken = n.min(wire - self.written);
            self.written += taken;
            n -= taken;
            if self.written == wire {
                self.frame += 1;
                self.written = 0;
            }
        }
        self.frame == frames
    }
}

impl<T> Socket<T> {
    /// `ws`, its data messages sent in frames of at most `fragment` bytes
    /// (at least 1).
    pub fn new(ws: WebSocketStream<T>, fragment: usize) -> Self {
        Socket {
            ws,
            out: None,
            fragment: fragment.max(1),
            closed: false,
        }
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> Socket<T> {
    /// Writes the rest of the data message being sent, if any.
    fn poll_out(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        let size = self.fragment;
        while let Some(out) = &mut self.out {
            let first = out.frame;
            let last = out.frames(size).min(first + FRAMES_PER_WRITE);
            let mut headers = [[0u8; MAX_HEADER]; FRAMES_PER_WRITE];
            let mut header_lens = [0usize; FRAMES_PER_WRITE];
            for (k, (buf, len)) in (first..last).zip(headers.iter_mut().zip(&mut header_lens)) {
                *len = out.header(k, size, buf);
            }
            let mut slices = [IoSlice::new(&[]); 2 * FRAMES_PER_WRITE];
            let mut used = 0;
            for (k, (buf, &len)) in (first..last).zip(headers.iter().zip(&header_lens)) {
                let chunk = out.chunk(k, size);
                // Of the first frame, only what is not written yet.
                let skip = if k == first { out.written } else { 0 };
                let head = &buf[skip.min(len)..len];
                let body = &out.payload[chunk.start + skip.saturating_sub(len)..chunk.end];
                for part in [head, body] {
                    if !part.is_empty() {
                        slices[used] = IoSlice::new(part);
                        used += 1;
                    }
                }
            }
            let n = ready!(Pin::new(self.ws.get_mut()).poll_write_vectored(cx, &slices[..used]))?;
            if n == 0 {
                return Poll::Ready(Err(io::Error::from(io::ErrorKind::WriteZero).into()));
            }
            if out.advance(n, size) {
                self.out = None;
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Takes a text or binary message to write.
    fn start_data(&mut self, message: Message) -> Result<(), WsError> {
        if self.closed {
            return Err(WsError::Protocol(ProtocolError::SendAfterClosing));
        }
        if self.out.is_some() {
            // start_send without poll_ready: the Sink contract broken.
            return Err(WsError::WriteBufferFull(Box::new(message)));
        }
        let (payload, text) = match message {
            Message::Text(text) => (Bytes::from(text), true),
            other => (other.into_data(), false),
        };
        self.out = Some(Outgoing {
            payload,
            text,
            frame: 0,
            written: 0,
        });
        Ok(())
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> Stream for Socket<T> {
    type Item = Result<Message, WsError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        // tungstenite answers a ping as it reads: never inside a frame of ours.
        if let Err(e) = ready!(this.poll_out(cx)) {
            return Poll::Ready(Some(Err(e)));
        }
        let item = ready!(Pin::new(&mut this.ws).poll_next(cx));
        if !matches!(item, Some(Ok(ref m)) if !m.is_close()) {
            this.closed = true;
        }
        Poll::Ready(item)
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> Sink<Message> for Socket<T> {
    type Error = WsError;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        let this = self.get_mut();
        ready!(this.poll_out(cx))?;
        // A pong or close tungstenite queued goes out whole before our frames.
        Pin::new(&mut this.ws).poll_flush(cx)
    }

    fn start_send(self: Pin<&mut Self>, item: Message) -> Result<(), WsError> {
        let this = self.get_mut();
        match item {
            data @ (Message::Text(_) | Message::Binary(_)) => this.start_data(data),
            other => {
                this.closed |= other.is_close();
                Pin::new(&mut this.ws).start_send(other)
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        let this = self.get_mut();
        ready!(this.poll_out(cx))?;
        Pin::new(&mut this.ws).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        let this = self.get_mut();
        ready!(this.poll_out(cx))?;
        this.closed = true;
        Pin::new(&mut this.ws).poll_close(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::{SinkExt, StreamExt};
    use tokio::io::{AsyncReadExt, DuplexStream};

    /// A server socket and the client's end of the connection, which holds
    /// at most `room` bytes in each direction (so writes stop part-way).
    async fn pair(room: usize, fragment: usize) -> (Socket<DuplexStream>, DuplexStream) {
        let (server, client) = tokio::io::duplex(room);
        let ws = WebSocketStream::from_raw_socket(server, Role::Server, Some(config(1024))).await;
        (Socket::new(ws, fragment), client)
    }

    #[tokio::test]
    async fn a_long_text_goes_out_as_fragments_written_from_its_bytes() {
        // Three bytes of room: writes stop inside headers and payloads.
        let (mut socket, mut client) = pair(3, 4).await;
        let sending = tokio::spawn(async move {
            for text in ["0123456789", "abcd", ""] {
                socket.send(Message::text(text)).await.expect("sent");
            }
            socket
                .send(Message::binary(&b"xyz"[..]))
                .await
                .expect("sent");
        });
        let mut wire = Vec::new();
        client.read_to_end(&mut wire).await.expect("read");
        sending.await.expect("no panic");
        let want: Vec<u8> = [
            &[0x01, 4][..],
            b"0123",
            &[0x00, 4],
            b"4567",
            &[0x80, 2],
            b"89",
            &[0x81, 4],
            b"abcd",
            &[0x81, 0],
            &[0x82, 3],
            b"xyz",
        ]
        .concat();
        assert_eq!(wire, want);
    }

    #[tokio::test]
    async fn lengths_take_the_header_forms_of_rfc_6455() {
        let (mut socket, mut client) = pair(1024, 70_000).await;
        let sending = tokio::spawn(async move {
            socket
                .send(Message::text("y".repeat(300)))
                .await
                .expect("sent");
            socket
                .send(Message::text("x".repeat(66_000)))
                .await
                .expect("sent");
        });
        let mut wire = Vec::new();
        client.read_to_end(&mut wire).await.expect("read");
        sending.await.expect("no panic");
        assert_eq!(wire[..4], [0x81, 126, 1, 44]);
        let second = &wire[4 + 300..];
        assert_eq!(second[..10], [0x81, 127, 0, 0, 0, 0, 0, 1, 0x01, 0xd0]);
        assert_eq!(second.len(), 10 + 66_000);
    }

    #[tokio::test]
    async fn a_ping_is_answered_between_messages_never_inside_one() {
        use tokio::io::AsyncWriteExt;
        let (socket, mut client) = pair(1000, 8 * 1024).await;
        let (mut sink, mut stream) = socket.split();
        let long = "z".repeat(100_000);
        let expected = long.clone();
        let server = tokio::spawn(async move {
            let reading = async { while let Some(Ok(_)) = stream.next().await {} };
            let sending = async {
                sink.send(Message::text(long)).await.expect("sent");
                sink.send(Message::text("after")).await.expect("sent");
            };
            tokio::join!(reading, sending);
        });
        // The long text has begun; a ping ("p", masked) arrives.
        let mut begun = vec![0u8; 100];
        client
            .read_exact(&mut begun)
            .await
            .expect("the text begins");
        let mask = [1, 2, 3, 4];
        let ping = [
            0x89,
            0x81,
            mask[0],
            mask[1],
            mask[2],
            mask[3],
            b'p' ^ mask[0],
        ];
        client.write_all(&ping).await.expect("ping");
        let mut client = WebSocketStream::from_partially_read(
            client,
            begun,
            Role::Client,
            Some(config(1 << 20)),
        )
        .await;
        let mut got = Vec::new();
        while got.len() < 3 {
            match client.next().await {
                Some(Ok(m)) => got.push(m),
                other => panic!("the stream broke after {got:?}: {other:?}"),
            }
        }
        assert_eq!(
            got,
            [
                Message::text(expected),
                Message::Pong("p".into()),
                Message::text("after")
            ]
        );
        client.close(None).await.expect("close");
        while let Some(Ok(_)) = client.next().await {}
        server.await.expect("no panic");
    }

    #[tokio::test]
    async fn no_data_goes_out_after_a_close() {
        let (mut socket, _client) = pair(1024, 8).await;
        socket.send(Message::Close(None)).await.expect("close sent");
        assert!(matches!(
            socket.send(Message::text("late")).await,
            Err(WsError::Protocol(ProtocolError::SendAfterClosing))
        ));
    }
}
