// The top of the page: the scheduler's line, the connection chip (how
// fresh the picture is), the banner and the summary cards.

import { JUST_NOW_MS, SUCCESS_WARN } from 'icewatch/settings.js';
import { fmt, recordingName } from 'icewatch/format.js';
import { el } from 'icewatch/dom.js';

let app; // { model, connection } (main.js)

export function initHeader(context) {
  app = context;
}

/** Says how the connection is; without one, that the numbers are the last known ones. */
export function showConnection() {
  const { model, connection } = app;
  el('conn').dataset.state = connection.state;
  const stale = connection.state !== 'live' && model.seq !== null;
  document.body.classList.toggle('stale', stale);
  if (stale) showBanner('Lost the connection to icewatch: showing the last known state while reconnecting.');
  else if (connection.state === 'live') renderHeader();
  renderChip();
  if (connection.state !== 'live' && !model.hosts.size) {
    el('empty').textContent = connection.text === 'connecting…' ? 'Connecting to icewatch…' : 'No connection to icewatch · ' + connection.text;
  }
}

/**
 * The chip in the header says how fresh the picture is: how long ago
 * icewatch last sent news (it sends whenever something changes), that the
 * scheduler is offline and since when, or which recording is playing.
 */
export function renderChip() {
  const { model, connection } = app;
  const conn = el('conn');
  const s = model.scheduler;
  let text = connection.text, title = '', mode = '';
  if (connection.state === 'live' && s) {
    if (s.replay) {
      mode = 'replay';
      text = `replay of ${recordingName(s.replay)}` + (s.replay.recorded_ms != null ? ` · recorded ${fmt.dateTime(s.replay.recorded_ms)}` : '')
        + (s.online ? '' : ' · ended');
      title = `icewatch replays ${s.replay.file}: times are those of the recording.`;
    } else if (!s.online) {
      mode = 'offline';
      text = 'scheduler offline' + (s.since_ms != null ? ` since ${fmt.clock(s.since_ms)}` : '') + (s.error ? ` (${s.error})` : '');
      title = text;
    } else {
      const heardAt = connection.heardAt;
      const ago = heardAt === null ? null : Date.now() - heardAt;
      text = 'live · updated ' + (ago === null || ago < JUST_NOW_MS ? 'just now' : fmt.ago(ago) + ' ago');
      title = heardAt === null ? '' : `Last news from icewatch at ${fmt.clock(heardAt)}; it sends news whenever something in the cluster changes.`;
    }
  }
  conn.dataset.mode = mode;
  conn.title = title;
  const span = conn.querySelector('.text');
  if (span.textContent !== text) span.textContent = text;
  renderDatabase();
}

/** A chip while the history database cannot be written: the page goes on, the history waits. */
function renderDatabase() {
  const d = app.model.database;
  const chip = el('db');
  chip.hidden = !(d && d.paused);
  if (chip.hidden) return;
  chip.title = `Finished jobs are held in memory (${d.held} now) and written when ${d.file} can be written again: ${d.error}`;
}

export function renderHeader() {
  const { model } = app;
  const s = model.scheduler;
  if (!s) return;
  const since = s.since_ms ? fmt.dur(Math.max(0, model.stateNow() - s.since_ms)) : '';
  el('scheduler').innerHTML = '';
  if (s.replay) {
    el('scheduler').append('recording ', Object.assign(document.createElement('b'), { textContent: recordingName(s.replay), title: s.replay.file }),
      ` · protocol ${s.protocol}` + (s.online ? ' · playing' : ' · ended'));
  } else {
    el('scheduler').append('scheduler ', Object.assign(document.createElement('b'), { textContent: s.address || '?' }),
      s.online ? ` · protocol ${s.protocol} · up ${since}` : ' · offline',
      s.reconnects ? ` · ${s.reconnects} reconnect${s.reconnects > 1 ? 's' : ''}` : '');
  }
  if (document.body.classList.contains('stale')) return;
  showBanner(s.online ? null : s.replay ? `The recording ${s.replay.file} has ended: what you see is its last state.`
    : `The scheduler at ${s.address || '?'} is not connected${s.error ? ': ' + s.error : ''}. icewatch keeps retrying; what you see is the last known state.`);
  renderChip();
}

function showBanner(text) {
  const banner = el('banner');
  banner.hidden = !text;
  if (text) banner.textContent = text;
}

export function renderSummary() {
  const { model } = app;
  const t = model.totals;
  if (!t) return;
  const remoteBusy = t.busy_slots - t.local_active;
  el('sum-slots').innerHTML = `${fmt.int(t.busy_slots)}<small> / ${fmt.int(t.total_slots)}</small>`;
  const spans = el('sum-slots-meter').children;
  const width = (n) => t.total_slots ? Math.min(100, 100 * n / t.total_slots) + '%' : '0';
  spans[0].style.width = width(Math.max(0, remoteBusy));
  spans[1].style.width = width(t.local_active);
  el('sum-active').textContent = fmt.int(t.active);
  el('sum-active-sub').textContent = `${fmt.int(t.active - t.local_active)} remote · ${fmt.int(t.local_active)} local`;
  el('sum-pending').textContent = fmt.int(t.pending);
  el('sum-pending').style.color = t.pending ? 'var(--wait)' : '';
  el('sum-rate').textContent = fmt.rate(t.jobs_per_minute);
  el('sum-success').textContent = fmt.pct(t.success_ratio);
  el('sum-success').style.color = t.success_ratio != null && t.success_ratio < SUCCESS_WARN ? 'var(--bad)' : '';
  // Compiler outcomes only: a job cut short has none, so it is counted apart
  // (local jobs report none either).
  el('sum-success-sub').textContent = `${fmt.int(t.jobs_finished)} ok · ${fmt.int(t.jobs_failed)} failed`
    + (t.jobs_cut_short != null ? ` · ${fmt.int(t.jobs_cut_short)} cut short` : ` · ${fmt.int(t.local_jobs_finished)} local`);
  el('sum-hosts').textContent = fmt.int(t.hosts_online);
  const noRemote = [...model.hosts.values()].filter((h) => h.online && h.no_remote).length;
  el('sum-hosts-sub').textContent = noRemote ? `${noRemote} no-remote` : '';
}
