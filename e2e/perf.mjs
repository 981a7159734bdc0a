// How smooth the page is with a big cluster, in Debian's chromium: frame
// times, long tasks and the main-thread time spent per WebSocket message
// while `icewatch demo --hosts N` sends a diff every 100 ms, beside two
// baselines measured in the same run and the same browser: a blank page
// that only runs a requestAnimationFrame loop (what this headless browser
// can do at best on this machine) and the page with the demo's default 12
// hosts. It also reports the long tasks before the measurement, from the
// page's load through its first layout. BENCHMARKS.md ("Page") has the
// results.
//
// Not a test (no pass or fail, and `node --test e2e/` does not pick it up:
// its name matches none of the test runner's patterns). Run from the
// repository root after `cargo build --release` and `npm ci --prefix web`:
//
//   node e2e/perf.mjs [--hosts 500] [--seconds 20] [--runs 3]
//
// Options:
//   --hosts N       hosts in the big cluster (default 500)
//   --seconds S     length of each measurement, after the first layout (20)
//   --runs R        runs; each measures the three pages afresh (3)
//   --bin PATH      the icewatch binary (default target/release/icewatch,
//                   or $ICEWATCH_BIN)
//   --page FILE     serve FILE as the page instead of the binary's own, with
//                   d3 and the modules of js/ beside it inlined as build.rs
//                   does (e2e/page.mjs), to try changes to web/ without a
//                   rebuild; a page from before the modules works too
//   --profile DIR   also record a CPU profile (.cpuprofile, opens in
//                   Chrome's DevTools) and a trace (.json, opens in
//                   ui.perfetto.dev) of the big page's measurement, and
//                   print where the time went
//   --json FILE     write every run's numbers to FILE
//   --url URL       measure the page of an icewatch already running (for
//                   example `icewatch monitor` on `icewatch loadgen`, see
//                   scripts/loadgen-scale.sh) instead of a demo's, once it
//                   knows --hosts hosts; the baselines are measured as usual
//   --bars N        before measuring, widen the timeline's time in view until
//                   it draws N bars or more, waiting for jobs up to 90 s;
//                   the bars drawn are reported either way (default 10000)
//
// Needs /usr/bin/chromium; never downloads a browser.

import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from '../web/node_modules/playwright-core/index.mjs';
import { assemblePage } from './page.mjs';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const chromiumPath = '/usr/bin/chromium';
const WAIT = 180_000; // for the first layout of a big cluster on a busy machine

// ---------- Options ----------

function options(argv) {
  const o = {
    hosts: 500, seconds: 20, runs: 3, profile: null, json: null, page: null, url: null, bars: 10000,
    bin: process.env.ICEWATCH_BIN || join(root, 'target', 'release', 'icewatch'),
  };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i], value = argv[i + 1];
    const need = () => { if (value === undefined) usage(`${flag} needs a value`); i++; return value; };
    const number = () => { const n = Number(need()); if (!(n > 0)) usage(`${flag}: not a positive number: ${value}`); return n; };
    switch (flag) {
      case '--hosts': o.hosts = Math.round(number()); break;
      case '--seconds': o.seconds = number(); break;
      case '--runs': o.runs = Math.round(number()); break;
      case '--bin': o.bin = resolve(need()); break;
      case '--page': o.page = resolve(need()); break;
      case '--profile': o.profile = resolve(need()); break;
      case '--json': o.json = resolve(need()); break;
      case '--url': o.url = new URL(need()).href; break;
      case '--bars': o.bars = Math.round(number()); break;
      case '-h': case '--help': usage(null); break;
      default: usage(`unknown option ${flag}`);
    }
  }
  return o;
}

function usage(error) {
  const text = readFileSync(fileURLToPath(import.meta.url), 'utf8').split('\n')
    .filter((l) => l.startsWith('//')).map((l) => l.slice(3)).join('\n');
  (error ? process.stderr : process.stdout).write((error ? `error: ${error}\n\n` : '') + text + '\n');
  process.exit(error ? 2 : 0);
}

// ---------- The demo server ----------

