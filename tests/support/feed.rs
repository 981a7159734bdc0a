//! For the publisher tests: a [`Feed`] drives a real
//! [`State`](icewatch::monitor::State) with real scheduler messages. Each
//! message is encoded to a frame with the codec, cut and decoded back as
//! the connection does, then applied at a scripted time, so the JSON that
//! comes out is exactly what a live scheduler would produce.

use icewatch::monitor::{lock_state, SharedState, State, StateOptions};
use icewatch::protocol::frame::Frame;
use icewatch::protocol::stats::{HostStats, OFFLINE};
use icewatch::protocol::{JobDone, Language, Message};
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
        let frame = Frame::encode(&msg, VERSION);
        let decoded = frame.decode(VERSION).expect("a valid body");
        assert_eq!(decoded, msg, "the codec gives back what it was given");
        self.now_ms += 10;
        lock_state(&self.state).apply(&decoded, self.now_ms);
    }

    fn secs(&self) -> u32 {
        (self.now_ms / 1000) as u32
    }

    /// `MON_STATS` for a host logging in or reporting.
    pub fn host(&mut self, id: u32, name: &str, max_jobs: u32, no_remote: bool, load: u32) {
        let ip = format!("10.0.0.{id}");
        let text = HostStats {
            speed: Some(f64::from(20 + id) + 0.5),
            load: Some(load),
            ..HostStats::login(name, &ip, max_jobs, no_remote)
        }
        .to_text();
        self.send(Message::mon_stats(id, &text));
    }

    /// `MON_STATS` with only `State:Offline`: the host left.
    pub fn host_offline(&mut self, id: u32) {
        self.send(Message::mon_stats(id, OFFLINE));
    }

    /// `MON_GET_CS`: `client` asks for a server for job `id`.
    pub fn request(&mut self, id: u32, client: u32, file: &str) {
        self.send(Message::mon_get_cs(id, client, file, Language::CXX));
    }

    /// `MON_JOB_BEGIN`: job `id` starts compiling on `server`.
    pub fn begin(&mut self, id: u32, server: u32) {
        self.send(Message::mon_job_begin(id, server, self.secs()));
    }

    /// `MON_JOB_DONE`: job `id` ended with `exit_code`.
    pub fn done(&mut self, id: u32, exit_code: u32) {
        self.send(Message::MonJobDone(JobDone {
            real_ms: 1200 + id,
            user_ms: 1000,
            sys_ms: 90,
            page_faults: 3,
            in_compressed: 40_000,
            in_uncompressed: 160_000,
            out_compressed: 9_000,
            out_uncompressed: 30_000,
            client_count: 1,
            ..JobDone::new(id, exit_code)
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
        self.send(Message::mon_local_job_begin(id, host, self.secs(), file));
    }

    /// `JOB_LOCAL_DONE`.
    pub fn local_done(&mut self, id: u32) {
        self.send(Message::job_local_done(id));
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
