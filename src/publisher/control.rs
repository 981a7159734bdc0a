//! The scheduler's text port, through the page: what it tells (blocked
//! hosts, environments being installed, a daemon's `internals`) and, with
//! `--admin`, what it does (block, unblock, remove a host). Routes and
//! rules are in `docs/admin.md`.
//!
//! One task owns one connection to the text port and sends it one command
//! at a time: a poll of `listcs` and `listblocks` every few seconds, and
//! the page's requests, which wait in a short queue (beyond it they are
//! refused at once as busy). Every command has a deadline; a connection
//! that misses one is dropped and made again at the next poll. Readers get
//! the last poll's answer, never a wait on the scheduler, and `internals`,
//! which makes the scheduler wait for the daemon, is asked for a host at
//! most once every `internals_every` (a fresher request gets the last
//! answer). So a slow daemon or scheduler stalls neither icewatch nor the
//! scheduler's other clients with a queue of requests.
//!
//! With `keep_blocks` the same task keeps the block list and gives it back
//! to a restarted scheduler after each poll ([`keep_blocks`]).

use super::keep_blocks::{self, AuditRecord, BlockBook, Kept, Session};
pub use crate::monitor::text_port::Outcome;
use crate::monitor::text_port::{text_port_of, TextPort, TextPortError};
use crate::monitor::{lock_state, now_ms, SharedState};
use crate::protocol::text::{self, Command, Internals};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, MissedTickBehavior};

/// How the text port is used.
#[derive(Clone, Debug)]
pub struct ControlOptions {
    /// Whether the page may block, unblock and remove hosts (`--admin`).
    pub admin: bool,
    /// The text port's address; `None`: the scheduler's, port + 1.
    pub text_port: Option<SocketAddr>,
    /// How often the block list and the daemons are read.
    pub poll: Duration,
    /// How long an answer may take.
    pub answer_within: Duration,
    /// How long the connection and its greeting may take (an idle 1.4
    /// scheduler accepts new connections only every 36 s or so).
    pub greet_within: Duration,
    /// A host's `internals` are asked for at most once this often.
    pub internals_every: Duration,
    /// And any host's at most once this often: sooner is refused as too
    /// soon.
    pub internals_gap: Duration,
    /// How long a page's request waits for its turn and its answer.
    pub request_within: Duration,
    /// Keep the scheduler's block list in `book` and block its names again
    /// after a scheduler restart (`--keep-blocks`; needs `book`).
    pub keep_blocks: bool,
    /// The history database: the kept blocks, and an audit record of each
    /// action.
    pub book: Option<Arc<dyn BlockBook>>,
}

impl Default for ControlOptions {
    fn default() -> Self {
        ControlOptions {
            admin: false,
            text_port: None,
            poll: Duration::from_secs(5),
            answer_within: Duration::from_secs(10),
            greet_within: Duration::from_secs(60),
            internals_every: Duration::from_secs(10),
            internals_gap: Duration::from_secs(2),
            request_within: Duration::from_secs(20),
            keep_blocks: false,
            book: None,
        }
    }
}

/// What the text port told at the last poll (`GET /api/v1/control`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(default)]
pub struct View {
    /// Whether the page may act (`--admin`).
    pub admin: bool,
    /// The text port's address, once known.
    pub text_port: Option<String>,
    /// Whether the last poll was answered.
    pub answering: bool,
    /// Why it was not.
    pub error: Option<String>,
    /// When the last poll ended, ms since the epoch.
    pub checked_ms: Option<u64>,
    /// The names the scheduler keeps out, in its order.
    pub blocked: Vec<String>,
    /// Hosts installing an environment, with the seconds since they began.
    pub installing: BTreeMap<String, u64>,
    /// Whether icewatch keeps the block list (`--keep-blocks`).
    pub keep_blocks: bool,
    /// The blocks it keeps, by name.
    pub kept: Vec<Kept>,
}

