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
//! Beside the flow, for the `icewatch` command:
//!
//! - [`record`]: recordings of a scheduler's stream (lz4, timestamped
//!   frames, session marks) and the raw captures of `tests/data`, written
//!   and read back; [`replay`]: one played into a [`monitor::State`] on its
//!   own clock, and the pacing of replays.
//! - [`ndjson`]: any message as a JSON object (`icewatch dump`).
//! - [`demo`]: a seeded simulation of a busy cluster's monitor stream, and
//!   [`scheduler`]: the scheduler's side of the wire, which serves that
//!   simulation or a recording to any monitor over real TCP.
//! - [`cli`] (clap definitions) and [`commands`] (what each subcommand
//!   does); `src/main.rs` only parses and calls [`commands::run`];
//!   [`shutdown`] carries Ctrl-C to every task.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod cli;
pub mod commands;
pub mod demo;
pub mod monitor;
pub mod ndjson;
pub mod protocol;
pub mod publisher;
pub mod record;
pub mod replay;
pub mod scheduler;
pub mod shutdown;