/** Starts `icewatch demo` and resolves with it and the URL of its page. */
function startDemo(bin, hosts) {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(bin, ['demo', '--hosts', String(hosts), '--seed', '1', '--listen', '127.0.0.1:0'],
      { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    const timer = setTimeout(() => { child.kill(); reject(new Error(`icewatch demo printed no URL:\n${output}`)); }, 60_000);
    child.stdout.on('data', (chunk) => {
      output += chunk;
      const url = output.match(/open (http:\/\/\S+) in a browser/);
      if (url) { clearTimeout(timer); resolvePromise({ child, url: url[1] }); }
    });
    child.stderr.on('data', (chunk) => { output += chunk; });
    child.on('exit', (code) => { clearTimeout(timer); reject(new Error(`icewatch demo exited (${code}):\n${output}`)); });
    child.on('error', reject);
  });
}

function stopDemo(demo) {
  demo.child.removeAllListeners('exit');
  demo.child.kill('SIGTERM');
}

// ---------- What the page records about itself ----------

/**
 * Installed before any script of the page: a requestAnimationFrame loop that
 * keeps every frame interval, an observer of long tasks, and a wrapper around
 * the WebSocket message handlers that times each call. Recording is switched
 * on and off by `__perf.start()` and `__perf.stop()`.
 */
function recorder() {
  // `loading`: long tasks from the page's start until the measurement,
  // which covers its first layout.
  const rec = { on: false, last: null, frames: [], longTasks: [], messages: [], loading: [], bars: [] };
  const loop = (t) => {
    if (rec.on) {
      if (rec.last !== null) rec.frames.push(t - rec.last);
      rec.last = t;
      if (window.visage && window.visage.timeline) rec.bars.push(window.visage.timeline.drawn);
    }
    requestAnimationFrame(loop);
  };
  requestAnimationFrame(loop);
  try {
    new PerformanceObserver((list) => {
      const into = rec.on ? rec.longTasks : rec.t0 === undefined ? rec.loading : null;
      if (into) for (const e of list.getEntries()) into.push(e.duration);
    }).observe({ type: 'longtask' });
  } catch { /* no long task API: reported as none */ }

  const timed = (handler) => function (event) {
    const t0 = performance.now();
    try { return handler.call(this, event); } finally {
      if (rec.on) {
        const text = typeof event.data === 'string' ? event.data : '';
        const kind = /"type"\s*:\s*"(\w+)"/.exec(text.slice(0, 64));
        rec.messages.push({ ms: performance.now() - t0, type: kind ? kind[1] : '?', bytes: text.length });
      }
    }
  };
  const onmessage = Object.getOwnPropertyDescriptor(WebSocket.prototype, 'onmessage');
  Object.defineProperty(WebSocket.prototype, 'onmessage', {
    configurable: true, enumerable: onmessage.enumerable,
    get() { return this.__perfHandler ?? null; },
    set(handler) { this.__perfHandler = handler; onmessage.set.call(this, typeof handler === 'function' ? timed(handler) : handler); },
  });
  const add = WebSocket.prototype.addEventListener;
  WebSocket.prototype.addEventListener = function (type, handler, ...rest) {
    return add.call(this, type, type === 'message' && typeof handler === 'function' ? timed(handler) : handler, ...rest);
  };

  const pageStats = () => (window.visage && window.visage.stats ? { ...window.visage.stats } : null);
  window.__perf = {
    start() {
      Object.assign(rec, { on: true, last: null, frames: [], longTasks: [], messages: [], bars: [] });
      rec.t0 = performance.now();
      rec.stats0 = pageStats();
    },
    stop() {
      rec.on = false;
      return {
        ms: performance.now() - rec.t0, frames: rec.frames, longTasks: rec.longTasks, messages: rec.messages, loading: rec.loading, bars: rec.bars,
        stats0: rec.stats0, stats1: pageStats(), elements: document.getElementsByTagName('*').length,
      };
    },
  };
}

// ---------- Measuring one page ----------

