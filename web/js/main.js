// The page's entry: the model fed by the connection, and every view
// rendered from it, batched, at most once per animation frame and less
// often when rendering is costly. visage.html loads this module; the
// server inlines all of them (build.rs).
//
//   connection.js  the WebSocket: snapshot, contiguous diffs, reconnect
//   model.js       what the server said, merged; what views ask of it
//   header.js      scheduler line, connection chip, banner, summary cards
//   graph.js       the force graph on a canvas, its tooltip
//   tables.js      the host table, the job list and its filters
//   panel.js       a host's panel
//   timeline.js    the timeline: a lane per slot, a bar per job (lanes.js)
//   jobdetail.js   a job's detail
//   control.js     the scheduler's text port: blocks, internals, actions
//   builds.js      the builds list, hosts that hurt builds (docs/insights.md)
//   notify.js      browser notifications (opt-in)
//   format.js      how numbers, times and hosts read
//   settings.js    every threshold and colour, in one place

import { HISTORY_KEPT, OFFLINE_SHOWN_MS, RENDER, TICK_MS } from 'icewatch/settings.js';
import { Model } from 'icewatch/model.js';
import { Connection, withToken } from 'icewatch/connection.js';
import { initHeader, renderChip, renderHeader, renderSummary, showConnection } from 'icewatch/header.js';
import { graph, initGraph, refreshColors, updateGraph } from 'icewatch/graph.js';
import { initTables, renderHosts, renderJobs } from 'icewatch/tables.js';
import { initPanel, renderPanel, showPanel } from 'icewatch/panel.js';
import { notify, setupNotifications } from 'icewatch/notify.js';
import { initBuilds, markHurting, panelHurting } from 'icewatch/builds.js';
import { el } from 'icewatch/dom.js';
import { watchControl } from 'icewatch/control.js';
import { initTimeline, renderTimeline, timeline } from 'icewatch/timeline.js';
import { initJobDetail, renderJob, showJob } from 'icewatch/jobdetail.js';

const model = new Model({ historyKept: HISTORY_KEPT, offlineShownMs: OFFLINE_SHOWN_MS });

/** What the page did, for the curious (`visage.stats` in the console) and for tests. */
const stats = { renders: 0, renderMs: 0, draws: 0, drawMs: 0 };

const connection = new Connection(model, {
  changed: showConnection,
  received({ kind, events }) {
    if (kind === 'diff') notify(events, (j) => model.jobHost(j, 'server'));
    if (kind === 'snapshot' && model.textPort) watchControl(scheduleRender);
    scheduleRender();
  },
});

/** What the views share: the model, the host whose panel is open (its key), and how to ask for a render. */
const app = { model, connection, stats, selected: null, scheduleRender, selectHost, selectJob };

/** The page's state, for the curious and for the browser tests and e2e/perf.mjs. */
window.visage = { model, stats, graph, timeline };

// ---------- Rendering: batched per animation frame ----------

let renderEvery = RENDER.minMs; // ms between renders; grows when a render is costly
let renderQueued = false;
let lastRender = -Infinity;

/** Renders soon: at most every `renderEvery` ms, in an animation frame. */
function scheduleRender() {
  if (renderQueued) return;
  renderQueued = true;
  const wait = Math.max(0, lastRender + renderEvery - performance.now());
  setTimeout(() => requestAnimationFrame(render), wait);
}

/**
 * Renders in two animation frames, so that neither takes a frame's whole
 * time with a big cluster: the numbers and tables first, all from the same
 * model so that they agree; the canvases' data (graph, timeline) in the
 * next, and they draw in the frames after.
 */
function render() {
  renderQueued = false;
  lastRender = performance.now();
  let cost = 0;
  const timed = (part) => {
    const t0 = performance.now();
    try { part(); } finally { cost += performance.now() - t0; }
  };
  const canvases = () => {
    try { timed(renderCanvases); } finally {
      renderEvery = Math.min(RENDER.maxMs, Math.max(RENDER.minMs, cost * RENDER.costShare));
      stats.renders += 1;
      stats.renderMs += cost;
    }
  };
  try { timed(renderText); } finally { requestAnimationFrame(canvases); }
}

function renderText() {
  const derived = model.derive();
  renderHeader();
  renderSummary();
  renderHosts(derived);
  markHurting();
  renderJobs();
  if (app.selected !== null) { renderPanel(derived); panelHurting(app.selected); }
  renderJob();
}

function renderCanvases() {
  updateGraph(model.derive());
  renderTimeline();
}

/** Selects the host `key` (null: none): its node, its row and its panel. */
function selectHost(key) {
  if (key !== null) showJob(null);
  app.selected = key;
  graph.selected = key;
  showPanel(key);
  scheduleRender();
}

/** Opens the detail of the job `job` (null: closes it), in place of a host's panel. */
function selectJob(job) {
  if (job !== null) selectHost(null);
  showJob(job);
}

// ---------- Start ----------

for (const a of ['api-link', 'metrics-link']) el(a).href = withToken(el(a).getAttribute('href'));
initHeader(app);
initPanel(app);
refreshColors();
matchMedia('(prefers-color-scheme: dark)').addEventListener('change', refreshColors);
setupNotifications();
initGraph(app);
initTables(app);
initTimeline(app);
initJobDetail(app);
initBuilds(app);
connection.connect();
setInterval(renderChip, TICK_MS);
addEventListener('keydown', (event) => { if (event.key === 'Escape') { selectHost(null); showJob(null); } });
