// The host table and the job list with its filters, and how a job reads
// in a row (the host panel lists jobs the same way).
/* global d3 */

import { HOST_ROWS, JOB_LIST_ROWS, JOB_ROWS, JOBS_COUNTED, TICK_MS } from 'icewatch/settings.js';
import { NO_JOBS, jobKey, jobsIn, jobsInOwn, jobsOut } from 'icewatch/model.js';
import { byName, fmt } from 'icewatch/format.js';
import { el } from 'icewatch/dom.js';
import { withToken } from 'icewatch/connection.js';

let app; // { model, selected, scheduleRender, selectHost } (main.js)

export function initTables(context) {
  app = context;
  initHostTable();
  initJobFilters();
}

// ---------- The host table (like icecream-sundae, with the numbers agreeing) ----------

/**
 * The host table's columns. `total`: what the footer adds up, `all` hosts
 * icewatch knows (offline ones included, so that IN and OUT agree) or the
 * `online` ones (slots, as the summary counts them).
 */
const hostColumns = [
  { key: 'id', label: 'ID', title: "The scheduler's host id (new each time the host logs in)", value: (h) => h.id },
  { key: 'name', label: 'NAME', title: 'Host name: a host keeps its name, its node and its counts when it logs in again', l: true, value: (h) => h.name },
  { key: 'in', label: 'IN', total: 'all', title: 'Remote jobs that began compiling on this host, from any submitter, its own given back by the scheduler included', value: jobsIn },
  { key: 'own', label: 'OWN', total: 'all', title: 'Of IN, its own jobs the scheduler gave back to it ("building myself")', value: jobsInOwn },
  { key: 'cur', label: 'CUR', total: 'all', title: 'Jobs compiling on this host now: remote jobs (its own given back included) and its local jobs', value: (h) => h.active },
  { key: 'max', label: 'MAX', total: 'online', title: 'Job slots', value: (h) => h.max_jobs },
  { key: 'jobs', label: 'JOBS', title: 'Slots: blue remote jobs, purple local jobs, grey free', l: true, value: (h) => h.active / Math.max(1, h.max_jobs) },
  { key: 'out', label: 'OUT', total: 'all', title: "This host's remote jobs that began compiling on a server, itself included", value: jobsOut },
  { key: 'local', label: 'LOCAL', total: 'all', title: 'Local jobs: jobs this host compiled itself without asking the scheduler', value: (h) => h.local_jobs },
  { key: 'active', label: 'ACTIVE', total: 'all', title: "This host's jobs compiling now, here or elsewhere", value: (h, d) => d.own },
  { key: 'pending', label: 'PENDING', total: 'all', title: "This host's jobs waiting for a server", value: (h) => h.pending },
  { key: 'failed', label: 'FAILED', total: 'all', title: "This host's remote jobs whose compiler failed (a non-zero exit code; a job cut short is no failure)", value: (h) => h.failed },
  { key: 'load', label: 'LOAD', title: 'Load as the host reports it', value: (h) => h.load },
  { key: 'speed', label: 'SPEED', title: "The scheduler's speed estimate", value: (h) => h.speed },
];
let hostSort = { key: 'id', dir: 1 };

/**
 * A scrolling table's window: where its box is scrolled to, kept by events
 * so rendering never forces a layout. Long tables only hold the rows in
 * view (and a few more), between two spacer rows: every row kept costs
 * style and layout on every render when a big cluster changes.
 */
function scrollView(wrap, rerender) {
  const view = { top: 0, height: 800 };
  const measure = () => { view.top = wrap.scrollTop; view.height = wrap.clientHeight || 800; };
  wrap.addEventListener('scroll', () => { measure(); requestAnimationFrame(rerender); }, { passive: true });
  new ResizeObserver(measure).observe(wrap);
  return view;
}

/**
 * The rows of `rows` that `view` shows, and `margin` more on each side; all
 * of them up to `allBelow` rows. Each row is `height` px (settings.js).
 */
function rowWindow(view, rows, { height, allBelow, margin }) {
  if (rows.length <= allBelow) return { first: 0, shown: rows };
  const first = Math.max(0, Math.floor(view.top / height) - margin);
  return { first, shown: rows.slice(first, Math.ceil((view.top + view.height) / height) + margin) };
}

