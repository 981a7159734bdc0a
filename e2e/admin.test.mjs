// The host panel's reads and actions of the scheduler's text port
// (docs/admin.md): `icewatch monitor` against icewatch's own stand-in
// scheduler (`demo --as-scheduler`), whose text port is a port nobody
// listens on, so every request reaches the real server and the server's
// real answer comes back. With `--admin` the panel offers Block and
// Remove, asks before each, sends nothing when the confirmation is
// declined, and shows the server's answer (here: the text port is down)
// when it is accepted; without `--admin` there are no actions, and where
// the server does not read the text port (`demo`) there is no such
// section. With `--keep-blocks` the blocks kept in the history show in the
// panel and under the host table, even while the text port does not
// answer. The actions against a real scheduler, and blocks kept across its
// restart, are proven in tests/real_cluster.rs.
//
// Run from the repository root after `cargo build` and `npm ci --prefix web`:
//   node --test e2e/

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer } from 'node:net';
import { binary, startIcewatch, stopIcewatch, launchBrowser, eventually, WAIT } from './icewatch.mjs';

const TOKEN = 'e2e-admin';
let scheduler;
let closedPort;
const servers = [];
let browser;

/** `icewatch demo --as-scheduler --port 0`, and the address it prints. */
function startScheduler() {
  return new Promise((resolve, reject) => {
    const child = spawn(binary, ['demo', '--as-scheduler', '--port', '0', '--seed', '3'], { stdio: ['ignore', 'pipe', 'ignore'] });
    let output = '';
    const timer = setTimeout(() => reject(new Error(`no scheduler address in ${WAIT} ms: ${output}`)), WAIT);
    child.stdout.on('data', (chunk) => {
      output += chunk;
      const m = output.match(/listening on (\S+)/);
      if (m) { clearTimeout(timer); resolve({ child, addr: m[1] }); }
    });
    child.on('error', reject);
  });
}

/** A port on 127.0.0.1 that was free a moment ago, and nobody listens on now. */
function freePort() {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
  });
}

async function monitor(...extra) {
  const server = await startIcewatch(['monitor', scheduler.addr, '--token', TOKEN, '--text-port', `127.0.0.1:${closedPort}`, ...extra]);
  servers.push(server);
  return server;
}

before(async () => {
  scheduler = await startScheduler();
  closedPort = await freePort();
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  for (const s of servers) stopIcewatch(s);
  scheduler?.child.kill('SIGTERM');
});

/** A page of `server` with the panel of its first host open. */
async function openPanel(server) {
  const page = await browser.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(server.url);
  await page.locator('[data-testid=host-row]').first().click();
  await page.waitForSelector('[data-testid=panel]:not([hidden])', { timeout: WAIT });
  return { page, errors, panel: page.locator('[data-testid=panel]') };
}

/** The server's count of actions with this action and result. */
async function counted(server, action, result) {
  const metrics = await (await fetch(new URL(`/metrics?token=${TOKEN}`, server.url))).text();
  const m = metrics.match(new RegExp(`icewatch_admin_actions_total\\{action="${action}",result="${result}"\\} (\\d+)`));
  return m ? Number(m[1]) : 0;
}

