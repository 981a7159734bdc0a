// The timeline: a lane per compile slot of each host (lanes.js), one bar
// per job from when it began to when it ended, coloured by its submitter;
// local jobs half as tall, failed ones red, cut-short ones in the cut-short
// colour, and a job's wait for a server a thin line before its bar. Live,
// the right edge is now; wheel zooms time, drag pans time (and lanes), and
// the past beyond what the page saw comes from the history database
// (GET /api/v1/history/jobs, docs/http.md). A click on a bar opens the job.
//
// One <canvas>, as the graph: thousands of bars as elements would cost the
// browser more than a frame allows. Bars are written as whole pixels into
// the canvas's bitmap, and only those in view are visited (each lane is
// sorted by time, so a binary search finds the first). What the user does
// is drawn in the next frame; live news and the moving time at most every
// TIMELINE.liveEveryMs, in a frame of their own (e2e/perf.mjs,
// BENCHMARKS.md "Page").
/* global d3 */

import { TIMELINE } from 'icewatch/settings.js';
import { jobKey } from 'icewatch/model.js';
import { Lanes, barKey, firstEndingAfter } from 'icewatch/lanes.js';
import { byName, fmt } from 'icewatch/format.js';
import { el, fitCanvas } from 'icewatch/dom.js';
import { withToken } from 'icewatch/connection.js';
import { submitterColor } from 'icewatch/graph.js';

let app; // { model, stats, scheduleRender, selectJob } (main.js)

/** The timeline's state; also `visage.timeline`, for the curious, the browser tests and e2e/perf.mjs. */
export const timeline = {
  canvas: null, ctx: null, width: 800, height: 300, ratio: 1, colors: {},
  lanes: new Lanes(),
  /** The time in view: it ends at `end` (now, while `live`) and spans `span` ms. */
  view: { end: 0, span: TIMELINE.spanMs, live: true },
  /** Lanes: their height is the fitting one times `zoom`; `top` px of them are scrolled away. */
  rows: [], laneCount: 0, laneHeight: 1, zoom: 1, top: 0,
  /** Jobs waiting for a server: when they asked (jobKey → ms). */
  waiting: new Map(),
  /** The history database: every job that ended at or after `covered` is on the timeline. */
  past: { covered: null, loading: false, asked: 0, failed: null, retryAt: 0 },
  /** What the last frame drew: bars, and when. */
  drawn: 0, drawnAt: 0, lastDraw: 0, drawQueued: false, newsQueued: false, drawnVersion: -1, hover: null, bitmap: null,
  seen: { history: null, last: null },
};

// ---------- Taking jobs from the model ----------

/** The host whose lanes a job goes on: where it ran (a local job's is its submitter). */
const laneHost = (j) => app.model.jobHost(j, 'server');

function place(j, submitMs = null) {
  if (j.server == null && !j.server_name) return; // it never began
  const key = jobKey(j);
  timeline.lanes.put(laneHost(j), j, submitMs ?? timeline.waiting.get(key) ?? null);
  if (j.end_ms != null) timeline.waiting.delete(key);
}

/** The job objects taken already: the model replaces a job's object when it changes, so the others need no second look. */
const taken = new WeakSet();

/** Takes what changed in the model since the last render: running jobs, and finished ones at the end of its history. */
function ingest() {
  const { model } = app;
  for (const j of model.jobs.values()) {
    if (taken.has(j)) continue;
    taken.add(j);
    if (j.state === 'waiting') {
      const key = jobKey(j);
      if (!timeline.waiting.has(key)) timeline.waiting.set(key, j.start_ms);
    } else {
      place(j);
    }
  }
  const history = model.history;
  let i = history.length;
  if (history === timeline.seen.history) {
    while (i > 0 && history[i - 1] !== timeline.seen.last) i--;
  } else {
    // A snapshot: everything it has, and the history from where it begins.
    i = 0;
    let oldest = model.stateNow();
    for (const j of history) if (j.end_ms != null && j.end_ms < oldest) oldest = j.end_ms;
    timeline.past.covered = Math.min(timeline.past.covered ?? Infinity, oldest);
  }
  for (; i < history.length; i++) place(history[i]);
  timeline.seen = { history, last: history[history.length - 1] ?? null };
  // Jobs that waited and never began, or that the page missed the end of.
  if (timeline.waiting.size > model.jobs.size) {
    for (const [key] of timeline.waiting) if (!model.jobs.has(Number(key.slice(key.indexOf(':') + 1)))) timeline.waiting.delete(key);
  }
}