/// What the page may do to a host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// `blockcs`: disconnect it and keep it out.
    Block,
    /// `unblockcs`: let it log in again.
    Unblock,
    /// `removecs`: disconnect it (it may log in again).
    Remove,
}

impl Action {
    /// The action named in a route (`block`, `unblock`, `remove`).
    pub fn from_name(name: &str) -> Option<Action> {
        match name {
            "block" => Some(Action::Block),
            "unblock" => Some(Action::Unblock),
            "remove" => Some(Action::Remove),
            _ => None,
        }
    }

    /// Its name in routes and audit lines.
    pub fn name(self) -> &'static str {
        match self {
            Action::Block => "block",
            Action::Unblock => "unblock",
            Action::Remove => "remove",
        }
    }
}

/// Why a request was not carried out.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The queue is full: too many requests at once.
    #[error("the scheduler's text port is busy with other requests; try again in a moment")]
    Busy,
    /// Not a host name that can go on a command line.
    #[error("{0:?} is not a host name")]
    BadName(String),
    /// `remove` of a host the scheduler does not list.
    #[error("no daemon named {0:?} is connected to the scheduler")]
    NoSuchHost(String),
    /// The text port failed or did not answer.
    #[error("{0}")]
    TextPort(String),
    /// No answer in time.
    #[error("the scheduler's text port did not answer within {0:?}")]
    Timeout(Duration),
    /// `internals` of another host were asked for a moment ago.
    #[error("a daemon's internals were asked for a moment ago; ask again in {0:?}")]
    TooSoon(Duration),
}

type Reply<T> = oneshot::Sender<Result<T, ControlError>>;

enum Job {
    Act(Action, String, Reply<Outcome>),
    Internals(String, Reply<Vec<Internals>>),
}

impl Job {
    /// Whether whoever asked has stopped waiting for the answer.
    fn abandoned(&self) -> bool {
        match self {
            Job::Act(_, _, reply) => reply.is_closed(),
            Job::Internals(_, reply) => reply.is_closed(),
        }
    }
}

/// Labels of `icewatch_admin_actions_total`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ActionLabels {
    /// `block`, `unblock` or `remove` (from the page), `reapply`
    /// (`--keep-blocks`).
    pub action: &'static str,
    /// `done`, `unchanged` or `failed`.
    pub result: &'static str,
}

