//! icewatch against a real icecream cluster: Debian's `icecc-scheduler` and
//! four `iceccd` daemons, a real build through `icecc`, and icewatch's own
//! monitor connection watching it all in-process.
//!
//! # What it proves
//!
//! 1. icewatch sees exactly the daemons that were started (names, slots,
//!    `--no-remote`), as the scheduler's own text port lists them.
//! 2. After 24 files are compiled through `icecc` (each sent to a compile
//!    server, as the icecc client's own log says), one broken file (a failed
//!    remote job, then icecc's local retry) and a link (a local job),
//!    icewatch's totals and per-host counters equal what the icecc clients
//!    report, job for job and host for host.
//! 3. A daemon that dies (SIGKILL) is offline in icewatch's state within 2 s
//!    of the kill.
//! 4. When the scheduler restarts, icewatch reconnects by itself and shows
//!    the live daemons again (they log in to the new scheduler by
//!    themselves), and no ghost of the dead one.
//!
//! # How it runs
//!
//! The scheduler and the daemons find each other by UDP broadcast, so they
//! must never run in the machine's own network. The test re-executes its own
//! binary under `unshare --net --pid --fork --kill-child`: a private network
//! namespace that has only loopback (brought up inside), and a private PID
//! namespace whose first process is the test itself, so the kernel ends every
//! daemon, compiler and scheduler the moment the test ends, however it ends.
//! Inside, a guard also kills its children on drop and, when the test fails,
//! prints the tail of every daemon's and the scheduler's log.
//!
//! Several daemons share one host the way icecream's own test suite runs
//! them: `ICECC_TEST_SOCKET` gives each its own local socket, `-p` its own
//! port, `-N` its own name, `-b` its own environment folder, and
//! `ICECC_TESTS=1` makes a daemon retry a lost scheduler after 3 s instead of
//! 20 to 51 s. `icecc --build-native` packs the machine's gcc into the
//! environment tarball the compile servers run in (chroot, hence root), and
//! `ICECC_TEST_REMOTEBUILD=1` makes the client send every compile job to a
//! compile server, even when the scheduler picks the client's own daemon.
//!
//! Every wait is a bounded wait on a condition (the scheduler's text port,
//! icewatch's state, a process exit), never a fixed sleep; the bounds are
//! generous for a loaded 2-core machine, and a timeout names what it waited
//! for.
//!
//! # When it cannot run
//!
//! It needs root (namespaces, and the daemons' chroot), `unshare` and `ip`,
//! and Debian's `icecc` package (`icecc`, `iceccd`, `icecc-scheduler`) with
//! gcc. Where one is missing it prints why and passes, except under CI
//! (`CI` set), where `.ci/run` installs all of it and a missing piece fails.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use icewatch::protocol::text;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

/// Set in the environment of the re-executed test binary inside the
/// namespaces.
const INSIDE: &str = "ICEWATCH_REAL_CLUSTER_INSIDE_NAMESPACE";
/// Printed by the inside run as its last line, so the outside knows the test
/// really ran (a filter that matched nothing would also exit 0).
const DONE: &str = "real-cluster: all checks passed";
/// The name of the one test, for the re-execution's filter.
const TEST_NAME: &str = "icewatch_sees_exactly_what_a_real_icecream_cluster_does";

const SCHEDULER_PORT: u16 = 8765;
/// The scheduler's text port is always its port + 1.
const TEXT_PORT: u16 = SCHEDULER_PORT + 1;
/// Files compiled through icecc, each one remote job.
const FILES: usize = 24;
/// How many icecc clients run at once (like `make -j6`).
const PARALLEL_COMPILES: usize = 6;

/// The whole inside run, a generous bound for a loaded 2-core machine.
const WHOLE_RUN: Duration = Duration::from_secs(20 * 60);
const BUILD_NATIVE: Duration = Duration::from_secs(300);
const SCHEDULER_UP: Duration = Duration::from_secs(30);
const DAEMON_LOGIN: Duration = Duration::from_secs(90);
const ONE_COMPILE: Duration = Duration::from_secs(300);
const SCHEDULER_EXIT: Duration = Duration::from_secs(30);

/// One iceccd the test starts.
#[derive(Clone, Copy, Debug)]
struct DaemonSpec {
    name: &'static str,
    port: u16,
    max_jobs: u32,
    no_remote: bool,
}

