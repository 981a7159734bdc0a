// The timeline and a job's detail, in a real browser: the bars of a
// replayed real capture (tests/data/basic.v43.bin: 42 remote jobs of the
// no-remote host localice, one a compile error, and 2 local jobs; a raw
// capture has no times, so its jobs begin and end at once and their bars
// are a pixel wide), a job's detail from the job list, and panning into
// the past that only the history database holds (`icewatch demo --db`),
// where a click on a bar opens its job.
//
// Run from the repository root after `cargo build` and `npm ci --prefix web`:
//   node --test e2e/

import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { root, startIcewatch, stopIcewatch, launchBrowser, openPage, eventually } from './icewatch.mjs';

/** Clicks the middle of a bar of the timeline that `pick` (bar → boolean, run in the page) chooses, drawn 4 px wide or more; answers its job. */
async function clickBar(page, pick) {
  await page.locator('[data-testid=timeline]').scrollIntoViewIfNeeded();
  const target = await eventually('a bar in view', () => page.evaluate((pickText) => {
    // eslint-disable-next-line no-new-func
    const chosen = new Function('bar', `return (${pickText})(bar)`);
    const t = window.visage.timeline;
    for (const bar of t.lanes.bars.values()) {
      if (!chosen(bar)) continue;
      const point = t.barPoint(bar);
      if (point && point.width >= 4) return { point, job: bar.job };
    }
    return null;
  }, pick.toString()));
  const box = await page.locator('[data-testid=timeline]').boundingBox();
  await page.mouse.click(box.x + target.point.x, box.y + target.point.y);
  return target.job;
}

