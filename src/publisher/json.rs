//! Pure functions from [`State`] to the JSON texts the server sends:
//! WebSocket messages (`docs/websocket.md`) and the `/api/v1` answers
//! (`docs/http.md`). No I/O and no clock: the same state gives the same text,
//! which the snapshot tests pin.

use super::delta::{Delta, Update};
use super::websocket::{Render, Rendered};
use crate::monitor::{JobRef, JobState, State};
use serde::Serialize;

/// A WebSocket message: `{"type": kind, "seq": seq, ...body}`.
#[derive(Serialize)]
struct Envelope<'a, T> {
    #[serde(rename = "type")]
    kind: &'a str,
    seq: u64,
    #[serde(flatten)]
    body: T,
}

/// Serialises `value`; our views only hold strings, numbers and lists, so
/// this cannot fail, but an error still becomes JSON rather than a panic.
fn to_json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|e| {
        serde_json::json!({ "type": "error", "error": e.to_string() }).to_string()
    })
}

/// The whole state as a `snapshot` message whose last diff was `seq`.
pub fn snapshot_message(state: &State, seq: u64) -> String {
    to_json(&Envelope {
        kind: "snapshot",
        seq,
        body: state.snapshot(),
    })
}

/// What changed in `state` since `delta` last looked, as a `diff` message
/// with sequence number `seq` (remembered in `delta` as sent).
pub fn diff_message(state: &mut State, delta: &mut Delta, seq: u64) -> Rendered {
    match delta.update(state) {
        Update::Nothing => Rendered::Nothing,
        Update::Snapshot => Rendered::Snapshot,
        Update::Diff(diff) => Rendered::Diff(to_json(&Envelope {
            kind: "diff",
            seq,
            body: diff,
        })),
    }
}

impl Render for State {
    type Reader = Delta;

    fn follow(&mut self) -> Delta {
        Delta::follow(self)
    }

    fn unfollow(&mut self, reader: Delta) {
        reader.unfollow(self);
    }

    fn snapshot_message(&self, seq: u64) -> String {
        snapshot_message(self, seq)
    }

    fn diff_message(&mut self, reader: &mut Delta, seq: u64) -> Rendered {
        diff_message(self, reader, seq)
    }

    fn revision(&self) -> Option<u64> {
        Some(State::revision(self))
    }
}

/// `GET /api/v1/hosts`: every host (online or just gone), by id.
pub fn hosts(state: &State) -> String {
    to_json(&state.snapshot().hosts)
}

/// Which jobs `GET /api/v1/jobs` lists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobQuery {
    /// Only jobs in one of these states (all if `None`).
    pub states: Option<Vec<JobState>>,
    /// Only jobs this host submitted or compiles (an id or a name).
    pub host: Option<String>,
    /// At most this many, newest first.
    pub limit: usize,
}

/// How many jobs `GET /api/v1/jobs` lists when no limit is given.
pub const DEFAULT_JOB_LIMIT: usize = 1000;

/// Every job state, by its JSON name.
const STATES: [JobState; 7] = [
    JobState::Waiting,
    JobState::Compiling,
    JobState::Local,
    JobState::Finished,
    JobState::Failed,
    JobState::CutShort,
    JobState::LocalFinished,
];

/// A query of `GET /api/v1/jobs` that cannot be answered.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// `state` names no job state.
    #[error("unknown job state {0:?}: use waiting, compiling, local, finished, failed, cut_short, local_finished, active or history")]
    State(String),
    /// `limit` is not a number.
    #[error("limit {0:?} is not a number")]
    Limit(String),
}

impl JobQuery {
    /// Reads the `state`, `host` and `limit` query parameters. `state` is a
    /// comma-separated list of job states, `active` (waiting, compiling,
    /// local) or `history` (finished, failed, cut_short, local_finished).
    pub fn parse(
        state: Option<&str>,
        host: Option<&str>,
        limit: Option<&str>,
    ) -> Result<JobQuery, QueryError> {
        let states = match state.filter(|s| !s.is_empty()) {
            None => None,
            Some(list) => {
                let mut states = Vec::new();
                for name in list.split(',').map(str::trim) {
                    match name {
                        "active" => states.extend(STATES.iter().filter(|s| s.is_active())),
                        "history" => states.extend(STATES.iter().filter(|s| !s.is_active())),
                        _ => match STATES.iter().find(|s| s.name() == name) {
                            Some(s) => states.push(*s),
                            None => return Err(QueryError::State(name.to_owned())),
                        },
                    }
                }
                Some(states)
            }
        };
        let limit = match limit.filter(|s| !s.is_empty()) {
            None => DEFAULT_JOB_LIMIT,
            Some(n) => n.parse().map_err(|_| QueryError::Limit(n.to_owned()))?,
        };
        Ok(JobQuery {
            states,
            host: host.filter(|h| !h.is_empty()).map(str::to_owned),
            limit,
        })
    }
}

/// `GET /api/v1/jobs`: active jobs (newest first), then finished ones
/// (newest first), filtered by `query`. A host is matched by name in every
/// scheduler session, or by id in the current one.
pub fn jobs(state: &State, query: &JobQuery) -> String {
    let session = state.session();
    let by_host = |job: &JobRef<'_>, host: &str| match host.parse::<u32>() {
        Ok(id) => job.session() == session && (job.client == Some(id) || job.server == Some(id)),
        Err(_) => job.client_name() == Some(host) || job.server_name() == Some(host),
    };
    let wanted = |job: &JobRef<'_>| {
        query
            .states
            .as_ref()
            .map_or(true, |s| s.contains(&job.state))
            && query
                .host
                .as_deref()
                .map_or(true, |host| by_host(job, host))
    };
    let mut active: Vec<JobRef<'_>> = state.jobs().filter(wanted).collect();
    active.sort_unstable_by_key(|j| std::cmp::Reverse((j.start_ms, j.id)));
    let list: Vec<JobRef<'_>> = active
        .into_iter()
        .chain(state.history().rev().filter(wanted))
        .take(query.limit)
        .collect();
    to_json(&list)
}
