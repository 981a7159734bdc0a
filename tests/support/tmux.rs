//! A command in a real terminal: a tmux server of its own (`tmux -L`),
//! one window of a given size, keys sent with `send-keys`, the screen
//! read with `capture-pane`. Waits poll the screen for the text expected,
//! up to [`PATIENCE`]: never a fixed sleep.

use std::process::Command;
use std::time::{Duration, Instant};

/// How long a wait for the screen may take: a real scheduler may take
/// 36 s to take a new monitor (see `tests/real_cluster.rs`).
pub const PATIENCE: Duration = Duration::from_secs(120);

/// Whether tmux can run here.
pub fn available() -> bool {
    Command::new("tmux")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A tmux server running one command; killed when dropped.
pub struct Tmux {
    socket: String,
}

/// What the shell prints when the command ends: `TOP-EXIT=<status>`.
pub const EXIT_MARK: &str = "TOP-EXIT=";

impl Tmux {
    /// Runs `command` (a shell line) in a `width`×`height` terminal; when
    /// it ends, the shell prints [`EXIT_MARK`] and its exit status and
    /// waits, so the screen can still be read.
    pub fn start(name: &str, width: u16, height: u16, command: &str) -> Tmux {
        // Not the process id alone: a test inside a PID namespace (the
        // real-cluster suite) is process 1 in each, and /tmp is shared, so
        // two suites at once would share a tmux server, and one's end would
        // close the other's terminal.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let socket = format!("icewatch-{name}-{}-{nanos}", std::process::id());
        let line = format!("{command}; echo {EXIT_MARK}$?; sleep 600");
        let status = Command::new("tmux")
            .args(["-L", &socket, "-f", "/dev/null", "new-session", "-d"])
            .args(["-x", &width.to_string(), "-y", &height.to_string()])
            .args(["sh", "-c", &line])
            .status()
            .expect("tmux runs");
        assert!(status.success(), "tmux new-session");
        Tmux { socket }
    }

    fn tmux(&self, args: &[&str]) -> std::process::Output {
        Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .output()
            .expect("tmux runs")
    }

    /// The screen as text, one line a row.
    pub fn screen(&self) -> String {
        let out = self.tmux(&["capture-pane", "-p"]);
        if !out.status.success() {
            let why = String::from_utf8_lossy(&out.stderr);
            return format!("(tmux capture-pane failed: {})", why.trim());
        }
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Sends keys as `tmux send-keys` names them (`l`, `Space`, `Enter`).
    pub fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys"];
        args.extend_from_slice(keys);
        assert!(self.tmux(&args).status.success(), "send-keys {keys:?}");
    }

    /// Sends text literally, each character a key.
    pub fn text(&self, text: &str) {
        assert!(self.tmux(&["send-keys", "-l", text]).status.success());
    }

    /// Resizes the terminal.
    pub fn resize(&self, width: u16, height: u16) {
        let (w, h) = (width.to_string(), height.to_string());
        assert!(self
            .tmux(&["resize-window", "-x", &w, "-y", &h])
            .status
            .success());
    }

    /// Polls the screen until `found` holds on a settled screen; returns
    /// that screen. Fails the test, showing the last screen, after
    /// [`PATIENCE`].
    ///
    /// Settled: the same on two reads a moment apart. tmux takes a frame
    /// from the terminal in pieces and answers `capture-pane` between
    /// them, so one read may show half of a new frame over the old one.
    pub fn wait_for(&self, what: &str, found: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + PATIENCE;
        let mut screen = self.screen();
        loop {
            if found(&screen) {
                std::thread::sleep(Duration::from_millis(30));
                let again = self.screen();
                // A screen that never stands still (a clock in every
                // frame) is taken as it is once the patience is spent.
                if again == screen || Instant::now() >= deadline {
                    return screen;
                }
                screen = again;
                continue;
            }
            assert!(
                Instant::now() < deadline,
                "waited in vain for {what}; the screen:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(50));
            screen = self.screen();
        }
    }

    /// Waits until the screen holds `text`.
    pub fn wait_text(&self, text: &str) -> String {
        self.wait_for(text, |s| s.contains(text))
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.tmux(&["kill-server"]);
    }
}
