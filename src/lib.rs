//! icewatch: a live monitor for icecream (icecc) distributed build clusters.
//!
//! # Layout
//!
//! ```text
//! scheduler ──TCP──▶ connection ──frames──▶ protocol::Message::decode ──▶ monitor::State::apply
//!                                                                              │ change set
//!                              publisher: coalesce ─▶ JSON once ─▶ WebSocket, /api, /metrics
//! ```
//!
//! - [`protocol`]: the icecream wire codec (versions 21 to 44), zero-copy,
//!   usable on its own by other tools.
//! - [`monitor`]: the scheduler connection (handshake, MON_LOGIN, reconnect
//!   with backoff, discovery) and the live cluster [`monitor::State`] it
//!   feeds: hosts, jobs, links, totals, change sets, snapshot and diff JSON.
//! - [`publisher`]: what people look at: the page `web/visage.html` (d3
//!   embedded at build time), WebSocket JSON diffs coalesced and rendered
//!   once for every client, `/api/v1`, Prometheus `/metrics`.
//!
//! Beside the flow, for the `icewatch` command and other tools:
//!
//! - [`capture`]: what a scheduler sent, kept: recordings (lz4,
//!   timestamped frames, session marks) and raw captures, and any message
//!   as a JSON line (`icewatch dump`).
//! - [`history`]: the cluster's past in a database (SQLite) that
//!   survives restarts: a reader of the state's changes of its own, a
//!   writer thread, queries (`docs/history.md`).
//! - [`standin`]: stand-ins for a scheduler: a seeded simulation of a busy
//!   cluster, the scheduler's side of a monitor session, and recordings
//!   played back, into a state or to any monitor over real TCP; and the
//!   other side, simulated daemons that load a real scheduler
//!   (`standin::loadgen`, `icewatch loadgen`).
//! - [`insights`]: what the jobs say: builds (a submitter's jobs until a
//!   pause), why a build did not distribute, hosts that hurt builds
//!   (`docs/insights.md`); from the live state (a reader of its own) or
//!   the history.
//! - [`terminal`]: the cluster in a terminal (`icewatch top`), a reader of
//!   the state in this process or of another icewatch's WebSocket.
//!
//! The `icewatch` command itself (`src/bin/icewatch/`: its clap definitions
//! in `cli.rs`, what each subcommand does in `commands/`) is a user of this
//! library like any other.
//!
//! # Features
//!
//! All on by default. A tool that wants only the codec and the monitor
//! (`protocol`, `monitor`) builds with `default-features = false` and
//! compiles none of these:
//!
//! - `server`: [`publisher`] (axum, hyper, tokio-tungstenite,
//!   prometheus-client);
//! - `capture`: [`capture`] and [`standin`] (lz4_flex);
//! - `history`: [`history`] (rusqlite with SQLite bundled, dirs);
//! - `terminal`: [`terminal`] (ratatui, crossterm);
//! - `loadgen`: `standin::loadgen` (cpu-time);
//! - `cli`: the `icewatch` command (clap, tracing-subscriber).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(feature = "capture")]
pub mod capture;
#[cfg(feature = "history")]
pub mod history;
#[cfg(any(feature = "server", feature = "history"))]
pub mod insights;
pub mod monitor;
pub mod protocol;
#[cfg(feature = "server")]
pub mod publisher;
#[cfg(feature = "capture")]
pub mod standin;
#[cfg(feature = "terminal")]
pub mod terminal;
