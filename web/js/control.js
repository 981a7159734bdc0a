// The scheduler's text port as the server reads it (docs/admin.md): which
// hosts the scheduler keeps out and which install an environment, polled
// once a snapshot says `text_port`; a host's `internals` on demand; and,
// when the snapshot says `admin`, the actions block, unblock and remove.
// With `--keep-blocks` the view lists the blocks icewatch keeps across
// scheduler restarts, shown in the host panel and under the host table.

import { withToken } from 'icewatch/connection.js';

const POLL_MS = 5000;

/** The last `GET /api/v1/control`, or null: the server does not use the text port (404) or has not answered yet. */
export const control = { view: null };

let changed = () => {};
let watching = false;

/** Takes a fresh view, shows the kept blocks and tells the page. */
function update(view) {
  control.view = view;
  showKept();
  changed();
}

/** The line under the host table: the blocks icewatch keeps, hidden without `--keep-blocks`. */
function showKept() {
  const line = document.getElementById('kept-blocks');
  if (!line) return;
  const view = control.view;
  line.hidden = !view?.keep_blocks;
  if (line.hidden) return;
  const names = (view.kept || []).map((k) => k.name);
  line.textContent = names.length
    ? `Blocks kept across scheduler restarts (--keep-blocks): ${names.join(', ')}`
    : 'Blocks kept across scheduler restarts (--keep-blocks): none';
}

/** Polls the server's view of the text port (once, however often called); `onChange()` after each answer. */
export function watchControl(onChange) {
  changed = onChange;
  if (watching) return;
  watching = true;
  const poll = () => fetch(withToken('api/v1/control'))
    .then((r) => {
      if (r.status === 404) return 'off';
      return r.ok ? r.json() : null;
    })
    .then((view) => {
      if (view === 'off') return; // the server never reads it: stop asking
      update(view);
      setTimeout(poll, POLL_MS);
    })
    .catch(() => setTimeout(poll, POLL_MS));
  poll();
}

/** Whether the scheduler keeps the host `name` out, as last read. */
export const isBlocked = (name) => Boolean(control.view?.blocked?.includes(name));

/** The block icewatch keeps for the host `name` (`{ name, since_ms }`), or null. */
export const keptBlock = (name) => control.view?.kept?.find((k) => k.name === name) ?? null;

/** Seconds since the host `name` began installing an environment, or null. */
export const installingFor = (name) => control.view?.installing?.[name] ?? null;

/** The answer of the server to a request, as `{ ok, said | error }`. */
async function answer(response) {
  let body = null;
  try { body = await response.json(); } catch { /* not JSON */ }
  if (response.ok && body?.ok) return body;
  return { ok: false, error: body?.error || `${response.status} ${response.statusText}` };
}

/** `POST /api/v1/hosts/{name}/{action}`; the answer, then a fresh read. */
export async function act(name, action) {
  const result = await fetch(withToken(`api/v1/hosts/${encodeURIComponent(name)}/${action}`), { method: 'POST' })
    .then(answer, (e) => ({ ok: false, error: String(e) }));
  fetch(withToken('api/v1/control')).then((r) => r.ok ? r.json() : null)
    .then((view) => { if (view) update(view); }).catch(() => {});
  return result;
}

/** `GET /api/v1/hosts/{name}/internals`: `{ ok, daemons | error }`. */
export function internals(name) {
  return fetch(withToken(`api/v1/hosts/${encodeURIComponent(name)}/internals`))
    .then(answer, (e) => ({ ok: false, error: String(e) }));
}
