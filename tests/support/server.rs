//! [`Server`]: icewatch's page server (`publisher::serve`) on 127.0.0.1
//! port 0, fed a small cluster by a [`Feed`].

use super::feed::Feed;
use icewatch::monitor::Changed;
use icewatch::publisher::{serve, ServeError, ServeOptions};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::timeout;

/// A running server and what feeds it; dropped, it stops.
pub struct Server {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The state it serves.
    pub feed: Feed,
    /// Tells it the state changed.
    pub changed: Changed,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), ServeError>>,
}

impl Server {
    /// Serves a small cluster with `opts`.
    pub async fn start(opts: ServeOptions) -> Server {
        let mut feed = Feed::new();
        feed.small_cluster();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let changed = icewatch::monitor::changed();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(
            listener,
            feed.state.clone(),
            changed.clone(),
            opts,
            async move {
                let _ = stopped.await;
            },
        ));
        Server {
            addr,
            feed,
            changed,
            stop: Some(stop),
            task,
        }
    }

    /// Stops it and waits until it has stopped cleanly (a bound on a
    /// hang, never a threshold on speed).
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        timeout(Duration::from_secs(60), self.task)
            .await
            .expect("the server stops in time")
            .expect("no panic")
            .expect("served cleanly");
    }
}
