// The page fed messages written here, in a real browser: the page comes
// from `icewatch demo`, but its WebSocket is answered by the test
// (playwright's routeWebSocket), which sends snapshots and diffs as
// docs/websocket.md and docs/json.md describe them. This reaches what a demo
// shows rarely or never: a scheduler that restarts and hands the same ids to
// other hosts, every reason a job ends for, a replay, a quiet cluster.
//
// Run from the repository root after `cargo build` and `npm ci --prefix web`:
//   node --test e2e/

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startIcewatch, stopIcewatch, launchBrowser, eventually, WAIT } from './icewatch.mjs';

const T0 = 1700000000000; // 2023-11-14 22:13:20 UTC: the pages run in UTC

let server;
let browser;
const pageErrors = [];

before(async () => {
  server = await startIcewatch(['demo', '--seed', '1']);
  browser = await launchBrowser({ timezoneId: 'UTC' });
  // Notifications are on, and kept here instead of shown.
  await browser.addInitScript(() => {
    window.__notes = [];
    window.Notification = class {
      static permission = 'granted';
      static requestPermission() { return Promise.resolve('granted'); }
      constructor(title, options) { window.__notes.push({ title, body: options && options.body }); }
    };
    localStorage.setItem('icewatch.notify', 'on');
  });
});

after(async () => {
  await browser?.close();
  stopIcewatch(server);
});

// ---------- Messages ----------

function host(id, name, fields = {}) {
  return {
    id, name, ip: '10.0.0.' + id, platform: 'x86_64', max_jobs: 4, no_remote: false, online: true, protocol: 44,
    features: 'env_zstd', speed: 10, load: 100, load_avg: null, free_mem_mb: null, compiled: 0, compiled_own: 0,
    submitted: 0, local_jobs: 0, active: 0, pending: 0, failed: 0, jobs_in: 0, jobs_in_own: 0, jobs_out: 0, ...fields,
  };
}

/** A job of session 1 that ran from `client` to `server`, given as [id, name]. */
function job(id, file, [client, clientName], [server, serverName], state, fields = {}) {
  const ended = !['waiting', 'compiling', 'local'].includes(state);
  return {
    id, file, lang: state.startsWith('local') ? null : 'C', client, server, state,
    start_ms: T0 + id * 1000, end_ms: ended ? T0 + id * 1000 + 700 : null, exit_code: null,
    real_ms: ended ? 650 : null, user_ms: null, sys_ms: null, page_faults: null,
    in_compressed: null, in_uncompressed: null, out_compressed: null, out_uncompressed: null,
    session: 1, client_name: clientName, server_name: serverName, reason: null, ...fields,
  };
}

const scheduler = (fields = {}) => ({
  address: '10.0.0.100:8765', protocol: 44, online: true, since_ms: T0, reconnects: 0, error: null, replay: null, ...fields,
});

const totals = (fields = {}) => ({
  hosts_online: 2, total_slots: 6, busy_slots: 1, active: 1, pending: 0, local_active: 0,
  jobs_finished: 2, jobs_failed: 1, jobs_cut_short: 3, local_jobs_finished: 2, jobs_per_minute: 9,
  success_ratio: 2 / 3, unknown_jobs: 0, unknown_hosts: 0, invalid_messages: 0, ...fields,
});

