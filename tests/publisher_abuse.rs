//! The publisher against hostile clients, over real sockets on 127.0.0.1
//! port 0 (issue 15): a page that rebinds its own name to loopback, empty
//! and differently-cased tokens, sockets that never send their headers,
//! more idle sockets than the connection cap, more WebSocket clients than
//! their share of it, and what one client's socket costs. Every wait is on
//! an event (an answer, a socket closed by the server), bounded by
//! [`PATIENCE`]; timeouts under test are set short through `ServeOptions`.

mod support;

use futures_util::StreamExt;
use icewatch::publisher::{ConnectionLimits, ServeOptions};
use serde_json::Value;
use std::net::SocketAddr;
use std::time::Duration;
use support::server::Server;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::WebSocketStream;

/// The longest any one step may take before the test fails: never a
/// threshold on how fast the server is, only a bound on a hang.
const PATIENCE: Duration = Duration::from_secs(60);

type Ws = WebSocketStream<TcpStream>;

impl Server {
    /// The seq of the snapshot the API gives now (publishing what changed).
    async fn publish(&self) -> u64 {
        let (status, body) = get(self.addr, "/api/v1/snapshot", &[]).await;
        assert_eq!(status, 200, "{body}");
        let snapshot: Value = serde_json::from_str(&body).expect("JSON");
        snapshot["seq"].as_u64().expect("a seq")
    }
}

/// One HTTP/1.1 GET with these headers (a `Host` naming the server's
/// address unless one is given): the status and the body.
async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    support::http::request(addr, "GET", path, headers).await
}

/// A WebSocket handshake on `/ws` with these headers (`Host` replaces the
/// one the URL gives).
async fn ws_connect(addr: SocketAddr, headers: &[(&str, &str)]) -> Result<Ws, tungstenite::Error> {
    let stream = TcpStream::connect(addr).await?;
    let mut request = format!("ws://{addr}/ws").into_client_request()?;
    for (k, v) in headers {
        let name = tungstenite::http::HeaderName::from_bytes(k.as_bytes()).expect("a header name");
        request
            .headers_mut()
            .insert(name, v.parse().expect("a header value"));
    }
    let (ws, _) = timeout(PATIENCE, tokio_tungstenite::client_async(request, stream))
        .await
        .expect("a handshake in time")?;
    Ok(ws)
}

