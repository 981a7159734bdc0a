//! Jobs as a timeline in the Chrome trace event format, which Perfetto
//! (ui.perfetto.dev) and chrome://tracing open: one complete event
//! (`"ph": "X"`) per job, a process per compiling host and a thread per
//! slot of it (lanes filled as ninjatracing does for ninja's jobs), the
//! submitter, the exit code and why it ended as arguments.

use super::query::JobRow;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{self, Write};

/// The process of jobs that never reached a server.
const UNPLACED: &str = "(not placed on a server)";

/// Writes `jobs` (in any order) as a trace: `{"traceEvents": [...]}`.
/// Times are microseconds since the first job began; the metadata event
/// `icewatch` carries that moment in ms since the epoch.
pub fn write_trace(jobs: &[JobRow], mut out: impl Write) -> io::Result<()> {
    let mut order: Vec<&JobRow> = jobs.iter().collect();
    order.sort_by_key(|j| (j.start_ms, j.end_ms, j.seq));
    let t0 = order.first().map_or(0, |j| j.start_ms);
    // Hosts by name, each with the end of its lanes so far.
    let mut hosts: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    let mut placed = Vec::with_capacity(order.len());
    for job in &order {
        let host = job.server_name.as_deref().unwrap_or(UNPLACED);
        let lanes = hosts.entry(host).or_default();
        let lane = match lanes.iter().position(|&end| end <= job.start_ms) {
            Some(free) => free,
            None => {
                lanes.push(0);
                lanes.len() - 1
            }
        };
        lanes[lane] = job.end_ms.max(job.start_ms);
        placed.push((host, lane));
    }
    let pids: BTreeMap<&str, usize> = hosts.keys().enumerate().map(|(i, h)| (*h, i + 1)).collect();
    let mut events: Vec<Value> = Vec::with_capacity(order.len() + hosts.len() * 4);
    events.push(json!({
        "name": "icewatch", "ph": "M", "pid": 0, "tid": 0,
        "args": {"start_ms": t0, "jobs": order.len()},
    }));
    for (host, lanes) in &hosts {
        let pid = pids[host];
        events.push(json!({"name": "process_name", "ph": "M", "pid": pid, "args": {"name": host}}));
        events.push(json!({"name": "process_sort_index", "ph": "M", "pid": pid, "args": {"sort_index": pid}}));
        for lane in 0..lanes.len() {
            events.push(json!({
                "name": "thread_name", "ph": "M", "pid": pid, "tid": lane + 1,
                "args": {"name": format!("slot {}", lane + 1)},
            }));
        }
    }
    let micros = |ms: u64| ms.saturating_sub(t0).saturating_mul(1000);
    for (job, (host, lane)) in order.iter().zip(placed) {
        events.push(json!({
            "name": short_name(&job.file),
            "cat": job.state,
            "ph": "X",
            "ts": micros(job.start_ms),
            "dur": job.end_ms.saturating_sub(job.start_ms).saturating_mul(1000),
            "pid": pids[host],
            "tid": lane + 1,
            "args": {
                "file": job.file,
                "submitter": job.client_name,
                "exit_code": job.exit_code,
                "state": job.state,
                "reason": job.reason,
                "job": job.id,
                "session": job.session,
            },
        }));
    }
    serde_json::to_writer(
        &mut out,
        &json!({"traceEvents": events, "displayTimeUnit": "ms"}),
    )?;
    writeln!(out)
}

/// A file's last component, which is what fits on a slice.
fn short_name(file: &str) -> &str {
    match file.rsplit('/').next() {
        Some(name) if !name.is_empty() => name,
        _ => file,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(
        seq: i64,
        server: Option<&str>,
        start_ms: u64,
        end_ms: u64,
        exit: Option<i32>,
    ) -> JobRow {
        JobRow {
            seq,
            id: seq as u32,
            session: 1,
            scheduler: None,
            file: format!("src/f{seq}.cpp"),
            lang: Some("C++".into()),
            client: Some(1),
            client_name: Some("alpha".into()),
            server: Some(2),
            server_name: server.map(str::to_owned),
            state: if exit == Some(0) {
                "finished"
            } else {
                "failed"
            }
            .into(),
            reason: "exit".into(),
            submit_ms: None,
            start_ms,
            end_ms,
            exit_code: exit,
            real_ms: None,
            user_ms: None,
            sys_ms: None,
            page_faults: None,
            in_compressed: None,
            in_uncompressed: None,
            out_compressed: None,
            out_uncompressed: None,
        }
    }

    #[test]
    fn each_job_is_a_complete_event_on_a_lane_of_its_server_that_it_has_alone() {
        let jobs = [
            job(1, Some("beta"), 1_000, 3_000, Some(0)),
            job(2, Some("beta"), 1_500, 2_000, Some(1)),
            job(3, Some("beta"), 2_000, 2_500, Some(0)),
            job(4, Some("gamma"), 1_200, 1_300, Some(0)),
            job(5, None, 1_100, 1_100, None),
        ];
        let mut out = Vec::new();
        write_trace(&jobs, &mut out).unwrap();
        let trace: Value = serde_json::from_slice(&out).unwrap();
        let events = trace["traceEvents"].as_array().unwrap();
        let complete: Vec<&Value> = events.iter().filter(|e| e["ph"] == "X").collect();
        assert_eq!(complete.len(), 5);
        let named = |pid: &Value| {
            events
                .iter()
                .find(|e| e["name"] == "process_name" && &e["pid"] == pid)
                .map(|e| e["args"]["name"].as_str().unwrap().to_owned())
        };
        let mut lanes: BTreeMap<(String, u64), Vec<(u64, u64)>> = BTreeMap::new();
        for e in &complete {
            for key in ["name", "ts", "dur", "pid", "tid"] {
                assert!(!e[key].is_null(), "{key} in {e}");
            }
            assert_eq!(e["args"]["submitter"], "alpha");
            assert!(e["args"].get("exit_code").is_some());
            let host = named(&e["pid"]).expect("every pid is named");
            let thread = events.iter().any(|t| {
                t["name"] == "thread_name" && t["pid"] == e["pid"] && t["tid"] == e["tid"]
            });
            assert!(thread, "every lane is named: {e}");
            let (ts, dur) = (e["ts"].as_u64().unwrap(), e["dur"].as_u64().unwrap());
            lanes
                .entry((host, e["tid"].as_u64().unwrap()))
                .or_default()
                .push((ts, ts + dur));
        }
        for (lane, mut spans) in lanes {
            spans.sort_unstable();
            assert!(
                spans.windows(2).all(|w| w[0].1 <= w[1].0),
                "{lane:?} {spans:?}"
            );
        }
        let first = complete.iter().find(|e| e["args"]["job"] == 1).unwrap();
        assert_eq!(
            (first["ts"].as_u64(), first["dur"].as_u64()),
            (Some(0), Some(2_000_000))
        );
        assert_eq!(first["name"], "f1.cpp");
        assert_eq!(first["args"]["exit_code"], 0);
        let beta_lanes = events
            .iter()
            .filter(|t| t["name"] == "thread_name" && named(&t["pid"]).as_deref() == Some("beta"))
            .count();
        assert_eq!(beta_lanes, 2, "job 3 takes the lane job 2 left");
        assert!(
            named(&complete.iter().find(|e| e["args"]["job"] == 5).unwrap()["pid"])
                .is_some_and(|h| h == UNPLACED)
        );
    }
}
