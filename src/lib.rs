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
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod monitor;
pub mod protocol;
pub mod publisher;