/** Loads `url`, waits for `ready` (a function run in the page), measures. */
async function measure(browser, o, { url, ready, readyArg, html, profileAs, widen }) {
  const context = await browser.newContext({ viewport: { width: 1440, height: 960 }, colorScheme: 'light' });
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.addInitScript(recorder);
  if (html) {
    await page.route((u) => u.pathname === '/', (route) => route.fulfill({ contentType: 'text/html; charset=utf-8', body: html }));
  }
  try {
    await page.goto(url);
    const t0 = Date.now();
    await page.waitForFunction(ready, readyArg, { timeout: WAIT, polling: 250 }).catch((e) => {
      throw new Error(`${url}: not ready after ${WAIT / 1000} s (${e.message.split('\n')[0]})`
        + (errors.length ? `; page errors: ${errors.join(' | ')}` : ''));
    });
    const readyMs = Date.now() - t0;
    if (widen) await page.evaluate(widen.fn, widen.arg);
    let cdp = null;
    if (profileAs) {
      cdp = await context.newCDPSession(page);
      await cdp.send('Profiler.enable');
      await cdp.send('Profiler.setSamplingInterval', { interval: 200 });
      await browser.startTracing(page, { path: profileAs + '.trace.json', screenshots: false });
      await cdp.send('Profiler.start');
    }
    await page.evaluate(() => window.__perf.start());
    await page.waitForTimeout(o.seconds * 1000); // the measurement itself
    const raw = await page.evaluate(() => window.__perf.stop());
    if (profileAs) {
      const { profile } = await cdp.send('Profiler.stop');
      await browser.stopTracing();
      writeFileSync(profileAs + '.cpuprofile', JSON.stringify(profile));
      raw.profile = summariseProfile(profile);
      raw.trace = summariseTrace(JSON.parse(readFileSync(profileAs + '.trace.json', 'utf8')));
    }
    raw.readyMs = readyMs;
    raw.errors = errors;
    return raw;
  } finally {
    await context.close();
  }
}

/**
 * In the page: every host known, a node drawn per online host, the first
 * layout done. A small cluster's layout never comes to rest (arrows pull
 * hosts together and keep it warm at 0.2 as jobs come and go), so there
 * the first layout is done when it has cooled to that.
 */
function pageReady(hosts) {
  const v = window.visage;
  if (!v || !v.model || v.model.hosts.size < hosts) return false;
  const online = [...v.model.hosts.values()].filter((h) => h.online).length;
  const g = v.graph;
  const drawn = g ? g.nodes.size : document.querySelectorAll('[data-testid=host-node]').length;
  return drawn >= online && (!g || g.settled === true || (g.nodes.size <= 150 && g.sim.alpha() <= 0.21));
}

/**
 * In the page: widens the timeline's time in view (keeping it live) until
 * it draws `bars` bars, waiting for jobs to come when it already shows all
 * it holds, for 90 s at most; resolves with the bars drawn.
 */
async function widenTimeline(bars) {
  const t = window.visage && window.visage.timeline;
  if (!t) return 0;
  const frame = () => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
  const out = document.getElementById('timeline-out');
  const until = performance.now() + 90_000;
  while (t.drawn < bars && performance.now() < until) {
    const before = t.drawn;
    if (t.view.span < 24 * 3600_000) out.click();
    await frame();
    // All it holds is in view: wait for more.
    if (t.drawn <= before * 1.05) await new Promise((r) => setTimeout(r, 1000));
  }
  return t.drawn;
}

// ---------- Numbers ----------