/// `localice` is the daemon every icecc client talks to, a pure client: it
/// takes no jobs from others (`--no-remote`) and offers no compile slot
/// (`-m 0`), so the scheduler never hands a client's job back to it and
/// every compile job goes to a compile server; it still runs local jobs
/// (links, local retries). `remote3` is the one that dies.
const DAEMONS: [DaemonSpec; 4] = [
    DaemonSpec {
        name: "localice",
        port: 10250,
        max_jobs: 0,
        no_remote: true,
    },
    DaemonSpec {
        name: "remote1",
        port: 10246,
        max_jobs: 2,
        no_remote: false,
    },
    DaemonSpec {
        name: "remote2",
        port: 10247,
        max_jobs: 3,
        no_remote: false,
    },
    DaemonSpec {
        name: "remote3",
        port: 10248,
        max_jobs: 1,
        no_remote: false,
    },
];
const CLIENT_DAEMON: &str = "localice";
const DYING_DAEMON: &str = "remote3";

#[test]
fn icewatch_sees_exactly_what_a_real_icecream_cluster_does() {
    if std::env::var_os(INSIDE).is_some() {
        inside_namespaces();
        return;
    }
    if let Err(why) = can_run() {
        if std::env::var_os("CI").is_some() {
            panic!("the real-cluster test must run in CI, but it cannot: {why}");
        }
        eprintln!("real-cluster test skipped: {why}");
        return;
    }
    run_in_private_namespaces();
}

// ---------------------------------------------------------------- outside

/// Why the test cannot run here, if it cannot.
fn can_run() -> Result<(), String> {
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| format!("/proc/self/status: {e}"))?;
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .ok_or("no Uid line in /proc/self/status")?;
    if euid != "0" {
        return Err(format!(
            "needs root (namespaces and the daemons' chroot), running as uid {euid}"
        ));
    }
    for tool in ["unshare", "ip", "icecc", "iceccd", "icecc-scheduler", "gcc"] {
        tool_path(tool).ok_or_else(|| {
            format!("`{tool}` is not installed (apt-get install icecc iproute2 util-linux gcc)")
        })?;
    }
    let probe = std::process::Command::new(tool_path("unshare").unwrap_or_default())
        .args(["--net", "--pid", "--fork", "--kill-child", "true"])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run unshare: {e}"))?;
    if !probe.status.success() {
        return Err(format!(
            "cannot create network and PID namespaces: unshare: {}",
            String::from_utf8_lossy(&probe.stderr).trim()
        ));
    }
    Ok(())
}

/// Runs this test again inside new network and PID namespaces and reports
/// its output.
fn run_in_private_namespaces() {
    let exe = std::env::current_exe().expect("the test binary's own path");
    let log = tempfile::NamedTempFile::new().expect("a file for the inside run's output");
    // One open file for both streams, so they share one offset.
    let out = log.reopen().expect("output file");
    let mut child = std::process::Command::new(tool_path("unshare").expect("unshare"))
        .args(["--net", "--pid", "--fork", "--kill-child", "--"])
        .arg(&exe)
        .args([TEST_NAME, "--exact", "--nocapture", "--test-threads=1"])
        .env(INSIDE, "1")
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("output file"))
        .stderr(out)
        .spawn()
        .expect("start the test inside unshare");
    // Bounded wait on the process: the inside run bounds each of its own
    // waits, this bound only catches a hang nobody foresaw.
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the inside run") {
            break Some(status);
        }
        if started.elapsed() > WHOLE_RUN + Duration::from_secs(60) {
            // unshare --kill-child takes the namespace's first process and
            // with it every daemon down.
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let output = std::fs::read_to_string(log.path()).unwrap_or_default();
    println!("{output}");
    match status {
        None => panic!("the inside run did not end within {WHOLE_RUN:?}; its output is above"),
        Some(s) if !s.success() => panic!("the inside run failed ({s}); its output is above"),
        Some(_) => assert!(
            output.lines().any(|l| l.trim() == DONE),
            "the inside run exited 0 without running the test (filter `{TEST_NAME}`)"
        ),
    }
}

/// A program's path: on PATH, or in the sbin folders a non-login root shell
/// may lack.
fn tool_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