/** When `j` asked for a server, if the page or the history saw it wait. */
export function submittedAt(j) {
  return timeline.lanes.bars.get(barKey(j))?.submit ?? timeline.waiting.get(jobKey(j)) ?? j.submit_ms ?? null;
}

// ---------- The past, from the history database ----------

/** Asks the history for the jobs that ended before what the timeline covers, back to the view's start, a page at a time. */
async function loadPast(t0) {
  const past = timeline.past;
  if (past.loading || !app.model.database || past.covered === null || t0 >= past.covered || performance.now() < past.retryAt) return;
  const since = Math.floor(t0 - timeline.view.span / 2);
  const params = new URLSearchParams({ since: String(since), until: String(Math.ceil(past.covered)), limit: String(TIMELINE.pageRows) });
  past.loading = true;
  let page = null;
  try {
    const response = await fetch(withToken('api/v1/history/jobs?' + params));
    page = response.ok ? await response.json() : null;
    past.failed = response.ok ? null : `the history answered ${response.status}`;
  } catch (e) {
    past.failed = String(e.message || e);
  }
  past.loading = false;
  past.asked += 1;
  if (!page) {
    past.retryAt = performance.now() + TIMELINE.retryMs;
    describe();
    return;
  }
  for (const j of page.jobs) place(j, j.submit_ms);
  // Newest first: a full page covers back to its last job's end only (and
  // to the window's start when they all ended at once).
  const last = page.jobs[page.jobs.length - 1];
  const covered = page.next != null && last ? last.end_ms : since;
  past.covered = covered < past.covered ? covered : since;
  // The next page, if the view reaches further back.
  renderTimeline();
}

/** Keeps at most `TIMELINE.barsKept` bars: those that ended long before the view go first. */
function bound() {
  const { lanes, view, past } = timeline;
  if (lanes.bars.size <= TIMELINE.barsKept) return;
  const t0 = viewEnd() - view.span;
  const before = t0 - view.span;
  lanes.dropBefore(before);
  past.covered = Math.max(past.covered ?? before, before);
}

// ---------- Geometry ----------

/** The right edge of the view: now on the state's clock while live. */
const viewEnd = () => timeline.view.live ? app.model.stateNow() : timeline.view.end;
/** The right edge of the frame on the screen, which a click or a test point at. */
const shownEnd = () => timeline.drawnAt || viewEnd();

const plotWidth = () => Math.max(1, timeline.width - TIMELINE.gutter);
const plotHeight = () => Math.max(1, timeline.height - TIMELINE.axis);

/** A row per host: every host the page knows now and every host a bar is on, by name, with its lanes. */
function layoutRows() {
  const { model } = app;
  const slots = new Map();
  for (const h of model.visibleHosts()) slots.set(model.hostKey(h), h.max_jobs);
  for (const host of timeline.lanes.hosts.keys()) if (!slots.has(host)) slots.set(host, 0);
  const rows = [...slots].map(([host, max]) => ({ host, lanes: Math.max(1, max, timeline.lanes.laneCount(host)), y: 0 }))
    .sort((a, b) => byName.compare(a.host, b.host));
  let y = 0;
  for (const r of rows) { r.y = y; y += r.lanes; }
  timeline.rows = rows;
  timeline.laneCount = y;
  fitLanes();
}

/** Lane height: all lanes in view at zoom 1, at most `TIMELINE.laneMax` px; `top` kept within the lanes. */
function fitLanes() {
  const h = plotHeight();
  timeline.laneHeight = Math.min(TIMELINE.laneMax, h / Math.max(1, timeline.laneCount) * timeline.zoom);
  timeline.top = Math.max(0, Math.min(timeline.top, timeline.laneCount * timeline.laneHeight - h));
}

