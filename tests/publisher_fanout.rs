//! The WebSocket fan-out in-process: [`Hub`] and [`serve_client`] driven
//! through channels instead of sockets, on paused tokio time, with a real
//! state fed real scheduler messages.

mod support;

use futures_util::sink;
use icewatch::publisher::websocket::ClientEnd;
use icewatch::publisher::{serve_client, Hub, HubOptions};
use serde_json::Value;
use std::time::Duration;
use support::feed::Feed;
use tokio::sync::{broadcast, mpsc};
use tokio_tungstenite::tungstenite::Message;

fn parse(text: &str) -> Value {
    serde_json::from_str(text).expect("valid JSON")
}

/// A client socket whose sending side holds at most `room` messages until
/// the test reads them, and whose receiving side never yields anything.
fn channel_client(
    room: usize,
) -> (
    impl futures_util::Sink<Message, Error = mpsc::error::SendError<Message>> + Unpin,
    mpsc::Receiver<Message>,
) {
    let (tx, rx) = mpsc::channel(room);
    let sink = Box::pin(sink::unfold(tx, |tx, msg: Message| async move {
        tx.send(msg).await?;
        Ok::<_, mpsc::error::SendError<Message>>(tx)
    }));
    (sink, rx)
}

fn silent() -> futures_util::stream::Pending<Result<Message, std::io::Error>> {
    futures_util::stream::pending()
}

async fn next_json(rx: &mut mpsc::Receiver<Message>) -> Value {
    match rx.recv().await.expect("the client is still fed") {
        Message::Text(text) => parse(text.as_str()),
        other => panic!("expected a text message, got {other:?}"),
    }
}

async fn next_diff(
    rx: &mut broadcast::Receiver<tokio_tungstenite::tungstenite::Utf8Bytes>,
) -> Value {
    parse(rx.recv().await.expect("a diff").as_str())
}

