//! Publishers: what people look at, made from the monitor's state.
//!
//! - [`server`]: axum routes: the page `GET /` (with d3 embedded in the
//!   binary), `GET /ws`, `GET /api/v1/{snapshot,hosts,jobs}`, `GET /metrics`,
//!   `GET /healthz`; the token, the `Host` check and the WebSocket origin
//!   check (`docs/http.md`).
//! - [`host`]: which host names requests may name (DNS rebinding).
//! - [`control`]: the scheduler's text port: blocked hosts, environments
//!   being installed, a daemon's `internals`, and with `--admin` the
//!   page's block, unblock and remove (`docs/admin.md`).
//! - [`connections`]: accepting connections: the header timeout, the
//!   connection cap below the descriptor limit, eviction of idle ones.
//! - [`socket`]: the WebSocket handshake and a socket that costs little
//!   per client.
//! - [`websocket`]: the fan-out. One task coalesces the reading task's
//!   change signals, renders each diff once and broadcasts the same text to
//!   every client; clients that fall behind get a fresh snapshot
//!   (`docs/websocket.md`).
//! - [`delta`]: the hub's reader of the state's feed, and its memory of
//!   what the page was sent, so that diffs carry changed fields only.
//! - [`builds`]: builds and the hosts that hurt them (`/api/v1/builds`,
//!   `/api/v1/insights/hosts`, metrics), from [`crate::insights`].
//! - [`json`]: pure functions from state to JSON text.
//! - [`metrics`]: the Prometheus exposition, read from the state at scrape.
//!
//! ```no_run
//! use icewatch::monitor::{SharedState, State, StateOptions};
//! use icewatch::publisher::{serve, ServeOptions};
//! use std::sync::{Arc, Mutex};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let state: SharedState = Arc::new(Mutex::new(State::new(StateOptions::default())));
//! let changed = icewatch::monitor::changed();
//! // ... spawn icewatch::monitor::run(opts, state.clone(), changed.clone(), shutdown) ...
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! serve(listener, state, changed, ServeOptions::default(), std::future::pending()).await?;
//! # Ok(())
//! # }
//! ```

#[cfg(feature = "history")]
pub mod builds;
pub mod connections;
pub mod control;
pub mod delta;
pub mod host;
pub mod json;
pub mod metrics;
pub mod server;
pub mod socket;
pub mod websocket;

pub use connections::{raise_fd_limit, ConnectionLimits};
pub use control::{Control, ControlOptions};
pub use server::{router, Access};
pub use websocket::{serve_client, Annex, Hub, HubOptions, Render};

use crate::monitor::{Changed, SharedState};
use host::AllowedHosts;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// How the page and APIs are served.
#[derive(Clone, Debug, Default)]
pub struct ServeOptions {
    /// Required on every route but `/healthz` when set.
    pub token: Option<String>,
    /// Without a token, host names requests may name besides loopback
    /// ones and the listen address (`--allowed-host`).
    pub allowed_hosts: Vec<String>,
    /// Fan-out tuning: coalescing period (`--coalesce-ms`), client queue.
    pub hub: HubOptions,
    /// Header timeout and connection cap.
    pub limits: ConnectionLimits,
    /// The history database `/api/v1/history/*` reads, if one is kept.
    #[cfg(feature = "history")]
    pub history: Option<std::path::PathBuf>,
    /// A pause this long without a job of a submitter ends its build
    /// (`--build-gap`; default [`DEFAULT_BUILD_GAP`](crate::insights::DEFAULT_BUILD_GAP)).
    #[cfg(feature = "history")]
    pub build_gap: Option<Duration>,
    /// The scheduler's text port: read it (and act with `admin`), or not.
    pub control: Option<ControlOptions>,
    /// Called once WebSocket clients have left and the number of clients
    /// has settled, to hand memory the allocator keeps back to the system
    /// ([`Hub::release_after_departures`]).
    pub release_memory: Option<fn()>,
}

impl ServeOptions {
    /// Options with this coalescing period.
    pub fn coalesce(mut self, period: Duration) -> Self {
        self.hub.coalesce = period;
        self
    }

    /// Options with this token.
    pub fn token(mut self, token: Option<String>) -> Self {
        self.token = token;
        self
    }

    /// Options that call `release` after clients have left.
    pub fn release_memory(mut self, release: fn()) -> Self {
        self.release_memory = Some(release);
        self
    }

    /// Options with these allowed hosts.
    pub fn allowed_hosts(mut self, hosts: Vec<String>) -> Self {
        self.allowed_hosts = hosts;
        self
    }
}

/// WebSocket clients served at once under a cap of `connections`: three
/// quarters, so that plain requests (`/healthz`, the page) always find a
/// slot.
pub fn max_websockets(connections: usize) -> usize {
    (connections - connections / 4).max(1)
}

/// Why [`serve`] stopped other than by its shutdown.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The listener is not bound to an address.
    #[error("serving HTTP: the listener has no address: {0}")]
    Address(#[source] std::io::Error),
    /// The task that publishes the changes panicked.
    #[error("the publishing task failed: {0}")]
    Publishing(#[source] tokio::task::JoinError),
}

/// Serves the page, the WebSocket and the APIs on `listener` until
/// `shutdown` resolves, publishing `state` each time the reading task
/// tells it by `changed` (other readers may wait on it too, and follow the
/// state's [feed](crate::monitor::feed) at their own pace).
pub async fn serve(
    listener: TcpListener,
    state: SharedState,
    changed: Changed,
    opts: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let address = listener.local_addr().map_err(ServeError::Address)?;
    let cap = opts.limits.cap();
    let control = opts
        .control
        .map(|c| Arc::new(Control::start(state.clone(), c)));
    let mut hub_opts = opts.hub;
    hub_opts.text_port = control.is_some();
    hub_opts.admin = control.as_ref().is_some_and(|c| c.admin());
    #[cfg(feature = "history")]
    let insights = {
        let gap = opts.build_gap.unwrap_or(crate::insights::DEFAULT_BUILD_GAP);
        let live = Arc::new(crate::insights::Live::new(gap));
        live.start(state.clone(), &changed);
        live
    };
    let hub = Hub::new(state, hub_opts);
    let access = Access {
        token: opts.token,
        hosts: AllowedHosts::new(Some(address.ip()), &opts.allowed_hosts),
        max_websockets: max_websockets(cap),
        #[cfg(feature = "history")]
        history: opts.history,
        #[cfg(feature = "history")]
        insights: Some(insights),
        control,
    };
    let app = router(hub.clone(), access);
    let publishing = tokio::spawn(hub.clone().run(changed.subscribe()));
    if let Some(release) = opts.release_memory {
        tokio::spawn(hub.clone().release_after_departures(release));
    }
    let closing = hub.clone();
    connections::serve_connections(listener, app, cap, opts.limits.header_timeout, async move {
        shutdown.await;
        closing.close();
    })
    .await;
    hub.close();
    publishing.await.map_err(ServeError::Publishing)
}
