//! `icewatch top` in a real terminal (tmux): against a capture replayed as
//! a scheduler (the state fed in process) and against another icewatch's
//! WebSocket (`--server`), driven with the keys a person would press; the
//! host pane's reads of the scheduler's text port both ways.

mod support;

use std::path::Path;
use support::captures::capture;
use support::command::{icewatch, page_url, Running};
use support::tmux::{self, Tmux, EXIT_MARK};

fn binary() -> &'static Path {
    Path::new(assert_cmd::cargo::cargo_bin!("icewatch"))
}

/// tmux is what CI installs for these tests; a machine without it cannot
/// run them, and says so.
fn tmux_or_skip() -> bool {
    if tmux::available() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "tmux is missing: .ci/run installs it"
    );
    eprintln!("tmux is not installed: skipped");
    false
}

#[test]
fn top_against_a_replayed_capture_sorts_filters_opens_a_host_and_quits() {
    if !tmux_or_skip() {
        return;
    }
    let replay = Running::replay_scheduler(&capture(43), &[]);
    let addr = replay.scheduler_addr();
    let term = Tmux::start(
        "direct",
        80,
        24,
        &format!("{} top {addr}", binary().display()),
    );
    // The whole capture: 42 remote jobs and 2 local ones ended, one failed.
    let screen = term.wait_text("44 recent ended, 1 failed");
    assert!(
        screen.contains(&format!("ONLINE  scheduler {addr} · protocol 43")),
        "{screen}"
    );
    assert!(
        screen.contains("localice") && screen.contains("remote1"),
        "{screen}"
    );
    assert!(screen.contains("↓ID"), "sorted by id at first:\n{screen}");

    // sundae's keys: l moves the sort right, r reverses it.
    term.keys(&["l"]);
    term.wait_text("↓NAME");
    term.keys(&["r"]);
    let screen = term.wait_text("↑NAME");
    let (at_1, at_l) = (
        screen.find("remote1").unwrap(),
        screen.find("localice").unwrap(),
    );
    assert!(at_1 < at_l, "names in reverse order:\n{screen}");

    // Only the failed jobs, with their reason.
    term.keys(&["f", "f", "f"]);
    let screen = term.wait_text("Jobs (failed)");
    assert!(
        screen.contains("FAIL") && screen.contains("bad.c") && screen.contains("exit code 1"),
        "{screen}"
    );
    term.keys(&["f"]);

    // Filter by host, then open it.
    term.keys(&["/"]);
    term.text("remote1");
    term.keys(&["Enter"]);
    let screen = term.wait_text("Hosts (1) matching \"remote1\"");
    assert!(!screen.contains("localice  "), "{screen}");
    term.keys(&["j", "Space"]);
    let screen = term.wait_text("remote1 #2");
    assert!(
        screen.contains("Recently finished") || screen.contains("Compiling here"),
        "{screen}"
    );
    // The stand-in has no text port (the port above its own), as the
    // pane says; `i` asks anyway, and shows why there is no answer.
    term.wait_text("text port not answering");
    term.keys(&["i"]);
    term.wait_text("Internals");

    // Help, closed by any key.
    term.keys(&["?"]);
    term.wait_text("any key closes this help");
    term.keys(&["x"]);
    term.wait_for("help closed", |s| !s.contains("any key closes"));

    // The scheduler goes away: the status line says so, and top waits
    // for it to come back.
    replay.signal("INT");
    let screen = term.wait_text("OFFLINE");
    assert!(
        screen.contains(&format!("reconnecting to scheduler {addr}")),
        "{screen}"
    );

    term.keys(&["q"]);
    let screen = term.wait_text(&format!("{EXIT_MARK}0"));
    assert!(
        !screen.contains("icewatch top"),
        "the terminal is given back:\n{screen}"
    );
}

#[test]
fn top_server_reads_a_running_icewatch_and_follows_a_resize() {
    if !tmux_or_skip() {
        return;
    }
    let page = Running::start(&[
        "replay",
        capture(43).to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ]);
    let line = page.stdout_line();
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no URL in {line:?}"))
        .to_string();
    let term = Tmux::start(
        "server",
        80,
        24,
        &format!("{} top --server {url}", binary().display()),
    );
    // A raw capture plays at once; the replay then ends, as the page says.
    let screen = term.wait_text("ENDED");
    assert!(screen.contains("replay of basic.v43.bin"), "{screen}");
    assert!(screen.contains("Failed 1"), "{screen}");
    assert!(
        !screen.contains("LOAD"),
        "no LOAD column on 80 columns:\n{screen}"
    );
    term.resize(200, 50);
    term.wait_text("LOAD");
    term.keys(&["C-c"]);
    term.wait_text(&format!("{EXIT_MARK}0"));

    // Gone icewatch: the status line says so and retries.
    drop(page);
    let term = Tmux::start(
        "gone",
        80,
        24,
        &format!("{} top --server {url}", binary().display()),
    );
    let screen = term.wait_text("reconnecting");
    assert!(
        screen.contains("OFFLINE") && screen.contains("cannot connect"),
        "{screen}"
    );
    term.keys(&["q"]);
    term.wait_text(&format!("{EXIT_MARK}0"));
}

#[test]
fn top_server_shows_the_text_port_as_that_icewatch_reads_it() {
    if !tmux_or_skip() {
        return;
    }
    let scheduler = Running::demo_scheduler(&["--seed", "3"]);
    let addr = scheduler.scheduler_addr().to_string();
    // A text port nobody listens on: a port just given up by the kernel.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .to_string();
    let page = Running::start(&[
        "monitor",
        &addr,
        "--db",
        "none",
        "--text-port",
        &closed,
        "--listen",
        "127.0.0.1:0",
    ]);
    let url = page_url(&page);
    let term = Tmux::start(
        "text-port",
        80,
        24,
        &format!("{} top --server {url}", binary().display()),
    );
    term.wait_text("ONLINE");
    term.keys(&["j", "Space"]);
    // The server's own read, its error included, and `i` asked of it.
    let screen = term.wait_text("text port not answering");
    assert!(
        screen.contains("cannot connect to the scheduler's text port"),
        "{screen}"
    );
    term.keys(&["i"]);
    let screen = term.wait_text("Internals");
    term.wait_for("the server's answer to internals", |s| {
        s.contains(&format!(
            "cannot connect to the scheduler's text port at {closed}"
        )) && !s.contains("asking…")
    });
    assert!(screen.contains("i internals"), "{screen}");
    term.keys(&["q"]);
    term.wait_text(&format!("{EXIT_MARK}0"));
}

#[test]
fn top_without_a_terminal_points_to_status() {
    let out = icewatch().args(["top", "127.0.0.1:1"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("needs a terminal") && err.contains("icewatch status"),
        "{err}"
    );
}
