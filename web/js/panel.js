// The host panel: a drawer (a sheet on phones) with a host's facts, the
// jobs it compiles and submits now and the ones that ended.
/* global d3 */

import { PANEL } from 'icewatch/settings.js';
import { NO_JOBS, jobKey } from 'icewatch/model.js';
import { fmt, hostFacts } from 'icewatch/format.js';
import { el, kvList } from 'icewatch/dom.js';
import { withToken } from 'icewatch/connection.js';
import { byNewest, jobTime, shortFile, stateCell } from 'icewatch/tables.js';
import { act, control, installingFor, internals, isBlocked, keptBlock } from 'icewatch/control.js';

let app; // { model, selected, scheduleRender, selectHost, selectJob } (main.js)

export function initPanel(context) {
  app = context;
}

/** The finished jobs of the host `key` that the server keeps, once it answered. */
let panelHistory = { key: null, jobs: [] };

/** What the text port said of the host `key`: the last action's answer, its internals. */
let panelControl = { key: null, said: null, internals: null };

/** Opens the panel of the host `key` (closes it if null), and asks the server for the host's older jobs. */
export function showPanel(key) {
  el('panel').hidden = key === null;
  if (key !== null) renderPanel(app.model.derive());
  const h = key === null ? null : app.model.hostIndex().byKey.get(key);
  if (panelControl.key !== key) panelControl = { key, said: null, internals: null };
  if (h && panelHistory.key !== key) {
    panelHistory = { key, jobs: [] };
    // The page keeps the newest jobs only; the server keeps a longer
    // history. Ask by name (a name of digits would be taken for an id),
    // and keep only the jobs that ran on this host, not on an earlier
    // host with its id.
    const ask = h.name && !/^\d+$/.test(h.name) ? h.name : String(h.id);
    fetch(withToken(`api/v1/jobs?host=${encodeURIComponent(ask)}&state=history&limit=${PANEL.historyAsked}`)).then((r) => r.ok ? r.json() : [])
      .then((jobs) => { if (panelHistory.key === key) { panelHistory.jobs = jobs; app.scheduleRender(); } })
      .catch(() => {});
  }
}

/** The jobs of `list` that the host `key` submitted or compiled. */
const jobsOf = (list, key) => list.filter((j) => app.model.jobHost(j, 'client') === key || app.model.jobHost(j, 'server') === key);

function jobTable(jobs, key, empty) {
  const { model } = app;
  const now = model.stateNow();
  if (!jobs.length) return Object.assign(document.createElement('div'), { className: 'none', textContent: empty });
  const table = document.createElement('table');
  for (const j of jobs) {
    const tr = table.insertRow();
    tr.onclick = () => app.selectJob(j);
    const client = model.jobHost(j, 'client'), server = model.jobHost(j, 'server');
    const local = j.state === 'local' || j.state === 'local_finished';
    const other = client !== key ? '← ' + (client ?? '?') : server == null || local ? '' : server === key ? 'given back' : '→ ' + server;
    tr.insertCell().append(...stateCell(j));
    tr.cells[0].className = 'l';
    Object.assign(tr.insertCell(), { className: 'l file', textContent: shortFile(j.file), title: j.file });
    tr.insertCell().textContent = other;
    tr.cells[2].className = 'l route';
    tr.insertCell().textContent = jobTime(j, now);
  }
  return table;
}

export function renderPanel(derived) {
  const { model } = app;
  const panel = el('panel');
  const key = app.selected;
  const h = model.hostIndex().byKey.get(key);
  if (!h) { app.selectHost(null); return; }
  const id = h.id;
  const d = derived.get(id) || NO_JOBS;
  const head = document.createElement('div');
  head.className = 'card-head';
  head.append(Object.assign(document.createElement('span'), { className: 'online-dot', style: h.online ? '' : 'background:var(--offline)' }),
    Object.assign(document.createElement('h2'), { textContent: key }),
    Object.assign(document.createElement('span'), { className: 'hint', textContent: `#${id} · ${h.platform}` }));
  const close = Object.assign(document.createElement('button'), { className: 'close', textContent: '×', title: 'Close' });
  close.setAttribute('aria-label', 'Close');
  close.onclick = () => app.selectHost(null);
  head.append(close);

  const section = (title, ...content) => {
    const s = document.createElement('section');
    s.append(Object.assign(document.createElement('h3'), { textContent: title }), ...content);
    return s;
  };
  const active = [...model.jobs.values()];
  const here = active.filter((j) => model.jobHost(j, 'server') === key && (j.state === 'compiling' || j.state === 'local')).sort(byNewest);
  const mine = active.filter((j) => model.jobHost(j, 'client') === key && model.jobHost(j, 'server') !== key).sort(byNewest);
  const seenDone = new Set();
  const done = jobsOf([...model.history].reverse().concat(panelHistory.key === key ? panelHistory.jobs : []), key)
    .filter((j) => !seenDone.has(jobKey(j)) && seenDone.add(jobKey(j))).slice(0, PANEL.doneRows);
  const doneMs = done.filter((j) => j.real_ms != null).map((j) => j.real_ms);
  const stats = [
    ...hostFacts(h, d),
    ['speed', h.speed ? h.speed.toFixed(1) : '–'],
    ['free memory', h.free_mem_mb != null ? fmt.int(h.free_mem_mb) + ' MiB' : '–'],
    ['protocol', String(h.protocol)], ['features', h.features || '–'],
  ];
  if (doneMs.length) stats.push(['recent compile', `median ${fmt.dur(d3.median(doneMs))} over ${doneMs.length}`]);
  const scheduler = schedulerSection(h);
  panel.replaceChildren(head,
    section('Statistics', kvList(stats)),
    ...(scheduler ? [section('Scheduler', ...scheduler)] : []),
    section(`Compiling here (${here.length})`, jobTable(here.slice(0, PANEL.activeRows), key, 'Nothing compiling on this host.')),
    section(`Submitted, not finished (${mine.length})`, jobTable(mine.slice(0, PANEL.activeRows), key, 'No jobs of this host are waiting or compiling elsewhere.')),
    section('Recently finished', jobTable(done, key, 'No finished jobs seen yet.')));
}