/** The row and lane at `y` px of the canvas, or null. */
function laneAt(y) {
  const at = (y - TIMELINE.axis + timeline.top) / timeline.laneHeight;
  if (y < TIMELINE.axis || at < 0 || at >= timeline.laneCount) return null;
  const rows = timeline.rows;
  let lo = 0, hi = rows.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (rows[mid].y <= at) lo = mid; else hi = mid - 1;
  }
  const row = rows[lo];
  return row ? { row, lane: Math.floor(at - row.y) } : null;
}

/** The bar under the point `x`, `y` (CSS px of the canvas), or null. */
function barAt(x, y) {
  const hit = laneAt(y);
  if (!hit || x < TIMELINE.gutter) return null;
  const t1 = shownEnd(), scale = timeline.view.span / plotWidth();
  const t = t1 - timeline.view.span + (x - TIMELINE.gutter) * scale;
  return timeline.lanes.at(hit.row.host, hit.lane, t, TIMELINE.hitPx * scale);
}

/** Where a bar's middle is drawn and how wide (CSS px of the canvas), or null when it is out of view: for the browser tests (`visage.timeline.barPoint`). */
function barPoint(bar) {
  const row = timeline.rows.find((r) => r.host === bar.host);
  if (!row) return null;
  const t1 = shownEnd(), t0 = t1 - timeline.view.span, k = plotWidth() / timeline.view.span;
  const s = Math.max(bar.s, t0), e = Math.min(bar.e, t1);
  const y = TIMELINE.axis + (row.y + bar.lane + 0.5) * timeline.laneHeight - timeline.top;
  if (e < s || y < TIMELINE.axis || y > timeline.height) return null;
  return { x: TIMELINE.gutter + ((s + e) / 2 - t0) * k, y, width: (e - s) * k };
}
timeline.barPoint = barPoint;

// ---------- Drawing ----------

/** Submitters' colours, the graph's (a hash of the name), worked out once per name. */
const submitterColors = new Map();
function colorOf(host) {
  let color = submitterColors.get(host);
  if (color === undefined) submitterColors.set(host, color = submitterColor(host));
  return color;
}

/**
 * Draws in the next animation frame, once however many changes come before
 * it. What the user does shows at once; the live news of a render at most
 * every `TIMELINE.liveEveryMs`, and in the frame after the graph's, so that
 * no frame carries both.
 */
function requestDraw(news = false) {
  if (!timeline.ctx) return;
  if (news) {
    if (timeline.newsQueued) return;
    timeline.newsQueued = true;
    const wait = Math.max(0, timeline.lastDraw + TIMELINE.liveEveryMs - performance.now());
    setTimeout(() => requestAnimationFrame(() => { timeline.newsQueued = false; requestDraw(); }), wait);
    return;
  }
  if (timeline.drawQueued) return;
  timeline.drawQueued = true;
  requestAnimationFrame(draw);
}

