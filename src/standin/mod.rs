//! Stand-ins for an icecream scheduler, so that icewatch can show a cluster
//! without one and serve one to any monitor (icemon, icecream-sundae,
//! icewatch): `icewatch demo`, `icewatch replay`, and the same with
//! `--as-scheduler`.
//!
//! - [`simulation`]: a seeded simulation of a busy cluster's monitor stream.
//! - [`session`]: the scheduler's side of a monitor connection (handshake,
//!   login, messages at the agreed version).
//! - [`demo`]: the simulation served to monitors over real TCP.
//! - `loadgen` (feature `loadgen`): the other side, simulated daemons
//!   that load a real scheduler (`icewatch loadgen`).
//! - [`replay`]: a recording played back, into a
//!   [`State`](crate::monitor::State) on its own clock or served to
//!   monitors, at a pace [`replay::Pacer`] keeps.

pub mod demo;
#[cfg(feature = "loadgen")]
pub mod loadgen;
pub mod replay;
pub mod session;
pub mod simulation;
