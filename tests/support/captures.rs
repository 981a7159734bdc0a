//! The real captures of `tests/data/` (see its README): their files, their
//! frames, and the exact final state every one of them describes.

use bytes::BytesMut;
use icewatch::monitor::State;
use icewatch::protocol::frame::{Frame, MAX_MSG_SIZE};
use std::path::{Path, PathBuf};

/// The real captures: (version offered, file). See `tests/data/README.md`.
pub const CAPTURES: &[(u32, &[u8])] = &[
    (21, include_bytes!("../data/basic.v21.bin")),
    (22, include_bytes!("../data/basic.v22.bin")),
    (29, include_bytes!("../data/basic.v29.bin")),
    (34, include_bytes!("../data/basic.v34.bin")),
    (38, include_bytes!("../data/basic.v38.bin")),
    (39, include_bytes!("../data/basic.v39.bin")),
    (43, include_bytes!("../data/basic.v43.bin")),
    (44, include_bytes!("../data/basic.v44.bin")),
];

/// A capture's agreed version and its frames (everything after the handshake).
pub fn capture_frames(file: &[u8]) -> (u32, &[u8]) {
    let agreed = u32::from_le_bytes(file[4..8].try_into().unwrap());
    (agreed, &file[8..])
}

/// The frames laid end to end in `stream`, one by one.
pub fn frames_in(stream: &[u8]) -> Vec<Frame> {
    let mut buf = BytesMut::from(stream);
    let mut frames = Vec::new();
    while let Ok(frame) = Frame::split_from(&mut buf, MAX_MSG_SIZE) {
        frames.push(frame);
    }
    assert!(buf.is_empty(), "whole frames only");
    frames
}

/// The file of the capture the monitor made offering `version`.
pub fn capture(version: u32) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(format!("basic.v{version}.bin"))
}

/// Every frame of a recording or a raw capture, in order, read by the
/// library's reader.
pub fn frames_of(path: impl AsRef<Path>) -> Vec<Frame> {
    icewatch::capture::recording::open(path.as_ref())
        .unwrap()
        .filter_map(|r| r.unwrap().into_message())
        .map(|r| r.frame)
        .collect()
}

/// The exact end state of every `basic` capture (derived from the frames
/// independently of icewatch): three hosts, `remote2` gone at the end, 42
/// remote jobs all submitted by `localice` (job 21, `bad.c`, failed with
/// exit code 1), compiled 26 by `localice` itself, 8 by `remote1`, 8 by
/// `remote2`, and 2 local jobs on `localice` (22 and 44).
pub fn assert_basic_final_state(st: &State, agreed: u32) {
    assert_basic_final_state_after(st, agreed, 1);
}

/// [`assert_basic_final_state`] after the capture was played in `sessions`
/// scheduler sessions in a row: what counts over time is that many times
/// as high (hosts keep their counters by name across sessions).
pub fn assert_basic_final_state_after(st: &State, agreed: u32, sessions: u64) {
    st.check_invariants();
    let n = sessions;
    let mut hosts: Vec<_> = st.hosts().collect();
    hosts.sort_by_key(|h| h.id);
    let summary: Vec<_> = hosts
        .iter()
        .map(|h| {
            (
                (h.id, &*h.name, h.online, h.no_remote, h.max_jobs),
                (
                    h.submitted,
                    h.compiled,
                    h.compiled_own,
                    h.failed,
                    h.local_jobs,
                ),
                (h.active, h.pending),
                (h.jobs_in, h.jobs_in_own, h.jobs_out),
            )
        })
        .collect();
    // IN adds up to OUT: 26 + 8 + 8 jobs in, 42 out, localice's 26 given
    // back to it among them.
    assert_eq!(
        summary,
        [
            (
                (1, "localice", true, true, 2),
                (42 * n, 26 * n, 26 * n, n, 2 * n),
                (0, 0),
                (26 * n, 26 * n, 42 * n)
            ),
            (
                (2, "remote1", true, false, 2),
                (0, 8 * n, 0, 0, 0),
                (0, 0),
                (8 * n, 0, 0)
            ),
            (
                (3, "remote2", false, false, 3),
                (0, 8 * n, 0, 0, 0),
                (0, 0),
                (8 * n, 0, 0)
            ),
        ],
        "protocol {agreed}"
    );
    let t = st.totals();
    assert_eq!(
        (
            t.jobs_finished,
            t.jobs_failed,
            t.jobs_cut_short,
            t.local_jobs_finished,
            t.active,
            t.pending
        ),
        (41 * n, n, 0, 2 * n, 0, 0)
    );
    assert_eq!((t.hosts_online, t.total_slots, t.busy_slots), (2, 4, 0));
    assert_eq!(
        (t.unknown_jobs, t.unknown_hosts, t.invalid_messages),
        (0, 0, 0)
    );
    assert_eq!(st.jobs().count(), 0);
    assert_eq!(st.links().count(), 0);
    // The newest 44 finished jobs are this capture's (the history may also
    // hold an earlier session's).
    let newest: Vec<_> = st.history().rev().take(44).collect();
    assert_eq!(newest.len(), 44);
    let failed: Vec<_> = newest
        .iter()
        .filter(|j| j.exit_code.is_some_and(|c| c != 0))
        .map(|j| {
            (
                j.id,
                j.exit_code,
                j.client,
                j.file().rsplit('/').next().map(str::to_owned),
            )
        })
        .collect();
    assert_eq!(failed, [(21, Some(1), Some(1), Some("bad.c".to_owned()))]);
    let mut local: Vec<_> = newest
        .iter()
        .filter(|j| j.state == icewatch::monitor::JobState::LocalFinished)
        .map(|j| (j.id, j.client, j.server))
        .collect();
    local.sort();
    assert_eq!(local, [(22, Some(1), Some(1)), (44, Some(1), Some(1))]);
    assert_eq!(st.scheduler().protocol, Some(agreed));
}