function draw() {
  timeline.drawQueued = false;
  const t0ms = performance.now();
  const { ctx, ratio, colors, lanes, laneHeight: lh, top } = timeline;
  const t1 = viewEnd(), t0 = t1 - timeline.view.span;
  const pixels = bitmap();
  const { data: px, w: pw, h: ph } = pixels;
  px.fill(0);
  // In device pixels: bars are whole pixels, at least one wide and tall.
  const k = plotWidth() / timeline.view.span * ratio;
  const left = TIMELINE.gutter * ratio, axis = TIMELINE.axis * ratio, lane = lh * ratio;
  const barH = lane >= 3 ? lane - ratio : lane;
  const fill = (color, x0, x1, y0, y1) => {
    const a = Math.max(left, Math.round(x0)), b = Math.min(pw, Math.max(a + 1, Math.round(x1)));
    const c = Math.max(axis, Math.round(y0)), d = Math.min(ph, Math.max(c + 1, Math.round(y1)));
    for (let y = c; y < d; y++) px.fill(color, y * pw + a, y * pw + b);
  };
  const bad = packed(colors.bad), cut = packed(colors.cut), wait = packed(colors.wait);
  let drawn = 0;
  for (const row of timeline.rows) {
    const rowTop = axis + (row.y * lh - top) * ratio;
    if (rowTop > ph || rowTop + row.lanes * lane < axis) continue;
    const items = lanes.hosts.get(row.host);
    if (!items) continue;
    for (let l = 0; l < items.length; l++) {
      const y = rowTop + l * lane;
      if (y + lane < axis || y > ph) continue;
      const bars = items[l];
      for (let i = firstEndingAfter(bars, t0); i < bars.length && bars[i].s < t1; i++) {
        const bar = bars[i];
        if (bar.lookOf !== bar.job) look(bar, bad, cut);
        const x0 = left + (Math.max(bar.s, t0) - t0) * k, x1 = left + (Math.min(bar.e, t1) - t0) * k;
        if (bar.local) fill(bar.color, x0, x1, y + barH / 2, y + barH);
        else fill(bar.color, x0, x1, y, y + barH);
        if (bar.submit != null && bar.submit < bar.s && bar.s > t0) {
          const mid = Math.floor(y + barH / 2);
          fill(wait, left + (Math.max(bar.submit, t0) - t0) * k, x0, mid, mid + 1);
        }
        drawn++;
      }
    }
  }
  ctx.putImageData(pixels.image, 0, 0);
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  drawFrame(t0, t1);
  timeline.drawn = drawn;
  timeline.drawnAt = t1;
  timeline.drawnVersion = lanes.version;
  timeline.lastDraw = performance.now();
  app.stats.timelineDraws += 1;
  app.stats.timelineDrawMs += timeline.lastDraw - t0ms;
}

/** How a bar looks (its colour, whether local), worked out again only when its job changes. */
function look(bar, bad, cut) {
  const j = bar.job;
  bar.lookOf = j;
  bar.local = j.state === 'local' || j.state === 'local_finished' && j.reason === 'local_done';
  bar.color = j.state === 'failed' ? bad
    : j.state === 'cut_short' || j.state === 'local_finished' && j.reason !== 'local_done' ? cut
      : packed(colorOf(app.model.jobHost(j, 'client') ?? '?'));
}

/**
 * The canvas's pixels, kept between frames: thousands of bars written
 * straight into them cost less than as many paths for the browser to fill
 * (the canvas is rasterised on the CPU when there is no GPU), and far less
 * when lanes are thinner than a pixel.
 */
function bitmap() {
  const c = timeline.canvas;
  let b = timeline.bitmap;
  if (!b || b.w !== c.width || b.h !== c.height) {
    const image = timeline.ctx.createImageData(c.width, c.height);
    b = timeline.bitmap = { image, w: c.width, h: c.height, data: new Uint32Array(image.data.buffer) };
  }
  return b;
}

/** A CSS colour as one pixel of the bitmap (RGBA bytes in memory order), worked out once per colour. */
const packedColors = new Map();
function packed(css) {
  let p = packedColors.get(css);
  if (p === undefined) {
    const c = d3.rgb(css);
    const bytes = new Uint8ClampedArray([c.r, c.g, c.b, 255]);
    p = new Uint32Array(bytes.buffer)[0];
    packedColors.set(css, p);
  }
  return p;
}

/** The time axis, the host names and the lines between hosts. */
function drawFrame(t0, t1) {
  const { ctx, width, height, colors, laneHeight: lh, top } = timeline;
  const left = TIMELINE.gutter, axis = TIMELINE.axis;
  ctx.font = `11px ${colors.font}`;
  ctx.textBaseline = 'middle';
  // Hosts: a line above each, its name where its lanes leave room.
  ctx.fillStyle = colors.border;
  ctx.beginPath();
  const named = [];
  for (const row of timeline.rows) {
    const y = axis + row.y * lh - top;
    if (y > height || y + row.lanes * lh < axis) continue;
    if (row.lanes * lh >= 4 && y >= axis) ctx.rect(0, Math.round(y), width, 0.5);
    if (row.lanes * lh >= 11) named.push([row.host, Math.max(axis + 6, y + Math.min(row.lanes * lh, 16) / 2)]);
  }
  ctx.fill();
  ctx.fillStyle = colors.muted;
  for (const [host, y] of named) ctx.fillText(host.length > 16 ? host.slice(0, 15) + '…' : host, 4, y, left - 8);
  // Time: ticks along the top.
  ctx.clearRect(0, 0, width, axis);
  const scale = d3.scaleTime().domain([t0, t1]).range([left, width]);
  const ticks = scale.ticks(Math.max(2, Math.floor((width - left) / 110)));
  const format = scale.tickFormat();
  ctx.fillStyle = colors.muted;
  ctx.textAlign = 'center';
  for (const t of ticks) {
    const x = scale(t);
    ctx.fillRect(Math.round(x), axis - 4, 1, 4);
    if (x > left + 20 && x < width - 20) ctx.fillText(format(t), x, axis / 2);
  }
  ctx.textAlign = 'start';
  ctx.fillRect(left, axis - 1, width - left, 1);
  if (timeline.view.live) {
    ctx.fillStyle = colors.accent;
    ctx.fillRect(width - 2, axis, 2, height - axis);
  }
}

