// web/js/model.js against the contract of docs/websocket.md: a snapshot,
// then diffs merged by id with contiguous sequence numbers, and the page's
// own rules on top (hosts known by name across scheduler sessions).
// No browser: model.js has no DOM and no d3.
//
//   node --test web/test/

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Model, jobKey } from '../js/model.js';

const T0 = 1700000000000;

function host(id, name, fields = {}) {
  return {
    id, name, ip: '10.0.0.' + id, platform: 'x86_64', max_jobs: 4, no_remote: false, online: true, protocol: 44,
    features: 'env_zstd', speed: 10, load: 100, load_avg: null, free_mem_mb: null, compiled: 0, compiled_own: 0,
    submitted: 0, local_jobs: 0, active: 0, pending: 0, failed: 0, ...fields,
  };
}

/** A job as a snapshot has it: every field, nulls included. */
function job(id, file, client, server, state, fields = {}) {
  return {
    id, file, lang: 'C', client, server, state, start_ms: T0 + id * 1000, end_ms: null, exit_code: null,
    real_ms: null, user_ms: null, sys_ms: null, page_faults: null, in_compressed: null, in_uncompressed: null,
    out_compressed: null, out_uncompressed: null, ...fields,
  };
}

const scheduler = (fields = {}) => ({ address: '10.0.0.100:8765', protocol: 44, online: true, since_ms: T0, reconnects: 0, error: null, ...fields });
const totals = (fields = {}) => ({ hosts_online: 2, total_slots: 8, busy_slots: 1, active: 1, pending: 0, local_active: 0, ...fields });

function snapshot(seq = 10, fields = {}) {
  return {
    type: 'snapshot', seq, scheduler: scheduler(), totals: totals(),
    hosts: [host(1, 'alpha'), host(2, 'beta', { active: 1 })],
    links: [{ from: 1, to: 2, active: 1 }],
    jobs: [job(50, 'src/a.c', 1, 2, 'compiling')],
    history: [job(40, 'src/old.c', 1, 2, 'finished', { end_ms: T0 + 41000, exit_code: 0, real_ms: 900 })],
    ...fields,
  };
}

/** A model on a clock the test moves: `clock.ms`. */
function model(limits = {}) {
  const clock = { ms: T0 + 100000 };
  const m = new Model({ historyKept: 1000, offlineShownMs: 8000, now: () => clock.ms, ...limits });
  return { m, clock };
}

const files = (jobs) => [...jobs].map((j) => j.file);

// ---------- Snapshot and diffs ----------

test('a snapshot sets the whole state and its seq', () => {
  const { m } = model();
  assert.equal(m.seq, null, 'nothing before the first snapshot');
  assert.deepEqual(m.receive(snapshot()), { kind: 'snapshot', events: null });
  assert.equal(m.seq, 10);
  assert.deepEqual([...m.hosts.keys()], [1, 2]);
  assert.deepEqual([...m.links.keys()], ['1>2']);
  assert.deepEqual(files(m.jobs.values()), ['src/a.c']);
  assert.deepEqual(files(m.history), ['src/old.c']);
  assert.equal(m.scheduler.address, '10.0.0.100:8765');
  assert.equal(m.totals.busy_slots, 1);
});

test('a snapshot says whether the server reads the text port and takes actions on hosts (docs/admin.md)', () => {
  const m = new Model({ historyKept: 100, offlineShownMs: 60000 });
  assert.equal(m.admin, false);
  m.receive(snapshot(10, { admin: true, text_port: true }));
  assert.deepEqual([m.admin, m.textPort], [true, true]);
  m.receive(snapshot(11));
  assert.deepEqual([m.admin, m.textPort], [false, false], 'a snapshot without them: no actions, no reads');
});

test('a snapshot keeps the newest finished jobs only', () => {
  const { m } = model({ historyKept: 2 });
  const history = [1, 2, 3].map((id) => job(id, `f${id}.c`, 1, 2, 'finished'));
  m.receive(snapshot(10, { history }));
  assert.deepEqual(files(m.history), ['f2.c', 'f3.c']);
});

