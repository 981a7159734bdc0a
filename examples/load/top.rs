//! `top`: what `icewatch top` costs, in a real terminal (tmux, 200×50).
//! For each case, `icewatch demo --as-scheduler --hosts N --seed 1` is the
//! scheduler, at a rate of messages per second that a counting monitor
//! beside top measures over the same window; top runs either logged in to
//! it itself (`top ADDR`) or reading the WebSocket of an `icewatch
//! monitor` logged in to it (`top --server URL`). After a warm-up, top's
//! CPU time (user + sys of its process, all threads, from /proc) is read
//! over `--seconds`, as a share of one core. Cases: idle (the demo at 0.01
//! messages per second: hosts, no builds) and busy (`--rate`).

use super::{cpu, page_addr, spawn_icewatch, stop};
use anyhow::{bail, ensure, Context, Result};
use icewatch::protocol::frame::{parse_frame, FrameError, MAX_MSG_SIZE};
use icewatch::protocol::handshake::handshake_blocking;
use icewatch::protocol::PROTOCOL_VERSION;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::thread;
use std::time::{Duration, Instant};

/// What the run was asked to measure.
pub struct TopLoad {
    pub hosts: u32,
    pub rate: u64,
    pub seconds: u64,
    pub runs: usize,
}

/// One measurement.
struct Measured {
    case: &'static str,
    mode: &'static str,
    /// Messages per second a monitor received over the window.
    rate: f64,
    /// top's CPU over the window, percent of one core.
    cpu_pct: f64,
}

pub fn run(bin: &Path, load: &TopLoad) -> Result<()> {
    ensure!(
        Command::new("tmux")
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success()),
        "the top benchmark runs icewatch top in tmux: install tmux"
    );
    println!(
        "icewatch top at 200x50, {} hosts, {} s a window, {} runs; {}",
        load.hosts,
        load.seconds,
        load.runs,
        super::load_average()
    );
    let mut all = Vec::new();
    for run in 1..=load.runs {
        for (case, rate) in [
            ("idle", "0.01".to_string()),
            ("busy", load.rate.to_string()),
        ] {
            for mode in ["direct", "server"] {
                let m = measure(bin, load, case, &rate, mode)?;
                println!(
                    "run {run}: {case:>4}, {mode:>6}: {:>7.0} messages/s received, top {:.2} % of a core",
                    m.rate, m.cpu_pct
                );
                all.push(m);
            }
        }
    }
    for case in ["idle", "busy"] {
        for mode in ["direct", "server"] {
            let rows: Vec<&Measured> = all
                .iter()
                .filter(|m| m.case == case && m.mode == mode)
                .collect();
            let mut cpu: Vec<f64> = rows.iter().map(|m| m.cpu_pct).collect();
            cpu.sort_by(f64::total_cmp);
            let mut rate: Vec<f64> = rows.iter().map(|m| m.rate).collect();
            rate.sort_by(f64::total_cmp);
            println!(
                "{case}, {mode}: top CPU median {:.2} % (min {:.2}, max {:.2}) at a median {:.0} messages/s (n={})",
                cpu[cpu.len() / 2],
                cpu[0],
                cpu[cpu.len() - 1],
                rate[rate.len() / 2],
                cpu.len()
            );
        }
    }
    println!("after: {}", super::load_average());
    Ok(())
}

fn measure(
    bin: &Path,
    load: &TopLoad,
    case: &'static str,
    rate: &str,
    mode: &'static str,
) -> Result<Measured> {
    let hosts = load.hosts.to_string();
    let mut demo = spawn_icewatch(
        bin,
        &[
            "demo",
            "--as-scheduler",
            "--port",
            "0",
            "--hosts",
            &hosts,
            "--seed",
            "1",
            "--rate",
            rate,
        ],
    )?;
    let scheduler = scheduler_addr(&mut demo)?;
    let mut page = None;
    let command = match mode {
        "direct" => format!("exec {} top {scheduler}", bin.display()),
        _ => {
            let mut monitor = spawn_icewatch(
                bin,
                &[
                    "monitor",
                    &scheduler.to_string(),
                    "--listen",
                    "127.0.0.1:0",
                    "--db",
                    "none",
                ],
            )?;
            let addr = page_addr(&mut monitor)?;
            page = Some(monitor);
            format!("exec {} top --server http://{addr}/", bin.display())
        }
    };
    let term = Term::start(&command)?;
    let result = (|| {
        term.wait_for("ONLINE")?;
        let pid = term.pid()?;
        // Warm-up: the first snapshot, the hosts' first statistics.
        thread::sleep(Duration::from_secs(3));
        let window = Duration::from_secs(load.seconds);
        let counter = thread::spawn(move || count_messages(scheduler, window));
        let before = cpu(pid)?;
        let t = Instant::now();
        thread::sleep(window);
        let after = cpu(pid)?;
        let wall = t.elapsed().as_secs_f64();
        let received = counter
            .join()
            .map_err(|_| anyhow::anyhow!("the counter panicked"))??;
        Ok(Measured {
            case,
            mode,
            rate: received as f64 / window.as_secs_f64(),
            cpu_pct: (after.1 - before.1) as f64 / 1e9 / wall * 100.0,
        })
    })();
    drop(term);
    if let Some(p) = page {
        stop(p);
    }
    stop(demo);
    result
}

