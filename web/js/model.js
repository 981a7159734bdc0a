// What the server told the page, and what the views ask of it: a snapshot,
// then diffs merged into it as docs/websocket.md says, and the answers the
// messages leave implicit (which host a job ran on, how busy a host is,
// which hosts to show). Pure: no DOM, no d3, time only through `now`, so
// that `node --test` tries it (web/test/model.test.mjs).
//
// Who is who. A scheduler that restarts gives every host a new id, some of
// them ids other hosts had before; job ids start over too. So a host is
// known by its name (its key; `#id` when it has none), a job by its session
// and id, and a job names its hosts as they were when it ran
// (`client_name`, `server_name`). Only a job of the current session may be
// matched to a host by id.

/** A job's identity: ids start over in each scheduler session. */
export const jobKey = (j) => (j.session ?? '') + ':' + j.id;

// What IN and OUT count. A scheduler may give a job back to the host that
// submitted it ("building myself"): that job is in both its host's IN (and
// OWN) and its OUT, so that IN and OUT add up to the same over all hosts.
// Before icewatch counted jobs as they began (`jobs_in`...), IN was the
// jobs a host compiled to the end and OUT those it submitted.
export const jobsIn = (h) => h.jobs_in ?? h.compiled;
export const jobsInOwn = (h) => h.jobs_in_own ?? h.compiled_own ?? 0;
export const jobsOut = (h) => h.jobs_out ?? h.submitted;

/** A host's jobs the messages leave implicit: none. */
export const NO_JOBS = Object.freeze({ served: 0, local: 0, own: 0 });

export class Model {
  /**
   * `historyKept`: finished jobs kept, the newest; `offlineShownMs`: how
   * long a host that went offline stays visible; `now`: the clock (ms since
   * the epoch).
   */
  constructor({ historyKept, offlineShownMs, now = Date.now }) {
    this.historyKept = historyKept;
    this.offlineShownMs = offlineShownMs;
    this.now = now;
    /** The `seq` of the last message applied; null until a snapshot, and after a gap. */
    this.seq = null;
    /** Whether the server reads the scheduler's text port, and takes actions on hosts through it (`--admin`); docs/admin.md. */
    this.textPort = false;
    this.admin = false;
    this.scheduler = null;
    /** The history database's status (`database` of docs/json.md); null without one. */
    this.database = null;
    this.totals = null;
    this.hosts = new Map();        // id → HOST
    this.links = new Map();        // "from>to" → LINK
    this.jobs = new Map();         // id → JOB (waiting, compiling, local)
    this.history = [];             // finished JOBs, oldest first
    this.offlineSince = new Map(); // host id → when the page saw it go offline
    this.clock = { ms: null, at: 0 }; // the newest time in the state, and now() when it arrived
    this.index = null;             // hostIndex(), until hosts change
  }

  /**
   * Takes one message of the server. A snapshot replaces everything,
   * whenever it comes. A diff is applied only if it is the next one (its
   * `seq` the last one's + 1): otherwise nothing is applied and the answer
   * is `gap`: what the page holds is no longer the server's state, and only
   * a fresh snapshot sets it right. Answers `{ kind, events }`: `kind` is
   * `snapshot`, `diff`, `gap` or `other` (a message of a type this page
   * does not know, ignored); `events` of a diff are the hosts that went
   * offline and the jobs that failed in it.
   */
  receive(msg) {
    if (msg.type === 'snapshot') {
      this.applySnapshot(msg);
      return { kind: 'snapshot', events: null };
    }
    if (msg.type === 'diff') {
      if (this.seq === null || msg.seq !== this.seq + 1) return { kind: 'gap', events: null };
      return { kind: 'diff', events: this.applyDiff(msg) };
    }
    return { kind: 'other', events: null };
  }

  /** Takes no diff until the next snapshot (the page keeps showing what it has meanwhile). */
  expectSnapshot() {
    this.seq = null;
  }

  applySnapshot(msg) {
    this.seq = msg.seq;
    this.textPort = msg.text_port === true;
    this.admin = msg.admin === true;
    this.scheduler = msg.scheduler;
    this.database = msg.database ?? null;
    this.totals = msg.totals;
    this.hosts = new Map(msg.hosts.map((h) => [h.id, h]));
    this.index = null;
    this.links = new Map(msg.links.map((l) => [l.from + '>' + l.to, l]));
    this.jobs = new Map(msg.jobs.map((j) => [j.id, j]));
    this.history = msg.history.slice(-this.historyKept);
    this.offlineSince = new Map();
    this.clock = { ms: null, at: 0 };
    this.noteTimes(msg.scheduler, [msg.jobs, msg.history]);
    // Hosts already offline stay in view half as long as those seen to go.
    for (const h of msg.hosts) if (!h.online) this.offlineSince.set(h.id, this.now() - this.offlineShownMs / 2);
  }

