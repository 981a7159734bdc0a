// Where each job goes on the timeline: a lane per compile slot of each host,
// as in icemon's Gantt view. The messages do not say which slot a job took,
// so a job goes to the first lane of its host that is free for its whole
// run, and keeps that lane for good (a bar never jumps as others come and
// go). Jobs may come in any order: live ones as they begin, older ones as
// the history is read back page by page. Pure: no DOM, no d3, so that
// `node --test` tries it (web/test/lanes.test.mjs).

/**
 * A job's identity on the timeline, for live jobs and the history's alike
 * (the history numbers scheduler sessions its own way): its id and when it
 * began compiling.
 */
export const barKey = (j) => j.id + '@' + j.start_ms;

/** A job's end on the timeline: still running (no end yet) runs on for ever. */
const endOf = (j) => j.end_ms == null ? Infinity : Math.max(j.start_ms, j.end_ms);

/** The first index of `items` (sorted by `s`) whose `s` is at least `t`. */
function firstFrom(items, t) {
  let lo = 0, hi = items.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (items[mid].s < t) lo = mid + 1; else hi = mid;
  }
  return lo;
}

/** The first index of `items` whose end is after `t` (lanes do not overlap, so ends are sorted as starts are). */
export function firstEndingAfter(items, t) {
  let lo = 0, hi = items.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (items[mid].e <= t) lo = mid + 1; else hi = mid;
  }
  return lo;
}

export class Lanes {
  constructor() {
    /** host key → its lanes, each an array of bars `{ s, e, job, host, lane }` sorted by start. */
    this.hosts = new Map();
    /** barKey → bar. */
    this.bars = new Map();
    /** Counts every change, so that views can tell they have to redraw. */
    this.version = 0;
  }

  /**
   * Puts `job` (a JOB of docs/json.md that began: it has `start_ms`) on a
   * lane of `host`, or updates the bar it already has (a job that ended, a
   * wait learnt later). `submitMs`, when known, is when it asked for a
   * server. Answers the bar.
   */
  put(host, job, submitMs = null) {
    const key = barKey(job);
    const bar = this.bars.get(key);
    if (bar) {
      const e = endOf(job);
      // The server's word on a job is final; an update only adds to it.
      if (bar.job !== job && (bar.e !== e || bar.job.state !== job.state)) {
        if (bar.e === Infinity || e !== Infinity) { bar.e = e; bar.job = job; this.version++; }
      }
      if (submitMs != null && bar.submit == null) { bar.submit = submitMs; this.version++; }
      return bar;
    }
    const s = job.start_ms, e = endOf(job);
    let lanes = this.hosts.get(host);
    if (!lanes) this.hosts.set(host, lanes = []);
    let lane = lanes.findIndex((items) => fits(items, s, e));
    if (lane < 0) { lane = lanes.length; lanes.push([]); }
    const items = lanes[lane];
    const added = { s, e, job, host, lane, submit: submitMs ?? job.submit_ms ?? null };
    items.splice(firstFrom(items, s), 0, added);
    this.bars.set(key, added);
    this.version++;
    return added;
  }

  /**
   * Forgets the bars that ended before `t`, to bound what the page holds.
   * A host's lanes stay (empty lanes are cheap and keep the others in place).
   */
  dropBefore(t) {
    let dropped = 0;
    for (const lanes of this.hosts.values()) {
      for (const items of lanes) {
        const n = firstEndingAfter(items, t);
        if (!n) continue;
        for (const bar of items.splice(0, n)) this.bars.delete(barKey(bar.job));
        dropped += n;
      }
    }
    if (dropped) this.version++;
    return dropped;
  }

  /** How many lanes `host` has so far. */
  laneCount(host) {
    return this.hosts.get(host)?.length ?? 0;
  }

  /** The bars of `host`'s lane `lane` that overlap the time `[t0, t1)`, oldest first. */
  *inView(host, lane, t0, t1) {
    const items = this.hosts.get(host)?.[lane];
    if (!items) return;
    for (let i = firstEndingAfter(items, t0); i < items.length && items[i].s < t1; i++) yield items[i];
  }

  /** The bar of `host`'s lane `lane` at time `t`, the nearest one within `slack` ms, or null. */
  at(host, lane, t, slack = 0) {
    const items = this.hosts.get(host)?.[lane];
    if (!items) return null;
    let best = null, bestGap = Infinity;
    for (let i = Math.max(0, firstEndingAfter(items, t - slack)); i < items.length && items[i].s <= t + slack; i++) {
      const bar = items[i];
      const gap = t < bar.s ? bar.s - t : t > bar.e ? t - bar.e : 0;
      if (gap < bestGap) { best = bar; bestGap = gap; }
    }
    return best;
  }
}

/** Whether a lane's `items` leave `[s, e)` free. */
function fits(items, s, e) {
  const i = firstFrom(items, s);
  if (i > 0 && items[i - 1].e > s) return false;
  return i === items.length || items[i].s >= e;
}