// Session 1: localice (no-remote) submits, remote1 compiles; the scheduler
// gave two of localice's jobs back to it.
const LOCALICE = [1, 'localice'], REMOTE1 = [2, 'remote1'];
const session1 = {
  type: 'snapshot', seq: 10,
  scheduler: scheduler(),
  hosts: [
    host(1, 'localice', { no_remote: true, max_jobs: 2, submitted: 8, jobs_out: 8, jobs_in: 2, jobs_in_own: 2, compiled: 2, compiled_own: 2, local_jobs: 2, failed: 1 }),
    host(2, 'remote1', { jobs_in: 6, compiled: 5, active: 1 }),
  ],
  links: [{ from: 1, to: 2, active: 1 }],
  jobs: [job(50, 'src/running.c', LOCALICE, REMOTE1, 'compiling')],
  history: [
    job(10, 'src/ok.c', LOCALICE, REMOTE1, 'finished', { exit_code: 0, reason: 'exit' }),
    job(11, 'src/broken.c', LOCALICE, REMOTE1, 'failed', { exit_code: 1, reason: 'exit' }),
    job(12, 'src/left.c', LOCALICE, REMOTE1, 'cut_short', { exit_code: 255, reason: 'host_left' }),
    job(13, 'src/lost.c', LOCALICE, REMOTE1, 'cut_short', { reason: 'scheduler_lost' }),
    job(14, 'src/old.c', LOCALICE, REMOTE1, 'cut_short', { reason: 'stale' }),
    job(15, 'app/link.o', LOCALICE, LOCALICE, 'local_finished', { reason: 'local_done' }),
    job(16, 'app/gen.o', LOCALICE, LOCALICE, 'local_finished', { reason: 'host_left' }),
    job(17, 'src/mine.c', LOCALICE, LOCALICE, 'finished', { exit_code: 0, reason: 'exit' }),
    // Without host names (as a job the monitor first saw mid-way may be):
    // remote1 (id 2) submitted it, localice (id 1) compiled it.
    job(18, 'src/nameless.c', [2, null], [1, null], 'finished', { exit_code: 0, reason: 'exit' }),
  ],
  totals: totals(),
};

/** A new page whose WebSocket the test answers, `first` its first message. */
async function openPage(first) {
  const page = await browser.newPage();
  page.on('pageerror', (e) => pageErrors.push(e.message));
  page.on('console', (m) => { if (m.type() === 'error') pageErrors.push('console: ' + m.text()); });
  // The panel asks the server for a host's older jobs: these hosts are not the demo's.
  await page.route(/\/api\/v1\/jobs/, (route) => route.fulfill({ json: [] }));
  let connected;
  const socket = new Promise((resolve) => { connected = resolve; });
  await page.routeWebSocket(/\/ws(\?|$)/, (ws) => connected(ws));
  await page.goto(server.url);
  const ws = await socket;
  const send = async (msg) => {
    ws.send(JSON.stringify(msg));
    await page.waitForFunction((seq) => window.visage.model.seq === seq, msg.seq, { timeout: WAIT });
  };
  await send(first);
  await page.waitForSelector('[data-testid=connection][data-state=live]', { timeout: WAIT });
  return { page, send };
}

/** The job list as a person reads it: file → state, why, route. */
function jobRows(page) {
  return page.$$eval('[data-testid=job-row]', (rows) => Object.fromEntries(rows.map((r) => [r.cells[1].textContent, {
    state: r.querySelector('.state').textContent, kind: r.querySelector('.state').className,
    why: r.querySelector('.why')?.textContent ?? '', route: r.cells[2].textContent,
  }])));
}

/** Waits until the job list shows exactly `files` (in any order), and returns its rows. */
async function listed(page, files) {
  const want = [...files].sort().join();
  return eventually(`the job list showing ${want}`, async () => {
    const rows = await jobRows(page);
    return Object.keys(rows).sort().join() === want && rows;
  });
}

// ---------- Tests ----------