test('a diff merges a host by id: only the fields that changed come, the others stay', () => {
  const { m } = model();
  m.receive(snapshot());
  m.receive({ type: 'diff', seq: 11, hosts: [{ id: 2, active: 3, compiled: 57 }, host(3, 'gamma')] });
  const beta = m.hosts.get(2);
  assert.deepEqual([beta.name, beta.active, beta.compiled, beta.max_jobs, beta.ip], ['beta', 3, 57, 4, '10.0.0.2']);
  assert.equal(m.hosts.get(3).name, 'gamma', 'a new host comes whole');
  assert.equal(m.hosts.get(1).active, 0, 'a host not in the diff is left alone');
  assert.equal(m.seq, 11);
});

test('hosts_removed drops hosts', () => {
  const { m } = model();
  m.receive(snapshot());
  m.receive({ type: 'diff', seq: 11, hosts_removed: [1] });
  assert.deepEqual([...m.hosts.keys()], [2]);
  assert.equal(m.hostIndex().byKey.has('alpha'), false, 'nor is it known by its name any more');
});

test('a link with "active": 0 is removed; others are added or replaced', () => {
  const { m } = model();
  m.receive(snapshot());
  m.receive({ type: 'diff', seq: 11, links: [{ from: 2, to: 1, active: 2 }, { from: 1, to: 2, active: 4 }] });
  assert.deepEqual([...m.links.values()], [{ from: 1, to: 2, active: 4 }, { from: 2, to: 1, active: 2 }]);
  m.receive({ type: 'diff', seq: 12, links: [{ from: 1, to: 2, active: 0 }] });
  assert.deepEqual([...m.links.keys()], ['2>1']);
});

test('jobs are merged by id: a new job without its null fields, then only what changed', () => {
  const { m } = model();
  m.receive(snapshot());
  // "A host or job new to the client comes whole, but a job without its
  // fields that are null": no server, end, exit code or statistics yet.
  m.receive({ type: 'diff', seq: 11, jobs: [{ id: 51, file: 'src/b.c', lang: 'C++', client: 2, state: 'waiting', start_ms: T0 + 51000 }] });
  const waiting = m.jobs.get(51);
  assert.equal(waiting.state, 'waiting');
  assert.equal(waiting.server ?? null, null, 'a field missing from a job is null');
  m.receive({ type: 'diff', seq: 12, jobs: [{ id: 51, server: 1, state: 'compiling' }] });
  assert.deepEqual(
    (({ file, lang, client, server, state, start_ms }) => ({ file, lang, client, server, state, start_ms }))(m.jobs.get(51)),
    { file: 'src/b.c', lang: 'C++', client: 2, server: 1, state: 'compiling', start_ms: T0 + 51000 });
  assert.equal(m.jobs.get(50).state, 'compiling', 'a job not in the diff is left alone');
});

test('jobs_done moves a job to the end of the history, its fields merged, and tells of a failure', () => {
  const { m } = model();
  m.receive(snapshot());
  const { kind, events } = m.receive({
    type: 'diff', seq: 11,
    jobs_done: [{ id: 50, state: 'failed', end_ms: T0 + 52000, exit_code: 1, real_ms: 2000 }],
  });
  assert.equal(kind, 'diff');
  assert.equal(m.jobs.has(50), false, 'no longer running');
  const done = m.history.at(-1);
  assert.deepEqual([done.file, done.client, done.server, done.state, done.exit_code, done.end_ms], ['src/a.c', 1, 2, 'failed', 1, T0 + 52000]);
  assert.deepEqual(files(m.history), ['src/old.c', 'src/a.c'], 'newest last');
  assert.deepEqual(events.failed.map((j) => j.file), ['src/a.c']);
});

test('jobs_done comes before jobs: one id can end and start again in the same diff', () => {
  const { m } = model();
  m.receive(snapshot());
  m.receive({
    type: 'diff', seq: 11,
    jobs: [{ id: 50, file: 'src/new.c', client: 2, state: 'waiting', start_ms: T0 + 60000 }],
    jobs_done: [{ id: 50, state: 'cut_short', end_ms: T0 + 59000 }],
  });
  assert.deepEqual([m.history.at(-1).file, m.history.at(-1).state], ['src/a.c', 'cut_short']);
  assert.deepEqual([m.jobs.get(50).file, m.jobs.get(50).state, m.jobs.get(50).server ?? null], ['src/new.c', 'waiting', null],
    'the new job is not merged into the one that ended');
});

