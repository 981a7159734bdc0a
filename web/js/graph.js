// The force graph: hosts and the jobs flowing between them, with its
// tooltip.
//
// One <canvas> instead of an SVG element per host: with hundreds of hosts
// the browser's style, layout and paint of thousands of SVG elements cost
// more than the frame allows (e2e/perf.mjs, docs/perf-history.md "Page"). The
// canvas is drawn at most once per animation frame and only when something
// moved or changed; hover, click and drag find the host under the pointer
// by distance. The canvas's fallback content lists the hosts and arrows as
// text, for screen readers and for the browser test.
/* global d3 */

import { BADGE_INK, BUSY, CANVAS_COLORS, FIRST_LAYOUT, FLOW, GRAPH, INK, SUBMITTER_COLORS } from 'icewatch/settings.js';
import { NO_JOBS } from 'icewatch/model.js';
import { fmt, hostFacts } from 'icewatch/format.js';
import { el, fitCanvas, kvList } from 'icewatch/dom.js';

let app; // { model, stats, scheduleRender, selectHost } (main.js)

/** The layout's state; also `visage.graph`, for the curious, the browser tests and e2e/perf.mjs (which waits for `settled`). */
export const graph = {
  canvas: null, ctx: null, sim: null, zoom: null, transform: d3.zoomIdentity,
  nodes: new Map(),   // host key → node datum (keeps x, y across updates and scheduler restarts)
  links: new Map(),   // "from id>to id" → link datum
  places: new Map(),  // host → where its node was when it left the graph
  warming: false,     // the first layout runs: nothing is drawn until it is done
  firstFrame: null,   // where the first drawn frame put the hosts, for the browser test
  width: 800, height: 500, ratio: 1, userZoomed: false, selected: null, settled: false,
  hover: null,        // the node or link datum under the pointer
  compact: false, calm: false, linkLabels: false, drawQueued: false, colors: {},
  describedAt: 0, describedSelected: null, // when the text alternative was written
};

export function initGraph(context) {
  app = context;
  const canvas = el('graph');
  graph.canvas = canvas;
  graph.ctx = canvas.getContext('2d');
  const view = d3.select(canvas);
  graph.zoom = d3.zoom().scaleExtent(GRAPH.zoom).on('zoom', (event) => {
    graph.transform = event.transform;
    if (event.sourceEvent) graph.userZoomed = true;
    requestDraw();
  });
  // Dragging a host moves it; dragging anything else pans (the drag takes
  // the pointer first and lets it go to the zoom where there is no host).
  const drag = d3.drag().container(canvas)
    .subject((event) => {
      const n = nodeAt(event.x, event.y);
      return n && { node: n, x: graph.transform.applyX(n.x), y: graph.transform.applyY(n.y) };
    })
    .on('start', (event) => {
      if (!event.active && !graph.warming) graph.sim.alphaTarget(0.2).restart();
      const n = event.subject.node;
      n.fx = n.x; n.fy = n.y;
      hideTooltip();
    })
    .on('drag', (event) => {
      const n = event.subject.node;
      n.fx = graph.transform.invertX(event.x);
      n.fy = graph.transform.invertY(event.y);
    })
    .on('end', (event) => {
      if (!event.active) graph.sim.alphaTarget(0);
      const n = event.subject.node;
      n.fx = null; n.fy = null;
    });
  view.call(drag).call(graph.zoom).on('dblclick.zoom', null);
  canvas.addEventListener('pointermove', (event) => { if (!event.buttons) hoverAt(event); });
  canvas.addEventListener('pointerleave', () => setHover(null));
  canvas.addEventListener('click', (event) => {
    const [x, y] = d3.pointer(event, canvas);
    const n = nodeAt(x, y);
    if (n) app.selectHost(n.key);
    else if (!linkAt(x, y)) app.selectHost(null);
  });

  graph.sim = d3.forceSimulation()
    .velocityDecay(0.45)
    .force('charge', d3.forceManyBody())
    .force('link', d3.forceLink().id((d) => d.id).strength(0.06))
    // Room for the name under each node, unless names are hidden.
    .force('collide', d3.forceCollide().radius((d) => d.r + (graph.nodes.size > GRAPH.compactAbove ? 7 : 16)).iterations(2))
    .force('x', d3.forceX(0).strength(0.07))
    .force('y', d3.forceY(0).strength(0.07))
    .on('tick', requestDraw)
    .on('end', () => { graph.settled = graph.nodes.size > 0; if (!graph.userZoomed) fitView(true); });

  const resize = () => {
    fitCanvas(canvas, el('graph-wrap'), graph, 200, 200);
    if (!graph.userZoomed) fitView(false);
    requestDraw();
  };
  new ResizeObserver(resize).observe(el('graph-wrap'));
  resize();
  el('fit').addEventListener('click', () => { graph.userZoomed = false; fitView(true); });
  // Until the user zooms or pans, keep the whole cluster in view as it moves.
  setInterval(() => { if (!graph.userZoomed && !graph.warming && graph.sim.alpha() > graph.sim.alphaMin()) fitView(true); }, GRAPH.fitEveryMs);
}