test('with --admin, Block asks first, sends nothing when declined, and shows the server\'s answer when accepted', async () => {
  const server = await monitor('--admin');
  const { page, errors, panel } = await openPanel(server);
  await eventually('the Scheduler section, with the text port read as not answering', async () =>
    /scheduler/i.test(await panel.innerText()) && /not answering/i.test(await panel.innerText()));
  const block = panel.locator('[data-testid=block]');
  await block.waitFor({ timeout: WAIT });

  const asked = [];
  page.once('dialog', (d) => { asked.push(d.message()); d.dismiss(); });
  await block.click();
  await eventually('the confirmation', () => asked.length === 1);
  assert.match(asked[0], /^Block .+\? The scheduler disconnects it/);
  assert.equal(await panel.locator('[data-testid=said]').count(), 0, 'nothing is said when declined');
  assert.equal(await counted(server, 'block', 'failed') + await counted(server, 'block', 'done'), 0, 'nothing was sent');

  page.once('dialog', (d) => d.accept());
  await panel.locator('[data-testid=block]').click();
  const said = await eventually('the server\'s answer in the panel', async () => {
    const loc = panel.locator('[data-testid=said]');
    const text = (await loc.count()) ? await loc.innerText() : '';
    return /failed/.test(text) && text;
  });
  assert.match(said, /^block failed: cannot connect to the scheduler's text port at 127\.0\.0\.1:\d+/);
  assert.equal(await counted(server, 'block', 'failed'), 1, 'the server counted the one action');

  await panel.locator('[data-testid=internals]').click();
  await eventually('the internals answer', async () => /internals: cannot connect/.test(await panel.innerText()));
  assert.deepEqual(errors, []);
  await page.close();
});

test('without --admin the panel reads the text port but offers no action', async () => {
  const server = await monitor();
  const { page, errors, panel } = await openPanel(server);
  await panel.locator('[data-testid=internals]').waitFor({ timeout: WAIT });
  for (const action of ['block', 'unblock', 'remove']) {
    assert.equal(await panel.locator(`[data-testid=${action}]`).count(), 0, `no ${action} without --admin`);
  }
  assert.deepEqual(errors, []);
  await page.close();
});

test('where the server does not read the text port, the panel has no Scheduler section', async () => {
  const server = await startIcewatch(['demo', '--seed', '3']);
  servers.push(server);
  const { page, errors, panel } = await openPanel(server);
  await eventually('the host panel', async () => /statistics/i.test(await panel.innerText()));
  assert.equal(await panel.locator('[data-testid=internals]').count(), 0);
  assert.doesNotMatch(await panel.innerText(), /^scheduler$/im);
  assert.deepEqual(errors, []);
  await page.close();
});

test('with --keep-blocks the kept blocks show in the panel and under the host table', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'icewatch-e2e-keep-'));
  const db = join(dir, 'history.sqlite');
  try {
    // The first start makes the history; a block is kept in it as a
    // --keep-blocks icewatch keeps one (sqlite3, as an admin would look).
    const first = await monitor('--keep-blocks', '--db', db);
    const names = await eventually('the demo\'s hosts', async () => {
      const hosts = await (await fetch(new URL(`/api/v1/hosts?token=${TOKEN}`, first.url))).json();
      return hosts.length > 0 && hosts.map((h) => h.name);
    });
    // Gone, its last commit made, before sqlite3 writes: the rows have no
    // scheduler, as a schema-4 database's, and the next start adopts them.
    const gone = new Promise((resolve) => first.child.once('close', resolve));
    stopIcewatch(first);
    await gone;
    const rows = names.map((n) => `('${n}', 1765090000000, 1765090000000)`).join(', ');
    execFileSync('sqlite3', ['-cmd', '.timeout 10000', db, `INSERT INTO kept_blocks (name, since_ms, seen_ms) VALUES ${rows}`]);

    const server = await monitor('--keep-blocks', '--db', db);
    const { page, errors, panel } = await openPanel(server);
    const kept = page.locator('[data-testid=kept-blocks]');
    await eventually('the kept blocks under the host table', async () =>
      (await kept.isVisible()) && (await kept.innerText()).includes(names[0]));
    assert.match(await kept.innerText(), /^Blocks kept across scheduler restarts \(--keep-blocks\): /);
    await eventually('the panel saying the block is kept', async () =>
      /kept\s+by icewatch since .+: blocked again whenever the scheduler restarts/.test(await panel.innerText()));
    assert.deepEqual(errors, []);
    await page.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('without --keep-blocks there is no kept-blocks line', async () => {
  const server = await monitor();
  const { page, errors, panel } = await openPanel(server);
  await panel.locator('[data-testid=internals]').waitFor({ timeout: WAIT });
  assert.equal(await page.locator('[data-testid=kept-blocks]').isVisible(), false);
  assert.deepEqual(errors, []);
  await page.close();
});