test('each job says in its row why it ended; a job cut short is not a failure', async () => {
  const { page, send } = await openPage(session1);
  const rows = await listed(page, [...session1.jobs, ...session1.history].map((j) => j.file));
  const seen = (file) => [rows[file].state, rows[file].why];
  assert.deepEqual(seen('src/ok.c'), ['finished', '']);
  assert.deepEqual(seen('src/broken.c'), ['failed', 'exit 1']);
  assert.deepEqual(seen('src/left.c'), ['cut short', 'host left']);
  assert.deepEqual(seen('src/lost.c'), ['cut short', 'scheduler gone']);
  assert.deepEqual(seen('src/old.c'), ['cut short', 'stale']);
  assert.deepEqual(seen('app/link.o'), ['local done', '']);
  assert.deepEqual(seen('app/gen.o'), ['cut short', 'host left']);
  // Not dressed as a compile error.
  const colors = await page.evaluate(() => Object.fromEntries(['failed', 'cut_short'].map((k) => [k, getComputedStyle(document.querySelector('.s-' + k)).color])));
  assert.notEqual(colors.cut_short, colors.failed, 'a cut-short pill is not coloured like a failed one');

  // The state filter: cut short, then compile errors only.
  await page.selectOption('[data-testid=filter-state]', 'cut_short');
  await listed(page, ['src/left.c', 'src/lost.c', 'src/old.c', 'app/gen.o']);
  await page.selectOption('[data-testid=filter-state]', 'failed');
  await listed(page, ['src/broken.c']);
  await page.selectOption('[data-testid=filter-state]', '');

  // Success counts compiler verdicts only; cut-short jobs are counted apart.
  assert.equal(await page.locator('#sum-success').innerText(), '66.7 %');
  assert.match(await page.locator('#sum-success-sub').innerText(), /^2 ok · 1 failed · 3 cut short$/);

  // Notifications: for a compile error, not for a job cut short.
  await send({
    type: 'diff', seq: 11,
    jobs_done: [
      { id: 50, state: 'cut_short', reason: 'host_left', end_ms: T0 + 60000, exit_code: 255 },
      job(51, 'src/typo.c', LOCALICE, REMOTE1, 'failed', { exit_code: 2, reason: 'exit' }),
    ],
    totals: totals({ jobs_failed: 2, jobs_cut_short: 4, success_ratio: 0.5 }),
  });
  const notes = await eventually('a notification', () => page.evaluate(() => window.__notes.length && window.__notes));
  assert.deepEqual(notes.map((n) => n.title), ['icewatch: job failed on remote1']);
  assert.equal(notes[0].body, 'src/typo.c (exit 2)');
  await page.close();
});

