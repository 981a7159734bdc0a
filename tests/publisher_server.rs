//! The publisher over real sockets on 127.0.0.1 port 0: `publisher::serve`
//! with tokio-tungstenite WebSocket clients and plain HTTP/1.1 requests.
//! Checks the WebSocket contract (a snapshot, then contiguous diffs that
//! rebuild the server's state; a fresh snapshot for a client that stopped
//! reading while another keeps receiving), the token and origin checks, the
//! page with d3 inlined, the APIs and the metrics.

mod support;

use futures_util::{SinkExt, StreamExt};
use icewatch::monitor::lock_state;
use icewatch::publisher::{HubOptions, ServeOptions};
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;
use support::feed::Feed;
use support::leaks::{alive_tasks, sockets_on};
use support::server::Server;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::WebSocketStream;

type Ws = WebSocketStream<TcpStream>;

impl Server {
    /// The body of `GET path`, which must answer 200.
    async fn get_ok(&self, path: &str) -> String {
        let (status, body) = http_get(self.addr, path, &[]).await;
        assert_eq!(status, 200, "{path}: {body}");
        body
    }

    /// The JSON of `GET path`, which must answer 200.
    async fn get_json(&self, path: &str) -> Value {
        serde_json::from_str(&self.get_ok(path).await).expect("JSON")
    }

    /// Publishes pending changes and returns the snapshot the API gives.
    async fn api_snapshot(&self) -> Value {
        self.get_json("/api/v1/snapshot").await
    }
}

/// One HTTP/1.1 GET; returns the status and the body.
async fn http_get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    support::http::request(addr, "GET", path, headers).await
}

/// Opens a WebSocket on `path` with extra headers; `recv_buffer` fixes the
/// socket's receive buffer (no autotuning) to make a slow reader fill up.
async fn ws_connect(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    recv_buffer: Option<u32>,
) -> Result<Ws, tungstenite::Error> {
    let socket = TcpSocket::new_v4()?;
    if let Some(size) = recv_buffer {
        socket.set_recv_buffer_size(size)?;
    }
    let stream = socket.connect(addr).await?;
    let mut request = format!("ws://{addr}{path}").into_client_request()?;
    for (k, v) in headers {
        let name = tungstenite::http::HeaderName::from_bytes(k.as_bytes()).expect("a header name");
        request
            .headers_mut()
            .insert(name, v.parse().expect("a header value"));
    }
    let (ws, _) = tokio_tungstenite::client_async(request, stream).await?;
    Ok(ws)
}