// ----------------------------------------------------------------- inside

fn inside_namespaces() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        tokio::time::timeout(WHOLE_RUN, the_whole_story())
            .await
            .unwrap_or_else(|_| panic!("the test did not end within {WHOLE_RUN:?}"))
    });
    println!("{DONE}");
}

async fn the_whole_story() {
    let t0 = Instant::now();
    let mut durations: Vec<(&str, Duration)> = Vec::new();
    run_checked(
        Command::new(tool("ip")).args(["link", "set", "lo", "up"]),
        Duration::from_secs(10),
    )
    .await;

    let mut cluster = Cluster::new();

    let t = Instant::now();
    cluster.build_native_environment().await;
    durations.push(("icecc --build-native", t.elapsed()));

    let t = Instant::now();
    cluster.start_scheduler("scheduler").await;
    for spec in DAEMONS {
        cluster.start_daemon(spec);
    }
    let launched_names: BTreeSet<&str> = DAEMONS.iter().map(|d| d.name).collect();
    let launched_names = &launched_names;
    wait_for(
        "every daemon to log in to the scheduler",
        DAEMON_LOGIN,
        move || async move {
            let names = listcs_names().await?;
            (names.iter().map(String::as_str).collect::<BTreeSet<_>>() == *launched_names)
                .then_some(())
        },
    )
    .await;
    durations.push(("scheduler and 4 daemons up", t.elapsed()));
    let listed = listcs().await.expect("listcs once every daemon is up");
    let listed: BTreeMap<&str, u32> = listed
        .iter()
        .map(|e| (e.name.as_str(), e.max_jobs))
        .collect();
    let launched: BTreeMap<&str, u32> = DAEMONS.iter().map(|d| (d.name, d.max_jobs)).collect();
    assert_eq!(
        listed, launched,
        "the scheduler lists exactly the daemons started"
    );

    let t = Instant::now();
    let build = cluster.build().await;
    durations.push(("build through icecc", t.elapsed()));
    println!(
        "remote jobs per compile server: {:?}",
        build.remote_jobs_per_host()
    );

    // A daemon dies.
    let t = Instant::now();
    cluster.kill_daemon(DYING_DAEMON).await;
    wait_for(
        "the scheduler to drop the killed daemon",
        DAEMON_LOGIN,
        || async move {
            let names = listcs_names().await?;
            (!names.contains(DYING_DAEMON)).then_some(())
        },
    )
    .await;
    durations.push(("scheduler drops the killed daemon", t.elapsed()));

    // The scheduler restarts; the live daemons log in again by themselves.
    let t = Instant::now();
    cluster.stop_scheduler().await;
    cluster.start_scheduler("scheduler-2").await;
    let live: BTreeSet<&str> = DAEMONS
        .iter()
        .map(|d| d.name)
        .filter(|n| *n != DYING_DAEMON)
        .collect();
    let live = &live;
    wait_for(
        "the live daemons to log in to the new scheduler",
        DAEMON_LOGIN,
        move || async move {
            let names = listcs_names().await?;
            let names: BTreeSet<&str> = names.iter().map(String::as_str).collect();
            (names == *live).then_some(())
        },
    )
    .await;
    durations.push(("daemons back after the scheduler restart", t.elapsed()));

    durations.push(("whole test", t0.elapsed()));
    for (what, d) in &durations {
        println!("real-cluster timing: {what}: {:.3} s", d.as_secs_f64());
    }
}

/// What the icecc clients themselves reported.
struct Build {
    /// Per good source file: the compile server's port.
    remote: Vec<u16>,
    /// The broken file's compile server.
    failed_on: u16,
}

impl Build {
    fn remote_jobs_per_host(&self) -> BTreeMap<&'static str, u32> {
        let mut per_host = BTreeMap::new();
        for port in self.remote.iter().chain([&self.failed_on]) {
            *per_host.entry(daemon_by_port(*port).name).or_default() += 1;
        }
        per_host
    }
}

fn daemon_by_port(port: u16) -> DaemonSpec {
    *DAEMONS.iter().find(|d| d.port == port).unwrap_or_else(|| {
        panic!("icecc used a compile server on port {port}, which the test did not start")
    })
}

