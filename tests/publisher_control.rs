//! The page's side of the scheduler's text port over real sockets on
//! 127.0.0.1 port 0 (`docs/admin.md`): who may act (`--admin`, the token,
//! `Host`, `Origin`), the snapshot's `admin`, the answers and the counter
//! when the text port is down; `--keep-blocks`' kept list and the audit
//! in the history. Against a real scheduler, the actions
//! themselves are proven in `tests/real_cluster.rs`.

mod support;

use icewatch::history::Book;
use icewatch::publisher::keep_blocks::{BlockBook, Kept};
use icewatch::publisher::{ControlOptions, ServeOptions};
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use support::http::request;
use support::server::Server;
use tokio::net::TcpListener;

const TOKEN: &str = "s3cret";
const BEARER: (&str, &str) = ("Authorization", "Bearer s3cret");

/// A server with `control` and `token`, fed a small cluster.
async fn start(token: Option<&str>, control: Option<ControlOptions>) -> Server {
    Server::start(ServeOptions {
        control,
        ..ServeOptions::default().token(token.map(str::to_owned))
    })
    .await
}

impl Server {
    async fn post(&self, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
        request(self.addr, "POST", path, headers).await
    }

    async fn get(&self, path: &str) -> (u16, String) {
        request(self.addr, "GET", path, &[BEARER]).await
    }
}

/// A text port nobody listens on: a port just given up by the kernel.
async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    listener.local_addr().expect("address")
}