/// The next JSON message and its size.
async fn next_message(ws: &mut Ws) -> (Value, usize) {
    loop {
        match ws
            .next()
            .await
            .expect("the server keeps the socket open")
            .expect("no error")
        {
            Message::Text(text) => return (serde_json::from_str(&text).expect("JSON"), text.len()),
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// Opens a WebSocket on `path` with extra headers (`why` says why it must
/// open) and checks that the first message is a snapshot.
async fn opens_with_a_snapshot(addr: SocketAddr, path: &str, headers: &[(&str, &str)], why: &str) {
    let mut ws = ws_connect(addr, path, headers, None).await.expect(why);
    assert_eq!(next_message(&mut ws).await.0["type"], "snapshot", "{why}");
}

/// The HTTP status with which the server refuses a WebSocket on `path`.
async fn ws_refusal(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> u16 {
    match ws_connect(addr, path, headers, None).await {
        Err(tungstenite::Error::Http(response)) => response.status().as_u16(),
        other => panic!("expected {path} to be refused, got {other:?}"),
    }
}

/// A client's picture of the server state, rebuilt from the messages.
#[derive(Debug, Default, PartialEq)]
struct Model {
    seq: u64,
    snapshots: usize,
    scheduler: Value,
    totals: Value,
    hosts: BTreeMap<u64, Value>,
    links: BTreeMap<(u64, u64), Value>,
    jobs: BTreeMap<u64, Value>,
    history: Vec<Value>,
}

fn id(v: &Value) -> u64 {
    v["id"].as_u64().expect("an id")
}

fn list(v: &Value) -> impl Iterator<Item = &Value> {
    v.as_array().into_iter().flatten()
}

impl Model {
    /// Takes a snapshot, or applies a diff that must follow the last seq.
    fn apply(&mut self, msg: &Value) {
        let seq = msg["seq"].as_u64().expect("a seq");
        match msg["type"].as_str() {
            Some("snapshot") => {
                assert!(
                    seq >= self.seq,
                    "a snapshot never goes back: {seq} after {}",
                    self.seq
                );
                *self = Model {
                    seq,
                    snapshots: self.snapshots + 1,
                    scheduler: msg["scheduler"].clone(),
                    totals: msg["totals"].clone(),
                    hosts: list(&msg["hosts"])
                        .map(|h| (id(h), merged(None, h)))
                        .collect(),
                    links: list(&msg["links"])
                        .map(|l| (link_key(l), l.clone()))
                        .collect(),
                    jobs: list(&msg["jobs"])
                        .map(|j| (id(j), merged(None, j)))
                        .collect(),
                    history: list(&msg["history"]).map(|j| merged(None, j)).collect(),
                };
            }
            Some("diff") => {
                assert_eq!(seq, self.seq + 1, "diffs are contiguous");
                self.seq = seq;
                if !msg["scheduler"].is_null() {
                    self.scheduler = msg["scheduler"].clone();
                }
                if !msg["totals"].is_null() {
                    self.totals = msg["totals"].clone();
                }
                // Hosts the client has come as their changed fields.
                for h in list(&msg["hosts"]) {
                    let host = merged(self.hosts.remove(&id(h)), h);
                    self.hosts.insert(id(h), host);
                }
                for h in list(&msg["hosts_removed"]) {
                    self.hosts.remove(&h.as_u64().expect("an id"));
                }
                for l in list(&msg["links"]) {
                    if l["active"] == 0 {
                        self.links.remove(&link_key(l));
                    } else {
                        self.links.insert(link_key(l), l.clone());
                    }
                }
                // Ends first: one id can end and start again in one diff.
                // Jobs the client has come as their changed fields.
                for j in list(&msg["jobs_done"]) {
                    let job = merged(self.jobs.remove(&id(j)), j);
                    self.history.push(job);
                }
                for j in list(&msg["jobs"]) {
                    let job = merged(self.jobs.remove(&id(j)), j);
                    self.jobs.insert(id(j), job);
                }
            }
            other => panic!("unknown message type {other:?}"),
        }
    }

    /// Asserts this model shows the same state as an API snapshot.
    fn assert_matches(&self, snapshot: &Value) {
        let mut server = Model::default();
        server.apply(snapshot);
        assert_eq!(self.seq, server.seq);
        assert_eq!(self.scheduler, server.scheduler);
        assert_eq!(self.totals, server.totals);
        assert_eq!(self.hosts, server.hosts);
        assert_eq!(self.links, server.links);
        assert_eq!(self.jobs, server.jobs);
        let tail = &self.history[self.history.len().saturating_sub(server.history.len())..];
        assert_eq!(tail, server.history.as_slice());
    }
}

/// An object the client had (if any) with the fields of `change` set;
/// null fields are left out (a diff leaves out a new job's, a snapshot
/// does not: missing means null).
fn merged(had: Option<Value>, change: &Value) -> Value {
    let mut object = had.unwrap_or_else(|| Value::Object(Default::default()));
    for (k, v) in change.as_object().expect("an object") {
        object[k] = v.clone();
    }
    object
        .as_object_mut()
        .expect("an object")
        .retain(|_, v| !v.is_null());
    object
}

fn link_key(l: &Value) -> (u64, u64) {
    (
        l["from"].as_u64().expect("from"),
        l["to"].as_u64().expect("to"),
    )
}

/// Reads messages into `model` until it reaches `seq`.
async fn read_until(ws: &mut Ws, model: &mut Model, seq: u64) {
    while model.seq < seq {
        let (msg, _) = next_message(ws).await;
        model.apply(&msg);
    }
}

/// A build on the small cluster: requests, placements, ends, local jobs,
/// load reports, a host leaving and another joining.
fn busy_build(feed: &mut Feed, first_job: u32, jobs: u32) {
    for n in 0..jobs {
        let id = first_job + n;
        let server = 2 + n % 2;
        feed.request(id, 1, &format!("src/file{n}.c"));
        feed.begin(id, server);
        if n >= 3 {
            feed.done(id - 3, u32::from(n % 17 == 0));
        }
        if n % 10 == 0 {
            feed.local_begin(first_job + jobs + n, 1, &format!("obj/local{n}.o"));
        }
        if n % 10 == 5 {
            feed.local_done(first_job + jobs + n - 5);
        }
        if n % 7 == 0 {
            feed.host(2, "remote1", 2, false, 100 + n);
        }
        if n == jobs / 2 {
            feed.host_offline(3);
            feed.host(4, "remote3", 4, false, 0);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_gets_a_snapshot_then_contiguous_diffs_that_rebuild_the_server_state() {
    let opts = ServeOptions {
        hub: HubOptions {
            coalesce: Duration::from_millis(20),
            queue: 1024,
            ..HubOptions::default()
        },
        ..ServeOptions::default()
    };
    let mut server = Server::start(opts).await;
    // Nobody listens yet: the hub drops these changes (and stops listing
    // jobs); the snapshot the client starts from holds them all the same.
    server.feed.request(1, 1, "early.c");
    server.api_snapshot().await;
    server.feed.begin(1, 2);
    server.feed.request(2, 1, "early2.c");
    let mut ws = ws_connect(server.addr, "/ws", &[], None)
        .await
        .expect("connect");
    let mut model = Model::default();
    let (first, _) = next_message(&mut ws).await;
    assert_eq!(first["type"], "snapshot");
    model.apply(&first);
    assert_eq!(model.hosts.len(), 3);
    assert!(model.jobs.contains_key(&1) && model.jobs.contains_key(&2));
    server.feed.request(3, 1, "after.c");
    server.changed.send_replace(());
    let (diff, _) = next_message(&mut ws).await;
    model.apply(&diff);
    let listed: Vec<u64> = list(&diff["jobs"]).map(id).collect();
    assert_eq!(listed, [3], "the first diff lists only what changed since");

    let reader = tokio::spawn(async move {
        let mut diffs = 0;
        loop {
            let (msg, _) = next_message(&mut ws).await;
            model.apply(&msg);
            diffs += 1;
            if model.hosts.contains_key(&99) {
                return (ws, model, diffs);
            }
        }
    });
    // Odd rounds are published at once (the API snapshot publishes what is
    // pending), even ones whenever the coalescing timer says.
    for round in 0..20 {
        busy_build(&mut server.feed, 100 + round * 100, 40);
        if round % 2 == 1 {
            server.api_snapshot().await;
        } else {
            server.changed.send_replace(());
            tokio::task::yield_now().await;
        }
    }
    // A last host marks the end; the reader stops once it sees it.
    server.feed.host(99, "last", 1, false, 0);
    server.changed.send_replace(());
    let (mut ws, mut model, diffs) = reader.await.expect("no panic");
    assert!(diffs >= 10, "changes arrived as diffs ({diffs})");
    assert_eq!(
        model.snapshots, 1,
        "a client that keeps reading never needs a resync"
    );
    let snapshot = server.api_snapshot().await;
    read_until(&mut ws, &mut model, snapshot["seq"].as_u64().expect("seq")).await;
    model.assert_matches(&snapshot);
    assert!(model.history.len() > 700, "the history grew through diffs");
    server.stop().await;
}

/// The most a stalled client can have in flight: the kernel's largest send
/// buffer (autotuning stops there), the receive buffer the client fixed
/// (the kernel doubles it), and a few messages in user space.
fn stalled_capacity(recv_buffer: u32, message: usize, queue: usize) -> usize {
    let wmem_max = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_wmem")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(2)
                .and_then(|n| n.parse::<usize>().ok())
        })
        .unwrap_or(64 << 20);
    wmem_max + 4 * recv_buffer as usize + (queue + 4) * message + (1 << 20)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_gets_a_fresh_snapshot_while_another_keeps_receiving() {
    let queue = 4;
    let opts = ServeOptions {
        hub: HubOptions {
            queue,
            client_timeout: Duration::from_secs(600),
            ..HubOptions::default()
        },
        ..ServeOptions::default()
    };
    let mut server = Server::start(opts).await;
    // Many hosts make every round's diff large.
    for id in 10..310 {
        server
            .feed
            .host(id, &format!("builder-{id:03}.example.org"), 8, false, 0);
    }
    let recv_buffer = 8 * 1024;
    let mut stalled = ws_connect(server.addr, "/ws", &[], Some(recv_buffer))
        .await
        .expect("connect");
    let mut stalled_model = Model::default();
    let (first, _) = next_message(&mut stalled).await;
    stalled_model.apply(&first);

    // The other client reads everything and reports how far it got.
    let mut live = ws_connect(server.addr, "/ws", &[], None)
        .await
        .expect("connect");
    let (progress, mut seen) = watch::channel((0u64, 0usize));
    let reader = tokio::spawn(async move {
        let mut model = Model::default();
        let mut bytes = 0;
        loop {
            let (msg, len) = next_message(&mut live).await;
            model.apply(&msg);
            bytes += len;
            if progress.send((model.seq, bytes)).is_err() {
                return model;
            }
        }
    });

    let mut round = 0u32;
    let mut needed = None;
    let mut delivered_since_stall = 0;
    while needed.map_or(true, |n| delivered_since_stall < n) {
        round += 1;
        assert!(
            round < 5000,
            "no resync after {delivered_since_stall} bytes"
        );
        // Diffs carry what changed: a new name each round keeps them large.
        let before = seen.borrow().1;
        for id in 10..310 {
            server.feed.host(
                id,
                &format!("builder-{id:03}-{round:04}.example.org"),
                8,
                false,
                round % 1000,
            );
        }
        let snapshot = server.api_snapshot().await;
        let seq = snapshot["seq"].as_u64().expect("seq");
        let (_, after) = *seen
            .wait_for(|(s, _)| *s >= seq)
            .await
            .expect("the live client keeps up");
        let diff_size = after - before;
        delivered_since_stall += diff_size;
        needed.get_or_insert_with(|| stalled_capacity(recv_buffer, diff_size, queue));
    }

    // Reading again, the stalled client first gets what its socket held,
    // then a fresh snapshot instead of what it missed, then diffs again.
    let snapshot = server.api_snapshot().await;
    let end = snapshot["seq"].as_u64().expect("seq");
    read_until(&mut stalled, &mut stalled_model, end).await;
    assert_eq!(stalled_model.snapshots, 2, "one resync");
    stalled_model.assert_matches(&snapshot);
    let metrics = http_get(server.addr, "/metrics", &[]).await.1;
    assert!(
        metrics.contains("icewatch_websocket_resyncs_total 1\n"),
        "{metrics}"
    );

    drop(seen);
    server
        .feed
        .host(10, "builder-010.example.org", 8, false, 999);
    server.changed.send_replace(());
    let live_model = reader.await.expect("no panic");
    assert_eq!(live_model.snapshots, 1, "the reading client never lagged");
    assert!(live_model.seq >= end);
    server.stop().await;
}

/// The plain HTTP routes a token guards (all but `/healthz`).
const HTTP_ROUTES: [&str; 5] = [
    "/",
    "/api/v1/snapshot",
    "/api/v1/hosts",
    "/api/v1/jobs",
    "/metrics",
];

#[tokio::test]
async fn a_token_guards_every_route_but_healthz() {
    let server = Server::start(ServeOptions::default().token(Some("s3cret".into()))).await;
    let addr = server.addr;
    // The WebSocket route answers a plain GET too: 401 before the upgrade.
    for path in HTTP_ROUTES.into_iter().chain(["/ws"]) {
        assert_eq!(
            http_get(addr, path, &[]).await.0,
            401,
            "{path} without a token"
        );
        let wrong = format!("{path}?token=guess");
        assert_eq!(
            http_get(addr, &wrong, &[]).await.0,
            401,
            "{path} with a wrong token"
        );
        assert_eq!(
            http_get(addr, path, &[("Authorization", "Bearer s3cre")])
                .await
                .0,
            401,
            "{path} with a prefix of the token"
        );
    }
    for path in HTTP_ROUTES {
        assert_eq!(
            http_get(addr, &format!("{path}?token=s3cret"), &[]).await.0,
            200,
            "{path}"
        );
        let bearer = [("Authorization", "Bearer s3cret")];
        assert_eq!(http_get(addr, path, &bearer).await.0, 200, "{path}");
    }
    assert_eq!(
        http_get(addr, "/healthz", &[]).await,
        (200, "ok\n".to_owned())
    );

    assert_eq!(ws_refusal(addr, "/ws", &[]).await, 401);
    opens_with_a_snapshot(addr, "/ws?token=s3cret", &[], "token in the query").await;
    let bearer = [("Authorization", "Bearer s3cret")];
    opens_with_a_snapshot(addr, "/ws", &bearer, "token in a header").await;
    server.stop().await;
}

#[tokio::test]
async fn the_websocket_refuses_a_page_from_another_origin() {
    let server = Server::start(ServeOptions::default()).await;
    let addr = server.addr;
    for origin in ["http://evil.example", "null", "http://127.0.0.1:1"] {
        let status = ws_refusal(addr, "/ws", &[("Origin", origin)]).await;
        assert_eq!(status, 403, "{origin}");
    }
    let own = format!("http://{addr}");
    opens_with_a_snapshot(addr, "/ws", &[("Origin", &own)], "same origin").await;
    opens_with_a_snapshot(addr, "/ws", &[], "no Origin: not a browser").await;
    server.stop().await;
}

#[tokio::test]
async fn the_page_is_served_with_d3_inlined() {
    let server = Server::start(ServeOptions::default()).await;
    let page = server.get_ok("/").await;
    assert!(page.contains("<title>icewatch</title>"));
    assert!(page.contains("https://d3js.org v7"), "d3 is inlined");
    assert!(
        !page.contains("node_modules"),
        "nothing is loaded from elsewhere"
    );
    server.stop().await;
}

#[tokio::test]
async fn the_apis_answer_json_and_refuse_bad_queries() {
    let server = Server::start(ServeOptions::default()).await;
    let addr = server.addr;
    let hosts = server.get_json("/api/v1/hosts").await;
    assert_eq!(hosts.as_array().map(Vec::len), Some(3));
    let jobs = server
        .get_json("/api/v1/jobs?state=failed&host=localice")
        .await;
    assert_eq!(jobs[0]["file"], "src/parser.c");
    assert_eq!(jobs.as_array().map(Vec::len), Some(1));
    let jobs = server.get_json("/api/v1/jobs?limit=2").await;
    assert_eq!(jobs.as_array().map(Vec::len), Some(2));
    assert_eq!(http_get(addr, "/api/v1/jobs?state=done", &[]).await.0, 400);
    assert_eq!(http_get(addr, "/api/v1/jobs?limit=-1", &[]).await.0, 400);
    let snapshot = server.api_snapshot().await;
    assert_eq!(snapshot["type"], "snapshot");
    assert_eq!(snapshot["totals"]["busy_slots"], 5);
    server.stop().await;
}

#[tokio::test]
async fn the_metrics_show_the_cluster_and_the_fan_out() {
    let server = Server::start(ServeOptions::default()).await;
    let text = server.get_ok("/metrics").await;
    let state = lock_state(&server.feed.state).totals();
    for line in [
        "icewatch_scheduler_connected 1".to_owned(),
        "icewatch_scheduler_reconnects_total 0".to_owned(),
        "icewatch_hosts_online 3".to_owned(),
        format!("icewatch_slots {}", state.total_slots),
        format!("icewatch_slots_busy {}", state.busy_slots),
        "icewatch_jobs_pending 1".to_owned(),
        "icewatch_jobs_finished_total 2".to_owned(),
        "icewatch_jobs_failed_total 1".to_owned(),
        r#"icewatch_host_load{id="1",host="localice"} 0.28"#.to_owned(),
        r#"icewatch_host_active_jobs{id="3",host="remote2"} 2"#.to_owned(),
        "icewatch_websocket_clients 0".to_owned(),
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "no line {line:?} in\n{text}"
        );
    }
    assert!(text.ends_with("# EOF\n"));
    // A reconnection to a new scheduler session starts the gauges from
    // nothing; counters only grow.
    lock_state(&server.feed.state).scheduler_connected("127.0.0.1:8765".into(), 43, 1);
    let text = server.get_ok("/metrics").await;
    for line in [
        "icewatch_scheduler_reconnects_total 1",
        "icewatch_hosts_online 0",
        "icewatch_jobs_pending 0",
        "icewatch_jobs_finished_total 2",
        "icewatch_jobs_failed_total 1",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "no line {line:?} after a reconnect in\n{text}"
        );
    }
    server.stop().await;
}

/// A gauge or counter's value in the `/metrics` text.
async fn metric(addr: SocketAddr, name: &str) -> u64 {
    let text = http_get(addr, "/metrics", &[]).await.1;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

/// Polls `/metrics` until `name` reads `want`; a bounded number of polls,
/// each after the server had a moment to run its tasks.
async fn wait_metric(addr: SocketAddr, name: &str, want: u64) {
    for _ in 0..2000 {
        if metric(addr, name).await == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(metric(addr, name).await, want, "{name}");
}

/// A client that reads everything, checking that diffs stay contiguous and
/// that it never needs a second snapshot; `progress` says how far it got.
fn live_reader(mut ws: Ws) -> (watch::Receiver<u64>, tokio::task::JoinHandle<Model>) {
    let (progress, seen) = watch::channel(0);
    let reader = tokio::spawn(async move {
        let mut model = Model::default();
        loop {
            let (msg, _) = next_message(&mut ws).await;
            model.apply(&msg);
            assert_eq!(model.snapshots, 1, "the live client never lagged");
            if progress.send(model.seq).is_err() {
                return model;
            }
        }
    });
    (seen, reader)
}

/// A server with the default options and a [`live_reader`] on `/ws`.
async fn with_live_reader() -> (Server, watch::Receiver<u64>, tokio::task::JoinHandle<Model>) {
    let server = Server::start(ServeOptions::default()).await;
    let live = ws_connect(server.addr, "/ws", &[], None)
        .await
        .expect("connect");
    let (seen, reader) = live_reader(live);
    (server, seen, reader)
}

/// One round of changes, published; waits until the live client saw it.
async fn round_reaches(server: &mut Server, seen: &mut watch::Receiver<u64>, round: u32) {
    server.feed.host(2, "remote1", 2, false, round);
    let seq = server.api_snapshot().await["seq"].as_u64().expect("seq");
    seen.wait_for(|s| *s >= seq)
        .await
        .expect("the live client keeps receiving");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_send_garbage_are_closed_or_ignored_while_another_keeps_receiving() {
    let (mut server, mut seen, reader) = with_live_reader().await;
    round_reaches(&mut server, &mut seen, 1).await;

    // Junk messages inside valid frames: read and ignored, the session
    // goes on and its diffs keep coming.
    let mut junk = ws_connect(server.addr, "/ws", &[], None)
        .await
        .expect("connect");
    let mut junk_model = Model::default();
    junk_model.apply(&next_message(&mut junk).await.0);
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    for n in 0..200u32 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let bytes: Vec<u8> = rng.to_le_bytes().repeat(1 + n as usize % 50);
        let msg = match n % 4 {
            0 => Message::binary(bytes),
            1 => Message::text(String::from_utf8_lossy(&bytes).into_owned()),
            2 => Message::text("{\"type\":\"subscribe\",\"seq\":-1}"),
            // Control frames carry at most 125 bytes.
            _ => Message::Ping(bytes[..bytes.len().min(125)].to_vec().into()),
        };
        junk.send(msg).await.expect("the server reads on");
    }
    round_reaches(&mut server, &mut seen, 2).await;
    let end = server.api_snapshot().await["seq"].as_u64().expect("seq");
    // Replies to the pings may come first; diffs stay contiguous.
    while junk_model.seq < end {
        match junk.next().await.expect("open").expect("no error") {
            Message::Text(text) => junk_model.apply(&serde_json::from_str(&text).expect("JSON")),
            Message::Pong(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(junk_model.snapshots, 1);

    // A message above the limit, bytes that are no WebSocket frame, bytes
    // that are not even HTTP: each such connection is closed by the server.
    let oversized = Message::binary(vec![0u8; 1 << 20]);
    let _ = junk.send(oversized).await;
    loop {
        match junk.next().await {
            None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
            Some(Ok(_)) => {}
        }
    }
    let mut upgraded = ws_connect(server.addr, "/ws", &[], None)
        .await
        .expect("connect");
    let raw = upgraded.get_mut();
    raw.write_all(&[0xff; 64]).await.expect("send garbage");
    let mut rest = Vec::new();
    let _ = raw.read_to_end(&mut rest).await;
    let mut not_http = TcpStream::connect(server.addr).await.expect("connect");
    not_http
        .write_all(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n")
        .await
        .expect("send garbage");
    let mut answer = Vec::new();
    let _ = not_http.read_to_end(&mut answer).await;
    assert!(
        answer.is_empty() || answer.starts_with(b"HTTP/1.1 400"),
        "{}",
        String::from_utf8_lossy(&answer)
    );

    // Only the live client is left, and it never noticed.
    wait_metric(server.addr, "icewatch_websocket_clients", 1).await;
    round_reaches(&mut server, &mut seen, 3).await;
    drop(seen);
    server.feed.host(2, "remote1", 2, false, 4);
    server.changed.send_replace(());
    let model = reader.await.expect("no panic");
    assert_eq!(model.snapshots, 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_connections_opened_and_dropped_leak_nothing_and_do_not_disturb_a_reader() {
    const CONNECTIONS: usize = 1000;
    const AT_ONCE: usize = 250;
    let (mut server, mut seen, reader) = with_live_reader().await;
    round_reaches(&mut server, &mut seen, 0).await;
    wait_metric(server.addr, "icewatch_websocket_clients", 1).await;
    let port = server.addr.port();
    let (sockets, tasks) = (sockets_on(port), alive_tasks());

    let mut round = 0;
    for batch in 0..CONNECTIONS / AT_ONCE {
        let addr = server.addr;
        let opened = futures_util::future::join_all((0..AT_ONCE).map(|_| async move {
            let mut ws = ws_connect(addr, "/ws", &[], None).await.expect("connect");
            let (first, _) = next_message(&mut ws).await;
            assert_eq!(first["type"], "snapshot");
            ws
        }))
        .await;
        wait_metric(
            server.addr,
            "icewatch_websocket_clients",
            1 + AT_ONCE as u64,
        )
        .await;
        round += 1;
        round_reaches(&mut server, &mut seen, round).await;
        // Half say goodbye, half just vanish.
        for (n, mut ws) in opened.into_iter().enumerate() {
            if (n + batch) % 2 == 0 {
                let _ = ws.close(None).await;
            }
        }
        wait_metric(server.addr, "icewatch_websocket_clients", 1).await;
        round += 1;
        round_reaches(&mut server, &mut seen, round).await;
    }

    // Every socket and every task of the dropped connections is gone.
    for _ in 0..2000 {
        if sockets_on(port) <= sockets && alive_tasks() <= tasks {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        (sockets_on(port), alive_tasks()),
        (sockets, tasks),
        "(sockets, tasks)"
    );
    assert!(sockets >= 3, "the listener and the live client's two ends");
    drop(seen);
    server.feed.host(2, "remote1", 2, false, 9999);
    server.changed.send_replace(());
    assert_eq!(reader.await.expect("no panic").snapshots, 1);
    server.stop().await;
}

#[test]
fn snapshots_taken_at_once_share_one_rendering_and_none_is_kept_after() {
    use icewatch::publisher::Hub;
    use std::sync::atomic::Ordering::Relaxed;
    let mut feed = Feed::new();
    feed.host(1, "a", 2, false, 0);
    let hub = Hub::new(feed.state.clone(), HubOptions::default());
    let renders = || hub.stats().renders.load(Relaxed);
    // Four requests in flight at once, a WebSocket client among them.
    let first = hub.snapshot();
    let second = hub.snapshot();
    let (third, _rx) = hub.subscribe();
    let fourth = hub.snapshot();
    assert_eq!(renders(), 1);
    assert_eq!(first, second);
    assert_eq!(first, fourth);
    assert_eq!(third.as_str().as_bytes(), &first[..]);
    // A change: the next one is rendered anew.
    feed.host(2, "b", 2, false, 0);
    let changed = hub.snapshot();
    assert_eq!(renders(), 2);
    assert_ne!(changed, first);
    // Nothing holds a snapshot any more: the text is gone, and the next
    // request renders again rather than finding it kept.
    drop((first, second, third, fourth, changed));
    hub.snapshot();
    assert_eq!(renders(), 3);
}