#[tokio::test(start_paused = true)]
async fn changes_within_one_coalescing_period_make_one_diff() {
    let mut feed = Feed::new();
    feed.small_cluster();
    let hub = Hub::new(feed.state.clone(), HubOptions::default());
    let changed = icewatch::monitor::changed();
    let (snapshot, mut rx) = hub.subscribe();
    assert_eq!(parse(snapshot.as_str())["seq"], 0);
    tokio::spawn(hub.clone().run(changed.subscribe()));

    // The first change after a quiet spell goes out at once.
    feed.done(13, 0);
    changed.send_replace(());
    let first = next_diff(&mut rx).await;
    assert_eq!(first["seq"], 1);
    let sent_at = tokio::time::Instant::now();

    // Three more within the period: one diff, one period after the first.
    for id in [14, 15, 16] {
        feed.done(id, 0);
        changed.send_replace(());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let second = next_diff(&mut rx).await;
    assert_eq!(second["seq"], 2);
    assert_eq!(sent_at.elapsed(), Duration::from_millis(100));
    let done: Vec<u64> = second["jobs_done"]
        .as_array()
        .expect("jobs_done")
        .iter()
        .filter_map(|j| j["id"].as_u64())
        .collect();
    assert_eq!(done, [14, 15, 16]);
    assert!(rx.try_recv().is_err(), "nothing more was sent");
    assert_eq!(
        hub.stats().diffs.load(std::sync::atomic::Ordering::Relaxed),
        2
    );
}

#[tokio::test(start_paused = true)]
async fn a_new_client_gets_a_snapshot_that_pending_changes_are_flushed_into_first() {
    let mut feed = Feed::new();
    feed.small_cluster();
    let hub = Hub::new(feed.state.clone(), HubOptions::default());
    let (_, mut early) = hub.subscribe();
    feed.done(13, 0);
    // Not yet published: the new client's snapshot must not hold a change
    // that the early client will only see in a later diff, or vice versa.
    let (snapshot, mut late) = hub.subscribe();
    let snapshot = parse(snapshot.as_str());
    let diff = next_diff(&mut early).await;
    assert_eq!(diff["seq"], 1);
    assert_eq!(diff["jobs_done"][0]["id"], 13);
    assert_eq!(snapshot["seq"], 1, "the snapshot includes diff 1");
    assert!(snapshot["history"]
        .as_array()
        .expect("history")
        .iter()
        .any(|j| j["id"] == 13));
    feed.done(14, 0);
    hub.flush_now();
    assert_eq!(next_diff(&mut late).await["seq"], 2);
    assert_eq!(next_diff(&mut early).await["seq"], 2);
}

#[tokio::test(start_paused = true)]
async fn a_client_that_falls_behind_gets_a_fresh_snapshot_and_then_contiguous_diffs() {
    let mut feed = Feed::new();
    feed.small_cluster();
    let opts = HubOptions {
        queue: 2,
        ..HubOptions::default()
    };
    let hub = Hub::new(feed.state.clone(), opts);
    let (sink, mut rx) = channel_client(1);
    let client = tokio::spawn(serve_client(hub.clone(), sink, silent()));
    let first = next_json(&mut rx).await;
    assert_eq!(
        (first["type"].as_str(), first["seq"].as_u64()),
        (Some("snapshot"), Some(0))
    );

    // Ten diffs while the client reads nothing: its channel holds one, the
    // broadcast queue two, so it must lag.
    for round in 0..10 {
        feed.host(2, "remote1", 2, false, 100 + round);
        hub.flush_now();
        tokio::task::yield_now().await;
    }
    let mut seen = Vec::new();
    loop {
        let msg = next_json(&mut rx).await;
        seen.push((
            msg["type"].as_str().unwrap_or("?").to_owned(),
            msg["seq"].as_u64().unwrap_or(0),
        ));
        if msg["type"] == "snapshot" {
            assert_eq!(msg["seq"], 10, "the fresh snapshot is the latest state");
            assert_eq!(msg["hosts"][1]["load"], 109);
            break;
        }
        assert_eq!(
            msg["seq"].as_u64(),
            Some(seen.len() as u64),
            "diffs before the lag are contiguous: {seen:?}"
        );
    }
    assert!(
        seen.len() <= 3,
        "at most the diffs that fit were delivered: {seen:?}"
    );
    assert_eq!(
        hub.stats()
            .resyncs
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );

    feed.host(2, "remote1", 2, false, 500);
    hub.flush_now();
    assert_eq!(next_json(&mut rx).await["seq"], 11);
    hub.close();
    assert_eq!(client.await.expect("no panic"), ClientEnd::Shutdown);
}

#[tokio::test(start_paused = true)]
async fn a_client_whose_socket_accepts_nothing_is_dropped_after_the_timeout() {
    let mut feed = Feed::new();
    feed.small_cluster();
    let opts = HubOptions {
        client_timeout: Duration::from_secs(30),
        ..HubOptions::default()
    };
    let hub = Hub::new(feed.state.clone(), opts);
    let (sink, _rx) = channel_client(1);
    let client = tokio::spawn(serve_client(hub.clone(), sink, silent()));
    // The snapshot fills the channel; the next diff can never be sent.
    while hub
        .stats()
        .snapshots
        .load(std::sync::atomic::Ordering::Relaxed)
        == 0
    {
        tokio::task::yield_now().await;
    }
    feed.done(13, 0);
    hub.flush_now();
    let started = tokio::time::Instant::now();
    assert_eq!(client.await.expect("no panic"), ClientEnd::TimedOut);
    assert_eq!(started.elapsed(), Duration::from_secs(30));
    assert_eq!(
        hub.stats()
            .clients
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
}

#[tokio::test(start_paused = true)]
async fn a_client_that_closes_ends_its_session() {
    let feed = Feed::new();
    let hub = Hub::new(feed.state.clone(), HubOptions::default());
    let (sink, mut rx) = channel_client(4);
    let closing = futures_util::stream::iter([Ok::<_, std::io::Error>(Message::Close(None))]);
    let end = serve_client(hub.clone(), sink, closing).await;
    assert_eq!(end, ClientEnd::Closed);
    assert_eq!(next_json(&mut rx).await["type"], "snapshot");
}
