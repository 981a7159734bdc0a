//! Pure functions from [`State`] to the JSON texts the server sends:
//! WebSocket messages (`docs/websocket.md`) and the `/api/v1` answers
//! (`docs/http.md`). No I/O and no clock: the same state gives the same text,
//! which the snapshot tests pin.

use super::websocket::Render;
use crate::monitor::{ChangeSet, JobRef, JobState, State};
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

/// `changes` (taken from `state` under the same lock) as a `diff` message,
/// or `None` if they leave nothing to send.
pub fn diff_message(state: &State, changes: &ChangeSet, seq: u64) -> Option<String> {
    let diff = state.diff(changes);
    if diff.is_empty() {
        return None;
    }
    Some(to_json(&Envelope {
        kind: "diff",
        seq,
        body: diff,
    }))
}

impl Render for State {
    fn snapshot_message(&self, seq: u64) -> String {
        snapshot_message(self, seq)
    }

    fn diff_message(&mut self, seq: u64) -> Option<String> {
        let changes = self.take_changes();
        if changes.is_empty() {
            return None;
        }
        let text = diff_message(self, &changes, seq);
        self.mark_published(&changes);
        text
    }

    fn discard_changes(&mut self) {
        State::discard_changes(self);
    }

    fn listen(&mut self) {
        self.take_changes();
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

impl JobQuery {
    /// Reads the `state`, `host` and `limit` query parameters. `state` is a
    /// comma-separated list of job states, `active` (waiting, compiling,
    /// local) or `history` (finished, failed, cut_short, local_finished).
    pub fn parse(
        state: Option<&str>,
        host: Option<&str>,
        limit: Option<&str>,
    ) -> Result<JobQuery, String> {
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
                            None => {
                                return Err(format!(
                                    "unknown job state {name:?}: use waiting, compiling, local, \
                                     finished, failed, cut_short, local_finished, active \
                                     or history"
                                ))
                            }
                        },
                    }
                }
                Some(states)
            }
        };
        let limit = match limit.filter(|s| !s.is_empty()) {
            None => DEFAULT_JOB_LIMIT,
            Some(n) => n
                .parse()
                .map_err(|_| format!("limit {n:?} is not a number"))?,
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