const percentile = (sorted, p) => sorted.length ? sorted[Math.min(sorted.length - 1, Math.ceil(p / 100 * sorted.length) - 1)] : NaN;
const sum = (xs) => xs.reduce((a, b) => a + b, 0);
const median = (xs) => {
  const s = [...xs].filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (!s.length) return NaN;
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

/** The page's recording as the numbers reported. */
function numbers(raw) {
  const frames = [...raw.frames].sort((a, b) => a - b);
  const diffs = raw.messages.filter((m) => m.type === 'diff');
  const handler = raw.messages.map((m) => m.ms).sort((a, b) => a - b);
  const n = {
    seconds: raw.ms / 1000,
    frames: frames.length,
    fps: frames.length / (sum(frames) / 1000),
    p50: percentile(frames, 50), p95: percentile(frames, 95), p99: percentile(frames, 99), max: frames.at(-1) ?? NaN,
    longTasks: raw.longTasks.length, longTaskMs: sum(raw.longTasks), longTaskMax: raw.longTasks.length ? Math.max(...raw.longTasks) : 0,
    messages: raw.messages.length, diffs: diffs.length, snapshots: raw.messages.filter((m) => m.type === 'snapshot').length,
    diffKB: diffs.length ? sum(diffs.map((m) => m.bytes)) / diffs.length / 1024 : 0,
    handlerMean: handler.length ? sum(handler) / handler.length : 0,
    handlerP95: percentile(handler, 95), handlerMax: handler.at(-1) ?? 0, handlerTotal: sum(handler),
    elements: raw.elements, readyMs: raw.readyMs, errors: raw.errors,
    bars: raw.bars && raw.bars.length ? percentile([...raw.bars].sort((a, b) => a - b), 50) : null,
    loadingLongTasks: raw.loading.length, loadingLongTaskMax: raw.loading.length ? Math.max(...raw.loading) : 0,
  };
  if (raw.stats0 && raw.stats1) {
    // The page's own counters: renders (model → DOM), and graph ticks or draws.
    n.work = {};
    for (const k of ['render', 'tick', 'draw', 'timelineDraw']) {
      if (!(k + 's' in raw.stats1)) continue;
      const count = raw.stats1[k + 's'] - raw.stats0[k + 's'];
      n.work[k + 's'] = { count, mean: count ? (raw.stats1[k + 'Ms'] - raw.stats0[k + 'Ms']) / count : 0 };
    }
  }
  if (raw.profile) n.profile = raw.profile;
  if (raw.trace) n.trace = raw.trace;
  return n;
}

/** Self time per function of a CPU profile, the biggest first. */
function summariseProfile(profile) {
  const self = new Map();
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const dt = profile.timeDeltas;
  for (let i = 0; i < profile.samples.length; i++) {
    const node = byId.get(profile.samples[i]);
    const f = node.callFrame;
    const name = `${f.functionName || '(anonymous)'} ${f.url ? f.url.split('/').pop() || 'page' : ''}:${f.lineNumber + 1}`;
    self.set(name, (self.get(name) || 0) + (dt[i] || 0) / 1000);
  }
  const total = sum([...self.values()]);
  return { totalMs: total, top: [...self].sort((a, b) => b[1] - a[1]).slice(0, 15).map(([name, ms]) => ({ name, ms })) };
}

/**
 * Busy time per thread of the page's renderer and of the GPU process, and
 * the renderer main thread's time by kind of work (script, style, layout,
 * paint...), from a Chrome trace.
 */
function summariseTrace(trace) {
  const events = trace.traceEvents || trace;
  const names = new Map();
  for (const e of events) if (e.ph === 'M' && e.name === 'thread_name') names.set(`${e.pid}:${e.tid}`, e.args.name);
  const perThread = new Map();
  for (const e of events) {
    if (e.ph !== 'X' || !e.dur) continue;
    const key = `${e.pid}:${e.tid}`;
    if (!perThread.has(key)) perThread.set(key, []);
    perThread.get(key).push(e);
  }
  const busy = (list) => {
    const spans = list.map((e) => [e.ts, e.ts + e.dur]).sort((a, b) => a[0] - b[0]);
    let total = 0, end = -Infinity;
    for (const [s, f] of spans) {
      if (s >= end) { total += f - s; end = f; } else if (f > end) { total += f - end; end = f; }
    }
    return total / 1000;
  };
  const threads = [...perThread].map(([key, list]) => ({ thread: names.get(key) || key, key, ms: busy(list) }))
    .sort((a, b) => b.ms - a.ms);
  const main = threads.find((t) => t.thread === 'CrRendererMain' && perThread.get(t.key).some((e) => e.name === 'FunctionCall' || e.name === 'FireAnimationFrame'));
  const kinds = {
    script: ['FunctionCall', 'EvaluateScript', 'TimerFire', 'FireAnimationFrame', 'EventDispatch', 'v8.compile'],
    style: ['UpdateLayoutTree', 'RecalculateStyles'],
    layout: ['Layout'],
    paint: ['PrePaint', 'Paint', 'PaintImage', 'Layerize', 'UpdateLayer', 'Commit'],
    gc: ['MinorGC', 'MajorGC', 'V8.GC_SCAVENGER', 'V8.GC_MARK_COMPACTOR', 'BlinkGC.AtomicPhase'],
    hitTest: ['HitTest'],
  };
  const byKind = {};
  if (main) {
    const list = perThread.get(main.key);
    for (const [kind, eventNames] of Object.entries(kinds)) byKind[kind] = busy(list.filter((e) => eventNames.includes(e.name)));
  }
  return { threads: threads.slice(0, 10).map(({ thread, ms }) => ({ thread, ms })), main: main ? main.ms : null, byKind };
}

// ---------- Output ----------

const f1 = (x) => Number.isFinite(x) ? x.toFixed(1) : '–';
const f2 = (x) => Number.isFinite(x) ? x.toFixed(2) : '–';

function short(n) {
  return `${f1(n.fps)} fps, frame p50 ${f1(n.p50)} p95 ${f1(n.p95)} p99 ${f1(n.p99)} max ${f1(n.max)} ms, `
    + `long tasks ${n.longTasks} (${Math.round(n.longTaskMs)} ms, max ${Math.round(n.longTaskMax)})`;
}

function detail(n) {
  let s = `${n.diffs} diffs (${f1(n.diffs / n.seconds)}/s, ${f1(n.diffKB)} KiB), handler ${f2(n.handlerMean)} ms/msg `
    + `(p95 ${f2(n.handlerP95)}, max ${f1(n.handlerMax)})`;
  for (const [k, w] of Object.entries(n.work || {})) s += `, ${w.count} ${k} × ${f2(w.mean)} ms`;
  return s + `, ${n.elements} elements` + (n.bars != null ? `, timeline bars drawn (median) ${n.bars}` : '');
}

function printProfile(label, n) {
  if (n.trace) {
    const t = n.trace;
    console.log(`  ${label} trace, ms busy in ${f1(n.seconds)} s: ` + t.threads.map((x) => `${x.thread} ${Math.round(x.ms)}`).join(', '));
    console.log(`  ${label} renderer main thread by kind (ms): ` + Object.entries(t.byKind).map(([k, v]) => `${k} ${Math.round(v)}`).join(', '));
  }
  if (n.profile) {
    console.log(`  ${label} JS self time (ms of ${Math.round(n.profile.totalMs)} sampled):`);
    for (const { name, ms } of n.profile.top.slice(0, 12)) console.log(`    ${f1(ms).padStart(8)}  ${name}`);
  }
}

/** "median [min–max]" of one number over the runs. */
function spread(values, digits = 1) {
  const ok = values.filter((x) => Number.isFinite(x));
  if (!ok.length) return '–';
  const f = (x) => x.toFixed(digits);
  return `${f(median(ok))} [${f(Math.min(...ok))}–${f(Math.max(...ok))}]`;
}

// ---------- Main ----------

async function main() {
  const o = options(process.argv.slice(2));
  if (!existsSync(o.bin)) usage(`no ${o.bin}: run \`cargo build --release\` first, or pass --bin`);
  if (!existsSync(chromiumPath)) usage(`no ${chromiumPath}: install Debian's chromium (apt-get install chromium)`);
  if (o.profile) mkdirSync(o.profile, { recursive: true });
  const html = o.page ? assemblePage(o.page) : null;
  const big = o.url ? `${o.hosts} hosts (--url)` : `${o.hosts} hosts`;
  console.log(`page: ${o.page ? o.page + ' (working copy, d3 inlined)' : 'as embedded in ' + o.bin}; `
    + `${o.runs} runs of ${o.seconds} s per page, after the first layout; chromium ${chromiumPath}, headless, 1440×960`);
  const runs = [];
  for (let r = 1; r <= o.runs; r++) {
    const load = loadavg()[0];
    const started = new Date().toISOString().slice(11, 19);
    const browser = await chromium.launch({
      executablePath: chromiumPath, headless: true,
      args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
        '--disable-sync', '--no-first-run',
        // A page served by page.route has no address, so chromium would
        // not let it open a WebSocket to 127.0.0.1.
        ...(html ? ['--disable-features=LocalNetworkAccessChecks'] : [])],
    });
    const run = { run: r, started, load };
    try {
      run.blank = numbers(await measure(browser, o, {
        url: 'http://127.0.0.1:9/', html: '<!doctype html><title>blank</title>', ready: () => !!window.__perf,
      }));
      for (const [key, hosts] of [['small', 12], ['big', o.hosts]]) {
        const demo = key === 'big' && o.url ? null : await startDemo(o.bin, hosts);
        try {
          run[key] = numbers(await measure(browser, o, {
            url: demo ? demo.url : o.url, html, ready: pageReady, readyArg: hosts,
            profileAs: key === 'big' && o.profile ? join(o.profile, `run${r}-${hosts}hosts`) : null,
            widen: key === 'big' ? { fn: widenTimeline, arg: o.bars } : null,
          }));
        } finally { if (demo) stopDemo(demo); }
      }
    } finally { await browser.close(); }
    run.fpsRatio = run.big.fps / run.blank.fps;
    run.p95Ratio = run.big.p95 / run.blank.p95;
    run.smallFpsRatio = run.small.fps / run.blank.fps;
    runs.push(run);
    console.log(`run ${r} ${started} UTC, load ${f2(load)} | blank: ${f1(run.blank.fps)} fps, p95 ${f1(run.blank.p95)} ms`
      + ` | 12 hosts: ${f1(run.small.fps)} fps, p95 ${f1(run.small.p95)} ms, long tasks ${run.small.longTasks}`
      + ` | ${big}: ${short(run.big)}; ${detail(run.big)}; first layout after ${(run.big.readyMs / 1000).toFixed(1)} s`
      + ` (long tasks until then ${run.big.loadingLongTasks}, max ${Math.round(run.big.loadingLongTaskMax)} ms)`
      + ` | ${big}/blank: fps ×${f2(run.fpsRatio)}, p95 ×${f2(run.p95Ratio)}; 12 hosts/blank fps ×${f2(run.smallFpsRatio)}`);
    for (const key of ['small', 'big']) if (run[key].errors.length) console.log(`  page errors (${key}): ${run[key].errors.join(' | ')}`);
    if (o.profile) printProfile(big, run.big);
  }

  const col = (key, field) => runs.map((r) => r[key][field]);
  console.log(`\nmedian [min–max] of ${runs.length} runs, ${o.seconds} s each:`);
  for (const [key, label] of [['blank', 'blank page'], ['small', '12 hosts'], ['big', big]]) {
    console.log(`  ${label.padEnd(10)} fps ${spread(col(key, 'fps'))}, frame p50 ${spread(col(key, 'p50'))} p95 ${spread(col(key, 'p95'))}`
      + ` p99 ${spread(col(key, 'p99'))} max ${spread(col(key, 'max'))} ms, long tasks ${spread(col(key, 'longTasks'), 0)}`
      + ` (max ${spread(col(key, 'longTaskMax'), 0)} ms)`
      + (key === 'blank' ? '' : `, before it: load and first layout ${spread(col(key, 'readyMs').map((ms) => ms / 1000))} s,`
        + ` long tasks ${spread(col(key, 'loadingLongTasks'), 0)} (max ${spread(col(key, 'loadingLongTaskMax'), 0)} ms)`)
      + (key === 'blank' ? '' : `, handler ${spread(col(key, 'handlerMean'), 2)} ms/msg, diffs ${spread(col(key, 'diffs'), 0)}`));
  }
  console.log(`  ${big}/blank: fps ×${spread(runs.map((r) => r.fpsRatio), 2)}, frame p95 ×${spread(runs.map((r) => r.p95Ratio), 2)};`
    + ` 12 hosts/blank fps ×${spread(runs.map((r) => r.smallFpsRatio), 2)}`);
  const target = runs.map((r) => r.big.p95 <= 33.4 && r.big.longTaskMax <= 100);
  console.log(`  target (p95 frame ≤ 33 ms, no long task > 100 ms) met in ${target.filter(Boolean).length} of ${runs.length} runs`);
  if (o.json) writeFileSync(o.json, JSON.stringify({ options: o, runs }, null, 1));
}

main().catch((e) => { console.error(e); process.exit(1); });