function nodeRadius(h, count) {
  const scale = count > GRAPH.smallestAbove ? 0.55 : count > GRAPH.smallerAbove ? 0.75 : 1;
  return (7 + 4.2 * Math.sqrt(Math.max(1, h.max_jobs))) * scale;
}

const busyColor = d3.scaleLinear().domain(BUSY.stops).clamp(true);
/** The page's colors (light or dark) and font, as the canvas needs them. */
export function refreshColors() {
  const css = getComputedStyle(document.documentElement);
  const v = (name) => css.getPropertyValue('--' + name).trim();
  busyColor.range(BUSY.colors.map(v));
  for (const name of CANVAS_COLORS) graph.colors[name] = v(name);
  graph.colors.font = getComputedStyle(document.body).fontFamily;
  graph.colors.ink = new Map();
  forgetSprites();
  requestDraw();
}

/** A stable color per submitting host (by name), for its arrows. */
export function submitterColor(key) {
  let hash = 0;
  for (let i = 0; i < key.length; i++) hash = (hash * 31 + key.charCodeAt(i)) | 0;
  return SUBMITTER_COLORS[Math.abs(hash) % SUBMITTER_COLORS.length];
}

/**
 * Online hosts, and those that left a moment ago unless they are back under
 * a new id. Without a scheduler (gone, or a replay that ended) every host is
 * offline: the last picture stays, greyed.
 */