test('the history keeps the newest finished jobs as diffs add to it', () => {
  const { m } = model({ historyKept: 2 });
  m.receive(snapshot());
  m.receive({ type: 'diff', seq: 11, jobs: [job(51, 'src/b.c', 1, 2, 'compiling'), job(52, 'src/c.c', 1, 2, 'compiling')] });
  m.receive({ type: 'diff', seq: 12, jobs_done: [{ id: 50, state: 'finished' }, { id: 51, state: 'finished' }] });
  assert.deepEqual(files(m.history), ['src/a.c', 'src/b.c']);
});

test('totals and the scheduler are replaced when they come, kept when they do not', () => {
  const { m } = model();
  m.receive(snapshot());
  m.receive({ type: 'diff', seq: 11, totals: { hosts_online: 1 } });
  assert.deepEqual(m.totals, { hosts_online: 1 }, 'replaced, not merged');
  m.receive({ type: 'diff', seq: 12, scheduler: scheduler({ online: false, error: 'gone' }) });
  assert.deepEqual([m.scheduler.online, m.scheduler.error], [false, 'gone']);
  assert.deepEqual(m.totals, { hosts_online: 1 });
  m.receive({ type: 'diff', seq: 13, hosts: [{ id: 1, load: 5 }] });
  assert.deepEqual([m.scheduler.online, m.totals.hosts_online], [false, 1]);
});

test('a snapshot may come at any time: it replaces everything, and diffs follow on from its seq', () => {
  const { m } = model();
  m.receive(snapshot());
  m.receive({ type: 'diff', seq: 11, hosts: [host(3, 'gamma')], jobs: [job(51, 'src/b.c', 1, 3, 'compiling')], links: [{ from: 1, to: 3, active: 1 }] });
  m.receive({ type: 'diff', seq: 12, hosts: [{ id: 2, online: false }] });
  // A client that fell behind gets a fresh snapshot, at a later seq.
  const fresh = snapshot(40, {
    hosts: [host(1, 'alpha'), host(3, 'gamma', { active: 1 })],
    links: [{ from: 1, to: 3, active: 1 }],
    jobs: [job(51, 'src/b.c', 1, 3, 'compiling')],
    history: [],
    totals: totals({ hosts_online: 2, busy_slots: 1 }),
  });
  assert.equal(m.receive(fresh).kind, 'snapshot');
  assert.equal(m.seq, 40);
  assert.deepEqual([...m.hosts.keys()], [1, 3], 'beta is gone: only what the snapshot holds');
  assert.deepEqual([...m.links.keys()], ['1>3']);
  assert.deepEqual(files(m.jobs.values()), ['src/b.c']);
  assert.deepEqual(m.history, []);
  assert.equal(m.offlineSince.size, 0, 'what the diffs said about hosts going offline is forgotten');
  assert.equal(m.receive({ type: 'diff', seq: 13, hosts: [{ id: 1, active: 9 }] }).kind, 'gap', 'the old sequence is over');
  assert.equal(m.receive({ type: 'diff', seq: 41, hosts: [{ id: 1, active: 2 }] }).kind, 'diff');
  assert.equal(m.hosts.get(1).active, 2);
});

// ---------- The sequence ----------

