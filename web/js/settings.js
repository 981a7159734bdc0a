// Every threshold of the page in one place: what it keeps, when it changes
// how it draws, how often it renders and reconnects, and the colours the
// script itself picks. The page's colours are the CSS custom properties of
// visage.html's stylesheet (light and dark); CANVAS_COLORS and BUSY name the
// ones the canvas reads from there.

// ---------- What the page keeps and shows ----------

/** Finished jobs kept in the page (the server keeps more: the panel asks it). */
export const HISTORY_KEPT = 1000;
/** An offline host stays greyed this long, then leaves the graph and the table. */
export const OFFLINE_SHOWN_MS = 8000;
/** Rows in the job list. */
export const JOB_ROWS = 150;
/** Matching jobs the job list counts in its note, at most. */
export const JOBS_COUNTED = 5000;
/** The Success figure turns red below this. */
export const SUCCESS_WARN = 0.95;
/** "updated just now" below this, then "updated N s ago". */
export const JUST_NOW_MS = 1500;
/** The host panel: jobs listed per section, and finished jobs asked of the server. */
export const PANEL = { activeRows: 40, doneRows: 25, historyAsked: 50 };

// ---------- Rendering ----------

/**
 * Renders are batched: at most one every `minMs`, more apart when a render
 * is costly (`costShare` times its cost, so that rendering takes at most a
 * fifth of the time), but never more than `maxMs` apart.
 */
export const RENDER = { minMs: 200, maxMs: 2000, costShare: 5 };
/** Clocks on the page (the chip's age, running jobs' durations) tick this often. */
export const TICK_MS = 1000;
/**
 * Long tables hold only the rows in view, `margin` more on each side, when
 * they have more than `allBelow` rows. Row heights are the stylesheet's
 * (`#hosts tbody tr`, `#jobs tbody tr`): change both together.
 */
export const HOST_ROWS = { height: 29, allBelow: 80, margin: 8 };
export const JOB_LIST_ROWS = { height: 27, allBelow: 40, margin: 8 };

// ---------- The connection ----------

/**
 * Reconnecting: after `firstMs`, doubling up to `maxMs`, each wait shortened
 * by up to `jitter` of it (so that pages do not come back all at once); the
 * chip says "down" instead of "retry" after `downAfter` failed attempts.
 */
export const RECONNECT = { firstMs: 500, maxMs: 15000, jitter: 0.4, downAfter: 3 };

// ---------- The graph ----------

/**
 * How the graph changes with the size of the cluster. Above `bigAbove`
 * hosts: links do not pull (the layout stays put as jobs come and go) and a
 * settled layout is only nudged by newcomers; above `compactAbove` hosts,
 * names show on hover only and nodes keep less room around them; above
 * `calmLinksAbove` arrows, no dots flow along them; up to `labelsUpTo`
 * arrows, each says how many jobs it carries. Node sizes shrink above
 * `smallerAbove` and `smallestAbove` hosts.
 */
export const GRAPH = {
  bigAbove: 150, compactAbove: 60, calmLinksAbove: 150, labelsUpTo: 60,
  smallerAbove: 40, smallestAbove: 150, shortLinksAbove: 100,
  /** Zoom out and in this far at most. */
  zoom: [0.1, 6],
  /** Until the user zooms or pans, the view follows the layout this often. */
  fitEveryMs: 1500,
  /**
   * The text alternative (the canvas's fallback content) is rewritten this
   * often at most, and once per `describeHostsPerPeriod` hosts' worth of
   * periods above that many hosts (rewriting 500 costs a frame).
   */
  describeEveryMs: 1000, describeHostsPerPeriod: 100,
  /** Where hosts that left were, so they come back there. */
  placesKept: 4096,
  /** Node images and ring shapes kept for reuse, at most. */
  spritesKept: 4000, ringPathsKept: 5000,
};
/**
 * The first layout of many new hosts runs before they are drawn, so the
 * first picture is already laid out and centred: in slices of `sliceMs`
 * between which the page stays responsive (no long task), until the layout
 * has cooled to `untilAlpha`, or for `maxMs` at most; above `warmUpAbove`
 * hosts, after a small layout that gets the code compiled.
 */
export const FIRST_LAYOUT = { sliceMs: 12, untilAlpha: 0.05, maxMs: 4000, warmUpAbove: 100 };
/** Dots along the arrows, `gap` px apart, moving from submitter to server in `ms`. */
export const FLOW = { gap: 13, ms: 800 };

// ---------- Colours ----------

/** The stylesheet's colours the canvas draws with (`--name`). */
export const CANVAS_COLORS = ['card', 'fg', 'bg', 'muted', 'track', 'remote', 'local', 'accent', 'wait', 'offline'];
/** A node's fill by the share of its slots busy: the stylesheet's colours at these stops. */
export const BUSY = { stops: [0, 0.4, 0.75, 1], colors: ['node-idle', 'node-mid', 'node-busy', 'node-full'] };
/** The count inside a node: light ink on a dark fill (lightness below `darkBelow`), dark ink on a light one. */
export const INK = { light: '#fff', dark: '#1b2128', darkBelow: 0.5 };
/** The text of the badge of waiting jobs, on the `wait` colour. */
export const BADGE_INK = '#fff';
/** Arrows take their submitter's colour, by a hash of its name: d3's schemeTableau10. */
export const SUBMITTER_COLORS = ['#4e79a7', '#f28e2c', '#e15759', '#76b7b2', '#59a14f', '#edc949', '#af7aa1', '#ff9da7', '#9c755f', '#bab0ab'];

// ---------- The timeline ----------

/**
 * The timeline (timeline.js): `spanMs` in view at first, zoomed between
 * `minSpanMs` and `maxSpanMs`; a lane is at most `laneMax` px tall, and
 * shift+wheel makes lanes up to `maxLaneZoom` times the height at which all
 * fit; `gutter` px on the left for host names, `axis` px on top for the
 * time. The history is read `pageRows` jobs at a time (asked again
 * `retryMs` after it failed to answer), and the page keeps at most
 * `barsKept` bars. A click within `hitPx` of a bar opens it. The live
 * news and the moving time are drawn at most every `liveEveryMs` (time is
 * checked every `tickMs`); what the user does, at once.
 */
export const TIMELINE = {
  spanMs: 2 * 60_000, minSpanMs: 2000, maxSpanMs: 7 * 24 * 3600_000,
  laneMax: 14, maxLaneZoom: 64, gutter: 112, axis: 20, hitPx: 3,
  pageRows: 10_000, barsKept: 60_000, retryMs: 5000,
  wheelZoom: 0.0015, buttonZoom: 2, tickMs: 100, liveEveryMs: 500,
  colors: ['muted', 'border', 'accent', 'wait', 'bad', 'cut'],
};

/** The builds list: how often it is asked for, how many rows, where the notification's host is kept. */
export const BUILDS = { pollMs: 3000, rows: 50, notifyKey: 'icewatch.notifyBuildHost' };