export function updateGraph(derived) {
  const { model } = app;
  const hosts = model.visibleHosts();
  let nodesChanged = false;
  let linksChanged = false;
  let added = 0;
  const seen = new Set();
  const { keyOf } = model.hostIndex();
  for (const h of hosts) {
    const key = keyOf.get(h.id);
    seen.add(key);
    let n = graph.nodes.get(key);
    if (!n) {
      n = { key, id: h.id };
      const place = graph.places.get(key);
      if (place) { Object.assign(n, place); graph.places.delete(key); } else { placeNear(n); added += 1; }
      graph.nodes.set(key, n);
      nodesChanged = true;
    }
    // A host that logged in again keeps its node: only its id is new.
    const d = derived.get(h.id) || NO_JOBS;
    Object.assign(n, { id: h.id, host: h, r: nodeRadius(h, hosts.length), served: d.served, local: d.local });
  }
  for (const [key, n] of graph.nodes) {
    if (seen.has(key)) continue;
    graph.nodes.delete(key);
    nodesChanged = true;
    graph.places.set(key, { x: n.x, y: n.y });
    if (graph.places.size > GRAPH.placesKept) graph.places.delete(graph.places.keys().next().value);
  }
  // Offline hosts that are still shown will vanish without a new message
  // (unless the scheduler is gone: then they stay).
  if (model.scheduler?.online && hosts.some((h) => !h.online)) setTimeout(app.scheduleRender, 1000);

  const linkSeen = new Set();
  let maxActive = 1;
  for (const [key, l] of model.links) {
    if (l.from === l.to) continue;
    const source = graph.nodes.get(keyOf.get(l.from)), target = graph.nodes.get(keyOf.get(l.to));
    if (!source || !target) continue;
    linkSeen.add(key);
    maxActive = Math.max(maxActive, l.active);
    // Keyed by the ids of this session: an arrow keeps nothing worth keeping
    // across a restart, its hosts' nodes do.
    let link = graph.links.get(key);
    if (!link || link.source !== source || link.target !== target) {
      link = { key, source, target, color: submitterColor(source.key) };
      graph.links.set(key, link);
      linksChanged = true;
    }
    link.active = l.active;
  }
  for (const key of graph.links.keys()) if (!linkSeen.has(key)) { graph.links.delete(key); linksChanged = true; }
  const width = d3.scaleSqrt().domain([1, Math.max(4, maxActive)]).range([1.6, 6.5]);

  const nodes = [...graph.nodes.values()];
  const links = [...graph.links.values()];
  for (const l of links) l.w = width(l.active);
  // Big clusters: links do not pull (the layout stays put as jobs come and
  // go), names show on hover, and only a few hundred arrows animate.
  const big = nodes.length > GRAPH.bigAbove;
  graph.compact = nodes.length > GRAPH.compactAbove;
  graph.calm = links.length > GRAPH.calmLinksAbove;
  // How many jobs: written on arrows that carry more than one.
  graph.linkLabels = links.length <= GRAPH.labelsUpTo;
  if (graph.hover && (graph.hover.host ? graph.nodes : graph.links).get(graph.hover.key) !== graph.hover) setHover(null);
  el('empty').hidden = nodes.length > 0 && !graph.warming;
  if (!nodes.length && model.seq !== null) el('empty').textContent = model.scheduler && !model.scheduler.online ? 'The scheduler is not connected' : 'No hosts yet';

  if (nodesChanged || (linksChanged && !big)) {
    const n = Math.max(1, nodes.length);
    graph.sim.force('charge').strength(-Math.max(30, 900 / Math.sqrt(n))).distanceMax(big ? 250 : 600);
    graph.sim.force('link').distance((l) => l.source.r + l.target.r + (n > GRAPH.shortLinksAbove ? 30 : 70));
    graph.sim.nodes(nodes);
    graph.sim.force('link').links(big ? [] : links);
    graph.sim.alphaDecay(big ? 0.045 : 0.0228);
    if (added > 0 && added >= nodes.length / 2 && !graph.warming) {
      // Mostly new hosts (the first snapshot): lay them out before showing
      // them, instead of animating a big bang from a corner.
      firstLayout();
    } else if (!graph.warming) {
      // A big cluster settles once; later arrivals only nudge it, and
      // hosts that come back to their old place or leave not at all (every
      // tick redraws hundreds of hosts).
      const heat = big && graph.settled ? (added > 0 ? 0.08 : 0) : nodesChanged ? 0.4 : 0.2;
      if (heat > 0) graph.sim.alpha(Math.max(graph.sim.alpha(), heat)).restart();
    }
  }
  // The text alternative changes as often as the numbers do, but nobody
  // reads hundreds of hosts five times a second: refresh it every second,
  // and at once when hosts come or go or one is selected; not while the
  // first layout runs (the first render of a big cluster is long enough).
  const now = performance.now();
  if (graph.warming) graph.describedAt = 0;
  else if (nodesChanged || now - graph.describedAt >= GRAPH.describeEveryMs * Math.max(1, nodes.length / GRAPH.describeHostsPerPeriod)
    || graph.describedSelected !== graph.selected) {
    graph.describedAt = now;
    graph.describedSelected = graph.selected;
    describeGraph(nodes, links);
  }
  requestDraw();
}

/**
 * Lays the graph out without drawing it, a slice at a time (FIRST_LAYOUT),
 * then shows it fitted to the card and lets the simulation finish settling
 * in view. Hosts and arrows that arrive meanwhile join the same layout.
 */
