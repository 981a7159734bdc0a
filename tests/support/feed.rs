//! Shared by the publisher tests: a [`Feed`] drives a real
//! [`State`](icewatch::monitor::State) with real scheduler messages. Each
//! message is encoded to a frame with the codec, cut and decoded back as
//! the connection does, then applied at a scripted time, so the JSON that
//! comes out is exactly what a live scheduler would produce.
#![allow(dead_code)]

use bytes::BytesMut;
use icewatch::monitor::{lock_state, SharedState, State, StateOptions};
use icewatch::protocol::frame::{parse_frame, MAX_MSG_SIZE};
use icewatch::protocol::{
    GetCs, JobDone, JobLocalDone, Language, Message, MonGetCs, MonJobBegin, MonLocalJobBegin,
    MonStats,
};
use std::sync::{Arc, Mutex};

/// The protocol version the feed speaks (icecream 1.4's).
pub const VERSION: u32 = 43;
/// The feed's clock starts here (ms since the epoch), so JSON is stable.
pub const START_MS: u64 = 1_700_000_000_000;

/// A scripted scheduler feeding one shared state.
pub struct Feed {
    pub state: SharedState,
    pub now_ms: u64,
}

impl Feed {
    /// A state connected to a scheduler at `127.0.0.1:8765`.
    pub fn new() -> Feed {
        Feed::with_history(StateOptions::default().history_limit)
    }

    /// [`Feed::new`], with a history of `history_limit` finished jobs.
    pub fn with_history(history_limit: usize) -> Feed {
        let state = Arc::new(Mutex::new(State::new(StateOptions {
            history_limit,
            ..StateOptions::default()
        })));
        lock_state(&state).scheduler_connected("127.0.0.1:8765".into(), VERSION, START_MS);
        Feed {
            state,
            now_ms: START_MS,
        }
    }

    /// Encodes `msg`, decodes the frame back and applies it, 10 ms after
    /// the previous message.
    pub fn send(&mut self, msg: Message<'_>) {
        let mut wire = BytesMut::new();
        msg.encode(VERSION, &mut wire);
        let (rest, frame) = parse_frame(&wire, MAX_MSG_SIZE).expect("a whole frame");
        assert!(rest.is_empty());
        let decoded = Message::decode(frame.ty, frame.body, VERSION).expect("a valid body");
        assert_eq!(decoded, msg, "the codec gives back what it was given");
        self.now_ms += 10;
        lock_state(&self.state).apply(&decoded, self.now_ms);
    }

    fn secs(&self) -> u32 {
        (self.now_ms / 1000) as u32
    }

    /// `MON_STATS` for a host logging in or reporting.
    pub fn host(&mut self, id: u32, name: &str, max_jobs: u32, no_remote: bool, load: u32) {
        let text = format!(
            "Name:{name}\nIP:10.0.0.{id}\nMaxJobs:{max_jobs}\nNoRemote:{no_remote}\n\
             Platform:x86_64\nVersion:43\nFeatures:env_xz env_zstd\nSpeed:{}.5\nLoad:{load}\n",
            20 + id
        );
        self.send(Message::MonStats(MonStats {
            host_id: id,
            text: text.as_bytes(),
        }));
    }

    /// `MON_STATS` with only `State:Offline`: the host left.
    pub fn host_offline(&mut self, id: u32) {
        self.send(Message::MonStats(MonStats {
            host_id: id,
            text: b"State:Offline\n",
        }));
    }

    /// `MON_GET_CS`: `client` asks for a server for job `id`.
    pub fn request(&mut self, id: u32, client: u32, file: &str) {
        self.send(Message::MonGetCs(MonGetCs {
            request: GetCs {
                filename: file.as_bytes(),
                lang: Language::CXX,
                ..GetCs::default()
            },
            job_id: id,
            client_id: client,
        }));
    }

    /// `MON_JOB_BEGIN`: job `id` starts compiling on `server`.
    pub fn begin(&mut self, id: u32, server: u32) {
        let start_time = self.secs();
        self.send(Message::MonJobBegin(MonJobBegin {
            job_id: id,
            start_time,
            host_id: server,
        }));
    }

    /// `MON_JOB_DONE`: job `id` ended with `exit_code`.
    pub fn done(&mut self, id: u32, exit_code: u32) {
        self.send(Message::MonJobDone(JobDone {
            job_id: id,
            exit_code,
            real_ms: 1200 + id,
            user_ms: 1000,
            sys_ms: 90,
            page_faults: 3,
            in_compressed: 40_000,
            in_uncompressed: 160_000,
            out_compressed: 9_000,
            out_uncompressed: 30_000,
            flags: 0,
            client_count: 1,
        }));
    }

    /// A whole remote job: requested, compiling, ended.
    pub fn remote_job(&mut self, id: u32, client: u32, server: u32, file: &str, exit_code: u32) {
        self.request(id, client, file);
        self.begin(id, server);
        self.done(id, exit_code);
    }

    /// `MON_LOCAL_JOB_BEGIN`: `host` compiles job `id` itself.
    pub fn local_begin(&mut self, id: u32, host: u32, file: &str) {
        let start_time = self.secs();
        self.send(Message::MonLocalJobBegin(MonLocalJobBegin {
            host_id: host,
            job_id: id,
            start_time,
            file: file.as_bytes(),
        }));
    }

    /// `JOB_LOCAL_DONE`.
    pub fn local_done(&mut self, id: u32) {
        self.send(Message::JobLocalDone(JobLocalDone { job_id: id }));
    }

    /// The cluster of the anchors, mid-build: `localice` (no-remote, 2
    /// slots) submits to `remote1` (2) and `remote2` (3); 3 jobs finished
    /// (one failed), 4 compiling, 1 waiting, 1 local job running.
    pub fn small_cluster(&mut self) {
        self.host(1, "localice", 2, true, 280);
        self.host(2, "remote1", 2, false, 120);
        self.host(3, "remote2", 3, false, 40);
        self.remote_job(10, 1, 2, "src/lexer.c", 0);
        self.remote_job(11, 1, 3, "src/parser.c", 1);
        self.remote_job(12, 1, 3, "src/main.c", 0);
        for (id, server, file) in [
            (13, 2, "src/a.c"),
            (14, 2, "src/b.c"),
            (15, 3, "src/c.c"),
            (16, 3, "src/d.c"),
        ] {
            self.request(id, 1, file);
            self.begin(id, server);
        }
        self.request(17, 1, "src/e.c");
        self.local_begin(18, 1, "src/parser.o");
    }
}
