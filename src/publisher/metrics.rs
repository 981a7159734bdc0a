//! `GET /metrics`: the cluster and the fan-out in Prometheus' text format,
//! read from the state at each scrape (prometheus-client's [`Collector`]).
//!
//! Counters only grow for the life of the process: they go on across
//! scheduler restarts and reconnections (a new scheduler session starts
//! only the gauges from nothing).

use super::websocket::Hub;
use crate::monitor::State;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use std::fmt;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

/// The content type of [`encode`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A registry holding the icewatch collector for `hub`.
pub fn registry(hub: Arc<Hub<State>>) -> Registry {
    let mut registry = Registry::with_prefix("icewatch");
    registry.register_collector(Box::new(ClusterCollector { hub }));
    registry
}

/// The registry's metrics as text.
pub fn encode(registry: &Registry) -> Result<String, fmt::Error> {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry)?;
    Ok(text)
}

struct ClusterCollector {
    hub: Arc<Hub<State>>,
}

impl fmt::Debug for ClusterCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClusterCollector")
    }
}

/// One host's numbers, copied out so the lock is not held while encoding.
struct HostRow {
    labels: [(&'static str, String); 2],
    load: f64,
    active: i64,
    max_jobs: i64,
}

fn gauge<N>(e: &mut DescriptorEncoder, name: &str, help: &str, v: N) -> fmt::Result
where
    ConstGauge<N>: EncodeMetric,
{
    let g = ConstGauge::new(v);
    g.encode(e.encode_descriptor(name, help, None, g.metric_type())?)
}

fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> fmt::Result {
    let c = ConstCounter::new(v);
    c.encode(e.encode_descriptor(name, help, None, c.metric_type())?)
}

fn per_host<N>(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: &[HostRow],
    value: impl Fn(&HostRow) -> N,
) -> fmt::Result
where
    ConstGauge<N>: EncodeMetric,
{
    let mut family = e.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for row in rows {
        ConstGauge::new(value(row)).encode(family.encode_family(&row.labels)?)?;
    }
    Ok(())
}

impl Collector for ClusterCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> fmt::Result {
        let (scheduler, t, rows) = {
            let state = self.hub.state();
            let mut hosts: Vec<_> = state.hosts().filter(|h| h.online).collect();
            hosts.sort_unstable_by_key(|h| h.id);
            let rows: Vec<HostRow> = hosts
                .iter()
                .map(|h| HostRow {
                    labels: [("id", h.id.to_string()), ("host", h.name.to_string())],
                    load: f64::from(h.load) / 1000.0,
                    active: i64::from(h.active),
                    max_jobs: i64::from(h.max_jobs),
                })
                .collect();
            (state.scheduler().clone(), state.totals(), rows)
        };
        let fan_out = self.hub.stats();
        let n = |v: &std::sync::atomic::AtomicU64| v.load(Relaxed);
        let gauges: [(&str, &str, i64); 8] = [
            (
                "scheduler_connected",
                "1 while a scheduler session is up",
                i64::from(scheduler.online),
            ),
            ("hosts_online", "Hosts online", i64::from(t.hosts_online)),
            (
                "slots",
                "Job slots of online hosts, no-remote hosts included",
                t.total_slots as i64,
            ),
            (
                "slots_busy",
                "Jobs compiling on known hosts, remote and local",
                t.busy_slots as i64,
            ),
            (
                "jobs_active",
                "Jobs compiling, remote and local",
                t.active as i64,
            ),
            (
                "jobs_local_active",
                "Local jobs compiling",
                t.local_active as i64,
            ),
            (
                "jobs_pending",
                "Jobs waiting for a server",
                t.pending as i64,
            ),
            (
                "websocket_clients",
                "WebSocket clients connected",
                n(&fan_out.clients) as i64,
            ),
        ];
        let counters: [(&str, &str, u64); 12] = [
            (
                "scheduler_reconnects",
                "Scheduler sessions started after the first",
                scheduler.reconnects,
            ),
            (
                "jobs_finished",
                "Remote jobs whose compiler exited with 0",
                t.jobs_finished,
            ),
            (
                "jobs_failed",
                "Remote jobs whose compiler exited with another code",
                t.jobs_failed,
            ),
            (
                "jobs_cut_short",
                "Remote jobs ended without the compiler's verdict (host left, scheduler lost, stale)",
                t.jobs_cut_short,
            ),
            (
                "local_jobs_finished",
                "Local jobs that ended",
                t.local_jobs_finished,
            ),
            (
                "unknown_jobs",
                "Messages about jobs never seen begin",
                t.unknown_jobs,
            ),
            (
                "invalid_messages",
                "Scheduler messages that did not decode",
                t.invalid_messages,
            ),
            (
                "websocket_diffs",
                "Diff messages rendered and broadcast",
                n(&fan_out.diffs),
            ),
            (
                "websocket_snapshots",
                "Snapshot messages sent",
                n(&fan_out.snapshots),
            ),
            (
                "websocket_resyncs",
                "Snapshots sent to clients that fell behind",
                n(&fan_out.resyncs),
            ),
            (
                "websocket_timeouts",
                "Clients dropped because their socket stayed blocked",
                n(&fan_out.timeouts),
            ),
            (
                "websocket_sent_bytes",
                "Bytes of messages handed to client sockets",
                n(&fan_out.bytes_sent),
            ),
        ];
        let e = &mut e;
        for (name, help, value) in gauges {
            gauge(e, name, help, value)?;
        }
        gauge(
            e,
            "jobs_per_minute",
            "Jobs that ended in the last minute",
            t.jobs_per_minute,
        )?;
        for (name, help, value) in counters {
            counter(e, name, help, value)?;
        }
        per_host(
            e,
            "host_load",
            "A host's load as it reports it, 0 to 1",
            &rows,
            |r| r.load,
        )?;
        per_host(
            e,
            "host_active_jobs",
            "Jobs compiling on a host",
            &rows,
            |r| r.active,
        )?;
        per_host(e, "host_slots", "A host's job slots", &rows, |r| r.max_jobs)?;
        Ok(())
    }
}
