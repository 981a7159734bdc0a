//! What a scheduler sent, kept and shown outside icewatch:
//!
//! - [`recording`]: recordings of a scheduler's stream (lz4, timestamped
//!   frames, session marks) and the raw captures of `tests/data`, written
//!   and read back (`icewatch record`, `replay`, `dump --capture`).
//! - [`ndjson`]: any message as a JSON object a line (`icewatch dump`).

pub mod ndjson;
pub mod recording;