function firstLayout() {
  const sim = graph.sim;
  const started = performance.now();
  graph.warming = true;
  sim.stop().alpha(1);
  el('empty').textContent = `Laying out ${fmt.int(graph.nodes.size)} hosts…`;
  el('empty').hidden = false;
  const slice = () => {
    const t0 = performance.now();
    while (sim.alpha() > FIRST_LAYOUT.untilAlpha && performance.now() - t0 < FIRST_LAYOUT.sliceMs) sim.tick();
    if (sim.alpha() > FIRST_LAYOUT.untilAlpha && performance.now() - started < FIRST_LAYOUT.maxMs) {
      setTimeout(slice, 0);
      return;
    }
    graph.warming = false;
    el('empty').hidden = graph.nodes.size > 0;
    if (!graph.userZoomed) fitView(false);
    sim.restart();
    requestDraw();
    app.scheduleRender(); // for the text alternative
  };
  // Not within the render that found the new hosts: that is a long task already.
  setTimeout(() => {
    if (graph.nodes.size > FIRST_LAYOUT.warmUpAbove) warmUpForces();
    setTimeout(slice, 0);
  }, 0);
}

/**
 * V8 compiles d3-force's code as it runs it, so the first tick of a big
 * layout, cold, costs ten times the next ones: more than a long task's
 * worth at 500 hosts. A small throwaway layout, in a task of its own,
 * gets that code compiled first.
 */
function warmUpForces() {
  const few = [...graph.nodes.values()].slice(0, 60).map((n) => ({ x: n.x, y: n.y, r: n.r }));
  const sim = d3.forceSimulation(few).stop()
    .force('charge', d3.forceManyBody().distanceMax(250))
    .force('collide', d3.forceCollide((d) => d.r + 7).iterations(2))
    .force('x', d3.forceX(0)).force('y', d3.forceY(0));
  for (let i = 0; i < 5; i++) sim.tick();
}

/**
 * The graph as text, in the canvas's fallback content: a list item per host
 * and per arrow, changed only where the text or state changed.
 */
function describeGraph(nodes, links) {
  d3.select('#graph-hosts').selectAll('li').data(nodes, (d) => d.key)
    .join((enter) => enter.append('li').attr('data-testid', 'host-node'))
    .each(function (d) {
      const h = d.host, item = written(this);
      const state = [h.online ? null : 'offline', h.no_remote ? 'no-remote' : null, graph.selected === d.key ? 'selected' : null].filter(Boolean).join(' ');
      put(item, 'class', this, 'class', state || null);
      put(item, 'id', this, 'data-id', String(h.id));
      put(item, 'key', this, 'data-key', d.key);
      put(item, 'text', this, 'text', `${d.key}: ${h.active} of ${h.max_jobs} slots busy`
        + (h.pending ? `, ${h.pending} jobs waiting` : '') + (h.no_remote ? ', no-remote' : '') + (h.online ? '' : ', offline'));
    });
  d3.select('#graph-links').selectAll('li').data(links, (l) => l.key)
    .join((enter) => enter.append('li').attr('data-testid', 'link'))
    .each(function (l) {
      const item = written(this);
      put(item, 'from', this, 'data-from', String(l.source.id));
      put(item, 'to', this, 'data-to', String(l.target.id));
      put(item, 'text', this, 'text', `${l.source.key} → ${l.target.key}: ${l.active} job${l.active > 1 ? 's' : ''} compiling`);
    });
}

function placeNear(node) {
  const { model } = app;
  const partner = [...model.links.values()].find((l) => l.from === node.id || l.to === node.id);
  const other = partner && graph.nodes.get(model.hostIndex().keyOf.get(partner.from === node.id ? partner.to : partner.from));
  const angle = Math.random() * 2 * Math.PI;
  const radius = other ? 40 : 60 + Math.sqrt(graph.nodes.size + 1) * 25;
  node.x = (other ? other.x : 0) + Math.cos(angle) * radius;
  node.y = (other ? other.y : 0) + Math.sin(angle) * radius;
}

/** What `put` wrote into an element, kept on the element (a host or link may come back as a new datum). */
const written = (element) => element.described ??= { drawn: {} };

/** Sets an attribute or text only when it changes: most of a big cluster changes a little. */
function put(parts, name, element, attr, value) {
  if (parts.drawn[name] === value) return;
  parts.drawn[name] = value;
  if (attr === 'text') element.textContent = value;
  else if (value === null) element.removeAttribute(attr);
  else element.setAttribute(attr, value);
}