/// The status with which a WebSocket handshake is refused.
async fn ws_refusal(addr: SocketAddr, headers: &[(&str, &str)]) -> u16 {
    match ws_connect(addr, headers).await {
        Err(tungstenite::Error::Http(response)) => response.status().as_u16(),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// The next text message as JSON.
async fn next_json(ws: &mut Ws) -> Value {
    loop {
        let msg = timeout(PATIENCE, ws.next())
            .await
            .expect("a message in time")
            .expect("the socket stays open")
            .expect("no error");
        match msg {
            Message::Text(text) => return serde_json::from_str(&text).expect("JSON"),
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// A client reading everything; `seen` says how far it got.
fn reader(mut ws: Ws) -> (watch::Receiver<u64>, tokio::task::JoinHandle<()>) {
    let (progress, seen) = watch::channel(0);
    let task = tokio::spawn(async move {
        loop {
            let msg = next_json(&mut ws).await;
            if progress.send(msg["seq"].as_u64().expect("a seq")).is_err() {
                return;
            }
        }
    });
    (seen, task)
}

/// One change published; waits until the reader saw it.
async fn reaches(server: &mut Server, seen: &mut watch::Receiver<u64>, round: u32) {
    server.feed.host(2, "remote1", 2, false, round);
    let seq = server.publish().await;
    timeout(PATIENCE, seen.wait_for(|s| *s >= seq))
        .await
        .expect("the reader is served in time")
        .expect("the reader is alive");
}

/// Waits until the server closes `socket` (end of stream or reset).
async fn closed_by_server(socket: &mut TcpStream, why: &str) {
    let mut buf = [0u8; 1024];
    timeout(PATIENCE, async {
        loop {
            match socket.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the server did not close {why}"));
}

/// Whether the server closed `socket` already (without waiting).
async fn is_closed(socket: &mut TcpStream) -> bool {
    let mut buf = [0u8; 1];
    matches!(
        timeout(Duration::ZERO, socket.read(&mut buf)).await,
        Ok(Ok(0) | Err(_))
    )
}

/// The plain routes that need the token or an allowed `Host`.
const GUARDED: [&str; 6] = [
    "/",
    "/ws",
    "/api/v1/snapshot",
    "/api/v1/hosts",
    "/api/v1/jobs",
    "/metrics",
];

#[tokio::test]
async fn a_rebound_host_name_gets_421_on_every_route_but_healthz() {
    let server = Server::start(ServeOptions::default()).await;
    let addr = server.addr;
    let port = addr.port();
    let evil = format!("evil.example:{port}");
    for path in GUARDED {
        let (status, body) = get(addr, path, &[("Host", &evil)]).await;
        assert_eq!(status, 421, "{path}: {body}");
        assert!(body.contains("--allowed-host evil.example"), "{body}");
        assert_eq!(body.lines().count(), 1, "{body}");
    }
    let (status, body) = get(addr, "/healthz", &[("Host", &evil)]).await;
    assert_eq!((status, body.as_str()), (200, "ok\n"), "/healthz");
    for host in [
        format!("localhost:{port}"),
        format!("LOCALHOST:{port}"),
        format!("page.localhost:{port}"),
        format!("127.0.0.1:{port}"),
        format!("127.0.0.2:{port}"),
        format!("[::1]:{port}"),
        "localhost".to_owned(),
    ] {
        let (status, body) = get(addr, "/api/v1/hosts", &[("Host", &host)]).await;
        assert_eq!(status, 200, "{host}: {body}");
    }
    for host in [
        format!("10.1.2.3:{port}"),
        format!("localhost.evil.example:{port}"),
        format!("evil.example.:{port}"),
    ] {
        assert_eq!(get(addr, "/", &[("Host", &host)]).await.0, 421, "{host}");
    }
    server.stop().await;
}

#[tokio::test]
async fn a_websocket_from_a_rebinding_page_is_refused() {
    let server = Server::start(ServeOptions::default()).await;
    let addr = server.addr;
    let port = addr.port();
    // The attacker's page controls both Host and Origin.
    let host = format!("rebind.attacker.test:{port}");
    let origin = format!("http://rebind.attacker.test:{port}");
    assert_eq!(
        ws_refusal(addr, &[("Host", &host), ("Origin", &origin)]).await,
        421
    );
    // An allowed Host with a foreign Origin: cross-site, 403.
    let foreign = format!("http://rebind.attacker.test:{port}");
    assert_eq!(
        ws_refusal(
            addr,
            &[("Host", &format!("localhost:{port}")), ("Origin", &foreign)]
        )
        .await,
        403
    );
    // The page's own origin, under a loopback name: served.
    let own = format!("localhost:{port}");
    let mut ws = ws_connect(
        addr,
        &[("Host", &own), ("Origin", &format!("http://{own}"))],
    )
    .await
    .expect("the page's own origin");
    assert_eq!(next_json(&mut ws).await["type"], "snapshot");
    server.stop().await;
}

#[tokio::test]
async fn allowed_hosts_are_served_under_their_name() {
    let opts = ServeOptions::default().allowed_hosts(vec!["icewatch.example.org".into()]);
    let server = Server::start(opts).await;
    let addr = server.addr;
    let host = format!("icewatch.example.org:{}", addr.port());
    assert_eq!(get(addr, "/", &[("Host", &host)]).await.0, 200);
    let origin = format!("http://{host}");
    let mut ws = ws_connect(addr, &[("Host", &host), ("Origin", &origin)])
        .await
        .expect("an allowed host's page");
    assert_eq!(next_json(&mut ws).await["type"], "snapshot");
    let other = format!("other.example.org:{}", addr.port());
    assert_eq!(get(addr, "/", &[("Host", &other)]).await.0, 421);
    server.stop().await;
}

#[tokio::test]
async fn with_a_token_the_token_guards_under_any_host_name_and_bearer_is_any_case() {
    let server = Server::start(ServeOptions::default().token(Some("s3cret".into()))).await;
    let addr = server.addr;
    let evil = format!("evil.example:{}", addr.port());
    // The token is the guard: a rebinding page does not have it.
    assert_eq!(get(addr, "/api/v1/hosts", &[("Host", &evil)]).await.0, 401);
    assert_eq!(get(addr, "/api/v1/hosts?token=", &[]).await.0, 401);
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let auth = format!("{scheme} s3cret");
        let (status, body) = get(addr, "/api/v1/hosts", &[("Authorization", &auth)]).await;
        assert_eq!(status, 200, "{auth}: {body}");
    }
    let (status, _) = get(
        addr,
        "/api/v1/hosts",
        &[("Authorization", "Bearer   s3cret")],
    )
    .await;
    assert_eq!(status, 200, "more than one space after the scheme");
    for wrong in ["Basic s3cret", "Bearers3cret", "Bearer", "Bearer s3cret2"] {
        let status = get(addr, "/api/v1/hosts", &[("Authorization", wrong)])
            .await
            .0;
        assert_eq!(status, 401, "{wrong}");
    }
    assert_eq!(
        get(
            addr,
            "/api/v1/hosts",
            &[("Host", &evil), ("Authorization", "bearer s3cret")]
        )
        .await
        .0,
        200
    );
    let mut ws = ws_connect(addr, &[("Authorization", "bearer s3cret")])
        .await
        .expect("a lower-case bearer");
    assert_eq!(next_json(&mut ws).await["type"], "snapshot");
    server.stop().await;
}

/// Options with this header timeout and connection cap.
fn limited(header_timeout: Duration, max_connections: usize) -> ServeOptions {
    ServeOptions {
        limits: ConnectionLimits {
            header_timeout,
            max_connections: Some(max_connections),
        },
        ..ServeOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sockets_that_do_not_send_their_headers_in_time_are_closed() {
    let server = Server::start(limited(Duration::from_secs(1), 64)).await;
    let addr = server.addr;
    let mut silent = TcpStream::connect(addr).await.expect("connect");
    let mut slow = TcpStream::connect(addr).await.expect("connect");
    // Slowloris: a request line and a header, then nothing more.
    slow.write_all(b"GET /api/v1/snapshot HTTP/1.1\r\nHost: localhost\r\nX-a: ")
        .await
        .expect("send");
    // A keep-alive connection that asked once and then fell silent.
    let mut kept = TcpStream::connect(addr).await.expect("connect");
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .expect("send");
    closed_by_server(&mut silent, "a socket that sent nothing").await;
    closed_by_server(&mut slow, "a socket that sent half its headers").await;
    closed_by_server(&mut kept, "an idle keep-alive connection").await;
    assert_eq!(get(addr, "/healthz", &[]).await.0, 200);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_cap_idle_sockets_make_room_for_healthz_and_a_reader_keeps_receiving() {
    const CAP: usize = 16;
    // Idle sockets are never timed out here: only the cap closes them.
    let mut server = Server::start(limited(Duration::from_secs(3600), CAP)).await;
    let addr = server.addr;
    let live = ws_connect(addr, &[]).await.expect("a reader");
    let (mut seen, reading) = reader(live);
    reaches(&mut server, &mut seen, 1).await;

    // An attacker opens three times the cap and sends nothing.
    let mut idle = Vec::new();
    for _ in 0..3 * CAP {
        idle.push(TcpStream::connect(addr).await.expect("connect"));
    }
    // Each request is served at once, each time in place of an idle socket.
    for round in 0..5 {
        let (status, body) = get(addr, "/healthz", &[]).await;
        assert_eq!((status, body.as_str()), (200, "ok\n"), "round {round}");
        reaches(&mut server, &mut seen, 2 + round).await;
    }
    // The oldest idle sockets were closed to make room, the newest are open.
    closed_by_server(&mut idle[0], "the oldest idle socket").await;
    let newest = idle.last_mut().expect("sockets");
    assert!(!is_closed(newest).await, "the newest idle socket is kept");
    assert_eq!(get(addr, "/metrics", &[]).await.0, 200);
    drop(idle);
    drop(seen);
    server.feed.host(2, "remote1", 2, false, 99);
    server.publish().await;
    timeout(PATIENCE, reading)
        .await
        .expect("the reader ends")
        .expect("the reader never lost its socket");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_clients_get_three_quarters_of_the_cap_and_healthz_the_rest() {
    const CAP: usize = 8;
    let server = Server::start(limited(Duration::from_secs(3600), CAP)).await;
    let addr = server.addr;
    let mut clients = Vec::new();
    for _ in 0..CAP - CAP / 4 {
        let mut ws = ws_connect(addr, &[]).await.expect("within the share");
        assert_eq!(next_json(&mut ws).await["type"], "snapshot");
        clients.push(ws);
    }
    assert_eq!(ws_refusal(addr, &[]).await, 503);
    assert_eq!(get(addr, "/healthz", &[]).await.0, 200);
    // Once one left (its socket closed by the server), another is served.
    let mut gone = clients.pop().expect("a client");
    gone.close(None).await.expect("a close");
    while let Ok(Some(Ok(_))) = timeout(PATIENCE, gone.next()).await {}
    let mut ws = ws_connect(addr, &[])
        .await
        .expect("the place of the one gone");
    assert_eq!(next_json(&mut ws).await["type"], "snapshot");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_goes_out_in_fragments_that_a_client_joins() {
    let mut server = Server::start(ServeOptions::default()).await;
    // A snapshot of about 60 KB: many hosts with long names.
    for id in 10..400 {
        let name = format!("builder-{id:04}.a-long-domain-name.example.org");
        server.feed.host(id, &name, 8, false, id);
    }
    let addr = server.addr;
    let mut raw = TcpStream::connect(addr).await.expect("connect");
    raw.write_all(
        format!(
            "GET /ws HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .expect("send");
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        timeout(PATIENCE, raw.read_exact(&mut byte))
            .await
            .expect("the handshake in time")
            .expect("the handshake");
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    // The first frame: a text frame, not final, no longer than a fragment.
    let mut frame = [0u8; 4];
    raw.read_exact(&mut frame).await.expect("a frame header");
    assert_eq!(frame[0], 0x01, "text, FIN unset: {frame:?}");
    let len = match frame[1] {
        126 => usize::from(u16::from_be_bytes([frame[2], frame[3]])),
        127 => panic!("a 64-bit length: not a fragment"),
        n => usize::from(n),
    };
    assert!(len <= icewatch::publisher::socket::FRAGMENT, "{len}");

    // A client joins them into the whole snapshot.
    let mut ws = ws_connect(addr, &[]).await.expect("connect");
    let snapshot = next_json(&mut ws).await;
    assert_eq!(snapshot["hosts"].as_array().map(Vec::len), Some(393));
    server.stop().await;
}
