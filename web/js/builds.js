// Builds and the hosts that hurt them (docs/insights.md): the builds
// list, polled from GET /api/v1/builds; the flags of GET
// /api/v1/insights/hosts on the host table's rows and in the host panel;
// and, opt-in, a browser notification when a chosen host's build ends.
/* global d3 */

import { BUILDS } from 'icewatch/settings.js';
import { withToken } from 'icewatch/connection.js';
import { notifyBuild } from 'icewatch/notify.js';
import { el } from 'icewatch/dom.js';
import { fmt } from 'icewatch/format.js';

/** What the server said last: builds newest first, flags by host name. */
const insights = { builds: [], flags: new Map(), gapMs: null };
/** Builds seen open, by key: one that is seen closed afterwards has ended. */
const openBuilds = new Set();
let app;

const buildKey = (b) => `${b.host}@${b.start_ms}`;

/** Starts polling; `app` is main.js's (scheduleRender). */
export function initBuilds(shared) {
  app = shared;
  const pick = el('build-notify-host');
  pick.value = localStorage.getItem(BUILDS.notifyKey) ?? '';
  pick.addEventListener('change', () => localStorage.setItem(BUILDS.notifyKey, pick.value));
  poll();
  setInterval(poll, BUILDS.pollMs);
}

async function poll() {
  try {
    const [builds, hosts] = await Promise.all([
      fetch(withToken(`api/v1/builds?limit=${BUILDS.rows}`)).then((r) => r.ok ? r.json() : null),
      fetch(withToken('api/v1/insights/hosts')).then((r) => r.ok ? r.json() : null),
    ]);
    if (builds) {
      insights.builds = builds.builds;
      insights.gapMs = builds.gap_ms;
      ended(builds.builds);
    }
    if (hosts) {
      insights.flags = new Map();
      for (const f of hosts.hosts) insights.flags.set(f.host, [...(insights.flags.get(f.host) ?? []), f]);
    }
    renderBuilds();
    app.scheduleRender();
  } catch {
    // The connection chip already says when the server is away.
  }
}

/** Notifies the end of the chosen host's builds that were seen open. */
function ended(builds) {
  const chosen = el('build-notify-host').value;
  for (const b of builds) {
    const key = buildKey(b);
    if (b.open) openBuilds.add(key);
    else if (openBuilds.delete(key) && b.host === chosen) notifyBuild(b, summary(b));
  }
}

/** A build in one line, as the notification says it. */
export function summary(b) {
  const parts = [`${fmt.int(b.jobs)} jobs in ${fmt.dur(b.duration_ms)}`, `${fmt.pct(b.remote_share)} remote`];
  if (b.failed) parts.push(`${b.failed} failed`);
  if (b.cut_short) parts.push(`${b.cut_short} cut short`);
  if (b.previous) parts.push(`${b.previous.duration_ms > 0 ? '+' : '−'}${fmt.dur(Math.abs(b.previous.duration_ms))} vs. the last one`);
  return parts.join(' · ');
}

function cell(tr, text, className = '', title = '') {
  const td = tr.insertCell();
  td.textContent = text;
  if (className) td.className = className;
  if (title) td.title = title;
  return td;
}

/** The builds list, and the notification's choice of hosts. */
function renderBuilds() {
  const tbody = el('builds').tBodies[0];
  const rows = insights.builds.map((b) => {
    const tr = document.createElement('tr');
    tr.className = 'row' + (b.open ? ' open' : '');
    tr.dataset.testid = 'build-row';
    tr.dataset.host = b.host ?? '';
    cell(tr, b.host ?? '?', 'l');
    cell(tr, fmt.clock(b.start_ms), 'l', fmt.dateTime(b.start_ms));
    cell(tr, b.open ? 'running' : fmt.dur(b.duration_ms));
    cell(tr, fmt.int(b.jobs));
    cell(tr, fmt.pct(b.remote_share), '', `${b.remote} compiled on other hosts · ${b.given_back} given back · ${b.local} local`);
    cell(tr, `${b.failed} / ${b.cut_short}`, b.failed || b.cut_short ? 'bad' : '', 'failed / cut short');
    cell(tr, b.wait_median_ms == null ? '–' : `${fmt.dur(b.wait_median_ms)} / ${fmt.dur(b.wait_p95_ms)}`, '', 'wait for a server: median / p95');
    cell(tr, String(b.servers.length), '', b.servers.map((s) => `${s.name}: ${s.jobs}`).join('\n'));
    const p = b.previous;
    cell(tr, p ? `${p.duration_ms > 0 ? '+' : '−'}${fmt.dur(Math.abs(p.duration_ms))}` : '–', '', p ? `against the build of ${fmt.dateTime(p.start_ms)}: ${p.jobs >= 0 ? '+' : ''}${p.jobs} jobs` : 'no earlier build of this host');
    const why = cell(tr, '', 'l why');
    for (const r of b.why) {
      const chip = Object.assign(document.createElement('span'), { className: 'why-chip', textContent: r.kind.replaceAll('_', ' ') });
      chip.dataset.testid = 'build-why';
      chip.title = [r.summary, ...r.evidence].join('\n');
      why.append(chip);
    }
    const slow = b.slowest.map((s) => `${s.file} ${fmt.dur(s.ms)} on ${s.server ?? '?'}`).join('\n');
    tr.title = `slowest:\n${slow}`;
    return tr;
  });
  tbody.replaceChildren(...rows);
  el('builds-count').textContent = insights.gapMs == null ? '' : `${rows.length} shown · a pause of ${fmt.dur(insights.gapMs)} ends a build`;
  const pick = el('build-notify-host');
  const hosts = new Set([...insights.builds.map((b) => b.host).filter(Boolean), pick.value].filter(Boolean));
  const have = [...pick.options].map((o) => o.value).filter(Boolean);
  if (hosts.size !== have.length || have.some((h) => !hosts.has(h))) {
    const chosen = pick.value;
    pick.replaceChildren(new Option('no host', ''), ...[...hosts].sort().map((h) => new Option(h, h)));
    pick.value = chosen;
  }
}

/** Marks the host table's rows of hosts that hurt builds (after tables.js rendered them). */
export function markHurting() {
  for (const tr of document.querySelectorAll('#hosts tbody tr.row')) {
    const datum = d3.select(tr).datum();
    const flags = datum && insights.flags.get(datum.h.name);
    const name = tr.cells[1];
    const badge = name?.querySelector('.hurt-badge');
    if (!flags) {
      badge?.remove();
      delete tr.dataset.hurting;
      continue;
    }
    tr.dataset.hurting = flags.map((f) => f.kind).join(' ');
    if (name && !badge) {
      const b = Object.assign(document.createElement('span'), { className: 'hurt-badge', textContent: '⚠' });
      b.dataset.testid = 'hurt-badge';
      name.append(' ', b);
    }
    if (name) name.querySelector('.hurt-badge').title = flags.map((f) => f.detail).join('\n');
  }
}

/** Adds what hurts builds to the open host panel (after panel.js rendered it). */
export function panelHurting(hostName) {
  const flags = insights.flags.get(hostName);
  const panel = el('panel');
  if (!flags || panel.hidden || panel.querySelector('[data-testid=panel-hurting]')) return;
  const s = document.createElement('section');
  s.dataset.testid = 'panel-hurting';
  const list = document.createElement('ul');
  for (const f of flags) list.append(Object.assign(document.createElement('li'), { textContent: `${f.kind}: ${f.detail}` }));
  s.append(Object.assign(document.createElement('h3'), { textContent: 'Hurts builds' }), list);
  panel.append(s);
}