/// The address on the first line of `demo --as-scheduler`.
fn scheduler_addr(child: &mut Child) -> Result<SocketAddr> {
    let mut out = BufReader::new(child.stdout.take().context("stdout")?);
    let mut line = String::new();
    out.read_line(&mut line)?;
    thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    line.rsplit(' ')
        .next()
        .and_then(|a| a.trim().parse().ok())
        .with_context(|| format!("no address in {line:?}"))
}

/// Messages a monitor logged in to `addr` receives within `window`.
fn count_messages(addr: SocketAddr, window: Duration) -> Result<u64> {
    let mut stream = TcpStream::connect(addr)?;
    handshake_blocking(&mut stream, PROTOCOL_VERSION)?;
    stream.write_all(&[0, 0, 0, 4, 0, 0, 0, 0x52])?;
    stream.set_read_timeout(Some(Duration::from_millis(100)))?;
    // The login burst (every host's statistics) is not the steady rate.
    let start = Instant::now() + Duration::from_secs(1);
    let end = start + window;
    let mut buf = vec![0u8; 1 << 20];
    let (mut filled, mut seen) = (0usize, 0u64);
    while Instant::now() < end {
        match stream.read(&mut buf[filled..]) {
            Ok(0) => bail!("the demo closed"),
            Ok(n) => filled += n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(e) => return Err(e.into()),
        }
        let mut input = &buf[..filled];
        loop {
            match parse_frame(input, MAX_MSG_SIZE) {
                Ok((rest, _)) => {
                    if Instant::now() >= start {
                        seen += 1;
                    }
                    input = rest;
                }
                Err(FrameError::Incomplete { .. }) => break,
                Err(e) => bail!("{e}"),
            }
        }
        let used = filled - input.len();
        buf.copy_within(used..filled, 0);
        filled -= used;
        if filled == buf.len() {
            buf.resize(buf.len() * 2, 0);
        }
    }
    Ok(seen)
}

/// A tmux server of its own running one command at 200×50.
struct Term {
    socket: String,
}

impl Term {
    fn start(command: &str) -> Result<Term> {
        // A server of its own each time: the last one may still be going.
        static STARTED: AtomicUsize = AtomicUsize::new(0);
        let n = STARTED.fetch_add(1, Relaxed);
        let socket = format!("icewatch-load-top-{}-{n}", std::process::id());
        let status = Command::new("tmux")
            .args([
                "-L",
                &socket,
                "-f",
                "/dev/null",
                "new-session",
                "-d",
                "-x",
                "200",
                "-y",
                "50",
            ])
            .arg(command)
            .status()?;
        ensure!(status.success(), "tmux new-session");
        Ok(Term { socket })
    }

    fn tmux(&self, args: &[&str]) -> Result<String> {
        let out = Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .output()?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn pid(&self) -> Result<u32> {
        Ok(self
            .tmux(&["display-message", "-p", "#{pane_pid}"])?
            .trim()
            .parse()?)
    }

    /// Polls the screen until it shows `text`, for a minute at most.
    fn wait_for(&self, text: &str) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.tmux(&["capture-pane", "-p"])?.contains(text) {
            ensure!(Instant::now() < deadline, "top never showed {text:?}");
            thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }
}

impl Drop for Term {
    fn drop(&mut self) {
        let _ = self.tmux(&["kill-server"]);
    }
}