/// The scheduler, the daemons and their working folder. Dropping it kills
/// every process it started; if the test is failing, it first prints the
/// tail of every log.
struct Cluster {
    dir: tempfile::TempDir,
    env_tarball: Option<PathBuf>,
    scheduler: Option<Child>,
    daemons: Vec<(DaemonSpec, Child)>,
    logs: Vec<PathBuf>,
}

impl Cluster {
    fn new() -> Cluster {
        let dir = tempfile::Builder::new()
            .prefix("icewatch-real-cluster.")
            .tempdir()
            .expect("a working folder");
        // The daemons unpack environments and compile as the `icecc` user.
        set_mode(dir.path(), 0o777);
        Cluster {
            dir,
            env_tarball: None,
            scheduler: None,
            daemons: Vec::new(),
            logs: Vec::new(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    async fn build_native_environment(&mut self) {
        let out = run_checked(
            Command::new(tool("icecc"))
                .arg("--build-native")
                .current_dir(self.dir.path()),
            BUILD_NATIVE,
        )
        .await;
        let tarball = std::fs::read_dir(self.dir.path())
            .expect("list the working folder")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.to_string_lossy().contains(".tar."))
            .unwrap_or_else(|| panic!("icecc --build-native made no tarball:\n{out}"));
        println!("environment: {}", tarball.display());
        self.env_tarball = Some(tarball);
    }

    async fn start_scheduler(&mut self, log_name: &str) {
        let log = self.path(&format!("{log_name}.log"));
        let child = spawn(
            Command::new(tool("icecc-scheduler"))
                .args(["-p", &SCHEDULER_PORT.to_string(), "-vvv", "-l"])
                .arg(&log),
        );
        self.logs.push(log);
        self.scheduler = Some(child);
        wait_for(
            "the scheduler's text port to answer",
            SCHEDULER_UP,
            || async move { listcs().await.ok() },
        )
        .await;
    }

    /// Stops the scheduler as a service manager would (SIGTERM) and waits
    /// for it to exit.
    async fn stop_scheduler(&mut self) {
        let mut child = self.scheduler.take().expect("a running scheduler");
        let pid = child.id().expect("the scheduler's pid");
        run_checked(
            Command::new("kill").args(["-TERM", &pid.to_string()]),
            Duration::from_secs(10),
        )
        .await;
        let status = tokio::time::timeout(SCHEDULER_EXIT, child.wait())
            .await
            .unwrap_or_else(|_| {
                panic!("the scheduler did not exit within {SCHEDULER_EXIT:?} of SIGTERM")
            })
            .expect("wait for the scheduler");
        println!("scheduler stopped: {status}");
    }

    /// Starts one daemon. Daemons log in on their own schedule: each
    /// retries every 3 s, and the scheduler completes one login handshake
    /// at a time.
    fn start_daemon(&mut self, spec: DaemonSpec) {
        let log = self.path(&format!("{}.log", spec.name));
        let mut cmd = Command::new(tool("iceccd"));
        cmd.env("ICECC_TESTS", "1")
            .env(
                "ICECC_TEST_SOCKET",
                self.path(&format!("{}.socket", spec.name)),
            )
            .arg("-s")
            .arg(format!("127.0.0.1:{SCHEDULER_PORT}"))
            .args([
                "-N",
                spec.name,
                "-p",
                &spec.port.to_string(),
                "-m",
                &spec.max_jobs.to_string(),
                "-vvv",
            ])
            .arg("-b")
            .arg(self.path(&format!("env-{}", spec.name)))
            .arg("-l")
            .arg(&log);
        if spec.no_remote {
            cmd.arg("--no-remote");
        }
        self.daemons.push((spec, spawn(&mut cmd)));
        self.logs.push(log);
    }

    async fn kill_daemon(&mut self, name: &str) {
        let at = self
            .daemons
            .iter()
            .position(|(d, _)| d.name == name)
            .expect("a daemon of that name");
        let (_, mut child) = self.daemons.remove(at);
        child.start_kill().expect("SIGKILL the daemon");
        let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
    }

    /// Compiles FILES good files, one broken file and a link through icecc,
    /// and returns what each icecc client reported.
    async fn build(&mut self) -> Build {
        let dir = self.dir.path().to_path_buf();
        for i in 0..FILES {
            let body = if i == 0 {
                "int main(void) { return 0; }\n".to_string()
            } else {
                format!(
                    "#include <stdio.h>\n\
                     static int f(int x) {{ return x * {i} + {i}; }}\n\
                     int g{i}(void) {{ return f({i}); }}\n"
                )
            };
            std::fs::write(dir.join(format!("src{i}.c")), body).expect("write a source file");
        }
        std::fs::write(dir.join("broken.c"), "int broken( { return 0 }\n").expect("write broken.c");

        // The good files, PARALLEL_COMPILES at a time. Left to itself the
        // scheduler sends nearly every job to the first server that has the
        // environment; ICECC_PREFERRED_HOST spreads them over all three.
        let servers: Vec<DaemonSpec> = DAEMONS.into_iter().filter(|d| d.max_jobs > 0).collect();
        let mut remote = Vec::new();
        let mut set = tokio::task::JoinSet::new();
        let mut next = 0;
        while next < FILES || !set.is_empty() {
            while next < FILES && set.len() < PARALLEL_COMPILES {
                let name = format!("src{next}");
                let server = servers[next % servers.len()];
                let mut cmd = self.icecc(
                    &name,
                    &[
                        "-O2",
                        "-c",
                        &format!("{name}.c"),
                        "-o",
                        &format!("{name}.o"),
                    ],
                );
                cmd.env("ICECC_PREFERRED_HOST", server.name);
                set.spawn(compile(cmd, name, server, dir.clone()));
                next += 1;
            }
            let (name, server, exit, log) = set
                .join_next()
                .await
                .expect("a compile")
                .expect("compile task");
            assert_eq!(
                exit,
                Some(0),
                "icecc failed to compile {name}.c; its log:\n{log}"
            );
            assert!(dir.join(format!("{name}.o")).is_file(), "no {name}.o");
            let (port, local) = client_report(&log);
            assert_eq!(
                port,
                Some(server.port),
                "{name}.c was not compiled by {}; icecc's log:\n{log}",
                server.name
            );
            assert!(
                !local,
                "{name}.c fell back to a local build; icecc's log:\n{log}"
            );
            remote.push(server.port);
        }

        // The broken file: the compile server reports the error, then icecc
        // compiles it again locally to show gcc's diagnostics as they are.
        let (_, (), exit, log) = compile(
            self.icecc("broken", &["-c", "broken.c", "-o", "broken.o"]),
            "broken".into(),
            (),
            dir.clone(),
        )
        .await;
        assert!(
            matches!(exit, Some(c) if c != 0),
            "icecc compiled broken.c ({exit:?}); its log:\n{log}"
        );
        let (failed_on, local) = client_report(&log);
        let failed_on = failed_on.unwrap_or_else(|| {
            panic!("broken.c was not sent to a compile server; icecc's log:\n{log}")
        });
        assert!(
            local,
            "icecc did not retry broken.c locally; its log:\n{log}"
        );

        // The link: always a local job.
        let mut args = vec!["-o".to_string(), "prog".to_string()];
        args.extend((0..FILES).map(|i| format!("src{i}.o")));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (_, (), exit, log) =
            compile(self.icecc("link", &args), "link".into(), (), dir.clone()).await;
        assert_eq!(exit, Some(0), "icecc failed to link; its log:\n{log}");
        assert!(dir.join("prog").is_file(), "the link made no program");

        Build { remote, failed_on }
    }

    /// `icecc gcc ARGS` as a client of the local daemon, logging to
    /// `icecc-NAME.log`.
    fn icecc(&self, name: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(tool("icecc"));
        cmd.current_dir(self.dir.path())
            .env(
                "ICECC_TEST_SOCKET",
                self.path(&format!("{CLIENT_DAEMON}.socket")),
            )
            .env("ICECC_TEST_REMOTEBUILD", "1")
            .env(
                "ICECC_VERSION",
                self.env_tarball.as_ref().expect("the environment tarball"),
            )
            .env("ICECC_DEBUG", "debug")
            .env("ICECC_LOGFILE", self.path(&format!("icecc-{name}.log")))
            .arg("gcc")
            .args(args);
        cmd
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for log in &self.logs {
                let text = std::fs::read_to_string(log).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(40).collect();
                eprintln!("---- last lines of {}", log.display());
                for line in tail.iter().rev() {
                    eprintln!("{line}");
                }
            }
        }
        let mut children: Vec<&mut Child> = self.daemons.iter_mut().map(|(_, c)| c).collect();
        children.extend(self.scheduler.as_mut());
        for child in &mut children {
            let _ = child.start_kill();
        }
        // Reap them (bounded); the PID namespace ends any that remain when
        // the test process exits.
        let until = Instant::now() + Duration::from_secs(5);
        for child in children {
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// Runs one icecc client; returns its name, `tag`, exit code and log.
async fn compile<T>(
    mut cmd: Command,
    name: String,
    tag: T,
    dir: PathBuf,
) -> (String, T, Option<i32>, String) {
    let out = tokio::time::timeout(
        ONE_COMPILE,
        cmd.kill_on_drop(true).stdin(Stdio::null()).output(),
    )
    .await
    .unwrap_or_else(|_| panic!("icecc did not finish {name} within {ONE_COMPILE:?}"))
    .expect("run icecc");
    let mut log =
        std::fs::read_to_string(dir.join(format!("icecc-{name}.log"))).unwrap_or_default();
    log.push_str(&String::from_utf8_lossy(&out.stderr));
    (name, tag, out.status.code(), log)
}

/// From an icecc client's debug log: the compile server it was told to use
/// (`Have to use host 127.0.0.1:PORT - Job ID: …`), and whether it then
/// compiled locally instead.
fn client_report(log: &str) -> (Option<u16>, bool) {
    let mut servers = log.lines().filter_map(|l| {
        let rest = l.split("Have to use host ").nth(1)?;
        let addr = rest.split_whitespace().next()?;
        addr.rsplit_once(':')?.1.parse::<u16>().ok()
    });
    let server = servers.next();
    assert!(
        servers.next().is_none(),
        "icecc used more than one compile server for one file:\n{log}"
    );
    let local = log.contains("local build forced") || log.contains("recompiling locally");
    (server, local)
}

fn spawn(cmd: &mut Command) -> Child {
    cmd.kill_on_drop(true)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("start {cmd:?}: {e}"))
}

/// Runs a command to its end (bounded); panics with its output if it fails.
async fn run_checked(cmd: &mut Command, limit: Duration) -> String {
    let out = tokio::time::timeout(limit, cmd.kill_on_drop(true).stdin(Stdio::null()).output())
        .await
        .unwrap_or_else(|_| panic!("{cmd:?} did not finish within {limit:?}"))
        .unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{text}",
        out.status
    );
    text
}

fn tool(name: &str) -> PathBuf {
    tool_path(name).unwrap_or_else(|| panic!("`{name}` is not installed"))
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .expect("chmod the working folder");
}

/// Polls `check` until it yields a value, for at most `limit`.
async fn wait_for<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One `listcs` line: a daemon as the scheduler knows it.
#[derive(Debug)]
struct Listed {
    name: String,
    max_jobs: u32,
}

/// Asks the scheduler's text port which daemons are logged in.
async fn listcs() -> Result<Vec<Listed>, String> {
    let ask = async {
        let stream = TcpStream::connect(("127.0.0.1", TEXT_PORT))
            .await
            .map_err(|e| e.to_string())?;
        let (read, mut write) = stream.into_split();
        let mut lines = BufReader::new(read).lines();
        loop {
            let line = lines
                .next_line()
                .await
                .map_err(|e| e.to_string())?
                .ok_or("closed in the greeting")?;
            if text::is_greeting_end(&line) {
                break;
            }
        }
        write
            .write_all(format!("{}\n", text::Command::ListCs).as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut listed = Vec::new();
        loop {
            let line = lines
                .next_line()
                .await
                .map_err(|e| e.to_string())?
                .ok_or("closed before `200 done`")?;
            if text::is_done(&line) {
                return Ok(listed);
            }
            if let Some(entry) = text::parse_listcs_line(&line) {
                listed.push(Listed {
                    name: entry.name.to_string(),
                    max_jobs: entry.max_jobs,
                });
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), ask)
        .await
        .map_err(|_| "no answer within 10 s".to_string())?
}

async fn listcs_names() -> Option<BTreeSet<String>> {
    Some(listcs().await.ok()?.into_iter().map(|l| l.name).collect())
}