/// The page's side of the text port; see the module docs.
#[derive(Debug)]
pub struct Control {
    jobs: mpsc::Sender<Job>,
    view: Arc<Mutex<View>>,
    opts: ControlOptions,
    /// `icewatch_admin_actions_total`, by action and result.
    pub actions: Family<ActionLabels, Counter>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Control {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Control {
    /// Starts the task that talks to the text port of the scheduler
    /// `state` is connected to (or `opts.text_port`).
    pub fn start(state: SharedState, opts: ControlOptions) -> Control {
        let (jobs, queue) = mpsc::channel(4);
        let keeper = opts
            .book
            .clone()
            .filter(|_| opts.keep_blocks)
            .map(Keeper::new);
        let view = Arc::new(Mutex::new(View {
            admin: opts.admin,
            keep_blocks: keeper.is_some(),
            ..View::default()
        }));
        let actions = Family::default();
        let task = tokio::spawn(
            Worker {
                state,
                opts: opts.clone(),
                view: view.clone(),
                port: None,
                asked: HashMap::new(),
                last_internals: None,
                keeper,
                actions: actions.clone(),
            }
            .run(queue),
        );
        Control {
            jobs,
            view,
            opts,
            actions,
            task,
        }
    }

    /// Whether the page may act.
    pub fn admin(&self) -> bool {
        self.opts.admin
    }

    /// What the last poll saw.
    pub fn view(&self) -> View {
        self.view
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Carries out `action` on `host`, and writes the audit line (`who`
    /// made the request) and counts it.
    pub async fn act(
        &self,
        action: Action,
        host: &str,
        who: &str,
    ) -> Result<Outcome, ControlError> {
        let result = self
            .ask(|reply| Job::Act(action, host.to_owned(), reply), host)
            .await;
        let (label, said) = match &result {
            Ok(o) if o.changed => ("done", o.said.clone()),
            Ok(o) => ("unchanged", o.said.clone()),
            Err(e) => ("failed", e.to_string()),
        };
        let record = AuditRecord {
            at_ms: now_ms(),
            action: action.name(),
            host: host.to_owned(),
            who: who.to_owned(),
            result: label,
            said,
        };
        audit(&self.actions, self.opts.book.as_ref(), record).await;
        result
    }

    /// The `internals` of `host`: asked for now, or the answer of less
    /// than `internals_every` ago.
    pub async fn internals(&self, host: &str) -> Result<Vec<Internals>, ControlError> {
        self.ask(|reply| Job::Internals(host.to_owned(), reply), host)
            .await
    }

    async fn ask<T>(
        &self,
        job: impl FnOnce(Reply<T>) -> Job,
        host: &str,
    ) -> Result<T, ControlError> {
        if !text::valid_host_name(host) {
            return Err(ControlError::BadName(host.to_owned()));
        }
        let (reply, answer) = oneshot::channel();
        self.jobs
            .try_send(job(reply))
            .map_err(|_| ControlError::Busy)?;
        let limit = self.opts.request_within;
        match tokio::time::timeout(limit, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(ControlError::TextPort(
                "the text port's task has stopped".to_owned(),
            )),
            Err(_) => Err(ControlError::Timeout(limit)),
        }
    }
}

/// Writes the audit line of an action on the scheduler, counts it in
/// `actions` and writes it to `book`, if any.
async fn audit(
    actions: &Family<ActionLabels, Counter>,
    book: Option<&Arc<dyn BlockBook>>,
    record: AuditRecord,
) {
    actions
        .get_or_create(&ActionLabels {
            action: record.action,
            result: record.result,
        })
        .inc();
    let AuditRecord {
        action,
        host,
        who,
        result,
        said,
        ..
    } = &record;
    if *result == "failed" {
        tracing::warn!(target: "icewatch::audit", "audit: {action} {host:?} by {who}: failed: {said}");
    } else {
        tracing::info!(target: "icewatch::audit", "audit: {action} {host:?} by {who}: {result}: {said}");
    }
    if let Some(book) = book {
        if let Err(e) = on_book(book, move |b| b.audit(&record)).await {
            tracing::warn!("the audit record did not reach the history: {e}");
        }
    }
}

/// Runs `f` on `book` off the async threads.
async fn on_book<T: Send + 'static>(
    book: &Arc<dyn BlockBook>,
    f: impl FnOnce(&dyn BlockBook) -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    let book = book.clone();
    tokio::task::spawn_blocking(move || f(&*book))
        .await
        .map_err(|e| e.to_string())?
}

/// `--keep-blocks`: the kept list, and what the current connection to the
/// text port has shown.
struct Keeper {
    book: Arc<dyn BlockBook>,
    kept: BTreeMap<String, Kept>,
    /// Whether `kept` has been read from the book.
    loaded: bool,
    /// The block list as last read on the current connection; `None`
    /// before its first read.
    listed: Option<BTreeSet<String>>,
    /// The current connection's scheduler's start, from its uptime.
    started_ms: Option<u64>,
}

/// With `--keep-blocks`, how soon a text port that failed is tried again.
const RETRY_KEPT: Duration = Duration::from_secs(1);

/// Who reapplies blocks, in the audit.
const KEEPER: &str = "icewatch --keep-blocks";

impl Keeper {
    fn new(book: Arc<dyn BlockBook>) -> Keeper {
        Keeper {
            book,
            kept: BTreeMap::new(),
            loaded: false,
            listed: None,
            started_ms: None,
        }
    }

    /// Puts the kept list in `view`.
    fn show(&self, view: &Mutex<View>) {
        view.lock().unwrap_or_else(PoisonError::into_inner).kept =
            self.kept.values().cloned().collect();
    }

    /// A new connection, greeted with `greeting`.
    fn connected(&mut self, greeting: &str) {
        self.listed = None;
        self.started_ms = text::greeting_uptime_s(greeting)
            .map(|up| now_ms().saturating_sub(up.saturating_mul(1000)));
    }

    /// Runs `write` on the book off the async threads; a failure is a
    /// warning (the list in memory goes on).
    async fn write(
        &self,
        what: &str,
        write: impl FnOnce(&dyn BlockBook) -> Result<(), String> + Send + 'static,
    ) {
        if let Err(e) = on_book(&self.book, write).await {
            tracing::warn!("--keep-blocks: cannot {what} in the history: {e}");
        }
    }

    /// Reads the kept list from the book, once.
    async fn load(&mut self) {
        if self.loaded {
            return;
        }
        match on_book(&self.book, |b| b.kept()).await {
            Ok(kept) => {
                self.loaded = true;
                self.kept = kept.into_iter().map(|k| (k.name.clone(), k)).collect();
                if !self.kept.is_empty() {
                    let names: Vec<&str> = self.kept.keys().map(String::as_str).collect();
                    tracing::info!("--keep-blocks: keeping {}", names.join(", "));
                }
            }
            Err(e) => tracing::warn!("--keep-blocks: cannot read the kept blocks: {e}"),
        }
    }

    /// Takes in a read of the block list: keeps what is new, forgets what
    /// was unblocked, marks what this scheduler lists as seen; returns the
    /// names to block again.
    async fn observe(&mut self, listed: &BTreeSet<String>) -> Vec<String> {
        let session = match &self.listed {
            Some(before) => Session::Same(before),
            None => Session::New {
                started_ms: self.started_ms,
            },
        };
        let first = self.listed.is_none();
        let plan = keep_blocks::plan(&self.kept, listed, session);
        let now = now_ms();
        for name in plan.keep {
            tracing::info!("--keep-blocks: {name} is blocked on the scheduler: keeping the block");
            let k = Kept {
                name: name.clone(),
                since_ms: now,
                seen_ms: now,
            };
            self.kept.insert(name, k.clone());
            self.write("keep a block", move |b| b.keep(&k)).await;
        }
        for name in plan.forget {
            tracing::info!(
                "--keep-blocks: {name} was unblocked on the scheduler: no longer keeping its block"
            );
            self.kept.remove(&name);
            self.write("forget a block", move |b| b.forget(&name)).await;
        }
        if first {
            // This scheduler lists them: a later connection that misses
            // them knows they were unblocked, not forgotten.
            self.seen(listed, now).await;
        }
        self.listed = Some(listed.clone());
        plan.reapply
    }

    /// Marks the kept names among `names` as seen on the scheduler at `now`.
    async fn seen(&mut self, names: &BTreeSet<String>, now: u64) {
        let mut seen = Vec::new();
        for (name, k) in &mut self.kept {
            if names.contains(name) {
                k.seen_ms = now;
                seen.push(k.clone());
            }
        }
        if !seen.is_empty() {
            self.write("mark blocks as seen", move |b| {
                seen.iter().try_for_each(|k| b.keep(k))
            })
            .await;
        }
    }
}

/// The task that owns the connection.
struct Worker {
    state: SharedState,
    opts: ControlOptions,
    view: Arc<Mutex<View>>,
    port: Option<TextPort>,
    /// Each host's last `internals` answer, and when it was asked.
    asked: HashMap<String, (Instant, Vec<Internals>)>,
    /// When `internals` was last sent.
    last_internals: Option<Instant>,
    /// `--keep-blocks`.
    keeper: Option<Keeper>,
    /// `icewatch_admin_actions_total`, shared with [`Control`].
    actions: Family<ActionLabels, Counter>,
}

impl Worker {
    async fn run(mut self, mut queue: mpsc::Receiver<Job>) {
        if let Some(keeper) = &mut self.keeper {
            // What is kept shows even while the text port does not answer.
            keeper.load().await;
            keeper.show(&self.view);
        }
        let mut poll = tokio::time::interval(self.opts.poll);
        poll.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                job = queue.recv() => match job {
                    // Whoever asked gave up waiting: not carried out.
                    Some(job) if job.abandoned() => {}
                    Some(Job::Act(action, host, reply)) => {
                        let result = self.act(action, &host).await;
                        // The answer comes with the view it left.
                        self.poll().await;
                        let _ = reply.send(result);
                    }
                    Some(Job::Internals(host, reply)) => {
                        let _ = reply.send(self.internals(&host).await);
                    }
                    None => return,
                },
                _ = poll.tick() => {
                    self.poll().await;
                    // Blocks to give back: a text port that went away (the
                    // scheduler restarting) is tried again soon, so that
                    // they are back before the daemons log in again.
                    if self.keeper.is_some() && self.port.is_none() {
                        poll.reset_after(RETRY_KEPT);
                    }
                }
            }
        }
    }

    /// Reads the daemons and the block list into the view.
    async fn poll(&mut self) {
        let limit = self.opts.answer_within;
        let result = async {
            let port = self.port().await?;
            let daemons = port.list_cs(limit).await?;
            let blocked = port.list_blocks(limit).await?;
            Ok::<_, TextPortError>((daemons, blocked))
        }
        .await;
        let result = match (result, self.keeper.take()) {
            (Ok((daemons, blocked)), Some(mut keeper)) => {
                let kept = self.keep(&mut keeper, blocked).await;
                keeper.show(&self.view);
                self.keeper = Some(keeper);
                kept.map(|blocked| (daemons, blocked))
            }
            (result, keeper) => {
                self.keeper = keeper;
                result
            }
        };
        let mut view = self.view.lock().unwrap_or_else(PoisonError::into_inner);
        view.checked_ms = Some(now_ms());
        match result {
            Ok((daemons, blocked)) => {
                view.answering = true;
                view.error = None;
                view.blocked = blocked;
                view.installing = daemons
                    .into_iter()
                    .filter_map(|d| Some((d.name, d.installing_s?)))
                    .collect();
            }
            Err(e) => {
                if view.answering || view.error.is_none() {
                    tracing::warn!("the scheduler's text port: {e}");
                }
                view.answering = false;
                view.error = Some(e.to_string());
                self.port = None;
            }
        }
    }

    /// `--keep-blocks` after a read of the block list `blocked`: blocks
    /// again what a restarted scheduler has forgotten, each audited, and
    /// returns the list as read again then.
    async fn keep(
        &mut self,
        keeper: &mut Keeper,
        blocked: Vec<String>,
    ) -> Result<Vec<String>, TextPortError> {
        keeper.load().await;
        if !keeper.loaded {
            // Without the kept list nothing can be told apart: wait.
            return Ok(blocked);
        }
        let listed: BTreeSet<String> = blocked.iter().cloned().collect();
        let reapply = keeper.observe(&listed).await;
        if reapply.is_empty() {
            return Ok(blocked);
        }
        let limit = self.opts.answer_within;
        let port = self.port().await?;
        let mut answers = Vec::new();
        for name in &reapply {
            let answer = port.ask(&Command::BlockCs(vec![name.clone()]), limit).await;
            answers.push(answer);
        }
        let confirmed = port.list_blocks(limit).await?;
        let now = now_ms();
        let listed: BTreeSet<String> = confirmed.iter().cloned().collect();
        for (name, answer) in reapply.iter().zip(answers) {
            let (result, said) = match answer {
                Ok(_) if listed.contains(name) => (
                    "done",
                    format!("blocked {name} again: the scheduler had forgotten it (restarted)"),
                ),
                Ok(_) => (
                    "failed",
                    format!("blockcs {name} was answered, but the scheduler does not list it"),
                ),
                Err(e) => ("failed", e.to_string()),
            };
            let record = AuditRecord {
                at_ms: now,
                action: "reapply",
                host: name.clone(),
                who: KEEPER.to_owned(),
                result,
                said,
            };
            audit(&self.actions, Some(&keeper.book), record).await;
        }
        keeper.seen(&listed, now).await;
        keeper.listed = Some(listed);
        Ok(confirmed)
    }

    /// The connection, made if there is none.
    async fn port(&mut self) -> Result<&mut TextPort, TextPortError> {
        let port = match self.port.take() {
            Some(port) => port,
            None => {
                let addr = match self.opts.text_port {
                    Some(addr) => addr,
                    None => {
                        let scheduler = lock_state(&self.state).scheduler().address.clone();
                        text_port_of(&scheduler)
                            .await
                            .ok_or(TextPortError::NoAddress(scheduler))?
                    }
                };
                self.view
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .text_port = Some(addr.to_string());
                let port = TextPort::connect(addr, self.opts.greet_within).await?;
                tracing::info!("connected to the scheduler's text port at {addr}");
                if let Some(keeper) = &mut self.keeper {
                    keeper.connected(port.greeting());
                }
                port
            }
        };
        Ok(self.port.insert(port))
    }

    /// Sends `command` on the connection; any failure but a refusal
    /// drops it.
    async fn with_port(&mut self, command: Command) -> Result<Vec<String>, ControlError> {
        let limit = self.opts.answer_within;
        let result = match self.port().await {
            Ok(port) => port.ask(&command, limit).await,
            Err(e) => Err(e),
        };
        result.map_err(|e| self.failed(e))
    }

    /// The error for the page; drops the connection unless the scheduler
    /// only refused the command.
    fn failed(&mut self, e: TextPortError) -> ControlError {
        match e {
            TextPortError::NoSuchHost(name) => ControlError::NoSuchHost(name),
            TextPortError::BadName(name) => ControlError::BadName(name),
            TextPortError::Refused { .. } => ControlError::TextPort(e.to_string()),
            e => {
                self.port = None;
                ControlError::TextPort(e.to_string())
            }
        }
    }

    async fn act(&mut self, action: Action, host: &str) -> Result<Outcome, ControlError> {
        let limit = self.opts.answer_within;
        let result = match self.port().await {
            Ok(port) => match action {
                Action::Block => port.block(host, limit).await,
                Action::Unblock => port.unblock(host, limit).await,
                Action::Remove => port.remove(host, limit).await,
            },
            Err(e) => Err(e),
        };
        result.map_err(|e| self.failed(e))
    }

    async fn internals(&mut self, host: &str) -> Result<Vec<Internals>, ControlError> {
        if let Some((at, answer)) = self.asked.get(host) {
            if at.elapsed() < self.opts.internals_every {
                return Ok(answer.clone());
            }
        }
        if let Some(last) = self.last_internals {
            let wait = self.opts.internals_gap.saturating_sub(last.elapsed());
            if !wait.is_zero() {
                return Err(ControlError::TooSoon(wait));
            }
        }
        self.last_internals = Some(Instant::now());
        let lines = self
            .with_port(Command::Internals(vec![host.to_owned()]))
            .await?;
        let answer = text::parse_internals(lines.iter().map(String::as_str));
        let now = Instant::now();
        let every = self.opts.internals_every;
        self.asked
            .retain(|_, (at, _)| now.duration_since(*at) < every);
        self.asked.insert(host.to_owned(), (now, answer.clone()));
        Ok(answer)
    }
}