/** Keeps the room of the rows left out above and below the window. */
function placeSpacers(tbody, columns, above, below) {
  const spacer = (cls, height) => {
    let tr = tbody.querySelector(':scope > tr.' + cls);
    if (!tr) { tr = document.createElement('tr'); tr.className = 'spacer ' + cls; tr.insertCell().colSpan = columns; }
    if (tr.style.height !== height + 'px') tr.style.height = height + 'px';
    return tr;
  };
  const top = spacer('above', above), bottom = spacer('below', below);
  if (tbody.firstChild !== top) tbody.prepend(top);
  if (tbody.lastChild !== bottom) tbody.append(bottom);
}

let hostsView;
let jobsView;

function initHostTable() {
  const wrap = el('hosts-wrap');
  hostsView = scrollView(wrap, () => renderHosts(app.model.derive()));
  const head = d3.select('#hosts thead tr').selectAll('th').data(hostColumns).join('th')
    .attr('class', (c) => c.l ? 'l' : null).attr('title', (c) => c.title);
  head.append('button').attr('type', 'button').text((c) => c.label).on('click', (event, c) => {
    hostSort = { key: c.key, dir: hostSort.key === c.key ? -hostSort.dir : (c.key === 'name' || c.key === 'id' ? 1 : -1) };
    app.scheduleRender();
  });
}

/** A host's slots as one bar: remote, local, free (a notch per slot up to 16). */
function slotBar(h, d) {
  const span = document.createElement('span');
  const slots = Math.max(h.max_jobs, h.active, 1);
  const local = Math.min(d.local, h.active);
  const remote = h.active - local;
  const a = 100 * remote / slots, b = 100 * (remote + local) / slots;
  span.className = 'slotbar' + (slots <= 16 ? ' notched' : '');
  span.style.width = (slots <= 16 ? slots * 9 : 90) + 'px';
  span.style.setProperty('--fill', `linear-gradient(90deg, var(--remote) 0 ${a}%, var(--local) ${a}% ${b}%, var(--track) ${b}% 100%)`);
  span.title = `${remote} remote, ${local} local, ${slots - h.active} free`;
  return span;
}

function hostCellKey(c, h, d) {
  switch (c.key) {
    case 'name': return `${h.name}|${h.no_remote}|${h.online}`;
    case 'jobs': return `${h.max_jobs}|${h.active}|${d.local}`;
    case 'load': return (h.load / 10).toFixed(0) + ' %';
    case 'speed': return h.speed.toFixed(1);
    default: return fmt.int(c.value(h, d));
  }
}

function fillHostCell(td, c, h, d) {
  if (c.key === 'name') {
    td.replaceChildren(Object.assign(document.createElement('span'), { className: 'online-dot' }), Object.assign(document.createElement('span'), { className: 'hostname', textContent: h.name || '#' + h.id }));
    if (h.no_remote) td.append(Object.assign(document.createElement('span'), { className: 'tag', textContent: 'no-remote' }));
    if (!h.online) td.append(Object.assign(document.createElement('span'), { className: 'tag', textContent: 'offline' }));
  } else if (c.key === 'jobs') {
    td.replaceChildren(slotBar(h, d));
  } else {
    td.textContent = td.dataset.k;
    if (c.key === 'pending') td.style.color = h.pending ? 'var(--wait)' : '';
    if (c.key === 'failed') td.style.color = h.failed ? 'var(--bad)' : '';
  }
}