/** What the actions ask before they are taken. */
const CONFIRM = {
  block: (name) => `Block ${name}? The scheduler disconnects it and keeps it out (no jobs for it, none from it) until it is unblocked, ${control.view?.keep_blocks ? 'also after a scheduler restart (icewatch keeps the block)' : 'or until the scheduler restarts'}.`,
  unblock: (name) => `Unblock ${name}? It may log in to the scheduler again.`,
  remove: (name) => `Remove ${name} from the scheduler? It is disconnected; its daemon usually logs in again within seconds.`,
};

function button(text, testid, onclick) {
  const b = Object.assign(document.createElement('button'), { className: 'action', textContent: text, onclick });
  b.dataset.testid = testid;
  return b;
}

/** The host as the scheduler's text port tells it, and the actions on it; null when the server does not read the text port. */
function schedulerSection(h) {
  const name = h.name;
  if (!control.view || !name) return null;
  const view = control.view;
  const rows = [];
  if (!view.answering) rows.push(['text port', view.error ? `not answering: ${view.error}` : 'not read yet']);
  rows.push(['blocked', isBlocked(name) ? 'yes: the scheduler keeps it out' : 'no']);
  const kept = keptBlock(name);
  if (kept) {
    rows.push(['kept', `by icewatch since ${new Date(kept.since_ms).toLocaleString()}: blocked again whenever the scheduler restarts`]);
  }
  const installing = installingFor(name);
  if (installing != null) rows.push(['installing', `an environment, for ${installing} s`]);
  const content = [kvList(rows)];
  const buttons = document.createElement('div');
  buttons.className = 'actions';
  const mine = () => panelControl.key === app.selected;
  const take = (action) => async () => {
    if (!confirm(CONFIRM[action](name))) return;
    const key = app.selected;
    panelControl.said = { ok: null, text: `${action}: asking the scheduler…` };
    app.scheduleRender();
    const result = await act(name, action);
    if (panelControl.key !== key) return;
    panelControl.said = { ok: result.ok, text: result.ok ? result.said : `${action} failed: ${result.error}` };
    app.scheduleRender();
  };
  if (app.model.admin) {
    buttons.append(isBlocked(name) ? button('Unblock', 'unblock', take('unblock')) : button('Block', 'block', take('block')));
    if (h.online) buttons.append(button('Remove', 'remove', take('remove')));
  }
  buttons.append(button('Ask the daemon', 'internals', async () => {
    panelControl.internals = { ok: null, text: 'asking…' };
    app.scheduleRender();
    const result = await internals(name);
    if (!mine()) return;
    panelControl.internals = result;
    app.scheduleRender();
  }));
  content.push(buttons);
  if (panelControl.said) {
    const said = Object.assign(document.createElement('div'), { className: 'said', textContent: panelControl.said.text });
    said.dataset.testid = 'said';
    if (panelControl.said.ok === false) said.classList.add('error');
    content.push(said);
  }
  const inside = panelControl.internals;
  if (inside) {
    if (inside.ok && inside.daemons?.length) {
      for (const d of inside.daemons) content.push(kvList(d.reporting ? d.fields : [[d.name, 'not reporting']]));
    } else {
      const text = inside.ok === null ? inside.text : inside.ok ? 'No daemon of that name is connected.' : `internals: ${inside.error}`;
      content.push(Object.assign(document.createElement('div'), { className: 'none', textContent: text }));
    }
  }
  return content;
}