// ---------- Drawing the graph ----------

const arc = d3.arc();
/** Ring paths by shape: hosts with the same slots and jobs share them. */
const ringPaths = new Map();
/** The ring of slots around a node, px wide. */
const RING = 4.5;
const reducedMotion = matchMedia('(prefers-reduced-motion: reduce)');

/** The ring from slot `from` to slot `to` of `segments`, around radius `r`, centred on 0,0. */
function ringPath(r, segments, from, to) {
  if (to <= from) return null;
  const key = `${r}/${segments}/${from}/${to}`;
  let path = ringPaths.get(key);
  if (path === undefined) {
    const step = 2 * Math.PI / segments;
    const pad = segments <= 32 ? Math.min(0.08, 0.9 / segments) : 0;
    const piece = (a0, a1) => arc({ innerRadius: r + 0.5, outerRadius: r + RING, startAngle: a0, endAngle: a1 });
    path = new Path2D(pad ? d3.range(from, to).map((i) => piece(i * step + pad / 2, (i + 1) * step - pad / 2)).join('') : piece(from * step, to * step));
    if (ringPaths.size > GRAPH.ringPathsKept) ringPaths.clear();
    ringPaths.set(key, path);
  }
  return path;
}

/** Draws in the next animation frame, once however many changes come before it. */
function requestDraw() {
  if (graph.drawQueued || !graph.ctx) return;
  graph.drawQueued = true;
  requestAnimationFrame(draw);
}

function draw(now) {
  graph.drawQueued = false;
  const t0 = performance.now();
  const { ctx, transform: t, ratio } = graph;
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, graph.width, graph.height);
  if (graph.warming) return;
  ctx.setTransform(ratio * t.k, 0, 0, ratio * t.k, ratio * t.x, ratio * t.y);
  const stale = document.body.classList.contains('stale');
  const flowing = !graph.calm && graph.links.size > 0 && !reducedMotion.matches;
  for (const l of graph.links.values()) drawLink(ctx, l, flowing ? (stale ? graph.flowAt ?? 0 : now) : null);
  if (flowing && !stale) graph.flowAt = now;
  ctx.lineCap = 'butt';
  const scale = spriteScale();
  for (const n of graph.nodes.values()) drawNode(ctx, n, scale);
  // Names of hovered and selected hosts go on top of everything.
  if (graph.compact) {
    for (const n of [graph.hover, graph.nodes.get(graph.selected)]) if (n && n.host) drawLabel(ctx, n);
  }
  if (!graph.firstFrame && graph.nodes.size) rememberFirstFrame();
  app.stats.draws += 1;
  app.stats.drawMs += performance.now() - t0;
  // Moving dots need every frame; nothing else does.
  if (flowing && !stale) requestDraw();
}

/**
 * Where the first frame drew each host, in CSS pixels of the canvas, and how
 * warm the layout still was: the browser test checks it is centred and laid out.
 */
function rememberFirstFrame() {
  const t = graph.transform;
  graph.firstFrame = {
    width: graph.width, height: graph.height, alpha: graph.sim.alpha(),
    nodes: [...graph.nodes.values()].map((n) => ({ key: n.key, id: n.id, x: t.applyX(n.x), y: t.applyY(n.y), r: t.k * (n.r + RING) })),
  };
}

/** A gently curved arrow from the submitter's edge to the server's ring. */
function linkCurve(l) {
  const s = l.source, t = l.target;
  const dx = t.x - s.x, dy = t.y - s.y;
  const dist = Math.hypot(dx, dy) || 1;
  const ux = dx / dist, uy = dy / dist;
  const sx = s.x + ux * (s.r + 5), sy = s.y + uy * (s.r + 5);
  const end = t.r + 8 + Math.min(6, l.active);
  const tx = t.x - ux * end, ty = t.y - uy * end;
  const bend = Math.min(30, dist * 0.12);
  return { sx, sy, mx: (sx + tx) / 2 - uy * bend, my: (sy + ty) / 2 + ux * bend, tx, ty };
}

