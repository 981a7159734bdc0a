//! Why a build did not distribute: each [`Reason`] a rule of
//! `docs/insights.md`, given only when the jobs and host sessions show
//! it, with the evidence. The monitor's messages carry who submitted a
//! job, which server the scheduler chose and when, how it ended, and each
//! host's platform, protocol, slots and `--no-remote`; not the compiler
//! environment a job needs, nor why the scheduler chose as it did. The
//! reasons say what was seen, and no more.

use super::{Finished, HostSpan};
use crate::monitor::EndReason;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

/// One reason a build did not distribute, with its evidence.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Reason {
    /// Which rule (one of [`KINDS`]).
    pub kind: &'static str,
    /// Jobs of the build it concerns.
    pub jobs: u64,
    /// One line for people.
    pub summary: String,
    /// What shows it: jobs, hosts, counts.
    pub evidence: Vec<String>,
}

/// Every rule, as [`Reason::kind`] names it.
pub const KINDS: [&str; 6] = [
    "cluster_full",
    "given_back",
    "local_unasked",
    "retried_locally",
    "servers_left",
    "few_eligible",
];

/// A [`Reason`] as JSON has it (the history's `builds.details`).
#[derive(Deserialize)]
struct ReasonRead {
    kind: String,
    jobs: u64,
    summary: String,
    evidence: Vec<String>,
}

impl<'de> Deserialize<'de> for Reason {
    /// The reason, if its rule is one of [`KINDS`].
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Reason, D::Error> {
        let r = ReasonRead::deserialize(d)?;
        let kind = KINDS
            .into_iter()
            .find(|k| *k == r.kind)
            .ok_or_else(|| serde::de::Error::custom(format!("no rule {:?}", r.kind)))?;
        Ok(Reason {
            kind,
            jobs: r.jobs,
            summary: r.summary,
            evidence: r.evidence,
        })
    }
}

/// At most this many examples in a reason's evidence.
const EXAMPLES: usize = 3;

/// The reasons `build` (the jobs of one build) did not distribute, read
/// against what the cluster was doing (every job of the time, for the
/// slots in use, and the host sessions); `gap_ms` is the build gap.
pub fn why(build: &[&Finished], cluster: &Cluster<'_>, gap_ms: u64) -> Vec<Reason> {
    let Some(first) = build.first() else {
        return Vec::new();
    };
    let submitter = first.client.as_deref().unwrap_or("?");
    let mut out = Vec::new();
    out.extend(cluster_full(build, cluster));
    out.extend(given_back(build, submitter));
    let retries = retried_locally(build, gap_ms);
    let retry_ends: Vec<usize> = retries.iter().map(|&(_, local)| local).collect();
    out.extend(local_unasked(build, &retry_ends));
    if !retries.is_empty() {
        let evidence = retries
            .iter()
            .take(EXAMPLES)
            .map(|&(remote, local)| {
                let (r, l) = (build[remote], build[local]);
                let how = match (r.failed(), r.exit_code) {
                    (true, Some(code)) => format!("failed with exit code {code}"),
                    _ => format!("was cut short ({})", r.reason.name()),
                };
                format!(
                    "{} {how} on {}, then {} ran locally",
                    r.file,
                    r.server.as_deref().unwrap_or("?"),
                    l.file
                )
            })
            .collect();
        out.push(Reason {
            kind: "retried_locally",
            jobs: retries.len() as u64,
            summary: format!(
                "{} remote compile{} failed and {} retried on {submitter} itself",
                retries.len(),
                plural(retries.len()),
                if retries.len() == 1 { "was" } else { "were" }
            ),
            evidence,
        });
    }
    out.extend(servers_left(build));
    out.extend(few_eligible(build, submitter, cluster.hosts));
    out
}

