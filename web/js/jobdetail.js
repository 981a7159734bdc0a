// A job's detail: what the messages say of one job (file, submitter and
// server, how long it waited for a server and compiled, the sizes sent and
// received, its exit code and why it ended), in a drawer like the host
// panel's. Opened by a click on a job anywhere: the job list, the host
// panel, the timeline. A job still running is followed as it changes.

import { jobKey } from 'icewatch/model.js';
import { fmt } from 'icewatch/format.js';
import { el, kvList } from 'icewatch/dom.js';
import { REASONS, shortFile, stateCell } from 'icewatch/tables.js';
import { submittedAt } from 'icewatch/timeline.js';

let app; // { model, selectHost, selectJob } (main.js)

/** The job shown (the newest version the page has of it), or null. */
let shown = null;

export function initJobDetail(context) {
  app = context;
}

/** Opens the detail of `job` (closes it if null). */
export function showJob(job) {
  shown = job;
  el('job').hidden = job === null;
  if (job) renderJob();
}

/** The page's newest version of the shown job: a running job changes, and ends. */
function current() {
  const { model } = app;
  const key = jobKey(shown);
  const live = model.jobs.get(shown.id);
  if (live && jobKey(live) === key) return live;
  if (shown.end_ms == null) {
    for (let i = model.history.length - 1; i >= 0; i--) if (jobKey(model.history[i]) === key) return model.history[i];
  }
  return shown;
}

const bytes = (compressed, uncompressed) => compressed == null && uncompressed == null ? null
  : `${fmt.bytes(compressed)} compressed · ${fmt.bytes(uncompressed)} uncompressed`;

/** The job's facts as [label, text] rows; those the messages did not carry are left out. */
export function jobFacts(j, model, submitMs) {
  const client = model.jobHost(j, 'client'), server = model.jobHost(j, 'server');
  const local = j.state === 'local' || j.state === 'local_finished';
  const running = j.end_ms == null;
  const rows = [];
  rows.push(['route', local ? `${client ?? '?'}, locally (the scheduler was not asked for a server)`
    : server == null ? `${client ?? '?'} → no server yet`
      : client === server ? `${client} → itself (the scheduler gave it back)` : `${client ?? '?'} → ${server}`]);
  if (j.state === 'waiting') rows.push(['waiting', `for ${fmt.dur(Math.max(0, model.stateNow() - j.start_ms))}, since ${fmt.time(j.start_ms)}`]);
  else if (submitMs != null && submitMs <= j.start_ms) rows.push(['waited', `${fmt.dur(j.start_ms - submitMs)} for a server (asked at ${fmt.time(submitMs)})`]);
  if (j.state !== 'waiting') rows.push([local ? 'ran' : 'compiled', `${fmt.time(j.start_ms)} → ${running ? 'still running, ' + fmt.dur(Math.max(0, model.stateNow() - j.start_ms)) : `${fmt.time(j.end_ms)}, ${fmt.dur(j.end_ms - j.start_ms)}`}`]);
  if (j.real_ms != null) rows.push(['on the server', `${fmt.dur(j.real_ms)} wall clock · ${fmt.dur(j.user_ms)} user · ${fmt.dur(j.sys_ms)} system` + (j.page_faults ? ` · ${fmt.int(j.page_faults)} page faults` : '')]);
  const sent = bytes(j.in_compressed, j.in_uncompressed);
  if (sent) rows.push(['sent', sent]);
  const back = bytes(j.out_compressed, j.out_uncompressed);
  if (back) rows.push(['got back', back]);
  if (j.exit_code != null) rows.push(['exit code', String(j.exit_code) + (j.exit_code === 0 ? ' (success)' : ' (the compiler failed)')]);
  if (!running) {
    const reason = REASONS[j.reason];
    rows.push(['ended', reason ? reason[1] : j.reason === 'exit' ? 'The server reported the compiler\'s exit code.' : j.reason === 'local_done' ? 'Its end was reported.' : j.reason ?? '–']);
  }
  if (j.lang) rows.push(['language', j.lang]);
  rows.push(['job', `#${j.id}` + (j.session != null ? ` of scheduler session ${j.session}` : '')]);
  return rows;
}

/** Redraws the open detail from the page's newest version of the job. */
export function renderJob() {
  if (!shown) return;
  shown = current();
  const j = shown, { model } = app;
  const head = document.createElement('div');
  head.className = 'card-head';
  const title = Object.assign(document.createElement('h2'), { className: 'file', textContent: shortFile(j.file), title: j.file });
  const close = Object.assign(document.createElement('button'), { className: 'close', textContent: '×', title: 'Close' });
  close.setAttribute('aria-label', 'Close');
  close.onclick = () => app.selectJob(null);
  head.append(title, ...stateCell(j), close);
  const facts = document.createElement('section');
  facts.append(kvList(jobFacts(j, model, submittedAt(j))));
  // The hosts, for their panels.
  const hosts = document.createElement('section');
  hosts.className = 'actions';
  for (const [label, side] of [['submitter', 'client'], ['server', 'server']]) {
    const key = model.jobHost(j, side);
    if (key == null || (side === 'server' && key === model.jobHost(j, 'client'))) continue;
    const known = model.hostIndex().byKey.has(key);
    const b = Object.assign(document.createElement('button'), { textContent: `${label}: ${key}`, disabled: !known, title: known ? 'Open its panel' : 'Not a host of now' });
    b.onclick = () => app.selectHost(key);
    hosts.append(b);
  }
  el('job').replaceChildren(head, facts, hosts);
}