function drawLink(ctx, l, flowTime) {
  const c = linkCurve(l), w = l.w;
  ctx.strokeStyle = ctx.fillStyle = l.color;
  ctx.globalAlpha = graph.hover === l ? 0.8 : graph.calm ? 0.35 : 0.45;
  ctx.lineCap = 'round';
  ctx.lineWidth = w;
  ctx.beginPath();
  ctx.moveTo(c.sx, c.sy);
  ctx.quadraticCurveTo(c.mx, c.my, c.tx, c.ty);
  ctx.stroke();
  // The arrowhead, along the curve's direction at its end.
  const ex = c.tx - c.mx, ey = c.ty - c.my, en = Math.hypot(ex, ey) || 1;
  const ux = ex / en, uy = ey / en, len = 2.8 * w;
  const tipX = c.tx + ux * 0.3 * len, tipY = c.ty + uy * 0.3 * len;
  const baseX = tipX - ux * len, baseY = tipY - uy * len;
  ctx.beginPath();
  ctx.moveTo(tipX, tipY);
  ctx.lineTo(baseX - uy * len / 2, baseY + ux * len / 2);
  ctx.lineTo(baseX + uy * len / 2, baseY - ux * len / 2);
  ctx.closePath();
  ctx.fill();
  if (flowTime !== null) {
    ctx.globalAlpha = 0.95;
    ctx.lineWidth = Math.max(2.5, w * 0.8);
    ctx.setLineDash([0, FLOW.gap]);
    ctx.lineDashOffset = -FLOW.gap * ((flowTime % FLOW.ms) / FLOW.ms);
    ctx.beginPath();
    ctx.moveTo(c.sx, c.sy);
    ctx.quadraticCurveTo(c.mx, c.my, c.tx, c.ty);
    ctx.stroke();
    ctx.setLineDash([]);
  }
  ctx.globalAlpha = 1;
  if (graph.linkLabels && l.active > 1) {
    // The curve's middle point.
    const x = (c.sx + c.tx) / 4 + c.mx / 2, y = (c.sy + c.ty) / 4 + c.my / 2;
    outlinedText(ctx, String(l.active), x, y, `700 10.5px ${graph.colors.font}`, graph.colors.fg, 'middle');
  }
}

/** Text with a halo of the background around it, like the SVG `paint-order: stroke`. */
function outlinedText(ctx, text, x, y, font, fill, baseline) {
  ctx.font = font;
  ctx.textAlign = 'center';
  ctx.textBaseline = baseline;
  ctx.lineJoin = 'round';
  ctx.lineWidth = 3;
  ctx.strokeStyle = graph.colors.bg;
  ctx.strokeText(text, x, y);
  ctx.fillStyle = fill;
  ctx.fillText(text, x, y);
}

/** Dark or light ink for the count inside a node of color `fill`. */
function inkOn(fill) {
  let ink = graph.colors.ink.get(fill);
  if (!ink) graph.colors.ink.set(fill, ink = d3.hsl(fill).l < INK.darkBelow ? INK.light : INK.dark);
  return ink;
}

/**
 * Node images by look and scale: a bitmap costs the canvas one copy, where
 * the rings' arcs cost it dozens of shapes per host (docs/perf-history.md
 * "Page").
 */
const sprites = new Map();

/** The scale to draw node images at: the view's, rounded up to a step of √2. */
function spriteScale() {
  return 2 ** (Math.ceil(Math.log2(graph.transform.k * graph.ratio) * 2) / 2);
}

function forgetSprites() {
  for (const s of sprites.values()) s.image.close();
  sprites.clear();
}

/** The image of `d`'s ring and body (with the count inside), made once per look. */
function nodeSprite(d, scale) {
  const h = d.host;
  const fill = h.online ? busyColor(h.active / Math.max(1, h.max_jobs)) : graph.colors.offline;
  const local = Math.min(d.local, h.active);
  const key = `${scale}|${d.r}|${h.max_jobs}|${h.active}|${local}|${h.online}|${h.no_remote}|${fill}`;
  let sprite = sprites.get(key);
  if (!sprite) {
    const half = d.r + RING + 1;
    const size = Math.ceil(2 * half * scale);
    const canvas = new OffscreenCanvas(size, size);
    const ctx = canvas.getContext('2d');
    ctx.setTransform(scale, 0, 0, scale, size / 2, size / 2);
    drawNodeShape(ctx, d, fill, local);
    if (sprites.size > GRAPH.spritesKept) forgetSprites();
    sprite = { image: canvas.transferToImageBitmap(), half: size / 2 / scale };
    sprites.set(key, sprite);
  }
  return sprite;
}

