//! Builds: the jobs of one submitting host, from its first until a pause
//! of at least the gap (`--build-gap`, default [`DEFAULT_BUILD_GAP`])
//! in which none of its jobs was submitted, running or began. A `make -j`
//! keeps jobs in flight the whole time; a pause that long means the
//! developer or the CI started another build.

use super::{quantile, Finished, HostSpan, Reason};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// A pause this long without a job of a submitter ends its build.
pub const DEFAULT_BUILD_GAP: Duration = Duration::from_secs(60);

/// The slowest files a build lists.
pub const SLOWEST: usize = 5;

/// One build of one submitting host.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Build {
    /// The submitter's name (`None`: never announced).
    pub host: Option<String>,
    /// When its first job was submitted (or began).
    pub start_ms: u64,
    /// When its last job ended.
    pub end_ms: u64,
    /// `end_ms - start_ms`.
    pub duration_ms: u64,
    /// Still going: a job of it is active, or the gap has not passed since
    /// its last one (live builds only).
    pub open: bool,
    /// Jobs, remote and local.
    pub jobs: u64,
    /// Compiled on another host than the submitter.
    pub remote: u64,
    /// `remote / jobs`.
    pub remote_share: f64,
    /// Remote jobs the scheduler gave back to the submitter.
    pub given_back: u64,
    /// Jobs the submitter compiled locally without the scheduler.
    pub local: u64,
    /// Jobs whose compiler failed.
    pub failed: u64,
    /// Jobs that ended without the compiler's verdict (a host left).
    pub cut_short: u64,
    /// Median wait for a server, of the remote jobs seen submitted.
    pub wait_median_ms: Option<u64>,
    /// 95th percentile of the same.
    pub wait_p95_ms: Option<u64>,
    /// The longest jobs, longest first.
    pub slowest: Vec<SlowJob>,
    /// Hosts that compiled its jobs (itself included), most jobs first.
    pub servers: Vec<ServerJobs>,
    /// The change from the previous build of the same host, if known.
    pub previous: Option<Change>,
    /// Why it did not distribute (`docs/insights.md`), where the jobs
    /// show it.
    pub why: Vec<Reason>,
}

/// One of a build's slowest jobs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SlowJob {
    /// Its file.
    pub file: String,
    /// Where it compiled.
    pub server: Option<String>,
    /// From its start to its end.
    pub ms: u64,
}

/// A host that compiled a build's jobs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerJobs {
    /// Its name.
    pub name: String,
    /// Jobs it compiled.
    pub jobs: u64,
}

/// A build against the previous one of the same host.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Change {
    /// When the previous one began.
    pub start_ms: u64,
    /// This one's duration minus the previous one's.
    pub duration_ms: i64,
    /// This one's jobs minus the previous one's.
    pub jobs: i64,
    /// This one's remote share minus the previous one's.
    pub remote_share: f64,
}

/// The jobs of each submitter (`jobs` in any order) grouped into builds,
/// oldest first, each with its change from the one before of the same
/// host and its reasons (reading `jobs`, all of them, and `hosts` for the
/// cluster around it). Builds whose last job ended less than `gap_ms`
/// before `now_ms` (if given) are open.
pub fn group(
    jobs: &[Finished],
    hosts: &[HostSpan],
    gap_ms: u64,
    now_ms: Option<u64>,
) -> Vec<Build> {
    let mut order: Vec<usize> = (0..jobs.len()).collect();
    order.sort_unstable_by(|&a, &b| {
        let (a, b) = (&jobs[a], &jobs[b]);
        (&a.client, a.first_ms()).cmp(&(&b.client, b.first_ms()))
    });
    // (first job index in `order`, end) of each build.
    let mut spans: Vec<(usize, usize, u64)> = Vec::new();
    for (at, &i) in order.iter().enumerate() {
        let job = &jobs[i];
        let same = spans.last().is_some_and(|&(from, _, end)| {
            jobs[order[from]].client == job.client && job.first_ms() <= end.saturating_add(gap_ms)
        });
        match spans.last_mut() {
            Some((_, to, end)) if same => {
                *to = at + 1;
                *end = (*end).max(job.end_ms);
            }
            _ => spans.push((at, at + 1, job.end_ms)),
        }
    }
    let cluster = super::reasons::Cluster::new(jobs, hosts);
    let mut builds: Vec<Build> = spans
        .into_iter()
        .map(|(from, to, _)| {
            let mine: Vec<&Finished> = order[from..to].iter().map(|&i| &jobs[i]).collect();
            let mut b = one(&mine, &cluster, gap_ms);
            b.open = now_ms.is_some_and(|now| now < b.end_ms.saturating_add(gap_ms));
            b
        })
        .collect();
    // Within a host the builds are in order: each knows the one before.
    for i in 1..builds.len() {
        if builds[i - 1].host == builds[i].host {
            let (a, b) = (&builds[i - 1], &builds[i]);
            let change = Change {
                start_ms: a.start_ms,
                duration_ms: b.duration_ms as i64 - a.duration_ms as i64,
                jobs: b.jobs as i64 - a.jobs as i64,
                remote_share: b.remote_share - a.remote_share,
            };
            builds[i].previous = Some(change);
        }
    }
    builds.sort_by_key(|b| b.start_ms);
    builds
}

