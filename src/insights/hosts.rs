//! Hosts that hurt builds (`docs/insights.md` states each threshold):
//! a server whose jobs fail or are cut short far more often than the
//! rest's, one much slower per byte compiled than the cluster's median,
//! hosts whose protocol or features differ from most, and hosts that keep
//! leaving and joining.

use super::{Finished, HostSpan};
use serde::Serialize;
use std::collections::BTreeMap;

/// A server is judged on at least this many jobs.
pub const MIN_JOBS: usize = 5;
/// Its failed and cut-short jobs must be at least this many...
pub const MIN_BAD: usize = 3;
/// ...their share at least this many times the other servers' share...
pub const BAD_RATIO: f64 = 3.0;
/// ...and at least this much above it.
pub const BAD_MARGIN: f64 = 0.1;
/// Its median time per byte at least this many times the cluster's median.
pub const SLOW_RATIO: f64 = 2.0;
/// Logins within [`FLAP_WINDOW_MS`] that make a host one that keeps
/// leaving and joining.
pub const FLAP_LOGINS: usize = 3;
/// The window of [`FLAP_LOGINS`].
pub const FLAP_WINDOW_MS: u64 = 3_600_000;

/// A host flagged as hurting builds.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HostFlag {
    /// Its name.
    pub host: String,
    /// Which rule: `failing`, `slow`, `protocol`, `features`, `flapping`.
    pub kind: &'static str,
    /// Its number (share of bad jobs, ms per MiB, protocol, logins).
    pub value: f64,
    /// What it is compared with (the others' share, the cluster's median,
    /// the most common protocol, the login threshold).
    pub baseline: f64,
    /// One line for people.
    pub detail: String,
}

/// The flags of the servers of `jobs` and the hosts of `hosts`, as of
/// `now_ms`, ordered by host and rule.
pub fn flag_hosts(jobs: &[Finished], hosts: &[HostSpan], now_ms: u64) -> Vec<HostFlag> {
    let mut out = failing(jobs);
    out.extend(slow(jobs));
    out.extend(differing(hosts, now_ms));
    out.extend(flapping(hosts, now_ms));
    out.sort_by(|a, b| (&a.host, a.kind).cmp(&(&b.host, b.kind)));
    out
}

fn failing(jobs: &[Finished]) -> Vec<HostFlag> {
    let mut by: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for j in jobs.iter().filter(|j| !j.is_local()) {
        if let Some(server) = j.server.as_deref() {
            let e = by.entry(server).or_default();
            e.0 += 1;
            e.1 += usize::from(j.failed() || j.cut_short());
        }
    }
    let (all, all_bad) = by
        .values()
        .fold((0, 0), |(n, b), &(jn, jb)| (n + jn, b + jb));
    by.iter()
        .filter_map(|(&host, &(n, bad))| {
            let (rest, rest_bad) = (all - n, all_bad - bad);
            if n < MIN_JOBS || bad < MIN_BAD || rest == 0 {
                return None;
            }
            let share = bad as f64 / n as f64;
            let others = rest_bad as f64 / rest as f64;
            (share >= BAD_RATIO * others && share >= others + BAD_MARGIN).then(|| HostFlag {
                host: host.to_owned(),
                kind: "failing",
                value: share,
                baseline: others,
                detail: format!(
                    "{bad} of its {n} jobs failed or were cut short ({:.0}%), against {:.0}% \
                     on the other servers",
                    share * 100.0,
                    others * 100.0
                ),
            })
        })
        .collect()
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    v.sort_by(f64::total_cmp);
    v.get(v.len().checked_sub(1)? / 2).copied()
}