export function renderHosts(derived) {
  const { model } = app;
  const none = NO_JOBS;
  const col = hostColumns.find((c) => c.key === hostSort.key);
  const rows = model.visibleHosts().map((h) => ({ h, d: derived.get(h.id) || none }));
  rows.sort((a, b) => {
    const x = col.value(a.h, a.d), y = col.value(b.h, b.d);
    const c = typeof x === 'string' ? byName.compare(x, y) : x - y;
    return c * hostSort.dir || a.h.id - b.h.id;
  });
  d3.selectAll('#hosts thead th').attr('aria-sort', (c) => c.key === hostSort.key ? (hostSort.dir > 0 ? 'ascending' : 'descending') : null);
  const rowHeight = HOST_ROWS.height;
  const { first, shown } = rowWindow(hostsView, rows, HOST_ROWS);
  const tbody = d3.select('#hosts tbody');
  tbody.selectAll('tr.row').data(shown, (r) => r.h.id).join((enter) => enter.append('tr').attr('class', 'row').on('click', (event, r) => app.selectHost(model.hostKey(r.h))))
    .order()
    .attr('class', (r) => 'row' + (r.h.online ? '' : ' offline') + (model.hostKey(r.h) === app.selected ? ' selected' : ''))
    .attr('data-testid', 'host-row')
    .each(function ({ h, d }) {
      if (this.cells.length !== hostColumns.length) {
        for (const c of hostColumns) this.insertCell().className = c.l ? 'l' : '';
      }
      // Only cells whose content changed are touched: most of a big
      // cluster's rows change a little on every diff.
      hostColumns.forEach((c, i) => {
        const td = this.cells[i];
        const key = hostCellKey(c, h, d);
        if (td.dataset.k !== key) { td.dataset.k = key; fillHostCell(td, c, h, d); }
      });
    });
  placeSpacers(tbody.node(), hostColumns.length, first * rowHeight, (rows.length - first - shown.length) * rowHeight);

  // The footer adds up every host icewatch knows (the table lists those
  // that left only for a moment): it must match the summary above, and
  // IN must match OUT.
  const known = [...model.hosts.values()].map((h) => ({ h, d: derived.get(h.id) || none }));
  const online = known.filter((r) => r.h.online);
  const totals = new Map(hostColumns.filter((c) => c.total).map((c) => [c.key, d3.sum(c.total === 'all' ? known : online, (r) => c.value(r.h, r.d))]));
  const offline = known.length - online.length;
  const name = `${fmt.int(online.length)} online` + (offline ? ` · ${fmt.int(offline)} offline` : '');
  d3.select('#hosts tfoot tr').selectAll('td').data(hostColumns).join('td')
    .attr('class', (c) => c.l ? 'l' : null)
    .attr('data-testid', (c) => 'total-' + c.key)
    .attr('title', (c) => c.total === 'all' ? `All ${known.length} hosts icewatch knows, offline ones included` : c.total === 'online' ? 'Online hosts' : null)
    .text((c) => c.key === 'name' ? name : totals.has(c.key) ? fmt.int(totals.get(c.key)) : '');
  const sumIn = totals.get('in'), sumOut = totals.get('out');
  const counted = known.every((r) => r.h.jobs_in != null && r.h.jobs_out != null);
  const note = (counted
    ? `Σ IN ${fmt.int(sumIn)} ${sumIn === sumOut ? '=' : '≠'} Σ OUT ${fmt.int(sumOut)}: every remote job that begins compiling counts once in its server's IN`
      + ` and once in its submitter's OUT (a job given back to its submitter in both of that host's, and in its OWN).`
    : 'IN: remote jobs compiled here to the end, OWN of them its own; OUT: remote jobs submitted (this icewatch does not count jobs as they begin, so the two need not agree).')
    + ` The sums take in all ${fmt.int(known.length)} hosts icewatch knows, offline ones too; MAX only online hosts, as Slots busy does.`;
  const foot = el('hosts-note');
  if (foot.textContent !== note) foot.textContent = note;
}

// ---------- The job list, with filters ----------

/** The newest job first. */
export const byNewest = (a, b) => b.start_ms - a.start_ms || b.id - a.id;
export const shortFile = (f) => f || '(unnamed)';
const liveStates = new Set(['waiting', 'compiling', 'local']);

/** Why a job ended without the compiler's verdict: a few words for its row, and what they mean. */
export const REASONS = {
  host_left: ['host left', 'A host it ran on or came from left the scheduler before its end was reported.'],
  scheduler_lost: ['scheduler gone', "icewatch's connection to the scheduler ended: its outcome is unknown."],
  stale: ['stale', "icewatch ended it: it could not still be running (its server's slots were all taken by newer jobs, or it ran longer than the stale limit)."],
};

