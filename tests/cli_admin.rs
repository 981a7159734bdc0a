//! `icewatch admin` and `icewatch monitor --admin` at the edges that need
//! no real scheduler: a port that is not a text port (icewatch's own
//! stand-in scheduler, which speaks icecream's binary protocol), a port
//! nobody listens on, names that cannot go on a command line, `--admin`
//! without a token. Against Debian's real scheduler, `icewatch admin` is
//! run in `tests/real_cluster.rs`.

mod support;

use predicates::str::contains;
use support::command::{self, Running};

#[test]
fn a_port_that_is_not_a_text_port_is_named_so() {
    let scheduler = Running::demo_scheduler(&[]);
    let addr = scheduler.scheduler_addr().to_string();
    let out = command::icewatch()
        .args(["admin", "--text-port", &addr, "--timeout", "20s", "blocks"])
        .output()
        .expect("run icewatch admin");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with(&format!(
            "error: {addr} does not answer as an icecream text port"
        )),
        "{stderr}"
    );
}

#[test]
fn a_port_nobody_listens_on_is_one_line_with_a_hint() {
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    assert_cmd::cargo::cargo_bin_cmd!("icewatch")
        .args(["admin", "--text-port", &free.to_string(), "list"])
        .assert()
        .code(1)
        .stderr(contains(
            "error: cannot connect to the scheduler's text port",
        ))
        .stderr(contains("is the icecream scheduler running there?"));
}

#[test]
fn a_name_with_blanks_is_refused_before_anything_is_sent() {
    // No scheduler anywhere: the name is refused first.
    assert_cmd::cargo::cargo_bin_cmd!("icewatch")
        .args(["admin", "--text-port", "127.0.0.1:9", "block", "a\nlistcs"])
        .assert()
        .code(1)
        .stderr(contains("is not a host name or address"));
}

#[test]
fn admin_without_a_token_refuses_to_start() {
    assert_cmd::cargo::cargo_bin_cmd!("icewatch")
        .args([
            "monitor",
            "127.0.0.1:9",
            "--admin",
            "--listen",
            "127.0.0.1:0",
        ])
        .env_remove("ICEWATCH_TOKEN")
        .assert()
        .code(1)
        .stderr(contains("error: --admin needs a --token"));
}

#[test]
fn the_scheduler_and_a_text_port_are_not_both_given() {
    assert_cmd::cargo::cargo_bin_cmd!("icewatch")
        .args([
            "admin",
            "sched.lan",
            "--text-port",
            "127.0.0.1:8766",
            "list",
        ])
        .assert()
        .code(1)
        .stderr(contains("not both"));
}

#[test]
fn keep_blocks_refuses_in_one_line_without_a_history_or_a_text_port() {
    for (extra, says) in [
        (
            &["--db", "none"][..],
            "--keep-blocks keeps the block list in the history database",
        ),
        (
            &["--no-text-port"][..],
            "--keep-blocks reads and writes the scheduler's block list on its text port",
        ),
    ] {
        let out = assert_cmd::cargo::cargo_bin_cmd!("icewatch")
            .args(["monitor", "127.0.0.1:9", "--keep-blocks"])
            .args(extra)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with("error: ") && err.contains(says), "{err}");
    }
}

#[test]
fn monitor_help_teaches_keep_blocks() {
    assert_cmd::cargo::cargo_bin_cmd!("icewatch")
        .args(["monitor", "--help"])
        .assert()
        .success()
        .stdout(contains("--keep-blocks"))
        .stdout(contains("blocks survive scheduler restarts"))
        .stdout(contains(
            "Needs the history (not --db none) and the text port",
        ));
}
