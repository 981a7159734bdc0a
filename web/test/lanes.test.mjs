// web/js/lanes.js: which lane of its host a job's bar goes on. No browser.
//
//   node --test web/test/

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Lanes, barKey } from '../js/lanes.js';

const job = (id, start, end, fields = {}) => ({ id, start_ms: start, end_ms: end, state: end == null ? 'compiling' : 'finished', ...fields });

test('overlapping jobs of a host take lanes of their own; a lane is reused once free', () => {
  const lanes = new Lanes();
  assert.equal(lanes.put('a', job(1, 0, 100)).lane, 0);
  assert.equal(lanes.put('a', job(2, 50, 150)).lane, 1);
  assert.equal(lanes.put('a', job(3, 100, 200)).lane, 0, 'lane 0 is free from 100 on');
  assert.equal(lanes.put('b', job(4, 60, 70)).lane, 0, 'another host has lanes of its own');
  assert.equal(lanes.laneCount('a'), 2);
});

test('a running job holds its lane until it ends, and keeps it then', () => {
  const lanes = new Lanes();
  const running = lanes.put('a', job(1, 0, null));
  assert.equal(running.e, Infinity);
  assert.equal(lanes.put('a', job(2, 500, 600)).lane, 1, 'lane 0 is taken while job 1 runs');
  const ended = lanes.put('a', job(1, 0, 300));
  assert.equal(ended, running);
  assert.equal(ended.lane, 0);
  assert.equal(ended.e, 300);
  assert.equal(lanes.put('a', job(3, 400, 450)).lane, 0, 'free again after its end');
});

test('older jobs read back later fill the gaps without moving a bar', () => {
  const lanes = new Lanes();
  const newer = lanes.put('a', job(10, 1000, 1100));
  lanes.put('a', job(11, 1050, 1200));
  // The history's jobs, newest first, as its pages come.
  assert.equal(lanes.put('a', job(5, 900, 1000)).lane, 0);
  assert.equal(lanes.put('a', job(4, 950, 1060)).lane, 2, 'overlaps the first two lanes');
  assert.equal(lanes.put('a', job(3, 100, 200)).lane, 0);
  assert.equal(newer.lane, 0);
  assert.deepEqual([...lanes.inView('a', 0, 0, 2000)].map((b) => b.job.id), [3, 5, 10], 'each lane in order of time');
});

test('a job seen twice (live, then from the history) is one bar, with the wait the history knows', () => {
  const lanes = new Lanes();
  const live = lanes.put('a', job(7, 100, 200, { session: 3 }));
  const again = lanes.put('a', job(7, 100, 200, { session: 1, seq: 99 }), 40);
  assert.equal(again, live);
  assert.equal(lanes.bars.size, 1);
  assert.equal(live.submit, 40);
  assert.equal(barKey(live.job), '7@100');
});

test('inView, at and dropBefore find bars by time', () => {
  const lanes = new Lanes();
  for (let i = 0; i < 10; i++) lanes.put('a', job(i, i * 100, i * 100 + 50));
  assert.deepEqual([...lanes.inView('a', 0, 320, 560)].map((b) => b.job.id), [3, 4, 5]);
  assert.equal(lanes.at('a', 0, 425).job.id, 4);
  assert.equal(lanes.at('a', 0, 470), null, 'between bars');
  assert.equal(lanes.at('a', 0, 470, 25).job.id, 4, 'the nearest within the slack');
  assert.equal(lanes.at('b', 0, 425), null, 'no such host');
  const v = lanes.version;
  assert.equal(lanes.dropBefore(300), 3);
  assert.equal(lanes.bars.size, 7);
  assert.ok(lanes.version > v);
  assert.deepEqual([...lanes.inView('a', 0, 0, 400)].map((b) => b.job.id), [3]);
});

test('a job whose end comes before its start is drawn as an instant, not backwards', () => {
  const lanes = new Lanes();
  const bar = lanes.put('a', job(1, 100, 90));
  assert.equal(bar.e, 100);
});