/**
 * What a job's pill shows (its color, and what the state filter picks): a
 * job ended without the compiler's verdict, remote or local, is cut short,
 * never failed; failed means the compiler said so.
 */
const jobKind = (j) => j.state === 'local_finished' && REASONS[j.reason] ? 'cut_short' : j.state;

/** A job's state pill and, beside it, why it ended. */
export function stateCell(j) {
  const kind = jobKind(j);
  const reason = REASONS[j.reason];
  let label = kind, why = '', title = '';
  if (kind === 'failed') {
    why = j.exit_code != null ? `exit ${j.exit_code}` : '';
    title = 'The compiler failed' + (j.exit_code != null ? ` (exit code ${j.exit_code}).` : '.');
  } else if (kind === 'cut_short') {
    label = 'cut short';
    why = reason ? reason[0] : '';
    title = (j.state === 'local_finished' ? 'A local job, ended without a report of its end. ' : 'Ended without the compiler\'s verdict. ') + (reason ? reason[1] : '');
  } else if (kind === 'local_finished') {
    label = 'local done';
    title = 'A local job; its end was reported.';
  } else if (kind === 'finished') {
    title = 'The compiler succeeded (exit code 0).';
  }
  const pill = Object.assign(document.createElement('span'), { className: 'state s-' + kind, textContent: label, title });
  if (!why) return [pill];
  return [pill, Object.assign(document.createElement('span'), { className: 'why', textContent: why, title })];
}

/** How long a job ran, or runs until `now` (the state's clock: model.stateNow()). */
export function jobTime(j, now) {
  if (liveStates.has(j.state)) return fmt.dur(Math.max(0, now - j.start_ms));
  if (j.real_ms != null) return fmt.dur(j.real_ms);
  return j.end_ms != null ? fmt.dur(j.end_ms - j.start_ms) : '';
}

/** When a job began and ended, on the state's clock (a replay's are the recording's). */
function jobTimes(j) {
  return `began ${fmt.time(j.start_ms)}` + (j.end_ms != null ? ` · ended ${fmt.time(j.end_ms)}` : '');
}

function initJobFilters() {
  for (const id of ['f-file', 'f-host', 'f-state']) el(id).addEventListener('input', () => { app.scheduleRender(); });
  jobsView = scrollView(el('jobs-wrap'), renderJobs);
  // Durations of running jobs move on their own.
  setInterval(() => { if (app.model.jobs.size) app.scheduleRender(); }, TICK_MS);
}

