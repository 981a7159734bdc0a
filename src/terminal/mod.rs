//! The cluster in a terminal (`icewatch top`): icecream-sundae's host
//! table and keys, and what sundae does not show: the job list with the
//! reason each failed job failed, busy-slot sparklines of the cluster and
//! of each host, a host pane (what the page's host panel shows), a filter
//! by host or file, help, and the scheduler's state in a status line.
//!
//! ```text
//! State ──source::from_state──┐   (in this process: a reader of the change feed)
//!                              ├──▶ WebSocket messages ──▶ Model ──draw(Model, View)──▶ terminal
//! icewatch /ws ──from_server──┘   (another icewatch, over the network)      ▲
//!                                                                 keys ──▶ View
//! ```
//!
//! - [`model`]: the [`Model`], merged from the snapshot and diff messages
//!   of `docs/websocket.md` as the page merges them, so both sources show
//!   the same screen; the sparkline samples.
//! - [`view`]: what the person chose to see, and the table of keys.
//! - [`draw`](mod@draw): the screen, a pure function of both and the time,
//!   snapshot-tested on ratatui's `TestBackend`.
//! - [`source`]: where the messages come from.
//! - [`control`]: the scheduler's text port for the host pane, through
//!   the page's own `Control`, here or in the icewatch read.
//! - [`app`]: the terminal, the loop and its pace.

pub mod app;
pub mod control;
pub mod draw;
pub mod model;
pub mod source;
pub mod view;

pub use draw::{draw, host_rows, Screen};
pub use model::{Asked, Model, Received};
pub use source::Feed;
pub use view::View;