test('after a scheduler restart that hands the ids to other hosts, old jobs keep their hosts and hosts keep their nodes', async () => {
  const { page, send } = await openPage(session1);
  await listed(page, [...session1.jobs, ...session1.history].map((j) => j.file));
  // Mark localice's node, to know it again.
  await eventually('the node of localice', () => page.evaluate(() => {
    const n = visage.graph.nodes.get('localice');
    return n && (n.mark = 'localice of session 1');
  }));

  // The scheduler goes away: its jobs are cut short, its hosts offline.
  await send({
    type: 'diff', seq: 11,
    scheduler: scheduler({ online: false, since_ms: T0 + 60000, error: 'lost the scheduler 10.0.0.100:8765: connection reset' }),
    hosts: [{ id: 1, online: false }, { id: 2, online: false }],
    links: [{ from: 1, to: 2, active: 0 }],
    jobs_done: [{ id: 50, state: 'cut_short', reason: 'scheduler_lost', end_ms: T0 + 60000 }],
    totals: totals({ hosts_online: 0, busy_slots: 0, active: 0, jobs_cut_short: 4 }),
  });
  assert.equal(await eventually('the chip', async () => {
    const text = await page.locator('[data-testid=connection] .text').innerText();
    return text.startsWith('scheduler offline') && text;
  }), 'scheduler offline since 2023-11-14 22:14 (lost the scheduler 10.0.0.100:8765: connection reset)');

  // A new session: remote1 logs in first and gets id 1, localice gets id 2;
  // job ids start over. (Ids that exist again come as hosts, not removals.)
  await send({
    type: 'diff', seq: 12,
    scheduler: scheduler({ since_ms: T0 + 90000, reconnects: 1 }),
    hosts: [
      host(1, 'remote1', { jobs_in: 7, compiled: 5, active: 1 }),
      host(2, 'localice', { no_remote: true, max_jobs: 2, submitted: 9, jobs_out: 9, jobs_in: 2, jobs_in_own: 2, compiled: 2, compiled_own: 2, local_jobs: 2, failed: 1 }),
    ],
    links: [{ from: 2, to: 1, active: 1 }],
    jobs: [job(1, 'src/new.c', [2, 'localice'], [1, 'remote1'], 'compiling', { session: 2, start_ms: T0 + 95000 })],
    totals: totals({ busy_slots: 1, jobs_cut_short: 4 }),
  });
  const rows = await eventually('the new job listed', async () => { const r = await jobRows(page); return r['src/new.c'] && r; });
  assert.equal(rows['src/new.c'].route, 'localice → remote1');
  // Jobs of the first session keep the hosts they ran on, whatever the ids mean now.
  assert.equal(rows['src/ok.c'].route, 'localice → remote1');
  assert.equal(rows['src/running.c'].route, 'localice → remote1');
  assert.equal(rows['src/mine.c'].route, 'localice → localice', 'a job given back to its submitter');
  assert.equal(rows['app/link.o'].route, 'localice');
  // A job without names is not pinned on whoever has its ids now.
  assert.equal(rows['src/nameless.c'].route, '#2 (session 1) → #1 (session 1)');

  // The same node, now for id 2.
  assert.deepEqual(await page.evaluate(() => { const n = visage.graph.nodes.get('localice'); return [n.mark, n.id]; }),
    ['localice of session 1', 2]);

  // remote1's panel: the jobs it compiled in both sessions, none of localice's own.
  const panelOf = async (name) => {
    await page.locator('[data-testid=host-row]', { hasText: name }).click();
    return eventually(`the panel of ${name}`, async () => {
      const panel = page.locator('[data-testid=panel]');
      return (await panel.isVisible()) && (await panel.locator('h2').innerText()) === name
        && await panel.evaluate((p) => [...p.querySelectorAll('.file')].map((f) => f.textContent).sort());
    });
  };
  assert.deepEqual(await panelOf('remote1'),
    ['src/broken.c', 'src/left.c', 'src/lost.c', 'src/new.c', 'src/ok.c', 'src/old.c', 'src/running.c']);
  assert.deepEqual(await panelOf('localice'),
    ['app/gen.o', 'app/link.o', 'src/broken.c', 'src/left.c', 'src/lost.c', 'src/mine.c', 'src/new.c', 'src/ok.c', 'src/old.c', 'src/running.c']);
  await page.keyboard.press('Escape');

  // The host filter goes by name too.
  await page.selectOption('[data-testid=filter-host]', 'remote1');
  await listed(page, ['src/broken.c', 'src/left.c', 'src/lost.c', 'src/new.c', 'src/ok.c', 'src/old.c', 'src/running.c']);
  await page.close();
});

test('the host table adds up: IN counts every job begun on a host, its own included, and Σ IN = Σ OUT', async () => {
  const { page } = await openPage(session1);
  const cell = (key) => page.locator(`[data-testid=total-${key}]`).innerText();
  await eventually('the footer', async () => (await cell('out')) === '8');
  assert.equal(await cell('in'), '8');
  assert.equal(await cell('own'), '2');
  assert.match(await page.locator('[data-testid=hosts-note]').innerText(), /^Σ IN 8 = Σ OUT 8: /);
  // Each column says what it counts.
  const titles = await page.$$eval('#hosts thead th', (ths) => Object.fromEntries(ths.map((th) => [th.textContent, th.title])));
  assert.match(titles.IN, /began compiling on this host, from any submitter, its own given back by the scheduler included/);
  assert.match(titles.OWN, /its own jobs the scheduler gave back/);
  assert.match(titles.OUT, /began compiling on a server, itself included/);
  // localice's row: 2 in, both its own; 8 out.
  const localice = await page.locator('[data-testid=host-row]', { hasText: 'localice' }).evaluate((tr) => {
    const head = [...document.querySelectorAll('#hosts thead th')].map((th) => th.textContent);
    return Object.fromEntries(head.map((h, i) => [h, tr.cells[i].textContent]));
  });
  assert.deepEqual([localice.IN, localice.OWN, localice.OUT], ['2', '2', '8']);
  // And the panel says it in words.
  await page.locator('[data-testid=host-row]', { hasText: 'localice' }).click();
  const panel = await eventually('the panel', async () => (await page.locator('[data-testid=panel]').isVisible()) && page.locator('[data-testid=panel]').innerText());
  assert.match(panel, /2 remote jobs began here: 0 from other hosts, 2 its own, given back by the scheduler/);
  assert.match(panel, /8 of its remote jobs began on a server, 2 of them here/);
  await page.close();
});

