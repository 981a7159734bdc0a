// The builds list, hosts that hurt builds and the notification of a
// build's end (docs/insights.md), in a real browser, on `icewatch demo`
// with a build gap of 1 s so that builds end while the page watches. The
// demo's cluster has hosts at protocol 43 among hosts at 44, which the
// rule of differing protocols flags.
//
// Run from the repository root after `cargo build` and `npm ci --prefix web`:
//   node --test e2e/

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startIcewatch, stopIcewatch, launchBrowser, openPage, eventually } from './icewatch.mjs';

let server;
let browser;
let page;
const pageErrors = [];

before(async () => {
  server = await startIcewatch(['demo', '--seed', '3', '--hosts', '8', '--build-gap', '1s']);
  browser = await launchBrowser();
  await browser.grantPermissions(['notifications'], { origin: new URL(server.url).origin });
  // The real Notification, watched: each one made is also kept for the test.
  await browser.addInitScript(() => {
    const Real = window.Notification;
    window.notified = [];
    window.Notification = class extends Real {
      constructor(title, options) { super(title, options); window.notified.push({ title, body: options?.body }); }
    };
  });
  page = await openPage(browser, server.url, pageErrors);
});

after(async () => {
  await browser?.close();
  stopIcewatch(server);
});

test('the builds list shows the builds the API gives, with their numbers', async () => {
  await eventually('a build that ended', () => page.evaluate(() => document.querySelectorAll('[data-testid=build-row]:not(.open)').length > 0));
  const api = await (await fetch(new URL('api/v1/builds?limit=50', server.url))).json();
  assert.equal(api.gap_ms, 1000);
  const rows = await page.evaluate(() => [...document.querySelectorAll('[data-testid=build-row]')]
    .map((tr) => ({ host: tr.dataset.host, jobs: tr.cells[3].textContent, open: tr.classList.contains('open') })));
  assert.ok(rows.length > 0);
  // A build that ended does not change: the page's and the API's agree.
  const done = rows.find((r) => !r.open);
  const same = api.builds.find((b) => b.host === done.host && !b.open && String(b.jobs) === done.jobs.replace(/,/g, ''));
  assert.ok(same, `${JSON.stringify(done)} in the API's builds`);
  assert.match(await page.textContent('[data-testid=builds-count]'), /a pause of 1\.0 s ends a build/);
});

test('a host that hurts builds is flagged in the host table and its panel', async () => {
  const flagged = await eventually('a flagged host row', () => page.evaluate(() => {
    const tr = document.querySelector('#hosts tbody tr[data-hurting~=protocol]');
    return tr && tr.querySelector('[data-testid=hurt-badge]') ? tr.cells[1].textContent.replace('⚠', '').trim() : null;
  }));
  const api = await (await fetch(new URL('api/v1/insights/hosts', server.url))).json();
  assert.ok(api.hosts.some((f) => f.host === flagged && f.kind === 'protocol'), `${flagged} flagged by the API`);
  await page.click(`#hosts tbody tr[data-hurting~=protocol]`);
  const text = await eventually('the panel says why', () => page.evaluate(() => document.querySelector('[data-testid=panel-hurting]')?.textContent));
  assert.match(text, /protocol: speaks protocol 43 where most hosts speak 44/);
  await page.keyboard.press('Escape');
  const metrics = await (await fetch(new URL('metrics', server.url))).text();
  assert.match(metrics, new RegExp(`icewatch_host_hurting\\{host="${flagged}",rule="protocol"\\} 1`));
});

test('a chosen host\'s build that ends brings a browser notification with its summary', async () => {
  await page.click('#notify');
  assert.equal(await page.getAttribute('#notify', 'aria-pressed'), 'true');
  const host = await eventually('a build going on', () => page.evaluate(() => document.querySelector('[data-testid=build-row].open')?.dataset.host));
  await page.selectOption('[data-testid=build-notify-host]', host);
  const note = await eventually(`the end of ${host}'s build`, () => page.evaluate(() => window.notified.find((n) => n.title.endsWith("'s build ended"))));
  assert.equal(note.title, `icewatch: ${host}'s build ended`);
  assert.match(note.body, /^[\d,]+ jobs in .* · [\d.]+ % remote/);
});

test('the page ran without a script error or a console error', () => {
  assert.deepEqual(pageErrors, []);
});
