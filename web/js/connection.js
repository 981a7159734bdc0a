// The connection to icewatch (docs/websocket.md): one snapshot, then diffs
// with contiguous sequence numbers; a gap or a lost connection means
// reconnecting and starting over from a fresh snapshot, with backoff. Also
// the token that every request to icewatch carries when the page's URL has
// one.

import { RECONNECT } from 'icewatch/settings.js';

const token = new URLSearchParams(location.search).get('token');

/** `path` (relative to the page) with the page's token, if it has one. */
export function withToken(path) {
  if (!token) return path;
  return path + (path.includes('?') ? '&' : '?') + 'token=' + encodeURIComponent(token);
}

/**
 * The WebSocket to icewatch, feeding `model` (model.js). `state` is
 * `connecting`, `live`, `retry` or `down`, `text` what to say about it;
 * `changed()` is called when they change, `received(result)` after each
 * message the model took (`result` is what `model.receive` answered), and
 * `heardAt` is when the last message came (Date.now()).
 */
export class Connection {
  constructor(model, { changed, received }) {
    this.model = model;
    this.changed = changed;
    this.received = received;
    this.state = 'connecting';
    this.text = 'connecting…';
    this.heardAt = null;
    this.socket = null;
    this.attempts = 0;
    this.retryTimer = null;
  }

  connect() {
    clearTimeout(this.retryTimer);
    const url = new URL(withToken('ws'), location.href);
    url.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:';
    this.set('connecting', this.attempts ? 'reconnecting…' : 'connecting…');
    const ws = new WebSocket(url);
    this.socket = ws;
    // `onmessage`, not addEventListener: e2e/perf.mjs times the handler it is given.
    ws.onmessage = (event) => {
      if (ws !== this.socket) return;
      const msg = JSON.parse(event.data);
      this.heardAt = Date.now();
      const result = this.model.receive(msg);
      if (result.kind === 'gap') {
        // What we hold is no longer the server's state. Start over.
        this.resync();
        return;
      }
      if (result.kind === 'snapshot') {
        this.attempts = 0;
        this.set('live', 'live');
      }
      this.received(result);
    };
    ws.onclose = () => {
      if (ws !== this.socket) return;
      this.socket = null;
      const delay = Math.min(RECONNECT.maxMs, RECONNECT.firstMs * 2 ** this.attempts) * (1 - RECONNECT.jitter + Math.random() * RECONNECT.jitter);
      this.attempts += 1;
      this.retryAt(Date.now() + delay);
    };
  }

  resync() {
    const old = this.socket;
    this.socket = null;
    if (old) old.close();
    this.model.expectSnapshot();
    this.connect();
  }

  /** Shows a countdown until the next attempt, then connects. */
  retryAt(when) {
    const left = when - Date.now();
    if (left <= 0) { this.connect(); return; }
    this.set(this.attempts > RECONNECT.downAfter ? 'down' : 'retry', `disconnected · retry in ${Math.ceil(left / 1000)} s`);
    this.retryTimer = setTimeout(() => this.retryAt(when), Math.min(left, 1000));
  }

  set(state, text) {
    this.state = state;
    this.text = text;
    this.changed();
  }
}