describe('a replayed capture', () => {
  let server;
  let browser;
  let page;
  let state;
  const pageErrors = [];

  before(async () => {
    server = await startIcewatch(['replay', join(root, 'tests', 'data', 'basic.v43.bin'), '--speed', '0']);
    state = await eventually('the recording played to its end', async () => {
      const snapshot = await (await fetch(new URL('api/v1/snapshot', server.url))).json();
      return snapshot.totals.jobs_finished + snapshot.totals.jobs_failed >= 42 && snapshot;
    });
    browser = await launchBrowser({ timezoneId: 'UTC' });
    page = await openPage(browser, server.url, pageErrors);
  });

  after(async () => {
    await browser?.close();
    stopIcewatch(server);
  });

  test('every job that ran has a bar, on a lane of the host it ran on, and the bars are drawn', async () => {
    const ran = state.history.concat(state.jobs).filter((j) => j.server != null);
    assert.ok(ran.length >= 44, `42 remote and 2 local jobs ran: ${ran.length}`);
    const bars = await eventually('a bar for every job', () => page.evaluate((n) => {
      const t = window.visage.timeline;
      return t.lanes.bars.size >= n && t.drawn >= n
        && [...t.lanes.bars.values()].map((b) => ({ host: b.host, lane: b.lane, s: b.s, e: b.e, id: b.job.id, state: b.job.state }));
    }, ran.length));
    assert.equal(bars.length, ran.length);
    const names = new Map(state.hosts.map((h) => [h.id, h.name]));
    for (const j of ran) {
      const bar = bars.find((b) => b.id === j.id && b.s === j.start_ms);
      assert.ok(bar, `a bar for job ${j.id}`);
      assert.equal(bar.host, j.server_name ?? names.get(j.server));
      assert.equal(bar.state, j.state);
    }
    // No two bars of a lane overlap.
    const byLane = new Map();
    for (const b of bars) byLane.set(b.host + '/' + b.lane, [...byLane.get(b.host + '/' + b.lane) ?? [], b]);
    for (const lane of byLane.values()) {
      lane.sort((a, b) => a.s - b.s);
      for (let i = 1; i < lane.length; i++) assert.ok(lane[i].s >= lane[i - 1].e, 'bars of one lane do not overlap');
    }
    assert.ok(bars.some((b) => b.state === 'failed'), 'the compile error is on it');
    assert.ok(bars.some((b) => b.state === 'local_finished'), 'the local jobs are on it');
    // The canvas really has the bars: the pixel in the middle of one is painted.
    const painted = await page.evaluate(() => {
      const t = window.visage.timeline;
      const ctx = t.canvas.getContext('2d');
      let hits = 0;
      for (const bar of t.lanes.bars.values()) {
        const p = t.barPoint(bar);
        // Bars are whole pixels: the one around the middle, or a neighbour.
        if (p && ctx.getImageData(Math.floor(p.x * t.ratio) - 1, Math.floor(p.y * t.ratio), 3, 1).data.some((v, i) => i % 4 === 3 && v > 0)) hits++;
      }
      return hits;
    });
    assert.ok(painted >= ran.length / 2, `bars painted on the canvas: ${painted} of ${ran.length}`);
  });

  test("the failed job's detail, from the job list: its exit code, route, sizes and why it ended", async () => {
    const broken = state.history.find((j) => j.state === 'failed');
    await page.selectOption('[data-testid=filter-state]', 'failed');
    const row = await eventually('the failed job alone in the list', async () => {
      const rows = page.locator('[data-testid=job-row]');
      return (await rows.count()) === 1 && rows.first();
    });
    await row.click();
    const detail = page.locator('[data-testid=job-detail]');
    await detail.waitFor({ state: 'visible' });
    assert.equal(await page.isHidden('[data-testid=panel]'), true, "not the server's host panel");
    const text = await detail.innerText();
    assert.equal(await detail.locator('h2').getAttribute('title'), broken.file);
    assert.match(text, new RegExp(`exit code\\s+${broken.exit_code} \\(the compiler failed\\)`));
    assert.match(text, new RegExp(`route\\s+localice → ${broken.server_name}`));
    assert.match(text, /sent\s+\S+ compressed · \S+ uncompressed/);
    assert.match(text, /ended\s+The server reported the compiler's exit code\./);
    await page.keyboard.press('Escape');
    await detail.waitFor({ state: 'hidden' });
    await page.selectOption('[data-testid=filter-state]', '');
  });

  test("a click on a job in the job list opens the job's detail", async () => {
    const row = await eventually('the whole list again', async () => {
      const rows = page.locator('[data-testid=job-row]');
      return (await rows.count()) > 1 && rows.first();
    });
    const file = await row.locator('td.file').getAttribute('title');
    await row.click();
    const detail = page.locator('[data-testid=job-detail]');
    await detail.waitFor({ state: 'visible' });
    assert.equal(await page.isHidden('[data-testid=panel]'), true);
    assert.equal(await detail.locator('h2').getAttribute('title'), file);
    assert.match(await detail.innerText(), /compiled|ran/);
    // Its submitter's button opens the host's panel instead.
    await detail.getByRole('button', { name: /^submitter: / }).click();
    await page.locator('[data-testid=panel]').waitFor({ state: 'visible' });
    assert.equal(await page.isHidden('[data-testid=job-detail]'), true);
    await page.keyboard.press('Escape');
  });

  test('the page ran without a script error or a console error', () => {
    assert.deepEqual(pageErrors, []);
  });
});

describe('the past from the history', () => {
  let server;
  let browser;
  let page;
  let dir;
  const pageErrors = [];
  const asked = [];

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'icewatch-timeline-e2e-'));
    server = await startIcewatch(['demo', '--seed', '3', '--rate', '3000', '--db', join(dir, 'h.sqlite')]);
    // Jobs that ended 20 s before the page opens, and more than the page is sent.
    await eventually('jobs 20 s old in the history', async () => {
      const until = Date.now() - 20_000;
      const response = await fetch(new URL(`api/v1/history/jobs?until=${until}&limit=1000`, server.url));
      return response.ok && (await response.json()).next !== null;
    });
    browser = await launchBrowser();
    const first = browser.pages()[0] ?? await browser.newPage();
    first.on('request', (r) => { if (r.url().includes('api/v1/history/jobs?')) asked.push(new URL(r.url()).searchParams); });
    page = await openPage(browser, server.url, pageErrors);
  });

  after(async () => {
    await browser?.close();
    stopIcewatch(server);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('dragging the timeline into the past shows jobs from the history, and Live comes back', async () => {
    const canvas = page.locator('[data-testid=timeline]');
    await canvas.scrollIntoViewIfNeeded();
    // 15 s in view, then about a view back.
    for (let i = 0; i < 3; i++) await page.click('#timeline-in');
    assert.equal(await page.evaluate(() => window.visage.timeline.view.span), 15_000);
    const box = await canvas.boundingBox();
    await page.mouse.move(box.x + 150, box.y + box.height / 2);
    await page.mouse.down();
    await page.mouse.move(box.x + box.width - 20, box.y + box.height / 2, { steps: 8 });
    await page.mouse.up();
    const view = await page.evaluate(() => ({ ...window.visage.timeline.view }));
    assert.equal(view.live, false);
    assert.equal(await page.getAttribute('#timeline-live', 'aria-pressed'), 'false');
    await eventually('the note says when the view ends', async () =>
      /^at \d{4}-\d\d-\d\d \d\d:\d\d · 15 s in view$/.test(await page.textContent('#timeline-note')));
    // The history was asked for the jobs that ended before what the page was sent.
    assert.ok(asked.length > 0 && asked.every((q) => Number(q.get('since')) < Number(q.get('until'))), 'a window of the history');
    // Bars in view that only the history has: its rows carry their seq, the WebSocket's do not.
    const past = await eventually('bars from the history in view', () => page.evaluate(() => {
      const t = window.visage.timeline;
      const older = [...t.lanes.bars.values()].filter((b) => b.job.seq != null);
      return { older: older.length, inView: older.filter((b) => t.barPoint(b)).length, drawn: t.drawn };
    }).then((p) => p.inView > 0 && p.drawn >= p.inView && p)); // drawn: live news are drawn up to 500 ms later
    assert.ok(past.inView > 0, JSON.stringify(past));
    // One of them opens like any other.
    const job = await clickBar(page, (bar) => bar.job.seq != null);
    const detail = page.locator('[data-testid=job-detail]');
    await detail.waitFor({ state: 'visible' });
    assert.equal(await detail.locator('h2').getAttribute('title'), job.file);
    await page.keyboard.press('Escape');
    await page.click('#timeline-live');
    assert.equal(await page.evaluate(() => window.visage.timeline.view.live), true);
  });

  test('the page ran without a script error or a console error', () => {
    assert.deepEqual(pageErrors, []);
  });
});