  /** Applies a diff (whatever its `seq`: `receive` checks it) and answers what happened in it. */
  applyDiff(msg) {
    const events = { offline: [], failed: [] };
    if (msg.scheduler) this.scheduler = msg.scheduler;
    if (msg.database) this.database = msg.database;
    if (msg.totals) this.totals = msg.totals;
    if (msg.hosts || msg.hosts_removed) this.index = null;
    for (const delta of msg.hosts || []) {
      const before = this.hosts.get(delta.id);
      // A host the page already has comes as its changed fields only.
      const h = before ? { ...before, ...delta } : delta;
      if (!h.online && (!before || before.online)) {
        this.offlineSince.set(h.id, this.now());
        if (before) events.offline.push(h);
      }
      if (h.online) this.offlineSince.delete(h.id);
      this.hosts.set(h.id, h);
    }
    for (const id of msg.hosts_removed || []) { this.hosts.delete(id); this.offlineSince.delete(id); }
    for (const l of msg.links || []) {
      const key = l.from + '>' + l.to;
      if (l.active > 0) this.links.set(key, l); else this.links.delete(key);
    }
    // Ends first: after a scheduler restart one id can end and start again.
    // A job the page already has comes as its changed fields only.
    const merged = (j) => { const before = this.jobs.get(j.id); return before ? { ...before, ...j } : j; };
    for (const delta of msg.jobs_done || []) {
      const j = merged(delta);
      this.jobs.delete(j.id);
      this.history.push(j);
      if (j.state === 'failed') events.failed.push(j);
    }
    for (const delta of msg.jobs || []) this.jobs.set(delta.id, merged(delta));
    if (this.history.length > this.historyKept) this.history.splice(0, this.history.length - this.historyKept);
    this.seq = msg.seq;
    this.noteTimes(msg.scheduler, [msg.jobs, msg.jobs_done]);
    return events;
  }

  /** Keeps the newest time the state mentions, for `stateNow`. */
  noteTimes(scheduler, jobs) {
    let newest = this.clock.ms ?? -Infinity;
    if (scheduler && scheduler.since_ms != null) newest = Math.max(newest, scheduler.since_ms);
    for (const list of jobs) {
      for (const j of list || []) {
        if (j.start_ms != null) newest = Math.max(newest, j.start_ms);
        if (j.end_ms != null) newest = Math.max(newest, j.end_ms);
      }
    }
    if (newest > (this.clock.ms ?? -Infinity)) this.clock = { ms: newest, at: this.now() };
  }

  /**
   * Now, on the state's clock. Live, that is this machine's clock; a
   * replay's state runs on the recording's clock, so there it is the newest
   * time the state mentioned plus the time since it did.
   */
  stateNow() {
    if (!this.scheduler || !this.scheduler.replay || this.clock.ms === null) return this.now();
    return this.clock.ms + (this.now() - this.clock.at);
  }

  /** The current hosts' keys by id and the hosts by key; rebuilt when hosts change. */
  hostIndex() {
    if (this.index) return this.index;
    const keyOf = new Map(), byKey = new Map();
    // Online hosts first, then the newest: the one a name means when two hosts share it.
    const hosts = [...this.hosts.values()].sort((a, b) => b.online - a.online || b.id - a.id);
    for (const h of hosts) {
      let key = h.name || '#' + h.id;
      if (byKey.has(key)) key += ' #' + h.id;
      keyOf.set(h.id, key);
      byKey.set(key, h);
    }
    return (this.index = { keyOf, byKey });
  }

  /** A host's key: its name, unless another current host has it too. */
  hostKey(h) {
    return this.hostIndex().keyOf.get(h.id) ?? (h.name || '#' + h.id);
  }

  /** The scheduler session of now: 1 for the first one icewatch saw, one more per reconnect. */
  currentSession() {
    const s = this.scheduler;
    return s ? s.session ?? s.reconnects + 1 : null;
  }

  /**
   * Which host a job's `side` ('client' or 'server') was, as a host key:
   * the name the job carries; else, for a job of this session, the current
   * host with that id; else its id and session, which match no host of now.
   */
  jobHost(j, side) {
    const name = j[side + '_name'];
    if (name) return name;
    const id = j[side];
    if (id == null) return null;
    const now = j.session == null || j.session === this.currentSession();
    const key = now && this.hostIndex().keyOf.get(id);
    return key || '#' + id + (now ? '' : ` (session ${j.session})`);
  }

  /**
   * Per host id, what the messages leave implicit, from the jobs running
   * now: `served`, remote jobs compiling there; `local`, local jobs
   * compiling there; `own`, its jobs compiling anywhere.
   */
  derive() {
    const per = new Map();
    const get = (id) => { let p = per.get(id); if (!p) per.set(id, p = { served: 0, local: 0, own: 0 }); return p; };
    for (const j of this.jobs.values()) {
      if (j.state === 'local' && j.server != null) { get(j.server).local += 1; if (j.client != null) get(j.client).own += 1; }
      if (j.state === 'compiling') {
        if (j.server != null) get(j.server).served += 1;
        if (j.client != null) get(j.client).own += 1;
      }
    }
    return per;
  }

  /**
   * Online hosts, and those that left a moment ago unless they are back
   * under a new id. Without a scheduler (gone, or a replay that ended) every
   * host is offline: the last picture stays, greyed.
   */
  visibleHosts() {
    const now = this.now(), { byKey } = this.hostIndex();
    const lastPicture = this.scheduler && !this.scheduler.online;
    return [...this.hosts.values()].filter((h) => h.online
      || ((lastPicture || now - (this.offlineSince.get(h.id) ?? 0) < this.offlineShownMs) && byKey.get(h.name || '#' + h.id) === h));
  }
}
