//! [`Live`]: a reader of the state's [feed](crate::monitor::feed) that
//! keeps what builds and flags need, beside the page's own reader: the
//! finished jobs of the last [`KEEP_MS`] (at most [`KEEP_JOBS`]), when each
//! was submitted (seen waiting), and the host sessions it saw. The page,
//! `GET /api/v1/builds` and `/metrics` read it; the connection never waits
//! for it.

use super::{flag_hosts, group, Build, Finished, HostFlag, HostSpan};
use crate::monitor::{lock_state, Changed, Follower, JobState, SharedState, State};
use rustc_hash::{FxHashMap, FxHashSet};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// Finished jobs kept for at most this long (state clock)...
pub const KEEP_MS: u64 = 24 * 3_600_000;
/// ...and at most this many (a few MiB: older builds come from the
/// history database).
pub const KEEP_JOBS: usize = 20_000;
/// Host sessions kept that ended (at most).
const KEEP_SESSIONS: usize = 4096;
/// Jobs seen waiting remembered at most (as the history's reader does).
const KEEP_SUBMITTED: usize = 1 << 18;

/// What the reader kept, and the builds made of it.
#[derive(Debug)]
pub struct Live {
    kept: Mutex<Kept>,
    gap_ms: u64,
}

#[derive(Debug, Default)]
struct Kept {
    jobs: VecDeque<Finished>,
    /// Host sessions that ended, oldest first.
    ended: VecDeque<HostSpan>,
    /// Sessions of the hosts online now, by id.
    online: FxHashMap<u32, HostSpan>,
    /// When each job seen waiting was submitted.
    submitted: FxHashMap<u32, u64>,
    /// Submitters with jobs active now (their builds are open).
    active: FxHashSet<String>,
    session: u32,
    /// A build can only go on while the scheduler is there.
    scheduler_online: bool,
    now_ms: u64,
    /// Grows with every change; the builds below were made at `built.0`.
    revision: u64,
    built: Option<(u64, Arc<Vec<Build>>)>,
    flagged: Option<(u64, Arc<Vec<HostFlag>>)>,
}

impl Live {
    /// An empty reader of builds split by `gap` (not yet following).
    pub fn new(gap: Duration) -> Live {
        Live {
            kept: Mutex::default(),
            gap_ms: u64::try_from(gap.as_millis()).unwrap_or(u64::MAX),
        }
    }