test('a diff is applied only if its seq is the last seq + 1: a gap means nothing is applied and a resync', () => {
  const { m } = model();
  assert.equal(m.receive({ type: 'diff', seq: 1, hosts: [host(1, 'alpha')] }).kind, 'gap', 'a diff before any snapshot');
  assert.equal(m.hosts.size, 0);
  m.receive(snapshot());
  const before = JSON.stringify([...m.hosts.values()]);
  for (const seq of [12, 10, 9]) {
    assert.equal(m.receive({ type: 'diff', seq, hosts: [{ id: 1, active: 4 }], hosts_removed: [2] }).kind, 'gap', `seq ${seq} after 10`);
    assert.equal(JSON.stringify([...m.hosts.values()]), before, `seq ${seq}: nothing applied`);
    assert.equal(m.seq, 10);
  }
  assert.equal(m.receive({ type: 'diff', seq: 11 }).kind, 'diff', 'an empty diff still counts');
  assert.equal(m.receive({ type: 'diff', seq: 12, hosts: [{ id: 1, active: 4 }] }).kind, 'diff');
  assert.equal(m.hosts.get(1).active, 4);
});

test('after a gap the model takes no diff until the next snapshot, and keeps what it shows meanwhile', () => {
  const { m } = model();
  m.receive(snapshot());
  m.expectSnapshot();
  assert.equal(m.seq, null);
  assert.equal(m.receive({ type: 'diff', seq: 11, hosts: [{ id: 1, active: 4 }] }).kind, 'gap');
  assert.deepEqual([...m.hosts.keys()], [1, 2], 'the last known state stays on screen');
  m.receive(snapshot(20));
  assert.equal(m.receive({ type: 'diff', seq: 21, hosts: [{ id: 1, active: 4 }] }).kind, 'diff');
});

test('a message of an unknown type changes nothing', () => {
  const { m } = model();
  m.receive(snapshot());
  assert.deepEqual(m.receive({ type: 'hello', seq: 11, hosts: [] }), { kind: 'other', events: null });
  assert.deepEqual([m.seq, m.hosts.size], [10, 2]);
});

// ---------- Hosts by name, across scheduler sessions ----------

test('hosts are known by name; one without a name by its id; two of one name apart', () => {
  const { m } = model();
  m.receive(snapshot(10, {
    hosts: [host(1, 'alpha', { online: false }), host(2, ''), host(3, 'alpha'), host(4, 'beta')],
  }));
  const { keyOf, byKey } = m.hostIndex();
  assert.equal(byKey.get('alpha').id, 3, 'a name means the online host that has it');
  assert.equal(keyOf.get(1), 'alpha #1');
  assert.equal(keyOf.get(2), '#2');
  assert.equal(m.hostKey(m.hosts.get(4)), 'beta');
});

test("after a scheduler restart that hands the ids to other hosts, a job keeps the hosts it ran on", () => {
  const { m } = model();
  // Session 1: alpha (id 1) submits, beta (id 2) compiles.
  m.receive(snapshot(10, {
    scheduler: scheduler({ reconnects: 0 }),
    jobs: [],
    history: [
      job(40, 'src/named.c', 1, 2, 'finished', { session: 1, client_name: 'alpha', server_name: 'beta' }),
      job(41, 'src/nameless.c', 1, 2, 'finished', { session: 1 }),
    ],
  }));
  assert.equal(m.currentSession(), 1);
  assert.equal(m.jobHost(m.history[1], 'server'), 'beta', 'a job of this session: the host with its id now');
  // Session 2: beta logs in first and gets id 1, alpha gets id 2.
  m.receive({
    type: 'diff', seq: 11, scheduler: scheduler({ reconnects: 1 }),
    hosts: [host(1, 'beta'), host(2, 'alpha')],
    jobs: [job(1, 'src/new.c', 2, 1, 'compiling', { session: 2 })],
  });
  assert.equal(m.currentSession(), 2);
  const [named, nameless] = m.history;
  assert.deepEqual([m.jobHost(named, 'client'), m.jobHost(named, 'server')], ['alpha', 'beta']);
  assert.deepEqual([m.jobHost(nameless, 'client'), m.jobHost(nameless, 'server')], ['#1 (session 1)', '#2 (session 1)'],
    'never the hosts that have its ids now');
  const fresh = m.jobs.get(1);
  assert.deepEqual([m.jobHost(fresh, 'client'), m.jobHost(fresh, 'server')], ['alpha', 'beta']);
  assert.equal(m.jobHost({ id: 9, client: 1, server: null, session: 2 }, 'server'), null, 'no server yet');
  assert.notEqual(jobKey(named), jobKey({ ...named, session: 2 }), 'job ids start over in each session');
  // A scheduler that says its session outright.
  m.receive({ type: 'diff', seq: 12, scheduler: scheduler({ reconnects: 1, session: 7 }) });
  assert.equal(m.currentSession(), 7);
});

