//! The page-serving commands end to end: `demo`, `monitor` (against the demo
//! running as a scheduler) and `replay`, read through the HTTP API and the
//! WebSocket exactly as the page reads them. Waits are on messages, never
//! on time.

mod support;

use futures_util::StreamExt;
use serde_json::Value;
use std::net::TcpStream;
use support::captures::capture;
use support::command::{get, icewatch, page_url, split_url, state_home, Running, PATIENCE};
use tokio_tungstenite::tungstenite::Message as WsMessage;

/// Follows `/ws` (snapshot, then diffs) until `done` says the state it
/// describes is reached; at most `limit` messages.
async fn watch_until(
    host: &str,
    token: Option<&str>,
    limit: usize,
    mut done: impl FnMut(&Value) -> bool,
) {
    let url = match token {
        Some(t) => format!("ws://{host}/ws?token={t}"),
        None => format!("ws://{host}/ws"),
    };
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("the WebSocket opens");
    for _ in 0..limit {
        let msg = tokio::time::timeout(PATIENCE, ws.next())
            .await
            .expect("a message in time")
            .expect("the stream goes on")
            .expect("a good message");
        if let WsMessage::Text(text) = msg {
            let v: Value = serde_json::from_str(&text).unwrap();
            if done(&v) {
                return;
            }
        }
    }
    panic!("the state was not reached within {limit} messages");
}

/// Tracks the hosts a snapshot-then-diffs stream describes.
#[derive(Default)]
struct Hosts(std::collections::BTreeMap<u64, bool>);

impl Hosts {
    fn apply(&mut self, msg: &Value) {
        if msg["type"] == "snapshot" {
            self.0.clear();
        }
        // A host already known may come without `online` (unchanged).
        for h in msg["hosts"].as_array().into_iter().flatten() {
            let online = self.0.entry(h["id"].as_u64().unwrap()).or_default();
            if let Some(now) = h["online"].as_bool() {
                *online = now;
            }
        }
        for id in msg["hosts_removed"].as_array().into_iter().flatten() {
            self.0.remove(&id.as_u64().unwrap());
        }
    }