// ---------- Rendering with the page ----------

/** Takes the model's news and draws; asks the history when the view reaches past what the page holds. `now`: the user moved the view, draw at once. */
export function renderTimeline(now = false) {
  if (!timeline.ctx) return;
  ingest();
  layoutRows();
  bound();
  const t0 = viewEnd() - timeline.view.span;
  loadPast(t0);
  describe();
  requestDraw(!now);
}

/** The card's note: what the view shows and where its past comes from. */
function describe() {
  const { model } = app;
  const past = timeline.past;
  const text = !model.database ? 'this icewatch keeps no history (--db): the past is what the page saw'
    : past.loading ? 'reading the history…'
      : past.failed ? `the history could not be read: ${past.failed}`
        : `${timeline.view.live ? 'live' : 'at ' + fmt.dateTime(timeline.view.end)} · ${fmt.dur(Math.round(timeline.view.span))} in view`;
  const note = el('timeline-note');
  if (note.textContent !== text) note.textContent = text;
  const live = el('timeline-live');
  const pressed = String(timeline.view.live);
  if (live.getAttribute('aria-pressed') !== pressed) live.setAttribute('aria-pressed', pressed);
}

/** Live, time moves: a new frame once it has moved a pixel, and `TIMELINE.liveEveryMs` after the last. */
function tick() {
  if (!timeline.view.live || !timeline.ctx || performance.now() - timeline.lastDraw < TIMELINE.liveEveryMs) return;
  const moved = (viewEnd() - timeline.drawnAt) * plotWidth() / timeline.view.span;
  if (moved >= 1 || timeline.drawnVersion !== timeline.lanes.version) requestDraw();
}

// ---------- Moving through time ----------

/** Shows the time up to `end` over `span` ms; at or past now it is live. */
function setView(end, span) {
  const now = app.model.stateNow();
  const v = timeline.view;
  v.span = Math.min(TIMELINE.maxSpanMs, Math.max(TIMELINE.minSpanMs, span));
  v.live = end >= now;
  v.end = Math.min(end, now);
  renderTimeline(true);
}

/** Zooms time by `factor` around the time at `x` px (the right edge while live). */
function zoomAt(factor, x) {
  const v = timeline.view, end = viewEnd();
  const span = Math.min(TIMELINE.maxSpanMs, Math.max(TIMELINE.minSpanMs, v.span * factor));
  if (v.live) { setView(end, span); return; }
  const frac = Math.min(1, Math.max(0, (x - TIMELINE.gutter) / plotWidth()));
  const at = end - v.span + frac * v.span;
  setView(at + (1 - frac) * span, span);
}