    /// Follows `state` in a task of its own, woken by `changed` and once a
    /// second (builds close as time passes), until `changed` has no sender.
    pub fn start(self: &Arc<Self>, state: SharedState, changed: &Changed) {
        let live = self.clone();
        let mut wakeups = changed.subscribe();
        tokio::spawn(async move {
            let mut follower = lock_state(&state).follow();
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    r = wakeups.changed() => if r.is_err() { break },
                    _ = tick.tick() => {}
                }
                live.take(&mut lock_state(&state), &mut follower);
            }
            lock_state(&state).unfollow(follower);
        });
    }

    fn kept(&self) -> std::sync::MutexGuard<'_, Kept> {
        self.kept.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes what changed in `state` since `follower` last looked.
    pub fn take(&self, state: &mut State, follower: &mut Follower) {
        let changes = state.changes(follower);
        let now = state.clock_ms();
        let mut k = self.kept();
        let k = &mut *k;
        let before = (k.revision, k.jobs.len(), k.online.len(), k.active.len());
        k.now_ms = now;
        let session = state.session();
        if session != k.session || changes.new_session {
            for (_, mut span) in k.online.drain() {
                span.logout_ms = Some(state.scheduler().since_ms.unwrap_or(now));
                k.ended.push_back(span);
            }
            k.submitted.clear();
            k.session = session;
            k.revision += 1;
        }
        for &id in &changes.jobs {
            if let Some(job) = state.job(id).filter(|j| j.state == JobState::Waiting) {
                if k.submitted.len() >= KEEP_SUBMITTED {
                    k.submitted.clear();
                }
                k.submitted.insert(id, job.start_ms);
            }
        }
        let count = (changes.done.end - changes.done.start) as usize;
        // Of a burst only the newest KEEP_JOBS are kept: the older ones are
        // not copied only to go again, nor do the kept ones ever grow past
        // the bound; but none of them is waiting any more.
        let shown = state.next_finished() - state.history().len() as u64;
        let readable = changes
            .done
            .end
            .saturating_sub(changes.done.start.max(shown));
        let skip = usize::try_from(readable).map_or(usize::MAX, |n| n.saturating_sub(KEEP_JOBS));
        let finished = state.history_since(changes.done.start).take(count);
        for (n, job) in finished.enumerate() {
            let submit = (job.session() == session)
                .then(|| k.submitted.remove(&job.id))
                .flatten();
            if n < skip {
                continue;
            }
            if k.jobs.len() >= KEEP_JOBS {
                k.jobs.pop_front();
            }
            k.jobs.extend(Finished::of(&job, submit));
            k.revision += 1;
        }
        let ids: Vec<u32> = if changes.lagged || changes.new_session {
            let mut ids: Vec<u32> = state.hosts().map(|h| h.id).collect();
            ids.extend(k.online.keys());
            ids
        } else {
            changes.hosts
        };
        for id in ids {
            match state.host(id).filter(|h| h.online && session > 0) {
                Some(h) if !k.online.contains_key(&id) => {
                    let span = HostSpan {
                        name: h.name.to_string(),
                        platform: h.platform.to_string(),
                        protocol: h.protocol,
                        features: h.features.to_string(),
                        max_jobs: h.max_jobs,
                        no_remote: h.no_remote,
                        login_ms: now,
                        logout_ms: None,
                    };
                    k.online.insert(id, span);
                }
                Some(h) => {
                    if let Some(span) = k.online.get_mut(&id) {
                        span.max_jobs = h.max_jobs;
                        span.no_remote = h.no_remote;
                        span.name = h.name.to_string();
                        span.platform = h.platform.to_string();
                        span.protocol = h.protocol;
                        span.features = h.features.to_string();
                    }
                }
                None => {
                    if let Some(mut span) = k.online.remove(&id) {
                        span.logout_ms = Some(now);
                        k.ended.push_back(span);
                    }
                }
            }
            k.revision += 1;
        }
        k.scheduler_online = state.scheduler().online;
        k.active = state
            .jobs()
            .filter_map(|j| j.client_name().map(str::to_owned))
            .collect();
        let old = now.saturating_sub(KEEP_MS);
        while k.jobs.len() > KEEP_JOBS || k.jobs.front().is_some_and(|j| j.end_ms < old) {
            k.jobs.pop_front();
        }
        while k.ended.len() > KEEP_SESSIONS
            || k.ended.front().is_some_and(|h| h.logout_ms < Some(old))
        {
            k.ended.pop_front();
        }
        // Time alone changes which builds are open.
        let after = (k.revision, k.jobs.len(), k.online.len(), k.active.len());
        if before == after {
            let open = |b: &Build| b.open;
            if let Some((_, builds)) = &k.built {
                if builds.iter().any(open) {
                    k.revision += 1;
                }
            }
        }
    }

    /// A number that changes whenever the builds or flags may have.
    pub fn revision(&self) -> u64 {
        self.kept().revision
    }

    /// Every build of the kept jobs, oldest first.
    pub fn builds(&self) -> Arc<Vec<Build>> {
        let mut k = self.kept();
        if let Some((rev, builds)) = &k.built {
            if *rev == k.revision {
                return builds.clone();
            }
        }
        let jobs: Vec<Finished> = k.jobs.iter().cloned().collect();
        let hosts = k.hosts();
        let mut builds = group(&jobs, &hosts, self.gap_ms, Some(k.now_ms));
        // A host's jobs active now belong to its latest build.
        let mut latest = FxHashSet::default();
        for b in builds.iter_mut().rev() {
            let running = b
                .host
                .as_ref()
                .is_some_and(|h| k.active.contains(h) && latest.insert(h.clone()));
            b.open = k.scheduler_online && (b.open || running);
        }
        let builds = Arc::new(builds);
        k.built = Some((k.revision, builds.clone()));
        builds
    }

    /// The hosts that hurt builds now (made again only after a change).
    pub fn flags(&self) -> Arc<Vec<HostFlag>> {
        let mut k = self.kept();
        if let Some((rev, flags)) = &k.flagged {
            if *rev == k.revision {
                return flags.clone();
            }
        }
        let jobs: Vec<Finished> = k.jobs.iter().cloned().collect();
        let flags = Arc::new(flag_hosts(&jobs, &k.hosts(), k.now_ms));
        k.flagged = Some((k.revision, flags.clone()));
        flags
    }

    /// The build gap, in ms.
    pub fn gap_ms(&self) -> u64 {
        self.gap_ms
    }

    /// When the oldest job it holds was submitted or began.
    pub fn oldest_ms(&self) -> Option<u64> {
        self.kept().jobs.iter().map(Finished::first_ms).min()
    }

    /// The state clock when it last looked.
    pub fn now_ms(&self) -> u64 {
        self.kept().now_ms
    }
}

impl Kept {
    fn hosts(&self) -> Vec<HostSpan> {
        self.ended
            .iter()
            .chain(self.online.values())
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::StateOptions;
    use crate::protocol::{JobDone, Language, Message, MonJobBegin};

    #[test]
    fn a_burst_past_the_kept_jobs_keeps_its_newest_and_never_grows_past_the_bound() {
        let burst = 2 * KEEP_JOBS as u32 + 5;
        let mut state = State::new(StateOptions {
            history_limit: burst as usize,
            ..StateOptions::default()
        });
        state.scheduler_connected("s:8765".into(), 43, 0);
        let live = Live::new(Duration::from_secs(60));
        let mut follower = state.follow();
        for job_id in 1..=burst {
            let file = format!("{job_id}.c");
            let request = Message::mon_get_cs(job_id, 1, &file, Language::C);
            state.apply(&request, 1);
            let begin = MonJobBegin {
                job_id,
                start_time: 0,
                host_id: 2,
            };
            state.apply(&Message::MonJobBegin(begin), 2);
            state.apply(&Message::MonJobDone(JobDone::new(job_id, 0)), 3);
        }
        live.take(&mut state, &mut follower);
        let k = live.kept();
        assert_eq!(k.jobs.len(), KEEP_JOBS);
        assert!(
            k.jobs.capacity() < 2 * KEEP_JOBS,
            "{} kept for {KEEP_JOBS}",
            k.jobs.capacity()
        );
        let files = [k.jobs.front(), k.jobs.back()].map(|j| j.map(|j| j.file.clone()));
        let newest = |n: u32| Some(format!("{n}.c"));
        assert_eq!(files, [newest(burst - KEEP_JOBS as u32 + 1), newest(burst)]);
        drop(k);
        state.unfollow(follower);
    }
}
