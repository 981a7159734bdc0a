//! What the integration tests share, one file per kind of helper. A test
//! says `mod support;` and imports from the file it needs:
//!
//! - [`captures`]: the real captures in `tests/data/` (paths, frames) and
//!   the exact final state they describe;
//! - [`scheduler`]: [`FakeScheduler`](scheduler::FakeScheduler), a
//!   scripted icecream scheduler over real TCP on 127.0.0.1, and the
//!   scripts' frames;
//! - [`monitor`]: [`Monitor`](monitor::Monitor), the library's monitor
//!   (`connection::run` and a `State`) against a fake scheduler, and
//!   waiting on a state's changes;
//! - [`client`]: [`SchedulerClient`](client::SchedulerClient), a blocking
//!   client that logs in to a scheduler (the `icewatch` stand-ins) and
//!   reads its frames;
//! - [`command`]: the `icewatch` binary run as a process
//!   ([`Running`](command::Running)), read line by line, in a state
//!   folder of its own (`XDG_STATE_HOME`), and its page's URL and plain
//!   HTTP requests to it;
//! - [`databases`]: a fresh history database per test, SQLite's or
//!   PostgreSQL's ([`TestDb`](databases::TestDb)), and a test as a trial
//!   for each backend;
//! - [`feed`]: [`Feed`](feed::Feed), real scheduler messages applied to a
//!   `State` at scripted times, for the publisher tests;
//! - [`http`]: one plain HTTP/1.1 request to a test server;
//! - [`server`]: [`Server`](server::Server), the page server on
//!   127.0.0.1 port 0 fed a small cluster, for the publisher tests;
//! - [`leaks`]: what a test process holds (descriptors, sockets, tasks),
//!   counted before and after;
//! - [`tmux`]: [`Tmux`](tmux::Tmux), a command (`icewatch top`) in a real
//!   terminal of a given size, driven with keys and read screen by screen.
//!
//! Messages are built by the library (`Message::mon_stats`,
//! `Message::mon_job_begin`, `HostStats::to_text`, `Frame::encode`, …), not
//! here. Every wait is bounded, never a sleep.
#![allow(dead_code)]

pub mod captures;
pub mod client;
pub mod command;
pub mod databases;
pub mod feed;
pub mod http;
pub mod leaks;
pub mod monitor;
pub mod scheduler;
pub mod server;
pub mod tmux;