test('a host that goes offline is told of, shown a while, then hidden; unless the scheduler is gone', () => {
  const { m, clock } = model();
  m.receive(snapshot());
  const { events } = m.receive({ type: 'diff', seq: 11, hosts: [{ id: 2, online: false }] });
  assert.deepEqual(events.offline.map((h) => h.name), ['beta']);
  assert.deepEqual(m.visibleHosts().map((h) => h.name), ['alpha', 'beta'], 'greyed a while');
  clock.ms += 8001;
  assert.deepEqual(m.visibleHosts().map((h) => h.name), ['alpha']);
  // Back under a new id: the new one is beta; the old one is not shown again.
  m.receive({ type: 'diff', seq: 12, hosts: [host(5, 'beta')] });
  assert.deepEqual(m.visibleHosts().map((h) => h.id), [1, 5]);
  // The scheduler goes: every host offline, all kept in view (the last picture).
  m.receive({ type: 'diff', seq: 13, scheduler: scheduler({ online: false }), hosts: [{ id: 1, online: false }, { id: 5, online: false }] });
  clock.ms += 60000;
  assert.deepEqual(m.visibleHosts().map((h) => h.id), [1, 5], 'one host per name');
});

test('a snapshot shows hosts already offline for half the time', () => {
  const { m, clock } = model();
  m.receive(snapshot(10, { hosts: [host(1, 'alpha'), host(2, 'beta', { online: false })] }));
  assert.equal(m.visibleHosts().length, 2);
  clock.ms += 4001;
  assert.equal(m.visibleHosts().length, 1);
});

// ---------- What the views ask ----------

test("derive counts each host's remote, local and own jobs running now", () => {
  const { m } = model();
  m.receive(snapshot(10, {
    jobs: [
      job(1, 'a.c', 1, 2, 'compiling'), job(2, 'b.c', 1, 2, 'compiling'), job(3, 'c.c', 2, 2, 'local'),
      job(4, 'd.c', 1, null, 'waiting'), job(5, 'e.c', 2, 1, 'compiling'),
    ],
  }));
  const d = m.derive();
  assert.deepEqual(d.get(1), { served: 1, local: 0, own: 2 });
  assert.deepEqual(d.get(2), { served: 2, local: 1, own: 2 });
});

test("the state's clock is this machine's, live; a replay's runs from the newest time it mentioned", () => {
  const { m, clock } = model();
  m.receive(snapshot());
  assert.equal(m.stateNow(), clock.ms);
  const recorded = T0 - 86400000;
  m.receive(snapshot(20, {
    scheduler: scheduler({ since_ms: recorded, replay: { file: 'x.bin', recorded_ms: recorded } }),
    jobs: [job(1, 'a.c', 1, 2, 'compiling', { start_ms: recorded + 5000 })],
    history: [],
  }));
  assert.equal(m.stateNow(), recorded + 5000);
  clock.ms += 1500;
  assert.equal(m.stateNow(), recorded + 6500);
  m.receive({ type: 'diff', seq: 21, jobs_done: [{ id: 1, state: 'finished', end_ms: recorded + 9000 }] });
  assert.equal(m.stateNow(), recorded + 9000);
});

test('the history database status comes with the snapshot and with the diffs that change it', () => {
  const { m } = model();
  m.receive(snapshot());
  assert.equal(m.database, null, 'no history kept');
  const paused = { file: '/var/h.sqlite', paused: true, error: 'disk full', held: 12, lost: 0 };
  m.receive(snapshot(20, { database: { ...paused, paused: false, error: null, held: 0 } }));
  assert.equal(m.database.paused, false);
  m.receive({ type: 'diff', seq: 21, database: paused });
  assert.deepEqual(m.database, paused);
  m.receive({ type: 'diff', seq: 22, totals: totals() });
  assert.equal(m.database.paused, true, 'kept while no diff says otherwise');
});