async fn admin_on(port: SocketAddr) -> ControlOptions {
    ControlOptions {
        admin: true,
        text_port: Some(port),
        ..ControlOptions::default()
    }
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

#[tokio::test]
async fn actions_are_404_without_admin_and_the_snapshot_does_not_offer_them() {
    let reads_only = ControlOptions {
        text_port: Some(closed_port().await),
        ..ControlOptions::default()
    };
    for control in [None, Some(reads_only)] {
        let server = start(Some(TOKEN), control.clone()).await;
        for action in ["block", "unblock", "remove"] {
            let path = format!("/api/v1/hosts/remote1/{action}");
            let (status, body) = server.post(&path, &[BEARER]).await;
            assert_eq!(status, 404, "{path} with {control:?}: {body}");
            assert!(body.contains("--admin"), "{body}");
        }
        let (status, body) = server.get("/api/v1/snapshot").await;
        assert_eq!(status, 200);
        let snapshot = json(&body);
        assert!(snapshot.get("admin").is_none(), "{body}");
        assert_eq!(
            snapshot.get("text_port").is_some(),
            control.is_some(),
            "{body}"
        );
        let (status, _) = server.get("/api/v1/control").await;
        assert_eq!(status, if control.is_some() { 200 } else { 404 });
    }
}

#[tokio::test]
async fn an_action_needs_the_token_a_known_host_and_the_page_s_origin() {
    let server = start(Some(TOKEN), Some(admin_on(closed_port().await).await)).await;
    let path = "/api/v1/hosts/remote1/block";
    let origin = format!("http://{}", server.addr);
    let cases: [(&[(&str, &str)], u16); 5] = [
        (&[], 401),
        (&[("Authorization", "Bearer wrong")], 401),
        (&[BEARER, ("Host", "evil.example:80")], 421),
        (&[BEARER, ("Origin", "http://evil.example")], 403),
        (&[BEARER, ("Origin", "null")], 403),
    ];
    for (headers, want) in cases {
        let (status, body) = server.post(path, headers).await;
        assert_eq!(status, want, "{headers:?}: {body}");
    }
    // With everything right, it reaches the text port, which is down.
    let (status, body) = server
        .post(path, &[BEARER, ("Origin", origin.as_str())])
        .await;
    assert_eq!(status, 502, "{body}");
    let answer = json(&body);
    assert_eq!(answer["ok"], false);
    assert!(
        answer["error"]
            .as_str()
            .is_some_and(|e| e.contains("cannot connect to the scheduler's text port")),
        "{body}"
    );
    let (status, body) = server.post("/api/v1/hosts/a%20b/block", &[BEARER]).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = server.post("/api/v1/hosts/remote1/dance", &[BEARER]).await;
    assert_eq!(status, 404, "{body}");
    let (_, metrics) = server.get("/metrics").await;
    assert!(
        metrics.contains("icewatch_admin_actions_total{action=\"block\",result=\"failed\"} 2"),
        "{metrics}"
    );
}

#[tokio::test]
async fn with_admin_the_snapshot_says_so_and_the_reads_say_why_the_port_is_silent() {
    let port = closed_port().await;
    let server = start(Some(TOKEN), Some(admin_on(port).await)).await;
    let (_, body) = server.get("/api/v1/snapshot").await;
    let snapshot = json(&body);
    assert_eq!(
        (
            snapshot["type"].as_str(),
            snapshot["admin"].as_bool(),
            snapshot["text_port"].as_bool()
        ),
        (Some("snapshot"), Some(true), Some(true)),
        "{body}"
    );
    // The first poll runs at start; wait for its outcome.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let view = loop {
        let (status, body) = server.get("/api/v1/control").await;
        assert_eq!(status, 200, "{body}");
        let view = json(&body);
        if !view["checked_ms"].is_null() {
            break view;
        }
        assert!(tokio::time::Instant::now() < deadline, "no poll: {body}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(view["admin"], true);
    assert_eq!(view["answering"], false);
    assert_eq!(view["text_port"], port.to_string());
    assert!(
        view["error"]
            .as_str()
            .is_some_and(|e| e.contains("cannot connect")),
        "{view}"
    );
    let (status, body) = server.get("/api/v1/hosts/remote1/internals").await;
    assert_eq!(status, 502, "{body}");
}

#[tokio::test]
async fn internals_are_asked_for_at_most_once_per_gap_across_hosts() {
    let control = ControlOptions {
        internals_gap: Duration::from_secs(3600),
        ..admin_on(closed_port().await).await
    };
    let server = start(Some(TOKEN), Some(control)).await;
    let (status, body) = server.get("/api/v1/hosts/remote1/internals").await;
    assert_eq!(status, 502, "the first is sent: {body}");
    let (status, body) = server.get("/api/v1/hosts/remote2/internals").await;
    assert_eq!(status, 429, "{body}");
    assert!(body.contains("asked for a moment ago"), "{body}");
}

#[tokio::test]
async fn kept_blocks_show_from_the_history_and_every_action_is_audited_in_it() {
    let dir = tempfile::tempdir().expect("a folder");
    let path = dir.path().join("history.sqlite");
    let book = Book::open(&path.clone().into(), "127.0.0.1:8765").expect("the history");
    let kept = Kept {
        name: "remote2".into(),
        since_ms: 1_765_090_000_000,
        seen_ms: 1_765_090_000_000,
    };
    book.keep(&kept).expect("keep a block");
    let control = ControlOptions {
        keep_blocks: true,
        book: Some(Arc::new(book)),
        ..admin_on(closed_port().await).await
    };
    let server = start(Some(TOKEN), Some(control)).await;
    let (_, body) = server.get("/api/v1/snapshot").await;
    assert_eq!(json(&body)["keep_blocks"], true, "{body}");
    // What is kept shows at once, though the text port does not answer.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let view = loop {
        let (_, body) = server.get("/api/v1/control").await;
        let view = json(&body);
        if view["kept"].as_array().is_some_and(|k| !k.is_empty()) {
            break view;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "nothing kept: {body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(view["keep_blocks"], true);
    assert_eq!(
        view["kept"],
        serde_json::json!([{"name": "remote2", "since_ms": 1_765_090_000_000_u64,
                            "seen_ms": 1_765_090_000_000_u64}])
    );
    // An action, here failed (the text port is down), is a row of the
    // history's audit.
    let (status, _) = server.post("/api/v1/hosts/remote1/block", &[BEARER]).await;
    assert_eq!(status, 502);
    let conn = rusqlite::Connection::open(&path).expect("open the history");
    let row: (String, String, String, String) = conn
        .query_row(
            "SELECT action, host, who, result FROM admin_actions",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .expect("one audit row");
    assert_eq!(
        (row.0.as_str(), row.1.as_str(), row.3.as_str()),
        ("block", "remote1", "failed")
    );
    assert!(row.2.starts_with("127.0.0.1:"), "{row:?}");
}
