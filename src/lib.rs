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
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod cli;
pub mod commands;
pub mod demo;
pub mod monitor;
pub mod ndjson;
pub mod protocol;
pub mod record;
pub mod scheduler;
pub mod shutdown;