/// The files of the first few of `jobs`, for people.
fn examples(jobs: &[&&Finished]) -> String {
    let files: Vec<&str> = jobs
        .iter()
        .take(EXAMPLES)
        .map(|j| j.file.as_str())
        .collect();
    files.join(", ")
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// What the cluster was doing: the remote jobs compiling on hosts that
/// take remote jobs (their starts and ends, sorted, count the busy slots
/// at any moment) and the host sessions. Made once for many builds.
#[derive(Debug)]
pub struct Cluster<'a> {
    starts: Vec<u64>,
    ends: Vec<u64>,
    /// From each time on (sorted): the slots and the number of the hosts
    /// that take remote jobs.
    slots: Vec<(u64, u64, usize)>,
    hosts: &'a [HostSpan],
}

impl<'a> Cluster<'a> {
    /// The cluster of `jobs` and `hosts`.
    pub fn new(jobs: &[Finished], hosts: &'a [HostSpan]) -> Cluster<'a> {
        let remote = jobs.iter().filter(|j| !j.is_local());
        Cluster::of(
            remote.filter_map(|j| Some((j.server.as_deref()?, j.start_ms, j.end_ms))),
            hosts,
        )
    }

    /// The cluster of the remote jobs `remote` (each its server, start
    /// and end) and `hosts`.
    pub fn of<'j>(
        remote: impl Iterator<Item = (&'j str, u64, u64)>,
        hosts: &'a [HostSpan],
    ) -> Cluster<'a> {
        let mut gathering = Gathering::new(hosts);
        for (server, start_ms, end_ms) in remote {
            gathering.add(server, start_ms, end_ms);
        }
        gathering.cluster()
    }

    /// Remote jobs compiling on hosts that take remote jobs at `t`.
    fn busy(&self, t: u64) -> u64 {
        let began = self.starts.partition_point(|&s| s <= t);
        let ended = self.ends.partition_point(|&e| e <= t);
        began.saturating_sub(ended) as u64
    }

    /// The slots of the hosts that take remote jobs at `t`, and how many
    /// hosts they are.
    fn slots(&self, t: u64) -> (u64, usize) {
        let at = self.slots.partition_point(|&(from, _, _)| from <= t);
        at.checked_sub(1)
            .and_then(|i| self.slots.get(i))
            .map_or((0, 0), |&(_, slots, hosts)| (slots, hosts))
    }
}

/// A [`Cluster`] in the making: its hosts first, then its remote jobs one
/// at a time, as a query reads them, so that none is held but for its
/// start and end.
pub struct Gathering<'a> {
    /// The sessions of each host that takes remote jobs.
    by_name: HashMap<&'a str, Vec<&'a HostSpan>>,
    starts: Vec<u64>,
    ends: Vec<u64>,
    hosts: &'a [HostSpan],
}

impl<'a> Gathering<'a> {
    /// The cluster of `hosts`, without jobs yet.
    pub fn new(hosts: &'a [HostSpan]) -> Gathering<'a> {
        let mut by_name: HashMap<&str, Vec<&HostSpan>> = HashMap::new();
        for h in hosts.iter().filter(|h| !h.no_remote) {
            by_name.entry(h.name.as_str()).or_default().push(h);
        }
        Gathering {
            by_name,
            starts: Vec::new(),
            ends: Vec::new(),
            hosts,
        }
    }

    /// Counts a remote job on `server` from `start_ms` to `end_ms`, if
    /// the server took remote jobs when it began.
    pub fn add(&mut self, server: &str, start_ms: u64, end_ms: u64) {
        let takes_remote = self
            .by_name
            .get(server)
            .is_some_and(|spans| spans.iter().any(|h| h.online_at(start_ms)));
        if takes_remote {
            self.starts.push(start_ms);
            self.ends.push(end_ms);
        }
    }

    /// The cluster of the hosts and the jobs counted.
    pub fn cluster(self) -> Cluster<'a> {
        let Gathering {
            mut starts,
            mut ends,
            hosts,
            ..
        } = self;
        starts.sort_unstable();
        ends.sort_unstable();
        // Logins add slots, logouts take them away.
        let mut changes: Vec<(u64, i64, i64)> = Vec::new();
        for h in hosts.iter().filter(|h| !h.no_remote) {
            changes.push((h.login_ms, i64::from(h.max_jobs), 1));
            if let Some(out) = h.logout_ms {
                changes.push((out, -i64::from(h.max_jobs), -1));
            }
        }
        changes.sort_unstable_by_key(|c| c.0);
        let (mut slots, mut count) = (0i64, 0i64);
        let slots = changes
            .into_iter()
            .map(|(at, s, n)| {
                (slots, count) = (slots + s, count + n);
                (at, slots.max(0) as u64, count.max(0) as usize)
            })
            .collect();
        Cluster {
            starts,
            ends,
            slots,
            hosts,
        }
    }
}

