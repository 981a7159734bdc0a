// The page of `icewatch replay` playing a real scheduler's capture
// (tests/data/basic.v43.bin, see tests/data/README.md: 42 remote jobs
// submitted by the no-remote host localice, one of them a compile error,
// many given back to localice itself; 2 local jobs), in a real browser.
//
// Run from the repository root after `cargo build` and `npm ci --prefix web`:
//   node --test e2e/

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { root, startIcewatch, stopIcewatch, launchBrowser, openPage, eventually } from './icewatch.mjs';

const RECORDING = 'basic.v43.bin';
const REMOTE_JOBS = 42;

let server;
let browser;
let page;
let state; // the server's snapshot once the whole recording has played
const pageErrors = [];

before(async () => {
  server = await startIcewatch(['replay', join(root, 'tests', 'data', RECORDING), '--speed', '0']);
  // The whole recording, played at once.
  state = await eventually('the recording played to its end', async () => {
    const snapshot = await (await fetch(new URL('api/v1/snapshot', server.url))).json();
    return snapshot.totals.jobs_finished + snapshot.totals.jobs_failed >= REMOTE_JOBS && snapshot;
  });
  browser = await launchBrowser({ timezoneId: 'UTC' });
  page = await openPage(browser, server.url, pageErrors);
});

after(async () => {
  await browser?.close();
  stopIcewatch(server);
});

test('the chip names the recording and when it was made, instead of "live"', async () => {
  const replay = state.scheduler.replay;
  assert.ok(replay && replay.file.endsWith(RECORDING) && Number.isInteger(replay.recorded_ms), `SCHEDULER replay: ${JSON.stringify(replay)}`);
  const when = new Date(replay.recorded_ms).toISOString().slice(0, 16).replace('T', ' ');
  // Played at full speed, the recording has ended.
  assert.equal(state.scheduler.online, false);
  await eventually('the chip of the replay', async () =>
    (await page.locator('[data-testid=connection] .text').innerText()) === `replay of ${RECORDING} · recorded ${when} · ended`);
  assert.match(await page.locator('#banner').innerText(), /^The recording .*basic\.v43\.bin has ended: what you see is its last state\.$/);
});

test("job times are the recording's", async () => {
  // The state runs on the recording's clock...
  const recorded = state.scheduler.replay.recorded_ms;
  for (const j of state.history) assert.ok(j.start_ms >= recorded && j.start_ms < recorded + 3600_000, `job ${j.id} began during the recording`);
  // ...and the page shows those times.
  const newest = state.history.at(-1);
  const time = (ms) => new Date(ms).toISOString().slice(11, 19);
  const title = await eventually('the newest job listed', () => page.evaluate((file) => {
    const row = [...document.querySelectorAll('[data-testid=job-row]')].find((r) => r.cells[1].textContent === file);
    return row && row.cells[3].title;
  }, newest.file));
  assert.equal(title, `began ${time(newest.start_ms)} · ended ${time(newest.end_ms)}`);
});

test('the compile error shows its exit code in its row; Success counts compiler verdicts', async () => {
  const broken = state.history.filter((j) => j.state === 'failed');
  assert.equal(broken.length, 1, 'one compile error in the recording');
  await page.selectOption('[data-testid=filter-state]', 'failed');
  const row = await eventually('the failed job alone in the list', () => page.evaluate(() => {
    const rows = [...document.querySelectorAll('[data-testid=job-row]')];
    return rows.length === 1 && { file: rows[0].cells[1].textContent, why: rows[0].querySelector('.why')?.textContent };
  }));
  assert.deepEqual(row, { file: broken[0].file, why: `exit ${broken[0].exit_code}` });
  await page.selectOption('[data-testid=filter-state]', '');
  assert.equal(await page.locator('#sum-success').innerText(), '97.6 %');
  assert.match(await page.locator('#sum-success-sub').innerText(), /^41 ok · 1 failed · 0 cut short$/);
});

test("the host table adds up: the jobs given back to localice are in its IN, and Σ IN = Σ OUT = the recording's 42 jobs", async () => {
  // The recording has ended, its hosts are offline: the last picture stays.
  const localice = state.hosts.find((h) => h.name === 'localice');
  assert.ok(localice.jobs_in_own > 0, `the scheduler gave localice some of its own jobs back (${localice.jobs_in_own})`);
  const cells = await eventually("localice's row and the footer", () => page.evaluate(() => {
    const head = [...document.querySelectorAll('#hosts thead th')].map((th) => th.textContent);
    const row = [...document.querySelectorAll('[data-testid=host-row]')].find((r) => r.querySelector('.hostname')?.textContent === 'localice');
    const foot = (key) => document.querySelector(`[data-testid=total-${key}]`)?.textContent;
    return row && foot('in') && {
      row: Object.fromEntries(head.map((h, i) => [h, row.cells[i].textContent])),
      in: foot('in'), own: foot('own'), out: foot('out'),
    };
  }));
  assert.equal(cells.row.IN, String(localice.jobs_in));
  assert.equal(cells.row.OWN, String(localice.jobs_in_own));
  assert.equal(cells.row.OUT, String(REMOTE_JOBS));
  assert.deepEqual([cells.in, cells.out], [String(REMOTE_JOBS), String(REMOTE_JOBS)]);
  assert.equal(cells.own, String(localice.jobs_in_own));
  // A job given back reads as what it was: from localice to localice (the
  // newest, so that its row is in view: the list holds only those).
  const given = state.history.filter((j) => j.client_name === 'localice' && j.server_name === 'localice' && j.state === 'finished').at(-1);
  const route = await eventually('a job given back, listed', () => page.evaluate((file) => {
    const row = [...document.querySelectorAll('[data-testid=job-row]')].find((r) => r.cells[1].textContent === file);
    return row && row.cells[2].textContent;
  }, given.file));
  assert.equal(route, 'localice → localice');
});

test('the replayed page ran without a script error or a console error', () => {
  assert.deepEqual(pageErrors, []);
});
