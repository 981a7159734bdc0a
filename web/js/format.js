// How numbers, durations, times and hosts read on the page.
/* global d3 */

import { jobsIn, jobsInOwn, jobsOut } from 'icewatch/model.js';

/** Made once: a d3 time format parses its pattern when made. */
const timeFormats = { hm: d3.timeFormat('%H:%M'), hms: d3.timeFormat('%H:%M:%S'), dateTime: d3.timeFormat('%Y-%m-%d %H:%M') };

export const fmt = {
  int: d3.format(','),
  pct: (x) => x == null ? '–' : (x * 100).toFixed(x >= 0.9995 || x === 0 ? 0 : 1) + ' %',
  rate: (x) => x == null ? '–' : x >= 100 ? d3.format(',.0f')(x) : d3.format('.1f')(x),
  dur(ms) {
    if (ms == null || !isFinite(ms)) return '';
    if (ms < 1000) return ms + ' ms';
    if (ms < 60000) return (ms / 1000).toFixed(ms < 10000 ? 1 : 0) + ' s';
    const m = Math.floor(ms / 60000);
    return m < 60 ? `${m} min ${Math.floor(ms / 1000) % 60} s` : `${Math.floor(m / 60)} h ${m % 60} min`;
  },
  bytes: (n) => n == null ? '–' : d3.format('.3~s')(n) + 'B',
  /** A time span in whole units, for "updated 12 s ago": it ticks once a second. */
  ago(ms) {
    const s = Math.floor(ms / 1000), m = Math.floor(s / 60), h = Math.floor(m / 60);
    return s < 60 ? s + ' s' : m < 60 ? m + ' min' : `${h} h ${m % 60} min`;
  },
  /** A moment as a person reads it: the time of day if it is today, the date too otherwise. */
  clock(ms) {
    const d = new Date(ms);
    return d.toDateString() === new Date().toDateString() ? timeFormats.hm(d) : timeFormats.dateTime(d);
  },
  dateTime: (ms) => timeFormats.dateTime(new Date(ms)),
  time: (ms) => timeFormats.hms(new Date(ms)),
};

/** Host names in natural order (build2 before build10); one collator, made once. */
export const byName = new Intl.Collator(undefined, { numeric: true });

/** A recording's file name without its folders, as the chip and header show it. */
export const recordingName = (replay) => replay.file.split(/[\\/]/).pop() || replay.file;

/** What a host's tooltip and panel say about it, as [label, text] rows; `d` its derived jobs. */
export function hostFacts(h, d) {
  const rows = [
    ['IP', h.ip || '–'], ['platform', h.platform || '–'],
    ['load', (h.load / 10).toFixed(0) + ' %' + (h.load_avg ? ` · avg ${h.load_avg.map((x) => x.toFixed(2)).join(' ')}` : '')],
    ['jobs', `${h.active} / ${h.max_jobs} slots` + (d && d.local ? ` (${d.local} local)` : '')],
    ['waiting', String(h.pending)],
    ['IN', `${fmt.int(jobsIn(h))} remote jobs began here: ${fmt.int(jobsIn(h) - jobsInOwn(h))} from other hosts, ${fmt.int(jobsInOwn(h))} its own, given back by the scheduler`],
    ['OUT', `${fmt.int(jobsOut(h))} of its remote jobs began on a server` + (jobsInOwn(h) ? `, ${fmt.int(jobsInOwn(h))} of them here` : '')],
    ['submitted', `${fmt.int(h.submitted)} remote · ${fmt.int(h.local_jobs)} local · ${fmt.int(h.failed)} failed`],
  ];
  if (h.no_remote) rows.push(['mode', 'no-remote: takes no jobs from others']);
  if (!h.online) rows.push(['state', 'offline']);
  return rows;
}
