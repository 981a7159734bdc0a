// The job list pages back into the history database: `icewatch demo --db`
// keeps a history, and scrolling the job list past what the page holds
// brings older jobs from GET /api/v1/history/jobs, in a real browser.
//
// Run from the repository root after `cargo build` and `npm ci --prefix web`:
//   node --test e2e/

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startIcewatch, stopIcewatch, launchBrowser, openPage, eventually } from './icewatch.mjs';

let server;
let browser;
let page;
let dir;
const pageErrors = [];

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'icewatch-history-e2e-'));
  server = await startIcewatch(['demo', '--seed', '2', '--rate', '3000', '--db', join(dir, 'h.sqlite')]);
  // More finished jobs in the database than the page's list shows.
  await eventually('a thousand jobs in the history', async () => {
    const response = await fetch(new URL('api/v1/history/jobs?limit=1000', server.url));
    return response.ok && (await response.json()).next !== null;
  });
  browser = await launchBrowser();
  page = await openPage(browser, server.url, pageErrors);
});

after(async () => {
  await browser?.close();
  stopIcewatch(server);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test('scrolling the job list past its end brings older jobs from the history', async () => {
  const fromHistory = await eventually('rows from the history', async () => {
    await page.evaluate(() => { const w = document.getElementById('jobs-wrap'); w.scrollTop = w.scrollHeight; });
    return page.evaluate(() => document.querySelectorAll('[data-testid=job-row][data-from=history]').length);
  });
  assert.ok(fromHistory > 0);
  const count = await page.textContent('#jobs-count');
  assert.match(count, /older from the history/);
  // Older ones really are older: they ended before every job the page held.
  const { live, past } = await page.evaluate(() => {
    // eslint-disable-next-line no-undef
    const ends = (sel) => [...document.querySelectorAll(sel)].map((tr) => d3.select(tr).datum().end_ms).filter((t) => t != null);
    return { live: ends('[data-testid=job-row]:not([data-from])'), past: ends('[data-testid=job-row][data-from=history]') };
  });
  assert.ok(past.length > 0);
  if (live.length) assert.ok(Math.max(...past) <= Math.min(...live), 'older than the jobs the page held');
  // The chip that says the history is paused stays hidden while it writes.
  assert.equal(await page.isHidden('[data-testid=history-paused]'), true);
});

test('the page ran without a script error or a console error', () => {
  assert.deepEqual(pageErrors, []);
});