export function renderJobs() {
  const { model } = app;
  const file = el('f-file').value.trim().toLowerCase();
  const hostFilter = el('f-host').value || null;
  const state = el('f-state').value;

  // Host choices: every host known now, by name.
  const { byKey } = model.hostIndex();
  const options = [...byKey.keys()].sort(byName.compare);
  const optionsKey = options.map((key) => key + (byKey.get(key).online ? '' : ' -')).join('\n');
  if (optionsKey !== renderJobs.optionsKey) {
    renderJobs.optionsKey = optionsKey;
    // In a task of their own: hundreds of options make a long first render longer.
    setTimeout(() => d3.select('#f-host').selectAll('option.h').data(options, (key) => key).join('option')
      .attr('class', 'h').attr('value', (key) => key).text((key) => key + (byKey.get(key).online ? '' : ' (offline)')));
  }

  const matches = (j) => (!file || j.file.toLowerCase().includes(file))
    && (hostFilter === null || model.jobHost(j, 'client') === hostFilter || model.jobHost(j, 'server') === hostFilter)
    && (!state || (state === 'active' ? liveStates.has(j.state) : jobKind(j) === state));
  const active = [...model.jobs.values()].filter(matches).sort(byNewest);
  const done = [];
  for (let i = model.history.length - 1; i >= 0 && active.length + done.length < JOBS_COUNTED; i--) {
    if (matches(model.history[i])) done.push(model.history[i]);
  }
  const all = active.concat(done);
  const filters = { file: el('f-file').value.trim(), host: hostFilter, state };
  const older = olderJobs(filters);
  // Paging back into the history: every job down to where its pages begin.
  const listed = older.until === null ? all.slice(0, JOB_ROWS)
    : all.filter((j) => j.end_ms == null || j.end_ms >= older.until).concat(older.jobs);
  el('jobs-count').textContent = `${fmt.int(active.length)} running or waiting · ${all.length > listed.length ? 'newest ' + listed.length + ' of ' : ''}${fmt.int(all.length)} shown`
    + (older.jobs.length ? ` · ${fmt.int(older.jobs.length)} older from the history` : '');
  const rowHeight = JOB_LIST_ROWS.height;
  const { first, shown } = rowWindow(jobsView, listed, JOB_LIST_ROWS);
  // Scrolled to the end of what the page holds: the next page of the history.
  if (model.database && jobsView.top + jobsView.height >= (listed.length - 3) * rowHeight) loadOlder(filters, listed, matches);
  const tbody = d3.select('#jobs tbody');
  const now = model.stateNow();
  tbody.selectAll('tr.row').data(shown, (j) => jobKey(j) + ':' + j.state + ':' + j.start_ms)
    .join((enter) => enter.append('tr').attr('class', 'row').attr('data-testid', 'job-row').each(function (j) {
      const tr = this;
      if (j.seq != null) tr.dataset.from = 'history';
      tr.insertCell().className = 'l';
      const f = tr.insertCell();
      f.className = 'l file';
      f.textContent = shortFile(j.file);
      f.title = j.file;
      const route = tr.insertCell();
      route.className = 'l route';
      tr.insertCell().className = 'num';
      tr.onclick = () => app.selectJob(j);
    }))
    .order()
    .each(function (j) {
      const [stateTd, , route, timeTd] = this.cells;
      const look = `${j.state}|${j.reason}|${j.exit_code}`;
      if (stateTd.dataset.k !== look) { stateTd.dataset.k = look; stateTd.replaceChildren(...stateCell(j)); }
      const client = model.jobHost(j, 'client') ?? '?';
      const server = model.jobHost(j, 'server') ?? '…';
      const text = j.state === 'local' || j.state === 'local_finished' ? client : `${client} → ${server}`;
      if (route.textContent !== text) { route.textContent = text; route.title = text; }
      const time = jobTime(j, now);
      if (timeTd.textContent !== time || !timeTd.title) { timeTd.textContent = time; timeTd.title = jobTimes(j); }
    });
  placeSpacers(tbody.node(), 4, first * rowHeight, (listed.length - first - shown.length) * rowHeight);
}

// ---------- Older jobs, from the history database (docs/http.md) ----------

/**
 * The pages of the history read so far for the job list's filters: jobs
 * that ended before `until` (where the page's own list ended when the
 * first was asked for), newest first; `next` is the cursor of the next
 * page (null after the last, undefined before the first).
 */
const past = { key: '', until: null, jobs: [], next: undefined, loading: false };

/** The pages read for `filters`; other filters start over. */
function olderJobs(filters) {
  const key = JSON.stringify(filters);
  if (key !== past.key) Object.assign(past, { key, until: null, jobs: [], next: undefined, loading: false });
  return past;
}

/** Asks icewatch for the next page of older jobs, unless one is on its way or there is none. */
async function loadOlder(filters, listed, matches) {
  if (past.loading || past.next === null || filters.state === 'active') return;
  const key = past.key;
  if (past.until === null) {
    const ends = listed.filter((j) => j.end_ms != null).map((j) => j.end_ms);
    past.until = ends.length ? Math.min(...ends) : Date.now();
  }
  const params = new URLSearchParams({ limit: '200', until: String(past.until) });
  if (filters.file) params.set('file', filters.file);
  if (filters.host) params.set('host', filters.host);
  if (filters.state === 'failed') params.set('failed', 'true');
  if (past.next != null) params.set('cursor', String(past.next));
  past.loading = true;
  let page = null;
  try {
    const response = await fetch(withToken('api/v1/history/jobs?' + params));
    page = response.ok ? await response.json() : null;
  } catch {
    page = null;
  }
  if (past.key !== key) return;
  past.loading = false;
  if (!page) { past.next = null; return; }
  past.jobs.push(...page.jobs.filter(matches));
  past.next = page.next;
  app.scheduleRender();
}