function initInput(canvas) {
  canvas.addEventListener('wheel', (event) => {
    event.preventDefault();
    const [x, y] = d3.pointer(event, canvas);
    const factor = Math.exp(event.deltaY * TIMELINE.wheelZoom);
    if (event.shiftKey) {
      // Lanes: zoom around the pointer.
      const at = (y - TIMELINE.axis + timeline.top) / timeline.laneHeight;
      timeline.zoom = Math.max(1, Math.min(TIMELINE.maxLaneZoom, timeline.zoom / factor));
      fitLanes();
      timeline.top = Math.max(0, at * timeline.laneHeight - (y - TIMELINE.axis));
      fitLanes();
      requestDraw();
    } else {
      zoomAt(factor, x);
    }
  }, { passive: false });
  let drag = null;
  canvas.addEventListener('pointerdown', (event) => {
    const [x, y] = d3.pointer(event, canvas);
    drag = { x, y, end: viewEnd(), top: timeline.top, moved: false, id: event.pointerId };
  });
  canvas.addEventListener('pointermove', (event) => {
    const [x, y] = d3.pointer(event, canvas);
    if (!drag) { hoverAt(x, y); return; }
    if (!drag.moved && Math.hypot(x - drag.x, y - drag.y) < 4) return;
    if (!drag.moved) { drag.moved = true; canvas.setPointerCapture(drag.id); hideTip(); }
    timeline.top = drag.top - (y - drag.y);
    fitLanes();
    setView(drag.end - (x - drag.x) * timeline.view.span / plotWidth(), timeline.view.span);
  });
  const end = (event) => {
    if (drag && !drag.moved && event.type === 'pointerup') {
      const [x, y] = d3.pointer(event, canvas);
      const bar = barAt(x, y);
      if (bar) app.selectJob(bar.job);
    }
    drag = null;
  };
  canvas.addEventListener('pointerup', end);
  canvas.addEventListener('pointercancel', end);
  canvas.addEventListener('pointerleave', hideTip);
  el('timeline-live').addEventListener('click', () => setView(Infinity, timeline.view.span));
  el('timeline-in').addEventListener('click', () => zoomAt(1 / TIMELINE.buttonZoom, plotWidth() + TIMELINE.gutter));
  el('timeline-out').addEventListener('click', () => zoomAt(TIMELINE.buttonZoom, plotWidth() + TIMELINE.gutter));
}

// ---------- Hover ----------

function hoverAt(x, y) {
  const bar = barAt(x, y);
  const tip = el('timeline-tip');
  if (!bar) { hideTip(); return; }
  timeline.canvas.style.cursor = 'pointer';
  if (timeline.hover !== bar) {
    timeline.hover = bar;
    const j = bar.job, { model } = app;
    const client = model.jobHost(j, 'client') ?? '?', server = model.jobHost(j, 'server') ?? '?';
    const route = client === server ? `${client}, locally or given back` : `${client} → ${server}`;
    const ran = bar.e === Infinity ? 'running' : fmt.dur(bar.e - bar.s);
    const waited = bar.submit != null && bar.submit < bar.s ? ` · waited ${fmt.dur(bar.s - bar.submit)}` : '';
    tip.textContent = `${j.file || '(unnamed)'}\n${route}\n${j.state.replace('_', ' ')} · ${ran}${waited}`;
  }
  tip.hidden = false;
  tip.style.left = Math.min(x + 14, timeline.width - 260) + 'px';
  tip.style.top = (y + 14) + 'px';
}

function hideTip() {
  timeline.hover = null;
  el('timeline-tip').hidden = true;
  if (timeline.canvas) timeline.canvas.style.cursor = '';
}

// ---------- Start ----------

/** The stylesheet's colours the timeline draws with. */
export function refreshTimelineColors() {
  const css = getComputedStyle(document.documentElement);
  for (const name of TIMELINE.colors) timeline.colors[name] = css.getPropertyValue('--' + name).trim();
  timeline.colors.font = getComputedStyle(document.body).fontFamily;
  for (const bar of timeline.lanes.bars.values()) bar.lookOf = null;
  requestDraw();
}

export function initTimeline(context) {
  app = context;
  Object.assign(app.stats, { timelineDraws: 0, timelineDrawMs: 0 });
  const c = el('timeline');
  timeline.canvas = c;
  timeline.ctx = c.getContext('2d');
  const resize = () => {
    fitCanvas(c, el('timeline-wrap'), timeline, 200, 100);
    fitLanes();
    requestDraw();
  };
  new ResizeObserver(resize).observe(el('timeline-wrap'));
  resize();
  refreshTimelineColors();
  matchMedia('(prefers-color-scheme: dark)').addEventListener('change', refreshTimelineColors);
  initInput(c);
  setInterval(tick, TIMELINE.tickMs);
}