/** A node's ring of slots and its body filled by how busy it is, around 0,0. */
function drawNodeShape(ctx, d, fill, local) {
  const h = d.host, c = graph.colors;
  // The ring: one segment per slot (one arc per kind for many slots): jobs
  // remote (for others, or its own given back), then own local jobs, then free slots.
  const segments = Math.max(1, h.max_jobs, h.active);
  const served = h.active - local;
  const ring = (from, to, color) => { const p = ringPath(d.r, segments, from, to); if (p) { ctx.fillStyle = color; ctx.fill(p); } };
  if (h.online) {
    ring(0, served, c.remote);
    ring(served, served + local, c.local);
  }
  ring(h.online ? served + local : 0, segments, c.track);
  ctx.beginPath();
  ctx.arc(0, 0, d.r, 0, 2 * Math.PI);
  ctx.fillStyle = fill;
  ctx.fill();
  if (h.no_remote) { ctx.strokeStyle = c.muted; ctx.lineWidth = 1.6; ctx.setLineDash([3, 2.5]); } else { ctx.strokeStyle = c.card; ctx.lineWidth = 1.5; }
  ctx.stroke();
  ctx.setLineDash([]);
  if (d.r >= 12) {
    ctx.font = `650 10.5px ${c.font}`;
    ctx.textAlign = 'center';
    ctx.textBaseline = 'middle';
    ctx.fillStyle = inkOn(fill);
    ctx.fillText(`${h.active}/${h.max_jobs}`, 0, 0);
  }
}

/** One node: halo when hovered or selected, its image, name, waiting jobs. */
function drawNode(ctx, d, scale) {
  const h = d.host, c = graph.colors;
  ctx.globalAlpha = h.online ? 1 : 0.45;
  if (graph.selected === d.key || graph.hover === d) {
    ctx.beginPath();
    ctx.arc(d.x, d.y, d.r + RING + 4, 0, 2 * Math.PI);
    ctx.strokeStyle = c.accent;
    ctx.lineWidth = 2.5;
    ctx.stroke();
  }
  const sprite = nodeSprite(d, scale);
  ctx.drawImage(sprite.image, d.x - sprite.half, d.y - sprite.half, 2 * sprite.half, 2 * sprite.half);
  if (!graph.compact) drawLabel(ctx, d);
  if (h.pending) {
    const text = '+' + h.pending;
    const w = 8 + 6 * text.length;
    const bx = d.x + d.r * 0.7, by = d.y - d.r - RING - 6;
    ctx.fillStyle = c.wait;
    ctx.beginPath();
    ctx.roundRect(bx - w / 2, by, w, 12, 6);
    ctx.fill();
    ctx.font = `700 10px ${c.font}`;
    ctx.textAlign = 'center';
    ctx.textBaseline = 'alphabetic';
    ctx.fillStyle = BADGE_INK;
    ctx.fillText(text, bx, by + 9);
  }
  ctx.globalAlpha = 1;
}

/** A host's name under its node. */
function drawLabel(ctx, d) {
  const h = d.host;
  ctx.globalAlpha = h.online ? 1 : 0.45;
  outlinedText(ctx, d.key, d.x, d.y + d.r + RING + 13, `${h.no_remote ? 'italic ' : ''}500 11.5px ${graph.colors.font}`, graph.colors.fg, 'alphabetic');
  ctx.globalAlpha = 1;
}

// ---------- Pointing at the graph ----------

/** The host under the canvas point x, y (CSS pixels), or null. */
function nodeAt(x, y) {
  if (graph.warming) return null;
  const gx = graph.transform.invertX(x), gy = graph.transform.invertY(y);
  const slack = 3 / graph.transform.k;
  let best = null, bestD = Infinity;
  // A few hundred hosts: a straight scan costs microseconds.
  for (const n of graph.nodes.values()) {
    const d = Math.hypot(n.x - gx, n.y - gy);
    if (d <= n.r + RING + slack && d < bestD) { best = n; bestD = d; }
  }
  return best;
}

