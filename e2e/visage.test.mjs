// The page in a real browser: `icewatch demo` serves a simulated cluster
// (a fake scheduler speaking the real wire protocol to the real monitor),
// Debian's chromium, driven by playwright-core, opens the page and checks
// what a person would: a node per host, arrows while jobs run, tables that
// move, a filter that narrows, numbers that agree. It saves screenshots to
// target/e2e/ (visage.png is the README's).
//
// Run from the repository root after `cargo build` and `npm ci --prefix web`:
//   node --test e2e/
// Needs /usr/bin/chromium (Debian's `chromium` package); never downloads a
// browser. e2e/icewatch.mjs starts icewatch and the browser.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { root, startIcewatch, stopIcewatch, launchBrowser, eventually, WAIT } from './icewatch.mjs';

const shots = join(root, 'target', 'e2e');

let demo;
let pageUrl;
let browser;
let page;
const pageErrors = [];

/** The server's view, with the token of the page URL if it has one. */
async function api(path) {
  const url = new URL(path, pageUrl);
  const token = new URL(pageUrl).searchParams.get('token');
  if (token) url.searchParams.set('token', token);
  const response = await fetch(url);
  assert.equal(response.status, 200, `${path}: ${response.status}`);
  return response.json();
}

before(async () => {
  demo = await startIcewatch(['demo', '--seed', '1']);
  pageUrl = demo.url;
  browser = await launchBrowser();
  page = browser.pages()[0] ?? await browser.newPage();
  page.on('pageerror', (e) => pageErrors.push(e.message));
  page.on('console', (m) => { if (m.type() === 'error') pageErrors.push('console: ' + m.text()); });
  await page.goto(pageUrl);
  await page.waitForSelector('[data-testid=connection][data-state=live]', { timeout: WAIT });
  mkdirSync(shots, { recursive: true });
});

after(async () => {
  await browser?.close();
  stopIcewatch(demo);
});

test('the first picture of the graph is already laid out, inside its card and around its centre', async () => {
  // A page opened once the demo's hosts have logged in (the page of before()
  // may have come first).
  await eventually('the demo\'s hosts logged in', async () => (await api('api/v1/hosts')).filter((h) => h.online).length >= 10);
  await page.reload();
  await page.waitForSelector('[data-testid=connection][data-state=live]', { timeout: WAIT });
  // The page keeps where its first drawn frame put each host (CSS pixels of the canvas).
  const first = await eventually('a first frame with hosts', () => page.evaluate(() => visage.graph.firstFrame));
  assert.ok(first.nodes.length >= 10, `the demo's hosts are in it (${first.nodes.length})`);
  // Laid out: the layout had cooled before anything was drawn. A fresh
  // layout starts at alpha 1; the page warms a laid-out one up to 0.4 at
  // most when hosts or arrows come and go.
  assert.ok(first.alpha <= 0.4, `the layout had cooled before the first frame (alpha ${first.alpha.toFixed(3)})`);
  for (const n of first.nodes) {
    assert.ok(n.x - n.r >= 0 && n.x + n.r <= first.width && n.y - n.r >= 0 && n.y + n.r <= first.height,
      `host ${n.key} (${Math.round(n.x)}, ${Math.round(n.y)}, r ${Math.round(n.r)}) inside the ${Math.round(first.width)}×${Math.round(first.height)} card`);
  }
  // Centred: the middle of the hosts' extent is near the middle of the card,
  // and they fill a good part of it rather than a corner.
  const xs = first.nodes.map((n) => n.x), ys = first.nodes.map((n) => n.y);
  const mid = { x: (Math.min(...xs) + Math.max(...xs)) / 2, y: (Math.min(...ys) + Math.max(...ys)) / 2 };
  assert.ok(Math.abs(mid.x - first.width / 2) < first.width * 0.1 && Math.abs(mid.y - first.height / 2) < first.height * 0.1,
    `centred: middle of the hosts at (${Math.round(mid.x)}, ${Math.round(mid.y)}), of the card at (${Math.round(first.width / 2)}, ${Math.round(first.height / 2)})`);
  const spread = Math.max((Math.max(...xs) - Math.min(...xs)) / first.width, (Math.max(...ys) - Math.min(...ys)) / first.height);
  assert.ok(spread > 0.3, `laid out, not bunched (${spread.toFixed(2)} of the card)`);
});

