//! `GET /metrics`: the cluster and the fan-out in Prometheus' text format,
//! read from the state at each scrape (prometheus-client's [`Collector`]).
//!
//! Counters come from the monitor's session counters, so they restart from
//! zero when icewatch reconnects to a new scheduler session; Prometheus'
//! `rate()` and `increase()` treat such a drop as a counter reset.

use super::websocket::Hub;
use crate::monitor::State;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
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
    let first = ConstGauge::new(0i64);
    let mut family = e.encode_descriptor(name, help, None, first.metric_type())?;
    for row in rows {
        ConstGauge::new(value(row)).encode(family.encode_family(&row.labels)?)?;
    }
    Ok(())
}

impl Collector for ClusterCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> fmt::Result {
        let (scheduler, totals, rows) = {
            let state = self.hub.state();
            let mut rows: Vec<HostRow> = state
                .hosts()
                .filter(|h| h.online)
                .map(|h| HostRow {
                    labels: [("id", h.id.to_string()), ("host", h.name.to_string())],
                    load: f64::from(h.load) / 1000.0,
                    active: i64::from(h.active),
                    max_jobs: i64::from(h.max_jobs),
                })
                .collect();
            rows.sort_unstable_by(|a, b| a.labels.cmp(&b.labels));
            (state.scheduler().clone(), state.totals(), rows)
        };
        let e = &mut e;
        gauge(
            e,
            "scheduler_connected",
            "1 while a scheduler session is up",
            i64::from(scheduler.online),
        )?;
        counter(
            e,
            "scheduler_reconnects",
            "Scheduler sessions started after the first",
            scheduler.reconnects,
        )?;
        gauge(
            e,
            "hosts_online",
            "Hosts online",
            i64::from(totals.hosts_online),
        )?;
        gauge(
            e,
            "slots",
            "Job slots of online hosts, no-remote hosts included",
            totals.total_slots as i64,
        )?;
        gauge(
            e,
            "slots_busy",
            "Jobs compiling on known hosts, remote and local",
            totals.busy_slots as i64,
        )?;
        gauge(
            e,
            "jobs_active",
            "Jobs compiling, remote and local",
            totals.active as i64,
        )?;
        gauge(
            e,
            "jobs_local_active",
            "Local jobs compiling",
            totals.local_active as i64,
        )?;
        gauge(
            e,
            "jobs_pending",
            "Jobs waiting for a server",
            totals.pending as i64,
        )?;
        counter(
            e,
            "jobs_finished",
            "Remote jobs that ended with exit code 0 (this scheduler session)",
            totals.jobs_finished,
        )?;
        counter(
            e,
            "jobs_failed",
            "Remote jobs that ended otherwise (this scheduler session)",
            totals.jobs_failed,
        )?;
        counter(
            e,
            "local_jobs_finished",
            "Local jobs that ended (this scheduler session)",
            totals.local_jobs_finished,
        )?;
        gauge(
            e,
            "jobs_per_minute",
            "Jobs that ended in the last minute",
            totals.jobs_per_minute,
        )?;
        counter(
            e,
            "unknown_jobs",
            "Messages about jobs never seen begin",
            totals.unknown_jobs,
        )?;
        counter(
            e,
            "invalid_messages",
            "Scheduler messages that did not decode",
            totals.invalid_messages,
        )?;
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
        let stats = self.hub.stats();
        gauge(
            e,
            "websocket_clients",
            "WebSocket clients connected",
            stats.clients.load(Relaxed) as i64,
        )?;
        counter(
            e,
            "websocket_diffs",
            "Diff messages rendered and broadcast",
            stats.diffs.load(Relaxed),
        )?;
        counter(
            e,
            "websocket_snapshots",
            "Snapshot messages sent",
            stats.snapshots.load(Relaxed),
        )?;
        counter(
            e,
            "websocket_resyncs",
            "Snapshots sent to clients that fell behind",
            stats.resyncs.load(Relaxed),
        )?;
        counter(
            e,
            "websocket_timeouts",
            "Clients dropped because their socket stayed blocked",
            stats.timeouts.load(Relaxed),
        )?;
        counter(
            e,
            "websocket_sent_bytes",
            "Bytes of messages handed to client sockets",
            stats.bytes_sent.load(Relaxed),
        )?;
        Ok(())
    }
}