/// Remote jobs that waited while every slot of the hosts that take remote
/// jobs was busy, checked at the moment each was submitted.
fn cluster_full(build: &[&Finished], cluster: &Cluster<'_>) -> Option<Reason> {
    let mut waited = Vec::new();
    for j in build {
        let (Some(submit), Some(wait)) = (j.submit_ms, j.wait_ms()) else {
            continue;
        };
        let (total, servers) = cluster.slots(submit);
        if wait > 0 && total > 0 && cluster.busy(submit) >= total {
            waited.push((j, wait, total, servers));
        }
    }
    let &(j, _, total, servers) = waited.first()?;
    let mut waits: Vec<u64> = waited.iter().map(|w| w.1).collect();
    waits.sort_unstable();
    Some(Reason {
        kind: "cluster_full",
        jobs: waited.len() as u64,
        summary: format!(
            "{} job{} waited for a server while every remote slot was busy",
            waited.len(),
            plural(waited.len())
        ),
        evidence: vec![
            format!(
                "{} was submitted at {} ms with all {total} slots of the {servers} hosts that \
                 take remote jobs busy",
                j.file,
                j.submit_ms.unwrap_or(0)
            ),
            format!(
                "they waited {} ms at the median, {} ms at most",
                super::quantile(&waits, 0.5).unwrap_or(0),
                waits.last().copied().unwrap_or(0)
            ),
        ],
    })
}

/// Remote jobs the scheduler gave back to their submitter.
fn given_back(build: &[&Finished], submitter: &str) -> Option<Reason> {
    let back: Vec<&&Finished> = build.iter().filter(|j| j.given_back()).collect();
    if back.is_empty() {
        return None;
    }
    let asked = build.iter().filter(|j| !j.is_local()).count();
    Some(Reason {
        kind: "given_back",
        jobs: back.len() as u64,
        summary: format!(
            "{} of {asked} remote job{} were given back to {submitter} itself",
            back.len(),
            plural(asked)
        ),
        evidence: vec![
            format!(
                "the scheduler named {submitter} as the server of {} (e.g. {})",
                if back.len() == 1 { "it" } else { "them" },
                examples(&back)
            ),
            "a host compiling its own jobs gains nothing from the cluster: the scheduler \
             chose it over the others (icecream's own load and speed figures decide)"
                .into(),
        ],
    })
}

/// Local jobs that no failed remote job explains (`retries`: the build
/// indices of local retries): run without asking the scheduler.
fn local_unasked(build: &[&Finished], retries: &[usize]) -> Option<Reason> {
    let unasked: Vec<&&Finished> = build
        .iter()
        .enumerate()
        .filter(|(i, j)| j.is_local() && !retries.contains(i))
        .map(|(_, j)| j)
        .collect();
    if unasked.is_empty() {
        return None;
    }
    Some(Reason {
        kind: "local_unasked",
        jobs: unasked.len() as u64,
        summary: format!(
            "{} job{} ran locally without asking the scheduler for a server",
            unasked.len(),
            plural(unasked.len())
        ),
        evidence: vec![format!(
            "local jobs with no request for a server before them: {} (links, and what \
             icecc does not send out, run locally)",
            examples(&unasked)
        )],
    })
}