    fn online(&self) -> usize {
        self.0.values().filter(|o| **o).count()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn demo_prints_its_url_at_once_and_serves_the_live_page() {
    let mut demo = Running::start(&["demo", "--listen", "127.0.0.1:0", "--seed", "1"]);
    let url = page_url(&demo);
    let (host, token) = split_url(&url);
    assert!(host.starts_with("127.0.0.1:"));
    assert_eq!(token, None);
    let (status, body) = get(&host, "/");
    assert_eq!(status, 200);
    assert!(body.contains("<html") || body.contains("<!DOCTYPE") || body.contains("<!doctype"));
    assert_eq!(get(&host, "/healthz").0, 200);

    let mut hosts = Hosts::default();
    let mut jobs_seen = false;
    watch_until(&host, None, 10_000, |msg| {
        hosts.apply(msg);
        jobs_seen |= msg["jobs"].as_array().is_some_and(|j| !j.is_empty());
        hosts.online() == 12 && jobs_seen
    })
    .await;

    let (status, body) = get(&host, "/api/v1/snapshot");
    assert_eq!(status, 200);
    let snapshot: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(snapshot["scheduler"]["online"], true);
    demo.signal("INT");
    assert!(demo.wait().success());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_guards_every_route_but_healthz_and_rides_in_the_url() {
    let demo = Running::start(&[
        "demo",
        "--listen",
        "127.0.0.1:0",
        "--seed",
        "2",
        "--token",
        "s3cret/+",
    ]);
    let url = page_url(&demo);
    let (host, token) = split_url(&url);
    assert_eq!(token.as_deref(), Some("s3cret%2F%2B"));
    assert_eq!(get(&host, "/healthz").0, 200);
    assert_eq!(get(&host, "/api/v1/snapshot").0, 401);
    assert_eq!(get(&host, "/").0, 401);
    let (status, _) = get(&host, &format!("/api/v1/snapshot?token={}", token.unwrap()));
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn monitor_connects_to_a_scheduler_and_serves_its_cluster() {
    let scheduler = Running::demo_scheduler(&["--seed", "3", "--hosts", "7"]);
    let addr = scheduler.scheduler_addr();
    let mut monitor = Running::start(&["monitor", &addr.to_string(), "--listen", "127.0.0.1:0"]);
    let (host, _) = split_url(&page_url(&monitor));
    let mut hosts = Hosts::default();
    watch_until(&host, None, 10_000, |msg| {
        hosts.apply(msg);
        hosts.online() == 7
    })
    .await;
    let (_, body) = get(&host, "/api/v1/snapshot");
    let snapshot: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(snapshot["scheduler"]["protocol"], 44);
    monitor.signal("INT");
    assert!(monitor.wait().success());
}

#[test]
fn monitor_with_no_scheduler_there_says_so_in_one_line_and_exits() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let mut monitor = Running::start(&["monitor", &addr.to_string(), "--listen", "127.0.0.1:0"]);
    let status = monitor.wait();
    assert_eq!(status.code(), Some(1));
    let stderr = monitor.rest_of_stderr();
    let last = stderr.last().unwrap();
    assert!(
        last.starts_with("error: cannot connect to scheduler"),
        "{last}"
    );
    assert!(
        last.contains("is the icecream scheduler running there"),
        "{last}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn replay_serves_the_page_of_a_capture_up_to_its_final_state() {
    let path = capture(43);
    let replay = Running::start(&[
        "replay",
        path.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--speed",
        "0",
    ]);
    let (host, _) = split_url(&page_url(&replay));
    // The capture: 42 remote jobs, one failed; two local jobs.
    watch_until(&host, None, 10_000, |msg| {
        let t = &msg["totals"];
        t["jobs_finished"] == 41 && t["jobs_failed"] == 1 && t["local_jobs_finished"] == 2
    })
    .await;
}

/// `icewatch demo ARGS` with `ICEWATCH_TOKEN` set to `env` if given: it
/// must refuse to start, in one line naming the flag and the variable.
fn refuses_the_token(args: &[&str], env: Option<&str>) {
    let mut command = icewatch();
    command.args(["demo", "--seed", "5"]).args(args);
    if let Some(value) = env {
        command.env("ICEWATCH_TOKEN", value);
    }
    let mut demo = Running::spawn(command);
    assert_eq!(demo.wait().code(), Some(1), "{args:?} {env:?}");
    let stderr = demo.rest_of_stderr();
    let last = stderr.last().expect("an error line");
    assert!(last.starts_with("error: the token is empty"), "{last}");
    assert!(
        last.contains("--token") && last.contains("ICEWATCH_TOKEN"),
        "{last}"
    );
    assert!(
        !stderr.iter().any(|l| l.contains("warning")),
        "refused before listening: {stderr:?}"
    );
}

#[test]
fn an_empty_or_blank_token_is_refused_at_start() {
    refuses_the_token(&["--listen", "127.0.0.1:0", "--token", ""], None);
    refuses_the_token(&["--listen", "127.0.0.1:0", "--token", "  "], None);
    // What `--token "$TOKEN"` or `ICEWATCH_TOKEN=$TOKEN` give with TOKEN unset.
    refuses_the_token(&["--listen", "127.0.0.1:0"], Some(""));
    refuses_the_token(&["--listen", "0.0.0.0:0", "--token", ""], None);
}

/// The next message on a WebSocket, in time.
async fn next_message<S>(ws: &mut S) -> WsMessage
where
    S: futures_util::Stream<Item = Result<WsMessage, tokio_tungstenite::tungstenite::Error>>
        + Unpin,
{
    tokio::time::timeout(PATIENCE, ws.next())
        .await
        .expect("a message in time")
        .expect("the socket stays open")
        .expect("a good message")
}

#[tokio::test(flavor = "multi_thread")]
async fn under_a_low_descriptor_limit_idle_sockets_starve_neither_healthz_nor_a_reader() {
    // 256 descriptors: the cap is 192 connections. The attacker's 400
    // sockets are more than the process could hold at all.
    let mut command = std::process::Command::new("sh");
    command
        .args(["-c", "ulimit -n 256 && exec \"$0\" \"$@\""])
        .arg(assert_cmd::cargo::cargo_bin!("icewatch"))
        .args(["demo", "--listen", "127.0.0.1:0", "--seed", "6"])
        .env("XDG_STATE_HOME", state_home());
    let mut demo = Running::spawn(command);
    let (host, _) = split_url(&page_url(&demo));
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{host}/ws"))
        .await
        .expect("a reader connects");
    next_message(&mut ws).await;

    let idle: Vec<TcpStream> = (0..400)
        .map(|_| TcpStream::connect(&host).expect("the kernel accepts"))
        .collect();
    assert_eq!(get(&host, "/healthz"), (200, "ok\n".to_owned()));
    assert_eq!(get(&host, "/api/v1/hosts").0, 200);
    // The demo keeps changing: the reader keeps receiving diffs.
    for _ in 0..3 {
        next_message(&mut ws).await;
    }
    drop(idle);
    demo.signal("INT");
    assert!(demo.wait().success());
}