/// The build of `jobs` (one build's, not empty, in any order), with its
/// reasons read against `cluster`; not open, without its change from the
/// previous.
pub fn one(jobs: &[&Finished], cluster: &super::Cluster<'_>, gap_ms: u64) -> Build {
    // In the order they were seen, whatever order they came in, so that
    // the examples a reason names are the same from the live state and
    // from either way of reading the history.
    let mut jobs = jobs.to_vec();
    jobs.sort_by(|a, b| {
        (a.first_ms(), a.end_ms, &a.file, a.start_ms).cmp(&(
            b.first_ms(),
            b.end_ms,
            &b.file,
            b.start_ms,
        ))
    });
    let mut b = summarise(&jobs);
    b.why = super::reasons::why(&jobs, cluster, gap_ms);
    b
}

/// The numbers of one build's jobs (`jobs`, not empty).
fn summarise(jobs: &[&Finished]) -> Build {
    let count = |f: fn(&Finished) -> bool| jobs.iter().filter(|j| f(j)).count() as u64;
    let start_ms = jobs.iter().map(|j| j.first_ms()).min().unwrap_or(0);
    let end_ms = jobs.iter().map(|j| j.end_ms).max().unwrap_or(start_ms);
    let mut waits: Vec<u64> = jobs.iter().filter_map(|j| j.wait_ms()).collect();
    waits.sort_unstable();
    let took = |j: &Finished| j.end_ms.saturating_sub(j.start_ms);
    let mut longest: Vec<&&Finished> = jobs.iter().collect();
    longest.sort_by(|a, b| took(b).cmp(&took(a)).then_with(|| a.file.cmp(&b.file)));
    let slowest = longest
        .into_iter()
        .take(SLOWEST)
        .map(|j| SlowJob {
            file: j.file.clone(),
            server: j.server.as_deref().map(str::to_owned),
            ms: took(j),
        })
        .collect();
    let mut servers: BTreeMap<&str, u64> = BTreeMap::new();
    for server in jobs.iter().filter_map(|j| j.server.as_deref()) {
        *servers.entry(server).or_default() += 1;
    }
    let mut servers: Vec<ServerJobs> = servers
        .into_iter()
        .map(|(name, jobs)| ServerJobs {
            name: name.to_owned(),
            jobs,
        })
        .collect();
    servers.sort_by(|a, b| b.jobs.cmp(&a.jobs).then_with(|| a.name.cmp(&b.name)));
    let total = jobs.len() as u64;
    let remote = count(Finished::remote);
    Build {
        host: jobs
            .first()
            .and_then(|j| j.client.as_deref().map(str::to_owned)),
        start_ms,
        end_ms,
        duration_ms: end_ms.saturating_sub(start_ms),
        open: false,
        jobs: total,
        remote,
        remote_share: if total == 0 {
            0.0
        } else {
            remote as f64 / total as f64
        },
        given_back: count(Finished::given_back),
        local: count(Finished::is_local),
        failed: count(Finished::failed),
        cut_short: count(Finished::cut_short),
        wait_median_ms: quantile(&waits, 0.5),
        wait_p95_ms: quantile(&waits, 0.95),
        slowest,
        servers,
        previous: None,
        why: Vec::new(),
    }
}
