// How the page is put together and how it holds its connection: the binary
// serves web/visage.html with d3 and the modules of web/js/ inlined, as
// one response that loads nothing else; and the page starts over from a
// fresh snapshot after a gap in the sequence or a lost connection
// (docs/websocket.md). The WebSocket is answered by the test (playwright's
// routeWebSocket), the page comes from `icewatch demo`.
//
// Run from the repository root after `cargo build` and `npm ci --prefix web`:
//   node --test e2e/

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { root, startIcewatch, stopIcewatch, launchBrowser, eventually, WAIT } from './icewatch.mjs';
import { assemblePage } from './page.mjs';

let server;
let browser;
const pageErrors = [];

before(async () => {
  server = await startIcewatch(['demo', '--seed', '1']);
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  stopIcewatch(server);
});

const host = (id, name) => ({
  id, name, ip: '10.0.0.' + id, platform: 'x86_64', max_jobs: 4, no_remote: false, online: true, protocol: 44,
  features: '', speed: 10, load: 100, load_avg: null, free_mem_mb: null, compiled: 0, compiled_own: 0,
  submitted: 0, local_jobs: 0, active: 0, pending: 0, failed: 0, jobs_in: 0, jobs_in_own: 0, jobs_out: 0,
});

const snapshot = (seq, hosts) => ({
  type: 'snapshot', seq,
  scheduler: { address: '10.0.0.100:8765', protocol: 44, online: true, since_ms: Date.now(), reconnects: 0, error: null, replay: null },
  hosts, links: [], jobs: [], history: [],
  totals: {
    hosts_online: hosts.length, total_slots: 4 * hosts.length, busy_slots: 0, active: 0, pending: 0, local_active: 0,
    jobs_finished: 0, jobs_failed: 0, jobs_cut_short: 0, local_jobs_finished: 0, jobs_per_minute: 0, success_ratio: null,
    unknown_jobs: 0, unknown_hosts: 0, invalid_messages: 0,
  },
});

/** A new page whose WebSocket connections the test answers: `sockets` holds them, newest last. */
async function openPage() {
  const page = await browser.newPage();
  page.on('pageerror', (e) => pageErrors.push(e.message));
  page.on('console', (m) => { if (m.type() === 'error') pageErrors.push('console: ' + m.text()); });
  const sockets = [];
  await page.routeWebSocket(/\/ws(\?|$)/, (ws) => { sockets.push(ws); });
  await page.goto(server.url);
  return { page, sockets, socket: (n) => eventually(`WebSocket connection ${n}`, () => sockets[n - 1]) };
}

/** The host names in the host table. */
const hostNames = (page) => page.$$eval('[data-testid=host-row] .hostname', (els) => els.map((e) => e.textContent).sort());

test('the binary serves web/visage.html with d3 and every module of web/js/ inlined (rebuild after changing web/)', async () => {
  const url = new URL(server.url);
  const served = await (await fetch(url)).text();
  const assembled = assemblePage(join(root, 'web', 'visage.html'));
  assert.ok(!served.includes('"./js/"') && !served.includes('node_modules'), 'nothing left to load');
  // What e2e/perf.mjs --page serves is what the binary serves.
  assert.ok(served === assembled,
    `the page served by the binary (${served.length} characters) is not web/ as build.rs assembles it (${assembled.length}): `
    + 'is the binary older than web/? (cargo build)');
});

test('the page is one response: it loads nothing else, then opens its WebSocket (and asks the builds API, builds.js)', async () => {
  const page = await browser.newPage();
  page.on('pageerror', (e) => pageErrors.push(e.message));
  page.on('console', (m) => { if (m.type() === 'error') pageErrors.push('console: ' + m.text()); });
  const requests = [];
  page.on('request', (r) => requests.push(r.url()));
  const sockets = [];
  page.on('websocket', (ws) => sockets.push(ws.url()));
  await page.goto(server.url);
  await page.waitForSelector('[data-testid=connection][data-state=live]', { timeout: WAIT });
  await eventually('a render', () => page.evaluate(() => visage.stats.renders > 0));
  // Builds and the hosts that hurt them are polled from the API (builds.js), not sent on the WebSocket.
  const polled = (u) => /\/api\/v1\/(builds\?|insights\/hosts$)/.test(u);
  assert.deepEqual(requests.filter((u) => !u.startsWith('data:') && !polled(u)), [server.url]);
  assert.equal(sockets.length, 1);
  assert.match(sockets[0], /^ws:\/\/127\.0\.0\.1:\d+\/ws(\?token=\w+)?$/);
  await page.close();
});

test('after a gap in the sequence the page reconnects and starts over from a fresh snapshot', async () => {
  const { page, socket } = await openPage();
  const first = await socket(1);
  first.send(JSON.stringify(snapshot(10, [host(1, 'alpha'), host(2, 'beta')])));
  first.send(JSON.stringify({ type: 'diff', seq: 11, hosts: [{ id: 2, active: 1 }] }));
  await eventually('alpha and beta listed', async () => (await hostNames(page)).join() === 'alpha,beta');
  assert.equal(await page.evaluate(() => visage.model.seq), 11);
  // Diff 12 went missing: 13 must not be applied.
  first.send(JSON.stringify({ type: 'diff', seq: 13, hosts: [host(3, 'ghost')] }));
  const second = await socket(2);
  second.send(JSON.stringify(snapshot(40, [host(1, 'alpha'), host(5, 'gamma')])));
  await eventually('the fresh snapshot shown', async () => (await hostNames(page)).join() === 'alpha,gamma');
  assert.equal(await page.evaluate(() => visage.model.seq), 40);
  second.send(JSON.stringify({ type: 'diff', seq: 41, hosts: [host(6, 'delta')] }));
  await eventually('diffs from there on', async () => (await hostNames(page)).join() === 'alpha,delta,gamma');
  await page.close();
});

test('a lost connection greys the last picture and retries; the next snapshot makes it live again', async () => {
  const { page, socket } = await openPage();
  const first = await socket(1);
  first.send(JSON.stringify(snapshot(10, [host(1, 'alpha')])));
  await page.waitForSelector('[data-testid=connection][data-state=live]', { timeout: WAIT });
  // The host table is drawn in a frame of its own, after the chip says live.
  await eventually('the snapshot shown', async () => (await hostNames(page)).join() === 'alpha');
  await first.close();
  await page.waitForSelector('body.stale', { timeout: WAIT });
  assert.match(await page.locator('[data-testid=connection] .text').innerText(), /^(disconnected · retry in \d+ s|reconnecting…)$/);
  assert.equal(await page.locator('#banner').innerText(), 'Lost the connection to icewatch: showing the last known state while reconnecting.');
  assert.deepEqual(await hostNames(page), ['alpha'], 'the last known state stays');
  const second = await socket(2);
  second.send(JSON.stringify(snapshot(3, [host(1, 'alpha'), host(2, 'beta')])));
  await page.waitForSelector('[data-testid=connection][data-state=live]', { timeout: WAIT });
  await eventually('no longer greyed', () => page.evaluate(() => !document.body.classList.contains('stale')));
  await eventually('the new snapshot shown', async () => (await hostNames(page)).join() === 'alpha,beta');
  await page.close();
});

test('the pages ran without a script error or a console error', () => {
  assert.deepEqual(pageErrors, []);
});