test('the connection chip says how fresh the picture is, never a sequence number', async () => {
  // The demo sends news about ten times a second: the picture stays fresh.
  await eventually('a few renders', () => page.evaluate(() => visage.stats.renders > 5));
  const text = await page.locator('[data-testid=connection] .text').innerText();
  assert.doesNotMatch(text, /#\d/, 'no sequence number');
  assert.match(text, /^live · updated (just now|\d+ s ago)$/);
  assert.match(await page.locator('[data-testid=connection]').getAttribute('title'), /Last news from icewatch at \d\d:\d\d/);
});

test('the graph shows one node per online host of the demo cluster', async () => {
  // Hosts leave and join in the demo: compare until a moment when both agree.
  const counts = await eventually('as many online nodes as online hosts', async () => {
    const hosts = await api('api/v1/hosts');
    const online = hosts.filter((h) => h.online).map((h) => String(h.id)).sort();
    const nodes = (await page.$$eval('[data-testid=host-node]:not(.offline)', (els) => els.map((e) => e.dataset.id))).sort();
    return online.length > 1 && JSON.stringify(online) === JSON.stringify(nodes) && online.length;
  });
  assert.ok(counts >= 10, `the demo's dozen hosts are drawn (${counts})`);
  const noRemote = await page.$$eval('[data-testid=host-node].no-remote', (els) => els.length);
  assert.ok(noRemote >= 1, 'no-remote hosts are marked');
});

test('arrows from submitter to server appear while jobs compile', async () => {
  const links = await eventually('an arrow', () => page.$$eval('[data-testid=link]', (els) => els.length));
  assert.ok(links > 0);
  // Each arrow joins two drawn hosts and matches a link the server reports.
  const snapshot = await api('api/v1/snapshot');
  const drawn = await page.$$eval('[data-testid=link]', (els) => els.map((e) => [e.dataset.from, e.dataset.to]));
  const nodes = new Set(await page.$$eval('[data-testid=host-node]', (els) => els.map((e) => e.dataset.id)));
  for (const [from, to] of drawn) assert.ok(nodes.has(from) && nodes.has(to), `arrow ${from}→${to} joins drawn hosts`);
  assert.ok(snapshot.links.length > 0, 'the server has links too');
});

test('the host table and the job list update as the cluster works', async () => {
  const hostText = () => page.locator('[data-testid=hosts] tbody').innerText();
  const jobText = () => page.locator('[data-testid=jobs] tbody').innerText();
  const hostsBefore = await hostText();
  const jobsBefore = await jobText();
  await eventually('the host table changes', async () => (await hostText()) !== hostsBefore);
  await eventually('the job list changes', async () => (await jobText()) !== jobsBefore);
  const rows = await page.locator('[data-testid=host-row]').count();
  assert.ok(rows >= 10, `a row per host (${rows})`);
});

test('the summary agrees with the host table', async () => {
  // Both come from the same model in the same frame; read them together.
  const numbers = await page.evaluate(() => {
    const n = (s) => Number(s.replace(/[^\d]/g, ''));
    const [busy, total] = document.getElementById('sum-slots').textContent.split('/').map(n);
    const cell = (key) => n(document.querySelector(`[data-testid=total-${key}]`).textContent);
    return { busy, total, cur: cell('cur'), max: cell('max'), active: cell('active') };
  });
  assert.equal(numbers.busy, numbers.cur, 'busy slots = sum of CUR');
  assert.equal(numbers.total, numbers.max, 'total slots = sum of MAX');
});

test('a filter narrows the job list', async () => {
  await page.waitForSelector('[data-testid=job-row]', { timeout: WAIT });
  // The list holds only the rows in view; the note counts all that match.
  const matchCount = async () => Number((await page.locator('[data-testid=jobs-count]').innerText()).match(/([\d,]+) shown/)[1].replace(/,/g, ''));
  const files = await page.$$eval('[data-testid=job-row] td:nth-child(2)', (els) => els.map((e) => e.textContent));
  // The rarest last component of a shown file name ("parser.c"): it must
  // match some rows and not all.
  const matching = (needle) => files.filter((f) => f.toLowerCase().includes(needle.toLowerCase())).length;
  const needle = files.map((f) => f.split('/').pop()).filter((f) => f.length > 3)
    .sort((a, b) => matching(a) - matching(b))[0];
  assert.ok(needle && matching(needle) < files.length, `a file that narrows the ${files.length} rows`);
  const countBefore = await matchCount();
  await page.fill('[data-testid=filter-file]', needle);
  await eventually(`only jobs on ${needle}`, async () => {
    const shown = await page.$$eval('[data-testid=job-row] td:nth-child(2)', (els) => els.map((e) => e.textContent));
    const count = await matchCount();
    return shown.length > 0 && count > 0 && count < countBefore && shown.every((f) => f.toLowerCase().includes(needle.toLowerCase()));
  });
  await page.fill('[data-testid=filter-file]', '');

  // The state filter: failed jobs only, or none at all.
  await page.selectOption('[data-testid=filter-state]', 'compiling');
  await eventually('only compiling jobs', async () => {
    const states = await page.$$eval('[data-testid=job-row] .state', (els) => els.map((e) => e.textContent));
    return states.length > 0 && states.every((s) => s === 'compiling');
  });
  await page.selectOption('[data-testid=filter-state]', '');
});

/** Where the page draws online host nodes, in viewport pixels, for pointing at them. */
function hostSpots() {
  return page.evaluate(() => {
    const g = visage.graph, box = g.canvas.getBoundingClientRect();
    return [...g.nodes.values()].filter((n) => n.host.online).map((n) => ({
      id: n.id, key: n.key, name: n.host.name, x: box.left + g.transform.applyX(n.x), y: box.top + g.transform.applyY(n.y),
    })).filter((s) => s.x > box.left + 20 && s.x < box.right - 20 && s.y > box.top + 20 && s.y < box.bottom - 20);
  });
}

/** The job rows shown: state, why it ended, file. */
const shownJobs = () => page.$$eval('[data-testid=job-row]', (rows) => rows.map((r) => ({
  state: r.querySelector('.state').textContent, why: r.querySelector('.why')?.textContent ?? '', file: r.cells[1].textContent,
})));

test('each job row says why it ended: an exit code for a compile error, a reason for a job cut short', async () => {
  // The fields the page reads (docs/json.md) are there, not optional.
  const history = await eventually('finished jobs', async () => { const h = await api('api/v1/jobs?state=history&limit=500'); return h.length && h; });
  for (const j of history) {
    for (const key of ['reason', 'session', 'client_name', 'server_name']) assert.ok(key in j, `JOB ${j.id} has ${key}: ${JSON.stringify(j)}`);
  }
  const t = (await api('api/v1/snapshot')).totals;
  assert.ok('jobs_cut_short' in t, 'TOTALS has jobs_cut_short');

  // The demo has a few compile errors...
  await page.selectOption('[data-testid=filter-state]', 'failed');
  // (The list changes at the next render: wait until it shows only what the filter lets through.)
  const only = (state) => async () => { const rows = await shownJobs(); return rows.length && rows.every((r) => r.state === state) && rows; };
  const failed = await eventually('compile errors alone listed', only('failed'), 2 * WAIT);
  for (const row of failed) {
    assert.equal(row.state, 'failed');
    assert.match(row.why, /^exit -?\d+$/, `${row.file}: its exit code in the row`);
  }
  // ...and hosts that leave, cutting their jobs short (the first within a minute).
  await page.selectOption('[data-testid=filter-state]', 'cut_short');
  const cut = await eventually('jobs cut short alone listed', only('cut short'), 2 * WAIT);
  for (const row of cut) {
    assert.equal(row.state, 'cut short');
    assert.ok(['host left', 'scheduler gone', 'stale'].includes(row.why), `${row.file}: why in the row (${row.why})`);
  }
  await page.selectOption('[data-testid=filter-state]', '');
  // Success counts compiler verdicts; jobs cut short are counted apart.
  assert.match(await page.locator('#sum-success-sub').innerText(), /^[\d,]+ ok · [\d,]+ failed · [\d,]+ cut short$/);
});

test('the host table adds up: Σ IN = Σ OUT over the hosts, each column saying what it counts', async () => {
  const hosts = await api('api/v1/hosts');
  for (const h of hosts) {
    for (const key of ['jobs_in', 'jobs_in_own', 'jobs_out']) assert.ok(key in h, `HOST ${h.name} has ${key}`);
  }
  // Both sums from the same render, once the page has taken in a diff
  // whole: a loaded machine may show the footer between a job's server
  // and its submitter (a page that never agrees fails after WAIT).
  let last;
  const sums = await eventually('Σ IN = Σ OUT in the footer', async () => {
    last = await page.evaluate(() => {
      const n = (key) => Number(document.querySelector(`[data-testid=total-${key}]`).textContent.replace(/,/g, ''));
      return { in: n('in'), out: n('out'), own: n('own'), note: document.querySelector('[data-testid=hosts-note]').textContent };
    });
    return last.in > 0 && last.in === last.out && last;
  }).catch((e) => { throw new Error(`${e.message}; last seen ${JSON.stringify(last)}`); });
  assert.ok(sums.own <= sums.in);
  assert.ok(sums.note.startsWith(`Σ IN ${sums.in.toLocaleString('en-US')} = Σ OUT ${sums.out.toLocaleString('en-US')}: `), sums.note);
  const titles = await page.$$eval('#hosts thead th', (ths) => ths.filter((th) => th.title).length);
  assert.equal(titles, await page.locator('#hosts thead th').count(), 'every column header has a title');
});

test('the canvas draws every host where the layout puts it', async () => {
  await eventually('a painted pixel at the centre of every host', () => page.evaluate(() => {
    const g = visage.graph;
    const nodes = [...g.nodes.values()];
    return nodes.length >= 10 && nodes.every((n) => {
      const x = Math.round(g.transform.applyX(n.x) * g.ratio), y = Math.round(g.transform.applyY(n.y) * g.ratio);
      return g.ctx.getImageData(x, y, 1, 1).data[3] > 0;
    });
  }));
  // And not everywhere: the corners of the graph stay empty.
  const corner = await page.evaluate(() => visage.graph.ctx.getImageData(0, 0, 1, 1).data[3]);
  assert.equal(corner, 0);
});

test('a host on the canvas answers the pointer: tooltip on hover, panel on click, drag moves it', async () => {
  // Zooming out a little stops the view following the layout, as for a
  // person; the hosts themselves may still move, so each step is retried
  // until the page found the host that was pointed at.
  const box = await page.locator('[data-testid=graph]').boundingBox();
  await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
  await page.mouse.wheel(0, 60);
  await eventually('the view stops following the layout', () => page.evaluate(() => visage.graph.userZoomed));

  const spot = await eventually('a tooltip naming the host under the pointer, then its panel on click', async () => {
    const [s] = await hostSpots();
    if (!s) return false;
    await page.mouse.move(s.x, s.y);
    const tip = page.locator('#tooltip');
    if (!(await tip.isVisible()) || (await tip.locator('h3').innerText()) !== s.name) return false;
    await page.mouse.click(s.x, s.y);
    const panel = page.locator('[data-testid=panel]');
    return (await panel.isVisible()) && (await panel.locator('h2').innerText()) === s.name && s;
  });
  await eventually('the clicked host marked selected', async () =>
    (await page.$$eval('[data-testid=host-node].selected', (els) => els.map((e) => e.dataset.id))).join() === String(spot.id));
  await page.keyboard.press('Escape');
  await eventually('the panel closes', () => page.locator('[data-testid=panel]').isHidden());

  // Dragging: the host follows the pointer while the button is down.
  await eventually('a dragged host held under the pointer', async () => {
    const [s] = await hostSpots();
    if (!s) return false;
    await page.mouse.move(s.x, s.y);
    await page.mouse.down();
    await page.mouse.move(s.x + 40, s.y + 30, { steps: 5 });
    const held = await page.evaluate((key) => {
      const g = visage.graph, n = g.nodes.get(key), r = g.canvas.getBoundingClientRect();
      return n && n.fx != null && { x: r.left + g.transform.applyX(n.fx), y: r.top + g.transform.applyY(n.fy) };
    }, s.key);
    await page.mouse.up();
    return held && Math.hypot(held.x - (s.x + 40), held.y - (s.y + 30)) < 8;
  });
  await page.mouse.move(1, 1);
  assert.equal(await page.locator('[data-testid=panel]').isHidden(), true, 'a drag is not a click');
  await page.click('#fit');
});

test('clicking a host opens its panel, and the page is saved for the README', async () => {
  await page.locator('[data-testid=host-row]').first().click();
  await page.waitForSelector('[data-testid=panel]:not([hidden])', { timeout: WAIT });
  await eventually('the host panel', async () => /statistics/i.test(await page.locator('[data-testid=panel]').innerText()));
  await page.screenshot({ path: join(shots, 'visage-panel.png') });
  await page.keyboard.press('Escape');
  await eventually('the panel closes', () => page.locator('[data-testid=panel]').isHidden());
  await eventually('no host selected', async () => (await page.locator('[data-testid=host-node].selected').count()) === 0);

  // The README's picture: the top of the page, a moment with jobs flowing.
  await page.mouse.move(1, 1);
  await page.evaluate(() => window.scrollTo(0, 0));
  await eventually('jobs flowing', () => page.$$eval('[data-testid=link]', (els) => els.length >= 3));
  // A busier moment makes a better picture; wait a little for one, not more.
  const busy = () => page.evaluate(() => visage.model.totals && visage.model.totals.busy_slots >= 20);
  for (const until = Date.now() + 20_000; Date.now() < until && !(await busy());) await page.waitForTimeout(250);
  await page.screenshot({ path: join(shots, 'visage.png') });

  // On a phone, in the dark: one column, nothing wider than the screen.
  await page.setViewportSize({ width: 390, height: 844 });
  await page.emulateMedia({ colorScheme: 'dark' });
  await eventually('the one-column layout', () => page.evaluate(() => document.documentElement.scrollWidth <= 390));
  await page.screenshot({ path: join(shots, 'visage-phone-dark.png'), fullPage: true });
  assert.ok(existsSync(join(shots, 'visage.png')));
});

test('the page ran without a script error or a console error', () => {
  assert.deepEqual(pageErrors, []);
});
