//! The `icewatch` binary under test: run as a process and read line by
//! line, or run to its end. Every wait is bounded by [`PATIENCE`], never a
//! sleep.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// How long any single step of a test may take before it fails.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// The binary under test, its default history in a folder of its own
/// (`monitor` keeps one by default; no test writes to the user's).
pub fn icewatch() -> Command {
    let mut command = Command::new(assert_cmd::cargo::cargo_bin!("icewatch"));
    command.env("XDG_STATE_HOME", state_home());
    command
}

/// A fresh `XDG_STATE_HOME` for one `icewatch` process.
pub fn state_home() -> PathBuf {
    static COUNT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("state-{}-{n}", std::process::id()))
}

/// `icewatch dump --capture FILE`, run to its end; the caller checks how
/// it ended.
pub fn dump_capture(file: impl AsRef<std::ffi::OsStr>) -> assert_cmd::assert::Assert {
    assert_cmd::cargo::cargo_bin_cmd!("icewatch")
        .args(["dump", "--capture"])
        .arg(file)
        .assert()
}

/// What a finished command printed on stdout.
pub fn stdout_text(out: &assert_cmd::assert::Assert) -> String {
    String::from_utf8(out.get_output().stdout.clone()).expect("UTF-8 on stdout")
}

/// A plain HTTP/1.1 GET: (status, body).
pub fn get(host: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(host).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = Vec::new();
    s.read_to_end(&mut response).unwrap();
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

/// The body of `GET path` from the page at `host` (`IP:PORT`), which must
/// answer 200.
pub fn http_body(host: &str, path: &str) -> String {
    let (status, body) = get(host, path);
    assert_eq!(status, 200, "GET {path}: {body}");
    body
}

/// A fresh directory for this test's files.
pub fn scratch_dir(test: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// An `icewatch` process whose stdout and stderr are read line by line;
/// killed if the test ends early.
pub struct Running {
    child: Option<Child>,
    stdout: mpsc::Receiver<String>,
    stderr: mpsc::Receiver<String>,
}

fn lines<R: Read + Send + 'static>(r: R) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

impl Running {
    /// Starts `icewatch ARGS`.
    pub fn start(args: &[&str]) -> Running {
        let mut command = icewatch();
        command.args(args);
        Running::spawn(command)
    }

    /// Starts `command` (an `icewatch` command with its environment, or a
    /// shell that runs one).
    pub fn spawn(mut command: Command) -> Running {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("icewatch starts");
        let out: ChildStdout = child.stdout.take().unwrap();
        let err: ChildStderr = child.stderr.take().unwrap();
        Running {
            child: Some(child),
            stdout: lines(out),
            stderr: lines(err),
        }
    }

    /// Starts `icewatch demo --as-scheduler --port 0 EXTRA...`: the
    /// simulated cluster served to monitors on a free port, which
    /// [`Running::scheduler_addr`] reads.
    pub fn demo_scheduler(extra: &[&str]) -> Running {
        Running::start(&[&["demo", "--as-scheduler", "--port", "0"], extra].concat())
    }

    /// Starts `icewatch replay FILE --as-scheduler --port 0 EXTRA...`: the
    /// recording played to monitors on a free port.
    pub fn replay_scheduler(file: &Path, extra: &[&str]) -> Running {
        let file = file.to_str().expect("a UTF-8 path");
        Running::start(&[&["replay", file, "--as-scheduler", "--port", "0"], extra].concat())
    }

    /// The next line on stdout.
    pub fn stdout_line(&self) -> String {
        self.stdout
            .recv_timeout(PATIENCE)
            .expect("a line on stdout in time")
    }

    /// Reads stderr until a line contains `needle`; returns that line.
    pub fn stderr_until(&self, mut found: impl FnMut(&str) -> bool) -> String {
        loop {
            let line = self
                .stderr
                .recv_timeout(PATIENCE)
                .expect("the awaited line on stderr in time");
            if found(&line) {
                return line;
            }
        }
    }

    /// The address in the first stdout line (`... listening on IP:PORT`).
    pub fn scheduler_addr(&self) -> SocketAddr {
        let line = self.stdout_line();
        let addr = line
            .rsplit(' ')
            .next()
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no address in {line:?}"));
        addr
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Sends a signal (`INT`, `KILL`).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the exit, bounded: a process still running after
    /// [`PATIENCE`] is killed and the test fails.
    pub fn wait(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("still running");
        let pid = child.id();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait());
        });
        match rx.recv_timeout(PATIENCE) {
            Ok(status) => status.unwrap(),
            Err(_) => {
                let _ = Command::new("kill")
                    .arg("-KILL")
                    .arg(pid.to_string())
                    .status();
                panic!("icewatch did not exit");
            }
        }
    }

    /// Everything left on stderr after the exit.
    pub fn rest_of_stderr(&self) -> Vec<String> {
        self.stderr.iter().collect()
    }

    /// Everything left on stdout after the exit.
    pub fn rest_of_stdout(&self) -> Vec<String> {
        self.stdout.iter().collect()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The message types in NDJSON output, counted.
pub fn type_counts(ndjson: &str) -> std::collections::BTreeMap<String, u32> {
    let mut counts = std::collections::BTreeMap::new();
    for line in ndjson.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("each line is JSON");
        let ty = v["type"].as_str().expect("a type").to_string();
        *counts.entry(ty).or_insert(0) += 1;
    }
    counts
}

/// The URL in the first stdout line (`open URL in a browser`).
pub fn page_url(running: &Running) -> String {
    let line = running.stdout_line();
    line.split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no URL in {line:?}"))
        .to_string()
}

/// `http://HOST:PORT/?token=T` → (`HOST:PORT`, token).
pub fn split_url(url: &str) -> (String, Option<String>) {
    let rest = url.strip_prefix("http://").unwrap();
    let (host, query) = rest.split_once('/').unwrap();
    let token = query.strip_prefix("?token=").map(|t| t.to_string());
    (host.to_string(), token)
}