/// (remote, local) build indices: a remote job that failed or was cut
/// short, and the local job of the same file (stem) that began after it
/// ended, within the gap: icecc's retry on the submitter.
fn retried_locally(build: &[&Finished], gap_ms: u64) -> Vec<(usize, usize)> {
    let stem = |f: &str| {
        Path::new(f)
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
    };
    let mut pairs = Vec::new();
    let mut used = Vec::new();
    for (l, local) in build.iter().enumerate().filter(|(_, j)| j.is_local()) {
        let found = build.iter().enumerate().find(|(r, remote)| {
            (remote.failed() || remote.cut_short())
                && !remote.is_local()
                && !used.contains(r)
                && remote.end_ms <= local.start_ms
                && local.start_ms - remote.end_ms <= gap_ms
                && stem(&remote.file).is_some()
                && stem(&remote.file) == stem(&local.file)
        });
        if let Some((r, _)) = found {
            used.push(r);
            pairs.push((r, l));
        }
    }
    pairs
}

/// Jobs cut short because their server left or the scheduler went away.
fn servers_left(build: &[&Finished]) -> Option<Reason> {
    let cut: Vec<&&Finished> = build
        .iter()
        .filter(|j| {
            j.cut_short() && matches!(j.reason, EndReason::HostLeft | EndReason::SchedulerLost)
        })
        .collect();
    if cut.is_empty() {
        return None;
    }
    let mut servers: Vec<&str> = cut.iter().filter_map(|j| j.server.as_deref()).collect();
    servers.sort_unstable();
    servers.dedup();
    let lost = cut
        .iter()
        .filter(|j| j.reason == EndReason::SchedulerLost)
        .count();
    let mut evidence = vec![format!(
        "cut short when {} left: {}",
        if servers.len() == 1 {
            "its server"
        } else {
            "their servers"
        },
        servers.join(", ")
    )];
    if lost > 0 {
        evidence.push(format!(
            "{lost} ended when the connection to the scheduler was lost"
        ));
    }
    Some(Reason {
        kind: "servers_left",
        jobs: cut.len() as u64,
        summary: format!(
            "{} job{} ended mid-way because a server went offline",
            cut.len(),
            plural(cut.len())
        ),
        evidence,
    })
}

/// Few hosts that take remote jobs share the submitter's platform and
/// speak its protocol (or a newer one), among those online during the
/// build; given only when less than half of its jobs compiled elsewhere.
fn few_eligible(build: &[&Finished], submitter: &str, hosts: &[HostSpan]) -> Option<Reason> {
    let start = build.iter().map(|j| j.first_ms()).min()?;
    let end = build.iter().map(|j| j.end_ms).max()?;
    let elsewhere = build.iter().filter(|j| j.remote()).count();
    if elsewhere * 2 >= build.len() {
        return None;
    }
    let during = |h: &&HostSpan| h.login_ms <= end && h.logout_ms.map_or(true, |out| out >= start);
    let me = hosts
        .iter()
        .filter(|h| h.name == submitter)
        .filter(during)
        .max_by_key(|h| h.login_ms)?;
    let mut others: Vec<&HostSpan> = hosts
        .iter()
        .filter(|h| h.name != submitter && !h.no_remote)
        .filter(during)
        .collect();
    others.sort_by(|a, b| a.name.cmp(&b.name));
    others.dedup_by(|a, b| a.name == b.name);
    let eligible = others
        .iter()
        .filter(|h| h.platform == me.platform && h.protocol >= me.protocol)
        .count();
    if !others.is_empty() && eligible * 2 >= others.len() {
        return None;
    }
    let summary = if others.is_empty() {
        "no other host that takes remote jobs was online".to_string()
    } else {
        format!(
            "only {eligible} of {} hosts that take remote jobs share {submitter}'s platform \
             and protocol",
            others.len()
        )
    };
    let remote_jobs = build.iter().filter(|j| !j.is_local()).count() as u64;
    Some(Reason {
        kind: "few_eligible",
        jobs: remote_jobs,
        summary,
        evidence: vec![format!(
            "{submitter} is {} at protocol {}; the others online during the build: {}",
            me.platform,
            me.protocol,
            if others.is_empty() {
                "none".to_string()
            } else {
                others
                    .iter()
                    .map(|h| format!("{} ({}, protocol {})", h.name, h.platform, h.protocol))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        )],
    })
}