fn slow(jobs: &[Finished]) -> Vec<HostFlag> {
    let mut by: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for j in jobs
        .iter()
        .filter(|j| j.state == crate::monitor::JobState::Finished)
    {
        if let (Some(server), Some(ms), Some(bytes)) =
            (j.server.as_deref(), j.real_ms, j.in_uncompressed)
        {
            if bytes > 0 {
                let per_mib = f64::from(ms) * f64::from(1u32 << 20) / f64::from(bytes);
                by.entry(server).or_default().push(per_mib);
            }
        }
    }
    let medians: BTreeMap<&str, f64> = by
        .into_iter()
        .filter(|(_, v)| v.len() >= MIN_JOBS)
        .filter_map(|(h, v)| Some((h, median(v)?)))
        .collect();
    if medians.len() < 3 {
        return Vec::new();
    }
    let Some(cluster) = median(medians.values().copied().collect()) else {
        return Vec::new();
    };
    medians
        .into_iter()
        .filter(|&(_, m)| cluster > 0.0 && m >= SLOW_RATIO * cluster)
        .map(|(host, m)| HostFlag {
            host: host.to_owned(),
            kind: "slow",
            value: m,
            baseline: cluster,
            detail: format!(
                "{m:.0} ms per MiB of source at the median, {:.1}× the cluster's {cluster:.0}",
                m / cluster
            ),
        })
        .collect()
}

/// The latest session of each host logged in at `now_ms`.
fn online(hosts: &[HostSpan], now_ms: u64) -> BTreeMap<&str, &HostSpan> {
    let mut by = BTreeMap::new();
    for h in hosts.iter().filter(|h| h.online_at(now_ms)) {
        let e = by.entry(h.name.as_str()).or_insert(h);
        if h.login_ms > e.login_ms {
            *e = h;
        }
    }
    by
}

fn differing(hosts: &[HostSpan], now_ms: u64) -> Vec<HostFlag> {
    let on = online(hosts, now_ms);
    if on.len() < 3 {
        return Vec::new();
    }
    let features = |h: &HostSpan| {
        let mut f: Vec<&str> = h.features.split_whitespace().collect();
        f.sort_unstable();
        f.join(" ")
    };
    let mut protocols: BTreeMap<u32, usize> = BTreeMap::new();
    let mut feature_sets: BTreeMap<String, usize> = BTreeMap::new();
    for h in on.values() {
        *protocols.entry(h.protocol).or_default() += 1;
        *feature_sets.entry(features(h)).or_default() += 1;
    }
    let hosts_online = on.len();
    let most = |counts: &mut dyn Iterator<Item = &usize>| {
        counts.max().copied().unwrap_or(0) * 2 > hosts_online
    };
    let (protocol_usual, features_usual) = (
        most(&mut protocols.values()),
        most(&mut feature_sets.values()),
    );
    let usual_protocol = protocols.iter().max_by_key(|(_, n)| **n).map(|(p, _)| *p);
    let usual_features = feature_sets
        .iter()
        .max_by_key(|(_, n)| **n)
        .map(|(f, _)| f.clone());
    let mut out = Vec::new();
    for (name, h) in on {
        if let Some(p) = usual_protocol.filter(|&p| protocol_usual && p != h.protocol) {
            out.push(HostFlag {
                host: name.to_owned(),
                kind: "protocol",
                value: f64::from(h.protocol),
                baseline: f64::from(p),
                detail: format!("speaks protocol {} where most hosts speak {p}", h.protocol),
            });
        }
        if let Some(f) = usual_features
            .as_ref()
            .filter(|f| features_usual && **f != features(h))
        {
            out.push(HostFlag {
                host: name.to_owned(),
                kind: "features",
                value: 0.0,
                baseline: 0.0,
                detail: format!("has features \"{}\" where most have \"{f}\"", features(h)),
            });
        }
    }
    out
}

fn flapping(hosts: &[HostSpan], now_ms: u64) -> Vec<HostFlag> {
    let since = now_ms.saturating_sub(FLAP_WINDOW_MS);
    let mut logins: BTreeMap<&str, usize> = BTreeMap::new();
    for h in hosts.iter().filter(|h| h.login_ms >= since) {
        *logins.entry(h.name.as_str()).or_default() += 1;
    }
    logins
        .into_iter()
        .filter(|&(_, n)| n >= FLAP_LOGINS)
        .map(|(host, n)| HostFlag {
            host: host.to_owned(),
            kind: "flapping",
            value: n as f64,
            baseline: FLAP_LOGINS as f64,
            detail: format!("logged in {n} times in the last hour"),
        })
        .collect()
}