test('the chip tells how long ago the news came, and a replay by its recording', async () => {
  const { page, send } = await openPage(session1);
  const chip = page.locator('[data-testid=connection] .text');
  assert.match(await chip.innerText(), /^live · updated (just now|\d+ s ago)$/);
  // No news from a quiet cluster: the chip counts the seconds.
  await page.waitForFunction(() => /^live · updated [1-9]\d* s ago$/.test(document.querySelector('[data-testid=connection] .text').textContent), null, { timeout: WAIT });

  // A replay: its name and when it was recorded, and times on its clock.
  await send({
    ...session1, seq: 40,
    scheduler: scheduler({ replay: { file: 'basic.v43.bin', recorded_ms: T0 } }),
  });
  await eventually('the chip of a replay', async () => (await chip.innerText()) === 'replay of basic.v43.bin · recorded 2023-11-14 22:13');
  const time = (file) => page.locator('[data-testid=job-row]', { hasText: file }).locator('td.num');
  // A job still running, on the recording's clock: seconds, not years.
  await eventually('the running job timed on the recording\'s clock', async () => /^\d+(\.\d)? s$|^\d+ ms$/.test(await time('src/running.c').innerText()));
  assert.equal(await time('src/ok.c').innerText(), '650 ms');
  assert.equal(await time('src/ok.c').getAttribute('title'), 'began 22:13:30 · ended 22:13:30');

  // The recording ends: the chip and the banner say so, and the last picture stays.
  await send({
    type: 'diff', seq: 41,
    scheduler: scheduler({ online: false, since_ms: T0 + 70000, error: 'the recording ended', replay: { file: 'basic.v43.bin', recorded_ms: T0 } }),
    hosts: [{ id: 1, online: false }, { id: 2, online: false }],
    links: [{ from: 1, to: 2, active: 0 }],
    jobs_done: [{ id: 50, state: 'cut_short', reason: 'scheduler_lost', end_ms: T0 + 70000 }],
  });
  await eventually('the chip of a replay that ended', async () => (await chip.innerText()) === 'replay of basic.v43.bin · recorded 2023-11-14 22:13 · ended');
  assert.equal(await page.locator('#banner').innerText(), 'The recording basic.v43.bin has ended: what you see is its last state.');
  // Hosts that merely leave are gone from the graph 8 s later; these stay
  // (checked at a render after those 8 s, on the page's clock).
  const ended = await page.evaluate(() => Date.now());
  await page.waitForFunction((t) => Date.now() > t + 9000, ended, { timeout: WAIT, polling: 500 });
  const renders = await page.evaluate(() => visage.stats.renders);
  await send({ type: 'diff', seq: 42, totals: totals({ hosts_online: 0 }) });
  await page.waitForFunction((r) => visage.stats.renders > r, renders, { timeout: WAIT });
  assert.deepEqual((await page.$$eval('[data-testid=host-node]', (els) => els.map((e) => e.dataset.key))).sort(), ['localice', 'remote1']);
  assert.equal(await page.locator('[data-testid=host-row]').count(), 2);
  await page.close();
});

test('the pages ran without a script error or a console error', () => {
  assert.deepEqual(pageErrors, []);
});