/** The arrow under the canvas point x, y, or null. */
function linkAt(x, y) {
  const gx = graph.transform.invertX(x), gy = graph.transform.invertY(y);
  let best = null, bestD = Infinity;
  for (const l of graph.links.values()) {
    const c = linkCurve(l);
    const reach = l.w / 2 + 4 / graph.transform.k;
    for (let i = 0; i <= 16; i++) {
      const t = i / 16, u = 1 - t;
      const px = u * u * c.sx + 2 * u * t * c.mx + t * t * c.tx;
      const py = u * u * c.sy + 2 * u * t * c.my + t * t * c.ty;
      const d = Math.hypot(px - gx, py - gy);
      if (d <= reach && d < bestD) { best = l; bestD = d; }
    }
  }
  return best;
}

function hoverAt(event) {
  const [x, y] = d3.pointer(event, graph.canvas);
  const n = nodeAt(x, y);
  const target = n || linkAt(x, y);
  setHover(target);
  if (n) showTooltip(event, n);
  else if (target) showLinkTooltip(event, target);
}

function setHover(target) {
  if (!target) hideTooltip();
  if (graph.hover === target) return;
  graph.hover = target;
  graph.canvas.style.cursor = target && target.host ? 'pointer' : '';
  requestDraw();
}

function fitView(animate) {
  const nodes = [...graph.nodes.values()];
  if (!nodes.length) {
    // New hosts are placed around the layout's origin: keep it in the middle.
    d3.select(graph.canvas).call(graph.zoom.transform, d3.zoomIdentity.translate(graph.width / 2, graph.height / 2));
    return;
  }
  const [x0, x1] = d3.extent(nodes, (d) => d.x);
  const [y0, y1] = d3.extent(nodes, (d) => d.y);
  const pad = 50;
  const k = Math.min(1.3, 0.95 / Math.max((x1 - x0 + 2 * pad) / graph.width, (y1 - y0 + 2 * pad) / graph.height));
  const transform = d3.zoomIdentity.translate(graph.width / 2, graph.height / 2).scale(k).translate(-(x0 + x1) / 2, -(y0 + y1) / 2);
  const now = d3.zoomTransform(graph.canvas);
  const moved = Math.abs(Math.log(now.k / k)) > 0.04 || Math.hypot(now.x - transform.x, now.y - transform.y) > 12;
  if (!moved) return;
  const view = d3.select(graph.canvas);
  (animate ? view.transition().duration(700) : view).call(graph.zoom.transform, transform);
}

// ---------- The tooltip ----------

function showTooltip(event, d) {
  const h = d.host;
  placeTooltip(event, Object.assign(document.createElement('h3'), { textContent: h.name || '#' + h.id }), kvList(hostFacts(h, d)));
}

function showLinkTooltip(event, l) {
  const from = l.source.host, to = l.target.host;
  const files = [...app.model.jobs.values()].filter((j) => j.state === 'compiling' && j.client === from.id && j.server === to.id).map((j) => j.file);
  placeTooltip(event, Object.assign(document.createElement('h3'), { textContent: `${from.name} → ${to.name}` }),
    kvList([['compiling', `${l.active} job${l.active > 1 ? 's' : ''}`], ...files.slice(0, 6).map((f, i) => [i ? '' : 'files', f])]));
}

function placeTooltip(event, ...content) {
  const tip = el('tooltip');
  tip.replaceChildren(...content);
  tip.hidden = false;
  const box = el('graph-wrap').getBoundingClientRect();
  const x = event.clientX - box.left, y = event.clientY - box.top;
  const w = tip.offsetWidth, hgt = tip.offsetHeight;
  tip.style.left = Math.max(4, Math.min(box.width - w - 4, x + 14)) + 'px';
  tip.style.top = (y + 14 + hgt > box.height ? y - hgt - 10 : y + 14) + 'px';
}

function hideTooltip() { el('tooltip').hidden = true; }
